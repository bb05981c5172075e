//! Damage to stored bytes: bit rot and misdirected writes in the tables of
//! one node at a time, and rebuilding a node from its peers when the damage
//! lies where a start must read.
//!
//! With the family on, every [`STORED_DAMAGE_INTERVAL_NANOS`] or so of the
//! safety phase a running node may have one of its tables damaged: a bit
//! flipped ([`SimDisk::flip_random_bit`]) or a run of sectors of one table
//! landing in another or elsewhere in the same
//! ([`SimDisk::misdirect_write`]). And as a node that is down starts, one
//! of its sealed log segments may have taken a flipped bit or a misdirected
//! write meanwhile ([`Simulation::damage_sealed_segment_at_start`]):
//! sealed segments are read only at a start, so that is when their damage
//! matters (log records' checksums cover their place, segment id and
//! offset, as table blocks' do). Never the newest segment: damage there
//! looks exactly like a torn tail.
//!
//! Bound: one node at a time holds damage, so every key keeps `rf - 1`
//! intact replicas. The next node is damaged only once the first has dealt
//! with it: the damaged file is gone (quarantined, or compacted away
//! because the damage lay in parts a running node keeps in memory) and
//! the node serves every range again (repaired by anti-entropy). At
//! `SERIAL`, at most [`damage_nodes_max`](super::nemesis::damage_nodes_max) distinct nodes over the run:
//! each keeps a Paxos floor for good.
//!
//! A start that meets the damage (a table's footer, index or metadata) is
//! refused with `NodeError::Damaged`; the simulator then does what an
//! operator would: wipes the node's data (all but its boot generation),
//! writes a damage record marking every range, and starts it again empty,
//! to be refilled by its peers.
//!
//! While a node holds damage its durability is not checked: it lost
//! acknowledged versions with the damaged table, legitimately. Once it is
//! repaired it is held again to what it holds then.

use enigma_cluster::damage::{self, Damage};
use enigma_cluster::{ballot_mark, generation};
use enigma_engine::Disk;
use rand::Rng;

use super::{Event, Phase, Simulation};
use crate::disk::{MisdirectedWrite, SimDisk, MISDIRECTED_SECTORS_MAX, SECTOR_BYTES};

/// Chance that a node starting with sealed log segments finds one of them
/// damaged, by a flipped bit or a misdirected write (when the family is on,
/// the faults run and no node holds damage).
const SEALED_SEGMENT_ROT_PROBABILITY: f64 = 0.3;
/// Pause between two chances of damage, the range drawn from.
const STORED_DAMAGE_INTERVAL_NANOS: std::ops::RangeInclusive<u64> = 500_000_000..=3_000_000_000;

/// What a rebuilt node holds as its damage until its peers refilled it:
/// the name of no file.
const REBUILT: &str = "rebuilt-from-its-peers";

/// Whether `name` is a live table file (not one being written, not one in
/// quarantine).
fn is_table(name: &str) -> bool {
    name.starts_with("table-") && name.ends_with(".sst")
}

/// Whether `name` is a log segment.
pub(super) fn is_log_segment(name: &str) -> bool {
    name.starts_with("wal-") && name.ends_with(".log")
}

/// A misdirected write into a file `into` accepts (a table, or a sealed
/// log segment): a run of 1 to [`MISDIRECTED_SECTORS_MAX`] sectors of a
/// table's or a log segment's stored bytes lands at a sector-aligned place
/// of it, over as much of it as lies there (a file shorter than the run
/// takes what fits: lengths never change). `None` when no such file or no
/// source of a sector exists, or the draw would write bytes over
/// themselves.
fn draw_misdirected_write(
    disk: &SimDisk,
    rng: &mut impl Rng,
    into: impl Fn(&str) -> bool,
) -> Option<MisdirectedWrite> {
    let sector = SECTOR_BYTES as u64;
    let targets = disk.files_with_lengths(into);
    let sources: Vec<(String, u64)> = disk
        .files_with_lengths(|name| is_table(name) || is_log_segment(name))
        .into_iter()
        .filter(|(_, len)| *len >= sector)
        .collect();
    if targets.is_empty() || sources.is_empty() {
        return None;
    }
    let (to, to_len) = targets[rng.random_range(0..targets.len())].clone();
    let (from, from_len) = sources[rng.random_range(0..sources.len())].clone();
    let run = rng.random_range(1..=MISDIRECTED_SECTORS_MAX.min(from_len / sector));
    let from_offset = rng.random_range(0..=from_len / sector - run) * sector;
    let to_offset = rng.random_range(0..to_len.div_ceil(sector)) * sector;
    let len = (run * sector).min(to_len - to_offset);
    if from == to && from_offset == to_offset {
        return None;
    }
    Some(MisdirectedWrite {
        from,
        from_offset,
        to,
        to_offset,
        len,
    })
}

