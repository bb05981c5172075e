//! Data blocks: sorted entries with prefix-compressed keys and restart
//! points.
//!
//! # Layout (the contents, before framing)
//!
//! Table format version 2 (written):
//!
//! ```text
//! entries, back to back:
//!   shared varint | unshared varint | key suffix
//!   | value tag varint (0 = tombstone, n + 1 = a value of n bytes)
//!   | hlc varint | node varint | value
//! restart offsets: u32 LE each, ascending, the first 0
//! restart count u32 LE (at least 1)
//! ```
//!
//! At a restart point `hlc` is the timestamp's HLC; after one it is the
//! zigzag-coded difference from the HLC of the entry before (wrapping), so
//! the timestamps of a restart interval cost a few bytes each.
//!
//! Version 1 (read only): `shared varint | unshared varint | kind u8 (0 =
//! tombstone, 1 = value) | hlc u64 LE | node u32 LE | [value len varint] |
//! key suffix | value`, the same restart array.
//!
//! `shared` is how many leading bytes the key has in common with the key
//! before it; at a restart point it is 0, so a reader can start decoding
//! there and binary-search the restart points for a key.
//!
//! Readers decode in place: a point read compares restart keys where they
//! lie and rebuilds keys in one reused buffer, and a [`BlockCursor`] walks a
//! shared block without copying entries; only what is returned is copied.

use std::cmp::Ordering;
use std::ops::Range;
use std::sync::Arc;

use crate::bytes::{key_cmp, put_varint, Reader};
use crate::error::EngineError;
use crate::sstable::{corruption, TableVersion};
use crate::types::{Timestamp, Versioned};

/// Entries between restart points: a seek decodes at most this many.
pub(crate) const RESTART_INTERVAL_ENTRIES: usize = 16;
/// Version 1 kind byte of a tombstone entry.
const KIND_TOMBSTONE: u8 = 0;
/// Version 1 kind byte of a value entry.
const KIND_VALUE: u8 = 1;
/// Version 2 value tag of a tombstone (a value of `n` bytes is `n + 1`).
const TAG_TOMBSTONE: u64 = 0;

/// `value` as an unsigned integer with small magnitudes small.
fn zigzag(value: i64) -> u64 {
    ((value << 1) ^ (value >> 63)) as u64
}

fn unzigzag(value: u64) -> i64 {
    ((value >> 1) as i64) ^ -((value & 1) as i64)
}
/// Bytes of a restart offset and of the restart count.
const RESTART_BYTES: usize = 4;
/// Bytes charged to a cached block beyond its contents.
const BLOCK_OVERHEAD_BYTES: usize = 64;

/// Encodes one data block (format version 2).
#[derive(Debug, Default)]
pub(crate) struct BlockBuilder {
    contents: Vec<u8>,
    restarts: Vec<u32>,
    /// The previous key, for prefix compression and the order assertion.
    last_key: Vec<u8>,
    /// The previous entry's HLC, for delta coding.
    last_hlc: u64,
    entries_total: usize,
}

impl BlockBuilder {
    pub(crate) fn new() -> BlockBuilder {
        BlockBuilder::default()
    }

    /// Appends an entry; `value: None` is a tombstone.
    ///
    /// # Panics
    /// If `key` is not greater than the previous key: tables are sorted and
    /// hold one version per key.
    pub(crate) fn add(&mut self, key: &[u8], timestamp: Timestamp, value: Option<&[u8]>) {
        assert!(
            self.entries_total == 0 || key > self.last_key.as_slice(),
            "block keys strictly ascend"
        );
        let restart = self.entries_total % RESTART_INTERVAL_ENTRIES == 0;
        let shared = if restart {
            let offset = u32::try_from(self.contents.len()).expect("blocks stay under 4 GiB");
            self.restarts.push(offset);
            0
        } else {
            common_prefix_len(&self.last_key, key)
        };
        put_varint(&mut self.contents, shared as u64);
        put_varint(&mut self.contents, (key.len() - shared) as u64);
        self.contents.extend_from_slice(&key[shared..]);
        let tag = value.map_or(TAG_TOMBSTONE, |value| value.len() as u64 + 1);
        put_varint(&mut self.contents, tag);
        let hlc = if restart {
            timestamp.hlc
        } else {
            zigzag(timestamp.hlc.wrapping_sub(self.last_hlc) as i64)
        };
        put_varint(&mut self.contents, hlc);
        put_varint(&mut self.contents, u64::from(timestamp.node));
        if let Some(value) = value {
            self.contents.extend_from_slice(value);
        }
        self.last_hlc = timestamp.hlc;
        self.last_key.clear();
        self.last_key.extend_from_slice(key);
        self.entries_total += 1;
    }

