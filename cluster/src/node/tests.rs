//! Unit tests of the node, driven by hand on real files.
use super::*;
use crate::consistency::ConsistencyLevel;
use crate::gossip::{Gossip, SelfReadings};
use crate::ids::OpId;
use crate::message::{ClientError, ClientOp, SessionFloor, WireVersion};
use enigma_engine::EngineOptions;
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
        self.client_in_session(i, request, op, level, SessionFloor::default())
    }

    /// A client request carrying its session's floors.
    fn client_in_session(
        &mut self,
        i: usize,
        request: u64,
        op: ClientOp,
        level: ConsistencyLevel,
        session: SessionFloor,
    ) -> Vec<Output> {
        let body = ClientRequest { op, level, session };
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

impl Harness {
    /// Delivers `outputs` of node `from` and everything they cause, among
    /// running nodes (messages to a stopped node are lost); returns every
    /// client reply, in order.
    fn pump(&mut self, from: usize, outputs: Vec<Output>) -> Vec<ClientResponse> {
        let mut queue: std::collections::VecDeque<(usize, Output)> =
            outputs.into_iter().map(|o| (from, o)).collect();
        let mut out = Vec::new();
        while let Some((from, output)) = queue.pop_front() {
            match output {
                Output::Reply { response, .. } => out.push(response),
                Output::Send { to, .. } => {
                    let to_index = to.0 as usize - 1;
                    if self.nodes[to_index].is_none() {
                        continue;
                    }
                    let next = self.deliver(from, &output);
                    queue.extend(next.into_iter().map(|o| (to_index, o)));
                }
            }
        }
        out
    }

    /// Advances time by `nanos` and ticks every running node, delivering
    /// what the ticks send.
    fn tick_all(&mut self, nanos: u64) -> Vec<ClientResponse> {
        self.now.mono_nanos += nanos;
        self.now.wall_nanos += nanos;
        let mut out = Vec::new();
        for i in 0..self.nodes.len() {
            if self.nodes[i].is_some() {
                let outputs = self.step(i, Input::Tick);
                out.extend(self.pump(i, outputs));
            }
        }
        out
    }

    /// A client operation at node `i`, with every message it causes
    /// delivered.
    fn call(&mut self, i: usize, op: ClientOp, level: ConsistencyLevel) -> Vec<ClientResponse> {
        let outputs = self.client(i, 99, op, level);
        self.pump(i, outputs)
    }
}

/// Options of a cluster that heals itself quickly.
/// A gossip round from `peer` whose wall clock reads `peer_wall_nanos`.
fn gossip_from(h: &Harness, peer: u32, peer_wall_nanos: u64) -> Input {
    let mut gossip = Gossip::new(NodeId(peer), 1, &h.cluster.nodes, peer_wall_nanos);
    let states = gossip.syn(SelfReadings {
        wall_nanos: peer_wall_nanos,
        hlc: crate::hlc::HlcClock::physical(peer_wall_nanos),
        hints_pending: 0,
        repair_completed_wall_nanos: 0,
    });
    Input::Message {
        from: NodeId(peer),
        envelope: Envelope {
            hlc: crate::hlc::HlcClock::physical(peer_wall_nanos),
            message: Message::GossipSyn { states },
        },
    }
}

/// Lets node `i` judge its clock: a gossip round from every peer, its wall
/// clock reading the same as the harness's. Until then a node's own
/// replica does not take a write at `ONE` alone.
fn judge_clocks(h: &mut Harness, i: usize) {
    let wall = h.now.wall_nanos;
    for peer in h.cluster.nodes.clone() {
        if peer.0 as usize != i + 1 {
            let input = gossip_from(h, peer.0, wall);
            h.step(i, input);
        }
    }
}

fn healing_options() -> NodeOptions {
    NodeOptions {
        gossip_interval_nanos: 100 * MS,
        anti_entropy: crate::anti_entropy::AntiEntropyOptions {
            interval_nanos: 200 * MS,
            resend_nanos: 100 * MS,
            session_timeout_nanos: 2_000 * MS,
            ..Default::default()
        },
        ..NodeOptions::default()
    }
}

const MS: u64 = 1_000_000;

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
fn a_damaged_log_refuses_the_start_and_says_so() {
    let mut h = Harness::new(1, NodeOptions::default());
    let out = h.client(0, 1, put("k", "v"), ConsistencyLevel::One);
    assert_eq!(replies(&out), vec![&ClientResponse::Written]);
    h.nodes[0] = None;
    // The restart seals the first segment: damage in it is no torn tail.
    drop(h.start(0));
    let segment = "wal-00000000000000000001.log";
    let path = h.dirs[0].path().join(segment);
    let mut bytes = std::fs::read(&path).unwrap();
    let at = enigma_engine::WAL_RECORDS_OFFSET as usize + 12;
    bytes[at] ^= 0x10;
    std::fs::write(&path, &bytes).unwrap();
    let disk = FsDisk::open(h.dirs[0].path()).unwrap();
    let err = Node::new(NodeId(1), &h.cluster, h.options.clone(), disk)
        .map(|_| ())
        .expect_err("damaged log");
    match &err {
        NodeError::Damaged { file, offset, .. } => {
            assert_eq!(
                (file.as_str(), *offset),
                (segment, enigma_engine::WAL_RECORDS_OFFSET)
            );
        }
        other => panic!("expected damage, got {other:?}"),
    }
    let text = err.to_string();
    assert!(text.contains(segment), "{text}");
    assert!(
        text.contains("rebuild this replica from its peers"),
        "{text}"
    );
    assert_eq!(std::fs::read(&path).unwrap(), bytes, "files left as found");
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

/// n1 coordinates a write at `ALL`, crashes before the acknowledgements
/// arrive, restarts and coordinates a new write that reuses the sequence
/// number; then the old acknowledgements arrive, each from the replica that
/// produced it. Returns what n1 answered the new write.
fn stale_acknowledgements_after_a_restart(options: NodeOptions) -> Vec<ClientResponse> {
    let mut h = Harness::new(3, options);
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
    let mut answered = Vec::new();
    for (replica, acks) in &old_acks {
        let out = h.deliver(*replica, &acks[0]);
        answered.extend(replies(&out).into_iter().cloned());
    }
    answered
}

#[test]
fn acknowledgements_for_a_previous_incarnation_are_not_counted() {
    let answered = stale_acknowledgements_after_a_restart(NodeOptions::default());
    assert!(
        answered.is_empty(),
        "stale acks completed a new write: {answered:?}"
    );
}

/// The test above bites: a coordinator that ignores the generation counts
/// the two stale acknowledgements, one per replica, and answers the new
/// write although neither replica has it.
#[test]
fn the_planted_coordinator_counts_acknowledgements_of_its_previous_incarnation() {
    let answered = stale_acknowledgements_after_a_restart(NodeOptions {
        bug_count_answers_of_earlier_generations: true,
        ..NodeOptions::default()
    });
    assert_eq!(answered, vec![ClientResponse::Written]);
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
            timestamp: stamp,
            tombstone: false,
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

#[test]
fn a_coordinator_refuses_at_once_what_its_failure_detector_says_it_cannot_do() {
    let mut h = Harness::new(3, healing_options());
    h.now.wall_nanos = 1_000_000_000_000;
    for _ in 0..10 {
        h.tick_all(100 * MS);
    }
    assert!(h.node(0).believes_up(NodeId(3)));
    h.nodes[2] = None;
    for _ in 0..40 {
        h.tick_all(100 * MS);
    }
    assert!(!h.node(0).believes_up(NodeId(3)), "n3 convicted");
    let now = h.now;
    let view = h.node(0).members(now);
    assert!(!view[2].up && view[2].phi > 8.0 && view[1].up);
    let out = h.call(0, put("k", "v"), ConsistencyLevel::All);
    assert_eq!(
        out,
        vec![ClientResponse::Error(ClientError::Unavailable {
            alive: 2,
            required: 3
        })]
    );
    assert_eq!(
        h.node(0).engine().get(b"k").unwrap(),
        None,
        "nothing applied"
    );
    assert_eq!(h.node(0).stats().unavailable, 1);
    // QUORUM still works; the down replica gets a hint instead of a message.
    let out = h.call(0, put("k", "v"), ConsistencyLevel::Quorum);
    assert_eq!(out, vec![ClientResponse::Written]);
    assert_eq!(h.node(0).hints_held(), 1);
}

#[test]
fn the_planted_bug_waits_on_a_replica_held_down() {
    let options = NodeOptions {
        bug_wait_on_down_replicas: true,
        ..healing_options()
    };
    let mut h = Harness::new(3, options);
    h.now.wall_nanos = 1_000_000_000_000;
    h.tick_all(100 * MS);
    h.nodes[2] = None;
    for _ in 0..40 {
        h.tick_all(100 * MS);
    }
    assert!(!h.node(0).believes_up(NodeId(3)));
    assert!(h.call(0, put("k", "v"), ConsistencyLevel::All).is_empty());
    let out = h.tick_all(2_000 * MS);
    assert!(
        matches!(
            out[..],
            [ClientResponse::Error(ClientError::Timeout { .. })]
        ),
        "{out:?}"
    );
}

#[test]
fn a_hint_reaches_its_replica_when_it_comes_back_and_only_then_is_deleted() {
    let mut h = Harness::new(3, healing_options());
    h.now.wall_nanos = 1_000_000_000_000;
    h.tick_all(100 * MS);
    h.nodes[2] = None;
    for _ in 0..40 {
        h.tick_all(100 * MS);
    }
    for i in 0..5 {
        let out = h.call(0, put(&format!("k{i}"), "v"), ConsistencyLevel::Quorum);
        assert_eq!(out, vec![ClientResponse::Written]);
    }
    assert_eq!(h.node(0).hints_held(), 5);
    // The coordinator restarts: its hints are durable.
    h.nodes[0] = None;
    let node = h.start(0);
    h.nodes[0] = Some(node);
    assert_eq!(h.node(0).hints_held(), 5);
    // n3 comes back; gossip brings it up and the hints are replayed.
    let node = h.start(2);
    h.nodes[2] = Some(node);
    for _ in 0..30 {
        h.tick_all(100 * MS);
    }
    assert_eq!(h.node(0).hints_held(), 0);
    for i in 0..5 {
        let stored = h.node(2).engine().get(format!("k{i}").as_bytes()).unwrap();
        assert_eq!(stored.and_then(|v| v.value), Some(b"v".to_vec()));
    }
    // Counters start with the process: the hints were stored by the
    // previous incarnation, replayed by this one.
    let stats = h.node(0).hint_stats();
    assert_eq!(stats.len(), 1);
    assert_eq!(stats[0].0, NodeId(3));
    assert_eq!((stats[0].1.stored, stats[0].1.replayed), (0, 5));
}

#[test]
fn anti_entropy_alone_repairs_a_replica_that_missed_writes() {
    let mut options = healing_options();
    options.hints.enabled = false;
    let mut h = Harness::new(3, options);
    h.now.wall_nanos = 1_000_000_000_000;
    h.tick_all(100 * MS);
    h.nodes[2] = None;
    for i in 0..20 {
        let out = h.call(0, put(&format!("k{i}"), "v"), ConsistencyLevel::Quorum);
        assert_eq!(out, vec![ClientResponse::Written]);
    }
    assert_eq!(h.node(0).hints_held(), 0, "hints are off");
    let node = h.start(2);
    h.nodes[2] = Some(node);
    for _ in 0..60 {
        h.tick_all(100 * MS);
    }
    for i in 0..20 {
        let stored = h.node(2).engine().get(format!("k{i}").as_bytes()).unwrap();
        assert_eq!(stored.and_then(|v| v.value), Some(b"v".to_vec()), "k{i}");
    }
    assert!(h.node(0).anti_entropy_stats().sessions_completed >= 1);
    assert!(h.node(2).anti_entropy_stats().keys_received >= 20);
}

#[test]
fn anti_entropy_scans_keep_to_their_byte_rate_with_sessions_back_to_back() {
    const RATE: u64 = 100_000;
    let mut options = healing_options();
    options.anti_entropy.interval_nanos = 10 * MS;
    options.anti_entropy.scan_bytes_per_sec = RATE;
    let mut h = Harness::new(3, options);
    h.now.wall_nanos = 1_000_000_000_000;
    let value = "v".repeat(100);
    for i in 0..1_000 {
        let out = h.call(
            0,
            put(&format!("key-{i:05}"), &value),
            ConsistencyLevel::All,
        );
        assert_eq!(out, vec![ClientResponse::Written]);
    }
    let before: Vec<u64> = (0..3)
        .map(|i| h.node(i).anti_entropy_stats().bytes_scanned)
        .collect();
    let seconds = 5;
    for _ in 0..seconds * 100 {
        h.tick_all(10 * MS);
    }
    let entry = crate::anti_entropy::AntiEntropy::entry_cost(b"key-00000", Some(value.as_bytes()));
    let burst = RATE * crate::anti_entropy::pacing::BURST_NANOS / 1_000_000_000;
    let bound = RATE * seconds + burst + entry;
    let mut busiest = 0;
    for (i, before) in before.iter().enumerate() {
        let scanned = h.node(i).anti_entropy_stats().bytes_scanned - before;
        assert!(
            scanned <= bound,
            "n{}: {scanned} bytes in {seconds} s > {bound}",
            i + 1
        );
        busiest = busiest.max(scanned);
    }
    // Sessions back to back keep at least one node scanning most of the
    // time: the rate is the limit, not a lack of work.
    assert!(busiest >= RATE * seconds / 2, "{busiest}");
    assert!(h.node(0).anti_entropy_stats().sessions_completed >= 1);
}

#[test]
fn an_operators_full_pass_answers_with_what_it_did() {
    let mut options = healing_options();
    options.hints.enabled = false;
    options.anti_entropy.continuous = false;
    let mut h = Harness::new(3, options);
    h.now.wall_nanos = 1_000_000_000_000;
    h.tick_all(100 * MS);
    h.nodes[1] = None;
    h.call(0, put("a", "1"), ConsistencyLevel::Quorum);
    let node = h.start(1);
    h.nodes[1] = Some(node);
    h.tick_all(100 * MS);
    let out = h.client(1, 5, ClientOp::Repair, ConsistencyLevel::One);
    assert!(out.iter().all(|o| !matches!(o, Output::Reply { .. })));
    let mut replies = h.pump(1, out);
    for _ in 0..30 {
        replies.extend(h.tick_all(100 * MS));
    }
    let [ClientResponse::Repaired(report)] = replies.as_slice() else {
        panic!("{replies:?}")
    };
    assert_eq!((report.ranges_compared, report.ranges_failed), (1, 0));
    assert!(report.keys_exchanged >= 1);
    assert!(h.node(1).engine().get(b"a").unwrap().is_some());
}

#[test]
fn readings_far_ahead_of_this_clock_are_refused_and_counted() {
    let mut h = Harness::new(2, NodeOptions::default());
    h.now.wall_nanos = 1_000_000_000_000;
    let ahead = crate::hlc::HlcClock::physical(h.now.wall_nanos + 2_000_000_000);
    let envelope = Envelope {
        hlc: ahead,
        message: Message::Read {
            op: OpId {
                generation: 1,
                seq: 0,
            },
            key: b"k".to_vec(),
        },
    };
    let out = h.step(
        0,
        Input::Message {
            from: NodeId(2),
            envelope,
        },
    );
    assert!(out.is_empty());
    assert_eq!(h.node(0).stats().clock_refusals.get(&NodeId(2)), Some(&1));
    // A write stamped far ahead, in an envelope that is not, is refused too.
    let envelope = Envelope {
        hlc: 1,
        message: Message::Write {
            op: OpId {
                generation: 1,
                seq: 1,
            },
            key: b"k".to_vec(),
            version: WireVersion {
                hlc: ahead,
                node: 2,
                value: Some(b"x".to_vec()),
            },
        },
    };
    let out = h.step(
        0,
        Input::Message {
            from: NodeId(2),
            envelope,
        },
    );
    assert!(out.is_empty());
    assert_eq!(h.node(0).engine().get(b"k").unwrap(), None);
    assert_eq!(h.node(0).stats().clock_refusals.get(&NodeId(2)), Some(&2));
}

#[test]
fn reserved_keys_are_refused_and_hints_for_keys_not_held_too() {
    let mut h = Harness::new(1, NodeOptions::default());
    let out = h.call(0, put("\u{ffff}", "v"), ConsistencyLevel::One);
    assert_eq!(out, vec![ClientResponse::Written], "U+FFFF is not FF FF");
    let out = h.call(
        0,
        ClientOp::Put {
            key: b"\xff\xffsneaky".to_vec(),
            value: b"v".to_vec(),
        },
        ConsistencyLevel::One,
    );
    assert!(matches!(
        out[..],
        [ClientResponse::Error(ClientError::Invalid { .. })]
    ));
    // Three nodes, two replicas per key: n1 refuses a hint for a key it
    // does not replicate.
    let mut h = Harness::new(3, NodeOptions::default());
    h.cluster.replication_factor = 2;
    let node = h.start(0);
    h.nodes[0] = Some(node);
    let ring = Ring::new(&h.cluster.nodes, 4, 2).unwrap();
    let foreign = (0..1000)
        .map(|i| format!("k{i}"))
        .find(|k| !ring.replicas(k.as_bytes()).contains(&NodeId(1)))
        .unwrap();
    let envelope = Envelope {
        hlc: 1,
        message: Message::Hint {
            id: 7,
            key: foreign.clone().into_bytes(),
            version: WireVersion {
                hlc: 1,
                node: 2,
                value: Some(b"x".to_vec()),
            },
        },
    };
    let out = h.step(
        0,
        Input::Message {
            from: NodeId(2),
            envelope,
        },
    );
    assert!(out.is_empty(), "no acknowledgement: {out:?}");
    assert_eq!(h.node(0).stats().hints_refused, 1);
    assert_eq!(h.node(0).engine().get(foreign.as_bytes()).unwrap(), None);
}

#[test]
fn under_the_interval_policy_ticks_sync_and_flushes_do_not() {
    let options = NodeOptions {
        engine: EngineOptions {
            sync_policy: enigma_engine::SyncPolicy::Interval {
                interval_nanos: 10 * MS,
            },
            ..EngineOptions::default()
        },
        ..NodeOptions::default()
    };
    let mut h = Harness::new(1, options);
    let out = h.call(0, put("k", "v"), ConsistencyLevel::One);
    assert_eq!(out, vec![ClientResponse::Written]);
    assert!(
        h.node(0).engine().has_unsynced(),
        "acknowledged before durable"
    );
    h.tick_all(10 * MS);
    assert!(!h.node(0).engine().has_unsynced(), "the tick synced");
}

#[test]
fn a_storage_error_is_said_once_in_an_error_chain() {
    use std::error::Error as _;
    let e = NodeError::from(EngineError::NoSpace {
        file: "wal-1.log".into(),
    });
    let text = e.to_string();
    assert_eq!(text.matches("wal-1.log").count(), 1, "{text}");
    // A log printing the chain (`{:#}`) adds each source's text: none.
    assert!(e.source().is_none());
}

#[path = "clock_tests.rs"]
mod clock;

#[path = "serial_tests.rs"]
mod serial;

#[path = "quarantine_tests.rs"]
mod quarantine;

/// The version a reply in `outputs` carries.
fn reply_version_of(outputs: &[Output]) -> Option<Timestamp> {
    outputs.iter().find_map(|o| match o {
        Output::Reply { version, .. } => *version,
        Output::Send { .. } => None,
    })
}

#[test]
fn a_one_read_returns_nothing_older_than_its_sessions_floor_for_the_key() {
    let mut h = Harness::new(3, NodeOptions::default());
    judge_clocks(&mut h, 0);
    // Written at ONE through n1; the copies to n2 and n3 are not delivered.
    let out = h.client(0, 1, put("k", "new"), ConsistencyLevel::One);
    assert_eq!(replies(&out), vec![&ClientResponse::Written]);
    let written = reply_version_of(&out).expect("a write's reply carries its version");
    // Without a floor, n2 answers from its own replica at once: absent.
    let out = h.client(1, 2, get("k"), ConsistencyLevel::One);
    assert_eq!(replies(&out), vec![&ClientResponse::Value(None)]);
    // With the session's floor for the key, n2's own answer is too old: it
    // waits for the replicas, and n1's holds the version.
    let session = SessionFloor {
        seen: Some(written),
        key: Some(written),
    };
    let out = h.client_in_session(1, 3, get("k"), ConsistencyLevel::One, session);
    assert!(replies(&out).is_empty(), "{out:?}");
    let answers = h.pump(1, out);
    assert_eq!(answers, vec![ClientResponse::Value(Some(b"new".to_vec()))]);
    // A floor for another key does not hold this one back.
    let session = SessionFloor {
        seen: Some(written),
        key: None,
    };
    let out = h.client_in_session(1, 4, get("other"), ConsistencyLevel::One, session);
    assert_eq!(replies(&out), vec![&ClientResponse::Value(None)]);
}

#[test]
fn a_read_whose_floor_no_replica_meets_fails_at_its_deadline_naming_the_floor() {
    let options = NodeOptions::default();
    let timeout = options.request_timeout_nanos;
    let mut h = Harness::new(3, options);
    let ahead = Timestamp {
        hlc: HlcClock::physical(50 * MS),
        node: 9,
    };
    let session = SessionFloor {
        seen: Some(ahead),
        key: Some(ahead),
    };
    let out = h.client_in_session(0, 1, get("k"), ConsistencyLevel::One, session);
    let mut answers = h.pump(0, out);
    let mut waited = 0;
    while answers.is_empty() && waited <= timeout {
        answers = h.tick_all(10 * MS);
        waited += 10 * MS;
    }
    let [ClientResponse::Error(error @ ClientError::SessionFloor { floor_hlc, .. })] =
        answers.as_slice()
    else {
        panic!("expected the session floor's error, got {answers:?}");
    };
    assert_eq!(*floor_hlc, ahead.hlc);
    assert!(!error.may_have_applied());
    assert!(h.node(0).stats().session_floor_reads_asked_again > 0);
}

#[test]
fn a_write_is_stamped_above_its_sessions_floor_unless_the_floor_is_beyond_the_clock_bound() {
    let options = NodeOptions::default();
    let bound = options.clock_offset_max_nanos;
    let mut h = Harness::new(1, options);
    let within = Timestamp {
        hlc: HlcClock::physical(bound / 2),
        node: 7,
    };
    let session = SessionFloor {
        seen: Some(within),
        key: None,
    };
    let out = h.client_in_session(0, 1, put("k", "v"), ConsistencyLevel::One, session);
    assert_eq!(replies(&out), vec![&ClientResponse::Written]);
    let stamped = reply_version_of(&out).expect("a write's reply carries its version");
    assert!(stamped > within, "{stamped:?} not above {within:?}");
    let beyond = Timestamp {
        hlc: HlcClock::physical(bound * 2),
        node: 7,
    };
    let session = SessionFloor {
        seen: Some(beyond),
        key: None,
    };
    let out = h.client_in_session(0, 2, put("k", "w"), ConsistencyLevel::One, session);
    let [ClientResponse::Error(ClientError::Clock { reason })] = replies(&out).as_slice() else {
        panic!("expected a clock refusal, got {out:?}");
    };
    assert!(reason.contains("this session has seen"), "{reason}");
    assert_eq!(h.node(0).stats().session_floors_refused, 1);
    let stored = h.node(0).engine().get(b"k").unwrap().unwrap();
    assert_eq!(stored.value, Some(b"v".to_vec()), "nothing applied");
}

#[test]
fn a_coordinator_planted_to_ignore_session_floors_answers_older_than_the_floor() {
    let options = NodeOptions {
        bug_ignore_session_floors: true,
        ..NodeOptions::default()
    };
    let mut h = Harness::new(3, options);
    judge_clocks(&mut h, 0);
    let out = h.client(0, 1, put("k", "new"), ConsistencyLevel::One);
    let written = reply_version_of(&out).expect("a version");
    let session = SessionFloor {
        seen: Some(written),
        key: Some(written),
    };
    let out = h.client_in_session(1, 2, get("k"), ConsistencyLevel::One, session);
    assert_eq!(replies(&out), vec![&ClientResponse::Value(None)]);
}
