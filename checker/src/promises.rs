//! What each consistency level promises, and checking exactly that.
//!
//! One place decides which checks apply to which operations of a history
//! that records each operation's consistency level, from DESIGN.md section
//! 5 and the facts of the run ([`RunFacts`]), and runs them
//! ([`check_promises`]), giving one deterministic [`PromiseReport`] with an
//! outcome per check. `enigma check` and the simulator both use it.
//!
//! # What is promised, and so checked
//!
//! - **Linearizability**: `SERIAL` always; `QUORUM` and `ALL` reads *and*
//!   writes while clocks agree (the run had no clock skew). Decided per key
//!   (keys are independent objects): a key is checked when every write on
//!   it that may have happened promises linearizability. Its reads at
//!   levels that do not (say `ONE`) are left out: they change nothing, so
//!   the rest must still linearize. A key with a weak write (a `ONE` put, or
//!   any `QUORUM` write under skew) is not checked at all: a strong read may
//!   legitimately return that write's value at a time the design does not
//!   bound, so demanding an order would raise false alarms, and treating the
//!   weak writes as of unknown outcome would make the search exponential in
//!   their number while adding almost nothing; those keys get the checks
//!   below instead. An operation without a level is held to
//!   linearizability, as in a file that records no levels at all.
//! - **Lost writes** (every level): an acknowledged write is never lost
//!   unless a write with a higher timestamp replaced it. A read judges an
//!   earlier acknowledged write only when their levels make their replica
//!   sets intersect (`w + r > rf` replicas): then some replica that
//!   acknowledged the write durably answered the read, and last-write-wins
//!   means the read returns that version or a newer one, under any clock
//!   skew. Real time judges too: a read must not return a write that
//!   responded longer than the clock uncertainty
//!   ([`RunFacts::clock_uncertainty_nanos`]; 0 without skew) before the
//!   acknowledged write was invoked, since that write then carries the
//!   higher timestamp (see [`crate::consistency`]). A `ONE` write and a later `ONE` read at replication factor 3 may
//!   touch different replicas: a stale answer there is not a lost write.
//! - **Read-your-writes and monotonic reads** (per session, that is per
//!   process, per key): DESIGN.md promises them at every level because "a
//!   client connection carries the highest timestamp it has seen". Where a
//!   history's clients did carry it ([`RunFacts::session_timestamps`]),
//!   every pair of a session's operations is judged. Where they did not
//!   (EnigmaDB's client protocol does not carry one yet), the guarantee
//!   holds only through replica overlap, so only pairs whose levels
//!   intersect are judged, as for lost writes: read-your-writes is not
//!   demanded of a `ONE` read after a `ONE` write at replication factor 3.
//! - **Causal writes** (per session, across keys): where sessions carried
//!   their timestamps, a write a session issues after observing version V
//!   (by reading it or writing it) carries a version above V. Without
//!   session timestamps nothing promises it (the write's coordinator need
//!   not have seen V), so it is not applicable.
//! - **Set completeness** (set histories): every acknowledged add is in the
//!   final read (when their replicas must meet), and no read holds an
//!   element nobody tried to add.
//! - **Convergence** (any level, after faults stop and repair runs): every
//!   replica of a key holds the same version. Only a caller that can see
//!   the replicas (the simulator) supplies their states.
//!
//! # Facts that are not recorded
//!
//! A history without a `run` line is checked as if clocks agreed (the
//! stronger promise: a skewed run should say so), with no session
//! timestamps, and, without a replication factor, levels intersect only
//! where they do at every factor: `ALL` with anything, `QUORUM`/`SERIAL`
//! with each other.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use crate::consistency::{self, SessionOp, Val};
use crate::convergence::{check_convergence, ReplicaVersion};
use crate::format::enigma::Level;
use crate::format::ParsedHistory;
use crate::history::{Call, OpId, Outcome};
use crate::kv::{kv_search_op, KvOutcome};
use crate::linearizability::{
    check_parts_with_stop, prune_unobserved_open_writes, register_search_op, CheckOptions, Verdict,
};
use crate::model::{KvInput, KvModel, RegisterModel};
use crate::set::{
    set_completeness, set_lost_adds, set_search_op, set_sessions, SetInput, SetModel, SetOutcome,
};
use crate::wgl::SearchOp;

/// Facts about the run a history came from that decide what its levels
/// promise. `None`: not recorded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RunFacts {
    /// Whether node clocks were skewed (then `QUORUM`/`ALL` are not
    /// linearizable). Unrecorded: taken as no skew.
    pub clock_skew: Option<bool>,
    /// Replicas per key, to tell which levels' replica sets intersect.
    pub replication_factor: Option<usize>,
    /// Whether each client session carried the highest timestamp it had
    /// seen (DESIGN.md section 5), which makes read-your-writes and
    /// monotonic reads hold at every level, and a write a session issues
    /// after observing a version is stamped above it. Unrecorded: taken as
    /// no.
    pub session_timestamps: Option<bool>,
    /// The largest difference between two nodes' timestamps taken at the
    /// same instant (clock offsets plus the clocks' resolution), in the
    /// history's time unit (nanoseconds). A write acknowledged longer than
    /// this before another write was invoked certainly carries the lower
    /// timestamp, so under skew real time still orders writes that far
    /// apart. Unrecorded: 0 without skew; under skew, real time orders
    /// nothing.
    pub clock_uncertainty_nanos: Option<u64>,
    /// Whether coordinators held every answer until their wall clock had
    /// passed its version's timestamp by the clock uncertainty, every clock
    /// being within that of the others (commit wait): then `QUORUM`/`ALL`
    /// promise linearizability under that skew too. Unrecorded: taken as
    /// no.
    pub commit_wait: Option<bool>,
}

