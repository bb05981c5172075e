//! The nodes of a run: starting and crashing them, and sending what they
//! output (frames to peers, replies to clients).

use enigma_cluster::hlc::HlcClock;
use enigma_cluster::{encode_frame, Node, NodeError, NodeOptions, Output};
use enigma_engine::{Disk, DiskFile, WAL_RECORDS_OFFSET};
use rand::Rng;

use super::commit::Batch;
use super::nemesis::boot_mono_nanos;
use super::{Answer, Event, Simulation};
use crate::clock::EPOCH_WALL_NANOS;
use crate::disk::SimDisk;
use crate::recording::SpanKind;
use crate::rng::stream;
use enigma_checker::Version;

impl Simulation {
    pub(super) fn start_node(&mut self, index: usize) {
        // Bad reads are for a running node: during recovery a bad read of
        // the log's last segment would look exactly like a torn tail.
        self.end_read_faults(index);
        self.end_disk_full(index);
        if self.nemesis.options().clock_jumps && self.rng_clock.random_bool(0.5) {
            // The node comes back with a clock that moved while it was down.
            let bound = self.clock_offset_nanos_max;
            let jump = self.rng_clock.random_range(-bound..=bound);
            self.slots[index].clock.jump(jump, bound);
            self.stats.clock_jumps += 1;
            self.record(|r, now| {
                r.mark(
                    now,
                    index,
                    "clock",
                    format!("clock moved {} ms while down", jump / 1_000_000),
                );
            });
        }
        self.damage_sealed_segment_at_start(index);
        let boot = boot_mono_nanos(&mut self.rng_clock);
        let now = self.now;
        let slot = &mut self.slots[index];
        assert!(slot.node.is_none(), "starting a running node");
        slot.clock.restart(now, boot);
        // Damage not yet dealt with still fails the jobs that meet it.
        slot.disk_faulted = slot.damage.is_some();
        let options = NodeOptions {
            // Each node draws from its own stream of the seed (the node
            // mixes in its boot generation, so restarts draw anew).
            seed: stream(self.config.seed, &format!("node-{}", slot.id.0)).random(),
            // The planted bug drops the session's floors at one coordinator
            // only: the others keep the guarantees, so only the requests
            // that land there break them.
            bug_ignore_session_floors: self.config.planted_session_timestamp_dropped
                && slot.id.0 == 1,
            ..self.node_options.clone()
        };
        let mut started = Node::new(slot.id, &self.cluster, options.clone(), slot.disk.clone());
        let mut rebuilt = false;
        if let (Err(error @ NodeError::Damaged { .. }), true) = (&started, self.holds_damage(index))
        {
            rebuilt = true;
            // Damage a start must read: rebuilt from its peers.
            let id = self.slots[index].id;
            let what = format!("{id} refused to start ({error}): rebuilt from its peers");
            self.trace
                .record(self.now, &[32, index as u8], || what.clone());
            self.record(|r, now| r.mark(now, index, "rebuilt", what));
            self.wipe_for_rebuild(index);
            let slot = &self.slots[index];
            started = Node::new(slot.id, &self.cluster, options, slot.disk.clone());
        }
        let slot = &mut self.slots[index];
        match started {
            Ok(node) => {
                if !rebuilt
                    && slot
                        .damage
                        .as_deref()
                        .is_some_and(super::damage::is_log_segment)
                {
                    // A start that met a rotted sealed segment must refuse
                    // (and the node is rebuilt); this one did not, so the
                    // segment was covered by tables and removed unread: the
                    // node holds all it acknowledged, and its durability is
                    // checked.
                    slot.damage = None;
                }
                slot.node = Some(node);
                slot.incarnation += 1;
                slot.stamp_floor = slot.acknowledged.values().map(|&(t, _)| t).max();
                self.record(|r, now| r.close(now, SpanKind::Down, Some(index)));
                self.check_durability(index, "after a restart");
            }
            Err(e) => {
                let id = slot.id;
                self.violate(
                    "recovery",
                    format!("{id} failed to start from its disk: {e}"),
                );
            }
        }
    }

