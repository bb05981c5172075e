//! The nemesis driver: draws which fault families a seed uses (swarm
//! testing) and carries out the faults the nemesis policy picks: crashes
//! (at once, or armed to land inside the node's next group commit or
//! between two steps of its next background job),
//! restarts, partitions of every shape, process pauses, swizzle-clogging,
//! clock jumps, windows of bad reads and failed syncs, and crash loops (a
//! crashed node restarted at once and crashing again soon, a few times).

use enigma_cluster::{ConsistencyLevel, RequestId};
use enigma_engine::{Buggify, BuggifySite, TableCompression, COMPACTION_ZSTD_LEVEL_DEFAULT};
use enigma_workloads::{ClusterFaults, Fault, NemesisOptions, PartitionKind};
use rand::Rng;
use rand_chacha::ChaCha8Rng;

use crate::config::SimConfig;
use crate::disk::SimDiskFaults;
use crate::net::NetOptions;
use crate::recording::SpanKind;
use crate::schedule::CrashAt;

use super::commit::{
    CrashPoint, SyncLatency, CRASH_IN_BACKGROUND_JOB_WAIT_NANOS, SYNC_LATENCY_PROFILES,
};
use super::links::ReadCuts;
use super::{Event, Phase, Simulation, NEMESIS_INTERVAL_MAX_NANOS, NEMESIS_INTERVAL_MIN_NANOS};

/// Bound on every node's wall clock offset when the clock family is on and
/// `--clock-skew-max-ms` does not set one: two nodes then read each other
/// at most 400 ms apart, within the 500 ms a cluster tolerates.
pub(super) const CLOCK_FAULT_OFFSET_NANOS_MAX: i64 = 200_000_000;
/// Largest clock drift drawn, parts per million either way.
const CLOCK_DRIFT_PPM_MAX: i64 = 500;
/// Longest a restarted node's monotonic clock may read at its start.
const BOOT_MONO_NANOS_MAX: u64 = 10_000_000_000;
/// Chance in a bad-read window that a read returns a flipped bit.
const READ_BIT_FLIP_PROBABILITY: f64 = 0.05;
/// Chance in a bad-read window that a read fails.
const READ_ERROR_PROBABILITY: f64 = 0.05;
/// Table sectors made unreadable (latent sector errors) when a bad-read
/// window opens.
const LATENT_SECTORS_PER_WINDOW: usize = 16;
/// Restarts in one crash loop, the range drawn from.
const CRASH_LOOP_RESTARTS: std::ops::RangeInclusive<u32> = 3..=8;
/// Longest a node in a crash loop stays down: a supervisor restarts it at
/// once, often while answers to its previous incarnation are on their way.
const CRASH_LOOP_DOWN_NANOS_MAX: u64 = 10_000_000;
/// Longest a node in a crash loop runs before it crashes again: about a
/// round trip, so that its new operations reuse the sequence numbers of
/// its previous incarnation's operations whose answers are still arriving.
const CRASH_LOOP_UP_NANOS_MAX: u64 = 60_000_000;
/// Most a link to or from a node in a crash loop delays each message
/// (clogged while the loop lasts): longer than the node's incarnations
/// live, so answers meant for one reach the next, and its writes reach
/// their replicas late.
const CRASH_LOOP_LINK_DELAY_MAX_NANOS: u64 = 200_000_000;

/// A swizzle in progress: links clogged one by one, then unclogged in
/// reverse order.
#[derive(Debug)]
pub(super) struct Swizzle {
    links: Vec<(usize, usize)>,
    step_nanos: u64,
    delay_max_nanos: u64,
    /// Links clogged so far.
    clogged: usize,
    /// Clogging is done: unclogging now.
    unclogging: bool,
}

