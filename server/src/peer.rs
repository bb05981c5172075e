//! Peer links: TCP between nodes, in the simulator's frames.
//!
//! Each node dials every other member once and uses that connection only to
//! send; what it receives arrives on the connections the others dialed to
//! it. Two one-way connections per pair mean no tie-breaking between
//! simultaneous dials and no sharing of a socket between a reader and a
//! writer.
//!
//! Before any frame, the two ends run a handshake (`handshake.rs`,
//! `docs/FORMAT.md` "Peer handshake"): both prove they know the cluster
//! secret (the dialer first), and both check that they agree on the
//! placement. With `tls_peers` the link runs over TLS, each end's
//! certificate checked against the cluster's CA; without it, every frame
//! carries an HMAC tag under a key derived in the handshake.
//!
//! Sending is bounded in bytes, in two lanes per peer. Small messages
//! (acknowledgements, reads, digests, small writes) wait in a control lane
//! of at most `peer_send_queue_bytes_max` bytes; a peer that lets it
//! overflow, or stalls a write, takes nothing at all and is disconnected
//! (the dialer reconnects with exponential backoff). Messages carrying a
//! large value wait in a bulk lane of at most `peer_bulk_queue_bytes_max`
//! bytes and are written one at a time between batches of small ones, so a
//! large value delays the others by one frame at most. A full bulk lane
//! drops the large message, never the link, and client writes of large
//! values wait while it is half full (back-pressure, `session/`).
//! Messages to a peer that is not connected are dropped: the node's
//! timeouts and read repair already cope with lost messages, as in the
//! simulator.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use enigma_cluster::codec::{decode_frame, encode_frame, Decoded};
use enigma_cluster::{Envelope, FrameReader, NodeId};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch, Notify};
use tracing::{debug, info, warn};

use crate::config::PEER_BULK_MESSAGE_BYTES;
use crate::driver::DriverInput;
pub use crate::handshake::{
    accept_handshake, cluster_digest, dial_handshake, HandshakeError, HandshakeKeys,
    HANDSHAKE_MAGIC, HANDSHAKE_VERSION,
};
use crate::handshake::{FrameTags, FRAME_TAG_BYTES};
use crate::metrics::{inc, Metrics};
use crate::tls::{peer_server_name, TlsContext};

/// How long a handshake (TLS included) may take before the connection is
/// dropped.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(3);
/// First and largest pause between dial attempts.
pub const RECONNECT_BACKOFF_MIN: Duration = Duration::from_millis(50);
pub const RECONNECT_BACKOFF_MAX: Duration = Duration::from_secs(2);
/// A write to a peer that takes longer than this marks it slow.
pub const PEER_WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// Bytes counted for a message beyond its key and value.
const MESSAGE_OVERHEAD_BYTES: usize = 64;
/// Refused peer connections logged per [`REFUSAL_LOG_WINDOW`]; the rest are
/// only counted (a stranger must not be able to flood the log).
const REFUSALS_LOGGED_PER_WINDOW: u64 = 5;
const REFUSAL_LOG_WINDOW: Duration = Duration::from_secs(60);

/// A byte stream a link runs on: plain TCP or TLS over it.
pub trait PeerStream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> PeerStream for T {}

/// Messages waiting for one peer, in two lanes.
#[derive(Debug, Default)]
struct LinkQueue {
    /// Small messages (acknowledgements, reads, digests, small writes).
    control: VecDeque<Envelope>,
    control_bytes: usize,
    /// Messages carrying a large value, sent one at a time between the
    /// small ones, so that one large value never holds up the messages every
    /// other request waits for.
    bulk: VecDeque<Envelope>,
    bulk_bytes: usize,
    /// The control lane overflowed since the writer last looked: drop the
    /// link.
    overflowed: bool,
}

/// What the writer takes from the queue at once.
#[derive(Debug, Default)]
struct Batch {
    /// Every small message waiting.
    control: VecDeque<Envelope>,
    /// The next large one, if any.
    bulk: Option<Envelope>,
    /// Large messages remain after this batch.
    more: bool,
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
    bulk_bytes_max: usize,
    /// Wakes the dialer out of its back-off: the peer just connected to
    /// us, so it is back, and our link to it should be too.
    redial: Notify,
}

