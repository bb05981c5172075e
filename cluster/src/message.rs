//! What nodes say to each other, and what clients ask and are told.

use enigma_engine::{EngineError, Timestamp, Versioned};
use serde::{Deserialize, Serialize};

use crate::anti_entropy::{FullPassReport, RepairEntry, SessionId};
use crate::consistency::ConsistencyLevel;
use crate::gossip::MemberState;
use crate::ids::{NodeId, OpId};
use crate::paxos::{Ballot, Change, Condition, Proposal};

/// A message between nodes, with the sender's clock reading so that the
/// receiver's hybrid logical clock never falls behind its sender's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    /// The sender's highest HLC reading when it sent this.
    pub hlc: u64,
    /// The message.
    pub message: Message,
}

/// Peer-to-peer messages. Every request carries the coordinator's [`OpId`];
/// every answer echoes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Message {
    /// Store `version` of `key` if newer than what the replica holds. Used
    /// for client writes and for read repair alike.
    Write {
        op: OpId,
        key: Vec<u8>,
        version: WireVersion,
    },
    /// Without `failure`: the write of `op` is durable at the sender (or it
    /// already held a newer version). With it: the sender's storage could
    /// not apply it or make it durable, and says why at once rather than
    /// leaving the coordinator to time out. Answers `Write` and
    /// `RepairWrite`.
    WriteAck {
        op: OpId,
        failure: Option<ReplicaFailure>,
    },
    /// Send your version of `key`.
    Read { op: OpId, key: Vec<u8> },
    /// Without `failure`: the sender's version of the key of `op` (`None`:
    /// it holds nothing). With it (and no version): the sender's storage
    /// could not read the key, and says why at once.
    ReadReply {
        op: OpId,
        version: Option<WireVersion>,
        failure: Option<ReplicaFailure>,
        /// The sender's Paxos acceptor holds an accepted, uncommitted
        /// proposal for the key stamped above `version`: a `SERIAL` value
        /// may be chosen (and acknowledged) that this version does not
        /// show yet. A `QUORUM` or `ALL` read finishes it before it
        /// answers.
        unfinished: bool,
    },
    /// Send a digest of your version of `key`, not the value: the
    /// coordinator has the value from another replica and only needs to
    /// know whether this one agrees (Cassandra's digest read).
    ReadDigest { op: OpId, key: Vec<u8> },
    /// The digest of the sender's version of the key of `op` (`None`: it
    /// holds nothing).
    DigestReply {
        op: OpId,
        digest: Option<VersionDigest>,
        /// As [`Message::ReadReply`]'s.
        unfinished: bool,
    },
    /// Read repair: store `version` of `key` if newer. Unlike a client's
    /// `Write` it carries a version some replica already held, so it is
    /// never refused for its age.
    RepairWrite {
        op: OpId,
        key: Vec<u8>,
        version: WireVersion,
    },
    /// A gossip round: every member state the sender knows.
    GossipSyn { states: Vec<MemberState> },
    /// The answer to a round: the states the receiver knew better.
    GossipAck { states: Vec<MemberState> },
    /// A hinted write, replayed by the coordinator that held it for the
    /// receiver: store `version` of `key` if newer.
    Hint {
        id: u64,
        key: Vec<u8>,
        version: WireVersion,
    },
    /// Hint `id` is durable at the sender (or it already held a newer
    /// version): the coordinator may delete it.
    HintAck { id: u64 },
    /// Anti-entropy: build your Merkle tree of the repair range whose
    /// replicas are `replicas`, of `depth`, and answer with its leaves.
    TreeRequest {
        session: SessionId,
        replicas: Vec<NodeId>,
        depth: u8,
    },
    /// Anti-entropy: the leaf hashes of the sender's tree.
    TreeReply {
        session: SessionId,
        leaves: Vec<u64>,
    },
    /// Anti-entropy: stream your entries of these leaves to the initiator.
    RepairPull {
        session: SessionId,
        leaves: Vec<u32>,
    },
    /// Anti-entropy: a batch of entries; `last` ends the stream.
    RepairData {
        session: SessionId,
        seq: u64,
        entries: Vec<RepairEntry>,
        last: bool,
    },
    /// Anti-entropy: batch `seq` is durable at the sender.
    RepairDataAck { session: SessionId, seq: u64 },
    /// Anti-entropy: the session is complete: every replica holds every
    /// version that existed anywhere when it started, at `started_hlc`.
    RepairComplete {
        session: SessionId,
        started_hlc: u64,
    },
    /// Anti-entropy: the sender gives up the session (or will not take it).
    RepairRefused { session: SessionId },
    /// Paxos (`SERIAL`): promise to accept nothing below `ballot` for
    /// `key`, and say what you know of it.
    PaxosPrepare {
        op: OpId,
        key: Vec<u8>,
        ballot: Ballot,
    },
    /// Paxos: the sender promised `ballot` (durably), and holds
    /// `in_progress` accepted but not known committed, `committed` as its
    /// latest committed ballot and `version` as the key's current version.
    PaxosPromise {
        op: OpId,
        ballot: Ballot,
        in_progress: Option<Proposal>,
        committed: Ballot,
        version: Option<WireVersion>,
    },
    /// Paxos: accept `proposal` for `key` unless you promised higher.
    PaxosPropose {
        op: OpId,
        key: Vec<u8>,
        proposal: Proposal,
    },
    /// Paxos: the sender accepted (durably) the proposal of `ballot`.
    PaxosAccepted { op: OpId, ballot: Ballot },
    /// Paxos: `ballot` was chosen: apply `version` of `key`.
    PaxosCommit {
        op: OpId,
        key: Vec<u8>,
        ballot: Ballot,
        version: WireVersion,
    },
    /// Paxos: the commit of `ballot` is durable at the sender.
    PaxosCommitAck { op: OpId, ballot: Ballot },
    /// Paxos: the sender refused the prepare or proposal of `ballot`: it
    /// promised `promised`, which the proposer's next ballot must exceed.
    PaxosRefused {
        op: OpId,
        ballot: Ballot,
        promised: Ballot,
    },
}

