//! The gate on tombstone purging: a deleted key must never come back.
//!
//! A replica may drop a tombstone at compaction only if no replica of its
//! key can still hold, or later receive, a version the tombstone deletes.
//! Two conditions give that (ScyllaDB's repair mode for tombstone GC):
//!
//! 1. The tombstone is older than the grace period (the engine's purge
//!    horizon, set by the node each tick).
//! 2. A full anti-entropy session of its repair range, covering every
//!    replica, completed and had *started* more than the lateness bound
//!    after the tombstone's timestamp ([`crate::NodeOptions::write_lateness_max_nanos`]).
//!    Replicas refuse client writes and hints that arrive later than that
//!    bound, so every version at or below the tombstone's timestamp had
//!    reached its replicas before the session started; the session then
//!    left every replica holding the tombstone or something newer. After
//!    that, no replica holds an older version to resurrect, and none can
//!    receive one.
//!
//! The node's own keys (hints) are not replicated: only the horizon applies
//! to them.

use enigma_engine::Timestamp;

use crate::keyspace::is_system;
use crate::ring::RepairRanges;

/// What the engine's compaction asks before dropping a tombstone.
#[derive(Debug, Clone)]
pub struct PurgeGate {
    ranges: RepairRanges,
    /// Per repair range, the start reading of the last session known to
    /// have completed on every replica.
    repaired_hlc: Vec<Option<u64>>,
    /// The lateness bound in HLC units.
    lateness_hlc: u64,
    /// **A deliberate bug**: ignore the repair condition.
    bug_ignore_repair: bool,
}

impl PurgeGate {
    /// A gate over `ranges` with each range's last completed repair.
    pub fn new(
        ranges: RepairRanges,
        repaired_hlc: Vec<Option<u64>>,
        lateness_hlc: u64,
        bug_ignore_repair: bool,
    ) -> Self {
        assert_eq!(ranges.len(), repaired_hlc.len());
        Self {
            ranges,
            repaired_hlc,
            lateness_hlc,
            bug_ignore_repair,
        }
    }

    /// Whether the tombstone of `key` at `timestamp` may go (the horizon
    /// having been checked by the engine).
    pub fn allows(&self, key: &[u8], timestamp: Timestamp) -> bool {
        if is_system(key) || self.bug_ignore_repair {
            return true;
        }
        self.repaired_hlc[self.ranges.of_key(key)]
            .is_some_and(|started| timestamp.hlc.saturating_add(self.lateness_hlc) < started)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::NodeId;
    use crate::keyspace::hint_key;
    use crate::ring::Ring;

    fn ts(hlc: u64) -> Timestamp {
        Timestamp { hlc, node: 1 }
    }

    fn gate(repaired: Option<u64>, bug: bool) -> PurgeGate {
        let ring = Ring::new(&[NodeId(1), NodeId(2), NodeId(3)], 8, 3).unwrap();
        let ranges = ring.repair_ranges();
        let repaired = vec![repaired; ranges.len()];
        PurgeGate::new(ranges, repaired, 100, bug)
    }

    #[test]
    fn a_tombstone_goes_only_after_a_repair_that_started_late_enough() {
        assert!(!gate(None, false).allows(b"k", ts(10)), "never repaired");
        assert!(!gate(Some(110), false).allows(b"k", ts(10)), "too soon");
        assert!(gate(Some(111), false).allows(b"k", ts(10)));
    }

    #[test]
    fn hints_need_no_repair_and_the_planted_bug_ignores_it() {
        assert!(gate(None, false).allows(&hint_key(2, 5), ts(10)));
        assert!(gate(None, true).allows(b"k", ts(10)));
    }
}
