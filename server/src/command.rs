//! Client commands: RESP arguments checked and turned into typed requests.
//!
//! Pure: no I/O, no node. Every way a request can be wrong gets an error
//! reply a Redis user recognises (`ERR wrong number of arguments for 'get'
//! command`), and options that would change a command's meaning but are not
//! implemented (expiry) are refused, never silently ignored. The
//! conditional commands (`SET ... NX | XX | IFEQ | GET`, `GETDEL`,
//! `DELIFEQ`, `INCR` and its kin) are parsed in [`crate::conditional`].

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
    Info(Option<String>),
    /// `REPAIR`: a full anti-entropy pass over every range of this node,
    /// answered when done (`enigma repair`).
    Repair,
    /// `COMMAND [COUNT | DOCS ... | INFO ...]`: probed by client libraries.
    Command(CommandQuery),
    /// `QUIT`.
    Quit,
    /// `CONSISTENCY [level]`: read or set the connection's default level.
    Consistency(Option<ConsistencyLevel>),
    /// `AT level command [args ...]`: run one command at `level`, leaving
    /// the connection's default alone.
    At {
        level: ConsistencyLevel,
        command: Box<Command>,
    },
    /// `AUTH [username] password`.
    Auth {
        username: Option<Vec<u8>>,
        password: Vec<u8>,
    },
    /// `HELLO [protover [AUTH username password] [SETNAME name]]`.
    Hello {
        protocol: Option<u8>,
        auth: Option<(Vec<u8>, Vec<u8>)>,
        name: Option<Vec<u8>>,
    },
    /// `CLIENT SETNAME | GETNAME | ID | SETINFO`.
    Client(ClientQuery),
    /// `DBSIZE`: an estimate of the live keys this node stores.
    DbSize,
    /// A conditional command, run at `SERIAL` only.
    Conditional(crate::conditional::Conditional),
}

/// What `COMMAND` was asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommandQuery {
    /// `COMMAND`: every command's description.
    All,
    /// `COMMAND COUNT`.
    Count,
    /// `COMMAND INFO [name ...]`.
    Info(Vec<String>),
    /// `COMMAND DOCS [name ...]`.
    Docs(Vec<String>),
}

/// What `CLIENT` was asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientQuery {
    /// `CLIENT SETNAME name`.
    SetName(Vec<u8>),
    /// `CLIENT GETNAME`.
    GetName,
    /// `CLIENT ID`.
    Id,
    /// `CLIENT SETINFO LIB-NAME|LIB-VER value`: recorded for the log.
    SetInfo { attribute: String, value: Vec<u8> },
}

/// Names and arities of the commands EnigmaDB serves, as `COMMAND` reports
/// them: `(name, arity, is_write, first_key, last_key, key_step)`. A
/// negative arity means "at least that many" (the name included).
pub const COMMAND_TABLE: [(&str, i64, bool, i64, i64, i64); 24] = [
    ("ping", -1, false, 0, 0, 0),
    ("echo", 2, false, 0, 0, 0),
    ("get", 2, false, 1, 1, 1),
    ("set", 3, true, 1, 1, 1),
    ("del", -2, true, 1, -1, 1),
    ("exists", -2, false, 1, -1, 1),
    ("mget", -2, false, 1, -1, 1),
    ("mset", -3, true, 1, -1, 2),
    ("info", -1, false, 0, 0, 0),
    ("command", -1, false, 0, 0, 0),
    ("quit", -1, false, 0, 0, 0),
    ("consistency", -1, false, 0, 0, 0),
    ("at", -3, false, 0, 0, 0),
    ("auth", -2, false, 0, 0, 0),
    ("hello", -1, false, 0, 0, 0),
    ("client", -2, false, 0, 0, 0),
    ("dbsize", 1, false, 0, 0, 0),
    ("repair", 1, false, 0, 0, 0),
    ("getdel", 2, true, 1, 1, 1),
    ("delifeq", 3, true, 1, 1, 1),
    ("incr", 2, true, 1, 1, 1),
    ("incrby", 3, true, 1, 1, 1),
    ("decr", 2, true, 1, 1, 1),
    ("decrby", 3, true, 1, 1, 1),
];

