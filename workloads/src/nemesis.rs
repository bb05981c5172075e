//! The nemesis: which fault strikes next.
//!
//! A pure policy over the cluster's fault state and a seeded generator; the
//! simulator carries the faults out. Every fault here is survivable by a
//! correct system: a crashed node loses only what it never synced, a paused
//! node only falls behind, a partition or a clogged link only delays
//! messages or loses them (clients see timeouts), a clock jump only moves a
//! node's reading of time within the run's bound, a window of bad reads
//! strikes fewer replicas than a key has and only data the engine
//! checksums, a failed sync stops the node, which restarts from what is
//! durable, and a full disk makes a node refuse writes until space is back. The heal phase restarts every node, reconnects and unclogs every
//! link and ends every window.
//!
//! Faults are paced so that quorums exist most of the time: at most
//! [`NemesisOptions::down_max`] nodes are down or paused at once (the
//! simulator sets a minority for most seeds), and a partition or clogging in
//! force makes healing likelier than a new fault.

use rand::Rng;

/// Which fault families a run may use (swarm testing switches them per seed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NemesisOptions {
    /// Crash nodes (losing unsynced writes) and restart them.
    pub crashes: bool,
    /// Split the nodes into groups that cannot talk (halves, one isolated,
    /// a bridge node, or links cut one way only).
    pub partitions: bool,
    /// Pause a node's process for a while: it takes no events, then gets
    /// them in a burst.
    pub pauses: bool,
    /// Slow links down one at a time, then speed them up in reverse order
    /// (swizzle-clogging).
    pub clogging: bool,
    /// Jump a node's wall clock forwards or backwards.
    pub clock_jumps: bool,
    /// Open windows in which a node's disk reads return flipped bits or
    /// fail (detected by the engine's checksums).
    pub read_faults: bool,
    /// Make a node's next sync fail (the node stops; restarted later).
    pub sync_failures: bool,
    /// Fill a node's disk for a while: its writes fail with no space, its
    /// reads go on, and it resumes once space is back.
    pub full_disks: bool,
    /// Most nodes down, paused or with bad reads at once.
    pub down_max: usize,
}

impl NemesisOptions {
    /// No fault family on.
    pub fn none() -> Self {
        Self {
            crashes: false,
            partitions: false,
            pauses: false,
            clogging: false,
            clock_jumps: false,
            read_faults: false,
            sync_failures: false,
            full_disks: false,
            down_max: 0,
        }
    }
}

/// How a partition cuts the links.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PartitionKind {
    /// Two random halves.
    Halves,
    /// One node cut off from all others.
    Isolate,
    /// Two halves joined only through one node that hears both.
    Bridge,
    /// Some links cut in one direction only: A hears B, B does not hear A.
    Asymmetric,
}

/// One fault action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Crash the node at this index.
    Crash(usize),
    /// Restart the crashed node at this index.
    Restart(usize),
    /// Cut these directed links `(from, to)`: a message from `from` to `to`
    /// is dropped.
    Partition {
        kind: PartitionKind,
        cut: Vec<(usize, usize)>,
    },
    /// Reconnect every link.
    Heal,
    /// Pause the node's process for this long.
    Pause { node: usize, nanos: u64 },
    /// Clog these directed links one by one, each `step_nanos` after the
    /// last, each adding up to `delay_max_nanos` to its messages; then
    /// unclog them in reverse order.
    Swizzle {
        links: Vec<(usize, usize)>,
        step_nanos: u64,
        delay_max_nanos: u64,
    },
    /// Move the node's wall clock by this much (negative: backwards).
    ClockJump { node: usize, nanos: i64 },
    /// Bad reads on the node's disk for this long.
    ReadFaults { node: usize, nanos: u64 },
    /// The node's next sync fails.
    FailSync(usize),
    /// The node's disk is full for this long.
    DiskFull { node: usize, nanos: u64 },
}

/// What the nemesis needs to know of the cluster.
#[derive(Debug, Clone, Default)]
pub struct ClusterFaults {
    /// Which nodes run (a crashed node does not).
    pub up: Vec<bool>,
    /// Nodes paused, or with bad reads, now.
    pub impaired: Vec<bool>,
    /// Whether a partition is in force.
    pub partitioned: bool,
    /// Whether links are clogged.
    pub clogged: bool,
}

/// Longest process pause.
pub const PAUSE_NANOS_MAX: u64 = 2_000_000_000;
/// Longest window of bad reads.
pub const READ_FAULT_NANOS_MAX: u64 = 1_000_000_000;
/// Longest time a disk stays full.
pub const DISK_FULL_NANOS_MAX: u64 = 1_000_000_000;
/// Longest clogging step.
pub const SWIZZLE_STEP_NANOS_MAX: u64 = 200_000_000;
/// Most delay a clogged link adds to a message.
pub const CLOG_DELAY_NANOS_MAX: u64 = 400_000_000;

/// The fault policy.
#[derive(Debug, Clone)]
pub struct Nemesis {
    /// Enabled families.
    options: NemesisOptions,
    /// Largest clock jump either way, nanoseconds.
    clock_jump_nanos_max: i64,
}

