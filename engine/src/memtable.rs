//! The memtable: an ordered in-memory map of key -> newest known version.
//!
//! Last write wins: a version replaces the stored one only if its timestamp
//! is strictly greater. Tombstones are stored like values, because they must
//! keep hiding older versions (and the cluster reads their timestamps).
//! The table counts its approximate size in bytes so that the LSM can decide
//! when to freeze and flush it.
//!
//! A small filter of key hashes (one 64-bit word per key looked up, three
//! bits set in it) answers most lookups of absent keys without searching
//! the map: a point read usually finds its key in a table, and a search of
//! a map of a few hundred thousand keys is half a dozen cache misses.

use std::cmp::Ordering;
use std::collections::{btree_map, BTreeMap};
use std::fmt;
use std::ops::Bound;

use crate::sstable::bloom::key_hash;
use crate::types::{Timestamp, Versioned};

/// Bytes charged per key on top of its bytes and its value's: the map
/// element (key head, timestamp, value reference: 72 bytes) and its node's
/// share, so that many tiny entries still count.
const ENTRY_OVERHEAD_BYTES: usize = 112;
/// Key bytes held inline by a [`MemKey`]: the common short key needs no
/// allocation and compares as two integers.
const KEY_INLINE_BYTES: usize = 16;

/// A memtable key: its first 16 bytes as two big-endian integers (zero
/// padded), the rest on the heap, and its length. Ordered exactly as the
/// byte strings are: equal heads mean the shorter key is a prefix of the
/// longer (which has zeros where the shorter was padded), so tails and then
/// lengths decide.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct MemKey {
    head: [u64; 2],
    tail: Box<[u8]>,
    len: u32,
}

impl MemKey {
    /// # Panics
    /// If `key` is 4 GiB or longer (options bound keys far below that).
    pub(crate) fn new(key: &[u8]) -> MemKey {
        let mut head = [0_u8; KEY_INLINE_BYTES];
        let inline = key.len().min(KEY_INLINE_BYTES);
        head[..inline].copy_from_slice(&key[..inline]);
        let (high, low) = head.split_at(8);
        MemKey {
            head: [
                u64::from_be_bytes(high.try_into().expect("8 bytes")),
                u64::from_be_bytes(low.try_into().expect("8 bytes")),
            ],
            tail: key[inline..].into(),
            len: u32::try_from(key.len()).expect("keys are bounded by options"),
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.len as usize
    }

    /// Replaces the contents of `out` with the key's bytes.
    pub(crate) fn write_to(&self, out: &mut Vec<u8>) {
        out.clear();
        let mut head = [0_u8; KEY_INLINE_BYTES];
        head[..8].copy_from_slice(&self.head[0].to_be_bytes());
        head[8..].copy_from_slice(&self.head[1].to_be_bytes());
        out.extend_from_slice(&head[..self.len().min(KEY_INLINE_BYTES)]);
        out.extend_from_slice(&self.tail);
    }

    pub(crate) fn to_vec(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.len());
        self.write_to(&mut out);
        out
    }
}

impl Ord for MemKey {
    fn cmp(&self, other: &MemKey) -> Ordering {
        self.head
            .cmp(&other.head)
            .then_with(|| self.tail.cmp(&other.tail))
            .then_with(|| self.len.cmp(&other.len))
    }
}

impl PartialOrd for MemKey {
    fn partial_cmp(&self, other: &MemKey) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Debug for MemKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", String::from_utf8_lossy(&self.to_vec()))
    }
}

/// Filter bits per key the memtable can hold: with three bits set per key
/// in one 64-bit word, about 1 to 3% of absent keys pass.
const FILTER_BITS_PER_KEY: usize = 8;
/// Filter words at least, for tiny memtables.
const FILTER_WORDS_MIN: usize = 8;

/// Which keys may be in the memtable: a blocked bloom filter of [`key_hash`]
/// values, sized once for the most keys the memtable can hold. Never has
/// false negatives; false positives only cost a search of the map.
#[derive(Debug, Clone)]
struct KeyFilter {
    words: Vec<u64>,
}

impl KeyFilter {
    fn new(keys_max: usize) -> KeyFilter {
        let words = (keys_max.saturating_mul(FILTER_BITS_PER_KEY) / 64).max(FILTER_WORDS_MIN);
        KeyFilter {
            words: vec![0; words],
        }
    }

    /// The word `hash` falls in (its high 32 bits, scaled to the word
    /// count) and the three bits it sets there (from its low 18 bits).
    fn locate(&self, hash: u64) -> (usize, u64) {
        let word = ((hash >> 32) * self.words.len() as u64) >> 32;
        let mask = (1_u64 << (hash & 63)) | (1 << ((hash >> 6) & 63)) | (1 << ((hash >> 12) & 63));
        (word as usize, mask)
    }

