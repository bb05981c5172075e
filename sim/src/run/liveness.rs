//! The liveness phase: after healing and repair, the cluster must serve
//! operations at the run's level again. The clients issue up to
//! [`LIVENESS_OPS_MAX`] operations; [`LIVENESS_OPS_OK_MIN`] of them must
//! complete `ok` within [`LIVENESS_NANOS_MAX`] of virtual time, or the run
//! fails with a liveness violation naming what was stuck.

use enigma_workloads::ClientResult;
use rand::Rng;

use super::{
    Event, Phase, Simulation, CLIENT_THINK_MAX_NANOS, REQUEST_TIMEOUT_NANOS, SETTLE_NANOS,
};

/// Operations the clients issue in the liveness phase, at most.
pub(super) const LIVENESS_OPS_MAX: usize = crate::schedule::LIVENESS_OPS_DEFAULT;
/// Operations that must complete `ok`.
pub(super) const LIVENESS_OPS_OK_MIN: usize = 25;
/// Virtual time the phase may take.
pub(super) const LIVENESS_NANOS_MAX: u64 = 20_000_000_000;

/// Progress of the liveness phase.
#[derive(Debug, Default)]
pub(super) struct Liveness {
    /// Operations issued.
    pub(super) issued: usize,
    /// Operations that completed `ok`.
    pub(super) ok: usize,
    /// The last operation that did not complete `ok`: what was stuck.
    pub(super) last_failure: Option<String>,
}

impl Simulation {
    /// Starts the liveness phase: every workload client goes again.
    pub(super) fn start_liveness(&mut self) {
        self.trace
            .record(self.now, &[13], || "liveness: clients go again".to_owned());
        self.phase = Phase::Liveness;
        self.liveness = Liveness::default();
        if self.liveness_ops_max == 0 {
            // A shrunk schedule may skip the phase.
            self.end_liveness();
            return;
        }
        for client in 0..self.config.clients {
            let think = self.rng_clients.random_range(0..CLIENT_THINK_MAX_NANOS);
            self.schedule(think, Event::ClientNext { client });
        }
        self.schedule(LIVENESS_NANOS_MAX, Event::LivenessDeadline);
    }

    /// A liveness operation of `client` ended with `result`.
    pub(super) fn note_liveness_result(&mut self, client: usize, key: &str, result: &ClientResult) {
        match result {
            ClientResult::Read(_) | ClientResult::Written | ClientResult::Refused => {
                self.liveness.ok += 1
            }
            ClientResult::Failed | ClientResult::Unknown => {
                self.liveness.last_failure = Some(format!(
                    "client {client}'s operation on {key} ended {result:?}"
                ));
            }
        }
        if self.liveness.ok >= self.liveness_ok_min() {
            self.end_liveness();
        }
    }

    /// Whether a client may issue another liveness operation.
    pub(super) fn liveness_may_issue(&mut self) -> bool {
        if self.liveness.issued >= self.liveness_ops_max {
            return false;
        }
        self.liveness.issued += 1;
        true
    }

    /// The liveness operations are done: once what they left in flight has
    /// had time to land, the replicas must converge again, by hints and
    /// anti-entropy alone, before the final checks (a write a replica
    /// refused for its clock, say, is hinted only at its deadline).
    fn end_liveness(&mut self) {
        if self.phase == Phase::Liveness {
            self.phase = Phase::Settling;
            self.settle_started_nanos = self.now;
            self.converged_since_nanos = None;
            let settle = self.final_settle_nanos();
            if self.unhealed {
                // A schedule that skips healing skips the final wait too.
                self.schedule(settle, Event::Finish);
            } else {
                self.schedule(settle, Event::ConvergencePoll);
            }
        }
    }

    /// The phase's time is up, or its operations ran out.
    pub(super) fn on_liveness_deadline(&mut self) {
        if self.phase != Phase::Liveness {
            return;
        }
        let stuck = self
            .liveness
            .last_failure
            .clone()
            .unwrap_or_else(|| "operations were still in flight".to_owned());
        self.violate(
            "liveness",
            format!(
                "after healing, {} of {} operations at {} succeeded within {}s (needed {}); last: {stuck}",
                self.liveness.ok,
                self.liveness.issued,
                self.config.level,
                LIVENESS_NANOS_MAX / 1_000_000_000,
                self.liveness_ok_min()
            ),
        );
        self.phase = Phase::Settling;
        let settle = self.final_settle_nanos();
        self.schedule(settle, Event::Finish);
    }

    /// Operations that must complete `ok`: [`LIVENESS_OPS_OK_MIN`] of
    /// [`LIVENESS_OPS_MAX`], in proportion when a schedule issues fewer.
    fn liveness_ok_min(&self) -> usize {
        (self.liveness_ops_max * LIVENESS_OPS_OK_MIN).div_ceil(LIVENESS_OPS_MAX)
    }

    /// How long operations still in flight get before the final checks.
    /// A `SERIAL` operation may commit as late as its deadline (it backs
    /// off and retries until then) and its silent replicas get their hint
    /// only at the deadline, so a `SERIAL` run waits out a request timeout
    /// and a hint replay beyond the usual settling.
    fn final_settle_nanos(&self) -> u64 {
        if self.config.level == enigma_cluster::ConsistencyLevel::Serial {
            SETTLE_NANOS + 2 * REQUEST_TIMEOUT_NANOS
        } else {
            SETTLE_NANOS
        }
    }
}
