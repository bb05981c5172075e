//! Real `enigma` processes on loopback, for end-to-end tests.
//!
//! Ports are picked below the ephemeral range and checked free by binding
//! them just before the node binds them (`free_ports`). Every wait is bounded
//! by a deadline (failing the test, never hanging it). Node logs go to
//! `<data dir>/n<ID>.log`, printed when a wait fails.

#![allow(dead_code, clippy::unwrap_used, clippy::disallowed_methods)]

pub mod planted;
use std::fs::OpenOptions;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

pub const SECRET: &str = "test-cluster-secret";
/// How long a node may take to start answering PING.
pub const START_DEADLINE: Duration = Duration::from_secs(30);

pub fn enigma() -> Command {
    Command::new(env!("CARGO_BIN_EXE_enigma"))
}

pub fn free_ports(count: usize) -> Vec<u16> {
    // Below Linux's ephemeral range (32768 and up): a port taken from that
    // range by binding port 0 and released can be handed by the kernel to
    // an outgoing connection (a client, or another test's peer link) before
    // the node binds it. Ports here are only ever chosen on purpose; the
    // counter keeps the tests of one binary apart, and the start depends on
    // the process id so that binaries run one after another do not reuse
    // each other's ports.
    const FIRST: u32 = 20_000;
    const SPAN: u32 = 12_000;
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let start = std::process::id().wrapping_mul(997) % SPAN;
    let mut listeners = Vec::with_capacity(count);
    for _ in 0..SPAN {
        if listeners.len() == count {
            break;
        }
        let offset = (start + NEXT.fetch_add(1, Ordering::Relaxed)) % SPAN;
        let port = u16::try_from(FIRST + offset).unwrap();
        if let Ok(listener) = TcpListener::bind(("127.0.0.1", port)) {
            listeners.push(listener);
        }
    }
    assert_eq!(listeners.len(), count, "no {count} free ports below 32768");
    listeners
        .iter()
        .map(|l| l.local_addr().unwrap().port())
        .collect()
}

/// Sends `signal` (`INT`, `TERM`, `KILL`) to process `pid`.
pub fn signal(pid: u32, signal: &str) {
    let status = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .status()
        .expect("the kill command runs");
    assert!(status.success(), "kill -{signal} {pid} failed");
}

/// Waits for `child` to exit, at most `limit`.
pub fn wait_exit(child: &mut Child, limit: Duration) -> ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("process {} did not exit within {limit:?}", child.id());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Sends one RESP command on a raw connection and reads one reply line
/// (enough for simple, error and integer replies).
pub fn raw_command(port: u16, line: &str) -> std::io::Result<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    stream.write_all(format!("{line}\r\n").as_bytes())?;
    let mut reader = BufReader::new(stream);
    let mut reply = String::new();
    reader.read_line(&mut reply)?;
    Ok(reply)
}

/// `GET path` over HTTP/1.1; returns the whole response.
pub fn http_get(port: u16, path: &str) -> String {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    write!(stream, "GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response
}

/// The value of the first metric line starting with `series` (the name
/// and labels), if any.
pub fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| {
        l.strip_prefix(series)
            .and_then(|rest| rest.trim().parse().ok())
    })
}

pub fn client(port: u16) -> redis::Connection {
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}/")).unwrap();
    let con = client
        .get_connection_with_timeout(Duration::from_secs(5))
        .unwrap();
    con.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    con.set_write_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    con
}

/// A connection to the node at `port`, or `None` while it is down (a
/// client of a test that kills nodes tries again or elsewhere).
pub fn try_client(port: u16) -> Option<redis::Connection> {
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}/")).ok()?;
    let con = client
        .get_connection_with_timeout(Duration::from_secs(2))
        .ok()?;
    con.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    Some(con)
}

/// One `enigma node` process of a test cluster.
#[derive(Debug)]
pub struct NodeProc {
    pub id: u32,
    pub client_port: u16,
    pub peer_port: u16,
    pub metrics_port: u16,
    pub child: Option<Child>,
}

/// A cluster of `enigma node` processes in a temporary directory.
#[derive(Debug)]
pub struct Cluster {
    pub dir: tempfile::TempDir,
    pub nodes: Vec<NodeProc>,
    /// Extra flags for every node.
    pub extra: Vec<String>,
}

impl Cluster {
    /// Starts `count` nodes (replication factor `count`) and waits until
    /// each answers PING and sees every peer up.
    pub fn start(count: usize, extra: &[&str]) -> Cluster {
        let ports = free_ports(count * 3);
        let nodes = (0..count)
            .map(|i| NodeProc {
                id: i as u32 + 1,
                client_port: ports[i * 3],
                peer_port: ports[i * 3 + 1],
                metrics_port: ports[i * 3 + 2],
                child: None,
            })
            .collect();
        let mut cluster = Cluster {
            dir: tempfile::tempdir().unwrap(),
            nodes,
            extra: extra.iter().map(|s| s.to_string()).collect(),
        };
        for i in 0..count {
            cluster.spawn(i);
        }
        for i in 0..count {
            cluster.wait_ready(i);
        }
        if count > 1 {
            for i in 0..count {
                cluster.wait_peers_up(i);
            }
        }
        cluster
    }

