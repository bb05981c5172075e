//! The boot generation: a counter kept on disk and raised at every start.
//!
//! Operation ids carry it, so answers addressed to an earlier incarnation of
//! a node (in flight when it crashed) are recognised and dropped. It is made
//! durable before the node sends anything, so no two incarnations that spoke
//! share a generation.
//!
//! File `node.generation`: generation u64 LE, then CRC32 of those 8 bytes,
//! u32 LE. Replaced by writing `node.generation.tmp`, syncing it, renaming it
//! over the old file and syncing the directory.

use enigma_engine::{Disk, DiskError, DiskFile, EngineError};

const FILE: &str = "node.generation";
const TEMP: &str = "node.generation.tmp";
const FILE_BYTES: usize = 12;

/// Reads the last generation (0 if none), stores the next one durably and
/// returns it.
///
/// # Errors
/// Disk errors, and corruption of the generation file (never ignored: a
/// reused generation could let stale acknowledgements count).
pub fn advance<D: Disk>(disk: &D) -> Result<u64, EngineError> {
    let last = read(disk)?;
    let next = last.checked_add(1).ok_or_else(|| EngineError::Corruption {
        file: FILE.to_owned(),
        offset: 0,
        reason: "generation counter exhausted".to_owned(),
    })?;
    match disk.remove(TEMP) {
        Ok(()) | Err(DiskError::NotFound { .. }) => {}
        Err(e) => return Err(e.into()),
    }
    let mut file = disk.create(TEMP)?;
    let mut bytes = next.to_le_bytes().to_vec();
    bytes.extend_from_slice(&crc32fast::hash(&next.to_le_bytes()).to_le_bytes());
    file.write_at(0, &bytes)?;
    file.sync()?;
    disk.rename(TEMP, FILE)?;
    disk.sync_dir()?;
    Ok(next)
}

fn read<D: Disk>(disk: &D) -> Result<u64, EngineError> {
    let file = match disk.open(FILE) {
        Ok(file) => file,
        Err(DiskError::NotFound { .. }) => return Ok(0),
        Err(e) => return Err(e.into()),
    };
    let len = file.len()?;
    if len != FILE_BYTES as u64 {
        return Err(EngineError::Corruption {
            file: FILE.to_owned(),
            offset: 0,
            reason: format!("{len} bytes, expected {FILE_BYTES}"),
        });
    }
    let mut bytes = [0u8; FILE_BYTES];
    file.read_at(0, &mut bytes)?;
    let (value, crc) = bytes.split_at(8);
    let expected = u32::from_le_bytes(crc.try_into().expect("split at 8 of 12 leaves 4"));
    let got = crc32fast::hash(value);
    if got != expected {
        return Err(EngineError::ChecksumMismatch {
            file: FILE.to_owned(),
            offset: 8,
            expected,
            got,
        });
    }
    Ok(u64::from_le_bytes(value.try_into().expect("split at 8")))
}
