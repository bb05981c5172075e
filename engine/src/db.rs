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
//! old state (the table is garbage, the WAL replays) or the new one.
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
//! the compactions the budget allows, each job whole. If the node falls
//! behind, a write that would freeze a memtable while
//! [`FROZEN_MEMTABLES_MAX`] are waiting flushes the oldest inline first
//! (back-pressure instead of unbounded memory).

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::ops::Bound;

use crate::compaction::{self, policy};
use crate::disk::DiskError;
use crate::manifest::{self, Manifest, VersionEdit, EDITS_PER_CHECKPOINT_DEFAULT};
use crate::memtable::{range_is_empty, EntryRef, MemKey, Memtable};
use crate::merge::{Cursor, Merge};
use crate::sstable::bloom::key_hash;
use crate::sstable::cache::BlockCache;
use crate::sstable::reader::Table;
use crate::sstable::writer::{TableWriter, WrittenTable};
use crate::sstable::{
    parse_table_name, TableCompression, TableOptions, TEMPORARY_SUFFIX, ZSTD_LEVELS,
};
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
/// Smallest allowed memtable before a freeze (tests use tiny ones).
pub const MEMTABLE_BYTES_MIN: usize = 1024;
/// Default memtable size before a freeze.
pub const MEMTABLE_BYTES_DEFAULT: usize = 64 * 1024 * 1024;
/// Frozen memtables allowed to wait for a flush before writes flush inline.
pub const FROZEN_MEMTABLES_MAX: usize = 4;
/// Bounds of the data block size.
pub const TABLE_BLOCK_BYTES_MIN: usize = 256;
pub const TABLE_BLOCK_BYTES_LIMIT: usize = 1024 * 1024;
/// Default data block size of flushed tables: point reads of fresh data
/// miss the block cache most, and a miss reads, checks and unpacks a whole
/// block (2 KiB blocks: about 15% more cache-missing point reads per second
/// than 4 KiB ones, LZ4 tables 2% larger).
pub const TABLE_BLOCK_BYTES_DEFAULT: usize = 2 * 1024;
/// Default data block size of compacted tables: a zstd block (with the
/// table's dictionary) costs about the same to unpack at 2 or 4 KiB, and
/// compresses better at 4.
pub const COMPACTION_BLOCK_BYTES_DEFAULT: usize = 4 * 1024;
/// Bounds and default of bloom filter bits per key.
pub const BLOOM_BITS_PER_KEY_LIMIT: u32 = 32;
/// Default zstd level of compacted tables: level 1 to 3 give the same size
/// on 4 KiB blocks; 3 is zstd's own default.
pub const COMPACTION_ZSTD_LEVEL_DEFAULT: i32 = 3;
pub const BLOOM_BITS_PER_KEY_DEFAULT: u32 = 10;
/// Default tier bounds of size-tiered compaction.
pub const COMPACTION_TABLES_MIN_DEFAULT: usize = 4;
pub const COMPACTION_TABLES_MAX_DEFAULT: usize = 32;
/// Default memory bound of the block cache.
pub const BLOCK_CACHE_BYTES_DEFAULT: u64 = 32 * 1024 * 1024;

/// When the WAL is synced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncPolicy {
    /// Every acknowledgement waits for a sync: the node calls
    /// [`Engine::sync`] once per group commit, before it answers.
    Always,
    /// Writes are acknowledged before they are durable and synced every
    /// `interval_nanos`: the node calls [`Engine::sync_if_due`] on its ticks
    /// with its monotonic time (the engine reads no clock). A crash loses at
    /// most about one interval of acknowledged writes. [`Engine::sync`]
    /// still syncs at once when asked.
    Interval { interval_nanos: u64 },
    /// Never sync (benchmarks and tests that do not care about crashes):
    /// [`Engine::sync`] marks writes synced without touching the disk.
    Never,
}

impl SyncPolicy {
    /// Whether syncs reach the disk.
    fn syncs(self) -> bool {
        self != SyncPolicy::Never
    }
}

/// Whether compaction may drop the tombstone of a key: the cluster says no
/// for keys whose ranges are not yet repaired everywhere, since another
/// replica may still hold the value the tombstone deletes.
/// It is asked with the key and the tombstone's timestamp.
pub type PurgeGuard = Box<dyn Fn(&[u8], Timestamp) -> bool + Send>;

