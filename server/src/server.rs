//! A running node: its listeners, tasks and node thread, and how it stops.
//!
//! [`Listeners::bind`] opens the sockets (so a caller can learn ephemeral
//! ports before configuring peers), [`RunningNode::start`] recovers the node
//! from its data directory and starts everything, and
//! [`RunningNode::stop`] shuts down in order: stop accepting clients, let
//! every connection finish the commands it already sent, stop the peers and
//! the ticker, flush the node one last time, join its thread.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use enigma_cluster::{AntiEntropyOptions, HintOptions, Node, NodeOptions};
use enigma_engine::{EngineOptions, FsDisk, SyncPolicy};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tracing::{info, warn};

use crate::config::{NodeConfig, SyncMode};
use crate::connection::run_client_listener;
use crate::driver::{run_node, DriverInput, NodeSnapshot, Shared, ValueSizes};
use crate::peer::{cluster_digest, run_acceptor, run_dialer, HandshakeKeys, PeerLink};
use crate::tls::TlsContext;

/// Inputs that may wait for the node thread before senders block.
pub const INPUT_QUEUE_MAX: usize = 8192;
/// Extra time, beyond the request timeout, that a stop waits for in-flight
/// commands.
const STOP_GRACE: Duration = Duration::from_secs(1);
/// Longest wait for the shutdown announcement to leave for the peers.
const SHUTDOWN_ANNOUNCE_WAIT: Duration = Duration::from_millis(200);
/// Largest HTTP request head the metrics endpoint reads.
const HTTP_HEAD_BYTES_MAX: usize = 8 << 10;

/// Most connections waiting to be accepted on a listener.
#[cfg(not(madsim))]
const LISTEN_BACKLOG: i32 = 1024;

/// A node's bound sockets, not yet tied to a runtime: each node runs on a
/// runtime of its own, which takes them over in [`RunningNode::start`].
///
/// Under `--cfg madsim` (simulated network, `tests/madsim.rs`) sockets can
/// only be bound inside the simulated node: this holds the addresses, and
/// the node's task binds them when it starts.
#[derive(Debug)]
pub struct Listeners {
    client: BoundListener,
    peer: BoundListener,
    metrics: Option<BoundListener>,
}

#[cfg(not(madsim))]
type BoundListener = std::net::TcpListener;
#[cfg(madsim)]
type BoundListener = SocketAddr;

/// Binds `addr` with `SO_REUSEADDR`, so that a restarted node gets its port
/// back while connections of its previous life linger in TIME_WAIT.
#[cfg(not(madsim))]
fn listen(addr: SocketAddr, what: &str) -> anyhow::Result<BoundListener> {
    let bind = || -> std::io::Result<std::net::TcpListener> {
        let socket = socket2::Socket::new(
            socket2::Domain::for_address(addr),
            socket2::Type::STREAM,
            None,
        )?;
        socket.set_reuse_address(true)?;
        socket.bind(&addr.into())?;
        socket.listen(LISTEN_BACKLOG)?;
        socket.set_nonblocking(true)?;
        Ok(socket.into())
    };
    bind().with_context(|| format!("cannot listen for {what} on {addr}"))
}

/// Under madsim the address is bound by the node's task ([`take_over`]).
#[cfg(madsim)]
#[allow(clippy::unnecessary_wraps)] // the same signature as a real build's
fn listen(addr: SocketAddr, _what: &str) -> anyhow::Result<BoundListener> {
    Ok(addr)
}

/// The node's runtime takes over a bound listener.
#[cfg(not(madsim))]
#[allow(clippy::unused_async)] // madsim's version binds, which awaits
async fn take_over(listener: BoundListener) -> std::io::Result<TcpListener> {
    TcpListener::from_std(listener)
}

/// Binds the address in the simulated node.
#[cfg(madsim)]
async fn take_over(addr: BoundListener) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}

/// The address a bound listener serves.
#[cfg(not(madsim))]
fn bound_addr(listener: &BoundListener) -> SocketAddr {
    listener
        .local_addr()
        .expect("a bound listener has an address")
}

/// The address a listener will serve.
#[cfg(madsim)]
fn bound_addr(addr: &BoundListener) -> SocketAddr {
    *addr
}

