//! `Engine`: the WAL plus the memtable, with recovery.
//!
//! Every write goes to the WAL first and to the memtable only once the WAL
//! append succeeded, so the memtable never holds what recovery could not
//! rebuild. Writes are last-write-wins by [`Timestamp`]: a write no newer
//! than the stored version is ignored and not logged. Nothing is durable
//! until [`Engine::sync`], which covers every write since the last one
//! (group commit).
//!
//! Recovery replays the whole log into the memtable, then appends to a fresh
//! segment rather than the recovered last one: a segment is only ever
//! written by the instance that created it, so every segment but the last is
//! known to be complete and any damage in it is corruption, not a torn tail.

use std::collections::BTreeMap;

use crate::memtable::Memtable;
use crate::wal::{self, RecoveryReport, Wal, RECORD_PAYLOAD_BYTES_MAX};
use crate::{Disk, EngineError, Timestamp, Versioned};

/// Smallest allowed WAL segment: below this, rotation would dominate.
pub const WAL_SEGMENT_BYTES_MIN: u64 = 4 * 1024;
/// Largest allowed WAL segment, so replay of one segment stays bounded.
pub const WAL_SEGMENT_BYTES_LIMIT: u64 = 4 * 1024 * 1024 * 1024;
/// Default WAL segment size.
pub const WAL_SEGMENT_BYTES_DEFAULT: u64 = 64 * 1024 * 1024;
/// Default largest key.
pub const KEY_BYTES_DEFAULT: usize = 64 * 1024;
/// Default largest value.
pub const VALUE_BYTES_DEFAULT: usize = 16 * 1024 * 1024;

/// When the WAL is synced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncPolicy {
    /// Only [`Engine::sync`] syncs (the node calls it once per group commit).
    Always,
    /// Never sync (benchmarks and tests that do not care about crashes):
    /// [`Engine::sync`] marks writes synced without touching the disk.
    Never,
}

/// Tunables, checked by [`EngineOptions::validate`].
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// Whether [`Engine::sync`] reaches the disk.
    pub sync_policy: SyncPolicy,
    /// A WAL segment is rotated before a record would take it past this
    /// (a single larger record gets a segment of its own).
    pub wal_segment_bytes_max: u64,
    /// Largest key accepted by a write.
    pub key_bytes_max: usize,
    /// Largest value accepted by a write.
    pub value_bytes_max: usize,
}

impl Default for EngineOptions {
    fn default() -> EngineOptions {
        EngineOptions {
            sync_policy: SyncPolicy::Always,
            wal_segment_bytes_max: WAL_SEGMENT_BYTES_DEFAULT,
            key_bytes_max: KEY_BYTES_DEFAULT,
            value_bytes_max: VALUE_BYTES_DEFAULT,
        }
    }
}

impl EngineOptions {
    /// Checks that the options are usable together.
    ///
    /// # Errors
    /// [`EngineError::InvalidArgument`] naming the bad option.
    pub fn validate(&self) -> Result<(), EngineError> {
        let invalid = |reason: String| Err(EngineError::InvalidArgument { reason });
        if !(WAL_SEGMENT_BYTES_MIN..=WAL_SEGMENT_BYTES_LIMIT).contains(&self.wal_segment_bytes_max)
        {
            return invalid(format!(
                "wal_segment_bytes_max {} is outside {WAL_SEGMENT_BYTES_MIN}..={WAL_SEGMENT_BYTES_LIMIT}",
                self.wal_segment_bytes_max
            ));
        }
        if self.key_bytes_max == 0 {
            return invalid("key_bytes_max must be at least 1".to_owned());
        }
        // The largest single write must fit in one WAL record.
        let entry_bytes_max =
            wal::single_entry_payload_bytes_max(self.key_bytes_max, self.value_bytes_max);
        if entry_bytes_max.is_none_or(|bytes| bytes > RECORD_PAYLOAD_BYTES_MAX as usize) {
            return invalid(format!(
                "key_bytes_max {} plus value_bytes_max {} does not fit a WAL record of {} bytes",
                self.key_bytes_max, self.value_bytes_max, RECORD_PAYLOAD_BYTES_MAX
            ));
        }
        Ok(())
    }
}

/// The storage engine of one node.
#[derive(Debug)]
pub struct Engine<D: Disk> {
    /// The options it was opened with, validated.
    options: EngineOptions,
    /// The log every write goes to first.
    wal: Wal<D>,
    /// Newest version of every key written since the log began.
    memtable: Memtable,
    /// What recovery found when this engine was opened.
    recovery: RecoveryReport,
}

