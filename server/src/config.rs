//! A node's configuration: command-line flags, environment variables and a
//! TOML file, merged by one rule.
//!
//! **Precedence: flag, then environment variable, then config file, then
//! the built-in default.** Every setting has all four spellings: the flag
//! `--request-timeout-ms`, the variable `ENIGMA_REQUEST_TIMEOUT_MS` and the
//! file key `request_timeout_ms`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use clap::Args;
use enigma_cluster::codec::FRAME_PAYLOAD_BYTES_MAX;
use enigma_cluster::{ClusterConfig, ConsistencyLevel, NodeId};
use serde::Deserialize;

use crate::resp::RespLimits;

/// When the WAL is made durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncMode {
    /// fsync once per group commit, before any reply leaves.
    Always,
    /// fsync every `sync_interval_ms`: replies leave before their writes
    /// are durable; an operating-system crash or power loss on every
    /// replica that took a write, within the interval, loses it.
    Interval,
    /// Never fsync: a crash loses recent acknowledged writes. Benchmarks only.
    Never,
}

impl std::str::FromStr for SyncMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "always" => Ok(Self::Always),
            "interval" => Ok(Self::Interval),
            "never" => Ok(Self::Never),
            _ => Err(format!("sync {s:?}: expected always, interval or never")),
        }
    }
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Human,
    /// One JSON object per line.
    Json,
}

impl std::str::FromStr for LogFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "human" => Ok(Self::Human),
            "json" => Ok(Self::Json),
            _ => Err(format!("log format {s:?}: expected human or json")),
        }
    }
}

/// A password or key: its `Debug` and `Display` never show it, so that no
/// log line or error message can print it by accident.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps `text`.
    pub fn new(text: impl Into<String>) -> Self {
        Self(text.into())
    }

    /// The secret itself, for the one place that checks or uses it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Its length in bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether it is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<hidden>)")
    }
}

impl std::fmt::Display for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<hidden>")
    }
}

/// A peer: its node id and the address of its peer listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerAddr {
    pub id: NodeId,
    pub addr: SocketAddr,
}

impl std::str::FromStr for PeerAddr {
    type Err = String;
    /// `ID@HOST:PORT`, for example `2@127.0.0.1:7102`.
    fn from_str(s: &str) -> Result<Self, String> {
        let (id, addr) = s
            .split_once('@')
            .ok_or_else(|| format!("peer {s:?}: expected ID@HOST:PORT, like 2@127.0.0.1:7102"))?;
        let id: u32 = id
            .parse()
            .map_err(|e| format!("peer {s:?}: node id {id:?}: {e}"))?;
        let addr = addr
            .parse()
            .map_err(|e| format!("peer {s:?}: address {addr:?}: {e}"))?;
        Ok(Self {
            id: NodeId(id),
            addr,
        })
    }
}

/// Named limits on what clients may ask; each has a clear error when
/// exceeded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Largest key, bytes (`-ERR key of N bytes exceeds key_bytes_max`).
    pub key_bytes_max: usize,
    /// Largest value, bytes (`-ERR value of N bytes exceeds value_bytes_max`).
    pub value_bytes_max: usize,
    /// Most arguments in one command, its name included (protocol error,
    /// connection closed).
    pub args_max: usize,
    /// Most commands one connection may have waiting for replies. A client
    /// that pipelines more is not read from until replies drain (TCP
    /// back-pressure), so a deep pipeline costs it latency, never memory.
    pub pipeline_depth_max: usize,
    /// Most client connections at once; more get `-ERR max number of
    /// clients reached` and are closed.
    pub connections_max: usize,
    /// Most bytes buffered for one unfinished request (protocol error,
    /// connection closed).
    pub query_buffer_bytes_max: usize,
    /// Bytes of replies one connection may hold unwritten (encoded, or
    /// ready and waiting for earlier ones) before the node stops taking its
    /// new commands until the client reads: back-pressure, not an error.
    /// Reads in flight count at the size of the largest value the node has
    /// seen lately, so a pipeline of large reads is admitted a few at a
    /// time.
    pub reply_buffer_bytes_max: usize,
    /// Bytes of every connection's query and reply buffers together. Above
    /// it, connections with replies owed stop taking new commands until the
    /// client reads, and a request that would need more room on a
    /// connection with nothing owed is refused with an error and closed.
    pub client_buffers_bytes_max: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            key_bytes_max: 16 << 10,
            value_bytes_max: 8 << 20,
            args_max: 1024,
            pipeline_depth_max: 1024,
            connections_max: 1024,
            query_buffer_bytes_max: 64 << 20,
            reply_buffer_bytes_max: 32 << 20,
            client_buffers_bytes_max: 256 << 20,
        }
    }
}

impl Limits {
    /// The RESP parser's bounds that follow from these limits.
    pub fn resp(&self) -> RespLimits {
        RespLimits {
            bulk_bytes_max: self.key_bytes_max.max(self.value_bytes_max),
            args_max: self.args_max,
            inline_bytes_max: 64 << 10,
        }
    }
}

/// TLS for clients and peers: where the node's certificate, key and the
/// certificate authority live, and which listeners use them. Off by
/// default: plaintext on loopback.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsSettings {
    /// This node's certificate chain, PEM.
    pub cert_file: Option<PathBuf>,
    /// The private key of `cert_file`, PEM (PKCS#8, PKCS#1 or SEC1).
    pub key_file: Option<PathBuf>,
    /// The certificate authority (PEM, one or more certificates) that peer
    /// certificates, and client certificates under `client_auth`, must
    /// chain to.
    pub ca_file: Option<PathBuf>,
    /// Clients must speak TLS on the client port.
    pub clients: bool,
    /// Clients must present a certificate signed by `ca_file`; such a
    /// client is authenticated (protected mode accepts it as a password).
    pub client_auth: bool,
    /// Peer links use TLS, both ends presenting certificates signed by
    /// `ca_file`; the dialer checks the peer's certificate names the
    /// address it dialed.
    pub peers: bool,
}

