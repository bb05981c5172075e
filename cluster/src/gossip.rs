//! Gossip: what each node knows of every member, spread epidemically.
//!
//! Every member has a [`MemberState`]: its boot generation and a heartbeat
//! version it bumps each gossip round, plus what it reports about itself
//! (status, clock readings, hints it holds, its last completed repair).
//! A state with a higher `(generation, heartbeat)` replaces an older one;
//! only the member itself ever writes its own state.
//!
//! A round is push-pull: the initiator sends every state it knows
//! ([`Gossip::syn`]), the receiver merges them and answers with the states
//! it knows better ([`Gossip::on_syn`]), which the initiator merges in turn
//! ([`Gossip::on_ack`]). Whenever a merge brings a newer heartbeat of a
//! member, the failure detector hears of it (see [`Merged`]).
//!
//! Whom to gossip with is a pure choice too ([`choose_targets`]): one random
//! live peer each round, and now and then a peer held down, so that a node
//! coming back is heard of soon (Cassandra's rule: with probability
//! `down / (live + 1)`).
//!
//! Bad input is refused, never merged: states for nodes that are not
//! members, more states than members, and claims about this node itself.

use std::collections::BTreeMap;

use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::ids::NodeId;

/// How a member describes itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum MemberStatus {
    /// Serving.
    Normal,
    /// Stopping cleanly: peers hold it down at once instead of waiting for
    /// their failure detectors to convict it.
    ShuttingDown,
}

impl MemberStatus {
    /// The name `enigma status` shows.
    pub fn name(self) -> &'static str {
        match self {
            Self::Normal => "normal",
            Self::ShuttingDown => "shutting-down",
        }
    }
}

/// One member's state, as it last reported it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberState {
    /// The member.
    pub node: NodeId,
    /// Its boot generation (raised at every start).
    pub generation: u64,
    /// Bumped by the member each gossip round.
    pub heartbeat: u64,
    /// What it says it is doing.
    pub status: MemberStatus,
    /// Its wall clock when it bumped `heartbeat`, nanoseconds.
    pub wall_nanos: u64,
    /// Its hybrid logical clock at that moment.
    pub hlc: u64,
    /// Hints it holds for other members.
    pub hints_pending: u64,
    /// Wall time (nanoseconds) at which its last full anti-entropy pass
    /// completed; 0 if none has since it started.
    pub repair_completed_wall_nanos: u64,
}

impl MemberState {
    fn version(&self) -> (u64, u64) {
        (self.generation, self.heartbeat)
    }
}

/// What this node last merged about a member, and when it did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KnownMember {
    /// The member's newest state known here.
    pub state: MemberState,
    /// This node's wall clock when that state arrived, nanoseconds: with
    /// `state.wall_nanos` it bounds the two clocks' offset (up to the
    /// message's delay).
    pub received_wall_nanos: u64,
}

/// Why gossip was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GossipRefusal {
    /// A state for a node that is not a member.
    UnknownMember { node: NodeId },
    /// More states than there are members, or one member twice.
    Malformed { states: usize },
    /// A state about this node that this node did not write.
    ClaimAboutSelf,
}

impl std::fmt::Display for GossipRefusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::UnknownMember { node } => write!(f, "gossip about non-member {node}"),
            Self::Malformed { states } => write!(f, "gossip with {states} states"),
            Self::ClaimAboutSelf => write!(f, "gossip claims a newer state of this node"),
        }
    }
}

/// What a merge changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Merged {
    /// Members whose heartbeat advanced within the same generation.
    pub heartbeats: Vec<NodeId>,
    /// Members seen with a new generation: they restarted.
    pub restarted: Vec<NodeId>,
    /// Members that now say they are shutting down.
    pub shutting_down: Vec<NodeId>,
}

/// This node's gossip state.
#[derive(Debug, Clone)]
pub struct Gossip {
    me: NodeId,
    members: BTreeMap<NodeId, KnownMember>,
}

impl Gossip {
    /// Gossip for node `me` of generation `generation`, in a cluster of
    /// `members` (which includes `me`).
    pub fn new(me: NodeId, generation: u64, members: &[NodeId], now_wall_nanos: u64) -> Self {
        assert!(members.contains(&me), "a node gossips only as a member");
        let mut known = BTreeMap::new();
        known.insert(
            me,
            KnownMember {
                state: MemberState {
                    node: me,
                    generation,
                    heartbeat: 0,
                    status: MemberStatus::Normal,
                    wall_nanos: now_wall_nanos,
                    hlc: 0,
                    hints_pending: 0,
                    repair_completed_wall_nanos: 0,
                },
                received_wall_nanos: now_wall_nanos,
            },
        );
        Self { me, members: known }
    }

    /// Starts a round: bumps this node's heartbeat with its current
    /// readings and returns every state it knows, to send.
    pub fn syn(&mut self, readings: SelfReadings) -> Vec<MemberState> {
        let own = self.members.get_mut(&self.me).expect("own state exists");
        own.state.heartbeat += 1;
        own.state.wall_nanos = readings.wall_nanos;
        own.state.hlc = readings.hlc;
        own.state.hints_pending = readings.hints_pending;
        own.state.repair_completed_wall_nanos = readings.repair_completed_wall_nanos;
        own.received_wall_nanos = readings.wall_nanos;
        self.states()
    }

