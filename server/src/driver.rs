//! The node task: the one place a `Node` lives in production.
//!
//! Each node has an OS thread of its own running a single-threaded tokio
//! runtime; on it run the node task, the node's client connections, its peer
//! links and its ticker. Client connections append their requests to one
//! shared [`ClientQueue`]; peer links and the ticker send [`DriverInput`]s
//! over a bounded channel. The node task waits for either, yields so that
//! every other task that is ready runs and adds its inputs (and yields
//! again while that brings new ones), drains everything waiting (up to
//! `batch_inputs_max`), steps the node with each,
//! and calls [`Node::flush`] **once** for the whole batch: one WAL fsync
//! covers every write in it (group commit). Only then are the released
//! outputs routed: replies into the [`Mailbox`] of the connection that
//! asked (one wake-up per connection per batch), messages to the peer's send
//! queue.
//!
//! Reads need no group commit when the node holds no unsynced write: a
//! connection whose new requests are all reads (and that has nothing else
//! in flight) steps the node itself, calls `flush` (which syncs nothing)
//! and takes its replies at once, with no hand-over to the node task. The
//! node therefore lives in [`Shared::core`], locked by whichever task runs;
//! they all run on the node's thread, so the lock is never contended. This
//! is the same as a node-task batch made of those reads alone.
//!
//! `flush` blocks the thread in `fsync`, on purpose: as in Redis with
//! `appendfsync always`, nothing else of this node runs meanwhile, and what
//! arrives during the fsync forms the next batch. Keeping a node's
//! connections on its own thread makes every hand-over between them and the
//! node a local task wake-up rather than a cross-thread one.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use enigma_cluster::node::NodeStats;
use enigma_cluster::{
    AntiEntropyStats, ClientRequest, ClientResponse, ClockJudgment, Envelope, HintStats, Input,
    MemberView, Node, NodeError, NodeId, Now, Output, RequestId, Ring,
};
use enigma_engine::{BlockCacheStats, FsDisk, Timestamp};
use tokio::sync::{mpsc, Notify};
use tracing::{debug, error, info, warn};

use crate::config::NodeConfig;
use crate::metrics::Metrics;
use crate::peer::PeerLink;

/// One reply for a connection: the request, the answer, and the timestamp
/// of the version behind it (the connection's session floors follow it).
pub type NodeReply = (RequestId, ClientResponse, Option<Timestamp>);

/// Replies for one connection, as the node thread hands them over.
pub type ReplyBatch = Vec<NodeReply>;

/// Locks `mutex`, also after a panic elsewhere poisoned it (the data it
/// guards are plain queues, valid at every step).
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Where the node thread puts one connection's replies.
///
/// The node thread appends and wakes the connection when the mailbox goes
/// from empty to not empty; the connection swaps the whole content out when
/// woken. So there is one lock per reply, at most one wake-up per connection
/// per group commit, and no allocation once the two buffers have grown.
#[derive(Debug, Default)]
pub struct Mailbox {
    replies: Mutex<ReplyBatch>,
    notify: Notify,
    closed: AtomicBool,
}

impl Mailbox {
    /// Waits until replies may be waiting (or the node thread ended).
    pub async fn ready(&self) {
        self.notify.notified().await;
    }

    /// Moves every reply waiting into `into`, which should be empty.
    pub fn take(&self, into: &mut ReplyBatch) {
        std::mem::swap(&mut *lock(&self.replies), into);
    }

    /// Whether the node thread has ended: nothing more will arrive.
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    fn put(&self, request: RequestId, response: ClientResponse, version: Option<Timestamp>) {
        let mut replies = lock(&self.replies);
        let was_empty = replies.is_empty();
        replies.push((request, response, version));
        drop(replies);
        if was_empty {
            self.notify.notify_one();
        }
    }

    fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.notify.notify_one();
    }
}

/// What a client connection hands the node thread, in order.
#[derive(Debug)]
pub enum ClientInput {
    /// A connection opened; its replies go to `mailbox`.
    Register { conn: u64, mailbox: Arc<Mailbox> },
    /// A request; its id carries the connection in its high 32 bits (see
    /// [`request_id`]).
    Request {
        request: RequestId,
        body: ClientRequest,
    },
    /// A connection closed; replies still owed to it are dropped.
    Deregister { conn: u64 },
}

