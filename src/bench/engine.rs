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
//! wait for a sync that covers their write, awake for up to
//! [`COMMIT_SPIN`] before they sleep (see `group_commit_fill`); the figure
//! is for an otherwise idle machine, since writers that spin slow down when
//! other work holds the CPUs. fjall is configured to match:
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
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Duration;

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
const GROUP_WAIT: Duration = Duration::from_micros(100);
/// How long a writer waiting for a group commit stays awake (yielding the
/// CPU) before it sleeps. A sleeping thread costs tens of microseconds to
/// wake on a VM (its idle vCPU halts and needs an interrupt to run again),
/// a good part of a sync; a commit pipeline keeps its threads awake.
const COMMIT_SPIN: Duration = Duration::from_millis(1);
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
    #[arg(long, default_value_t = 50)]
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
    /// Run only these workloads.
    #[arg(long, value_enum, default_value = "all")]
    part: Part,
}

/// A group of workloads run in one process. With more than one engine or
/// run, each part runs in its own child process, for every engine in turn
/// before the next part: the two engines' figures for a workload are then
/// measured seconds apart, not a minute (this VM's disk changes its sync
/// rate from minute to minute), and `fillrandom_rss` is measured in a
/// process that ran nothing before.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Part {
    /// Every workload.
    All,
    /// `fillsync1`.
    Fillsync1,
    /// `fillsync4`.
    Fillsync4,
    /// `fillseq`.
    Fillseq,
    /// `fillrandom` and the workloads on its data: `fillrandom_rss`,
    /// `readrandom`, `scan`, `size`, `readrandom_compacted`.
    Fillrandom,
}

impl Part {
    /// The parts a full run is made of, in order: the sync workloads first,
    /// before the fills leave the disk busy writing back.
    const EACH: [Part; 4] = [
        Part::Fillsync1,
        Part::Fillsync4,
        Part::Fillseq,
        Part::Fillrandom,
    ];

    /// Whether running `self` runs the workloads of `part`.
    fn covers(self, part: Part) -> bool {
        self == Part::All || self == part
    }

