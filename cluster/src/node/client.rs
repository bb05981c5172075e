//! Coordinating client operations: replicas chosen by the ring and judged
//! by the failure detector, quorums counted, read repair carried out,
//! deadlines kept, silent replicas hinted, and the client session's floors
//! kept ([`crate::SessionFloor`]): a write stamped above what its session
//! saw, a read answering nothing older than what its session saw of the
//! key.

use enigma_engine::{BuggifySite, Disk, Timestamp, Versioned};

use super::{HintWatch, Node, Pending};
use crate::consistency::ConsistencyLevel;
use crate::coordinator::{data_replica, PendingRead, PendingWrite, ReadProgress};
use crate::hlc::HlcClock;
use crate::ids::{NodeId, Now, OpId, RequestId};
use crate::keyspace::is_system;
use crate::message::{
    ClientError, ClientOp, ClientRequest, ClientResponse, Message, ReplicaFailure, SessionFloor,
    VersionDigest,
};

/// Whether `version` (`None`: the key is absent) is at or above `floor`
/// (`None`: no floor).
fn meets_floor(version: Option<&Versioned>, floor: Option<Timestamp>) -> bool {
    match floor {
        None => true,
        Some(floor) => version.is_some_and(|v| v.timestamp >= floor),
    }
}

impl<D: Disk> Node<D> {
    pub(super) fn on_client(&mut self, now: Now, request: RequestId, body: ClientRequest) {
        if body.op == ClientOp::Repair {
            return self.anti_entropy.request_full_pass(request, now.mono_nanos);
        }
        if let Err(reason) = self
            .validate(&body.op)
            .and_then(|()| self.validate_serial(&body))
        {
            return self.reply(
                request,
                ClientResponse::Error(ClientError::Invalid { reason }),
            );
        }
        let rf = self.ring.replication_factor();
        let Some(mut required) = body.level.replicas_required(rf) else {
            let reason = format!(
                "consistency level {} needs more than {rf} replicas",
                body.level
            );
            return self.reply(
                request,
                ClientResponse::Error(ClientError::Invalid { reason }),
            );
        };
        if self.pending_operations() >= self.options.requests_pending_max {
            let pending = self.pending_operations();
            return self.reply(
                request,
                ClientResponse::Error(ClientError::Overloaded { pending }),
            );
        }
        let session = if self.options.bug_ignore_session_floors {
            SessionFloor::default()
        } else {
            body.session
        };
        let is_write = !matches!(body.op, ClientOp::Get { .. });
        if is_write {
            if let Some(error) = self.clock_refusal() {
                return self.reply(request, ClientResponse::Error(error));
            }
            if let Some(error) = self.adopt_session_floor(now, session.seen) {
                return self.reply(request, ClientResponse::Error(error));
            }
        }
        let floor = session.key;
        let replicas = self.ring.replicas(body.op.key());
        // Replicas this node holds down are not waited on: too few up and
        // the operation is refused at once, nothing applied (Cassandra's
        // UnavailableException).
        let up: Vec<NodeId> = if self.options.bug_wait_on_down_replicas {
            replicas.clone()
        } else {
            replicas
                .iter()
                .copied()
                .filter(|&r| self.believes_up(r))
                .collect()
        };
        if is_write && required == 1 && replicas.contains(&self.id) && replicas.len() > 1 {
            // Its own replica alone would take a timestamp no peer has
            // checked: until this node has judged its clock against its
            // peers', a peer's acknowledgement (a peer refuses a timestamp
            // too far ahead of its own clock) must vouch for the stamp.
            if let Some(heard) = self.clock_unjudged() {
                if !up.iter().any(|&r| r != self.id && self.believes_up(r)) {
                    enigma_engine::marks::hit(enigma_engine::Mark::ClockUnjudgedRefused);
                    self.stats.writes_refused_clock += 1;
                    let reason = format!(
                        "this node has not yet compared its clock with a majority of its peers ({heard}); until then a write needs a peer's acknowledgement beside its own, and no other replica of the key is up"
                    );
                    return self.reply(
                        request,
                        ClientResponse::Error(ClientError::Clock { reason }),
                    );
                }
                required = 2;
            }
        }
        if up.len() < required {
            enigma_engine::marks::hit(enigma_engine::Mark::Unavailable);
            self.stats.unavailable += 1;
            return self.reply(
                request,
                ClientResponse::Error(ClientError::Unavailable {
                    alive: up.len(),
                    required,
                }),
            );
        }
        let deadline_mono_nanos = now
            .mono_nanos
            .saturating_add(self.options.request_timeout_nanos);
        let op = OpId {
            generation: self.generation,
            seq: self.next_seq,
        };
        self.next_seq += 1;
        if body.level == ConsistencyLevel::Serial {
            return self.start_serial(now, request, op.seq, body.op, deadline_mono_nanos);
        }
        if is_write
            && body.level == ConsistencyLevel::Quorum
            && self.options.bug_ack_quorum_writes_after_one_replica
        {
            required = 1;
        }
        // The local replica alone decides when the level needs one answer:
        // the operation completes within this step and never waits in
        // `pending`. Remote replicas get the same messages as on the slow
        // path (a write must reach them; a read's answers come back to an
        // operation that is already gone and are ignored, as they would be
        // after the first answer decided it).
        let local_decides = required == 1 && replicas.contains(&self.id);
        match body.op {
            ClientOp::Get { key } if local_decides => {
                self.send_remote_reads(op, &key, &up);
                match self.local_read(&key) {
                    Ok(version) if meets_floor(version.as_ref(), floor) => {
                        let timestamp = version.as_ref().map(|v| v.timestamp);
                        self.local_counted_unsynced.push(op.seq);
                        self.answer_after_commit_wait(
                            op.seq,
                            request,
                            ClientResponse::Value(version.and_then(|v| v.value)),
                            timestamp,
                        );
                    }
                    local => {
                        // Storage failed here, or this replica holds
                        // something older than the session saw: wait for
                        // a remote answer.
                        let read =
                            PendingRead::new(request, key, replicas, required, deadline_mono_nanos)
                                .planting_trust_in_the_data(
                                    self.options.bug_read_trusts_the_data_over_digests,
                                )
                                .with_floor(floor, now.mono_nanos);
                        self.pending.insert(op.seq, Pending::Read(read));
                        match local {
                            Ok(version) => self.on_read_reply(op, self.id, version, false),
                            Err(failure) => self.on_read_failure(op, self.id, failure),
                        }
                    }
                }
            }
            ClientOp::Get { key } => {
                let read = PendingRead::new(
                    request,
                    key.clone(),
                    replicas.clone(),
                    required,
                    deadline_mono_nanos,
                )
                .planting_trust_in_the_data(self.options.bug_read_trusts_the_data_over_digests)
                .with_floor(floor, now.mono_nanos)
                .finishing_unfinished_paxos(matches!(
                    body.level,
                    ConsistencyLevel::Quorum | ConsistencyLevel::All
                ));
                self.pending.insert(op.seq, Pending::Read(read));
                self.send_remote_reads(op, &key, &up);
                if replicas.contains(&self.id) {
                    self.read_locally(op, &key);
                }
            }
            ClientOp::Put { key, value } => {
                let write = PendingWrite::new(request, replicas, required, deadline_mono_nanos)
                    .planting_count_duplicates(self.options.bug_count_duplicate_acknowledgements);
                self.start_write(now, op, key, Some(value), write, &up);
            }
            ClientOp::Delete { key } => {
                let write = PendingWrite::new(request, replicas, required, deadline_mono_nanos)
                    .planting_count_duplicates(self.options.bug_count_duplicate_acknowledgements);
                self.start_write(now, op, key, None, write, &up);
            }
            ClientOp::Repair => unreachable!("handled above"),
            ClientOp::Cas { .. } => unreachable!("validated as SERIAL, started above"),
        }
    }

