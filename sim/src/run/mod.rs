//! One simulation run: a cluster, its clients and a nemesis on one
//! virtual-time event queue, then the checks.
//!
//! A run has three phases. In the *safety* phase clients issue operations
//! while the nemesis crashes, restarts and pauses nodes, partitions and
//! clogs the network, moves clocks and injects disk faults, and the network
//! loses and duplicates messages. In the *heal* phase the faults stop
//! (every node restarted, every link up, no loss) and the cluster must
//! converge on its own, through hinted handoff and anti-entropy, within
//! [`CONVERGENCE_BOUND_NANOS`] of virtual time: no client reads anything to
//! repair it. In the *liveness* phase the clients go again and must get
//! operations through; then the run settles. Then the history gets every
//! check its consistency levels promise (`enigma_checker::promises`:
//! linearizability where promised, lost writes, session guarantees,
//! convergence of the replicas), the converged state is held to every
//! acknowledged write and delete (nothing lost, nothing deleted comes
//! back), and each replica's storage is checked against what it
//! acknowledged (durability: after every restart and when the faults
//! stop). Everything random comes from named streams of the seed, and
//! every delivered event is folded into the trace digest.
//!
//! # Files
//!
//! - this one: the run's types, its events, the event loop, process pauses;
//! - `commit.rs`: group commit, sync latency and the crash windows they open;
//! - `nodes.rs`: starting and crashing nodes, messages between them;
//! - `links.rs`: peer byte streams cut into reads through the frame reader;
//! - `clients.rs`: the clients' operations, retries, the history;
//! - `nemesis.rs`: the swarm draw and the nemesis driver;
//! - `damage.rs`: bit rot and misdirected writes in stored tables, one
//!   node at a time, and rebuilding a node whose start they refuse;
//! - `heal.rs`: the heal phase: waiting for the cluster to converge;
//! - `liveness.rs`: the liveness phase;
//! - `checks.rs`: durability, background failures, the history's promises;
//! - `scripted.rs`: runs that record or replay a schedule of faults and
//!   operations ([`crate::schedule`]).

mod checks;
mod clients;
mod commit;
mod counter;
mod damage;
mod heal;
mod links;
mod liveness;
mod nemesis;
mod nodes;
mod paxos_cost;
mod queue;
mod scripted;

use commit::{Batch, CrashPoint, SyncLatency};
use links::{LinkStream, ReadCuts};
use liveness::Liveness;
use nemesis::{draw_swarm, Swarm, Swizzle, CLOCK_FAULT_OFFSET_NANOS_MAX};
pub use paxos_cost::median_and_mean;
use paxos_cost::PaxosCost;
use queue::EventQueue;
pub use scripted::{check_schedule, run_schedule_recorded, run_scheduled, scheduled_config};
use scripted::{ScheduleWriter, Script};

use std::collections::{BTreeMap, BTreeSet};

use enigma_checker::format::enigma::{
    leveled_events_of_history, run_line, write_events, Level, RunLine,
};
use enigma_checker::{
    Call, CounterCall, CounterHistory, History, OpId, PromiseReport, RunFacts, Version,
};
use enigma_cluster::{
    AntiEntropyOptions, ClientRequest, ClientResponse, ClusterConfig, ConsistencyLevel,
    HintOptions, Input, Node, NodeId, NodeOptions, RequestId, Ring, SessionFloors,
};
use enigma_engine::{marks, EngineOptions, MarkCounts, Timestamp};
use enigma_workloads::{ClientResult, Nemesis, RegisterOptions, RegisterWorkload};
use rand::Rng;
use rand_chacha::ChaCha8Rng;

use crate::clock::SimClock;
use crate::config::SimConfig;
use crate::disk::{SimDisk, SimDiskFaults};
use crate::net::SimNet;
use crate::recording::Recording;
use crate::rng::stream;
use crate::trace::Trace;

/// How often each node is ticked.
const TICK_INTERVAL_NANOS: u64 = 10_000_000;
/// Latency between a client and the node it talks to (clients sit next to
/// nodes: partitions and loss do not touch these links).
const CLIENT_LATENCY_MIN_NANOS: u64 = 50_000;
/// See [`CLIENT_LATENCY_MIN_NANOS`].
const CLIENT_LATENCY_MAX_NANOS: u64 = 500_000;
/// Longest pause between a client's operations.
const CLIENT_THINK_MAX_NANOS: u64 = 20_000_000;
/// How long a client waits for an answer before it gives up (longer than
/// the coordinator's own deadline, so coordinator timeouts are seen).
const CLIENT_TIMEOUT_NANOS: u64 = 3_000_000_000;
/// Coordinator deadline inside the simulation.
const REQUEST_TIMEOUT_NANOS: u64 = 1_000_000_000;
/// Pause between nemesis actions.
const NEMESIS_INTERVAL_MIN_NANOS: u64 = 50_000_000;
/// See [`NEMESIS_INTERVAL_MIN_NANOS`].
const NEMESIS_INTERVAL_MAX_NANOS: u64 = 800_000_000;
/// How often the heal phase looks whether the replicas have converged.
const CONVERGENCE_POLL_NANOS: u64 = 100_000_000;
/// Virtual time after the faults stop within which every replica of every
/// key must hold the same version, by hints and anti-entropy alone; past
/// it the run fails with a liveness violation. Detection (about 2 s at
/// the simulation's gossip pace), one anti-entropy session per range and
/// resends of what the last faults lost fit well inside.
pub const CONVERGENCE_BOUND_NANOS: u64 = 60_000_000_000;
/// How long the replicas must stay converged, with no hint left, before
/// the run ends: messages still in flight have landed by then.
const SETTLE_NANOS: u64 = 500_000_000;
/// Gossip pace in the simulation: a silent peer is convicted after about
/// 2 s (18 intervals at phi 8), well within a run.
const SIM_GOSSIP_INTERVAL_NANOS: u64 = 100_000_000;
/// Hints older than this are dropped; with the clock offset bound it is
/// also how late a write may arrive, and so how long after a tombstone a
/// repair must start before the tombstone may be purged.
const SIM_HINT_WINDOW_NANOS: u64 = 4_000_000_000;
/// Tombstones younger than this are never purged: short, so that runs
/// really purge them (once their range is repaired).
const SIM_GC_GRACE_NANOS: u64 = 1_000_000_000;
/// Pause between continuous anti-entropy sessions.
const SIM_ANTI_ENTROPY_INTERVAL_NANOS: u64 = 300_000_000;
/// Virtual time after which a run is declared stuck.
const RUN_VIRTUAL_NANOS_MAX: u64 = 3_600_000_000_000;
/// WAL segment size in the simulation: small, so rotation is exercised.
const SIM_WAL_SEGMENT_BYTES: u64 = 16 * 1024;
/// Tables of a size tier that trigger a compaction: the engine's smallest,
/// so that the few flushes of a run lead to compactions.
const SIM_COMPACTION_TABLES_MIN: usize = 2;
/// The block cache: none, so that every table read goes to the disk, where
/// bad reads and latent sector errors meet the engine's checksums.
const SIM_BLOCK_CACHE_BYTES: u64 = 0;
/// Bytes of tables a node's background work may write per tick.
const SIM_BACKGROUND_BYTES_PER_TICK: u64 = 64 * 1024;
/// Anti-entropy's scan rate in runs: 64 KiB per 10 ms tick, as before the
/// budget became a rate.
const SIM_ANTI_ENTROPY_SCAN_BYTES_PER_SEC: u64 = 64 * 1024 * 100;
/// Percentage of a `SERIAL` run's value writes that are compare-and-sets.
const SERIAL_CAS_PERCENT: u32 = 50;

