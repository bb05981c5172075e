//! `SimNet`: the links between nodes.
//!
//! Fault model: every message takes a random latency (at least
//! `latency_min_nanos`, so nothing arrives at the instant it was sent), which
//! reorders messages freely; a message may be lost, or delivered twice; a
//! partition splits nodes into groups and drops every message between
//! groups at delivery time (including those already in flight). A correct
//! system survives all of it: it never relies on delivery, order or
//! uniqueness, only on eventual delivery once the partition heals and loss
//! stops, which the heal phase guarantees.

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
}

impl Default for NetOptions {
    fn default() -> Self {
        Self {
            latency_min_nanos: 200_000,
            latency_max_nanos: 5_000_000,
            loss_probability: 0.0,
            duplicate_probability: 0.0,
        }
    }
}

/// The network's state.
#[derive(Debug, Clone)]
pub struct SimNet {
    /// Behaviour.
    pub options: NetOptions,
    /// Group of each node while partitioned; `None` when fully connected.
    partition: Option<Vec<u32>>,
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
            partition: None,
        }
    }

    /// The delivery delays of one message sent now: empty if it is lost,
    /// two entries if it is duplicated.
    pub fn delays(&self, rng: &mut impl Rng) -> Vec<u64> {
        if rng.random_bool(self.options.loss_probability) {
            return Vec::new();
        }
        let copies = if rng.random_bool(self.options.duplicate_probability) {
            2
        } else {
            1
        };
        (0..copies)
            .map(|_| {
                rng.random_range(self.options.latency_min_nanos..=self.options.latency_max_nanos)
            })
            .collect()
    }

    /// Whether `from` can reach `to` now.
    pub fn connected(&self, from: usize, to: usize) -> bool {
        match &self.partition {
            None => true,
            Some(groups) => groups[from] == groups[to],
        }
    }

    /// Splits the nodes into groups.
    pub fn partition(&mut self, groups: Vec<u32>) {
        self.partition = Some(groups);
    }

    /// Reconnects every link.
    pub fn heal(&mut self) {
        self.partition = None;
    }

    /// Whether a partition is in force.
    pub fn is_partitioned(&self) -> bool {
        self.partition.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::stream;

    #[test]
    fn partitions_cut_only_links_between_groups() {
        let mut net = SimNet::new(NetOptions::default());
        net.partition(vec![0, 0, 1]);
        assert!(net.connected(0, 1));
        assert!(!net.connected(0, 2));
        assert!(!net.connected(2, 1));
        net.heal();
        assert!(net.connected(0, 2));
    }

    #[test]
    fn delays_stay_within_bounds_and_loss_drops() {
        let mut rng = stream(1, "test");
        let net = SimNet::new(NetOptions::default());
        for _ in 0..1000 {
            let d = net.delays(&mut rng);
            assert_eq!(d.len(), 1);
            assert!(d[0] >= 200_000 && d[0] <= 5_000_000);
        }
        let lossy = SimNet::new(NetOptions {
            loss_probability: 1.0,
            ..NetOptions::default()
        });
        assert!(lossy.delays(&mut rng).is_empty());
    }
}
