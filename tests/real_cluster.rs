//! Three real `enigma node` processes on loopback, driven by the `redis`
//! crate: every consistency level, a node stopped and restarted, and a
//! crash test with SIGKILL at random moments.

// Real processes need real deadlines, and helpers outside #[test] may unwrap.
#![allow(clippy::unwrap_used, clippy::disallowed_methods)]

mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use support::{client, Cluster};

fn set(con: &mut redis::Connection, key: &str, value: &str) -> redis::RedisResult<String> {
    redis::cmd("SET").arg(key).arg(value).query(con)
}

fn at_get(
    con: &mut redis::Connection,
    level: &str,
    key: &str,
) -> redis::RedisResult<Option<String>> {
    redis::cmd("AT").arg(level).arg("GET").arg(key).query(con)
}

#[test]
fn every_level_works_quorum_survives_a_stopped_node_and_a_restarted_node_catches_up() {
    let mut cluster = Cluster::start(3, &["--request-timeout-ms", "1000"]);
    // Writes at each level, each read back at ALL from every node.
    for (i, level) in ["ONE", "TWO", "QUORUM", "ALL"].into_iter().enumerate() {
        let mut con = client(cluster.port(i % 3));
        let ok: String = redis::cmd("CONSISTENCY")
            .arg(level)
            .query(&mut con)
            .unwrap();
        assert_eq!(ok, "OK");
        let shown: String = redis::cmd("CONSISTENCY").query(&mut con).unwrap();
        assert_eq!(shown, level);
        let key = format!("written-at-{level}");
        assert_eq!(set(&mut con, &key, level).unwrap(), "OK");
        for n in 0..3 {
            let mut other = client(cluster.port(n));
            // A write at ONE may still be on its way to the other replicas;
            // ALL waits for every replica and repairs the stale ones.
            assert_eq!(
                at_get(&mut other, "ALL", &key).unwrap().as_deref(),
                Some(level)
            );
        }
    }
    // Reads at each level after a write at ALL.
    let mut con = client(cluster.port(0));
    let _: String = redis::cmd("AT")
        .arg("ALL")
        .arg("SET")
        .arg("k")
        .arg("v1")
        .query(&mut con)
        .unwrap();
    for level in ["ONE", "TWO", "QUORUM", "ALL"] {
        for n in 0..3 {
            let mut other = client(cluster.port(n));
            assert_eq!(
                at_get(&mut other, level, "k").unwrap().as_deref(),
                Some("v1"),
                "{level} at n{}",
                n + 1
            );
        }
    }
    // Multi-key commands.
    let _: String = redis::cmd("MSET")
        .arg("a")
        .arg("1")
        .arg("b")
        .arg("2")
        .query(&mut con)
        .unwrap();
    let got: Vec<Option<String>> = redis::cmd("MGET")
        .arg("a")
        .arg("b")
        .arg("nope")
        .query(&mut con)
        .unwrap();
    assert_eq!(got, vec![Some("1".into()), Some("2".into()), None]);
    let exists: i64 = redis::cmd("EXISTS")
        .arg("a")
        .arg("b")
        .arg("nope")
        .query(&mut con)
        .unwrap();
    assert_eq!(exists, 2);
    let deleted: i64 = redis::cmd("DEL")
        .arg("a")
        .arg("nope")
        .query(&mut con)
        .unwrap();
    assert_eq!(deleted, 1);
    let gone: Option<String> = redis::cmd("GET").arg("a").query(&mut con).unwrap();
    assert_eq!(gone, None);

    // The metrics endpoint saw those commands, and the WAL was synced.
    let metrics = support::http_get(cluster.nodes[0].metrics_port, "/metrics");
    assert!(metrics.starts_with("HTTP/1.1 200 OK"), "{metrics}");
    let mset = support::metric(
        &metrics,
        "enigma_requests_total{command=\"mset\",level=\"QUORUM\"}",
    );
    assert_eq!(mset, Some(1.0), "{metrics}");
    let at_all = support::metric(
        &metrics,
        "enigma_requests_total{command=\"set\",level=\"ALL\"}",
    );
    assert!(at_all >= Some(1.0), "{metrics}");
    let syncs = support::metric(&metrics, "enigma_wal_syncs_total").unwrap();
    assert!(syncs >= 1.0, "{metrics}");
    assert_eq!(
        support::metric(&metrics, "enigma_peer_up{peer=\"2\"}"),
        Some(1.0)
    );
    let latency = support::metric(
        &metrics,
        "enigma_request_duration_seconds_count{command=\"mget\",level=\"QUORUM\"}",
    );
    assert_eq!(latency, Some(1.0), "{metrics}");
    assert!(support::http_get(cluster.nodes[0].metrics_port, "/nope").starts_with("HTTP/1.1 404"));

    // Stop n3 cleanly: SIGTERM ends it with status 0.
    let status = cluster.terminate(2);
    assert!(
        status.success(),
        "n3 exited with {status}\n{}",
        cluster.logs()
    );
    cluster.wait_peers_up(0);
    let mut con = client(cluster.port(0));
    assert_eq!(
        set(&mut con, "k", "v2").unwrap(),
        "OK",
        "QUORUM write with n3 down"
    );
    assert_eq!(
        at_get(&mut con, "QUORUM", "k").unwrap().as_deref(),
        Some("v2")
    );
    let refused = redis::cmd("AT")
        .arg("ALL")
        .arg("SET")
        .arg("k")
        .arg("v3")
        .query::<String>(&mut con)
        .unwrap_err();
    let text = refused.to_string();
    assert!(
        text.contains("UNAVAILABLE") && text.contains("ALL"),
        "{text}"
    );
    let refused = at_get(&mut con, "ALL", "k").unwrap_err().to_string();
    assert!(refused.contains("UNAVAILABLE"), "{refused}");
    let status = cluster.membership(0);
    assert!(status.contains("state=down"), "{status}");

    // Restart n3: a read at ALL repairs it, and then it answers alone.
    cluster.spawn(2);
    cluster.wait_ready(2);
    cluster.wait_peers_up(0);
    cluster.wait_peers_up(2);
    assert_eq!(at_get(&mut con, "ALL", "k").unwrap().as_deref(), Some("v2"));
    assert!(cluster.terminate(0).success());
    assert!(cluster.terminate(1).success());
    let mut alone = client(cluster.port(2));
    assert_eq!(
        at_get(&mut alone, "ONE", "k").unwrap().as_deref(),
        Some("v2"),
        "n3 caught up"
    );
    assert_eq!(
        at_get(&mut alone, "ONE", "written-at-ONE")
            .unwrap()
            .as_deref(),
        Some("ONE")
    );
}

