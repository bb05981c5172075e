//! One client connection's state: authentication, consistency level,
//! protocol version, and the commands waiting for the node, in order.
//!
//! A session turns each request into a reply slot. Commands that need no
//! replica (PING, INFO, CONSISTENCY...) are answered at once; key commands
//! become one or more node requests and their slot waits until every part
//! is answered. Replies are written strictly in request order, as RESP
//! pipelining requires. No I/O here: the server feeds requests and node
//! replies in and takes bytes out.
//!
//! The file of each concept: this one holds the connection's state, the
//! order of its replies and its traffic with the node; [`immediate`] answers
//! the commands that need no replica; [`keys`] turns key commands into node
//! requests and their answers back into one reply.

mod immediate;
mod keys;
#[cfg(test)]
mod tests;

use std::collections::VecDeque;
use std::ops::Range;
use std::sync::Arc;
use std::time::Instant;

use enigma_cluster::{
    ClientOp, ClientRequest, ClientResponse, ConsistencyLevel, RequestId, Ring, SessionFloor,
    SessionFloors,
};

use crate::command::{self, Command};
use crate::driver::{request_id, NodeReply, Shared};
use crate::metrics::inc;
use crate::resp::{Protocol, Reply};
use keys::{Op, OpKind, Parts};

/// Node requests a parsed chunk starts with room for (a pipeline of 16 fits
/// without growing).
const OUTGOING_CAPACITY: usize = 16;

#[derive(Debug)]
enum SlotState {
    Ready(Reply),
    Waiting(Op),
}

#[derive(Debug)]
struct Slot {
    command: &'static str,
    level: Option<ConsistencyLevel>,
    protocol: Protocol,
    started: Instant,
    state: SlotState,
}

/// A request sent to the node and not yet answered: its reply slot, its
/// part of that slot, and whether it reads a value.
#[derive(Debug, Clone, Copy)]
struct Waiting {
    slot: u64,
    part: usize,
    read: bool,
    /// The ring token of the request's key: its reply's version raises
    /// the session's floor for that key.
    token: u64,
}

/// Bytes a reply holds until it is written, about as encoded.
fn reply_bytes(reply: &Reply) -> usize {
    match reply {
        Reply::Bulk(bytes) => bytes.len() + 16,
        Reply::Array(items) => 16 + items.iter().map(reply_bytes).sum::<usize>(),
        Reply::Map(pairs) => {
            16 + pairs
                .iter()
                .map(|(k, v)| reply_bytes(k) + reply_bytes(v))
                .sum::<usize>()
        }
        Reply::Simple(text) => text.len() + 8,
        Reply::Error(text) => text.len() + 8,
        _ => 16,
    }
}

/// A client connection's state. See the module documentation.
#[derive(Debug)]
pub struct Session {
    shared: Arc<Shared>,
    /// Connection number: the high half of every request id.
    conn: u64,
    /// Next request sequence number.
    next_seq: u32,
    /// Level of key commands without `AT`.
    level: ConsistencyLevel,
    /// Passed `AUTH` (or no password is required).
    authenticated: bool,
    /// RESP2 or RESP3, chosen by `HELLO`.
    protocol: Protocol,
    /// `CLIENT SETNAME`.
    name: Option<Vec<u8>>,
    /// Replies owed, in request order.
    slots: VecDeque<Slot>,
    /// Slot number of `slots[0]`.
    first_slot: u64,
    /// For each request sent and not yet answered, in sequence order from
    /// `waiting_first_seq`: its (slot number, part). Answered entries become
    /// `None` and are dropped from the front. (A window rather than a map:
    /// sequence numbers are handed out in order.)
    waiting: VecDeque<Option<Waiting>>,
    /// Sequence number of `waiting[0]`.
    waiting_first_seq: u32,
    /// Requests for the node, not yet sent.
    outgoing: Vec<(RequestId, ClientRequest)>,
    /// Requests handed out (queued in `outgoing` or sent) and not yet
    /// answered.
    unanswered: usize,
    /// Reads among `unanswered`: each may bring back a value.
    reads_in_flight: usize,
    /// Bytes of the replies that are ready and not yet written.
    ready_bytes: usize,
    /// `QUIT` was received: close once its reply is written.
    quit: bool,
    /// What this connection has seen, from its replies' versions: each
    /// request carries the floors (read-your-writes, monotonic reads and
    /// causal writes at every level; docs/SERVER.md).
    floors: SessionFloors,
    /// When the requests being parsed arrived (read once per chunk).
    arrived: Instant,
}

impl Session {
    /// A new session on connection `conn`.
    pub fn new(shared: Arc<Shared>, conn: u64) -> Self {
        let level = shared.config.default_consistency;
        let authenticated = shared.config.requirepass.is_none();
        Self {
            shared,
            conn,
            next_seq: 0,
            level,
            authenticated,
            protocol: Protocol::Resp2,
            name: None,
            slots: VecDeque::new(),
            first_slot: 0,
            waiting: VecDeque::new(),
            waiting_first_seq: 0,
            outgoing: Vec::with_capacity(OUTGOING_CAPACITY),
            unanswered: 0,
            reads_in_flight: 0,
            ready_bytes: 0,
            quit: false,
            floors: SessionFloors::new(),
            arrived: now(),
        }
    }

