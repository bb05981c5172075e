//! The read path: point lookups and ordered scans over the memtable,
//! the frozen memtables and the tables, newest version winning.

use std::ops::Bound;

use super::Engine;
use crate::memtable::{range_is_empty, EntryRef, MemKey};
use crate::merge::{Cursor, Merge};
use crate::sstable::bloom::key_hash;
use crate::{Disk, EngineError, Timestamp, Versioned};

/// The newer of two versions by timestamp.
pub(super) fn newer(best: Option<Versioned>, candidate: Option<Versioned>) -> Option<Versioned> {
    match (best, candidate) {
        (Some(best), Some(candidate)) if candidate.timestamp > best.timestamp => Some(candidate),
        (None, candidate) => candidate,
        (best, _) => best,
    }
}

/// Whether a table holding keys `key_min..=key_max` can hold a key within
/// `start` and `end`.
pub(super) fn overlaps(
    key_min: &[u8],
    key_max: &[u8],
    start: Bound<&[u8]>,
    end: Bound<&[u8]>,
) -> bool {
    let after_start = match start {
        Bound::Unbounded => true,
        Bound::Included(start) => key_max >= start,
        Bound::Excluded(start) => key_max > start,
    };
    let before_end = match end {
        Bound::Unbounded => true,
        Bound::Included(end) => key_min <= end,
        Bound::Excluded(end) => key_min < end,
    };
    after_start && before_end
}

impl<D: Disk> Engine<D> {
    /// The newest version of `key` across memtables and tables.
    pub(super) fn lookup(&self, key: &[u8]) -> Result<Option<Versioned>, EngineError> {
        let mem_key = MemKey::new(key);
        let hash = key_hash(key);
        let mut best = self.memtable.get_key(&mem_key, hash);
        for frozen in self.frozen.iter().rev() {
            if let Some(found) = frozen.memtable.get_key(&mem_key, hash) {
                if best.is_none_or(|b| found.timestamp > b.timestamp) {
                    best = Some(found);
                }
            }
        }
        let mut best = best.map(EntryRef::to_versioned);
        for table in &self.tables {
            // A table whose newest entry is older than what we have cannot
            // change the answer.
            if best
                .as_ref()
                .is_some_and(|found| found.timestamp >= table.meta.timestamp_max)
            {
                continue;
            }
            match table.get(key, hash, &self.cache) {
                Ok(found) => best = newer(best, found),
                // Written over since: the newer version stands in for it.
                Err(err)
                    if err.corruption_site().is_some()
                        && best.is_some()
                        && self.shadowed.borrow().contains(key) => {}
                Err(err) => return Err(err),
            }
        }
        Ok(best)
    }

    /// The newest version of `key`, tombstones included (callers need their
    /// timestamps for read repair). Reads keep working after a failed sync.
    ///
    /// # Errors
    /// Disk errors and corruption from a table read; `NoSpace` for a key
    /// whose latest write waits for space to become durable.
    pub fn get(&self, key: &[u8]) -> Result<Option<Versioned>, EngineError> {
        if let Some(stall) = self.wal.stall() {
            if stall.holds(key) {
                return Err(stall.error());
            }
        }
        self.lookup(key).inspect_err(|err| self.note_damage(err))
    }

    /// Every key in order with its newest version, tombstones included.
    ///
    /// # Errors
    /// Disk errors and corruption from a table read.
    pub fn scan_all(&self) -> Result<Vec<(Vec<u8>, Versioned)>, EngineError> {
        self.scan(Bound::Unbounded, Bound::Unbounded, usize::MAX)
    }

    /// Up to `limit` keys from `start` to `end`, forward, each with its
    /// newest version, tombstones included (callers filter them; the
    /// cluster needs their timestamps).
    ///
    /// # Errors
    /// Disk errors and corruption from a table read.
    pub fn scan(
        &self,
        start: Bound<&[u8]>,
        end: Bound<&[u8]>,
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Versioned)>, EngineError> {
        self.scan_ordered(start, end, limit, false)
    }

    /// As [`Self::scan`], but backward: up to `limit` keys from `end` down
    /// to `start`, in descending order.
    ///
    /// # Errors
    /// Disk errors and corruption from a table read.
    pub fn scan_reverse(
        &self,
        start: Bound<&[u8]>,
        end: Bound<&[u8]>,
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Versioned)>, EngineError> {
        self.scan_ordered(start, end, limit, true)
    }

    pub(super) fn scan_ordered(
        &self,
        start: Bound<&[u8]>,
        end: Bound<&[u8]>,
        limit: usize,
        reverse: bool,
    ) -> Result<Vec<(Vec<u8>, Versioned)>, EngineError> {
        let mut out = Vec::new();
        if limit == 0 {
            return Ok(out);
        }
        self.scan_with(start, end, reverse, |key, timestamp, value| {
            out.push((
                key.to_vec(),
                Versioned {
                    timestamp,
                    value: value.map(<[u8]>::to_vec),
                },
            ));
            out.len() < limit
        })?;
        Ok(out)
    }

    /// Calls `visit(key, timestamp, value)` (`value: None` for a tombstone)
    /// for each key from `start` to `end` with its newest version, in
    /// ascending order (descending if `reverse`), until `visit` returns
    /// `false`. Nothing is copied on the way: `visit` sees the bytes where
    /// they lie, so a caller that serializes them or counts them pays for no
    /// allocation per entry.
    ///
    /// # Errors
    /// Disk errors and corruption from a table read; entries visited
    /// before the error were correct.
    pub fn scan_with(
        &self,
        start: Bound<&[u8]>,
        end: Bound<&[u8]>,
        reverse: bool,
        visit: impl FnMut(&[u8], Timestamp, Option<&[u8]>) -> bool,
    ) -> Result<(), EngineError> {
        self.scan_visit(start, end, reverse, visit)
            .inspect_err(|err| self.note_damage(err))
    }

    fn scan_visit(
        &self,
        start: Bound<&[u8]>,
        end: Bound<&[u8]>,
        reverse: bool,
        mut visit: impl FnMut(&[u8], Timestamp, Option<&[u8]>) -> bool,
    ) -> Result<(), EngineError> {
        if range_is_empty(start, end) {
            return Ok(());
        }
        if let Some(stall) = self.wal.stall() {
            if stall.holds_any(start, end) {
                return Err(stall.error());
            }
        }
        let mut cursors: Vec<Cursor<'_, D::File>> = Vec::new();
        cursors.push(Cursor::memtable(self.memtable.range(start, end), reverse));
        for frozen in &self.frozen {
            cursors.push(Cursor::memtable(frozen.memtable.range(start, end), reverse));
        }
        for table in &self.tables {
            if !overlaps(&table.meta.key_min, &table.meta.key_max, start, end) {
                continue;
            }
            // A scan reads each block once: it takes cached blocks but
            // does not push point reads' blocks out.
            let mut cursor = table.cursor(&self.cache, false, reverse);
            cursor.seek(if reverse { end } else { start })?;
            cursors.push(Cursor::Table(cursor));
        }
        let mut merge = Merge::new(cursors, reverse);
        while merge.next()? {
            let key = merge.key();
            let inside = if reverse {
                match start {
                    Bound::Unbounded => true,
                    Bound::Included(start) => key >= start,
                    Bound::Excluded(start) => key > start,
                }
            } else {
                match end {
                    Bound::Unbounded => true,
                    Bound::Included(end) => key <= end,
                    Bound::Excluded(end) => key < end,
                }
            };
            if !inside || !visit(key, merge.timestamp(), merge.value()) {
                break;
            }
        }
        Ok(())
    }
}