impl fmt::Display for RunFacts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let yes_no = |b: Option<bool>, default: &str| match b {
            Some(true) => "yes".to_owned(),
            Some(false) => "no".to_owned(),
            None => format!("not recorded, taken as {default}"),
        };
        write!(f, "clock skew {}, ", yes_no(self.clock_skew, "no"))?;
        match self.replication_factor {
            Some(rf) => write!(f, "replication factor {rf}, ")?,
            None => write!(
                f,
                "replication factor not recorded (only ALL, and QUORUM/SERIAL with each other, count as meeting), "
            )?,
        }
        write!(
            f,
            "session timestamps {}",
            yes_no(self.session_timestamps, "no")
        )?;
        if self.commit_wait == Some(true) {
            write!(f, ", commit wait")?;
        }
        match self.clock_uncertainty_nanos {
            Some(nanos) => write!(f, ", clock uncertainty {nanos} ns"),
            None if self.clock_skew == Some(true) => write!(
                f,
                ", clock uncertainty not recorded (real time orders no two writes)"
            ),
            None => Ok(()),
        }
    }
}

/// The version an operation wrote or read: a timestamp (e.g. a hybrid
/// logical clock reading; 0 for a read that found nothing) and the
/// tie-break of equal timestamps (e.g. the coordinating node).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Version {
    /// Compared first.
    pub timestamp: u64,
    /// Compared when timestamps are equal.
    pub writer: u64,
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} by {}", self.timestamp, self.writer)
    }
}

/// Level classes: no level recorded, then each level.
pub(crate) const LEVEL_CLASSES: usize = 6;

/// The class index of a level.
pub(crate) fn level_class(level: Option<Level>) -> usize {
    match level {
        None => 0,
        Some(Level::One) => 1,
        Some(Level::Two) => 2,
        Some(Level::Quorum) => 3,
        Some(Level::All) => 4,
        Some(Level::Serial) => 5,
    }
}

/// The level of a class index.
pub(crate) fn class_level(class: usize) -> Option<Level> {
    match class {
        1 => Some(Level::One),
        2 => Some(Level::Two),
        3 => Some(Level::Quorum),
        4 => Some(Level::All),
        5 => Some(Level::Serial),
        _ => None,
    }
}

/// Whether an operation at `level` promises linearizability (no level:
/// held to it, as in a history that records none).
pub fn promises_linearizability(level: Option<Level>, clock_skew: bool) -> bool {
    match level {
        None | Some(Level::Serial) => true,
        Some(Level::Quorum | Level::All) => !clock_skew,
        Some(Level::One | Level::Two) => false,
    }
}

/// Replicas an operation at `level` reaches (no level: all of them; `SERIAL`
/// runs Paxos over a majority).
fn replicas(level: Option<Level>, rf: usize) -> usize {
    match level {
        None | Some(Level::All) => rf,
        Some(Level::Quorum | Level::Serial) => rf / 2 + 1,
        Some(Level::Two) => 2.min(rf),
        Some(Level::One) => 1,
    }
}

/// Whether operations at levels `a` and `b` must share a replica.
pub fn levels_meet(a: Option<Level>, b: Option<Level>, replication_factor: Option<usize>) -> bool {
    match replication_factor {
        Some(rf) => replicas(a, rf) + replicas(b, rf) > rf,
        None => {
            let all = |l: Option<Level>| matches!(l, None | Some(Level::All));
            let majority = |l: Option<Level>| matches!(l, Some(Level::Quorum | Level::Serial));
            all(a) || all(b) || (majority(a) && majority(b))
        }
    }
}

/// Which pairs of operations the lost-write and session checks judge, and
/// what the clocks allow them to conclude from real time.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Scope<'a> {
    levels: &'a BTreeMap<OpId, Level>,
    replication_factor: Option<usize>,
    /// Whether `QUORUM`/`ALL` promise linearizability: clocks agreed, or
    /// commit wait covered their skew.
    pub quorums_linearizable: bool,
    /// How much later than a write's acknowledgement another write must be
    /// invoked to certainly carry a higher timestamp; `None`: real time
    /// orders no two writes (skew of unknown size).
    pub real_time_margin: Option<u64>,
    pub session_timestamps: bool,
}

impl<'a> Scope<'a> {
    /// The scope of a run with these facts.
    pub fn new(levels: &'a BTreeMap<OpId, Level>, facts: &RunFacts) -> Self {
        let clock_skew = facts.clock_skew.unwrap_or(false);
        Self {
            levels,
            replication_factor: facts.replication_factor,
            quorums_linearizable: !clock_skew || facts.commit_wait.unwrap_or(false),
            real_time_margin: match facts.clock_uncertainty_nanos {
                Some(nanos) => Some(nanos),
                None if clock_skew => None,
                None => Some(0),
            },
            session_timestamps: facts.session_timestamps.unwrap_or(false),
        }
    }

    /// Every pair judged (operations without levels meet everything),
    /// synchronised clocks.
    pub fn everything(levels: &'a BTreeMap<OpId, Level>) -> Self {
        Self::new(levels, &RunFacts::default())
    }

    /// The level of operation `id`.
    pub fn level(&self, id: OpId) -> Option<Level> {
        self.levels.get(&id).copied()
    }

    /// Whether an acknowledged write at `write` and a later read at `read`
    /// must share a replica.
    pub fn overlap(&self, write: Option<Level>, read: Option<Level>) -> bool {
        levels_meet(write, read, self.replication_factor)
    }

    /// Whether a session guarantee binds an earlier operation at `earlier`
    /// and a later read at `later` of the same session.
    pub fn session_pair(&self, earlier: Option<Level>, later: Option<Level>) -> bool {
        self.session_timestamps || self.overlap(earlier, later)
    }
}

