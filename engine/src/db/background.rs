//! Background work: freezing memtables, flushing them as tables,
//! publishing manifest edits and size-tiered compaction.

use std::collections::BTreeSet;
use std::ops::Bound;

use super::{BackgroundReport, Engine, Frozen, FROZEN_MEMTABLES_MAX};
use crate::compaction::{self, policy};
use crate::manifest::VersionEdit;
use crate::memtable::{MemKey, Memtable};
use crate::merge::{Cursor, Merge};
use crate::sstable::bloom::key_hash;
use crate::sstable::writer::{TableWriter, WrittenTable};
use crate::sstable::TableOptions;
use crate::{Disk, EngineError, Timestamp, Versioned};

/// Names the keys a compaction leaves out whole ([`Engine::drop_keys`]).
pub(super) type KeyFilter<'a> = Option<&'a dyn Fn(&[u8]) -> bool>;

/// Writes `memtable` as table `id`.
pub(super) fn write_memtable<D: Disk>(
    disk: &D,
    id: u64,
    memtable: &Memtable,
    options: TableOptions,
    sync_enabled: bool,
) -> Result<Option<WrittenTable>, EngineError> {
    let mut writer = TableWriter::create(disk, id, options, sync_enabled)?;
    let mut key = Vec::new();
    for (mem_key, entry) in memtable.iter() {
        mem_key.write_to(&mut key);
        if let Err(err) = writer.add(&key, entry.timestamp, entry.value) {
            writer.abandon();
            return Err(err);
        }
    }
    writer.finish()
}

impl<D: Disk> Engine<D> {
    /// Does paced background work: freezes an over-full memtable, flushes
    /// frozen memtables oldest first, then compacts while the budget lasts.
    /// Runs every step of each job back to back (see
    /// [`Self::do_background_steps`]); the budget is checked between jobs,
    /// and at least one job runs if any is due.
    ///
    /// # Errors
    /// `Poisoned`; disk errors (a failed sync poisons the engine);
    /// corruption met while compacting.
    pub fn do_background_work(
        &mut self,
        bytes_budget: u64,
    ) -> Result<BackgroundReport, EngineError> {
        self.do_background_steps(bytes_budget, usize::MAX)
    }

    /// As [`Self::do_background_work`], but runs at most `steps_max` steps
    /// of flush and compaction jobs (see `db/job.rs`: table written, edit
    /// committed, covered files deleted), so that a caller may stop between
    /// any two: a job left part-way through goes on first at the next call,
    /// whatever the budget. The simulator takes one step per tick, so a
    /// crash can land between them; a node in production takes them all.
    ///
    /// # Errors
    /// As [`Self::do_background_work`]; a failed step drops its job, which
    /// the next call starts over.
    ///
    /// # Panics
    /// If `steps_max` is 0.
    pub fn do_background_steps(
        &mut self,
        bytes_budget: u64,
        steps_max: usize,
    ) -> Result<BackgroundReport, EngineError> {
        self.background_steps(bytes_budget, steps_max)
            .inspect_err(|err| self.note_damage(err))
    }

    fn background_steps(
        &mut self,
        bytes_budget: u64,
        steps_max: usize,
    ) -> Result<BackgroundReport, EngineError> {
        assert!(steps_max > 0, "a call runs at least one step");
        self.check_not_poisoned()?;
        let mut report = BackgroundReport::default();
        let early = self.memtable.bytes_total() > 0
            && self
                .buggify
                .fires(crate::buggify::BuggifySite::MemtableFrozenEarly);
        if early {
            crate::marks::hit(crate::marks::Mark::BuggifyMemtableFrozenEarly);
        } else if self.memtable.bytes_total() >= self.options.memtable_bytes_max {
            crate::marks::hit(crate::marks::Mark::MemtableFrozenFull);
        }
        if early || self.memtable.bytes_total() >= self.options.memtable_bytes_max {
            self.freeze()?;
        }
        let mut steps = 0;
        loop {
            if self.job.is_none() {
                let compaction = if self.frozen.is_empty() {
                    match self.compaction_pick() {
                        Some(inputs) => Some(inputs),
                        None => return Ok(report),
                    }
                } else {
                    None
                };
                let budget_spent = report.bytes_written > 0 && report.bytes_written >= bytes_budget;
                if budget_spent || steps >= steps_max {
                    report.work_pending = true;
                    return Ok(report);
                }
                match compaction {
                    None => self.start_flush(&mut report)?,
                    Some(inputs) => self.start_compaction(inputs, None, &mut report)?,
                }
            } else {
                if steps >= steps_max {
                    report.work_pending = true;
                    return Ok(report);
                }
                self.job_step(&mut report)?;
            }
            steps += 1;
        }
    }

