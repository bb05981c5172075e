//! EnigmaDB's own history files: JSON Lines, one event per line.
//!
//! ```text
//! {"type":"run","clock_skew":false,"replication_factor":3,"session_timestamps":false}
//! {"type":"invoke","process":0,"key":"k1","f":"write","value":3,"time":100,"level":"QUORUM"}
//! {"type":"ok","process":0,"key":"k1","f":"write","value":3,"time":250,"level":"QUORUM","timestamp":17,"writer":2}
//! ```
//!
//! The layout is specified in `docs/FORMAT.md` ("History files (JSON
//! Lines)"). An optional first line of `type` `run` records facts about the
//! run the history came from ([`RunFacts`]: clock skew, replication factor,
//! whether sessions carried their timestamps), which decide what each
//! consistency level promises (see [`crate::promises`]). Event fields:
//! `type` (`invoke`, `ok`, `fail`, `info`), `process`
//! (non-negative integer), `key` (string), `f` (`read`/`write`/`cas` for a
//! register of integers, `get`/`put`/`append` for a string map, `add` /
//! `read-all` for a grow-only set), `value`, `time` (nanoseconds, any
//! origin), and the optional `level` (`ONE`, `TWO`, `QUORUM`, `ALL`,
//! `SERIAL`), `timestamp` (the version the operation wrote or read, e.g.
//! its HLC; `0` for a read that found no version) and `writer` (the
//! tie-break of equal timestamps, e.g. the node that coordinated the write).
//! Unknown fields are ignored so the format can grow.
//!
//! [`parse_events`] reads and validates lines on their own; [`assemble`]
//! pairs completions with invocations into a history; [`write_events`] and
//! [`events_of_history`] go the other way. Malformed input is an error
//! naming the line and the 1-based character column, never a panic.

use std::collections::BTreeMap;
use std::fmt;

use serde_json::Value as Json;

use super::{EventType, Outstanding, ParseError, ParsedHistory, Problem};
use crate::history::{Call, History, OpId, Outcome, Value};
use crate::kv::{KvHistory, KvOutcome};
use crate::model::KvInput;
use crate::promises::{RunFacts, Version};
use crate::set::{SetHistory, SetInput, SetOutcome};

/// The kind of an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum EventKind {
    /// The client asked.
    Invoke,
    /// It happened.
    Ok,
    /// It definitely did not happen.
    Fail,
    /// Unknown whether it happened.
    Info,
}

/// The operation an event is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Function {
    /// Register read.
    Read,
    /// Register write.
    Write,
    /// Register compare-and-set.
    Cas,
    /// String map get.
    Get,
    /// String map put.
    Put,
    /// String map append.
    Append,
    /// Set add.
    Add,
    /// Set read of every element.
    ReadAll,
}

/// A consistency level, as the client asked for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    /// One replica.
    One,
    /// Two replicas.
    Two,
    /// A majority of replicas.
    Quorum,
    /// Every replica.
    All,
    /// Paxos (linearizable).
    Serial,
}

/// The `value` field, typed by the operation.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum EventValue {
    /// `null`: none, or the empty register.
    Nil,
    /// An integer (register value, set element).
    Int(Value),
    /// A string (map value).
    Text(String),
    /// `[expected, new]` of a compare-and-set.
    Cas {
        /// The value the register must hold.
        expected: Option<Value>,
        /// The value it gets.
        new: Option<Value>,
    },
    /// Elements read from a set.
    Elements(Vec<Value>),
}

/// One line of a history file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// invoke / ok / fail / info.
    pub kind: EventKind,
    /// The client process; at most one operation outstanding each.
    pub process: u64,
    /// The key.
    pub key: String,
    /// The operation.
    pub f: Function,
    /// Its argument (invoke) or result (completion).
    pub value: EventValue,
    /// When, in nanoseconds; a completion is never before its invocation.
    pub time: u64,
    /// The consistency level asked for, if recorded.
    pub level: Option<Level>,
    /// The version written or read, if recorded (e.g. an HLC timestamp;
    /// `0`: a read that found no version).
    pub timestamp: Option<u64>,
    /// The tie-break of equal timestamps, if recorded (e.g. the node that
    /// coordinated the write).
    pub writer: Option<u64>,
}

