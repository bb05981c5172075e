//! What weaker consistency levels still promise (DESIGN.md section 5): no
//! acknowledged write is lost unless a write with a higher timestamp
//! replaced it, and each session reads its own writes and never goes back
//! in time.
//!
//! The checks take a register [`History`] and, optionally, the version
//! timestamp of each operation (`timestamps`: for a write, the version it
//! created; for a read, the version it returned — EnigmaDB's history files
//! record them, see `docs/FORMAT.md`). With timestamps the checks are
//! exact comparisons of versions. Without them they fall back to values
//! and real time, and then only flag what no order of writes could
//! explain: a value stands for every write that wrote it (and `nil` also
//! for the initial empty register), and a value is *older* than another
//! only when every write of the first completed before any write of the
//! second began.
//!
//! Cost: quadratic in the operations of one key, fine for simulation
//! histories (thousands of operations per key at most).

use std::collections::BTreeMap;

use thiserror::Error;

use crate::history::{Call, History, OpId, Operation, Outcome, ProcessId, Value};

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

/// Real-time interval of a write that may have taken effect: from
/// invocation to response (`u64::MAX` if it never responded).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Span {
    invoke: u64,
    response: u64,
    /// The initial empty register, before every write.
    initial: bool,
}

impl Span {
    /// The initial empty register: before everything.
    const INITIAL: Span = Span {
        invoke: 0,
        response: 0,
        initial: true,
    };

    fn of(op: &Operation) -> Span {
        Span {
            invoke: op.invoke_nanos,
            response: op.completion.as_ref().map_or(u64::MAX, |c| c.time_nanos),
            initial: false,
        }
    }

    /// Whether `self` certainly took effect before `other` (it responded
    /// before `other` was invoked). The initial state precedes every write.
    fn precedes(self, other: Span) -> bool {
        match (self.initial, other.initial) {
            (true, initial) => !initial,
            (false, true) => false,
            (false, false) => self.response < other.invoke,
        }
    }
}

/// The operations of one key, with the writers of each value.
#[derive(Debug, Default)]
struct KeyView<'a> {
    ops: Vec<&'a Operation>,
    /// value -> spans of the writes that may have written it.
    writers: BTreeMap<Option<Value>, Vec<Span>>,
}

fn by_key(history: &History) -> BTreeMap<&str, KeyView<'_>> {
    let mut keys: BTreeMap<&str, KeyView<'_>> = BTreeMap::new();
    for op in history.operations() {
        let view = keys.entry(op.key.as_str()).or_default();
        view.ops.push(op);
        if let Some(value) = written(op) {
            view.writers.entry(value).or_default().push(Span::of(op));
        }
    }
    for view in keys.values_mut() {
        view.writers.entry(None).or_default().push(Span::INITIAL);
    }
    keys
}

/// The value `op` wrote if it may have taken effect.
fn written(op: &Operation) -> Option<Option<Value>> {
    if *op.outcome() == Outcome::Fail {
        return None;
    }
    match op.call {
        Call::Write(v) => Some(v),
        Call::Cas { new, .. } => Some(new),
        Call::Read => None,
    }
}

/// The value an acknowledged read returned.
fn read_value(op: &Operation) -> Option<Option<Value>> {
    match (&op.call, op.outcome()) {
        (Call::Read, Outcome::Ok { value }) => Some(*value),
        _ => None,
    }
}

fn acknowledged_at(op: &Operation) -> Option<u64> {
    match &op.completion {
        Some(c) if matches!(c.outcome, Outcome::Ok { .. }) => Some(c.time_nanos),
        _ => None,
    }
}

impl KeyView<'_> {
    /// Whether every write of `older` certainly took effect before every
    /// write of `newer` began (no order of writes makes `older` the newer).
    fn certainly_older(&self, older: Option<Value>, newer: &[Span]) -> bool {
        let none = Vec::new();
        let olds = self.writers.get(&older).unwrap_or(&none);
        olds.iter().all(|o| newer.iter().all(|n| o.precedes(*n)))
    }
}

