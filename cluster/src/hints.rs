//! Hinted handoff: the bookkeeping of writes a coordinator keeps for
//! replicas that did not take them.
//!
//! A hint is stored durably in the engine's system key space
//! ([`crate::keyspace`]) by the node, in the same group commit as the
//! write it stands for; this module only decides. It keeps, per target, an
//! index of the hints held (id, bytes) and which are in flight, and
//! answers the node's questions:
//!
//! - [`Hints::admit`]: a new hint for a target; which old hints must go to
//!   keep the target under [`HintOptions::bytes_max_per_node`] (the oldest
//!   go first, counted as dropped).
//! - [`Hints::due`]: which hints to send now, paced by bytes per tick and a
//!   bounded number in flight, resending those whose acknowledgement did
//!   not come within [`HintOptions::replay_timeout_nanos`].
//! - [`Hints::acknowledged`]: the target holds a hint durably; only now may
//!   the node delete it.
//! - [`Hints::expired`]: hints older than [`HintOptions::window_nanos`] are
//!   dropped (counted): past that age anti-entropy is the way to repair.
//!
//! Hints never count toward a consistency level.

use std::collections::BTreeMap;

use crate::ids::NodeId;

/// Hints sent to one target and not yet acknowledged, at most.
pub const HINTS_IN_FLIGHT_MAX: usize = 64;

/// Tunables of hinted handoff.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HintOptions {
    /// Whether the coordinator stores hints at all.
    pub enabled: bool,
    /// Bytes of hints kept per target; beyond it the oldest are dropped.
    pub bytes_max_per_node: u64,
    /// Hints older than this are dropped (Cassandra's hint window: 3 h).
    pub window_nanos: u64,
    /// Bytes of hints sent per tick, across targets.
    pub replay_bytes_per_tick: u64,
    /// How long a sent hint waits for its acknowledgement before it is sent
    /// again.
    pub replay_timeout_nanos: u64,
}

impl Default for HintOptions {
    fn default() -> Self {
        Self {
            enabled: true,
            bytes_max_per_node: 64 << 20,
            window_nanos: 3 * 3_600 * 1_000_000_000,
            replay_bytes_per_tick: 1 << 20,
            replay_timeout_nanos: 2_000_000_000,
        }
    }
}

/// Counters for one target.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HintStats {
    /// Hints stored.
    pub stored: u64,
    /// Hints the target acknowledged (then deleted).
    pub replayed: u64,
    /// Hints dropped to stay under the byte bound.
    pub dropped_full: u64,
    /// Hints dropped for age.
    pub dropped_expired: u64,
    /// Hints sent again after no acknowledgement came.
    pub resent: u64,
}

/// One held hint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Held {
    /// Bytes it takes in storage (its value), for the bound.
    bytes: u64,
    /// When it was created (wall nanoseconds), for the window.
    created_wall_nanos: u64,
    /// When it was last sent (monotonic), if it is in flight.
    sent_mono_nanos: Option<u64>,
}

/// Hints held for one target.
#[derive(Debug, Clone, Default)]
struct Target {
    /// By id, which increases with creation: oldest first.
    held: BTreeMap<u64, Held>,
    bytes: u64,
    in_flight: usize,
    stats: HintStats,
}

/// A hint to delete from storage, and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dropped {
    /// Its target.
    pub target: NodeId,
    /// Its id.
    pub id: u64,
}

/// Every target's hints at this coordinator.
#[derive(Debug, Clone)]
pub struct Hints {
    options: HintOptions,
    targets: BTreeMap<NodeId, Target>,
}

impl Hints {
    /// No hints yet.
    pub fn new(options: HintOptions) -> Self {
        Self {
            options,
            targets: BTreeMap::new(),
        }
    }

    /// The options.
    pub fn options(&self) -> &HintOptions {
        &self.options
    }

    /// Records a hint found in storage at start (not counted as stored).
    pub fn recovered(&mut self, target: NodeId, id: u64, bytes: u64, created_wall_nanos: u64) {
        let t = self.targets.entry(target).or_default();
        if t.held
            .insert(
                id,
                Held {
                    bytes,
                    created_wall_nanos,
                    sent_mono_nanos: None,
                },
            )
            .is_none()
        {
            t.bytes += bytes;
        }
    }

