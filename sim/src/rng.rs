//! Named random streams derived from the run's one seed.
//!
//! Each component draws from its own stream, so adding a draw in one (say,
//! the network) does not shift the choices of another (say, the nemesis),
//! and a seed keeps meaning roughly the same run as the code evolves.

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use xxhash_rust::xxh3::xxh3_64_with_seed;

/// The generator of stream `name` of run `seed`.
pub fn stream(seed: u64, name: &str) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(xxh3_64_with_seed(name.as_bytes(), seed))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::Rng;

    #[test]
    fn streams_are_reproducible_and_independent() {
        let a: u64 = stream(5, "net").random();
        let b: u64 = stream(5, "net").random();
        let c: u64 = stream(5, "disk").random();
        let d: u64 = stream(6, "net").random();
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_ne!(a, d);
    }
}
