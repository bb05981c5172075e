//! `Engine`: the WAL, the memtables and the tables, with recovery.
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
//!
//! # The LSM
//!
//! When the memtable reaches `memtable_bytes_max` it is *frozen*: the WAL
//! moves to a new segment, so the frozen table covers exactly the segments
//! up to the old one, and a fresh memtable takes new writes. Frozen
//! memtables stay readable until [`Engine::do_background_work`] writes
//! each, oldest first, as a table: table synced and renamed, then a manifest
//! edit "table added, WAL covered through segment S" made durable, and only
//! then the covered segments deleted. A crash at any point leaves either the
//! old state (the table is garbage, the WAL replays) or the new one. These
//! are the steps of a job (`db/job.rs`), which a caller may run one at a
//! time ([`Engine::do_background_steps`]), serving reads and writes between
//! them.
//!
//! Reads look at the memtable, the frozen memtables and the tables (bloom
//! filter and key range first), and keep the version of highest timestamp
//! wherever it is. Writes check the same view, so `write` still reports
//! whether a version won.
//!
//! # Driving background work
//!
//! The engine spawns no thread. The node calls
//! [`Engine::do_background_work`] on each tick with a byte budget; each call
//! freezes an over-full memtable, flushes frozen memtables and runs at most
//! the compactions the budget allows, each job whole (or, with
//! [`Engine::do_background_steps`], at most so many steps: the simulator
//! takes one per tick so that crashes land between them). If the node falls
//! behind, a write that would freeze a memtable while
//! [`FROZEN_MEMTABLES_MAX`] are waiting flushes the oldest inline first
//! (back-pressure instead of unbounded memory).

mod background;
mod job;
mod options;
mod quarantine;
mod read;
mod recovery;
#[cfg(test)]
mod tests;

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, VecDeque};

use crate::disk::DiskError;
use crate::manifest::Manifest;
use crate::memtable::{MemKey, Memtable};
use crate::sstable::bloom::key_hash;
use crate::sstable::cache::BlockCache;
use crate::sstable::parse_table_name;
use crate::sstable::reader::Table;
use crate::sstable::TEMPORARY_SUFFIX;
use crate::wal::{self, RecoveryReport, Wal, RECORD_PAYLOAD_BYTES_MAX};
use crate::{Disk, EngineError, Timestamp, Versioned};

use options::PurgeGuardSlot;
pub use options::{
    EngineOptions, PurgeGuard, SyncPolicy, BLOCK_CACHE_BYTES_DEFAULT, BLOOM_BITS_PER_KEY_DEFAULT,
    BLOOM_BITS_PER_KEY_LIMIT, COMPACTION_BLOCK_BYTES_DEFAULT, COMPACTION_TABLES_MAX_DEFAULT,
    COMPACTION_TABLES_MIN_DEFAULT, COMPACTION_ZSTD_LEVEL_DEFAULT, FROZEN_MEMTABLES_MAX,
    KEY_BYTES_DEFAULT, MEMTABLE_BYTES_DEFAULT, MEMTABLE_BYTES_MIN, TABLE_BLOCK_BYTES_DEFAULT,
    TABLE_BLOCK_BYTES_LIMIT, TABLE_BLOCK_BYTES_MIN, VALUE_BYTES_DEFAULT, WAL_SEGMENT_BYTES_DEFAULT,
    WAL_SEGMENT_BYTES_LIMIT, WAL_SEGMENT_BYTES_MIN,
};
pub use quarantine::{DamagedTable, QUARANTINE_SUFFIX};
pub use recovery::{is_engine_file, EngineRecovery};

/// A memtable waiting to be flushed.
#[derive(Debug)]
struct Frozen {
    memtable: Memtable,
    /// Every write it holds lies in WAL segments up to this one.
    wal_segment_last: u64,
}

/// What one call of [`Engine::do_background_work`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BackgroundReport {
    /// Memtables written as tables.
    pub tables_flushed: usize,
    /// Compactions run.
    pub compactions: usize,
    /// Bytes of tables written.
    pub bytes_written: u64,
    /// Whether work remains (call again on a later tick).
    pub work_pending: bool,
}

/// What the block cache holds and how well it served.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BlockCacheStats {
    /// Bytes charged for the cached blocks (at most `block_cache_bytes`).
    pub used_bytes: u64,
    /// Block reads served from the cache.
    pub hits: u64,
    /// Block reads that went to the disk.
    pub misses: u64,
}

