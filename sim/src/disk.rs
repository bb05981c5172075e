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
//! - **Bit rot** ([`SimDisk::flip_bit`]): a bit of stored data changes, in
//!   the durable and current contents alike. Survivable only within bounds
//!   the simulator must keep (at most RF-1 replicas of a range) and only
//!   with repair from peers, which the node does not do yet: the engine
//!   detects it by checksum and reports corruption, never serving it, but
//!   the replica stays damaged. The simulator does not draw it; it draws bit
//!   rot *on reads* instead (next item).
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
//! Misdirected writes (a write landing at the wrong offset or file) are not
//! modelled: the engine cannot tell one from a correct write yet.
//!
//! Handles opened before a crash belong to the crashed process: using one
//! afterwards is an `Io` error, so a test that leaks one fails loudly.
//!
//! Everything is deterministic: ordered maps only, and randomness only from
//! the generator passed to [`SimDisk::crash`] and, between crashes, from
//! the disk's own generator seeded by [`SimDisk::with_seed`].

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::rc::Rc;

use enigma_engine::disk::validate_name;
use enigma_engine::{Disk, DiskError, DiskFile};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// The unit a crash tears at: a disk sector.
pub const SECTOR_BYTES: usize = 512;
/// The largest file the simulated disk holds; writes past it fail with
/// `NoSpace`, so a garbage offset cannot make the simulator allocate
/// without bound.
pub const FILE_BYTES_MAX: u64 = 1 << 30;

/// What a crash does to unsynced data, and what goes wrong between
/// crashes. The default loses all unsynced data on a crash, tears nothing
/// and injects nothing else.
#[derive(Debug, Clone, PartialEq)]
pub struct SimDiskFaults {
    /// Probability that a file with unsynced changes keeps its current
    /// length across a crash rather than its durable one.
    pub unsynced_length_keep_probability: f64,
    /// Probability that a sector with unsynced changes keeps its new bytes
    /// (when not torn).
    pub unsynced_sector_keep_probability: f64,
    /// Probability that a sector with unsynced changes becomes garbage.
    pub torn_sector_probability: f64,
    /// Probability that an unsynced create, rename or remove survives a
    /// crash (each on its own); 0 undoes them all.
    pub unsynced_dir_op_keep_probability: f64,
    /// Probability that a read returns one flipped bit.
    pub read_bit_flip_probability: f64,
    /// Probability that a read fails with `Io`.
    pub read_error_probability: f64,
    /// Probability that a `sync` or `sync_dir` fails.
    pub sync_failure_probability: f64,
}

impl Default for SimDiskFaults {
    fn default() -> SimDiskFaults {
        SimDiskFaults {
            unsynced_length_keep_probability: 0.0,
            unsynced_sector_keep_probability: 0.0,
            torn_sector_probability: 0.0,
            unsynced_dir_op_keep_probability: 0.0,
            read_bit_flip_probability: 0.0,
            read_error_probability: 0.0,
            sync_failure_probability: 0.0,
        }
    }
}

impl SimDiskFaults {
    /// Crashes that keep some unsynced sectors and tear others: the harshest
    /// crash the contract allows. No faults between crashes.
    pub fn torn() -> SimDiskFaults {
        SimDiskFaults {
            unsynced_length_keep_probability: 0.5,
            unsynced_sector_keep_probability: 0.5,
            torn_sector_probability: 0.1,
            ..SimDiskFaults::default()
        }
    }

    /// [`Self::torn`] crashes that also lose or keep each unsynced
    /// directory operation.
    pub fn torn_with_lost_dir_ops() -> SimDiskFaults {
        SimDiskFaults {
            unsynced_dir_op_keep_probability: 0.5,
            ..SimDiskFaults::torn()
        }
    }

