//! Client connections: accepting them (within `connections_max`, making
//! room by closing the connection idle longest), TLS, and serving one
//! connection: parsing requests into its [`Session`], handing them to the
//! node, writing replies in order, with every buffer bounded in bytes and
//! the idle, slow-request and slow-reader timeouts.
//!
//! Back-pressure rather than errors wherever a limit depends on timing
//! (`docs/SERVER.md`, "Limits"): at `pipeline_depth_max` commands owed, at
//! `reply_buffer_bytes_max` bytes of replies owed (reads in flight counted
//! at the largest value seen lately), or with all connections' buffers at
//! `client_buffers_bytes_max`, a connection stops reading until its client
//! takes its replies; large writes wait while a peer's bulk lane is
//! congested.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tracing::{debug, warn};

use crate::driver::{
    large_write_bytes, serve_reads_now, ClientInput, ConnSlot, Mailbox, ReadsNow, ReplyBatch,
    Shared,
};
use crate::metrics::inc;
use crate::resp::parse_request_ranges;
use crate::session::Session;

/// Decrements the connection count when a connection task ends.
struct ConnectionGuard(Arc<Shared>);

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.0.connections.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Room a connection's buffers start with, and keep while idle.
const BUFFER_BYTES_MIN: usize = 16 << 10;
/// A buffer larger than this is given back once it is empty.
const BUFFER_BYTES_KEEP: usize = 64 << 10;
/// Room a read needs in the query buffer before the buffer grows.
const READ_ROOM_MIN: usize = 4 << 10;
/// A client that takes none of its replies for this long is disconnected:
/// the memory they hold is given back.
const REPLY_WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// How often a connection holding a large write looks again whether the
/// peers' bulk lanes have room.
const BULK_HOLD_POLL: Duration = Duration::from_millis(10);

/// Milliseconds since the node started.
fn node_millis(shared: &Shared) -> u64 {
    u64::try_from(shared.started.elapsed().as_millis()).unwrap_or(u64::MAX - 1)
}

#[allow(clippy::disallowed_methods)] // connection deadlines, in the driver
fn instant_now() -> Instant {
    Instant::now()
}

/// Closes the connection idle longest, if it has been idle at least
/// `idle_eviction_ms`, to make room for a new one. Returns whether it did.
fn evict_idlest(shared: &Shared) -> bool {
    let eviction_ms = shared.config.idle_eviction_ms;
    if eviction_ms == 0 {
        return false;
    }
    let now_ms = node_millis(shared);
    let slots = shared
        .conn_slots
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let idlest = slots
        .values()
        .filter(|slot| slot.idle_since_ms.load(Ordering::Relaxed) != u64::MAX)
        .min_by_key(|slot| slot.idle_since_ms.load(Ordering::Relaxed));
    match idlest {
        Some(slot)
            if now_ms.saturating_sub(slot.idle_since_ms.load(Ordering::Relaxed)) >= eviction_ms =>
        {
            slot.evict();
            true
        }
        _ => false,
    }
}

pub(crate) async fn run_client_listener(
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        crate::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, remote)) => {
                    let _ = stream.set_nodelay(true);
                    let open = shared.connections.fetch_add(1, Ordering::Relaxed);
                    let guard = ConnectionGuard(shared.clone());
                    if open >= shared.config.limits.connections_max {
                        if evict_idlest(&shared) {
                            inc(&shared.metrics.idle_evictions);
                            debug!(%remote, "closed the connection idle longest to admit a new one at connections_max");
                        } else {
                            inc(&shared.metrics.connections_rejected);
                            tokio::spawn(async move {
                                let (mut reader, mut writer) = tokio::io::split(stream);
                                let _ = writer.write_all(b"-ERR max number of clients reached (connections_max)\r\n").await;
                                linger_close(&mut reader, &mut writer).await;
                                drop(guard);
                            });
                            continue;
                        }
                    }
                    inc(&shared.metrics.connections_accepted);
                    tokio::spawn(start_client(stream, remote, tls.clone(), shared.clone(), stop.clone(), guard));
                }
                Err(e) => {
                    // Out of file descriptors, usually: wait instead of spinning.
                    warn!(error = %e, "client accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            _ = stop.changed() => return,
        }
    }
}

