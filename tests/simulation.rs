//! End-to-end simulation tests: whole clusters under faults, checked.

use enigma_checker::format::enigma::{parse_assembled, parse_events, run_line, write_events};
use enigma_checker::format::enigma::{EventKind, EventValue, Function};
use enigma_checker::{
    check_promises, Check, CheckOptions, PromiseInput, PromiseReport, PromiseVerdict, Status,
};
use enigma_sim::marks::{self, CI_SWEEP_SEEDS, CI_SWEEP_START};
use enigma_sim::{run, sweep, SimConfig};

mod support;

/// Seeds a planted bug's sweep may take before the checks must catch it.
const PLANTED_SWEEP_SEEDS: u64 = 200;
/// Seeds of the stale-answers sweep (a rarer catch: only seeds with crash
/// loops bring it about).
const STALE_ANSWERS_SWEEP_SEEDS: u64 = 300;

/// How often each fault family fired over `reports`, by name.
fn families_fired(reports: &[enigma_sim::RunReport]) -> Vec<(&'static str, u64)> {
    let total =
        |f: fn(&enigma_sim::RunStats) -> u64| -> u64 { reports.iter().map(|r| f(&r.stats)).sum() };
    vec![
        ("full disks", total(|s| s.disk_full_windows)),
        ("buggify firings", total(|s| s.buggify_fired)),
        ("crashes", total(|s| s.crashes)),
        ("crashes before a sync", total(|s| s.crashes_before_sync)),
        ("crashes during a sync", total(|s| s.crashes_during_sync)),
        (
            "crashes inside a background job",
            total(|s| s.crashes_in_background_job),
        ),
        ("partitions", total(|s| s.partitions)),
        ("bridge partitions", total(|s| s.bridge_partitions)),
        ("asymmetric partitions", total(|s| s.asymmetric_partitions)),
        ("pauses", total(|s| s.pauses)),
        ("swizzles", total(|s| s.swizzles)),
        ("clock jumps", total(|s| s.clock_jumps)),
        ("bad-read windows", total(|s| s.read_fault_windows)),
        ("storage errors met", total(|s| s.storage_errors)),
        ("failed syncs", total(|s| s.sync_failures)),
        ("partial writes", total(|s| s.partial_writes)),
        ("stale messages", total(|s| s.stale_messages)),
        ("crash-loop restarts", total(|s| s.crash_loop_restarts)),
        (
            "bits rotted in stored tables",
            total(|s| s.stored_bit_flips),
        ),
        ("misdirected writes", total(|s| s.misdirected_writes)),
        (
            "bits rotted in sealed log segments",
            total(|s| s.sealed_segment_flips),
        ),
        (
            "misdirected writes into sealed log segments",
            total(|s| s.sealed_segment_misdirected_writes),
        ),
        ("tables quarantined", total(|s| s.tables_quarantined)),
        (
            "reads ending inside a frame",
            total(|s| s.reads_ending_inside_a_frame),
        ),
        (
            "reads of several frames",
            total(|s| s.reads_of_several_frames),
        ),
    ]
}

#[test]
fn the_same_seed_replays_with_the_same_digest_and_history() {
    // Seeds across every family: each draws its own mix, and together the
    // first 60 fire every family (asserted below).
    let mut reports = Vec::new();
    for seed in 0..60 {
        let config = SimConfig {
            seed,
            ..SimConfig::default()
        };
        let (first, second) = (run(&config), run(&config));
        assert_eq!(
            first.digest, second.digest,
            "seed {seed} is not deterministic"
        );
        assert_eq!(
            first.history, second.history,
            "seed {seed} recorded different histories"
        );
        assert_eq!(
            first.stats, second.stats,
            "seed {seed} counted different events"
        );
        assert_eq!(first.marks, second.marks, "seed {seed} hit different marks");
        reports.push(first);
    }
    for (family, count) in families_fired(&reports) {
        assert!(count > 0, "{family} never happened in the replayed seeds");
    }
}

#[test]
fn different_seeds_give_different_runs() {
    let digests: std::collections::BTreeSet<u64> = (0..24)
        .map(|seed| {
            run(&SimConfig {
                seed,
                ..SimConfig::default()
            })
            .digest
        })
        .collect();
    assert_eq!(digests.len(), 24, "the digest does not tell runs apart");
}

