//! Session guarantees at every level, proven in the simulator: clients
//! carry their session's floors (the newest version they saw of each key,
//! and of any key), so `ONE` and `TWO` sessions read their writes, never
//! read older than they read before, and stamp their writes above what
//! they saw, with faults on. One coordinator that drops the floors is
//! caught by a bounded sweep whose failing seed replays bit for bit, and
//! the same sweep without it passes.

mod support;

use enigma_cluster::ConsistencyLevel;
use enigma_sim::{sweep, SimConfig};
use support::planted::{all_passed, caught_and_replayed, passes_without_planted_bugs};

/// Seeds the planted bug's sweep may take before the test gives up.
const PLANTED_SWEEP_SEEDS: u64 = 100;
/// Seeds of the matching sweep without the bug.
const CONTROL_SWEEP_SEEDS: u64 = 40;
/// Seeds of the sweep at `TWO`.
const TWO_SWEEP_SEEDS: u64 = 20;

/// What catches a coordinator that drops its sessions' floors.
const SESSION_VIOLATIONS: &[&str] = &["read-your-writes", "monotonic-reads", "causal-writes"];

#[test]
fn one_coordinator_dropping_the_session_timestamp_is_caught_at_one() {
    let base = SimConfig {
        seed: 0x5e55_0000,
        level: ConsistencyLevel::One,
        planted_session_timestamp_dropped: true,
        ..SimConfig::default()
    };
    let failure = caught_and_replayed(&base, PLANTED_SWEEP_SEEDS, SESSION_VIOLATIONS);
    assert_eq!(failure.facts.session_timestamps, Some(true));
    passes_without_planted_bugs(&base, CONTROL_SWEEP_SEEDS);
}

#[test]
fn sessions_at_two_keep_their_guarantees_with_faults() {
    let config = SimConfig {
        seed: 0x5e55_2000,
        level: ConsistencyLevel::Two,
        ..SimConfig::default()
    };
    assert!(config.faults, "the sweep runs with faults");
    let result = sweep(&config, TWO_SWEEP_SEEDS, |_| {});
    all_passed(&result);
}
