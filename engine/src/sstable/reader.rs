//! Opens a table and serves point reads; ordered iteration is
//! [`TableCursor`] (`reader/cursor.rs`).
//!
//! Opening reads the footer, then the index, bloom and meta blocks, and
//! keeps them in memory; data blocks are read (and checked) on demand,
//! through the engine's [`BlockCache`]. Every length and offset read from
//! the file is checked against the file before it is used, so no byte
//! pattern makes the reader panic or allocate beyond the file's size (or
//! [`BLOCK_BYTES_LIMIT`]).

use std::cell::RefCell;
use std::sync::Arc;

use crate::disk::{Disk, DiskFile};
use crate::error::EngineError;
use crate::sstable::block::{Block, BlockOrigin};
use crate::sstable::bloom::Bloom;
use crate::sstable::cache::BlockCache;
use crate::sstable::footer::{Footer, FOOTER_BYTES_MAX};
use crate::sstable::frame::{unseal, BlockHandle, Codec, BLOCK_BYTES_LIMIT, TRAILER_BYTES};
use crate::sstable::index::{self, Index};
use crate::sstable::meta::TableMeta;
use crate::sstable::{corruption, table_name, TableVersion};
use crate::types::Versioned;

/// Data blocks up to this size are read into the table's reused buffer;
/// larger ones (a block holding a large value) into a buffer of their own,
/// so the kept buffer stays small.
const READ_BUFFER_KEPT_BYTES: u64 = 64 * 1024;
/// A forward cursor reads the blocks after the one it needs with it, in one
/// read of this many bytes at first...
const READ_AHEAD_BYTES_FIRST: u64 = 16 * 1024;
/// ...doubling with each read up to this many (a short scan reads little
/// more than it needs; a long one makes one read per 256 KiB, not one per
/// block).
const READ_AHEAD_BYTES_MAX: u64 = 256 * 1024;

/// Data blocks a forward cursor has read ahead, as stored (framed).
#[derive(Debug, Default)]
pub(crate) struct ReadAhead {
    buffer: Vec<u8>,
    /// The index positions of the blocks in `buffer`: `first..end`.
    first: usize,
    end: usize,
    /// The file offset of `buffer[0]`.
    base: u64,
    /// Bytes the next read asks for (0: none yet).
    next_bytes: u64,
}

/// An open table.
#[derive(Debug)]
pub(crate) struct Table<F: DiskFile> {
    /// Its id: the manifest's name for it, and its age (higher is newer).
    pub(crate) id: u64,
    /// Its file name, for errors.
    name: String,
    file: F,
    /// Size of the file, for compaction policy.
    pub(crate) file_bytes: u64,
    index: Index,
    bloom: Bloom,
    pub(crate) meta: TableMeta,
    /// The layout of its blocks.
    version: TableVersion,
    /// The id its block checksums cover (`Some(id)` from version 4 on).
    placed_id: Option<u64>,
    /// Reused between block reads.
    scratch: RefCell<ReadScratch>,
}

/// What reading a data block needs besides the block's own memory.
#[derive(Debug, Default)]
struct ReadScratch {
    /// Where data blocks are read before they are checked and unpacked
    /// (its length only grows: no zeroing per read).
    buffer: Vec<u8>,
    /// Decompression contexts.
    codec: Codec,
}

