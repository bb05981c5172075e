//! The footer: the fixed-size end of every table, read first.
//!
//! # Layout (52 bytes)
//!
//! ```text
//! index offset u64 LE | index size u32 LE
//! | bloom offset u64 LE | bloom size u32 LE
//! | meta offset u64 LE | meta size u32 LE
//! | format version u32 LE (1 or 2) | crc32 u32 LE of the 40 bytes before it
//! | magic "ENIGMSST" (8)
//! ```
//!
//! Sizes exclude each block's 5-byte trailer, as in every [`BlockHandle`].

use crate::bytes::Reader;
use crate::error::EngineError;
use crate::sstable::frame::BlockHandle;
use crate::sstable::{corruption, TableVersion, TABLE_FORMAT_VERSION};

/// Last bytes of every table.
const TABLE_MAGIC: [u8; 8] = *b"ENIGMSST";
/// Size of the footer.
pub(crate) const FOOTER_BYTES: u64 = 52;
/// Bytes covered by the footer's CRC.
const FOOTER_CHECKED_BYTES: usize = 40;

/// Where a table's metadata blocks are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Footer {
    pub(crate) index: BlockHandle,
    pub(crate) bloom: BlockHandle,
    pub(crate) meta: BlockHandle,
    /// The layout of the table's blocks.
    pub(crate) version: TableVersion,
}

impl Footer {
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(FOOTER_BYTES as usize);
        for handle in [self.index, self.bloom, self.meta] {
            let size = u32::try_from(handle.size).expect("metadata blocks stay under 4 GiB");
            bytes.extend_from_slice(&handle.offset.to_le_bytes());
            bytes.extend_from_slice(&size.to_le_bytes());
        }
        bytes.extend_from_slice(&self.version.number().to_le_bytes());
        let crc = crc32fast::hash(&bytes);
        bytes.extend_from_slice(&crc.to_le_bytes());
        bytes.extend_from_slice(&TABLE_MAGIC);
        assert_eq!(bytes.len() as u64, FOOTER_BYTES);
        bytes
    }

    /// Decodes the footer found at `offset` of `file`. Checks magic, CRC
    /// and version, in that order, so that a table of another version is
    /// named as such rather than as damage.
    ///
    /// # Errors
    /// `Corruption` or `ChecksumMismatch` naming `file` and `offset`.
    pub(crate) fn decode(bytes: &[u8], file: &str, offset: u64) -> Result<Footer, EngineError> {
        if bytes.len() as u64 != FOOTER_BYTES {
            return Err(corruption(file, offset, "footer has the wrong size"));
        }
        if bytes[FOOTER_CHECKED_BYTES + 4..] != TABLE_MAGIC {
            return Err(corruption(file, offset, "bad table magic"));
        }
        let mut reader = Reader::new(bytes);
        let mut handles = [BlockHandle { offset: 0, size: 0 }; 3];
        for handle in &mut handles {
            handle.offset = reader.u64_le().expect("fixed size");
            handle.size = u64::from(reader.u32_le().expect("fixed size"));
        }
        let version = reader.u32_le().expect("fixed size");
        let expected = reader.u32_le().expect("fixed size");
        let got = crc32fast::hash(&bytes[..FOOTER_CHECKED_BYTES]);
        if expected != got {
            return Err(EngineError::ChecksumMismatch {
                file: file.to_owned(),
                offset,
                expected,
                got,
            });
        }
        let Some(version) = TableVersion::from_number(version) else {
            return Err(corruption(
                file,
                offset,
                format!(
                    "unsupported table format version {version} (this build reads 1 to {TABLE_FORMAT_VERSION})"
                ),
            ));
        };
        let [index, bloom, meta] = handles;
        Ok(Footer {
            index,
            bloom,
            meta,
            version,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Footer {
        Footer {
            index: BlockHandle {
                offset: 100,
                size: 20,
            },
            bloom: BlockHandle {
                offset: 125,
                size: 9,
            },
            meta: BlockHandle {
                offset: 139,
                size: 40,
            },
            version: TableVersion::V2,
        }
    }

    #[test]
    fn footer_round_trips() {
        let footer = sample();
        assert_eq!(
            Footer::decode(&footer.encode(), "t", 0).expect("decode"),
            footer
        );
    }

    #[test]
    fn versions_1_and_2_are_read_and_others_rejected_by_name() {
        let with_version = |number: u32| {
            let mut bytes = sample().encode();
            bytes[36..40].copy_from_slice(&number.to_le_bytes());
            let crc = crc32fast::hash(&bytes[..40]);
            bytes[40..44].copy_from_slice(&crc.to_le_bytes());
            bytes
        };
        for version in [TableVersion::V1, TableVersion::V2] {
            let footer = Footer::decode(&with_version(version.number()), "t", 0).expect("decode");
            assert_eq!(footer.version, version);
        }
        for number in [0, 3] {
            let err = Footer::decode(&with_version(number), "table-1", 500).expect_err("version");
            assert!(
                err.to_string()
                    .contains(&format!("unsupported table format version {number}")),
                "{err}"
            );
            assert!(err.to_string().contains("table-1"), "{err}");
        }
    }

    #[test]
    fn bad_magic_and_bad_crc_are_rejected() {
        let mut bytes = sample().encode();
        bytes[51] ^= 1;
        assert!(Footer::decode(&bytes, "t", 0).is_err());
        let mut bytes = sample().encode();
        bytes[3] ^= 1;
        assert!(matches!(
            Footer::decode(&bytes, "t", 0),
            Err(EngineError::ChecksumMismatch { .. })
        ));
    }
}
