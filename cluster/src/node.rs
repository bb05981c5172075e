//! `Node`: the sans-IO state machine a driver runs.
//!
//! # Contract with the driver
//!
//! 1. Call [`Node::step`] for each input, passing the time read from this
//!    node's clocks. Steps perform storage writes (not yet durable) and queue
//!    outputs; they never block and never fail.
//! 2. Call [`Node::flush`] after one input or a batch of them. It syncs the
//!    write-ahead log once for everything applied since the last flush
//!    (group commit) and only then returns the queued outputs, which the
//!    driver sends. *Outputs must not be sent before `flush` returns them.*
//! 3. If `flush` returns an error the node is dead: storage can no longer be
//!    trusted to be durable. The driver must drop it (crash it) and may
//!    restart it from disk with [`Node::new`].
//! 4. Send a [`Input::Tick`] regularly; deadlines are checked only then, and
//!    each tick runs a bounded share of the engine's background work
//!    (memtable flushes, compactions): at most
//!    [`NodeOptions::background_bytes_per_tick`] bytes of tables, each job
//!    whole. A background job that poisons the engine (a failed sync) makes
//!    the node fatal like any other: `flush` fails from then on.
//! 5. With [`NodeOptions::record_versions`], a driver that checks the node
//!    (the simulator) may, after each successful `flush`, take the versions
//!    of the client replies it released ([`Node::take_reply_versions`]) and
//!    the writes this node acknowledged as durable
//!    ([`Node::take_acknowledged_writes`]).

use std::collections::BTreeMap;

use enigma_engine::{
    BackgroundReport, BuggifyDraws, BuggifySite, Disk, Engine, EngineError, EngineOptions,
    Timestamp, Versioned,
};
use thiserror::Error;

use crate::consistency::ConsistencyLevel;
use crate::coordinator::{data_replica, PendingRead, PendingWrite, ReadProgress, RecentReads};
use crate::generation;
use crate::hlc::HlcClock;
use crate::ids::{NodeId, Now, OpId, RequestId};
use crate::message::{
    ClientError, ClientOp, ClientRequest, ClientResponse, Envelope, Message, ReplicaFailure,
    VersionDigest,
};
use crate::no_space;
use crate::ring::{Ring, RingError};

/// Who is in the cluster and how data is placed. Identical on every node.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// Every member.
    pub nodes: Vec<NodeId>,
    /// Replicas per key.
    pub replication_factor: usize,
    /// Tokens each node owns on the ring.
    pub vnodes_per_node: u32,
}

/// A node's tunables.
#[derive(Debug, Clone)]
pub struct NodeOptions {
    /// How long a coordinator waits for replicas before answering `Timeout`.
    pub request_timeout_nanos: u64,
    /// Most client operations a coordinator tracks at once; more are refused
    /// as `Overloaded` (nothing applied) rather than growing memory.
    pub requests_pending_max: usize,
    /// The storage engine's options.
    pub engine: EngineOptions,
    /// Bytes of tables the engine's background work (flushes, compactions)
    /// may write per tick; a job runs whole, so a tick with work due runs at
    /// least one.
    pub background_bytes_per_tick: u64,
    /// Record, for a checking driver, the version of every client reply and
    /// every write this node acknowledged as durable (see
    /// [`Node::take_reply_versions`] and [`Node::take_acknowledged_writes`]).
    /// Off by default: a production driver does not collect them.
    pub record_versions: bool,
    /// **A deliberate bug, for proving that the simulator's checks bite.**
    /// Acknowledges `QUORUM` writes after a single replica. Off by default
    /// and settable only through this struct: no production command sets it.
    pub bug_ack_quorum_writes_after_one_replica: bool,
    /// **A deliberate bug**, as above: when the flush's sync fails, the
    /// batch's outputs are released all the same (the node stops after).
    pub bug_release_outputs_of_a_failed_sync: bool,
    /// **A deliberate bug**: a read answers with the value it has once the
    /// level's count has answered, even when a replica's digest is newer
    /// (see [`PendingRead::planting_trust_in_the_data`]). Off by default,
    /// settable only through this struct.
    pub bug_read_trusts_the_data_over_digests: bool,
}

impl Default for NodeOptions {
    fn default() -> Self {
        Self {
            request_timeout_nanos: 1_000_000_000,
            requests_pending_max: 10_000,
            engine: EngineOptions::default(),
            background_bytes_per_tick: 8 * 1024 * 1024,
            record_versions: false,
            bug_ack_quorum_writes_after_one_replica: false,
            bug_release_outputs_of_a_failed_sync: false,
            bug_read_trusts_the_data_over_digests: false,
        }
    }
}

/// What a driver feeds a node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// A client request; the reply carries `request` back.
    Client {
        request: RequestId,
        body: ClientRequest,
    },
    /// A message from a peer.
    Message { from: NodeId, envelope: Envelope },
    /// Time passed: check deadlines.
    Tick,
}

/// What a node asks its driver to do, released only by [`Node::flush`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Send `envelope` to peer `to`.
    Send { to: NodeId, envelope: Envelope },
    /// Answer client request `request`.
    Reply {
        request: RequestId,
        response: ClientResponse,
    },
}

/// Why a node cannot start or must stop.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum NodeError {
    /// The cluster configuration is unusable.
    #[error("cluster configuration: {0}")]
    Config(#[from] RingError),
    /// This node is not a member of the configured cluster.
    #[error("{node} is not a member of the configured cluster")]
    NotAMember { node: NodeId },
    /// Storage failed in a way that forbids going on (failed sync, corrupt
    /// log at startup).
    #[error("storage: {0}")]
    Storage(#[from] EngineError),
}

/// Counters a driver may report.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeStats {
    /// Client operations answered, by outcome.
    pub client_ok: u64,
    /// Client operations answered with an error.
    pub client_errors: u64,
    /// Repair writes sent or applied by read repair.
    pub read_repairs: u64,
    /// Storage errors met while serving (the operation was not answered).
    pub storage_errors: u64,
    /// Peer messages dropped because they made no sense here.
    pub messages_ignored: u64,
    /// Memtables the engine's background work wrote as tables.
    pub tables_flushed: u64,
    /// Compactions the engine's background work ran.
    pub compactions: u64,
    /// Background jobs that failed (a failure that poisons the engine also
    /// makes the node fatal).
    pub background_errors: u64,
    /// The last background failure, for the driver to report.
    pub last_background_error: Option<String>,
    /// Writes refused, syncs that could not be written and background
    /// jobs that failed because the disk is full (none of them fatal).
    pub no_space_errors: u64,
    /// Whether the disk is full now: set by a full-disk failure, cleared
    /// once writes (or a background job) succeed again. A driver reports
    /// each change once, not each failure.
    pub no_space: bool,
    /// How many full-disk episodes began: a driver that looks now and then
    /// still sees one that began and ended between two looks.
    pub no_space_episodes: u64,
    /// The last storage failure met while serving (corruption names file
    /// and offset), for the driver to report.
    pub last_storage_error: Option<String>,
}

