//! Unit tests of the pure Paxos state machines.

use super::*;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

fn ballot(hlc: u64, node: u32) -> Ballot {
    Ballot {
        hlc,
        node,
        generation: 1,
    }
}

fn version(hlc: u64, value: &str) -> Versioned {
    Versioned {
        timestamp: Timestamp { hlc, node: 9 },
        value: Some(value.as_bytes().to_vec()),
    }
}

fn promise(current: Option<Versioned>) -> Promise {
    Promise {
        in_progress: None,
        committed: Ballot::ZERO,
        current,
    }
}

fn cas(expected: &str, new: &str) -> SerialOp {
    SerialOp::Cas {
        condition: Condition::Equals(expected.as_bytes().to_vec()),
        change: Change::Put(new.as_bytes().to_vec()),
    }
}

#[test]
fn ballots_order_by_clock_then_node_then_generation() {
    let a = Ballot {
        hlc: 5,
        node: 9,
        generation: 9,
    };
    let b = Ballot {
        hlc: 6,
        node: 1,
        generation: 1,
    };
    let c = Ballot {
        hlc: 6,
        node: 1,
        generation: 2,
    };
    assert!(Ballot::ZERO < a && a < b && b < c);
}

#[test]
fn an_acceptor_promises_only_above_its_promise_and_accepts_not_below_it() {
    let mut state = AcceptorState::default();
    assert_eq!(state.prepare(ballot(5, 1)), Ok((None, Ballot::ZERO)));
    assert_eq!(state.prepare(ballot(5, 1)), Err(ballot(5, 1)));
    assert_eq!(state.prepare(ballot(4, 2)), Err(ballot(5, 1)));
    let low = Proposal {
        ballot: ballot(4, 2),
        value: Some(b"x".to_vec()),
        stamp_hlc: 7,
        stamp_node: 9,
    };
    assert_eq!(state.propose(low.clone(), false), Err(ballot(5, 1)));
    assert_eq!(state.accepted, None);
    let equal = Proposal {
        ballot: ballot(5, 1),
        value: Some(b"y".to_vec()),
        stamp_hlc: 7,
        stamp_node: 9,
    };
    assert_eq!(state.propose(equal.clone(), false), Ok(()));
    assert_eq!(state.accepted, Some(equal.clone()));
    // A later prepare learns the accepted proposal.
    assert_eq!(state.prepare(ballot(7, 3)), Ok((Some(equal), Ballot::ZERO)));
    // The planted bug accepts below the promise.
    assert_eq!(state.propose(low.clone(), true), Ok(()));
    assert_eq!(state.accepted, Some(low));
}

#[test]
fn a_commit_finishes_accepted_proposals_at_or_below_it() {
    let mut state = AcceptorState::default();
    let p = Proposal {
        ballot: ballot(5, 1),
        value: None,
        stamp_hlc: 7,
        stamp_node: 9,
    };
    state.propose(p.clone(), false).unwrap();
    state.commit(ballot(4, 1));
    assert_eq!(state.accepted, Some(p));
    state.commit(ballot(5, 1));
    assert_eq!(state.accepted, None);
    assert_eq!(state.committed, ballot(5, 1));
    state.commit(ballot(3, 1));
    assert_eq!(state.committed, ballot(5, 1), "commits never go back");
    assert_eq!(state.prepare(ballot(9, 1)), Ok((None, ballot(5, 1))));
}

#[test]
fn states_round_trip_and_damage_decodes_to_none() {
    let states = [
        AcceptorState::default(),
        AcceptorState {
            promised: ballot(9, 2),
            accepted: Some(Proposal {
                ballot: ballot(8, 1),
                value: None,
                stamp_hlc: 7,
                stamp_node: 9,
            }),
            committed: ballot(3, 3),
        },
        AcceptorState {
            promised: ballot(9, 2),
            accepted: Some(Proposal {
                ballot: ballot(9, 2),
                value: Some(b"value".to_vec()),
                stamp_hlc: 7,
                stamp_node: 9,
            }),
            committed: Ballot::ZERO,
        },
        AcceptorState {
            promised: ballot(9, 2),
            accepted: Some(Proposal {
                ballot: ballot(9, 2),
                value: Some(Vec::new()),
                stamp_hlc: 7,
                stamp_node: 9,
            }),
            committed: Ballot::ZERO,
        },
    ];
    for state in states {
        let bytes = state.encode();
        assert!(bytes.len() <= STATE_OVERHEAD_BYTES + 5);
        assert_eq!(AcceptorState::decode(&bytes), Some(state.clone()));
        for len in 0..bytes.len().min(STATE_OVERHEAD_BYTES) {
            assert_eq!(AcceptorState::decode(&bytes[..len]), None, "prefix {len}");
        }
    }
    let mut bad = AcceptorState::default().encode();
    bad[0] = 7;
    assert_eq!(AcceptorState::decode(&bad), None);
    let mut trailing = AcceptorState::default().encode();
    trailing.push(1);
    assert_eq!(AcceptorState::decode(&trailing), None);
}

