//! One simulation run: a cluster, its clients and a nemesis on one
//! virtual-time event queue, then the checks.
//!
//! A run has two phases. In the *safety* phase clients issue operations
//! while the nemesis crashes and restarts nodes and partitions the network,
//! and the network loses and duplicates messages. In the *heal* phase the
//! faults stop (every node restarted, every link up, no loss), a repair
//! client reads every key at `ALL` (whose blocking read repair brings every
//! replica up to date; hinted handoff and anti-entropy will take this over),
//! and the run settles. Then the history gets every check its consistency
//! levels promise (`enigma_checker::promises`: linearizability where
//! promised, lost writes, session guarantees, convergence of the replicas),
//! and each replica's storage is checked against what it acknowledged
//! (durability: after every restart, and before the repair pass could mask
//! a loss). Everything random comes from named streams of the seed, and
//! every delivered event is folded into the trace digest.

use std::collections::BTreeMap;

use enigma_checker::format::enigma::{
    leveled_events_of_history, run_line, write_events, Level, RunLine,
};
use enigma_checker::format::ParsedHistory;
use enigma_checker::{
    check_promises, Call, CheckOptions, History, OpId, PromiseInput, PromiseReport, ReplicaVersion,
    RunFacts, Status, StoredVersion, Version,
};
use enigma_cluster::{
    decode_frame, encode_frame, ClientOp, ClientRequest, ClientResponse, ClusterConfig,
    ConsistencyLevel, Decoded, Input, Node, NodeId, NodeOptions, Output, RequestId, Ring,
};
use enigma_engine::{Disk, DiskFile, EngineOptions, Timestamp, WAL_RECORDS_OFFSET};
use enigma_workloads::register::decode_value;
use enigma_workloads::{
    ClientResult, Fault, Nemesis, NemesisOptions, RegisterOptions, RegisterWorkload,
};
use rand::Rng;
use rand_chacha::ChaCha8Rng;

use crate::clock::SimClock;
use crate::config::SimConfig;
use crate::disk::{SimDisk, SimDiskFaults};
use crate::net::{NetOptions, SimNet};
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
/// Quiet time after healing, before the repair pass: longer than any
/// message latency, so the network is empty when repair starts.
const HEAL_QUIET_NANOS: u64 = 2_000_000_000;
/// Pause before retrying a repair read that failed.
const REPAIR_RETRY_NANOS: u64 = 100_000_000;
/// Attempts per key before the repair pass is declared stuck (a liveness
/// failure: with every node up and no faults, one attempt should do).
const REPAIR_ATTEMPTS_MAX: u32 = 20;
/// Time after the repair pass before replicas are inspected.
const SETTLE_NANOS: u64 = 500_000_000;
/// Virtual time after which a run is declared stuck.
const RUN_VIRTUAL_NANOS_MAX: u64 = 3_600_000_000_000;
/// WAL segment size in the simulation: small, so rotation is exercised.
const SIM_WAL_SEGMENT_BYTES: u64 = 16 * 1024;
/// Tables of a size tier that trigger a compaction: the engine's smallest,
/// so that the few flushes of a run lead to compactions.
const SIM_COMPACTION_TABLES_MIN: usize = 2;
/// Bytes of tables a node's background work may write per tick.
const SIM_BACKGROUND_BYTES_PER_TICK: u64 = 64 * 1024;

/// What went wrong in a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// The property: a check of the history (`linearizability`,
    /// `lost-write`, `read-your-writes`, `monotonic-reads`,
    /// `convergence`), `durability` (a replica lost a write it
    /// acknowledged), `storage` (a background flush or compaction failed),
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
}

/// The outcome of one run.
#[derive(Debug, Clone)]
pub struct RunReport {
    /// The configuration that ran.
    pub config: SimConfig,
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
    /// The recorded history.
    pub history: History,
    /// The version each completed operation wrote or read, as its
    /// coordinator reported it.
    pub versions: BTreeMap<OpId, Version>,
    /// The history checks, as the run's levels and facts called for them.
    pub promises: PromiseReport,
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
            facts: facts_of(&self.config),
            source: Some(self.config.repro_command()),
        };
        format!("{}\n{}", run_line(&run), write_events(&events))
    }
}

/// The facts of a run that decide what its levels promise. Clients carry no
/// session timestamp (the client protocol has none yet).
pub fn facts_of(config: &SimConfig) -> RunFacts {
    RunFacts {
        clock_skew: Some(config.clock_skew_max_ms > 0),
        replication_factor: Some(config.replication_factor),
        session_timestamps: Some(false),
        clock_uncertainty_nanos: None,
    }
}

