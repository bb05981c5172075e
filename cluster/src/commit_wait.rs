//! Commit wait: answers held until the coordinator's wall clock has passed
//! their version's timestamp by the clock uncertainty.
//!
//! Under last-write-wins two writes a few milliseconds apart may be ordered
//! against real time when clocks disagree: a write acknowledged through a
//! fast node can carry a higher timestamp than a write that starts after
//! the acknowledgement through a slow one. If no node's clock is more than
//! `uncertainty` away from another's, holding the acknowledgement until
//! this node's wall clock reads past `timestamp + uncertainty` (Spanner's
//! commit wait) means every clock in the cluster has passed the timestamp
//! when the client hears of it, so any write that starts afterwards is
//! stamped above it. A read that returns a version so recent is held the
//! same way, or a later write could be stamped below what the read showed.
//!
//! This module only keeps the held answers and says which are due; the
//! node releases them on any step at or after their time (drivers step a
//! node at least every tick), and takes one back as a failure if the sync
//! it relied on failed.

use std::collections::BTreeMap;

use enigma_engine::Timestamp;

use crate::hlc::HlcClock;
use crate::ids::RequestId;
use crate::message::ClientResponse;

/// A client answer waiting for the wall clock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldAnswer {
    /// This node's wall time (nanoseconds) at or after which it may leave.
    pub release_wall_nanos: u64,
    /// The client request it answers.
    pub request: RequestId,
    /// The answer.
    pub response: ClientResponse,
    /// The version behind it (written or read), for a checking driver.
    pub timestamp: Option<Timestamp>,
}

/// The wall time at which an answer about a version stamped `hlc` may
/// leave, under clock uncertainty `uncertainty_nanos`.
pub fn release_wall_nanos(hlc: u64, uncertainty_nanos: u64) -> u64 {
    HlcClock::wall_nanos_of(hlc).saturating_add(uncertainty_nanos)
}

/// Answers held, by the operation's sequence number.
#[derive(Debug, Default)]
pub struct CommitWaits {
    held: BTreeMap<u64, HeldAnswer>,
}

impl CommitWaits {
    /// Holds `answer` of operation `seq`.
    pub fn hold(&mut self, seq: u64, answer: HeldAnswer) {
        let earlier = self.held.insert(seq, answer);
        assert!(earlier.is_none(), "an operation is answered once");
    }

    /// Takes back the answer of operation `seq`, if held.
    pub fn take(&mut self, seq: u64) -> Option<HeldAnswer> {
        self.held.remove(&seq)
    }

    /// Removes and returns the answers due at wall time `now_wall_nanos`,
    /// in the order their operations started.
    pub fn due(&mut self, now_wall_nanos: u64) -> Vec<HeldAnswer> {
        let seqs: Vec<u64> = self
            .held
            .iter()
            .filter(|(_, held)| held.release_wall_nanos <= now_wall_nanos)
            .map(|(&seq, _)| seq)
            .collect();
        seqs.into_iter()
            .map(|seq| self.held.remove(&seq).expect("listed above"))
            .collect()
    }

    /// The earliest wall time at which a held answer is due, for a driver
    /// that wakes the node then rather than at its next tick.
    pub fn next_release_wall_nanos(&self) -> Option<u64> {
        self.held.values().map(|held| held.release_wall_nanos).min()
    }

    /// Answers held now.
    pub fn len(&self) -> usize {
        self.held.len()
    }

    /// Whether no answer is held.
    pub fn is_empty(&self) -> bool {
        self.held.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(release_wall_nanos: u64, request: u64) -> HeldAnswer {
        HeldAnswer {
            release_wall_nanos,
            request: RequestId(request),
            response: ClientResponse::Written,
            timestamp: None,
        }
    }

    #[test]
    fn an_answer_leaves_once_the_wall_clock_passes_its_timestamp_by_the_uncertainty() {
        let hlc = HlcClock::physical(5_000_000_000) + 3;
        let release = release_wall_nanos(hlc, 10_000_000);
        assert_eq!(release, 5_010_000_000);
        let mut waits = CommitWaits::default();
        waits.hold(1, answer(release, 7));
        assert_eq!(waits.next_release_wall_nanos(), Some(release));
        assert!(waits.due(release - 1).is_empty());
        assert_eq!(waits.due(release), vec![answer(release, 7)]);
        assert!(waits.is_empty());
    }

    #[test]
    fn due_answers_leave_in_operation_order_and_a_taken_one_never() {
        let mut waits = CommitWaits::default();
        waits.hold(3, answer(10, 3));
        waits.hold(1, answer(20, 1));
        waits.hold(2, answer(5, 2));
        assert_eq!(waits.take(2), Some(answer(5, 2)));
        let due: Vec<RequestId> = waits.due(20).into_iter().map(|a| a.request).collect();
        assert_eq!(due, vec![RequestId(1), RequestId(3)]);
        assert_eq!(waits.len(), 0);
    }
}
