//! What weaker consistency levels still promise (DESIGN.md section 5): no
//! acknowledged write is lost unless a write with a higher timestamp
//! replaced it, each session reads its own writes and never goes back in
//! time, and a write a session issues after observing a version carries a
//! higher one.
//!
//! The checks work on register and kv histories and take, optionally, the
//! version of each operation (for a write, the version it created; for a
//! read, the version it returned, `timestamp` 0 when it found none —
//! EnigmaDB's history files record them, see `docs/FORMAT.md`).
//!
//! Two kinds of evidence judge a read against an earlier write:
//!
//! - **Versions**: the read returned a version older than the write's. Exact
//!   under any clock skew; it is what last-write-wins promises.
//! - **Real time**: what the read returned is *certainly older* than the
//!   write: the write it returned (named by the read's version when that
//!   names a write of the history, else every write of its value) responded
//!   longer than the clock uncertainty before the later write was invoked,
//!   so, clocks being that close, the later write carries the higher
//!   timestamp and should have won. Without skew the uncertainty is 0;
//!   under skew it is the run's `clock_uncertainty_nanos`, and where that
//!   is not recorded real time orders nothing but the initial object, which
//!   is older than every write. This catches what versions cannot: a write
//!   stamped below an earlier one (a clock behind, a timestamp ignored)
//!   and then silently lost to it. A key with an `append` that may have
//!   happened has no value identity, so only versions judge its reads.
//!
//! Which pairs of operations a check may judge is the [`Scope`]'s business:
//! a read judges an earlier acknowledged write only when their consistency
//! levels make their replica sets intersect (see [`crate::promises`]).
//!
//! Cost: `O(n log n)` per key for the lost-write check, `O(n)` per session
//! for the session checks.

use std::collections::BTreeMap;

use thiserror::Error;

use crate::format::enigma::Level;
use crate::history::{Call, History, OpId, Outcome, ProcessId, Value};
use crate::kv::{KvHistory, KvOutcome};
use crate::model::KvInput;
use crate::promises::{level_class, Scope, Version, LEVEL_CLASSES};

/// A broken promise of a weak consistency level.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ConsistencyViolation {
    /// An acknowledged write disappeared without a newer write replacing it.
    #[error("key {key:?}: acknowledged write was lost: {detail}")]
    LostWrite {
        /// The key.
        key: String,
        /// The write.
        write: OpId,
        /// The read that shows it gone.
        read: OpId,
        /// The two operations, readable.
        detail: String,
    },
    /// A session did not read its own acknowledged write.
    #[error("key {key:?}: process {process} did not read its own write: {detail}")]
    ReadYourWrites {
        /// The session.
        process: ProcessId,
        /// The key.
        key: String,
        /// Its write.
        write: OpId,
        /// Its later read, which returned something older.
        read: OpId,
        /// The two operations, readable.
        detail: String,
    },
    /// A session wrote a version no higher than one it had observed.
    #[error("process {process} wrote below a version it had seen: {detail}")]
    CausalWrite {
        /// The session.
        process: ProcessId,
        /// The earlier operation that observed the version.
        observed: OpId,
        /// The later write, stamped at or below it.
        write: OpId,
        /// The two operations, readable.
        detail: String,
    },
    /// A session read an older version after a newer one.
    #[error("key {key:?}: process {process} read back in time: {detail}")]
    MonotonicReads {
        /// The session.
        process: ProcessId,
        /// The key.
        key: String,
        /// The earlier read.
        first: OpId,
        /// The later read, which returned something older.
        second: OpId,
        /// The two operations, readable.
        detail: String,
    },
}

/// A value as the checks compare them.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Val {
    /// The empty register.
    Nil,
    /// A register value.
    Int(Value),
    /// A kv value.
    Text(String),
}

/// One operation as these checks see it.
#[derive(Debug, Clone)]
pub(crate) struct Op<'a> {
    pub id: OpId,
    pub process: ProcessId,
    pub key: &'a str,
    pub invoke: u64,
    /// When it completed `ok`.
    pub ok_at: Option<u64>,
    /// Whether it may have taken effect (not `fail`).
    pub may_have_happened: bool,
    /// For an operation that writes: the value, `None` when it depends on
    /// the state (an append).
    pub write: Option<Option<Val>>,
    /// For a read that completed `ok`: the value it returned.
    pub read: Option<Val>,
    pub level: Option<Level>,
    pub version: Option<Version>,
    /// The response time of a write that may have happened (`None`: it never
    /// responded `ok`, so it may take effect any time after invocation).
    pub response: Option<u64>,
}