/// The level of every operation: the run's level, `ALL` for the heal
/// phase's repair client (the last process).
fn levels_of(config: &SimConfig, history: &History) -> BTreeMap<OpId, Level> {
    let repair_process = config.clients as u64;
    history
        .operations()
        .iter()
        .map(|op| {
            let level = if op.process == repair_process {
                ConsistencyLevel::All
            } else {
                config.level
            };
            (op.id, checker_level(level))
        })
        .collect()
}

fn checker_level(level: ConsistencyLevel) -> Level {
    match level {
        ConsistencyLevel::One => Level::One,
        ConsistencyLevel::Two => Level::Two,
        ConsistencyLevel::Quorum => Level::Quorum,
        ConsistencyLevel::All => Level::All,
    }
}

fn version_of(timestamp: Option<Timestamp>) -> Version {
    timestamp.map_or(
        Version {
            timestamp: 0,
            writer: 0,
        },
        |t| Version {
            timestamp: t.hlc,
            writer: u64::from(t.node),
        },
    )
}

/// Runs one simulation.
///
/// # Panics
/// If `config` does not validate (callers validate user input first).
pub fn run(config: &SimConfig) -> RunReport {
    if let Err(e) = config.validate() {
        panic!("invalid simulation config: {e}");
    }
    let mut sim = Simulation::new(config.clone());
    sim.run_to_end();
    sim.finish()
}

/// An event on the queue.
#[derive(Debug)]
enum Event {
    /// Tick node `node`.
    Tick { node: usize },
    /// A frame from `from` arrives at `to`.
    Deliver {
        from: usize,
        to: usize,
        frame: Vec<u8>,
    },
    /// A client request arrives at `node`.
    Request {
        node: usize,
        request: RequestId,
        body: ClientRequest,
    },
    /// An answer arrives at the client that sent `request`, with the
    /// version behind it as its coordinator reported it.
    Reply {
        request: RequestId,
        answer: Answer,
        version: Option<Version>,
    },
    /// A client gives up on `request`.
    ClientTimeout { client: usize, request: RequestId },
    /// A client starts its next operation.
    ClientNext { client: usize },
    /// The nemesis acts.
    Nemesis,
    /// The heal phase's repair pass reads its next key.
    RepairNext,
    /// The run ends and is checked.
    Finish,
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
    /// Per key, the newest version this node acknowledged as durable: it
    /// must hold that version or a newer one after any restart.
    acknowledged: BTreeMap<Vec<u8>, Timestamp>,
}

/// An operation a client is waiting on.
#[derive(Debug)]
struct InFlight {
    request: RequestId,
    op: OpId,
    call: Call,
}

#[derive(Debug, Default)]
struct Client {
    in_flight: Option<InFlight>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Safety,
    Heal,
    Done,
}

struct Simulation {
    config: SimConfig,
    cluster: ClusterConfig,
    node_options: NodeOptions,
    /// Virtual time, nanoseconds.
    now: u64,
    /// Pending events by (time, sequence).
    queue: BTreeMap<(u64, u64), Event>,
    next_seq: u64,
    slots: Vec<Slot>,
    net: SimNet,
    nemesis: Nemesis,
    workload: RegisterWorkload,
    keys: Vec<String>,
    /// Clients; the last one is the heal phase's repair client.
    clients: Vec<Client>,
    /// Which client sent each outstanding request.
    request_owner: BTreeMap<RequestId, usize>,
    next_request: u64,
    ops_issued: usize,
    phase: Phase,
    repair_key: usize,
    repair_attempts: u32,
    history: History,
    /// Version of each completed operation.
    versions: BTreeMap<OpId, Version>,
    /// The repair pass started: replicas were checked against what they
    /// acknowledged.
    durability_checked: bool,
    trace: Trace,
    violations: Vec<Violation>,
    stats: RunStats,
    swarm: String,
    rng_net: ChaCha8Rng,
    rng_clients: ChaCha8Rng,
    rng_nemesis: ChaCha8Rng,
    rng_disk: ChaCha8Rng,
}

