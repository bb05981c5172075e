//! Unit tests of the node as `SERIAL` coordinator and Paxos acceptor:
//! compare-and-sets and increments, the answer once a value is chosen,
//! plain reads that finish an unfinished proposal, durable promises.

use super::*;

fn cas(key: &str, condition: crate::paxos::Condition, change: crate::paxos::Change) -> ClientOp {
    ClientOp::Cas {
        key: key.as_bytes().to_vec(),
        condition,
        change,
    }
}

fn conditional(applied: bool, previous: Option<&str>, current: Option<&str>) -> ClientResponse {
    let bytes = |v: Option<&str>| v.map(|v| v.as_bytes().to_vec());
    ClientResponse::Conditional {
        applied,
        previous: bytes(previous),
        current: bytes(current),
    }
}

impl Harness {
    /// As [`Self::call`], also counting the peer messages sent.
    fn call_counting(
        &mut self,
        i: usize,
        op: ClientOp,
        level: ConsistencyLevel,
    ) -> (Vec<ClientResponse>, usize) {
        let outputs = self.client(i, 99, op, level);
        let mut queue: std::collections::VecDeque<(usize, Output)> =
            outputs.into_iter().map(|o| (i, o)).collect();
        let (mut out, mut messages) = (Vec::new(), 0);
        while let Some((from, output)) = queue.pop_front() {
            match output {
                Output::Reply { response, .. } => out.push(response),
                Output::Send { to, .. } => {
                    messages += 1;
                    let next = self.deliver(from, &output);
                    let to_index = to.0 as usize - 1;
                    queue.extend(next.into_iter().map(|o| (to_index, o)));
                }
            }
        }
        (out, messages)
    }
}

#[test]
fn serial_compare_and_set_applies_only_when_its_condition_holds() {
    use crate::paxos::{Change, Condition};
    let mut h = Harness::new(3, NodeOptions::default());
    h.now.wall_nanos = 1_000_000_000_000;
    let serial = ConsistencyLevel::Serial;
    let nx = cas("k", Condition::Absent, Change::Put(b"a".to_vec()));
    let (out, messages) = h.call_counting(0, nx.clone(), serial);
    assert_eq!(out, vec![conditional(true, None, Some("a"))]);
    // Prepare and propose to two peers and their answers before the
    // answer; the commit to two peers and their acknowledgements behind it.
    assert_eq!(messages, 12, "messages of an uncontended compare-and-set");
    assert_eq!(
        h.call(1, nx, serial),
        vec![conditional(false, Some("a"), Some("a"))]
    );
    let ifeq = |expected: &str, new: &str| {
        cas(
            "k",
            Condition::Equals(expected.as_bytes().to_vec()),
            Change::Put(new.as_bytes().to_vec()),
        )
    };
    assert_eq!(
        h.call(2, ifeq("zz", "b"), serial),
        vec![conditional(false, Some("a"), Some("a"))]
    );
    assert_eq!(
        h.call(2, ifeq("a", "b"), serial),
        vec![conditional(true, Some("a"), Some("b"))]
    );
    // Plain reads see what SERIAL committed; a SERIAL read too.
    assert_eq!(
        h.call(1, get("k"), ConsistencyLevel::Quorum),
        vec![ClientResponse::Value(Some(b"b".to_vec()))]
    );
    assert_eq!(
        h.call(0, get("k"), serial),
        vec![ClientResponse::Value(Some(b"b".to_vec()))]
    );
    // A plain QUORUM write is seen, and superseded, by the next SERIAL one.
    h.call(0, put("k", "plain"), ConsistencyLevel::Quorum);
    assert_eq!(
        h.call(1, ifeq("plain", "c"), serial),
        vec![conditional(true, Some("plain"), Some("c"))]
    );
    assert_eq!(
        h.call(2, get("k"), ConsistencyLevel::All),
        vec![ClientResponse::Value(Some(b"c".to_vec()))]
    );
}