/// The `run` line: facts about the run a history came from.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RunLine {
    /// The facts.
    pub facts: RunFacts,
    /// Where the history came from (e.g. the command that replays the run),
    /// if recorded.
    pub source: Option<String>,
}

/// One line of a history file: the run facts or an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Line {
    /// `{"type":"run",...}`.
    Run(RunLine),
    /// An operation's invocation or completion.
    Event(Event),
}

impl EventKind {
    fn name(self) -> &'static str {
        match self {
            EventKind::Invoke => "invoke",
            EventKind::Ok => "ok",
            EventKind::Fail => "fail",
            EventKind::Info => "info",
        }
    }
}

impl Function {
    /// Every operation, for parsing and tests.
    pub const ALL: [Function; 8] = [
        Function::Read,
        Function::Write,
        Function::Cas,
        Function::Get,
        Function::Put,
        Function::Append,
        Function::Add,
        Function::ReadAll,
    ];

    /// Its name in files.
    pub fn name(self) -> &'static str {
        match self {
            Function::Read => "read",
            Function::Write => "write",
            Function::Cas => "cas",
            Function::Get => "get",
            Function::Put => "put",
            Function::Append => "append",
            Function::Add => "add",
            Function::ReadAll => "read-all",
        }
    }

    /// The model it belongs to.
    pub fn model(self) -> &'static str {
        match self {
            Function::Read | Function::Write | Function::Cas => "register",
            Function::Get | Function::Put | Function::Append => "kv",
            Function::Add | Function::ReadAll => "set",
        }
    }
}

impl Level {
    /// Every level.
    pub const ALL: [Level; 5] = [
        Level::One,
        Level::Two,
        Level::Quorum,
        Level::All,
        Level::Serial,
    ];