/// The queue from a node's client connections to its node task.
///
/// Connections append under a lock and wake the node task only when the
/// queue goes from empty to not empty; the node task swaps the whole queue
/// out. So a group commit costs one wake-up and no allocation, however many
/// connections and requests it gathers. Its length is bounded by the
/// limits: `connections_max` connections with at most `pipeline_depth_max`
/// commands each, every command at most `args_max` requests.
#[derive(Debug, Default)]
pub struct ClientQueue {
    queue: Mutex<Vec<ClientInput>>,
    notify: Notify,
    closed: AtomicBool,
}

impl ClientQueue {
    /// Appends `inputs`; false (and nothing appended) once the node thread
    /// has ended.
    pub fn push(&self, inputs: impl IntoIterator<Item = ClientInput>) -> bool {
        let mut queue = lock(&self.queue);
        if self.closed.load(Ordering::Acquire) {
            return false;
        }
        let was_empty = queue.is_empty();
        queue.extend(inputs);
        let wake = was_empty && !queue.is_empty();
        drop(queue);
        if wake {
            self.notify.notify_one();
        }
        true
    }

    /// Inputs waiting.
    fn len(&self) -> usize {
        lock(&self.queue).len()
    }

    /// Moves up to `max` inputs, oldest first, into `into` (empty).
    fn take(&self, into: &mut Vec<ClientInput>, max: usize) {
        let mut queue = lock(&self.queue);
        if queue.len() <= max {
            std::mem::swap(&mut *queue, into);
        } else {
            into.extend(queue.drain(..max));
            drop(queue);
            // The rest forms the next batch.
            self.notify.notify_one();
        }
    }

    /// Marks the node thread as ended and closes the mailbox of every
    /// connection still waiting to register.
    fn close(&self) {
        let mut queue = lock(&self.queue);
        self.closed.store(true, Ordering::Release);
        for input in queue.drain(..) {
            if let ClientInput::Register { mailbox, .. } = input {
                mailbox.close();
            }
        }
    }
}

/// The node and what routes its replies; see the module documentation.
#[derive(Debug)]
pub struct Core {
    node: Node<FsDisk>,
    clock: Clock,
    /// Each open connection's mailbox.
    mailboxes: BTreeMap<u64, Arc<Mailbox>>,
}

/// When the node task ends, however it ends, the node leaves
/// [`Shared::core`] and every connection learns that nothing more will be
/// answered.
struct Closing<'a>(&'a Shared);

impl Drop for Closing<'_> {
    fn drop(&mut self) {
        self.0.clients.close();
        if let Some(core) = lock(&self.0.core).take() {
            for mailbox in core.mailboxes.values() {
                mailbox.close();
            }
        }
    }
}

/// What [`serve_reads_now`] did.
#[derive(Debug, PartialEq, Eq)]
pub enum ReadsNow {
    /// The reads were stepped; the replies released are in the caller's
    /// batch (those still waiting for replicas come through its mailbox).
    Served,
    /// The node holds unsynced writes: queue the reads for the node task.
    Queue,
    /// The node is gone: nothing will be answered.
    NodeGone,
}

/// Serves reads from connection `conn` on the caller's task if the node
/// holds no unsynced write (see the module documentation). `requests` must
/// all be reads, and the connection must have nothing else in flight, so
/// that they cannot overtake its own earlier writes.
pub fn serve_reads_now(
    shared: &Shared,
    conn: u64,
    requests: &mut Vec<(RequestId, ClientRequest)>,
    own: &mut ReplyBatch,
) -> ReadsNow {
    let mut guard = lock(&shared.core);
    let Some(core) = guard.as_mut() else {
        return ReadsNow::NodeGone;
    };
    if core.node.engine().has_unsynced() {
        return ReadsNow::Queue;
    }
    let now = core.clock.now();
    let count = requests.len();
    for (request, body) in requests.drain(..) {
        core.node.step(now, Input::Client { request, body });
    }
    match core.node.flush() {
        Ok(outputs) => {
            shared.metrics.batches.observe(count as f64);
            route(shared, &core.mailboxes, outputs, Some((conn, own)));
            ReadsNow::Served
        }
        Err(_) => {
            // The node is dead; let the node task find out and end.
            drop(guard);
            shared.clients.notify.notify_one();
            ReadsNow::NodeGone
        }
    }
}