    /// Bytes the block would take if finished now.
    pub(crate) fn bytes_estimate(&self) -> usize {
        self.contents.len() + (self.restarts.len() + 1) * RESTART_BYTES
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.entries_total == 0
    }

    /// The last key added.
    pub(crate) fn last_key(&self) -> &[u8] {
        &self.last_key
    }

    /// Appends the finished contents to `out`; the builder is empty again
    /// afterwards (and keeps its buffers).
    pub(crate) fn finish_into(&mut self, out: &mut Vec<u8>) {
        assert!(!self.is_empty(), "an empty block is never written");
        out.extend_from_slice(&self.contents);
        for restart in &self.restarts {
            out.extend_from_slice(&restart.to_le_bytes());
        }
        let count = u32::try_from(self.restarts.len()).expect("bounded by the block size");
        out.extend_from_slice(&count.to_le_bytes());
        self.contents.clear();
        self.restarts.clear();
        self.entries_total = 0;
    }

    /// The finished contents; the builder is empty again afterwards.
    #[cfg(test)]
    pub(crate) fn finish(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        self.finish_into(&mut out);
        out
    }
}

fn common_prefix_len(a: &[u8], b: &[u8]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

/// Where a block came from, for errors.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BlockOrigin<'a> {
    pub(crate) file: &'a str,
    pub(crate) offset: u64,
}

impl BlockOrigin<'_> {
    fn bad(&self, at: usize, reason: &str) -> EngineError {
        corruption(
            self.file,
            self.offset,
            format!("data block entry at {at}: {reason}"),
        )
    }
}

/// A decoded, checked data block.
#[derive(Debug)]
pub(crate) struct Block {
    /// The layout of its entries.
    version: TableVersion,
    contents: Vec<u8>,
    /// Where the entries end (the restart array begins).
    entries_end: usize,
    /// Restart points, read in place from the end of `contents`.
    restarts_total: usize,
}

/// One entry as it lies in a block: where its parts are.
#[derive(Debug, Clone)]
struct EntryParts {
    /// Leading bytes shared with the previous key.
    shared: usize,
    /// The rest of the key.
    suffix: Range<usize>,
    timestamp: Timestamp,
    /// The value; `None` for a tombstone.
    value: Option<Range<usize>>,
    /// Where the next entry starts.
    next: usize,
}

impl Block {
    /// Checks the restart array of `contents`.
    ///
    /// # Errors
    /// `Corruption` naming `origin` if the trailer does not fit or the
    /// restarts are not ascending offsets inside the entries.
    pub(crate) fn decode(
        contents: Vec<u8>,
        version: TableVersion,
        origin: BlockOrigin<'_>,
    ) -> Result<Block, EngineError> {
        let bad =
            |reason: &str| corruption(origin.file, origin.offset, format!("data block: {reason}"));
        let len = contents.len();
        let count_at = len
            .checked_sub(RESTART_BYTES)
            .ok_or_else(|| bad("shorter than its restart count"))?;
        let count = Reader::new(&contents[count_at..])
            .u32_le()
            .expect("4 bytes remain") as usize;
        if count == 0 {
            return Err(bad("no restart points"));
        }
        let entries_end = count
            .checked_mul(RESTART_BYTES)
            .and_then(|bytes| count_at.checked_sub(bytes))
            .ok_or_else(|| bad("restart array larger than the block"))?;
        let mut reader = Reader::new(&contents[entries_end..count_at]);
        let mut previous: Option<u32> = None;
        for _ in 0..count {
            let restart = reader.u32_le().expect("array length checked");
            let ascending = previous.is_none_or(|previous| restart > previous);
            if restart as usize >= entries_end || !ascending || (previous.is_none() && restart != 0)
            {
                return Err(bad("restart points out of order or out of bounds"));
            }
            previous = Some(restart);
        }
        Ok(Block {
            version,
            contents,
            entries_end,
            restarts_total: count,
        })
    }

