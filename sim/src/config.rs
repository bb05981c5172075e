//! What one simulation run is: everything a seed needs to replay it.

use enigma_cluster::ConsistencyLevel;
use enigma_engine::MEMTABLE_BYTES_MIN;

/// What the clients of a run do.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum SimWorkload {
    /// Reads, writes and deletes of registers (and at `SERIAL`
    /// compare-and-sets), checked for what the level promises.
    #[default]
    Register,
    /// At `SERIAL` only: increments by one (`INCR`) and reads of counters,
    /// each key checked as a linearizable counter (`checker::counter`).
    Incr,
}

impl SimWorkload {
    /// Its name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            SimWorkload::Register => "register",
            SimWorkload::Incr => "incr",
        }
    }
}

impl std::fmt::Display for SimWorkload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for SimWorkload {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "register" => Ok(SimWorkload::Register),
            "incr" => Ok(SimWorkload::Incr),
            _ => Err(format!("{text:?}: expected register or incr")),
        }
    }
}

/// A run's configuration. Together with the commit, it determines the run
/// bit for bit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimConfig {
    /// The one seed every random choice derives from.
    pub seed: u64,
    /// Nodes in the cluster.
    pub nodes: usize,
    /// Replicas per key.
    pub replication_factor: usize,
    /// Concurrent client processes.
    pub clients: usize,
    /// Client operations in the safety phase, over all clients.
    pub ops: usize,
    /// Keys (independent registers) the clients share.
    pub keys: usize,
    /// Consistency level of every client read and write.
    pub level: ConsistencyLevel,
    /// What the clients do.
    pub workload: SimWorkload,
    /// Whether the nemesis and network faults run (which families each seed
    /// uses is then drawn per seed: swarm testing).
    pub faults: bool,
    /// Largest wall-clock offset of a node, milliseconds (0: synchronised).
    pub clock_skew_max_ms: u64,
    /// Whether coordinators use commit wait, assuming a clock uncertainty
    /// of twice the run's bound on clock offsets (every pair of clocks is
    /// within it) plus [`crate::run::CLOCK_UNCERTAINTY_MARGIN_NANOS`]:
    /// then `QUORUM` histories are checked for linearizability under skew.
    pub commit_wait: bool,
    /// Node n1's wall clock runs this far ahead of true time, milliseconds,
    /// beyond the cluster's bound (0: not): its peers must refuse its
    /// readings and it must refuse writes, until the faults stop and an
    /// operator sets its clock right (or a clock jump brings it back within
    /// the run's bound).
    pub clock_far_ahead_ms: u64,
    /// Keep a readable timeline of every event.
    pub trace: bool,
    /// Each node's memtable size before it is frozen and flushed as a
    /// table: small, so that flushes and compactions run (and nodes crash
    /// around them) in ordinary runs.
    pub memtable_bytes: usize,
    /// One value in 32 is padded to this many bytes, so that a handful of
    /// keys fill a memtable now and then.
    pub value_bytes: usize,
    /// Whether the nemesis may crash nodes, fail their syncs (the node
    /// stops) and fill their disks (each seed then draws whether it does).
    /// Off, with anti-entropy off, hints alone must converge.
    pub crashes: bool,
    /// Whether coordinators store and replay hints.
    pub hinted_handoff: bool,
    /// Whether nodes run anti-entropy continuously.
    pub anti_entropy: bool,
    /// Plant the node's deliberate bug (QUORUM writes acknowledged after one
    /// replica), to prove the checks bite. Test-only: no CLI flag sets it.
    pub planted_bug: bool,
    /// Plant: a hint is deleted when sent, not when acknowledged.
    /// Test-only.
    pub planted_hint_deleted_on_send: bool,
    /// Plant: anti-entropy pulls differences to the initiator and never
    /// pushes them back. Test-only.
    pub planted_anti_entropy_one_way: bool,
    /// Plant: tombstones are purged past the grace period without waiting
    /// for a repair of their range. Test-only.
    pub planted_purge_without_repair: bool,
    /// Plant: coordinators wait on replicas their failure detector holds
    /// down instead of answering `Unavailable`. Test-only.
    pub planted_coordinator_ignores_failure_detector: bool,
    /// Plant a disk that loses synced writes: on every crash the newest
    /// segment of the node's write-ahead log is cut back to its header, as
    /// if the disk had lied about the sync. Replication masks it from
    /// clients; the replica durability check must not. Test-only: no CLI
    /// flag sets it.
    pub planted_disk_loses_synced_writes: bool,
    /// Plant a driver bug: a group commit releases its batch's outputs when
    /// the sync starts instead of when it completes, so a crash during the
    /// sync can lose acknowledged writes. Test-only: no CLI flag sets it.
    pub planted_release_before_sync: bool,
    /// Plant the node bug that releases a batch's outputs although its
    /// sync failed. Test-only: no CLI flag sets it.
    pub planted_ack_after_failed_sync: bool,
    /// Plant the engine bug that drops a frozen memtable before its new
    /// table is open, so a bad read opening it loses versions from the
    /// read path. Test-only: no CLI flag sets it.
    pub planted_flush_drops_memtable: bool,
    /// Plant the engine bug that deletes the log segments a flushed table
    /// covers before the manifest edit naming the table is durable, so a
    /// crash between the two steps loses the memtable's writes
    /// (`EngineOptions::bug_flush_removes_log_before_manifest_edit`).
    /// Test-only: no CLI flag sets it.
    pub planted_flush_removes_log_before_manifest_edit: bool,
    /// Plant the recovery bug that takes damage in a sealed log segment for
    /// that segment's end and replays on with the next, losing the records
    /// after it (`EngineOptions::
    /// bug_recovery_skips_rest_of_damaged_sealed_segment`). Test-only: no
    /// CLI flag sets it.
    pub planted_sealed_segment_damage_skipped: bool,
    /// Plant the coordinator bug that answers a read with the value at
    /// hand once the level's count has answered, though a replica's digest
    /// shows a newer version (`NodeOptions::
    /// bug_read_trusts_the_data_over_digests`). Test-only: no CLI flag
    /// sets it.
    pub planted_read_trusts_data_over_digests: bool,
    /// Plant the coordinator bug that counts acknowledgements and answers
    /// meant for an earlier incarnation of itself (it ignores the boot
    /// generation in their operation ids), so a stale answer completes a
    /// new operation that reuses its sequence number. Test-only.
    pub planted_coordinator_counts_stale_answers: bool,
    /// Plant the frame reader bug that drops whatever followed a frame in
    /// its buffer (a reader that assumes one frame per read). Test-only.
    pub planted_frame_reader_drops_rest: bool,
    /// Plant the replica bug that takes a failed read of its storage (a
    /// latent sector error, a checksum mismatch) for a key it does not
    /// hold, and answers "absent". Test-only.
    pub planted_replica_answers_absent_on_read_error: bool,
    /// Plant the coordinator bug that counts a duplicated acknowledgement
    /// twice. Test-only.
    pub planted_coordinator_counts_duplicate_acks: bool,
    /// Plant: a node's hybrid clock is not seeded from its store at start.
    /// Test-only.
    pub planted_hlc_not_seeded_on_restart: bool,
    /// Plant: peers' clock readings are adopted however far ahead.
    /// Test-only.
    pub planted_adopt_remote_readings_without_bound: bool,
    /// Plant: commit wait answers at once. Test-only.
    pub planted_skip_commit_wait: bool,
    /// Plant: one coordinator (node 1) ignores the floors client sessions
    /// send: it stamps writes from its own clock alone and answers reads
    /// whatever version they find. Test-only.
    pub planted_session_timestamp_dropped: bool,
    /// Plant the bug of a Paxos acceptor that accepts a proposal below the
    /// ballot it promised (`SERIAL` runs).
    pub planted_paxos_accept_below_promise: bool,
    /// Plant the bug of a Paxos proposer that ignores an accepted but
    /// uncommitted proposal in the promises (`SERIAL` runs).
    pub planted_paxos_ignores_in_progress_proposal: bool,
    /// Plant the bug of a Paxos acceptor whose promises and acceptances
    /// leave before its state is durable: it keeps them in memory and
    /// writes its state only with the key's next commit (`SERIAL` runs).
    pub planted_paxos_promise_before_durable: bool,
    /// Plant the bug of a Paxos proposer that finishes another's proposal
    /// with its first, possibly old, timestamp, and of replicas that apply
    /// a commit however late (`SERIAL` runs with deletes and purging).
    pub planted_paxos_finish_with_stale_stamp: bool,
    /// Plant the bug of a Paxos proposer that answers and commits its value
    /// once one acceptor took it, not a majority (`SERIAL` runs).
    pub planted_paxos_answer_after_first_acceptance: bool,
    /// Plant the bug of a `QUORUM`/`ALL` read that ignores a replica's
    /// report of an unfinished Paxos proposal (`SERIAL` runs, whose
    /// workload also reads at `QUORUM`).
    pub planted_read_ignores_unfinished_paxos: bool,
    /// Plant the bug of a node that, before judging its clock against its
    /// peers', acknowledges a write its own replica alone took (level
    /// `ONE` runs with a node far ahead).
    pub planted_unjudged_clock_writes_alone: bool,
    /// Plant the bug of a node that answers reads of ranges that lost data
    /// to a quarantined table before they are repaired (the stored-damage
    /// family is then always on).
    pub planted_serve_quarantined_ranges: bool,
    /// Plant the bug of a Paxos acceptor whose range lost data serving as
    /// if it had lost nothing: no floor, promises counted (`SERIAL` runs
    /// that draw the stored-damage family).
    pub planted_paxos_acceptor_forgets_loss: bool,
    /// Plant the bug of a node that lost a table keeping what its other
    /// tables hold of the damaged ranges, for the next repair to push back
    /// to peers that purged the tombstones it lost (the stored-damage
    /// family is then always on).
    pub planted_damaged_node_keeps_stale_data: bool,
    /// Plant the bug of an anti-entropy initiator that goes on with its
    /// session when it cannot write what it pulled (a full disk), so the
    /// range counts as repaired on data it never stored.
    pub planted_repair_counts_unapplied_pull: bool,
    /// Every seed draws the stored-damage family (where its bounds allow
    /// it), instead of about one in three: for sweeps aimed at it, and for
    /// the planted bugs it alone can show, whose controls keep it.
    pub always_stored_damage: bool,
    /// Every seed draws the full-disk family (with `crashes`), instead of
    /// one in four.
    pub always_full_disks: bool,
}

