//! A running node: its listeners, tasks and node thread, and how it stops.
//!
//! [`Listeners::bind`] opens the sockets (so a caller can learn ephemeral
//! ports before configuring peers), [`RunningNode::start`] recovers the node
//! from its data directory and starts everything, and
//! [`RunningNode::stop`] shuts down in order: stop accepting clients, let
//! every connection finish the commands it already sent, stop the peers and
//! the ticker, flush the node one last time, join its thread.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use enigma_cluster::{Node, NodeOptions};
use enigma_engine::{EngineOptions, FsDisk, SyncPolicy};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tracing::{error, info, warn};

use crate::config::{NodeConfig, SyncMode};
use crate::driver::{
    run_node, serve_reads_now, ClientInput, DriverInput, Mailbox, NodeSnapshot, ReadsNow,
    ReplyBatch, Shared,
};
use crate::metrics::inc;
use crate::peer::{cluster_digest, run_acceptor, run_dialer, HandshakeKeys, PeerLink};
use crate::resp::parse_request_ranges;
use crate::session::Session;

/// Inputs that may wait for the node thread before senders block.
pub const INPUT_QUEUE_MAX: usize = 8192;
/// Extra time, beyond the request timeout, that a stop waits for in-flight
/// commands.
const STOP_GRACE: Duration = Duration::from_secs(1);
/// Largest HTTP request head the metrics endpoint reads.
const HTTP_HEAD_BYTES_MAX: usize = 8 << 10;

/// Most connections waiting to be accepted on a listener.
const LISTEN_BACKLOG: i32 = 1024;

/// A node's bound sockets, not yet tied to a runtime: each node runs on a
/// runtime of its own, which takes them over in [`RunningNode::start`].
#[derive(Debug)]
pub struct Listeners {
    client: std::net::TcpListener,
    peer: std::net::TcpListener,
    metrics: Option<std::net::TcpListener>,
}

