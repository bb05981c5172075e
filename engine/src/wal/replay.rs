//! Recovery: checking segment headers, reading records back, replaying
//! the log and cutting off the torn tail of the last segment.
//!
//! Recovery runs in two steps so that a refused open changes nothing:
//! [`recover`] only reads (every segment checked, every record replayed,
//! the fate of the last segment's end decided), and
//! [`WalRecovery::open`] then carries the decisions out.
//!
//! # Torn tail or corruption
//!
//! In the last segment, damage (a short, garbled or checksum-failing
//! record, or a bad header) is a torn tail only if it lies at or after the
//! last point a sync is known to have completed. Every sync of a format-2
//! segment ends with a sync record stating how far the syncs before it got,
//! always in the last [`SYNC_RECORD_BYTES`] of a sector: so replay reads the
//! ones before the damage as it goes, and probes the end of every sector
//! after it for more. A sync record is written with the records of its own
//! sync, which a crash may tear while leaving the sync record whole, so it
//! vouches only for what *earlier* syncs made durable; the last sync before
//! a clean close is vouched for by one more sync record written at the
//! close. Damage before the largest synced length found is corruption.

use super::record::{decode_batch, decode_sync_record, record_crc, RecordPlace};
use super::segment::parse_segment_name;
use super::writer::Wal;
use super::*;
use crate::disk::{Disk, DiskError, DiskFile};
use crate::error::EngineError;

/// Bytes read at a time when checking that a segment ends in zeros.
pub(super) const ZERO_CHECK_BYTES: usize = 64 * 1024;

/// Whether the bytes from `offset` to `file_len` are all zero: the unused,
/// preallocated end of a segment rather than a torn write.
pub(super) fn tail_is_zero<F: DiskFile>(
    file: &F,
    offset: u64,
    file_len: u64,
) -> Result<bool, DiskError> {
    let mut buf = vec![0_u8; ZERO_CHECK_BYTES];
    let mut at = offset;
    while at < file_len {
        let len = usize::try_from(file_len - at)
            .map_or(ZERO_CHECK_BYTES, |left| left.min(ZERO_CHECK_BYTES));
        file.read_at(at, &mut buf[..len])?;
        if buf[..len].iter().any(|&b| b != 0) {
            return Ok(false);
        }
        at += len as u64;
    }
    Ok(true)
}

/// Why a piece of a segment could not be read.
pub(super) enum Damage {
    /// The bytes are short, garbled or fail their checksum: what a torn
    /// write looks like. A torn tail in the last segment; corruption
    /// anywhere else.
    Torn(EngineError),
    /// The bytes are intact but wrong (bad format version, wrong id, a
    /// payload that does not parse): corruption wherever it is.
    Invalid(EngineError),
    /// The disk failed to read.
    Disk(DiskError),
}

impl From<DiskError> for Damage {
    fn from(err: DiskError) -> Damage {
        Damage::Disk(err)
    }
}

pub(super) fn read_bytes<F: DiskFile>(
    file: &F,
    offset: u64,
    len: usize,
) -> Result<Vec<u8>, DiskError> {
    let mut buf = vec![0_u8; len];
    file.read_at(offset, &mut buf)?;
    Ok(buf)
}

/// Bytes a replay reads from a segment at a time.
pub(super) const REPLAY_WINDOW_BYTES: usize = 1024 * 1024;

/// Reads a segment front to back for replay through a window of
/// [`REPLAY_WINDOW_BYTES`], so that a segment of small records costs one
/// `read_at` per window rather than two per record.
pub(super) struct SegmentReader<'f, F> {
    file: &'f F,
    file_len: u64,
    /// File offset of `window[0]`.
    window_start: u64,
    window: Vec<u8>,
}