impl TlsSettings {
    /// Whether any listener or link uses TLS.
    pub fn enabled(&self) -> bool {
        self.clients || self.peers
    }
}

/// Everything one node needs to run.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// This node's id.
    pub id: NodeId,
    /// Client (RESP) listen address.
    pub listen: SocketAddr,
    /// Peer listen address.
    pub peer_listen: SocketAddr,
    /// The other members and their peer addresses.
    pub peers: Vec<PeerAddr>,
    /// Where this node keeps its files.
    pub data_dir: PathBuf,
    /// Replicas per key.
    pub replication_factor: usize,
    /// Tokens per node on the ring.
    pub vnodes_per_node: u32,
    /// How long a coordinator waits for replicas.
    pub request_timeout_ms: u64,
    /// WAL durability.
    pub sync: SyncMode,
    /// Level of a connection that has not said `CONSISTENCY`.
    pub default_consistency: ConsistencyLevel,
    /// Clients must `AUTH` with this password first, when set.
    pub requirepass: Option<Secret>,
    /// Peers prove knowledge of this secret when they connect.
    pub cluster_secret: Secret,
    /// Prometheus metrics address (`/metrics`), when set.
    pub metrics_listen: Option<SocketAddr>,
    /// Client limits.
    pub limits: Limits,
    /// Interval between ticks of the node (deadline checks).
    pub tick_interval_ms: u64,
    /// Bytes queued for one peer before it counts as slow and is dropped.
    pub peer_send_queue_bytes_max: usize,
    /// Most inputs applied in one group commit.
    pub batch_inputs_max: usize,
    /// Bytes of large messages (a value of [`PEER_BULK_MESSAGE_BYTES`] or
    /// more) queued for one peer, in a lane of their own beside the small
    /// ones. When it is full, new client writes of large values wait
    /// (back-pressure) and other large messages are dropped, never the
    /// link.
    pub peer_bulk_queue_bytes_max: usize,
    /// Refuse to listen for clients on a non-loopback address unless
    /// clients must authenticate (`requirepass`, or TLS client
    /// certificates).
    pub protected_mode: bool,
    /// Close a connection idle this long (nothing owed to it, nothing being
    /// received), seconds; 0 never. Redis's `timeout`.
    pub idle_timeout_secs: u64,
    /// Close a connection whose request, once begun, is not complete within
    /// this, ms (a client that sends a command slower than this, as a
    /// slowloris attack does).
    pub request_read_timeout_ms: u64,
    /// At `connections_max`, a new connection takes the place of the
    /// connection idle longest, if that one has been idle at least this,
    /// ms; 0 never (new connections are refused).
    pub idle_eviction_ms: u64,
    /// TLS.
    pub tls: TlsSettings,
    /// Healing: gossip, failure detection, hints, anti-entropy.
    pub healing: HealingConfig,
}

impl NodeConfig {
    /// Whether clients must prove who they are before they are served.
    pub fn clients_authenticate(&self) -> bool {
        self.requirepass.is_some() || (self.tls.clients && self.tls.client_auth)
    }
}

/// How the cluster heals itself; see docs/SERVER.md "Self-healing".
#[derive(Debug, Clone, PartialEq)]
pub struct HealingConfig {
    /// With `sync = interval`: how often the WAL is synced.
    pub sync_interval_ms: u64,
    /// Pause between gossip rounds.
    pub gossip_interval_ms: u64,
    /// Phi above which the failure detector holds a peer down.
    pub phi_convict_threshold: f64,
    /// Whether coordinators keep hints for replicas that miss writes.
    pub hinted_handoff: bool,
    /// Hints older than this are dropped.
    pub hint_window_ms: u64,
    /// Bytes of hints kept per target node.
    pub hints_bytes_max_per_node: u64,
    /// Whether anti-entropy sessions start on their own.
    pub anti_entropy: bool,
    /// Bytes anti-entropy may scan per second.
    pub anti_entropy_scan_bytes_per_sec: u64,
    /// Pause between anti-entropy sessions.
    pub anti_entropy_interval_ms: u64,
    /// A tombstone younger than this is never purged.
    pub gc_grace_ms: u64,
    /// Peer clock readings further ahead than this are refused, and a
    /// node this far from a majority of its peers refuses writes.
    pub clock_offset_max_ms: u64,
    /// Commit wait: a write (or a read of a version that recent) is
    /// answered only once the coordinator's clock has passed its timestamp
    /// by `clock_uncertainty_ms`.
    pub commit_wait: bool,
    /// The largest difference between two nodes' clocks commit wait
    /// assumes.
    pub clock_uncertainty_ms: u64,
    /// **Test-only**: added to this process's wall clock, to try a node
    /// whose clock is wrong without changing the machine's. Milliseconds,
    /// may be negative. Never set it in production.
    pub test_clock_offset_ms: i64,
}

impl Default for HealingConfig {
    fn default() -> Self {
        let node = enigma_cluster::NodeOptions::default();
        Self {
            sync_interval_ms: SYNC_INTERVAL_MS_DEFAULT,
            gossip_interval_ms: node.gossip_interval_nanos / 1_000_000,
            phi_convict_threshold: node.phi_convict_threshold,
            hinted_handoff: node.hints.enabled,
            hint_window_ms: node.hints.window_nanos / 1_000_000,
            hints_bytes_max_per_node: node.hints.bytes_max_per_node,
            anti_entropy: node.anti_entropy.continuous,
            anti_entropy_scan_bytes_per_sec: node.anti_entropy.scan_bytes_per_sec,
            anti_entropy_interval_ms: node.anti_entropy.interval_nanos / 1_000_000,
            gc_grace_ms: node.gc_grace_nanos / 1_000_000,
            clock_offset_max_ms: node.clock_offset_max_nanos / 1_000_000,
            commit_wait: node.commit_wait,
            clock_uncertainty_ms: node.clock_uncertainty_nanos / 1_000_000,
            test_clock_offset_ms: 0,
        }
    }
}

