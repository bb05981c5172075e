//! Damage: which of this node's repair ranges lost data to a quarantined
//! table, and when they may be served again.
//!
//! When the engine confirms a table damaged, the node records, for each
//! range it replicates, the HLC reading at which it learned of the loss
//! ([`Damage::mark`]), makes that record durable, and only then lets the
//! engine quarantine the table. From then on, for a damaged range, the
//! node
//!
//! - answers reads (data, digest, Paxos state) as a failed replica: what
//!   its remaining tables hold may miss acknowledged writes, and counting
//!   it toward a quorum could lose them; the coordinator uses the other
//!   replicas;
//! - holds tombstone purging (the gate sees the range as never repaired):
//!   a tombstone it still holds may be all that hides a value a peer
//!   streams back;
//! - keeps accepting writes (they only add to what it holds).
//!
//! - drops, once the table is quarantined, every version its remaining
//!   tables and memtables hold of the damaged ranges ([`Damage::stale`]),
//!   and takes no part in anti-entropy until it has. The lost table may
//!   have held a tombstone that peers have since purged (a repair that
//!   started after it completed everywhere), over an older version that
//!   survives in another table: pushed to the peers, that version would
//!   come back from the dead. Nothing local tells such a version from a
//!   live one, so all of them go, without tombstones (a tombstone would
//!   delete live copies at the peers), and the repair below refills the
//!   range from the peers, as it refills a rebuilt node. The drop is one
//!   pass over everything stored, in the step that records the loss.
//!
//! A range is served again once an anti-entropy session of it, on every
//! replica, that *started after* the mark completed ([`Damage::repaired`]):
//! that session compared this node's trees built after the loss, so it
//! left this node holding every version its peers held. "Started after"
//! is judged by HLC readings: a session's start reading comes from its
//! initiator, and this node's clock had observed it before this node took
//! part, so a session that began before the mark carries a reading below
//! the mark, and a reading above the mark (from any initiator) began after.
//!
//! A node rebuilt from its peers (its data directory wiped after damage a
//! start must read) starts with every range marked ([`Damage::all`]).
//!
//! A damaged range also gets a Paxos floor: the node's ballot mark when
//! the loss was recorded ([`crate::ballot_mark`]), at or above every ballot
//! its acceptor promised or accepted before, some of which it may have
//! forgotten. Repair does not lift it: anti-entropy brings back data, not
//! promises. It stays (raised by each later loss), and the acceptor keeps
//! to it key by key until the key holds a record above it.
//!
//! The record survives restarts (file `node.damage`, docs/FORMAT.md), so a
//! node that crashed after the quarantine still refuses the ranges until
//! they are repaired. The node also seeds its clock above every mark it
//! ever recorded ([`Damage::clock_floor`], kept after the repair), so that
//! a clock mark lost with the table, or a version of its own stamp
//! dropped with the stale data and never refilled (it reached no peer),
//! does not let it stamp below what it issued before.

use enigma_engine::{Disk, DiskError, DiskFile, EngineError};

/// The durable record's file.
pub const DAMAGE_FILE: &str = "node.damage";
/// Where the record is written before it is renamed over [`DAMAGE_FILE`].
const DAMAGE_TEMP: &str = "node.damage.tmp";
/// Format version of the record (version 1 had no floors, version 2 no
/// flags, version 3 no clock floor).
const DAMAGE_FORMAT_VERSION: u32 = 4;
/// Bytes of the record's header: version, range count, flags and clock
/// floor.
const HEADER_BYTES: usize = 20;
/// Bytes of the header of a version 3 record: version, range count, flags.
const HEADER_BYTES_V3: usize = 12;
/// Bytes of the header of a version 1 or 2 record: version and range count.
const HEADER_BYTES_V2: usize = 8;
/// Flag: data from before the latest loss may remain ([`Damage::stale`]).
const FLAG_STALE: u32 = 1;
/// Bytes per range: the mark (0: not damaged) and the Paxos floor (0:
/// none).
const RANGE_BYTES: usize = 16;
/// Bytes per range of a version 1 record: the mark.
const RANGE_BYTES_V1: usize = 8;
/// Bytes of the trailing checksum.
const CRC_BYTES: usize = 4;
/// Most repair ranges a record holds (bounds what a length read from disk
/// may make the node allocate).
pub const DAMAGE_RANGES_MAX: usize = 1 << 20;
/// The mark of a range damaged since before this start, to be resolved to
/// the clock's reading at start ([`Damage::resolve_since_start`]): a
/// rebuilt node's record is written before it has a clock.
pub const MARK_SINCE_START: u64 = u64::MAX;

