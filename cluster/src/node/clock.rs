//! Time a node can trust: the hybrid clock seeded at start above every
//! timestamp the node stored, the clock mark that makes a coordinator's
//! timestamps stored even when it holds no replica of the key, this node's
//! clock judged against its peers' (writes refused while it is out of
//! bounds) and commit wait (answers held until the wall clock has passed
//! their version's timestamp by the clock uncertainty).

use enigma_engine::{Disk, Engine, Timestamp, Versioned};

use super::{Node, NodeOptions};
use crate::clock_offsets::ClockJudgment;
use crate::commit_wait::{release_wall_nanos, HeldAnswer};
use crate::hlc::HlcClock;
use crate::ids::{NodeId, Now, RequestId};
use crate::keyspace::clock_mark_key;
use crate::message::{ClientError, ClientResponse, Message, ReplicaFailure};

/// The clock a node starts with: above the highest timestamp its store
/// holds (written by it or by others, the clock mark included), so that a
/// node restarted with its wall clock behind the one it stopped with never
/// stamps a write below its own earlier ones.
pub(super) fn seeded_hlc<D: Disk>(engine: &Engine<D>, options: &NodeOptions) -> HlcClock {
    if options.bug_hlc_not_seeded_on_restart {
        return HlcClock::new();
    }
    HlcClock::seeded(engine.timestamp_max().map_or(0, |t| t.hlc))
}

impl<D: Disk> Node<D> {
    /// Takes in the wall-clock reading a peer's gossip round carries about
    /// itself. Called before the envelope's own reading is judged, so that
    /// a peer too far ahead is still measured (and this node can tell
    /// whether it is the one out of bounds).
    pub(super) fn note_clock_reading(&mut self, now: Now, from: NodeId, message: &Message) {
        if let Message::GossipSyn { states } = message {
            if let Some(own) = states.iter().find(|state| state.node == from) {
                self.clock_offsets
                    .record(from, own.wall_nanos, now.wall_nanos);
            }
        }
    }

    /// What this node concludes about its own clock from its peers'.
    pub fn clock_judgment(&self) -> ClockJudgment {
        self.clock_offsets.judgment()
    }

    /// `peer`'s wall clock minus this node's, nanoseconds, as its recent
    /// gossip shows it; `None` before any reading.
    pub fn peer_clock_offset_nanos(&self, peer: NodeId) -> Option<i64> {
        self.clock_offsets.offset(peer)
    }

    /// The earliest wall time (nanoseconds) at which an answer held by
    /// commit wait may leave: a driver may step the node then (a tick)
    /// rather than wait for its next regular tick.
    pub fn next_wake_wall_nanos(&self) -> Option<u64> {
        self.commit_waits.next_release_wall_nanos()
    }

    /// Releases the answers commit wait holds whose time has come, and
    /// nothing else a step or tick would do (a driver calls it at
    /// [`Self::next_wake_wall_nanos`], so that commit wait costs the
    /// uncertainty, not the uncertainty rounded up to the next tick).
    /// Outputs wait for [`Self::flush`].
    pub fn release_due(&mut self, now: Now) {
        if self.fatal.is_some() {
            return;
        }
        self.observe_time(now);
        self.release_commit_waits(now);
    }

    /// While this node has heard from too few peers to judge its clock
    /// (after a start, or cut off from most peers): how many it heard of
    /// how many it needs, for an error message; `None` once judged (or
    /// with the planted bug that lets its own replica take its writes
    /// alone all the same).
    pub(super) fn clock_unjudged(&self) -> Option<String> {
        if self.options.bug_unjudged_clock_writes_alone {
            return None;
        }
        match self.clock_offsets.judgment() {
            ClockJudgment::Unjudged { heard, needed } => {
                Some(format!("heard {heard} of the {needed} needed"))
            }
            ClockJudgment::InBounds | ClockJudgment::OutOfBounds { .. } => None,
        }
    }

    /// The error a client write gets while this node's clock is out of
    /// bounds (counted); `None` while it may coordinate writes.
    pub(super) fn clock_refusal(&mut self) -> Option<ClientError> {
        let ClockJudgment::OutOfBounds {
            peers_out,
            peers_total,
            offset_nanos,
            bound_nanos,
        } = self.clock_offsets.judgment()
        else {
            return None;
        };
        enigma_engine::marks::hit(enigma_engine::Mark::ClockOutOfBoundsRefused);
        self.stats.writes_refused_clock += 1;
        let direction = if offset_nanos < 0 {
            "ahead of"
        } else {
            "behind"
        };
        Some(ClientError::Clock {
            reason: format!(
                "this node's clock is {} ms {direction} {peers_out} of its {peers_total} peers, beyond the cluster's bound of {} ms (clock_offset_max_ms); it refuses writes until its clock is back in bounds",
                offset_nanos.unsigned_abs() / 1_000_000,
                bound_nanos / 1_000_000
            ),
        })
    }

    /// Stores the clock mark at `timestamp`, the timestamp of a write this
    /// node coordinates without holding a replica of its key, in the same
    /// group commit as the write: a restart seeds the clock above it.
    pub(super) fn store_clock_mark(&mut self, timestamp: Timestamp) -> Result<(), ReplicaFailure> {
        let mark = Versioned {
            timestamp,
            value: Some(Vec::new()),
        };
        self.local_write(&clock_mark_key(), mark)
    }

    /// Answers `request` of operation `seq` about the version stamped
    /// `timestamp` (written or read): at once, or, under commit wait, once
    /// this node's wall clock has passed the timestamp by the clock
    /// uncertainty.
    pub(super) fn answer_after_commit_wait(
        &mut self,
        seq: u64,
        request: RequestId,
        response: ClientResponse,
        timestamp: Option<Timestamp>,
    ) {
        let waits = self.options.commit_wait && !self.options.bug_skip_commit_wait;
        let release = match timestamp {
            Some(timestamp) if waits => {
                release_wall_nanos(timestamp.hlc, self.options.clock_uncertainty_nanos)
            }
            _ => 0,
        };
        let now_wall_nanos = self.last_now.map_or(0, |now| now.wall_nanos);
        if release > now_wall_nanos {
            enigma_engine::marks::hit(enigma_engine::Mark::CommitWaitHeld);
            self.stats.answers_commit_waited += 1;
            self.commit_waits.hold(
                seq,
                HeldAnswer {
                    release_wall_nanos: release,
                    request,
                    response,
                    timestamp,
                },
            );
            return;
        }
        self.reply_version(request, timestamp);
        self.reply(request, response);
    }

    /// Releases the answers commit wait held whose time has come.
    pub(super) fn release_commit_waits(&mut self, now: Now) {
        if self.commit_waits.is_empty() {
            return;
        }
        for held in self.commit_waits.due(now.wall_nanos) {
            self.reply_version(held.request, held.timestamp);
            self.reply(held.request, held.response);
        }
    }

    /// Takes back the held answer of operation `seq`, which counted this
    /// node's own write or read before a sync that failed (a full disk):
    /// the client hears of the failure instead.
    pub(super) fn retract_commit_wait(&mut self, seq: u64, failure: &ReplicaFailure) {
        if let Some(held) = self.commit_waits.take(seq) {
            let reason = failure.to_string();
            self.reply(
                held.request,
                ClientResponse::Error(ClientError::NoSpace { reason }),
            );
        }
    }
}
