//! A node's configuration: the cluster it belongs to and its tunables.

use enigma_engine::EngineOptions;

use crate::anti_entropy::AntiEntropyOptions;
use crate::failure_detector::FailureDetectorOptions;
use crate::hints::HintOptions;
use crate::ids::NodeId;

/// Default pause between gossip rounds (Cassandra's: one second).
pub const GOSSIP_INTERVAL_NANOS_DEFAULT: u64 = 1_000_000_000;
/// Default largest offset tolerated between this node's wall clock and a
/// peer's readings (CockroachDB's: 500 ms).
pub const CLOCK_OFFSET_MAX_NANOS_DEFAULT: u64 = 500_000_000;
/// Default clock uncertainty commit wait assumes: the largest difference
/// between two nodes' wall clocks (10 ms: NTP on a local network).
pub const CLOCK_UNCERTAINTY_NANOS_DEFAULT: u64 = 10_000_000;
/// Default grace period before a tombstone may be purged (Cassandra's
/// `gc_grace_seconds`: ten days). Purging also needs a completed repair.
pub const GC_GRACE_NANOS_DEFAULT: u64 = 10 * 24 * 3_600 * 1_000_000_000;

/// Who is in the cluster and how data is placed. Identical on every node.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// Every member.
    pub nodes: Vec<NodeId>,
    /// Replicas per key.
    pub replication_factor: usize,
    /// Tokens each node owns on the ring.
    pub vnodes_per_node: u32,
}

