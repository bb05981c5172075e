//! The simulated disk's contents: each file's inode (the bytes reads see
//! and the bytes a crash keeps), the directory as operations see it and as
//! last synced, the directory operations in between, and what a crash does
//! to an inode (unsynced sectors kept, lost or torn).

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;

use enigma_engine::DiskError;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::{SimDiskFaults, SECTOR_BYTES};

/// A directory operation not yet made durable by `sync_dir`.
#[derive(Debug, Clone)]
pub(super) enum DirOp {
    Create {
        name: String,
        inode: u64,
    },
    Rename {
        from: String,
        to: String,
        inode: u64,
    },
    Remove {
        name: String,
        inode: u64,
    },
}

/// A sync that returned but is not durable yet (see `State::held_syncs`).
#[derive(Debug, Clone)]
pub(super) enum HeldSync {
    /// A file's contents as of its sync.
    File { inode: u64, contents: Vec<u8> },
    /// The directory as of a `sync_dir`, and how many directory operations
    /// it covered.
    Dir {
        dir: BTreeMap<String, u64>,
        ops: usize,
    },
}

/// One file's contents, apart from any name.
#[derive(Debug, Clone, Default)]
pub(super) struct Inode {
    /// What reads see now.
    pub(super) current: Vec<u8>,
    /// What survives a crash for certain.
    pub(super) durable: Vec<u8>,
    /// The bytes changed since the last sync, `None` if in sync. Bytes
    /// outside it, below both lengths, are equal in `current` and
    /// `durable`, so a sync copies only the range and the tail `durable`
    /// lacks: the log's zeros written ahead are copied once, not at every
    /// sync of the records before them.
    pub(super) dirty: Option<Range<usize>>,
    /// Sectors every read of which fails until they are written again.
    pub(super) unreadable_sectors: BTreeSet<usize>,
}

impl Inode {
    /// Notes that `start..end` of `current` is about to change (a write, or
    /// a truncation to `start == end`). Call it before changing the length:
    /// a write past the end also changes the gap it fills with zeros, from
    /// the old end on.
    pub(super) fn mark_dirty(&mut self, start: usize, end: usize) {
        let start = start.min(self.current.len());
        let end = end.max(start);
        let dirty = self.dirty.get_or_insert(start..end);
        dirty.start = dirty.start.min(start);
        dirty.end = dirty.end.max(end);
    }

    /// Marks every byte changed (the durable contents were replaced).
    pub(super) fn mark_all_dirty(&mut self) {
        self.dirty = Some(0..usize::MAX);
    }

    pub(super) fn sync(&mut self) {
        if let Some(dirty) = self.dirty.take() {
            assert!(dirty.start <= self.durable.len() && dirty.start <= self.current.len());
            self.durable.truncate(self.current.len());
            let kept = self.durable.len();
            let end = dirty.end.min(kept);
            if dirty.start < end {
                self.durable[dirty.start..end].copy_from_slice(&self.current[dirty.start..end]);
            }
            self.durable.extend_from_slice(&self.current[kept..]);
        }
        assert_eq!(self.durable.len(), self.current.len());
        // Comparing whole files at every sync costs as much as the copy
        // the range saves: the disk's own tests hold every sync to it.
        #[cfg(test)]
        assert_eq!(self.durable, self.current);
    }

    /// What a crash leaves of this inode under `faults`.
    pub(super) fn crash(&mut self, faults: &SimDiskFaults, rng: &mut impl Rng) {
        if self.dirty.is_none() {
            return;
        }
        let len = if rng.random_bool(faults.unsynced_length_keep_probability) {
            self.current.len()
        } else {
            self.durable.len()
        };
        let mut after = self.durable.clone();
        after.resize(len, 0);
        let byte = |data: &[u8], i: usize| data.get(i).copied().unwrap_or(0);
        for start in (0..len).step_by(SECTOR_BYTES) {
            let end = (start + SECTOR_BYTES).min(len);
            let differs = (start..end).any(|i| byte(&self.durable, i) != byte(&self.current, i));
            if !differs {
                continue;
            }
            if rng.random_bool(faults.torn_sector_probability) {
                rng.fill(&mut after[start..end]);
            } else if rng.random_bool(faults.unsynced_sector_keep_probability) {
                for (i, slot) in after[start..end].iter_mut().enumerate() {
                    *slot = byte(&self.current, start + i);
                }
            }
        }
        self.current = after.clone();
        self.durable = after;
        self.dirty = None;
    }
}

/// The whole simulated disk.
#[derive(Debug, Default)]
pub(super) struct State {
    /// Crash behaviour.
    pub(super) faults: SimDiskFaults,
    /// Every file's contents, by inode number.
    pub(super) inodes: BTreeMap<u64, Inode>,
    /// The next inode number to hand out.
    pub(super) inode_next: u64,
    /// The directory as operations see it.
    pub(super) dir_current: BTreeMap<String, u64>,
    /// The directory as of the last `sync_dir`.
    pub(super) dir_durable: BTreeMap<String, u64>,
    /// Directory operations since the last `sync_dir`, in order.
    pub(super) dir_ops: Vec<DirOp>,
    /// Draws the faults between crashes.
    pub(super) rng: Option<ChaCha8Rng>,
    /// Writes fail with `NoSpace` past this many bytes in all files.
    pub(super) capacity_bytes: Option<u64>,
    /// Crashes so far; handles from an earlier epoch are dead.
    pub(super) epoch: u64,
    /// Writes fail with `NoSpace` while set.
    pub(super) full: bool,
    /// The next `sync` or `sync_dir` fails.
    pub(super) fail_next_sync: bool,
    /// While `Some`, syncs are held back: recorded here, made durable only
    /// by [`SimDisk::hold_syncs`]`(false)`, dropped by a crash (the
    /// planted driver bug that releases outputs before its sync completes).
    pub(super) held_syncs: Option<Vec<HeldSync>>,
    /// Counters for the simulator.
    pub(super) bytes_written: u64,
    pub(super) syncs: u64,
    pub(super) crashes: u64,
    pub(super) bits_flipped: u64,
    pub(super) misdirected_writes: u64,
}

impl State {
    /// The inode `name` names now.
    ///
    /// # Errors
    /// `NotFound`.
    pub(super) fn inode_of(&self, name: &str) -> Result<u64, DiskError> {
        self.dir_current
            .get(name)
            .copied()
            .ok_or_else(|| DiskError::NotFound {
                name: name.to_owned(),
            })
    }

    /// Draws from the disk's generator; `false` when the probability is 0
    /// (so a disk without faults never draws).
    pub(super) fn chance(&mut self, probability: f64) -> bool {
        if probability <= 0.0 {
            return false;
        }
        self.rng
            .get_or_insert_with(|| ChaCha8Rng::seed_from_u64(0))
            .random_bool(probability)
    }

    pub(super) fn bytes_stored(&self) -> u64 {
        self.inodes
            .values()
            .map(|inode| inode.current.len() as u64)
            .sum()
    }

    pub(super) fn take_sync_failure(&mut self, name: &str) -> Result<(), DiskError> {
        let injected = self.chance(self.faults.sync_failure_probability);
        if std::mem::take(&mut self.fail_next_sync) || injected {
            return Err(DiskError::SyncFailed {
                name: name.to_owned(),
                reason: "injected sync failure".to_owned(),
            });
        }
        Ok(())
    }
}
