//! Opens a table and serves point reads and ordered iteration.
//!
//! Opening reads the footer, then the index, bloom and meta blocks, and
//! keeps them in memory; data blocks are read (and checked) on demand. Every
//! length and offset read from the file is checked against the file before
//! it is used, so no byte pattern makes the reader panic or allocate beyond
//! the file's size (or [`BLOCK_BYTES_LIMIT`]).

use std::ops::Bound;

use crate::disk::{Disk, DiskFile};
use crate::error::EngineError;
use crate::sstable::block::Block;
use crate::sstable::bloom::Bloom;
use crate::sstable::footer::{Footer, FOOTER_BYTES};
use crate::sstable::frame::{unseal, BlockHandle, BLOCK_BYTES_LIMIT, TRAILER_BYTES};
use crate::sstable::index::{self, IndexEntry};
use crate::sstable::meta::TableMeta;
use crate::sstable::{corruption, table_name, TableEntry};
use crate::types::Versioned;

/// An open table.
#[derive(Debug)]
pub(crate) struct Table<F: DiskFile> {
    /// Its id: the manifest's name for it, and its age (higher is newer).
    pub(crate) id: u64,
    /// Its file name, for errors.
    name: String,
    file: F,
    /// Size of the file, for compaction policy.
    pub(crate) file_bytes: u64,
    index: Vec<IndexEntry>,
    bloom: Bloom,
    pub(crate) meta: TableMeta,
}

impl<F: DiskFile> Table<F> {
    /// Opens table `id` on `disk`, checking footer and metadata blocks.
    ///
    /// # Errors
    /// Disk errors; `Corruption`/`ChecksumMismatch` naming the file and the
    /// offset of the damaged part.
    pub(crate) fn open<D: Disk<File = F>>(disk: &D, id: u64) -> Result<Table<F>, EngineError> {
        let name = table_name(id);
        let file = disk.open(&name)?;
        let file_bytes = file.len()?;
        let footer_at = file_bytes
            .checked_sub(FOOTER_BYTES)
            .ok_or_else(|| corruption(&name, 0, "file shorter than a table footer"))?;
        let mut footer_bytes = vec![0_u8; FOOTER_BYTES as usize];
        file.read_at(footer_at, &mut footer_bytes)?;
        let footer = Footer::decode(&footer_bytes, &name, footer_at)?;
        // The metadata blocks follow the data, in this order, up to the footer.
        let index_end = check_handle(&name, footer.index, footer_at, "index")?;
        let bloom_end = check_handle(&name, footer.bloom, footer_at, "bloom")?;
        let meta_end = check_handle(&name, footer.meta, footer_at, "meta")?;
        if index_end != footer.bloom.offset
            || bloom_end != footer.meta.offset
            || meta_end != footer_at
        {
            return Err(corruption(
                &name,
                footer_at,
                "metadata blocks are not contiguous",
            ));
        }
        let index_contents = read_block(&file, &name, footer.index)?;
        let index = index::decode(
            &index_contents,
            footer.index.offset,
            &name,
            footer.index.offset,
        )?;
        let bloom_contents = read_block(&file, &name, footer.bloom)?;
        let bloom = Bloom::decode(&bloom_contents, &name, footer.bloom.offset)?;
        let meta_contents = read_block(&file, &name, footer.meta)?;
        let meta = TableMeta::decode(&meta_contents, &name, footer.meta.offset)?;
        let index_last = &index.last().expect("decode checks count >= 1").last_key;
        if *index_last != meta.key_max {
            return Err(corruption(
                &name,
                footer.meta.offset,
                "meta key range disagrees with the index",
            ));
        }
        Ok(Table {
            id,
            name,
            file,
            file_bytes,
            index,
            bloom,
            meta,
        })
    }

    /// Data block `position` of the index, decoded.
    fn data_block(&self, position: usize) -> Result<Block, EngineError> {
        let handle = self.index[position].handle;
        let contents = read_block(&self.file, &self.name, handle)?;
        Block::decode(contents, &self.name, handle.offset)
    }

    /// Whether the bloom filter and key range allow `key` to be here.
    pub(crate) fn may_contain(&self, key: &[u8]) -> bool {
        self.meta.covers(key) && self.bloom.may_contain(key)
    }

    /// The version of `key` stored here, tombstones included.
    ///
    /// # Errors
    /// Disk errors and corruption of the block read.
    pub(crate) fn get(&self, key: &[u8]) -> Result<Option<Versioned>, EngineError> {
        if !self.may_contain(key) {
            return Ok(None);
        }
        match index::find(&self.index, key) {
            None => Ok(None),
            Some(position) => self.data_block(position)?.get(key),
        }
    }