#[test]
fn conditions_and_increments_follow_redis() {
    let ten = Some(b"10".as_slice());
    let put = Change::Put(b"n".to_vec());
    assert_eq!(
        evaluate(None, &Condition::Absent, &put),
        Ok(Some(Some(b"n".to_vec())))
    );
    assert_eq!(evaluate(ten, &Condition::Absent, &put), Ok(None));
    assert_eq!(evaluate(None, &Condition::Present, &put), Ok(None));
    assert_eq!(
        evaluate(ten, &Condition::Equals(b"10".to_vec()), &Change::Delete),
        Ok(Some(None))
    );
    assert_eq!(
        evaluate(ten, &Condition::Equals(b"11".to_vec()), &Change::Delete),
        Ok(None)
    );
    assert_eq!(
        evaluate(ten, &Condition::Any, &Change::Incr(-12)),
        Ok(Some(Some(b"-2".to_vec())))
    );
    assert_eq!(
        evaluate(None, &Condition::Any, &Change::Incr(1)),
        Ok(Some(Some(b"1".to_vec())))
    );
    for bad in [
        "",
        "x",
        "01",
        "+1",
        "-0",
        " 1",
        "1.5",
        "99999999999999999999",
    ] {
        assert_eq!(
            evaluate(Some(bad.as_bytes()), &Condition::Any, &Change::Incr(1)),
            Err(ChangeError::NotAnInteger),
            "{bad:?}"
        );
    }
    let max = i64::MAX.to_string();
    assert_eq!(
        evaluate(Some(max.as_bytes()), &Condition::Any, &Change::Incr(1)),
        Err(ChangeError::Overflow)
    );
    assert_eq!(
        ChangeError::NotAnInteger.to_string(),
        "value is not an integer or out of range"
    );
}

#[test]
fn an_uncontended_cas_is_answered_once_a_quorum_accepted_and_commits_above_what_it_read() {
    let mut p = Proposer::new(NodeId(1), cas("a", "b"), 3, 2);
    p.start(ballot(100, 1));
    // The read is newer than the ballot's clock (a skewed writer).
    let read = version(500, "a");
    assert_eq!(
        p.on_promise(NodeId(1), ballot(100, 1), promise(Some(read.clone()))),
        ProposerStep::Wait
    );
    // An answer to an older ballot counts for nothing.
    assert_eq!(
        p.on_promise(NodeId(2), ballot(99, 1), promise(None)),
        ProposerStep::Wait
    );
    let step = p.on_promise(NodeId(2), ballot(100, 1), promise(None));
    assert_eq!(
        step,
        ProposerStep::Propose(Proposal {
            ballot: ballot(100, 1),
            value: Some(b"b".to_vec()),
            stamp_hlc: 501,
            stamp_node: 1,
        })
    );
    assert_eq!(p.on_accepted(NodeId(3), ballot(100, 1)), ProposerStep::Wait);
    assert_eq!(p.on_accepted(NodeId(3), ballot(100, 1)), ProposerStep::Wait);
    let expected = Versioned {
        timestamp: Timestamp { hlc: 501, node: 1 },
        value: Some(b"b".to_vec()),
    };
    // The second acceptance makes a quorum: the value is chosen, and the
    // answer carries exactly the version the commit writes.
    assert_eq!(
        p.on_accepted(NodeId(1), ballot(100, 1)),
        ProposerStep::Chosen {
            ballot: ballot(100, 1),
            version: expected.clone(),
            outcome: SerialOutcome {
                previous: Some(read),
                committed: Some(expected)
            }
        }
    );
    // The commit's acknowledgements, and a late refusal, change nothing.
    assert_eq!(
        p.on_commit_ack(NodeId(1), ballot(100, 1)),
        ProposerStep::Wait
    );
    assert_eq!(
        p.on_commit_ack(NodeId(2), ballot(100, 1)),
        ProposerStep::Wait
    );
    assert_eq!(
        p.on_refused(NodeId(2), ballot(100, 1), ballot(200, 2)),
        ProposerStep::Wait
    );
}

