//! The conditional commands, run through per-key Paxos at `SERIAL`:
//! `SET key value NX | XX | IFEQ expected [GET]`, `SET key value GET`,
//! `GETDEL`, `DELIFEQ`, `INCR`, `INCRBY`, `DECR`, `DECRBY`. Parsing, the
//! node operation each becomes, and the RESP reply each gets. At any other
//! level they are refused: a read-modify-write over last-write-wins would be
//! racy.

use enigma_cluster::paxos::{Change, Condition};
use enigma_cluster::{ClientError, ClientOp, ClientResponse, ConsistencyLevel};

use crate::command::CommandError;
use crate::resp::Reply;

/// A conditional command, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Conditional {
    /// `SET key value [NX | XX | IFEQ expected] [GET]` with at least one
    /// option.
    Set {
        key: Vec<u8>,
        value: Vec<u8>,
        condition: Condition,
        /// `GET`: answer the old value rather than `OK`.
        get: bool,
    },
    /// `GETDEL key`: delete it, answer its old value.
    GetDel { key: Vec<u8> },
    /// `DELIFEQ key expected`: delete it if it holds `expected`; 1 or 0.
    DelIfEq { key: Vec<u8>, expected: Vec<u8> },
    /// `INCR`, `INCRBY`, `DECR`, `DECRBY`: add `by`, answer the new value.
    Incr {
        name: &'static str,
        key: Vec<u8>,
        by: i64,
    },
}

/// Redis's reply to an increment that is not an integer.
const NOT_AN_INTEGER: &str = "ERR value is not an integer or out of range";

impl Conditional {
    /// The command's name, as metrics and `COMMAND` name it.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Set { .. } => "set",
            Self::GetDel { .. } => "getdel",
            Self::DelIfEq { .. } => "delifeq",
            Self::Incr { name, .. } => name,
        }
    }

    /// The key it touches.
    pub fn key(&self) -> &[u8] {
        match self {
            Self::Set { key, .. }
            | Self::GetDel { key }
            | Self::DelIfEq { key, .. }
            | Self::Incr { key, .. } => key,
        }
    }

    /// The value it may write, for the size limit.
    pub fn value(&self) -> Option<&[u8]> {
        match self {
            Self::Set { value, .. } => Some(value),
            _ => None,
        }
    }

    /// The node operation.
    pub fn op(&self) -> ClientOp {
        let key = self.key().to_vec();
        let (condition, change) = match self {
            Self::Set {
                value, condition, ..
            } => (condition.clone(), Change::Put(value.clone())),
            Self::GetDel { .. } => (Condition::Present, Change::Delete),
            Self::DelIfEq { expected, .. } => (Condition::Equals(expected.clone()), Change::Delete),
            Self::Incr { by, .. } => (Condition::Any, Change::Incr(*by)),
        };
        ClientOp::Cas {
            key,
            condition,
            change,
        }
    }

    /// The node operation, once the level and the limits allow it: at any
    /// level but `SERIAL` the command is refused.
    ///
    /// # Errors
    /// The reply refusing it.
    pub fn plan(
        &self,
        level: ConsistencyLevel,
        check_key: &dyn Fn(&[u8]) -> Result<(), Reply>,
        check_value: &dyn Fn(&[u8]) -> Result<(), Reply>,
    ) -> Result<ClientOp, Reply> {
        if level != ConsistencyLevel::Serial {
            return Err(Reply::error(format!(
                "ERR '{}' needs consistency level SERIAL (CONSISTENCY SERIAL, or AT SERIAL {}); it is refused at {level} rather than done as a racy read-modify-write",
                self.name(),
                self.name().to_ascii_uppercase()
            )));
        }
        check_key(self.key())?;
        if let Some(value) = self.value() {
            check_value(value)?;
        }
        Ok(self.op())
    }

    /// The RESP reply to the node's answer; errors other than a change the
    /// node could not compute are `error_reply`'s.
    pub fn answer(
        &self,
        response: ClientResponse,
        error_reply: impl Fn(&ClientError) -> Reply,
    ) -> Reply {
        match response {
            ClientResponse::Error(ClientError::Invalid { reason }) => Self::change_error(&reason)
                .unwrap_or_else(|| error_reply(&ClientError::Invalid { reason })),
            ClientResponse::Error(e) => error_reply(&e),
            response => self.reply(response),
        }
    }

    /// The RESP reply to the node's answer (errors are the caller's).
    pub fn reply(&self, response: ClientResponse) -> Reply {
        let ClientResponse::Conditional {
            applied,
            previous,
            current,
        } = response
        else {
            return Reply::error("ERR unexpected answer to a conditional command");
        };
        let bulk = |v: Option<Vec<u8>>| v.map_or(Reply::Null, Reply::Bulk);
        match self {
            Self::Set { get: true, .. } | Self::GetDel { .. } => bulk(previous),
            Self::Set { .. } if applied => Reply::Simple("OK".into()),
            Self::Set { .. } => Reply::Null,
            Self::DelIfEq { .. } => Reply::Integer(i64::from(applied)),
            Self::Incr { .. } => {
                let value = current
                    .as_deref()
                    .and_then(|v| std::str::from_utf8(v).ok())
                    .and_then(|v| v.parse::<i64>().ok());
                value.map_or_else(|| Reply::error(NOT_AN_INTEGER), Reply::Integer)
            }
        }
    }

    /// The RESP text of a node's refusal to compute the change (its
    /// reason, as [`enigma_cluster::paxos::ChangeError`] says it).
    pub fn change_error(reason: &str) -> Option<Reply> {
        let known = [
            enigma_cluster::paxos::ChangeError::NotAnInteger,
            enigma_cluster::paxos::ChangeError::Overflow,
        ];
        known
            .iter()
            .find(|e| e.to_string() == reason)
            .map(|e| Reply::error(format!("ERR {e}")))
    }
}