impl Message {
    /// Bytes of keys, values and other variable-length content the message
    /// carries: what bounds in bytes (send queues) count, beside a fixed
    /// overhead per message.
    pub fn payload_bytes(&self) -> usize {
        let version = |v: &WireVersion| v.value.as_ref().map_or(0, Vec::len);
        match self {
            Self::Write {
                key, version: v, ..
            }
            | Self::RepairWrite {
                key, version: v, ..
            }
            | Self::Hint {
                key, version: v, ..
            } => key.len() + version(v),
            Self::Read { key, .. }
            | Self::ReadDigest { key, .. }
            | Self::PaxosPrepare { key, .. } => key.len(),
            Self::PaxosPromise {
                in_progress,
                version: v,
                ..
            } => {
                in_progress
                    .as_ref()
                    .and_then(|p| p.value.as_ref())
                    .map_or(0, Vec::len)
                    + v.as_ref().map_or(0, version)
            }
            Self::PaxosPropose { key, proposal, .. } => {
                key.len() + proposal.value.as_ref().map_or(0, Vec::len)
            }
            Self::PaxosCommit {
                key, version: v, ..
            } => key.len() + version(v),
            Self::ReadReply { version: v, .. } => v.as_ref().map_or(0, version),
            Self::DigestReply { .. } => std::mem::size_of::<VersionDigest>(),
            Self::GossipSyn { states } | Self::GossipAck { states } => {
                states.len() * std::mem::size_of::<MemberState>()
            }
            Self::TreeRequest { replicas, .. } => replicas.len() * 4,
            Self::TreeReply { leaves, .. } => leaves.len() * 8,
            Self::RepairPull { leaves, .. } => leaves.len() * 4,
            Self::RepairData { entries, .. } => entries
                .iter()
                .map(|(key, v)| key.len() + version(v) + 16)
                .sum(),
            Self::WriteAck { .. }
            | Self::HintAck { .. }
            | Self::RepairDataAck { .. }
            | Self::RepairComplete { .. }
            | Self::RepairRefused { .. }
            | Self::PaxosAccepted { .. }
            | Self::PaxosCommitAck { .. }
            | Self::PaxosRefused { .. } => 0,
        }
    }