    fn assert_valid(&self) {
        for (name, p) in [
            (
                "unsynced_length_keep_probability",
                self.unsynced_length_keep_probability,
            ),
            (
                "unsynced_sector_keep_probability",
                self.unsynced_sector_keep_probability,
            ),
            ("torn_sector_probability", self.torn_sector_probability),
            (
                "unsynced_dir_op_keep_probability",
                self.unsynced_dir_op_keep_probability,
            ),
            ("read_bit_flip_probability", self.read_bit_flip_probability),
            ("read_error_probability", self.read_error_probability),
            ("sync_failure_probability", self.sync_failure_probability),
        ] {
            assert!(
                (0.0..=1.0).contains(&p),
                "{name} = {p} is not a probability"
            );
        }
    }
}

/// A directory operation not yet made durable by `sync_dir`.
#[derive(Debug, Clone)]
enum DirOp {
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
enum HeldSync {
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
struct Inode {
    /// What reads see now.
    current: Vec<u8>,
    /// What survives a crash for certain.
    durable: Vec<u8>,
    /// Lowest offset changed since the last sync, `None` if in sync. Bytes
    /// below it are equal in `current` and `durable`, so a sync copies only
    /// from here on.
    dirty_from: Option<usize>,
    /// Sectors every read of which fails until they are written again.
    unreadable_sectors: BTreeSet<usize>,
}

impl Inode {
    fn mark_dirty(&mut self, offset: usize) {
        let from = offset.min(self.current.len());
        self.dirty_from = Some(self.dirty_from.map_or(from, |d| d.min(from)));
    }

    fn sync(&mut self) {
        if let Some(from) = self.dirty_from.take() {
            assert!(from <= self.durable.len() && from <= self.current.len());
            self.durable.truncate(from);
            self.durable.extend_from_slice(&self.current[from..]);
        }
        debug_assert_eq!(self.durable, self.current);
    }

    /// What a crash leaves of this inode under `faults`.
    fn crash(&mut self, faults: &SimDiskFaults, rng: &mut impl Rng) {
        if self.dirty_from.is_none() {
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
        self.dirty_from = None;
    }
}

/// The whole simulated disk.
#[derive(Debug, Default)]
struct State {
    /// Crash behaviour.
    faults: SimDiskFaults,
    /// Every file's contents, by inode number.
    inodes: BTreeMap<u64, Inode>,
    /// The next inode number to hand out.
    inode_next: u64,
    /// The directory as operations see it.
    dir_current: BTreeMap<String, u64>,
    /// The directory as of the last `sync_dir`.
    dir_durable: BTreeMap<String, u64>,
    /// Directory operations since the last `sync_dir`, in order.
    dir_ops: Vec<DirOp>,
    /// Draws the faults between crashes.
    rng: Option<ChaCha8Rng>,
    /// Writes fail with `NoSpace` past this many bytes in all files.
    capacity_bytes: Option<u64>,
    /// Crashes so far; handles from an earlier epoch are dead.
    epoch: u64,
    /// Writes fail with `NoSpace` while set.
    full: bool,
    /// The next `sync` or `sync_dir` fails.
    fail_next_sync: bool,
    /// While `Some`, syncs are held back: recorded here, made durable only
    /// by [`SimDisk::hold_syncs`]`(false)`, dropped by a crash (the
    /// planted driver bug that releases outputs before its sync completes).
    held_syncs: Option<Vec<HeldSync>>,
    /// Counters for the simulator.
    bytes_written: u64,
    syncs: u64,
    crashes: u64,
}

impl State {
    /// Draws from the disk's generator; `false` when the probability is 0
    /// (so a disk without faults never draws).
    fn chance(&mut self, probability: f64) -> bool {
        if probability <= 0.0 {
            return false;
        }
        self.rng
            .get_or_insert_with(|| ChaCha8Rng::seed_from_u64(0))
            .random_bool(probability)
    }

    fn bytes_stored(&self) -> u64 {
        self.inodes
            .values()
            .map(|inode| inode.current.len() as u64)
            .sum()
    }

