//! Is a history linearizable, key by key?
//!
//! Keys are independent objects, so a history is linearizable iff the
//! sub-history of every key is (Herlihy & Wing's locality). Each key is
//! checked with the Wing-Gong-Lowe search ([`crate::wgl`]) against a
//! [`Model`]; the first key (in key order) that fails gives the
//! [`Counterexample`].
//!
//! Semantics of outcomes (Jepsen's): `ok` happened between invocation and
//! response; `fail` never happened and is left out, as Knossos does; a
//! refused CAS (Porcupine's reading of a failed one, see
//! [`crate::FailReading`]) is a definite check that the register did not
//! hold `expected`; `info` and pending operations may take effect at any
//! time after invocation, or never.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::history::{Call, History, OpId, Operation, Outcome};
use crate::model::{Model, RegisterModel};
use crate::wgl::{self, Limit, ModelOp, SearchLimits, SearchOp, SearchResult, Stuck};

/// The answer of a linearizability check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Every key has a linearization.
    Linearizable,
    /// Some key has none; the first such key, in key order.
    NotLinearizable(Counterexample),
    /// The search budget ran out on some key before a verdict, and no other
    /// key was found not linearizable.
    Unknown {
        /// Which key and which limit.
        reason: String,
    },
}

impl Verdict {
    /// Whether the verdict is [`Verdict::Linearizable`].
    pub fn is_linearizable(&self) -> bool {
        matches!(self, Verdict::Linearizable)
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Verdict::Linearizable => write!(f, "linearizable"),
            Verdict::NotLinearizable(c) => write!(f, "not linearizable\n{c}"),
            Verdict::Unknown { reason } => write!(f, "unknown: {reason}"),
        }
    }
}

/// Why one key is not linearizable: the furthest the search got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Counterexample {
    /// The key.
    pub key: String,
    /// The longest sequence of operations the search could linearize, in
    /// order (including indeterminate operations it let take effect).
    pub linearized: Vec<OpId>,
    /// The object's state after `linearized`, as the model describes it.
    pub state_after: String,
    /// The operations that could have come next (invoked, not linearized,
    /// before `deadline` responded), in time order. None of them could be
    /// placed: the model rejected each, or placing it led only to states
    /// already shown to be dead ends.
    pub unplaceable: Vec<OpId>,
    /// The operation whose response closed the window: it had to be
    /// linearized by then and could not be.
    pub deadline: OpId,
    /// When the search pruned with the model's look-ahead: a candidate
    /// (from `unplaceable`) and an operation still to come that placing it
    /// next makes impossible (e.g. a read whose value no continuation then
    /// produces). One example, not the whole reason for every candidate.
    pub contradiction: Option<(OpId, OpId)>,
    /// One readable line per operation named above.
    lines: BTreeMap<OpId, String>,
    /// Invocation and response time (`None`: open-ended) of each of them.
    intervals: BTreeMap<OpId, (u64, Option<u64>)>,
}

/// How many linearized operations a report shows before the failure point.
const REPORT_PREFIX_TAIL_MAX: usize = 8;

impl Counterexample {
    fn line(&self, id: OpId) -> &str {
        self.lines.get(&id).map_or("?", String::as_str)
    }
}

impl fmt::Display for Counterexample {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "key {:?} is not linearizable.", self.key)?;
        let n = self.linearized.len();
        writeln!(f, "Longest linearizable prefix: {n} operation(s)")?;
        let skip = n.saturating_sub(REPORT_PREFIX_TAIL_MAX);
        if skip > 0 {
            writeln!(f, "  ... {skip} earlier operation(s)")?;
        }
        for id in &self.linearized[skip..] {
            writeln!(f, "  {}", self.line(*id))?;
        }
        writeln!(f, "after which the state is {}.", self.state_after)?;
        writeln!(f, "None of these could be linearized next:")?;
        for id in &self.unplaceable {
            let mark = if *id == self.deadline {
                "  <- responded before it could be placed"
            } else {
                ""
            };
            writeln!(f, "  {}{mark}", self.line(*id))?;
        }
        if let Some((candidate, later)) = self.contradiction {
            writeln!(
                f,
                "For instance, placing #{} next contradicts an operation still to come:\n  {}",
                candidate.0,
                self.line(later)
            )?;
        }
        writeln!(f, "Window (time runs left to right; > never responded):")?;
        for row in self.picture(&self.linearized[skip..]) {
            writeln!(f, "  {row}")?;
        }
        Ok(())
    }
}