impl<F: DiskFile> Table<F> {
    /// Opens table `id` on `disk`, checking footer and metadata blocks.
    ///
    /// # Errors
    /// Disk errors; `Corruption`/`ChecksumMismatch` naming the file and the
    /// offset of the damaged part.
    pub(crate) fn open<D: Disk<File = F>>(disk: &D, id: u64) -> Result<Table<F>, EngineError> {
        let name = table_name(id);
        let file = disk.open(&name)?;
        let file_bytes = file.len()?;
        let tail_offset = file_bytes.saturating_sub(FOOTER_BYTES_MAX);
        let mut tail = vec![0_u8; (file_bytes - tail_offset) as usize];
        file.read_at(tail_offset, &mut tail)?;
        let (footer, footer_at) = Footer::decode(&tail, &name, tail_offset, id)?;
        let placed_id = footer.version.covers_place().then_some(id);
        // The metadata blocks follow the data, in this order, up to the footer.
        let index_end = check_handle(&name, footer.index, footer_at, "index")?;
        let bloom_end = check_handle(&name, footer.bloom, footer_at, "bloom")?;
        let meta_end = check_handle(&name, footer.meta, footer_at, "meta")?;
        let dictionary_end = footer
            .dictionary
            .map(|handle| check_handle(&name, handle, footer_at, "dictionary"))
            .transpose()?;
        if index_end != footer.bloom.offset
            || bloom_end != footer.meta.offset
            || meta_end != footer_at
            || dictionary_end.is_some_and(|end| end != footer.index.offset)
        {
            return Err(corruption(
                &name,
                footer_at,
                "metadata blocks are not contiguous",
            ));
        }
        let mut scratch = ReadScratch::default();
        if let Some(handle) = footer.dictionary {
            let dictionary = read_block(&file, &name, handle, placed_id, &mut scratch.codec)?;
            if !dictionary.is_empty() {
                scratch
                    .codec
                    .use_zstd_dictionary_for_reading(&dictionary)
                    .map_err(|reason| {
                        corruption(&name, handle.offset, format!("zstd dictionary: {reason}"))
                    })?;
            }
        }
        let index_contents = read_block(&file, &name, footer.index, placed_id, &mut scratch.codec)?;
        // Data blocks end where the first metadata block begins.
        let data_end = footer.dictionary.unwrap_or(footer.index).offset;
        let index = index::decode(
            &index_contents,
            footer.version,
            data_end,
            &name,
            footer.index.offset,
        )?;
        let bloom_contents = read_block(&file, &name, footer.bloom, placed_id, &mut scratch.codec)?;
        let bloom = Bloom::decode(&bloom_contents, &name, footer.bloom.offset)?;
        let meta_contents = read_block(&file, &name, footer.meta, placed_id, &mut scratch.codec)?;
        let meta = TableMeta::decode(&meta_contents, &name, footer.meta.offset)?;
        if index.last_key(index.len() - 1) != meta.key_max.as_slice() {
            return Err(corruption(
                &name,
                footer.meta.offset,
                "meta key range disagrees with the index",
            ));
        }
        Ok(Table {
            id,
            name,
            file,
            file_bytes,
            index,
            bloom,
            meta,
            version: footer.version,
            placed_id,
            scratch: RefCell::new(scratch),
        })
    }

    fn origin(&self, position: usize) -> BlockOrigin<'_> {
        BlockOrigin {
            file: &self.name,
            offset: self.index.handle(position).offset,
        }
    }

    /// Data block `position` of the index: from `cache` if it is there,
    /// else read (with the blocks after it, into `ahead`, if given, or from
    /// `ahead` if it was read ahead), checked, decoded and (if `fill`)
    /// cached.
    fn data_block(
        &self,
        position: usize,
        cache: &RefCell<BlockCache>,
        fill: bool,
        ahead: Option<&mut ReadAhead>,
    ) -> Result<Arc<Block>, EngineError> {
        let key = (self.id, position);
        if let Some(block) = cache.borrow_mut().get(key) {
            return Ok(block);
        }
        let handle = self.index.handle(position);
        let contents = {
            let scratch = &mut *self.scratch.borrow_mut();
            if let Some(ahead) = ahead {
                self.read_ahead(position, ahead, &mut scratch.codec)?
            } else if handle.size <= READ_BUFFER_KEPT_BYTES {
                read_block_with(
                    &self.file,
                    &self.name,
                    handle,
                    self.placed_id,
                    &mut scratch.buffer,
                    &mut scratch.codec,
                )?
            } else {
                read_block(
                    &self.file,
                    &self.name,
                    handle,
                    self.placed_id,
                    &mut scratch.codec,
                )?
            }
        };
        let block = Arc::new(Block::decode(
            contents,
            self.version,
            self.origin(position),
        )?);
        if fill {
            cache.borrow_mut().insert(key, block.clone());
        }
        Ok(block)
    }

    /// Block `position`, checked and unpacked, from `ahead`; if it is not
    /// there, first reads it and the blocks after it (up to
    /// `ahead.next_bytes`) into `ahead` with one read. If that read fails,
    /// the block is read alone, so that a bad sector further on fails only
    /// a read of its own block.
    fn read_ahead(
        &self,
        position: usize,
        ahead: &mut ReadAhead,
        codec: &mut Codec,
    ) -> Result<Vec<u8>, EngineError> {
        let handle = self.index.handle(position);
        if !(ahead.first..ahead.end).contains(&position) {
            ahead.next_bytes = if ahead.next_bytes == 0 {
                READ_AHEAD_BYTES_FIRST
            } else {
                (ahead.next_bytes * 2).min(READ_AHEAD_BYTES_MAX)
            };
            // Blocks lie back to back (the index decoder checked it), so
            // blocks `position..end` are one range of the file.
            let block_end = |p: usize| self.index.handle(p).end().expect("checked at open");
            let mut end = position + 1;
            while end < self.index.len() && block_end(end) - handle.offset <= ahead.next_bytes {
                end += 1;
            }
            let len = usize::try_from(block_end(end - 1) - handle.offset)
                .expect("blocks are bounded by BLOCK_BYTES_LIMIT");
            if ahead.buffer.len() < len {
                ahead.buffer.resize(len, 0);
            }
            if let Err(err) = self.file.read_at(handle.offset, &mut ahead.buffer[..len]) {
                *ahead = ReadAhead {
                    next_bytes: ahead.next_bytes,
                    ..ReadAhead::default()
                };
                if end == position + 1 {
                    return Err(err.into());
                }
                return read_block(&self.file, &self.name, handle, self.placed_id, codec);
            }
            ahead.first = position;
            ahead.end = end;
            ahead.base = handle.offset;
        }
        let from = usize::try_from(handle.offset - ahead.base).expect("within the buffer");
        let to = from + usize::try_from(handle.size + TRAILER_BYTES).expect("within the buffer");
        unseal(
            &ahead.buffer[from..to],
            &self.name,
            handle.offset,
            self.placed_id,
            codec,
        )
    }

    /// Reads every data block from the disk (or takes it from the cache,
    /// where it was checked), each up to `attempts` times until one read
    /// passes its checks: a block that fails them every time is damaged
    /// where it is stored, while a bit flipped in transfer does not come
    /// back read after read.
    ///
    /// # Errors
    /// The last corruption of a block that never read clean; other errors
    /// (I/O) at once.
    pub(crate) fn verify_blocks(
        &self,
        cache: &RefCell<BlockCache>,
        attempts: usize,
    ) -> Result<(), EngineError> {
        assert!(attempts > 0, "a block is read at least once");
        for position in 0..self.index.len() {
            let mut failure = None;
            for _ in 0..attempts {
                match self.data_block(position, cache, false, None) {
                    Ok(_) => {
                        failure = None;
                        break;
                    }
                    Err(err) if err.corruption_site().is_some() => failure = Some(err),
                    Err(err) => return Err(err),
                }
            }
            if let Some(err) = failure {
                return Err(err);
            }
        }
        Ok(())
    }

    /// Whether the key range and the bloom filter allow a key of bloom hash
    /// `hash` ([`Bloom::hash`]) to be here.
    pub(crate) fn may_contain(&self, key: &[u8], hash: u64) -> bool {
        self.meta.covers(key) && self.bloom.may_contain_hash(hash)
    }

    /// The version of `key` (of bloom hash `hash`) stored here, tombstones
    /// included.
    ///
    /// # Errors
    /// Disk errors and corruption of the block read.
    pub(crate) fn get(
        &self,
        key: &[u8],
        hash: u64,
        cache: &RefCell<BlockCache>,
    ) -> Result<Option<Versioned>, EngineError> {
        if !self.may_contain(key, hash) {
            return Ok(None);
        }
        match self.index.find(key) {
            None => Ok(None),
            Some(position) => self
                .data_block(position, cache, true, None)?
                .get(key, self.origin(position)),
        }
    }

    /// A cursor over the entries within `start` and `end`, forward or (if
    /// `reverse`) backward. Blocks are taken from `cache` when there, and
    /// cached when read only if `fill` (a long scan or a compaction would
    /// otherwise push out the blocks point reads need).
    pub(crate) fn cursor<'a>(
        &'a self,
        cache: &'a RefCell<BlockCache>,
        fill: bool,
        reverse: bool,
    ) -> TableCursor<'a, F> {
        TableCursor::new(self, cache, fill, reverse)
    }
}