/// The storage engine of one node.
#[derive(Debug)]
pub struct Engine<D: Disk> {
    /// The options it was opened with, validated.
    options: EngineOptions,
    /// The log every write goes to first; owns the disk.
    wal: Wal<D>,
    /// Where new writes go.
    memtable: Memtable,
    /// Full memtables waiting for a flush, oldest first.
    frozen: VecDeque<Frozen>,
    /// Live tables, newest (highest id) first.
    tables: Vec<Table<D::File>>,
    /// Decoded data blocks of the live tables, under a memory bound. In a
    /// `RefCell` because reads (`&self`) fill it; the engine is used from
    /// one thread at a time.
    cache: RefCell<BlockCache>,
    /// Which tables are live and which WAL segments they cover.
    manifest: Manifest<D::File>,
    /// Tombstones older than this may be purged by compaction; `None`
    /// (the default) forbids purging. Set by the cluster.
    tombstone_purge_before: Option<Timestamp>,
    /// Keys whose tombstones must stay however old (the cluster's ranges
    /// not yet repaired); `None` lets the horizon alone decide.
    purge_guard: PurgeGuardSlot,
    /// Under `SyncPolicy::Interval`: when the last interval sync ran, in
    /// the caller's monotonic nanoseconds.
    last_interval_sync_nanos: Option<u64>,
    /// Set when a table or manifest write failed in a way that leaves the
    /// durable state unknown (a failed sync): why the engine stopped.
    poisoned: Option<String>,
    /// What recovery found when this engine was opened.
    recovery: RecoveryReport,
    /// Buggify draws (none fire in production).
    buggify: crate::buggify::BuggifyDraws,
    /// Keys written over a corrupt table entry: see
    /// [`Engine::shadow_damage`]. In a `RefCell` only so that reads can
    /// take it by `&self` alongside the cache.
    shadowed: RefCell<BTreeSet<Vec<u8>>>,
    /// The highest timestamp of any version written or found at open (in
    /// the log or a table's metadata): the cluster seeds its clock above it
    /// so that a node restarted behind its old wall clock never stamps
    /// below what it stored. `None`: nothing was ever stored.
    timestamp_max: Option<Timestamp>,
    /// The flush or compaction part-way through, if any: its next step.
    job: Option<job::Job>,
    /// Live tables a read, scan or compaction met a checksum failure in,
    /// not yet read again (`db/quarantine.rs`). In a `RefCell` so that
    /// reads can note them.
    suspects: RefCell<BTreeSet<u64>>,
    /// Tables whose second read failed too, waiting for quarantine.
    confirmed: Vec<quarantine::DamagedTable>,
    /// Tables quarantined since open.
    quarantined_total: u64,
    /// Tables whose interrupted quarantine open finished.
    quarantined_at_open: Vec<u64>,
}

/// Most keys remembered as shadowing corrupt table entries.
pub const SHADOWED_KEYS_MAX: usize = 10_000;

/// Whether `name` is a table being written: garbage at open.
fn is_temporary_table(name: &str) -> bool {
    name.strip_suffix(TEMPORARY_SUFFIX)
        .and_then(parse_table_name)
        .is_some()
}

impl<D: Disk> Engine<D> {
    /// Opens the engine on `disk`: [`Engine::recover`] replays the manifest,
    /// opens the live tables and replays the WAL segments the tables do not
    /// cover into the memtable, changing nothing on disk; then
    /// [`EngineRecovery::open`] cuts torn tails, deletes files the manifest
    /// does not name and starts a fresh segment. A refused open leaves
    /// every file as it was.
    ///
    /// # Errors
    /// As [`Engine::recover`] (bad options, corruption, missing files) and
    /// [`EngineRecovery::open`] (disk errors).
    pub fn open(disk: D, options: EngineOptions) -> Result<Self, EngineError> {
        Engine::recover(disk, options)?.open()
    }

    /// Times a buggify site of this engine fired.
    pub fn buggify_fired(&self) -> u64 {
        self.buggify.fired()
    }