/// How long background work waits after a failed job (a full disk, a
/// corrupt table in a compaction) before it tries again, so a disk with a
/// little space is not filled and emptied by a table write on every tick,
/// and a failure is not met (and reported) on every tick.
const BACKGROUND_RETRY_AFTER_FAILURE_NANOS: u64 = 1_000_000_000;

/// A write this node acknowledged as durable: a replica write it answered
/// with `WriteAck`, or its own replica's write counted by itself as
/// coordinator. After any crash and restart the node must still hold this
/// version of the key or a newer one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcknowledgedWrite {
    /// The key.
    pub key: Vec<u8>,
    /// The version's timestamp.
    pub timestamp: Timestamp,
}

/// The version behind a client reply: what a write wrote, or what a read
/// returned (`None`: no replica held a version).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplyVersion {
    /// The request answered.
    pub request: RequestId,
    /// The version's timestamp.
    pub timestamp: Option<Timestamp>,
}

/// What [`NodeOptions::record_versions`] collects: pending until the next
/// flush, then released to the driver.
#[derive(Debug, Default)]
struct VersionLog {
    acknowledged: Vec<AcknowledgedWrite>,
    replies: Vec<ReplyVersion>,
    released_acknowledged: Vec<AcknowledgedWrite>,
    released_replies: Vec<ReplyVersion>,
}

/// A client operation in flight at this coordinator.
#[derive(Debug)]
enum Pending {
    Write(PendingWrite),
    Read(PendingRead),
}

/// One EnigmaDB node. See the module documentation for the driver contract.
#[derive(Debug)]
pub struct Node<D: Disk> {
    /// This node.
    id: NodeId,
    /// Boot generation, raised durably at each start.
    generation: u64,
    /// Static placement.
    ring: Ring,
    /// Stamps mutations; fed by `now` and received messages.
    hlc: HlcClock,
    /// Local storage.
    engine: Engine<D>,
    /// Tunables.
    options: NodeOptions,
    /// Next operation sequence number of this generation.
    next_seq: u64,
    /// Operations this node coordinates, by sequence number.
    pending: BTreeMap<u64, Pending>,
    /// Outputs waiting for the next flush.
    held: Vec<Output>,
    /// A storage failure that forbids going on; reported by `flush`.
    fatal: Option<EngineError>,
    /// Counters.
    stats: NodeStats,
    /// Timestamp of each write this node coordinates, by sequence number
    /// (only with `record_versions`).
    write_stamps: BTreeMap<u64, Timestamp>,
    /// Versions for a checking driver (only with `record_versions`).
    versions: VersionLog,
    /// The number of tables when background work last found nothing to
    /// do: until a memtable fills or the tables change, asking again would
    /// find nothing either.
    background_idle_at_tables: Option<usize>,
    /// Buggify draws (`options.engine.buggify`; none fire in production).
    buggify: BuggifyDraws,
    /// A local write was applied since the last flush: a failed sync then
    /// leaves outputs that reflect writes not durable.
    wrote_since_flush: bool,
    /// A full disk failed something in this batch.
    no_space_in_batch: bool,
    /// Winners of finished reads, to repair a replica whose corruption
    /// report comes in late.
    recent_reads: RecentReads,
    /// Operations (by sequence number) that counted this node's own write
    /// or answer since the last completed sync: if the sync cannot be
    /// written, those are taken back.
    local_counted_unsynced: Vec<u64>,
    /// After a background job met a full disk: no new try before this
    /// (monotonic).
    background_retry_mono_nanos: u64,
}

impl<D: Disk> Node<D> {
    /// Starts node `id` on `disk`, recovering whatever the disk holds.
    ///
    /// # Errors
    /// A bad configuration, or storage that cannot be recovered.
    pub fn new(
        id: NodeId,
        cluster: &ClusterConfig,
        options: NodeOptions,
        disk: D,
    ) -> Result<Self, NodeError> {
        let ring = Ring::new(
            &cluster.nodes,
            cluster.vnodes_per_node,
            cluster.replication_factor,
        )?;
        if !ring.nodes().contains(&id) {
            return Err(NodeError::NotAMember { node: id });
        }
        // Everything is read and checked before any file changes: a
        // refused start leaves the disk as it found it.
        let last_generation = generation::last(&disk)?;
        let recovery = Engine::recover(disk, options.engine.clone())?;
        let generation = generation::store_next(recovery.disk(), last_generation)?;
        let engine = recovery.open()?;
        // A stream per node and boot: a restarted node does not redraw
        // what it drew before.
        let buggify =
            BuggifyDraws::new(&options.engine.buggify, u64::from(id.0) << 32 | generation);
        Ok(Self {
            id,
            generation,
            ring,
            hlc: HlcClock::new(),
            engine,
            options,
            next_seq: 0,
            pending: BTreeMap::new(),
            held: Vec::new(),
            fatal: None,
            stats: NodeStats::default(),
            write_stamps: BTreeMap::new(),
            versions: VersionLog::default(),
            background_idle_at_tables: None,
            buggify,
            wrote_since_flush: false,
            no_space_in_batch: false,
            recent_reads: RecentReads::default(),
            local_counted_unsynced: Vec::new(),
            background_retry_mono_nanos: 0,
        })
    }

    /// Takes in one input at time `now`. Outputs wait for [`Self::flush`].
    pub fn step(&mut self, now: Now, input: Input) {
        if self.fatal.is_some() {
            return;
        }
        match input {
            Input::Client { request, body } => self.on_client(now, request, body),
            Input::Message { from, envelope } => {
                self.hlc.observe(envelope.hlc);
                self.on_message(from, envelope.message);
            }
            Input::Tick => self.on_tick(now),
        }
    }