/// Holds the optional guard; its `Debug` says only whether there is one.
struct PurgeGuardSlot(Option<PurgeGuard>);

impl std::fmt::Debug for PurgeGuardSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}",
            if self.0.is_some() {
                "Some(guard)"
            } else {
                "None"
            }
        )
    }
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
    /// The memtable is frozen (and later flushed) once it holds this much.
    pub memtable_bytes_max: usize,
    /// Target size of a data block of tables written by flushes.
    pub table_block_bytes: usize,
    /// Target size of a data block of tables written by compactions.
    pub compaction_block_bytes: usize,
    /// Compression of the data blocks of tables written by flushes: fresh
    /// data, read and soon rewritten, so fast to decompress.
    pub table_compression: TableCompression,
    /// Compression of the data blocks of tables written by compactions:
    /// most of the data, once the store has run a while, so compact.
    pub compaction_compression: TableCompression,
    /// Bloom filter bits per key (about 1% false positives at 10).
    pub bloom_bits_per_key: u32,
    /// Manifest edits between checkpoints.
    pub manifest_edits_per_checkpoint: usize,
    /// Size-tiered compaction merges a tier once it has this many tables...
    pub compaction_tables_min: usize,
    /// ...and at most this many at once.
    pub compaction_tables_max: usize,
    /// Memory bound of the cache of decoded data blocks (0: no cache).
    pub block_cache_bytes: u64,
}

impl Default for EngineOptions {
    fn default() -> EngineOptions {
        EngineOptions {
            sync_policy: SyncPolicy::Always,
            wal_segment_bytes_max: WAL_SEGMENT_BYTES_DEFAULT,
            key_bytes_max: KEY_BYTES_DEFAULT,
            value_bytes_max: VALUE_BYTES_DEFAULT,
            memtable_bytes_max: MEMTABLE_BYTES_DEFAULT,
            table_block_bytes: TABLE_BLOCK_BYTES_DEFAULT,
            compaction_block_bytes: COMPACTION_BLOCK_BYTES_DEFAULT,
            table_compression: TableCompression::Lz4,
            compaction_compression: TableCompression::Zstd {
                level: COMPACTION_ZSTD_LEVEL_DEFAULT,
            },
            bloom_bits_per_key: BLOOM_BITS_PER_KEY_DEFAULT,
            manifest_edits_per_checkpoint: EDITS_PER_CHECKPOINT_DEFAULT,
            compaction_tables_min: COMPACTION_TABLES_MIN_DEFAULT,
            compaction_tables_max: COMPACTION_TABLES_MAX_DEFAULT,
            block_cache_bytes: BLOCK_CACHE_BYTES_DEFAULT,
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
        if self.memtable_bytes_max < MEMTABLE_BYTES_MIN {
            return invalid(format!(
                "memtable_bytes_max {} is below {MEMTABLE_BYTES_MIN}",
                self.memtable_bytes_max
            ));
        }
        if !(TABLE_BLOCK_BYTES_MIN..=TABLE_BLOCK_BYTES_LIMIT).contains(&self.table_block_bytes) {
            return invalid(format!(
                "table_block_bytes {} is outside {TABLE_BLOCK_BYTES_MIN}..={TABLE_BLOCK_BYTES_LIMIT}",
                self.table_block_bytes
            ));
        }
        if !(TABLE_BLOCK_BYTES_MIN..=TABLE_BLOCK_BYTES_LIMIT).contains(&self.compaction_block_bytes)
        {
            return invalid(format!(
                "compaction_block_bytes {} is outside {TABLE_BLOCK_BYTES_MIN}..={TABLE_BLOCK_BYTES_LIMIT}",
                self.compaction_block_bytes
            ));
        }
        for (name, compression) in [
            ("table_compression", self.table_compression),
            ("compaction_compression", self.compaction_compression),
        ] {
            if let TableCompression::Zstd { level } = compression {
                if !ZSTD_LEVELS.contains(&level) {
                    return invalid(format!(
                        "{name}: zstd level {level} is outside {}..={}",
                        ZSTD_LEVELS.start(),
                        ZSTD_LEVELS.end()
                    ));
                }
            }
        }
        if !(1..=BLOOM_BITS_PER_KEY_LIMIT).contains(&self.bloom_bits_per_key) {
            return invalid(format!(
                "bloom_bits_per_key {} is outside 1..={BLOOM_BITS_PER_KEY_LIMIT}",
                self.bloom_bits_per_key
            ));
        }
        if self.manifest_edits_per_checkpoint == 0 {
            return invalid("manifest_edits_per_checkpoint must be at least 1".to_owned());
        }
        if self.compaction_tables_min < 2 || self.compaction_tables_max < self.compaction_tables_min
        {
            return invalid(format!(
                "compaction_tables_min {} must be at least 2 and at most compaction_tables_max {}",
                self.compaction_tables_min, self.compaction_tables_max
            ));
        }
        Ok(())
    }

    /// How flushes write tables.
    fn table_options(&self) -> TableOptions {
        TableOptions {
            block_bytes_target: self.table_block_bytes,
            compression: self.table_compression,
            bloom_bits_per_key: self.bloom_bits_per_key,
        }
    }

    /// How compactions write tables.
    fn compaction_table_options(&self) -> TableOptions {
        TableOptions {
            block_bytes_target: self.compaction_block_bytes,
            compression: self.compaction_compression,
            ..self.table_options()
        }
    }
}

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
}

