//! The write-ahead log: record framing, segments, rotation and replay.
//!
//! # On-disk layout
//!
//! The log is a sequence of segment files `wal-<id>.log`, `<id>` a 20-digit,
//! zero-padded decimal counting up from 1 with no gaps. Each segment is
//!
//! ```text
//! header (24 bytes, zero-filled to a 512-byte sector):
//!   magic "ENIGMWAL" (8) | format version u32 LE | segment id u64 LE
//!   | crc32 u32 LE of the 20 bytes before it
//! records from offset 512, back to back:
//!   payload len u32 LE | crc32 u32 LE of (type byte ++ payload) | type u8
//!   | payload (len bytes)
//! ```
//!
//! A sync first ends the segment on a sector boundary with a
//! [`RECORD_TYPE_PADDING`] record (zero payload), which replay skips: a crash
//! may garble a whole sector being written, and synced bytes must never
//! share a sector with later writes. The other record type is
//! [`RECORD_TYPE_BATCH`], whose payload is
//!
//! ```text
//! entry count u32 LE (at least 1), then per entry:
//!   key len u32 LE | key | hlc u64 LE | node u32 LE
//!   | kind u8 (0 = tombstone, 1 = value) | [value len u32 LE | value]
//! ```
//!
//! A single write is a batch of one, so every batch is atomic: one record,
//! one checksum.
//!
//! # Durability and recovery
//!
//! - A segment is only appended to by the engine instance that created it;
//!   recovery always starts a fresh one. So a segment that is not the last
//!   was fully synced (rotation syncs it before creating the next one), and
//!   any bad byte in it is corruption, reported with file and offset.
//! - The last segment may end in a torn tail after a crash: replay stops at
//!   the first short, oversized or checksum-failing record and truncates the
//!   file there. A last segment whose header is torn holds nothing that was
//!   ever acknowledged and is removed.
//! - A record whose checksum matches but whose payload does not parse is
//!   never a torn write: it is reported as corruption wherever it is.
//! - A failed append is rolled back by truncating to the previous end, so no
//!   later record follows a partial one; if the rollback fails, or a sync
//!   fails, the log is poisoned and refuses every further write and sync.
//! - A sync writes the buffered records with one
//!   [`DiskFile::write_synced_at`] (a write and a sync in one, which the
//!   file system disk does in a single direct write); its failure for any
//!   reason but a full disk poisons the log as a failed sync does.

use crate::disk::{Disk, DiskError, DiskFile};
use crate::error::EngineError;
use crate::types::{Timestamp, Versioned};

/// First bytes of every segment.
const SEGMENT_MAGIC: [u8; 8] = *b"ENIGMWAL";
/// Version of the layout above; bumped on any incompatible change.
const SEGMENT_FORMAT_VERSION: u32 = 1;
/// Size of the segment header.
pub(crate) const SEGMENT_HEADER_BYTES: u64 = 24;
/// Size of a record's frame before its payload: len, crc, type.
const RECORD_HEADER_BYTES: usize = 9;
/// Largest payload a record may have. Bounds the allocation a length read
/// from disk can cause, and so the largest batch.
pub(crate) const RECORD_PAYLOAD_BYTES_MAX: u32 = 64 * 1024 * 1024;
/// Record type of a batch of writes.
pub(crate) const RECORD_TYPE_BATCH: u8 = 1;
/// Record type of filler that ends a synced stretch on a sector boundary.
pub(crate) const RECORD_TYPE_PADDING: u8 = 2;
/// The unit a crash may tear: a write into a sector can garble the whole
/// sector, including bytes in it that were synced earlier. So the log never
/// writes into a sector that holds synced bytes: the header has a sector to
/// itself, and every sync first pads the segment to a sector boundary.
pub(crate) const SECTOR_BYTES: u64 = 512;
/// Where a segment's records start: after the header's own sector.
pub const SEGMENT_RECORDS_OFFSET: u64 = SECTOR_BYTES;
/// Records are gathered in memory up to this many bytes before they are
/// written to the segment file.
pub(crate) const WAL_BUFFER_BYTES: usize = 256 * 1024;
/// Bytes a batch payload spends on its entry count.
const BATCH_COUNT_BYTES: usize = 4;
/// Bytes every entry spends besides its key and value: key len, hlc, node
/// and kind.
const ENTRY_FIXED_BYTES: usize = 4 + 8 + 4 + 1;
/// Bytes a value entry spends on its value's length.
const VALUE_LEN_BYTES: usize = 4;
/// Kind byte of a tombstone entry.
const KIND_TOMBSTONE: u8 = 0;
/// Kind byte of a value entry.
const KIND_VALUE: u8 = 1;
/// Segment ids start here; `0` never names a segment.
const SEGMENT_ID_FIRST: u64 = 1;
/// Segment file names: prefix, zero-padded id, suffix.
const SEGMENT_NAME_PREFIX: &str = "wal-";
const SEGMENT_NAME_SUFFIX: &str = ".log";
const SEGMENT_ID_DIGITS: usize = 20;

/// One write as logged: the key and its new version.
pub(crate) type WalEntry = (Vec<u8>, Versioned);

/// What recovery found, for logs and for tests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// Segments read, the removed torn one included.
    pub segments_replayed: u64,
    /// Intact records replayed.
    pub records_replayed: u64,
    /// Entries in those records.
    pub entries_replayed: u64,
    /// The torn tail cut off the last segment, if there was one.
    pub torn_tail: Option<TornTail>,
    /// The segment new writes go to.
    pub segment_opened: String,
}