/// Runs the TLS handshake if clients speak TLS, then serves the connection.
async fn start_client(
    stream: TcpStream,
    remote: SocketAddr,
    tls: Option<tokio_rustls::TlsAcceptor>,
    shared: Arc<Shared>,
    stop: watch::Receiver<bool>,
    guard: ConnectionGuard,
) {
    let Some(acceptor) = tls else {
        let (reader, writer) = tokio::io::split(stream);
        return serve_client(reader, writer, remote, shared, stop, guard).await;
    };
    // A handshake is a request: it gets the same time limit.
    let limit = Duration::from_millis(shared.config.request_read_timeout_ms);
    match tokio::time::timeout(limit, acceptor.accept(stream)).await {
        Ok(Ok(stream)) => {
            let (reader, writer) = tokio::io::split(stream);
            serve_client(reader, writer, remote, shared, stop, guard).await;
        }
        Ok(Err(error)) => {
            inc(&shared.metrics.tls_handshake_failures);
            debug!(%remote, %error, "client TLS handshake failed");
        }
        Err(_) => {
            inc(&shared.metrics.tls_handshake_failures);
            debug!(%remote, "client TLS handshake timed out");
        }
    }
}

/// This connection's share of [`Shared::client_bytes`], given back when the
/// connection ends.
struct Charge {
    shared: Arc<Shared>,
    bytes: usize,
}

impl Charge {
    fn set(&mut self, bytes: usize) {
        if bytes > self.bytes {
            self.shared
                .client_bytes
                .fetch_add(bytes - self.bytes, Ordering::Relaxed);
        } else if bytes < self.bytes {
            self.shared
                .client_bytes
                .fetch_sub(self.bytes - bytes, Ordering::Relaxed);
        }
        self.bytes = bytes;
    }
}

impl Drop for Charge {
    fn drop(&mut self) {
        self.set(0);
    }
}

/// Bytes a connection holds or may soon hold for replies: encoded and
/// unwritten, ready and waiting for earlier ones, and its reads in flight
/// counted at the largest value seen lately.
fn reply_bytes_held(session: &Session, out: &[u8], shared: &Shared) -> usize {
    out.len() + session.ready_bytes() + session.reads_in_flight() * shared.values.largest()
}

/// Whether a connection that has replies owed must stop taking commands:
/// its replies reached `reply_buffer_bytes_max`, or all connections' buffers
/// reached `client_buffers_bytes_max`.
fn over_reply_budget(session: &Session, out: &[u8], shared: &Shared) -> bool {
    let limits = &shared.config.limits;
    reply_bytes_held(session, out, shared) >= limits.reply_buffer_bytes_max
        || shared.client_bytes.load(Ordering::Relaxed) > limits.client_buffers_bytes_max
}

/// Whether a peer's bulk lane is congested, counting the large writes
/// handed to the node task and not yet sent: large writes wait.
fn peers_bulk_congested(shared: &Shared) -> bool {
    let pending = shared.bulk_pending.load(Ordering::Relaxed);
    shared
        .links
        .values()
        .any(|link| link.bulk_congested(pending))
}

