//! The Wing-Gong-Lowe linearizability search, generic over a [`Model`].
//!
//! Input: the operations on one object, each with an invocation time and,
//! when it is *required* (it completed with a known outcome), a response
//! time. Optional operations (indeterminate: `info`, or never completed)
//! have no response: they may take effect at any time after invocation, or
//! never. The search succeeds when it finds an order of all required
//! operations and some optional ones that respects real time (A before B
//! whenever A responded before B was invoked) and that the model accepts.
//!
//! Mechanism (Lowe's refinement of Wing & Gong): the invocations and
//! responses sit in one doubly linked list ordered by time. Walking it from
//! the front, an invocation is a candidate to linearize next; linearizing it
//! "lifts" its two entries out of the list and restarts the walk. Reaching a
//! response means its operation should already have been linearized, so the
//! last choice is undone. A memo of (set of linearized operations, model
//! state) pairs already explored prunes repeated work: two paths that reach
//! the same set and the same state have the same future. The memo stores a
//! set by what tells it apart, a window as wide as the operations in flight
//! (see `crate::memo`).
//!
//! Segments: where nothing is in flight (every operation invoked so far has
//! responded, none left open), every linearization places what came before
//! first, so the future depends only on the state reached there. The
//! operations are cut at such quiescent points and searched segment by
//! segment, depth first: a segment's run goes from one state the segment
//! before can end in to the first linearization ending in a state not yet
//! found; only when a segment fails from every such state is the segment
//! before asked for another. Each run has its own memo, dropped when it
//! returns, so memory is one segment's. An operation that never responded
//! may take effect at any later time: no cut follows its invocation.
//!
//! Limits: the walk is iterative (no recursion on history size); each call
//! of [`search`] stops with [`SearchResult::Exhausted`] after
//! `SearchLimits::steps_max` model steps or when the memo would exceed
//! `SearchLimits::memo_bytes_max`, so a verdict is never a guess. The caller
//! may also pass a stop hook ([`search_with_stop`]), polled every
//! `STOP_POLL_STEPS` steps: the library never reads a clock, a caller with a
//! wall-clock deadline answers the hook.

use crate::history::OpId;
use crate::memo::{Linearized, MemoSet};
use crate::model::Model;

/// One operation as the search sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchOp<I, O> {
    /// Where it came from, for reports.
    pub id: OpId,
    /// What was asked.
    pub input: I,
    /// What was answered (the model interprets "fail" and "unknown").
    pub output: O,
    /// When it was invoked.
    pub invoke_time: u64,
    /// When it responded; `None`: optional, may happen any time after
    /// invocation or never.
    pub response_time: Option<u64>,
}

/// A [`SearchOp`] typed for model `M`.
pub type ModelOp<M> = SearchOp<<M as Model>::Input, <M as Model>::Output>;

/// How much work one search may do before answering "unknown".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SearchLimits {
    /// Model steps (attempts to linearize an operation).
    pub steps_max: u64,
    /// Approximate bytes held by the memo of explored configurations.
    pub memo_bytes_max: usize,
}

impl Default for SearchLimits {
    fn default() -> Self {
        Self {
            steps_max: SEARCH_STEPS_MAX_DEFAULT,
            memo_bytes_max: MEMO_BYTES_MAX_DEFAULT,
        }
    }
}

/// Default step budget per object: large enough for every history in the
/// validation corpus by two orders of magnitude, small enough to answer in
/// seconds.
pub const SEARCH_STEPS_MAX_DEFAULT: u64 = 50_000_000;

/// Default memo size per object. The memo's vectors may hold up to twice
/// their length in capacity, so this keeps a check well under 100 MB of
/// memory; every history in the validation corpus needs a few MB.
pub const MEMO_BYTES_MAX_DEFAULT: usize = 40 << 20;

/// Where the search got furthest before failing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stuck<S> {
    /// The longest linearization found, as indices into the input slice.
    pub prefix: Vec<usize>,
    /// The model state after `prefix`.
    pub state: S,
    /// Operations (indices) invoked before `deadline` responded and not in
    /// `prefix`: every one of them was tried next and none could go.
    pub candidates: Vec<usize>,
    /// The operation whose response forced the search back: it had to be
    /// linearized by then.
    pub deadline: usize,
}

/// Which of the [`SearchLimits`] stopped a search.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// `steps_max`.
    Steps,
    /// `memo_bytes_max`.
    Memo,
    /// The caller's stop hook asked to stop.
    Stopped,
}

