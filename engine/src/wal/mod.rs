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
//!   payload len u32 LE | crc32 u32 LE | type u8 | payload (len bytes)
//! ```
//!
//! In format 3 the record's CRC covers `segment id u64 LE ++ record offset
//! u64 LE ++ type byte ++ payload`: a record written at the wrong offset or
//! into another segment (a misdirected write) fails its check where it
//! landed. Formats 1 and 2 (still read) cover only the type byte and the
//! payload, so they cannot detect a misdirected record.
//!
//! A sync first ends the segment on a sector boundary: a crash may garble a
//! whole sector being written, and synced bytes must never share a sector
//! with later writes. From format 2 on the last 32 bytes before that boundary are
//! a [`RECORD_TYPE_SYNC`] record saying how much of the segment earlier
//! syncs had made durable (see `replay.rs`), with a [`RECORD_TYPE_PADDING`]
//! record (zero payload, skipped by replay) filling any gap before it;
//! format 1 (still read) pads with a padding record alone. The other record
//! type is [`RECORD_TYPE_BATCH`], whose payload is
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
//! - Every segment's header is synced before its first record.
//! - The last segment may end in a torn tail after a crash, but only after
//!   the last point a sync is known to have completed: sync records found
//!   anywhere in the segment, before or after the damage, prove how far
//!   syncs got. Damage before that point is corruption, refused with file
//!   and offset; damage after it is a torn tail, cut off and reported (how
//!   many bytes). A clean close certifies the last sync with one more sync
//!   record, so after a clean stop no damage passes for a torn tail.
//! - A record whose checksum matches but whose payload does not parse is
//!   never a torn write: it is reported as corruption wherever it is.
//! - A failed append is rolled back by truncating to the previous end, so no
//!   later record follows a partial one; if the rollback fails, or a sync
//!   fails, the log is poisoned and refuses every further write and sync.
//! - A sync writes the buffered records with one
//!   [`DiskFile::write_synced_at`] (a write and a sync in one, which the
//!   file system disk does in a single direct write); its failure for any
//!   reason but a full disk poisons the log as a failed sync does. A full
//!   disk keeps the records buffered: the log refuses further appends (they
//!   could not be made durable either) until a retried sync gets them out.
//!
//! [`DiskFile::write_synced_at`]: crate::disk::DiskFile::write_synced_at

mod record;
mod replay;
mod segment;
#[cfg(test)]
mod tests;
mod writer;

pub(crate) use record::{batch_payload_bytes, entry_encoded_bytes, single_entry_payload_bytes_max};
#[cfg(test)]
pub(crate) use replay::open;
pub(crate) use replay::{is_missing_segment, recover, PlantedRecoveryBugs, WalRecovery};
pub(crate) use segment::is_segment_name;
pub(crate) use writer::Wal;

use crate::types::{Timestamp, Versioned};

/// First bytes of every segment.
pub(super) const SEGMENT_MAGIC: [u8; 8] = *b"ENIGMWAL";
/// Version of the layout above; bumped on any incompatible change.
pub(super) const SEGMENT_FORMAT_VERSION: u32 = 3;
/// The first format whose record checksums cover the record's place
/// (segment id and offset), so a record written at the wrong offset or
/// into another segment fails its check; formats 1 and 2 (still read)
/// cannot tell such a record from one written where it lies.
pub(super) const SEGMENT_FORMAT_VERSION_PLACED: u32 = 3;
/// The format before sync records, still read: without them, damage
/// anywhere in the last segment can only be taken for a torn tail.
pub(super) const SEGMENT_FORMAT_VERSION_UNMARKED: u32 = 1;
/// Size of the segment header.
pub(crate) const SEGMENT_HEADER_BYTES: u64 = 24;
/// Size of a record's frame before its payload: len, crc, type.
pub(super) const RECORD_HEADER_BYTES: usize = 9;
/// Largest payload a record may have. Bounds the allocation a length read
/// from disk can cause, and so the largest batch.
pub(crate) const RECORD_PAYLOAD_BYTES_MAX: u32 = 64 * 1024 * 1024;
/// Record type of a batch of writes.
pub(crate) const RECORD_TYPE_BATCH: u8 = 1;
/// Record type of filler that ends a synced stretch on a sector boundary.
pub(crate) const RECORD_TYPE_PADDING: u8 = 2;
/// Record type of the record that ends every sync in format 2: payload
/// `synced len u64 LE | own end offset u64 LE | 7 zero bytes`, always
/// [`SYNC_RECORD_BYTES`] long and ending on a sector boundary, so replay
/// can find it at the end of any sector.
pub(crate) const RECORD_TYPE_SYNC: u8 = 3;
/// Size of a sync record, frame included.
pub(crate) const SYNC_RECORD_BYTES: u64 = 32;
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
pub(super) const BATCH_COUNT_BYTES: usize = 4;
/// Bytes every entry spends besides its key and value: key len, hlc, node
/// and kind.
pub(super) const ENTRY_FIXED_BYTES: usize = 4 + 8 + 4 + 1;
/// Bytes a value entry spends on its value's length.
pub(super) const VALUE_LEN_BYTES: usize = 4;
/// Kind byte of a tombstone entry.
pub(super) const KIND_TOMBSTONE: u8 = 0;
/// Kind byte of a value entry.
pub(super) const KIND_VALUE: u8 = 1;
/// Segment ids start here; `0` never names a segment.
pub(super) const SEGMENT_ID_FIRST: u64 = 1;
/// Segment file names: prefix, zero-padded id, suffix.
pub(super) const SEGMENT_NAME_PREFIX: &str = "wal-";
pub(super) const SEGMENT_NAME_SUFFIX: &str = ".log";
pub(super) const SEGMENT_ID_DIGITS: usize = 20;

/// One write as logged: the key and its new version.
pub(crate) type WalEntry = (Vec<u8>, Versioned);

/// What recovery found, for logs and for tests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// Segments read, the removed torn one included.
    pub segments_replayed: u64,
    /// Segments the tables already covered, removed as garbage (left by a
    /// crash between a flush's manifest edit and their removal).
    pub segments_covered_removed: u64,
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
    /// How far syncs are proven to have reached in that segment (by its
    /// sync records; 0 in a format-1 segment, which has none): the torn
    /// tail lies at or after it, or it would have been corruption.
    pub synced_through: u64,
    /// Why the record was judged torn.
    pub reason: String,
}

pub(super) fn le_u32(bytes: &[u8]) -> u32 {
    u32::from_le_bytes(bytes.try_into().expect("caller passes exactly 4 bytes"))
}

pub(super) fn le_u64(bytes: &[u8]) -> u64 {
    u64::from_le_bytes(bytes.try_into().expect("caller passes exactly 8 bytes"))
}
