//! `enigma bench`: measurements, not tests (STYLE.md: benchmarks measure;
//! tests check). One sub-subcommand per thing measured, so another target
//! is one more variant of [`BenchTarget`].
//!
//! `enigma bench engine` runs db_bench-style workloads on the storage engine
//! (and on fjall, with `--compare fjall`): see `bench/engine.rs`.
//!
//! `enigma bench server` drives a running node over RESP with closed-loop
//! clients and counts error replies by kind: see `bench/server.rs`.
//!
//! `enigma bench checker` times the linearizability checker on the
//! validation corpus (the etcd set as a whole, each kv file alone), on a
//! generated stress history, and on generated Jepsen register histories
//! (`bench/jepsen.rs`: 10 keys of 10,000 operations, one key of 10,000
//! operations by 10 processes, and, when asked, 100 keys: a million
//! operations), and prints minimum and median wall times over `--repeat`
//! runs. Checking apart from parsing: files are parsed before the clock
//! starts (parse time is printed apart), as Porcupine's figures are. Keys
//! are searched on `--threads` threads (default: the cores available) with
//! the memo budget `enigma check` takes, as `enigma check` does.

mod engine;
mod jepsen;
mod server;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context as _};
use clap::{Args, Subcommand, ValueEnum};
use enigma_checker::format::{parse, Format, ParsedHistory};
use enigma_checker::{load_file, Call, CheckOptions, History, Outcome, Verdict};

#[derive(Debug, Args)]
pub struct BenchArgs {
    #[command(subcommand)]
    target: BenchTarget,
}

#[derive(Debug, Subcommand)]
enum BenchTarget {
    /// Run db_bench-style workloads against the storage engine on real
    /// files (and against fjall with `--compare fjall`).
    Engine(engine::EngineBenchArgs),
    /// Time the history checker on the validation corpus and a generated
    /// stress history.
    Checker(CheckerBenchArgs),
    /// Drive a running node with closed-loop RESP clients (one command in
    /// flight per connection) and print throughput, latency percentiles and
    /// error replies by kind (which, unlike redis-benchmark, do not stop
    /// the run).
    Server(server::ServerBenchArgs),
}

#[derive(Debug, Args)]
struct CheckerBenchArgs {
    /// The validation corpus folder (holding porcupine/etcd and
    /// porcupine/kv).
    #[arg(long, value_name = "DIR", default_value = "../shared/validation")]
    corpus: PathBuf,
    /// Runs of each measurement; the minimum and median are printed.
    #[arg(long, default_value_t = 5)]
    repeat: usize,
    /// Operations in the generated stress history (0: skip it).
    #[arg(long, default_value_t = 100_000)]
    stress_ops: usize,
    /// Client processes in the stress history.
    #[arg(long, default_value_t = 50)]
    stress_processes: u64,
    /// Keys in the stress history.
    #[arg(long, default_value_t = 1_000)]
    stress_keys: u64,
    /// Seed of the stress history.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Keys the checker searches at once, each on its own thread (1: one
    /// after the other). Default: the cores available.
    #[arg(long, value_name = "N")]
    threads: Option<usize>,
    /// Memory the search's memos may hold in all, in MiB, as `enigma
    /// check` takes it. Default: a quarter of physical memory.
    #[arg(long, value_name = "MIB")]
    memory_max_mib: Option<u64>,
    /// What to measure, comma-separated. Default: corpus, stress,
    /// jepsen-keys and jepsen-one-key.
    #[arg(long, value_enum, value_delimiter = ',', value_name = "LIST")]
    only: Vec<Measure>,
    /// Operations per key of the generated Jepsen histories.
    #[arg(long, default_value_t = 10_000)]
    jepsen_ops_per_key: usize,
    /// Percent of their operations that complete `:info` (an operation
    /// left open forever: no quiescent cut follows it).
    #[arg(long, default_value_t = 1)]
    jepsen_info_percent: u64,
    /// Also write each generated Jepsen history into this folder as
    /// `NAME.edn`, to check it with another tool.
    #[arg(long, value_name = "DIR")]
    edn_out: Option<PathBuf>,
}