/// Per repair range, the HLC reading at which the range lost data, until
/// a repair that started after it completed, and the Paxos floor the loss
/// left, for good.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Damage {
    /// By repair range index: `None` while intact.
    since_hlc: Vec<Option<u64>>,
    /// By repair range index: the ballot mark at the latest loss (0: no
    /// loss, or none of a node that never promised a ballot), or
    /// [`MARK_SINCE_START`] until resolved at start.
    floor: Vec<u64>,
    /// Whether the node may still hold data of the damaged ranges from
    /// before the latest loss, to be dropped before any of it leaves.
    stale: bool,
    /// The highest resolved mark ever recorded, kept after the repair.
    clock_floor: u64,
}

impl Damage {
    /// No range damaged, over `ranges` repair ranges.
    pub fn intact(ranges: usize) -> Self {
        Self {
            since_hlc: vec![None; ranges],
            floor: vec![0; ranges],
            stale: false,
            clock_floor: 0,
        }
    }

    /// Every range damaged since this start (a node rebuilt from nothing,
    /// or one whose tables were lost with no record of it), its floors the
    /// ballot mark found at start, and whatever it still holds stale.
    pub fn all(ranges: usize) -> Self {
        Self {
            since_hlc: vec![Some(MARK_SINCE_START); ranges],
            floor: vec![MARK_SINCE_START; ranges],
            stale: true,
            clock_floor: 0,
        }
    }

    /// Whether the node may still hold data of the damaged ranges from
    /// before the latest loss. Until [`Self::dropped`], it must not send
    /// any of it to a peer, and no repair counts.
    pub fn stale(&self) -> bool {
        self.stale
    }

    /// Raises the clock floor to `hlc` (a reading at or above every
    /// stamp the node issued); returns whether it rose.
    pub fn raise_clock_floor(&mut self, hlc: u64) -> bool {
        let rose = hlc > self.clock_floor;
        self.clock_floor = self.clock_floor.max(hlc);
        rose
    }

    /// Notes that every version of the damaged ranges held at the latest
    /// loss is dropped.
    pub fn dropped(&mut self) {
        self.stale = false;
    }

    /// Marks the ranges `ranges` damaged as of `hlc`, with the node's
    /// ballot mark `ballot_mark` as their Paxos floor (a range already
    /// damaged takes the later mark and the higher floor: the new loss
    /// needs a repair that started after it too, and may have taken later
    /// promises).
    ///
    /// # Panics
    /// If a range index is out of bounds.
    pub fn mark(&mut self, ranges: &[usize], hlc: u64, ballot_mark: u64) {
        self.stale |= !ranges.is_empty();
        if !ranges.is_empty() && hlc != MARK_SINCE_START {
            self.clock_floor = self.clock_floor.max(hlc);
        }
        for &range in ranges {
            let since = &mut self.since_hlc[range];
            *since = Some(since.map_or(hlc, |old| old.max(hlc)));
            let floor = &mut self.floor[range];
            *floor = (*floor).max(ballot_mark);
        }
    }

    /// Clears every range but `ranges` (the ones this node replicates:
    /// it holds no data of the others, so nothing there is lost).
    pub fn keep_only(&mut self, ranges: &[usize]) {
        for (range, since) in self.since_hlc.iter_mut().enumerate() {
            if !ranges.contains(&range) {
                *since = None;
                self.floor[range] = 0;
            }
        }
    }

    /// Replaces the floors of a rebuilt node's record (or of a record
    /// written before floors existed) with `ballot_mark`, the mark found
    /// at start: at or above every ballot the node promised before.
    pub fn resolve_floors(&mut self, ballot_mark: u64) {
        for floor in &mut self.floor {
            if *floor == MARK_SINCE_START {
                *floor = ballot_mark;
            }
        }
    }

