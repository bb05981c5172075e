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
    /// Client operations of every seed that completed `ok`.
    pub ops_ok: usize,
    /// Client operations of every seed that completed `fail`.
    pub ops_fail: usize,
    /// Client operations of every seed that completed `info` (or never).
    pub ops_info: usize,
}

/// Runs `count` seeds starting at `base.seed`, each with `base`'s other
/// settings; `on_failure` sees each failing run as it happens.
pub fn sweep(base: &SimConfig, count: u64, mut on_failure: impl FnMut(&RunReport)) -> SweepReport {
    let mut report = SweepReport::default();
    for offset in 0..count {
        let config = SimConfig {
            seed: base.seed.wrapping_add(offset),
            ..base.clone()
        };
        let run = run(&config);
        report.ops_ok += run.stats.ops_ok;
        report.ops_fail += run.stats.ops_fail;
        report.ops_info += run.stats.ops_info;
        if run.passed() {
            report.passed += 1;
        } else {
            on_failure(&run);
            report.failures.push(run);
        }
    }
    report
}
