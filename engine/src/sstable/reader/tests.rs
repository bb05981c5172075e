//! Tests of the table reader: point reads, cursors both ways, and what
//! damaged or hostile bytes get.

use std::ops::Bound;

use proptest::prelude::*;

use super::*;
use crate::fs_disk::FsDisk;
use crate::sstable::bloom::key_hash;
use crate::sstable::writer::write_table;
use crate::sstable::TableEntry;
use crate::sstable::{TableCompression, TableOptions};
use crate::types::Timestamp;

/// Reads through a fresh cache, for tests.
trait TestReads {
    fn get_any(&self, key: &[u8]) -> Result<Option<Versioned>, EngineError>;
    fn entries_from(
        &self,
        start: Bound<&[u8]>,
    ) -> std::vec::IntoIter<Result<TableEntry, EngineError>>;
    fn entries_back_from(&self, end: Bound<&[u8]>) -> Result<Vec<TableEntry>, EngineError>;
}

impl<F: DiskFile> TestReads for Table<F> {
    fn get_any(&self, key: &[u8]) -> Result<Option<Versioned>, EngineError> {
        let cache = RefCell::new(BlockCache::new(1 << 20));
        self.get(key, key_hash(key), &cache)
    }

    fn entries_from(
        &self,
        start: Bound<&[u8]>,
    ) -> std::vec::IntoIter<Result<TableEntry, EngineError>> {
        let cache = RefCell::new(BlockCache::new(0));
        let mut out = Vec::new();
        let mut cursor = self.cursor(&cache, false, false);
        let mut step = cursor.seek(start);
        loop {
            match step {
                Err(err) => {
                    out.push(Err(err));
                    break;
                }
                Ok(()) if !cursor.valid() => break,
                Ok(()) => {
                    let version = Versioned {
                        timestamp: cursor.timestamp(),
                        value: cursor.value().map(<[u8]>::to_vec),
                    };
                    out.push(Ok((cursor.key().to_vec(), version)));
                    step = cursor.advance();
                }
            }
        }
        out.into_iter()
    }

    fn entries_back_from(&self, end: Bound<&[u8]>) -> Result<Vec<TableEntry>, EngineError> {
        let cache = RefCell::new(BlockCache::new(1 << 20));
        let mut out = Vec::new();
        let mut cursor = self.cursor(&cache, true, true);
        cursor.seek(end)?;
        while cursor.valid() {
            let version = Versioned {
                timestamp: cursor.timestamp(),
                value: cursor.value().map(<[u8]>::to_vec),
            };
            out.push((cursor.key().to_vec(), version));
            cursor.advance()?;
        }
        Ok(out)
    }
}

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

/// Entries of the version-1 table kept in `testdata/`: keys with
/// varied prefixes and lengths, hybrid-logical-clock timestamps as a
/// node's (microseconds shifted left 12 bits), three nodes, empty and
/// missing values, compressible and incompressible values.
fn compatibility_sample() -> Vec<TableEntry> {
    let mut state = 0x0123_4567_89AB_CDEF_u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    (0..300_u64)
        .map(|i| {
            let key = match i % 3 {
                0 => format!("user/{:06}", i * 7).into_bytes(),
                1 => format!("user/{:06}/profile", i * 7).into_bytes(),
                _ => format!("user/{:06}/z{}", i * 7, "x".repeat((i % 11) as usize)).into_bytes(),
            };
            let value = match i % 7 {
                0 => None,
                1 => Some(Vec::new()),
                2 | 3 => Some((0..(next() % 300)).map(|_| next() as u8).collect()),
                _ => Some(
                    format!("value {i} ")
                        .repeat((i % 9 + 1) as usize)
                        .into_bytes(),
                ),
            };
            let hlc = ((1_700_000_000_000_000 + next() % 3_600_000_000) << 12) | (i % 4096);
            let version = Versioned {
                timestamp: Timestamp {
                    hlc,
                    node: (i % 3 + 1) as u32,
                },
                value,
            };
            (key, version)
        })
        .collect()
}