    /// The Paxos floor of `range`, as a ballot mark; `None` if the range
    /// never lost data (or lost it before the node promised any ballot).
    pub fn floor(&self, range: usize) -> Option<u64> {
        self.floor.get(range).copied().filter(|&floor| floor != 0)
    }

    /// Replaces the marks a rebuilt node's record carries
    /// ([`MARK_SINCE_START`]) with `hlc`, its clock's reading at start.
    pub fn resolve_since_start(&mut self, hlc: u64) {
        for since in self.since_hlc.iter_mut().flatten() {
            if *since == MARK_SINCE_START {
                *since = hlc;
                self.clock_floor = self.clock_floor.max(hlc);
            }
        }
    }

    /// Whether a mark waits for [`Self::resolve_since_start`].
    pub fn has_unresolved(&self) -> bool {
        self.since_hlc.contains(&Some(MARK_SINCE_START))
    }

    /// Notes that a session of `range` that started at `started_hlc`
    /// completed on every replica. Returns whether the range is intact
    /// again (it was damaged, and the session started after the mark).
    pub fn repaired(&mut self, range: usize, started_hlc: u64) -> bool {
        if self.stale {
            // The session compared data the loss may have made stale.
            return false;
        }
        match self.since_hlc.get(range).copied().flatten() {
            Some(since) if started_hlc > since => {
                self.since_hlc[range] = None;
                true
            }
            _ => false,
        }
    }

    /// Whether `range` lost data not yet repaired.
    pub fn is_damaged(&self, range: usize) -> bool {
        self.since_hlc.get(range).is_some_and(Option::is_some)
    }

    /// Whether any range lost data not yet repaired.
    pub fn any(&self) -> bool {
        self.since_hlc.iter().any(Option::is_some)
    }

    /// Ranges damaged now.
    pub fn damaged_total(&self) -> usize {
        self.since_hlc
            .iter()
            .filter(|since| since.is_some())
            .count()
    }

    /// The highest mark ever recorded (resolved marks only), repaired or
    /// not, or a reading raised above it ([`Self::raise_clock_floor`]),
    /// for seeding the clock: 0 if none.
    pub fn clock_floor(&self) -> u64 {
        self.clock_floor
    }

    /// Its bytes: version u32 | range count u32 | flags u32 (bit 0:
    /// stale) | clock floor u64 | per range the mark u64 (0: intact) and
    /// the floor u64 (0: none) | CRC32 of everything before, all
    /// little-endian.
    pub fn encode(&self) -> Vec<u8> {
        let count = u32::try_from(self.since_hlc.len()).expect("ranges are bounded");
        let mut bytes =
            Vec::with_capacity(HEADER_BYTES + RANGE_BYTES * self.since_hlc.len() + CRC_BYTES);
        bytes.extend_from_slice(&DAMAGE_FORMAT_VERSION.to_le_bytes());
        bytes.extend_from_slice(&count.to_le_bytes());
        let flags = if self.stale { FLAG_STALE } else { 0 };
        bytes.extend_from_slice(&flags.to_le_bytes());
        bytes.extend_from_slice(&self.clock_floor.to_le_bytes());
        for (since, floor) in self.since_hlc.iter().zip(&self.floor) {
            bytes.extend_from_slice(&since.unwrap_or(0).to_le_bytes());
            bytes.extend_from_slice(&floor.to_le_bytes());
        }
        let crc = crc32fast::hash(&bytes);
        bytes.extend_from_slice(&crc.to_le_bytes());
        bytes
    }