/// Bytes a message holds (its key and value, plus a fixed overhead).
fn message_bytes(envelope: &Envelope) -> usize {
    envelope.message.payload_bytes() + MESSAGE_OVERHEAD_BYTES
}

impl PeerLink {
    /// A link to `id` at `addr`, down until its dialer connects: at most
    /// `queue_bytes_max` bytes of small messages and `bulk_bytes_max` of
    /// large ones wait for it.
    pub fn new(
        id: NodeId,
        addr: SocketAddr,
        queue_bytes_max: usize,
        bulk_bytes_max: usize,
    ) -> Self {
        Self {
            id,
            addr,
            queue: Mutex::new(LinkQueue::default()),
            notify: Notify::new(),
            up: AtomicBool::new(false),
            queue_bytes_max,
            bulk_bytes_max,
            redial: Notify::new(),
        }
    }

    /// Whether an authenticated connection to the peer is open.
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    /// Queues `envelope` for the peer. A message to a peer that is down is
    /// dropped. A large message that finds the bulk lane full is dropped
    /// alone (the coordinator's timeout and the other replicas cope, as
    /// with any lost message); the link stays. A small message that finds
    /// the control lane full means the peer takes nothing at all: the whole
    /// queue is dropped and so is the connection.
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
        if bytes >= PEER_BULK_MESSAGE_BYTES {
            if queue.bulk_bytes + bytes > self.bulk_bytes_max {
                inc(&metrics.peer_bulk_dropped);
                return;
            }
            queue.bulk_bytes += bytes;
            queue.bulk.push_back(envelope);
        } else if queue.control_bytes + bytes > self.queue_bytes_max {
            *queue = LinkQueue {
                overflowed: true,
                ..LinkQueue::default()
            };
            inc(&metrics.peer_messages_dropped);
        } else {
            queue.control_bytes += bytes;
            queue.control.push_back(envelope);
        }
        drop(queue);
        self.notify.notify_one();
    }

    /// Takes every small message and the next large one; `Err` if the
    /// control lane overflowed.
    fn take(&self) -> Result<Batch, ()> {
        let Ok(mut queue) = self.queue.lock() else {
            return Err(());
        };
        if queue.overflowed {
            return Err(());
        }
        queue.control_bytes = 0;
        let control = std::mem::take(&mut queue.control);
        let bulk = queue.bulk.pop_front();
        if let Some(envelope) = &bulk {
            queue.bulk_bytes -= message_bytes(envelope);
        }
        Ok(Batch {
            control,
            bulk,
            more: !queue.bulk.is_empty(),
        })
    }

    fn set_up(&self, up: bool) {
        if let Ok(mut queue) = self.queue.lock() {
            *queue = LinkQueue::default();
        }
        self.up.store(up, Ordering::Relaxed);
    }

    /// Whether the control lane overflowed since the writer last took from
    /// it.
    fn overflowed(&self) -> bool {
        self.queue.lock().map_or(true, |q| q.overflowed)
    }

    /// Bytes waiting to be sent, both lanes.
    pub fn queued_bytes(&self) -> usize {
        self.queue
            .lock()
            .map_or(0, |q| q.control_bytes + q.bulk_bytes)
    }

    /// Whether the bulk lane, with `pending` bytes about to enter it, is at
    /// least half full: new client writes of large values wait until it
    /// drains (back-pressure). A write admitted below half fits, so writes
    /// admitted this way are not dropped while the value limit is at most
    /// half the lane.
    pub fn bulk_congested(&self, pending: usize) -> bool {
        self.is_up()
            && self
                .queue
                .lock()
                .is_ok_and(|q| (q.bulk_bytes + pending) * 2 >= self.bulk_bytes_max)
    }
}

/// Counts refused peer connections and says which to log: the first few in
/// each window, then one summary, so that a stranger hammering the peer
/// port cannot flood the log.
#[derive(Debug, Default)]
pub struct RefusalLog {
    state: Mutex<(Option<std::time::Instant>, u64)>,
}

