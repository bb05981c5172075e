//! Time the cluster can trust, proven in the simulator: each clock
//! mechanism's planted bug is caught by a bounded sweep whose failing seed
//! replays bit for bit, and the same sweep without the bug passes.

mod support;

use enigma_cluster::ConsistencyLevel;
use enigma_sim::SimConfig;
use support::planted::{caught_and_replayed, passes_without_planted_bugs};

/// Seeds a planted bug's sweep may take before the test gives up.
const PLANTED_SWEEP_SEEDS: u64 = 100;
/// Seeds the unseeded-clock sweep may take: client sessions now carry the
/// newest version they saw, and a restarted coordinator adopts it before
/// stamping their writes, which hides the missing seed from most writes;
/// only writes from sessions that saw nothing as new as what the node
/// held before its restart show it.
const UNSEEDED_SWEEP_SEEDS: u64 = 600;
/// Seeds of the matching sweep without the bug.
const CONTROL_SWEEP_SEEDS: u64 = 60;

#[test]
fn commit_wait_keeps_quorum_linearizable_under_skew_and_skipping_it_is_caught() {
    let base = SimConfig {
        seed: 0xc0_0000,
        commit_wait: true,
        clock_skew_max_ms: 100,
        planted_skip_commit_wait: true,
        ..SimConfig::default()
    };
    let failure = caught_and_replayed(&base, PLANTED_SWEEP_SEEDS, &["linearizability"]);
    assert!(failure.facts.commit_wait == Some(true));
    passes_without_planted_bugs(&base, CONTROL_SWEEP_SEEDS);
}

#[test]
fn a_restarted_node_stamps_above_what_it_held_and_an_unseeded_clock_is_caught() {
    let base = SimConfig {
        seed: 0xc1_0000,
        // Clocks up to 400 ms apart: a restarted node far enough behind
        // what it held that sessions' floors do not lift every write above
        // it (at 200 ms the catch moved past 600 seeds when the nemesis's
        // crash draws changed; at 400 ms the 18th seed).
        clock_skew_max_ms: 400,
        clients: 20,
        planted_hlc_not_seeded_on_restart: true,
        ..SimConfig::default()
    };
    let failure = caught_and_replayed(&base, UNSEEDED_SWEEP_SEEDS, &["clock"]);
    assert!(failure.stats.clock_jumps > 0 || failure.stats.crashes > 0);
    passes_without_planted_bugs(&base, CONTROL_SWEEP_SEEDS);
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
        PLANTED_SWEEP_SEEDS,
        &["lost-write", "read-your-writes", "monotonic-reads", "clock"],
    );
    passes_without_planted_bugs(&base, CONTROL_SWEEP_SEEDS);
}

#[test]
fn a_node_far_ahead_at_one_needs_a_peer_and_writing_alone_is_caught() {
    // At ONE a coordinator's own replica meets the level alone; a node
    // whose clock runs far ahead, before it has heard enough peers to judge
    // itself, would stamp writes no peer checked and acknowledge them.
    let base = SimConfig {
        seed: 0xc4_0000,
        level: ConsistencyLevel::One,
        clock_far_ahead_ms: 2_000,
        planted_unjudged_clock_writes_alone: true,
        ..SimConfig::default()
    };
    caught_and_replayed(
        &base,
        PLANTED_SWEEP_SEEDS,
        &["read-your-writes", "monotonic-reads", "lost-write"],
    );
    passes_without_planted_bugs(&base, CONTROL_SWEEP_SEEDS);
}
