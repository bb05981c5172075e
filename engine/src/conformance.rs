//! The [`Disk`] contract as a test suite, run against every implementation.
//!
//! Each `check_*` function takes a fresh, empty disk and panics with a
//! message naming the broken rule if the disk breaks it. [`run_all`] runs
//! every check, each on its own fresh disk. The suite covers what a healthy
//! disk must do; what a disk may do after a crash is each fake's business
//! and is tested next to it.
//!
//! This module is library code (not `#[cfg(test)]`) so that other crates can
//! run it against their disks, the simulator's first.

use crate::disk::{Disk, DiskError, DiskFile};

/// A named check of the suite.
type Check<D> = (&'static str, fn(&D));

/// Runs every check, each on a disk made by `fresh`, which must return an
/// empty disk each time.
///
/// # Panics
/// If the disk breaks the contract; the message names the rule.
pub fn run_all<D: Disk>(mut fresh: impl FnMut() -> D) {
    let checks: [Check<D>; 19] = [
        ("fresh_disk_is_empty", check_fresh_disk_is_empty),
        (
            "create_then_list_is_sorted",
            check_create_then_list_is_sorted,
        ),
        (
            "create_existing_is_already_exists",
            check_create_existing_is_already_exists,
        ),
        ("missing_file_is_not_found", check_missing_file_is_not_found),
        (
            "invalid_names_are_rejected",
            check_invalid_names_are_rejected,
        ),
        (
            "write_then_read_round_trips",
            check_write_then_read_round_trips,
        ),
        (
            "data_is_shared_between_handles",
            check_data_is_shared_between_handles,
        ),
        (
            "read_past_end_is_short_read",
            check_read_past_end_is_short_read,
        ),
        ("write_past_end_zero_fills", check_write_past_end_zero_fills),
        ("append_returns_offset", check_append_returns_offset),
        ("truncate_sets_length", check_truncate_sets_length),
        ("rename_replaces_target", check_rename_replaces_target),
        (
            "open_handle_survives_rename",
            check_open_handle_survives_rename,
        ),
        ("remove_deletes_file", check_remove_deletes_file),
        (
            "sync_succeeds_on_healthy_disk",
            check_sync_succeeds_on_healthy_disk,
        ),
        (
            "synced_write_of_whole_sectors_reads_back",
            check_synced_write_of_whole_sectors_reads_back,
        ),
        (
            "synced_write_of_any_shape_reads_back",
            check_synced_write_of_any_shape_reads_back,
        ),
        (
            "synced_write_after_buffered_write_keeps_both",
            check_synced_write_after_buffered_write_keeps_both,
        ),
        (
            "synced_write_past_end_extends",
            check_synced_write_past_end_extends,
        ),
    ];
    for (name, check) in checks {
        let disk = fresh();
        // A failing check panics with its own message; the name says which.
        eprintln!("disk conformance: {name}");
        check(&disk);
    }
}

/// Unwraps `result` or panics naming the step and the error.
fn ok<T>(step: &str, result: Result<T, DiskError>) -> T {
    match result {
        Ok(value) => value,
        Err(err) => panic!("disk conformance: {step}: unexpected error: {err}"),
    }
}

fn read_all<F: DiskFile>(file: &F, step: &str) -> Vec<u8> {
    let len = ok(step, file.len());
    let len = usize::try_from(len).expect("test files are small");
    let mut buf = vec![0_u8; len];
    ok(step, file.read_at(0, &mut buf));
    buf
}

/// A fresh disk lists no files.
pub fn check_fresh_disk_is_empty<D: Disk>(disk: &D) {
    assert_eq!(
        ok("list", disk.list()),
        Vec::<String>::new(),
        "a fresh disk must be empty"
    );
    assert!(
        !ok("exists", disk.exists("a")),
        "a fresh disk holds no file `a`"
    );
}

/// `create` makes an empty file that `list` reports, sorted, and `exists`
/// and `open` find.
pub fn check_create_then_list_is_sorted<D: Disk>(disk: &D) {
    for name in ["m", "b", "z.log", "a-1", "A"] {
        let file = ok("create", disk.create(name));
        assert_eq!(ok("len", file.len()), 0, "a created file must be empty");
        assert!(
            ok("is_empty", file.is_empty()),
            "a created file must be empty"
        );
    }
    assert_eq!(
        ok("list", disk.list()),
        vec!["A", "a-1", "b", "m", "z.log"],
        "list must return every file, sorted by name"
    );
    assert!(
        ok("exists", disk.exists("m")),
        "exists must find a created file"
    );
    assert!(
        !ok("exists", disk.exists("n")),
        "exists must not find a missing file"
    );
    let file = ok("open", disk.open("m"));
    assert_eq!(
        ok("len", file.len()),
        0,
        "an opened empty file must be empty"
    );
}

/// `create` of an existing name fails and leaves the file alone.
pub fn check_create_existing_is_already_exists<D: Disk>(disk: &D) {
    let mut file = ok("create", disk.create("f"));
    ok("append", file.append(b"keep"));
    match disk.create("f") {
        Err(DiskError::AlreadyExists { name }) => assert_eq!(name, "f", "error must name the file"),
        other => panic!("disk conformance: create of an existing file gave {other:?}"),
    }
    let reopened = ok("open", disk.open("f"));
    assert_eq!(
        read_all(&reopened, "read"),
        b"keep",
        "a failed create must not truncate"
    );
}

/// `open`, `rename` and `remove` of a missing file are `NotFound`.
pub fn check_missing_file_is_not_found<D: Disk>(disk: &D) {
    let not_found = |what: &str, result: Result<(), DiskError>| match result {
        Err(DiskError::NotFound { name }) => {
            assert_eq!(
                name, "missing",
                "{what}: NotFound must name the missing file"
            );
        }
        other => panic!("disk conformance: {what} of a missing file gave {other:?}"),
    };
    not_found("open", disk.open("missing").map(|_| ()));
    not_found("rename", disk.rename("missing", "other"));
    not_found("remove", disk.remove("missing"));
    assert!(
        !ok("exists", disk.exists("other")),
        "a failed rename must not create its target"
    );
}

/// Names that are not plain file names are rejected by every operation.
pub fn check_invalid_names_are_rejected<D: Disk>(disk: &D) {
    ok("create", disk.create("good"));
    for bad in ["", ".", "..", "a/b", "/abs", "a\\b", "nul\0"] {
        let invalid = |what: &str, result: Result<(), DiskError>| match result {
            Err(DiskError::InvalidName { name }) => {
                assert_eq!(name, bad, "{what}: InvalidName must carry the name");
            }
            other => panic!("disk conformance: {what}({bad:?}) gave {other:?}"),
        };
        invalid("create", disk.create(bad).map(|_| ()));
        invalid("open", disk.open(bad).map(|_| ()));
        invalid("rename from", disk.rename(bad, "good"));
        invalid("rename to", disk.rename("good", bad));
        invalid("remove", disk.remove(bad));
    }
    assert_eq!(
        ok("list", disk.list()),
        vec!["good"],
        "rejected names must change nothing"
    );
}

/// Bytes written at an offset read back the same, overwrites included.
pub fn check_write_then_read_round_trips<D: Disk>(disk: &D) {
    let mut file = ok("create", disk.create("f"));
    ok("write_at", file.write_at(0, b"hello world"));
    ok("write_at", file.write_at(6, b"WORLD"));
    assert_eq!(
        ok("len", file.len()),
        11,
        "an overwrite must not change the length"
    );
    let mut buf = [0_u8; 5];
    ok("read_at", file.read_at(6, &mut buf));
    assert_eq!(&buf, b"WORLD", "read_at must return the latest write");
    assert_eq!(
        read_all(&file, "read"),
        b"hello WORLD",
        "whole file must read back"
    );
    let mut empty = [0_u8; 0];
    ok(
        "read_at of zero bytes at the end",
        file.read_at(11, &mut empty),
    );
    ok("write_at of zero bytes", file.write_at(11, b""));
    assert_eq!(
        ok("len", file.len()),
        11,
        "an empty write must not change the length"
    );
}

/// Two handles on one file see each other's writes, and a file created,
/// written and dropped reads back through `open`.
pub fn check_data_is_shared_between_handles<D: Disk>(disk: &D) {
    {
        let mut file = ok("create", disk.create("f"));
        ok("append", file.append(b"abc"));
    }
    let mut first = ok("open", disk.open("f"));
    let second = ok("open", disk.open("f"));
    assert_eq!(
        read_all(&second, "read"),
        b"abc",
        "open must see earlier writes"
    );
    ok("append", first.append(b"def"));
    assert_eq!(
        read_all(&second, "read"),
        b"abcdef",
        "handles must share one file"
    );
}

/// A read that passes the end fails with `ShortRead` carrying its numbers.
pub fn check_read_past_end_is_short_read<D: Disk>(disk: &D) {
    let mut file = ok("create", disk.create("f"));
    ok("append", file.append(b"0123456789"));
    for (offset, len) in [(8_u64, 4_usize), (10, 1), (100, 3)] {
        let mut buf = vec![0_u8; len];
        match file.read_at(offset, &mut buf) {
            Err(DiskError::ShortRead {
                name,
                offset: got_offset,
                len: got_len,
                file_len,
            }) => {
                assert_eq!(name, "f", "ShortRead must name the file");
                assert_eq!(got_offset, offset, "ShortRead must carry the offset");
                assert_eq!(got_len, len as u64, "ShortRead must carry the length");
                assert_eq!(file_len, 10, "ShortRead must carry the file length");
            }
            other => panic!("disk conformance: read of {len} at {offset} of 10 gave {other:?}"),
        }
    }
}

/// A write past the end extends the file with zeros before it.
pub fn check_write_past_end_zero_fills<D: Disk>(disk: &D) {
    let mut file = ok("create", disk.create("f"));
    ok("append", file.append(b"ab"));
    ok("write_at", file.write_at(5, b"cd"));
    assert_eq!(
        ok("len", file.len()),
        7,
        "write past the end must extend the file"
    );
    assert_eq!(
        read_all(&file, "read"),
        b"ab\0\0\0cd",
        "the gap must read as zeros"
    );
}

/// `append` writes at the end and returns where it wrote.
pub fn check_append_returns_offset<D: Disk>(disk: &D) {
    let mut file = ok("create", disk.create("f"));
    assert_eq!(
        ok("append", file.append(b"abc")),
        0,
        "first append starts at 0"
    );
    assert_eq!(
        ok("append", file.append(b"")),
        3,
        "an empty append returns the end"
    );
    assert_eq!(
        ok("append", file.append(b"defg")),
        3,
        "append starts at the old end"
    );
    assert_eq!(ok("len", file.len()), 7, "append must grow the file");
    assert_eq!(
        read_all(&file, "read"),
        b"abcdefg",
        "appends must read back in order"
    );
}

/// `truncate` shrinks (dropping bytes) and grows (with zeros).
pub fn check_truncate_sets_length<D: Disk>(disk: &D) {
    let mut file = ok("create", disk.create("f"));
    ok("append", file.append(b"abcdef"));
    ok("truncate", file.truncate(2));
    assert_eq!(ok("len", file.len()), 2, "truncate must shrink the file");
    assert_eq!(
        ok("append", file.append(b"XY")),
        2,
        "append after truncate starts at the end"
    );
    assert_eq!(
        read_all(&file, "read"),
        b"abXY",
        "dropped bytes must not come back"
    );
    ok("truncate", file.truncate(6));
    assert_eq!(
        read_all(&file, "read"),
        b"abXY\0\0",
        "growing truncate must zero-fill"
    );
    ok("truncate", file.truncate(0));
    assert!(
        ok("is_empty", file.is_empty()),
        "truncate to 0 must empty the file"
    );
}

/// `rename` moves a file, replacing any file of the target name.
pub fn check_rename_replaces_target<D: Disk>(disk: &D) {
    let mut from = ok("create", disk.create("from"));
    ok("append", from.append(b"new"));
    let mut to = ok("create", disk.create("to"));
    ok("append", to.append(b"old contents"));
    ok("rename", disk.rename("from", "to"));
    assert_eq!(
        ok("list", disk.list()),
        vec!["to"],
        "rename must remove the source name"
    );
    let renamed = ok("open", disk.open("to"));
    assert_eq!(
        read_all(&renamed, "read"),
        b"new",
        "rename must replace the target"
    );
    ok("rename", disk.rename("to", "fresh"));
    assert_eq!(
        ok("list", disk.list()),
        vec!["fresh"],
        "rename to a new name must move"
    );
}

/// An open handle keeps referring to its file after the file is renamed.
pub fn check_open_handle_survives_rename<D: Disk>(disk: &D) {
    let mut file = ok("create", disk.create("a"));
    ok("append", file.append(b"one"));
    ok("rename", disk.rename("a", "b"));
    ok("append", file.append(b"two"));
    ok("sync", file.sync());
    let renamed = ok("open", disk.open("b"));
    assert_eq!(
        read_all(&renamed, "read"),
        b"onetwo",
        "a handle must follow its file"
    );
}

/// `remove` deletes the file; the name can be created afresh.
pub fn check_remove_deletes_file<D: Disk>(disk: &D) {
    let mut file = ok("create", disk.create("f"));
    ok("append", file.append(b"x"));
    drop(file);
    ok("create", disk.create("g"));
    ok("remove", disk.remove("f"));
    assert_eq!(
        ok("list", disk.list()),
        vec!["g"],
        "remove must drop the name"
    );
    assert!(
        !ok("exists", disk.exists("f")),
        "a removed file must not exist"
    );
    match disk.open("f") {
        Err(DiskError::NotFound { .. }) => {}
        other => panic!("disk conformance: open of a removed file gave {other:?}"),
    }
    let again = ok("create", disk.create("f"));
    assert!(
        ok("is_empty", again.is_empty()),
        "a re-created file must be empty"
    );
}

/// `sync` and `sync_dir` succeed on a healthy disk and change no contents.
pub fn check_sync_succeeds_on_healthy_disk<D: Disk>(disk: &D) {
    let mut file = ok("create", disk.create("f"));
    ok("sync of an empty file", file.sync());
    ok("append", file.append(b"durable"));
    ok("sync", file.sync());
    ok("sync_dir", disk.sync_dir());
    ok("sync_dir again", disk.sync_dir());
    assert_eq!(
        read_all(&file, "read"),
        b"durable",
        "sync must not change contents"
    );
    assert_eq!(
        ok("list", disk.list()),
        vec!["f"],
        "sync_dir must not change the listing"
    );
}

/// `len` bytes of a pattern that differs per `seed` and per position, so a
/// misplaced or stale sector shows.
fn pattern(seed: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i % 251) as u8 ^ seed.wrapping_mul(37))
        .collect()
}

