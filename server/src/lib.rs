//! EnigmaDB's production side: what runs the sans-IO node over real sockets
//! and files, and speaks to real clients.
//!
//! # Modules
//!
//! - [`resp`]: RESP2/RESP3, the Redis wire protocol: an incremental, bounded
//!   request parser and the reply encoder.
//! - [`command`]: client commands checked and typed, with Redis-style errors.
//! - [`config`]: a node's settings from flags, environment and a TOML file.
//! - [`driver`]: the node thread: batches inputs, one `flush` per batch
//!   (group commit), routes outputs.
//! - [`peer`]: TCP links between nodes: two byte-bounded lanes per peer
//!   (small messages, large values), reconnects.
//! - [`handshake`]: the peer handshake (the dialer proves first) and the
//!   tags that authenticate each frame on a plaintext link.
//! - [`tls`]: rustls for clients and peers, from certificate, key and CA
//!   files.
//! - [`entropy`]: randomness, from the OS or (under madsim) the seed.
//! - [`process`]: resident memory, CPU and open files from `/proc`, bytes on
//!   disk by kind.
//! - [`session`]: one client connection's commands, levels and replies.
//! - [`info`]: the `INFO` sections.
//! - [`server`]: listeners, the node's tasks, metrics endpoint, clean stop.
//! - [`connection`]: one client connection's task: limits in bytes and
//!   commands, back-pressure, timeouts, TLS, eviction of idle connections.
//! - [`metrics`]: counters and histograms in the Prometheus text format.
//! - [`run`]: `enigma node` and `enigma dev`.
//! - [`status`]: `enigma status`.
//! - [`logging`]: `tracing` output, human or JSON.
//! - `planted` (only with the `planted-bugs` feature, for tests): deliberate
//!   bugs a real node takes from its environment, so that `enigma chaos`
//!   can show its checks bite on real processes.

/// `tokio::select!`, but biased (branches polled in order) under madsim.
///
/// tokio's `select!` starts at a random branch drawn from a thread-local
/// generator seeded by the OS, which madsim cannot seed on Linux: two runs
/// of one seed would take different branches when several are ready at
/// once. A real build keeps tokio's fairness.
#[cfg(not(madsim))]
macro_rules! select {
    ($($body:tt)*) => { tokio::select! { $($body)* } };
}
#[cfg(madsim)]
macro_rules! select {
    ($($body:tt)*) => { tokio::select! { biased; $($body)* } };
}
pub(crate) use select;

pub mod command;
pub mod conditional;
pub mod config;
pub mod connection;
pub mod driver;
pub mod entropy;
pub mod handshake;
pub mod info;
pub mod logging;
pub mod metrics;
pub mod peer;
#[cfg(feature = "planted-bugs")]
pub mod planted;
pub mod process;
pub mod resp;
pub mod run;
pub mod server;
pub mod session;
pub mod status;
pub mod tls;