/// A check the promises call for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Check {
    /// Per key, for keys whose writes all promise it.
    Linearizability,
    /// No acknowledged write lost.
    LostWrite,
    /// A session reads its own acknowledged writes.
    ReadYourWrites,
    /// A session never reads an older version after a newer one.
    MonotonicReads,
    /// A write a session issues after observing a version carries a higher
    /// one.
    CausalWrites,
    /// Acknowledged adds in the final read, no phantom elements.
    SetCompleteness,
    /// Replicas hold the same version after repair.
    Convergence,
}

impl Check {
    /// Every check, in report order.
    pub const ALL: [Check; 7] = [
        Check::Linearizability,
        Check::LostWrite,
        Check::ReadYourWrites,
        Check::MonotonicReads,
        Check::CausalWrites,
        Check::SetCompleteness,
        Check::Convergence,
    ];

    /// Its name in reports (and the simulator's violated property).
    pub fn name(self) -> &'static str {
        match self {
            Check::Linearizability => "linearizability",
            Check::LostWrite => "lost-write",
            Check::ReadYourWrites => "read-your-writes",
            Check::MonotonicReads => "monotonic-reads",
            Check::CausalWrites => "causal-writes",
            Check::SetCompleteness => "set-completeness",
            Check::Convergence => "convergence",
        }
    }
}

impl fmt::Display for Check {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// How one check came out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    /// It ran and held.
    Passed,
    /// It ran and a promise is broken.
    Violated,
    /// It could not decide (a search budget ran out).
    Unknown,
    /// Nothing in this history is promised what it checks, or it cannot be
    /// checked from what was recorded.
    NotApplicable,
}

impl Status {
    /// Its word in reports.
    pub fn word(&self) -> &'static str {
        match self {
            Status::Passed => "passed",
            Status::Violated => "VIOLATED",
            Status::Unknown => "unknown",
            Status::NotApplicable => "not applicable",
        }
    }
}

/// One check's outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckResult {
    /// Which check.
    pub check: Check,
    /// How it came out.
    pub status: Status,
    /// What it judged (passed), why not (not applicable, unknown), or the
    /// violation, naming the key and operations (violated).
    pub note: String,
}

/// The overall verdict on a leveled history.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PromiseVerdict {
    /// Every operation's level promises linearizability, it holds, and
    /// every other check passed.
    Linearizable,
    /// Linearizability was promised (for some keys) and does not hold.
    NotLinearizable,
    /// A check could not decide and none found a violation.
    Unknown,
    /// Not every operation is promised linearizability, and every check
    /// that applies passed.
    PromisesKept,
    /// A promise other than linearizability is broken.
    PromiseBroken,
}

impl PromiseVerdict {
    /// Its word on the `verdict:` line.
    pub fn word(self) -> &'static str {
        match self {
            PromiseVerdict::Linearizable => "linearizable",
            PromiseVerdict::NotLinearizable => "not-linearizable",
            PromiseVerdict::Unknown => "unknown",
            PromiseVerdict::PromisesKept => "promises-kept",
            PromiseVerdict::PromiseBroken => "promise-broken",
        }
    }
}

/// What [`check_promises`] takes.
#[derive(Debug, Clone, Copy)]
pub struct PromiseInput<'a> {
    /// The operations.
    pub history: &'a ParsedHistory,
    /// Each operation's level; an operation missing here is held to
    /// linearizability.
    pub levels: &'a BTreeMap<OpId, Level>,
    /// The version each operation wrote or read, where recorded.
    pub versions: &'a BTreeMap<OpId, Version>,
    /// The run's facts.
    pub facts: RunFacts,
    /// Each key's replicas' states after repair, if known.
    pub replicas: Option<&'a BTreeMap<String, Vec<ReplicaVersion>>>,
}

/// The outcome of every check, in [`Check::ALL`] order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PromiseReport {
    /// The facts the checks assumed.
    pub facts: RunFacts,
    /// Operations per level (`none` for operations without one).
    pub level_counts: BTreeMap<String, usize>,
    /// One result per check.
    pub checks: Vec<CheckResult>,
    /// The linearizability search's verdict, when it ran on some key.
    pub linearizability: Option<Verdict>,
    /// Whether every operation's level promises linearizability.
    pub all_promise_linearizability: bool,
}

impl PromiseReport {
    /// The result of `check`.
    pub fn result(&self, check: Check) -> &CheckResult {
        self.checks
            .iter()
            .find(|r| r.check == check)
            .expect("every check has a result")
    }

    /// The overall verdict.
    pub fn verdict(&self) -> PromiseVerdict {
        let any = |status: Status| self.checks.iter().any(|r| r.status == status);
        if self.result(Check::Linearizability).status == Status::Violated {
            PromiseVerdict::NotLinearizable
        } else if any(Status::Violated) {
            PromiseVerdict::PromiseBroken
        } else if any(Status::Unknown) {
            PromiseVerdict::Unknown
        } else if self.all_promise_linearizability
            && self.result(Check::Linearizability).status == Status::Passed
        {
            PromiseVerdict::Linearizable
        } else {
            PromiseVerdict::PromisesKept
        }
    }

    /// The broken promises: (check, what broke), in report order.
    pub fn violations(&self) -> impl Iterator<Item = &CheckResult> {
        self.checks.iter().filter(|r| r.status == Status::Violated)
    }
}

impl PromiseReport {
    /// The whole account of every violated (or undecided) check, after the
    /// summary: the counterexample of linearizability, the operations of a
    /// lost write, and so on.
    pub fn details(&self) -> String {
        let mut out = String::new();
        for r in self
            .checks
            .iter()
            .filter(|r| matches!(r.status, Status::Violated | Status::Unknown))
        {
            out.push_str(&format!("{} {}:\n", r.check.name(), r.status.word()));
            for line in r.note.lines() {
                out.push_str(&format!("  {line}\n"));
            }
        }
        out
    }
}

