//! Compaction: merging tables to bound read cost and reclaim space.
//!
//! [`policy`] decides *which* tables to merge, as a pure function of their
//! sizes; the engine (`db/background.rs`) carries the decision out: it merges the
//! inputs with last-write-wins (so shadowed versions disappear), drops
//! tombstones that [`tombstone_purgeable`] allows, writes one table,
//! publishes "added output, removed inputs" in the manifest, and only then
//! deletes the inputs.
//!
//! # Why size-tiered first
//!
//! A Cassandra-style store takes many blind writes (replication, hints,
//! read repair) and reads mostly single keys through bloom filters.
//! Size-tiered compaction writes each byte about log(N) times (less than
//! leveled), needs no key-range partitioning of outputs, and is simple to
//! get right under crashes; its costs (more tables per read, temporary
//! space) are bounded here by bloom filters and by merging at most
//! `compaction_tables_max` tables at once. Leveled compaction can come later
//! behind the same policy/executor split.

pub(crate) mod policy;

use crate::types::{Timestamp, Versioned};

/// Whether a compaction may drop `version` (a tombstone): only if it is
/// older than `purge_before` (the cluster's grace horizon; `None` forbids
/// purging) and no source outside the compaction holds the key at all
/// (`held_elsewhere`), since such a source could hold an older value the
/// tombstone still hides.
pub(crate) fn tombstone_purgeable(
    version: &Versioned,
    purge_before: Option<Timestamp>,
    held_elsewhere: bool,
) -> bool {
    version.is_tombstone()
        && purge_before.is_some_and(|horizon| version.timestamp < horizon)
        && !held_elsewhere
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tombstone(hlc: u64) -> Versioned {
        Versioned {
            timestamp: Timestamp { hlc, node: 0 },
            value: None,
        }
    }

    #[test]
    fn tombstone_is_purged_only_past_the_horizon_and_when_held_nowhere_else() {
        let horizon = Some(Timestamp { hlc: 10, node: 0 });
        assert!(tombstone_purgeable(&tombstone(5), horizon, false));
        assert!(!tombstone_purgeable(&tombstone(5), horizon, true));
        assert!(!tombstone_purgeable(&tombstone(10), horizon, false));
        assert!(!tombstone_purgeable(&tombstone(5), None, false));
        let value = Versioned {
            timestamp: Timestamp { hlc: 1, node: 0 },
            value: Some(b"v".to_vec()),
        };
        assert!(!tombstone_purgeable(&value, horizon, false));
    }
}
