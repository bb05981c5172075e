//! Buggify: named sites in node and engine code where a simulator may force
//! a rare path (FoundationDB's `BUGGIFY`).
//!
//! The handle comes in through the options, like the clock: no global
//! state. A run enables some sites, each with a probability; each engine or
//! node draws from its own generator, seeded from the handle, so a seed
//! replays bit for bit. The default enables nothing and never draws: in
//! production every site is a no-op.

use std::collections::BTreeMap;

/// A place where a rare path can be forced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum BuggifySite {
    /// The engine freezes its memtable (for a flush) before it is full.
    MemtableFrozenEarly,
    /// A node's background work stops after one job, whatever its budget.
    BackgroundBatchCut,
    /// A coordinator holds a write's success until the operation's
    /// deadline, then answers it.
    ReplyAtDeadline,
}

impl BuggifySite {
    /// Every site.
    pub const ALL: [BuggifySite; 3] = [
        BuggifySite::MemtableFrozenEarly,
        BuggifySite::BackgroundBatchCut,
        BuggifySite::ReplyAtDeadline,
    ];
}

/// Which sites fire, and how often; the default enables none.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Buggify {
    /// Seeds each user's generator.
    pub seed: u64,
    /// Enabled sites, each with its chance to fire per visit, per mille.
    pub sites_per_mille: BTreeMap<BuggifySite, u32>,
}

/// One user's draws (an engine's, a node's): the handle plus a generator.
#[derive(Debug, Clone)]
pub struct BuggifyDraws {
    sites_per_mille: BTreeMap<BuggifySite, u32>,
    /// SplitMix64 state.
    state: u64,
    /// Times a site fired.
    fired: u64,
}

impl BuggifyDraws {
    /// Draws for the user `stream` of `buggify` (users of one handle pass
    /// different streams, so they do not draw alike).
    pub fn new(buggify: &Buggify, stream: u64) -> BuggifyDraws {
        BuggifyDraws {
            sites_per_mille: buggify.sites_per_mille.clone(),
            state: buggify.seed ^ stream.wrapping_mul(0x9e37_79b9_7f4a_7c15),
            fired: 0,
        }
    }

    /// Whether `site` is enabled at all.
    pub fn enabled(&self, site: BuggifySite) -> bool {
        self.sites_per_mille.contains_key(&site)
    }

    /// Whether `site` fires at this visit; never draws for a disabled site.
    pub fn fires(&mut self, site: BuggifySite) -> bool {
        let Some(&per_mille) = self.sites_per_mille.get(&site) else {
            return false;
        };
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        let fired = z % 1000 < u64::from(per_mille);
        self.fired += u64::from(fired);
        fired
    }

    /// Times a site fired so far.
    pub fn fired(&self) -> u64 {
        self.fired
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_never_fires_and_an_enabled_site_fires_at_its_rate() {
        let mut off = BuggifyDraws::new(&Buggify::default(), 1);
        assert!((0..1000).all(|_| !off.fires(BuggifySite::MemtableFrozenEarly)));
        let on = Buggify {
            seed: 7,
            sites_per_mille: [(BuggifySite::MemtableFrozenEarly, 100)].into(),
        };
        let mut draws = BuggifyDraws::new(&on, 1);
        let fired = (0..10_000)
            .filter(|_| draws.fires(BuggifySite::MemtableFrozenEarly))
            .count();
        assert!((700..1300).contains(&fired), "{fired}");
        assert!(!draws.fires(BuggifySite::ReplyAtDeadline));
        let mut again = BuggifyDraws::new(&on, 1);
        let replay = (0..10_000)
            .filter(|_| again.fires(BuggifySite::MemtableFrozenEarly))
            .count();
        assert_eq!(fired, replay, "a seed replays");
    }
}
