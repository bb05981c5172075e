//! Block framing: how any block (data, index, bloom, meta) is stored.
//!
//! ```text
//! stored contents (size bytes) | compression u8 | crc32 u32 LE
//! ```
//!
//! The CRC covers the stored contents and the compression byte. With
//! compression [`COMPRESSION_LZ4`] the stored contents are
//! `uncompressed len u32 LE | lz4 block`. A [`BlockHandle`] names the stored
//! contents (offset and size, trailer excluded).

use crate::bytes::Reader;
use crate::error::EngineError;
use crate::sstable::{corruption, TableCompression};

/// Bytes after the stored contents: compression byte and CRC.
pub(crate) const TRAILER_BYTES: u64 = 5;
/// Largest block, stored or uncompressed. Bounds the allocation a length
/// read from disk can cause; a block holds at least one whole entry, so this
/// is above the largest key plus value the engine accepts in a WAL record.
pub(crate) const BLOCK_BYTES_LIMIT: u64 = 128 * 1024 * 1024;
/// Compression byte: stored as is.
const COMPRESSION_NONE: u8 = 0;
/// Compression byte: LZ4 block with its uncompressed length in front.
const COMPRESSION_LZ4: u8 = 1;
/// Bytes of the uncompressed length in front of an LZ4 block.
const LZ4_LEN_BYTES: usize = 4;
/// LZ4 cannot expand its input more than about 255-fold (one token byte
/// per 255 bytes of a match), so a larger claimed length is corruption, and
/// garbage cannot make the reader allocate far beyond the block's size.
const LZ4_EXPANSION_MAX: u64 = 256;

/// Where a block's stored contents lie in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BlockHandle {
    pub(crate) offset: u64,
    /// Stored contents only; the trailer follows.
    pub(crate) size: u64,
}

impl BlockHandle {
    /// The offset just past the block's trailer.
    pub(crate) fn end(&self) -> Option<u64> {
        self.offset
            .checked_add(self.size)?
            .checked_add(TRAILER_BYTES)
    }
}

/// Frames `contents`, compressing them if asked and if that saves bytes.
#[cfg(test)]
pub(crate) fn seal(contents: &[u8], compression: TableCompression) -> Vec<u8> {
    let mut out = Vec::new();
    seal_into(&mut out, contents, compression);
    out
}

/// Appends `contents`, framed, to `out` (compressed if asked and if that
/// saves bytes); returns how many bytes it appended.
pub(crate) fn seal_into(
    out: &mut Vec<u8>,
    contents: &[u8],
    compression: TableCompression,
) -> usize {
    assert!(
        contents.len() as u64 <= BLOCK_BYTES_LIMIT,
        "writers keep blocks under the limit"
    );
    let start = out.len();
    let mut kind = COMPRESSION_NONE;
    if compression == TableCompression::Lz4 {
        let bound = lz4_flex::block::get_maximum_output_size(contents.len());
        out.resize(start + LZ4_LEN_BYTES + bound, 0);
        let compressed =
            lz4_flex::block::compress_into(contents, &mut out[start + LZ4_LEN_BYTES..])
                .expect("the output holds the worst case");
        if compressed + LZ4_LEN_BYTES < contents.len() {
            let len = u32::try_from(contents.len()).expect("under BLOCK_BYTES_LIMIT");
            out[start..start + LZ4_LEN_BYTES].copy_from_slice(&len.to_le_bytes());
            out.truncate(start + LZ4_LEN_BYTES + compressed);
            kind = COMPRESSION_LZ4;
        } else {
            out.truncate(start);
        }
    }
    if kind == COMPRESSION_NONE {
        out.extend_from_slice(contents);
    }
    out.push(kind);
    let crc = crc32fast::hash(&out[start..]);
    out.extend_from_slice(&crc.to_le_bytes());
    out.len() - start
}