    /// Marks this node as shutting down and returns every state, to send
    /// to every peer.
    pub fn announce_shutdown(&mut self, readings: SelfReadings) -> Vec<MemberState> {
        self.members
            .get_mut(&self.me)
            .expect("own state exists")
            .state
            .status = MemberStatus::ShuttingDown;
        self.syn(readings)
    }

    /// Takes in an initiator's states; returns what changed and the states
    /// this node knows better, to answer with.
    ///
    /// # Errors
    /// The gossip is refused whole, nothing merged.
    pub fn on_syn(
        &mut self,
        members: &[NodeId],
        states: Vec<MemberState>,
        now_wall_nanos: u64,
    ) -> Result<(Merged, Vec<MemberState>), GossipRefusal> {
        let theirs: BTreeMap<NodeId, (u64, u64)> =
            states.iter().map(|s| (s.node, s.version())).collect();
        let merged = self.merge(members, states, now_wall_nanos)?;
        let better = self
            .members
            .values()
            .filter(|known| {
                theirs
                    .get(&known.state.node)
                    .is_none_or(|&version| known.state.version() > version)
            })
            .map(|known| known.state.clone())
            .collect();
        Ok((merged, better))
    }

    /// Takes in the answer to this node's round.
    ///
    /// # Errors
    /// The gossip is refused whole, nothing merged.
    pub fn on_ack(
        &mut self,
        members: &[NodeId],
        states: Vec<MemberState>,
        now_wall_nanos: u64,
    ) -> Result<Merged, GossipRefusal> {
        self.merge(members, states, now_wall_nanos)
    }

    fn merge(
        &mut self,
        members: &[NodeId],
        states: Vec<MemberState>,
        now_wall_nanos: u64,
    ) -> Result<Merged, GossipRefusal> {
        let mut seen = Vec::with_capacity(states.len());
        if states.len() > members.len() {
            return Err(GossipRefusal::Malformed {
                states: states.len(),
            });
        }
        for state in &states {
            if !members.contains(&state.node) {
                return Err(GossipRefusal::UnknownMember { node: state.node });
            }
            if seen.contains(&state.node) {
                return Err(GossipRefusal::Malformed {
                    states: states.len(),
                });
            }
            seen.push(state.node);
            if state.node == self.me && state.version() > self.own().version() {
                return Err(GossipRefusal::ClaimAboutSelf);
            }
        }
        let mut merged = Merged::default();
        for state in states {
            if state.node == self.me {
                continue;
            }
            let old = self.members.get(&state.node).map(|k| k.state.clone());
            if old
                .as_ref()
                .is_some_and(|old| old.version() >= state.version())
            {
                continue;
            }
            match &old {
                Some(old) if old.generation == state.generation => {
                    merged.heartbeats.push(state.node)
                }
                _ => merged.restarted.push(state.node),
            }
            let was_shutting_down = old.is_some_and(|old| old.status == MemberStatus::ShuttingDown);
            if state.status == MemberStatus::ShuttingDown && !was_shutting_down {
                merged.shutting_down.push(state.node);
            }
            self.members.insert(
                state.node,
                KnownMember {
                    state,
                    received_wall_nanos: now_wall_nanos,
                },
            );
        }
        Ok(merged)
    }

    /// Every state known, in member order.
    pub fn states(&self) -> Vec<MemberState> {
        self.members.values().map(|k| k.state.clone()).collect()
    }

    /// What is known of `node`, if anything has been heard.
    pub fn member(&self, node: NodeId) -> Option<&KnownMember> {
        self.members.get(&node)
    }

    /// This node's own state.
    pub fn own(&self) -> &MemberState {
        &self.members[&self.me].state
    }
}

/// What this node reports about itself in each round.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SelfReadings {
    /// Its wall clock, nanoseconds.
    pub wall_nanos: u64,
    /// Its hybrid logical clock.
    pub hlc: u64,
    /// Hints it holds.
    pub hints_pending: u64,
    /// When its last full repair pass completed (0: none).
    pub repair_completed_wall_nanos: u64,
}

