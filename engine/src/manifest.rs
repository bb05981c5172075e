//! The manifest: the only source of truth for which tables are live and
//! which WAL segments they cover.
//!
//! # On-disk layout
//!
//! Files `manifest-<id>.log`, `<id>` in 20 decimal digits. Each is
//!
//! ```text
//! header (16 bytes): magic "ENIGMMAN" (8) | format version u32 LE
//!   | crc32 u32 LE of the 12 bytes before it
//! records, back to back: payload len u32 LE | crc32 u32 LE of payload | payload
//! payload (a version edit):
//!   next table id u64 LE | WAL segments covered u64 LE
//!   | added count u32 LE | added table ids u64 LE...
//!   | removed count u32 LE | removed table ids u64 LE...
//! ```
//!
//! The header and every record are zero-padded to a multiple of 512 bytes
//! (a sector), so appending an edit never rewrites a sector holding a
//! committed one.
//!
//! The first record of a file is a checkpoint: an edit adding every live
//! table. Later records are edits applied in order. "WAL segments covered"
//! is a watermark: every segment with an id at or below it is fully
//! contained in live tables and may be deleted.
//!
//! # Durability
//!
//! - An edit is committed once its record is synced. Callers delete what an
//!   edit makes garbage (old tables, covered WAL segments) only after that.
//! - A checkpoint is written as `manifest-<id+1>.log.tmp`, synced, renamed
//!   and the directory synced; only then is the old manifest removed. So the
//!   highest-numbered manifest always has an intact header and checkpoint,
//!   and damage there is corruption; damage after it is a torn tail (an
//!   uncommitted edit) and is truncated.

use std::collections::BTreeSet;

use crate::bytes::Reader;
use crate::disk::{Disk, DiskError, DiskFile};
use crate::error::EngineError;

/// First bytes of every manifest.
const MANIFEST_MAGIC: [u8; 8] = *b"ENIGMMAN";
/// Version of the layout above.
const MANIFEST_FORMAT_VERSION: u32 = 1;
/// Size of the header.
const HEADER_BYTES: u64 = 16;
/// Size of a record's frame before its payload.
const RECORD_HEADER_BYTES: u64 = 8;
/// Smallest edit payload: ids, watermark and two counts. A shorter length
/// is what a zero-filled torn tail looks like (length 0 has CRC 0), so it is
/// a torn record, never an edit.
const EDIT_BYTES_MIN: u32 = 24;
/// Largest record: bounds the allocation a length read from disk causes
/// (a checkpoint of a million tables is 8 MB).
const RECORD_BYTES_MAX: u32 = 64 * 1024 * 1024;
/// Every record (and the header) starts on a multiple of this: a torn
/// append may garble the whole sector it lands in, and a committed edit
/// must never share a sector with a later, unsynced one.
const SECTOR_BYTES: u64 = 512;
/// Default edits between checkpoints.
pub(crate) const EDITS_PER_CHECKPOINT_DEFAULT: usize = 256;
const NAME_PREFIX: &str = "manifest-";
const NAME_SUFFIX: &str = ".log";
const TEMPORARY_SUFFIX: &str = ".tmp";
const ID_DIGITS: usize = 20;

/// One change to the set of live tables.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct VersionEdit {
    /// The id the next new table gets; never decreases.
    pub(crate) next_table_id: u64,
    /// WAL segments at or below this id are covered by tables; never
    /// decreases.
    pub(crate) wal_segments_covered: u64,
    pub(crate) tables_added: Vec<u64>,
    pub(crate) tables_removed: Vec<u64>,
}

/// What the manifest says now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ManifestState {
    pub(crate) tables: BTreeSet<u64>,
    pub(crate) next_table_id: u64,
    pub(crate) wal_segments_covered: u64,
}

impl Default for ManifestState {
    fn default() -> ManifestState {
        ManifestState {
            tables: BTreeSet::new(),
            next_table_id: 1,
            wal_segments_covered: 0,
        }
    }
}