    /// Full compaction: flushes the memtable and every frozen memtable, then
    /// merges all tables into one (dropping shadowed versions and the
    /// tombstones the purge horizon allows). Runs whole, however large: for
    /// tools and benchmarks, not for a node's ticks.
    ///
    /// # Errors
    /// As [`Self::do_background_work`].
    pub fn compact_all(&mut self) -> Result<BackgroundReport, EngineError> {
        self.compact_everything()
            .inspect_err(|err| self.note_damage(err))
    }

    fn compact_everything(&mut self) -> Result<BackgroundReport, EngineError> {
        let mut report = self.flush_everything()?;
        // One table is rewritten too if it holds tombstones that may go.
        let may_purge = self.tombstone_purge_before.is_some()
            && self.tables.iter().any(|t| t.meta.tombstones_total > 0);
        if self.tables.len() > 1 || (self.tables.len() == 1 && may_purge) {
            let mut inputs: Vec<u64> = self.tables.iter().map(|table| table.id).collect();
            inputs.sort_unstable();
            report.bytes_written += self.compact(inputs, None)?;
            report.compactions += 1;
        }
        Ok(report)
    }

    /// Removes every version of every key `dropped` names, from the
    /// memtables and every table, without leaving tombstones: afterwards
    /// the engine holds nothing of those keys, as if it had never
    /// received them (what a replica does with data it can no longer
    /// trust, before its peers refill it). Flushes the memtables, then
    /// merges all tables into one that leaves those keys out; the swap is
    /// one manifest edit, so a crash leaves either every version or none
    /// of the dropped ones. Runs whole, like [`Self::compact_all`]: one
    /// pass over everything stored.
    ///
    /// # Errors
    /// As [`Self::do_background_work`]; the keys may then still be held.
    pub fn drop_keys(
        &mut self,
        dropped: &dyn Fn(&[u8]) -> bool,
    ) -> Result<BackgroundReport, EngineError> {
        self.drop_matching(dropped)
            .inspect_err(|err| self.note_damage(err))
    }

    fn drop_matching(
        &mut self,
        dropped: &dyn Fn(&[u8]) -> bool,
    ) -> Result<BackgroundReport, EngineError> {
        let mut report = self.flush_everything()?;
        if !self.tables.is_empty() {
            let mut inputs: Vec<u64> = self.tables.iter().map(|table| table.id).collect();
            inputs.sort_unstable();
            report.bytes_written += self.compact(inputs, Some(dropped))?;
            report.compactions += 1;
        }
        Ok(report)
    }

    /// Finishes the job in progress and flushes the memtable and every
    /// frozen one, so that the tables hold everything.
    fn flush_everything(&mut self) -> Result<BackgroundReport, EngineError> {
        self.check_not_poisoned()?;
        let mut report = BackgroundReport::default();
        self.finish_job()?;
        self.freeze()?;
        while !self.frozen.is_empty() {
            report.bytes_written += self.flush_oldest()?;
            report.tables_flushed += 1;
        }
        Ok(report)
    }

    /// Freezes the memtable and moves the WAL to a new segment.
    pub(super) fn freeze(&mut self) -> Result<(), EngineError> {
        if self.memtable.len() == 0 {
            return Ok(());
        }
        if self.frozen.len() >= FROZEN_MEMTABLES_MAX {
            // A flush in progress may free the slot as it ends.
            self.finish_job()?;
        }
        if self.frozen.len() >= FROZEN_MEMTABLES_MAX {
            crate::marks::hit(crate::marks::Mark::FlushUnderBackPressure);
            self.flush_oldest()?;
        }
        let wal_segment_last = self.wal.seal_segment()?;
        let memtable = std::mem::replace(
            &mut self.memtable,
            Memtable::new(self.options.memtable_bytes_max),
        );
        self.frozen.push_back(Frozen {
            memtable,
            wal_segment_last,
        });
        Ok(())
    }

    /// Flushes the oldest frozen memtable, every step back to back, after
    /// the job in progress. Returns the bytes written.
    pub(super) fn flush_oldest(&mut self) -> Result<u64, EngineError> {
        self.finish_job()?;
        if self.frozen.is_empty() {
            return Ok(0);
        }
        let mut report = BackgroundReport::default();
        self.start_flush(&mut report)?;
        self.finish_job()?;
        Ok(report.bytes_written)
    }