/// xorshift64*: the test's own randomness, seeded from the clock and
/// printed so a failing run can be reasoned about.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

const CRASH_ROUNDS: usize = 12;
const CRASH_KEYS: usize = 8;

#[test]
fn acknowledged_quorum_writes_survive_random_sigkills() {
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1;
    eprintln!("crash test seed {seed:#x}");
    let mut rng = Rng(seed);
    let mut cluster = Cluster::start(3, &["--request-timeout-ms", "1000", "--sync", "always"]);
    let ports: Vec<u16> = (0..3).map(|i| cluster.port(i)).collect();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer_stop = stop.clone();
    // The writer: sequential QUORUM writes of increasing numbers to a few
    // keys, moving to the next node whenever one fails.
    let writer = std::thread::spawn(move || {
        let mut acked = vec![0u64; CRASH_KEYS];
        let mut attempted = vec![0u64; CRASH_KEYS];
        let mut node = 0;
        let mut con: Option<redis::Connection> = None;
        let mut next = 1u64;
        let (mut ok, mut failed) = (0u64, 0u64);
        while !writer_stop.load(std::sync::atomic::Ordering::Relaxed) {
            let key = (next as usize) % CRASH_KEYS;
            if con.is_none() {
                let c = redis::Client::open(format!("redis://127.0.0.1:{}/", ports[node])).unwrap();
                match c.get_connection_with_timeout(Duration::from_millis(500)) {
                    Ok(c) => {
                        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                        con = Some(c);
                    }
                    Err(_) => {
                        node = (node + 1) % 3;
                        std::thread::sleep(Duration::from_millis(10));
                        continue;
                    }
                }
            }
            let c = con.as_mut().expect("connected");
            attempted[key] = next;
            match redis::cmd("SET")
                .arg(format!("crash-{key}"))
                .arg(next.to_string())
                .query::<String>(c)
            {
                Ok(_) => {
                    acked[key] = next;
                    ok += 1;
                }
                Err(e) => {
                    failed += 1;
                    if e.is_io_error() || e.is_connection_dropped() || e.is_timeout() {
                        con = None;
                        node = (node + 1) % 3;
                    }
                }
            }
            next += 1;
            // Move on regularly, so that kills hit the coordinator too.
            if next % 100 == 0 {
                con = None;
                node = (node + 1) % 3;
            }
        }
        (acked, attempted, ok, failed)
    });
    let started = Instant::now();
    for round in 0..CRASH_ROUNDS {
        std::thread::sleep(Duration::from_millis(100 + rng.below(300)));
        let victim = rng.below(3) as usize;
        cluster.kill(victim);
        std::thread::sleep(Duration::from_millis(50 + rng.below(250)));
        cluster.spawn(victim);
        cluster.wait_ready(victim);
        eprintln!(
            "round {round}: n{} killed and restarted at {:?}",
            victim + 1,
            started.elapsed()
        );
    }
    std::thread::sleep(Duration::from_millis(200));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (acked, attempted, ok, failed) = writer.join().unwrap();
    eprintln!("writes: {ok} acknowledged, {failed} failed");
    assert!(ok > 0, "no write was acknowledged\n{}", cluster.logs());
    for i in 0..3 {
        cluster.wait_peers_up(i);
    }
    let mut found = BTreeMap::new();
    // Every coordinator, each with its own quorum, must return it.
    for node in 0..3 {
        let mut con = client(cluster.port(node));
        for key in 0..CRASH_KEYS {
            let value: Option<String> = redis::cmd("GET")
                .arg(format!("crash-{key}"))
                .query(&mut con)
                .unwrap();
            let value: u64 = value.map_or(0, |v| v.parse().unwrap());
            assert!(
                value >= acked[key],
                "crash-{key} at n{}: read {value} but {} was acknowledged (seed {seed:#x})\n{}",
                node + 1,
                acked[key],
                cluster.logs()
            );
            assert!(
                value <= attempted[key],
                "crash-{key}: read {value}, never written"
            );
            found.insert(key, (acked[key], value));
        }
    }
    eprintln!("key: (last acknowledged, read at QUORUM) {found:?}");
}
