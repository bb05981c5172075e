//! The engine against a `BTreeMap` model, on `SimDisk`, under crashes.
//!
//! Proptest drives random sequences of puts, deletes, batches, gets,
//! scans (bounded, limited, forward and reverse), syncs, background work
//! (flushes and compactions), full compactions, clean reopens and crashes.
//! A crash may strike at a random disk operation while writing, flushing or
//! compacting (the process "dies": every later mutating operation fails),
//! then the disk crashes with torn faults (unsynced sectors lost, kept or
//! garbled; unsynced directory operations lost or kept).
//!
//! Every read must match the model. After a crash the engine must hold
//! exactly the model's state after some prefix of the applied writes that
//! is at least as long as the synced prefix: nothing synced lost, no gap,
//! nothing resurrected or invented.
//!
//! 64 cases by default; a longer run (see docs/ENGINE.md):
//! `PROPTEST_CASES=2000 cargo test -p enigma-sim --test engine_model`.

mod common;

use std::collections::BTreeMap;
use std::ops::Bound;
use std::rc::Rc;

use common::{Death, DyingDisk};
use enigma_engine::{
    Disk, DiskFile, Engine, EngineError, EngineOptions, Timestamp, Versioned, MEMTABLE_BYTES_MIN,
    TABLE_BLOCK_BYTES_MIN, WAL_SEGMENT_BYTES_MIN,
};
use enigma_sim::disk::{SimDisk, SimDiskFaults};
use proptest::prelude::*;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// Keys the operations draw from: few, so that keys are overwritten.
const KEYS_TOTAL: u8 = 12;

fn options() -> EngineOptions {
    // Tiny memtables, segments, blocks and tiers, so that flushes, rotations,
    // multi-block tables and compactions all happen within a case.
    EngineOptions {
        wal_segment_bytes_max: WAL_SEGMENT_BYTES_MIN,
        memtable_bytes_max: MEMTABLE_BYTES_MIN,
        table_block_bytes: TABLE_BLOCK_BYTES_MIN,
        compaction_block_bytes: TABLE_BLOCK_BYTES_MIN,
        compaction_tables_min: 2,
        manifest_edits_per_checkpoint: 3,
        block_cache_bytes: 16 * 1024,
        ..EngineOptions::default()
    }
}

fn key(k: u8) -> Vec<u8> {
    format!("key-{k:02}").into_bytes()
}

/// What a crash interrupts.
#[derive(Debug, Clone, Copy)]
enum Interrupted {
    Writes,
    Background,
    FullCompaction,
}

#[derive(Debug, Clone)]
enum Op {
    /// A write; `stale` gives it an old timestamp, so it may lose.
    Put {
        key: u8,
        value: Option<Vec<u8>>,
        stale: bool,
    },
    Batch(Vec<(u8, Option<Vec<u8>>)>),
    Get(u8),
    Scan {
        start: Option<(u8, bool)>,
        end: Option<(u8, bool)>,
        limit: usize,
        reverse: bool,
    },
    Sync,
    Background(u64),
    CompactAll,
    Reopen,
    Crash {
        operations_before_death: u64,
        during: Interrupted,
        seed: u64,
    },
}

fn value_strategy() -> impl Strategy<Value = Option<Vec<u8>>> {
    prop_oneof![
        1 => Just(None),
        4 => prop::collection::vec(any::<u8>(), 0..200).prop_map(Some),
    ]
}