impl Listeners {
    /// Binds the client, peer and (if configured) metrics addresses.
    ///
    /// # Errors
    /// An address that cannot be bound, named in the message.
    pub fn bind(
        client: SocketAddr,
        peer: SocketAddr,
        metrics: Option<SocketAddr>,
    ) -> anyhow::Result<Self> {
        Ok(Self {
            client: listen(client, "clients")?,
            peer: listen(peer, "peers")?,
            metrics: metrics.map(|addr| listen(addr, "metrics")).transpose()?,
        })
    }

    /// The bound client address.
    pub fn client_addr(&self) -> SocketAddr {
        bound_addr(&self.client)
    }

    /// The bound peer address.
    pub fn peer_addr(&self) -> SocketAddr {
        bound_addr(&self.peer)
    }

    /// The bound metrics address, if any.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics.as_ref().map(bound_addr)
    }
}

/// A node that is serving.
#[derive(Debug)]
pub struct RunningNode {
    shared: Arc<Shared>,
    /// Raised first: stop accepting clients, finish in-flight commands.
    stop_clients: watch::Sender<bool>,
    /// Raised second: stop peers and the ticker.
    stop_peers: watch::Sender<bool>,
    /// The node thread (a task under madsim); `Err` is a dead node
    /// (failed flush).
    thread: Option<NodeThread>,
    /// Set when the node thread ends.
    ended: watch::Receiver<bool>,
    metrics_addr: Option<SocketAddr>,
}

impl RunningNode {
    /// Recovers the node from `config.data_dir` and starts serving on
    /// `listeners`, on a thread and runtime of the node's own.
    ///
    /// # Errors
    /// Unusable data directory, corrupt storage, bad cluster configuration.
    pub fn start(config: NodeConfig, listeners: Listeners) -> anyhow::Result<Self> {
        // Everything that can refuse the start without touching the data
        // directory comes first.
        let tls = TlsContext::load(&config.tls).context("TLS settings")?;
        crate::run::private_dir(&config.data_dir)?;
        let disk = FsDisk::open(&config.data_dir)
            .with_context(|| format!("data directory {}", config.data_dir.display()))?;
        #[allow(unused_mut)]
        let mut options = node_options(&config);
        #[cfg(feature = "planted-bugs")]
        crate::planted::apply(&mut options);
        options
            .engine
            .validate()
            .map_err(|e| anyhow::anyhow!("storage options: {e}"))?;
        let cluster = config.cluster();
        let node = Node::new(config.id, &cluster, options, disk).with_context(|| {
            format!(
                "cannot start node {} from {}",
                config.id,
                config.data_dir.display()
            )
        })?;
        crate::driver::log_recovery(&node, config.id);
        let ring = node.ring().clone();
        let generation = node.generation();
        log_recovery(config.id, node.engine().recovery_report());
        let keys = Arc::new(HandshakeKeys {
            me: config.id,
            members: cluster.nodes.clone(),
            digest: cluster_digest(&cluster),
            secret: config.cluster_secret.expose().as_bytes().to_vec(),
        });
        let links = config
            .peers
            .iter()
            .map(|p| {
                (
                    p.id,
                    Arc::new(PeerLink::new(
                        p.id,
                        p.addr,
                        config.peer_send_queue_bytes_max,
                        config.peer_bulk_queue_bytes_max,
                    )),
                )
            })
            .collect();
        let (inputs, receiver) = mpsc::channel(INPUT_QUEUE_MAX);
        let client_addr = listeners.client_addr();
        let peer_addr = listeners.peer_addr();
        let metrics_addr = listeners.metrics_addr();
        #[allow(clippy::disallowed_methods)] // uptime, for INFO
        let started = std::time::Instant::now();
        let judged_up = config
            .peers
            .iter()
            .map(|p| p.id)
            .map(|id| (id, std::sync::atomic::AtomicBool::new(true)))
            .collect();
        let shared = Arc::new(Shared {
            judged_up,
            clock_refuses_writes: std::sync::atomic::AtomicBool::new(false),
            config,
            client_addr,
            peer_addr,
            ring,
            links,
            metrics: crate::metrics::Metrics::default(),
            inputs,
            clients: crate::driver::ClientQueue::default(),
            core: Mutex::new(None),
            snapshot: Mutex::new(NodeSnapshot::default()),
            started,
            connections: AtomicUsize::new(0),
            next_conn: AtomicU64::new(1),
            client_bytes: AtomicUsize::new(0),
            values: ValueSizes::default(),
            conn_slots: Mutex::new(BTreeMap::new()),
            bulk_pending: AtomicUsize::new(0),
        });
        let (ended_tx, ended) = watch::channel(false);
        let (stop_clients, clients_rx) = watch::channel(false);
        let (stop_peers, peers_rx) = watch::channel(false);
        let thread_shared = shared.clone();
        let serve = async move {
            let shared = thread_shared;
            let result = async {
                let client = take_over(listeners.client)
                    .await
                    .map_err(|e| e.to_string())?;
                let peer = take_over(listeners.peer).await.map_err(|e| e.to_string())?;
                let metrics = match listeners.metrics {
                    Some(l) => Some(take_over(l).await.map_err(|e| e.to_string())?),
                    None => None,
                };
                let tick = Duration::from_millis(shared.config.tick_interval_ms);
                tokio::spawn(run_ticker(shared.inputs.clone(), tick, peers_rx.clone()));
                tokio::spawn(run_acceptor(
                    peer,
                    keys.clone(),
                    tls.clone(),
                    shared.clone(),
                    shared.inputs.clone(),
                    peers_rx.clone(),
                ));
                for link in shared.links.values() {
                    tokio::spawn(run_dialer(
                        link.clone(),
                        keys.clone(),
                        tls.clone(),
                        shared.clone(),
                        peers_rx.clone(),
                    ));
                }
                tokio::spawn(run_client_listener(
                    client,
                    tls.clients.clone(),
                    shared.clone(),
                    clients_rx,
                ));
                if let Some(listener) = metrics {
                    tokio::spawn(run_metrics(listener, shared.clone(), peers_rx));
                }
                run_node(node, receiver, &shared)
                    .await
                    .map_err(|e| e.to_string())
            }
            .await;
            if result.is_err() {
                // The error itself is reported once, by whoever joins
                // this thread (`finish`).
                warn!(node = %shared.config.id, "node thread ended on a storage failure");
            }
            let _ = ended_tx.send(true);
            result
        };
        let thread = spawn_node(shared.config.id, serve)?;
        info!(
            node = %shared.config.id,
            generation,
            clients = %client_addr,
            peers = %peer_addr,
            metrics = %metrics_addr.map_or_else(|| "off".to_owned(), |a| a.to_string()),
            data_dir = %shared.config.data_dir.display(),
            tls_clients = shared.config.tls.clients,
            tls_peers = shared.config.tls.peers,
            "node started"
        );
        Ok(Self {
            shared,
            stop_clients,
            stop_peers,
            thread: Some(thread),
            ended,
            metrics_addr,
        })
    }

