//! Unit tests of `Engine`: writes, syncs, faults, flushes, compaction
//! and a model check against a `BTreeMap`.

use std::cell::Cell;
use std::rc::Rc;

use std::ops::{Bound, RangeBounds};

use proptest::prelude::*;

use super::*;
use crate::disk::{DiskError, DiskFile};
use crate::fs_disk::{FsDisk, FsFile};
use crate::sstable::TableCompression;

fn ts(hlc: u64) -> Timestamp {
    Timestamp { hlc, node: 1 }
}

fn value(hlc: u64, value: &str) -> Versioned {
    Versioned {
        timestamp: ts(hlc),
        value: Some(value.into()),
    }
}

fn tombstone(hlc: u64) -> Versioned {
    Versioned {
        timestamp: ts(hlc),
        value: None,
    }
}

fn temp_engine() -> (tempfile::TempDir, Engine<FsDisk>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let disk = FsDisk::open(dir.path()).expect("disk");
    let engine = Engine::open(disk, EngineOptions::default()).expect("open");
    (dir, engine)
}

fn reopen<D: Disk + Clone>(engine: Engine<D>) -> Engine<D> {
    let disk = engine.disk().clone();
    let options = engine.options().clone();
    drop(engine);
    Engine::open(disk, options).expect("reopen")
}

#[test]
fn default_options_are_valid_and_bad_ones_are_named() {
    EngineOptions::default().validate().expect("defaults");
    let small = EngineOptions {
        wal_segment_bytes_max: 10,
        ..EngineOptions::default()
    };
    let err = small.validate().expect_err("too small");
    assert!(err.to_string().contains("wal_segment_bytes_max"), "{err}");
    let huge = EngineOptions {
        value_bytes_max: usize::MAX,
        ..EngineOptions::default()
    };
    assert!(huge.validate().is_err());
    let no_keys = EngineOptions {
        key_bytes_max: 0,
        ..EngineOptions::default()
    };
    assert!(no_keys.validate().is_err());
}

#[test]
fn older_write_is_ignored() {
    let (_dir, mut engine) = temp_engine();
    assert!(engine.write(b"k", value(5, "new")).expect("write"));
    assert!(!engine.write(b"k", value(3, "old")).expect("write"));
    assert_eq!(engine.get(b"k").expect("get"), Some(value(5, "new")));
    let engine = reopen(engine);
    assert_eq!(engine.get(b"k").expect("get"), Some(value(5, "new")));
}

#[test]
fn tombstone_hides_older_value_and_is_returned() {
    let (_dir, mut engine) = temp_engine();
    assert!(engine.write(b"k", value(1, "v")).expect("write"));
    assert!(engine.write(b"k", tombstone(2)).expect("delete"));
    assert!(!engine.write(b"k", value(1, "v")).expect("stale write"));
    assert_eq!(engine.get(b"k").expect("get"), Some(tombstone(2)));
    assert_eq!(
        engine.scan_all().expect("scan"),
        vec![(b"k".to_vec(), tombstone(2))]
    );
    assert!(engine.write(b"k", value(3, "back")).expect("newer write"));
    assert_eq!(engine.get(b"k").expect("get"), Some(value(3, "back")));
}

#[test]
fn batch_applies_only_newer_entries_and_counts_them() {
    let (_dir, mut engine) = temp_engine();
    engine.write(b"a", value(10, "stored")).expect("write");
    let batch = vec![
        (b"a".to_vec(), value(5, "stale")),
        (b"b".to_vec(), value(1, "first")),
        (b"b".to_vec(), value(3, "second")),
        (b"b".to_vec(), value(2, "out of order")),
        (b"c".to_vec(), tombstone(4)),
    ];
    assert_eq!(engine.write_batch(&batch).expect("batch"), 3);
    let expected = vec![
        (b"a".to_vec(), value(10, "stored")),
        (b"b".to_vec(), value(3, "second")),
        (b"c".to_vec(), tombstone(4)),
    ];
    assert_eq!(engine.scan_all().expect("scan"), expected);
    engine.sync().expect("sync");
    assert_eq!(reopen(engine).scan_all().expect("scan"), expected);
}

#[test]
fn ignored_write_logs_nothing() {
    let (_dir, mut engine) = temp_engine();
    engine.write(b"k", value(2, "v")).expect("write");
    engine.sync().expect("sync");
    assert!(!engine.write(b"k", value(1, "old")).expect("write"));
    assert!(
        !engine.has_unsynced(),
        "a write that lost must not need a sync"
    );
    assert_eq!(engine.write_batch(&[]).expect("empty batch"), 0);
}

#[test]
fn oversized_key_or_value_is_rejected_and_not_applied() {
    let dir = tempfile::tempdir().expect("tempdir");
    let disk = FsDisk::open(dir.path()).expect("disk");
    let options = EngineOptions {
        key_bytes_max: 4,
        value_bytes_max: 8,
        ..EngineOptions::default()
    };
    let mut engine = Engine::open(disk, options).expect("open");
    let long_key = engine.write(b"12345", value(1, "v"));
    assert!(
        matches!(long_key, Err(EngineError::InvalidArgument { .. })),
        "{long_key:?}"
    );
    let long_value = engine.write(b"k", value(1, "123456789"));
    assert!(
        matches!(long_value, Err(EngineError::InvalidArgument { .. })),
        "{long_value:?}"
    );
    let batch = vec![
        (b"ok".to_vec(), value(1, "v")),
        (b"toolong".to_vec(), value(1, "v")),
    ];
    assert!(engine.write_batch(&batch).is_err());
    assert_eq!(
        engine.scan_all().expect("scan"),
        vec![],
        "a rejected batch applies nothing"
    );
}

