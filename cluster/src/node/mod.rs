//! `Node`: the sans-IO state machine a driver runs. It is a dispatcher:
//! each protocol lives in its own module ([`crate::coordinator`],
//! [`crate::gossip`], [`crate::failure_detector`], [`crate::hints`],
//! [`crate::anti_entropy`], [`crate::purge`]) and the files of this one
//! carry their decisions out: `client.rs` coordinates client operations,
//! `replica.rs` serves other nodes' reads and writes, `serial.rs` runs
//! per-key Paxos ([`crate::paxos`]) for `SERIAL`, `healing.rs` runs
//! gossip, failure detection, hinted handoff and anti-entropy, `clock.rs`
//! keeps time trustworthy (the clock seeded at start, the clock mark,
//! judging this node's clock against its peers', commit wait), and this
//! file holds the node's state, its inputs and outputs and the flush.
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
//!    Under [`enigma_engine::SyncPolicy::Interval`] the flush does not sync:
//!    ticks do, every interval, and an acknowledged write may be lost if
//!    every replica holding it crashes within the interval.
//! 3. If `flush` returns an error the node is dead: storage can no longer be
//!    trusted to be durable. The driver must drop it (crash it) and may
//!    restart it from disk with [`Node::new`].
//! 4. Send a [`Input::Tick`] regularly; deadlines are checked only then, and
//!    each tick runs gossip, hint replay, anti-entropy and a bounded share of
//!    the engine's background work (memtable flushes, compactions): at most
//!    [`NodeOptions::background_bytes_per_tick`] bytes of tables, each job
//!    whole, in at most [`NodeOptions::background_steps_per_tick`] steps (a
//!    job cut there goes on at the next tick). A background job that poisons the engine (a failed sync) makes
//!    the node fatal like any other: `flush` fails from then on.
//! 5. With [`NodeOptions::record_versions`], a driver that checks the node
//!    (the simulator) may, after each successful `flush`, take the versions
//!    of the client replies it released ([`Node::take_reply_versions`]) and
//!    the writes this node acknowledged as durable
//!    ([`Node::take_acknowledged_writes`]).
//! 6. A driver that stops a node cleanly calls [`Node::announce_shutdown`]
//!    and flushes, so that peers hold it down at once.

mod client;
mod clock;
mod healing;
mod options;
mod quarantine;
mod replica;
mod serial;

use std::collections::BTreeMap;

use enigma_engine::{BuggifyDraws, Disk, Engine, EngineError, SyncPolicy, Timestamp, Versioned};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use thiserror::Error;

use crate::anti_entropy::{AntiEntropy, AntiEntropyStats, FullPassReport};
use crate::ballot_mark;
use crate::clock_offsets::ClockOffsets;
use crate::commit_wait::CommitWaits;
use crate::coordinator::{PendingRead, PendingWrite, RecentReads};
use crate::damage::{self, Damage};
use crate::failure_detector::FailureDetector;
use crate::generation;
use crate::gossip::{Gossip, KnownMember, MemberStatus};
use crate::hints::{HintStats, Hints};
use crate::hlc::HlcClock;
use crate::ids::{NodeId, Now, RequestId};
use crate::message::{ClientRequest, ClientResponse, Envelope, Message, ReplicaFailure};
use crate::no_space;
use crate::ring::{Ring, RingError};

pub use options::{
    ClusterConfig, NodeOptions, CLOCK_OFFSET_MAX_NANOS_DEFAULT, CLOCK_UNCERTAINTY_NANOS_DEFAULT,
    GC_GRACE_NANOS_DEFAULT, GOSSIP_INTERVAL_NANOS_DEFAULT,
};

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
    /// Time passed: check deadlines, run background protocols.
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
        /// The timestamp of the version behind the answer: what a write
        /// wrote, what a read returned (`None`: an error, a read that
        /// found no version, an answer about no one version). A client
        /// session keeps it as its floor ([`crate::SessionFloor`]).
        version: Option<Timestamp>,
    },
}

