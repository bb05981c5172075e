//! `SimDisk`: the simulator's [`Disk`], deterministic and faulty on purpose.
//!
//! # Fault model
//!
//! What it injects, and why a correct node survives each:
//!
//! - **Crash loses unsynced data** ([`SimDisk::crash`]). Every file reverts
//!   to the contents its last successful [`DiskFile::sync`] made durable, and
//!   the directory reverts to its last [`Disk::sync_dir`]: unsynced creates,
//!   renames and removes are undone. Survivable because the contract
//!   promises nothing unsynced, and a node acknowledges a write only after
//!   its sync returned.
//! - **Torn writes on crash** ([`SimDiskFaults`]). Instead of reverting, an
//!   unsynced region may be partly kept: each 512-byte sector that differs
//!   between the durable and current contents keeps its old bytes, its new
//!   bytes, or (with `torn_sector_probability`) garbage; the file's length
//!   becomes either its durable or its current length. Synced sectors are
//!   never touched. Survivable because every record is checksummed and only
//!   synced records were acknowledged: recovery keeps a prefix of the log
//!   and drops the torn tail.
//! - **Lost directory operations on crash**: with
//!   `unsynced_dir_op_keep_probability` above zero, each create, rename and
//!   remove since the last `sync_dir` independently survives the crash or
//!   not (replayed in order where it still applies). Survivable because a
//!   name counts only after a `sync_dir`: tables are renamed into place and
//!   the directory synced before the manifest names them, and files the
//!   manifest does not name are garbage at open.
//! - **Full disk** ([`SimDisk::set_full`], [`SimDisk::set_capacity_bytes`]):
//!   a write that would take the disk past its capacity fails with `NoSpace`
//!   and writes nothing. Survivable because the writer rolls back and
//!   reports the error instead of acknowledging; reads keep working. The
//!   simulator fills at most `down_max` nodes' disks at once, each for a
//!   window, and frees the space before the node restarts.
//! - **Failed sync** ([`SimDisk::fail_next_sync`],
//!   `sync_failure_probability`): a `sync` or `sync_dir` fails and makes
//!   nothing durable. Survivable because the node treats it as fatal
//!   (poisons its engine, releases nothing of the batch, stops) and the
//!   simulator restarts it from what is durable. The simulator fails the
//!   next sync of at most `down_max` nodes at once.
//! - **Bit rot** ([`SimDisk::flip_bit`], [`SimDisk::flip_random_bit`]): a
//!   bit of stored data changes, in the durable and current contents alike
//!   (drawn in runs by `run/damage.rs`).
//!   The engine detects it by checksum and reports corruption, never
//!   serving it; the replica stays damaged until the node repairs it from
//!   its peers. Survivable only within bounds the caller keeps: fewer than
//!   `rf` replicas of any key damaged at a time (one node at a time at RF
//!   3), so every key keeps an intact replica to read and to repair from;
//!   and only in tables and sealed log segments (bit rot in the last log
//!   segment, after its last sync, looks exactly like a torn tail, which
//!   recovery rightly cuts off).
//! - **Misdirected writes** ([`SimDisk::misdirect_write`],
//!   [`SimDisk::misdirect_write_at`]): a write that lands at the wrong
//!   offset of its file or in another file. Modelled at the drive's
//!   granularity, whole sectors: a run of 1 to 8 sectors of one file's
//!   stored bytes (what a write carried) lands, durable, over
//!   sector-aligned bytes of another file or of another offset of the same
//!   file. Its intended place keeps the bytes it holds (the other half of
//!   a misdirection, a lost write, is not modelled). Survivable because the
//!   engine's checksums cover each block's and each record's place as well
//!   as its bytes (table format 4, log format 3): intact bytes in the
//!   wrong place fail their check where they landed, and are reported as
//!   corruption, never served; with the same bounds as bit rot (fewer than
//!   `rf` replicas, tables and sealed log segments only), every key keeps
//!   an intact replica.
//! - **Bad reads** (`read_bit_flip_probability`, `read_error_probability`,
//!   [`SimDisk::mark_sector_unreadable`],
//!   [`SimDisk::mark_random_sectors_unreadable`]): between crashes a read may
//!   return a flipped bit (the stored bytes stay intact: a transfer error)
//!   or fail with `Io` (a latent sector error; a marked sector fails every
//!   read until it is written again, which remaps it, or
//!   [`SimDisk::clear_unreadable_sectors`]). Survivable for data the engine
//!   checksums, which it reports as corruption or an error, never serving
//!   it; the simulator opens such windows on fewer than `rf` nodes at a
//!   time, only while the node runs (a bad read of the last WAL segment
//!   during recovery looks exactly like a torn tail), and marks sectors of
//!   tables only. Off in [`SimDiskFaults::torn`].
//! - **Held syncs** ([`SimDisk::hold_syncs`]): not a fault of disks but of a
//!   planted driver bug: syncs return at once and become durable only when
//!   released, so a crash before drops them. No correct run uses it.
//!
//! The disk's parts: `faults.rs` (the fault settings), `state.rs` (inodes,
//! the directory and what a crash does to them), `file.rs` (an open file's
//! reads and writes); this file holds the disk and its directory.
//!
//! Handles opened before a crash belong to the crashed process: using one
//! afterwards is an `Io` error, so a test that leaks one fails loudly.
//!
//! Everything is deterministic: ordered maps only, and randomness only from
//! the generator passed to [`SimDisk::crash`] and, between crashes, from
//! the disk's own generator seeded by [`SimDisk::with_seed`].

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::fmt;
use std::rc::Rc;