impl<'f, F: DiskFile> SegmentReader<'f, F> {
    pub(super) fn new(file: &'f F, file_len: u64) -> SegmentReader<'f, F> {
        SegmentReader {
            file,
            file_len,
            window_start: 0,
            window: Vec::new(),
        }
    }

    /// The `len` bytes at `offset` (the caller has checked that they lie
    /// within the file). If reading a whole window fails, the bytes asked
    /// for are read alone, so a bad sector further on fails only the reads
    /// that reach it.
    pub(super) fn read(&mut self, offset: u64, len: usize) -> Result<Vec<u8>, DiskError> {
        let in_window = offset >= self.window_start
            && offset + len as u64 <= self.window_start + self.window.len() as u64;
        if !in_window {
            let wanted = len.max(REPLAY_WINDOW_BYTES);
            let window_len = usize::try_from(self.file_len.saturating_sub(offset))
                .map_or(wanted, |left| left.min(wanted));
            self.window.resize(window_len, 0);
            if window_len < len || self.file.read_at(offset, &mut self.window).is_err() {
                self.window.clear();
                self.window_start = 0;
                return read_bytes(self.file, offset, len);
            }
            self.window_start = offset;
        }
        let start = usize::try_from(offset - self.window_start)
            .expect("an offset within the window fits in usize");
        Ok(self.window[start..start + len].to_vec())
    }
}

/// Checks the header of segment `id`, whose file is `file_len` bytes long;
/// returns its format version.
pub(super) fn check_segment_header<F: DiskFile>(
    file: &F,
    name: &str,
    id: u64,
    file_len: u64,
) -> Result<u32, Damage> {
    let corruption = |reason: String| EngineError::Corruption {
        file: name.to_owned(),
        offset: 0,
        reason,
    };
    if file_len < SEGMENT_RECORDS_OFFSET {
        return Err(Damage::Torn(corruption(format!(
            "segment is {file_len} bytes, shorter than its {SEGMENT_RECORDS_OFFSET}-byte header sector"
        ))));
    }
    let header = read_bytes(file, 0, SEGMENT_HEADER_BYTES as usize)?;
    if header[0..8] != SEGMENT_MAGIC {
        return Err(Damage::Torn(corruption("bad segment magic".to_owned())));
    }
    let expected = le_u32(&header[20..24]);
    let got = crc32fast::hash(&header[0..20]);
    if expected != got {
        return Err(Damage::Torn(EngineError::ChecksumMismatch {
            file: name.to_owned(),
            offset: 0,
            expected,
            got,
        }));
    }
    let version = le_u32(&header[8..12]);
    if !(SEGMENT_FORMAT_VERSION_UNMARKED..=SEGMENT_FORMAT_VERSION).contains(&version) {
        return Err(Damage::Invalid(corruption(format!(
            "unsupported WAL format version {version} (this build reads \
             {SEGMENT_FORMAT_VERSION_UNMARKED} to {SEGMENT_FORMAT_VERSION})"
        ))));
    }
    let header_id = le_u64(&header[12..20]);
    if header_id != id {
        return Err(Damage::Invalid(corruption(format!(
            "header says segment {header_id}, file name says {id}"
        ))));
    }
    Ok(version)
}

/// Reads the record at `offset` of a file `file_len` bytes long, checking
/// its checksum against that offset of segment `placed_in` (`None` in
/// formats 1 and 2, whose checksums do not cover the place); returns its
/// type, payload and the offset after it.
pub(super) fn read_record<F: DiskFile>(
    reader: &mut SegmentReader<'_, F>,
    name: &str,
    offset: u64,
    file_len: u64,
    placed_in: Option<u64>,
) -> Result<(u8, Vec<u8>, u64), Damage> {
    let torn = |reason: String| {
        Damage::Torn(EngineError::Corruption {
            file: name.to_owned(),
            offset,
            reason,
        })
    };
    let bytes_left = file_len - offset;
    if bytes_left < RECORD_HEADER_BYTES as u64 {
        return Err(torn(format!(
            "{bytes_left} bytes left, fewer than a {RECORD_HEADER_BYTES}-byte record header"
        )));
    }
    let header = reader.read(offset, RECORD_HEADER_BYTES)?;
    let payload_len = le_u32(&header[0..4]);
    let expected = le_u32(&header[4..8]);
    let record_type = header[8];
    // Check the length against both bounds before allocating for it.
    if payload_len > RECORD_PAYLOAD_BYTES_MAX {
        return Err(torn(format!(
            "record length {payload_len} exceeds the maximum {RECORD_PAYLOAD_BYTES_MAX}"
        )));
    }
    let payload_offset = offset + RECORD_HEADER_BYTES as u64;
    if u64::from(payload_len) > file_len - payload_offset {
        return Err(torn(format!(
            "record length {payload_len} passes the end of the file ({file_len} bytes)"
        )));
    }
    let payload = reader.read(payload_offset, payload_len as usize)?;
    let place = placed_in.map(|segment_id| RecordPlace { segment_id, offset });
    let got = record_crc(place, record_type, &payload);
    if got != expected {
        return Err(Damage::Torn(EngineError::ChecksumMismatch {
            file: name.to_owned(),
            offset,
            expected,
            got,
        }));
    }
    Ok((
        record_type,
        payload,
        payload_offset + u64::from(payload_len),
    ))
}

/// The largest synced length stated by an intact sync record ending on a
/// sector boundary after `damage_at` (0 if there is none) in segment
/// `segment_id`. A record counts as intact if its checksum holds for its
/// place (format 3) or without one (format 2): the header that would say
/// which may be the damage, and taking a record for intact only makes
/// recovery refuse more, never keep less.
///
/// # Errors
/// Disk errors: recovery cannot decide without these bytes.
fn probe_sync_records<F: DiskFile>(
    file: &F,
    damage_at: u64,
    file_len: u64,
    segment_id: u64,
) -> Result<u64, DiskError> {
    let mut reader = SegmentReader::new(file, file_len);
    let mut synced = 0;
    let first_end = (damage_at + SYNC_RECORD_BYTES).div_ceil(SECTOR_BYTES) * SECTOR_BYTES;
    let mut end = first_end.max(SECTOR_BYTES);
    while end <= file_len {
        let start = end - SYNC_RECORD_BYTES;
        let bytes = reader.read(start, SYNC_RECORD_BYTES as usize)?;
        let payload = &bytes[RECORD_HEADER_BYTES..];
        let length_fits = le_u32(&bytes[0..4]) as usize == payload.len();
        let expected = le_u32(&bytes[4..8]);
        let place = RecordPlace {
            segment_id,
            offset: start,
        };
        let intact = length_fits
            && bytes[8] == RECORD_TYPE_SYNC
            && (record_crc(Some(place), RECORD_TYPE_SYNC, payload) == expected
                || record_crc(None, RECORD_TYPE_SYNC, payload) == expected);
        if intact {
            if let Some(stated) = decode_sync_record(payload, end) {
                synced = synced.max(stated);
            }
        }
        end += SECTOR_BYTES;
    }
    Ok(synced)
}

/// How the reason of a missing-segment error ends.
const MISSING: &str = "is missing";

/// Whether `err` says a WAL segment the manifest expects is missing.
pub(crate) fn is_missing_segment(err: &EngineError) -> bool {
    matches!(err, EngineError::Corruption { reason, .. } if reason.ends_with(MISSING))
}

/// Switches that plant recovery bugs, for tests that prove they are caught.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct PlantedRecoveryBugs {
    /// Damage before the last synced point of the last segment is taken
    /// for a torn tail and cut off: acknowledged writes vanish silently.
    pub(crate) synced_damage_is_torn_tail: bool,
    /// Damage in a sealed segment ends that segment's replay, as if torn,
    /// and replay goes on with the next: its later records vanish.
    pub(crate) sealed_damage_ends_segment: bool,
}