fn op_strategy() -> impl Strategy<Value = Op> {
    let bound = prop::option::of((0..KEYS_TOTAL + 1, any::<bool>()));
    prop_oneof![
        12 => (0..KEYS_TOTAL, value_strategy(), prop::bool::weighted(0.1))
            .prop_map(|(key, value, stale)| Op::Put { key, value, stale }),
        2 => prop::collection::vec((0..KEYS_TOTAL, value_strategy()), 1..5).prop_map(Op::Batch),
        3 => (0..KEYS_TOTAL).prop_map(Op::Get),
        2 => (bound.clone(), bound, 0_usize..8, any::<bool>())
            .prop_map(|(start, end, limit, reverse)| Op::Scan { start, end, limit, reverse }),
        3 => Just(Op::Sync),
        3 => (0_u64..4096).prop_map(Op::Background),
        1 => Just(Op::CompactAll),
        1 => Just(Op::Reopen),
        2 => (
            0_u64..60,
            prop_oneof![
                Just(Interrupted::Writes),
                Just(Interrupted::Background),
                Just(Interrupted::FullCompaction)
            ],
            any::<u64>(),
        )
            .prop_map(|(operations_before_death, during, seed)| Op::Crash {
                operations_before_death,
                during,
                seed,
            }),
    ]
}

/// The model: every applied write in order, grouped into atomic records.
#[derive(Debug, Default)]
struct Model {
    /// Applied writes; a batch's entries are consecutive.
    log: Vec<(Vec<u8>, Versioned)>,
    /// Positions in `log` where a crash may cut it: after each record.
    boundaries: Vec<usize>,
    /// `log[..synced]` is durable.
    synced: usize,
    /// The next fresh timestamp.
    hlc: u64,
}

impl Model {
    /// The state after `log[..len]`.
    fn state(&self, len: usize) -> BTreeMap<Vec<u8>, Versioned> {
        let mut state: BTreeMap<Vec<u8>, Versioned> = BTreeMap::new();
        for (key, version) in &self.log[..len] {
            state.insert(key.clone(), version.clone());
        }
        state
    }

    fn current(&self) -> BTreeMap<Vec<u8>, Versioned> {
        self.state(self.log.len())
    }

    /// Whether `version` beats what the model holds for `key` (with the
    /// batch's own earlier entries in `pending`).
    fn wins(
        &self,
        current: &BTreeMap<Vec<u8>, Versioned>,
        pending: &BTreeMap<Vec<u8>, Timestamp>,
        key: &[u8],
        version: &Versioned,
    ) -> bool {
        match pending.get(key) {
            Some(newest) => version.timestamp > *newest,
            None => current
                .get(key)
                .is_none_or(|stored| version.timestamp > stored.timestamp),
        }
    }

    fn next_timestamp(&mut self, stale: bool) -> Timestamp {
        self.hlc += 1;
        let hlc = if stale { self.hlc / 2 } else { self.hlc };
        Timestamp { hlc, node: 1 }
    }
}

fn to_bound(bound: Option<(u8, bool)>) -> Bound<Vec<u8>> {
    match bound {
        None => Bound::Unbounded,
        Some((k, true)) => Bound::Included(key(k)),
        Some((k, false)) => Bound::Excluded(key(k)),
    }
}

fn as_slice(bound: &Bound<Vec<u8>>) -> Bound<&[u8]> {
    bound.as_ref().map(Vec::as_slice)
}

fn open(disk: &DyingDisk) -> Engine<DyingDisk> {
    Engine::open(disk.clone(), options()).unwrap_or_else(|err| panic!("open: {err}"))
}

