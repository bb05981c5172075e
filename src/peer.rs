//! Peer links: TCP between nodes, in the simulator's frames.
//!
//! Each node dials every other member once and uses that connection only to
//! send; what it receives arrives on the connections the others dialed to
//! it. Two one-way connections per pair mean no tie-breaking between
//! simultaneous dials and no sharing of a socket between a reader and a
//! writer.
//!
//! Before any frame, the two ends run a handshake (`docs/FORMAT.md`, "Peer
//! handshake"): the dialer names itself and the node it meant to reach, both
//! prove with an HMAC-SHA256 over fresh nonces that they know the cluster
//! secret, and both check that they agree on the placement (members,
//! replication factor, vnodes). A stray process, a node of another cluster
//! or a misconfigured member is refused before it can send a message.
//!
//! Sending is bounded: messages wait in a per-peer queue of at most
//! `peer_send_queue_bytes_max` bytes. A peer that cannot keep up (the queue
//! overflows, or a write stalls) is disconnected and its queue dropped; the
//! dialer reconnects with exponential backoff. Messages to a peer that is not
//! connected are dropped: the node's timeouts and read repair already cope
//! with lost messages, as in the simulator.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use enigma_cluster::codec::{decode_frame, encode_frame, Decoded};
use enigma_cluster::{ClusterConfig, Envelope, NodeId};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch, Notify};
use tracing::{debug, info, warn};

use crate::driver::DriverInput;
use crate::metrics::{inc, Metrics};

/// The first bytes of every peer connection.
pub const HANDSHAKE_MAGIC: [u8; 8] = *b"ENIGPEER";
/// Version of the handshake and of the frames that follow it.
pub const HANDSHAKE_VERSION: u8 = 1;
/// Dialer's hello: magic, version, from, to, cluster digest, nonce.
const HELLO_BYTES: usize = 8 + 1 + 4 + 4 + 8 + 16;
/// Acceptor's challenge: verdict, nonce, proof.
const CHALLENGE_BYTES: usize = 1 + 16 + 32;
/// Dialer's proof.
const PROOF_BYTES: usize = 32;
/// How long a handshake may take before the connection is dropped.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(3);
/// First and largest pause between dial attempts.
pub const RECONNECT_BACKOFF_MIN: Duration = Duration::from_millis(50);
pub const RECONNECT_BACKOFF_MAX: Duration = Duration::from_secs(2);
/// A write to a peer that takes longer than this marks it slow.
pub const PEER_WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// Bytes counted for a message beyond its key and value.
const MESSAGE_OVERHEAD_BYTES: usize = 64;

type HmacSha256 = Hmac<Sha256>;

/// Why a handshake failed. The refusal codes travel in the verdict byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HandshakeError {
    #[error("not an EnigmaDB peer, or a different handshake version")]
    Version,
    #[error("the dialer meant to reach another node id")]
    WrongNode,
    #[error("the dialer is not a member of this cluster")]
    NotAMember,
    #[error("the two nodes are configured with different members, replication factor or vnodes")]
    ClusterMismatch,
    #[error("bad proof of the cluster secret")]
    BadSecret,
    #[error("connection closed or failed during the handshake")]
    Io,
}

impl HandshakeError {
    fn code(self) -> u8 {
        match self {
            Self::Version => 1,
            Self::WrongNode => 2,
            Self::NotAMember => 3,
            Self::ClusterMismatch => 4,
            Self::BadSecret => 5,
            Self::Io => 6,
        }
    }

    fn from_code(code: u8) -> Self {
        match code {
            1 => Self::Version,
            2 => Self::WrongNode,
            3 => Self::NotAMember,
            4 => Self::ClusterMismatch,
            5 => Self::BadSecret,
            _ => Self::Io,
        }
    }
}

impl From<std::io::Error> for HandshakeError {
    fn from(_: std::io::Error) -> Self {
        Self::Io
    }
}