impl Simulation {
    pub(super) fn on_nemesis(&mut self) {
        if self.phase != Phase::Safety {
            return;
        }
        let state = ClusterFaults {
            up: self.slots.iter().map(|s| s.node.is_some()).collect(),
            impaired: self
                .slots
                .iter()
                .map(|s| {
                    s.paused_until.is_some_and(|t| t > self.now)
                        || s.read_faults_until.is_some()
                        || s.disk_full_until.is_some()
                        || s.crash_armed.is_some()
                        || !s.crash_loop.is_empty()
                })
                .collect(),
            partitioned: self.net.is_partitioned(),
            clogged: self.net.is_clogged() || self.swizzle.is_some(),
        };
        let fault = self.nemesis.next_fault(&mut self.rng_nemesis, &state);
        if let Some(fault) = fault {
            match (&fault, self.crash_loops) {
                (&Fault::Crash(node), true) => {
                    // The whole loop is drawn now, so that a schedule can
                    // write it down with the crash that starts it.
                    let restarts = self.rng_nemesis.random_range(CRASH_LOOP_RESTARTS);
                    let periods: Vec<(u64, u64)> = (0..restarts)
                        .map(|_| {
                            (
                                self.rng_nemesis.random_range(1..=CRASH_LOOP_DOWN_NANOS_MAX),
                                self.rng_nemesis.random_range(1..=CRASH_LOOP_UP_NANOS_MAX),
                            )
                        })
                        .collect();
                    self.start_crash_loop(node, &periods);
                    self.inject_noted(fault, None, Some(periods));
                }
                _ => self.inject(fault, None),
            }
        }
        let pause = self
            .rng_nemesis
            .random_range(NEMESIS_INTERVAL_MIN_NANOS..=NEMESIS_INTERVAL_MAX_NANOS);
        self.schedule(pause, Event::Nemesis);
    }

    /// Injects `fault`, drawn by the nemesis or read from a schedule; a
    /// crash lands at `crash_at`, drawn when `None`.
    pub(super) fn inject(&mut self, fault: Fault, crash_at: Option<CrashAt>) {
        self.inject_noted(fault, crash_at, Some(Vec::new()));
    }

    /// [`Self::inject`], written down in a recording run with the crash
    /// loop it starts (`Some(periods)`), or not at all (`None`: a step of a
    /// crash loop, which the loop's first crash describes).
    pub(super) fn inject_noted(
        &mut self,
        fault: Fault,
        crash_at: Option<CrashAt>,
        note: Option<Vec<(u64, u64)>>,
    ) {
        let mut bytes = vec![4];
        bytes.extend_from_slice(format!("{fault:?}").as_bytes());
        self.trace
            .record(self.now, &bytes, || format!("nemesis: {fault:?}"));
        let crash_at = match (&fault, crash_at) {
            (Fault::Crash(_), None) => Some(match self.rng_nemesis.random_range(0..4) {
                // Three in four crashes wait for the node's next batch, to
                // land inside the group commit's windows; a quarter wait
                // for its next background job, to land between two steps.
                0 => CrashAt::BeforeSync,
                1 => CrashAt::DuringSync,
                2 => CrashAt::InBackgroundJob,
                _ => CrashAt::Now,
            }),
            (_, given) => given,
        };
        if let Some(crash_loop) = note {
            self.note_scheduled_fault(&fault, crash_at, crash_loop);
        }
        self.carry_out(fault, crash_at.unwrap_or(CrashAt::Now));
    }