    fn take_sync_failure(&mut self, name: &str) -> Result<(), DiskError> {
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
        let inode = *state
            .dir_current
            .get(name)
            .ok_or_else(|| DiskError::NotFound {
                name: name.to_owned(),
            })?;
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
                        file.dirty_from = (file.durable != file.current).then_some(0);
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
        let inode = *state
            .dir_current
            .get(name)
            .ok_or_else(|| DiskError::NotFound {
                name: name.to_owned(),
            })?;
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
        let inode = *state
            .dir_current
            .get(name)
            .ok_or_else(|| DiskError::NotFound {
                name: name.to_owned(),
            })?;
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

/// An open file of a [`SimDisk`]: refers to the file's inode, so it keeps
/// working after a rename, and dies with a crash.
#[derive(Debug)]
pub struct SimFile {
    /// The disk it belongs to.
    disk: SimDisk,
    /// The file's contents.
    inode: u64,
    /// The name it was opened under, for error messages.
    name: String,
    /// The disk's epoch when opened; a crash ends the epoch.
    epoch: u64,
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
            file.mark_dirty(start);
            if file.current.len() < end {
                file.current.resize(end, 0);
            }
            file.current[start..end].copy_from_slice(data);
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
            file.mark_dirty(len);
            file.current.resize(len, 0);
            Ok(())
        })
    }

