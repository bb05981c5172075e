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
    ClientRequest, ClientResponse, Envelope, Input, Node, NodeError, NodeId, Now, Output,
    RequestId, Ring,
};
use enigma_engine::FsDisk;
use tokio::sync::{mpsc, Notify};
use tracing::{error, info, warn};

use crate::config::NodeConfig;
use crate::metrics::Metrics;
use crate::peer::PeerLink;

/// Replies for one connection, as the node thread hands them over.
pub type ReplyBatch = Vec<(RequestId, ClientResponse)>;

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

    fn put(&self, request: RequestId, response: ClientResponse) {
        let mut replies = lock(&self.replies);
        let was_empty = replies.is_empty();
        replies.push((request, response));
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
            Output::Reply { request, response } => {
                let conn = connection_of(request);
                if let Some((own_conn, batch)) = own.as_mut() {
                    if *own_conn == conn {
                        batch.push((request, response));
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
                    mailbox.put(request, response);
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
    /// Flush once more and end the thread.
    Stop,
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
    /// When this node started, for `INFO`.
    pub started: Instant,
    /// Open client connections.
    pub connections: AtomicUsize,
    /// Source of connection numbers.
    pub next_conn: AtomicU64,
}

impl Shared {
    /// Whether `node` is reachable from here: this node always is, a peer
    /// while its outgoing link has a live, authenticated connection.
    pub fn is_up(&self, node: NodeId) -> bool {
        node == self.config.id || self.links.get(&node).is_some_and(|l| l.is_up())
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
}

impl Clock {
    // The production driver is where time enters a node (DESIGN.md
    // section 3): these are the only clock reads on the node's behalf.
    #[allow(clippy::disallowed_methods)]
    fn new() -> Self {
        Self {
            origin: Instant::now(),
        }
    }

    #[allow(clippy::disallowed_methods)]
    fn now(&self) -> Now {
        let wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO);
        Now {
            mono_nanos: u64::try_from(self.origin.elapsed().as_nanos()).unwrap_or(u64::MAX),
            wall_nanos: u64::try_from(wall.as_nanos()).unwrap_or(u64::MAX),
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
    publish(&node, shared);
    let mut background_errors_seen = node.stats().background_errors;
    let mut storage_errors_seen = node.stats().storage_errors;
    let mut no_space_seen = node.stats().no_space;
    *lock(&shared.core) = Some(Core {
        node,
        clock: Clock::new(),
        mailboxes: BTreeMap::new(),
    });
    let closing = Closing(shared);
    let mut clients: Vec<ClientInput> = Vec::new();
    loop {
        let first = tokio::select! {
            biased;
            () = shared.clients.notify.notified() => None,
            input = inputs.recv() => match input {
                Some(input) => Some(input),
                None => break,
            },
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
                    node.step(now, Input::Client { request, body });
                }
            }
        }
        let mut next = first;
        while let Some(input) = next.take() {
            applied += 1;
            match input {
                DriverInput::Peer { from, envelope } => {
                    node.step(now, Input::Message { from, envelope });
                }
                DriverInput::Tick => tick = true,
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
        if tick || stop {
            publish(node, shared);
            let stats = node.stats();
            if stats.storage_errors > storage_errors_seen {
                error!(
                    node = %shared.config.id,
                    errors = stats.storage_errors - storage_errors_seen,
                    last = stats.last_storage_error.as_deref().unwrap_or("unknown"),
                    "storage failed while serving (the replica told its coordinators)"
                );
                storage_errors_seen = stats.storage_errors;
            }
            if stats.no_space != no_space_seen {
                no_space_seen = stats.no_space;
                if no_space_seen {
                    error!(
                        node = %shared.config.id,
                        failures = stats.no_space_errors,
                        "disk full: writes answer NOSPACE, reads go on; writes resume by \
                         themselves once there is space"
                    );
                } else {
                    info!(node = %shared.config.id, "disk space is back: writes resumed");
                }
            }
            if stats.background_errors > background_errors_seen {
                background_errors_seen = stats.background_errors;
                warn!(
                    node = %shared.config.id,
                    error = stats.last_background_error.as_deref().unwrap_or("unknown"),
                    "background work (memtable flush or compaction) failed"
                );
            }
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
        publish(&core.node, shared);
    }
    drop(guard);
    drop(closing);
    Ok(())
}

fn publish(node: &Node<FsDisk>, shared: &Shared) {
    let engine = node.engine();
    let snapshot = NodeSnapshot {
        generation: node.generation(),
        stats: node.stats().clone(),
        pending_operations: node.pending_operations(),
        memtable_bytes: engine.memtable_bytes(),
        tables: engine.tables_total(),
        frozen_memtables: engine.frozen_total(),
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
