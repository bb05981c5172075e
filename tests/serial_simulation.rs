//! `SERIAL` (per-key Paxos) proven in the simulator: the compare-and-set
//! register workload at `SERIAL` is checked for linearizability under every
//! fault the simulator draws (clock skew and jumps included); each planted
//! Paxos bug is caught by a bounded sweep whose failing seed replays bit
//! for bit, and the same sweep without the bug passes.

use enigma_cluster::ConsistencyLevel;
mod support;

use enigma_sim::{run, sweep, SimConfig};
use support::planted::{caught_and_replayed, passes_without_planted_bugs};

/// Seeds a planted bug's sweep may take before the test gives up.
const PLANTED_SWEEP_SEEDS: u64 = 200;
/// Seeds of the matching sweep without the bug.
const CONTROL_SWEEP_SEEDS: u64 = 60;

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
fn serial_runs_with_clock_skew_are_linearizable_and_check_compare_and_sets() {
    let base = SimConfig {
        clock_skew_max_ms: 100,
        ..serial(0x5053_0000)
    };
    let result = sweep(&base, 30, |_| {});
    let failures: Vec<String> = result
        .failures
        .iter()
        .map(|r| format!("{}: {:?}", r.config.repro_command(), r.violations))
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
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
