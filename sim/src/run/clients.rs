//! The clients of a run: what they ask, of which node, and what they make
//! of the answer, recorded in the history.

use enigma_checker::{Call, Version};
use enigma_cluster::paxos::{Change, Condition};
use enigma_cluster::{
    ClientError, ClientOp, ClientRequest, ClientResponse, ConsistencyLevel, Input, RequestId,
};
use enigma_engine::Timestamp;
use enigma_workloads::register::decode_value;
use enigma_workloads::ClientResult;
use rand::Rng;

use super::{
    Answer, Event, InFlight, Phase, Simulation, CLIENT_LATENCY_MAX_NANOS, CLIENT_LATENCY_MIN_NANOS,
    CLIENT_THINK_MAX_NANOS, CLIENT_TIMEOUT_NANOS,
};

/// Attempts a client makes at one operation, on different coordinators.
const CLIENT_ATTEMPTS_MAX: u32 = 3;

impl Simulation {
    pub(super) fn on_request(&mut self, node: usize, request: RequestId, body: ClientRequest) {
        let mut bytes = vec![2, node as u8];
        bytes.extend_from_slice(&request.0.to_le_bytes());
        encode_request(&body, &mut bytes);
        self.trace.record(self.now, &bytes, || {
            format!("request {} at n{}: {body:?}", request.0, node + 1)
        });
        if self.slots[node].node.is_none() {
            let delay = self.client_latency();
            self.schedule(
                delay,
                Event::Reply {
                    request,
                    answer: Box::new(Answer::Refused),
                    version: None,
                },
            );
            return;
        }
        self.step_node(node, Input::Client { request, body });
    }

    /// Notes, when coordinator `node` has just taken in client `request`
    /// (`level` on `key`), whether its failure detector held too few of the
    /// key's replicas up: then the request must be refused at once, never
    /// time out. Judged when the node steps the request, not when it
    /// arrives: a node whose group commit is syncing takes it in later,
    /// when its detector may think otherwise.
    pub(super) fn note_fail_fast(
        &mut self,
        node: usize,
        request: RequestId,
        level: ConsistencyLevel,
        key: &[u8],
    ) {
        let required = level
            .replicas_required(self.cluster.replication_factor)
            .expect("levels were validated");
        let replicas = self.ring.replicas(key);
        if let Some(coordinator) = &self.slots[node].node {
            let up: Vec<_> = replicas
                .iter()
                .filter(|&&r| coordinator.believes_up(r))
                .collect();
            if up.len() < required {
                let down: Vec<String> = replicas
                    .iter()
                    .filter(|r| !up.contains(r))
                    .map(ToString::to_string)
                    .collect();
                self.must_fail_fast.insert(
                    request,
                    format!(
                        "n{} held {} down, so {} of {} needed replicas were up",
                        node + 1,
                        down.join(" and "),
                        up.len(),
                        required
                    ),
                );
            }
        }
    }

    pub(super) fn on_reply(
        &mut self,
        request: RequestId,
        answer: Answer,
        version: Option<Version>,
    ) {
        let fail_fast = self.must_fail_fast.remove(&request);
        let Some(client) = self.request_owner.remove(&request) else {
            return;
        };
        if let (Some(why), Answer::Response(ClientResponse::Error(ClientError::Timeout { .. }))) =
            (&fail_fast, &answer)
        {
            self.violate(
                "failure-detection",
                format!(
                    "request {} timed out although its coordinator should have refused it at once: {why}",
                    request.0
                ),
            );
        }
        let mut bytes = vec![3];
        bytes.extend_from_slice(&request.0.to_le_bytes());
        encode_answer(&answer, &mut bytes);
        self.trace.record(self.now, &bytes, || {
            format!("reply {} to client {client}: {answer:?}", request.0)
        });
        if self.should_retry(client, Some(&answer)) {
            self.retry(client);
            return;
        }
        if self.counting(client) {
            return self.on_counter_reply(client, answer);
        }
        let is_write = self.clients[client]
            .in_flight
            .as_ref()
            .is_some_and(|f| !matches!(f.call, Call::Read));
        let result = match answer {
            Answer::Refused => ClientResult::Failed,
            Answer::Response(ClientResponse::Written) => ClientResult::Written,
            Answer::Response(ClientResponse::Value(None)) => ClientResult::Read(None),
            Answer::Response(ClientResponse::Value(Some(bytes))) => match decode_value(&bytes) {
                Some(value) => ClientResult::Read(Some(value)),
                None => {
                    self.violate(
                        "integrity",
                        format!("client {client} read bytes no client wrote: {bytes:?}"),
                    );
                    ClientResult::Failed
                }
            },
            Answer::Response(ClientResponse::Repaired(_)) => {
                unreachable!("simulated clients ask for no repair pass")
            }
            Answer::Response(ClientResponse::Conditional { applied: true, .. }) => {
                ClientResult::Written
            }
            Answer::Response(ClientResponse::Conditional { applied: false, .. }) => {
                ClientResult::Refused
            }
            Answer::Response(ClientResponse::Error(e)) if e.may_have_applied() => {
                if let ClientError::Timeout { answered, required } = e {
                    if is_write && answered > 0 && answered < required {
                        // Some replicas hold the write, too few to count:
                        // where later reads meet disagreeing replicas.
                        self.stats.partial_writes += 1;
                    }
                }
                ClientResult::Unknown
            }
            Answer::Response(ClientResponse::Error(_)) => ClientResult::Failed,
        };
        if let (Some(version), ClientResult::Written | ClientResult::Read(_)) = (version, &result) {
            let state = &mut self.clients[client];
            if let Some(in_flight) = &state.in_flight {
                self.versions.insert(in_flight.op, version);
                // The session's floors follow what it saw.
                let seen = Timestamp {
                    hlc: version.timestamp,
                    node: u32::try_from(version.writer).expect("a node id"),
                };
                state.floors.observe(in_flight.body.op.key(), seen);
            }
        }
        self.complete(client, result);
    }

