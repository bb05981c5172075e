//! The sparse index block: one entry per data block.
//!
//! # Layout (the contents, before framing)
//!
//! ```text
//! count u32 LE (at least 1), then per data block, in key order:
//!   last key len varint | last key | offset u64 LE | size u64 LE
//! ```
//!
//! A key can only be in the first block whose last key is >= it.

use crate::bytes::{put_varint, Reader};
use crate::error::EngineError;
use crate::sstable::corruption;
use crate::sstable::frame::BlockHandle;

/// One data block as the index knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct IndexEntry {
    /// The greatest key in the block.
    pub(crate) last_key: Vec<u8>,
    pub(crate) handle: BlockHandle,
}

/// Encodes the index of a table's data blocks.
pub(crate) fn encode(entries: &[IndexEntry]) -> Vec<u8> {
    assert!(!entries.is_empty(), "a table has at least one data block");
    let mut contents = Vec::new();
    let count = u32::try_from(entries.len()).expect("bounded by the table size");
    contents.extend_from_slice(&count.to_le_bytes());
    for entry in entries {
        put_varint(&mut contents, entry.last_key.len() as u64);
        contents.extend_from_slice(&entry.last_key);
        contents.extend_from_slice(&entry.handle.offset.to_le_bytes());
        contents.extend_from_slice(&entry.handle.size.to_le_bytes());
    }
    contents
}

/// Decodes an index, checking that last keys ascend and that every block
/// lies before `data_end`, in order and without overlap.
///
/// # Errors
/// `Corruption` naming `file` and `offset`.
pub(crate) fn decode(
    contents: &[u8],
    data_end: u64,
    file: &str,
    offset: u64,
) -> Result<Vec<IndexEntry>, EngineError> {
    let bad = |reason: &str| corruption(file, offset, format!("index block: {reason}"));
    let mut reader = Reader::new(contents);
    let count = reader.u32_le().ok_or_else(|| bad("truncated count"))?;
    if count == 0 {
        return Err(bad("no data blocks"));
    }
    let mut entries: Vec<IndexEntry> = Vec::new();
    let mut expected_offset = 0;
    for _ in 0..count {
        let truncated = || bad("truncated entry");
        let key_len = reader.varint_len().ok_or_else(truncated)?;
        let last_key = reader.take(key_len).ok_or_else(truncated)?.to_vec();
        let handle = BlockHandle {
            offset: reader.u64_le().ok_or_else(truncated)?,
            size: reader.u64_le().ok_or_else(truncated)?,
        };
        if handle.offset != expected_offset {
            return Err(bad("data blocks are not contiguous"));
        }
        expected_offset = handle
            .end()
            .filter(|end| *end <= data_end)
            .ok_or_else(|| bad("data block passes the end of the data"))?;
        if entries.last().is_some_and(|last| last.last_key >= last_key) {
            return Err(bad("last keys out of order"));
        }
        entries.push(IndexEntry { last_key, handle });
    }
    if !reader.is_empty() || expected_offset != data_end {
        return Err(bad("trailing bytes or unindexed data"));
    }
    Ok(entries)
}

/// The position of the only block that can hold `key`, if any.
pub(crate) fn find(entries: &[IndexEntry], key: &[u8]) -> Option<usize> {
    let position = entries.partition_point(|entry| entry.last_key.as_slice() < key);
    (position < entries.len()).then_some(position)
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
        let decoded = decode(&encode(&entries), 40, "t", 0).expect("decode");
        assert_eq!(decoded, entries);
        assert_eq!(find(&decoded, b"a"), Some(0));
        assert_eq!(find(&decoded, b"b"), Some(0));
        assert_eq!(find(&decoded, b"c"), Some(1));
        assert_eq!(find(&decoded, b"e"), None);
    }

    #[test]
    fn block_past_the_data_is_corruption() {
        let err = decode(&encode(&sample()), 39, "t", 7).expect_err("past the end");
        assert!(err.to_string().contains("offset 7"), "{err}");
    }

    proptest! {
        #[test]
        fn garbage_index_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..100)) {
            let _ = decode(&bytes, 1000, "t", 0);
        }
    }
}
