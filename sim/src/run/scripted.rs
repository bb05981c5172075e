//! Runs driven by a [`Schedule`]: recording the schedule a seed run draws,
//! and replaying one instead of drawing faults and operations.
//!
//! A scripted run draws from the seed's client stream exactly what a seed
//! run draws for each operation, and drops the draw for the schedule's
//! operation: the rest of the run (latencies, retries, the liveness
//! phase's operations) then draws what the seed run drew, so replaying a
//! seed run's own schedule gives the same run, digest included. Once the
//! shrinker has removed entries, the run goes its own deterministic way.

use enigma_checker::Call;
use enigma_workloads::Fault;
use rand::Rng;

use crate::config::SimConfig;
use crate::schedule::{Action, CrashAt, Entry, Schedule, ScheduledOp, LIVENESS_OPS_DEFAULT};

use super::{Event, Phase, RunReport, Simulation};

/// How long a scheduled operation waits for its client's previous one
/// before it looks again (only after the shrinker has removed entries can
/// a client still be busy at its next operation's time).
const BUSY_CLIENT_RETRY_NANOS: u64 = 1_000_000;

/// The schedule a scripted run replays.
#[derive(Debug)]
pub(super) struct Script {
    pub(super) schedule: Schedule,
    /// Operations of the schedule not yet issued.
    pub(super) ops_left: usize,
}

/// What a seed run writes down as it draws.
#[derive(Debug, Default)]
pub(super) struct ScheduleWriter {
    pub(super) entries: Vec<Entry>,
    pub(super) faults_stop_nanos: u64,
}

/// Runs `config` as a seed run and writes down its schedule: replaying
/// that schedule with [`run_scheduled`] gives the same run.
///
/// # Panics
/// If `config` does not validate.
pub fn run_schedule_recorded(config: &SimConfig) -> (RunReport, Schedule) {
    if let Err(e) = config.validate() {
        panic!("invalid simulation config: {e}");
    }
    let mut sim = Simulation::new(config.clone());
    sim.schedule_writer = Some(Box::default());
    sim.run_to_end();
    let writer = sim.schedule_writer.take().expect("set above");
    let schedule = Schedule {
        seed: config.seed,
        nodes: config.nodes,
        keys: config.keys,
        clients: config.clients,
        faults_stop_nanos: writer.faults_stop_nanos,
        heal: true,
        liveness_ops: LIVENESS_OPS_DEFAULT,
        entries: writer.entries,
    };
    (sim.finish(), schedule)
}

/// The configuration a scripted run of `schedule` runs: `config` with the
/// schedule's seed, keys and clients, and its operation count.
pub fn scheduled_config(config: &SimConfig, schedule: &Schedule) -> SimConfig {
    SimConfig {
        seed: schedule.seed,
        keys: schedule.keys,
        clients: schedule.clients,
        ops: schedule.ops(),
        ..config.clone()
    }
}

/// Whether `schedule` can drive a run of `config`: an error says why not.
pub fn check_schedule(config: &SimConfig, schedule: &Schedule) -> Result<(), String> {
    if schedule.nodes != config.nodes {
        return Err(format!(
            "the schedule is for {} nodes, the run has {}",
            schedule.nodes, config.nodes
        ));
    }
    if config.workload != crate::SimWorkload::Register {
        return Err("schedules drive the register workload only".into());
    }
    if !config.faults && schedule.faults() > 0 {
        return Err("the schedule has faults but the run has --faults off".into());
    }
    scheduled_config(config, schedule).validate()
}

/// Runs `config` with the faults and operations of `schedule` instead of
/// drawn ones (seed, keys and clients come from the schedule).
///
/// # Panics
/// If [`check_schedule`] refuses the pair.
pub fn run_scheduled(config: &SimConfig, schedule: &Schedule) -> RunReport {
    if let Err(e) = check_schedule(config, schedule) {
        panic!("invalid scheduled run: {e}");
    }
    let config = scheduled_config(config, schedule);
    let mut sim = Simulation::new(config);
    sim.liveness_ops_max = schedule.liveness_ops;
    sim.script = Some(Box::new(Script {
        ops_left: schedule.ops(),
        schedule: schedule.clone(),
    }));
    sim.run_to_end();
    sim.finish()
}

impl Simulation {
    /// Puts a scripted run's entries and end on the queue.
    pub(super) fn schedule_script(&mut self) {
        let Some(script) = &self.script else {
            return;
        };
        let times: Vec<u64> = script.schedule.entries.iter().map(|e| e.at_nanos).collect();
        let stop = script.schedule.faults_stop_nanos;
        for (entry, at) in times.into_iter().enumerate() {
            self.schedule(at, Event::Scripted { entry });
        }
        self.schedule(stop, Event::ScriptedStop);
    }

