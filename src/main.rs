//! `enigma`: the EnigmaDB command line.
//!
//! Subcommands:
//! - `enigma sim`: deterministic simulation of a whole cluster under faults,
//!   one seed (`--seed`) or a sweep (`--seeds N`), each checked.
//! - `enigma check FILE`: is a recorded history linearizable (see
//!   `check.rs`)?
//! - `enigma bench checker`: time the history checker (see `bench.rs`).
//! - `enigma node`: one node of a real cluster (see `enigmadb::run`).
//! - `enigma dev`: a three-node cluster on loopback, for trying EnigmaDB.
//! - `enigma status --node ADDR`: membership as one node sees it.
//! - `enigma repair --node ADDR`: a full anti-entropy pass on one node, now.
//! - `enigma chaos`: real node processes under faults, checked (see
//!   `chaos/mod.rs`).

/// `println!` for the commands' reports: when the reader has gone away
/// (`enigma sim --trace | head`), the process ends quietly with status 141,
/// as a Unix tool killed by `SIGPIPE` would, instead of panicking. (Rust
/// ignores `SIGPIPE`, which the server needs, so writes see `BrokenPipe`.)
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::print_line(format_args!($($arg)*))
    };
}

mod bench;
mod chaos;
mod check;

use std::collections::BTreeMap;
use std::path::Path;

/// The server allocates a few small buffers per request (arguments, keys,
/// replies); mimalloc serves those faster than the system allocator.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use enigma_checker::{CounterCall, CounterOutcome};
use enigma_cluster::ConsistencyLevel;
use enigma_sim::run::median_and_mean;
use enigma_sim::{run, run_recorded, RunReport, SimConfig, SimWorkload, SweepReport};

#[derive(Debug, Parser)]
#[command(
    name = "enigma",
    version,
    about = "EnigmaDB: a replicated key-value store built under simulation"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Simulate a cluster under faults and check what its clients saw.
    ///
    /// Exit status: 0 when every check passes, 1 when one fails, 2 for bad
    /// arguments.
    Sim(SimArgs),
    /// Check a recorded history (EnigmaDB JSON Lines, Jepsen EDN or Jepsen
    /// log) for linearizability, or, when its operations record consistency
    /// levels, for what each level promises.
    ///
    /// A history without levels gets `verdict: linearizable`,
    /// `not-linearizable` or `unknown`. A history with levels (and an
    /// optional `run` line: clock skew, replication factor) prints one line
    /// per check (linearizability where promised, lost-write,
    /// read-your-writes, monotonic-reads, set-completeness, convergence),
    /// then `verdict: linearizable` (every operation promised it and all
    /// held), `promises-kept`, `not-linearizable`, `promise-broken` or
    /// `unknown`.
    ///
    /// Exit status: 0 linearizable or promises kept, 1 not linearizable or
    /// a promise broken, 2 unknown or unusable input.
    Check(check::CheckArgs),
    /// Measure performance (release builds only give meaningful numbers).
    Bench(bench::BenchArgs),
    /// Run one node of a cluster: RESP clients, TCP peers, files on disk.
    ///
    /// Settings come from flags, then ENIGMA_* environment variables, then
    /// the --config TOML file, then defaults. SIGINT or SIGTERM stops it
    /// cleanly (exit 0).
    Node(Box<enigmadb::run::NodeCommand>),
    /// Run a three-node cluster on loopback in this process, data under
    /// ./enigma-data, and print where to point redis-cli.
    Dev(enigmadb::run::DevArgs),
    /// Show membership, ring ownership and which peers are up, as one node
    /// sees them.
    Status(StatusArgs),
    /// Run a full anti-entropy pass over every range one node replicates,
    /// now, and print what it did.
    Repair(StatusArgs),
    /// Run real `enigma node` processes under faults (kills, pauses,
    /// partitions as root, clock skew with libfaketime) with concurrent
    /// clients, heal, wait for the replicas to agree, and check the history
    /// as `enigma check` does.
    ///
    /// Exit status: 0 the level's promises held, 1 one was broken (or a
    /// node died by itself), 2 unknown or the run could not be made.
    Chaos(chaos::ChaosArgs),
}

