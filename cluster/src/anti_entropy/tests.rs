//! Anti-entropy between replicas held in maps, messages routed by hand.

use std::collections::BTreeMap;
use std::ops::Bound;

use enigma_engine::Versioned;

use super::*;
use crate::ring::Ring;

const MS: u64 = 1_000_000;

/// A replica: its anti-entropy and its data.
struct Replica {
    ae: AntiEntropy,
    store: BTreeMap<Vec<u8>, Versioned>,
}

/// A few replicas, a clock and the messages in flight.
struct Cluster {
    replicas: BTreeMap<NodeId, Replica>,
    now: u64,
    hlc: u64,
    queue: VecDeque<(NodeId, NodeId, Message)>,
    /// Drop the next this many messages (to show resends recover).
    drop_next: usize,
    /// Entries each scan call may see, to make scans take several ticks.
    scan_entries_per_call: usize,
    finished: Vec<FinishedPass>,
    /// A replica whose writes fail (a full disk).
    refusing: Option<NodeId>,
}

fn options() -> AntiEntropyOptions {
    AntiEntropyOptions {
        continuous: true,
        scan_bytes_per_sec: 1 << 30,
        interval_nanos: 10 * MS,
        merkle_depth: 6,
        batch_bytes_max: 200,
        resend_nanos: 50 * MS,
        session_timeout_nanos: 2_000 * MS,
        responder_sessions_max: 4,
        bug_stream_one_way: false,
    }
}

fn version(hlc: u64, value: Option<&str>) -> Versioned {
    Versioned {
        timestamp: Timestamp { hlc, node: 1 },
        value: value.map(|v| v.as_bytes().to_vec()),
    }
}

impl Cluster {
    fn new(nodes: u32, rf: usize, options: AntiEntropyOptions) -> Self {
        let members: Vec<NodeId> = (1..=nodes).map(NodeId).collect();
        let ring = Ring::new(&members, 8, rf).unwrap();
        let replicas = members
            .iter()
            .map(|&n| {
                (
                    n,
                    Replica {
                        ae: AntiEntropy::new(n, 1, ring.repair_ranges(), options.clone(), 0),
                        store: BTreeMap::new(),
                    },
                )
            })
            .collect();
        Self {
            replicas,
            now: 0,
            hlc: 1_000,
            queue: VecDeque::new(),
            drop_next: 0,
            scan_entries_per_call: 3,
            finished: Vec::new(),
            refusing: None,
        }
    }

    fn put(&mut self, node: u32, key: &str, v: Versioned) {
        let store = &mut self.replicas.get_mut(&NodeId(node)).unwrap().store;
        let newer = store
            .get(key.as_bytes())
            .is_none_or(|old| old.timestamp < v.timestamp);
        if newer {
            store.insert(key.as_bytes().to_vec(), v);
        }
    }

    fn carry_out(&mut self, at: NodeId, actions: Vec<Action>) {
        for action in actions {
            match action {
                Action::Send { to, message } => self.queue.push_back((at, to, message)),
                Action::ApplyThenAck { entries, to, ack } => {
                    if self.refusing == Some(at) {
                        let Message::RepairDataAck { session, .. } = ack else {
                            panic!("not an acknowledgement: {ack:?}")
                        };
                        let now = self.now;
                        let ae = &mut self.replicas.get_mut(&at).unwrap().ae;
                        let actions = ae.apply_failed(session, now);
                        self.carry_out(at, actions);
                        continue;
                    }
                    for (key, wire) in entries {
                        let v: Versioned = wire.into();
                        let store = &mut self.replicas.get_mut(&at).unwrap().store;
                        if store
                            .get(&key)
                            .is_none_or(|old| old.timestamp < v.timestamp)
                        {
                            store.insert(key, v);
                        }
                    }
                    self.queue.push_back((at, to, ack));
                }
                Action::Repaired { range } => {
                    let now = self.now;
                    self.replicas
                        .get_mut(&at)
                        .unwrap()
                        .ae
                        .set_repaired_wall(range, now);
                }
                Action::PassFinished(finished) => self.finished.push(finished),
            }
        }
    }

