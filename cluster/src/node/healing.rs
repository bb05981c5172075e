//! What a node does on its own, tick by tick, so that the cluster heals
//! without clients: gossip and failure detection, hinted handoff,
//! anti-entropy with its gate on tombstone purging, and the engine's
//! background work.

use std::ops::Bound;

use enigma_engine::{BackgroundReport, BuggifySite, Disk, EngineError, Timestamp, Versioned};

use super::{Node, BACKGROUND_RETRY_AFTER_FAILURE_NANOS};
use crate::anti_entropy::{Action, AntiEntropy};
use crate::gossip::{choose_targets, GossipRefusal, MemberState, Merged, SelfReadings};
use crate::hints::Dropped;
use crate::hlc::{HlcClock, LOGICAL_BITS};
use crate::ids::{NodeId, Now};
use crate::keyspace::{
    client_keys_end, decode_hint, encode_hint, hint_key, hints_end, hints_start, is_system,
    parse_hint_key, StoredHint,
};
use crate::message::{Message, WireVersion};
use crate::purge::PurgeGate;

impl<D: Disk> Node<D> {
    pub(super) fn on_tick(&mut self, now: Now) {
        self.expire(now);
        self.expire_serial(now);
        if self.detector.tick(now.mono_nanos) {
            // This node was paused: its peers kept gossiping unheard.
            // Gossip at once, so news comes back before anyone is judged.
            self.next_gossip_mono_nanos = now.mono_nanos;
        }
        if now.mono_nanos >= self.next_gossip_mono_nanos {
            self.gossip_round(now);
            self.next_gossip_mono_nanos = now
                .mono_nanos
                .saturating_add(self.options.gossip_interval_nanos);
        }
        self.replay_hints(now);
        if self.damage.stale() && now.mono_nanos >= self.background_retry_mono_nanos {
            self.drop_stale_data(now);
        }
        if !self.damage.stale() {
            // What it holds now may be pushed to peers.
            self.run_anti_entropy(now);
        }
        self.set_purge_horizon(now);
        if now.mono_nanos >= self.background_retry_mono_nanos {
            self.background_work(now);
        }
        self.handle_damage(now);
        if let Err(e) = self.engine.sync_if_due(now.mono_nanos) {
            if !matches!(e, EngineError::NoSpace { .. }) {
                self.fatal = Some(e);
            } else {
                self.note_no_space();
            }
        }
    }

    // ----- gossip and failure detection -----

    pub(super) fn self_readings(&self, now: Now) -> SelfReadings {
        SelfReadings {
            wall_nanos: now.wall_nanos,
            hlc: self.hlc.last(),
            hints_pending: self.hints.held_total() as u64,
            repair_completed_wall_nanos: self.anti_entropy.oldest_repair_wall_nanos(),
        }
    }

    fn gossip_round(&mut self, now: Now) {
        let readings = self.self_readings(now);
        let states = self.gossip.syn(readings);
        let (live, down): (Vec<NodeId>, Vec<NodeId>) = self
            .ring
            .nodes()
            .iter()
            .copied()
            .filter(|&n| n != self.id)
            .partition(|&n| self.detector.is_up(n, now.mono_nanos));
        for target in choose_targets(&live, &down, &mut self.rng) {
            self.send(
                target,
                Message::GossipSyn {
                    states: states.clone(),
                },
            );
        }
    }

    pub(super) fn on_gossip_syn(&mut self, now: Now, from: NodeId, states: Vec<MemberState>) {
        match self
            .gossip
            .on_syn(self.ring.nodes(), states, now.wall_nanos)
        {
            Ok((merged, better)) => {
                self.heard(now, merged);
                self.send(from, Message::GossipAck { states: better });
            }
            Err(refusal) => self.refuse_gossip(refusal),
        }
    }

    pub(super) fn on_gossip_ack(&mut self, now: Now, _from: NodeId, states: Vec<MemberState>) {
        match self
            .gossip
            .on_ack(self.ring.nodes(), states, now.wall_nanos)
        {
            Ok(merged) => self.heard(now, merged),
            Err(refusal) => self.refuse_gossip(refusal),
        }
    }

    fn refuse_gossip(&mut self, _refusal: GossipRefusal) {
        enigma_engine::marks::hit(enigma_engine::Mark::GossipRefused);
        self.stats.gossip_refused += 1;
    }