/// What went wrong in a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// The property: a check of the history (`linearizability`,
    /// `lost-write`, `read-your-writes`, `monotonic-reads`,
    /// `convergence`), `durability` (a replica lost a write it
    /// acknowledged), `clock` (a restarted node stamped a write below a
    /// version it held before), `storage` (a background flush or compaction failed),
    /// `liveness`, `recovery` or `integrity`.
    pub property: &'static str,
    /// A readable account: the key, the operations, the replicas.
    pub details: String,
}

/// Counts describing a run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunStats {
    /// Client operations that completed `ok`.
    pub ops_ok: usize,
    /// Client operations that completed `fail`.
    pub ops_fail: usize,
    /// Client operations that completed `info` or never completed.
    pub ops_info: usize,
    /// Events delivered.
    pub events: u64,
    /// Virtual time at the end.
    pub virtual_nanos: u64,
    /// Node crashes.
    pub crashes: u64,
    /// Partitions started.
    pub partitions: u64,
    /// Messages sent between nodes.
    pub messages: u64,
    /// Memtables flushed as tables by the nodes' background work.
    pub tables_flushed: u64,
    /// Compactions run by the nodes' background work.
    pub compactions: u64,
    /// Acknowledged replica writes the durability check holds nodes to.
    pub writes_acknowledged: u64,
    /// Client operations sent again to another coordinator.
    pub client_retries: u64,
    /// Partitions with a bridge node.
    pub bridge_partitions: u64,
    /// Partitions that cut links one way only.
    pub asymmetric_partitions: u64,
    /// Process pauses.
    pub pauses: u64,
    /// Swizzle-cloggings started.
    pub swizzles: u64,
    /// Wall clock jumps (while running or across a restart).
    pub clock_jumps: u64,
    /// Windows of bad reads (flipped bits, failed reads, latent sectors).
    pub read_fault_windows: u64,
    /// Bits flipped in stored table bytes (bit rot).
    pub stored_bit_flips: u64,
    /// Misdirected writes into stored table bytes.
    pub misdirected_writes: u64,
    /// Bits flipped in a sealed log segment of a node while it was down
    /// (its start reads them).
    pub sealed_segment_flips: u64,
    /// Misdirected writes into a sealed log segment of a node while it was
    /// down.
    pub sealed_segment_misdirected_writes: u64,
    /// Tables the nodes quarantined.
    pub tables_quarantined: u64,
    /// Keys whose newest acknowledged write a replica still held at the
    /// end as an accepted, uncommitted Paxos proposal (its commits lost
    /// with its proposer): the next read through Paxos finishes it.
    pub chosen_uncommitted_at_end: u64,
    /// Nodes rebuilt from their peers (their data wiped) after damage a
    /// start must read refused their start.
    pub nodes_rebuilt: u64,
    /// Paxos prepares and proposals acceptors sat out because their key's
    /// range lost data (below its floor, or a promise withheld).
    pub paxos_sat_out_after_loss: u64,
    /// Storage errors the nodes met while serving (bad reads detected).
    pub storage_errors: u64,
    /// Syncs made to fail.
    pub sync_failures: u64,
    /// Windows in which a node's disk was full.
    pub disk_full_windows: u64,
    /// Writes that reached fewer replicas than their level needs and timed
    /// out (`info`): later reads meet those replicas.
    pub partial_writes: u64,
    /// Times a buggify site fired in a node or its engine.
    pub buggify_fired: u64,
    /// Crashes that landed after a batch was applied, before its sync.
    pub crashes_before_sync: u64,
    /// Crashes that landed while a batch's sync was in flight.
    pub crashes_during_sync: u64,
    /// Crashes that landed between two steps of a flush or compaction
    /// (table written, manifest edit committed, covered files deleted).
    pub crashes_in_background_job: u64,
    /// Operations coordinators refused as unavailable (too few replicas up
    /// in their failure detector's judgment).
    pub unavailable: u64,
    /// Hints stored by coordinators.
    pub hints_stored: u64,
    /// Hints delivered and acknowledged.
    pub hints_replayed: u64,
    /// Anti-entropy sessions completed.
    pub repair_sessions: u64,
    /// Entries anti-entropy streamed.
    pub repair_keys_streamed: u64,
    /// Restarts of nodes in a crash loop (each followed, but the last, by
    /// another crash soon after).
    pub crash_loop_restarts: u64,
    /// Messages delivered after the sender or the receiver restarted
    /// (acknowledgements and replies meant for an earlier incarnation).
    pub stale_messages: u64,
    /// Reads of a peer stream that ended inside a frame (a partial header
    /// or payload, completed by a later read).
    pub reads_ending_inside_a_frame: u64,
    /// Reads of a peer stream that held several whole frames.
    pub reads_of_several_frames: u64,
    /// Virtual nanoseconds from the end of the faults until every replica
    /// held the same versions (`None`: it did not, or the run stopped
    /// first).
    pub converge_nanos: Option<u64>,
    /// `SERIAL` compare-and-sets that committed uncontended (one prepare
    /// ballot, no refusal): how many caused each number of Paxos messages.
    pub paxos_cas_messages: BTreeMap<u32, u64>,
    /// The same operations: how many took each number of round trips.
    pub paxos_cas_round_trips: BTreeMap<u32, u64>,
}

