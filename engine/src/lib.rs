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
//! - `db`: `Engine`, tying them together with recovery.

#[allow(dead_code)]
mod bytes;
pub mod conformance;
mod db;
pub mod disk;
mod error;
pub mod fs_disk;
#[allow(dead_code)]
mod manifest;
mod memtable;
// Wired into the engine by the flush step; until then only tests use it.
#[allow(dead_code)]
mod sstable;
mod types;
mod wal;

pub use db::{
    Engine, EngineOptions, SyncPolicy, KEY_BYTES_DEFAULT, VALUE_BYTES_DEFAULT,
    WAL_SEGMENT_BYTES_DEFAULT, WAL_SEGMENT_BYTES_LIMIT, WAL_SEGMENT_BYTES_MIN,
};
pub use disk::{Disk, DiskError, DiskFile};
pub use error::EngineError;
pub use fs_disk::FsDisk;
pub use sstable::TableCompression;
pub use types::{Timestamp, Versioned};
pub use wal::{RecoveryReport, TornTail};
