//! The heal phase: faults stop, every node restarts, every link heals, and
//! the cluster must converge on its own. Nothing reads the keys to repair
//! them: hinted handoff and anti-entropy must bring every replica of every
//! key to the same version, and repair every range a node lost data in,
//! within [`CONVERGENCE_BOUND_NANOS`], or the run fails with a liveness
//! violation naming a key that did not converge or a node still refusing a
//! damaged range.
//! Once converged, the liveness phase starts; once it ends, the same wait
//! runs again before the final checks.

use std::collections::BTreeMap;

use enigma_checker::{ReplicaVersion, StoredVersion, Version};
use enigma_cluster::ids::NodeId;
use enigma_cluster::Node;

use crate::disk::SimDisk;

use super::{
    Event, Phase, Simulation, CONVERGENCE_BOUND_NANOS, CONVERGENCE_POLL_NANOS, SETTLE_NANOS,
};

impl Simulation {
    /// Ends the safety phase: faults stop, every node restarts, every link
    /// heals; from now on the replicas must converge by themselves.
    pub(super) fn start_heal(&mut self) {
        self.trace
            .record(self.now, &[5], || "heal: faults stop".to_owned());
        self.phase = Phase::Heal;
        self.heal_started_nanos = self.now;
        self.note_faults_stop();
        self.stop_faults();
        self.schedule(CONVERGENCE_POLL_NANOS, Event::ConvergencePoll);
    }

    /// Stops every fault: links healed, no loss, every node restarted,
    /// each running node's storage held to what it acknowledged.
    pub(super) fn stop_faults(&mut self) {
        self.net.heal();
        self.net.options.loss_probability = 0.0;
        self.net.options.duplicate_probability = 0.0;
        self.net.options.straggle_probability = 0.0;
        self.swizzle = None;
        for node in 0..self.slots.len() {
            // An operator sets a clock far off right.
            let clock = &mut self.slots[node].clock;
            if clock.wall_bound_nanos == 0 && self.clock_offset_nanos_max > 0 {
                clock.offset_nanos = 0;
                clock.wall_bound_nanos = self.clock_offset_nanos_max;
            }
            self.slots[node].crash_armed = None;
            self.slots[node].crash_loop.clear();
            self.slots[node].paused_until = None;
            self.slots[node].disk.cancel_sync_failure();
            self.end_read_faults(node);
            // A node whose disk is full, or was until lately and has not yet
            // written what waited for space, refuses reads of those keys.
            let was_full = self.slots[node].disk_full_until.is_some()
                || self.slots[node]
                    .node
                    .as_ref()
                    .is_some_and(|n| n.stats().no_space);
            self.end_disk_full(node);
            if self.slots[node].node.is_none() {
                self.start_node(node);
            } else if was_full {
                self.durability_deferred.push(node);
            } else {
                self.check_durability(node, "when the faults stopped");
            }
        }
    }