/// A node's tunables.
#[derive(Debug, Clone)]
pub struct NodeOptions {
    /// How long a coordinator waits for replicas before answering `Timeout`.
    pub request_timeout_nanos: u64,
    /// Most client operations a coordinator tracks at once; more are refused
    /// as `Overloaded` (nothing applied) rather than growing memory.
    pub requests_pending_max: usize,
    /// The storage engine's options.
    pub engine: EngineOptions,
    /// Bytes of tables the engine's background work (flushes, compactions)
    /// may write per tick; a job runs whole, so a tick with work due runs at
    /// least one.
    pub background_bytes_per_tick: u64,
    /// Most steps of flush and compaction jobs (table written, manifest
    /// edit committed, covered files deleted) a tick runs; a job left
    /// part-way through goes on at the next tick. Production takes every
    /// step back to back (`usize::MAX`); the simulator takes one, so that a
    /// crash can land between any two. At least 1.
    pub background_steps_per_tick: usize,
    /// Seed of the node's random choices (whom to gossip with). The
    /// simulator derives it from the run's seed; production draws it.
    pub seed: u64,
    /// Pause between gossip rounds.
    pub gossip_interval_nanos: u64,
    /// Phi above which the failure detector holds a peer down.
    pub phi_convict_threshold: f64,
    /// Hinted handoff.
    pub hints: HintOptions,
    /// Most bytes of values a coordinator keeps for writes whose replicas
    /// have not all acknowledged, to hint the silent ones at the deadline;
    /// beyond it such writes are left to anti-entropy (counted).
    pub hint_watch_bytes_max: u64,
    /// Anti-entropy.
    pub anti_entropy: AntiEntropyOptions,
    /// A tombstone younger than this is never purged.
    pub gc_grace_nanos: u64,
    /// A peer reading (message clock or stored timestamp) further ahead of
    /// this node's wall clock than this is refused, never adopted.
    pub clock_offset_max_nanos: u64,
    /// Commit wait: a coordinator answers a write (or a read returning a
    /// version that recent) only once its wall clock has passed the
    /// version's timestamp by [`Self::clock_uncertainty_nanos`], so that
    /// `QUORUM`/`ALL` stay linearizable under any clock skew within that
    /// bound (see [`crate::commit_wait`]). Off by default.
    pub commit_wait: bool,
    /// The largest difference between two nodes' wall clocks that commit
    /// wait assumes. Must be below the request timeout.
    pub clock_uncertainty_nanos: u64,
    /// Record, for a checking driver, the version of every client reply and
    /// every write this node acknowledged as durable (see
    /// [`super::Node::take_reply_versions`] and
    /// [`super::Node::take_acknowledged_writes`]).
    /// Off by default: a production driver does not collect them.
    pub record_versions: bool,
    /// **A deliberate bug, for proving that the simulator's checks bite.**
    /// Acknowledges `QUORUM` writes after a single replica. Off by default
    /// and settable only through this struct: no production command sets it.
    pub bug_ack_quorum_writes_after_one_replica: bool,
    /// **A deliberate bug**, as above: when the flush's sync fails, the
    /// batch's outputs are released all the same (the node stops after).
    pub bug_release_outputs_of_a_failed_sync: bool,
    /// **A deliberate bug**: a read answers with the value it has once the
    /// level's count has answered, even when a replica's digest is newer
    /// (see [`crate::coordinator::PendingRead::planting_trust_in_the_data`]).
    /// Off by default, settable only through this struct.
    pub bug_read_trusts_the_data_over_digests: bool,
    /// **A deliberate bug**: a hint is deleted as soon as it is sent, not
    /// when the target acknowledges it. Off by default; no command sets it.
    pub bug_delete_hints_on_send: bool,
    /// **A deliberate bug**: tombstones past the grace period are purged
    /// whether or not their range was repaired since. Off by default; no
    /// command sets it.
    pub bug_purge_tombstones_without_repair: bool,
    /// **A deliberate bug**: a node answers reads of ranges that lost data
    /// to a quarantined table before they are repaired, from what its
    /// other tables hold. Off by default; no command sets it.
    pub bug_serve_quarantined_ranges: bool,
    /// **A deliberate bug**: the coordinator ignores its failure detector,
    /// waiting on replicas it holds down instead of answering `Unavailable`.
    /// Off by default; no command sets it.
    pub bug_wait_on_down_replicas: bool,
    /// **A deliberate bug**: the coordinator counts acknowledgements and
    /// answers whatever boot generation their operation id carries, so one
    /// meant for its previous incarnation completes a new operation that
    /// reuses the sequence number. Off by default; no command sets it.
    pub bug_count_answers_of_earlier_generations: bool,
    /// **A deliberate bug**: a replica whose storage fails a read (an I/O
    /// error, a checksum mismatch) answers that it holds nothing for the
    /// key instead of reporting the failure. Off by default; no command
    /// sets it.
    pub bug_read_error_answers_absent: bool,
    /// **A deliberate bug**: a coordinator counts acknowledgements as they
    /// arrive, not replicas, so one delivered twice counts twice. Off by
    /// default; no command sets it.
    pub bug_count_duplicate_acknowledgements: bool,
    /// **A deliberate bug**: at start the hybrid clock is not seeded from
    /// the highest stored timestamp, so a node restarted behind its old
    /// wall clock stamps writes below its earlier ones. Off by default; no
    /// command sets it.
    pub bug_hlc_not_seeded_on_restart: bool,
    /// **A deliberate bug**: a peer's clock reading is adopted however far
    /// ahead of this node's wall clock it is. Off by default; no command
    /// sets it.
    pub bug_adopt_remote_readings_without_bound: bool,
    /// **A deliberate bug**: with [`Self::commit_wait`] on, answers leave
    /// at once instead of waiting for the clock. Off by default; no command
    /// sets it.
    pub bug_skip_commit_wait: bool,
    /// **A deliberate bug**: this node, as coordinator, ignores the floors
    /// a client session sends ([`crate::SessionFloor`]): it stamps writes
    /// from its own clock alone and answers reads at the level's count
    /// whatever version they find. Off by default; no command sets it.
    pub bug_ignore_session_floors: bool,
    /// **A deliberate bug**: a Paxos acceptor accepts a proposal whose
    /// ballot is below the one it promised. Off by default; no command sets
    /// it.
    pub bug_paxos_accept_below_promise: bool,
    /// **A deliberate bug**: a Paxos proposer ignores an accepted but
    /// uncommitted proposal it learned in the promises and proposes its own
    /// value instead. Off by default; no command sets it.
    pub bug_paxos_ignores_in_progress_proposal: bool,
    /// **A deliberate bug**: a Paxos acceptor keeps its promises and
    /// acceptances in memory and answers at once; its state reaches the
    /// disk only with the key's next commit, so a crash loses promises and
    /// acceptances peers have already counted. Off by default; no command
    /// sets it.
    pub bug_paxos_promise_before_durable: bool,
    /// **A deliberate bug**: a Paxos proposer finishing another's proposal
    /// commits it with the timestamp it was first proposed with, however
    /// old. Past the lateness bound its replicas refuse that commit as
    /// late, so the proposal stays unfinished and every later proposer
    /// finishes it the same way, in vain: the key takes no other write.
    /// Off by default; no command sets it.
    pub bug_paxos_finish_with_stale_stamp: bool,
    /// **A deliberate bug**: a Paxos proposer counts its own value chosen
    /// (answers the client and commits) once one acceptor took it, not a
    /// majority. Off by default; no command sets it.
    pub bug_paxos_answer_after_first_acceptance: bool,
    /// **A deliberate bug**: a Paxos acceptor whose range lost data serves
    /// as if it had lost nothing: no floor, and its promises count even for
    /// keys whose acceptances it may have forgotten. Off by default; no
    /// command sets it.
    pub bug_paxos_acceptor_forgets_loss: bool,
    /// **A deliberate bug**: a node that lost a table keeps what its other
    /// tables hold of the damaged ranges instead of dropping it before its
    /// peers refill them, so a version that a lost tombstone hid, and that
    /// the peers purged with the tombstone, is pushed back to them by the
    /// next repair. Off by default; no command sets it.
    pub bug_damaged_node_keeps_stale_data: bool,
    /// **A deliberate bug**: an anti-entropy initiator that cannot write
    /// what it pulled from a peer (a full disk) goes on with its session
    /// as if it had, so the range is recorded repaired (and a damaged
    /// range served again) on data it never stored. Off by default; no
    /// command sets it.
    pub bug_repair_counts_unapplied_pull: bool,
    /// **A deliberate bug**: a `QUORUM` or `ALL` read answers what it read
    /// even when a replica reports an accepted, uncommitted Paxos proposal
    /// newer than its version, instead of finishing it first. Off by
    /// default; no command sets it.
    pub bug_read_ignores_unfinished_paxos: bool,
    /// **A deliberate bug**: a node that has not yet judged its clock
    /// against its peers' lets its own replica alone take a write at a
    /// level one replica meets, so a clock far ahead stamps acknowledged
    /// writes no peer checked. Off by default; no command sets it.
    pub bug_unjudged_clock_writes_alone: bool,
}