/// The one send among `outputs` to `to` whose message `is` picks.
fn send_to(outputs: &[Output], to: u32, is: fn(&Message) -> bool) -> Output {
    let found: Vec<&Output> = outputs
        .iter()
        .filter(
            |o| matches!(o, Output::Send { to: t, envelope } if t.0 == to && is(&envelope.message)),
        )
        .collect();
    assert_eq!(found.len(), 1, "{outputs:?}");
    found[0].clone()
}

/// A compare-and-set at node 1 of 3 answered once node 2 accepted, its
/// commit sent behind the answer and delivered nowhere: node 1 (the
/// coordinator's own replica) holds the value, node 2 only the accepted
/// proposal, node 3 nothing.
fn serial_write_answered_before_its_commit(h: &mut Harness) {
    use crate::paxos::{Change, Condition};
    h.now.wall_nanos = 1_000_000_000_000;
    let nx = cas("k", Condition::Absent, Change::Put(b"a".to_vec()));
    let out = h.client(0, 1, nx, ConsistencyLevel::Serial);
    let prepare = send_to(&out, 2, |m| matches!(m, Message::PaxosPrepare { .. }));
    let promise = h.deliver(0, &prepare);
    let out = h.deliver(1, &promise[0]);
    assert!(replies(&out).is_empty(), "not answered after the prepare");
    let propose = send_to(&out, 2, |m| matches!(m, Message::PaxosPropose { .. }));
    let accepted = h.deliver(0, &propose);
    let out = h.deliver(1, &accepted[0]);
    // Two round trips, and the answer: the commit goes behind it.
    assert_eq!(replies(&out), vec![&conditional(true, None, Some("a"))]);
    for peer in [2, 3] {
        send_to(&out, peer, |m| matches!(m, Message::PaxosCommit { .. }));
    }
    let held = |h: &mut Harness, i: usize| h.node(i).engine().get(b"k").unwrap();
    assert_eq!(held(h, 0).and_then(|v| v.value), Some(b"a".to_vec()));
    assert_eq!(held(h, 1), None, "the commit did not reach node 2");
}

#[test]
fn a_serial_write_is_answered_once_chosen_and_a_quorum_read_finishes_its_commit() {
    let mut h = Harness::new(3, NodeOptions::default());
    serial_write_answered_before_its_commit(&mut h);
    // Node 1 is cut off: a QUORUM read at node 3 hears node 2, which
    // reports its unfinished proposal, and itself, which holds nothing.
    h.nodes[0] = None;
    assert_eq!(
        h.call(2, get("k"), ConsistencyLevel::Quorum),
        vec![ClientResponse::Value(Some(b"a".to_vec()))]
    );
    // The read finished it: both replicas left hold the value.
    for i in [1, 2] {
        let held = h.node(i).engine().get(b"k").unwrap();
        assert_eq!(held.and_then(|v| v.value), Some(b"a".to_vec()), "node {i}");
    }
}

#[test]
fn a_quorum_read_planted_to_ignore_an_unfinished_proposal_misses_an_acknowledged_write() {
    let options = NodeOptions {
        bug_read_ignores_unfinished_paxos: true,
        ..NodeOptions::default()
    };
    let mut h = Harness::new(3, options);
    serial_write_answered_before_its_commit(&mut h);
    h.nodes[0] = None;
    assert_eq!(
        h.call(2, get("k"), ConsistencyLevel::Quorum),
        vec![ClientResponse::Value(None)]
    );
}

