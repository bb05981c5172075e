//! Three real `enigma node` processes, one of them with its clock 2 s off
//! (the test-only `--test-clock-offset-ms`), clients writing a few keys at
//! `QUORUM` through every node while nodes are SIGKILLed and restarted: the
//! skewed node refuses writes with `-CLOCK` (counted, shown by `enigma
//! status`), and no acknowledged write is lost: every read returns the
//! newest write acknowledged before it started, or a write not older than
//! that one.

// Real processes need real deadlines, and helpers outside #[test] may unwrap.
#![allow(clippy::unwrap_used, clippy::disallowed_methods)]

mod support;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use support::{enigma, try_client, Cluster};

/// Keys every client writes.
const KEYS: usize = 3;
/// Client threads; each sends through node `thread % 3`, rotating.
const CLIENTS: usize = 6;
/// How long the clients run.
const WORKLOAD: Duration = Duration::from_secs(8);
/// How long a node may take to judge its own clock.
const JUDGE_DEADLINE: Duration = Duration::from_secs(30);

const FAST: &[&str] = &[
    "--gossip-interval-ms",
    "100",
    "--request-timeout-ms",
    "1000",
];

/// One client operation as the client saw it.
#[derive(Debug, Clone)]
struct Op {
    key: usize,
    /// For a write, its value; for a read, what it returned.
    value: Option<u64>,
    write: bool,
    invoked: Instant,
    completed: Instant,
    /// The reply was OK (a write acknowledged, a read answered).
    ok: bool,
    /// The error reply, if any.
    error: Option<String>,
}

fn run_client(
    ports: [u16; 3],
    thread: usize,
    next_value: &AtomicU64,
    stop: &AtomicBool,
    log: &Mutex<Vec<Op>>,
) {
    let mut step = thread;
    while !stop.load(Ordering::Relaxed) {
        step += 1;
        let node = step % 3;
        let key = step % KEYS;
        let Some(mut con) = try_client(ports[node]) else {
            std::thread::sleep(Duration::from_millis(50));
            continue;
        };
        let value = next_value.fetch_add(1, Ordering::Relaxed);
        let invoked = Instant::now();
        let reply: redis::RedisResult<String> = redis::cmd("AT")
            .arg("QUORUM")
            .arg("SET")
            .arg(format!("skew-{key}"))
            .arg(value.to_string())
            .query(&mut con);
        let completed = Instant::now();
        let ok = reply.as_deref() == Ok("OK");
        log.lock().unwrap().push(Op {
            key,
            value: Some(value),
            write: true,
            invoked,
            completed,
            ok,
            error: reply.err().map(|e| e.to_string()),
        });
        // Read it back through a node the next step would not use.
        let reader = (node + 1) % 3;
        let Some(mut con) = try_client(ports[reader]) else {
            continue;
        };
        let invoked = Instant::now();
        let reply: redis::RedisResult<Option<String>> = redis::cmd("AT")
            .arg("QUORUM")
            .arg("GET")
            .arg(format!("skew-{key}"))
            .query(&mut con);
        let completed = Instant::now();
        if let Ok(read) = &reply {
            log.lock().unwrap().push(Op {
                key,
                value: read.as_ref().map(|v| v.parse().unwrap()),
                write: false,
                invoked,
                completed,
                ok: true,
                error: None,
            });
        }
    }
}

/// Every read against the writes: a read must not return a value (or
/// nothing) when an acknowledged write of its key completed before it
/// started and after the returned write completed (that write then lost to
/// an older one). Returns the violations.
fn lost_writes(ops: &[Op]) -> Vec<String> {
    let mut violations = Vec::new();
    for read in ops.iter().filter(|op| !op.write) {
        let returned = read.value.map(|v| {
            ops.iter()
                .find(|op| op.write && op.value == Some(v))
                .unwrap()
        });
        let superseding = ops.iter().find(|w| {
            w.write
                && w.ok
                && w.key == read.key
                && w.completed < read.invoked
                && returned.is_none_or(|r| r.completed < w.invoked)
        });
        if let Some(w) = superseding {
            violations.push(format!(
                "a read of skew-{} returned {:?}, although write {:?} was acknowledged after that one completed and before the read began",
                read.key, read.value, w.value
            ));
        }
    }
    violations
}

fn clock_line(membership: &str) -> String {
    membership
        .lines()
        .find(|l| l.starts_with("clock:"))
        .unwrap_or_else(|| panic!("no clock line in {membership}"))
        .to_owned()
}

