//! `SERIAL` (per-key Paxos) proven in the simulator: the compare-and-set
//! register workload at `SERIAL` is checked for linearizability under every
//! fault the simulator draws (clock skew and jumps included); each planted
//! Paxos bug is caught by a bounded sweep whose failing seed replays bit
//! for bit, and the same sweep without the bug passes. The increment
//! workload (`--workload incr`) holds every key to a linearizable counter:
//! its final value is the acknowledged increments give or take those of
//! unknown outcome, and the values increments returned are distinct, in
//! range and ordered by real time.

use enigma_cluster::ConsistencyLevel;
mod support;

use enigma_checker::{CounterCall, CounterOutcome};
use enigma_sim::{run, sweep, SimConfig, SimWorkload};
use support::planted::{
    all_passed, caught_and_replayed, passes_without_planted_bugs, seed_passes_without_the_bug,
};

/// Seeds a planted bug's sweep may take before the test gives up.
const PLANTED_SWEEP_SEEDS: u64 = 200;
/// Seeds of the matching sweep without the bug.
const CONTROL_SWEEP_SEEDS: u64 = 60;

/// Violations a chosen value lost or overwritten shows as.
const CHOSEN_VALUE_LOST: [&str; 4] = [
    "linearizability",
    "lost-write",
    "monotonic-reads",
    "read-your-writes",
];

/// Violations the counter checks report.
const COUNTER_RULES: [&str; 4] = [
    "counter-final",
    "counter-duplicate",
    "counter-range",
    "counter-order",
];

fn serial(seed: u64) -> SimConfig {
    SimConfig {
        seed,
        level: ConsistencyLevel::Serial,
        ..SimConfig::default()
    }
}

#[test]
fn an_acceptor_that_accepts_below_its_promise_is_caught() {
    let base = SimConfig {
        planted_paxos_accept_below_promise: true,
        ..serial(0x5041_0000)
    };
    let failure = caught_and_replayed(&base, PLANTED_SWEEP_SEEDS, &["linearizability"]);
    eprintln!(
        "accept-below-promise caught at seed {:#x} ({} seeds)",
        failure.config.seed,
        failure.config.seed - base.seed + 1
    );
    passes_without_planted_bugs(&base, CONTROL_SWEEP_SEEDS);
}

#[test]
fn a_proposer_that_ignores_an_in_progress_proposal_is_caught() {
    let base = SimConfig {
        planted_paxos_ignores_in_progress_proposal: true,
        ..serial(0x5049_0000)
    };
    let failure = caught_and_replayed(&base, PLANTED_SWEEP_SEEDS, &["linearizability"]);
    eprintln!(
        "ignored in-progress proposal caught at seed {:#x} ({} seeds)",
        failure.config.seed,
        failure.config.seed - base.seed + 1
    );
    passes_without_planted_bugs(&base, CONTROL_SWEEP_SEEDS);
}

#[test]
fn an_acceptor_that_answers_before_its_state_is_durable_is_caught() {
    // A crash must lose a promise or an acceptance a proposer counted, and
    // another proposer must then get a conflicting value chosen: crashes
    // are on in the default run, and its few keys meet often. A chosen
    // value lost this way may show first as a read going back in time.
    let base = SimConfig {
        planted_paxos_promise_before_durable: true,
        ..serial(0x5044_0000)
    };
    let failure = caught_and_replayed(&base, PLANTED_SWEEP_SEEDS, &CHOSEN_VALUE_LOST);
    eprintln!(
        "promise before durable caught at seed {:#x} ({} seeds)",
        failure.config.seed,
        failure.config.seed - base.seed + 1
    );
    passes_without_planted_bugs(&base, CONTROL_SWEEP_SEEDS);
}

