//! Histories: what clients asked for and what they were told, with times.
//!
//! Semantics follow Jepsen. An operation is *invoked*, then completes once:
//! `ok` (it happened), `fail` (it definitely did not happen) or `info` (it
//! may have happened at any time after its invocation, or never). An
//! operation with no completion at the end of the history is `info`.
//!
//! A compare-and-set whose comparison was made and failed is neither: it
//! happened, changed nothing, and tells that the register did not hold the
//! expected value ([`Outcome::Refused`]). Jepsen records both as `:fail`;
//! which one a file means is its [`FailReading`].

use std::collections::BTreeMap;
use std::fmt;

/// A client process. A process has at most one operation outstanding.
pub type ProcessId = u64;

/// A register value. `None` in a `Call` or `Outcome` is the empty register
/// (never written, or deleted).
pub type Value = i64;

/// Index of an operation in its [`History`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct OpId(pub usize);

/// What a client asked for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Call {
    /// Read the register.
    Read,
    /// Set the register (`None`: delete it).
    Write(Option<Value>),
    /// Set the register to `new` if it holds `expected`.
    Cas {
        expected: Option<Value>,
        new: Option<Value>,
    },
}

/// How an operation ended.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// It happened. For a read, `value` is what it returned; otherwise `None`.
    Ok { value: Option<Value> },
    /// It definitely did not happen: it constrains nothing.
    Fail,
    /// A compare-and-set that happened as a comparison only: the register
    /// did not hold `expected`, so nothing changed. Only a `Cas` is refused;
    /// a read or write completed this way is taken as [`Outcome::Fail`].
    Refused,
    /// Unknown: it may have happened at any time after invocation, or never.
    Info,
}

/// What a recorded `fail` of a compare-and-set means, which the recording
/// tool decides, not the checker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FailReading {
    /// Jepsen's own meaning, which Knossos checks (it removes failed
    /// operations before the search): the operation did not take effect, so
    /// a failed compare-and-set constrains nothing ([`Outcome::Fail`]).
    Knossos,
    /// Porcupine's reading of its etcd histories: the comparison was made
    /// and failed, so the register did not hold `expected` at some instant
    /// between invocation and completion ([`Outcome::Refused`]).
    Porcupine,
}

impl FailReading {
    /// Its name on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            FailReading::Knossos => "knossos",
            FailReading::Porcupine => "porcupine",
        }
    }
}

impl fmt::Display for FailReading {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A completion: when and how.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Completion {
    /// When the client learned the outcome.
    pub time_nanos: u64,
    /// The outcome.
    pub outcome: Outcome,
}

/// One operation of one process on one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operation {
    /// Its index in the history.
    pub id: OpId,
    /// The process that issued it.
    pub process: ProcessId,
    /// The key it touched; keys are independent registers.
    pub key: String,
    /// What was asked.
    pub call: Call,
    /// When it was invoked.
    pub invoke_nanos: u64,
    /// How it ended; `None` while pending (treated as `info`).
    pub completion: Option<Completion>,
}

impl Operation {
    /// The outcome, with a missing completion read as `info`.
    pub fn outcome(&self) -> &Outcome {
        match &self.completion {
            Some(c) => &c.outcome,
            None => &Outcome::Info,
        }
    }
}

/// What the shared recording bookkeeping needs from one kind of operation
/// (register, kv, set): how to start one and how to end it.
pub trait Recorded {
    /// What a client asked for.
    type Input;
    /// How it ended.
    type Outcome;

    /// A just-invoked, still pending operation.
    fn invoked(id: OpId, process: ProcessId, key: &str, input: Self::Input, time: u64) -> Self;
    /// Its index in the history.
    fn id(&self) -> OpId;
    /// The process that issued it.
    fn process(&self) -> ProcessId;
    /// The key it touched.
    fn key(&self) -> &str;
    /// When it was invoked.
    fn invoke_time(&self) -> u64;
    /// When it completed; `None` while pending.
    fn completion_time(&self) -> Option<u64>;
    /// Records how it ended. Called once, by [`Recording::complete`].
    fn set_completion(&mut self, time: u64, outcome: Self::Outcome);
}

/// A recorded history of operations of one kind, in invocation order, with
/// the recorder's invariants checked: one outstanding operation per process,
/// one completion per operation, never before its invocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recording<T> {
    ops: Vec<T>,
    /// The pending operation of each process, to catch recorder bugs.
    outstanding: BTreeMap<ProcessId, OpId>,
}

/// A register history.
pub type History = Recording<Operation>;

