//! Unit tests of the node's clock: seeding at start, the clock mark,
//! judging this node's clock against its peers', commit wait.

use super::*;

const SECOND: u64 = 1_000_000_000;
/// A wall time far from zero, so that going back from it stays positive.
const BASE_WALL_NANOS: u64 = 1_000_000 * SECOND;

fn stamps(h: &mut Harness, i: usize) -> Vec<Timestamp> {
    h.node(i)
        .take_reply_versions()
        .into_iter()
        .filter_map(|v| v.timestamp)
        .collect()
}

fn recording() -> NodeOptions {
    NodeOptions {
        record_versions: true,
        ..NodeOptions::default()
    }
}

/// One write through node 1 at wall time 10 s past the base, then node 1
/// restarted with its wall clock 5 s behind that and written through again:
/// the two stamps, in order.
fn write_restart_behind_and_write(options: NodeOptions) -> (Timestamp, Timestamp) {
    let mut h = Harness::new(1, options);
    h.now.wall_nanos = BASE_WALL_NANOS + 10 * SECOND;
    let out = h.client(0, 1, put("k", "first"), ConsistencyLevel::One);
    assert_eq!(replies(&out), vec![&ClientResponse::Written]);
    let first = stamps(&mut h, 0)[0];
    h.nodes[0] = None;
    h.nodes[0] = Some(h.start(0));
    h.now.wall_nanos = BASE_WALL_NANOS + 5 * SECOND;
    let out = h.client(0, 2, put("other", "second"), ConsistencyLevel::One);
    assert_eq!(replies(&out), vec![&ClientResponse::Written]);
    (first, stamps(&mut h, 0)[0])
}

#[test]
fn a_node_restarted_behind_its_old_clock_stamps_above_its_earlier_writes() {
    let (first, second) = write_restart_behind_and_write(recording());
    assert!(second > first, "{second:?} after {first:?}");
    let (first, second) = write_restart_behind_and_write(NodeOptions {
        bug_hlc_not_seeded_on_restart: true,
        ..recording()
    });
    assert!(second < first, "the planted bug stamps below: {second:?}");
}

#[test]
fn a_coordinator_holding_no_replica_is_seeded_from_its_clock_mark() {
    let cluster = ClusterConfig {
        nodes: vec![NodeId(1), NodeId(2), NodeId(3)],
        replication_factor: 1,
        vnodes_per_node: 4,
    };
    let mut h = Harness {
        dirs: (0..3).map(|_| TempDir::new().unwrap()).collect(),
        nodes: Vec::new(),
        cluster,
        options: recording(),
        now: Now::default(),
    };
    for i in 0..3 {
        let node = h.start(i);
        h.nodes.push(Some(node));
    }
    let ring = h.node(0).ring().clone();
    let elsewhere: Vec<String> = (0..100)
        .map(|i| format!("k{i}"))
        .filter(|key| !ring.replicas(key.as_bytes()).contains(&NodeId(1)))
        .take(2)
        .collect();
    h.now.wall_nanos = BASE_WALL_NANOS + 10 * SECOND;
    let outputs = h.client(0, 1, put(&elsewhere[0], "first"), ConsistencyLevel::One);
    assert_eq!(
        h.pump(0, outputs),
        vec![ClientResponse::Written],
        "written through a coordinator that is no replica"
    );
    let first = stamps(&mut h, 0)[0];
    assert_eq!(
        h.node(0)
            .engine()
            .get(&crate::keyspace::clock_mark_key())
            .unwrap()
            .map(|v| v.timestamp),
        Some(first),
        "the clock mark holds the timestamp"
    );
    // Back 400 ms: within the bound, so the replica takes the stamp.
    h.nodes[0] = None;
    h.nodes[0] = Some(h.start(0));
    h.now.wall_nanos = BASE_WALL_NANOS + 10 * SECOND - 400 * MS;
    let outputs = h.client(0, 2, put(&elsewhere[1], "second"), ConsistencyLevel::One);
    assert_eq!(h.pump(0, outputs), vec![ClientResponse::Written]);
    let second = stamps(&mut h, 0)[0];
    assert!(second > first, "{second:?} after {first:?}");
}