#[test]
fn a_proposer_that_answers_after_its_first_acceptance_is_caught() {
    // Answered (and committed) on one acceptance, a value a majority never
    // accepted is reported applied: a later operation's majority misses
    // it and another value is chosen over it.
    let base = SimConfig {
        planted_paxos_answer_after_first_acceptance: true,
        ..serial(0x5041_b000)
    };
    let failure = caught_and_replayed(&base, PLANTED_SWEEP_SEEDS, &CHOSEN_VALUE_LOST);
    eprintln!(
        "answer after first acceptance caught at seed {:#x} ({} seeds)",
        failure.config.seed,
        failure.config.seed - base.seed + 1
    );
    passes_without_planted_bugs(&base, CONTROL_SWEEP_SEEDS);
}

#[test]
fn a_quorum_read_that_ignores_an_unfinished_proposal_is_caught() {
    // A SERIAL write is answered once a majority accepted it; a QUORUM read
    // (half the clients read at QUORUM) that meets the accepting majority
    // only where the commit has not landed returns the older value.
    let base = SimConfig {
        planted_read_ignores_unfinished_paxos: true,
        ..serial(0x5052_0000)
    };
    let failure = caught_and_replayed(&base, PLANTED_SWEEP_SEEDS, &CHOSEN_VALUE_LOST);
    eprintln!(
        "read ignoring an unfinished proposal caught at seed {:#x} ({} seeds)",
        failure.config.seed,
        failure.config.seed - base.seed + 1
    );
    passes_without_planted_bugs(&base, CONTROL_SWEEP_SEEDS);
}

#[test]
fn an_acceptor_that_forgets_what_it_lost_is_caught() {
    // A node whose table holding Paxos state was quarantined (or that was
    // rebuilt from its peers) serves as acceptor again once the data is
    // repaired, as if it had promised and accepted nothing: a proposer
    // whose majority includes it misses a value that was chosen, or it
    // accepts a ballot below one it promised, and a second value is chosen.
    let base = SimConfig {
        planted_paxos_acceptor_forgets_loss: true,
        ..serial(0x5046_0000)
    };
    let failure = caught_and_replayed(&base, PLANTED_SWEEP_SEEDS, &CHOSEN_VALUE_LOST);
    eprintln!(
        "acceptor forgetting its loss caught at seed {:#x} ({} seeds)",
        failure.config.seed,
        failure.config.seed - base.seed + 1
    );
    assert!(
        failure.stats.tables_quarantined + failure.stats.nodes_rebuilt > 0,
        "{:?}",
        failure.stats
    );
    seed_passes_without_the_bug(&failure);
    passes_without_planted_bugs(&base, CONTROL_SWEEP_SEEDS);
}

/// `SERIAL` seeds that draw stored damage lose Paxos acceptor state with
/// quarantined tables and rebuilt nodes; the acceptors that lost it sit
/// out what their floor says, and every run passes.
#[test]
fn stored_damage_at_serial_leaves_floors_and_runs_pass() {
    let reports: Vec<_> = (0..CONTROL_SWEEP_SEEDS)
        .map(|offset| run(&serial(0x5046_8000 + offset)))
        .collect();
    let failures: Vec<String> = reports
        .iter()
        .filter(|r| !r.passed())
        .map(|r| format!("{}: {:?}", r.config.repro_command(), r.violations))
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    let total =
        |f: fn(&enigma_sim::RunStats) -> u64| -> u64 { reports.iter().map(|r| f(&r.stats)).sum() };
    assert!(
        reports.iter().any(|r| r.swarm.contains("stored_damage=on")),
        "no seed drew the family"
    );
    assert!(
        total(|s| s.tables_quarantined) + total(|s| s.nodes_rebuilt) > 0,
        "no acceptor state lost"
    );
    assert!(
        total(|s| s.paxos_sat_out_after_loss) > 0,
        "no acceptor sat out a ballot after a loss"
    );
}

#[test]
fn serial_runs_with_clock_skew_are_linearizable_and_check_compare_and_sets() {
    let base = SimConfig {
        clock_skew_max_ms: 100,
        ..serial(0x5053_0000)
    };
    let result = sweep(&base, 30, |_| {});
    all_passed(&result);
    // The history really holds compare-and-sets, refused ones too, and the
    // linearizability check ran on it.
    let report = run(&base);
    let ops = report.history.operations();
    let cas = ops
        .iter()
        .filter(|op| matches!(op.call, enigma_checker::Call::Cas { .. }))
        .count();
    let refused = ops
        .iter()
        .filter(|op| matches!(op.outcome(), enigma_checker::Outcome::Refused))
        .count();
    assert!(cas > 100 && refused > 0, "{cas} cas, {refused} refused");
    assert!(report.promises.checks.iter().any(|c| {
        c.check.name() == "linearizability" && c.status == enigma_checker::Status::Passed
    }));
}

