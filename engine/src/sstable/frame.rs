//! Block framing: how any block (data, index, bloom, meta) is stored.
//!
//! ```text
//! stored contents (size bytes) | compression u8 | crc32 u32 LE
//! ```
//!
//! The CRC covers the stored contents and the compression byte, and from
//! table format version 4 on the block's place first: `table id u64 LE |
//! block offset u64 LE` (see [`block_crc`]), so a block written at the
//! wrong offset or into another table file (a misdirected write) fails its
//! check where it landed; older tables cannot detect one. With
//! compression [`COMPRESSION_LZ4`] the stored contents are
//! `uncompressed len u32 LE | lz4 block`; with [`COMPRESSION_ZSTD`],
//! `uncompressed len u32 LE | zstd frame` (one frame, no zstd checksum: the
//! CRC covers it); with [`COMPRESSION_ZSTD_DICTIONARY`] (format version 3
//! on), the same, the frame compressed with the table's zstd dictionary
//! (its dictionary block). A [`BlockHandle`] names the stored contents
//! (offset and size, trailer excluded).

use std::fmt;

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
/// Compression byte: zstd frame with its uncompressed length in front
/// (table format version 2 on).
const COMPRESSION_ZSTD: u8 = 2;
/// Compression byte: zstd frame made with the table's dictionary, its
/// uncompressed length in front (table format version 3 on).
const COMPRESSION_ZSTD_DICTIONARY: u8 = 3;
/// Bytes of the uncompressed length in front of a compressed block.
const LEN_BYTES: usize = 4;
/// LZ4 cannot expand its input more than about 255-fold (one token byte
/// per 255 bytes of a match), so a larger claimed length is corruption, and
/// garbage cannot make the reader allocate far beyond the block's size.
const LZ4_EXPANSION_MAX: u64 = 256;
/// zstd can expand a 4-byte run-length block into 128 KiB.
const ZSTD_EXPANSION_MAX: u64 = 32 * 1024;

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

/// Where a block lies: its table and its offset in the table's file. From
/// table format version 4 on, a block's checksum covers it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BlockPlace {
    pub(crate) table_id: u64,
    pub(crate) offset: u64,
}

/// The checksum of a block's stored contents and compression byte
/// (`body`) at `place` (`None` for versions 1 to 3, which cover the body
/// alone). The place is hashed first, 16 bytes, so its cost does not grow
/// with the block.
pub(crate) fn block_crc(place: Option<BlockPlace>, body: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    if let Some(place) = place {
        hasher.update(&place.table_id.to_le_bytes());
        hasher.update(&place.offset.to_le_bytes());
    }
    hasher.update(body);
    hasher.finalize()
}

/// Compression state reused from block to block: zstd's contexts cost
/// about a hundred kilobytes each to set up, far more than a block.
#[derive(Default)]
pub(crate) struct Codec {
    /// A compressor and the level it was made for.
    zstd_compressor: Option<(i32, zstd::bulk::Compressor<'static>)>,
    zstd_decompressor: Option<zstd::bulk::Decompressor<'static>>,
    /// A compressor holding the table's dictionary (a writer's, once
    /// trained); while set, zstd blocks are compressed with it.
    zstd_dictionary_compressor: Option<zstd::bulk::Compressor<'static>>,
    /// A decompressor holding the table's dictionary (a reader's, loaded at
    /// open): its entropy tables are built once, not per block.
    zstd_dictionary_decompressor: Option<zstd::bulk::Decompressor<'static>>,
    /// Where a block is compressed before it is copied behind its length.
    scratch: Vec<u8>,
}

impl fmt::Debug for Codec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Codec")
            .field("zstd_compressor", &self.zstd_compressor.is_some())
            .field("zstd_decompressor", &self.zstd_decompressor.is_some())
            .field(
                "zstd_dictionary",
                &(self.zstd_dictionary_compressor.is_some()
                    || self.zstd_dictionary_decompressor.is_some()),
            )
            .finish_non_exhaustive()
    }
}

impl Codec {
    pub(crate) fn new() -> Codec {
        Codec::default()
    }

