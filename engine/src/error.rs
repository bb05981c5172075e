//! The engine's error type.

use thiserror::Error;

use crate::disk::DiskError;

/// What the engine reports instead of panicking or serving bad data.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum EngineError {
    /// The disk below failed (including a full disk or a failed sync).
    #[error(transparent)]
    Disk(#[from] DiskError),
    /// Stored bytes do not match their checksum or do not parse.
    #[error("{file}: corruption at offset {offset}: {reason}")]
    Corruption {
        file: String,
        offset: u64,
        reason: String,
    },
    /// A checksum did not match.
    #[error(
        "{file}: checksum mismatch at offset {offset}: expected {expected:#010x}, got {got:#010x}"
    )]
    ChecksumMismatch {
        file: String,
        offset: u64,
        expected: u32,
        got: u32,
    },
    /// An earlier sync failed; the engine acknowledges nothing more.
    #[error("engine stopped after a failed sync: {reason}")]
    Poisoned { reason: String },
    /// A key or value over the engine's limits, or bad options.
    #[error("invalid argument: {reason}")]
    InvalidArgument { reason: String },
}