impl Counterexample {
    /// One bar per operation of the failing window (the tail of the prefix,
    /// then the unplaceable ones), on a shared axis of the distinct times
    /// involved, so overlaps read at a glance.
    fn picture(&self, prefix_tail: &[OpId]) -> Vec<String> {
        let ids: Vec<OpId> = prefix_tail
            .iter()
            .chain(&self.unplaceable)
            .copied()
            .collect();
        let mut times: Vec<u64> = Vec::new();
        for id in &ids {
            if let Some((start, end)) = self.intervals.get(id) {
                times.push(*start);
                times.extend(end);
            }
        }
        times.sort_unstable();
        times.dedup();
        let column = |t: u64| times.partition_point(|&x| x < t) * PICTURE_COLUMNS_PER_TIME;
        let width = times.len() * PICTURE_COLUMNS_PER_TIME + 1;
        let label_width = ids
            .iter()
            .map(|id| id.0.to_string().len())
            .max()
            .unwrap_or(1)
            + 1;
        ids.iter()
            .filter_map(|id| {
                let (start, end) = self.intervals.get(id)?;
                let from = column(*start);
                let to = end.map_or(width, column);
                let mut bar: String = " ".repeat(from);
                bar.push('[');
                bar.push_str(&"-".repeat(to.saturating_sub(from + 1)));
                bar.push(if end.is_some() { ']' } else { '>' });
                let tag = if self.linearized.contains(id) {
                    "linearized"
                } else {
                    "unplaced"
                };
                let label = format!("#{}", id.0);
                Some(format!(
                    "{label:<label_width$} {bar:<w$} {tag}",
                    w = width + 1
                ))
            })
            .collect()
    }
}

/// Characters per distinct time point in the window picture.
const PICTURE_COLUMNS_PER_TIME: usize = 3;

/// Budgets for a check (exceeding one yields [`Verdict::Unknown`]) and how
/// many threads may search keys at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckOptions {
    /// Limits applied to the search of each key separately.
    pub limits_per_key: SearchLimits,
    /// Keys searched at the same time, each on its own thread (0 and 1:
    /// one after the other on the caller's thread, no thread spawned).
    /// The verdict and its report do not depend on it (see
    /// [`check_parts`]); peak memory may grow with it, as every key's memo
    /// may reach `limits_per_key.memo_bytes_max`. Default 1: the simulator
    /// and library callers stay single-threaded unless they ask.
    pub threads: usize,
}

impl Default for CheckOptions {
    fn default() -> Self {
        Self {
            limits_per_key: SearchLimits::default(),
            threads: 1,
        }
    }
}

/// Checks a register history with the default budget.
pub fn check_linearizable(history: &History) -> Verdict {
    check_linearizable_with(history, &CheckOptions::default())
}

/// Checks a register history; see [`RegisterModel`] for the semantics.
pub fn check_linearizable_with(history: &History, options: &CheckOptions) -> Verdict {
    check_linearizable_with_stop(history, options, &|| false)
}

/// [`check_linearizable_with`], answering [`Verdict::Unknown`] once `stop`
/// answers true.
pub fn check_linearizable_with_stop(
    history: &History,
    options: &CheckOptions,
    stop: &(dyn Fn() -> bool + Sync),
) -> Verdict {
    let mut parts: BTreeMap<&str, Vec<SearchOp<Call, Outcome>>> = BTreeMap::new();
    for op in history.operations() {
        if let Some(search_op) = register_search_op(op) {
            parts.entry(op.key.as_str()).or_default().push(search_op);
        }
    }
    for ops in parts.values_mut() {
        prune_unobserved_open_writes(ops);
    }
    let describe = |id: OpId| {
        history
            .operation(id)
            .map_or_else(|| format!("#{}", id.0), |op| op.to_string())
    };
    check_parts_with_stop(&RegisterModel, parts, &describe, options, stop)
}

/// The search's view of one register operation, or `None` if it constrains
/// nothing (a failed operation never happened; a read or write cannot be
/// refused, so a refused one is taken as failed; an indeterminate read
/// changes nothing).
pub(crate) fn register_search_op(op: &Operation) -> Option<SearchOp<Call, Outcome>> {
    let response_time = match (&op.call, &op.completion) {
        (_, Some(c)) if c.outcome == Outcome::Fail => return None,
        (Call::Read | Call::Write(_), Some(c)) if c.outcome == Outcome::Refused => return None,
        (Call::Read, None) => return None,
        (Call::Read, Some(c)) if c.outcome == Outcome::Info => return None,
        (_, None) => None,
        (_, Some(c)) if c.outcome == Outcome::Info => None,
        (_, Some(c)) => Some(c.time_nanos),
    };
    Some(SearchOp {
        id: op.id,
        input: op.call.clone(),
        output: op.outcome().clone(),
        invoke_time: op.invoke_nanos,
        response_time,
    })
}

