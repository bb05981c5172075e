//! Reading histories written by other tools.
//!
//! - [`jepsen_log`]: Jepsen log lines (`INFO  jepsen.util - 3 :ok :read 4`),
//!   a compare-and-set register.
//! - [`jepsen_edn`]: one EDN map per line (`{:process 0, :type :ok, ...}`),
//!   either a string kv map (`:get`/`:put`/`:append`) or a register
//!   (`:read`/`:write`/`:cas`).
//! - [`edn`]: the small EDN reader both use.
//! - [`enigma`]: EnigmaDB's own JSON Lines history files (register, kv or
//!   set), with recorded times, consistency levels and version timestamps.
//!
//! In the Jepsen formats, time in a parsed history is the 1-based line
//! number of the event: the order of lines is the order the tool observed,
//! which is all real-time precedence needs. EnigmaDB files carry times.
//! Malformed input is an error naming the line and the 1-based character
//! column, never a panic.
//!
//! A failed compare-and-set is read as its format means it
//! ([`Format::fail_reading`]): Knossos's reading for EDN (Jepsen's own
//! meaning: it did not take effect), Porcupine's for the log lines of its
//! etcd histories and for EnigmaDB's files (the comparison was made and
//! failed). [`ParsedHistory::read_failed_cas`] re-reads a parsed history.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use thiserror::Error;

use crate::history::{FailReading, History, OpId, Recorded, Recording};
use crate::kv::{check_kv_linearizable_with_stop, KvHistory};
use crate::linearizability::{check_linearizable_with_stop, CheckOptions, Verdict};
use crate::report::TimelineOp;
use crate::set::{check_set_linearizable_with_stop, SetHistory};

pub mod edn;
pub mod enigma;
pub mod jepsen_edn;
pub mod jepsen_log;

/// Malformed input: where and what.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("line {line}, column {column}: {problem}")]
pub struct ParseError {
    /// 1-based line.
    pub line: usize,
    /// 1-based character column.
    pub column: usize,
    /// What is wrong there.
    pub problem: Problem,
}

/// What is wrong with a piece of input.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum Problem {
    /// A character that cannot start or close anything here.
    #[error("unexpected {found:?}")]
    Unexpected {
        /// The character.
        found: char,
    },
    /// The line ended inside a value, or holds no value.
    #[error("unexpected end of line")]
    UnexpectedEnd,
    /// More after a complete value.
    #[error("unexpected input after the value")]
    TrailingInput,
    /// A map with a key and no value.
    #[error("map has a key without a value")]
    OddMap,
    /// Collections nested deeper than the reader allows.
    #[error("nested deeper than {depth_max} levels")]
    TooDeep {
        /// The limit.
        depth_max: usize,
    },
    /// A string with no closing quote.
    #[error("string is not closed")]
    UnterminatedString,
    /// An unknown escape in a string.
    #[error("unknown escape \\{found}")]
    BadEscape {
        /// The character after the backslash.
        found: char,
    },
    /// A lone `:`.
    #[error("empty keyword")]
    EmptyKeyword,
    /// Not `LEVEL logger - message`.
    #[error("not a log line (expected `LEVEL logger - process type f value`)")]
    NotALogLine,
    /// A field the format requires is absent.
    #[error("missing {field}")]
    MissingField {
        /// The field.
        field: &'static str,
    },
    /// A field of the wrong kind.
    #[error("{field} should be {expected}, found {found}")]
    WrongType {
        /// The field.
        field: &'static str,
        /// What it should be.
        expected: &'static str,
        /// What it is.
        found: String,
    },
    /// An event type other than invoke / ok / fail / info.
    #[error("unknown event type {found} (expected :invoke, :ok, :fail or :info)")]
    UnknownType {
        /// As written.
        found: String,
    },
    /// An operation the model does not know.
    #[error("unknown operation {found} (expected {expected})")]
    UnknownFunction {
        /// As written.
        found: String,
        /// The operations this format allows.
        expected: &'static str,
    },
    /// A process invoked while its previous operation was outstanding.
    #[error("process {process} invoked while its operation from line {since_line} is outstanding")]
    ProcessBusy {
        /// The process.
        process: u64,
        /// Where its outstanding operation was invoked.
        since_line: usize,
    },
    /// A completion for a process with nothing outstanding.
    #[error("process {process} completes an operation it never invoked")]
    NoInvocation {
        /// The process.
        process: u64,
    },
    /// A completion that does not match its invocation.
    #[error("completion does not match the invocation on line {invoke_line}: {detail}")]
    MismatchedCompletion {
        /// Where the operation was invoked.
        invoke_line: usize,
        /// What differs.
        detail: String,
    },
    /// A line that is not valid JSON.
    #[error("invalid JSON: {message}")]
    BadJson {
        /// The JSON reader's description.
        message: String,
    },
    /// A `run` line after the first line.
    #[error("the run line must be the first line of the file")]
    MisplacedRunLine,
    /// The file mixes operations of different models.
    #[error("operation {found} does not belong to the {model} model of earlier lines")]
    MixedModels {
        /// As written.
        found: String,
        /// The model chosen from earlier lines.
        model: &'static str,
    },
}