/// The outcome of one run.
#[derive(Debug, Clone)]
pub struct RunReport {
    /// The configuration that ran.
    pub config: SimConfig,
    /// The facts that decided what its levels promise.
    pub facts: RunFacts,
    /// The trace digest: equal for equal runs.
    pub digest: u64,
    /// Which fault families this seed switched on.
    pub swarm: String,
    /// Properties violated; empty when the run passed.
    pub violations: Vec<Violation>,
    /// Counts.
    pub stats: RunStats,
    /// The timeline, when `config.trace` asked for it.
    pub timeline: Option<Vec<String>>,
    /// The recorded history (empty for the increment workload).
    pub history: History,
    /// The increment workload's history (empty for registers).
    pub counter: CounterHistory,
    /// The version each completed operation wrote or read, as its
    /// coordinator reported it.
    pub versions: BTreeMap<OpId, Version>,
    /// The history checks, as the run's levels and facts called for them.
    pub promises: PromiseReport,
    /// How often each coverage mark was hit while the run went (before
    /// its final checks): [`crate::marks`].
    pub marks: MarkCounts,
}

impl RunReport {
    /// Whether every check passed.
    pub fn passed(&self) -> bool {
        self.violations.is_empty()
    }

    /// The client history in EnigmaDB's JSON Lines format (docs/FORMAT.md):
    /// a run line with the run's facts and the command that replays it,
    /// then each event with the consistency level it was issued at and each
    /// completion with the version it wrote or read, for `enigma check`.
    pub fn history_json_lines(&self) -> String {
        let levels = levels_of(&self.config, &self.history);
        let events = leveled_events_of_history(&self.history, &levels, &self.versions);
        let run = RunLine {
            facts: self.facts,
            source: Some(self.config.repro_command()),
        };
        format!("{}\n{}", run_line(&run), write_events(&events))
    }
}

/// Added to twice the bound on clock offsets to give the clock
/// uncertainty: the hybrid clock's resolution (a microsecond) and more.
pub const CLOCK_UNCERTAINTY_MARGIN_NANOS: u64 = 1_000_000;

/// The bound on every wall clock's distance from true time in a run of
/// `config`, offset and drift together.
pub fn clock_offset_nanos_max(config: &SimConfig) -> i64 {
    if config.clock_skew_max_ms > 0 {
        i64::try_from(config.clock_skew_max_ms.saturating_mul(1_000_000)).unwrap_or(i64::MAX)
    } else {
        CLOCK_FAULT_OFFSET_NANOS_MAX
    }
}

/// The largest difference between two nodes' clocks in a run of `config`
/// (each is within [`clock_offset_nanos_max`] of true time), plus a margin:
/// what commit wait assumes, and how far apart real time must put two
/// writes for their timestamps to be ordered the same way.
pub fn clock_uncertainty_nanos(config: &SimConfig) -> u64 {
    clock_offset_nanos_max(config).unsigned_abs() * 2 + CLOCK_UNCERTAINTY_MARGIN_NANOS
}

/// The facts of a run that decide what its levels promise: `clock_skew`
/// when clocks disagree (an offset, drift or jumps), then with the clock
/// uncertainty and whether commit wait covered it. Clients carry their
/// session's floors ([`enigma_cluster::SessionFloors`]) at every level, so
/// the checker holds every session to read-your-writes, monotonic reads
/// and causal writes.
pub fn facts_of(config: &SimConfig, clock_skew: bool) -> RunFacts {
    RunFacts {
        clock_skew: Some(clock_skew),
        replication_factor: Some(config.replication_factor),
        session_timestamps: Some(true),
        clock_uncertainty_nanos: clock_skew.then(|| clock_uncertainty_nanos(config)),
        commit_wait: Some(config.commit_wait),
    }
}

/// The level of every operation ([`op_level`]).
fn levels_of(config: &SimConfig, history: &History) -> BTreeMap<OpId, Level> {
    history
        .operations()
        .iter()
        .map(|op| (op.id, checker_level(op_level(config, op.process, &op.call))))
        .collect()
}

/// The level client `client` issues `call` at in a run of `config`: the
/// run's level, except that in a `SERIAL` run the odd-numbered clients read
/// at `QUORUM`, so that what a `QUORUM` read promises after a `SERIAL`
/// write (it sees it) is checked with the rest. Chosen by client, not
/// drawn, so a shrunk schedule keeps each operation's level and runs at
/// other levels draw as before.
fn op_level(config: &SimConfig, client: u64, call: &Call) -> ConsistencyLevel {
    if config.level == ConsistencyLevel::Serial && *call == Call::Read && client % 2 == 1 {
        ConsistencyLevel::Quorum
    } else {
        config.level
    }
}