    fn insert(&mut self, hash: u64) {
        let (word, mask) = self.locate(hash);
        self.words[word] |= mask;
    }

    fn may_contain(&self, hash: u64) -> bool {
        let (word, mask) = self.locate(hash);
        self.words[word] & mask == mask
    }

    fn bytes(&self) -> usize {
        self.words.len() * 8
    }
}

/// Bytes of an arena chunk. Values are copied into chunks, so a memtable
/// holds a few large allocations instead of one per value, and dropping a
/// flushed memtable frees chunks, not every value.
const ARENA_CHUNK_BYTES: usize = 1024 * 1024;

/// Where a value lies in the arena.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ValueRef {
    chunk: u32,
    offset: u32,
    len: u32,
}

/// A stored version: its timestamp and, unless a tombstone, its value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Slot {
    timestamp: Timestamp,
    value: Option<ValueRef>,
}

/// A stored version, borrowed from the memtable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct EntryRef<'a> {
    pub(crate) timestamp: Timestamp,
    /// The value; `None` for a tombstone.
    pub(crate) value: Option<&'a [u8]>,
}

impl EntryRef<'_> {
    /// The version, copied out.
    pub(crate) fn to_versioned(self) -> Versioned {
        Versioned {
            timestamp: self.timestamp,
            value: self.value.map(<[u8]>::to_vec),
        }
    }
}

/// The ordered in-memory table.
pub(crate) struct Memtable {
    /// Newest known version of each key.
    entries: BTreeMap<MemKey, Slot>,
    /// The hashes of every key in `entries`.
    filter: KeyFilter,
    /// The values' bytes, in chunks that never move once filled.
    arena: Vec<Vec<u8>>,
    /// Approximate memory held, for flush decisions: every value ever
    /// stored (a replaced value stays in the arena) plus each key and its
    /// share of the map.
    bytes_total: usize,
}

impl Memtable {
    /// An empty table whose filter is sized for `bytes_max` bytes of
    /// entries (each key is charged at least [`ENTRY_OVERHEAD_BYTES`]); it
    /// may hold more, with more filter false positives.
    pub(crate) fn new(bytes_max: usize) -> Memtable {
        Memtable {
            entries: BTreeMap::new(),
            filter: KeyFilter::new(bytes_max / ENTRY_OVERHEAD_BYTES),
            arena: Vec::new(),
            bytes_total: 0,
        }
    }

    /// Stores the version (`timestamp`, `value`; `None` is a tombstone)
    /// under `key` if it is newer than the stored version; returns whether
    /// it was stored.
    pub(crate) fn apply(&mut self, key: &[u8], timestamp: Timestamp, value: Option<&[u8]>) -> bool {
        self.apply_key(MemKey::new(key), key_hash(key), timestamp, value)
    }

    /// [`Self::apply`] with the key already converted and hashed
    /// ([`key_hash`] of its bytes).
    pub(crate) fn apply_key(
        &mut self,
        key: MemKey,
        hash: u64,
        timestamp: Timestamp,
        value: Option<&[u8]>,
    ) -> bool {
        if let Some(stored) = self.get_key(&key, hash) {
            if timestamp <= stored.timestamp {
                return false;
            }
        }
        self.filter.insert(hash);
        let slot = Slot {
            timestamp,
            value: value.map(|bytes| self.store(bytes)),
        };
        let key_bytes = key.len();
        if self.entries.insert(key, slot).is_none() {
            self.bytes_total += key_bytes + ENTRY_OVERHEAD_BYTES;
        }
        true
    }

    /// Copies `bytes` into the arena.
    fn store(&mut self, bytes: &[u8]) -> ValueRef {
        let fits = self
            .arena
            .last()
            .is_some_and(|chunk| chunk.capacity() - chunk.len() >= bytes.len());
        if !fits {
            self.arena
                .push(Vec::with_capacity(bytes.len().max(ARENA_CHUNK_BYTES)));
        }
        let chunk_index = self.arena.len() - 1;
        let chunk = &mut self.arena[chunk_index];
        let offset = chunk.len();
        chunk.extend_from_slice(bytes);
        self.bytes_total += bytes.len();
        ValueRef {
            chunk: u32::try_from(chunk_index).expect("fewer than 4 G chunks"),
            offset: u32::try_from(offset).expect("chunks are smaller than 4 GiB"),
            len: u32::try_from(bytes.len()).expect("values are bounded by options"),
        }
    }

