//! Opening an engine in two steps, so that a refused open changes nothing:
//! [`Engine::recover`] reads and checks everything (the manifest, every
//! table it names, every WAL segment it expects, every record) and decides
//! what to clean up; [`EngineRecovery::open`] then does the cleaning up
//! (torn tails cut, garbage removed) and starts the engine.
//!
//! A torn last manifest edit is taken for one that never committed only if
//! the disk agrees: what an edit lets go (tables it removes, WAL segments
//! it covers) is deleted only after it commits, so a table the earlier
//! state names that is gone, or a WAL segment it expects that is gone,
//! shows the edit did commit: the damage is corruption of a committed edit,
//! reported as such.

use std::cell::RefCell;
use std::collections::VecDeque;

use super::quarantine::quarantine_name;
use super::{is_temporary_table, Engine, EngineOptions, PurgeGuardSlot};
use crate::disk::DiskError;
use crate::manifest::{self, ManifestRecovery, TornEdit, VersionEdit};
use crate::memtable::Memtable;
use crate::sstable::cache::BlockCache;
use crate::sstable::parse_table_name;
use crate::sstable::reader::Table;
use crate::wal::{self, PlantedRecoveryBugs, RecoveryReport, WalRecovery};
use crate::{Disk, EngineError, Timestamp};

/// Whether `name` is a file an engine keeps: manifest, WAL segment or
/// table, finished or being written.
pub fn is_engine_file(name: &str) -> bool {
    manifest::is_manifest_file(name)
        || wal::is_segment_name(name)
        || parse_table_name(name).is_some()
        || is_temporary_table(name)
}

/// An engine read back from disk and checked, before anything on disk was
/// changed. [`EngineRecovery::open`] starts it; dropping it changes nothing.
#[derive(Debug)]
pub struct EngineRecovery<D: Disk> {
    disk: D,
    options: EngineOptions,
    manifest: ManifestRecovery,
    /// The live tables, newest first.
    tables: Vec<Table<D::File>>,
    /// Tables the manifest does not name and temporary tables: garbage.
    dead_tables: Vec<String>,
    /// The WAL replayed into it.
    memtable: Memtable,
    wal: WalRecovery,
    /// The highest timestamp in the tables' metadata and the log.
    timestamp_max: Option<Timestamp>,
    /// Tables the manifest names whose files are in quarantine: the edit
    /// removing them is committed at open.
    quarantine_unfinished: Vec<u64>,
}

/// `err` as the corruption of the torn manifest edit it shows committed,
/// if there is one; `err` otherwise.
fn blame_torn_edit(err: EngineError, torn: Option<&TornEdit>) -> EngineError {
    let Some(torn) = torn else {
        return err;
    };
    EngineError::Corruption {
        file: torn.file.clone(),
        offset: torn.offset,
        reason: format!(
            "the last manifest edit is damaged ({}), yet it committed: {err}",
            torn.reason
        ),
    }
}

