//! Tests of `SimDisk`: its crash model, its faults, and the engine on it.

use std::collections::BTreeMap;

use enigma_engine::{DiskFile, Engine, EngineError, EngineOptions, Timestamp, Versioned};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::*;

fn rng(seed: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed)
}

fn contents(disk: &SimDisk, name: &str) -> Vec<u8> {
    let file = disk.open(name).expect("open");
    let mut buf = vec![0; file.len().expect("len") as usize];
    file.read_at(0, &mut buf).expect("read");
    buf
}

#[test]
fn sim_disk_passes_the_conformance_suite() {
    enigma_engine::conformance::run_all(|| SimDisk::new(SimDiskFaults::default()));
    enigma_engine::conformance::run_all(|| SimDisk::new(SimDiskFaults::torn()));
}

#[test]
fn unsynced_writes_are_lost_on_crash() {
    let disk = SimDisk::default();
    let mut file = disk.create("f").expect("create");
    disk.sync_dir().expect("sync_dir");
    file.append(b"synced").expect("append");
    file.sync().expect("sync");
    file.append(b" unsynced").expect("append");
    file.write_at(0, b"S").expect("overwrite");
    disk.crash(&mut rng(1));
    assert_eq!(contents(&disk, "f"), b"synced");
}

#[test]
fn synced_writes_survive_crash() {
    let disk = SimDisk::new(SimDiskFaults::torn());
    let mut file = disk.create("f").expect("create");
    file.append(&[7; 3000]).expect("append");
    file.sync().expect("sync");
    disk.sync_dir().expect("sync_dir");
    for seed in 0..20 {
        disk.crash(&mut rng(seed));
        assert_eq!(contents(&disk, "f"), vec![7; 3000]);
    }
}

/// A sync copies only the bytes changed since the last one: writes inside
/// a file written ahead with zeros, a shrink, and a regrowth whose gap the
/// zeros fill must all reach the durable contents, and nothing else.
#[test]
fn syncs_of_changed_ranges_keep_exactly_what_was_written() {
    let disk = SimDisk::default();
    let mut file = disk.create("f").expect("create");
    disk.sync_dir().expect("sync_dir");
    file.write_at(0, &[0; 4096]).expect("zeros ahead");
    file.sync().expect("sync");
    file.write_at(100, b"first").expect("write inside");
    file.write_at(3000, b"second").expect("write inside");
    file.sync().expect("sync");
    file.truncate(2000).expect("shrink");
    file.write_at(2500, b"third").expect("write past the end");
    file.sync().expect("sync");
    let mut expected = vec![0; 2505];
    expected[100..105].copy_from_slice(b"first");
    expected[2500..2505].copy_from_slice(b"third");
    for seed in 0..5 {
        disk.crash(&mut rng(seed));
        assert_eq!(contents(&disk, "f"), expected);
    }
}

#[test]
fn unsynced_create_is_lost_on_crash_unless_dir_synced() {
    let disk = SimDisk::default();
    let mut lost = disk.create("lost").expect("create");
    lost.append(b"data").expect("append");
    lost.sync()
        .expect("file sync alone does not make the name durable");
    disk.crash(&mut rng(1));
    assert_eq!(disk.list().expect("list"), Vec::<String>::new());

    let mut kept = disk.create("kept").expect("create");
    kept.append(b"data").expect("append");
    kept.sync().expect("sync");
    disk.sync_dir().expect("sync_dir");
    disk.crash(&mut rng(2));
    assert_eq!(disk.list().expect("list"), vec!["kept"]);
    assert_eq!(contents(&disk, "kept"), b"data");
}

