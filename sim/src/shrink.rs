//! Shrinking: from a failing run to a smaller run that fails with the same
//! property.
//!
//! The seed run's schedule ([`crate::schedule`]) is written down, then
//! candidates smaller than the best failing schedule so far are replayed
//! ([`crate::run::run_scheduled`]); a candidate that still fails with the
//! property replaces the best. The steps, repeated while one helps and the
//! budget of runs lasts:
//!
//! 1. what follows the faults: no wait for the replicas to converge (the
//!    liveness phase, if any, at once, then the end, without the final
//!    convergence checks), and a shorter liveness phase or none;
//! 2. the ends: the fewest leading entries that still fail, then the most
//!    entries dropped from the front, each found by bisection (a dozen
//!    runs where chunks would cost one run per chunk);
//! 3. time: the faults stop right after the last entry, quiet stretches
//!    between entries are cut short, the stretch before the first entry is
//!    cut by 7/8, 3/4 or 1/2, and the schedule is squeezed (every time
//!    halved) while the failure persists;
//! 4. whole kinds of entries: every fault, every operation on one key, every
//!    operation of one client;
//! 5. entries (faults and operations) removed in chunks, halves first, then
//!    quarters, down to single entries (delta debugging), and time again;
//! 6. keys and clients: those no entry uses are dropped, the rest
//!    renumbered.
//!
//! Every candidate is a new draw of everything the schedule does not fix
//! (message latencies and fates, batch windows), so failing is not
//! monotonic in what is removed: the steps look for a smaller failing run,
//! not the smallest.
//!
//! Every candidate is a deterministic run, so the shrunk schedule replays
//! to the same failure: `enigma sim --seed S --schedule FILE`.

use crate::config::SimConfig;
use crate::run::{run_schedule_recorded, run_scheduled, RunReport};
use crate::schedule::{Action, Schedule};

/// Runs a shrink may make when the caller names no budget.
pub const SHRINK_BUDGET_DEFAULT: usize = 200;

/// Longest quiet stretches between entries the shrinker tries, shortest
/// first.
const GAP_CAPS_NANOS: [u64; 3] = [50_000_000, 200_000_000, 1_000_000_000];

/// `schedule` with every stretch between two entries (before the first,
/// and from the last to the end of the faults) cut to at most `cap`.
fn capped_gaps(schedule: &Schedule, cap: u64) -> Schedule {
    let mut capped = schedule.clone();
    let (mut was, mut now) = (0, 0);
    for entry in &mut capped.entries {
        now += (entry.at_nanos - was).min(cap);
        was = entry.at_nanos;
        entry.at_nanos = now;
    }
    capped.faults_stop_nanos = now + capped.faults_stop_nanos.saturating_sub(was).min(cap);
    capped
}

/// What a shrink found.
#[derive(Debug, Clone)]
pub struct ShrinkReport {
    /// The property every kept candidate violates.
    pub property: &'static str,
    /// The seed run's schedule.
    pub original: Schedule,
    /// Events the seed run delivered.
    pub original_events: u64,
    /// The smallest failing schedule found.
    pub shrunk: Schedule,
    /// Its run.
    pub shrunk_run: RunReport,
    /// Runs made (the seed run and its replay included).
    pub runs: usize,
}

impl ShrinkReport {
    /// The shrunk run's events as a fraction of the seed run's.
    pub fn events_ratio(&self) -> f64 {
        self.shrunk_run.stats.events as f64 / self.original_events.max(1) as f64
    }
}

/// Why a run could not be shrunk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShrinkError {
    /// The seed run passed: there is no failure to keep.
    Passed,
    /// Replaying the seed run's own schedule did not fail with its property.
    ReplayDiffers {
        /// The property the seed run violated.
        property: &'static str,
    },
}

impl std::fmt::Display for ShrinkError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ShrinkError::Passed => write!(f, "the run passed: nothing to shrink"),
            ShrinkError::ReplayDiffers { property } => write!(
                f,
                "replaying the run's schedule did not fail with {property}: cannot shrink it"
            ),
        }
    }
}

