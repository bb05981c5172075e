//! `SimClock`: each node's view of time.
//!
//! Fault model: a node's wall clock may be offset from true time by a fixed
//! amount and may drift (run fast or slow by some parts per million). Its
//! monotonic clock drifts with it but never jumps. A correct system survives
//! this for everything but the promises DESIGN.md ties to synchronised
//! clocks (QUORUM linearizability under last-write-wins), which the
//! simulator then does not check; skew is off by default.

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
}

impl SimClock {
    /// What this node's clocks read at true virtual time `virtual_nanos`.
    pub fn now(&self, virtual_nanos: u64) -> Now {
        let drifted = i128::from(virtual_nanos)
            + i128::from(virtual_nanos) * i128::from(self.drift_ppm) / 1_000_000;
        let mono = drifted.max(0);
        let wall = i128::from(EPOCH_WALL_NANOS) + drifted + i128::from(self.offset_nanos);
        Now {
            mono_nanos: u64::try_from(mono).unwrap_or(u64::MAX),
            wall_nanos: u64::try_from(wall.max(0)).unwrap_or(u64::MAX),
        }
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
        };
        let now = clock.now(1_000_000_000);
        assert_eq!(now.mono_nanos, 1_000_100_000);
        assert_eq!(now.wall_nanos, EPOCH_WALL_NANOS + 1_000_100_000 - 1_000);
    }
}