#[allow(clippy::too_many_lines)]
async fn serve_client<R, W>(
    mut reader: R,
    mut writer: W,
    remote: SocketAddr,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
    _guard: ConnectionGuard,
) where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let conn = shared.next_conn.fetch_add(1, Ordering::Relaxed);
    let mailbox = Arc::new(Mailbox::default());
    if !shared.clients.push([ClientInput::Register {
        conn,
        mailbox: mailbox.clone(),
    }]) {
        return;
    }
    let slot = Arc::new(ConnSlot::new(mailbox.clone(), node_millis(&shared)));
    shared
        .conn_slots
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .insert(conn, slot.clone());
    let limits = shared.config.limits.clone();
    let resp_limits = limits.resp();
    let idle_timeout = (shared.config.idle_timeout_secs > 0)
        .then(|| Duration::from_secs(shared.config.idle_timeout_secs));
    let read_timeout = Duration::from_millis(shared.config.request_read_timeout_ms);
    let mut session = Session::new(shared.clone(), conn);
    let mut buf: Vec<u8> = Vec::with_capacity(BUFFER_BYTES_MIN);
    let mut out: Vec<u8> = Vec::with_capacity(BUFFER_BYTES_MIN);
    let mut charge = Charge {
        shared: shared.clone(),
        bytes: 0,
    };
    let mut inbox: ReplyBatch = Vec::new();
    // Where the arguments of the request being parsed are in `buf`.
    let mut args = Vec::new();
    // Still taking new commands: false after a stop or a protocol error.
    let mut accepting = !*stop.borrow();
    // Resolves once, when the node starts to stop (one future for the whole
    // connection, not one per wait).
    let mut stopping = std::pin::pin!(async move {
        let _ = stop.changed().await;
    });
    // The client closed its side: what is buffered is all there will be.
    let mut eof = false;
    // A protocol error or limit ends the connection with unread input.
    let mut refused = false;
    // When the request being received began to arrive.
    let mut partial_since: Option<Instant> = None;
    // When the client last sent or was sent anything.
    let mut last_active = instant_now();
    // Whether `slot` says idle.
    let mut was_idle = true;
    // One timer for the request-read and idle deadlines: re-armed only when
    // a deadline comes earlier than the one armed; when it fires, the real
    // deadlines are checked and it is armed again if none has passed.
    let timer = tokio::time::sleep(Duration::ZERO);
    tokio::pin!(timer);
    let mut timer_at: Option<Instant> = None;
    // Large writes are held while a peer's bulk lane is congested.
    let mut holding_writes = false;
    let hold = tokio::time::sleep(Duration::ZERO);
    tokio::pin!(hold);
    loop {
        let mut consumed = 0;
        // Complete requests left in the buffer because the pipeline is full
        // or the replies owed are too large.
        let mut held_back = false;
        // The buffer ends in part of a request.
        let mut incomplete = false;
        if !buf.is_empty() {
            session.arrival();
        }
        while accepting && !session.quitting() {
            if holding_writes
                || session.outstanding() >= limits.pipeline_depth_max
                || (session.outstanding() > 0 && over_reply_budget(&session, &out, &shared))
            {
                held_back = consumed < buf.len();
                break;
            }
            match parse_request_ranges(&buf[consumed..], &resp_limits, &mut args) {
                Ok(Some(used)) => {
                    if !args.is_empty() {
                        session.on_request_in(&buf[consumed..], &args);
                    }
                    consumed += used;
                }
                Ok(None) => {
                    let pending = buf.len() - consumed;
                    incomplete = pending > 0;
                    if pending > limits.query_buffer_bytes_max {
                        inc(&shared.metrics.protocol_errors);
                        debug!(%remote, pending, "client request over query_buffer_bytes_max; closing");
                        session.push_fatal(format!(
                            "ERR Protocol error: request of more than query_buffer_bytes_max ({}) bytes",
                            limits.query_buffer_bytes_max
                        ));
                        accepting = false;
                        refused = true;
                    }
                    break;
                }
                Err(e) => {
                    inc(&shared.metrics.protocol_errors);
                    debug!(%remote, error = %e, "client protocol error; closing");
                    session.push_fatal(format!("ERR {e}"));
                    accepting = false;
                    refused = true;
                }
            }
        }
        if held_back && !holding_writes && session.outstanding() < limits.pipeline_depth_max {
            inc(&shared.metrics.reply_stalls);
        }
        if accepting {
            buf.drain(..consumed);
            if buf.is_empty() && buf.capacity() > BUFFER_BYTES_KEEP {
                buf = Vec::with_capacity(BUFFER_BYTES_MIN);
            }
        } else {
            buf = Vec::new();
        }
        if incomplete && accepting {
            partial_since.get_or_insert_with(instant_now);
        } else {
            partial_since = None;
        }
        if session.has_outgoing() {
            if session.outgoing_has_large_writes() && peers_bulk_congested(&shared) {
                if !holding_writes {
                    inc(&shared.metrics.bulk_write_stalls);
                    holding_writes = true;
                }
                hold.as_mut()
                    .reset(tokio::time::Instant::now() + BULK_HOLD_POLL);
            } else {
                holding_writes = false;
                // Reads with nothing of this connection's still in flight
                // are served right here when the node has nothing to sync.
                let served = if session.only_fresh_reads_outgoing() {
                    serve_reads_now(&shared, conn, session.outgoing_mut(), &mut inbox)
                } else {
                    ReadsNow::Queue
                };
                match served {
                    ReadsNow::Served => session.on_replies(inbox.drain(..)),
                    ReadsNow::Queue => {
                        let large: usize = session
                            .outgoing_mut()
                            .iter()
                            .map(|(_, body)| large_write_bytes(body))
                            .sum();
                        shared.bulk_pending.fetch_add(large, Ordering::Relaxed);
                        if !shared.clients.push(
                            session
                                .drain_outgoing()
                                .map(|(request, body)| ClientInput::Request { request, body }),
                        ) {
                            break;
                        }
                    }
                    ReadsNow::NodeGone => break,
                }
            }
        } else {
            holding_writes = false;
        }
        session.write_ready(&mut out);
        if !out.is_empty() {
            let write = async {
                writer.write_all(&out).await?;
                writer.flush().await
            };
            match tokio::time::timeout(REPLY_WRITE_TIMEOUT, write).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => break,
                Err(_) => {
                    inc(&shared.metrics.reply_write_timeouts);
                    debug!(%remote, "client read none of its replies for the reply write timeout; closing");
                    break;
                }
            }
            out.clear();
            last_active = instant_now();
            if out.capacity() > BUFFER_BYTES_KEEP {
                out = Vec::with_capacity(BUFFER_BYTES_MIN);
            }
        }
        if held_back
            && !holding_writes
            && session.outstanding() < limits.pipeline_depth_max
            && !(session.outstanding() > 0 && over_reply_budget(&session, &out, &shared))
        {
            // Replies drained: parse the requests already buffered.
            continue;
        }
        let input_done = !accepting || session.quitting() || (eof && !held_back);
        if input_done && session.outstanding() == 0 {
            break;
        }
        let mut can_read = !input_done
            && !eof
            && !held_back
            && !holding_writes
            && session.outstanding() < limits.pipeline_depth_max;
        if !input_done && session.outstanding() >= limits.pipeline_depth_max {
            // Back-pressure: the client has pipeline_depth_max commands
            // waiting; its next ones stay unread until replies drain.
            inc(&shared.metrics.pipeline_stalls);
        }
        if can_read && buf.capacity() - buf.len() < READ_ROOM_MIN {
            // What `reserve` will make of the buffer: about twice its size.
            let growth = buf.capacity().max(BUFFER_BYTES_MIN);
            let spent = shared.client_bytes.load(Ordering::Relaxed) + growth
                > limits.client_buffers_bytes_max;
            if buf.capacity() >= BUFFER_BYTES_KEEP && spent {
                if session.outstanding() > 0 {
                    // Replies owed will free room; read when they are out.
                    can_read = false;
                    inc(&shared.metrics.reply_stalls);
                } else {
                    inc(&shared.metrics.client_buffer_refusals);
                    debug!(%remote, "client request refused: client_buffers_bytes_max reached");
                    session.push_fatal(format!(
                        "ERR client buffers of this node are full (client_buffers_bytes_max, {} bytes); retry later",
                        limits.client_buffers_bytes_max
                    ));
                    accepting = false;
                    refused = true;
                    continue;
                }
            } else {
                buf.reserve(BUFFER_BYTES_MIN);
            }
        }
        charge.set(buf.capacity() + out.capacity() + reply_bytes_held(&session, &out, &shared));
        let idle = session.outstanding() == 0 && buf.is_empty() && !holding_writes;
        if idle != was_idle {
            slot.idle_since_ms.store(
                if idle { node_millis(&shared) } else { u64::MAX },
                Ordering::Relaxed,
            );
            was_idle = idle;
        }
        let deadline = match (partial_since, idle_timeout) {
            (Some(since), _) => Some(since + read_timeout),
            (None, Some(idle_for)) if idle => Some(last_active + idle_for),
            _ => None,
        };
        match deadline {
            Some(at) if timer_at.is_none_or(|armed| at < armed) => {
                timer.as_mut().reset(at.into());
                timer_at = Some(at);
            }
            None => timer_at = None,
            Some(_) => {}
        }
        tokio::select! {
            biased;
            () = mailbox.ready() => {
                mailbox.take(&mut inbox);
                session.on_replies(inbox.drain(..));
                // The node thread is gone: nothing more will be answered.
                if mailbox.is_closed() {
                    break;
                }
                if slot.is_evicted() {
                    debug!(%remote, "closed: idle longest when a new connection needed room");
                    break;
                }
            },
            read = reader.read_buf(&mut buf), if can_read => match read {
                // End of input: answer what was asked, then close.
                Ok(0) => eof = true,
                Ok(_) => last_active = instant_now(),
                Err(_) => break,
            },
            () = &mut stopping, if accepting => accepting = false,
            () = &mut timer, if timer_at.is_some() => {
                timer_at = None;
                let now = instant_now();
                if partial_since.is_some_and(|since| now >= since + read_timeout) {
                    inc(&shared.metrics.request_read_timeouts);
                    debug!(%remote, "client request not complete within request_read_timeout_ms; closing");
                    session.push_fatal(format!(
                        "ERR Protocol error: request not complete within request_read_timeout_ms ({} ms)",
                        shared.config.request_read_timeout_ms
                    ));
                    accepting = false;
                    refused = true;
                } else if idle && idle_timeout.is_some_and(|idle_for| now >= last_active + idle_for) {
                    inc(&shared.metrics.idle_timeouts);
                    debug!(%remote, "client idle longer than the timeout; closing");
                    break;
                }
            }
            () = &mut hold, if holding_writes => {}
        }
    }
    if refused && !eof {
        linger_close(&mut reader, &mut writer).await;
    } else {
        let _ = writer.shutdown().await;
    }
    shared
        .conn_slots
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .remove(&conn);
    shared.clients.push([ClientInput::Deregister { conn }]);
}

/// Most bytes read and discarded while closing a connection.
const LINGER_BYTES_MAX: usize = 1 << 20;
/// Longest wait for the client to close its side.
const LINGER_TIME: Duration = Duration::from_millis(500);

/// Closes our side, then reads and discards what the client still sends
/// for a moment. Closing a socket with unread input makes the kernel send
/// a reset, which can destroy the error reply we just wrote before the
/// client reads it.
async fn linger_close<R, W>(reader: &mut R, writer: &mut W)
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let _ = writer.shutdown().await;
    let _ = tokio::time::timeout(LINGER_TIME, async {
        let mut scratch = [0u8; 4096];
        let mut total = 0;
        while total < LINGER_BYTES_MAX {
            match reader.read(&mut scratch).await {
                Ok(0) | Err(_) => break,
                Ok(n) => total += n,
            }
        }
    })
    .await;
}