/// The operations of a register history.
pub(crate) fn register_ops<'a>(
    history: &'a History,
    levels: &BTreeMap<OpId, Level>,
    versions: &BTreeMap<OpId, Version>,
) -> Vec<Op<'a>> {
    let int = |v: &Option<Value>| v.map_or(Val::Nil, Val::Int);
    history
        .operations()
        .iter()
        .map(|op| {
            let outcome = op.outcome();
            let ok_at = match &op.completion {
                Some(c) if matches!(c.outcome, Outcome::Ok { .. }) => Some(c.time_nanos),
                _ => None,
            };
            let write = match &op.call {
                Call::Read => None,
                Call::Write(v) => Some(Some(int(v))),
                Call::Cas { new, .. } => Some(Some(int(new))),
            };
            let read = match (&op.call, outcome) {
                (Call::Read, Outcome::Ok { value }) => Some(int(value)),
                _ => None,
            };
            Op {
                id: op.id,
                process: op.process,
                key: &op.key,
                invoke: op.invoke_nanos,
                ok_at,
                may_have_happened: !matches!(outcome, Outcome::Fail | Outcome::Refused),
                write,
                read,
                level: levels.get(&op.id).copied(),
                version: versions.get(&op.id).copied(),
                response: ok_at,
            }
        })
        .collect()
}

/// The operations of a kv history. Every key starts as `""`.
pub(crate) fn kv_ops<'a>(
    history: &'a KvHistory,
    levels: &BTreeMap<OpId, Level>,
    versions: &BTreeMap<OpId, Version>,
) -> Vec<Op<'a>> {
    history
        .operations()
        .iter()
        .map(|op| {
            let (ok_at, failed) = match &op.completion {
                Some((t, KvOutcome::Ok { .. })) => (Some(*t), false),
                Some((_, KvOutcome::Fail)) => (None, true),
                _ => (None, false),
            };
            let write = match &op.input {
                KvInput::Get => None,
                KvInput::Put(v) => Some(Some(Val::Text(v.clone()))),
                KvInput::Append(_) => Some(None),
            };
            let read = match (&op.input, &op.completion) {
                (KvInput::Get, Some((_, KvOutcome::Ok { value }))) => {
                    Some(value.clone().map_or(Val::Nil, Val::Text))
                }
                _ => None,
            };
            Op {
                id: op.id,
                process: op.process,
                key: &op.key,
                invoke: op.invoke_time,
                ok_at,
                may_have_happened: !failed,
                write,
                read,
                level: levels.get(&op.id).copied(),
                version: versions.get(&op.id).copied(),
                response: ok_at,
            }
        })
        .collect()
}

/// Real-time facts about the writes of one key.
#[derive(Debug)]
struct KeyTimes {
    /// The value every key starts with.
    initial: Val,
    /// An append may have happened: values say nothing about writes.
    opaque: bool,
    /// Per value written by a write that may have happened: (the time
    /// after which all its writes had responded, the earliest invocation of
    /// one of them). `NEVER` when one never responded.
    writers: BTreeMap<Val, (i128, i128)>,
    /// Per version written by a write that may have happened (versions are
    /// unique to a write): (when it had responded, when it was invoked).
    versions: BTreeMap<Version, (i128, i128)>,
    /// How long after a write responded another must be invoked to
    /// certainly carry a higher timestamp (see `Scope::real_time_margin`).
    margin: Option<i128>,
}

/// A time no history reaches: "never".
const NEVER: i128 = i128::MAX;

impl KeyTimes {
    fn new(ops: &[&Op<'_>], initial: Val, margin: Option<u64>) -> KeyTimes {
        let mut writers: BTreeMap<Val, (i128, i128)> = BTreeMap::new();
        let mut versions: BTreeMap<Version, (i128, i128)> = BTreeMap::new();
        let mut opaque = false;
        for op in ops.iter().filter(|op| op.may_have_happened) {
            let Some(write) = &op.write else {
                continue;
            };
            let done = op.response.map_or(NEVER, |t| i128::from(t) + 1);
            let start = i128::from(op.invoke);
            if let Some(version) = op.version {
                versions.insert(version, (done, start));
            }
            match write {
                None => opaque = true,
                Some(v) => {
                    let entry = writers.entry(v.clone()).or_insert((done, start));
                    entry.0 = entry.0.max(done);
                    entry.1 = entry.1.min(start);
                }
            }
        }
        KeyTimes {
            initial,
            opaque,
            writers,
            versions,
            margin: margin.map(i128::from),
        }
    }

    /// The write a read returned, when its version names one of this key's
    /// writes: (responded, invoked).
    fn write_read_by(&self, read: &Op<'_>) -> Option<(i128, i128)> {
        read.version.and_then(|v| self.versions.get(&v).copied())
    }

    /// Whether a read returned the initial object: its version says it found
    /// none, or (without a version) its value is the initial one and nobody
    /// wrote that value.
    fn reads_initial(&self, read: &Op<'_>, value: &Val) -> bool {
        match read.version {
            Some(v) => v.timestamp == 0,
            None => !self.opaque && *value == self.initial && !self.writers.contains_key(value),
        }
    }

    /// A time from which what `read` returned is certainly older than any
    /// write invoked then or later: the write it read responded longer than
    /// the margin before. Known from the read's version when it names a
    /// write, else from its value (every write of the value must have
    /// responded). 0 for the initial object; `NEVER` when nothing is
    /// certain (a write that never responded, skew of unknown size, no
    /// value identity, or a value nobody wrote: not this check's business).
    fn settled(&self, read: &Op<'_>) -> i128 {
        let value = read.read.as_ref().expect("only reads are judged");
        if self.reads_initial(read, value) {
            return 0;
        }
        let done = match (self.write_read_by(read), self.opaque) {
            (Some((done, _)), _) => done,
            (None, true) => return NEVER,
            (None, false) => match self.writers.get(value) {
                Some((done, _)) => *done,
                None => return NEVER,
            },
        };
        match self.margin {
            Some(margin) if done != NEVER => done.saturating_add(margin),
            _ => NEVER,
        }
    }

    /// The earliest the write `read` returned may have taken effect (the
    /// initial object: before everything, -1). What is certainly older than
    /// it has `settled` at or before this.
    fn earliest(&self, read: &Op<'_>) -> i128 {
        let value = read.read.as_ref().expect("only reads are judged");
        if self.reads_initial(read, value) {
            return -1;
        }
        if let Some((_, start)) = self.write_read_by(read) {
            return start;
        }
        if read.version.is_none() && !self.opaque && *value == self.initial {
            // Without a version, a value equal to the initial one may be
            // the initial object itself, whatever deletes wrote it since.
            return -1;
        }
        self.writers.get(value).map_or(-1, |(_, start)| *start)
    }
}

fn describe_versioned(describe: &dyn Fn(OpId) -> String, op: &Op<'_>) -> String {
    match op.version {
        Some(v) => format!("{} (version {v})", describe(op.id)),
        None => describe(op.id),
    }
}

/// Groups operations by key, in key order, each key's in invocation order.
fn by_key<'a, 'b>(ops: &'b [Op<'a>]) -> BTreeMap<&'a str, Vec<&'b Op<'a>>> {
    let mut keys: BTreeMap<&str, Vec<&Op<'_>>> = BTreeMap::new();
    for op in ops {
        keys.entry(op.key).or_default().push(op);
    }
    for ops in keys.values_mut() {
        ops.sort_by_key(|op| (op.invoke, op.id));
    }
    keys
}