    /// From now on, compresses zstd blocks at `level` with `dictionary`
    /// (frames without the dictionary's id: a table has one dictionary);
    /// `false`, changing nothing, if zstd does not accept it.
    pub(crate) fn use_zstd_dictionary_for_writing(
        &mut self,
        level: i32,
        dictionary: &[u8],
    ) -> bool {
        let made = zstd::bulk::Compressor::with_dictionary(level, dictionary).and_then(
            |mut compressor| {
                compressor.set_parameter(zstd::zstd_safe::CParameter::DictIdFlag(false))?;
                Ok(compressor)
            },
        );
        match made {
            Ok(compressor) => {
                self.zstd_dictionary_compressor = Some(compressor);
                true
            }
            Err(_) => false,
        }
    }

    /// Decompresses [`COMPRESSION_ZSTD_DICTIONARY`] blocks with
    /// `dictionary` from now on.
    ///
    /// # Errors
    /// zstd's reason if it does not accept the dictionary.
    pub(crate) fn use_zstd_dictionary_for_reading(
        &mut self,
        dictionary: &[u8],
    ) -> Result<(), String> {
        let decompressor =
            zstd::bulk::Decompressor::with_dictionary(dictionary).map_err(|err| err.to_string())?;
        self.zstd_dictionary_decompressor = Some(decompressor);
        Ok(())
    }

    /// Compresses `contents` into `self.scratch` with zstd at `level`;
    /// `false` if zstd failed (the block is then stored as is).
    fn zstd_compress(&mut self, contents: &[u8], level: i32) -> bool {
        if self
            .zstd_compressor
            .as_ref()
            .is_none_or(|(l, _)| *l != level)
        {
            match zstd::bulk::Compressor::new(level) {
                Ok(compressor) => self.zstd_compressor = Some((level, compressor)),
                Err(_) => return false,
            }
        }
        let (_, compressor) = self.zstd_compressor.as_mut().expect("set above");
        compress_into(compressor, contents, &mut self.scratch)
    }

    /// Whether blocks are compressed or decompressed with a dictionary.
    #[cfg(test)]
    pub(crate) fn has_zstd_dictionary(&self) -> bool {
        self.zstd_dictionary_compressor.is_some() || self.zstd_dictionary_decompressor.is_some()
    }

    /// Compresses `contents` into `self.scratch` with the dictionary's
    /// compressor; `false` if zstd failed.
    fn zstd_compress_with_dictionary(&mut self, contents: &[u8]) -> bool {
        let Some(compressor) = self.zstd_dictionary_compressor.as_mut() else {
            return false;
        };
        compress_into(compressor, contents, &mut self.scratch)
    }

    /// Decompresses the zstd frame `compressed` into `out` (empty, with
    /// room for exactly `len` bytes), with the table's dictionary if
    /// `dictionary`; `Err` with zstd's reason otherwise.
    fn zstd_decompress(
        &mut self,
        compressed: &[u8],
        out: &mut Vec<u8>,
        dictionary: bool,
    ) -> Result<(), String> {
        if dictionary {
            let decompressor = self
                .zstd_dictionary_decompressor
                .as_mut()
                .ok_or("a dictionary block in a table without a dictionary")?;
            return decompressor
                .decompress_to_buffer(compressed, out)
                .map(|_| ())
                .map_err(|err| err.to_string());
        }
        if self.zstd_decompressor.is_none() {
            let decompressor = zstd::bulk::Decompressor::new().map_err(|err| err.to_string())?;
            self.zstd_decompressor = Some(decompressor);
        }
        let decompressor = self.zstd_decompressor.as_mut().expect("set above");
        decompressor
            .decompress_to_buffer(compressed, out)
            .map(|_| ())
            .map_err(|err| err.to_string())
    }
}

/// Compresses `contents` into `scratch` (cleared first) with `compressor`;
/// `false` if zstd failed.
fn compress_into(
    compressor: &mut zstd::bulk::Compressor<'static>,
    contents: &[u8],
    scratch: &mut Vec<u8>,
) -> bool {
    scratch.clear();
    scratch.reserve(zstd::zstd_safe::compress_bound(contents.len()));
    compressor.compress_to_buffer(contents, scratch).is_ok()
}

/// Frames `contents`, compressing them if asked and if that saves bytes.
#[cfg(test)]
pub(crate) fn seal(contents: &[u8], compression: TableCompression) -> Vec<u8> {
    let mut out = Vec::new();
    seal_into(&mut out, contents, compression, &mut Codec::new(), None);
    out
}