    /// State shared by the node's tasks.
    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// The bound client address.
    pub fn client_addr(&self) -> SocketAddr {
        self.shared.client_addr
    }

    /// The bound metrics address.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_addr
    }

    /// Resolves when the node thread has ended (after a stop, or because
    /// storage failed).
    pub async fn ended(&self) {
        let mut ended = self.ended.clone();
        let _ = ended.wait_for(|&e| e).await;
    }

    /// Stage one of a stop: no new clients, no new commands; commands
    /// already received are still served.
    pub fn stop_accepting(&self) {
        let _ = self.stop_clients.send(true);
    }

    /// Waits until every client connection has closed, at most the request
    /// timeout plus a grace period.
    pub async fn drain_clients(&self) {
        let deadline = Duration::from_millis(self.shared.config.request_timeout_ms) + STOP_GRACE;
        let waited = tokio::time::timeout(deadline, async {
            while self.shared.connections.load(Ordering::Relaxed) > 0 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await;
        if waited.is_err() {
            warn!(
                node = %self.shared.config.id,
                open = self.shared.connections.load(Ordering::Relaxed),
                "connections still open at the end of the grace period"
            );
        }
    }

    /// Stage two: stops peers and the ticker, flushes the node and joins its
    /// thread.
    ///
    /// # Errors
    /// The node died of a storage failure.
    pub async fn finish(mut self) -> anyhow::Result<()> {
        // Peers hear that this node stops (and hold it down at once)
        // before the links close: give the announcement a moment to leave.
        if self
            .shared
            .inputs
            .send(DriverInput::AnnounceShutdown)
            .await
            .is_ok()
        {
            let _ = tokio::time::timeout(SHUTDOWN_ANNOUNCE_WAIT, async {
                tokio::time::sleep(Duration::from_millis(5)).await;
                while self.shared.links.values().any(|l| l.queued_bytes() > 0) {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            })
            .await;
        }
        let _ = self.stop_peers.send(true);
        let _ = self.shared.inputs.send(DriverInput::Stop).await;
        let thread = self.thread.take().expect("finish runs once");
        match join_node(thread).await? {
            Ok(Ok(())) => {
                info!(node = %self.shared.config.id, "node stopped cleanly");
                Ok(())
            }
            Ok(Err(e)) => Err(anyhow::anyhow!(
                "node {} failed: {e}",
                self.shared.config.id
            )),
            Err(_) => Err(anyhow::anyhow!(
                "node {} thread panicked",
                self.shared.config.id
            )),
        }
    }

    /// A whole stop: [`Self::stop_accepting`], [`Self::drain_clients`],
    /// [`Self::finish`].
    ///
    /// # Errors
    /// See [`Self::finish`].
    pub async fn stop(self) -> anyhow::Result<()> {
        self.stop_accepting();
        self.drain_clients().await;
        self.finish().await
    }
}

/// What runs a node: a thread with a runtime of its own, or under madsim a
/// task of the simulated node that starts it (madsim has no threads).
#[cfg(not(madsim))]
type NodeThread = std::thread::JoinHandle<Result<(), String>>;
#[cfg(madsim)]
type NodeThread = tokio::task::JoinHandle<Result<(), String>>;

/// Runs `serve` on a thread and runtime of the node's own.
#[cfg(not(madsim))]
fn spawn_node(
    id: enigma_cluster::NodeId,
    serve: impl std::future::Future<Output = Result<(), String>> + Send + 'static,
) -> anyhow::Result<NodeThread> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot build the node's runtime")?;
    std::thread::Builder::new()
        .name(format!("enigma-{id}"))
        .spawn(move || runtime.block_on(serve))
        .context("cannot start the node thread")
}

/// Runs `serve` as a task of the current simulated node.
#[cfg(madsim)]
#[allow(clippy::unnecessary_wraps)] // the same signature as a real build's
fn spawn_node(
    _id: enigma_cluster::NodeId,
    serve: impl std::future::Future<Output = Result<(), String>> + Send + 'static,
) -> anyhow::Result<NodeThread> {
    Ok(tokio::spawn(serve))
}

/// Waits for the node thread; the outer `Err` of the result is a panic.
#[cfg(not(madsim))]
async fn join_node(thread: NodeThread) -> anyhow::Result<std::thread::Result<Result<(), String>>> {
    tokio::task::spawn_blocking(move || thread.join())
        .await
        .context("joining the node thread")
}

/// Waits for the node's task; the outer `Err` of the result is a panic.
#[cfg(madsim)]
async fn join_node(thread: NodeThread) -> anyhow::Result<Result<Result<(), String>, ()>> {
    Ok(thread.await.map_err(|_| ()))
}

/// The node's options from its configuration.
fn node_options(config: &NodeConfig) -> NodeOptions {
    let ms = |v: u64| v.saturating_mul(1_000_000);
    let healing = &config.healing;
    let defaults = NodeOptions::default();
    NodeOptions {
        request_timeout_nanos: ms(config.request_timeout_ms),
        engine: EngineOptions {
            sync_policy: match config.sync {
                SyncMode::Always => SyncPolicy::Always,
                SyncMode::Interval => SyncPolicy::Interval {
                    interval_nanos: ms(healing.sync_interval_ms),
                },
                SyncMode::Never => SyncPolicy::Never,
            },
            key_bytes_max: config.limits.key_bytes_max,
            value_bytes_max: config.limits.value_bytes_max,
            ..EngineOptions::default()
        },
        // Gossip targets differ from process to process; nothing depends on
        // replaying them.
        seed: crate::entropy::u64().unwrap_or(u64::from(config.id.0)),
        gossip_interval_nanos: ms(healing.gossip_interval_ms),
        phi_convict_threshold: healing.phi_convict_threshold,
        hints: HintOptions {
            enabled: healing.hinted_handoff,
            window_nanos: ms(healing.hint_window_ms),
            bytes_max_per_node: healing.hints_bytes_max_per_node,
            ..defaults.hints.clone()
        },
        anti_entropy: AntiEntropyOptions {
            continuous: healing.anti_entropy,
            scan_bytes_per_sec: healing.anti_entropy_scan_bytes_per_sec,
            interval_nanos: ms(healing.anti_entropy_interval_ms),
            ..defaults.anti_entropy.clone()
        },
        gc_grace_nanos: ms(healing.gc_grace_ms),
        clock_offset_max_nanos: ms(healing.clock_offset_max_ms),
        commit_wait: healing.commit_wait,
        clock_uncertainty_nanos: ms(healing.clock_uncertainty_ms),
        ..defaults
    }
}

async fn run_ticker(
    inputs: mpsc::Sender<DriverInput>,
    every: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let mut interval = tokio::time::interval(every);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        crate::select! {
            _ = interval.tick() => {
                // A full queue already wakes the node; a skipped tick is
                // made up by the next.
                if let Err(mpsc::error::TrySendError::Closed(_)) = inputs.try_send(DriverInput::Tick) {
                    return;
                }
            }
            _ = stop.changed() => return,
        }
    }
}

