//! Jepsen histories as one EDN map per line:
//!
//! ```text
//! {:process 0, :type :invoke, :f :append, :key "0", :value "x 0 0 y"}
//! {:process 0, :type :ok, :f :get, :key "3", :value "x 3 1 y"}
//! ```
//!
//! The model is chosen by the first operation: `:get`/`:put`/`:append` is a
//! string kv map (every key initially `""`), `:read`/`:write`/`:cas` a
//! register over integers (`nil`: empty). `:key` may be a string, an integer
//! or a keyword; a register history may omit it. Other fields (`:time`,
//! `:index`, ...) are ignored: line order is time. Events of non-numeric
//! processes (`:nemesis`) are skipped, as are blank lines and `;` comments.
//!
//! `:fail` means what Jepsen means by it, as Knossos reads it: the operation
//! did not take effect, so a failed `:cas` constrains nothing
//! ([`FailReading::Knossos`]; `History::read_failed_cas` re-reads it).

use std::borrow::Cow;

use super::edn::{self, Edn};
use super::jepsen_log::{apply_register_event, Columns, Event, JEPSEN_LOG_KEY};
use super::{EventType, Outstanding, ParseError, ParsedHistory, Problem};
use crate::history::{FailReading, History};
use crate::kv::{KvHistory, KvOutcome};
use crate::model::KvInput;

/// Parses the text; time is the line number.
///
/// # Errors
/// The first malformed line, with the column of the offending field.
pub fn parse(text: &str) -> Result<ParsedHistory, ParseError> {
    let mut parsed: Option<ParsedHistory> = None;
    let mut outstanding = Outstanding::default();
    // Each line's fields, in one vector reused from line to line.
    let mut fields = Vec::new();
    for (index, line_text) in text.lines().enumerate() {
        let line = index + 1;
        let trimmed = line_text.trim_start();
        if trimmed.is_empty() || trimmed.starts_with(';') {
            continue;
        }
        // Byte offsets, turned into character columns only for an error.
        let err = |byte: usize, problem: Problem| ParseError {
            line,
            column: edn::column_of(line_text, byte),
            problem,
        };
        if let Some(value) = edn::parse_keyword_map(line_text, line, &mut fields)? {
            return Err(err(
                line_text.len() - trimmed.len(),
                Problem::WrongType {
                    field: "line",
                    expected: "a map",
                    found: value.kind().to_owned(),
                },
            ));
        }
        let end = line_text.len();
        let field = |name: &'static str| -> Option<(&Edn<'_>, usize)> {
            fields
                .iter()
                .find(|(k, _, _)| *k == name)
                .map(|(_, v, at)| (v, *at))
        };
        let required = |name: &'static str| {
            field(name).ok_or_else(|| err(end, Problem::MissingField { field: name }))
        };
        let (process, process_at) = required("process")?;
        let process = match process {
            Edn::Int(n) if *n >= 0 => *n as u64,
            // :nemesis and other non-client processes.
            Edn::Keyword(_) => continue,
            other => {
                return Err(err(
                    process_at,
                    Problem::WrongType {
                        field: "process",
                        expected: "a non-negative integer",
                        found: other.kind().to_owned(),
                    },
                ))
            }
        };
        let (kind, kind_at) = required("type")?;
        let kind = keyword(kind, "type")
            .and_then(EventType::from_name)
            .map_err(|p| err(kind_at, p))?;
        let (f, f_at) = required("f")?;
        let f = keyword(f, "f").map_err(|p| err(f_at, p))?;
        let (value, value_at) = field("value").unwrap_or((&Edn::Nil, end));
        let mut digits = IntKey::default();
        let key = match field("key") {
            None => None,
            Some((k, at)) => Some(key_text(k, &mut digits).map_err(|p| err(at, p))?),
        };
        let columns = Columns {
            text: line_text,
            process: process_at,
            f: f_at,
            value: value_at,
        };

        let history = match &mut parsed {
            Some(h) => h,
            // At most one operation per two lines: room for them at once,
            // rather than growing a vector of a million operations.
            None => parsed.insert(match f {
                "get" | "put" | "append" => {
                    ParsedHistory::Kv(KvHistory::with_capacity(text.lines().count() / 2 + 1))
                }
                "read" | "write" | "cas" => {
                    ParsedHistory::Register(History::with_capacity(text.lines().count() / 2 + 1))
                }
                other => {
                    return Err(err(
                        f_at,
                        Problem::UnknownFunction {
                            found: format!(":{other}"),
                            expected: ":get, :put, :append, :read, :write or :cas",
                        },
                    ))
                }
            }),
        };
        let event = Event {
            line,
            process,
            kind,
            f,
            value,
        };
        match history {
            ParsedHistory::Register(h) => {
                if matches!(f, "get" | "put" | "append") {
                    let found = format!(":{f}");
                    return Err(err(
                        f_at,
                        Problem::MixedModels {
                            found,
                            model: "register",
                        },
                    ));
                }
                let key = key.as_deref().unwrap_or(JEPSEN_LOG_KEY);
                apply_register_event(
                    h,
                    &mut outstanding,
                    key,
                    &event,
                    &columns,
                    FailReading::Knossos,
                )?;
            }
            ParsedHistory::Kv(h) => {
                if matches!(f, "read" | "write" | "cas") {
                    let found = format!(":{f}");
                    return Err(err(f_at, Problem::MixedModels { found, model: "kv" }));
                }
                let key = key.ok_or_else(|| err(end, Problem::MissingField { field: "key" }))?;
                apply_kv_event(h, &mut outstanding, &key, &event, &columns)?;
            }
            ParsedHistory::Set(_) => unreachable!("this parser never builds a set history"),
        }
    }
    Ok(parsed.unwrap_or(ParsedHistory::Register(History::new())))
}

