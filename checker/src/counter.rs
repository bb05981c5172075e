//! Histories of counters (keys that clients increment by one and read) and
//! the check that each key behaved as one linearizable counter.
//!
//! An increment that completed `ok` returned the counter's new value; a
//! read returned its value (an absent key reads 0). For each key, with
//! `acked` increments `ok` and `info` of unknown outcome:
//!
//! - **final**: the key's final value is within `acked ..= acked + info`
//!   (every acknowledged increment counted once, none lost, none invented);
//! - **duplicate**: no two acknowledged increments returned the same value;
//! - **range**: every value returned is within `1 ..= acked + info` for an
//!   increment, `0 ..= acked + info` for a read;
//! - **order**: real time is respected: an increment returns more than, and
//!   a read at least, every value returned by an operation that completed
//!   before it was invoked.
//!
//! Together these are what a linearizable counter allows of values its
//! clients saw; they are the checks, not a search, so they are linear in
//! the history (after a sort).

use std::collections::BTreeMap;
use std::fmt;

use crate::history::ProcessId;

/// What a client asked of a counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CounterCall {
    /// Add one; the answer is the new value.
    Incr,
    /// Read the value.
    Read,
}

/// How a counter operation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CounterOutcome {
    /// It happened: an increment's new value, or the value read.
    Ok(i64),
    /// It definitely did not happen.
    Fail,
    /// Unknown: it may have happened, once, or not at all.
    Info,
}

/// One counter operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CounterOp {
    /// The client process.
    pub process: ProcessId,
    /// The key (each key is its own counter).
    pub key: String,
    /// What was asked.
    pub call: CounterCall,
    /// When it was invoked.
    pub invoke_nanos: u64,
    /// When and how it ended; `None` while pending (taken as `Info`).
    pub completion: Option<(u64, CounterOutcome)>,
}

impl CounterOp {
    /// The outcome, a missing completion read as `Info`.
    pub fn outcome(&self) -> CounterOutcome {
        self.completion.map_or(CounterOutcome::Info, |(_, o)| o)
    }
}

impl fmt::Display for CounterOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let call = match self.call {
            CounterCall::Incr => "incr",
            CounterCall::Read => "read",
        };
        write!(
            f,
            "process {} {call} {} at {}",
            self.process, self.key, self.invoke_nanos
        )?;
        match self.completion {
            Some((at, CounterOutcome::Ok(v))) => write!(f, " -> ok {v} at {at}"),
            Some((at, CounterOutcome::Fail)) => write!(f, " -> fail at {at}"),
            Some((at, CounterOutcome::Info)) => write!(f, " -> info at {at}"),
            None => write!(f, " -> pending"),
        }
    }
}

/// The operations of a run on counters, in invocation order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CounterHistory {
    ops: Vec<CounterOp>,
}

impl CounterHistory {
    /// An empty history.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records an invocation; returns its index for [`Self::complete`].
    pub fn invoke(&mut self, process: ProcessId, key: &str, call: CounterCall, time: u64) -> usize {
        self.ops.push(CounterOp {
            process,
            key: key.to_owned(),
            call,
            invoke_nanos: time,
            completion: None,
        });
        self.ops.len() - 1
    }

    /// Records how operation `index` ended.
    ///
    /// # Panics
    /// If `index` was not returned by [`Self::invoke`] or already completed.
    pub fn complete(&mut self, index: usize, time: u64, outcome: CounterOutcome) {
        let op = &mut self.ops[index];
        assert!(op.completion.is_none(), "operation {index} completed twice");
        op.completion = Some((time, outcome));
    }

    /// The operations, in invocation order.
    pub fn operations(&self) -> &[CounterOp] {
        &self.ops
    }

    /// Operation `index`.
    pub fn operation(&self, index: usize) -> Option<&CounterOp> {
        self.ops.get(index)
    }
}

/// Which rule a counter history broke.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum CounterRule {
    /// The final value is not the acknowledged increments, give or take
    /// those of unknown outcome.
    Final,
    /// Two acknowledged increments returned the same value.
    Duplicate,
    /// A value returned is more than the increments that could have
    /// happened, or not positive for an increment.
    Range,
    /// A value is not above (an increment) or at least (a read) one
    /// returned by an operation that completed before it began.
    Order,
}

impl CounterRule {
    /// Its name, as a run's violation.
    pub fn name(self) -> &'static str {
        match self {
            CounterRule::Final => "counter-final",
            CounterRule::Duplicate => "counter-duplicate",
            CounterRule::Range => "counter-range",
            CounterRule::Order => "counter-order",
        }
    }
}

