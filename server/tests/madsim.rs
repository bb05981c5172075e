//! The production driver under madsim: real connections, peer links,
//! reconnects, the node task and its clean stop, on simulated network and
//! time, with a seed.
//!
//! Built only with `RUSTFLAGS="--cfg madsim"` (`.ci/run`'s madsim step;
//! `docs/FAULTS.md`, "The driver under madsim"). Three nodes and four
//! clients; a nemesis kills and restarts nodes, cuts peer links (a cut
//! link holds its bytes, a dial over it is refused) and slows the network;
//! clients pipeline commands and now and then hang up mid-pipeline. Checked:
//! nothing panics (a panic in any task fails the run); every request gets
//! exactly one reply or its connection closes; every peer link is up again
//! after the heal; a clean stop answers the commands a connection already
//! sent. Each seed runs twice, each run on a fresh thread (madsim's
//! generator and the thread's hash keys start from the seed), and the two
//! runs' traces must be equal: the seed replays.
//!
//! `ENIGMA_MADSIM_SEED=N` runs only seed `N` (decimal or `0x` hex) and
//! prints its trace as it goes (on stderr).
#![cfg(madsim)]

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use enigma_cluster::NodeId;
use enigma_server::config::{NodeArgs, PeerAddr, SyncMode};
use enigma_server::driver::Shared;
use enigma_server::server::{Listeners, RunningNode};
use madsim::net::NetSim;
use madsim::rand::Rng as _;
use madsim::runtime::{Handle, NodeHandle, Runtime};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const NODES: u8 = 3;
const CLIENTS: u8 = 4;
const CLIENT_PORT: u16 = 6379;
const PEER_PORT: u16 = 7379;
/// Seeds CI runs (each twice).
const SEEDS: u64 = 8;
/// Nemesis steps per run.
const FAULT_STEPS: u32 = 12;
/// Longest a client waits for a reply before the request counts as lost
/// (the nodes' request timeout is 2 s).
const REPLY_WAIT: Duration = Duration::from_secs(20);

/// What one run saw, in order; two runs of a seed must see the same.
type Trace = Arc<Mutex<Vec<String>>>;

std::thread_local! {
    /// When the run on this thread started, in simulated time.
    static STARTED: std::cell::Cell<Option<madsim::time::Instant>> = const { std::cell::Cell::new(None) };
    /// Known leak: from the clean stop on, a run ends a few task polls
    /// (madsim moves the clock 50-100 ns per poll) earlier or later from
    /// one run of a seed to the next; those events are stamped to the
    /// millisecond (docs/FAULTS.md).
    static COARSE: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Appends `line` to the trace, stamped with the simulated time since the
/// run started.
fn note(trace: &Trace, line: String) {
    let now = madsim::time::Instant::now();
    let started = STARTED.with(|s| {
        let started = s.get().unwrap_or(now);
        s.set(Some(started));
        started
    });
    let line = if COARSE.with(std::cell::Cell::get) {
        format!("{} ms {line}", (now - started).as_millis())
    } else {
        format!("{:?} {line}", now - started)
    };
    if seeds_len_one() {
        eprintln!("{line}");
    }
    trace.lock().expect("trace lock").push(line);
}

fn node_ip(n: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, 0, 0, n))
}

/// The running nodes' shared state, replaced at each restart.
type Nodes = Arc<Mutex<BTreeMap<u8, Arc<Shared>>>>;