/// Damages one file of `disk` that `into` accepts: a flipped bit if
/// `flip`, else a misdirected write. The damaged file and what happened to
/// it (`place` names the kind of file, before its name); `None` when
/// nothing could be drawn.
fn inflict(
    disk: &SimDisk,
    rng: &mut impl Rng,
    flip: bool,
    into: impl Fn(&str) -> bool,
    place: &str,
) -> Option<(String, String)> {
    if flip {
        let (file, offset) = disk.flip_random_bit(rng, into)?;
        let what = format!("bit flipped in {place}{file} at offset {offset}");
        return Some((file, what));
    }
    let write = draw_misdirected_write(disk, rng, into)?;
    disk.misdirect_write_at(&write)
        .expect("the files and ranges were just listed");
    let what = format!(
        "{} bytes of {} at {} misdirected to {place}{} at {}",
        write.len, write.from, write.from_offset, write.to, write.to_offset
    );
    Some((write.to, what))
}

/// The log segments of `disk` but the newest (whose name sorts last: ids
/// are zero-padded), which the node writes on.
fn sealed_segments(disk: &SimDisk) -> Vec<String> {
    let mut segments: Vec<String> = disk
        .files_with_lengths(is_log_segment)
        .into_iter()
        .map(|(name, _)| name)
        .collect();
    segments.pop();
    segments
}

impl Simulation {
    /// As node `index`, down, is about to start: with the family on, no
    /// node holding damage and the faults still running, one of its sealed
    /// log segments may have taken a flipped bit or a misdirected write
    /// meanwhile. The start must then detect it and refuse (the node is
    /// rebuilt), never replay past it as if the segment ended there; or, if
    /// the tables cover the segment, remove it unread.
    pub(super) fn damage_sealed_segment_at_start(&mut self, index: usize) {
        if !self.stored_damage
            || self.phase != Phase::Safety
            || self.slots.iter().any(|slot| slot.damage.is_some())
            || !self.may_damage(index)
            || !self
                .rng_segment_damage
                .random_bool(SEALED_SEGMENT_ROT_PROBABILITY)
        {
            return;
        }
        let disk = self.slots[index].disk.clone();
        let sealed = sealed_segments(&disk);
        let is_sealed = |name: &str| sealed.iter().any(|s| s == name);
        let flip = self.rng_segment_damage.random_bool(0.5);
        let place = "sealed log segment ";
        let Some((file, what)) =
            inflict(&disk, &mut self.rng_segment_damage, flip, is_sealed, place)
        else {
            return;
        };
        if flip {
            self.stats.sealed_segment_flips += 1;
        } else {
            self.stats.sealed_segment_misdirected_writes += 1;
        }
        self.hold_damage(index, 31, file, what);
    }

    /// Schedules the next chance of damage.
    pub(super) fn schedule_stored_damage(&mut self) {
        let pause = self.rng_damage.random_range(STORED_DAMAGE_INTERVAL_NANOS);
        self.schedule(pause, Event::StoredDamage);
    }

    /// A chance of damage: if no node holds any, one running node's table
    /// takes a flipped bit or a misdirected write.
    pub(super) fn on_stored_damage(&mut self) {
        if self.phase != Phase::Safety {
            return;
        }
        self.schedule_stored_damage();
        self.settle_damage();
        if self.slots.iter().any(|slot| slot.damage.is_some()) {
            return;
        }
        let index = self.rng_damage.random_range(0..self.slots.len());
        let flip = self.rng_damage.random_bool(0.5);
        if self.slots[index].node.is_none() || !self.may_damage(index) {
            return;
        }
        let disk = self.slots[index].disk.clone();
        let Some((file, what)) = inflict(&disk, &mut self.rng_damage, flip, is_table, "") else {
            return;
        };
        if flip {
            self.stats.stored_bit_flips += 1;
        } else {
            self.stats.misdirected_writes += 1;
        }
        self.hold_damage(index, 30, file, what);
    }

    /// Node `index` holds damage in `file` until it has dealt with it
    /// ([`Self::settle_damage`]); `what` goes to the trace under `tag` and
    /// to the recording.
    fn hold_damage(&mut self, index: usize, tag: u8, file: String, what: String) {
        let mut bytes = vec![tag, index as u8];
        bytes.extend_from_slice(what.as_bytes());
        self.trace
            .record(self.now, &bytes, || format!("n{}: {what}", index + 1));
        self.record(|r, now| r.mark(now, index, "stored-damage", what.clone()));
        let slot = &mut self.slots[index];
        slot.damage = Some(file);
        slot.disk_faulted = true;
        self.damaged_nodes.insert(index);
    }

    /// Whether node `index` may take damage: it took some before, or fewer
    /// nodes than [`damage_nodes_max`](super::nemesis::damage_nodes_max) did.
    fn may_damage(&self, index: usize) -> bool {
        self.damaged_nodes.contains(&index) || self.damaged_nodes.len() < self.damage_nodes_max
    }

    /// Ends the damage of every node that has dealt with it: the damaged
    /// file is gone and every range is served again. The node is then held
    /// to what it holds.
    pub(super) fn settle_damage(&mut self) {
        for index in 0..self.slots.len() {
            let slot = &self.slots[index];
            let (Some(file), Some(node)) = (&slot.damage, &slot.node) else {
                continue;
            };
            let present = slot.disk.exists(file).unwrap_or(true);
            if present || node.ranges_damaged() > 0 || node.engine().damage_suspected() {
                continue;
            }
            self.slots[index].damage = None;
            self.rebaseline_acknowledged(index);
        }
    }

