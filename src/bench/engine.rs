//! `enigma bench engine`: db_bench-style workloads on real files, for
//! EnigmaDB's engine and, with `--compare fjall`, for fjall in the same run.
//!
//! Both engines get the same keys and values: 16-byte keys (the key index in
//! zero-padded decimal, as db_bench writes them) and 100-byte values that
//! compress to about half, as db_bench's: 50 printable bytes drawn from a
//! seeded generator, then those 50 bytes again. Every workload works in a
//! fresh directory under `--dir`, deleted afterwards:
//!
//! - `fillseq`, `fillrandom`: `--keys` writes in key order / in a seeded
//!   random order (each key once), no fsync per write;
//! - `readrandom`: `--reads` point reads of random existing keys after
//!   `fillrandom` (each engine first finishes its pending flushes);
//! - `scan`: `--scans` scans of `--scan-keys` consecutive keys each, from
//!   random starts, in the `fillrandom` data, each key and value read (their
//!   lengths summed): through `Engine::scan_with`, which hands out entries
//!   in place, and through fjall's range iterator;
//! - `fillsync1`, `fillsync4`: `--sync-writes` writes, each acknowledged only
//!   after an fsync covers it, by 1 and by 4 writer threads;
//! - `size`: bytes on disk of the `fillrandom` data after a full
//!   compaction (lower is better);
//! - `fillrandom_rss`: peak resident memory of the process during
//!   `fillrandom` (lower is better);
//! - `readrandom_compacted`: `readrandom` again after the full compaction
//!   of `size`, each engine closed and reopened (a cold block cache): the
//!   read cost of compacted tables (EnigmaDB writes them with zstd, flushed
//!   tables with LZ4).
//!
//! EnigmaDB's engine runs no thread of its own: the benchmark drives its
//! background work (`do_background_work`) every [`TICK_WRITES`] writes, as a
//! node does on its ticks, so flushes and compactions are in the measured
//! time. With 4 writers the engine sits behind a mutex and the writers share
//! fsyncs by leader/follower group commit, as a node's driver does: the
//! first writer to need a sync syncs everything applied so far; the others
//! wait for a sync that covers their write. fjall is configured to match:
//! the same block cache size, journal writes buffered in the process (as
//! EnigmaDB's WAL buffers them) and `PersistMode::SyncData` (fsync, as
//! `FsDisk` syncs) after each acknowledged write of the sync workloads.
//!
//! Each engine runs in its own child process when there is more than one run
//! or engine (the binary re-runs itself with `--engine`), so that peak memory
//! is measured for one engine alone.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Condvar, Mutex};

use anyhow::{bail, ensure, Context as _};
use clap::{Args, ValueEnum};
use enigma_engine::{Engine, EngineOptions, FsDisk, SyncPolicy, Timestamp, Versioned};

use super::{seconds, SplitMix};

/// Bytes of every key.
const KEY_BYTES: usize = 16;
/// Bytes of every value.
const VALUE_BYTES: usize = 100;
/// Bytes of a value drawn at random; the rest repeats them.
const VALUE_RANDOM_BYTES: usize = VALUE_BYTES / 2;
/// Writes between two calls of EnigmaDB's background work.
const TICK_WRITES: u64 = 1024;
/// Bytes of background work allowed per tick (at least one job runs).
const TICK_BUDGET_BYTES: u64 = 8 * 1024 * 1024;
/// Groups a leader commits back to back before it returns to its own
/// writes.
const LEADER_GROUPS_MAX: usize = 16;
/// How long a group-commit leader waits for the other writers to queue
/// before it syncs (it stops waiting as soon as all have).
const GROUP_WAIT: std::time::Duration = std::time::Duration::from_micros(100);
/// Writer threads of `fillsync4`.
const SYNC_WRITERS: usize = 4;
/// Seeds of the key orders, so every run and engine sees the same ones.
const FILL_SEED: u64 = 0x5EED_F111;
const READ_SEED: u64 = 0x5EED_EAD5;
const SCAN_SEED: u64 = 0x5EED_5CA7;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum EngineKind {
    /// EnigmaDB's storage engine.
    Enigma,
    /// fjall (needs a build with `--features fjall`).
    Fjall,
}