/// Counts of what a check judged, for reports.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Judged {
    /// Pairs of operations (or operations) the check compared.
    pub pairs: usize,
}

/// No acknowledged write is lost: a read invoked after a write was
/// acknowledged, at levels whose replica sets intersect, returns that
/// version or a newer one.
pub(crate) fn lost_writes(
    ops: &[Op<'_>],
    initial: &Val,
    scope: &Scope<'_>,
    describe: &dyn Fn(OpId) -> String,
) -> (Judged, Result<(), ConsistencyViolation>) {
    let mut judged = Judged::default();
    for (key, ops) in by_key(ops) {
        let times = KeyTimes::new(&ops, initial.clone(), scope.real_time_margin);
        // Reads of each level class, by invocation, with suffix minima of
        // their version and of when their value had settled.
        let mut classes: Vec<Vec<&Op<'_>>> = vec![Vec::new(); LEVEL_CLASSES];
        for op in ops.iter().filter(|op| op.read.is_some()) {
            classes[level_class(op.level)].push(op);
        }
        let minima: Vec<Suffix<'_, '_>> = classes.iter().map(|c| Suffix::new(c, &times)).collect();
        for w in ops.iter().filter(|op| op.write.is_some()) {
            let Some(acked) = w.ok_at else {
                continue;
            };
            for (class, reads) in classes.iter().enumerate() {
                if reads.is_empty() || !scope.overlap(w.level, class_level(class)) {
                    continue;
                }
                let from = reads.partition_point(|r| r.invoke <= acked);
                judged.pairs += reads.len() - from;
                let stale = minima[class].stale_from(from, w);
                if let Some(r) = stale {
                    let detail = format!(
                        "{}, then {}",
                        describe_versioned(describe, w),
                        describe_versioned(describe, r)
                    );
                    return (
                        judged,
                        Err(ConsistencyViolation::LostWrite {
                            key: key.to_owned(),
                            write: w.id,
                            read: r.id,
                            detail,
                        }),
                    );
                }
            }
        }
    }
    (judged, Ok(()))
}

/// Suffix minima over reads sorted by invocation.
struct Suffix<'a, 'b> {
    /// Lowest version among reads `i..`, with the read.
    version: Vec<Option<(Version, &'b Op<'a>)>>,
    /// Earliest settling time among reads `i..`, with the read.
    settled: Vec<Option<(i128, &'b Op<'a>)>>,
}

impl<'a, 'b> Suffix<'a, 'b> {
    fn new(reads: &[&'b Op<'a>], times: &KeyTimes) -> Self {
        let n = reads.len();
        let mut version = vec![None; n + 1];
        let mut settled = vec![None; n + 1];
        for i in (0..n).rev() {
            let r = reads[i];
            version[i] = match (r.version, version[i + 1]) {
                (Some(v), Some((best, _))) if v >= best => version[i + 1],
                (Some(v), _) => Some((v, r)),
                (None, next) => next,
            };
            let s = times.settled(r);
            settled[i] = match settled[i + 1] {
                Some((best, _)) if s >= best => settled[i + 1],
                _ => Some((s, r)),
            };
        }
        Self { version, settled }
    }

    /// A read from index `from` on that returned something older than `w`.
    fn stale_from(&self, from: usize, w: &Op<'_>) -> Option<&'b Op<'a>> {
        if let (Some(wv), Some((rv, r))) = (w.version, self.version[from]) {
            if rv < wv {
                return Some(r);
            }
        }
        match self.settled[from] {
            Some((s, r)) if s <= i128::from(w.invoke) => Some(r),
            _ => None,
        }
    }
}

/// The level of class index `class` (see [`level_class`]).
fn class_level(class: usize) -> Option<Level> {
    crate::promises::class_level(class)
}

/// Per level class, the strongest constraint seen so far in a session.
#[derive(Debug, Clone, Copy, Default)]
struct Seen<'a, 'b> {
    /// Highest version, with its operation.
    version: Option<(Version, &'b Op<'a>)>,
    /// Latest time before which a value read now must not have settled,
    /// with its operation.
    time: Option<(i128, &'b Op<'a>)>,
}

impl<'a, 'b> Seen<'a, 'b> {
    fn add(&mut self, op: &'b Op<'a>, time: i128) {
        if let Some(v) = op.version {
            if self.version.is_none_or(|(best, _)| v > best) {
                self.version = Some((v, op));
            }
        }
        if self.time.is_none_or(|(best, _)| time > best) {
            self.time = Some((time, op));
        }
    }

    /// The earlier operation that `read` contradicts, if any.
    fn contradicted_by(&self, read: &Op<'_>, settled: i128) -> Option<&'b Op<'a>> {
        if let (Some((v, op)), Some(rv)) = (self.version, read.version) {
            if rv < v {
                return Some(op);
            }
        }
        match self.time {
            Some((t, op)) if settled <= t => Some(op),
            _ => None,
        }
    }
}

/// The session checks of each process on each key: read-your-writes (a read
/// after the process's acknowledged write returns that version or a newer
/// one) and monotonic reads (a read never returns an older version than an
/// earlier read of the process), for the pairs the scope admits.
pub(crate) fn sessions(
    ops: &[Op<'_>],
    initial: &Val,
    scope: &Scope<'_>,
    describe: &dyn Fn(OpId) -> String,
) -> SessionResults {
    let mut results = SessionResults::default();
    for (key, ops) in by_key(ops) {
        let times = KeyTimes::new(&ops, initial.clone(), scope.real_time_margin);
        let mut sessions: BTreeMap<ProcessId, Vec<&Op<'_>>> = BTreeMap::new();
        for op in &ops {
            sessions.entry(op.process).or_default().push(op);
        }
        for (process, ops) in sessions {
            let mut writes: Vec<Seen<'_, '_>> = vec![Seen::default(); LEVEL_CLASSES];
            let mut reads: Vec<Seen<'_, '_>> = vec![Seen::default(); LEVEL_CLASSES];
            for op in ops {
                if op.write.is_some() && op.ok_at.is_some() {
                    writes[level_class(op.level)].add(op, i128::from(op.invoke));
                    continue;
                }
                if op.read.is_none() {
                    continue;
                }
                let settled = times.settled(op);
                for class in 0..LEVEL_CLASSES {
                    if !scope.session_pair(class_level(class), op.level) {
                        continue;
                    }
                    if writes[class].version.is_some() || writes[class].time.is_some() {
                        results.ryw_judged.pairs += 1;
                    }
                    if reads[class].version.is_some() || reads[class].time.is_some() {
                        results.mr_judged.pairs += 1;
                    }
                    if results.read_your_writes.is_ok() {
                        if let Some(w) = writes[class].contradicted_by(op, settled) {
                            results.read_your_writes = Err(ConsistencyViolation::ReadYourWrites {
                                process,
                                key: key.to_owned(),
                                write: w.id,
                                read: op.id,
                                detail: format!(
                                    "{}, then {}",
                                    describe_versioned(describe, w),
                                    describe_versioned(describe, op)
                                ),
                            });
                        }
                    }
                    if results.monotonic_reads.is_ok() {
                        if let Some(r) = reads[class].contradicted_by(op, settled) {
                            results.monotonic_reads = Err(ConsistencyViolation::MonotonicReads {
                                process,
                                key: key.to_owned(),
                                first: r.id,
                                second: op.id,
                                detail: format!(
                                    "{}, then {}",
                                    describe_versioned(describe, r),
                                    describe_versioned(describe, op)
                                ),
                            });
                        }
                    }
                }
                reads[level_class(op.level)].add(op, times.earliest(op));
            }
        }
    }
    results
}

/// What [`sessions`] found: the first violation of each guarantee, in key,
/// then process, then operation order.
#[derive(Debug, Clone)]
pub(crate) struct SessionResults {
    pub read_your_writes: Result<(), ConsistencyViolation>,
    pub monotonic_reads: Result<(), ConsistencyViolation>,
    pub ryw_judged: Judged,
    pub mr_judged: Judged,
}

impl Default for SessionResults {
    fn default() -> Self {
        Self {
            read_your_writes: Ok(()),
            monotonic_reads: Ok(()),
            ryw_judged: Judged::default(),
            mr_judged: Judged::default(),
        }
    }
}

/// One operation as the causal check sees it: which session, what it
/// observed or wrote.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SessionOp {
    pub id: OpId,
    pub process: ProcessId,
    pub invoke: u64,
    /// It wrote, and was acknowledged.
    pub acknowledged_write: bool,
    /// It completed with an answer (an acknowledged write, a read, a
    /// refused compare-and-set): its version, if recorded, was observed.
    pub answered: bool,
    pub version: Option<Version>,
}

/// A write a session issues after observing version V (reading it, or
/// writing it) carries a version above V, on any key (DESIGN.md section
/// 5: the connection carries the highest timestamp it has seen, and the
/// hybrid clock stamps above it). Judges each acknowledged write with a
/// version against the highest version its session observed before it.
pub(crate) fn causal_writes(
    ops: &[SessionOp],
    describe: &dyn Fn(OpId) -> String,
) -> (Judged, Result<(), ConsistencyViolation>) {
    let mut sessions: BTreeMap<ProcessId, Vec<&SessionOp>> = BTreeMap::new();
    for op in ops {
        sessions.entry(op.process).or_default().push(op);
    }
    let mut judged = Judged::default();
    let show = |op: &SessionOp| match op.version {
        Some(v) => format!("{} (version {v})", describe(op.id)),
        None => describe(op.id),
    };
    for (process, mut ops) in sessions {
        ops.sort_by_key(|op| (op.invoke, op.id));
        let mut seen: Option<(Version, &SessionOp)> = None;
        for op in ops {
            let Some(version) = op.version.filter(|_| op.answered) else {
                continue;
            };
            if op.acknowledged_write {
                if let Some((highest, observed)) = seen {
                    judged.pairs += 1;
                    if version <= highest {
                        let detail = format!("{}, then {}", show(observed), show(op));
                        return (
                            judged,
                            Err(ConsistencyViolation::CausalWrite {
                                process,
                                observed: observed.id,
                                write: op.id,
                                detail,
                            }),
                        );
                    }
                }
            }
            if seen.is_none_or(|(highest, _)| version > highest) {
                seen = Some((version, op));
            }
        }
    }
    (judged, Ok(()))
}

/// Versions from bare timestamps (writer 0).
fn versions_of(timestamps: &BTreeMap<OpId, u64>) -> BTreeMap<OpId, Version> {
    timestamps
        .iter()
        .map(|(&id, &timestamp)| {
            (
                id,
                Version {
                    timestamp,
                    writer: 0,
                },
            )
        })
        .collect()
}

fn describe_register(history: &History) -> impl Fn(OpId) -> String + '_ {
    |id| {
        history
            .operation(id)
            .map_or_else(|| format!("#{}", id.0), |op| op.to_string())
    }
}