impl ManifestState {
    /// The state after `edit`, or why `edit` cannot follow this state.
    fn applied(&self, edit: &VersionEdit) -> Result<ManifestState, String> {
        if edit.next_table_id < self.next_table_id {
            return Err("next table id goes backwards".to_owned());
        }
        if edit.wal_segments_covered < self.wal_segments_covered {
            return Err("WAL watermark goes backwards".to_owned());
        }
        let mut tables = self.tables.clone();
        for id in &edit.tables_removed {
            if !tables.remove(id) {
                return Err(format!("removes table {id}, which is not live"));
            }
        }
        for &id in &edit.tables_added {
            if id >= edit.next_table_id || !tables.insert(id) {
                return Err(format!("adds table {id} twice or past the next id"));
            }
        }
        Ok(ManifestState {
            tables,
            next_table_id: edit.next_table_id,
            wal_segments_covered: edit.wal_segments_covered,
        })
    }

    /// The edit that rebuilds this state from nothing.
    fn checkpoint(&self) -> VersionEdit {
        VersionEdit {
            next_table_id: self.next_table_id,
            wal_segments_covered: self.wal_segments_covered,
            tables_added: self.tables.iter().copied().collect(),
            tables_removed: Vec::new(),
        }
    }
}

fn manifest_name(id: u64) -> String {
    format!("{NAME_PREFIX}{id:0width$}{NAME_SUFFIX}", width = ID_DIGITS)
}

fn parse_manifest_name(name: &str) -> Option<u64> {
    let digits = name.strip_prefix(NAME_PREFIX)?.strip_suffix(NAME_SUFFIX)?;
    if digits.len() != ID_DIGITS || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Whether `name` is a manifest, finished or being checkpointed.
pub(crate) fn is_manifest_file(name: &str) -> bool {
    parse_manifest_name(name).is_some() || is_temporary_manifest(name)
}

/// Whether `name` is a manifest being checkpointed: garbage at open.
pub(crate) fn is_temporary_manifest(name: &str) -> bool {
    name.strip_suffix(TEMPORARY_SUFFIX)
        .and_then(parse_manifest_name)
        .is_some()
}

fn encode_header() -> Vec<u8> {
    let mut header = Vec::with_capacity(HEADER_BYTES as usize);
    header.extend_from_slice(&MANIFEST_MAGIC);
    header.extend_from_slice(&MANIFEST_FORMAT_VERSION.to_le_bytes());
    let crc = crc32fast::hash(&header);
    header.extend_from_slice(&crc.to_le_bytes());
    header
}

/// `offset` rounded up to the next sector boundary.
fn sector_aligned(offset: u64) -> u64 {
    offset.next_multiple_of(SECTOR_BYTES)
}

/// Pads `bytes` with zeros to a whole number of sectors.
fn pad_to_sector(bytes: &mut Vec<u8>) {
    let len = sector_aligned(bytes.len() as u64);
    bytes.resize(usize::try_from(len).expect("records are small"), 0);
}

fn encode_record(edit: &VersionEdit) -> Vec<u8> {
    let mut payload = Vec::new();
    payload.extend_from_slice(&edit.next_table_id.to_le_bytes());
    payload.extend_from_slice(&edit.wal_segments_covered.to_le_bytes());
    for ids in [&edit.tables_added, &edit.tables_removed] {
        let count = u32::try_from(ids.len()).expect("table counts fit u32");
        payload.extend_from_slice(&count.to_le_bytes());
        for id in ids {
            payload.extend_from_slice(&id.to_le_bytes());
        }
    }
    let len = u32::try_from(payload.len()).expect("bounded by the table count");
    assert!(len <= RECORD_BYTES_MAX, "manifest record over its limit");
    let mut record = Vec::with_capacity(payload.len() + RECORD_HEADER_BYTES as usize);
    record.extend_from_slice(&len.to_le_bytes());
    record.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
    record.extend_from_slice(&payload);
    pad_to_sector(&mut record);
    record
}

fn decode_edit(payload: &[u8]) -> Option<VersionEdit> {
    let mut reader = Reader::new(payload);
    let next_table_id = reader.u64_le()?;
    let wal_segments_covered = reader.u64_le()?;
    let mut lists = [Vec::new(), Vec::new()];
    for list in &mut lists {
        let count = reader.u32_le()? as usize;
        // Bounded by the payload, so a bad count cannot over-allocate.
        if count > payload.len() / 8 {
            return None;
        }
        for _ in 0..count {
            list.push(reader.u64_le()?);
        }
    }
    let [tables_added, tables_removed] = lists;
    reader.is_empty().then_some(VersionEdit {
        next_table_id,
        wal_segments_covered,
        tables_added,
        tables_removed,
    })
}

/// Why a record could not be read.
enum RecordDamage {
    /// Short or failing its checksum: a torn write.
    Torn(EngineError),
    /// Intact (checksum matches) but does not parse: corruption.
    Invalid(EngineError),
    Disk(DiskError),
}

/// Reads the record at `offset`; returns its edit and the offset after it.
fn read_record<F: DiskFile>(
    file: &F,
    name: &str,
    offset: u64,
    file_len: u64,
) -> Result<(VersionEdit, u64), RecordDamage> {
    let torn = |reason: String| {
        RecordDamage::Torn(EngineError::Corruption {
            file: name.to_owned(),
            offset,
            reason,
        })
    };
    if file_len - offset < RECORD_HEADER_BYTES {
        return Err(torn("truncated record header".to_owned()));
    }
    let mut header = [0_u8; RECORD_HEADER_BYTES as usize];
    file.read_at(offset, &mut header)
        .map_err(RecordDamage::Disk)?;
    let mut reader = Reader::new(&header);
    let len = reader.u32_le().expect("8 bytes");
    let expected = reader.u32_le().expect("8 bytes");
    let payload_at = offset + RECORD_HEADER_BYTES;
    if len < EDIT_BYTES_MIN {
        return Err(torn(format!("record length {len} is below an edit's")));
    }
    if len > RECORD_BYTES_MAX || u64::from(len) > file_len - payload_at {
        return Err(torn(format!("record length {len} passes the end")));
    }
    let mut payload = vec![0_u8; len as usize];
    file.read_at(payload_at, &mut payload)
        .map_err(RecordDamage::Disk)?;
    let got = crc32fast::hash(&payload);
    if got != expected {
        return Err(RecordDamage::Torn(EngineError::ChecksumMismatch {
            file: name.to_owned(),
            offset,
            expected,
            got,
        }));
    }
    let edit = decode_edit(&payload).ok_or_else(|| {
        RecordDamage::Invalid(EngineError::Corruption {
            file: name.to_owned(),
            offset,
            reason: "manifest record does not parse".to_owned(),
        })
    })?;
    Ok((
        edit,
        sector_aligned(payload_at + u64::from(len)).min(file_len),
    ))
}

/// The open manifest.
#[derive(Debug)]
pub(crate) struct Manifest<F: DiskFile> {
    file: F,
    id: u64,
    /// Where the next record goes.
    len: u64,
    state: ManifestState,
    edits_since_checkpoint: usize,
    /// Checkpoint after this many edits, keeping replay bounded.
    edits_per_checkpoint: usize,
    sync_enabled: bool,
}

/// A manifest edit found damaged at the end of the newest manifest: taken
/// for an edit that never committed, unless what is on disk shows that it
/// did (its effects are only carried out after it commits).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TornEdit {
    /// The manifest file.
    pub(crate) file: String,
    /// Where the damaged record starts.
    pub(crate) offset: u64,
    /// What was wrong with it.
    pub(crate) reason: String,
}

