//! EnigmaDB's client workloads and nemesis schedules.
//!
//! A workload decides what clients ask for; a nemesis decides which faults
//! strike when. Both are pure functions of a seeded generator passed in, so
//! the simulator that drives them stays deterministic. Clients record what
//! they saw in the checker's [`History`](enigma_checker::History).
//!
//! # Modules
//!
//! - [`register`]: reads, writes and deletes over a handful of keys, each key
//!   an independent register; values are unique so the checker can tell
//!   writes apart.
//! - [`nemesis`]: the fault schedule: crashes and restarts, partitions of
//!   every shape, pauses, swizzle-clogging, clock jumps, bad reads, failed
//!   syncs, heals.

pub mod nemesis;
pub mod register;

pub use nemesis::{ClusterFaults, Fault, Nemesis, NemesisOptions, PartitionKind};
pub use register::{ClientResult, RegisterOptions, RegisterWorkload};