    /// Restart point `index` (checked at decode).
    fn restart(&self, index: usize) -> usize {
        let at = self.entries_end + index * RESTART_BYTES;
        let bytes = &self.contents[at..at + RESTART_BYTES];
        u32::from_le_bytes(bytes.try_into().expect("4 bytes")) as usize
    }

    /// The bytes at `range` (a value range a cursor reported).
    pub(crate) fn bytes(&self, range: Range<usize>) -> &[u8] {
        &self.contents[range]
    }

    /// Memory the block holds, for the cache's bound.
    pub(crate) fn charge_bytes(&self) -> usize {
        self.contents.capacity() + BLOCK_OVERHEAD_BYTES
    }

    /// Decodes the frame of the entry at `position`, whose predecessor's
    /// key is `previous_len` bytes long and whose predecessor's HLC is
    /// `previous_hlc` (`None` at a restart point).
    fn entry_at(
        &self,
        position: usize,
        previous_len: usize,
        previous_hlc: Option<u64>,
        origin: BlockOrigin<'_>,
    ) -> Result<EntryParts, EngineError> {
        let parts = match self.version {
            TableVersion::V1 => self.entry_at_v1(position, origin)?,
            TableVersion::V2 | TableVersion::V3 | TableVersion::V4 => {
                self.entry_at_v2(position, previous_hlc, origin)?
            }
        };
        if parts.shared > previous_len {
            return Err(origin.bad(position, "shares more bytes than the previous key has"));
        }
        Ok(parts)
    }

    fn entry_at_v2(
        &self,
        position: usize,
        previous_hlc: Option<u64>,
        origin: BlockOrigin<'_>,
    ) -> Result<EntryParts, EngineError> {
        let bytes = &self.contents[position..self.entries_end];
        let mut reader = Reader::new(bytes);
        let truncated = || origin.bad(position, "truncated");
        let shared = reader.varint_len().ok_or_else(truncated)?;
        let unshared = reader.varint_len().ok_or_else(truncated)?;
        let suffix_at = position + reader.position();
        reader.take(unshared).ok_or_else(truncated)?;
        let tag = reader.varint().ok_or_else(truncated)?;
        let hlc = reader.varint().ok_or_else(truncated)?;
        let hlc = match previous_hlc {
            None => hlc,
            Some(previous) => previous.wrapping_add(unzigzag(hlc) as u64),
        };
        let node = reader.varint().ok_or_else(truncated)?;
        let node = u32::try_from(node).map_err(|_| origin.bad(position, "node id over 32 bits"))?;
        let value = if tag == TAG_TOMBSTONE {
            None
        } else {
            let len = usize::try_from(tag - 1).map_err(|_| truncated())?;
            let value_at = position + reader.position();
            reader.take(len).ok_or_else(truncated)?;
            Some(value_at..value_at + len)
        };
        Ok(EntryParts {
            shared,
            suffix: suffix_at..suffix_at + unshared,
            timestamp: Timestamp { hlc, node },
            value,
            next: position + reader.position(),
        })
    }

