//! The nemesis: which fault strikes next.
//!
//! A pure policy over the cluster's fault state and a seeded generator; the
//! simulator carries the faults out. Every fault here is survivable by a
//! correct system: a crashed node loses only what it never synced, a
//! partition only delays messages or loses them (clients see timeouts), and
//! the heal phase restarts every node and reconnects every link.

use rand::Rng;

/// Which fault families a run may use (swarm testing switches them per seed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NemesisOptions {
    /// Crash nodes (losing unsynced writes) and restart them.
    pub crashes: bool,
    /// Split the nodes into groups that cannot talk.
    pub partitions: bool,
}

/// One fault action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Crash the node at this index.
    Crash(usize),
    /// Restart the crashed node at this index.
    Restart(usize),
    /// Partition: each node's group number; only nodes of the same group
    /// can talk.
    Partition(Vec<u32>),
    /// Reconnect every link.
    Heal,
}

/// The fault policy.
#[derive(Debug, Clone)]
pub struct Nemesis {
    /// Enabled families.
    options: NemesisOptions,
}

impl Nemesis {
    /// A nemesis using the families in `options`.
    pub fn new(options: NemesisOptions) -> Self {
        Self { options }
    }

    /// The next fault, given which nodes are up and whether a partition is
    /// in force. `None` when no enabled family has anything to do.
    pub fn next_fault(&self, rng: &mut impl Rng, up: &[bool], partitioned: bool) -> Option<Fault> {
        let mut choices: Vec<Fault> = Vec::new();
        if self.options.crashes {
            let down: Vec<usize> = (0..up.len()).filter(|&i| !up[i]).collect();
            let alive: Vec<usize> = (0..up.len()).filter(|&i| up[i]).collect();
            if let Some(&i) = pick(rng, &down) {
                choices.push(Fault::Restart(i));
            }
            if let Some(&i) = pick(rng, &alive) {
                choices.push(Fault::Crash(i));
            }
        }
        if self.options.partitions {
            if partitioned {
                choices.push(Fault::Heal);
            }
            choices.push(Fault::Partition(random_partition(rng, up.len())));
        }
        let index = rng.random_range(0..choices.len().max(1));
        (index < choices.len()).then(|| choices.swap_remove(index))
    }
}

fn pick<'a, T>(rng: &mut impl Rng, items: &'a [T]) -> Option<&'a T> {
    if items.is_empty() {
        None
    } else {
        items.get(rng.random_range(0..items.len()))
    }
}

/// A random split: isolate one node, or two random halves.
fn random_partition(rng: &mut impl Rng, nodes: usize) -> Vec<u32> {
    if nodes < 2 {
        return vec![0; nodes];
    }
    if rng.random_bool(0.5) {
        let isolated = rng.random_range(0..nodes);
        (0..nodes).map(|i| u32::from(i == isolated)).collect()
    } else {
        loop {
            let groups: Vec<u32> = (0..nodes)
                .map(|_| u32::from(rng.random_bool(0.5)))
                .collect();
            if groups.contains(&0) && groups.contains(&1) {
                return groups;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    #[test]
    fn partitions_always_split_the_nodes() {
        let mut rng = StdRng::seed_from_u64(1);
        for _ in 0..200 {
            let groups = random_partition(&mut rng, 5);
            assert!(groups.contains(&0) && groups.contains(&1), "{groups:?}");
        }
    }

    #[test]
    fn only_crashed_nodes_are_restarted_and_only_live_ones_crashed() {
        let nemesis = Nemesis::new(NemesisOptions {
            crashes: true,
            partitions: false,
        });
        let mut rng = StdRng::seed_from_u64(2);
        let up = [true, false, true];
        for _ in 0..200 {
            match nemesis.next_fault(&mut rng, &up, false) {
                Some(Fault::Crash(i)) => assert!(up[i]),
                Some(Fault::Restart(i)) => assert!(!up[i]),
                other => panic!("unexpected {other:?}"),
            }
        }
    }

    #[test]
    fn no_families_no_faults() {
        let nemesis = Nemesis::new(NemesisOptions {
            crashes: false,
            partitions: false,
        });
        let mut rng = StdRng::seed_from_u64(3);
        assert_eq!(nemesis.next_fault(&mut rng, &[true, true], false), None);
    }
}
