//! Group commit as the production driver does it, and the crash windows it
//! opens.
//!
//! A node steps every input as it arrives, but its outputs wait for the
//! batch's sync. The first input that leaves a write unsynced opens a batch
//! window of a drawn length; inputs arriving in the window join the batch;
//! when it closes the sync starts, and takes the disk's drawn latency.
//! Inputs arriving during the sync wait and form the next batch (as in
//! production, where `flush` blocks the node's thread). Only when the sync
//! completes does [`Node::flush`](enigma_cluster::Node::flush) run and the
//! batch's outputs leave. An input that leaves nothing to sync (a read, an
//! idle tick) with no batch open is released at once, as the production
//! driver's read path does.
//!
//! The nemesis may crash a node at any point: between its steps and the
//! batch's sync (the applied writes were never synced), or while the sync is
//! in flight (it then completes or not, drawn; either way the outputs never
//! leave, and the disk keeps, loses or tears what is unsynced).

use enigma_cluster::{ClientResponse, Input, Output, RequestId};
use rand::Rng;
use std::collections::BTreeMap;

use super::{version_of, Event, Simulation};
use crate::recording::SpanKind;
use enigma_checker::Version;

/// Longest wait before a node that stopped itself (a failed sync) is
/// started again.
const RESTART_AFTER_STOP_NANOS_MAX: u64 = 1_000_000_000;

/// How long one disk's syncs take: usually within `min..=max`, now and then
/// (with `stall_probability`) up to `stall_max` (a device queue stall).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct SyncLatency {
    pub(super) min_nanos: u64,
    pub(super) max_nanos: u64,
    pub(super) stall_per_mille: u32,
    pub(super) stall_max_nanos: u64,
}

/// The sync latency profiles a disk draws from: a fast device, an ordinary
/// one and a slow one that stalls now and then.
pub(super) const SYNC_LATENCY_PROFILES: [SyncLatency; 3] = [
    SyncLatency {
        min_nanos: 20_000,
        max_nanos: 100_000,
        stall_per_mille: 0,
        stall_max_nanos: 0,
    },
    SyncLatency {
        min_nanos: 100_000,
        max_nanos: 1_000_000,
        stall_per_mille: 5,
        stall_max_nanos: 10_000_000,
    },
    SyncLatency {
        min_nanos: 1_000_000,
        max_nanos: 5_000_000,
        stall_per_mille: 20,
        stall_max_nanos: 50_000_000,
    },
];

impl SyncLatency {
    fn draw(&self, rng: &mut impl Rng) -> u64 {
        if self.stall_per_mille > 0 && rng.random_range(0..1000) < self.stall_per_mille {
            rng.random_range(self.max_nanos..=self.stall_max_nanos)
        } else {
            rng.random_range(self.min_nanos..=self.max_nanos)
        }
    }
}

/// Where a node's group commit stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Batch {
    /// No batch open: the next input that leaves a write unsynced opens one.
    Idle,
    /// Inputs were applied; the window closes at a `BatchClose` event.
    Gathering,
    /// The sync is in flight until a `SyncDone` event.
    Syncing,
}

/// Where an armed crash lands in a node's next batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum CrashPoint {
    /// When the window closes: every input applied, nothing synced.
    BeforeSync,
    /// Part-way through the sync.
    DuringSync,
    /// Between two steps of a flush or compaction (table written, edit
    /// committed, covered files deleted), at the node's first steps with a
    /// job in progress (one chance in two each); at once if no job has
    /// started by `until_nanos` (virtual time).
    InBackgroundJob { until_nanos: u64 },
}

/// How long a crash armed for a background job waits for one to start.
pub(super) const CRASH_IN_BACKGROUND_JOB_WAIT_NANOS: u64 = 1_000_000_000;

