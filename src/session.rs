//! One client connection's state: authentication, consistency level,
//! protocol version, and the commands waiting for the node, in order.
//!
//! A session turns each request into a reply slot. Commands that need no
//! replica (PING, INFO, CONSISTENCY...) are answered at once; key commands
//! become one or more node requests and their slot waits until every part
//! is answered. Replies are written strictly in request order, as RESP
//! pipelining requires. No I/O here: the server feeds requests and node
//! replies in and takes bytes out.

use std::collections::VecDeque;
use std::ops::Range;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use enigma_cluster::{
    ClientError, ClientOp, ClientRequest, ClientResponse, ConsistencyLevel, RequestId, SessionFloor,
};
use tracing::debug;

use crate::command::{self, ClientQuery, Command, CommandQuery, COMMAND_TABLE};
use crate::driver::{request_id, Shared};
use crate::metrics::inc;
use crate::resp::{Protocol, Reply};

/// Node requests a parsed chunk starts with room for (a pipeline of 16 fits
/// without growing).
const OUTGOING_CAPACITY: usize = 16;

/// What a key command waits for, and how its parts become one reply.
#[derive(Debug)]
enum OpKind {
    Get,
    Set,
    MGet,
    MSet,
    Exists,
    /// DEL of `keys` keys: a read of each key, then its delete, sent in
    /// that order in one batch. Every replica handles a coordinator's
    /// messages in order, so each read sees the key as it was just before
    /// the delete: the reply counts the keys that existed.
    Del {
        keys: usize,
    },
    /// An operator's full anti-entropy pass (`REPAIR`).
    Repair,
    /// A conditional command at `SERIAL` (one part).
    Conditional(Box<crate::conditional::Conditional>),
}

#[derive(Debug)]
struct Op {
    kind: OpKind,
    parts: Parts<Option<ClientResponse>>,
    remaining: usize,
}

/// One item inline (a GET or SET: no allocation), or several.
#[derive(Debug)]
enum Parts<T> {
    One(T),
    Many(Vec<T>),
}

impl<T> Parts<T> {
    fn len(&self) -> usize {
        match self {
            Self::One(_) => 1,
            Self::Many(items) => items.len(),
        }
    }

    fn get_mut(&mut self, index: usize) -> Option<&mut T> {
        match self {
            Self::One(item) => (index == 0).then_some(item),
            Self::Many(items) => items.get_mut(index),
        }
    }

