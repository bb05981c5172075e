//! `SimNet`: the links between nodes.
//!
//! Fault model: every message takes a random latency (at least
//! `latency_min_nanos`, so nothing arrives at the instant it was sent), which
//! reorders messages freely; a message may be lost, or delivered twice. A
//! partition cuts a set of *directed* links and drops every message on a cut
//! link at delivery time (including those already in flight): two halves,
//! one node isolated, two halves joined by a bridge node that hears both,
//! or links cut one way only (A hears B, B does not hear A). A clogged link
//! delays each message sent on it by up to its clog delay more (FoundationDB's
//! clogging; the nemesis clogs links one by one and unclogs them in reverse:
//! swizzle-clogging). With stale messages on, a few messages straggle for
//! up to [`STRAGGLE_NANOS_MAX`] (a replica stalled before it sent, a slow
//! path), and so do half the messages sent to a node that is down: they
//! land after it restarted, acknowledgements and replies meant for its
//! previous incarnation. A correct system survives all of it: it never
//! relies on delivery, order, timeliness, symmetry or uniqueness (answers
//! carry the boot generation of the operation they answer), only on
//! eventual delivery once the partition heals, links unclog and loss and
//! straggling stop, which the heal phase guarantees.

use std::collections::{BTreeMap, BTreeSet};

use rand::Rng;

/// Network behaviour for a run.
#[derive(Debug, Clone, PartialEq)]
pub struct NetOptions {
    /// Fastest delivery.
    pub latency_min_nanos: u64,
    /// Slowest ordinary delivery.
    pub latency_max_nanos: u64,
    /// Chance that a message is lost.
    pub loss_probability: f64,
    /// Chance that a message is delivered twice.
    pub duplicate_probability: f64,
    /// Chance that a message straggles (stale messages; 0: the family is
    /// off).
    pub straggle_probability: f64,
}

/// Shortest extra delay of a straggling message: longer than most
/// round trips, so the coordinator has often timed out or restarted.
pub const STRAGGLE_NANOS_MIN: u64 = 100_000_000;
/// Longest extra delay of a straggling message: past a coordinator's
/// timeout and a typical crash and restart, within the hint window.
pub const STRAGGLE_NANOS_MAX: u64 = 5_000_000_000;
/// Chance that a message sent to a node that is down straggles (rather
/// than reach it while it is still down and be dropped), when stale
/// messages are on.
pub const STRAGGLE_TO_DOWN_PROBABILITY: f64 = 0.5;

impl Default for NetOptions {
    fn default() -> Self {
        Self {
            latency_min_nanos: 200_000,
            latency_max_nanos: 5_000_000,
            loss_probability: 0.0,
            duplicate_probability: 0.0,
            straggle_probability: 0.0,
        }
    }
}

/// The network's state.
#[derive(Debug, Clone)]
pub struct SimNet {
    /// Behaviour.
    pub options: NetOptions,
    /// Directed links `(from, to)` cut by a partition.
    cut: BTreeSet<(usize, usize)>,
    /// Directed links clogged, with the most delay each adds.
    clogged: BTreeMap<(usize, usize), u64>,
}

impl SimNet {
    /// A fully connected network.
    pub fn new(options: NetOptions) -> Self {
        assert!(
            options.latency_min_nanos > 0,
            "zero latency would deliver at send time"
        );
        assert!(options.latency_min_nanos <= options.latency_max_nanos);
        Self {
            options,
            cut: BTreeSet::new(),
            clogged: BTreeMap::new(),
        }
    }

    /// The delivery delays of one message sent now from `from` to `to`:
    /// empty if it is lost, two entries if it is duplicated.
    pub fn delays(&self, rng: &mut impl Rng, from: usize, to: usize) -> Vec<u64> {
        if rng.random_bool(self.options.loss_probability) {
            return Vec::new();
        }
        let copies = if rng.random_bool(self.options.duplicate_probability) {
            2
        } else {
            1
        };
        let clog = self.clogged.get(&(from, to)).copied().unwrap_or(0);
        (0..copies)
            .map(|_| {
                let latency = rng
                    .random_range(self.options.latency_min_nanos..=self.options.latency_max_nanos);
                if clog > 0 {
                    latency + rng.random_range(0..=clog)
                } else {
                    latency
                }
            })
            .collect()
    }