fn run_case(ops: Vec<Op>) -> Result<(), TestCaseError> {
    let sim = SimDisk::new(SimDiskFaults::torn_with_lost_dir_ops());
    let death = Rc::new(Death::default());
    let disk = DyingDisk {
        inner: sim.clone(),
        death: death.clone(),
    };
    let mut engine = open(&disk);
    let mut model = Model::default();
    for op in ops {
        match op {
            Op::Put {
                key: k,
                value,
                stale,
            } => {
                let version = Versioned {
                    timestamp: model.next_timestamp(stale),
                    value,
                };
                let current = model.current();
                let wins = model.wins(&current, &BTreeMap::new(), &key(k), &version);
                let applied = engine.write(&key(k), version.clone()).expect("write");
                prop_assert_eq!(
                    applied,
                    wins,
                    "write of key {} at {:?}",
                    k,
                    version.timestamp
                );
                if applied {
                    model.log.push((key(k), version));
                    model.boundaries.push(model.log.len());
                }
            }
            Op::Batch(entries) => {
                let batch: Vec<(Vec<u8>, Versioned)> = entries
                    .into_iter()
                    .map(|(k, value)| {
                        let timestamp = model.next_timestamp(false);
                        (key(k), Versioned { timestamp, value })
                    })
                    .collect();
                let current = model.current();
                let mut pending = BTreeMap::new();
                let mut winners = Vec::new();
                for (k, version) in &batch {
                    if model.wins(&current, &pending, k, version) {
                        pending.insert(k.clone(), version.timestamp);
                        winners.push((k.clone(), version.clone()));
                    }
                }
                let applied = engine.write_batch(&batch).expect("batch");
                prop_assert_eq!(applied, winners.len());
                if applied > 0 {
                    model.log.extend(winners);
                    model.boundaries.push(model.log.len());
                }
            }
            Op::Get(k) => {
                let got = engine.get(&key(k)).expect("get");
                prop_assert_eq!(got, model.current().get(&key(k)).cloned(), "get {}", k);
            }
            Op::Scan {
                start,
                end,
                limit,
                reverse,
            } => {
                let (start, end) = (to_bound(start), to_bound(end));
                let range = (as_slice(&start), as_slice(&end));
                let got = if reverse {
                    engine.scan_reverse(range.0, range.1, limit)
                } else {
                    engine.scan(range.0, range.1, limit)
                }
                .expect("scan");
                let current = model.current();
                let inside = current
                    .into_iter()
                    .filter(|(k, _)| std::ops::RangeBounds::contains(&range, k.as_slice()));
                let expected: Vec<(Vec<u8>, Versioned)> = if reverse {
                    inside.rev().take(limit).collect()
                } else {
                    inside.take(limit).collect()
                };
                prop_assert_eq!(got, expected, "scan {:?} reverse {}", range, reverse);
            }
            Op::Sync => {
                engine.sync().expect("sync");
                model.synced = model.log.len();
            }
            Op::Background(budget) => {
                engine.do_background_work(budget).expect("background work");
            }
            Op::CompactAll => {
                engine.compact_all().expect("full compaction");
                prop_assert!(engine.tables_total() <= 1);
            }
            Op::Reopen => {
                // A clean exit keeps what was handed to the file system.
                drop(engine);
                engine = open(&disk);
                let recovered: BTreeMap<Vec<u8>, Versioned> =
                    engine.scan_all().expect("scan").into_iter().collect();
                prop_assert_eq!(&recovered, &model.current(), "after a clean reopen");
            }
            Op::Crash {
                operations_before_death,
                during,
                seed,
            } => {
                death.operations_left.set(Some(operations_before_death));
                match during {
                    Interrupted::Writes => {
                        for i in 0..8_u8 {
                            let version = Versioned {
                                timestamp: model.next_timestamp(false),
                                value: Some(vec![i; 100]),
                            };
                            let k = key(i % KEYS_TOTAL);
                            if engine.write(&k, version.clone()).is_err() {
                                break;
                            }
                            model.log.push((k, version));
                            model.boundaries.push(model.log.len());
                            if i % 3 == 2 {
                                if engine.sync().is_err() {
                                    break;
                                }
                                model.synced = model.log.len();
                            }
                        }
                    }
                    Interrupted::Background => {
                        let _ = engine.do_background_work(u64::MAX);
                    }
                    Interrupted::FullCompaction => {
                        let _ = engine.compact_all();
                    }
                }
                drop(engine);
                sim.crash(&mut ChaCha8Rng::seed_from_u64(seed));
                death.operations_left.set(None);
                death.died.set(false);
                engine = open(&disk);
                let recovered: BTreeMap<Vec<u8>, Versioned> =
                    engine.scan_all().expect("scan").into_iter().collect();
                let candidates = std::iter::once(model.synced).chain(
                    model
                        .boundaries
                        .iter()
                        .copied()
                        .filter(|&b| b > model.synced),
                );
                let mut prefix = None;
                for len in candidates {
                    if model.state(len) == recovered {
                        prefix = Some(len);
                    }
                }
                let Some(prefix) = prefix else {
                    return Err(TestCaseError::fail(format!(
                        "after a crash the state is no prefix of the {} writes ({} synced): \
                         lost, gapped, resurrected or invented",
                        model.log.len(),
                        model.synced
                    )));
                };
                // What was recovered is durable now; the rest never happened.
                model.log.truncate(prefix);
                model.boundaries.retain(|&b| b <= prefix);
                model.synced = prefix;
            }
        }
    }
    let scanned: BTreeMap<Vec<u8>, Versioned> =
        engine.scan_all().expect("scan").into_iter().collect();
    prop_assert_eq!(scanned, model.current());
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig {
        // `PROPTEST_CASES` overrides this for longer runs.
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(64),
        ..ProptestConfig::default()
    })]

    #[test]
    fn engine_matches_a_btreemap_model_across_crashes(
        ops in prop::collection::vec(op_strategy(), 1..120),
    ) {
        run_case(ops)?;
    }

    /// Flipped bits in tables are reported or harmless, never served:
    /// every read after the damage returns the model's answer or an error.
    #[test]
    fn corrupt_tables_are_reported_never_served(
        writes in prop::collection::vec((0..KEYS_TOTAL, value_strategy()), 20..80),
        flips in prop::collection::vec((any::<prop::sample::Index>(), 0_u8..8), 1..4),
    ) {
        let sim = SimDisk::new(SimDiskFaults::default());
        let mut engine = Engine::open(sim.clone(), options()).expect("open");
        let mut model: BTreeMap<Vec<u8>, Versioned> = BTreeMap::new();
        for (hlc, (k, value)) in (1..).zip(writes) {
            let version = Versioned { timestamp: Timestamp { hlc, node: 1 }, value };
            engine.write(&key(k), version.clone()).expect("write");
            model.insert(key(k), version);
        }
        engine.compact_all().expect("compact");
        engine.sync().expect("sync");
        drop(engine);
        let tables: Vec<String> = sim
            .list()
            .expect("list")
            .into_iter()
            .filter(|name| name.ends_with(".sst"))
            .collect();
        prop_assert!(!tables.is_empty());
        for (index, bit) in flips {
            let table = &tables[index.index(tables.len())];
            let len = sim.open(table).expect("open").len().expect("len");
            sim.flip_bit(table, index.index(len as usize) as u64, bit).expect("flip");
        }
        let engine = match Engine::open(sim.clone(), options()) {
            Ok(engine) => engine,
            Err(EngineError::Corruption { .. } | EngineError::ChecksumMismatch { .. }) => {
                return Ok(());
            }
            Err(other) => return Err(TestCaseError::fail(format!("unexpected error {other}"))),
        };
        for k in 0..KEYS_TOTAL {
            match engine.get(&key(k)) {
                Ok(got) => prop_assert_eq!(got, model.get(&key(k)).cloned(), "get {}", k),
                Err(EngineError::Corruption { file, .. } | EngineError::ChecksumMismatch { file, .. }) => {
                    prop_assert!(file.ends_with(".sst"), "the error names the table");
                }
                Err(other) => return Err(TestCaseError::fail(format!("unexpected error {other}"))),
            }
        }
        match engine.scan_all() {
            Ok(all) => prop_assert_eq!(all.into_iter().collect::<BTreeMap<_, _>>(), model),
            Err(EngineError::Corruption { .. } | EngineError::ChecksumMismatch { .. }) => {}
            Err(other) => return Err(TestCaseError::fail(format!("unexpected error {other}"))),
        }
    }
}