impl Simulation {
    fn new(config: SimConfig) -> Self {
        let seed = config.seed;
        let mut rng_swarm = stream(seed, "swarm");
        let mut rng_clock = stream(seed, "clock");
        let (nemesis_options, net_options, disk_faults, swarm) = if config.faults {
            let crashes = rng_swarm.random_bool(0.7);
            let partitions = rng_swarm.random_bool(0.7);
            let loss = [0.0, 0.01, 0.05][rng_swarm.random_range(0..3)];
            let duplicate = [0.0, 0.02][rng_swarm.random_range(0..2)];
            let latency_max = [2_000_000, 10_000_000, 50_000_000][rng_swarm.random_range(0..3)];
            let torn = rng_swarm.random_bool(0.5);
            let swarm = format!(
                "crashes={} partitions={} loss={loss} duplicate={duplicate} latency_max={}ms torn_writes={}",
                on_off(crashes),
                on_off(partitions),
                latency_max / 1_000_000,
                on_off(torn),
            );
            (
                NemesisOptions {
                    crashes,
                    partitions,
                },
                NetOptions {
                    latency_max_nanos: latency_max,
                    loss_probability: loss,
                    duplicate_probability: duplicate,
                    ..NetOptions::default()
                },
                if torn {
                    SimDiskFaults::torn()
                } else {
                    SimDiskFaults::default()
                },
                swarm,
            )
        } else {
            (
                NemesisOptions {
                    crashes: false,
                    partitions: false,
                },
                NetOptions::default(),
                SimDiskFaults::default(),
                "faults off".to_owned(),
            )
        };
        let ids: Vec<NodeId> = (1..=config.nodes as u32).map(NodeId).collect();
        let cluster = ClusterConfig {
            nodes: ids.clone(),
            replication_factor: config.replication_factor,
            vnodes_per_node: 8,
        };
        let node_options = NodeOptions {
            request_timeout_nanos: REQUEST_TIMEOUT_NANOS,
            engine: EngineOptions {
                wal_segment_bytes_max: SIM_WAL_SEGMENT_BYTES,
                memtable_bytes_max: config.memtable_bytes,
                compaction_tables_min: SIM_COMPACTION_TABLES_MIN,
                ..EngineOptions::default()
            },
            background_bytes_per_tick: SIM_BACKGROUND_BYTES_PER_TICK,
            record_versions: true,
            bug_ack_quorum_writes_after_one_replica: config.planted_bug,
            ..NodeOptions::default()
        };
        let skew_nanos =
            i64::try_from(config.clock_skew_max_ms.saturating_mul(1_000_000)).unwrap_or(i64::MAX);
        let slots = ids
            .iter()
            .map(|&id| Slot {
                id,
                disk: SimDisk::new(disk_faults.clone()),
                node: None,
                clock: SimClock {
                    offset_nanos: if skew_nanos > 0 {
                        rng_clock.random_range(-skew_nanos..=skew_nanos)
                    } else {
                        0
                    },
                    drift_ppm: 0,
                },
                acknowledged: BTreeMap::new(),
            })
            .collect();
        let workload = RegisterWorkload::new(RegisterOptions {
            keys: config.keys,
            value_bytes: config.value_bytes,
            ..RegisterOptions::default()
        });
        let keys = workload.keys();
        let clients = (0..=config.clients).map(|_| Client::default()).collect();
        Self {
            cluster,
            node_options,
            now: 0,
            queue: BTreeMap::new(),
            next_seq: 0,
            slots,
            net: SimNet::new(net_options),
            nemesis: Nemesis::new(nemesis_options),
            workload,
            keys,
            clients,
            request_owner: BTreeMap::new(),
            next_request: 0,
            ops_issued: 0,
            phase: Phase::Safety,
            repair_key: 0,
            repair_attempts: 0,
            history: History::new(),
            versions: BTreeMap::new(),
            durability_checked: false,
            trace: Trace::new(config.trace),
            violations: Vec::new(),
            stats: RunStats::default(),
            swarm,
            rng_net: stream(seed, "net"),
            rng_clients: stream(seed, "clients"),
            rng_nemesis: stream(seed, "nemesis"),
            rng_disk: stream(seed, "disk"),
            config,
        }
    }

    fn schedule(&mut self, delay_nanos: u64, event: Event) {
        let key = (self.now.saturating_add(delay_nanos), self.next_seq);
        self.next_seq += 1;
        self.queue.insert(key, event);
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
        if self.config.faults {
            self.schedule(NEMESIS_INTERVAL_MIN_NANOS, Event::Nemesis);
        }
        while let Some(((time, _), event)) = self.queue.pop_first() {
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
            if self.phase == Phase::Done {
                break;
            }
        }
        self.stats.virtual_nanos = self.now;
        self.stats.events = self.trace.events();
    }

    fn handle(&mut self, event: Event) {
        match event {
            Event::Tick { node } => {
                self.trace
                    .record(self.now, &[0, node as u8], || format!("tick n{}", node + 1));
                self.step_node(node, Input::Tick);
                self.schedule(TICK_INTERVAL_NANOS, Event::Tick { node });
            }
            Event::Deliver { from, to, frame } => self.on_deliver(from, to, frame),
            Event::Request {
                node,
                request,
                body,
            } => self.on_request(node, request, body),
            Event::Reply {
                request,
                answer,
                version,
            } => self.on_reply(request, answer, version),
            Event::ClientTimeout { client, request } => {
                let current = self.clients[client].in_flight.as_ref().map(|f| f.request);
                if current == Some(request) {
                    self.trace.record(self.now, &[6, client as u8], || {
                        format!("client {client} timed out")
                    });
                    self.request_owner.remove(&request);
                    self.complete(client, ClientResult::Unknown);
                }
            }
            Event::ClientNext { client } => self.on_client_next(client),
            Event::Nemesis => self.on_nemesis(),
            Event::RepairNext => self.on_repair_next(),
            Event::Finish => {
                self.trace.record(self.now, &[9], || "finish".to_owned());
                self.phase = Phase::Done;
            }
        }
    }