/// Default [`SimConfig::memtable_bytes`]: the engine's smallest memtable.
pub const SIM_MEMTABLE_BYTES: usize = 1024;
/// Default [`SimConfig::value_bytes`]. A memtable entry costs its key, its
/// value and a fixed overhead of about a hundred bytes; with 5 keys of short
/// values a 1 KiB memtable fills only while one of the occasional large
/// values (one write in 32) is in it: then it is flushed, a few times per
/// node per run.
pub const SIM_VALUE_BYTES: usize = 900;
/// Largest [`SimConfig::value_bytes`] accepted.
pub const VALUE_BYTES_MAX: usize = 64 * 1024;

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            seed: 0,
            nodes: 3,
            replication_factor: 3,
            clients: 5,
            ops: 1_100,
            keys: 5,
            level: ConsistencyLevel::Quorum,
            workload: SimWorkload::Register,
            faults: true,
            clock_skew_max_ms: 0,
            commit_wait: false,
            clock_far_ahead_ms: 0,
            trace: false,
            memtable_bytes: SIM_MEMTABLE_BYTES,
            value_bytes: SIM_VALUE_BYTES,
            crashes: true,
            hinted_handoff: true,
            anti_entropy: true,
            planted_bug: false,
            planted_hint_deleted_on_send: false,
            planted_anti_entropy_one_way: false,
            planted_purge_without_repair: false,
            planted_coordinator_ignores_failure_detector: false,
            planted_disk_loses_synced_writes: false,
            planted_release_before_sync: false,
            planted_ack_after_failed_sync: false,
            planted_flush_drops_memtable: false,
            planted_flush_removes_log_before_manifest_edit: false,
            planted_sealed_segment_damage_skipped: false,
            planted_read_trusts_data_over_digests: false,
            planted_coordinator_counts_stale_answers: false,
            planted_frame_reader_drops_rest: false,
            planted_replica_answers_absent_on_read_error: false,
            planted_coordinator_counts_duplicate_acks: false,
            planted_hlc_not_seeded_on_restart: false,
            planted_adopt_remote_readings_without_bound: false,
            planted_skip_commit_wait: false,
            planted_session_timestamp_dropped: false,
            planted_paxos_accept_below_promise: false,
            planted_paxos_ignores_in_progress_proposal: false,
            planted_paxos_promise_before_durable: false,
            planted_paxos_finish_with_stale_stamp: false,
            planted_paxos_answer_after_first_acceptance: false,
            planted_read_ignores_unfinished_paxos: false,
            planted_unjudged_clock_writes_alone: false,
            planted_serve_quarantined_ranges: false,
            planted_paxos_acceptor_forgets_loss: false,
            planted_damaged_node_keeps_stale_data: false,
            planted_repair_counts_unapplied_pull: false,
            always_stored_damage: false,
            always_full_disks: false,
        }
    }
}