    /// Takes in the newest version the client's session saw (`seen`)
    /// before this node stamps the session's write, so that the write is
    /// stamped above it whichever node coordinated what the session saw.
    /// The error (counted) when `seen` is further ahead of this node's
    /// wall clock than the bound: it comes from other nodes' clocks, and is
    /// refused as a peer's reading would be, rather than dragging this
    /// node's clock along.
    fn adopt_session_floor(&mut self, now: Now, seen: Option<Timestamp>) -> Option<ClientError> {
        let seen = seen?;
        if self.too_far_ahead(now, seen.hlc) {
            enigma_engine::marks::hit(enigma_engine::Mark::SessionFloorRefused);
            self.stats.session_floors_refused += 1;
            let ahead_ms =
                HlcClock::wall_nanos_of(seen.hlc).saturating_sub(now.wall_nanos) / 1_000_000;
            return Some(ClientError::Clock {
                reason: format!(
                    "this session has seen a version stamped {ahead_ms} ms ahead of this node's clock, beyond the cluster's bound of {} ms (clock_offset_max_ms); this node cannot stamp the write above it",
                    self.options.clock_offset_max_nanos / 1_000_000
                ),
            });
        }
        self.hlc.observe(seen.hlc);
        None
    }

    /// Asks every replica of pending read `seq` this node holds up for its
    /// version again: its session's floor was met by no answer, and a hint
    /// or a repair may have brought the version since.
    fn ask_again(&mut self, seq: u64) {
        let Some(Pending::Read(read)) = self.pending.get(&seq) else {
            return;
        };
        let key = read.key.clone();
        let replicas = read.replicas.clone();
        let op = OpId {
            generation: self.generation,
            seq,
        };
        enigma_engine::marks::hit(enigma_engine::Mark::SessionFloorAskedAgain);
        self.stats.session_floor_reads_asked_again += 1;
        for &replica in &replicas {
            if replica != self.id && self.believes_up(replica) {
                let key = key.clone();
                self.send(replica, Message::ReadDigest { op, key });
            }
        }
        if replicas.contains(&self.id) {
            self.read_locally(op, &key);
        }
    }

