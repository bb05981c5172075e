//! One simulation run: a cluster, its clients and a nemesis on one
//! virtual-time event queue, then the checks.
//!
//! A run has two phases. In the *safety* phase clients issue operations
//! while the nemesis crashes and restarts nodes and partitions the network,
//! and the network loses and duplicates messages. In the *heal* phase the
//! faults stop (every node restarted, every link up, no loss), a repair
//! client reads every key at `ALL` (whose blocking read repair brings every
//! replica up to date; hinted handoff and anti-entropy will take this over),
//! and the run settles. Then the history is checked for linearizability
//! (where the consistency level promises it) and the replicas for
//! convergence. Everything random comes from named streams of the seed, and
//! every delivered event is folded into the trace digest.

use std::collections::BTreeMap;

use enigma_checker::format::enigma::{events_of_history, write_events, Level};
use enigma_checker::{
    check_convergence, check_linearizable, Call, History, OpId, ReplicaVersion, StoredVersion,
    Verdict,
};
use enigma_cluster::{
    decode_frame, encode_frame, ClientOp, ClientRequest, ClientResponse, ClusterConfig,
    ConsistencyLevel, Decoded, Input, Node, NodeId, NodeOptions, Output, RequestId, Ring,
};
use enigma_engine::EngineOptions;
use enigma_workloads::register::{decode_value, encode_value};
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

/// What went wrong in a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// The property: `linearizability`, `convergence`, `liveness`,
    /// `recovery` or `integrity`.
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
}

impl RunReport {
    /// Whether every check passed.
    pub fn passed(&self) -> bool {
        self.violations.is_empty()
    }

    /// The client history in EnigmaDB's JSON Lines format (docs/FORMAT.md),
    /// each event carrying the consistency level it was issued at, for
    /// `enigma check`.
    pub fn history_json_lines(&self) -> String {
        let repair_process = self.config.clients as u64;
        let mut events = events_of_history(&self.history);
        for event in &mut events {
            let level = if event.process == repair_process {
                ConsistencyLevel::All
            } else {
                self.config.level
            };
            event.level = Some(match level {
                ConsistencyLevel::One => Level::One,
                ConsistencyLevel::Two => Level::Two,
                ConsistencyLevel::Quorum => Level::Quorum,
                ConsistencyLevel::All => Level::All,
            });
        }
        write_events(&events)
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
    /// An answer arrives at the client that sent `request`.
    Reply { request: RequestId, answer: Answer },
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
                ..EngineOptions::default()
            },
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
            })
            .collect();
        let workload = RegisterWorkload::new(RegisterOptions {
            keys: config.keys,
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
            Event::Reply { request, answer } => self.on_reply(request, answer),
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
                },
            );
            return;
        }
        self.step_node(node, Input::Client { request, body });
    }

    fn on_reply(&mut self, request: RequestId, answer: Answer) {
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
                value: encode_value(*value),
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
            Ok(node) => slot.node = Some(node),
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
        if slot.node.take().is_some() {
            slot.disk.crash(&mut self.rng_disk);
            self.stats.crashes += 1;
        }
    }

    /// Feeds one input to a node and releases its outputs after the flush.
    fn step_node(&mut self, index: usize, input: Input) {
        let now = self.slots[index].clock.now(self.now);
        let Some(node) = self.slots[index].node.as_mut() else {
            return;
        };
        node.step(now, input);
        match node.flush() {
            Ok(outputs) => {
                for output in outputs {
                    self.emit(index, output);
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

    fn emit(&mut self, from: usize, output: Output) {
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
        self.check_history();
        self.check_replicas();
        for op in self.history.operations() {
            match op.outcome() {
                enigma_checker::Outcome::Ok { .. } => self.stats.ops_ok += 1,
                enigma_checker::Outcome::Fail => self.stats.ops_fail += 1,
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
            config: self.config,
        }
    }

    /// Linearizability is promised when reads and writes at the run's level
    /// overlap in at least one replica and clocks agree (DESIGN.md section 5).
    fn linearizability_promised(&self) -> bool {
        let rf = self.config.replication_factor;
        let required = self.config.level.replicas_required(rf).unwrap_or(0);
        2 * required > rf && self.config.clock_skew_max_ms == 0
    }

    fn check_history(&mut self) {
        if !self.linearizability_promised() {
            return;
        }
        match check_linearizable(&self.history) {
            Verdict::Linearizable => {}
            Verdict::NotLinearizable(counterexample) => {
                self.violate("linearizability", counterexample.to_string());
            }
            Verdict::Unknown { reason } => {
                self.violate(
                    "linearizability",
                    format!("checker could not decide: {reason}"),
                );
            }
        }
    }

    /// Every replica of every key must hold the same version after repair.
    fn check_replicas(&mut self) {
        if self.phase != Phase::Done {
            return;
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
        if let Err(violation) = check_convergence(&replicas) {
            self.violate("convergence", violation.to_string());
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