/// What to do to the end of the last segment.
#[derive(Debug)]
enum TailFix {
    /// Cut the file at `offset` (a torn tail, or the unused zeros ahead).
    Truncate { name: String, offset: u64 },
    /// Remove the file: its header is torn and nothing in it was synced.
    Remove { name: String },
}

/// The log as [`recover`] found it: every segment read and checked, every
/// record replayed, nothing on disk changed yet.
#[derive(Debug)]
pub(crate) struct WalRecovery {
    /// Segments the tables cover, left by a crash between the manifest
    /// edit and their removal: garbage.
    covered: Vec<String>,
    /// What happens to the last segment's end.
    tail: Option<TailFix>,
    /// The id of the segment to create.
    next_id: u64,
    /// The oldest live segment's id.
    first_segment_id: u64,
    report: RecoveryReport,
}

/// Reads the log on `disk` (segments above `segments_covered`), handing
/// each record's entries to `apply` in log order, and decides what to do
/// with the end of the last segment. Changes nothing on disk.
///
/// # Errors
/// A missing segment; corruption anywhere but a torn tail after the last
/// synced point of the last segment; disk errors.
pub(crate) fn recover<D: Disk>(
    disk: &D,
    segments_covered: u64,
    planted: PlantedRecoveryBugs,
    mut apply: impl FnMut(Vec<WalEntry>),
) -> Result<WalRecovery, EngineError> {
    let mut segments = Vec::new();
    let mut covered = Vec::new();
    for name in disk.list()? {
        if let Some(id) = parse_segment_name(&name)? {
            if id <= segments_covered {
                covered.push(name);
            } else {
                segments.push((id, name));
            }
        }
    }
    segments.sort();
    if let Some((first, first_name)) = segments.first() {
        // Segment `covered + 1` is created before any later one and is
        // never deleted before the watermark passes it.
        if *first != segments_covered + 1 {
            return Err(EngineError::Corruption {
                file: first_name.clone(),
                offset: 0,
                reason: format!("WAL segment {} {MISSING}", segments_covered + 1),
            });
        }
    }
    for pair in segments.windows(2) {
        let (previous, (next, next_name)) = (pair[0].0, &pair[1]);
        if *next != previous + 1 {
            return Err(EngineError::Corruption {
                file: next_name.clone(),
                offset: 0,
                reason: format!("WAL segment {} {MISSING}", previous + 1),
            });
        }
    }

    let mut report = RecoveryReport {
        segments_covered_removed: covered.len() as u64,
        ..RecoveryReport::default()
    };
    let mut tail = None;
    let mut next_id = segments_covered + SEGMENT_ID_FIRST;
    let first_segment_id = next_id;
    let segments_total = segments.len();
    for (index, (id, name)) in segments.iter().enumerate() {
        let is_last = index + 1 == segments_total;
        report.segments_replayed += 1;
        next_id = id + 1;
        let file = disk.open(name)?;
        let file_len = file.len()?;
        let mut offset = 0;
        // The largest synced length the sync records read so far state.
        let mut synced_proven = 0;
        let header = check_segment_header(&file, name, *id, file_len);
        let mut damage: Option<Damage> = None;
        let (marked, placed_in) = match header {
            Ok(version) => (
                version != SEGMENT_FORMAT_VERSION_UNMARKED,
                (version >= SEGMENT_FORMAT_VERSION_PLACED).then_some(*id),
            ),
            Err(bad) => {
                damage = Some(bad);
                // Version unknown: look for sync records all the same.
                (true, None)
            }
        };
        if damage.is_none() {
            offset = SEGMENT_RECORDS_OFFSET;
            let mut reader = SegmentReader::new(&file, file_len);
            while offset < file_len {
                match read_record(&mut reader, name, offset, file_len, placed_in) {
                    Ok((RECORD_TYPE_PADDING, _, next_offset)) => offset = next_offset,
                    Ok((RECORD_TYPE_SYNC, payload, next_offset)) if marked => {
                        let stated =
                            decode_sync_record(&payload, next_offset).ok_or_else(|| {
                                EngineError::Corruption {
                                    file: name.clone(),
                                    offset,
                                    reason: "sync record does not parse or is out of place"
                                        .to_owned(),
                                }
                            })?;
                        synced_proven = synced_proven.max(stated);
                        offset = next_offset;
                    }
                    Ok((record_type, payload, next_offset)) => {
                        let payload_offset = offset + RECORD_HEADER_BYTES as u64;
                        if record_type != RECORD_TYPE_BATCH {
                            return Err(EngineError::Corruption {
                                file: name.clone(),
                                offset,
                                reason: format!("unknown WAL record type {record_type}"),
                            });
                        }
                        let entries = decode_batch(&payload, name, payload_offset)?;
                        report.records_replayed += 1;
                        report.entries_replayed += entries.len() as u64;
                        apply(entries);
                        offset = next_offset;
                    }
                    Err(bad) => {
                        damage = Some(bad);
                        break;
                    }
                }
            }
        }
        let error = match damage {
            None => continue,
            Some(Damage::Disk(err)) => return Err(err.into()),
            Some(Damage::Invalid(err)) => return Err(err),
            Some(Damage::Torn(_)) if !is_last && planted.sealed_damage_ends_segment => continue,
            Some(Damage::Torn(err)) if !is_last => return Err(err),
            Some(Damage::Torn(err)) => err,
        };
        // The end of the last segment: its unused preallocated zeros, or
        // damage. Sync records after the damage tell a torn tail (after
        // the last completed sync) from corruption (before it).
        let unused = offset > 0 && tail_is_zero(&file, offset, file_len)?;
        if !unused {
            if marked {
                synced_proven =
                    synced_proven.max(probe_sync_records(&file, offset, file_len, *id)?);
            }
            if offset < synced_proven && !planted.synced_damage_is_torn_tail {
                return Err(EngineError::Corruption {
                    file: name.clone(),
                    offset,
                    reason: format!(
                        "damaged record before the last synced point ({synced_proven}, stated by \
                         a sync record): corruption, not a torn tail ({})",
                        error.detail()
                    ),
                });
            }
            crate::marks::hit(crate::marks::Mark::WalTornTail);
            report.torn_tail = Some(TornTail {
                file: name.clone(),
                offset,
                bytes_dropped: file_len - offset,
                reason: error.to_string(),
                synced_through: synced_proven,
            });
        }
        if offset == 0 {
            // The header itself is torn and no sync record vouches for
            // anything after it: nothing in the segment was synced.
            tail = Some(TailFix::Remove { name: name.clone() });
            next_id = *id;
        } else {
            tail = Some(TailFix::Truncate {
                name: name.clone(),
                offset,
            });
        }
    }
    Ok(WalRecovery {
        covered,
        tail,
        next_id,
        first_segment_id,
        report,
    })
}