    pub(super) fn complete(&mut self, client: usize, result: ClientResult) {
        let in_flight = self.clients[client]
            .in_flight
            .take()
            .expect("completing an idle client");
        if in_flight.counter.is_some() {
            self.complete_counter(&in_flight, &result);
        } else {
            self.history
                .complete(in_flight.op, self.now, result.outcome(&in_flight.call));
        }
        if self.phase == Phase::Liveness {
            let key = self.key_in_flight(&in_flight);
            self.note_liveness_result(client, &key, &result);
        }
        let think = self.rng_clients.random_range(0..CLIENT_THINK_MAX_NANOS);
        self.schedule(think, Event::ClientNext { client });
    }

    pub(super) fn on_client_next(&mut self, client: usize) {
        if self.phase == Phase::Liveness {
            // A client still busy goes again when its operation completes
            // (a shrunk schedule may start the phase while one is).
            if self.clients[client].in_flight.is_none() && self.liveness_may_issue() {
                self.issue_next(client);
            }
            return;
        }
        if self.phase != Phase::Safety || self.script.is_some() {
            // A scripted run's operations come at their scheduled times.
            return;
        }
        if self.ops_issued >= self.config.ops {
            if self.clients.iter().all(|c| c.in_flight.is_none()) {
                self.start_heal();
            }
            return;
        }
        self.ops_issued += 1;
        self.issue_next(client);
    }

    pub(super) fn issue(
        &mut self,
        client: usize,
        node: usize,
        key: String,
        call: Call,
        level: ConsistencyLevel,
    ) {
        let request = RequestId(self.next_request);
        self.next_request += 1;
        let op = self
            .history
            .invoke(client as u64, &key, call.clone(), self.now);
        let key_bytes = key.into_bytes();
        let body_op = match &call {
            Call::Read => ClientOp::Get { key: key_bytes },
            Call::Write(Some(value)) => ClientOp::Put {
                key: key_bytes,
                value: self.workload.encode(*value),
            },
            Call::Write(None) => ClientOp::Delete { key: key_bytes },
            Call::Cas { expected, new } => ClientOp::Cas {
                key: key_bytes,
                condition: match expected {
                    Some(value) => Condition::Equals(self.workload.encode(*value)),
                    None => Condition::Absent,
                },
                change: match new {
                    Some(value) => Change::Put(self.workload.encode(*value)),
                    None => Change::Delete,
                },
            },
        };
        let session = self.clients[client].floors.floor(body_op.key());
        let level = if level == self.config.level {
            super::op_level(&self.config, client as u64, &call)
        } else {
            level
        };
        let body = ClientRequest {
            op: body_op,
            level,
            session,
        };
        self.record(|r, now| r.attempt(now, op, node));
        self.clients[client].in_flight = Some(InFlight {
            request,
            op,
            call,
            counter: None,
            body: body.clone(),
            node,
            attempts: 1,
        });
        self.send_request(client, node, request, body);
    }