impl Simulation {
    /// Feeds one input to a node. Its outputs leave with its batch's sync.
    pub(super) fn step_node(&mut self, index: usize, input: Input) {
        let now = self.slots[index].clock.now(self.now);
        let slot = &mut self.slots[index];
        let Some(node) = slot.node.as_mut() else {
            return;
        };
        if slot.batch == Batch::Syncing {
            slot.waiting.push(input);
            return;
        }
        let client = match &input {
            Input::Client { request, body } => Some((*request, body.level, body.op.key().to_vec())),
            _ => None,
        };
        node.step(now, input);
        if let Some((request, level, key)) = client {
            self.note_fail_fast(index, request, level, &key);
        }
        let slot = &mut self.slots[index];
        let Some(node) = slot.node.as_mut() else {
            return;
        };
        if let Some(CrashPoint::InBackgroundJob { until_nanos }) = slot.crash_armed {
            let inside = node.engine().background_job_in_progress();
            if (inside && self.rng_commit.random_bool(0.5)) || self.now >= until_nanos {
                let id = slot.id;
                self.trace.record(self.now, &[14, index as u8], || {
                    let place = if inside { "inside" } else { "outside" };
                    format!("{id} crashes {place} a background job")
                });
                self.crash(index);
                return;
            }
        }
        if slot.batch == Batch::Gathering {
            return;
        }
        if !node.engine().has_unsynced() && slot.crash_armed.is_none() {
            self.release(index);
            return;
        }
        slot.batch = Batch::Gathering;
        let window = self
            .rng_commit
            .random_range(0..=self.group_commit_window_max_nanos);
        let incarnation = slot.incarnation;
        self.schedule(
            window,
            Event::BatchClose {
                node: index,
                incarnation,
            },
        );
    }

    /// The batch window closes: the sync starts (or an armed crash lands).
    pub(super) fn on_batch_close(&mut self, index: usize, incarnation: u64) {
        let slot = &mut self.slots[index];
        if slot.incarnation != incarnation || slot.batch != Batch::Gathering {
            return;
        }
        let Some(node) = slot.node.as_ref() else {
            return;
        };
        if slot.crash_armed == Some(CrashPoint::BeforeSync) {
            let id = slot.id;
            self.trace.record(self.now, &[10, index as u8], || {
                format!("{id} crashes with a batch applied but not synced")
            });
            self.stats.crashes_before_sync += 1;
            self.crash(index);
            return;
        }
        let latency = if node.engine().has_unsynced() {
            slot.sync_latency.draw(&mut self.rng_commit)
        } else {
            0
        };
        slot.batch = Batch::Syncing;
        if self.config.planted_release_before_sync {
            // The planted driver bug: the batch's outputs leave as its sync
            // starts. The disk holds the sync back until it completes.
            slot.disk.hold_syncs(true);
            self.release(index);
            if self.slots[index].node.is_none() {
                return;
            }
        }
        if self.slots[index].crash_armed == Some(CrashPoint::DuringSync) {
            let at = self.rng_commit.random_range(0..=latency);
            self.schedule(
                at,
                Event::CrashMidSync {
                    node: index,
                    incarnation,
                },
            );
        }
        self.schedule(
            latency,
            Event::SyncDone {
                node: index,
                incarnation,
            },
        );
    }

    /// The sync completes: the batch's outputs leave, and what waited forms
    /// the next batch.
    pub(super) fn on_sync_done(&mut self, index: usize, incarnation: u64) {
        let slot = &mut self.slots[index];
        if slot.incarnation != incarnation || slot.batch != Batch::Syncing {
            return;
        }
        slot.batch = Batch::Idle;
        if self.config.planted_release_before_sync {
            slot.disk.hold_syncs(false);
        } else {
            self.release(index);
        }
        let waiting = std::mem::take(&mut self.slots[index].waiting);
        for input in waiting {
            self.step_node(index, input);
        }
    }