/// A table written by the version-1 writer (512-byte blocks, LZ4
/// where it saved bytes) from `compatibility_sample`.
const VERSION_1_TABLE: &[u8] = include_bytes!("../testdata/table-v1.sst");

/// The same entries written by the version-2 writer (512-byte blocks,
/// zstd level 3 where it saved bytes).
const VERSION_2_TABLE: &[u8] = include_bytes!("../testdata/table-v2.sst");

/// The same entries written by the version-3 writer (as version 2,
/// with an empty dictionary block: too few blocks to train one), whose
/// checksums do not cover the blocks' places.
const VERSION_3_TABLE: &[u8] = include_bytes!("../testdata/table-v3.sst");

fn stored_table(bytes: &[u8]) -> (tempfile::TempDir, FsDisk, Table<crate::fs_disk::FsFile>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let disk = FsDisk::open(dir.path()).expect("disk");
    disk.create(&table_name(1))
        .expect("create")
        .write_at(0, bytes)
        .expect("write");
    let table = Table::open(&disk, 1).expect("open");
    (dir, disk, table)
}

#[test]
fn version_1_to_3_tables_are_still_read() {
    for (bytes, version) in [
        (VERSION_1_TABLE, TableVersion::V1),
        (VERSION_2_TABLE, TableVersion::V2),
        (VERSION_3_TABLE, TableVersion::V3),
    ] {
        let (_dir, _disk, table) = stored_table(bytes);
        assert_eq!(table.version, version);
        check_compatibility_table(&table);
    }
}

fn check_compatibility_table(table: &Table<crate::fs_disk::FsFile>) {
    let mut entries = compatibility_sample();
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    assert!(table.index.len() > 10, "many blocks");
    assert_eq!(
        table
            .entries_from(Bound::Unbounded)
            .collect::<Result<Vec<_>, _>>()
            .expect("scan"),
        entries
    );
    let mut backward = entries.clone();
    backward.reverse();
    assert_eq!(
        table.entries_back_from(Bound::Unbounded).expect("scan"),
        backward
    );
    for (key, version) in &entries {
        assert_eq!(table.get_any(key).expect("get"), Some(version.clone()));
        let mut missing = key.clone();
        missing.push(0);
        assert_eq!(table.get_any(&missing).expect("get"), None);
    }
    let middle = &entries[150].0;
    assert_eq!(
        table
            .entries_from(Bound::Excluded(middle))
            .next()
            .expect("an entry")
            .expect("read")
            .0,
        entries[151].0
    );
}

/// Entries of fixed-size keys and values (`fill` repeated), so that
/// data blocks have the same size and a misdirected copy fits exactly.
fn uniform_sample(fill: u8) -> Vec<TableEntry> {
    (0..400_u64)
        .map(|i| {
            let version = Versioned {
                timestamp: Timestamp { hlc: 9000, node: 1 },
                value: Some(vec![fill; 40]),
            };
            (format!("key-{i:08}").into_bytes(), version)
        })
        .collect()
}

fn write_uniform(disk: &FsDisk, id: u64, fill: u8) -> Table<crate::fs_disk::FsFile> {
    write_table(
        disk,
        id,
        uniform_sample(fill).into_iter().map(Ok),
        options(TableCompression::None),
        true,
    )
    .expect("write")
    .expect("not empty");
    Table::open(disk, id).expect("open")
}

/// Writes the framed block at `handle` of table `from` over table
/// `to` at `offset`: a misdirected write of a whole block.
fn copy_block(disk: &FsDisk, from: u64, handle: BlockHandle, to: u64, offset: u64) {
    let mut bytes = vec![0_u8; (handle.size + TRAILER_BYTES) as usize];
    disk.open(&table_name(from))
        .expect("open")
        .read_at(handle.offset, &mut bytes)
        .expect("read");
    disk.open(&table_name(to))
        .expect("open")
        .write_at(offset, &bytes)
        .expect("write");
}

