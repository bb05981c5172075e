//! Crash tests of the LSM engine on `SimDisk`: the process dies at a random
//! disk operation (often in the middle of a flush, a compaction or a
//! manifest checkpoint), the disk crashes (unsynced data lost or torn), and
//! the engine reopens. After recovery it must hold every synced write and a
//! prefix of the unsynced ones: never a gap, never a resurrected value.
//! Tombstone purging is switched on at random horizons, so a purge that
//! let an older value reappear would show as a state that is no prefix.

mod common;

use std::collections::BTreeMap;
use std::rc::Rc;

use common::{Death, DyingDisk};
use enigma_engine::{
    Engine, EngineOptions, Timestamp, Versioned, MEMTABLE_BYTES_MIN, TABLE_BLOCK_BYTES_MIN,
    WAL_SEGMENT_BYTES_MIN,
};
use enigma_sim::disk::{SimDisk, SimDiskFaults};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn options() -> EngineOptions {
    EngineOptions {
        wal_segment_bytes_max: WAL_SEGMENT_BYTES_MIN,
        memtable_bytes_max: MEMTABLE_BYTES_MIN,
        table_block_bytes: TABLE_BLOCK_BYTES_MIN,
        compaction_block_bytes: TABLE_BLOCK_BYTES_MIN,
        compaction_tables_min: 2,
        manifest_edits_per_checkpoint: 3,
        ..EngineOptions::default()
    }
}

const KEYS_TOTAL: u64 = 40;

/// The live keys (tombstones dropped) after applying `ops` in order; each
/// op has a higher timestamp than the one before, so each one wins.
fn live(ops: &[(Vec<u8>, Versioned)]) -> BTreeMap<Vec<u8>, Vec<u8>> {
    let mut model = BTreeMap::new();
    for (key, version) in ops {
        match &version.value {
            Some(value) => model.insert(key.clone(), value.clone()),
            None => model.remove(key),
        };
    }
    model
}

#[test]
fn engine_recovers_a_prefix_after_dying_during_flush_compaction_and_writes() {
    let mut died_in_background = 0;
    let mut died_in_write = 0;
    let mut tables_seen = 0;
    for seed in 0..40_u64 {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        // Unsynced sectors are lost, kept or garbled. A garbled sector loses
        // all its bytes, synced or not, which every file survives by never
        // writing into a sector that holds synced bytes (WAL syncs and
        // manifest records end on sector boundaries; tables are synced whole).
        let sim = SimDisk::new(SimDiskFaults::torn_with_lost_dir_ops());
        let death = Rc::new(Death::default());
        let disk = DyingDisk {
            inner: sim.clone(),
            death: death.clone(),
        };
        // ops[..synced] are durable; ops[synced..] were attempted.
        let mut ops: Vec<(Vec<u8>, Versioned)> = Vec::new();
        let mut synced = 0;
        let mut hlc = 0_u64;
        for round in 0..6 {
            death.operations_left.set(None);
            death.died.set(false);
            let mut engine = Engine::open(disk.clone(), options())
                .unwrap_or_else(|e| panic!("seed {seed} round {round}: open: {e}"));
            let recovered: BTreeMap<Vec<u8>, Vec<u8>> = engine
                .scan_all()
                .expect("scan")
                .into_iter()
                .filter_map(|(key, version)| version.value.map(|value| (key, value)))
                .collect();
            let prefix = (synced..=ops.len())
                .rev()
                .find(|&p| live(&ops[..p]) == recovered)
                .unwrap_or_else(|| {
                    panic!(
                        "seed {seed} round {round}: recovered state is no prefix of \
                         {} ops with {synced} synced: a lost, gapped or resurrected write",
                        ops.len()
                    )
                });
            // What was recovered is durable now; the rest never happened.
            ops.truncate(prefix);
            synced = prefix;
            tables_seen += engine.tables_total();

            death.operations_left.set(Some(rng.random_range(1..400)));
            for _ in 0..rng.random_range(20..300) {
                let action = rng.random_range(0..100);
                if action < 75 {
                    hlc += 1;
                    let key = format!("key-{:03}", rng.random_range(0..KEYS_TOTAL)).into_bytes();
                    let value = (!rng.random_bool(0.2))
                        .then(|| vec![(hlc % 251) as u8; rng.random_range(1..60)]);
                    let version = Versioned {
                        timestamp: Timestamp { hlc, node: 1 },
                        value,
                    };
                    ops.push((key.clone(), version.clone()));
                    if engine.write(&key, version).is_err() {
                        died_in_write += 1;
                        break;
                    }
                } else if action < 85 {
                    if engine.sync().is_err() {
                        break;
                    }
                    synced = ops.len();
                } else {
                    if rng.random_bool(0.3) {
                        let horizon = hlc.saturating_sub(rng.random_range(0..100));
                        engine.set_tombstone_purge_before(Some(Timestamp {
                            hlc: horizon,
                            node: 0,
                        }));
                    }
                    if engine
                        .do_background_work(rng.random_range(0..8192))
                        .is_err()
                    {
                        died_in_background += 1;
                        break;
                    }
                }
            }
            drop(engine);
            sim.crash(&mut rng);
        }
    }
    assert!(
        died_in_background > 0,
        "no death during flush or compaction"
    );
    assert!(died_in_write > 0, "no death during a write");
    assert!(tables_seen > 0, "no table was ever recovered");
}

