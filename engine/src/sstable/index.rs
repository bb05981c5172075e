//! The sparse index block: one entry per data block.
//!
//! # Layout (the contents, before framing)
//!
//! Table format version 2 (written):
//!
//! ```text
//! count u32 LE (at least 1), then per data block, in key order:
//!   shared varint | unshared varint | last key suffix | size varint
//! ```
//!
//! `shared` is how many leading bytes the last key has in common with the
//! last key of the block before (0 for the first). Offsets are implied:
//! data blocks lie back to back from offset 0, so a block starts where the
//! one before ends (its offset, plus its size, plus its trailer).
//!
//! Version 1 (read only): `count u32 LE`, then per block `last key len
//! varint | last key | offset u64 LE | size u64 LE`.
//!
//! A key can only be in the first block whose last key is >= it.

use crate::bytes::{put_varint, Reader};
use crate::error::EngineError;
use crate::sstable::corruption;
use crate::sstable::frame::BlockHandle;
use crate::sstable::TableVersion;

/// One data block as the index knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct IndexEntry {
    /// The greatest key in the block.
    pub(crate) last_key: Vec<u8>,
    pub(crate) handle: BlockHandle,
}

/// Encodes the index of a table's data blocks (format version 2), which
/// lie back to back from offset 0.
pub(crate) fn encode(entries: &[IndexEntry]) -> Vec<u8> {
    assert!(!entries.is_empty(), "a table has at least one data block");
    let mut contents = Vec::new();
    let count = u32::try_from(entries.len()).expect("bounded by the table size");
    contents.extend_from_slice(&count.to_le_bytes());
    let mut previous: &[u8] = &[];
    let mut offset = 0;
    for entry in entries {
        assert_eq!(entry.handle.offset, offset, "data blocks lie back to back");
        offset = entry.handle.end().expect("offsets fit in u64");
        let shared = previous
            .iter()
            .zip(&entry.last_key)
            .take_while(|(a, b)| a == b)
            .count();
        put_varint(&mut contents, shared as u64);
        put_varint(&mut contents, (entry.last_key.len() - shared) as u64);
        contents.extend_from_slice(&entry.last_key[shared..]);
        put_varint(&mut contents, entry.handle.size);
        previous = &entry.last_key;
    }
    contents
}

/// A decoded index, laid out for binary search: each block's last key as
/// a 16-byte big-endian prefix (compared as integers, without touching the
/// keys themselves) and, for ties, the whole keys in one buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Index {
    /// First 16 bytes of each last key, zero-padded, as two big-endian
    /// integers: a smaller prefix means a smaller key.
    prefixes: Vec<[u64; 2]>,
    /// Every last key, back to back.
    keys: Vec<u8>,
    /// Where each last key ends in `keys`.
    key_ends: Vec<usize>,
    handles: Vec<BlockHandle>,
}

/// The 16-byte prefix of `key`, zero-padded, as two big-endian integers.
fn prefix(key: &[u8]) -> [u64; 2] {
    let mut head = [0_u8; 16];
    let len = key.len().min(16);
    head[..len].copy_from_slice(&key[..len]);
    let (high, low) = head.split_at(8);
    [
        u64::from_be_bytes(high.try_into().expect("8 bytes")),
        u64::from_be_bytes(low.try_into().expect("8 bytes")),
    ]
}

impl Index {
    /// Number of data blocks (at least 1).
    pub(crate) fn len(&self) -> usize {
        self.handles.len()
    }

    /// The greatest key of block `position`.
    pub(crate) fn last_key(&self, position: usize) -> &[u8] {
        let start = if position == 0 {
            0
        } else {
            self.key_ends[position - 1]
        };
        &self.keys[start..self.key_ends[position]]
    }

    /// Where block `position` lies.
    pub(crate) fn handle(&self, position: usize) -> BlockHandle {
        self.handles[position]
    }

    /// The position of the only block that can hold `key`, if any: the
    /// first whose last key is >= `key`.
    pub(crate) fn find(&self, key: &[u8]) -> Option<usize> {
        let key_prefix = prefix(key);
        // Keys with different prefixes order as their prefixes; only equal
        // prefixes need the whole keys.
        let start = self
            .prefixes
            .partition_point(|&last_prefix| last_prefix < key_prefix);
        let equal =
            self.prefixes[start..].partition_point(|&last_prefix| last_prefix == key_prefix);
        let (mut low, mut high) = (start, start + equal);
        while low < high {
            let middle = low + (high - low) / 2;
            if self.last_key(middle) < key {
                low = middle + 1;
            } else {
                high = middle;
            }
        }
        let position = low;
        (position < self.len()).then_some(position)
    }
}