/// Smallest and largest sizes accepted, so that a typo cannot ask for a run
/// that never ends.
pub const NODES_MAX: usize = 16;
/// See [`NODES_MAX`].
pub const CLIENTS_MAX: usize = 256;
/// See [`NODES_MAX`].
pub const OPS_MAX: usize = 1_000_000;
/// See [`NODES_MAX`].
pub const KEYS_MAX: usize = 10_000;

impl SimConfig {
    /// Checks the configuration.
    ///
    /// # Errors
    /// A message naming the first bad field.
    pub fn validate(&self) -> Result<(), String> {
        if self.nodes == 0 || self.nodes > NODES_MAX {
            return Err(format!(
                "--nodes must be 1..={NODES_MAX}, got {}",
                self.nodes
            ));
        }
        if self.replication_factor == 0 || self.replication_factor > self.nodes {
            return Err(format!(
                "--rf must be 1..={} (the node count), got {}",
                self.nodes, self.replication_factor
            ));
        }
        if self
            .level
            .replicas_required(self.replication_factor)
            .is_none()
        {
            return Err(format!(
                "--level {} needs more replicas than --rf {}",
                self.level, self.replication_factor
            ));
        }
        if self.workload == SimWorkload::Incr && self.level != ConsistencyLevel::Serial {
            return Err(format!(
                "--workload incr needs --level SERIAL (increments are refused at {})",
                self.level
            ));
        }
        if self.clients == 0 || self.clients > CLIENTS_MAX {
            return Err(format!(
                "--clients must be 1..={CLIENTS_MAX}, got {}",
                self.clients
            ));
        }
        if self.ops > OPS_MAX {
            return Err(format!("--ops must be at most {OPS_MAX}, got {}", self.ops));
        }
        if self.keys == 0 || self.keys > KEYS_MAX {
            return Err(format!("--keys must be 1..={KEYS_MAX}, got {}", self.keys));
        }
        if self.memtable_bytes < MEMTABLE_BYTES_MIN {
            return Err(format!(
                "--memtable-bytes must be at least {MEMTABLE_BYTES_MIN}, got {}",
                self.memtable_bytes
            ));
        }
        if self.faults && self.crashes && !self.anti_entropy {
            return Err(
                "--anti-entropy off needs --crashes off: a coordinator that crashes before its write's deadline leaves no hint, and only anti-entropy repairs what it missed".into(),
            );
        }
        if self.faults && !self.anti_entropy && !self.hinted_handoff {
            return Err(
                "--hints off and --anti-entropy off together leave nothing to repair a replica that missed writes".into(),
            );
        }
        if self.value_bytes > VALUE_BYTES_MAX {
            return Err(format!(
                "--value-bytes must be at most {VALUE_BYTES_MAX}, got {}",
                self.value_bytes
            ));
        }
        Ok(())
    }

