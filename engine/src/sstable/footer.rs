//! The footer: the fixed-size end of every table, read first.
//!
//! # Layout
//!
//! Versions 1 and 2 (52 bytes):
//!
//! ```text
//! index offset u64 LE | index size u32 LE
//! | bloom offset u64 LE | bloom size u32 LE
//! | meta offset u64 LE | meta size u32 LE
//! | format version u32 LE (1 or 2) | crc32 u32 LE of the 40 bytes before it
//! | magic "ENIGMSST" (8)
//! ```
//!
//! Version 3 (64 bytes): the dictionary block's handle in front, the rest
//! as before (so version, CRC and magic lie at the same distance from the
//! end of the file in every version, and a reader learns the footer's size
//! from the version):
//!
//! ```text
//! dictionary offset u64 LE | dictionary size u32 LE
//! | index ... | bloom ... | meta ... (as above)
//! | format version u32 LE (3) | crc32 u32 LE of the 52 bytes before it
//! | magic "ENIGMSST" (8)
//! ```
//!
//! Version 4: version 3's layout, the CRC taken over `table id u64 LE |
//! footer offset u64 LE` and then the 52 bytes, so a footer written at
//! another offset or into another table fails its check (versions 1 to 3
//! cannot detect that).
//!
//! Sizes exclude each block's 5-byte trailer, as in every [`BlockHandle`].

use crate::bytes::Reader;
use crate::error::EngineError;
use crate::sstable::frame::{block_crc, BlockHandle, BlockPlace};
use crate::sstable::{corruption, TableVersion, TABLE_FORMAT_VERSION};

/// Last bytes of every table.
const TABLE_MAGIC: [u8; 8] = *b"ENIGMSST";
/// Size of a version 1 or 2 footer.
const FOOTER_BYTES_V2: usize = 52;
/// Size of a version 3 or 4 footer, the largest: a reader reads this much of
/// the file's end (or the whole file, if shorter) to find the footer.
pub(crate) const FOOTER_BYTES_MAX: u64 = 64;
/// Bytes after the CRC-covered part: CRC and magic.
const FOOTER_TAIL_BYTES: usize = 12;
/// From the end: where the version lies.
const VERSION_FROM_END: usize = FOOTER_TAIL_BYTES + 4;

/// Where a table's metadata blocks are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Footer {
    /// The zstd dictionary block (version 3 on; an empty block if the table
    /// has no dictionary).
    pub(crate) dictionary: Option<BlockHandle>,
    pub(crate) index: BlockHandle,
    pub(crate) bloom: BlockHandle,
    pub(crate) meta: BlockHandle,
    /// The layout of the table's blocks.
    pub(crate) version: TableVersion,
}