    /// Makes every write applied since the last flush durable with one sync,
    /// then releases the outputs that waited on it.
    ///
    /// # Errors
    /// A storage failure: the node must be dropped, its held outputs are
    /// never released.
    pub fn flush(&mut self) -> Result<Vec<Output>, NodeError> {
        if let Some(e) = &self.fatal {
            return Err(NodeError::Storage(e.clone()));
        }
        let wrote = std::mem::take(&mut self.wrote_since_flush);
        if let Err(e) = self.engine.sync() {
            if let EngineError::NoSpace { .. } = e {
                // Not fatal: the writes wait in the engine for space.
                self.note_no_space();
                self.no_space_in_batch = false;
                let held = std::mem::take(&mut self.held);
                if !wrote {
                    // Nothing this batch did waits on the sync: reads of
                    // keys whose writes wait are refused by the engine.
                    self.local_counted_unsynced.clear();
                    // The replies leave: so do their versions.
                    if self.options.record_versions {
                        let log = &mut self.versions;
                        log.released_replies.append(&mut log.replies);
                    }
                    return Ok(held);
                }
                self.versions.acknowledged.clear();
                self.versions.replies.clear();
                let failure = ReplicaFailure::from_engine(&e);
                let mut outputs = no_space::release_without_durability(self.id, held, &failure);
                self.retract_local_counts(&failure);
                outputs.append(&mut self.held);
                return Ok(outputs);
            }
            self.fatal = Some(e.clone());
            if self.options.bug_release_outputs_of_a_failed_sync {
                let log = &mut self.versions;
                log.released_acknowledged.append(&mut log.acknowledged);
                log.released_replies.append(&mut log.replies);
                return Ok(std::mem::take(&mut self.held));
            }
            self.held.clear();
            self.versions = VersionLog::default();
            return Err(NodeError::Storage(e));
        }
        self.local_counted_unsynced.clear();
        let space_back = wrote && !self.no_space_in_batch && !self.engine.log_stalled_for_space();
        if space_back {
            self.stats.no_space = false;
        }
        self.no_space_in_batch = false;
        if self.options.record_versions {
            let log = &mut self.versions;
            log.released_acknowledged.append(&mut log.acknowledged);
            log.released_replies.append(&mut log.replies);
        }
        // The next batch is likely about as large: give it the room now,
        // rather than growing it output by output.
        let room = self.held.len();
        Ok(std::mem::replace(&mut self.held, Vec::with_capacity(room)))
    }

    /// The writes this node acknowledged as durable in outputs released by
    /// `flush` since the last call (empty unless
    /// [`NodeOptions::record_versions`]).
    pub fn take_acknowledged_writes(&mut self) -> Vec<AcknowledgedWrite> {
        std::mem::take(&mut self.versions.released_acknowledged)
    }

    /// The versions behind the client replies released by `flush` since the
    /// last call (empty unless [`NodeOptions::record_versions`]).
    pub fn take_reply_versions(&mut self) -> Vec<ReplyVersion> {
        std::mem::take(&mut self.versions.released_replies)
    }

    /// Times a buggify site of this node or its engine fired.
    pub fn buggify_fired(&self) -> u64 {
        self.buggify.fired() + self.engine.buggify_fired()
    }

    /// This node's id.
    pub fn id(&self) -> NodeId {
        self.id
    }

    /// This incarnation's boot generation.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The ring this node places data with.
    pub fn ring(&self) -> &Ring {
        &self.ring
    }

    /// Local storage, for inspection (the simulator's convergence check).
    pub fn engine(&self) -> &Engine<D> {
        &self.engine
    }

    /// Client operations in flight at this coordinator.
    pub fn pending_operations(&self) -> usize {
        self.pending.len()
    }

    /// Counters.
    pub fn stats(&self) -> &NodeStats {
        &self.stats
    }

    fn on_client(&mut self, now: Now, request: RequestId, body: ClientRequest) {
        if let Err(reason) = self.validate(&body.op) {
            return self.reply(
                request,
                ClientResponse::Error(ClientError::Invalid { reason }),
            );
        }
        let rf = self.ring.replication_factor();
        let Some(mut required) = body.level.replicas_required(rf) else {
            let reason = format!(
                "consistency level {} needs more than {rf} replicas",
                body.level
            );
            return self.reply(
                request,
                ClientResponse::Error(ClientError::Invalid { reason }),
            );
        };
        if self.pending.len() >= self.options.requests_pending_max {
            let pending = self.pending.len();
            return self.reply(
                request,
                ClientResponse::Error(ClientError::Overloaded { pending }),
            );
        }
        let replicas = self.ring.replicas(body.op.key());
        let deadline_mono_nanos = now
            .mono_nanos
            .saturating_add(self.options.request_timeout_nanos);
        let op = OpId {
            generation: self.generation,
            seq: self.next_seq,
        };
        self.next_seq += 1;
        let is_write = !matches!(body.op, ClientOp::Get { .. });
        if is_write
            && body.level == ConsistencyLevel::Quorum
            && self.options.bug_ack_quorum_writes_after_one_replica
        {
            required = 1;
        }
        // The local replica alone decides when the level needs one answer:
        // the operation completes within this step and never waits in
        // `pending`. Remote replicas get the same messages as on the slow
        // path (a write must reach them; a read's answers come back to an
        // operation that is already gone and are ignored, as they would be
        // after the first answer decided it).
        let local_decides = required == 1 && replicas.contains(&self.id);
        match body.op {
            ClientOp::Get { key } if local_decides => {
                self.send_remote_reads(op, &key, &replicas);
                match self.local_read(&key) {
                    Ok(version) => {
                        self.reply_version(request, version.as_ref().map(|v| v.timestamp));
                        self.reply(
                            request,
                            ClientResponse::Value(version.and_then(|v| v.value)),
                        );
                    }
                    Err(failure) => {
                        // Storage failed here: wait for a remote answer.
                        let read =
                            PendingRead::new(request, key, replicas, required, deadline_mono_nanos)
                                .planting_trust_in_the_data(
                                    self.options.bug_read_trusts_the_data_over_digests,
                                );
                        self.pending.insert(op.seq, Pending::Read(read));
                        self.on_read_failure(op, self.id, failure);
                    }
                }
            }
            ClientOp::Get { key } => {
                let read = PendingRead::new(
                    request,
                    key.clone(),
                    replicas.clone(),
                    required,
                    deadline_mono_nanos,
                )
                .planting_trust_in_the_data(self.options.bug_read_trusts_the_data_over_digests);
                self.pending.insert(op.seq, Pending::Read(read));
                self.send_remote_reads(op, &key, &replicas);
                if replicas.contains(&self.id) {
                    match self.local_read(&key) {
                        Ok(version) => self.on_read_reply(op, self.id, version),
                        Err(failure) => self.on_read_failure(op, self.id, failure),
                    }
                }
            }
            ClientOp::Put { key, value } => {
                let write = PendingWrite::new(request, replicas, required, deadline_mono_nanos);
                self.start_write(now, op, key, Some(value), write);
            }
            ClientOp::Delete { key } => {
                let write = PendingWrite::new(request, replicas, required, deadline_mono_nanos);
                self.start_write(now, op, key, None, write);
            }
        }
    }