/// Model steps between two polls of a stop hook: rare enough to cost
/// nothing, frequent enough (well under a millisecond) to stop promptly.
pub const STOP_POLL_STEPS: u64 = 4096;

/// The answer of one search.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SearchResult<S> {
    /// A witness: indices of the operations linearized, in order (every
    /// required one and the optional ones that took effect).
    Linearizable { order: Vec<usize> },
    /// No order exists; the furthest the search got.
    NotLinearizable(Stuck<S>),
    /// A limit was reached first.
    Exhausted {
        /// Which limit.
        limit: Limit,
        /// A sentence for reports.
        reason: String,
    },
}

/// Runs the search over the operations of one object.
///
/// # Panics
/// If an operation responds before it is invoked, or there are more than
/// `u32::MAX / 2` operations (caller bugs).
pub fn search<M: Model>(
    model: &M,
    ops: &[SearchOp<M::Input, M::Output>],
    limits: &SearchLimits,
) -> SearchResult<M::State> {
    search_with_stop(model, ops, limits, &|| false)
}

/// [`search`], also stopping with [`Limit::Stopped`] when `stop` answers
/// true; it is asked every `STOP_POLL_STEPS` model steps.
///
/// # Panics
/// As [`search`].
pub fn search_with_stop<M: Model>(
    model: &M,
    ops: &[SearchOp<M::Input, M::Output>],
    limits: &SearchLimits,
    stop: &dyn Fn() -> bool,
) -> SearchResult<M::State> {
    assert!(
        ops.len() < (u32::MAX / 2) as usize,
        "too many operations for one object"
    );
    for op in ops {
        if let Some(response) = op.response_time {
            assert!(
                response >= op.invoke_time,
                "operation {:?} responds before invocation",
                op.id
            );
        }
    }
    let segments = quiescent_segments(ops);
    let mut steps: u64 = 0;
    if segments.len() <= 1 {
        let all: Vec<&SearchOp<M::Input, M::Output>> = ops.iter().collect();
        return run(model, &all, model.init(), &[], limits, &mut steps, stop).into_result();
    }
    search_segments(model, ops, &segments, limits, &mut steps, stop)
}

/// The operations between quiescent points, in time order: a cut falls
/// where every operation invoked before has responded and none after was
/// invoked yet, so every linearization places all operations before it
/// first. An operation that never responded may take effect at any later
/// time, so no cut follows its invocation.
fn quiescent_segments<I, O>(ops: &[SearchOp<I, O>]) -> Vec<Vec<usize>> {
    // At equal times invocations first: touching operations overlap, as in
    // the search's event list.
    let mut events: Vec<(u64, bool, usize)> = Vec::with_capacity(ops.len() * 2);
    for (i, op) in ops.iter().enumerate() {
        events.push((op.invoke_time, false, i));
        if let Some(t) = op.response_time {
            events.push((t, true, i));
        }
    }
    events.sort_unstable();
    let mut segments: Vec<Vec<usize>> = vec![Vec::new()];
    let mut open = 0usize;
    let mut forever_open = false;
    for (_, is_response, i) in events {
        if is_response {
            open -= 1;
            if open == 0 && !forever_open {
                segments.push(Vec::new());
            }
        } else {
            open += 1;
            if ops[i].response_time.is_none() {
                // Never closes.
                forever_open = true;
            }
            segments.last_mut().expect("one at least").push(i);
        }
    }
    if segments.last().is_some_and(Vec::is_empty) {
        segments.pop();
    }
    segments
}

