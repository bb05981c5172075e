//! `FsDisk`: the [`Disk`] seam over one real directory.
//!
//! Every file of the disk is a regular file directly inside the directory.
//! Durability maps one to one onto POSIX: [`DiskFile::sync`] is `fdatasync`
//! of the file (`sync_data`: its data and the metadata needed to read it
//! back, length included; not its timestamps), [`Disk::sync_dir`] is
//! `fsync` of the directory, which makes creates, renames and removes
//! durable.
//!
//! # Synced writes through `O_DIRECT | O_DSYNC`
//!
//! [`DiskFile::write_synced_at`] (the WAL's write at every sync) goes, on
//! Linux, through a second descriptor of the file opened with `O_DIRECT |
//! O_DSYNC`, when the write is whole 512-byte sectors (offset and length)
//! and this handle has no write since its last sync. That is one `pwrite`
//! instead of a buffered `pwrite` plus `fdatasync`, and no page-cache
//! writeback: on the development VM (virtio disk, write-back cache, no FUA)
//! a C loop of sector-aligned `O_DIRECT | O_DSYNC` overwrites ran about 10%
//! more synced writes a second than buffered writes each followed by
//! `fdatasync`.
//!
//! Why it keeps the contract:
//! - `O_DSYNC`: when the write returns, its data and the metadata needed to
//!   read it back (a new length, the block map) are durable, as after
//!   `fdatasync`.
//! - "Every earlier write is durable": the direct path is taken only when
//!   this handle wrote or truncated nothing since its last successful sync
//!   (and a handle from `open` counts as unsynced until its first sync); a
//!   file is written through one handle at a time. Otherwise the write goes
//!   the plain way, whose `fdatasync` covers everything.
//! - Reads through the buffered descriptor see the new bytes: the kernel
//!   writes back and then drops the page-cache pages of a direct write's
//!   range.
//! - A file system that refuses `O_DIRECT` (or this alignment) answers
//!   `EINVAL`; the file then goes the plain way for good.

use std::cell::Cell;
use std::fs::{File, OpenOptions};
use std::io::ErrorKind;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::disk::{validate_name, write_then_sync, Disk, DiskError, DiskFile};

/// `ENOSPC` on Linux and the BSDs; older toolchains report it as
/// `ErrorKind::Other` rather than `StorageFull`.
const ERRNO_NO_SPACE: i32 = 28;

/// `EINVAL` on Linux and the BSDs: what a file system that cannot do a
/// direct write (or not at this alignment) answers.
const ERRNO_INVALID: i32 = 22;

/// A direct write's offset and length must be multiples of this (the
/// logical sector size of common disks; the WAL pads its syncs to it).
const DIRECT_WRITE_ALIGN: u64 = 512;

/// Where a direct write's bytes start in memory: a page boundary, which
/// satisfies every device's DMA alignment.
const DIRECT_BUFFER_ALIGN: usize = 4096;

/// The flags of the descriptor synced writes go through; `None` where the
/// platform has no direct I/O this module knows.
#[cfg(target_os = "linux")]
const DIRECT_OPEN_FLAGS: Option<i32> = Some(libc::O_DIRECT | libc::O_DSYNC);
#[cfg(not(target_os = "linux"))]
const DIRECT_OPEN_FLAGS: Option<i32> = None;

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
    /// Whether this handle wrote or truncated since its last successful
    /// sync (or was opened and has not synced): then a synced write must go
    /// the plain way, whose `fdatasync` covers those writes too.
    unsynced: bool,
    /// The `O_DIRECT | O_DSYNC` descriptor synced writes go through.
    direct: Direct,
    /// Holds a direct write's bytes at [`DIRECT_BUFFER_ALIGN`]: sized to
    /// the largest write plus the alignment, and never reallocated but to
    /// grow, so the aligned start found in it stays put.
    bounce: Vec<u8>,
}

/// The state of a file's direct-write descriptor.
#[derive(Debug)]
enum Direct {
    /// Not opened yet: opened at the first synced write that can use it.
    Untried,
    /// Open.
    Open(File),
    /// The platform or file system cannot do it: synced writes go the
    /// plain way.
    Unsupported,
}

impl FsFile {
    fn new(file: File, name: &str, len: u64, unsynced: bool) -> FsFile {
        FsFile {
            file,
            name: name.to_owned(),
            known_len: Cell::new(len),
            unsynced,
            direct: Direct::Untried,
            bounce: Vec::new(),
        }
    }

    /// The direct-write descriptor, opened at the first call; `None` if the
    /// platform or the file system has none.
    fn direct_file(&mut self) -> Option<&File> {
        if matches!(self.direct, Direct::Untried) {
            self.direct = match DIRECT_OPEN_FLAGS.and_then(|flags| self.open_direct(flags)) {
                Some(file) => Direct::Open(file),
                None => Direct::Unsupported,
            };
        }
        match &self.direct {
            Direct::Open(file) => Some(file),
            Direct::Untried | Direct::Unsupported => None,
        }
    }

    /// Opens this very file again with `flags` through `/proc/self/fd`, so
    /// that a rename since it was opened does not matter. Any failure means
    /// "no direct writes" for this file: the plain way stays correct.
    fn open_direct(&self, flags: i32) -> Option<File> {
        use std::os::fd::AsRawFd;
        use std::os::unix::fs::OpenOptionsExt;
        let path = format!("/proc/self/fd/{}", self.file.as_raw_fd());
        OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(flags)
            .open(path)
            .ok()
    }

