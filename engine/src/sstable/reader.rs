//! Opens a table and serves point reads and ordered iteration.
//!
//! Opening reads the footer, then the index, bloom and meta blocks, and
//! keeps them in memory; data blocks are read (and checked) on demand,
//! through the engine's [`BlockCache`]. Every length and offset read from
//! the file is checked against the file before it is used, so no byte
//! pattern makes the reader panic or allocate beyond the file's size (or
//! [`BLOCK_BYTES_LIMIT`]).

use std::cell::RefCell;
use std::ops::{Bound, Range};
use std::sync::Arc;

use crate::bytes::key_cmp;
use crate::disk::{Disk, DiskFile};
use crate::error::EngineError;
use crate::sstable::block::{Block, BlockCursor, BlockOrigin};
use crate::sstable::bloom::Bloom;
use crate::sstable::cache::BlockCache;
use crate::sstable::footer::{Footer, FOOTER_BYTES_MAX};
use crate::sstable::frame::{unseal, BlockHandle, Codec, BLOCK_BYTES_LIMIT, TRAILER_BYTES};
use crate::sstable::index::{self, Index};
use crate::sstable::meta::TableMeta;
use crate::sstable::{corruption, table_name, TableVersion};
use crate::types::{Timestamp, Versioned};

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
        TableCursor {
            table: self,
            cache,
            fill,
            reverse,
            position: 0,
            forward: None,
            backward: Vec::new(),
            backward_block: None,
            backward_at: 0,
            valid: false,
            ahead: ReadAhead::default(),
        }
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

/// One entry of a block decoded for backward iteration.
#[derive(Debug)]
struct DecodedEntry {
    key: Vec<u8>,
    timestamp: Timestamp,
    value: Option<Range<usize>>,
}

/// Walks a table's entries in key order (or backward), block by block,
/// checking that every block's keys lie between the index's last keys of
/// the block before and of its own (else the merge above could see keys
/// out of order). After an error the cursor is invalid.
#[derive(Debug)]
pub(crate) struct TableCursor<'a, F: DiskFile> {
    table: &'a Table<F>,
    cache: &'a RefCell<BlockCache>,
    fill: bool,
    reverse: bool,
    /// The index position of the current block.
    position: usize,
    /// Forward: the cursor in the current block.
    forward: Option<BlockCursor>,
    /// Backward: the current block's entries, decoded, and which is current.
    backward: Vec<DecodedEntry>,
    backward_block: Option<Arc<Block>>,
    backward_at: usize,
    /// Whether the cursor is on an entry.
    valid: bool,
    /// Forward: blocks read ahead.
    ahead: ReadAhead,
}