/// Parses `SET key value` with options (`rest` after the value).
///
/// # Errors
/// A syntax error, or an option EnigmaDB does not support (expiry).
pub fn parse_set(
    key: Vec<u8>,
    value: Vec<u8>,
    options: &[Vec<u8>],
) -> Result<Conditional, CommandError> {
    let mut condition = None;
    let mut get = false;
    let mut options = options.iter();
    while let Some(option) = options.next() {
        let option = String::from_utf8_lossy(option).to_ascii_uppercase();
        let next = match option.as_str() {
            "NX" => Condition::Absent,
            "XX" => Condition::Present,
            "IFEQ" => {
                let expected = options
                    .next()
                    .ok_or_else(|| CommandError("ERR syntax error".to_owned()))?;
                Condition::Equals(expected.clone())
            }
            "GET" if !get => {
                get = true;
                continue;
            }
            "EX" | "PX" | "EXAT" | "PXAT" | "KEEPTTL" => {
                return Err(CommandError(format!(
                    "ERR SET option {option} is not supported by EnigmaDB yet"
                )))
            }
            _ => return Err(CommandError("ERR syntax error".to_owned())),
        };
        if condition.replace(next).is_some() {
            return Err(CommandError("ERR syntax error".to_owned()));
        }
    }
    Ok(Conditional::Set {
        key,
        value,
        condition: condition.unwrap_or(Condition::Any),
        get,
    })
}