/// Drops the writes of one register's operations that never responded
/// (`info`) and whose value nothing observed: no read returned it and no
/// compare-and-set expected it. Such a write can always be linearized
/// after every other operation (its interval never ends, and nothing
/// follows it to see it), and any linearization with it stays one without
/// it (no read or comparison lies between it and the next write, since
/// none observed its value), so the verdict is the same; but each one left
/// in doubles the configurations the search may explore. Not applied to a
/// register with a refused compare-and-set (one that saw the register hold
/// something other than it expected): removing a write could change what
/// such a comparison saw. Deletions are kept (nothing and the initial
/// register look alike).
pub(crate) fn prune_unobserved_open_writes(ops: &mut Vec<SearchOp<Call, Outcome>>) {
    if ops.iter().any(|op| op.output == Outcome::Refused) {
        return;
    }
    let mut observed = std::collections::BTreeSet::new();
    for op in ops.iter() {
        match (&op.input, &op.output) {
            (Call::Read, Outcome::Ok { value: Some(v) }) => {
                observed.insert(*v);
            }
            (
                Call::Cas {
                    expected: Some(v), ..
                },
                _,
            ) => {
                observed.insert(*v);
            }
            _ => {}
        }
    }
    ops.retain(|op| {
        let written = match &op.input {
            Call::Write(Some(v)) | Call::Cas { new: Some(v), .. } => Some(v),
            _ => None,
        };
        !(op.response_time.is_none() && written.is_some_and(|v| !observed.contains(v)))
    });
}

/// Step budget of every key in the first round of [`check_parts`].
const ROUND_STEPS_FIRST: u64 = 10_000;

/// Factor by which the step budget grows from one round to the next.
const ROUND_STEPS_GROWTH: u64 = 8;

/// Checks each key's operations against `model`.
///
/// Keys are searched in rounds of growing step budget (from
/// `ROUND_STEPS_FIRST`, times `ROUND_STEPS_GROWTH` each round, up to
/// `options.limits_per_key.steps_max`): a key that is quick to refute is
/// found before a hard key eats the whole budget, and repeating the cheap
/// rounds costs at most a seventh more. Within a round keys go in key order;
/// with `options.threads` above 1 they are searched on that many threads
/// at once, each key's result kept in its place, and the results are then
/// read in key order exactly as if searched one after the other.
///
/// Returns the counterexample of the first key refuted in the earliest
/// round that refutes any (deterministic: it depends on the history and
/// the options' limits only, not on `options.threads`); otherwise `Unknown`
/// if a key ran out of budget; otherwise `Linearizable`. `describe` renders
/// an operation for reports.
pub fn check_parts<M, K>(
    model: &M,
    parts: BTreeMap<K, Vec<ModelOp<M>>>,
    describe: &dyn Fn(OpId) -> String,
    options: &CheckOptions,
) -> Verdict
where
    M: Model + Sync,
    M::State: Send,
    M::Input: Sync,
    M::Output: Sync,
    K: AsRef<str> + Ord,
{
    check_parts_with_stop(model, parts, describe, options, &|| false)
}

/// [`check_parts`], giving up with [`Verdict::Unknown`] as soon as `stop`
/// answers true (it is polled between chunks of search steps, see
/// [`wgl::search_with_stop`], from every searching thread). A key already
/// refuted is still reported.
pub fn check_parts_with_stop<M, K>(
    model: &M,
    parts: BTreeMap<K, Vec<ModelOp<M>>>,
    describe: &dyn Fn(OpId) -> String,
    options: &CheckOptions,
    stop: &(dyn Fn() -> bool + Sync),
) -> Verdict
where
    M: Model + Sync,
    M::State: Send,
    M::Input: Sync,
    M::Output: Sync,
    K: AsRef<str> + Ord,
{
    let limits = options.limits_per_key;
    let mut undecided: Vec<(&str, &[ModelOp<M>])> = parts
        .iter()
        .map(|(k, ops)| (k.as_ref(), ops.as_slice()))
        .collect();
    let mut unknown: Option<String> = None;
    let mut steps_max = ROUND_STEPS_FIRST.min(limits.steps_max);
    loop {
        let round = SearchLimits {
            steps_max,
            ..limits
        };
        let final_round = steps_max >= limits.steps_max;
        let results = search_round(model, &undecided, &round, stop, options.threads);
        let mut retry = Vec::new();
        // In key order. `results` stops at the first key that decides the
        // round, where this loop returns.
        for (&(key, ops), result) in undecided.iter().zip(results) {
            match result {
                SearchResult::Linearizable { .. } => {}
                SearchResult::Exhausted {
                    limit: Limit::Stopped,
                    reason,
                } => {
                    return Verdict::Unknown {
                        reason: format!("key {key:?}: {reason}"),
                    };
                }
                SearchResult::Exhausted {
                    limit: Limit::Steps,
                    ..
                } if !final_round => {
                    retry.push((key, ops));
                }
                SearchResult::Exhausted { reason, .. } => {
                    unknown.get_or_insert_with(|| format!("key {key:?}: {reason}"));
                }
                SearchResult::NotLinearizable(stuck) => {
                    let plain = if M::PRUNES {
                        plain_stuck(model, ops, &limits, stop)
                    } else {
                        None
                    };
                    let (stuck, contradiction) = match plain {
                        Some(plain) => (plain, None),
                        None => {
                            let witness = contradiction(model, ops, &stuck);
                            (stuck, witness)
                        }
                    };
                    let mut c = counterexample(model, key, ops, &stuck, describe);
                    if let Some((candidate, later)) = contradiction {
                        let later = ops[later].id;
                        c.lines.insert(later, describe(later));
                        c.contradiction = Some((ops[candidate].id, later));
                    }
                    return Verdict::NotLinearizable(c);
                }
            }
        }
        if retry.is_empty() {
            return match unknown {
                Some(reason) => Verdict::Unknown { reason },
                None => Verdict::Linearizable,
            };
        }
        undecided = retry;
        steps_max = steps_max
            .saturating_mul(ROUND_STEPS_GROWTH)
            .min(limits.steps_max);
    }
}