/// A WAL segment with an unreadable sector among its records: opening is a
/// disk error (the records behind it are not taken for a torn tail and
/// dropped), and once the sector reads again every write is back. Replay
/// reads segments through a large window; this checks that a failed window
/// read neither hides the error nor loses records.
#[test]
fn an_unreadable_wal_sector_fails_the_open_and_loses_nothing() {
    use enigma_engine::{Disk, DiskFile, EngineError, WAL_RECORDS_OFFSET};
    use enigma_sim::disk::SECTOR_BYTES;

    let disk = SimDisk::new(SimDiskFaults::default());
    let options = EngineOptions {
        wal_segment_bytes_max: 1 << 20,
        memtable_bytes_max: 4 << 20,
        ..EngineOptions::default()
    };
    let writes = 2_000_u64;
    let key = |i: u64| format!("key{i:06}").into_bytes();
    {
        let mut engine = Engine::open(disk.clone(), options.clone()).expect("open");
        for i in 0..writes {
            let version = Versioned {
                timestamp: Timestamp {
                    hlc: i + 1,
                    node: 1,
                },
                value: Some(format!("value{i}").into_bytes()),
            };
            engine.write(&key(i), version).expect("write");
        }
        engine.sync().expect("sync");
    }
    let segments: Vec<String> = disk
        .list()
        .expect("list")
        .into_iter()
        .filter(|name| name.starts_with("wal-"))
        .collect();
    assert_eq!(
        segments.len(),
        1,
        "one segment holds the writes: {segments:?}"
    );
    let segment = &segments[0];
    // Every record takes more than 20 bytes.
    let records_end = WAL_RECORDS_OFFSET + writes * 20;
    assert!(
        disk.open(segment).expect("segment").len().expect("len") > records_end,
        "the records fill the segment"
    );
    // A sector in the middle of the records, its bytes kept to heal it.
    let bad = (WAL_RECORDS_OFFSET + writes / 2 * 20) / SECTOR_BYTES as u64 * SECTOR_BYTES as u64;
    let mut sector = vec![0_u8; SECTOR_BYTES];
    disk.open(segment)
        .expect("segment")
        .read_at(bad, &mut sector)
        .expect("read before marking");
    disk.mark_sector_unreadable(segment, bad).expect("mark");
    let Err(err) = Engine::open(disk.clone(), options.clone()) else {
        panic!("opening over an unreadable WAL sector succeeded");
    };
    assert!(
        matches!(err, EngineError::Disk(_)),
        "a read failure is a disk error, not corruption: {err}"
    );
    // Rewritten, the sector reads again, and nothing was cut off meanwhile.
    let mut file = disk.open(segment).expect("segment");
    file.write_at(bad, &sector).expect("rewrite");
    file.sync().expect("sync");
    drop(file);
    let engine = Engine::open(disk, options).expect("reopen after the sector healed");
    for i in 0..writes {
        let found = engine
            .get(&key(i))
            .expect("get")
            .expect("every write is back");
        assert_eq!(found.value, Some(format!("value{i}").into_bytes()));
    }
}

/// Synced writes with background work one step at a time (as a simulated
/// node takes it, one step per tick); the disk crashes after call `cut`.
/// Returns whether recovery kept every write (all were synced) and whether
/// the crash landed inside a job, between two of its steps.
fn crash_after_background_call(cut: usize, planted: bool) -> (bool, bool) {
    let mut rng = ChaCha8Rng::seed_from_u64(cut as u64);
    let disk = SimDisk::new(SimDiskFaults::torn_with_lost_dir_ops());
    let options = EngineOptions {
        bug_flush_removes_log_before_manifest_edit: planted,
        ..options()
    };
    let mut engine = Engine::open(disk.clone(), options.clone()).expect("open");
    let mut ops = Vec::new();
    let mut calls = 0;
    let mut hlc = 0;
    while calls < cut {
        hlc += 1;
        let key = format!("key-{:03}", hlc % KEYS_TOTAL).into_bytes();
        let version = Versioned {
            timestamp: Timestamp { hlc, node: 1 },
            value: Some(vec![(hlc % 251) as u8; 40]),
        };
        engine.write(&key, version.clone()).expect("write");
        engine.sync().expect("sync");
        ops.push((key, version));
        if hlc % 4 == 0 {
            engine
                .do_background_steps(u64::MAX, 1)
                .expect("background step");
            calls += 1;
        }
    }
    let inside = engine.background_job_in_progress();
    drop(engine);
    disk.crash(&mut rng);
    // A refused open (a log segment missing) keeps nothing either.
    let Ok(engine) = Engine::open(disk, options) else {
        return (false, inside);
    };
    let recovered: BTreeMap<Vec<u8>, Vec<u8>> = engine
        .scan_all()
        .expect("scan")
        .into_iter()
        .filter_map(|(key, version)| version.value.map(|value| (key, value)))
        .collect();
    (recovered == live(&ops), inside)
}

/// A crash between any two steps of a flush or a compaction (table
/// written, edit committed, covered log segments or inputs deleted) keeps
/// every synced write.
#[test]
fn a_crash_between_any_two_steps_of_a_background_job_keeps_every_synced_write() {
    let mut inside = 0;
    for cut in 1..=120 {
        let (kept, in_job) = crash_after_background_call(cut, false);
        assert!(
            kept,
            "a crash after background call {cut} lost a synced write"
        );
        inside += usize::from(in_job);
    }
    assert!(inside > 20, "only {inside} crashes landed inside a job");
}

/// The planted order (log segments deleted before the edit naming their
/// table is durable) loses synced writes at some crash point: the steps
/// really are crash points.
#[test]
fn deleting_the_log_before_the_manifest_edit_loses_writes_at_some_crash_point() {
    let lost = (1..=120)
        .filter(|&cut| !crash_after_background_call(cut, true).0)
        .count();
    assert!(
        lost > 0,
        "no crash point lost a write with the planted order"
    );
}