    /// Asks every replica of `key` but this node for its version: one
    /// for the value (none if this node is a replica and has it), the
    /// others for a digest.
    fn send_remote_reads(&mut self, op: OpId, key: &[u8], replicas: &[NodeId]) {
        let me = self.id;
        let data_from = data_replica(me, replicas, op.seq);
        for &replica in replicas.iter().filter(|&&r| r != me) {
            let key = key.to_vec();
            let message = if Some(replica) == data_from {
                Message::Read { op, key }
            } else {
                Message::ReadDigest { op, key }
            };
            self.send(replica, message);
        }
    }

    fn start_write(
        &mut self,
        now: Now,
        op: OpId,
        key: Vec<u8>,
        value: Option<Vec<u8>>,
        write: PendingWrite,
    ) {
        let timestamp = Timestamp {
            hlc: self.hlc.tick(now.wall_nanos),
            node: self.id.0,
        };
        let version = Versioned { timestamp, value };
        let me = self.id;
        let local = write.replicas.contains(&me);
        for i in 0..write.replicas.len() {
            let replica = write.replicas[i];
            if replica != me {
                self.send(
                    replica,
                    Message::Write {
                        op,
                        key: key.clone(),
                        version: version.clone().into(),
                    },
                );
            }
        }
        if local && write.required == 1 {
            // The local replica alone decides: acknowledge within this step
            // (once the flush makes it durable) without waiting in
            // `pending`; later acknowledgements find nothing and are
            // ignored, as they would be after the first one decided it.
            match self.local_write(&key, version) {
                Ok(()) => {
                    self.acknowledged(&key, timestamp);
                    self.reply_version(write.request, Some(timestamp));
                    self.reply(write.request, ClientResponse::Written);
                }
                Err(failure) => {
                    self.pending.insert(op.seq, Pending::Write(write));
                    if self.options.record_versions {
                        self.write_stamps.insert(op.seq, timestamp);
                    }
                    self.on_write_failure(op, me, failure);
                }
            }
            return;
        }
        self.pending.insert(op.seq, Pending::Write(write));
        if self.options.record_versions {
            self.write_stamps.insert(op.seq, timestamp);
        }
        if local {
            match self.local_write(&key, version) {
                Ok(()) => {
                    self.acknowledged(&key, timestamp);
                    self.on_write_ack(op, self.id);
                }
                Err(failure) => self.on_write_failure(op, me, failure),
            }
        }
    }

    fn validate(&self, op: &ClientOp) -> Result<(), String> {
        let limits = &self.options.engine;
        if op.key().len() > limits.key_bytes_max {
            return Err(format!(
                "key of {} bytes exceeds {}",
                op.key().len(),
                limits.key_bytes_max
            ));
        }
        if let ClientOp::Put { value, .. } = op {
            if value.len() > limits.value_bytes_max {
                return Err(format!(
                    "value of {} bytes exceeds {}",
                    value.len(),
                    limits.value_bytes_max
                ));
            }
        }
        Ok(())
    }

    fn on_message(&mut self, from: NodeId, message: Message) {
        if !self.ring.nodes().contains(&from) {
            self.stats.messages_ignored += 1;
            return;
        }
        match message {
            Message::Write { op, key, version } => {
                let timestamp = Timestamp {
                    hlc: version.hlc,
                    node: version.node,
                };
                let failure = self.local_write(&key, version.into()).err();
                if failure.is_none() {
                    self.acknowledged(&key, timestamp);
                }
                self.send(from, Message::WriteAck { op, failure });
            }
            Message::Read { op, key } => {
                let reply = match self.local_read(&key) {
                    Ok(version) => Message::ReadReply {
                        op,
                        version: version.map(Into::into),
                        failure: None,
                    },
                    Err(failure) => Message::ReadReply {
                        op,
                        version: None,
                        failure: Some(failure),
                    },
                };
                self.send(from, reply);
            }
            Message::ReadDigest { op, key } => {
                // A replica that cannot read the key says so as for a
                // data read: the coordinator counts the failure either way.
                let reply = match self.local_read(&key) {
                    Ok(version) => Message::DigestReply {
                        op,
                        digest: version.as_ref().map(VersionDigest::of),
                    },
                    Err(failure) => Message::ReadReply {
                        op,
                        version: None,
                        failure: Some(failure),
                    },
                };
                self.send(from, reply);
            }
            Message::DigestReply { op, digest } => {
                if op.generation != self.generation {
                    self.stats.messages_ignored += 1;
                } else if let Some(Pending::Read(read)) = self.pending.get_mut(&op.seq) {
                    let progress = read.on_digest(from, digest);
                    self.advance_read(op, progress);
                }
            }
            Message::WriteAck { op, failure: None } => self.on_write_ack(op, from),
            Message::WriteAck {
                op,
                failure: Some(failure),
            } => self.on_write_failure(op, from, failure),
            Message::ReadReply {
                op,
                version,
                failure: None,
            } => self.on_read_reply(op, from, version.map(Into::into)),
            Message::ReadReply {
                op,
                failure: Some(failure),
                ..
            } => self.on_read_failure(op, from, failure),
        }
    }