/// Appends `contents`, framed, to `out` (compressed if asked and if that
/// saves bytes), its checksum covering `place`, where the block goes
/// (`None`: a version 1 to 3 block); returns how many bytes it appended.
pub(crate) fn seal_into(
    out: &mut Vec<u8>,
    contents: &[u8],
    compression: TableCompression,
    codec: &mut Codec,
    place: Option<BlockPlace>,
) -> usize {
    assert!(
        contents.len() as u64 <= BLOCK_BYTES_LIMIT,
        "writers keep blocks under the limit"
    );
    let start = out.len();
    let len = u32::try_from(contents.len()).expect("under BLOCK_BYTES_LIMIT");
    let mut kind = COMPRESSION_NONE;
    match compression {
        TableCompression::None => {}
        TableCompression::Lz4 => {
            let bound = lz4_flex::block::get_maximum_output_size(contents.len());
            out.resize(start + LEN_BYTES + bound, 0);
            let compressed =
                lz4_flex::block::compress_into(contents, &mut out[start + LEN_BYTES..])
                    .expect("the output holds the worst case");
            if compressed + LEN_BYTES < contents.len() {
                out[start..start + LEN_BYTES].copy_from_slice(&len.to_le_bytes());
                out.truncate(start + LEN_BYTES + compressed);
                kind = COMPRESSION_LZ4;
            } else {
                out.truncate(start);
            }
        }
        TableCompression::Zstd { level } => {
            let (compressed, zstd_kind) = if codec.zstd_dictionary_compressor.is_some() {
                (
                    codec.zstd_compress_with_dictionary(contents),
                    COMPRESSION_ZSTD_DICTIONARY,
                )
            } else {
                (codec.zstd_compress(contents, level), COMPRESSION_ZSTD)
            };
            if compressed && codec.scratch.len() + LEN_BYTES < contents.len() {
                out.extend_from_slice(&len.to_le_bytes());
                out.extend_from_slice(&codec.scratch);
                kind = zstd_kind;
            }
        }
    }
    if kind == COMPRESSION_NONE {
        out.extend_from_slice(contents);
    }
    out.push(kind);
    let crc = block_crc(place, &out[start..]);
    out.extend_from_slice(&crc.to_le_bytes());
    out.len() - start
}