/// A torn tail found and cut off during recovery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TornTail {
    /// The segment it was in.
    pub file: String,
    /// Where the first bad record started; the file now ends here (or the
    /// file was removed, if its header was torn and `offset` is 0).
    pub offset: u64,
    /// How many bytes were dropped.
    pub bytes_dropped: u64,
    /// Why the record was judged torn.
    pub reason: String,
}

/// The name of segment `id`.
pub(crate) fn segment_name(id: u64) -> String {
    format!(
        "{SEGMENT_NAME_PREFIX}{id:0width$}{SEGMENT_NAME_SUFFIX}",
        width = SEGMENT_ID_DIGITS
    )
}

/// The id of a segment name; `None` for names that are not WAL segments at
/// all; an error for names shaped like one that do not parse.
fn parse_segment_name(name: &str) -> Result<Option<u64>, EngineError> {
    let Some(rest) = name.strip_prefix(SEGMENT_NAME_PREFIX) else {
        return Ok(None);
    };
    let Some(digits) = rest.strip_suffix(SEGMENT_NAME_SUFFIX) else {
        return Ok(None);
    };
    let bad = |reason: &str| EngineError::Corruption {
        file: name.to_owned(),
        offset: 0,
        reason: format!("WAL segment name {reason}"),
    };
    if digits.len() != SEGMENT_ID_DIGITS || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad("does not hold a 20-digit id"));
    }
    let id: u64 = digits
        .parse()
        .map_err(|_| bad("holds an id that overflows u64"))?;
    if id < SEGMENT_ID_FIRST {
        return Err(bad("holds id 0"));
    }
    Ok(Some(id))
}

/// The 24-byte header of segment `id`.
fn encode_segment_header(id: u64) -> Vec<u8> {
    let mut header = Vec::with_capacity(SEGMENT_HEADER_BYTES as usize);
    header.extend_from_slice(&SEGMENT_MAGIC);
    header.extend_from_slice(&SEGMENT_FORMAT_VERSION.to_le_bytes());
    header.extend_from_slice(&id.to_le_bytes());
    let crc = crc32fast::hash(&header);
    header.extend_from_slice(&crc.to_le_bytes());
    assert_eq!(header.len() as u64, SEGMENT_HEADER_BYTES);
    header
}

/// The header of segment `id`, zero-filled to a whole sector.
fn encode_segment_header_sector(id: u64) -> Vec<u8> {
    let mut sector = encode_segment_header(id);
    sector.resize(SEGMENT_RECORDS_OFFSET as usize, 0);
    sector
}

/// A padding record of `total_bytes` bytes, header included.
fn encode_padding_record(total_bytes: usize) -> Vec<u8> {
    assert!(
        total_bytes >= RECORD_HEADER_BYTES,
        "padding smaller than a record header"
    );
    let payload = vec![0u8; total_bytes - RECORD_HEADER_BYTES];
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&[RECORD_TYPE_PADDING]);
    hasher.update(&payload);
    let mut record = Vec::with_capacity(total_bytes);
    record.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    record.extend_from_slice(&hasher.finalize().to_le_bytes());
    record.push(RECORD_TYPE_PADDING);
    record.extend_from_slice(&payload);
    record
}

/// How far ahead of the records a synced segment is filled with zeros.
/// Overwriting blocks that are already allocated and written changes no
/// file system metadata, so a sync of the log writes just the data (an
/// `fdatasync` of a growing file must also write its new length and block
/// allocation). Replay stops at the zeros; rotation cuts them off.
pub(crate) const ZERO_AHEAD_BYTES: u64 = 1024 * 1024;

/// Where the zeros written ahead of records ending at `records_end` end:
/// [`ZERO_AHEAD_BYTES`] further, but not past the segment's size; nothing
/// ahead when syncs are off (no sync to speed up).
fn zero_ahead_end(records_end: u64, segment_bytes_max: u64, sync_enabled: bool) -> u64 {
    if sync_enabled {
        (records_end + ZERO_AHEAD_BYTES)
            .min(segment_bytes_max)
            .max(records_end)
    } else {
        records_end
    }
}

/// `bytes` followed by zeros up to `end` bytes in all.
fn with_zeros(mut bytes: Vec<u8>, end: u64) -> Vec<u8> {
    let end = usize::try_from(end).expect("segments fit in memory");
    if end > bytes.len() {
        bytes.resize(end, 0);
    }
    bytes
}

/// Bytes read at a time when checking that a segment ends in zeros.
const ZERO_CHECK_BYTES: usize = 64 * 1024;