#[test]
fn unsynced_rename_and_remove_are_undone_by_crash() {
    let disk = SimDisk::default();
    let mut file = disk.create("a").expect("create");
    file.append(b"x").expect("append");
    file.sync().expect("sync");
    disk.create("b").expect("create");
    disk.sync_dir().expect("sync_dir");
    disk.rename("a", "c").expect("rename");
    disk.remove("b").expect("remove");
    disk.crash(&mut rng(3));
    assert_eq!(disk.list().expect("list"), vec!["a", "b"]);
    assert_eq!(contents(&disk, "a"), b"x");
}

#[test]
fn handle_from_before_a_crash_is_an_error() {
    let disk = SimDisk::default();
    let mut file = disk.create("f").expect("create");
    disk.sync_dir().expect("sync_dir");
    disk.crash(&mut rng(4));
    assert!(matches!(file.append(b"x"), Err(DiskError::Io { .. })));
    assert!(matches!(file.len(), Err(DiskError::Io { .. })));
    let mut fresh = disk.open("f").expect("open");
    fresh.append(b"ok").expect("a new handle works");
}

#[test]
fn full_disk_rejects_writes_and_writes_nothing() {
    let disk = SimDisk::default();
    let mut file = disk.create("f").expect("create");
    file.append(b"ab").expect("append");
    disk.set_full(true);
    assert_eq!(
        file.append(b"cd"),
        Err(DiskError::NoSpace {
            name: "f".to_owned()
        })
    );
    assert_eq!(contents(&disk, "f"), b"ab");
    disk.set_full(false);
    file.append(b"cd").expect("append after space frees up");
    assert_eq!(disk.bytes_written(), 4);
}

#[test]
fn write_past_capacity_is_no_space_not_an_allocation() {
    let disk = SimDisk::default();
    let mut file = disk.create("f").expect("create");
    let far = file.write_at(u64::MAX - 1, b"xy");
    assert!(matches!(far, Err(DiskError::NoSpace { .. })), "{far:?}");
    let big = file.truncate(FILE_BYTES_MAX + 1);
    assert!(matches!(big, Err(DiskError::NoSpace { .. })), "{big:?}");
}

#[test]
fn injected_sync_failure_fails_once_and_makes_nothing_durable() {
    let disk = SimDisk::default();
    let mut file = disk.create("f").expect("create");
    disk.sync_dir().expect("sync_dir");
    file.append(b"data").expect("append");
    disk.fail_next_sync();
    assert!(matches!(file.sync(), Err(DiskError::SyncFailed { .. })));
    disk.crash(&mut rng(5));
    assert_eq!(contents(&disk, "f"), b"");
    disk.fail_next_sync();
    assert!(matches!(disk.sync_dir(), Err(DiskError::SyncFailed { .. })));
    disk.sync_dir().expect("the failure was for one sync only");
    assert_eq!(disk.syncs(), 2);
}

#[test]
fn torn_crash_keeps_old_new_or_garbage_per_sector_and_a_valid_length() {
    let old = vec![1_u8; 4 * SECTOR_BYTES];
    let mut new = old.clone();
    new[SECTOR_BYTES..].fill(2);
    new.extend_from_slice(&[3; 2 * SECTOR_BYTES]);
    let mut garbage_seen = false;
    for seed in 0..64 {
        let disk = SimDisk::new(SimDiskFaults::torn());
        let mut file = disk.create("f").expect("create");
        file.append(&old).expect("append");
        file.sync().expect("sync");
        disk.sync_dir().expect("sync_dir");
        file.write_at(SECTOR_BYTES as u64, &new[SECTOR_BYTES..])
            .expect("write");
        disk.crash(&mut rng(seed));
        let after = contents(&disk, "f");
        assert!(
            after.len() == old.len() || after.len() == new.len(),
            "seed {seed}"
        );
        assert_eq!(
            after[..SECTOR_BYTES],
            old[..SECTOR_BYTES],
            "synced sector changed"
        );
        for (index, sector) in after.chunks(SECTOR_BYTES).enumerate() {
            let range = index * SECTOR_BYTES..(index + 1) * SECTOR_BYTES;
            let old_sector = old.get(range.clone()).unwrap_or(&[0; SECTOR_BYTES]);
            if sector != old_sector && sector != &new[range] {
                garbage_seen = true;
            }
        }
    }
    assert!(garbage_seen, "torn faults never produced a torn sector");
}

