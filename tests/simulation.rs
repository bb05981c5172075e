//! End-to-end simulation tests: whole clusters under faults, checked.

use enigma_sim::{run, sweep, SimConfig};

/// Seeds every CI run sweeps with the default configuration.
const CI_SWEEP_SEEDS: u64 = 300;

#[test]
fn the_same_seed_replays_with_the_same_digest_and_history() {
    for seed in 0..24 {
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

#[test]
fn a_default_sweep_passes_every_check() {
    let base = SimConfig {
        seed: 0x5eed_0000,
        ..SimConfig::default()
    };
    let result = sweep(&base, CI_SWEEP_SEEDS, |_| {});
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
    let failure = result
        .failures
        .first()
        .expect("a sweep with the planted bug found no failure");
    assert!(
        failure
            .violations
            .iter()
            .any(|v| v.property == "linearizability"),
        "the planted bug should break linearizability: {:?}",
        failure.violations
    );
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
    let report = run(&SimConfig {
        seed: 7,
        ..SimConfig::default()
    });
    assert!(report.passed(), "{:?}", report.violations);
}

#[test]
fn written_histories_read_back_with_the_same_verdict() {
    use enigma_checker::format::enigma::parse;
    for seed in 0..30 {
        let report = run(&SimConfig {
            seed,
            ..SimConfig::default()
        });
        let parsed = parse(&report.history_json_lines())
            .unwrap_or_else(|e| panic!("seed {seed}: the written history does not parse: {e:?}"));
        assert!(
            parsed.check(&Default::default()).is_linearizable(),
            "seed {seed}"
        );
    }
    let buggy = SimConfig {
        planted_bug: true,
        ..SimConfig::default()
    };
    let failure = sweep(&buggy, 200, |_| {})
        .failures
        .into_iter()
        .next()
        .expect("a failure");
    let parsed = parse(&failure.history_json_lines()).expect("the written history parses");
    assert!(!parsed.check(&Default::default()).is_linearizable());
}