    fn carry_out(&mut self, fault: Fault, crash_at: CrashAt) {
        match fault {
            Fault::Crash(node) => match crash_at {
                CrashAt::BeforeSync => {
                    self.record(|r, now| {
                        r.mark(
                            now,
                            node,
                            "crash-armed",
                            "crash armed: before the next sync".into(),
                        );
                    });
                    self.slots[node].crash_armed = Some(CrashPoint::BeforeSync);
                }
                CrashAt::DuringSync => {
                    self.record(|r, now| {
                        r.mark(
                            now,
                            node,
                            "crash-armed",
                            "crash armed: during the next sync".into(),
                        );
                    });
                    self.slots[node].crash_armed = Some(CrashPoint::DuringSync);
                }
                CrashAt::InBackgroundJob => {
                    self.record(|r, now| {
                        r.mark(
                            now,
                            node,
                            "crash-armed",
                            "crash armed: inside the next background job".into(),
                        );
                    });
                    self.slots[node].crash_armed = Some(CrashPoint::InBackgroundJob {
                        until_nanos: self.now + CRASH_IN_BACKGROUND_JOB_WAIT_NANOS,
                    });
                }
                CrashAt::Now => self.crash(node),
            },
            Fault::Restart(node) => self.start_node(node),
            Fault::Partition { kind, cut } => {
                self.stats.partitions += 1;
                match kind {
                    PartitionKind::Bridge => self.stats.bridge_partitions += 1,
                    PartitionKind::Asymmetric => self.stats.asymmetric_partitions += 1,
                    PartitionKind::Halves | PartitionKind::Isolate => {}
                }
                self.record(|r, now| {
                    let label = format!("{kind:?} partition");
                    r.open_links(now, SpanKind::Partition, None, label, cut.clone());
                });
                self.net.partition(&cut);
            }
            Fault::Heal => {
                self.record(|r, now| {
                    r.close(now, SpanKind::Partition, None);
                    r.close(now, SpanKind::Clog, None);
                });
                self.net.heal();
                self.swizzle = None;
            }
            Fault::Pause { node, nanos } => {
                self.stats.pauses += 1;
                self.record(|r, now| {
                    let label = format!("paused {} ms", nanos / 1_000_000);
                    r.span(now, SpanKind::Pause, node, nanos, label);
                });
                self.slots[node].paused_until = Some(self.now + nanos);
            }
            Fault::Swizzle {
                links,
                step_nanos,
                delay_max_nanos,
            } => {
                self.stats.swizzles += 1;
                self.record(|r, now| {
                    let label = format!(
                        "swizzle: {} links clogged one by one every {} ms (up to {} ms each), then unclogged",
                        links.len(),
                        step_nanos / 1_000_000,
                        delay_max_nanos / 1_000_000
                    );
                    r.open_links(now, SpanKind::Clog, None, label, links.clone());
                });
                self.swizzle = Some(Swizzle {
                    links,
                    step_nanos,
                    delay_max_nanos,
                    clogged: 0,
                    unclogging: false,
                });
                self.schedule(0, Event::SwizzleStep);
            }
            Fault::ClockJump { node, nanos } => {
                self.stats.clock_jumps += 1;
                self.record(|r, now| {
                    r.mark(
                        now,
                        node,
                        "clock",
                        format!("clock jumped {} ms", nanos / 1_000_000),
                    );
                });
                let bound = self.clock_offset_nanos_max;
                self.slots[node].clock.jump(nanos, bound);
            }
            Fault::ReadFaults { node, nanos } => {
                let in_windows = self
                    .slots
                    .iter()
                    .filter(|s| s.read_faults_until.is_some())
                    .count();
                // Fewer than rf replicas of any key: at most rf - 1 nodes
                // read badly at once.
                if in_windows + 1 < self.config.replication_factor {
                    self.start_read_faults(node, nanos);
                }
            }
            Fault::DiskFull { node, nanos } => {
                self.stats.disk_full_windows += 1;
                self.record(|r, now| {
                    let label = format!("disk full for {} ms", nanos / 1_000_000);
                    r.open(now, SpanKind::DiskFull, Some(node), label);
                });
                let slot = &mut self.slots[node];
                slot.disk_full_until = Some(self.now + nanos);
                slot.disk_faulted = true;
                slot.disk.set_full(true);
                let incarnation = slot.incarnation;
                self.schedule(nanos, Event::DiskSpaceBack { node, incarnation });
            }
            Fault::FailSync(node) => {
                self.stats.sync_failures += 1;
                self.record(|r, now| r.mark(now, node, "sync-fail", "next sync fails".into()));
                self.slots[node].disk_faulted = true;
                self.slots[node].disk.fail_next_sync();
            }
        }
    }