#[test]
fn one_acceptance_short_of_a_quorum_is_not_chosen_unless_planted() {
    let proposed = |p: &mut Proposer| {
        p.start(ballot(100, 1));
        for node in 1..=3 {
            p.on_promise(NodeId(node), ballot(100, 1), promise(Some(version(5, "a"))));
        }
        p.on_accepted(NodeId(1), ballot(100, 1))
    };
    let mut p = Proposer::new(NodeId(1), cas("a", "b"), 5, 3);
    assert_eq!(proposed(&mut p), ProposerStep::Wait);
    assert_eq!(p.on_accepted(NodeId(2), ballot(100, 1)), ProposerStep::Wait);
    assert!(matches!(
        p.on_accepted(NodeId(3), ballot(100, 1)),
        ProposerStep::Chosen { .. }
    ));
    // The planted bug counts its own acceptance as the value chosen.
    let mut bad =
        Proposer::new(NodeId(1), cas("a", "b"), 5, 3).planting_answer_after_first_acceptance(true);
    assert!(matches!(proposed(&mut bad), ProposerStep::Chosen { .. }));
}

#[test]
fn a_failed_condition_and_a_read_answer_after_the_prepare() {
    let mut p = Proposer::new(NodeId(1), cas("zzz", "b"), 3, 2);
    p.start(ballot(100, 1));
    p.on_promise(NodeId(1), ballot(100, 1), promise(Some(version(5, "a"))));
    assert_eq!(
        p.on_promise(NodeId(2), ballot(100, 1), promise(Some(version(7, "c")))),
        ProposerStep::Done(Ok(SerialOutcome {
            previous: Some(version(7, "c")),
            committed: None
        }))
    );
    let mut r = Proposer::new(NodeId(1), SerialOp::Read, 3, 2);
    r.start(ballot(100, 1));
    r.on_promise(NodeId(3), ballot(100, 1), promise(None));
    assert_eq!(
        r.on_promise(NodeId(2), ballot(100, 1), promise(None)),
        ProposerStep::Done(Ok(SerialOutcome {
            previous: None,
            committed: None
        }))
    );
}

#[test]
fn an_in_progress_proposal_is_finished_before_our_own_value() {
    let unfinished = Proposal {
        ballot: ballot(90, 2),
        value: Some(b"theirs".to_vec()),
        stamp_hlc: 7,
        stamp_node: 9,
    };
    let promises = |p: &mut Proposer| {
        p.start(ballot(100, 1));
        p.on_promise(NodeId(1), ballot(100, 1), promise(Some(version(5, "a"))));
        p.on_promise(
            NodeId(2),
            ballot(100, 1),
            Promise {
                in_progress: Some(unfinished.clone()),
                committed: ballot(80, 3),
                current: Some(version(5, "a")),
            },
        )
    };
    // Their value, re-stamped by this proposer above its ballot, the value
    // read and their old stamp: a stale stamp committed late could be
    // purged at once as a tombstone on one replica while another still holds
    // what it overwrote.
    let mut p = Proposer::new(NodeId(1), cas("a", "mine"), 3, 2);
    assert_eq!(
        promises(&mut p),
        ProposerStep::Propose(Proposal {
            ballot: ballot(100, 1),
            value: Some(b"theirs".to_vec()),
            stamp_hlc: 100,
            stamp_node: 1,
        })
    );
    // The planted bug finishes it with the stamp it was accepted with.
    let mut stale =
        Proposer::new(NodeId(1), cas("a", "mine"), 3, 2).planting_finish_with_stale_stamp(true);
    assert_eq!(
        promises(&mut stale),
        ProposerStep::Propose(Proposal {
            ballot: ballot(100, 1),
            value: Some(b"theirs".to_vec()),
            stamp_hlc: 7,
            stamp_node: 9,
        })
    );
    p.on_accepted(NodeId(1), ballot(100, 1));
    assert!(matches!(
        p.on_accepted(NodeId(2), ballot(100, 1)),
        ProposerStep::Commit { .. }
    ));
    p.on_commit_ack(NodeId(1), ballot(100, 1));
    assert_eq!(
        p.on_commit_ack(NodeId(3), ballot(100, 1)),
        ProposerStep::Restart { backoff: false }
    );
    assert_eq!(p.highest_seen(), ballot(100, 1));
    // The planted bug proposes its own value over it.
    let mut bad =
        Proposer::new(NodeId(1), cas("a", "mine"), 3, 2).planting_ignore_in_progress(true);
    assert_eq!(
        promises(&mut bad),
        ProposerStep::Propose(Proposal {
            ballot: ballot(100, 1),
            value: Some(b"mine".to_vec()),
            stamp_hlc: 100,
            stamp_node: 1,
        })
    );
}