impl Default for NodeOptions {
    fn default() -> Self {
        Self {
            request_timeout_nanos: 1_000_000_000,
            requests_pending_max: 10_000,
            engine: EngineOptions::default(),
            background_bytes_per_tick: 8 * 1024 * 1024,
            background_steps_per_tick: usize::MAX,
            seed: 0,
            gossip_interval_nanos: GOSSIP_INTERVAL_NANOS_DEFAULT,
            phi_convict_threshold: 8.0,
            hints: HintOptions::default(),
            hint_watch_bytes_max: 64 << 20,
            anti_entropy: AntiEntropyOptions::default(),
            gc_grace_nanos: GC_GRACE_NANOS_DEFAULT,
            clock_offset_max_nanos: CLOCK_OFFSET_MAX_NANOS_DEFAULT,
            commit_wait: false,
            clock_uncertainty_nanos: CLOCK_UNCERTAINTY_NANOS_DEFAULT,
            record_versions: false,
            bug_ack_quorum_writes_after_one_replica: false,
            bug_release_outputs_of_a_failed_sync: false,
            bug_read_trusts_the_data_over_digests: false,
            bug_delete_hints_on_send: false,
            bug_purge_tombstones_without_repair: false,
            bug_serve_quarantined_ranges: false,
            bug_wait_on_down_replicas: false,
            bug_count_answers_of_earlier_generations: false,
            bug_read_error_answers_absent: false,
            bug_count_duplicate_acknowledgements: false,
            bug_hlc_not_seeded_on_restart: false,
            bug_adopt_remote_readings_without_bound: false,
            bug_skip_commit_wait: false,
            bug_ignore_session_floors: false,
            bug_paxos_accept_below_promise: false,
            bug_paxos_ignores_in_progress_proposal: false,
            bug_paxos_finish_with_stale_stamp: false,
            bug_paxos_answer_after_first_acceptance: false,
            bug_paxos_acceptor_forgets_loss: false,
            bug_damaged_node_keeps_stale_data: false,
            bug_repair_counts_unapplied_pull: false,
            bug_read_ignores_unfinished_paxos: false,
            bug_unjudged_clock_writes_alone: false,
            bug_paxos_promise_before_durable: false,
        }
    }
}

impl NodeOptions {
    /// Checks the options a node cannot run with.
    ///
    /// # Errors
    /// A description of the first bad value.
    pub fn validate(&self) -> Result<(), String> {
        if self.gossip_interval_nanos == 0 {
            return Err("gossip interval must be positive".into());
        }
        if !(self.phi_convict_threshold > 0.0 && self.phi_convict_threshold.is_finite()) {
            return Err(format!(
                "phi convict threshold {} must be a positive number",
                self.phi_convict_threshold
            ));
        }
        if self.request_timeout_nanos == 0 {
            return Err("request timeout must be positive".into());
        }
        if self.background_steps_per_tick == 0 {
            return Err("background steps per tick must be positive".into());
        }
        if self.hints.replay_bytes_per_tick == 0 || self.hints.replay_timeout_nanos == 0 {
            return Err("hint replay budget and timeout must be positive".into());
        }
        if self.commit_wait && self.clock_uncertainty_nanos >= self.request_timeout_nanos {
            return Err(format!(
                "clock uncertainty of {} ms must be below the request timeout of {} ms: commit wait would time every write out",
                self.clock_uncertainty_nanos / 1_000_000,
                self.request_timeout_nanos / 1_000_000
            ));
        }
        self.anti_entropy.validate()
    }

    /// The failure detector's options.
    pub fn failure_detector(&self) -> FailureDetectorOptions {
        FailureDetectorOptions {
            phi_convict_threshold: self.phi_convict_threshold,
            ..FailureDetectorOptions::for_gossip_interval(self.gossip_interval_nanos)
        }
    }

    /// How late (by this node's wall clock) a client write or a hint may
    /// arrive after its timestamp and still be applied: the hint window
    /// plus the clock offset bound. Older ones are refused. Anti-entropy's
    /// gate on tombstone purging relies on it: a repair session started
    /// more than this after a tombstone saw every version older than it.
    pub fn write_lateness_max_nanos(&self) -> u64 {
        self.hints
            .window_nanos
            .saturating_add(self.clock_offset_max_nanos)
    }
}
