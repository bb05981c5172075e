//! Coverage marks: named rare paths in engine, node and simulator code,
//! counted as they are taken (TigerBeetle's marks, FoundationDB's
//! `CODE_PROBE`), so that a seed sweep can say which corners it reached
//! and a test can notice when a change makes one unreachable.
//!
//! Each [`Mark`] is hit at exactly one site, by [`hit`]. The counts live
//! in a thread-local array of cells: a hit is one increment of the
//! current thread's counter, no lock, no allocation, nothing shared
//! between threads, and nothing read in production. A simulation run is
//! single-threaded: it calls [`reset`] before it starts and [`take`] when
//! it ends, so its counts are its own whichever thread (of a sweep's
//! several) ran it. Marks are observation only: nothing reads them to
//! decide anything, so they change no run and no digest.
//!
//! The list lives here, the lowest crate every other depends on, so the
//! node (`enigma-cluster`) and the simulator mark through the same enum.

use std::cell::Cell;
use std::collections::BTreeMap;

macro_rules! marks {
    ($($(#[doc = $doc:literal])+ $variant:ident = $name:literal,)*) => {
        /// A rare path worth knowing a sweep reaches.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
        pub enum Mark {
            $($(#[doc = $doc])+ $variant,)*
        }

        impl Mark {
            /// Every mark, in declaration order.
            pub const ALL: &'static [Mark] = &[$(Mark::$variant,)*];

            /// Its name in the sweep's table and in the required lists.
            pub fn name(self) -> &'static str {
                match self {
                    $(Mark::$variant => $name,)*
                }
            }

            /// The path it marks, in one line.
            pub fn description(self) -> &'static str {
                match self {
                    $(Mark::$variant => concat!($($doc),+).trim_ascii(),)*
                }
            }
        }
    };
}

marks! {
    // Engine: recovery.
    /// WAL recovery cut a torn tail off the last segment.
    WalTornTail = "wal-torn-tail",
    /// Manifest recovery dropped a torn (uncommitted) last edit.
    ManifestTornEdit = "manifest-torn-edit",
    /// Opening removed tables no manifest edit names (a crash mid-job).
    DeadTablesRemoved = "dead-tables-removed",
    // Engine: memtables, flushes, compactions.
    /// Background work froze a full memtable for a flush.
    MemtableFrozenFull = "memtable-frozen-full",
    /// Buggify froze a memtable before it was full.
    BuggifyMemtableFrozenEarly = "buggify-memtable-frozen-early",
    /// Freezing found every frozen slot taken and flushed the oldest inline (back-pressure).
    FlushUnderBackPressure = "flush-under-back-pressure",
    /// A flushed table was published by a manifest edit.
    TableFlushed = "table-flushed",
    /// A compaction was published by a manifest edit.
    Compaction = "compaction",
    /// A compaction's output was empty: every entry was a purged tombstone.
    CompactionEmptyOutput = "compaction-empty-output",
    /// Compaction purged a tombstone past the grace horizon.
    TombstonePurged = "tombstone-purged",
    /// Compaction kept a purgeable tombstone because its range is not yet repaired.
    TombstoneKeptUnrepaired = "tombstone-kept-unrepaired",
    /// A write landed over a damaged entry and shadows it.
    WriteOverDamage = "write-over-damage",
    /// A table suspected of damage read clean the second time (a bit
    /// flipped in transfer).
    DamageTransient = "damage-transient",
    /// A damaged table was quarantined (removed by a manifest edit).
    TableQuarantined = "table-quarantined",
    /// Open finished a quarantine a crash interrupted.
    QuarantineFinishedAtOpen = "quarantine-finished-at-open",
    // Engine: failures.
    /// A WAL sync or write failed: the log is poisoned.
    WalPoisoned = "wal-poisoned",
    /// A table's sync failed in a flush or compaction: the engine is poisoned.
    TableSyncPoisoned = "table-sync-poisoned",
    /// A manifest edit failed: the engine is poisoned.
    ManifestEditFailed = "manifest-edit-failed",
    // Node: the coordinator.
    /// An answer meant for an earlier incarnation of the coordinator was ignored.
    StaleAnswerIgnored = "stale-answer-ignored",
    /// A read found stale replicas and wrote the winner back (read repair).
    ReadRepair = "read-repair",
    /// A read wrote the winner back to a replica whose copy was corrupt.
    CorruptReplicaRepaired = "corrupt-replica-repaired",
    /// An operation was refused as unavailable (too few replicas held up).
    Unavailable = "unavailable",
    /// A write was refused: this node's clock is not yet judged and no peer replica is up.
    ClockUnjudgedRefused = "clock-unjudged-refused",
    /// A write was refused: this node's clock is out of bounds of its peers' (-CLOCK).
    ClockOutOfBoundsRefused = "clock-out-of-bounds-refused",
    /// A write was refused: its session saw a version too far ahead of this clock.
    SessionFloorRefused = "session-floor-refused",
    /// A read met no answer at its session's floor and asked its replicas again.
    SessionFloorAskedAgain = "session-floor-asked-again",
    /// Commit wait held an answer until the clock passed its timestamp.
    CommitWaitHeld = "commit-wait-held",
    /// Buggify held a write's success until its deadline.
    BuggifyReplyAtDeadline = "buggify-reply-at-deadline",
    // Node: replicas and storage.
    /// A replica refused a write or hint that arrived later than the lateness bound.
    WriteRefusedLate = "write-refused-late",
    /// An acceptor refused a Paxos commit older than the lateness bound.
    PaxosCommitTooLate = "paxos-commit-too-late",
    /// A peer's message was refused: its clock reading was too far ahead.
    PeerClockRefused = "peer-clock-refused",
    /// A storage error (a bad read, corruption) was met while serving.
    StorageErrorServed = "storage-error-served",
    /// A replica refused a read of a range that lost data to a
    /// quarantined table and is not yet repaired.
    ReadRefusedDamaged = "read-refused-damaged",
    /// A range that lost data to a quarantined table was repaired and is
    /// served again.
    DamagedRangeRepaired = "damaged-range-repaired",
    /// A node that lost a table dropped what it still held of the damaged
    /// ranges, to be refilled by its peers.
    DamagedDataDropped = "damaged-data-dropped",
    /// A full-disk episode began on a node.
    DiskFull = "disk-full",
    /// A batch's sync found the disk full: its outputs left as failures.
    NoSpaceBatchFailed = "no-space-batch-failed",
    /// A node's sync failed: the node stops (fatal).
    NodeSyncFailed = "node-sync-failed",
    /// A background flush or compaction failed (retried later).
    BackgroundJobFailed = "background-job-failed",
    /// Buggify cut a node's background work after one job.
    BuggifyBackgroundBatchCut = "buggify-background-batch-cut",
    // Node: hinted handoff.
    /// A coordinator stored a hint for a silent replica.
    HintStored = "hint-stored",
    /// A hint was delivered and acknowledged.
    HintReplayed = "hint-replayed",
    /// A hint's acknowledgement was overdue and it was sent again.
    HintResent = "hint-resent",
    /// The oldest hint for a target was evicted to make room.
    HintEvicted = "hint-evicted",
    /// A hint older than the hint window was dropped.
    HintExpired = "hint-expired",
    /// A hint was refused by its target (not a replica of the key).
    HintRefused = "hint-refused",
    /// A coordinator's memory of unacknowledged writes was full: left to anti-entropy.
    HintWatchDropped = "hint-watch-dropped",
    // Node: anti-entropy and gossip.
    /// Anti-entropy compared trees and found a difference.
    AntiEntropyDiffered = "anti-entropy-differed",
    /// Anti-entropy pushed a batch of differing entries.
    AntiEntropyPushed = "anti-entropy-pushed",
    /// An anti-entropy session was aborted (no progress in time).
    AntiEntropyAborted = "anti-entropy-aborted",
    /// A node noticed its own pause and restarted its peers' silences.
    PauseForgiven = "pause-forgiven",
    /// Gossip was refused.
    GossipRefused = "gossip-refused",
    // Node: Paxos.
    /// An acceptor refused a prepare (a higher ballot was promised).
    PaxosPromiseRefused = "paxos-promise-refused",
    /// An acceptor refused a proposal (a higher ballot was promised).
    PaxosAcceptRefused = "paxos-accept-refused",
    /// A proposer finished another's accepted, uncommitted proposal.
    PaxosInProgressFinished = "paxos-in-progress-finished",
    /// A proposer lost its ballot and backs off.
    PaxosBallotLost = "paxos-ballot-lost",
    /// A proposer's own value was refused by too many: the outcome is unknown.
    PaxosInDoubt = "paxos-in-doubt",
    /// A compare-and-set's condition did not hold: nothing proposed.
    PaxosConditionFailed = "paxos-condition-failed",
    /// A proposer answered once its own value was chosen, before the
    /// commit's acknowledgements.
    PaxosAnsweredOnceChosen = "paxos-answered-once-chosen",
    /// An acceptor whose range lost data took no part in a ballot at or
    /// below its floor.
    PaxosBelowFloor = "paxos-below-floor",
    /// An acceptor whose range lost data withheld a promise for a key it
    /// holds no record of above its floor.
    PaxosPromiseWithheld = "paxos-promise-withheld",
    /// A replica answered a plain read holding an unfinished Paxos
    /// proposal newer than its version.
    ReadFoundUnfinishedPaxos = "read-found-unfinished-paxos",
    /// A replica answered a plain read of a key whose range lost data, and
    /// of which its acceptor holds no record above the floor, as possibly
    /// holding an unfinished Paxos proposal.
    ReadUnsureAfterLoss = "read-unsure-after-loss",
    /// A `QUORUM`/`ALL` read met an unfinished Paxos proposal and finishes
    /// it through a `SERIAL` read before it answers.
    ReadFinishedThroughPaxos = "read-finished-through-paxos",
    // Simulator.
    /// A crash landed while a batch's sync was in flight.
    SimCrashMidSync = "sim-crash-mid-sync",
    /// A crash landed between two steps of a flush or compaction.
    SimCrashInBackgroundJob = "sim-crash-in-background-job",
    /// A message reached an incarnation other than the one it was sent to or by.
    SimStaleMessage = "sim-stale-message",
}

/// How many marks there are.
pub const MARKS: usize = Mark::ALL.len();

thread_local! {
    static HITS: [Cell<u64>; MARKS] = const { [const { Cell::new(0) }; MARKS] };
}

/// Counts one pass through `mark`'s site on this thread.
#[inline]
pub fn hit(mark: Mark) {
    HITS.with(|hits| {
        let cell = &hits[mark as usize];
        cell.set(cell.get().wrapping_add(1));
    });
}

/// Zeroes this thread's counts (a simulation run starts).
pub fn reset() {
    HITS.with(|hits| hits.iter().for_each(|cell| cell.set(0)));
}

/// This thread's counts since the last [`reset`], which they are reset to.
pub fn take() -> MarkCounts {
    HITS.with(|hits| MarkCounts {
        hits: Mark::ALL
            .iter()
            .map(|&mark| (mark, hits[mark as usize].take()))
            .filter(|&(_, count)| count > 0)
            .collect(),
    })
}

/// Hits per mark (of one run); marks never hit are absent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MarkCounts {
    hits: BTreeMap<Mark, u64>,
}

impl MarkCounts {
    /// Times `mark` was hit.
    pub fn get(&self, mark: Mark) -> u64 {
        self.hits.get(&mark).copied().unwrap_or(0)
    }

    /// The marks hit, with their counts, in declaration order.
    pub fn iter(&self) -> impl Iterator<Item = (Mark, u64)> + '_ {
        self.hits.iter().map(|(&mark, &count)| (mark, count))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hits_are_counted_per_mark_and_taking_resets_them() {
        reset();
        hit(Mark::WalTornTail);
        hit(Mark::WalTornTail);
        hit(Mark::HintReplayed);
        let counts = take();
        assert_eq!(counts.get(Mark::WalTornTail), 2);
        assert_eq!(counts.get(Mark::HintReplayed), 1);
        assert_eq!(counts.get(Mark::ReadRepair), 0);
        assert_eq!(counts.iter().count(), 2);
        assert_eq!(take(), MarkCounts::default(), "take resets");
        hit(Mark::ReadRepair);
        reset();
        assert_eq!(take(), MarkCounts::default(), "reset zeroes");
    }

    #[test]
    fn threads_count_apart() {
        reset();
        hit(Mark::Compaction);
        let other = std::thread::scope(|s| {
            s.spawn(|| {
                hit(Mark::TableFlushed);
                take()
            })
            .join()
            .expect("no panic")
        });
        assert_eq!(other.get(Mark::TableFlushed), 1);
        assert_eq!(other.get(Mark::Compaction), 0);
        let mine = take();
        assert_eq!(mine.get(Mark::Compaction), 1);
        assert_eq!(mine.get(Mark::TableFlushed), 0);
    }

    #[test]
    fn names_are_unique_and_every_mark_is_described() {
        let names: std::collections::BTreeSet<&str> = Mark::ALL.iter().map(|m| m.name()).collect();
        assert_eq!(names.len(), MARKS);
        for mark in Mark::ALL {
            assert!(!mark.description().is_empty(), "{}", mark.name());
            assert!(!mark.description().starts_with(' '), "{}", mark.name());
        }
    }
}