impl HealingConfig {
    fn validate(&self) -> Result<(), String> {
        for (name, value) in [
            ("sync_interval_ms", self.sync_interval_ms),
            ("gossip_interval_ms", self.gossip_interval_ms),
            ("hint_window_ms", self.hint_window_ms),
            (
                "anti_entropy_scan_bytes_per_sec",
                self.anti_entropy_scan_bytes_per_sec,
            ),
            ("clock_offset_max_ms", self.clock_offset_max_ms),
            ("clock_uncertainty_ms", self.clock_uncertainty_ms),
        ] {
            if value == 0 {
                return Err(format!("{name} must be at least 1"));
            }
        }
        if !(self.phi_convict_threshold > 0.0 && self.phi_convict_threshold.is_finite()) {
            return Err("phi_convict_threshold must be a positive number".into());
        }
        if self.gc_grace_ms < self.hint_window_ms {
            return Err(format!(
                "gc_grace_ms ({}) must be at least hint_window_ms ({}): a hint replayed after its tombstone was purged would bring a deleted value back",
                self.gc_grace_ms, self.hint_window_ms
            ));
        }
        Ok(())
    }
}

/// Defaults that do not depend on the rest of the configuration.
pub const REQUEST_TIMEOUT_MS_DEFAULT: u64 = 2_000;
pub const VNODES_PER_NODE_DEFAULT: u32 = 64;
pub const TICK_INTERVAL_MS_DEFAULT: u64 = 10;
pub const PEER_SEND_QUEUE_BYTES_DEFAULT: usize = 64 << 20;
pub const BATCH_INPUTS_DEFAULT: usize = 4096;
pub const PEER_BULK_QUEUE_BYTES_DEFAULT: usize = 64 << 20;
/// A peer message carrying at least this many bytes of key and value goes
/// in the peer's bulk lane.
pub const PEER_BULK_MESSAGE_BYTES: usize = 64 << 10;
/// Idle timeout when the client address is not loopback and none is set.
pub const IDLE_TIMEOUT_SECS_EXPOSED_DEFAULT: u64 = 300;
pub const REQUEST_READ_TIMEOUT_MS_DEFAULT: u64 = 10_000;
pub const IDLE_EVICTION_MS_DEFAULT: u64 = 5_000;
/// Default WAL sync interval under `sync = interval`.
pub const SYNC_INTERVAL_MS_DEFAULT: u64 = 100;
pub const LISTEN_DEFAULT: &str = "127.0.0.1:7001";
pub const PEER_LISTEN_DEFAULT: &str = "127.0.0.1:7101";

impl NodeConfig {
    /// Every member of the cluster, this node included, sorted.
    pub fn members(&self) -> Vec<NodeId> {
        let mut members: Vec<NodeId> = self.peers.iter().map(|p| p.id).collect();
        members.push(self.id);
        members.sort_unstable();
        members
    }

    /// The placement configuration every member must share.
    pub fn cluster(&self) -> ClusterConfig {
        ClusterConfig {
            nodes: self.members(),
            replication_factor: self.replication_factor,
            vnodes_per_node: self.vnodes_per_node,
        }
    }

    /// Checks that the settings are usable together.
    ///
    /// # Errors
    /// A message naming the bad setting.
    pub fn validate(&self) -> Result<(), String> {
        if self.id.0 == 0 {
            return Err("id must be at least 1".into());
        }
        let mut ids: Vec<u32> = self.peers.iter().map(|p| p.id.0).collect();
        if ids.contains(&self.id.0) {
            return Err(format!(
                "peers must list the other members; {} is this node's own id",
                self.id.0
            ));
        }
        ids.sort_unstable();
        if ids.windows(2).any(|w| w[0] == w[1]) {
            return Err("peers lists the same node id twice".into());
        }
        let members = self.peers.len() + 1;
        if self.replication_factor == 0 || self.replication_factor > members {
            return Err(format!(
                "replication_factor {} must be between 1 and the {members} members",
                self.replication_factor
            ));
        }
        if self.cluster_secret.len() < 8 && members > 1 {
            return Err(
                "cluster_secret must be set (at least 8 bytes) so that only members can join"
                    .into(),
            );
        }
        if self.requirepass.as_ref().is_some_and(Secret::is_empty) {
            return Err("requirepass must not be empty (leave it unset for no password)".into());
        }
        if self.protected_mode && !self.listen.ip().is_loopback() && !self.clients_authenticate() {
            return Err(format!(
                "protected mode: refusing to serve clients on {} (not a loopback address) without \
                 authentication; set requirepass (or TLS client certificates: tls_clients and \
                 tls_client_auth), or set protected_mode to false to serve anyone who can reach \
                 this address",
                self.listen
            ));
        }
        self.validate_tls()?;
        let l = &self.limits;
        for (name, value) in [
            ("key_bytes_max", l.key_bytes_max),
            ("value_bytes_max", l.value_bytes_max),
            ("args_max", l.args_max),
            ("pipeline_depth_max", l.pipeline_depth_max),
            ("connections_max", l.connections_max),
            ("query_buffer_bytes_max", l.query_buffer_bytes_max),
            ("peer_send_queue_bytes_max", self.peer_send_queue_bytes_max),
            ("batch_inputs_max", self.batch_inputs_max),
            ("reply_buffer_bytes_max", l.reply_buffer_bytes_max),
            ("client_buffers_bytes_max", l.client_buffers_bytes_max),
            ("peer_bulk_queue_bytes_max", self.peer_bulk_queue_bytes_max),
        ] {
            if value == 0 {
                return Err(format!("{name} must be at least 1"));
            }
        }
        if l.args_max < 3 {
            return Err("args_max must be at least 3 (SET key value)".into());
        }
        // A value travels to peers in one frame, with its key and headers.
        let frame_room = FRAME_PAYLOAD_BYTES_MAX - 1024;
        if l.key_bytes_max + l.value_bytes_max > frame_room {
            return Err(format!(
                "key_bytes_max + value_bytes_max must be at most {frame_room} (one peer frame)"
            ));
        }
        if l.query_buffer_bytes_max < l.key_bytes_max + l.value_bytes_max + 1024 {
            return Err(
                "query_buffer_bytes_max must hold a SET of the largest key and value".into(),
            );
        }
        if self.peer_send_queue_bytes_max < l.key_bytes_max + l.value_bytes_max + 1024 {
            return Err(
                "peer_send_queue_bytes_max must hold one write of the largest key and value".into(),
            );
        }
        if l.client_buffers_bytes_max < l.query_buffer_bytes_max {
            return Err(
                "client_buffers_bytes_max must be at least query_buffer_bytes_max (room for one \
                 request of the largest size)"
                    .into(),
            );
        }
        if self.peer_bulk_queue_bytes_max < l.key_bytes_max + l.value_bytes_max + 1024 {
            return Err(
                "peer_bulk_queue_bytes_max must hold one write of the largest key and value".into(),
            );
        }
        if self.request_timeout_ms == 0
            || self.tick_interval_ms == 0
            || self.request_read_timeout_ms == 0
        {
            return Err(
                "request_timeout_ms, request_read_timeout_ms and tick_interval_ms must be at least 1"
                    .into(),
            );
        }
        self.healing.validate()
    }

