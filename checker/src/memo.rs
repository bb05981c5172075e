//! The linearizability search's memo: the configurations (set of linearized
//! operations, model state) already explored, stored at what they cost.
//!
//! A configuration's set is kept as the search changes it, in a bitset over
//! the operations in invocation order ([`Linearized`]). Stored, it costs only
//! what tells it apart: every required operation invoked before the first one
//! still open is linearized (the search cannot have passed its response
//! otherwise), so an entry holds the position of that first open operation,
//! the words of the bitset from there to the last linearized operation (a
//! window as wide as the operations in flight around it), and which of the
//! optional operations before the window took effect (one bit each). A
//! history of 10,000 operations with a handful in flight needs a few words
//! per entry instead of 157.
//!
//! Lookups hash the set incrementally (a fixed random key per operation,
//! combined by xor as operations come and go, so a step costs O(1), not a
//! pass over the bitset), then compare the encoded entry exactly: a hash
//! collision costs a comparison, never a wrong answer.

use std::hash::{Hash, Hasher};

/// The set of linearized operations during a search, by invocation rank,
/// with what the memo needs kept up to date as it changes.
#[derive(Debug)]
pub(crate) struct Linearized {
    /// Bit per rank: linearized.
    bits: Vec<u64>,
    /// Bit per rank: required (it responded; the search must place it).
    required: Vec<u64>,
    /// Per rank of an optional operation: its index among optional ones.
    optional_index: Vec<u32>,
    /// Bit per optional operation: linearized.
    optional_bits: Vec<u64>,
    /// Per bitset word `w`: optional operations with rank below `64 * w`.
    optional_below_word: Vec<u32>,
    /// Per rank: its key in the set's hash.
    keys: Vec<u64>,
    /// Xor of the keys of linearized ranks.
    hash: u64,
    /// The lowest rank of a required operation not linearized (the count
    /// of ranks when there is none).
    first_open: usize,
    /// Highest bitset word that may be non-zero, plus one.
    words_used: usize,
}

impl Linearized {
    /// An empty set over operations whose `required` flags are given by
    /// invocation rank.
    pub(crate) fn new(required: &[bool]) -> Self {
        let n = required.len();
        let words = n.div_ceil(64);
        let mut required_bits = vec![0u64; words];
        let mut optional_index = vec![u32::MAX; n];
        let mut optional_below_word = Vec::with_capacity(words + 1);
        let mut optional = 0u32;
        for (rank, &is_required) in required.iter().enumerate() {
            if rank % 64 == 0 {
                optional_below_word.push(optional);
            }
            if is_required {
                required_bits[rank / 64] |= 1 << (rank % 64);
            } else {
                optional_index[rank] = optional;
                optional += 1;
            }
        }
        optional_below_word.push(optional);
        let mut seed = KEY_SEED;
        let keys = (0..n).map(|_| split_mix(&mut seed)).collect();
        let mut set = Self {
            bits: vec![0; words],
            required: required_bits,
            optional_index,
            optional_bits: vec![0; (optional as usize).div_ceil(64)],
            optional_below_word,
            keys,
            hash: 0,
            first_open: 0,
            words_used: 0,
        };
        set.first_open = set.next_open(0);
        set
    }

    /// The lowest rank at or above `from` of a required operation not
    /// linearized, or the number of ranks.
    fn next_open(&self, from: usize) -> usize {
        let n = self.optional_index.len();
        let mut word = from / 64;
        if word >= self.bits.len() {
            return n;
        }
        let mut open = self.required[word] & !self.bits[word] & (!0u64 << (from % 64));
        loop {
            if open != 0 {
                return (word * 64 + open.trailing_zeros() as usize).min(n);
            }
            word += 1;
            if word == self.bits.len() {
                return n;
            }
            open = self.required[word] & !self.bits[word];
        }
    }

    /// Adds `rank`.
    pub(crate) fn insert(&mut self, rank: usize) {
        let (word, bit) = (rank / 64, 1u64 << (rank % 64));
        debug_assert!(self.bits[word] & bit == 0, "linearized twice");
        self.bits[word] |= bit;
        self.hash ^= self.keys[rank];
        self.words_used = self.words_used.max(word + 1);
        let optional = self.optional_index[rank];
        if optional != u32::MAX {
            self.optional_bits[optional as usize / 64] |= 1 << (optional % 64);
        }
        if rank == self.first_open {
            self.first_open = self.next_open(rank + 1);
        }
    }