/// Routes a flush's outputs: messages to the peers' send queues, replies
/// to their connection's mailbox, or to `own` for connection `own.0`.
fn route(
    shared: &Shared,
    mailboxes: &BTreeMap<u64, Arc<Mailbox>>,
    outputs: Vec<Output>,
    mut own: Option<(u64, &mut ReplyBatch)>,
) {
    // Replies come in runs for one connection: look its mailbox up once
    // per run.
    let mut last: Option<(u64, Option<&Arc<Mailbox>>)> = None;
    for output in outputs {
        match output {
            Output::Send { to, envelope } => match shared.links.get(&to) {
                Some(link) => link.push(envelope, &shared.metrics),
                None => crate::metrics::inc(&shared.metrics.peer_messages_dropped),
            },
            Output::Reply {
                request,
                response,
                version,
            } => {
                let conn = connection_of(request);
                if let Some((own_conn, batch)) = own.as_mut() {
                    if *own_conn == conn {
                        batch.push((request, response, version));
                        continue;
                    }
                }
                let mailbox = match last {
                    Some((c, mailbox)) if c == conn => mailbox,
                    _ => {
                        let mailbox = mailboxes.get(&conn);
                        last = Some((conn, mailbox));
                        mailbox
                    }
                };
                // A closed connection's replies have nowhere to go.
                if let Some(mailbox) = mailbox {
                    mailbox.put(request, response, version);
                }
            }
        }
    }
}

/// What the node thread is told, besides client requests.
#[derive(Debug)]
pub enum DriverInput {
    /// A message from a peer whose handshake proved it is `from`.
    Peer { from: NodeId, envelope: Envelope },
    /// Time passed: let the node check its deadlines.
    Tick,
    /// Tell the peers this node is stopping (gossip), so that they hold it
    /// down at once instead of waiting for their failure detectors.
    AnnounceShutdown,
    /// Flush once more and end the thread.
    Stop,
    /// An answer held by commit wait may leave now (the node loop's own
    /// timer, set from `Node::next_wake_wall_nanos`).
    Wake,
}

/// The request id of sequence number `seq` on connection `conn`.
pub fn request_id(conn: u64, seq: u32) -> RequestId {
    RequestId((conn << 32) | u64::from(seq))
}

fn connection_of(request: RequestId) -> u64 {
    request.0 >> 32
}

/// What the node thread last published about the node.
#[derive(Debug, Clone, Default)]
pub struct NodeSnapshot {
    /// Boot generation.
    pub generation: u64,
    /// The node's counters.
    pub stats: NodeStats,
    /// Client operations in flight at this coordinator.
    pub pending_operations: usize,
    /// Bytes in the active memtable.
    pub memtable_bytes: usize,
    /// SSTables on disk.
    pub tables: usize,
    /// Frozen memtables waiting to be written.
    pub frozen_memtables: usize,
    /// Bytes of the tables the next compaction would merge.
    pub compaction_backlog_bytes: u64,
    /// The block cache: bytes held, hits, misses.
    pub block_cache: BlockCacheStats,
    /// Live keys this node stores, from the last complete paced count
    /// (`None` until the first count ends); see [`KeyCount`].
    pub keys_estimate: Option<u64>,
    /// How the node sees every member: failure detector and gossip.
    pub members: Vec<MemberView>,
    /// Hint counters per target.
    pub hints: Vec<(NodeId, HintStats)>,
    /// Anti-entropy counters.
    pub anti_entropy: AntiEntropyStats,
    /// Wall time (ns) of the least recent completed repair among the
    /// node's ranges; 0 if one has not been repaired since it started.
    pub oldest_repair_wall_nanos: u64,
    /// What the node concludes about its own clock (`None` before the
    /// first snapshot).
    pub clock: Option<ClockJudgment>,
}

