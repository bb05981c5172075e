//! `Wal`: appending records to the open segment through a buffer,
//! zeros written ahead, syncs with sector padding, and rotation.

use super::record::{batch_record_bytes, encode_batch_record_into, encode_padding_record};
use super::segment::{encode_segment_header_sector, segment_name};
use super::*;
use crate::disk::{Disk, DiskError, DiskFile};
use crate::error::EngineError;

/// How far ahead of the records a synced segment is filled with zeros.
/// Overwriting blocks that are already allocated and written changes no
/// file system metadata, so a sync of the log writes just the data (an
/// `fdatasync` of a growing file must also write its new length and block
/// allocation). Replay stops at the zeros; rotation cuts them off.
pub(crate) const ZERO_AHEAD_BYTES: u64 = 1024 * 1024;

/// Where the zeros written ahead of records ending at `records_end` end:
/// [`ZERO_AHEAD_BYTES`] further, but not past the segment's size; nothing
/// ahead when syncs are off (no sync to speed up).
pub(super) fn zero_ahead_end(records_end: u64, segment_bytes_max: u64, sync_enabled: bool) -> u64 {
    if sync_enabled {
        (records_end + ZERO_AHEAD_BYTES)
            .min(segment_bytes_max)
            .max(records_end)
    } else {
        records_end
    }
}

/// `bytes` followed by zeros up to `end` bytes in all.
pub(super) fn with_zeros(mut bytes: Vec<u8>, end: u64) -> Vec<u8> {
    let end = usize::try_from(end).expect("segments fit in memory");
    if end > bytes.len() {
        bytes.resize(end, 0);
    }
    bytes
}

/// The write-ahead log of one engine: the open segment and its sync state.
#[derive(Debug)]
pub(crate) struct Wal<D: Disk> {
    /// The disk every segment lives on.
    pub(super) disk: D,
    /// The segment new records go to.
    pub(super) segment: D::File,
    /// Its id and name.
    pub(super) segment_id: u64,
    pub(super) segment_name: String,
    /// Its length as far as this log wrote it, buffered records included;
    /// the next record goes here.
    pub(super) segment_len_bytes: u64,
    /// Records appended but not yet written to the file: one `write_at` per
    /// [`WAL_BUFFER_BYTES`] instead of one per record. They are no less
    /// durable than records in the page cache: neither is, before a sync.
    pub(super) buffer: Vec<u8>,
    /// Bytes of the segment written to the file; `buffer` goes here.
    pub(super) file_len_bytes: u64,
    /// The file holds records or zeros up to here ([`ZERO_AHEAD_BYTES`]).
    pub(super) zeroed_end: u64,
    /// Rotate before a record would take the segment past this.
    pub(super) segment_bytes_max: u64,
    /// Whether syncs reach the disk (`false` under `SyncPolicy::Never`).
    pub(super) sync_enabled: bool,
    /// Bytes appended to `segment` since its last sync.
    pub(super) file_unsynced: bool,
    /// `segment` was created since the last `sync_dir`.
    pub(super) dir_unsynced: bool,
    /// Set by a failed sync or a failed rollback: why the log stopped.
    pub(super) poisoned: Option<String>,
    /// The oldest segment that may still exist: segments below it were
    /// removed once tables covered them.
    pub(super) first_segment_id: u64,
}

impl<D: Disk> Wal<D> {
    /// Creates segment `id` with its header and makes it durable, so that
    /// recovery can rely on every earlier segment being complete.
    pub(super) fn create_segment(
        disk: D,
        id: u64,
        segment_bytes_max: u64,
        sync_enabled: bool,
    ) -> Result<Wal<D>, EngineError> {
        let name = segment_name(id);
        let mut segment = disk.create(&name)?;
        let header = encode_segment_header_sector(id);
        let zeroed_end = zero_ahead_end(SEGMENT_RECORDS_OFFSET, segment_bytes_max, sync_enabled);
        segment.write_at(0, &with_zeros(header, zeroed_end))?;
        if sync_enabled {
            segment.sync()?;
            disk.sync_dir()?;
        }
        Ok(Wal {
            disk,
            segment,
            segment_id: id,
            segment_name: name,
            segment_len_bytes: SEGMENT_RECORDS_OFFSET,
            buffer: Vec::new(),
            file_len_bytes: SEGMENT_RECORDS_OFFSET,
            zeroed_end,
            segment_bytes_max,
            sync_enabled,
            file_unsynced: false,
            dir_unsynced: false,
            poisoned: None,
            first_segment_id: id,
        })
    }

    /// The disk below the log.
    pub(crate) fn disk(&self) -> &D {
        &self.disk
    }

    /// Why the log refuses writes, if it does.
    pub(crate) fn poisoned(&self) -> Option<&str> {
        self.poisoned.as_deref()
    }

    /// Whether anything appended or created is not yet durable.
    pub(crate) fn has_unsynced(&self) -> bool {
        self.file_unsynced || self.dir_unsynced
    }

