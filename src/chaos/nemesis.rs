//! The chaos run's nemesis: one fault at a time against the real nodes,
//! drawn from the run's seed, each healed before the next.
//!
//! A round: a quiet pause of 1 to 3 s, then a fault held for 2 to 6 s,
//! then its heal. Faults: SIGKILL a node (restarted at the heal, recovering
//! from its data directory), SIGSTOP a node (SIGCONT at the heal), and,
//! when the network has namespaces, a partition (two halves, one node
//! isolated, or one node's packets to another dropped one way only). Every
//! fault and heal is logged with its time. The loop ends at the deadline
//! or Ctrl-C, with the last fault healed.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rand::seq::SliceRandom as _;
use rand::Rng as _;
use rand_chacha::ChaCha8Rng;

use super::network::Network;
use super::nodes::Nodes;

/// Kinds of fault the nemesis may draw.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum FaultKind {
    /// SIGKILL, restart at the heal.
    Kill,
    /// SIGSTOP, SIGCONT at the heal.
    Pause,
    /// Packet-dropping cuts between namespaces.
    Partition,
}

impl FaultKind {
    /// Its name in flags and the summary.
    pub fn name(self) -> &'static str {
        match self {
            FaultKind::Kill => "kill",
            FaultKind::Pause => "pause",
            FaultKind::Partition => "partition",
        }
    }
}

/// Shortest and longest quiet pause before a fault, in milliseconds.
const QUIET_MS: (u64, u64) = (1_000, 3_000);
/// Shortest and longest time a fault is held, in milliseconds.
const HOLD_MS: (u64, u64) = (2_000, 6_000);
/// Granularity of the nemesis's waits (it notices Ctrl-C this fast).
const TICK: Duration = Duration::from_millis(50);

/// What the nemesis did.
#[derive(Debug, Default)]
pub struct NemesisLog {
    /// One line per fault and heal, with seconds since the run began.
    pub lines: Vec<String>,
    /// Faults injected, by name (`kill`, `pause`, `partition halves`, ...).
    pub counts: BTreeMap<String, u64>,
    /// Actions that failed (a signal that could not be sent, a rule that
    /// could not be set): the run cannot claim the fault happened.
    pub errors: Vec<String>,
}

/// The fault currently held.
enum Held {
    Killed(usize),
    Paused(usize),
    Cut,
}

/// Runs faults from `kinds` until `deadline`.
pub fn run(
    nodes: &mut Nodes,
    network: &Network,
    kinds: &[FaultKind],
    rng: &mut ChaCha8Rng,
    origin: Instant,
    deadline: Instant,
) -> NemesisLog {
    let mut log = NemesisLog::default();
    if kinds.is_empty() {
        return log;
    }
    let stamp = |origin: Instant| {
        #[allow(clippy::disallowed_methods)]
        let now = Instant::now();
        now.duration_since(origin).as_secs_f64()
    };
    loop {
        if !wait(rng.random_range(QUIET_MS.0..=QUIET_MS.1), deadline) {
            break;
        }
        nodes.reap();
        let kind = kinds[rng.random_range(0..kinds.len())];
        let held = match inject(nodes, network, kind, rng) {
            Ok((held, name, detail)) => {
                *log.counts.entry(name.to_owned()).or_default() += 1;
                log.lines
                    .push(format!("{:8.3}s {name}: {detail}", stamp(origin)));
                held
            }
            Err(e) => {
                log.errors.push(e.clone());
                log.lines.push(format!(
                    "{:8.3}s {} failed: {e}",
                    stamp(origin),
                    kind.name()
                ));
                continue;
            }
        };
        let _ = wait(rng.random_range(HOLD_MS.0..=HOLD_MS.1), deadline);
        match heal(nodes, network, held) {
            Ok(detail) => log
                .lines
                .push(format!("{:8.3}s heal: {detail}", stamp(origin))),
            Err(e) => {
                log.errors.push(e.clone());
                log.lines
                    .push(format!("{:8.3}s heal failed: {e}", stamp(origin)));
            }
        }
    }
    log
}

