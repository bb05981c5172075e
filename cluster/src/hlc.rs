//! The hybrid logical clock that stamps every mutation.
//!
//! A reading is one `u64`: wall-clock microseconds in the high 52 bits and a
//! logical counter in the low 12. Readings issued by one clock strictly
//! increase, and never fall behind any reading it has observed, so that a
//! write causally after another (through any chain of messages) gets a
//! higher timestamp even when wall clocks disagree. 52 bits of microseconds
//! last until the year 2112.

/// Bits of a reading given to the logical counter.
pub const LOGICAL_BITS: u32 = 12;

/// A hybrid logical clock.
#[derive(Debug, Clone, Default)]
pub struct HlcClock {
    /// The highest reading issued or observed.
    last: u64,
}

impl HlcClock {
    /// A clock that has seen nothing.
    pub fn new() -> Self {
        Self::default()
    }

    /// A clock that has issued (or stored) `reading` before: every reading
    /// it issues is above it. A node seeds its clock so at start with the
    /// highest timestamp it stored, so that a restart behind its old wall
    /// clock never stamps a write below its own earlier ones.
    pub fn seeded(reading: u64) -> Self {
        Self { last: reading }
    }

    /// The physical part of a reading, for a wall time.
    pub fn physical(wall_nanos: u64) -> u64 {
        (wall_nanos / 1_000) << LOGICAL_BITS
    }

    /// A new reading: greater than every earlier reading and observation,
    /// and at least the wall time.
    pub fn tick(&mut self, wall_nanos: u64) -> u64 {
        let next = self.last.saturating_add(1).max(Self::physical(wall_nanos));
        assert!(next > self.last, "hybrid logical clock overflow");
        self.last = next;
        next
    }

    /// The wall time (nanoseconds) a reading stands for, its logical
    /// counter dropped.
    pub fn wall_nanos_of(reading: u64) -> u64 {
        (reading >> LOGICAL_BITS).saturating_mul(1_000)
    }

    /// Takes in a reading carried by a message from another node.
    pub fn observe(&mut self, remote: u64) {
        self.last = self.last.max(remote);
    }

    /// The highest reading issued or observed, without advancing.
    pub fn last(&self) -> u64 {
        self.last
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readings_strictly_increase_even_when_wall_time_stalls() {
        let mut clock = HlcClock::new();
        let a = clock.tick(5_000_000);
        let b = clock.tick(5_000_000);
        let c = clock.tick(4_000_000);
        assert!(a < b && b < c);
    }

    #[test]
    fn a_reading_follows_every_observed_reading() {
        let mut clock = HlcClock::new();
        let remote = HlcClock::physical(9_000_000_000);
        clock.observe(remote);
        assert!(clock.tick(1_000) > remote);
    }

    #[test]
    fn a_seeded_clock_stamps_above_its_seed_whatever_the_wall_time() {
        let seed = HlcClock::physical(9_000_000_000) + 5;
        let mut clock = HlcClock::seeded(seed);
        assert!(clock.tick(1_000_000_000) > seed);
        assert_eq!(HlcClock::wall_nanos_of(seed), 9_000_000_000);
    }

    #[test]
    fn a_reading_follows_wall_time() {
        let mut clock = HlcClock::new();
        assert!(clock.tick(7_000_000) >= HlcClock::physical(7_000_000));
    }
}