    fn entry(&self, slot: &Slot) -> EntryRef<'_> {
        EntryRef {
            timestamp: slot.timestamp,
            value: slot.value.map(|value| {
                let start = value.offset as usize;
                &self.arena[value.chunk as usize][start..start + value.len as usize]
            }),
        }
    }

    /// The stored version of `key`, tombstones included.
    #[cfg(test)]
    pub(crate) fn get(&self, key: &[u8]) -> Option<EntryRef<'_>> {
        self.get_key(&MemKey::new(key), key_hash(key))
    }

    /// The stored version of `key` (of [`key_hash`] `hash`), tombstones
    /// included.
    pub(crate) fn get_key(&self, key: &MemKey, hash: u64) -> Option<EntryRef<'_>> {
        if !self.filter.may_contain(hash) {
            return None;
        }
        self.entries.get(key).map(|slot| self.entry(slot))
    }

    /// Every entry in key order.
    pub(crate) fn iter(&self) -> MemRange<'_> {
        MemRange {
            range: self.entries.range::<MemKey, _>(..),
            memtable: self,
        }
    }

    /// The entries with keys within `start` and `end`, in key order (and
    /// backwards from the end).
    ///
    /// # Panics
    /// If the range is empty and malformed (start after end, or equal and
    /// excluded): callers check with [`range_is_empty`] first.
    pub(crate) fn range(&self, start: Bound<&[u8]>, end: Bound<&[u8]>) -> MemRange<'_> {
        let bound = |b: Bound<&[u8]>| b.map(MemKey::new);
        MemRange {
            range: self.entries.range((bound(start), bound(end))),
            memtable: self,
        }
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

/// Entries of a memtable in key order, either way.
#[derive(Debug)]
pub(crate) struct MemRange<'a> {
    range: btree_map::Range<'a, MemKey, Slot>,
    memtable: &'a Memtable,
}

impl<'a> Iterator for MemRange<'a> {
    type Item = (&'a MemKey, EntryRef<'a>);

    fn next(&mut self) -> Option<Self::Item> {
        let memtable = self.memtable;
        self.range
            .next()
            .map(|(key, slot)| (key, memtable.entry(slot)))
    }
}

