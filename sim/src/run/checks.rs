//! The checks of a run: each replica's durability against what it
//! acknowledged, background failures, and at the end the history's
//! promises and the replicas' convergence.

use std::collections::BTreeMap;

use enigma_checker::format::ParsedHistory;
use enigma_checker::{
    check_promises, CheckOptions, PromiseInput, PromiseReport, ReplicaVersion, Status,
    StoredVersion,
};
use enigma_cluster::{Node, Ring};

use super::{facts_of, levels_of, Phase, RunReport, Simulation, Violation};
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
        let slot = &mut self.slots[index];
        let Some(node) = &slot.node else {
            return;
        };
        let mut lost = Vec::new();
        let mut lowered = Vec::new();
        for (key, &acked) in &slot.acknowledged {
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
            if held.is_none_or(|held| held < acked) {
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
                Some(held) => slot.acknowledged.insert(key, held),
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
                self.stats.tables_flushed += node.stats().tables_flushed;
                self.stats.compactions += node.stats().compactions;
                self.stats.buggify_fired += node.buggify_fired();
                self.note_background_errors(index, &node);
                self.slots[index].node = Some(node);
            }
        }
        let replicas = self.replica_states();
        let promises = self.check_history(replicas.as_ref());
        for op in self.history.operations() {
            match op.outcome() {
                enigma_checker::Outcome::Ok { .. } => self.stats.ops_ok += 1,
                enigma_checker::Outcome::Fail => self.stats.ops_fail += 1,
                enigma_checker::Outcome::Info => self.stats.ops_info += 1,
            }
        }
        RunReport {
            digest: self.trace.digest(),
            swarm: self.swarm,
            violations: self.violations,
            stats: self.stats,
            timeline: self.trace.lines().map(<[String]>::to_vec),
            history: self.history,
            versions: self.versions,
            promises,
            facts: facts_of(&self.config, self.clock_skew),
            config: self.config,
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

    /// What every replica of every key holds after repair, for the
    /// convergence check; `None` when the run did not get that far. A
    /// replica that is down or cannot be read is a violation of its own.
    pub(super) fn replica_states(&mut self) -> Option<BTreeMap<String, Vec<ReplicaVersion>>> {
        if self.phase != Phase::Done {
            return None;
        }
        let ring = Ring::new(
            &self.cluster.nodes,
            self.cluster.vnodes_per_node,
            self.cluster.replication_factor,
        )
        .expect("the configuration was validated");
        let mut replicas = BTreeMap::new();
        for key in &self.keys {
            let mut versions = Vec::new();
            for id in ring.replicas(key.as_bytes()) {
                let slot = self
                    .slots
                    .iter()
                    .find(|s| s.id == id)
                    .expect("replica is a member");
                let Some(node) = &slot.node else {
                    self.violations.push(Violation {
                        property: "convergence",
                        details: format!("replica {id} of {key} is down at the end of the run"),
                    });
                    continue;
                };
                match node.engine().get(key.as_bytes()) {
                    Ok(version) => versions.push(ReplicaVersion {
                        node: id.0,
                        version: version.map(|v| StoredVersion {
                            hlc: v.timestamp.hlc,
                            writer: v.timestamp.node,
                            value: v.value,
                        }),
                    }),
                    Err(e) => self.violations.push(Violation {
                        property: "integrity",
                        details: format!("replica {id} cannot read {key}: {e}"),
                    }),
                }
            }
            replicas.insert(key.clone(), versions);
        }
        Some(replicas)
    }
}