    fn validate_tls(&self) -> Result<(), String> {
        let tls = &self.tls;
        if tls.enabled() && (tls.cert_file.is_none() || tls.key_file.is_none()) {
            return Err("tls_clients and tls_peers need tls_cert_file and tls_key_file".into());
        }
        if tls.peers && tls.ca_file.is_none() {
            return Err(
                "tls_peers needs tls_ca_file: peers verify each other's certificates against it"
                    .into(),
            );
        }
        if tls.client_auth && !(tls.clients && tls.ca_file.is_some()) {
            return Err("tls_client_auth needs tls_clients and tls_ca_file".into());
        }
        if !tls.enabled() && (tls.cert_file.is_some() || tls.key_file.is_some()) {
            return Err(
                "tls_cert_file and tls_key_file are set but neither tls_clients nor tls_peers is"
                    .into(),
            );
        }
        Ok(())
    }
}

/// `enigma node` flags. Each may also come from an `ENIGMA_*` variable or
/// the `--config` file; see the module documentation for precedence.
#[derive(Debug, Clone, Default, Args)]
pub struct NodeArgs {
    /// TOML config file; its keys are the flag names with `_` for `-`.
    #[arg(long, env = "ENIGMA_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// This node's id, a positive integer unique in the cluster.
    #[arg(long, env = "ENIGMA_ID")]
    pub id: Option<u32>,
    /// Client (RESP) address [default: 127.0.0.1:7001].
    #[arg(long, env = "ENIGMA_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Address other nodes connect to [default: 127.0.0.1:7101].
    #[arg(long, env = "ENIGMA_PEER_LISTEN")]
    pub peer_listen: Option<SocketAddr>,
    /// The other members, as ID@HOST:PORT of their peer address, comma
    /// separated [default: none, a one-node cluster].
    #[arg(long, env = "ENIGMA_PEERS", value_delimiter = ',')]
    pub peers: Option<Vec<PeerAddr>>,
    /// Data directory [default: ./enigma-data/n<ID>].
    #[arg(long, env = "ENIGMA_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Replicas per key [default: 3, or the member count if smaller].
    #[arg(long, env = "ENIGMA_REPLICATION_FACTOR")]
    pub replication_factor: Option<usize>,
    /// Ring tokens per node [default: 64].
    #[arg(long, env = "ENIGMA_VNODES_PER_NODE")]
    pub vnodes_per_node: Option<u32>,
    /// How long a coordinator waits for replicas, ms [default: 2000].
    #[arg(long, env = "ENIGMA_REQUEST_TIMEOUT_MS")]
    pub request_timeout_ms: Option<u64>,
    /// WAL sync: always (fsync before replying) or never [default: always].
    #[arg(long, env = "ENIGMA_SYNC")]
    pub sync: Option<SyncMode>,
    /// Consistency level of new connections: ONE, TWO, QUORUM, ALL
    /// [default: QUORUM].
    #[arg(long, env = "ENIGMA_DEFAULT_CONSISTENCY")]
    pub default_consistency: Option<ConsistencyLevel>,
    /// Password clients must give with AUTH [default: none]. Prefer the
    /// variable or the file to keep it out of `ps`.
    #[arg(long, env = "ENIGMA_REQUIREPASS", hide_env_values = true)]
    pub requirepass: Option<String>,
    /// Secret shared by the members; peers prove they know it on connect.
    /// Prefer the variable or the file to keep it out of `ps`.
    #[arg(long, env = "ENIGMA_CLUSTER_SECRET", hide_env_values = true)]
    pub cluster_secret: Option<String>,
    /// Prometheus metrics address, served at /metrics [default: off].
    #[arg(long, env = "ENIGMA_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,
    /// Largest key in bytes [default: 16384].
    #[arg(long, env = "ENIGMA_KEY_BYTES_MAX")]
    pub key_bytes_max: Option<usize>,
    /// Largest value in bytes [default: 8388608].
    #[arg(long, env = "ENIGMA_VALUE_BYTES_MAX")]
    pub value_bytes_max: Option<usize>,
    /// Most arguments in one command [default: 1024].
    #[arg(long, env = "ENIGMA_ARGS_MAX")]
    pub args_max: Option<usize>,
    /// Most commands awaiting replies on one connection [default: 1024].
    #[arg(long, env = "ENIGMA_PIPELINE_DEPTH_MAX")]
    pub pipeline_depth_max: Option<usize>,
    /// Most client connections [default: 1024].
    #[arg(long, env = "ENIGMA_CONNECTIONS_MAX")]
    pub connections_max: Option<usize>,
    /// Most bytes of one unfinished request [default: 67108864].
    #[arg(long, env = "ENIGMA_QUERY_BUFFER_BYTES_MAX")]
    pub query_buffer_bytes_max: Option<usize>,
    /// Tick interval, ms [default: 10].
    #[arg(long, env = "ENIGMA_TICK_INTERVAL_MS")]
    pub tick_interval_ms: Option<u64>,
    /// Bytes queued for one peer before it is dropped as slow
    /// [default: 67108864].
    #[arg(long, env = "ENIGMA_PEER_SEND_QUEUE_BYTES_MAX")]
    pub peer_send_queue_bytes_max: Option<usize>,
    /// Most inputs per group commit [default: 4096].
    #[arg(long, env = "ENIGMA_BATCH_INPUTS_MAX")]
    pub batch_inputs_max: Option<usize>,
    /// Bytes of replies one connection may hold unwritten before its new
    /// commands wait [default: 33554432].
    #[arg(long, env = "ENIGMA_REPLY_BUFFER_BYTES_MAX")]
    pub reply_buffer_bytes_max: Option<usize>,
    /// Bytes of all connections' query and reply buffers together
    /// [default: 268435456].
    #[arg(long, env = "ENIGMA_CLIENT_BUFFERS_BYTES_MAX")]
    pub client_buffers_bytes_max: Option<usize>,
    /// Bytes of large messages queued for one peer before large client
    /// writes wait [default: 67108864].
    #[arg(long, env = "ENIGMA_PEER_BULK_QUEUE_BYTES_MAX")]
    pub peer_bulk_queue_bytes_max: Option<usize>,
    /// Refuse to serve clients on a non-loopback address without
    /// requirepass or TLS client certificates: true or false
    /// [default: true].
    #[arg(long, env = "ENIGMA_PROTECTED_MODE", value_name = "BOOL")]
    pub protected_mode: Option<bool>,
    /// Close connections idle this many seconds, 0 never [default: 0 on a
    /// loopback address, 300 otherwise].
    #[arg(long, env = "ENIGMA_TIMEOUT", value_name = "SECONDS")]
    pub timeout: Option<u64>,
    /// Close a connection whose request is not complete this long after it
    /// began, ms [default: 10000].
    #[arg(long, env = "ENIGMA_REQUEST_READ_TIMEOUT_MS")]
    pub request_read_timeout_ms: Option<u64>,
    /// At connections_max, close the connection idle longest if idle at
    /// least this, ms, to admit a new one; 0 never [default: 5000].
    #[arg(long, env = "ENIGMA_IDLE_EVICTION_MS")]
    pub idle_eviction_ms: Option<u64>,
    /// This node's TLS certificate chain, PEM.
    #[arg(long, env = "ENIGMA_TLS_CERT_FILE", value_name = "FILE")]
    pub tls_cert_file: Option<PathBuf>,
    /// The private key of tls_cert_file, PEM.
    #[arg(long, env = "ENIGMA_TLS_KEY_FILE", value_name = "FILE")]
    pub tls_key_file: Option<PathBuf>,
    /// Certificate authority that peer (and client) certificates must
    /// chain to, PEM.
    #[arg(long, env = "ENIGMA_TLS_CA_FILE", value_name = "FILE")]
    pub tls_ca_file: Option<PathBuf>,
    /// Clients speak TLS: true or false [default: false].
    #[arg(long, env = "ENIGMA_TLS_CLIENTS", value_name = "BOOL")]
    pub tls_clients: Option<bool>,
    /// Clients must present a certificate signed by tls_ca_file: true or
    /// false [default: false].
    #[arg(long, env = "ENIGMA_TLS_CLIENT_AUTH", value_name = "BOOL")]
    pub tls_client_auth: Option<bool>,
    /// Peer links use TLS with certificates checked against tls_ca_file:
    /// true or false [default: false].
    #[arg(long, env = "ENIGMA_TLS_PEERS", value_name = "BOOL")]
    pub tls_peers: Option<bool>,
    /// With --sync interval: how often the WAL is synced, ms [default: 100].
    #[arg(long, env = "ENIGMA_SYNC_INTERVAL_MS")]
    pub sync_interval_ms: Option<u64>,
    /// Pause between gossip rounds, ms [default: 1000].
    #[arg(long, env = "ENIGMA_GOSSIP_INTERVAL_MS")]
    pub gossip_interval_ms: Option<u64>,
    /// Phi above which a silent peer is held down [default: 8].
    #[arg(long, env = "ENIGMA_PHI_CONVICT_THRESHOLD")]
    pub phi_convict_threshold: Option<f64>,
    /// Keep hints for replicas that miss writes: true or false
    /// [default: true].
    #[arg(long, env = "ENIGMA_HINTED_HANDOFF")]
    pub hinted_handoff: Option<bool>,
    /// Hints older than this are dropped, ms [default: 10800000, 3 h].
    #[arg(long, env = "ENIGMA_HINT_WINDOW_MS")]
    pub hint_window_ms: Option<u64>,
    /// Bytes of hints kept per target node; beyond, the oldest go
    /// [default: 67108864].
    #[arg(long, env = "ENIGMA_HINTS_BYTES_MAX_PER_NODE")]
    pub hints_bytes_max_per_node: Option<u64>,
    /// Run anti-entropy continuously: true or false [default: true].
    #[arg(long, env = "ENIGMA_ANTI_ENTROPY")]
    pub anti_entropy: Option<bool>,
    /// Bytes of keys and values anti-entropy scans per second
    /// [default: 4194304].
    #[arg(long, env = "ENIGMA_ANTI_ENTROPY_SCAN_BYTES_PER_SEC")]
    pub anti_entropy_scan_bytes_per_sec: Option<u64>,
    /// Pause between anti-entropy sessions, ms [default: 10000].
    #[arg(long, env = "ENIGMA_ANTI_ENTROPY_INTERVAL_MS")]
    pub anti_entropy_interval_ms: Option<u64>,
    /// Tombstones younger than this are never purged, ms
    /// [default: 864000000, ten days].
    #[arg(long, env = "ENIGMA_GC_GRACE_MS")]
    pub gc_grace_ms: Option<u64>,
    /// Peer clock readings further ahead than this are refused, and a
    /// node this far from a majority of its peers refuses writes, ms
    /// [default: 500].
    #[arg(long, env = "ENIGMA_CLOCK_OFFSET_MAX_MS")]
    pub clock_offset_max_ms: Option<u64>,
    /// Commit wait: answer a write only once this node's clock has passed
    /// its timestamp by --clock-uncertainty-ms (QUORUM/ALL linearizable
    /// under clock skew within it): true or false [default: false].
    #[arg(long, env = "ENIGMA_COMMIT_WAIT", value_name = "BOOL")]
    pub commit_wait: Option<bool>,
    /// The largest difference between two nodes' clocks commit wait
    /// assumes, ms [default: 10].
    #[arg(long, env = "ENIGMA_CLOCK_UNCERTAINTY_MS")]
    pub clock_uncertainty_ms: Option<u64>,
    /// TEST ONLY: shift this node's wall clock by this many ms (negative:
    /// behind), to try a skewed node on one machine [default: 0].
    #[arg(long, env = "ENIGMA_TEST_CLOCK_OFFSET_MS", allow_hyphen_values = true)]
    pub test_clock_offset_ms: Option<i64>,
}