    fn on_write_ack(&mut self, op: OpId, from: NodeId) {
        if op.generation != self.generation {
            self.stats.messages_ignored += 1;
            return;
        }
        if from == self.id {
            self.local_counted_unsynced.push(op.seq);
        }
        match self.pending.get_mut(&op.seq) {
            Some(Pending::Write(write)) => {
                let request = write.request;
                if write.on_ack(from) && !write.held_to_deadline {
                    if self.buggify.fires(BuggifySite::ReplyAtDeadline) {
                        // Succeeded, answered only at its deadline.
                        write.held_to_deadline = true;
                        return;
                    }
                    self.pending.remove(&op.seq);
                    let stamp = self.write_stamps.remove(&op.seq);
                    self.reply_version(request, stamp);
                    self.reply(request, ClientResponse::Written);
                }
            }
            None => {}
            Some(Pending::Read(read)) => {
                let progress = read.on_repair_ack(from);
                self.advance_read(op, progress);
            }
        }
    }

    /// Takes back this node's own acknowledgements and answers counted
    /// since the last completed sync, which a full disk kept from becoming
    /// durable: the operations go on with the other replicas, or fail.
    fn retract_local_counts(&mut self, failure: &ReplicaFailure) {
        let me = self.id;
        for seq in std::mem::take(&mut self.local_counted_unsynced) {
            let op = OpId {
                generation: self.generation,
                seq,
            };
            match self.pending.get_mut(&seq) {
                Some(Pending::Write(write)) => {
                    if let Some(error) = write.retract(me, failure.clone()) {
                        let request = write.request;
                        self.pending.remove(&seq);
                        self.write_stamps.remove(&seq);
                        self.reply(request, ClientResponse::Error(error));
                    }
                }
                Some(Pending::Read(read)) => {
                    let progress = read.retract(me, failure.clone());
                    self.advance_read(op, progress);
                }
                None => {}
            }
        }
    }

    /// `from` could not take the write of `op`: the write fails at once if
    /// the level can no longer be met.
    fn on_write_failure(&mut self, op: OpId, from: NodeId, failure: ReplicaFailure) {
        if op.generation != self.generation {
            self.stats.messages_ignored += 1;
            return;
        }
        if let Some(Pending::Write(write)) = self.pending.get_mut(&op.seq) {
            if let Some(error) = write.on_failure(from, failure) {
                let request = write.request;
                self.pending.remove(&op.seq);
                self.write_stamps.remove(&op.seq);
                self.reply(request, ClientResponse::Error(error));
            }
        }
    }

    /// `from` could not read the key of `op`.
    fn on_read_failure(&mut self, op: OpId, from: NodeId, failure: ReplicaFailure) {
        if op.generation != self.generation {
            self.stats.messages_ignored += 1;
            return;
        }
        if let Some(Pending::Read(read)) = self.pending.get_mut(&op.seq) {
            let progress = read.on_failure(from, failure);
            self.advance_read(op, progress);
        } else if failure.is_corruption() {
            // The read finished without `from`: repair it all the same.
            if let Some((key, winner)) = self.recent_reads.find(op.seq) {
                let (key, winner) = (key.to_vec(), winner.clone());
                self.repair_replica(op, from, key, winner);
            }
        }
    }

    fn on_read_reply(&mut self, op: OpId, from: NodeId, version: Option<Versioned>) {
        if op.generation != self.generation {
            self.stats.messages_ignored += 1;
            return;
        }
        if from == self.id {
            self.local_counted_unsynced.push(op.seq);
        }
        if let Some(Pending::Read(read)) = self.pending.get_mut(&op.seq) {
            let progress = read.on_answer(from, version);
            self.advance_read(op, progress);
        }
    }

    fn advance_read(&mut self, op: OpId, progress: ReadProgress) {
        match progress {
            ReadProgress::Waiting => {}
            ReadProgress::Done(value) => {
                if let Some(Pending::Read(read)) = self.pending.remove(&op.seq) {
                    self.reply_version(read.request, read.decided_timestamp());
                    self.reply(read.request, ClientResponse::Value(value));
                    self.repair_corrupt(op, &read);
                }
            }
            ReadProgress::Failed(error) => {
                if let Some(Pending::Read(read)) = self.pending.remove(&op.seq) {
                    self.reply(read.request, ClientResponse::Error(error));
                }
            }
            ReadProgress::Fetch { from } => {
                let Some(Pending::Read(read)) = self.pending.get(&op.seq) else {
                    return;
                };
                let key = read.key.clone();
                self.send(from, Message::Read { op, key });
            }
            ReadProgress::Repair { winner, stale } => {
                let Some(Pending::Read(read)) = self.pending.get(&op.seq) else {
                    return;
                };
                let key = read.key.clone();
                let me = self.id;
                for &replica in stale.iter().filter(|&&r| r != me) {
                    self.stats.read_repairs += 1;
                    self.send(
                        replica,
                        Message::Write {
                            op,
                            key: key.clone(),
                            version: winner.clone().into(),
                        },
                    );
                }
                if stale.contains(&self.id) {
                    self.stats.read_repairs += 1;
                    let timestamp = winner.timestamp;
                    if self.local_write(&key, winner).is_ok() {
                        self.acknowledged(&key, timestamp);
                        self.on_write_ack(op, self.id);
                    }
                }
            }
        }
    }

    /// Writes the winner of a finished read back to the replicas whose copy
    /// was corrupt: the newer (or equal) version shadows the bad entry.
    fn repair_corrupt(&mut self, op: OpId, read: &PendingRead) {
        let Some(winner) = read.winner() else {
            return;
        };
        self.recent_reads.remember(op.seq, &read.key, winner);
        for replica in read.corrupt_replicas() {
            self.repair_replica(op, replica, read.key.clone(), winner.clone());
        }
    }

    /// Writes `winner` of `key` to `replica`, whose copy was corrupt.
    fn repair_replica(&mut self, op: OpId, replica: NodeId, key: Vec<u8>, winner: Versioned) {
        self.stats.read_repairs += 1;
        if replica == self.id {
            let timestamp = winner.timestamp;
            if self.local_write(&key, winner).is_ok() {
                self.acknowledged(&key, timestamp);
            }
        } else {
            let version = winner.into();
            self.send(replica, Message::Write { op, key, version });
        }
    }

