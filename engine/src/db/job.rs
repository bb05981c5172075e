//! Background jobs in steps: a memtable flush or a compaction part-way
//! through, and the step that moves it on.
//!
//! A flush is three steps, each leaving a state that a crash may freeze
//! and recovery must accept:
//!
//! 1. the table is written, synced, renamed and the directory synced (a
//!    crash leaves a file the manifest does not name: garbage at open, the
//!    log still replays its writes);
//! 2. the table is opened and the manifest edit naming it (and the log
//!    segments it covers) is made durable (a crash recovers the table, and
//!    skips the covered segments);
//! 3. the covered log segments are deleted (a crash leaves some of them:
//!    covered, so deleted at open).
//!
//! A compaction is the same three: the merged table written, the edit
//! swapping it for the inputs committed, the inputs deleted.
//!
//! Between steps the engine serves reads and writes: a flushed memtable
//! stays frozen (and readable) until its table serves reads, and a
//! compaction's inputs stay live until the edit that drops them. One job
//! runs at a time, since each takes the next table id from the manifest
//! only when its edit commits; anything else that needs a flush (a freeze
//! with every frozen slot taken, a full compaction) finishes the job in
//! progress first. A step that fails drops the job: the next attempt
//! starts over, which every state between steps allows.

use std::collections::BTreeSet;

use super::{BackgroundReport, Engine};
use crate::manifest::VersionEdit;
use crate::sstable::reader::Table;
use crate::{Disk, EngineError};

/// A flush or compaction part-way through: which step comes next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Job {
    /// The oldest frozen memtable is written as table `id`; next: open it
    /// and commit the edit naming it.
    FlushWritten { id: u64 },
    /// The planted order (`bug_flush_removes_log_before_manifest_edit`):
    /// the covered log segments are already gone, the edit naming table
    /// `id` is next.
    FlushLogRemoved { id: u64 },
    /// The edit is durable and the table serves reads; next: delete the
    /// log segments through `wal_segment_last`.
    FlushCommitted { wal_segment_last: u64 },
    /// The merge of `inputs` is written as `output` (`None`: everything
    /// was purged); next: open it and commit the swap.
    CompactionWritten {
        output: Option<u64>,
        inputs: Vec<u64>,
    },
    /// The swap is durable; next: delete the inputs' files.
    CompactionCommitted { inputs: Vec<u64> },
}

impl<D: Disk> Engine<D> {
    /// Whether a flush or compaction is part-way through (a crash now
    /// lands between two of its steps).
    pub fn background_job_in_progress(&self) -> bool {
        self.job.is_some()
    }

    /// Runs the steps of the job in progress, if any, to its end.
    ///
    /// # Errors
    /// As [`Self::job_step`].
    pub(super) fn finish_job(&mut self) -> Result<(), EngineError> {
        let mut report = BackgroundReport::default();
        while self.job.is_some() {
            self.job_step(&mut report)?;
        }
        Ok(())
    }

    /// Starts a flush of the oldest frozen memtable: writes its table
    /// (step 1).
    pub(super) fn start_flush(&mut self, report: &mut BackgroundReport) -> Result<(), EngineError> {
        assert!(self.job.is_none(), "one background job at a time");
        let frozen = self
            .frozen
            .front()
            .expect("callers check for a frozen memtable");
        let id = self.manifest.state().next_table_id;
        let sync_enabled = self.options.sync_policy.syncs();
        let written = super::background::write_memtable(
            self.wal.disk(),
            id,
            &frozen.memtable,
            self.options.table_options(),
            sync_enabled,
        );
        let written = written
            .map_err(|err| self.poison_if_fatal(err))?
            .expect("a frozen memtable is never empty");
        report.bytes_written += written.file_bytes;
        self.job = Some(Job::FlushWritten { id });
        Ok(())
    }

    /// Starts a compaction of `inputs`: writes their merge (step 1).
    pub(super) fn start_compaction(
        &mut self,
        inputs: Vec<u64>,
        dropped: super::background::KeyFilter<'_>,
        report: &mut BackgroundReport,
    ) -> Result<(), EngineError> {
        assert!(self.job.is_none(), "one background job at a time");
        let input_set: BTreeSet<u64> = inputs.iter().copied().collect();
        assert_eq!(
            input_set.len(),
            inputs.len(),
            "compaction inputs are distinct"
        );
        let id = self.manifest.state().next_table_id;
        let sync_enabled = self.options.sync_policy.syncs();
        let written = self.merge_tables(id, &input_set, dropped, sync_enabled);
        let written = written.map_err(|err| self.poison_if_fatal(err))?;
        report.bytes_written += written.as_ref().map_or(0, |w| w.file_bytes);
        self.job = Some(Job::CompactionWritten {
            output: written.map(|w| w.id),
            inputs,
        });
        Ok(())
    }