    /// A node crashed. With crash loops on, its clients' connections close
    /// at once: each gives up on its request there as on a timeout (a read
    /// is tried again elsewhere, a write's outcome is unknown), so that
    /// operations keep coming to the node while it loops. In a crash loop,
    /// a supervisor restarts it soon.
    pub(super) fn continue_crash_loop(&mut self, node: usize) {
        if !self.crash_loops {
            return;
        }
        let stranded: Vec<(usize, RequestId)> = self
            .clients
            .iter()
            .enumerate()
            .filter_map(|(client, c)| {
                let in_flight = c.in_flight.as_ref()?;
                (in_flight.node == node).then_some((client, in_flight.request))
            })
            .collect();
        for (client, request) in stranded {
            let delay = self.client_latency();
            self.schedule(delay, Event::ClientTimeout { client, request });
        }
        let Some(&(down, _)) = self.slots[node].crash_loop.front() else {
            return;
        };
        if self.phase == Phase::Safety {
            self.schedule(down, Event::CrashLoopRestart { node });
        }
    }

    /// `node` enters a crash loop of `periods` (drawn by the nemesis, or
    /// read from a schedule) with its next crash: the links to and from it
    /// are slow while the loop lasts.
    pub(super) fn start_crash_loop(&mut self, node: usize, periods: &[(u64, u64)]) {
        self.slots[node].crash_loop = periods.iter().copied().collect();
        for peer in (0..self.slots.len()).filter(|&peer| peer != node) {
            self.net.clog(peer, node, CRASH_LOOP_LINK_DELAY_MAX_NANOS);
            self.net.clog(node, peer, CRASH_LOOP_LINK_DELAY_MAX_NANOS);
        }
    }

    /// The crash loop's restart of `node`; unless it was the loop's last,
    /// the new incarnation crashes again soon.
    pub(super) fn on_crash_loop_restart(&mut self, node: usize) {
        let period = self.slots[node].crash_loop.pop_front();
        let Some((_, up)) = period.filter(|_| self.phase == Phase::Safety) else {
            self.end_crash_loop(node);
            return;
        };
        if self.slots[node].node.is_none() {
            self.stats.crash_loop_restarts += 1;
            self.inject_noted(Fault::Restart(node), None, None);
        }
        if self.slots[node].crash_loop.is_empty() {
            self.end_crash_loop(node);
        } else {
            let incarnation = self.slots[node].incarnation;
            self.schedule(up, Event::CrashLoopCrash { node, incarnation });
        }
    }

    /// The crash loop crashes `node` again, if the incarnation it let run
    /// still does.
    pub(super) fn on_crash_loop_crash(&mut self, node: usize, incarnation: u64) {
        let slot = &self.slots[node];
        if self.phase != Phase::Safety || slot.incarnation != incarnation || slot.node.is_none() {
            self.end_crash_loop(node);
            return;
        }
        self.inject_noted(Fault::Crash(node), Some(CrashAt::Now), None);
    }

    /// `node`'s crash loop is over: its links unclog.
    fn end_crash_loop(&mut self, node: usize) {
        self.slots[node].crash_loop.clear();
        for peer in (0..self.slots.len()).filter(|&peer| peer != node) {
            self.net.unclog(peer, node);
            self.net.unclog(node, peer);
        }
    }

    /// Opens a window of bad reads on `node`'s disk: reads return a flipped
    /// bit or fail now and then, and a few sectors of its tables fail every
    /// read (latent sector errors). Only tables are read while a node runs,
    /// and every table block is checksummed: the engine detects each fault.
    fn start_read_faults(&mut self, node: usize, nanos: u64) {
        self.stats.read_fault_windows += 1;
        self.record(|r, now| {
            let label = format!("bad reads for {} ms", nanos / 1_000_000);
            r.open(now, SpanKind::ReadFaults, Some(node), label);
        });
        let slot = &mut self.slots[node];
        slot.read_faults_until = Some(self.now + nanos);
        slot.disk_faulted = true;
        slot.disk.set_faults(SimDiskFaults {
            read_bit_flip_probability: READ_BIT_FLIP_PROBABILITY,
            read_error_probability: READ_ERROR_PROBABILITY,
            ..self.disk_faults.clone()
        });
        slot.disk.mark_random_sectors_unreadable(
            &mut self.rng_disk,
            LATENT_SECTORS_PER_WINDOW,
            |name| name.ends_with(".sst"),
        );
        let incarnation = slot.incarnation;
        self.schedule(nanos, Event::ReadFaultsEnd { node, incarnation });
    }

