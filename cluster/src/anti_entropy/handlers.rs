//! Anti-entropy's messages: a responder's side of a session (trees,
//! pulls, the initiator's push) and the initiator's answers (trees, data,
//! acknowledgements).

use super::scan::{Inbound, Scan, ScanGoal};
use super::{Action, AntiEntropy, Initiated, Phase, RepairEntry, Responding, SessionId};
use crate::ids::NodeId;
use crate::merkle::{MerkleTree, MERKLE_DEPTH_MAX};
use crate::message::Message;

impl AntiEntropy {
    /// Takes in a repair message from `from`. Refused messages are counted
    /// and change nothing.
    pub fn on_message(&mut self, from: NodeId, message: Message, now: u64) -> Vec<Action> {
        let mut actions = Vec::new();
        let accepted = match message {
            Message::TreeRequest {
                session,
                replicas,
                depth,
            } => self.on_tree_request(from, session, &replicas, depth, now, &mut actions),
            Message::TreeReply { session, leaves } => {
                self.on_tree_reply(from, session, leaves, now, &mut actions)
            }
            Message::RepairPull { session, leaves } => {
                self.on_pull(from, session, leaves, now, &mut actions)
            }
            Message::RepairData {
                session,
                seq,
                entries,
                last,
            } => self.on_data(from, session, seq, entries, last, now, &mut actions),
            Message::RepairDataAck { session, seq } => {
                self.on_data_ack(from, session, seq, now, &mut actions)
            }
            Message::RepairComplete {
                session,
                started_hlc,
            } => self.on_complete(from, session, started_hlc, &mut actions),
            Message::RepairRefused { session } => self.on_refused(from, session, now, &mut actions),
            _ => false,
        };
        if !accepted {
            self.stats.messages_refused += 1;
        }
        actions
    }

    fn on_tree_request(
        &mut self,
        from: NodeId,
        session: SessionId,
        replicas: &[NodeId],
        depth: u8,
        now: u64,
        actions: &mut Vec<Action>,
    ) -> bool {
        if session.initiator != from || depth > MERKLE_DEPTH_MAX {
            return false;
        }
        if let Some(r) = self.responding.get_mut(&session) {
            // A repeated request: answer again if the tree is built.
            r.last_progress_mono_nanos = now;
            if let Some(leaves) = &r.tree {
                actions.push(Action::Send {
                    to: from,
                    message: Message::TreeReply {
                        session,
                        leaves: leaves.clone(),
                    },
                });
            }
            return true;
        }
        let Some(range) = self.ranges.find(replicas) else {
            return false;
        };
        if !replicas.contains(&self.me) || !replicas.contains(&from) {
            return false;
        }
        // A newer session of the same initiator replaces its older ones.
        self.responding
            .retain(|id, _| id.initiator != from || id > &session);
        if self.responding.len() >= self.options.responder_sessions_max {
            actions.push(Action::Send {
                to: from,
                message: Message::RepairRefused { session },
            });
            return true;
        }
        self.responding.insert(
            session,
            Responding {
                range,
                depth,
                scan: Scan::tree(range, depth),
                tree: None,
                next_seq: 0,
                outstanding: None,
                inbound: Inbound::default(),
                last_progress_mono_nanos: now,
            },
        );
        true
    }

    fn on_tree_reply(
        &mut self,
        from: NodeId,
        session: SessionId,
        leaves: Vec<u64>,
        now: u64,
        actions: &mut Vec<Action>,
    ) -> bool {
        let depth = self.options.merkle_depth;
        let Some(s) = self.initiated.as_mut().filter(|s| s.id == session) else {
            return false;
        };
        if !s.peers.contains(&from) {
            return false;
        }
        let Phase::Trees { trees, .. } = &mut s.phase else {
            // A late duplicate after the trees were compared.
            return true;
        };
        let Ok(tree) = MerkleTree::from_leaves(depth, leaves) else {
            return false;
        };
        trees.insert(from, tree);
        s.last_progress_mono_nanos = now;
        self.advance_initiated(now, actions);
        true
    }