impl<D: Disk> Engine<D> {
    /// Opens the engine on `disk`: replays the WAL into the memtable and
    /// starts a fresh WAL segment.
    ///
    /// # Errors
    /// [`EngineError::InvalidArgument`] for bad options; corruption found by
    /// replay (anywhere but the torn tail of the last segment); disk errors.
    pub fn open(disk: D, options: EngineOptions) -> Result<Self, EngineError> {
        options.validate()?;
        let mut memtable = Memtable::new();
        let sync_enabled = options.sync_policy == SyncPolicy::Always;
        let (wal, recovery) = wal::open(
            disk,
            options.wal_segment_bytes_max,
            sync_enabled,
            |entries| {
                for (key, version) in entries {
                    // Replay is idempotent under last-write-wins: an entry
                    // that loses here lost when it was first written, too.
                    memtable.apply(&key, version);
                }
            },
        )?;
        Ok(Engine {
            options,
            wal,
            memtable,
            recovery,
        })
    }

    /// Writes `version` under `key` if it is newer than the stored version.
    /// Returns whether it was applied. Not durable until [`Self::sync`].
    ///
    /// # Errors
    /// [`EngineError::Poisoned`] after a failed sync;
    /// [`EngineError::InvalidArgument`] for a key or value over the limits;
    /// disk errors (then nothing was applied).
    pub fn write(&mut self, key: &[u8], version: Versioned) -> Result<bool, EngineError> {
        let applied = self.apply_batch(&[(key, &version)])?;
        Ok(applied == 1)
    }

    /// Writes every entry of `batch` that is newer than the stored version
    /// (and than earlier entries of the batch for the same key), atomically:
    /// after a crash either all applied entries are recovered or none.
    /// Returns how many were applied.
    ///
    /// # Errors
    /// As [`Self::write`]; also `InvalidArgument` for a batch too large for
    /// one WAL record. On error nothing was applied.
    pub fn write_batch(&mut self, batch: &[(Vec<u8>, Versioned)]) -> Result<usize, EngineError> {
        let entries: Vec<(&[u8], &Versioned)> = batch
            .iter()
            .map(|(key, version)| (key.as_slice(), version))
            .collect();
        self.apply_batch(&entries)
    }

    fn apply_batch(&mut self, entries: &[(&[u8], &Versioned)]) -> Result<usize, EngineError> {
        if let Some(reason) = self.wal.poisoned() {
            return Err(EngineError::Poisoned {
                reason: reason.to_owned(),
            });
        }
        let mut payload_bytes = wal::batch_payload_bytes(0);
        for (key, version) in entries {
            self.check_entry(key, version)?;
            payload_bytes = payload_bytes.saturating_add(wal::entry_encoded_bytes(key, version));
        }
        if payload_bytes > RECORD_PAYLOAD_BYTES_MAX as usize {
            return Err(EngineError::InvalidArgument {
                reason: format!(
                    "batch of {} entries needs {payload_bytes} bytes, over the WAL record \
                     maximum of {RECORD_PAYLOAD_BYTES_MAX}",
                    entries.len()
                ),
            });
        }
        // Only versions that win are logged; a later entry of the batch for
        // the same key must beat the earlier one too.
        let mut batch_newest: BTreeMap<&[u8], Timestamp> = BTreeMap::new();
        let mut winners = Vec::new();
        for &(key, version) in entries {
            let wins = match batch_newest.get(key) {
                Some(newest) => version.timestamp > *newest,
                None => self.memtable.would_apply(key, version.timestamp),
            };
            if wins {
                batch_newest.insert(key, version.timestamp);
                winners.push((key, version));
            }
        }
        if winners.is_empty() {
            return Ok(0);
        }
        self.wal.append_batch(&winners)?;
        for (key, version) in &winners {
            let applied = self.memtable.apply(key, (*version).clone());
            assert!(
                applied,
                "a winner of the batch is newer than the stored version"
            );
        }
        Ok(winners.len())
    }

    fn check_entry(&self, key: &[u8], version: &Versioned) -> Result<(), EngineError> {
        if key.len() > self.options.key_bytes_max {
            return Err(EngineError::InvalidArgument {
                reason: format!(
                    "key of {} bytes exceeds key_bytes_max {}",
                    key.len(),
                    self.options.key_bytes_max
                ),
            });
        }
        let value_len = version.value.as_ref().map_or(0, Vec::len);
        if value_len > self.options.value_bytes_max {
            return Err(EngineError::InvalidArgument {
                reason: format!(
                    "value of {value_len} bytes exceeds value_bytes_max {}",
                    self.options.value_bytes_max
                ),
            });
        }
        Ok(())
    }

    /// The newest version of `key`, tombstones included (callers need their
    /// timestamps for read repair). Reads keep working after a failed sync.
    ///
    /// # Errors
    /// None yet; reads from tables will be able to fail.
    pub fn get(&self, key: &[u8]) -> Result<Option<Versioned>, EngineError> {
        Ok(self.memtable.get(key).cloned())
    }