/// Says in the log what recovery found: how much of the log was replayed,
/// and any torn tail cut off (file, offset, bytes).
fn log_recovery(node: enigma_cluster::NodeId, report: &enigma_engine::RecoveryReport) {
    info!(
        %node,
        segments = report.segments_replayed,
        records = report.records_replayed,
        entries = report.entries_replayed,
        "write-ahead log replayed"
    );
    if let Some(torn) = &report.torn_tail {
        warn!(
            %node,
            file = %torn.file,
            offset = torn.offset,
            bytes_dropped = torn.bytes_dropped,
            reason = %torn.reason,
            "cut a torn tail off the write-ahead log (a write a crash interrupted, never acknowledged)"
        );
    }
}

/// Serves `GET /metrics` in the Prometheus text format.
async fn run_metrics(listener: TcpListener, shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    loop {
        crate::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    tokio::spawn(serve_metrics(stream, shared.clone()));
                }
                Err(e) => {
                    warn!(error = %e, "metrics accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            _ = stop.changed() => return,
        }
    }
}

async fn serve_metrics(mut stream: TcpStream, shared: Arc<Shared>) {
    let mut head = Vec::with_capacity(1024);
    let read = tokio::time::timeout(Duration::from_secs(5), async {
        let mut chunk = [0u8; 1024];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < HTTP_HEAD_BYTES_MAX {
            let n = stream.read(&mut chunk).await?;
            if n == 0 {
                break;
            }
            head.extend_from_slice(&chunk[..n]);
        }
        Ok::<(), std::io::Error>(())
    })
    .await;
    if !matches!(read, Ok(Ok(()))) {
        return;
    }
    let line = head.split(|&b| b == b'\n').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut words = line.split_whitespace();
    let (status, body) = match (words.next(), words.next()) {
        (Some("GET"), Some("/metrics")) => ("200 OK", render_metrics(&shared)),
        (Some("GET"), Some(_)) => ("404 Not Found", "not found: try /metrics\n".to_owned()),
        _ => ("405 Method Not Allowed", "only GET /metrics\n".to_owned()),
    };
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(response.as_bytes()).await;
    let _ = stream.shutdown().await;
}