/// The search segment by segment. A segment's search runs from a state an
/// earlier segment can end in (with the order that got there) to the first
/// linearization of the segment ending in a state not found before; the
/// next segment starts from there. When a segment finds no linearization
/// from a start, the search asks the segment before for another way to end
/// (another state), and so on back: a depth-first search over segments,
/// each segment's memo dropped once its run returns. Usually every
/// segment's first run succeeds, so the cost is the plain search's and the
/// memory one segment's.
fn search_segments<M: Model>(
    model: &M,
    ops: &[SearchOp<M::Input, M::Output>],
    segments: &[Vec<usize>],
    limits: &SearchLimits,
    steps: &mut u64,
    stop: &dyn Fn() -> bool,
) -> SearchResult<M::State> {
    let last = segments.len() - 1;
    // Per segment but the last: the states it was found to end in, each
    // with an order (indices into `ops`) that gets there from the start.
    let mut ends: Vec<Vec<(M::State, Vec<usize>)>> = vec![Vec::new(); last];
    // Per segment: which start (an end of the segment before; segment 0
    // has only the initial state) its next run goes from.
    let mut next_start = vec![0usize; segments.len()];
    let initial = (model.init(), Vec::new());
    let mut best: Option<Stuck<M::State>> = None;
    let mut k = last;
    loop {
        let start = if k == 0 {
            (next_start[0] == 0).then_some(&initial)
        } else {
            ends[k - 1].get(next_start[k])
        };
        let Some((state, prefix)) = start else {
            if k == 0 {
                // Every way through the first segments was tried.
                let stuck = best.expect("some run failed before every start was used");
                return SearchResult::NotLinearizable(stuck);
            }
            // This segment needs another start: one more way for the
            // segment before to end.
            k -= 1;
            continue;
        };
        let segment = &segments[k];
        let local: Vec<&SearchOp<M::Input, M::Output>> = segment.iter().map(|&i| &ops[i]).collect();
        let global = |order: &[usize]| order.iter().map(|&i| segment[i]).collect::<Vec<_>>();
        let known: &[(M::State, Vec<usize>)] = if k == last { &[] } else { &ends[k] };
        let outcome = run(model, &local, state.clone(), known, limits, steps, stop);
        match outcome {
            Run::Found { order, end } => {
                let mut order_all = prefix.clone();
                order_all.extend(global(&order));
                if k == last {
                    return SearchResult::Linearizable { order: order_all };
                }
                ends[k].push((end, order_all));
                k += 1;
            }
            Run::Stuck(stuck) => {
                let length = prefix.len() + stuck.prefix.len();
                if best.as_ref().is_none_or(|b| length > b.prefix.len()) {
                    let mut order_all = prefix.clone();
                    order_all.extend(global(&stuck.prefix));
                    best = Some(Stuck {
                        prefix: order_all,
                        state: stuck.state,
                        candidates: global(&stuck.candidates),
                        deadline: segment[stuck.deadline],
                    });
                }
                next_start[k] += 1;
            }
            Run::Exhausted { limit, reason } => return SearchResult::Exhausted { limit, reason },
        }
    }
}

/// What one run of the search over a segment found.
enum Run<S> {
    /// A linearization, and the state it ends in.
    Found { order: Vec<usize>, end: S },
    /// No linearization (ending in a state not already known); the
    /// furthest the search got.
    Stuck(Stuck<S>),
    /// A limit was reached first.
    Exhausted { limit: Limit, reason: String },
}

impl<S> Run<S> {
    fn into_result(self) -> SearchResult<S> {
        match self {
            Run::Found { order, .. } => SearchResult::Linearizable { order },
            Run::Stuck(stuck) => SearchResult::NotLinearizable(stuck),
            Run::Exhausted { limit, reason } => SearchResult::Exhausted { limit, reason },
        }
    }
}