/// The manifest as [`recover`] found it, nothing on disk changed yet.
#[derive(Debug)]
pub(crate) struct ManifestRecovery {
    /// The state the committed edits give.
    state: ManifestState,
    /// The newest manifest's id, `None` if there is none yet.
    id: Option<u64>,
    /// Where its committed records end (where a torn edit is cut off).
    len: u64,
    /// Its length on disk.
    file_len: u64,
    /// Edits read, its checkpoint included.
    edits: usize,
    /// The damaged last edit, if any.
    torn_edit: Option<TornEdit>,
    /// Older and temporary manifests: garbage.
    garbage: Vec<String>,
}

/// Reads the newest manifest on `disk` and replays it, changing nothing.
///
/// # Errors
/// Corruption of the header or the checkpoint, or an edit that contradicts
/// the state before it; disk errors.
pub(crate) fn recover<D: Disk>(disk: &D) -> Result<ManifestRecovery, EngineError> {
    let names = disk.list()?;
    let newest = names.iter().filter_map(|n| parse_manifest_name(n)).max();
    let garbage_below = |id: u64| -> Vec<String> {
        names
            .iter()
            .filter(|other| {
                parse_manifest_name(other).is_some_and(|other_id| other_id < id)
                    || is_temporary_manifest(other)
            })
            .cloned()
            .collect()
    };
    let Some(id) = newest else {
        return Ok(ManifestRecovery {
            state: ManifestState::default(),
            id: None,
            len: 0,
            file_len: 0,
            edits: 0,
            torn_edit: None,
            garbage: garbage_below(0),
        });
    };
    let name = manifest_name(id);
    let file = disk.open(&name)?;
    let file_len = file.len()?;
    let corrupt = |offset: u64, reason: String| EngineError::Corruption {
        file: name.clone(),
        offset,
        reason,
    };
    let mut header = [0_u8; HEADER_BYTES as usize];
    if file_len < HEADER_BYTES {
        return Err(corrupt(0, "manifest shorter than its header".to_owned()));
    }
    file.read_at(0, &mut header)?;
    if header[..] != encode_header()[..] {
        return Err(corrupt(
            0,
            "bad manifest magic, version or header checksum".to_owned(),
        ));
    }
    let mut state = ManifestState::default();
    let mut offset = sector_aligned(HEADER_BYTES);
    let mut edits = 0;
    let mut torn_edit = None;
    while offset < file_len {
        match read_record(&file, &name, offset, file_len) {
            Ok((edit, next)) => {
                state = state
                    .applied(&edit)
                    .map_err(|reason| corrupt(offset, format!("manifest edit {reason}")))?;
                edits += 1;
                offset = next;
            }
            Err(RecordDamage::Disk(err)) => return Err(err.into()),
            Err(RecordDamage::Invalid(err)) => return Err(err),
            Err(RecordDamage::Torn(err)) if edits == 0 => return Err(err),
            Err(RecordDamage::Torn(err)) => {
                // An edit that never committed, as far as the manifest
                // alone can tell: it is cut off when the open goes ahead.
                let zeros = tail_is_zero(&file, offset, file_len)?;
                if !zeros {
                    crate::marks::hit(crate::marks::Mark::ManifestTornEdit);
                    torn_edit = Some(TornEdit {
                        file: name.clone(),
                        offset,
                        reason: err.detail(),
                    });
                }
                break;
            }
        }
    }
    if edits == 0 {
        return Err(corrupt(
            HEADER_BYTES,
            "manifest without a checkpoint".to_owned(),
        ));
    }
    Ok(ManifestRecovery {
        state,
        id: Some(id),
        len: offset,
        file_len,
        edits,
        torn_edit,
        garbage: garbage_below(id),
    })
}