    /// A short name for logs and counters.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Write { .. } => "write",
            Self::WriteAck { .. } => "write-ack",
            Self::Read { .. } => "read",
            Self::ReadReply { .. } => "read-reply",
            Self::ReadDigest { .. } => "read-digest",
            Self::DigestReply { .. } => "digest-reply",
            Self::RepairWrite { .. } => "repair-write",
            Self::GossipSyn { .. } => "gossip-syn",
            Self::GossipAck { .. } => "gossip-ack",
            Self::Hint { .. } => "hint",
            Self::HintAck { .. } => "hint-ack",
            Self::TreeRequest { .. } => "tree-request",
            Self::TreeReply { .. } => "tree-reply",
            Self::RepairPull { .. } => "repair-pull",
            Self::RepairData { .. } => "repair-data",
            Self::RepairDataAck { .. } => "repair-data-ack",
            Self::RepairComplete { .. } => "repair-complete",
            Self::RepairRefused { .. } => "repair-refused",
            Self::PaxosPrepare { .. } => "paxos-prepare",
            Self::PaxosPromise { .. } => "paxos-promise",
            Self::PaxosPropose { .. } => "paxos-propose",
            Self::PaxosAccepted { .. } => "paxos-accepted",
            Self::PaxosCommit { .. } => "paxos-commit",
            Self::PaxosCommitAck { .. } => "paxos-commit-ack",
            Self::PaxosRefused { .. } => "paxos-refused",
        }
    }
}

/// What a replica answers to [`Message::ReadDigest`]: enough to tell
/// whether two replicas hold the same version and which is newer, in a few
/// bytes whatever the size of the value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct VersionDigest {
    /// HLC reading of the write.
    pub hlc: u64,
    /// Tie-break: the node that issued the write.
    pub node: u32,
    /// xxh3 (64-bit) of the value; `None` for a tombstone.
    pub value_hash: Option<u64>,
}

impl VersionDigest {
    /// The digest of `version`.
    pub fn of(version: &Versioned) -> Self {
        Self {
            hlc: version.timestamp.hlc,
            node: version.timestamp.node,
            value_hash: version.value.as_deref().map(xxhash_rust::xxh3::xxh3_64),
        }
    }

    /// The version's timestamp.
    pub fn timestamp(&self) -> Timestamp {
        Timestamp {
            hlc: self.hlc,
            node: self.node,
        }
    }
}

/// Why a replica's storage could not serve a read or a write.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReplicaFailure {
    /// Its disk is full: a write was not applied (or not made durable), or
    /// a read met a version not yet durable.
    NoSpace { file: String },
    /// Stored bytes failed their checksum or did not parse.
    Corruption {
        file: String,
        offset: u64,
        reason: String,
    },
    /// Any other storage failure (an I/O error, a stopped engine).
    Storage { reason: String },
}

impl ReplicaFailure {
    /// What the engine's `error` says, for the coordinator.
    pub fn from_engine(error: &EngineError) -> Self {
        match error {
            EngineError::NoSpace { file } => Self::NoSpace { file: file.clone() },
            EngineError::Corruption { .. } | EngineError::ChecksumMismatch { .. } => {
                let (file, offset) = error.corruption_site().expect("a corruption error");
                Self::Corruption {
                    file: file.to_owned(),
                    offset,
                    reason: error.detail(),
                }
            }
            other => Self::Storage {
                reason: other.to_string(),
            },
        }
    }

    /// Whether the replica's stored copy of the key is damaged (so the
    /// coordinator should write the winner back to it).
    pub fn is_corruption(&self) -> bool {
        matches!(self, Self::Corruption { .. })
    }
}

