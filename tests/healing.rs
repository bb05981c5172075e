//! The self-healing mechanisms (hinted handoff, anti-entropy, the repair
//! gate on tombstone purging, failure detection), each proven in the
//! simulator: a bounded sweep with the mechanism's planted bug finds a
//! failing seed of the property the mechanism protects, the seed replays
//! bit for bit, and the same sweep without the bug passes.

mod support;

use enigma_sim::{run, sweep, SimConfig};
use support::planted::{caught_and_replayed, passes_without_planted_bugs};

/// Seeds a planted bug's sweep may take before the test gives up.
const PLANTED_SWEEP_SEEDS: u64 = 300;
/// Seeds of the matching sweep without the bug.
const CONTROL_SWEEP_SEEDS: u64 = 100;

#[test]
fn hints_alone_converge_and_a_hint_deleted_before_its_acknowledgement_is_caught() {
    let base = SimConfig {
        seed: 0x4141_0000,
        anti_entropy: false,
        crashes: false,
        planted_hint_deleted_on_send: true,
        ..SimConfig::default()
    };
    let failure = caught_and_replayed(&base, PLANTED_SWEEP_SEEDS, &["liveness"]);
    assert!(
        failure.stats.hints_stored > 0,
        "the failing run stored no hint"
    );
    passes_without_planted_bugs(&base, CONTROL_SWEEP_SEEDS);
}

#[test]
fn anti_entropy_alone_converges_and_one_way_streaming_is_caught() {
    let base = SimConfig {
        seed: 0x4145_0000,
        hinted_handoff: false,
        planted_anti_entropy_one_way: true,
        ..SimConfig::default()
    };
    let failure = caught_and_replayed(&base, PLANTED_SWEEP_SEEDS, &["liveness"]);
    assert_eq!(failure.stats.hints_stored, 0, "hints were off");
    passes_without_planted_bugs(&base, CONTROL_SWEEP_SEEDS);
}

#[test]
fn a_tombstone_purged_without_the_repair_gate_is_caught_as_a_resurrection() {
    let base = SimConfig {
        seed: 0x5055_0000,
        planted_purge_without_repair: true,
        ..SimConfig::default()
    };
    // The deleted value comes back: in the converged state, often first to
    // a client read that must see the delete (lost-write), or on a replica
    // that acknowledged the delete and holds the older value again once the
    // faults stop (durability), or to a QUORUM read after one that saw the
    // delete (linearizability).
    caught_and_replayed(
        &base,
        PLANTED_SWEEP_SEEDS,
        &[
            "resurrection",
            "lost-write",
            "durability",
            "linearizability",
        ],
    );
    passes_without_planted_bugs(&base, CONTROL_SWEEP_SEEDS);
}

#[test]
fn a_coordinator_that_waits_on_replicas_held_down_is_caught() {
    let base = SimConfig {
        seed: 0x4644_0000,
        planted_coordinator_ignores_failure_detector: true,
        ..SimConfig::default()
    };
    caught_and_replayed(&base, PLANTED_SWEEP_SEEDS, &["failure-detection"]);
    passes_without_planted_bugs(&base, CONTROL_SWEEP_SEEDS);
}

#[test]
fn runs_converge_on_their_own_and_say_how_fast() {
    let result = sweep(
        &SimConfig {
            seed: 0xc0_0000,
            ..SimConfig::default()
        },
        40,
        |_| {},
    );
    assert!(
        result.failures.is_empty(),
        "{:?}",
        result.failures.first().map(|f| &f.violations)
    );
    let converge = result.converge().expect("runs converged");
    assert!(converge.worst_nanos >= converge.median_nanos);
    // Some runs needed hints, some anti-entropy: both mechanisms worked.
    let mut hinted = 0;
    let mut streamed = 0;
    for seed in 0..40 {
        let report = run(&SimConfig {
            seed: 0xc0_0000 + seed,
            ..SimConfig::default()
        });
        hinted += report.stats.hints_replayed;
        streamed += report.stats.repair_keys_streamed;
        assert!(report.stats.converge_nanos.is_some());
    }
    assert!(hinted > 0, "no hint was ever replayed");
    assert!(streamed > 0, "anti-entropy never streamed a key");
}

#[test]
fn the_healing_switches_are_off_unless_asked_for() {
    let config = SimConfig::default();
    assert!(config.hinted_handoff && config.anti_entropy && config.crashes);
    assert!(!config.planted_any());
    assert!(
        SimConfig {
            anti_entropy: false,
            ..SimConfig::default()
        }
        .validate()
        .is_err(),
        "anti-entropy off with crashes on cannot converge"
    );
}
