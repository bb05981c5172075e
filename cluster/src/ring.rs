//! The token ring: which nodes hold which keys.
//!
//! Each node owns `vnodes_per_node` tokens on a 64-bit ring; a key's token is
//! the xxh3 hash of the key, and its replicas are the first
//! `replication_factor` distinct nodes met walking clockwise from it (the
//! preference list). Tokens are derived from the node id alone, so every node
//! computes the same ring without talking.

use thiserror::Error;
use xxhash_rust::xxh3::{xxh3_64, xxh3_64_with_seed};

use crate::ids::NodeId;

/// Most virtual nodes a node may own: bounds the ring's memory.
pub const VNODES_PER_NODE_MAX: u32 = 4096;

/// A ring that cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RingError {
    /// No nodes, or the same node twice.
    #[error("invalid membership: {reason}")]
    InvalidMembership { reason: String },
    /// The replication factor is zero or exceeds the node count.
    #[error("replication factor {replication_factor} does not fit {nodes} nodes")]
    InvalidReplicationFactor {
        replication_factor: usize,
        nodes: usize,
    },
    /// `vnodes_per_node` outside `1..=VNODES_PER_NODE_MAX`.
    #[error("vnodes per node {vnodes} outside 1..={VNODES_PER_NODE_MAX}")]
    InvalidVnodes { vnodes: u32 },
}

/// One member's share of the key space; see [`Ring::ownership`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Ownership {
    /// The member.
    pub node: NodeId,
    /// Fraction of the key space for which it is the first replica.
    pub primary_share: f64,
    /// Fraction of the key space of which it holds a replica.
    pub replica_share: f64,
}

/// A static ring.
#[derive(Debug, Clone)]
pub struct Ring {
    /// `(token, owner)`, sorted by token then owner.
    tokens: Vec<(u64, NodeId)>,
    /// Members, sorted.
    nodes: Vec<NodeId>,
    /// Replicas per key.
    replication_factor: usize,
}

impl Ring {
    /// Builds the ring of `nodes`.
    ///
    /// # Errors
    /// See [`RingError`].
    pub fn new(
        nodes: &[NodeId],
        vnodes_per_node: u32,
        replication_factor: usize,
    ) -> Result<Self, RingError> {
        let mut sorted = nodes.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        if sorted.is_empty() || sorted.len() != nodes.len() {
            return Err(RingError::InvalidMembership {
                reason: format!("{} nodes, {} distinct", nodes.len(), sorted.len()),
            });
        }
        if replication_factor == 0 || replication_factor > sorted.len() {
            return Err(RingError::InvalidReplicationFactor {
                replication_factor,
                nodes: sorted.len(),
            });
        }
        if vnodes_per_node == 0 || vnodes_per_node > VNODES_PER_NODE_MAX {
            return Err(RingError::InvalidVnodes {
                vnodes: vnodes_per_node,
            });
        }
        let mut tokens: Vec<(u64, NodeId)> = sorted
            .iter()
            .flat_map(|&node| (0..vnodes_per_node).map(move |v| (vnode_token(node, v), node)))
            .collect();
        tokens.sort_unstable();
        Ok(Self {
            tokens,
            nodes: sorted,
            replication_factor,
        })
    }

    /// The token of a key.
    pub fn token(key: &[u8]) -> u64 {
        xxh3_64(key)
    }

    /// The replicas of `key`, in preference order.
    pub fn replicas(&self, key: &[u8]) -> Vec<NodeId> {
        let token = Self::token(key);
        let start = self.tokens.partition_point(|&(t, _)| t < token);
        self.replicas_from(start)
    }

    /// The preference list of the keys whose first token at or after them
    /// is the one at index `start` (wrapping).
    fn replicas_from(&self, start: usize) -> Vec<NodeId> {
        let mut replicas = Vec::with_capacity(self.replication_factor);
        for i in 0..self.tokens.len() {
            let (_, owner) = self.tokens[(start + i) % self.tokens.len()];
            if !replicas.contains(&owner) {
                replicas.push(owner);
                if replicas.len() == self.replication_factor {
                    break;
                }
            }
        }
        assert_eq!(
            replicas.len(),
            self.replication_factor,
            "ring holds too few nodes"
        );
        replicas
    }

