//! What the node does about damaged stored bytes: records the loss before
//! the engine quarantines the table, drops what it still holds of the
//! ranges that lost data, refuses reads of them, holds their purging and
//! serves them again once repaired ([`crate::damage`] holds the rules;
//! this file carries them out).

use enigma_engine::{Disk, EngineError};

use super::Node;
use crate::damage;
use crate::ids::Now;
use crate::keyspace::{is_system, paxos_client_key};
use crate::message::ReplicaFailure;

impl<D: Disk> Node<D> {
    /// Ranges this node refuses to serve until they are repaired.
    pub fn ranges_damaged(&self) -> usize {
        self.damage.damaged_total()
    }

    /// Resolves a rebuilt node's marks to this start's clock reading (at
    /// the first step, when the wall clock is known). No session a peer
    /// started before can count: a completion counts only for sessions
    /// this incarnation took part in (`anti_entropy`), whose trees it
    /// built from what it holds now. No margin is added: the marks seed
    /// the clock at the next start, and a mark ahead of the wall clock
    /// would push every later stamp ahead with it.
    pub(super) fn resolve_damage_marks(&mut self, now: Now) {
        if !self.damage.has_unresolved() {
            return;
        }
        let reading = self.hlc.tick(now.wall_nanos);
        self.damage.resolve_since_start(reading);
        self.store_damage();
    }

    /// Asks the engine to confirm the tables it suspects; if any is
    /// damaged, marks every range this node replicates (with the ballot
    /// mark as its Paxos floor: the table may have held acceptor state),
    /// makes the mark
    /// durable and only then lets the engine quarantine the tables (so a
    /// crash in between leaves the mark, never a loss nothing records).
    pub(super) fn handle_damage(&mut self, now: Now) {
        let confirmed = self.engine.confirm_damage();
        if confirmed.is_empty() {
            return;
        }
        let reading = self.hlc.tick(now.wall_nanos);
        let mine = self.anti_entropy.ranges_mine().to_vec();
        self.damage.mark(&mine, reading, self.ballot_mark);
        self.install_purge_gate();
        if !self.store_damage() {
            // Not durable: no quarantine yet (the tables stay confirmed,
            // and are tried again at the next tick).
            return;
        }
        match self.engine.quarantine_confirmed() {
            Ok(quarantined) => {
                self.stats.tables_quarantined += quarantined.len() as u64;
                for table in &quarantined {
                    self.stats.last_storage_error = Some(format!(
                        "quarantined {} ({}): {} repair ranges refused until repaired",
                        table.file,
                        table.error,
                        self.damage.damaged_total()
                    ));
                }
            }
            Err(e) => {
                self.note_quarantine_failure(e);
                return;
            }
        }
        self.drop_stale_data(now);
    }

    /// Drops every version this node holds of its damaged ranges, as of
    /// the latest loss ([`damage::Damage::stale`]): a version that a lost
    /// tombstone hid must not reach a peer that purged the tombstone. Until
    /// it succeeds the node takes no part in anti-entropy (`on_tick`,
    /// `on_repair_message`); a failure is retried after a pause.
    pub(super) fn drop_stale_data(&mut self, now: Now) {
        if !self.damage.stale() {
            return;
        }
        if !self.options.bug_damaged_node_keeps_stale_data {
            // What goes may hold this node's highest stamps (writes taken
            // since the loss too), and some may reach no peer to come back:
            // the clock must stay above them at every later start.
            if self.damage.raise_clock_floor(self.hlc.last()) && !self.store_damage() {
                self.retry_background_later(now);
                return;
            }
            let ranges = self.anti_entropy.ranges();
            let damage = &self.damage;
            let dropped = |key: &[u8]| !is_system(key) && damage.is_damaged(ranges.of_key(key));
            if let Err(e) = self.engine.drop_keys(&dropped) {
                self.retry_background_later(now);
                if matches!(e, EngineError::NoSpace { .. }) {
                    self.note_no_space();
                } else {
                    self.note_quarantine_failure(e);
                }
                return;
            }
            enigma_engine::marks::hit(enigma_engine::Mark::DamagedDataDropped);
            self.stats.damaged_data_drops += 1;
        }
        self.damage.dropped();
        // Not durable: a restart only drops again.
        self.store_damage();
    }

    fn note_quarantine_failure(&mut self, e: EngineError) {
        self.stats.background_errors += 1;
        self.stats.last_background_error = Some(format!("quarantine: {e}"));
        if let Some(reason) = self.engine.poisoned_reason() {
            self.fatal = Some(EngineError::Poisoned {
                reason: reason.to_owned(),
            });
        }
    }

    /// Writes the damage record; returns whether it is durable.
    pub(super) fn store_damage(&mut self) -> bool {
        match damage::store(self.engine.disk(), &self.damage) {
            Ok(()) => true,
            Err(e) => {
                self.stats.background_errors += 1;
                self.stats.last_background_error = Some(format!("damage record: {e}"));
                false
            }
        }
    }

    /// Notes that `range` was repaired on every replica by a session that
    /// started at `started_hlc`: served again if it started after the loss.
    pub(super) fn damage_repaired(&mut self, range: usize, started_hlc: u64) {
        if self.damage.repaired(range, started_hlc) {
            enigma_engine::marks::hit(enigma_engine::Mark::DamagedRangeRepaired);
            // Cleared in memory first: a crash before the record is stored
            // only means repairing the range again.
            self.store_damage();
        }
    }

    /// Why this node must not answer a read of `key` (a client key, or a
    /// client key's Paxos state) as a replica: its range lost data to a
    /// quarantined table and is not yet repaired.
    pub(super) fn damage_refusal(&mut self, key: &[u8]) -> Option<ReplicaFailure> {
        if !self.damage.any() || self.options.bug_serve_quarantined_ranges {
            return None;
        }
        let client_key = if is_system(key) {
            paxos_client_key(key)?
        } else {
            key
        };
        let range = self.anti_entropy.ranges().of_key(client_key);
        if !self.damage.is_damaged(range) {
            return None;
        }
        enigma_engine::marks::hit(enigma_engine::Mark::ReadRefusedDamaged);
        self.stats.reads_refused_damaged += 1;
        Some(ReplicaFailure::Storage {
            reason: format!(
                "repair range {range} lost data to a quarantined table and is not yet \
                 repaired from its peers"
            ),
        })
    }

    /// Whether purging is held for `range` (it lost data not yet
    /// repaired).
    pub(super) fn purge_held(&self, range: usize) -> bool {
        self.damage.is_damaged(range)
    }
}