fn checker_level(level: ConsistencyLevel) -> Level {
    match level {
        ConsistencyLevel::One => Level::One,
        ConsistencyLevel::Two => Level::Two,
        ConsistencyLevel::Quorum => Level::Quorum,
        ConsistencyLevel::All => Level::All,
        ConsistencyLevel::Serial => Level::Serial,
    }
}

/// The version of a reply, as the checker reads it. A read that found
/// nothing on the replicas it asked has none: the key was never written,
/// or its newest version is a tombstone that compaction purged once its
/// range was repaired. The checker then judges that read by its value (nil,
/// and when the key's deletes happened) rather than by a version.
fn version_of(timestamp: Timestamp) -> Version {
    Version {
        timestamp: timestamp.hlc,
        writer: u64::from(timestamp.node),
    }
}

/// Runs one simulation.
///
/// # Panics
/// If `config` does not validate (callers validate user input first).
pub fn run(config: &SimConfig) -> RunReport {
    if let Err(e) = config.validate() {
        panic!("invalid simulation config: {e}");
    }
    marks::reset();
    let mut sim = Simulation::new(config.clone());
    sim.run_to_end();
    let marks = marks::take();
    RunReport {
        marks,
        ..sim.finish()
    }
}

/// Runs one simulation and records what its picture needs
/// ([`crate::html`]); the run is the same as [`run`]'s, digest included.
///
/// # Panics
/// If `config` does not validate.
pub fn run_recorded(config: &SimConfig) -> (RunReport, Recording) {
    if let Err(e) = config.validate() {
        panic!("invalid simulation config: {e}");
    }
    marks::reset();
    let mut sim = Simulation::new(config.clone());
    let mut recording = Recording::new();
    recording.clocks = sim
        .slots
        .iter()
        .map(|s| (s.clock.offset_nanos, s.clock.drift_ppm))
        .collect();
    recording.phase(0, Phase::Safety.name());
    sim.recording = Some(Box::new(recording));
    sim.run_to_end();
    let marks = marks::take();
    let recording = sim.recording.take().map(|r| *r).unwrap_or_default();
    (
        RunReport {
            marks,
            ..sim.finish()
        },
        recording,
    )
}

/// An event on the queue.
#[derive(Debug)]
enum Event {
    /// Tick node `node`.
    Tick { node: usize },
    /// A frame from `from` arrives at `to`'s end of their link.
    Deliver {
        from: usize,
        to: usize,
        frame: Vec<u8>,
        /// The sender's and the receiver's incarnations when it was sent.
        incarnations: (u64, u64),
    },
    /// `to` reads the rest of what arrived from `from` on connection
    /// `connection` of their link.
    LinkRead {
        from: usize,
        to: usize,
        connection: u64,
    },
    /// A client request arrives at `node`.
    Request {
        node: usize,
        request: RequestId,
        /// Boxed, as is the reply's answer: the queue moves events as it
        /// rebalances, so every event pays for the largest one's size.
        body: Box<ClientRequest>,
    },
    /// An answer arrives at the client that sent `request`, with the
    /// version behind it as its coordinator reported it.
    Reply {
        request: RequestId,
        answer: Box<Answer>,
        version: Option<Version>,
    },
    /// A client gives up on `request`.
    ClientTimeout { client: usize, request: RequestId },
    /// A client starts its next operation.
    ClientNext { client: usize },
    /// The nemesis acts.
    Nemesis,
    /// Entry `entry` of a scripted run's schedule happens.
    Scripted { entry: usize },
    /// A scripted run's faults stop (once its operations are done).
    ScriptedStop,
    /// Node `node`'s group commit window closes: its sync starts.
    BatchClose { node: usize, incarnation: u64 },
    /// Node `node`'s sync completes: its batch's outputs leave.
    SyncDone { node: usize, incarnation: u64 },
    /// An armed crash lands while node `node`'s sync is in flight.
    CrashMidSync { node: usize, incarnation: u64 },
    /// Node `node`, which stopped itself, is started again (if still down).
    RestartStopped { node: usize },
    /// Node `node`, in a crash loop, is started again (if still down).
    CrashLoopRestart { node: usize },
    /// Node `node`, in a crash loop, crashes again (if incarnation
    /// `incarnation` still runs).
    CrashLoopCrash { node: usize, incarnation: u64 },
    /// The swizzle in progress clogs or unclogs its next link.
    SwizzleStep,
    /// Node `node`'s window of bad reads ends.
    ReadFaultsEnd { node: usize, incarnation: u64 },
    /// Space comes back on node `node`'s disk.
    DiskSpaceBack { node: usize, incarnation: u64 },
    /// Stored bytes of a node's tables may be damaged.
    StoredDamage,
    /// The heal phase looks whether the replicas have converged.
    ConvergencePoll,
    /// The liveness phase's time is up.
    LivenessDeadline,
    /// The run ends and is checked.
    Finish,
}

/// Every event is moved into the queue's slab and out again, and each slot
/// is as large as the largest variant: keep the enum small (box large
/// variants).
const EVENT_BYTES_MAX: usize = 64;
const _: () = assert!(std::mem::size_of::<Event>() <= EVENT_BYTES_MAX);

impl Event {
    /// The node whose process takes this event, if any.
    fn node(&self) -> Option<usize> {
        match *self {
            Event::Tick { node }
            | Event::Request { node, .. }
            | Event::BatchClose { node, .. }
            | Event::SyncDone { node, .. }
            | Event::CrashMidSync { node, .. } => Some(node),
            Event::Deliver { to, .. } | Event::LinkRead { to, .. } => Some(to),
            _ => None,
        }
    }
}

/// What a client hears back.
#[derive(Debug)]
enum Answer {
    /// The coordinator answered.
    Response(ClientResponse),
    /// The node was down: the request was never taken (definitely failed).
    Refused,
}