impl std::fmt::Display for ReplicaFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NoSpace { file } => write!(f, "{file}: no space left on the disk"),
            Self::Corruption {
                file,
                offset,
                reason,
            } if reason.contains("offset") => write!(f, "{file}: {reason}"),
            Self::Corruption {
                file,
                offset,
                reason,
            } => write!(f, "{file}: at offset {offset}: {reason}"),
            Self::Storage { reason } => f.write_str(reason),
        }
    }
}

/// A versioned value on the wire.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireVersion {
    /// HLC reading of the write.
    pub hlc: u64,
    /// Tie-break: the node that issued the write.
    pub node: u32,
    /// The value; `None` is a tombstone.
    pub value: Option<Vec<u8>>,
}

impl From<Versioned> for WireVersion {
    fn from(v: Versioned) -> Self {
        Self {
            hlc: v.timestamp.hlc,
            node: v.timestamp.node,
            value: v.value,
        }
    }
}

impl From<WireVersion> for Versioned {
    fn from(v: WireVersion) -> Self {
        Self {
            timestamp: Timestamp {
                hlc: v.hlc,
                node: v.node,
            },
            value: v.value,
        }
    }
}

/// What a client asks a coordinator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientRequest {
    /// The operation.
    pub op: ClientOp,
    /// How many replicas must answer.
    pub level: ConsistencyLevel,
    /// What the client's session has seen, so that the coordinator keeps
    /// the session guarantees at every level (empty: a client without a
    /// session, held to what the level alone promises).
    pub session: SessionFloor,
}

/// The versions a client session has seen, carried by each of its
/// requests: read-your-writes and monotonic reads per key, and causal
/// stamping across keys, at every level (DESIGN.md section 5,
/// docs/ARCHITECTURE.md "Session guarantees").
///
/// Two floors, not one: a session-wide floor for a read would make every
/// read of a key the session never saw wait for versions that key will
/// never have. So the session keeps the newest version it saw of each key
/// it touched (the client bounds how many) and sends the one of the key it
/// asks about, and the newest version it saw of any key, which only
/// stamps writes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SessionFloor {
    /// The newest version the session wrote or read, of any key: a write
    /// it sends is stamped above it, whatever node coordinates it. The
    /// coordinator refuses it (nothing applied) rather than adopt it when
    /// it is further ahead of its wall clock than `clock_offset_max_ms`,
    /// as it refuses such a reading from a peer.
    pub seen: Option<Timestamp>,
    /// The newest version of this request's key the session wrote or
    /// read: a read answers nothing older (it asks further replicas, then
    /// waits for repair, until its deadline).
    pub key: Option<Timestamp>,
}

/// A client operation on one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientOp {
    /// Read the key.
    Get { key: Vec<u8> },
    /// Set the key.
    Put { key: Vec<u8>, value: Vec<u8> },
    /// Delete the key.
    Delete { key: Vec<u8> },
    /// At `SERIAL` only: apply `change` to the key if `condition` holds of
    /// its current value, linearizably (through Paxos). Answered with
    /// [`ClientResponse::Conditional`].
    Cas {
        key: Vec<u8>,
        condition: Condition,
        change: Change,
    },
    /// An operator asks the coordinator for a full anti-entropy pass over
    /// every range it replicates (`enigma repair`); answered with
    /// [`ClientResponse::Repaired`] once done. Touches no one key.
    Repair,
}

impl ClientOp {
    /// The key the operation touches (empty for [`Self::Repair`]).
    pub fn key(&self) -> &[u8] {
        match self {
            Self::Get { key }
            | Self::Put { key, .. }
            | Self::Delete { key }
            | Self::Cas { key, .. } => key,
            Self::Repair => &[],
        }
    }
}