/// The Wing-Gong-Lowe search over `ops` from `start`, to the first
/// linearization that ends in a state not in `known` (a linearization
/// ending in a known state counts as a failure). `steps` counts model steps
/// across runs, against `limits.steps_max`; the memo is this run's.
fn run<M: Model>(
    model: &M,
    ops: &[&SearchOp<M::Input, M::Output>],
    start: M::State,
    known: &[(M::State, Vec<usize>)],
    limits: &SearchLimits,
    steps: &mut u64,
    stop: &dyn Fn() -> bool,
) -> Run<M::State> {
    let mut list = EventList::new(ops);
    // The memo's sets are over invocation ranks, so that what is linearized
    // is a prefix and a narrow window (see `crate::memo`).
    let mut by_invocation: Vec<usize> = (0..ops.len()).collect();
    by_invocation.sort_by_key(|&i| (ops[i].invoke_time, i));
    let mut rank = vec![0usize; ops.len()];
    for (r, &i) in by_invocation.iter().enumerate() {
        rank[i] = r;
    }
    let required: Vec<bool> = by_invocation
        .iter()
        .map(|&i| ops[i].response_time.is_some())
        .collect();
    let mut linearized = Linearized::new(&required);
    let mut memo: MemoSet<M::State> = MemoSet::new();
    // (operation, state before it)
    let mut stack: Vec<(usize, M::State)> = Vec::new();
    let mut state = start;
    let mut required_left = ops.iter().filter(|op| op.response_time.is_some()).count();
    let mut memo_heap_bytes: usize = 0;
    let mut best: Option<Stuck<M::State>> = None;
    let mut node = list.first();
    // Reused buffer of the operations not yet linearized, for pruning.
    let mut pending: Vec<&SearchOp<M::Input, M::Output>> = Vec::new();

    loop {
        // A linearization: done, unless it ends in a known state; then it
        // is undone as if it had failed, and the search goes on.
        if required_left == 0 {
            if !known.iter().any(|(end, _)| *end == state) {
                return Run::Found {
                    order: stack.iter().map(|(op, _)| *op).collect(),
                    end: state,
                };
            }
            let Some((undone, before)) = stack.pop() else {
                let stuck = best.unwrap_or_else(|| Stuck {
                    prefix: Vec::new(),
                    state: state.clone(),
                    candidates: Vec::new(),
                    deadline: 0,
                });
                return Run::Stuck(stuck);
            };
            state = before;
            linearized.remove(rank[undone]);
            list.unlift(undone);
            if ops[undone].response_time.is_some() {
                required_left += 1;
            }
            node = list.next(list.call_node(undone));
            continue;
        }
        assert!(
            node != list.head(),
            "walked past every response with required operations left"
        );
        let (op_index, is_call) = list.event(node);
        if is_call {
            if *steps >= limits.steps_max {
                return Run::Exhausted {
                    limit: Limit::Steps,
                    reason: format!("search stopped after {steps} model steps"),
                };
            }
            if *steps % STOP_POLL_STEPS == STOP_POLL_STEPS - 1 && stop() {
                return Run::Exhausted {
                    limit: Limit::Stopped,
                    reason: format!("stopped by the caller after {steps} model steps"),
                };
            }
            *steps += 1;
            let op = &ops[op_index];
            if let Some(next) = model.step(&state, &op.input, &op.output) {
                linearized.insert(rank[op_index]);
                let fresh = memo.insert(&linearized, &next);
                if fresh && M::PRUNES && {
                    pending.clear();
                    pending.extend(
                        list.pending_calls()
                            .filter(|&i| i != op_index)
                            .map(|i| ops[i]),
                    );
                    model.dead_end(&next, &pending).is_some()
                } {
                    // A dead end the model can see ahead of time; the memo
                    // keeps it so it is never examined again.
                    memo_heap_bytes += model.state_heap_bytes(&next);
                    linearized.remove(rank[op_index]);
                    node = list.next(node);
                    continue;
                }
                if fresh {
                    memo_heap_bytes += model.state_heap_bytes(&next);
                    if memo.bytes() + memo_heap_bytes > limits.memo_bytes_max {
                        return Run::Exhausted {
                            limit: Limit::Memo,
                            reason: format!(
                                "memo grew past {} bytes after {steps} model steps",
                                limits.memo_bytes_max
                            ),
                        };
                    }
                    let before = std::mem::replace(&mut state, next);
                    stack.push((op_index, before));
                    list.lift(op_index);
                    if op.response_time.is_some() {
                        required_left -= 1;
                    }
                    node = list.first();
                    continue;
                }
                linearized.remove(rank[op_index]);
            }
            node = list.next(node);
        } else {
            // A response of an operation not yet linearized: too late for it.
            if best.as_ref().is_none_or(|b| stack.len() > b.prefix.len()) {
                best = Some(Stuck {
                    prefix: stack.iter().map(|(op, _)| *op).collect(),
                    state: state.clone(),
                    candidates: list.calls_before(node),
                    deadline: op_index,
                });
            }
            let Some((undone, before)) = stack.pop() else {
                let stuck = best.expect("recorded just above");
                return Run::Stuck(stuck);
            };
            state = before;
            linearized.remove(rank[undone]);
            list.unlift(undone);
            if ops[undone].response_time.is_some() {
                required_left += 1;
            }
            node = list.next(list.call_node(undone));
        }
    }
}

/// Invocations and responses in time order, as a doubly linked list over
/// indices with a sentinel head, so entries can be lifted out and put back
/// (in reverse order) in constant time.
#[derive(Debug)]
struct EventList {
    /// Per node: (operation index, is it the invocation).
    events: Vec<(usize, bool)>,
    next: Vec<u32>,
    prev: Vec<u32>,
    /// Per operation: its invocation node and its response node, if any.
    call_nodes: Vec<u32>,
    return_nodes: Vec<Option<u32>>,
}

