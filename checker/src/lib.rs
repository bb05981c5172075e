//! EnigmaDB's history checker.
//!
//! Takes what clients saw (a [`History`]) and decides whether it is allowed by
//! what the database promises: linearizability per key for registers, and
//! convergence of replica states after repair.
//!
//! # Invariants
//!
//! - A verdict is never wrong: when the search budget runs out the answer is
//!   `Unknown`, not a guess.
//! - Deterministic: the same history gives the same verdict and report.
//!
//! # Modules
//!
//! - [`history`]: operations, outcomes (`ok`/`fail`/`info`), recording.
//! - [`model`]: sequential specifications (the register, a string kv).
//! - [`wgl`]: the Wing-Gong-Lowe search with memoization, generic over a
//!   model.
//! - [`linearizability`]: per-key checking of histories, verdicts and
//!   counterexamples.
//! - [`kv`]: histories of a string kv map (get / put / append).
//! - [`set`]: histories of grow-only sets (add / read-all), their
//!   linearizability and completeness checks.
//! - [`format`]: parsers for Jepsen log lines and EDN histories, and
//!   EnigmaDB's own JSON Lines history files (reader and writer).
//! - [`report`]: a self-contained HTML picture of a verdict.
//! - [`consistency`]: lost-write, read-your-writes and monotonic-reads
//!   checks for weaker consistency levels.
//! - [`promises`]: what each consistency level promises given the run's
//!   facts (clock skew, replication factor), and the one function that
//!   picks and runs the checks for a leveled history.
//! - [`convergence`]: do all replicas of each key hold the same version?
//! - [`counter`]: histories of counters (increment and read) and the check
//!   that each key behaved as a linearizable counter.

pub mod consistency;
pub mod convergence;
pub mod counter;
pub mod format;
pub mod history;
pub mod kv;
pub mod linearizability;
mod memo;
pub mod model;
pub mod promises;
pub mod report;
pub mod set;
pub mod wgl;

pub use consistency::{check_lost_writes, check_sessions, ConsistencyViolation};
pub use convergence::{check_convergence, ConvergenceViolation, ReplicaVersion, StoredVersion};
pub use counter::{
    check_counter, CounterCall, CounterHistory, CounterOp, CounterOutcome, CounterRule,
    CounterViolation,
};
pub use format::{load_file, parse, Format, LoadError, ParseError, ParsedHistory};
pub use history::{
    Call, Completion, FailReading, History, OpId, Operation, Outcome, ProcessId, Recorded,
    Recording, Value,
};
pub use kv::{check_kv_linearizable, KvHistory, KvOperation, KvOutcome};
pub use linearizability::{
    check_linearizable, check_linearizable_with, check_linearizable_with_stop, CheckOptions,
    Counterexample, Verdict,
};
pub use model::{KvInput, KvModel, KvOutput, Model, RegisterModel};
pub use promises::{
    check_promises, Check, CheckResult, PromiseInput, PromiseReport, PromiseVerdict, RunFacts,
    Status, Version,
};
pub use set::{
    check_set_completeness, check_set_linearizable, SetHistory, SetInput, SetModel, SetOperation,
    SetOutcome, SetOutput, SetViolation,
};
pub use wgl::SearchLimits;