    fn on_deliver(&mut self, from: usize, to: usize, frame: Vec<u8>) {
        if !self.net.connected(from, to) || self.slots[to].node.is_none() {
            return;
        }
        self.trace.record(self.now, &frame, || {
            format!("n{} -> n{}: {} bytes", from + 1, to + 1, frame.len())
        });
        match decode_frame(&frame) {
            Ok(Decoded::Frame { envelope, .. }) => {
                let from_id = self.slots[from].id;
                self.step_node(
                    to,
                    Input::Message {
                        from: from_id,
                        envelope,
                    },
                );
            }
            Ok(Decoded::Incomplete) | Err(_) => self.violate(
                "integrity",
                format!("frame from n{} to n{} failed to decode", from + 1, to + 1),
            ),
        }
    }

    fn on_request(&mut self, node: usize, request: RequestId, body: ClientRequest) {
        let mut bytes = vec![2, node as u8];
        bytes.extend_from_slice(&request.0.to_le_bytes());
        encode_request(&body, &mut bytes);
        self.trace.record(self.now, &bytes, || {
            format!("request {} at n{}: {body:?}", request.0, node + 1)
        });
        if self.slots[node].node.is_none() {
            let delay = self.client_latency();
            self.schedule(
                delay,
                Event::Reply {
                    request,
                    answer: Answer::Refused,
                    version: None,
                },
            );
            return;
        }
        self.step_node(node, Input::Client { request, body });
    }

    fn on_reply(&mut self, request: RequestId, answer: Answer, version: Option<Version>) {
        let Some(client) = self.request_owner.remove(&request) else {
            return;
        };
        let mut bytes = vec![3];
        bytes.extend_from_slice(&request.0.to_le_bytes());
        encode_answer(&answer, &mut bytes);
        self.trace.record(self.now, &bytes, || {
            format!("reply {} to client {client}: {answer:?}", request.0)
        });
        let result = match answer {
            Answer::Refused => ClientResult::Failed,
            Answer::Response(ClientResponse::Written) => ClientResult::Written,
            Answer::Response(ClientResponse::Value(None)) => ClientResult::Read(None),
            Answer::Response(ClientResponse::Value(Some(bytes))) => match decode_value(&bytes) {
                Some(value) => ClientResult::Read(Some(value)),
                None => {
                    self.violate(
                        "integrity",
                        format!("client {client} read bytes no client wrote: {bytes:?}"),
                    );
                    ClientResult::Failed
                }
            },
            Answer::Response(ClientResponse::Error(e)) if e.may_have_applied() => {
                ClientResult::Unknown
            }
            Answer::Response(ClientResponse::Error(_)) => ClientResult::Failed,
        };
        if let (Some(version), ClientResult::Written | ClientResult::Read(_)) = (version, &result) {
            if let Some(in_flight) = &self.clients[client].in_flight {
                self.versions.insert(in_flight.op, version);
            }
        }
        self.complete(client, result);
    }

    fn complete(&mut self, client: usize, result: ClientResult) {
        let in_flight = self.clients[client]
            .in_flight
            .take()
            .expect("completing an idle client");
        self.history
            .complete(in_flight.op, self.now, result.outcome(&in_flight.call));
        if client == self.repair_client() {
            let done = matches!(result, ClientResult::Read(_));
            self.after_repair_read(done);
        } else {
            let think = self.rng_clients.random_range(0..CLIENT_THINK_MAX_NANOS);
            self.schedule(think, Event::ClientNext { client });
        }
    }

    fn on_client_next(&mut self, client: usize) {
        if self.phase != Phase::Safety {
            return;
        }
        if self.ops_issued >= self.config.ops {
            if self.clients.iter().all(|c| c.in_flight.is_none()) {
                self.start_heal();
            }
            return;
        }
        self.ops_issued += 1;
        let (key, call) = self.workload.next_op(&mut self.rng_clients);
        let node = self.rng_clients.random_range(0..self.slots.len());
        self.issue(client, node, key, call, self.config.level);
    }

