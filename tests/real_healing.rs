//! Self-healing between three real `enigma node` processes: a node that
//! missed writes while it was stopped is brought up to date by hinted
//! handoff, or by anti-entropy alone when hints are off, until it serves
//! every key by itself; and a paused (SIGSTOPped) node is judged down by its
//! peers' failure detectors, and up again once it resumes.

// Real processes need real deadlines, and helpers outside #[test] may unwrap.
#![allow(clippy::unwrap_used, clippy::disallowed_methods)]

mod support;

use std::process::Output;
use std::time::{Duration, Instant};

use support::{client, enigma, signal, Cluster};

/// Keys written while n3 is down.
const KEYS: usize = 1_000;
/// How long a node may take to catch up, or a failure detector to judge.
const HEAL_DEADLINE: Duration = Duration::from_secs(90);

/// Settings that make gossip and anti-entropy quick enough for a test.
const FAST: &[&str] = &[
    "--gossip-interval-ms",
    "100",
    "--anti-entropy-interval-ms",
    "200",
];

fn key(i: usize) -> String {
    format!("heal-{i:04}")
}

fn value(i: usize) -> String {
    format!("value-{i}")
}

/// Writes every key at `QUORUM` through n1, pipelined.
fn write_keys(cluster: &Cluster) {
    let mut con = client(cluster.port(0));
    for chunk in (0..KEYS).collect::<Vec<_>>().chunks(100) {
        let mut pipe = redis::pipe();
        for &i in chunk {
            pipe.cmd("AT")
                .arg("QUORUM")
                .arg("SET")
                .arg(key(i))
                .arg(value(i));
        }
        let replies: Vec<String> = pipe.query(&mut con).unwrap();
        assert!(replies.iter().all(|r| r == "OK"), "{replies:?}");
    }
}

/// The keys node `i` does not serve correctly at `ONE`.
fn missing_at_one(cluster: &Cluster, i: usize) -> Vec<String> {
    let mut con = client(cluster.port(i));
    let mut missing = Vec::new();
    for chunk in (0..KEYS).collect::<Vec<_>>().chunks(100) {
        let mut pipe = redis::pipe();
        for &k in chunk {
            pipe.cmd("AT").arg("ONE").arg("GET").arg(key(k));
        }
        let replies: Vec<Option<String>> = pipe.query(&mut con).unwrap();
        for (&k, reply) in chunk.iter().zip(replies) {
            if reply.as_deref() != Some(value(k).as_str()) {
                missing.push(key(k));
            }
        }
    }
    missing
}

/// Stops n3, writes every key through n1 at `QUORUM`, starts n3 again and
/// waits until n3 alone serves every key at `ONE`; then stops n1 and n2
/// and reads every key from n3 once more. Returns the membership n1 showed
/// while n3 was down.
fn stopped_node_catches_up(extra: &[&str]) -> (Cluster, String) {
    let mut settings = FAST.to_vec();
    settings.extend_from_slice(extra);
    let mut cluster = Cluster::start(3, &settings);
    cluster.terminate(2);
    cluster.wait_peers_up(0);
    cluster.wait_peers_up(1);
    write_keys(&cluster);
    // INFO shows a snapshot the node publishes at each tick: with hints on,
    // wait (a little) for one taken after the last write's hint.
    let hints_on = !extra.contains(&"--hinted-handoff");
    let settle = Instant::now() + Duration::from_secs(5);
    let while_down = loop {
        let text = cluster.membership(0);
        if !hints_on || hints_for(&text, 3) >= KEYS as u64 || Instant::now() >= settle {
            break text;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    cluster.spawn(2);
    cluster.wait_ready(2);
    let deadline = Instant::now() + HEAL_DEADLINE;
    loop {
        let missing = missing_at_one(&cluster, 2);
        if missing.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "n3 still misses {} of {KEYS} keys (first {:?}) {}s after it restarted\n{}",
            missing.len(),
            &missing[..missing.len().min(5)],
            HEAL_DEADLINE.as_secs(),
            cluster.logs()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    cluster.terminate(0);
    cluster.terminate(1);
    let missing = missing_at_one(&cluster, 2);
    assert!(
        missing.is_empty(),
        "with n1 and n2 stopped, n3 alone misses {} keys (first {:?})",
        missing.len(),
        &missing[..missing.len().min(5)]
    );
    (cluster, while_down)
}

/// Hints n1 holds for member `id`, from `INFO membership`.
fn hints_for(membership: &str, id: u32) -> u64 {
    membership
        .lines()
        .find(|l| l.starts_with(&format!("member_{id}:")))
        .and_then(|l| l.split(',').find_map(|f| f.strip_prefix("hints=")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no hints for n{id} in {membership}"))
}

#[test]
fn hints_bring_a_restarted_node_up_to_date() {
    let (cluster, while_down) = stopped_node_catches_up(&[]);
    // n1 coordinated every write and held n3 down: each write left a hint.
    assert!(
        hints_for(&while_down, 3) >= KEYS as u64,
        "n1 held fewer hints than writes for n3: {while_down}"
    );
    drop(cluster);
}

#[test]
fn anti_entropy_alone_brings_a_restarted_node_up_to_date() {
    let (cluster, while_down) = stopped_node_catches_up(&["--hinted-handoff", "false"]);
    assert_eq!(hints_for(&while_down, 3), 0, "hints were off: {while_down}");
    drop(cluster);
}

fn status_of(cluster: &Cluster, i: usize) -> Output {
    enigma()
        .arg("status")
        .arg("--node")
        .arg(format!("127.0.0.1:{}", cluster.port(i)))
        .output()
        .unwrap()
}

/// The state column of member `id` in `enigma status` output.
fn state_in_status(out: &Output, id: u32) -> String {
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find(|l| l.starts_with(&format!("n{id} ")))
        .and_then(|l| l.split_whitespace().nth(2))
        .unwrap_or_else(|| panic!("no row for n{id} in {text}"))
        .to_owned()
}

/// Polls n1's `enigma status` until n3's state is `wanted`.
fn wait_status(cluster: &Cluster, wanted: &str) {
    let deadline = Instant::now() + HEAL_DEADLINE;
    loop {
        let out = status_of(cluster, 0);
        assert!(out.status.success(), "{out:?}");
        if state_in_status(&out, 3) == wanted {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "n1 did not show n3 {wanted}: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_paused_node_shows_down_and_up_again_after_it_resumes() {
    let cluster = Cluster::start(3, FAST);
    wait_status(&cluster, "up");
    let pid = cluster.pid(2);
    signal(pid, "STOP");
    wait_status(&cluster, "down");
    // Held down, n3 is not waited on: a QUORUM write through n1 succeeds
    // at once with n1 and n2, and an ALL write is refused as unavailable
    // instead of timing out.
    let mut con = client(cluster.port(0));
    let ok: String = redis::cmd("AT")
        .arg("QUORUM")
        .arg("SET")
        .arg("paused")
        .arg("1")
        .query(&mut con)
        .unwrap();
    assert_eq!(ok, "OK");
    let refused: redis::RedisResult<String> = redis::cmd("AT")
        .arg("ALL")
        .arg("SET")
        .arg("paused")
        .arg("2")
        .query(&mut con);
    let err = refused.expect_err("an ALL write with a replica held down");
    assert!(
        format!("{err:?}").contains("UNAVAILABLE"),
        "expected UNAVAILABLE, got {err:?}"
    );
    signal(pid, "CONT");
    wait_status(&cluster, "up");
}