    fn len(&self) -> Result<u64, DiskError> {
        self.with_inode(|state, inode| Ok(state.inodes[&inode].current.len() as u64))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use enigma_engine::{Engine, EngineError, EngineOptions, Timestamp, Versioned};
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    use super::*;

    fn rng(seed: u64) -> ChaCha8Rng {
        ChaCha8Rng::seed_from_u64(seed)
    }

    fn contents(disk: &SimDisk, name: &str) -> Vec<u8> {
        let file = disk.open(name).expect("open");
        let mut buf = vec![0; file.len().expect("len") as usize];
        file.read_at(0, &mut buf).expect("read");
        buf
    }

    #[test]
    fn sim_disk_passes_the_conformance_suite() {
        enigma_engine::conformance::run_all(|| SimDisk::new(SimDiskFaults::default()));
        enigma_engine::conformance::run_all(|| SimDisk::new(SimDiskFaults::torn()));
    }

    #[test]
    fn unsynced_writes_are_lost_on_crash() {
        let disk = SimDisk::default();
        let mut file = disk.create("f").expect("create");
        disk.sync_dir().expect("sync_dir");
        file.append(b"synced").expect("append");
        file.sync().expect("sync");
        file.append(b" unsynced").expect("append");
        file.write_at(0, b"S").expect("overwrite");
        disk.crash(&mut rng(1));
        assert_eq!(contents(&disk, "f"), b"synced");
    }

    #[test]
    fn synced_writes_survive_crash() {
        let disk = SimDisk::new(SimDiskFaults::torn());
        let mut file = disk.create("f").expect("create");
        file.append(&[7; 3000]).expect("append");
        file.sync().expect("sync");
        disk.sync_dir().expect("sync_dir");
        for seed in 0..20 {
            disk.crash(&mut rng(seed));
            assert_eq!(contents(&disk, "f"), vec![7; 3000]);
        }
    }

    #[test]
    fn unsynced_create_is_lost_on_crash_unless_dir_synced() {
        let disk = SimDisk::default();
        let mut lost = disk.create("lost").expect("create");
        lost.append(b"data").expect("append");
        lost.sync()
            .expect("file sync alone does not make the name durable");
        disk.crash(&mut rng(1));
        assert_eq!(disk.list().expect("list"), Vec::<String>::new());

        let mut kept = disk.create("kept").expect("create");
        kept.append(b"data").expect("append");
        kept.sync().expect("sync");
        disk.sync_dir().expect("sync_dir");
        disk.crash(&mut rng(2));
        assert_eq!(disk.list().expect("list"), vec!["kept"]);
        assert_eq!(contents(&disk, "kept"), b"data");
    }

    #[test]
    fn unsynced_rename_and_remove_are_undone_by_crash() {
        let disk = SimDisk::default();
        let mut file = disk.create("a").expect("create");
        file.append(b"x").expect("append");
        file.sync().expect("sync");
        disk.create("b").expect("create");
        disk.sync_dir().expect("sync_dir");
        disk.rename("a", "c").expect("rename");
        disk.remove("b").expect("remove");
        disk.crash(&mut rng(3));
        assert_eq!(disk.list().expect("list"), vec!["a", "b"]);
        assert_eq!(contents(&disk, "a"), b"x");
    }

    #[test]
    fn handle_from_before_a_crash_is_an_error() {
        let disk = SimDisk::default();
        let mut file = disk.create("f").expect("create");
        disk.sync_dir().expect("sync_dir");
        disk.crash(&mut rng(4));
        assert!(matches!(file.append(b"x"), Err(DiskError::Io { .. })));
        assert!(matches!(file.len(), Err(DiskError::Io { .. })));
        let mut fresh = disk.open("f").expect("open");
        fresh.append(b"ok").expect("a new handle works");
    }

    #[test]
    fn full_disk_rejects_writes_and_writes_nothing() {
        let disk = SimDisk::default();
        let mut file = disk.create("f").expect("create");
        file.append(b"ab").expect("append");
        disk.set_full(true);
        assert_eq!(
            file.append(b"cd"),
            Err(DiskError::NoSpace {
                name: "f".to_owned()
            })
        );
        assert_eq!(contents(&disk, "f"), b"ab");
        disk.set_full(false);
        file.append(b"cd").expect("append after space frees up");
        assert_eq!(disk.bytes_written(), 4);
    }

    #[test]
    fn write_past_capacity_is_no_space_not_an_allocation() {
        let disk = SimDisk::default();
        let mut file = disk.create("f").expect("create");
        let far = file.write_at(u64::MAX - 1, b"xy");
        assert!(matches!(far, Err(DiskError::NoSpace { .. })), "{far:?}");
        let big = file.truncate(FILE_BYTES_MAX + 1);
        assert!(matches!(big, Err(DiskError::NoSpace { .. })), "{big:?}");
    }

    #[test]
    fn injected_sync_failure_fails_once_and_makes_nothing_durable() {
        let disk = SimDisk::default();
        let mut file = disk.create("f").expect("create");
        disk.sync_dir().expect("sync_dir");
        file.append(b"data").expect("append");
        disk.fail_next_sync();
        assert!(matches!(file.sync(), Err(DiskError::SyncFailed { .. })));
        disk.crash(&mut rng(5));
        assert_eq!(contents(&disk, "f"), b"");
        disk.fail_next_sync();
        assert!(matches!(disk.sync_dir(), Err(DiskError::SyncFailed { .. })));
        disk.sync_dir().expect("the failure was for one sync only");
        assert_eq!(disk.syncs(), 2);
    }

    #[test]
    fn torn_crash_keeps_old_new_or_garbage_per_sector_and_a_valid_length() {
        let old = vec![1_u8; 4 * SECTOR_BYTES];
        let mut new = old.clone();
        new[SECTOR_BYTES..].fill(2);
        new.extend_from_slice(&[3; 2 * SECTOR_BYTES]);
        let mut garbage_seen = false;
        for seed in 0..64 {
            let disk = SimDisk::new(SimDiskFaults::torn());
            let mut file = disk.create("f").expect("create");
            file.append(&old).expect("append");
            file.sync().expect("sync");
            disk.sync_dir().expect("sync_dir");
            file.write_at(SECTOR_BYTES as u64, &new[SECTOR_BYTES..])
                .expect("write");
            disk.crash(&mut rng(seed));
            let after = contents(&disk, "f");
            assert!(
                after.len() == old.len() || after.len() == new.len(),
                "seed {seed}"
            );
            assert_eq!(
                after[..SECTOR_BYTES],
                old[..SECTOR_BYTES],
                "synced sector changed"
            );
            for (index, sector) in after.chunks(SECTOR_BYTES).enumerate() {
                let range = index * SECTOR_BYTES..(index + 1) * SECTOR_BYTES;
                let old_sector = old.get(range.clone()).unwrap_or(&[0; SECTOR_BYTES]);
                if sector != old_sector && sector != &new[range] {
                    garbage_seen = true;
                }
            }
        }
        assert!(garbage_seen, "torn faults never produced a torn sector");
    }

    #[test]
    fn crash_is_deterministic_for_a_seed() {
        let run = || {
            let disk = SimDisk::new(SimDiskFaults::torn());
            let mut file = disk.create("f").expect("create");
            disk.sync_dir().expect("sync_dir");
            file.append(&[9; 5000]).expect("append");
            disk.crash(&mut rng(42));
            contents(&disk, "f")
        };
        assert_eq!(run(), run());
    }

    #[test]
    fn flip_bit_corrupts_durable_contents() {
        let disk = SimDisk::default();
        let mut file = disk.create("f").expect("create");
        file.append(&[0; 4]).expect("append");
        file.sync().expect("sync");
        disk.sync_dir().expect("sync_dir");
        disk.flip_bit("f", 2, 0).expect("flip");
        disk.crash(&mut rng(6));
        assert_eq!(contents(&disk, "f"), [0, 0, 1, 0]);
        assert!(disk.flip_bit("f", 4, 0).is_err());
    }

    #[test]
    fn unsynced_dir_ops_are_each_kept_or_lost_and_synced_ones_always_kept() {
        let (mut kept, mut lost) = (0, 0);
        for seed in 0..40 {
            let disk = SimDisk::new(SimDiskFaults::torn_with_lost_dir_ops());
            let mut durable = disk.create("durable").expect("create");
            durable.append(b"d").expect("append");
            durable.sync().expect("sync");
            disk.create("old").expect("create");
            disk.sync_dir().expect("sync_dir");
            disk.create("new").expect("create");
            disk.rename("old", "renamed").expect("rename");
            disk.crash(&mut rng(seed));
            let names = disk.list().expect("list");
            assert!(
                names.contains(&"durable".to_owned()),
                "seed {seed}: {names:?}"
            );
            assert_eq!(contents(&disk, "durable"), b"d");
            let renamed = names.contains(&"renamed".to_owned());
            assert_ne!(
                renamed,
                names.contains(&"old".to_owned()),
                "seed {seed}: a rename is atomic: {names:?}"
            );
            if names.contains(&"new".to_owned()) {
                kept += 1;
            } else {
                lost += 1;
            }
        }
        assert!(kept > 0 && lost > 0, "kept {kept}, lost {lost}");
    }

    #[test]
    fn capacity_rejects_growth_past_it_and_reads_still_work() {
        let disk = SimDisk::default();
        disk.set_capacity_bytes(Some(10));
        let mut file = disk.create("f").expect("create");
        file.append(b"12345678").expect("fits");
        assert!(matches!(
            file.append(b"abc"),
            Err(DiskError::NoSpace { .. })
        ));
        file.write_at(0, b"AB").expect("overwriting takes no space");
        assert_eq!(contents(&disk, "f"), b"AB345678");
        disk.set_capacity_bytes(None);
        file.append(b"abc").expect("space again");
    }

    #[test]
    fn bad_reads_flip_a_bit_or_fail_and_leave_the_data_intact() {
        let faults = SimDiskFaults {
            read_bit_flip_probability: 1.0,
            ..SimDiskFaults::default()
        };
        let disk = SimDisk::with_seed(faults, 3);
        let mut file = disk.create("f").expect("create");
        file.append(&[0; 64]).expect("append");
        let mut buf = [0_u8; 64];
        file.read_at(0, &mut buf).expect("read");
        let flipped: u32 = buf.iter().map(|b| b.count_ones()).sum();
        assert_eq!(flipped, 1, "one bit flipped in transit");
        disk.set_faults(SimDiskFaults {
            read_error_probability: 1.0,
            ..SimDiskFaults::default()
        });
        assert!(matches!(
            file.read_at(0, &mut buf),
            Err(DiskError::Io { .. })
        ));
        disk.set_faults(SimDiskFaults::default());
        assert_eq!(contents(&disk, "f"), vec![0; 64], "stored bytes intact");
    }

    #[test]
    fn latent_sector_error_fails_reads_until_the_sector_is_rewritten() {
        let disk = SimDisk::default();
        let mut file = disk.create("f").expect("create");
        file.append(&[1; 3 * SECTOR_BYTES]).expect("append");
        disk.mark_sector_unreadable("f", SECTOR_BYTES as u64 + 5)
            .expect("mark");
        let mut buf = [0_u8; 10];
        file.read_at(0, &mut buf).expect("other sectors read");
        assert!(matches!(
            file.read_at(SECTOR_BYTES as u64 * 2 - 4, &mut buf),
            Err(DiskError::Io { .. })
        ));
        file.write_at(SECTOR_BYTES as u64, &[2; 4])
            .expect("rewrite");
        file.read_at(SECTOR_BYTES as u64, &mut buf)
            .expect("remapped");
    }

    #[test]
    fn sync_failure_probability_fails_syncs() {
        let faults = SimDiskFaults {
            sync_failure_probability: 1.0,
            ..SimDiskFaults::default()
        };
        let disk = SimDisk::with_seed(faults, 1);
        let mut file = disk.create("f").expect("create");
        assert!(matches!(file.sync(), Err(DiskError::SyncFailed { .. })));
        assert!(matches!(disk.sync_dir(), Err(DiskError::SyncFailed { .. })));
    }

    #[test]
    fn engine_never_serves_a_bad_read() {
        let options = EngineOptions {
            memtable_bytes_max: enigma_engine::MEMTABLE_BYTES_MIN,
            table_block_bytes: enigma_engine::TABLE_BLOCK_BYTES_MIN,
            compaction_block_bytes: enigma_engine::TABLE_BLOCK_BYTES_MIN,
            block_cache_bytes: 0,
            ..small_segments()
        };
        let disk = SimDisk::with_seed(SimDiskFaults::default(), 9);
        let mut engine = Engine::open(disk.clone(), options.clone()).expect("open");
        for i in 0..200 {
            engine.write(&key(i), value(i)).expect("write");
        }
        engine.compact_all().expect("compact");
        engine.sync().expect("sync");
        assert!(engine.tables_total() > 0);
        disk.set_faults(SimDiskFaults {
            read_bit_flip_probability: 0.2,
            read_error_probability: 0.05,
            ..SimDiskFaults::default()
        });
        let (mut served, mut refused) = (0, 0);
        for round in 0..5 {
            for i in 0..200 {
                match engine.get(&key(i)) {
                    Ok(got) => {
                        assert_eq!(got, Some(value(i)), "round {round}: key {i}");
                        served += 1;
                    }
                    Err(
                        EngineError::ChecksumMismatch { .. }
                        | EngineError::Corruption { .. }
                        | EngineError::Disk(DiskError::Io { .. }),
                    ) => refused += 1,
                    Err(other) => panic!("unexpected error {other}"),
                }
            }
        }
        assert!(
            served > 0 && refused > 0,
            "served {served}, refused {refused}"
        );
    }

    /// Background jobs that meet bad reads (a flipped bit, a failed read, a
    /// latent bad sector) while opening the table they just wrote must
    /// leave the engine serving every newest version once the reads heal:
    /// the frozen memtable or the compaction inputs stay until the new
    /// table is open.
    #[test]
    fn background_work_meeting_bad_reads_loses_nothing_from_the_read_path() {
        let options = EngineOptions {
            memtable_bytes_max: enigma_engine::MEMTABLE_BYTES_MIN,
            compaction_tables_min: 2,
            ..EngineOptions::default()
        };
        for seed in 0..8 {
            let disk = SimDisk::with_seed(SimDiskFaults::default(), seed);
            let mut engine = Engine::open(disk.clone(), options.clone()).expect("open");
            let mut newest = BTreeMap::new();
            let mut hlc = 1;
            let mut rng = rng(seed);
            for round in 0..30 {
                for k in 0..5_u64 {
                    hlc += 1;
                    let version = Versioned {
                        timestamp: Timestamp { hlc, node: 1 },
                        value: Some(vec![b'x'; 300]),
                    };
                    engine.write(&key(k), version).expect("write");
                    newest.insert(k, hlc);
                }
                engine.sync().expect("sync");
                if round % 3 == 0 {
                    disk.set_faults(SimDiskFaults {
                        read_bit_flip_probability: 0.05,
                        read_error_probability: 0.02,
                        ..SimDiskFaults::default()
                    });
                    disk.mark_random_sectors_unreadable(&mut rng, 4, |n| n.ends_with(".sst"));
                }
                let _ = engine.do_background_work(64 * 1024);
                disk.set_faults(SimDiskFaults::default());
                disk.clear_unreadable_sectors();
                for (k, hlc) in &newest {
                    let got = engine.get(&key(*k)).expect("reads heal").expect("held");
                    assert_eq!(got.timestamp.hlc, *hlc, "seed {seed} round {round} key {k}");
                }
            }
        }
    }

    fn small_segments() -> EngineOptions {
        EngineOptions {
            wal_segment_bytes_max: enigma_engine::WAL_SEGMENT_BYTES_MIN,
            ..EngineOptions::default()
        }
    }

    fn key(i: u64) -> Vec<u8> {
        format!("key-{i:05}").into_bytes()
    }

    fn value(i: u64) -> Versioned {
        Versioned {
            timestamp: Timestamp {
                hlc: i + 1,
                node: 1,
            },
            value: Some(vec![(i % 251) as u8; 1 + (i as usize * 37) % 700]),
        }
    }

    /// Rounds of writes, group commits at random points, then a torn crash:
    /// recovery must keep every synced write, and of the unsynced writes a
    /// prefix, never a gap and never an invented value.
    #[test]
    fn engine_recovers_synced_writes_and_a_prefix_of_unsynced_after_torn_crash() {
        // The test must reach the cases it is about, or it proves nothing.
        let mut torn_tails_seen = 0;
        let mut unsynced_kept_seen = 0;
        for seed in 0..48 {
            let mut rng = rng(seed);
            let disk = SimDisk::new(SimDiskFaults::torn());
            let mut recovered_total = 0_u64; // keys 0..this are durable
            let mut next_key = 0_u64;
            for round in 0..4 {
                let mut engine = Engine::open(disk.clone(), small_segments())
                    .unwrap_or_else(|e| panic!("seed {seed} round {round}: open: {e}"));
                let scanned = engine.scan_all().expect("scan");
                let prefix_len = scanned.len() as u64;
                // Sorted zero-padded keys: entry i must be write i.
                let first_wrong = scanned
                    .iter()
                    .zip(0_u64..)
                    .find(|((k, v), i)| (k, v) != (&key(*i), &value(*i)));
                if let Some(((k, _), i)) = first_wrong {
                    let k = String::from_utf8_lossy(k);
                    panic!("seed {seed} round {round}: entry {i} is {k}: a gap or a wrong value");
                }
                assert!(
                    prefix_len >= recovered_total,
                    "seed {seed} round {round}: lost synced"
                );
                assert!(
                    prefix_len <= next_key,
                    "seed {seed} round {round}: invented writes"
                );
                torn_tails_seen += u32::from(engine.recovery_report().torn_tail.is_some());
                unsynced_kept_seen += u32::from(prefix_len > recovered_total);
                // On a SimDisk everything recovered is durable now.
                recovered_total = prefix_len;
                next_key = prefix_len;
                for _ in 0..rng.random_range(1..40) {
                    assert!(engine
                        .write(&key(next_key), value(next_key))
                        .expect("write"));
                    next_key += 1;
                    if rng.random_bool(0.2) {
                        engine.sync().expect("sync");
                        recovered_total = next_key;
                    }
                }
                drop(engine);
                disk.crash(&mut rng);
            }
        }
        assert!(torn_tails_seen > 0, "no crash left a torn tail");
        assert!(unsynced_kept_seen > 0, "no crash kept an unsynced write");
    }

    #[test]
    fn engine_is_poisoned_after_failed_sync_and_recovers_after_restart() {
        let disk = SimDisk::default();
        let mut engine = Engine::open(disk.clone(), EngineOptions::default()).expect("open");
        engine.write(b"durable", value(1)).expect("write");
        engine.sync().expect("sync");
        engine.write(b"lost", value(2)).expect("write");
        disk.fail_next_sync();
        assert!(matches!(
            engine.sync(),
            Err(EngineError::Disk(DiskError::SyncFailed { .. }))
        ));
        let write = engine.write(b"later", value(3));
        assert!(
            matches!(write, Err(EngineError::Poisoned { .. })),
            "{write:?}"
        );
        assert!(matches!(engine.sync(), Err(EngineError::Poisoned { .. })));
        assert_eq!(engine.get(b"lost").expect("reads work"), Some(value(2)));
        drop(engine);
        disk.crash(&mut rng(7));
        let engine = Engine::open(disk, EngineOptions::default()).expect("reopen");
        assert_eq!(
            engine.scan_all().expect("scan"),
            vec![(b"durable".to_vec(), value(1))]
        );
    }

    #[test]
    fn engine_survives_a_full_disk() {
        let disk = SimDisk::default();
        let mut engine = Engine::open(disk.clone(), small_segments()).expect("open");
        engine.write(&key(0), value(0)).expect("write");
        engine.sync().expect("sync");
        disk.set_full(true);
        engine
            .write(&key(1), value(1))
            .expect("the write waits in the log's buffer");
        assert!(matches!(engine.sync(), Err(EngineError::NoSpace { .. })));
        assert_eq!(
            engine.get(&key(0)).expect("reads work on a full disk"),
            Some(value(0))
        );
        disk.set_full(false);
        engine
            .write(&key(2), value(2))
            .expect("write after space frees up");
        engine.sync().expect("sync");
        drop(engine);
        disk.crash(&mut rng(8));
        let engine = Engine::open(disk, small_segments()).expect("reopen");
        let keys: Vec<Vec<u8>> = engine
            .scan_all()
            .expect("scan")
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        assert_eq!(keys, vec![key(0), key(1), key(2)]);
    }

    #[test]
    fn engine_reports_bit_rot_in_a_synced_non_last_segment() {
        let disk = SimDisk::default();
        let mut engine = Engine::open(disk.clone(), EngineOptions::default()).expect("open");
        engine.write(&key(0), value(0)).expect("write");
        engine.sync().expect("sync");
        drop(engine);
        // Recovery opens a second segment; the first is no longer the last,
        // so damage in it cannot be a torn tail.
        drop(Engine::open(disk.clone(), EngineOptions::default()).expect("reopen"));
        let segment = disk
            .list()
            .expect("list")
            .into_iter()
            .find(|name| name.starts_with("wal-"))
            .expect("a WAL segment");
        let first_record = enigma_engine::WAL_RECORDS_OFFSET;
        disk.flip_bit(&segment, first_record + 16, 3).expect("flip");
        match Engine::open(disk.clone(), EngineOptions::default()) {
            Err(EngineError::ChecksumMismatch { file, offset, .. }) => {
                assert_eq!((file, offset), (segment, first_record));
            }
            other => panic!("expected a checksum mismatch, got {other:?}"),
        }
    }
}