#[test]
fn sync_is_a_no_op_when_nothing_is_unsynced() {
    let (_dir, mut engine) = temp_engine();
    assert!(!engine.has_unsynced());
    engine.write(b"k", value(1, "v")).expect("write");
    assert!(engine.has_unsynced());
    engine.sync().expect("sync");
    assert!(!engine.has_unsynced());
    engine.sync().expect("second sync");
}

/// Faults a test can switch on, shared by a disk and its files.
#[derive(Debug, Default)]
struct Faults {
    /// Every sync fails.
    sync_fails: Cell<bool>,
    /// The next write writes half its bytes, then reports a full disk.
    next_write_partial_then_full: Cell<bool>,
    /// The next write writes half its bytes, then fails with an I/O
    /// error.
    next_write_partial_then_io_error: Cell<bool>,
    /// Every truncate fails.
    truncate_fails: Cell<bool>,
    /// A read touching this byte of a table file fails (a latent sector
    /// error).
    table_byte_unreadable: Cell<Option<u64>>,
}

/// `FsDisk` with switchable faults.
#[derive(Debug, Clone)]
struct FaultyDisk {
    inner: FsDisk,
    faults: Rc<Faults>,
}

#[derive(Debug)]
struct FaultyFile {
    inner: FsFile,
    faults: Rc<Faults>,
    is_table: bool,
}

impl Disk for FaultyDisk {
    type File = FaultyFile;
    fn create(&self, name: &str) -> Result<FaultyFile, DiskError> {
        Ok(FaultyFile {
            inner: self.inner.create(name)?,
            faults: self.faults.clone(),
            is_table: name.ends_with(".sst"),
        })
    }
    fn open(&self, name: &str) -> Result<FaultyFile, DiskError> {
        Ok(FaultyFile {
            inner: self.inner.open(name)?,
            faults: self.faults.clone(),
            is_table: name.ends_with(".sst"),
        })
    }
    fn list(&self) -> Result<Vec<String>, DiskError> {
        self.inner.list()
    }
    fn rename(&self, from: &str, to: &str) -> Result<(), DiskError> {
        self.inner.rename(from, to)
    }
    fn remove(&self, name: &str) -> Result<(), DiskError> {
        self.inner.remove(name)
    }
    fn sync_dir(&self) -> Result<(), DiskError> {
        if self.faults.sync_fails.get() {
            return Err(DiskError::SyncFailed {
                name: "dir".into(),
                reason: "test".into(),
            });
        }
        self.inner.sync_dir()
    }
}

impl DiskFile for FaultyFile {
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), DiskError> {
        let unreadable = self.faults.table_byte_unreadable.get();
        if self.is_table
            && unreadable.is_some_and(|byte| (offset..offset + buf.len() as u64).contains(&byte))
        {
            return Err(DiskError::Io {
                name: "table".into(),
                reason: "test: latent sector error".into(),
            });
        }
        self.inner.read_at(offset, buf)
    }
    fn write_at(&mut self, offset: u64, data: &[u8]) -> Result<(), DiskError> {
        if self.faults.next_write_partial_then_full.replace(false) {
            self.inner.write_at(offset, &data[..data.len() / 2])?;
            return Err(DiskError::NoSpace {
                name: "file".into(),
            });
        }
        if self.faults.next_write_partial_then_io_error.replace(false) {
            self.inner.write_at(offset, &data[..data.len() / 2])?;
            return Err(DiskError::Io {
                name: "file".into(),
                reason: "test".into(),
            });
        }
        self.inner.write_at(offset, data)
    }
    fn sync(&mut self) -> Result<(), DiskError> {
        if self.faults.sync_fails.get() {
            return Err(DiskError::SyncFailed {
                name: "file".into(),
                reason: "test".into(),
            });
        }
        self.inner.sync()
    }
    fn truncate(&mut self, len: u64) -> Result<(), DiskError> {
        if self.faults.truncate_fails.get() {
            return Err(DiskError::Io {
                name: "file".into(),
                reason: "test".into(),
            });
        }
        self.inner.truncate(len)
    }
    fn len(&self) -> Result<u64, DiskError> {
        self.inner.len()
    }
}

fn faulty_engine() -> (tempfile::TempDir, Rc<Faults>, Engine<FaultyDisk>) {
    faulty_engine_with(EngineOptions::default())
}

fn faulty_engine_with(
    options: EngineOptions,
) -> (tempfile::TempDir, Rc<Faults>, Engine<FaultyDisk>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let faults = Rc::new(Faults::default());
    let disk = FaultyDisk {
        inner: FsDisk::open(dir.path()).expect("disk"),
        faults: faults.clone(),
    };
    let engine = Engine::open(disk, options).expect("open");
    (dir, faults, engine)
}

