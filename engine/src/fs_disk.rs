//! `FsDisk`: the [`Disk`] seam over one real directory.
//!
//! Every file of the disk is a regular file directly inside the directory.
//! Durability maps one to one onto POSIX: [`DiskFile::sync`] is `fdatasync`
//! of the file (`sync_data`: its data and the metadata needed to read it
//! back, length included; not its timestamps), [`Disk::sync_dir`] is
//! `fsync` of the directory, which makes creates, renames and removes
//! durable.

use std::cell::Cell;
use std::fs::{File, OpenOptions};
use std::io::ErrorKind;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::disk::{validate_name, Disk, DiskError, DiskFile};

/// `ENOSPC` on Linux and the BSDs; older toolchains report it as
/// `ErrorKind::Other` rather than `StorageFull`.
const ERRNO_NO_SPACE: i32 = 28;

/// A [`Disk`] over a real directory. Cloning is cheap: clones name the same
/// directory.
#[derive(Debug, Clone)]
pub struct FsDisk {
    /// The directory holding the files; every name is relative to it.
    dir: PathBuf,
}

impl FsDisk {
    /// Opens the disk over `dir`, creating the directory (and its parents)
    /// if it is missing.
    ///
    /// # Errors
    /// [`DiskError::Io`] if the directory cannot be created or is not a
    /// directory.
    pub fn open(dir: impl Into<PathBuf>) -> Result<FsDisk, DiskError> {
        let dir = dir.into();
        let dir_name = dir.display().to_string();
        let not_usable = |err: std::io::Error| DiskError::Io {
            name: dir_name.clone(),
            reason: format!("cannot use as the disk's directory: {err}"),
        };
        std::fs::create_dir_all(&dir).map_err(not_usable)?;
        let metadata = std::fs::metadata(&dir).map_err(not_usable)?;
        if !metadata.is_dir() {
            return Err(DiskError::Io {
                name: dir_name,
                reason: "not a directory".to_owned(),
            });
        }
        Ok(FsDisk { dir })
    }

    /// The directory this disk lives in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path(&self, name: &str) -> Result<PathBuf, DiskError> {
        validate_name(name)?;
        Ok(self.dir.join(name))
    }
}

/// An open file of an [`FsDisk`].
#[derive(Debug)]
pub struct FsFile {
    /// The open file.
    file: File,
    /// The name it was opened under, for error messages.
    name: String,
    /// The file's length as this handle knows it: at open, then after its
    /// own writes and truncates. Used only to undo the growth of a failed
    /// write (a file is written through one handle at a time), so that a
    /// write needs no `stat`: on ext4 a `stat` between writes makes the
    /// next `fdatasync` write the inode too (the change counter was seen),
    /// doubling the I/O of every WAL sync.
    known_len: Cell<u64>,
}

/// Maps an I/O error on the file `name` to the seam's error.
fn io_error(name: &str, err: &std::io::Error) -> DiskError {
    let name = name.to_owned();
    if err.raw_os_error() == Some(ERRNO_NO_SPACE) || err.kind() == ErrorKind::StorageFull {
        return DiskError::NoSpace { name };
    }
    match err.kind() {
        ErrorKind::NotFound => DiskError::NotFound { name },
        ErrorKind::AlreadyExists => DiskError::AlreadyExists { name },
        _ => DiskError::Io {
            name,
            reason: err.to_string(),
        },
    }
}

/// Maps a failed `fsync` to the seam's error: always fatal for the writer.
fn sync_error(name: &str, err: &std::io::Error) -> DiskError {
    DiskError::SyncFailed {
        name: name.to_owned(),
        reason: err.to_string(),
    }
}

impl Disk for FsDisk {
    type File = FsFile;

    fn create(&self, name: &str) -> Result<FsFile, DiskError> {
        let path = self.path(name)?;
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(path)
            .map_err(|err| io_error(name, &err))?;
        Ok(FsFile {
            file,
            name: name.to_owned(),
            known_len: Cell::new(0),
        })
    }

    fn open(&self, name: &str) -> Result<FsFile, DiskError> {
        let path = self.path(name)?;
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(|err| io_error(name, &err))?;
        let len = file.metadata().map_err(|err| io_error(name, &err))?.len();
        Ok(FsFile {
            file,
            name: name.to_owned(),
            known_len: Cell::new(len),
        })
    }