    /// The record `bytes` hold, over `ranges` repair ranges; a record of
    /// another range count (a changed ring) marks every range, with its
    /// highest mark and floor. A version 1 record (no floors) gives every
    /// damaged range a floor to resolve at start; a version 1 or 2 record
    /// (no flags) with a damaged range is taken as stale (the node that
    /// wrote it dropped nothing).
    ///
    /// # Errors
    /// Why the bytes are not a record.
    pub fn decode(bytes: &[u8], ranges: usize) -> Result<Self, String> {
        if bytes.len() < HEADER_BYTES_V2 + CRC_BYTES {
            return Err(format!("{} bytes, shorter than a record", bytes.len()));
        }
        let (body, crc) = bytes.split_at(bytes.len() - CRC_BYTES);
        let expected = u32::from_le_bytes(crc.try_into().expect("split leaves 4 bytes"));
        let got = crc32fast::hash(body);
        if got != expected {
            return Err(format!(
                "checksum mismatch: expected {expected:#010x}, got {got:#010x}"
            ));
        }
        let word = |at: usize| u32::from_le_bytes(body[at..at + 4].try_into().expect("4 bytes"));
        let version = word(0);
        let (header_bytes, range_bytes) = match version {
            1 => (HEADER_BYTES_V2, RANGE_BYTES_V1),
            2 => (HEADER_BYTES_V2, RANGE_BYTES),
            3 if body.len() >= HEADER_BYTES_V3 => (HEADER_BYTES_V3, RANGE_BYTES),
            DAMAGE_FORMAT_VERSION if body.len() >= HEADER_BYTES => (HEADER_BYTES, RANGE_BYTES),
            3 | DAMAGE_FORMAT_VERSION => {
                return Err(format!("{} bytes, shorter than a header", body.len()))
            }
            _ => return Err(format!("unknown format version {version}")),
        };
        let count = word(4) as usize;
        if count > DAMAGE_RANGES_MAX || body.len() != header_bytes + range_bytes * count {
            return Err(format!("{count} ranges in {} bytes", body.len()));
        }
        let flags = if version >= 3 { word(8) } else { 0 };
        let stored_clock_floor = if version == DAMAGE_FORMAT_VERSION {
            u64::from_le_bytes(body[12..20].try_into().expect("8 bytes"))
        } else {
            0
        };
        if flags & !FLAG_STALE != 0 {
            return Err(format!("unknown flags {flags:#x}"));
        }
        let u64_at = |chunk: &[u8], at: usize| {
            u64::from_le_bytes(chunk[at..at + 8].try_into().expect("8 bytes"))
        };
        let mut since_hlc = Vec::with_capacity(count);
        let mut floor = Vec::with_capacity(count);
        for chunk in body[header_bytes..].chunks_exact(range_bytes) {
            let since = u64_at(chunk, 0);
            since_hlc.push((since != 0).then_some(since));
            floor.push(match version {
                1 if since != 0 => MARK_SINCE_START,
                1 => 0,
                _ => u64_at(chunk, 8),
            });
        }
        let stale = if version >= 3 {
            flags & FLAG_STALE != 0
        } else {
            since_hlc.iter().any(Option::is_some)
        };
        let clock_floor = since_hlc
            .iter()
            .flatten()
            .copied()
            .filter(|&since| since != MARK_SINCE_START)
            .fold(stored_clock_floor, u64::max);
        if since_hlc.len() == ranges {
            return Ok(Self {
                since_hlc,
                floor,
                stale,
                clock_floor,
            });
        }
        Ok(Self {
            since_hlc: vec![since_hlc.iter().flatten().max().copied(); ranges],
            floor: vec![floor.iter().copied().max().unwrap_or(0); ranges],
            stale,
            clock_floor,
        })
    }
}

/// The record on `disk`, over `ranges` repair ranges; intact if there is
/// none. Changes nothing.
///
/// # Errors
/// Disk errors; a damaged record (corruption naming the file).
pub fn load<D: Disk>(disk: &D, ranges: usize) -> Result<Damage, EngineError> {
    let file = match disk.open(DAMAGE_FILE) {
        Ok(file) => file,
        Err(DiskError::NotFound { .. }) => return Ok(Damage::intact(ranges)),
        Err(err) => return Err(err.into()),
    };
    let len = file.len()?;
    let bytes_max = (HEADER_BYTES + RANGE_BYTES * DAMAGE_RANGES_MAX + CRC_BYTES) as u64;
    if len > bytes_max {
        return Err(EngineError::Corruption {
            file: DAMAGE_FILE.to_owned(),
            offset: 0,
            reason: format!("{len} bytes, over the largest record"),
        });
    }
    let mut bytes = vec![0; usize::try_from(len).expect("bounded above")];
    file.read_at(0, &mut bytes)?;
    Damage::decode(&bytes, ranges).map_err(|reason| EngineError::Corruption {
        file: DAMAGE_FILE.to_owned(),
        offset: 0,
        reason,
    })
}