    /// Ends `node`'s window of bad reads (the drive remapped its bad
    /// sectors).
    pub(super) fn end_read_faults(&mut self, node: usize) {
        let slot = &mut self.slots[node];
        if slot.read_faults_until.take().is_some() {
            slot.disk.set_faults(self.disk_faults.clone());
            slot.disk.clear_unreadable_sectors();
            self.record(|r, now| r.close(now, SpanKind::ReadFaults, Some(node)));
        }
    }

    /// Space comes back on `node`'s disk.
    pub(super) fn end_disk_full(&mut self, node: usize) {
        let slot = &mut self.slots[node];
        if slot.disk_full_until.take().is_some() {
            slot.disk.set_full(false);
            self.record(|r, now| r.close(now, SpanKind::DiskFull, Some(node)));
        }
    }

    /// The next step of the swizzle in progress.
    pub(super) fn on_swizzle_step(&mut self) {
        let Some(swizzle) = &mut self.swizzle else {
            return;
        };
        if !swizzle.unclogging {
            let (from, to) = swizzle.links[swizzle.clogged];
            self.net.clog(from, to, swizzle.delay_max_nanos);
            swizzle.clogged += 1;
            if swizzle.clogged == swizzle.links.len() {
                swizzle.unclogging = true;
            }
        } else {
            swizzle.clogged -= 1;
            let (from, to) = swizzle.links[swizzle.clogged];
            self.net.unclog(from, to);
            if swizzle.clogged == 0 {
                self.swizzle = None;
                self.record(|r, now| r.close(now, SpanKind::Clog, None));
                return;
            }
        }
        let step = swizzle.step_nanos;
        self.schedule(step, Event::SwizzleStep);
    }
}

/// The fault families and rates one seed uses.
pub(super) struct Swarm {
    pub(super) nemesis: NemesisOptions,
    pub(super) net: NetOptions,
    pub(super) disk: SimDiskFaults,
    /// The draw as `enigma sim` prints it on its `swarm:` line.
    pub(super) line: String,
    /// Longest group commit window.
    pub(super) group_commit_window_max_nanos: u64,
    /// Each node's disk's sync latency.
    pub(super) sync_latencies: Vec<SyncLatency>,
    /// Each node's clock drift, parts per million.
    pub(super) clock_drifts_ppm: Vec<i64>,
    /// The buggify sites this run enables.
    pub(super) buggify: Buggify,
    /// How the links cut their byte streams into reads.
    pub(super) read_cuts: ReadCuts,
    /// Whether each crash the nemesis injects starts a crash loop.
    pub(super) crash_loops: bool,
    /// Whether stored bytes of tables rot and take misdirected writes
    /// (`run/damage.rs`).
    pub(super) stored_damage: bool,
    /// How flushes and compactions compress the tables they write.
    pub(super) codecs: Codecs,
}

/// The table compression a run's engines use: a memtable flush's, and a
/// compaction's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Codecs {
    pub(super) flush: TableCompression,
    pub(super) compaction: TableCompression,
}

/// Compressions a flush draws from, one each.
const FLUSH_CODECS: [TableCompression; 2] = [TableCompression::Lz4, TableCompression::None];

/// Compressions a compaction draws from: zstd (the engine's default) one
/// run in three, since it costs as much CPU as the rest of the run's
/// storage work; LZ4 or none in the others.
const COMPACTION_CODECS: [TableCompression; 3] = [
    TableCompression::Zstd {
        level: COMPACTION_ZSTD_LEVEL_DEFAULT,
    },
    TableCompression::Lz4,
    TableCompression::None,
];

/// A codec as the `swarm:` line names it.
fn codec_name(codec: TableCompression) -> &'static str {
    match codec {
        TableCompression::None => "none",
        TableCompression::Lz4 => "lz4",
        TableCompression::Zstd { .. } => "zstd",
    }
}

/// Chance that a seed turns the stored-damage family on.
const STORED_DAMAGE_PROBABILITY: f64 = 0.3;