impl WalRecovery {
    /// What recovery found (the segment to be opened not yet named).
    pub(crate) fn report(&self) -> &RecoveryReport {
        &self.report
    }

    /// Carries out what [`recover`] decided: removes the covered segments,
    /// cuts off (or removes) the end of the last segment, and opens a fresh
    /// segment for new records.
    ///
    /// # Errors
    /// Disk errors.
    pub(crate) fn open<D: Disk>(
        self,
        disk: D,
        segment_bytes_max: u64,
        sync_enabled: bool,
    ) -> Result<(Wal<D>, RecoveryReport), EngineError> {
        let WalRecovery {
            covered,
            tail,
            next_id,
            first_segment_id,
            mut report,
        } = self;
        for name in &covered {
            disk.remove(name)?;
        }
        if !covered.is_empty() && sync_enabled {
            disk.sync_dir()?;
        }
        match tail {
            None => {}
            Some(TailFix::Truncate { name, offset }) => {
                let mut file = disk.open(&name)?;
                file.truncate(offset)?;
                // Synced even when syncs are off: this segment is no longer
                // the last, and a segment that is not the last must end with
                // its last record, or the next open would take its zeros for
                // corruption.
                file.sync()?;
            }
            Some(TailFix::Remove { name }) => {
                disk.remove(&name)?;
                if sync_enabled {
                    disk.sync_dir()?;
                }
            }
        }
        let mut wal = Wal::create_segment(disk, next_id, segment_bytes_max, sync_enabled)?;
        wal.first_segment_id = first_segment_id;
        report.segment_opened = wal.segment_name.clone();
        Ok((wal, report))
    }
}

/// Replays the log on `disk` ([`recover`]), then opens a fresh segment for
/// new records ([`WalRecovery::open`]).
///
/// # Errors
/// As both.
#[cfg(test)]
pub(crate) fn open<D: Disk>(
    disk: D,
    segments_covered: u64,
    segment_bytes_max: u64,
    sync_enabled: bool,
    apply: impl FnMut(Vec<WalEntry>),
) -> Result<(Wal<D>, RecoveryReport), EngineError> {
    recover(
        &disk,
        segments_covered,
        PlantedRecoveryBugs::default(),
        apply,
    )?
    .open(disk, segment_bytes_max, sync_enabled)
}
