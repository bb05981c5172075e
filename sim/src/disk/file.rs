//! `SimFile`: an open file of a `SimDisk`, reads (with the bad-read
//! faults) and writes (with the full-disk fault) on its inode.

use enigma_engine::{DiskError, DiskFile};
use rand::Rng;

use super::state::{HeldSync, State};
use super::{SimDisk, FILE_BYTES_MAX, SECTOR_BYTES};

/// An open file of a [`SimDisk`]: refers to the file's inode, so it keeps
/// working after a rename, and dies with a crash.
#[derive(Debug)]
pub struct SimFile {
    /// The disk it belongs to.
    pub(super) disk: SimDisk,
    /// The file's contents.
    pub(super) inode: u64,
    /// The name it was opened under, for error messages.
    pub(super) name: String,
    /// The disk's epoch when opened; a crash ends the epoch.
    pub(super) epoch: u64,
}

impl SimFile {
    /// Runs `f` on this handle's inode, failing if a crash killed the handle.
    fn with_inode<T>(
        &self,
        f: impl FnOnce(&mut State, u64) -> Result<T, DiskError>,
    ) -> Result<T, DiskError> {
        let mut state = self.disk.0.borrow_mut();
        if state.epoch != self.epoch || !state.inodes.contains_key(&self.inode) {
            return Err(DiskError::Io {
                name: self.name.clone(),
                reason: "file handle used after a crash".to_owned(),
            });
        }
        f(&mut state, self.inode)
    }

    fn end_within_capacity(&self, offset: u64, len: usize) -> Result<usize, DiskError> {
        offset
            .checked_add(len as u64)
            .filter(|&end| end <= FILE_BYTES_MAX)
            .and_then(|end| usize::try_from(end).ok())
            .ok_or_else(|| DiskError::NoSpace {
                name: self.name.clone(),
            })
    }
}

impl DiskFile for SimFile {
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), DiskError> {
        self.with_inode(|state, inode| {
            let file = &state.inodes[&inode];
            let data = &file.current;
            let file_len = data.len() as u64;
            let range = usize::try_from(offset)
                .ok()
                .and_then(|start| Some(start..start.checked_add(buf.len())?))
                .filter(|range| range.end <= data.len());
            match range {
                Some(range) => {
                    let bad_sector = !range.is_empty()
                        && file
                            .unreadable_sectors
                            .range(range.start / SECTOR_BYTES..=(range.end - 1) / SECTOR_BYTES)
                            .next()
                            .is_some();
                    buf.copy_from_slice(&data[range]);
                    if bad_sector || state.chance(state.faults.read_error_probability) {
                        return Err(DiskError::Io {
                            name: self.name.clone(),
                            reason: format!("unreadable sector at or after offset {offset}"),
                        });
                    }
                    if !buf.is_empty() && state.chance(state.faults.read_bit_flip_probability) {
                        let rng = state.rng.as_mut().expect("chance made the generator");
                        let at = rng.random_range(0..buf.len());
                        buf[at] ^= 1 << rng.random_range(0..8);
                    }
                    Ok(())
                }
                None => Err(DiskError::ShortRead {
                    name: self.name.clone(),
                    offset,
                    len: buf.len() as u64,
                    file_len,
                }),
            }
        })
    }

    fn write_at(&mut self, offset: u64, data: &[u8]) -> Result<(), DiskError> {
        self.with_inode(|state, inode| {
            if data.is_empty() {
                return Ok(());
            }
            if state.full {
                return Err(DiskError::NoSpace {
                    name: self.name.clone(),
                });
            }
            let end = self.end_within_capacity(offset, data.len())?;
            let start = end - data.len();
            if let Some(capacity) = state.capacity_bytes {
                let growth = (end as u64).saturating_sub(state.inodes[&inode].current.len() as u64);
                if state.bytes_stored() + growth > capacity {
                    return Err(DiskError::NoSpace {
                        name: self.name.clone(),
                    });
                }
            }
            let file = state.inodes.get_mut(&inode).expect("checked by with_inode");
            // Writing a sector remaps it: it reads again.
            let written: Vec<usize> = file
                .unreadable_sectors
                .range(start / SECTOR_BYTES..=(end - 1) / SECTOR_BYTES)
                .copied()
                .collect();
            for sector in written {
                file.unreadable_sectors.remove(&sector);
            }
            file.mark_dirty(start, end);
            // Bytes past the end are appended, not zeroed and then
            // overwritten: the log writes whole segments of zeros ahead.
            let inside = data.len().min(file.current.len().saturating_sub(start));
            if inside > 0 {
                file.current[start..start + inside].copy_from_slice(&data[..inside]);
            }
            if start > file.current.len() {
                file.current.resize(start, 0);
            }
            file.current.extend_from_slice(&data[inside..]);
            assert!(file.current.len() >= end);
            state.bytes_written += data.len() as u64;
            Ok(())
        })
    }

    fn sync(&mut self) -> Result<(), DiskError> {
        self.with_inode(|state, inode| {
            state.take_sync_failure(&self.name)?;
            if let Some(held) = &mut state.held_syncs {
                let contents = state.inodes[&inode].current.clone();
                held.push(HeldSync::File { inode, contents });
                state.syncs += 1;
                return Ok(());
            }
            state
                .inodes
                .get_mut(&inode)
                .expect("checked by with_inode")
                .sync();
            state.syncs += 1;
            Ok(())
        })
    }

    fn truncate(&mut self, len: u64) -> Result<(), DiskError> {
        self.with_inode(|state, inode| {
            let len = self.end_within_capacity(len, 0)?;
            let file = state.inodes.get_mut(&inode).expect("checked by with_inode");
            file.mark_dirty(len, len);
            file.current.resize(len, 0);
            Ok(())
        })
    }

    fn len(&self) -> Result<u64, DiskError> {
        self.with_inode(|state, inode| Ok(state.inodes[&inode].current.len() as u64))
    }
}