#[test]
fn an_unreadable_block_fails_only_reads_that_need_it() {
    // Uncompressed 4 KiB blocks: block 0 ends near 4 KiB, so byte 9000
    // lies in block 2, inside a scan's first read ahead (16 KiB).
    let (_dir, faults, mut engine) = faulty_engine_with(EngineOptions {
        table_block_bytes: 4096,
        compaction_block_bytes: 4096,
        table_compression: TableCompression::None,
        compaction_compression: TableCompression::None,
        ..EngineOptions::default()
    });
    for i in 0..2000_u64 {
        let key = format!("key-{i:06}");
        engine
            .write(key.as_bytes(), value(i + 1, &format!("{i:0100}")))
            .expect("write");
    }
    engine.compact_all().expect("compact");
    assert_eq!(engine.tables_total(), 1);
    faults.table_byte_unreadable.set(Some(9000));
    // The first keys lie in block 0: a short scan reads them alone once
    // the read ahead fails.
    let first = engine
        .scan(Bound::Unbounded, Bound::Unbounded, 5)
        .expect("a scan of block 0");
    assert_eq!(first.len(), 5);
    assert_eq!(first[0].0, b"key-000000");
    // A key far from the damage reads; a scan through it fails.
    assert_eq!(
        engine.get(b"key-001500").expect("get"),
        Some(value(1501, &format!("{:0100}", 1500)))
    );
    assert!(engine
        .scan(Bound::Unbounded, Bound::Unbounded, usize::MAX)
        .is_err());
    faults.table_byte_unreadable.set(None);
    assert_eq!(
        engine
            .scan(Bound::Unbounded, Bound::Unbounded, usize::MAX)
            .expect("scan")
            .len(),
        2000
    );
}

#[test]
fn write_after_failed_sync_is_poisoned_but_reads_work() {
    let (_dir, faults, mut engine) = faulty_engine();
    engine.write(b"k", value(1, "v")).expect("write");
    faults.sync_fails.set(true);
    let first = engine.sync();
    assert!(
        matches!(first, Err(EngineError::Disk(DiskError::SyncFailed { .. }))),
        "{first:?}"
    );
    faults.sync_fails.set(false);
    let write = engine.write(b"other", value(2, "v"));
    assert!(
        matches!(write, Err(EngineError::Poisoned { .. })),
        "{write:?}"
    );
    assert!(matches!(engine.sync(), Err(EngineError::Poisoned { .. })));
    assert!(matches!(
        engine.write_batch(&[]),
        Err(EngineError::Poisoned { .. })
    ));
    assert_eq!(
        engine.get(b"k").expect("reads still work"),
        Some(value(1, "v"))
    );
    assert!(engine
        .poisoned_reason()
        .is_some_and(|reason| reason.contains("sync failed")));
}

#[test]
fn full_disk_fails_the_sync_keeps_the_writes_and_a_later_sync_succeeds() {
    let (_dir, faults, mut engine) = faulty_engine();
    engine.write(b"a", value(1, "before")).expect("write");
    engine.sync().expect("sync");
    engine
        .write(b"b", value(2, "waits for space"))
        .expect("a write is buffered");
    faults.next_write_partial_then_full.set(true);
    let full = engine.sync();
    assert!(matches!(full, Err(EngineError::NoSpace { .. })), "{full:?}");
    assert!(engine.has_unsynced(), "the write is still not durable");
    assert_eq!(
        engine.poisoned_reason(),
        None,
        "a full disk is no failed sync"
    );
    assert!(engine.log_stalled_for_space());
    assert!(
        matches!(engine.get(b"b"), Err(EngineError::NoSpace { .. })),
        "a version a crash could still take back is not served"
    );
    assert_eq!(
        engine.get(b"a").expect("other reads still work"),
        Some(value(1, "before"))
    );
    engine
        .write(b"c", value(3, "after"))
        .expect("write after a full disk");
    engine.sync().expect("sync once there is space");
    let engine = reopen(engine);
    assert_eq!(
        engine.recovery_report().torn_tail,
        None,
        "the partial write was rolled back"
    );
    assert_eq!(
        engine.scan_all().expect("scan"),
        vec![
            (b"a".to_vec(), value(1, "before")),
            (b"b".to_vec(), value(2, "waits for space")),
            (b"c".to_vec(), value(3, "after"))
        ]
    );
}

#[test]
fn failed_write_at_a_sync_poisons_like_a_failed_sync() {
    let (_dir, faults, mut engine) = faulty_engine();
    engine.write(b"a", value(1, "before")).expect("write");
    engine.sync().expect("sync");
    engine.write(b"b", value(2, "lost?")).expect("buffered");
    faults.next_write_partial_then_io_error.set(true);
    let failed = engine.sync();
    assert!(
        matches!(failed, Err(EngineError::Disk(DiskError::SyncFailed { .. }))),
        "{failed:?}"
    );
    assert!(engine
        .poisoned_reason()
        .is_some_and(|reason| reason.contains("i/o error")));
    let next = engine.write(b"c", value(3, "v"));
    assert!(
        matches!(next, Err(EngineError::Poisoned { .. })),
        "{next:?}"
    );
    assert!(matches!(engine.sync(), Err(EngineError::Poisoned { .. })));
    let engine = reopen(engine);
    assert_eq!(
        engine.get(b"a").expect("get"),
        Some(value(1, "before")),
        "what was synced before stays"
    );
}

