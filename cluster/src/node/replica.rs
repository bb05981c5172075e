//! Serving other nodes: every peer message enters here, is checked (a
//! member, a sane clock reading), and is either served in place (reads,
//! writes) or handed to the protocol it belongs to.

use enigma_engine::Disk;

use super::Node;
use crate::hlc::LOGICAL_BITS;
use crate::ids::{NodeId, Now};
use crate::keyspace::is_system;
use crate::message::{Envelope, Message, VersionDigest, WireVersion};

impl<D: Disk> Node<D> {
    pub(super) fn on_envelope(&mut self, now: Now, from: NodeId, envelope: Envelope) {
        if from == self.id || !self.ring.nodes().contains(&from) {
            self.stats.messages_ignored += 1;
            return;
        }
        self.note_clock_reading(now, from, &envelope.message);
        // A reading far ahead of this node's wall clock is never adopted:
        // it would drag every later timestamp of this node along.
        if self.too_far_ahead(now, envelope.hlc) {
            self.refuse_clock(from);
            return;
        }
        self.hlc.observe(envelope.hlc);
        match envelope.message {
            Message::Write { op, key, version } => {
                if self.mutation_acceptable(now, from, &key, &version, true) {
                    self.serve_write(from, op, key, version);
                }
            }
            Message::RepairWrite { op, key, version } => {
                if self.mutation_acceptable(now, from, &key, &version, false) {
                    self.serve_write(from, op, key, version);
                }
            }
            Message::Read { op, key } => {
                if is_system(&key) {
                    self.stats.messages_ignored += 1;
                    return;
                }
                let reply = match self.read_with_paxos(&key) {
                    Ok((version, unfinished)) => Message::ReadReply {
                        op,
                        version: version.map(Into::into),
                        failure: None,
                        unfinished,
                    },
                    Err(failure) => Message::ReadReply {
                        op,
                        version: None,
                        failure: Some(failure),
                        unfinished: false,
                    },
                };
                self.send(from, reply);
            }
            Message::ReadDigest { op, key } => {
                if is_system(&key) {
                    self.stats.messages_ignored += 1;
                    return;
                }
                // A replica that cannot read the key says so as for a
                // data read: the coordinator counts the failure either way.
                let reply = match self.read_with_paxos(&key) {
                    Ok((version, unfinished)) => Message::DigestReply {
                        op,
                        digest: version.as_ref().map(VersionDigest::of),
                        unfinished,
                    },
                    Err(failure) => Message::ReadReply {
                        op,
                        version: None,
                        failure: Some(failure),
                        unfinished: false,
                    },
                };
                self.send(from, reply);
            }
            Message::DigestReply {
                op,
                digest,
                unfinished,
            } => self.on_digest_reply(op, from, digest, unfinished),
            Message::WriteAck { op, failure: None } => self.on_write_ack(op, from),
            Message::WriteAck {
                op,
                failure: Some(failure),
            } => self.on_write_failure(op, from, failure),
            Message::ReadReply {
                op,
                version,
                failure: None,
                unfinished,
            } => self.on_read_reply(op, from, version.map(Into::into), unfinished),
            Message::ReadReply {
                op,
                failure: Some(failure),
                ..
            } => self.on_read_failure(op, from, failure),
            Message::GossipSyn { states } => self.on_gossip_syn(now, from, states),
            Message::GossipAck { states } => self.on_gossip_ack(now, from, states),
            Message::Hint { id, key, version } => self.on_hint(now, from, id, key, version),
            Message::HintAck { id } => self.on_hint_ack(now, from, id),
            message @ (Message::TreeRequest { .. }
            | Message::TreeReply { .. }
            | Message::RepairPull { .. }
            | Message::RepairData { .. }
            | Message::RepairDataAck { .. }
            | Message::RepairComplete { .. }
            | Message::RepairRefused { .. }) => self.on_repair_message(now, from, message),
            message @ (Message::PaxosPrepare { .. }
            | Message::PaxosPromise { .. }
            | Message::PaxosPropose { .. }
            | Message::PaxosAccepted { .. }
            | Message::PaxosCommit { .. }
            | Message::PaxosCommitAck { .. }
            | Message::PaxosRefused { .. }) => self.on_paxos_message(now, from, message),
        }
    }

    fn serve_write(
        &mut self,
        from: NodeId,
        op: crate::ids::OpId,
        key: Vec<u8>,
        version: WireVersion,
    ) {
        let failure = self.write_and_acknowledge(&key, version).err();
        self.send(from, Message::WriteAck { op, failure });
    }

    /// Whether a mutation sent by `from` may be applied here: a client key,
    /// a timestamp not far ahead of this node's clock and, when `fresh` (a
    /// client write or a hint, not a repair of an existing version), not
    /// older than [`super::NodeOptions::write_lateness_max_nanos`]. Refusals
    /// are counted.
    pub(super) fn mutation_acceptable(
        &mut self,
        now: Now,
        from: NodeId,
        key: &[u8],
        version: &WireVersion,
        fresh: bool,
    ) -> bool {
        if is_system(key) {
            self.stats.messages_ignored += 1;
            return false;
        }
        if self.too_far_ahead(now, version.hlc) {
            self.refuse_clock(from);
            return false;
        }
        if fresh && self.arrives_too_late(now, version.hlc) {
            enigma_engine::marks::hit(enigma_engine::Mark::WriteRefusedLate);
            self.stats.writes_refused_late += 1;
            return false;
        }
        true
    }

    /// Whether a write (or a Paxos commit) stamped `hlc` arrives longer
    /// after its timestamp than `write_lateness_max` allows: tombstone
    /// purging counts on nothing older arriving.
    pub(super) fn arrives_too_late(&self, now: Now, hlc: u64) -> bool {
        let oldest_micros = now
            .wall_nanos
            .saturating_sub(self.options.write_lateness_max_nanos())
            / 1_000;
        hlc >> LOGICAL_BITS < oldest_micros
    }

    /// Whether a hybrid-clock reading is further ahead of this node's wall
    /// clock than the bound allows.
    pub(super) fn too_far_ahead(&self, now: Now, hlc: u64) -> bool {
        if self.options.bug_adopt_remote_readings_without_bound {
            return false;
        }
        let limit_micros = now
            .wall_nanos
            .saturating_add(self.options.clock_offset_max_nanos)
            / 1_000;
        hlc >> LOGICAL_BITS > limit_micros
    }

    fn refuse_clock(&mut self, from: NodeId) {
        enigma_engine::marks::hit(enigma_engine::Mark::PeerClockRefused);
        *self.stats.clock_refusals.entry(from).or_default() += 1;
    }
}