/// A history read from a file, with the model it is checked against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParsedHistory {
    /// A compare-and-set register over integers.
    Register(History),
    /// A string kv map with get / put / append.
    Kv(KvHistory),
    /// A grow-only set of integers with add / read-all.
    Set(SetHistory),
}

/// The operations of `history` on `key`, as bars on a time axis.
fn timeline_of<T: Recorded + fmt::Display>(history: &Recording<T>, key: &str) -> Vec<TimelineOp> {
    history
        .operations()
        .iter()
        .filter(|op| op.key() == key)
        .map(|op| TimelineOp {
            id: op.id(),
            process: op.process(),
            label: op.to_string(),
            invoke_time: op.invoke_time(),
            response_time: op.completion_time(),
        })
        .collect()
}

impl ParsedHistory {
    /// Checks it against its model.
    pub fn check(&self, options: &CheckOptions) -> Verdict {
        self.check_with_stop(options, &|| false)
    }

    /// Checks it against its model, answering [`Verdict::Unknown`] once
    /// `stop` answers true (polled between chunks of search steps).
    pub fn check_with_stop(
        &self,
        options: &CheckOptions,
        stop: &(dyn Fn() -> bool + Sync),
    ) -> Verdict {
        match self {
            ParsedHistory::Register(h) => check_linearizable_with_stop(h, options, stop),
            ParsedHistory::Kv(h) => check_kv_linearizable_with_stop(h, options, stop),
            ParsedHistory::Set(h) => check_set_linearizable_with_stop(h, options, stop),
        }
    }

    /// The operations on `key`, as the HTML report draws them.
    pub fn timeline(&self, key: &str) -> Vec<TimelineOp> {
        match self {
            ParsedHistory::Register(h) => timeline_of(h, key),
            ParsedHistory::Kv(h) => timeline_of(h, key),
            ParsedHistory::Set(h) => timeline_of(h, key),
        }
    }

    /// Reads every failed compare-and-set as `reading` says (only register
    /// histories have any).
    pub fn read_failed_cas(&mut self, reading: FailReading) {
        if let ParsedHistory::Register(h) = self {
            h.read_failed_cas(reading);
        }
    }

    /// The model's name: `register`, `kv` or `set`.
    pub fn model_name(&self) -> &'static str {
        match self {
            ParsedHistory::Register(_) => "register",
            ParsedHistory::Kv(_) => "kv",
            ParsedHistory::Set(_) => "set",
        }
    }

    /// Number of operations.
    pub fn len(&self) -> usize {
        match self {
            ParsedHistory::Register(h) => h.len(),
            ParsedHistory::Kv(h) => h.len(),
            ParsedHistory::Set(h) => h.len(),
        }
    }

    /// Whether there are no operations.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Which format a text is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Jepsen log lines.
    JepsenLog,
    /// One EDN map per line.
    JepsenEdn,
    /// EnigmaDB's JSON Lines.
    Enigma,
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Format::JepsenLog => "jepsen-log",
            Format::JepsenEdn => "jepsen-edn",
            Format::Enigma => "enigma",
        })
    }
}

impl Format {
    /// What a failed compare-and-set means in this format unless told
    /// otherwise: Jepsen's own meaning, as Knossos reads it, for EDN
    /// histories; Porcupine's reading for Jepsen log lines (its etcd
    /// histories, whose recorded verdicts rest on it) and for EnigmaDB's
    /// files (`docs/FORMAT.md`).
    pub fn fail_reading(self) -> FailReading {
        match self {
            Format::JepsenEdn => FailReading::Knossos,
            Format::JepsenLog | Format::Enigma => FailReading::Porcupine,
        }
    }
}

/// Guesses the format from the first line that is not blank: a JSON object
/// (`{` then a quoted key, or `{}`) is EnigmaDB's, any other `{` starts an
/// EDN map, anything else is taken for a log.
pub fn detect_format(text: &str) -> Format {
    match text.lines().map(str::trim_start).find(|l| !l.is_empty()) {
        Some(line) if line.starts_with('{') => match line[1..].trim_start().chars().next() {
            Some('"' | '}') => Format::Enigma,
            _ => Format::JepsenEdn,
        },
        _ => Format::JepsenLog,
    }
}

/// Parses a history in `format`, reading a failed compare-and-set as the
/// format means it ([`Format::fail_reading`]).
///
/// # Errors
/// The first malformed line, with its column.
pub fn parse(text: &str, format: Format) -> Result<ParsedHistory, ParseError> {
    match format {
        Format::JepsenLog => jepsen_log::parse(text).map(ParsedHistory::Register),
        Format::JepsenEdn => jepsen_edn::parse(text),
        Format::Enigma => enigma::parse(text),
    }
}