impl fmt::Display for PromiseReport {
    /// The summary: facts, levels, one line per check (a violated check's
    /// line gives the first line of its account; [`Self::details`] has the
    /// rest).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "run: {}", self.facts)?;
        let levels: Vec<String> = self
            .level_counts
            .iter()
            .map(|(level, n)| format!("{n} {level}"))
            .collect();
        writeln!(f, "levels: {}", levels.join(", "))?;
        writeln!(
            f,
            "checks (what each operation's consistency level promises, docs/SERVER.md \"Consistency levels and clocks\"):"
        )?;
        for r in &self.checks {
            let first = r.note.lines().next().unwrap_or_default();
            writeln!(f, "  {:<17} {}: {first}", r.check.name(), r.status.word())?;
        }
        Ok(())
    }
}

/// Runs every check the history's levels and the run's facts call for.
/// Deterministic: the same input gives the same report. `stop` is polled by
/// the linearizability search; once it answers true that check ends
/// `Unknown`.
pub fn check_promises(
    input: &PromiseInput<'_>,
    options: &CheckOptions,
    stop: &(dyn Fn() -> bool + Sync),
) -> PromiseReport {
    let facts = input.facts;
    let scope = Scope::new(input.levels, &facts);
    let mut per_class = [0usize; LEVEL_CLASSES];
    for id in op_ids(input.history) {
        per_class[level_class(scope.level(id))] += 1;
    }
    let level_counts: BTreeMap<String, usize> = per_class
        .iter()
        .enumerate()
        .filter(|(_, &n)| n > 0)
        .map(|(class, &n)| {
            let name = class_level(class).map_or("without a level", Level::name);
            (name.to_owned(), n)
        })
        .collect();
    let all_promise_linearizability = per_class.iter().enumerate().all(|(class, &n)| {
        n == 0 || promises_linearizability(class_level(class), !scope.quorums_linearizable)
    });
    let (lin_result, lin_verdict) = linearizability(input, &scope, options, stop);
    let mut checks = vec![lin_result];
    checks.extend(weak_checks(input, &scope));
    checks.push(causal_writes(input, &scope));
    checks.push(convergence(input.replicas));
    checks.sort_by_key(|r| Check::ALL.iter().position(|&c| c == r.check));
    PromiseReport {
        facts,
        level_counts,
        checks,
        linearizability: lin_verdict,
        all_promise_linearizability,
    }
}

fn op_ids(history: &ParsedHistory) -> Vec<OpId> {
    match history {
        ParsedHistory::Register(h) => h.operations().iter().map(|op| op.id).collect(),
        ParsedHistory::Kv(h) => h.operations().iter().map(|op| op.id).collect(),
        ParsedHistory::Set(h) => h.operations().iter().map(|op| op.id).collect(),
    }
}

/// An operation as the linearizability selection sees it.
struct LinOp<'a, I, O> {
    key: &'a str,
    id: OpId,
    /// It may have changed the object (a write, CAS, put, append or add
    /// that did not definitely fail).
    may_write: bool,
    search: Option<SearchOp<I, O>>,
}

/// Each key's operations for the search.
type Parts<'a, I, O> = BTreeMap<&'a str, Vec<SearchOp<I, O>>>;

/// Splits operations into the keys whose writes all promise
/// linearizability (their strong operations) and the rest.
fn select<'a, I, O>(
    ops: Vec<LinOp<'a, I, O>>,
    strong: &dyn Fn(OpId) -> bool,
) -> (Parts<'a, I, O>, BTreeSet<&'a str>) {
    let weak_keys: BTreeSet<&str> = ops
        .iter()
        .filter(|op| op.may_write && !strong(op.id))
        .map(|op| op.key)
        .collect();
    let mut parts: BTreeMap<&str, Vec<SearchOp<I, O>>> = BTreeMap::new();
    for op in ops {
        if weak_keys.contains(op.key) || !strong(op.id) {
            continue;
        }
        let part = parts.entry(op.key).or_default();
        if let Some(search) = op.search {
            part.push(search);
        }
    }
    (parts, weak_keys)
}