    fn issue(
        &mut self,
        client: usize,
        node: usize,
        key: String,
        call: Call,
        level: ConsistencyLevel,
    ) {
        let request = RequestId(self.next_request);
        self.next_request += 1;
        let op = self
            .history
            .invoke(client as u64, &key, call.clone(), self.now);
        let key_bytes = key.into_bytes();
        let body_op = match &call {
            Call::Read => ClientOp::Get { key: key_bytes },
            Call::Write(Some(value)) => ClientOp::Put {
                key: key_bytes,
                value: self.workload.encode(*value),
            },
            Call::Write(None) => ClientOp::Delete { key: key_bytes },
            Call::Cas { .. } => unreachable!("the register workload issues no compare-and-set"),
        };
        self.clients[client].in_flight = Some(InFlight { request, op, call });
        self.request_owner.insert(request, client);
        let delay = self.client_latency();
        let body = ClientRequest { op: body_op, level };
        self.schedule(
            delay,
            Event::Request {
                node,
                request,
                body,
            },
        );
        self.schedule(
            CLIENT_TIMEOUT_NANOS,
            Event::ClientTimeout { client, request },
        );
    }

    fn on_nemesis(&mut self) {
        if self.phase != Phase::Safety {
            return;
        }
        let up: Vec<bool> = self.slots.iter().map(|s| s.node.is_some()).collect();
        let fault = self
            .nemesis
            .next_fault(&mut self.rng_nemesis, &up, self.net.is_partitioned());
        if let Some(fault) = fault {
            let mut bytes = vec![4];
            bytes.extend_from_slice(format!("{fault:?}").as_bytes());
            self.trace
                .record(self.now, &bytes, || format!("nemesis: {fault:?}"));
            match fault {
                Fault::Crash(node) => self.crash(node),
                Fault::Restart(node) => self.start_node(node),
                Fault::Partition(groups) => {
                    self.stats.partitions += 1;
                    self.net.partition(groups);
                }
                Fault::Heal => self.net.heal(),
            }
        }
        let pause = self
            .rng_nemesis
            .random_range(NEMESIS_INTERVAL_MIN_NANOS..=NEMESIS_INTERVAL_MAX_NANOS);
        self.schedule(pause, Event::Nemesis);
    }

    /// Ends the safety phase: faults stop, every node restarts, every link
    /// heals; after a quiet period the repair pass starts.
    fn start_heal(&mut self) {
        self.trace
            .record(self.now, &[5], || "heal: faults stop".to_owned());
        self.phase = Phase::Heal;
        self.net.heal();
        self.net.options.loss_probability = 0.0;
        self.net.options.duplicate_probability = 0.0;
        for node in 0..self.slots.len() {
            if self.slots[node].node.is_none() {
                self.start_node(node);
            }
        }
        self.schedule(HEAL_QUIET_NANOS, Event::RepairNext);
    }

    fn repair_client(&self) -> usize {
        self.clients.len() - 1
    }

    fn on_repair_next(&mut self) {
        if !self.durability_checked {
            // Every node is up and the network quiet; nothing has read
            // repaired a replica since the faults stopped.
            self.durability_checked = true;
            for index in 0..self.slots.len() {
                self.check_durability(index, "before the repair pass");
            }
        }
        let Some(key) = self.keys.get(self.repair_key).cloned() else {
            self.schedule(SETTLE_NANOS, Event::Finish);
            return;
        };
        let node = self.repair_key % self.slots.len();
        let client = self.repair_client();
        self.repair_attempts += 1;
        self.issue(client, node, key, Call::Read, ConsistencyLevel::All);
    }

    fn after_repair_read(&mut self, succeeded: bool) {
        if succeeded {
            self.repair_key += 1;
            self.repair_attempts = 0;
            self.schedule(0, Event::RepairNext);
        } else if self.repair_attempts >= REPAIR_ATTEMPTS_MAX {
            let key = self.keys[self.repair_key].clone();
            self.violate(
                "liveness",
                format!("repair read of {key} at ALL failed {REPAIR_ATTEMPTS_MAX} times with every node up and no faults"),
            );
            self.schedule(0, Event::Finish);
        } else {
            self.schedule(REPAIR_RETRY_NANOS, Event::RepairNext);
        }
    }

    fn start_node(&mut self, index: usize) {
        let slot = &mut self.slots[index];
        assert!(slot.node.is_none(), "starting a running node");
        match Node::new(
            slot.id,
            &self.cluster,
            self.node_options.clone(),
            slot.disk.clone(),
        ) {
            Ok(node) => {
                slot.node = Some(node);
                self.check_durability(index, "after a restart");
            }
            Err(e) => {
                let id = slot.id;
                self.violate(
                    "recovery",
                    format!("{id} failed to start from its disk: {e}"),
                );
            }
        }
    }