/// Why a history file could not be loaded.
#[derive(Debug, Error)]
pub enum LoadError {
    /// It could not be read.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// It is malformed.
    #[error("{}: {source}", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// Where and why.
        source: ParseError,
    },
}

/// Reads and parses a history file, detecting its format.
///
/// # Errors
/// The file cannot be read, or a line is malformed.
pub fn load_file(path: &Path) -> Result<ParsedHistory, LoadError> {
    let text = std::fs::read_to_string(path).map_err(|source| LoadError::Io {
        path: path.to_owned(),
        source,
    })?;
    parse(&text, detect_format(&text)).map_err(|source| LoadError::Parse {
        path: path.to_owned(),
        source,
    })
}

/// Tokens of a line split on white space, each with its 1-based character
/// column and byte offset.
pub(crate) fn tokens(line: &str) -> Vec<Token<'_>> {
    let mut out = Vec::new();
    let mut start: Option<(usize, usize)> = None;
    for (column, (byte, c)) in line.char_indices().enumerate() {
        match (c.is_whitespace(), start) {
            (true, Some((b, col))) => {
                out.push(Token {
                    text: &line[b..byte],
                    column: col + 1,
                    byte: b,
                });
                start = None;
            }
            (false, None) => start = Some((byte, column)),
            _ => {}
        }
    }
    if let Some((b, col)) = start {
        out.push(Token {
            text: &line[b..],
            column: col + 1,
            byte: b,
        });
    }
    out
}

/// A white-space separated word of a line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Token<'a> {
    pub text: &'a str,
    pub column: usize,
    pub byte: usize,
}

/// The four kinds of event in a Jepsen history.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EventType {
    Invoke,
    Ok,
    Fail,
    Info,
}

impl EventType {
    /// From a keyword name (without the colon).
    pub(crate) fn from_name(name: &str) -> Result<Self, Problem> {
        Ok(match name {
            "invoke" => EventType::Invoke,
            "ok" => EventType::Ok,
            "fail" => EventType::Fail,
            "info" => EventType::Info,
            _ => {
                return Err(Problem::UnknownType {
                    found: format!(":{name}"),
                })
            }
        })
    }
}

/// Each process's outstanding invocation, to pair completions with
/// invocations and to reject what a recorder could not have written.
#[derive(Debug, Default)]
pub(crate) struct Outstanding {
    /// process -> (operation, invocation line, operation name)
    open: BTreeMap<u64, (OpId, usize, Cow<'static, str>)>,
}

/// Every operation name a format knows, so that recording one allocates
/// nothing.
const OPERATION_NAMES: [&str; 8] = [
    "read", "write", "cas", "get", "put", "append", "add", "read-all",
];

impl Outstanding {
    /// Fails if `process` has an operation outstanding.
    pub(crate) fn check_free(&self, process: u64) -> Result<(), Problem> {
        match self.open.get(&process) {
            Some((_, since_line, _)) => Err(Problem::ProcessBusy {
                process,
                since_line: *since_line,
            }),
            None => Ok(()),
        }
    }

    pub(crate) fn open(&mut self, process: u64, id: OpId, line: usize, f: &str) {
        let name = OPERATION_NAMES
            .iter()
            .find(|&&known| known == f)
            .map_or_else(|| Cow::Owned(f.to_owned()), |&known| Cow::Borrowed(known));
        self.open.insert(process, (id, line, name));
    }

    /// Closes `process`'s operation, which must be an `f`: returns it and
    /// its invocation line.
    pub(crate) fn close(&mut self, process: u64, f: &str) -> Result<(OpId, usize), Problem> {
        let Some((id, line, invoked)) = self.open.remove(&process) else {
            return Err(Problem::NoInvocation { process });
        };
        if invoked != f {
            return Err(Problem::MismatchedCompletion {
                invoke_line: line,
                detail: format!("invoked :{invoked}, completed :{f}"),
            });
        }
        Ok((id, line))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_carry_character_columns() {
        let t = tokens("  a\tbé  c ");
        let got: Vec<(&str, usize)> = t.iter().map(|t| (t.text, t.column)).collect();
        assert_eq!(got, vec![("a", 3), ("bé", 5), ("c", 9)]);
    }

    #[test]
    fn format_is_detected_from_the_first_line() {
        assert_eq!(detect_format("\n  {:process 0}"), Format::JepsenEdn);
        assert_eq!(detect_format("{ \"type\": \"ok\"}"), Format::Enigma);
        assert_eq!(
            detect_format("INFO  jepsen.util - 0 :invoke :read nil"),
            Format::JepsenLog
        );
        assert_eq!(detect_format(""), Format::JepsenLog);
    }

    #[test]
    fn parse_error_display_names_line_and_column() {
        let e = ParseError {
            line: 3,
            column: 14,
            problem: Problem::OddMap,
        };
        assert_eq!(
            e.to_string(),
            "line 3, column 14: map has a key without a value"
        );
    }
}