use enigma_engine::disk::validate_name;
use enigma_engine::{Disk, DiskError};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// The unit a crash tears at: a disk sector.
mod faults;
mod file;
mod state;
#[cfg(test)]
mod tests;

pub use faults::SimDiskFaults;
pub use file::SimFile;
use state::{DirOp, HeldSync, Inode, State};

pub const SECTOR_BYTES: usize = 512;
/// The largest file the simulated disk holds; writes past it fail with
/// `NoSpace`, so a garbage offset cannot make the simulator allocate
/// without bound.
pub const FILE_BYTES_MAX: u64 = 1 << 30;

/// The simulator's disk. A cheap handle: clones share one disk, so the
/// simulator keeps it while the node that used it crashes and restarts.
#[derive(Clone, Default)]
pub struct SimDisk(Rc<RefCell<State>>);

impl fmt::Debug for SimDisk {
    // The contents can be large; counters are what a trace needs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.0.borrow();
        f.debug_struct("SimDisk")
            .field("files", &state.dir_current.len())
            .field("epoch", &state.epoch)
            .field("bytes_written", &state.bytes_written)
            .field("syncs", &state.syncs)
            .finish()
    }
}

/// The longest run of sectors a misdirected write carries (4 KiB, a
/// drive's block).
pub const MISDIRECTED_SECTORS_MAX: u64 = 8;

/// A write that landed in the wrong place: `len` bytes of `from` at
/// `from_offset` (what the write carried) now also lie in `to` at
/// `to_offset`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MisdirectedWrite {
    pub from: String,
    pub from_offset: u64,
    pub to: String,
    pub to_offset: u64,
    pub len: u64,
}

/// The name the directory-level operations report in their errors.
const DIR_NAME: &str = "<sim dir>";

impl SimDisk {
    /// An empty disk whose crashes behave as `faults` says.
    ///
    /// # Panics
    /// If a probability in `faults` is outside `0..=1`.
    pub fn new(faults: SimDiskFaults) -> SimDisk {
        faults.assert_valid();
        SimDisk(Rc::new(RefCell::new(State {
            faults,
            ..State::default()
        })))
    }

    /// Replaces the crash behaviour (the simulator turns faults off to heal).
    ///
    /// # Panics
    /// If a probability in `faults` is outside `0..=1`.
    pub fn set_faults(&self, faults: SimDiskFaults) {
        faults.assert_valid();
        self.0.borrow_mut().faults = faults;
    }