    /// Admits a new hint of `bytes` for `target`. Returns the hints to
    /// delete to stay within the bound, oldest first; if the new hint alone
    /// exceeds the bound it is not admitted (returned as dropped too, and
    /// the caller must not store it).
    pub fn admit(
        &mut self,
        target: NodeId,
        id: u64,
        bytes: u64,
        created_wall_nanos: u64,
    ) -> Vec<Dropped> {
        let bound = self.options.bytes_max_per_node;
        let t = self.targets.entry(target).or_default();
        let mut dropped = Vec::new();
        if bytes > bound {
            t.stats.dropped_full += 1;
            dropped.push(Dropped { target, id });
            return dropped;
        }
        while t.bytes + bytes > bound {
            let (&old, _) = t.held.iter().next().expect("bytes held imply hints held");
            Self::forget(t, old);
            enigma_engine::marks::hit(enigma_engine::Mark::HintEvicted);
            t.stats.dropped_full += 1;
            dropped.push(Dropped { target, id: old });
        }
        t.held.insert(
            id,
            Held {
                bytes,
                created_wall_nanos,
                sent_mono_nanos: None,
            },
        );
        t.bytes += bytes;
        enigma_engine::marks::hit(enigma_engine::Mark::HintStored);
        t.stats.stored += 1;
        dropped
    }

    fn forget(t: &mut Target, id: u64) -> Option<Held> {
        let held = t.held.remove(&id)?;
        t.bytes -= held.bytes;
        if held.sent_mono_nanos.is_some() {
            t.in_flight -= 1;
        }
        Some(held)
    }

    /// The hints to send now, for targets `is_up` says are up: each target
    /// gets its oldest hints not in flight (or whose acknowledgement is
    /// overdue), at most [`HINTS_IN_FLIGHT_MAX`] in flight, until
    /// [`HintOptions::replay_bytes_per_tick`] is spent. Marks them sent.
    pub fn due(&mut self, now_mono_nanos: u64, is_up: impl Fn(NodeId) -> bool) -> Vec<Dropped> {
        let mut budget = self.options.replay_bytes_per_tick;
        let timeout = self.options.replay_timeout_nanos;
        let mut out = Vec::new();
        for (&target, t) in &mut self.targets {
            if t.held.is_empty() || !is_up(target) {
                continue;
            }
            for (&id, held) in &mut t.held {
                if budget == 0 {
                    return out;
                }
                let overdue = held
                    .sent_mono_nanos
                    .is_some_and(|sent| now_mono_nanos.saturating_sub(sent) >= timeout);
                if held.sent_mono_nanos.is_some() && !overdue {
                    continue;
                }
                if overdue {
                    enigma_engine::marks::hit(enigma_engine::Mark::HintResent);
                    t.stats.resent += 1;
                } else {
                    if t.in_flight >= HINTS_IN_FLIGHT_MAX {
                        break;
                    }
                    t.in_flight += 1;
                }
                held.sent_mono_nanos = Some(now_mono_nanos);
                budget = budget.saturating_sub(held.bytes.max(1));
                out.push(Dropped { target, id });
            }
        }
        out
    }

    /// `target` acknowledged hint `id` durably. Returns whether it was
    /// held (then the node deletes it from storage).
    pub fn acknowledged(&mut self, target: NodeId, id: u64) -> bool {
        let Some(t) = self.targets.get_mut(&target) else {
            return false;
        };
        let known = Self::forget(t, id).is_some();
        if known {
            enigma_engine::marks::hit(enigma_engine::Mark::HintReplayed);
            t.stats.replayed += 1;
        }
        known
    }

    /// A hint that could not be read back or sent (storage failed, or it
    /// no longer decodes): forget it without counting it replayed.
    pub fn discard(&mut self, target: NodeId, id: u64) {
        if let Some(t) = self.targets.get_mut(&target) {
            Self::forget(t, id);
        }
    }

    /// Hints created more than the window before `now_wall_nanos`; they
    /// are forgotten here and counted, and the node deletes them.
    pub fn expired(&mut self, now_wall_nanos: u64) -> Vec<Dropped> {
        let cutoff = now_wall_nanos.saturating_sub(self.options.window_nanos);
        let mut out = Vec::new();
        for (&target, t) in &mut self.targets {
            let old: Vec<u64> = t
                .held
                .iter()
                .filter(|(_, held)| held.created_wall_nanos < cutoff)
                .map(|(&id, _)| id)
                .collect();
            for id in old {
                Self::forget(t, id);
                enigma_engine::marks::hit(enigma_engine::Mark::HintExpired);
                t.stats.dropped_expired += 1;
                out.push(Dropped { target, id });
            }
        }
        out
    }