/// Whether a key's result ends the round's reading in
/// [`check_parts_with_stop`]: keys after it do not matter.
fn decides_round<S>(result: &SearchResult<S>) -> bool {
    matches!(
        result,
        SearchResult::NotLinearizable(_)
            | SearchResult::Exhausted {
                limit: Limit::Stopped,
                ..
            }
    )
}

/// The search results of one round's keys, in key order, up to and
/// including the first whose result [`decides_round`] (all keys if none
/// does), on up to `threads` threads.
fn search_round<M: Model + Sync>(
    model: &M,
    keys: &[(&str, &[ModelOp<M>])],
    round: &SearchLimits,
    stop: &(dyn Fn() -> bool + Sync),
    threads: usize,
) -> Vec<SearchResult<M::State>>
where
    M::State: Send,
    M::Input: Sync,
    M::Output: Sync,
{
    let mut results = Vec::with_capacity(keys.len());
    if threads.min(keys.len()) <= 1 {
        for (_, ops) in keys {
            let result = wgl::search_with_stop(model, ops, round, stop);
            let decides = decides_round(&result);
            results.push(result);
            if decides {
                break;
            }
        }
        return results;
    }
    let mut slots: Vec<Option<SearchResult<M::State>>> = Vec::with_capacity(keys.len());
    slots.resize_with(keys.len(), || None);
    for (index, result) in search_on_threads(model, keys, round, stop, threads.min(keys.len())) {
        slots[index] = Some(result);
    }
    // Every key before the first deciding one has its result (see
    // `search_on_threads`), so `map_while` never ends early.
    for result in slots.into_iter().map_while(|slot| slot) {
        let decides = decides_round(&result);
        results.push(result);
        if decides {
            break;
        }
    }
    results
}

/// [`search_round`] on `threads` scoped threads: each takes the next key by
/// an atomic index (so keys are started in key order) and returns its
/// (index, result) pairs. The order in which keys finish varies from run to
/// run; what comes out does not, because each key's search depends only on
/// its own operations and the caller reads results by index, in key order.
/// Once a key decides the round, later keys are skipped or stopped early
/// (their results are never read); every earlier key still runs to its end.
fn search_on_threads<M: Model + Sync>(
    model: &M,
    keys: &[(&str, &[ModelOp<M>])],
    round: &SearchLimits,
    stop: &(dyn Fn() -> bool + Sync),
    threads: usize,
) -> Vec<(usize, SearchResult<M::State>)>
where
    M::State: Send,
    M::Input: Sync,
    M::Output: Sync,
{
    let next = AtomicUsize::new(0);
    // The lowest index of a key whose result decides the round.
    let decided = AtomicUsize::new(usize::MAX);
    let worker = || {
        let mut done = Vec::new();
        loop {
            let index = next.fetch_add(1, Ordering::Relaxed);
            if index >= keys.len() || index > decided.load(Ordering::Relaxed) {
                return done;
            }
            let stop_key = || stop() || decided.load(Ordering::Relaxed) < index;
            let result = wgl::search_with_stop(model, keys[index].1, round, &stop_key);
            if decides_round(&result) {
                decided.fetch_min(index, Ordering::Relaxed);
            }
            done.push((index, result));
        }
    };
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads).map(|_| scope.spawn(worker)).collect();
        handles
            .into_iter()
            .flat_map(|handle| match handle.join() {
                Ok(done) => done,
                Err(panic) => std::panic::resume_unwind(panic),
            })
            .collect()
    })
}

/// Step budget of the search without pruning that [`plain_stuck`] runs.
const REPORT_STEPS_MAX: u64 = 250_000;

