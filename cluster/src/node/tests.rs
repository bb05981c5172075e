//! Unit tests of the node, driven by hand on real files.
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
    let old_acks = [h.deliver(0, &old[0]), h.deliver(0, &old[1])];
    // n1 crashes and restarts: its new first operation reuses seq 0.
    h.nodes[0] = None;
    let node = h.start(0);
    h.nodes[0] = Some(node);
    let new = h.client(0, 2, put("k", "new"), ConsistencyLevel::All);
    assert!(replies(&new).is_empty());
    for acks in &old_acks {
        let out = h.deliver(1, &acks[0]);
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
    let answer = h.deliver(2, to_n1);
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
