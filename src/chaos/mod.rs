//! `enigma chaos`: a Jepsen-style fault run against real `enigma node`
//! processes on this machine, checked with the same code as `enigma check`.
//!
//! The run: start N nodes (`nodes.rs`; sync `always`, each in a network
//! namespace of its own when root, `network.rs`; clocks skewed by
//! libfaketime when asked), run concurrent RESP clients with the register
//! workload at one level (`clients.rs`) while the nemesis kills, pauses and
//! partitions nodes (`nemesis.rs`), then heal everything, wait until every
//! node's own replica holds the same value for every key (the cluster heals
//! itself by hints and anti-entropy; nothing here repairs), read every key
//! from every node at `ALL`, and check the history, with the
//! replicas' final values, against what the level promises
//! (`enigma_checker::check_promises`, as `enigma check` does). The summary
//! gives the operations, the faults and the verdict; a failing run keeps
//! its folder (history, node logs and data, nemesis log, verdict, HTML
//! report). Exit status as `enigma check`: 0 passed, 1 a promise broken
//! (or a node died by itself), 2 unknown or the run could not be made.
//!
//! Threads and the wall clock are used here, at the edge, as in every
//! production driver: the checker itself stays deterministic.

mod clients;
mod nemesis;
mod network;
mod nodes;
mod resp_client;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use clap::{Args, ValueEnum};
use enigma_checker::format::enigma::{leveled_events_of_history, run_line, write_events, RunLine};
use enigma_checker::{
    check_promises, ParsedHistory, PromiseInput, ReplicaVersion, RunFacts, StoredVersion,
};
use enigma_cluster::ConsistencyLevel;
use enigma_workloads::register::{RegisterOptions, RegisterWorkload};
use rand::{Rng as _, SeedableRng as _};
use rand_chacha::ChaCha8Rng;

use self::clients::{ClientPlan, Recorder};
use self::nemesis::FaultKind;
use self::network::Network;
use self::nodes::{NodeSetup, Nodes};
use crate::check::{self, EXIT_UNUSABLE};

/// Most nodes a run starts (each needs a namespace, a port pair and its
/// share of two cores).
const NODES_MAX: usize = 9;
/// Most concurrent clients.
const CLIENTS_MAX: usize = 64;
/// Longest run.
const DURATION_MAX: Duration = Duration::from_secs(24 * 3600);
/// A client's connect, read and write timeout: above the nodes' request
/// timeout (2 s), so a node's own `TIMEOUT` normally comes first.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(5);
/// Pause between two looks at whether the replicas agree.
const CONVERGE_POLL: Duration = Duration::from_millis(500);
/// Added to the spread of clock offsets for the run line's clock
/// uncertainty: the nodes share one kernel clock, so the offsets are exact;
/// this covers the clock's reading inside a timestamp (microseconds).
const CLOCK_UNCERTAINTY_MARGIN_NANOS: u64 = 1_000_000;

/// Set by Ctrl-C or SIGTERM; every loop of the run looks at it.
static STOP: AtomicBool = AtomicBool::new(false);

/// Whether the run was interrupted.
fn stopping() -> bool {
    STOP.load(Ordering::Relaxed)
}

/// A fault family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FaultArg {
    /// SIGKILL a node and restart it.
    Kill,
    /// SIGSTOP a node, SIGCONT it later.
    Pause,
    /// Cut links between nodes (root only: namespaces and nftables).
    Partition,
    /// Skew each node's clock by a fixed offset (libfaketime).
    Skew,
}