    /// Removes `rank`.
    pub(crate) fn remove(&mut self, rank: usize) {
        let (word, bit) = (rank / 64, 1u64 << (rank % 64));
        debug_assert!(self.bits[word] & bit != 0, "not linearized");
        self.bits[word] &= !bit;
        self.hash ^= self.keys[rank];
        while self.words_used > 0 && self.bits[self.words_used - 1] == 0 {
            self.words_used -= 1;
        }
        let optional = self.optional_index[rank];
        if optional != u32::MAX {
            self.optional_bits[optional as usize / 64] &= !(1 << (optional % 64));
        } else if rank < self.first_open {
            self.first_open = rank;
        }
    }

    /// Whether `rank` is in the set.
    #[cfg(test)]
    pub(crate) fn contains(&self, rank: usize) -> bool {
        self.bits[rank / 64] & (1 << (rank % 64)) != 0
    }

    /// Writes the set's canonical encoding to `out` (cleared first): a
    /// header (window start word, window length), the window's words, then
    /// the bits of the optional operations ranked before the window. Two
    /// sets are equal exactly when their encodings are.
    fn encode(&self, out: &mut Vec<u64>) {
        out.clear();
        let start = (self.first_open / 64).min(self.words_used);
        let end = self.words_used.max(start);
        out.push(start as u64 | ((end - start) as u64) << 32);
        out.extend_from_slice(&self.bits[start..end]);
        let optional = self.optional_below_word[start] as usize;
        let full = optional / 64;
        out.extend_from_slice(&self.optional_bits[..full]);
        if optional % 64 != 0 {
            out.push(self.optional_bits[full] & ((1u64 << (optional % 64)) - 1));
        }
    }
}

/// Seed of the per-operation hash keys: fixed, so runs are reproducible to
/// the byte.
const KEY_SEED: u64 = 0x5EED_0F11_E412_ABCD;

fn split_mix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A set of (linearized set, state) pairs: open addressing with linear
/// probing. Only membership is ever asked, never iteration, but the hash is
/// fixed anyway so runs are reproducible to the byte.
#[derive(Debug)]
pub(crate) struct MemoSet<S> {
    /// Encoded sets, one after the other.
    arena: Vec<u64>,
    /// Per entry: where its encoding starts in `arena` (it ends where the
    /// next one starts).
    starts: Vec<usize>,
    states: Vec<S>,
    hashes: Vec<u64>,
    /// Entry index + 1, or 0 for an empty slot; length a power of two.
    slots: Vec<u32>,
    /// Scratch encoding of the set being looked up.
    scratch: Vec<u64>,
}

/// Initial number of slots of the memo table.
const MEMO_SLOTS_INITIAL: usize = 1 << 10;

impl<S: Eq + Hash + Clone> MemoSet<S> {
    pub(crate) fn new() -> Self {
        Self {
            arena: Vec::new(),
            starts: Vec::new(),
            states: Vec::new(),
            hashes: Vec::new(),
            slots: vec![0; MEMO_SLOTS_INITIAL],
            scratch: Vec::new(),
        }
    }

    /// Bytes held, counting each vector's capacity.
    pub(crate) fn bytes(&self) -> usize {
        self.arena.capacity() * 8
            + self.starts.capacity() * std::mem::size_of::<usize>()
            + self.states.capacity() * std::mem::size_of::<S>()
            + self.hashes.capacity() * 8
            + self.slots.capacity() * 4
            + self.scratch.capacity() * 8
    }

    /// Number of entries.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.states.len()
    }

    fn entry(&self, i: usize) -> &[u64] {
        let end = self.starts.get(i + 1).copied().unwrap_or(self.arena.len());
        &self.arena[self.starts[i]..end]
    }

    /// Inserts the pair; returns whether it was new.
    pub(crate) fn insert(&mut self, set: &Linearized, state: &S) -> bool {
        let mut hasher = MixHasher::default();
        hasher.add(set.hash);
        state.hash(&mut hasher);
        let hash = hasher.finish();
        set.encode(&mut self.scratch);
        let mask = self.slots.len() - 1;
        let mut slot = (hash as usize) & mask;
        loop {
            let entry = self.slots[slot];
            if entry == 0 {
                break;
            }
            let i = entry as usize - 1;
            if self.hashes[i] == hash && self.entry(i) == self.scratch && &self.states[i] == state {
                return false;
            }
            slot = (slot + 1) & mask;
        }
        let index = self.states.len();
        assert!(index < u32::MAX as usize - 1, "memo table full");
        self.starts.push(self.arena.len());
        self.arena.extend_from_slice(&self.scratch);
        self.states.push(state.clone());
        self.hashes.push(hash);
        self.slots[slot] = index as u32 + 1;
        // Keep the load factor under one half.
        if self.states.len() * 2 > self.slots.len() {
            self.grow();
        }
        true
    }

    fn grow(&mut self) {
        let len = self.slots.len() * 2;
        let mask = len - 1;
        let mut slots = vec![0u32; len];
        for (i, &hash) in self.hashes.iter().enumerate() {
            let mut slot = (hash as usize) & mask;
            while slots[slot] != 0 {
                slot = (slot + 1) & mask;
            }
            slots[slot] = i as u32 + 1;
        }
        self.slots = slots;
    }
}