fn linearizability(
    input: &PromiseInput<'_>,
    scope: &Scope<'_>,
    options: &CheckOptions,
    stop: &(dyn Fn() -> bool + Sync),
) -> (CheckResult, Option<Verdict>) {
    let skew = !scope.quorums_linearizable;
    let strong = |id: OpId| promises_linearizability(scope.level(id), skew);
    let (verdict, keys, ops, weak_keys) = match input.history {
        ParsedHistory::Register(h) => {
            let ops = h
                .operations()
                .iter()
                .map(|op| LinOp {
                    key: op.key.as_str(),
                    id: op.id,
                    may_write: !matches!(op.call, Call::Read)
                        && !matches!(op.outcome(), Outcome::Fail | Outcome::Refused),
                    search: register_search_op(op),
                })
                .collect();
            let (mut parts, weak) = select(ops, &strong);
            let (keys, n) = (parts.len(), parts.values().map(Vec::len).sum::<usize>());
            for ops in parts.values_mut() {
                prune_unobserved_open_writes(ops);
            }
            let describe = |id: OpId| {
                h.operation(id)
                    .map_or_else(|| format!("#{}", id.0), |op| op.to_string())
            };
            let verdict = (!parts.is_empty())
                .then(|| check_parts_with_stop(&RegisterModel, parts, &describe, options, stop));
            (verdict, keys, n, weak.len())
        }
        ParsedHistory::Kv(h) => {
            let ops = h
                .operations()
                .iter()
                .map(|op| LinOp {
                    key: op.key.as_str(),
                    id: op.id,
                    may_write: op.input != KvInput::Get
                        && !matches!(op.completion, Some((_, KvOutcome::Fail))),
                    search: kv_search_op(op),
                })
                .collect();
            let (parts, weak) = select(ops, &strong);
            let (keys, n) = (parts.len(), parts.values().map(Vec::len).sum::<usize>());
            let describe = |id: OpId| {
                h.operation(id)
                    .map_or_else(|| format!("#{}", id.0), |op| op.to_string())
            };
            let verdict = (!parts.is_empty())
                .then(|| check_parts_with_stop(&KvModel, parts, &describe, options, stop));
            (verdict, keys, n, weak.len())
        }
        ParsedHistory::Set(h) => {
            let ops = h
                .operations()
                .iter()
                .map(|op| LinOp {
                    key: op.key.as_str(),
                    id: op.id,
                    may_write: matches!(op.input, SetInput::Add(_))
                        && *op.outcome() != SetOutcome::Fail,
                    search: set_search_op(op),
                })
                .collect();
            let (parts, weak) = select(ops, &strong);
            let (keys, n) = (parts.len(), parts.values().map(Vec::len).sum::<usize>());
            let describe = |id: OpId| {
                h.operation(id)
                    .map_or_else(|| format!("#{}", id.0), |op| op.to_string())
            };
            let verdict = (!parts.is_empty())
                .then(|| check_parts_with_stop(&SetModel, parts, &describe, options, stop));
            (verdict, keys, n, weak.len())
        }
    };
    let clocks = if skew {
        "this run had clock skew"
    } else {
        "clocks agreed"
    };
    let skipped = if weak_keys > 0 {
        format!(
            "; {weak_keys} key(s) not checked: they have writes at levels that do not promise it"
        )
    } else {
        String::new()
    };
    let result = |status, note| CheckResult {
        check: Check::Linearizability,
        status,
        note,
    };
    let Some(verdict) = verdict else {
        return (
            result(
                Status::NotApplicable,
                format!(
                    "not promised for any key: it needs a key's writes at SERIAL, or at QUORUM/ALL with synchronised clocks ({clocks}){skipped}"
                ),
            ),
            None,
        );
    };
    let checked = format!("{keys} key(s), {ops} operation(s) at levels that promise it{skipped}");
    let outcome = match &verdict {
        Verdict::Linearizable => result(Status::Passed, checked),
        Verdict::NotLinearizable(c) => result(Status::Violated, c.to_string()),
        Verdict::Unknown { reason } => result(Status::Unknown, format!("{reason} ({checked})")),
    };
    (outcome, Some(verdict))
}

/// Lost writes, read-your-writes, monotonic reads and set completeness.
fn weak_checks(input: &PromiseInput<'_>, scope: &Scope<'_>) -> Vec<CheckResult> {
    let (lost, sessions, completeness) = match input.history {
        ParsedHistory::Register(h) => {
            let ops = consistency::register_ops(h, input.levels, input.versions);
            let describe = |id: OpId| {
                h.operation(id)
                    .map_or_else(|| format!("#{}", id.0), |op| op.to_string())
            };
            (
                consistency::lost_writes(&ops, &Val::Nil, scope, &describe),
                consistency::sessions(&ops, &Val::Nil, scope, &describe),
                None,
            )
        }
        ParsedHistory::Kv(h) => {
            let ops = consistency::kv_ops(h, input.levels, input.versions);
            let describe = |id: OpId| {
                h.operation(id)
                    .map_or_else(|| format!("#{}", id.0), |op| op.to_string())
            };
            let initial = Val::Text(String::new());
            (
                consistency::lost_writes(&ops, &initial, scope, &describe),
                consistency::sessions(&ops, &initial, scope, &describe),
                None,
            )
        }
        ParsedHistory::Set(h) => (
            set_lost_adds(h, scope),
            set_sessions(h, scope),
            Some(set_completeness(h, scope).map_err(|e| e.to_string())),
        ),
    };
    let judged = |check: Check,
                  pairs: usize,
                  result: Result<(), consistency::ConsistencyViolation>,
                  nothing: &str| {
        let (status, note) = match result {
            Err(v) => (Status::Violated, v.to_string()),
            Ok(()) if pairs == 0 => (Status::NotApplicable, nothing.to_owned()),
            Ok(()) => (
                Status::Passed,
                format!("{pairs} pair(s) of operations judged"),
            ),
        };
        CheckResult {
            check,
            status,
            note,
        }
    };
    let (lost_judged, lost_result) = lost;
    let overlap_note = "(only pairs at levels whose replicas must meet, or of a session that carried its timestamps)";
    vec![
        judged(
            Check::LostWrite,
            lost_judged.pairs,
            lost_result,
            "nothing to judge: no acknowledged write is followed by a read at a level whose replicas must meet it",
        ),
        judged(
            Check::ReadYourWrites,
            sessions.ryw_judged.pairs,
            sessions.read_your_writes,
            &format!("nothing to judge: no session reads after its own acknowledged write {overlap_note}"),
        ),
        judged(
            Check::MonotonicReads,
            sessions.mr_judged.pairs,
            sessions.monotonic_reads,
            &format!("nothing to judge: no session reads twice {overlap_note}"),
        ),
        match completeness {
            None => CheckResult {
                check: Check::SetCompleteness,
                status: Status::NotApplicable,
                note: format!("not a set history ({} model)", input.history.model_name()),
            },
            Some(Ok(())) => CheckResult {
                check: Check::SetCompleteness,
                status: Status::Passed,
                note: "every acknowledged add is in the final read, no read holds a phantom"
                    .to_owned(),
            },
            Some(Err(v)) => CheckResult {
                check: Check::SetCompleteness,
                status: Status::Violated,
                note: v,
            },
        },
    ]
}

