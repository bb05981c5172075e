//! Seed sweeps: many runs, each failure with the line that replays it.

use std::collections::BTreeMap;

use crate::config::SimConfig;
use crate::marks::MarkTally;
use crate::run::{run, RunReport};

/// The result of a sweep.
#[derive(Debug, Clone, Default)]
pub struct SweepReport {
    /// Seeds that passed.
    pub passed: usize,
    /// Reports of the seeds that failed, in the order they were added.
    pub failures: Vec<RunReport>,
    /// Client operations of every seed that completed `ok`.
    pub ops_ok: usize,
    /// Client operations of every seed that completed `fail`.
    pub ops_fail: usize,
    /// Client operations of every seed that completed `info` (or never).
    pub ops_info: usize,
    /// `(virtual nanoseconds, seed)` of each run that converged after its
    /// faults stopped.
    converge_times: Vec<(u64, u64)>,
    /// Uncontended `SERIAL` compare-and-sets of every seed, by the Paxos
    /// messages each caused.
    pub paxos_cas_messages: BTreeMap<u32, u64>,
    /// The same, by round trips.
    pub paxos_cas_round_trips: BTreeMap<u32, u64>,
    /// Coverage marks over every seed: hits, and seeds that hit each.
    pub marks: MarkTally,
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

impl SweepReport {
    /// Counts one run.
    pub fn add(&mut self, run: RunReport) {
        self.ops_ok += run.stats.ops_ok;
        self.ops_fail += run.stats.ops_fail;
        self.ops_info += run.stats.ops_info;
        if let Some(nanos) = run.stats.converge_nanos {
            self.converge_times.push((nanos, run.config.seed));
        }
        merge(&mut self.paxos_cas_messages, &run.stats.paxos_cas_messages);
        merge(
            &mut self.paxos_cas_round_trips,
            &run.stats.paxos_cas_round_trips,
        );
        self.marks.add(&run.marks);
        if run.passed() {
            self.passed += 1;
        } else {
            self.failures.push(run);
        }
    }

    /// Adds the runs another part of the sweep counted (a sweep split
    /// across threads).
    pub fn absorb(&mut self, other: SweepReport) {
        self.passed += other.passed;
        self.failures.extend(other.failures);
        self.ops_ok += other.ops_ok;
        self.ops_fail += other.ops_fail;
        self.ops_info += other.ops_info;
        self.converge_times.extend(other.converge_times);
        merge(&mut self.paxos_cas_messages, &other.paxos_cas_messages);
        merge(
            &mut self.paxos_cas_round_trips,
            &other.paxos_cas_round_trips,
        );
        self.marks.absorb(&other.marks);
    }

    /// How long the runs that converged took to, after their faults
    /// stopped (`None`: no run converged). Ties on time go to the lower
    /// seed, so the answer does not depend on the order runs were added.
    pub fn converge(&self) -> Option<ConvergeTimes> {
        let mut times = self.converge_times.clone();
        times.sort_unstable();
        let &(worst_nanos, _) = times.last()?;
        let worst_seed = times
            .iter()
            .filter(|(nanos, _)| *nanos == worst_nanos)
            .map(|&(_, seed)| seed)
            .min()?;
        Some(ConvergeTimes {
            median_nanos: times[times.len() / 2].0,
            worst_nanos,
            worst_seed,
        })
    }
}

/// Adds histogram `more` into `into`.
fn merge(into: &mut BTreeMap<u32, u64>, more: &BTreeMap<u32, u64>) {
    for (&value, &count) in more {
        *into.entry(value).or_insert(0) += count;
    }
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
        if !run.passed() {
            on_failure(&run);
        }
        report.add(run);
    }
    report
}