    /// One tick of every replica, then every message delivered.
    fn step(&mut self, up: &dyn Fn(NodeId) -> bool) {
        self.now += MS;
        let ids: Vec<NodeId> = self.replicas.keys().copied().collect();
        for &id in &ids {
            self.hlc += 1;
            let hlc = self.hlc;
            let now = self.now;
            let actions = self.replicas.get_mut(&id).unwrap().ae.tick(now, up, || hlc);
            self.carry_out(id, actions);
            let scans = self.replicas[&id].ae.scans();
            for scan in scans {
                let replica = self.replicas.get_mut(&id).unwrap();
                let start = match &scan.resume_after {
                    Some(k) => Bound::Excluded(k.clone()),
                    None => Bound::Unbounded,
                };
                let mut last = None;
                let mut seen = 0;
                let mut paused = false;
                for (key, v) in replica.store.range((start, Bound::Unbounded)) {
                    last = Some(key.clone());
                    seen += 1;
                    let go = replica
                        .ae
                        .feed(scan.owner, key, v.timestamp, v.value.as_deref());
                    if !go || seen >= self.scan_entries_per_call {
                        paused = true;
                        break;
                    }
                }
                let actions = replica.ae.scan_stopped(scan.owner, last, !paused, now);
                self.carry_out(id, actions);
            }
        }
        while let Some((from, to, message)) = self.queue.pop_front() {
            if self.drop_next > 0 {
                self.drop_next -= 1;
                continue;
            }
            let now = self.now;
            let actions = self
                .replicas
                .get_mut(&to)
                .unwrap()
                .ae
                .on_message(from, message, now);
            self.carry_out(to, actions);
        }
    }

    fn run(&mut self, ticks: usize) {
        for _ in 0..ticks {
            self.step(&|_| true);
        }
    }

    fn store(&self, node: u32) -> &BTreeMap<Vec<u8>, Versioned> {
        &self.replicas[&NodeId(node)].store
    }
}

/// Three replicas that each missed different writes.
fn diverged(options: AntiEntropyOptions) -> Cluster {
    let mut c = Cluster::new(3, 3, options);
    for i in 0..30 {
        let key = format!("k{i}");
        for node in 1..=3 {
            if i % 3 != node - 1 {
                c.put(node, &key, version(10 + i as u64, Some("v")));
            }
        }
    }
    // A newer value on one replica, a tombstone on another.
    c.put(2, "k4", version(100, Some("new")));
    c.put(3, "k5", version(100, None));
    c.put(1, "only-on-1", version(50, Some("x")));
    c
}

#[test]
fn diverged_replicas_converge_in_one_session() {
    let mut c = diverged(options());
    c.run(300);
    assert_eq!(c.store(1), c.store(2));
    assert_eq!(c.store(2), c.store(3));
    assert_eq!(c.store(1)[b"k4".as_slice()].value, Some(b"new".to_vec()));
    assert_eq!(c.store(1)[b"k5".as_slice()].value, None);
    assert_eq!(c.store(3).len(), 31);
    for replica in c.replicas.values() {
        assert!(replica.ae.repaired()[0].is_some(), "repair recorded");
        assert_eq!(replica.ae.stats().messages_refused, 0);
    }
    // Only the lowest replica initiates.
    assert!(c.replicas[&NodeId(1)].ae.stats().sessions_completed >= 1);
    assert_eq!(c.replicas[&NodeId(2)].ae.stats().sessions_completed, 0);
}

#[test]
fn streaming_one_way_leaves_the_other_replicas_stale() {
    let mut c = diverged(AntiEntropyOptions {
        bug_stream_one_way: true,
        ..options()
    });
    c.run(300);
    assert_ne!(c.store(1), c.store(2), "the planted bug pulls only");
    assert_eq!(c.store(1).len(), 31, "the initiator got everything");
}

#[test]
fn a_stream_ends_once() {
    let mut c = diverged(options());
    c.run(300);
    let before = c.replicas[&NodeId(1)].ae.stats().keys_received;
    let sessions = c.replicas[&NodeId(1)].ae.stats().sessions_completed;
    c.run(300);
    let stats = c.replicas[&NodeId(1)].ae.stats();
    assert!(stats.sessions_completed > sessions, "sessions go on");
    assert_eq!(
        stats.keys_received, before,
        "converged replicas send nothing"
    );
    assert_eq!(stats.messages_refused, 0);
}