    /// Stamps the requests parsed from here on as arriving now: the start
    /// of their latency.
    pub fn arrival(&mut self) {
        self.arrived = now();
    }

    /// Commands received and not yet answered on the wire.
    pub fn outstanding(&self) -> usize {
        self.slots.len()
    }

    /// Whether the client said `QUIT`.
    pub fn quitting(&self) -> bool {
        self.quit
    }

    /// Reads sent to the node and not yet answered.
    pub fn reads_in_flight(&self) -> usize {
        self.reads_in_flight
    }

    /// Bytes of replies ready and not yet written.
    pub fn ready_bytes(&self) -> usize {
        self.ready_bytes
    }

    /// Whether a request waiting to be sent writes a value large enough to
    /// travel in the peers' bulk lane.
    pub fn outgoing_has_large_writes(&self) -> bool {
        self.outgoing
            .iter()
            .any(|(_, request)| crate::driver::large_write_bytes(request) > 0)
    }

    /// Requests the node should get now.
    #[cfg(test)]
    pub fn take_outgoing(&mut self) -> Vec<(RequestId, ClientRequest)> {
        self.drain_outgoing().collect()
    }

    /// Whether requests wait to be sent to the node.
    pub fn has_outgoing(&self) -> bool {
        !self.outgoing.is_empty()
    }

    /// Whether the requests waiting to be sent are all reads and are all
    /// this connection has in flight: they cannot overtake a write of its
    /// own, so they may be served ahead of the node task's next batch.
    pub fn only_fresh_reads_outgoing(&self) -> bool {
        self.unanswered == self.outgoing.len()
            && self
                .outgoing
                .iter()
                .all(|(_, request)| matches!(request.op, ClientOp::Get { .. }))
    }

    /// The requests waiting to be sent, for a caller that sends them.
    pub fn outgoing_mut(&mut self) -> &mut Vec<(RequestId, ClientRequest)> {
        &mut self.outgoing
    }