/// Where a search *without* the model's pruning gets stuck, if it decides
/// within `REPORT_STEPS_MAX` steps. Pruning finds dead ends early, so the
/// operation it fails to place is often an innocent write whose effect a
/// later read contradicts; the plain search fails at the read itself, which
/// is what a person wants to see.
fn plain_stuck<M: Model>(
    model: &M,
    ops: &[ModelOp<M>],
    limits: &SearchLimits,
    stop: &(dyn Fn() -> bool + Sync),
) -> Option<Stuck<M::State>> {
    let plain = Unpruned(model);
    let limits = SearchLimits {
        steps_max: REPORT_STEPS_MAX.min(limits.steps_max),
        ..*limits
    };
    match wgl::search_with_stop(&plain, ops, &limits, stop) {
        SearchResult::NotLinearizable(stuck) => Some(stuck),
        _ => None,
    }
}

/// For a counterexample found with pruning: the first candidate whose
/// placement the model accepts but that contradicts an operation still to
/// come, and that operation, as indices into `ops`.
fn contradiction<M: Model>(
    model: &M,
    ops: &[ModelOp<M>],
    stuck: &Stuck<M::State>,
) -> Option<(usize, usize)> {
    let mut placed = vec![false; ops.len()];
    for &i in &stuck.prefix {
        placed[i] = true;
    }
    stuck.candidates.iter().find_map(|&candidate| {
        let next = model.step(&stuck.state, &ops[candidate].input, &ops[candidate].output)?;
        let rest: Vec<usize> = (0..ops.len())
            .filter(|&i| !placed[i] && i != candidate)
            .collect();
        let pending: Vec<&ModelOp<M>> = rest.iter().map(|&i| &ops[i]).collect();
        model
            .dead_end(&next, &pending)
            .map(|at| (candidate, rest[at]))
    })
}

/// A model with its pruning turned off.
#[derive(Debug)]
struct Unpruned<'a, M>(&'a M);

impl<M: Model> Model for Unpruned<'_, M> {
    type State = M::State;
    type Input = M::Input;
    type Output = M::Output;

    fn init(&self) -> M::State {
        self.0.init()
    }

    fn step(&self, state: &M::State, input: &M::Input, output: &M::Output) -> Option<M::State> {
        self.0.step(state, input, output)
    }

    fn state_heap_bytes(&self, state: &M::State) -> usize {
        self.0.state_heap_bytes(state)
    }

    fn describe_state(&self, state: &M::State) -> String {
        self.0.describe_state(state)
    }
}