impl DoubleEndedIterator for MemRange<'_> {
    fn next_back(&mut self) -> Option<Self::Item> {
        let memtable = self.memtable;
        self.range
            .next_back()
            .map(|(key, slot)| (key, memtable.entry(slot)))
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
            .field("filter_bytes", &self.filter.bytes())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn version(hlc: u64, value: Option<&[u8]>) -> Versioned {
        Versioned {
            timestamp: Timestamp { hlc, node: 1 },
            value: value.map(<[u8]>::to_vec),
        }
    }

    fn apply(table: &mut Memtable, key: &[u8], version: Versioned) -> bool {
        table.apply(key, version.timestamp, version.value.as_deref())
    }

    fn stored(table: &Memtable, key: &[u8]) -> Option<Versioned> {
        table.get(key).map(EntryRef::to_versioned)
    }

    #[test]
    fn newer_version_replaces_older() {
        let mut table = Memtable::new(1 << 20);
        assert!(apply(&mut table, b"k", version(1, Some(b"a"))));
        assert!(apply(&mut table, b"k", version(2, Some(b"bb"))));
        assert_eq!(stored(&table, b"k"), Some(version(2, Some(b"bb"))));
        assert_eq!(table.len(), 1);
    }

    #[test]
    fn older_or_equal_version_is_ignored() {
        let mut table = Memtable::new(1 << 20);
        assert!(apply(&mut table, b"k", version(5, Some(b"new"))));
        assert!(!apply(&mut table, b"k", version(4, Some(b"old"))));
        assert!(!apply(&mut table, b"k", version(5, Some(b"same stamp"))));
        assert_eq!(stored(&table, b"k"), Some(version(5, Some(b"new"))));
        let tie_break = Versioned {
            timestamp: Timestamp { hlc: 5, node: 2 },
            value: None,
        };
        assert!(apply(&mut table, b"k", tie_break));
    }

    #[test]
    fn tombstone_hides_older_value_and_is_returned() {
        let mut table = Memtable::new(1 << 20);
        assert!(apply(&mut table, b"k", version(1, Some(b"v"))));
        assert!(apply(&mut table, b"k", version(2, None)));
        assert!(!apply(&mut table, b"k", version(1, Some(b"v"))));
        assert_eq!(stored(&table, b"k"), Some(version(2, None)));
        assert_eq!(table.len(), 1);
    }

    #[test]
    fn size_accounting_counts_keys_once_and_every_value_stored() {
        let mut table = Memtable::new(1 << 20);
        apply(&mut table, b"key", version(1, Some(&[0; 100])));
        let one = table.bytes_total();
        assert_eq!(one, 3 + 100 + ENTRY_OVERHEAD_BYTES);
        apply(&mut table, b"key", version(2, Some(&[0; 50])));
        assert_eq!(
            table.bytes_total(),
            one + 50,
            "a replaced value stays in the arena"
        );
        apply(&mut table, b"other", version(1, None));
        assert_eq!(table.bytes_total(), one + 50 + 5 + ENTRY_OVERHEAD_BYTES);
    }

    #[test]
    fn large_values_get_their_own_chunk_and_read_back() {
        let mut table = Memtable::new(1 << 20);
        let big = vec![9_u8; ARENA_CHUNK_BYTES + 10];
        apply(&mut table, b"small", version(1, Some(b"x")));
        apply(&mut table, b"big", version(1, Some(&big)));
        apply(&mut table, b"after", version(1, Some(b"y")));
        assert_eq!(stored(&table, b"big"), Some(version(1, Some(&big))));
        assert_eq!(stored(&table, b"small"), Some(version(1, Some(b"x"))));
        assert_eq!(stored(&table, b"after"), Some(version(1, Some(b"y"))));
    }

    #[test]
    fn iteration_is_in_key_order_both_ways() {
        let mut table = Memtable::new(1 << 20);
        for key in [b"c", b"a", b"b"] {
            apply(&mut table, key, version(1, Some(key)));
        }
        let keys: Vec<Vec<u8>> = table.iter().map(|(key, _)| key.to_vec()).collect();
        assert_eq!(keys, vec![b"a".to_vec(), b"b".to_vec(), b"c".to_vec()]);
        let back: Vec<Vec<u8>> = table
            .range(Bound::Excluded(b"a"), Bound::Unbounded)
            .rev()
            .map(|(key, entry)| {
                assert_eq!(entry.value, Some(key.to_vec().as_slice()));
                key.to_vec()
            })
            .collect();
        assert_eq!(back, vec![b"c".to_vec(), b"b".to_vec()]);
    }

    #[test]
    fn filter_passes_every_stored_key_and_few_absent_ones() {
        // Sized for about 1,000 keys, holding 1,000.
        let mut table = Memtable::new(1000 * (ENTRY_OVERHEAD_BYTES + 8));
        for i in 0..1000_u64 {
            apply(&mut table, &i.to_be_bytes(), version(1, Some(b"v")));
        }
        for i in 0..1000_u64 {
            assert!(table.filter.may_contain(key_hash(&i.to_be_bytes())));
            assert!(stored(&table, &i.to_be_bytes()).is_some());
        }
        let passed = (1000..11_000_u64)
            .filter(|i| table.filter.may_contain(key_hash(&i.to_be_bytes())))
            .count();
        assert!(passed < 500, "{passed} of 10000 absent keys passed");
        for i in 1000..11_000_u64 {
            assert!(stored(&table, &i.to_be_bytes()).is_none());
        }
    }

    proptest::proptest! {
        #[test]
        fn overfull_filter_never_hides_a_key(
            keys in proptest::collection::vec(
                proptest::collection::vec(proptest::prelude::any::<u8>(), 0..24),
                1..300,
            ),
        ) {
            // Sized for a handful of keys: saturated, never wrong.
            let mut table = Memtable::new(1);
            for (i, key) in keys.iter().enumerate() {
                apply(&mut table, key, version(i as u64 + 1, Some(key)));
            }
            for key in &keys {
                let found = stored(&table, key).expect("stored");
                proptest::prop_assert_eq!(found.value, Some(key.clone()));
            }
        }

        #[test]
        fn mem_keys_order_as_their_bytes_and_round_trip(
            a in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..40),
            b in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..40),
        ) {
            let (key_a, key_b) = (MemKey::new(&a), MemKey::new(&b));
            proptest::prop_assert_eq!(key_a.cmp(&key_b), a.cmp(&b));
            proptest::prop_assert_eq!(key_a.to_vec(), a);
        }

        #[test]
        fn mem_keys_with_zero_bytes_order_as_their_bytes(
            a in proptest::collection::vec(0_u8..2, 0..20),
            b in proptest::collection::vec(0_u8..2, 0..20),
        ) {
            proptest::prop_assert_eq!(MemKey::new(&a).cmp(&MemKey::new(&b)), a.cmp(&b));
        }
    }
}