#[test]
fn crash_is_deterministic_for_a_seed() {
    let run = || {
        let disk = SimDisk::new(SimDiskFaults::torn());
        let mut file = disk.create("f").expect("create");
        disk.sync_dir().expect("sync_dir");
        file.append(&[9; 5000]).expect("append");
        disk.crash(&mut rng(42));
        contents(&disk, "f")
    };
    assert_eq!(run(), run());
}

#[test]
fn flip_bit_corrupts_durable_contents() {
    let disk = SimDisk::default();
    let mut file = disk.create("f").expect("create");
    file.append(&[0; 4]).expect("append");
    file.sync().expect("sync");
    disk.sync_dir().expect("sync_dir");
    disk.flip_bit("f", 2, 0).expect("flip");
    disk.crash(&mut rng(6));
    assert_eq!(contents(&disk, "f"), [0, 0, 1, 0]);
    assert!(disk.flip_bit("f", 4, 0).is_err());
}

#[test]
fn unsynced_dir_ops_are_each_kept_or_lost_and_synced_ones_always_kept() {
    let (mut kept, mut lost) = (0, 0);
    for seed in 0..40 {
        let disk = SimDisk::new(SimDiskFaults::torn_with_lost_dir_ops());
        let mut durable = disk.create("durable").expect("create");
        durable.append(b"d").expect("append");
        durable.sync().expect("sync");
        disk.create("old").expect("create");
        disk.sync_dir().expect("sync_dir");
        disk.create("new").expect("create");
        disk.rename("old", "renamed").expect("rename");
        disk.crash(&mut rng(seed));
        let names = disk.list().expect("list");
        assert!(
            names.contains(&"durable".to_owned()),
            "seed {seed}: {names:?}"
        );
        assert_eq!(contents(&disk, "durable"), b"d");
        let renamed = names.contains(&"renamed".to_owned());
        assert_ne!(
            renamed,
            names.contains(&"old".to_owned()),
            "seed {seed}: a rename is atomic: {names:?}"
        );
        if names.contains(&"new".to_owned()) {
            kept += 1;
        } else {
            lost += 1;
        }
    }
    assert!(kept > 0 && lost > 0, "kept {kept}, lost {lost}");
}

#[test]
fn capacity_rejects_growth_past_it_and_reads_still_work() {
    let disk = SimDisk::default();
    disk.set_capacity_bytes(Some(10));
    let mut file = disk.create("f").expect("create");
    file.append(b"12345678").expect("fits");
    assert!(matches!(
        file.append(b"abc"),
        Err(DiskError::NoSpace { .. })
    ));
    file.write_at(0, b"AB").expect("overwriting takes no space");
    assert_eq!(contents(&disk, "f"), b"AB345678");
    disk.set_capacity_bytes(None);
    file.append(b"abc").expect("space again");
}

#[test]
fn bad_reads_flip_a_bit_or_fail_and_leave_the_data_intact() {
    let faults = SimDiskFaults {
        read_bit_flip_probability: 1.0,
        ..SimDiskFaults::default()
    };
    let disk = SimDisk::with_seed(faults, 3);
    let mut file = disk.create("f").expect("create");
    file.append(&[0; 64]).expect("append");
    let mut buf = [0_u8; 64];
    file.read_at(0, &mut buf).expect("read");
    let flipped: u32 = buf.iter().map(|b| b.count_ones()).sum();
    assert_eq!(flipped, 1, "one bit flipped in transit");
    disk.set_faults(SimDiskFaults {
        read_error_probability: 1.0,
        ..SimDiskFaults::default()
    });
    assert!(matches!(
        file.read_at(0, &mut buf),
        Err(DiskError::Io { .. })
    ));
    disk.set_faults(SimDiskFaults::default());
    assert_eq!(contents(&disk, "f"), vec![0; 64], "stored bytes intact");
}

