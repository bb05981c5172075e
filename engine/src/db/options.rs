//! The engine's tunables: the sync policy, the purge guard hook and
//! `EngineOptions` with its limits, defaults and validation.

use crate::manifest::EDITS_PER_CHECKPOINT_DEFAULT;
use crate::sstable::{TableCompression, TableOptions, ZSTD_LEVELS};
use crate::wal::{self, RECORD_PAYLOAD_BYTES_MAX};
use crate::{EngineError, Timestamp};

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
    pub(crate) fn syncs(self) -> bool {
        self != SyncPolicy::Never
    }
}

/// Whether compaction may drop the tombstone of a key: the cluster says no
/// for keys whose ranges are not yet repaired everywhere, since another
/// replica may still hold the value the tombstone deletes.
/// It is asked with the key and the tombstone's timestamp.
pub type PurgeGuard = Box<dyn Fn(&[u8], Timestamp) -> bool + Send>;

/// Holds the optional guard; its `Debug` says only whether there is one.
pub(super) struct PurgeGuardSlot(pub(super) Option<PurgeGuard>);

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
    /// **A deliberate bug, for proving that the simulator's checks bite.**
    /// A memtable flush commits its manifest edit and drops the frozen
    /// memtable before opening the new table, so a bad read while opening
    /// it loses the memtable's versions from the read path until restart.
    /// Off by default and settable only through this struct.
    pub bug_flush_drops_memtable_before_table_opens: bool,
    /// **A deliberate bug, for proving that the simulator's checks bite.**
    /// A memtable flush deletes the log segments its table covers before
    /// the manifest edit naming the table is durable, so a crash between
    /// the two steps loses the memtable's writes (the table is garbage at
    /// open, and the log that held them is gone). Harmless when the steps
    /// run back to back without a crash. Off by default and settable only
    /// through this struct.
    pub bug_flush_removes_log_before_manifest_edit: bool,
    /// Buggify sites a simulator enables (none by default: production
    /// never draws).
    pub buggify: crate::buggify::Buggify,
    /// **A deliberate bug, for proving that the recovery tests bite.**
    /// Recovery takes damage before the last synced point of the last WAL
    /// segment for a torn tail and cuts it off, silently losing synced
    /// writes. Off by default and settable only through this struct: no
    /// command sets it.
    pub bug_recovery_takes_synced_damage_for_torn_tail: bool,
    /// **A deliberate bug, for proving that the simulator's damage to
    /// sealed log segments bites.** Recovery takes damage in a sealed
    /// segment (any but the last) for the end of that segment, as if torn,
    /// and goes on with the next: the records after the damage, synced and
    /// acknowledged, vanish silently. Off by default and settable only
    /// through this struct: no command sets it.
    pub bug_recovery_skips_rest_of_damaged_sealed_segment: bool,
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
            bug_flush_drops_memtable_before_table_opens: false,
            bug_flush_removes_log_before_manifest_edit: false,
            buggify: crate::buggify::Buggify::default(),
            bug_recovery_takes_synced_damage_for_torn_tail: false,
            bug_recovery_skips_rest_of_damaged_sealed_segment: false,
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
    pub(super) fn table_options(&self) -> TableOptions {
        TableOptions {
            block_bytes_target: self.table_block_bytes,
            compression: self.table_compression,
            bloom_bits_per_key: self.bloom_bits_per_key,
        }
    }

    /// How compactions write tables.
    pub(super) fn compaction_table_options(&self) -> TableOptions {
        TableOptions {
            block_bytes_target: self.compaction_block_bytes,
            compression: self.compaction_compression,
            ..self.table_options()
        }
    }
}
