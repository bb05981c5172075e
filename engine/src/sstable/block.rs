//! Data blocks: sorted entries with prefix-compressed keys and restart
//! points.
//!
//! # Layout (the contents, before framing)
//!
//! ```text
//! entries, back to back:
//!   shared varint | unshared varint | kind u8 (0 = tombstone, 1 = value)
//!   | hlc u64 LE | node u32 LE | [value len varint] | key suffix | value
//! restart offsets: u32 LE each, ascending, the first 0
//! restart count u32 LE (at least 1)
//! ```
//!
//! `shared` is how many leading bytes the key has in common with the key
//! before it; at a restart point it is 0, so a reader can start decoding
//! there and binary-search the restart points for a key.

use std::cmp::Ordering;

use crate::bytes::{put_varint, Reader};
use crate::error::EngineError;
use crate::sstable::{corruption, TableEntry};
use crate::types::{Timestamp, Versioned};

/// Entries between restart points: a seek decodes at most this many.
pub(crate) const RESTART_INTERVAL_ENTRIES: usize = 16;
/// Kind byte of a tombstone entry.
const KIND_TOMBSTONE: u8 = 0;
/// Kind byte of a value entry.
const KIND_VALUE: u8 = 1;
/// Bytes of a restart offset and of the restart count.
const RESTART_BYTES: usize = 4;

/// Encodes one data block.
#[derive(Debug, Default)]
pub(crate) struct BlockBuilder {
    contents: Vec<u8>,
    restarts: Vec<u32>,
    /// The previous key, for prefix compression and the order assertion.
    last_key: Vec<u8>,
    entries_total: usize,
}

impl BlockBuilder {
    pub(crate) fn new() -> BlockBuilder {
        BlockBuilder::default()
    }