    /// This run with every planted bug off (the run a catching seed must
    /// pass without its bug).
    pub fn without_planted_bugs(&self) -> SimConfig {
        SimConfig {
            planted_bug: false,
            planted_disk_loses_synced_writes: false,
            planted_hint_deleted_on_send: false,
            planted_anti_entropy_one_way: false,
            planted_purge_without_repair: false,
            planted_coordinator_ignores_failure_detector: false,
            planted_release_before_sync: false,
            planted_ack_after_failed_sync: false,
            planted_flush_drops_memtable: false,
            planted_flush_removes_log_before_manifest_edit: false,
            planted_sealed_segment_damage_skipped: false,
            planted_read_trusts_data_over_digests: false,
            planted_coordinator_counts_stale_answers: false,
            planted_frame_reader_drops_rest: false,
            planted_replica_answers_absent_on_read_error: false,
            planted_coordinator_counts_duplicate_acks: false,
            planted_hlc_not_seeded_on_restart: false,
            planted_adopt_remote_readings_without_bound: false,
            planted_skip_commit_wait: false,
            planted_session_timestamp_dropped: false,
            planted_paxos_accept_below_promise: false,
            planted_paxos_ignores_in_progress_proposal: false,
            planted_paxos_promise_before_durable: false,
            planted_paxos_finish_with_stale_stamp: false,
            planted_paxos_answer_after_first_acceptance: false,
            planted_read_ignores_unfinished_paxos: false,
            planted_unjudged_clock_writes_alone: false,
            planted_serve_quarantined_ranges: false,
            planted_paxos_acceptor_forgets_loss: false,
            planted_damaged_node_keeps_stale_data: false,
            planted_repair_counts_unapplied_pull: false,
            ..self.clone()
        }
    }

