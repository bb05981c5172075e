//! `Wal`: appending records to the open segment through a buffer,
//! zeros written ahead, syncs with sector padding, and rotation.

use std::collections::BTreeSet;
use std::ops::Bound;

use super::record::{
    batch_record_bytes, decode_batch, encode_batch_record_into, encode_padding_record,
    encode_sync_record, RecordPlace,
};
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
    /// How much of `segment` is durable: its header once synced, then the
    /// end of each completed sync. The next sync record states it.
    pub(super) synced_len_bytes: u64,
    /// The synced length the last sync record appended states: a clean
    /// close certifies `synced_len_bytes` if it is larger.
    pub(super) stated_synced_len_bytes: u64,
    /// The last record appended is a sync record (a retried sync adds no
    /// second one).
    pub(super) ends_with_sync_record: bool,
    /// Set while records the memtable already holds cannot be written for
    /// lack of space: see [`Stall`].
    pub(super) stall: Option<Stall>,
}

/// A log that a full disk stopped: records applied to the memtable wait in
/// the buffer (or in the file, unsynced) and cannot be made durable until
/// space frees up. Meanwhile appends are refused, and so are reads of the
/// keys those records hold, whose versions might yet be lost: an answer
/// must never show what a crash could take back.
#[derive(Debug)]
pub(crate) struct Stall {
    /// Keys written since the last completed sync; `None` if they could
    /// not be read back (then every read is refused).
    keys: Option<BTreeSet<Vec<u8>>>,
    /// The file the log could not write.
    file: String,
}

impl Stall {
    /// Whether a read of `key` must be refused.
    pub(crate) fn holds(&self, key: &[u8]) -> bool {
        self.keys.as_ref().is_none_or(|keys| keys.contains(key))
    }

    /// Whether a scan from `start` to `end` must be refused.
    pub(crate) fn holds_any(&self, start: Bound<&[u8]>, end: Bound<&[u8]>) -> bool {
        self.keys
            .as_ref()
            .is_none_or(|keys| keys.range::<[u8], _>((start, end)).next().is_some())
    }