#[test]
fn a_replica_reports_an_unfinished_proposal_only_above_its_version() {
    let mut h = Harness::new(3, NodeOptions::default());
    serial_write_answered_before_its_commit(&mut h);
    // Node 2 holds the accepted proposal above its (empty) version.
    assert_eq!(h.node(1).read_with_paxos(b"k").unwrap(), (None, true));
    // Node 1 committed it: nothing unfinished there.
    let (version, unfinished) = h.node(0).read_with_paxos(b"k").unwrap();
    assert!(version.is_some() && !unfinished);
    // A plain write stamped above the proposal settles it for plain reads.
    h.now.wall_nanos += 1_000_000_000;
    h.nodes[0] = None;
    let out = h.call(2, put("k", "plain"), ConsistencyLevel::Quorum);
    assert_eq!(out, vec![ClientResponse::Written]);
    let (version, unfinished) = h.node(1).read_with_paxos(b"k").unwrap();
    assert_eq!(version.and_then(|v| v.value), Some(b"plain".to_vec()));
    assert!(!unfinished);
}

#[test]
fn serial_increments_count_and_refuse_what_is_not_an_integer() {
    use crate::paxos::{Change, Condition};
    let mut h = Harness::new(3, NodeOptions::default());
    h.now.wall_nanos = 1_000_000_000_000;
    let serial = ConsistencyLevel::Serial;
    let incr = |by| cas("n", Condition::Any, Change::Incr(by));
    for (i, expected) in [(0, "1"), (1, "2"), (2, "12")] {
        let by = if expected == "12" { 10 } else { 1 };
        let out = h.call(i, incr(by), serial);
        let ClientResponse::Conditional { current, .. } = &out[0] else {
            panic!("{out:?}")
        };
        assert_eq!(current.as_deref(), Some(expected.as_bytes()));
    }
    h.call(0, put("s", "text"), serial);
    let out = h.call(1, cas("s", Condition::Any, Change::Incr(1)), serial);
    assert_eq!(
        out,
        vec![ClientResponse::Error(ClientError::Invalid {
            reason: "value is not an integer or out of range".into()
        })]
    );
    // At a plain level, a conditional operation is refused, nothing done.
    let out = h.call(0, incr(1), ConsistencyLevel::Quorum);
    let [ClientResponse::Error(ClientError::Invalid { reason })] = out.as_slice() else {
        panic!("{out:?}")
    };
    assert!(reason.contains("SERIAL"), "{reason}");
}

/// Three nodes whose key "k" was set to "v" by one `SERIAL`
/// compare-and-set through node 1.
fn three_nodes_after_one_compare_and_set() -> Harness {
    use crate::paxos::{Change, Condition};
    let mut h = Harness::new(3, NodeOptions::default());
    h.now.wall_nanos = 1_000_000_000_000;
    let out = h.call(
        0,
        cas("k", Condition::Absent, Change::Put(b"v".to_vec())),
        ConsistencyLevel::Serial,
    );
    assert_eq!(out, vec![conditional(true, None, Some("v"))]);
    h
}

#[test]
fn a_promise_survives_a_restart_and_lower_ballots_are_refused() {
    use crate::paxos::Ballot;
    let mut h = three_nodes_after_one_compare_and_set();
    h.nodes[1] = None;
    let node = h.start(1);
    h.nodes[1] = Some(node);
    let op = OpId {
        generation: 1,
        seq: 0,
    };
    let low = Ballot {
        hlc: 1,
        node: 1,
        generation: 1,
    };
    let prepare = Output::Send {
        to: NodeId(2),
        envelope: Envelope {
            hlc: 1,
            message: Message::PaxosPrepare {
                op,
                key: b"k".to_vec(),
                ballot: low,
            },
        },
    };
    let answer = h.deliver(0, &prepare);
    let [Output::Send { envelope, .. }] = answer.as_slice() else {
        panic!("{answer:?}")
    };
    let Message::PaxosRefused { promised, .. } = envelope.message else {
        panic!("{envelope:?}")
    };
    assert!(promised > low, "the promise was kept across the restart");
}

