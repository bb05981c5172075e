//! The chaos run's `enigma node` processes: start (in a node's namespace,
//! under libfaketime when its clock is skewed), SIGKILL and restart,
//! SIGSTOP and SIGCONT, a clean stop at the end.
//!
//! Each node is its own process and process group (Ctrl-C in the terminal
//! reaches only `enigma chaos`, which then stops them in order), with its
//! own data directory and log file under the run folder, `sync always`,
//! every node a replica of every key it is given (`--replication-factor`).
//! A node that exits by itself (not killed by the nemesis) is recorded: a
//! real process that dies under faults is a failure of the run.

use std::fs::OpenOptions;
use std::net::{Ipv4Addr, SocketAddr};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::network::Network;
use super::resp_client::{Reply, RespClient};

/// Client (RESP) port of every node (each has an address of its own).
pub const CLIENT_PORT: u16 = 7001;
/// Peer port of every node.
pub const PEER_PORT: u16 = 7101;
/// How long a node may take to answer PING after it starts.
const START_WAIT: Duration = Duration::from_secs(30);
/// How long a clean stop may take before the node is killed.
const STOP_WAIT: Duration = Duration::from_secs(15);
/// Pause between polls of a starting or stopping node.
const POLL: Duration = Duration::from_millis(50);
/// Where Debian's `faketime` package puts the library, per architecture.
const FAKETIME_LIB: &str = "faketime/libfaketime.so.1";

/// Why a node could not be managed.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// The process could not be started.
    #[error("cannot start node n{id}: {source}")]
    Spawn {
        /// The node.
        id: usize,
        /// Why.
        source: std::io::Error,
    },
    /// It did not answer PING in time.
    #[error("node n{id} did not answer PING within {secs}s (see {log})")]
    NotReady {
        /// The node.
        id: usize,
        /// The wait.
        secs: u64,
        /// Its log.
        log: String,
    },
    /// A signal could not be sent.
    #[error("cannot send SIG{signal} to node n{id}: {detail}")]
    Signal {
        /// The node.
        id: usize,
        /// The signal's name.
        signal: &'static str,
        /// Why.
        detail: String,
    },
}

/// What the nodes share.
#[derive(Debug, Clone)]
pub struct NodeSetup {
    /// The `enigma` executable.
    pub exe: PathBuf,
    /// The run folder (data directories and logs go under it).
    pub dir: PathBuf,
    /// Replicas per key.
    pub replication_factor: usize,
    /// Clients' password.
    pub password: String,
    /// Peers' shared secret.
    pub cluster_secret: String,
    /// Each node's clock offset in milliseconds (empty: no skew).
    pub clock_offsets_ms: Vec<i64>,
    /// libfaketime, when clocks are skewed.
    pub faketime: Option<PathBuf>,
}

/// One node's process and state.
#[derive(Debug)]
struct Proc {
    child: Option<Child>,
    paused: bool,
}

/// The cluster's processes.
#[derive(Debug)]
pub struct Nodes {
    setup: NodeSetup,
    addrs: Vec<Ipv4Addr>,
    namespaces: Vec<Option<String>>,
    procs: Vec<Proc>,
    /// Exits nobody asked for: (node id, status).
    pub unexpected_exits: Vec<(usize, String)>,
}

impl Nodes {
    /// The nodes of `network` (none started yet).
    pub fn new(setup: NodeSetup, network: &Network, count: usize) -> Nodes {
        Nodes {
            addrs: (0..count).map(|i| network.node_ip(i)).collect(),
            namespaces: (0..count)
                .map(|i| network.namespaces().map(|ns| ns.name(i).to_owned()))
                .collect(),
            procs: (0..count)
                .map(|_| Proc {
                    child: None,
                    paused: false,
                })
                .collect(),
            setup,
            unexpected_exits: Vec::new(),
        }
    }

    /// How many nodes.
    pub fn len(&self) -> usize {
        self.procs.len()
    }

    /// Node `i`'s client address.
    pub fn client_addr(&self, i: usize) -> SocketAddr {
        SocketAddr::from((self.addrs[i], CLIENT_PORT))
    }

