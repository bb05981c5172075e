//! Coverage marks over a sweep ([`enigma_engine::marks`] counts them in
//! one run): how often each was hit and by how many seeds, the table a
//! sweep prints, and the committed lists of marks sweeps must hit.
//!
//! [`REQUIRED`] names the marks the CI sweep (the default configuration,
//! [`CI_SWEEP_SEEDS`] seeds from [`CI_SWEEP_START`]) must hit: if a change
//! makes one unreachable in simulation, `tests/simulation.rs` fails and
//! names it. A mark the default mix reaches in fewer than about one seed
//! in a hundred would make that test fragile; such marks are required
//! from a [`Shape`] instead: a small sweep of a run shape that reaches
//! them often (`SERIAL`, commit wait, a clock far ahead).

use std::collections::BTreeMap;

use enigma_cluster::ConsistencyLevel;
use enigma_engine::{Mark, MarkCounts};

use crate::config::SimConfig;

/// Seeds of the CI sweep.
pub const CI_SWEEP_SEEDS: u64 = 2_000;
/// The CI sweep's first seed.
pub const CI_SWEEP_START: u64 = 0x5eed_0000;

/// Marks the CI sweep must hit (each in at least about 1% of its seeds).
pub const REQUIRED: &[Mark] = &[
    Mark::WalTornTail,
    Mark::DeadTablesRemoved,
    Mark::MemtableFrozenFull,
    Mark::BuggifyMemtableFrozenEarly,
    Mark::FlushUnderBackPressure,
    Mark::TableFlushed,
    Mark::Compaction,
    Mark::TombstonePurged,
    Mark::TombstoneKeptUnrepaired,
    Mark::WriteOverDamage,
    Mark::DamageTransient,
    Mark::TableQuarantined,
    Mark::ReadRefusedDamaged,
    Mark::DamagedRangeRepaired,
    Mark::DamagedDataDropped,
    Mark::WalPoisoned,
    Mark::TableSyncPoisoned,
    Mark::ManifestEditFailed,
    Mark::StaleAnswerIgnored,
    Mark::ReadRepair,
    Mark::CorruptReplicaRepaired,
    Mark::Unavailable,
    Mark::BuggifyReplyAtDeadline,
    Mark::WriteRefusedLate,
    Mark::StorageErrorServed,
    Mark::DiskFull,
    Mark::NoSpaceBatchFailed,
    Mark::NodeSyncFailed,
    Mark::BackgroundJobFailed,
    Mark::BuggifyBackgroundBatchCut,
    Mark::HintStored,
    Mark::HintReplayed,
    Mark::HintResent,
    Mark::HintExpired,
    Mark::AntiEntropyDiffered,
    Mark::AntiEntropyPushed,
    Mark::AntiEntropyAborted,
    Mark::PauseForgiven,
    Mark::SimCrashMidSync,
    Mark::SimCrashInBackgroundJob,
    Mark::SimStaleMessage,
];

/// A run shape that reaches marks the default mix reaches rarely, with
/// the marks a small sweep of it must hit.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    /// Its name.
    pub name: &'static str,
    /// Seeds its sweep runs.
    pub seeds: u64,
    /// Marks its sweep must hit.
    pub required: &'static [Mark],
    /// Turns the default configuration into this shape.
    shape: fn(SimConfig) -> SimConfig,
}

impl Shape {
    /// The shape's configuration, starting at `seed`.
    pub fn config(&self, seed: u64) -> SimConfig {
        (self.shape)(SimConfig {
            seed,
            ..SimConfig::default()
        })
    }
}

/// The shaped sweeps.
pub const SHAPES: &[Shape] = &[
    Shape {
        name: "serial",
        seeds: 30,
        required: &[
            Mark::PaxosPromiseRefused,
            Mark::PaxosAcceptRefused,
            Mark::PaxosInProgressFinished,
            Mark::PaxosBallotLost,
            Mark::PaxosInDoubt,
            Mark::PaxosConditionFailed,
            Mark::PaxosCommitTooLate,
            Mark::PaxosAnsweredOnceChosen,
            Mark::ReadFoundUnfinishedPaxos,
            Mark::ReadFinishedThroughPaxos,
        ],
        shape: |c| SimConfig {
            level: ConsistencyLevel::Serial,
            clock_skew_max_ms: 100,
            ops: 400,
            ..c
        },
    },
    Shape {
        name: "commit-wait",
        seeds: 20,
        required: &[Mark::CommitWaitHeld],
        shape: |c| SimConfig {
            clock_skew_max_ms: 100,
            commit_wait: true,
            ops: 400,
            ..c
        },
    },
    Shape {
        name: "far-ahead-clock",
        seeds: 20,
        required: &[
            Mark::ClockOutOfBoundsRefused,
            Mark::SessionFloorRefused,
            Mark::SessionFloorAskedAgain,
            Mark::PeerClockRefused,
        ],
        shape: |c| SimConfig {
            level: ConsistencyLevel::One,
            clock_far_ahead_ms: 2_000,
            ops: 400,
            ..c
        },
    },
];

/// Marks over many runs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MarkTally {
    /// Runs counted.
    runs: u64,
    /// Hits per mark.
    hits: BTreeMap<Mark, u64>,
    /// Runs that hit each mark.
    seeds: BTreeMap<Mark, u64>,
}