    fn list(&self) -> Result<Vec<String>, DiskError> {
        let dir_name = self.dir.display().to_string();
        let entries = std::fs::read_dir(&self.dir).map_err(|err| io_error(&dir_name, &err))?;
        let mut names = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|err| io_error(&dir_name, &err))?;
            let file_type = entry.file_type().map_err(|err| io_error(&dir_name, &err))?;
            if !file_type.is_file() {
                // Only regular files belong to the disk; an operator's
                // subdirectory is not ours to report.
                continue;
            }
            let name = entry
                .file_name()
                .into_string()
                .map_err(|raw| DiskError::Io {
                    name: format!("{dir_name}/{}", raw.to_string_lossy()),
                    reason: "file name is not UTF-8".to_owned(),
                })?;
            names.push(name);
        }
        names.sort();
        Ok(names)
    }

    fn rename(&self, from: &str, to: &str) -> Result<(), DiskError> {
        let from_path = self.path(from)?;
        let to_path = self.path(to)?;
        // `rename(2)` atomically replaces `to`; `NotFound` can only mean `from`.
        std::fs::rename(from_path, to_path).map_err(|err| io_error(from, &err))
    }

    fn remove(&self, name: &str) -> Result<(), DiskError> {
        let path = self.path(name)?;
        std::fs::remove_file(path).map_err(|err| io_error(name, &err))
    }

    fn sync_dir(&self) -> Result<(), DiskError> {
        let dir_name = self.dir.display().to_string();
        let dir = File::open(&self.dir).map_err(|err| io_error(&dir_name, &err))?;
        dir.sync_all().map_err(|err| sync_error(&dir_name, &err))
    }

    fn exists(&self, name: &str) -> Result<bool, DiskError> {
        let path = self.path(name)?;
        match std::fs::symlink_metadata(path) {
            Ok(metadata) => Ok(metadata.is_file()),
            Err(err) if err.kind() == ErrorKind::NotFound => Ok(false),
            Err(err) => Err(io_error(name, &err)),
        }
    }
}

impl DiskFile for FsFile {
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), DiskError> {
        match self.file.read_exact_at(buf, offset) {
            Ok(()) => Ok(()),
            Err(err) if err.kind() == ErrorKind::UnexpectedEof => Err(DiskError::ShortRead {
                name: self.name.clone(),
                offset,
                len: buf.len() as u64,
                file_len: self.len()?,
            }),
            Err(err) => Err(io_error(&self.name, &err)),
        }
    }

    fn write_at(&mut self, offset: u64, data: &[u8]) -> Result<(), DiskError> {
        let end = offset.saturating_add(data.len() as u64);
        match self.file.write_all_at(data, offset) {
            Ok(()) => {
                self.known_len.set(self.known_len.get().max(end));
                Ok(())
            }
            Err(err) => {
                let error = io_error(&self.name, &err);
                if matches!(error, DiskError::NoSpace { .. }) && end > self.known_len.get() {
                    // The contract says a failed write writes nothing; a real
                    // file system may have written a prefix. Undo any growth
                    // (best effort: the error below is what the caller acts
                    // on, and the engine truncates again itself).
                    let _ = self.file.set_len(self.known_len.get());
                }
                Err(error)
            }
        }
    }

    fn sync(&mut self) -> Result<(), DiskError> {
        // `fdatasync`: the data and what is needed to read it back (the
        // length, the block map), without timestamps.
        self.file
            .sync_data()
            .map_err(|err| sync_error(&self.name, &err))
    }

    fn truncate(&mut self, len: u64) -> Result<(), DiskError> {
        self.file
            .set_len(len)
            .map_err(|err| io_error(&self.name, &err))?;
        self.known_len.set(len);
        Ok(())
    }

    fn len(&self) -> Result<u64, DiskError> {
        let metadata = self
            .file
            .metadata()
            .map_err(|err| io_error(&self.name, &err))?;
        Ok(metadata.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fs_disk_passes_the_conformance_suite() {
        let root = tempfile::tempdir().expect("tempdir");
        let mut disks_total = 0_u32;
        crate::conformance::run_all(|| {
            disks_total += 1;
            FsDisk::open(root.path().join(format!("disk-{disks_total}"))).expect("open FsDisk")
        });
    }

    #[test]
    fn open_creates_a_missing_directory() {
        let root = tempfile::tempdir().expect("tempdir");
        let dir = root.path().join("a").join("b");
        let disk = FsDisk::open(&dir).expect("open");
        assert!(dir.is_dir());
        assert_eq!(disk.list().expect("list"), Vec::<String>::new());
    }

    #[test]
    fn open_over_a_regular_file_is_an_error() {
        let root = tempfile::tempdir().expect("tempdir");
        let path = root.path().join("plain");
        std::fs::write(&path, b"x").expect("write");
        assert!(matches!(FsDisk::open(&path), Err(DiskError::Io { .. })));
    }

    #[test]
    fn list_skips_subdirectories() {
        let root = tempfile::tempdir().expect("tempdir");
        let disk = FsDisk::open(root.path()).expect("open");
        std::fs::create_dir(root.path().join("sub")).expect("mkdir");
        disk.create("f").expect("create");
        assert_eq!(disk.list().expect("list"), vec!["f".to_owned()]);
        assert!(!disk.exists("sub").expect("exists"));
    }

    #[test]
    fn enospc_maps_to_no_space() {
        let err = std::io::Error::from_raw_os_error(ERRNO_NO_SPACE);
        assert_eq!(
            io_error("f", &err),
            DiskError::NoSpace {
                name: "f".to_owned()
            }
        );
    }
}
