//! Judging clocks: how far each peer's wall clock is from this node's, and
//! whether this node's own clock is out of bounds.
//!
//! Each gossip round a peer stamps its own state with its wall clock. The
//! difference between that reading and this node's wall clock when the
//! round arrives is the peer's offset minus the message's delay, so a
//! single reading may be wrong by however long the message took (a paused
//! process, a clogged link). Of the last [`READINGS_PER_PEER`] readings of
//! a peer the one nearest zero is kept as its offset: a delay can only make
//! a clock look further away, never nearer, in the direction it distorts,
//! so the nearest recent reading is the fairest judge and no burst of slow
//! messages convicts a clock that is in fact fine.
//!
//! A node whose clock is more than the bound away from a majority of its
//! peers is out of bounds ([`ClockJudgment::OutOfBounds`]): it stops
//! coordinating writes, which would carry timestamps that lose against
//! older writes (clock behind) or win against later ones (clock ahead). A
//! node that has heard from fewer peers than a majority does not judge
//! itself: refusing then would refuse every write of a cluster's first
//! second, and the bound checked on every message still protects it.

use std::collections::{BTreeMap, VecDeque};

use crate::ids::NodeId;

/// Recent readings kept per peer; the one nearest zero is its offset.
pub const READINGS_PER_PEER: usize = 8;

/// What this node concludes about its own clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClockJudgment {
    /// Too few peers heard to judge (`heard` of the `needed`).
    Unjudged { heard: usize, needed: usize },
    /// Within the bound of at least a majority of the peers heard.
    InBounds,
    /// More than `bound_nanos` away from `peers_out` of `peers_total`
    /// peers (a majority); `offset_nanos` is the offset nearest zero among
    /// them (peer minus this node: negative when this node is ahead).
    OutOfBounds {
        peers_out: usize,
        peers_total: usize,
        offset_nanos: i64,
        bound_nanos: u64,
    },
}

impl ClockJudgment {
    /// Whether this node must refuse to coordinate writes.
    pub fn refuses_writes(&self) -> bool {
        matches!(self, Self::OutOfBounds { .. })
    }

    /// A word for status pages: `in-bounds`, `unjudged` or
    /// `out-of-bounds`.
    pub fn word(&self) -> &'static str {
        match self {
            Self::Unjudged { .. } => "unjudged",
            Self::InBounds => "in-bounds",
            Self::OutOfBounds { .. } => "out-of-bounds",
        }
    }
}

/// Recent clock readings of every peer.
#[derive(Debug, Clone)]
pub struct ClockOffsets {
    /// Peer offsets (peer's wall clock minus this node's), newest last,
    /// nanoseconds.
    readings: BTreeMap<NodeId, VecDeque<i64>>,
    /// Peers in the cluster (members but this node).
    peers_total: usize,
    /// Largest tolerated offset.
    bound_nanos: u64,
}

impl ClockOffsets {
    /// No readings yet, for a node with `peers_total` peers and offset
    /// bound `bound_nanos`.
    pub fn new(peers_total: usize, bound_nanos: u64) -> Self {
        Self {
            readings: BTreeMap::new(),
            peers_total,
            bound_nanos,
        }
    }

    /// Records that `peer` read `peer_wall_nanos` on its wall clock when it
    /// sent what arrived here at `local_wall_nanos`.
    pub fn record(&mut self, peer: NodeId, peer_wall_nanos: u64, local_wall_nanos: u64) {
        let offset = i128::from(peer_wall_nanos) - i128::from(local_wall_nanos);
        let offset = offset.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64;
        let readings = self.readings.entry(peer).or_default();
        if readings.len() == READINGS_PER_PEER {
            readings.pop_front();
        }
        readings.push_back(offset);
    }

    /// The offset of `peer` (its clock minus this node's), nanoseconds:
    /// its recent reading nearest zero; `None` before any reading.
    pub fn offset(&self, peer: NodeId) -> Option<i64> {
        self.readings
            .get(&peer)?
            .iter()
            .copied()
            .min_by_key(|offset| offset.unsigned_abs())
    }

    /// Whether `peer`'s clock is further than the bound from this node's.
    pub fn peer_out_of_bounds(&self, peer: NodeId) -> bool {
        self.offset(peer)
            .is_some_and(|offset| offset.unsigned_abs() > self.bound_nanos)
    }