    /// Its name in files.
    pub fn name(self) -> &'static str {
        match self {
            Level::One => "ONE",
            Level::Two => "TWO",
            Level::Quorum => "QUORUM",
            Level::All => "ALL",
            Level::Serial => "SERIAL",
        }
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// 1-based character column of byte offset `byte` in `line`.
fn char_column(line: &str, byte: usize) -> usize {
    let byte = byte.min(line.len());
    let byte = (0..=byte)
        .rev()
        .find(|&b| line.is_char_boundary(b))
        .unwrap_or(0);
    line[..byte].chars().count() + 1
}

/// Column of field `name`'s key in the line, or of the line's end.
fn field_column(line: &str, name: &str) -> usize {
    let quoted = format!("\"{name}\"");
    line.find(&quoted)
        .map_or_else(|| line.chars().count() + 1, |b| char_column(line, b))
}

/// Parses every line into an [`Event`], without pairing them; the `run`
/// line, if any, is validated and left out.
///
/// # Errors
/// The first malformed line: bad JSON, a missing or ill-typed field, or a
/// value that does not fit its operation.
pub fn parse_events(text: &str) -> Result<Vec<Event>, ParseError> {
    Ok(parse_lines(text)?
        .into_iter()
        .filter_map(|(_, line)| match line {
            Line::Event(e) => Some(e),
            Line::Run(_) => None,
        })
        .collect())
}

/// Parses every non-blank line, with its 1-based line number.
///
/// # Errors
/// As [`parse_events`], and a `run` line that is not the first line or
/// whose fields are ill-typed.
pub fn parse_lines(text: &str) -> Result<Vec<(usize, Line)>, ParseError> {
    let mut lines = Vec::new();
    for (index, line_text) in text.lines().enumerate() {
        if line_text.trim().is_empty() {
            continue;
        }
        let line = parse_line(line_text, index + 1)?;
        if matches!(line, Line::Run(_)) && !lines.is_empty() {
            return Err(ParseError {
                line: index + 1,
                column: field_column(line_text, "type"),
                problem: Problem::MisplacedRunLine,
            });
        }
        lines.push((index + 1, line));
    }
    Ok(lines)
}

fn parse_line(text: &str, line: usize) -> Result<Line, ParseError> {
    let err = |column: usize, problem: Problem| ParseError {
        line,
        column,
        problem,
    };
    let json: Json = serde_json::from_str(text).map_err(|e| {
        // serde_json counts bytes from 1 within the (single) line.
        let column = char_column(text, e.column().saturating_sub(1));
        err(
            column,
            Problem::BadJson {
                message: json_message(&e),
            },
        )
    })?;
    let Json::Object(map) = &json else {
        return Err(err(
            1 + text.len() - text.trim_start().len(),
            Problem::WrongType {
                field: "line",
                expected: "a JSON object",
                found: json_kind(&json).to_owned(),
            },
        ));
    };
    let at = |name: &str| field_column(text, name);
    let required = |name: &'static str| {
        map.get(name).ok_or_else(|| {
            err(
                text.chars().count() + 1,
                Problem::MissingField { field: name },
            )
        })
    };
    let wrong = |name: &'static str, expected: &'static str, found: &Json| {
        err(
            at(name),
            Problem::WrongType {
                field: name,
                expected,
                found: json_kind(found).to_owned(),
            },
        )
    };
    let kind_json = required("type")?;
    if kind_json.as_str() == Some("run") {
        return parse_run_line(map, text, line).map(Line::Run);
    }
    let kind = match kind_json.as_str() {
        Some(name) => match EventType::from_name(name) {
            Ok(EventType::Invoke) => EventKind::Invoke,
            Ok(EventType::Ok) => EventKind::Ok,
            Ok(EventType::Fail) => EventKind::Fail,
            Ok(EventType::Info) => EventKind::Info,
            Err(_) => {
                return Err(err(
                    at("type"),
                    Problem::UnknownType {
                        found: format!("{name:?}"),
                    },
                ))
            }
        },
        None => return Err(wrong("type", "a string", kind_json)),
    };
    let process_json = required("process")?;
    let process = process_json
        .as_u64()
        .ok_or_else(|| wrong("process", "a non-negative integer", process_json))?;
    let key_json = required("key")?;
    let key = key_json
        .as_str()
        .ok_or_else(|| wrong("key", "a string", key_json))?
        .to_owned();
    let f_json = required("f")?;
    let f_name = f_json
        .as_str()
        .ok_or_else(|| wrong("f", "a string", f_json))?;
    let f = Function::ALL
        .into_iter()
        .find(|f| f.name() == f_name)
        .ok_or_else(|| {
            err(
                at("f"),
                Problem::UnknownFunction {
                    found: format!("{f_name:?}"),
                    expected: "read, write, cas, get, put, append, add or read-all",
                },
            )
        })?;
    let time_json = required("time")?;
    let time = time_json
        .as_u64()
        .ok_or_else(|| wrong("time", "a non-negative integer", time_json))?;
    let value_json = map.get("value").unwrap_or(&Json::Null);
    let value = event_value(f, kind, value_json).map_err(|(expected, found)| {
        err(
            at("value"),
            Problem::WrongType {
                field: "value",
                expected,
                found,
            },
        )
    })?;
    let level = match map.get("level") {
        None | Some(Json::Null) => None,
        Some(l) => {
            let name = l.as_str().unwrap_or_default();
            Some(
                Level::ALL
                    .into_iter()
                    .find(|level| level.name() == name)
                    .ok_or_else(|| wrong("level", "ONE, TWO, QUORUM, ALL or SERIAL", l))?,
            )
        }
    };
    let optional_u64 = |name: &'static str| match map.get(name) {
        None | Some(Json::Null) => Ok(None),
        Some(t) => t
            .as_u64()
            .map(Some)
            .ok_or_else(|| wrong(name, "a non-negative integer", t)),
    };
    let timestamp = optional_u64("timestamp")?;
    let writer = optional_u64("writer")?;
    Ok(Line::Event(Event {
        kind,
        process,
        key,
        f,
        value,
        time,
        level,
        timestamp,
        writer,
    }))
}