    /// How much of the key space each member owns: for every member in
    /// order, the fraction of tokens for which it is the first replica and
    /// the fraction for which it is any replica. The first fractions sum to
    /// 1, the second to the replication factor.
    pub fn ownership(&self) -> Vec<Ownership> {
        let mut primary = vec![0u128; self.nodes.len()];
        let mut replica = vec![0u128; self.nodes.len()];
        let index = |node: NodeId| {
            self.nodes
                .binary_search(&node)
                .expect("every token owner is a member")
        };
        for i in 0..self.tokens.len() {
            let token = self.tokens[i].0;
            let previous = self.tokens[(i + self.tokens.len() - 1) % self.tokens.len()].0;
            // The keys in (previous, token] land on token i; one token alone
            // covers the whole ring.
            let width = match token.wrapping_sub(previous) {
                0 if self.tokens.len() == 1 => 1u128 << 64,
                w => u128::from(w),
            };
            let replicas = self.replicas_from(i);
            primary[index(replicas[0])] += width;
            for node in replicas {
                replica[index(node)] += width;
            }
        }
        let whole = (1u128 << 64) as f64;
        self.nodes
            .iter()
            .enumerate()
            .map(|(i, &node)| Ownership {
                node,
                primary_share: primary[i] as f64 / whole,
                replica_share: replica[i] as f64 / whole,
            })
            .collect()
    }

    /// The ring's repair ranges: every distinct replica set (sorted), and
    /// for each token position (in token order) the index of the set that
    /// holds the keys landing on it. Anti-entropy compares one set's keys at
    /// a time: all ring ranges with the same replicas are repaired together,
    /// with one scan.
    pub fn repair_ranges(&self) -> RepairRanges {
        let mut sets: Vec<Vec<NodeId>> = Vec::new();
        let mut by_token = Vec::with_capacity(self.tokens.len());
        for i in 0..self.tokens.len() {
            let mut replicas = self.replicas_from(i);
            replicas.sort_unstable();
            let index = match sets.iter().position(|s| *s == replicas) {
                Some(index) => index,
                None => {
                    sets.push(replicas);
                    sets.len() - 1
                }
            };
            by_token.push((self.tokens[i].0, index));
        }
        RepairRanges { sets, by_token }
    }

    /// Members of the ring, sorted.
    pub fn nodes(&self) -> &[NodeId] {
        &self.nodes
    }

    /// Replicas per key.
    pub fn replication_factor(&self) -> usize {
        self.replication_factor
    }
}

/// Repair ranges: the ring grouped by replica set (see
/// [`Ring::repair_ranges`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepairRanges {
    /// Each distinct replica set, sorted, in the order first met on the ring.
    sets: Vec<Vec<NodeId>>,
    /// `(token, set index)` in token order.
    by_token: Vec<(u64, usize)>,
}

impl RepairRanges {
    /// How many repair ranges there are.
    pub fn len(&self) -> usize {
        self.sets.len()
    }

    /// Whether there are none (never, for a valid ring).
    pub fn is_empty(&self) -> bool {
        self.sets.is_empty()
    }

    /// The replicas of range `index`, sorted.
    pub fn replicas(&self, index: usize) -> &[NodeId] {
        &self.sets[index]
    }

    /// The range whose replicas are exactly `replicas` (sorted), if any.
    pub fn find(&self, replicas: &[NodeId]) -> Option<usize> {
        self.sets.iter().position(|s| s == replicas)
    }

    /// The range holding the keys of `token`.
    pub fn of_token(&self, token: u64) -> usize {
        let at = self.by_token.partition_point(|&(t, _)| t < token);
        self.by_token[at % self.by_token.len()].1
    }

    /// The range holding `key`.
    pub fn of_key(&self, key: &[u8]) -> usize {
        self.of_token(Ring::token(key))
    }
}