/// Checks and unpacks a block read from `file` at `offset`: `framed` is the
/// stored contents followed by the trailer. With `table_id` (format
/// version 4 on) the checksum must hold for the block's place, table and
/// offset, so a block written elsewhere and found here is a mismatch.
///
/// # Errors
/// `ChecksumMismatch` or `Corruption` naming `file` and `offset`.
pub(crate) fn unseal(
    framed: &[u8],
    file: &str,
    offset: u64,
    table_id: Option<u64>,
    codec: &mut Codec,
) -> Result<Vec<u8>, EngineError> {
    let size = framed
        .len()
        .checked_sub(TRAILER_BYTES as usize)
        .ok_or_else(|| corruption(file, offset, "block shorter than its trailer"))?;
    let (body, crc_bytes) = framed.split_at(size + 1);
    let expected = u32::from_le_bytes(crc_bytes.try_into().expect("trailer holds 4 crc bytes"));
    let place = table_id.map(|table_id| BlockPlace { table_id, offset });
    let got = block_crc(place, body);
    if expected != got {
        return Err(EngineError::ChecksumMismatch {
            file: file.to_owned(),
            offset,
            expected,
            got,
        });
    }
    let (stored, kind) = body.split_at(size);
    let (name, expansion_max) = match kind[0] {
        COMPRESSION_NONE => return Ok(stored.to_vec()),
        COMPRESSION_LZ4 => ("lz4", LZ4_EXPANSION_MAX),
        COMPRESSION_ZSTD | COMPRESSION_ZSTD_DICTIONARY => ("zstd", ZSTD_EXPANSION_MAX),
        other => {
            return Err(corruption(
                file,
                offset,
                format!("unknown block compression {other}"),
            ))
        }
    };
    let mut reader = Reader::new(stored);
    let len = reader
        .u32_le()
        .ok_or_else(|| corruption(file, offset, format!("{name} block without its length")))?;
    if u64::from(len) > BLOCK_BYTES_LIMIT {
        return Err(corruption(
            file,
            offset,
            format!("{name} block claims {len} bytes, over the limit {BLOCK_BYTES_LIMIT}"),
        ));
    }
    let compressed = &stored[LEN_BYTES..];
    let limit = (compressed.len() as u64 + 1).saturating_mul(expansion_max);
    if u64::from(len) > limit {
        return Err(corruption(
            file,
            offset,
            format!(
                "{name} block of {} bytes claims {len} uncompressed bytes",
                compressed.len()
            ),
        ));
    }
    let contents = if kind[0] == COMPRESSION_LZ4 {
        lz4_flex::block::decompress(compressed, len as usize)
            .map_err(|err| corruption(file, offset, format!("lz4: {err}")))?
    } else {
        let mut contents = Vec::with_capacity(len as usize);
        codec
            .zstd_decompress(
                compressed,
                &mut contents,
                kind[0] == COMPRESSION_ZSTD_DICTIONARY,
            )
            .map_err(|err| corruption(file, offset, format!("zstd: {err}")))?;
        contents
    };
    if contents.len() != len as usize {
        return Err(corruption(
            file,
            offset,
            format!("{name} block shorter than its length"),
        ));
    }
    Ok(contents)
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
        assert_eq!(
            unseal(&sealed, "t", 0, None, &mut Codec::new()).expect("unseal"),
            contents
        );
        let zstd = seal(&contents, TableCompression::Zstd { level: 3 });
        assert!(zstd.len() < contents.len() / 2);
        assert_eq!(zstd[zstd.len() - 5], COMPRESSION_ZSTD);
        assert_eq!(
            unseal(&zstd, "t", 0, None, &mut Codec::new()).expect("unseal"),
            contents
        );
        let plain = seal(&contents, TableCompression::None);
        assert_eq!(plain.len(), contents.len() + TRAILER_BYTES as usize);
        assert_eq!(
            unseal(&plain, "t", 0, None, &mut Codec::new()).expect("unseal"),
            contents
        );
    }

    #[test]
    fn zstd_codes_random_printable_bytes_below_a_byte_each() {
        // What LZ4 cannot do: no repeats, but only 95 symbols (6.6 bits).
        let mut state = 7_u64;
        let contents: Vec<u8> = (0..4096)
            .map(|_| {
                state = state
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1);
                b' ' + ((state >> 33) % 95) as u8
            })
            .collect();
        let lz4 = seal(&contents, TableCompression::Lz4);
        assert_eq!(
            lz4.len(),
            contents.len() + TRAILER_BYTES as usize,
            "stored as is"
        );
        let zstd = seal(&contents, TableCompression::Zstd { level: 3 });
        assert!(zstd.len() < contents.len() * 7 / 8, "{} bytes", zstd.len());
        let mut codec = Codec::new();
        for _ in 0..2 {
            assert_eq!(
                unseal(&zstd, "t", 0, None, &mut codec).expect("unseal"),
                contents
            );
        }
    }

    #[test]
    fn zstd_block_whose_length_disagrees_is_corruption() {
        let contents = b"abcabcabc".repeat(200);
        let mut framed = seal(&contents, TableCompression::Zstd { level: 1 });
        let claimed = (contents.len() as u32 + 1).to_le_bytes();
        framed[..4].copy_from_slice(&claimed);
        let body = framed.len() - 4;
        let crc = crc32fast::hash(&framed[..body]);
        framed[body..].copy_from_slice(&crc.to_le_bytes());
        let err = unseal(&framed, "table-z", 64, None, &mut Codec::new()).expect_err("bad length");
        assert!(err.to_string().contains("table-z"), "{err}");
        assert!(err.to_string().contains("offset 64"), "{err}");
    }

    #[test]
    fn dictionary_blocks_need_the_dictionary() {
        let dictionary = b"a dictionary of common words: alpha bravo charlie delta echo".repeat(8);
        let contents = b"charlie delta echo alpha bravo, and again: charlie delta echo".repeat(30);
        let mut writer = Codec::new();
        assert!(writer.use_zstd_dictionary_for_writing(3, &dictionary));
        let mut sealed = Vec::new();
        seal_into(
            &mut sealed,
            &contents,
            TableCompression::Zstd { level: 3 },
            &mut writer,
            None,
        );
        assert_eq!(sealed[sealed.len() - 5], COMPRESSION_ZSTD_DICTIONARY);
        let mut reader = Codec::new();
        reader
            .use_zstd_dictionary_for_reading(&dictionary)
            .expect("dictionary");
        for _ in 0..2 {
            assert_eq!(
                unseal(&sealed, "t", 0, None, &mut reader).expect("unseal"),
                contents
            );
        }
        let err =
            unseal(&sealed, "table-d", 96, None, &mut Codec::new()).expect_err("no dictionary");
        assert!(matches!(err, EngineError::Corruption { .. }), "{err}");
        assert!(err.to_string().contains("table-d"), "{err}");
        // LZ4 blocks are unaffected by a dictionary.
        let mut lz4 = Vec::new();
        seal_into(
            &mut lz4,
            &contents,
            TableCompression::Lz4,
            &mut writer,
            None,
        );
        assert_eq!(lz4[lz4.len() - 5], COMPRESSION_LZ4);
    }

    #[test]
    fn flipped_bit_is_a_checksum_mismatch_naming_file_and_offset() {
        let mut sealed = seal(b"some block contents", TableCompression::None);
        sealed[3] ^= 0x10;
        match unseal(&sealed, "table-x", 4096, None, &mut Codec::new()) {
            Err(EngineError::ChecksumMismatch { file, offset, .. }) => {
                assert_eq!((file.as_str(), offset), ("table-x", 4096));
            }
            other => panic!("expected a checksum mismatch, got {other:?}"),
        }
    }

    #[test]
    fn a_block_read_at_another_place_is_a_checksum_mismatch() {
        let contents = b"some block contents".repeat(10);
        let place = BlockPlace {
            table_id: 7,
            offset: 4096,
        };
        let mut sealed = Vec::new();
        seal_into(
            &mut sealed,
            &contents,
            TableCompression::Lz4,
            &mut Codec::new(),
            Some(place),
        );
        let at = |table_id: u64, offset: u64| {
            unseal(
                &sealed,
                "table-x",
                offset,
                Some(table_id),
                &mut Codec::new(),
            )
        };
        assert_eq!(at(7, 4096).expect("where it was written"), contents);
        for (table_id, offset) in [(7, 0), (7, 4097), (8, 4096), (6, 4096)] {
            match at(table_id, offset) {
                Err(EngineError::ChecksumMismatch {
                    file, offset: got, ..
                }) => {
                    assert_eq!((file.as_str(), got), ("table-x", offset));
                }
                other => panic!("expected a checksum mismatch, got {other:?}"),
            }
        }
        // Read as an older table's block, the place is not covered.
        assert!(unseal(&sealed, "table-x", 4096, None, &mut Codec::new()).is_err());
        let unplaced = seal(&contents, TableCompression::Lz4);
        assert_eq!(
            unseal(&unplaced, "table-x", 1, None, &mut Codec::new()).expect("anywhere"),
            contents
        );
    }

    proptest! {
        #[test]
        fn unseal_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..64)) {
            let _ = unseal(&bytes, "t", 0, None, &mut Codec::new());
        }

        #[test]
        fn compressed_blocks_with_valid_crc_but_garbage_body_never_panic(
            body in prop::collection::vec(any::<u8>(), 0..64),
            kind in prop_oneof![
                Just(COMPRESSION_LZ4),
                Just(COMPRESSION_ZSTD),
                Just(COMPRESSION_ZSTD_DICTIONARY),
            ],
        ) {
            let mut framed = body;
            framed.push(kind);
            let crc = crc32fast::hash(&framed);
            framed.extend_from_slice(&crc.to_le_bytes());
            let _ = unseal(&framed, "t", 0, None, &mut Codec::new());
            let mut with_dictionary = Codec::new();
            with_dictionary
                .use_zstd_dictionary_for_reading(b"some raw dictionary content")
                .expect("dictionary");
            let _ = unseal(&framed, "t", 0, None, &mut with_dictionary);
        }

        #[test]
        fn mutated_zstd_blocks_never_panic(at in any::<prop::sample::Index>(), bit in 0_u8..8) {
            let contents = b"some words, some words again, and more words".repeat(20);
            let mut framed = seal(&contents, TableCompression::Zstd { level: 3 });
            let body = framed.len() - 4;
            framed[at.index(body - 1)] ^= 1 << bit;
            let crc = crc32fast::hash(&framed[..body]);
            framed[body..].copy_from_slice(&crc.to_le_bytes());
            if let Ok(out) = unseal(&framed, "t", 0, None, &mut Codec::new()) {
                prop_assert!(out.len() <= contents.len() * 2);
            }
        }
    }
}
