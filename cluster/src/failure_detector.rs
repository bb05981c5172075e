//! Phi-accrual failure detection: this node's own judgment of which peers
//! are up.
//!
//! For each peer the detector keeps the times between the arrivals of new
//! heartbeats (a bounded window) and, at any moment, computes
//! *phi*: how unlikely it is, were the peer alive, to have heard nothing for
//! as long as we have. Inter-arrival times are modelled as exponential, so
//! `phi = elapsed / mean * log10(e)`; a peer is convicted (held down) while
//! phi exceeds [`FailureDetectorOptions::phi_convict_threshold`] (8, as in
//! Cassandra) and is up again as soon as a new heartbeat brings phi down.
//!
//! Three rules keep the judgment honest:
//!
//! - The mean is never taken below the gossip interval: a member bumps its
//!   heartbeat once per interval, so news of it cannot really come faster;
//!   two versions arriving close together (one directly, one relayed by a
//!   third node) would otherwise make an ordinary silence look fatal.
//! - Intervals longer than [`FailureDetectorOptions::interval_sample_max_nanos`]
//!   are not samples of normal behaviour but outages; they are left out of
//!   the window, so a peer coming back after a long outage is not judged by
//!   a mean the outage inflated.
//! - After this node's *own* pause (its ticks stopped for longer than
//!   [`FailureDetectorOptions::local_pause_nanos`]: a stopped process, a
//!   stalled disk), every peer would look silent. The detector then restarts
//!   every peer's silence from now instead of convicting them all.
//!
//! Pure: time comes in as arguments, nothing is read or sent.

use std::collections::{BTreeMap, VecDeque};

use crate::ids::NodeId;

/// `log10(e)`: turns `elapsed / mean` into phi for exponential arrivals.
const PHI_FACTOR: f64 = std::f64::consts::LOG10_E;

/// Inter-arrival samples kept per peer.
pub const ARRIVAL_WINDOW_SAMPLES_MAX: usize = 100;

/// Tunables of the detector.
#[derive(Debug, Clone, PartialEq)]
pub struct FailureDetectorOptions {
    /// Phi above which a peer is held down.
    pub phi_convict_threshold: f64,
    /// Mean inter-arrival time assumed before any sample exists (a peer not
    /// yet heard from is judged as if it gossiped at this pace), and the
    /// floor of the mean.
    pub interval_initial_nanos: u64,
    /// Longest interval taken as a sample; longer ones are outages.
    pub interval_sample_max_nanos: u64,
    /// A gap between two of this node's ticks longer than this is its own
    /// pause: silences restart instead of convicting.
    pub local_pause_nanos: u64,
}

impl FailureDetectorOptions {
    /// Options for a cluster that gossips every `gossip_interval_nanos`.
    pub fn for_gossip_interval(gossip_interval_nanos: u64) -> Self {
        Self {
            phi_convict_threshold: 8.0,
            interval_initial_nanos: gossip_interval_nanos,
            interval_sample_max_nanos: gossip_interval_nanos.saturating_mul(4),
            local_pause_nanos: gossip_interval_nanos.saturating_mul(5),
        }
    }
}

/// One peer's arrival history.
#[derive(Debug, Clone)]
struct Arrivals {
    /// When the last new heartbeat arrived (monotonic).
    last_nanos: u64,
    /// Recent inter-arrival times.
    intervals: VecDeque<u64>,
    /// Sum of `intervals`, kept to compute the mean in constant time.
    intervals_sum: u64,
    /// The peer announced a clean shutdown: down until it is heard again.
    shut_down: bool,
}

/// The detector for every peer of one node.
#[derive(Debug, Clone)]
pub struct FailureDetector {
    options: FailureDetectorOptions,
    peers: BTreeMap<NodeId, Arrivals>,
    /// This node's last tick, to notice its own pauses.
    last_tick_nanos: Option<u64>,
}