    /// The extra delay of one message (0 unless it straggles); `to_down`:
    /// its receiver is down as it is sent. Draws nothing while stale
    /// messages are off.
    pub fn straggle(&self, rng: &mut impl Rng, to_down: bool) -> u64 {
        if self.options.straggle_probability <= 0.0 {
            return 0;
        }
        let probability = if to_down {
            STRAGGLE_TO_DOWN_PROBABILITY
        } else {
            self.options.straggle_probability
        };
        if rng.random_bool(probability) {
            rng.random_range(STRAGGLE_NANOS_MIN..=STRAGGLE_NANOS_MAX)
        } else {
            0
        }
    }

    /// Whether a message from `from` reaches `to` now.
    pub fn connected(&self, from: usize, to: usize) -> bool {
        !self.cut.contains(&(from, to))
    }

    /// Cuts these directed links (and only these).
    pub fn partition(&mut self, cut: &[(usize, usize)]) {
        self.cut = cut.iter().copied().collect();
    }

    /// Clogs the link `from -> to`: messages sent on it take up to
    /// `delay_max_nanos` longer.
    pub fn clog(&mut self, from: usize, to: usize, delay_max_nanos: u64) {
        self.clogged.insert((from, to), delay_max_nanos);
    }

    /// Unclogs the link `from -> to`.
    pub fn unclog(&mut self, from: usize, to: usize) {
        self.clogged.remove(&(from, to));
    }

    /// Reconnects and unclogs every link.
    pub fn heal(&mut self) {
        self.cut.clear();
        self.clogged.clear();
    }

    /// Whether a partition is in force.
    pub fn is_partitioned(&self) -> bool {
        !self.cut.is_empty()
    }

    /// Whether some link is clogged.
    pub fn is_clogged(&self) -> bool {
        !self.clogged.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::stream;

    #[test]
    fn partitions_cut_only_the_links_named_and_only_one_way() {
        let mut net = SimNet::new(NetOptions::default());
        net.partition(&[(0, 2), (2, 0), (1, 2)]);
        assert!(net.connected(0, 1));
        assert!(!net.connected(0, 2));
        assert!(!net.connected(1, 2));
        assert!(net.connected(2, 1), "the cut is one way");
        net.heal();
        assert!(net.connected(0, 2));
        assert!(!net.is_partitioned());
    }

    #[test]
    fn delays_stay_within_bounds_and_loss_drops() {
        let mut rng = stream(1, "test");
        let net = SimNet::new(NetOptions::default());
        for _ in 0..1000 {
            let d = net.delays(&mut rng, 0, 1);
            assert_eq!(d.len(), 1);
            assert!(d[0] >= 200_000 && d[0] <= 5_000_000);
        }
        let lossy = SimNet::new(NetOptions {
            loss_probability: 1.0,
            ..NetOptions::default()
        });
        assert!(lossy.delays(&mut rng, 0, 1).is_empty());
    }

    #[test]
    fn stragglers_come_late_and_only_with_the_family_on() {
        let mut rng = stream(3, "test");
        let off = SimNet::new(NetOptions::default());
        assert!((0..200).all(|_| off.straggle(&mut rng, true) == 0));
        let on = SimNet::new(NetOptions {
            straggle_probability: 0.1,
            ..NetOptions::default()
        });
        let late: Vec<u64> = (0..400)
            .map(|_| on.straggle(&mut rng, false))
            .filter(|&d| d > 0)
            .collect();
        assert!(!late.is_empty() && late.len() < 100, "{}", late.len());
        assert!(late
            .iter()
            .all(|&d| (STRAGGLE_NANOS_MIN..=STRAGGLE_NANOS_MAX).contains(&d)));
        let to_down = (0..400).filter(|_| on.straggle(&mut rng, true) > 0).count();
        assert!(to_down > 100, "{to_down}");
    }

    #[test]
    fn a_clogged_link_is_slower_and_only_that_link() {
        let mut rng = stream(2, "test");
        let mut net = SimNet::new(NetOptions::default());
        net.clog(0, 1, 1_000_000_000);
        let slowest = (0..200)
            .map(|_| net.delays(&mut rng, 0, 1)[0])
            .max()
            .unwrap_or(0);
        assert!(slowest > 5_000_000, "clogging added nothing: {slowest}");
        assert!((0..200).all(|_| net.delays(&mut rng, 1, 0)[0] <= 5_000_000));
        net.unclog(0, 1);
        assert!(!net.is_clogged());
        assert!((0..200).all(|_| net.delays(&mut rng, 0, 1)[0] <= 5_000_000));
    }
}
