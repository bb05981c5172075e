//! The checks of a run: each replica's durability against what it
//! acknowledged, background failures, and at the end the history's
//! promises and the replicas' convergence.

use std::collections::BTreeMap;

use enigma_checker::format::ParsedHistory;
use enigma_checker::{
    check_promises, Call, CheckOptions, Outcome, PromiseInput, PromiseReport, ReplicaVersion,
    Status, Version,
};
use enigma_cluster::Node;

use super::{facts_of, levels_of, Phase, RunReport, Simulation, Violation};
use crate::config::SimWorkload;
use crate::disk::SimDisk;

impl Simulation {
    /// A failed background job on a disk the simulator injected nothing
    /// into (beyond crashes) is a bug; it must never pass silently. Also
    /// sums the node's storage errors into the run's statistics.
    pub(super) fn note_background_errors(&mut self, index: usize, node: &Node<SimDisk>) {
        let stats = node.stats();
        self.stats.storage_errors += stats.storage_errors;
        // Bad reads and failed syncs the simulator injected make a failed
        // job expected; on a disk that only crashes, it is a bug.
        if stats.background_errors > 0 && !self.slots[index].disk_faulted {
            let id = self.slots[index].id;
            let last = stats.last_background_error.clone().unwrap_or_default();
            self.violate(
                "storage",
                format!(
                    "{id}: {} background flush or compaction job(s) failed, the last with: {last}",
                    stats.background_errors
                ),
            );
        }
    }

    /// Every version `index` acknowledged as durable must still be there, or
    /// a newer one: replication would hide a replica that lost it. A loss is
    /// reported once: the node is then held to what it has.
    pub(super) fn check_durability(&mut self, index: usize, when: &str) {
        if self.holds_damage(index) {
            // It lost acknowledged versions to damage the simulator put
            // there: held again once repaired (`run/damage.rs`).
            return;
        }
        let slot = &mut self.slots[index];
        let Some(node) = &slot.node else {
            return;
        };
        let mut lost = Vec::new();
        let mut lowered = Vec::new();
        for (key, &(acked, tombstone)) in &slot.acknowledged {
            let held = match node.engine().get(key) {
                Ok(version) => version.map(|v| v.timestamp),
                Err(e) => {
                    lost.push((
                        "integrity",
                        format!(
                            "{} cannot read {} {when}: {e}",
                            slot.id,
                            String::from_utf8_lossy(key)
                        ),
                    ));
                    continue;
                }
            };
            // A tombstone may since have been purged: absence is then
            // what it promised. So may a newer tombstone this node applied
            // but never acknowledged (its batch's sync failed or a crash
            // cut it), if it reached the disk all the same.
            let newer_tombstone = slot
                .unacknowledged_tombstones
                .get(key)
                .is_some_and(|&deleted| deleted > acked);
            let purged = held.is_none() && (tombstone || newer_tombstone);
            if !purged && held.is_none_or(|held| held < acked) {
                lowered.push((key.clone(), held));
                let holds = held.map_or_else(
                    || "nothing".to_owned(),
                    |t| format!("version hlc {} by n{}", t.hlc, t.node),
                );
                lost.push((
                    "durability",
                    format!(
                        "{} acknowledged {} at version hlc {} by n{}, but {when} holds {holds}",
                        slot.id,
                        String::from_utf8_lossy(key),
                        acked.hlc,
                        acked.node
                    ),
                ));
            }
        }
        for (key, held) in lowered {
            match held {
                Some(held) => slot.acknowledged.insert(key, (held, false)),
                None => slot.acknowledged.remove(&key),
            };
        }
        for (property, details) in lost {
            self.violate(property, details);
        }
    }

    pub(super) fn finish(mut self) -> RunReport {
        if self.phase != Phase::Done && self.violations.is_empty() {
            self.violate(
                "liveness",
                "the event queue ran dry before the run finished".to_owned(),
            );
        }
        for index in 0..self.slots.len() {
            if let Some(node) = self.slots[index].node.take() {
                self.absorb_stats(&node);
                self.note_background_errors(index, &node);
                self.slots[index].node = Some(node);
            }
        }
        let replicas = self.replica_states();
        if let Some(replicas) = &replicas {
            let pending = self.accepted_uncommitted();
            self.check_final_state(replicas, &pending);
            if self.config.workload == SimWorkload::Incr {
                self.check_counters(replicas);
            }
        }
        let promises = self.check_history(replicas.as_ref());
        for op in self.history.operations() {
            match op.outcome() {
                enigma_checker::Outcome::Ok { .. } => self.stats.ops_ok += 1,
                enigma_checker::Outcome::Fail | enigma_checker::Outcome::Refused => {
                    self.stats.ops_fail += 1
                }
                enigma_checker::Outcome::Info => self.stats.ops_info += 1,
            }
        }
        self.count_counter_outcomes();
        let (messages, round_trips) = self.paxos_cost.uncontended();
        self.stats.paxos_cas_messages = messages;
        self.stats.paxos_cas_round_trips = round_trips;
        RunReport {
            digest: self.trace.digest(),
            swarm: self.swarm,
            violations: self.violations,
            stats: self.stats,
            timeline: self.trace.lines().map(<[String]>::to_vec),
            history: self.history,
            counter: self.counter,
            versions: self.versions,
            promises,
            facts: facts_of(&self.config, self.clock_skew),
            config: self.config,
            marks: enigma_engine::MarkCounts::default(),
        }
    }