#[test]
fn an_accepted_proposal_older_than_a_commit_is_not_finished() {
    let mut p = Proposer::new(NodeId(1), SerialOp::Read, 3, 2);
    p.start(ballot(100, 1));
    p.on_promise(
        NodeId(1),
        ballot(100, 1),
        Promise {
            in_progress: Some(Proposal {
                ballot: ballot(50, 2),
                value: None,
                stamp_hlc: 7,
                stamp_node: 9,
            }),
            committed: Ballot::ZERO,
            current: None,
        },
    );
    let step = p.on_promise(
        NodeId(2),
        ballot(100, 1),
        Promise {
            in_progress: None,
            committed: ballot(60, 3),
            current: Some(version(60, "later")),
        },
    );
    assert_eq!(
        step,
        ProposerStep::Done(Ok(SerialOutcome {
            previous: Some(version(60, "later")),
            committed: None
        }))
    );
}

#[test]
fn a_round_is_lost_once_a_quorum_cannot_remain() {
    let mut p = Proposer::new(NodeId(1), cas("a", "b"), 3, 2);
    p.start(ballot(100, 1));
    assert_eq!(
        p.on_refused(NodeId(2), ballot(100, 1), ballot(200, 2)),
        ProposerStep::Wait
    );
    assert_eq!(
        p.on_refused(NodeId(2), ballot(100, 1), ballot(200, 2)),
        ProposerStep::Wait,
        "one refusal counts once"
    );
    assert_eq!(
        p.on_refused(NodeId(3), ballot(100, 1), ballot(300, 3)),
        ProposerStep::Restart { backoff: true }
    );
    assert_eq!(p.highest_seen(), ballot(300, 3));
    p.start(ballot(301, 1));
    assert_eq!(p.rounds(), 2);
}

#[test]
fn our_own_value_lost_after_an_acceptor_took_it_is_in_doubt() {
    let start = |p: &mut Proposer| {
        p.start(ballot(100, 1));
        p.on_promise(NodeId(1), ballot(100, 1), promise(Some(version(5, "a"))));
        let step = p.on_promise(NodeId(2), ballot(100, 1), promise(None));
        assert!(matches!(step, ProposerStep::Propose(_)));
    };
    let mut p = Proposer::new(NodeId(1), cas("a", "b"), 3, 2);
    start(&mut p);
    p.on_accepted(NodeId(1), ballot(100, 1));
    p.on_refused(NodeId(2), ballot(100, 1), ballot(200, 2));
    assert_eq!(
        p.on_refused(NodeId(3), ballot(100, 1), ballot(200, 2)),
        ProposerStep::InDoubt
    );
    // Refused by a quorum before any answer said it was taken: still
    // in doubt (a refusal may answer a duplicate after an acceptance
    // whose answer was lost).
    let mut q = Proposer::new(NodeId(1), cas("a", "b"), 3, 2);
    start(&mut q);
    q.on_refused(NodeId(2), ballot(100, 1), ballot(200, 2));
    assert_eq!(
        q.on_refused(NodeId(3), ballot(100, 1), ballot(200, 2)),
        ProposerStep::InDoubt
    );
}

#[test]
fn increments_report_redis_errors() {
    let op = SerialOp::Cas {
        condition: Condition::Any,
        change: Change::Incr(1),
    };
    let mut p = Proposer::new(NodeId(1), op, 1, 1);
    p.start(ballot(10, 1));
    assert_eq!(
        p.on_promise(NodeId(1), ballot(10, 1), promise(Some(version(3, "abc")))),
        ProposerStep::Done(Err(ChangeError::NotAnInteger))
    );
}