/// Position of command `name` in [`COMMAND_TABLE`] (a match, not a scan:
/// metrics look it up for every reply).
pub fn command_index(name: &str) -> Option<usize> {
    let index = match name {
        "ping" => 0,
        "echo" => 1,
        "get" => 2,
        "set" => 3,
        "del" => 4,
        "exists" => 5,
        "mget" => 6,
        "mset" => 7,
        "info" => 8,
        "command" => 9,
        "quit" => 10,
        "consistency" => 11,
        "at" => 12,
        "auth" => 13,
        "hello" => 14,
        "client" => 15,
        "dbsize" => 16,
        "repair" => 17,
        "getdel" => 18,
        "delifeq" => 19,
        "incr" => 20,
        "incrby" => 21,
        "decr" => 22,
        "decrby" => 23,
        _ => return None,
    };
    debug_assert_eq!(COMMAND_TABLE[index].0, name);
    Some(index)
}

impl Command {
    /// The command's name, lower case, as metrics and `COMMAND` name it.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Ping(_) => "ping",
            Self::Echo(_) => "echo",
            Self::Get(_) => "get",
            Self::Set { .. } => "set",
            Self::Del(_) => "del",
            Self::Exists(_) => "exists",
            Self::MGet(_) => "mget",
            Self::MSet(_) => "mset",
            Self::Info(_) => "info",
            Self::Command(_) => "command",
            Self::Quit => "quit",
            Self::Consistency(_) => "consistency",
            Self::At { command, .. } => command.name(),
            Self::Auth { .. } => "auth",
            Self::Hello { .. } => "hello",
            Self::Client(_) => "client",
            Self::DbSize => "dbsize",
            Self::Repair => "repair",
            Self::Conditional(c) => c.name(),
        }
    }

    /// Whether the command reads or writes keys (and so has a consistency
    /// level).
    pub fn touches_keys(&self) -> bool {
        match self {
            Self::Get(_)
            | Self::Set { .. }
            | Self::Del(_)
            | Self::Exists(_)
            | Self::MGet(_)
            | Self::MSet(_)
            | Self::Conditional(_) => true,
            Self::At { command, .. } => command.touches_keys(),
            _ => false,
        }
    }
}

/// Why a command was refused; the text is the error reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandError(pub String);

impl std::fmt::Display for CommandError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Parses one request's arguments (the first is the command name).
///
/// # Errors
/// A [`CommandError`] whose text is the reply to send.
pub fn parse(args: Vec<Vec<u8>>) -> Result<Command, CommandError> {
    let mut args = args.into_iter();
    let name = args
        .next()
        .ok_or_else(|| CommandError("ERR empty command".to_owned()))?;
    // Command names are short: lower-case them on the stack, not the heap.
    let mut lower = [0u8; 16];
    let name: std::borrow::Cow<'_, str> = match lower.get_mut(..name.len()) {
        Some(buf) => {
            for (to, from) in buf.iter_mut().zip(&name) {
                *to = from.to_ascii_lowercase();
            }
            String::from_utf8_lossy(buf)
        }
        None => String::from_utf8_lossy(&name).to_ascii_lowercase().into(),
    };
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
    match name.as_ref() {
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
            let mut args = rest.into_iter();
            let key = args.next().expect("arity checked");
            let value = args.next().expect("arity checked");
            let options: Vec<Vec<u8>> = args.collect();
            if options.is_empty() {
                return Ok(Command::Set { key, value });
            }
            crate::conditional::parse_set(key, value, &options).map(Command::Conditional)
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
            Ok(Command::Info(
                rest.first()
                    .map(|s| String::from_utf8_lossy(s).to_ascii_lowercase()),
            ))
        }
        "command" => parse_command_query(&rest),
        "repair" => {
            arity(rest.is_empty())?;
            Ok(Command::Repair)
        }
        "quit" => Ok(Command::Quit),
        "dbsize" => {
            arity(rest.is_empty())?;
            Ok(Command::DbSize)
        }
        "consistency" => {
            arity(rest.len() <= 1)?;
            match rest.first() {
                None => Ok(Command::Consistency(None)),
                Some(level) => parse_level(level).map(|level| Command::Consistency(Some(level))),
            }
        }
        "at" => {
            arity(rest.len() >= 2)?;
            let mut rest = rest.into_iter();
            let level = parse_level(&rest.next().expect("arity checked"))?;
            let command = parse(rest.collect())?;
            if !command.touches_keys() {
                return Err(CommandError(format!(
                    "ERR AT applies to commands that read or write keys, not '{}'",
                    command.name()
                )));
            }
            if matches!(command, Command::At { .. }) {
                return Err(CommandError("ERR AT cannot be nested".to_owned()));
            }
            Ok(Command::At {
                level,
                command: Box::new(command),
            })
        }
        "auth" => {
            arity(rest.len() == 1 || rest.len() == 2)?;
            let mut rest = rest.into_iter();
            let (username, password) = match (rest.next(), rest.next()) {
                (Some(password), None) => (None, password),
                (Some(username), Some(password)) => (Some(username), password),
                _ => unreachable!("arity checked"),
            };
            Ok(Command::Auth { username, password })
        }
        "hello" => parse_hello(rest),
        "client" => parse_client(rest),
        other => {
            if let Some(parsed) = crate::conditional::parse(other, rest) {
                return parsed.map(Command::Conditional);
            }
            let shown: String = name.chars().take(64).collect();
            Err(CommandError(format!("ERR unknown command '{shown}'")))
        }
    }
}