    /// Looks whether every replica of every key holds the same version, no
    /// hint waits anywhere and no node refuses a range as damaged (at `ALL`
    /// such a node fails every operation); starts the liveness phase once
    /// that has held
    /// for [`SETTLE_NANOS`], or fails the run past the bound.
    pub(super) fn on_convergence_poll(&mut self) {
        for node in std::mem::take(&mut self.durability_deferred) {
            self.check_durability(node, "once space was back after the faults stopped");
        }
        let states = self.replica_versions();
        let diverged = first_diverged(&states, self.cluster.replication_factor);
        let hints_held: usize = self
            .slots
            .iter()
            .filter_map(|s| s.node.as_ref())
            .map(|n| n.hints_held())
            .sum();
        let damaged = self
            .slots
            .iter()
            .filter_map(|s| s.node.as_ref())
            .map(|n| (n.id(), n.ranges_damaged()))
            .find(|&(_, ranges)| ranges > 0);
        let settling = self.phase == Phase::Settling;
        let started = if settling {
            self.settle_started_nanos
        } else {
            self.heal_started_nanos
        };
        let elapsed = self.now - started;
        if diverged.is_none() && hints_held == 0 && damaged.is_none() {
            let since = *self.converged_since_nanos.get_or_insert(self.now);
            if settling {
                self.schedule(0, Event::Finish);
                return;
            }
            if self.now - since >= SETTLE_NANOS {
                self.stats.converge_nanos = Some(since - self.heal_started_nanos);
                self.trace.record(self.now, &[8], || {
                    format!(
                        "heal: converged {:.1}s after the faults stopped",
                        (since - self.heal_started_nanos) as f64 / 1e9
                    )
                });
                self.start_liveness();
                return;
            }
        } else {
            self.converged_since_nanos = None;
        }
        if elapsed >= CONVERGENCE_BOUND_NANOS {
            let what = match diverged {
                Some((key, replicas)) => format!(
                    "replicas of {key} still differ: {}",
                    replicas
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                None => match damaged {
                    Some((node, ranges)) => {
                        format!("{node} still refuses {ranges} repair range(s) as damaged")
                    }
                    None => format!("{hints_held} hint(s) still undelivered"),
                },
            };
            let after = if settling {
                "the liveness phase ending"
            } else {
                "the faults stopping"
            };
            self.violate(
                "liveness",
                format!(
                    "the cluster did not converge within {}s of {after}, by hints and anti-entropy alone: {what}",
                    CONVERGENCE_BOUND_NANOS / 1_000_000_000
                ),
            );
            self.schedule(0, Event::Finish);
            return;
        }
        self.schedule(CONVERGENCE_POLL_NANOS, Event::ConvergencePoll);
    }

    /// The replicas of `key` that are running, with their ids.
    fn running_replicas<'a>(
        &'a self,
        key: &str,
    ) -> impl Iterator<Item = (NodeId, &'a Node<SimDisk>)> + 'a {
        self.ring
            .replicas(key.as_bytes())
            .into_iter()
            .filter_map(|id| {
                let slot = self
                    .slots
                    .iter()
                    .find(|s| s.id == id)
                    .expect("replica is a member");
                slot.node.as_ref().map(|node| (id, node))
            })
    }

    /// What every replica of every key holds now, as the convergence check
    /// sees it: a tombstone reads as nothing, since compaction may purge it
    /// on one replica before another (once its range is repaired) and both
    /// read as absent. A replica that is down or unreadable is left out.
    pub(super) fn replica_versions(&self) -> BTreeMap<String, Vec<ReplicaVersion>> {
        let mut states = BTreeMap::new();
        for key in &self.keys {
            let mut versions = Vec::new();
            for (id, node) in self.running_replicas(key) {
                if let Ok(version) = node.engine().get(key.as_bytes()) {
                    versions.push(ReplicaVersion {
                        node: id.0,
                        version: version
                            .filter(|v| v.value.is_some())
                            .map(|v| StoredVersion {
                                hlc: v.timestamp.hlc,
                                writer: v.timestamp.node,
                                value: v.value,
                            }),
                    });
                }
            }
            states.insert(key.clone(), versions);
        }
        states
    }

    /// Per key, the proposal the next read through Paxos would finish, as
    /// the version its commit would write: the newest one a replica holds
    /// accepted and not committed, when every prepare majority must hear
    /// from a replica that holds it. A value chosen whose commits were lost
    /// (its proposer died as they left) lives on there. Prepare majorities
    /// come from the replicas that would promise now: a replica whose
    /// range lost data withholds its promise for a key it knows nothing of
    /// above its floor.
    pub(super) fn accepted_uncommitted(&self) -> BTreeMap<String, Version> {
        let majority = self.cluster.replication_factor / 2 + 1;
        let mut pending = BTreeMap::new();
        for key in &self.keys {
            let acceptors: Vec<_> = self
                .running_replicas(key)
                .filter_map(|(_, node)| node.paxos_acceptor(key.as_bytes()).ok())
                .collect();
            let newest = acceptors
                .iter()
                .filter_map(|(state, _)| {
                    state
                        .accepted
                        .as_ref()
                        .filter(|p| p.ballot > state.committed)
                })
                .max_by_key(|p| p.ballot);
            let Some(newest) = newest else {
                continue;
            };
            let promisers_without = acceptors
                .iter()
                .filter(|(state, promises)| {
                    *promises
                        && state
                            .accepted
                            .as_ref()
                            .is_none_or(|p| p.ballot != newest.ballot)
                })
                .count();
            if promisers_without < majority {
                pending.insert(
                    key.clone(),
                    Version {
                        timestamp: newest.stamp_hlc,
                        writer: u64::from(newest.stamp_node),
                    },
                );
            }
        }
        pending
    }
}

/// The first key whose `rf` replicas are not all up, readable and holding
/// the same version.
fn first_diverged(
    states: &BTreeMap<String, Vec<ReplicaVersion>>,
    rf: usize,
) -> Option<(&String, &Vec<ReplicaVersion>)> {
    states.iter().find(|(_, replicas)| {
        replicas.len() != rf || replicas.windows(2).any(|w| w[0].version != w[1].version)
    })
}