    /// Holds `index` to the versions it holds now where they are older
    /// than what it acknowledged (lost with a damaged table).
    fn rebaseline_acknowledged(&mut self, index: usize) {
        let slot = &mut self.slots[index];
        let Some(node) = &slot.node else {
            return;
        };
        let mut lowered = Vec::new();
        for (key, &(acked, _)) in &slot.acknowledged {
            let held = node
                .engine()
                .get(key)
                .ok()
                .flatten()
                .map(|version| (version.timestamp, version.value.is_none()));
            if held.is_none_or(|(held, _)| held < acked) {
                lowered.push((key.clone(), held));
            }
        }
        for (key, held) in lowered {
            match held {
                Some(held) => slot.acknowledged.insert(key, held),
                None => slot.acknowledged.remove(&key),
            };
        }
    }

    /// Whether `index` holds damage the simulator put there: its durability
    /// is not checked meanwhile.
    pub(super) fn holds_damage(&self, index: usize) -> bool {
        self.slots[index].damage.is_some()
    }

    /// Rebuilds `index`, whose start damage refused, as an operator would:
    /// every file but the boot generation and the ballot mark removed, a
    /// damage record marking every range written. Its acknowledged versions
    /// went with the data.
    pub(super) fn wipe_for_rebuild(&mut self, index: usize) {
        let ranges = self.ring.repair_ranges().len();
        let slot = &mut self.slots[index];
        let disk = &slot.disk;
        // A sync failure armed for the process that crashed is not the
        // rebuild's: the operator's tools sync their own files.
        disk.cancel_sync_failure();
        let names = disk.list().expect("the simulated disk lists");
        let kept = [generation::FILE, ballot_mark::FILE];
        for name in names.iter().filter(|name| !kept.contains(&name.as_str())) {
            disk.remove(name).expect("a listed file is removed");
        }
        disk.sync_dir()
            .expect("the simulated disk syncs its directory");
        damage::store(disk, &Damage::all(ranges)).expect("the simulated disk takes the record");
        slot.acknowledged.clear();
        slot.unacknowledged_tombstones.clear();
        // The node holds damage until its peers have refilled it, across
        // any restart meanwhile: no longer the damaged segment's name, which
        // a later start (finding no such segment) would take for damage
        // covered by tables and removed unread.
        slot.damage = Some(REBUILT.to_owned());
        self.stats.nodes_rebuilt += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::SimConfig;
    use enigma_cluster::Node;

    /// The nemesis can arm a sync failure on a node that then crashes (or
    /// is already down); the rebuild after its refused start must not meet
    /// that failure: the operator's wipe syncs its own files, and failing
    /// it would stop the run on a fault no process was there to take (a
    /// shrunk schedule once did).
    #[test]
    fn a_rebuild_goes_through_a_sync_failure_armed_for_the_crashed_process() {
        let mut sim = Simulation::new(SimConfig::default());
        sim.start_node(0);
        sim.crash(0);
        sim.slots[0].disk.fail_next_sync();
        sim.wipe_for_rebuild(0);
        let disk = &sim.slots[0].disk;
        let ranges = sim.ring.repair_ranges().len();
        assert_eq!(
            damage::load(disk, ranges).expect("the record reads back"),
            Damage::all(ranges)
        );
        assert!(disk
            .list()
            .expect("the simulated disk lists")
            .iter()
            .any(|name| name == generation::FILE));
        assert_eq!(sim.stats.nodes_rebuilt, 1);
        assert_eq!(sim.slots[0].damage.as_deref(), Some(REBUILT));
        // The node starts on what the rebuild left.
        let slot = &sim.slots[0];
        let node = Node::new(
            slot.id,
            &sim.cluster,
            sim.node_options.clone(),
            slot.disk.clone(),
        );
        assert!(node.is_ok(), "{:?}", node.err());
    }

    /// A rebuilt node holds damage until its peers refilled it, even across
    /// a crash and restart meanwhile: a later start must not take the
    /// damaged segment's absence for damage covered by tables, or the next
    /// node could be damaged while this one still lacks data.
    #[test]
    fn a_rebuilt_node_holds_damage_across_a_restart_until_refilled() {
        let mut sim = Simulation::new(SimConfig::default());
        sim.start_node(0);
        sim.crash(0);
        sim.hold_damage(
            0,
            31,
            "wal-00000000000000000001.log".to_owned(),
            String::new(),
        );
        sim.wipe_for_rebuild(0);
        sim.start_node(0);
        assert!(sim.holds_damage(0));
        sim.crash(0);
        sim.start_node(0);
        assert!(
            sim.holds_damage(0),
            "a restart ended the rebuilt node's damage"
        );
        sim.settle_damage();
        assert!(sim.holds_damage(0), "settled before any repair");
    }
}