/// `write_synced_at` of whole 512-byte sectors at a sector offset writes
/// them: over earlier bytes that were read (and may be cached) before, and
/// again over its own.
pub fn check_synced_write_of_whole_sectors_reads_back<D: Disk>(disk: &D) {
    let mut file = ok("create", disk.create("f"));
    ok("write_at", file.write_at(0, &pattern(1, 4096)));
    ok("sync", file.sync());
    assert_eq!(read_all(&file, "read"), pattern(1, 4096), "setup");
    ok(
        "write_synced_at",
        file.write_synced_at(1024, &pattern(2, 1024)),
    );
    let mut expected = pattern(1, 4096);
    expected[1024..2048].copy_from_slice(&pattern(2, 1024));
    assert_eq!(
        ok("len", file.len()),
        4096,
        "an overwrite must not change the length"
    );
    assert_eq!(
        read_all(&file, "read"),
        expected,
        "a synced write must read back, the bytes around it unchanged"
    );
    ok(
        "write_synced_at",
        file.write_synced_at(1536, &pattern(3, 512)),
    );
    expected[1536..2048].copy_from_slice(&pattern(3, 512));
    assert_eq!(
        read_all(&file, "read"),
        expected,
        "a second synced write must read back"
    );
    let reopened = ok("open", disk.open("f"));
    assert_eq!(
        read_all(&reopened, "read"),
        expected,
        "another handle must see synced writes"
    );
}