fn start_node(
    rt: &Runtime,
    n: u8,
    dir: &std::path::Path,
    nodes: &Nodes,
    trace: &Trace,
) -> NodeHandle {
    let peers: Vec<PeerAddr> = (1..=NODES)
        .filter(|&p| p != n)
        .map(|p| PeerAddr {
            id: NodeId(u32::from(p)),
            addr: SocketAddr::new(node_ip(p), PEER_PORT),
        })
        .collect();
    let base = NodeArgs {
        id: Some(u32::from(n)),
        cluster_secret: Some("madsim-cluster-secret".to_owned()),
        request_timeout_ms: Some(2_000),
        ..NodeArgs::default()
    }
    .resolve_with_peers(peers)
    .expect("node settings");
    let config = enigma_server::config::NodeConfig {
        listen: SocketAddr::new(node_ip(n), CLIENT_PORT),
        peer_listen: SocketAddr::new(node_ip(n), PEER_PORT),
        metrics_listen: None,
        data_dir: dir.join(format!("n{n}")),
        sync: SyncMode::Never,
        // Simulated hosts have no loopback clients: serve without a password.
        protected_mode: false,
        ..base
    };
    config.validate().expect("valid settings");
    let nodes = nodes.clone();
    let trace = trace.clone();
    rt.create_node()
        .name(format!("node{n}"))
        .ip(node_ip(n))
        .init(move || {
            let config = config.clone();
            let nodes = nodes.clone();
            let trace = trace.clone();
            async move {
                let listeners =
                    Listeners::bind(config.listen, config.peer_listen, None).expect("addresses");
                let node = RunningNode::start(config, listeners).expect("node starts");
                nodes
                    .lock()
                    .expect("nodes lock")
                    .insert(n, node.shared().clone());
                note(&trace, format!("node {n} started"));
                tokio::select! {
                    biased;
                    _ = tokio::signal::ctrl_c() => {}
                    () = node.ended() => panic!("node {n} ended by itself"),
                }
                note(&trace, format!("node {n} stopping"));
                node.stop().await.expect("a clean stop");
                nodes.lock().expect("nodes lock").remove(&n);
                note(&trace, format!("node {n} stopped cleanly"));
            }
        })
        .build()
}

/// The length of the first whole RESP2 reply in `buf`, if there is one.
fn reply_len(buf: &[u8]) -> Option<usize> {
    let line_end = buf.windows(2).position(|w| w == b"\r\n")?;
    let head = std::str::from_utf8(&buf[1..line_end]).expect("reply head is text");
    match buf.first()? {
        b'+' | b'-' | b':' => Some(line_end + 2),
        b'$' => {
            let len: i64 = head.parse().expect("bulk length");
            if len < 0 {
                return Some(line_end + 2);
            }
            let end = line_end + 2 + len as usize + 2;
            (buf.len() >= end).then_some(end)
        }
        b'*' => {
            let count: i64 = head.parse().expect("array length");
            let mut at = line_end + 2;
            for _ in 0..count.max(0) {
                at += reply_len(&buf[at..])?;
            }
            Some(at)
        }
        other => panic!("not a RESP2 reply: {:?}", char::from(*other)),
    }
}

fn command(args: &[&str]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend_from_slice(format!("${}\r\n{a}\r\n", a.len()).as_bytes());
    }
    out
}

/// How one pipeline ended.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    /// Every request answered.
    Answered,
    /// The connection closed after this many replies.
    Closed(usize),
    /// The client hung up after this many replies, on purpose.
    HungUp(usize),
}

/// Sends `requests` commands in one write and reads replies until all are
/// answered, the connection closes, or `hang_up_after` replies were read.
/// Panics on a request with neither a reply nor a closed connection, and
/// on a reply nobody asked for.
async fn pipeline(
    stream: &mut TcpStream,
    requests: &[Vec<u8>],
    hang_up_after: Option<usize>,
) -> Outcome {
    let bytes: Vec<u8> = requests.concat();
    // madsim's TcpStream sends what was written at a flush.
    if stream.write_all(&bytes).await.is_err() || stream.flush().await.is_err() {
        return Outcome::Closed(0);
    }
    let mut buf = Vec::new();
    let mut answered = 0;
    let mut chunk = [0u8; 4096];
    loop {
        while let Some(len) = reply_len(&buf) {
            buf.drain(..len);
            answered += 1;
        }
        assert!(answered <= requests.len(), "more replies than requests");
        if answered == requests.len() && buf.is_empty() {
            return Outcome::Answered;
        }
        if hang_up_after.is_some_and(|h| answered >= h) {
            return Outcome::HungUp(answered);
        }
        match tokio::time::timeout(REPLY_WAIT, stream.read(&mut chunk)).await {
            Ok(Ok(0) | Err(_)) => return Outcome::Closed(answered),
            Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
            Err(_) => panic!(
                "{} of {} requests got neither a reply nor a closed connection in {REPLY_WAIT:?}",
                requests.len() - answered,
                requests.len()
            ),
        }
    }
}

