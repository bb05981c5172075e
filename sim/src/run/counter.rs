//! The increment workload (`--workload incr`, `SERIAL` only): clients
//! increment keys by one (`INCR`: a compare-and-set whose change is an
//! increment, as the node's `INCR` command sends it) and read them. Each
//! key is checked as a linearizable counter against the value its replicas
//! converged on ([`enigma_checker::counter`]): the acknowledged increments,
//! give or take those of unknown outcome, with distinct, in-range values
//! that respect real time.

use std::collections::BTreeMap;

use enigma_checker::{check_counter, Call, CounterCall, CounterOutcome, OpId, ReplicaVersion};
use enigma_cluster::paxos::{Change, Condition};
use enigma_cluster::{
    ClientError, ClientOp, ClientRequest, ClientResponse, RequestId, SessionFloor,
};
use enigma_workloads::ClientResult;
use rand::Rng;

use super::{Answer, InFlight, Simulation};
use crate::config::SimWorkload;

/// Percentage of the increment workload's operations that increment; the
/// rest read.
const INCR_PERCENT: u32 = 80;

impl Simulation {
    /// Issues `client`'s next operation of the run's workload, at a
    /// coordinator drawn at random.
    pub(super) fn issue_next(&mut self, client: usize) {
        match self.config.workload {
            SimWorkload::Register => {
                let (key, call) = self.workload.next_op(&mut self.rng_clients);
                let node = self.rng_clients.random_range(0..self.slots.len());
                self.note_scheduled_op(client, &key, node, &call);
                self.issue(client, node, key, call, self.config.level);
            }
            SimWorkload::Incr => self.issue_counter(client),
        }
    }

    /// An increment or a read of a key drawn at random.
    fn issue_counter(&mut self, client: usize) {
        let key = self.keys[self.rng_clients.random_range(0..self.keys.len())].clone();
        let call = if self.rng_clients.random_range(0..100) < INCR_PERCENT {
            CounterCall::Incr
        } else {
            CounterCall::Read
        };
        let node = self.rng_clients.random_range(0..self.slots.len());
        let request = RequestId(self.next_request);
        self.next_request += 1;
        let index = self.counter.invoke(client as u64, &key, call, self.now);
        let key = key.into_bytes();
        let (op, shown) = match call {
            CounterCall::Incr => (
                ClientOp::Cas {
                    key,
                    condition: Condition::Any,
                    change: Change::Incr(1),
                },
                // Not a read: never sent again once it may have applied.
                Call::Write(None),
            ),
            CounterCall::Read => (ClientOp::Get { key }, Call::Read),
        };
        let body = ClientRequest {
            op,
            level: self.config.level,
            // Counter runs are SERIAL: Paxos orders every increment and a
            // SERIAL read ignores floors, so these clients carry none (the
            // counter checks, not the session checks, judge them).
            session: SessionFloor::default(),
        };
        self.clients[client].in_flight = Some(InFlight {
            request,
            op: OpId(index),
            call: shown,
            counter: Some(call),
            body: body.clone(),
            node,
            attempts: 1,
        });
        self.send_request(client, node, request, body);
    }

    /// Whether `client` waits on a counter operation.
    pub(super) fn counting(&self, client: usize) -> bool {
        self.clients[client]
            .in_flight
            .as_ref()
            .is_some_and(|f| f.counter.is_some())
    }

    /// The answer to `client`'s counter operation (not retried).
    pub(super) fn on_counter_reply(&mut self, client: usize, answer: Answer) {
        let result = match answer {
            Answer::Refused => ClientResult::Failed,
            Answer::Response(ClientResponse::Value(None)) => ClientResult::Read(None),
            Answer::Response(
                ClientResponse::Value(Some(bytes))
                | ClientResponse::Conditional {
                    applied: true,
                    current: Some(bytes),
                    ..
                },
            ) => match parse_counter(&bytes) {
                Some(value) => ClientResult::Read(Some(value)),
                None => {
                    self.violate(
                        "integrity",
                        format!("client {client} was answered bytes no counter holds: {bytes:?}"),
                    );
                    ClientResult::Failed
                }
            },
            Answer::Response(ClientResponse::Error(e)) if e.may_have_applied() => {
                ClientResult::Unknown
            }
            Answer::Response(ClientResponse::Error(ClientError::Invalid { reason })) => {
                // An increment of a counter is never refused as invalid.
                self.violate(
                    "integrity",
                    format!("client {client}'s counter operation was refused: {reason}"),
                );
                ClientResult::Failed
            }
            Answer::Response(ClientResponse::Error(_)) => ClientResult::Failed,
            Answer::Response(other) => {
                self.violate(
                    "integrity",
                    format!("client {client}'s counter operation was answered {other:?}"),
                );
                ClientResult::Failed
            }
        };
        self.complete(client, result);
    }

    /// Records how counter operation `in_flight` ended.
    pub(super) fn complete_counter(&mut self, in_flight: &InFlight, result: &ClientResult) {
        let outcome = match result {
            ClientResult::Read(value) => CounterOutcome::Ok(value.unwrap_or(0)),
            ClientResult::Unknown => CounterOutcome::Info,
            ClientResult::Failed | ClientResult::Written | ClientResult::Refused => {
                CounterOutcome::Fail
            }
        };
        self.counter.complete(in_flight.op.0, self.now, outcome);
    }

    /// The key `in_flight` touches.
    pub(super) fn key_in_flight(&self, in_flight: &InFlight) -> String {
        if in_flight.counter.is_some() {
            return self
                .counter
                .operation(in_flight.op.0)
                .map(|op| op.key.clone())
                .unwrap_or_default();
        }
        self.history
            .operation(in_flight.op)
            .map(|op| op.key.clone())
            .unwrap_or_default()
    }

    /// Holds every key's counter history to the value its replicas
    /// converged on (keys whose replicas differ are the convergence
    /// check's).
    pub(super) fn check_counters(&mut self, states: &BTreeMap<String, Vec<ReplicaVersion>>) {
        let mut finals = BTreeMap::new();
        for (key, replicas) in states {
            let all_same = replicas.windows(2).all(|w| w[0].version == w[1].version);
            let Some(first) = replicas.first().filter(|_| all_same) else {
                continue;
            };
            let value = match first.version.as_ref().and_then(|v| v.value.as_deref()) {
                None => 0,
                Some(bytes) => match parse_counter(bytes) {
                    Some(value) => value,
                    None => {
                        self.violate(
                            "integrity",
                            format!("the replicas of {key} hold bytes no counter holds: {bytes:?}"),
                        );
                        continue;
                    }
                },
            };
            finals.insert(key.clone(), value);
        }
        for violation in check_counter(&self.counter, &finals) {
            self.violate(violation.rule.name(), violation.details);
        }
    }

    /// Counts the counter operations' outcomes into the run's statistics.
    pub(super) fn count_counter_outcomes(&mut self) {
        for op in self.counter.operations() {
            match op.outcome() {
                CounterOutcome::Ok(_) => self.stats.ops_ok += 1,
                CounterOutcome::Fail => self.stats.ops_fail += 1,
                CounterOutcome::Info => self.stats.ops_info += 1,
            }
        }
    }
}

/// A counter's value as the node writes it: a decimal 64-bit integer.
fn parse_counter(bytes: &[u8]) -> Option<i64> {
    std::str::from_utf8(bytes).ok()?.parse().ok()
}