fn counterexample<M: Model>(
    model: &M,
    key: &str,
    ops: &[ModelOp<M>],
    stuck: &Stuck<M::State>,
    describe: &dyn Fn(OpId) -> String,
) -> Counterexample {
    let ids = |indices: &[usize]| indices.iter().map(|&i| ops[i].id).collect::<Vec<_>>();
    let linearized = ids(&stuck.prefix);
    let unplaceable = ids(&stuck.candidates);
    let deadline = ops[stuck.deadline].id;
    let named = || {
        linearized
            .iter()
            .chain(&unplaceable)
            .chain(std::iter::once(&deadline))
    };
    let lines = named().map(|&id| (id, describe(id))).collect();
    let intervals = stuck
        .prefix
        .iter()
        .chain(&stuck.candidates)
        .map(|&i| (ops[i].id, (ops[i].invoke_time, ops[i].response_time)))
        .collect();
    Counterexample {
        key: key.to_owned(),
        linearized,
        state_after: model.describe_state(&stuck.state),
        unplaceable,
        deadline,
        contradiction: None,
        lines,
        intervals,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::ProcessId;

    /// Builds histories tersely: times are given explicitly.
    struct Recorder {
        history: History,
    }

    impl Recorder {
        fn new() -> Self {
            Self {
                history: History::new(),
            }
        }

        fn op(
            &mut self,
            process: ProcessId,
            key: &str,
            call: Call,
            invoke: u64,
            done: Option<(u64, Outcome)>,
        ) -> OpId {
            let id = self.history.invoke(process, key, call, invoke);
            if let Some((t, outcome)) = done {
                self.history.complete(id, t, outcome);
            }
            id
        }
    }

    fn ok() -> Outcome {
        Outcome::Ok { value: None }
    }

    fn read(v: Option<i64>) -> Outcome {
        Outcome::Ok { value: v }
    }

    #[test]
    fn open_writes_nothing_observed_are_pruned_and_verdicts_stay() {
        // Many writes left in doubt whose values nobody read, around a
        // stale read: still refuted, and pruned down to what matters.
        let mut r = Recorder::new();
        r.op(0, "k", Call::Write(Some(1)), 0, Some((10, ok())));
        r.op(1, "k", Call::Write(Some(2)), 20, Some((30, ok())));
        for i in 0..40u64 {
            r.op(2 + i, "k", Call::Write(Some(100 + i as i64)), 31 + i, None);
        }
        r.op(90, "k", Call::Write(Some(7)), 35, Some((36, Outcome::Info)));
        r.op(91, "k", Call::Read, 80, Some((90, read(Some(7)))));
        r.op(92, "k", Call::Read, 100, Some((110, read(Some(1)))));
        let mut ops: Vec<_> = r
            .history
            .operations()
            .iter()
            .filter_map(register_search_op)
            .collect();
        prune_unobserved_open_writes(&mut ops);
        // The two acknowledged writes, the observed open write 7, two reads.
        assert_eq!(ops.len(), 5);
        assert!(matches!(
            check_linearizable(&r.history),
            Verdict::NotLinearizable(_)
        ));
        // Without the stale read the same history is linearizable.
        let mut r2 = Recorder::new();
        r2.op(0, "k", Call::Write(Some(1)), 0, Some((10, ok())));
        for i in 0..40u64 {
            r2.op(2 + i, "k", Call::Write(Some(100 + i as i64)), 11 + i, None);
        }
        r2.op(91, "k", Call::Read, 80, Some((90, read(Some(1)))));
        assert_eq!(check_linearizable(&r2.history), Verdict::Linearizable);
    }

    #[test]
    fn a_refused_compare_and_set_keeps_every_open_write() {
        // The refused comparison saw something other than 1: only the open
        // write of 5 (never read) explains it, so it must stay.
        let mut r = Recorder::new();
        r.op(0, "k", Call::Write(Some(1)), 0, Some((10, ok())));
        r.op(1, "k", Call::Write(Some(5)), 20, None);
        r.op(
            2,
            "k",
            Call::Cas {
                expected: Some(1),
                new: Some(9),
            },
            30,
            Some((40, Outcome::Refused)),
        );
        let mut ops: Vec<_> = r
            .history
            .operations()
            .iter()
            .filter_map(register_search_op)
            .collect();
        prune_unobserved_open_writes(&mut ops);
        assert_eq!(ops.len(), 3);
        assert_eq!(check_linearizable(&r.history), Verdict::Linearizable);
    }

    #[test]
    fn empty_history_is_linearizable() {
        assert_eq!(check_linearizable(&History::new()), Verdict::Linearizable);
    }

    #[test]
    fn stale_read_after_completed_write_is_rejected() {
        let mut r = Recorder::new();
        r.op(0, "k", Call::Write(Some(1)), 0, Some((10, ok())));
        r.op(0, "k", Call::Write(Some(2)), 20, Some((30, ok())));
        let stale = r.op(1, "k", Call::Read, 40, Some((50, read(Some(1)))));
        let Verdict::NotLinearizable(c) = check_linearizable(&r.history) else {
            panic!("a stale read was accepted");
        };
        assert_eq!(c.key, "k");
        assert_eq!(c.linearized, vec![OpId(0), OpId(1)]);
        assert_eq!(c.unplaceable, vec![stale]);
        assert_eq!(c.deadline, stale);
        assert_eq!(c.state_after, "2");
        let report = c.to_string();
        assert!(report.contains("key \"k\""), "{report}");
        assert!(report.contains("#2 p1 k read [40..50] ok 1"), "{report}");
        assert!(report.contains("#0 [--]"), "{report}");
        assert!(
            report.contains("#2             [--]     unplaced"),
            "{report}"
        );
    }

    #[test]
    fn report_is_deterministic() {
        let build = || {
            let mut r = Recorder::new();
            r.op(0, "a", Call::Write(Some(1)), 0, Some((10, ok())));
            r.op(1, "a", Call::Write(Some(2)), 5, Some((15, ok())));
            r.op(2, "a", Call::Read, 20, Some((30, read(Some(3)))));
            check_linearizable(&r.history).to_string()
        };
        assert_eq!(build(), build());
    }

    #[test]
    fn info_write_taking_effect_late_is_accepted() {
        let mut r = Recorder::new();
        r.op(0, "k", Call::Write(Some(1)), 0, Some((10, ok())));
        r.op(1, "k", Call::Write(Some(7)), 20, Some((30, Outcome::Info)));
        r.op(2, "k", Call::Read, 40, Some((50, read(Some(1)))));
        r.op(2, "k", Call::Read, 1000, Some((1010, read(Some(7)))));
        assert_eq!(check_linearizable(&r.history), Verdict::Linearizable);
    }

    #[test]
    fn pending_write_taking_effect_late_is_accepted() {
        let mut r = Recorder::new();
        r.op(1, "k", Call::Write(Some(7)), 20, None);
        r.op(2, "k", Call::Read, 40, Some((50, read(None))));
        r.op(2, "k", Call::Read, 1000, Some((1010, read(Some(7)))));
        assert_eq!(check_linearizable(&r.history), Verdict::Linearizable);
    }

    #[test]
    fn info_write_that_never_takes_effect_is_accepted() {
        let mut r = Recorder::new();
        r.op(0, "k", Call::Write(Some(1)), 0, Some((10, ok())));
        r.op(1, "k", Call::Write(Some(7)), 20, Some((30, Outcome::Info)));
        r.op(2, "k", Call::Read, 40, Some((50, read(Some(1)))));
        r.op(2, "k", Call::Read, 1000, Some((1010, read(Some(1)))));
        assert_eq!(check_linearizable(&r.history), Verdict::Linearizable);
    }

    #[test]
    fn info_write_cannot_take_effect_before_its_invocation() {
        let mut r = Recorder::new();
        r.op(2, "k", Call::Read, 0, Some((10, read(Some(7)))));
        r.op(1, "k", Call::Write(Some(7)), 20, Some((30, Outcome::Info)));
        assert!(matches!(
            check_linearizable(&r.history),
            Verdict::NotLinearizable(_)
        ));
    }

    #[test]
    fn concurrent_write_and_read_are_accepted_in_either_order() {
        for seen in [None, Some(5)] {
            let mut r = Recorder::new();
            r.op(0, "k", Call::Write(Some(5)), 0, Some((100, ok())));
            r.op(1, "k", Call::Read, 10, Some((90, read(seen))));
            assert_eq!(
                check_linearizable(&r.history),
                Verdict::Linearizable,
                "read {seen:?}"
            );
        }
    }

    #[test]
    fn read_of_a_never_written_value_is_rejected() {
        let mut r = Recorder::new();
        r.op(0, "k", Call::Write(Some(5)), 0, Some((100, ok())));
        let bad = r.op(1, "k", Call::Read, 10, Some((90, read(Some(6)))));
        let Verdict::NotLinearizable(c) = check_linearizable(&r.history) else {
            panic!("read of a value nobody wrote was accepted");
        };
        assert!(c.unplaceable.contains(&bad));
    }

    #[test]
    fn failed_write_value_appearing_in_a_read_is_rejected() {
        let mut r = Recorder::new();
        r.op(0, "k", Call::Write(Some(5)), 0, Some((100, Outcome::Fail)));
        r.op(1, "k", Call::Read, 10, Some((90, read(Some(5)))));
        assert!(matches!(
            check_linearizable(&r.history),
            Verdict::NotLinearizable(_)
        ));
    }

    #[test]
    fn refused_cas_requires_the_register_not_to_hold_expected() {
        let cas = Call::Cas {
            expected: Some(1),
            new: Some(2),
        };
        let mut r = Recorder::new();
        r.op(0, "k", Call::Write(Some(1)), 0, Some((10, ok())));
        r.op(1, "k", cas.clone(), 20, Some((30, Outcome::Refused)));
        assert!(matches!(
            check_linearizable(&r.history),
            Verdict::NotLinearizable(_)
        ));

        let mut r = Recorder::new();
        r.op(0, "k", Call::Write(Some(3)), 0, Some((10, ok())));
        r.op(1, "k", cas, 20, Some((30, Outcome::Refused)));
        r.op(1, "k", Call::Read, 40, Some((50, read(Some(3)))));
        assert_eq!(check_linearizable(&r.history), Verdict::Linearizable);
    }

    /// The two readings of a failed CAS, on hand-built histories, each
    /// checked under both. Knossos's reading only removes constraints, so
    /// where they differ Knossos accepts and Porcupine refutes.
    #[test]
    fn a_failed_cas_constrains_only_under_porcupines_reading() {
        use crate::history::FailReading;
        let cas = |expected, new| Call::Cas { expected, new };
        // The register holds 1 throughout the failed CAS of 1.
        let mut holds = Recorder::new();
        holds.op(0, "k", Call::Write(Some(1)), 0, Some((10, ok())));
        holds.op(1, "k", cas(Some(1), Some(2)), 20, Some((30, Outcome::Fail)));
        holds.op(0, "k", Call::Read, 40, Some((50, read(Some(1)))));
        // Nothing is ever written, yet a CAS from the empty register fails.
        let mut never_written = Recorder::new();
        never_written.op(0, "k", Call::Read, 0, Some((10, read(None))));
        never_written.op(1, "k", cas(None, Some(5)), 20, Some((30, Outcome::Fail)));
        // A control: the failed CAS of 1 overlaps the write of 1, so the
        // comparison may have come first; both readings accept.
        let mut overlaps = Recorder::new();
        overlaps.op(0, "k", Call::Write(Some(1)), 0, Some((100, ok())));
        overlaps.op(1, "k", cas(Some(1), Some(2)), 10, Some((20, Outcome::Fail)));
        overlaps.op(2, "k", Call::Read, 120, Some((130, read(Some(1)))));
        for (name, history, porcupine_accepts) in [
            ("holds", holds.history, false),
            ("never-written", never_written.history, false),
            ("overlaps", overlaps.history, true),
        ] {
            let mut h = history;
            h.read_failed_cas(FailReading::Knossos);
            assert_eq!(check_linearizable(&h), Verdict::Linearizable, "{name}");
            h.read_failed_cas(FailReading::Porcupine);
            assert!(
                h.operations()
                    .iter()
                    .any(|op| *op.outcome() == Outcome::Refused),
                "{name}"
            );
            let verdict = check_linearizable(&h);
            assert_eq!(
                verdict.is_linearizable(),
                porcupine_accepts,
                "{name}: {verdict}"
            );
            // Reading back is exact: Knossos's verdict again.
            h.read_failed_cas(FailReading::Knossos);
            assert_eq!(check_linearizable(&h), Verdict::Linearizable, "{name}");
        }
    }

    #[test]
    fn keys_are_independent_registers() {
        let mut r = Recorder::new();
        r.op(0, "a", Call::Write(Some(1)), 0, Some((10, ok())));
        r.op(1, "b", Call::Write(Some(2)), 20, Some((30, ok())));
        r.op(2, "a", Call::Read, 40, Some((50, read(Some(1)))));
        r.op(3, "b", Call::Read, 40, Some((50, read(Some(2)))));
        assert_eq!(check_linearizable(&r.history), Verdict::Linearizable);

        // The same values read across keys would be a violation.
        r.op(4, "b", Call::Read, 60, Some((70, read(Some(1)))));
        let Verdict::NotLinearizable(c) = check_linearizable(&r.history) else {
            panic!("cross-key read accepted");
        };
        assert_eq!(c.key, "b");
    }

    #[test]
    fn first_failing_key_in_key_order_is_reported() {
        let mut r = Recorder::new();
        r.op(0, "z", Call::Read, 0, Some((10, read(Some(9)))));
        r.op(1, "m", Call::Read, 0, Some((10, read(Some(9)))));
        let Verdict::NotLinearizable(c) = check_linearizable(&r.history) else {
            panic!("accepted");
        };
        assert_eq!(c.key, "m");
    }

    #[test]
    fn contradiction_names_the_candidate_and_the_later_read() {
        use crate::model::{KvInput, KvModel, KvOutput};
        let op = |input, output, invoke_time, response| SearchOp {
            id: OpId(invoke_time as usize),
            input,
            output,
            invoke_time,
            response_time: Some(response),
        };
        let ops = [
            op(KvInput::Append("x".into()), KvOutput::Ok(None), 0, 10),
            op(KvInput::Get, KvOutput::Ok(Some("y".into())), 20, 30),
        ];
        let stuck = Stuck {
            prefix: vec![],
            state: String::new(),
            candidates: vec![0],
            deadline: 0,
        };
        assert_eq!(contradiction(&KvModel, &ops, &stuck), Some((0, 1)));
        let fine = [
            ops[0].clone(),
            op(KvInput::Get, KvOutput::Ok(Some("x".into())), 20, 30),
        ];
        assert_eq!(contradiction(&KvModel, &fine, &stuck), None);
    }

    #[test]
    fn stop_hook_gives_unknown_and_is_polled() {
        // 16 concurrent writes and a read of a value none wrote: refuting it
        // takes far more than one poll interval of steps.
        let mut r = Recorder::new();
        for p in 0..16 {
            r.op(p, "k", Call::Write(Some(p as i64)), 0, Some((100, ok())));
        }
        r.op(99, "k", Call::Read, 200, Some((300, read(Some(42)))));
        let polls = AtomicUsize::new(0);
        let stop = || {
            polls.fetch_add(1, Ordering::Relaxed);
            true
        };
        let verdict = check_linearizable_with_stop(&r.history, &CheckOptions::default(), &stop);
        assert!(matches!(verdict, Verdict::Unknown { .. }), "{verdict}");
        assert_eq!(polls.load(Ordering::Relaxed), 1);
        assert!(matches!(
            check_linearizable_with_stop(&r.history, &CheckOptions::default(), &|| false),
            Verdict::NotLinearizable(_)
        ));
    }

    #[test]
    fn exhausted_budget_gives_unknown() {
        let mut r = Recorder::new();
        for p in 0..6 {
            r.op(p, "k", Call::Write(Some(p as i64)), 0, Some((100, ok())));
        }
        r.op(9, "k", Call::Read, 200, Some((300, read(Some(42)))));
        let options = CheckOptions {
            limits_per_key: SearchLimits {
                steps_max: 3,
                ..SearchLimits::default()
            },
            ..CheckOptions::default()
        };
        assert!(matches!(
            check_linearizable_with(&r.history, &options),
            Verdict::Unknown { .. }
        ));
        assert!(matches!(
            check_linearizable(&r.history),
            Verdict::NotLinearizable(_)
        ));
    }
}