/// A node's place in the simulation, surviving its crashes.
#[derive(Debug)]
struct Slot {
    id: NodeId,
    /// The disk outlives the node process.
    disk: SimDisk,
    /// The running node; `None` while crashed.
    node: Option<Node<SimDisk>>,
    clock: SimClock,
    /// Per key, the newest version this node acknowledged as durable and
    /// whether it is a tombstone: it must hold that version or a newer one
    /// after any restart (or nothing, once a tombstone may be purged).
    acknowledged: BTreeMap<Vec<u8>, (Timestamp, bool)>,
    /// Per key, the newest tombstone this node applied in a batch it never
    /// acknowledged (the batch's sync failed, or the node crashed before or
    /// during it). Such a tombstone may have reached the disk all the same,
    /// and once purged it leaves nothing where an older acknowledged value
    /// was: that absence is not a lost write.
    unacknowledged_tombstones: BTreeMap<Vec<u8>, Timestamp>,
    /// The highest timestamp this node had durably acknowledged when its
    /// current incarnation started: every write it stamps now must be above
    /// it, whatever its wall clock reads (its clock is seeded from its
    /// store).
    stamp_floor: Option<Timestamp>,
    /// Starts so far: events of an earlier incarnation are ignored.
    incarnation: u64,
    /// Where this node's group commit stands.
    batch: Batch,
    /// Inputs that arrived during a sync: the next batch.
    waiting: Vec<Input>,
    /// How long this node's disk takes to sync.
    sync_latency: SyncLatency,
    /// A crash the nemesis armed for this node's next batch.
    crash_armed: Option<CrashPoint>,
    /// What is left of this node's crash loop (empty: not in one): per
    /// restart, its delay after the crash before it and how long the node
    /// then runs before it crashes again (unless it was the last).
    crash_loop: std::collections::VecDeque<(u64, u64)>,
    /// The process is paused until then: its events wait.
    paused_until: Option<u64>,
    /// Its disk reads badly until then.
    read_faults_until: Option<u64>,
    /// Its disk is full until then.
    disk_full_until: Option<u64>,
    /// Faults were injected into this incarnation's disk (bad reads, a
    /// failed sync), so a failed background job is expected, not a bug.
    disk_faulted: bool,
    /// The table file whose stored bytes the simulator damaged, until the
    /// node has dealt with it and its ranges are repaired
    /// (`run/damage.rs`).
    damage: Option<String>,
}

/// Notes, in a node's [`Slot::unacknowledged_tombstones`], the tombstones
/// among writes it applied but never acknowledged.
fn note_unacknowledged(
    tombstones: &mut BTreeMap<Vec<u8>, Timestamp>,
    writes: Vec<enigma_cluster::AcknowledgedWrite>,
) {
    for write in writes.into_iter().filter(|w| w.tombstone) {
        let newest = tombstones.entry(write.key).or_insert(write.timestamp);
        *newest = (*newest).max(write.timestamp);
    }
}

/// An operation a client is waiting on.
#[derive(Debug)]
struct InFlight {
    /// The current attempt's request.
    request: RequestId,
    op: OpId,
    call: Call,
    /// For the increment workload: the counter operation, and `op` is its
    /// index in the counter history (`call` then says only whether it
    /// reads).
    counter: Option<CounterCall>,
    /// What is sent, again on a retry.
    body: ClientRequest,
    /// The coordinator of the current attempt.
    node: usize,
    /// Attempts so far.
    attempts: u32,
}

#[derive(Debug, Default)]
struct Client {
    in_flight: Option<InFlight>,
    /// What this client's session has seen, sent with each request.
    floors: SessionFloors,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Faults on, the workload runs.
    Safety,
    /// Faults off, the repair pass runs.
    Heal,
    /// The cluster must serve operations again.
    Liveness,
    /// Waiting for the network to drain before the checks.
    Settling,
    Done,
}

impl Phase {
    /// Its name in the run's picture.
    fn name(self) -> &'static str {
        match self {
            Phase::Safety => "safety",
            Phase::Heal => "heal",
            Phase::Liveness => "liveness",
            Phase::Settling => "settle",
            Phase::Done => "done",
        }
    }
}