/// Why a node cannot start or must stop. The variants that wrap another
/// error print it in their own message and do not name it as their source,
/// so that a log printing the whole chain says it once.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum NodeError {
    /// The cluster configuration is unusable.
    #[error("cluster configuration: {0}")]
    Config(RingError),
    /// The node's options are unusable.
    #[error("node options: {reason}")]
    Options { reason: String },
    /// This node is not a member of the configured cluster.
    #[error("{node} is not a member of the configured cluster")]
    NotAMember { node: NodeId },
    /// Storage failed in a way that forbids going on (failed sync, a disk
    /// error at startup).
    #[error("storage: {0}")]
    Storage(EngineError),
    /// Stored data the node must read to start (a log record outside the
    /// torn tail, the manifest, a table's footer or metadata) is damaged.
    /// The node refuses to start rather than run without acknowledged
    /// writes the damage may hold, and leaves every file as it found it
    /// (the engine changes nothing before everything checks); the replica
    /// must be rebuilt from its peers.
    #[error(
        "stored data is damaged: {file} at offset {offset} ({error}); the node \
         will not start on it, since acknowledged writes may lie in the \
         damaged part, and left every file as it found it: rebuild this \
         replica from its peers"
    )]
    Damaged {
        file: String,
        offset: u64,
        error: EngineError,
    },
}

impl NodeError {
    /// `err`, met while starting: [`NodeError::Damaged`] if it names a
    /// damaged file, [`NodeError::Storage`] otherwise.
    fn at_start(err: EngineError) -> Self {
        match err.corruption_site() {
            Some((file, offset)) => NodeError::Damaged {
                file: file.to_owned(),
                offset,
                error: err.clone(),
            },
            None => NodeError::Storage(err),
        }
    }
}

impl From<RingError> for NodeError {
    fn from(e: RingError) -> Self {
        NodeError::Config(e)
    }
}

impl From<EngineError> for NodeError {
    fn from(e: EngineError) -> Self {
        NodeError::Storage(e)
    }
}

/// Counters a driver may report.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeStats {
    /// Client operations answered, by outcome.
    pub client_ok: u64,
    /// Client operations answered with an error.
    pub client_errors: u64,
    /// Client operations refused as unavailable: fewer replicas up, in this
    /// node's judgment, than the level needs.
    pub unavailable: u64,
    /// Repair writes sent or applied by read repair.
    pub read_repairs: u64,
    /// Storage errors met while serving (the operation was not answered).
    pub storage_errors: u64,
    /// Peer messages dropped because they made no sense here.
    pub messages_ignored: u64,
    /// Gossip refused (states of non-members, malformed, about this node).
    pub gossip_refused: u64,
    /// Peer messages refused because they carried a clock reading or a
    /// timestamp further ahead of this node's wall clock than
    /// `clock_offset_max_nanos`, by sender.
    pub clock_refusals: BTreeMap<NodeId, u64>,
    /// Client writes refused because this node's clock was out of bounds
    /// of a majority of its peers (see [`crate::clock_offsets`]).
    pub writes_refused_clock: u64,
    /// Client writes refused because their session had seen a version
    /// further ahead of this node's wall clock than
    /// `clock_offset_max_nanos` ([`crate::SessionFloor::seen`]).
    pub session_floors_refused: u64,
    /// Reads that asked their replicas again because no answer met their
    /// session's floor for the key ([`crate::SessionFloor::key`]).
    pub session_floor_reads_asked_again: u64,
    /// Client answers held by commit wait until the wall clock passed
    /// their version's timestamp by the clock uncertainty.
    pub answers_commit_waited: u64,
    /// Client writes and hints refused for arriving later than
    /// [`NodeOptions::write_lateness_max_nanos`] after their timestamp.
    pub writes_refused_late: u64,
    /// Hints refused: for a key this node does not replicate, or not a
    /// client key.
    pub hints_refused: u64,
    /// Writes left to anti-entropy because the coordinator's memory for
    /// unacknowledged writes ([`NodeOptions::hint_watch_bytes_max`]) was
    /// full.
    pub hint_watches_dropped: u64,
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
    /// Tables the engine quarantined (their stored bytes were damaged).
    pub tables_quarantined: u64,
    /// Times this node dropped what it held of its damaged ranges after a
    /// loss, for its peers to refill them.
    pub damaged_data_drops: u64,
    /// Reads refused because their range lost data to a quarantined table
    /// and was not yet repaired.
    pub reads_refused_damaged: u64,
    /// Paxos prepares and proposals this node's acceptor sat out because
    /// the key's range lost data: at or below the range's floor, or a
    /// promise for a key it holds no record of above the floor.
    pub paxos_sat_out_after_loss: u64,
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
    /// Whether the version is a tombstone (which compaction may later purge
    /// once its range is repaired: then the key reads as absent).
    pub tombstone: bool,
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

