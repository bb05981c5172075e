//! Record framing and the batch codec: encoding records, and decoding
//! batch payloads without trusting any length in them.

use super::*;
use crate::error::EngineError;

/// Where a record lies: its segment and its offset in it. From format 3 on
/// a record's checksum covers them, so a record written at the wrong
/// offset or into another segment (a misdirected write) fails its check
/// where it landed, like any other damage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RecordPlace {
    pub(crate) segment_id: u64,
    pub(crate) offset: u64,
}

/// The checksum of a record of `record_type` with `payload` at `place`
/// (`None` in formats 1 and 2, whose checksums cover the type byte and
/// the payload only). The place goes in first, as 16 bytes, so it costs
/// one short update per record.
pub(crate) fn record_crc(place: Option<RecordPlace>, record_type: u8, payload: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    if let Some(place) = place {
        hasher.update(&place.segment_id.to_le_bytes());
        hasher.update(&place.offset.to_le_bytes());
    }
    hasher.update(&[record_type]);
    hasher.update(payload);
    hasher.finalize()
}

/// A padding record of `total_bytes` bytes, header included, at `place`
/// (`None`: a format-1 or format-2 record).
pub(super) fn encode_padding_record(total_bytes: usize, place: Option<RecordPlace>) -> Vec<u8> {
    assert!(
        total_bytes >= RECORD_HEADER_BYTES,
        "padding smaller than a record header"
    );
    let payload = vec![0u8; total_bytes - RECORD_HEADER_BYTES];
    let crc = record_crc(place, RECORD_TYPE_PADDING, &payload);
    let mut record = Vec::with_capacity(total_bytes);
    record.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    record.extend_from_slice(&crc.to_le_bytes());
    record.push(RECORD_TYPE_PADDING);
    record.extend_from_slice(&payload);
    record
}

/// The sync record that ends at `end` (a sector boundary), saying that
/// syncs before it made the segment's first `synced_len` bytes durable, in
/// segment `segment_id` (`None`: a format-2 record).
pub(super) fn encode_sync_record(synced_len: u64, end: u64, segment_id: Option<u64>) -> Vec<u8> {
    assert_eq!(end % SECTOR_BYTES, 0, "a sync record ends a sector");
    assert!(
        synced_len <= end - SYNC_RECORD_BYTES,
        "a sync record vouches only for bytes before it"
    );
    let mut payload = vec![0_u8; SYNC_RECORD_BYTES as usize - RECORD_HEADER_BYTES];
    payload[0..8].copy_from_slice(&synced_len.to_le_bytes());
    payload[8..16].copy_from_slice(&end.to_le_bytes());
    let place = segment_id.map(|segment_id| RecordPlace {
        segment_id,
        offset: end - SYNC_RECORD_BYTES,
    });
    let crc = record_crc(place, RECORD_TYPE_SYNC, &payload);
    let mut record = Vec::with_capacity(SYNC_RECORD_BYTES as usize);
    record.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    record.extend_from_slice(&crc.to_le_bytes());
    record.push(RECORD_TYPE_SYNC);
    record.extend_from_slice(&payload);
    record
}

/// The synced length a sync record's payload states, given that the
/// record (checksum already verified) ends at `end`; `None` if the payload
/// is not that of a sync record ending there (wrong size, wrong end,
/// nonzero filler, or a claim past the record itself).
pub(super) fn decode_sync_record(payload: &[u8], end: u64) -> Option<u64> {
    if payload.len() as u64 != SYNC_RECORD_BYTES - RECORD_HEADER_BYTES as u64 {
        return None;
    }
    let synced_len = le_u64(&payload[0..8]);
    let stated_end = le_u64(&payload[8..16]);
    let filler_zero = payload[16..].iter().all(|&b| b == 0);
    let sound = stated_end == end
        && end % SECTOR_BYTES == 0
        && filler_zero
        && synced_len <= end - SYNC_RECORD_BYTES;
    sound.then_some(synced_len)
}

/// Reads a batch payload without trusting any length in it.
pub(super) struct PayloadReader<'a> {
    payload: &'a [u8],
    position: usize,
}

impl<'a> PayloadReader<'a> {
    pub(super) fn take(&mut self, len: usize) -> Option<&'a [u8]> {
        let end = self.position.checked_add(len)?;
        let bytes = self.payload.get(self.position..end)?;
        self.position = end;
        Some(bytes)
    }

    pub(super) fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|bytes| bytes[0])
    }

    pub(super) fn u32(&mut self) -> Option<u32> {
        self.take(4).map(le_u32)
    }

    pub(super) fn u64(&mut self) -> Option<u64> {
        self.take(8).map(le_u64)
    }

    pub(super) fn bytes(&mut self) -> Option<Vec<u8>> {
        let len = self.u32()?;
        self.take(len as usize).map(<[u8]>::to_vec)
    }
}