impl History {
    /// Reads every compare-and-set that completed `fail` or refused as
    /// `reading` says (the two outcomes of a CAS are the two readings of
    /// one recorded `:fail`, so this can be undone). Other operations are
    /// untouched.
    pub fn read_failed_cas(&mut self, reading: FailReading) {
        let outcome = match reading {
            FailReading::Knossos => Outcome::Fail,
            FailReading::Porcupine => Outcome::Refused,
        };
        for op in &mut self.ops {
            if let (Call::Cas { .. }, Some(c)) = (&op.call, &mut op.completion) {
                if matches!(c.outcome, Outcome::Fail | Outcome::Refused) {
                    c.outcome = outcome.clone();
                }
            }
        }
    }
}

impl<T> Default for Recording<T> {
    fn default() -> Self {
        Self {
            ops: Vec::new(),
            outstanding: BTreeMap::new(),
        }
    }
}

impl<T: Recorded> Recording<T> {
    /// An empty history.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty history with room for `operations` operations.
    pub fn with_capacity(operations: usize) -> Self {
        Self {
            ops: Vec::with_capacity(operations),
            outstanding: BTreeMap::new(),
        }
    }

    /// Records an invocation and returns its id.
    ///
    /// # Panics
    /// If `process` already has an operation outstanding (a recorder bug).
    pub fn invoke(&mut self, process: ProcessId, key: &str, input: T::Input, time: u64) -> OpId {
        let id = OpId(self.ops.len());
        let earlier = self.outstanding.insert(process, id);
        assert!(
            earlier.is_none(),
            "process {process} invoked while an operation is outstanding"
        );
        self.ops.push(T::invoked(id, process, key, input, time));
        id
    }

    /// Records the completion of `id`.
    ///
    /// # Panics
    /// If `id` is unknown or already completed, or completes before it was
    /// invoked (recorder bugs).
    pub fn complete(&mut self, id: OpId, time: u64, outcome: T::Outcome) {
        let op = self
            .ops
            .get_mut(id.0)
            .expect("completion of an unknown operation");
        assert!(
            op.completion_time().is_none(),
            "operation {} completed twice",
            id.0
        );
        assert!(
            time >= op.invoke_time(),
            "operation {} completes before invocation",
            id.0
        );
        op.set_completion(time, outcome);
        self.outstanding.remove(&op.process());
    }

    /// All operations, in invocation order.
    pub fn operations(&self) -> &[T] {
        &self.ops
    }

    /// The operation `id`.
    pub fn operation(&self, id: OpId) -> Option<&T> {
        self.ops.get(id.0)
    }

    /// Number of operations.
    pub fn len(&self) -> usize {
        self.ops.len()
    }

    /// Whether there are no operations.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }
}

impl Recorded for Operation {
    type Input = Call;
    type Outcome = Outcome;

    fn invoked(id: OpId, process: ProcessId, key: &str, call: Call, time: u64) -> Self {
        Self {
            id,
            process,
            key: key.to_owned(),
            call,
            invoke_nanos: time,
            completion: None,
        }
    }
    fn id(&self) -> OpId {
        self.id
    }
    fn process(&self) -> ProcessId {
        self.process
    }
    fn key(&self) -> &str {
        &self.key
    }
    fn invoke_time(&self) -> u64 {
        self.invoke_nanos
    }
    fn completion_time(&self) -> Option<u64> {
        self.completion.as_ref().map(|c| c.time_nanos)
    }
    fn set_completion(&mut self, time: u64, outcome: Outcome) {
        self.completion = Some(Completion {
            time_nanos: time,
            outcome,
        });
    }
}

impl fmt::Display for Operation {
    /// One readable line: `#12 p3 k1 write 42 [100..250] ok`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let show = |v: &Option<Value>| v.map_or_else(|| "nil".to_owned(), |v| v.to_string());
        write!(f, "#{} p{} {} ", self.id.0, self.process, self.key)?;
        match &self.call {
            Call::Read => write!(f, "read")?,
            Call::Write(v) => write!(f, "write {}", show(v))?,
            Call::Cas { expected, new } => write!(f, "cas {}->{}", show(expected), show(new))?,
        }
        match &self.completion {
            None => write!(f, " [{}..] pending", self.invoke_nanos),
            Some(c) => {
                write!(f, " [{}..{}] ", self.invoke_nanos, c.time_nanos)?;
                match &c.outcome {
                    Outcome::Ok { value } if self.call == Call::Read => {
                        write!(f, "ok {}", show(value))
                    }
                    Outcome::Ok { .. } => write!(f, "ok"),
                    Outcome::Fail => write!(f, "fail"),
                    Outcome::Refused => write!(f, "refused"),
                    Outcome::Info => write!(f, "info"),
                }
            }
        }
    }
}