    /// Answers pending read `op` from this node's own replica, with its
    /// report of an unfinished Paxos proposal.
    fn read_locally(&mut self, op: OpId, key: &[u8]) {
        match self.read_with_paxos(key) {
            Ok((version, unfinished)) => self.on_read_reply(op, self.id, version, unfinished),
            Err(failure) => self.on_read_failure(op, self.id, failure),
        }
    }

    /// Asks every replica of `key` in `up` but this node for its version:
    /// one for the value (none if this node is a replica and has it), the
    /// others for a digest.
    fn send_remote_reads(&mut self, op: OpId, key: &[u8], up: &[NodeId]) {
        let me = self.id;
        let data_from = data_replica(me, up, op.seq);
        for &replica in up.iter().filter(|&&r| r != me) {
            let key = key.to_vec();
            let message = if Some(replica) == data_from {
                Message::Read { op, key }
            } else {
                Message::ReadDigest { op, key }
            };
            self.send(replica, message);
        }
    }

    fn start_write(
        &mut self,
        now: Now,
        op: OpId,
        key: Vec<u8>,
        value: Option<Vec<u8>>,
        write: PendingWrite,
        up: &[NodeId],
    ) {
        let timestamp = Timestamp {
            hlc: self.hlc.tick(now.wall_nanos),
            node: self.id.0,
        };
        let tombstone = value.is_none();
        let version = Versioned { timestamp, value };
        let me = self.id;
        let local = write.replicas.contains(&me);
        if !local {
            // This node's store would hold the timestamp nowhere: the
            // clock mark keeps it, in this group commit, for the restart.
            if let Err(failure) = self.store_clock_mark(timestamp) {
                let reason = failure.to_string();
                let error = match failure {
                    ReplicaFailure::NoSpace { .. } => ClientError::NoSpace { reason },
                    _ => ClientError::Storage { reason },
                };
                return self.reply(write.request, ClientResponse::Error(error));
            }
        }
        let mut down = Vec::new();
        for i in 0..write.replicas.len() {
            let replica = write.replicas[i];
            if replica == me {
                continue;
            }
            if up.contains(&replica) {
                self.send(
                    replica,
                    Message::Write {
                        op,
                        key: key.clone(),
                        version: version.clone().into(),
                    },
                );
            } else {
                down.push(replica);
            }
        }
        // Replicas held down get their hint now, in this group commit;
        // those written to are watched until the deadline.
        for target in down {
            self.store_hint(now, target, &key, &version);
        }
        self.watch(op, &write, &key, &version, up);
        if local && write.required == 1 {
            // The local replica alone decides: acknowledge within this step
            // (once the flush makes it durable) without waiting in
            // `pending`; later acknowledgements find nothing and are
            // ignored, as they would be after the first one decided it.
            match self.local_write(&key, version) {
                Ok(()) => {
                    self.acknowledged(&key, timestamp, tombstone);
                    self.local_counted_unsynced.push(op.seq);
                    self.answer_after_commit_wait(
                        op.seq,
                        write.request,
                        ClientResponse::Written,
                        Some(timestamp),
                    );
                }
                Err(failure) => {
                    self.pending.insert(op.seq, Pending::Write(write));
                    self.write_stamps.insert(op.seq, timestamp);
                    self.on_write_failure(op, me, failure);
                }
            }
            return;
        }
        self.pending.insert(op.seq, Pending::Write(write));
        self.write_stamps.insert(op.seq, timestamp);
        if local {
            match self.local_write(&key, version) {
                Ok(()) => {
                    self.acknowledged(&key, timestamp, tombstone);
                    self.on_write_ack(op, self.id);
                }
                Err(failure) => self.on_write_failure(op, me, failure),
            }
        }
    }