    /// Node `i`'s log file.
    pub fn log_path(&self, i: usize) -> PathBuf {
        self.setup.dir.join(format!("n{}.log", i + 1))
    }

    fn data_dir(&self, i: usize) -> PathBuf {
        self.setup.dir.join(format!("n{}", i + 1))
    }

    /// Starts node `i` without waiting for it.
    pub fn spawn(&mut self, i: usize) -> Result<(), NodeError> {
        let id = i + 1;
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path(i))
            .map_err(|source| NodeError::Spawn { id, source })?;
        let peers: Vec<String> = (0..self.len())
            .filter(|&j| j != i)
            .map(|j| format!("{}@{}:{PEER_PORT}", j + 1, self.addrs[j]))
            .collect();
        let mut command = match &self.namespaces[i] {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).arg(&self.setup.exe);
                c
            }
            None => Command::new(&self.setup.exe),
        };
        command
            .arg("node")
            .arg("--id")
            .arg(id.to_string())
            .arg("--listen")
            .arg(format!("{}:{CLIENT_PORT}", self.addrs[i]))
            .arg("--peer-listen")
            .arg(format!("{}:{PEER_PORT}", self.addrs[i]))
            .arg("--data-dir")
            .arg(self.data_dir(i))
            .arg("--sync")
            .arg("always")
            .arg("--replication-factor")
            .arg(self.setup.replication_factor.to_string())
            // Anti-entropy compares ranges every 2 s instead of 10 s, so a
            // short run converges within its bound after the heal.
            .arg("--anti-entropy-interval-ms")
            .arg("2000")
            .env("ENIGMA_CLUSTER_SECRET", &self.setup.cluster_secret)
            .env("ENIGMA_REQUIREPASS", &self.setup.password)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .process_group(0);
        if !peers.is_empty() {
            command.arg("--peers").arg(peers.join(","));
        }
        if let (Some(lib), Some(&offset)) =
            (&self.setup.faketime, self.setup.clock_offsets_ms.get(i))
        {
            command
                .env("LD_PRELOAD", lib)
                .env("FAKETIME", faketime_offset(offset))
                .env("FAKETIME_DONT_FAKE_MONOTONIC", "1");
        }
        let child = command
            .spawn()
            .map_err(|source| NodeError::Spawn { id, source })?;
        self.procs[i] = Proc {
            child: Some(child),
            paused: false,
        };
        Ok(())
    }

    /// Waits until node `i` answers PING (as it must after `AUTH`).
    pub fn wait_ready(&mut self, i: usize) -> Result<(), NodeError> {
        #[allow(clippy::disallowed_methods)]
        let deadline = Instant::now() + START_WAIT;
        loop {
            if self.ping(i) {
                return Ok(());
            }
            self.reap();
            #[allow(clippy::disallowed_methods)]
            let late = Instant::now() > deadline;
            if late || super::stopping() {
                return Err(NodeError::NotReady {
                    id: i + 1,
                    secs: START_WAIT.as_secs(),
                    log: self.log_path(i).display().to_string(),
                });
            }
            std::thread::sleep(POLL);
        }
    }

    /// Whether node `i` answers an authenticated PING.
    pub fn ping(&self, i: usize) -> bool {
        let Ok(mut c) = RespClient::connect(self.client_addr(i), Duration::from_secs(2)) else {
            return false;
        };
        matches!(
            c.command(&[b"AUTH", self.setup.password.as_bytes()]),
            Ok(Reply::Simple(_))
        ) && matches!(c.command(&[b"PING"]), Ok(Reply::Simple(s)) if s == "PONG")
    }

    /// SIGKILLs node `i` and waits for it.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.procs[i].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.procs[i].paused = false;
    }

    /// Whether node `i` is running (started, not killed).
    pub fn running(&self, i: usize) -> bool {
        self.procs[i].child.is_some()
    }

    /// SIGSTOPs node `i`.
    pub fn pause(&mut self, i: usize) -> Result<(), NodeError> {
        self.signal(i, "STOP")?;
        self.procs[i].paused = true;
        Ok(())
    }

    /// SIGCONTs node `i` if paused.
    pub fn resume(&mut self, i: usize) -> Result<(), NodeError> {
        if self.procs[i].paused {
            self.signal(i, "CONT")?;
            self.procs[i].paused = false;
        }
        Ok(())
    }

    fn signal(&self, i: usize, signal: &'static str) -> Result<(), NodeError> {
        let id = i + 1;
        let Some(child) = &self.procs[i].child else {
            return Err(NodeError::Signal {
                id,
                signal,
                detail: "not running".into(),
            });
        };
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(child.id().to_string())
            .stdin(Stdio::null())
            .status()
            .map_err(|e| NodeError::Signal {
                id,
                signal,
                detail: e.to_string(),
            })?;
        if status.success() {
            Ok(())
        } else {
            Err(NodeError::Signal {
                id,
                signal,
                detail: format!("kill exited with {status}"),
            })
        }
    }

    /// Notes every node that exited by itself.
    pub fn reap(&mut self) {
        for (i, proc) in self.procs.iter_mut().enumerate() {
            if let Some(child) = &mut proc.child {
                if let Ok(Some(status)) = child.try_wait() {
                    self.unexpected_exits.push((i + 1, status.to_string()));
                    proc.child = None;
                }
            }
        }
    }

    /// Stops every node cleanly (SIGCONT, then SIGTERM; SIGKILL after
    /// [`STOP_WAIT`]); returns the nodes whose clean stop failed.
    pub fn stop_all(&mut self) -> Vec<(usize, String)> {
        self.reap();
        let mut failed = Vec::new();
        for i in 0..self.len() {
            let _ = self.resume(i);
            if self.procs[i].child.is_some() {
                if let Err(e) = self.signal(i, "TERM") {
                    failed.push((i + 1, e.to_string()));
                }
            }
        }
        for i in 0..self.len() {
            let Some(mut child) = self.procs[i].child.take() else {
                continue;
            };
            #[allow(clippy::disallowed_methods)]
            let deadline = Instant::now() + STOP_WAIT;
            loop {
                match child.try_wait() {
                    Ok(Some(status)) if status.success() => break,
                    Ok(Some(status)) => {
                        failed.push((i + 1, format!("clean stop ended with {status}")));
                        break;
                    }
                    Ok(None) => {}
                    Err(e) => {
                        failed.push((i + 1, e.to_string()));
                        break;
                    }
                }
                #[allow(clippy::disallowed_methods)]
                if Instant::now() > deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    failed.push((i + 1, format!("no clean stop within {STOP_WAIT:?}")));
                    break;
                }
                std::thread::sleep(POLL);
            }
        }
        failed
    }
}

impl Drop for Nodes {
    fn drop(&mut self) {
        for proc in &mut self.procs {
            if let Some(mut child) = proc.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

/// libfaketime's relative offset for `ms` milliseconds (`+0.250`).
pub fn faketime_offset(ms: i64) -> String {
    let sign = if ms < 0 { '-' } else { '+' };
    let ms = ms.unsigned_abs();
    format!("{sign}{}.{:03}", ms / 1000, ms % 1000)
}

/// libfaketime from Debian's `faketime` package, if installed.
pub fn find_faketime() -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = vec![PathBuf::from("/usr/lib")];
    if let Ok(entries) = std::fs::read_dir("/usr/lib") {
        let mut multiarch: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.join(FAKETIME_LIB).is_file())
            .collect();
        multiarch.sort();
        dirs.extend(multiarch);
    }
    dirs.into_iter()
        .map(|d| d.join(FAKETIME_LIB))
        .find(|p| Path::new(p).is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faketime_offsets_are_signed_seconds_with_milliseconds() {
        assert_eq!(faketime_offset(0), "+0.000");
        assert_eq!(faketime_offset(250), "+0.250");
        assert_eq!(faketime_offset(-1_005), "-1.005");
    }
}