#[test]
fn failed_rollback_poisons_the_engine() {
    let (_dir, faults, mut engine) = faulty_engine();
    engine.write(b"k", value(1, "v")).expect("buffered");
    faults.next_write_partial_then_full.set(true);
    faults.truncate_fails.set(true);
    assert!(engine.sync().is_err());
    let next = engine.write(b"k", value(2, "v"));
    assert!(
        matches!(next, Err(EngineError::Poisoned { .. })),
        "{next:?}"
    );
}

#[test]
fn rotation_under_engine_keeps_every_write() {
    let dir = tempfile::tempdir().expect("tempdir");
    let disk = FsDisk::open(dir.path()).expect("disk");
    let options = EngineOptions {
        wal_segment_bytes_max: WAL_SEGMENT_BYTES_MIN,
        ..EngineOptions::default()
    };
    let mut engine = Engine::open(disk.clone(), options).expect("open");
    let big = "x".repeat(500);
    for hlc in 0..50 {
        engine
            .write(format!("key{hlc:03}").as_bytes(), value(hlc, &big))
            .expect("write");
    }
    engine.sync().expect("sync");
    let before = engine.scan_all().expect("scan");
    let engine = reopen(engine);
    assert_eq!(engine.scan_all().expect("scan"), before);
    assert!(
        disk.list().expect("list").len() > 5,
        "expected several segments"
    );
}

fn lsm_options() -> EngineOptions {
    EngineOptions {
        wal_segment_bytes_max: WAL_SEGMENT_BYTES_MIN,
        memtable_bytes_max: MEMTABLE_BYTES_MIN,
        table_block_bytes: TABLE_BLOCK_BYTES_MIN,
        compaction_block_bytes: TABLE_BLOCK_BYTES_MIN,
        compaction_tables_min: 2,
        ..EngineOptions::default()
    }
}

fn files(disk: &FsDisk, prefix: &str) -> usize {
    let names = disk.list().expect("list");
    names.iter().filter(|n| n.starts_with(prefix)).count()
}

#[test]
fn flush_publishes_tables_deletes_covered_wal_and_survives_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let disk = FsDisk::open(dir.path()).expect("disk");
    let mut options = lsm_options();
    options.compaction_tables_min = 1000;
    options.compaction_tables_max = 1000;
    let mut engine = Engine::open(disk.clone(), options).expect("open");
    for i in 0..200 {
        engine
            .write(format!("k{i:04}").as_bytes(), value(i, "some value"))
            .expect("write");
        engine.do_background_work(u64::MAX).expect("background");
    }
    assert!(engine.tables_total() >= 5, "{}", engine.tables_total());
    assert_eq!(files(&disk, "table-"), engine.tables_total());
    assert!(files(&disk, "wal-") <= 2, "covered segments are deleted");
    let before = engine.scan_all().expect("scan");
    assert_eq!(before.len(), 200);
    assert_eq!(
        engine.get(b"k0007").expect("get"),
        Some(value(7, "some value"))
    );
    let engine = reopen(engine);
    assert_eq!(engine.scan_all().expect("scan"), before);
}

#[test]
fn older_timestamp_arriving_after_a_flush_loses_to_the_table() {
    let dir = tempfile::tempdir().expect("tempdir");
    let disk = FsDisk::open(dir.path()).expect("disk");
    let mut engine = Engine::open(disk, lsm_options()).expect("open");
    engine.write(b"k", value(10, "new")).expect("write");
    engine.freeze().expect("freeze");
    engine.do_background_work(0).expect("flush");
    assert_eq!(engine.tables_total(), 1);
    assert!(!engine.write(b"k", value(5, "old")).expect("stale write"));
    assert_eq!(engine.get(b"k").expect("get"), Some(value(10, "new")));
}

#[test]
fn compaction_drops_shadowed_versions_and_purges_only_allowed_tombstones() {
    let dir = tempfile::tempdir().expect("tempdir");
    let disk = FsDisk::open(dir.path()).expect("disk");
    let mut engine = Engine::open(disk.clone(), lsm_options()).expect("open");
    let flush = |engine: &mut Engine<FsDisk>| {
        engine.freeze().expect("freeze");
        engine.flush_oldest().expect("flush");
    };
    engine.write(b"a", value(1, "a1")).expect("write");
    engine.write(b"b", value(1, "b1")).expect("write");
    flush(&mut engine);
    engine.write(b"a", value(2, "a2")).expect("write");
    engine.write(b"b", tombstone(3)).expect("write");
    flush(&mut engine);
    let backlog = engine.compaction_backlog_bytes();
    let table_bytes: u64 = engine.tables.iter().map(|t| t.file_bytes).sum();
    assert_eq!(backlog, table_bytes, "both tables wait for a merge");
    // Purging forbidden: the tombstone survives the merge.
    let report = engine.do_background_work(u64::MAX).expect("compact");
    assert_eq!(
        engine.compaction_backlog_bytes(),
        0,
        "nothing left to merge"
    );
    assert_eq!((report.compactions, engine.tables_total()), (1, 1));
    assert_eq!(engine.tables[0].meta.entries_total, 2, "a1 was shadowed");
    assert_eq!(engine.get(b"b").expect("get"), Some(tombstone(3)));
    assert_eq!(files(&disk, "table-"), 1, "inputs are deleted");
    // Another key's table, so the next compaction has two inputs.
    engine.write(b"c", value(4, "c")).expect("write");
    flush(&mut engine);
    engine.set_tombstone_purge_before(Some(ts(3)));
    engine.do_background_work(u64::MAX).expect("compact");
    assert_eq!(
        engine.get(b"b").expect("get"),
        Some(tombstone(3)),
        "not older than the horizon"
    );
    engine.write(b"d", value(5, "d")).expect("write");
    flush(&mut engine);
    engine.set_tombstone_purge_before(Some(ts(4)));
    engine.do_background_work(u64::MAX).expect("compact");
    assert_eq!(engine.get(b"b").expect("get"), None, "purged");
    let keys: Vec<Vec<u8>> = reopen(engine)
        .scan_all()
        .expect("scan")
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    assert_eq!(keys, vec![b"a".to_vec(), b"c".to_vec(), b"d".to_vec()]);
}