/// A digest of the placement every member must share.
pub fn cluster_digest(cluster: &ClusterConfig) -> u64 {
    let mut members: Vec<u32> = cluster.nodes.iter().map(|n| n.0).collect();
    members.sort_unstable();
    let text = format!(
        "enigma-cluster-v1;members={members:?};rf={};vnodes={}",
        cluster.replication_factor, cluster.vnodes_per_node
    );
    let hash = Sha256::digest(text.as_bytes());
    u64::from_le_bytes(hash[..8].try_into().expect("a SHA-256 has 32 bytes"))
}

fn nonce() -> [u8; 16] {
    let mut nonce = [0u8; 16];
    if getrandom::fill(&mut nonce).is_err() {
        // No OS randomness: fall back to the clock. Nonces only need to be
        // fresh, not secret.
        #[allow(clippy::disallowed_methods)]
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        nonce.copy_from_slice(&now.to_le_bytes());
    }
    nonce
}

fn proof(secret: &[u8], role: &[u8], hello: &[u8], acceptor_nonce: &[u8]) -> HmacSha256 {
    let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC takes a key of any length");
    mac.update(b"enigma-peer-v1 ");
    mac.update(role);
    mac.update(hello);
    mac.update(acceptor_nonce);
    mac
}

/// What both ends of a handshake need to know.
#[derive(Debug, Clone)]
pub struct HandshakeKeys {
    /// This node.
    pub me: NodeId,
    /// Every member.
    pub members: Vec<NodeId>,
    /// [`cluster_digest`] of this node's configuration.
    pub digest: u64,
    /// The cluster secret.
    pub secret: Vec<u8>,
}

/// Runs the dialer's side of the handshake with node `to`.
///
/// # Errors
/// The refusal the acceptor sent, or [`HandshakeError::BadSecret`] when the
/// acceptor could not prove it knows the secret.
pub async fn dial_handshake<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    keys: &HandshakeKeys,
    to: NodeId,
) -> Result<(), HandshakeError> {
    let mut hello = Vec::with_capacity(HELLO_BYTES);
    hello.extend_from_slice(&HANDSHAKE_MAGIC);
    hello.push(HANDSHAKE_VERSION);
    hello.extend_from_slice(&keys.me.0.to_le_bytes());
    hello.extend_from_slice(&to.0.to_le_bytes());
    hello.extend_from_slice(&keys.digest.to_le_bytes());
    hello.extend_from_slice(&nonce());
    stream.write_all(&hello).await?;
    let mut challenge = [0u8; CHALLENGE_BYTES];
    stream.read_exact(&mut challenge[..1]).await?;
    if challenge[0] != 0 {
        return Err(HandshakeError::from_code(challenge[0]));
    }
    stream.read_exact(&mut challenge[1..]).await?;
    let acceptor_nonce = &challenge[1..17];
    proof(&keys.secret, b"acceptor", &hello, acceptor_nonce)
        .verify_slice(&challenge[17..])
        .map_err(|_| HandshakeError::BadSecret)?;
    let mine = proof(&keys.secret, b"dialer", &hello, acceptor_nonce)
        .finalize()
        .into_bytes();
    stream.write_all(&mine).await?;
    let mut verdict = [0u8; 1];
    stream.read_exact(&mut verdict).await?;
    match verdict[0] {
        0 => Ok(()),
        code => Err(HandshakeError::from_code(code)),
    }
}

