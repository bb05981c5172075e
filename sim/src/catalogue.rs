//! The catalogue of planted bugs: every switch in [`SimConfig`] that plants
//! a deliberate bug, with the part of the system it breaks, what it does,
//! the run it needs to bite, the checks that catch it and the test that
//! proves they do.
//!
//! A planted bug is how a mechanism proves its checks bite: a switch, off
//! by default and unreachable from any command, whose bounded sweep must
//! fail and whose failing seed must replay bit for bit. The catalogue is
//! the one list of them; `tests/catalogue.rs` keeps it complete (every
//! `planted_` field of [`SimConfig`] is here, every named test exists, the
//! table in docs/FAULTS.md names each) and measures how many seeds each
//! needs (an ignored test, run by hand: see docs/FAULTS.md).

use enigma_cluster::ConsistencyLevel;

use crate::config::SimConfig;

/// The part of the system a planted bug breaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Area {
    /// Coordinating client operations: counting answers, reading digests.
    Coordinator,
    /// Copies between replicas: hints, anti-entropy, purging, detection.
    Replication,
    /// Timestamps: the hybrid clock, peers' readings, commit wait, client
    /// sessions' floors.
    Clock,
    /// What the disk and the engine keep.
    Storage,
    /// Starting again after a crash or a failed sync.
    Recovery,
    /// Bytes on the wire.
    Codec,
    /// Per-key Paxos (`SERIAL`).
    Consensus,
}

impl Area {
    /// Its name in the catalogue.
    pub fn name(self) -> &'static str {
        match self {
            Area::Coordinator => "coordinator",
            Area::Replication => "replication",
            Area::Clock => "clock",
            Area::Storage => "storage",
            Area::Recovery => "recovery",
            Area::Codec => "codec",
            Area::Consensus => "consensus",
        }
    }
}

/// One planted bug.
#[derive(Debug, Clone, Copy)]
pub struct Planted {
    /// The [`SimConfig`] field that plants it.
    pub name: &'static str,
    /// The part it breaks.
    pub area: Area,
    /// What the bug does, in one line.
    pub bug: &'static str,
    /// Violations that count as catching it.
    pub caught_as: &'static [&'static str],
    /// The test that sweeps for it and replays the catch, as
    /// `file::function`.
    pub test: &'static str,
    /// Turns the bug on in `config`, with what the run needs for the bug to
    /// bite (more nodes, fewer keys, a level, a mechanism off).
    pub plant: fn(&mut SimConfig),
}

impl Planted {
    /// The run this bug's sweeps start from: `base` with the bug planted.
    pub fn config(&self, base: &SimConfig) -> SimConfig {
        let mut config = base.clone();
        (self.plant)(&mut config);
        config
    }
}

const LOST: &[&str] = &["linearizability", "lost-write"];

