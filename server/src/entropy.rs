//! Where the server draws its randomness: handshake nonces, the cluster
//! secret, reconnect jitter, the node's gossip seed.
//!
//! A real build asks the operating system. A `--cfg madsim` build (the
//! driver under simulated network and time, `server/tests/madsim.rs`) draws
//! from madsim's generator instead, which the simulation's seed fixes, so
//! that a seed replays the same run.

/// Fills `buf` with random bytes.
///
/// # Errors
/// The operating system has no randomness to give (real builds only).
pub fn fill(buf: &mut [u8]) -> Result<(), String> {
    #[cfg(not(madsim))]
    {
        getrandom::fill(buf).map_err(|e| e.to_string())
    }
    #[cfg(madsim)]
    {
        use madsim::rand::RngCore as _;
        madsim::rand::thread_rng().fill_bytes(buf);
        Ok(())
    }
}

/// A random `u64`.
///
/// # Errors
/// As [`fill`].
pub fn u64() -> Result<u64, String> {
    let mut bytes = [0u8; 8];
    fill(&mut bytes)?;
    Ok(u64::from_le_bytes(bytes))
}