/// How this node sees one member, for `enigma status`.
#[derive(Debug, Clone, PartialEq)]
pub struct MemberView {
    /// The member.
    pub node: NodeId,
    /// Whether this node holds it up (always true for itself).
    pub up: bool,
    /// The failure detector's phi (0 for itself).
    pub phi: f64,
    /// What gossip last said of it, if anything was heard.
    pub gossip: Option<KnownMember>,
    /// Hints this node holds for it, and their bytes.
    pub hints_held: (usize, u64),
    /// Its wall clock minus this node's, from its recent gossip
    /// (nanoseconds; `None`: not heard, or itself).
    pub clock_offset_nanos: Option<i64>,
    /// Its messages refused for a clock reading too far ahead.
    pub clock_refusals: u64,
}

impl MemberView {
    /// The member's status as gossip reports it (`unknown` before any news).
    pub fn status(&self) -> &'static str {
        self.gossip
            .as_ref()
            .map_or("unknown", |g| MemberStatus::name(g.state.status))
    }
}

/// What [`NodeOptions::record_versions`] collects: pending until the next
/// flush, then released to the driver.
#[derive(Debug, Default)]
struct VersionLog {
    acknowledged: Vec<AcknowledgedWrite>,
    replies: Vec<ReplyVersion>,
    released_acknowledged: Vec<AcknowledgedWrite>,
    released_replies: Vec<ReplyVersion>,
    /// Writes applied in a batch that was never acknowledged (its sync
    /// failed, or it ran out of space): they may reach the disk anyway.
    unacknowledged: Vec<AcknowledgedWrite>,
}

/// A client operation in flight at this coordinator.
#[derive(Debug)]
enum Pending {
    Write(PendingWrite),
    Read(PendingRead),
}