impl<F: DiskFile> TableCursor<'_, F> {
    /// Positions the cursor on the first entry within the bound (forward:
    /// at or after `start`; backward: at or before `end`).
    ///
    /// # Errors
    /// Disk errors and corruption.
    pub(crate) fn seek(&mut self, bound: Bound<&[u8]>) -> Result<(), EngineError> {
        self.valid = false;
        let blocks = self.table.index.len();
        if self.reverse {
            let position = match bound {
                Bound::Unbounded => blocks - 1,
                Bound::Included(key) | Bound::Excluded(key) => {
                    self.table.index.find(key).unwrap_or(blocks - 1)
                }
            };
            self.load_backward(position)?;
            while self.valid {
                let inside = match bound {
                    Bound::Unbounded => true,
                    Bound::Included(end) => self.key() <= end,
                    Bound::Excluded(end) => self.key() < end,
                };
                if inside {
                    return Ok(());
                }
                self.advance()?;
            }
            return Ok(());
        }
        let find = |key: &[u8]| self.table.index.find(key).unwrap_or(blocks);
        let (position, target) = match bound {
            Bound::Unbounded => (0, None),
            Bound::Included(key) => (find(key), Some((key, false))),
            Bound::Excluded(key) => (find(key), Some((key, true))),
        };
        if position >= blocks {
            return Ok(());
        }
        self.position = position;
        let block =
            self.table
                .data_block(position, self.cache, self.fill, Some(&mut self.ahead))?;
        let mut cursor = BlockCursor::new(block);
        let origin = self.table.origin(position);
        let found = match target {
            None => cursor.advance(origin)?,
            Some((key, exclusive)) => cursor.seek(key, exclusive, origin)?,
        };
        self.forward = Some(cursor);
        if found {
            self.check_forward_key(true)?;
            self.valid = true;
            Ok(())
        } else {
            self.next_block_forward()
        }
    }

    /// Whether the cursor is on an entry.
    pub(crate) fn valid(&self) -> bool {
        self.valid
    }

    /// Moves to the next entry (the previous one, backward).
    ///
    /// # Errors
    /// Disk errors and corruption.
    pub(crate) fn advance(&mut self) -> Result<(), EngineError> {
        assert!(self.valid, "advance only a valid cursor");
        if self.reverse {
            if self.backward_at > 0 {
                self.backward_at -= 1;
                return Ok(());
            }
            self.valid = false;
            if self.position == 0 {
                return Ok(());
            }
            return self.load_backward(self.position - 1);
        }
        let origin = self.table.origin(self.position);
        let cursor = self.forward.as_mut().expect("a valid forward cursor");
        if cursor.advance(origin)? {
            return self.check_forward_key(false);
        }
        // The block's last key must be the one the index names.
        if cursor.key() != self.table.index.last_key(self.position) {
            self.valid = false;
            return Err(self.block_disagrees(self.position));
        }
        self.valid = false;
        self.next_block_forward()
    }

    fn next_block_forward(&mut self) -> Result<(), EngineError> {
        while self.position + 1 < self.table.index.len() {
            self.position += 1;
            let block = self.table.data_block(
                self.position,
                self.cache,
                self.fill,
                Some(&mut self.ahead),
            )?;
            let mut cursor = BlockCursor::new(block);
            let found = cursor.advance(self.table.origin(self.position))?;
            self.forward = Some(cursor);
            if found {
                self.check_forward_key(true)?;
                self.valid = true;
                return Ok(());
            }
        }
        self.valid = false;
        Ok(())
    }

    /// The current forward key must not pass its block's last key, and the
    /// first key of a block must follow the previous block's last key.
    fn check_forward_key(&mut self, first_in_block: bool) -> Result<(), EngineError> {
        let index = &self.table.index;
        let key = self.forward.as_ref().expect("a forward cursor").key();
        let within = key_cmp(key, index.last_key(self.position)).is_le();
        let after_previous = !first_in_block
            || self.position == 0
            || key_cmp(key, index.last_key(self.position - 1)).is_gt();
        if within && after_previous {
            Ok(())
        } else {
            self.valid = false;
            Err(self.block_disagrees(self.position))
        }
    }

    /// Decodes block `position` whole and stands on its last entry (or
    /// further back, if it is empty of entries: it cannot be, blocks hold
    /// at least one).
    fn load_backward(&mut self, position: usize) -> Result<(), EngineError> {
        self.position = position;
        let block = self
            .table
            .data_block(position, self.cache, self.fill, None)?;
        let origin = self.table.origin(position);
        let mut cursor = BlockCursor::new(block.clone());
        self.backward.clear();
        while cursor.advance(origin)? {
            self.backward.push(DecodedEntry {
                key: cursor.key().to_vec(),
                timestamp: cursor.timestamp(),
                value: cursor.value_range(),
            });
        }
        let index = &self.table.index;
        let first_ok = self
            .backward
            .first()
            .is_some_and(|e| position == 0 || e.key.as_slice() > index.last_key(position - 1));
        let last_ok = self
            .backward
            .last()
            .is_some_and(|e| e.key == index.last_key(position));
        if !(first_ok && last_ok) {
            self.valid = false;
            return Err(self.block_disagrees(position));
        }
        self.backward_at = self.backward.len() - 1;
        self.backward_block = Some(block);
        self.valid = true;
        Ok(())
    }

    fn block_disagrees(&self, position: usize) -> EngineError {
        corruption(
            &self.table.name,
            self.table.index.handle(position).offset,
            "data block keys disagree with the index",
        )
    }

    /// The current entry's key.
    pub(crate) fn key(&self) -> &[u8] {
        if self.reverse {
            &self.backward[self.backward_at].key
        } else {
            self.forward.as_ref().expect("a valid cursor").key()
        }
    }

    /// The current entry's timestamp.
    pub(crate) fn timestamp(&self) -> Timestamp {
        if self.reverse {
            self.backward[self.backward_at].timestamp
        } else {
            self.forward.as_ref().expect("a valid cursor").timestamp()
        }
    }

    /// The current entry's value; `None` for a tombstone.
    pub(crate) fn value(&self) -> Option<&[u8]> {
        if self.reverse {
            let block = self.backward_block.as_ref().expect("a valid cursor");
            self.backward[self.backward_at]
                .value
                .clone()
                .map(|range| block.bytes(range))
        } else {
            self.forward.as_ref().expect("a valid cursor").value()
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::fs_disk::FsDisk;
    use crate::sstable::bloom::key_hash;
    use crate::sstable::writer::write_table;
    use crate::sstable::TableEntry;
    use crate::sstable::{TableCompression, TableOptions};
    use crate::types::Timestamp;

    /// Reads through a fresh cache, for tests.
    trait TestReads {
        fn get_any(&self, key: &[u8]) -> Result<Option<Versioned>, EngineError>;
        fn entries_from(
            &self,
            start: Bound<&[u8]>,
        ) -> std::vec::IntoIter<Result<TableEntry, EngineError>>;
        fn entries_back_from(&self, end: Bound<&[u8]>) -> Result<Vec<TableEntry>, EngineError>;
    }

    impl<F: DiskFile> TestReads for Table<F> {
        fn get_any(&self, key: &[u8]) -> Result<Option<Versioned>, EngineError> {
            let cache = RefCell::new(BlockCache::new(1 << 20));
            self.get(key, key_hash(key), &cache)
        }

        fn entries_from(
            &self,
            start: Bound<&[u8]>,
        ) -> std::vec::IntoIter<Result<TableEntry, EngineError>> {
            let cache = RefCell::new(BlockCache::new(0));
            let mut out = Vec::new();
            let mut cursor = self.cursor(&cache, false, false);
            let mut step = cursor.seek(start);
            loop {
                match step {
                    Err(err) => {
                        out.push(Err(err));
                        break;
                    }
                    Ok(()) if !cursor.valid() => break,
                    Ok(()) => {
                        let version = Versioned {
                            timestamp: cursor.timestamp(),
                            value: cursor.value().map(<[u8]>::to_vec),
                        };
                        out.push(Ok((cursor.key().to_vec(), version)));
                        step = cursor.advance();
                    }
                }
            }
            out.into_iter()
        }

        fn entries_back_from(&self, end: Bound<&[u8]>) -> Result<Vec<TableEntry>, EngineError> {
            let cache = RefCell::new(BlockCache::new(1 << 20));
            let mut out = Vec::new();
            let mut cursor = self.cursor(&cache, true, true);
            cursor.seek(end)?;
            while cursor.valid() {
                let version = Versioned {
                    timestamp: cursor.timestamp(),
                    value: cursor.value().map(<[u8]>::to_vec),
                };
                out.push((cursor.key().to_vec(), version));
                cursor.advance()?;
            }
            Ok(out)
        }
    }

    fn options(compression: TableCompression) -> TableOptions {
        TableOptions {
            block_bytes_target: 512,
            compression,
            bloom_bits_per_key: 10,
        }
    }

    fn sample(count: u64) -> Vec<TableEntry> {
        (0..count)
            .map(|i| {
                let value = (i % 5 != 0).then(|| format!("value {i} ").repeat(4).into_bytes());
                (
                    format!("key-{:05}", i * 3).into_bytes(),
                    Versioned {
                        timestamp: Timestamp {
                            hlc: 1000 - i,
                            node: 2,
                        },
                        value,
                    },
                )
            })
            .collect()
    }

    fn written(
        entries: &[TableEntry],
        compression: TableCompression,
    ) -> (tempfile::TempDir, FsDisk, Table<crate::fs_disk::FsFile>) {
        let dir = tempfile::tempdir().expect("tempdir");
        let disk = FsDisk::open(dir.path()).expect("disk");
        let done = write_table(
            &disk,
            7,
            entries.iter().cloned().map(Ok),
            options(compression),
            true,
        )
        .expect("write")
        .expect("not empty");
        let table = Table::open(&disk, 7).expect("open");
        assert_eq!(table.file_bytes, done.file_bytes);
        assert_eq!(table.meta, done.meta);
        (dir, disk, table)
    }

    /// Entries of the version-1 table kept in `testdata/`: keys with
    /// varied prefixes and lengths, hybrid-logical-clock timestamps as a
    /// node's (microseconds shifted left 12 bits), three nodes, empty and
    /// missing values, compressible and incompressible values.
    fn compatibility_sample() -> Vec<TableEntry> {
        let mut state = 0x0123_4567_89AB_CDEF_u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        (0..300_u64)
            .map(|i| {
                let key = match i % 3 {
                    0 => format!("user/{:06}", i * 7).into_bytes(),
                    1 => format!("user/{:06}/profile", i * 7).into_bytes(),
                    _ => {
                        format!("user/{:06}/z{}", i * 7, "x".repeat((i % 11) as usize)).into_bytes()
                    }
                };
                let value = match i % 7 {
                    0 => None,
                    1 => Some(Vec::new()),
                    2 | 3 => Some((0..(next() % 300)).map(|_| next() as u8).collect()),
                    _ => Some(
                        format!("value {i} ")
                            .repeat((i % 9 + 1) as usize)
                            .into_bytes(),
                    ),
                };
                let hlc = ((1_700_000_000_000_000 + next() % 3_600_000_000) << 12) | (i % 4096);
                let version = Versioned {
                    timestamp: Timestamp {
                        hlc,
                        node: (i % 3 + 1) as u32,
                    },
                    value,
                };
                (key, version)
            })
            .collect()
    }

    /// A table written by the version-1 writer (512-byte blocks, LZ4
    /// where it saved bytes) from `compatibility_sample`.
    const VERSION_1_TABLE: &[u8] = include_bytes!("testdata/table-v1.sst");

    /// The same entries written by the version-2 writer (512-byte blocks,
    /// zstd level 3 where it saved bytes).
    const VERSION_2_TABLE: &[u8] = include_bytes!("testdata/table-v2.sst");

    /// The same entries written by the version-3 writer (as version 2,
    /// with an empty dictionary block: too few blocks to train one), whose
    /// checksums do not cover the blocks' places.
    const VERSION_3_TABLE: &[u8] = include_bytes!("testdata/table-v3.sst");

    fn stored_table(bytes: &[u8]) -> (tempfile::TempDir, FsDisk, Table<crate::fs_disk::FsFile>) {
        let dir = tempfile::tempdir().expect("tempdir");
        let disk = FsDisk::open(dir.path()).expect("disk");
        disk.create(&table_name(1))
            .expect("create")
            .write_at(0, bytes)
            .expect("write");
        let table = Table::open(&disk, 1).expect("open");
        (dir, disk, table)
    }

    #[test]
    fn version_1_to_3_tables_are_still_read() {
        for (bytes, version) in [
            (VERSION_1_TABLE, TableVersion::V1),
            (VERSION_2_TABLE, TableVersion::V2),
            (VERSION_3_TABLE, TableVersion::V3),
        ] {
            let (_dir, _disk, table) = stored_table(bytes);
            assert_eq!(table.version, version);
            check_compatibility_table(&table);
        }
    }

    fn check_compatibility_table(table: &Table<crate::fs_disk::FsFile>) {
        let mut entries = compatibility_sample();
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        assert!(table.index.len() > 10, "many blocks");
        assert_eq!(
            table
                .entries_from(Bound::Unbounded)
                .collect::<Result<Vec<_>, _>>()
                .expect("scan"),
            entries
        );
        let mut backward = entries.clone();
        backward.reverse();
        assert_eq!(
            table.entries_back_from(Bound::Unbounded).expect("scan"),
            backward
        );
        for (key, version) in &entries {
            assert_eq!(table.get_any(key).expect("get"), Some(version.clone()));
            let mut missing = key.clone();
            missing.push(0);
            assert_eq!(table.get_any(&missing).expect("get"), None);
        }
        let middle = &entries[150].0;
        assert_eq!(
            table
                .entries_from(Bound::Excluded(middle))
                .next()
                .expect("an entry")
                .expect("read")
                .0,
            entries[151].0
        );
    }

    /// Entries of fixed-size keys and values (`fill` repeated), so that
    /// data blocks have the same size and a misdirected copy fits exactly.
    fn uniform_sample(fill: u8) -> Vec<TableEntry> {
        (0..400_u64)
            .map(|i| {
                let version = Versioned {
                    timestamp: Timestamp { hlc: 9000, node: 1 },
                    value: Some(vec![fill; 40]),
                };
                (format!("key-{i:08}").into_bytes(), version)
            })
            .collect()
    }

    fn write_uniform(disk: &FsDisk, id: u64, fill: u8) -> Table<crate::fs_disk::FsFile> {
        write_table(
            disk,
            id,
            uniform_sample(fill).into_iter().map(Ok),
            options(TableCompression::None),
            true,
        )
        .expect("write")
        .expect("not empty");
        Table::open(disk, id).expect("open")
    }

    /// Writes the framed block at `handle` of table `from` over table
    /// `to` at `offset`: a misdirected write of a whole block.
    fn copy_block(disk: &FsDisk, from: u64, handle: BlockHandle, to: u64, offset: u64) {
        let mut bytes = vec![0_u8; (handle.size + TRAILER_BYTES) as usize];
        disk.open(&table_name(from))
            .expect("open")
            .read_at(handle.offset, &mut bytes)
            .expect("read");
        disk.open(&table_name(to))
            .expect("open")
            .write_at(offset, &bytes)
            .expect("write");
    }

    #[test]
    fn a_block_copied_to_another_offset_of_its_table_is_never_served() {
        let dir = tempfile::tempdir().expect("tempdir");
        let disk = FsDisk::open(dir.path()).expect("disk");
        let table = write_uniform(&disk, 3, b'a');
        assert_eq!(table.version, TableVersion::V4);
        let (first, second) = (table.index.handle(0), table.index.handle(1));
        assert_eq!(first.size, second.size, "uniform blocks");
        let victim = table.index.last_key(1).to_vec();
        drop(table);
        copy_block(&disk, 3, first, 3, second.offset);
        let table = Table::open(&disk, 3).expect("metadata intact");
        match table.get_any(&victim) {
            Err(EngineError::ChecksumMismatch { file, offset, .. }) => {
                assert_eq!((file, offset), (table_name(3), second.offset));
            }
            other => panic!("expected a checksum mismatch, got {other:?}"),
        }
        assert!(table
            .entries_from(Bound::Unbounded)
            .any(|entry| entry.is_err()));
        assert!(table.entries_back_from(Bound::Unbounded).is_err());
    }

    #[test]
    fn a_block_copied_into_another_table_is_never_served() {
        let dir = tempfile::tempdir().expect("tempdir");
        let disk = FsDisk::open(dir.path()).expect("disk");
        let source = write_uniform(&disk, 3, b'a');
        let target = write_uniform(&disk, 4, b'b');
        let handle = source.index.handle(2);
        assert_eq!(handle, target.index.handle(2), "same layout");
        let victim = target.index.last_key(2).to_vec();
        drop((source, target));
        // Table 3's block lands where table 4's was: in version 3, table 4
        // would now serve table 3's values.
        copy_block(&disk, 3, handle, 4, handle.offset);
        let target = Table::open(&disk, 4).expect("metadata intact");
        let err = target.get_any(&victim).expect_err("misdirected block");
        assert_eq!(
            err.corruption_site(),
            Some((table_name(4).as_str(), handle.offset))
        );
        // A footer copied in from another table fails the open.
        let len = target.file_bytes;
        drop(target);
        copy_block(
            &disk,
            3,
            BlockHandle {
                offset: len - FOOTER_BYTES_MAX,
                size: FOOTER_BYTES_MAX - TRAILER_BYTES,
            },
            4,
            len - FOOTER_BYTES_MAX,
        );
        assert!(matches!(
            Table::open(&disk, 4),
            Err(EngineError::ChecksumMismatch { .. })
        ));
    }

    #[test]
    fn current_table_of_the_same_entries_is_smaller() {
        let mut entries = compatibility_sample();
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        let (_a, _, written) = written(&entries, TableCompression::Lz4);
        assert_eq!(written.version, TableVersion::V4);
        assert!(!written.scratch.borrow().codec.has_zstd_dictionary());
        assert!(
            written.file_bytes < VERSION_1_TABLE.len() as u64,
            "{} bytes against {}",
            written.file_bytes,
            VERSION_1_TABLE.len()
        );
    }

    #[test]
    fn table_round_trips_through_many_blocks() {
        for compression in [
            TableCompression::None,
            TableCompression::Lz4,
            TableCompression::Zstd { level: 3 },
        ] {
            let entries = sample(400);
            let (_dir, disk, table) = written(&entries, compression);
            assert!(table.index.len() > 10, "expected many blocks");
            assert_eq!(disk.list().expect("list"), vec![table_name(7)]);
            let all: Vec<TableEntry> = table
                .entries_from(Bound::Unbounded)
                .collect::<Result<_, _>>()
                .expect("iter");
            assert_eq!(all, entries);
            for (key, version) in &entries {
                assert_eq!(table.get_any(key).expect("get"), Some(version.clone()));
            }
            assert_eq!(table.get_any(b"key-00001").expect("get"), None);
            assert_eq!(table.meta.entries_total, 400);
            assert_eq!(table.meta.tombstones_total, 80);
            assert_eq!(table.meta.timestamp_min.hlc, 601);
            assert_eq!(table.meta.key_min, b"key-00000");
        }
    }

    /// Entries enough for a dictionary: values of words from a small
    /// vocabulary, as real values repeat themselves across blocks.
    fn dictionary_sample(count: u64) -> Vec<TableEntry> {
        const WORDS: [&str; 12] = [
            "alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india",
            "juliett", "kilo", "lima",
        ];
        let mut state = 0x9E37_79B9_7F4A_7C15_u64;
        (0..count)
            .map(|i| {
                let value = (0..8)
                    .map(|_| {
                        state ^= state << 13;
                        state ^= state >> 7;
                        state ^= state << 17;
                        WORDS[(state % WORDS.len() as u64) as usize]
                    })
                    .collect::<Vec<_>>()
                    .join(" ");
                let version = Versioned {
                    timestamp: Timestamp {
                        hlc: 5000 + i,
                        node: 1,
                    },
                    value: (i % 50 != 0).then(|| value.into_bytes()),
                };
                (format!("key-{i:08}").into_bytes(), version)
            })
            .collect()
    }

    #[test]
    fn large_zstd_tables_get_a_dictionary_and_read_back() {
        let entries = dictionary_sample(4000);
        let (_dir, _disk, table) = written(&entries, TableCompression::Zstd { level: 3 });
        assert_eq!(table.version, TableVersion::V4);
        assert!(table.scratch.borrow().codec.has_zstd_dictionary());
        let all: Vec<TableEntry> = table
            .entries_from(Bound::Unbounded)
            .collect::<Result<_, _>>()
            .expect("iter");
        assert_eq!(all, entries);
        let mut backward = entries.clone();
        backward.reverse();
        assert_eq!(
            table.entries_back_from(Bound::Unbounded).expect("scan"),
            backward
        );
        for (key, version) in entries.iter().step_by(7) {
            assert_eq!(table.get_any(key).expect("get"), Some(version.clone()));
        }
        // A small table is not worth a dictionary.
        let (_small, _, small) = written(&entries[..300], TableCompression::Zstd { level: 3 });
        assert!(!small.scratch.borrow().codec.has_zstd_dictionary());
        for (key, version) in &entries[..300] {
            assert_eq!(small.get_any(key).expect("get"), Some(version.clone()));
        }
    }

    #[test]
    fn compressed_tables_are_smaller() {
        let entries = sample(400);
        let (_a, _, plain) = written(&entries, TableCompression::None);
        let (_b, _, lz4) = written(&entries, TableCompression::Lz4);
        let (_c, _, zstd) = written(&entries, TableCompression::Zstd { level: 3 });
        assert!(lz4.file_bytes < plain.file_bytes / 2);
        assert!(zstd.file_bytes < lz4.file_bytes);
    }

    #[test]
    fn iteration_starts_at_its_bound() {
        let entries = sample(200);
        let (_dir, _disk, table) = written(&entries, TableCompression::Lz4);
        let keys = |start: Bound<&[u8]>| -> Vec<Vec<u8>> {
            table
                .entries_from(start)
                .map(|e| e.expect("entry").0)
                .take(2)
                .collect()
        };
        assert_eq!(
            keys(Bound::Included(b"key-00300")),
            vec![b"key-00300".to_vec(), b"key-00303".to_vec()]
        );
        assert_eq!(
            keys(Bound::Excluded(b"key-00300")),
            vec![b"key-00303".to_vec(), b"key-00306".to_vec()]
        );
        assert_eq!(
            keys(Bound::Included(b"key-00301")),
            vec![b"key-00303".to_vec(), b"key-00306".to_vec()]
        );
        assert!(keys(Bound::Excluded(b"key-00597")).is_empty());
    }

    #[test]
    fn backward_iteration_starts_at_its_bound_and_visits_every_block() {
        let entries = sample(200);
        let (_dir, _disk, table) = written(&entries, TableCompression::Lz4);
        let mut backward = entries.clone();
        backward.reverse();
        assert_eq!(
            table.entries_back_from(Bound::Unbounded).expect("scan"),
            backward
        );
        let keys = |end: Bound<&[u8]>| -> Vec<Vec<u8>> {
            table
                .entries_back_from(end)
                .expect("scan")
                .into_iter()
                .map(|e| e.0)
                .take(2)
                .collect()
        };
        assert_eq!(
            keys(Bound::Included(b"key-00300")),
            vec![b"key-00300".to_vec(), b"key-00297".to_vec()]
        );
        assert_eq!(
            keys(Bound::Excluded(b"key-00300")),
            vec![b"key-00297".to_vec(), b"key-00294".to_vec()]
        );
        assert_eq!(
            keys(Bound::Included(b"key-00299")),
            vec![b"key-00297".to_vec(), b"key-00294".to_vec()]
        );
        assert!(keys(Bound::Excluded(b"key-00000")).is_empty());
        assert_eq!(keys(Bound::Included(b"zzz"))[0], entries[199].0);
    }

    #[test]
    fn corrupted_data_block_is_reported_with_file_and_offset() {
        let entries = sample(300);
        let (dir, disk, table) = written(&entries, TableCompression::None);
        let victim = table.index.handle(3);
        let key = entries
            .iter()
            .find(|(k, _)| k.as_slice() > table.index.last_key(2))
            .expect("a key in block 3")
            .0
            .clone();
        drop(table);
        let mut file = disk.open(&table_name(7)).expect("open");
        let mut byte = [0_u8];
        file.read_at(victim.offset + 10, &mut byte).expect("read");
        file.write_at(victim.offset + 10, &[byte[0] ^ 0x40])
            .expect("write");
        let table = Table::open(&disk, 7).expect("metadata is intact");
        match table.get_any(&key) {
            Err(EngineError::ChecksumMismatch { file, offset, .. }) => {
                assert_eq!((file, offset), (table_name(7), victim.offset));
            }
            other => panic!("expected a checksum mismatch, got {other:?}"),
        }
        let scan: Result<Vec<_>, _> = table.entries_from(Bound::Unbounded).collect();
        assert!(scan.is_err());
        drop(dir);
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

        #[test]
        fn mutated_tables_never_panic(
            flips in prop::collection::vec((any::<prop::sample::Index>(), 0_u8..8), 1..4),
            cut in prop::option::of(any::<prop::sample::Index>()),
        ) {
            let entries = sample(60);
            let compression = if flips.len() % 2 == 0 {
                TableCompression::Lz4
            } else {
                TableCompression::Zstd { level: 1 }
            };
            let (_dir, disk, table) = written(&entries, compression);
            let len = table.file_bytes as usize;
            drop(table);
            let mut file = disk.open(&table_name(7)).expect("open");
            let mut bytes = vec![0_u8; len];
            file.read_at(0, &mut bytes).expect("read");
            for (index, bit) in flips {
                bytes[index.index(len)] ^= 1 << bit;
            }
            if let Some(cut) = cut {
                bytes.truncate(cut.index(len));
            }
            file.truncate(0).expect("truncate");
            file.write_at(0, &bytes).expect("write");
            if let Ok(table) = Table::open(&disk, 7) {
                for (key, _) in entries.iter().step_by(7) {
                    let _ = table.get_any(key);
                }
                let _ = table.entries_from(Bound::Unbounded).count();
                let _ = table.entries_back_from(Bound::Unbounded);
            }
        }

        #[test]
        fn mutated_version_1_tables_never_panic(
            flips in prop::collection::vec((any::<prop::sample::Index>(), 0_u8..8), 1..4),
        ) {
            let mut bytes = VERSION_1_TABLE.to_vec();
            let len = bytes.len();
            for (index, bit) in flips {
                bytes[index.index(len)] ^= 1 << bit;
            }
            let dir = tempfile::tempdir().expect("tempdir");
            let disk = FsDisk::open(dir.path()).expect("disk");
            disk.create(&table_name(1)).expect("create").write_at(0, &bytes).expect("write");
            if let Ok(table) = Table::open(&disk, 1) {
                for (key, _) in compatibility_sample().iter().step_by(7) {
                    let _ = table.get_any(key);
                }
                let _ = table.entries_from(Bound::Unbounded).count();
                let _ = table.entries_back_from(Bound::Unbounded);
            }
        }

        #[test]
        fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
            let dir = tempfile::tempdir().expect("tempdir");
            let disk = FsDisk::open(dir.path()).expect("disk");
            disk.create(&table_name(1)).expect("create").write_at(0, &bytes).expect("write");
            if let Ok(table) = Table::open(&disk, 1) {
                let _ = table.get_any(b"key");
                let _ = table.entries_from(Bound::Unbounded).count();
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

        #[test]
        fn mutated_dictionary_tables_never_panic(
            flips in prop::collection::vec((any::<prop::sample::Index>(), 0_u8..8), 1..4),
            near_end in any::<bool>(),
        ) {
            // Few cases: each writes a table large enough for a dictionary.
            let entries = dictionary_sample(2500);
            let (_dir, disk, table) = written(&entries, TableCompression::Zstd { level: 1 });
            prop_assert!(table.scratch.borrow().codec.has_zstd_dictionary());
            let len = table.file_bytes as usize;
            // Half the cases hit the metadata (dictionary, index, footer).
            let first = if near_end { len - 20_000.min(len) } else { 0 };
            drop(table);
            let mut file = disk.open(&table_name(7)).expect("open");
            let mut bytes = vec![0_u8; len];
            file.read_at(0, &mut bytes).expect("read");
            for (index, bit) in flips {
                bytes[first + index.index(len - first)] ^= 1 << bit;
            }
            file.write_at(0, &bytes).expect("write");
            if let Ok(table) = Table::open(&disk, 7) {
                for (key, version) in entries.iter().step_by(97) {
                    // Damage may hide an entry or fail the read, never
                    // change what is served.
                    if let Ok(Some(found)) = table.get_any(key) {
                        prop_assert_eq!(&found, version);
                    }
                }
                let _ = table.entries_from(Bound::Unbounded).count();
                let _ = table.entries_back_from(Bound::Unbounded);
            }
        }
    }
}