fn keyword<'a>(value: &Edn<'a>, field: &'static str) -> Result<&'a str, Problem> {
    match value {
        Edn::Keyword(k) => Ok(k),
        other => Err(Problem::WrongType {
            field,
            expected: "a keyword",
            found: other.kind().to_owned(),
        }),
    }
}

/// Room for the decimal digits of an integer key, so that reading one
/// allocates nothing.
#[derive(Debug, Default)]
struct IntKey {
    bytes: [u8; 20],
}

fn key_text<'a>(value: &Edn<'a>, digits: &'a mut IntKey) -> Result<Cow<'a, str>, Problem> {
    match value {
        Edn::Str(s) => Ok(s.clone()),
        Edn::Int(n) => {
            let mut cursor = std::io::Cursor::new(&mut digits.bytes[..]);
            // An i64 takes at most 20 bytes in decimal.
            let written = match std::io::Write::write_fmt(&mut cursor, format_args!("{n}")) {
                Ok(()) => cursor.position() as usize,
                Err(_) => return Ok(Cow::Owned(n.to_string())),
            };
            match std::str::from_utf8(&digits.bytes[..written]) {
                Ok(text) => Ok(Cow::Borrowed(text)),
                Err(_) => Ok(Cow::Owned(n.to_string())),
            }
        }
        Edn::Keyword(k) => Ok(Cow::Owned(format!(":{k}"))),
        other => Err(Problem::WrongType {
            field: "key",
            expected: "a string, integer or keyword",
            found: other.kind().to_owned(),
        }),
    }
}

fn string_value(value: &Edn<'_>, field: &'static str) -> Result<String, Problem> {
    match value {
        Edn::Str(s) => Ok(s.clone().into_owned()),
        other => Err(Problem::WrongType {
            field,
            expected: "a string",
            found: other.kind().to_owned(),
        }),
    }
}

fn kv_input(f: &str, value: &Edn<'_>) -> Result<KvInput, Problem> {
    Ok(match f {
        "get" => KvInput::Get,
        "put" => KvInput::Put(string_value(value, "put value")?),
        "append" => KvInput::Append(string_value(value, "append value")?),
        other => {
            return Err(Problem::UnknownFunction {
                found: format!(":{other}"),
                expected: ":get, :put or :append",
            })
        }
    })
}