    /// Requests the node should get now, leaving the buffer for reuse.
    pub fn drain_outgoing(&mut self) -> std::vec::Drain<'_, (RequestId, ClientRequest)> {
        self.outgoing.drain(..)
    }

    /// Queues an error that ends the connection (protocol error, limit).
    pub fn push_fatal(&mut self, message: String) {
        self.push_ready("", None, Reply::error(message));
    }

    /// Encodes every reply that is ready, in order, into `out`, and records
    /// each in the metrics.
    pub fn write_ready(&mut self, out: &mut Vec<u8>) {
        if !matches!(
            self.slots.front(),
            Some(Slot {
                state: SlotState::Ready(_),
                ..
            })
        ) {
            return;
        }
        let now = now();
        while let Some(slot) = self.slots.front() {
            let SlotState::Ready(reply) = &slot.state else {
                break;
            };
            reply.encode_as(slot.protocol, out);
            self.ready_bytes -= reply_bytes(reply);
            let error = matches!(reply, Reply::Error(_));
            self.shared.metrics.record(
                slot.command,
                slot.level,
                now.saturating_duration_since(slot.started),
                error,
            );
            self.slots.pop_front();
            self.first_slot += 1;
        }
    }

    /// Takes in one request's arguments.
    #[cfg(test)]
    pub fn on_request(&mut self, args: Vec<Vec<u8>>) {
        self.on_command(command::parse(args));
    }

    /// Takes in one request whose arguments are at `args` in `buf` (see
    /// [`crate::resp::parse_request_ranges`]); copies only what it keeps.
    pub fn on_request_in(&mut self, buf: &[u8], args: &[Range<usize>]) {
        let arg = |i: usize| &buf[args[i].clone()];
        // The two commands that make most traffic, without the general
        // parser's copies of every argument.
        let command = match args.len() {
            2 if arg(0).eq_ignore_ascii_case(b"get") => Ok(Command::Get(arg(1).to_vec())),
            3 if arg(0).eq_ignore_ascii_case(b"set") => Ok(Command::Set {
                key: arg(1).to_vec(),
                value: arg(2).to_vec(),
            }),
            _ => command::parse(args.iter().map(|r| buf[r.clone()].to_vec()).collect()),
        };
        self.on_command(command);
    }

    fn on_command(&mut self, command: Result<Command, command::CommandError>) {
        let command = match command {
            Ok(command) => command,
            Err(e) => {
                inc(&self.shared.metrics.command_errors);
                return self.push_ready("", None, Reply::error(e.0));
            }
        };
        let name = command.name();
        if !self.authenticated
            && !matches!(
                command,
                Command::Auth { .. } | Command::Hello { .. } | Command::Quit
            )
        {
            return self.push_ready(name, None, Reply::error("NOAUTH Authentication required."));
        }
        match command {
            Command::At { level, command } => self.start_key_command(*command, level),
            Command::Repair => self.start_repair(),
            command if command.touches_keys() => {
                let level = self.level;
                self.start_key_command(command, level);
            }
            command => {
                let reply = self.answer_now(command);
                self.push_ready(name, None, reply);
            }
        }
    }

    /// Takes in replies from the node.
    pub fn on_replies(&mut self, replies: impl IntoIterator<Item = NodeReply>) {
        for (request, response, version) in replies {
            let Some(Waiting {
                slot: slot_no,
                part,
                token,
                ..
            }) = self.take_waiting(request)
            else {
                continue;
            };
            if let Some(version) = version {
                self.floors.observe_token(token, version);
            }
            if let ClientResponse::Value(Some(value)) = &response {
                self.shared.values.note(value.len());
            }
            let Some(index) = slot_no.checked_sub(self.first_slot) else {
                continue;
            };
            let Some(slot) = self.slots.get_mut(index as usize) else {
                continue;
            };
            let SlotState::Waiting(op) = &mut slot.state else {
                continue;
            };
            let Some(slot_part) = op.parts.get_mut(part) else {
                continue;
            };
            if slot_part.replace(response).is_none() {
                op.remaining -= 1;
            }
            if op.remaining == 0 {
                self.complete(slot_no);
            }
        }
    }

    /// Removes request `request` from the window of waiting requests.
    fn take_waiting(&mut self, request: RequestId) -> Option<Waiting> {
        if request.0 >> 32 != self.conn {
            return None;
        }
        let offset = (request.0 as u32).wrapping_sub(self.waiting_first_seq) as usize;
        let found = self.waiting.get_mut(offset)?.take();
        if let Some(waiting) = found {
            self.unanswered -= 1;
            if waiting.read {
                self.reads_in_flight -= 1;
            }
        }
        while let Some(None) = self.waiting.front() {
            self.waiting.pop_front();
            self.waiting_first_seq = self.waiting_first_seq.wrapping_add(1);
        }
        found
    }

    fn push_ready(&mut self, command: &'static str, level: Option<ConsistencyLevel>, reply: Reply) {
        self.ready_bytes += reply_bytes(&reply);
        self.slots.push_back(Slot {
            command,
            level,
            protocol: self.protocol,
            started: self.arrived,
            state: SlotState::Ready(reply),
        });
    }

    fn start_key_command(&mut self, command: Command, level: ConsistencyLevel) {
        let name = command.name();
        match self.plan(command, level) {
            Ok((kind, ops)) => {
                let slot_no = self.first_slot + self.slots.len() as u64;
                let parts = ops.len();
                self.slots.push_back(Slot {
                    command: name,
                    level: Some(level),
                    protocol: self.protocol,
                    started: self.arrived,
                    state: SlotState::Waiting(Op {
                        kind,
                        parts: match ops {
                            Parts::One(_) => Parts::One(None),
                            Parts::Many(_) => Parts::Many(vec![None; parts]),
                        },
                        remaining: parts,
                    }),
                });
                self.submit(slot_no, level, ops);
            }
            Err(reply) => self.push_ready(name, Some(level), reply),
        }
    }

    /// Asks the node for a full anti-entropy pass; the reply waits for it.
    fn start_repair(&mut self) {
        let slot_no = self.first_slot + self.slots.len() as u64;
        self.slots.push_back(Slot {
            command: "repair",
            level: None,
            protocol: self.protocol,
            started: self.arrived,
            state: SlotState::Waiting(Op {
                kind: OpKind::Repair,
                parts: Parts::One(None),
                remaining: 1,
            }),
        });
        // The level is not read for a repair pass.
        self.submit(slot_no, ConsistencyLevel::One, Parts::One(ClientOp::Repair));
    }

    fn submit(&mut self, slot_no: u64, level: ConsistencyLevel, ops: Parts<ClientOp>) {
        match ops {
            Parts::One(op) => self.submit_part(
                slot_no,
                0,
                ClientRequest {
                    op,
                    level,
                    session: SessionFloor::default(),
                },
            ),
            Parts::Many(ops) => {
                for (part, op) in ops.into_iter().enumerate() {
                    let session = SessionFloor::default();
                    self.submit_part(slot_no, part, ClientRequest { op, level, session });
                }
            }
        }
    }

    fn submit_part(&mut self, slot_no: u64, part: usize, mut request: ClientRequest) {
        if self.waiting.is_empty() {
            self.waiting_first_seq = self.next_seq;
        }
        let id = request_id(self.conn, self.next_seq);
        self.next_seq = self.next_seq.wrapping_add(1);
        let read = matches!(request.op, ClientOp::Get { .. });
        // What the connection saw before this request: a request sent
        // before an earlier one's reply came back (pipelined) is not
        // ordered after it.
        let token = Ring::token(request.op.key());
        request.session = self.floors.floor_of_token(token);
        self.waiting.push_back(Some(Waiting {
            slot: slot_no,
            part,
            read,
            token,
        }));
        self.outgoing.push((id, request));
        self.unanswered += 1;
        self.reads_in_flight += usize::from(read);
    }
}

fn ok() -> Reply {
    Reply::Simple("OK".into())
}

#[allow(clippy::disallowed_methods)] // request latency, a metric only
fn now() -> Instant {
    Instant::now()
}