/// The fields of a `run` line; every one is optional.
fn parse_run_line(
    map: &serde_json::Map<String, Json>,
    text: &str,
    line: usize,
) -> Result<RunLine, ParseError> {
    let wrong = |name: &'static str, expected: &'static str, found: &Json| ParseError {
        line,
        column: field_column(text, name),
        problem: Problem::WrongType {
            field: name,
            expected,
            found: json_kind(found).to_owned(),
        },
    };
    let flag = |name: &'static str| match map.get(name) {
        None | Some(Json::Null) => Ok(None),
        Some(Json::Bool(b)) => Ok(Some(*b)),
        Some(other) => Err(wrong(name, "true or false", other)),
    };
    let replication_factor = match map.get("replication_factor") {
        None | Some(Json::Null) => None,
        Some(n) => Some(
            n.as_u64()
                .filter(|&n| n >= 1)
                .and_then(|n| usize::try_from(n).ok())
                .ok_or_else(|| wrong("replication_factor", "a positive integer", n))?,
        ),
    };
    let clock_uncertainty_nanos = match map.get("clock_uncertainty_nanos") {
        None | Some(Json::Null) => None,
        Some(n) => Some(
            n.as_u64()
                .ok_or_else(|| wrong("clock_uncertainty_nanos", "a non-negative integer", n))?,
        ),
    };
    let source = match map.get("source") {
        None | Some(Json::Null) => None,
        Some(Json::String(s)) => Some(s.clone()),
        Some(other) => return Err(wrong("source", "a string", other)),
    };
    Ok(RunLine {
        facts: RunFacts {
            clock_skew: flag("clock_skew")?,
            replication_factor,
            session_timestamps: flag("session_timestamps")?,
            clock_uncertainty_nanos,
            commit_wait: flag("commit_wait")?,
        },
        source,
    })
}

/// The `run` line for `run`, without its line break.
pub fn run_line(run: &RunLine) -> String {
    let mut line = String::from("{\"type\":\"run\"");
    let facts = &run.facts;
    if let Some(skew) = facts.clock_skew {
        line.push_str(&format!(",\"clock_skew\":{skew}"));
    }
    if let Some(rf) = facts.replication_factor {
        line.push_str(&format!(",\"replication_factor\":{rf}"));
    }
    if let Some(sessions) = facts.session_timestamps {
        line.push_str(&format!(",\"session_timestamps\":{sessions}"));
    }
    if let Some(nanos) = facts.clock_uncertainty_nanos {
        line.push_str(&format!(",\"clock_uncertainty_nanos\":{nanos}"));
    }
    if let Some(commit_wait) = facts.commit_wait {
        line.push_str(&format!(",\"commit_wait\":{commit_wait}"));
    }
    if let Some(source) = &run.source {
        line.push_str(&format!(",\"source\":{}", Json::String(source.clone())));
    }
    line.push('}');
    line
}

fn json_message(e: &serde_json::Error) -> String {
    // serde_json appends " at line L column C"; we say where ourselves.
    let text = e.to_string();
    match text.rfind(" at line ") {
        Some(at) => text[..at].to_owned(),
        None => text,
    }
}

fn json_kind(value: &Json) -> &'static str {
    match value {
        Json::Null => "null",
        Json::Bool(_) => "a boolean",
        Json::Number(n) if n.is_i64() || n.is_u64() => "an integer",
        Json::Number(_) => "a number",
        Json::String(_) => "a string",
        Json::Array(_) => "an array",
        Json::Object(_) => "an object",
    }
}

/// Typed value of `f` in an event of `kind`; on error (what it should be,
/// what it is).
fn event_value(
    f: Function,
    kind: EventKind,
    json: &Json,
) -> Result<EventValue, (&'static str, String)> {
    let found = || json_kind(json).to_owned();
    let int = |j: &Json| match j {
        Json::Null => Some(None),
        j => j.as_i64().map(Some),
    };
    let nil_or_int = || match int(json) {
        Some(None) => Ok(EventValue::Nil),
        Some(Some(n)) => Ok(EventValue::Int(n)),
        None => Err(("an integer or null", found())),
    };
    match f {
        Function::Read | Function::Write => nil_or_int(),
        Function::Cas => match json {
            Json::Array(pair) if pair.len() == 2 => match (int(&pair[0]), int(&pair[1])) {
                (Some(expected), Some(new)) => Ok(EventValue::Cas { expected, new }),
                _ => Err(("[expected, new] of integers or null", found())),
            },
            _ => Err(("[expected, new] of integers or null", found())),
        },
        Function::Get if kind != EventKind::Ok => match json {
            Json::Null => Ok(EventValue::Nil),
            Json::String(s) => Ok(EventValue::Text(s.clone())),
            _ => Err(("a string or null", found())),
        },
        Function::Get | Function::Put | Function::Append => match json {
            Json::String(s) => Ok(EventValue::Text(s.clone())),
            _ => Err(("a string", found())),
        },
        Function::Add => match json.as_i64() {
            Some(n) => Ok(EventValue::Int(n)),
            None => Err(("an integer", found())),
        },
        Function::ReadAll => match json {
            Json::Null if kind != EventKind::Ok => Ok(EventValue::Nil),
            Json::Array(items) => items
                .iter()
                .map(Json::as_i64)
                .collect::<Option<Vec<_>>>()
                .map(EventValue::Elements)
                .ok_or(("an array of integers", found())),
            _ => Err(("an array of integers", found())),
        },
    }
}