#[test]
fn lost_messages_are_resent_and_the_session_completes() {
    let mut c = diverged(options());
    for drops in [1, 2, 5] {
        c.drop_next = drops;
        c.run(150);
    }
    assert_eq!(c.store(1), c.store(2));
    assert_eq!(c.store(2), c.store(3));
}

#[test]
fn an_initiator_that_cannot_apply_what_it_pulled_records_no_repair() {
    // One key missing at the initiator: what it pulls is one batch, the
    // last, so the pull ends as soon as that batch arrives.
    let mut c = Cluster::new(3, 3, options());
    for node in 1..=3 {
        for i in 0..10 {
            if node != 1 || i != 4 {
                c.put(node, &format!("k{i}"), version(10 + i, Some("v")));
            }
        }
    }
    c.refusing = Some(NodeId(1));
    c.run(300);
    let stats = c.replicas[&NodeId(1)].ae.stats();
    assert_eq!(
        stats.sessions_completed, 0,
        "a session counted data it lost"
    );
    assert!(stats.sessions_aborted > 0);
    for replica in c.replicas.values() {
        assert!(
            replica.ae.repaired().iter().all(Option::is_none),
            "a range recorded repaired"
        );
    }
    assert_eq!(c.store(1).len(), 9, "node 1 took nothing");
    // Once it can write again, the next session repairs.
    c.refusing = None;
    c.run(300);
    assert_eq!(c.store(1), c.store(2));
    assert!(c.replicas[&NodeId(1)].ae.repaired()[0].is_some());
}

#[test]
fn a_responder_that_cannot_apply_is_sent_the_batch_again() {
    let mut c = diverged(options());
    c.refusing = Some(NodeId(2));
    c.run(100);
    c.refusing = None;
    c.run(300);
    assert_eq!(c.store(1), c.store(2));
    assert_eq!(c.store(2), c.store(3));
}

#[test]
fn identical_replicas_exchange_nothing() {
    let mut c = Cluster::new(3, 3, options());
    for node in 1..=3 {
        for i in 0..20 {
            c.put(node, &format!("k{i}"), version(i, Some("v")));
        }
    }
    c.run(50);
    let stats = c.replicas[&NodeId(1)].ae.stats().clone();
    assert!(stats.sessions_completed >= 1 && stats.ranges_compared >= 1);
    assert_eq!(stats.keys_sent + stats.keys_received, 0);
}

#[test]
fn no_session_starts_while_a_replica_is_down() {
    let mut c = diverged(options());
    for _ in 0..100 {
        c.step(&|n| n != NodeId(3));
    }
    assert_eq!(c.replicas[&NodeId(1)].ae.stats().sessions_completed, 0);
    assert!(c.replicas[&NodeId(1)].ae.repaired()[0].is_none());
    // n2 is the lowest replica n2 holds up besides n1; n1 is up, so n2
    // leaves the range to n1.
    assert_eq!(c.replicas[&NodeId(2)].ae.stats().sessions_completed, 0);
}

#[test]
fn a_full_pass_reports_what_it_did() {
    let mut c = diverged(AntiEntropyOptions {
        continuous: false,
        ..options()
    });
    let now = c.now;
    c.replicas
        .get_mut(&NodeId(2))
        .unwrap()
        .ae
        .request_full_pass(RequestId(7), now);
    c.run(300);
    assert_eq!(c.finished.len(), 1);
    let report = &c.finished[0].report;
    assert_eq!(c.finished[0].request, RequestId(7));
    assert_eq!(report.ranges_compared, 1);
    assert_eq!(report.ranges_failed, 0);
    assert!(report.keys_exchanged > 0);
    assert_eq!(c.store(1), c.store(3));
}

#[test]
fn a_full_pass_counts_ranges_it_cannot_repair() {
    let mut c = Cluster::new(3, 3, options());
    let now = c.now;
    c.replicas
        .get_mut(&NodeId(1))
        .unwrap()
        .ae
        .request_full_pass(RequestId(1), now);
    c.step(&|n| n != NodeId(2));
    c.step(&|n| n != NodeId(2));
    assert_eq!(c.finished.len(), 1);
    assert_eq!(c.finished[0].report.ranges_failed, 1);
}