/// Waits until node `i` judges its own clock out of bounds.
fn wait_out_of_bounds(cluster: &Cluster, i: usize) {
    let deadline = Instant::now() + JUDGE_DEADLINE;
    loop {
        if clock_line(&cluster.membership(i)).contains("out-of-bounds") {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "n{} never judged its clock out of bounds: {}\n{}",
            i + 1,
            cluster.membership(i),
            cluster.logs()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Restarts node `i` (SIGKILL, then start) with its wall clock shifted by
/// `offset_ms`.
fn restart_with_offset(cluster: &mut Cluster, i: usize, offset_ms: i64) {
    cluster.kill(i);
    let kept = cluster.extra.clone();
    cluster
        .extra
        .extend(["--test-clock-offset-ms".to_owned(), offset_ms.to_string()]);
    cluster.spawn(i);
    cluster.extra = kept;
    cluster.wait_ready(i);
}

fn skewed_node_refuses_and_no_acknowledged_write_is_lost(offset_ms: i64) {
    let mut cluster = Cluster::start(3, FAST);
    restart_with_offset(&mut cluster, 2, offset_ms);
    wait_out_of_bounds(&cluster, 2);
    let ports = [cluster.port(0), cluster.port(1), cluster.port(2)];
    let next_value = Arc::new(AtomicU64::new(1));
    let stop = Arc::new(AtomicBool::new(false));
    let log = Arc::new(Mutex::new(Vec::new()));
    let threads: Vec<_> = (0..CLIENTS)
        .map(|thread| {
            let (next_value, stop, log) = (next_value.clone(), stop.clone(), log.clone());
            std::thread::spawn(move || run_client(ports, thread, &next_value, &stop, &log))
        })
        .collect();
    let started = Instant::now();
    // SIGKILL rounds: n1, then the skewed n3 (which restarts skewed and
    // must judge itself again), then n2.
    for (round, node) in [0, 2, 1].into_iter().enumerate() {
        std::thread::sleep(WORKLOAD / 4);
        if node == 2 {
            restart_with_offset(&mut cluster, 2, offset_ms);
            wait_out_of_bounds(&cluster, 2);
        } else {
            cluster.kill(node);
            cluster.spawn(node);
            cluster.wait_ready(node);
        }
        eprintln!("round {round}: n{} restarted", node + 1);
    }
    let rest = WORKLOAD.saturating_sub(started.elapsed());
    std::thread::sleep(rest);
    stop.store(true, Ordering::Relaxed);
    for thread in threads {
        thread.join().unwrap();
    }
    let ops = log.lock().unwrap().clone();
    let acknowledged = ops.iter().filter(|op| op.write && op.ok).count();
    let clock_refused = ops
        .iter()
        .filter(|op| op.error.as_deref().is_some_and(|e| e.contains("CLOCK")))
        .count();
    let reads = ops.iter().filter(|op| !op.write).count();
    let mut errors = std::collections::BTreeMap::<String, usize>::new();
    for error in ops.iter().filter_map(|op| op.error.as_deref()) {
        let kind = error.split_whitespace().next().unwrap_or("").to_owned();
        *errors.entry(kind).or_default() += 1;
    }
    eprintln!(
        "offset {offset_ms} ms: {acknowledged} writes acknowledged, {clock_refused} refused for the clock, {reads} reads; errors {errors:?}"
    );
    assert!(
        acknowledged > 0,
        "no write was acknowledged\n{}",
        cluster.logs()
    );
    assert!(
        clock_refused > 0,
        "the skewed node refused no write: {:?}",
        ops.iter()
            .filter_map(|op| op.error.clone())
            .take(5)
            .collect::<Vec<_>>()
    );
    let lost = lost_writes(&ops);
    assert!(lost.is_empty(), "{}", lost.join("\n"));
    // The skewed node's refusals are counted and shown.
    let status = enigma()
        .args([
            "status",
            "--node",
            &format!("127.0.0.1:{}", cluster.port(2)),
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(status.status.success(), "{text}");
    let line = text
        .lines()
        .find(|l| l.starts_with("clock:"))
        .unwrap_or_else(|| panic!("no clock line in {text}"));
    assert!(line.contains("out-of-bounds"), "{text}");
    let refused: u64 = line
        .split("; ")
        .find_map(|part| part.strip_suffix(" writes refused for the clock"))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no refusal count in {line}"));
    assert!(refused > 0, "{text}");
}

#[test]
fn a_node_2s_ahead_refuses_writes_and_no_acknowledged_write_is_lost() {
    skewed_node_refuses_and_no_acknowledged_write_is_lost(2_000);
}

#[test]
fn a_node_2s_behind_refuses_writes_and_no_acknowledged_write_is_lost() {
    skewed_node_refuses_and_no_acknowledged_write_is_lost(-2_000);
}
