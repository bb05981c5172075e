//! The bloom filter block: lets a point read skip a table without reading a
//! data block.
//!
//! # Layout (the contents, before framing)
//!
//! ```text
//! probes u8 (1..=PROBES_MAX) | bit array (at least 8 bytes)
//! ```
//!
//! Bit `i` is bit `i % 8` of byte `i / 8`. A key sets the bits
//! `(h1 + j * h2) mod bits` for `j` in `0..probes`, where `h1` and `h2` are
//! the low and high 32 bits of xxh3-64 of the key, seed 0 (double hashing).
//!
//! This is our own filter on purpose, and its bits are part of the file
//! format: the hash function, seed and probe sequence must never change
//! under existing tables (a library upgrade that changed them would make
//! every filter answer "absent" for keys that are present). Change them only
//! with a new format version.

use xxhash_rust::xxh3::xxh3_64;

use crate::error::EngineError;
use crate::sstable::corruption;

/// Most probes a filter may ask for.
const PROBES_MAX: u8 = 30;
/// Smallest bit array, so tiny tables still filter.
const BITS_MIN: usize = 64;

/// Collects key hashes while a table is written.
#[derive(Debug, Default)]
pub(crate) struct BloomBuilder {
    hashes: Vec<u64>,
}

/// The hash a filter is built from and probed with: computed once per
/// point read and used for every table.
pub(crate) fn key_hash(key: &[u8]) -> u64 {
    xxh3_64(key)
}

/// The bit positions `hash` sets in an array of `bits` bits.
fn probes(hash: u64, probes_total: u8, bits: usize) -> impl Iterator<Item = usize> {
    let h1 = hash as u32;
    let h2 = (hash >> 32) as u32;
    (0..u32::from(probes_total)).map(move |j| {
        let position = h1.wrapping_add(j.wrapping_mul(h2));
        position as usize % bits
    })
}

/// Probes that minimise false positives for `bits_per_key`: about
/// `bits_per_key * ln 2`.
fn probes_for(bits_per_key: u32) -> u8 {
    let probes = (u64::from(bits_per_key) * 69 / 100).clamp(1, u64::from(PROBES_MAX));
    u8::try_from(probes).expect("clamped to PROBES_MAX")
}

impl BloomBuilder {
    pub(crate) fn new() -> BloomBuilder {
        BloomBuilder::default()
    }

    pub(crate) fn add(&mut self, key: &[u8]) {
        self.hashes.push(key_hash(key));
    }

    /// The block contents for every key added.
    pub(crate) fn finish(&self, bits_per_key: u32) -> Vec<u8> {
        assert!(bits_per_key >= 1, "options validate bits_per_key");
        let bits = (self.hashes.len() * bits_per_key as usize)
            .max(BITS_MIN)
            .next_multiple_of(8);
        let probes_total = probes_for(bits_per_key);
        let mut contents = vec![0_u8; 1 + bits / 8];
        contents[0] = probes_total;
        for &hash in &self.hashes {
            for bit in probes(hash, probes_total, bits) {
                contents[1 + bit / 8] |= 1 << (bit % 8);
            }
        }
        contents
    }
}

/// A decoded filter.
#[derive(Debug, Clone)]
pub(crate) struct Bloom {
    probes_total: u8,
    bits: Vec<u8>,
    /// `x mod bits` for a 32-bit `x`, by multiplications rather than a
    /// division per probe.
    modulus: FastMod,
}

/// Remainders by a fixed divisor of 32-bit numbers, computed with two
/// multiplications (Lemire, Kaser and Kurz, "Faster remainder by direct
/// computation", 2019): exact for every `u32` numerator and divisor.
#[derive(Debug, Clone, Copy)]
struct FastMod {
    divisor: u64,
    /// `ceil(2^64 / divisor)`, wrapped (0 for a divisor of 1).
    multiplier: u64,
}

impl FastMod {
    /// # Panics
    /// If `divisor` is 0 or over `u32::MAX` (callers check).
    fn new(divisor: u64) -> FastMod {
        assert!((1..=u64::from(u32::MAX)).contains(&divisor));
        FastMod {
            divisor,
            multiplier: (u64::MAX / divisor).wrapping_add(1),
        }
    }

    fn remainder(self, value: u32) -> u64 {
        let low = self.multiplier.wrapping_mul(u64::from(value));
        ((u128::from(low) * u128::from(self.divisor)) >> 64) as u64
    }
}

impl Bloom {
    /// # Errors
    /// `Corruption` naming `file` and `offset` for a malformed filter.
    pub(crate) fn decode(contents: &[u8], file: &str, offset: u64) -> Result<Bloom, EngineError> {
        let Some((&probes_total, bits)) = contents.split_first() else {
            return Err(corruption(file, offset, "empty bloom block"));
        };
        if probes_total == 0 || probes_total > PROBES_MAX || bits.len() < BITS_MIN / 8 {
            return Err(corruption(
                file,
                offset,
                format!(
                    "bloom block with {probes_total} probes and {} bytes of bits",
                    bits.len()
                ),
            ));
        }
        // A 32-bit probe position is its own remainder by a larger array.
        let bit_count = (bits.len() as u64 * 8).min(u64::from(u32::MAX));
        Ok(Bloom {
            probes_total,
            bits: bits.to_vec(),
            modulus: FastMod::new(bit_count),
        })
    }