    /// Writes `version` under `key` if it is newer than the stored version.
    /// Returns whether it was applied. Not durable until [`Self::sync`].
    ///
    /// # Errors
    /// [`EngineError::Poisoned`] after a failed sync;
    /// [`EngineError::InvalidArgument`] for a key or value over the limits;
    /// disk errors (then nothing was applied).
    pub fn write(&mut self, key: &[u8], version: Versioned) -> Result<bool, EngineError> {
        self.check_not_poisoned()?;
        self.check_entry(key, &version)?;
        let mem_key = MemKey::new(key);
        let hash = key_hash(key);
        let (wins, over_damage) = self.wins(key, &mem_key, hash, version.timestamp)?;
        if !wins {
            return Ok(false);
        }
        // Freeze before appending, so a failed freeze applies nothing.
        if self.memtable.bytes_total() >= self.options.memtable_bytes_max {
            self.freeze()?;
        }
        self.wal.append_batch(&[(key, &version)])?;
        let applied =
            self.memtable
                .apply_key(mem_key, hash, version.timestamp, version.value.as_deref());
        assert!(applied, "a winner is newer than the stored version");
        self.note_timestamp(version.timestamp);
        if over_damage {
            self.shadow_damage(key);
        }
        Ok(true)
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
        self.check_not_poisoned()?;
        let mut payload_bytes = wal::batch_payload_bytes(0);
        for (key, version) in batch {
            self.check_entry(key, version)?;
            payload_bytes = payload_bytes.saturating_add(wal::entry_encoded_bytes(key, version));
        }
        if payload_bytes > RECORD_PAYLOAD_BYTES_MAX as usize {
            return Err(EngineError::InvalidArgument {
                reason: format!(
                    "batch of {} entries needs {payload_bytes} bytes, over the WAL record \
                     maximum of {RECORD_PAYLOAD_BYTES_MAX}",
                    batch.len()
                ),
            });
        }
        // Only versions that win are logged; a later entry of the batch for
        // the same key must beat the earlier one too.
        let mut batch_newest: BTreeMap<&[u8], Timestamp> = BTreeMap::new();
        let mut winners: Vec<(&[u8], &Versioned)> = Vec::new();
        let mut over_damage: Vec<&[u8]> = Vec::new();
        for (key, version) in batch {
            let wins = match batch_newest.get(key.as_slice()) {
                Some(newest) => version.timestamp > *newest,
                None => {
                    let (wins, damaged) =
                        self.wins(key, &MemKey::new(key), key_hash(key), version.timestamp)?;
                    if wins && damaged {
                        over_damage.push(key);
                    }
                    wins
                }
            };
            if wins {
                batch_newest.insert(key, version.timestamp);
                winners.push((key, version));
            }
        }
        if winners.is_empty() {
            return Ok(0);
        }
        if self.memtable.bytes_total() >= self.options.memtable_bytes_max {
            self.freeze()?;
        }
        self.wal.append_batch(&winners)?;
        for (key, version) in &winners {
            let applied = self
                .memtable
                .apply(key, version.timestamp, version.value.as_deref());
            assert!(
                applied,
                "a winner of the batch is newer than the stored version"
            );
            self.note_timestamp(version.timestamp);
        }
        for key in over_damage {
            self.shadow_damage(key);
        }
        Ok(winners.len())
    }

    /// The highest timestamp of any version this engine holds or wrote
    /// since it opened, tombstones included (`None` on an empty store).
    /// It survives a restart: recovery finds it again in the log replayed
    /// and in the metadata of the tables (which keep the newest timestamp
    /// of every entry they were built from).
    pub fn timestamp_max(&self) -> Option<Timestamp> {
        self.timestamp_max
    }

    fn note_timestamp(&mut self, timestamp: Timestamp) {
        self.timestamp_max = self.timestamp_max.max(Some(timestamp));
    }

    fn check_not_poisoned(&self) -> Result<(), EngineError> {
        match self.poisoned_reason() {
            Some(reason) => Err(EngineError::Poisoned {
                reason: reason.to_owned(),
            }),
            None => Ok(()),
        }
    }