/// The CI sweep: every seed passes every check, and every mark of the
/// committed list ([`marks::REQUIRED`]) was hit, so that a change which
/// makes one of those paths unreachable in simulation is noticed.
#[test]
fn a_default_sweep_passes_every_check_and_hits_the_required_marks() {
    let base = SimConfig {
        seed: CI_SWEEP_START,
        ..SimConfig::default()
    };
    let result = sweep(&base, CI_SWEEP_SEEDS, |_| {});
    for line in result.marks.table() {
        println!("{line}");
    }
    let missing = result.marks.missing(marks::REQUIRED);
    assert!(
        missing.is_empty(),
        "required marks never hit in {CI_SWEEP_SEEDS} seeds: {} (a change made their path unreachable in simulation, or rarer: see docs/FAULTS.md, \"Coverage marks\")",
        marks::names(&missing)
    );
    let failures: Vec<String> = result
        .failures
        .iter()
        .map(|r| {
            let details: Vec<String> = r
                .violations
                .iter()
                .map(|v| format!("{}: {}", v.property, v.details))
                .collect();
            format!(
                "repro: {}\n{}",
                r.config.repro_command(),
                details.join("\n")
            )
        })
        .collect();
    assert!(
        failures.is_empty(),
        "{} seeds failed:\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}

#[test]
fn every_level_and_a_larger_cluster_pass() {
    for (nodes, rf, level) in [
        (3, 3, "ONE"),
        (3, 3, "ALL"),
        (5, 3, "QUORUM"),
        (1, 1, "ONE"),
    ] {
        let base = SimConfig {
            seed: 0xfeed,
            nodes,
            replication_factor: rf,
            level: level.parse().unwrap(),
            ..SimConfig::default()
        };
        let result = sweep(&base, 40, |_| {});
        assert!(
            result.failures.is_empty(),
            "{nodes} nodes, rf {rf}, {level}: first failure: {:?}",
            result
                .failures
                .first()
                .map(|r| (r.config.repro_command(), r.violations.clone()))
        );
    }
}

#[test]
fn runs_do_work_and_faults_strike() {
    let reports: Vec<_> = (0..20)
        .map(|seed| {
            run(&SimConfig {
                seed,
                ..SimConfig::default()
            })
        })
        .collect();
    let ok: usize = reports.iter().map(|r| r.stats.ops_ok).sum();
    let retries: u64 = reports.iter().map(|r| r.stats.client_retries).sum();
    assert!(retries > 0, "no client ever tried another coordinator");
    let crashes: u64 = reports.iter().map(|r| r.stats.crashes).sum();
    let partitions: u64 = reports.iter().map(|r| r.stats.partitions).sum();
    let unknown: usize = reports.iter().map(|r| r.stats.ops_info).sum();
    assert!(
        ok > 20 * SimConfig::default().ops / 2,
        "too few operations succeeded: {ok}"
    );
    assert!(
        crashes > 0 && partitions > 0,
        "no faults injected: {crashes} crashes, {partitions} partitions"
    );
    assert!(unknown > 0, "faults never left an operation in doubt");
}

#[test]
fn the_planted_bug_is_found_and_its_seed_replays() {
    let base = SimConfig {
        planted_bug: true,
        ..SimConfig::default()
    };
    let result = sweep(&base, 200, |_| {});
    assert!(
        !result.failures.is_empty(),
        "a sweep with the planted bug found no failure"
    );
    // Runs with clock faults promise no linearizability; the others show
    // the bug as a linearizability violation.
    let failure = result
        .failures
        .iter()
        .find(|r| r.violations.iter().any(|v| v.property == "linearizability"))
        .expect("the planted bug should break linearizability in some run");
    let replay = run(&failure.config);
    assert!(!replay.passed(), "the failing seed passed on replay");
    assert_eq!(
        replay.digest, failure.digest,
        "the failing seed replayed differently"
    );
    assert_eq!(replay.violations, failure.violations);
}

#[test]
fn the_planted_bug_is_off_unless_asked_for() {
    assert!(!SimConfig::default().planted_bug);
    assert!(!SimConfig::default().planted_any());
    assert_eq!(
        SimConfig::default().without_planted_bugs(),
        SimConfig::default()
    );
    let report = run(&SimConfig {
        seed: 7,
        ..SimConfig::default()
    });
    assert!(report.passed(), "{:?}", report.violations);
}

/// The checks a history file gets from `enigma check`: the run's levels,
/// versions and facts as written, no replica states.
fn check_file(text: &str) -> PromiseReport {
    let a = parse_assembled(text).expect("the simulator writes valid history files");
    let run = a.run.expect("the simulator writes a run line");
    check_promises(
        &PromiseInput {
            history: &a.history,
            levels: &a.levels,
            versions: &a.versions,
            facts: run.facts,
            replicas: None,
        },
        &CheckOptions::default(),
        &|| false,
    )
}

#[test]
fn written_histories_read_back_with_the_same_verdict() {
    use enigma_checker::format::enigma::parse;
    for seed in 0..30 {
        let report = run(&SimConfig {
            seed,
            ..SimConfig::default()
        });
        let text = report.history_json_lines();
        let parsed = parse(&text)
            .unwrap_or_else(|e| panic!("seed {seed}: the written history does not parse: {e:?}"));
        let skewed = report.facts.clock_skew == Some(true);
        assert!(
            skewed || parsed.check(&Default::default()).is_linearizable(),
            "seed {seed}"
        );
        // Every check but convergence (replica states are not in the file)
        // comes out the same from the file as in the run.
        let from_file = check_file(&text);
        for check in Check::ALL {
            if check == Check::Convergence {
                continue;
            }
            assert_eq!(
                from_file.result(check),
                report.promises.result(check),
                "seed {seed}: {check} differs between the run and its file"
            );
        }
        let expected = if skewed {
            PromiseVerdict::PromisesKept
        } else {
            PromiseVerdict::Linearizable
        };
        assert_eq!(from_file.verdict(), expected, "seed {seed}");
    }
    let buggy = SimConfig {
        planted_bug: true,
        ..SimConfig::default()
    };
    let failure = sweep(&buggy, 200, |_| {})
        .failures
        .into_iter()
        .find(|r| r.violations.iter().any(|v| v.property == "linearizability"))
        .expect("a failure");
    let parsed = parse(&failure.history_json_lines()).expect("the written history parses");
    assert!(!parsed.check(&Default::default()).is_linearizable());
}

#[test]
fn flushes_and_compactions_happen_and_nodes_crash_around_them() {
    let reports: Vec<_> = (0..20)
        .map(|seed| {
            run(&SimConfig {
                seed,
                ..SimConfig::default()
            })
        })
        .collect();
    let flushed = reports
        .iter()
        .filter(|r| r.stats.tables_flushed > 0)
        .count();
    let compacted = reports.iter().filter(|r| r.stats.compactions > 0).count();
    let crashed_with_tables = reports
        .iter()
        .filter(|r| r.stats.tables_flushed > 0 && r.stats.crashes > 0)
        .count();
    assert!(
        flushed >= 10,
        "only {flushed} of 20 runs flushed a memtable"
    );
    assert!(compacted >= 5, "only {compacted} of 20 runs compacted");
    assert!(
        crashed_with_tables >= 3,
        "only {crashed_with_tables} runs crashed nodes that had flushed"
    );
    assert!(reports.iter().all(|r| r.passed()));
    assert!(reports.iter().all(|r| r.stats.writes_acknowledged > 0));
}

#[test]
fn skewed_runs_are_held_to_the_lost_write_and_session_checks() {
    for seed in 0..30 {
        let report = run(&SimConfig {
            seed,
            clock_skew_max_ms: 200,
            ..SimConfig::default()
        });
        assert!(report.passed(), "seed {seed}: {:?}", report.violations);
        let p = &report.promises;
        assert_eq!(
            p.result(Check::Linearizability).status,
            Status::NotApplicable,
            "seed {seed}: QUORUM under skew promises no linearizability"
        );
        for check in [
            Check::LostWrite,
            Check::ReadYourWrites,
            Check::MonotonicReads,
        ] {
            assert_eq!(
                p.result(check).status,
                Status::Passed,
                "seed {seed}: {check}"
            );
        }
        assert_eq!(p.verdict(), PromiseVerdict::PromisesKept);
    }
}

/// A simulator history under skew, with one read made to return nothing
/// (version 0) after an acknowledged write of its key: the lost-write check
/// names the key and a write, where linearizability is not even promised.
#[test]
fn a_lost_write_in_a_skewed_sim_history_is_detected() {
    let report = run(&SimConfig {
        seed: 11,
        clock_skew_max_ms: 200,
        faults: false,
        ..SimConfig::default()
    });
    assert!(report.passed(), "{:?}", report.violations);
    let text = report.history_json_lines();
    assert_eq!(check_file(&text).verdict(), PromiseVerdict::PromisesKept);
    let mut events = parse_events(&text).expect("valid");
    // The first acknowledged write, then the last read of its key.
    let write = events
        .iter()
        .find(|e| e.kind == EventKind::Ok && e.f == Function::Write && e.value != EventValue::Nil)
        .expect("a run acknowledges writes")
        .clone();
    let read = events
        .iter_mut()
        .rev()
        .find(|e| e.kind == EventKind::Ok && e.f == Function::Read && e.key == write.key)
        .expect("the repair pass reads every key");
    assert!(read.time > write.time);
    read.value = EventValue::Nil;
    read.timestamp = Some(0);
    read.writer = Some(0);
    let run_facts = parse_assembled(&text)
        .expect("valid")
        .run
        .expect("run line");
    let tampered = format!("{}\n{}", run_line(&run_facts), write_events(&events));
    let checked = check_file(&tampered);
    assert_eq!(
        checked.verdict(),
        PromiseVerdict::PromiseBroken,
        "{checked}"
    );
    let lost = checked.result(Check::LostWrite);
    assert_eq!(lost.status, Status::Violated);
    assert!(
        lost.note
            .contains(&format!("key {:?}: acknowledged write was lost", write.key)),
        "{}",
        lost.note
    );
    assert!(lost.note.contains(" write "), "{}", lost.note);
    assert_eq!(
        checked.result(Check::Linearizability).status,
        Status::NotApplicable
    );
}

/// With RF 3, clients never notice one replica losing writes it
/// acknowledged: the other replicas answer. The replica durability check
/// does, naming the node, the key and the version.
#[test]
fn a_disk_that_loses_synced_writes_is_caught_by_the_durability_check() {
    let base = SimConfig {
        planted_disk_loses_synced_writes: true,
        ..SimConfig::default()
    };
    let result = sweep(&base, 100, |_| {});
    let durability: Vec<_> = result
        .failures
        .iter()
        .filter(|r| r.violations.iter().any(|v| v.property == "durability"))
        .collect();
    let first = durability
        .first()
        .expect("no run caught a replica losing acknowledged writes");
    let v = first
        .violations
        .iter()
        .find(|v| v.property == "durability")
        .expect("filtered above");
    assert!(
        v.details.starts_with('n') && v.details.contains(" acknowledged k"),
        "{}",
        v.details
    );
    assert!(v.details.contains("at version hlc "), "{}", v.details);
    assert!(v.details.contains("after a restart holds"), "{}", v.details);
    // In some of those runs no client saw anything wrong: replication hid
    // the loss, only the durability check saw it.
    assert!(
        durability
            .iter()
            .any(|r| r.violations.iter().all(|v| v.property == "durability")),
        "every run that lost writes also failed a client-visible check"
    );
    let replay = run(&first.config);
    assert_eq!(replay.digest, first.digest);
    assert_eq!(replay.violations, first.violations);
    // The same seeds with an honest disk pass.
    let honest = run(&SimConfig {
        planted_disk_loses_synced_writes: false,
        ..first.config.clone()
    });
    assert!(honest.passed(), "{:?}", honest.violations);
}

/// A planted bug must be caught within a bounded sweep, and the catching
/// seed must replay with the same digest and the same violations.
fn caught_and_replayed(base: SimConfig, property: &str) -> enigma_sim::RunReport {
    caught_and_replayed_by(base, &[property])
}

/// As [`caught_and_replayed`], by a violation of any of `properties`.
fn caught_and_replayed_by(base: SimConfig, properties: &[&str]) -> enigma_sim::RunReport {
    caught_within(base, properties, PLANTED_SWEEP_SEEDS)
}

/// As [`caught_and_replayed_by`], within `seeds` seeds.
fn caught_within(base: SimConfig, properties: &[&str], seeds: u64) -> enigma_sim::RunReport {
    let result = sweep(&base, seeds, |_| {});
    let failure = result
        .failures
        .into_iter()
        .find(|r| {
            r.violations
                .iter()
                .any(|v| properties.contains(&v.property))
        })
        .unwrap_or_else(|| panic!("{seeds} seeds never violated {properties:?}"));
    let replay = run(&failure.config);
    assert_eq!(
        replay.digest, failure.digest,
        "the catching seed replayed differently"
    );
    assert_eq!(replay.violations, failure.violations);
    support::planted::seed_passes_without_the_bug(&failure);
    failure
}

/// A coordinator that ignores the boot generation in the answers it gets
/// counts acknowledgements and replies meant for its previous incarnation
/// toward new operations that reuse their sequence numbers: a write is
/// acknowledged by replicas that never took it, a read answers another
/// operation's value. It takes a stale answer meeting a pending operation
/// with its sequence number before that operation's own replicas answer:
/// the crash loops of the default mix bring it about (incarnations that
/// live a few operations, on slow links, so answers meant for one reach the
/// next). A rarer catch than most (about one seed in 70 from 0x5eed0000),
/// so its sweep is longer; it stops at the first catch.
#[test]
fn a_coordinator_counting_answers_of_its_previous_incarnation_is_caught() {
    let base = SimConfig {
        seed: 0x5eed_0000,
        planted_coordinator_counts_stale_answers: true,
        ..SimConfig::default()
    };
    let failure = support::planted::caught_and_replayed(
        &base,
        STALE_ANSWERS_SWEEP_SEEDS,
        &["linearizability", "lost-write"],
    );
    assert!(
        failure.stats.stale_messages > 0 && failure.stats.crash_loop_restarts > 0,
        "{:?}",
        failure.stats
    );
    support::planted::seed_passes_without_the_bug(&failure);
}

/// A coordinator that counts acknowledgements as they arrive, not
/// replicas, takes a duplicated one (the network's duplicates, or a
/// replica's acknowledgement again after a full disk took it back) for two
/// replicas: a `QUORUM` write succeeds on one. With five nodes the
/// coordinator is often not a replica, so its own write does not hide it.
#[test]
fn a_coordinator_counting_a_duplicated_acknowledgement_twice_is_caught() {
    caught_and_replayed_by(
        SimConfig {
            nodes: 5,
            planted_coordinator_counts_duplicate_acks: true,
            ..SimConfig::default()
        },
        &["linearizability", "lost-write"],
    );
}

/// A frame reader that drops what followed a frame in its buffer loses the
/// start of the next frame whenever frames arrive in pieces: the stream no
/// longer decodes.
#[test]
fn a_frame_reader_that_drops_the_rest_of_its_buffer_is_caught() {
    let failure = caught_and_replayed(
        SimConfig {
            planted_frame_reader_drops_rest: true,
            ..SimConfig::default()
        },
        "integrity",
    );
    assert!(
        failure.stats.reads_ending_inside_a_frame > 0,
        "{:?}",
        failure.stats
    );
}

/// A replica that takes a failed read of its storage for a key it does not
/// hold answers "absent" where it acknowledged a write; with a replica that
/// missed the write, a quorum read then misses it too. With 20 keys a
/// stale read is not at once hidden by a newer write of its key.
#[test]
fn a_replica_answering_absent_on_a_read_error_is_caught() {
    let failure = caught_and_replayed_by(
        SimConfig {
            planted_replica_answers_absent_on_read_error: true,
            keys: 20,
            ..SimConfig::default()
        },
        &["linearizability", "lost-write"],
    );
    assert!(failure.stats.read_fault_windows > 0, "{:?}", failure.stats);
}

/// A driver that lets a batch's acknowledgements leave when its sync starts
/// loses them when the node crashes during the sync.
#[test]
fn releasing_a_batch_before_its_sync_completes_is_caught() {
    let failure = caught_and_replayed(
        SimConfig {
            planted_release_before_sync: true,
            ..SimConfig::default()
        },
        "durability",
    );
    assert!(failure.stats.crashes_during_sync > 0, "{:?}", failure.stats);
}

/// An engine that deletes a flushed memtable's log segments before the
/// manifest edit naming its table is durable loses acknowledged writes
/// when a crash lands between those two steps of the flush (or cannot
/// start again: a log segment is missing).
#[test]
fn deleting_the_log_before_the_manifest_edit_is_caught() {
    let failure = caught_and_replayed_by(
        SimConfig {
            planted_flush_removes_log_before_manifest_edit: true,
            ..SimConfig::default()
        },
        &["durability", "recovery"],
    );
    // The bug loses writes only through a crash: one between the two
    // steps, or one while a job that failed after deleting the log (a bad
    // read opening the table) waits to be tried again.
    assert!(failure.stats.crashes > 0, "{:?}", failure.stats);
}

/// A node that acknowledges a batch whose sync failed loses what it
/// acknowledged once it restarts.
#[test]
fn acknowledging_a_batch_whose_sync_failed_is_caught() {
    let failure = caught_and_replayed(
        SimConfig {
            planted_ack_after_failed_sync: true,
            ..SimConfig::default()
        },
        "durability",
    );
    assert!(failure.stats.sync_failures > 0, "{:?}", failure.stats);
}

/// An engine that drops a frozen memtable before the table it flushed is
/// open loses versions from its read path when a bad read strikes that
/// open (the bug the bad-read windows found in the engine). With 20 keys a
/// lost version is not at once hidden by a newer write of its key.
#[test]
fn a_flush_that_drops_its_memtable_on_a_bad_read_is_caught() {
    let failure = caught_and_replayed_by(
        SimConfig {
            planted_flush_drops_memtable: true,
            keys: 20,
            ..SimConfig::default()
        },
        // The replica's own durability check sees the write it dropped
        // first (since flushes run in steps: the 10th seed), the clients'
        // lost-write check when no replica kept it.
        &["durability", "lost-write"],
    );
    assert!(failure.stats.read_fault_windows > 0, "{:?}", failure.stats);
}

/// A coordinator that answers with the data it has, not the newest version
/// a digest announced, returns a stale value after a write it missed: a
/// quorum read that goes back in time.
#[test]
fn a_read_that_trusts_its_data_over_newer_digests_is_caught() {
    caught_and_replayed(
        SimConfig {
            planted_read_trusts_data_over_digests: true,
            ..SimConfig::default()
        },
        "linearizability",
    );
}

/// Every fault family fires in a small sweep of the default mix, and every
/// seed passes.
#[test]
fn every_fault_family_fires_and_runs_pass() {
    let reports: Vec<_> = (0..60)
        .map(|seed| {
            run(&SimConfig {
                seed: 0xfa_0000 + seed,
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
    for (family, count) in families_fired(&reports) {
        assert!(count > 0, "{family} never happened in 60 seeds");
    }
    // Every table codec is drawn, for flushes and for compactions, and
    // those runs pass with the rest.
    for codecs in ["codecs=lz4/", "codecs=none/", "/zstd ", "/lz4 ", "/none "] {
        assert!(
            reports
                .iter()
                .any(|r| format!("{} ", r.swarm).contains(codecs)),
            "no run of 60 drew {codecs}"
        );
    }
    // Runs with clock faults say so: QUORUM then promises no
    // linearizability.
    assert!(reports.iter().any(|r| r.facts.clock_skew == Some(true)));
    assert!(reports.iter().any(|r| r.facts.clock_skew == Some(false)));
    for r in reports.iter().filter(|r| r.facts.clock_skew == Some(true)) {
        assert_eq!(
            r.promises.result(Check::Linearizability).status,
            Status::NotApplicable
        );
    }
}

/// Each shaped sweep ([`marks::SHAPES`]: run shapes that reach paths the
/// default mix reaches rarely) passes every check and hits its marks.
#[test]
fn shaped_sweeps_pass_and_hit_their_marks() {
    for shape in marks::SHAPES {
        let result = sweep(&shape.config(CI_SWEEP_START), shape.seeds, |_| {});
        let failed: Vec<String> = result
            .failures
            .iter()
            .map(|r| {
                let properties: Vec<&str> = r.violations.iter().map(|v| v.property).collect();
                format!("{} ({})", r.config.repro_command(), properties.join(", "))
            })
            .collect();
        assert!(
            failed.is_empty(),
            "shape {}: {} seeds failed:\n{}",
            shape.name,
            failed.len(),
            failed.join("\n")
        );
        let missing = result.marks.missing(shape.required);
        assert!(
            missing.is_empty(),
            "shape {}: marks never hit in {} seeds: {}",
            shape.name,
            shape.seeds,
            marks::names(&missing)
        );
    }
}