    pub(super) fn crash(&mut self, index: usize) {
        let slot = &mut self.slots[index];
        if slot.node.is_some() {
            let how = match slot.batch {
                Batch::Gathering => "crashed with a batch applied, not synced",
                Batch::Syncing => "crashed while its sync was in flight",
                Batch::Idle => "crashed",
            };
            self.record(|r, now| r.open(now, SpanKind::Down, Some(index), how.to_owned()));
            self.end_batch_in_crash(index);
            self.reset_links_of(index);
            let mut node = self.slots[index].node.take().expect("checked just above");
            // Outputs of a batch synced as the process died never left,
            // and the batch in progress never synced: none of their writes
            // was acknowledged, yet any may be on the disk.
            let mut maybe_durable = node.take_acknowledged_writes();
            maybe_durable.append(&mut node.take_unacknowledged_writes());
            super::note_unacknowledged(
                &mut self.slots[index].unacknowledged_tombstones,
                maybe_durable,
            );
            if node.engine().background_job_in_progress() {
                enigma_engine::marks::hit(enigma_engine::Mark::SimCrashInBackgroundJob);
                self.stats.crashes_in_background_job += 1;
            }
            self.absorb_stats(&node);
            self.note_background_errors(index, &node);
            let slot = &mut self.slots[index];
            slot.disk.crash(&mut self.rng_disk);
            if self.config.planted_disk_loses_synced_writes {
                forget_newest_wal_segment(&slot.disk);
            }
            self.stats.crashes += 1;
            self.continue_crash_loop(index);
        }
    }

    /// Adds a node's counters to the run's, when the node stops (its
    /// counters start again with its next incarnation).
    pub(super) fn absorb_stats(&mut self, node: &Node<SimDisk>) {
        let stats = node.stats();
        self.stats.tables_flushed += stats.tables_flushed;
        self.stats.compactions += stats.compactions;
        self.stats.unavailable += stats.unavailable;
        self.stats.tables_quarantined += stats.tables_quarantined;
        self.stats.paxos_sat_out_after_loss += stats.paxos_sat_out_after_loss;
        self.stats.buggify_fired += node.buggify_fired();
        for (_, hints) in node.hint_stats() {
            self.stats.hints_stored += hints.stored;
            self.stats.hints_replayed += hints.replayed;
        }
        let repair = node.anti_entropy_stats();
        self.stats.repair_sessions += repair.sessions_completed;
        self.stats.repair_keys_streamed += repair.keys_sent;
    }

    /// A node's clock reading never runs further ahead of true time than
    /// its own clock may (the run's bound) plus the offset it tolerates
    /// from a peer: it adopts no reading beyond that. The node whose clock
    /// is set far ahead (`clock_far_ahead_ms`) is the one exception.
    fn check_reading(&mut self, from: usize, hlc: u64) {
        if self.config.clock_far_ahead_ms > 0 && self.slots[from].id.0 == 1 {
            return;
        }
        let limit = EPOCH_WALL_NANOS
            .saturating_add(self.now)
            .saturating_add(self.clock_offset_nanos_max.unsigned_abs())
            .saturating_add(self.node_options.clock_offset_max_nanos);
        let reading = HlcClock::wall_nanos_of(hlc);
        // One report is enough: every later message would repeat it.
        if reading > limit && !self.violations.iter().any(|v| v.property == "clock") {
            let id = self.slots[from].id;
            self.violate(
                "clock",
                format!(
                    "{id} sent a clock reading {} ms ahead of true time, beyond its own bound and the offset it tolerates: it adopted a reading it should have refused",
                    (reading - EPOCH_WALL_NANOS - self.now) / 1_000_000
                ),
            );
        }
    }

    pub(super) fn emit(&mut self, from: usize, output: Output, version: Option<Version>) {
        match output {
            Output::Send { to, envelope } => {
                let to = self
                    .slots
                    .iter()
                    .position(|s| s.id == to)
                    .expect("nodes only address cluster members");
                self.check_reading(from, envelope.hlc);
                let frame = encode_frame(&envelope);
                self.stats.messages += 1;
                self.paxos_cost.note(from, to, &envelope.message);
                let incarnations = (self.slots[from].incarnation, self.slots[to].incarnation);
                let to_down = self.slots[to].node.is_none();
                let kind = envelope.message.kind();
                let mut due = None;
                let delays = self.net.delays(&mut self.rng_net, from, to);
                let copies = delays.len();
                // The last copy takes the frame itself: a message is cloned
                // only when it is duplicated.
                let mut frame = Some(frame);
                for (copy, delay) in delays.into_iter().enumerate() {
                    let straggle = self.net.straggle(&mut self.rng_stale, to_down);
                    due = due.or(Some(self.now + delay + straggle));
                    let frame = if copy + 1 == copies {
                        frame.take().expect("taken by the last copy only")
                    } else {
                        frame.clone().expect("kept until the last copy")
                    };
                    self.schedule(
                        delay + straggle,
                        Event::Deliver {
                            from,
                            to,
                            frame,
                            incarnations,
                        },
                    );
                }
                self.record(|r, now| r.message(now, from, to, kind, due));
            }
            Output::Reply {
                request, response, ..
            } => {
                let delay = self.client_latency();
                self.schedule(
                    delay,
                    Event::Reply {
                        request,
                        answer: Box::new(Answer::Response(response)),
                        version,
                    },
                );
            }
        }
    }
}