/// Writes events as JSON Lines, one per line, fields in a fixed order.
pub fn write_events(events: &[Event]) -> String {
    let mut out = String::new();
    for e in events {
        out.push_str(&event_line(e));
        out.push('\n');
    }
    out
}

fn event_line(e: &Event) -> String {
    let opt = |v: Option<Value>| v.map_or_else(|| "null".to_owned(), |n| n.to_string());
    let value = match &e.value {
        EventValue::Nil => "null".to_owned(),
        EventValue::Int(n) => n.to_string(),
        EventValue::Text(s) => Json::String(s.clone()).to_string(),
        EventValue::Cas { expected, new } => format!("[{},{}]", opt(*expected), opt(*new)),
        EventValue::Elements(items) => format!(
            "[{}]",
            items
                .iter()
                .map(i64::to_string)
                .collect::<Vec<_>>()
                .join(",")
        ),
    };
    let mut line = format!(
        "{{\"type\":\"{}\",\"process\":{},\"key\":{},\"f\":\"{}\",\"value\":{value},\"time\":{}",
        e.kind.name(),
        e.process,
        Json::String(e.key.clone()),
        e.f.name(),
        e.time
    );
    if let Some(level) = e.level {
        line.push_str(&format!(",\"level\":\"{level}\""));
    }
    if let Some(ts) = e.timestamp {
        line.push_str(&format!(",\"timestamp\":{ts}"));
    }
    if let Some(writer) = e.writer {
        line.push_str(&format!(",\"writer\":{writer}"));
    }
    line.push('}');
    line
}

/// The events of a recorded register history, in time order, without levels
/// or timestamps. At equal times completions come first: a process may
/// invoke its next operation at the instant its previous one completed, and
/// the file must show the completion before the new invocation. (Order
/// within equal times does not change the verdict: the checker takes
/// operations that touch at one instant as concurrent.)
pub fn events_of_history(history: &History) -> Vec<Event> {
    leveled_events_of_history(history, &BTreeMap::new(), &BTreeMap::new())
}

/// [`events_of_history`], with each operation's level (from `levels`) on
/// both its events and its version (from `versions`) on its completion.
pub fn leveled_events_of_history(
    history: &History,
    levels: &BTreeMap<OpId, Level>,
    versions: &BTreeMap<OpId, Version>,
) -> Vec<Event> {
    let mut timed: Vec<(u64, bool, usize, Event)> = Vec::with_capacity(history.len() * 2);
    for op in history.operations() {
        let (f, value) = match &op.call {
            Call::Read => (Function::Read, EventValue::Nil),
            Call::Write(v) => (Function::Write, v.map_or(EventValue::Nil, EventValue::Int)),
            Call::Cas { expected, new } => (
                Function::Cas,
                EventValue::Cas {
                    expected: *expected,
                    new: *new,
                },
            ),
        };
        let level = levels.get(&op.id).copied();
        let event = |kind, value, time| Event {
            kind,
            process: op.process,
            key: op.key.clone(),
            f,
            value,
            time,
            level,
            timestamp: None,
            writer: None,
        };
        timed.push((
            op.invoke_nanos,
            false,
            op.id.0,
            event(EventKind::Invoke, value.clone(), op.invoke_nanos),
        ));
        if let Some(c) = &op.completion {
            let (kind, value) = match (&c.outcome, &op.call) {
                (Outcome::Ok { value }, Call::Read) => (
                    EventKind::Ok,
                    value.map_or(EventValue::Nil, EventValue::Int),
                ),
                (Outcome::Ok { .. }, _) => (EventKind::Ok, value),
                (Outcome::Fail | Outcome::Refused, _) => (EventKind::Fail, value),
                (Outcome::Info, _) => (EventKind::Info, value),
            };
            let mut completion = event(kind, value, c.time_nanos);
            if let Some(version) = versions.get(&op.id) {
                completion.timestamp = Some(version.timestamp);
                completion.writer = Some(version.writer);
            }
            timed.push((c.time_nanos, true, op.id.0, completion));
        }
    }
    timed.sort_by_key(|(t, is_completion, id, _)| (*t, !*is_completion, *id));
    timed.into_iter().map(|(_, _, _, e)| e).collect()
}