impl EngineKind {
    fn name(self) -> &'static str {
        match self {
            EngineKind::Enigma => "enigma",
            EngineKind::Fjall => "fjall",
        }
    }
}

#[derive(Debug, Args)]
pub struct EngineBenchArgs {
    /// Also run every workload against this engine and print the ratio.
    #[arg(long, value_enum)]
    compare: Option<EngineKind>,
    /// The engine to measure (the first column).
    #[arg(long, value_enum, default_value = "enigma")]
    engine: EngineKind,
    /// Keys written by fillseq and fillrandom.
    #[arg(long, default_value_t = 1_000_000)]
    keys: u64,
    /// Point reads of readrandom.
    #[arg(long, default_value_t = 1_000_000)]
    reads: u64,
    /// Consecutive keys per scan.
    #[arg(long, default_value_t = 100_000)]
    scan_keys: u64,
    /// Scans, each from a random start.
    #[arg(long, default_value_t = 10)]
    scans: u64,
    /// Writes of fillsync1 and fillsync4.
    #[arg(long, default_value_t = 50_000)]
    sync_writes: u64,
    /// Block cache of each engine, in MiB.
    #[arg(long, default_value_t = 32)]
    cache_mib: u64,
    /// Where the temporary databases go.
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
    /// Runs of each engine; with more than one, the median is printed.
    #[arg(long, default_value_t = 1)]
    runs: usize,
}

/// One workload's figure: ops/s, or bytes for `size` and `fillrandom_rss`.
type Figures = Vec<(String, f64)>;

/// Names of the workloads, in output order.
const WORKLOADS: [&str; 9] = [
    "fillseq",
    "fillrandom",
    "readrandom",
    "scan",
    "fillsync1",
    "fillsync4",
    "size",
    "fillrandom_rss",
    "readrandom_compacted",
];

/// Runs `enigma bench engine`.
pub fn bench_engine(args: &EngineBenchArgs) -> anyhow::Result<()> {
    ensure!(args.runs >= 1, "--runs must be at least 1");
    ensure!(args.keys >= 1, "--keys must be at least 1");
    ensure!(
        args.scan_keys <= args.keys,
        "--scan-keys {} exceeds --keys {}",
        args.scan_keys,
        args.keys
    );
    ensure!(args.sync_writes >= 1, "--sync-writes must be at least 1");
    if let Some(compare) = args.compare {
        ensure!(
            compare != args.engine,
            "--compare names the engine already measured"
        );
    }
    let engines: Vec<EngineKind> = std::iter::once(args.engine).chain(args.compare).collect();
    for &engine in &engines {
        check_available(engine)?;
    }
    eprintln!(
        "engine benchmark: {} build, load average {}",
        if cfg!(debug_assertions) {
            "DEBUG (figures are not comparable)"
        } else {
            "release"
        },
        load_average()
    );
    let figures: Vec<Vec<Figures>> = if engines.len() == 1 && args.runs == 1 {
        vec![vec![run_workloads(args.engine, args)?]]
    } else {
        // One child per engine and run, interleaved, so that slow phases of
        // a shared machine hit both engines alike.
        let mut per_engine = vec![Vec::new(); engines.len()];
        for run in 0..args.runs {
            for (slot, &engine) in engines.iter().enumerate() {
                eprintln!("run {} of {}: {}", run + 1, args.runs, engine.name());
                per_engine[slot].push(run_child(engine, args)?);
            }
        }
        per_engine
    };
    eprintln!("load average after: {}", load_average());
    for workload in WORKLOADS {
        let mut line = format!("workload={workload}");
        let mut medians = Vec::new();
        for (engine, runs) in engines.iter().zip(&figures) {
            let median = median_of(runs, workload)
                .with_context(|| format!("no figure for {workload} from {}", engine.name()))?;
            write!(line, " {}={}", engine.name(), figure_text(median))?;
            medians.push(median);
        }
        if let [first, second] = medians[..] {
            write!(line, " ratio={:.2}", first / second)?;
        }
        out!("{line}");
    }
    Ok(())
}

