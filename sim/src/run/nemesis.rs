//! The nemesis driver: carries out the faults the nemesis policy picks,
//! and draws which fault families a seed uses (swarm testing).

use enigma_workloads::{Fault, NemesisOptions};
use rand::Rng;
use rand_chacha::ChaCha8Rng;

use crate::config::SimConfig;
use crate::disk::SimDiskFaults;
use crate::net::NetOptions;

use super::{Event, Phase, Simulation, NEMESIS_INTERVAL_MAX_NANOS, NEMESIS_INTERVAL_MIN_NANOS};

impl Simulation {
    pub(super) fn on_nemesis(&mut self) {
        if self.phase != Phase::Safety {
            return;
        }
        let up: Vec<bool> = self.slots.iter().map(|s| s.node.is_some()).collect();
        let fault = self
            .nemesis
            .next_fault(&mut self.rng_nemesis, &up, self.net.is_partitioned());
        if let Some(fault) = fault {
            let mut bytes = vec![4];
            bytes.extend_from_slice(format!("{fault:?}").as_bytes());
            self.trace
                .record(self.now, &bytes, || format!("nemesis: {fault:?}"));
            match fault {
                Fault::Crash(node) => self.crash(node),
                Fault::Restart(node) => self.start_node(node),
                Fault::Partition(groups) => {
                    self.stats.partitions += 1;
                    self.net.partition(groups);
                }
                Fault::Heal => self.net.heal(),
            }
        }
        let pause = self
            .rng_nemesis
            .random_range(NEMESIS_INTERVAL_MIN_NANOS..=NEMESIS_INTERVAL_MAX_NANOS);
        self.schedule(pause, Event::Nemesis);
    }
}

/// The fault families and rates one seed uses.
pub(super) struct Swarm {
    pub(super) nemesis: NemesisOptions,
    pub(super) net: NetOptions,
    pub(super) disk: SimDiskFaults,
    /// The draw as `enigma sim` prints it on its `swarm:` line.
    pub(super) line: String,
}

/// Draws which fault families (and at what rates) this seed uses.
pub(super) fn draw_swarm(config: &SimConfig, rng_swarm: &mut ChaCha8Rng) -> Swarm {
    let (nemesis, net, disk, line) = if config.faults {
        let crashes = rng_swarm.random_bool(0.7);
        let partitions = rng_swarm.random_bool(0.7);
        let loss = [0.0, 0.01, 0.05][rng_swarm.random_range(0..3)];
        let duplicate = [0.0, 0.02][rng_swarm.random_range(0..2)];
        let latency_max = [2_000_000, 10_000_000, 50_000_000][rng_swarm.random_range(0..3)];
        let torn = rng_swarm.random_bool(0.5);
        let line = format!(
            "crashes={} partitions={} loss={loss} duplicate={duplicate} latency_max={}ms torn_writes={}",
            on_off(crashes),
            on_off(partitions),
            latency_max / 1_000_000,
            on_off(torn),
        );
        (
            NemesisOptions {
                crashes,
                partitions,
            },
            NetOptions {
                latency_max_nanos: latency_max,
                loss_probability: loss,
                duplicate_probability: duplicate,
                ..NetOptions::default()
            },
            if torn {
                SimDiskFaults::torn()
            } else {
                SimDiskFaults::default()
            },
            line,
        )
    } else {
        (
            NemesisOptions {
                crashes: false,
                partitions: false,
            },
            NetOptions::default(),
            SimDiskFaults::default(),
            "faults off".to_owned(),
        )
    };
    Swarm {
        nemesis,
        net,
        disk,
        line,
    }
}

fn on_off(on: bool) -> &'static str {
    if on {
        "on"
    } else {
        "off"
    }
}