impl Nemesis {
    /// A nemesis using the families in `options`; clock jumps stay within
    /// `clock_jump_nanos_max` either way.
    pub fn new(options: NemesisOptions, clock_jump_nanos_max: i64) -> Self {
        Self {
            options,
            clock_jump_nanos_max,
        }
    }

    /// The families this nemesis uses.
    pub fn options(&self) -> &NemesisOptions {
        &self.options
    }

    /// The next fault, given the cluster's fault state. `None` when no
    /// enabled family has anything to do.
    pub fn next_fault(&self, rng: &mut impl Rng, state: &ClusterFaults) -> Option<Fault> {
        let nodes = state.up.len();
        let o = &self.options;
        let mut choices: Vec<Fault> = Vec::new();
        let down: Vec<usize> = (0..nodes).filter(|&i| !state.up[i]).collect();
        let healthy: Vec<usize> = (0..nodes)
            .filter(|&i| state.up[i] && !state.impaired.get(i).copied().unwrap_or(false))
            .collect();
        let impaired = nodes - healthy.len();
        let may_impair = impaired < o.down_max;
        if o.crashes {
            if let Some(&i) = pick(rng, &down) {
                // Restarting is likelier than crashing again: nodes are up
                // most of the time.
                choices.push(Fault::Restart(i));
                choices.push(Fault::Restart(i));
            }
            if may_impair {
                if let Some(&i) = pick(rng, &healthy) {
                    choices.push(Fault::Crash(i));
                }
            }
        }
        if o.sync_failures && may_impair {
            if let Some(&i) = pick(rng, &healthy) {
                choices.push(Fault::FailSync(i));
            }
        }
        if o.pauses && may_impair {
            if let Some(&i) = pick(rng, &healthy) {
                let nanos = rng.random_range(1..=PAUSE_NANOS_MAX);
                choices.push(Fault::Pause { node: i, nanos });
            }
        }
        if o.read_faults && may_impair {
            if let Some(&i) = pick(rng, &healthy) {
                let nanos = rng.random_range(1..=READ_FAULT_NANOS_MAX);
                choices.push(Fault::ReadFaults { node: i, nanos });
            }
        }
        if o.full_disks && may_impair {
            if let Some(&i) = pick(rng, &healthy) {
                let nanos = rng.random_range(1..=DISK_FULL_NANOS_MAX);
                choices.push(Fault::DiskFull { node: i, nanos });
            }
        }
        if o.clock_jumps && nodes > 0 && self.clock_jump_nanos_max > 0 {
            let node = rng.random_range(0..nodes);
            let nanos = rng.random_range(-self.clock_jump_nanos_max..=self.clock_jump_nanos_max);
            choices.push(Fault::ClockJump { node, nanos });
        }
        if (o.partitions && state.partitioned) || (o.clogging && state.clogged) {
            choices.push(Fault::Heal);
            choices.push(Fault::Heal);
        }
        if o.partitions && !state.partitioned && nodes >= 2 {
            let (kind, cut) = random_partition(rng, nodes);
            choices.push(Fault::Partition { kind, cut });
        }
        if o.clogging && !state.clogged && nodes >= 2 {
            choices.push(random_swizzle(rng, nodes));
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

/// Two random non-empty halves: each node's side.
fn random_halves(rng: &mut impl Rng, nodes: usize) -> Vec<bool> {
    loop {
        let side: Vec<bool> = (0..nodes).map(|_| rng.random_bool(0.5)).collect();
        if side.contains(&true) && side.contains(&false) {
            return side;
        }
    }
}

/// Every directed link between nodes on different sides.
fn links_between(side: &[bool], skip: Option<usize>) -> Vec<(usize, usize)> {
    let n = side.len();
    let mut cut = Vec::new();
    for from in 0..n {
        for to in 0..n {
            if from != to && side[from] != side[to] && skip != Some(from) && skip != Some(to) {
                cut.push((from, to));
            }
        }
    }
    cut
}

/// A random partition: halves, one isolated node, a bridge, or links cut
/// one way.
fn random_partition(rng: &mut impl Rng, nodes: usize) -> (PartitionKind, Vec<(usize, usize)>) {
    match rng.random_range(0..4) {
        0 => (
            PartitionKind::Halves,
            links_between(&random_halves(rng, nodes), None),
        ),
        1 => {
            let isolated = rng.random_range(0..nodes);
            let side: Vec<bool> = (0..nodes).map(|i| i == isolated).collect();
            (PartitionKind::Isolate, links_between(&side, None))
        }
        2 if nodes >= 3 => {
            // Two halves, and one node of either that hears everyone.
            let bridge = rng.random_range(0..nodes);
            loop {
                let side = random_halves(rng, nodes);
                let cut = links_between(&side, Some(bridge));
                if !cut.is_empty() {
                    return (PartitionKind::Bridge, cut);
                }
            }
        }
        _ => {
            // Each directed link between the halves is cut with one chance
            // in two, but never both ways: some pairs hear each other one
            // way only.
            loop {
                let side = random_halves(rng, nodes);
                let cut: Vec<(usize, usize)> = links_between(&side, None)
                    .into_iter()
                    .filter(|&(from, _)| side[from])
                    .filter(|_| rng.random_bool(0.5))
                    .collect();
                if !cut.is_empty() {
                    return (PartitionKind::Asymmetric, cut);
                }
            }
        }
    }
}

/// A swizzle: a random set of directed links, clogged one by one.
fn random_swizzle(rng: &mut impl Rng, nodes: usize) -> Fault {
    let mut links: Vec<(usize, usize)> = Vec::new();
    for from in 0..nodes {
        for to in 0..nodes {
            if from != to && rng.random_bool(0.5) {
                links.push((from, to));
            }
        }
    }
    if links.is_empty() {
        links.push((0, 1));
    }
    // Shuffle: the clogging order is part of the fault.
    for i in (1..links.len()).rev() {
        let j = rng.random_range(0..=i);
        links.swap(i, j);
    }
    Fault::Swizzle {
        links,
        step_nanos: rng.random_range(1..=SWIZZLE_STEP_NANOS_MAX),
        delay_max_nanos: rng.random_range(1..=CLOG_DELAY_NANOS_MAX),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    fn all_on(down_max: usize) -> NemesisOptions {
        NemesisOptions {
            crashes: true,
            partitions: true,
            pauses: true,
            clogging: true,
            clock_jumps: true,
            read_faults: true,
            sync_failures: true,
            full_disks: true,
            down_max,
        }
    }

    #[test]
    fn partitions_always_cut_some_link_and_only_between_nodes() {
        let mut rng = StdRng::seed_from_u64(1);
        let mut kinds = std::collections::BTreeSet::new();
        for _ in 0..400 {
            let (kind, cut) = random_partition(&mut rng, 5);
            assert!(!cut.is_empty(), "{kind:?}");
            assert!(cut.iter().all(|&(a, b)| a != b && a < 5 && b < 5));
            if kind == PartitionKind::Asymmetric {
                assert!(
                    cut.iter().all(|&(a, b)| !cut.contains(&(b, a))),
                    "an asymmetric cut is one way: {cut:?}"
                );
            }
            if kind == PartitionKind::Bridge {
                let bridged = (0..5).any(|n| cut.iter().all(|&(a, b)| a != n && b != n));
                assert!(bridged, "a bridge node hears everyone: {cut:?}");
            }
            kinds.insert(format!("{kind:?}"));
        }
        assert_eq!(kinds.len(), 4, "{kinds:?}");
    }

    #[test]
    fn only_crashed_nodes_are_restarted_and_only_live_ones_crashed() {
        let nemesis = Nemesis::new(
            NemesisOptions {
                crashes: true,
                down_max: 3,
                ..NemesisOptions::none()
            },
            0,
        );
        let mut rng = StdRng::seed_from_u64(2);
        let state = ClusterFaults {
            up: vec![true, false, true],
            impaired: vec![false; 3],
            ..ClusterFaults::default()
        };
        for _ in 0..200 {
            match nemesis.next_fault(&mut rng, &state) {
                Some(Fault::Crash(i)) => assert!(state.up[i]),
                Some(Fault::Restart(i)) => assert!(!state.up[i]),
                other => panic!("unexpected {other:?}"),
            }
        }
    }

    #[test]
    fn no_more_than_down_max_nodes_are_impaired() {
        let nemesis = Nemesis::new(all_on(1), 1_000);
        let mut rng = StdRng::seed_from_u64(4);
        let state = ClusterFaults {
            up: vec![true, false, true],
            impaired: vec![false; 3],
            ..ClusterFaults::default()
        };
        for _ in 0..500 {
            let fault = nemesis.next_fault(&mut rng, &state);
            assert!(
                !matches!(
                    fault,
                    Some(
                        Fault::Crash(_)
                            | Fault::Pause { .. }
                            | Fault::ReadFaults { .. }
                            | Fault::FailSync(_)
                            | Fault::DiskFull { .. }
                    )
                ),
                "one node is down already: {fault:?}"
            );
        }
    }

    #[test]
    fn clock_jumps_stay_within_their_bound() {
        let nemesis = Nemesis::new(
            NemesisOptions {
                clock_jumps: true,
                ..NemesisOptions::none()
            },
            1_000,
        );
        let mut rng = StdRng::seed_from_u64(5);
        let state = ClusterFaults {
            up: vec![true; 3],
            impaired: vec![false; 3],
            ..ClusterFaults::default()
        };
        for _ in 0..200 {
            match nemesis.next_fault(&mut rng, &state) {
                Some(Fault::ClockJump { nanos, .. }) => assert!(nanos.abs() <= 1_000),
                other => panic!("unexpected {other:?}"),
            }
        }
    }

    #[test]
    fn no_families_no_faults() {
        let nemesis = Nemesis::new(NemesisOptions::none(), 0);
        let mut rng = StdRng::seed_from_u64(3);
        let state = ClusterFaults {
            up: vec![true, true],
            impaired: vec![false; 2],
            ..ClusterFaults::default()
        };
        assert_eq!(nemesis.next_fault(&mut rng, &state), None);
    }
}