/// Checks and unpacks a block read from `file` at `offset`: `framed` is the
/// stored contents followed by the trailer.
///
/// # Errors
/// `ChecksumMismatch` or `Corruption` naming `file` and `offset`.
pub(crate) fn unseal(framed: &[u8], file: &str, offset: u64) -> Result<Vec<u8>, EngineError> {
    let size = framed
        .len()
        .checked_sub(TRAILER_BYTES as usize)
        .ok_or_else(|| corruption(file, offset, "block shorter than its trailer"))?;
    let (body, crc_bytes) = framed.split_at(size + 1);
    let expected = u32::from_le_bytes(crc_bytes.try_into().expect("trailer holds 4 crc bytes"));
    let got = crc32fast::hash(body);
    if expected != got {
        return Err(EngineError::ChecksumMismatch {
            file: file.to_owned(),
            offset,
            expected,
            got,
        });
    }
    let (stored, kind) = body.split_at(size);
    match kind[0] {
        COMPRESSION_NONE => Ok(stored.to_vec()),
        COMPRESSION_LZ4 => {
            let mut reader = Reader::new(stored);
            let len = reader
                .u32_le()
                .ok_or_else(|| corruption(file, offset, "lz4 block without its length"))?;
            if u64::from(len) > BLOCK_BYTES_LIMIT {
                return Err(corruption(
                    file,
                    offset,
                    format!("lz4 block claims {len} bytes, over the limit {BLOCK_BYTES_LIMIT}"),
                ));
            }
            let compressed = &stored[LZ4_LEN_BYTES..];
            let expansion_max = (compressed.len() as u64 + 1).saturating_mul(LZ4_EXPANSION_MAX);
            if u64::from(len) > expansion_max {
                return Err(corruption(
                    file,
                    offset,
                    format!(
                        "lz4 block of {} bytes claims {len} uncompressed bytes",
                        compressed.len()
                    ),
                ));
            }
            let contents = lz4_flex::block::decompress(compressed, len as usize)
                .map_err(|err| corruption(file, offset, format!("lz4: {err}")))?;
            if contents.len() != len as usize {
                return Err(corruption(
                    file,
                    offset,
                    "lz4 block shorter than its length",
                ));
            }
            Ok(contents)
        }
        other => Err(corruption(
            file,
            offset,
            format!("unknown block compression {other}"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn compressible_block_is_compressed_and_round_trips() {
        let contents = b"abcabcabc".repeat(200);
        let sealed = seal(&contents, TableCompression::Lz4);
        assert!(sealed.len() < contents.len() / 2);
        assert_eq!(unseal(&sealed, "t", 0).expect("unseal"), contents);
        let plain = seal(&contents, TableCompression::None);
        assert_eq!(plain.len(), contents.len() + TRAILER_BYTES as usize);
        assert_eq!(unseal(&plain, "t", 0).expect("unseal"), contents);
    }

    #[test]
    fn flipped_bit_is_a_checksum_mismatch_naming_file_and_offset() {
        let mut sealed = seal(b"some block contents", TableCompression::None);
        sealed[3] ^= 0x10;
        match unseal(&sealed, "table-x", 4096) {
            Err(EngineError::ChecksumMismatch { file, offset, .. }) => {
                assert_eq!((file.as_str(), offset), ("table-x", 4096));
            }
            other => panic!("expected a checksum mismatch, got {other:?}"),
        }
    }

    proptest! {
        #[test]
        fn unseal_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..64)) {
            let _ = unseal(&bytes, "t", 0);
        }

        #[test]
        fn lz4_with_valid_crc_but_garbage_body_never_panics(
            body in prop::collection::vec(any::<u8>(), 0..64),
        ) {
            let mut framed = body;
            framed.push(COMPRESSION_LZ4);
            let crc = crc32fast::hash(&framed);
            framed.extend_from_slice(&crc.to_le_bytes());
            let _ = unseal(&framed, "t", 0);
        }
    }
}