    pub(super) fn check_not_poisoned(&self) -> Result<(), EngineError> {
        match &self.poisoned {
            Some(reason) => Err(EngineError::Poisoned {
                reason: reason.clone(),
            }),
            None => Ok(()),
        }
    }

    /// Records `err` as the reason the log stopped, and returns it.
    pub(super) fn poison(&mut self, err: DiskError) -> EngineError {
        assert!(
            self.poisoned.is_none(),
            "a poisoned log does no further I/O"
        );
        self.poisoned = Some(err.to_string());
        EngineError::Disk(err)
    }

    /// Appends `entries` as one record. Not durable until [`Self::sync`].
    /// On error nothing was appended, or the log is poisoned.
    ///
    /// # Errors
    /// `Poisoned`; disk errors (a full disk leaves the log usable).
    ///
    /// # Panics
    /// If `entries` is empty or larger than a record: callers check.
    pub(crate) fn append_batch(
        &mut self,
        entries: &[(&[u8], &Versioned)],
    ) -> Result<(), EngineError> {
        self.check_not_poisoned()?;
        let record_len = batch_record_bytes(entries);
        let segment_has_records = self.segment_len_bytes > SEGMENT_RECORDS_OFFSET;
        if segment_has_records
            && self.segment_len_bytes + record_len as u64 > self.segment_bytes_max
        {
            self.rotate()?;
        }
        self.make_room(record_len)?;
        encode_batch_record_into(&mut self.buffer, entries);
        self.segment_len_bytes += record_len as u64;
        self.file_unsynced = true;
        Ok(())
    }

    /// Writes the buffer out first if `record_len` more bytes would take it
    /// past [`WAL_BUFFER_BYTES`].
    pub(super) fn make_room(&mut self, record_len: usize) -> Result<(), EngineError> {
        if !self.buffer.is_empty() && self.buffer.len() + record_len > WAL_BUFFER_BYTES {
            self.flush_buffer()?;
        }
        Ok(())
    }

    /// Appends `record` to the segment (through the buffer). On error the
    /// record was not appended; records buffered earlier stay buffered.
    pub(super) fn write_record(&mut self, record: &[u8]) -> Result<(), EngineError> {
        self.make_room(record.len())?;
        self.buffer.extend_from_slice(record);
        self.segment_len_bytes += record.len() as u64;
        self.file_unsynced = true;
        Ok(())
    }

    /// Writes the buffered records to the segment file, rolling back a
    /// partial write so that the file never ends in a broken record, and
    /// keeping them buffered on failure (a full disk may free up).
    pub(super) fn flush_buffer(&mut self) -> Result<(), EngineError> {
        self.write_buffer(false)
    }

    /// [`Self::flush_buffer`], and with `synced` the write is durable on
    /// return, together with every earlier one: one
    /// [`DiskFile::write_synced_at`] instead of a write and a sync. A
    /// failure to make it durable poisons the log, as a failed sync does; a
    /// full disk leaves the records buffered, as in `flush_buffer`. With
    /// nothing buffered it writes nothing, and with `synced` only syncs
    /// (what there is was written out already: a full buffer, or a
    /// rotation's header).
    pub(super) fn write_buffer(&mut self, synced: bool) -> Result<(), EngineError> {
        if self.buffer.is_empty() {
            if synced {
                if let Err(err) = self.segment.sync() {
                    return Err(self.poison(err));
                }
            }
            return Ok(());
        }
        let offset = self.file_len_bytes;
        let records_bytes = self.buffer.len();
        let records_end = offset + records_bytes as u64;
        // Zeros after the records, in the same write, keep the file ahead
        // of the records for the next syncs.
        let zeroed_end = if records_end > self.zeroed_end {
            zero_ahead_end(records_end, self.segment_bytes_max, self.sync_enabled)
        } else {
            self.zeroed_end
        };
        let zeros = zeroed_end.saturating_sub(records_end.max(self.zeroed_end));
        let zeros = usize::try_from(zeros).expect("bounded by ZERO_AHEAD_BYTES");
        self.buffer.resize(records_bytes + zeros, 0);
        let written = if synced {
            self.segment.write_synced_at(offset, &self.buffer)
        } else {
            self.segment.write_at(offset, &self.buffer)
        };
        self.buffer.truncate(records_bytes);
        if let Err(err) = written {
            if synced && !matches!(err, DiskError::NoSpace { .. }) {
                return Err(self.poison(err));
            }
            if let Err(rollback) = self.segment.truncate(offset.max(self.zeroed_end)) {
                self.poison(rollback);
            }
            return Err(err.into());
        }
        self.file_len_bytes = records_end;
        self.zeroed_end = self.zeroed_end.max(zeroed_end);
        self.buffer.clear();
        assert_eq!(
            self.file_len_bytes, self.segment_len_bytes,
            "the buffer holds exactly what the file lacks"
        );
        Ok(())
    }