    /// Keeps `version` of `key` until the deadline, so the replicas in `up`
    /// that stay silent get a hint then; within
    /// [`super::NodeOptions::hint_watch_bytes_max`], else counted and left
    /// to anti-entropy.
    fn watch(
        &mut self,
        op: OpId,
        write: &PendingWrite,
        key: &[u8],
        version: &Versioned,
        up: &[NodeId],
    ) {
        if !self.options.hints.enabled {
            return;
        }
        let silent: Vec<NodeId> = up.iter().copied().filter(|&r| r != self.id).collect();
        if silent.is_empty() {
            return;
        }
        let bytes = (key.len() + version.value.as_ref().map_or(0, Vec::len)) as u64;
        if self.watch_bytes + bytes > self.options.hint_watch_bytes_max {
            enigma_engine::marks::hit(enigma_engine::Mark::HintWatchDropped);
            self.stats.hint_watches_dropped += 1;
            return;
        }
        self.watch_bytes += bytes;
        self.watches.insert(
            op.seq,
            HintWatch {
                deadline_mono_nanos: write.deadline_mono_nanos,
                key: key.to_vec(),
                version: version.clone(),
                silent,
                bytes,
            },
        );
    }

    fn validate(&self, op: &ClientOp) -> Result<(), String> {
        let limits = &self.options.engine;
        if op.key().len() > limits.key_bytes_max {
            return Err(format!(
                "key of {} bytes exceeds {}",
                op.key().len(),
                limits.key_bytes_max
            ));
        }
        if is_system(op.key()) {
            return Err("keys starting with the bytes FF FF are reserved".to_owned());
        }
        if let ClientOp::Put { value, .. } = op {
            if value.len() > limits.value_bytes_max {
                return Err(format!(
                    "value of {} bytes exceeds {}",
                    value.len(),
                    limits.value_bytes_max
                ));
            }
        }
        Ok(())
    }

    /// Whether an answer is meant for an earlier incarnation of this node
    /// (its operation id carries an earlier boot generation): it must not
    /// count toward a new operation that reuses the sequence number.
    fn answer_is_stale(&self, op: OpId) -> bool {
        let stale = op.generation != self.generation
            && !self.options.bug_count_answers_of_earlier_generations;
        if stale {
            enigma_engine::marks::hit(enigma_engine::Mark::StaleAnswerIgnored);
        }
        stale
    }

