//! Identifiers and the time input.

use serde::{Deserialize, Serialize};

/// A node of the cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct NodeId(pub u32);

impl std::fmt::Display for NodeId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "n{}", self.0)
    }
}

/// A client request, numbered by the driver; replies carry it back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RequestId(pub u64);

/// A coordinator's operation, echoed by replicas in their answers.
///
/// `generation` is the coordinator's boot generation, so that an answer meant
/// for an earlier incarnation of the node (before a crash) is never mistaken
/// for one meant for a new operation that happens to reuse `seq`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct OpId {
    /// Boot generation of the coordinator that issued the operation.
    pub generation: u64,
    /// Sequence number within that generation.
    pub seq: u64,
}

/// The time, as read by the driver from this node's clocks. The only way
/// time enters node logic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Now {
    /// Monotonic nanoseconds since an arbitrary origin: for deadlines.
    pub mono_nanos: u64,
    /// Wall-clock nanoseconds since the Unix epoch: for the HLC. May jump.
    pub wall_nanos: u64,
}
