//! Client commands: RESP arguments checked and turned into typed requests.
//!
//! Pure: no I/O, no node. Every way a request can be wrong gets an error
//! reply a Redis user recognises (`ERR wrong number of arguments for 'get'
//! command`), and options that would change a command's meaning but are not
//! implemented (`SET ... NX`, expiry) are refused, never silently ignored.

use enigma_cluster::ConsistencyLevel;

/// A parsed client command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `PING [message]`.
    Ping(Option<Vec<u8>>),
    /// `ECHO message`.
    Echo(Vec<u8>),
    /// `GET key`.
    Get(Vec<u8>),
    /// `SET key value`.
    Set { key: Vec<u8>, value: Vec<u8> },
    /// `DEL key [key ...]`.
    Del(Vec<Vec<u8>>),
    /// `EXISTS key [key ...]`.
    Exists(Vec<Vec<u8>>),
    /// `MGET key [key ...]`.
    MGet(Vec<Vec<u8>>),
    /// `MSET key value [key value ...]`.
    MSet(Vec<(Vec<u8>, Vec<u8>)>),
    /// `INFO [section]`.
    Info,
    /// `COMMAND [...]`: probed by client libraries on connect.
    Command,
    /// `QUIT`.
    Quit,
    /// `CONSISTENCY [level]`: read or set the connection's default level.
    Consistency(Option<ConsistencyLevel>),
}

/// Why a command was refused; the text is the error reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandError(pub String);

impl std::fmt::Display for CommandError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Options of `SET` that change its meaning; refused until implemented.
const SET_OPTIONS_UNSUPPORTED: [&str; 9] = [
    "NX", "XX", "GET", "EX", "PX", "EXAT", "PXAT", "KEEPTTL", "IFEQ",
];

/// Parses one request's arguments (the first is the command name).
///
/// # Errors
/// A [`CommandError`] whose text is the reply to send.
pub fn parse(args: Vec<Vec<u8>>) -> Result<Command, CommandError> {
    let mut args = args.into_iter();
    let name = args
        .next()
        .ok_or_else(|| CommandError("ERR empty command".to_owned()))?;
    let name = String::from_utf8_lossy(&name).to_ascii_lowercase();
    let rest: Vec<Vec<u8>> = args.collect();
    let arity = |ok: bool| {
        if ok {
            Ok(())
        } else {
            Err(CommandError(format!(
                "ERR wrong number of arguments for '{name}' command"
            )))
        }
    };
    match name.as_str() {
        "ping" => {
            arity(rest.len() <= 1)?;
            Ok(Command::Ping(rest.into_iter().next()))
        }
        "echo" => {
            arity(rest.len() == 1)?;
            Ok(Command::Echo(first(rest)))
        }
        "get" => {
            arity(rest.len() == 1)?;
            Ok(Command::Get(first(rest)))
        }
        "set" => {
            arity(rest.len() >= 2)?;
            if let Some(option) = rest.get(2) {
                let option = String::from_utf8_lossy(option).to_ascii_uppercase();
                let known = SET_OPTIONS_UNSUPPORTED.contains(&option.as_str());
                return Err(CommandError(if known {
                    format!("ERR SET option {option} is not supported by EnigmaDB yet")
                } else {
                    "ERR syntax error".to_owned()
                }));
            }
            let mut rest = rest.into_iter();
            let key = rest.next().expect("arity checked");
            let value = rest.next().expect("arity checked");
            Ok(Command::Set { key, value })
        }
        "del" => {
            arity(!rest.is_empty())?;
            Ok(Command::Del(rest))
        }
        "exists" => {
            arity(!rest.is_empty())?;
            Ok(Command::Exists(rest))
        }
        "mget" => {
            arity(!rest.is_empty())?;
            Ok(Command::MGet(rest))
        }
        "mset" => {
            arity(!rest.is_empty() && rest.len() % 2 == 0)?;
            let mut pairs = Vec::with_capacity(rest.len() / 2);
            let mut rest = rest.into_iter();
            while let (Some(key), Some(value)) = (rest.next(), rest.next()) {
                pairs.push((key, value));
            }
            Ok(Command::MSet(pairs))
        }
        "info" => {
            arity(rest.len() <= 1)?;
            Ok(Command::Info)
        }
        "command" => Ok(Command::Command),
        "quit" => Ok(Command::Quit),
        "consistency" => {
            arity(rest.len() <= 1)?;
            match rest.first() {
                None => Ok(Command::Consistency(None)),
                Some(level) => String::from_utf8_lossy(level)
                    .parse()
                    .map(|level| Command::Consistency(Some(level)))
                    .map_err(|e| CommandError(format!("ERR {e}"))),
            }
        }
        _ => {
            let shown: String = name.chars().take(64).collect();
            Err(CommandError(format!("ERR unknown command '{shown}'")))
        }
    }
}

fn first(args: Vec<Vec<u8>>) -> Vec<u8> {
    args.into_iter().next().expect("arity checked")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn words(line: &str) -> Vec<Vec<u8>> {
        line.split_whitespace()
            .map(|w| w.as_bytes().to_vec())
            .collect()
    }

    #[test]
    fn commands_parse_case_insensitively() {
        assert_eq!(parse(words("get k")), Ok(Command::Get(b"k".to_vec())));
        assert_eq!(
            parse(words("SeT k v")),
            Ok(Command::Set {
                key: b"k".to_vec(),
                value: b"v".to_vec()
            })
        );
        assert_eq!(
            parse(words("MSET a 1 b 2")),
            Ok(Command::MSet(vec![
                (b"a".to_vec(), b"1".to_vec()),
                (b"b".to_vec(), b"2".to_vec())
            ]))
        );
        assert_eq!(
            parse(words("consistency all")),
            Ok(Command::Consistency(Some(ConsistencyLevel::All)))
        );
    }

    #[test]
    fn wrong_arity_names_the_command() {
        let err = parse(words("GET")).unwrap_err();
        assert_eq!(err.0, "ERR wrong number of arguments for 'get' command");
        assert!(parse(words("MSET a 1 b")).is_err());
        assert!(parse(words("ECHO a b")).is_err());
    }

    #[test]
    fn set_options_that_change_meaning_are_refused_not_ignored() {
        for option in ["NX", "xx", "EX", "GET", "KEEPTTL"] {
            let err = parse(words(&format!("SET k v {option}"))).unwrap_err();
            assert!(err.0.contains("not supported"), "{option}: {err}");
        }
        assert_eq!(
            parse(words("SET k v BANANA")).unwrap_err().0,
            "ERR syntax error"
        );
    }

    #[test]
    fn unknown_commands_and_levels_are_errors() {
        assert!(parse(words("FLUSHALL"))
            .unwrap_err()
            .0
            .starts_with("ERR unknown command"));
        assert!(parse(words("CONSISTENCY MOST")).is_err());
        assert!(parse(Vec::new()).is_err());
    }

    proptest! {
        #[test]
        fn arbitrary_arguments_never_panic(args in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..12), 0..6)) {
            let _ = parse(args);
        }
    }
}