/// Decodes a batch payload that starts at `payload_offset` of `file`.
pub(super) fn decode_batch(
    payload: &[u8],
    file: &str,
    payload_offset: u64,
) -> Result<Vec<WalEntry>, EngineError> {
    let mut reader = PayloadReader {
        payload,
        position: 0,
    };
    let corruption = |position: usize, reason: &str| EngineError::Corruption {
        file: file.to_owned(),
        offset: payload_offset + position as u64,
        reason: format!("batch record {reason}"),
    };
    let count = reader
        .u32()
        .ok_or_else(|| corruption(0, "has no entry count"))?;
    if count == 0 {
        return Err(corruption(0, "has no entries"));
    }
    // No capacity from `count`: it came from disk. Each entry consumes at
    // least one byte, so the loop is bounded by the payload length.
    let mut entries = Vec::new();
    for index in 0..count {
        let start = reader.position;
        let truncated = || corruption(start, &format!("entry {index} of {count} is truncated"));
        let key = reader.bytes().ok_or_else(truncated)?;
        let hlc = reader.u64().ok_or_else(truncated)?;
        let node = reader.u32().ok_or_else(truncated)?;
        let value = match reader.u8().ok_or_else(truncated)? {
            KIND_TOMBSTONE => None,
            KIND_VALUE => Some(reader.bytes().ok_or_else(truncated)?),
            kind => {
                return Err(corruption(
                    start,
                    &format!("entry {index} has unknown kind {kind}"),
                ))
            }
        };
        entries.push((
            key,
            Versioned {
                timestamp: Timestamp { hlc, node },
                value,
            },
        ));
    }
    if reader.position != payload.len() {
        return Err(corruption(
            reader.position,
            "has trailing bytes after its entries",
        ));
    }
    Ok(entries)
}

/// The encoded size of one entry.
pub(crate) fn entry_encoded_bytes(key: &[u8], version: &Versioned) -> usize {
    ENTRY_FIXED_BYTES
        + key.len()
        + version
            .value
            .as_ref()
            .map_or(0, |v| VALUE_LEN_BYTES + v.len())
}

/// The payload size of a batch holding one entry with the largest key and
/// value; `None` if it overflows.
pub(crate) fn single_entry_payload_bytes_max(
    key_bytes_max: usize,
    value_bytes_max: usize,
) -> Option<usize> {
    key_bytes_max
        .checked_add(value_bytes_max)?
        .checked_add(ENTRY_FIXED_BYTES + VALUE_LEN_BYTES)
        .map(batch_payload_bytes)
}

/// The payload size of a batch of entries of `entries_bytes` encoded bytes.
pub(crate) fn batch_payload_bytes(entries_bytes: usize) -> usize {
    BATCH_COUNT_BYTES + entries_bytes
}

/// The size of the record holding `entries`, frame header included.
pub(super) fn batch_record_bytes(entries: &[(&[u8], &Versioned)]) -> usize {
    let entries_bytes: usize = entries.iter().map(|(k, v)| entry_encoded_bytes(k, v)).sum();
    RECORD_HEADER_BYTES + batch_payload_bytes(entries_bytes)
}

/// Appends a batch as a whole record (frame header and payload) to `out`,
/// the record to lie at `place` (`None`: a format-1 or format-2 record).
///
/// # Panics
/// If `entries` is empty or too large for a record: callers check first.
pub(super) fn encode_batch_record_into(
    out: &mut Vec<u8>,
    entries: &[(&[u8], &Versioned)],
    place: Option<RecordPlace>,
) {
    assert!(!entries.is_empty(), "an empty batch is never logged");
    let record_len = batch_record_bytes(entries);
    let payload_len = record_len - RECORD_HEADER_BYTES;
    assert!(
        payload_len <= RECORD_PAYLOAD_BYTES_MAX as usize,
        "caller bounds the batch size"
    );
    let count = u32::try_from(entries.len()).expect("bounded by the payload size");
    let start = out.len();
    out.reserve(record_len);
    out.extend_from_slice(&[0_u8; 8]); // len and crc, filled in below
    out.push(RECORD_TYPE_BATCH);
    out.extend_from_slice(&count.to_le_bytes());
    for (key, version) in entries {
        let key_len = u32::try_from(key.len()).expect("bounded by the payload size");
        out.extend_from_slice(&key_len.to_le_bytes());
        out.extend_from_slice(key);
        out.extend_from_slice(&version.timestamp.hlc.to_le_bytes());
        out.extend_from_slice(&version.timestamp.node.to_le_bytes());
        match &version.value {
            None => out.push(KIND_TOMBSTONE),
            Some(value) => {
                out.push(KIND_VALUE);
                let value_len = u32::try_from(value.len()).expect("bounded by the payload size");
                out.extend_from_slice(&value_len.to_le_bytes());
                out.extend_from_slice(value);
            }
        }
    }
    assert_eq!(out.len() - start, record_len);
    let crc = record_crc(place, RECORD_TYPE_BATCH, &out[start + 9..]);
    let payload_len = u32::try_from(payload_len).expect("checked against the maximum above");
    out[start..start + 4].copy_from_slice(&payload_len.to_le_bytes());
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

/// Encodes a batch as a whole record: frame header and payload.
#[cfg(test)]
pub(super) fn encode_batch_record(
    entries: &[(&[u8], &Versioned)],
    place: Option<RecordPlace>,
) -> Vec<u8> {
    let mut record = Vec::new();
    encode_batch_record_into(&mut record, entries, place);
    record
}
