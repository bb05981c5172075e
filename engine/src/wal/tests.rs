//! Unit tests of the WAL: framing, rotation, replay, torn tails and
//! corruption.

use super::record::{decode_batch, encode_batch_record, encode_padding_record, encode_sync_record};
use super::segment::{encode_segment_header, parse_segment_name, segment_name};
use super::*;
use crate::disk::{Disk, DiskFile};
use crate::error::EngineError;
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
fn replay(disk: &FsDisk, segment_bytes_max: u64) -> (Wal<FsDisk>, RecoveryReport, Vec<WalEntry>) {
    let mut seen = Vec::new();
    let (wal, report) = open(disk.clone(), 0, segment_bytes_max, true, |entries| {
        seen.extend(entries);
    })
    .expect("replay");
    (wal, report, seen)
}

/// Ends the log as a crash would: buffered records are lost and the last
/// sync is not certified (a clean close certifies it).
fn crash(wal: Wal<FsDisk>) {
    std::mem::forget(wal);
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
    let record = encode_batch_record(&refs(&entries), None);
    let payload = &record[RECORD_HEADER_BYTES..];
    assert_eq!(le_u32(&record[0..4]) as usize, payload.len());
    assert_eq!(record[8], RECORD_TYPE_BATCH);
    let decoded = decode_batch(payload, "f", 9).expect("decode");
    assert_eq!(decoded, entries);
}

