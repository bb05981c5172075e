//! Segment files: their names and their header.

use super::{
    SEGMENT_FORMAT_VERSION, SEGMENT_HEADER_BYTES, SEGMENT_ID_DIGITS, SEGMENT_ID_FIRST,
    SEGMENT_MAGIC, SEGMENT_NAME_PREFIX, SEGMENT_NAME_SUFFIX, SEGMENT_RECORDS_OFFSET,
};
use crate::error::EngineError;

/// The name of segment `id`.
pub(crate) fn segment_name(id: u64) -> String {
    format!(
        "{SEGMENT_NAME_PREFIX}{id:0width$}{SEGMENT_NAME_SUFFIX}",
        width = SEGMENT_ID_DIGITS
    )
}

/// The id of a segment name; `None` for names that are not WAL segments at
/// all; an error for names shaped like one that do not parse.
pub(super) fn parse_segment_name(name: &str) -> Result<Option<u64>, EngineError> {
    let Some(rest) = name.strip_prefix(SEGMENT_NAME_PREFIX) else {
        return Ok(None);
    };
    let Some(digits) = rest.strip_suffix(SEGMENT_NAME_SUFFIX) else {
        return Ok(None);
    };
    let bad = |reason: &str| EngineError::Corruption {
        file: name.to_owned(),
        offset: 0,
        reason: format!("WAL segment name {reason}"),
    };
    if digits.len() != SEGMENT_ID_DIGITS || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad("does not hold a 20-digit id"));
    }
    let id: u64 = digits
        .parse()
        .map_err(|_| bad("holds an id that overflows u64"))?;
    if id < SEGMENT_ID_FIRST {
        return Err(bad("holds id 0"));
    }
    Ok(Some(id))
}

/// The 24-byte header of segment `id`.
pub(super) fn encode_segment_header(id: u64) -> Vec<u8> {
    let mut header = Vec::with_capacity(SEGMENT_HEADER_BYTES as usize);
    header.extend_from_slice(&SEGMENT_MAGIC);
    header.extend_from_slice(&SEGMENT_FORMAT_VERSION.to_le_bytes());
    header.extend_from_slice(&id.to_le_bytes());
    let crc = crc32fast::hash(&header);
    header.extend_from_slice(&crc.to_le_bytes());
    assert_eq!(header.len() as u64, SEGMENT_HEADER_BYTES);
    header
}

/// The header of segment `id`, zero-filled to a whole sector.
pub(super) fn encode_segment_header_sector(id: u64) -> Vec<u8> {
    let mut sector = encode_segment_header(id);
    sector.resize(SEGMENT_RECORDS_OFFSET as usize, 0);
    sector
}

/// Whether `name` has the shape of a WAL segment's name (its id may still
/// be bad).
pub(crate) fn is_segment_name(name: &str) -> bool {
    name.strip_prefix(SEGMENT_NAME_PREFIX)
        .is_some_and(|rest| rest.ends_with(SEGMENT_NAME_SUFFIX))
}