    /// Whether any planted bug is on.
    pub fn planted_any(&self) -> bool {
        self.planted_bug
            || self.planted_disk_loses_synced_writes
            || self.planted_hint_deleted_on_send
            || self.planted_anti_entropy_one_way
            || self.planted_purge_without_repair
            || self.planted_coordinator_ignores_failure_detector
            || self.planted_release_before_sync
            || self.planted_ack_after_failed_sync
            || self.planted_flush_drops_memtable
            || self.planted_flush_removes_log_before_manifest_edit
            || self.planted_sealed_segment_damage_skipped
            || self.planted_read_trusts_data_over_digests
            || self.planted_coordinator_counts_stale_answers
            || self.planted_frame_reader_drops_rest
            || self.planted_replica_answers_absent_on_read_error
            || self.planted_coordinator_counts_duplicate_acks
            || self.planted_hlc_not_seeded_on_restart
            || self.planted_adopt_remote_readings_without_bound
            || self.planted_skip_commit_wait
            || self.planted_session_timestamp_dropped
            || self.planted_paxos_accept_below_promise
            || self.planted_paxos_ignores_in_progress_proposal
            || self.planted_paxos_promise_before_durable
            || self.planted_paxos_finish_with_stale_stamp
            || self.planted_paxos_answer_after_first_acceptance
            || self.planted_read_ignores_unfinished_paxos
            || self.planted_unjudged_clock_writes_alone
            || self.planted_serve_quarantined_ranges
            || self.planted_paxos_acceptor_forgets_loss
            || self.planted_damaged_node_keeps_stale_data
            || self.planted_repair_counts_unapplied_pull
    }