/// State every task of one node shares.
#[derive(Debug)]
pub struct Shared {
    /// The configuration the node runs with.
    pub config: NodeConfig,
    /// The address clients actually reach (the configured port may be 0).
    pub client_addr: SocketAddr,
    /// The address peers actually reach.
    pub peer_addr: SocketAddr,
    /// The placement every member computes.
    pub ring: Ring,
    /// One outgoing link per peer.
    pub links: BTreeMap<NodeId, Arc<PeerLink>>,
    /// Counters.
    pub metrics: Metrics,
    /// Inputs to the node thread from peers and the ticker.
    pub inputs: mpsc::Sender<DriverInput>,
    /// Requests to the node thread from client connections.
    pub clients: ClientQueue,
    /// The node, while its task runs (see the module documentation).
    pub core: Mutex<Option<Core>>,
    /// The node thread's latest snapshot.
    pub snapshot: Mutex<NodeSnapshot>,
    /// Per peer, whether the node's failure detector holds it up, as of
    /// the last tick; read by connections before they send anything.
    pub judged_up: BTreeMap<NodeId, AtomicBool>,
    /// Whether the node judged its own clock out of bounds at the last
    /// tick: it then answers writes itself with `CLOCK` (counted), which
    /// says more than the connection's `UNAVAILABLE` would.
    pub clock_refuses_writes: AtomicBool,
    /// When this node started, for `INFO`.
    pub started: Instant,
    /// Open client connections.
    pub connections: AtomicUsize,
    /// Source of connection numbers.
    pub next_conn: AtomicU64,
    /// Bytes of every connection's query and reply buffers, and of the
    /// replies their reads in flight may bring (`client_buffers_bytes_max`).
    pub client_bytes: AtomicUsize,
    /// The largest value seen lately, which reads in flight are counted at.
    pub values: ValueSizes,
    /// Each open connection's idle state, for eviction at
    /// `connections_max`.
    pub conn_slots: Mutex<BTreeMap<u64, Arc<ConnSlot>>>,
    /// Bytes of large client writes handed to the node task and not yet
    /// stepped ([`large_write_bytes`]): about to enter the peers' bulk
    /// lanes, so counted against them when the next large write asks for
    /// room.
    pub bulk_pending: AtomicUsize,
}

/// Bytes of `request` that will travel in a peer's bulk lane: its key and
/// value if it writes a value of [`crate::config::PEER_BULK_MESSAGE_BYTES`]
/// or more, else 0.
pub fn large_write_bytes(request: &ClientRequest) -> usize {
    match &request.op {
        enigma_cluster::ClientOp::Put { key, value }
            if key.len() + value.len() >= crate::config::PEER_BULK_MESSAGE_BYTES =>
        {
            key.len() + value.len()
        }
        _ => 0,
    }
}

/// One open connection, as the listener sees it when it must make room.
#[derive(Debug)]
pub struct ConnSlot {
    /// Milliseconds since the node started at which the connection became
    /// idle (nothing owed, nothing being received); `u64::MAX` while busy.
    pub idle_since_ms: AtomicU64,
    /// Set to make the connection close (it was idle longest when a new one
    /// needed its place).
    evicted: AtomicBool,
    /// The connection's mailbox: waking it wakes the connection, which then
    /// sees `evicted` (no second wake-up source to poll per request).
    mailbox: Arc<Mailbox>,
}

impl ConnSlot {
    /// The slot of the connection whose replies go to `mailbox`, idle since
    /// `now_ms`.
    pub fn new(mailbox: Arc<Mailbox>, now_ms: u64) -> Self {
        Self {
            idle_since_ms: AtomicU64::new(now_ms),
            evicted: AtomicBool::new(false),
            mailbox,
        }
    }

    /// Tells the connection to close.
    pub fn evict(&self) {
        self.idle_since_ms.store(u64::MAX, Ordering::Relaxed);
        self.evicted.store(true, Ordering::Relaxed);
        self.mailbox.notify.notify_one();
    }

    /// Whether the connection was told to close.
    pub fn is_evicted(&self) -> bool {
        self.evicted.load(Ordering::Relaxed)
    }
}

/// How long a value size is remembered by [`ValueSizes`]: between one and
/// two of these.
pub const VALUE_SIZE_WINDOW: Duration = Duration::from_secs(10);

/// The largest value this node has seen written (by a client or a peer)
/// or read lately. A connection counts each of its reads in flight at this
/// size against its reply budget, so a pipeline of large reads is admitted
/// a few at a time while small ones pipeline freely.
///
/// An estimate: a value written before the node started and not read since
/// is unknown until its first read, so the first burst of reads of such a
/// value after a restart is admitted as if it were small.
#[derive(Debug, Default)]
pub struct ValueSizes {
    current: AtomicUsize,
    previous: AtomicUsize,
}

impl ValueSizes {
    /// Notes a value of `bytes`.
    pub fn note(&self, bytes: usize) {
        if bytes > self.current.load(Ordering::Relaxed) {
            self.current.fetch_max(bytes, Ordering::Relaxed);
        }
    }

    /// The largest value of the current and the previous window.
    pub fn largest(&self) -> usize {
        self.current
            .load(Ordering::Relaxed)
            .max(self.previous.load(Ordering::Relaxed))
    }

    /// Starts a new window.
    fn roll(&self) {
        self.previous
            .store(self.current.swap(0, Ordering::Relaxed), Ordering::Relaxed);
    }
}