    /// Every check the run's levels promise (linearizability where
    /// promised, lost writes, session guarantees, convergence), through the
    /// checker's one selection; each violation becomes a run violation.
    pub(super) fn check_history(
        &mut self,
        replicas: Option<&BTreeMap<String, Vec<ReplicaVersion>>>,
    ) -> PromiseReport {
        let levels = levels_of(&self.config, &self.history);
        let history = ParsedHistory::Register(std::mem::take(&mut self.history));
        let report = check_promises(
            &PromiseInput {
                history: &history,
                levels: &levels,
                versions: &self.versions,
                facts: facts_of(&self.config, self.clock_skew),
                replicas,
            },
            &CheckOptions::default(),
            &|| false,
        );
        if let ParsedHistory::Register(h) = history {
            self.history = h;
        }
        for result in &report.checks {
            match result.status {
                Status::Passed | Status::NotApplicable => {}
                Status::Violated => self.violate(result.check.name(), result.note.clone()),
                Status::Unknown => self.violate(
                    result.check.name(),
                    format!("checker could not decide: {}", result.note),
                ),
            }
        }
        report
    }

    /// What every replica of every key holds after the heal phase, for
    /// the convergence check (a tombstone reads as nothing: see
    /// [`Simulation::replica_versions`]); `None` when the run did not get
    /// that far. A replica that is down or cannot be read is a violation of
    /// its own.
    pub(super) fn replica_states(&mut self) -> Option<BTreeMap<String, Vec<ReplicaVersion>>> {
        if self.phase != Phase::Done || self.unhealed {
            return None;
        }
        let states = self.replica_versions();
        let rf = self.cluster.replication_factor;
        for (key, replicas) in &states {
            if replicas.len() != rf {
                let present: Vec<u32> = replicas.iter().map(|r| r.node).collect();
                self.violations.push(Violation {
                    property: "convergence",
                    details: format!(
                        "only replicas {present:?} of {key} are up and readable at the end of the run"
                    ),
                });
            }
        }
        Some(states)
    }

    /// The converged state must hold, for every key, a version at least as
    /// new as every acknowledged write and delete of it: a value older than
    /// an acknowledged delete is a deleted value come back (a
    /// *resurrection*: a tombstone purged while a replica still held what
    /// it deleted), and absence where an acknowledged value should be is a
    /// write lost from every replica. Absence is what a purged tombstone
    /// leaves, so it passes when the newest acknowledged mutation is a
    /// delete, or when a delete of unknown outcome may have been. An
    /// acknowledged `SERIAL` write that every prepare majority would find
    /// as an accepted, uncommitted proposal (`pending`, by key) is not
    /// lost: its commits were, and the next read through Paxos finishes
    /// it; it is counted instead ([`super::RunStats::chosen_uncommitted_at_end`]).
    fn check_final_state(
        &mut self,
        states: &BTreeMap<String, Vec<ReplicaVersion>>,
        pending: &BTreeMap<String, Version>,
    ) {
        // Per key: the newest acknowledged mutation (version, is a delete),
        // and whether a delete of unknown outcome exists.
        let mut newest: BTreeMap<&str, (Version, bool)> = BTreeMap::new();
        let mut unknown_delete: BTreeMap<&str, bool> = BTreeMap::new();
        for op in self.history.operations() {
            let Call::Write(value) = &op.call else {
                continue;
            };
            match op.outcome() {
                Outcome::Ok { .. } => {
                    if let Some(&version) = self.versions.get(&op.id) {
                        let entry = newest
                            .entry(op.key.as_str())
                            .or_insert((version, value.is_none()));
                        if entry.0 < version {
                            *entry = (version, value.is_none());
                        }
                    }
                }
                Outcome::Info if value.is_none() => {
                    unknown_delete.insert(op.key.as_str(), true);
                }
                _ => {}
            }
        }
        let mut found = Vec::new();
        for (key, replicas) in states {
            let Some((acked, deleted)) = newest.get(key.as_str()).copied() else {
                continue;
            };
            let all_same = replicas.windows(2).all(|w| w[0].version == w[1].version);
            let Some(first) = replicas.first().filter(|_| all_same) else {
                continue; // the convergence check reports it
            };
            if pending.get(key).is_some_and(|&p| p >= acked) {
                let held_older = first.version.as_ref().is_none_or(|held| {
                    Version {
                        timestamp: held.hlc,
                        writer: u64::from(held.writer),
                    } < acked
                });
                if held_older {
                    self.stats.chosen_uncommitted_at_end += 1;
                    continue;
                }
            }
            match &first.version {
                None if deleted || unknown_delete.contains_key(key.as_str()) => {}
                None => found.push((
                    "final-state",
                    format!(
                        "every replica of {key} holds nothing, but a write of version hlc {} by n{} was acknowledged",
                        acked.timestamp, acked.writer
                    ),
                )),
                Some(held) => {
                    let held_version = Version {
                        timestamp: held.hlc,
                        writer: u64::from(held.writer),
                    };
                    if held_version < acked {
                        let (property, what) = if deleted {
                            ("resurrection", "a delete")
                        } else {
                            ("final-state", "a write")
                        };
                        found.push((
                            property,
                            format!(
                                "every replica of {key} holds {held}, older than {what} of version hlc {} by n{} that was acknowledged",
                                acked.timestamp, acked.writer
                            ),
                        ));
                    }
                }
            }
        }
        for (property, details) in found {
            self.violate(property, details);
        }
    }
}