    /// `false` only if the key is certainly absent.
    #[cfg(test)]
    pub(crate) fn may_contain(&self, key: &[u8]) -> bool {
        self.may_contain_hash(key_hash(key))
    }

    /// [`Self::may_contain`] for a key of [`key_hash`] `hash`: the bits of
    /// [`probes`], each remainder taken with [`FastMod`].
    pub(crate) fn may_contain_hash(&self, hash: u64) -> bool {
        let h1 = hash as u32;
        let h2 = (hash >> 32) as u32;
        (0..u32::from(self.probes_total)).all(|j| {
            let position = h1.wrapping_add(j.wrapping_mul(h2));
            let bit = if self.bits.len() as u64 * 8 > u64::from(u32::MAX) {
                u64::from(position)
            } else {
                self.modulus.remainder(position)
            };
            self.bits[(bit / 8) as usize] & (1 << (bit % 8)) != 0
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filter(keys: impl Iterator<Item = Vec<u8>>, bits_per_key: u32) -> Bloom {
        let mut builder = BloomBuilder::new();
        for key in keys {
            builder.add(&key);
        }
        Bloom::decode(&builder.finish(bits_per_key), "t", 0).expect("decode")
    }

    #[test]
    fn no_false_negatives() {
        let bloom = filter((0..1000_u32).map(|i| i.to_le_bytes().to_vec()), 10);
        assert!((0..1000_u32).all(|i| bloom.may_contain(&i.to_le_bytes())));
    }

    #[test]
    fn false_positive_rate_is_within_bound() {
        // 10 bits per key and 6 probes give about 0.8% in theory.
        let bloom = filter((0..10_000_u32).map(|i| format!("key-{i}").into_bytes()), 10);
        let probes_total = 100_000;
        let false_positives = (0..probes_total)
            .filter(|i| bloom.may_contain(format!("absent-{i}").as_bytes()))
            .count();
        let rate = false_positives as f64 / f64::from(probes_total);
        assert!(rate < 0.02, "false positive rate {rate}");
        assert!(
            false_positives > 0,
            "a filter this small must err sometimes"
        );
    }

    #[test]
    fn filter_bits_are_stable() {
        // Pins the on-disk bits: if this changes, existing tables break.
        let mut builder = BloomBuilder::new();
        builder.add(b"enigma");
        let contents = builder.finish(10);
        let set: Vec<usize> = (0..64)
            .filter(|b| contents[1 + b / 8] & (1 << (b % 8)) != 0)
            .collect();
        assert_eq!(contents[0], 6);
        assert_eq!(set, EXPECTED_BITS);
    }

    /// Recorded when format version 1 was written; it must never change.
    const EXPECTED_BITS: &[usize] = &[37, 42, 47, 52, 57, 62];

    proptest::proptest! {
        #[test]
        fn fast_remainder_is_the_remainder(value in proptest::prelude::any::<u32>(), divisor in 1..=u32::MAX) {
            let fast = FastMod::new(u64::from(divisor)).remainder(value);
            proptest::prop_assert_eq!(fast, u64::from(value % divisor));
        }
    }

    #[test]
    fn fast_remainder_edges() {
        for divisor in [1_u32, 2, 3, 7, 64, 1000, 1 << 31, u32::MAX - 1, u32::MAX] {
            let modulus = FastMod::new(u64::from(divisor));
            for value in [
                0,
                1,
                divisor - 1,
                divisor,
                divisor.wrapping_add(1),
                u32::MAX,
            ] {
                assert_eq!(modulus.remainder(value), u64::from(value % divisor));
            }
        }
    }

    #[test]
    fn probes_answer_as_the_bit_positions_the_format_defines() {
        // The reader's fast remainders must test exactly the bits `probes`
        // names (the ones the writer sets), for present and absent keys.
        let keys: Vec<Vec<u8>> = (0..3000_u32).map(|i| i.to_be_bytes().to_vec()).collect();
        for bits_per_key in [1, 3, 10, 13] {
            let bloom = filter(keys.iter().cloned(), bits_per_key);
            let bit_count = bloom.bits.len() * 8;
            let mut answers = [0_usize; 2];
            for i in 0..20_000_u32 {
                let hash = key_hash(&i.to_be_bytes());
                let reference = probes(hash, bloom.probes_total, bit_count)
                    .all(|bit| bloom.bits[bit / 8] & (1 << (bit % 8)) != 0);
                assert_eq!(bloom.may_contain_hash(hash), reference, "key {i}");
                answers[usize::from(reference)] += 1;
            }
            assert!(answers[0] > 0 && answers[1] >= 3000, "{answers:?}");
        }
    }

    #[test]
    fn malformed_filter_is_corruption() {
        assert!(Bloom::decode(&[], "t", 0).is_err());
        assert!(Bloom::decode(&[0; 9], "t", 0).is_err());
        assert!(Bloom::decode(&[31; 9], "t", 0).is_err());
        assert!(Bloom::decode(&[3; 4], "t", 0).is_err());
    }
}