#[test]
fn a_block_copied_to_another_offset_of_its_table_is_never_served() {
    let dir = tempfile::tempdir().expect("tempdir");
    let disk = FsDisk::open(dir.path()).expect("disk");
    let table = write_uniform(&disk, 3, b'a');
    assert_eq!(table.version, TableVersion::V4);
    let (first, second) = (table.index.handle(0), table.index.handle(1));
    assert_eq!(first.size, second.size, "uniform blocks");
    let victim = table.index.last_key(1).to_vec();
    drop(table);
    copy_block(&disk, 3, first, 3, second.offset);
    let table = Table::open(&disk, 3).expect("metadata intact");
    match table.get_any(&victim) {
        Err(EngineError::ChecksumMismatch { file, offset, .. }) => {
            assert_eq!((file, offset), (table_name(3), second.offset));
        }
        other => panic!("expected a checksum mismatch, got {other:?}"),
    }
    assert!(table
        .entries_from(Bound::Unbounded)
        .any(|entry| entry.is_err()));
    assert!(table.entries_back_from(Bound::Unbounded).is_err());
}

#[test]
fn a_block_copied_into_another_table_is_never_served() {
    let dir = tempfile::tempdir().expect("tempdir");
    let disk = FsDisk::open(dir.path()).expect("disk");
    let source = write_uniform(&disk, 3, b'a');
    let target = write_uniform(&disk, 4, b'b');
    let handle = source.index.handle(2);
    assert_eq!(handle, target.index.handle(2), "same layout");
    let victim = target.index.last_key(2).to_vec();
    drop((source, target));
    // Table 3's block lands where table 4's was: in version 3, table 4
    // would now serve table 3's values.
    copy_block(&disk, 3, handle, 4, handle.offset);
    let target = Table::open(&disk, 4).expect("metadata intact");
    let err = target.get_any(&victim).expect_err("misdirected block");
    assert_eq!(
        err.corruption_site(),
        Some((table_name(4).as_str(), handle.offset))
    );
    // A footer copied in from another table fails the open.
    let len = target.file_bytes;
    drop(target);
    copy_block(
        &disk,
        3,
        BlockHandle {
            offset: len - FOOTER_BYTES_MAX,
            size: FOOTER_BYTES_MAX - TRAILER_BYTES,
        },
        4,
        len - FOOTER_BYTES_MAX,
    );
    assert!(matches!(
        Table::open(&disk, 4),
        Err(EngineError::ChecksumMismatch { .. })
    ));
}

#[test]
fn current_table_of_the_same_entries_is_smaller() {
    let mut entries = compatibility_sample();
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    let (_a, _, written) = written(&entries, TableCompression::Lz4);
    assert_eq!(written.version, TableVersion::V4);
    assert!(!written.scratch.borrow().codec.has_zstd_dictionary());
    assert!(
        written.file_bytes < VERSION_1_TABLE.len() as u64,
        "{} bytes against {}",
        written.file_bytes,
        VERSION_1_TABLE.len()
    );
}

#[test]
fn table_round_trips_through_many_blocks() {
    for compression in [
        TableCompression::None,
        TableCompression::Lz4,
        TableCompression::Zstd { level: 3 },
    ] {
        let entries = sample(400);
        let (_dir, disk, table) = written(&entries, compression);
        assert!(table.index.len() > 10, "expected many blocks");
        assert_eq!(disk.list().expect("list"), vec![table_name(7)]);
        let all: Vec<TableEntry> = table
            .entries_from(Bound::Unbounded)
            .collect::<Result<_, _>>()
            .expect("iter");
        assert_eq!(all, entries);
        for (key, version) in &entries {
            assert_eq!(table.get_any(key).expect("get"), Some(version.clone()));
        }
        assert_eq!(table.get_any(b"key-00001").expect("get"), None);
        assert_eq!(table.meta.entries_total, 400);
        assert_eq!(table.meta.tombstones_total, 80);
        assert_eq!(table.meta.timestamp_min.hlc, 601);
        assert_eq!(table.meta.key_min, b"key-00000");
    }
}