    /// Makes every write since the last sync durable, with one WAL sync (and
    /// a directory sync if a segment was created). A no-op when nothing is
    /// unsynced.
    ///
    /// # Errors
    /// [`EngineError::Poisoned`] after an earlier failed sync; a failed sync
    /// returns the disk's error and poisons the engine: every later write
    /// and sync fails, reads still work.
    pub fn sync(&mut self) -> Result<(), EngineError> {
        self.wal.sync()
    }

    /// Whether any write since the last sync is not yet durable.
    pub fn has_unsynced(&self) -> bool {
        self.wal.has_unsynced()
    }

    /// Every key in order with its newest version, tombstones included.
    ///
    /// # Errors
    /// None yet; reads from tables will be able to fail.
    pub fn scan_all(&self) -> Result<Vec<(Vec<u8>, Versioned)>, EngineError> {
        Ok(self
            .memtable
            .iter()
            .map(|(key, version)| (key.clone(), version.clone()))
            .collect())
    }

    /// The disk below the engine.
    pub fn disk(&self) -> &D {
        self.wal.disk()
    }

    /// The options the engine was opened with.
    pub fn options(&self) -> &EngineOptions {
        &self.options
    }

    /// What recovery found when the engine was opened.
    pub fn recovery_report(&self) -> &RecoveryReport {
        &self.recovery
    }

    /// Why the engine refuses writes, if it does (after a failed sync).
    pub fn poisoned_reason(&self) -> Option<&str> {
        self.wal.poisoned()
    }

    /// Approximate bytes held in memory by the memtable.
    pub fn memtable_bytes(&self) -> usize {
        self.memtable.bytes_total()
    }

    /// Number of keys held, tombstones included.
    pub fn keys_total(&self) -> usize {
        self.memtable.len()
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;
    use std::rc::Rc;

    use proptest::prelude::*;

    use super::*;
    use crate::disk::{DiskError, DiskFile};
    use crate::fs_disk::{FsDisk, FsFile};

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
        /// Every truncate fails.
        truncate_fails: Cell<bool>,
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
    }

    impl Disk for FaultyDisk {
        type File = FaultyFile;
        fn create(&self, name: &str) -> Result<FaultyFile, DiskError> {
            Ok(FaultyFile {
                inner: self.inner.create(name)?,
                faults: self.faults.clone(),
            })
        }
        fn open(&self, name: &str) -> Result<FaultyFile, DiskError> {
            Ok(FaultyFile {
                inner: self.inner.open(name)?,
                faults: self.faults.clone(),
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
            self.inner.read_at(offset, buf)
        }
        fn write_at(&mut self, offset: u64, data: &[u8]) -> Result<(), DiskError> {
            if self.faults.next_write_partial_then_full.replace(false) {
                self.inner.write_at(offset, &data[..data.len() / 2])?;
                return Err(DiskError::NoSpace {
                    name: "file".into(),
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
        let dir = tempfile::tempdir().expect("tempdir");
        let faults = Rc::new(Faults::default());
        let disk = FaultyDisk {
            inner: FsDisk::open(dir.path()).expect("disk"),
            faults: faults.clone(),
        };
        let engine = Engine::open(disk, EngineOptions::default()).expect("open");
        (dir, faults, engine)
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
    fn failed_append_is_rolled_back_and_later_appends_replay() {
        let (_dir, faults, mut engine) = faulty_engine();
        engine.write(b"a", value(1, "before")).expect("write");
        faults.next_write_partial_then_full.set(true);
        let full = engine.write(b"b", value(2, "lost to a full disk"));
        assert!(
            matches!(full, Err(EngineError::Disk(DiskError::NoSpace { .. }))),
            "{full:?}"
        );
        assert_eq!(
            engine.get(b"b").expect("get"),
            None,
            "a failed write is not applied"
        );
        engine
            .write(b"c", value(3, "after"))
            .expect("write after a full disk");
        engine.sync().expect("sync");
        let engine = reopen(engine);
        assert_eq!(
            engine.recovery_report().torn_tail,
            None,
            "no partial record was left behind"
        );
        assert_eq!(
            engine.scan_all().expect("scan"),
            vec![
                (b"a".to_vec(), value(1, "before")),
                (b"c".to_vec(), value(3, "after"))
            ]
        );
    }

    #[test]
    fn failed_rollback_poisons_the_engine() {
        let (_dir, faults, mut engine) = faulty_engine();
        faults.next_write_partial_then_full.set(true);
        faults.truncate_fails.set(true);
        assert!(engine.write(b"k", value(1, "v")).is_err());
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
        ]
    }

    fn model_apply(
        model: &mut BTreeMap<Vec<u8>, Versioned>,
        key: Vec<u8>,
        version: Versioned,
    ) -> bool {
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
            let options = EngineOptions {
                wal_segment_bytes_max: WAL_SEGMENT_BYTES_MIN,
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
                }
            }
            let scanned: BTreeMap<Vec<u8>, Versioned> = engine.scan_all().expect("scan").into_iter().collect();
            prop_assert_eq!(scanned, model);
        }
    }
}
