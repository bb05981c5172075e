//! Histories of grow-only sets of integers (add / read-all), their
//! linearizability check and the set completeness check.
//!
//! Same outcome semantics as [`crate::history`]: `ok` happened, `fail` never
//! happened, `info` or pending may have happened at any time after
//! invocation, or never. Every key starts as the empty set.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use thiserror::Error;

use crate::consistency::{ConsistencyViolation, Judged, SessionResults};
use crate::history::{OpId, ProcessId, Recorded, Recording, Value};
use crate::linearizability::{check_parts_with_stop, CheckOptions, Verdict};
use crate::model::Model;
use crate::promises::{class_level, level_class, Scope, LEVEL_CLASSES};
use crate::wgl::SearchOp;

/// What a client asked of a set.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum SetInput {
    /// Add an element.
    Add(Value),
    /// Read every element.
    ReadAll,
}

/// What a client was told by a set, as the search sees it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum SetOutput {
    /// It happened; for a read, the elements read, sorted and deduplicated.
    Ok(Option<Vec<Value>>),
    /// Indeterminate: the search decides whether it happened.
    Unknown,
}

/// A grow-only set of integers, initially empty.
///
/// `Add(v)` inserts `v` (ok or indeterminate). `ReadAll` answered
/// `Ok(Some(elements))` requires `elements` to be exactly the state; an
/// `Ok(None)` read (a malformed completion) is impossible in every state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SetModel;

impl Model for SetModel {
    /// Sorted, without duplicates, so equal sets are equal states.
    type State = Vec<Value>;
    type Input = SetInput;
    type Output = SetOutput;

    fn init(&self) -> Vec<Value> {
        Vec::new()
    }

    fn step(&self, state: &Vec<Value>, input: &SetInput, output: &SetOutput) -> Option<Vec<Value>> {
        match (input, output) {
            (SetInput::Add(v), _) => match state.binary_search(v) {
                Ok(_) => Some(state.clone()),
                Err(at) => {
                    let mut next = state.clone();
                    next.insert(at, *v);
                    Some(next)
                }
            },
            (SetInput::ReadAll, SetOutput::Ok(Some(read))) => {
                (read == state).then(|| state.clone())
            }
            (SetInput::ReadAll, SetOutput::Ok(None)) => None,
            (SetInput::ReadAll, SetOutput::Unknown) => Some(state.clone()),
        }
    }

    fn state_heap_bytes(&self, state: &Vec<Value>) -> usize {
        state.capacity() * std::mem::size_of::<Value>()
    }

    fn describe_state(&self, state: &Vec<Value>) -> String {
        format!("{state:?}")
    }
}

/// How a set operation ended.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum SetOutcome {
    /// It happened; for a read, the elements it returned (in any order).
    Ok {
        /// The elements read (`None` for an add).
        value: Option<Vec<Value>>,
    },
    /// It definitely did not happen.
    Fail,
    /// Unknown: it may have happened at any time after invocation, or never.
    Info,
}

/// One set operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetOperation {
    /// Its index in the history.
    pub id: OpId,
    /// The process that issued it.
    pub process: ProcessId,
    /// The key (each key is its own set).
    pub key: String,
    /// What was asked.
    pub input: SetInput,
    /// When it was invoked.
    pub invoke_time: u64,
    /// When and how it ended; `None` while pending (treated as `info`).
    pub completion: Option<(u64, SetOutcome)>,
}

impl SetOperation {
    /// The outcome, with a missing completion read as `info`.
    pub fn outcome(&self) -> &SetOutcome {
        self.completion
            .as_ref()
            .map_or(&SetOutcome::Info, |(_, o)| o)
    }
}