impl<D: Disk> Engine<D> {
    /// Reads and checks everything on `disk` an engine needs, changing
    /// nothing: the newest manifest, every table it names (their
    /// metadata), every WAL segment it does not cover (every record
    /// replayed). See the module documentation.
    ///
    /// # Errors
    /// [`EngineError::InvalidArgument`] for bad options; corruption (a torn
    /// tail after the last sync of the last WAL segment or an uncommitted
    /// manifest edit is not corruption); a table or WAL segment missing;
    /// tables present with no manifest; disk errors.
    pub fn recover(disk: D, options: EngineOptions) -> Result<EngineRecovery<D>, EngineError> {
        options.validate()?;
        let manifest = manifest::recover(&disk)?;
        let state = manifest.state().clone();
        let torn = manifest.torn_edit();
        let mut dead_tables = Vec::new();
        for name in disk.list()? {
            if let Some(id) = parse_table_name(&name) {
                if !manifest.exists() {
                    return Err(EngineError::Corruption {
                        file: name,
                        offset: 0,
                        reason: "table present but there is no manifest to name it".to_owned(),
                    });
                }
                if !state.tables.contains(&id) {
                    dead_tables.push(name);
                }
            } else if is_temporary_table(&name) {
                dead_tables.push(name);
            }
        }
        let mut tables = Vec::with_capacity(state.tables.len());
        let mut quarantine_unfinished = Vec::new();
        for &id in state.tables.iter().rev() {
            // A quarantine interrupted after its rename: the edit that
            // removes the table is what is left to do (`db/quarantine.rs`).
            if !disk.exists(&crate::sstable::table_name(id))?
                && disk.exists(&quarantine_name(id))?
            {
                quarantine_unfinished.push(id);
                continue;
            }
            let table = Table::open(&disk, id).map_err(|err| match err {
                EngineError::Disk(DiskError::NotFound { name }) => blame_torn_edit(
                    EngineError::Corruption {
                        file: name,
                        offset: 0,
                        reason: "table named by the manifest is missing".to_owned(),
                    },
                    torn,
                ),
                other => other,
            })?;
            tables.push(table);
        }
        let mut timestamp_max = tables.iter().map(|t| t.meta.timestamp_max).max();
        let mut memtable = Memtable::new(options.memtable_bytes_max);
        let planted = PlantedRecoveryBugs {
            synced_damage_is_torn_tail: options.bug_recovery_takes_synced_damage_for_torn_tail,
            sealed_damage_ends_segment: options.bug_recovery_skips_rest_of_damaged_sealed_segment,
        };
        let wal = wal::recover(&disk, state.wal_segments_covered, planted, |entries| {
            for (key, version) in entries {
                timestamp_max = timestamp_max.max(Some(version.timestamp));
                // Replay is idempotent under last-write-wins: an entry
                // that loses here lost when it was first written, too.
                memtable.apply(&key, version.timestamp, version.value.as_deref());
            }
        })
        .map_err(|err| match err {
            // A segment the state expects is gone: only a committed edit
            // lets segments go.
            err if wal::is_missing_segment(&err) => blame_torn_edit(err, torn),
            other => other,
        })?;
        Ok(EngineRecovery {
            disk,
            options,
            manifest,
            tables,
            dead_tables,
            memtable,
            wal,
            timestamp_max,
            quarantine_unfinished,
        })
    }
}

impl<D: Disk> EngineRecovery<D> {
    /// What WAL recovery found (the segment to be opened not yet named).
    pub fn report(&self) -> &RecoveryReport {
        self.wal.report()
    }

    /// The disk being recovered.
    pub fn disk(&self) -> &D {
        &self.disk
    }

    /// Carries the recovery out (cuts a torn manifest edit and a torn WAL
    /// tail, removes garbage manifests, tables and covered segments),
    /// starts a fresh WAL segment, and returns the running engine.
    ///
    /// # Errors
    /// Disk errors.
    pub fn open(self) -> Result<Engine<D>, EngineError> {
        let EngineRecovery {
            disk,
            options,
            manifest,
            tables,
            dead_tables,
            memtable,
            wal,
            timestamp_max,
            quarantine_unfinished,
        } = self;
        let sync_enabled = options.sync_policy.syncs();
        let mut manifest =
            manifest.open(&disk, options.manifest_edits_per_checkpoint, sync_enabled)?;
        if !quarantine_unfinished.is_empty() {
            let state = manifest.state();
            let edit = VersionEdit {
                next_table_id: state.next_table_id,
                wal_segments_covered: state.wal_segments_covered,
                tables_added: Vec::new(),
                tables_removed: quarantine_unfinished.clone(),
            };
            manifest.commit(&disk, &edit)?;
            crate::marks::hit(crate::marks::Mark::QuarantineFinishedAtOpen);
        }
        for name in &dead_tables {
            disk.remove(name)?;
        }
        if !dead_tables.is_empty() {
            crate::marks::hit(crate::marks::Mark::DeadTablesRemoved);
        }
        if !dead_tables.is_empty() && sync_enabled {
            disk.sync_dir()?;
        }
        let (wal, recovery) = wal.open(disk, options.wal_segment_bytes_max, sync_enabled)?;
        let cache = RefCell::new(BlockCache::new(options.block_cache_bytes));
        let buggify = crate::buggify::BuggifyDraws::new(&options.buggify, 0);
        Ok(Engine {
            options,
            wal,
            memtable,
            frozen: VecDeque::new(),
            tables,
            cache,
            manifest,
            tombstone_purge_before: None,
            purge_guard: PurgeGuardSlot(None),
            last_interval_sync_nanos: None,
            poisoned: None,
            recovery,
            shadowed: RefCell::default(),
            buggify,
            timestamp_max,
            job: None,
            suspects: RefCell::default(),
            confirmed: Vec::new(),
            quarantined_total: quarantine_unfinished.len() as u64,
            quarantined_at_open: quarantine_unfinished,
        })
    }
}
