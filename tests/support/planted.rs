//! Sweeps for planted bugs: the first failing seed from a base, held to the
//! violation the bug must cause and replayed bit for bit; and the control
//! sweep of the same runs without any planted bug.

use enigma_sim::{run, sweep, RunReport, SimConfig, SweepReport};

/// How the simulator words a check that could not decide within its budget
/// (sim/src/run/checks.rs).
const UNDECIDED: &str = "checker could not decide";

/// Runs seeds from `base`'s seed until one fails with a decided violation,
/// at most `seeds`; asserts it is one of `properties` and that its seed
/// replays to the same digest and violations. A run whose only violations
/// are checks that ran out of budget is not a catch: the search goes on.
pub fn caught_and_replayed(base: &SimConfig, seeds: u64, properties: &[&str]) -> RunReport {
    let failure = (0..seeds)
        .map(|offset| {
            run(&SimConfig {
                seed: base.seed.wrapping_add(offset),
                ..base.clone()
            })
        })
        .find(|report| {
            report
                .violations
                .iter()
                .any(|v| !v.details.starts_with(UNDECIDED))
        })
        .unwrap_or_else(|| {
            panic!(
                "{seeds} seeds from {:#x} with the planted bug found no decided violation",
                base.seed
            )
        });
    eprintln!(
        "caught at seed {:#x} ({} seeds): {:?}",
        failure.config.seed,
        failure.config.seed.wrapping_sub(base.seed) + 1,
        failure
            .violations
            .iter()
            .map(|v| v.property)
            .collect::<Vec<_>>()
    );
    assert!(
        failure
            .violations
            .iter()
            .any(|v| { properties.contains(&v.property) && !v.details.starts_with(UNDECIDED) }),
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

/// The run of `failure`'s seed without any planted bug passes: the bug, not
/// the seed, made it fail.
pub fn seed_passes_without_the_bug(failure: &RunReport) {
    let honest = run(&failure.config.without_planted_bugs());
    assert!(
        honest.passed(),
        "the seed fails without the bug: {:?}",
        honest.violations
    );
}

/// The same `seeds` runs as `base`, without any planted bug, all pass.
pub fn passes_without_planted_bugs(base: &SimConfig, seeds: u64) {
    all_passed(&sweep(&base.without_planted_bugs(), seeds, |_| {}));
}

/// Every run of the sweep passed; otherwise fails naming each failing
/// run's repro line and violations.
pub fn all_passed(result: &SweepReport) {
    let failures: Vec<String> = result
        .failures
        .iter()
        .map(|r| format!("{}: {:?}", r.config.repro_command(), r.violations))
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