impl fmt::Display for SetOperation {
    /// One readable line: `#4 p1 "s" add 3 [10..20] ok`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{} p{} {:?} ", self.id.0, self.process, self.key)?;
        match &self.input {
            SetInput::Add(v) => write!(f, "add {v}")?,
            SetInput::ReadAll => write!(f, "read-all")?,
        }
        match &self.completion {
            None => write!(f, " [{}..] pending", self.invoke_time),
            Some((t, outcome)) => {
                write!(f, " [{}..{t}] ", self.invoke_time)?;
                match outcome {
                    SetOutcome::Ok { value: Some(v) } => write!(f, "ok {v:?}"),
                    SetOutcome::Ok { value: None } => write!(f, "ok"),
                    SetOutcome::Fail => write!(f, "fail"),
                    SetOutcome::Info => write!(f, "info"),
                }
            }
        }
    }
}

/// A set history, in invocation order.
pub type SetHistory = Recording<SetOperation>;

impl Recorded for SetOperation {
    type Input = SetInput;
    type Outcome = SetOutcome;

    fn invoked(id: OpId, process: ProcessId, key: &str, input: SetInput, time: u64) -> Self {
        Self {
            id,
            process,
            key: key.to_owned(),
            input,
            invoke_time: time,
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
        self.invoke_time
    }
    fn completion_time(&self) -> Option<u64> {
        self.completion.as_ref().map(|(time, _)| *time)
    }
    fn set_completion(&mut self, time: u64, outcome: SetOutcome) {
        self.completion = Some((time, outcome));
    }
}

/// Checks a set history for linearizability with per-key budgets.
pub fn check_set_linearizable(history: &SetHistory, options: &CheckOptions) -> Verdict {
    check_set_linearizable_with_stop(history, options, &|| false)
}

/// [`check_set_linearizable`], answering [`Verdict::Unknown`] once `stop`
/// answers true.
pub fn check_set_linearizable_with_stop(
    history: &SetHistory,
    options: &CheckOptions,
    stop: &(dyn Fn() -> bool + Sync),
) -> Verdict {
    let mut parts: BTreeMap<&str, Vec<SearchOp<SetInput, SetOutput>>> = BTreeMap::new();
    for op in history.operations() {
        if let Some(search_op) = set_search_op(op) {
            parts.entry(op.key.as_str()).or_default().push(search_op);
        }
    }
    let describe = |id: OpId| {
        history
            .operation(id)
            .map_or_else(|| format!("#{}", id.0), |op| op.to_string())
    };
    check_parts_with_stop(&SetModel, parts, &describe, options, stop)
}

/// The search's view of one set operation, or `None` if it constrains
/// nothing (it never happened, or it is a read that did not complete).
pub(crate) fn set_search_op(op: &SetOperation) -> Option<SearchOp<SetInput, SetOutput>> {
    let (output, response_time) = match (&op.input, &op.completion) {
        (_, Some((_, SetOutcome::Fail))) => return None,
        (SetInput::ReadAll, None | Some((_, SetOutcome::Info))) => return None,
        (_, None | Some((_, SetOutcome::Info))) => (SetOutput::Unknown, None),
        (_, Some((t, SetOutcome::Ok { value }))) => (
            SetOutput::Ok(value.as_ref().map(|v| sorted_unique(v))),
            Some(*t),
        ),
    };
    Some(SearchOp {
        id: op.id,
        input: op.input.clone(),
        output,
        invoke_time: op.invoke_time,
        response_time,
    })
}

fn sorted_unique(values: &[Value]) -> Vec<Value> {
    let mut v = values.to_vec();
    v.sort_unstable();
    v.dedup();
    v
}

/// Why a set history is incomplete.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SetViolation {
    /// An add was acknowledged before the final read began, but that read
    /// does not hold its element.
    #[error("key {key:?}: acknowledged add of {element} (op #{}) is missing from the final read (op #{})", add.0, read.0)]
    Lost {
        /// The key.
        key: String,
        /// The element.
        element: Value,
        /// The acknowledged add.
        add: OpId,
        /// The final read.
        read: OpId,
    },
    /// A read holds an element no operation ever tried to add (or only
    /// adds that definitely failed).
    #[error("key {key:?}: read (op #{}) holds {element}, which no add could have inserted", read.0)]
    Phantom {
        /// The key.
        key: String,
        /// The element.
        element: Value,
        /// The read.
        read: OpId,
    },
}