    /// Stops the engine if `err` leaves durable state unknown (a failed
    /// sync), and returns it.
    fn poison_if_fatal(&mut self, err: EngineError) -> EngineError {
        if matches!(err, EngineError::Disk(DiskError::SyncFailed { .. })) && self.poisoned.is_none()
        {
            crate::marks::hit(crate::marks::Mark::TableSyncPoisoned);
            self.poisoned = Some(err.to_string());
        }
        err
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

    /// Whether a write of `key` at `timestamp` beats every stored version.
    ///
    /// Only a source whose newest timestamp is at least `timestamp` can
    /// hold a version that beats it, so tables entirely older than the
    /// write (every table, for a node writing with a fresh clock) are
    /// skipped without touching their filters.
    ///
    /// A table whose copy of the key is corrupt cannot be asked: the write
    /// wins over it, and the second value says so (once applied, the key
    /// shadows the damage: see [`Self::shadow_damage`]).
    fn wins(
        &self,
        key: &[u8],
        mem_key: &MemKey,
        hash: u64,
        timestamp: Timestamp,
    ) -> Result<(bool, bool), EngineError> {
        let newer_in = |memtable: &Memtable| {
            memtable
                .get_key(mem_key, hash)
                .is_some_and(|stored| stored.timestamp >= timestamp)
        };
        if newer_in(&self.memtable) || self.frozen.iter().any(|f| newer_in(&f.memtable)) {
            return Ok((false, false));
        }
        let mut over_damage = false;
        for table in &self.tables {
            if table.meta.timestamp_max < timestamp {
                continue;
            }
            match table.get(key, hash, &self.cache) {
                Ok(Some(stored)) if stored.timestamp >= timestamp => return Ok((false, false)),
                Ok(_) => {}
                Err(err) if err.corruption_site().is_some() => {
                    self.note_damage(&err);
                    over_damage = true;
                }
                Err(err) => return Err(err),
            }
        }
        Ok((true, over_damage))
    }

    /// Notes that `key`, just written over a corrupt table entry, shadows
    /// it: reads of `key` skip tables whose copy of it is corrupt (the
    /// replicas' newest version, written back by read repair, stands in
    /// for what the damage hid). Kept in memory, for at most
    /// [`SHADOWED_KEYS_MAX`] keys: after a restart or past the bound, reads
    /// report the corruption again and the cluster repairs again.
    fn shadow_damage(&mut self, key: &[u8]) {
        let shadowed = self.shadowed.get_mut();
        crate::marks::hit(crate::marks::Mark::WriteOverDamage);
        if shadowed.len() < SHADOWED_KEYS_MAX {
            shadowed.insert(key.to_vec());
        }
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
        self.check_not_poisoned()?;
        self.wal.sync()
    }

    /// Whether any write since the last sync is not yet durable.
    pub fn has_unsynced(&self) -> bool {
        self.wal.has_unsynced()
    }

    /// Allows compaction to purge tombstones older than `horizon` (the
    /// cluster's "now minus grace period", once the range is repaired), or
    /// forbids purging with `None`, the default.
    pub fn set_tombstone_purge_before(&mut self, horizon: Option<Timestamp>) {
        self.tombstone_purge_before = horizon;
    }

    /// Installs (or, with `None`, removes) the hook compaction asks before
    /// it drops a tombstone older than the horizon: the cluster forbids
    /// purging keys of ranges not yet repaired (no zombie resurrection).
    pub fn set_tombstone_purge_guard(&mut self, guard: Option<PurgeGuard>) {
        self.purge_guard = PurgeGuardSlot(guard);
    }

    /// Under [`SyncPolicy::Interval`], syncs if there is anything unsynced
    /// and `interval_nanos` have passed since the last such sync, `now_nanos`
    /// being the caller's monotonic time. Under the other policies it does
    /// nothing. Returns whether it synced.
    ///
    /// # Errors
    /// As [`Self::sync`].
    pub fn sync_if_due(&mut self, now_nanos: u64) -> Result<bool, EngineError> {
        let SyncPolicy::Interval { interval_nanos } = self.options.sync_policy else {
            return Ok(false);
        };
        let due = self
            .last_interval_sync_nanos
            .is_none_or(|last| now_nanos.saturating_sub(last) >= interval_nanos);
        if !due || !self.has_unsynced() {
            return Ok(false);
        }
        self.sync()?;
        self.last_interval_sync_nanos = Some(now_nanos);
        Ok(true)
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

    /// Whether a full disk stopped the log: writes are refused with
    /// [`EngineError::NoSpace`] (and so are reads of keys whose latest
    /// writes wait to be made durable) until a retried write or sync gets
    /// the waiting records out. Each [`Self::sync`] and write retries.
    pub fn log_stalled_for_space(&self) -> bool {
        self.wal.stall().is_some()
    }

    /// Why the engine refuses writes, if it does (after a failed sync).
    pub fn poisoned_reason(&self) -> Option<&str> {
        self.poisoned.as_deref().or_else(|| self.wal.poisoned())
    }

    /// Approximate bytes held in memory by the memtable and the frozen
    /// memtables.
    pub fn memtable_bytes(&self) -> usize {
        self.memtable.bytes_total()
            + self
                .frozen
                .iter()
                .map(|frozen| frozen.memtable.bytes_total())
                .sum::<usize>()
    }

    /// The block cache: bytes held, hits and misses so far.
    pub fn block_cache_stats(&self) -> BlockCacheStats {
        let cache = self.cache.borrow();
        let (hits, misses) = cache.hits_and_misses();
        BlockCacheStats {
            used_bytes: cache.used_bytes(),
            hits,
            misses,
        }
    }

    /// Number of live tables.
    pub fn tables_total(&self) -> usize {
        self.tables.len()
    }

    /// Number of frozen memtables waiting for a flush.
    pub fn frozen_total(&self) -> usize {
        self.frozen.len()
    }

    /// The compaction backlog: bytes of the tables the policy would merge
    /// next (0 when it would merge nothing). It grows when writes outrun
    /// compaction.
    pub fn compaction_backlog_bytes(&self) -> u64 {
        let Some(ids) = self.compaction_pick() else {
            return 0;
        };
        self.tables
            .iter()
            .filter(|table| ids.contains(&table.id))
            .map(|table| table.file_bytes)
            .sum()
    }
}