fn parse_level(level: &[u8]) -> Result<ConsistencyLevel, CommandError> {
    String::from_utf8_lossy(level)
        .parse()
        .map_err(|e| CommandError(format!("ERR {e}")))
}

fn parse_command_query(rest: &[Vec<u8>]) -> Result<Command, CommandError> {
    let names = |args: &[Vec<u8>]| -> Vec<String> {
        args.iter()
            .map(|n| String::from_utf8_lossy(n).to_ascii_lowercase())
            .collect()
    };
    let Some(sub) = rest.first() else {
        return Ok(Command::Command(CommandQuery::All));
    };
    let sub = String::from_utf8_lossy(sub).to_ascii_lowercase();
    match sub.as_str() {
        "count" if rest.len() == 1 => Ok(Command::Command(CommandQuery::Count)),
        "info" => Ok(Command::Command(CommandQuery::Info(names(&rest[1..])))),
        "docs" => Ok(Command::Command(CommandQuery::Docs(names(&rest[1..])))),
        _ => {
            let shown: String = sub.chars().take(64).collect();
            Err(CommandError(format!(
                "ERR unknown subcommand or wrong number of arguments for 'command|{shown}' (EnigmaDB serves COMMAND, COMMAND COUNT, COMMAND INFO and COMMAND DOCS)"
            )))
        }
    }
}

fn parse_hello(rest: Vec<Vec<u8>>) -> Result<Command, CommandError> {
    let mut rest = rest.into_iter();
    let protocol = match rest.next() {
        None => None,
        Some(version) => {
            let text = String::from_utf8_lossy(&version).into_owned();
            match text.parse::<u8>() {
                Ok(v) => Some(v),
                Err(_) => {
                    return Err(CommandError(
                        "ERR Protocol version is not an integer or out of range".to_owned(),
                    ))
                }
            }
        }
    };
    let mut auth = None;
    let mut name = None;
    while let Some(option) = rest.next() {
        match String::from_utf8_lossy(&option)
            .to_ascii_uppercase()
            .as_str()
        {
            "AUTH" => match (rest.next(), rest.next()) {
                (Some(user), Some(pass)) => auth = Some((user, pass)),
                _ => {
                    return Err(CommandError(
                        "ERR syntax error in HELLO option 'AUTH'".into(),
                    ))
                }
            },
            "SETNAME" => match rest.next() {
                Some(n) => name = Some(n),
                None => {
                    return Err(CommandError(
                        "ERR syntax error in HELLO option 'SETNAME'".into(),
                    ))
                }
            },
            other => {
                let shown: String = other.chars().take(64).collect();
                return Err(CommandError(format!(
                    "ERR syntax error in HELLO option '{shown}'"
                )));
            }
        }
    }
    Ok(Command::Hello {
        protocol,
        auth,
        name,
    })
}