#[test]
fn purge_guard_keeps_tombstones_of_unrepaired_keys() {
    let dir = tempfile::tempdir().expect("tempdir");
    let disk = FsDisk::open(dir.path()).expect("disk");
    let mut engine = Engine::open(disk, lsm_options()).expect("open");
    engine.write(b"repaired", tombstone(1)).expect("write");
    engine.write(b"unrepaired", tombstone(2)).expect("write");
    engine.write(b"value", value(3, "v")).expect("write");
    engine.set_tombstone_purge_before(Some(ts(100)));
    engine.set_tombstone_purge_guard(Some(Box::new(|key: &[u8], _| key == b"repaired")));
    engine.compact_all().expect("compact");
    assert_eq!(engine.get(b"repaired").expect("get"), None, "purged");
    assert_eq!(
        engine.get(b"unrepaired").expect("get"),
        Some(tombstone(2)),
        "the guard kept it"
    );
    engine.set_tombstone_purge_guard(None);
    engine.write(b"other", value(4, "o")).expect("write");
    engine.compact_all().expect("compact");
    assert_eq!(
        engine.get(b"unrepaired").expect("get"),
        None,
        "purged once allowed"
    );
}

#[test]
fn interval_policy_syncs_only_when_due() {
    let dir = tempfile::tempdir().expect("tempdir");
    let faults = Rc::new(Faults::default());
    let disk = FaultyDisk {
        inner: FsDisk::open(dir.path()).expect("disk"),
        faults: faults.clone(),
    };
    let options = EngineOptions {
        sync_policy: SyncPolicy::Interval {
            interval_nanos: 1_000,
        },
        ..EngineOptions::default()
    };
    let mut engine = Engine::open(disk, options).expect("open");
    assert!(!engine.sync_if_due(0).expect("nothing to sync"));
    engine.write(b"a", value(1, "v")).expect("write");
    assert!(engine.sync_if_due(10).expect("first sync is due"));
    assert!(!engine.has_unsynced());
    engine.write(b"b", value(2, "v")).expect("write");
    assert!(!engine.sync_if_due(500).expect("not yet due"));
    assert!(engine.has_unsynced());
    // The sync really reaches the disk: a failing one surfaces.
    faults.sync_fails.set(true);
    assert!(engine.sync_if_due(1_010).is_err());
    assert!(matches!(
        engine.write(b"c", value(3, "v")),
        Err(EngineError::Poisoned { .. })
    ));
}

#[test]
fn tombstone_is_kept_while_a_table_outside_the_compaction_holds_the_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let disk = FsDisk::open(dir.path()).expect("disk");
    let mut engine = Engine::open(disk, lsm_options()).expect("open");
    engine.write(b"k", value(1, "old")).expect("write");
    engine.freeze().expect("freeze");
    engine.flush_oldest().expect("flush");
    engine.write(b"k", tombstone(2)).expect("write");
    engine.write(b"x", value(3, "x")).expect("write");
    engine.freeze().expect("freeze");
    engine.flush_oldest().expect("flush");
    engine.set_tombstone_purge_before(Some(ts(100)));
    let newest = engine.tables[0].id;
    engine
        .compact(vec![newest], None)
        .expect("compact the newest table alone");
    assert_eq!(
        engine.get(b"k").expect("get"),
        Some(tombstone(2)),
        "no resurrection"
    );
}

#[test]
fn files_the_manifest_does_not_name_are_deleted_at_open() {
    let dir = tempfile::tempdir().expect("tempdir");
    let disk = FsDisk::open(dir.path()).expect("disk");
    let engine = Engine::open(disk.clone(), lsm_options()).expect("open");
    drop(engine);
    disk.create(&crate::sstable::table_name(77))
        .expect("create");
    disk.create(&crate::sstable::writer::temporary_name(78))
        .expect("create");
    let _engine = Engine::open(disk.clone(), lsm_options()).expect("reopen");
    assert_eq!(files(&disk, "table-"), 0);
}

#[derive(Debug, Clone)]
enum Op {
    Write {
        key: u8,
        hlc: u64,
        node: u32,
        value: Option<Vec<u8>>,
    },
    Batch(Vec<(u8, u64, u32, Option<Vec<u8>>)>),
    Get(u8),
    Sync,
    Reopen {
        sync_first: bool,
    },
    Background(u64),
    Scan {
        start: Option<(u8, bool)>,
        end: Option<(u8, bool)>,
        limit: usize,
    },
}