#[test]
fn an_acceptor_that_lost_data_sits_out_until_it_knows_the_key_above_its_floor() {
    use crate::paxos::{Ballot, Proposal};
    let mut h = three_nodes_after_one_compare_and_set();
    // The promise and acceptance raised node 2's ballot mark first.
    let disk = FsDisk::open(h.dirs[1].path()).unwrap();
    let mark = ballot_mark::load(&disk).unwrap();
    assert!(mark > HlcClock::physical(h.now.wall_nanos), "{mark}");
    // Node 2 lost data in every range (repaired since): each has a floor.
    h.nodes[1] = None;
    let ranges = h.node(0).ring.repair_ranges().len();
    let all: Vec<usize> = (0..ranges).collect();
    let mut damage = Damage::intact(ranges);
    damage.mark(&all, 1, mark);
    damage.dropped();
    for &range in &all {
        assert!(damage.repaired(range, 2));
    }
    damage::store(&disk, &damage).unwrap();
    let node = h.start(1);
    h.nodes[1] = Some(node);
    let op = OpId {
        generation: 1,
        seq: 7,
    };
    let to_node_2 = |message: Message| Output::Send {
        to: NodeId(2),
        envelope: Envelope { hlc: 1, message },
    };
    let prepare = |hlc: u64| {
        to_node_2(Message::PaxosPrepare {
            op,
            key: b"k".to_vec(),
            ballot: Ballot {
                hlc,
                node: 1,
                generation: 1,
            },
        })
    };
    let answer_kind = |outputs: &[Output]| match outputs {
        [] => "none",
        [Output::Send { envelope, .. }] => match envelope.message {
            Message::PaxosPromise { .. } => "promise",
            Message::PaxosAccepted { .. } => "accepted",
            Message::PaxosRefused { .. } => "refused",
            _ => "other",
        },
        _ => "several",
    };
    // At the floor: no part. Above it, for a key it knows nothing of
    // above the floor: no promise.
    let out = h.deliver(0, &prepare(mark));
    assert_eq!(answer_kind(&out), "none");
    let out = h.deliver(0, &prepare(mark + 10));
    assert_eq!(answer_kind(&out), "none");
    assert_eq!(h.node(1).stats().paxos_sat_out_after_loss, 2);
    // A plain read meeting it is sent through Paxos: it may have
    // forgotten an unfinished proposal.
    let (version, unsure) = h.node(1).read_with_paxos(b"k").unwrap();
    assert_eq!(version.and_then(|v| v.value), Some(b"v".to_vec()));
    assert!(unsure);
    // A proposal above the floor is accepted (its proposer heard from a
    // majority that kept its state); from then on the key is known.
    let ballot = Ballot {
        hlc: mark + 10,
        node: 1,
        generation: 1,
    };
    let propose = to_node_2(Message::PaxosPropose {
        op,
        key: b"k".to_vec(),
        proposal: Proposal {
            ballot,
            value: Some(b"w".to_vec()),
            stamp_hlc: ballot.hlc,
            stamp_node: 1,
        },
    });
    assert_eq!(answer_kind(&h.deliver(0, &propose)), "accepted");
    assert_eq!(answer_kind(&h.deliver(0, &prepare(mark + 20))), "promise");
    assert!(ballot_mark::load(&disk).unwrap() >= mark + 20);
    // With the planted bug the node serves at its floor as if it had lost
    // nothing.
    h.nodes[1] = None;
    h.options.bug_paxos_acceptor_forgets_loss = true;
    let node = h.start(1);
    h.nodes[1] = Some(node);
    let out = h.deliver(0, &prepare(mark + 30));
    assert_eq!(answer_kind(&out), "promise");
    let other = to_node_2(Message::PaxosPrepare {
        op,
        key: b"other".to_vec(),
        ballot: Ballot {
            hlc: mark - 1,
            node: 1,
            generation: 1,
        },
    });
    assert_eq!(answer_kind(&h.deliver(0, &other)), "promise");
    assert!(!h.node(1).read_with_paxos(b"fresh").unwrap().1);
}