    /// `data` at `offset` through the direct descriptor. `None` if that
    /// cannot be done here (the caller goes the plain way); otherwise the
    /// outcome as [`DiskFile::write_synced_at`] promises it.
    fn write_direct(&mut self, offset: u64, data: &[u8]) -> Option<Result<(), DiskError>> {
        let aligned =
            offset % DIRECT_WRITE_ALIGN == 0 && (data.len() as u64) % DIRECT_WRITE_ALIGN == 0;
        if !aligned || self.unsynced {
            return None;
        }
        self.direct_file()?;
        let Direct::Open(direct) = &self.direct else {
            return None;
        };
        let room = data.len() + DIRECT_BUFFER_ALIGN;
        if self.bounce.len() < room {
            self.bounce = vec![0; room];
        }
        let start = self.bounce.as_ptr().align_offset(DIRECT_BUFFER_ALIGN);
        let staged = &mut self.bounce[start..start + data.len()];
        staged.copy_from_slice(data);
        let end = offset.saturating_add(data.len() as u64);
        match direct.write_all_at(staged, offset) {
            Ok(()) => {
                self.known_len.set(self.known_len.get().max(end));
                Some(Ok(()))
            }
            Err(err) if err.raw_os_error() == Some(ERRNO_INVALID) => {
                // The file system cannot do it (or not at this alignment);
                // whatever part got written is written again the plain way.
                self.direct = Direct::Unsupported;
                None
            }
            Err(err) => {
                let error = io_error(&self.name, &err);
                if matches!(error, DiskError::NoSpace { .. }) {
                    if end > self.known_len.get() {
                        // As in `write_at`: undo any growth of a partial
                        // write (best effort), which the next sync covers.
                        self.unsynced = true;
                        let _ = self.file.set_len(self.known_len.get());
                    }
                    return Some(Err(error));
                }
                Some(Err(DiskError::SyncFailed {
                    name: self.name.clone(),
                    reason: format!("direct synced write failed: {err}"),
                }))
            }
        }
    }
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
        // A new file: nothing written through any handle yet.
        Ok(FsFile::new(file, name, 0, false))
    }

    fn open(&self, name: &str) -> Result<FsFile, DiskError> {
        let path = self.path(name)?;
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(|err| io_error(name, &err))?;
        let len = file.metadata().map_err(|err| io_error(name, &err))?.len();
        // Another handle may have left unsynced writes: the first synced
        // write goes the plain way, whose sync covers them.
        Ok(FsFile::new(file, name, len, true))
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
        // Even a failed write may have written a prefix.
        self.unsynced = true;
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
            .map_err(|err| sync_error(&self.name, &err))?;
        self.unsynced = false;
        Ok(())
    }

    fn write_synced_at(&mut self, offset: u64, data: &[u8]) -> Result<(), DiskError> {
        match self.write_direct(offset, data) {
            Some(outcome) => outcome,
            None => write_then_sync(self, offset, data),
        }
    }

    fn truncate(&mut self, len: u64) -> Result<(), DiskError> {
        self.unsynced = true;
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

    fn direct_untried(file: &FsFile) -> bool {
        matches!(file.direct, Direct::Untried)
    }

    #[test]
    fn synced_writes_go_direct_only_when_clean_and_whole_sectors() {
        let root = tempfile::tempdir().expect("tempdir");
        let disk = FsDisk::open(root.path()).expect("open");
        let mut file = disk.create("f").expect("create");
        file.write_at(0, &[1; 512]).expect("write_at");
        file.write_synced_at(512, &[2; 512])
            .expect("synced write after a plain one");
        assert!(
            direct_untried(&file),
            "an unsynced plain write must send the synced write the plain way"
        );
        file.write_synced_at(1024, &[3; 100]).expect("part sector");
        file.write_synced_at(1100, &[4; 512]).expect("misaligned");
        assert!(direct_untried(&file), "part sectors go the plain way");
        file.truncate(1024).expect("truncate");
        file.write_synced_at(1024, &[5; 512])
            .expect("after truncate");
        assert!(
            direct_untried(&file),
            "a truncate makes the handle unsynced"
        );
        file.write_synced_at(1536, &[6; 512])
            .expect("clean and aligned");
        assert!(
            !direct_untried(&file),
            "a clean handle's whole-sector synced write tries the direct way"
        );
        if cfg!(target_os = "linux") && matches!(file.direct, Direct::Open(_)) {
            assert!(!file.unsynced, "a direct synced write leaves it synced");
        }
        file.write_at(2048, &[7; 512]).expect("write_at");
        assert!(file.unsynced, "a plain write makes the handle unsynced");
        let mut expected = vec![1; 512];
        expected.extend([2; 512]);
        expected.extend([5; 512]);
        expected.extend([6; 512]);
        expected.extend([7; 512]);
        let mut buf = vec![0; expected.len()];
        file.read_at(0, &mut buf).expect("read");
        assert_eq!(buf, expected);
        assert_eq!(file.known_len.get(), 2560);

        let mut reopened = disk.open("f").expect("open");
        reopened
            .write_synced_at(0, &[8; 512])
            .expect("synced write through a new handle");
        assert!(
            direct_untried(&reopened),
            "a handle from `open` counts as unsynced until its first sync"
        );
        reopened.write_synced_at(512, &[9; 512]).expect("now clean");
        assert!(!direct_untried(&reopened));
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
