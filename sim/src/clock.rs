//! `SimClock`: each node's view of time.
//!
//! Fault model: a node's wall clock may be offset from true time, may drift
//! (run fast or slow by some parts per million) and may jump forwards or
//! backwards ([`SimClock::jump`]), also while the node is down, so that it
//! restarts with a clock behind or ahead of the one it stopped with. Its
//! monotonic clock drifts with the wall clock but never jumps while the
//! node runs; each start begins it at a new origin ([`SimClock::restart`]),
//! as a reboot does. A correct system survives this for everything but the
//! promises DESIGN.md ties to synchronised clocks (QUORUM linearizability
//! under last-write-wins), which the simulator then does not check: a run
//! with any clock fault says so in its facts. The simulator keeps every
//! offset within its bound, so that no node reads another as further
//! ahead than the cluster tolerates.

use enigma_cluster::Now;

/// Wall time at virtual time zero: 2026-01-01T00:00:00Z, in Unix nanoseconds.
pub const EPOCH_WALL_NANOS: u64 = 1_767_225_600_000_000_000;

/// One node's clocks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SimClock {
    /// Wall clock offset from true time, nanoseconds.
    pub offset_nanos: i64,
    /// Rate error, parts per million (positive: runs fast).
    pub drift_ppm: i64,
    /// What the monotonic clock reads at true time zero of this incarnation
    /// minus that time: set at each start, so each incarnation's monotonic
    /// clock has its own origin.
    pub mono_offset_nanos: i64,
    /// Bound on the wall clock's distance from true time, offset and drift
    /// together (0: none): a clock that drifts to it then runs at the true
    /// rate, as a clock slewed by NTP does. Every pair of clocks then reads
    /// at most twice this apart, the clock uncertainty commit wait assumes.
    pub wall_bound_nanos: i64,
}

impl SimClock {
    /// What this node's clocks read at true virtual time `virtual_nanos`.
    pub fn now(&self, virtual_nanos: u64) -> Now {
        let drifted = self.drifted(virtual_nanos);
        let mono = (drifted + i128::from(self.mono_offset_nanos)).max(0);
        let mut deviation = drifted - i128::from(virtual_nanos) + i128::from(self.offset_nanos);
        if self.wall_bound_nanos > 0 {
            let bound = i128::from(self.wall_bound_nanos);
            deviation = deviation.clamp(-bound, bound);
        }
        let wall = i128::from(EPOCH_WALL_NANOS) + i128::from(virtual_nanos) + deviation;
        Now {
            mono_nanos: u64::try_from(mono).unwrap_or(u64::MAX),
            wall_nanos: u64::try_from(wall.max(0)).unwrap_or(u64::MAX),
        }
    }

    fn drifted(&self, virtual_nanos: u64) -> i128 {
        i128::from(virtual_nanos)
            + i128::from(virtual_nanos) * i128::from(self.drift_ppm) / 1_000_000
    }

    /// Moves the wall clock by `nanos` (negative: backwards), keeping its
    /// offset within `bound_nanos` of true time either way.
    pub fn jump(&mut self, nanos: i64, bound_nanos: i64) {
        self.offset_nanos = self
            .offset_nanos
            .saturating_add(nanos)
            .clamp(-bound_nanos, bound_nanos);
    }

    /// A new incarnation starts at true time `virtual_nanos`: its monotonic
    /// clock reads `boot_mono_nanos` then.
    pub fn restart(&mut self, virtual_nanos: u64, boot_mono_nanos: u64) {
        let offset = i128::from(boot_mono_nanos) - self.drifted(virtual_nanos);
        self.mono_offset_nanos = i64::try_from(offset).unwrap_or(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_perfect_clock_reads_true_time() {
        let now = SimClock::default().now(5_000);
        assert_eq!(now.mono_nanos, 5_000);
        assert_eq!(now.wall_nanos, EPOCH_WALL_NANOS + 5_000);
    }

    #[test]
    fn offset_moves_wall_time_only_and_drift_moves_both() {
        let clock = SimClock {
            offset_nanos: -1_000,
            drift_ppm: 100,
            mono_offset_nanos: 0,
            wall_bound_nanos: 0,
        };
        let now = clock.now(1_000_000_000);
        assert_eq!(now.mono_nanos, 1_000_100_000);
        assert_eq!(now.wall_nanos, EPOCH_WALL_NANOS + 1_000_100_000 - 1_000);
    }

    #[test]
    fn drift_stops_at_the_wall_bound_and_the_clock_runs_on() {
        let clock = SimClock {
            offset_nanos: 900,
            drift_ppm: 1_000,
            mono_offset_nanos: 0,
            wall_bound_nanos: 1_000,
        };
        assert_eq!(clock.now(0).wall_nanos, EPOCH_WALL_NANOS + 900);
        assert_eq!(
            clock.now(1_000_000).wall_nanos,
            EPOCH_WALL_NANOS + 1_001_000
        );
        assert_eq!(
            clock.now(2_000_000).wall_nanos,
            EPOCH_WALL_NANOS + 2_001_000
        );
        assert_eq!(clock.now(2_000_000).mono_nanos, 2_002_000, "mono drifts on");
    }

    #[test]
    fn jumps_move_wall_time_within_the_bound_and_restarts_move_mono_time() {
        let mut clock = SimClock::default();
        clock.jump(-5_000, 3_000);
        assert_eq!(clock.now(10_000).wall_nanos, EPOCH_WALL_NANOS + 7_000);
        assert_eq!(clock.now(10_000).mono_nanos, 10_000, "mono never jumps");
        clock.restart(10_000, 42);
        assert_eq!(clock.now(10_000).mono_nanos, 42);
        assert_eq!(clock.now(10_500).mono_nanos, 542);
        assert_eq!(clock.now(10_000).wall_nanos, EPOCH_WALL_NANOS + 7_000);
    }
}