/// Writes `memtable` as table `id`.
fn write_memtable<D: Disk>(
    disk: &D,
    id: u64,
    memtable: &Memtable,
    options: TableOptions,
    sync_enabled: bool,
) -> Result<Option<WrittenTable>, EngineError> {
    let mut writer = TableWriter::create(disk, id, options, sync_enabled)?;
    let mut key = Vec::new();
    for (mem_key, entry) in memtable.iter() {
        mem_key.write_to(&mut key);
        if let Err(err) = writer.add(&key, entry.timestamp, entry.value) {
            writer.abandon();
            return Err(err);
        }
    }
    writer.finish()
}

/// Whether `name` is a table being written: garbage at open.
fn is_temporary_table(name: &str) -> bool {
    name.strip_suffix(TEMPORARY_SUFFIX)
        .and_then(parse_table_name)
        .is_some()
}

/// The newer of two versions by timestamp.
fn newer(best: Option<Versioned>, candidate: Option<Versioned>) -> Option<Versioned> {
    match (best, candidate) {
        (Some(best), Some(candidate)) if candidate.timestamp > best.timestamp => Some(candidate),
        (None, candidate) => candidate,
        (best, _) => best,
    }
}

/// Whether a table holding keys `key_min..=key_max` can hold a key within
/// `start` and `end`.
fn overlaps(key_min: &[u8], key_max: &[u8], start: Bound<&[u8]>, end: Bound<&[u8]>) -> bool {
    let after_start = match start {
        Bound::Unbounded => true,
        Bound::Included(start) => key_max >= start,
        Bound::Excluded(start) => key_max > start,
    };
    let before_end = match end {
        Bound::Unbounded => true,
        Bound::Included(end) => key_min <= end,
        Bound::Excluded(end) => key_min < end,
    };
    after_start && before_end
}

