//! SSTables: immutable, sorted, checksummed files of versioned entries.
//!
//! # Layout (format version 4, all integers little-endian)
//!
//! ```text
//! data block 0 | data block 1 | ... | dictionary block | index block
//! | bloom block | meta block | footer
//! ```
//!
//! (Versions 1 and 2 have no dictionary block and a shorter footer; version
//! 3 is version 4's layout with checksums that do not cover the place.)
//!
//! Every block is stored as `contents | compression u8 | crc32 u32` where the
//! CRC covers the block's place (table id and offset, version 4 on), the
//! contents and the compression byte ([`frame`]): a block written at the
//! wrong offset or into another table fails its check where it landed. Data blocks
//! ([`block`]) hold entries with prefix-compressed keys and restart points;
//! the dictionary block holds the zstd dictionary the table's zstd blocks
//! were compressed with (empty if none: flushed LZ4 tables, small tables);
//! the index block ([`index`]) holds, per data block, its last key and
//! handle; the bloom block ([`bloom`]) a filter over every key; the meta
//! block ([`meta`]) the key range, timestamp range and counts; the fixed-size
//! footer ([`footer`]) the four handles, the format version, a CRC and the
//! magic. [`writer`] writes a table under a temporary name, syncs it, renames
//! it and syncs the directory; [`reader`] opens one and serves point reads
//! and ordered iteration, reporting any damage as an [`EngineError`] naming
//! the file and offset.
//!
//! docs/FORMAT.md, section "SSTable", describes the same bytes for readers
//! outside the code.

pub(crate) mod block;
pub(crate) mod bloom;
pub(crate) mod cache;
pub(crate) mod footer;
pub(crate) mod frame;
pub(crate) mod index;
pub(crate) mod meta;
pub(crate) mod reader;
pub(crate) mod writer;

use crate::error::EngineError;
#[cfg(test)]
use crate::types::Versioned;

/// One entry of a table: a key and its (single, newest) version.
#[cfg(test)]
pub(crate) type TableEntry = (Vec<u8>, Versioned);

/// Version of the layout above, which this build writes; bumped on any
/// incompatible change.
pub(crate) const TABLE_FORMAT_VERSION: u32 = 4;

/// The table format versions this build reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TableVersion {
    /// Fixed-width timestamps in data blocks, fixed-width handles in the
    /// index.
    V1,
    /// Varint timestamps (delta-coded within a restart interval) and value
    /// lengths in data blocks, prefix-compressed keys and implied offsets
    /// in the index, zstd blocks.
    V2,
    /// Version 2 plus a zstd dictionary block (possibly empty) and blocks
    /// compressed with it; a 64-byte footer naming it.
    V3,
    /// Version 3 whose block and footer checksums cover the place (table
    /// id and offset): a misdirected write is detected. Versions 1 to 3
    /// cannot detect one.
    V4,
}

impl TableVersion {
    /// The version a table's footer names, if this build reads it.
    pub(crate) fn from_number(number: u32) -> Option<TableVersion> {
        match number {
            1 => Some(TableVersion::V1),
            2 => Some(TableVersion::V2),
            3 => Some(TableVersion::V3),
            4 => Some(TableVersion::V4),
            _ => None,
        }
    }

    /// The number a footer stores.
    pub(crate) fn number(self) -> u32 {
        match self {
            TableVersion::V1 => 1,
            TableVersion::V2 => 2,
            TableVersion::V3 => 3,
            TableVersion::V4 => 4,
        }
    }

    /// Whether the table has a dictionary block and a 64-byte footer.
    pub(crate) fn has_dictionary(self) -> bool {
        matches!(self, TableVersion::V3 | TableVersion::V4)
    }

    /// Whether checksums cover the place of what they check (table id and
    /// offset), so that a misdirected write is detected.
    pub(crate) fn covers_place(self) -> bool {
        self == TableVersion::V4
    }
}

/// Table file names: prefix, zero-padded id, suffix.
const TABLE_NAME_PREFIX: &str = "table-";
const TABLE_NAME_SUFFIX: &str = ".sst";
/// Suffix of a table being written; such files are garbage at open.
pub(crate) const TEMPORARY_SUFFIX: &str = ".tmp";
const TABLE_ID_DIGITS: usize = 20;

/// How data blocks are compressed (each block only where it saves bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TableCompression {
    /// Stored as is.
    None,
    /// LZ4 per block: fast both ways, but no entropy coding.
    Lz4,
    /// zstd per block at `level` (1 to 19): entropy-coded, so smaller
    /// (random printable bytes take about 6.6 bits each instead of 8), but
    /// several times slower than LZ4 to decompress.
    Zstd {
        /// zstd's compression level.
        level: i32,
    },
}

/// zstd levels [`TableCompression::Zstd`] accepts.
pub(crate) const ZSTD_LEVELS: std::ops::RangeInclusive<i32> = 1..=19;

/// How tables are written. Checked by [`crate::EngineOptions::validate`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TableOptions {
    /// A data block is closed once its contents reach this size.
    pub(crate) block_bytes_target: usize,
    /// Compression of data blocks.
    pub(crate) compression: TableCompression,
    /// Bloom filter bits per key.
    pub(crate) bloom_bits_per_key: u32,
}

/// The file name of table `id`.
pub(crate) fn table_name(id: u64) -> String {
    format!(
        "{TABLE_NAME_PREFIX}{id:0width$}{TABLE_NAME_SUFFIX}",
        width = TABLE_ID_DIGITS
    )
}

/// The id of a table file name, or `None` for any other name.
pub(crate) fn parse_table_name(name: &str) -> Option<u64> {
    let digits = name
        .strip_prefix(TABLE_NAME_PREFIX)?
        .strip_suffix(TABLE_NAME_SUFFIX)?;
    if digits.len() != TABLE_ID_DIGITS || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// A corruption error at `offset` of `file`.
pub(crate) fn corruption(file: &str, offset: u64, reason: impl Into<String>) -> EngineError {
    EngineError::Corruption {
        file: file.to_owned(),
        offset,
        reason: reason.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_names_round_trip_and_others_are_ignored() {
        assert_eq!(parse_table_name(&table_name(42)), Some(42));
        assert_eq!(parse_table_name("table-42.sst"), None);
        assert_eq!(parse_table_name(&format!("{}.tmp", table_name(1))), None);
        assert_eq!(parse_table_name("wal-00000000000000000001.log"), None);
    }
}
