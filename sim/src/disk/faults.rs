//! `SimDiskFaults`: what a crash does to unsynced data and what goes wrong
//! between crashes, as probabilities a run or a test sets (the fault model
//! itself is described in `disk/mod.rs`).

/// What a crash does to unsynced data, and what goes wrong between
/// crashes. The default loses all unsynced data on a crash, tears nothing
/// and injects nothing else.
#[derive(Debug, Clone, PartialEq)]
pub struct SimDiskFaults {
    /// Probability that a file with unsynced changes keeps its current
    /// length across a crash rather than its durable one.
    pub unsynced_length_keep_probability: f64,
    /// Probability that a sector with unsynced changes keeps its new bytes
    /// (when not torn).
    pub unsynced_sector_keep_probability: f64,
    /// Probability that a sector with unsynced changes becomes garbage.
    pub torn_sector_probability: f64,
    /// Probability that an unsynced create, rename or remove survives a
    /// crash (each on its own); 0 undoes them all.
    pub unsynced_dir_op_keep_probability: f64,
    /// Probability that a read returns one flipped bit.
    pub read_bit_flip_probability: f64,
    /// Probability that a read fails with `Io`.
    pub read_error_probability: f64,
    /// Probability that a `sync` or `sync_dir` fails.
    pub sync_failure_probability: f64,
}

impl Default for SimDiskFaults {
    fn default() -> SimDiskFaults {
        SimDiskFaults {
            unsynced_length_keep_probability: 0.0,
            unsynced_sector_keep_probability: 0.0,
            torn_sector_probability: 0.0,
            unsynced_dir_op_keep_probability: 0.0,
            read_bit_flip_probability: 0.0,
            read_error_probability: 0.0,
            sync_failure_probability: 0.0,
        }
    }
}

impl SimDiskFaults {
    /// Crashes that keep some unsynced sectors and tear others: the harshest
    /// crash the contract allows. No faults between crashes.
    pub fn torn() -> SimDiskFaults {
        SimDiskFaults {
            unsynced_length_keep_probability: 0.5,
            unsynced_sector_keep_probability: 0.5,
            torn_sector_probability: 0.1,
            ..SimDiskFaults::default()
        }
    }

    /// [`Self::torn`] crashes that also lose or keep each unsynced
    /// directory operation.
    pub fn torn_with_lost_dir_ops() -> SimDiskFaults {
        SimDiskFaults {
            unsynced_dir_op_keep_probability: 0.5,
            ..SimDiskFaults::torn()
        }
    }

    pub(super) fn assert_valid(&self) {
        for (name, p) in [
            (
                "unsynced_length_keep_probability",
                self.unsynced_length_keep_probability,
            ),
            (
                "unsynced_sector_keep_probability",
                self.unsynced_sector_keep_probability,
            ),
            ("torn_sector_probability", self.torn_sector_probability),
            (
                "unsynced_dir_op_keep_probability",
                self.unsynced_dir_op_keep_probability,
            ),
            ("read_bit_flip_probability", self.read_bit_flip_probability),
            ("read_error_probability", self.read_error_probability),
            ("sync_failure_probability", self.sync_failure_probability),
        ] {
            assert!(
                (0.0..=1.0).contains(&p),
                "{name} = {p} is not a probability"
            );
        }
    }
}