    /// Appends an entry.
    ///
    /// # Panics
    /// If `key` is not greater than the previous key: tables are sorted and
    /// hold one version per key.
    pub(crate) fn add(&mut self, key: &[u8], version: &Versioned) {
        assert!(
            self.entries_total == 0 || key > self.last_key.as_slice(),
            "block keys strictly ascend"
        );
        let shared = if self.entries_total % RESTART_INTERVAL_ENTRIES == 0 {
            let offset = u32::try_from(self.contents.len()).expect("blocks stay under 4 GiB");
            self.restarts.push(offset);
            0
        } else {
            common_prefix_len(&self.last_key, key)
        };
        put_varint(&mut self.contents, shared as u64);
        put_varint(&mut self.contents, (key.len() - shared) as u64);
        match &version.value {
            None => self.contents.push(KIND_TOMBSTONE),
            Some(_) => self.contents.push(KIND_VALUE),
        }
        self.contents
            .extend_from_slice(&version.timestamp.hlc.to_le_bytes());
        self.contents
            .extend_from_slice(&version.timestamp.node.to_le_bytes());
        if let Some(value) = &version.value {
            put_varint(&mut self.contents, value.len() as u64);
        }
        self.contents.extend_from_slice(&key[shared..]);
        if let Some(value) = &version.value {
            self.contents.extend_from_slice(value);
        }
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

    /// The finished contents; the builder is empty again afterwards.
    pub(crate) fn finish(&mut self) -> Vec<u8> {
        assert!(!self.is_empty(), "an empty block is never written");
        let mut contents = std::mem::take(&mut self.contents);
        for restart in &self.restarts {
            contents.extend_from_slice(&restart.to_le_bytes());
        }
        let count = u32::try_from(self.restarts.len()).expect("bounded by the block size");
        contents.extend_from_slice(&count.to_le_bytes());
        self.restarts.clear();
        self.entries_total = 0;
        contents
    }
}

fn common_prefix_len(a: &[u8], b: &[u8]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

/// A decoded, checked data block.
#[derive(Debug)]
pub(crate) struct Block {
    contents: Vec<u8>,
    /// Where the entries end (the restart array begins).
    entries_end: usize,
    restarts: Vec<usize>,
    /// For errors: the file and the block's offset in it.
    file: String,
    offset: u64,
}

impl Block {
    /// Checks the restart array of `contents`, read from `file` at `offset`.
    ///
    /// # Errors
    /// `Corruption` if the trailer does not fit or the restarts are not
    /// ascending offsets inside the entries.
    pub(crate) fn decode(contents: Vec<u8>, file: &str, offset: u64) -> Result<Block, EngineError> {
        let bad = |reason: &str| corruption(file, offset, format!("data block: {reason}"));
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
        let mut restarts = Vec::with_capacity(count);
        for _ in 0..count {
            let restart = reader.u32_le().expect("array length checked") as usize;
            let ascending = restarts.last().is_none_or(|previous| restart > *previous);
            if restart >= entries_end || !ascending || (restarts.is_empty() && restart != 0) {
                return Err(bad("restart points out of order or out of bounds"));
            }
            restarts.push(restart);
        }
        Ok(Block {
            contents,
            entries_end,
            restarts,
            file: file.to_owned(),
            offset,
        })
    }

    fn bad(&self, at: usize, reason: &str) -> EngineError {
        corruption(
            &self.file,
            self.offset,
            format!("data block entry at {at}: {reason}"),
        )
    }

    /// Decodes the entry at `position` given the previous key; returns the
    /// entry and the position after it.
    fn entry_at(
        &self,
        position: usize,
        previous_key: &[u8],
    ) -> Result<(TableEntry, usize), EngineError> {
        let bytes = &self.contents[position..self.entries_end];
        let mut reader = Reader::new(bytes);
        let truncated = || self.bad(position, "truncated");
        let shared = reader.varint_len().ok_or_else(truncated)?;
        let unshared = reader.varint_len().ok_or_else(truncated)?;
        let kind = reader.u8().ok_or_else(truncated)?;
        let hlc = reader.u64_le().ok_or_else(truncated)?;
        let node = reader.u32_le().ok_or_else(truncated)?;
        let value_len = match kind {
            KIND_TOMBSTONE => None,
            KIND_VALUE => Some(reader.varint_len().ok_or_else(truncated)?),
            other => return Err(self.bad(position, &format!("unknown kind {other}"))),
        };
        if shared > previous_key.len() {
            return Err(self.bad(position, "shares more bytes than the previous key has"));
        }
        let suffix = reader.take(unshared).ok_or_else(truncated)?;
        let mut key = Vec::with_capacity(shared + suffix.len());
        key.extend_from_slice(&previous_key[..shared]);
        key.extend_from_slice(suffix);
        let value = match value_len {
            None => None,
            Some(len) => Some(reader.take(len).ok_or_else(truncated)?.to_vec()),
        };
        let version = Versioned {
            timestamp: Timestamp { hlc, node },
            value,
        };
        Ok(((key, version), position + reader.position()))
    }

    /// Every entry, in order, checking that keys strictly ascend.
    ///
    /// # Errors
    /// `Corruption` for any entry that does not parse.
    pub(crate) fn entries(&self) -> Result<Vec<TableEntry>, EngineError> {
        let mut entries: Vec<TableEntry> = Vec::new();
        let mut position = 0;
        let mut restart_next = 0;
        while position < self.entries_end {
            let at_restart = self.restarts.get(restart_next) == Some(&position);
            let previous: &[u8] = match entries.last() {
                Some((key, _)) if !at_restart => key,
                _ => &[],
            };
            let (entry, next) = self.entry_at(position, previous)?;
            if let Some((last, _)) = entries.last() {
                if entry.0 <= *last {
                    return Err(self.bad(position, "keys out of order"));
                }
            }
            if at_restart {
                restart_next += 1;
            }
            entries.push(entry);
            position = next;
        }
        if restart_next != self.restarts.len() {
            return Err(self.bad(position, "a restart point is not at an entry"));
        }
        Ok(entries)
    }

    /// The entry for `key`, if the block holds it: binary search over the
    /// restart points, then a scan of at most one restart interval.
    ///
    /// # Errors
    /// `Corruption` for any entry decoded on the way.
    pub(crate) fn get(&self, key: &[u8]) -> Result<Option<Versioned>, EngineError> {
        // Find the last restart whose key is <= `key`.
        let (mut low, mut high) = (0, self.restarts.len());
        while high - low > 1 {
            let middle = low + (high - low) / 2;
            let ((restart_key, _), _) = self.entry_at(self.restarts[middle], &[])?;
            if restart_key.as_slice() <= key {
                low = middle;
            } else {
                high = middle;
            }
        }
        let mut position = self.restarts[low];
        let end = self
            .restarts
            .get(low + 1)
            .copied()
            .unwrap_or(self.entries_end);
        let mut previous = Vec::new();
        while position < end {
            let ((entry_key, version), next) = self.entry_at(position, &previous)?;
            match entry_key.as_slice().cmp(key) {
                Ordering::Less => {}
                Ordering::Equal => return Ok(Some(version)),
                Ordering::Greater => return Ok(None),
            }
            previous = entry_key;
            position = next;
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn version(hlc: u64, value: Option<&[u8]>) -> Versioned {
        Versioned {
            timestamp: Timestamp { hlc, node: 3 },
            value: value.map(<[u8]>::to_vec),
        }
    }

    fn build(entries: &[TableEntry]) -> Block {
        let mut builder = BlockBuilder::new();
        for (key, version) in entries {
            builder.add(key, version);
        }
        Block::decode(builder.finish(), "t", 0).expect("decode")
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
        assert_eq!(block.entries().expect("entries"), entries);
        assert_eq!(
            block.restarts.len(),
            50_usize.div_ceil(RESTART_INTERVAL_ENTRIES)
        );
    }

    #[test]
    fn restart_point_seek_finds_every_key_and_no_other() {
        let entries = sample(70);
        let block = build(&entries);
        for (key, version) in &entries {
            assert_eq!(block.get(key).expect("get"), Some(version.clone()));
            let mut missing = key.clone();
            missing.push(b'!');
            assert_eq!(block.get(&missing).expect("get"), None);
        }
        assert_eq!(block.get(b"").expect("get"), None);
        assert_eq!(block.get(b"zzz").expect("get"), None);
    }

    #[test]
    fn keys_share_prefixes_on_disk() {
        let entries = sample(32);
        let mut builder = BlockBuilder::new();
        for (key, version) in &entries {
            builder.add(key, version);
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
        builder.add(b"b", &version(1, None));
        builder.add(b"a", &version(1, None));
    }

    proptest! {
        #[test]
        fn garbage_blocks_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
            if let Ok(block) = Block::decode(bytes, "t", 0) {
                let _ = block.entries();
                let _ = block.get(b"user/0004");
            }
        }

        #[test]
        fn mutated_blocks_never_panic(index in any::<prop::sample::Index>(), bit in 0_u8..8) {
            let mut builder = BlockBuilder::new();
            for (key, version) in sample(40) {
                builder.add(&key, &version);
            }
            let mut contents = builder.finish();
            let at = index.index(contents.len());
            contents[at] ^= 1 << bit;
            if let Ok(block) = Block::decode(contents, "t", 0) {
                let _ = block.entries();
                let _ = block.get(b"user/0040");
            }
        }
    }
}