impl MarkTally {
    /// Counts one run's marks.
    pub fn add(&mut self, run: &MarkCounts) {
        self.runs += 1;
        for (mark, count) in run.iter() {
            *self.hits.entry(mark).or_insert(0) += count;
            *self.seeds.entry(mark).or_insert(0) += 1;
        }
    }

    /// Adds another part of the sweep's tally.
    pub fn absorb(&mut self, other: &MarkTally) {
        self.runs += other.runs;
        for (&mark, &count) in &other.hits {
            *self.hits.entry(mark).or_insert(0) += count;
        }
        for (&mark, &count) in &other.seeds {
            *self.seeds.entry(mark).or_insert(0) += count;
        }
    }

    /// Runs counted.
    pub fn runs(&self) -> u64 {
        self.runs
    }

    /// Times `mark` was hit, over every run.
    pub fn hits(&self, mark: Mark) -> u64 {
        self.hits.get(&mark).copied().unwrap_or(0)
    }

    /// Runs that hit `mark`.
    pub fn seeds(&self, mark: Mark) -> u64 {
        self.seeds.get(&mark).copied().unwrap_or(0)
    }

    /// The marks of `required` never hit, in its order.
    pub fn missing(&self, required: &[Mark]) -> Vec<Mark> {
        required
            .iter()
            .copied()
            .filter(|&mark| self.hits(mark) == 0)
            .collect()
    }

    /// The table a sweep prints: a heading, one line per mark (its name,
    /// hits, seeds that hit it), then the marks never hit.
    pub fn table(&self) -> Vec<String> {
        let hit = Mark::ALL.iter().filter(|&&m| self.hits(m) > 0).count();
        let mut lines = vec![format!(
            "marks: {hit} of {} hit over {} seeds (name, hits, seeds that hit it)",
            Mark::ALL.len(),
            self.runs
        )];
        for &mark in Mark::ALL {
            lines.push(format!(
                "  {:<30} {:>9} {:>6}",
                mark.name(),
                self.hits(mark),
                self.seeds(mark)
            ));
        }
        let never: Vec<&str> = self.missing(Mark::ALL).iter().map(|m| m.name()).collect();
        lines.push(if never.is_empty() {
            "never hit: none".to_owned()
        } else {
            format!("never hit: {}", never.join(", "))
        });
        lines
    }
}

/// The names of `marks`, comma-separated (for failure messages).
pub fn names(marks: &[Mark]) -> String {
    marks
        .iter()
        .map(|m| m.name())
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(marks: &[Mark]) -> MarkCounts {
        enigma_engine::marks::reset();
        for &mark in marks {
            enigma_engine::marks::hit(mark);
        }
        enigma_engine::marks::take()
    }

    #[test]
    fn a_tally_counts_hits_and_seeds_and_names_the_missing() {
        let mut tally = MarkTally::default();
        tally.add(&counts(&[Mark::ReadRepair, Mark::ReadRepair]));
        let mut other = MarkTally::default();
        other.add(&counts(&[Mark::ReadRepair, Mark::HintStored]));
        other.add(&counts(&[]));
        tally.absorb(&other);
        assert_eq!(tally.runs(), 3);
        assert_eq!(tally.hits(Mark::ReadRepair), 3);
        assert_eq!(tally.seeds(Mark::ReadRepair), 2);
        assert_eq!(tally.seeds(Mark::HintStored), 1);
        assert_eq!(
            tally.missing(&[Mark::HintStored, Mark::WalTornTail, Mark::HintExpired]),
            vec![Mark::WalTornTail, Mark::HintExpired]
        );
        let table = tally.table();
        assert_eq!(table.len(), Mark::ALL.len() + 2);
        assert!(table[0].starts_with("marks: 2 of "), "{}", table[0]);
        assert!(table.last().unwrap().contains("wal-torn-tail"));
        assert!(!table.last().unwrap().contains("read-repair"));
    }

    #[test]
    fn a_run_counts_its_own_marks_only() {
        // Marks hit on this thread before a run do not leak into it.
        enigma_engine::marks::hit(Mark::PaxosInDoubt);
        let config = SimConfig {
            seed: 3,
            ops: 100,
            ..SimConfig::default()
        };
        let first = crate::run(&config);
        assert_eq!(
            first.marks.get(Mark::PaxosInDoubt),
            0,
            "QUORUM runs no Paxos"
        );
        assert!(
            first.marks.iter().count() > 0,
            "a run under faults hits marks"
        );
        let again = crate::run(&config);
        assert_eq!(first.marks, again.marks, "a seed replays its marks");
        assert_eq!(first.digest, again.digest);
    }

    #[test]
    fn required_lists_name_each_mark_once() {
        let mut all: Vec<Mark> = REQUIRED.to_vec();
        for shape in SHAPES {
            assert!(shape.config(0).validate().is_ok(), "{}", shape.name);
            all.extend_from_slice(shape.required);
        }
        let distinct: std::collections::BTreeSet<Mark> = all.iter().copied().collect();
        assert_eq!(distinct.len(), all.len(), "a mark is required twice");
    }
}