    /// The armed crash lands while the sync is in flight.
    pub(super) fn on_crash_mid_sync(&mut self, index: usize, incarnation: u64) {
        let slot = &self.slots[index];
        if slot.incarnation != incarnation || slot.batch != Batch::Syncing {
            return;
        }
        let id = slot.id;
        self.trace.record(self.now, &[11, index as u8], || {
            format!("{id} crashes while its sync is in flight")
        });
        enigma_engine::marks::hit(enigma_engine::Mark::SimCrashMidSync);
        self.stats.crashes_during_sync += 1;
        self.crash(index);
    }

    /// Flushes the node (one sync for its whole batch) and releases its
    /// outputs; a failed flush stops the node.
    pub(super) fn release(&mut self, index: usize) {
        let slot = &mut self.slots[index];
        let Some(node) = slot.node.as_mut() else {
            return;
        };
        match node.flush() {
            Ok(outputs) => {
                for ack in node.take_acknowledged_writes() {
                    let newest = slot
                        .acknowledged
                        .entry(ack.key)
                        .or_insert((ack.timestamp, ack.tombstone));
                    if newest.0 < ack.timestamp {
                        *newest = (ack.timestamp, ack.tombstone);
                    }
                    self.stats.writes_acknowledged += 1;
                }
                super::note_unacknowledged(
                    &mut slot.unacknowledged_tombstones,
                    node.take_unacknowledged_writes(),
                );
                let versions: BTreeMap<RequestId, Version> = node
                    .take_reply_versions()
                    .into_iter()
                    .filter_map(|v| Some((v.request, version_of(v.timestamp?))))
                    .collect();
                for output in outputs {
                    let version = match &output {
                        Output::Reply { request, .. } => versions.get(request).copied(),
                        Output::Send { .. } => None,
                    };
                    if let (Output::Reply { response, .. }, Some(stamp)) = (&output, version) {
                        self.check_stamp(index, response, stamp);
                    }
                    self.emit(index, output, version);
                }
            }
            Err(e) => {
                let id = slot.id;
                slot.batch = Batch::Idle;
                self.trace
                    .record(self.now, &[7, index as u8], || format!("{id} stopped: {e}"));
                self.crash(index);
                self.record(|r, _| r.relabel_last(SpanKind::Down, index, format!("stopped: {e}")));
                // The node stopped itself; an operator (here, the
                // simulator) starts it again from its disk.
                let delay = self
                    .rng_commit
                    .random_range(0..=RESTART_AFTER_STOP_NANOS_MAX);
                self.schedule(delay, Event::RestartStopped { node: index });
            }
        }
    }

    /// What a crash does to a batch in flight: a sync in flight completes
    /// or not (drawn); nothing of the batch leaves either way.
    pub(super) fn end_batch_in_crash(&mut self, index: usize) {
        let slot = &mut self.slots[index];
        let syncing = slot.batch == Batch::Syncing;
        slot.batch = Batch::Idle;
        slot.waiting.clear();
        slot.crash_armed = None;
        if !syncing {
            return;
        }
        let completed = self.rng_commit.random_bool(0.5);
        let slot = &mut self.slots[index];
        if self.config.planted_release_before_sync {
            if completed {
                slot.disk.hold_syncs(false);
            }
            return;
        }
        if completed {
            if let Some(node) = slot.node.as_mut() {
                // Made durable, but the process dies before anything leaves.
                let _ = node.flush();
            }
        }
    }

    /// A write this node coordinated in its current incarnation must be
    /// stamped above every version it durably held when it started.
    fn check_stamp(&mut self, index: usize, response: &ClientResponse, stamp: Version) {
        let slot = &self.slots[index];
        let Some(floor) = slot.stamp_floor else {
            return;
        };
        if *response != ClientResponse::Written
            || (stamp.timestamp, stamp.writer) > (floor.hlc, u64::from(floor.node))
        {
            return;
        }
        let id = slot.id;
        self.violate(
            "clock",
            format!(
                "{id} stamped a write {stamp} after its restart, not above {} by {} it held before",
                floor.hlc, floor.node
            ),
        );
    }
}