/// `enigma chaos` arguments.
#[derive(Debug, Args)]
pub struct ChaosArgs {
    /// Nodes in the cluster (1 to 9).
    #[arg(long, default_value_t = 3)]
    nodes: usize,
    /// Replicas per key (default: every node, so every node's own replica
    /// can be read for the convergence check).
    #[arg(long)]
    rf: Option<usize>,
    /// Concurrent clients (1 to 64).
    #[arg(long, default_value_t = 4)]
    clients: usize,
    /// How long clients and the nemesis run: `30s`, `2m`, `1h` or seconds.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    duration: Duration,
    /// Consistency level of every operation: ONE, TWO, QUORUM or ALL.
    #[arg(long, default_value_t = ConsistencyLevel::Quorum)]
    level: ConsistencyLevel,
    /// Keys (registers) the clients share.
    #[arg(long, default_value_t = 5)]
    keys: usize,
    /// Fault families, comma-separated: kill, pause, partition, skew.
    /// Partitions need root; skew needs libfaketime (Debian's `faketime`).
    /// A family that cannot run here is turned off and the summary says
    /// why.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "kill,pause,partition,skew"
    )]
    faults: Vec<FaultArg>,
    /// With skew: each node's clock is offset by a fixed amount drawn in
    /// [-MAX/2, +MAX/2] milliseconds. Keep it below the nodes'
    /// `clock_offset_max_ms` (500), or peers refuse each other.
    #[arg(long, default_value_t = 200)]
    clock_skew_max_ms: u64,
    /// Seed of the nemesis's and the workload's choices (decimal or
    /// 0x-hex). Default: drawn. Real timing makes no two runs alike; the
    /// seed says which faults were drawn in which order.
    #[arg(long, value_parser = crate::parse_seed)]
    seed: Option<u64>,
    /// After the heal, how long the replicas may take to agree.
    #[arg(long, default_value_t = 60)]
    converge_timeout_secs: u64,
    /// Give up checking (verdict `unknown`) after this many seconds.
    #[arg(long, default_value_t = 300.0)]
    check_timeout_secs: f64,
    /// Most operations the clients invoke in all.
    #[arg(long, default_value_t = 200_000)]
    ops_max: u64,
    /// Where run folders are made (one per run, `run-<time>-<pid>`).
    #[arg(long, default_value = "enigma-chaos")]
    dir: PathBuf,
    /// Keep the run folder of a passing run too (a failing one is always
    /// kept).
    #[arg(long)]
    keep: bool,
}

/// Parses `30s`, `2m`, `1h`, `500ms` or plain seconds.
fn parse_duration(text: &str) -> Result<Duration, String> {
    let bad = || format!("{text:?} is not a duration (e.g. 30s, 2m, 1h, 500ms)");
    let (number, unit_ms) = if let Some(n) = text.strip_suffix("ms") {
        (n, 1)
    } else if let Some(n) = text.strip_suffix('s') {
        (n, 1_000)
    } else if let Some(n) = text.strip_suffix('m') {
        (n, 60_000)
    } else if let Some(n) = text.strip_suffix('h') {
        (n, 3_600_000)
    } else {
        (text, 1_000)
    };
    let n: u64 = number.trim().parse().map_err(|_| bad())?;
    n.checked_mul(unit_ms)
        .map(Duration::from_millis)
        .ok_or_else(bad)
}

/// A duration as `--duration` takes it back: `30s`, or `1500ms`.
fn show_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms % 1000 == 0 {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}

impl ChaosArgs {
    fn validate(&self) -> Result<usize, String> {
        if !(1..=NODES_MAX).contains(&self.nodes) {
            return Err(format!("--nodes must be 1 to {NODES_MAX}"));
        }
        let rf = self.rf.unwrap_or(self.nodes);
        if rf == 0 || rf > self.nodes {
            return Err(format!("--rf must be 1 to the {} nodes", self.nodes));
        }
        if !(1..=CLIENTS_MAX).contains(&self.clients) {
            return Err(format!("--clients must be 1 to {CLIENTS_MAX}"));
        }
        if self.duration.is_zero() || self.duration > DURATION_MAX {
            return Err("--duration must be above zero and at most 24h".into());
        }
        if self.keys == 0 {
            return Err("--keys must be at least 1".into());
        }
        if self.ops_max == 0 {
            return Err("--ops-max must be at least 1".into());
        }
        if !(self.check_timeout_secs.is_finite() && self.check_timeout_secs > 0.0) {
            return Err("--check-timeout-secs must be a positive number".into());
        }
        Ok(rf)
    }
}

/// Runs `enigma chaos`.
pub fn chaos(args: &ChaosArgs) -> ExitCode {
    let rf = match args.validate() {
        Ok(rf) => rf,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(EXIT_UNUSABLE);
        }
    };
    watch_signals();
    match run(args, rf) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(EXIT_UNUSABLE)
        }
    }
}

