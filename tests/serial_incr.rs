//! Three real `enigma node` processes, ten clients doing `INCR` on one key
//! at `SERIAL` through every node while one node is SIGKILLed and
//! restarted: afterwards the counter holds every acknowledged increment and
//! at most those whose outcome was unknown besides (a timeout that may have
//! applied, a connection cut mid-request), and the values acknowledged
//! increments returned are distinct and no larger than the final count
//! (what a linearizable counter gives).

// Real processes need real deadlines, and helpers outside #[test] may unwrap.
#![allow(clippy::unwrap_used, clippy::disallowed_methods)]

mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use support::{try_client, Cluster};

/// Client threads; client `i` starts at node `i % 3` and moves on to the
/// next node when its connection fails.
const CLIENTS: usize = 10;
/// How long the clients run.
const WORKLOAD: Duration = Duration::from_secs(8);
/// How long the final read may take to succeed.
const FINAL_READ_DEADLINE: Duration = Duration::from_secs(30);
/// The node that is killed and restarted.
const VICTIM: usize = 1;
const KEY: &str = "serial-counter";

const FAST: &[&str] = &[
    "--gossip-interval-ms",
    "100",
    "--request-timeout-ms",
    "1000",
];

/// How the increments of one client ended.
#[derive(Debug, Default)]
struct Tally {
    /// The values acknowledged increments returned.
    acknowledged: Vec<i64>,
    /// Increments whose outcome is unknown: they may have applied.
    in_doubt: usize,
    /// Increments refused with nothing applied.
    refused: usize,
    /// Error replies by their first word, for the report.
    errors: std::collections::BTreeMap<String, usize>,
}

fn run_client(ports: [u16; 3], client: usize, stop: &AtomicBool, tally: &Mutex<Tally>) {
    let mut node = client % 3;
    let mut con = None;
    while !stop.load(Ordering::Relaxed) {
        if con.is_none() {
            con = try_client(ports[node]);
            if con.is_none() {
                node = (node + 1) % 3;
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
        }
        let reply: redis::RedisResult<i64> = redis::cmd("AT")
            .arg("SERIAL")
            .arg("INCR")
            .arg(KEY)
            .query(con.as_mut().unwrap());
        let mut tally = tally.lock().unwrap();
        match reply {
            Ok(value) => tally.acknowledged.push(value),
            Err(e) if e.kind() == redis::ErrorKind::IoError || e.is_connection_dropped() => {
                // Cut mid-request (the node was killed): unknown outcome.
                tally.in_doubt += 1;
                *tally.errors.entry("connection".to_owned()).or_default() += 1;
                con = None;
                node = (node + 1) % 3;
            }
            Err(e) => {
                let text = e.to_string();
                let kind = e.code().unwrap_or("?").to_owned();
                *tally.errors.entry(kind).or_default() += 1;
                if text.contains("nothing was applied") {
                    tally.refused += 1;
                } else {
                    tally.in_doubt += 1;
                }
            }
        }
    }
}

/// Reads the counter at `SERIAL` through any node, retrying until it
/// answers.
fn final_count(ports: [u16; 3]) -> i64 {
    let deadline = Instant::now() + FINAL_READ_DEADLINE;
    let mut attempt = 0;
    loop {
        let port = ports[attempt % 3];
        attempt += 1;
        if let Some(mut con) = try_client(port) {
            let reply: redis::RedisResult<Option<String>> = redis::cmd("AT")
                .arg("SERIAL")
                .arg("GET")
                .arg(KEY)
                .query(&mut con);
            match reply {
                Ok(value) => return value.map_or(0, |v| v.parse().unwrap()),
                Err(e) => eprintln!("final read through port {port}: {e}"),
            }
        }
        assert!(
            Instant::now() < deadline,
            "the counter could not be read at SERIAL"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn serial_increments_are_neither_lost_nor_invented_across_a_sigkill() {
    let mut cluster = Cluster::start(3, FAST);
    let ports = [cluster.port(0), cluster.port(1), cluster.port(2)];
    let stop = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(Mutex::new(Tally::default()));
    let threads: Vec<_> = (0..CLIENTS)
        .map(|client| {
            let (stop, tally) = (stop.clone(), tally.clone());
            std::thread::spawn(move || run_client(ports, client, &stop, &tally))
        })
        .collect();
    let started = Instant::now();
    std::thread::sleep(WORKLOAD / 4);
    let acknowledged_before_kill = tally.lock().unwrap().acknowledged.len();
    cluster.kill(VICTIM);
    std::thread::sleep(WORKLOAD / 4);
    cluster.spawn(VICTIM);
    cluster.wait_ready(VICTIM);
    std::thread::sleep(WORKLOAD.saturating_sub(started.elapsed()));
    stop.store(true, Ordering::Relaxed);
    for thread in threads {
        thread.join().unwrap();
    }
    let tally = std::mem::take(&mut *tally.lock().unwrap());
    let acknowledged = tally.acknowledged.len() as i64;
    let in_doubt = tally.in_doubt as i64;
    let count = final_count(ports);
    eprintln!(
        "{acknowledged} increments acknowledged ({acknowledged_before_kill} before the kill), {in_doubt} in doubt, {} refused with nothing applied; errors {:?}; final count {count}",
        tally.refused, tally.errors
    );
    assert!(
        acknowledged_before_kill > 0 && acknowledged > acknowledged_before_kill as i64,
        "increments must be acknowledged before and after the kill\n{}",
        cluster.logs()
    );
    assert!(
        count >= acknowledged,
        "{count} counted, but {acknowledged} increments were acknowledged: an acknowledged increment was lost"
    );
    assert!(
        count <= acknowledged + in_doubt,
        "{count} counted, more than the {acknowledged} acknowledged and {in_doubt} in doubt: an increment applied twice or one refused applied"
    );
    let mut returned = tally.acknowledged.clone();
    returned.sort_unstable();
    let duplicates: Vec<_> = returned.windows(2).filter(|w| w[0] == w[1]).collect();
    assert!(
        duplicates.is_empty(),
        "two acknowledged increments returned the same value: {duplicates:?}"
    );
    let highest = returned.last().copied().unwrap_or(0);
    assert!(
        highest <= count,
        "an increment returned {highest}, above the final count {count}"
    );
    assert!(
        returned.first().copied().unwrap_or(1) >= 1,
        "an increment returned {returned:?}"
    );
}