    fn crash(&mut self, index: usize) {
        let slot = &mut self.slots[index];
        if let Some(node) = slot.node.take() {
            self.stats.tables_flushed += node.stats().tables_flushed;
            self.stats.compactions += node.stats().compactions;
            self.note_background_errors(index, &node);
            let slot = &mut self.slots[index];
            slot.disk.crash(&mut self.rng_disk);
            if self.config.planted_disk_loses_synced_writes {
                forget_newest_wal_segment(&slot.disk);
            }
            self.stats.crashes += 1;
        }
    }

    /// A failed background job is a bug in the simulation (its disks fail
    /// only by crashing); it must never pass silently.
    fn note_background_errors(&mut self, index: usize, node: &Node<SimDisk>) {
        let stats = node.stats();
        if stats.background_errors > 0 {
            let id = self.slots[index].id;
            let last = stats.last_background_error.clone().unwrap_or_default();
            self.violate(
                "storage",
                format!(
                    "{id}: {} background flush or compaction job(s) failed, the last with: {last}",
                    stats.background_errors
                ),
            );
        }
    }

    /// Every version `index` acknowledged as durable must still be there, or
    /// a newer one: replication would hide a replica that lost it. A loss is
    /// reported once: the node is then held to what it has.
    fn check_durability(&mut self, index: usize, when: &str) {
        let slot = &mut self.slots[index];
        let Some(node) = &slot.node else {
            return;
        };
        let mut lost = Vec::new();
        let mut lowered = Vec::new();
        for (key, &acked) in &slot.acknowledged {
            let held = match node.engine().get(key) {
                Ok(version) => version.map(|v| v.timestamp),
                Err(e) => {
                    lost.push((
                        "integrity",
                        format!(
                            "{} cannot read {} {when}: {e}",
                            slot.id,
                            String::from_utf8_lossy(key)
                        ),
                    ));
                    continue;
                }
            };
            if held.is_none_or(|held| held < acked) {
                lowered.push((key.clone(), held));
                let holds = held.map_or_else(
                    || "nothing".to_owned(),
                    |t| format!("version hlc {} by n{}", t.hlc, t.node),
                );
                lost.push((
                    "durability",
                    format!(
                        "{} acknowledged {} at version hlc {} by n{}, but {when} holds {holds}",
                        slot.id,
                        String::from_utf8_lossy(key),
                        acked.hlc,
                        acked.node
                    ),
                ));
            }
        }
        for (key, held) in lowered {
            match held {
                Some(held) => slot.acknowledged.insert(key, held),
                None => slot.acknowledged.remove(&key),
            };
        }
        for (property, details) in lost {
            self.violate(property, details);
        }
    }

    /// Feeds one input to a node and releases its outputs after the flush.
    fn step_node(&mut self, index: usize, input: Input) {
        let now = self.slots[index].clock.now(self.now);
        let slot = &mut self.slots[index];
        let Some(node) = slot.node.as_mut() else {
            return;
        };
        node.step(now, input);
        match node.flush() {
            Ok(outputs) => {
                for ack in node.take_acknowledged_writes() {
                    let newest = slot.acknowledged.entry(ack.key).or_insert(ack.timestamp);
                    if *newest < ack.timestamp {
                        *newest = ack.timestamp;
                    }
                    self.stats.writes_acknowledged += 1;
                }
                let versions: BTreeMap<RequestId, Version> = node
                    .take_reply_versions()
                    .into_iter()
                    .map(|v| (v.request, version_of(v.timestamp)))
                    .collect();
                for output in outputs {
                    let version = match &output {
                        Output::Reply { request, .. } => versions.get(request).copied(),
                        Output::Send { .. } => None,
                    };
                    self.emit(index, output, version);
                }
            }
            Err(e) => {
                let id = self.slots[index].id;
                self.trace
                    .record(self.now, &[7, index as u8], || format!("{id} stopped: {e}"));
                self.crash(index);
            }
        }
    }

    fn emit(&mut self, from: usize, output: Output, version: Option<Version>) {
        match output {
            Output::Send { to, envelope } => {
                let to = self
                    .slots
                    .iter()
                    .position(|s| s.id == to)
                    .expect("nodes only address cluster members");
                let frame = encode_frame(&envelope);
                self.stats.messages += 1;
                for delay in self.net.delays(&mut self.rng_net) {
                    self.schedule(
                        delay,
                        Event::Deliver {
                            from,
                            to,
                            frame: frame.clone(),
                        },
                    );
                }
            }
            Output::Reply { request, response } => {
                let delay = self.client_latency();
                self.schedule(
                    delay,
                    Event::Reply {
                        request,
                        answer: Answer::Response(response),
                        version,
                    },
                );
            }
        }
    }