fn key_bytes(key: u8) -> Vec<u8> {
    format!("key-{key}").into_bytes()
}

fn op_strategy() -> impl Strategy<Value = Op> {
    let entry = (
        0_u8..8,
        0_u64..30,
        0_u32..2,
        prop::option::of(prop::collection::vec(any::<u8>(), 0..300)),
    );
    prop_oneof![
        6 => entry.clone().prop_map(|(key, hlc, node, value)| Op::Write { key, hlc, node, value }),
        2 => prop::collection::vec(entry, 0..6).prop_map(Op::Batch),
        2 => (0_u8..8).prop_map(Op::Get),
        2 => Just(Op::Sync),
        1 => any::<bool>().prop_map(|sync_first| Op::Reopen { sync_first }),
        3 => (0_u64..4096).prop_map(Op::Background),
        1 => (
            prop::option::of((0_u8..9, any::<bool>())),
            prop::option::of((0_u8..9, any::<bool>())),
            0_usize..10,
        )
            .prop_map(|(start, end, limit)| Op::Scan { start, end, limit }),
    ]
}

fn model_apply(model: &mut BTreeMap<Vec<u8>, Versioned>, key: Vec<u8>, version: Versioned) -> bool {
    match model.get(&key) {
        Some(stored) if stored.timestamp >= version.timestamp => false,
        _ => {
            model.insert(key, version);
            true
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn engine_matches_a_btreemap_model(ops in prop::collection::vec(op_strategy(), 1..80)) {
        let dir = tempfile::tempdir().expect("tempdir");
        let disk = FsDisk::open(dir.path()).expect("disk");
        // Tiny memtables, blocks and tiers, so that flushes, multi-block
        // tables and compactions all happen within a case.
        let options = EngineOptions {
            wal_segment_bytes_max: WAL_SEGMENT_BYTES_MIN,
            memtable_bytes_max: MEMTABLE_BYTES_MIN,
            table_block_bytes: TABLE_BLOCK_BYTES_MIN,
            compaction_block_bytes: TABLE_BLOCK_BYTES_MIN,
            compaction_tables_min: 2,
            manifest_edits_per_checkpoint: 3,
            ..EngineOptions::default()
        };
        let mut engine = Engine::open(disk, options).expect("open");
        let mut model: BTreeMap<Vec<u8>, Versioned> = BTreeMap::new();
        for op in ops {
            match op {
                Op::Write { key, hlc, node, value } => {
                    let version = Versioned { timestamp: Timestamp { hlc, node }, value };
                    let applied = engine.write(&key_bytes(key), version.clone()).expect("write");
                    prop_assert_eq!(applied, model_apply(&mut model, key_bytes(key), version));
                }
                Op::Batch(entries) => {
                    let batch: Vec<(Vec<u8>, Versioned)> = entries
                        .into_iter()
                        .map(|(key, hlc, node, value)| {
                            (key_bytes(key), Versioned { timestamp: Timestamp { hlc, node }, value })
                        })
                        .collect();
                    let applied = engine.write_batch(&batch).expect("batch");
                    let expected = batch
                        .into_iter()
                        .filter(|(key, version)| model_apply(&mut model, key.clone(), version.clone()))
                        .count();
                    prop_assert_eq!(applied, expected);
                }
                Op::Get(key) => {
                    prop_assert_eq!(engine.get(&key_bytes(key)).expect("get"), model.get(&key_bytes(key)).cloned());
                }
                Op::Sync => {
                    engine.sync().expect("sync");
                    prop_assert!(!engine.has_unsynced());
                }
                Op::Reopen { sync_first } => {
                    if sync_first {
                        engine.sync().expect("sync");
                    }
                    // Without a crash a real file system keeps even
                    // unsynced writes, so the model must match either way.
                    engine = reopen(engine);
                    let recovered: BTreeMap<Vec<u8>, Versioned> =
                        engine.scan_all().expect("scan").into_iter().collect();
                    prop_assert_eq!(&recovered, &model);
                    prop_assert_eq!(engine.recovery_report().torn_tail.clone(), None);
                }
                Op::Background(budget) => {
                    engine.do_background_work(budget).expect("background work");
                }
                Op::Scan { start, end, limit } => {
                    let bound = |b: Option<(u8, bool)>| match b {
                        None => Bound::Unbounded,
                        Some((key, true)) => Bound::Included(key_bytes(key)),
                        Some((key, false)) => Bound::Excluded(key_bytes(key)),
                    };
                    let (start, end) = (bound(start), bound(end));
                    fn as_slice(b: &Bound<Vec<u8>>) -> Bound<&[u8]> {
                        b.as_ref().map(Vec::as_slice)
                    }
                    let got = engine
                        .scan(as_slice(&start), as_slice(&end), limit)
                        .expect("scan");
                    let expected: Vec<(Vec<u8>, Versioned)> = model
                        .iter()
                        .filter(|(key, _)| (as_slice(&start), as_slice(&end)).contains(key.as_slice()))
                        .take(limit)
                        .map(|(key, version)| (key.clone(), version.clone()))
                        .collect();
                    prop_assert_eq!(got, expected);
                }
            }
        }
        prop_assert!(engine.frozen_total() <= FROZEN_MEMTABLES_MAX);
        let scanned: BTreeMap<Vec<u8>, Versioned> = engine.scan_all().expect("scan").into_iter().collect();
        prop_assert_eq!(scanned, model);
    }
}

/// The note "if a WAL write into the zeros already written ahead hits
/// ENOSPC, part of a record can remain there", settled: the part lies after
/// the last completed sync, so a crash leaves it as a reported torn tail
/// (never corruption, never replayed), and a retry writes the same bytes
/// over it.
#[test]
fn a_partial_write_into_the_zeros_ahead_is_a_torn_tail_or_overwritten() {
    for crash_before_retry in [true, false] {
        let (dir, faults, mut engine) = faulty_engine();
        engine.write(b"a", value(1, "synced")).expect("write");
        engine.sync().expect("sync");
        // Large enough that the half a partial write gets out cuts it.
        let unsynced = "u".repeat(4000);
        engine.write(b"b", value(2, &unsynced)).expect("write");
        faults.next_write_partial_then_full.set(true);
        assert!(matches!(engine.sync(), Err(EngineError::NoSpace { .. })));
        let wal_name = engine.recovery_report().segment_opened.clone();
        if crash_before_retry {
            std::mem::forget(engine);
        } else {
            engine.sync().expect("the retry writes over the part");
            drop(engine);
        }
        let disk = FsDisk::open(dir.path()).expect("disk");
        let engine = Engine::open(disk, EngineOptions::default()).expect("reopen");
        let b = engine.get(b"b").expect("get");
        let report = engine.recovery_report();
        if crash_before_retry {
            assert_eq!(b, None, "never synced, never acknowledged");
            let torn = report.torn_tail.as_ref().expect("the part is reported");
            assert_eq!(torn.file, wal_name);
            assert!(torn.bytes_dropped > 0 && torn.offset >= torn.synced_through);
        } else {
            assert_eq!(b, Some(value(2, &unsynced)));
            assert_eq!(report.torn_tail, None);
        }
        assert_eq!(engine.get(b"a").expect("get"), Some(value(1, "synced")));
    }
}

/// Every file in `dir` with its bytes.
fn snapshot(dir: &std::path::Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .expect("read dir")
        .map(|entry| {
            let entry = entry.expect("entry");
            let name = entry.file_name().into_string().expect("utf-8 name");
            (name, std::fs::read(entry.path()).expect("read"))
        })
        .collect()
}

#[test]
fn a_committed_manifest_edit_found_torn_is_refused_and_nothing_changes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let disk = FsDisk::open(dir.path()).expect("disk");
    let mut options = lsm_options();
    options.compaction_tables_min = 1000;
    options.compaction_tables_max = 1000;
    let mut engine = Engine::open(disk.clone(), options.clone()).expect("open");
    for i in 0..200 {
        engine
            .write(format!("k{i:04}").as_bytes(), value(i, "some value"))
            .expect("write");
        engine.do_background_work(u64::MAX).expect("background");
    }
    engine.sync().expect("sync");
    assert!(engine.tables_total() >= 2);
    drop(engine);
    let manifest = disk
        .list()
        .expect("list")
        .into_iter()
        .find(|name| name.starts_with("manifest-"))
        .expect("a manifest");
    let last_edit = std::fs::metadata(dir.path().join(&manifest))
        .expect("stat")
        .len()
        - 512;
    let mut file = disk.open(&manifest).expect("open");
    let mut byte = [0_u8; 1];
    file.read_at(last_edit + 12, &mut byte).expect("read");
    file.write_at(last_edit + 12, &[byte[0] ^ 0x40])
        .expect("write");
    drop(file);
    let before = snapshot(dir.path());
    let err = Engine::open(disk.clone(), options).expect_err("refused");
    assert_eq!(
        err.corruption_site(),
        Some((manifest.as_str(), last_edit)),
        "{err}"
    );
    assert_eq!(
        snapshot(dir.path()),
        before,
        "a refused open changes nothing"
    );
}

#[test]
fn tables_without_a_manifest_are_refused_not_deleted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let disk = FsDisk::open(dir.path()).expect("disk");
    let mut engine = Engine::open(disk.clone(), lsm_options()).expect("open");
    for i in 0..100 {
        engine
            .write(format!("k{i:04}").as_bytes(), value(i, "some value"))
            .expect("write");
    }
    engine.compact_all().expect("compact");
    drop(engine);
    for name in disk.list().expect("list") {
        if name.starts_with("manifest-") {
            disk.remove(&name).expect("remove");
        }
    }
    let before = snapshot(dir.path());
    let err = Engine::open(disk.clone(), lsm_options()).expect_err("refused");
    let (file, _) = err.corruption_site().expect("site");
    assert!(file.starts_with("table-"), "{err}");
    assert_eq!(snapshot(dir.path()), before);
}