/// One measurement of `enigma bench checker`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Measure {
    /// The validation corpus (`--corpus`).
    Corpus,
    /// The generated stress history (`--stress-*`).
    Stress,
    /// A Jepsen history of 10 keys, 10 processes per key, about 4.5
    /// operations in flight per key.
    JepsenKeys,
    /// A Jepsen history of one key, 10 processes, about 4.5 operations in
    /// flight.
    JepsenOneKey,
    /// A Jepsen history of 100 keys shaped as `jepsen-keys` (a million
    /// operations at the default size): parsing against checking.
    JepsenManyKeys,
}

impl Measure {
    /// The measurements run when `--only` is not given.
    const DEFAULT: [Measure; 4] = [
        Measure::Corpus,
        Measure::Stress,
        Measure::JepsenKeys,
        Measure::JepsenOneKey,
    ];

    /// The generated history's name and shape, for the Jepsen ones.
    fn jepsen_shape(
        self,
        ops_per_key: usize,
        info_percent: u64,
    ) -> Option<(&'static str, jepsen::Shape)> {
        let shape = |keys| jepsen::Shape {
            keys,
            ops_per_key,
            processes_per_key: JEPSEN_PROCESSES_PER_KEY,
            in_flight_per_key: JEPSEN_IN_FLIGHT_PER_KEY,
            info_percent,
        };
        match self {
            Measure::JepsenKeys => Some(("jepsen-keys", shape(10))),
            Measure::JepsenOneKey => Some(("jepsen-one-key", shape(1))),
            Measure::JepsenManyKeys => Some(("jepsen-many-keys", shape(100))),
            Measure::Corpus | Measure::Stress => None,
        }
    }
}

/// Client processes per key of the generated Jepsen histories.
const JEPSEN_PROCESSES_PER_KEY: u64 = 10;
/// Operations in flight per key, on average, in them.
const JEPSEN_IN_FLIGHT_PER_KEY: f64 = 4.5;