impl<D: Disk> Engine<D> {
    /// Opens the engine on `disk`: replays the manifest, deletes files it
    /// does not name, opens the live tables, replays the WAL segments the
    /// tables do not cover into the memtable and starts a fresh segment.
    ///
    /// # Errors
    /// [`EngineError::InvalidArgument`] for bad options; corruption found by
    /// replay (anywhere but the torn tail of the last segment or of the
    /// manifest) or in a table's metadata; disk errors.
    pub fn open(disk: D, options: EngineOptions) -> Result<Self, EngineError> {
        options.validate()?;
        let sync_enabled = options.sync_policy.syncs();
        let manifest = manifest::open(&disk, options.manifest_edits_per_checkpoint, sync_enabled)?;
        let state = manifest.state().clone();
        let mut removed = false;
        for name in disk.list()? {
            let dead_table = parse_table_name(&name).is_some_and(|id| !state.tables.contains(&id));
            if dead_table || is_temporary_table(&name) {
                disk.remove(&name)?;
                removed = true;
            }
        }
        if removed && sync_enabled {
            disk.sync_dir()?;
        }
        let mut tables = Vec::with_capacity(state.tables.len());
        for &id in state.tables.iter().rev() {
            tables.push(Table::open(&disk, id)?);
        }
        let mut memtable = Memtable::new(options.memtable_bytes_max);
        let (wal, recovery) = wal::open(
            disk,
            state.wal_segments_covered,
            options.wal_segment_bytes_max,
            sync_enabled,
            |entries| {
                for (key, version) in entries {
                    // Replay is idempotent under last-write-wins: an entry
                    // that loses here lost when it was first written, too.
                    memtable.apply(&key, version.timestamp, version.value.as_deref());
                }
            },
        )?;
        let cache = RefCell::new(BlockCache::new(options.block_cache_bytes));
        Ok(Engine {
            options,
            wal,
            memtable,
            frozen: VecDeque::new(),
            tables,
            cache,
            manifest,
            tombstone_purge_before: None,
            purge_guard: PurgeGuardSlot(None),
            last_interval_sync_nanos: None,
            poisoned: None,
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
        self.check_not_poisoned()?;
        self.check_entry(key, &version)?;
        let mem_key = MemKey::new(key);
        let hash = key_hash(key);
        if !self.wins(key, &mem_key, hash, version.timestamp)? {
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
        for (key, version) in batch {
            let wins = match batch_newest.get(key.as_slice()) {
                Some(newest) => version.timestamp > *newest,
                None => self.wins(key, &MemKey::new(key), key_hash(key), version.timestamp)?,
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
        }
        Ok(winners.len())
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
    fn wins(
        &self,
        key: &[u8],
        mem_key: &MemKey,
        hash: u64,
        timestamp: Timestamp,
    ) -> Result<bool, EngineError> {
        let newer_in = |memtable: &Memtable| {
            memtable
                .get_key(mem_key, hash)
                .is_some_and(|stored| stored.timestamp >= timestamp)
        };
        if newer_in(&self.memtable) || self.frozen.iter().any(|f| newer_in(&f.memtable)) {
            return Ok(false);
        }
        for table in &self.tables {
            if table.meta.timestamp_max < timestamp {
                continue;
            }
            if let Some(stored) = table.get(key, hash, &self.cache)? {
                if stored.timestamp >= timestamp {
                    return Ok(false);
                }
            }
        }
        Ok(true)
    }

    /// The newest version of `key` across memtables and tables.
    fn lookup(&self, key: &[u8]) -> Result<Option<Versioned>, EngineError> {
        let mem_key = MemKey::new(key);
        let hash = key_hash(key);
        let mut best = self.memtable.get_key(&mem_key, hash);
        for frozen in self.frozen.iter().rev() {
            if let Some(found) = frozen.memtable.get_key(&mem_key, hash) {
                if best.is_none_or(|b| found.timestamp > b.timestamp) {
                    best = Some(found);
                }
            }
        }
        let mut best = best.map(EntryRef::to_versioned);
        for table in &self.tables {
            // A table whose newest entry is older than what we have cannot
            // change the answer.
            if best
                .as_ref()
                .is_some_and(|found| found.timestamp >= table.meta.timestamp_max)
            {
                continue;
            }
            best = newer(best, table.get(key, hash, &self.cache)?);
        }
        Ok(best)
    }

    /// The newest version of `key`, tombstones included (callers need their
    /// timestamps for read repair). Reads keep working after a failed sync.
    ///
    /// # Errors
    /// Disk errors and corruption from a table read.
    pub fn get(&self, key: &[u8]) -> Result<Option<Versioned>, EngineError> {
        self.lookup(key)
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

    /// Every key in order with its newest version, tombstones included.
    ///
    /// # Errors
    /// Disk errors and corruption from a table read.
    pub fn scan_all(&self) -> Result<Vec<(Vec<u8>, Versioned)>, EngineError> {
        self.scan(Bound::Unbounded, Bound::Unbounded, usize::MAX)
    }

    /// Up to `limit` keys from `start` to `end`, forward, each with its
    /// newest version, tombstones included (callers filter them; the
    /// cluster needs their timestamps).
    ///
    /// # Errors
    /// Disk errors and corruption from a table read.
    pub fn scan(
        &self,
        start: Bound<&[u8]>,
        end: Bound<&[u8]>,
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Versioned)>, EngineError> {
        self.scan_ordered(start, end, limit, false)
    }

    /// As [`Self::scan`], but backward: up to `limit` keys from `end` down
    /// to `start`, in descending order.
    ///
    /// # Errors
    /// Disk errors and corruption from a table read.
    pub fn scan_reverse(
        &self,
        start: Bound<&[u8]>,
        end: Bound<&[u8]>,
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Versioned)>, EngineError> {
        self.scan_ordered(start, end, limit, true)
    }

    fn scan_ordered(
        &self,
        start: Bound<&[u8]>,
        end: Bound<&[u8]>,
        limit: usize,
        reverse: bool,
    ) -> Result<Vec<(Vec<u8>, Versioned)>, EngineError> {
        let mut out = Vec::new();
        if limit == 0 {
            return Ok(out);
        }
        self.scan_with(start, end, reverse, |key, timestamp, value| {
            out.push((
                key.to_vec(),
                Versioned {
                    timestamp,
                    value: value.map(<[u8]>::to_vec),
                },
            ));
            out.len() < limit
        })?;
        Ok(out)
    }

    /// Calls `visit(key, timestamp, value)` (`value: None` for a tombstone)
    /// for each key from `start` to `end` with its newest version, in
    /// ascending order (descending if `reverse`), until `visit` returns
    /// `false`. Nothing is copied on the way: `visit` sees the bytes where
    /// they lie, so a caller that serializes them or counts them pays for no
    /// allocation per entry.
    ///
    /// # Errors
    /// Disk errors and corruption from a table read; entries visited
    /// before the error were correct.
    pub fn scan_with(
        &self,
        start: Bound<&[u8]>,
        end: Bound<&[u8]>,
        reverse: bool,
        mut visit: impl FnMut(&[u8], Timestamp, Option<&[u8]>) -> bool,
    ) -> Result<(), EngineError> {
        if range_is_empty(start, end) {
            return Ok(());
        }
        let mut cursors: Vec<Cursor<'_, D::File>> = Vec::new();
        cursors.push(Cursor::memtable(self.memtable.range(start, end), reverse));
        for frozen in &self.frozen {
            cursors.push(Cursor::memtable(frozen.memtable.range(start, end), reverse));
        }
        for table in &self.tables {
            if !overlaps(&table.meta.key_min, &table.meta.key_max, start, end) {
                continue;
            }
            // A scan reads each block once: it takes cached blocks but
            // does not push point reads' blocks out.
            let mut cursor = table.cursor(&self.cache, false, reverse);
            cursor.seek(if reverse { end } else { start })?;
            cursors.push(Cursor::Table(cursor));
        }
        let mut merge = Merge::new(cursors, reverse);
        while merge.next()? {
            let key = merge.key();
            let inside = if reverse {
                match start {
                    Bound::Unbounded => true,
                    Bound::Included(start) => key >= start,
                    Bound::Excluded(start) => key > start,
                }
            } else {
                match end {
                    Bound::Unbounded => true,
                    Bound::Included(end) => key <= end,
                    Bound::Excluded(end) => key < end,
                }
            };
            if !inside || !visit(key, merge.timestamp(), merge.value()) {
                break;
            }
        }
        Ok(())
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

    /// Does paced background work: freezes an over-full memtable, flushes
    /// frozen memtables oldest first, then compacts while the budget lasts.
    /// Each job runs whole; the budget is checked between jobs, and at
    /// least one job runs if any is due.
    ///
    /// # Errors
    /// `Poisoned`; disk errors (a failed sync poisons the engine);
    /// corruption met while compacting.
    pub fn do_background_work(
        &mut self,
        bytes_budget: u64,
    ) -> Result<BackgroundReport, EngineError> {
        self.check_not_poisoned()?;
        let mut report = BackgroundReport::default();
        if self.memtable.bytes_total() >= self.options.memtable_bytes_max {
            self.freeze()?;
        }
        while !self.frozen.is_empty() {
            if report.bytes_written > 0 && report.bytes_written >= bytes_budget {
                report.work_pending = true;
                return Ok(report);
            }
            report.bytes_written += self.flush_oldest()?;
            report.tables_flushed += 1;
        }
        while let Some(inputs) = self.compaction_pick() {
            if report.bytes_written > 0 && report.bytes_written >= bytes_budget {
                report.work_pending = true;
                return Ok(report);
            }
            report.bytes_written += self.compact(&inputs)?;
            report.compactions += 1;
        }
        Ok(report)
    }

    /// Full compaction: flushes the memtable and every frozen memtable, then
    /// merges all tables into one (dropping shadowed versions and the
    /// tombstones the purge horizon allows). Runs whole, however large: for
    /// tools and benchmarks, not for a node's ticks.
    ///
    /// # Errors
    /// As [`Self::do_background_work`].
    pub fn compact_all(&mut self) -> Result<BackgroundReport, EngineError> {
        self.check_not_poisoned()?;
        let mut report = BackgroundReport::default();
        self.freeze()?;
        while !self.frozen.is_empty() {
            report.bytes_written += self.flush_oldest()?;
            report.tables_flushed += 1;
        }
        // One table is rewritten too if it holds tombstones that may go.
        let may_purge = self.tombstone_purge_before.is_some()
            && self.tables.iter().any(|t| t.meta.tombstones_total > 0);
        if self.tables.len() > 1 || (self.tables.len() == 1 && may_purge) {
            let mut inputs: Vec<u64> = self.tables.iter().map(|table| table.id).collect();
            inputs.sort_unstable();
            report.bytes_written += self.compact(&inputs)?;
            report.compactions += 1;
        }
        Ok(report)
    }

    /// Freezes the memtable and moves the WAL to a new segment.
    fn freeze(&mut self) -> Result<(), EngineError> {
        if self.memtable.len() == 0 {
            return Ok(());
        }
        if self.frozen.len() >= FROZEN_MEMTABLES_MAX {
            self.flush_oldest()?;
        }
        let wal_segment_last = self.wal.seal_segment()?;
        let memtable = std::mem::replace(
            &mut self.memtable,
            Memtable::new(self.options.memtable_bytes_max),
        );
        self.frozen.push_back(Frozen {
            memtable,
            wal_segment_last,
        });
        Ok(())
    }

    /// Writes the oldest frozen memtable as a table, publishes it, and
    /// deletes the WAL segments it covers. Returns the bytes written.
    fn flush_oldest(&mut self) -> Result<u64, EngineError> {
        let frozen = self
            .frozen
            .front()
            .expect("callers check for a frozen memtable");
        let id = self.manifest.state().next_table_id;
        let sync_enabled = self.options.sync_policy.syncs();
        let wal_segment_last = frozen.wal_segment_last;
        let written = write_memtable(
            self.wal.disk(),
            id,
            &frozen.memtable,
            self.options.table_options(),
            sync_enabled,
        );
        let written = written
            .map_err(|err| self.poison_if_fatal(err))?
            .expect("a frozen memtable is never empty");
        let edit = VersionEdit {
            next_table_id: id + 1,
            wal_segments_covered: wal_segment_last,
            tables_added: vec![id],
            tables_removed: Vec::new(),
        };
        self.commit(&edit)?;
        let frozen = self.frozen.pop_front().expect("checked above");
        let table = Table::open(self.wal.disk(), id)?;
        self.tables.insert(0, table);
        self.wal.remove_segments_through(frozen.wal_segment_last)?;
        Ok(written.file_bytes)
    }

    /// Makes `edit` durable in the manifest; any failure stops the engine,
    /// since whether the edit committed is unknown until the next open.
    fn commit(&mut self, edit: &VersionEdit) -> Result<(), EngineError> {
        if let Err(err) = self.manifest.commit(self.wal.disk(), edit) {
            self.poisoned = Some(format!("manifest edit failed: {err}"));
            return Err(err);
        }
        Ok(())
    }

    /// The tables the policy would compact next.
    fn compaction_pick(&self) -> Option<Vec<u64>> {
        let summaries: Vec<policy::TableSummary> = self
            .tables
            .iter()
            .map(|table| policy::TableSummary {
                id: table.id,
                file_bytes: table.file_bytes,
            })
            .collect();
        policy::pick(
            &summaries,
            self.options.compaction_tables_min,
            self.options.compaction_tables_max,
        )
    }

    /// Whether a source outside `inputs` holds any version of `key`.
    fn held_outside(&self, key: &[u8], inputs: &BTreeSet<u64>) -> Result<bool, EngineError> {
        let mem_key = MemKey::new(key);
        let hash = key_hash(key);
        if self.memtable.get_key(&mem_key, hash).is_some()
            || self
                .frozen
                .iter()
                .any(|frozen| frozen.memtable.get_key(&mem_key, hash).is_some())
        {
            return Ok(true);
        }
        for table in self.tables.iter().filter(|t| !inputs.contains(&t.id)) {
            if table.get(key, hash, &self.cache)?.is_some() {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Merges the tables `inputs` into one, dropping shadowed versions and
    /// purgeable tombstones; publishes the swap; deletes the inputs.
    /// Returns the bytes written.
    fn compact(&mut self, inputs: &[u64]) -> Result<u64, EngineError> {
        let input_set: BTreeSet<u64> = inputs.iter().copied().collect();
        assert_eq!(
            input_set.len(),
            inputs.len(),
            "compaction inputs are distinct"
        );
        let id = self.manifest.state().next_table_id;
        let sync_enabled = self.options.sync_policy.syncs();
        let written = self.merge_tables(id, &input_set, sync_enabled);
        let written = written.map_err(|err| self.poison_if_fatal(err))?;
        let edit = VersionEdit {
            next_table_id: id + 1,
            wal_segments_covered: self.manifest.state().wal_segments_covered,
            tables_added: written.iter().map(|w| w.id).collect(),
            tables_removed: inputs.to_vec(),
        };
        self.commit(&edit)?;
        self.tables.retain(|table| !input_set.contains(&table.id));
        for input in inputs {
            self.cache.borrow_mut().remove_table(*input);
        }
        if written.is_some() {
            let table = Table::open(self.wal.disk(), id)?;
            self.tables.insert(0, table);
        }
        // The manifest no longer names the inputs; a crash before this
        // finishes leaves files that open deletes.
        for input in inputs {
            let name = crate::sstable::table_name(*input);
            if self.wal.disk().exists(&name)? {
                self.wal.disk().remove(&name)?;
            }
        }
        Ok(written.map_or(0, |w| w.file_bytes))
    }

    /// Writes the merge of the tables `inputs` as table `id`, dropping
    /// shadowed versions and the tombstones the purge rule allows.
    fn merge_tables(
        &self,
        id: u64,
        inputs: &BTreeSet<u64>,
        sync_enabled: bool,
    ) -> Result<Option<WrittenTable>, EngineError> {
        let purge_before = self.tombstone_purge_before;
        let mut cursors = Vec::with_capacity(inputs.len());
        for table in self.tables.iter().filter(|t| inputs.contains(&t.id)) {
            // Compaction reads every block once: keep them out of the cache.
            let mut cursor = table.cursor(&self.cache, false, false);
            cursor.seek(Bound::Unbounded)?;
            cursors.push(Cursor::Table(cursor));
        }
        assert_eq!(cursors.len(), inputs.len(), "compaction inputs are live");
        let mut merge = Merge::new(cursors, false);
        let mut writer = TableWriter::create(
            self.wal.disk(),
            id,
            self.options.compaction_table_options(),
            sync_enabled,
        )?;
        if let Err(err) = self.copy_merged(&mut merge, &mut writer, inputs, purge_before) {
            writer.abandon();
            return Err(err);
        }
        writer.finish()
    }

    /// Adds every entry of `merge` to `writer` but the purgeable tombstones.
    fn copy_merged(
        &self,
        merge: &mut Merge<'_, D::File>,
        writer: &mut TableWriter<'_, D>,
        inputs: &BTreeSet<u64>,
        purge_before: Option<Timestamp>,
    ) -> Result<(), EngineError> {
        while merge.next()? {
            let (key, timestamp, value) = (merge.key(), merge.timestamp(), merge.value());
            if value.is_none() && purge_before.is_some() {
                let version = Versioned {
                    timestamp,
                    value: None,
                };
                let held = self.held_outside(key, inputs)?;
                let guard_allows = self.purge_guard.0.as_ref().is_none_or(|guard| guard(key, timestamp));
                if guard_allows && compaction::tombstone_purgeable(&version, purge_before, held) {
                    continue;
                }
            }
            writer.add(key, timestamp, value)?;
        }
        Ok(())
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
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;
    use std::rc::Rc;

    use std::ops::RangeBounds;

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
                && unreadable
                    .is_some_and(|byte| (offset..offset + buf.len() as u64).contains(&byte))
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
        assert!(
            matches!(full, Err(EngineError::Disk(DiskError::NoSpace { .. }))),
            "{full:?}"
        );
        assert!(engine.has_unsynced(), "the write is still not durable");
        assert_eq!(
            engine.poisoned_reason(),
            None,
            "a full disk is no failed sync"
        );
        assert_eq!(
            engine.get(b"b").expect("reads still work"),
            Some(value(2, "waits for space"))
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
        // Purging forbidden: the tombstone survives the merge.
        let report = engine.do_background_work(u64::MAX).expect("compact");
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
            .compact(&[newest])
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
}
