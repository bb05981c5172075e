//! Jepsen log lines of a compare-and-set register:
//!
//! ```text
//! INFO  jepsen.util - 3   :invoke   :cas   [1 4]
//! INFO  jepsen.util - 3   :fail   :cas   [1 4]
//! ```
//!
//! Fields are separated by any run of white space. Lines from loggers other
//! than `jepsen.util`, and events of the `:nemesis` process, are skipped;
//! blank lines too. Everything else must be an event:
//!
//! - `:read` (value ignored on invocation; `N` or `nil` when ok),
//!   `:write N` and `:cas [A B]`, with `nil` for the empty register;
//! - `:ok` happened; `:fail` never happened (for `:read`, e.g. `:fail :read
//!   :timed-out`, it constrains nothing), except that a failed `:cas` is
//!   read as Porcupine reads these etcd logs: the register did not hold `A`
//!   ([`FailReading::Porcupine`]; `History::read_failed_cas` re-reads it);
//!   `:info` indeterminate; no completion at all, indeterminate.

use super::edn::{self, Edn};
use super::{tokens, EventType, Outstanding, ParseError, Problem};
use crate::history::{Call, FailReading, History, Outcome, Value};

/// The key a log's single register is recorded under.
pub const JEPSEN_LOG_KEY: &str = "register";

/// The logger whose lines carry operations.
const OPERATION_LOGGER: &str = "jepsen.util";

/// Parses a log into a register history; time is the line number.
///
/// # Errors
/// The first malformed line, with its column.
pub fn parse(text: &str) -> Result<History, ParseError> {
    let mut history = History::new();
    let mut outstanding = Outstanding::default();
    for (index, line_text) in text.lines().enumerate() {
        let line = index + 1;
        let err = |column: usize, problem: Problem| ParseError {
            line,
            column,
            problem,
        };
        let t = tokens(line_text);
        let Some(first) = t.first() else { continue };
        if t.len() < 3 || t[2].text != "-" {
            return Err(err(first.column, Problem::NotALogLine));
        }
        if t[1].text != OPERATION_LOGGER {
            continue;
        }
        let end_column = line_text.chars().count() + 1;
        let field = |i: usize, name: &'static str| {
            t.get(i)
                .copied()
                .ok_or_else(|| err(end_column, Problem::MissingField { field: name }))
        };
        let process = field(3, "process")?;
        if process.text.starts_with(':') {
            // :nemesis and other non-client processes.
            continue;
        }
        let kind = field(4, "event type")?;
        let f = field(5, "operation")?;
        let value = field(6, "value")?;
        let columns = Columns {
            text: line_text,
            process: process.byte,
            f: f.byte,
            value: value.byte,
        };
        let process_id = process.text.parse::<u64>().map_err(|_| {
            err(
                process.column,
                Problem::WrongType {
                    field: "process",
                    expected: "an integer",
                    found: process.text.to_owned(),
                },
            )
        })?;
        let kind_name = keyword(kind.text, "event type").map_err(|p| err(kind.column, p))?;
        let kind = EventType::from_name(kind_name).map_err(|p| err(kind.column, p))?;
        let f_name = keyword(f.text, "operation").map_err(|p| err(f.column, p))?;
        let value = edn::parse_value(&line_text[value.byte..], line).map_err(|mut e| {
            e.column += value.column - 1;
            e
        })?;
        let event = Event {
            line,
            process: process_id,
            kind,
            f: f_name,
            value: &value,
        };
        apply_register_event(
            &mut history,
            &mut outstanding,
            JEPSEN_LOG_KEY,
            &event,
            &columns,
            FailReading::Porcupine,
        )?;
    }
    Ok(history)
}

fn keyword<'a>(text: &'a str, field: &'static str) -> Result<&'a str, Problem> {
    match text.strip_prefix(':') {
        Some(name) if !name.is_empty() => Ok(name),
        _ => Err(Problem::WrongType {
            field,
            expected: "a keyword",
            found: text.to_owned(),
        }),
    }
}

/// One event of a register history, whatever the format.
#[derive(Debug)]
pub(crate) struct Event<'a> {
    pub line: usize,
    pub process: u64,
    pub kind: EventType,
    pub f: &'a str,
    pub value: &'a Edn<'a>,
}