    /// Crashes the disk: every file keeps its durable contents plus whatever
    /// the faults let survive of its unsynced changes, the directory reverts
    /// to its last `sync_dir`, and every open handle dies. A pending
    /// [`Self::fail_next_sync`] is dropped (it was meant for the crashed
    /// process); a full disk stays full.
    pub fn crash(&self, rng: &mut impl Rng) {
        let mut state = self.0.borrow_mut();
        let state = &mut *state;
        let keep = state.faults.unsynced_dir_op_keep_probability;
        let mut dir = state.dir_durable.clone();
        for op in std::mem::take(&mut state.dir_ops) {
            // Draw only when ops can survive, so that seeds without this
            // fault crash exactly as before it existed.
            if keep <= 0.0 || !rng.random_bool(keep) {
                continue;
            }
            match op {
                DirOp::Create { name, inode } => {
                    dir.entry(name).or_insert(inode);
                }
                DirOp::Rename { from, to, inode } => {
                    if dir.get(&from) == Some(&inode) {
                        dir.remove(&from);
                        dir.insert(to, inode);
                    }
                }
                DirOp::Remove { name, inode } => {
                    if dir.get(&name) == Some(&inode) {
                        dir.remove(&name);
                    }
                }
            }
        }
        state.dir_durable = dir;
        state.dir_current = state.dir_durable.clone();
        let live: BTreeSet<u64> = state.dir_durable.values().copied().collect();
        state.inodes.retain(|inode, _| live.contains(inode));
        for inode in state.inodes.values_mut() {
            inode.crash(&state.faults, rng);
        }
        state.epoch += 1;
        state.crashes += 1;
        state.fail_next_sync = false;
        state.held_syncs = None;
    }

    /// An empty disk whose faults between crashes are drawn from a
    /// generator seeded with `seed`.
    ///
    /// # Panics
    /// If a probability in `faults` is outside `0..=1`.
    pub fn with_seed(faults: SimDiskFaults, seed: u64) -> SimDisk {
        let disk = SimDisk::new(faults);
        disk.0.borrow_mut().rng = Some(ChaCha8Rng::seed_from_u64(seed));
        disk
    }

    /// While `full`, every non-empty write fails with `NoSpace`.
    pub fn set_full(&self, full: bool) {
        self.0.borrow_mut().full = full;
    }

    /// Limits the bytes all files may hold together (`None`: no limit): a
    /// write that would pass it fails with `NoSpace` and writes nothing.
    pub fn set_capacity_bytes(&self, capacity: Option<u64>) {
        self.0.borrow_mut().capacity_bytes = capacity;
    }

    /// Makes the sector holding `offset` of `name` fail every read until
    /// it is written again: a latent sector error.
    ///
    /// # Errors
    /// `NotFound`.
    pub fn mark_sector_unreadable(&self, name: &str, offset: u64) -> Result<(), DiskError> {
        let mut state = self.0.borrow_mut();
        let inode = state.inode_of(name)?;
        let sector = usize::try_from(offset).unwrap_or(usize::MAX) / SECTOR_BYTES;
        state
            .inodes
            .get_mut(&inode)
            .expect("the directory names live inodes")
            .unreadable_sectors
            .insert(sector);
        Ok(())
    }

    /// Makes `count` random sectors of files whose name passes `which` fail
    /// every read (latent sector errors), until written again or
    /// [`Self::clear_unreadable_sectors`].
    pub fn mark_random_sectors_unreadable(
        &self,
        rng: &mut impl Rng,
        count: usize,
        which: impl Fn(&str) -> bool,
    ) {
        let mut state = self.0.borrow_mut();
        let files: Vec<u64> = state
            .dir_current
            .iter()
            .filter(|(name, _)| which(name))
            .map(|(_, &inode)| inode)
            .collect();
        if files.is_empty() {
            return;
        }
        for _ in 0..count {
            let inode = files[rng.random_range(0..files.len())];
            let file = state
                .inodes
                .get_mut(&inode)
                .expect("the directory names live inodes");
            let sectors = file.current.len().div_ceil(SECTOR_BYTES);
            if sectors > 0 {
                file.unreadable_sectors.insert(rng.random_range(0..sectors));
            }
        }
    }

    /// Every unreadable sector reads again (the drive remapped them).
    pub fn clear_unreadable_sectors(&self) {
        for inode in self.0.borrow_mut().inodes.values_mut() {
            inode.unreadable_sectors.clear();
        }
    }