/// Checks that no acknowledged write was lost: no read invoked after a write
/// was acknowledged returns an older version, unless a newer write replaced
/// it.
///
/// With timestamps (on the write and the read): the read's version must
/// not be older than the write's. Without: the write must be observed by
/// some read, or be overwritten by a write that did not finish before it
/// began (a concurrent write may win last-write-wins with a higher
/// timestamp), whenever some read began after it was acknowledged.
///
/// # Errors
/// The first lost write, in key order, then operation order.
pub fn check_lost_writes(
    history: &History,
    timestamps: &BTreeMap<OpId, u64>,
) -> Result<(), ConsistencyViolation> {
    for (key, view) in by_key(history) {
        for w in &view.ops {
            let (Some(acked), Some(value)) = (acknowledged_at(w), written(w)) else {
                continue;
            };
            let later_reads = view
                .ops
                .iter()
                .filter(|r| read_value(r).is_some() && r.invoke_nanos > acked);
            let lost = |r: &Operation| ConsistencyViolation::LostWrite {
                key: key.to_owned(),
                write: w.id,
                read: r.id,
                detail: format!("{w}, then {r}"),
            };
            if let Some(&w_ts) = timestamps.get(&w.id) {
                let stale = later_reads
                    .clone()
                    .find(|r| timestamps.get(&r.id).is_some_and(|&ts| ts < w_ts));
                if let Some(r) = stale {
                    return Err(lost(r));
                }
                continue;
            }
            let Some(witness) = later_reads.clone().next() else {
                continue;
            };
            let span = Span::of(w);
            let observed = view
                .ops
                .iter()
                .any(|r| read_value(r) == Some(value) && r.invoke_nanos >= w.invoke_nanos);
            let overwritten = view
                .ops
                .iter()
                .any(|x| x.id != w.id && written(x).is_some() && !Span::of(x).precedes(span));
            if !observed && !overwritten {
                return Err(lost(witness));
            }
        }
    }
    Ok(())
}

/// Checks the session guarantees of each process on each key:
/// read-your-writes (a read after the process's acknowledged write returns
/// that write or a newer one) and monotonic reads (a read never returns an
/// older version than an earlier read of the same process).
///
/// With timestamps these compare versions; without, a violation needs the
/// value read to be certainly older (see the module documentation).
///
/// # Errors
/// The first violation, in key order, then operation order.
pub fn check_sessions(
    history: &History,
    timestamps: &BTreeMap<OpId, u64>,
) -> Result<(), ConsistencyViolation> {
    for (key, view) in by_key(history) {
        let mut sessions: BTreeMap<ProcessId, Vec<&Operation>> = BTreeMap::new();
        for op in &view.ops {
            sessions.entry(op.process).or_default().push(op);
        }
        for (process, ops) in sessions {
            // The session's newest acknowledged write and newest read so far.
            let mut last_write: Option<&Operation> = None;
            let mut last_read: Option<&Operation> = None;
            for op in ops {
                if acknowledged_at(op).is_some() && written(op).is_some() {
                    last_write = Some(op);
                    continue;
                }
                let Some(value) = read_value(op) else {
                    continue;
                };
                if let Some(w) = last_write {
                    let stale = match (timestamps.get(&w.id), timestamps.get(&op.id)) {
                        (Some(w_ts), Some(r_ts)) => r_ts < w_ts,
                        _ => view.certainly_older(value, &[Span::of(w)]),
                    };
                    if stale {
                        return Err(ConsistencyViolation::ReadYourWrites {
                            process,
                            key: key.to_owned(),
                            write: w.id,
                            read: op.id,
                            detail: format!("{w}, then {op}"),
                        });
                    }
                }
                if let Some(r) = last_read {
                    let stale = match (timestamps.get(&r.id), timestamps.get(&op.id)) {
                        (Some(first), Some(second)) => second < first,
                        _ => {
                            let first = read_value(r).expect("last_read holds reads");
                            let none = Vec::new();
                            let newer = view.writers.get(&first).unwrap_or(&none);
                            !newer.is_empty() && view.certainly_older(value, newer)
                        }
                    };
                    if stale {
                        return Err(ConsistencyViolation::MonotonicReads {
                            process,
                            key: key.to_owned(),
                            first: r.id,
                            second: op.id,
                            detail: format!("{r}, then {op}"),
                        });
                    }
                }
                last_read = Some(op);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