/// Decodes an index, checking that last keys ascend and that every block
/// lies before `data_end`, in order and without overlap.
///
/// # Errors
/// `Corruption` naming `file` and `offset`.
pub(crate) fn decode(
    contents: &[u8],
    version: TableVersion,
    data_end: u64,
    file: &str,
    offset: u64,
) -> Result<Index, EngineError> {
    let bad = |reason: &str| corruption(file, offset, format!("index block: {reason}"));
    let mut reader = Reader::new(contents);
    let count = reader.u32_le().ok_or_else(|| bad("truncated count"))?;
    if count == 0 {
        return Err(bad("no data blocks"));
    }
    // No capacity from `count`: it came from disk.
    let mut index = Index {
        prefixes: Vec::new(),
        keys: Vec::new(),
        key_ends: Vec::new(),
        handles: Vec::new(),
    };
    let mut expected_offset = 0;
    let mut last_key = Vec::new();
    for _ in 0..count {
        let truncated = || bad("truncated entry");
        let handle = match version {
            TableVersion::V1 => {
                let key_len = reader.varint_len().ok_or_else(truncated)?;
                last_key.clear();
                last_key.extend_from_slice(reader.take(key_len).ok_or_else(truncated)?);
                BlockHandle {
                    offset: reader.u64_le().ok_or_else(truncated)?,
                    size: reader.u64_le().ok_or_else(truncated)?,
                }
            }
            TableVersion::V2 | TableVersion::V3 | TableVersion::V4 => {
                let shared = reader.varint_len().ok_or_else(truncated)?;
                let unshared = reader.varint_len().ok_or_else(truncated)?;
                if shared > last_key.len() {
                    return Err(bad("shares more bytes than the last key before has"));
                }
                last_key.truncate(shared);
                last_key.extend_from_slice(reader.take(unshared).ok_or_else(truncated)?);
                BlockHandle {
                    offset: expected_offset,
                    size: reader.varint().ok_or_else(truncated)?,
                }
            }
        };
        let last_key = last_key.as_slice();
        if handle.offset != expected_offset {
            return Err(bad("data blocks are not contiguous"));
        }
        expected_offset = handle
            .end()
            .filter(|end| *end <= data_end)
            .ok_or_else(|| bad("data block passes the end of the data"))?;
        if !index.handles.is_empty() && index.last_key(index.len() - 1) >= last_key {
            return Err(bad("last keys out of order"));
        }
        index.prefixes.push(prefix(last_key));
        index.keys.extend_from_slice(last_key);
        index.key_ends.push(index.keys.len());
        index.handles.push(handle);
    }
    if !reader.is_empty() || expected_offset != data_end {
        return Err(bad("trailing bytes or unindexed data"));
    }
    Ok(index)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn sample() -> Vec<IndexEntry> {
        vec![
            IndexEntry {
                last_key: b"b".to_vec(),
                handle: BlockHandle {
                    offset: 0,
                    size: 10,
                },
            },
            IndexEntry {
                last_key: b"d".to_vec(),
                handle: BlockHandle {
                    offset: 15,
                    size: 20,
                },
            },
        ]
    }

    #[test]
    fn index_round_trips_and_finds_the_block() {
        let entries = sample();
        let decoded = decode(&encode(&entries), TableVersion::V2, 40, "t", 0).expect("decode");
        assert_eq!(decoded.len(), 2);
        for (position, entry) in entries.iter().enumerate() {
            assert_eq!(decoded.last_key(position), entry.last_key.as_slice());
            assert_eq!(decoded.handle(position), entry.handle);
        }
        assert_eq!(decoded.find(b"a"), Some(0));
        assert_eq!(decoded.find(b"b"), Some(0));
        assert_eq!(decoded.find(b"c"), Some(1));
        assert_eq!(decoded.find(b"e"), None);
    }

    proptest! {
        #[test]
        fn find_agrees_with_a_search_over_whole_keys(
            keys in prop::collection::btree_set(
                prop::collection::vec(prop_oneof![Just(0_u8), Just(1_u8), any::<u8>()], 0..24),
                1..40,
            ),
            probe in prop::collection::vec(prop_oneof![Just(0_u8), Just(1_u8), any::<u8>()], 0..24),
        ) {
            let entries: Vec<IndexEntry> = keys
                .iter()
                .enumerate()
                .map(|(i, key)| IndexEntry {
                    last_key: key.clone(),
                    handle: BlockHandle { offset: i as u64 * 10, size: 5 },
                })
                .collect();
            let index = decode(&encode(&entries), TableVersion::V2, entries.len() as u64 * 10, "t", 0)
                .expect("decode");
            let expected = entries.iter().position(|entry| entry.last_key >= probe);
            prop_assert_eq!(index.find(&probe), expected);
            for key in &keys {
                let expected = entries.iter().position(|entry| entry.last_key >= *key);
                prop_assert_eq!(index.find(key), expected);
            }
        }
    }

    #[test]
    fn block_past_the_data_is_corruption() {
        let err =
            decode(&encode(&sample()), TableVersion::V2, 39, "t", 7).expect_err("past the end");
        assert!(err.to_string().contains("offset 7"), "{err}");
    }

    proptest! {
        #[test]
        fn garbage_index_never_panics(
            bytes in prop::collection::vec(any::<u8>(), 0..100),
            version in prop_oneof![Just(TableVersion::V1), Just(TableVersion::V2)],
        ) {
            let _ = decode(&bytes, version, 1000, "t", 0);
        }
    }
}