/// Runs the acceptor's side of the handshake; returns the proven peer id.
///
/// # Errors
/// Why the dialer was refused (it was told, then the caller closes).
pub async fn accept_handshake<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    keys: &HandshakeKeys,
) -> Result<NodeId, HandshakeError> {
    let mut hello = [0u8; HELLO_BYTES];
    stream.read_exact(&mut hello).await?;
    let word = |at: usize| u32::from_le_bytes(hello[at..at + 4].try_into().expect("4 bytes"));
    let from = NodeId(word(9));
    let to = NodeId(word(13));
    let digest = u64::from_le_bytes(hello[17..25].try_into().expect("8 bytes"));
    let refusal = if hello[..8] != HANDSHAKE_MAGIC || hello[8] != HANDSHAKE_VERSION {
        Some(HandshakeError::Version)
    } else if to != keys.me {
        Some(HandshakeError::WrongNode)
    } else if from == keys.me || !keys.members.contains(&from) {
        Some(HandshakeError::NotAMember)
    } else if digest != keys.digest {
        Some(HandshakeError::ClusterMismatch)
    } else {
        None
    };
    if let Some(refusal) = refusal {
        // Something that is not a peer at all gets no answer.
        if refusal != HandshakeError::Version {
            let _ = stream.write_all(&[refusal.code()]).await;
        }
        return Err(refusal);
    }
    let acceptor_nonce = nonce();
    let mine = proof(&keys.secret, b"acceptor", &hello, &acceptor_nonce)
        .finalize()
        .into_bytes();
    let mut challenge = Vec::with_capacity(CHALLENGE_BYTES);
    challenge.push(0);
    challenge.extend_from_slice(&acceptor_nonce);
    challenge.extend_from_slice(&mine);
    stream.write_all(&challenge).await?;
    let mut theirs = [0u8; PROOF_BYTES];
    stream.read_exact(&mut theirs).await?;
    if proof(&keys.secret, b"dialer", &hello, &acceptor_nonce)
        .verify_slice(&theirs)
        .is_err()
    {
        let _ = stream.write_all(&[HandshakeError::BadSecret.code()]).await;
        return Err(HandshakeError::BadSecret);
    }
    stream.write_all(&[0]).await?;
    Ok(from)
}

/// Messages waiting for one peer.
#[derive(Debug, Default)]
struct LinkQueue {
    envelopes: VecDeque<Envelope>,
    bytes: usize,
    /// The queue overflowed since the writer last looked: drop the link.
    overflowed: bool,
}

/// The outgoing side of one peer: its send queue and whether it is up.
#[derive(Debug)]
pub struct PeerLink {
    /// The peer.
    pub id: NodeId,
    /// Where its peer listener is.
    pub addr: SocketAddr,
    queue: Mutex<LinkQueue>,
    notify: Notify,
    up: AtomicBool,
    queue_bytes_max: usize,
    /// Wakes the dialer out of its back-off: the peer just connected to
    /// us, so it is back, and our link to it should be too.
    redial: Notify,
}

fn message_bytes(envelope: &Envelope) -> usize {
    envelope.message.payload_bytes() + MESSAGE_OVERHEAD_BYTES
}

impl PeerLink {
    /// A link to `id` at `addr`, down until its dialer connects.
    pub fn new(id: NodeId, addr: SocketAddr, queue_bytes_max: usize) -> Self {
        Self {
            id,
            addr,
            queue: Mutex::new(LinkQueue::default()),
            notify: Notify::new(),
            up: AtomicBool::new(false),
            queue_bytes_max,
            redial: Notify::new(),
        }
    }

    /// Whether an authenticated connection to the peer is open.
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    /// Queues `envelope` for the peer; drops it if the peer is down, and
    /// drops the whole queue (and so the connection) if it would overflow.
    pub fn push(&self, envelope: Envelope, metrics: &Metrics) {
        if !self.is_up() {
            inc(&metrics.peer_messages_dropped);
            return;
        }
        let bytes = message_bytes(&envelope);
        let Ok(mut queue) = self.queue.lock() else {
            return;
        };
        if queue.overflowed {
            inc(&metrics.peer_messages_dropped);
            return;
        }
        if queue.bytes + bytes > self.queue_bytes_max {
            queue.envelopes.clear();
            queue.bytes = 0;
            queue.overflowed = true;
            inc(&metrics.peer_messages_dropped);
        } else {
            queue.bytes += bytes;
            queue.envelopes.push_back(envelope);
        }
        drop(queue);
        self.notify.notify_one();
    }

    /// Takes everything queued; `Err` if the queue overflowed.
    fn take(&self) -> Result<VecDeque<Envelope>, ()> {
        let Ok(mut queue) = self.queue.lock() else {
            return Err(());
        };
        if queue.overflowed {
            return Err(());
        }
        queue.bytes = 0;
        Ok(std::mem::take(&mut queue.envelopes))
    }

    fn set_up(&self, up: bool) {
        if let Ok(mut queue) = self.queue.lock() {
            *queue = LinkQueue::default();
        }
        self.up.store(up, Ordering::Relaxed);
    }

