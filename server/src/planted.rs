//! Planted bugs for real node processes: compiled only with the
//! `planted-bugs` cargo feature, which test builds turn on
//! (`cargo test --features planted-bugs --test chaos_planted`) and no
//! release build has.
//!
//! A node of such a build reads the environment variable
//! [`ACK_QUORUM_AFTER_ONE_ENV`]; set to `1`, it acknowledges `QUORUM`
//! writes after a single replica
//! (`NodeOptions::bug_ack_quorum_writes_after_one_replica`, the simulator's
//! `planted_bug`). `enigma chaos` must then report `not-linearizable`
//! against real processes, as the simulator does against simulated ones.
//! There is no command-line flag for it, and without the feature the
//! variable is never read.

use enigma_cluster::NodeOptions;

/// Set to `1` to acknowledge `QUORUM` writes after one replica.
pub const ACK_QUORUM_AFTER_ONE_ENV: &str = "ENIGMA_PLANTED_ACK_QUORUM_AFTER_ONE";

/// Turns on the planted bugs the environment asks for, and logs each one.
pub fn apply(options: &mut NodeOptions) {
    if std::env::var(ACK_QUORUM_AFTER_ONE_ENV).is_ok_and(|v| v == "1") {
        tracing::warn!("planted bug on: QUORUM writes are acknowledged after one replica");
        options.bug_ack_quorum_writes_after_one_replica = true;
    }
}