    fn into_vec(self) -> Vec<T> {
        match self {
            Self::One(item) => vec![item],
            Self::Many(items) => items,
        }
    }
}

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
    pub fn on_replies(&mut self, replies: impl IntoIterator<Item = (RequestId, ClientResponse)>) {
        for (request, response) in replies {
            let Some(Waiting {
                slot: slot_no,
                part,
                ..
            }) = self.take_waiting(request)
            else {
                continue;
            };
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

    fn answer_now(&mut self, command: Command) -> Reply {
        match command {
            Command::Ping(None) => Reply::Simple("PONG".into()),
            Command::Ping(Some(message)) | Command::Echo(message) => Reply::Bulk(message),
            Command::Quit => {
                self.quit = true;
                ok()
            }
            Command::Consistency(None) => Reply::Simple(self.level.name().into()),
            Command::Consistency(Some(level)) => match self.check_level(level) {
                Ok(_) => {
                    self.level = level;
                    ok()
                }
                Err(reply) => reply,
            },
            Command::Info(section) => {
                Reply::Bulk(crate::info::info(&self.shared, section.as_deref()).into_bytes())
            }
            Command::Command(query) => command_reply(&query),
            Command::Auth { username, password } => self.auth(username.as_deref(), &password),
            Command::Hello {
                protocol,
                auth,
                name,
            } => self.hello(protocol, auth, name),
            Command::Client(query) => self.client(query),
            Command::DbSize => {
                Reply::Integer(self.shared.snapshot().keys_estimate.unwrap_or(0) as i64)
            }
            Command::At { .. }
            | Command::Get(_)
            | Command::Set { .. }
            | Command::Del(_)
            | Command::Exists(_)
            | Command::MGet(_)
            | Command::MSet(_)
            | Command::Conditional(_)
            | Command::Repair => unreachable!("key commands and REPAIR are started, not answered"),
        }
    }

    fn auth(&mut self, username: Option<&[u8]>, password: &[u8]) -> Reply {
        let Some(required) = &self.shared.config.requirepass else {
            return Reply::error(
                "ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?",
            );
        };
        let user_ok = username.is_none_or(|u| u == b"default");
        if user_ok && constant_time_eq(required.expose().as_bytes(), password) {
            self.authenticated = true;
            ok()
        } else {
            Reply::error("WRONGPASS invalid username-password pair or user is disabled.")
        }
    }

    fn hello(
        &mut self,
        protocol: Option<u8>,
        auth: Option<(Vec<u8>, Vec<u8>)>,
        name: Option<Vec<u8>>,
    ) -> Reply {
        let protocol = match protocol {
            None => self.protocol,
            Some(2) => Protocol::Resp2,
            Some(3) => Protocol::Resp3,
            Some(_) => return Reply::error("NOPROTO unsupported protocol version"),
        };
        if let Some((user, password)) = auth {
            let reply = self.auth(Some(&user), &password);
            if matches!(reply, Reply::Error(_)) {
                return reply;
            }
        }
        if !self.authenticated {
            return Reply::error(
                "NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO <proto> AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol version at the same time",
            );
        }
        self.protocol = protocol;
        if name.is_some() {
            self.name = name;
        }
        let text = |s: &str| Reply::Bulk(s.as_bytes().to_vec());
        Reply::Map(vec![
            (text("server"), text("enigma")),
            (text("version"), text(env!("CARGO_PKG_VERSION"))),
            (
                text("proto"),
                Reply::Integer(if protocol == Protocol::Resp3 { 3 } else { 2 }),
            ),
            (text("id"), Reply::Integer(self.conn as i64)),
            (text("mode"), text("standalone")),
            (text("role"), text("master")),
            (text("modules"), Reply::Array(Vec::new())),
        ])
    }

    fn client(&mut self, query: ClientQuery) -> Reply {
        match query {
            ClientQuery::SetName(name) => {
                if name.iter().any(|b| b.is_ascii_whitespace()) {
                    return Reply::error(
                        "ERR Client names cannot contain spaces, newlines or special characters.",
                    );
                }
                self.name = (!name.is_empty()).then_some(name);
                ok()
            }
            ClientQuery::GetName => self.name.clone().map_or(Reply::Null, Reply::Bulk),
            ClientQuery::Id => Reply::Integer(self.conn as i64),
            ClientQuery::SetInfo { attribute, value } => {
                debug!(conn = self.conn, %attribute, value = %String::from_utf8_lossy(&value), "client library");
                ok()
            }
        }
    }

    /// Replicas the level needs at this replication factor, or the error.
    fn check_level(&self, level: ConsistencyLevel) -> Result<usize, Reply> {
        let rf = self.shared.ring.replication_factor();
        level.replicas_required(rf).ok_or_else(|| {
            Reply::error(format!(
                "ERR consistency level {level} needs more replicas than the replication factor of {rf}"
            ))
        })
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

    fn submit_part(&mut self, slot_no: u64, part: usize, request: ClientRequest) {
        if self.waiting.is_empty() {
            self.waiting_first_seq = self.next_seq;
        }
        let id = request_id(self.conn, self.next_seq);
        self.next_seq = self.next_seq.wrapping_add(1);
        let read = matches!(request.op, ClientOp::Get { .. });
        self.waiting.push_back(Some(Waiting {
            slot: slot_no,
            part,
            read,
        }));
        self.outgoing.push((id, request));
        self.unanswered += 1;
        self.reads_in_flight += usize::from(read);
    }

    /// Checks a key command against the limits and the reachable replicas
    /// and turns it into node operations. Nothing is sent if any check fails.
    fn plan(
        &self,
        command: Command,
        level: ConsistencyLevel,
    ) -> Result<(OpKind, Parts<ClientOp>), Reply> {
        let required = self.check_level(level)?;
        let limits = &self.shared.config.limits;
        // Placement matters only when some peer is held down. A node whose
        // clock is out of bounds answers writes itself, with CLOCK.
        let writes = matches!(
            command,
            Command::Set { .. } | Command::Del(_) | Command::MSet(_)
        );
        let all_up = (writes && self.shared.clock_refuses_writes.load(Ordering::Relaxed))
            || self.shared.links.keys().all(|&n| self.shared.is_up(n));
        let check_key = |key: &[u8]| -> Result<(), Reply> {
            if key.len() > limits.key_bytes_max {
                return Err(Reply::error(format!(
                    "ERR key of {} bytes exceeds key_bytes_max ({})",
                    key.len(),
                    limits.key_bytes_max
                )));
            }
            if all_up {
                return Ok(());
            }
            let replicas = self.shared.ring.replicas(key);
            let up = replicas.iter().filter(|&&r| self.shared.is_up(r)).count();
            if up < required {
                return Err(Reply::error(format!(
                    "UNAVAILABLE consistency level {level} needs {required} of the {} replicas of this key, {up} reachable; nothing was applied",
                    replicas.len()
                )));
            }
            Ok(())
        };
        let check_value = |value: &[u8]| -> Result<(), Reply> {
            if value.len() > limits.value_bytes_max {
                return Err(Reply::error(format!(
                    "ERR value of {} bytes exceeds value_bytes_max ({})",
                    value.len(),
                    limits.value_bytes_max
                )));
            }
            Ok(())
        };
        let gets = |keys: Vec<Vec<u8>>| -> Result<Vec<ClientOp>, Reply> {
            keys.into_iter()
                .map(|key| check_key(&key).map(|()| ClientOp::Get { key }))
                .collect()
        };
        match command {
            Command::Get(key) => {
                check_key(&key)?;
                Ok((OpKind::Get, Parts::One(ClientOp::Get { key })))
            }
            Command::Set { key, value } => {
                check_key(&key)?;
                check_value(&value)?;
                self.shared.values.note(value.len());
                Ok((OpKind::Set, Parts::One(ClientOp::Put { key, value })))
            }
            Command::Conditional(c) => {
                let op = c.plan(level, &check_key, &check_value)?;
                Ok((OpKind::Conditional(Box::new(c)), Parts::One(op)))
            }
            Command::MGet(keys) => Ok((OpKind::MGet, Parts::Many(gets(keys)?))),
            Command::Exists(keys) => Ok((OpKind::Exists, Parts::Many(gets(keys)?))),
            Command::Del(keys) => {
                let count = keys.len();
                let mut ops = gets(keys.clone())?;
                ops.extend(keys.into_iter().map(|key| ClientOp::Delete { key }));
                Ok((OpKind::Del { keys: count }, Parts::Many(ops)))
            }
            Command::MSet(pairs) => {
                let mut ops = Vec::with_capacity(pairs.len());
                for (key, value) in pairs {
                    check_key(&key)?;
                    check_value(&value)?;
                    self.shared.values.note(value.len());
                    ops.push(ClientOp::Put { key, value });
                }
                Ok((OpKind::MSet, Parts::Many(ops)))
            }
            other => Err(Reply::error(format!(
                "ERR '{}' does not read or write keys",
                other.name()
            ))),
        }
    }

    /// Every part of slot `slot_no` is answered: make its reply, or start
    /// its next phase.
    fn complete(&mut self, slot_no: u64) {
        let index = (slot_no - self.first_slot) as usize;
        let SlotState::Waiting(op) = &mut self.slots[index].state else {
            return;
        };
        if let (
            Parts::One(part),
            OpKind::Get | OpKind::Set | OpKind::Repair | OpKind::Conditional(_),
        ) = (&mut op.parts, &op.kind)
        {
            // One key, one part: no collecting.
            let response = part.take().expect("every part answered");
            let reply = match (response, &op.kind) {
                (response, OpKind::Conditional(c)) => c.answer(response, |e| error_reply(e, true)),
                (ClientResponse::Repaired(report), _) => Reply::Bulk(
                    format!(
                        "ranges_compared:{}\r\nranges_failed:{}\r\nkeys_exchanged:{}\r\nmillis:{}\r\n",
                        report.ranges_compared,
                        report.ranges_failed,
                        report.keys_exchanged,
                        report.nanos / 1_000_000
                    )
                    .into_bytes(),
                ),
                (ClientResponse::Error(e), kind) => error_reply(&e, matches!(kind, OpKind::Set)),
                (ClientResponse::Value(value), OpKind::Get) => {
                    value.map_or(Reply::Null, Reply::Bulk)
                }
                (_, OpKind::Get) => Reply::Null,
                (_, _) => ok(),
            };
            self.ready_bytes += reply_bytes(&reply);
            self.slots[index].state = SlotState::Ready(reply);
            return;
        }
        let parts: Vec<ClientResponse> = std::mem::replace(&mut op.parts, Parts::Many(Vec::new()))
            .into_vec()
            .into_iter()
            .map(|p| p.expect("every part answered"))
            .collect();
        let first_error = parts.iter().find_map(|p| match p {
            ClientResponse::Error(e) => Some(e.clone()),
            _ => None,
        });
        let writes = matches!(op.kind, OpKind::Set | OpKind::MSet | OpKind::Del { .. });
        let found = |parts: &[ClientResponse]| {
            parts
                .iter()
                .filter(|p| matches!(p, ClientResponse::Value(Some(_))))
                .count() as i64
        };
        // Values move into the reply: no copy of what was read.
        let values = |parts: Vec<ClientResponse>| {
            parts.into_iter().map(|p| match p {
                ClientResponse::Value(v) => v,
                _ => None,
            })
        };
        let reply = match (&op.kind, first_error) {
            (OpKind::MSet | OpKind::Del { .. }, Some(e)) if parts.len() > 1 => {
                let Reply::Error(text) = error_reply(&e, true) else {
                    unreachable!("error_reply makes errors")
                };
                Reply::error(format!(
                    "{text} (other keys of this command may have been changed)"
                ))
            }
            (_, Some(e)) => error_reply(&e, writes),
            (OpKind::Get, None) => values(parts)
                .next()
                .flatten()
                .map_or(Reply::Null, Reply::Bulk),
            (OpKind::MGet, None) => Reply::Array(
                values(parts)
                    .map(|v| v.map_or(Reply::Null, Reply::Bulk))
                    .collect(),
            ),
            (OpKind::Exists, None) => Reply::Integer(found(&parts)),
            (OpKind::Del { keys }, None) => Reply::Integer(found(&parts[..*keys])),
            (OpKind::Set | OpKind::MSet, None) => ok(),
            (OpKind::Repair | OpKind::Conditional(_), None) => {
                unreachable!("a repair or a conditional command has one part")
            }
        };
        self.ready_bytes += reply_bytes(&reply);
        self.slots[index].state = SlotState::Ready(reply);
    }
}

fn ok() -> Reply {
    Reply::Simple("OK".into())
}

#[allow(clippy::disallowed_methods)] // request latency, a metric only
fn now() -> Instant {
    Instant::now()
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The RESP error for a failed operation. `may_have_applied` says whether
/// the operation wrote (a read that failed changed nothing).
fn error_reply(error: &ClientError, writes: bool) -> Reply {
    match error {
        ClientError::Timeout { answered, required } => {
            let applied = if writes && error.may_have_applied() {
                "; the write may have been applied"
            } else {
                ""
            };
            Reply::error(format!(
                "TIMEOUT {answered} of {required} required replicas answered before the deadline{applied}"
            ))
        }
        ClientError::Invalid { reason } => Reply::error(format!("ERR {reason}")),
        ClientError::NotProposed { rounds } => Reply::error(format!(
            "TIMEOUT {rounds} Paxos round(s) lost to competing operations before the deadline; nothing was applied"
        )),
        ClientError::Overloaded { pending } => Reply::error(format!(
            "OVERLOADED the coordinator has {pending} operations in flight; nothing was applied"
        )),
        ClientError::Storage { reason } => Reply::error(format!("STORAGE {reason}")),
        ClientError::Unavailable { alive, required } => Reply::error(format!(
            "UNAVAILABLE {alive} of the {required} required replicas are up; nothing was applied"
        )),
        ClientError::NoSpace { reason } => Reply::error(format!(
            "NOSPACE {reason}{}",
            if writes {
                "; the write may have been applied"
            } else {
                ""
            }
        )),
        ClientError::Clock { reason } => {
            Reply::error(format!("CLOCK {reason}; nothing was applied"))
        }
        ClientError::SessionFloor { .. } => Reply::error(format!("TIMEOUT {error}")),
    }
}

fn command_entry(entry: &(&str, i64, bool, i64, i64, i64)) -> Reply {
    let (name, arity, write, first, last, step) = *entry;
    let flag = if write { "write" } else { "readonly" };
    Reply::Array(vec![
        Reply::Bulk(name.as_bytes().to_vec()),
        Reply::Integer(arity),
        Reply::Array(vec![Reply::Simple(flag.into())]),
        Reply::Integer(first),
        Reply::Integer(last),
        Reply::Integer(step),
    ])
}

fn command_reply(query: &CommandQuery) -> Reply {
    let find = |name: &str| COMMAND_TABLE.iter().find(|c| c.0 == name);
    match query {
        CommandQuery::All => Reply::Array(COMMAND_TABLE.iter().map(command_entry).collect()),
        CommandQuery::Count => Reply::Integer(COMMAND_TABLE.len() as i64),
        CommandQuery::Info(names) if names.is_empty() => {
            Reply::Array(COMMAND_TABLE.iter().map(command_entry).collect())
        }
        CommandQuery::Info(names) => Reply::Array(
            names
                .iter()
                .map(|n| find(n).map_or(Reply::Null, command_entry))
                .collect(),
        ),
        CommandQuery::Docs(names) => {
            let entries: Vec<&(&str, i64, bool, i64, i64, i64)> = if names.is_empty() {
                COMMAND_TABLE.iter().collect()
            } else {
                names.iter().filter_map(|n| find(n)).collect()
            };
            Reply::Map(
                entries
                    .into_iter()
                    .map(|entry| {
                        let text = |s: &str| Reply::Bulk(s.as_bytes().to_vec());
                        (
                            text(entry.0),
                            Reply::Map(vec![
                                (text("summary"), text(command_summary(entry.0))),
                                (text("group"), text("enigma")),
                            ]),
                        )
                    })
                    .collect(),
            )
        }
    }
}

fn command_summary(name: &str) -> &'static str {
    match name {
        "ping" => "Answers PONG, or echoes its argument.",
        "echo" => "Returns its argument.",
        "get" => "Reads a key at the connection's consistency level.",
        "set" => "Writes a key; options NX, XX, GET and expiry are not supported.",
        "del" => "Deletes keys; returns how many existed.",
        "exists" => "Counts the given keys that exist.",
        "mget" => "Reads several keys.",
        "mset" => "Writes several keys (each key is atomic, the set is not).",
        "info" => "Server, membership, storage and statistics sections.",
        "command" => "Describes the commands EnigmaDB serves.",
        "quit" => "Closes the connection.",
        "consistency" => {
            "Shows or sets the connection's consistency level: ONE, TWO, QUORUM, ALL or SERIAL."
        }
        "at" => "AT <level> <command ...>: runs one key command at a level.",
        "auth" => "Authenticates with the server's requirepass.",
        "hello" => "Selects RESP2 or RESP3 and optionally authenticates.",
        "client" => "CLIENT SETNAME, GETNAME, ID and SETINFO.",
        "dbsize" => "An estimate of the live keys this node stores (a paced count, seconds old).",
        "repair" => "Runs a full anti-entropy pass over this node's ranges; answers when done.",
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use crate::driver::NodeSnapshot;
    use std::collections::BTreeMap;
    use std::sync::atomic::{AtomicU64, AtomicUsize};
    use std::sync::Mutex;

    use enigma_cluster::{NodeId, Ring};

    use super::*;
    use crate::config::{Limits, NodeConfig, PeerAddr, SyncMode};
    use crate::driver::{ClientQueue, ReplyBatch};
    use crate::metrics::Metrics;
    use crate::peer::PeerLink;

    fn shared(members: u32, requirepass: Option<&str>) -> Arc<Shared> {
        let peers: Vec<PeerAddr> = (2..=members)
            .map(|id| PeerAddr {
                id: NodeId(id),
                addr: format!("127.0.0.1:{}", 9000 + id).parse().unwrap(),
            })
            .collect();
        let config = NodeConfig {
            id: NodeId(1),
            listen: "127.0.0.1:1".parse().unwrap(),
            peer_listen: "127.0.0.1:2".parse().unwrap(),
            peers: peers.clone(),
            data_dir: "unused".into(),
            replication_factor: members as usize,
            vnodes_per_node: 8,
            request_timeout_ms: 1000,
            sync: SyncMode::Always,
            default_consistency: ConsistencyLevel::Quorum,
            requirepass: requirepass.map(crate::config::Secret::new),
            cluster_secret: crate::config::Secret::new("0123456789"),
            metrics_listen: None,
            limits: Limits::default(),
            tick_interval_ms: 10,
            peer_send_queue_bytes_max: 64 << 20,
            batch_inputs_max: 64,
            peer_bulk_queue_bytes_max: 64 << 20,
            protected_mode: true,
            idle_timeout_secs: 0,
            request_read_timeout_ms: 10_000,
            idle_eviction_ms: 5_000,
            tls: crate::config::TlsSettings::default(),
            healing: crate::config::HealingConfig::default(),
        };
        let ring = Ring::new(&config.members(), 8, members as usize).unwrap();
        let links: BTreeMap<NodeId, Arc<PeerLink>> = peers
            .iter()
            .map(|p| {
                (
                    p.id,
                    Arc::new(PeerLink::new(p.id, p.addr, 1 << 20, 1 << 20)),
                )
            })
            .collect();
        let (inputs, _) = tokio::sync::mpsc::channel(4);
        Arc::new(Shared {
            config,
            client_addr: "127.0.0.1:1".parse().unwrap(),
            peer_addr: "127.0.0.1:2".parse().unwrap(),
            ring,
            links,
            metrics: Metrics::default(),
            inputs,
            clients: ClientQueue::default(),
            core: Mutex::new(None),
            snapshot: Mutex::new(NodeSnapshot::default()),
            // Every peer held down: placement decides what may be sent.
            judged_up: peers
                .iter()
                .map(|p| (p.id, std::sync::atomic::AtomicBool::new(false)))
                .collect(),
            clock_refuses_writes: std::sync::atomic::AtomicBool::new(false),
            started: now(),
            connections: AtomicUsize::new(0),
            next_conn: AtomicU64::new(1),
            client_bytes: AtomicUsize::new(0),
            values: crate::driver::ValueSizes::default(),
            conn_slots: Mutex::new(BTreeMap::new()),
            bulk_pending: AtomicUsize::new(0),
        })
    }

    fn words(line: &str) -> Vec<Vec<u8>> {
        line.split_whitespace()
            .map(|w| w.as_bytes().to_vec())
            .collect()
    }

    fn written(session: &mut Session) -> String {
        let mut out = Vec::new();
        session.write_ready(&mut out);
        String::from_utf8(out).unwrap()
    }

    fn value(v: &str) -> ClientResponse {
        ClientResponse::Value(Some(v.as_bytes().to_vec()))
    }

    #[test]
    fn replies_leave_in_request_order_whatever_order_the_node_answers_in() {
        let mut session = Session::new(shared(1, None), 7);
        session.on_request(words("GET a"));
        session.on_request(words("PING"));
        session.on_request(words("SET b 1"));
        let sent = session.take_outgoing();
        assert_eq!(sent.len(), 2);
        assert!(sent.iter().all(|(id, _)| id.0 >> 32 == 7));
        session.on_replies(vec![(sent[1].0, ClientResponse::Written)]);
        assert_eq!(written(&mut session), "", "GET a is still owed");
        session.on_replies(vec![(sent[0].0, value("x"))]);
        assert_eq!(written(&mut session), "$1\r\nx\r\n+PONG\r\n+OK\r\n");
        assert_eq!(session.outstanding(), 0);
    }

    #[test]
    fn del_counts_the_keys_that_existed_and_mget_keeps_order() {
        let mut session = Session::new(shared(1, None), 1);
        session.on_request(words("DEL a b c"));
        session.on_request(words("MGET a b"));
        let sent = session.take_outgoing();
        // Three reads then three deletes, then two reads.
        assert_eq!(sent.len(), 8);
        assert!(matches!(sent[0].1.op, ClientOp::Get { .. }));
        assert!(matches!(sent[3].1.op, ClientOp::Delete { .. }));
        let mut replies: ReplyBatch = vec![
            (sent[0].0, value("1")),
            (sent[1].0, ClientResponse::Value(None)),
            (sent[2].0, value("3")),
        ];
        replies.extend(
            sent[3..6]
                .iter()
                .map(|(id, _)| (*id, ClientResponse::Written)),
        );
        replies.push((sent[7].0, ClientResponse::Value(None)));
        replies.push((sent[6].0, value("v")));
        replies.reverse();
        session.on_replies(replies);
        assert_eq!(written(&mut session), ":2\r\n*2\r\n$1\r\nv\r\n$-1\r\n");
    }

    #[test]
    fn requests_read_in_place_are_the_requests_parsed_by_copy() {
        use crate::resp::{parse_request_ranges, RespLimits};
        let limits = RespLimits::default();
        let mut ranges = Vec::new();
        for line in [
            "GET k",
            "get k",
            "SET k v",
            "sEt k v",
            "SET k v NX",
            "GET",
            "GET a b",
            "MGET a b",
            "PING",
        ] {
            let mut by_copy = Session::new(shared(1, None), 1);
            by_copy.on_request(words(line));
            let mut in_place = Session::new(shared(1, None), 1);
            let wire = format!("{line}\r\n");
            let used = parse_request_ranges(wire.as_bytes(), &limits, &mut ranges).unwrap();
            assert_eq!(used, Some(wire.len()));
            in_place.on_request_in(wire.as_bytes(), &ranges);
            assert_eq!(
                format!("{:?}", in_place.take_outgoing()),
                format!("{:?}", by_copy.take_outgoing()),
                "{line}"
            );
            assert_eq!(written(&mut in_place), written(&mut by_copy), "{line}");
        }
    }

    #[test]
    fn reads_may_skip_the_queue_only_when_nothing_of_theirs_is_in_flight() {
        let mut session = Session::new(shared(1, None), 5);
        session.on_request(words("GET a"));
        session.on_request(words("MGET a b"));
        assert!(session.only_fresh_reads_outgoing());
        session.on_request(words("SET a 1"));
        assert!(
            !session.only_fresh_reads_outgoing(),
            "a write is among them"
        );
        let sent = session.take_outgoing();
        // The SET (and the reads before it) are in flight: a new read must
        // not overtake them.
        session.on_request(words("GET a"));
        assert!(!session.only_fresh_reads_outgoing());
        let late = session.take_outgoing();
        for (id, _) in sent.iter().chain(&late) {
            session.on_replies(vec![(*id, ClientResponse::Value(None))]);
        }
        session.on_request(words("GET a"));
        assert!(
            session.only_fresh_reads_outgoing(),
            "everything was answered"
        );
        session.on_request(words("DEL a"));
        assert!(!session.only_fresh_reads_outgoing(), "DEL deletes");
    }

    #[test]
    fn the_waiting_window_survives_sequence_numbers_wrapping() {
        let mut session = Session::new(shared(1, None), 3);
        session.next_seq = u32::MAX - 1;
        for key in ["a", "b", "c", "d"] {
            session.on_request(words(&format!("GET {key}")));
        }
        let sent = session.take_outgoing();
        assert_eq!(sent[2].0 .0 & 0xffff_ffff, 0, "the third wrapped to 0");
        for (id, _) in sent.iter().rev() {
            session.on_replies(vec![(*id, ClientResponse::Value(None))]);
        }
        assert_eq!(written(&mut session), "$-1\r\n".repeat(4));
        // A reply for another connection or an unknown request is ignored.
        session.on_replies(vec![(request_id(4, 0), value("x"))]);
        assert_eq!(session.outstanding(), 0);
    }

    #[test]
    fn key_commands_are_refused_unapplied_when_replicas_are_down() {
        let mut session = Session::new(shared(3, None), 1);
        session.on_request(words("SET k v"));
        session.on_request(words("AT ONE SET k v"));
        let sent = session.take_outgoing();
        assert_eq!(sent.len(), 1, "only the ONE write is sent");
        assert_eq!(sent[0].1.level, ConsistencyLevel::One);
        let out = written(&mut session);
        assert!(
            out.starts_with("-UNAVAILABLE consistency level QUORUM needs 2 of the 3 replicas"),
            "{out}"
        );
    }

    #[test]
    fn nothing_but_auth_is_served_before_authentication() {
        let mut session = Session::new(shared(1, Some("pw")), 1);
        session.on_request(words("GET k"));
        session.on_request(words("AUTH nope"));
        session.on_request(words("AUTH default pw"));
        session.on_request(words("PING"));
        assert!(session.take_outgoing().is_empty());
        assert_eq!(
            written(&mut session),
            "-NOAUTH Authentication required.\r\n\
             -WRONGPASS invalid username-password pair or user is disabled.\r\n\
             +OK\r\n+PONG\r\n"
        );
    }

    #[test]
    fn timeouts_say_whether_a_write_may_have_applied() {
        let mut session = Session::new(shared(1, None), 1);
        session.on_request(words("GET k"));
        session.on_request(words("SET k v"));
        let sent = session.take_outgoing();
        let timeout = ClientResponse::Error(ClientError::Timeout {
            answered: 1,
            required: 2,
        });
        session.on_replies(vec![(sent[0].0, timeout.clone()), (sent[1].0, timeout)]);
        let out = written(&mut session);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(
            lines[0],
            "-TIMEOUT 1 of 2 required replicas answered before the deadline"
        );
        assert!(
            lines[1].ends_with("the write may have been applied"),
            "{out}"
        );
    }
}