    fn on_tick(&mut self, now: Now) {
        let expired: Vec<u64> = self
            .pending
            .iter()
            .filter(|(_, p)| match p {
                Pending::Write(w) => w.deadline_mono_nanos <= now.mono_nanos,
                Pending::Read(r) => r.deadline_mono_nanos <= now.mono_nanos,
            })
            .map(|(&seq, _)| seq)
            .collect();
        for seq in expired {
            let stamp = self.write_stamps.remove(&seq);
            let (request, answered, required) = match self.pending.remove(&seq) {
                Some(Pending::Write(w)) if w.held_to_deadline => {
                    self.reply_version(w.request, stamp);
                    self.reply(w.request, ClientResponse::Written);
                    continue;
                }
                Some(Pending::Write(w)) => (w.request, w.acked.len(), w.required),
                Some(Pending::Read(r)) => (r.request, r.answered(), r.required),
                None => continue,
            };
            self.reply(
                request,
                ClientResponse::Error(ClientError::Timeout { answered, required }),
            );
        }
        if now.mono_nanos >= self.background_retry_mono_nanos {
            self.background_work(now);
        }
    }

    /// Runs the engine's background work within the tick's budget. A
    /// failure is counted; one that poisoned the engine makes the node
    /// fatal, so nothing more is acknowledged.
    ///
    /// The call is skipped while the last one found nothing to do and
    /// nothing that could give it work has happened since: no memtable
    /// waits for a flush or is full, and the number of tables is the same
    /// (only flushes and compactions change the tables, and each changes
    /// their number). Skipping can only postpone work, never lose it.
    fn background_work(&mut self, now: Now) {
        let engine = &self.engine;
        let idle = !self.buggify.enabled(BuggifySite::MemtableFrozenEarly)
            && self.background_idle_at_tables == Some(engine.tables_total())
            && engine.frozen_total() == 0
            && engine.memtable_bytes() < engine.options().memtable_bytes_max;
        if idle {
            return;
        }
        self.background_idle_at_tables = None;
        let budget = if self.buggify.fires(BuggifySite::BackgroundBatchCut) {
            1
        } else {
            self.options.background_bytes_per_tick
        };
        match self.engine.do_background_work(budget) {
            Ok(BackgroundReport {
                tables_flushed,
                compactions,
                work_pending,
                ..
            }) => {
                self.stats.tables_flushed += tables_flushed as u64;
                self.stats.compactions += compactions as u64;
                if tables_flushed + compactions > 0 && !self.engine.log_stalled_for_space() {
                    self.stats.no_space = false;
                }
                if tables_flushed == 0 && compactions == 0 && !work_pending {
                    self.background_idle_at_tables = Some(self.engine.tables_total());
                }
            }
            Err(EngineError::NoSpace { .. }) => {
                // Counted and reported once per episode, retried later.
                self.note_no_space();
                self.background_retry_mono_nanos = now
                    .mono_nanos
                    .saturating_add(BACKGROUND_RETRY_AFTER_FAILURE_NANOS);
            }
            Err(e) => {
                self.background_retry_mono_nanos = now
                    .mono_nanos
                    .saturating_add(BACKGROUND_RETRY_AFTER_FAILURE_NANOS);
                self.stats.background_errors += 1;
                self.stats.last_background_error = Some(e.to_string());
                let poisoned = self.engine.poisoned_reason().map(str::to_owned);
                match (e, poisoned) {
                    (e @ EngineError::Poisoned { .. }, _) => self.fatal = Some(e),
                    (_, Some(reason)) => self.fatal = Some(EngineError::Poisoned { reason }),
                    (_, None) => {}
                }
            }
        }
    }

    /// Notes, for a checking driver, that this node holds `timestamp` of
    /// `key` durably once the next flush succeeds, and says so.
    fn acknowledged(&mut self, key: &[u8], timestamp: Timestamp) {
        if self.options.record_versions {
            self.versions.acknowledged.push(AcknowledgedWrite {
                key: key.to_vec(),
                timestamp,
            });
        }
    }

    /// Notes, for a checking driver, the version behind a client reply.
    fn reply_version(&mut self, request: RequestId, timestamp: Option<Timestamp>) {
        if self.options.record_versions {
            self.versions
                .replies
                .push(ReplyVersion { request, timestamp });
        }
    }

    /// Applies a write locally; `Ok` if it is (or will be, at the next
    /// flush) durable here, so an acknowledgement may be counted or sent.
    fn local_write(&mut self, key: &[u8], version: Versioned) -> Result<(), ReplicaFailure> {
        match self.engine.write(key, version) {
            Ok(_) => {
                self.wrote_since_flush = true;
                Ok(())
            }
            Err(e) => Err(self.storage_error(e)),
        }
    }

    /// Reads locally; on a storage failure, what to tell the coordinator.
    fn local_read(&mut self, key: &[u8]) -> Result<Option<Versioned>, ReplicaFailure> {
        self.engine.get(key).map_err(|e| self.storage_error(e))
    }

    /// Counts a storage failure met while serving and says what it was.
    fn storage_error(&mut self, error: EngineError) -> ReplicaFailure {
        let failure = ReplicaFailure::from_engine(&error);
        match error {
            EngineError::NoSpace { .. } => self.note_no_space(),
            EngineError::Poisoned { .. } => self.fatal = Some(error),
            _ => {
                self.stats.storage_errors += 1;
                self.stats.last_storage_error = Some(failure.to_string());
            }
        }
        failure
    }

    /// Counts a full-disk failure and marks the episode.
    fn note_no_space(&mut self) {
        self.stats.no_space_errors += 1;
        if !self.stats.no_space {
            self.stats.no_space_episodes += 1;
        }
        self.stats.no_space = true;
        self.no_space_in_batch = true;
    }

    fn send(&mut self, to: NodeId, message: Message) {
        debug_assert_ne!(to, self.id, "local replicas are served in place");
        self.held.push(Output::Send {
            to,
            envelope: Envelope {
                hlc: self.hlc.last(),
                message,
            },
        });
    }