struct Simulation {
    config: SimConfig,
    cluster: ClusterConfig,
    /// The cluster's placement, as every node computes it.
    ring: Ring,
    node_options: NodeOptions,
    /// Virtual time, nanoseconds.
    now: u64,
    /// Pending events by time, then scheduling order.
    queue: EventQueue<Event>,
    slots: Vec<Slot>,
    net: SimNet,
    /// Each directed link's byte stream, `from * nodes + to`.
    links: Vec<LinkStream>,
    /// How this run's links cut their streams into reads.
    read_cuts: ReadCuts,
    /// Draws where reads cut the streams.
    rng_frames: ChaCha8Rng,
    /// Draws which messages straggle (stale messages).
    rng_stale: ChaCha8Rng,
    nemesis: Nemesis,
    workload: RegisterWorkload,
    keys: Vec<String>,
    /// Clients; the last one is the heal phase's repair client.
    clients: Vec<Client>,
    /// Which client sent each outstanding request.
    request_owner: BTreeMap<RequestId, usize>,
    /// Requests whose coordinator, when it took them, held fewer of the
    /// key's replicas up than the level needs: they must be refused at
    /// once, never time out waiting on a replica held down.
    must_fail_fast: BTreeMap<RequestId, String>,
    next_request: u64,
    ops_issued: usize,
    phase: Phase,
    /// When the faults stopped.
    heal_started_nanos: u64,
    /// When the liveness operations ended (the final convergence wait).
    settle_started_nanos: u64,
    /// Since when the replicas have been seen converged, with no hint
    /// left, at every poll.
    converged_since_nanos: Option<u64>,
    /// Nodes whose disk was full when the faults stopped: their durability
    /// is checked at the first convergence poll, once they have had ticks
    /// to write what waited for space (until then the engine refuses reads
    /// of the keys whose writes wait).
    durability_deferred: Vec<usize>,
    history: History,
    /// The increment workload's operations (empty in register runs).
    counter: CounterHistory,
    /// Paxos messages and round trips per `SERIAL` operation.
    paxos_cost: PaxosCost,
    /// Version of each completed operation.
    versions: BTreeMap<OpId, Version>,
    trace: Trace,
    violations: Vec<Violation>,
    stats: RunStats,
    swarm: String,
    rng_net: ChaCha8Rng,
    rng_clients: ChaCha8Rng,
    rng_nemesis: ChaCha8Rng,
    rng_disk: ChaCha8Rng,
    /// Draws batch windows, sync latencies and whether a sync in flight at
    /// a crash completed.
    rng_commit: ChaCha8Rng,
    /// Longest group commit window of this run.
    group_commit_window_max_nanos: u64,
    /// Each disk's faults outside bad-read windows.
    disk_faults: SimDiskFaults,
    /// The swizzle in progress.
    swizzle: Option<Swizzle>,
    /// Whether each crash the nemesis injects starts a crash loop.
    crash_loops: bool,
    /// Whether stored bytes rot and take misdirected writes.
    stored_damage: bool,
    /// Draws where stored bytes are damaged.
    rng_damage: ChaCha8Rng,
    /// Nodes that took stored damage so far.
    damaged_nodes: BTreeSet<usize>,
    /// The most distinct nodes stored damage may hit
    /// ([`nemesis::damage_nodes_max`]).
    damage_nodes_max: usize,
    /// Draws bit rot in sealed log segments at a start (its own stream, so
    /// that the damage of tables draws what it drew before).
    rng_segment_damage: ChaCha8Rng,
    /// The liveness phase's progress.
    liveness: Liveness,
    /// Bound on every wall clock's offset from true time, either way.
    clock_offset_nanos_max: i64,
    /// Whether clocks disagree in this run (an offset, drift or jumps).
    clock_skew: bool,
    rng_clock: ChaCha8Rng,
    /// What the run's picture needs, only when one is asked for.
    recording: Option<Box<Recording>>,
    /// The schedule a scripted run replays instead of drawing.
    script: Option<Box<Script>>,
    /// The schedule a recording seed run writes down.
    schedule_writer: Option<Box<ScheduleWriter>>,
    /// Operations the liveness phase issues at most.
    liveness_ops_max: usize,
    /// The run ended when its faults stopped, without healing (a schedule
    /// skipped it): the converged state is not checked.
    unhealed: bool,
}