    /// Whether the queue overflowed since the writer last took from it.
    fn overflowed(&self) -> bool {
        self.queue.lock().map_or(true, |q| q.overflowed)
    }

    /// Bytes waiting to be sent.
    pub fn queued_bytes(&self) -> usize {
        self.queue.lock().map_or(0, |q| q.bytes)
    }
}

/// Keeps one outgoing link connected until `stop` is raised.
pub async fn run_dialer(
    link: Arc<PeerLink>,
    keys: Arc<HandshakeKeys>,
    shared: Arc<crate::driver::Shared>,
    mut stop: watch::Receiver<bool>,
) {
    let metrics = &shared.metrics;
    let mut backoff = RECONNECT_BACKOFF_MIN;
    let mut failures = 0u64;
    loop {
        if *stop.borrow() {
            return;
        }
        let attempt = tokio::time::timeout(HANDSHAKE_TIMEOUT, async {
            let mut stream = TcpStream::connect(link.addr).await?;
            stream.set_nodelay(true)?;
            dial_handshake(&mut stream, &keys, link.id).await?;
            Ok::<TcpStream, HandshakeError>(stream)
        })
        .await;
        match attempt {
            Ok(Ok(stream)) => {
                info!(peer = %link.id, addr = %link.addr, "connected to peer");
                inc(&metrics.peer_connects);
                failures = 0;
                backoff = RECONNECT_BACKOFF_MIN;
                link.set_up(true);
                let reason = send_loop(&link, stream, metrics, &mut stop).await;
                link.set_up(false);
                if *stop.borrow() {
                    return;
                }
                warn!(peer = %link.id, %reason, "peer link down; reconnecting");
            }
            Ok(Err(error)) => {
                failures += 1;
                if error != HandshakeError::Io {
                    warn!(peer = %link.id, addr = %link.addr, %error, "peer refused the handshake");
                } else if failures == 1 {
                    info!(peer = %link.id, addr = %link.addr, "peer unreachable; retrying with backoff");
                } else {
                    debug!(peer = %link.id, failures, "peer still unreachable");
                }
            }
            Err(_) => {
                failures += 1;
                debug!(peer = %link.id, "peer handshake timed out");
            }
        }
        let jitter = getrandom::u64().unwrap_or(0) % (backoff.as_millis() as u64 / 2 + 1);
        let pause = backoff + Duration::from_millis(jitter);
        tokio::select! {
            _ = tokio::time::sleep(pause) => {
                backoff = (backoff * 2).min(RECONNECT_BACKOFF_MAX);
            }
            // The peer dialed us: it is back; dial it now, not after the
            // back-off (a restarted node would otherwise wait up to the
            // longest back-off for its peers' answers).
            _ = link.redial.notified() => backoff = RECONNECT_BACKOFF_MIN,
            _ = stop.changed() => return,
        }
    }
}

/// Writes queued messages until the link fails; returns why it ended.
async fn send_loop(
    link: &PeerLink,
    stream: TcpStream,
    metrics: &Metrics,
    stop: &mut watch::Receiver<bool>,
) -> String {
    let (mut reader, mut writer) = stream.into_split();
    let mut probe = [0u8; 64];
    let mut buf = Vec::with_capacity(64 << 10);
    // A wake-up for new messages arrived while a write was in progress.
    let mut wake_pending = false;
    loop {
        if !wake_pending {
            tokio::select! {
                _ = link.notify.notified() => {}
                read = reader.read(&mut probe) => {
                    return match read {
                        Ok(0) => "closed by the peer".into(),
                        Ok(_) => "the peer sent data on a send-only link".into(),
                        Err(e) => format!("read failed: {e}"),
                    };
                }
                _ = stop.changed() => return "shutting down".into(),
            }
        }
        wake_pending = false;
        let Ok(batch) = link.take() else {
            inc(&metrics.peer_slow_drops);
            return "its send queue overflowed (peer too slow)".into();
        };
        if batch.is_empty() {
            continue;
        }
        buf.clear();
        for envelope in &batch {
            buf.extend_from_slice(&encode_frame(envelope));
        }
        let write = writer.write_all(&buf);
        let stall = tokio::time::sleep(PEER_WRITE_TIMEOUT);
        tokio::pin!(write, stall);
        loop {
            tokio::select! {
                written = &mut write => match written {
                    Ok(()) => {
                        crate::metrics::add(&metrics.peer_frames_sent, batch.len() as u64);
                        break;
                    }
                    Err(e) => return format!("write failed: {e}"),
                },
                // More messages while the peer is not taking these: drop
                // the link as soon as the queue overflows, not only when
                // the write times out.
                _ = link.notify.notified() => {
                    if link.overflowed() {
                        inc(&metrics.peer_slow_drops);
                        return "its send queue overflowed (peer too slow)".into();
                    }
                    wake_pending = true;
                }
                _ = &mut stall => {
                    inc(&metrics.peer_slow_drops);
                    return "a write stalled (peer too slow)".into();
                }
                _ = stop.changed() => return "shutting down".into(),
            }
        }
    }
}