    /// A conditional operation needs `SERIAL`; at `SERIAL` the key and
    /// value must leave room for the Paxos state kept beside them.
    fn validate_serial(&self, body: &ClientRequest) -> Result<(), String> {
        let serial = body.level == ConsistencyLevel::Serial;
        if matches!(body.op, ClientOp::Cas { .. }) && !serial {
            return Err(format!(
                "conditional writes and increments need consistency level SERIAL, not {}",
                body.level
            ));
        }
        if !serial || body.op == ClientOp::Repair {
            return Ok(());
        }
        let limits = &self.options.engine;
        let key_max = limits
            .key_bytes_max
            .saturating_sub(crate::keyspace::PAXOS_KEY_OVERHEAD_BYTES);
        if body.op.key().len() > key_max {
            return Err(format!(
                "key of {} bytes exceeds {key_max} at SERIAL",
                body.op.key().len()
            ));
        }
        let value_max = limits
            .value_bytes_max
            .saturating_sub(crate::paxos::STATE_OVERHEAD_BYTES);
        let value = match &body.op {
            ClientOp::Put { value, .. }
            | ClientOp::Cas {
                change: crate::paxos::Change::Put(value),
                ..
            } => value.len(),
            _ => 0,
        };
        if value > value_max {
            return Err(format!(
                "value of {value} bytes exceeds {value_max} at SERIAL"
            ));
        }
        Ok(())
    }

    pub(super) fn on_write_ack(&mut self, op: OpId, from: NodeId) {
        if self.answer_is_stale(op) {
            self.stats.messages_ignored += 1;
            return;
        }
        if from == self.id {
            self.local_counted_unsynced.push(op.seq);
        }
        if let Some(watch) = self.watches.get_mut(&op.seq) {
            watch.silent.retain(|&r| r != from);
            if watch.silent.is_empty() {
                let watch = self.watches.remove(&op.seq).expect("present");
                self.watch_bytes -= watch.bytes;
            }
        }
        match self.pending.get_mut(&op.seq) {
            Some(Pending::Write(write)) => {
                let request = write.request;
                if write.on_ack(from) && !write.held_to_deadline {
                    if self.buggify.fires(BuggifySite::ReplyAtDeadline) {
                        enigma_engine::marks::hit(enigma_engine::Mark::BuggifyReplyAtDeadline);
                        // Succeeded, answered only at its deadline.
                        write.held_to_deadline = true;
                        return;
                    }
                    self.pending.remove(&op.seq);
                    let stamp = self.write_stamps.remove(&op.seq);
                    self.answer_after_commit_wait(op.seq, request, ClientResponse::Written, stamp);
                }
            }
            None => {}
            Some(Pending::Read(read)) => {
                let progress = read.on_repair_ack(from);
                self.advance_read(op, progress);
            }
        }
    }

    /// Takes back this node's own acknowledgements and answers counted
    /// since the last completed sync, which a full disk kept from becoming
    /// durable: the operations go on with the other replicas, or fail.
    pub(super) fn retract_local_counts(&mut self, failure: &ReplicaFailure) {
        let me = self.id;
        for seq in std::mem::take(&mut self.local_counted_unsynced) {
            let op = OpId {
                generation: self.generation,
                seq,
            };
            match self.pending.get_mut(&seq) {
                Some(Pending::Write(write)) => {
                    if let Some(error) = write.retract(me, failure.clone()) {
                        let request = write.request;
                        self.pending.remove(&seq);
                        self.write_stamps.remove(&seq);
                        self.reply(request, ClientResponse::Error(error));
                    }
                }
                Some(Pending::Read(read)) => {
                    let progress = read.retract(me, failure.clone());
                    self.advance_read(op, progress);
                }
                None => self.retract_commit_wait(seq, failure),
            }
        }
    }