    /// Hints held for `target`, and their bytes.
    pub fn held(&self, target: NodeId) -> (usize, u64) {
        self.targets
            .get(&target)
            .map_or((0, 0), |t| (t.held.len(), t.bytes))
    }

    /// Hints held for all targets.
    pub fn held_total(&self) -> usize {
        self.targets.values().map(|t| t.held.len()).sum()
    }

    /// Counters of every target that ever had a hint, in node order.
    pub fn stats(&self) -> Vec<(NodeId, HintStats)> {
        self.targets
            .iter()
            .map(|(&node, t)| (node, t.stats.clone()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const N2: NodeId = NodeId(2);
    const N3: NodeId = NodeId(3);

    fn options() -> HintOptions {
        HintOptions {
            enabled: true,
            bytes_max_per_node: 100,
            window_nanos: 1_000,
            replay_bytes_per_tick: 1_000,
            replay_timeout_nanos: 50,
        }
    }

    #[test]
    fn the_oldest_hints_go_when_a_target_is_full() {
        let mut hints = Hints::new(options());
        for id in 1..=4 {
            assert!(hints.admit(N2, id, 25, 0).is_empty());
        }
        let dropped = hints.admit(N2, 5, 30, 0);
        assert_eq!(
            dropped,
            vec![Dropped { target: N2, id: 1 }, Dropped { target: N2, id: 2 }]
        );
        assert_eq!(hints.held(N2), (3, 80));
        assert_eq!(hints.stats()[0].1.dropped_full, 2);
        // A hint larger than the bound is refused outright.
        assert_eq!(
            hints.admit(N3, 9, 101, 0),
            vec![Dropped { target: N3, id: 9 }]
        );
        assert_eq!(hints.held(N3), (0, 0));
    }

    #[test]
    fn hints_are_sent_only_to_up_targets_and_resent_when_unanswered() {
        let mut hints = Hints::new(options());
        hints.admit(N2, 1, 10, 0);
        hints.admit(N3, 2, 10, 0);
        let due = hints.due(0, |n| n == N2);
        assert_eq!(due, vec![Dropped { target: N2, id: 1 }]);
        assert!(hints.due(10, |n| n == N2).is_empty(), "in flight");
        assert_eq!(hints.due(60, |n| n == N2), due, "overdue: resent");
        assert!(hints.acknowledged(N2, 1));
        assert!(!hints.acknowledged(N2, 1), "only once");
        assert_eq!(hints.held(N2), (0, 0));
        let stats = &hints.stats()[0].1;
        assert_eq!((stats.replayed, stats.resent), (1, 1));
    }

    #[test]
    fn replay_is_paced_by_bytes_and_bounded_in_flight() {
        let mut hints = Hints::new(HintOptions {
            bytes_max_per_node: 1 << 30,
            replay_bytes_per_tick: 250,
            replay_timeout_nanos: 1_000_000,
            ..options()
        });
        for id in 0..(HINTS_IN_FLIGHT_MAX as u64 * 2) {
            hints.admit(N2, id, 100, 0);
        }
        assert_eq!(hints.due(0, |_| true).len(), 3, "250 bytes: three hints");
        let mut sent = 3;
        for tick in 1..100 {
            sent += hints.due(tick, |_| true).len();
        }
        assert_eq!(sent, HINTS_IN_FLIGHT_MAX);
    }

    #[test]
    fn hints_past_the_window_expire() {
        let mut hints = Hints::new(options());
        hints.admit(N2, 1, 10, 100);
        hints.admit(N2, 2, 10, 900);
        assert_eq!(hints.expired(1_500), vec![Dropped { target: N2, id: 1 }]);
        assert_eq!(hints.held(N2), (1, 10));
        assert_eq!(hints.stats()[0].1.dropped_expired, 1);
    }

    #[test]
    fn recovered_hints_are_held_but_not_counted_as_stored() {
        let mut hints = Hints::new(options());
        hints.recovered(N2, 4, 10, 0);
        hints.recovered(N2, 4, 10, 0);
        assert_eq!(hints.held(N2), (1, 10));
        assert_eq!(hints.stats()[0].1.stored, 0);
        assert_eq!(hints.held_total(), 1);
    }
}
