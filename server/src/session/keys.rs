//! Key commands: checked against the limits and the reachable replicas,
//! turned into node requests (one or several parts per command), and their
//! answers turned back into one reply, or one error that says whether a
//! write may have been applied.

use std::sync::atomic::Ordering;

use enigma_cluster::{ClientError, ClientOp, ClientResponse, ConsistencyLevel};

use super::{ok, reply_bytes, Session, SlotState};
use crate::command::Command;
use crate::resp::Reply;

/// What a key command waits for, and how its parts become one reply.
#[derive(Debug)]
pub(super) enum OpKind {
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
pub(super) struct Op {
    pub(super) kind: OpKind,
    pub(super) parts: Parts<Option<ClientResponse>>,
    pub(super) remaining: usize,
}

/// One item inline (a GET or SET: no allocation), or several.
#[derive(Debug)]
pub(super) enum Parts<T> {
    One(T),
    Many(Vec<T>),
}

impl<T> Parts<T> {
    pub(super) fn len(&self) -> usize {
        match self {
            Self::One(_) => 1,
            Self::Many(items) => items.len(),
        }
    }

    pub(super) fn get_mut(&mut self, index: usize) -> Option<&mut T> {
        match self {
            Self::One(item) => (index == 0).then_some(item),
            Self::Many(items) => items.get_mut(index),
        }
    }

    pub(super) fn into_vec(self) -> Vec<T> {
        match self {
            Self::One(item) => vec![item],
            Self::Many(items) => items,
        }
    }
}

impl Session {
    /// Checks a key command against the limits and the reachable replicas
    /// and turns it into node operations. Nothing is sent if any check fails.
    pub(super) fn plan(
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
    pub(super) fn complete(&mut self, slot_no: u64) {
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