    pub fn log_path(&self, i: usize) -> PathBuf {
        self.dir.path().join(format!("n{}.log", self.nodes[i].id))
    }

    pub fn data_dir(&self, i: usize) -> PathBuf {
        self.dir.path().join(format!("n{}", self.nodes[i].id))
    }

    /// Starts node `i` (again) without waiting.
    pub fn spawn(&mut self, i: usize) {
        let node = &self.nodes[i];
        let peers: Vec<String> = self
            .nodes
            .iter()
            .filter(|n| n.id != node.id)
            .map(|n| format!("{}@127.0.0.1:{}", n.id, n.peer_port))
            .collect();
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path(i))
            .unwrap();
        let mut command = enigma();
        command
            .arg("node")
            .arg("--id")
            .arg(node.id.to_string())
            .arg("--listen")
            .arg(format!("127.0.0.1:{}", node.client_port))
            .arg("--peer-listen")
            .arg(format!("127.0.0.1:{}", node.peer_port))
            .arg("--metrics-listen")
            .arg(format!("127.0.0.1:{}", node.metrics_port))
            .arg("--data-dir")
            .arg(self.data_dir(i))
            .args(&self.extra)
            .env("ENIGMA_CLUSTER_SECRET", SECRET)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        if !peers.is_empty() {
            command.arg("--peers").arg(peers.join(","));
        }
        let child = command.spawn().expect("enigma starts");
        self.nodes[i].child = Some(child);
    }

    pub fn logs(&self) -> String {
        let mut all = String::new();
        for i in 0..self.nodes.len() {
            let mut text = String::new();
            if let Ok(mut f) = std::fs::File::open(self.log_path(i)) {
                let _ = f.read_to_string(&mut text);
            }
            let tail: Vec<&str> = text.lines().rev().take(40).collect();
            all.push_str(&format!("--- n{} log (last lines) ---\n", i + 1));
            for line in tail.into_iter().rev() {
                all.push_str(line);
                all.push('\n');
            }
        }
        all
    }

    /// Waits until node `i` answers PING.
    pub fn wait_ready(&mut self, i: usize) {
        let deadline = Instant::now() + START_DEADLINE;
        let port = self.nodes[i].client_port;
        loop {
            if let Ok(reply) = raw_command(port, "PING") {
                if reply.starts_with("+PONG") || reply.starts_with("-NOAUTH") {
                    return;
                }
            }
            if let Some(child) = self.nodes[i].child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    panic!(
                        "n{} exited with {status} while starting\n{}",
                        i + 1,
                        self.logs()
                    );
                }
            }
            assert!(
                Instant::now() < deadline,
                "n{} did not answer PING in time\n{}",
                i + 1,
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The `INFO membership` text of node `i`.
    pub fn membership(&self, i: usize) -> String {
        let mut con = client(self.nodes[i].client_port);
        redis::cmd("INFO")
            .arg("membership")
            .query(&mut con)
            .unwrap()
    }

    /// Waits until node `i` holds every running peer up (with its link to
    /// it connected) and every stopped one down.
    pub fn wait_peers_up(&self, i: usize) {
        let deadline = Instant::now() + START_DEADLINE;
        loop {
            let text = self.membership(i);
            let expected = self.nodes.iter().enumerate().all(|(j, n)| {
                let wanted: &[&str] = if j == i {
                    &["state=self,"]
                } else if n.child.is_some() {
                    &["state=up,", "link=up,"]
                } else {
                    &["state=down,"]
                };
                text.lines().any(|l| {
                    l.starts_with(&format!("member_{}:", n.id))
                        && wanted.iter().all(|w| l.contains(w))
                })
            });
            if expected {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "n{} does not see the expected peers: {text}\n{}",
                i + 1,
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILLs node `i`.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.nodes[i].child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    /// Stops node `i` with SIGTERM and returns its exit status.
    pub fn terminate(&mut self, i: usize) -> ExitStatus {
        let mut child = self.nodes[i].child.take().expect("node is running");
        signal(child.id(), "TERM");
        wait_exit(&mut child, Duration::from_secs(30))
    }

    pub fn port(&self, i: usize) -> u16 {
        self.nodes[i].client_port
    }

    pub fn pid(&self, i: usize) -> u32 {
        self.nodes[i].child.as_ref().expect("running").id()
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            if let Some(mut child) = node.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}