/// Whether every byte of `file` from `offset` to `file_len` is zero.
fn tail_is_zero<F: DiskFile>(file: &F, offset: u64, file_len: u64) -> Result<bool, DiskError> {
    let len = usize::try_from(file_len - offset).expect("a manifest fits in memory");
    let mut bytes = vec![0_u8; len];
    file.read_at(offset, &mut bytes)?;
    Ok(bytes.iter().all(|&b| b == 0))
}

impl ManifestRecovery {
    /// The state the committed edits give.
    pub(crate) fn state(&self) -> &ManifestState {
        &self.state
    }

    /// Whether a manifest exists at all.
    pub(crate) fn exists(&self) -> bool {
        self.id.is_some()
    }

    /// The damaged last edit, if one was found.
    pub(crate) fn torn_edit(&self) -> Option<&TornEdit> {
        self.torn_edit.as_ref()
    }

    /// Carries the recovery out: cuts off a torn last edit, removes older
    /// and temporary manifests, and starts a manifest if there is none.
    ///
    /// # Errors
    /// Disk errors.
    pub(crate) fn open<D: Disk>(
        self,
        disk: &D,
        edits_per_checkpoint: usize,
        sync_enabled: bool,
    ) -> Result<Manifest<D::File>, EngineError> {
        assert!(edits_per_checkpoint >= 1, "options validate the interval");
        let Some(id) = self.id else {
            for name in &self.garbage {
                disk.remove(name)?;
            }
            return write_checkpoint(
                disk,
                1,
                ManifestState::default(),
                edits_per_checkpoint,
                sync_enabled,
            );
        };
        let mut file = disk.open(&manifest_name(id))?;
        if self.len < self.file_len {
            file.truncate(self.len)?;
            if sync_enabled {
                file.sync()?;
            }
        }
        for name in &self.garbage {
            disk.remove(name)?;
        }
        Ok(Manifest {
            file,
            id,
            len: self.len,
            state: self.state,
            edits_since_checkpoint: self.edits - 1,
            edits_per_checkpoint,
            sync_enabled,
        })
    }
}