impl Shared {
    /// Whether this node holds `node` up: itself always, a peer as its
    /// failure detector judged at the last tick (every peer is up until
    /// judged otherwise, as in the node).
    pub fn is_up(&self, node: NodeId) -> bool {
        node == self.config.id
            || self
                .judged_up
                .get(&node)
                .is_some_and(|up| up.load(Ordering::Relaxed))
    }

    /// A copy of the node thread's latest snapshot.
    pub fn snapshot(&self) -> NodeSnapshot {
        self.snapshot.lock().map(|s| s.clone()).unwrap_or_default()
    }
}

/// Reads this process's clocks into a [`Now`].
#[derive(Debug)]
pub struct Clock {
    origin: Instant,
    /// Added to the wall clock: the test-only `test_clock_offset_ms`.
    wall_offset_nanos: i64,
}

impl Clock {
    // The production driver is where time enters a node (the node reads no
    // clock: docs/ARCHITECTURE.md, "The seams"): these are the only clock
    // reads on the node's behalf.
    #[allow(clippy::disallowed_methods)]
    fn new(wall_offset_ms: i64) -> Self {
        Self {
            origin: Instant::now(),
            wall_offset_nanos: wall_offset_ms.saturating_mul(1_000_000),
        }
    }

    #[allow(clippy::disallowed_methods)]
    fn now(&self) -> Now {
        let wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO);
        Now {
            mono_nanos: u64::try_from(self.origin.elapsed().as_nanos()).unwrap_or(u64::MAX),
            wall_nanos: u64::try_from(
                i128::try_from(wall.as_nanos()).unwrap_or(i128::MAX)
                    + i128::from(self.wall_offset_nanos),
            )
            .unwrap_or(0),
        }
    }
}