    pub(super) fn send_request(
        &mut self,
        client: usize,
        node: usize,
        request: RequestId,
        body: ClientRequest,
    ) {
        self.request_owner.insert(request, client);
        let delay = self.client_latency();
        self.schedule(
            delay,
            Event::Request {
                node,
                request,
                body: Box::new(body),
            },
        );
        self.schedule(
            CLIENT_TIMEOUT_NANOS,
            Event::ClientTimeout { client, request },
        );
    }

    /// Whether `client` tries its operation again on another coordinator
    /// after `answer` (`None`: it heard nothing in time): only when the
    /// answer says nothing was applied (the node was down, or refused the
    /// request), or the operation is a read (a read applies nothing of its
    /// own), and while attempts remain. A write that may have been applied
    /// is never sent again: a second copy could land after a later write.
    pub(super) fn should_retry(&self, client: usize, answer: Option<&Answer>) -> bool {
        let Some(in_flight) = &self.clients[client].in_flight else {
            return false;
        };
        if in_flight.attempts >= CLIENT_ATTEMPTS_MAX || self.slots.len() < 2 {
            return false;
        }
        let is_read = matches!(in_flight.call, Call::Read);
        match answer {
            Some(Answer::Refused) => true,
            Some(Answer::Response(ClientResponse::Error(e))) => is_read || !e.may_have_applied(),
            Some(Answer::Response(_)) => false,
            None => is_read,
        }
    }

    /// Sends `client`'s operation again, to another coordinator, as a new
    /// request; the history keeps the one operation.
    pub(super) fn retry(&mut self, client: usize) {
        let others = self.slots.len() - 1;
        let pick = self.rng_clients.random_range(0..others);
        let request = RequestId(self.next_request);
        self.next_request += 1;
        let in_flight = self.clients[client]
            .in_flight
            .as_mut()
            .expect("retrying an operation in flight");
        let node = if pick >= in_flight.node {
            pick + 1
        } else {
            pick
        };
        in_flight.node = node;
        in_flight.attempts += 1;
        in_flight.request = request;
        let body = in_flight.body.clone();
        let op = in_flight.op;
        self.record(|r, now| r.attempt(now, op, node));
        self.stats.client_retries += 1;
        self.trace
            .record(self.now, &[12, client as u8, node as u8], || {
                format!("client {client} tries again at n{}", node + 1)
            });
        self.send_request(client, node, request, body);
    }

    pub(super) fn client_latency(&mut self) -> u64 {
        self.rng_clients
            .random_range(CLIENT_LATENCY_MIN_NANOS..=CLIENT_LATENCY_MAX_NANOS)
    }
}

/// Appends a stable encoding of a client request, for the trace digest.
fn encode_request(body: &ClientRequest, bytes: &mut Vec<u8>) {
    let (kind, key, value): (u8, &[u8], &[u8]) = match &body.op {
        ClientOp::Get { key } => (0, key, &[]),
        ClientOp::Put { key, value } => (1, key, value),
        ClientOp::Delete { key } => (2, key, &[]),
        ClientOp::Repair => (3, &[], &[]),
        ClientOp::Cas { key, .. } => (4, key, &[]),
    };
    bytes.push(kind);
    bytes.push(body.level as u8);
    bytes.extend_from_slice(&(key.len() as u64).to_le_bytes());
    bytes.extend_from_slice(key);
    bytes.extend_from_slice(value);
    for floor in [body.session.seen, body.session.key] {
        let floor = floor.map_or((0, 0), |t| (t.hlc, t.node));
        bytes.extend_from_slice(&floor.0.to_le_bytes());
        bytes.extend_from_slice(&floor.1.to_le_bytes());
    }
    if let ClientOp::Cas {
        condition, change, ..
    } = &body.op
    {
        bytes.extend_from_slice(format!("{condition:?} {change:?}").as_bytes());
    }
}

/// Appends a stable encoding of a client answer, for the trace digest.
fn encode_answer(answer: &Answer, bytes: &mut Vec<u8>) {
    match answer {
        Answer::Refused => bytes.push(0),
        Answer::Response(ClientResponse::Written) => bytes.push(1),
        Answer::Response(ClientResponse::Value(None)) => bytes.push(2),
        Answer::Response(ClientResponse::Value(Some(value))) => {
            bytes.push(3);
            bytes.extend_from_slice(value);
        }
        Answer::Response(ClientResponse::Repaired(_)) => bytes.push(5),
        Answer::Response(ClientResponse::Conditional { applied, .. }) => {
            bytes.push(6);
            bytes.push(u8::from(*applied));
        }
        Answer::Response(ClientResponse::Error(e)) => {
            bytes.push(4);
            bytes.extend_from_slice(e.to_string().as_bytes());
        }
    }
}