impl EventList {
    fn new<I, O>(ops: &[&SearchOp<I, O>]) -> Self {
        // Order by time; at equal times invocations first (so operations
        // touching at one instant count as concurrent, the lenient reading),
        // then by operation index for determinism.
        let mut keyed: Vec<(u64, bool, usize)> = Vec::with_capacity(ops.len() * 2);
        for (i, op) in ops.iter().enumerate() {
            keyed.push((op.invoke_time, false, i));
            if let Some(t) = op.response_time {
                keyed.push((t, true, i));
            }
        }
        keyed.sort_unstable();
        let n = keyed.len();
        let head = n as u32;
        let mut events = Vec::with_capacity(n);
        let mut call_nodes = vec![0u32; ops.len()];
        let mut return_nodes = vec![None; ops.len()];
        for (node, &(_, is_return, op)) in keyed.iter().enumerate() {
            events.push((op, !is_return));
            if is_return {
                return_nodes[op] = Some(node as u32);
            } else {
                call_nodes[op] = node as u32;
            }
        }
        let next = (0..=n)
            .map(|i| if i == n { 0 } else { i as u32 + 1 })
            .collect::<Vec<_>>();
        let prev = (0..=n)
            .map(|i| if i == 0 { head } else { i as u32 - 1 })
            .collect::<Vec<_>>();
        let mut list = Self {
            events,
            next,
            prev,
            call_nodes,
            return_nodes,
        };
        if n == 0 {
            list.next[0] = head;
            list.prev[0] = head;
        }
        list
    }

    fn head(&self) -> u32 {
        self.events.len() as u32
    }

    fn first(&self) -> u32 {
        self.next[self.events.len()]
    }

    fn next(&self, node: u32) -> u32 {
        self.next[node as usize]
    }

    fn event(&self, node: u32) -> (usize, bool) {
        self.events[node as usize]
    }

    fn call_node(&self, op: usize) -> u32 {
        self.call_nodes[op]
    }

    fn unlink(&mut self, node: u32) {
        let (p, n) = (self.prev[node as usize], self.next[node as usize]);
        self.next[p as usize] = n;
        self.prev[n as usize] = p;
    }

    fn relink(&mut self, node: u32) {
        let (p, n) = (self.prev[node as usize], self.next[node as usize]);
        self.next[p as usize] = node;
        self.prev[n as usize] = node;
    }

    fn lift(&mut self, op: usize) {
        self.unlink(self.call_nodes[op]);
        if let Some(r) = self.return_nodes[op] {
            self.unlink(r);
        }
    }

    fn unlift(&mut self, op: usize) {
        if let Some(r) = self.return_nodes[op] {
            self.relink(r);
        }
        self.relink(self.call_nodes[op]);
    }