/// Runs `node` until [`DriverInput::Stop`] or until every sender is gone.
/// Must run on the node's own single-threaded runtime (see the module
/// documentation): it blocks the thread while it flushes.
///
/// # Errors
/// A failed flush: storage can no longer be trusted, the node is dead and
/// none of its held outputs were sent.
pub async fn run_node(
    node: Node<FsDisk>,
    mut inputs: mpsc::Receiver<DriverInput>,
    shared: &Shared,
) -> Result<(), NodeError> {
    let batch_max = shared.config.batch_inputs_max;
    let clock = Clock::new(shared.config.healing.test_clock_offset_ms);
    let mut keys = KeyCount::default();
    publish(&node, &keys, shared, clock.now());
    let mut watch = StatsWatch::new(node.stats());
    #[allow(clippy::disallowed_methods)] // value-size windows, an estimate only
    let mut values_window_started = Instant::now();
    *lock(&shared.core) = Some(Core {
        node,
        clock,
        mailboxes: BTreeMap::new(),
    });
    let closing = Closing(shared);
    let mut clients: Vec<ClientInput> = Vec::new();
    // When the earliest answer held by commit wait may leave: the loop
    // wakes then rather than at the next tick.
    let mut wake_at: Option<tokio::time::Instant> = None;
    loop {
        let held = async move {
            match wake_at {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        let first = tokio::select! {
            biased;
            () = shared.clients.notify.notified() => None,
            input = inputs.recv() => match input {
                Some(input) => Some(input),
                None => break,
            },
            () = held => {
                wake_at = None;
                Some(DriverInput::Wake)
            }
        };
        // Let every other ready task (connections, peer readers) run and
        // queue its inputs, so that they share this batch's fsync. Each
        // yield polls the sockets once more; keep gathering while that
        // brings new inputs (clients answered by the last batch send their
        // next requests meanwhile), and stop as soon as a pass brings
        // nothing or the batch is full.
        let mut waiting = shared.clients.len() + inputs.len();
        loop {
            tokio::task::yield_now().await;
            let now_waiting = shared.clients.len() + inputs.len();
            if now_waiting == waiting || now_waiting >= batch_max {
                break;
            }
            waiting = now_waiting;
        }
        let mut applied = 0usize;
        let mut tick = false;
        let mut wake = false;
        let mut stop = false;
        let mut guard = lock(&shared.core);
        let Some(Core {
            node,
            clock,
            mailboxes,
        }) = guard.as_mut()
        else {
            break;
        };
        // One clock reading per batch: the batch is applied in one go, and
        // the HLC still orders every write in it.
        let now = clock.now();
        shared.clients.take(&mut clients, batch_max);
        for input in clients.drain(..) {
            applied += 1;
            match input {
                ClientInput::Register { conn, mailbox } => {
                    mailboxes.insert(conn, mailbox);
                }
                ClientInput::Deregister { conn } => {
                    mailboxes.remove(&conn);
                }
                ClientInput::Request { request, body } => {
                    let large = large_write_bytes(&body);
                    node.step(now, Input::Client { request, body });
                    if large > 0 {
                        // Its messages are in the bulk lanes now.
                        let _ = shared.bulk_pending.fetch_update(
                            Ordering::Relaxed,
                            Ordering::Relaxed,
                            |pending| Some(pending.saturating_sub(large)),
                        );
                    }
                }
            }
        }
        let mut next = first;
        while let Some(input) = next.take() {
            applied += 1;
            match input {
                DriverInput::Peer { from, envelope } => {
                    if let enigma_cluster::Message::Write { version, .. } = &envelope.message {
                        shared
                            .values
                            .note(version.value.as_ref().map_or(0, Vec::len));
                    }
                    node.step(now, Input::Message { from, envelope });
                }
                DriverInput::Tick => tick = true,
                DriverInput::Wake => wake = true,
                DriverInput::AnnounceShutdown => node.announce_shutdown(now),
                DriverInput::Stop => stop = true,
            }
            if applied < batch_max && !stop {
                next = inputs.try_recv().ok();
            }
        }
        if applied == 0 {
            // A wake-up for requests an earlier batch already took.
            continue;
        }
        if tick {
            node.step(clock.now(), Input::Tick);
        } else if wake {
            node.release_due(clock.now());
        }
        let will_sync = node.engine().has_unsynced();
        #[allow(clippy::disallowed_methods)] // flush latency, a metric only
        let flush_started = Instant::now();
        let outputs = node.flush()?;
        shared
            .metrics
            .flush_seconds
            .observe(flush_started.elapsed().as_secs_f64());
        if will_sync {
            crate::metrics::inc(&shared.metrics.wal_syncs);
        }
        shared.metrics.batches.observe(applied as f64);
        route(shared, mailboxes, outputs, None);
        wake_at = node.next_wake_wall_nanos().map(|release| {
            let wait = release.saturating_sub(clock.now().wall_nanos);
            tokio::time::Instant::now() + Duration::from_nanos(wait)
        });
        if tick {
            shared_roll_values(shared, &mut values_window_started);
            keys.step(node.engine(), shared.config.id);
        }
        if tick || stop {
            watch.report(node.stats(), shared.config.id);
            publish(node, &keys, shared, now);
        }
        drop(guard);
        if stop {
            break;
        }
    }
    // Nothing is applied without a flush; this one has nothing left to sync
    // unless the loop ended because every sender was dropped.
    let mut guard = lock(&shared.core);
    if let Some(core) = guard.as_mut() {
        core.node.flush()?;
        let now = core.clock.now();
        publish(&core.node, &keys, shared, now);
    }
    drop(guard);
    drop(closing);
    Ok(())
}

fn publish(node: &Node<FsDisk>, keys: &KeyCount, shared: &Shared, now: Now) {
    let engine = node.engine();
    let members = node.members(now);
    for member in &members {
        if let Some(up) = shared.judged_up.get(&member.node) {
            up.store(member.up, Ordering::Relaxed);
        }
    }
    shared
        .clock_refuses_writes
        .store(node.clock_judgment().refuses_writes(), Ordering::Relaxed);
    let snapshot = NodeSnapshot {
        generation: node.generation(),
        stats: node.stats().clone(),
        pending_operations: node.pending_operations(),
        memtable_bytes: engine.memtable_bytes(),
        tables: engine.tables_total(),
        frozen_memtables: engine.frozen_total(),
        compaction_backlog_bytes: engine.compaction_backlog_bytes(),
        members,
        hints: node.hint_stats(),
        anti_entropy: node.anti_entropy_stats().clone(),
        oldest_repair_wall_nanos: node.oldest_repair_wall_nanos(),
        block_cache: engine.block_cache_stats(),
        keys_estimate: keys.total,
        clock: Some(node.clock_judgment()),
    };
    if let Ok(mut slot) = shared.snapshot.lock() {
        *slot = snapshot;
    }
}

/// Logs what storage recovery found when `node` started: every torn tail
/// cut off (with how much) at `warn`, the rest at `info`.
pub fn log_recovery(node: &Node<FsDisk>, id: NodeId) {
    let report = node.engine().recovery_report();
    if let Some(torn) = &report.torn_tail {
        warn!(
            node = %id,
            file = %torn.file,
            offset = torn.offset,
            bytes_dropped = torn.bytes_dropped,
            synced_through = torn.synced_through,
            reason = %torn.reason,
            "recovery cut a torn tail off the write-ahead log (writes never synced)"
        );
    }
    info!(
        node = %id,
        segments = report.segments_replayed,
        records = report.records_replayed,
        entries = report.entries_replayed,
        covered_segments_removed = report.segments_covered_removed,
        segment_opened = %report.segment_opened,
        "storage recovered"
    );
}

#[allow(clippy::disallowed_methods)] // value-size windows, an estimate only
fn shared_roll_values(shared: &Shared, started: &mut Instant) {
    if started.elapsed() >= VALUE_SIZE_WINDOW {
        shared.values.roll();
        *started = Instant::now();
    }
}

/// Live keys counted per tick by [`KeyCount::step`].
pub const KEY_COUNT_KEYS_PER_TICK: usize = 1_000;
/// Shortest pause between two complete counts; a count that took longer
/// is followed by a pause as long as it took, so counting takes at most
/// half the ticks.
pub const KEY_COUNT_PAUSE_MIN: Duration = Duration::from_secs(1);

/// A paced count of the live keys this node stores (`DBSIZE`, `INFO
/// keyspace`): at most [`KEY_COUNT_KEYS_PER_TICK`] keys per tick, resuming
/// after the last key counted, a new count a pause after each complete one
/// (at least [`KEY_COUNT_PAUSE_MIN`], at most as long as the count took).
/// An estimate: writes during a count may be counted or not, and a count is
/// up to a pause plus its own length old.
#[derive(Debug, Default)]
pub struct KeyCount {
    /// The last key counted by the count in progress.
    resume_after: Option<Vec<u8>>,
    /// Live keys counted so far by the count in progress.
    counted: u64,
    /// The result of the last complete count.
    total: Option<u64>,
    /// When the count in progress started.
    started: Option<Instant>,
    /// When the last count ended, and the pause before the next.
    ended: Option<(Instant, Duration)>,
}

impl KeyCount {
    /// Counts one slice, if a count is due.
    #[allow(clippy::disallowed_methods)] // pacing of a statistic only
    fn step(&mut self, engine: &enigma_engine::Engine<FsDisk>, node: NodeId) {
        if self
            .ended
            .is_some_and(|(ended, pause)| ended.elapsed() < pause)
        {
            return;
        }
        let started = *self.started.get_or_insert_with(Instant::now);
        let pause = started.elapsed().max(KEY_COUNT_PAUSE_MIN);
        let start = match &self.resume_after {
            Some(key) => std::ops::Bound::Excluded(key.as_slice()),
            None => std::ops::Bound::Unbounded,
        };
        let mut seen = 0usize;
        let mut live = 0u64;
        let mut last: Option<Vec<u8>> = None;
        let scanned =
            engine.scan_with(start, std::ops::Bound::Unbounded, false, |key, _, value| {
                seen += 1;
                if value.is_some() {
                    live += 1;
                }
                if seen >= KEY_COUNT_KEYS_PER_TICK {
                    last = Some(key.to_vec());
                    return false;
                }
                true
            });
        if let Err(error) = scanned {
            debug!(%node, %error, "the key count met a storage error; starting over later");
            *self = Self {
                total: self.total,
                ended: Some((Instant::now(), pause)),
                ..Self::default()
            };
            return;
        }
        self.counted += live;
        match last {
            Some(key) => self.resume_after = Some(key),
            None => {
                *self = Self {
                    total: Some(self.counted),
                    ended: Some((Instant::now(), pause)),
                    ..Self::default()
                };
            }
        }
    }
}

/// How often a lasting error condition is logged again.
const ERROR_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// Turns the node's counters into log lines: storage errors (error),
/// background failures (warn), flushes and compactions (debug). Errors are
/// logged at most once per [`ERROR_LOG_INTERVAL`] each, with how many there
/// were since the last line, so a lasting failure cannot flood the log.
#[derive(Debug)]
struct StatsWatch {
    seen: NodeStats,
    storage_logged: Option<Instant>,
    background_logged: Option<Instant>,
    clock_logged: Option<Instant>,
    clock_writes_logged: Option<Instant>,
}

impl StatsWatch {
    fn new(stats: &NodeStats) -> Self {
        Self {
            seen: stats.clone(),
            storage_logged: None,
            background_logged: None,
            clock_logged: None,
            clock_writes_logged: None,
        }
    }

    #[allow(clippy::disallowed_methods)] // log pacing only
    fn due(last: &mut Option<Instant>) -> bool {
        let due = last.is_none_or(|at| at.elapsed() >= ERROR_LOG_INTERVAL);
        if due {
            *last = Some(Instant::now());
        }
        due
    }

    fn report(&mut self, stats: &NodeStats, node: NodeId) {
        let flushed = stats.tables_flushed - self.seen.tables_flushed;
        let compactions = stats.compactions - self.seen.compactions;
        if flushed > 0 || compactions > 0 {
            debug!(
                %node,
                memtables_flushed = flushed,
                compactions,
                "background work done"
            );
        }
        self.seen.tables_flushed = stats.tables_flushed;
        self.seen.compactions = stats.compactions;
        if stats.storage_errors > self.seen.storage_errors && Self::due(&mut self.storage_logged) {
            error!(
                %node,
                new = stats.storage_errors - self.seen.storage_errors,
                total = stats.storage_errors,
                last = stats.last_storage_error.as_deref().unwrap_or("unknown"),
                "storage failed while serving reads or writes (the replica told its coordinators)"
            );
            self.seen.storage_errors = stats.storage_errors;
        }
        // Every quarantine is logged: each one means the node refuses reads
        // of its ranges until repaired, and a file kept aside for an
        // operator to look at.
        if stats.tables_quarantined > self.seen.tables_quarantined {
            error!(
                %node,
                new = stats.tables_quarantined - self.seen.tables_quarantined,
                total = stats.tables_quarantined,
                last = stats.last_storage_error.as_deref().unwrap_or("unknown"),
                "stored data damaged: table quarantined (kept aside as *.sst.quarantined); \
                 the node refuses reads of its ranges until anti-entropy has repaired them from its peers"
            );
            self.seen.tables_quarantined = stats.tables_quarantined;
        }
        if stats.damaged_data_drops > self.seen.damaged_data_drops {
            warn!(
                %node,
                total = stats.damaged_data_drops,
                "dropped what the node still held of its damaged ranges; its peers refill them by anti-entropy"
            );
            self.seen.damaged_data_drops = stats.damaged_data_drops;
        }
        // A full disk is logged once per episode: when it starts and when
        // space is back (also for an episode that began and ended between
        // two reports).
        let began = stats.no_space_episodes - self.seen.no_space_episodes;
        if began > 0 {
            error!(
                %node,
                episodes = began,
                failures = stats.no_space_errors,
                "disk full: writes answer NOSPACE, reads go on; writes resume by themselves once there is space"
            );
        }
        if !stats.no_space && (self.seen.no_space || began > 0) {
            info!(%node, "disk space is back: writes resumed");
        }
        self.seen.no_space = stats.no_space;
        self.seen.no_space_episodes = stats.no_space_episodes;
        let refused: u64 = stats.clock_refusals.values().sum();
        let refused_before: u64 = self.seen.clock_refusals.values().sum();
        if refused > refused_before && Self::due(&mut self.clock_logged) {
            warn!(
                %node,
                new = refused - refused_before,
                by_peer = ?stats.clock_refusals,
                "peer messages refused: their clock readings are further ahead of this node's clock than clock_offset_max_ms"
            );
            self.seen.clock_refusals = stats.clock_refusals.clone();
        }
        if stats.writes_refused_clock > self.seen.writes_refused_clock
            && Self::due(&mut self.clock_writes_logged)
        {
            error!(
                %node,
                new = stats.writes_refused_clock - self.seen.writes_refused_clock,
                total = stats.writes_refused_clock,
                "writes refused: this node's clock is further than clock_offset_max_ms from a majority of its peers (see enigma status)"
            );
            self.seen.writes_refused_clock = stats.writes_refused_clock;
        }
        if stats.background_errors > self.seen.background_errors
            && Self::due(&mut self.background_logged)
        {
            warn!(
                %node,
                new = stats.background_errors - self.seen.background_errors,
                total = stats.background_errors,
                error = stats.last_background_error.as_deref().unwrap_or("unknown"),
                "background work (memtable flush or compaction) failed"
            );
            self.seen.background_errors = stats.background_errors;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_carry_their_connection() {
        let id = request_id(7, u32::MAX);
        assert_eq!(connection_of(id), 7);
        assert_ne!(request_id(7, 0), request_id(8, 0));
    }
}