impl Footer {
    /// The footer's bytes, to be written at `place` (which a version 4
    /// footer's CRC covers).
    ///
    /// # Panics
    /// If a version 3 or 4 footer has no dictionary handle or an older one
    /// has one: writers build footers that match their version.
    pub(crate) fn encode(&self, place: BlockPlace) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(FOOTER_BYTES_MAX as usize);
        assert_eq!(
            self.dictionary.is_some(),
            self.version.has_dictionary(),
            "a version 3 or 4 footer, and only it, names a dictionary"
        );
        for handle in self
            .dictionary
            .into_iter()
            .chain([self.index, self.bloom, self.meta])
        {
            let size = u32::try_from(handle.size).expect("metadata blocks stay under 4 GiB");
            bytes.extend_from_slice(&handle.offset.to_le_bytes());
            bytes.extend_from_slice(&size.to_le_bytes());
        }
        bytes.extend_from_slice(&self.version.number().to_le_bytes());
        let crc = block_crc(self.version.covers_place().then_some(place), &bytes);
        bytes.extend_from_slice(&crc.to_le_bytes());
        bytes.extend_from_slice(&TABLE_MAGIC);
        bytes
    }

    /// Decodes the footer at the end of `tail`, the last bytes of `file`
    /// (up to [`FOOTER_BYTES_MAX`]), which start at `tail_offset`, of table
    /// `table_id`. Checks magic, CRC and version, in that order, so that a
    /// table of another version is named as such rather than as damage.
    /// Returns the footer and its offset in the file.
    ///
    /// # Errors
    /// `Corruption` or `ChecksumMismatch` naming `file` and an offset.
    pub(crate) fn decode(
        tail: &[u8],
        file: &str,
        tail_offset: u64,
        table_id: u64,
    ) -> Result<(Footer, u64), EngineError> {
        let len = tail.len();
        if len < FOOTER_BYTES_V2 {
            return Err(corruption(file, 0, "file shorter than a table footer"));
        }
        let magic_at = len - TABLE_MAGIC.len();
        if tail[magic_at..] != TABLE_MAGIC {
            return Err(corruption(
                file,
                tail_offset + magic_at as u64,
                "bad table magic",
            ));
        }
        let number = Reader::new(&tail[len - VERSION_FROM_END..])
            .u32_le()
            .expect("4 bytes");
        let version = TableVersion::from_number(number);
        let footer_bytes = match version {
            Some(version) if version.has_dictionary() => FOOTER_BYTES_MAX as usize,
            _ => FOOTER_BYTES_V2,
        };
        if len < footer_bytes {
            return Err(corruption(file, 0, "file shorter than its table footer"));
        }
        let start = len - footer_bytes;
        let offset = tail_offset + start as u64;
        let bytes = &tail[start..];
        let checked = footer_bytes - FOOTER_TAIL_BYTES;
        let expected = Reader::new(&bytes[checked..]).u32_le().expect("4 bytes");
        let place = BlockPlace { table_id, offset };
        let covers_place = version.is_some_and(TableVersion::covers_place);
        let got = block_crc(covers_place.then_some(place), &bytes[..checked]);
        if expected != got {
            return Err(EngineError::ChecksumMismatch {
                file: file.to_owned(),
                offset,
                expected,
                got,
            });
        }
        let Some(version) = version else {
            return Err(corruption(
                file,
                offset,
                format!(
                    "unsupported table format version {number} (this build reads 1 to {TABLE_FORMAT_VERSION})"
                ),
            ));
        };
        let mut reader = Reader::new(bytes);
        let mut handle = || BlockHandle {
            offset: reader.u64_le().expect("fixed size"),
            size: u64::from(reader.u32_le().expect("fixed size")),
        };
        let dictionary = version.has_dictionary().then(&mut handle);
        let (index, bloom, meta) = (handle(), handle(), handle());
        Ok((
            Footer {
                dictionary,
                index,
                bloom,
                meta,
                version,
            },
            offset,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(version: TableVersion) -> Footer {
        Footer {
            dictionary: version.has_dictionary().then_some(BlockHandle {
                offset: 60,
                size: 35,
            }),
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
            version,
        }
    }

    const VERSIONS: [TableVersion; 4] = [
        TableVersion::V1,
        TableVersion::V2,
        TableVersion::V3,
        TableVersion::V4,
    ];

    /// Table 9's footer at offset 1000.
    const PLACE: BlockPlace = BlockPlace {
        table_id: 9,
        offset: 1000,
    };

    #[test]
    fn footers_of_every_version_round_trip_behind_other_bytes() {
        for version in VERSIONS {
            let footer = sample(version);
            let encoded = footer.encode(PLACE);
            assert_eq!(
                encoded.len(),
                if version.has_dictionary() { 64 } else { 52 }
            );
            assert_eq!(
                Footer::decode(&encoded, "t", 1000, 9).expect("decode"),
                (footer, 1000)
            );
            // As a reader sees it: the last 64 bytes of the file.
            let mut tail = vec![7_u8; 64 - encoded.len()];
            tail.extend_from_slice(&encoded);
            let tail_offset = 1000 - (64 - encoded.len() as u64);
            assert_eq!(
                Footer::decode(&tail, "t", tail_offset, 9).expect("decode"),
                (footer, 1000)
            );
        }
    }

    #[test]
    fn a_version_4_footer_elsewhere_or_in_another_table_is_a_checksum_mismatch() {
        let encoded = sample(TableVersion::V4).encode(PLACE);
        for (offset, table_id) in [(1001, 9), (1000, 10), (0, 9)] {
            assert!(matches!(
                Footer::decode(&encoded, "t", offset, table_id),
                Err(EngineError::ChecksumMismatch { .. })
            ));
        }
        // Version 3 cannot tell.
        let v3 = sample(TableVersion::V3).encode(PLACE);
        assert!(Footer::decode(&v3, "t", 0, 10).is_ok());
    }

    #[test]
    fn versions_1_to_4_are_read_and_others_rejected_by_name() {
        let with_version = |number: u32| {
            let mut bytes = sample(TableVersion::V2).encode(PLACE);
            bytes[36..40].copy_from_slice(&number.to_le_bytes());
            let crc = crc32fast::hash(&bytes[..40]);
            bytes[40..44].copy_from_slice(&crc.to_le_bytes());
            bytes
        };
        for version in [TableVersion::V1, TableVersion::V2] {
            let (footer, _) =
                Footer::decode(&with_version(version.number()), "t", 0, 9).expect("decode");
            assert_eq!(footer.version, version);
        }
        for number in [0, 5] {
            let err =
                Footer::decode(&with_version(number), "table-1", 500, 9).expect_err("version");
            assert!(
                err.to_string()
                    .contains(&format!("unsupported table format version {number}")),
                "{err}"
            );
            assert!(err.to_string().contains("table-1"), "{err}");
        }
        // A version 3 or 4 footer needs its 64 bytes.
        for version in [TableVersion::V3, TableVersion::V4] {
            let long = sample(version).encode(PLACE);
            assert!(Footer::decode(&long[10..], "t", 1010, 9).is_err());
        }
    }

    #[test]
    fn bad_magic_and_bad_crc_are_rejected() {
        for version in [TableVersion::V2, TableVersion::V3, TableVersion::V4] {
            let mut bytes = sample(version).encode(PLACE);
            let last = bytes.len() - 1;
            bytes[last] ^= 1;
            assert!(Footer::decode(&bytes, "t", 1000, 9).is_err());
            let mut bytes = sample(version).encode(PLACE);
            bytes[3] ^= 1;
            assert!(matches!(
                Footer::decode(&bytes, "t", 1000, 9),
                Err(EngineError::ChecksumMismatch { .. })
            ));
        }
    }
}