impl Simulation {
    fn new(config: SimConfig) -> Self {
        let seed = config.seed;
        let mut rng_clock = stream(seed, "clock");
        let Swarm {
            nemesis: nemesis_options,
            net: net_options,
            disk: disk_faults,
            line: swarm,
            group_commit_window_max_nanos,
            sync_latencies,
            clock_drifts_ppm,
            buggify,
            read_cuts,
            crash_loops,
            stored_damage,
            codecs,
        } = draw_swarm(&config, &mut stream(seed, "swarm"));
        let ids: Vec<NodeId> = (1..=config.nodes as u32).map(NodeId).collect();
        let cluster = ClusterConfig {
            nodes: ids.clone(),
            replication_factor: config.replication_factor,
            vnodes_per_node: 8,
        };
        let mut hints = HintOptions {
            enabled: config.hinted_handoff,
            window_nanos: SIM_HINT_WINDOW_NANOS,
            replay_timeout_nanos: 300_000_000,
            ..HintOptions::default()
        };
        hints.bytes_max_per_node = hints.bytes_max_per_node.min(1 << 20);
        let node_options = NodeOptions {
            request_timeout_nanos: REQUEST_TIMEOUT_NANOS,
            gossip_interval_nanos: SIM_GOSSIP_INTERVAL_NANOS,
            hints,
            anti_entropy: AntiEntropyOptions {
                continuous: config.anti_entropy,
                scan_bytes_per_sec: SIM_ANTI_ENTROPY_SCAN_BYTES_PER_SEC,
                interval_nanos: SIM_ANTI_ENTROPY_INTERVAL_NANOS,
                merkle_depth: 6,
                batch_bytes_max: 16 * 1024,
                resend_nanos: 200_000_000,
                session_timeout_nanos: 3_000_000_000,
                bug_stream_one_way: config.planted_anti_entropy_one_way,
                ..AntiEntropyOptions::default()
            },
            gc_grace_nanos: SIM_GC_GRACE_NANOS,
            bug_delete_hints_on_send: config.planted_hint_deleted_on_send,
            bug_purge_tombstones_without_repair: config.planted_purge_without_repair,
            bug_wait_on_down_replicas: config.planted_coordinator_ignores_failure_detector,
            bug_read_trusts_the_data_over_digests: config.planted_read_trusts_data_over_digests,
            bug_count_answers_of_earlier_generations: config
                .planted_coordinator_counts_stale_answers,
            bug_read_error_answers_absent: config.planted_replica_answers_absent_on_read_error,
            bug_count_duplicate_acknowledgements: config.planted_coordinator_counts_duplicate_acks,
            bug_paxos_accept_below_promise: config.planted_paxos_accept_below_promise,
            bug_paxos_ignores_in_progress_proposal: config
                .planted_paxos_ignores_in_progress_proposal,
            bug_paxos_promise_before_durable: config.planted_paxos_promise_before_durable,
            bug_paxos_finish_with_stale_stamp: config.planted_paxos_finish_with_stale_stamp,
            bug_paxos_answer_after_first_acceptance: config
                .planted_paxos_answer_after_first_acceptance,
            bug_read_ignores_unfinished_paxos: config.planted_read_ignores_unfinished_paxos,
            bug_unjudged_clock_writes_alone: config.planted_unjudged_clock_writes_alone,
            bug_serve_quarantined_ranges: config.planted_serve_quarantined_ranges,
            bug_paxos_acceptor_forgets_loss: config.planted_paxos_acceptor_forgets_loss,
            bug_damaged_node_keeps_stale_data: config.planted_damaged_node_keeps_stale_data,
            bug_repair_counts_unapplied_pull: config.planted_repair_counts_unapplied_pull,
            engine: EngineOptions {
                wal_segment_bytes_max: SIM_WAL_SEGMENT_BYTES,
                memtable_bytes_max: config.memtable_bytes,
                compaction_tables_min: SIM_COMPACTION_TABLES_MIN,
                block_cache_bytes: SIM_BLOCK_CACHE_BYTES,
                table_compression: codecs.flush,
                compaction_compression: codecs.compaction,
                bug_flush_drops_memtable_before_table_opens: config.planted_flush_drops_memtable,
                bug_flush_removes_log_before_manifest_edit: config
                    .planted_flush_removes_log_before_manifest_edit,
                bug_recovery_skips_rest_of_damaged_sealed_segment: config
                    .planted_sealed_segment_damage_skipped,
                buggify,
                ..EngineOptions::default()
            },
            background_bytes_per_tick: SIM_BACKGROUND_BYTES_PER_TICK,
            // One step of a flush or compaction per tick, so that crashes
            // land between them.
            background_steps_per_tick: 1,
            record_versions: true,
            bug_ack_quorum_writes_after_one_replica: config.planted_bug,
            commit_wait: config.commit_wait,
            clock_uncertainty_nanos: clock_uncertainty_nanos(&config),
            bug_hlc_not_seeded_on_restart: config.planted_hlc_not_seeded_on_restart,
            bug_adopt_remote_readings_without_bound: config
                .planted_adopt_remote_readings_without_bound,
            bug_skip_commit_wait: config.planted_skip_commit_wait,
            bug_release_outputs_of_a_failed_sync: config.planted_ack_after_failed_sync,
            ..NodeOptions::default()
        };
        let skew_nanos =
            i64::try_from(config.clock_skew_max_ms.saturating_mul(1_000_000)).unwrap_or(i64::MAX);
        let clock_faults = nemesis_options.clock_jumps;
        let clock_offset_nanos_max = clock_offset_nanos_max(&config);
        let far_ahead_nanos =
            i64::try_from(config.clock_far_ahead_ms.saturating_mul(1_000_000)).unwrap_or(i64::MAX);
        let mut disk_seeds = stream(seed, "disk seeds");
        let slots = ids
            .iter()
            .zip(sync_latencies)
            .zip(clock_drifts_ppm)
            .map(|((&id, sync_latency), drift_ppm)| Slot {
                id,
                disk: SimDisk::with_seed(disk_faults.clone(), disk_seeds.random()),
                node: None,
                clock: if id.0 == 1 && far_ahead_nanos > 0 {
                    SimClock {
                        offset_nanos: far_ahead_nanos,
                        drift_ppm,
                        mono_offset_nanos: 0,
                        wall_bound_nanos: 0,
                    }
                } else {
                    SimClock {
                        offset_nanos: if skew_nanos > 0 {
                            rng_clock.random_range(-skew_nanos..=skew_nanos)
                        } else {
                            0
                        },
                        drift_ppm,
                        mono_offset_nanos: 0,
                        wall_bound_nanos: clock_offset_nanos_max,
                    }
                },
                acknowledged: BTreeMap::new(),
                unacknowledged_tombstones: BTreeMap::new(),
                stamp_floor: None,
                incarnation: 0,
                batch: Batch::Idle,
                waiting: Vec::new(),
                sync_latency,
                crash_armed: None,
                crash_loop: std::collections::VecDeque::new(),
                paused_until: None,
                read_faults_until: None,
                disk_full_until: None,
                disk_faulted: false,
                damage: None,
            })
            .collect();
        let workload = RegisterWorkload::new(RegisterOptions {
            keys: config.keys,
            value_bytes: config.value_bytes,
            cas_percent: if config.level == ConsistencyLevel::Serial {
                SERIAL_CAS_PERCENT
            } else {
                0
            },
            ..RegisterOptions::default()
        });
        let keys = workload.keys();
        let clients = (0..config.clients).map(|_| Client::default()).collect();
        let ring = Ring::new(
            &cluster.nodes,
            cluster.vnodes_per_node,
            cluster.replication_factor,
        )
        .expect("the configuration was validated");
        Self {
            ring,
            cluster,
            node_options,
            now: 0,
            queue: EventQueue::new(),
            slots,
            net: SimNet::new(net_options),
            links: (0..config.nodes * config.nodes)
                .map(|_| LinkStream::new(config.planted_frame_reader_drops_rest))
                .collect(),
            read_cuts,
            rng_frames: stream(seed, "frames"),
            rng_stale: stream(seed, "stale"),
            nemesis: Nemesis::new(nemesis_options, clock_offset_nanos_max),
            workload,
            keys,
            clients,
            request_owner: BTreeMap::new(),
            must_fail_fast: BTreeMap::new(),
            next_request: 0,
            ops_issued: 0,
            phase: Phase::Safety,
            heal_started_nanos: 0,
            settle_started_nanos: 0,
            converged_since_nanos: None,
            durability_deferred: Vec::new(),
            history: History::new(),
            counter: CounterHistory::new(),
            paxos_cost: PaxosCost::default(),
            versions: BTreeMap::new(),
            trace: Trace::new(config.trace),
            violations: Vec::new(),
            stats: RunStats::default(),
            swarm,
            rng_net: stream(seed, "net"),
            rng_clients: stream(seed, "clients"),
            rng_nemesis: stream(seed, "nemesis"),
            rng_disk: stream(seed, "disk"),
            rng_commit: stream(seed, "commit"),
            group_commit_window_max_nanos,
            disk_faults,
            swizzle: None,
            crash_loops,
            stored_damage,
            rng_damage: stream(seed, "damage"),
            damaged_nodes: BTreeSet::new(),
            damage_nodes_max: nemesis::damage_nodes_max(&config),
            rng_segment_damage: stream(seed, "segment-damage"),
            liveness: Liveness::default(),
            clock_offset_nanos_max,
            clock_skew: skew_nanos > 0 || clock_faults || far_ahead_nanos > 0,
            rng_clock,
            recording: None,
            script: None,
            schedule_writer: None,
            liveness_ops_max: liveness::LIVENESS_OPS_MAX,
            unhealed: false,
            config,
        }
    }

