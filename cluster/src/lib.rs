//! EnigmaDB's node logic, as a sans-IO state machine.
//!
//! A [`Node`] performs no I/O of its own except through the engine's `Disk`,
//! reads no clock, spawns no thread and owns no socket. A driver (the
//! simulator or the production server) feeds it [`Input`]s with the current
//! [`Now`], then calls [`Node::flush`], which makes the write-ahead log
//! durable once for everything applied since the last flush (group commit)
//! and only then releases the [`Output`]s that waited on it.
//!
//! # Invariants
//!
//! - No output leaves the node before every write it reflects is durable:
//!   outputs are held until `flush` has synced the WAL.
//! - Every mutation carries a [`Timestamp`](enigma_engine::Timestamp) from the
//!   node's hybrid logical clock with the node id as tie-break; replicas keep
//!   the highest (last write wins).
//! - A reply to a client is sent at most once per request.
//! - Acknowledgements from a previous incarnation of this node (before a
//!   crash) are never counted: operation ids carry the boot generation.
//!
//! # Modules
//!
//! - [`ids`]: `NodeId`, `OpId`, `RequestId`, `Now`.
//! - [`hlc`]: the hybrid logical clock.
//! - [`clock_offsets`]: peers' clock offsets and whether this node's own
//!   clock is out of bounds.
//! - [`commit_wait`]: answers held until the wall clock passes their
//!   timestamp by the clock uncertainty.
//! - [`ring`]: consistent hashing with virtual nodes, preference lists.
//! - [`consistency`]: consistency levels and how many replicas each needs.
//! - [`message`]: peer messages and client requests/responses.
//! - [`codec`]: the versioned, length-prefixed, CRC32-checked frame.
//! - [`frame_reader`]: a byte stream cut anywhere, back into frames.
//! - [`coordinator`]: pending client operations: quorum counting, read repair.
//! - [`session_floors`]: what a client session has seen, kept by the client
//!   and sent with each request (session guarantees at every level).
//! - [`gossip`]: member states spread epidemically, push-pull.
//! - [`failure_detector`]: phi-accrual judgment of which peers are up.
//! - [`hints`]: hinted handoff's bookkeeping: bounds, pacing, expiry.
//! - [`keyspace`]: the node's own keys (hints, the clock mark) beside client
//!   keys.
//! - [`merkle`]: Merkle trees of a repair range and their diff.
//! - [`anti_entropy`]: repair sessions comparing trees, streaming both ways.
//! - [`purge`]: the gate on tombstone purging (repair first).
//! - [`generation`]: the boot generation kept on disk.
//! - [`ballot_mark`]: a bound above every ballot this node promised or
//!   accepted, kept on disk beside the engine: the Paxos floor after a loss.
//! - [`damage`]: ranges that lost data to a quarantined table: refused to
//!   readers and kept from purging until repaired.
//! - [`no_space`]: what a full disk does to outputs waiting on a sync.
//! - [`paxos`]: per-key Paxos for `SERIAL`: acceptor rules and state, the
//!   proposer's rounds.
//! - [`node`]: `Node`, a dispatcher tying them together: `step` and `flush`.

pub mod anti_entropy;
pub mod ballot_mark;
pub mod clock_offsets;
pub mod codec;
pub mod commit_wait;
pub mod consistency;
pub mod coordinator;
pub mod damage;
pub mod failure_detector;
pub mod frame_reader;
pub mod generation;
pub mod gossip;
pub mod hints;
pub mod hlc;
pub mod ids;
pub mod keyspace;
pub mod merkle;
pub mod message;
pub mod no_space;
pub mod node;
pub mod paxos;
pub mod purge;
pub mod ring;
pub mod session_floors;
mod word_file;

pub use anti_entropy::{AntiEntropyOptions, AntiEntropyStats, FullPassReport};
pub use clock_offsets::{ClockJudgment, ClockOffsets};
pub use codec::{decode_frame, encode_frame, CodecError, Decoded};
pub use consistency::ConsistencyLevel;
pub use frame_reader::{FrameReader, RawFrame};
pub use hints::{HintOptions, HintStats};
pub use ids::{NodeId, Now, OpId, RequestId};
pub use message::{
    ClientError, ClientOp, ClientRequest, ClientResponse, Envelope, Message, ReplicaFailure,
    SessionFloor, WireVersion,
};
pub use node::{
    AcknowledgedWrite, ClusterConfig, Input, MemberView, Node, NodeError, NodeOptions, NodeStats,
    Output, ReplyVersion,
};
pub use ring::{Ownership, Ring, RingError};
pub use session_floors::{SessionFloors, SESSION_KEYS_MAX};