#[derive(Debug, Args)]
struct StatusArgs {
    /// The node's client address, HOST:PORT.
    #[arg(long, default_value = "127.0.0.1:7001")]
    node: String,
    /// Password, when the node has a requirepass.
    #[arg(long, env = "ENIGMA_PASSWORD", hide_env_values = true)]
    password: Option<String>,
}

#[derive(Debug, Args)]
struct SimArgs {
    /// Run this one seed (decimal or 0x-prefixed hex) and report it in detail.
    #[arg(long, value_parser = parse_seed, conflicts_with = "seeds")]
    seed: Option<u64>,
    /// Run this many consecutive seeds and report the failing ones.
    #[arg(long)]
    seeds: Option<u64>,
    /// Threads a sweep runs seeds on (default: one per core). Each run is
    /// the same whatever the count.
    #[arg(long, requires = "seeds")]
    jobs: Option<usize>,
    /// First seed of a sweep.
    #[arg(long, value_parser = parse_seed, default_value = "0", requires = "seeds")]
    start: u64,
    /// Nodes in the cluster.
    #[arg(long, default_value_t = SimConfig::default().nodes)]
    nodes: usize,
    /// Replication factor.
    #[arg(long, default_value_t = SimConfig::default().replication_factor)]
    rf: usize,
    /// Concurrent clients.
    #[arg(long, default_value_t = SimConfig::default().clients)]
    clients: usize,
    /// Client operations per run.
    #[arg(long, default_value_t = SimConfig::default().ops)]
    ops: usize,
    /// Keys the clients share.
    #[arg(long, default_value_t = SimConfig::default().keys)]
    keys: usize,
    /// Consistency level of reads and writes: ONE, TWO, QUORUM, ALL or SERIAL.
    #[arg(long, default_value_t = SimConfig::default().level)]
    level: ConsistencyLevel,
    /// What the clients do: `register` (reads, writes, deletes, and at
    /// SERIAL compare-and-sets) or `incr` (SERIAL only: increments and
    /// reads, each key checked as a linearizable counter).
    #[arg(long, value_name = "register|incr", default_value_t = SimWorkload::Register)]
    workload: SimWorkload,
    /// Inject faults (crashes, partitions, loss, duplication, torn writes):
    /// `on` or `off`.
    #[arg(long, value_name = "on|off", value_parser = parse_on_off,
          default_value = "on", action = clap::ArgAction::Set)]
    faults: bool,
    /// Largest wall-clock offset of a node, in milliseconds. Above zero,
    /// QUORUM/ALL no longer promise linearizability (unless `--commit-wait`):
    /// the history is held to the lost-write and session checks instead.
    #[arg(long, default_value_t = 0)]
    clock_skew_max_ms: u64,
    /// Coordinators hold each answer until their wall clock has passed its
    /// version's timestamp by the clock uncertainty (twice the run's clock
    /// bound, plus 1 ms): QUORUM/ALL are then checked for linearizability
    /// under clock skew too.
    #[arg(long)]
    commit_wait: bool,
    /// Node n1's wall clock runs this many ms ahead, beyond the cluster's
    /// bound, until the faults stop: its peers must refuse its readings
    /// and it must refuse writes (0: off).
    #[arg(long, default_value_t = 0)]
    clock_far_ahead_ms: u64,
    /// Each node's memtable size before it is flushed as a table (small, so
    /// that flushes and compactions run).
    #[arg(long, default_value_t = SimConfig::default().memtable_bytes)]
    memtable_bytes: usize,
    /// One stored value in 32 is padded to this many bytes.
    #[arg(long, default_value_t = SimConfig::default().value_bytes)]
    value_bytes: usize,
    /// Let the nemesis crash nodes (each seed draws whether it does):
    /// `on` or `off`.
    #[arg(long, value_name = "on|off", value_parser = parse_on_off,
          default_value = "on", action = clap::ArgAction::Set)]
    crashes: bool,
    /// Hinted handoff: `on` or `off`.
    #[arg(long, value_name = "on|off", value_parser = parse_on_off,
          default_value = "on", action = clap::ArgAction::Set)]
    hints: bool,
    /// Continuous anti-entropy: `on` or `off` (off needs --crashes off).
    #[arg(long, value_name = "on|off", value_parser = parse_on_off,
          default_value = "on", action = clap::ArgAction::Set)]
    anti_entropy: bool,
    /// Every seed draws the stored-damage family (bit rot and misdirected
    /// writes in tables, rebuilt nodes; bounded as usual), not one in three.
    #[arg(long)]
    always_stored_damage: bool,
    /// Every seed draws the full-disk family (needs --crashes on), not one
    /// in four.
    #[arg(long)]
    always_full_disks: bool,
    /// Print every event of the run as a timeline (single seed only).
    #[arg(long, requires = "seed")]
    trace: bool,
    /// Print the client history (single seed only).
    #[arg(long, requires = "seed")]
    history: bool,
    /// Write the client history to this file as JSON Lines, the format
    /// `enigma check` reads (single seed only).
    #[arg(long, requires = "seed", value_name = "FILE")]
    history_out: Option<std::path::PathBuf>,
    /// Write a picture of the run to this file: one self-contained HTML
    /// page with a lane per node and client on the virtual-time axis,
    /// operations, messages, faults and, for a failing run, the violating
    /// operations and the failing window (single seed only).
    #[arg(long, requires = "seed", value_name = "FILE")]
    html: Option<std::path::PathBuf>,
    /// Write the run's schedule (its faults and client operations, each at
    /// its virtual time; docs/FORMAT.md) to this file (single seed only).
    #[arg(long, requires = "seed", value_name = "FILE", conflicts_with_all = ["schedule", "html"])]
    schedule_out: Option<std::path::PathBuf>,
    /// Replay this schedule file instead of drawing faults and operations
    /// (its seed must be --seed; the register workload only).
    #[arg(long, requires = "seed", value_name = "FILE", conflicts_with = "html")]
    schedule: Option<std::path::PathBuf>,
    /// Search for a smaller run that fails with the same property (fewer
    /// operations, faults, keys and clients, a shorter schedule), print it
    /// and its repro line, and write its schedule (see --shrink-out).
    #[arg(long, requires = "seed", conflicts_with_all = ["schedule", "schedule_out", "html"])]
    shrink: bool,
    /// Where --shrink writes the shrunk schedule (default:
    /// shrunk-SEED.jsonl in the current directory).
    #[arg(long, requires = "shrink", value_name = "FILE")]
    shrink_out: Option<std::path::PathBuf>,
    /// Runs --shrink may make at most.
    #[arg(long, requires = "shrink", value_name = "N",
          default_value_t = enigma_sim::shrink::SHRINK_BUDGET_DEFAULT)]
    shrink_budget: usize,
}