    fn reply(&mut self, request: RequestId, response: ClientResponse) {
        match &response {
            ClientResponse::Error(_) => self.stats.client_errors += 1,
            _ => self.stats.client_ok += 1,
        }
        self.held.push(Output::Reply { request, response });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::WireVersion;
    use enigma_engine::FsDisk;
    use tempfile::TempDir;

    /// A hand-driven cluster on real files: the test routes every message.
    struct Harness {
        dirs: Vec<TempDir>,
        nodes: Vec<Option<Node<FsDisk>>>,
        cluster: ClusterConfig,
        options: NodeOptions,
        now: Now,
    }

    impl Harness {
        fn new(count: u32, options: NodeOptions) -> Self {
            let cluster = ClusterConfig {
                nodes: (1..=count).map(NodeId).collect(),
                replication_factor: count as usize,
                vnodes_per_node: 4,
            };
            let dirs: Vec<TempDir> = (0..count).map(|_| TempDir::new().unwrap()).collect();
            let mut harness = Self {
                dirs,
                nodes: Vec::new(),
                cluster,
                options,
                now: Now::default(),
            };
            for i in 0..count as usize {
                let node = harness.start(i);
                harness.nodes.push(Some(node));
            }
            harness
        }

        fn start(&self, i: usize) -> Node<FsDisk> {
            let disk = FsDisk::open(self.dirs[i].path()).unwrap();
            Node::new(
                NodeId(i as u32 + 1),
                &self.cluster,
                self.options.clone(),
                disk,
            )
            .unwrap()
        }

        fn node(&mut self, i: usize) -> &mut Node<FsDisk> {
            self.nodes[i].as_mut().unwrap()
        }

        /// Steps node `i` with `input` and flushes it.
        fn step(&mut self, i: usize, input: Input) -> Vec<Output> {
            let now = self.now;
            let node = self.node(i);
            node.step(now, input);
            node.flush().unwrap()
        }

        fn client(
            &mut self,
            i: usize,
            request: u64,
            op: ClientOp,
            level: ConsistencyLevel,
        ) -> Vec<Output> {
            let body = ClientRequest { op, level };
            self.step(
                i,
                Input::Client {
                    request: RequestId(request),
                    body,
                },
            )
        }

        /// Delivers one output of node `from` to its destination.
        fn deliver(&mut self, from: usize, output: &Output) -> Vec<Output> {
            let Output::Send { to, envelope } = output else {
                panic!("not a send: {output:?}")
            };
            let input = Input::Message {
                from: NodeId(from as u32 + 1),
                envelope: envelope.clone(),
            };
            self.step(to.0 as usize - 1, input)
        }
    }

    fn put(key: &str, value: &str) -> ClientOp {
        ClientOp::Put {
            key: key.as_bytes().to_vec(),
            value: value.as_bytes().to_vec(),
        }
    }

    fn get(key: &str) -> ClientOp {
        ClientOp::Get {
            key: key.as_bytes().to_vec(),
        }
    }

    fn replies(outputs: &[Output]) -> Vec<&ClientResponse> {
        outputs
            .iter()
            .filter_map(|o| match o {
                Output::Reply { response, .. } => Some(response),
                Output::Send { .. } => None,
            })
            .collect()
    }

    fn sends(outputs: &[Output]) -> Vec<Output> {
        outputs
            .iter()
            .filter(|o| matches!(o, Output::Send { .. }))
            .cloned()
            .collect()
    }

    #[test]
    fn an_acknowledged_write_survives_a_restart() {
        let mut h = Harness::new(1, NodeOptions::default());
        let out = h.client(0, 1, put("k", "v"), ConsistencyLevel::One);
        assert_eq!(replies(&out), vec![&ClientResponse::Written]);
        h.nodes[0] = None;
        let node = h.start(0);
        let stored = node.engine().get(b"k").unwrap().unwrap();
        assert_eq!(stored.value, Some(b"v".to_vec()));
    }

    #[test]
    fn a_quorum_write_waits_for_a_second_replica() {
        let mut h = Harness::new(3, NodeOptions::default());
        let out = h.client(0, 1, put("k", "v"), ConsistencyLevel::Quorum);
        assert!(
            replies(&out).is_empty(),
            "answered after one replica: {out:?}"
        );
        let writes = sends(&out);
        assert_eq!(writes.len(), 2);
        let ack = h.deliver(0, &writes[0]);
        let done = h.deliver(1, &ack[0]);
        assert_eq!(replies(&done), vec![&ClientResponse::Written]);
    }

    #[test]
    fn the_planted_bug_acknowledges_a_quorum_write_after_one_replica() {
        let options = NodeOptions {
            bug_ack_quorum_writes_after_one_replica: true,
            ..NodeOptions::default()
        };
        let mut h = Harness::new(3, options);
        let out = h.client(0, 1, put("k", "v"), ConsistencyLevel::Quorum);
        assert_eq!(replies(&out), vec![&ClientResponse::Written]);
    }

    #[test]
    fn acknowledgements_for_a_previous_incarnation_are_not_counted() {
        let mut h = Harness::new(3, NodeOptions::default());
        let old = sends(&h.client(0, 1, put("k", "old"), ConsistencyLevel::All));
        // Each acknowledgement with the replica that produced it.
        let old_acks: Vec<(usize, Vec<Output>)> = old
            .iter()
            .map(|write| {
                let Output::Send { to, .. } = write else {
                    panic!("not a send: {write:?}")
                };
                (to.0 as usize - 1, h.deliver(0, write))
            })
            .collect();
        assert_eq!(old_acks.len(), 2);
        // n1 crashes and restarts: its new first operation reuses seq 0.
        h.nodes[0] = None;
        let node = h.start(0);
        h.nodes[0] = Some(node);
        let new = h.client(0, 2, put("k", "new"), ConsistencyLevel::All);
        assert!(replies(&new).is_empty());
        for (replica, acks) in &old_acks {
            let out = h.deliver(*replica, &acks[0]);
            assert!(
                replies(&out).is_empty(),
                "a stale ack completed a new write: {out:?}"
            );
        }
    }

    #[test]
    fn a_quorum_read_repairs_a_stale_replica_before_answering() {
        let mut h = Harness::new(3, NodeOptions::default());
        // The write reaches n1 (local) and n2 only; the one to n3 is lost.
        let writes = sends(&h.client(0, 1, put("k", "v"), ConsistencyLevel::Quorum));
        let to_n2 = writes
            .iter()
            .find(|o| matches!(o, Output::Send { to, .. } if *to == NodeId(2)))
            .unwrap();
        let ack = h.deliver(0, to_n2);
        h.deliver(1, &ack[0]);
        // n3 coordinates a read and hears from itself (nothing) and n1 (v).
        let reads = sends(&h.client(2, 2, get("k"), ConsistencyLevel::Quorum));
        let to_n1 = reads
            .iter()
            .find(|o| matches!(o, Output::Send { to, .. } if *to == NodeId(1)))
            .unwrap();
        // n1 answers with a digest, newer than n3's nothing: n3 fetches the
        // value from n1 before it can repair.
        let digest = h.deliver(2, to_n1);
        assert!(matches!(
            &digest[0],
            Output::Send { envelope, .. } if matches!(envelope.message, Message::DigestReply { .. })
        ));
        let fetch = h.deliver(0, &digest[0]);
        assert!(replies(&fetch).is_empty(), "{fetch:?}");
        let answer = h.deliver(2, &fetch[0]);
        let out = h.deliver(0, &answer[0]);
        // n3 repaired itself in place and may answer: n1 and n3 now hold v.
        assert_eq!(
            replies(&out),
            vec![&ClientResponse::Value(Some(b"v".to_vec()))]
        );
        let repaired = h.node(2).engine().get(b"k").unwrap().unwrap();
        assert_eq!(repaired.value, Some(b"v".to_vec()));
    }

    #[test]
    fn an_unanswered_write_times_out_at_its_deadline() {
        let mut h = Harness::new(3, NodeOptions::default());
        h.client(0, 1, put("k", "v"), ConsistencyLevel::All);
        h.now.mono_nanos += NodeOptions::default().request_timeout_nanos - 1;
        assert!(replies(&h.step(0, Input::Tick)).is_empty());
        h.now.mono_nanos += 1;
        let out = h.step(0, Input::Tick);
        let timeout = ClientResponse::Error(ClientError::Timeout {
            answered: 1,
            required: 3,
        });
        assert_eq!(replies(&out), vec![&timeout]);
        assert_eq!(h.node(0).pending_operations(), 0);
    }

    #[test]
    fn oversized_keys_and_impossible_levels_are_refused_without_side_effects() {
        let mut h = Harness::new(1, NodeOptions::default());
        let key = "k".repeat(NodeOptions::default().engine.key_bytes_max + 1);
        let out = h.client(0, 1, put(&key, "v"), ConsistencyLevel::One);
        assert!(matches!(
            replies(&out)[..],
            [ClientResponse::Error(ClientError::Invalid { .. })]
        ));
        let out = h.client(0, 2, put("k", "v"), ConsistencyLevel::Two);
        assert!(matches!(
            replies(&out)[..],
            [ClientResponse::Error(ClientError::Invalid { .. })]
        ));
        assert_eq!(h.node(0).engine().get(b"k").unwrap(), None);
    }

    #[test]
    fn ticks_flush_and_compact_a_small_memtable_and_nothing_is_lost() {
        let options = NodeOptions {
            engine: EngineOptions {
                memtable_bytes_max: 1024,
                compaction_tables_min: 2,
                ..EngineOptions::default()
            },
            ..NodeOptions::default()
        };
        let mut h = Harness::new(1, options);
        let value = "v".repeat(200);
        for i in 0..40 {
            let key = format!("k{i}");
            let out = h.client(0, i, put(&key, &value), ConsistencyLevel::One);
            assert_eq!(replies(&out), vec![&ClientResponse::Written]);
            h.step(0, Input::Tick);
        }
        let stats = h.node(0).stats().clone();
        assert!(stats.tables_flushed >= 5, "{stats:?}");
        assert!(stats.compactions >= 1, "{stats:?}");
        assert_eq!(stats.background_errors, 0);
        assert!(h.node(0).engine().tables_total() >= 1);
        h.nodes[0] = None;
        let node = h.start(0);
        for i in 0..40 {
            let stored = node.engine().get(format!("k{i}").as_bytes()).unwrap();
            assert_eq!(
                stored.and_then(|v| v.value),
                Some(value.clone().into_bytes())
            );
        }
    }

    #[test]
    fn recorded_versions_name_acknowledged_writes_and_replies() {
        let options = NodeOptions {
            record_versions: true,
            ..NodeOptions::default()
        };
        let mut h = Harness::new(3, options);
        let writes = sends(&h.client(0, 1, put("k", "v"), ConsistencyLevel::Quorum));
        // The coordinator's own replica counts as acknowledged at once.
        let own = h.node(0).take_acknowledged_writes();
        assert_eq!(own.len(), 1);
        let stamp = own[0].timestamp;
        assert_eq!(own[0].key, b"k".to_vec());
        assert_eq!(stamp.node, 1);
        let ack = h.deliver(0, &writes[0]);
        let Output::Send { to, .. } = &writes[0] else {
            panic!("not a send")
        };
        let replica = to.0 as usize - 1;
        assert_eq!(
            h.node(replica).take_acknowledged_writes(),
            vec![AcknowledgedWrite {
                key: b"k".to_vec(),
                timestamp: stamp
            }]
        );
        let done = h.deliver(replica, &ack[0]);
        assert_eq!(replies(&done), vec![&ClientResponse::Written]);
        assert_eq!(
            h.node(0).take_reply_versions(),
            vec![ReplyVersion {
                request: RequestId(1),
                timestamp: Some(stamp)
            }]
        );
        // A read at ONE on the replica returns that version, and an absent
        // key reads with no version.
        h.client(replica, 2, get("k"), ConsistencyLevel::One);
        h.client(replica, 3, get("absent"), ConsistencyLevel::One);
        assert_eq!(
            h.node(replica).take_reply_versions(),
            vec![
                ReplyVersion {
                    request: RequestId(2),
                    timestamp: Some(stamp)
                },
                ReplyVersion {
                    request: RequestId(3),
                    timestamp: None
                }
            ]
        );
        // Without the option nothing is collected.
        let mut quiet = Harness::new(1, NodeOptions::default());
        quiet.client(0, 1, put("k", "v"), ConsistencyLevel::One);
        assert!(quiet.node(0).take_acknowledged_writes().is_empty());
        assert!(quiet.node(0).take_reply_versions().is_empty());
    }

    #[test]
    fn messages_from_strangers_are_ignored() {
        let mut h = Harness::new(1, NodeOptions::default());
        let envelope = Envelope {
            hlc: 1,
            message: Message::Write {
                op: OpId {
                    generation: 1,
                    seq: 0,
                },
                key: b"k".to_vec(),
                version: WireVersion {
                    hlc: 5,
                    node: 9,
                    value: Some(b"x".to_vec()),
                },
            },
        };
        let out = h.step(
            0,
            Input::Message {
                from: NodeId(9),
                envelope,
            },
        );
        assert!(out.is_empty());
        assert_eq!(h.node(0).engine().get(b"k").unwrap(), None);
    }
}