impl FailureDetector {
    /// A detector for `peers`, each treated as just heard from at
    /// `now_nanos`: a node that starts gives every peer the benefit of the
    /// doubt for about `phi_convict_threshold / log10(e)` initial intervals.
    pub fn new(
        options: FailureDetectorOptions,
        peers: impl IntoIterator<Item = NodeId>,
        now_nanos: u64,
    ) -> Self {
        assert!(options.phi_convict_threshold > 0.0);
        assert!(options.interval_initial_nanos > 0);
        let peers = peers
            .into_iter()
            .map(|peer| {
                (
                    peer,
                    Arrivals {
                        last_nanos: now_nanos,
                        intervals: VecDeque::new(),
                        intervals_sum: 0,
                        shut_down: false,
                    },
                )
            })
            .collect();
        Self {
            options,
            peers,
            last_tick_nanos: None,
        }
    }

    /// A new heartbeat of `peer` arrived at `now_nanos`.
    pub fn heartbeat(&mut self, peer: NodeId, now_nanos: u64) {
        let sample_max = self.options.interval_sample_max_nanos;
        let Some(arrivals) = self.peers.get_mut(&peer) else {
            return;
        };
        let interval = now_nanos.saturating_sub(arrivals.last_nanos);
        arrivals.last_nanos = now_nanos;
        arrivals.shut_down = false;
        if interval == 0 || interval > sample_max {
            return;
        }
        if arrivals.intervals.len() == ARRIVAL_WINDOW_SAMPLES_MAX {
            let oldest = arrivals.intervals.pop_front().expect("window is full");
            arrivals.intervals_sum -= oldest;
        }
        arrivals.intervals.push_back(interval);
        arrivals.intervals_sum += interval;
    }

    /// `peer` restarted (a new generation): its old arrival history says
    /// nothing about the new process.
    pub fn restarted(&mut self, peer: NodeId, now_nanos: u64) {
        if let Some(arrivals) = self.peers.get_mut(&peer) {
            arrivals.intervals.clear();
            arrivals.intervals_sum = 0;
            arrivals.last_nanos = now_nanos;
            arrivals.shut_down = false;
        }
    }

    /// `peer` said it is shutting down: hold it down until it is heard
    /// from again.
    pub fn shut_down(&mut self, peer: NodeId) {
        if let Some(arrivals) = self.peers.get_mut(&peer) {
            arrivals.shut_down = true;
        }
    }

    /// This node ticked at `now_nanos`. Returns true if the gap since the
    /// previous tick was this node's own pause, after which every peer's
    /// silence restarts from now.
    pub fn tick(&mut self, now_nanos: u64) -> bool {
        let paused = self
            .last_tick_nanos
            .is_some_and(|last| now_nanos.saturating_sub(last) > self.options.local_pause_nanos);
        self.last_tick_nanos = Some(now_nanos);
        if paused {
            enigma_engine::marks::hit(enigma_engine::Mark::PauseForgiven);
            for arrivals in self.peers.values_mut() {
                arrivals.last_nanos = arrivals.last_nanos.max(now_nanos);
            }
        }
        paused
    }

    /// Phi of `peer` at `now_nanos` (0 for an unknown peer). Infinite for a
    /// peer that announced its shutdown.
    pub fn phi(&self, peer: NodeId, now_nanos: u64) -> f64 {
        let Some(arrivals) = self.peers.get(&peer) else {
            return 0.0;
        };
        if arrivals.shut_down {
            return f64::INFINITY;
        }
        let floor = self.options.interval_initial_nanos as f64;
        let mean = if arrivals.intervals.is_empty() {
            floor
        } else {
            arrivals.intervals_sum as f64 / arrivals.intervals.len() as f64
        };
        let elapsed = now_nanos.saturating_sub(arrivals.last_nanos) as f64;
        PHI_FACTOR * elapsed / mean.max(floor)
    }

    /// Whether this node holds `peer` up at `now_nanos`.
    pub fn is_up(&self, peer: NodeId, now_nanos: u64) -> bool {
        self.phi(peer, now_nanos) <= self.options.phi_convict_threshold
    }