    fn client_latency(&mut self) -> u64 {
        self.rng_clients
            .random_range(CLIENT_LATENCY_MIN_NANOS..=CLIENT_LATENCY_MAX_NANOS)
    }

    fn violate(&mut self, property: &'static str, details: String) {
        self.violations.push(Violation { property, details });
    }

    fn finish(mut self) -> RunReport {
        if self.phase != Phase::Done && self.violations.is_empty() {
            self.violate(
                "liveness",
                "the event queue ran dry before the run finished".to_owned(),
            );
        }
        for index in 0..self.slots.len() {
            if let Some(node) = self.slots[index].node.take() {
                self.stats.tables_flushed += node.stats().tables_flushed;
                self.stats.compactions += node.stats().compactions;
                self.note_background_errors(index, &node);
                self.slots[index].node = Some(node);
            }
        }
        let replicas = self.replica_states();
        let promises = self.check_history(replicas.as_ref());
        for op in self.history.operations() {
            match op.outcome() {
                enigma_checker::Outcome::Ok { .. } => self.stats.ops_ok += 1,
                enigma_checker::Outcome::Fail | enigma_checker::Outcome::Refused => {
                    self.stats.ops_fail += 1
                }
                enigma_checker::Outcome::Info => self.stats.ops_info += 1,
            }
        }
        RunReport {
            digest: self.trace.digest(),
            swarm: self.swarm,
            violations: self.violations,
            stats: self.stats,
            timeline: self.trace.lines().map(<[String]>::to_vec),
            history: self.history,
            versions: self.versions,
            promises,
            config: self.config,
        }
    }

    /// Every check the run's levels promise (linearizability where
    /// promised, lost writes, session guarantees, convergence), through the
    /// checker's one selection; each violation becomes a run violation.
    fn check_history(
        &mut self,
        replicas: Option<&BTreeMap<String, Vec<ReplicaVersion>>>,
    ) -> PromiseReport {
        let levels = levels_of(&self.config, &self.history);
        let history = ParsedHistory::Register(std::mem::take(&mut self.history));
        let report = check_promises(
            &PromiseInput {
                history: &history,
                levels: &levels,
                versions: &self.versions,
                facts: facts_of(&self.config),
                replicas,
            },
            &CheckOptions::default(),
            &|| false,
        );
        if let ParsedHistory::Register(h) = history {
            self.history = h;
        }
        for result in &report.checks {
            match result.status {
                Status::Passed | Status::NotApplicable => {}
                Status::Violated => self.violate(result.check.name(), result.note.clone()),
                Status::Unknown => self.violate(
                    result.check.name(),
                    format!("checker could not decide: {}", result.note),
                ),
            }
        }
        report
    }

    /// What every replica of every key holds after repair, for the
    /// convergence check; `None` when the run did not get that far. A
    /// replica that is down or cannot be read is a violation of its own.
    fn replica_states(&mut self) -> Option<BTreeMap<String, Vec<ReplicaVersion>>> {
        if self.phase != Phase::Done {
            return None;
        }
        let ring = Ring::new(
            &self.cluster.nodes,
            self.cluster.vnodes_per_node,
            self.cluster.replication_factor,
        )
        .expect("the configuration was validated");
        let mut replicas = BTreeMap::new();
        for key in &self.keys {
            let mut versions = Vec::new();
            for id in ring.replicas(key.as_bytes()) {
                let slot = self
                    .slots
                    .iter()
                    .find(|s| s.id == id)
                    .expect("replica is a member");
                let Some(node) = &slot.node else {
                    self.violations.push(Violation {
                        property: "convergence",
                        details: format!("replica {id} of {key} is down at the end of the run"),
                    });
                    continue;
                };
                match node.engine().get(key.as_bytes()) {
                    Ok(version) => versions.push(ReplicaVersion {
                        node: id.0,
                        version: version.map(|v| StoredVersion {
                            hlc: v.timestamp.hlc,
                            writer: v.timestamp.node,
                            value: v.value,
                        }),
                    }),
                    Err(e) => self.violations.push(Violation {
                        property: "integrity",
                        details: format!("replica {id} cannot read {key}: {e}"),
                    }),
                }
            }
            replicas.insert(key.clone(), versions);
        }
        Some(replicas)
    }
}

/// The planted broken disk: cuts the newest write-ahead log segment back to
/// its header after a crash, losing records that were synced (and perhaps
/// acknowledged). Recovery takes the empty segment for a torn tail.
fn forget_newest_wal_segment(disk: &SimDisk) {
    let Ok(names) = disk.list() else {
        return;
    };
    let Some(newest) = names
        .into_iter()
        .filter(|n| n.starts_with("wal-") && n.ends_with(".log"))
        .max()
    else {
        return;
    };
    if let Ok(mut file) = disk.open(&newest) {
        if file.len().is_ok_and(|len| len > WAL_RECORDS_OFFSET) {
            let _ = file.truncate(WAL_RECORDS_OFFSET);
            let _ = file.sync();
        }
    }
}