    fn on_pull(
        &mut self,
        from: NodeId,
        session: SessionId,
        leaves: Vec<u32>,
        now: u64,
        actions: &mut Vec<Action>,
    ) -> bool {
        let Some(r) = self.responding.get_mut(&session) else {
            return false;
        };
        if session.initiator != from || leaves.iter().any(|&l| (l as u64) >> r.depth != 0) {
            return false;
        }
        r.last_progress_mono_nanos = now;
        if matches!(r.scan.goal, ScanGoal::Stream { .. }) {
            // A repeated pull: the stream is under way (resends cover it).
            return true;
        }
        r.scan = Scan::stream(r.range, r.depth, leaves.into_iter().collect());
        self.advance_responder(session, now, actions);
        true
    }

    #[allow(clippy::too_many_arguments)]
    fn on_data(
        &mut self,
        from: NodeId,
        session: SessionId,
        seq: u64,
        entries: Vec<RepairEntry>,
        last: bool,
        now: u64,
        actions: &mut Vec<Action>,
    ) -> bool {
        // Every entry must belong to the session's range.
        let range = if session.initiator == self.me {
            match &self.initiated {
                Some(s) if s.id == session && s.peers.contains(&from) => s.range,
                _ => return false,
            }
        } else {
            match self.responding.get(&session) {
                Some(r) if session.initiator == from => r.range,
                _ => return false,
            }
        };
        if entries
            .iter()
            .any(|(key, _)| self.ranges.of_key(key) != range)
        {
            return false;
        }
        let inbound = if session.initiator == self.me {
            let Some(Initiated {
                phase: Phase::Pull { diffs, inbound },
                last_progress_mono_nanos,
                ..
            }) = &mut self.initiated
            else {
                // Data after the pull ended: a duplicate, already applied.
                return true;
            };
            if !diffs.contains_key(&from) {
                return false;
            }
            *last_progress_mono_nanos = now;
            inbound.entry(from).or_default()
        } else {
            let r = self.responding.get_mut(&session).expect("checked above");
            r.last_progress_mono_nanos = now;
            &mut r.inbound
        };
        if seq > inbound.next_seq {
            // Only one batch is ever in flight: this cannot be new.
            return false;
        }
        if seq == inbound.next_seq {
            inbound.next_seq += 1;
            inbound.finished |= last;
            self.stats.keys_received += entries.len() as u64;
        }
        // A repeat is applied again (idempotent) and acknowledged again.
        actions.push(Action::ApplyThenAck {
            entries,
            to: from,
            ack: Message::RepairDataAck { session, seq },
        });
        if session.initiator == self.me {
            self.advance_initiated(now, actions);
        }
        true
    }

    fn on_data_ack(
        &mut self,
        from: NodeId,
        session: SessionId,
        seq: u64,
        now: u64,
        actions: &mut Vec<Action>,
    ) -> bool {
        if session.initiator == self.me {
            let Some(s) = self.initiated.as_mut().filter(|s| s.id == session) else {
                return false;
            };
            let Phase::Push { outstanding, .. } = &mut s.phase else {
                return false;
            };
            let Some(batch) = outstanding.as_mut().filter(|b| b.seq == seq) else {
                return true; // a stale acknowledgement
            };
            batch.waiting.remove(&from);
            s.last_progress_mono_nanos = now;
            if batch.waiting.is_empty() {
                let last = batch.last;
                *outstanding = None;
                if last {
                    self.complete(now, actions);
                } else {
                    self.advance_initiated(now, actions);
                }
            }
            return true;
        }
        let Some(r) = self.responding.get_mut(&session) else {
            return false;
        };
        if from != session.initiator {
            return false;
        }
        if r.outstanding.as_ref().is_some_and(|b| b.seq == seq) {
            r.outstanding = None;
            r.last_progress_mono_nanos = now;
            self.advance_responder(session, now, actions);
        }
        true
    }

    fn on_complete(
        &mut self,
        from: NodeId,
        session: SessionId,
        started_hlc: u64,
        actions: &mut Vec<Action>,
    ) -> bool {
        if session.initiator != from {
            return false;
        }
        let Some(r) = self.responding.remove(&session) else {
            return false;
        };
        self.record_repaired(r.range, started_hlc, actions);
        true
    }

    fn on_refused(
        &mut self,
        from: NodeId,
        session: SessionId,
        now: u64,
        actions: &mut Vec<Action>,
    ) -> bool {
        if session.initiator == self.me {
            if self
                .initiated
                .as_ref()
                .is_some_and(|s| s.id == session && s.peers.contains(&from))
            {
                self.abort(now, actions);
            }
            return true;
        }
        if session.initiator == from {
            self.responding.remove(&session);
            return true;
        }
        false
    }
}