    /// `from` could not take the write of `op`: the write fails at once if
    /// the level can no longer be met.
    pub(super) fn on_write_failure(&mut self, op: OpId, from: NodeId, failure: ReplicaFailure) {
        if self.answer_is_stale(op) {
            self.stats.messages_ignored += 1;
            return;
        }
        if let Some(Pending::Write(write)) = self.pending.get_mut(&op.seq) {
            if let Some(error) = write.on_failure(from, failure) {
                let request = write.request;
                self.pending.remove(&op.seq);
                self.write_stamps.remove(&op.seq);
                self.reply(request, ClientResponse::Error(error));
            }
        }
    }

    /// `from` could not read the key of `op`.
    pub(super) fn on_read_failure(&mut self, op: OpId, from: NodeId, failure: ReplicaFailure) {
        if self.answer_is_stale(op) {
            self.stats.messages_ignored += 1;
            return;
        }
        if let Some(Pending::Read(read)) = self.pending.get_mut(&op.seq) {
            let progress = read.on_failure(from, failure);
            self.advance_read(op, progress);
        } else if failure.is_corruption() {
            // The read finished without `from`: repair it all the same.
            if let Some((key, winner)) = self.recent_reads.find(op.seq) {
                let (key, winner) = (key.to_vec(), winner.clone());
                self.repair_replica(op, from, key, winner);
            }
        }
    }

    /// Takes in `from`'s digest of the key of `op`.
    pub(super) fn on_digest_reply(
        &mut self,
        op: OpId,
        from: NodeId,
        digest: Option<VersionDigest>,
        unfinished: bool,
    ) {
        if self.answer_is_stale(op) {
            self.stats.messages_ignored += 1;
        } else if let Some(Pending::Read(read)) = self.pending.get_mut(&op.seq) {
            if unfinished {
                read.note_unfinished_paxos(from);
            }
            let progress = read.on_digest(from, digest);
            self.advance_read(op, progress);
        }
    }

    pub(super) fn on_read_reply(
        &mut self,
        op: OpId,
        from: NodeId,
        version: Option<Versioned>,
        unfinished: bool,
    ) {
        if self.answer_is_stale(op) {
            self.stats.messages_ignored += 1;
            return;
        }
        if from == self.id {
            self.local_counted_unsynced.push(op.seq);
        }
        if let Some(Pending::Read(read)) = self.pending.get_mut(&op.seq) {
            if unfinished {
                read.note_unfinished_paxos(from);
            }
            let progress = read.on_answer(from, version);
            self.advance_read(op, progress);
        }
    }

    fn advance_read(&mut self, op: OpId, progress: ReadProgress) {
        match progress {
            ReadProgress::Waiting => {}
            ReadProgress::Done(value) => {
                if let Some(Pending::Read(read)) = self.pending.remove(&op.seq) {
                    if read.must_finish_paxos() && !self.options.bug_read_ignores_unfinished_paxos {
                        // A replica holds a proposal a majority may have
                        // accepted, its proposer answered, and its commit
                        // not landed where this read asked: finish it as a
                        // `SERIAL` read would, and answer that read's value
                        // (at least as new as this one's: read repair put
                        // this read's winner on the replicas it counted).
                        enigma_engine::marks::hit(enigma_engine::Mark::ReadFinishedThroughPaxos);
                        self.repair_corrupt(op, &read);
                        let deadline = read.deadline_mono_nanos;
                        self.reads_through_paxos
                            .push((read.request, read.key.clone(), deadline));
                        return;
                    }
                    self.answer_after_commit_wait(
                        op.seq,
                        read.request,
                        ClientResponse::Value(value),
                        read.decided_timestamp(),
                    );
                    self.repair_corrupt(op, &read);
                }
            }
            ReadProgress::Failed(error) => {
                if let Some(Pending::Read(read)) = self.pending.remove(&op.seq) {
                    self.reply(read.request, ClientResponse::Error(error));
                }
            }
            ReadProgress::Fetch { from } => {
                let Some(Pending::Read(read)) = self.pending.get(&op.seq) else {
                    return;
                };
                let key = read.key.clone();
                self.send(from, Message::Read { op, key });
            }
            ReadProgress::Repair { winner, stale } => {
                enigma_engine::marks::hit(enigma_engine::Mark::ReadRepair);
                let Some(Pending::Read(read)) = self.pending.get(&op.seq) else {
                    return;
                };
                let key = read.key.clone();
                let me = self.id;
                for &replica in stale.iter().filter(|&&r| r != me) {
                    self.stats.read_repairs += 1;
                    self.send(
                        replica,
                        Message::RepairWrite {
                            op,
                            key: key.clone(),
                            version: winner.clone().into(),
                        },
                    );
                }
                if stale.contains(&self.id) {
                    self.stats.read_repairs += 1;
                    let timestamp = winner.timestamp;
                    let tombstone = winner.value.is_none();
                    if self.local_write(&key, winner).is_ok() {
                        self.acknowledged(&key, timestamp, tombstone);
                        self.on_write_ack(op, self.id);
                    }
                }
            }
        }
    }