/// The config file: the same settings as [`NodeArgs`], by the same names.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    id: Option<u32>,
    listen: Option<SocketAddr>,
    peer_listen: Option<SocketAddr>,
    peers: Option<Vec<String>>,
    data_dir: Option<PathBuf>,
    replication_factor: Option<usize>,
    vnodes_per_node: Option<u32>,
    request_timeout_ms: Option<u64>,
    sync: Option<String>,
    default_consistency: Option<String>,
    requirepass: Option<String>,
    cluster_secret: Option<String>,
    metrics_listen: Option<SocketAddr>,
    key_bytes_max: Option<usize>,
    value_bytes_max: Option<usize>,
    args_max: Option<usize>,
    pipeline_depth_max: Option<usize>,
    connections_max: Option<usize>,
    query_buffer_bytes_max: Option<usize>,
    tick_interval_ms: Option<u64>,
    peer_send_queue_bytes_max: Option<usize>,
    batch_inputs_max: Option<usize>,
    reply_buffer_bytes_max: Option<usize>,
    client_buffers_bytes_max: Option<usize>,
    peer_bulk_queue_bytes_max: Option<usize>,
    protected_mode: Option<bool>,
    timeout: Option<u64>,
    request_read_timeout_ms: Option<u64>,
    idle_eviction_ms: Option<u64>,
    tls_cert_file: Option<PathBuf>,
    tls_key_file: Option<PathBuf>,
    tls_ca_file: Option<PathBuf>,
    tls_clients: Option<bool>,
    tls_client_auth: Option<bool>,
    tls_peers: Option<bool>,
    sync_interval_ms: Option<u64>,
    gossip_interval_ms: Option<u64>,
    phi_convict_threshold: Option<f64>,
    hinted_handoff: Option<bool>,
    hint_window_ms: Option<u64>,
    hints_bytes_max_per_node: Option<u64>,
    anti_entropy: Option<bool>,
    anti_entropy_scan_bytes_per_sec: Option<u64>,
    anti_entropy_interval_ms: Option<u64>,
    gc_grace_ms: Option<u64>,
    clock_offset_max_ms: Option<u64>,
    commit_wait: Option<bool>,
    clock_uncertainty_ms: Option<u64>,
    test_clock_offset_ms: Option<i64>,
}

