//! The merged cursor: many sorted sources read as one, last write wins.
//!
//! Each source (a memtable, a frozen memtable, a table) yields entries in
//! strictly ascending key order (or strictly descending, for a reverse
//! merge). The merge yields each key once, with the version of highest
//! [`crate::Timestamp`] among the sources that hold it, regardless of which
//! source is newer: a replica may receive an older write after a newer one
//! was flushed. The first error of any source ends the merge.
//!
//! Entries are not copied on the way: the caller reads the winning entry
//! in place ([`Merge::key`], [`Merge::timestamp`], [`Merge::value`]) and
//! copies only what it keeps.

use std::cmp::Ordering;

use crate::bytes::key_cmp;
use crate::disk::DiskFile;
use crate::error::EngineError;
use crate::memtable::{EntryRef, MemRange};
use crate::sstable::reader::TableCursor;
use crate::types::Timestamp;
#[cfg(test)]
use crate::types::Versioned;

/// One source of a merge.
#[derive(Debug)]
pub(crate) enum Cursor<'a, F: DiskFile> {
    /// A range of a memtable.
    Memtable {
        range: MemRange<'a>,
        reverse: bool,
        /// The current key's bytes.
        key: Vec<u8>,
        /// The current entry; `None` once the range is done.
        current: Option<EntryRef<'a>>,
    },
    /// A table, already positioned by `seek`.
    Table(TableCursor<'a, F>),
}

impl<'a, F: DiskFile> Cursor<'a, F> {
    /// A cursor over a memtable range, standing on its first entry.
    pub(crate) fn memtable(range: MemRange<'a>, reverse: bool) -> Cursor<'a, F> {
        let mut cursor = Cursor::Memtable {
            range,
            reverse,
            key: Vec::new(),
            current: None,
        };
        cursor.step_memtable();
        cursor
    }

    fn step_memtable(&mut self) {
        if let Cursor::Memtable {
            range,
            reverse,
            key,
            current,
        } = self
        {
            let next = if *reverse {
                range.next_back()
            } else {
                range.next()
            };
            *current = next.map(|(mem_key, entry)| {
                mem_key.write_to(key);
                entry
            });
        }
    }

    fn valid(&self) -> bool {
        match self {
            Cursor::Memtable { current, .. } => current.is_some(),
            Cursor::Table(table) => table.valid(),
        }
    }

    fn key(&self) -> &[u8] {
        match self {
            Cursor::Memtable { key, .. } => key,
            Cursor::Table(table) => table.key(),
        }
    }

    fn timestamp(&self) -> Timestamp {
        match self {
            Cursor::Memtable { current, .. } => current.expect("a valid cursor").timestamp,
            Cursor::Table(table) => table.timestamp(),
        }
    }

    fn value(&self) -> Option<&[u8]> {
        match self {
            Cursor::Memtable { current, .. } => current.expect("a valid cursor").value,
            Cursor::Table(table) => table.value(),
        }
    }

    fn advance(&mut self) -> Result<(), EngineError> {
        match self {
            Cursor::Memtable { .. } => {
                self.step_memtable();
                Ok(())
            }
            Cursor::Table(table) => table.advance(),
        }
    }
}

/// The merge of several cursors; see the module documentation.
#[derive(Debug)]
pub(crate) struct Merge<'a, F: DiskFile> {
    cursors: Vec<Cursor<'a, F>>,
    reverse: bool,
    /// The cursor holding the current entry, once `next` returned `true`.
    winner: Option<usize>,
    /// Every cursor standing on the current key: they all move on next.
    tied: Vec<usize>,
    /// Set by an error: the merge yields nothing more.
    failed: bool,
}

impl<'a, F: DiskFile> Merge<'a, F> {
    /// Merges `cursors`, each already positioned on its first entry, in
    /// ascending key order, or descending if `reverse`.
    pub(crate) fn new(cursors: Vec<Cursor<'a, F>>, reverse: bool) -> Merge<'a, F> {
        Merge {
            cursors,
            reverse,
            winner: None,
            tied: Vec::new(),
            failed: false,
        }
    }

    /// Moves to the next key; `false` when every cursor is done.
    ///
    /// # Errors
    /// The first error of any cursor; the merge yields nothing after it.
    pub(crate) fn next(&mut self) -> Result<bool, EngineError> {
        if self.failed {
            return Ok(false);
        }
        let result = self.step();
        if result.is_err() {
            self.failed = true;
            self.winner = None;
        }
        result
    }

    fn step(&mut self) -> Result<bool, EngineError> {
        if self.winner.take().is_some() {
            for &index in &self.tied {
                self.cursors[index].advance()?;
            }
        }
        self.tied.clear();
        let Merge {
            cursors,
            reverse,
            tied,
            ..
        } = self;
        let mut winner: Option<usize> = None;
        // The winner's key, kept at hand for the comparisons.
        let mut best_key: &[u8] = &[];
        for (index, cursor) in cursors.iter().enumerate() {
            if !cursor.valid() {
                continue;
            }
            let key = cursor.key();
            let Some(best_index) = winner else {
                winner = Some(index);
                best_key = key;
                tied.push(index);
                continue;
            };
            let mut order = key_cmp(key, best_key);
            if *reverse {
                order = order.reverse();
            }
            match order {
                Ordering::Less => {
                    winner = Some(index);
                    best_key = key;
                    tied.clear();
                    tied.push(index);
                }
                Ordering::Equal => {
                    tied.push(index);
                    if cursor.timestamp() > cursors[best_index].timestamp() {
                        winner = Some(index);
                    }
                }
                Ordering::Greater => {}
            }
        }
        self.winner = winner;
        Ok(winner.is_some())
    }

    fn current(&self) -> &Cursor<'a, F> {
        &self.cursors[self.winner.expect("next returned true")]
    }

