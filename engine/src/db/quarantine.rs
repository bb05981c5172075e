//! Quarantine: taking a table whose stored bytes are damaged out of the
//! live set, for good.
//!
//! A read, scan or compaction that meets a checksum failure in a live
//! table notes the table as *suspect* (reads take `&self`, so the note is
//! all they can do). A suspect is then read again, block by block, by
//! [`Engine::confirm_damage`], each block up to [`DAMAGE_CONFIRM_READS`]
//! times until it reads clean: a bit flipped in transfer (the stored bytes
//! intact) does not come back read after read, and the suspicion is
//! dropped; damage in the stored bytes fails every read and the table is
//! *confirmed* damaged. (Damage to the parts a table keeps in memory from
//! its open, footer, index and filter, is not met by reads at all: it
//! refuses the next start, or goes with the table when compaction
//! replaces it.)
//!
//! [`Engine::quarantine_confirmed`] then takes the confirmed tables out, in
//! steps a crash may land between:
//!
//! 1. each file is renamed `<table name>.quarantined` and the directory
//!    synced (a crash before the sync may undo the rename: the table is
//!    live again, and will be found damaged again);
//! 2. one manifest edit removes them (a crash before it commits leaves
//!    the manifest naming tables whose files are under their quarantine
//!    name: recovery finishes the quarantine, committing the same edit at
//!    open, and reports it in [`Engine::quarantined_at_open`]).
//!
//! A quarantined file is never opened again and never deleted by the
//! engine (it is not an engine file: open neither reads nor removes it);
//! an operator may inspect it, then delete it.
//!
//! The engine serves reads from the tables left, which may now miss
//! versions the damaged table held: the owner (the node) must not serve
//! the table's keys until it has fetched them again from elsewhere, and
//! must make its own record of that durable *before* calling
//! [`Engine::quarantine_confirmed`], since after the edit nothing on the
//! engine's disk says data was lost.

use super::Engine;
use crate::manifest::VersionEdit;
use crate::sstable::{parse_table_name, table_name};
use crate::{Disk, EngineError};

/// Reads of a block that failed its checks before it is judged damaged
/// where it is stored: a bit flipped in transfer (at a rate of a few in a
/// hundred reads on a bad disk) does not come back this many times.
pub const DAMAGE_CONFIRM_READS: usize = 8;

/// Suffix a quarantined table's file name gets.
pub const QUARANTINE_SUFFIX: &str = ".quarantined";

/// The name table `id`'s file gets in quarantine.
pub(crate) fn quarantine_name(id: u64) -> String {
    format!("{}{QUARANTINE_SUFFIX}", table_name(id))
}

/// A live table whose stored bytes failed their check twice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DamagedTable {
    /// The table's id.
    pub id: u64,
    /// Its file name.
    pub file: String,
    /// The smallest and largest key it holds, from its metadata (checked
    /// when the table was opened).
    pub key_min: Vec<u8>,
    /// See `key_min`.
    pub key_max: Vec<u8>,
    /// What the reads that confirmed it found.
    pub error: String,
}

impl<D: Disk> Engine<D> {
    /// Notes the live table `err` names as suspect, if `err` is a
    /// corruption of one.
    pub(super) fn note_damage(&self, err: &EngineError) {
        let Some(id) = err
            .corruption_site()
            .and_then(|(file, _)| parse_table_name(file))
        else {
            return;
        };
        if self.tables.iter().any(|table| table.id == id) {
            self.suspects.borrow_mut().insert(id);
        }
    }

    /// Whether a live table met a checksum failure that
    /// [`Self::confirm_damage`] has not yet looked into.
    pub fn damage_suspected(&self) -> bool {
        !self.suspects.borrow().is_empty()
    }

