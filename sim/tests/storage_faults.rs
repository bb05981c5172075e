//! Nodes on `SimDisk` meeting corrupt tables and full disks, with every
//! message routed by hand: a corrupt replica answers at once (no timeout),
//! the coordinator answers from the others and repairs it, or names node,
//! file and offset when the level cannot be met; a full disk answers writes
//! with `NoSpace`, keeps serving reads, and takes writes again by itself
//! once space is back, losing nothing it acknowledged.

use std::collections::VecDeque;

use enigma_cluster::{
    ClientError, ClientOp, ClientRequest, ClientResponse, ClusterConfig, ConsistencyLevel, Input,
    Node, NodeId, NodeOptions, Now, Output, RequestId, SessionFloor,
};
use enigma_engine::{Disk, EngineOptions, TableCompression, MEMTABLE_BYTES_MIN};
use enigma_sim::disk::{SimDisk, SimDiskFaults};
use rand::SeedableRng;

/// A cluster whose messages are delivered at once, in order.
struct Cluster {
    config: ClusterConfig,
    options: NodeOptions,
    disks: Vec<SimDisk>,
    nodes: Vec<Option<Node<SimDisk>>>,
    now: Now,
    next_request: u64,
}

impl Cluster {
    fn new(size: u32, options: NodeOptions) -> Cluster {
        let config = ClusterConfig {
            nodes: (1..=size).map(NodeId).collect(),
            replication_factor: size as usize,
            vnodes_per_node: 4,
        };
        let disks: Vec<SimDisk> = (0..size)
            .map(|_| SimDisk::new(SimDiskFaults::default()))
            .collect();
        let mut cluster = Cluster {
            config,
            options,
            disks,
            nodes: Vec::new(),
            now: Now {
                mono_nanos: 1,
                wall_nanos: 1_000_000_000,
            },
            next_request: 0,
        };
        for index in 0..size as usize {
            let node = cluster.start(index);
            cluster.nodes.push(Some(node));
        }
        cluster
    }

    fn start(&self, index: usize) -> Node<SimDisk> {
        Node::new(
            NodeId(index as u32 + 1),
            &self.config,
            self.options.clone(),
            self.disks[index].clone(),
        )
        .expect("start")
    }

    /// Steps node `index` with `input`, then delivers every message until
    /// none is left; returns the client replies, in order.
    fn run(&mut self, index: usize, input: Input) -> Vec<ClientResponse> {
        let mut inbox = VecDeque::from([(index, input)]);
        let mut replies = Vec::new();
        while let Some((to, input)) = inbox.pop_front() {
            let node = self.nodes[to].as_mut().expect("running");
            node.step(self.now, input);
            for output in node.flush().expect("no fatal storage failure") {
                match output {
                    Output::Send { to: peer, envelope } => inbox.push_back((
                        peer.0 as usize - 1,
                        Input::Message {
                            from: NodeId(to as u32 + 1),
                            envelope,
                        },
                    )),
                    Output::Reply { response, .. } => replies.push(response),
                }
            }
        }
        replies
    }

    fn client(&mut self, index: usize, op: ClientOp, level: ConsistencyLevel) -> ClientResponse {
        self.next_request += 1;
        let input = Input::Client {
            request: RequestId(self.next_request),
            body: ClientRequest {
                op,
                level,
                session: SessionFloor::default(),
            },
        };
        let mut replies = self.run(index, input);
        assert_eq!(replies.len(), 1, "one answer, at once: {replies:?}");
        replies.remove(0)
    }

    fn tick(&mut self, index: usize) {
        self.now.mono_nanos += 10_000_000;
        self.now.wall_nanos += 10_000_000;
        let replies = self.run(index, Input::Tick);
        assert!(replies.is_empty(), "nothing timed out: {replies:?}");
    }