/// Whether the bytes from `offset` to `file_len` are all zero: the unused,
/// preallocated end of a segment rather than a torn write.
fn tail_is_zero<F: DiskFile>(file: &F, offset: u64, file_len: u64) -> Result<bool, DiskError> {
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
enum Damage {
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

fn read_bytes<F: DiskFile>(file: &F, offset: u64, len: usize) -> Result<Vec<u8>, DiskError> {
    let mut buf = vec![0_u8; len];
    file.read_at(offset, &mut buf)?;
    Ok(buf)
}

/// Bytes a replay reads from a segment at a time.
const REPLAY_WINDOW_BYTES: usize = 1024 * 1024;

/// Reads a segment front to back for replay through a window of
/// [`REPLAY_WINDOW_BYTES`], so that a segment of small records costs one
/// `read_at` per window rather than two per record.
struct SegmentReader<'f, F> {
    file: &'f F,
    file_len: u64,
    /// File offset of `window[0]`.
    window_start: u64,
    window: Vec<u8>,
}

impl<'f, F: DiskFile> SegmentReader<'f, F> {
    fn new(file: &'f F, file_len: u64) -> SegmentReader<'f, F> {
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
    fn read(&mut self, offset: u64, len: usize) -> Result<Vec<u8>, DiskError> {
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

fn le_u32(bytes: &[u8]) -> u32 {
    u32::from_le_bytes(bytes.try_into().expect("caller passes exactly 4 bytes"))
}

fn le_u64(bytes: &[u8]) -> u64 {
    u64::from_le_bytes(bytes.try_into().expect("caller passes exactly 8 bytes"))
}

/// Checks the header of segment `id`, whose file is `file_len` bytes long.
fn check_segment_header<F: DiskFile>(
    file: &F,
    name: &str,
    id: u64,
    file_len: u64,
) -> Result<(), Damage> {
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
    if version != SEGMENT_FORMAT_VERSION {
        return Err(Damage::Invalid(corruption(format!(
            "unsupported WAL format version {version} (this build reads {SEGMENT_FORMAT_VERSION})"
        ))));
    }
    let header_id = le_u64(&header[12..20]);
    if header_id != id {
        return Err(Damage::Invalid(corruption(format!(
            "header says segment {header_id}, file name says {id}"
        ))));
    }
    Ok(())
}

/// Reads the record at `offset` of a file `file_len` bytes long; returns
/// its type, payload and the offset after it.
fn read_record<F: DiskFile>(
    reader: &mut SegmentReader<'_, F>,
    name: &str,
    offset: u64,
    file_len: u64,
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
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&[record_type]);
    hasher.update(&payload);
    let got = hasher.finalize();
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

/// Reads a batch payload without trusting any length in it.
struct PayloadReader<'a> {
    payload: &'a [u8],
    position: usize,
}

impl<'a> PayloadReader<'a> {
    fn take(&mut self, len: usize) -> Option<&'a [u8]> {
        let end = self.position.checked_add(len)?;
        let bytes = self.payload.get(self.position..end)?;
        self.position = end;
        Some(bytes)
    }

    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|bytes| bytes[0])
    }

    fn u32(&mut self) -> Option<u32> {
        self.take(4).map(le_u32)
    }

    fn u64(&mut self) -> Option<u64> {
        self.take(8).map(le_u64)
    }

    fn bytes(&mut self) -> Option<Vec<u8>> {
        let len = self.u32()?;
        self.take(len as usize).map(<[u8]>::to_vec)
    }
}

/// Decodes a batch payload that starts at `payload_offset` of `file`.
fn decode_batch(
    payload: &[u8],
    file: &str,
    payload_offset: u64,
) -> Result<Vec<WalEntry>, EngineError> {
    let mut reader = PayloadReader {
        payload,
        position: 0,
    };
    let corruption = |position: usize, reason: &str| EngineError::Corruption {
        file: file.to_owned(),
        offset: payload_offset + position as u64,
        reason: format!("batch record {reason}"),
    };
    let count = reader
        .u32()
        .ok_or_else(|| corruption(0, "has no entry count"))?;
    if count == 0 {
        return Err(corruption(0, "has no entries"));
    }
    // No capacity from `count`: it came from disk. Each entry consumes at
    // least one byte, so the loop is bounded by the payload length.
    let mut entries = Vec::new();
    for index in 0..count {
        let start = reader.position;
        let truncated = || corruption(start, &format!("entry {index} of {count} is truncated"));
        let key = reader.bytes().ok_or_else(truncated)?;
        let hlc = reader.u64().ok_or_else(truncated)?;
        let node = reader.u32().ok_or_else(truncated)?;
        let value = match reader.u8().ok_or_else(truncated)? {
            KIND_TOMBSTONE => None,
            KIND_VALUE => Some(reader.bytes().ok_or_else(truncated)?),
            kind => {
                return Err(corruption(
                    start,
                    &format!("entry {index} has unknown kind {kind}"),
                ))
            }
        };
        entries.push((
            key,
            Versioned {
                timestamp: Timestamp { hlc, node },
                value,
            },
        ));
    }
    if reader.position != payload.len() {
        return Err(corruption(
            reader.position,
            "has trailing bytes after its entries",
        ));
    }
    Ok(entries)
}

/// The encoded size of one entry.
pub(crate) fn entry_encoded_bytes(key: &[u8], version: &Versioned) -> usize {
    ENTRY_FIXED_BYTES
        + key.len()
        + version
            .value
            .as_ref()
            .map_or(0, |v| VALUE_LEN_BYTES + v.len())
}

/// The payload size of a batch holding one entry with the largest key and
/// value; `None` if it overflows.
pub(crate) fn single_entry_payload_bytes_max(
    key_bytes_max: usize,
    value_bytes_max: usize,
) -> Option<usize> {
    key_bytes_max
        .checked_add(value_bytes_max)?
        .checked_add(ENTRY_FIXED_BYTES + VALUE_LEN_BYTES)
        .map(batch_payload_bytes)
}

/// The payload size of a batch of entries of `entries_bytes` encoded bytes.
pub(crate) fn batch_payload_bytes(entries_bytes: usize) -> usize {
    BATCH_COUNT_BYTES + entries_bytes
}

/// The size of the record holding `entries`, frame header included.
fn batch_record_bytes(entries: &[(&[u8], &Versioned)]) -> usize {
    let entries_bytes: usize = entries.iter().map(|(k, v)| entry_encoded_bytes(k, v)).sum();
    RECORD_HEADER_BYTES + batch_payload_bytes(entries_bytes)
}

/// Appends a batch as a whole record (frame header and payload) to `out`.
///
/// # Panics
/// If `entries` is empty or too large for a record: callers check first.
fn encode_batch_record_into(out: &mut Vec<u8>, entries: &[(&[u8], &Versioned)]) {
    assert!(!entries.is_empty(), "an empty batch is never logged");
    let record_len = batch_record_bytes(entries);
    let payload_len = record_len - RECORD_HEADER_BYTES;
    assert!(
        payload_len <= RECORD_PAYLOAD_BYTES_MAX as usize,
        "caller bounds the batch size"
    );
    let count = u32::try_from(entries.len()).expect("bounded by the payload size");
    let start = out.len();
    out.reserve(record_len);
    out.extend_from_slice(&[0_u8; 8]); // len and crc, filled in below
    out.push(RECORD_TYPE_BATCH);
    out.extend_from_slice(&count.to_le_bytes());
    for (key, version) in entries {
        let key_len = u32::try_from(key.len()).expect("bounded by the payload size");
        out.extend_from_slice(&key_len.to_le_bytes());
        out.extend_from_slice(key);
        out.extend_from_slice(&version.timestamp.hlc.to_le_bytes());
        out.extend_from_slice(&version.timestamp.node.to_le_bytes());
        match &version.value {
            None => out.push(KIND_TOMBSTONE),
            Some(value) => {
                out.push(KIND_VALUE);
                let value_len = u32::try_from(value.len()).expect("bounded by the payload size");
                out.extend_from_slice(&value_len.to_le_bytes());
                out.extend_from_slice(value);
            }
        }
    }
    assert_eq!(out.len() - start, record_len);
    let crc = crc32fast::hash(&out[start + 8..]);
    let payload_len = u32::try_from(payload_len).expect("checked against the maximum above");
    out[start..start + 4].copy_from_slice(&payload_len.to_le_bytes());
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

/// Encodes a batch as a whole record: frame header and payload.
#[cfg(test)]
fn encode_batch_record(entries: &[(&[u8], &Versioned)]) -> Vec<u8> {
    let mut record = Vec::new();
    encode_batch_record_into(&mut record, entries);
    record
}

/// The write-ahead log of one engine: the open segment and its sync state.
#[derive(Debug)]
pub(crate) struct Wal<D: Disk> {
    /// The disk every segment lives on.
    disk: D,
    /// The segment new records go to.
    segment: D::File,
    /// Its id and name.
    segment_id: u64,
    segment_name: String,
    /// Its length as far as this log wrote it, buffered records included;
    /// the next record goes here.
    segment_len_bytes: u64,
    /// Records appended but not yet written to the file: one `write_at` per
    /// [`WAL_BUFFER_BYTES`] instead of one per record. They are no less
    /// durable than records in the page cache: neither is, before a sync.
    buffer: Vec<u8>,
    /// Bytes of the segment written to the file; `buffer` goes here.
    file_len_bytes: u64,
    /// The file holds records or zeros up to here ([`ZERO_AHEAD_BYTES`]).
    zeroed_end: u64,
    /// Rotate before a record would take the segment past this.
    segment_bytes_max: u64,
    /// Whether syncs reach the disk (`false` under `SyncPolicy::Never`).
    sync_enabled: bool,
    /// Bytes appended to `segment` since its last sync.
    file_unsynced: bool,
    /// `segment` was created since the last `sync_dir`.
    dir_unsynced: bool,
    /// Set by a failed sync or a failed rollback: why the log stopped.
    poisoned: Option<String>,
    /// The oldest segment that may still exist: segments below it were
    /// removed once tables covered them.
    first_segment_id: u64,
}

/// Replays the log on `disk`, handing each record's entries to `apply` in
/// log order, then opens a fresh segment for new records.
///
/// # Errors
/// Corruption outside the torn tail of the last segment, or disk errors.
pub(crate) fn open<D: Disk>(
    disk: D,
    segments_covered: u64,
    segment_bytes_max: u64,
    sync_enabled: bool,
    mut apply: impl FnMut(Vec<WalEntry>),
) -> Result<(Wal<D>, RecoveryReport), EngineError> {
    let mut segments = Vec::new();
    let mut removed_covered = false;
    for name in disk.list()? {
        if let Some(id) = parse_segment_name(&name)? {
            if id <= segments_covered {
                // Fully in tables the manifest names: garbage, left by a
                // crash between the manifest edit and the deletion.
                disk.remove(&name)?;
                removed_covered = true;
            } else {
                segments.push((id, name));
            }
        }
    }
    if removed_covered && sync_enabled {
        disk.sync_dir()?;
    }
    segments.sort();
    if let Some((first, first_name)) = segments.first() {
        // Segment `covered + 1` is created before any later one and is
        // never deleted before the watermark passes it.
        if *first != segments_covered + 1 {
            return Err(EngineError::Corruption {
                file: first_name.clone(),
                offset: 0,
                reason: format!("WAL segment {} is missing", segments_covered + 1),
            });
        }
    }
    for pair in segments.windows(2) {
        let (previous, (next, next_name)) = (pair[0].0, &pair[1]);
        if *next != previous + 1 {
            return Err(EngineError::Corruption {
                file: next_name.clone(),
                offset: 0,
                reason: format!("WAL segment {} is missing", previous + 1),
            });
        }
    }

    let mut report = RecoveryReport::default();
    let mut next_id = segments_covered + SEGMENT_ID_FIRST;
    let first_segment_id = next_id;
    let segments_total = segments.len();
    for (index, (id, name)) in segments.iter().enumerate() {
        let is_last = index + 1 == segments_total;
        report.segments_replayed += 1;
        next_id = id + 1;
        let mut file = disk.open(name)?;
        let file_len = file.len()?;
        let mut offset = 0;
        let mut damage = check_segment_header(&file, name, *id, file_len).err();
        if damage.is_none() {
            offset = SEGMENT_RECORDS_OFFSET;
            let mut reader = SegmentReader::new(&file, file_len);
            while offset < file_len {
                match read_record(&mut reader, name, offset, file_len) {
                    Ok((RECORD_TYPE_PADDING, _, next_offset)) => offset = next_offset,
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
            Some(Damage::Torn(err)) if !is_last => return Err(err),
            Some(Damage::Torn(err)) => err,
        };
        // The end of the last segment: its unused preallocated zeros, or a
        // torn tail (what a crash mid-write leaves). Either way it goes.
        let unused = offset > 0 && tail_is_zero(&file, offset, file_len)?;
        if !unused {
            report.torn_tail = Some(TornTail {
                file: name.clone(),
                offset,
                bytes_dropped: file_len - offset,
                reason: error.to_string(),
            });
        }
        if offset == 0 {
            // The header itself is torn: the segment never held a synced
            // record, as its header is synced no later than its first record.
            drop(file);
            disk.remove(name)?;
            if sync_enabled {
                disk.sync_dir()?;
            }
            next_id = *id;
        } else {
            file.truncate(offset)?;
            // Synced even when syncs are off: this segment is no longer the
            // last, and a segment that is not the last must end with its last
            // record, or the next open would take its zeros for corruption.
            file.sync()?;
        }
    }

    let mut wal = Wal::create_segment(disk, next_id, segment_bytes_max, sync_enabled)?;
    wal.first_segment_id = first_segment_id;
    report.segment_opened = wal.segment_name.clone();
    Ok((wal, report))
}

impl<D: Disk> Wal<D> {
    /// Creates segment `id` with its header and makes it durable, so that
    /// recovery can rely on every earlier segment being complete.
    fn create_segment(
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

    fn check_not_poisoned(&self) -> Result<(), EngineError> {
        match &self.poisoned {
            Some(reason) => Err(EngineError::Poisoned {
                reason: reason.clone(),
            }),
            None => Ok(()),
        }
    }

    /// Records `err` as the reason the log stopped, and returns it.
    fn poison(&mut self, err: DiskError) -> EngineError {
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
    fn make_room(&mut self, record_len: usize) -> Result<(), EngineError> {
        if !self.buffer.is_empty() && self.buffer.len() + record_len > WAL_BUFFER_BYTES {
            self.flush_buffer()?;
        }
        Ok(())
    }

    /// Appends `record` to the segment (through the buffer). On error the
    /// record was not appended; records buffered earlier stay buffered.
    fn write_record(&mut self, record: &[u8]) -> Result<(), EngineError> {
        self.make_room(record.len())?;
        self.buffer.extend_from_slice(record);
        self.segment_len_bytes += record.len() as u64;
        self.file_unsynced = true;
        Ok(())
    }

    /// Writes the buffered records to the segment file, rolling back a
    /// partial write so that the file never ends in a broken record, and
    /// keeping them buffered on failure (a full disk may free up).
    fn flush_buffer(&mut self) -> Result<(), EngineError> {
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
    fn write_buffer(&mut self, synced: bool) -> Result<(), EngineError> {
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
    fn pad_to_sector(&mut self) -> Result<(), EngineError> {
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
    fn rotate(&mut self) -> Result<(), EngineError> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fs_disk::FsDisk;

    fn ts(hlc: u64) -> Timestamp {
        Timestamp { hlc, node: 7 }
    }

    fn put(key: &str, hlc: u64, value: &str) -> WalEntry {
        (
            key.as_bytes().to_vec(),
            Versioned {
                timestamp: ts(hlc),
                value: Some(value.into()),
            },
        )
    }

    fn del(key: &str, hlc: u64) -> WalEntry {
        (
            key.as_bytes().to_vec(),
            Versioned {
                timestamp: ts(hlc),
                value: None,
            },
        )
    }

    fn refs(entries: &[WalEntry]) -> Vec<(&[u8], &Versioned)> {
        entries.iter().map(|(k, v)| (k.as_slice(), v)).collect()
    }

    /// Opens the log on `disk`, returning it and every replayed entry.
    fn replay(
        disk: &FsDisk,
        segment_bytes_max: u64,
    ) -> (Wal<FsDisk>, RecoveryReport, Vec<WalEntry>) {
        let mut seen = Vec::new();
        let (wal, report) = open(disk.clone(), 0, segment_bytes_max, true, |entries| {
            seen.extend(entries);
        })
        .expect("replay");
        (wal, report, seen)
    }

    fn append(wal: &mut Wal<FsDisk>, entries: &[WalEntry]) {
        wal.append_batch(&refs(entries)).expect("append");
    }

    fn temp_disk() -> (tempfile::TempDir, FsDisk) {
        let dir = tempfile::tempdir().expect("tempdir");
        let disk = FsDisk::open(dir.path()).expect("disk");
        (dir, disk)
    }

    fn file_len(disk: &FsDisk, name: &str) -> u64 {
        disk.open(name).expect("open").len().expect("len")
    }

    fn flip_byte(disk: &FsDisk, name: &str, offset: u64) {
        let mut file = disk.open(name).expect("open");
        let mut byte = [0_u8];
        file.read_at(offset, &mut byte).expect("read");
        file.write_at(offset, &[byte[0] ^ 0x40]).expect("write");
    }

    const SEGMENT_BYTES_LARGE: u64 = 1 << 20;

    #[test]
    fn batch_record_round_trips() {
        let entries = vec![
            put("a", 1, "one"),
            del("b", 2),
            put("", 3, ""),
            put("k", u64::MAX, "x"),
        ];
        let record = encode_batch_record(&refs(&entries));
        let payload = &record[RECORD_HEADER_BYTES..];
        assert_eq!(le_u32(&record[0..4]) as usize, payload.len());
        assert_eq!(record[8], RECORD_TYPE_BATCH);
        let decoded = decode_batch(payload, "f", 9).expect("decode");
        assert_eq!(decoded, entries);
    }

    #[test]
    fn decode_rejects_truncated_and_trailing_payloads_without_panicking() {
        let entries = vec![put("key", 1, "value"), del("gone", 2)];
        let record = encode_batch_record(&refs(&entries));
        let payload = &record[RECORD_HEADER_BYTES..];
        for cut in 0..payload.len() {
            assert!(
                decode_batch(&payload[..cut], "f", 0).is_err(),
                "cut at {cut}"
            );
        }
        let mut longer = payload.to_vec();
        longer.push(0);
        assert!(decode_batch(&longer, "f", 0).is_err());
        // A huge count with a tiny payload must fail fast, not allocate.
        let mut huge = u32::MAX.to_le_bytes().to_vec();
        huge.extend_from_slice(&payload[4..]);
        assert!(decode_batch(&huge, "f", 0).is_err());
    }

    #[test]
    fn segment_names_sort_by_id_and_parse_back() {
        assert_eq!(segment_name(1), "wal-00000000000000000001.log");
        assert!(segment_name(9) < segment_name(10));
        assert_eq!(
            parse_segment_name(&segment_name(42)).expect("parse"),
            Some(42)
        );
        assert_eq!(parse_segment_name("manifest").expect("parse"), None);
        assert!(parse_segment_name("wal-12.log").is_err());
        assert!(parse_segment_name(&segment_name(0)).is_err());
    }

    #[test]
    fn zeros_ahead_are_the_unused_end_not_a_torn_tail_and_rotation_cuts_them() {
        let (_dir, disk) = temp_disk();
        let (mut wal, _, _) = replay(&disk, SEGMENT_BYTES_LARGE);
        append(&mut wal, &[put("a", 1, "x")]);
        wal.sync().expect("sync");
        let synced_end = wal.segment_len_bytes;
        assert!(
            file_len(&disk, &segment_name(1)) > synced_end,
            "zeros are kept ahead of the records"
        );
        assert_eq!(wal.seal_segment().expect("rotate"), 1);
        assert_eq!(
            file_len(&disk, &segment_name(1)),
            synced_end,
            "a segment that is not the last ends with its last record"
        );
        append(&mut wal, &[put("b", 2, "y")]);
        wal.sync().expect("sync");
        drop(wal);
        let (_wal, report, seen) = replay(&disk, SEGMENT_BYTES_LARGE);
        assert_eq!(seen, vec![put("a", 1, "x"), put("b", 2, "y")]);
        assert_eq!(report.torn_tail, None, "zeros are no torn tail");
    }

    #[test]
    fn garbage_after_the_records_is_a_torn_tail_even_among_zeros() {
        let (_dir, disk) = temp_disk();
        let (mut wal, _, _) = replay(&disk, SEGMENT_BYTES_LARGE);
        append(&mut wal, &[put("a", 1, "x")]);
        wal.sync().expect("sync");
        let end = wal.segment_len_bytes;
        drop(wal);
        let mut file = disk.open(&segment_name(1)).expect("open");
        file.write_at(end + 700, b"garbage").expect("write");
        drop(file);
        let (_wal, report, seen) = replay(&disk, SEGMENT_BYTES_LARGE);
        assert_eq!(seen, vec![put("a", 1, "x")]);
        let torn = report.torn_tail.expect("torn");
        assert_eq!(torn.offset, end);
    }

    #[test]
    fn replay_returns_every_appended_batch_in_order() {
        let (_dir, disk) = temp_disk();
        let (mut wal, report, seen) = replay(&disk, SEGMENT_BYTES_LARGE);
        assert!(seen.is_empty());
        assert_eq!(report.segment_opened, segment_name(1));
        let first = vec![put("a", 1, "x"), del("b", 2)];
        let second = vec![put("c", 3, "y")];
        append(&mut wal, &first);
        append(&mut wal, &second);
        wal.sync().expect("sync");
        drop(wal);
        let (_wal, report, seen) = replay(&disk, SEGMENT_BYTES_LARGE);
        assert_eq!(seen, [first, second].concat());
        assert_eq!(report.records_replayed, 2);
        assert_eq!(report.torn_tail, None);
        assert_eq!(report.segment_opened, segment_name(2));
    }

    #[test]
    fn rotation_keeps_segments_under_the_limit_and_replays_all() {
        let (_dir, disk) = temp_disk();
        let segment_bytes_max = 1024;
        let (mut wal, _, _) = replay(&disk, segment_bytes_max);
        let mut written = Vec::new();
        for i in 0..40 {
            let batch = vec![put(&format!("key{i}"), i, "some value bytes")];
            append(&mut wal, &batch);
            written.extend(batch);
        }
        wal.sync().expect("sync");
        drop(wal);
        let names = disk.list().expect("list");
        assert!(names.len() > 3, "expected rotation, got {names:?}");
        for name in &names {
            // The last sync may pad one segment past the limit.
            let padding_max = SECTOR_BYTES + RECORD_HEADER_BYTES as u64;
            assert!(
                file_len(&disk, name) <= segment_bytes_max + padding_max,
                "{name} too long"
            );
        }
        let (_, report, seen) = replay(&disk, segment_bytes_max);
        assert_eq!(seen, written);
        assert_eq!(report.segments_replayed, names.len() as u64);
    }

    #[test]
    fn torn_tail_of_last_segment_is_truncated_and_later_appends_replay() {
        let (_dir, disk) = temp_disk();
        let (mut wal, _, _) = replay(&disk, SEGMENT_BYTES_LARGE);
        let kept = vec![put("a", 1, "kept")];
        append(&mut wal, &kept);
        let intact_len = wal.segment_len_bytes;
        append(&mut wal, &[put("b", 2, "torn away")]);
        wal.sync().expect("sync");
        let name = wal.segment_name().to_owned();
        drop(wal);
        // Tear the second record: keep only part of it.
        disk.open(&name)
            .expect("open")
            .truncate(intact_len + 5)
            .expect("truncate");

        let (mut wal, report, seen) = replay(&disk, SEGMENT_BYTES_LARGE);
        assert_eq!(seen, kept);
        let torn = report.torn_tail.expect("torn tail reported");
        assert_eq!(
            (torn.file.as_str(), torn.offset, torn.bytes_dropped),
            (name.as_str(), intact_len, 5)
        );
        assert_eq!(
            file_len(&disk, &name),
            intact_len,
            "torn tail must be cut off"
        );
        let later = vec![put("c", 3, "after recovery")];
        append(&mut wal, &later);
        wal.sync().expect("sync");
        drop(wal);
        let (_, report, seen) = replay(&disk, SEGMENT_BYTES_LARGE);
        assert_eq!(seen, [kept, later].concat());
        assert_eq!(report.torn_tail, None, "a cut tail stays cut");
    }

    #[test]
    fn checksum_mismatch_in_last_segment_ends_replay_there() {
        let (_dir, disk) = temp_disk();
        let (mut wal, _, _) = replay(&disk, SEGMENT_BYTES_LARGE);
        append(&mut wal, &[put("a", 1, "x")]);
        let bad_offset = wal.segment_len_bytes;
        append(&mut wal, &[put("b", 2, "y")]);
        append(&mut wal, &[put("c", 3, "z")]);
        wal.sync().expect("sync");
        let name = wal.segment_name().to_owned();
        drop(wal);
        flip_byte(&disk, &name, bad_offset + RECORD_HEADER_BYTES as u64 + 6);
        let (_, report, seen) = replay(&disk, SEGMENT_BYTES_LARGE);
        assert_eq!(seen, vec![put("a", 1, "x")]);
        let torn = report.torn_tail.expect("torn tail");
        assert_eq!(torn.offset, bad_offset);
        assert!(torn.reason.contains("checksum mismatch"), "{}", torn.reason);
    }

    #[test]
    fn corruption_in_a_non_last_segment_names_file_and_offset() {
        let (_dir, disk) = temp_disk();
        let (mut wal, _, _) = replay(&disk, SEGMENT_BYTES_LARGE);
        append(&mut wal, &[put("a", 1, "x")]);
        let bad_offset = wal.segment_len_bytes;
        append(&mut wal, &[put("b", 2, "y")]);
        wal.sync().expect("sync");
        let name = wal.segment_name().to_owned();
        drop(wal);
        // Reopening starts segment 2, so segment 1 is no longer the last.
        drop(replay(&disk, SEGMENT_BYTES_LARGE));
        let len_before = file_len(&disk, &name);
        flip_byte(&disk, &name, bad_offset + RECORD_HEADER_BYTES as u64 + 2);
        let err = open(disk.clone(), 0, SEGMENT_BYTES_LARGE, true, |_| {}).expect_err("corrupt");
        match &err {
            EngineError::ChecksumMismatch {
                file,
                offset,
                expected,
                got,
            } => {
                assert_eq!((file.as_str(), *offset), (name.as_str(), bad_offset));
                assert_ne!(expected, got);
            }
            other => panic!("expected a checksum mismatch, got {other:?}"),
        }
        assert!(err.to_string().contains(&name), "{err}");
        assert_eq!(
            file_len(&disk, &name),
            len_before,
            "corruption must not be truncated away"
        );
    }

    #[test]
    fn short_non_last_segment_is_corruption_not_a_torn_tail() {
        let (_dir, disk) = temp_disk();
        let (mut wal, _, _) = replay(&disk, SEGMENT_BYTES_LARGE);
        append(&mut wal, &[put("a", 1, "x")]);
        wal.sync().expect("sync");
        let name = wal.segment_name().to_owned();
        drop(wal);
        drop(replay(&disk, SEGMENT_BYTES_LARGE));
        disk.open(&name)
            .expect("open")
            .truncate(SEGMENT_RECORDS_OFFSET + 1)
            .expect("truncate");
        match open(disk.clone(), 0, SEGMENT_BYTES_LARGE, true, |_| {}) {
            Err(EngineError::Corruption { file, offset, .. }) => {
                assert_eq!((file, offset), (name, SEGMENT_RECORDS_OFFSET));
            }
            other => panic!("expected corruption, got {other:?}"),
        }
    }

    #[test]
    fn a_sync_ends_on_a_sector_boundary_and_padding_replays_as_nothing() {
        let (_dir, disk) = temp_disk();
        let (mut wal, _, _) = replay(&disk, SEGMENT_BYTES_LARGE);
        let mut written = Vec::new();
        for i in 0..30 {
            let batch = vec![put(&format!("k{i}"), i + 1, &"v".repeat(i as usize * 7))];
            append(&mut wal, &batch);
            written.extend(batch);
            wal.sync().expect("sync");
            assert_eq!(wal.segment_len_bytes % SECTOR_BYTES, 0, "after sync {i}");
        }
        let name = wal.segment_name().to_owned();
        drop(wal);
        assert_eq!(file_len(&disk, &name) % SECTOR_BYTES, 0);
        let (_, report, seen) = replay(&disk, SEGMENT_BYTES_LARGE);
        assert_eq!(seen, written);
        assert_eq!(report.records_replayed, 30);
        assert_eq!(report.torn_tail, None);
    }

    #[test]
    fn garbage_length_is_bounded_not_allocated() {
        let (_dir, disk) = temp_disk();
        let (mut wal, _, _) = replay(&disk, SEGMENT_BYTES_LARGE);
        append(&mut wal, &[put("a", 1, "x")]);
        wal.sync().expect("sync");
        let bad_offset = wal.segment_len_bytes;
        wal.segment
            .write_at(bad_offset, &u32::MAX.to_le_bytes())
            .expect("write");
        wal.segment
            .write_at(bad_offset + 4, &[0xAB; 40])
            .expect("write");
        wal.segment.sync().expect("sync");
        drop(wal);
        let (_, report, seen) = replay(&disk, SEGMENT_BYTES_LARGE);
        assert_eq!(seen, vec![put("a", 1, "x")]);
        let torn = report.torn_tail.expect("torn");
        assert_eq!(torn.offset, bad_offset);
        assert!(
            torn.reason.contains("exceeds the maximum"),
            "{}",
            torn.reason
        );
    }

    #[test]
    fn torn_header_of_last_segment_removes_it() {
        let (_dir, disk) = temp_disk();
        let (mut wal, _, _) = replay(&disk, SEGMENT_BYTES_LARGE);
        append(&mut wal, &[put("a", 1, "x")]);
        wal.sync().expect("sync");
        assert_eq!(wal.seal_segment().expect("rotate"), 1);
        drop(wal);
        // A crash while segment 2 was being created left part of its header.
        let name2 = segment_name(2);
        let mut torn = disk.open(&name2).expect("open");
        torn.truncate(10).expect("truncate");
        drop(torn);
        let (_, report, seen) = replay(&disk, SEGMENT_BYTES_LARGE);
        assert_eq!(seen, vec![put("a", 1, "x")]);
        assert_eq!(report.torn_tail.expect("torn").file, name2);
        assert_eq!(
            report.segment_opened, name2,
            "the removed id is reused: no gap"
        );
    }

    #[test]
    fn missing_middle_segment_is_corruption() {
        let (_dir, disk) = temp_disk();
        for _ in 0..3 {
            drop(replay(&disk, SEGMENT_BYTES_LARGE));
        }
        disk.remove(&segment_name(2)).expect("remove");
        match open(disk.clone(), 0, SEGMENT_BYTES_LARGE, true, |_| {}) {
            Err(EngineError::Corruption { file, reason, .. }) => {
                assert_eq!(file, segment_name(3));
                assert!(reason.contains("segment 2 is missing"), "{reason}");
            }
            other => panic!("expected corruption, got {other:?}"),
        }
    }

    #[test]
    fn unsupported_format_version_is_corruption_even_in_last_segment() {
        let (_dir, disk) = temp_disk();
        let (wal, _, _) = replay(&disk, SEGMENT_BYTES_LARGE);
        drop(wal);
        let mut header = encode_segment_header(1);
        header[8] = 99;
        let crc = crc32fast::hash(&header[0..20]);
        header[20..24].copy_from_slice(&crc.to_le_bytes());
        disk.open(&segment_name(1))
            .expect("open")
            .write_at(0, &header)
            .expect("write");
        match open(disk.clone(), 0, SEGMENT_BYTES_LARGE, true, |_| {}) {
            Err(EngineError::Corruption { reason, .. }) => {
                assert!(reason.contains("format version 99"), "{reason}");
            }
            other => panic!("expected corruption, got {other:?}"),
        }
    }

    #[test]
    fn valid_record_of_unknown_type_is_corruption_even_in_last_segment() {
        let (_dir, disk) = temp_disk();
        let (mut wal, _, _) = replay(&disk, SEGMENT_BYTES_LARGE);
        let offset = wal.segment_len_bytes;
        let mut record = vec![0_u8; 9];
        record[0..4].copy_from_slice(&0_u32.to_le_bytes());
        record[8] = 200;
        let crc = crc32fast::hash(&[200]);
        record[4..8].copy_from_slice(&crc.to_le_bytes());
        wal.segment.write_at(offset, &record).expect("write");
        drop(wal);
        match open(disk.clone(), 0, SEGMENT_BYTES_LARGE, true, |_| {}) {
            Err(EngineError::Corruption {
                offset: got,
                reason,
                ..
            }) => {
                assert_eq!(got, offset);
                assert!(reason.contains("unknown WAL record type 200"), "{reason}");
            }
            other => panic!("expected corruption, got {other:?}"),
        }
    }
}