    /// Writes the winner of a finished read back to the replicas whose copy
    /// was corrupt: the newer (or equal) version shadows the bad entry.
    fn repair_corrupt(&mut self, op: OpId, read: &PendingRead) {
        let Some(winner) = read.winner() else {
            return;
        };
        self.recent_reads.remember(op.seq, &read.key, winner);
        for replica in read.corrupt_replicas() {
            self.repair_replica(op, replica, read.key.clone(), winner.clone());
        }
    }

    /// Writes `winner` of `key` to `replica`, whose copy was corrupt.
    fn repair_replica(&mut self, op: OpId, replica: NodeId, key: Vec<u8>, winner: Versioned) {
        enigma_engine::marks::hit(enigma_engine::Mark::CorruptReplicaRepaired);
        self.stats.read_repairs += 1;
        if replica == self.id {
            let timestamp = winner.timestamp;
            let tombstone = winner.value.is_none();
            if self.local_write(&key, winner).is_ok() {
                self.acknowledged(&key, timestamp, tombstone);
            }
        } else {
            let version = winner.into();
            self.send(replica, Message::RepairWrite { op, key, version });
        }
    }

    /// Answers operations past their deadline with `Timeout`, and hints the
    /// replicas that stayed silent on writes past theirs.
    pub(super) fn expire(&mut self, now: Now) {
        let expired: Vec<u64> = self
            .pending
            .iter()
            .filter(|(_, p)| match p {
                Pending::Write(w) => w.deadline_mono_nanos <= now.mono_nanos,
                Pending::Read(r) => r.deadline_mono_nanos <= now.mono_nanos,
            })
            .map(|(&seq, _)| seq)
            .collect();
        for seq in expired {
            let stamp = self.write_stamps.remove(&seq);
            let (request, error) = match self.pending.remove(&seq) {
                Some(Pending::Write(w)) if w.held_to_deadline => {
                    self.reply_version(w.request, stamp);
                    self.reply(w.request, ClientResponse::Written);
                    continue;
                }
                Some(Pending::Write(w)) => (
                    w.request,
                    ClientError::Timeout {
                        answered: w.acked.len(),
                        required: w.required,
                    },
                ),
                Some(Pending::Read(r)) => (r.request, r.deadline_error()),
                None => continue,
            };
            self.reply(request, ClientResponse::Error(error));
        }
        let ask_again: Vec<u64> = self
            .pending
            .iter_mut()
            .filter_map(|(&seq, pending)| match pending {
                Pending::Read(read) => read.should_ask_again(now.mono_nanos).then_some(seq),
                Pending::Write(_) => None,
            })
            .collect();
        for seq in ask_again {
            self.ask_again(seq);
        }
        let due: Vec<u64> = self
            .watches
            .iter()
            .filter(|(_, w)| w.deadline_mono_nanos <= now.mono_nanos)
            .map(|(&seq, _)| seq)
            .collect();
        for seq in due {
            let watch = self.watches.remove(&seq).expect("listed above");
            self.watch_bytes -= watch.bytes;
            for target in watch.silent {
                self.store_hint(now, target, &watch.key, &watch.version);
            }
        }
    }
}