#[test]
fn backoff_doubles_within_its_bounds_and_replays_from_the_seed() {
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    for round in 1..40 {
        let cap = (BACKOFF_MIN_NANOS << (round - 1).min(16)).min(BACKOFF_MAX_NANOS);
        let wait = backoff_nanos(round, &mut rng);
        assert!(wait >= cap / 2 && wait <= cap, "round {round}: {wait}");
    }
    let draw = |seed| {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        (1..10)
            .map(|r| backoff_nanos(r, &mut rng))
            .collect::<Vec<_>>()
    };
    assert_eq!(draw(5), draw(5));
}

fn proposal_of(ballot: Ballot, value: &str) -> Proposal {
    Proposal {
        ballot,
        value: Some(value.as_bytes().to_vec()),
        stamp_hlc: ballot.hlc,
        stamp_node: ballot.node,
    }
}

#[test]
fn an_acceptor_that_forgot_a_promise_takes_no_part_at_or_below_its_floor() {
    // P2 prepares b2 at B and C; P1 prepares b1 > b2 at A and B; A loses
    // its state. Were A to take P2's proposal, v2 would be chosen by A and
    // C, and P1's proposal, which A and B promised, would choose v1 too.
    let (b2, b1) = (ballot(10, 2), ballot(20, 1));
    let (mut a, mut b, mut c) = (
        AcceptorState::default(),
        AcceptorState::default(),
        AcceptorState::default(),
    );
    assert!(b.prepare(b2).is_ok() && c.prepare(b2).is_ok());
    assert!(a.prepare(b1).is_ok() && b.prepare(b1).is_ok());
    let floor = crate::ballot_mark::floor(20);
    for planted in [true, false] {
        let mut a = AcceptorState::default();
        let mut c = c.clone();
        let mut b = b.clone();
        let served = a.after_loss(b2, false, floor, planted) == AfterLoss::Serve;
        assert_eq!(served, planted);
        let v2_accepted = [
            served && a.propose(proposal_of(b2, "v2"), false).is_ok(),
            c.propose(proposal_of(b2, "v2"), false).is_ok(),
        ];
        let v2_chosen = v2_accepted.iter().filter(|&&ok| ok).count() >= 2;
        assert_eq!(
            v2_chosen, planted,
            "only an acceptor that forgot lets v2 be chosen"
        );
        let v1_served = a.after_loss(b1, false, floor, planted) == AfterLoss::Serve;
        let v1_accepted = [
            v1_served && a.propose(proposal_of(b1, "v1"), false).is_ok(),
            b.propose(proposal_of(b1, "v1"), false).is_ok(),
        ];
        let v1_chosen = v1_accepted.iter().filter(|&&ok| ok).count() >= 2;
        assert!(v1_chosen || !planted);
        assert_eq!(v1_chosen && v2_chosen, planted, "two values chosen");
    }
}

#[test]
fn an_acceptor_that_forgot_an_acceptance_withholds_promises_until_it_knows_more() {
    // v was chosen by A and C at ballot 5 and not yet committed; A loses
    // its state. A promise from A for ballot 30 would say "nothing
    // accepted": with B's, a majority that misses v.
    let floor = crate::ballot_mark::floor(20);
    let amnesiac = AcceptorState::default();
    let prepare = ballot(30, 3);
    assert_eq!(
        amnesiac.after_loss(prepare, true, floor, false),
        AfterLoss::Unsure
    );
    assert_eq!(
        amnesiac.after_loss(prepare, true, floor, true),
        AfterLoss::Serve,
        "planted"
    );
    // Proposals above the floor are taken: their proposer heard from a
    // majority that kept its state.
    assert_eq!(
        amnesiac.after_loss(prepare, false, floor, false),
        AfterLoss::Serve
    );
    assert_eq!(
        amnesiac.after_loss(ballot(20, 9), false, floor, false),
        AfterLoss::BelowFloor
    );
    // Once it accepted above the floor, or learned of a commit above it,
    // it knows as much as it forgot.
    let mut accepted = amnesiac.clone();
    accepted
        .propose(proposal_of(prepare, "w"), false)
        .expect("above every promise");
    assert!(accepted.knows_above(floor));
    assert_eq!(
        accepted.after_loss(ballot(31, 3), true, floor, false),
        AfterLoss::Serve
    );
    let mut committed = amnesiac.clone();
    committed.commit(ballot(25, 1));
    assert!(committed.knows_above(floor));
    let mut below = amnesiac;
    below.commit(ballot(15, 1));
    below
        .propose(proposal_of(ballot(19, 1), "old"), false)
        .expect("no promise");
    assert!(
        !below.knows_above(floor),
        "records at or below the floor tell nothing"
    );
}