/// Accepts peer connections until `stop` is raised.
pub async fn run_acceptor(
    listener: TcpListener,
    keys: Arc<HandshakeKeys>,
    shared: Arc<crate::driver::Shared>,
    inputs: mpsc::Sender<DriverInput>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, remote)) => {
                    let _ = stream.set_nodelay(true);
                    tokio::spawn(serve_inbound(
                        stream,
                        remote,
                        keys.clone(),
                        shared.clone(),
                        inputs.clone(),
                        stop.clone(),
                    ));
                }
                Err(e) => {
                    warn!(error = %e, "peer accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            _ = stop.changed() => return,
        }
    }
}

async fn serve_inbound(
    mut stream: TcpStream,
    remote: SocketAddr,
    keys: Arc<HandshakeKeys>,
    shared: Arc<crate::driver::Shared>,
    inputs: mpsc::Sender<DriverInput>,
    mut stop: watch::Receiver<bool>,
) {
    let metrics = &shared.metrics;
    let from =
        match tokio::time::timeout(HANDSHAKE_TIMEOUT, accept_handshake(&mut stream, &keys)).await {
            Ok(Ok(from)) => from,
            Ok(Err(error)) => {
                inc(&metrics.peer_handshakes_refused);
                warn!(%remote, %error, "refused a peer connection");
                return;
            }
            Err(_) => {
                inc(&metrics.peer_handshakes_refused);
                warn!(%remote, "peer handshake timed out");
                return;
            }
        };
    inc(&metrics.peer_connects);
    debug!(peer = %from, %remote, "peer connected to us");
    if let Some(link) = shared.links.get(&from) {
        if !link.is_up() {
            link.redial.notify_one();
        }
    }
    let mut buf: Vec<u8> = Vec::with_capacity(64 << 10);
    loop {
        let mut start = 0;
        loop {
            match decode_frame(&buf[start..]) {
                Ok(Decoded::Frame { envelope, consumed }) => {
                    start += consumed;
                    inc(&metrics.peer_frames_received);
                    if inputs
                        .send(DriverInput::Peer { from, envelope })
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
                Ok(Decoded::Incomplete) => break,
                Err(error) => {
                    warn!(peer = %from, %error, "undecodable frame from peer; closing its connection");
                    return;
                }
            }
        }
        buf.drain(..start);
        if buf.capacity() - buf.len() < 16 << 10 {
            buf.reserve(64 << 10);
        }
        tokio::select! {
            read = stream.read_buf(&mut buf) => match read {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            },
            _ = stop.changed() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use enigma_cluster::Message;

    fn keys(me: u32, secret: &str) -> HandshakeKeys {
        let cluster = ClusterConfig {
            nodes: vec![NodeId(1), NodeId(2), NodeId(3)],
            replication_factor: 3,
            vnodes_per_node: 8,
        };
        HandshakeKeys {
            me: NodeId(me),
            members: cluster.nodes.clone(),
            digest: cluster_digest(&cluster),
            secret: secret.as_bytes().to_vec(),
        }
    }

    async fn handshake(
        dialer: HandshakeKeys,
        acceptor: HandshakeKeys,
        to: NodeId,
    ) -> (Result<(), HandshakeError>, Result<NodeId, HandshakeError>) {
        let (mut a, mut b) = tokio::io::duplex(1024);
        let dial = async move { dial_handshake(&mut a, &dialer, to).await };
        let accept = async move { accept_handshake(&mut b, &acceptor).await };
        tokio::join!(dial, accept)
    }

    fn run<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(f)
    }

    #[test]
    fn members_with_the_same_secret_shake_hands() {
        let (dial, accept) = run(handshake(
            keys(1, "s3cret-s3cret"),
            keys(2, "s3cret-s3cret"),
            NodeId(2),
        ));
        assert_eq!(dial, Ok(()));
        assert_eq!(accept, Ok(NodeId(1)));
    }

    #[test]
    fn a_wrong_secret_is_refused_on_both_sides() {
        let (dial, accept) = run(handshake(
            keys(1, "guess-guess"),
            keys(2, "s3cret-s3cret"),
            NodeId(2),
        ));
        assert_eq!(dial, Err(HandshakeError::BadSecret));
        // The dialer hangs up on seeing a bad proof, before sending its own.
        assert_eq!(accept, Err(HandshakeError::Io));
    }

    #[test]
    fn strangers_wrong_targets_and_other_clusters_are_refused() {
        let (dial, accept) = run(handshake(
            keys(9, "s3cret-s3cret"),
            keys(2, "s3cret-s3cret"),
            NodeId(2),
        ));
        assert_eq!(dial, Err(HandshakeError::NotAMember));
        assert_eq!(accept, Err(HandshakeError::NotAMember));
        let (dial, _) = run(handshake(
            keys(1, "s3cret-s3cret"),
            keys(2, "s3cret-s3cret"),
            NodeId(3),
        ));
        assert_eq!(dial, Err(HandshakeError::WrongNode));
        let mut other = keys(1, "s3cret-s3cret");
        other.digest ^= 1;
        let (dial, _) = run(handshake(other, keys(2, "s3cret-s3cret"), NodeId(2)));
        assert_eq!(dial, Err(HandshakeError::ClusterMismatch));
    }

    #[test]
    fn a_non_peer_gets_no_answer() {
        run(async {
            let (mut a, mut b) = tokio::io::duplex(1024);
            let acceptor = keys(2, "s3cret-s3cret");
            let accept = tokio::spawn(async move { accept_handshake(&mut b, &acceptor).await });
            a.write_all(b"*1\r\n$4\r\nPING\r\n").await.unwrap();
            a.write_all(&[0u8; HELLO_BYTES]).await.unwrap();
            assert_eq!(accept.await.unwrap(), Err(HandshakeError::Version));
            let mut rest = Vec::new();
            a.read_to_end(&mut rest).await.unwrap();
            assert!(rest.is_empty());
        });
    }

    #[test]
    fn the_digest_depends_on_placement_not_member_order() {
        let a = ClusterConfig {
            nodes: vec![NodeId(1), NodeId(2)],
            replication_factor: 2,
            vnodes_per_node: 8,
        };
        let mut b = a.clone();
        b.nodes.reverse();
        assert_eq!(cluster_digest(&a), cluster_digest(&b));
        b.replication_factor = 1;
        assert_ne!(cluster_digest(&a), cluster_digest(&b));
    }

    #[test]
    fn an_overflowing_queue_is_dropped_whole() {
        let link = PeerLink::new(NodeId(2), "127.0.0.1:1".parse().unwrap(), 200);
        let metrics = Metrics::default();
        let envelope = Envelope {
            hlc: 1,
            message: Message::Read {
                op: enigma_cluster::OpId {
                    generation: 1,
                    seq: 1,
                },
                key: vec![0; 50],
            },
        };
        link.push(envelope.clone(), &metrics);
        assert_eq!(link.queued_bytes(), 0, "a down link queues nothing");
        link.set_up(true);
        link.push(envelope.clone(), &metrics);
        assert_eq!(link.queued_bytes(), 114);
        link.push(envelope.clone(), &metrics);
        assert_eq!(link.queued_bytes(), 0);
        assert!(link.take().is_err(), "the writer must drop the connection");
        link.set_up(true);
        link.push(envelope, &metrics);
        assert_eq!(link.take().map(|q| q.len()), Ok(1));
    }
}