/// `write_synced_at` at any offset and of any length writes it.
pub fn check_synced_write_of_any_shape_reads_back<D: Disk>(disk: &D) {
    let mut file = ok("create", disk.create("f"));
    ok("write_synced_at", file.write_synced_at(0, &pattern(1, 700)));
    ok(
        "write_synced_at",
        file.write_synced_at(100, &pattern(2, 512)),
    );
    ok(
        "write_synced_at",
        file.write_synced_at(512, &pattern(3, 100)),
    );
    ok("write_synced_at of nothing", file.write_synced_at(700, b""));
    let mut expected = pattern(1, 700);
    expected[100..612].copy_from_slice(&pattern(2, 512));
    expected[512..612].copy_from_slice(&pattern(3, 100));
    assert_eq!(ok("len", file.len()), 700, "length after synced writes");
    assert_eq!(
        read_all(&file, "read"),
        expected,
        "misaligned synced writes must read back"
    );
}

/// A `write_synced_at` after a plain write leaves both in place, and after
/// a truncate leaves the truncated length.
pub fn check_synced_write_after_buffered_write_keeps_both<D: Disk>(disk: &D) {
    let mut file = ok("create", disk.create("f"));
    ok("write_at", file.write_at(0, &pattern(1, 2048)));
    ok("sync", file.sync());
    ok("write_at", file.write_at(0, &pattern(2, 512)));
    ok(
        "write_synced_at",
        file.write_synced_at(1024, &pattern(3, 512)),
    );
    let mut expected = pattern(1, 2048);
    expected[..512].copy_from_slice(&pattern(2, 512));
    expected[1024..1536].copy_from_slice(&pattern(3, 512));
    assert_eq!(
        read_all(&file, "read"),
        expected,
        "the plain write and the synced one must both read back"
    );
    ok("truncate", file.truncate(1024));
    ok(
        "write_synced_at",
        file.write_synced_at(512, &pattern(4, 512)),
    );
    expected.truncate(1024);
    expected[512..].copy_from_slice(&pattern(4, 512));
    assert_eq!(
        ok("len", file.len()),
        1024,
        "a truncate before a synced write must hold"
    );
    assert_eq!(
        read_all(&file, "read"),
        expected,
        "a synced write after a truncate must read back"
    );
}

/// A `write_synced_at` past the end extends the file, zeros in the gap;
/// a later plain append starts at the new end.
pub fn check_synced_write_past_end_extends<D: Disk>(disk: &D) {
    let mut file = ok("create", disk.create("f"));
    ok("append", file.append(&pattern(1, 512)));
    ok("sync", file.sync());
    ok(
        "write_synced_at",
        file.write_synced_at(1024, &pattern(2, 1024)),
    );
    assert_eq!(
        ok("len", file.len()),
        2048,
        "a synced write past the end must extend the file"
    );
    let mut expected = pattern(1, 512);
    expected.resize(1024, 0);
    expected.extend_from_slice(&pattern(2, 1024));
    assert_eq!(
        read_all(&file, "read"),
        expected,
        "the gap must read as zeros"
    );
    assert_eq!(
        ok("append", file.append(b"tail")),
        2048,
        "an append after a synced write starts at its end"
    );
    ok(
        "write_synced_at",
        file.write_synced_at(2052, &pattern(3, 10)),
    );
    assert_eq!(
        ok("len", file.len()),
        2062,
        "a misaligned synced write at the end must extend the file"
    );
}