/// The token of virtual node `vnode` of `node`: a pure function of both.
fn vnode_token(node: NodeId, vnode: u32) -> u64 {
    xxh3_64_with_seed(&vnode.to_le_bytes(), u64::from(node.0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    fn nodes(n: u32) -> Vec<NodeId> {
        (1..=n).map(NodeId).collect()
    }

    #[test]
    fn replicas_are_distinct_and_as_many_as_the_factor() {
        let ring = Ring::new(&nodes(5), 16, 3).unwrap();
        for k in 0..1000u32 {
            let r = ring.replicas(&k.to_le_bytes());
            assert_eq!(r.len(), 3);
            let mut d = r.clone();
            d.sort();
            d.dedup();
            assert_eq!(d.len(), 3);
        }
    }

    #[test]
    fn bad_configurations_are_rejected() {
        assert!(Ring::new(&[], 8, 1).is_err());
        assert!(Ring::new(&nodes(2), 8, 3).is_err());
        assert!(Ring::new(&nodes(3), 0, 3).is_err());
        assert!(Ring::new(&[NodeId(1), NodeId(1)], 8, 1).is_err());
    }

    #[test]
    fn primary_ownership_is_balanced_with_enough_vnodes() {
        let ring = Ring::new(&nodes(4), 256, 1).unwrap();
        let mut owned: BTreeMap<NodeId, u32> = BTreeMap::new();
        let keys = 40_000u32;
        for k in 0..keys {
            *owned.entry(ring.replicas(&k.to_le_bytes())[0]).or_default() += 1;
        }
        let fair = keys / 4;
        for (node, count) in owned {
            assert!(
                count > fair * 8 / 10 && count < fair * 12 / 10,
                "{node} owns {count}"
            );
        }
    }

    #[test]
    fn ownership_shares_sum_to_one_and_to_the_replication_factor() {
        let ring = Ring::new(&nodes(4), 16, 3).unwrap();
        let shares = ring.ownership();
        assert_eq!(shares.len(), 4);
        let primary: f64 = shares.iter().map(|s| s.primary_share).sum();
        let replica: f64 = shares.iter().map(|s| s.replica_share).sum();
        assert!((primary - 1.0).abs() < 1e-9, "{primary}");
        assert!((replica - 3.0).abs() < 1e-9, "{replica}");
        let full = Ring::new(&nodes(3), 4, 3).unwrap().ownership();
        assert!(full.iter().all(|s| (s.replica_share - 1.0).abs() < 1e-9));
        let alone = Ring::new(&nodes(1), 1, 1).unwrap().ownership();
        assert_eq!(alone[0].primary_share, 1.0);
    }

    #[test]
    fn ownership_matches_where_keys_land() {
        let ring = Ring::new(&nodes(3), 8, 1).unwrap();
        let keys = 30_000u32;
        let mut owned = [0u32; 3];
        for k in 0..keys {
            owned[ring.replicas(&k.to_le_bytes())[0].0 as usize - 1] += 1;
        }
        for share in ring.ownership() {
            let measured = f64::from(owned[share.node.0 as usize - 1]) / f64::from(keys);
            assert!(
                (measured - share.primary_share).abs() < 0.02,
                "{share:?} measured {measured}"
            );
        }
    }

    #[test]
    fn a_keys_repair_range_holds_exactly_its_replicas() {
        for (n, rf) in [(3, 3), (5, 3), (4, 1), (6, 2)] {
            let ring = Ring::new(&nodes(n), 16, rf).unwrap();
            let ranges = ring.repair_ranges();
            assert!(!ranges.is_empty());
            for k in 0..2000u32 {
                let key = k.to_le_bytes();
                let mut replicas = ring.replicas(&key);
                replicas.sort_unstable();
                let range = ranges.of_key(&key);
                assert_eq!(ranges.replicas(range), replicas.as_slice());
                assert_eq!(ranges.find(&replicas), Some(range));
            }
        }
        let full = Ring::new(&nodes(3), 64, 3).unwrap().repair_ranges();
        assert_eq!(full.len(), 1, "one replica set: one range");
    }

    proptest! {
        #[test]
        fn adding_a_node_moves_keys_only_to_it(key in proptest::collection::vec(any::<u8>(), 0..24)) {
            let before = Ring::new(&nodes(4), 32, 1).unwrap();
            let after = Ring::new(&nodes(5), 32, 1).unwrap();
            let (a, b) = (before.replicas(&key)[0], after.replicas(&key)[0]);
            prop_assert!(a == b || b == NodeId(5));
        }

        #[test]
        fn every_node_computes_the_same_preference_list(key in proptest::collection::vec(any::<u8>(), 0..24)) {
            let shuffled = [NodeId(3), NodeId(1), NodeId(2)];
            let one = Ring::new(&nodes(3), 8, 2).unwrap();
            let two = Ring::new(&shuffled, 8, 2).unwrap();
            prop_assert_eq!(one.replicas(&key), two.replicas(&key));
        }
    }
}
