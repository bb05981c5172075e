//! `SERIAL` operations: this node as Paxos proposer for the client
//! operations it coordinates at `SERIAL`, and as acceptor for the keys it
//! replicates. The rules are [`crate::paxos`]'s; this file sends, serves,
//! stores and keeps deadlines.
//!
//! An acceptor's state for a key lives in the engine under
//! [`paxos_key`], written in the same group commit as data: a promise or
//! an acceptance is an output, held like every output until the flush has
//! made the state durable. A commit writes the value and the state in one
//! atomic batch. The local replica's acceptor is served in place.
//!
//! Before a promise or an acceptance of a ballot above the node's ballot
//! mark leaves, the mark is raised in its own file; for a key whose range
//! lost data, the acceptor sits out what [`AcceptorState::after_loss`]
//! says it must ([`crate::ballot_mark`] explains why).

use enigma_engine::{Disk, Timestamp, Versioned};

use super::{HintWatch, Node};
use crate::ballot_mark;
use crate::consistency::ConsistencyLevel;
use crate::ids::{NodeId, Now, OpId, RequestId};
use crate::keyspace::{is_system, paxos_key};
use crate::message::{ClientError, ClientOp, ClientResponse, Message, ReplicaFailure, WireVersion};
use crate::paxos::{
    backoff_nanos, AcceptorState, AfterLoss, Ballot, Change, Condition, Promise, Proposer,
    ProposerStep, SerialOp, SerialOutcome,
};

/// How a `SERIAL` operation is answered: as the client op it came as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AnswerAs {
    /// A `Get`: the value.
    Value,
    /// A `Put` or `Delete`: written.
    Written,
    /// A `Cas`: whether it applied, the value before and after.
    Conditional,
}

/// A `SERIAL` operation in flight at this coordinator.
#[derive(Debug)]
pub(super) struct SerialPending {
    request: RequestId,
    key: Vec<u8>,
    replicas: Vec<NodeId>,
    proposer: Proposer,
    answer_as: AnswerAs,
    deadline_mono_nanos: u64,
    /// After a lost ballot: the next round starts then (monotonic).
    retry_at_mono_nanos: Option<u64>,
}

impl<D: Disk> Node<D> {
    /// Starts client operation `op` at `SERIAL` as operation `seq`.
    pub(super) fn start_serial(
        &mut self,
        now: Now,
        request: RequestId,
        seq: u64,
        op: ClientOp,
        deadline_mono_nanos: u64,
    ) {
        let (key, serial, answer_as) = match op {
            ClientOp::Get { key } => (key, SerialOp::Read, AnswerAs::Value),
            ClientOp::Put { key, value } => (
                key,
                SerialOp::Cas {
                    condition: Condition::Any,
                    change: Change::Put(value),
                },
                AnswerAs::Written,
            ),
            ClientOp::Delete { key } => (
                key,
                SerialOp::Cas {
                    condition: Condition::Any,
                    change: Change::Delete,
                },
                AnswerAs::Written,
            ),
            ClientOp::Cas {
                key,
                condition,
                change,
            } => (
                key,
                SerialOp::Cas { condition, change },
                AnswerAs::Conditional,
            ),
            ClientOp::Repair => unreachable!("a repair pass is not a key operation"),
        };
        let replicas = self.ring.replicas(&key);
        let quorum = ConsistencyLevel::Serial
            .replicas_required(replicas.len())
            .expect("a majority of any replica count");
        let proposer = Proposer::new(self.id, serial, replicas.len(), quorum)
            .planting_ignore_in_progress(self.options.bug_paxos_ignores_in_progress_proposal)
            .planting_finish_with_stale_stamp(self.options.bug_paxos_finish_with_stale_stamp)
            .planting_answer_after_first_acceptance(
                self.options.bug_paxos_answer_after_first_acceptance,
            );
        self.serial.insert(
            seq,
            SerialPending {
                request,
                key,
                replicas,
                proposer,
                answer_as,
                deadline_mono_nanos,
                retry_at_mono_nanos: None,
            },
        );
        self.serial_round(now, seq);
    }