/// Parses the conditional commands other than `SET`; `None` if `name` is
/// not one of them.
///
/// # Errors
/// Wrong arity, or an increment that is not an integer.
pub fn parse(name: &str, rest: Vec<Vec<u8>>) -> Option<Result<Conditional, CommandError>> {
    let arity = |n: usize, name: &str| {
        if rest.len() == n {
            Ok(())
        } else {
            Err(CommandError(format!(
                "ERR wrong number of arguments for '{name}' command"
            )))
        }
    };
    let parsed = match name {
        "getdel" => arity(1, name).map(|()| Conditional::GetDel {
            key: rest[0].clone(),
        }),
        "delifeq" => arity(2, name).map(|()| Conditional::DelIfEq {
            key: rest[0].clone(),
            expected: rest[1].clone(),
        }),
        "incr" | "decr" => arity(1, name).map(|()| Conditional::Incr {
            name: if name == "incr" { "incr" } else { "decr" },
            key: rest[0].clone(),
            by: if name == "incr" { 1 } else { -1 },
        }),
        "incrby" | "decrby" => arity(2, name).and_then(|()| {
            let by = std::str::from_utf8(&rest[1])
                .ok()
                .and_then(|v| v.parse::<i64>().ok())
                .ok_or_else(|| CommandError(NOT_AN_INTEGER.to_owned()))?;
            let (name, by) = if name == "incrby" {
                ("incrby", Some(by))
            } else {
                ("decrby", by.checked_neg())
            };
            let by = by.ok_or_else(|| CommandError("ERR decrement would overflow".to_owned()))?;
            Ok(Conditional::Incr {
                name,
                key: rest[0].clone(),
                by,
            })
        }),
        _ => return None,
    };
    Some(parsed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(words: &[&str]) -> Vec<Vec<u8>> {
        words.iter().map(|w| w.as_bytes().to_vec()).collect()
    }

    #[test]
    fn set_options_become_conditions() {
        let set = |options: &[&str]| parse_set(b"k".to_vec(), b"v".to_vec(), &args(options));
        let cond = |c: &Conditional| match c {
            Conditional::Set { condition, get, .. } => (condition.clone(), *get),
            _ => unreachable!(),
        };
        assert_eq!(cond(&set(&["nx"]).unwrap()), (Condition::Absent, false));
        assert_eq!(
            cond(&set(&["XX", "GET"]).unwrap()),
            (Condition::Present, true)
        );
        assert_eq!(
            cond(&set(&["IFEQ", "old"]).unwrap()),
            (Condition::Equals(b"old".to_vec()), false)
        );
        assert_eq!(cond(&set(&["GET"]).unwrap()), (Condition::Any, true));
        for bad in [&["NX", "XX"][..], &["IFEQ"], &["GET", "GET"], &["BOGUS"]] {
            assert_eq!(set(bad).unwrap_err().0, "ERR syntax error", "{bad:?}");
        }
        assert!(set(&["EX", "10"]).unwrap_err().0.contains("not supported"));
    }

    #[test]
    fn increments_parse_and_replies_follow_redis() {
        let incrby = parse("incrby", args(&["n", "5"])).unwrap().unwrap();
        assert_eq!(
            incrby.op(),
            ClientOp::Cas {
                key: b"n".to_vec(),
                condition: Condition::Any,
                change: Change::Incr(5)
            }
        );
        let decr = parse("decr", args(&["n"])).unwrap().unwrap();
        assert_eq!(decr.name(), "decr");
        assert_eq!(
            parse("incrby", args(&["n", "x"])).unwrap().unwrap_err().0,
            NOT_AN_INTEGER
        );
        assert!(parse("decrby", args(&["n", &i64::MIN.to_string()]))
            .unwrap()
            .is_err());
        assert!(parse("incr", args(&[])).unwrap().is_err());
        assert!(parse("get", args(&["n"])).is_none());
        let answer =
            |applied, previous: Option<&str>, current: Option<&str>| ClientResponse::Conditional {
                applied,
                previous: previous.map(|v| v.as_bytes().to_vec()),
                current: current.map(|v| v.as_bytes().to_vec()),
            };
        assert_eq!(
            incrby.reply(answer(true, Some("1"), Some("6"))),
            Reply::Integer(6)
        );
        let delifeq = parse("delifeq", args(&["k", "v"])).unwrap().unwrap();
        assert_eq!(
            delifeq.reply(answer(false, Some("w"), Some("w"))),
            Reply::Integer(0)
        );
        let getdel = parse("getdel", args(&["k"])).unwrap().unwrap();
        assert_eq!(
            getdel.reply(answer(true, Some("v"), None)),
            Reply::Bulk(b"v".to_vec())
        );
        let nx = parse_set(b"k".to_vec(), b"v".to_vec(), &args(&["NX"])).unwrap();
        assert_eq!(nx.reply(answer(false, Some("w"), Some("w"))), Reply::Null);
        assert_eq!(
            nx.reply(answer(true, None, Some("v"))),
            Reply::Simple("OK".into())
        );
        assert_eq!(
            Conditional::change_error("increment or decrement would overflow"),
            Some(Reply::error(
                "ERR increment or decrement would overflow".to_owned()
            ))
        );
    }
}
