//! The memtable: an ordered in-memory map of key -> newest known version.
//!
//! Last write wins: a version replaces the stored one only if its timestamp
//! is strictly greater. Tombstones are stored like values, because they must
//! keep hiding older versions (and the cluster reads their timestamps).
//! The table counts its approximate size in bytes so that the LSM can decide
//! when to freeze and flush it.

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Bound;

use crate::types::Versioned;

/// Bytes charged per entry on top of key and value: the timestamp plus a
/// rough allowance for the map node, so that many tiny entries still count.
const ENTRY_OVERHEAD_BYTES: usize = 64;

/// The ordered in-memory table.
#[derive(Clone, Default, PartialEq, Eq)]
pub(crate) struct Memtable {
    /// Newest known version of each key.
    entries: BTreeMap<Vec<u8>, Versioned>,
    /// Approximate memory held by `entries`, for flush decisions.
    bytes_total: usize,
}

/// The size charged for one entry.
fn entry_bytes(key: &[u8], version: &Versioned) -> usize {
    key.len() + version.value.as_ref().map_or(0, Vec::len) + ENTRY_OVERHEAD_BYTES
}

impl Memtable {
    /// An empty table.
    pub(crate) fn new() -> Memtable {
        Memtable::default()
    }

    /// Stores `version` under `key` if it is newer than the stored version;
    /// returns whether it was stored.
    pub(crate) fn apply(&mut self, key: &[u8], version: Versioned) -> bool {
        let added = entry_bytes(key, &version);
        match self.entries.get_mut(key) {
            Some(stored) if version.timestamp <= stored.timestamp => false,
            Some(stored) => {
                let removed = entry_bytes(key, stored);
                *stored = version;
                self.bytes_total = self.bytes_total - removed + added;
                true
            }
            None => {
                self.entries.insert(key.to_vec(), version);
                self.bytes_total += added;
                true
            }
        }
    }

    /// The stored version of `key`, tombstones included.
    pub(crate) fn get(&self, key: &[u8]) -> Option<&Versioned> {
        self.entries.get(key)
    }

    /// Every entry in key order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&Vec<u8>, &Versioned)> {
        self.entries.iter()
    }

    /// The entries with keys within `start` and `end`, in key order.
    ///
    /// # Panics
    /// If the range is empty and malformed (start after end, or equal and
    /// excluded): callers check with [`range_is_empty`] first.
    pub(crate) fn range<'a>(
        &'a self,
        start: Bound<&'a [u8]>,
        end: Bound<&'a [u8]>,
    ) -> impl Iterator<Item = (&'a Vec<u8>, &'a Versioned)> {
        self.entries.range::<[u8], _>((start, end))
    }

    /// Number of keys held, tombstones included.
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// Approximate bytes held.
    pub(crate) fn bytes_total(&self) -> usize {
        self.bytes_total
    }
}

/// Whether no key can lie within `start` and `end` (such ranges would make
/// `BTreeMap::range` panic).
pub(crate) fn range_is_empty(start: Bound<&[u8]>, end: Bound<&[u8]>) -> bool {
    match (start, end) {
        (Bound::Included(s), Bound::Included(e)) => s > e,
        (Bound::Included(s), Bound::Excluded(e))
        | (Bound::Excluded(s), Bound::Included(e))
        | (Bound::Excluded(s), Bound::Excluded(e)) => s >= e,
        _ => false,
    }
}

impl fmt::Debug for Memtable {
    // The contents can be huge; a summary is what a log line needs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Memtable")
            .field("keys_total", &self.entries.len())
            .field("bytes_total", &self.bytes_total)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::Timestamp;

    fn version(hlc: u64, value: Option<&[u8]>) -> Versioned {
        Versioned {
            timestamp: Timestamp { hlc, node: 1 },
            value: value.map(<[u8]>::to_vec),
        }
    }

    fn recount(table: &Memtable) -> usize {
        table
            .iter()
            .map(|(key, version)| entry_bytes(key, version))
            .sum()
    }

    #[test]
    fn newer_version_replaces_older() {
        let mut table = Memtable::new();
        assert!(table.apply(b"k", version(1, Some(b"a"))));
        assert!(table.apply(b"k", version(2, Some(b"bb"))));
        assert_eq!(table.get(b"k"), Some(&version(2, Some(b"bb"))));
        assert_eq!(table.bytes_total(), recount(&table));
    }

    #[test]
    fn older_or_equal_version_is_ignored() {
        let mut table = Memtable::new();
        assert!(table.apply(b"k", version(5, Some(b"new"))));
        assert!(!table.apply(b"k", version(4, Some(b"old"))));
        assert!(!table.apply(b"k", version(5, Some(b"same stamp"))));
        assert_eq!(table.get(b"k"), Some(&version(5, Some(b"new"))));
        assert!(table.apply(
            b"k",
            Versioned {
                timestamp: Timestamp { hlc: 5, node: 2 },
                value: None
            }
        ));
    }

    #[test]
    fn tombstone_hides_older_value_and_is_returned() {
        let mut table = Memtable::new();
        assert!(table.apply(b"k", version(1, Some(b"v"))));
        assert!(table.apply(b"k", version(2, None)));
        assert!(!table.apply(b"k", version(1, Some(b"v"))));
        assert_eq!(table.get(b"k"), Some(&version(2, None)));
        assert_eq!(table.len(), 1);
        assert_eq!(table.bytes_total(), recount(&table));
    }

    #[test]
    fn iteration_is_in_key_order() {
        let mut table = Memtable::new();
        for key in [b"c", b"a", b"b"] {
            table.apply(key, version(1, Some(key)));
        }
        let keys: Vec<&[u8]> = table.iter().map(|(key, _)| key.as_slice()).collect();
        assert_eq!(keys, vec![b"a", b"b", b"c"]);
    }
}
