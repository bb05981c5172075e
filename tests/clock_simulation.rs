//! Time the cluster can trust, proven in the simulator: each clock
//! mechanism's planted bug is caught by a bounded sweep whose failing seed
//! replays bit for bit, and the same sweep without the bug passes.

use enigma_sim::{run, sweep, RunReport, SimConfig};

/// Seeds a planted bug's sweep may take before the test gives up.
const PLANTED_SWEEP_SEEDS: u64 = 100;
/// Seeds of the matching sweep without the bug.
const CONTROL_SWEEP_SEEDS: u64 = 60;

/// Sweeps `base` until a run fails; asserts it failed with one of
/// `properties`, and that its seed replays to the same digest and
/// violations.
fn caught_and_replayed(base: &SimConfig, properties: &[&str]) -> RunReport {
    let mut first: Option<RunReport> = None;
    for offset in 0..PLANTED_SWEEP_SEEDS {
        let config = SimConfig {
            seed: base.seed.wrapping_add(offset),
            ..base.clone()
        };
        let report = run(&config);
        if !report.passed() {
            eprintln!(
                "caught at seed offset {offset}: {:?}",
                report
                    .violations
                    .iter()
                    .map(|v| v.property)
                    .collect::<Vec<_>>()
            );
            first = Some(report);
            break;
        }
    }
    let failure = first.unwrap_or_else(|| {
        panic!(
            "{PLANTED_SWEEP_SEEDS} seeds from {:#x} with the planted bug all passed",
            base.seed
        )
    });
    assert!(
        failure
            .violations
            .iter()
            .any(|v| properties.contains(&v.property)),
        "expected a violation of {properties:?}, got {:?}",
        failure.violations
    );
    let replay = run(&failure.config);
    assert_eq!(
        replay.digest, failure.digest,
        "the failing seed replayed differently"
    );
    assert_eq!(replay.violations, failure.violations);
    failure
}

/// The same sweep without the planted bugs passes every seed.
fn passes(base: &SimConfig) {
    let clean = base.without_planted_bugs();
    let result = sweep(&clean, CONTROL_SWEEP_SEEDS, |_| {});
    let failures: Vec<String> = result
        .failures
        .iter()
        .map(|r| format!("{}: {:?}", r.config.repro_command(), r.violations))
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn commit_wait_keeps_quorum_linearizable_under_skew_and_skipping_it_is_caught() {
    let base = SimConfig {
        seed: 0xc0_0000,
        commit_wait: true,
        clock_skew_max_ms: 100,
        planted_skip_commit_wait: true,
        ..SimConfig::default()
    };
    let failure = caught_and_replayed(&base, &["linearizability"]);
    assert!(failure.facts.commit_wait == Some(true));
    passes(&base);
}

#[test]
fn a_restarted_node_stamps_above_what_it_held_and_an_unseeded_clock_is_caught() {
    let base = SimConfig {
        seed: 0xc1_0000,
        clock_skew_max_ms: 200,
        clients: 20,
        planted_hlc_not_seeded_on_restart: true,
        ..SimConfig::default()
    };
    let failure = caught_and_replayed(&base, &["clock"]);
    assert!(failure.stats.clock_jumps > 0 || failure.stats.crashes > 0);
    passes(&base);
}

#[test]
fn a_node_far_ahead_is_kept_out_and_adopting_its_readings_is_caught() {
    let base = SimConfig {
        seed: 0xc2_0000,
        clock_far_ahead_ms: 2_000,
        planted_adopt_remote_readings_without_bound: true,
        ..SimConfig::default()
    };
    caught_and_replayed(
        &base,
        &["lost-write", "read-your-writes", "monotonic-reads", "clock"],
    );
    passes(&base);
}