    /// Fills the segment to the next sector boundary with a padding record,
    /// so that no later append writes into a sector this sync makes durable.
    pub(super) fn pad_to_sector(&mut self) -> Result<(), EngineError> {
        let used = self.segment_len_bytes % SECTOR_BYTES;
        if used == 0 {
            return Ok(());
        }
        let mut gap = SECTOR_BYTES - used;
        if gap < RECORD_HEADER_BYTES as u64 {
            gap += SECTOR_BYTES;
        }
        self.write_record(&encode_padding_record(gap as usize))?;
        assert_eq!(
            self.segment_len_bytes % SECTOR_BYTES,
            0,
            "padding ends on a sector boundary"
        );
        Ok(())
    }

    /// Syncs the full segment and starts the next one. The new segment is
    /// durable in the directory only after the next [`Self::sync`].
    pub(super) fn rotate(&mut self) -> Result<(), EngineError> {
        self.flush_buffer()?;
        if self.sync_enabled {
            // A segment that is not the last must end with its last record:
            // cut off the zeros ahead before the final sync.
            if self.zeroed_end > self.file_len_bytes {
                self.segment.truncate(self.file_len_bytes)?;
                self.zeroed_end = self.file_len_bytes;
            }
            if let Err(err) = self.segment.sync() {
                return Err(self.poison(err));
            }
            // The current segment's own directory entry must be durable
            // before its successor's can be, or a crash could leave a gap.
            if self.dir_unsynced {
                if let Err(err) = self.disk.sync_dir() {
                    return Err(self.poison(err));
                }
            }
        }
        self.file_unsynced = false;
        self.dir_unsynced = false;
        let next_id = self.segment_id + 1;
        let next_name = segment_name(next_id);
        let mut next = self.disk.create(&next_name)?;
        let zeroed_end = zero_ahead_end(
            SEGMENT_RECORDS_OFFSET,
            self.segment_bytes_max,
            self.sync_enabled,
        );
        let header = with_zeros(encode_segment_header_sector(next_id), zeroed_end);
        if let Err(err) = next.write_at(0, &header) {
            drop(next);
            // A headerless segment would be taken for a torn one, and later
            // creating it again would fail: take it away.
            if let Err(cleanup) = self.disk.remove(&next_name) {
                self.poison(cleanup);
            }
            return Err(err.into());
        }
        self.segment = next;
        self.segment_id = next_id;
        self.segment_name = next_name;
        self.segment_len_bytes = SEGMENT_RECORDS_OFFSET;
        self.file_len_bytes = SEGMENT_RECORDS_OFFSET;
        self.zeroed_end = zeroed_end;
        self.file_unsynced = true;
        self.dir_unsynced = true;
        Ok(())
    }

    /// Ends the current segment so that everything logged so far lies in
    /// segments up to the returned id, and new records go to a later one:
    /// called when the memtable is frozen, so that the table it becomes
    /// covers exactly those segments.
    ///
    /// # Errors
    /// `Poisoned`; a failed sync (which poisons the log); disk errors.
    pub(crate) fn seal_segment(&mut self) -> Result<u64, EngineError> {
        self.check_not_poisoned()?;
        let sealed = self.segment_id;
        self.rotate()?;
        Ok(sealed)
    }

    /// Removes every segment up to `last`, oldest first, so that a crash
    /// part way leaves the log without a gap. Call only once a durable
    /// manifest edit says tables cover them.
    ///
    /// # Errors
    /// Disk errors; what is left is removed at the next open.
    ///
    /// # Panics
    /// If `last` is the segment being written.
    pub(crate) fn remove_segments_through(&mut self, last: u64) -> Result<(), EngineError> {
        assert!(last < self.segment_id, "the open segment is never covered");
        while self.first_segment_id <= last {
            let name = segment_name(self.first_segment_id);
            if self.disk.exists(&name)? {
                self.disk.remove(&name)?;
            }
            self.first_segment_id += 1;
        }
        Ok(())
    }

    /// Makes every appended record durable: syncs the segment, then the
    /// directory if the segment is new. A no-op when nothing is unsynced.
    ///
    /// # Errors
    /// `Poisoned`; a failed sync, which poisons the log.
    pub(crate) fn sync(&mut self) -> Result<(), EngineError> {
        self.check_not_poisoned()?;
        if self.file_unsynced {
            if self.sync_enabled {
                self.pad_to_sector()?;
                self.write_buffer(true)?;
            } else {
                self.flush_buffer()?;
            }
            self.file_unsynced = false;
        }
        if self.dir_unsynced {
            if self.sync_enabled {
                if let Err(err) = self.disk.sync_dir() {
                    return Err(self.poison(err));
                }
            }
            self.dir_unsynced = false;
        }
        Ok(())
    }

    /// The name of the segment new records go to.
    #[cfg(test)]
    pub(crate) fn segment_name(&self) -> &str {
        &self.segment_name
    }
}

impl<D: Disk> Drop for Wal<D> {
    /// Hands buffered records to the file, as a cleanly exiting process
    /// would. Nothing is synced: they stay as undurable as they were.
    fn drop(&mut self) {
        if self.poisoned.is_none() {
            let _ = self.flush_buffer();
        }
    }
}