    /// With `true`, every later `sync` and `sync_dir` returns at once but
    /// makes nothing durable until `hold_syncs(false)`, which makes the
    /// held ones durable in order; a crash in between drops them. Only the
    /// planted driver bug of the simulator uses it.
    pub fn hold_syncs(&self, hold: bool) {
        let mut state = self.0.borrow_mut();
        let state = &mut *state;
        if hold {
            state.held_syncs.get_or_insert_with(Vec::new);
            return;
        }
        let mut ops_applied = 0;
        for held in state.held_syncs.take().unwrap_or_default() {
            match held {
                HeldSync::File { inode, contents } => {
                    if let Some(file) = state.inodes.get_mut(&inode) {
                        file.durable = contents;
                        file.dirty = None;
                        if file.durable != file.current {
                            file.mark_all_dirty();
                        }
                    }
                }
                HeldSync::Dir { dir, ops } => {
                    state.dir_durable = dir;
                    state.dir_ops.drain(..ops - ops_applied);
                    ops_applied = ops;
                }
            }
        }
    }

    /// Makes the next `sync` or `sync_dir` fail with `SyncFailed`.
    pub fn fail_next_sync(&self) {
        self.0.borrow_mut().fail_next_sync = true;
    }

    /// Drops a pending [`Self::fail_next_sync`] (the simulator's faults
    /// stop).
    pub fn cancel_sync_failure(&self) {
        self.0.borrow_mut().fail_next_sync = false;
    }

    /// Flips one bit of the stored contents of `name`, durable and current:
    /// bit rot. The simulator must bound how many replicas it hits.
    ///
    /// # Errors
    /// `NotFound`; `ShortRead` if `offset` is past the end.
    pub fn flip_bit(&self, name: &str, offset: u64, bit: u8) -> Result<(), DiskError> {
        assert!(bit < 8, "a byte has 8 bits");
        let mut state = self.0.borrow_mut();
        let inode = state.inode_of(name)?;
        let inode = state
            .inodes
            .get_mut(&inode)
            .expect("the directory names live inodes");
        let file_len = inode.current.len() as u64;
        let at = usize::try_from(offset)
            .ok()
            .filter(|&at| at < inode.current.len())
            .ok_or_else(|| DiskError::ShortRead {
                name: name.to_owned(),
                offset,
                len: 1,
                file_len,
            })?;
        inode.current[at] ^= 1 << bit;
        if let Some(byte) = inode.durable.get_mut(at) {
            *byte ^= 1 << bit;
        }
        Ok(())
    }

    /// Flips one random bit of one random file among those `which`
    /// accepts (bit rot, see [`Self::flip_bit`]); returns the file and the
    /// offset, or `None` if no file with bytes passes `which`.
    pub fn flip_random_bit(
        &self,
        rng: &mut impl Rng,
        which: impl Fn(&str) -> bool,
    ) -> Option<(String, u64)> {
        // Bit rot has no sector's granularity: any file with a byte.
        let files = self.files_at_least(&which, 1);
        if files.is_empty() {
            return None;
        }
        let (name, len) = files[rng.random_range(0..files.len())].clone();
        let offset = rng.random_range(0..len);
        let bit = rng.random_range(0..8_u8);
        self.flip_bit(&name, offset, bit)
            .expect("the file and offset were just listed");
        self.0.borrow_mut().bits_flipped += 1;
        Some((name, offset))
    }

    /// The files `which` accepts that hold at least one sector, with their
    /// lengths, in name order.
    fn files_with_bytes(&self, which: &impl Fn(&str) -> bool) -> Vec<(String, u64)> {
        self.files_at_least(which, SECTOR_BYTES as u64)
    }

    /// The files `which` accepts that hold a byte or more, with their
    /// current lengths, in name order (for a simulator drawing where to
    /// damage stored bytes).
    pub fn files_with_lengths(&self, which: impl Fn(&str) -> bool) -> Vec<(String, u64)> {
        self.files_at_least(&which, 1)
    }

    /// The files `which` accepts that hold at least `bytes_min` bytes, with
    /// their lengths, in name order.
    fn files_at_least(&self, which: &impl Fn(&str) -> bool, bytes_min: u64) -> Vec<(String, u64)> {
        let state = self.0.borrow();
        state
            .dir_current
            .iter()
            .filter(|(name, _)| which(name))
            .map(|(name, inode)| {
                let len = state
                    .inodes
                    .get(inode)
                    .expect("the directory names live inodes")
                    .current
                    .len();
                (name.clone(), len as u64)
            })
            .filter(|(_, len)| *len >= bytes_min)
            .collect()
    }

