//! EnigmaDB's deterministic simulator.
//!
//! Runs whole clusters of real [`Node`](enigma_cluster::Node)s on one
//! thread, in virtual time, with a simulated network, disks and clocks that
//! inject faults, then checks what the clients saw. One `u64` seed derives
//! every choice, so a failing run replays bit for bit from its seed; the
//! trace digest proves it.
//!
//! # Modules
//!
//! - [`config`]: what a run is; the command that replays it.
//! - [`run`]: one run: the event loop, the nodes, the clients, the nemesis
//!   driver, the heal phase and the checks, one file each.
//! - [`sweep`]: many seeds.
//! - [`disk`]: `SimDisk` and its fault model.
//! - [`net`]: `SimNet` and its fault model.
//! - [`clock`]: `SimClock` and its fault model.
//! - [`rng`]: named random streams of the seed.
//! - [`trace`]: the trace digest and timeline.
//! - [`recording`]: what a run's picture needs, collected when asked for.
//! - [`html`]: the picture of a run as one self-contained HTML page.
//! - [`marks`]: coverage marks over a sweep; the marks the CI sweep and
//!   the shaped sweeps must hit.
//! - [`schedule`]: a run's faults and operations as data, in a file.
//! - [`shrink`]: from a failing run to a smaller one failing the same way.

pub mod catalogue;
pub mod clock;
pub mod config;
pub mod disk;
pub mod html;
pub mod marks;
pub mod net;
pub mod recording;
pub mod rng;
pub mod run;
pub mod schedule;
pub mod shrink;
pub mod sweep;
pub mod trace;

pub use config::{SimConfig, SimWorkload};
pub use run::{run, run_recorded, RunReport, RunStats, Violation};
pub use sweep::{sweep, ConvergeTimes, SweepReport};