    fn entry_at_v1(
        &self,
        position: usize,
        origin: BlockOrigin<'_>,
    ) -> Result<EntryParts, EngineError> {
        let bytes = &self.contents[position..self.entries_end];
        let mut reader = Reader::new(bytes);
        let truncated = || origin.bad(position, "truncated");
        let shared = reader.varint_len().ok_or_else(truncated)?;
        let unshared = reader.varint_len().ok_or_else(truncated)?;
        let kind = reader.u8().ok_or_else(truncated)?;
        let hlc = reader.u64_le().ok_or_else(truncated)?;
        let node = reader.u32_le().ok_or_else(truncated)?;
        let value_len = match kind {
            KIND_TOMBSTONE => None,
            KIND_VALUE => Some(reader.varint_len().ok_or_else(truncated)?),
            other => return Err(origin.bad(position, &format!("unknown kind {other}"))),
        };
        let suffix_at = position + reader.position();
        reader.take(unshared).ok_or_else(truncated)?;
        let value = match value_len {
            None => None,
            Some(len) => {
                let value_at = position + reader.position();
                reader.take(len).ok_or_else(truncated)?;
                Some(value_at..value_at + len)
            }
        };
        Ok(EntryParts {
            shared,
            suffix: suffix_at..suffix_at + unshared,
            timestamp: Timestamp { hlc, node },
            value,
            next: position + reader.position(),
        })
    }

    /// The whole key of the entry at restart point `index`.
    /// A binary search reads only the key: in version 2 it comes first, so
    /// the rest of the entry is decoded (and checked) only if the search
    /// lands on it.
    fn restart_key(&self, index: usize, origin: BlockOrigin<'_>) -> Result<&[u8], EngineError> {
        let position = self.restart(index);
        let (shared, key) = match self.version {
            TableVersion::V1 => {
                let parts = self.entry_at(position, 0, None, origin)?;
                (parts.shared, &self.contents[parts.suffix])
            }
            TableVersion::V2 | TableVersion::V3 | TableVersion::V4 => {
                let mut reader = Reader::new(&self.contents[position..self.entries_end]);
                let truncated = || origin.bad(position, "truncated");
                let shared = reader.varint_len().ok_or_else(truncated)?;
                let unshared = reader.varint_len().ok_or_else(truncated)?;
                (shared, reader.take(unshared).ok_or_else(truncated)?)
            }
        };
        if shared != 0 {
            return Err(origin.bad(position, "a restart entry shares key bytes"));
        }
        Ok(key)
    }

    fn version(&self, parts: &EntryParts) -> Versioned {
        Versioned {
            timestamp: parts.timestamp,
            value: parts
                .value
                .as_ref()
                .map(|range| self.contents[range.clone()].to_vec()),
        }
    }

    /// The entry for `key`, if the block holds it: binary search over the
    /// restart points, then a scan of at most one restart interval.
    ///
    /// # Errors
    /// `Corruption` for any entry decoded on the way.
    pub(crate) fn get(
        &self,
        key: &[u8],
        origin: BlockOrigin<'_>,
    ) -> Result<Option<Versioned>, EngineError> {
        // Find the last restart whose key is <= `key`.
        let (mut low, mut high) = (0, self.restarts_total);
        while high - low > 1 {
            let middle = low + (high - low) / 2;
            if key_cmp(self.restart_key(middle, origin)?, key).is_le() {
                low = middle;
            } else {
                high = middle;
            }
        }
        let mut position = self.restart(low);
        let end = if low + 1 < self.restarts_total {
            self.restart(low + 1)
        } else {
            self.entries_end
        };
        let mut current: Vec<u8> = Vec::new();
        let mut previous_hlc = None;
        while position < end {
            let parts = self.entry_at(position, current.len(), previous_hlc, origin)?;
            previous_hlc = Some(parts.timestamp.hlc);
            current.truncate(parts.shared);
            current.extend_from_slice(&self.contents[parts.suffix.clone()]);
            match key_cmp(&current, key) {
                Ordering::Less => {}
                Ordering::Equal => return Ok(Some(self.version(&parts))),
                Ordering::Greater => return Ok(None),
            }
            position = parts.next;
        }
        Ok(None)
    }