/// A write whose replicas have not all acknowledged: at its deadline, the
/// silent ones get a hint.
#[derive(Debug)]
struct HintWatch {
    deadline_mono_nanos: u64,
    key: Vec<u8>,
    version: Versioned,
    /// Replicas (other than this node) that have not acknowledged.
    silent: Vec<NodeId>,
    /// Bytes counted against [`NodeOptions::hint_watch_bytes_max`].
    bytes: u64,
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
    /// The node's random choices, seeded by [`NodeOptions::seed`].
    rng: ChaCha8Rng,
    /// The time of the last step: the failure detector's and gossip's clock
    /// between steps (for [`Self::members`]).
    last_now: Option<Now>,
    /// What this node knows of every member.
    gossip: Gossip,
    /// When the next gossip round is due (monotonic).
    next_gossip_mono_nanos: u64,
    /// This node's judgment of which peers are up.
    detector: FailureDetector,
    /// Hints held for other members.
    hints: Hints,
    /// Writes waiting for replicas to acknowledge, to hint the silent ones
    /// at the deadline; by operation sequence number.
    watches: BTreeMap<u64, HintWatch>,
    /// Bytes held in `watches`.
    watch_bytes: u64,
    /// Merkle-tree repair of every range this node replicates.
    anti_entropy: AntiEntropy,
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
    /// After a background job failed: no new try before this (monotonic).
    background_retry_mono_nanos: u64,
    /// Peers' clock offsets, from their gossip.
    clock_offsets: ClockOffsets,
    /// Answers held by commit wait.
    commit_waits: CommitWaits,
    /// `SERIAL` operations this node coordinates, by sequence number.
    serial: BTreeMap<u64, serial::SerialPending>,
    /// The HLC part of the last ballot this node drew.
    serial_last_ballot_hlc: u64,
    /// Acceptor states kept only in memory, by key: used solely by the
    /// planted [`NodeOptions::bug_paxos_promise_before_durable`].
    paxos_unwritten: BTreeMap<Vec<u8>, crate::paxos::AcceptorState>,
    /// Plain reads (`QUORUM`, `ALL`) that met an unfinished Paxos proposal,
    /// to run again as `SERIAL` reads at the end of the step: request,
    /// key, deadline (monotonic).
    reads_through_paxos: Vec<(RequestId, Vec<u8>, u64)>,
    /// The version [`Self::reply_version`] noted for the reply about to be
    /// queued, which carries it.
    next_reply_version: Option<(RequestId, Option<Timestamp>)>,
    /// Ranges that lost data to a quarantined table, until repaired
    /// ([`crate::damage`]); kept durably in its own file.
    damage: Damage,
    /// At or above every ballot this node's acceptor promised or accepted;
    /// kept durably in its own file ([`crate::ballot_mark`]).
    ballot_mark: u64,
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
        options
            .validate()
            .map_err(|reason| NodeError::Options { reason })?;
        // Everything is read and checked before any file changes: a
        // refused start leaves the disk as it found it.
        let last_generation = generation::last(&disk).map_err(NodeError::at_start)?;
        let mut damage =
            damage::load(&disk, ring.repair_ranges().len()).map_err(NodeError::at_start)?;
        let ballot_mark = ballot_mark::load(&disk).map_err(NodeError::at_start)?;
        let recovery =
            Engine::recover(disk, options.engine.clone()).map_err(NodeError::at_start)?;
        let generation = generation::store_next(recovery.disk(), last_generation)?;
        let engine = recovery.open().map_err(NodeError::at_start)?;
        // A stream per node and boot: a restarted node does not redraw
        // what it drew before.
        let buggify =
            BuggifyDraws::new(&options.engine.buggify, u64::from(id.0) << 32 | generation);
        let peers: Vec<NodeId> = ring.nodes().iter().copied().filter(|&n| n != id).collect();
        let mut hlc = clock::seeded_hlc(&engine, &options);
        // A clock mark lost with a quarantined table: the damage marks are
        // readings of this clock too. Above every loss ever recorded,
        // repaired or not: the versions the node dropped after it may have
        // carried its highest stamps, and some reached no peer to refill.
        hlc.observe(damage.clock_floor());
        let clock_offsets = ClockOffsets::new(peers.len(), options.clock_offset_max_nanos);
        let anti_entropy = AntiEntropy::new(
            id,
            generation,
            ring.repair_ranges(),
            options.anti_entropy.clone(),
            0,
        );
        if !engine.quarantined_at_open().is_empty() && !damage.any() {
            // Cannot follow from the node's own order (the record first),
            // but a lost record must not let the loss pass unnoticed.
            damage = Damage::all(ring.repair_ranges().len());
        }
        damage.keep_only(anti_entropy.ranges_mine());
        damage.resolve_floors(ballot_mark);
        let mut node = Self {
            id,
            generation,
            hlc,
            engine,
            next_seq: 0,
            pending: BTreeMap::new(),
            held: Vec::new(),
            fatal: None,
            stats: NodeStats::default(),
            write_stamps: BTreeMap::new(),
            versions: VersionLog::default(),
            background_idle_at_tables: None,
            buggify,
            rng: ChaCha8Rng::seed_from_u64(options.seed ^ generation),
            last_now: None,
            gossip: Gossip::new(id, generation, ring.nodes(), 0),
            next_gossip_mono_nanos: 0,
            detector: FailureDetector::new(options.failure_detector(), peers, 0),
            hints: Hints::new(options.hints.clone()),
            watches: BTreeMap::new(),
            watch_bytes: 0,
            anti_entropy,
            wrote_since_flush: false,
            no_space_in_batch: false,
            recent_reads: RecentReads::default(),
            local_counted_unsynced: Vec::new(),
            background_retry_mono_nanos: 0,
            clock_offsets,
            commit_waits: CommitWaits::default(),
            serial: BTreeMap::new(),
            serial_last_ballot_hlc: 0,
            paxos_unwritten: BTreeMap::new(),
            reads_through_paxos: Vec::new(),
            next_reply_version: None,
            damage,
            ballot_mark,
            ring,
            options,
        };
        match node.recover_hints() {
            // A damaged table under the hints: the engine noted it, and the
            // first tick quarantines it; the hints it held are lost (anti-
            // entropy repairs what they were for).
            Err(e) if e.corruption_site().is_some() => {
                let _ = node.storage_error(e);
            }
            other => other?,
        }
        node.install_purge_gate();
        Ok(node)
    }

    /// Takes in one input at time `now`. Outputs wait for [`Self::flush`].
    pub fn step(&mut self, now: Now, input: Input) {
        if self.fatal.is_some() {
            return;
        }
        self.observe_time(now);
        match input {
            Input::Client { request, body } => self.on_client(now, request, body),
            Input::Message { from, envelope } => self.on_envelope(now, from, envelope),
            Input::Tick => self.on_tick(now),
        }
        self.start_reads_through_paxos(now);
        self.release_commit_waits(now);
    }

    /// The first step starts the clocks of gossip and failure detection:
    /// every peer gets the benefit of the doubt from this moment.
    fn observe_time(&mut self, now: Now) {
        if self.last_now.is_none() {
            let peers: Vec<NodeId> = self.peers().collect();
            self.detector =
                FailureDetector::new(self.options.failure_detector(), peers, now.mono_nanos);
            self.gossip = Gossip::new(self.id, self.generation, self.ring.nodes(), now.wall_nanos);
            self.anti_entropy = AntiEntropy::new(
                self.id,
                self.generation,
                self.ring.repair_ranges(),
                self.options.anti_entropy.clone(),
                now.mono_nanos,
            );
            self.next_gossip_mono_nanos = now.mono_nanos;
            self.resolve_damage_marks(now);
        }
        self.last_now = Some(now);
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
        let interval = matches!(
            self.engine.options().sync_policy,
            SyncPolicy::Interval { .. }
        );
        let wrote = std::mem::take(&mut self.wrote_since_flush);
        let synced = if interval { Ok(()) } else { self.engine.sync() };
        if let Err(e) = synced {
            if let EngineError::NoSpace { .. } = e {
                // Not fatal: the writes wait in the engine for space.
                self.note_no_space();
                self.no_space_in_batch = false;
                let mut held = std::mem::take(&mut self.held);
                if !wrote {
                    // Except this node's Paxos proposals: they may rest on
                    // its own acceptor's promise from an earlier batch
                    // whose write still waits.
                    held.retain(|output| !no_space::rests_on_local_paxos_answer(output));
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
                enigma_engine::marks::hit(enigma_engine::Mark::NoSpaceBatchFailed);
                let log = &mut self.versions;
                log.unacknowledged.append(&mut log.acknowledged);
                log.replies.clear();
                let failure = ReplicaFailure::from_engine(&e);
                let mut outputs = no_space::release_without_durability(self.id, held, &failure);
                self.retract_local_counts(&failure);
                outputs.append(&mut self.held);
                return Ok(outputs);
            }
            enigma_engine::marks::hit(enigma_engine::Mark::NodeSyncFailed);
            self.fatal = Some(e.clone());
            if self.options.bug_release_outputs_of_a_failed_sync {
                let log = &mut self.versions;
                log.released_acknowledged.append(&mut log.acknowledged);
                log.released_replies.append(&mut log.replies);
                return Ok(std::mem::take(&mut self.held));
            }
            self.held.clear();
            let log = &mut self.versions;
            log.unacknowledged.append(&mut log.acknowledged);
            log.replies.clear();
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

    /// The writes this node applied but never acknowledged, since the last
    /// call (empty unless [`NodeOptions::record_versions`]): those of
    /// batches whose sync failed or ran out of space, and those of the
    /// batch in progress. Any of them may be on the disk all the same, so
    /// a checking driver calls this before it drops a crashed node.
    pub fn take_unacknowledged_writes(&mut self) -> Vec<AcknowledgedWrite> {
        let log = &mut self.versions;
        let mut writes = std::mem::take(&mut log.unacknowledged);
        writes.append(&mut log.acknowledged);
        writes
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
        self.pending.len() + self.serial.len()
    }

    /// Counters.
    pub fn stats(&self) -> &NodeStats {
        &self.stats
    }

    /// Hint counters per target that ever had a hint.
    pub fn hint_stats(&self) -> Vec<(NodeId, HintStats)> {
        self.hints.stats()
    }

    /// Hints held for all targets.
    pub fn hints_held(&self) -> usize {
        self.hints.held_total()
    }

    /// Anti-entropy counters.
    pub fn anti_entropy_stats(&self) -> &AntiEntropyStats {
        self.anti_entropy.stats()
    }

    /// Wall time (nanoseconds) of the least recent completed repair among
    /// this node's ranges, 0 if one has not been repaired since it started.
    pub fn oldest_repair_wall_nanos(&self) -> u64 {
        self.anti_entropy.oldest_repair_wall_nanos()
    }

    /// Whether this node, as of its last step, holds `peer` up.
    pub fn believes_up(&self, peer: NodeId) -> bool {
        peer == self.id
            || self
                .last_now
                .is_none_or(|now| self.detector.is_up(peer, now.mono_nanos))
    }

    /// How this node sees every member, at `now` (its failure detector's
    /// phi grows with time even without steps).
    pub fn members(&self, now: Now) -> Vec<MemberView> {
        self.ring
            .nodes()
            .iter()
            .map(|&node| {
                let me = node == self.id;
                let phi = if me {
                    0.0
                } else {
                    self.detector.phi(node, now.mono_nanos)
                };
                MemberView {
                    node,
                    up: me || self.detector.is_up(node, now.mono_nanos),
                    phi,
                    gossip: self.gossip.member(node).cloned(),
                    hints_held: self.hints.held(node),
                    clock_offset_nanos: self.clock_offsets.offset(node),
                    clock_refusals: self.stats.clock_refusals.get(&node).copied().unwrap_or(0),
                }
            })
            .collect()
    }

    /// Tells every peer that this node is stopping, so they hold it down at
    /// once; the messages go out with the next flush.
    pub fn announce_shutdown(&mut self, now: Now) {
        self.observe_time(now);
        let readings = self.self_readings(now);
        let states = self.gossip.announce_shutdown(readings);
        let peers: Vec<NodeId> = self.peers().collect();
        for peer in peers {
            self.send(
                peer,
                Message::GossipSyn {
                    states: states.clone(),
                },
            );
        }
    }

    /// Every member but this node.
    fn peers(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.ring.nodes().iter().copied().filter(|&n| n != self.id)
    }

    /// Notes, for a checking driver, that this node holds `timestamp` of
    /// `key` durably once the next flush succeeds, and says so.
    fn acknowledged(&mut self, key: &[u8], timestamp: Timestamp, tombstone: bool) {
        if self.options.record_versions {
            self.versions.acknowledged.push(AcknowledgedWrite {
                key: key.to_vec(),
                timestamp,
                tombstone,
            });
        }
    }

    /// Notes the version behind the client reply to `request` that
    /// follows at once: [`Self::reply`] attaches it to the reply, for the
    /// client's session, and a checking driver gets it too.
    fn reply_version(&mut self, request: RequestId, timestamp: Option<Timestamp>) {
        self.next_reply_version = Some((request, timestamp));
        if self.options.record_versions {
            self.versions
                .replies
                .push(ReplyVersion { request, timestamp });
        }
    }

    /// Applies a write locally; `Ok` if it is (or will be, at the next
    /// flush) durable here, so an acknowledgement may be counted or sent.
    /// Applies a version another node sent (a replica write, a hint, a
    /// streamed entry) and, once written, notes it as acknowledged.
    fn write_and_acknowledge(
        &mut self,
        key: &[u8],
        version: crate::message::WireVersion,
    ) -> Result<(), ReplicaFailure> {
        let timestamp = Timestamp {
            hlc: version.hlc,
            node: version.node,
        };
        let tombstone = version.value.is_none();
        self.local_write(key, version.into())?;
        self.acknowledged(key, timestamp, tombstone);
        Ok(())
    }

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
        if let Some(refusal) = self.damage_refusal(key) {
            return Err(refusal);
        }
        let failure = match self.engine.get(key) {
            Ok(version) => return Ok(version),
            Err(e) => self.storage_error(e),
        };
        if self.options.bug_read_error_answers_absent
            && matches!(
                failure,
                ReplicaFailure::Corruption { .. } | ReplicaFailure::Storage { .. }
            )
        {
            // The planted bug: a read that failed passes for a key never
            // written.
            return Ok(None);
        }
        Err(failure)
    }

    /// Counts a storage failure met while serving and says what it was.
    fn storage_error(&mut self, error: EngineError) -> ReplicaFailure {
        let failure = ReplicaFailure::from_engine(&error);
        match error {
            EngineError::NoSpace { .. } => self.note_no_space(),
            EngineError::Poisoned { .. } => self.fatal = Some(error),
            _ => {
                enigma_engine::marks::hit(enigma_engine::Mark::StorageErrorServed);
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
            enigma_engine::marks::hit(enigma_engine::Mark::DiskFull);
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
        let version = match self.next_reply_version.take() {
            Some((noted, version)) if noted == request => version,
            _ => None,
        };
        self.held.push(Output::Reply {
            request,
            response,
            version,
        });
    }

    /// Answers an operator's full repair pass.
    fn reply_repaired(&mut self, request: RequestId, report: FullPassReport) {
        self.reply(request, ClientResponse::Repaired(report));
    }
}

#[cfg(test)]
mod tests;