/// Checks set completeness, key by key: the last successful read of each
/// key (the one invoked last) must hold every add acknowledged before that
/// read was invoked, and no successful read may hold an element that no
/// add, apart from definitely failed ones, tried to insert before the read
/// completed.
///
/// # Errors
/// The first violation, in key order, then operation order.
pub fn check_set_completeness(history: &SetHistory) -> Result<(), SetViolation> {
    let levels = BTreeMap::new();
    set_completeness(history, &Scope::everything(&levels))
}

/// The successful reads of a key, by invocation, with their elements.
fn reads_of<'a>(ops: &[&'a SetOperation]) -> Vec<(&'a SetOperation, u64, BTreeSet<Value>)> {
    let mut reads: Vec<_> = ops
        .iter()
        .filter_map(|op| match &op.completion {
            Some((done, SetOutcome::Ok { value: Some(v) })) if op.input == SetInput::ReadAll => {
                Some((*op, *done, v.iter().copied().collect()))
            }
            _ => None,
        })
        .collect();
    reads.sort_by_key(|(op, _, _)| (op.invoke_time, op.id));
    reads
}

/// Acknowledged adds: the operation, its element and when it was
/// acknowledged.
fn acked_adds<'a>(ops: &[&'a SetOperation]) -> Vec<(&'a SetOperation, Value, u64)> {
    ops.iter()
        .filter_map(|op| match (&op.input, &op.completion) {
            (SetInput::Add(v), Some((acked, SetOutcome::Ok { .. }))) => Some((*op, *v, *acked)),
            _ => None,
        })
        .collect()
}

fn set_by_key(history: &SetHistory) -> BTreeMap<&str, Vec<&SetOperation>> {
    let mut keys: BTreeMap<&str, Vec<&SetOperation>> = BTreeMap::new();
    for op in history.operations() {
        keys.entry(op.key.as_str()).or_default().push(op);
    }
    keys
}

/// [`check_set_completeness`], where the final read judges only the adds
/// whose level makes their replicas meet the read's (see [`Scope`]).
pub(crate) fn set_completeness(
    history: &SetHistory,
    scope: &Scope<'_>,
) -> Result<(), SetViolation> {
    for (key, ops) in set_by_key(history) {
        // element -> earliest invocation of an add that may have happened.
        let mut attempted: BTreeMap<Value, u64> = BTreeMap::new();
        for op in &ops {
            if let SetInput::Add(v) = op.input {
                if *op.outcome() != SetOutcome::Fail {
                    let t = attempted.entry(v).or_insert(op.invoke_time);
                    *t = (*t).min(op.invoke_time);
                }
            }
        }
        let reads = reads_of(&ops);
        for (read, done, elements) in &reads {
            for element in elements {
                if attempted.get(element).is_none_or(|&t| t > *done) {
                    return Err(SetViolation::Phantom {
                        key: key.to_owned(),
                        element: *element,
                        read: read.id,
                    });
                }
            }
        }
        let Some((read, _, present)) = reads.last() else {
            continue;
        };
        let read_level = scope.level(read.id);
        for (add, element, acked) in acked_adds(&ops) {
            if acked < read.invoke_time
                && !present.contains(&element)
                && scope.overlap(scope.level(add.id), read_level)
            {
                return Err(SetViolation::Lost {
                    key: key.to_owned(),
                    element,
                    add: add.id,
                    read: read.id,
                });
            }
        }
    }
    Ok(())
}