    /// What this node concludes about its own clock (see the module
    /// documentation).
    pub fn judgment(&self) -> ClockJudgment {
        if self.peers_total == 0 {
            return ClockJudgment::InBounds;
        }
        let needed = self.peers_total / 2 + 1;
        let offsets: Vec<i64> = self
            .readings
            .keys()
            .filter_map(|&peer| self.offset(peer))
            .collect();
        let out: Vec<i64> = offsets
            .iter()
            .copied()
            .filter(|offset| offset.unsigned_abs() > self.bound_nanos)
            .collect();
        if out.len() >= needed {
            let offset_nanos = out
                .iter()
                .copied()
                .min_by_key(|offset| offset.unsigned_abs())
                .expect("a majority is at least one peer");
            return ClockJudgment::OutOfBounds {
                peers_out: out.len(),
                peers_total: self.peers_total,
                offset_nanos,
                bound_nanos: self.bound_nanos,
            };
        }
        if offsets.len() < needed {
            return ClockJudgment::Unjudged {
                heard: offsets.len(),
                needed,
            };
        }
        ClockJudgment::InBounds
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;
    const BASE: u64 = 1_000_000 * MS;

    #[test]
    fn a_peer_offset_is_its_recent_reading_nearest_zero() {
        let mut clocks = ClockOffsets::new(2, 500 * MS);
        assert_eq!(clocks.offset(NodeId(2)), None);
        // Peer 2 is 300 ms behind; messages took 10 and 900 ms.
        clocks.record(NodeId(2), BASE - 300 * MS - 10 * MS, BASE);
        clocks.record(NodeId(2), BASE - 300 * MS - 900 * MS, BASE);
        assert_eq!(clocks.offset(NodeId(2)), Some(-310 * MS as i64));
        assert!(!clocks.peer_out_of_bounds(NodeId(2)));
    }

    #[test]
    fn old_readings_are_forgotten_after_the_window() {
        let mut clocks = ClockOffsets::new(2, 500 * MS);
        clocks.record(NodeId(2), BASE, BASE);
        for _ in 0..READINGS_PER_PEER {
            clocks.record(NodeId(2), BASE + 2_000 * MS, BASE);
        }
        assert_eq!(clocks.offset(NodeId(2)), Some(2_000 * MS as i64));
        assert!(clocks.peer_out_of_bounds(NodeId(2)));
    }

    #[test]
    fn a_node_away_from_a_majority_of_its_peers_is_out_of_bounds() {
        let mut clocks = ClockOffsets::new(2, 500 * MS);
        // This node is 2 s ahead of both peers.
        clocks.record(NodeId(2), BASE - 2_000 * MS, BASE);
        assert_eq!(
            clocks.judgment(),
            ClockJudgment::Unjudged {
                heard: 1,
                needed: 2
            },
            "one peer of two is not a majority"
        );
        clocks.record(NodeId(3), BASE - 2_100 * MS, BASE);
        let judgment = clocks.judgment();
        assert!(judgment.refuses_writes(), "{judgment:?}");
        assert_eq!(
            judgment,
            ClockJudgment::OutOfBounds {
                peers_out: 2,
                peers_total: 2,
                offset_nanos: -2_000 * MS as i64,
                bound_nanos: 500 * MS,
            }
        );
        // Back in bounds with one peer: no longer a majority away.
        clocks.record(NodeId(3), BASE - 100 * MS, BASE);
        assert_eq!(clocks.judgment(), ClockJudgment::InBounds);
    }

    #[test]
    fn one_skewed_peer_does_not_make_the_others_refuse() {
        let mut clocks = ClockOffsets::new(2, 500 * MS);
        clocks.record(NodeId(1), BASE + 2_000 * MS, BASE);
        clocks.record(NodeId(3), BASE + 20 * MS, BASE);
        assert_eq!(clocks.judgment(), ClockJudgment::InBounds);
        assert!(clocks.peer_out_of_bounds(NodeId(1)));
    }

    #[test]
    fn a_lone_node_is_always_in_bounds() {
        assert_eq!(ClockOffsets::new(0, MS).judgment(), ClockJudgment::InBounds);
    }
}