/// Every metric of the node, in the Prometheus text format.
pub fn render_metrics(shared: &Shared) -> String {
    use std::fmt::Write as _;
    let snapshot = shared.snapshot();
    let mut extra = String::new();
    let gauges: [(&str, &str, u64); 7] = [
        (
            "enigma_client_connections",
            "Open client connections.",
            shared.connections.load(Ordering::Relaxed) as u64,
        ),
        (
            "enigma_operations_in_flight",
            "Client operations this node coordinates that await replicas.",
            snapshot.pending_operations as u64,
        ),
        (
            "enigma_memtable_bytes",
            "Bytes in the active memtable.",
            snapshot.memtable_bytes as u64,
        ),
        (
            "enigma_frozen_memtables",
            "Frozen memtables waiting to be written as tables (the flush backlog).",
            snapshot.frozen_memtables as u64,
        ),
        ("enigma_tables", "SSTables on disk.", snapshot.tables as u64),
        (
            "enigma_compaction_backlog_bytes",
            "Bytes of the tables the next compaction would merge (the compaction backlog).",
            snapshot.compaction_backlog_bytes,
        ),
        (
            "enigma_generation",
            "Boot generation of this node.",
            snapshot.generation,
        ),
    ];
    for (name, help, value) in gauges {
        let _ = writeln!(
            extra,
            "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}"
        );
    }
    let stats = &snapshot.stats;
    let counters: [(&str, &str, u64); 8] = [
        (
            "enigma_memtables_flushed_total",
            "Memtables the engine's background work wrote as tables.",
            stats.tables_flushed,
        ),
        (
            "enigma_compactions_total",
            "Compactions the engine's background work ran.",
            stats.compactions,
        ),
        (
            "enigma_background_errors_total",
            "Background jobs (memtable flushes, compactions) that failed.",
            stats.background_errors,
        ),
        (
            "enigma_operations_ok_total",
            "Client operations this node coordinated that succeeded.",
            stats.client_ok,
        ),
        (
            "enigma_operations_failed_total",
            "Client operations this node coordinated that failed.",
            stats.client_errors,
        ),
        (
            "enigma_read_repairs_total",
            "Repair writes sent or applied by blocking read repair.",
            stats.read_repairs,
        ),
        (
            "enigma_storage_errors_total",
            "Storage errors met while serving.",
            stats.storage_errors,
        ),
        (
            "enigma_peer_messages_ignored_total",
            "Peer messages the node ignored (strangers, stale generations).",
            stats.messages_ignored,
        ),
    ];
    for (name, help, value) in counters {
        let _ = writeln!(
            extra,
            "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}"
        );
    }
    let disk = crate::process::DiskUsage::of(&shared.config.data_dir);
    let cache = snapshot.block_cache;
    let more_gauges: [(&str, &str, Option<u64>); 6] = [
        (
            "enigma_wal_disk_bytes",
            "Bytes of write-ahead log segments in the data directory.",
            Some(disk.wal_bytes),
        ),
        (
            "enigma_data_disk_bytes",
            "Bytes of every other file in the data directory (tables, manifest).",
            Some(disk.data_bytes),
        ),
        (
            "enigma_block_cache_bytes",
            "Bytes of decoded blocks held by the block cache.",
            Some(cache.used_bytes),
        ),
        (
            "enigma_client_buffers_bytes",
            "Bytes of all client connections' buffers and expected replies (bounded by client_buffers_bytes_max).",
            Some(shared.client_bytes.load(Ordering::Relaxed) as u64),
        ),
        (
            "enigma_keys_estimate",
            "Live keys this node stores, from the last complete paced count.",
            snapshot.keys_estimate,
        ),
        (
            "enigma_largest_recent_value_bytes",
            "The largest value seen lately; reads in flight count at this size.",
            Some(shared.values.largest() as u64),
        ),
    ];
    for (name, help, value) in more_gauges {
        if let Some(value) = value {
            let _ = writeln!(
                extra,
                "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}"
            );
        }
    }
    for (name, help, value) in [
        (
            "enigma_block_cache_hits_total",
            "Block reads served from the block cache.",
            cache.hits,
        ),
        (
            "enigma_block_cache_misses_total",
            "Block reads that went to the disk.",
            cache.misses,
        ),
    ] {
        let _ = writeln!(
            extra,
            "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}"
        );
    }
    // The standard process metrics, as Prometheus client libraries name them.
    let process = crate::process::ProcessStats::read();
    let process_gauges: [(&str, &str, &str, Option<f64>); 4] = [
        (
            "process_resident_memory_bytes",
            "Resident memory size in bytes.",
            "gauge",
            process.rss_bytes.map(|v| v as f64),
        ),
        (
            "process_open_fds",
            "Number of open file descriptors.",
            "gauge",
            process.open_fds.map(|v| v as f64),
        ),
        (
            "process_max_fds",
            "Maximum number of open file descriptors.",
            "gauge",
            process.max_fds.map(|v| v as f64),
        ),
        (
            "process_cpu_seconds_total",
            "Total user and system CPU time spent in seconds.",
            "counter",
            process.cpu_seconds,
        ),
    ];
    for (name, help, kind, value) in process_gauges {
        if let Some(value) = value {
            let _ = writeln!(
                extra,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
            );
        }
    }
    extra.push_str("# HELP enigma_peer_up Whether this node has a live, authenticated link to the peer.\n# TYPE enigma_peer_up gauge\n");
    for link in shared.links.values() {
        let _ = writeln!(
            extra,
            "enigma_peer_up{{peer=\"{}\"}} {}",
            link.id.0,
            u8::from(link.is_up())
        );
    }
    extra.push_str("# HELP enigma_peer_queue_bytes Bytes waiting in the peer's send queue.\n# TYPE enigma_peer_queue_bytes gauge\n");
    for link in shared.links.values() {
        let _ = writeln!(
            extra,
            "enigma_peer_queue_bytes{{peer=\"{}\"}} {}",
            link.id.0,
            link.queued_bytes()
        );
    }
    shared.metrics.render(&extra)
}
