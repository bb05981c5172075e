//! What a full disk does to the outputs of a batch whose sync could not be
//! written.
//!
//! A node holds every output until the sync of the writes it reflects (see
//! [`crate::node`]). When that sync fails for lack of space the writes stay
//! in the engine, not durable: they may become durable when a later sync
//! gets them out, or be lost in a crash. So nothing that claims or reflects
//! their durability may leave; what does not may, and every client still
//! gets exactly one answer:
//!
//! - acknowledgements to coordinators become failures (`NoSpace`), so they
//!   go on with other replicas or answer at once;
//! - read replies and digest replies to coordinators become failures too
//!   (they may show a version not yet durable);
//! - client replies become `NoSpace` errors (a write may have applied);
//! - acknowledgements of hints and of anti-entropy batches, and Merkle
//!   trees (which may hash versions not yet durable), are not sent: their
//!   senders send again, and by then the disk may have room;
//! - Paxos promises, acceptances and commit acknowledgements are not sent
//!   (each claims state made durable): the proposer retries or times out;
//! - nor are this node's own Paxos proposals and commits: its own acceptor
//!   is served in place, so a proposal may rest on a promise of its own
//!   whose write is among those waiting, and a commit on such an
//!   acceptance; a crash would lose it after peers acted on it. The
//!   operation times out (its outcome unknown). A later batch that writes
//!   nothing still holds back proposals (they may rest on a promise in an
//!   earlier batch), but not commits ([`rests_on_local_paxos_answer`]);
//! - writes, reads, gossip and other repair messages go as they are: they
//!   claim nothing about this node's disk.

use crate::ids::NodeId;
use crate::message::{ClientError, ClientResponse, Message, ReplicaFailure};
use crate::node::Output;

/// Whether `output` is a Paxos proposal of this node's, which may rest on
/// its own acceptor's promise (served in place) written in an earlier batch
/// that is not durable yet: held back even from a batch that wrote nothing.
///
/// A commit is not: it follows a value chosen with acceptances that
/// answered proposals, and this node's own acceptance was written in the
/// batch that sent those proposals, which left only once that batch was
/// durable (a batch whose sync fails sends no proposal). So the commit
/// goes, as the client's answer does: holding it back while the answer
/// leaves would leave an acknowledged value uncommitted until another
/// operation on the key finished it.
pub fn rests_on_local_paxos_answer(output: &Output) -> bool {
    matches!(
        output,
        Output::Send { envelope, .. } if matches!(envelope.message, Message::PaxosPropose { .. })
    )
}