/// Checks that `handle` lies before `limit`; returns where it ends.
fn check_handle(
    name: &str,
    handle: BlockHandle,
    limit: u64,
    what: &str,
) -> Result<u64, EngineError> {
    handle
        .end()
        .filter(|end| *end <= limit && handle.size <= BLOCK_BYTES_LIMIT)
        .ok_or_else(|| corruption(name, handle.offset, format!("{what} block out of bounds")))
}

/// Reads, checks and unpacks the block at `handle`, whose bounds were
/// checked against the file (footer handles by [`check_handle`], data
/// handles by the index decoder), its checksum covering its place in
/// table `placed_id` (version 4 on).
fn read_block<F: DiskFile>(
    file: &F,
    name: &str,
    handle: BlockHandle,
    placed_id: Option<u64>,
    codec: &mut Codec,
) -> Result<Vec<u8>, EngineError> {
    read_block_with(file, name, handle, placed_id, &mut Vec::new(), codec)
}

/// As [`read_block`], reading into `buffer` (grown as needed, never
/// shrunk) rather than into a fresh allocation.
fn read_block_with<F: DiskFile>(
    file: &F,
    name: &str,
    handle: BlockHandle,
    placed_id: Option<u64>,
    buffer: &mut Vec<u8>,
    codec: &mut Codec,
) -> Result<Vec<u8>, EngineError> {
    if handle.size > BLOCK_BYTES_LIMIT {
        return Err(corruption(
            name,
            handle.offset,
            "block larger than the limit",
        ));
    }
    let len = usize::try_from(handle.size + TRAILER_BYTES).expect("bounded by BLOCK_BYTES_LIMIT");
    if buffer.len() < len {
        buffer.resize(len, 0);
    }
    let framed = &mut buffer[..len];
    file.read_at(handle.offset, framed)?;
    unseal(framed, name, handle.offset, placed_id, codec)
}

mod cursor;

pub(crate) use cursor::TableCursor;

#[cfg(test)]
mod tests;