/// A history file assembled into operations, with what the file recorded
/// beyond the model: the run facts, and the level and version of each
/// operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assembled {
    /// The operations, for the model their `f` names.
    pub history: ParsedHistory,
    /// The `run` line, if the file has one.
    pub run: Option<RunLine>,
    /// Level of each operation that recorded one (from its invocation).
    pub levels: BTreeMap<OpId, Level>,
    /// Version of each operation whose completion recorded a `timestamp`
    /// (with its `writer`, 0 when absent).
    pub versions: BTreeMap<OpId, Version>,
}

/// Parses a history file into a history.
///
/// # Errors
/// As [`parse_events`], and events that do not pair up: a process invoking
/// while busy, a completion with no invocation, a completion of another
/// operation or key, one before its invocation, or models mixed in a file.
pub fn parse(text: &str) -> Result<ParsedHistory, ParseError> {
    parse_assembled(text).map(|a| a.history)
}

/// Parses a history file, keeping the run facts, levels and versions.
///
/// # Errors
/// As [`parse`].
pub fn parse_assembled(text: &str) -> Result<Assembled, ParseError> {
    let mut run = None;
    let mut numbered: Vec<(usize, Event)> = Vec::new();
    for (line, parsed) in parse_lines(text)? {
        match parsed {
            Line::Run(r) => run = Some(r),
            Line::Event(e) => numbered.push((line, e)),
        }
    }
    let mut assembled = assemble(&numbered, text)?;
    assembled.run = run;
    Ok(assembled)
}

/// Pairs events (with their line numbers) into operations.
fn assemble(events: &[(usize, Event)], text: &str) -> Result<Assembled, ParseError> {
    let line_text = |line: usize| text.lines().nth(line - 1).unwrap_or_default();
    let mut history = match events.first() {
        Some((_, e)) if e.f.model() == "kv" => ParsedHistory::Kv(KvHistory::new()),
        Some((_, e)) if e.f.model() == "set" => ParsedHistory::Set(SetHistory::new()),
        _ => ParsedHistory::Register(History::new()),
    };
    let model = match &history {
        ParsedHistory::Register(_) => "register",
        ParsedHistory::Kv(_) => "kv",
        ParsedHistory::Set(_) => "set",
    };
    let mut outstanding = Outstanding::default();
    // Per operation: invocation time, key.
    let mut invoked: BTreeMap<OpId, (u64, String)> = BTreeMap::new();
    let mut levels = BTreeMap::new();
    let mut versions = BTreeMap::new();
    for (line, e) in events {
        let line = *line;
        let at = |name: &str| field_column(line_text(line), name);
        let err = |column: usize, problem: Problem| ParseError {
            line,
            column,
            problem,
        };
        if e.f.model() != model {
            return Err(err(
                at("f"),
                Problem::MixedModels {
                    found: format!("{:?}", e.f.name()),
                    model,
                },
            ));
        }
        if e.kind == EventKind::Invoke {
            outstanding
                .check_free(e.process)
                .map_err(|p| err(at("process"), p))?;
            let id = match &mut history {
                ParsedHistory::Register(h) => h.invoke(e.process, &e.key, register_call(e), e.time),
                ParsedHistory::Kv(h) => h.invoke(e.process, &e.key, kv_input(e), e.time),
                ParsedHistory::Set(h) => h.invoke(e.process, &e.key, set_input(e), e.time),
            };
            outstanding.open(e.process, id, line, e.f.name());
            invoked.insert(id, (e.time, e.key.clone()));
            if let Some(level) = e.level {
                levels.insert(id, level);
            }
            continue;
        }
        let (id, invoke_line) = outstanding.close(e.process, e.f.name()).map_err(|p| {
            let column = match p {
                Problem::NoInvocation { .. } => at("process"),
                _ => at("f"),
            };
            err(column, p)
        })?;
        let (invoke_time, key) = invoked.get(&id).expect("opened above");
        if *key != e.key {
            return Err(err(
                at("key"),
                Problem::MismatchedCompletion {
                    invoke_line,
                    detail: format!("invoked on key {key:?}, completed on key {:?}", e.key),
                },
            ));
        }
        if e.time < *invoke_time {
            return Err(err(
                at("time"),
                Problem::MismatchedCompletion {
                    invoke_line,
                    detail: format!(
                        "completes at time {} before its invocation at time {invoke_time}",
                        e.time
                    ),
                },
            ));
        }
        if let Some(timestamp) = e.timestamp {
            let writer = e.writer.unwrap_or(0);
            versions.insert(id, Version { timestamp, writer });
        }
        match &mut history {
            ParsedHistory::Register(h) => {
                let outcome = match e.kind {
                    EventKind::Ok if e.f == Function::Read => Outcome::Ok {
                        value: match e.value {
                            EventValue::Int(n) => Some(n),
                            _ => None,
                        },
                    },
                    EventKind::Ok => Outcome::Ok { value: None },
                    // This format's `fail` of a cas is Porcupine's reading
                    // (docs/FORMAT.md); `read_failed_cas` re-reads it.
                    EventKind::Fail if e.f == Function::Cas => Outcome::Refused,
                    EventKind::Fail => Outcome::Fail,
                    EventKind::Info | EventKind::Invoke => Outcome::Info,
                };
                h.complete(id, e.time, outcome);
            }
            ParsedHistory::Kv(h) => {
                let outcome = match (e.kind, &e.value) {
                    (EventKind::Ok, EventValue::Text(s)) if e.f == Function::Get => KvOutcome::Ok {
                        value: Some(s.clone()),
                    },
                    (EventKind::Ok, _) => KvOutcome::Ok { value: None },
                    (EventKind::Fail, _) => KvOutcome::Fail,
                    _ => KvOutcome::Info,
                };
                h.complete(id, e.time, outcome);
            }
            ParsedHistory::Set(h) => {
                let outcome = match (e.kind, &e.value) {
                    (EventKind::Ok, EventValue::Elements(v)) if e.f == Function::ReadAll => {
                        SetOutcome::Ok {
                            value: Some(v.clone()),
                        }
                    }
                    (EventKind::Ok, _) => SetOutcome::Ok { value: None },
                    (EventKind::Fail, _) => SetOutcome::Fail,
                    _ => SetOutcome::Info,
                };
                h.complete(id, e.time, outcome);
            }
        }
    }
    Ok(Assembled {
        history,
        run: None,
        levels,
        versions,
    })
}