    /// Runs the next step of the job in progress. A failed step drops the
    /// job (the next attempt starts over); a failed manifest edit also
    /// stops the engine.
    pub(super) fn job_step(&mut self, report: &mut BackgroundReport) -> Result<(), EngineError> {
        let job = self.job.take().expect("callers check for a job");
        self.job = self.run_step(job, report)?;
        Ok(())
    }

    /// Carries out the step `job` names; returns the job's next state.
    fn run_step(
        &mut self,
        job: Job,
        report: &mut BackgroundReport,
    ) -> Result<Option<Job>, EngineError> {
        match job {
            Job::FlushWritten { id } => {
                let wal_segment_last = self
                    .frozen
                    .front()
                    .expect("a flush in progress keeps its memtable frozen")
                    .wal_segment_last;
                if self.options.bug_flush_removes_log_before_manifest_edit {
                    // The planted order: the log that holds the memtable's
                    // writes goes before anything durable names the table.
                    self.wal.remove_segments_through(wal_segment_last)?;
                    return Ok(Some(Job::FlushLogRemoved { id }));
                }
                self.publish_flush(id, report)?;
                Ok(Some(Job::FlushCommitted { wal_segment_last }))
            }
            Job::FlushLogRemoved { id } => {
                self.publish_flush(id, report)?;
                Ok(None)
            }
            Job::FlushCommitted { wal_segment_last } => {
                self.wal.remove_segments_through(wal_segment_last)?;
                Ok(None)
            }
            Job::CompactionWritten { output, inputs } => {
                self.publish_compaction(output, &inputs, report)?;
                Ok(Some(Job::CompactionCommitted { inputs }))
            }
            Job::CompactionCommitted { inputs } => {
                // The manifest no longer names the inputs; a crash before
                // this finishes leaves files that open deletes.
                for input in inputs {
                    let name = crate::sstable::table_name(input);
                    if self.wal.disk().exists(&name)? {
                        self.wal.disk().remove(&name)?;
                    }
                }
                Ok(None)
            }
        }
    }

    /// Opens flushed table `id`, commits the edit naming it and swaps it
    /// in for the oldest frozen memtable.
    fn publish_flush(&mut self, id: u64, report: &mut BackgroundReport) -> Result<(), EngineError> {
        let wal_segment_last = self
            .frozen
            .front()
            .expect("a flush in progress keeps its memtable frozen")
            .wal_segment_last;
        let edit = VersionEdit {
            next_table_id: id + 1,
            wal_segments_covered: wal_segment_last,
            tables_added: vec![id],
            tables_removed: Vec::new(),
        };
        if self.options.bug_flush_drops_memtable_before_table_opens {
            self.commit(&edit)?;
            self.frozen.pop_front().expect("checked above");
            let table = Table::open(self.wal.disk(), id)?;
            self.tables.insert(0, table);
            report.tables_flushed += 1;
            return Ok(());
        }
        // Opened before the edit commits: a read error here (a bad sector)
        // leaves the frozen memtable serving reads and the table unnamed,
        // to be written again; after the edit it would leave neither.
        let table = Table::open(self.wal.disk(), id)?;
        self.commit(&edit)?;
        crate::marks::hit(crate::marks::Mark::TableFlushed);
        self.frozen.pop_front().expect("checked above");
        self.tables.insert(0, table);
        report.tables_flushed += 1;
        Ok(())
    }

    /// Opens compaction output `output`, commits the edit swapping it for
    /// `inputs`, and swaps them in memory.
    fn publish_compaction(
        &mut self,
        output: Option<u64>,
        inputs: &[u64],
        report: &mut BackgroundReport,
    ) -> Result<(), EngineError> {
        let edit = VersionEdit {
            next_table_id: self.manifest.state().next_table_id + 1,
            wal_segments_covered: self.manifest.state().wal_segments_covered,
            tables_added: output.into_iter().collect(),
            tables_removed: inputs.to_vec(),
        };
        // Opened before the edit commits, as in a flush: a read error must
        // not leave the inputs dropped and the output unopened.
        let table = match output {
            Some(id) => Some(Table::open(self.wal.disk(), id)?),
            None => None,
        };
        self.commit(&edit)?;
        crate::marks::hit(crate::marks::Mark::Compaction);
        if table.is_none() {
            crate::marks::hit(crate::marks::Mark::CompactionEmptyOutput);
        }
        self.tables.retain(|table| !inputs.contains(&table.id));
        for input in inputs {
            self.cache.borrow_mut().remove_table(*input);
        }
        if let Some(table) = table {
            self.tables.insert(0, table);
        }
        report.compactions += 1;
        Ok(())
    }
}