    /// Tells the failure detector what gossip brought.
    fn heard(&mut self, now: Now, merged: Merged) {
        for node in merged.restarted {
            self.detector.restarted(node, now.mono_nanos);
        }
        for node in merged.heartbeats {
            self.detector.heartbeat(node, now.mono_nanos);
        }
        for node in merged.shutting_down {
            self.detector.shut_down(node);
        }
    }

    // ----- hinted handoff -----

    /// Rebuilds the index of hints held from storage.
    pub(super) fn recover_hints(&mut self) -> Result<(), EngineError> {
        let (start, end) = (hints_start(), hints_end());
        let hints = &mut self.hints;
        self.engine.scan_with(
            Bound::Included(start.as_slice()),
            Bound::Excluded(end.as_slice()),
            false,
            |key, _, value| {
                if let (Some((target, id)), Some(value)) = (parse_hint_key(key), value) {
                    let created_wall_nanos = (id >> LOGICAL_BITS).saturating_mul(1_000);
                    hints.recovered(NodeId(target), id, value.len() as u64, created_wall_nanos);
                }
                true
            },
        )
    }

    /// Stores a hint of `version` of `key` for `target`, durable with the
    /// next flush; the oldest hints of the target make room if needed.
    pub(super) fn store_hint(&mut self, now: Now, target: NodeId, key: &[u8], version: &Versioned) {
        if !self.options.hints.enabled {
            return;
        }
        let id = self.hlc.tick(now.wall_nanos);
        let value = encode_hint(&StoredHint {
            key: key.to_vec(),
            timestamp: version.timestamp,
            value: version.value.clone(),
        });
        let dropped = self
            .hints
            .admit(target, id, value.len() as u64, now.wall_nanos);
        let refused = dropped.iter().any(|d| d.id == id);
        self.delete_hints(now, &dropped);
        if refused {
            return;
        }
        let stored = Versioned {
            timestamp: Timestamp {
                hlc: id,
                node: self.id.0,
            },
            value: Some(value),
        };
        if self.local_write(&hint_key(target.0, id), stored).is_err() {
            self.hints.discard(target, id);
        }
    }

    /// Deletes hints from storage (a tombstone each; compaction purges them
    /// past the grace period, no repair needed for the node's own keys).
    fn delete_hints(&mut self, now: Now, hints: &[Dropped]) {
        for hint in hints {
            let tombstone = Versioned {
                timestamp: Timestamp {
                    hlc: self.hlc.tick(now.wall_nanos),
                    node: self.id.0,
                },
                value: None,
            };
            // A hint whose delete fails is deleted again when replayed.
            let _ = self.local_write(&hint_key(hint.target.0, hint.id), tombstone);
        }
    }

    fn replay_hints(&mut self, now: Now) {
        let expired = self.hints.expired(now.wall_nanos);
        self.delete_hints(now, &expired);
        let detector = &self.detector;
        let due = self
            .hints
            .due(now.mono_nanos, |n| detector.is_up(n, now.mono_nanos));
        for hint in due {
            let stored = match self.engine.get(&hint_key(hint.target.0, hint.id)) {
                Ok(Some(Versioned {
                    value: Some(bytes), ..
                })) => decode_hint(&bytes),
                Ok(_) => None,
                Err(e) => {
                    let _ = self.storage_error(e);
                    None
                }
            };
            let Some(stored) = stored else {
                // Gone or unreadable: nothing to deliver.
                self.hints.discard(hint.target, hint.id);
                continue;
            };
            self.send(
                hint.target,
                Message::Hint {
                    id: hint.id,
                    key: stored.key,
                    version: WireVersion {
                        hlc: stored.timestamp.hlc,
                        node: stored.timestamp.node,
                        value: stored.value,
                    },
                },
            );
            if self.options.bug_delete_hints_on_send
                && self.hints.acknowledged(hint.target, hint.id)
            {
                self.delete_hints(now, &[hint]);
            }
        }
    }

    pub(super) fn on_hint(
        &mut self,
        now: Now,
        from: NodeId,
        id: u64,
        key: Vec<u8>,
        version: WireVersion,
    ) {
        if is_system(&key) || !self.ring.replicas(&key).contains(&self.id) {
            enigma_engine::marks::hit(enigma_engine::Mark::HintRefused);
            self.stats.hints_refused += 1;
            return;
        }
        if !self.mutation_acceptable(now, from, &key, &version, true) {
            return;
        }
        if self.write_and_acknowledge(&key, version).is_ok() {
            self.send(from, Message::HintAck { id });
        }
    }

