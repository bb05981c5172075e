//! The acceptor's ballot mark: a bound, kept in a file of its own, above
//! every ballot this node ever promised or accepted.
//!
//! Paxos acceptor state lives in the engine beside the data
//! (`node/serial.rs`), so a table lost to damage may take promises and
//! acceptances along, and a node rebuilt from its peers has none left.
//! Anti-entropy brings back the data, not what an acceptor promised. An
//! acceptor that forgot a promise could accept a lower ballot it had
//! promised to refuse, and one that forgot an acceptance could answer a
//! prepare with "nothing accepted" for a value that was chosen: either
//! lets two values be chosen. So when a range loses data, the node takes
//! the mark as that range's Paxos floor ([`crate::damage`]), and its
//! acceptor for a key of the range ([`crate::paxos::AcceptorState::after_loss`])
//!
//! - takes no part in a ballot at or below the floor (every forgotten
//!   promise is at or below it);
//! - answers no prepare until it holds a record of the key above the
//!   floor (an acceptance or a commit): until then its promise would hide
//!   acceptances it forgot, so a proposer gathers its majority from the
//!   other replicas, whose answers include every value that may have been
//!   chosen;
//! - accepts proposals above the floor: a proposer that got that far
//!   heard from a majority that kept what it promised.
//!
//! The mark cannot live in the engine: it must survive what the engine
//! loses. It is raised before a promise or acceptance of a ballot above it
//! leaves, to that ballot's reading plus [`RESERVE_NANOS`] of clock, so
//! the file is written about once per reserve while Paxos is busy rather
//! than once per ballot. The price of the reserve: after a loss, the node
//! sits out ballots drawn up to that much later than the last it saw.
//!
//! File `node.ballots`, laid out and replaced as [`crate::word_file`] says.
//! A node rebuilt from its peers keeps it, as it keeps its generation.
//! Absent, the mark is 0: the node never promised a ballot (a directory
//! written by a build from before the file is covered from its first
//! promise on).

use enigma_engine::{Disk, EngineError};

use crate::hlc::HlcClock;
use crate::paxos::Ballot;
use crate::word_file;

/// The file.
pub const FILE: &str = "node.ballots";
/// Where a new mark is written before it is renamed over [`FILE`].
const TEMP: &str = "node.ballots.tmp";
/// How far above a ballot's reading the mark is raised.
pub const RESERVE_NANOS: u64 = 1_000_000_000;

/// The mark on `disk`: 0 if there is none. Changes nothing.
///
/// # Errors
/// Disk errors; a damaged file (corruption naming it).
pub fn load<D: Disk>(disk: &D) -> Result<u64, EngineError> {
    Ok(word_file::read(disk, FILE)?.unwrap_or(0))
}

/// Makes `mark` the durable mark on `disk`.
///
/// # Errors
/// Disk errors (the old mark then stands).
pub fn store<D: Disk>(disk: &D, mark: u64) -> Result<(), EngineError> {
    word_file::store(disk, FILE, TEMP, mark)
}

/// The mark to store before a ballot read `hlc` may be promised or
/// accepted; `None` if `mark` already covers it.
pub fn raised(mark: u64, hlc: u64) -> Option<u64> {
    (hlc > mark).then(|| hlc.saturating_add(HlcClock::physical(RESERVE_NANOS)))
}

/// The floor a mark stands for: at or above every ballot whose reading is
/// at or below it.
pub fn floor(mark: u64) -> Ballot {
    Ballot {
        hlc: mark,
        node: u32::MAX,
        generation: u64::MAX,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mark_is_raised_with_a_reserve_only_past_it() {
        assert_eq!(raised(100, 100), None);
        assert_eq!(raised(100, 50), None);
        let reserve = HlcClock::physical(RESERVE_NANOS);
        assert_eq!(raised(100, 101), Some(101 + reserve));
        assert_eq!(raised(0, u64::MAX), Some(u64::MAX));
        let ballot = Ballot {
            hlc: 100,
            node: 7,
            generation: 9,
        };
        assert!(ballot <= floor(100));
        assert!(Ballot { hlc: 101, ..ballot } > floor(100));
    }

    #[test]
    fn the_mark_survives_a_store_and_load_and_damage_is_detected() {
        let dir = tempfile::tempdir().expect("tempdir");
        let disk = enigma_engine::FsDisk::open(dir.path()).expect("disk");
        assert_eq!(load(&disk).expect("absent"), 0);
        store(&disk, 42).expect("store");
        assert_eq!(load(&disk).expect("read"), 42);
        store(&disk, 43).expect("store");
        assert_eq!(load(&disk).expect("read"), 43);
        let path = dir.path().join(FILE);
        let mut bytes = std::fs::read(&path).expect("read");
        bytes[0] ^= 1;
        std::fs::write(&path, bytes).expect("write");
        assert!(load(&disk).is_err());
    }
}