#[test]
fn latent_sector_error_fails_reads_until_the_sector_is_rewritten() {
    let disk = SimDisk::default();
    let mut file = disk.create("f").expect("create");
    file.append(&[1; 3 * SECTOR_BYTES]).expect("append");
    disk.mark_sector_unreadable("f", SECTOR_BYTES as u64 + 5)
        .expect("mark");
    let mut buf = [0_u8; 10];
    file.read_at(0, &mut buf).expect("other sectors read");
    assert!(matches!(
        file.read_at(SECTOR_BYTES as u64 * 2 - 4, &mut buf),
        Err(DiskError::Io { .. })
    ));
    file.write_at(SECTOR_BYTES as u64, &[2; 4])
        .expect("rewrite");
    file.read_at(SECTOR_BYTES as u64, &mut buf)
        .expect("remapped");
}

#[test]
fn sync_failure_probability_fails_syncs() {
    let faults = SimDiskFaults {
        sync_failure_probability: 1.0,
        ..SimDiskFaults::default()
    };
    let disk = SimDisk::with_seed(faults, 1);
    let mut file = disk.create("f").expect("create");
    assert!(matches!(file.sync(), Err(DiskError::SyncFailed { .. })));
    assert!(matches!(disk.sync_dir(), Err(DiskError::SyncFailed { .. })));
}

#[test]
fn engine_never_serves_a_bad_read() {
    let options = EngineOptions {
        memtable_bytes_max: enigma_engine::MEMTABLE_BYTES_MIN,
        table_block_bytes: enigma_engine::TABLE_BLOCK_BYTES_MIN,
        compaction_block_bytes: enigma_engine::TABLE_BLOCK_BYTES_MIN,
        block_cache_bytes: 0,
        ..small_segments()
    };
    let disk = SimDisk::with_seed(SimDiskFaults::default(), 9);
    let mut engine = Engine::open(disk.clone(), options.clone()).expect("open");
    for i in 0..200 {
        engine.write(&key(i), value(i)).expect("write");
    }
    engine.compact_all().expect("compact");
    engine.sync().expect("sync");
    assert!(engine.tables_total() > 0);
    disk.set_faults(SimDiskFaults {
        read_bit_flip_probability: 0.2,
        read_error_probability: 0.05,
        ..SimDiskFaults::default()
    });
    let (mut served, mut refused) = (0, 0);
    for round in 0..5 {
        for i in 0..200 {
            match engine.get(&key(i)) {
                Ok(got) => {
                    assert_eq!(got, Some(value(i)), "round {round}: key {i}");
                    served += 1;
                }
                Err(
                    EngineError::ChecksumMismatch { .. }
                    | EngineError::Corruption { .. }
                    | EngineError::Disk(DiskError::Io { .. }),
                ) => refused += 1,
                Err(other) => panic!("unexpected error {other}"),
            }
        }
    }
    assert!(
        served > 0 && refused > 0,
        "served {served}, refused {refused}"
    );
}