#[test]
fn a_corrupt_table_entry_is_reported_then_shadowed_by_a_newer_write() {
    let dir = tempfile::tempdir().expect("tempdir");
    let disk = FsDisk::open(dir.path()).expect("disk");
    let options = EngineOptions {
        table_compression: TableCompression::None,
        compaction_compression: TableCompression::None,
        ..lsm_options()
    };
    let mut engine = Engine::open(disk.clone(), options).expect("open");
    for i in 0..50 {
        engine
            .write(format!("k{i:04}").as_bytes(), value(10 + i, "v"))
            .expect("write");
    }
    engine.compact_all().expect("compact");
    let table = disk
        .list()
        .expect("list")
        .into_iter()
        .find(|name| name.starts_with("table-"))
        .expect("a table");
    // Byte 20 lies in the first data block, which holds k0000.
    let mut file = disk.open(&table).expect("open");
    let mut byte = [0_u8; 1];
    file.read_at(20, &mut byte).expect("read");
    file.write_at(20, &[byte[0] ^ 1]).expect("write");
    drop(file);
    let err = engine.get(b"k0000").expect_err("corrupt");
    assert_eq!(err.corruption_site().map(|(f, _)| f), Some(table.as_str()));
    // Read repair writes the replicas' version back: it wins over the
    // damaged entry, and reads of the key are served from it.
    assert!(engine
        .write(b"k0000", value(10, "repaired"))
        .expect("write"));
    assert_eq!(
        engine.get(b"k0000").expect("shadowed"),
        Some(value(10, "repaired"))
    );
}