    /// Makes `edit` durable in the manifest; any failure stops the engine,
    /// since whether the edit committed is unknown until the next open.
    pub(super) fn commit(&mut self, edit: &VersionEdit) -> Result<(), EngineError> {
        if let Err(err) = self.manifest.commit(self.wal.disk(), edit) {
            crate::marks::hit(crate::marks::Mark::ManifestEditFailed);
            self.poisoned = Some(format!("manifest edit failed: {err}"));
            return Err(err);
        }
        Ok(())
    }

    /// The tables the policy would compact next.
    pub(super) fn compaction_pick(&self) -> Option<Vec<u64>> {
        let summaries: Vec<policy::TableSummary> = self
            .tables
            .iter()
            .map(|table| policy::TableSummary {
                id: table.id,
                file_bytes: table.file_bytes,
            })
            .collect();
        policy::pick(
            &summaries,
            self.options.compaction_tables_min,
            self.options.compaction_tables_max,
        )
    }

    /// Whether a source outside `inputs` holds any version of `key`.
    pub(super) fn held_outside(
        &self,
        key: &[u8],
        inputs: &BTreeSet<u64>,
    ) -> Result<bool, EngineError> {
        let mem_key = MemKey::new(key);
        let hash = key_hash(key);
        if self.memtable.get_key(&mem_key, hash).is_some()
            || self
                .frozen
                .iter()
                .any(|frozen| frozen.memtable.get_key(&mem_key, hash).is_some())
        {
            return Ok(true);
        }
        for table in self.tables.iter().filter(|t| !inputs.contains(&t.id)) {
            if table.get(key, hash, &self.cache)?.is_some() {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Merges the tables `inputs` into one, every step back to back, after
    /// the job in progress (see `db/job.rs`). Returns the bytes written.
    pub(super) fn compact(
        &mut self,
        inputs: Vec<u64>,
        dropped: KeyFilter<'_>,
    ) -> Result<u64, EngineError> {
        self.finish_job()?;
        let mut report = BackgroundReport::default();
        self.start_compaction(inputs, dropped, &mut report)?;
        self.finish_job()?;
        Ok(report.bytes_written)
    }

    /// Writes the merge of the tables `inputs` as table `id`, dropping
    /// shadowed versions, the tombstones the purge rule allows and every
    /// version of the keys `dropped` names.
    pub(super) fn merge_tables(
        &self,
        id: u64,
        inputs: &BTreeSet<u64>,
        dropped: KeyFilter<'_>,
        sync_enabled: bool,
    ) -> Result<Option<WrittenTable>, EngineError> {
        let purge_before = self.tombstone_purge_before;
        let mut cursors = Vec::with_capacity(inputs.len());
        for table in self.tables.iter().filter(|t| inputs.contains(&t.id)) {
            // Compaction reads every block once: keep them out of the cache.
            let mut cursor = table.cursor(&self.cache, false, false);
            cursor.seek(Bound::Unbounded)?;
            cursors.push(Cursor::Table(cursor));
        }
        assert_eq!(cursors.len(), inputs.len(), "compaction inputs are live");
        let mut merge = Merge::new(cursors, false);
        let mut writer = TableWriter::create(
            self.wal.disk(),
            id,
            self.options.compaction_table_options(),
            sync_enabled,
        )?;
        if let Err(err) = self.copy_merged(&mut merge, &mut writer, inputs, dropped, purge_before) {
            writer.abandon();
            return Err(err);
        }
        writer.finish()
    }

    /// Adds every entry of `merge` to `writer` but the purgeable tombstones
    /// and the keys `dropped` names.
    pub(super) fn copy_merged(
        &self,
        merge: &mut Merge<'_, D::File>,
        writer: &mut TableWriter<'_, D>,
        inputs: &BTreeSet<u64>,
        dropped: KeyFilter<'_>,
        purge_before: Option<Timestamp>,
    ) -> Result<(), EngineError> {
        while merge.next()? {
            let (key, timestamp, value) = (merge.key(), merge.timestamp(), merge.value());
            if dropped.is_some_and(|dropped| dropped(key)) {
                continue;
            }
            if value.is_none() && purge_before.is_some() {
                let version = Versioned {
                    timestamp,
                    value: None,
                };
                let held = self.held_outside(key, inputs)?;
                let guard_allows = self
                    .purge_guard
                    .0
                    .as_ref()
                    .is_none_or(|guard| guard(key, timestamp));
                if compaction::tombstone_purgeable(&version, purge_before, held) {
                    if guard_allows {
                        crate::marks::hit(crate::marks::Mark::TombstonePurged);
                        continue;
                    }
                    crate::marks::hit(crate::marks::Mark::TombstoneKeptUnrepaired);
                }
            }
            writer.add(key, timestamp, value)?;
        }
        Ok(())
    }
}
