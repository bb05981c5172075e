//! Damage to stored bytes in simulation runs: bit rot and misdirected
//! writes in tables, and bit rot in sealed log segments as a node starts,
//! drawn one node at a time (`sim/src/run/damage.rs`), met by quarantine,
//! refused starts and reads, and repair from the peers
//! (`cluster/src/damage.rs`); the planted node that serves what it has
//! left of a damaged range before it is repaired, and the planted
//! recovery that replays past a rotted sealed segment.

use enigma_cluster::ConsistencyLevel;
use enigma_sim::{run, SimConfig};

mod support;

use support::planted::{all_passed, caught_and_replayed, seed_passes_without_the_bug};

/// Seeds the planted switch's sweep may take before it must be caught.
const PLANTED_SWEEP_SEEDS: u64 = 300;
/// Seeds of the sweep that must see the family fire and every run pass.
const FIRING_SWEEP_SEEDS: u64 = 60;

/// A node that answers reads of a damaged range from the tables it has
/// left returns versions older than writes it acknowledged: a quorum that
/// meets it and a replica that missed the write returns the older one.
#[test]
fn a_node_serving_quarantined_ranges_is_caught() {
    let base = SimConfig {
        seed: 0xda_0000,
        keys: 20,
        always_stored_damage: true,
        planted_serve_quarantined_ranges: true,
        ..SimConfig::default()
    };
    let failure = caught_and_replayed(
        &base,
        PLANTED_SWEEP_SEEDS,
        &["linearizability", "lost-write"],
    );
    assert!(
        failure.stats.tables_quarantined + failure.stats.nodes_rebuilt > 0,
        "{:?}",
        failure.stats
    );
    seed_passes_without_the_bug(&failure);
}

/// A node that lost a table and keeps what its other tables hold of the
/// damaged ranges may keep a version that a tombstone in the lost table
/// hid. Once its peers have purged that tombstone (a repair that started
/// after it completed everywhere), the repair that refills the node pushes
/// the old version back to them: a deleted or overwritten value returns.
/// At `SERIAL` the Paxos floor's bound keeps damage on one node, which
/// meets it more often than the default mix.
#[test]
fn a_node_that_keeps_stale_data_after_a_loss_is_caught() {
    let base = SimConfig {
        seed: 0x7_2300,
        keys: 20,
        level: ConsistencyLevel::Serial,
        always_stored_damage: true,
        planted_damaged_node_keeps_stale_data: true,
        ..SimConfig::default()
    };
    let failure = caught_and_replayed(
        &base,
        PLANTED_SWEEP_SEEDS,
        &[
            "resurrection",
            "durability",
            "lost-write",
            "linearizability",
        ],
    );
    assert!(failure.stats.tables_quarantined > 0, "{:?}", failure.stats);
    assert!(
        failure.marks.get(enigma_engine::Mark::TombstonePurged) > 0,
        "the peers purged a tombstone"
    );
    seed_passes_without_the_bug(&failure);
}

/// An anti-entropy initiator whose disk is full cannot write what it
/// pulled from its peers. Going on as if it had, it records the range
/// repaired: a damaged range is served again (and its purging let go) on
/// data it never stored, and a quorum that meets it misses acknowledged
/// writes.
#[test]
fn an_initiator_that_counts_a_pull_it_could_not_write_is_caught() {
    let base = SimConfig {
        seed: 0x8_0000,
        keys: 50,
        always_stored_damage: true,
        always_full_disks: true,
        planted_repair_counts_unapplied_pull: true,
        ..SimConfig::default()
    };
    // Rarer than the others: the initiator's disk must be full just as it
    // pulls, and a read must meet what it missed before the next repair.
    let failure = caught_and_replayed(
        &base,
        2 * PLANTED_SWEEP_SEEDS,
        &[
            "linearizability",
            "lost-write",
            "final-state",
            "durability",
            "clock",
        ],
    );
    assert!(
        failure.marks.get(enigma_engine::Mark::DiskFull) > 0,
        "{:?}",
        failure.stats
    );
    seed_passes_without_the_bug(&failure);
}

/// A recovery that takes a rotted bit in a sealed log segment for the end
/// of that segment, and replays on with the next, starts without the
/// records after the damage: a replica that acknowledged them holds less
/// after the restart.
#[test]
fn a_recovery_that_skips_the_rest_of_a_damaged_sealed_segment_is_caught() {
    let base = SimConfig {
        seed: 0xda_2000,
        planted_sealed_segment_damage_skipped: true,
        ..SimConfig::default()
    };
    let failure = caught_and_replayed(&base, PLANTED_SWEEP_SEEDS, &["durability"]);
    assert!(
        failure.stats.sealed_segment_flips > 0,
        "{:?}",
        failure.stats
    );
    seed_passes_without_the_bug(&failure);
}

/// Seeds that draw the stored-damage family flip bits and misdirect writes
/// in stored tables, their nodes quarantine the tables they meet damaged,
/// and every run passes.
#[test]
fn stored_damage_fires_and_runs_pass() {
    let reports: Vec<_> = (0..FIRING_SWEEP_SEEDS)
        .map(|offset| {
            run(&SimConfig {
                seed: 0xda_1000 + offset,
                ..SimConfig::default()
            })
        })
        .collect();
    for r in &reports {
        assert!(
            r.passed(),
            "{}: {:?}",
            r.config.repro_command(),
            r.violations
        );
    }
    let total =
        |f: fn(&enigma_sim::RunStats) -> u64| -> u64 { reports.iter().map(|r| f(&r.stats)).sum() };
    assert!(
        reports.iter().any(|r| r.swarm.contains("stored_damage=on")),
        "no seed drew the family"
    );
    assert!(reports.iter().all(|r| r.swarm.contains("stored_damage=")));
    assert!(total(|s| s.stored_bit_flips) > 0, "no bit rotted");
    assert!(total(|s| s.misdirected_writes) > 0, "no write misdirected");
    assert!(
        total(|s| s.sealed_segment_flips) > 0,
        "no bit rotted in a sealed log segment"
    );
    assert!(
        total(|s| s.sealed_segment_misdirected_writes) > 0,
        "no write misdirected into a sealed log segment"
    );
    assert!(total(|s| s.tables_quarantined) > 0, "no table quarantined");
    assert!(
        total(|s| s.nodes_rebuilt) > 0,
        "no start refused by damage, so no node rebuilt"
    );
}

/// At `ALL` every replica must answer, so a node still refusing a damaged
/// range fails every operation: the heal phase waits until no node holds
/// unrepaired damage before the liveness phase begins (before it did not,
/// and `enigma sim --seed 0x900d1 --keys 20 --level ALL` burned its
/// liveness operations on a node its peers had not yet refilled).
#[test]
fn runs_at_all_repair_every_damaged_range_before_the_liveness_phase() {
    let base = SimConfig {
        seed: 0x9_0000,
        keys: 20,
        level: enigma_cluster::ConsistencyLevel::All,
        ..SimConfig::default()
    };
    all_passed(&enigma_sim::sweep(&base, 250, |_| {}));
}