/// The outputs of a batch whose sync failed at node `me` with `failure` (a
/// full disk), made safe to release.
pub fn release_without_durability(
    me: NodeId,
    held: Vec<Output>,
    failure: &ReplicaFailure,
) -> Vec<Output> {
    held.into_iter()
        .filter_map(|output| match output {
            Output::Send { to, mut envelope } => {
                match &mut envelope.message {
                    Message::HintAck { .. }
                    | Message::RepairDataAck { .. }
                    | Message::TreeReply { .. }
                    | Message::PaxosPromise { .. }
                    | Message::PaxosAccepted { .. }
                    | Message::PaxosCommitAck { .. }
                    | Message::PaxosPropose { .. }
                    | Message::PaxosCommit { .. } => return None,
                    Message::WriteAck { failure: slot, .. } => {
                        slot.get_or_insert_with(|| failure.clone());
                    }
                    Message::ReadReply {
                        version,
                        failure: slot,
                        unfinished,
                        ..
                    } => {
                        *version = None;
                        *unfinished = false;
                        slot.get_or_insert_with(|| failure.clone());
                    }
                    Message::DigestReply { op, .. } => {
                        // A digest may show a version not yet durable: it
                        // becomes the same failure as a read reply.
                        let op = *op;
                        envelope.message = Message::ReadReply {
                            op,
                            version: None,
                            failure: Some(failure.clone()),
                            unfinished: false,
                        };
                    }
                    Message::Write { .. }
                    | Message::Read { .. }
                    | Message::ReadDigest { .. }
                    | Message::RepairWrite { .. }
                    | Message::GossipSyn { .. }
                    | Message::GossipAck { .. }
                    | Message::Hint { .. }
                    | Message::TreeRequest { .. }
                    | Message::RepairPull { .. }
                    | Message::RepairData { .. }
                    | Message::RepairComplete { .. }
                    | Message::RepairRefused { .. }
                    | Message::PaxosPrepare { .. }
                    | Message::PaxosRefused { .. } => {}
                }
                Some(Output::Send { to, envelope })
            }
            Output::Reply {
                request,
                response,
                version,
            } => {
                // An answer turned into an error carries no version: the
                // client saw none.
                let (response, version) = match response {
                    error @ ClientResponse::Error(_) => (error, version),
                    ClientResponse::Value(_)
                    | ClientResponse::Written
                    | ClientResponse::Repaired(_)
                    | ClientResponse::Conditional { .. } => (
                        ClientResponse::Error(ClientError::NoSpace {
                            reason: format!("{me}: {failure}"),
                        }),
                        None,
                    ),
                };
                Some(Output::Reply {
                    request,
                    response,
                    version,
                })
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{NodeId, OpId, RequestId};
    use crate::message::{Envelope, WireVersion};
    use crate::paxos::{Ballot, Proposal};

    /// A prepare, a proposal, a commit, an acceptance and a refusal of
    /// one ballot, sent to node 2.
    fn paxos_sends() -> Vec<Output> {
        let op = OpId {
            generation: 1,
            seq: 9,
        };
        let ballot = Ballot {
            hlc: 5,
            node: 1,
            generation: 1,
        };
        let send = |message| Output::Send {
            to: NodeId(2),
            envelope: Envelope { hlc: 1, message },
        };
        vec![
            send(Message::PaxosPrepare {
                op,
                key: b"k".to_vec(),
                ballot,
            }),
            send(Message::PaxosPropose {
                op,
                key: b"k".to_vec(),
                proposal: Proposal {
                    ballot,
                    value: Some(b"v".to_vec()),
                    stamp_hlc: 5,
                    stamp_node: 1,
                },
            }),
            send(Message::PaxosCommit {
                op,
                key: b"k".to_vec(),
                ballot,
                version: WireVersion {
                    hlc: 5,
                    node: 1,
                    value: Some(b"v".to_vec()),
                },
            }),
            send(Message::PaxosAccepted { op, ballot }),
            send(Message::PaxosRefused {
                op,
                ballot,
                promised: ballot,
            }),
        ]
    }

    fn kind(output: &Output) -> &'static str {
        match output {
            Output::Send { envelope, .. } => envelope.message.kind(),
            Output::Reply { .. } => "reply",
        }
    }

    #[test]
    fn a_proposal_or_commit_that_may_rest_on_an_unsynced_local_answer_stays() {
        let failure = ReplicaFailure::NoSpace {
            file: "wal-1.log".to_owned(),
        };
        let kinds: Vec<&str> = release_without_durability(NodeId(1), paxos_sends(), &failure)
            .iter()
            .map(kind)
            .collect();
        // A prepare claims nothing and a refusal changed nothing.
        assert_eq!(kinds, vec!["paxos-prepare", "paxos-refused"]);
    }

    #[test]
    fn a_batch_that_wrote_nothing_holds_back_proposals_only() {
        let held_back: Vec<&str> = paxos_sends()
            .iter()
            .filter(|output| rests_on_local_paxos_answer(output))
            .map(kind)
            .collect();
        assert_eq!(held_back, vec!["paxos-propose"]);
    }

    #[test]
    fn nothing_that_claims_durability_leaves_and_every_client_is_answered() {
        let op = OpId {
            generation: 1,
            seq: 7,
        };
        let send = |message| Output::Send {
            to: NodeId(2),
            envelope: Envelope { hlc: 1, message },
        };
        let version = WireVersion {
            hlc: 3,
            node: 1,
            value: Some(b"v".to_vec()),
        };
        let held = vec![
            send(Message::WriteAck { op, failure: None }),
            send(Message::ReadReply {
                op,
                version: Some(version.clone()),
                failure: None,
                unfinished: true,
            }),
            send(Message::Write {
                op,
                key: b"k".to_vec(),
                version,
            }),
            Output::Reply {
                request: RequestId(1),
                response: ClientResponse::Written,
                version: None,
            },
            Output::Reply {
                request: RequestId(2),
                response: ClientResponse::Value(Some(b"v".to_vec())),
                version: None,
            },
        ];
        let failure = ReplicaFailure::NoSpace {
            file: "wal-1.log".to_owned(),
        };
        let out = release_without_durability(NodeId(1), held.clone(), &failure);
        assert_eq!(out.len(), held.len(), "one output for each");
        for output in &out {
            match output {
                Output::Send { envelope, .. } => match &envelope.message {
                    Message::WriteAck { failure, .. } => assert!(failure.is_some()),
                    Message::ReadReply {
                        version,
                        failure,
                        unfinished,
                        ..
                    } => assert!(version.is_none() && failure.is_some() && !unfinished),
                    Message::Write { .. } => {}
                    Message::DigestReply { .. } => panic!("a digest reply claims durability"),
                    _ => panic!("none was held"),
                },
                Output::Reply { response, .. } => assert!(matches!(
                    response,
                    ClientResponse::Error(ClientError::NoSpace { .. })
                )),
            }
        }
    }
}
