//! The heal phase: faults stop, every node restarts, every link heals, and
//! a repair client reads every key at `ALL` (whose blocking read repair
//! brings every replica up to date); then the liveness phase.

use enigma_checker::Call;
use enigma_cluster::ConsistencyLevel;

use super::{Event, Phase, Simulation, HEAL_QUIET_NANOS, REPAIR_ATTEMPTS_MAX, REPAIR_RETRY_NANOS};

impl Simulation {
    /// Ends the safety phase: faults stop, every node restarts, every link
    /// heals; after a quiet period the repair pass starts.
    pub(super) fn start_heal(&mut self) {
        self.trace
            .record(self.now, &[5], || "heal: faults stop".to_owned());
        self.phase = Phase::Heal;
        self.net.heal();
        self.net.options.loss_probability = 0.0;
        self.net.options.duplicate_probability = 0.0;
        self.swizzle = None;
        for node in 0..self.slots.len() {
            self.slots[node].crash_armed = None;
            self.slots[node].paused_until = None;
            self.slots[node].disk.cancel_sync_failure();
            self.end_read_faults(node);
            self.end_disk_full(node);
            if self.slots[node].node.is_none() {
                self.start_node(node);
            }
        }
        self.schedule(HEAL_QUIET_NANOS, Event::RepairNext);
    }

    pub(super) fn repair_client(&self) -> usize {
        self.clients.len() - 1
    }

    pub(super) fn on_repair_next(&mut self) {
        if !self.durability_checked {
            // Every node is up and the network quiet; nothing has read
            // repaired a replica since the faults stopped.
            self.durability_checked = true;
            for index in 0..self.slots.len() {
                self.check_durability(index, "before the repair pass");
            }
        }
        let Some(key) = self.keys.get(self.repair_key).cloned() else {
            self.start_liveness();
            return;
        };
        let node = self.repair_key % self.slots.len();
        let client = self.repair_client();
        self.repair_attempts += 1;
        self.issue(client, node, key, Call::Read, ConsistencyLevel::All);
    }

    pub(super) fn after_repair_read(&mut self, succeeded: bool) {
        if succeeded {
            self.repair_key += 1;
            self.repair_attempts = 0;
            self.schedule(0, Event::RepairNext);
        } else if self.repair_attempts >= REPAIR_ATTEMPTS_MAX {
            let key = self.keys[self.repair_key].clone();
            self.violate(
                "liveness",
                format!("repair read of {key} at ALL failed {REPAIR_ATTEMPTS_MAX} times with every node up and no faults"),
            );
            self.schedule(0, Event::Finish);
        } else {
            self.schedule(REPAIR_RETRY_NANOS, Event::RepairNext);
        }
    }
}