/// No acknowledged add disappears: every successful read invoked after an
/// add was acknowledged, at levels whose replica sets meet, holds its
/// element. The first violation, in key order, then read order.
pub(crate) fn set_lost_adds(
    history: &SetHistory,
    scope: &Scope<'_>,
) -> (Judged, Result<(), ConsistencyViolation>) {
    let mut judged = Judged::default();
    for (key, ops) in set_by_key(history) {
        let reads = reads_of(&ops);
        let mut adds = acked_adds(&ops);
        adds.sort_by_key(|(op, _, acked)| (*acked, op.id));
        for class in 0..LEVEL_CLASSES {
            let level = class_level(class);
            let must: Vec<_> = adds
                .iter()
                .filter(|(op, _, _)| scope.overlap(scope.level(op.id), level))
                .collect();
            let mut next = 0;
            let mut required: BTreeMap<Value, &SetOperation> = BTreeMap::new();
            for (read, _, elements) in reads
                .iter()
                .filter(|(r, _, _)| level_class(scope.level(r.id)) == class)
            {
                while let Some((add, element, acked)) = must.get(next) {
                    if *acked >= read.invoke_time {
                        break;
                    }
                    required.entry(*element).or_insert(add);
                    next += 1;
                }
                judged.pairs += required.len();
                if let Some((_, add)) = required.iter().find(|(e, _)| !elements.contains(e)) {
                    return (
                        judged,
                        Err(ConsistencyViolation::LostWrite {
                            key: key.to_owned(),
                            write: add.id,
                            read: read.id,
                            detail: format!("{add}, then {read}"),
                        }),
                    );
                }
            }
        }
    }
    (judged, Ok(()))
}