/// Runs `enigma bench`.
pub fn bench(args: &BenchArgs) -> ExitCode {
    let result = match &args.target {
        BenchTarget::Checker(a) => bench_checker(a),
        BenchTarget::Engine(a) => engine::bench_engine(a),
        BenchTarget::Server(a) => server::bench_server(a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// Wall time of `f`, in seconds.
fn seconds<T>(f: impl FnOnce() -> T) -> (f64, T) {
    // Benchmarks are the one place that must read the wall clock; nothing
    // measured here feeds back into what is measured.
    #[allow(clippy::disallowed_methods)]
    let started = std::time::Instant::now();
    let out = f();
    (started.elapsed().as_secs_f64(), out)
}

/// Minimum and median of `repeat` timings of `f`, and its last result.
fn timed<T>(repeat: usize, mut f: impl FnMut() -> T) -> (f64, f64, T) {
    assert!(repeat > 0, "at least one run");
    let mut times = Vec::with_capacity(repeat);
    let mut last = None;
    for _ in 0..repeat {
        let (t, out) = seconds(&mut f);
        times.push(t);
        last = Some(out);
    }
    times.sort_by(f64::total_cmp);
    (
        times[0],
        times[times.len() / 2],
        last.expect("ran at least once"),
    )
}

fn ms(seconds: f64) -> String {
    format!("{:.1} ms", seconds * 1e3)
}

fn files_in(dir: &Path, extension: &str) -> anyhow::Result<Vec<PathBuf>> {
    let entries =
        std::fs::read_dir(dir).with_context(|| format!("cannot list {}", dir.display()))?;
    let mut files = Vec::new();
    for entry in entries {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == extension) {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

fn verdict_word(v: &Verdict) -> &'static str {
    match v {
        Verdict::Linearizable => "linearizable",
        Verdict::NotLinearizable(_) => "not-linearizable",
        Verdict::Unknown { .. } => "unknown",
    }
}

fn bench_checker(args: &CheckerBenchArgs) -> anyhow::Result<()> {
    if args.repeat == 0 {
        bail!("--repeat must be at least 1");
    }
    let options = crate::check::check_options(args.threads, args.memory_max_mib)?;
    out!(
        "checker benchmark: {} (min / median of {} runs, checking only, {} thread(s), memo budget {} MiB per key)",
        if cfg!(debug_assertions) {
            "DEBUG build, numbers are not comparable"
        } else {
            "release build"
        },
        args.repeat,
        options.threads,
        options.limits_per_key.memo_bytes_max >> 20
    );
    let measures: &[Measure] = if args.only.is_empty() {
        &Measure::DEFAULT
    } else {
        &args.only
    };
    for &measure in measures {
        match measure {
            Measure::Corpus => bench_corpus(args, &options)?,
            Measure::Stress => bench_stress(args, &options),
            _ => bench_jepsen(args, &options, measure)?,
        }
    }
    Ok(())
}

/// A generated Jepsen history: generated, parsed and checked, each timed.
fn bench_jepsen(
    args: &CheckerBenchArgs,
    options: &CheckOptions,
    measure: Measure,
) -> anyhow::Result<()> {
    if args.jepsen_info_percent > 100 {
        bail!("--jepsen-info-percent must be at most 100");
    }
    let Some((name, shape)) =
        measure.jepsen_shape(args.jepsen_ops_per_key, args.jepsen_info_percent)
    else {
        bail!("{measure:?} is not a generated Jepsen history");
    };
    let (generate_time, (text, generated)) = seconds(|| jepsen::register_history(args.seed, shape));
    if let Some(dir) = &args.edn_out {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let path = dir.join(format!("{name}.edn"));
        std::fs::write(&path, &text).with_context(|| format!("cannot write {}", path.display()))?;
    }
    let (parse_min, parse_median, history) = timed(args.repeat, || parse(&text, Format::JepsenEdn));
    let history = history.context("the generated history does not parse")?;
    let (min, median, verdict) = timed(args.repeat, || history.check(options));
    out!(
        "{name}: {} ops ({} info, {} failed cas), {} key(s), {} processes per key, {} in flight per key: check {} min, {} median; parse {} min, {} median ({:.1} MB of EDN); generate {}; {}",
        generated.ops,
        generated.info,
        generated.failed_cas,
        shape.keys,
        shape.processes_per_key,
        shape.in_flight_per_key,
        ms(min),
        ms(median),
        ms(parse_min),
        ms(parse_median),
        text.len() as f64 / 1e6,
        ms(generate_time),
        verdict_word(&verdict)
    );
    if let Verdict::Unknown { reason } = &verdict {
        out!("  {reason}");
    }
    Ok(())
}

/// The validation corpus: the etcd set as a whole, each kv file alone.
fn bench_corpus(args: &CheckerBenchArgs, options: &CheckOptions) -> anyhow::Result<()> {
    let root = args.corpus.join("porcupine");

    let etcd_files = files_in(&root.join("etcd"), "log")?;
    let (parse_time, etcd) = seconds(|| {
        etcd_files
            .iter()
            .map(|p| load_file(p))
            .collect::<Result<Vec<ParsedHistory>, _>>()
    });
    let etcd = etcd?;
    let ops: usize = etcd.iter().map(ParsedHistory::len).sum();
    let (min, median, verdicts) = timed(args.repeat, || {
        etcd.iter().map(|h| h.check(options)).collect::<Vec<_>>()
    });
    let count = |word| verdicts.iter().filter(|v| verdict_word(v) == word).count();
    out!(
        "etcd: {} files, {ops} ops: check {} min, {} median; parse {}; {} linearizable, {} not, {} unknown",
        etcd.len(),
        ms(min),
        ms(median),
        ms(parse_time),
        count("linearizable"),
        count("not-linearizable"),
        count("unknown"),
    );

    for path in files_in(&root.join("kv"), "txt")? {
        let history = load_file(&path)?;
        let (min, median, verdict) = timed(args.repeat, || history.check(options));
        out!(
            "kv/{}: {} ops: check {} min, {} median; {}",
            path.file_name()
                .map_or_else(String::new, |n| n.to_string_lossy().into_owned()),
            history.len(),
            ms(min),
            ms(median),
            verdict_word(&verdict)
        );
    }

    Ok(())
}

/// The generated stress history (skipped when `--stress-ops` is 0).
fn bench_stress(args: &CheckerBenchArgs, options: &CheckOptions) {
    if args.stress_ops > 0 {
        let (generate_time, (history, info)) = seconds(|| {
            stress_history(
                args.seed,
                args.stress_ops,
                args.stress_processes.max(1),
                args.stress_keys.max(1),
            )
        });
        let (min, median, verdict) = timed(args.repeat, || {
            enigma_checker::check_linearizable_with(&history, options)
        });
        out!(
            "stress: {} ops ({info} info), {} processes, {} keys: check {} min, {} median ({:.0} ops/s); generate {}; {}",
            history.len(),
            args.stress_processes,
            args.stress_keys,
            ms(min),
            ms(median),
            history.len() as f64 / min.max(1e-9),
            ms(generate_time),
            verdict_word(&verdict)
        );
    }
}

/// SplitMix64: a tiny, seeded generator; enough to shape a benchmark input.
#[derive(Debug)]
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Percent of stress operations whose outcome is recorded as `info`.
const STRESS_INFO_PERCENT: u64 = 2;
/// Largest latency of a stress operation, in nanoseconds.
const STRESS_LATENCY_MAX_NANOS: u64 = 5_000;

/// A linearizable register history: each operation takes effect at a random
/// point inside its interval, against a real map of registers; about
/// `STRESS_INFO_PERCENT` of operations end `info` (half of those took
/// effect). Returns the history and its number of `info` operations.
fn stress_history(seed: u64, ops: usize, processes: u64, keys: u64) -> (History, usize) {
    struct Planned {
        process: u64,
        key: String,
        call: Call,
        invoke: u64,
        effect: u64,
        response: u64,
        info: bool,
        applies: bool,
    }
    let mut rng = SplitMix(seed);
    let mut clocks = vec![0u64; processes as usize];
    let mut planned = Vec::with_capacity(ops);
    let mut next_value = 1i64;
    for _ in 0..ops {
        let process = rng.below(processes);
        let clock = &mut clocks[process as usize];
        let invoke = *clock + 1 + rng.below(STRESS_LATENCY_MAX_NANOS);
        let effect = invoke + rng.below(STRESS_LATENCY_MAX_NANOS);
        let response = effect + rng.below(STRESS_LATENCY_MAX_NANOS);
        *clock = response;
        let call = match rng.below(10) {
            0..=4 => Call::Read,
            5..=7 => {
                next_value += 1;
                Call::Write(Some(next_value))
            }
            _ => {
                next_value += 1;
                Call::Cas {
                    expected: Some(next_value - 1 - rng.below(3) as i64),
                    new: Some(next_value),
                }
            }
        };
        let info = rng.below(100) < STRESS_INFO_PERCENT;
        planned.push(Planned {
            process,
            key: format!("k{}", rng.below(keys)),
            call,
            invoke,
            effect,
            response,
            info,
            applies: !info || rng.below(2) == 0,
        });
    }
    // Outcomes, in order of effect.
    let mut order: Vec<usize> = (0..planned.len()).collect();
    order.sort_by_key(|&i| (planned[i].effect, i));
    let mut registers: std::collections::BTreeMap<&str, Option<i64>> = Default::default();
    let mut outcomes = vec![Outcome::Info; planned.len()];
    for i in order {
        let p = &planned[i];
        let register = registers.entry(p.key.as_str()).or_insert(None);
        let outcome = match &p.call {
            Call::Read => Outcome::Ok { value: *register },
            Call::Write(v) => {
                if p.applies {
                    *register = *v;
                }
                Outcome::Ok { value: None }
            }
            Call::Cas { expected, new } => {
                if *register == *expected {
                    if p.applies {
                        *register = *new;
                    }
                    Outcome::Ok { value: None }
                } else {
                    Outcome::Refused
                }
            }
        };
        outcomes[i] = if p.info { Outcome::Info } else { outcome };
    }
    // Record invocations and completions in time order.
    let mut events: Vec<(u64, bool, usize)> = Vec::with_capacity(planned.len() * 2);
    for (i, p) in planned.iter().enumerate() {
        events.push((p.invoke, true, i));
        events.push((p.response, false, i));
    }
    events.sort_unstable();
    let mut history = History::new();
    let mut ids = vec![None; planned.len()];
    for (time, is_invoke, i) in events {
        let p = &planned[i];
        if is_invoke {
            ids[i] = Some(history.invoke(p.process, &p.key, p.call.clone(), time));
        } else {
            let id = ids[i].expect("invoked before it responds");
            history.complete(id, time, outcomes[i].clone());
        }
    }
    let info = planned.iter().filter(|p| p.info).count();
    (history, info)
}