/// Checks that no acknowledged write was lost: no read invoked after a write
/// was acknowledged returns an older version. Every pair of operations is
/// judged (as if all ran at `ALL`), with synchronised clocks.
///
/// With timestamps (on the write and the read): the read's version must
/// not be older than the write's. Without: the value read must not be
/// certainly older than the write (see the module documentation).
///
/// # Errors
/// The first lost write, in key order, then operation order.
pub fn check_lost_writes(
    history: &History,
    timestamps: &BTreeMap<OpId, u64>,
) -> Result<(), ConsistencyViolation> {
    let levels = BTreeMap::new();
    let versions = versions_of(timestamps);
    let ops = register_ops(history, &levels, &versions);
    let scope = Scope::everything(&levels);
    lost_writes(&ops, &Val::Nil, &scope, &describe_register(history)).1
}

/// Checks the session guarantees of each process on each key:
/// read-your-writes and monotonic reads, judging every pair (as if all ran
/// at `ALL`), with synchronised clocks.
///
/// # Errors
/// The first violation, in key order, then operation order (a
/// read-your-writes violation before a monotonic-reads one).
pub fn check_sessions(
    history: &History,
    timestamps: &BTreeMap<OpId, u64>,
) -> Result<(), ConsistencyViolation> {
    let levels = BTreeMap::new();
    let versions = versions_of(timestamps);
    let ops = register_ops(history, &levels, &versions);
    let scope = Scope::everything(&levels);
    let results = sessions(&ops, &Val::Nil, &scope, &describe_register(history));
    results.read_your_writes.and(results.monotonic_reads)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::promises::RunFacts;

    fn ok() -> Outcome {
        Outcome::Ok { value: None }
    }

    fn read(v: Option<Value>) -> Outcome {
        Outcome::Ok { value: v }
    }

    fn op(h: &mut History, p: u64, call: Call, t: u64, done: u64, outcome: Outcome) -> OpId {
        let id = h.invoke(p, "k", call, t);
        h.complete(id, done, outcome);
        id
    }

    fn none() -> BTreeMap<OpId, u64> {
        BTreeMap::new()
    }

    #[test]
    fn acknowledged_write_never_seen_again_is_lost() {
        let mut h = History::new();
        op(&mut h, 0, Call::Write(Some(1)), 0, 10, ok());
        let w = op(&mut h, 0, Call::Write(Some(2)), 20, 30, ok());
        let r = op(&mut h, 1, Call::Read, 40, 50, read(Some(1)));
        assert!(matches!(
            check_lost_writes(&h, &none()),
            Err(ConsistencyViolation::LostWrite { write, read, .. }) if write == w && read == r
        ));
    }

    #[test]
    fn write_overwritten_by_a_concurrent_write_is_not_lost() {
        let mut h = History::new();
        // Two overlapping writes: either may win last-write-wins.
        op(&mut h, 0, Call::Write(Some(1)), 0, 30, ok());
        op(&mut h, 1, Call::Write(Some(2)), 5, 25, ok());
        op(&mut h, 2, Call::Read, 40, 50, read(Some(1)));
        assert_eq!(check_lost_writes(&h, &none()), Ok(()));
    }

    #[test]
    fn timestamps_decide_lost_writes_exactly() {
        let mut h = History::new();
        let a = op(&mut h, 0, Call::Write(Some(1)), 0, 30, ok());
        let b = op(&mut h, 1, Call::Write(Some(2)), 5, 25, ok());
        let r = op(&mut h, 2, Call::Read, 40, 50, read(Some(1)));
        // a won with the higher timestamp: b was replaced, not lost.
        let ts = BTreeMap::from([(a, 9), (b, 8), (r, 9)]);
        assert_eq!(check_lost_writes(&h, &ts), Ok(()));
        // b had the higher timestamp, yet the read saw a's older version.
        let ts = BTreeMap::from([(a, 8), (b, 9), (r, 8)]);
        assert!(matches!(
            check_lost_writes(&h, &ts),
            Err(ConsistencyViolation::LostWrite { write, .. }) if write == b
        ));
    }

    #[test]
    fn session_must_read_its_own_write() {
        let mut h = History::new();
        op(&mut h, 1, Call::Write(Some(1)), 0, 10, ok());
        let w = op(&mut h, 0, Call::Write(Some(2)), 20, 30, ok());
        let r = op(&mut h, 0, Call::Read, 40, 50, read(Some(1)));
        assert!(matches!(
            check_sessions(&h, &none()),
            Err(ConsistencyViolation::ReadYourWrites { write, read, process: 0, .. })
                if write == w && read == r
        ));
    }

    #[test]
    fn session_may_read_a_concurrent_newer_write() {
        let mut h = History::new();
        op(&mut h, 0, Call::Write(Some(2)), 20, 30, ok());
        op(&mut h, 1, Call::Write(Some(3)), 25, 60, ok());
        op(&mut h, 0, Call::Read, 40, 50, read(Some(3)));
        assert_eq!(check_sessions(&h, &none()), Ok(()));
    }

    #[test]
    fn session_must_not_read_back_in_time() {
        let mut h = History::new();
        op(&mut h, 1, Call::Write(Some(1)), 0, 10, ok());
        op(&mut h, 1, Call::Write(Some(2)), 20, 30, ok());
        let first = op(&mut h, 0, Call::Read, 40, 50, read(Some(2)));
        let second = op(&mut h, 0, Call::Read, 60, 70, read(Some(1)));
        assert!(matches!(
            check_sessions(&h, &none()),
            Err(ConsistencyViolation::MonotonicReads { first: f, second: s, .. })
                if f == first && s == second
        ));
        // The same reads by two different processes break no session rule.
        let mut h = History::new();
        op(&mut h, 1, Call::Write(Some(1)), 0, 10, ok());
        op(&mut h, 1, Call::Write(Some(2)), 20, 30, ok());
        op(&mut h, 0, Call::Read, 40, 50, read(Some(2)));
        op(&mut h, 2, Call::Read, 60, 70, read(Some(1)));
        assert_eq!(check_sessions(&h, &none()), Ok(()));
    }

    #[test]
    fn monotonic_reads_use_timestamps_when_recorded() {
        let mut h = History::new();
        let first = op(&mut h, 0, Call::Read, 40, 50, read(Some(5)));
        let second = op(&mut h, 0, Call::Read, 60, 70, read(Some(5)));
        // Same value, but the second version is older: a rewrite of 5 was
        // read, then the earlier one again.
        let ts = BTreeMap::from([(first, 7), (second, 3)]);
        assert!(check_sessions(&h, &ts).is_err());
        let ts = BTreeMap::from([(first, 3), (second, 7)]);
        assert_eq!(check_sessions(&h, &ts), Ok(()));
    }

    #[test]
    fn repeated_reads_of_the_empty_register_are_not_back_in_time() {
        let mut h = History::new();
        op(&mut h, 0, Call::Read, 0, 10, read(None));
        op(&mut h, 0, Call::Read, 20, 30, read(None));
        op(&mut h, 1, Call::Write(Some(1)), 40, 50, ok());
        op(&mut h, 0, Call::Read, 60, 70, read(Some(1)));
        assert_eq!(check_sessions(&h, &none()), Ok(()));
        assert_eq!(check_lost_writes(&h, &none()), Ok(()));
    }

    /// A read of nothing, without a version, may have seen the initial
    /// register even when a delete of the key came later: reading a value
    /// written before that delete is not back in time.
    #[test]
    fn a_read_of_nothing_may_be_the_initial_register_despite_later_deletes() {
        let mut h = History::new();
        op(&mut h, 1, Call::Write(Some(2)), 0, 5, ok());
        op(&mut h, 0, Call::Read, 10, 20, read(None));
        op(&mut h, 1, Call::Write(None), 30, 40, ok());
        op(&mut h, 1, Call::Write(Some(3)), 50, 60, ok());
        op(&mut h, 0, Call::Read, 70, 80, read(Some(3)));
        assert_eq!(check_sessions(&h, &none()), Ok(()));
        let mut h = History::new();
        op(&mut h, 0, Call::Read, 0, 10, read(None));
        op(&mut h, 1, Call::Write(Some(2)), 20, 30, ok());
        op(&mut h, 1, Call::Write(None), 40, 50, ok());
        op(&mut h, 0, Call::Read, 60, 70, read(Some(2)));
        assert_eq!(check_sessions(&h, &none()), Ok(()));
    }

    /// Under clock skew a write that started after another completed may
    /// still carry the lower timestamp and lose last-write-wins: real time
    /// alone proves nothing, except against the empty initial register.
    #[test]
    fn under_clock_skew_only_the_initial_register_is_certainly_older() {
        let mut h = History::new();
        let w = op(&mut h, 0, Call::Write(Some(1)), 0, 10, ok());
        op(&mut h, 0, Call::Write(Some(2)), 20, 30, ok());
        op(&mut h, 1, Call::Read, 40, 50, read(Some(1)));
        let levels = BTreeMap::new();
        let versions = BTreeMap::new();
        let ops = register_ops(&h, &levels, &versions);
        let skewed = Scope::new(
            &levels,
            &RunFacts {
                clock_skew: Some(true),
                ..RunFacts::default()
            },
        );
        let result = lost_writes(&ops, &Val::Nil, &skewed, &describe_register(&h)).1;
        assert_eq!(result, Ok(()));
        // A read of the never-written register after an acknowledged write
        // is a lost write whatever the clocks did.
        let r = op(&mut h, 1, Call::Read, 60, 70, read(None));
        let ops = register_ops(&h, &levels, &versions);
        let describe = describe_register(&h);
        assert!(matches!(
            lost_writes(&ops, &Val::Nil, &skewed, &describe).1,
            Err(ConsistencyViolation::LostWrite { write, read, .. }) if read == r && write == w
        ));
    }

    #[test]
    fn reads_judge_only_writes_whose_replicas_they_must_meet() {
        // A write at ONE and a later read at ONE (replication factor 3)
        // need not share a replica: the read may miss the write. A read at
        // ALL must see it.
        let mut h = History::new();
        let w = op(&mut h, 0, Call::Write(Some(1)), 0, 10, ok());
        let one = op(&mut h, 1, Call::Read, 20, 30, read(None));
        let levels = BTreeMap::from([(w, Level::One), (one, Level::One)]);
        let facts = RunFacts {
            clock_skew: Some(false),
            replication_factor: Some(3),
            session_timestamps: Some(false),
            clock_uncertainty_nanos: None,
            commit_wait: None,
        };
        let versions = BTreeMap::new();
        let ops = register_ops(&h, &levels, &versions);
        let scope = Scope::new(&levels, &facts);
        let result = lost_writes(&ops, &Val::Nil, &scope, &describe_register(&h)).1;
        assert_eq!(result, Ok(()));
        let all = op(&mut h, 2, Call::Read, 40, 50, read(None));
        let mut levels = levels;
        levels.insert(all, Level::All);
        let ops = register_ops(&h, &levels, &versions);
        let scope = Scope::new(&levels, &facts);
        let describe = describe_register(&h);
        let (_, result) = lost_writes(&ops, &Val::Nil, &scope, &describe);
        let Err(ConsistencyViolation::LostWrite { write, read, .. }) = result else {
            panic!("a read at ALL missed an acknowledged write: {result:?}");
        };
        assert_eq!((write, read), (w, all));
    }

    fn version(timestamp: u64) -> Version {
        Version {
            timestamp,
            writer: 1,
        }
    }

    /// The lost-write check of `h` under skew, with `uncertainty` recorded
    /// (or not) and every operation's version given.
    fn lost_under_skew(
        h: &History,
        versions: &BTreeMap<OpId, Version>,
        uncertainty: Option<u64>,
    ) -> Result<(), ConsistencyViolation> {
        let levels = BTreeMap::new();
        let ops = register_ops(h, &levels, versions);
        let facts = RunFacts {
            clock_skew: Some(true),
            clock_uncertainty_nanos: uncertainty,
            commit_wait: None,
            ..RunFacts::default()
        };
        let scope = Scope::new(&levels, &facts);
        lost_writes(&ops, &Val::Nil, &scope, &describe_register(h)).1
    }

    /// A write stamped below an earlier, long-acknowledged one loses
    /// last-write-wins to it: by versions that is "overwritten by a higher
    /// timestamp", by real time beyond the clock uncertainty it is lost.
    #[test]
    fn under_skew_real_time_beyond_the_uncertainty_judges_every_write() {
        let mut h = History::new();
        let early = op(&mut h, 0, Call::Write(Some(1)), 0, 10, ok());
        let late = op(&mut h, 1, Call::Write(Some(2)), 1_000, 1_010, ok());
        let r = op(&mut h, 2, Call::Read, 2_000, 2_010, read(Some(1)));
        let versions = BTreeMap::from([(early, version(9)), (late, version(5)), (r, version(9))]);
        assert_eq!(lost_under_skew(&h, &versions, None), Ok(()));
        assert_eq!(lost_under_skew(&h, &versions, Some(5_000)), Ok(()));
        assert!(matches!(
            lost_under_skew(&h, &versions, Some(100)),
            Err(ConsistencyViolation::LostWrite { write, read, .. }) if write == late && read == r
        ));
        // Stamped above, the late write wins and the read is simply stale:
        // versions alone tell, whatever the uncertainty.
        let versions = BTreeMap::from([(early, version(5)), (late, version(9)), (r, version(5))]);
        for uncertainty in [None, Some(100), Some(5_000)] {
            assert!(
                lost_under_skew(&h, &versions, uncertainty).is_err(),
                "{uncertainty:?}"
            );
        }
    }

    /// The version a read returned names the very write it saw, which
    /// tells more than its value when the value was written twice.
    #[test]
    fn a_read_version_names_the_write_it_saw() {
        let mut h = History::new();
        let first = op(&mut h, 0, Call::Write(Some(1)), 0, 10, ok());
        let middle = op(&mut h, 0, Call::Write(Some(2)), 20, 30, ok());
        // A second write of 1, concurrent with the read.
        let again = op(&mut h, 1, Call::Write(Some(1)), 35, 100, ok());
        let r = op(&mut h, 2, Call::Read, 40, 50, read(Some(1)));
        // Without versions the read may have seen the second write of 1.
        assert_eq!(check_lost_writes(&h, &none()), Ok(()));
        let ts =
            |read_version| BTreeMap::from([(first, 1), (middle, 2), (again, 3), (r, read_version)]);
        assert_eq!(check_lost_writes(&h, &ts(3)), Ok(()));
        // Its version says it saw the first, older than the acknowledged 2.
        assert!(matches!(
            check_lost_writes(&h, &ts(1)),
            Err(ConsistencyViolation::LostWrite { write, .. }) if write == middle
        ));
    }

    #[test]
    fn under_skew_monotonic_reads_judge_by_real_time_beyond_the_uncertainty() {
        let mut h = History::new();
        let a = op(&mut h, 1, Call::Write(Some(1)), 0, 10, ok());
        let b = op(&mut h, 1, Call::Write(Some(2)), 1_000, 1_010, ok());
        let first = op(&mut h, 0, Call::Read, 2_000, 2_010, read(Some(2)));
        let second = op(&mut h, 0, Call::Read, 3_000, 3_010, read(Some(1)));
        // Versions in real-time order would make the second read older by
        // version; here the write of 2 was stamped low, so only real time
        // tells the session went back.
        let versions = BTreeMap::from([
            (a, version(9)),
            (b, version(5)),
            (first, version(5)),
            (second, version(9)),
        ]);
        let levels = BTreeMap::new();
        let ops = register_ops(&h, &levels, &versions);
        let judge = |uncertainty| {
            let facts = RunFacts {
                clock_skew: Some(true),
                clock_uncertainty_nanos: uncertainty,
                commit_wait: None,
                ..RunFacts::default()
            };
            let scope = Scope::new(&levels, &facts);
            sessions(&ops, &Val::Nil, &scope, &describe_register(&h)).monotonic_reads
        };
        assert_eq!(judge(None), Ok(()));
        assert_eq!(judge(Some(5_000)), Ok(()));
        assert!(matches!(
            judge(Some(100)),
            Err(ConsistencyViolation::MonotonicReads { first: f, second: s, .. })
                if f == first && s == second
        ));
    }

    fn session_op(id: usize, process: u64, invoke: u64, write: bool, v: u64) -> SessionOp {
        SessionOp {
            id: OpId(id),
            process,
            invoke,
            acknowledged_write: write,
            answered: true,
            version: Some(version(v)),
        }
    }

    #[test]
    fn a_write_after_observing_a_version_must_carry_a_higher_one() {
        let describe = |id: OpId| format!("#{}", id.0);
        // Process 0 reads version 9 (any key), then writes: stamped 5.
        let ops = [session_op(0, 0, 0, false, 9), session_op(1, 0, 10, true, 5)];
        assert!(matches!(
            causal_writes(&ops, &describe),
            (_, Err(ConsistencyViolation::CausalWrite { process: 0, observed, write, .. }))
                if observed == OpId(0) && write == OpId(1)
        ));
        // Stamped 10, it is fine; so is a write by another session.
        let fine = [
            session_op(0, 0, 0, false, 9),
            session_op(1, 0, 10, true, 10),
            session_op(2, 1, 20, true, 3),
        ];
        let (judged, result) = causal_writes(&fine, &describe);
        assert_eq!((judged.pairs, result), (1, Ok(())));
        // A session's own writes are observations too (monotonic writes),
        // and an equal version is not above.
        let own = [session_op(0, 0, 0, true, 7), session_op(1, 0, 10, true, 7)];
        assert!(causal_writes(&own, &describe).1.is_err());
        // A write whose outcome is unknown observed nothing.
        let mut unknown = session_op(0, 0, 0, true, 9);
        unknown.answered = false;
        let ops = [unknown, session_op(1, 0, 10, true, 5)];
        assert_eq!(
            causal_writes(&ops, &describe),
            (Judged { pairs: 0 }, Ok(()))
        );
    }
}