/// Opens the newest manifest on `disk`: [`recover`], then
/// [`ManifestRecovery::open`].
///
/// # Errors
/// As both.
#[cfg(test)]
pub(crate) fn open<D: Disk>(
    disk: &D,
    edits_per_checkpoint: usize,
    sync_enabled: bool,
) -> Result<Manifest<D::File>, EngineError> {
    recover(disk)?.open(disk, edits_per_checkpoint, sync_enabled)
}

/// Writes `state` as manifest `id` through a temporary file and makes it
/// durable; removes manifest `id - 1` if present.
fn write_checkpoint<D: Disk>(
    disk: &D,
    id: u64,
    state: ManifestState,
    edits_per_checkpoint: usize,
    sync_enabled: bool,
) -> Result<Manifest<D::File>, EngineError> {
    let name = manifest_name(id);
    let temporary = format!("{name}{TEMPORARY_SUFFIX}");
    if disk.exists(&temporary)? {
        disk.remove(&temporary)?;
    }
    let mut file = disk.create(&temporary)?;
    let mut bytes = encode_header();
    pad_to_sector(&mut bytes);
    bytes.extend_from_slice(&encode_record(&state.checkpoint()));
    file.write_at(0, &bytes)?;
    if sync_enabled {
        file.sync()?;
    }
    drop(file);
    disk.rename(&temporary, &name)?;
    if sync_enabled {
        disk.sync_dir()?;
    }
    if id > 1 {
        let previous = manifest_name(id - 1);
        if disk.exists(&previous)? {
            disk.remove(&previous)?;
        }
    }
    Ok(Manifest {
        file: disk.open(&name)?,
        id,
        len: bytes.len() as u64,
        state,
        edits_since_checkpoint: 0,
        edits_per_checkpoint,
        sync_enabled,
    })
}

impl<F: DiskFile> Manifest<F> {
    /// What the manifest says now.
    pub(crate) fn state(&self) -> &ManifestState {
        &self.state
    }

    /// Appends `edit` and makes it durable; checkpoints when due. On error
    /// the caller must stop (poison): whether the edit committed is unknown
    /// until the next open.
    ///
    /// # Errors
    /// Disk errors.
    ///
    /// # Panics
    /// If `edit` does not follow the current state: callers build edits
    /// from it.
    pub(crate) fn commit<D: Disk<File = F>>(
        &mut self,
        disk: &D,
        edit: &VersionEdit,
    ) -> Result<(), EngineError> {
        let next = self
            .state
            .applied(edit)
            .unwrap_or_else(|reason| panic!("engine built an invalid manifest edit: {reason}"));
        let record = encode_record(edit);
        self.file.write_at(self.len, &record)?;
        if self.sync_enabled {
            self.file.sync()?;
        }
        self.len += record.len() as u64;
        self.state = next;
        self.edits_since_checkpoint += 1;
        if self.edits_since_checkpoint >= self.edits_per_checkpoint {
            let replacement = write_checkpoint(
                disk,
                self.id + 1,
                self.state.clone(),
                self.edits_per_checkpoint,
                self.sync_enabled,
            )?;
            *self = replacement;
        }
        Ok(())
    }