#[test]
fn trees_of_the_wrong_shape_and_foreign_entries_are_refused() {
    let mut c = Cluster::new(5, 3, options());
    let ranges = c.replicas[&NodeId(1)].ae.ranges().clone();
    let mine = c.replicas[&NodeId(1)].ae.ranges_mine().to_vec();
    // n1 starts a session (all up), then gets a reply of the wrong shape.
    let now = c.now;
    let actions = c
        .replicas
        .get_mut(&NodeId(1))
        .unwrap()
        .ae
        .tick(now + 20 * MS, |_| true, || 5);
    let Some(Action::Send {
        to,
        message: Message::TreeRequest { session, .. },
    }) = actions.first().cloned()
    else {
        // n1 is not the lowest replica of its first range: nothing to test
        // from this side; the other refusals below still run.
        return;
    };
    let n1 = &mut c.replicas.get_mut(&NodeId(1)).unwrap().ae;
    n1.on_message(
        to,
        Message::TreeReply {
            session,
            leaves: vec![0; 3],
        },
        now,
    );
    assert_eq!(n1.stats().messages_refused, 1);
    // A tree request naming replicas that are no range of the ring.
    n1.on_message(
        NodeId(2),
        Message::TreeRequest {
            session: SessionId {
                initiator: NodeId(2),
                generation: 1,
                seq: 0,
            },
            replicas: vec![NodeId(1), NodeId(2)],
            depth: 4,
        },
        now,
    );
    assert_eq!(n1.stats().messages_refused, 2);
    // Data for a key outside the session's range is refused whole.
    let foreign = (0..1000u32)
        .map(|i| format!("x{i}"))
        .find(|k| !mine.contains(&ranges.of_key(k.as_bytes())))
        .expect("some key belongs to a range n1 does not hold");
    let actions = n1.on_message(
        to,
        Message::RepairData {
            session,
            seq: 0,
            entries: vec![(
                foreign.into_bytes(),
                WireVersion {
                    hlc: 1,
                    node: 1,
                    value: None,
                },
            )],
            last: true,
        },
        now,
    );
    assert!(actions.is_empty());
    assert_eq!(n1.stats().messages_refused, 3);
}

#[test]
fn responder_sessions_are_bounded() {
    let mut c = Cluster::new(
        3,
        3,
        AntiEntropyOptions {
            responder_sessions_max: 2,
            ..options()
        },
    );
    let replicas = vec![NodeId(1), NodeId(2), NodeId(3)];
    let n3 = &mut c.replicas.get_mut(&NodeId(3)).unwrap().ae;
    let mut refused = 0;
    for (initiator, seq) in [(1, 0), (2, 0), (1, 5)] {
        // Each initiator's newer session replaces its older one.
        let actions = n3.on_message(
            NodeId(initiator),
            Message::TreeRequest {
                session: SessionId {
                    initiator: NodeId(initiator),
                    generation: 1,
                    seq,
                },
                replicas: replicas.clone(),
                depth: 4,
            },
            0,
        );
        refused += actions
            .iter()
            .filter(|a| {
                matches!(
                    a,
                    Action::Send {
                        message: Message::RepairRefused { .. },
                        ..
                    }
                )
            })
            .count();
    }
    assert_eq!(refused, 0, "two initiators fit");
    assert!(n3.busy());
    // A third initiator's session does not.
    let mut c4 = Cluster::new(
        4,
        4,
        AntiEntropyOptions {
            responder_sessions_max: 2,
            ..options()
        },
    );
    let all: Vec<NodeId> = (1..=4).map(NodeId).collect();
    let n4 = &mut c4.replicas.get_mut(&NodeId(4)).unwrap().ae;
    let mut last = Vec::new();
    for initiator in 1..=3 {
        last = n4.on_message(
            NodeId(initiator),
            Message::TreeRequest {
                session: SessionId {
                    initiator: NodeId(initiator),
                    generation: 1,
                    seq: 0,
                },
                replicas: all.clone(),
                depth: 4,
            },
            0,
        );
    }
    assert!(matches!(
        last.as_slice(),
        [Action::Send {
            message: Message::RepairRefused { .. },
            ..
        }]
    ));
}