/// Background jobs that meet bad reads (a flipped bit, a failed read, a
/// latent bad sector) while opening the table they just wrote must
/// leave the engine serving every newest version once the reads heal:
/// the frozen memtable or the compaction inputs stay until the new
/// table is open.
#[test]
fn background_work_meeting_bad_reads_loses_nothing_from_the_read_path() {
    let options = EngineOptions {
        memtable_bytes_max: enigma_engine::MEMTABLE_BYTES_MIN,
        compaction_tables_min: 2,
        ..EngineOptions::default()
    };
    for seed in 0..8 {
        let disk = SimDisk::with_seed(SimDiskFaults::default(), seed);
        let mut engine = Engine::open(disk.clone(), options.clone()).expect("open");
        let mut newest = BTreeMap::new();
        let mut hlc = 1;
        let mut rng = rng(seed);
        for round in 0..30 {
            for k in 0..5_u64 {
                hlc += 1;
                let version = Versioned {
                    timestamp: Timestamp { hlc, node: 1 },
                    value: Some(vec![b'x'; 300]),
                };
                engine.write(&key(k), version).expect("write");
                newest.insert(k, hlc);
            }
            engine.sync().expect("sync");
            if round % 3 == 0 {
                disk.set_faults(SimDiskFaults {
                    read_bit_flip_probability: 0.05,
                    read_error_probability: 0.02,
                    ..SimDiskFaults::default()
                });
                disk.mark_random_sectors_unreadable(&mut rng, 4, |n| n.ends_with(".sst"));
            }
            let _ = engine.do_background_work(64 * 1024);
            disk.set_faults(SimDiskFaults::default());
            disk.clear_unreadable_sectors();
            for (k, hlc) in &newest {
                let got = engine.get(&key(*k)).expect("reads heal").expect("held");
                assert_eq!(got.timestamp.hlc, *hlc, "seed {seed} round {round} key {k}");
            }
        }
    }
}

fn small_segments() -> EngineOptions {
    EngineOptions {
        wal_segment_bytes_max: enigma_engine::WAL_SEGMENT_BYTES_MIN,
        ..EngineOptions::default()
    }
}

fn key(i: u64) -> Vec<u8> {
    format!("key-{i:05}").into_bytes()
}

fn value(i: u64) -> Versioned {
    Versioned {
        timestamp: Timestamp {
            hlc: i + 1,
            node: 1,
        },
        value: Some(vec![(i % 251) as u8; 1 + (i as usize * 37) % 700]),
    }
}

/// Rounds of writes, group commits at random points, then a torn crash:
/// recovery must keep every synced write, and of the unsynced writes a
/// prefix, never a gap and never an invented value.
#[test]
fn engine_recovers_synced_writes_and_a_prefix_of_unsynced_after_torn_crash() {
    // The test must reach the cases it is about, or it proves nothing.
    let mut torn_tails_seen = 0;
    let mut unsynced_kept_seen = 0;
    for seed in 0..48 {
        let mut rng = rng(seed);
        let disk = SimDisk::new(SimDiskFaults::torn());
        let mut recovered_total = 0_u64; // keys 0..this are durable
        let mut next_key = 0_u64;
        for round in 0..4 {
            let mut engine = Engine::open(disk.clone(), small_segments())
                .unwrap_or_else(|e| panic!("seed {seed} round {round}: open: {e}"));
            let scanned = engine.scan_all().expect("scan");
            let prefix_len = scanned.len() as u64;
            // Sorted zero-padded keys: entry i must be write i.
            let first_wrong = scanned
                .iter()
                .zip(0_u64..)
                .find(|((k, v), i)| (k, v) != (&key(*i), &value(*i)));
            if let Some(((k, _), i)) = first_wrong {
                let k = String::from_utf8_lossy(k);
                panic!("seed {seed} round {round}: entry {i} is {k}: a gap or a wrong value");
            }
            assert!(
                prefix_len >= recovered_total,
                "seed {seed} round {round}: lost synced"
            );
            assert!(
                prefix_len <= next_key,
                "seed {seed} round {round}: invented writes"
            );
            torn_tails_seen += u32::from(engine.recovery_report().torn_tail.is_some());
            unsynced_kept_seen += u32::from(prefix_len > recovered_total);
            // On a SimDisk everything recovered is durable now.
            recovered_total = prefix_len;
            next_key = prefix_len;
            for _ in 0..rng.random_range(1..40) {
                assert!(engine
                    .write(&key(next_key), value(next_key))
                    .expect("write"));
                next_key += 1;
                if rng.random_bool(0.2) {
                    engine.sync().expect("sync");
                    recovered_total = next_key;
                }
            }
            drop(engine);
            disk.crash(&mut rng);
        }
    }
    assert!(torn_tails_seen > 0, "no crash left a torn tail");
    assert!(unsynced_kept_seen > 0, "no crash kept an unsynced write");
}