/// Ctrl-C and SIGTERM set [`STOP`]: the run stops its loops, stops the
/// nodes and removes its namespaces before it exits.
fn watch_signals() {
    // A thread of its own with a small runtime: it only waits for signals.
    #[allow(clippy::disallowed_methods)]
    std::thread::spawn(|| {
        let Ok(rt) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        else {
            return;
        };
        rt.block_on(async {
            use tokio::signal::unix::{signal, SignalKind};
            let Ok(mut term) = signal(SignalKind::terminate()) else {
                return;
            };
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            eprintln!("interrupted: stopping the nodes and removing the run's network");
            STOP.store(true, Ordering::Relaxed);
        });
    });
}

/// Random hex, for the password and the cluster secret.
fn random_hex(bytes: usize) -> anyhow::Result<String> {
    let mut buf = vec![0u8; bytes];
    getrandom::fill(&mut buf).map_err(|e| anyhow::anyhow!("no OS randomness: {e}"))?;
    Ok(buf.iter().map(|b| format!("{b:02x}")).collect())
}

/// Clock offsets (ms) per node, or why clocks are not skewed.
fn clock_offsets(args: &ChaosArgs, rng: &mut ChaCha8Rng) -> (Vec<i64>, Option<PathBuf>, String) {
    if !args.faults.contains(&FaultArg::Skew) {
        return (
            Vec::new(),
            None,
            "clocks: not skewed (not asked for)".into(),
        );
    }
    if args.clock_skew_max_ms == 0 {
        return (
            Vec::new(),
            None,
            "clocks: not skewed (--clock-skew-max-ms 0)".into(),
        );
    }
    let Some(lib) = nodes::find_faketime() else {
        return (
            Vec::new(),
            None,
            "clocks: not skewed: libfaketime not found (apt-get install faketime)".into(),
        );
    };
    let half = i64::try_from(args.clock_skew_max_ms / 2).unwrap_or(i64::MAX / 2);
    let offsets: Vec<i64> = (0..args.nodes)
        .map(|_| rng.random_range(-half..=half))
        .collect();
    let shown: Vec<String> = offsets
        .iter()
        .enumerate()
        .map(|(i, ms)| format!("n{}={ms:+}ms", i + 1))
        .collect();
    let line = format!("clocks: skewed by libfaketime: {}", shown.join(" "));
    (offsets, Some(lib), line)
}

/// The run folder: `<dir>/run-<unix seconds>-<pid>`.
fn make_run_dir(dir: &Path) -> anyhow::Result<PathBuf> {
    #[allow(clippy::disallowed_methods)]
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let path = dir.join(format!("run-{secs}-{}", std::process::id()));
    std::fs::create_dir_all(&path)
        .map_err(|e| anyhow::anyhow!("cannot make the run folder {}: {e}", path.display()))?;
    Ok(path)
}

/// What the heal found.
struct Healed {
    /// Seconds from the heal until the replicas agreed, if they did.
    converged_secs: Option<f64>,
    /// The last complete look at every node's replica, key by key.
    replicas: Option<BTreeMap<String, Vec<ReplicaVersion>>>,
}