/// Each operation as the causal check sees it.
fn session_ops(history: &ParsedHistory, versions: &BTreeMap<OpId, Version>) -> Vec<SessionOp> {
    let op = |id: OpId, process, invoke, acknowledged_write: bool, answered: bool| SessionOp {
        id,
        process,
        invoke,
        acknowledged_write,
        answered,
        version: versions.get(&id).copied(),
    };
    match history {
        ParsedHistory::Register(h) => h
            .operations()
            .iter()
            .map(|o| {
                let outcome = o.outcome();
                let ok = matches!(outcome, Outcome::Ok { .. });
                let write = ok && !matches!(o.call, Call::Read);
                let answered = ok || *outcome == Outcome::Refused;
                op(o.id, o.process, o.invoke_nanos, write, answered)
            })
            .collect(),
        ParsedHistory::Kv(h) => h
            .operations()
            .iter()
            .map(|o| {
                let ok = matches!(o.completion, Some((_, KvOutcome::Ok { .. })));
                let write = ok && o.input != KvInput::Get;
                op(o.id, o.process, o.invoke_time, write, ok)
            })
            .collect(),
        ParsedHistory::Set(h) => h
            .operations()
            .iter()
            .map(|o| {
                let ok = matches!(o.outcome(), SetOutcome::Ok { .. });
                let write = ok && matches!(o.input, SetInput::Add(_));
                op(o.id, o.process, o.invoke_time, write, ok)
            })
            .collect(),
    }
}

/// The causal check: promised where sessions carried their timestamps.
fn causal_writes(input: &PromiseInput<'_>, scope: &Scope<'_>) -> CheckResult {
    let result = |status, note: String| CheckResult {
        check: Check::CausalWrites,
        status,
        note,
    };
    if !scope.session_timestamps {
        return result(
            Status::NotApplicable,
            "not promised: this run's sessions carried no timestamp (run line: session_timestamps)"
                .to_owned(),
        );
    }
    let ops = session_ops(input.history, input.versions);
    let describe = |id: OpId| describe_op(input.history, id);
    match consistency::causal_writes(&ops, &describe) {
        (_, Err(v)) => result(Status::Violated, v.to_string()),
        (judged, Ok(())) if judged.pairs == 0 => result(
            Status::NotApplicable,
            "nothing to judge: no session wrote, with a recorded version, after observing one"
                .to_owned(),
        ),
        (judged, Ok(())) => result(
            Status::Passed,
            format!(
                "{} acknowledged write(s) judged against what their session had seen",
                judged.pairs
            ),
        ),
    }
}

/// One readable line for operation `id`.
fn describe_op(history: &ParsedHistory, id: OpId) -> String {
    let line = match history {
        ParsedHistory::Register(h) => h.operation(id).map(|op| op.to_string()),
        ParsedHistory::Kv(h) => h.operation(id).map(|op| op.to_string()),
        ParsedHistory::Set(h) => h.operation(id).map(|op| op.to_string()),
    };
    line.unwrap_or_else(|| format!("#{}", id.0))
}