fn apply_kv_event(
    history: &mut KvHistory,
    outstanding: &mut Outstanding,
    key: &str,
    event: &Event<'_>,
    columns: &Columns<'_>,
) -> Result<(), ParseError> {
    let line = event.line;
    let err = |byte: usize, problem: Problem| columns.error(line, byte, problem);
    let time = line as u64;
    if event.kind == EventType::Invoke {
        outstanding
            .check_free(event.process)
            .map_err(|p| err(columns.process, p))?;
        let input = kv_input(event.f, event.value).map_err(|p| {
            let column = match p {
                Problem::UnknownFunction { .. } => columns.f,
                _ => columns.value,
            };
            err(column, p)
        })?;
        let id = history.invoke(event.process, key, input, time);
        outstanding.open(event.process, id, line, event.f);
        return Ok(());
    }
    let (id, invoke_line) = outstanding.close(event.process, event.f).map_err(|p| {
        let column = match p {
            Problem::NoInvocation { .. } => columns.process,
            _ => columns.f,
        };
        err(column, p)
    })?;
    let Some(op) = history.operation(id) else {
        return Err(err(
            columns.process,
            Problem::NoInvocation {
                process: event.process,
            },
        ));
    };
    if op.key != key {
        return Err(err(
            columns.process,
            Problem::MismatchedCompletion {
                invoke_line,
                detail: format!("invoked on key {:?}, completed on key {key:?}", op.key),
            },
        ));
    }
    let outcome = match event.kind {
        EventType::Fail => KvOutcome::Fail,
        EventType::Info | EventType::Invoke => KvOutcome::Info,
        EventType::Ok => match &op.input {
            KvInput::Get => KvOutcome::Ok {
                value: Some(
                    string_value(event.value, "get value").map_err(|p| err(columns.value, p))?,
                ),
            },
            input => {
                let echoed = kv_input(event.f, event.value).map_err(|p| err(columns.value, p))?;
                if &echoed != input {
                    return Err(err(
                        columns.value,
                        Problem::MismatchedCompletion {
                            invoke_line,
                            detail: format!("invoked {input:?}, completed {echoed:?}"),
                        },
                    ));
                }
                KvOutcome::Ok { value: None }
            }
        },
    };
    history.complete(id, time, outcome);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::{Call, OpId, Outcome};
    use crate::linearizability::{CheckOptions, Verdict};

    #[test]
    fn kv_lines_parse_into_a_kv_history() {
        let text = r#"{:process 0, :type :invoke, :f :append, :key "0", :value "x 0 0 y"}
{:process 1, :type :invoke, :f :get, :key "0", :value nil}
{:process 0, :type :ok, :f :append, :key "0", :value "x 0 0 y"}
{:process 1, :type :ok, :f :get, :key "0", :value "x 0 0 y"}
{:process 2, :type :invoke, :f :put, :key "1", :value "a"}
"#;
        let ParsedHistory::Kv(h) = parse(text).unwrap() else {
            panic!("not kv")
        };
        assert_eq!(h.len(), 3);
        assert_eq!(
            h.operation(OpId(0)).unwrap().input,
            KvInput::Append("x 0 0 y".into())
        );
        assert_eq!(
            h.operation(OpId(1)).unwrap().completion,
            Some((
                4,
                KvOutcome::Ok {
                    value: Some("x 0 0 y".into())
                }
            ))
        );
        assert_eq!(h.operation(OpId(2)).unwrap().completion, None);
        assert_eq!(
            ParsedHistory::Kv(h).check(&CheckOptions::default()),
            Verdict::Linearizable
        );
    }

    #[test]
    fn register_lines_parse_into_a_register_history() {
        let text = "{:type :invoke, :f :cas, :value [nil 2], :process 3, :time 10}\n\
                    {:type :info, :f :nemesis, :value nil, :process :nemesis}\n\
                    ; a comment\n\
                    {:type :fail, :f :cas, :value [nil 2], :process 3, :time 20}\n";
        let ParsedHistory::Register(h) = parse(text).unwrap() else {
            panic!("not register")
        };
        let op = h.operation(OpId(0)).unwrap();
        assert_eq!(
            op.call,
            Call::Cas {
                expected: None,
                new: Some(2)
            }
        );
        assert_eq!(op.outcome(), &Outcome::Fail);
        assert_eq!(op.key, JEPSEN_LOG_KEY);
    }

    fn error_of(text: &str) -> (usize, usize, Problem) {
        let e = parse(text).unwrap_err();
        (e.line, e.column, e.problem)
    }

    #[test]
    fn errors_point_at_the_offending_field() {
        let (line, column, problem) = error_of("\n{:process 0, :type :begin, :f :get, :key \"k\"}");
        assert_eq!((line, column), (2, 20));
        assert!(matches!(problem, Problem::UnknownType { .. }));
        let (_, column, _) =
            error_of(r#"{:process 0, :type :invoke, :f :put, :key "k", :value 5}"#);
        assert_eq!(column, 55);
        assert_eq!(
            error_of(r#"{:process 0, :type :invoke, :f :get}"#),
            (1, 37, Problem::MissingField { field: "key" })
        );
        assert_eq!(
            error_of("[1 2]").2,
            Problem::WrongType {
                field: "line",
                expected: "a map",
                found: "a vector".into()
            }
        );
        let (_, column, problem) = error_of(
            "{:process 0, :type :invoke, :f :get, :key \"k\"}\n{:process 1, :type :invoke, :f :read}",
        );
        assert_eq!(column, 32);
        assert!(matches!(problem, Problem::MixedModels { .. }));
        let (_, column, problem) =
            error_of(r#"{:process 0, :type :ok, :f :get, :key "k", :value ""}"#);
        assert_eq!(
            (column, problem),
            (11, Problem::NoInvocation { process: 0 })
        );
    }

    #[test]
    fn a_get_answered_nil_is_malformed() {
        let text = "{:process 0, :type :invoke, :f :get, :key \"k\", :value nil}\n\
                    {:process 0, :type :ok, :f :get, :key \"k\", :value nil}";
        let (line, _, problem) = error_of(text);
        assert_eq!(line, 2);
        assert!(matches!(
            problem,
            Problem::WrongType {
                field: "get value",
                ..
            }
        ));
    }
}