/// Sleeps `ms` unless the deadline or Ctrl-C comes first; false if either
/// did.
fn wait(ms: u64, deadline: Instant) -> bool {
    #[allow(clippy::disallowed_methods)]
    let until = Instant::now() + Duration::from_millis(ms);
    loop {
        #[allow(clippy::disallowed_methods)]
        let now = Instant::now();
        if now >= deadline || super::stopping() {
            return false;
        }
        if now >= until {
            return true;
        }
        std::thread::sleep(TICK);
    }
}

fn inject(
    nodes: &mut Nodes,
    network: &Network,
    kind: FaultKind,
    rng: &mut ChaCha8Rng,
) -> Result<(Held, &'static str, String), String> {
    let n = nodes.len();
    match kind {
        FaultKind::Kill => {
            let i = rng.random_range(0..n);
            nodes.kill(i);
            Ok((Held::Killed(i), "kill", format!("SIGKILL n{}", i + 1)))
        }
        FaultKind::Pause => {
            let i = rng.random_range(0..n);
            nodes.pause(i).map_err(|e| e.to_string())?;
            Ok((Held::Paused(i), "pause", format!("SIGSTOP n{}", i + 1)))
        }
        FaultKind::Partition => {
            let ns = network
                .namespaces()
                .ok_or_else(|| "partitions need namespaces".to_owned())?;
            let (name, cuts, detail) = draw_partition(n, rng);
            ns.set_cuts(&cuts).map_err(|e| e.to_string())?;
            Ok((Held::Cut, name, detail))
        }
    }
}

/// A partition: its name, its one-way cuts and a description.
fn draw_partition(n: usize, rng: &mut ChaCha8Rng) -> (&'static str, Vec<(usize, usize)>, String) {
    let both_ways = |a: &[usize], b: &[usize]| {
        let mut cuts = Vec::new();
        for &x in a {
            for &y in b {
                cuts.push((x, y));
                cuts.push((y, x));
            }
        }
        cuts
    };
    let show = |side: &[usize]| {
        side.iter()
            .map(|i| format!("n{}", i + 1))
            .collect::<Vec<_>>()
            .join(",")
    };
    let mut order: Vec<usize> = (0..n).collect();
    order.shuffle(rng);
    match rng.random_range(0..3) {
        0 if n >= 2 => {
            let (a, b) = order.split_at(n / 2);
            (
                "partition halves",
                both_ways(a, b),
                format!("{} | {}", show(a), show(b)),
            )
        }
        1 if n >= 2 => {
            let (a, b) = order.split_at(1);
            (
                "partition isolated",
                both_ways(a, b),
                format!("{} alone", show(a)),
            )
        }
        _ if n >= 2 => {
            let (from, to) = (order[0], order[1]);
            (
                "partition one-way",
                vec![(from, to)],
                format!("packets n{} -> n{} dropped", from + 1, to + 1),
            )
        }
        _ => (
            "partition none",
            Vec::new(),
            "one node: nothing to cut".into(),
        ),
    }
}

fn heal(nodes: &mut Nodes, network: &Network, held: Held) -> Result<String, String> {
    match held {
        Held::Killed(i) => {
            nodes.spawn(i).map_err(|e| e.to_string())?;
            Ok(format!("restart n{}", i + 1))
        }
        Held::Paused(i) => {
            nodes.resume(i).map_err(|e| e.to_string())?;
            Ok(format!("SIGCONT n{}", i + 1))
        }
        Held::Cut => {
            if let Some(ns) = network.namespaces() {
                ns.set_cuts(&[]).map_err(|e| e.to_string())?;
            }
            Ok("partition healed".into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng as _;

    #[test]
    fn partitions_cut_only_between_their_sides() {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        for _ in 0..200 {
            let (name, cuts, _) = draw_partition(5, &mut rng);
            assert!(!cuts.is_empty(), "{name} cuts nothing");
            for &(a, b) in &cuts {
                assert!(a != b && a < 5 && b < 5, "{name}: bad cut {a}->{b}");
            }
            match name {
                // 2 | 3 nodes, both ways.
                "partition halves" => assert_eq!(cuts.len(), 2 * 2 * 3),
                "partition isolated" => assert_eq!(cuts.len(), 2 * 4),
                "partition one-way" => assert_eq!(cuts.len(), 1),
                other => panic!("unexpected {other}"),
            }
        }
    }
}
