//! Merkle trees over a repair range's keys and versions, and their diff.
//!
//! A tree of depth `d` has `2^d` leaves; a key belongs to the leaf named by
//! the top `d` bits of its token, so two replicas put the same key in the
//! same leaf whatever else they hold. A leaf's hash is the wrapping sum of
//! its entries' hashes, so entries may be added in any order (a paced scan
//! feeds them in key order, which is not token order) and an empty leaf
//! hashes to 0. Inner nodes hash their two children; two trees are compared
//! from the root down, skipping every subtree whose hashes agree.
//!
//! The depth is bounded ([`MERKLE_DEPTH_MAX`]), so a tree costs at most
//! `2^depth * 8` bytes on the wire; a tree of any other shape is refused.

use enigma_engine::Timestamp;
use xxhash_rust::xxh3::Xxh3;

use crate::ring::Ring;

/// Deepest tree allowed: 65,536 leaves, 512 KiB of leaf hashes.
pub const MERKLE_DEPTH_MAX: u8 = 16;

/// A tree under construction or complete: its leaves, the inner nodes
/// derived on demand.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MerkleTree {
    depth: u8,
    leaves: Vec<u64>,
}

/// A tree that does not have the shape asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShapeError {
    /// The depth asked for.
    pub depth: u8,
    /// How many leaves came.
    pub leaves: usize,
}

impl std::fmt::Display for ShapeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Merkle tree of {} leaves for depth {}",
            self.leaves, self.depth
        )
    }
}

impl MerkleTree {
    /// An empty tree of `depth`.
    ///
    /// # Panics
    /// If `depth` exceeds [`MERKLE_DEPTH_MAX`] (callers validate settings).
    pub fn new(depth: u8) -> Self {
        assert!(depth <= MERKLE_DEPTH_MAX, "depth {depth} too large");
        Self {
            depth,
            leaves: vec![0; 1 << depth],
        }
    }

    /// A tree from leaves received from a peer, checked against the depth
    /// this node asked for.
    ///
    /// # Errors
    /// A depth above the bound, or a leaf count that is not `2^depth`.
    pub fn from_leaves(depth: u8, leaves: Vec<u64>) -> Result<Self, ShapeError> {
        if depth > MERKLE_DEPTH_MAX || leaves.len() != 1usize << depth {
            return Err(ShapeError {
                depth,
                leaves: leaves.len(),
            });
        }
        Ok(Self { depth, leaves })
    }

    /// The leaf a key of `token` belongs to.
    pub fn leaf_of(depth: u8, token: u64) -> usize {
        if depth == 0 {
            0
        } else {
            (token >> (64 - u32::from(depth))) as usize
        }
    }

    /// Adds an entry: `key` at `timestamp` holding `value` (`None`: a
    /// tombstone).
    pub fn add(&mut self, key: &[u8], timestamp: Timestamp, value: Option<&[u8]>) {
        let leaf = Self::leaf_of(self.depth, Ring::token(key));
        self.leaves[leaf] = self.leaves[leaf].wrapping_add(entry_hash(key, timestamp, value));
    }

    /// The tree's depth.
    pub fn depth(&self) -> u8 {
        self.depth
    }

    /// The leaf hashes, to send.
    pub fn leaves(&self) -> &[u64] {
        &self.leaves
    }

    /// Hashes of every level, root first: `levels[k]` has `2^k` nodes.
    fn levels(&self) -> Vec<Vec<u64>> {
        let mut levels = vec![self.leaves.clone()];
        while levels.last().expect("at least the leaves").len() > 1 {
            let below = levels.last().expect("at least the leaves");
            let above = below
                .chunks_exact(2)
                .map(|pair| inner_hash(pair[0], pair[1]))
                .collect();
            levels.push(above);
        }
        levels.reverse();
        levels
    }

    /// The root hash.
    pub fn root(&self) -> u64 {
        self.levels()[0][0]
    }

    /// The leaves where `self` and `other` differ, ascending, found from the
    /// root down. Both trees must have the same depth.
    ///
    /// # Panics
    /// If the depths differ (a tree from a peer is checked by
    /// [`Self::from_leaves`] first).
    pub fn diff(&self, other: &Self) -> Vec<u32> {
        assert_eq!(self.depth, other.depth, "trees of different depth");
        let (mine, theirs) = (self.levels(), other.levels());
        // Nodes to visit at the current level; loops, not recursion.
        let mut frontier: Vec<usize> = vec![0];
        for level in 0..mine.len() {
            frontier.retain(|&i| mine[level][i] != theirs[level][i]);
            if level + 1 < mine.len() {
                frontier = frontier.iter().flat_map(|&i| [2 * i, 2 * i + 1]).collect();
            }
        }
        frontier.into_iter().map(|i| i as u32).collect()
    }
}