#[test]
fn the_highest_timestamp_survives_reopen_from_tables_and_log() {
    let dir = tempfile::tempdir().expect("tempdir");
    let disk = FsDisk::open(dir.path()).expect("disk");
    let mut engine = Engine::open(disk, lsm_options()).expect("open");
    assert_eq!(engine.timestamp_max(), None);
    // The newest version goes into a table; an older one stays in the log.
    engine.write(b"a", tombstone(90)).expect("write");
    engine.freeze().expect("freeze");
    engine.do_background_work(0).expect("flush");
    assert_eq!(engine.tables_total(), 1);
    engine.write(b"b", value(40, "older")).expect("write");
    engine.sync().expect("sync");
    assert_eq!(engine.timestamp_max(), Some(ts(90)));
    let mut engine = reopen(engine);
    assert_eq!(engine.timestamp_max(), Some(ts(90)), "from the table");
    // Now the newest only in the log.
    engine
        .write_batch(&[(b"c".to_vec(), value(120, "newest"))])
        .expect("batch");
    engine.sync().expect("sync");
    let engine = reopen(engine);
    assert_eq!(engine.timestamp_max(), Some(ts(120)), "from the log");
}

#[test]
fn dropped_keys_leave_no_version_and_no_tombstone_and_may_be_written_again() {
    let dir = tempfile::tempdir().expect("tempdir");
    let disk = FsDisk::open(dir.path()).expect("disk");
    let mut engine = Engine::open(disk, lsm_options()).expect("open");
    // An older version in one table, its tombstone in another, newer
    // values in the memtable: every place a version can be.
    engine.write(b"drop-a", value(1, "old")).expect("write");
    engine.write(b"keep-a", value(1, "kept")).expect("write");
    engine.compact_all().expect("first table");
    engine.write(b"drop-a", tombstone(2)).expect("write");
    engine.write(b"drop-b", value(3, "b")).expect("write");
    engine.compact_all().expect("second table");
    engine.write(b"drop-c", value(4, "c")).expect("write");
    engine.write(b"keep-b", tombstone(4)).expect("write");
    let report = engine
        .drop_keys(&|key: &[u8]| key.starts_with(b"drop-"))
        .expect("drop");
    assert_eq!(report.compactions, 1);
    for key in [&b"drop-a"[..], b"drop-b", b"drop-c"] {
        assert_eq!(
            engine.get(key).expect("get"),
            None,
            "no version, no tombstone"
        );
    }
    assert_eq!(engine.get(b"keep-a").expect("get"), Some(value(1, "kept")));
    assert_eq!(engine.get(b"keep-b").expect("get"), Some(tombstone(4)));
    let mut engine = reopen(engine);
    assert_eq!(engine.get(b"drop-a").expect("get"), None, "after reopen");
    assert_eq!(engine.scan_all().expect("scan").len(), 2);
    // Gone, not shadowed: a version older than the dropped tombstone is
    // taken in again (what a peer streams back).
    assert!(engine.write(b"drop-a", value(1, "old")).expect("write"));
    assert_eq!(engine.get(b"drop-a").expect("get"), Some(value(1, "old")));
}

#[test]
fn dropping_from_a_single_table_or_from_nothing_rewrites_or_does_nothing() {
    let (_dir, mut engine) = temp_engine();
    let nothing = engine.drop_keys(&|_: &[u8]| true).expect("drop");
    assert_eq!(nothing.compactions, 0);
    engine.write(b"a", value(1, "a")).expect("write");
    engine.write(b"b", value(1, "b")).expect("write");
    engine.compact_all().expect("one table");
    assert_eq!(engine.tables_total(), 1);
    engine.drop_keys(&|key: &[u8]| key == b"a").expect("drop");
    assert_eq!(engine.get(b"a").expect("get"), None);
    assert_eq!(engine.get(b"b").expect("get"), Some(value(1, "b")));
    engine.drop_keys(&|_: &[u8]| true).expect("drop all");
    assert_eq!(engine.tables_total(), 0, "an empty merge leaves no table");
    assert!(engine.scan_all().expect("scan").is_empty());
}
