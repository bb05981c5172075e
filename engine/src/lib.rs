//! EnigmaDB's storage engine.
//!
//! Everything a node keeps across a crash goes through this crate, and
//! everything this crate does to storage goes through the [`Disk`] trait, so
//! the same code runs on real files ([`FsDisk`]) and inside the simulator.
//!
//! # Invariants
//!
//! - A write is durable only after [`Engine::sync`] returns `Ok`; after a
//!   crash, recovery yields every synced write and a prefix of the unsynced
//!   ones, never a gap and never an invented value.
//! - Corruption is an [`EngineError`] naming the file and offset, never a
//!   panic and never silently wrong data.
//! - Last write wins: a key holds the version with the highest
//!   [`Timestamp`]; an older write arriving later is ignored.
//! - After a failed sync the engine refuses every further write.
//!
//! # Modules
//!
//! - [`disk`]: the `Disk` seam and its durability contract.
//! - [`fs_disk`]: `FsDisk`, the seam over a real directory.
//! - [`conformance`]: the contract as a test suite, run against every `Disk`.
//! - `types`: timestamps and versioned values.
//! - `wal`: the write-ahead log: framing, segments, replay.
//! - `memtable`: the ordered in-memory table.
//! - `sstable`: immutable sorted tables (format in docs/FORMAT.md).
//! - `manifest`: the log of which tables are live and which WAL segments
//!   they cover.
//! - `merge`: the last-write-wins merged iterator over memtables and tables.
//! - `compaction`: the size-tiered policy and the tombstone purge rule.
//! - `bytes`: decoding helpers that never trust a length.
//! - [`buggify`]: sites where a simulator may force rare paths (no-ops by
//!   default).
//! - [`marks`]: coverage marks, named rare paths counted as they are taken.
//! - `db`: `Engine`, tying them together with flush, compaction and
//!   recovery.

pub mod buggify;
mod bytes;
mod compaction;
pub mod conformance;
mod db;
pub mod disk;
mod error;
pub mod fs_disk;
mod manifest;
pub mod marks;
mod memtable;
mod merge;
mod sstable;
mod types;
mod wal;

pub use buggify::{Buggify, BuggifyDraws, BuggifySite};
pub use db::{
    is_engine_file, BackgroundReport, BlockCacheStats, DamagedTable, Engine, EngineOptions,
    EngineRecovery, PurgeGuard, SyncPolicy, BLOCK_CACHE_BYTES_DEFAULT, BLOOM_BITS_PER_KEY_DEFAULT,
    BLOOM_BITS_PER_KEY_LIMIT, COMPACTION_BLOCK_BYTES_DEFAULT, COMPACTION_TABLES_MAX_DEFAULT,
    COMPACTION_TABLES_MIN_DEFAULT, COMPACTION_ZSTD_LEVEL_DEFAULT, FROZEN_MEMTABLES_MAX,
    KEY_BYTES_DEFAULT, MEMTABLE_BYTES_DEFAULT, MEMTABLE_BYTES_MIN, QUARANTINE_SUFFIX,
    TABLE_BLOCK_BYTES_DEFAULT, TABLE_BLOCK_BYTES_LIMIT, TABLE_BLOCK_BYTES_MIN, VALUE_BYTES_DEFAULT,
    WAL_SEGMENT_BYTES_DEFAULT, WAL_SEGMENT_BYTES_LIMIT, WAL_SEGMENT_BYTES_MIN,
};
pub use disk::{Disk, DiskError, DiskFile};
pub use error::EngineError;
pub use fs_disk::FsDisk;
pub use marks::{Mark, MarkCounts};
pub use sstable::TableCompression;
pub use types::{Timestamp, Versioned};
pub use wal::{RecoveryReport, TornTail, SEGMENT_RECORDS_OFFSET as WAL_RECORDS_OFFSET};