#[test]
fn decode_rejects_truncated_and_trailing_payloads_without_panicking() {
    let entries = vec![put("key", 1, "value"), del("gone", 2)];
    let record = encode_batch_record(&refs(&entries), None);
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
    crash(wal);
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
    crash(wal);
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
    crash(wal);
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
    let place = record::RecordPlace {
        segment_id: wal.segment_id,
        offset,
    };
    let crc = record::record_crc(Some(place), 200, &[]);
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

#[test]
fn damage_before_the_last_synced_point_is_corruption_not_a_torn_tail() {
    let (_dir, disk) = temp_disk();
    let (mut wal, _, _) = replay(&disk, SEGMENT_BYTES_LARGE);
    let bad_offset = wal.segment_len_bytes;
    append(&mut wal, &[put("a", 1, "x")]);
    wal.sync().expect("sync");
    append(&mut wal, &[put("b", 2, "y")]);
    wal.sync()
        .expect("the second sync's record vouches for the first");
    let name = wal.segment_name().to_owned();
    crash(wal);
    let len_before = file_len(&disk, &name);
    flip_byte(&disk, &name, bad_offset + RECORD_HEADER_BYTES as u64 + 3);
    let err = open(disk.clone(), 0, SEGMENT_BYTES_LARGE, true, |_| {}).expect_err("corrupt");
    let (file, offset) = err.corruption_site().expect("names a site");
    assert_eq!((file, offset), (name.as_str(), bad_offset), "{err}");
    assert!(err.to_string().contains("last synced point"), "{err}");
    assert_eq!(file_len(&disk, &name), len_before, "nothing cut off");
    assert_eq!(disk.list().expect("list"), vec![name], "nothing created");
}

#[test]
fn after_a_clean_close_damage_in_the_last_sync_is_corruption() {
    let (_dir, disk) = temp_disk();
    let (mut wal, _, _) = replay(&disk, SEGMENT_BYTES_LARGE);
    let bad_offset = wal.segment_len_bytes;
    append(&mut wal, &[put("a", 1, "x")]);
    wal.sync().expect("sync");
    let name = wal.segment_name().to_owned();
    drop(wal);
    flip_byte(&disk, &name, bad_offset + RECORD_HEADER_BYTES as u64 + 3);
    let err = open(disk.clone(), 0, SEGMENT_BYTES_LARGE, true, |_| {}).expect_err("corrupt");
    assert_eq!(err.corruption_site(), Some((name.as_str(), bad_offset)));
}

#[test]
fn a_damaged_header_before_a_sync_record_is_corruption() {
    let (_dir, disk) = temp_disk();
    let (mut wal, _, _) = replay(&disk, SEGMENT_BYTES_LARGE);
    append(&mut wal, &[put("a", 1, "x")]);
    wal.sync().expect("sync");
    let name = wal.segment_name().to_owned();
    crash(wal);
    flip_byte(&disk, &name, 13);
    let err = open(disk.clone(), 0, SEGMENT_BYTES_LARGE, true, |_| {}).expect_err("corrupt");
    assert_eq!(err.corruption_site(), Some((name.as_str(), 0)), "{err}");
    assert!(disk.exists(&name).expect("exists"), "the segment stays");
}

#[test]
fn a_torn_tail_after_the_last_sync_is_cut_and_reported() {
    let (_dir, disk) = temp_disk();
    let (mut wal, _, _) = replay(&disk, SEGMENT_BYTES_LARGE);
    append(&mut wal, &[put("a", 1, "x")]);
    wal.sync().expect("sync");
    let synced_end = wal.segment_len_bytes;
    append(&mut wal, &[put("b", 2, "y")]);
    append(&mut wal, &[put("c", 3, "z")]);
    wal.flush_buffer().expect("written, not synced");
    let name = wal.segment_name().to_owned();
    crash(wal);
    // The crash tore the unsynced record of b: c, intact after it, was
    // never synced either.
    flip_byte(&disk, &name, synced_end + RECORD_HEADER_BYTES as u64 + 3);
    let (_, report, seen) = replay(&disk, SEGMENT_BYTES_LARGE);
    assert_eq!(seen, vec![put("a", 1, "x")]);
    let torn = report.torn_tail.expect("reported");
    assert_eq!(
        (torn.file.as_str(), torn.offset),
        (name.as_str(), synced_end)
    );
    // Only the first sync's own record was written, vouching for the
    // header: the first sync's end is proven by no later sync record.
    assert_eq!(torn.synced_through, SEGMENT_RECORDS_OFFSET);
    assert!(torn.bytes_dropped > 0);
    assert_eq!(file_len(&disk, &name), synced_end, "cut at the damage");
}

#[test]
fn format_1_segments_without_sync_records_still_replay() {
    let (_dir, disk) = temp_disk();
    let mut header = encode_segment_header(1);
    header[8..12].copy_from_slice(&SEGMENT_FORMAT_VERSION_UNMARKED.to_le_bytes());
    let crc = crc32fast::hash(&header[0..20]);
    header[20..24].copy_from_slice(&crc.to_le_bytes());
    header.resize(SEGMENT_RECORDS_OFFSET as usize, 0);
    let entries = [put("a", 1, "x")];
    header.extend_from_slice(&encode_batch_record(&refs(&entries), None));
    let used = header.len() as u64 % SECTOR_BYTES;
    header.extend_from_slice(&encode_padding_record((SECTOR_BYTES - used) as usize, None));
    let mut file = disk.create(&segment_name(1)).expect("create");
    file.write_at(0, &header).expect("write");
    drop(file);
    let (_, report, seen) = replay(&disk, SEGMENT_BYTES_LARGE);
    assert_eq!(seen, entries.to_vec());
    assert_eq!(report.torn_tail, None);
}

#[test]
fn format_2_segments_without_placed_checksums_still_replay() {
    let (_dir, disk) = temp_disk();
    let mut header = encode_segment_header(1);
    header[8..12].copy_from_slice(&2_u32.to_le_bytes());
    let crc = crc32fast::hash(&header[0..20]);
    header[20..24].copy_from_slice(&crc.to_le_bytes());
    header.resize(SEGMENT_RECORDS_OFFSET as usize, 0);
    let entries = [put("a", 1, "x"), del("b", 2)];
    header.extend_from_slice(&encode_batch_record(&refs(&entries), None));
    let used = header.len() as u64 % SECTOR_BYTES;
    let gap = SECTOR_BYTES - used - SYNC_RECORD_BYTES;
    header.extend_from_slice(&encode_padding_record(gap as usize, None));
    let end = header.len() as u64 + SYNC_RECORD_BYTES;
    header.extend_from_slice(&encode_sync_record(SEGMENT_RECORDS_OFFSET, end, None));
    let mut file = disk.create(&segment_name(1)).expect("create");
    file.write_at(0, &header).expect("write");
    drop(file);
    let (_, report, seen) = replay(&disk, SEGMENT_BYTES_LARGE);
    assert_eq!(seen, entries.to_vec());
    assert_eq!(report.torn_tail, None);
}

/// Copies `len` bytes from `from` at `from_offset` over `to` at
/// `to_offset`: a misdirected write of a whole record.
fn copy_bytes(disk: &FsDisk, from: (&str, u64), to: (&str, u64), len: usize) {
    let mut bytes = vec![0_u8; len];
    disk.open(from.0)
        .expect("open")
        .read_at(from.1, &mut bytes)
        .expect("read");
    disk.open(to.0)
        .expect("open")
        .write_at(to.1, &bytes)
        .expect("write");
}

/// Appends records "a" and "b" (one batch each, of one size): their
/// offsets and the length of "b"'s record.
fn two_records(wal: &mut Wal<FsDisk>) -> (u64, u64, usize) {
    let first = wal.segment_len_bytes;
    append(wal, &[put("a", 1, "x")]);
    let second = wal.segment_len_bytes;
    append(wal, &[put("b", 2, "y")]);
    (first, second, (wal.segment_len_bytes - second) as usize)
}

#[test]
fn a_record_copied_to_another_offset_of_a_sealed_segment_is_corruption() {
    let (_dir, disk) = temp_disk();
    let (mut wal, _, _) = replay(&disk, SEGMENT_BYTES_LARGE);
    let (first, second, len) = two_records(&mut wal);
    assert_eq!(second - first, len as u64, "records of the same size");
    wal.sync().expect("sync");
    let name = wal.segment_name().to_owned();
    drop(wal);
    drop(replay(&disk, SEGMENT_BYTES_LARGE));
    // Record "a" written again where "b" was: intact bytes, wrong place.
    copy_bytes(&disk, (&name, first), (&name, second), len);
    let err = open(disk.clone(), 0, SEGMENT_BYTES_LARGE, true, |_| {}).expect_err("misdirected");
    assert!(
        matches!(err, EngineError::ChecksumMismatch { .. }),
        "{err:?}"
    );
    assert_eq!(err.corruption_site(), Some((name.as_str(), second)));
}

#[test]
fn a_record_copied_into_another_segment_is_corruption() {
    let (_dir, disk) = temp_disk();
    let (mut wal, _, _) = replay(&disk, SEGMENT_BYTES_LARGE);
    let offset = wal.segment_len_bytes;
    append(&mut wal, &[put("a", 1, "x")]);
    let len = (wal.segment_len_bytes - offset) as usize;
    wal.sync().expect("sync");
    let first_name = wal.segment_name().to_owned();
    drop(wal);
    let (mut wal, _, _) = replay(&disk, SEGMENT_BYTES_LARGE);
    assert_eq!(wal.segment_len_bytes, offset);
    append(&mut wal, &[put("b", 2, "y")]);
    wal.sync().expect("sync");
    let second_name = wal.segment_name().to_owned();
    drop(wal);
    drop(replay(&disk, SEGMENT_BYTES_LARGE));
    // Segment 2's record lands at the same offset of segment 1.
    copy_bytes(&disk, (&second_name, offset), (&first_name, offset), len);
    let err = open(disk.clone(), 0, SEGMENT_BYTES_LARGE, true, |_| {}).expect_err("misdirected");
    assert_eq!(err.corruption_site(), Some((first_name.as_str(), offset)));
}

#[test]
fn a_misdirected_record_before_the_last_synced_point_is_not_a_torn_tail() {
    let (_dir, disk) = temp_disk();
    let (mut wal, _, _) = replay(&disk, SEGMENT_BYTES_LARGE);
    let (first, second, len) = two_records(&mut wal);
    wal.sync().expect("sync");
    append(&mut wal, &[put("c", 3, "z")]);
    wal.sync()
        .expect("the second sync's record vouches for the first");
    let name = wal.segment_name().to_owned();
    crash(wal);
    copy_bytes(&disk, (&name, first), (&name, second), len);
    let err = open(disk.clone(), 0, SEGMENT_BYTES_LARGE, true, |_| {}).expect_err("corrupt");
    assert_eq!(
        err.corruption_site(),
        Some((name.as_str(), second)),
        "{err}"
    );
    assert!(err.to_string().contains("last synced point"), "{err}");
}