    /// Starts a new round of operation `seq` with a ballot above every one
    /// it has seen: prepares go to every replica held up.
    fn serial_round(&mut self, now: Now, seq: u64) {
        let Some(pending) = self.serial.get_mut(&seq) else {
            return;
        };
        pending.retry_at_mono_nanos = None;
        // Above every ballot this operation saw and every one this node
        // drew (ballots are unique per node and boot), without dragging the
        // node's clock along: a ballot may come from a peer whose clock
        // ran ahead, and a clock raised past the offset bound would get
        // every message of this node refused.
        let floor = pending
            .proposer
            .highest_seen()
            .hlc
            .max(self.serial_last_ballot_hlc)
            .saturating_add(1);
        let hlc = self.hlc.tick(now.wall_nanos).max(floor);
        self.serial_last_ballot_hlc = hlc;
        let ballot = Ballot {
            hlc,
            node: self.id.0,
            generation: self.generation,
        };
        pending.proposer.start(ballot);
        let key = pending.key.clone();
        let replicas = pending.replicas.clone();
        let op = OpId {
            generation: self.generation,
            seq,
        };
        for replica in replicas {
            if self.believes_up(replica) {
                let message = Message::PaxosPrepare {
                    op,
                    key: key.clone(),
                    ballot,
                };
                self.paxos_send(now, replica, message);
            }
        }
    }

    /// Sends a Paxos request to `to`; this node's own acceptor is served in
    /// place and its answer taken in at once.
    fn paxos_send(&mut self, now: Now, to: NodeId, message: Message) {
        if to != self.id {
            return self.send(to, message);
        }
        if let Some(answer) = self.serve_paxos(now, message) {
            self.on_paxos_answer(now, self.id, answer);
        }
    }

    /// A Paxos message from a peer: a request to this acceptor, or an
    /// answer to this proposer.
    pub(super) fn on_paxos_message(&mut self, now: Now, from: NodeId, message: Message) {
        match message {
            Message::PaxosPrepare { .. }
            | Message::PaxosPropose { .. }
            | Message::PaxosCommit { .. } => {
                if let Some(answer) = self.serve_paxos(now, message) {
                    self.send(from, answer);
                }
            }
            answer => self.on_paxos_answer(now, from, answer),
        }
    }

    /// This node's acceptor: the answer to a prepare, proposal or commit
    /// (`None`: nothing to say, the failure is counted; the
    /// proposer retries or times out).
    ///
    /// A commit stamped longer ago than a write may arrive late
    /// ([`crate::NodeOptions::write_lateness_max_nanos`]) is refused like
    /// a late write: tombstone purging counts on nothing older arriving.
    /// The proposal stays in progress here; the next round finishes it
    /// under a fresh timestamp.
    fn serve_paxos(&mut self, now: Now, message: Message) -> Option<Message> {
        let key = match &message {
            Message::PaxosPrepare { key, .. }
            | Message::PaxosPropose { key, .. }
            | Message::PaxosCommit { key, .. } => key.clone(),
            _ => return None,
        };
        if is_system(&key) || !self.ring.replicas(&key).contains(&self.id) {
            self.stats.messages_ignored += 1;
            return None;
        }
        let (mut state, stamp) = self.load_paxos_state(&key).ok()?;
        // A commit is always applied: it ends an instance whatever was
        // forgotten. A prepare or a proposal may have to be sat out.
        let asked = match &message {
            Message::PaxosPrepare { ballot, .. } => Some((*ballot, true)),
            Message::PaxosPropose { proposal, .. } => Some((proposal.ballot, false)),
            _ => None,
        };
        if let (Some(floor), Some((ballot, prepare))) = (self.paxos_floor(&key), asked) {
            let planted = self.options.bug_paxos_acceptor_forgets_loss;
            if state.after_loss(ballot, prepare, floor, planted) != AfterLoss::Serve {
                // No answer: the proposer gathers its majority from the
                // other replicas, or times out.
                self.stats.paxos_sat_out_after_loss += 1;
                return None;
            }
        }
        match message {
            Message::PaxosPrepare { op, ballot, .. } => match state.prepare(ballot) {
                Ok((in_progress, committed)) => {
                    let current = self.local_read(&key).ok()?;
                    self.raise_ballot_mark(ballot)?;
                    self.store_paxos_state(&key, &state, stamp, None).ok()?;
                    Some(Message::PaxosPromise {
                        op,
                        ballot,
                        in_progress,
                        committed,
                        version: current.map(Into::into),
                    })
                }
                Err(promised) => Some(Message::PaxosRefused {
                    op,
                    ballot,
                    promised,
                }),
            },
            Message::PaxosPropose { op, proposal, .. } => {
                let ballot = proposal.ballot;
                let planted = self.options.bug_paxos_accept_below_promise;
                match state.propose(proposal, planted) {
                    Ok(()) => {
                        self.raise_ballot_mark(ballot)?;
                        self.store_paxos_state(&key, &state, stamp, None).ok()?;
                        Some(Message::PaxosAccepted { op, ballot })
                    }
                    Err(promised) => Some(Message::PaxosRefused {
                        op,
                        ballot,
                        promised,
                    }),
                }
            }
            Message::PaxosCommit {
                op,
                ballot,
                version,
                ..
            } => {
                if self.commit_too_late(now, &version) {
                    enigma_engine::marks::hit(enigma_engine::Mark::PaxosCommitTooLate);
                    self.stats.writes_refused_late += 1;
                    return None;
                }
                state.commit(ballot);
                let version: Versioned = version.into();
                let (timestamp, tombstone) = (version.timestamp, version.value.is_none());
                self.store_paxos_state(&key, &state, stamp, Some(version))
                    .ok()?;
                self.acknowledged(&key, timestamp, tombstone);
                Some(Message::PaxosCommitAck { op, ballot })
            }
            _ => None,
        }
    }