    /// Reads every block of every suspect table again, each up to
    /// [`DAMAGE_CONFIRM_READS`] times until it reads clean: a table with a
    /// block that never does is confirmed damaged, one whose blocks all
    /// read clean is cleared (the first failure was in transfer). A suspect whose read fails otherwise (an
    /// I/O error) stays suspect. Returns every table confirmed damaged and
    /// not yet quarantined.
    pub fn confirm_damage(&mut self) -> Vec<DamagedTable> {
        let suspects = std::mem::take(self.suspects.get_mut());
        for id in suspects {
            let Some(table) = self.tables.iter().find(|table| table.id == id) else {
                continue;
            };
            if self.confirmed.iter().any(|damaged| damaged.id == id) {
                continue;
            }
            match table.verify_blocks(&self.cache, DAMAGE_CONFIRM_READS) {
                Ok(()) => crate::marks::hit(crate::marks::Mark::DamageTransient),
                Err(err) if err.corruption_site().is_some() => {
                    let damaged = DamagedTable {
                        id,
                        file: table_name(id),
                        key_min: table.meta.key_min.clone(),
                        key_max: table.meta.key_max.clone(),
                        error: err.to_string(),
                    };
                    self.confirmed.push(damaged);
                }
                Err(_) => {
                    self.suspects.get_mut().insert(id);
                }
            }
        }
        self.confirmed.clone()
    }

    /// Takes every table [`Self::confirm_damage`] confirmed out of the
    /// live set (see the module documentation for the steps), after the
    /// background job in progress. Returns the tables quarantined.
    ///
    /// # Errors
    /// `Poisoned`; disk errors (the tables not yet removed by a committed
    /// edit stay confirmed, for a later call); a failed manifest edit
    /// poisons the engine.
    pub fn quarantine_confirmed(&mut self) -> Result<Vec<DamagedTable>, EngineError> {
        self.check_not_poisoned()?;
        if self.confirmed.is_empty() {
            return Ok(Vec::new());
        }
        self.finish_job()?;
        // A job may have compacted a confirmed table away: its output
        // holds what could be read of it, and it is nothing to quarantine.
        let live: Vec<u64> = self.tables.iter().map(|table| table.id).collect();
        self.confirmed.retain(|damaged| live.contains(&damaged.id));
        if self.confirmed.is_empty() {
            return Ok(Vec::new());
        }
        let disk = self.wal.disk();
        for damaged in &self.confirmed {
            disk.rename(&damaged.file, &quarantine_name(damaged.id))?;
        }
        if self.options.sync_policy.syncs() {
            disk.sync_dir()?;
        }
        let state = self.manifest.state();
        let edit = VersionEdit {
            next_table_id: state.next_table_id,
            wal_segments_covered: state.wal_segments_covered,
            tables_added: Vec::new(),
            tables_removed: self.confirmed.iter().map(|damaged| damaged.id).collect(),
        };
        self.commit(&edit)?;
        let quarantined = std::mem::take(&mut self.confirmed);
        for damaged in &quarantined {
            crate::marks::hit(crate::marks::Mark::TableQuarantined);
            self.tables.retain(|table| table.id != damaged.id);
            self.cache.borrow_mut().remove_table(damaged.id);
            self.shadowed.get_mut().clear();
        }
        self.quarantined_total += quarantined.len() as u64;
        Ok(quarantined)
    }

    /// Tables quarantined since this engine opened (by
    /// [`Self::quarantine_confirmed`] or finished at open).
    pub fn quarantined_total(&self) -> u64 {
        self.quarantined_total
    }