fn on_off(on: bool) -> &'static str {
    if on {
        "on"
    } else {
        "off"
    }
}

/// Appends a stable encoding of a client request, for the trace digest.
fn encode_request(body: &ClientRequest, bytes: &mut Vec<u8>) {
    let (kind, key, value): (u8, &[u8], &[u8]) = match &body.op {
        ClientOp::Get { key } => (0, key, &[]),
        ClientOp::Put { key, value } => (1, key, value),
        ClientOp::Delete { key } => (2, key, &[]),
    };
    bytes.push(kind);
    bytes.push(body.level as u8);
    bytes.extend_from_slice(&(key.len() as u64).to_le_bytes());
    bytes.extend_from_slice(key);
    bytes.extend_from_slice(value);
}

/// Appends a stable encoding of a client answer, for the trace digest.
fn encode_answer(answer: &Answer, bytes: &mut Vec<u8>) {
    match answer {
        Answer::Refused => bytes.push(0),
        Answer::Response(ClientResponse::Written) => bytes.push(1),
        Answer::Response(ClientResponse::Value(None)) => bytes.push(2),
        Answer::Response(ClientResponse::Value(Some(value))) => {
            bytes.push(3);
            bytes.extend_from_slice(value);
        }
        Answer::Response(ClientResponse::Error(e)) => {
            bytes.push(4);
            bytes.extend_from_slice(e.to_string().as_bytes());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use enigma_cluster::{ClientOp, Now};

    fn node_on(disk: &SimDisk, memtable_bytes: usize) -> Node<SimDisk> {
        let cluster = ClusterConfig {
            nodes: vec![NodeId(1)],
            replication_factor: 1,
            vnodes_per_node: 4,
        };
        let options = NodeOptions {
            engine: EngineOptions {
                memtable_bytes_max: memtable_bytes,
                ..EngineOptions::default()
            },
            ..NodeOptions::default()
        };
        Node::new(NodeId(1), &cluster, options, disk.clone()).expect("a fresh disk")
    }

    fn put(node: &mut Node<SimDisk>, request: u64, key: &str) -> Vec<Output> {
        let body = ClientRequest {
            op: ClientOp::Put {
                key: key.as_bytes().to_vec(),
                value: vec![b'v'; 300],
            },
            level: ConsistencyLevel::One,
        };
        node.step(
            Now::default(),
            Input::Client {
                request: RequestId(request),
                body,
            },
        );
        node.flush().expect("writes are durable")
    }

    /// A flush on a tick whose sync fails poisons the engine; the node stops
    /// acknowledging rather than carrying on as if its data were safe.
    #[test]
    fn a_failed_background_flush_stops_the_node() {
        let disk = SimDisk::new(SimDiskFaults::default());
        let mut node = node_on(&disk, 1024);
        for i in 0..4 {
            put(&mut node, i, &format!("k{i}"));
        }
        disk.fail_next_sync();
        node.step(Now::default(), Input::Tick);
        assert_eq!(node.stats().background_errors, 1);
        assert!(
            node.flush().is_err(),
            "the node went on after a failed sync"
        );
        assert!(node.engine().poisoned_reason().is_some());
        // Restarted from its disk, it holds every acknowledged write.
        drop(node);
        let node = node_on(&disk, 1024);
        for i in 0..4 {
            let key = format!("k{i}");
            assert!(node
                .engine()
                .get(key.as_bytes())
                .expect("readable")
                .is_some());
        }
    }

    /// Without a failure the same tick flushes the memtable as a table.
    #[test]
    fn a_tick_flushes_a_full_memtable() {
        let disk = SimDisk::new(SimDiskFaults::default());
        let mut node = node_on(&disk, 1024);
        for i in 0..4 {
            put(&mut node, i, &format!("k{i}"));
        }
        node.step(Now::default(), Input::Tick);
        node.flush().expect("healthy");
        assert_eq!(node.stats().tables_flushed, 1);
        assert_eq!(node.engine().tables_total(), 1);
    }

    #[test]
    fn the_planted_disk_forgets_the_newest_log_records() {
        let disk = SimDisk::new(SimDiskFaults::default());
        let mut node = node_on(&disk, 64 * 1024);
        put(&mut node, 1, "k");
        drop(node);
        disk.crash(&mut stream(1, "disk"));
        forget_newest_wal_segment(&disk);
        let node = node_on(&disk, 64 * 1024);
        assert_eq!(node.engine().get(b"k").expect("readable"), None);
    }
}