/// Binds `addr` with `SO_REUSEADDR`, so that a restarted node gets its port
/// back while connections of its previous life linger in TIME_WAIT.
fn listen(addr: SocketAddr, what: &str) -> anyhow::Result<std::net::TcpListener> {
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
        self.client
            .local_addr()
            .expect("a bound listener has an address")
    }

    /// The bound peer address.
    pub fn peer_addr(&self) -> SocketAddr {
        self.peer
            .local_addr()
            .expect("a bound listener has an address")
    }

    /// The bound metrics address, if any.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics
            .as_ref()
            .map(|l| l.local_addr().expect("a bound listener has an address"))
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
    /// The node thread; `Err` is a dead node (failed flush).
    thread: Option<std::thread::JoinHandle<Result<(), String>>>,
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
        let disk = FsDisk::open(&config.data_dir)
            .with_context(|| format!("data directory {}", config.data_dir.display()))?;
        let options = NodeOptions {
            request_timeout_nanos: config.request_timeout_ms.saturating_mul(1_000_000),
            engine: EngineOptions {
                sync_policy: match config.sync {
                    SyncMode::Always => SyncPolicy::Always,
                    SyncMode::Never => SyncPolicy::Never,
                },
                key_bytes_max: config.limits.key_bytes_max,
                value_bytes_max: config.limits.value_bytes_max,
                ..EngineOptions::default()
            },
            ..NodeOptions::default()
        };
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
        let keys = Arc::new(HandshakeKeys {
            me: config.id,
            members: cluster.nodes.clone(),
            digest: cluster_digest(&cluster),
            secret: config.cluster_secret.as_bytes().to_vec(),
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
        let shared = Arc::new(Shared {
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
        });
        let (ended_tx, ended) = watch::channel(false);
        let (stop_clients, clients_rx) = watch::channel(false);
        let (stop_peers, peers_rx) = watch::channel(false);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("cannot build the node's runtime")?;
        let thread_shared = shared.clone();
        let thread = std::thread::Builder::new()
            .name(format!("enigma-{}", shared.config.id))
            .spawn(move || {
                let shared = thread_shared;
                let result = runtime.block_on(async {
                    let listen = |l: std::net::TcpListener| TcpListener::from_std(l);
                    let client = listen(listeners.client).map_err(|e| e.to_string())?;
                    let peer = listen(listeners.peer).map_err(|e| e.to_string())?;
                    let metrics = match listeners.metrics {
                        Some(l) => Some(listen(l).map_err(|e| e.to_string())?),
                        None => None,
                    };
                    let tick = Duration::from_millis(shared.config.tick_interval_ms);
                    tokio::spawn(run_ticker(shared.inputs.clone(), tick, peers_rx.clone()));
                    tokio::spawn(run_acceptor(
                        peer,
                        keys.clone(),
                        shared.clone(),
                        shared.inputs.clone(),
                        peers_rx.clone(),
                    ));
                    for link in shared.links.values() {
                        tokio::spawn(run_dialer(
                            link.clone(),
                            keys.clone(),
                            shared.clone(),
                            peers_rx.clone(),
                        ));
                    }
                    tokio::spawn(run_client_listener(client, shared.clone(), clients_rx));
                    if let Some(listener) = metrics {
                        tokio::spawn(run_metrics(listener, shared.clone(), peers_rx));
                    }
                    run_node(node, receiver, &shared)
                        .await
                        .map_err(|e| e.to_string())
                });
                if let Err(e) = &result {
                    error!(node = %shared.config.id, error = %e, "node stopped: storage failed");
                }
                let _ = ended_tx.send(true);
                result
            })
            .context("cannot start the node thread")?;
        info!(
            node = %shared.config.id,
            generation,
            clients = %client_addr,
            peers = %peer_addr,
            metrics = ?metrics_addr,
            data_dir = %shared.config.data_dir.display(),
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
        let _ = self.stop_peers.send(true);
        let _ = self.shared.inputs.send(DriverInput::Stop).await;
        let thread = self.thread.take().expect("finish runs once");
        let result = tokio::task::spawn_blocking(move || thread.join())
            .await
            .context("joining the node thread")?;
        match result {
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

async fn run_ticker(
    inputs: mpsc::Sender<DriverInput>,
    every: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let mut interval = tokio::time::interval(every);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
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

/// Decrements the connection count when a connection task ends.
struct ConnectionGuard(Arc<Shared>);

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.0.connections.fetch_sub(1, Ordering::Relaxed);
    }
}

async fn run_client_listener(
    listener: TcpListener,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let _ = stream.set_nodelay(true);
                    let open = shared.connections.fetch_add(1, Ordering::Relaxed);
                    let guard = ConnectionGuard(shared.clone());
                    if open >= shared.config.limits.connections_max {
                        inc(&shared.metrics.connections_rejected);
                        tokio::spawn(async move {
                            let (mut reader, mut writer) = stream.into_split();
                            let _ = writer.write_all(b"-ERR max number of clients reached (connections_max)\r\n").await;
                            linger_close(&mut reader, &mut writer).await;
                            drop(guard);
                        });
                        continue;
                    }
                    inc(&shared.metrics.connections_accepted);
                    tokio::spawn(serve_client(stream, shared.clone(), stop.clone(), guard));
                }
                Err(e) => {
                    // Out of file descriptors, usually: wait instead of spinning.
                    warn!(error = %e, "client accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            _ = stop.changed() => return,
        }
    }
}

async fn serve_client(
    stream: TcpStream,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
    _guard: ConnectionGuard,
) {
    let conn = shared.next_conn.fetch_add(1, Ordering::Relaxed);
    let mailbox = Arc::new(Mailbox::default());
    if !shared.clients.push([ClientInput::Register {
        conn,
        mailbox: mailbox.clone(),
    }]) {
        return;
    }
    let limits = shared.config.limits.clone();
    let resp_limits = limits.resp();
    let (mut reader, mut writer) = stream.into_split();
    let mut session = Session::new(shared.clone(), conn);
    let mut buf: Vec<u8> = Vec::with_capacity(16 << 10);
    let mut out: Vec<u8> = Vec::with_capacity(16 << 10);
    let mut inbox: ReplyBatch = Vec::new();
    // Where the arguments of the request being parsed are in `buf`.
    let mut args = Vec::new();
    // Still taking new commands: false after a stop or a protocol error.
    let mut accepting = !*stop.borrow();
    // Resolves once, when the node starts to stop (one future for the whole
    // connection, not one per wait).
    let mut stopping = std::pin::pin!(async move {
        let _ = stop.changed().await;
    });
    // The client closed its side: what is buffered is all there will be.
    let mut eof = false;
    // A protocol error or limit ends the connection with unread input.
    let mut refused = false;
    loop {
        let mut consumed = 0;
        // Complete requests left in the buffer because the pipeline is full.
        let mut held_back = false;
        if !buf.is_empty() {
            session.arrival();
        }
        while accepting && !session.quitting() {
            if session.outstanding() >= limits.pipeline_depth_max {
                held_back = consumed < buf.len();
                break;
            }
            match parse_request_ranges(&buf[consumed..], &resp_limits, &mut args) {
                Ok(Some(used)) => {
                    if !args.is_empty() {
                        session.on_request_in(&buf[consumed..], &args);
                    }
                    consumed += used;
                }
                Ok(None) => {
                    let pending = buf.len() - consumed;
                    if pending > limits.query_buffer_bytes_max {
                        inc(&shared.metrics.protocol_errors);
                        session.push_fatal(format!(
                            "ERR Protocol error: request of more than query_buffer_bytes_max ({}) bytes",
                            limits.query_buffer_bytes_max
                        ));
                        accepting = false;
                        refused = true;
                    }
                    break;
                }
                Err(e) => {
                    inc(&shared.metrics.protocol_errors);
                    session.push_fatal(format!("ERR {e}"));
                    accepting = false;
                    refused = true;
                }
            }
        }
        if accepting {
            buf.drain(..consumed);
        } else {
            buf = Vec::new();
        }
        if session.has_outgoing() {
            // Reads with nothing of this connection's still in flight are
            // served right here when the node has nothing to sync.
            let served = if session.only_fresh_reads_outgoing() {
                serve_reads_now(&shared, conn, session.outgoing_mut(), &mut inbox)
            } else {
                ReadsNow::Queue
            };
            match served {
                ReadsNow::Served => session.on_replies(inbox.drain(..)),
                ReadsNow::Queue => {
                    if !shared.clients.push(
                        session
                            .drain_outgoing()
                            .map(|(request, body)| ClientInput::Request { request, body }),
                    ) {
                        break;
                    }
                }
                ReadsNow::NodeGone => break,
            }
        }
        session.write_ready(&mut out);
        if !out.is_empty() {
            if writer.write_all(&out).await.is_err() {
                break;
            }
            out.clear();
        }
        if held_back && session.outstanding() < limits.pipeline_depth_max {
            // Replies drained: parse the requests already buffered.
            continue;
        }
        let input_done = !accepting || session.quitting() || (eof && !held_back);
        if input_done && session.outstanding() == 0 {
            break;
        }
        let can_read = !input_done && !eof && session.outstanding() < limits.pipeline_depth_max;
        if !input_done && session.outstanding() >= limits.pipeline_depth_max {
            // Back-pressure: the client has pipeline_depth_max commands
            // waiting; its next ones stay unread until replies drain.
            inc(&shared.metrics.pipeline_stalls);
        }
        if can_read && buf.capacity() - buf.len() < 4 << 10 {
            buf.reserve(16 << 10);
        }
        tokio::select! {
            biased;
            () = mailbox.ready() => {
                mailbox.take(&mut inbox);
                session.on_replies(inbox.drain(..));
                // The node thread is gone: nothing more will be answered.
                if mailbox.is_closed() {
                    break;
                }
            },
            read = reader.read_buf(&mut buf), if can_read => match read {
                // End of input: answer what was asked, then close.
                Ok(0) => eof = true,
                Ok(_) => {}
                Err(_) => break,
            },
            () = &mut stopping, if accepting => accepting = false,
        }
    }
    if refused && !eof {
        linger_close(&mut reader, &mut writer).await;
    } else {
        let _ = writer.shutdown().await;
    }
    shared.clients.push([ClientInput::Deregister { conn }]);
}

/// Most bytes read and discarded while closing a connection.
const LINGER_BYTES_MAX: usize = 1 << 20;
/// Longest wait for the client to close its side.
const LINGER_TIME: Duration = Duration::from_millis(500);

/// Closes our side, then reads and discards what the client still sends
/// for a moment. Closing a socket with unread input makes the kernel send
/// a reset, which can destroy the error reply we just wrote before the
/// client reads it.
async fn linger_close(
    reader: &mut tokio::net::tcp::OwnedReadHalf,
    writer: &mut tokio::net::tcp::OwnedWriteHalf,
) {
    let _ = writer.shutdown().await;
    let _ = tokio::time::timeout(LINGER_TIME, async {
        let mut scratch = [0u8; 4096];
        let mut total = 0;
        while total < LINGER_BYTES_MAX {
            match reader.read(&mut scratch).await {
                Ok(0) | Err(_) => break,
                Ok(n) => total += n,
            }
        }
    })
    .await;
}

/// Serves `GET /metrics` in the Prometheus text format.
async fn run_metrics(listener: TcpListener, shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    loop {
        tokio::select! {
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
    let gauges: [(&str, &str, u64); 6] = [
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
            "Frozen memtables waiting to be written as tables.",
            snapshot.frozen_memtables as u64,
        ),
        ("enigma_tables", "SSTables on disk.", snapshot.tables as u64),
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
