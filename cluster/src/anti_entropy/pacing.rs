//! The scan budget of anti-entropy: a byte rate, not a byte count per tick.
//!
//! A budget per tick let the cost follow the tick rate and the session
//! rate: with sessions back to back over 100,000 keys, anti-entropy took a
//! third of a node's write throughput. A rate bounds the work per second
//! whatever the ticks and sessions do. Bytes accrue with monotonic time up
//! to [`BURST_NANOS`] worth; a scan may overrun what it had (an entry is
//! never split), and the overrun is a debt repaid before the next scan.

/// At most this much time's worth of budget is saved up while idle, so a
/// long quiet spell does not turn into a burst of scanning.
pub const BURST_NANOS: u64 = 100_000_000;

/// A token bucket of scan bytes, refilled at a fixed rate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanPacer {
    bytes_per_sec: u64,
    /// Bytes that may be scanned now; negative after an overrun.
    tokens: i64,
    refilled_mono_nanos: u64,
}

impl ScanPacer {
    /// A pacer that allows `bytes_per_sec`, starting empty at `now`.
    pub fn new(bytes_per_sec: u64, now_mono_nanos: u64) -> Self {
        Self {
            bytes_per_sec,
            tokens: 0,
            refilled_mono_nanos: now_mono_nanos,
        }
    }

    fn burst(&self) -> i64 {
        let burst = u128::from(self.bytes_per_sec) * u128::from(BURST_NANOS) / 1_000_000_000;
        i64::try_from(burst.max(1)).unwrap_or(i64::MAX)
    }

    /// The bytes that may be scanned at `now` (0 while a debt is repaid).
    pub fn available(&mut self, now_mono_nanos: u64) -> u64 {
        let elapsed = now_mono_nanos.saturating_sub(self.refilled_mono_nanos);
        if elapsed > 0 {
            let earned = u128::from(self.bytes_per_sec) * u128::from(elapsed) / 1_000_000_000;
            // Count only whole bytes earned: the time they took (rounded
            // up, never past `elapsed`) is used, the rest carries over.
            let used_nanos = if self.bytes_per_sec == 0 {
                elapsed
            } else {
                let nanos = (earned * 1_000_000_000).div_ceil(u128::from(self.bytes_per_sec));
                u64::try_from(nanos).unwrap_or(elapsed).min(elapsed)
            };
            let earned = i64::try_from(earned).unwrap_or(i64::MAX);
            self.tokens = self.tokens.saturating_add(earned).min(self.burst());
            self.refilled_mono_nanos = if self.tokens == self.burst() {
                now_mono_nanos
            } else {
                self.refilled_mono_nanos.saturating_add(used_nanos)
            };
        }
        u64::try_from(self.tokens.max(0)).unwrap_or(0)
    }

    /// `bytes` were scanned (possibly more than [`Self::available`] said).
    pub fn spend(&mut self, bytes: u64) {
        let bytes = i64::try_from(bytes).unwrap_or(i64::MAX);
        self.tokens = self.tokens.saturating_sub(bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    #[test]
    fn bytes_accrue_at_the_rate_and_stop_at_the_burst() {
        let mut pacer = ScanPacer::new(1_000_000, 0);
        assert_eq!(pacer.available(0), 0);
        assert_eq!(pacer.available(10 * MS), 10_000);
        assert_eq!(pacer.available(20 * MS), 20_000);
        // A long idle spell saves up only BURST_NANOS worth.
        assert_eq!(pacer.available(10_000 * MS), 100_000);
        assert_eq!(pacer.available(10_010 * MS), 100_000);
    }

    #[test]
    fn an_overrun_is_repaid_before_more_is_allowed() {
        let mut pacer = ScanPacer::new(1_000_000, 0);
        assert_eq!(pacer.available(10 * MS), 10_000);
        pacer.spend(30_000);
        assert_eq!(pacer.available(20 * MS), 0);
        assert_eq!(pacer.available(30 * MS), 0);
        assert_eq!(pacer.available(40 * MS), 10_000);
    }

    #[test]
    fn the_rate_holds_over_many_small_ticks_whatever_their_length() {
        // 3 bytes per microsecond, ticks of 333 ns: fractions are not lost.
        let mut pacer = ScanPacer::new(3_000_000_000, 0);
        let mut total = 0;
        let mut now = 0;
        while now < 3 * MS {
            now += 333;
            let n = pacer.available(now);
            pacer.spend(n);
            total += n;
        }
        let expected = 3_000 * now / 1_000;
        assert!(
            total <= expected && total + 3 >= expected,
            "{total} vs {expected}"
        );
    }

    #[test]
    fn scanning_everything_offered_each_tick_keeps_to_the_rate() {
        let mut pacer = ScanPacer::new(4 << 20, 0);
        let mut total = 0u64;
        for tick in 1..=1_000u64 {
            let n = pacer.available(tick * 10 * MS);
            // Each tick overruns by one large entry.
            let spent = if n > 0 { n + 5_000 } else { 0 };
            pacer.spend(spent);
            total += spent;
        }
        // Ten seconds at 4 MiB/s, give or take one overrun.
        let expected = 10 * (4u64 << 20);
        assert!(total <= expected + 5_000, "{total} vs {expected}");
        assert!(total + 100_000 >= expected, "{total} vs {expected}");
    }
}