/// Shrinks the seed run of `config`, keeping its first violation's
/// property, in at most `budget` runs.
pub fn shrink(config: &SimConfig, budget: usize) -> Result<ShrinkReport, ShrinkError> {
    let (report, schedule) = run_schedule_recorded(config);
    let property = report
        .violations
        .first()
        .map(|v| v.property)
        .ok_or(ShrinkError::Passed)?;
    let replay = run_scheduled(config, &schedule);
    if !violates(&replay, property) {
        return Err(ShrinkError::ReplayDiffers { property });
    }
    let mut shrinker = Shrinker {
        config,
        property,
        best: schedule.clone(),
        best_run: replay,
        runs: 2,
        budget,
    };
    shrinker.run();
    Ok(ShrinkReport {
        property,
        original: schedule,
        original_events: report.stats.events,
        shrunk: shrinker.best,
        shrunk_run: shrinker.best_run,
        runs: shrinker.runs,
    })
}

fn violates(report: &RunReport, property: &str) -> bool {
    report.violations.iter().any(|v| v.property == property)
}

struct Shrinker<'a> {
    config: &'a SimConfig,
    property: &'static str,
    best: Schedule,
    best_run: RunReport,
    runs: usize,
    budget: usize,
}

impl Shrinker<'_> {
    /// Tries `candidate`; keeps it when it still fails. Whether it was kept.
    fn attempt(&mut self, candidate: Schedule) -> bool {
        if self.runs >= self.budget || candidate == self.best {
            return false;
        }
        self.runs += 1;
        let report = run_scheduled(self.config, &candidate);
        if violates(&report, self.property) {
            self.best = candidate;
            self.best_run = report;
            true
        } else {
            false
        }
    }

    fn run(&mut self) {
        loop {
            let before = (self.best.entries.len(), self.best_run.stats.events);
            self.shrink_ending();
            self.shrink_tail();
            self.shrink_head();
            self.shrink_time();
            self.shrink_by_kind();
            self.shrink_entries();
            self.shrink_time();
            self.shrink_keys_and_clients();
            if self.runs >= self.budget
                || (self.best.entries.len(), self.best_run.stats.events) == before
            {
                break;
            }
        }
    }

    /// What follows the faults: no wait for the replicas to converge (the
    /// liveness phase at once, then the end), and a shorter liveness phase
    /// or none.
    fn shrink_ending(&mut self) {
        if self.best.heal {
            let mut ended = self.best.clone();
            ended.heal = false;
            ended.liveness_ops = 0;
            if !self.attempt(ended) {
                let mut unhealed = self.best.clone();
                unhealed.heal = false;
                self.attempt(unhealed);
            }
        }
        while self.best.liveness_ops > 0 {
            let ops = self.best.liveness_ops;
            let shorter = [0, ops / 4, ops / 2]
                .into_iter()
                .filter(|&n| n < ops)
                .any(|n| {
                    let mut candidate = self.best.clone();
                    candidate.liveness_ops = n;
                    self.attempt(candidate)
                });
            if !shorter {
                break;
            }
        }
    }

    /// The fewest leading entries that still fail, by bisection: what
    /// follows the violation is usually not needed, and one bisection costs
    /// a dozen runs where chunks of the tail would cost one per chunk.
    /// Failing is not monotonic in the cut (every cut draws the rest of the
    /// run anew), so this finds a failing cut, not always the shortest.
    fn shrink_tail(&mut self) {
        let (mut keep, mut fails) = (0, self.best.entries.len());
        while keep < fails && self.runs < self.budget {
            let middle = keep + (fails - keep) / 2;
            let mut candidate = self.best.clone();
            candidate.entries.truncate(middle);
            if self.attempt(candidate) {
                fails = middle;
            } else {
                keep = middle + 1;
            }
        }
    }

    /// The most entries dropped from the front (times kept) that still
    /// fail, by bisection, as [`Self::shrink_tail`] does for the end:
    /// `limit` bounds how many more leading entries of the best schedule
    /// are tried, half of them at a time.
    fn shrink_head(&mut self) {
        let mut limit = self.best.entries.len();
        while limit > 0 && self.runs < self.budget {
            let half = limit.div_ceil(2);
            let mut candidate = self.best.clone();
            candidate.entries.drain(..half);
            if self.attempt(candidate) {
                limit -= half;
            } else {
                limit = half - 1;
            }
        }
    }

    /// Whole kinds of entries at once: every fault, then every operation on
    /// one key, then every operation of one client.
    fn shrink_by_kind(&mut self) {
        self.attempt_without(|action| matches!(action, Action::Fault { .. }));
        for key in 0..self.best.keys {
            self.attempt_without(|action| matches!(action, Action::Op(op) if op.key == key));
        }
        for client in 0..self.best.clients {
            self.attempt_without(|action| matches!(action, Action::Op(op) if op.client == client));
        }
    }

    /// Tries the best schedule without the entries whose action `drop`
    /// accepts.
    fn attempt_without(&mut self, drop: impl Fn(&Action) -> bool) -> bool {
        let mut candidate = self.best.clone();
        candidate.entries.retain(|e| !drop(&e.action));
        self.attempt(candidate)
    }

    /// Entries removed in chunks, halving the chunk down to one entry.
    fn shrink_entries(&mut self) {
        let mut chunk = self.best.entries.len().div_ceil(2);
        while chunk >= 1 && self.runs < self.budget {
            let mut start = 0;
            while start < self.best.entries.len() && self.runs < self.budget {
                let mut candidate = self.best.clone();
                let end = (start + chunk).min(candidate.entries.len());
                candidate.entries.drain(start..end);
                if !self.attempt(candidate) {
                    start += chunk;
                }
            }
            if chunk == 1 {
                break;
            }
            chunk = chunk.div_ceil(2);
        }
    }

    /// The faults stop right after the last entry; the quiet stretches
    /// between entries (and before the first) are cut short; then every
    /// time is halved, while the failure persists.
    fn shrink_time(&mut self) {
        let last = self.best.entries.last().map_or(0, |e| e.at_nanos);
        if self.best.faults_stop_nanos > last {
            let mut candidate = self.best.clone();
            candidate.faults_stop_nanos = last;
            self.attempt(candidate);
        }
        for cap in GAP_CAPS_NANOS {
            if self.attempt(capped_gaps(&self.best, cap)) {
                break;
            }
        }
        // The stretch before the first entry, shorter by 7/8, 3/4 or 1/2:
        // the capped gaps may have cut it too far for the failure to stay.
        let lead = self.best.entries.first().map_or(0, |e| e.at_nanos);
        for keep_eighths in [1, 2, 4] {
            let cut = lead - lead * keep_eighths / 8;
            if cut == 0 {
                break;
            }
            let mut candidate = self.best.clone();
            candidate.faults_stop_nanos -= cut;
            for entry in &mut candidate.entries {
                entry.at_nanos -= cut;
            }
            if self.attempt(candidate) {
                break;
            }
        }
        while self.best.faults_stop_nanos > 1_000_000 {
            let mut candidate = self.best.clone();
            candidate.faults_stop_nanos /= 2;
            for entry in &mut candidate.entries {
                entry.at_nanos /= 2;
            }
            if !self.attempt(candidate) {
                break;
            }
        }
    }

    /// Keys and clients no entry uses dropped, the rest renumbered in order.
    fn shrink_keys_and_clients(&mut self) {
        let mut keys = Vec::new();
        let mut clients = Vec::new();
        for entry in &self.best.entries {
            if let Action::Op(op) = &entry.action {
                if !keys.contains(&op.key) {
                    keys.push(op.key);
                }
                if !clients.contains(&op.client) {
                    clients.push(op.client);
                }
            }
        }
        keys.sort_unstable();
        clients.sort_unstable();
        let keys_count = keys.len().max(1);
        let clients_count = clients.len().max(1);
        if keys_count == self.best.keys && clients_count == self.best.clients {
            return;
        }
        let mut candidate = self.best.clone();
        candidate.keys = keys_count;
        candidate.clients = clients_count;
        for entry in &mut candidate.entries {
            if let Action::Op(op) = &mut entry.action {
                op.key = keys.iter().position(|&k| k == op.key).expect("listed");
                op.client = clients
                    .iter()
                    .position(|&c| c == op.client)
                    .expect("listed");
            }
        }
        self.attempt(candidate);
    }
}
