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
//!   writes): everything stored is checksummed by the layer above, over its
//!   place (file id and offset) as well as its bytes where the format allows
//!   (table format 4, log format 3), and a mismatch is reported as
//!   corruption, never served.
//! - [`DiskFile::write_synced_at`] is a write and a sync in one: when it
//!   returns `Ok`, its bytes and every earlier write to the file are
//!   durable.
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

    /// Writes `data` at `offset` (extending the file as [`Self::write_at`]
    /// does) and returns once it, and every earlier write and truncate of
    /// this file, is durable: the same as `write_at` then [`Self::sync`],
    /// which is what the default does. A disk may do it in fewer steps (see
    /// [`crate::FsDisk`]), so callers that write and then sync at once
    /// should call this rather than the two.
    ///
    /// # Errors
    /// - [`DiskError::NoSpace`] when the disk is full: nothing was written
    ///   and the file is unchanged as far as the caller can tell (its length
    ///   is as before; the bytes in the range may hold part of `data`, as
    ///   after a failed `write_at`). Earlier writes are no more durable
    ///   than they were before the call.
    /// - [`DiskError::SyncFailed`] for any other failure, of the write or of
    ///   the sync: fatal for the writer, as a failed [`Self::sync`] is.
    fn write_synced_at(&mut self, offset: u64, data: &[u8]) -> Result<(), DiskError> {
        write_then_sync(self, offset, data)
    }

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

impl DiskError {
    /// The file (or directory) the error is about.
    pub fn file_name(&self) -> &str {
        match self {
            DiskError::NotFound { name }
            | DiskError::AlreadyExists { name }
            | DiskError::InvalidName { name }
            | DiskError::ShortRead { name, .. }
            | DiskError::NoSpace { name }
            | DiskError::SyncFailed { name, .. }
            | DiskError::Io { name, .. } => name,
        }
    }
}

/// [`DiskFile::write_synced_at`] done the plain way: [`DiskFile::write_at`]
/// then [`DiskFile::sync`], with the errors that method promises (a failed
/// write other than `NoSpace` becomes `SyncFailed`).
///
/// # Errors
/// As [`DiskFile::write_synced_at`].
pub fn write_then_sync<F: DiskFile + ?Sized>(
    file: &mut F,
    offset: u64,
    data: &[u8],
) -> Result<(), DiskError> {
    match file.write_at(offset, data) {
        Ok(()) => file.sync(),
        Err(err @ DiskError::NoSpace { .. }) => Err(err),
        Err(err) => Err(DiskError::SyncFailed {
            name: err.file_name().to_owned(),
            reason: format!("the write before the sync failed: {err}"),
        }),
    }
}

/// Checks that `name` is a plain file name, the only kind a [`Disk`] holds.
///
/// # Errors
/// [`DiskError::InvalidName`] otherwise.
pub fn validate_name(name: &str) -> Result<(), DiskError> {
    // Bytes, not chars: every disk operation checks its name, and the
    // separators are ASCII, so no UTF-8 decoding is needed to find them.
    let plain = !name.is_empty()
        && name != "."
        && name != ".."
        && !name.bytes().any(|b| matches!(b, b'/' | b'\\' | b'\0'));
    if plain {
        Ok(())
    } else {
        Err(DiskError::InvalidName {
            name: name.to_owned(),
        })
    }
}
