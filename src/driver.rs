//! The node task: the one place a `Node` lives in production.
//!
//! Each node has an OS thread of its own running a single-threaded tokio
//! runtime; on it run the node task, the node's client connections, its peer
//! links and its ticker. The other tasks send the node task
//! [`DriverInput`]s over one bounded channel. The node task waits for an
//! input, yields once so that every other task that is ready runs and adds
//! its inputs, drains everything waiting (up to `batch_inputs_max`), steps
//! the node with each, and calls [`Node::flush`] **once** for the whole
//! batch: one WAL fsync covers every write in it (group commit). Only then
//! are the released outputs routed: replies to the connection that asked,
//! messages to the peer's send queue.
//!
//! `flush` blocks the thread in `fsync`, on purpose: as in Redis with
//! `appendfsync always`, nothing else of this node runs meanwhile, and what
//! arrives during the fsync forms the next batch. Keeping a node's
//! connections on its own thread makes every hand-over between them and the
//! node a local task wake-up rather than a cross-thread one.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use enigma_cluster::node::NodeStats;
use enigma_cluster::{
    ClientRequest, ClientResponse, Envelope, Input, Node, NodeError, NodeId, Now, Output,
    RequestId, Ring,
};
use enigma_engine::FsDisk;
use tokio::sync::mpsc;
use tracing::warn;

use crate::config::NodeConfig;
use crate::metrics::Metrics;
use crate::peer::PeerLink;

/// Replies a connection's batch starts with room for (a pipeline of 16
/// fits without growing).
const REPLY_BATCH_CAPACITY: usize = 16;

/// Replies for one connection, as the node thread hands them over.
pub type ReplyBatch = Vec<(RequestId, ClientResponse)>;

/// What the node thread is told.
#[derive(Debug)]
pub enum DriverInput {
    /// A client connection opened; its replies go to `replies`.
    Register {
        conn: u64,
        replies: mpsc::UnboundedSender<ReplyBatch>,
    },
    /// A client connection closed; replies still owed to it are dropped.
    Deregister { conn: u64 },
    /// Requests from one connection. Each id carries the connection in its
    /// high 32 bits (see [`request_id`]).
    Client {
        requests: Vec<(RequestId, ClientRequest)>,
    },
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
    /// Inputs to the node thread.
    pub inputs: mpsc::Sender<DriverInput>,
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
struct Clock {
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
    mut node: Node<FsDisk>,
    mut inputs: mpsc::Receiver<DriverInput>,
    shared: &Shared,
) -> Result<(), NodeError> {
    let clock = Clock::new();
    let batch_max = shared.config.batch_inputs_max;
    let mut conns: BTreeMap<u64, mpsc::UnboundedSender<ReplyBatch>> = BTreeMap::new();
    let mut replies: BTreeMap<u64, ReplyBatch> = BTreeMap::new();
    publish(&node, shared);
    let mut background_errors_seen = node.stats().background_errors;
    loop {
        let Some(first) = inputs.recv().await else {
            break;
        };
        // Let every other ready task (connections, peer readers) run and
        // queue its inputs, so that they share this batch's fsync.
        tokio::task::yield_now().await;
        let mut applied = 0usize;
        let mut tick = false;
        let mut stop = false;
        // One clock reading per batch: the batch is applied in one go, and
        // the HLC still orders every write in it.
        let now = clock.now();
        let mut next = Some(first);
        while let Some(input) = next.take() {
            applied += 1;
            match input {
                DriverInput::Register { conn, replies } => {
                    conns.insert(conn, replies);
                }
                DriverInput::Deregister { conn } => {
                    conns.remove(&conn);
                }
                DriverInput::Client { requests } => {
                    for (request, body) in requests {
                        node.step(now, Input::Client { request, body });
                    }
                }
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
        for output in outputs {
            match output {
                Output::Send { to, envelope } => match shared.links.get(&to) {
                    Some(link) => link.push(envelope, &shared.metrics),
                    None => crate::metrics::inc(&shared.metrics.peer_messages_dropped),
                },
                Output::Reply { request, response } => replies
                    .entry(connection_of(request))
                    .or_insert_with(|| Vec::with_capacity(REPLY_BATCH_CAPACITY))
                    .push((request, response)),
            }
        }
        for (conn, batch) in std::mem::take(&mut replies) {
            if let Some(sender) = conns.get(&conn) {
                // A closed connection's replies have nowhere to go.
                let _ = sender.send(batch);
            }
        }
        if tick || stop {
            publish(&node, shared);
            let stats = node.stats();
            if stats.background_errors > background_errors_seen {
                background_errors_seen = stats.background_errors;
                warn!(
                    node = %shared.config.id,
                    error = stats.last_background_error.as_deref().unwrap_or("unknown"),
                    "background work (memtable flush or compaction) failed"
                );
            }
        }
        if stop {
            break;
        }
    }
    // Nothing is applied without a flush; this one has nothing left to sync
    // unless the loop ended because every sender was dropped.
    node.flush()?;
    publish(&node, shared);
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