/// Every planted bug of the simulator.
pub const CATALOGUE: &[Planted] = &[
    Planted {
        name: "planted_bug",
        area: Area::Coordinator,
        bug: "QUORUM writes are acknowledged after one replica",
        caught_as: &["linearizability"],
        test: "simulation::the_planted_bug_is_found_and_its_seed_replays",
        plant: |c| c.planted_bug = true,
    },
    Planted {
        name: "planted_coordinator_counts_stale_answers",
        area: Area::Coordinator,
        bug: "answers meant for the coordinator's previous incarnation count",
        caught_as: LOST,
        test: "simulation::a_coordinator_counting_answers_of_its_previous_incarnation_is_caught",
        plant: |c| c.planted_coordinator_counts_stale_answers = true,
    },
    Planted {
        name: "planted_coordinator_counts_duplicate_acks",
        area: Area::Coordinator,
        bug: "a duplicated acknowledgement counts twice (five nodes)",
        caught_as: LOST,
        test: "simulation::a_coordinator_counting_a_duplicated_acknowledgement_twice_is_caught",
        plant: |c| {
            c.nodes = 5;
            c.planted_coordinator_counts_duplicate_acks = true;
        },
    },
    Planted {
        name: "planted_read_trusts_data_over_digests",
        area: Area::Coordinator,
        bug: "a read answers its data though a digest showed a newer version",
        caught_as: &["linearizability"],
        test: "simulation::a_read_that_trusts_its_data_over_newer_digests_is_caught",
        plant: |c| c.planted_read_trusts_data_over_digests = true,
    },
    Planted {
        name: "planted_coordinator_ignores_failure_detector",
        area: Area::Replication,
        bug: "coordinators wait on replicas they hold down",
        caught_as: &["failure-detection"],
        test: "healing::a_coordinator_that_waits_on_replicas_held_down_is_caught",
        plant: |c| c.planted_coordinator_ignores_failure_detector = true,
    },
    Planted {
        name: "planted_hint_deleted_on_send",
        area: Area::Replication,
        bug: "a hint is deleted when sent, before its acknowledgement",
        caught_as: &["liveness"],
        test: "healing::hints_alone_converge_and_a_hint_deleted_before_its_acknowledgement_is_caught",
        plant: |c| {
            c.anti_entropy = false;
            c.crashes = false;
            c.planted_hint_deleted_on_send = true;
        },
    },
    Planted {
        name: "planted_anti_entropy_one_way",
        area: Area::Replication,
        bug: "anti-entropy pulls differences and never pushes them back",
        caught_as: &["liveness"],
        test: "healing::anti_entropy_alone_converges_and_one_way_streaming_is_caught",
        plant: |c| {
            c.hinted_handoff = false;
            c.planted_anti_entropy_one_way = true;
        },
    },
    Planted {
        name: "planted_purge_without_repair",
        area: Area::Replication,
        bug: "tombstones are purged without the repair gate",
        caught_as: &[
            "resurrection",
            "lost-write",
            "durability",
            "linearizability",
        ],
        test: "healing::a_tombstone_purged_without_the_repair_gate_is_caught_as_a_resurrection",
        plant: |c| c.planted_purge_without_repair = true,
    },
    Planted {
        name: "planted_hlc_not_seeded_on_restart",
        area: Area::Clock,
        bug: "the hybrid clock is not seeded from the store at start",
        caught_as: &["clock"],
        test: "clock_simulation::a_restarted_node_stamps_above_what_it_held_and_an_unseeded_clock_is_caught",
        plant: |c| {
            c.clock_skew_max_ms = 200;
            c.clients = 20;
            c.planted_hlc_not_seeded_on_restart = true;
        },
    },
    Planted {
        name: "planted_adopt_remote_readings_without_bound",
        area: Area::Clock,
        bug: "peers' clock readings are adopted however far ahead",
        caught_as: &["lost-write", "read-your-writes", "monotonic-reads", "clock"],
        test: "clock_simulation::a_node_far_ahead_is_kept_out_and_adopting_its_readings_is_caught",
        plant: |c| {
            c.clock_far_ahead_ms = 2_000;
            c.planted_adopt_remote_readings_without_bound = true;
        },
    },
    Planted {
        name: "planted_skip_commit_wait",
        area: Area::Clock,
        bug: "commit wait answers at once",
        caught_as: &["linearizability"],
        test: "clock_simulation::commit_wait_keeps_quorum_linearizable_under_skew_and_skipping_it_is_caught",
        plant: |c| {
            c.commit_wait = true;
            c.clock_skew_max_ms = 100;
            c.planted_skip_commit_wait = true;
        },
    },
    Planted {
        name: "planted_session_timestamp_dropped",
        area: Area::Clock,
        bug: "one coordinator (n1) ignores the floors client sessions send (ONE)",
        caught_as: &["read-your-writes", "monotonic-reads", "causal-writes"],
        test: "sessions::one_coordinator_dropping_the_session_timestamp_is_caught_at_one",
        plant: |c| {
            c.level = ConsistencyLevel::One;
            c.planted_session_timestamp_dropped = true;
        },
    },
    Planted {
        name: "planted_disk_loses_synced_writes",
        area: Area::Storage,
        bug: "each crash cuts the newest log segment back to its header",
        caught_as: &["durability"],
        test: "simulation::a_disk_that_loses_synced_writes_is_caught_by_the_durability_check",
        plant: |c| c.planted_disk_loses_synced_writes = true,
    },
    Planted {
        name: "planted_flush_drops_memtable",
        area: Area::Storage,
        bug: "a flush drops its memtable before the new table is open",
        caught_as: &["durability", "lost-write"],
        test: "simulation::a_flush_that_drops_its_memtable_on_a_bad_read_is_caught",
        plant: |c| {
            c.keys = 20;
            c.planted_flush_drops_memtable = true;
        },
    },
    Planted {
        name: "planted_replica_answers_absent_on_read_error",
        area: Area::Storage,
        bug: "a replica answers absent when its storage fails a read",
        caught_as: LOST,
        test: "simulation::a_replica_answering_absent_on_a_read_error_is_caught",
        plant: |c| {
            c.keys = 20;
            c.planted_replica_answers_absent_on_read_error = true;
        },
    },
    Planted {
        name: "planted_serve_quarantined_ranges",
        area: Area::Storage,
        bug: "a node serves reads of ranges that lost data to a quarantined table before they are repaired",
        caught_as: LOST,
        test: "stored_damage::a_node_serving_quarantined_ranges_is_caught",
        plant: |c| {
            c.keys = 20;
            c.always_stored_damage = true;
            c.planted_serve_quarantined_ranges = true;
        },
    },
    Planted {
        name: "planted_damaged_node_keeps_stale_data",
        area: Area::Storage,
        bug: "a node that lost a table keeps, and later pushes to its peers, what its other tables hold of the damaged ranges",
        caught_as: &[
            "resurrection",
            "durability",
            "lost-write",
            "linearizability",
        ],
        test: "stored_damage::a_node_that_keeps_stale_data_after_a_loss_is_caught",
        plant: |c| {
            c.keys = 20;
            c.level = ConsistencyLevel::Serial;
            c.always_stored_damage = true;
            c.planted_damaged_node_keeps_stale_data = true;
        },
    },
    Planted {
        name: "planted_repair_counts_unapplied_pull",
        area: Area::Replication,
        bug: "an anti-entropy initiator that cannot write what it pulled goes on as if it had",
        caught_as: &[
            "linearizability",
            "lost-write",
            "final-state",
            "durability",
            "clock",
        ],
        test: "stored_damage::an_initiator_that_counts_a_pull_it_could_not_write_is_caught",
        plant: |c| {
            c.keys = 50;
            c.always_stored_damage = true;
            c.always_full_disks = true;
            c.planted_repair_counts_unapplied_pull = true;
        },
    },
    Planted {
        name: "planted_sealed_segment_damage_skipped",
        area: Area::Recovery,
        bug: "recovery takes damage in a sealed log segment for that segment's end and replays on with the next",
        caught_as: &["durability"],
        test: "stored_damage::a_recovery_that_skips_the_rest_of_a_damaged_sealed_segment_is_caught",
        plant: |c| c.planted_sealed_segment_damage_skipped = true,
    },
    Planted {
        name: "planted_release_before_sync",
        area: Area::Recovery,
        bug: "a batch's outputs leave when its sync starts",
        caught_as: &["durability"],
        test: "simulation::releasing_a_batch_before_its_sync_completes_is_caught",
        plant: |c| c.planted_release_before_sync = true,
    },
    Planted {
        name: "planted_ack_after_failed_sync",
        area: Area::Recovery,
        bug: "a batch whose sync failed is acknowledged",
        caught_as: &["durability"],
        test: "simulation::acknowledging_a_batch_whose_sync_failed_is_caught",
        plant: |c| c.planted_ack_after_failed_sync = true,
    },
    Planted {
        name: "planted_flush_removes_log_before_manifest_edit",
        area: Area::Recovery,
        bug: "a flush deletes its log segments before the edit naming its table is durable",
        caught_as: &["durability", "recovery"],
        test: "simulation::deleting_the_log_before_the_manifest_edit_is_caught",
        plant: |c| c.planted_flush_removes_log_before_manifest_edit = true,
    },
    Planted {
        name: "planted_frame_reader_drops_rest",
        area: Area::Codec,
        bug: "the frame reader drops what followed a frame in its buffer",
        caught_as: &["integrity"],
        test: "simulation::a_frame_reader_that_drops_the_rest_of_its_buffer_is_caught",
        plant: |c| c.planted_frame_reader_drops_rest = true,
    },
    Planted {
        name: "planted_paxos_accept_below_promise",
        area: Area::Consensus,
        bug: "an acceptor accepts a ballot below its promise",
        caught_as: &["linearizability"],
        test: "serial_simulation::an_acceptor_that_accepts_below_its_promise_is_caught",
        plant: |c| {
            c.level = ConsistencyLevel::Serial;
            c.planted_paxos_accept_below_promise = true;
        },
    },
    Planted {
        name: "planted_paxos_ignores_in_progress_proposal",
        area: Area::Consensus,
        bug: "a proposer ignores an accepted, uncommitted proposal",
        caught_as: &["linearizability"],
        test: "serial_simulation::a_proposer_that_ignores_an_in_progress_proposal_is_caught",
        plant: |c| {
            c.level = ConsistencyLevel::Serial;
            c.planted_paxos_ignores_in_progress_proposal = true;
        },
    },
    Planted {
        name: "planted_paxos_promise_before_durable",
        area: Area::Consensus,
        bug: "an acceptor answers before its promise or acceptance is durable",
        caught_as: &[
            "linearizability",
            "lost-write",
            "monotonic-reads",
            "read-your-writes",
        ],
        test: "serial_simulation::an_acceptor_that_answers_before_its_state_is_durable_is_caught",
        plant: |c| {
            c.level = ConsistencyLevel::Serial;
            c.planted_paxos_promise_before_durable = true;
        },
    },
    Planted {
        name: "planted_paxos_acceptor_forgets_loss",
        area: Area::Consensus,
        bug: "an acceptor whose range lost data serves with no floor, its promises counted",
        caught_as: &[
            "linearizability",
            "lost-write",
            "monotonic-reads",
            "read-your-writes",
        ],
        test: "serial_simulation::an_acceptor_that_forgets_what_it_lost_is_caught",
        plant: |c| {
            c.level = ConsistencyLevel::Serial;
            c.planted_paxos_acceptor_forgets_loss = true;
        },
    },
    Planted {
        name: "planted_unjudged_clock_writes_alone",
        area: Area::Clock,
        bug: "a node not yet judging its clock acknowledges writes its own replica alone took",
        caught_as: &["read-your-writes", "monotonic-reads", "lost-write"],
        test: "clock_simulation::a_node_far_ahead_at_one_needs_a_peer_and_writing_alone_is_caught",
        plant: |c| {
            c.level = ConsistencyLevel::One;
            c.clock_far_ahead_ms = 2_000;
            c.planted_unjudged_clock_writes_alone = true;
        },
    },
    Planted {
        name: "planted_paxos_finish_with_stale_stamp",
        area: Area::Consensus,
        bug: "an unfinished proposal is finished late with its old timestamp, which replicas refuse",
        caught_as: &["liveness"],
        test: "serial_simulation::a_proposal_finished_with_its_stale_stamp_is_caught",
        plant: |c| {
            c.level = ConsistencyLevel::Serial;
            c.planted_paxos_finish_with_stale_stamp = true;
        },
    },
    Planted {
        name: "planted_paxos_answer_after_first_acceptance",
        area: Area::Consensus,
        bug: "a Paxos proposer answers and commits once one acceptor took its value",
        caught_as: &[
            "linearizability",
            "lost-write",
            "monotonic-reads",
            "read-your-writes",
        ],
        test: "serial_simulation::a_proposer_that_answers_after_its_first_acceptance_is_caught",
        plant: |c| {
            c.level = ConsistencyLevel::Serial;
            c.planted_paxos_answer_after_first_acceptance = true;
        },
    },
    Planted {
        name: "planted_read_ignores_unfinished_paxos",
        area: Area::Consensus,
        bug: "a QUORUM read answers without finishing an unfinished Paxos proposal a replica reported",
        caught_as: &[
            "linearizability",
            "lost-write",
            "monotonic-reads",
            "read-your-writes",
        ],
        test: "serial_simulation::a_quorum_read_that_ignores_an_unfinished_proposal_is_caught",
        plant: |c| {
            c.level = ConsistencyLevel::Serial;
            c.planted_read_ignores_unfinished_paxos = true;
        },
    },
];

/// Seeds from `base`'s seed, one by one, until a run of `planted` fails
/// with one of its violations; `None` if `limit` seeds all pass.
pub fn seeds_to_catch(planted: &Planted, base: &SimConfig, limit: u64) -> Option<u64> {
    let config = planted.config(base);
    (0..limit).find_map(|i| {
        let report = crate::run(&SimConfig {
            seed: config.seed.wrapping_add(i),
            ..config.clone()
        });
        report
            .violations
            .iter()
            .any(|v| planted.caught_as.contains(&v.property))
            .then_some(i + 1)
    })
}