    fn node(&self, index: usize) -> &Node<SimDisk> {
        self.nodes[index].as_ref().expect("running")
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

/// Small uncompressed memtables and tables, no compaction: writes reach
/// tables within a few ticks, and a byte of a table lies where it was put.
fn table_options() -> NodeOptions {
    NodeOptions {
        engine: EngineOptions {
            memtable_bytes_max: MEMTABLE_BYTES_MIN,
            table_compression: TableCompression::None,
            compaction_compression: TableCompression::None,
            compaction_tables_min: 1000,
            compaction_tables_max: 1000,
            ..EngineOptions::default()
        },
        ..NodeOptions::default()
    }
}

/// Writes key `a` first, then enough others that every node flushes
/// tables; returns `a`'s value.
fn fill_tables(cluster: &mut Cluster, level: ConsistencyLevel) -> &'static str {
    let value = "the value of a";
    assert_eq!(
        cluster.client(0, put("a", value), level),
        ClientResponse::Written
    );
    for i in 0..120 {
        let key = format!("k{i:04}");
        let reply = cluster.client(0, put(&key, "some filler value"), level);
        assert_eq!(reply, ClientResponse::Written);
    }
    for index in 0..cluster.nodes.len() {
        for _ in 0..4 {
            cluster.tick(index);
        }
        assert!(cluster.node(index).engine().tables_total() > 0);
    }
    value
}

/// Flips a bit in the first data block of node `index`'s oldest table,
/// which holds key `a`; returns the table's name.
fn corrupt_block_of_a(cluster: &Cluster, index: usize) -> String {
    let disk = &cluster.disks[index];
    let table = disk
        .list()
        .expect("list")
        .into_iter()
        .filter(|name| name.starts_with("table-") && name.ends_with(".sst"))
        .min()
        .expect("a table");
    disk.flip_bit(&table, 20, 3).expect("flip");
    table
}

#[test]
fn a_corrupt_replica_answers_at_once_is_passed_over_and_repaired() {
    let mut cluster = Cluster::new(3, table_options());
    let value = fill_tables(&mut cluster, ConsistencyLevel::All);
    let table = corrupt_block_of_a(&cluster, 0);
    // Node 1 coordinates: its own copy fails, the others answer, all
    // within the step: no tick, no deadline.
    assert_eq!(
        cluster.client(0, get("a"), ConsistencyLevel::Quorum),
        ClientResponse::Value(Some(value.as_bytes().to_vec()))
    );
    let stats = cluster.node(0).stats();
    assert_eq!(stats.storage_errors, 1);
    let logged = stats.last_storage_error.clone().expect("reported");
    assert!(
        logged.contains(&table) && logged.contains("offset"),
        "{logged}"
    );
    // The winner was written back over the damage: node 1 alone now
    // serves the key.
    assert_eq!(
        cluster.client(0, get("a"), ConsistencyLevel::One),
        ClientResponse::Value(Some(value.as_bytes().to_vec()))
    );
}

#[test]
fn a_corrupt_remote_replica_answers_at_once_and_is_repaired() {
    let mut cluster = Cluster::new(3, table_options());
    let value = fill_tables(&mut cluster, ConsistencyLevel::All);
    let table = corrupt_block_of_a(&cluster, 2);
    // At ALL the level cannot be met: the answer names node, file, offset.
    let reply = cluster.client(1, get("a"), ConsistencyLevel::All);
    let ClientResponse::Error(ClientError::Storage { reason }) = reply else {
        panic!("expected a storage error, got {reply:?}");
    };
    assert!(
        reason.starts_with("n3: ") && reason.contains(&table) && reason.contains("offset"),
        "{reason}"
    );
    // At QUORUM the others answer, and the winner is written back to n3.
    assert_eq!(
        cluster.client(1, get("a"), ConsistencyLevel::Quorum),
        ClientResponse::Value(Some(value.as_bytes().to_vec()))
    );
    assert_eq!(
        cluster.client(2, get("a"), ConsistencyLevel::One),
        ClientResponse::Value(Some(value.as_bytes().to_vec())),
        "n3 serves the key again"
    );
    assert!(cluster.node(2).stats().storage_errors >= 1);
}

#[test]
fn corruption_at_every_replica_the_level_needs_names_node_file_and_offset() {
    let mut cluster = Cluster::new(1, table_options());
    fill_tables(&mut cluster, ConsistencyLevel::One);
    let table = corrupt_block_of_a(&cluster, 0);
    let reply = cluster.client(0, get("a"), ConsistencyLevel::One);
    let ClientResponse::Error(ClientError::Storage { reason }) = reply else {
        panic!("expected a storage error, got {reply:?}");
    };
    assert!(
        reason.starts_with("n1: ") && reason.contains(&table) && reason.contains("offset"),
        "{reason}"
    );
}

#[test]
fn a_full_disk_answers_no_space_serves_reads_and_resumes_by_itself() {
    let mut cluster = Cluster::new(1, NodeOptions::default());
    let one = ConsistencyLevel::One;
    assert_eq!(
        cluster.client(0, put("a", "before"), one),
        ClientResponse::Written
    );
    cluster.disks[0].set_full(true);
    let refused = cluster.client(0, put("b", "while full"), one);
    assert!(
        matches!(refused, ClientResponse::Error(ClientError::NoSpace { .. })),
        "{refused:?}"
    );
    assert!(cluster.node(0).stats().no_space);
    // Reads go on; a key whose write waits for space is not served.
    assert_eq!(
        cluster.client(0, get("a"), one),
        ClientResponse::Value(Some(b"before".to_vec()))
    );
    assert!(matches!(
        cluster.client(0, get("b"), one),
        ClientResponse::Error(ClientError::NoSpace { .. })
    ));
    assert!(matches!(
        cluster.client(0, put("c", "still full"), one),
        ClientResponse::Error(ClientError::NoSpace { .. })
    ));
    let failures = cluster.node(0).stats().no_space_errors;
    assert!(failures >= 3, "{failures}");
    cluster.disks[0].set_full(false);
    assert_eq!(
        cluster.client(0, put("d", "after"), one),
        ClientResponse::Written,
        "writes resume by themselves"
    );
    assert!(!cluster.node(0).stats().no_space, "the episode is over");
    // Nothing acknowledged is lost across a crash.
    let node = cluster.nodes[0].take().expect("running");
    drop(node);
    cluster.disks[0].crash(&mut rand_chacha::ChaCha8Rng::seed_from_u64(7));
    cluster.nodes[0] = Some(cluster.start(0));
    for (key, value) in [("a", "before"), ("d", "after")] {
        assert_eq!(
            cluster.client(0, get(key), one),
            ClientResponse::Value(Some(value.as_bytes().to_vec()))
        );
    }
}

#[test]
fn a_full_replica_does_not_count_towards_a_quorum_write() {
    let mut cluster = Cluster::new(3, NodeOptions::default());
    cluster.disks[0].set_full(true);
    // Node 1 coordinates and applies the write locally, but cannot make it
    // durable: the quorum comes from nodes 2 and 3.
    assert_eq!(
        cluster.client(0, put("k", "v"), ConsistencyLevel::Quorum),
        ClientResponse::Written
    );
    cluster.disks[1].set_full(true);
    let reply = cluster.client(0, put("k", "w"), ConsistencyLevel::Quorum);
    assert!(
        matches!(reply, ClientResponse::Error(ClientError::NoSpace { .. })),
        "{reply:?}"
    );
}

#[test]
fn a_corrupt_replica_is_repaired_even_when_its_report_comes_after_the_read() {
    // Whichever replica the coordinator asks last reports after the
    // quorum was met: both orders end with the replica repaired.
    for corrupt in [1, 2] {
        let mut cluster = Cluster::new(3, table_options());
        let value = fill_tables(&mut cluster, ConsistencyLevel::All);
        corrupt_block_of_a(&cluster, corrupt);
        assert_eq!(
            cluster.client(0, get("a"), ConsistencyLevel::Quorum),
            ClientResponse::Value(Some(value.as_bytes().to_vec()))
        );
        let errors = cluster.node(corrupt).stats().storage_errors;
        assert_eq!(errors, 1, "the damage was met once");
        assert_eq!(
            cluster.client(corrupt, get("a"), ConsistencyLevel::One),
            ClientResponse::Value(Some(value.as_bytes().to_vec()))
        );
        assert_eq!(
            cluster.node(corrupt).stats().storage_errors,
            errors,
            "node {} was repaired by the first read: it serves the key itself",
            corrupt + 1
        );
    }
}