#[test]
fn a_node_whose_clock_is_away_from_a_majority_refuses_writes_naming_the_clock() {
    let mut h = Harness::new(3, NodeOptions::default());
    h.now.wall_nanos = BASE_WALL_NANOS;
    // Before it has heard a majority it does not judge itself.
    let input = gossip_from(&h, 2, BASE_WALL_NANOS - 2 * SECOND);
    h.step(0, input);
    let out = h.client(0, 1, put("k", "v"), ConsistencyLevel::One);
    assert!(
        !matches!(
            replies(&out).first(),
            Some(ClientResponse::Error(ClientError::Clock { .. }))
        ),
        "{out:?}"
    );
    // Both peers' clocks read 2 s behind this node's: it is the odd one.
    let input = gossip_from(&h, 3, BASE_WALL_NANOS - 2 * SECOND);
    h.step(0, input);
    assert!(h.node(0).clock_judgment().refuses_writes());
    let out = h.client(0, 2, put("k", "v2"), ConsistencyLevel::Quorum);
    let refused = replies(&out);
    let Some(ClientResponse::Error(error @ ClientError::Clock { reason })) = refused.first() else {
        panic!("expected a clock refusal, got {out:?}");
    };
    assert!(
        reason.contains("2000 ms ahead of 2 of its 2 peers"),
        "{reason}"
    );
    assert!(!error.may_have_applied());
    assert!(sends(&out).is_empty(), "nothing sent to the replicas");
    assert_eq!(h.node(0).stats().writes_refused_clock, 1);
    // Reads still go on.
    let out = h.client(0, 3, get("k"), ConsistencyLevel::One);
    assert!(!replies(&out).is_empty());
    // A peer's readings far ahead are measured before they are refused.
    assert_eq!(
        h.node(1).peer_clock_offset_nanos(NodeId(1)),
        None,
        "node 2 has heard nothing yet"
    );
    let input = gossip_from(&h, 1, BASE_WALL_NANOS + 2 * SECOND);
    h.step(1, input);
    assert_eq!(
        h.node(1).peer_clock_offset_nanos(NodeId(1)),
        Some(2 * SECOND as i64)
    );
    assert_eq!(h.node(1).stats().clock_refusals.get(&NodeId(1)), Some(&1));
}

#[test]
fn commit_wait_holds_a_write_until_the_clock_passes_it_by_the_uncertainty() {
    let options = NodeOptions {
        commit_wait: true,
        clock_uncertainty_nanos: 10 * MS,
        ..recording()
    };
    let mut h = Harness::new(1, options.clone());
    h.now.wall_nanos = BASE_WALL_NANOS;
    let out = h.client(0, 1, put("k", "v"), ConsistencyLevel::One);
    assert!(replies(&out).is_empty(), "held: {out:?}");
    assert_eq!(
        h.node(0).next_wake_wall_nanos(),
        Some(BASE_WALL_NANOS + 10 * MS)
    );
    assert!(h.tick_all(9 * MS).is_empty());
    assert_eq!(h.tick_all(MS), vec![ClientResponse::Written]);
    assert_eq!(h.node(0).stats().answers_commit_waited, 1);
    // A read of that version, now old enough, is not held.
    let out = h.client(0, 2, get("k"), ConsistencyLevel::One);
    assert_eq!(
        replies(&out),
        vec![&ClientResponse::Value(Some(b"v".to_vec()))]
    );
    // The planted bug answers at once.
    let mut h = Harness::new(
        1,
        NodeOptions {
            bug_skip_commit_wait: true,
            ..options
        },
    );
    h.now.wall_nanos = BASE_WALL_NANOS;
    let out = h.client(0, 1, put("k", "v"), ConsistencyLevel::One);
    assert_eq!(replies(&out), vec![&ClientResponse::Written]);
}