    fn schedule(&mut self, delay_nanos: u64, event: Event) {
        self.queue.push(self.now.saturating_add(delay_nanos), event);
    }

    fn run_to_end(&mut self) {
        for index in 0..self.slots.len() {
            self.start_node(index);
            let phase = self.rng_clients.random_range(0..TICK_INTERVAL_NANOS);
            self.schedule(phase, Event::Tick { node: index });
        }
        for client in 0..self.config.clients {
            let think = self.rng_clients.random_range(0..CLIENT_THINK_MAX_NANOS);
            self.schedule(think, Event::ClientNext { client });
        }
        if self.script.is_some() {
            self.schedule_script();
        } else if self.config.faults {
            self.schedule(NEMESIS_INTERVAL_MIN_NANOS, Event::Nemesis);
        }
        if self.stored_damage {
            self.schedule_stored_damage();
        }
        while let Some((time, event)) = self.queue.pop() {
            assert!(time >= self.now, "time went backwards");
            self.now = time;
            if self.now > RUN_VIRTUAL_NANOS_MAX {
                self.violate(
                    "liveness",
                    format!(
                        "run still going at {}s of virtual time",
                        self.now / 1_000_000_000
                    ),
                );
                break;
            }
            self.handle(event);
            if let Some(recording) = self.recording.as_deref_mut() {
                recording.phase(self.now, self.phase.name());
            }
            if self.phase == Phase::Done {
                break;
            }
        }
        self.stats.virtual_nanos = self.now;
        self.stats.events = self.trace.events();
    }

    fn handle(&mut self, event: Event) {
        if let Some(node) = event.node() {
            match self.slots[node].paused_until {
                Some(until) if until > self.now => {
                    // The process is paused: the event waits, and arrives
                    // in the burst when it resumes.
                    self.schedule(until - self.now, event);
                    return;
                }
                Some(_) => self.slots[node].paused_until = None,
                None => {}
            }
        }
        match event {
            Event::Tick { node } => {
                self.trace
                    .record(self.now, &[0, node as u8], || format!("tick n{}", node + 1));
                self.step_node(node, Input::Tick);
                self.schedule(TICK_INTERVAL_NANOS, Event::Tick { node });
            }
            Event::Deliver {
                from,
                to,
                frame,
                incarnations,
            } => self.on_deliver(from, to, frame, incarnations),
            Event::LinkRead {
                from,
                to,
                connection,
            } => self.on_link_read(from, to, connection),
            Event::Request {
                node,
                request,
                body,
            } => self.on_request(node, request, *body),
            Event::Reply {
                request,
                answer,
                version,
            } => self.on_reply(request, *answer, version),
            Event::ClientTimeout { client, request } => {
                let current = self.clients[client].in_flight.as_ref().map(|f| f.request);
                if current == Some(request) {
                    self.trace.record(self.now, &[6, client as u8], || {
                        format!("client {client} timed out")
                    });
                    self.request_owner.remove(&request);
                    if self.should_retry(client, None) {
                        self.retry(client);
                    } else {
                        self.complete(client, ClientResult::Unknown);
                    }
                }
            }
            Event::ClientNext { client } => self.on_client_next(client),
            Event::Nemesis => self.on_nemesis(),
            Event::Scripted { entry } => self.on_scripted(entry),
            Event::ScriptedStop => self.on_scripted_stop(),
            Event::BatchClose { node, incarnation } => self.on_batch_close(node, incarnation),
            Event::SyncDone { node, incarnation } => self.on_sync_done(node, incarnation),
            Event::CrashMidSync { node, incarnation } => {
                self.on_crash_mid_sync(node, incarnation);
            }
            Event::RestartStopped { node } => {
                if self.slots[node].node.is_none() {
                    self.start_node(node);
                }
            }
            Event::CrashLoopRestart { node } => self.on_crash_loop_restart(node),
            Event::CrashLoopCrash { node, incarnation } => {
                self.on_crash_loop_crash(node, incarnation);
            }
            Event::SwizzleStep => self.on_swizzle_step(),
            Event::DiskSpaceBack { node, incarnation } => {
                if self.slots[node].incarnation == incarnation {
                    self.end_disk_full(node);
                }
            }
            Event::ReadFaultsEnd { node, incarnation } => {
                if self.slots[node].incarnation == incarnation {
                    self.end_read_faults(node);
                }
            }
            Event::StoredDamage => self.on_stored_damage(),
            Event::ConvergencePoll => self.on_convergence_poll(),
            Event::LivenessDeadline => self.on_liveness_deadline(),
            Event::Finish => {
                self.trace.record(self.now, &[9], || "finish".to_owned());
                self.phase = Phase::Done;
            }
        }
    }

    fn violate(&mut self, property: &'static str, details: String) {
        self.record(|r, now| r.violation(now, property));
        self.violations.push(Violation { property, details });
    }

    /// Lets the recording, when there is one, note something at `now`.
    fn record(&mut self, note: impl FnOnce(&mut Recording, u64)) {
        if let Some(recording) = self.recording.as_deref_mut() {
            note(recording, self.now);
        }
    }
}