    /// This node's acceptor state for client key `key` as stored, and
    /// whether it would promise a ballot of the key now (above any floor:
    /// it withholds promises for a key of a range that lost data until it
    /// holds a record of the key above the floor). For a simulator's final
    /// checks: which replicas the next prepare may hear from.
    ///
    /// # Errors
    /// The stored state cannot be read or decoded.
    pub fn paxos_acceptor(&self, key: &[u8]) -> Result<(AcceptorState, bool), String> {
        let stored = self
            .engine
            .get(&paxos_key(key))
            .map_err(|e| e.to_string())?;
        let state = AcceptorState::from_stored(stored.and_then(|v| v.value).as_deref())
            .ok_or_else(|| "undecodable acceptor state".to_owned())?;
        let promises = self
            .paxos_floor(key)
            .is_none_or(|floor| state.knows_above(floor));
        Ok((state, promises))
    }

    /// The Paxos floor of `key`'s range, if the range lost data since this
    /// node first promised a ballot ([`crate::ballot_mark`]).
    fn paxos_floor(&self, key: &[u8]) -> Option<Ballot> {
        let range = self.anti_entropy.ranges().of_key(key);
        self.damage.floor(range).map(ballot_mark::floor)
    }

    /// Makes the ballot mark cover `ballot` before a promise or acceptance
    /// of it leaves: `None` (nothing to answer, the failure counted) if
    /// the mark could not be stored.
    fn raise_ballot_mark(&mut self, ballot: Ballot) -> Option<()> {
        let Some(mark) = ballot_mark::raised(self.ballot_mark, ballot.hlc) else {
            return Some(());
        };
        match ballot_mark::store(self.engine.disk(), mark) {
            Ok(()) => {
                self.ballot_mark = mark;
                Some(())
            }
            Err(e) => {
                self.storage_error(e);
                None
            }
        }
    }