#[test]
fn engine_is_poisoned_after_failed_sync_and_recovers_after_restart() {
    let disk = SimDisk::default();
    let mut engine = Engine::open(disk.clone(), EngineOptions::default()).expect("open");
    engine.write(b"durable", value(1)).expect("write");
    engine.sync().expect("sync");
    engine.write(b"lost", value(2)).expect("write");
    disk.fail_next_sync();
    assert!(matches!(
        engine.sync(),
        Err(EngineError::Disk(DiskError::SyncFailed { .. }))
    ));
    let write = engine.write(b"later", value(3));
    assert!(
        matches!(write, Err(EngineError::Poisoned { .. })),
        "{write:?}"
    );
    assert!(matches!(engine.sync(), Err(EngineError::Poisoned { .. })));
    assert_eq!(engine.get(b"lost").expect("reads work"), Some(value(2)));
    drop(engine);
    disk.crash(&mut rng(7));
    let engine = Engine::open(disk, EngineOptions::default()).expect("reopen");
    assert_eq!(
        engine.scan_all().expect("scan"),
        vec![(b"durable".to_vec(), value(1))]
    );
}

#[test]
fn engine_survives_a_full_disk() {
    let disk = SimDisk::default();
    let mut engine = Engine::open(disk.clone(), small_segments()).expect("open");
    engine.write(&key(0), value(0)).expect("write");
    engine.sync().expect("sync");
    disk.set_full(true);
    engine
        .write(&key(1), value(1))
        .expect("the write waits in the log's buffer");
    assert!(matches!(engine.sync(), Err(EngineError::NoSpace { .. })));
    assert_eq!(
        engine.get(&key(0)).expect("reads work on a full disk"),
        Some(value(0))
    );
    disk.set_full(false);
    engine
        .write(&key(2), value(2))
        .expect("write after space frees up");
    engine.sync().expect("sync");
    drop(engine);
    disk.crash(&mut rng(8));
    let engine = Engine::open(disk, small_segments()).expect("reopen");
    let keys: Vec<Vec<u8>> = engine
        .scan_all()
        .expect("scan")
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    assert_eq!(keys, vec![key(0), key(1), key(2)]);
}

#[test]
fn engine_reports_bit_rot_in_a_synced_non_last_segment() {
    let disk = SimDisk::default();
    let mut engine = Engine::open(disk.clone(), EngineOptions::default()).expect("open");
    engine.write(&key(0), value(0)).expect("write");
    engine.sync().expect("sync");
    drop(engine);
    // Recovery opens a second segment; the first is no longer the last,
    // so damage in it cannot be a torn tail.
    drop(Engine::open(disk.clone(), EngineOptions::default()).expect("reopen"));
    let segment = disk
        .list()
        .expect("list")
        .into_iter()
        .find(|name| name.starts_with("wal-"))
        .expect("a WAL segment");
    let first_record = enigma_engine::WAL_RECORDS_OFFSET;
    disk.flip_bit(&segment, first_record + 16, 3).expect("flip");
    match Engine::open(disk.clone(), EngineOptions::default()) {
        Err(EngineError::ChecksumMismatch { file, offset, .. }) => {
            assert_eq!((file, offset), (segment, first_record));
        }
        other => panic!("expected a checksum mismatch, got {other:?}"),
    }
}

fn synced_file(disk: &SimDisk, name: &str, fill: u8, len: usize) {
    let mut file = disk.create(name).expect("create");
    file.write_at(0, &vec![fill; len]).expect("write");
    file.sync().expect("sync");
    disk.sync_dir().expect("sync_dir");
}