    /// Every entry in order, checking that keys strictly ascend and that
    /// restart points fall on entries.
    ///
    /// # Errors
    /// `Corruption` for any entry that does not parse.
    #[cfg(test)]
    pub(crate) fn entries(
        self: &Arc<Block>,
        origin: BlockOrigin<'_>,
    ) -> Result<Vec<(Vec<u8>, Versioned)>, EngineError> {
        let mut cursor = BlockCursor::new(self.clone());
        let mut entries = Vec::new();
        while cursor.advance(origin)? {
            entries.push((cursor.key().to_vec(), cursor.version()));
        }
        Ok(entries)
    }
}

/// Walks the entries of a shared block in order, checking each (keys
/// strictly ascend, restart points fall on entries, a restart entry shares
/// nothing) without copying them.
#[derive(Debug)]
pub(crate) struct BlockCursor {
    block: Arc<Block>,
    /// Where the next entry starts.
    position: usize,
    /// The next restart point expected.
    restart_next: usize,
    /// The current entry, once `advance` returned `true`.
    key: Vec<u8>,
    timestamp: Timestamp,
    value: Option<Range<usize>>,
    /// Whether an entry has been decoded.
    started: bool,
}

impl BlockCursor {
    /// A cursor before the first entry.
    pub(crate) fn new(block: Arc<Block>) -> BlockCursor {
        BlockCursor {
            block,
            position: 0,
            restart_next: 0,
            key: Vec::new(),
            timestamp: Timestamp::default(),
            value: None,
            started: false,
        }
    }

    /// Moves to the next entry; `false` at the end of the block.
    ///
    /// # Errors
    /// `Corruption` naming `origin` for an entry that does not parse or
    /// breaks the block's order.
    pub(crate) fn advance(&mut self, origin: BlockOrigin<'_>) -> Result<bool, EngineError> {
        let block = &*self.block;
        if self.position >= block.entries_end {
            if self.restart_next != block.restarts_total {
                return Err(origin.bad(self.position, "a restart point is not at an entry"));
            }
            return Ok(false);
        }
        let at_restart = self.restart_next < block.restarts_total
            && block.restart(self.restart_next) == self.position;
        let (previous_len, previous_hlc) = if at_restart {
            (0, None)
        } else {
            (self.key.len(), Some(self.timestamp.hlc))
        };
        let parts = block.entry_at(self.position, previous_len, previous_hlc, origin)?;
        if at_restart {
            self.restart_next += 1;
        }
        let suffix = &block.contents[parts.suffix.clone()];
        // Compare before overwriting: the new key must follow the old one.
        if self.started {
            let old_rest = &self.key[parts.shared..];
            if key_cmp(suffix, old_rest).is_le() {
                return Err(origin.bad(self.position, "keys out of order"));
            }
        }
        self.key.truncate(parts.shared);
        self.key.extend_from_slice(suffix);
        self.timestamp = parts.timestamp;
        self.value = parts.value;
        self.position = parts.next;
        self.started = true;
        Ok(true)
    }

    /// Moves to the first entry whose key is at or after `target` (after,
    /// if `exclusive`); `false` if there is none in this block.
    ///
    /// # Errors
    /// As [`Self::advance`].
    pub(crate) fn seek(
        &mut self,
        target: &[u8],
        exclusive: bool,
        origin: BlockOrigin<'_>,
    ) -> Result<bool, EngineError> {
        // Entries before the last restart key below `target` can be skipped.
        let block = &*self.block;
        let (mut low, mut high) = (0, block.restarts_total);
        while high - low > 1 {
            let middle = low + (high - low) / 2;
            if key_cmp(block.restart_key(middle, origin)?, target).is_lt() {
                low = middle;
            } else {
                high = middle;
            }
        }
        self.position = block.restart(low);
        self.restart_next = low;
        self.key.clear();
        self.started = false;
        while self.advance(origin)? {
            let after = match key_cmp(&self.key, target) {
                Ordering::Less => false,
                Ordering::Equal => !exclusive,
                Ordering::Greater => true,
            };
            if after {
                return Ok(true);
            }
        }
        Ok(false)
    }