    /// Reads `key` for a plain read, and says whether this node's acceptor
    /// holds an accepted, uncommitted proposal for it stamped above the
    /// version read: once a majority accepted it, its proposer may have
    /// answered, and the commit may not have landed anywhere the read
    /// asks. Committed, the proposal would land above the version read
    /// (below it, last-write-wins keeps the version read: nothing to
    /// finish).
    ///
    /// For a key whose range lost data, the acceptor may have forgotten
    /// such a proposal: until it holds a record of the key above the
    /// range's floor it says "unfinished" all the same, and the read goes
    /// through a `SERIAL` read, whose majority of promises leaves it out.
    pub(super) fn read_with_paxos(
        &mut self,
        key: &[u8],
    ) -> Result<(Option<Versioned>, bool), ReplicaFailure> {
        let version = self.local_read(key)?;
        let (state, _) = self.load_paxos_state(key)?;
        let unfinished = state.accepted.as_ref().is_some_and(|p| {
            p.ballot > state.committed
                && Some(p.timestamp()) > version.as_ref().map(|v| v.timestamp)
        });
        if unfinished {
            enigma_engine::marks::hit(enigma_engine::Mark::ReadFoundUnfinishedPaxos);
        }
        let unsure = !self.options.bug_paxos_acceptor_forgets_loss
            && self
                .paxos_floor(key)
                .is_some_and(|floor| !state.knows_above(floor));
        if unsure && !unfinished {
            enigma_engine::marks::hit(enigma_engine::Mark::ReadUnsureAfterLoss);
        }
        Ok((version, unfinished || unsure))
    }

    /// Starts the `SERIAL` reads of the plain reads that met an unfinished
    /// Paxos proposal ([`Self::reads_through_paxos`]): each finishes what
    /// it finds in progress, then answers the client as a `SERIAL` read.
    pub(super) fn start_reads_through_paxos(&mut self, now: Now) {
        for (request, key, deadline_mono_nanos) in std::mem::take(&mut self.reads_through_paxos) {
            let seq = self.next_seq;
            self.next_seq += 1;
            self.start_serial(
                now,
                request,
                seq,
                ClientOp::Get { key },
                deadline_mono_nanos,
            );
        }
    }

    /// Whether a commit of `version` arrives later after its timestamp than
    /// a write may: refused then, as a late write would be, since tombstone
    /// purging counts on no version at or below a timestamp arriving later.
    fn commit_too_late(&self, now: Now, version: &WireVersion) -> bool {
        self.arrives_too_late(now, version.hlc)
    }

    /// The acceptor state of `key` and the timestamp it is stored under
    /// (a counter: each store writes the next).
    fn load_paxos_state(&mut self, key: &[u8]) -> Result<(AcceptorState, u64), ReplicaFailure> {
        let stored = self.local_read(&paxos_key(key))?;
        let unwritten = self.paxos_unwritten.get(key).cloned();
        let Some(stored) = stored else {
            return Ok((unwritten.unwrap_or_default(), 0));
        };
        if let Some(state) = unwritten {
            return Ok((state, stored.timestamp.hlc));
        }
        let stamp = stored.timestamp.hlc;
        match AcceptorState::from_stored(stored.value.as_deref()) {
            Some(state) => Ok((state, stamp)),
            None => {
                let reason = format!(
                    "the Paxos state of key {} does not decode",
                    String::from_utf8_lossy(key)
                );
                self.stats.storage_errors += 1;
                self.stats.last_storage_error = Some(reason.clone());
                Err(ReplicaFailure::Storage { reason })
            }
        }
    }

    /// Writes `state` of `key` (with the data `version`, atomically, for a
    /// commit); durable at the next flush, before any answer leaves.
    fn store_paxos_state(
        &mut self,
        key: &[u8],
        state: &AcceptorState,
        stamp: u64,
        version: Option<Versioned>,
    ) -> Result<(), ReplicaFailure> {
        if self.options.bug_paxos_promise_before_durable {
            // The planted bug: a promise or an acceptance stays in memory
            // (its answer then leaves without waiting for a sync); only a
            // commit writes the state.
            if version.is_none() {
                self.paxos_unwritten.insert(key.to_vec(), state.clone());
                return Ok(());
            }
            self.paxos_unwritten.remove(key);
        }
        let stored = Versioned {
            timestamp: Timestamp {
                hlc: stamp + 1,
                node: self.id.0,
            },
            value: Some(state.encode()),
        };
        let mut batch = Vec::with_capacity(2);
        if let Some(version) = version {
            batch.push((key.to_vec(), version));
        }
        batch.push((paxos_key(key), stored));
        match self.engine.write_batch(&batch) {
            Ok(_) => {
                self.wrote_since_flush = true;
                Ok(())
            }
            Err(e) => Err(self.storage_error(e)),
        }
    }