    /// A misdirected write drawn from `rng`: a run of 1 to
    /// [`MISDIRECTED_SECTORS_MAX`] whole sectors of one file `which`
    /// accepts lands over another file `which` accepts at the same offset
    /// (half the time, when there are two), or over another offset of its
    /// own file (always another file when the drawn one holds a single
    /// sector). Returns what it did, or `None` if no file `which` accepts
    /// holds a sector, or the only one holds a single sector.
    pub fn misdirect_write(
        &self,
        rng: &mut impl Rng,
        which: impl Fn(&str) -> bool,
    ) -> Option<MisdirectedWrite> {
        let files = self.files_with_bytes(&which);
        if files.is_empty() {
            return None;
        }
        let (from, from_len) = files[rng.random_range(0..files.len())].clone();
        let sectors = |len: u64| len / SECTOR_BYTES as u64;
        let others: Vec<&(String, u64)> = files.iter().filter(|(n, _)| *n != from).collect();
        let one_sector = sectors(from_len) < 2;
        let (to, to_offset, from_offset, len) =
            if !others.is_empty() && (one_sector || rng.random_bool(0.5)) {
                // Another file, the intended offset.
                let (to, to_len) = others[rng.random_range(0..others.len())].clone();
                let shared = sectors(from_len.min(to_len));
                let run = rng.random_range(1..=MISDIRECTED_SECTORS_MAX.min(shared));
                let at = rng.random_range(0..=shared - run) * SECTOR_BYTES as u64;
                (to, at, at, run * SECTOR_BYTES as u64)
            } else {
                // The same file, another offset.
                let total = sectors(from_len);
                if one_sector {
                    return None;
                }
                let run = rng.random_range(1..=MISDIRECTED_SECTORS_MAX.min(total - 1));
                let from_sector = rng.random_range(0..=total - run);
                let mut to_sector = rng.random_range(0..total - run);
                if to_sector >= from_sector {
                    to_sector += 1;
                }
                let sector = SECTOR_BYTES as u64;
                (
                    from.clone(),
                    to_sector * sector,
                    from_sector * sector,
                    run * sector,
                )
            };
        let misdirected = MisdirectedWrite {
            from,
            from_offset,
            to,
            to_offset,
            len,
        };
        self.misdirect_write_at(&misdirected)
            .expect("files and ranges were just listed");
        Some(misdirected)
    }

    /// Writes `misdirected.len` bytes of `misdirected.from`, read at
    /// `from_offset`, over `misdirected.to` at `to_offset`, in the durable
    /// and current contents alike (where each reaches): a misdirected
    /// write, which no crash undoes. The simulator must bound how many
    /// replicas it hits.
    ///
    /// # Errors
    /// `NotFound`; `ShortRead` if either range passes its file's end.
    pub fn misdirect_write_at(&self, misdirected: &MisdirectedWrite) -> Result<(), DiskError> {
        let mut state = self.0.borrow_mut();
        let short = |name: &str, offset: u64, file_len: usize| DiskError::ShortRead {
            name: name.to_owned(),
            offset,
            len: misdirected.len,
            file_len: file_len as u64,
        };
        let from = state.inode_of(&misdirected.from)?;
        let to = state.inode_of(&misdirected.to)?;
        let source = &state.inodes[&from].current;
        let range = |offset: u64, file_len: usize| {
            let start = usize::try_from(offset).ok()?;
            let end = start.checked_add(usize::try_from(misdirected.len).ok()?)?;
            (end <= file_len).then_some(start..end)
        };
        let from_range = range(misdirected.from_offset, source.len())
            .ok_or_else(|| short(&misdirected.from, misdirected.from_offset, source.len()))?;
        let bytes = source[from_range].to_vec();
        let target = state
            .inodes
            .get_mut(&to)
            .expect("the directory names live inodes");
        let to_range = range(misdirected.to_offset, target.current.len())
            .ok_or_else(|| short(&misdirected.to, misdirected.to_offset, target.current.len()))?;
        let start = to_range.start;
        target.current[to_range].copy_from_slice(&bytes);
        // Durable bytes change where they exist, as bit rot's do; bytes
        // outside the dirty range stay equal in both.
        let durable_end = target.durable.len().min(start + bytes.len());
        if start < durable_end {
            target.durable[start..durable_end].copy_from_slice(&bytes[..durable_end - start]);
        }
        state.misdirected_writes += 1;
        Ok(())
    }