    /// The detector's tunables.
    pub fn options(&self) -> &FailureDetectorOptions {
        &self.options
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    fn detector() -> FailureDetector {
        FailureDetector::new(
            FailureDetectorOptions::for_gossip_interval(100 * MS),
            [NodeId(2), NodeId(3)],
            0,
        )
    }

    #[test]
    fn a_regular_peer_stays_up_and_a_silent_one_is_convicted() {
        let mut fd = detector();
        let mut now = 0;
        for _ in 0..50 {
            now += 100 * MS;
            fd.tick(now);
            fd.heartbeat(NodeId(2), now);
            assert!(fd.is_up(NodeId(2), now));
        }
        // Silence: phi grows linearly and crosses 8 after about 18.4 means.
        let threshold_elapsed = (8.0 / PHI_FACTOR * 100.0 * MS as f64) as u64;
        assert!(fd.is_up(NodeId(2), now + threshold_elapsed - MS));
        assert!(!fd.is_up(NodeId(2), now + threshold_elapsed + MS));
        // A new heartbeat brings it back at once.
        let later = now + threshold_elapsed + 10 * MS;
        fd.heartbeat(NodeId(2), later);
        assert!(fd.is_up(NodeId(2), later));
    }

    #[test]
    fn phi_follows_the_peers_own_pace_but_never_faster_than_gossip() {
        let mut fast = detector();
        let mut slow = detector();
        for i in 1..=20 {
            fast.heartbeat(NodeId(2), i * 100 * MS);
            slow.heartbeat(NodeId(2), i * 300 * MS);
        }
        // Two versions a millisecond apart (one relayed) do not make the
        // mean a millisecond.
        let mut relayed = detector();
        relayed.heartbeat(NodeId(2), 100 * MS);
        relayed.heartbeat(NodeId(2), 101 * MS);
        assert!(relayed.is_up(NodeId(2), 101 * MS + 1_000 * MS));
        // The same silence means more for the peer that usually speaks often.
        let silence = 600 * MS;
        assert!(
            fast.phi(NodeId(2), 20 * 100 * MS + silence)
                > slow.phi(NodeId(2), 20 * 300 * MS + silence)
        );
    }

    #[test]
    fn outages_are_not_samples() {
        let mut fd = detector();
        fd.heartbeat(NodeId(2), 100 * MS);
        fd.heartbeat(NodeId(2), 200 * MS);
        // A 10 s gap (an outage) does not inflate the mean.
        fd.heartbeat(NodeId(2), 10_200 * MS);
        let phi = fd.phi(NodeId(2), 10_300 * MS);
        assert!((phi - PHI_FACTOR).abs() < 1e-9, "{phi}");
    }

    #[test]
    fn the_window_is_bounded() {
        let mut fd = detector();
        for i in 1..=(ARRIVAL_WINDOW_SAMPLES_MAX as u64 * 3) {
            fd.heartbeat(NodeId(2), i * 10 * MS);
        }
        let arrivals = &fd.peers[&NodeId(2)];
        assert_eq!(arrivals.intervals.len(), ARRIVAL_WINDOW_SAMPLES_MAX);
        assert_eq!(
            arrivals.intervals_sum,
            arrivals.intervals.iter().sum::<u64>()
        );
    }

    #[test]
    fn no_conviction_right_after_this_nodes_own_pause() {
        let mut fd = detector();
        let mut now = 0;
        for _ in 0..10 {
            now += 100 * MS;
            fd.tick(now);
            fd.heartbeat(NodeId(2), now);
        }
        // This node stops for 30 s; the peer kept gossiping, unheard.
        now += 30_000 * MS;
        assert!(fd.tick(now), "the gap is a local pause");
        assert!(fd.is_up(NodeId(2), now));
        // Without news after the pause, the peer is convicted as usual.
        assert!(!fd.is_up(NodeId(2), now + 5_000 * MS));
    }

    #[test]
    fn a_shutdown_is_down_at_once_until_heard_again() {
        let mut fd = detector();
        fd.heartbeat(NodeId(3), 100 * MS);
        fd.shut_down(NodeId(3));
        assert!(!fd.is_up(NodeId(3), 100 * MS));
        fd.restarted(NodeId(3), 900 * MS);
        assert!(fd.is_up(NodeId(3), 900 * MS));
    }

    #[test]
    fn unknown_peers_are_ignored() {
        let mut fd = detector();
        fd.heartbeat(NodeId(9), 5);
        assert_eq!(fd.phi(NodeId(9), 1_000 * MS), 0.0);
    }
}