impl RefusalLog {
    /// Whether to log this refusal, and how many went unlogged before it.
    #[allow(clippy::disallowed_methods)] // log pacing only
    fn admit(&self) -> Option<u64> {
        let now = std::time::Instant::now();
        let Ok(mut state) = self.state.lock() else {
            return None;
        };
        let (window, count) = &mut *state;
        match window {
            Some(start) if now.duration_since(*start) < REFUSAL_LOG_WINDOW => {
                *count += 1;
                (*count <= REFUSALS_LOGGED_PER_WINDOW).then_some(0)
            }
            _ => {
                let unlogged = count.saturating_sub(REFUSALS_LOGGED_PER_WINDOW);
                *window = Some(now);
                *count = 1;
                Some(unlogged)
            }
        }
    }
}

/// Keeps one outgoing link connected until `stop` is raised.
pub async fn run_dialer(
    link: Arc<PeerLink>,
    keys: Arc<HandshakeKeys>,
    tls: TlsContext,
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
            let stream = TcpStream::connect(link.addr).await?;
            stream.set_nodelay(true)?;
            let mut stream: Box<dyn PeerStream> = match &tls.peer_connector {
                Some(connector) => Box::new(
                    connector
                        .connect(peer_server_name(link.addr), stream)
                        .await
                        .map_err(DialError::Tls)?,
                ),
                None => Box::new(stream),
            };
            let key = dial_handshake(&mut stream, &keys, link.id).await?;
            // TLS authenticates every byte; plaintext frames carry tags.
            let tags = tls.peer_connector.is_none().then(|| key.sealer());
            Ok::<_, DialError>((stream, tags))
        })
        .await;
        match attempt {
            Ok(Ok((stream, tags))) => {
                info!(peer = %link.id, addr = %link.addr, tls = tags.is_none(), "connected to peer");
                inc(&metrics.peer_connects);
                failures = 0;
                backoff = RECONNECT_BACKOFF_MIN;
                link.set_up(true);
                let reason = send_loop(&link, stream, tags, metrics, &mut stop).await;
                link.set_up(false);
                if *stop.borrow() {
                    return;
                }
                warn!(peer = %link.id, addr = %link.addr, %reason, "peer link down; reconnecting");
            }
            Ok(Err(DialError::Handshake(HandshakeError::Io))) => {
                failures += 1;
                if failures == 1 {
                    info!(peer = %link.id, addr = %link.addr, "peer unreachable; retrying with backoff");
                } else {
                    debug!(peer = %link.id, failures, "peer still unreachable");
                }
            }
            Ok(Err(error)) => {
                failures += 1;
                // A lasting misconfiguration: say so now and then, not at
                // every retry.
                if failures == 1 || failures % 30 == 0 {
                    warn!(peer = %link.id, addr = %link.addr, %error, failures, "peer refused the connection");
                }
            }
            Err(_) => {
                failures += 1;
                debug!(peer = %link.id, "peer handshake timed out");
            }
        }
        let jitter = crate::entropy::u64().unwrap_or(0) % (backoff.as_millis() as u64 / 2 + 1);
        let pause = backoff + Duration::from_millis(jitter);
        crate::select! {
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

/// Why a dial failed.
#[derive(Debug, thiserror::Error)]
enum DialError {
    #[error(transparent)]
    Handshake(#[from] HandshakeError),
    #[error("TLS: {0}")]
    Tls(std::io::Error),
}

impl From<std::io::Error> for DialError {
    fn from(_: std::io::Error) -> Self {
        Self::Handshake(HandshakeError::Io)
    }
}

/// Appends `envelope`'s frame (and its tag, on a plaintext link) to `buf`.
fn put_frame(buf: &mut Vec<u8>, envelope: &Envelope, tags: &mut Option<FrameTags>) {
    let frame = encode_frame(envelope);
    buf.extend_from_slice(&frame);
    if let Some(tags) = tags {
        buf.extend_from_slice(&tags.seal(&frame));
    }
}

/// Writes queued messages until the link fails; returns why it ended.
async fn send_loop(
    link: &PeerLink,
    stream: Box<dyn PeerStream>,
    mut tags: Option<FrameTags>,
    metrics: &Metrics,
    stop: &mut watch::Receiver<bool>,
) -> String {
    let (mut reader, mut writer) = tokio::io::split(stream);
    let mut probe = [0u8; 64];
    let mut buf = Vec::with_capacity(64 << 10);
    // A wake-up for new messages arrived while a write was in progress, or
    // large messages remain.
    let mut wake_pending = false;
    loop {
        if !wake_pending {
            crate::select! {
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
        if batch.control.is_empty() && batch.bulk.is_none() {
            continue;
        }
        wake_pending = batch.more;
        buf.clear();
        let frames = batch.control.len() + usize::from(batch.bulk.is_some());
        for envelope in batch.control.iter().chain(&batch.bulk) {
            put_frame(&mut buf, envelope, &mut tags);
        }
        drop(batch);
        {
            let write = async {
                writer.write_all(&buf).await?;
                writer.flush().await
            };
            let stall = tokio::time::sleep(PEER_WRITE_TIMEOUT);
            tokio::pin!(write, stall);
            loop {
                crate::select! {
                    written = &mut write => match written {
                        Ok(()) => {
                            crate::metrics::add(&metrics.peer_frames_sent, frames as u64);
                            break;
                        }
                        Err(e) => return format!("write failed: {e}"),
                    },
                    // More messages while the peer is not taking these: drop
                    // the link as soon as the control lane overflows, not only
                    // when the write times out.
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
        // A large frame's buffer is not kept for the small ones.
        if buf.capacity() > 1 << 20 {
            buf = Vec::with_capacity(64 << 10);
        }
    }
}

/// Accepts peer connections until `stop` is raised.
pub async fn run_acceptor(
    listener: TcpListener,
    keys: Arc<HandshakeKeys>,
    tls: TlsContext,
    shared: Arc<crate::driver::Shared>,
    inputs: mpsc::Sender<DriverInput>,
    mut stop: watch::Receiver<bool>,
) {
    let refusals = Arc::new(RefusalLog::default());
    loop {
        crate::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, remote)) => {
                    let _ = stream.set_nodelay(true);
                    tokio::spawn(serve_inbound(
                        stream,
                        remote,
                        keys.clone(),
                        tls.clone(),
                        refusals.clone(),
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

/// Logs a refused peer connection, within the refusal log's pace.
fn log_refusal(refusals: &RefusalLog, remote: SocketAddr, error: &dyn std::fmt::Display) {
    match refusals.admit() {
        Some(0) => warn!(%remote, %error, "refused a peer connection"),
        Some(unlogged) => warn!(
            %remote,
            %error,
            unlogged,
            "refused a peer connection (and more before it, counted in enigma_peer_handshakes_refused_total, not logged)"
        ),
        None => debug!(%remote, %error, "refused a peer connection"),
    }
}

#[allow(clippy::too_many_arguments)]
async fn serve_inbound(
    stream: TcpStream,
    remote: SocketAddr,
    keys: Arc<HandshakeKeys>,
    tls: TlsContext,
    refusals: Arc<RefusalLog>,
    shared: Arc<crate::driver::Shared>,
    inputs: mpsc::Sender<DriverInput>,
    mut stop: watch::Receiver<bool>,
) {
    let metrics = &shared.metrics;
    let handshake = tokio::time::timeout(HANDSHAKE_TIMEOUT, async {
        let mut stream: Box<dyn PeerStream> = match &tls.peer_acceptor {
            Some(acceptor) => Box::new(acceptor.accept(stream).await.map_err(DialError::Tls)?),
            None => Box::new(stream),
        };
        let accepted = accept_handshake(&mut stream, &keys).await?;
        Ok::<_, DialError>((stream, accepted))
    })
    .await;
    let (mut stream, accepted) = match handshake {
        Ok(Ok(done)) => done,
        Ok(Err(error)) => {
            inc(&metrics.peer_handshakes_refused);
            log_refusal(&refusals, remote, &error);
            return;
        }
        Err(_) => {
            inc(&metrics.peer_handshakes_refused);
            log_refusal(&refusals, remote, &"the handshake timed out");
            return;
        }
    };
    let from = accepted.from;
    // TLS authenticates every byte; plaintext frames carry tags.
    let mut tags = tls
        .peer_acceptor
        .is_none()
        .then(|| accepted.frame_key.opener());
    let tag_bytes = if tags.is_some() { FRAME_TAG_BYTES } else { 0 };
    inc(&metrics.peer_connects);
    debug!(peer = %from, %remote, "peer connected to us");
    if let Some(link) = shared.links.get(&from) {
        if !link.is_up() {
            link.redial.notify_one();
        }
    }
    let mut reader = FrameReader::new(tag_bytes);
    loop {
        loop {
            let raw = match reader.next_raw() {
                Ok(Some(raw)) => raw,
                Ok(None) => break,
                Err(error) => {
                    warn!(peer = %from, %remote, %error, "peer frame over the size limit; closing its connection");
                    return;
                }
            };
            if let Some(tags) = tags.as_mut() {
                if !tags.open(raw.frame, raw.trailer) {
                    inc(&metrics.peer_frames_rejected);
                    warn!(peer = %from, %remote, "peer frame failed authentication (changed, replayed or forged in transit); closing its connection");
                    return;
                }
            }
            match decode_frame(raw.frame) {
                Ok(Decoded::Frame { envelope, .. }) => {
                    inc(&metrics.peer_frames_received);
                    if inputs
                        .send(DriverInput::Peer { from, envelope })
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
                Ok(Decoded::Incomplete) => {
                    // The reader cut out a whole frame: the decoder cannot
                    // ask for more of it.
                    inc(&metrics.peer_frames_rejected);
                    warn!(peer = %from, %remote, "peer frame shorter than its header says; closing its connection");
                    return;
                }
                Err(error) => {
                    inc(&metrics.peer_frames_rejected);
                    warn!(peer = %from, %remote, %error, "undecodable frame from peer; closing its connection");
                    return;
                }
            }
        }
        crate::select! {
            read = stream.read_buf(reader.buffer()) => match read {
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

    fn read_message(key_bytes: usize) -> Envelope {
        Envelope {
            hlc: 1,
            message: Message::Read {
                op: enigma_cluster::OpId {
                    generation: 1,
                    seq: 1,
                },
                key: vec![0; key_bytes],
            },
        }
    }

    #[test]
    fn an_overflowing_control_lane_is_dropped_whole() {
        let link = PeerLink::new(NodeId(2), "127.0.0.1:1".parse().unwrap(), 200, 1 << 20);
        let metrics = Metrics::default();
        let envelope = read_message(50);
        link.push(envelope.clone(), &metrics);
        assert_eq!(link.queued_bytes(), 0, "a down link queues nothing");
        link.set_up(true);
        link.push(envelope.clone(), &metrics);
        assert_eq!(link.queued_bytes(), 50 + MESSAGE_OVERHEAD_BYTES);
        link.push(envelope.clone(), &metrics);
        assert_eq!(link.queued_bytes(), 0);
        assert!(link.take().is_err(), "the writer must drop the connection");
        link.set_up(true);
        link.push(envelope, &metrics);
        assert_eq!(link.take().map(|b| b.control.len()), Ok(1));
    }

    #[test]
    fn a_full_bulk_lane_drops_the_large_message_not_the_link() {
        let large = PEER_BULK_MESSAGE_BYTES;
        let bulk_max = 2 * (large + MESSAGE_OVERHEAD_BYTES);
        let link = PeerLink::new(NodeId(2), "127.0.0.1:1".parse().unwrap(), 1 << 10, bulk_max);
        let metrics = Metrics::default();
        link.set_up(true);
        assert!(!link.bulk_congested(0));
        assert!(
            link.bulk_congested(bulk_max / 2),
            "writes about to enter count"
        );
        link.push(read_message(large), &metrics);
        assert!(link.bulk_congested(0), "half full");
        link.push(read_message(large), &metrics);
        link.push(read_message(large), &metrics);
        assert_eq!(metrics.peer_bulk_dropped.load(Ordering::Relaxed), 1);
        link.push(read_message(10), &metrics);
        // Small messages all go first, large ones one per batch.
        let batch = link.take().unwrap();
        assert_eq!(batch.control.len(), 1);
        assert!(batch.bulk.is_some() && batch.more);
        let batch = link.take().unwrap();
        assert!(batch.bulk.is_some() && !batch.more);
        assert_eq!(link.queued_bytes(), 0);
    }

    #[test]
    fn refusals_are_logged_a_few_per_window_then_summarised() {
        let log = RefusalLog::default();
        let logged = (0..20).filter(|_| log.admit().is_some()).count() as u64;
        assert_eq!(logged, REFUSALS_LOGGED_PER_WINDOW);
    }
}