/// The planted broken disk: cuts the newest write-ahead log segment back to
/// its header after a crash, losing records that were synced (and perhaps
/// acknowledged). Recovery takes the empty segment for a torn tail.
fn forget_newest_wal_segment(disk: &SimDisk) {
    let Ok(names) = disk.list() else {
        return;
    };
    let Some(newest) = names
        .into_iter()
        .filter(|n| n.starts_with("wal-") && n.ends_with(".log"))
        .max()
    else {
        return;
    };
    if let Ok(mut file) = disk.open(&newest) {
        if file.len().is_ok_and(|len| len > WAL_RECORDS_OFFSET) {
            let _ = file.truncate(WAL_RECORDS_OFFSET);
            let _ = file.sync();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::disk::SimDiskFaults;
    use crate::rng::stream;
    use enigma_cluster::{
        ClientOp, ClientRequest, ClusterConfig, ConsistencyLevel, Input, NodeId, NodeOptions, Now,
        RequestId, SessionFloor,
    };
    use enigma_engine::EngineOptions;

    fn node_on(disk: &SimDisk, memtable_bytes: usize) -> Node<SimDisk> {
        let cluster = ClusterConfig {
            nodes: vec![NodeId(1)],
            replication_factor: 1,
            vnodes_per_node: 4,
        };
        let options = NodeOptions {
            engine: EngineOptions {
                memtable_bytes_max: memtable_bytes,
                ..EngineOptions::default()
            },
            ..NodeOptions::default()
        };
        Node::new(NodeId(1), &cluster, options, disk.clone()).expect("a fresh disk")
    }

    fn put(node: &mut Node<SimDisk>, request: u64, key: &str) -> Vec<Output> {
        let body = ClientRequest {
            op: ClientOp::Put {
                key: key.as_bytes().to_vec(),
                value: vec![b'v'; 300],
            },
            level: ConsistencyLevel::One,
            session: SessionFloor::default(),
        };
        node.step(
            Now::default(),
            Input::Client {
                request: RequestId(request),
                body,
            },
        );
        node.flush().expect("writes are durable")
    }

    /// A flush on a tick whose sync fails poisons the engine; the node stops
    /// acknowledging rather than carrying on as if its data were safe.
    #[test]
    fn a_failed_background_flush_stops_the_node() {
        let disk = SimDisk::new(SimDiskFaults::default());
        let mut node = node_on(&disk, 1024);
        for i in 0..4 {
            put(&mut node, i, &format!("k{i}"));
        }
        disk.fail_next_sync();
        node.step(Now::default(), Input::Tick);
        assert_eq!(node.stats().background_errors, 1);
        assert!(
            node.flush().is_err(),
            "the node went on after a failed sync"
        );
        assert!(node.engine().poisoned_reason().is_some());
        // Restarted from its disk, it holds every acknowledged write.
        drop(node);
        let node = node_on(&disk, 1024);
        for i in 0..4 {
            let key = format!("k{i}");
            assert!(node
                .engine()
                .get(key.as_bytes())
                .expect("readable")
                .is_some());
        }
    }

    /// Without a failure the same tick flushes the memtable as a table.
    #[test]
    fn a_tick_flushes_a_full_memtable() {
        let disk = SimDisk::new(SimDiskFaults::default());
        let mut node = node_on(&disk, 1024);
        for i in 0..4 {
            put(&mut node, i, &format!("k{i}"));
        }
        node.step(Now::default(), Input::Tick);
        node.flush().expect("healthy");
        assert_eq!(node.stats().tables_flushed, 1);
        assert_eq!(node.engine().tables_total(), 1);
    }

    #[test]
    fn the_planted_disk_forgets_the_newest_log_records() {
        let disk = SimDisk::new(SimDiskFaults::default());
        let mut node = node_on(&disk, 64 * 1024);
        put(&mut node, 1, "k");
        drop(node);
        disk.crash(&mut stream(1, "disk"));
        forget_newest_wal_segment(&disk);
        let node = node_on(&disk, 64 * 1024);
        assert_eq!(node.engine().get(b"k").expect("readable"), None);
    }
}