    /// The entries with keys at or after `start`, in key order.
    pub(crate) fn iter(&self, start: Bound<&[u8]>) -> TableIter<'_, F> {
        let block_next = match start {
            Bound::Unbounded => 0,
            Bound::Included(key) | Bound::Excluded(key) => {
                index::find(&self.index, key).unwrap_or(self.index.len())
            }
        };
        TableIter {
            table: self,
            block_next,
            entries: Vec::new().into_iter(),
            start: match start {
                Bound::Unbounded => Bound::Unbounded,
                Bound::Included(key) => Bound::Included(key.to_vec()),
                Bound::Excluded(key) => Bound::Excluded(key.to_vec()),
            },
            failed: false,
        }
    }
}

/// Checks that `handle` lies before `limit`; returns where it ends.
fn check_handle(
    name: &str,
    handle: BlockHandle,
    limit: u64,
    what: &str,
) -> Result<u64, EngineError> {
    handle
        .end()
        .filter(|end| *end <= limit && handle.size <= BLOCK_BYTES_LIMIT)
        .ok_or_else(|| corruption(name, handle.offset, format!("{what} block out of bounds")))
}

/// Reads, checks and unpacks the block at `handle`, whose bounds were
/// checked against the file (footer handles by [`check_handle`], data
/// handles by the index decoder).
fn read_block<F: DiskFile>(
    file: &F,
    name: &str,
    handle: BlockHandle,
) -> Result<Vec<u8>, EngineError> {
    if handle.size > BLOCK_BYTES_LIMIT {
        return Err(corruption(
            name,
            handle.offset,
            "block larger than the limit",
        ));
    }
    let len = usize::try_from(handle.size + TRAILER_BYTES).expect("bounded by BLOCK_BYTES_LIMIT");
    let mut framed = vec![0_u8; len];
    file.read_at(handle.offset, &mut framed)?;
    unseal(&framed, name, handle.offset)
}

/// Entries of one table in key order, from a start bound; yields at most
/// one error, then ends.
#[derive(Debug)]
pub(crate) struct TableIter<'a, F: DiskFile> {
    table: &'a Table<F>,
    block_next: usize,
    entries: std::vec::IntoIter<TableEntry>,
    /// Entries before this are skipped (only the first block has any).
    start: Bound<Vec<u8>>,
    failed: bool,
}

impl<F: DiskFile> Iterator for TableIter<'_, F> {
    type Item = Result<TableEntry, EngineError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        loop {
            if let Some(entry) = self.entries.next() {
                let after_start = match &self.start {
                    Bound::Unbounded => true,
                    Bound::Included(start) => entry.0 >= *start,
                    Bound::Excluded(start) => entry.0 > *start,
                };
                if after_start {
                    return Some(Ok(entry));
                }
                continue;
            }
            if self.block_next >= self.table.index.len() {
                return None;
            }
            let position = self.block_next;
            self.block_next += 1;
            let entries = self
                .table
                .data_block(position)
                .and_then(|block| block.entries())
                .and_then(|entries| self.check_block_keys(position, entries));
            match entries {
                Ok(entries) => self.entries = entries.into_iter(),
                Err(err) => {
                    self.failed = true;
                    return Some(Err(err));
                }
            }
        }
    }
}