    pub(super) fn on_hint_ack(&mut self, now: Now, from: NodeId, id: u64) {
        if self.hints.acknowledged(from, id) {
            self.delete_hints(now, &[Dropped { target: from, id }]);
        } else {
            self.stats.messages_ignored += 1;
        }
    }

    // ----- anti-entropy -----

    fn run_anti_entropy(&mut self, now: Now) {
        let detector = &self.detector;
        let hlc = &mut self.hlc;
        let actions = self.anti_entropy.tick(
            now.mono_nanos,
            |n| detector.is_up(n, now.mono_nanos),
            || hlc.tick(now.wall_nanos),
        );
        self.carry_out(now, actions);
        let scans = self.anti_entropy.scans();
        if scans.is_empty() {
            return;
        }
        let available = self.anti_entropy.scan_budget(now.mono_nanos);
        if available == 0 {
            return;
        }
        let budget = (available / scans.len() as u64).max(1);
        let mut spent_total = 0u64;
        for scan in scans {
            let start = match &scan.resume_after {
                Some(key) => Bound::Excluded(key.as_slice()),
                None => Bound::Unbounded,
            };
            let mut last_key: Option<Vec<u8>> = None;
            let mut spent = 0u64;
            let mut paused = false;
            let anti_entropy = &mut self.anti_entropy;
            let result =
                self.engine
                    .scan_with(start, client_keys_end(), false, |key, timestamp, value| {
                        let last = last_key.get_or_insert_with(Vec::new);
                        last.clear();
                        last.extend_from_slice(key);
                        spent += AntiEntropy::entry_cost(key, value);
                        let go_on = anti_entropy.feed(scan.owner, key, timestamp, value);
                        paused = !go_on || spent >= budget;
                        !paused
                    });
            spent_total += spent;
            let actions = match result {
                Ok(()) => {
                    self.anti_entropy
                        .scan_stopped(scan.owner, last_key, !paused, now.mono_nanos)
                }
                Err(e) => {
                    let _ = self.storage_error(e);
                    self.anti_entropy.scan_failed(scan.owner, now.mono_nanos)
                }
            };
            self.carry_out(now, actions);
        }
        self.anti_entropy.scanned(spent_total);
    }

    pub(super) fn on_repair_message(&mut self, now: Now, from: NodeId, message: Message) {
        if self.damage.stale() {
            // Nothing it holds may leave, and nothing it takes in counts,
            // until the stale data is dropped: the peer's session times out.
            self.stats.messages_ignored += 1;
            return;
        }
        let actions = self.anti_entropy.on_message(from, message, now.mono_nanos);
        self.carry_out(now, actions);
    }

    fn carry_out(&mut self, now: Now, actions: Vec<Action>) {
        let mut actions = std::collections::VecDeque::from(actions);
        while let Some(action) = actions.pop_front() {
            match action {
                Action::Send { to, message } => self.send(to, message),
                Action::ApplyThenAck { entries, to, ack } => {
                    // Streamed entries are versions a replica already held:
                    // never refused for age, but for their clock.
                    let mut applied = true;
                    for (key, version) in entries {
                        if !self.mutation_acceptable(now, to, &key, &version, false) {
                            applied = false;
                            break;
                        }
                        // Durable with this flush, and acknowledged.
                        if self.write_and_acknowledge(&key, version).is_err() {
                            applied = false;
                        }
                    }
                    if applied {
                        self.send(to, ack);
                    } else if let Message::RepairDataAck { session, .. } = ack {
                        // Received, not applied: no repair may count it.
                        if !self.options.bug_repair_counts_unapplied_pull {
                            actions.extend(self.anti_entropy.apply_failed(session, now.mono_nanos));
                        }
                    }
                }
                Action::Repaired { range } => {
                    self.anti_entropy.set_repaired_wall(range, now.wall_nanos);
                    if let Some(repaired) = self.anti_entropy.repaired()[range] {
                        self.damage_repaired(range, repaired.started_hlc);
                    }
                    self.install_purge_gate();
                }
                Action::PassFinished(finished) => {
                    self.reply_repaired(finished.request, finished.report)
                }
            }
        }
    }

