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
use std::time::{Duration, Instant};

use anyhow::Context as _;
use enigma_cluster::{Node, NodeOptions};
use enigma_engine::{EngineOptions, FsDisk, SyncPolicy};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tracing::{debug, info, warn};

use crate::config::{NodeConfig, SyncMode};
use crate::driver::{
    large_write_bytes, run_node, serve_reads_now, ClientInput, ConnSlot, DriverInput, Mailbox,
    NodeSnapshot, ReadsNow, ReplyBatch, Shared, ValueSizes,
};
use crate::metrics::inc;
use crate::peer::{cluster_digest, run_acceptor, run_dialer, HandshakeKeys, PeerLink};
use crate::resp::parse_request_ranges;
use crate::session::Session;
use crate::tls::TlsContext;

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
        // Everything that can refuse the start without touching the data
        // directory comes first.
        let tls = TlsContext::load(&config.tls).context("TLS settings")?;
        crate::run::private_dir(&config.data_dir)?;
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
            client_bytes: AtomicUsize::new(0),
            values: ValueSizes::default(),
            conn_slots: Mutex::new(BTreeMap::new()),
            bulk_pending: AtomicUsize::new(0),
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
                });
                if result.is_err() {
                    // The error itself is reported once, by whoever joins
                    // this thread (`finish`).
                    warn!(node = %shared.config.id, "node thread ended on a storage failure");
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

/// Room a connection's buffers start with, and keep while idle.
const BUFFER_BYTES_MIN: usize = 16 << 10;
/// A buffer larger than this is given back once it is empty.
const BUFFER_BYTES_KEEP: usize = 64 << 10;
/// Room a read needs in the query buffer before the buffer grows.
const READ_ROOM_MIN: usize = 4 << 10;
/// A client that takes none of its replies for this long is disconnected:
/// the memory they hold is given back.
const REPLY_WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// How often a connection holding a large write looks again whether the
/// peers' bulk lanes have room.
const BULK_HOLD_POLL: Duration = Duration::from_millis(10);

/// Milliseconds since the node started.
fn node_millis(shared: &Shared) -> u64 {
    u64::try_from(shared.started.elapsed().as_millis()).unwrap_or(u64::MAX - 1)
}

#[allow(clippy::disallowed_methods)] // connection deadlines, in the driver
fn instant_now() -> Instant {
    Instant::now()
}

/// Closes the connection idle longest, if it has been idle at least
/// `idle_eviction_ms`, to make room for a new one. Returns whether it did.
fn evict_idlest(shared: &Shared) -> bool {
    let eviction_ms = shared.config.idle_eviction_ms;
    if eviction_ms == 0 {
        return false;
    }
    let now_ms = node_millis(shared);
    let slots = shared
        .conn_slots
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let idlest = slots
        .values()
        .filter(|slot| slot.idle_since_ms.load(Ordering::Relaxed) != u64::MAX)
        .min_by_key(|slot| slot.idle_since_ms.load(Ordering::Relaxed));
    match idlest {
        Some(slot)
            if now_ms.saturating_sub(slot.idle_since_ms.load(Ordering::Relaxed)) >= eviction_ms =>
        {
            slot.evict();
            true
        }
        _ => false,
    }
}

async fn run_client_listener(
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, remote)) => {
                    let _ = stream.set_nodelay(true);
                    let open = shared.connections.fetch_add(1, Ordering::Relaxed);
                    let guard = ConnectionGuard(shared.clone());
                    if open >= shared.config.limits.connections_max {
                        if evict_idlest(&shared) {
                            inc(&shared.metrics.idle_evictions);
                            debug!(%remote, "closed the connection idle longest to admit a new one at connections_max");
                        } else {
                            inc(&shared.metrics.connections_rejected);
                            tokio::spawn(async move {
                                let (mut reader, mut writer) = stream.into_split();
                                let _ = writer.write_all(b"-ERR max number of clients reached (connections_max)\r\n").await;
                                linger_close(&mut reader, &mut writer).await;
                                drop(guard);
                            });
                            continue;
                        }
                    }
                    inc(&shared.metrics.connections_accepted);
                    tokio::spawn(start_client(stream, remote, tls.clone(), shared.clone(), stop.clone(), guard));
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

/// Runs the TLS handshake if clients speak TLS, then serves the connection.
async fn start_client(
    stream: TcpStream,
    remote: SocketAddr,
    tls: Option<tokio_rustls::TlsAcceptor>,
    shared: Arc<Shared>,
    stop: watch::Receiver<bool>,
    guard: ConnectionGuard,
) {
    let Some(acceptor) = tls else {
        let (reader, writer) = stream.into_split();
        return serve_client(reader, writer, remote, shared, stop, guard).await;
    };
    // A handshake is a request: it gets the same time limit.
    let limit = Duration::from_millis(shared.config.request_read_timeout_ms);
    match tokio::time::timeout(limit, acceptor.accept(stream)).await {
        Ok(Ok(stream)) => {
            let (reader, writer) = tokio::io::split(stream);
            serve_client(reader, writer, remote, shared, stop, guard).await;
        }
        Ok(Err(error)) => {
            inc(&shared.metrics.tls_handshake_failures);
            debug!(%remote, %error, "client TLS handshake failed");
        }
        Err(_) => {
            inc(&shared.metrics.tls_handshake_failures);
            debug!(%remote, "client TLS handshake timed out");
        }
    }
}

/// This connection's share of [`Shared::client_bytes`], given back when the
/// connection ends.
struct Charge {
    shared: Arc<Shared>,
    bytes: usize,
}

impl Charge {
    fn set(&mut self, bytes: usize) {
        if bytes > self.bytes {
            self.shared
                .client_bytes
                .fetch_add(bytes - self.bytes, Ordering::Relaxed);
        } else if bytes < self.bytes {
            self.shared
                .client_bytes
                .fetch_sub(self.bytes - bytes, Ordering::Relaxed);
        }
        self.bytes = bytes;
    }
}

impl Drop for Charge {
    fn drop(&mut self) {
        self.set(0);
    }
}

/// Bytes a connection holds or may soon hold for replies: encoded and
/// unwritten, ready and waiting for earlier ones, and its reads in flight
/// counted at the largest value seen lately.
fn reply_bytes_held(session: &Session, out: &[u8], shared: &Shared) -> usize {
    out.len() + session.ready_bytes() + session.reads_in_flight() * shared.values.largest()
}

/// Whether a connection that has replies owed must stop taking commands:
/// its replies reached `reply_buffer_bytes_max`, or all connections' buffers
/// reached `client_buffers_bytes_max`.
fn over_reply_budget(session: &Session, out: &[u8], shared: &Shared) -> bool {
    let limits = &shared.config.limits;
    reply_bytes_held(session, out, shared) >= limits.reply_buffer_bytes_max
        || shared.client_bytes.load(Ordering::Relaxed) > limits.client_buffers_bytes_max
}

/// Whether a peer's bulk lane is congested, counting the large writes
/// handed to the node task and not yet sent: large writes wait.
fn peers_bulk_congested(shared: &Shared) -> bool {
    let pending = shared.bulk_pending.load(Ordering::Relaxed);
    shared
        .links
        .values()
        .any(|link| link.bulk_congested(pending))
}

#[allow(clippy::too_many_lines)]
async fn serve_client<R, W>(
    mut reader: R,
    mut writer: W,
    remote: SocketAddr,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
    _guard: ConnectionGuard,
) where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let conn = shared.next_conn.fetch_add(1, Ordering::Relaxed);
    let mailbox = Arc::new(Mailbox::default());
    if !shared.clients.push([ClientInput::Register {
        conn,
        mailbox: mailbox.clone(),
    }]) {
        return;
    }
    let slot = Arc::new(ConnSlot::new(mailbox.clone(), node_millis(&shared)));
    shared
        .conn_slots
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .insert(conn, slot.clone());
    let limits = shared.config.limits.clone();
    let resp_limits = limits.resp();
    let idle_timeout = (shared.config.idle_timeout_secs > 0)
        .then(|| Duration::from_secs(shared.config.idle_timeout_secs));
    let read_timeout = Duration::from_millis(shared.config.request_read_timeout_ms);
    let mut session = Session::new(shared.clone(), conn);
    let mut buf: Vec<u8> = Vec::with_capacity(BUFFER_BYTES_MIN);
    let mut out: Vec<u8> = Vec::with_capacity(BUFFER_BYTES_MIN);
    let mut charge = Charge {
        shared: shared.clone(),
        bytes: 0,
    };
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
    // When the request being received began to arrive.
    let mut partial_since: Option<Instant> = None;
    // When the client last sent or was sent anything.
    let mut last_active = instant_now();
    // Whether `slot` says idle.
    let mut was_idle = true;
    // One timer for the request-read and idle deadlines: re-armed only when
    // a deadline comes earlier than the one armed; when it fires, the real
    // deadlines are checked and it is armed again if none has passed.
    let timer = tokio::time::sleep(Duration::ZERO);
    tokio::pin!(timer);
    let mut timer_at: Option<Instant> = None;
    // Large writes are held while a peer's bulk lane is congested.
    let mut holding_writes = false;
    let hold = tokio::time::sleep(Duration::ZERO);
    tokio::pin!(hold);
    loop {
        let mut consumed = 0;
        // Complete requests left in the buffer because the pipeline is full
        // or the replies owed are too large.
        let mut held_back = false;
        // The buffer ends in part of a request.
        let mut incomplete = false;
        if !buf.is_empty() {
            session.arrival();
        }
        while accepting && !session.quitting() {
            if holding_writes
                || session.outstanding() >= limits.pipeline_depth_max
                || (session.outstanding() > 0 && over_reply_budget(&session, &out, &shared))
            {
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
                    incomplete = pending > 0;
                    if pending > limits.query_buffer_bytes_max {
                        inc(&shared.metrics.protocol_errors);
                        debug!(%remote, pending, "client request over query_buffer_bytes_max; closing");
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
                    debug!(%remote, error = %e, "client protocol error; closing");
                    session.push_fatal(format!("ERR {e}"));
                    accepting = false;
                    refused = true;
                }
            }
        }
        if held_back && !holding_writes && session.outstanding() < limits.pipeline_depth_max {
            inc(&shared.metrics.reply_stalls);
        }
        if accepting {
            buf.drain(..consumed);
            if buf.is_empty() && buf.capacity() > BUFFER_BYTES_KEEP {
                buf = Vec::with_capacity(BUFFER_BYTES_MIN);
            }
        } else {
            buf = Vec::new();
        }
        if incomplete && accepting {
            partial_since.get_or_insert_with(instant_now);
        } else {
            partial_since = None;
        }
        if session.has_outgoing() {
            if session.outgoing_has_large_writes() && peers_bulk_congested(&shared) {
                if !holding_writes {
                    inc(&shared.metrics.bulk_write_stalls);
                    holding_writes = true;
                }
                hold.as_mut()
                    .reset(tokio::time::Instant::now() + BULK_HOLD_POLL);
            } else {
                holding_writes = false;
                // Reads with nothing of this connection's still in flight
                // are served right here when the node has nothing to sync.
                let served = if session.only_fresh_reads_outgoing() {
                    serve_reads_now(&shared, conn, session.outgoing_mut(), &mut inbox)
                } else {
                    ReadsNow::Queue
                };
                match served {
                    ReadsNow::Served => session.on_replies(inbox.drain(..)),
                    ReadsNow::Queue => {
                        let large: usize = session
                            .outgoing_mut()
                            .iter()
                            .map(|(_, body)| large_write_bytes(body))
                            .sum();
                        shared.bulk_pending.fetch_add(large, Ordering::Relaxed);
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
        } else {
            holding_writes = false;
        }
        session.write_ready(&mut out);
        if !out.is_empty() {
            let write = async {
                writer.write_all(&out).await?;
                writer.flush().await
            };
            match tokio::time::timeout(REPLY_WRITE_TIMEOUT, write).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => break,
                Err(_) => {
                    inc(&shared.metrics.reply_write_timeouts);
                    debug!(%remote, "client read none of its replies for the reply write timeout; closing");
                    break;
                }
            }
            out.clear();
            last_active = instant_now();
            if out.capacity() > BUFFER_BYTES_KEEP {
                out = Vec::with_capacity(BUFFER_BYTES_MIN);
            }
        }
        if held_back
            && !holding_writes
            && session.outstanding() < limits.pipeline_depth_max
            && !(session.outstanding() > 0 && over_reply_budget(&session, &out, &shared))
        {
            // Replies drained: parse the requests already buffered.
            continue;
        }
        let input_done = !accepting || session.quitting() || (eof && !held_back);
        if input_done && session.outstanding() == 0 {
            break;
        }
        let mut can_read = !input_done
            && !eof
            && !held_back
            && !holding_writes
            && session.outstanding() < limits.pipeline_depth_max;
        if !input_done && session.outstanding() >= limits.pipeline_depth_max {
            // Back-pressure: the client has pipeline_depth_max commands
            // waiting; its next ones stay unread until replies drain.
            inc(&shared.metrics.pipeline_stalls);
        }
        if can_read && buf.capacity() - buf.len() < READ_ROOM_MIN {
            // What `reserve` will make of the buffer: about twice its size.
            let growth = buf.capacity().max(BUFFER_BYTES_MIN);
            let spent = shared.client_bytes.load(Ordering::Relaxed) + growth
                > limits.client_buffers_bytes_max;
            if buf.capacity() >= BUFFER_BYTES_KEEP && spent {
                if session.outstanding() > 0 {
                    // Replies owed will free room; read when they are out.
                    can_read = false;
                    inc(&shared.metrics.reply_stalls);
                } else {
                    inc(&shared.metrics.client_buffer_refusals);
                    debug!(%remote, "client request refused: client_buffers_bytes_max reached");
                    session.push_fatal(format!(
                        "ERR client buffers of this node are full (client_buffers_bytes_max, {} bytes); retry later",
                        limits.client_buffers_bytes_max
                    ));
                    accepting = false;
                    refused = true;
                    continue;
                }
            } else {
                buf.reserve(BUFFER_BYTES_MIN);
            }
        }
        charge.set(buf.capacity() + out.capacity() + reply_bytes_held(&session, &out, &shared));
        let idle = session.outstanding() == 0 && buf.is_empty() && !holding_writes;
        if idle != was_idle {
            slot.idle_since_ms.store(
                if idle { node_millis(&shared) } else { u64::MAX },
                Ordering::Relaxed,
            );
            was_idle = idle;
        }
        let deadline = match (partial_since, idle_timeout) {
            (Some(since), _) => Some(since + read_timeout),
            (None, Some(idle_for)) if idle => Some(last_active + idle_for),
            _ => None,
        };
        match deadline {
            Some(at) if timer_at.is_none_or(|armed| at < armed) => {
                timer.as_mut().reset(at.into());
                timer_at = Some(at);
            }
            None => timer_at = None,
            Some(_) => {}
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
                if slot.is_evicted() {
                    debug!(%remote, "closed: idle longest when a new connection needed room");
                    break;
                }
            },
            read = reader.read_buf(&mut buf), if can_read => match read {
                // End of input: answer what was asked, then close.
                Ok(0) => eof = true,
                Ok(_) => last_active = instant_now(),
                Err(_) => break,
            },
            () = &mut stopping, if accepting => accepting = false,
            () = &mut timer, if timer_at.is_some() => {
                timer_at = None;
                let now = instant_now();
                if partial_since.is_some_and(|since| now >= since + read_timeout) {
                    inc(&shared.metrics.request_read_timeouts);
                    debug!(%remote, "client request not complete within request_read_timeout_ms; closing");
                    session.push_fatal(format!(
                        "ERR Protocol error: request not complete within request_read_timeout_ms ({} ms)",
                        shared.config.request_read_timeout_ms
                    ));
                    accepting = false;
                    refused = true;
                } else if idle && idle_timeout.is_some_and(|idle_for| now >= last_active + idle_for) {
                    inc(&shared.metrics.idle_timeouts);
                    debug!(%remote, "client idle longer than the timeout; closing");
                    break;
                }
            }
            () = &mut hold, if holding_writes => {}
        }
    }
    if refused && !eof {
        linger_close(&mut reader, &mut writer).await;
    } else {
        let _ = writer.shutdown().await;
    }
    shared
        .conn_slots
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .remove(&conn);
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
async fn linger_close<R, W>(reader: &mut R, writer: &mut W)
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
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
            "Frozen memtables waiting to be written as tables (the flush backlog).",
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