fn default_jobs() -> usize {
    std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
}

fn parse_seed(text: &str) -> Result<u64, String> {
    let parsed = match text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => text.parse(),
    };
    parsed.map_err(|e| format!("{text:?} is not a seed (decimal or 0x-hex u64): {e}"))
}

fn parse_on_off(text: &str) -> Result<bool, String> {
    match text {
        "on" | "true" | "yes" => Ok(true),
        "off" | "false" | "no" => Ok(false),
        _ => Err(format!("{text:?}: expected on or off")),
    }
}

/// Writes one line to standard output; see [`out!`].
fn print_line(args: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    let written = stdout
        .write_fmt(args)
        .and_then(|()| stdout.write_all(b"\n"));
    match written {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => std::process::exit(141),
        Err(e) => {
            eprintln!("error: cannot write to standard output: {e}");
            std::process::exit(1);
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Sim(args) => sim(&args),
        Command::Check(args) => check::check(&args),
        Command::Bench(args) => bench::bench(&args),
        Command::Node(args) => enigmadb::run::node(&args),
        Command::Dev(args) => enigmadb::run::dev(&args),
        Command::Status(args) => status(&args),
        Command::Repair(args) => repair(&args),
        Command::Chaos(args) => chaos::chaos(&args),
    }
}

fn repair(args: &StatusArgs) -> ExitCode {
    match enigmadb::status::run_repair(&args.node, args.password.as_deref()) {
        Ok(report) => {
            for line in report.lines() {
                out!("{line}");
            }
            if report
                .lines()
                .any(|l| l.starts_with("ranges_failed:") && l != "ranges_failed:0")
            {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            }
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}

fn status(args: &StatusArgs) -> ExitCode {
    let table = enigmadb::status::fetch_membership(&args.node, args.password.as_deref())
        .and_then(|text| enigmadb::status::format_membership(&text));
    match table {
        Ok(table) => {
            out!("{}", table.trim_end_matches('\n'));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
}

fn sim(args: &SimArgs) -> ExitCode {
    let config = SimConfig {
        seed: args.seed.unwrap_or(args.start),
        nodes: args.nodes,
        replication_factor: args.rf,
        clients: args.clients,
        ops: args.ops,
        keys: args.keys,
        level: args.level,
        workload: args.workload,
        faults: args.faults,
        clock_skew_max_ms: args.clock_skew_max_ms,
        commit_wait: args.commit_wait,
        clock_far_ahead_ms: args.clock_far_ahead_ms,
        trace: args.trace,
        memtable_bytes: args.memtable_bytes,
        value_bytes: args.value_bytes,
        crashes: args.crashes,
        hinted_handoff: args.hints,
        anti_entropy: args.anti_entropy,
        always_stored_damage: args.always_stored_damage,
        always_full_disks: args.always_full_disks,
        ..SimConfig::default()
    };
    if let Err(e) = config.validate() {
        eprintln!("error: {e}");
        return ExitCode::from(2);
    }
    // clap's `requires = "seed"` does not stop these in a sweep, which
    // would then ignore them.
    let single_run_only = [
        ("--html", args.html.is_some()),
        ("--trace", args.trace),
        ("--history", args.history),
        ("--history-out", args.history_out.is_some()),
        ("--schedule-out", args.schedule_out.is_some()),
        ("--schedule", args.schedule.is_some()),
        ("--shrink", args.shrink),
    ];
    if args.seed.is_none() {
        if let Some((flag, _)) = single_run_only.iter().find(|(_, given)| *given) {
            eprintln!("error: {flag} describes one run: it needs --seed");
            return ExitCode::from(2);
        }
    }
    if args.seeds.is_none()
        && (args.schedule.is_some() || args.schedule_out.is_some() || args.shrink)
    {
        return sim_scheduled(args, &config);
    }
    match args.seeds {
        Some(count) => sim_sweep(&config, count, args.jobs.unwrap_or_else(default_jobs)),
        None => sim_one(
            &config,
            args.history,
            args.history_out.as_deref(),
            args.html.as_deref(),
        ),
    }
}

fn sim_one(
    config: &SimConfig,
    show_history: bool,
    history_out: Option<&Path>,
    html: Option<&Path>,
) -> ExitCode {
    let report = match html {
        Some(path) => {
            let (report, recording) = run_recorded(config);
            let page = enigma_sim::html::render(&report, &recording);
            if let Err(e) = std::fs::write(path, page) {
                eprintln!("error: cannot write the picture to {}: {e}", path.display());
                return ExitCode::from(2);
            }
            report
        }
        None => run(config),
    };
    report_one(config, &report, show_history, history_out, "")
}

/// `enigma sim --seed S` with `--schedule-out`, `--schedule` or `--shrink`
/// (docs/FAULTS.md, "Schedules and shrinking").
fn sim_scheduled(args: &SimArgs, config: &SimConfig) -> ExitCode {
    use enigma_sim::run::{check_schedule, run_schedule_recorded, run_scheduled};
    use enigma_sim::schedule::Schedule;
    let write = |path: &Path, schedule: &Schedule| {
        std::fs::write(path, schedule.to_json_lines()).map_err(|e| {
            eprintln!(
                "error: cannot write the schedule to {}: {e}",
                path.display()
            );
            ExitCode::from(2)
        })
    };
    let history_out = args.history_out.as_deref();
    if let Some(path) = &args.schedule {
        let parsed = std::fs::read_to_string(path)
            .map_err(|e| e.to_string())
            .and_then(|text| Schedule::parse(&text))
            .and_then(|schedule| {
                if schedule.seed != config.seed {
                    return Err(format!(
                        "the schedule is for seed {:#x}, not --seed {:#x}",
                        schedule.seed, config.seed
                    ));
                }
                check_schedule(config, &schedule).map(|()| schedule)
            });
        let schedule = match parsed {
            Ok(schedule) => schedule,
            Err(e) => {
                eprintln!("error: schedule {}: {e}", path.display());
                return ExitCode::from(2);
            }
        };
        out!(
            "schedule: {} operations, {} faults, {} keys, {} clients",
            schedule.ops(),
            schedule.faults(),
            schedule.keys,
            schedule.clients
        );
        let report = run_scheduled(config, &schedule);
        let suffix = format!(" --schedule {}", path.display());
        return report_one(config, &report, args.history, history_out, &suffix);
    }
    if let Some(path) = &args.schedule_out {
        let (report, schedule) = run_schedule_recorded(config);
        if let Err(code) = write(path, &schedule) {
            return code;
        }
        return report_one(config, &report, args.history, history_out, "");
    }
    if let Err(e) = enigma_sim::run::check_schedule(
        config,
        &Schedule {
            seed: config.seed,
            nodes: config.nodes,
            keys: config.keys,
            clients: config.clients,
            faults_stop_nanos: 0,
            heal: true,
            liveness_ops: 0,
            entries: Vec::new(),
        },
    ) {
        eprintln!("error: --shrink: {e}");
        return ExitCode::from(2);
    }
    let shrunk = match enigma_sim::shrink::shrink(config, args.shrink_budget) {
        Ok(shrunk) => shrunk,
        Err(e) => {
            eprintln!("shrink: {e}");
            return ExitCode::from(u8::from(e != enigma_sim::shrink::ShrinkError::Passed));
        }
    };
    let path = args
        .shrink_out
        .clone()
        .unwrap_or_else(|| format!("shrunk-{:#x}.jsonl", config.seed).into());
    if let Err(code) = write(&path, &shrunk.shrunk) {
        return code;
    }
    let (original, small) = (&shrunk.original, &shrunk.shrunk);
    out!(
        "shrink: {} in {} runs: {} -> {} entries ({} -> {} operations, {} -> {} faults), \
         {} -> {} keys, {} -> {} clients, heal {}, {} liveness operations; {} -> {} events ({:.1}%)",
        shrunk.property,
        shrunk.runs,
        original.entries.len(),
        small.entries.len(),
        original.ops(),
        small.ops(),
        original.faults(),
        small.faults(),
        original.keys,
        small.keys,
        original.clients,
        small.clients,
        if small.heal { "kept" } else { "skipped" },
        small.liveness_ops,
        shrunk.original_events,
        shrunk.shrunk_run.stats.events,
        shrunk.events_ratio() * 100.0,
    );
    out!("shrunk schedule: {}", path.display());
    let suffix = format!(" --schedule {}", path.display());
    report_one(
        config,
        &shrunk.shrunk_run,
        args.history,
        history_out,
        &suffix,
    )
}

/// Prints one run's report (and writes its history when asked); the repro
/// line ends with `repro_suffix`. Exit status 1 when the run failed.
fn report_one(
    config: &SimConfig,
    report: &RunReport,
    show_history: bool,
    history_out: Option<&Path>,
    repro_suffix: &str,
) -> ExitCode {
    if let Some(path) = history_out {
        if let Err(e) = std::fs::write(path, report.history_json_lines()) {
            eprintln!("error: cannot write the history to {}: {e}", path.display());
            return ExitCode::from(2);
        }
    }
    if let Some(timeline) = &report.timeline {
        for line in timeline {
            out!("{line}");
        }
    }
    if show_history {
        for op in report.history.operations() {
            out!("{op}");
        }
    }
    let stats = &report.stats;
    out!("seed: {:#x}", config.seed);
    out!("swarm: {}", report.swarm);
    out!(
        "ops: {} ok, {} fail, {} info; {} events, {:.1}s virtual, {} crashes, {} partitions, {} messages",
        stats.ops_ok,
        stats.ops_fail,
        stats.ops_info,
        stats.events,
        stats.virtual_nanos as f64 / 1e9,
        stats.crashes,
        stats.partitions,
        stats.messages,
    );
    out!(
        "storage: {} flushes, {} compactions, {} acknowledged replica writes held to durability",
        stats.tables_flushed,
        stats.compactions,
        stats.writes_acknowledged
    );
    out!(
        "faults: {} crashes before and {} during a sync, {} inside a background job, {} bridge and {} one-way partitions, \
         {} pauses, {} swizzles, {} clock jumps, {} bad-read windows ({} storage errors met), \
         {} failed syncs, {} full disks, {} buggify firings, {} stale messages, {} crash-loop restarts, \
         {} bits rotted and {} misdirected writes in stored tables, {} and {} in sealed log segments \
         ({} tables quarantined, {} nodes rebuilt, {} Paxos messages sat out after a loss); \
         {} client retries, {} partial writes",
        stats.crashes_before_sync,
        stats.crashes_during_sync,
        stats.crashes_in_background_job,
        stats.bridge_partitions,
        stats.asymmetric_partitions,
        stats.pauses,
        stats.swizzles,
        stats.clock_jumps,
        stats.read_fault_windows,
        stats.storage_errors,
        stats.sync_failures,
        stats.disk_full_windows,
        stats.buggify_fired,
        stats.stale_messages,
        stats.crash_loop_restarts,
        stats.stored_bit_flips,
        stats.misdirected_writes,
        stats.sealed_segment_flips,
        stats.sealed_segment_misdirected_writes,
        stats.tables_quarantined,
        stats.nodes_rebuilt,
        stats.paxos_sat_out_after_loss,
        stats.client_retries,
        stats.partial_writes,
    );
    out!(
        "frames: {} reads ended inside a frame, {} reads held several frames",
        stats.reads_ending_inside_a_frame,
        stats.reads_of_several_frames,
    );
    out!(
        "heal: {}; {} hints stored, {} replayed; {} repair sessions, {} keys streamed; {} refused as unavailable",
        stats.converge_nanos.map_or_else(
            || "did not converge".to_owned(),
            |n| format!("converged {:.1}s after the faults stopped", n as f64 / 1e9)
        ),
        stats.hints_stored,
        stats.hints_replayed,
        stats.repair_sessions,
        stats.repair_keys_streamed,
        stats.unavailable,
    );
    if config.level == ConsistencyLevel::Serial {
        if stats.chosen_uncommitted_at_end > 0 {
            out!(
                "paxos: {} acknowledged writes left accepted, not committed, at the end (their commits lost; the next read through Paxos finishes them)",
                stats.chosen_uncommitted_at_end
            );
        }
        out!(
            "{}",
            paxos_line(&stats.paxos_cas_messages, &stats.paxos_cas_round_trips)
        );
    }
    if config.workload == SimWorkload::Incr {
        let ops = report.counter.operations();
        let count = |call: CounterCall, outcome: fn(CounterOutcome) -> bool| {
            ops.iter()
                .filter(|op| op.call == call && outcome(op.outcome()))
                .count()
        };
        let ok = |o: CounterOutcome| matches!(o, CounterOutcome::Ok(_));
        let info = |o: CounterOutcome| o == CounterOutcome::Info;
        out!(
            "counter: {} increments acknowledged, {} of unknown outcome, {} reads; checked: final value, duplicates, range, real-time order",
            count(CounterCall::Incr, ok),
            count(CounterCall::Incr, info),
            count(CounterCall::Read, ok),
        );
    }
    let checks: Vec<String> = report
        .promises
        .checks
        .iter()
        .map(|r| format!("{} {}", r.check, r.status.word()))
        .collect();
    out!("checks: {}", checks.join(", "));
    let marks: Vec<String> = report
        .marks
        .iter()
        .map(|(mark, hits)| format!("{} {hits}", mark.name()))
        .collect();
    out!("marks: {}", marks.join(", "));
    out!("digest: {:016x}", report.digest);
    if report.passed() {
        out!("result: pass");
        ExitCode::SUCCESS
    } else {
        print_failure(config, report, repro_suffix);
        ExitCode::from(1)
    }
}

/// Runs `count` seeds from `base.seed` on `jobs` threads (each run is
/// single-threaded and deterministic; only the order they run in differs),
/// failures in seed order.
fn sweep_in_parallel(base: &SimConfig, count: u64, jobs: usize) -> SweepReport {
    let jobs = u64::try_from(jobs.max(1)).unwrap_or(1).min(count.max(1));
    let parts: Vec<SweepReport> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..jobs)
            .map(|job| {
                scope.spawn(move || {
                    let mut part = SweepReport::default();
                    let mut offset = job;
                    while offset < count {
                        let config = SimConfig {
                            seed: base.seed.wrapping_add(offset),
                            ..base.clone()
                        };
                        part.add(run(&config));
                        offset += jobs;
                    }
                    part
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().expect("a simulation run panicked"))
            .collect()
    });
    let mut total = SweepReport::default();
    for part in parts {
        total.absorb(part);
    }
    total
        .failures
        .sort_by_key(|r| r.config.seed.wrapping_sub(base.seed));
    total
}

/// The cost of the run's (or sweep's) uncontended `SERIAL`
/// compare-and-sets: peer messages and round trips per operation.
fn paxos_line(messages: &BTreeMap<u32, u64>, round_trips: &BTreeMap<u32, u64>) -> String {
    let count: u64 = messages.values().sum();
    match (median_and_mean(messages), median_and_mean(round_trips)) {
        (Some((m_median, m_mean)), Some((r_median, r_mean))) => format!(
            "paxos: {count} uncontended compare-and-sets; peer messages per operation median {m_median}, mean {m_mean:.1}; round trips before the answer median {r_median}, mean {r_mean:.2}, plus the commit behind it"
        ),
        _ => "paxos: no uncontended compare-and-set committed".to_owned(),
    }
}

fn print_failure(config: &SimConfig, report: &RunReport, repro_suffix: &str) {
    for violation in &report.violations {
        out!("violated: {}", violation.property);
        for line in violation.details.lines() {
            out!("  {line}");
        }
    }
    out!("repro: {}{repro_suffix}", config.repro_command());
}

fn sim_sweep(base: &SimConfig, count: u64, jobs: usize) -> ExitCode {
    // Wall time is reported to the person running the sweep; it never
    // reaches node or simulator logic.
    #[allow(clippy::disallowed_methods)]
    let started = std::time::Instant::now();
    let result = sweep_in_parallel(base, count, jobs);
    for report in &result.failures {
        let properties: Vec<&str> = report.violations.iter().map(|v| v.property).collect();
        out!(
            "seed {:#x} FAILED: {}",
            report.config.seed,
            properties.join(", ")
        );
        out!("repro: {}", report.config.repro_command());
    }
    let elapsed = started.elapsed().as_secs_f64();
    eprintln!(
        "{count} seeds in {elapsed:.2}s ({:.1} seeds/s)",
        count as f64 / elapsed.max(1e-9)
    );
    let seeds = count.max(1) as f64;
    let ops = (result.ops_ok + result.ops_fail + result.ops_info).max(1) as f64;
    out!(
        "ops per seed: {:.1} ok, {:.1} fail, {:.1} info ({:.1}% info)",
        result.ops_ok as f64 / seeds,
        result.ops_fail as f64 / seeds,
        result.ops_info as f64 / seeds,
        100.0 * result.ops_info as f64 / ops,
    );
    if let Some(converge) = result.converge() {
        out!(
            "convergence after the faults stopped: median {:.1}s, worst {:.1}s (seed {:#x})",
            converge.median_nanos as f64 / 1e9,
            converge.worst_nanos as f64 / 1e9,
            converge.worst_seed
        );
    }
    if base.level == ConsistencyLevel::Serial {
        out!(
            "{}",
            paxos_line(&result.paxos_cas_messages, &result.paxos_cas_round_trips)
        );
    }
    for line in result.marks.table() {
        out!("{line}");
    }
    out!("{} passed, {} failed", result.passed, result.failures.len());
    if result.failures.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}