fn increments(seed: u64) -> SimConfig {
    SimConfig {
        workload: SimWorkload::Incr,
        ..serial(seed)
    }
}

#[test]
fn increment_runs_count_every_acknowledged_increment_once() {
    let base = increments(0x5043_0000);
    // The swarm draws clock jumps for some seeds; skew for all of these.
    let skewed = SimConfig {
        clock_skew_max_ms: 100,
        ..increments(0x5043_2000)
    };
    let mut result = sweep(&base, 20, |_| {});
    result.absorb(sweep(&skewed, 10, |_| {}));
    all_passed(&result);
    // The runs really increment and read, and some increments end unknown
    // (the slack the final-value check allows is exercised, not idle).
    let report = run(&base);
    let ops = report.counter.operations();
    let count = |call: CounterCall, ok: bool| {
        ops.iter()
            .filter(|op| op.call == call)
            .filter(|op| matches!(op.outcome(), CounterOutcome::Ok(_)) == ok)
            .count()
    };
    let (acked, reads) = (
        count(CounterCall::Incr, true),
        count(CounterCall::Read, true),
    );
    assert!(
        acked > 300 && reads > 50,
        "{acked} increments, {reads} reads acknowledged"
    );
    assert!(report.history.operations().is_empty());
    let unknown = sweep(&base, 5, |_| {}).ops_info;
    assert!(unknown > 0, "no increment of unknown outcome in 5 seeds");
}

#[test]
fn increments_through_an_acceptor_that_accepts_below_its_promise_are_caught() {
    // The counter checks bite: the planted Paxos bug lets two increments
    // apply to the same value.
    let base = SimConfig {
        planted_paxos_accept_below_promise: true,
        ..increments(0x5043_1000)
    };
    let failure = caught_and_replayed(&base, PLANTED_SWEEP_SEEDS, &COUNTER_RULES);
    eprintln!(
        "accept-below-promise caught by the counter checks at seed {:#x}",
        failure.config.seed
    );
}

#[test]
fn a_proposal_finished_with_its_stale_stamp_is_caught() {
    // The bug needs a proposal finished more than the write lateness bound
    // (the hint window plus the clock offset bound, 4.5 s in the
    // simulator) after it was proposed: no quorum of its key's acceptors
    // for that long (a partition, crashes), then another proposer finding
    // it accepted. Committed with its old stamp, the replicas refuse it as
    // late; it stays unfinished, each later proposer finishes it the same
    // way, and the key takes no other write: the liveness phase's
    // operations on it fail.
    let base = SimConfig {
        planted_paxos_finish_with_stale_stamp: true,
        ..serial(0x5046_5000)
    };
    let failure = caught_and_replayed(&base, PLANTED_SWEEP_SEEDS, &["liveness"]);
    eprintln!(
        "stale-stamp finish caught at seed {:#x} ({} seeds)",
        failure.config.seed,
        failure.config.seed - base.seed + 1
    );
    passes_without_planted_bugs(&base, CONTROL_SWEEP_SEEDS);
}

#[test]
fn a_purged_tombstone_whose_batch_was_never_acknowledged_is_no_lost_write() {
    // Seed 0x5041a03a: n3 applies a Paxos commit of a delete of k3 in a
    // batch whose sync then fails, so it never acknowledges it; the
    // tombstone reaches its disk all the same, and is purged later. The
    // value n3 had acknowledged before is then rightly gone. The
    // durability check once took that absence for a lost write: it
    // excused only acknowledged tombstones.
    let report = run(&serial(0x5041_a03a));
    assert!(report.stats.sync_failures > 0, "{:?}", report.stats);
    assert!(report.passed(), "{:#?}", report.violations);
}