    /// The current key.
    pub(crate) fn key(&self) -> &[u8] {
        self.current().key()
    }

    /// The current key's newest timestamp.
    pub(crate) fn timestamp(&self) -> Timestamp {
        self.current().timestamp()
    }

    /// The current key's newest value; `None` for a tombstone.
    pub(crate) fn value(&self) -> Option<&[u8]> {
        self.current().value()
    }

    /// The current entry, copied out.
    #[cfg(test)]
    pub(crate) fn version(&self) -> Versioned {
        Versioned {
            timestamp: self.timestamp(),
            value: self.value().map(<[u8]>::to_vec),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::ops::Bound;

    use super::*;
    use crate::fs_disk::{FsDisk, FsFile};
    use crate::memtable::Memtable;
    use crate::sstable::cache::BlockCache;
    use crate::sstable::reader::Table;
    use crate::sstable::writer::write_table;
    use crate::sstable::{TableCompression, TableEntry, TableOptions};

    fn entry(key: &str, hlc: u64) -> TableEntry {
        (
            key.as_bytes().to_vec(),
            Versioned {
                timestamp: Timestamp { hlc, node: 0 },
                value: Some(format!("{key}@{hlc}").into_bytes()),
            },
        )
    }

    fn memtable(entries: &[TableEntry]) -> Memtable {
        let mut table = Memtable::new(1 << 20);
        for (key, version) in entries {
            table.apply(key, version.timestamp, version.value.as_deref());
        }
        table
    }

    fn table(disk: &FsDisk, id: u64, entries: &[TableEntry]) -> Table<FsFile> {
        let options = TableOptions {
            block_bytes_target: 256,
            compression: TableCompression::Lz4,
            bloom_bits_per_key: 10,
        };
        write_table(disk, id, entries.iter().cloned().map(Ok), options, false)
            .expect("write")
            .expect("not empty");
        Table::open(disk, id).expect("open")
    }

    fn collect(mut merge: Merge<'_, FsFile>) -> Vec<TableEntry> {
        let mut out = Vec::new();
        while merge.next().expect("merge") {
            out.push((merge.key().to_vec(), merge.version()));
        }
        out
    }

    /// Sorted, deduplicated entries of one source from `(key, hlc)` pairs.
    fn source(pairs: &[(u8, u64)]) -> Vec<TableEntry> {
        let by_key: std::collections::BTreeMap<u8, u64> = pairs.iter().copied().collect();
        by_key
            .into_iter()
            .map(|(key, hlc)| entry(&format!("k{key:03}"), hlc))
            .collect()
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]

        /// Any number of sources, with keys in long runs from one source
        /// and keys shared between sources: the merge yields what a map of
        /// every entry, newest timestamp kept, holds, in both directions.
        #[test]
        fn merge_matches_a_model(
            sources in proptest::collection::vec(
                proptest::collection::vec((0_u8..60, 1_u64..20), 0..40),
                1..6,
            ),
        ) {
            let dir = tempfile::tempdir().expect("tempdir");
            let disk = FsDisk::open(dir.path()).expect("disk");
            let cache = RefCell::new(BlockCache::new(1 << 20));
            let entries: Vec<Vec<TableEntry>> = sources.iter().map(|pairs| source(pairs)).collect();
            let mut model = std::collections::BTreeMap::new();
            for (key, version) in entries.iter().flatten() {
                let newer = model
                    .get(key)
                    .is_none_or(|kept: &Versioned| version.timestamp > kept.timestamp);
                if newer {
                    model.insert(key.clone(), version.clone());
                }
            }
            // The first source is a memtable, the others tables.
            let mem = memtable(&entries[0]);
            let tables: Vec<Table<FsFile>> = entries[1..]
                .iter()
                .zip(1..)
                .filter(|(entries, _)| !entries.is_empty())
                .map(|(entries, id)| table(&disk, id, entries))
                .collect();
            for reverse in [false, true] {
                let mut cursors = vec![Cursor::memtable(
                    mem.range(Bound::Unbounded, Bound::Unbounded),
                    reverse,
                )];
                for t in &tables {
                    let mut cursor = t.cursor(&cache, false, reverse);
                    cursor.seek(Bound::Unbounded).expect("seek");
                    cursors.push(Cursor::Table(cursor));
                }
                let mut want: Vec<TableEntry> = model.clone().into_iter().collect();
                if reverse {
                    want.reverse();
                }
                proptest::prop_assert_eq!(collect(Merge::new(cursors, reverse)), want);
            }
        }
    }

    #[test]
    fn merge_yields_each_key_once_with_the_newest_timestamp_both_ways() {
        let dir = tempfile::tempdir().expect("tempdir");
        let disk = FsDisk::open(dir.path()).expect("disk");
        let mem = memtable(&[entry("a", 1), entry("c", 9)]);
        let t1 = table(&disk, 1, &[entry("a", 5), entry("b", 2)]);
        let t2 = table(&disk, 2, &[entry("c", 3), entry("d", 1)]);
        let cache = RefCell::new(BlockCache::new(1 << 20));
        let expected = vec![entry("a", 5), entry("b", 2), entry("c", 9), entry("d", 1)];
        for reverse in [false, true] {
            let mut cursors = vec![Cursor::memtable(
                mem.range(Bound::Unbounded, Bound::Unbounded),
                reverse,
            )];
            for t in [&t1, &t2] {
                let mut cursor = t.cursor(&cache, false, reverse);
                cursor.seek(Bound::Unbounded).expect("seek");
                cursors.push(Cursor::Table(cursor));
            }
            let mut want = expected.clone();
            if reverse {
                want.reverse();
            }
            assert_eq!(collect(Merge::new(cursors, reverse)), want);
        }
    }
}