    // ----- tombstone purging -----

    /// Gives the engine the gate built from the ranges' latest repairs.
    pub(super) fn install_purge_gate(&mut self) {
        // A range that lost data counts as never repaired until it is.
        let repaired = self
            .anti_entropy
            .repaired()
            .iter()
            .enumerate()
            .map(|(range, r)| r.filter(|_| !self.purge_held(range)).map(|r| r.started_hlc))
            .collect();
        let gate = PurgeGate::new(
            self.anti_entropy.ranges().clone(),
            repaired,
            HlcClock::physical(self.options.write_lateness_max_nanos()),
            self.options.bug_purge_tombstones_without_repair,
        );
        self.engine
            .set_tombstone_purge_guard(Some(Box::new(move |key: &[u8], timestamp| {
                gate.allows(key, timestamp)
            })));
    }

    /// Tombstones older than the grace period may be purged, where the
    /// gate allows.
    fn set_purge_horizon(&mut self, now: Now) {
        let horizon = now.wall_nanos.saturating_sub(self.options.gc_grace_nanos);
        self.engine.set_tombstone_purge_before(Some(Timestamp {
            hlc: HlcClock::physical(horizon),
            node: 0,
        }));
    }

    // ----- the engine's background work -----

    /// Holds background work (and a pending drop of stale data) for a
    /// while after a failure, so that a full disk is not hammered.
    pub(super) fn retry_background_later(&mut self, now: Now) {
        self.background_retry_mono_nanos = now
            .mono_nanos
            .saturating_add(BACKGROUND_RETRY_AFTER_FAILURE_NANOS);
    }

    /// Runs the engine's background work within the tick's budget. A
    /// failure is counted; one that poisoned the engine makes the node
    /// fatal, so nothing more is acknowledged.
    ///
    /// The call is skipped while the last one found nothing to do and
    /// nothing that could give it work has happened since: no memtable
    /// waits for a flush or is full, and the number of tables is the same
    /// (only flushes and compactions change the tables, and each changes
    /// their number). Skipping can only postpone work, never lose it.
    fn background_work(&mut self, now: Now) {
        let engine = &self.engine;
        let idle = !self.buggify.enabled(BuggifySite::MemtableFrozenEarly)
            && !engine.background_job_in_progress()
            && self.background_idle_at_tables == Some(engine.tables_total())
            && engine.frozen_total() == 0
            && engine.memtable_bytes() < engine.options().memtable_bytes_max;
        if idle {
            return;
        }
        self.background_idle_at_tables = None;
        let budget = if self.buggify.fires(BuggifySite::BackgroundBatchCut) {
            enigma_engine::marks::hit(enigma_engine::Mark::BuggifyBackgroundBatchCut);
            1
        } else {
            self.options.background_bytes_per_tick
        };
        let steps_max = self.options.background_steps_per_tick;
        match self.engine.do_background_steps(budget, steps_max) {
            Ok(BackgroundReport {
                tables_flushed,
                compactions,
                work_pending,
                ..
            }) => {
                self.stats.tables_flushed += tables_flushed as u64;
                self.stats.compactions += compactions as u64;
                if tables_flushed + compactions > 0 && !self.engine.log_stalled_for_space() {
                    self.stats.no_space = false;
                }
                if tables_flushed == 0 && compactions == 0 && !work_pending {
                    self.background_idle_at_tables = Some(self.engine.tables_total());
                }
            }
            Err(EngineError::NoSpace { .. }) => {
                // Counted and reported once per episode, retried later.
                self.note_no_space();
                self.retry_background_later(now);
            }
            Err(e) => {
                self.retry_background_later(now);
                enigma_engine::marks::hit(enigma_engine::Mark::BackgroundJobFailed);
                self.stats.background_errors += 1;
                self.stats.last_background_error = Some(e.to_string());
                let poisoned = self.engine.poisoned_reason().map(str::to_owned);
                match (e, poisoned) {
                    (e @ EngineError::Poisoned { .. }, _) => self.fatal = Some(e),
                    (_, Some(reason)) => self.fatal = Some(EngineError::Poisoned { reason }),
                    (_, None) => {}
                }
            }
        }
    }
}