/// A small, fixed, multiply-rotate hasher (no random seed: deterministic).
#[derive(Debug, Default)]
pub(crate) struct MixHasher {
    state: u64,
}

const MIX_MULTIPLIER: u64 = 0x9E37_79B9_7F4A_7C15;

impl MixHasher {
    fn add(&mut self, word: u64) {
        self.state = (self.state.rotate_left(23) ^ word).wrapping_mul(MIX_MULTIPLIER);
    }
}

impl Hasher for MixHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            self.add(u64::from_le_bytes(word));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut word = [0u8; 8];
            word[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(word) ^ ((rest.len() as u64) << 56));
        }
    }

    fn write_u64(&mut self, word: u64) {
        self.add(word);
    }

    fn finish(&self) -> u64 {
        // Final avalanche so the low bits used for slots depend on all bits.
        let mut x = self.state;
        x ^= x >> 33;
        x = x.wrapping_mul(0xFF51_AFD7_ED55_8CCD);
        x ^= x >> 33;
        x
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set_of(required: &[bool], members: &[usize]) -> Linearized {
        let mut set = Linearized::new(required);
        for &m in members {
            set.insert(m);
        }
        set
    }

    #[test]
    fn equal_sets_reached_in_any_order_are_one_entry() {
        let required: Vec<bool> = (0..300).map(|i| i % 7 != 3).collect();
        let mut memo: MemoSet<Option<i64>> = MemoSet::new();
        let a = set_of(&required, &[0, 1, 2, 3, 200, 150]);
        let mut b = set_of(&required, &[150, 3, 2, 1, 0, 200, 299]);
        b.remove(299);
        assert!(memo.insert(&a, &Some(1)));
        assert!(!memo.insert(&b, &Some(1)));
        assert!(memo.insert(&b, &None));
        assert_eq!(memo.len(), 2);
    }

    #[test]
    fn sets_differing_anywhere_are_different_entries() {
        // Every subset of a few positions around a long linearized prefix
        // (optional operations inside the prefix, the window and beyond).
        let required: Vec<bool> = (0..260).map(|i| !matches!(i, 5 | 70 | 130)).collect();
        let positions = [5, 70, 128, 129, 130, 131, 200, 259];
        let mut memo: MemoSet<u8> = MemoSet::new();
        for mask in 0u32..(1 << positions.len()) {
            let mut members: Vec<usize> = (0..128).filter(|&i| i != 5 && i != 70).collect();
            for (bit, &p) in positions.iter().enumerate() {
                if mask & (1 << bit) != 0 {
                    members.push(p);
                }
            }
            assert!(memo.insert(&set_of(&required, &members), &0), "{mask:b}");
        }
        for mask in 0u32..(1 << positions.len()) {
            let mut members: Vec<usize> = (0..128).filter(|&i| i != 5 && i != 70).collect();
            for (bit, &p) in positions.iter().enumerate() {
                if mask & (1 << bit) != 0 {
                    members.push(p);
                }
            }
            members.reverse();
            assert!(!memo.insert(&set_of(&required, &members), &0), "{mask:b}");
        }
    }

    #[test]
    fn an_entry_costs_the_window_not_the_history() {
        // 100,000 required operations, all linearized up to 50,000 but one
        // window: the encoding is a header and two words.
        let required = vec![true; 100_000];
        let mut set = set_of(&required, &(0..50_000).collect::<Vec<_>>());
        set.insert(50_010);
        set.insert(50_070);
        let mut out = Vec::new();
        set.encode(&mut out);
        assert_eq!(out.len(), 3, "{out:?}");
    }

    #[test]
    fn first_open_tracks_the_lowest_open_required_operation() {
        let required = [true, false, true, true];
        let mut set = Linearized::new(&required);
        assert_eq!(set.first_open, 0);
        set.insert(0);
        assert_eq!(set.first_open, 2);
        set.insert(3);
        set.insert(2);
        assert_eq!(set.first_open, 4);
        set.remove(3);
        assert_eq!(set.first_open, 3);
        set.remove(0);
        assert_eq!(set.first_open, 0);
        assert!(set.contains(2) && !set.contains(1));
    }
}