fn convergence(replicas: Option<&BTreeMap<String, Vec<ReplicaVersion>>>) -> CheckResult {
    let (status, note) = match replicas {
        None => (
            Status::NotApplicable,
            "the history records no replica states".to_owned(),
        ),
        Some(replicas) => match check_convergence(replicas) {
            Ok(()) => (
                Status::Passed,
                format!("{} key(s), every replica alike", replicas.len()),
            ),
            Err(v) => (Status::Violated, v.to_string()),
        },
    };
    CheckResult {
        check: Check::Convergence,
        status,
        note,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::History;
    use crate::set::SetHistory;

    fn facts(skew: bool) -> RunFacts {
        RunFacts {
            clock_skew: Some(skew),
            replication_factor: Some(3),
            session_timestamps: Some(false),
            clock_uncertainty_nanos: None,
            commit_wait: None,
        }
    }

    fn check(
        history: &ParsedHistory,
        levels: &BTreeMap<OpId, Level>,
        versions: &BTreeMap<OpId, Version>,
        facts: RunFacts,
    ) -> PromiseReport {
        check_promises(
            &PromiseInput {
                history,
                levels,
                versions,
                facts,
                replicas: None,
            },
            &CheckOptions::default(),
            &|| false,
        )
    }

    fn every(h: &History, level: Level) -> BTreeMap<OpId, Level> {
        h.operations().iter().map(|op| (op.id, level)).collect()
    }

    /// Key "a": a write of 2 acknowledged, then a read of the older 1.
    fn stale_read() -> History {
        let mut h = History::new();
        let w1 = h.invoke(0, "a", Call::Write(Some(1)), 0);
        h.complete(w1, 10, Outcome::Ok { value: None });
        let w2 = h.invoke(0, "a", Call::Write(Some(2)), 20);
        h.complete(w2, 30, Outcome::Ok { value: None });
        let r = h.invoke(1, "a", Call::Read, 40);
        h.complete(r, 50, Outcome::Ok { value: Some(1) });
        h
    }

    #[test]
    fn quorum_without_skew_is_held_to_linearizability() {
        let h = stale_read();
        let levels = every(&h, Level::Quorum);
        let report = check(
            &ParsedHistory::Register(h),
            &levels,
            &BTreeMap::new(),
            facts(false),
        );
        assert_eq!(report.verdict(), PromiseVerdict::NotLinearizable);
        assert!(report
            .result(Check::Linearizability)
            .note
            .contains("key \"a\""));
        // The same stale read is a lost write, too.
        assert_eq!(report.result(Check::LostWrite).status, Status::Violated);
    }

    #[test]
    fn quorum_under_skew_is_held_to_no_lost_write_only() {
        let h = stale_read();
        let levels = every(&h, Level::Quorum);
        let ops: Vec<OpId> = h.operations().iter().map(|op| op.id).collect();
        let parsed = ParsedHistory::Register(h);
        // Without versions, real time proves nothing under skew: the second
        // write may carry the lower timestamp and lose last-write-wins.
        let report = check(&parsed, &levels, &BTreeMap::new(), facts(true));
        assert_eq!(
            report.result(Check::Linearizability).status,
            Status::NotApplicable
        );
        assert_eq!(report.verdict(), PromiseVerdict::PromisesKept, "{report}");
        // With versions it is exact: the write of 2 had the higher
        // timestamp, and the read returned the version of 1.
        let v = |timestamp| Version {
            timestamp,
            writer: 1,
        };
        let versions = BTreeMap::from([(ops[0], v(5)), (ops[1], v(9)), (ops[2], v(5))]);
        let report = check(&parsed, &levels, &versions, facts(true));
        assert_eq!(report.verdict(), PromiseVerdict::PromiseBroken);
        let lost = report.result(Check::LostWrite);
        assert_eq!(lost.status, Status::Violated);
        assert!(lost.note.contains("key \"a\""), "{}", lost.note);
        assert!(lost.note.contains("#1 p0 a write 2"), "{}", lost.note);
        // And when the first write won (skew gave it the higher
        // timestamp), nothing was lost.
        let versions = BTreeMap::from([(ops[0], v(9)), (ops[1], v(5)), (ops[2], v(9))]);
        let report = check(&parsed, &levels, &versions, facts(true));
        assert_eq!(report.verdict(), PromiseVerdict::PromisesKept, "{report}");
    }

    #[test]
    fn one_promises_no_read_your_writes_across_disjoint_replicas() {
        // A session writes at ONE, then reads at ONE and misses it.
        let mut h = History::new();
        let w = h.invoke(0, "a", Call::Write(Some(1)), 0);
        h.complete(w, 10, Outcome::Ok { value: None });
        let r = h.invoke(0, "a", Call::Read, 20);
        h.complete(r, 30, Outcome::Ok { value: None });
        let levels = every(&h, Level::One);
        let parsed = ParsedHistory::Register(h);
        let report = check(&parsed, &levels, &BTreeMap::new(), facts(false));
        assert_eq!(report.verdict(), PromiseVerdict::PromisesKept, "{report}");
        assert_eq!(
            report.result(Check::ReadYourWrites).status,
            Status::NotApplicable
        );
        // A client that carries its session timestamp is promised it.
        let with_sessions = RunFacts {
            session_timestamps: Some(true),
            ..facts(false)
        };
        let report = check(&parsed, &levels, &BTreeMap::new(), with_sessions);
        assert_eq!(report.verdict(), PromiseVerdict::PromiseBroken);
        assert_eq!(
            report.result(Check::ReadYourWrites).status,
            Status::Violated
        );
    }

    /// A session at ONE that carries its timestamp is held to monotonic
    /// reads and to causal writes; one that does not is held to neither
    /// (its reads may reach disjoint replicas, its coordinator never saw
    /// what it read).
    #[test]
    fn session_timestamps_bind_one_to_monotonic_reads_and_causal_writes() {
        let mut h = History::new();
        let w1 = h.invoke(1, "a", Call::Write(Some(1)), 0);
        h.complete(w1, 10, Outcome::Ok { value: None });
        let w2 = h.invoke(1, "a", Call::Write(Some(2)), 20);
        h.complete(w2, 30, Outcome::Ok { value: None });
        let r1 = h.invoke(0, "a", Call::Read, 40);
        h.complete(r1, 50, Outcome::Ok { value: Some(2) });
        let r2 = h.invoke(0, "a", Call::Read, 60);
        h.complete(r2, 70, Outcome::Ok { value: Some(1) });
        // Then process 0 writes key "b", stamped below what it read.
        let wb = h.invoke(0, "b", Call::Write(Some(7)), 80);
        h.complete(wb, 90, Outcome::Ok { value: None });
        let v = |timestamp| Version {
            timestamp,
            writer: 1,
        };
        let versions = BTreeMap::from([(w1, v(1)), (w2, v(2)), (r1, v(2)), (r2, v(1)), (wb, v(2))]);
        let levels = every(&h, Level::One);
        let parsed = ParsedHistory::Register(h);
        let report = check(&parsed, &levels, &versions, facts(false));
        for c in [Check::MonotonicReads, Check::CausalWrites] {
            assert_eq!(report.result(c).status, Status::NotApplicable, "{report}");
        }
        assert_eq!(report.verdict(), PromiseVerdict::PromisesKept, "{report}");
        let with_sessions = RunFacts {
            session_timestamps: Some(true),
            ..facts(false)
        };
        let report = check(&parsed, &levels, &versions, with_sessions);
        assert_eq!(report.verdict(), PromiseVerdict::PromiseBroken, "{report}");
        assert_eq!(
            report.result(Check::MonotonicReads).status,
            Status::Violated
        );
        let causal = report.result(Check::CausalWrites);
        assert_eq!(causal.status, Status::Violated, "{report}");
        assert!(causal.note.contains("#4 p0 b write 7"), "{}", causal.note);
        // Stamped above what it read, the write is fine.
        let mut versions = versions;
        versions.insert(wb, v(3));
        let report = check(&parsed, &levels, &versions, with_sessions);
        assert_eq!(report.result(Check::CausalWrites).status, Status::Passed);
        // The checks come out in report order.
        let order: Vec<Check> = report.checks.iter().map(|r| r.check).collect();
        assert_eq!(order, Check::ALL.to_vec());
    }

    #[test]
    fn a_key_with_a_weak_write_is_not_held_to_linearizability() {
        // Key "a": a ONE write, then a QUORUM read that misses it: allowed.
        // Key "b": all QUORUM, and a stale read: not linearizable.
        let mut h = History::new();
        let w = h.invoke(0, "a", Call::Write(Some(1)), 0);
        h.complete(w, 10, Outcome::Ok { value: None });
        let r = h.invoke(1, "a", Call::Read, 20);
        h.complete(r, 30, Outcome::Ok { value: None });
        let mut levels = BTreeMap::from([(w, Level::One), (r, Level::Quorum)]);
        let parsed = ParsedHistory::Register(h.clone());
        let report = check(&parsed, &levels, &BTreeMap::new(), facts(false));
        assert_eq!(report.verdict(), PromiseVerdict::PromisesKept, "{report}");
        assert!(report
            .result(Check::Linearizability)
            .note
            .contains("1 key(s) not checked"));
        let wb = h.invoke(0, "b", Call::Write(Some(2)), 40);
        h.complete(wb, 50, Outcome::Ok { value: None });
        let rb = h.invoke(1, "b", Call::Read, 60);
        h.complete(rb, 70, Outcome::Ok { value: None });
        levels.insert(wb, Level::Quorum);
        levels.insert(rb, Level::Quorum);
        let report = check(
            &ParsedHistory::Register(h),
            &levels,
            &BTreeMap::new(),
            facts(false),
        );
        assert_eq!(report.verdict(), PromiseVerdict::NotLinearizable);
        assert!(report
            .result(Check::Linearizability)
            .note
            .contains("key \"b\""));
    }

    #[test]
    fn weak_reads_on_a_strong_key_are_left_out_of_the_search() {
        // QUORUM writes; a ONE read returns the older value: fine.
        let h = stale_read();
        let mut levels = every(&h, Level::Quorum);
        levels.insert(OpId(2), Level::One);
        let report = check(
            &ParsedHistory::Register(h),
            &levels,
            &BTreeMap::new(),
            facts(false),
        );
        assert_eq!(report.verdict(), PromiseVerdict::PromisesKept, "{report}");
        assert_eq!(report.result(Check::Linearizability).status, Status::Passed);
    }

    #[test]
    fn a_set_missing_an_acknowledged_add_breaks_completeness() {
        let mut h = SetHistory::new();
        let a = h.invoke(0, "s", SetInput::Add(1), 0);
        h.complete(a, 10, SetOutcome::Ok { value: None });
        let r = h.invoke(1, "s", SetInput::ReadAll, 20);
        h.complete(
            r,
            30,
            SetOutcome::Ok {
                value: Some(vec![]),
            },
        );
        let levels = BTreeMap::from([(a, Level::Quorum), (r, Level::Quorum)]);
        let report = check(
            &ParsedHistory::Set(h),
            &levels,
            &BTreeMap::new(),
            facts(true),
        );
        assert_eq!(report.verdict(), PromiseVerdict::PromiseBroken, "{report}");
        assert_eq!(
            report.result(Check::SetCompleteness).status,
            Status::Violated
        );
        assert_eq!(report.result(Check::LostWrite).status, Status::Violated);
    }

    #[test]
    fn kv_writes_are_judged_by_versions_and_appends_only_by_versions() {
        use crate::kv::{KvHistory, KvOutcome};
        let ok = |value: Option<&str>| KvOutcome::Ok {
            value: value.map(str::to_owned),
        };
        // A put at ONE, then a get at ALL that finds nothing.
        let mut h = KvHistory::new();
        let put = h.invoke(0, "k", KvInput::Put("x".into()), 0);
        h.complete(put, 10, ok(None));
        let get = h.invoke(1, "k", KvInput::Get, 20);
        h.complete(get, 30, ok(Some("")));
        let levels = BTreeMap::from([(put, Level::One), (get, Level::All)]);
        let parsed = ParsedHistory::Kv(h);
        let report = check(&parsed, &levels, &BTreeMap::new(), facts(false));
        assert_eq!(report.verdict(), PromiseVerdict::PromiseBroken, "{report}");
        assert!(report
            .result(Check::LostWrite)
            .note
            .contains("#0 p0 \"k\" put \"x\""));
        // An append has no value of its own: without versions nothing can
        // be concluded; with them, the get's older version is a lost write.
        let mut h = KvHistory::new();
        let append = h.invoke(0, "k", KvInput::Append("x".into()), 0);
        h.complete(append, 10, ok(None));
        let get = h.invoke(1, "k", KvInput::Get, 20);
        h.complete(get, 30, ok(Some("")));
        let levels = BTreeMap::from([(append, Level::One), (get, Level::All)]);
        let parsed = ParsedHistory::Kv(h);
        let report = check(&parsed, &levels, &BTreeMap::new(), facts(false));
        assert_eq!(report.verdict(), PromiseVerdict::PromisesKept, "{report}");
        let v = |timestamp| Version {
            timestamp,
            writer: 1,
        };
        let versions = BTreeMap::from([(append, v(7)), (get, v(0))]);
        let report = check(&parsed, &levels, &versions, facts(false));
        assert_eq!(report.result(Check::LostWrite).status, Status::Violated);
    }

    #[test]
    fn levels_meet_by_replica_count() {
        let one = Some(Level::One);
        let quorum = Some(Level::Quorum);
        let all = Some(Level::All);
        assert!(!levels_meet(one, one, Some(3)));
        assert!(levels_meet(one, one, Some(1)));
        assert!(levels_meet(one, all, Some(3)));
        assert!(levels_meet(quorum, quorum, Some(5)));
        assert!(!levels_meet(quorum, one, Some(3)));
        assert!(levels_meet(Some(Level::Two), Some(Level::Two), Some(3)));
        assert!(!levels_meet(Some(Level::Two), Some(Level::Two), None));
        assert!(levels_meet(quorum, Some(Level::Serial), None));
    }

    #[test]
    fn the_report_is_deterministic() {
        let h = stale_read();
        let levels = every(&h, Level::Quorum);
        let parsed = ParsedHistory::Register(h);
        let a = check(&parsed, &levels, &BTreeMap::new(), facts(false));
        let b = check(&parsed, &levels, &BTreeMap::new(), facts(false));
        assert_eq!(a, b);
        assert_eq!(a.to_string(), b.to_string());
    }
}