/// One broken rule, with a readable account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CounterViolation {
    /// The rule.
    pub rule: CounterRule,
    /// The key.
    pub key: String,
    /// What happened: the values and the operations.
    pub details: String,
}

/// Checks every key of `history` as a counter; `finals` holds each key's
/// final value (absent keys read 0; a key missing from `finals` has no
/// final-value check). Violations in key order, at most one per rule and
/// key.
pub fn check_counter(
    history: &CounterHistory,
    finals: &BTreeMap<String, i64>,
) -> Vec<CounterViolation> {
    let mut by_key: BTreeMap<&str, Vec<&CounterOp>> = BTreeMap::new();
    for op in history.operations() {
        by_key.entry(op.key.as_str()).or_default().push(op);
    }
    for key in finals.keys() {
        by_key.entry(key.as_str()).or_default();
    }
    let mut found = Vec::new();
    for (key, ops) in by_key {
        check_key(key, &ops, finals.get(key).copied(), &mut found);
    }
    found
}

fn check_key(key: &str, ops: &[&CounterOp], last: Option<i64>, found: &mut Vec<CounterViolation>) {
    let mut violate = |rule: CounterRule, details: String| {
        if !found.iter().any(|v| v.rule == rule && v.key == key) {
            found.push(CounterViolation {
                rule,
                key: key.to_owned(),
                details,
            });
        }
    };
    let incrs = ops.iter().filter(|op| op.call == CounterCall::Incr);
    let acked = incrs
        .clone()
        .filter(|op| matches!(op.outcome(), CounterOutcome::Ok(_)))
        .count() as i64;
    let unknown = incrs
        .filter(|op| op.outcome() == CounterOutcome::Info)
        .count() as i64;
    let most = acked + unknown;
    if let Some(last) = last {
        if last < acked || last > most {
            violate(
                CounterRule::Final,
                format!(
                    "{key} ends at {last}, but {acked} increments were acknowledged and {unknown} of unknown outcome (allowed {acked}..={most})"
                ),
            );
        }
    }
    let mut returned: BTreeMap<i64, &CounterOp> = BTreeMap::new();
    for op in ops {
        let CounterOutcome::Ok(value) = op.outcome() else {
            continue;
        };
        let lowest = if op.call == CounterCall::Incr { 1 } else { 0 };
        if value < lowest || value > most {
            violate(
                CounterRule::Range,
                format!("{op} returned {value}, outside {lowest}..={most} ({acked} increments acknowledged, {unknown} unknown)"),
            );
        }
        if op.call != CounterCall::Incr {
            continue;
        }
        if let Some(other) = returned.insert(value, op) {
            violate(
                CounterRule::Duplicate,
                format!("two increments returned {value}: {other}; {op}"),
            );
        }
    }
    // Real time: sort the completed `ok` operations by completion; for each
    // operation, the largest value returned by one completed before it was
    // invoked.
    let mut done: Vec<(u64, i64, &CounterOp)> = ops
        .iter()
        .filter_map(|op| match op.completion {
            Some((at, CounterOutcome::Ok(v))) => Some((at, v, *op)),
            _ => None,
        })
        .collect();
    done.sort_by_key(|&(at, v, _)| (at, v));
    let mut prefix_max: Vec<(i64, &CounterOp)> = Vec::with_capacity(done.len());
    for &(_, value, op) in &done {
        let best = match prefix_max.last() {
            Some(&(m, by)) if m >= value => (m, by),
            _ => (value, op),
        };
        prefix_max.push(best);
    }
    for &(_, value, op) in &done {
        let before = done.partition_point(|&(at, _, _)| at < op.invoke_nanos);
        let Some(&(earlier, by)) = before.checked_sub(1).and_then(|i| prefix_max.get(i)) else {
            continue;
        };
        let broken = match op.call {
            CounterCall::Incr => value <= earlier,
            CounterCall::Read => value < earlier,
        };
        if broken {
            violate(
                CounterRule::Order,
                format!("{op} returned {value}, but {by} returned {earlier} and completed before it began"),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Builds a history of `(process, call, invoke, complete, outcome)` on
    /// key "k".
    fn history(ops: &[(u64, CounterCall, u64, u64, CounterOutcome)]) -> CounterHistory {
        let mut h = CounterHistory::new();
        for &(process, call, invoke, complete, outcome) in ops {
            let i = h.invoke(process, "k", call, invoke);
            h.complete(i, complete, outcome);
        }
        h
    }

    fn finals(value: i64) -> BTreeMap<String, i64> {
        BTreeMap::from([("k".to_owned(), value)])
    }

    fn rules(h: &CounterHistory, last: i64) -> Vec<CounterRule> {
        check_counter(h, &finals(last))
            .into_iter()
            .map(|v| v.rule)
            .collect()
    }

    use CounterCall::{Incr, Read};
    use CounterOutcome::{Fail, Info, Ok};

    #[test]
    fn concurrent_increments_in_any_order_and_an_unknown_one_pass() {
        let h = history(&[
            (1, Incr, 0, 10, Ok(2)),
            (2, Incr, 1, 9, Ok(1)),
            (3, Incr, 2, 30, Info),
            (4, Read, 11, 12, Ok(2)),
            (5, Incr, 13, 14, Ok(4)),
            (6, Incr, 15, 16, Fail),
        ]);
        assert_eq!(rules(&h, 4), vec![]);
        // The unknown increment may also never have happened.
        let h = history(&[
            (1, Incr, 0, 10, Ok(1)),
            (3, Incr, 2, 30, Info),
            (5, Incr, 13, 14, Ok(2)),
        ]);
        assert_eq!(rules(&h, 2), vec![]);
        assert_eq!(rules(&h, 3), vec![]);
    }

    #[test]
    fn a_lost_or_invented_increment_breaks_the_final_value() {
        let h = history(&[(1, Incr, 0, 1, Ok(1)), (2, Incr, 2, 3, Ok(2))]);
        assert_eq!(rules(&h, 1), vec![CounterRule::Final]);
        assert_eq!(rules(&h, 3), vec![CounterRule::Final]);
        let h = history(&[(1, Incr, 0, 1, Ok(1)), (2, Incr, 2, 3, Info)]);
        assert_eq!(rules(&h, 3), vec![CounterRule::Final]);
        // A key no one touched must end at 0.
        assert_eq!(rules(&CounterHistory::new(), 1), vec![CounterRule::Final]);
        assert_eq!(rules(&CounterHistory::new(), 0), vec![]);
    }

    #[test]
    fn two_increments_returning_one_value_are_a_duplicate() {
        let h = history(&[
            (1, Incr, 0, 10, Ok(1)),
            (2, Incr, 0, 10, Ok(1)),
            (3, Incr, 0, 10, Info),
        ]);
        assert_eq!(rules(&h, 2), vec![CounterRule::Duplicate]);
    }

    #[test]
    fn a_value_beyond_every_possible_increment_is_out_of_range() {
        let h = history(&[(1, Incr, 0, 1, Ok(2))]);
        assert_eq!(rules(&h, 1), vec![CounterRule::Range]);
        let h = history(&[(1, Incr, 0, 1, Ok(1)), (2, Read, 2, 3, Ok(5))]);
        assert_eq!(rules(&h, 1), vec![CounterRule::Range]);
        let h = history(&[(1, Read, 0, 1, Ok(-1))]);
        assert_eq!(rules(&h, 0), vec![CounterRule::Range]);
    }

    #[test]
    fn going_back_in_real_time_breaks_order() {
        // The second increment began after the first returned 2.
        let h = history(&[(1, Incr, 0, 1, Ok(2)), (2, Incr, 2, 3, Ok(1))]);
        assert_eq!(rules(&h, 2), vec![CounterRule::Order]);
        // A read after an acknowledged increment must see it.
        let h = history(&[(1, Incr, 0, 1, Ok(1)), (2, Read, 2, 3, Ok(0))]);
        assert_eq!(rules(&h, 1), vec![CounterRule::Order]);
        // Reads do not go back either.
        let h = history(&[
            (1, Incr, 0, 100, Ok(1)),
            (2, Read, 1, 2, Ok(1)),
            (3, Read, 3, 4, Ok(0)),
        ]);
        assert_eq!(rules(&h, 1), vec![CounterRule::Order]);
        // Overlapping operations may see each other in either order.
        let h = history(&[(1, Incr, 0, 5, Ok(1)), (2, Read, 1, 2, Ok(0))]);
        assert_eq!(rules(&h, 1), vec![]);
    }

    #[test]
    fn pending_operations_count_as_unknown() {
        let mut h = history(&[(1, Incr, 0, 1, Ok(1))]);
        h.invoke(2, "k", Incr, 2);
        assert_eq!(rules(&h, 2), vec![]);
        assert_eq!(rules(&h, 3), vec![CounterRule::Final]);
    }
}