    /// A scheduled entry's time has come.
    pub(super) fn on_scripted(&mut self, entry: usize) {
        if self.phase != Phase::Safety {
            return;
        }
        let action = match &self.script {
            Some(script) => script.schedule.entries[entry].action.clone(),
            None => return,
        };
        match action {
            Action::Fault {
                fault,
                crash_at,
                crash_loop,
            } => {
                // Once entries are removed, a restart may find its node
                // running, a crash its node down: skipped.
                let up = |node: usize| self.slots[node].node.is_some();
                let applies = match &fault {
                    Fault::Restart(node) => !up(*node),
                    Fault::Crash(node) => up(*node),
                    _ => true,
                };
                if applies {
                    if let (&Fault::Crash(node), false) = (&fault, crash_loop.is_empty()) {
                        self.start_crash_loop(node, &crash_loop);
                    }
                    self.inject_noted(fault, crash_at, Some(crash_loop));
                }
            }
            Action::Op(op) => {
                if self.clients[op.client].in_flight.is_some() {
                    self.schedule(BUSY_CLIENT_RETRY_NANOS, Event::Scripted { entry });
                    return;
                }
                if let Some(script) = &mut self.script {
                    script.ops_left -= 1;
                }
                self.ops_issued += 1;
                // The draws a seed run makes for an operation, dropped.
                let _ = self.workload.next_op(&mut self.rng_clients);
                let _ = self.rng_clients.random_range(0..self.slots.len());
                let key = self.keys[op.key].clone();
                self.issue(op.client, op.node, key, op.call, self.config.level);
            }
        }
    }

    /// The schedule's faults stop, once every operation has been issued and
    /// has completed: the heal phase starts, or, when the schedule skips
    /// it, the liveness phase (which the run ends with).
    pub(super) fn on_scripted_stop(&mut self) {
        if self.phase != Phase::Safety {
            return;
        }
        let (ops_left, heal) = match &self.script {
            Some(script) => (script.ops_left, script.schedule.heal),
            None => return,
        };
        if ops_left > 0 || self.clients.iter().any(|c| c.in_flight.is_some()) {
            self.schedule(BUSY_CLIENT_RETRY_NANOS, Event::ScriptedStop);
            return;
        }
        // The liveness phase's writes come after every scheduled one.
        let value_max = self
            .script
            .as_ref()
            .map_or(0, |script| script.schedule.value_max());
        self.workload.write_values_above(value_max);
        if heal {
            self.start_heal();
        } else {
            // The faults stop (nodes restarted, links healed) but nothing
            // waits for the replicas to converge: the liveness phase, if
            // any, starts at once, and the run ends with it.
            self.trace.record(self.now, &[20], || {
                "end: the schedule skips healing".to_owned()
            });
            self.unhealed = true;
            self.stop_faults();
            self.start_liveness();
        }
    }

    /// Writes down, in a recording seed run, the fault just drawn.
    pub(super) fn note_scheduled_fault(
        &mut self,
        fault: &Fault,
        crash_at: Option<CrashAt>,
        crash_loop: Vec<(u64, u64)>,
    ) {
        let now = self.now;
        if let Some(writer) = self.schedule_writer.as_deref_mut() {
            writer.entries.push(Entry {
                at_nanos: now,
                action: Action::Fault {
                    fault: fault.clone(),
                    crash_at,
                    crash_loop,
                },
            });
        }
    }

    /// Writes down, in a recording seed run, the operation just drawn.
    pub(super) fn note_scheduled_op(&mut self, client: usize, key: &str, node: usize, call: &Call) {
        if self.phase != Phase::Safety {
            return;
        }
        let now = self.now;
        if let Some(writer) = self.schedule_writer.as_deref_mut() {
            let key = self
                .keys
                .iter()
                .position(|k| k == key)
                .expect("the workload draws its own keys");
            writer.entries.push(Entry {
                at_nanos: now,
                action: Action::Op(ScheduledOp {
                    client,
                    key,
                    node,
                    call: call.clone(),
                }),
            });
        }
    }

    /// Writes down, in a recording seed run, when the faults stopped.
    pub(super) fn note_faults_stop(&mut self) {
        let now = self.now;
        if let Some(writer) = self.schedule_writer.as_deref_mut() {
            writer.faults_stop_nanos = now;
        }
    }
}