    /// Keeps a commit's version until the operation's deadline, so that
    /// the replicas that have not acknowledged it by then get a hint, as
    /// a plain write's silent replicas do (a lost commit message would
    /// otherwise wait for anti-entropy). A watch left by an earlier commit
    /// of the same operation (one that finished another proposer's value)
    /// hints its silent replicas now.
    fn watch_commit(
        &mut self,
        now: Now,
        op: OpId,
        key: &[u8],
        version: &Versioned,
        replicas: &[NodeId],
        deadline_mono_nanos: u64,
    ) {
        if let Some(earlier) = self.watches.remove(&op.seq) {
            self.watch_bytes -= earlier.bytes;
            for target in earlier.silent {
                self.store_hint(now, target, &earlier.key, &earlier.version);
            }
        }
        if !self.options.hints.enabled {
            return;
        }
        let silent: Vec<NodeId> = replicas.iter().copied().filter(|&r| r != self.id).collect();
        let bytes = (key.len() + version.value.as_ref().map_or(0, Vec::len)) as u64;
        if silent.is_empty() {
            return;
        }
        if self.watch_bytes + bytes > self.options.hint_watch_bytes_max {
            self.stats.hint_watches_dropped += 1;
            return;
        }
        self.watch_bytes += bytes;
        self.watches.insert(
            op.seq,
            HintWatch {
                deadline_mono_nanos,
                key: key.to_vec(),
                version: version.clone(),
                silent,
                bytes,
            },
        );
    }

    /// An acceptor's answer to one of this node's proposers.
    fn on_paxos_answer(&mut self, now: Now, from: NodeId, answer: Message) {
        let (op, step) = {
            let op = match &answer {
                Message::PaxosPromise { op, .. }
                | Message::PaxosAccepted { op, .. }
                | Message::PaxosCommitAck { op, .. }
                | Message::PaxosRefused { op, .. } => *op,
                _ => return,
            };
            if op.generation != self.generation {
                self.stats.messages_ignored += 1;
                return;
            }
            if let Message::PaxosCommitAck { .. } = answer {
                if let Some(watch) = self.watches.get_mut(&op.seq) {
                    watch.silent.retain(|&r| r != from);
                    if watch.silent.is_empty() {
                        let watch = self.watches.remove(&op.seq).expect("present");
                        self.watch_bytes -= watch.bytes;
                    }
                }
            }
            let Some(pending) = self.serial.get_mut(&op.seq) else {
                return;
            };
            let proposer = &mut pending.proposer;
            let step = match answer {
                Message::PaxosPromise {
                    ballot,
                    in_progress,
                    committed,
                    version,
                    ..
                } => proposer.on_promise(
                    from,
                    ballot,
                    Promise {
                        in_progress,
                        committed,
                        current: version.map(Into::into),
                    },
                ),
                Message::PaxosAccepted { ballot, .. } => proposer.on_accepted(from, ballot),
                Message::PaxosCommitAck { ballot, .. } => proposer.on_commit_ack(from, ballot),
                Message::PaxosRefused {
                    ballot, promised, ..
                } => proposer.on_refused(from, ballot, promised),
                _ => return,
            };
            (op, step)
        };
        self.advance_serial(now, op, step);
    }