#[allow(clippy::too_many_lines)]
fn run(args: &ChaosArgs, rf: usize) -> anyhow::Result<u8> {
    let seed = match args.seed {
        Some(s) => s,
        None => getrandom::u64().map_err(|e| anyhow::anyhow!("no OS randomness: {e}"))?,
    };
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let dir = make_run_dir(&args.dir)?;
    let tag = u8::try_from(std::process::id() % 200 + 20).unwrap_or(20);
    let want_partitions = args.faults.contains(&FaultArg::Partition);
    let mut network = Network::build(args.nodes, tag, want_partitions);
    let (offsets, faketime, clock_line) = clock_offsets(args, &mut rng);
    let exe = std::env::current_exe()
        .map_err(|e| anyhow::anyhow!("cannot find the enigma executable: {e}"))?;
    let setup = NodeSetup {
        exe,
        dir: dir.clone(),
        replication_factor: rf,
        password: random_hex(16)?,
        cluster_secret: random_hex(16)?,
        clock_offsets_ms: offsets.clone(),
        faketime,
    };
    let password = setup.password.clone();
    let mut kinds = Vec::new();
    if args.faults.contains(&FaultArg::Kill) {
        kinds.push(FaultKind::Kill);
    }
    if args.faults.contains(&FaultArg::Pause) {
        kinds.push(FaultKind::Pause);
    }
    if network.namespaces().is_some() {
        kinds.push(FaultKind::Partition);
    }
    let source = format!(
        "enigma chaos --nodes {} --rf {rf} --clients {} --duration {} --level {} --keys {} --faults {} --clock-skew-max-ms {} --seed {seed:#x}{}",
        args.nodes,
        args.clients,
        show_duration(args.duration),
        args.level,
        args.keys,
        args.faults
            .iter()
            .filter_map(|f| f.to_possible_value().map(|v| v.get_name().to_owned()))
            .collect::<Vec<_>>()
            .join(","),
        args.clock_skew_max_ms,
        if offsets.is_empty() {
            String::new()
        } else {
            format!("; {clock_line}")
        }
    );
    out!(
        "chaos: {} nodes (rf {rf}), {} clients at {}, {}, seed {seed:#x}",
        args.nodes,
        args.clients,
        args.level,
        show_duration(args.duration)
    );
    out!("network: {}", network.describe());
    out!("{clock_line}");
    out!(
        "nemesis: {}",
        if kinds.is_empty() {
            "no faults".to_owned()
        } else {
            kinds
                .iter()
                .map(|k| k.name())
                .collect::<Vec<_>>()
                .join(", ")
        }
    );
    out!("run folder: {}", dir.display());

    let mut nodes = Nodes::new(setup, &network, args.nodes);
    let started = (|| {
        for i in 0..args.nodes {
            nodes.spawn(i)?;
        }
        for i in 0..args.nodes {
            nodes.wait_ready(i)?;
        }
        Ok::<(), nodes::NodeError>(())
    })();
    if let Err(e) = started {
        nodes.stop_all();
        report_left(&network.teardown());
        anyhow::bail!("{e}; the run folder {} keeps the logs", dir.display());
    }

    let recorder = Recorder::new();
    #[allow(clippy::disallowed_methods)]
    let origin = Instant::now();
    let deadline = origin + args.duration;
    let plan = ClientPlan {
        addrs: (0..args.nodes).map(|i| nodes.client_addr(i)).collect(),
        password,
        level: args.level,
        deadline,
        ops_max: args.ops_max,
        timeout: CLIENT_TIMEOUT,
    };
    let workload = RegisterWorkload::new(RegisterOptions {
        keys: args.keys,
        ..RegisterOptions::default()
    });
    let keys = workload.keys();
    let shared: clients::SharedWorkload =
        Mutex::new((workload, ChaCha8Rng::seed_from_u64(rng.random())));
    let invoked = AtomicU64::new(0);
    let mut nemesis_rng = ChaCha8Rng::seed_from_u64(rng.random());
    let nemesis_log = std::thread::scope(|scope| {
        for c in 0..args.clients {
            let (plan, shared, recorder, invoked) = (&plan, &shared, &recorder, &invoked);
            scope.spawn(move || clients::run_client(c, plan, shared, recorder, invoked));
        }
        nemesis::run(
            &mut nodes,
            &network,
            &kinds,
            &mut nemesis_rng,
            origin,
            deadline,
        )
    });

    // Heal: every cut lifted, every node running and resumed.
    if let Some(ns) = network.namespaces() {
        if let Err(e) = ns.set_cuts(&[]) {
            eprintln!("warning: cannot lift the partition: {e}");
        }
    }
    nodes.reap();
    let mut heal_errors = Vec::new();
    for i in 0..args.nodes {
        let healed = if nodes.running(i) {
            nodes.resume(i)
        } else {
            nodes.spawn(i)
        };
        if let Err(e) = healed.and_then(|()| nodes.wait_ready(i)) {
            heal_errors.push(e.to_string());
        }
    }
    let healed = if heal_errors.is_empty() && !stopping() {
        converge(&plan, &keys, args.converge_timeout_secs)
    } else {
        Healed {
            converged_secs: None,
            replicas: None,
        }
    };
    if !stopping() {
        let encode = |v| enigma_workloads::register::encode_value(v);
        clients::read_every_key(&plan, &keys, &recorder, &encode);
    }
    nodes.reap();
    let unexpected = std::mem::take(&mut nodes.unexpected_exits);
    let stop_failures = nodes.stop_all();
    drop(nodes);
    report_left(&network.teardown());

    let recorded = recorder.into_recorded();
    let skewed = !offsets.is_empty();
    let spread_ms =
        offsets.iter().max().copied().unwrap_or(0) - offsets.iter().min().copied().unwrap_or(0);
    let facts = RunFacts {
        clock_skew: Some(skewed),
        replication_factor: Some(rf),
        session_timestamps: Some(false),
        clock_uncertainty_nanos: skewed
            .then(|| spread_ms.unsigned_abs() * 1_000_000 + CLOCK_UNCERTAINTY_MARGIN_NANOS),
        commit_wait: Some(false),
    };
    let mut file = run_line(&RunLine {
        facts,
        source: Some(source),
    });
    file.push('\n');
    file.push_str(&write_events(&leveled_events_of_history(
        &recorded.history,
        &recorded.levels,
        &BTreeMap::new(),
    )));
    let history_path = dir.join("history.jsonl");
    std::fs::write(&history_path, &file)
        .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", history_path.display()))?;
    let mut log_text = nemesis_log.lines.join("\n");
    log_text.push('\n');
    let _ = std::fs::write(dir.join("nemesis.log"), log_text);

    let c = &recorded.counts;
    out!(
        "ops: {} ok, {} fail, {} info ({} invoked){}",
        c.ok,
        c.fail,
        c.info,
        recorded.history.len(),
        if c.errors.is_empty() {
            String::new()
        } else {
            format!(
                "; errors: {}",
                c.errors
                    .iter()
                    .map(|(k, n)| format!("{k} {n}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        }
    );
    let faults: u64 = nemesis_log.counts.values().sum();
    out!(
        "faults: {faults} injected{}",
        if nemesis_log.counts.is_empty() {
            String::new()
        } else {
            format!(
                " ({})",
                nemesis_log
                    .counts
                    .iter()
                    .map(|(k, n)| format!("{k} {n}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        }
    );
    out!(
        "heal: {}",
        match healed.converged_secs {
            Some(s) => format!("every node's replica agreed on every key {s:.1}s after the heal"),
            None if stopping() => "interrupted before the replicas agreed".to_owned(),
            None => format!(
                "replicas did not agree within {}s of the heal",
                args.converge_timeout_secs
            ),
        }
    );
    if stopping() {
        out!("verdict: unknown (interrupted)");
        out!("run folder kept: {}", dir.display());
        return Ok(EXIT_UNUSABLE);
    }

    // The check: the same selection of promises `enigma check` makes, with
    // the replicas' final values for convergence.
    let history = ParsedHistory::Register(recorded.history);
    let options = check::check_options(None, None)?;
    let stop = check::deadline_hook(Some(args.check_timeout_secs))?;
    let input = PromiseInput {
        history: &history,
        levels: &recorded.levels,
        versions: &BTreeMap::new(),
        facts,
        replicas: healed.replicas.as_ref(),
    };
    let report = check_promises(&input, &options, &stop);
    let verdict = report.verdict();
    let mut code = check::promise_exit_code(verdict);
    let mut problems: Vec<String> = Vec::new();
    for (id, status) in &unexpected {
        problems.push(format!(
            "node n{id} exited by itself ({status}); see n{id}.log"
        ));
    }
    for (id, why) in &stop_failures {
        problems.push(format!("node n{id} did not stop cleanly: {why}"));
    }
    problems.extend(c.garbage_reads.iter().cloned());
    if healed.replicas.is_none() {
        problems.push(format!(
            "not every node answered for its replica after the heal{}",
            if heal_errors.is_empty() {
                String::new()
            } else {
                format!(": {}", heal_errors.join("; "))
            }
        ));
    }
    if !problems.is_empty() && code == 0 {
        code = 1;
    }
    let verdict_text = format!(
        "{report}verdict: {}\n{}{}",
        verdict.word(),
        report.details(),
        problems
            .iter()
            .map(|p| format!("problem: {p}\n"))
            .collect::<String>()
    );
    for line in verdict_text.lines() {
        out!("{line}");
    }
    for e in &nemesis_log.errors {
        out!("nemesis error: {e}");
    }
    if code == 0 && !args.keep {
        std::fs::remove_dir_all(&dir)
            .map_err(|e| anyhow::anyhow!("cannot remove {}: {e}", dir.display()))?;
        out!("run folder removed (passed; --keep keeps it)");
    } else {
        let _ = std::fs::write(dir.join("verdict.txt"), &verdict_text);
        let _ =
            check::write_promise_html(&dir.join("report.html"), &history_path, &history, &report);
        out!(
            "run folder kept: {} (history.jsonl, n*.log, nemesis.log, verdict.txt, report.html; `enigma check {}` replays the check without the replicas)",
            dir.display(),
            history_path.display()
        );
    }
    Ok(code)
}

fn report_left(left: &[String]) {
    for l in left {
        eprintln!("warning: not removed: {l}");
    }
}

/// Polls every node's own replica of every key until all agree or
/// `timeout_secs` pass.
fn converge(plan: &ClientPlan, keys: &[String], timeout_secs: u64) -> Healed {
    #[allow(clippy::disallowed_methods)]
    let start = Instant::now();
    let bound = Duration::from_secs(timeout_secs);
    let mut last = None;
    loop {
        let look: Option<Vec<Vec<Option<Vec<u8>>>>> = plan
            .addrs
            .iter()
            .map(|&addr| clients::local_values(plan, addr, keys))
            .collect();
        if let Some(values) = look {
            let agree = (0..keys.len()).all(|k| values.iter().all(|v| v[k] == values[0][k]));
            let replicas = replica_map(keys, &values);
            if agree {
                return Healed {
                    converged_secs: Some(start.elapsed().as_secs_f64()),
                    replicas: Some(replicas),
                };
            }
            last = Some(replicas);
        }
        if start.elapsed() >= bound || stopping() {
            return Healed {
                converged_secs: None,
                replicas: last,
            };
        }
        std::thread::sleep(CONVERGE_POLL);
    }
}

/// The checker's replica states from each node's values: a value is
/// compared by its bytes (real nodes report no version to clients; the
/// workload's values are unique, so equal bytes are the same write), and a
/// replica that reads as nothing (no value, or a tombstone) holds `None`.
fn replica_map(
    keys: &[String],
    values: &[Vec<Option<Vec<u8>>>],
) -> BTreeMap<String, Vec<ReplicaVersion>> {
    keys.iter()
        .enumerate()
        .map(|(k, key)| {
            let replicas = values
                .iter()
                .enumerate()
                .map(|(node, v)| ReplicaVersion {
                    node: u32::try_from(node + 1).unwrap_or(u32::MAX),
                    version: v[k].clone().map(|bytes| StoredVersion {
                        hlc: 0,
                        writer: 0,
                        value: Some(bytes),
                    }),
                })
                .collect();
            (key.clone(), replicas)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_take_units() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("45"), Ok(Duration::from_secs(45)));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("-3s").is_err());
        for text in ["30s", "1500ms", "120s"] {
            let d = parse_duration(text).unwrap();
            assert_eq!(parse_duration(&show_duration(d)), Ok(d), "{text}");
        }
    }

    #[test]
    fn replicas_that_differ_fail_the_convergence_check() {
        let keys = vec!["k0".to_owned()];
        let same = replica_map(
            &keys,
            &[vec![Some(b"3".to_vec())], vec![Some(b"3".to_vec())]],
        );
        assert!(enigma_checker::check_convergence(&same).is_ok());
        let differ = replica_map(&keys, &[vec![Some(b"3".to_vec())], vec![None]]);
        assert!(enigma_checker::check_convergence(&differ).is_err());
    }
}