    /// Ids of the tables whose quarantine a crash interrupted after their
    /// rename and that open finished (their key ranges are not known: the
    /// files were not read).
    pub fn quarantined_at_open(&self) -> &[u64] {
        &self.quarantined_at_open
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::disk::DiskFile;
    use crate::fs_disk::FsDisk;
    use crate::sstable::TableCompression;
    use crate::{EngineOptions, Timestamp, Versioned, TABLE_BLOCK_BYTES_MIN};

    fn value(hlc: u64) -> Versioned {
        Versioned {
            timestamp: Timestamp { hlc, node: 1 },
            value: Some(b"v".to_vec()),
        }
    }

    fn options() -> EngineOptions {
        EngineOptions {
            table_block_bytes: TABLE_BLOCK_BYTES_MIN,
            compaction_block_bytes: TABLE_BLOCK_BYTES_MIN,
            table_compression: TableCompression::None,
            compaction_compression: TableCompression::None,
            ..EngineOptions::default()
        }
    }

    /// An engine with two tables: `a0000..a0049` (older) and
    /// `b0000..b0049`; returns the name of the first.
    fn two_tables() -> (tempfile::TempDir, FsDisk, Engine<FsDisk>, String) {
        let dir = tempfile::tempdir().expect("tempdir");
        let disk = FsDisk::open(dir.path()).expect("disk");
        let mut engine = Engine::open(disk.clone(), options()).expect("open");
        for prefix in ["a", "b"] {
            for i in 0..50 {
                let key = format!("{prefix}{i:04}");
                engine.write(key.as_bytes(), value(10 + i)).expect("write");
            }
            engine.freeze().expect("freeze");
            engine.flush_oldest().expect("flush");
        }
        assert_eq!(engine.tables_total(), 2);
        let first = table_name(engine.tables.last().expect("two tables").id);
        (dir, disk, engine, first)
    }

    fn flip_byte(disk: &FsDisk, name: &str, offset: u64) {
        let mut file = disk.open(name).expect("open");
        let mut byte = [0_u8; 1];
        file.read_at(offset, &mut byte).expect("read");
        file.write_at(offset, &[byte[0] ^ 1]).expect("write");
        file.sync().expect("sync");
    }

    #[test]
    fn a_damaged_table_is_quarantined_kept_aside_and_stays_out_after_reopen() {
        let (_dir, disk, mut engine, first) = two_tables();
        // Byte 20 lies in the first data block, which holds a0000.
        flip_byte(&disk, &first, 20);
        engine.get(b"a0000").expect_err("corrupt");
        assert!(engine.damage_suspected());
        let confirmed = engine.confirm_damage();
        assert_eq!(confirmed.len(), 1);
        assert_eq!(confirmed[0].file, first);
        assert_eq!(confirmed[0].key_min, b"a0000");
        assert_eq!(confirmed[0].key_max, b"a0049");
        let quarantined = engine.quarantine_confirmed().expect("quarantine");
        assert_eq!(quarantined, confirmed);
        assert_eq!(engine.quarantined_total(), 1);
        assert_eq!(engine.tables_total(), 1);
        assert!(!disk.exists(&first).expect("exists"));
        assert!(disk
            .exists(&format!("{first}{QUARANTINE_SUFFIX}"))
            .expect("exists"));
        // Never served from again: its keys are simply not here.
        assert_eq!(engine.get(b"a0000").expect("read"), None);
        assert_eq!(engine.get(b"b0000").expect("read"), Some(value(10)));
        let options = engine.options().clone();
        drop(engine);
        let engine = Engine::open(disk.clone(), options).expect("reopen");
        assert_eq!(engine.tables_total(), 1);
        assert!(engine.quarantined_at_open().is_empty());
        assert_eq!(engine.get(b"a0001").expect("read"), None);
        assert!(
            disk.exists(&format!("{first}{QUARANTINE_SUFFIX}"))
                .expect("exists"),
            "open never deletes a quarantined file"
        );
    }

    #[test]
    fn a_table_that_reads_clean_the_second_time_is_not_quarantined() {
        let (_dir, disk, mut engine, first) = two_tables();
        flip_byte(&disk, &first, 20);
        engine.get(b"a0000").expect_err("corrupt");
        // The stored bytes are back: the first failure was in transfer.
        flip_byte(&disk, &first, 20);
        assert!(engine.confirm_damage().is_empty());
        assert!(!engine.damage_suspected());
        assert!(engine.quarantine_confirmed().expect("nothing").is_empty());
        assert_eq!(engine.tables_total(), 2);
    }

    #[test]
    fn compaction_meeting_damage_makes_its_table_suspect() {
        let (_dir, disk, mut engine, first) = two_tables();
        flip_byte(&disk, &first, 20);
        engine.compact_all().expect_err("corrupt input");
        assert!(engine.damage_suspected());
        assert_eq!(engine.confirm_damage().len(), 1);
    }

    #[test]
    fn a_quarantine_interrupted_after_its_rename_is_finished_at_open() {
        let (_dir, disk, engine, first) = two_tables();
        let id = parse_table_name(&first).expect("a table name");
        let options = engine.options().clone();
        drop(engine);
        // The crash came between the rename and the manifest edit.
        disk.rename(&first, &quarantine_name(id)).expect("rename");
        let engine = Engine::open(disk.clone(), options.clone()).expect("open");
        assert_eq!(engine.quarantined_at_open(), &[id]);
        assert_eq!(engine.quarantined_total(), 1);
        assert_eq!(engine.tables_total(), 1);
        drop(engine);
        let engine = Engine::open(disk.clone(), options).expect("reopen");
        assert!(
            engine.quarantined_at_open().is_empty(),
            "the edit committed"
        );
        assert_eq!(engine.tables_total(), 1);
    }
}