fn read_file(path: &Path) -> Result<FileConfig, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read config file {}: {e}", path.display()))?;
    toml::from_str(&text).map_err(|e| format!("config file {}: {e}", path.display()))
}

impl NodeArgs {
    /// The healing settings: flag or variable, then file, then default.
    fn healing(&self, file: &FileConfig) -> HealingConfig {
        let d = HealingConfig::default();
        HealingConfig {
            sync_interval_ms: self
                .sync_interval_ms
                .or(file.sync_interval_ms)
                .unwrap_or(d.sync_interval_ms),
            gossip_interval_ms: self
                .gossip_interval_ms
                .or(file.gossip_interval_ms)
                .unwrap_or(d.gossip_interval_ms),
            phi_convict_threshold: self
                .phi_convict_threshold
                .or(file.phi_convict_threshold)
                .unwrap_or(d.phi_convict_threshold),
            hinted_handoff: self
                .hinted_handoff
                .or(file.hinted_handoff)
                .unwrap_or(d.hinted_handoff),
            hint_window_ms: self
                .hint_window_ms
                .or(file.hint_window_ms)
                .unwrap_or(d.hint_window_ms),
            hints_bytes_max_per_node: self
                .hints_bytes_max_per_node
                .or(file.hints_bytes_max_per_node)
                .unwrap_or(d.hints_bytes_max_per_node),
            anti_entropy: self
                .anti_entropy
                .or(file.anti_entropy)
                .unwrap_or(d.anti_entropy),
            anti_entropy_scan_bytes_per_sec: self
                .anti_entropy_scan_bytes_per_sec
                .or(file.anti_entropy_scan_bytes_per_sec)
                .unwrap_or(d.anti_entropy_scan_bytes_per_sec),
            anti_entropy_interval_ms: self
                .anti_entropy_interval_ms
                .or(file.anti_entropy_interval_ms)
                .unwrap_or(d.anti_entropy_interval_ms),
            gc_grace_ms: self
                .gc_grace_ms
                .or(file.gc_grace_ms)
                .unwrap_or(d.gc_grace_ms),
            clock_offset_max_ms: self
                .clock_offset_max_ms
                .or(file.clock_offset_max_ms)
                .unwrap_or(d.clock_offset_max_ms),
            commit_wait: self
                .commit_wait
                .or(file.commit_wait)
                .unwrap_or(d.commit_wait),
            clock_uncertainty_ms: self
                .clock_uncertainty_ms
                .or(file.clock_uncertainty_ms)
                .unwrap_or(d.clock_uncertainty_ms),
            test_clock_offset_ms: self
                .test_clock_offset_ms
                .or(file.test_clock_offset_ms)
                .unwrap_or(d.test_clock_offset_ms),
        }
    }