    /// The current manifest file's name.
    #[cfg(test)]
    pub(crate) fn name(&self) -> String {
        manifest_name(self.id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fs_disk::FsDisk;

    fn temp_disk() -> (tempfile::TempDir, FsDisk) {
        let dir = tempfile::tempdir().expect("tempdir");
        let disk = FsDisk::open(dir.path()).expect("disk");
        (dir, disk)
    }

    fn add(state: &ManifestState, id: u64, covered: u64) -> VersionEdit {
        VersionEdit {
            next_table_id: id + 1,
            wal_segments_covered: covered,
            tables_added: vec![id],
            tables_removed: Vec::new(),
        }
        .with_floor(state)
    }

    impl VersionEdit {
        fn with_floor(mut self, state: &ManifestState) -> VersionEdit {
            self.next_table_id = self.next_table_id.max(state.next_table_id);
            self
        }
    }

    #[test]
    fn edits_replay_in_order() {
        let (_dir, disk) = temp_disk();
        let mut manifest = open(&disk, 100, true).expect("open");
        let edit = add(manifest.state(), 1, 3);
        manifest.commit(&disk, &edit).expect("commit");
        let edit = add(manifest.state(), 2, 5);
        manifest.commit(&disk, &edit).expect("commit");
        let compaction = VersionEdit {
            next_table_id: 4,
            wal_segments_covered: 5,
            tables_added: vec![3],
            tables_removed: vec![1, 2],
        };
        manifest.commit(&disk, &compaction).expect("commit");
        let expected = manifest.state().clone();
        drop(manifest);
        let reopened = open(&disk, 100, true).expect("reopen");
        assert_eq!(reopened.state(), &expected);
        assert_eq!(expected.tables, BTreeSet::from([3]));
        assert_eq!(expected.wal_segments_covered, 5);
    }

    #[test]
    fn checkpoint_rewrites_and_removes_the_old_manifest() {
        let (_dir, disk) = temp_disk();
        let mut manifest = open(&disk, 2, true).expect("open");
        for id in 1..=5 {
            let edit = add(manifest.state(), id, id);
            manifest.commit(&disk, &edit).expect("commit");
        }
        assert_eq!(manifest.name(), manifest_name(3));
        assert_eq!(disk.list().expect("list"), vec![manifest_name(3)]);
        let expected = manifest.state().clone();
        drop(manifest);
        assert_eq!(open(&disk, 2, true).expect("reopen").state(), &expected);
    }

    #[test]
    fn torn_last_edit_is_dropped_and_truncated() {
        let (_dir, disk) = temp_disk();
        let mut manifest = open(&disk, 100, true).expect("open");
        let edit = add(manifest.state(), 1, 1);
        manifest.commit(&disk, &edit).expect("commit");
        let committed = manifest.state().clone();
        let edit = add(manifest.state(), 2, 2);
        manifest.commit(&disk, &edit).expect("commit");
        let full_len = manifest.len;
        drop(manifest);
        let mut file = disk.open(&manifest_name(1)).expect("open");
        file.truncate(full_len - SECTOR_BYTES + 10).expect("tear");
        drop(file);
        let reopened = open(&disk, 100, true).expect("reopen");
        assert_eq!(reopened.state(), &committed);
        assert_eq!(
            reopened.len,
            full_len - SECTOR_BYTES,
            "torn bytes were cut off"
        );
    }

    #[test]
    fn zero_filled_tail_is_torn_not_an_edit() {
        let (_dir, disk) = temp_disk();
        let manifest = open(&disk, 100, true).expect("open");
        let (len, state) = (manifest.len, manifest.state().clone());
        drop(manifest);
        let mut file = disk.open(&manifest_name(1)).expect("open");
        file.write_at(len, &[0; SECTOR_BYTES as usize])
            .expect("zeros");
        drop(file);
        let reopened = open(&disk, 100, true).expect("zeros are a torn tail");
        assert_eq!((reopened.len, reopened.state()), (len, &state));
    }

    #[test]
    fn damaged_checkpoint_is_corruption() {
        let (_dir, disk) = temp_disk();
        drop(open(&disk, 100, true).expect("open"));
        let mut file = disk.open(&manifest_name(1)).expect("open");
        file.write_at(SECTOR_BYTES + 9, &[0xff]).expect("damage");
        drop(file);
        let err = open(&disk, 100, true).expect_err("corrupt checkpoint");
        assert!(err.to_string().contains(&manifest_name(1)), "{err}");
    }

    #[test]
    fn contradictory_edit_is_corruption() {
        let (_dir, disk) = temp_disk();
        let manifest = open(&disk, 100, true).expect("open");
        let len = manifest.len;
        drop(manifest);
        let bad = VersionEdit {
            next_table_id: 9,
            wal_segments_covered: 0,
            tables_added: Vec::new(),
            tables_removed: vec![4],
        };
        disk.open(&manifest_name(1))
            .expect("open")
            .write_at(len, &encode_record(&bad))
            .expect("append");
        let err = open(&disk, 100, true).expect_err("bad edit");
        assert!(err.to_string().contains("not live"), "{err}");
    }

    #[test]
    fn leftover_temporary_and_older_manifests_are_removed() {
        let (_dir, disk) = temp_disk();
        drop(open(&disk, 100, true).expect("open"));
        disk.create(&format!("{}{TEMPORARY_SUFFIX}", manifest_name(2)))
            .expect("create");
        drop(write_checkpoint(&disk, 3, ManifestState::default(), 100, true).expect("checkpoint"));
        assert!(
            disk.exists(&manifest_name(1)).expect("exists"),
            "an older manifest is left"
        );
        drop(open(&disk, 100, true).expect("reopen"));
        assert_eq!(disk.list().expect("list"), vec![manifest_name(3)]);
    }
}
