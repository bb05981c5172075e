//! The engine's error type.

use thiserror::Error;

use crate::disk::DiskError;

/// What the engine reports instead of panicking or serving bad data.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum EngineError {
    /// The disk below failed (including a failed sync; a full disk is
    /// [`EngineError::NoSpace`]).
    #[error(transparent)]
    Disk(DiskError),
    /// The disk is full. Not fatal: a refused write applied nothing, and a
    /// sync that could not write keeps its records buffered, to be written
    /// by a later sync once there is space (nothing of it acknowledged
    /// meanwhile). Reads go on.
    #[error("{file}: no space left on the disk")]
    NoSpace { file: String },
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

impl From<DiskError> for EngineError {
    fn from(err: DiskError) -> EngineError {
        match err {
            DiskError::NoSpace { name } => EngineError::NoSpace { file: name },
            other => EngineError::Disk(other),
        }
    }
}

impl EngineError {
    /// The message without the file name it starts with (for nesting one
    /// error's text in another about the same file).
    pub fn detail(&self) -> String {
        let text = self.to_string();
        let file = match self {
            EngineError::Corruption { file, .. } | EngineError::ChecksumMismatch { file, .. } => {
                file
            }
            _ => return text,
        };
        text.strip_prefix(file.as_str())
            .and_then(|rest| rest.strip_prefix(": "))
            .map_or_else(|| text.clone(), str::to_owned)
    }

    /// The file and offset of a corruption or checksum error, for reports
    /// that must name where the bad bytes are.
    pub fn corruption_site(&self) -> Option<(&str, u64)> {
        match self {
            EngineError::Corruption { file, offset, .. }
            | EngineError::ChecksumMismatch { file, offset, .. } => Some((file, *offset)),
            _ => None,
        }
    }
}
