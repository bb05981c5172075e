//! A single u64 kept in a file of its own: the boot generation
//! ([`crate::generation`]) and the acceptor's ballot mark
//! ([`crate::ballot_mark`]).
//!
//! File layout: the value u64 LE, then CRC32 of those 8 bytes, u32 LE
//! (12 bytes). A new value is written to a temporary file, synced, renamed
//! over the old file, and the directory synced: after a crash the file
//! holds the old value or the new one, never a mix.

use enigma_engine::{Disk, DiskError, DiskFile, EngineError};

/// Bytes of the file.
const FILE_BYTES: usize = 12;

/// The value in `file` on `disk`; `None` if there is no such file.
/// Changes nothing.
///
/// # Errors
/// Disk errors; a file of the wrong length or whose checksum does not match
/// (corruption naming the file).
pub(crate) fn read<D: Disk>(disk: &D, file: &str) -> Result<Option<u64>, EngineError> {
    let handle = match disk.open(file) {
        Ok(handle) => handle,
        Err(DiskError::NotFound { .. }) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let len = handle.len()?;
    if len != FILE_BYTES as u64 {
        return Err(EngineError::Corruption {
            file: file.to_owned(),
            offset: 0,
            reason: format!("{len} bytes, expected {FILE_BYTES}"),
        });
    }
    let mut bytes = [0u8; FILE_BYTES];
    handle.read_at(0, &mut bytes)?;
    let (value, crc) = bytes.split_at(8);
    let expected = u32::from_le_bytes(crc.try_into().expect("split at 8 of 12 leaves 4"));
    let got = crc32fast::hash(value);
    if got != expected {
        return Err(EngineError::ChecksumMismatch {
            file: file.to_owned(),
            offset: 8,
            expected,
            got,
        });
    }
    Ok(Some(u64::from_le_bytes(
        value.try_into().expect("split at 8"),
    )))
}

/// Makes `value` the content of `file` on `disk`, through `temp`.
///
/// # Errors
/// Disk errors (the old file, or none, then stands).
pub(crate) fn store<D: Disk>(
    disk: &D,
    file: &str,
    temp: &str,
    value: u64,
) -> Result<(), EngineError> {
    match disk.remove(temp) {
        Ok(()) | Err(DiskError::NotFound { .. }) => {}
        Err(e) => return Err(e.into()),
    }
    let mut handle = disk.create(temp)?;
    let mut bytes = value.to_le_bytes().to_vec();
    bytes.extend_from_slice(&crc32fast::hash(&value.to_le_bytes()).to_le_bytes());
    handle.write_at(0, &bytes)?;
    handle.sync()?;
    disk.rename(temp, file)?;
    disk.sync_dir()?;
    Ok(())
}