/// The session checks on sets: a process's read holds every element it
/// added and was acknowledged (read-your-writes), and every element its
/// earlier reads held (monotonic reads: the set only grows), for the pairs
/// the scope admits.
pub(crate) fn set_sessions(history: &SetHistory, scope: &Scope<'_>) -> SessionResults {
    let mut results = SessionResults::default();
    for (key, ops) in set_by_key(history) {
        let mut sessions: BTreeMap<ProcessId, Vec<&SetOperation>> = BTreeMap::new();
        for op in ops {
            sessions.entry(op.process).or_default().push(op);
        }
        for (process, mut ops) in sessions {
            ops.sort_by_key(|op| (op.invoke_time, op.id));
            let mut added: Vec<BTreeMap<Value, &SetOperation>> =
                vec![BTreeMap::new(); LEVEL_CLASSES];
            let mut seen: Vec<BTreeMap<Value, &SetOperation>> =
                vec![BTreeMap::new(); LEVEL_CLASSES];
            for op in ops {
                let level = scope.level(op.id);
                match (&op.input, &op.completion) {
                    (SetInput::Add(v), Some((_, SetOutcome::Ok { .. }))) => {
                        added[level_class(level)].entry(*v).or_insert(op);
                    }
                    (
                        SetInput::ReadAll,
                        Some((
                            _,
                            SetOutcome::Ok {
                                value: Some(elements),
                            },
                        )),
                    ) => {
                        let present: BTreeSet<Value> = elements.iter().copied().collect();
                        for class in 0..LEVEL_CLASSES {
                            if !scope.session_pair(class_level(class), level) {
                                continue;
                            }
                            results.ryw_judged.pairs += added[class].len();
                            results.mr_judged.pairs += seen[class].len();
                            if results.read_your_writes.is_ok() {
                                if let Some((_, add)) =
                                    added[class].iter().find(|(e, _)| !present.contains(e))
                                {
                                    results.read_your_writes =
                                        Err(ConsistencyViolation::ReadYourWrites {
                                            process,
                                            key: key.to_owned(),
                                            write: add.id,
                                            read: op.id,
                                            detail: format!("{add}, then {op}"),
                                        });
                                }
                            }
                            if results.monotonic_reads.is_ok() {
                                if let Some((e, first)) =
                                    seen[class].iter().find(|(e, _)| !present.contains(e))
                                {
                                    results.monotonic_reads =
                                        Err(ConsistencyViolation::MonotonicReads {
                                            process,
                                            key: key.to_owned(),
                                            first: first.id,
                                            second: op.id,
                                            detail: format!("{first}, then {op}, which lacks {e}"),
                                        });
                                }
                            }
                        }
                        let class = level_class(level);
                        for e in present {
                            seen[class].entry(e).or_insert(op);
                        }
                    }
                    _ => {}
                }
            }
        }
    }
    results
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok() -> SetOutcome {
        SetOutcome::Ok { value: None }
    }

    fn read(v: &[Value]) -> SetOutcome {
        SetOutcome::Ok {
            value: Some(v.to_vec()),
        }
    }

    fn op(
        h: &mut SetHistory,
        p: u64,
        input: SetInput,
        t: u64,
        done: Option<(u64, SetOutcome)>,
    ) -> OpId {
        let id = h.invoke(p, "s", input, t);
        if let Some((at, outcome)) = done {
            h.complete(id, at, outcome);
        }
        id
    }

    #[test]
    fn model_reads_must_match_the_state_in_any_order() {
        let m = SetModel;
        let s = m
            .step(&m.init(), &SetInput::Add(3), &SetOutput::Unknown)
            .unwrap();
        let s = m.step(&s, &SetInput::Add(1), &SetOutput::Ok(None)).unwrap();
        assert_eq!(s, vec![1, 3]);
        assert!(m
            .step(&s, &SetInput::ReadAll, &SetOutput::Ok(Some(vec![1])))
            .is_none());
        assert!(m
            .step(&s, &SetInput::ReadAll, &SetOutput::Ok(Some(vec![1, 3])))
            .is_some());
    }

    #[test]
    fn read_missing_a_completed_add_is_not_linearizable() {
        let mut h = SetHistory::new();
        op(&mut h, 0, SetInput::Add(1), 0, Some((5, ok())));
        let r = op(&mut h, 1, SetInput::ReadAll, 10, Some((15, read(&[]))));
        let Verdict::NotLinearizable(c) = check_set_linearizable(&h, &CheckOptions::default())
        else {
            panic!("a read missing an acknowledged add was accepted");
        };
        assert_eq!(c.unplaceable, vec![r]);
    }

    #[test]
    fn concurrent_add_may_or_may_not_be_seen() {
        for seen in [&[][..], &[7][..]] {
            let mut h = SetHistory::new();
            op(&mut h, 0, SetInput::Add(7), 0, Some((100, ok())));
            op(&mut h, 1, SetInput::ReadAll, 10, Some((20, read(seen))));
            assert_eq!(
                check_set_linearizable(&h, &CheckOptions::default()),
                Verdict::Linearizable
            );
            assert_eq!(check_set_completeness(&h), Ok(()));
        }
    }

    #[test]
    fn completeness_finds_a_lost_add() {
        let mut h = SetHistory::new();
        let add = op(&mut h, 0, SetInput::Add(1), 0, Some((5, ok())));
        op(&mut h, 0, SetInput::Add(2), 6, Some((9, ok())));
        op(&mut h, 2, SetInput::Add(3), 6, Some((9, SetOutcome::Info)));
        let r = op(&mut h, 1, SetInput::ReadAll, 10, Some((15, read(&[2, 3]))));
        assert_eq!(
            check_set_completeness(&h),
            Err(SetViolation::Lost {
                key: "s".into(),
                element: 1,
                add,
                read: r
            })
        );
    }

    #[test]
    fn completeness_finds_a_phantom_element() {
        let mut h = SetHistory::new();
        op(&mut h, 0, SetInput::Add(1), 0, Some((5, SetOutcome::Fail)));
        let r = op(&mut h, 1, SetInput::ReadAll, 10, Some((15, read(&[1]))));
        assert_eq!(
            check_set_completeness(&h),
            Err(SetViolation::Phantom {
                key: "s".into(),
                element: 1,
                read: r
            })
        );
    }

    #[test]
    fn completeness_ignores_adds_acknowledged_after_the_final_read_began() {
        let mut h = SetHistory::new();
        op(&mut h, 0, SetInput::Add(1), 0, Some((50, ok())));
        op(&mut h, 1, SetInput::ReadAll, 10, Some((15, read(&[]))));
        assert_eq!(check_set_completeness(&h), Ok(()));
    }
}