    /// The error a refused operation reports.
    pub(crate) fn error(&self) -> EngineError {
        EngineError::NoSpace {
            file: self.file.clone(),
        }
    }
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
        let synced_len_bytes = if sync_enabled {
            SEGMENT_RECORDS_OFFSET
        } else {
            0
        };
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
            synced_len_bytes,
            stated_synced_len_bytes: 0,
            ends_with_sync_record: false,
            stall: None,
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
        crate::marks::hit(crate::marks::Mark::WalPoisoned);
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
        if self.stall.is_some() {
            // Space may be back: the records that wait go out first, or
            // this one is refused too.
            self.flush_buffer()?;
        }
        let record_len = batch_record_bytes(entries);
        let segment_has_records = self.segment_len_bytes > SEGMENT_RECORDS_OFFSET;
        if segment_has_records
            && self.segment_len_bytes + record_len as u64 > self.segment_bytes_max
        {
            self.rotate()?;
        }
        self.make_room(record_len)?;
        let place = RecordPlace {
            segment_id: self.segment_id,
            offset: self.segment_len_bytes,
        };
        encode_batch_record_into(&mut self.buffer, entries, Some(place));
        self.segment_len_bytes += record_len as u64;
        self.file_unsynced = true;
        self.ends_with_sync_record = false;
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
        self.ends_with_sync_record = false;
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
            let no_space = matches!(err, DiskError::NoSpace { .. });
            if synced && !no_space {
                return Err(self.poison(err));
            }
            // A partial write may leave part of the records in the zeros
            // ahead (below `zeroed_end`, which is not cut back): they lie
            // after the last completed sync, so a crash makes them a torn
            // tail, and the retry writes the same bytes over them.
            if let Err(rollback) = self.segment.truncate(offset.max(self.zeroed_end)) {
                self.poison(rollback);
            }
            if no_space && self.poisoned.is_none() {
                self.enter_stall();
            }
            return Err(err.into());
        }
        self.stall = None;
        self.file_len_bytes = records_end;
        self.zeroed_end = self.zeroed_end.max(zeroed_end);
        self.buffer.clear();
        assert_eq!(
            self.file_len_bytes, self.segment_len_bytes,
            "the buffer holds exactly what the file lacks"
        );
        Ok(())
    }

    /// Ends what this sync makes durable on a sector boundary, so that no
    /// later append writes into a sector it covers: a sync record stating
    /// how far earlier syncs got fills the last [`SYNC_RECORD_BYTES`] before
    /// the boundary, and a padding record any gap before it. A retried sync
    /// (nothing appended since) adds nothing.
    pub(super) fn end_sync_stretch(&mut self) -> Result<(), EngineError> {
        if self.ends_with_sync_record {
            return Ok(());
        }
        let mut gap = SECTOR_BYTES - self.segment_len_bytes % SECTOR_BYTES;
        let padding_fits = |gap: u64| {
            gap == SYNC_RECORD_BYTES || gap >= SYNC_RECORD_BYTES + RECORD_HEADER_BYTES as u64
        };
        if !padding_fits(gap) {
            gap += SECTOR_BYTES;
        }
        assert!(padding_fits(gap), "a sector always fits the padding");
        let end = self.segment_len_bytes + gap;
        if gap > SYNC_RECORD_BYTES {
            let place = RecordPlace {
                segment_id: self.segment_id,
                offset: self.segment_len_bytes,
            };
            self.write_record(&encode_padding_record(
                (gap - SYNC_RECORD_BYTES) as usize,
                Some(place),
            ))?;
        }
        self.write_record(&encode_sync_record(
            self.synced_len_bytes,
            end,
            Some(self.segment_id),
        ))?;
        self.ends_with_sync_record = true;
        self.stated_synced_len_bytes = self.synced_len_bytes;
        assert_eq!(
            self.segment_len_bytes, end,
            "the sync record ends on a sector boundary"
        );
        Ok(())
    }

    /// Notes that a full disk stopped the log, with the keys of every
    /// record since the last completed sync (read back from the file where
    /// they were written out, and from the buffer).
    fn enter_stall(&mut self) {
        if self.stall.is_some() {
            return;
        }
        let keys = self.unsynced_keys().ok();
        self.stall = Some(Stall {
            keys,
            file: self.segment_name.clone(),
        });
    }

    /// The keys of the records after the last completed sync.
    fn unsynced_keys(&self) -> Result<BTreeSet<Vec<u8>>, EngineError> {
        let from = self.synced_len_bytes.max(SEGMENT_RECORDS_OFFSET);
        let written = usize::try_from(self.file_len_bytes.saturating_sub(from))
            .expect("a segment fits in memory");
        let mut bytes = vec![0_u8; written];
        self.segment.read_at(from, &mut bytes)?;
        bytes.extend_from_slice(&self.buffer);
        let mut keys = BTreeSet::new();
        let mut at = 0;
        while at < bytes.len() {
            let header = bytes
                .get(at..at + RECORD_HEADER_BYTES)
                .ok_or_else(|| self.unreadable(from + at as u64))?;
            let len = le_u32(&header[0..4]) as usize;
            let record_type = header[8];
            let payload_at = at + RECORD_HEADER_BYTES;
            let payload = bytes
                .get(payload_at..payload_at + len)
                .ok_or_else(|| self.unreadable(from + at as u64))?;
            if record_type == RECORD_TYPE_BATCH {
                let entries = decode_batch(payload, &self.segment_name, from + payload_at as u64)?;
                keys.extend(entries.into_iter().map(|(key, _)| key));
            }
            at = payload_at + len;
        }
        Ok(keys)
    }

    fn unreadable(&self, offset: u64) -> EngineError {
        EngineError::Corruption {
            file: self.segment_name.clone(),
            offset,
            reason: "an unsynced record does not read back".to_owned(),
        }
    }

    /// The stall a full disk put the log in, if any.
    pub(crate) fn stall(&self) -> Option<&Stall> {
        self.stall.as_ref()
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
        // The header is durable before any record: damage to it is then
        // corruption whenever a sync record follows.
        if self.sync_enabled {
            if let Err(err) = next.sync() {
                return Err(self.poison(err));
            }
        }
        self.segment = next;
        self.segment_id = next_id;
        self.segment_name = next_name;
        self.segment_len_bytes = SEGMENT_RECORDS_OFFSET;
        self.file_len_bytes = SEGMENT_RECORDS_OFFSET;
        self.zeroed_end = zeroed_end;
        self.file_unsynced = false;
        self.dir_unsynced = true;
        self.synced_len_bytes = if self.sync_enabled {
            SEGMENT_RECORDS_OFFSET
        } else {
            0
        };
        self.stated_synced_len_bytes = 0;
        self.ends_with_sync_record = false;
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
                self.end_sync_stretch()?;
                self.write_buffer(true)?;
                self.synced_len_bytes = self.segment_len_bytes;
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

impl<D: Disk> Wal<D> {
    /// At a clean close with nothing unsynced, appends and syncs one more
    /// sync record stating the end of the last sync, so that replay can
    /// tell damage to the last synced records from a torn tail.
    fn certify_last_sync(&mut self) -> Result<(), EngineError> {
        let certified = self.stated_synced_len_bytes >= self.synced_len_bytes
            || self.synced_len_bytes <= SEGMENT_RECORDS_OFFSET;
        if !self.sync_enabled || self.file_unsynced || certified {
            return Ok(());
        }
        self.file_unsynced = true;
        self.ends_with_sync_record = false;
        self.sync()
    }
}

impl<D: Disk> Drop for Wal<D> {
    /// Hands buffered records to the file, as a cleanly exiting process
    /// would; nothing unsynced is synced: it stays as undurable as it was.
    /// With nothing unsynced, certifies the last sync instead.
    fn drop(&mut self) {
        if self.poisoned.is_none() && self.flush_buffer().is_ok() {
            let _ = self.certify_last_sync();
        }
    }
}