fn parse_client(rest: Vec<Vec<u8>>) -> Result<Command, CommandError> {
    let mut rest = rest.into_iter();
    let sub = rest
        .next()
        .map(|s| String::from_utf8_lossy(&s).to_ascii_lowercase())
        .unwrap_or_default();
    let args: Vec<Vec<u8>> = rest.collect();
    let wrong = |sub: &str| {
        let shown: String = sub.chars().take(64).collect();
        CommandError(format!(
            "ERR unknown subcommand or wrong number of arguments for 'client|{shown}' (EnigmaDB serves CLIENT SETNAME, GETNAME, ID and SETINFO)"
        ))
    };
    match (sub.as_str(), args.len()) {
        ("setname", 1) => Ok(Command::Client(ClientQuery::SetName(first(args)))),
        ("getname", 0) => Ok(Command::Client(ClientQuery::GetName)),
        ("id", 0) => Ok(Command::Client(ClientQuery::Id)),
        ("setinfo", 2) => {
            let mut args = args.into_iter();
            let attribute =
                String::from_utf8_lossy(&args.next().expect("two args")).to_ascii_lowercase();
            let value = args.next().expect("two args");
            if attribute != "lib-name" && attribute != "lib-ver" {
                let shown: String = attribute.chars().take(64).collect();
                return Err(CommandError(format!("ERR Unrecognized option '{shown}'")));
            }
            Ok(Command::Client(ClientQuery::SetInfo { attribute, value }))
        }
        _ => Err(wrong(&sub)),
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
        for option in ["EX 1", "px 5", "KEEPTTL", "NX EXAT 3"] {
            let err = parse(words(&format!("SET k v {option}"))).unwrap_err();
            assert!(err.0.contains("not supported"), "{option}: {err}");
        }
        // The conditional options are commands of their own, run at SERIAL.
        for option in ["NX", "xx", "GET", "IFEQ old", "XX GET"] {
            let parsed = parse(words(&format!("SET k v {option}"))).unwrap();
            assert!(matches!(parsed, Command::Conditional(_)), "{option}");
        }
        assert!(matches!(
            parse(words("INCRBY n 3")).unwrap(),
            Command::Conditional(_)
        ));
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

    #[test]
    fn at_runs_one_key_command_at_a_level() {
        assert_eq!(
            parse(words("AT all GET k")),
            Ok(Command::At {
                level: ConsistencyLevel::All,
                command: Box::new(Command::Get(b"k".to_vec()))
            })
        );
        assert!(parse(words("AT ALL PING"))
            .unwrap_err()
            .0
            .contains("AT applies"));
        assert!(parse(words("AT ONE AT ALL GET k")).is_err());
        assert!(parse(words("AT MOST GET k")).is_err());
        assert!(parse(words("AT ALL")).is_err());
    }

    #[test]
    fn command_subcommands_parse_and_unknown_ones_are_refused() {
        assert_eq!(
            parse(words("COMMAND COUNT")),
            Ok(Command::Command(CommandQuery::Count))
        );
        assert_eq!(
            parse(words("command docs GET")),
            Ok(Command::Command(CommandQuery::Docs(vec!["get".into()])))
        );
        assert_eq!(
            parse(words("COMMAND")),
            Ok(Command::Command(CommandQuery::All))
        );
        assert!(parse(words("COMMAND GETKEYS set k v")).is_err());
    }

    #[test]
    fn auth_hello_and_client_parse() {
        assert_eq!(
            parse(words("AUTH pw")),
            Ok(Command::Auth {
                username: None,
                password: b"pw".to_vec()
            })
        );
        assert!(parse(words("AUTH a b c")).is_err());
        assert_eq!(
            parse(words("HELLO 3 AUTH default pw SETNAME me")),
            Ok(Command::Hello {
                protocol: Some(3),
                auth: Some((b"default".to_vec(), b"pw".to_vec())),
                name: Some(b"me".to_vec())
            })
        );
        assert!(parse(words("HELLO x")).is_err());
        assert!(parse(words("HELLO 3 AUTH onlyuser")).is_err());
        assert_eq!(
            parse(words("CLIENT SETINFO LIB-NAME redis-rs")),
            Ok(Command::Client(ClientQuery::SetInfo {
                attribute: "lib-name".into(),
                value: b"redis-rs".to_vec()
            }))
        );
        assert!(parse(words("CLIENT KILL x")).is_err());
    }

    #[test]
    fn command_index_matches_the_table() {
        for (i, entry) in COMMAND_TABLE.iter().enumerate() {
            assert_eq!(command_index(entry.0), Some(i));
        }
        assert_eq!(command_index("flushall"), None);
    }

    #[test]
    fn the_command_table_names_every_command_once() {
        let mut names: Vec<&str> = COMMAND_TABLE.iter().map(|c| c.0).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), COMMAND_TABLE.len());
        for line in [
            "PING", "GET k", "SET k v", "DEL k", "MSET a 1", "INFO", "QUIT", "AUTH p",
        ] {
            let name = parse(words(line)).unwrap().name();
            assert!(names.contains(&name), "{name}");
        }
    }

    proptest! {
        #[test]
        fn arbitrary_arguments_never_panic(args in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..12), 0..6)) {
            let _ = parse(args);
        }
    }
}