/// One client: connects to a node, pipelines writes and reads, sometimes
/// hangs up mid-pipeline, reconnects (to the next node) when closed.
async fn client(c: u8, rounds: u32, trace: Trace) {
    let mut target = c % NODES + 1;
    let mut stream = None;
    for round in 0..rounds {
        if stream.is_none() {
            let addr = SocketAddr::new(node_ip(target), CLIENT_PORT);
            match TcpStream::connect(addr).await {
                Ok(s) => stream = Some(s),
                Err(_) => {
                    note(&trace, format!("client {c} cannot reach node {target}"));
                    target = target % NODES + 1;
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
            }
        }
        let s = stream.as_mut().expect("connected");
        let n = madsim::rand::thread_rng().gen_range(1..=8usize);
        let requests: Vec<Vec<u8>> = (0..n)
            .map(|i| {
                let key = format!("k{}", (usize::from(c) * 7 + i) % 10);
                if i % 2 == 0 {
                    command(&["SET", &key, &format!("c{c}r{round}i{i}")])
                } else {
                    command(&["GET", &key])
                }
            })
            .collect();
        let hang_up = (madsim::rand::thread_rng().gen_range(0..5) == 0)
            .then(|| madsim::rand::thread_rng().gen_range(0..n));
        let outcome = pipeline(s, &requests, hang_up).await;
        note(
            &trace,
            format!("client {c} round {round} node {target}: {n} sent, {outcome:?}"),
        );
        if outcome != Outcome::Answered {
            stream = None;
            target = target % NODES + 1;
        }
        let pause = madsim::rand::thread_rng().gen_range(10..300);
        tokio::time::sleep(Duration::from_millis(pause)).await;
    }
}

/// Every link of every running node is up.
fn all_links_up(nodes: &Nodes) -> bool {
    let nodes = nodes.lock().expect("nodes lock");
    nodes.len() == usize::from(NODES) && nodes.values().all(|s| s.links.values().all(|l| l.is_up()))
}

/// One run of `seed`: its trace.
fn run(seed: u64) -> Vec<String> {
    let dir = tempfile::tempdir().expect("temporary directory");
    let rt = Runtime::with_seed_and_config(seed, madsim::Config::default());
    let trace: Trace = Arc::default();
    let nodes: Nodes = Arc::default();
    let handles: Vec<NodeHandle> = (1..=NODES)
        .map(|n| start_node(&rt, n, dir.path(), &nodes, &trace))
        .collect();
    let clients: Vec<NodeHandle> = (1..=CLIENTS)
        .map(|c| {
            rt.create_node()
                .name(format!("client{c}"))
                .ip(IpAddr::V4(Ipv4Addr::new(10, 0, 1, c)))
                .build()
        })
        .collect();
    let run_trace = trace.clone();
    rt.block_on(async move {
        let trace = run_trace;
        let handle = Handle::current();
        let net = NetSim::current();
        tokio::time::sleep(Duration::from_secs(2)).await;
        let workers: Vec<_> = clients
            .iter()
            .zip(1..)
            .map(|(h, c)| h.spawn(client(c, 60, trace.clone())))
            .collect();
        let mut down: Option<u8> = None;
        let mut cut: Vec<(u8, u8)> = Vec::new();
        for _ in 0..FAULT_STEPS {
            let pause = madsim::rand::thread_rng().gen_range(500..2_500);
            tokio::time::sleep(Duration::from_millis(pause)).await;
            let pick = madsim::rand::thread_rng().gen_range(0..5);
            let node = madsim::rand::thread_rng().gen_range(1..=NODES);
            let other = node % NODES + 1;
            let id = |n: u8| handles[usize::from(n - 1)].id();
            match pick {
                0 if down.is_none() => {
                    handle.kill(id(node));
                    nodes.lock().expect("nodes lock").remove(&node);
                    down = Some(node);
                    note(&trace, format!("nemesis: kill node {node}"));
                }
                0 | 1 if down.is_some() => {
                    let n = down.take().expect("a node is down");
                    handle.restart(id(n));
                    note(&trace, format!("nemesis: restart node {n}"));
                }
                2 => {
                    net.clog_link(id(node), id(other));
                    net.clog_link(id(other), id(node));
                    cut.push((node, other));
                    note(&trace, format!("nemesis: cut {node} <-> {other}"));
                }
                3 => {
                    net.update_config(|c| {
                        c.send_latency = Duration::from_millis(50)..Duration::from_millis(400);
                    });
                    note(&trace, "nemesis: slow network".to_owned());
                }
                _ => {
                    for (a, b) in cut.drain(..) {
                        net.unclog_link(id(a), id(b));
                        net.unclog_link(id(b), id(a));
                    }
                    net.update_config(|c| {
                        c.send_latency = Duration::from_millis(1)..Duration::from_millis(10)
                    });
                    note(&trace, "nemesis: heal links".to_owned());
                }
            }
        }
        // Heal everything; every link must come back.
        if let Some(n) = down.take() {
            handle.restart(handles[usize::from(n - 1)].id());
        }
        for (a, b) in cut.drain(..) {
            let (a, b) = (
                handles[usize::from(a - 1)].id(),
                handles[usize::from(b - 1)].id(),
            );
            net.unclog_link(a, b);
            net.unclog_link(b, a);
        }
        net.update_config(|c| c.send_latency = Duration::from_millis(1)..Duration::from_millis(10));
        note(&trace, "nemesis: healed".to_owned());
        for w in workers {
            w.await.expect("a client panicked");
        }
        let mut waited = 0;
        while !all_links_up(&nodes) {
            waited += 1;
            assert!(waited < 600, "peer links still down 60 s after the heal");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        note(&trace, "every peer link is up".to_owned());

        // A clean stop answers what a connection already sent.
        let last = clients[0].spawn(async {
            let mut s = TcpStream::connect(SocketAddr::new(node_ip(1), CLIENT_PORT))
                .await
                .expect("node 1 is up");
            let requests: Vec<Vec<u8>> = (0..6)
                .map(|i| command(&["SET", &format!("stop{i}"), "v"]))
                .collect();
            assert_eq!(
                pipeline(&mut s, &requests[..1], None).await,
                Outcome::Answered
            );
            s.write_all(&requests[1..].concat()).await.expect("send");
            s.flush().await.expect("send");
            s
        });
        let mut s = last.await.expect("the last client");
        tokio::time::sleep(Duration::from_millis(20)).await;
        COARSE.with(|c| c.set(true));
        handle.send_ctrl_c(handles[0].id());
        let tail = clients[0]
            .spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 1024];
                loop {
                    match tokio::time::timeout(REPLY_WAIT, s.read(&mut chunk)).await {
                        Ok(Ok(0) | Err(_)) => break,
                        Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
                        Err(_) => panic!("the stopping node neither answered nor closed"),
                    }
                }
                let mut answered = 0;
                while let Some(len) = reply_len(&buf) {
                    buf.drain(..len);
                    answered += 1;
                }
                answered
            })
            .await
            .expect("the tail reader");
        note(
            &trace,
            format!("stop answered {tail} of 5 commands sent before it"),
        );
        assert_eq!(
            tail, 5,
            "a clean stop must answer every command it received"
        );
        while nodes.lock().expect("nodes lock").contains_key(&1) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    let lines = trace.lock().expect("trace lock").clone();
    lines
}

/// Runs `seed` on a fresh thread.
fn run_fresh(seed: u64) -> Vec<String> {
    std::thread::spawn(move || run(seed))
        .join()
        .unwrap_or_else(|_| panic!("seed {seed:#x} failed (replay: ENIGMA_MADSIM_SEED={seed:#x})"))
}

#[test]
fn the_driver_survives_faults_and_its_seeds_replay() {
    let seeds: Vec<u64> = match std::env::var("ENIGMA_MADSIM_SEED") {
        Ok(s) => {
            // The nodes' logs, as `RUST_LOG` asks.
            madsim::runtime::init_logger();
            let seed = s
                .strip_prefix("0x")
                .map_or_else(|| s.parse(), |h| u64::from_str_radix(h, 16))
                .expect("ENIGMA_MADSIM_SEED is a number");
            vec![seed]
        }
        Err(_) => (1..=SEEDS).collect(),
    };
    for seed in seeds {
        let first = run_fresh(seed);
        let second = run_fresh(seed);
        let answered = first.iter().filter(|l| l.ends_with("Answered")).count();
        println!(
            "seed {seed:#x}: {} events, {answered} pipelines answered in full",
            first.len()
        );
        assert!(answered > 0, "seed {seed:#x}: no pipeline was answered");
        if let Some(at) =
            (0..first.len().max(second.len())).find(|&i| first.get(i) != second.get(i))
        {
            panic!(
                "seed {seed:#x} did not replay: event {at} was {:?} in the first run, {:?} in the second",
                first.get(at),
                second.get(at)
            );
        }
    }
}

fn seeds_len_one() -> bool {
    std::env::var("ENIGMA_MADSIM_SEED").is_ok()
}