    /// Every operation still listed (not linearized), in time order.
    fn pending_calls(&self) -> impl Iterator<Item = usize> + '_ {
        let mut node = self.first();
        std::iter::from_fn(move || {
            while node != self.head() {
                let (op, is_call) = self.event(node);
                node = self.next(node);
                if is_call {
                    return Some(op);
                }
            }
            None
        })
    }

    /// Operations whose invocation is still listed before `until`.
    fn calls_before(&self, until: u32) -> Vec<usize> {
        let mut out = Vec::new();
        let mut node = self.first();
        while node != until && node != self.head() {
            let (op, is_call) = self.event(node);
            if is_call {
                out.push(op);
            }
            node = self.next(node);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::{Call, Outcome};
    use crate::model::RegisterModel;

    fn op(
        i: usize,
        input: Call,
        output: Outcome,
        invoke: u64,
        response: Option<u64>,
    ) -> SearchOp<Call, Outcome> {
        SearchOp {
            id: OpId(i),
            input,
            output,
            invoke_time: invoke,
            response_time: response,
        }
    }

    #[test]
    fn empty_input_is_linearizable() {
        let r = search(&RegisterModel, &[], &SearchLimits::default());
        assert_eq!(r, SearchResult::Linearizable { order: vec![] });
    }

    #[test]
    fn witness_orders_a_read_after_the_concurrent_write_it_saw() {
        let ops = [
            op(0, Call::Read, Outcome::Ok { value: Some(1) }, 0, Some(10)),
            op(
                1,
                Call::Write(Some(1)),
                Outcome::Ok { value: None },
                1,
                Some(9),
            ),
        ];
        let r = search(&RegisterModel, &ops, &SearchLimits::default());
        assert_eq!(r, SearchResult::Linearizable { order: vec![1, 0] });
    }

    #[test]
    fn step_budget_gives_exhausted_not_a_verdict() {
        let ops = [
            op(
                0,
                Call::Write(Some(1)),
                Outcome::Ok { value: None },
                0,
                Some(1),
            ),
            op(1, Call::Read, Outcome::Ok { value: Some(1) }, 2, Some(3)),
        ];
        let limits = SearchLimits {
            steps_max: 1,
            ..SearchLimits::default()
        };
        assert!(matches!(
            search(&RegisterModel, &ops, &limits),
            SearchResult::Exhausted {
                limit: Limit::Steps,
                ..
            }
        ));
    }

    #[test]
    fn stuck_names_the_read_that_came_too_late() {
        let ops = [
            op(
                0,
                Call::Write(Some(1)),
                Outcome::Ok { value: None },
                0,
                Some(1),
            ),
            op(
                1,
                Call::Write(Some(2)),
                Outcome::Ok { value: None },
                2,
                Some(3),
            ),
            op(2, Call::Read, Outcome::Ok { value: Some(1) }, 4, Some(5)),
        ];
        let SearchResult::NotLinearizable(stuck) =
            search(&RegisterModel, &ops, &SearchLimits::default())
        else {
            panic!("expected a violation");
        };
        assert_eq!(stuck.prefix, vec![0, 1]);
        assert_eq!(stuck.state, Some(2));
        assert_eq!(stuck.candidates, vec![2]);
        assert_eq!(stuck.deadline, 2);
    }

    fn ok() -> Outcome {
        Outcome::Ok { value: None }
    }

    #[test]
    fn segments_cut_where_nothing_is_in_flight_and_never_after_an_open_operation() {
        let ops = [
            op(0, Call::Write(Some(1)), ok(), 0, Some(10)),
            op(1, Call::Read, Outcome::Ok { value: Some(1) }, 5, Some(15)),
            // Quiescent between 15 and 20.
            op(2, Call::Write(Some(2)), ok(), 20, Some(30)),
            // Touching at 30 counts as overlapping: no cut.
            op(3, Call::Write(Some(3)), ok(), 30, Some(40)),
            // Never responds: no cut after it, though 50 is quiet.
            op(4, Call::Write(Some(4)), Outcome::Info, 43, None),
            op(5, Call::Read, Outcome::Ok { value: Some(3) }, 42, Some(44)),
            op(6, Call::Read, Outcome::Ok { value: Some(4) }, 60, Some(70)),
        ];
        assert_eq!(
            quiescent_segments(&ops),
            vec![vec![0, 1], vec![2, 3], vec![5, 4, 6]]
        );
    }

    /// The first segment can end holding 1 or 2; only one of them lets the
    /// second linearize, so every way a segment ends must be carried on.
    #[test]
    fn every_state_a_segment_can_end_in_is_tried_next() {
        let read = |v| Outcome::Ok { value: Some(v) };
        let history = |last_read| {
            vec![
                op(0, Call::Write(Some(1)), ok(), 0, Some(10)),
                op(1, Call::Write(Some(2)), ok(), 1, Some(11)),
                op(2, Call::Read, read(last_read), 20, Some(30)),
            ]
        };
        for (last_read, linearizable) in [(1, true), (2, true), (3, false)] {
            let ops = history(last_read);
            assert_eq!(quiescent_segments(&ops).len(), 2);
            match search(&RegisterModel, &ops, &SearchLimits::default()) {
                SearchResult::Linearizable { order } => {
                    assert!(linearizable, "read {last_read}");
                    assert_eq!(order.len(), 3);
                    assert_eq!(order[2], 2);
                    assert_eq!(order[1], if last_read == 1 { 0 } else { 1 });
                }
                SearchResult::NotLinearizable(stuck) => {
                    assert!(!linearizable, "read {last_read}");
                    // The report spans both segments: the writes, then the
                    // read that fits neither ending.
                    assert_eq!(stuck.prefix.len(), 2);
                    assert_eq!((stuck.deadline, stuck.candidates), (2, vec![2]));
                }
                other => panic!("{other:?}"),
            }
        }
    }
}