    fn name(self) -> &'static str {
        match self {
            Part::All => "all",
            Part::Fillsync1 => "fillsync1",
            Part::Fillsync4 => "fillsync4",
            Part::Fillseq => "fillseq",
            Part::Fillrandom => "fillrandom",
        }
    }
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
        vec![vec![run_workloads(args.engine, args.part, args)?]]
    } else {
        // Children per engine, run and part, interleaved (see `Part`), so
        // that slow phases of a shared machine hit both engines alike.
        let parts: Vec<Part> = if args.part == Part::All {
            Part::EACH.to_vec()
        } else {
            vec![args.part]
        };
        let mut per_engine = vec![Vec::new(); engines.len()];
        for run in 0..args.runs {
            for runs in &mut per_engine {
                runs.push(Figures::new());
            }
            for &part in &parts {
                for (slot, &engine) in engines.iter().enumerate() {
                    eprintln!(
                        "run {} of {}: {} {}",
                        run + 1,
                        args.runs,
                        engine.name(),
                        part.name()
                    );
                    per_engine[slot][run].extend(run_child(engine, part, args)?);
                }
            }
        }
        per_engine
    };
    eprintln!("load average after: {}", load_average());
    for workload in WORKLOADS {
        if !figures[0][0].iter().any(|(name, _)| name == workload) {
            continue;
        }
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

/// Runs the workloads of `part` for one engine in a child process (this
/// binary, with `--engine`, `--part` and one run) and reads its figures
/// back.
fn run_child(engine: EngineKind, part: Part, args: &EngineBenchArgs) -> anyhow::Result<Figures> {
    let exe = std::env::current_exe().context("cannot find this program to re-run it")?;
    let mut command = Command::new(exe);
    command.args(["bench", "engine", "--engine", engine.name()]);
    command.args(["--part", part.name()]);
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
fn run_workloads(
    engine: EngineKind,
    part: Part,
    args: &EngineBenchArgs,
) -> anyhow::Result<Figures> {
    match engine {
        EngineKind::Enigma => enigma::run(part, args),
        EngineKind::Fjall => fjall_runs(part, args),
    }
}

#[cfg(feature = "fjall")]
fn fjall_runs(part: Part, args: &EngineBenchArgs) -> anyhow::Result<Figures> {
    fjall_bench::run(part, args)
}

#[cfg(not(feature = "fjall"))]
fn fjall_runs(_part: Part, _args: &EngineBenchArgs) -> anyhow::Result<Figures> {
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

    pub(super) fn run(part: Part, args: &EngineBenchArgs) -> anyhow::Result<Figures> {
        let mut figures = Figures::new();
        let kind = EngineKind::Enigma;
        // The sync workloads first, before the fills leave the disk busy
        // writing back.
        if part.covers(Part::Fillsync1) {
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
        if part.covers(Part::Fillsync4) {
            let scratch = Scratch::new(args, kind, "fillsync4")?;
            let engine = open(args, &scratch, SyncPolicy::Always)?;
            let (time, done) = seconds(|| group_commit_fill(engine, args.sync_writes));
            done?;
            figures.push(("fillsync4".to_owned(), rate(args.sync_writes, time)));
        }
        if part.covers(Part::Fillseq) {
            let scratch = Scratch::new(args, kind, "fillseq")?;
            let mut engine = open(args, &scratch, SyncPolicy::Never)?;
            let mut clock = Clock(0);
            let (time, done) = seconds(|| fill(&mut engine, &mut clock, args.keys, |i| i));
            done?;
            figures.push(("fillseq".to_owned(), rate(args.keys, time)));
        }
        if !part.covers(Part::Fillrandom) {
            return Ok(figures);
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

    /// The state of a group commit. Writers waiting for it stay awake for
    /// up to [`COMMIT_SPIN`], watching the atomics without taking the lock
    /// (a thread that sleeps on a contended lock costs a wake-up, as much as
    /// a sleep on a condition); every change happens under the lock, so
    /// that a writer that does go to sleep on [`Commit::changed`] misses
    /// none.
    struct Commit {
        /// Key indexes of writes not yet taken by a leader, oldest first,
        /// and the first error of a leader (every later write fails).
        queue: Mutex<(Vec<u64>, Option<String>)>,
        /// Signalled on every change of `durable` and `leading`.
        changed: Condvar,
        /// Writes ever queued: write `n` (from 1) is the `n`-th queued.
        queued_total: AtomicU64,
        /// Writes `1..=durable` are applied and synced.
        durable: AtomicU64,
        /// A leader is applying and syncing a group now.
        leading: AtomicBool,
        /// Writers that still have writes to make.
        writers_left: AtomicU64,
    }

    /// The lock of [`Commit::queue`].
    type Queue<'a> = MutexGuard<'a, (Vec<u64>, Option<String>)>;

    impl Commit {
        fn lock(&self) -> Queue<'_> {
            self.queue.lock().expect("no writer panics")
        }

        /// Queues the write of key index `i` (under `queue`, the lock);
        /// returns its number.
        fn push(&self, queue: &mut Queue<'_>, i: u64) -> u64 {
            queue.0.push(i);
            self.queued_total.fetch_add(1, Ordering::AcqRel) + 1
        }

        /// Writes queued and not yet durable: when no group is in flight,
        /// the writes waiting in the queue. (Only the leader, which calls
        /// this, moves `durable`, so it cannot pass the total read first.)
        fn waiting(&self) -> u64 {
            let queued = self.queued_total.load(Ordering::Acquire);
            queued.saturating_sub(self.durable.load(Ordering::Acquire))
        }

        /// Spins (yielding the CPU) until `ready` holds or `spin` has
        /// passed; returns whether it holds.
        fn spin_until(spin: Duration, ready: impl Fn() -> bool) -> bool {
            // The bench's own pacing, never a measured figure.
            #[allow(clippy::disallowed_methods)]
            let started = std::time::Instant::now();
            loop {
                if ready() {
                    return true;
                }
                if started.elapsed() >= spin {
                    return false;
                }
                std::thread::yield_now();
            }
        }
    }

    /// `writes` writes by [`SYNC_WRITERS`] threads, each acknowledged only
    /// once a sync covers it. Leader/follower group commit, as a node's
    /// driver batches the inputs that arrive while it syncs: a writer queues
    /// its write; if no leader is active it becomes one, takes every queued
    /// write, applies them, syncs once and wakes the writers it covered.
    /// It then queues its own next write and commits again while writes are
    /// waiting (up to [`LEADER_GROUPS_MAX`] groups), then hands over. Before
    /// each sync it waits up to [`GROUP_WAIT`] for every writer still
    /// writing to have queued.
    fn group_commit_fill(engine: Engine<FsDisk>, writes: u64) -> anyhow::Result<()> {
        let engine = Mutex::new((engine, Clock(0), 0_u64));
        let commit = Commit {
            queue: Mutex::new((Vec::new(), None)),
            changed: Condvar::new(),
            queued_total: AtomicU64::new(0),
            durable: AtomicU64::new(0),
            leading: AtomicBool::new(false),
            writers_left: AtomicU64::new(SYNC_WRITERS as u64),
        };
        let writer = |thread: u64| -> anyhow::Result<()> {
            // The next key index this writer writes, and the number of its
            // write in flight (0: none yet).
            let mut next = thread;
            let mut mine = 0;
            let mut queue = commit.lock();
            loop {
                if let Some(reason) = &queue.1 {
                    bail!("group commit failed: {reason}");
                }
                if commit.durable.load(Ordering::Acquire) >= mine {
                    if next >= writes {
                        commit.writers_left.fetch_sub(1, Ordering::AcqRel);
                        return Ok(());
                    }
                    mine = commit.push(&mut queue, next);
                    next += SYNC_WRITERS as u64;
                }
                if commit.leading.load(Ordering::Acquire) {
                    let settled = || {
                        commit.durable.load(Ordering::Acquire) >= mine
                            || !commit.leading.load(Ordering::Acquire)
                    };
                    drop(queue);
                    let done = Commit::spin_until(COMMIT_SPIN, settled);
                    queue = commit.lock();
                    if !done {
                        queue = commit
                            .changed
                            .wait_while(queue, |queue| queue.1.is_none() && !settled())
                            .expect("no writer panics");
                    }
                    continue;
                }
                // Lead: commit groups back to back while writes keep
                // arriving (up to a bound, then hand over), so the disk
                // never waits for a new leader to wake up.
                commit.leading.store(true, Ordering::Release);
                for _ in 0..LEADER_GROUPS_MAX {
                    // Give the other writers, just woken by the last sync, a
                    // moment to queue: one sync then covers them all (a
                    // commit delay, as databases offer).
                    drop(queue);
                    Commit::spin_until(GROUP_WAIT, || {
                        commit.waiting() >= commit.writers_left.load(Ordering::Acquire)
                    });
                    queue = commit.lock();
                    let group = std::mem::take(&mut queue.0);
                    let covered = commit.queued_total.load(Ordering::Acquire);
                    drop(queue);
                    let result = {
                        let mut guard = engine.lock().expect("no writer panics");
                        let (engine, clock, applied) = &mut *guard;
                        apply_group(engine, clock, applied, &group)
                    };
                    queue = commit.lock();
                    match result {
                        Ok(()) => commit.durable.store(covered, Ordering::Release),
                        Err(err) => queue.1 = Some(format!("{err:#}")),
                    }
                    commit.changed.notify_all();
                    if queue.1.is_some() {
                        break;
                    }
                    // This writer's write is durable now: its next one
                    // joins the next group, as the others' do.
                    if next < writes {
                        mine = commit.push(&mut queue, next);
                        next += SYNC_WRITERS as u64;
                    }
                    if queue.0.is_empty() {
                        break;
                    }
                }
                commit.leading.store(false, Ordering::Release);
                commit.changed.notify_all();
            }
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

    pub(super) fn run(part: Part, args: &EngineBenchArgs) -> anyhow::Result<Figures> {
        let mut figures = Figures::new();
        let kind = EngineKind::Fjall;
        // The sync workloads first, as for EnigmaDB.
        if part.covers(Part::Fillsync1) {
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
        if part.covers(Part::Fillsync4) {
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
        if part.covers(Part::Fillseq) {
            let scratch = Scratch::new(args, kind, "fillseq")?;
            let (_db, keyspace) = open(args, &scratch)?;
            let (time, done) = seconds(|| fill(&keyspace, args.keys, |i| i));
            done?;
            figures.push(("fillseq".to_owned(), rate(args.keys, time)));
        }
        if !part.covers(Part::Fillrandom) {
            return Ok(figures);
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