/// Whom to gossip with this round: one random peer among `live`, and, with
/// probability `down.len() / (live.len() + 1)`, one random peer among
/// `down` as well. With no live peer, a down one is always tried.
pub fn choose_targets(live: &[NodeId], down: &[NodeId], rng: &mut impl Rng) -> Vec<NodeId> {
    let mut targets = Vec::with_capacity(2);
    if !live.is_empty() {
        targets.push(live[rng.random_range(0..live.len())]);
    }
    if !down.is_empty() {
        let odds = down.len() as f64 / (live.len() + 1) as f64;
        if live.is_empty() || rng.random_bool(odds.min(1.0)) {
            targets.push(down[rng.random_range(0..down.len())]);
        }
    }
    targets
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    fn members() -> Vec<NodeId> {
        vec![NodeId(1), NodeId(2), NodeId(3)]
    }

    fn readings(wall: u64) -> SelfReadings {
        SelfReadings {
            wall_nanos: wall,
            ..SelfReadings::default()
        }
    }

    #[test]
    fn a_round_spreads_heartbeats_both_ways() {
        let mut a = Gossip::new(NodeId(1), 1, &members(), 0);
        let mut b = Gossip::new(NodeId(2), 7, &members(), 0);
        let syn = a.syn(readings(10));
        let (merged, ack) = b.on_syn(&members(), syn, 11).unwrap();
        assert_eq!(merged.restarted, vec![NodeId(1)], "first news of n1");
        let merged = a.on_ack(&members(), ack, 12).unwrap();
        assert_eq!(merged.restarted, vec![NodeId(2)]);
        assert_eq!(a.member(NodeId(2)).unwrap().state.generation, 7);
        // The next round brings a heartbeat within the same generation.
        let syn = a.syn(readings(20));
        let (merged, ack) = b.on_syn(&members(), syn, 21).unwrap();
        assert_eq!(merged.heartbeats, vec![NodeId(1)]);
        assert!(ack.is_empty(), "b knows nothing newer than a: {ack:?}");
    }

    #[test]
    fn states_travel_through_a_third_node() {
        let mut a = Gossip::new(NodeId(1), 1, &members(), 0);
        let mut b = Gossip::new(NodeId(2), 1, &members(), 0);
        let mut c = Gossip::new(NodeId(3), 1, &members(), 0);
        let syn = a.syn(readings(1));
        b.on_syn(&members(), syn, 1).unwrap();
        let syn = c.syn(readings(2));
        let (_, ack) = b.on_syn(&members(), syn, 2).unwrap();
        let merged = c.on_ack(&members(), ack, 3).unwrap();
        assert!(merged.restarted.contains(&NodeId(1)), "{merged:?}");
    }

    #[test]
    fn older_states_never_replace_newer_ones() {
        let mut a = Gossip::new(NodeId(1), 1, &members(), 0);
        let mut b = Gossip::new(NodeId(2), 1, &members(), 0);
        let old = a.syn(readings(1));
        let new = a.syn(readings(2));
        b.on_syn(&members(), new, 2).unwrap();
        let (merged, _) = b.on_syn(&members(), old, 3).unwrap();
        assert_eq!(merged, Merged::default());
        assert_eq!(b.member(NodeId(1)).unwrap().state.heartbeat, 2);
    }

    #[test]
    fn bad_gossip_is_refused_whole() {
        let mut a = Gossip::new(NodeId(1), 3, &members(), 0);
        let mut b = Gossip::new(NodeId(2), 1, &members(), 0);
        let mut stranger = a.syn(readings(1));
        stranger[0].node = NodeId(9);
        assert_eq!(
            b.on_syn(&members(), stranger, 1).unwrap_err(),
            GossipRefusal::UnknownMember { node: NodeId(9) }
        );
        let mut twice = a.syn(readings(2));
        twice.push(twice[0].clone());
        assert!(matches!(
            b.on_syn(&members(), twice, 1).unwrap_err(),
            GossipRefusal::Malformed { .. }
        ));
        let mut about_b = a.syn(readings(3));
        about_b[0].node = NodeId(2);
        assert_eq!(
            b.on_syn(&members(), about_b, 1).unwrap_err(),
            GossipRefusal::ClaimAboutSelf
        );
        assert!(b.member(NodeId(1)).is_none(), "nothing merged");
    }

    #[test]
    fn a_shutdown_is_announced_once() {
        let mut a = Gossip::new(NodeId(1), 1, &members(), 0);
        let mut b = Gossip::new(NodeId(2), 1, &members(), 0);
        b.on_syn(&members(), a.syn(readings(1)), 1).unwrap();
        let bye = a.announce_shutdown(readings(2));
        let (merged, _) = b.on_syn(&members(), bye, 2).unwrap();
        assert_eq!(merged.shutting_down, vec![NodeId(1)]);
        let (merged, _) = b.on_syn(&members(), a.syn(readings(3)), 3).unwrap();
        assert!(merged.shutting_down.is_empty());
    }

    #[test]
    fn targets_are_one_live_peer_and_sometimes_a_down_one() {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let live = [NodeId(2), NodeId(3)];
        let down = [NodeId(4)];
        let mut with_down = 0;
        for _ in 0..3000 {
            let targets = choose_targets(&live, &down, &mut rng);
            assert!(live.contains(&targets[0]));
            if targets.len() == 2 {
                assert_eq!(targets[1], NodeId(4));
                with_down += 1;
            }
        }
        // Odds 1/3.
        assert!((800..1200).contains(&with_down), "{with_down}");
        assert_eq!(choose_targets(&[], &down, &mut rng), vec![NodeId(4)]);
        assert!(choose_targets(&[], &[], &mut rng).is_empty());
    }
}