fn figure_text(value: f64) -> String {
    format!("{value:.0}")
}

fn median_of(runs: &[Figures], workload: &str) -> Option<f64> {
    let mut values: Vec<f64> = runs
        .iter()
        .filter_map(|figures| {
            figures
                .iter()
                .find(|(name, _)| name == workload)
                .map(|(_, v)| *v)
        })
        .collect();
    if values.len() != runs.len() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied()
}

/// Why `--engine fjall` or `--compare fjall` fails in a default build.
const NO_FJALL: &str =
    "this build has no fjall: rebuild with `cargo build --release --features fjall`";

fn check_available(engine: EngineKind) -> anyhow::Result<()> {
    if engine == EngineKind::Fjall && !cfg!(feature = "fjall") {
        bail!(NO_FJALL);
    }
    Ok(())
}

/// Runs every workload of one engine in a child process (this binary, with
/// `--engine` and one run) and reads its figures back.
fn run_child(engine: EngineKind, args: &EngineBenchArgs) -> anyhow::Result<Figures> {
    let exe = std::env::current_exe().context("cannot find this program to re-run it")?;
    let mut command = Command::new(exe);
    command.args(["bench", "engine", "--engine", engine.name()]);
    for (flag, value) in [
        ("--keys", args.keys),
        ("--reads", args.reads),
        ("--scan-keys", args.scan_keys),
        ("--scans", args.scans),
        ("--sync-writes", args.sync_writes),
        ("--cache-mib", args.cache_mib),
    ] {
        command.args([flag, &value.to_string()]);
    }
    if let Some(dir) = &args.dir {
        command.arg("--dir").arg(dir);
    }
    let output = command.output().context("cannot run the benchmark child")?;
    ensure!(
        output.status.success(),
        "the {} benchmark failed: {}",
        engine.name(),
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8(output.stdout).context("child output is not UTF-8")?;
    let mut figures = Figures::new();
    for line in stdout.lines() {
        let mut workload = None;
        let mut value = None;
        for field in line.split_whitespace() {
            match field.split_once('=') {
                Some(("workload", name)) => workload = Some(name.to_owned()),
                Some((name, text)) if name == engine.name() => value = Some(text.parse::<f64>()?),
                _ => {}
            }
        }
        if let (Some(workload), Some(value)) = (workload, value) {
            figures.push((workload, value));
        }
    }
    Ok(figures)
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|text| {
            text.split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_else(|_| "unknown".to_owned())
}

/// The key of index `i`: zero-padded decimal.
fn key(i: u64) -> [u8; KEY_BYTES] {
    let mut out = [b'0'; KEY_BYTES];
    let mut rest = i;
    for slot in out.iter_mut().rev() {
        *slot = b'0' + (rest % 10) as u8;
        rest /= 10;
    }
    out
}

/// The value written under key index `i`: 50 seeded printable bytes, twice.
fn value(i: u64) -> [u8; VALUE_BYTES] {
    let mut out = [0_u8; VALUE_BYTES];
    let mut rng = SplitMix(i ^ 0xA5A5_5A5A_DEAD_BEEF);
    let mut bits = 0_u64;
    for (n, slot) in out[..VALUE_RANDOM_BYTES].iter_mut().enumerate() {
        if n % 8 == 0 {
            bits = rng.next();
        }
        // 95 printable characters, as db_bench's random strings.
        *slot = b' ' + ((bits & 0xFF) % 95) as u8;
        bits >>= 8;
    }
    out.copy_within(..VALUE_RANDOM_BYTES, VALUE_RANDOM_BYTES);
    out
}

/// A seeded permutation of `0..n`: index `i` of the random order.
struct Permutation {
    n: u64,
    multiplier: u64,
    offset: u64,
}

impl Permutation {
    fn new(n: u64, seed: u64) -> Permutation {
        let mut rng = SplitMix(seed);
        // A multiplier coprime with n makes i -> (i * m + o) mod n a bijection.
        let mut multiplier = (rng.next() % n.max(2)) | 1;
        while gcd(multiplier, n) != 1 {
            multiplier += 2;
        }
        Permutation {
            n,
            multiplier,
            offset: rng.next() % n,
        }
    }

    fn at(&self, i: u64) -> u64 {
        ((u128::from(i) * u128::from(self.multiplier) + u128::from(self.offset))
            % u128::from(self.n)) as u64
    }
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// A fresh, empty directory for one database, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(args: &EngineBenchArgs, engine: EngineKind, workload: &str) -> anyhow::Result<Scratch> {
        let base = args.dir.clone().unwrap_or_else(std::env::temp_dir);
        let path = base.join(format!(
            "enigma-bench-{}-{}-{workload}",
            std::process::id(),
            engine.name()
        ));
        if path.exists() {
            std::fs::remove_dir_all(&path)
                .with_context(|| format!("cannot clear {}", path.display()))?;
        }
        std::fs::create_dir_all(&path)
            .with_context(|| format!("cannot create {}", path.display()))?;
        Ok(Scratch(path))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Bytes the files under `path` take on disk: allocated blocks, not
/// lengths, since fjall preallocates its journal as a sparse file.
fn bytes_on_disk(path: &Path) -> anyhow::Result<u64> {
    use std::os::unix::fs::MetadataExt as _;
    let mut total = 0;
    for entry in std::fs::read_dir(path)? {
        let entry = entry?;
        let metadata = entry.metadata()?;
        if metadata.is_dir() {
            total += bytes_on_disk(&entry.path())?;
        } else {
            total += metadata.blocks() * BLOCK_UNIT_BYTES;
        }
    }
    Ok(total)
}

/// The unit of `st_blocks`.
const BLOCK_UNIT_BYTES: u64 = 512;

/// Resets the process's peak resident set size (Linux), so that the peak
/// read later covers only what follows.
fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// The process's peak resident set size in bytes since the last reset.
fn peak_rss_bytes() -> anyhow::Result<f64> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    let kib: f64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .context("no VmHWM in /proc/self/status")?;
    Ok(kib * 1024.0)
}

fn rate(ops: u64, seconds: f64) -> f64 {
    ops as f64 / seconds.max(1e-9)
}

/// Every workload of one engine, in this process.
fn run_workloads(engine: EngineKind, args: &EngineBenchArgs) -> anyhow::Result<Figures> {
    match engine {
        EngineKind::Enigma => enigma::run(args),
        EngineKind::Fjall => fjall_runs(args),
    }
}

#[cfg(feature = "fjall")]
fn fjall_runs(args: &EngineBenchArgs) -> anyhow::Result<Figures> {
    fjall_bench::run(args)
}

#[cfg(not(feature = "fjall"))]
fn fjall_runs(_args: &EngineBenchArgs) -> anyhow::Result<Figures> {
    bail!(NO_FJALL)
}

mod enigma {
    use std::ops::Bound;

    use super::*;

    fn options(args: &EngineBenchArgs, sync_policy: SyncPolicy) -> EngineOptions {
        EngineOptions {
            sync_policy,
            block_cache_bytes: args.cache_mib * 1024 * 1024,
            ..EngineOptions::default()
        }
    }

    fn open(
        args: &EngineBenchArgs,
        scratch: &Scratch,
        sync_policy: SyncPolicy,
    ) -> anyhow::Result<Engine<FsDisk>> {
        let disk = FsDisk::open(&scratch.0)?;
        Ok(Engine::open(disk, options(args, sync_policy))?)
    }

    /// Hands out timestamps as a node's clock would: each above the last.
    struct Clock(u64);

    impl Clock {
        fn version(&mut self, i: u64) -> Versioned {
            self.0 += 1;
            Versioned {
                timestamp: Timestamp {
                    hlc: self.0,
                    node: 1,
                },
                value: Some(value(i).to_vec()),
            }
        }
    }

    /// Writes key indexes `order(0..n)` with background work on ticks.
    fn fill(
        engine: &mut Engine<FsDisk>,
        clock: &mut Clock,
        n: u64,
        order: impl Fn(u64) -> u64,
    ) -> anyhow::Result<()> {
        for i in 0..n {
            let k = order(i);
            let applied = engine.write(&key(k), clock.version(k))?;
            ensure!(applied, "a write with a fresh timestamp was not applied");
            if i % TICK_WRITES == TICK_WRITES - 1 {
                engine.do_background_work(TICK_BUDGET_BYTES)?;
            }
        }
        Ok(())
    }

    /// Runs background work until none is pending.
    fn settle(engine: &mut Engine<FsDisk>) -> anyhow::Result<()> {
        while engine.do_background_work(u64::MAX)?.work_pending {}
        Ok(())
    }

    pub(super) fn run(args: &EngineBenchArgs) -> anyhow::Result<Figures> {
        let mut figures = Figures::new();
        let kind = EngineKind::Enigma;
        // The sync workloads first, before the fills leave the disk busy
        // writing back.
        {
            let scratch = Scratch::new(args, kind, "fillsync1")?;
            let mut engine = open(args, &scratch, SyncPolicy::Always)?;
            let mut clock = Clock(0);
            let (time, done) = seconds(|| -> anyhow::Result<()> {
                for i in 0..args.sync_writes {
                    engine.write(&key(i), clock.version(i))?;
                    engine.sync()?;
                    if i % TICK_WRITES == TICK_WRITES - 1 {
                        engine.do_background_work(TICK_BUDGET_BYTES)?;
                    }
                }
                Ok(())
            });
            done?;
            figures.push(("fillsync1".to_owned(), rate(args.sync_writes, time)));
        }
        {
            let scratch = Scratch::new(args, kind, "fillsync4")?;
            let engine = open(args, &scratch, SyncPolicy::Always)?;
            let (time, done) = seconds(|| group_commit_fill(engine, args.sync_writes));
            done?;
            figures.push(("fillsync4".to_owned(), rate(args.sync_writes, time)));
        }
        {
            let scratch = Scratch::new(args, kind, "fillseq")?;
            let mut engine = open(args, &scratch, SyncPolicy::Never)?;
            let mut clock = Clock(0);
            let (time, done) = seconds(|| fill(&mut engine, &mut clock, args.keys, |i| i));
            done?;
            figures.push(("fillseq".to_owned(), rate(args.keys, time)));
        }
        let scratch = Scratch::new(args, kind, "fillrandom")?;
        let mut engine = open(args, &scratch, SyncPolicy::Never)?;
        let mut clock = Clock(0);
        let order = Permutation::new(args.keys, FILL_SEED);
        reset_peak_rss();
        let (time, done) = seconds(|| fill(&mut engine, &mut clock, args.keys, |i| order.at(i)));
        done?;
        figures.push(("fillrandom".to_owned(), rate(args.keys, time)));
        figures.push(("fillrandom_rss".to_owned(), peak_rss_bytes()?));

        settle(&mut engine)?;
        figures.push(("readrandom".to_owned(), read_random(&engine, args)?));

        let mut rng = SplitMix(SCAN_SEED);
        let (time, scanned) = seconds(|| -> anyhow::Result<u64> {
            let mut scanned = 0;
            let mut bytes = 0_u64;
            for _ in 0..args.scans {
                let start = key(rng.below(args.keys - args.scan_keys + 1));
                let mut left = args.scan_keys;
                engine.scan_with(
                    Bound::Included(&start[..]),
                    Bound::Unbounded,
                    false,
                    |key, _timestamp, value| {
                        bytes += (key.len() + value.map_or(0, <[u8]>::len)) as u64;
                        left -= 1;
                        left > 0
                    },
                )?;
                scanned += args.scan_keys - left;
            }
            ensure!(bytes > 0, "scans read nothing");
            Ok(scanned)
        });
        let scanned = scanned?;
        ensure!(
            scanned == args.scans * args.scan_keys,
            "scans returned {scanned} keys"
        );
        figures.push(("scan".to_owned(), rate(scanned, time)));

        engine.compact_all()?;
        engine.sync()?;
        // Measured closed and reopened, as for fjall (which deletes
        // replaced files lazily).
        drop(engine);
        let engine = open(args, &scratch, SyncPolicy::Never)?;
        drop(engine);
        figures.push(("size".to_owned(), bytes_on_disk(&scratch.0)? as f64));
        let engine = open(args, &scratch, SyncPolicy::Never)?;
        figures.push((
            "readrandom_compacted".to_owned(),
            read_random(&engine, args)?,
        ));
        drop(engine);
        drop(scratch);

        Ok(figures)
    }

    /// `--reads` point reads of random existing keys: reads per second.
    fn read_random(engine: &Engine<FsDisk>, args: &EngineBenchArgs) -> anyhow::Result<f64> {
        let mut rng = SplitMix(READ_SEED);
        let (time, found) = seconds(|| -> anyhow::Result<u64> {
            let mut found = 0;
            for _ in 0..args.reads {
                let k = key(rng.below(args.keys));
                found += u64::from(engine.get(&k)?.is_some_and(|v| v.value.is_some()));
            }
            Ok(found)
        });
        ensure!(found? == args.reads, "a read missed a written key");
        Ok(rate(args.reads, time))
    }

    /// Writes waiting for a group commit, and what is durable.
    #[derive(Default)]
    struct Commit {
        /// Key indexes of writes not yet taken by a leader, oldest first.
        queued: Vec<u64>,
        /// Writes ever queued: write `n` (from 1) is the `n`-th queued.
        queued_total: u64,
        /// Writes `1..=durable` are applied and synced.
        durable: u64,
        /// A leader is applying and syncing a group now.
        leading: bool,
        /// The first error of a leader: every later write fails.
        failed: Option<String>,
    }

    /// `writes` writes by [`SYNC_WRITERS`] threads, each acknowledged only
    /// once a sync covers it. Leader/follower group commit, as a node's
    /// driver batches the inputs that arrive while it syncs: a writer queues
    /// its write; if no leader is active it becomes one, takes every queued
    /// write, applies them, syncs once and wakes the writers it covered;
    /// while writes queued meanwhile are waiting it commits them too (up to
    /// [`LEADER_GROUPS_MAX`] groups), then hands over. Before each sync it
    /// waits up to [`GROUP_WAIT`] for every writer to have queued.
    fn group_commit_fill(engine: Engine<FsDisk>, writes: u64) -> anyhow::Result<()> {
        let engine = Mutex::new((engine, Clock(0), 0_u64));
        let commit = Mutex::new(Commit::default());
        let durable_changed = Condvar::new();
        let queued_changed = Condvar::new();
        let writer = |thread: u64| -> anyhow::Result<()> {
            let mut i = thread;
            while i < writes {
                let mut state = commit.lock().expect("no writer panics");
                state.queued.push(i);
                state.queued_total += 1;
                let mine = state.queued_total;
                queued_changed.notify_one();
                loop {
                    if let Some(reason) = &state.failed {
                        bail!("group commit failed: {reason}");
                    }
                    if state.durable >= mine {
                        break;
                    }
                    if state.leading {
                        state = durable_changed.wait(state).expect("no writer panics");
                        continue;
                    }
                    // Lead: commit groups back to back while writes keep
                    // arriving (up to a bound, then hand over), so the disk
                    // never waits for a new leader to wake up.
                    state.leading = true;
                    for _ in 0..LEADER_GROUPS_MAX {
                        // Give the other writers, just woken by the last
                        // sync, a moment to queue: one sync then covers
                        // them all (a commit delay, as databases offer).
                        state = queued_changed
                            .wait_timeout_while(state, GROUP_WAIT, |state| {
                                state.queued.len() < SYNC_WRITERS && state.failed.is_none()
                            })
                            .expect("no writer panics")
                            .0;
                        let group = std::mem::take(&mut state.queued);
                        let covered = state.queued_total;
                        drop(state);
                        let result = {
                            let mut guard = engine.lock().expect("no writer panics");
                            let (engine, clock, applied) = &mut *guard;
                            apply_group(engine, clock, applied, &group)
                        };
                        state = commit.lock().expect("no writer panics");
                        match result {
                            Ok(()) => state.durable = covered,
                            Err(err) => state.failed = Some(format!("{err:#}")),
                        }
                        durable_changed.notify_all();
                        if state.queued.is_empty() || state.failed.is_some() {
                            break;
                        }
                    }
                    state.leading = false;
                    durable_changed.notify_all();
                }
                drop(state);
                i += SYNC_WRITERS as u64;
            }
            Ok(())
        };
        std::thread::scope(|scope| {
            let handles: Vec<_> = (0..SYNC_WRITERS as u64)
                .map(|thread| scope.spawn(move || writer(thread)))
                .collect();
            handles
                .into_iter()
                .map(|handle| handle.join().expect("no writer panics"))
                .collect::<anyhow::Result<Vec<()>>>()
        })?;
        Ok(())
    }

    /// Applies a group of writes and syncs once for all of them.
    fn apply_group(
        engine: &mut Engine<FsDisk>,
        clock: &mut Clock,
        applied: &mut u64,
        group: &[u64],
    ) -> anyhow::Result<()> {
        for &i in group {
            engine.write(&key(i), clock.version(i))?;
            *applied += 1;
            if *applied % TICK_WRITES == 0 {
                engine.do_background_work(TICK_BUDGET_BYTES)?;
            }
        }
        engine.sync()?;
        Ok(())
    }
}

#[cfg(feature = "fjall")]
mod fjall_bench {
    use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode};

    use super::*;

    fn open(args: &EngineBenchArgs, scratch: &Scratch) -> anyhow::Result<(Database, Keyspace)> {
        let db = Database::builder(&scratch.0)
            .cache_size(args.cache_mib * 1024 * 1024)
            .manual_journal_persist(true)
            .open()?;
        let keyspace = db.keyspace("bench", KeyspaceCreateOptions::default)?;
        Ok((db, keyspace))
    }

    fn fill(keyspace: &Keyspace, n: u64, order: impl Fn(u64) -> u64) -> anyhow::Result<()> {
        for i in 0..n {
            let k = order(i);
            keyspace.insert(&key(k)[..], &value(k)[..])?;
        }
        Ok(())
    }

    pub(super) fn run(args: &EngineBenchArgs) -> anyhow::Result<Figures> {
        let mut figures = Figures::new();
        let kind = EngineKind::Fjall;
        // The sync workloads first, as for EnigmaDB.
        {
            let scratch = Scratch::new(args, kind, "fillsync1")?;
            let (db, keyspace) = open(args, &scratch)?;
            let (time, done) = seconds(|| -> anyhow::Result<()> {
                for i in 0..args.sync_writes {
                    keyspace.insert(&key(i)[..], &value(i)[..])?;
                    db.persist(PersistMode::SyncData)?;
                }
                Ok(())
            });
            done?;
            figures.push(("fillsync1".to_owned(), rate(args.sync_writes, time)));
        }
        {
            let scratch = Scratch::new(args, kind, "fillsync4")?;
            let (db, keyspace) = open(args, &scratch)?;
            let (time, done) = seconds(|| {
                std::thread::scope(|scope| {
                    let handles: Vec<_> = (0..SYNC_WRITERS as u64)
                        .map(|thread| {
                            let (db, keyspace) = (&db, &keyspace);
                            scope.spawn(move || -> anyhow::Result<()> {
                                let mut i = thread;
                                while i < args.sync_writes {
                                    keyspace.insert(&key(i)[..], &value(i)[..])?;
                                    db.persist(PersistMode::SyncData)?;
                                    i += SYNC_WRITERS as u64;
                                }
                                Ok(())
                            })
                        })
                        .collect();
                    handles
                        .into_iter()
                        .map(|handle| handle.join().expect("no writer panics"))
                        .collect::<anyhow::Result<Vec<()>>>()
                })
            });
            done?;
            figures.push(("fillsync4".to_owned(), rate(args.sync_writes, time)));
        }
        {
            let scratch = Scratch::new(args, kind, "fillseq")?;
            let (_db, keyspace) = open(args, &scratch)?;
            let (time, done) = seconds(|| fill(&keyspace, args.keys, |i| i));
            done?;
            figures.push(("fillseq".to_owned(), rate(args.keys, time)));
        }
        let scratch = Scratch::new(args, kind, "fillrandom")?;
        let (db, keyspace) = open(args, &scratch)?;
        let order = Permutation::new(args.keys, FILL_SEED);
        reset_peak_rss();
        let (time, done) = seconds(|| fill(&keyspace, args.keys, |i| order.at(i)));
        done?;
        figures.push(("fillrandom".to_owned(), rate(args.keys, time)));
        figures.push(("fillrandom_rss".to_owned(), peak_rss_bytes()?));

        figures.push(("readrandom".to_owned(), read_random(&keyspace, args)?));

        let mut rng = SplitMix(SCAN_SEED);
        let (time, scanned) = seconds(|| -> anyhow::Result<u64> {
            let mut scanned = 0;
            let mut bytes = 0_u64;
            for _ in 0..args.scans {
                let start = key(rng.below(args.keys - args.scan_keys + 1));
                for guard in keyspace.range(&start[..]..).take(args.scan_keys as usize) {
                    let (key, value) = guard.into_inner()?;
                    bytes += (key.len() + value.len()) as u64;
                    scanned += 1;
                }
            }
            ensure!(bytes > 0, "scans read nothing");
            Ok(scanned)
        });
        let scanned = scanned?;
        ensure!(
            scanned == args.scans * args.scan_keys,
            "scans returned {scanned} keys"
        );
        figures.push(("scan".to_owned(), rate(scanned, time)));

        keyspace.rotate_memtable_and_wait()?;
        keyspace.major_compact()?;
        db.persist(PersistMode::SyncData)?;
        // fjall deletes replaced tables and flushed journals lazily: measure
        // after closing and reopening.
        drop(keyspace);
        drop(db);
        let (db, keyspace) = open(args, &scratch)?;
        drop(keyspace);
        drop(db);
        figures.push(("size".to_owned(), bytes_on_disk(&scratch.0)? as f64));
        let (db, keyspace) = open(args, &scratch)?;
        figures.push((
            "readrandom_compacted".to_owned(),
            read_random(&keyspace, args)?,
        ));
        drop(keyspace);
        drop(db);
        drop(scratch);

        Ok(figures)
    }

    /// `--reads` point reads of random existing keys: reads per second.
    fn read_random(keyspace: &Keyspace, args: &EngineBenchArgs) -> anyhow::Result<f64> {
        let mut rng = SplitMix(READ_SEED);
        let (time, found) = seconds(|| -> anyhow::Result<u64> {
            let mut found = 0;
            for _ in 0..args.reads {
                let k = key(rng.below(args.keys));
                found += u64::from(keyspace.get(&k[..])?.is_some());
            }
            Ok(found)
        });
        ensure!(found? == args.reads, "a read missed a written key");
        Ok(rate(args.reads, time))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_zero_padded_decimal() {
        assert_eq!(&key(42), b"0000000000000042");
        assert_eq!(&key(9_999_999_999_999_999), b"9999999999999999");
    }

    #[test]
    fn values_repeat_their_printable_half() {
        let v = value(7);
        assert_eq!(v[..VALUE_RANDOM_BYTES], v[VALUE_RANDOM_BYTES..]);
        assert!(v.iter().all(|b| (b' '..=b'~').contains(b)));
        assert_ne!(value(7), value(8));
    }

    #[test]
    fn permutation_visits_every_index_once() {
        for n in [1, 2, 10, 97, 1000] {
            let p = Permutation::new(n, 3);
            let mut seen: Vec<u64> = (0..n).map(|i| p.at(i)).collect();
            seen.sort_unstable();
            assert_eq!(seen, (0..n).collect::<Vec<_>>());
        }
    }
}