/// Chance that a message straggles in a run with stale messages on.
const STRAGGLE_PROBABILITY: f64 = 0.02;

/// Chances a buggify site fires per visit, per mille, a run draws from.
const BUGGIFY_PER_MILLE: [u32; 2] = [10, 100];

/// The longest group commit windows a run draws from (0: every batch syncs
/// as soon as its first input is applied).
const GROUP_COMMIT_WINDOW_MAX_NANOS: [u64; 4] = [0, 200_000, 1_000_000, 5_000_000];

/// Draws which fault families (and at what rates) this seed uses. Most
/// seeds keep a majority of nodes healthy; one in five may lose them all
/// at once.
pub(super) fn draw_swarm(config: &SimConfig, rng: &mut ChaCha8Rng) -> Swarm {
    let (nemesis, mut net, disk, mut line) = if config.faults {
        // Drawn either way, so that --crashes off changes nothing else.
        let crashes = rng.random_bool(0.6) && config.crashes;
        let partitions = rng.random_bool(0.5);
        let loss = [0.0, 0.01, 0.05][rng.random_range(0..3)];
        let duplicate = [0.0, 0.02][rng.random_range(0..2)];
        let latency_max = [2_000_000, 10_000_000, 50_000_000][rng.random_range(0..3)];
        let torn = rng.random_bool(0.5);
        let pauses = rng.random_bool(0.3);
        let clogging = rng.random_bool(0.3);
        let clock_jumps = rng.random_bool(0.25);
        let read_faults = rng.random_bool(0.3);
        // A failed sync stops the node, and a full disk fails writes on
        // some replicas and not others: both need --crashes, which says
        // whether a write may miss replicas without leaving a hint.
        let sync_failures = rng.random_bool(0.25) && config.crashes;
        // `--always-full-disks` after the draw, so other draws stay as
        // they are.
        let full_disks = (rng.random_bool(0.25) || config.always_full_disks) && config.crashes;
        let harsh = rng.random_bool(0.2);
        let down_max = if harsh {
            config.nodes
        } else {
            ((config.nodes - 1) / 2).max(1)
        };
        let line = format!(
            "crashes={} partitions={} pauses={} clogging={} clock={} read_faults={} \
             sync_failures={} full_disks={} down_max={down_max} loss={loss} duplicate={duplicate} \
             latency_max={}ms torn_writes={}",
            on_off(crashes),
            on_off(partitions),
            on_off(pauses),
            on_off(clogging),
            on_off(clock_jumps),
            on_off(read_faults),
            on_off(sync_failures),
            on_off(full_disks),
            latency_max / 1_000_000,
            on_off(torn),
        );
        (
            NemesisOptions {
                crashes,
                partitions,
                pauses,
                clogging,
                clock_jumps,
                read_faults,
                sync_failures,
                full_disks,
                down_max,
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
            NemesisOptions::none(),
            NetOptions::default(),
            SimDiskFaults::default(),
            "faults off".to_owned(),
        )
    };
    let group_commit_window_max_nanos =
        GROUP_COMMIT_WINDOW_MAX_NANOS[rng.random_range(0..GROUP_COMMIT_WINDOW_MAX_NANOS.len())];
    let sync_latencies: Vec<SyncLatency> = (0..config.nodes)
        .map(|_| SYNC_LATENCY_PROFILES[rng.random_range(0..SYNC_LATENCY_PROFILES.len())])
        .collect();
    let clock_drifts_ppm: Vec<i64> = (0..config.nodes)
        .map(|_| {
            if nemesis.clock_jumps {
                rng.random_range(-CLOCK_DRIFT_PPM_MAX..=CLOCK_DRIFT_PPM_MAX)
            } else {
                0
            }
        })
        .collect();
    // Buggify is drawn whatever the faults: it forces rare paths of a
    // correct node, not faults.
    let mut buggify = Buggify {
        seed: rng.random(),
        ..Buggify::default()
    };
    if rng.random_bool(0.3) {
        for site in BuggifySite::ALL {
            if rng.random_bool(0.5) {
                let per_mille = BUGGIFY_PER_MILLE[rng.random_range(0..BUGGIFY_PER_MILLE.len())];
                buggify.sites_per_mille.insert(site, per_mille);
            }
        }
    }
    let sites: Vec<String> = buggify
        .sites_per_mille
        .iter()
        .map(|(site, per_mille)| format!("{site:?}:{per_mille}/1000"))
        .collect();
    line.push_str(&format!(
        " buggify={}",
        if sites.is_empty() {
            "off".to_owned()
        } else {
            sites.join(",")
        }
    ));
    line.push_str(&format!(
        " group_commit_window_max={}us sync_latency_max={}us",
        group_commit_window_max_nanos / 1_000,
        sync_latencies
            .iter()
            .map(|l| (l.max_nanos / 1_000).to_string())
            .collect::<Vec<_>>()
            .join("/")
    ));
    // Drawn last, so that the draws above stay what they were before
    // these families joined.
    let stale_messages = rng.random_bool(0.3) && config.faults;
    if stale_messages {
        net.straggle_probability = STRAGGLE_PROBABILITY;
    }
    let read_cuts = ReadCuts::ALL[rng.random_range(0..ReadCuts::ALL.len())];
    // Crash loops need crashes; drawn either way, as the families above.
    let crash_loops = rng.random_bool(0.3) && nemesis.crashes;
    line.push_str(&format!(
        " stale_messages={} frame_reads={} crash_loops={}",
        on_off(stale_messages),
        read_cuts.name(),
        on_off(crash_loops)
    ));
    // Drawn after every other family, so that they draw as before. Damage
    // must leave an intact replica of every key: it needs rf of at least 2.
    // Only anti-entropy repairs a damaged range. At `SERIAL`, a node that
    // lost data keeps a Paxos floor for good, and sits out prepares for
    // keys it holds no record of above it: the nodes ever damaged must
    // leave a majority of every key's replicas (`damage_nodes_max`).
    let stored_damage = (rng.random_bool(STORED_DAMAGE_PROBABILITY) || config.always_stored_damage)
        && config.faults
        && config.anti_entropy
        && config.replication_factor >= 2
        && damage_nodes_max(config) > 0;
    line.push_str(&format!(" stored_damage={}", on_off(stored_damage)));
    // Drawn after the fault families, so that they draw as before.
    let codecs = Codecs {
        flush: FLUSH_CODECS[rng.random_range(0..FLUSH_CODECS.len())],
        compaction: COMPACTION_CODECS[rng.random_range(0..COMPACTION_CODECS.len())],
    };
    line.push_str(&format!(
        " codecs={}/{}",
        codec_name(codecs.flush),
        codec_name(codecs.compaction)
    ));
    Swarm {
        nemesis,
        net,
        disk,
        line,
        group_commit_window_max_nanos,
        sync_latencies,
        clock_drifts_ppm,
        buggify,
        read_cuts,
        crash_loops,
        stored_damage,
        codecs,
    }
}

/// How many distinct nodes stored damage may hit over a run: any number,
/// one at a time, but at `SERIAL` no more than the replicas a key may lose
/// and keep a majority (`rf` minus a majority of `rf`), since each keeps a
/// Paxos floor for good (`enigma_cluster::ballot_mark`): a key with more
/// such replicas could find no majority to promise it, ever.
pub(super) fn damage_nodes_max(config: &SimConfig) -> usize {
    if config.level != ConsistencyLevel::Serial {
        return usize::MAX;
    }
    let rf = config.replication_factor;
    let majority = ConsistencyLevel::Serial.replicas_required(rf).unwrap_or(rf);
    rf - majority
}

/// A restarted node's clocks: a new monotonic origin, and with clock faults
/// on, a wall clock that may have moved while it was down.
pub(super) fn boot_mono_nanos(rng: &mut ChaCha8Rng) -> u64 {
    rng.random_range(0..=BOOT_MONO_NANOS_MAX)
}

fn on_off(on: bool) -> &'static str {
    if on {
        "on"
    } else {
        "off"
    }
}