    /// Random bits flipped ([`Self::flip_random_bit`]) so far.
    pub fn bits_flipped(&self) -> u64 {
        self.0.borrow().bits_flipped
    }

    /// Misdirected writes so far.
    pub fn misdirected_writes(&self) -> u64 {
        self.0.borrow().misdirected_writes
    }

    /// Bytes written by successful writes so far.
    pub fn bytes_written(&self) -> u64 {
        self.0.borrow().bytes_written
    }

    /// Successful `sync` and `sync_dir` calls so far.
    pub fn syncs(&self) -> u64 {
        self.0.borrow().syncs
    }

    /// Crashes so far.
    pub fn crashes(&self) -> u64 {
        self.0.borrow().crashes
    }

    fn handle(&self, state: &State, name: &str, inode: u64) -> SimFile {
        SimFile {
            disk: self.clone(),
            inode,
            name: name.to_owned(),
            epoch: state.epoch,
        }
    }
}

impl Disk for SimDisk {
    type File = SimFile;

    fn create(&self, name: &str) -> Result<SimFile, DiskError> {
        validate_name(name)?;
        let mut state = self.0.borrow_mut();
        if state.dir_current.contains_key(name) {
            return Err(DiskError::AlreadyExists {
                name: name.to_owned(),
            });
        }
        let inode = state.inode_next;
        state.inode_next += 1;
        state.inodes.insert(inode, Inode::default());
        state.dir_current.insert(name.to_owned(), inode);
        state.dir_ops.push(DirOp::Create {
            name: name.to_owned(),
            inode,
        });
        Ok(self.handle(&state, name, inode))
    }

    fn open(&self, name: &str) -> Result<SimFile, DiskError> {
        validate_name(name)?;
        let state = self.0.borrow();
        let inode = state.inode_of(name)?;
        Ok(self.handle(&state, name, inode))
    }

    fn list(&self) -> Result<Vec<String>, DiskError> {
        Ok(self.0.borrow().dir_current.keys().cloned().collect())
    }

    fn rename(&self, from: &str, to: &str) -> Result<(), DiskError> {
        validate_name(from)?;
        validate_name(to)?;
        let mut state = self.0.borrow_mut();
        let inode = state
            .dir_current
            .remove(from)
            .ok_or_else(|| DiskError::NotFound {
                name: from.to_owned(),
            })?;
        // A replaced inode stays until the next crash: open handles may
        // still use it, as on a real file system.
        state.dir_current.insert(to.to_owned(), inode);
        state.dir_ops.push(DirOp::Rename {
            from: from.to_owned(),
            to: to.to_owned(),
            inode,
        });
        Ok(())
    }

    fn remove(&self, name: &str) -> Result<(), DiskError> {
        validate_name(name)?;
        let mut state = self.0.borrow_mut();
        match state.dir_current.remove(name) {
            Some(inode) => {
                state.dir_ops.push(DirOp::Remove {
                    name: name.to_owned(),
                    inode,
                });
                Ok(())
            }
            None => Err(DiskError::NotFound {
                name: name.to_owned(),
            }),
        }
    }

    fn sync_dir(&self) -> Result<(), DiskError> {
        let mut state = self.0.borrow_mut();
        let state = &mut *state;
        state.take_sync_failure(DIR_NAME)?;
        if let Some(held) = &mut state.held_syncs {
            // Held directory syncs leave `dir_ops` whole: this one covers
            // the first `ops` of them.
            let ops = state.dir_ops.len();
            held.push(HeldSync::Dir {
                dir: state.dir_current.clone(),
                ops,
            });
            state.syncs += 1;
            return Ok(());
        }
        state.dir_durable = state.dir_current.clone();
        state.dir_ops.clear();
        state.syncs += 1;
        Ok(())
    }

    fn exists(&self, name: &str) -> Result<bool, DiskError> {
        validate_name(name)?;
        Ok(self.0.borrow().dir_current.contains_key(name))
    }
}
