//! The meta block: what a table holds, known without reading its data.
//!
//! # Layout (the contents, before framing)
//!
//! ```text
//! entries u64 LE | tombstones u64 LE
//! | ts min: hlc u64 LE, node u32 LE | ts max: hlc u64 LE, node u32 LE
//! | key min len varint | key min | key max len varint | key max
//! ```

use crate::bytes::{put_varint, Reader};
use crate::error::EngineError;
use crate::sstable::corruption;
use crate::types::Timestamp;

/// A table's key range, timestamp range and counts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TableMeta {
    /// Entries, tombstones included (at least 1).
    pub(crate) entries_total: u64,
    /// Entries that are tombstones.
    pub(crate) tombstones_total: u64,
    /// Oldest and newest timestamps of any entry.
    pub(crate) timestamp_min: Timestamp,
    pub(crate) timestamp_max: Timestamp,
    /// Smallest and greatest keys.
    pub(crate) key_min: Vec<u8>,
    pub(crate) key_max: Vec<u8>,
}

impl TableMeta {
    /// The meta of a table holding just `key` at `timestamp` (a tombstone
    /// if `tombstone`).
    pub(crate) fn first(key: &[u8], timestamp: Timestamp, tombstone: bool) -> TableMeta {
        TableMeta {
            entries_total: 1,
            tombstones_total: u64::from(tombstone),
            timestamp_min: timestamp,
            timestamp_max: timestamp,
            key_min: key.to_vec(),
            key_max: key.to_vec(),
        }
    }

    /// Accounts for `key` at `timestamp`, added after every key so far.
    pub(crate) fn add(&mut self, key: &[u8], timestamp: Timestamp, tombstone: bool) {
        assert!(key > self.key_max.as_slice(), "keys are added in order");
        self.entries_total += 1;
        self.tombstones_total += u64::from(tombstone);
        self.timestamp_min = self.timestamp_min.min(timestamp);
        self.timestamp_max = self.timestamp_max.max(timestamp);
        self.key_max.clear();
        self.key_max.extend_from_slice(key);
    }

    /// Whether `key` lies within the table's key range.
    pub(crate) fn covers(&self, key: &[u8]) -> bool {
        self.key_min.as_slice() <= key && key <= self.key_max.as_slice()
    }

    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut contents = Vec::new();
        contents.extend_from_slice(&self.entries_total.to_le_bytes());
        contents.extend_from_slice(&self.tombstones_total.to_le_bytes());
        for timestamp in [self.timestamp_min, self.timestamp_max] {
            contents.extend_from_slice(&timestamp.hlc.to_le_bytes());
            contents.extend_from_slice(&timestamp.node.to_le_bytes());
        }
        for key in [&self.key_min, &self.key_max] {
            put_varint(&mut contents, key.len() as u64);
            contents.extend_from_slice(key);
        }
        contents
    }

    /// # Errors
    /// `Corruption` naming `file` and `offset` if the block does not parse
    /// or contradicts itself.
    pub(crate) fn decode(
        contents: &[u8],
        file: &str,
        offset: u64,
    ) -> Result<TableMeta, EngineError> {
        let bad = |reason: &str| corruption(file, offset, format!("meta block: {reason}"));
        let mut reader = Reader::new(contents);
        let truncated = || bad("truncated");
        let entries_total = reader.u64_le().ok_or_else(truncated)?;
        let tombstones_total = reader.u64_le().ok_or_else(truncated)?;
        let mut timestamps = [Timestamp::default(); 2];
        for timestamp in &mut timestamps {
            timestamp.hlc = reader.u64_le().ok_or_else(truncated)?;
            timestamp.node = reader.u32_le().ok_or_else(truncated)?;
        }
        let mut keys = [Vec::new(), Vec::new()];
        for key in &mut keys {
            let len = reader.varint_len().ok_or_else(truncated)?;
            *key = reader.take(len).ok_or_else(truncated)?.to_vec();
        }
        let [key_min, key_max] = keys;
        let meta = TableMeta {
            entries_total,
            tombstones_total,
            timestamp_min: timestamps[0],
            timestamp_max: timestamps[1],
            key_min,
            key_max,
        };
        let consistent = reader.is_empty()
            && meta.entries_total >= 1
            && meta.tombstones_total <= meta.entries_total
            && meta.timestamp_min <= meta.timestamp_max
            && meta.key_min <= meta.key_max;
        if !consistent {
            return Err(bad("contradicts itself"));
        }
        Ok(meta)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::types::Versioned;

    #[test]
    fn meta_round_trips_and_tracks_ranges() {
        let v = |hlc, value: Option<&[u8]>| Versioned {
            timestamp: Timestamp { hlc, node: 1 },
            value: value.map(<[u8]>::to_vec),
        };
        let first = v(5, Some(b"x"));
        let mut meta = TableMeta::first(b"b", first.timestamp, first.is_tombstone());
        for (key, version) in [(b"c", v(2, None)), (b"f", v(9, Some(b"y")))] {
            meta.add(key, version.timestamp, version.is_tombstone());
        }
        assert_eq!((meta.entries_total, meta.tombstones_total), (3, 1));
        assert_eq!((meta.timestamp_min.hlc, meta.timestamp_max.hlc), (2, 9));
        assert!(meta.covers(b"d") && !meta.covers(b"a") && !meta.covers(b"g"));
        assert_eq!(
            TableMeta::decode(&meta.encode(), "t", 0).expect("decode"),
            meta
        );
    }

    proptest! {
        #[test]
        fn garbage_meta_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..80)) {
            let _ = TableMeta::decode(&bytes, "t", 0);
        }
    }
}