/// Entries enough for a dictionary: values of words from a small
/// vocabulary, as real values repeat themselves across blocks.
fn dictionary_sample(count: u64) -> Vec<TableEntry> {
    const WORDS: [&str; 12] = [
        "alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india",
        "juliett", "kilo", "lima",
    ];
    let mut state = 0x9E37_79B9_7F4A_7C15_u64;
    (0..count)
        .map(|i| {
            let value = (0..8)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    WORDS[(state % WORDS.len() as u64) as usize]
                })
                .collect::<Vec<_>>()
                .join(" ");
            let version = Versioned {
                timestamp: Timestamp {
                    hlc: 5000 + i,
                    node: 1,
                },
                value: (i % 50 != 0).then(|| value.into_bytes()),
            };
            (format!("key-{i:08}").into_bytes(), version)
        })
        .collect()
}

#[test]
fn large_zstd_tables_get_a_dictionary_and_read_back() {
    let entries = dictionary_sample(4000);
    let (_dir, _disk, table) = written(&entries, TableCompression::Zstd { level: 3 });
    assert_eq!(table.version, TableVersion::V4);
    assert!(table.scratch.borrow().codec.has_zstd_dictionary());
    let all: Vec<TableEntry> = table
        .entries_from(Bound::Unbounded)
        .collect::<Result<_, _>>()
        .expect("iter");
    assert_eq!(all, entries);
    let mut backward = entries.clone();
    backward.reverse();
    assert_eq!(
        table.entries_back_from(Bound::Unbounded).expect("scan"),
        backward
    );
    for (key, version) in entries.iter().step_by(7) {
        assert_eq!(table.get_any(key).expect("get"), Some(version.clone()));
    }
    // A small table is not worth a dictionary.
    let (_small, _, small) = written(&entries[..300], TableCompression::Zstd { level: 3 });
    assert!(!small.scratch.borrow().codec.has_zstd_dictionary());
    for (key, version) in &entries[..300] {
        assert_eq!(small.get_any(key).expect("get"), Some(version.clone()));
    }
}

#[test]
fn compressed_tables_are_smaller() {
    let entries = sample(400);
    let (_a, _, plain) = written(&entries, TableCompression::None);
    let (_b, _, lz4) = written(&entries, TableCompression::Lz4);
    let (_c, _, zstd) = written(&entries, TableCompression::Zstd { level: 3 });
    assert!(lz4.file_bytes < plain.file_bytes / 2);
    assert!(zstd.file_bytes < lz4.file_bytes);
}