fn register_call(e: &Event) -> Call {
    let int = |v: &EventValue| match v {
        EventValue::Int(n) => Some(*n),
        _ => None,
    };
    match (e.f, &e.value) {
        (Function::Write, v) => Call::Write(int(v)),
        (Function::Cas, EventValue::Cas { expected, new }) => Call::Cas {
            expected: *expected,
            new: *new,
        },
        _ => Call::Read,
    }
}

fn kv_input(e: &Event) -> KvInput {
    let text = || match &e.value {
        EventValue::Text(s) => s.clone(),
        _ => String::new(),
    };
    match e.f {
        Function::Put => KvInput::Put(text()),
        Function::Append => KvInput::Append(text()),
        _ => KvInput::Get,
    }
}

fn set_input(e: &Event) -> SetInput {
    match (e.f, &e.value) {
        (Function::Add, EventValue::Int(n)) => SetInput::Add(*n),
        _ => SetInput::ReadAll,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error_of(text: &str) -> ParseError {
        parse(text).expect_err("malformed input was accepted")
    }

    #[test]
    fn register_lines_assemble_with_levels_and_timestamps() {
        let text = r#"{"type":"invoke","process":0,"key":"a","f":"write","value":3,"time":10,"level":"QUORUM"}
{"type":"invoke","process":1,"key":"a","f":"read","value":null,"time":12}
{"type":"ok","process":0,"key":"a","f":"write","value":3,"time":20,"timestamp":7}
{"type":"ok","process":1,"key":"a","f":"read","value":3,"time":25,"timestamp":7}
"#;
        let a = parse_assembled(text).unwrap();
        let ParsedHistory::Register(h) = &a.history else {
            panic!("not a register history");
        };
        assert_eq!(h.len(), 2);
        assert_eq!(h.operations()[1].outcome(), &Outcome::Ok { value: Some(3) });
        assert_eq!(a.levels.get(&OpId(0)), Some(&Level::Quorum));
        assert_eq!(
            a.versions.get(&OpId(1)),
            Some(&Version {
                timestamp: 7,
                writer: 0
            })
        );
        assert_eq!(a.run, None);
    }

    #[test]
    fn run_line_reads_back_and_must_come_first() {
        let run = RunLine {
            facts: RunFacts {
                clock_skew: Some(true),
                replication_factor: Some(3),
                session_timestamps: Some(false),
                clock_uncertainty_nanos: Some(40_000_000),
                commit_wait: None,
            },
            source: Some("enigma sim --seed 0x3".to_owned()),
        };
        let event = r#"{"type":"invoke","process":0,"key":"a","f":"read","time":1}"#;
        let text = format!("{}\n{event}\n", run_line(&run));
        let a = parse_assembled(&text).unwrap();
        assert_eq!(a.run, Some(run.clone()));
        assert_eq!(a.history.len(), 1);
        let late = format!("{event}\n{}\n", run_line(&run));
        let e = error_of(&late);
        assert_eq!(e.line, 2);
        assert!(matches!(e.problem, Problem::MisplacedRunLine), "{e}");
        let e = error_of(r#"{"type":"run","clock_skew":"yes"}"#);
        assert!(
            e.to_string().contains("clock_skew should be true or false"),
            "{e}"
        );
        let e = error_of(r#"{"type":"run","replication_factor":0}"#);
        assert!(e.to_string().contains("replication_factor"), "{e}");
    }

    #[test]
    fn writer_breaks_timestamp_ties() {
        let text = r#"{"type":"invoke","process":0,"key":"a","f":"write","value":3,"time":10}
{"type":"ok","process":0,"key":"a","f":"write","value":3,"time":20,"timestamp":7,"writer":2}
"#;
        let a = parse_assembled(text).unwrap();
        assert_eq!(
            a.versions.get(&OpId(0)),
            Some(&Version {
                timestamp: 7,
                writer: 2
            })
        );
        let events = parse_events(text).unwrap();
        assert_eq!(write_events(&events), text);
    }

    #[test]
    fn bad_json_names_line_and_column() {
        let e = error_of("\n{\"type\":\"invoke\",\"process\":0,,}");
        assert_eq!((e.line, e.column), (2, 30));
        assert!(matches!(e.problem, Problem::BadJson { .. }), "{e}");
    }

    #[test]
    fn wrong_value_points_at_the_value_field() {
        let e = error_of(r#"{"type":"invoke","process":0,"key":"a","f":"cas","value":3,"time":1}"#);
        assert_eq!(e.column, 50);
        assert!(e.to_string().contains("value should be"), "{e}");
    }

    #[test]
    fn completion_before_invocation_is_an_error_not_a_panic() {
        let e = error_of(
            "{\"type\":\"invoke\",\"process\":0,\"key\":\"a\",\"f\":\"read\",\"time\":9}\n\
             {\"type\":\"ok\",\"process\":0,\"key\":\"a\",\"f\":\"read\",\"time\":3}",
        );
        assert_eq!(e.line, 2);
        assert!(e.to_string().contains("before its invocation"), "{e}");
    }

    #[test]
    fn mixed_models_are_rejected() {
        let e = error_of(
            "{\"type\":\"invoke\",\"process\":0,\"key\":\"a\",\"f\":\"read\",\"time\":1}\n\
             {\"type\":\"invoke\",\"process\":1,\"key\":\"a\",\"f\":\"add\",\"value\":1,\"time\":1}",
        );
        assert!(matches!(e.problem, Problem::MixedModels { .. }), "{e}");
    }

    #[test]
    fn written_history_reads_back_the_same() {
        let mut h = History::new();
        let w = h.invoke(0, "k", Call::Write(Some(1)), 5);
        let r = h.invoke(1, "k", Call::Read, 6);
        h.invoke(
            2,
            "j",
            Call::Cas {
                expected: None,
                new: Some(2),
            },
            6,
        );
        h.complete(w, 9, Outcome::Ok { value: None });
        h.complete(r, 9, Outcome::Ok { value: Some(1) });
        let text = write_events(&events_of_history(&h));
        assert_eq!(parse(&text), Ok(ParsedHistory::Register(h)));
    }
}