    /// Merges flags and variables (already merged by clap, flag first) over
    /// the config file over the defaults, and validates the result.
    ///
    /// # Errors
    /// An unreadable file, a malformed value or an invalid combination.
    pub fn resolve(&self) -> Result<NodeConfig, String> {
        let config = self.merge()?;
        config.validate()?;
        Ok(config)
    }

    /// Like [`Self::resolve`] with `peers` as the member list, not validated
    /// (the caller fills in the rest, then validates).
    ///
    /// # Errors
    /// An unreadable file or a malformed value.
    pub fn resolve_with_peers(&self, peers: Vec<PeerAddr>) -> Result<NodeConfig, String> {
        let with = NodeArgs {
            peers: Some(peers),
            ..self.clone()
        };
        with.merge()
    }

    fn merge(&self) -> Result<NodeConfig, String> {
        let file = match &self.config {
            Some(path) => read_file(path)?,
            None => FileConfig::default(),
        };
        let id = self
            .id
            .or(file.id)
            .ok_or("the node id is required: --id, ENIGMA_ID or `id` in the config file")?;
        let peers = match (&self.peers, &file.peers) {
            (Some(p), _) => p.clone(),
            (None, Some(p)) => p
                .iter()
                .map(|s| s.parse())
                .collect::<Result<Vec<PeerAddr>, String>>()
                .map_err(|e| format!("config file: {e}"))?,
            (None, None) => Vec::new(),
        };
        let parse_or = |flag: Option<SyncMode>, text: Option<String>| -> Result<SyncMode, String> {
            match (flag, text) {
                (Some(v), _) => Ok(v),
                (None, Some(t)) => t.parse().map_err(|e| format!("config file: {e}")),
                (None, None) => Ok(SyncMode::Always),
            }
        };
        let sync = parse_or(self.sync, file.sync.clone())?;
        let default_consistency = match (self.default_consistency, &file.default_consistency) {
            (Some(level), _) => level,
            (None, Some(text)) => text
                .parse()
                .map_err(|e| format!("config file: default_consistency: {e}"))?,
            (None, None) => ConsistencyLevel::Quorum,
        };
        let defaults = Limits::default();
        let limits = Limits {
            key_bytes_max: self
                .key_bytes_max
                .or(file.key_bytes_max)
                .unwrap_or(defaults.key_bytes_max),
            value_bytes_max: self
                .value_bytes_max
                .or(file.value_bytes_max)
                .unwrap_or(defaults.value_bytes_max),
            args_max: self.args_max.or(file.args_max).unwrap_or(defaults.args_max),
            pipeline_depth_max: self
                .pipeline_depth_max
                .or(file.pipeline_depth_max)
                .unwrap_or(defaults.pipeline_depth_max),
            connections_max: self
                .connections_max
                .or(file.connections_max)
                .unwrap_or(defaults.connections_max),
            query_buffer_bytes_max: self
                .query_buffer_bytes_max
                .or(file.query_buffer_bytes_max)
                .unwrap_or(defaults.query_buffer_bytes_max),
            reply_buffer_bytes_max: self
                .reply_buffer_bytes_max
                .or(file.reply_buffer_bytes_max)
                .unwrap_or(defaults.reply_buffer_bytes_max),
            client_buffers_bytes_max: self
                .client_buffers_bytes_max
                .or(file.client_buffers_bytes_max)
                .unwrap_or(defaults.client_buffers_bytes_max),
        };
        let members = peers.len() + 1;
        let listen = self
            .listen
            .or(file.listen)
            .unwrap_or_else(|| LISTEN_DEFAULT.parse().expect("the default address parses"));
        let healing = self.healing(&file);
        let tls = TlsSettings {
            cert_file: self.tls_cert_file.clone().or(file.tls_cert_file),
            key_file: self.tls_key_file.clone().or(file.tls_key_file),
            ca_file: self.tls_ca_file.clone().or(file.tls_ca_file),
            clients: self.tls_clients.or(file.tls_clients).unwrap_or(false),
            client_auth: self
                .tls_client_auth
                .or(file.tls_client_auth)
                .unwrap_or(false),
            peers: self.tls_peers.or(file.tls_peers).unwrap_or(false),
        };
        let config = NodeConfig {
            id: NodeId(id),
            listen,
            peer_listen: self.peer_listen.or(file.peer_listen).unwrap_or_else(|| {
                PEER_LISTEN_DEFAULT
                    .parse()
                    .expect("the default address parses")
            }),
            peers,
            data_dir: self
                .data_dir
                .clone()
                .or(file.data_dir)
                .unwrap_or_else(|| PathBuf::from(format!("enigma-data/n{id}"))),
            replication_factor: self
                .replication_factor
                .or(file.replication_factor)
                .unwrap_or(members.min(3)),
            vnodes_per_node: self
                .vnodes_per_node
                .or(file.vnodes_per_node)
                .unwrap_or(VNODES_PER_NODE_DEFAULT),
            request_timeout_ms: self
                .request_timeout_ms
                .or(file.request_timeout_ms)
                .unwrap_or(REQUEST_TIMEOUT_MS_DEFAULT),
            sync,
            default_consistency,
            requirepass: self
                .requirepass
                .clone()
                .or(file.requirepass)
                .map(Secret::new),
            cluster_secret: Secret::new(
                self.cluster_secret
                    .clone()
                    .or(file.cluster_secret)
                    .unwrap_or_default(),
            ),
            metrics_listen: self.metrics_listen.or(file.metrics_listen),
            limits,
            tick_interval_ms: self
                .tick_interval_ms
                .or(file.tick_interval_ms)
                .unwrap_or(TICK_INTERVAL_MS_DEFAULT),
            peer_send_queue_bytes_max: self
                .peer_send_queue_bytes_max
                .or(file.peer_send_queue_bytes_max)
                .unwrap_or(PEER_SEND_QUEUE_BYTES_DEFAULT),
            batch_inputs_max: self
                .batch_inputs_max
                .or(file.batch_inputs_max)
                .unwrap_or(BATCH_INPUTS_DEFAULT),
            peer_bulk_queue_bytes_max: self
                .peer_bulk_queue_bytes_max
                .or(file.peer_bulk_queue_bytes_max)
                .unwrap_or(PEER_BULK_QUEUE_BYTES_DEFAULT),
            protected_mode: self.protected_mode.or(file.protected_mode).unwrap_or(true),
            idle_timeout_secs: self.timeout.or(file.timeout).unwrap_or(
                if listen.ip().is_loopback() {
                    0
                } else {
                    IDLE_TIMEOUT_SECS_EXPOSED_DEFAULT
                },
            ),
            request_read_timeout_ms: self
                .request_read_timeout_ms
                .or(file.request_read_timeout_ms)
                .unwrap_or(REQUEST_READ_TIMEOUT_MS_DEFAULT),
            idle_eviction_ms: self
                .idle_eviction_ms
                .or(file.idle_eviction_ms)
                .unwrap_or(IDLE_EVICTION_MS_DEFAULT),
            tls,
            healing,
        };
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, text: &str) -> PathBuf {
        let path = dir.join("node.toml");
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn flags_beat_the_file_and_the_file_beats_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(
            dir.path(),
            "id = 2\nrequest_timeout_ms = 500\nvnodes_per_node = 8\n\
             peers = [\"1@127.0.0.1:9001\", \"3@127.0.0.1:9003\"]\n\
             cluster_secret = \"0123456789\"\nsync = \"never\"\n",
        );
        let args = NodeArgs {
            config: Some(path),
            request_timeout_ms: Some(700),
            ..NodeArgs::default()
        };
        let config = args.resolve().unwrap();
        assert_eq!(config.id, NodeId(2));
        assert_eq!(config.request_timeout_ms, 700);
        assert_eq!(config.vnodes_per_node, 8);
        assert_eq!(config.sync, SyncMode::Never);
        assert_eq!(config.replication_factor, 3);
        assert_eq!(config.members(), vec![NodeId(1), NodeId(2), NodeId(3)]);
        assert_eq!(config.limits, Limits::default());
    }