    /// The command that replays exactly this run.
    pub fn repro_command(&self) -> String {
        let defaults = Self::default();
        let mut command = format!("enigma sim --seed {:#x}", self.seed);
        let mut flag = |name: &str, value: String, default: String| {
            if value != default {
                command.push_str(&format!(" --{name} {value}"));
            }
        };
        flag("nodes", self.nodes.to_string(), defaults.nodes.to_string());
        flag(
            "rf",
            self.replication_factor.to_string(),
            defaults.replication_factor.to_string(),
        );
        flag(
            "clients",
            self.clients.to_string(),
            defaults.clients.to_string(),
        );
        flag("ops", self.ops.to_string(), defaults.ops.to_string());
        flag("keys", self.keys.to_string(), defaults.keys.to_string());
        flag("level", self.level.to_string(), defaults.level.to_string());
        flag(
            "workload",
            self.workload.to_string(),
            defaults.workload.to_string(),
        );
        flag(
            "faults",
            on_off(self.faults).into(),
            on_off(defaults.faults).into(),
        );
        flag(
            "clock-skew-max-ms",
            self.clock_skew_max_ms.to_string(),
            defaults.clock_skew_max_ms.to_string(),
        );
        if self.commit_wait {
            command.push_str(" --commit-wait");
        }
        if self.clock_far_ahead_ms > 0 {
            command.push_str(&format!(
                " --clock-far-ahead-ms {}",
                self.clock_far_ahead_ms
            ));
        }
        let mut flag = |name: &str, value: String, default: String| {
            if value != default {
                command.push_str(&format!(" --{name} {value}"));
            }
        };
        flag(
            "memtable-bytes",
            self.memtable_bytes.to_string(),
            defaults.memtable_bytes.to_string(),
        );
        flag(
            "value-bytes",
            self.value_bytes.to_string(),
            defaults.value_bytes.to_string(),
        );
        flag(
            "crashes",
            on_off(self.crashes).into(),
            on_off(defaults.crashes).into(),
        );
        flag(
            "hints",
            on_off(self.hinted_handoff).into(),
            on_off(defaults.hinted_handoff).into(),
        );
        flag(
            "anti-entropy",
            on_off(self.anti_entropy).into(),
            on_off(defaults.anti_entropy).into(),
        );
        if self.always_stored_damage {
            command.push_str(" --always-stored-damage");
        }
        if self.always_full_disks {
            command.push_str(" --always-full-disks");
        }
        if self.planted_any() {
            command.push_str("  (planted bug on: replay through enigma_sim::run, not the CLI)");
        }
        command
    }
}

fn on_off(on: bool) -> &'static str {
    if on {
        "on"
    } else {
        "off"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repro_names_only_what_differs_from_the_defaults() {
        let config = SimConfig {
            seed: 0xabc,
            ops: 50,
            ..SimConfig::default()
        };
        assert_eq!(config.repro_command(), "enigma sim --seed 0xabc --ops 50");
    }

    #[test]
    fn impossible_levels_are_refused() {
        let config = SimConfig {
            nodes: 1,
            replication_factor: 1,
            level: ConsistencyLevel::Two,
            ..SimConfig::default()
        };
        assert!(config.validate().is_err());
        assert!(SimConfig::default().validate().is_ok());
    }

    #[test]
    fn the_increment_workload_needs_serial_and_replays_with_its_flag() {
        let incr = SimConfig {
            workload: SimWorkload::Incr,
            ..SimConfig::default()
        };
        assert!(incr.validate().is_err());
        let incr = SimConfig {
            level: ConsistencyLevel::Serial,
            ..incr
        };
        assert!(incr.validate().is_ok());
        assert!(incr.repro_command().contains("--workload incr"));
        assert_eq!("incr".parse::<SimWorkload>(), Ok(SimWorkload::Incr));
        assert!("counter".parse::<SimWorkload>().is_err());
    }
}