#[test]
fn iteration_starts_at_its_bound() {
    let entries = sample(200);
    let (_dir, _disk, table) = written(&entries, TableCompression::Lz4);
    let keys = |start: Bound<&[u8]>| -> Vec<Vec<u8>> {
        table
            .entries_from(start)
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
fn backward_iteration_starts_at_its_bound_and_visits_every_block() {
    let entries = sample(200);
    let (_dir, _disk, table) = written(&entries, TableCompression::Lz4);
    let mut backward = entries.clone();
    backward.reverse();
    assert_eq!(
        table.entries_back_from(Bound::Unbounded).expect("scan"),
        backward
    );
    let keys = |end: Bound<&[u8]>| -> Vec<Vec<u8>> {
        table
            .entries_back_from(end)
            .expect("scan")
            .into_iter()
            .map(|e| e.0)
            .take(2)
            .collect()
    };
    assert_eq!(
        keys(Bound::Included(b"key-00300")),
        vec![b"key-00300".to_vec(), b"key-00297".to_vec()]
    );
    assert_eq!(
        keys(Bound::Excluded(b"key-00300")),
        vec![b"key-00297".to_vec(), b"key-00294".to_vec()]
    );
    assert_eq!(
        keys(Bound::Included(b"key-00299")),
        vec![b"key-00297".to_vec(), b"key-00294".to_vec()]
    );
    assert!(keys(Bound::Excluded(b"key-00000")).is_empty());
    assert_eq!(keys(Bound::Included(b"zzz"))[0], entries[199].0);
}

#[test]
fn corrupted_data_block_is_reported_with_file_and_offset() {
    let entries = sample(300);
    let (dir, disk, table) = written(&entries, TableCompression::None);
    let victim = table.index.handle(3);
    let key = entries
        .iter()
        .find(|(k, _)| k.as_slice() > table.index.last_key(2))
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
    match table.get_any(&key) {
        Err(EngineError::ChecksumMismatch { file, offset, .. }) => {
            assert_eq!((file, offset), (table_name(7), victim.offset));
        }
        other => panic!("expected a checksum mismatch, got {other:?}"),
    }
    let scan: Result<Vec<_>, _> = table.entries_from(Bound::Unbounded).collect();
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
        let compression = if flips.len() % 2 == 0 {
            TableCompression::Lz4
        } else {
            TableCompression::Zstd { level: 1 }
        };
        let (_dir, disk, table) = written(&entries, compression);
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
                let _ = table.get_any(key);
            }
            let _ = table.entries_from(Bound::Unbounded).count();
            let _ = table.entries_back_from(Bound::Unbounded);
        }
    }

    #[test]
    fn mutated_version_1_tables_never_panic(
        flips in prop::collection::vec((any::<prop::sample::Index>(), 0_u8..8), 1..4),
    ) {
        let mut bytes = VERSION_1_TABLE.to_vec();
        let len = bytes.len();
        for (index, bit) in flips {
            bytes[index.index(len)] ^= 1 << bit;
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let disk = FsDisk::open(dir.path()).expect("disk");
        disk.create(&table_name(1)).expect("create").write_at(0, &bytes).expect("write");
        if let Ok(table) = Table::open(&disk, 1) {
            for (key, _) in compatibility_sample().iter().step_by(7) {
                let _ = table.get_any(key);
            }
            let _ = table.entries_from(Bound::Unbounded).count();
            let _ = table.entries_back_from(Bound::Unbounded);
        }
    }

    #[test]
    fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
        let dir = tempfile::tempdir().expect("tempdir");
        let disk = FsDisk::open(dir.path()).expect("disk");
        disk.create(&table_name(1)).expect("create").write_at(0, &bytes).expect("write");
        if let Ok(table) = Table::open(&disk, 1) {
            let _ = table.get_any(b"key");
            let _ = table.entries_from(Bound::Unbounded).count();
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

    #[test]
    fn mutated_dictionary_tables_never_panic(
        flips in prop::collection::vec((any::<prop::sample::Index>(), 0_u8..8), 1..4),
        near_end in any::<bool>(),
    ) {
        // Few cases: each writes a table large enough for a dictionary.
        let entries = dictionary_sample(2500);
        let (_dir, disk, table) = written(&entries, TableCompression::Zstd { level: 1 });
        prop_assert!(table.scratch.borrow().codec.has_zstd_dictionary());
        let len = table.file_bytes as usize;
        // Half the cases hit the metadata (dictionary, index, footer).
        let first = if near_end { len - 20_000.min(len) } else { 0 };
        drop(table);
        let mut file = disk.open(&table_name(7)).expect("open");
        let mut bytes = vec![0_u8; len];
        file.read_at(0, &mut bytes).expect("read");
        for (index, bit) in flips {
            bytes[first + index.index(len - first)] ^= 1 << bit;
        }
        file.write_at(0, &bytes).expect("write");
        if let Ok(table) = Table::open(&disk, 7) {
            for (key, version) in entries.iter().step_by(97) {
                // Damage may hide an entry or fail the read, never
                // change what is served.
                if let Ok(Some(found)) = table.get_any(key) {
                    prop_assert_eq!(&found, version);
                }
            }
            let _ = table.entries_from(Bound::Unbounded).count();
            let _ = table.entries_back_from(Bound::Unbounded);
        }
    }
}