/// The hash of one entry: key, timestamp and value (or tombstone).
pub fn entry_hash(key: &[u8], timestamp: Timestamp, value: Option<&[u8]>) -> u64 {
    let mut hasher = Xxh3::new();
    hasher.update(&(key.len() as u64).to_le_bytes());
    hasher.update(key);
    hasher.update(&timestamp.hlc.to_le_bytes());
    hasher.update(&timestamp.node.to_le_bytes());
    match value {
        None => hasher.update(&[0]),
        Some(value) => {
            hasher.update(&[1]);
            hasher.update(value);
        }
    }
    hasher.digest()
}

fn inner_hash(left: u64, right: u64) -> u64 {
    let mut bytes = [0u8; 16];
    bytes[..8].copy_from_slice(&left.to_le_bytes());
    bytes[8..].copy_from_slice(&right.to_le_bytes());
    xxhash_rust::xxh3::xxh3_64(&bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ts(hlc: u64) -> Timestamp {
        Timestamp { hlc, node: 1 }
    }

    #[test]
    fn insertion_order_does_not_matter() {
        let mut a = MerkleTree::new(6);
        let mut b = MerkleTree::new(6);
        for i in 0..100u64 {
            a.add(format!("k{i}").as_bytes(), ts(i), Some(b"v"));
        }
        for i in (0..100u64).rev() {
            b.add(format!("k{i}").as_bytes(), ts(i), Some(b"v"));
        }
        assert_eq!(a, b);
        assert!(a.diff(&b).is_empty());
    }

    #[test]
    fn a_different_version_shows_in_exactly_its_leaf() {
        let mut a = MerkleTree::new(8);
        let mut b = MerkleTree::new(8);
        for i in 0..50u64 {
            let key = format!("k{i}");
            a.add(key.as_bytes(), ts(i), Some(b"v"));
            let stamp = if i == 17 { ts(i + 1) } else { ts(i) };
            b.add(key.as_bytes(), stamp, Some(b"v"));
        }
        let leaf = MerkleTree::leaf_of(8, Ring::token(b"k17")) as u32;
        assert_eq!(a.diff(&b), vec![leaf]);
        assert_ne!(a.root(), b.root());
    }

    #[test]
    fn a_tombstone_differs_from_a_value_and_from_absence() {
        let mut tomb = MerkleTree::new(4);
        tomb.add(b"k", ts(5), None);
        let mut value = MerkleTree::new(4);
        value.add(b"k", ts(5), Some(b""));
        let empty = MerkleTree::new(4);
        assert_eq!(tomb.diff(&value).len(), 1);
        assert_eq!(tomb.diff(&empty).len(), 1);
    }

    #[test]
    fn trees_of_the_wrong_shape_are_refused() {
        assert!(MerkleTree::from_leaves(4, vec![0; 16]).is_ok());
        assert_eq!(
            MerkleTree::from_leaves(4, vec![0; 15]),
            Err(ShapeError {
                depth: 4,
                leaves: 15
            })
        );
        assert!(MerkleTree::from_leaves(MERKLE_DEPTH_MAX + 1, vec![0; 2]).is_err());
    }

    #[test]
    fn depth_zero_is_one_leaf() {
        let mut a = MerkleTree::new(0);
        a.add(b"x", ts(1), Some(b"1"));
        assert_eq!(a.leaves().len(), 1);
        assert_eq!(a.diff(&MerkleTree::new(0)), vec![0]);
    }

    proptest! {
        /// The diff names exactly the leaves whose hashes differ.
        #[test]
        fn diff_is_the_set_of_unequal_leaves(
            depth in 0u8..7,
            mine in proptest::collection::vec(any::<u64>(), 64),
            flips in proptest::collection::vec(any::<bool>(), 64),
        ) {
            let n = 1usize << depth;
            let a = MerkleTree::from_leaves(depth, mine[..n].to_vec()).unwrap();
            let theirs: Vec<u64> = (0..n)
                .map(|i| if flips[i] { mine[i] ^ 1 } else { mine[i] })
                .collect();
            let b = MerkleTree::from_leaves(depth, theirs).unwrap();
            let expected: Vec<u32> = (0..n as u32).filter(|&i| flips[i as usize]).collect();
            prop_assert_eq!(a.diff(&b), expected);
        }
    }
}