    pub(crate) fn key(&self) -> &[u8] {
        &self.key
    }

    pub(crate) fn timestamp(&self) -> Timestamp {
        self.timestamp
    }

    pub(crate) fn value(&self) -> Option<&[u8]> {
        self.value
            .as_ref()
            .map(|range| &self.block.contents[range.clone()])
    }

    /// Where the current entry's value lies in the block.
    pub(crate) fn value_range(&self) -> Option<Range<usize>> {
        self.value.clone()
    }

    /// The current entry's version, copied out.
    #[cfg(test)]
    pub(crate) fn version(&self) -> Versioned {
        Versioned {
            timestamp: self.timestamp,
            value: self.value().map(<[u8]>::to_vec),
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::sstable::TableEntry;

    fn version(hlc: u64, value: Option<&[u8]>) -> Versioned {
        Versioned {
            timestamp: Timestamp { hlc, node: 3 },
            value: value.map(<[u8]>::to_vec),
        }
    }

    const ORIGIN: BlockOrigin<'static> = BlockOrigin {
        file: "t",
        offset: 0,
    };

    fn add(builder: &mut BlockBuilder, key: &[u8], version: &Versioned) {
        builder.add(key, version.timestamp, version.value.as_deref());
    }

    fn build(entries: &[TableEntry]) -> Arc<Block> {
        let mut builder = BlockBuilder::new();
        for (key, version) in entries {
            add(&mut builder, key, version);
        }
        Arc::new(Block::decode(builder.finish(), TableVersion::V2, ORIGIN).expect("decode"))
    }

    fn sample(count: usize) -> Vec<TableEntry> {
        (0..count)
            .map(|i| {
                let value = (i % 3 != 0).then(|| format!("value-{i}").into_bytes());
                (
                    format!("user/{:04}", i * 2).into_bytes(),
                    version(i as u64, value.as_deref()),
                )
            })
            .collect()
    }

    #[test]
    fn block_round_trips_values_and_tombstones() {
        let entries = sample(50);
        let block = build(&entries);
        assert_eq!(block.entries(ORIGIN).expect("entries"), entries);
        assert_eq!(
            block.restarts_total,
            50_usize.div_ceil(RESTART_INTERVAL_ENTRIES)
        );
    }

    #[test]
    fn restart_point_seek_finds_every_key_and_no_other() {
        let entries = sample(70);
        let block = build(&entries);
        for (key, version) in &entries {
            assert_eq!(block.get(key, ORIGIN).expect("get"), Some(version.clone()));
            let mut missing = key.clone();
            missing.push(b'!');
            assert_eq!(block.get(&missing, ORIGIN).expect("get"), None);
        }
        assert_eq!(block.get(b"", ORIGIN).expect("get"), None);
        assert_eq!(block.get(b"zzz", ORIGIN).expect("get"), None);
    }

    #[test]
    fn cursor_seek_lands_on_the_first_key_at_or_after_the_target() {
        let entries = sample(70);
        let block = build(&entries);
        for (index, (key, _)) in entries.iter().enumerate() {
            let mut cursor = BlockCursor::new(block.clone());
            assert!(cursor.seek(key, false, ORIGIN).expect("seek"));
            assert_eq!(cursor.key(), key.as_slice());
            let mut cursor = BlockCursor::new(block.clone());
            let found = cursor.seek(key, true, ORIGIN).expect("seek");
            match entries.get(index + 1) {
                Some((next, version)) => {
                    assert!(found);
                    assert_eq!(cursor.key(), next.as_slice());
                    assert_eq!(cursor.version(), *version);
                }
                None => assert!(!found),
            }
        }
    }

    #[test]
    fn close_timestamps_take_a_few_bytes() {
        // HLCs as a node's clock makes them (microseconds << 12), close in
        // time: after each restart point, a small delta rather than 8 bytes.
        let base = 1_700_000_000_000_000_u64 << 12;
        let entries: Vec<TableEntry> = (0..32_u64)
            .map(|i| {
                let hlc = base + (i * 7919 % 32) * 4096;
                (format!("k{i:03}").into_bytes(), version(hlc, Some(b"v")))
            })
            .collect();
        let mut builder = BlockBuilder::new();
        for (key, version) in &entries {
            add(&mut builder, key, version);
        }
        let contents = builder.finish();
        // Per entry: 2 + key suffix (1 to 4) + tag 1 + hlc (3, or 9 at
        // the 2 restarts) + node 1 + value 1; restarts 4 each, count 4.
        assert!(
            contents.len() <= 32 * 13 + 2 * 6 + 12,
            "{} bytes",
            contents.len()
        );
        let block = Arc::new(Block::decode(contents, TableVersion::V2, ORIGIN).expect("decode"));
        assert_eq!(block.entries(ORIGIN).expect("entries"), entries);
    }

    #[test]
    fn keys_share_prefixes_on_disk() {
        let entries = sample(32);
        let mut builder = BlockBuilder::new();
        for (key, version) in &entries {
            add(&mut builder, key, version);
        }
        let raw_key_bytes: usize = entries.iter().map(|(k, _)| k.len()).sum();
        let contents = builder.finish();
        let found = contents
            .windows(b"user/".len())
            .filter(|w| *w == b"user/")
            .count();
        assert_eq!(found, 2, "only restart entries spell out the whole key");
        assert!(contents.len() < raw_key_bytes + 32 * 30);
    }

    #[test]
    #[should_panic(expected = "block keys strictly ascend")]
    fn unsorted_keys_are_a_programmer_error() {
        let mut builder = BlockBuilder::new();
        add(&mut builder, b"b", &version(1, None));
        add(&mut builder, b"a", &version(1, None));
    }

    proptest! {
        #[test]
        fn garbage_blocks_never_panic(
            bytes in prop::collection::vec(any::<u8>(), 0..200),
            version in prop_oneof![Just(TableVersion::V1), Just(TableVersion::V2)],
        ) {
            if let Ok(block) = Block::decode(bytes, version, ORIGIN) {
                let block = Arc::new(block);
                let _ = block.entries(ORIGIN);
                let _ = block.get(b"user/0004", ORIGIN);
                let _ = BlockCursor::new(block).seek(b"user/0004", false, ORIGIN);
            }
        }

        #[test]
        fn any_timestamps_round_trip(
            stamps in prop::collection::vec((any::<u64>(), any::<u32>()), 1..40),
            tombstones in any::<u64>(),
        ) {
            let entries: Vec<TableEntry> = stamps
                .iter()
                .enumerate()
                .map(|(i, &(hlc, node))| {
                    let value = (tombstones >> (i % 64) & 1 == 0).then(|| vec![i as u8; i % 5]);
                    (format!("k{i:03}").into_bytes(), Versioned {
                        timestamp: Timestamp { hlc, node },
                        value,
                    })
                })
                .collect();
            let block = build(&entries);
            prop_assert_eq!(block.entries(ORIGIN).expect("entries"), entries.clone());
            for (key, version) in &entries {
                prop_assert_eq!(block.get(key, ORIGIN).expect("get"), Some(version.clone()));
            }
        }

        #[test]
        fn mutated_blocks_never_panic(index in any::<prop::sample::Index>(), bit in 0_u8..8) {
            let mut builder = BlockBuilder::new();
            for (key, version) in sample(40) {
                add(&mut builder, &key, &version);
            }
            let mut contents = builder.finish();
            let at = index.index(contents.len());
            contents[at] ^= 1 << bit;
            if let Ok(block) = Block::decode(contents, TableVersion::V2, ORIGIN) {
                let block = Arc::new(block);
                let _ = block.entries(ORIGIN);
                let _ = block.get(b"user/0040", ORIGIN);
                let _ = BlockCursor::new(block).seek(b"user/0040", true, ORIGIN);
            }
        }
    }
}