/// Makes `damage` the durable record on `disk`: written to a temporary
/// file, synced, renamed over the record, directory synced.
///
/// # Errors
/// Disk errors (the old record, or none, then stands).
pub fn store<D: Disk>(disk: &D, damage: &Damage) -> Result<(), EngineError> {
    match disk.remove(DAMAGE_TEMP) {
        Ok(()) | Err(DiskError::NotFound { .. }) => {}
        Err(err) => return Err(err.into()),
    }
    let mut file = disk.create(DAMAGE_TEMP)?;
    file.write_at(0, &damage.encode())?;
    file.sync()?;
    disk.rename(DAMAGE_TEMP, DAMAGE_FILE)?;
    disk.sync_dir()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_range_is_intact_again_only_after_a_repair_that_started_after_its_mark() {
        let mut damage = Damage::intact(4);
        damage.mark(&[1, 2], 100, 0);
        assert!(damage.is_damaged(1) && damage.is_damaged(2));
        assert!(!damage.is_damaged(0));
        assert!(damage.stale());
        assert!(
            !damage.repaired(1, 101),
            "the stale data is not yet dropped"
        );
        damage.dropped();
        assert!(!damage.repaired(1, 90), "started before the loss");
        assert_eq!(damage.clock_floor(), 100);
        assert!(!damage.repaired(1, 100), "started at the mark");
        assert!(damage.repaired(1, 101));
        assert!(!damage.is_damaged(1));
        assert!(!damage.repaired(0, 500), "was never damaged");
        assert_eq!(damage.damaged_total(), 1);
        assert!(damage.repaired(2, 101));
        assert!(!damage.any());
        assert_eq!(
            damage.clock_floor(),
            100,
            "the clock stays above the loss after the repair"
        );
        let read = Damage::decode(&damage.encode(), 4).expect("a record");
        assert_eq!(read.clock_floor(), 100);
        assert!(damage.raise_clock_floor(150));
        assert!(!damage.raise_clock_floor(120), "never lowered");
        assert_eq!(damage.clock_floor(), 150);
    }

    #[test]
    fn a_second_loss_needs_a_repair_that_started_after_it() {
        let mut damage = Damage::intact(1);
        damage.mark(&[0], 100, 0);
        damage.mark(&[0], 200, 0);
        damage.mark(&[0], 150, 0);
        damage.dropped();
        assert!(!damage.repaired(0, 180));
        assert!(damage.repaired(0, 201));
    }

    #[test]
    fn a_floor_outlives_the_repair_and_rises_with_each_loss() {
        let mut damage = Damage::intact(3);
        assert_eq!(damage.floor(1), None);
        damage.mark(&[1], 100, 5_000);
        assert_eq!(damage.floor(1), Some(5_000));
        damage.dropped();
        assert!(damage.repaired(1, 101));
        assert_eq!(
            damage.floor(1),
            Some(5_000),
            "repair brings data back, not promises"
        );
        damage.mark(&[1, 2], 200, 4_000);
        assert_eq!(damage.floor(1), Some(5_000), "never lowered");
        assert_eq!(damage.floor(2), Some(4_000));
        assert_eq!((0..3).filter(|&r| damage.floor(r).is_some()).count(), 2);
        damage.keep_only(&[2]);
        assert_eq!(damage.floor(1), None);
        let read = Damage::decode(&damage.encode(), 3).expect("a record");
        assert_eq!(read, damage);
    }

    /// A record of an older format `version` (8-byte header) over `ranges`
    /// ranges, its per-range words `words`, with its checksum.
    fn old_record(version: u32, ranges: u32, words: &[u64]) -> Vec<u8> {
        let mut bytes = Vec::new();
        bytes.extend_from_slice(&version.to_le_bytes());
        bytes.extend_from_slice(&ranges.to_le_bytes());
        for word in words {
            bytes.extend_from_slice(&word.to_le_bytes());
        }
        let crc = crc32fast::hash(&bytes);
        bytes.extend_from_slice(&crc.to_le_bytes());
        bytes
    }

    #[test]
    fn a_record_without_floors_gets_them_resolved_at_start() {
        // Version 1: a mark per range, no floor.
        let bytes = old_record(1, 2, &[0, 77]);
        let mut damage = Damage::decode(&bytes, 2).expect("a version 1 record");
        assert!(!damage.is_damaged(0) && damage.is_damaged(1));
        assert!(damage.stale(), "its writer dropped nothing");
        damage.resolve_floors(9_000);
        assert_eq!((damage.floor(0), damage.floor(1)), (None, Some(9_000)));
        let mut rebuilt = Damage::all(2);
        rebuilt.resolve_floors(9_000);
        assert_eq!(
            (rebuilt.floor(0), rebuilt.floor(1)),
            (Some(9_000), Some(9_000))
        );
    }

    #[test]
    fn a_rebuilt_node_is_damaged_everywhere_from_its_start() {
        let mut damage = Damage::all(3);
        assert_eq!(damage.damaged_total(), 3);
        assert_eq!(damage.clock_floor(), 0, "no reading yet");
        damage.resolve_since_start(700);
        assert!(
            damage.stale(),
            "what it holds, if anything, is dropped first"
        );
        damage.dropped();
        assert!(!damage.repaired(2, 650));
        assert!(damage.repaired(2, 701));
        assert_eq!(damage.clock_floor(), 700);
    }

    #[test]
    fn the_record_round_trips_and_damage_to_it_is_detected() {
        let mut damage = Damage::intact(5);
        damage.mark(&[0, 4], 42, 0);
        let bytes = damage.encode();
        assert_eq!(Damage::decode(&bytes, 5), Ok(damage.clone()));
        for at in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[at] ^= 0x10;
            assert!(Damage::decode(&bad, 5).is_err(), "flip at {at}");
        }
        assert!(Damage::decode(&bytes[..bytes.len() - 1], 5).is_err());
    }

    #[test]
    fn a_loss_leaves_the_record_stale_until_dropped_and_the_flag_is_kept() {
        let mut damage = Damage::intact(3);
        damage.mark(&[], 10, 0);
        assert!(!damage.stale(), "nothing lost");
        damage.mark(&[0], 10, 0);
        let read = Damage::decode(&damage.encode(), 3).expect("a record");
        assert!(read.stale());
        damage.dropped();
        let read = Damage::decode(&damage.encode(), 3).expect("a record");
        assert!(!read.stale() && read.is_damaged(0));
        // A later loss makes it stale again, and so does a version 2
        // record with a damaged range (its writer dropped nothing).
        damage.mark(&[1], 20, 0);
        assert!(damage.stale());
        let v2 = old_record(2, 1, &[5, 0]);
        assert!(Damage::decode(&v2, 1).expect("a version 2 record").stale());
        // Unknown flags are refused.
        let mut bytes = damage.encode();
        bytes[8] |= 0x80;
        let len = bytes.len();
        let crc = crc32fast::hash(&bytes[..len - 4]);
        bytes[len - 4..].copy_from_slice(&crc.to_le_bytes());
        assert!(Damage::decode(&bytes, 3).is_err());
    }

    #[test]
    fn a_record_of_another_ring_marks_every_range() {
        let mut damage = Damage::intact(2);
        damage.mark(&[1], 42, 0);
        let read = Damage::decode(&damage.encode(), 3).expect("a record");
        assert_eq!(read.damaged_total(), 3);
        assert_eq!(read.clock_floor(), 42);
        let intact = Damage::decode(&Damage::intact(2).encode(), 3).expect("a record");
        assert!(!intact.any());
    }

    #[test]
    fn the_record_survives_a_store_and_load() {
        let dir = tempfile::tempdir().expect("tempdir");
        let disk = enigma_engine::FsDisk::open(dir.path()).expect("disk");
        assert_eq!(load(&disk, 3), Ok(Damage::intact(3)));
        let mut damage = Damage::intact(3);
        damage.mark(&[2], 9, 0);
        store(&disk, &damage).expect("store");
        assert_eq!(load(&disk, 3), Ok(damage));
    }
}