/// Where each field of an event starts in its line (byte offsets), to
/// point errors at it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Columns<'a> {
    pub text: &'a str,
    pub process: usize,
    pub f: usize,
    pub value: usize,
}

impl Columns<'_> {
    /// An error at byte `byte` of the line, named by character column.
    pub(crate) fn error(&self, line: usize, byte: usize, problem: Problem) -> ParseError {
        ParseError {
            line,
            column: edn::column_of(self.text, byte),
            problem,
        }
    }
}

/// Records one event of a register history, a failed compare-and-set as
/// `reading` says.
pub(crate) fn apply_register_event(
    history: &mut History,
    outstanding: &mut Outstanding,
    key: &str,
    event: &Event<'_>,
    columns: &Columns<'_>,
    reading: FailReading,
) -> Result<(), ParseError> {
    let line = event.line;
    let err = |byte: usize, problem: Problem| columns.error(line, byte, problem);
    let time = line as u64;
    if event.kind == EventType::Invoke {
        outstanding
            .check_free(event.process)
            .map_err(|p| err(columns.process, p))?;
        let call = register_call(event.f, event.value)
            .map_err(|(p, on_value)| err(if on_value { columns.value } else { columns.f }, p))?;
        let id = history.invoke(event.process, key, call, time);
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
    let call = history
        .operation(id)
        .map(|op| op.call.clone())
        .ok_or_else(|| {
            err(
                columns.process,
                Problem::NoInvocation {
                    process: event.process,
                },
            )
        })?;
    let outcome = match event.kind {
        EventType::Fail
            if matches!(call, Call::Cas { .. }) && reading == FailReading::Porcupine =>
        {
            Outcome::Refused
        }
        EventType::Fail => Outcome::Fail,
        EventType::Info | EventType::Invoke => Outcome::Info,
        EventType::Ok => match &call {
            Call::Read => Outcome::Ok {
                value: register_value(event.value, "read value")
                    .map_err(|p| err(columns.value, p))?,
            },
            Call::Write(_) | Call::Cas { .. } => {
                let echoed =
                    register_call(event.f, event.value).map_err(|(p, _)| err(columns.value, p))?;
                if echoed != call {
                    return Err(err(
                        columns.value,
                        Problem::MismatchedCompletion {
                            invoke_line,
                            detail: format!("invoked {call:?}, completed {echoed:?}"),
                        },
                    ));
                }
                Outcome::Ok { value: None }
            }
        },
    };
    history.complete(id, time, outcome);
    Ok(())
}

/// The call named by `f` with argument `value`; on error, whether the value
/// (rather than the operation name) is at fault.
fn register_call(f: &str, value: &Edn<'_>) -> Result<Call, (Problem, bool)> {
    match f {
        "read" => Ok(Call::Read),
        "write" => Ok(Call::Write(
            register_value(value, "write value").map_err(|p| (p, true))?,
        )),
        "cas" => match value {
            Edn::Vector(pair) | Edn::List(pair) if pair.len() == 2 => Ok(Call::Cas {
                expected: register_value(&pair[0], "cas expected value").map_err(|p| (p, true))?,
                new: register_value(&pair[1], "cas new value").map_err(|p| (p, true))?,
            }),
            other => Err((
                Problem::WrongType {
                    field: "cas value",
                    expected: "a vector [expected new]",
                    found: other.kind().to_owned(),
                },
                true,
            )),
        },
        other => Err((
            Problem::UnknownFunction {
                found: format!(":{other}"),
                expected: ":read, :write or :cas",
            },
            false,
        )),
    }
}

fn register_value(value: &Edn<'_>, field: &'static str) -> Result<Option<Value>, Problem> {
    match value {
        Edn::Nil => Ok(None),
        Edn::Int(n) => Ok(Some(*n)),
        other => Err(Problem::WrongType {
            field,
            expected: "an integer or nil",
            found: other.kind().to_owned(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::OpId;

    #[test]
    fn parses_tabs_and_space_runs_alike() {
        let text = "INFO  jepsen.util - 0\t:invoke\t:write\t3\n\
                    INFO  jepsen.util - 1   :invoke :cas    [3 nil]\n\
                    INFO  jepsen.util - 0\t:ok\t:write\t3\n\
                    INFO  jepsen.util - 1   :fail   :cas    [3 nil]\n";
        let h = parse(text).unwrap();
        assert_eq!(h.len(), 2);
        let w = h.operation(OpId(0)).unwrap();
        assert_eq!((w.call.clone(), w.invoke_nanos), (Call::Write(Some(3)), 1));
        assert_eq!(
            w.completion
                .as_ref()
                .map(|c| (c.time_nanos, c.outcome.clone())),
            Some((3, Outcome::Ok { value: None }))
        );
        let c = h.operation(OpId(1)).unwrap();
        assert_eq!(
            c.call,
            Call::Cas {
                expected: Some(3),
                new: None
            }
        );
        assert_eq!(c.outcome(), &Outcome::Refused);
    }

    #[test]
    fn timed_out_read_is_a_failed_read_and_info_is_indeterminate() {
        let text = "INFO  jepsen.util - 0 :invoke :read nil\n\
                    INFO  jepsen.util - 1 :invoke :write 1\n\
                    INFO  jepsen.util - 0 :fail :read :timed-out\n\
                    INFO  jepsen.util - 1 :info :write :timed-out\n\
                    INFO  jepsen.util - 2 :invoke :read nil\n\
                    INFO  jepsen.util - 2 :ok :read 1\n";
        let h = parse(text).unwrap();
        assert_eq!(h.operation(OpId(0)).unwrap().outcome(), &Outcome::Fail);
        assert_eq!(h.operation(OpId(1)).unwrap().outcome(), &Outcome::Info);
        assert_eq!(
            h.operation(OpId(2)).unwrap().outcome(),
            &Outcome::Ok { value: Some(1) }
        );
    }

    #[test]
    fn other_loggers_and_the_nemesis_are_skipped() {
        let text = "\nINFO  jepsen.core - Running test\n\
                    INFO  jepsen.util - :nemesis :info :start nil\n";
        assert!(parse(text).unwrap().is_empty());
    }

    fn error_of(text: &str) -> (usize, usize, Problem) {
        let e = parse(text).unwrap_err();
        (e.line, e.column, e.problem)
    }

    #[test]
    fn malformed_lines_name_line_and_column() {
        assert_eq!(error_of("garbage"), (1, 1, Problem::NotALogLine));
        assert_eq!(
            error_of("INFO jepsen.util - x :invoke :read nil").1,
            20,
            "process column"
        );
        assert_eq!(
            error_of("INFO jepsen.util - 0 :invoke :read"),
            (1, 35, Problem::MissingField { field: "value" })
        );
        let (_, column, problem) = error_of("INFO jepsen.util - 0 :invoke :cas [1 2");
        assert_eq!((column, problem), (39, Problem::UnexpectedEnd));
        let (_, column, _) = error_of("INFO jepsen.util - 0 :invoke :cas [1 \"x\"]");
        assert_eq!(column, 35);
        let (_, column, problem) = error_of("INFO jepsen.util - 0 :begin :read nil");
        assert_eq!(column, 22);
        assert!(matches!(problem, Problem::UnknownType { .. }));
        let (_, column, _) = error_of("INFO jepsen.util - 0 :invoke :incr 1");
        assert_eq!(column, 30);
    }

    #[test]
    fn recorder_impossibilities_are_errors_not_panics() {
        let busy = "INFO jepsen.util - 0 :invoke :read nil\nINFO jepsen.util - 0 :invoke :read nil";
        assert_eq!(
            error_of(busy),
            (
                2,
                20,
                Problem::ProcessBusy {
                    process: 0,
                    since_line: 1
                }
            )
        );
        let orphan = "INFO jepsen.util - 4 :ok :read 1";
        assert_eq!(
            error_of(orphan),
            (1, 20, Problem::NoInvocation { process: 4 })
        );
        let mismatched =
            "INFO jepsen.util - 0 :invoke :read nil\nINFO jepsen.util - 0 :ok :write 1";
        assert!(matches!(
            error_of(mismatched).2,
            Problem::MismatchedCompletion { .. }
        ));
        let echo = "INFO jepsen.util - 0 :invoke :write 1\nINFO jepsen.util - 0 :ok :write 2";
        let (line, column, problem) = error_of(echo);
        assert_eq!((line, column), (2, 33), "{problem}");
        assert!(matches!(problem, Problem::MismatchedCompletion { .. }));
    }
}
