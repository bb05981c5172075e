//! The `Disk` seam: the only way node logic touches durable storage.
//!
//! A `Disk` is one flat directory of named files. Production uses
//! [`crate::FsDisk`] over a real directory; the simulator supplies a disk that
//! loses, tears and corrupts data within this contract. Code above the seam
//! must be correct against *every* behaviour the contract allows, not only the
//! ones a real file system usually shows.
//!
//! # Durability contract
//!
//! - Nothing written to a file is durable until that file's [`DiskFile::sync`]
//!   returns `Ok`. After a crash, unsynced bytes may be gone, kept, or torn
//!   (some sectors old, some new, some garbage).
//! - A `create`, `rename` or `remove` is durable only after a later
//!   [`Disk::sync_dir`] returns `Ok`; before that a crash may undo it.
//! - Any read may return bytes other than those written (bit rot, misdirected
//!   writes): everything stored is checksummed by the layer above, and a
//!   mismatch is reported as corruption, never served.
//! - A failed `sync` is fatal for the writer: the page cache may already have
//!   dropped the data, so retrying and carrying on would acknowledge lost
//!   writes. Callers stop acknowledging and surface the error.

use thiserror::Error;

/// A flat directory of files. See the module documentation for the contract.
///
/// `Debug` is a supertrait so that an engine over any disk can be printed.
pub trait Disk: std::fmt::Debug {
    /// An open file of this disk.
    type File: DiskFile;

    /// Creates a new, empty file named `name`.
    ///
    /// # Errors
    /// [`DiskError::AlreadyExists`] if a file of that name exists;
    /// [`DiskError::InvalidName`] for names that are not a plain file name.
    fn create(&self, name: &str) -> Result<Self::File, DiskError>;

    /// Opens the existing file `name` for reading and writing.
    ///
    /// # Errors
    /// [`DiskError::NotFound`] if there is no such file.
    fn open(&self, name: &str) -> Result<Self::File, DiskError>;

    /// The names of all files, sorted.
    ///
    /// # Errors
    /// I/O errors from the directory listing.
    fn list(&self) -> Result<Vec<String>, DiskError>;

    /// Renames `from` to `to`, atomically replacing any file named `to`.
    ///
    /// # Errors
    /// [`DiskError::NotFound`] if `from` does not exist.
    fn rename(&self, from: &str, to: &str) -> Result<(), DiskError>;

    /// Removes the file `name`.
    ///
    /// # Errors
    /// [`DiskError::NotFound`] if there is no such file.
    fn remove(&self, name: &str) -> Result<(), DiskError>;

    /// Makes every earlier `create`, `rename` and `remove` durable.
    ///
    /// # Errors
    /// [`DiskError::SyncFailed`]; the caller must treat it as fatal.
    fn sync_dir(&self) -> Result<(), DiskError>;

    /// Whether a file named `name` exists.
    ///
    /// # Errors
    /// I/O errors from the directory listing.
    fn exists(&self, name: &str) -> Result<bool, DiskError> {
        Ok(self.list()?.iter().any(|n| n == name))
    }
}

/// An open file. Offsets are bytes from the start of the file.
pub trait DiskFile: std::fmt::Debug {
    /// Fills `buf` with the bytes at `offset`.
    ///
    /// # Errors
    /// [`DiskError::ShortRead`] if the file ends before `offset + buf.len()`;
    /// [`DiskError::Io`] for a failed read (a latent sector error).
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), DiskError>;

    /// Writes `data` at `offset`, extending the file (with zeros before
    /// `offset` if it lies past the end). Not durable until [`Self::sync`].
    ///
    /// # Errors
    /// [`DiskError::NoSpace`] when the disk is full; nothing is written then.
    fn write_at(&mut self, offset: u64, data: &[u8]) -> Result<(), DiskError>;

    /// Writes `data` at the end of the file and returns the offset it starts
    /// at. Not durable until [`Self::sync`].
    ///
    /// # Errors
    /// As [`Self::write_at`].
    fn append(&mut self, data: &[u8]) -> Result<u64, DiskError> {
        let offset = self.len()?;
        self.write_at(offset, data)?;
        Ok(offset)
    }

    /// Makes every earlier write to this file durable (data and length).
    ///
    /// # Errors
    /// [`DiskError::SyncFailed`]; the caller must treat it as fatal.
    fn sync(&mut self) -> Result<(), DiskError>;

    /// Sets the file's length to `len`, dropping bytes past it. Not durable
    /// until [`Self::sync`].
    ///
    /// # Errors
    /// I/O errors.
    fn truncate(&mut self, len: u64) -> Result<(), DiskError>;

    /// The file's current length in bytes, synced or not.
    ///
    /// # Errors
    /// I/O errors.
    fn len(&self) -> Result<u64, DiskError>;

    /// Whether the file is empty.
    ///
    /// # Errors
    /// I/O errors.
    fn is_empty(&self) -> Result<bool, DiskError> {
        Ok(self.len()? == 0)
    }
}

/// What can go wrong below the seam. Every variant names the file.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DiskError {
    /// No file of that name.
    #[error("{name}: no such file")]
    NotFound { name: String },
    /// `create` of a name that exists.
    #[error("{name}: file already exists")]
    AlreadyExists { name: String },
    /// A name with a path separator, `.`/`..`, or empty.
    #[error("{name:?}: not a plain file name")]
    InvalidName { name: String },
    /// A read past the end of the file.
    #[error("{name}: read of {len} bytes at offset {offset} passes the end ({file_len} bytes)")]
    ShortRead {
        name: String,
        offset: u64,
        len: u64,
        file_len: u64,
    },
    /// The disk is full; the write did not happen.
    #[error("{name}: no space left on the disk")]
    NoSpace { name: String },
    /// `sync` or `sync_dir` failed: fatal for the writer.
    #[error("{name}: sync failed: {reason}")]
    SyncFailed { name: String, reason: String },
    /// Any other I/O failure, including a failed read of a bad sector.
    #[error("{name}: i/o error: {reason}")]
    Io { name: String, reason: String },
}

/// Checks that `name` is a plain file name, the only kind a [`Disk`] holds.
///
/// # Errors
/// [`DiskError::InvalidName`] otherwise.
pub fn validate_name(name: &str) -> Result<(), DiskError> {
    let plain =
        !name.is_empty() && name != "." && name != ".." && !name.contains(['/', '\\', '\0']);
    if plain {
        Ok(())
    } else {
        Err(DiskError::InvalidName {
            name: name.to_owned(),
        })
    }
}