    #[test]
    fn unknown_file_keys_and_bad_values_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), "id = 1\nrequest_timeout = 5\n");
        let args = NodeArgs {
            config: Some(path),
            ..NodeArgs::default()
        };
        assert!(args.resolve().unwrap_err().contains("request_timeout"));
        let path = write(dir.path(), "id = 1\nsync = \"sometimes\"\n");
        let args = NodeArgs {
            config: Some(path),
            ..NodeArgs::default()
        };
        assert!(args.resolve().unwrap_err().contains("sometimes"));
    }

    #[test]
    fn a_cluster_needs_a_secret_and_consistent_peers() {
        let peers: Vec<PeerAddr> = vec!["2@127.0.0.1:9002".parse().unwrap()];
        let args = NodeArgs {
            id: Some(1),
            peers: Some(peers.clone()),
            ..NodeArgs::default()
        };
        assert!(args.resolve().unwrap_err().contains("cluster_secret"));
        let args = NodeArgs {
            id: Some(2),
            peers: Some(peers),
            cluster_secret: Some("0123456789".into()),
            ..NodeArgs::default()
        };
        assert!(args.resolve().unwrap_err().contains("own id"));
        assert!(NodeArgs::default().resolve().unwrap_err().contains("id"));
        assert!("2-127.0.0.1:1".parse::<PeerAddr>().is_err());
    }

    #[test]
    fn protected_mode_refuses_an_exposed_listener_without_authentication() {
        let exposed = |extra: NodeArgs| {
            NodeArgs {
                id: Some(1),
                listen: Some("0.0.0.0:7001".parse().unwrap()),
                ..extra
            }
            .resolve()
        };
        let refused = exposed(NodeArgs::default()).unwrap_err();
        assert!(refused.contains("protected mode"), "{refused}");
        assert!(refused.contains("0.0.0.0:7001"), "{refused}");
        let with_password = exposed(NodeArgs {
            requirepass: Some("pw".into()),
            ..NodeArgs::default()
        })
        .unwrap();
        assert_eq!(
            with_password.idle_timeout_secs,
            IDLE_TIMEOUT_SECS_EXPOSED_DEFAULT
        );
        assert!(exposed(NodeArgs {
            protected_mode: Some(false),
            ..NodeArgs::default()
        })
        .is_ok());
        let loopback = NodeArgs {
            id: Some(1),
            ..NodeArgs::default()
        }
        .resolve()
        .unwrap();
        assert!(loopback.protected_mode);
        assert_eq!(loopback.idle_timeout_secs, 0, "no idle timeout on loopback");
    }

    #[test]
    fn tls_settings_must_be_complete() {
        let args = |tls_clients, tls_peers, ca: bool| NodeArgs {
            id: Some(1),
            tls_clients: Some(tls_clients),
            tls_peers: Some(tls_peers),
            tls_cert_file: Some("node.pem".into()),
            tls_key_file: Some("node.key".into()),
            tls_ca_file: ca.then(|| "ca.pem".into()),
            ..NodeArgs::default()
        };
        assert!(args(true, false, false).resolve().is_ok());
        assert!(args(false, true, false)
            .resolve()
            .unwrap_err()
            .contains("tls_ca_file"));
        assert!(args(false, false, false)
            .resolve()
            .unwrap_err()
            .contains("neither"));
        let no_key = NodeArgs {
            tls_key_file: None,
            ..args(true, false, true)
        };
        assert!(no_key.resolve().unwrap_err().contains("tls_key_file"));
    }

    #[test]
    fn secrets_never_print() {
        let config = NodeArgs {
            id: Some(1),
            requirepass: Some("hunter22-password".into()),
            cluster_secret: Some("the-cluster-secret".into()),
            ..NodeArgs::default()
        }
        .resolve()
        .unwrap();
        let shown = format!("{config:?} {}", config.cluster_secret);
        assert!(!shown.contains("hunter22"), "{shown}");
        assert!(!shown.contains("the-cluster-secret"), "{shown}");
        assert_eq!(config.cluster_secret.expose(), "the-cluster-secret");
    }
}