#[test]
fn a_reading_far_ahead_is_never_adopted_but_the_planted_bug_adopts_it() {
    let stamp_after_far_reading = |options: NodeOptions| {
        // Three nodes: one peer far ahead is no majority, so node 1 still
        // coordinates writes.
        let mut h = Harness::new(3, options);
        h.now.wall_nanos = BASE_WALL_NANOS;
        let input = gossip_from(&h, 2, BASE_WALL_NANOS + 10 * SECOND);
        h.step(0, input);
        let input = gossip_from(&h, 3, BASE_WALL_NANOS);
        h.step(0, input);
        let outputs = h.client(0, 1, put("k", "v"), ConsistencyLevel::One);
        assert_eq!(replies(&outputs), vec![&ClientResponse::Written]);
        stamps(&mut h, 0)[0]
    };
    let bound = crate::hlc::HlcClock::physical(BASE_WALL_NANOS + 500 * MS);
    assert!(stamp_after_far_reading(recording()).hlc < bound);
    let planted = stamp_after_far_reading(NodeOptions {
        bug_adopt_remote_readings_without_bound: true,
        ..recording()
    });
    assert!(planted.hlc > bound, "the planted bug adopts the reading");
}

#[test]
fn release_due_lets_a_held_answer_go_at_its_time_and_does_nothing_else() {
    let options = NodeOptions {
        commit_wait: true,
        clock_uncertainty_nanos: 3 * MS,
        ..recording()
    };
    // Two nodes: a tick would gossip to the peer; a release must not.
    let mut h = Harness::new(2, options);
    h.now.wall_nanos = BASE_WALL_NANOS;
    judge_clocks(&mut h, 0);
    let out = h.client(0, 1, put("k", "v"), ConsistencyLevel::One);
    assert!(replies(&out).is_empty(), "held: {out:?}");
    let release = h.node(0).next_wake_wall_nanos().expect("an answer is held");
    assert_eq!(release, BASE_WALL_NANOS + 3 * MS);
    let at = |h: &mut Harness, wall_nanos: u64| {
        h.now.wall_nanos = wall_nanos;
        h.now.mono_nanos = wall_nanos - BASE_WALL_NANOS;
        let now = h.now;
        let node = h.node(0);
        node.release_due(now);
        node.flush().unwrap()
    };
    let early = at(&mut h, release - 1);
    assert!(early.is_empty(), "released early: {early:?}");
    let due = at(&mut h, release);
    assert_eq!(replies(&due), vec![&ClientResponse::Written]);
    assert!(sends(&due).is_empty(), "a release sent messages: {due:?}");
    assert_eq!(h.node(0).next_wake_wall_nanos(), None);
}

#[test]
fn an_unjudged_node_needs_a_peers_acknowledgement_at_one_and_refuses_alone() {
    let written_at_once = |options: NodeOptions| {
        let mut h = Harness::new(3, options);
        h.now.wall_nanos = BASE_WALL_NANOS;
        let out = h.client(0, 1, put("k", "v"), ConsistencyLevel::One);
        let at_once = replies(&out) == vec![&ClientResponse::Written];
        // A peer's acknowledgement completes it.
        let later = if at_once { Vec::new() } else { h.pump(0, out) };
        (at_once, later)
    };
    let (at_once, later) = written_at_once(healing_options());
    assert!(!at_once, "its own replica alone took the write");
    assert_eq!(later, vec![ClientResponse::Written]);
    let (at_once, _) = written_at_once(NodeOptions {
        bug_unjudged_clock_writes_alone: true,
        ..healing_options()
    });
    assert!(at_once, "the planted bug writes alone");

    // With no other replica up it refuses, naming the clock.
    let mut h = Harness::new(3, healing_options());
    h.now.wall_nanos = BASE_WALL_NANOS;
    h.nodes[1] = None;
    h.nodes[2] = None;
    for _ in 0..40 {
        h.tick_all(100 * MS);
    }
    assert!(!h.node(0).believes_up(NodeId(2)) && !h.node(0).believes_up(NodeId(3)));
    let out = h.call(0, put("k", "v"), ConsistencyLevel::One);
    assert!(
        matches!(
            out.as_slice(),
            [ClientResponse::Error(ClientError::Clock { reason })] if reason.contains("heard 0 of the 2")
        ),
        "{out:?}"
    );
    assert_eq!(
        h.node(0).engine().get(b"k").unwrap(),
        None,
        "nothing applied"
    );
}
