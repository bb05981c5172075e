//! Seed sweeps: many runs, each failure with the line that replays it.

use crate::config::SimConfig;
use crate::run::{run, RunReport};

/// The result of a sweep.
#[derive(Debug, Clone, Default)]
pub struct SweepReport {
    /// Seeds that passed.
    pub passed: usize,
    /// Reports of the seeds that failed, in seed order.
    pub failures: Vec<RunReport>,
    /// How long the runs that converged took to, after their faults
    /// stopped (`None`: no run converged).
    pub converge: Option<ConvergeTimes>,
}

/// Convergence times over a sweep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvergeTimes {
    /// The median, virtual nanoseconds.
    pub median_nanos: u64,
    /// The longest.
    pub worst_nanos: u64,
    /// The seed that took longest.
    pub worst_seed: u64,
}

/// Runs `count` seeds starting at `base.seed`, each with `base`'s other
/// settings; `on_failure` sees each failing run as it happens.
pub fn sweep(base: &SimConfig, count: u64, mut on_failure: impl FnMut(&RunReport)) -> SweepReport {
    let mut report = SweepReport::default();
    let mut times: Vec<(u64, u64)> = Vec::new();
    for offset in 0..count {
        let config = SimConfig {
            seed: base.seed.wrapping_add(offset),
            ..base.clone()
        };
        let run = run(&config);
        if let Some(nanos) = run.stats.converge_nanos {
            times.push((nanos, config.seed));
        }
        if run.passed() {
            report.passed += 1;
        } else {
            on_failure(&run);
            report.failures.push(run);
        }
    }
    if !times.is_empty() {
        times.sort_unstable();
        let (worst_nanos, worst_seed) = times[times.len() - 1];
        report.converge = Some(ConvergeTimes {
            median_nanos: times[times.len() / 2].0,
            worst_nanos,
            worst_seed,
        });
    }
    report
}
