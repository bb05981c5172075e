//! Paced scans of the local client keys for one repair range: building a
//! Merkle tree, or collecting the entries of some leaves into batches; and
//! the bookkeeping of batches in flight.

use std::collections::{BTreeMap, BTreeSet};

use enigma_engine::Timestamp;

use super::{Initiated, Phase, RepairEntry, Responding, ScanOwner, SessionId};
use crate::ids::NodeId;
use crate::merkle::MerkleTree;
use crate::message::WireVersion;
use crate::ring::{RepairRanges, Ring};

/// What a scan builds.
#[derive(Debug, Clone)]
pub(super) enum ScanGoal {
    /// A Merkle tree of the range.
    Tree(MerkleTree),
    /// Batches of the entries in `leaves`, for the stream.
    Stream {
        leaves: BTreeSet<u32>,
        pending: Vec<RepairEntry>,
        pending_bytes: u64,
    },
}

/// A paced scan over the local client keys, filtered to one range.
#[derive(Debug, Clone)]
pub(super) struct Scan {
    pub(super) range: usize,
    pub(super) depth: u8,
    pub(super) goal: ScanGoal,
    pub(super) resume_after: Option<Vec<u8>>,
    pub(super) done: bool,
    /// A stream's last batch has been taken: nothing more to send.
    pub(super) drained: bool,
}

impl Scan {
    pub(super) fn tree(range: usize, depth: u8) -> Self {
        Self {
            range,
            depth,
            goal: ScanGoal::Tree(MerkleTree::new(depth)),
            resume_after: None,
            done: false,
            drained: false,
        }
    }

    pub(super) fn stream(range: usize, depth: u8, leaves: BTreeSet<u32>) -> Self {
        Self {
            range,
            depth,
            goal: ScanGoal::Stream {
                leaves,
                pending: Vec::new(),
                pending_bytes: 0,
            },
            resume_after: None,
            done: false,
            drained: false,
        }
    }

    /// Whether the scan should run now (not done, and a stream's batch is
    /// not waiting to be sent).
    pub(super) fn wants_to_run(&self, batch_bytes_max: u64) -> bool {
        !self.done
            && match &self.goal {
                ScanGoal::Tree(_) => true,
                ScanGoal::Stream { pending_bytes, .. } => *pending_bytes < batch_bytes_max,
            }
    }

    /// Feeds one entry; returns false when the scan should pause.
    pub(super) fn feed(
        &mut self,
        ranges: &RepairRanges,
        batch_bytes_max: u64,
        key: &[u8],
        timestamp: Timestamp,
        value: Option<&[u8]>,
    ) -> bool {
        let token = Ring::token(key);
        if ranges.of_token(token) != self.range {
            return true;
        }
        match &mut self.goal {
            ScanGoal::Tree(tree) => {
                tree.add(key, timestamp, value);
                true
            }
            ScanGoal::Stream {
                leaves,
                pending,
                pending_bytes,
            } => {
                if !leaves.contains(&(MerkleTree::leaf_of(self.depth, token) as u32)) {
                    return true;
                }
                *pending_bytes += entry_bytes(key, value);
                pending.push((
                    key.to_vec(),
                    WireVersion {
                        hlc: timestamp.hlc,
                        node: timestamp.node,
                        value: value.map(<[u8]>::to_vec),
                    },
                ));
                *pending_bytes < batch_bytes_max
            }
        }
    }

    /// Takes the next batch if one is ready: full, or the scan is done.
    pub(super) fn take_batch(&mut self, batch_bytes_max: u64) -> Option<(Vec<RepairEntry>, bool)> {
        let ScanGoal::Stream {
            pending,
            pending_bytes,
            ..
        } = &mut self.goal
        else {
            return None;
        };
        if self.drained || (!self.done && *pending_bytes < batch_bytes_max) {
            return None;
        }
        *pending_bytes = 0;
        self.drained = self.done;
        Some((std::mem::take(pending), self.done))
    }
}

/// The scan `owner` names, borrowing only the fields that hold scans.
pub(super) fn scan_of<'a>(
    initiated: &'a mut Option<Initiated>,
    responding: &'a mut BTreeMap<SessionId, Responding>,
    owner: ScanOwner,
) -> Option<&'a mut Scan> {
    match owner {
        ScanOwner::Initiated => match &mut initiated.as_mut()?.phase {
            Phase::Trees { scan, .. } | Phase::Push { scan, .. } => Some(scan),
            Phase::Pull { .. } => None,
        },
        ScanOwner::Responding(id) => Some(&mut responding.get_mut(&id)?.scan),
    }
}

/// Bytes an entry costs a scan's budget and a batch.
pub(super) fn entry_bytes(key: &[u8], value: Option<&[u8]>) -> u64 {
    (key.len() + value.map_or(0, <[u8]>::len) + 16) as u64
}

/// A batch sent and not yet acknowledged by everyone it went to.
#[derive(Debug, Clone)]
pub(super) struct Outstanding {
    pub(super) seq: u64,
    pub(super) entries: Vec<RepairEntry>,
    pub(super) last: bool,
    pub(super) waiting: BTreeSet<NodeId>,
    pub(super) sent_mono_nanos: u64,
}

/// Receiving side of one stream: which batch is next.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Inbound {
    pub(super) next_seq: u64,
    pub(super) finished: bool,
}