#[test]
fn a_misdirected_write_lands_whole_sectors_elsewhere_and_no_crash_undoes_it() {
    let disk = SimDisk::default();
    synced_file(&disk, "a", b'a', 4 * SECTOR_BYTES);
    synced_file(&disk, "b", b'b', 4 * SECTOR_BYTES);
    let misdirected = MisdirectedWrite {
        from: "a".to_owned(),
        from_offset: 0,
        to: "b".to_owned(),
        to_offset: SECTOR_BYTES as u64,
        len: 2 * SECTOR_BYTES as u64,
    };
    disk.misdirect_write_at(&misdirected).expect("misdirect");
    disk.crash(&mut rng(3));
    let b = contents(&disk, "b");
    assert_eq!(b.len(), 4 * SECTOR_BYTES, "lengths never change");
    assert!(b[..SECTOR_BYTES].iter().all(|&x| x == b'b'));
    assert!(b[SECTOR_BYTES..3 * SECTOR_BYTES].iter().all(|&x| x == b'a'));
    assert!(b[3 * SECTOR_BYTES..].iter().all(|&x| x == b'b'));
    assert_eq!(contents(&disk, "a"), vec![b'a'; 4 * SECTOR_BYTES]);
    assert_eq!(disk.misdirected_writes(), 1);
    let past_the_end = MisdirectedWrite {
        to_offset: 3 * SECTOR_BYTES as u64,
        ..misdirected
    };
    assert!(disk.misdirect_write_at(&past_the_end).is_err());
}

#[test]
fn random_misdirected_writes_and_bit_rot_touch_only_the_files_allowed() {
    let disk = SimDisk::default();
    for (i, name) in ["t1.sst", "t2.sst", "t3.sst", "keep.log"]
        .iter()
        .enumerate()
    {
        synced_file(&disk, name, b'0' + i as u8, (3 + i) * SECTOR_BYTES + 17);
    }
    let allowed = |name: &str| name.ends_with(".sst");
    let mut rng = rng(11);
    let (mut same_file, mut other_file) = (0, 0);
    for _ in 0..200 {
        let before: BTreeMap<String, Vec<u8>> = disk
            .list()
            .expect("list")
            .into_iter()
            .map(|name| (name.clone(), contents(&disk, &name)))
            .collect();
        let m = disk
            .misdirect_write(&mut rng, allowed)
            .expect("files exist");
        assert!(allowed(&m.from) && allowed(&m.to), "{m:?}");
        assert_eq!(m.from_offset % SECTOR_BYTES as u64, 0);
        assert_eq!(m.to_offset % SECTOR_BYTES as u64, 0);
        assert!((1..=MISDIRECTED_SECTORS_MAX).contains(&(m.len / SECTOR_BYTES as u64)));
        if m.from == m.to {
            assert_ne!(m.from_offset, m.to_offset, "{m:?}");
            same_file += 1;
        } else {
            assert_eq!(m.from_offset, m.to_offset, "{m:?}");
            other_file += 1;
        }
        let (from, to) = (m.from_offset as usize, m.to_offset as usize);
        let len = m.len as usize;
        let after = contents(&disk, &m.to);
        assert_eq!(after[to..to + len], before[&m.from][from..from + len]);
        for (name, bytes) in &before {
            let now = contents(&disk, name);
            assert_eq!(now.len(), bytes.len(), "lengths never change");
            if *name != m.to {
                assert_eq!(&now, bytes, "{name} untouched");
            }
        }
    }
    assert!(
        same_file > 50 && other_file > 50,
        "{same_file} {other_file}"
    );
    assert_eq!(disk.misdirected_writes(), 200);
    let keep = contents(&disk, "keep.log");
    for _ in 0..50 {
        let (name, offset) = disk
            .flip_random_bit(&mut rng, allowed)
            .expect("files exist");
        assert!(allowed(&name) && offset < contents(&disk, &name).len() as u64);
    }
    assert_eq!(contents(&disk, "keep.log"), keep);
    assert_eq!(disk.bits_flipped(), 50);
    assert!(SimDisk::default()
        .misdirect_write(&mut rng, |_| true)
        .is_none());
    // A file of one sector has no other place of its own: its writes land
    // in the other file.
    let small = SimDisk::default();
    synced_file(&small, "one.sst", b'1', SECTOR_BYTES);
    assert!(small.misdirect_write(&mut rng, |_| true).is_none());
    synced_file(&small, "two.sst", b'2', 2 * SECTOR_BYTES);
    for _ in 0..20 {
        let m = small.misdirect_write(&mut rng, |_| true).expect("a place");
        assert!(m.from != m.to || m.from == "two.sst", "{m:?}");
    }
}