    fn advance_serial(&mut self, now: Now, op: OpId, step: ProposerStep) {
        let Some(pending) = self.serial.get_mut(&op.seq) else {
            return;
        };
        match step {
            ProposerStep::Wait => {}
            ProposerStep::Propose(proposal) => {
                let (key, replicas) = (pending.key.clone(), pending.replicas.clone());
                for replica in replicas {
                    let message = Message::PaxosPropose {
                        op,
                        key: key.clone(),
                        proposal: proposal.clone(),
                    };
                    self.paxos_send(now, replica, message);
                }
            }
            ProposerStep::Commit { ballot, version } => self.send_commit(now, op, ballot, version),
            ProposerStep::Chosen {
                ballot,
                version,
                outcome,
            } => {
                // The answer does not wait for the commit: the value is
                // chosen. The commit still goes to every replica, watched
                // until the deadline like any commit; its acknowledgements
                // find no operation and only clear the watch.
                enigma_engine::marks::hit(enigma_engine::Mark::PaxosAnsweredOnceChosen);
                self.send_commit(now, op, ballot, version);
                let pending = self.serial.remove(&op.seq).expect("present above");
                self.answer_serial(pending, Ok(outcome));
            }
            ProposerStep::Restart { backoff: false } => self.serial_round(now, op.seq),
            ProposerStep::Restart { backoff: true } => {
                let wait = backoff_nanos(pending.proposer.rounds(), &mut self.rng);
                pending.retry_at_mono_nanos = Some(now.mono_nanos.saturating_add(wait));
            }
            ProposerStep::InDoubt => {
                let pending = self.serial.remove(&op.seq).expect("present above");
                let (answered, required) = (pending.proposer.answered(), pending.proposer.quorum());
                self.reply(
                    pending.request,
                    ClientResponse::Error(ClientError::Timeout { answered, required }),
                );
            }
            ProposerStep::Done(result) => {
                let pending = self.serial.remove(&op.seq).expect("present above");
                self.answer_serial(pending, result);
            }
        }
    }

    /// Sends the commit of `version` as of `ballot` to every replica of
    /// operation `op`'s key, and watches it for hints.
    fn send_commit(&mut self, now: Now, op: OpId, ballot: Ballot, version: Versioned) {
        let Some(pending) = self.serial.get(&op.seq) else {
            return;
        };
        let (key, replicas) = (pending.key.clone(), pending.replicas.clone());
        let deadline = pending.deadline_mono_nanos;
        self.watch_commit(now, op, &key, &version, &replicas, deadline);
        let wire: WireVersion = version.into();
        for replica in replicas {
            let message = Message::PaxosCommit {
                op,
                key: key.clone(),
                ballot,
                version: wire.clone(),
            };
            self.paxos_send(now, replica, message);
        }
    }

    fn answer_serial(
        &mut self,
        pending: SerialPending,
        result: Result<SerialOutcome, crate::paxos::ChangeError>,
    ) {
        let request = pending.request;
        let outcome = match result {
            Ok(outcome) => outcome,
            Err(e) => {
                let reason = e.to_string();
                return self.reply(
                    request,
                    ClientResponse::Error(ClientError::Invalid { reason }),
                );
            }
        };
        let shown = outcome.committed.as_ref().or(outcome.previous.as_ref());
        self.reply_version(request, shown.map(|v| v.timestamp));
        let previous = outcome.previous.and_then(|v| v.value);
        let response = match pending.answer_as {
            AnswerAs::Value => ClientResponse::Value(previous),
            AnswerAs::Written => ClientResponse::Written,
            AnswerAs::Conditional => {
                let applied = outcome.committed.is_some();
                let current = match outcome.committed {
                    Some(v) => v.value,
                    None => previous.clone(),
                };
                ClientResponse::Conditional {
                    applied,
                    previous,
                    current,
                }
            }
        };
        self.reply(request, response);
    }

    /// Answers `SERIAL` operations past their deadline with `Timeout`
    /// (unknown outcome: a proposal may yet be committed), and starts the
    /// rounds whose backoff is over.
    pub(super) fn expire_serial(&mut self, now: Now) {
        let expired: Vec<u64> = self
            .serial
            .iter()
            .filter(|(_, p)| p.deadline_mono_nanos <= now.mono_nanos)
            .map(|(&seq, _)| seq)
            .collect();
        for seq in expired {
            let pending = self.serial.remove(&seq).expect("listed above");
            let proposer = &pending.proposer;
            let error = if proposer.proposed_own() {
                ClientError::Timeout {
                    answered: proposer.answered(),
                    required: proposer.quorum(),
                }
            } else {
                ClientError::NotProposed {
                    rounds: proposer.rounds(),
                }
            };
            self.reply(pending.request, ClientResponse::Error(error));
        }
        let due: Vec<u64> = self
            .serial
            .iter()
            .filter(|(_, p)| p.retry_at_mono_nanos.is_some_and(|t| t <= now.mono_nanos))
            .map(|(&seq, _)| seq)
            .collect();
        for seq in due {
            self.serial_round(now, seq);
        }
    }
}