/// A coordinator's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientResponse {
    /// The value read (`None`: no such key).
    Value(Option<Vec<u8>>),
    /// The write is durable on as many replicas as the level required.
    Written,
    /// An operator's full anti-entropy pass finished.
    Repaired(FullPassReport),
    /// A [`ClientOp::Cas`] was decided: whether its condition held and the
    /// change was applied, the key's value before it and after it.
    Conditional {
        applied: bool,
        previous: Option<Vec<u8>>,
        current: Option<Vec<u8>>,
    },
    /// The operation failed; see [`ClientError::may_have_applied`].
    Error(ClientError),
}

/// Why an operation failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientError {
    /// Not enough replicas answered before the deadline. A write may still
    /// have been applied, and may yet become visible.
    Timeout { answered: usize, required: usize },
    /// Fewer replicas are up, in the coordinator's judgment, than the level
    /// needs: refused before anything was sent, nothing applied.
    Unavailable { alive: usize, required: usize },
    /// The request was refused before anything was sent: nothing applied.
    Invalid { reason: String },
    /// The coordinator is overloaded and refused the request: nothing applied.
    Overloaded { pending: usize },
    /// A `SERIAL` operation reached its deadline before its own value was
    /// ever proposed (its ballots lost to competing proposers, or too few
    /// replicas answered a prepare): nothing applied.
    NotProposed { rounds: u32 },
    /// Storage failed at the replicas the level needed (corruption names
    /// node, file and offset); a write may have reached other replicas.
    Storage { reason: String },
    /// The replicas the level needed have full disks: a write was not
    /// acknowledged (it may have been applied where there was space, or
    /// become durable once space came back). Reads go on elsewhere.
    NoSpace { reason: String },
    /// The coordinator's wall clock is further than the cluster's bound
    /// from a majority of its peers: it refuses to stamp writes (they would
    /// lose against older writes or win against later ones). Nothing
    /// applied; another node may take the write.
    Clock { reason: String },
    /// A read found no version of its key at or above the floor its
    /// session sent ([`SessionFloor::key`]) before the deadline: every
    /// replica asked held an older one (a write not yet repaired onto
    /// them) or none. Nothing older is ever returned instead.
    SessionFloor {
        /// The session's floor for the key (hybrid clock reading).
        floor_hlc: u64,
        /// The newest version any replica answered (`None`: none held one).
        newest_hlc: Option<u64>,
    },
}

impl ClientError {
    /// Whether a write that ended in this error may have taken effect.
    pub fn may_have_applied(&self) -> bool {
        match self {
            Self::Timeout { .. } | Self::Storage { .. } | Self::NoSpace { .. } => true,
            Self::Invalid { .. }
            | Self::Overloaded { .. }
            | Self::Unavailable { .. }
            | Self::Clock { .. }
            | Self::SessionFloor { .. }
            | Self::NotProposed { .. } => false,
        }
    }
}

impl std::fmt::Display for ClientError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Timeout { answered, required } => {
                write!(
                    f,
                    "timeout: {answered} of {required} required replicas answered"
                )
            }
            Self::Unavailable { alive, required } => write!(
                f,
                "unavailable: {alive} of {required} required replicas are up"
            ),
            Self::Invalid { reason } => write!(f, "invalid request: {reason}"),
            Self::Overloaded { pending } => write!(f, "overloaded: {pending} requests pending"),
            Self::NotProposed { rounds } => write!(
                f,
                "not proposed: {rounds} Paxos round(s) ended before the deadline without proposing"
            ),
            Self::Storage { reason } => write!(f, "storage error: {reason}"),
            Self::NoSpace { reason } => write!(f, "no space: {reason}"),
            Self::Clock { reason } => write!(f, "clock: {reason}"),
            Self::SessionFloor {
                floor_hlc,
                newest_hlc,
            } => {
                write!(
                    f,
                    "session floor: no replica answered a version of the key at or above this session's floor {floor_hlc} before the deadline (newest answered: "
                )?;
                match newest_hlc {
                    Some(hlc) => write!(f, "{hlc}")?,
                    None => f.write_str("none")?,
                }
                f.write_str("); nothing older is returned")
            }
        }
    }
}