/// Whether `name` is a table or a WAL segment other than the last: where
/// the simulator may put stored damage.
fn table_or_sealed_segment(disk: &SimDisk) -> impl Fn(&str) -> bool {
    let last_segment = disk
        .list()
        .expect("list")
        .into_iter()
        .filter(|name| name.starts_with("wal-"))
        .max();
    move |name: &str| {
        name.ends_with(".sst")
            || (name.starts_with("wal-") && Some(name) != last_segment.as_deref())
    }
}

/// Misdirected writes into tables and sealed log segments: the engine
/// refuses to open (naming a damaged file) or serves every key its value
/// or a corruption error, never a wrong or missing value, and never takes
/// the damage for a torn tail.
#[test]
fn engine_never_serves_a_misdirected_write() {
    let options = EngineOptions {
        memtable_bytes_max: enigma_engine::MEMTABLE_BYTES_MIN,
        table_block_bytes: enigma_engine::TABLE_BLOCK_BYTES_MIN,
        compaction_block_bytes: enigma_engine::TABLE_BLOCK_BYTES_MIN,
        block_cache_bytes: 0,
        ..small_segments()
    };
    let (mut refused_open, mut refused_reads, mut served) = (0, 0, 0);
    for seed in 0..40 {
        let disk = SimDisk::with_seed(SimDiskFaults::default(), seed);
        let mut engine = Engine::open(disk.clone(), options.clone()).expect("open");
        for i in 0..300 {
            engine.write(&key(i), value(i)).expect("write");
            if i == 150 {
                engine.compact_all().expect("compact");
            }
        }
        engine.sync().expect("sync");
        drop(engine);
        drop(Engine::open(disk.clone(), options.clone()).expect("reopen"));
        let mut rng = rng(seed);
        let sealed = table_or_sealed_segment(&disk);
        // Tables in even seeds (read lazily: some reads meet the damage),
        // sealed segments in odd ones (read whole at open).
        let tables = seed % 2 == 0;
        let which = |name: &str| sealed(name) && name.ends_with(".sst") == tables;
        disk.misdirect_write(&mut rng, which)
            .expect("files to damage");
        let engine = match Engine::open(disk.clone(), options.clone()) {
            Err(err) => {
                let (file, _) = err.corruption_site().expect("names the damage");
                assert!(file.ends_with(".sst") || file.starts_with("wal-"), "{err}");
                refused_open += 1;
                continue;
            }
            Ok(engine) => engine,
        };
        assert_eq!(engine.recovery_report().torn_tail, None, "seed {seed}");
        for i in 0..300 {
            match engine.get(&key(i)) {
                Ok(got) => {
                    assert_eq!(got, Some(value(i)), "seed {seed}: key {i}");
                    served += 1;
                }
                Err(EngineError::ChecksumMismatch { .. } | EngineError::Corruption { .. }) => {
                    refused_reads += 1;
                }
                Err(other) => panic!("seed {seed}: unexpected error {other}"),
            }
        }
    }
    assert!(
        refused_open > 0 && refused_reads > 0 && served > 0,
        "refused_open {refused_open}, refused_reads {refused_reads}, served {served}"
    );
}