impl<F: DiskFile> TableIter<'_, F> {
    /// A block's keys must lie after the previous block's last key and up
    /// to its own, or the merge above would see keys out of order.
    fn check_block_keys(
        &self,
        position: usize,
        entries: Vec<TableEntry>,
    ) -> Result<Vec<TableEntry>, EngineError> {
        let index = &self.table.index;
        let after_previous = position == 0
            || entries
                .first()
                .is_some_and(|(key, _)| *key > index[position - 1].last_key);
        let last_matches = entries
            .last()
            .is_some_and(|(key, _)| *key == index[position].last_key);
        if after_previous && last_matches {
            Ok(entries)
        } else {
            Err(corruption(
                &self.table.name,
                index[position].handle.offset,
                "data block keys disagree with the index",
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::fs_disk::FsDisk;
    use crate::sstable::writer::write_table;
    use crate::sstable::{TableCompression, TableOptions};
    use crate::types::Timestamp;

    fn options(compression: TableCompression) -> TableOptions {
        TableOptions {
            block_bytes_target: 512,
            compression,
            bloom_bits_per_key: 10,
        }
    }

    fn sample(count: u64) -> Vec<TableEntry> {
        (0..count)
            .map(|i| {
                let value = (i % 5 != 0).then(|| format!("value {i} ").repeat(4).into_bytes());
                (
                    format!("key-{:05}", i * 3).into_bytes(),
                    Versioned {
                        timestamp: Timestamp {
                            hlc: 1000 - i,
                            node: 2,
                        },
                        value,
                    },
                )
            })
            .collect()
    }

    fn written(
        entries: &[TableEntry],
        compression: TableCompression,
    ) -> (tempfile::TempDir, FsDisk, Table<crate::fs_disk::FsFile>) {
        let dir = tempfile::tempdir().expect("tempdir");
        let disk = FsDisk::open(dir.path()).expect("disk");
        let done = write_table(
            &disk,
            7,
            entries.iter().cloned().map(Ok),
            options(compression),
            true,
        )
        .expect("write")
        .expect("not empty");
        let table = Table::open(&disk, 7).expect("open");
        assert_eq!(table.file_bytes, done.file_bytes);
        assert_eq!(table.meta, done.meta);
        (dir, disk, table)
    }

    #[test]
    fn table_round_trips_through_many_blocks() {
        for compression in [TableCompression::None, TableCompression::Lz4] {
            let entries = sample(400);
            let (_dir, disk, table) = written(&entries, compression);
            assert!(table.index.len() > 10, "expected many blocks");
            assert_eq!(disk.list().expect("list"), vec![table_name(7)]);
            let all: Vec<TableEntry> = table
                .iter(Bound::Unbounded)
                .collect::<Result<_, _>>()
                .expect("iter");
            assert_eq!(all, entries);
            for (key, version) in &entries {
                assert_eq!(table.get(key).expect("get"), Some(version.clone()));
            }
            assert_eq!(table.get(b"key-00001").expect("get"), None);
            assert_eq!(table.meta.entries_total, 400);
            assert_eq!(table.meta.tombstones_total, 80);
            assert_eq!(table.meta.timestamp_min.hlc, 601);
            assert_eq!(table.meta.key_min, b"key-00000");
        }
    }

    #[test]
    fn lz4_tables_are_smaller() {
        let entries = sample(400);
        let (_a, _, plain) = written(&entries, TableCompression::None);
        let (_b, _, packed) = written(&entries, TableCompression::Lz4);
        assert!(packed.file_bytes < plain.file_bytes / 2);
    }

    #[test]
    fn iteration_starts_at_its_bound() {
        let entries = sample(200);
        let (_dir, _disk, table) = written(&entries, TableCompression::Lz4);
        let keys = |start: Bound<&[u8]>| -> Vec<Vec<u8>> {
            table
                .iter(start)
                .map(|e| e.expect("entry").0)
                .take(2)
                .collect()
        };
        assert_eq!(
            keys(Bound::Included(b"key-00300")),
            vec![b"key-00300".to_vec(), b"key-00303".to_vec()]
        );
        assert_eq!(
            keys(Bound::Excluded(b"key-00300")),
            vec![b"key-00303".to_vec(), b"key-00306".to_vec()]
        );
        assert_eq!(
            keys(Bound::Included(b"key-00301")),
            vec![b"key-00303".to_vec(), b"key-00306".to_vec()]
        );
        assert!(keys(Bound::Excluded(b"key-00597")).is_empty());
    }

    #[test]
    fn corrupted_data_block_is_reported_with_file_and_offset() {
        let entries = sample(300);
        let (dir, disk, table) = written(&entries, TableCompression::None);
        let victim = table.index[3].handle;
        let key = entries
            .iter()
            .find(|(k, _)| *k > table.index[2].last_key)
            .expect("a key in block 3")
            .0
            .clone();
        drop(table);
        let mut file = disk.open(&table_name(7)).expect("open");
        let mut byte = [0_u8];
        file.read_at(victim.offset + 10, &mut byte).expect("read");
        file.write_at(victim.offset + 10, &[byte[0] ^ 0x40])
            .expect("write");
        let table = Table::open(&disk, 7).expect("metadata is intact");
        match table.get(&key) {
            Err(EngineError::ChecksumMismatch { file, offset, .. }) => {
                assert_eq!((file, offset), (table_name(7), victim.offset));
            }
            other => panic!("expected a checksum mismatch, got {other:?}"),
        }
        let scan: Result<Vec<_>, _> = table.iter(Bound::Unbounded).collect();
        assert!(scan.is_err());
        drop(dir);
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

        #[test]
        fn mutated_tables_never_panic(
            flips in prop::collection::vec((any::<prop::sample::Index>(), 0_u8..8), 1..4),
            cut in prop::option::of(any::<prop::sample::Index>()),
        ) {
            let entries = sample(60);
            let (_dir, disk, table) = written(&entries, TableCompression::Lz4);
            let len = table.file_bytes as usize;
            drop(table);
            let mut file = disk.open(&table_name(7)).expect("open");
            let mut bytes = vec![0_u8; len];
            file.read_at(0, &mut bytes).expect("read");
            for (index, bit) in flips {
                bytes[index.index(len)] ^= 1 << bit;
            }
            if let Some(cut) = cut {
                bytes.truncate(cut.index(len));
            }
            file.truncate(0).expect("truncate");
            file.write_at(0, &bytes).expect("write");
            if let Ok(table) = Table::open(&disk, 7) {
                for (key, _) in entries.iter().step_by(7) {
                    let _ = table.get(key);
                }
                let _ = table.iter(Bound::Unbounded).count();
            }
        }

        #[test]
        fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
            let dir = tempfile::tempdir().expect("tempdir");
            let disk = FsDisk::open(dir.path()).expect("disk");
            disk.create(&table_name(1)).expect("create").write_at(0, &bytes).expect("write");
            if let Ok(table) = Table::open(&disk, 1) {
                let _ = table.get(b"key");
                let _ = table.iter(Bound::Unbounded).count();
            }
        }
    }
}
