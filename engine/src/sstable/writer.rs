//! Writes a table: blocks, index, bloom, meta, footer; then makes it
//! durable under its final name.
//!
//! The file is written as `table-<id>.sst.tmp`, synced, renamed to
//! `table-<id>.sst`, and the directory synced. A crash before the rename
//! leaves a temporary file, which open deletes; a crash after it leaves a
//! complete table that the manifest may or may not name (open deletes it if
//! it does not). So a table file under its final name is always complete.

use crate::disk::{Disk, DiskFile};
use crate::error::EngineError;
use crate::sstable::block::BlockBuilder;
use crate::sstable::bloom::BloomBuilder;
use crate::sstable::footer::Footer;
use crate::sstable::frame::{seal_into, BlockHandle, BlockPlace, Codec, TRAILER_BYTES};
use crate::sstable::index::{self, IndexEntry};
use crate::sstable::meta::TableMeta;
#[cfg(test)]
use crate::sstable::TableEntry;
use crate::sstable::{table_name, TableCompression, TableOptions, TableVersion, TEMPORARY_SUFFIX};
use crate::types::Timestamp;

/// Bytes gathered in memory before they are written to the file: one
/// `write_at` per this many bytes rather than one per block.
const WRITE_BUFFER_BYTES: usize = 256 * 1024;
/// A zstd table's first data blocks, up to this many bytes, are held back
/// and used to train its dictionary; then they and every later block are
/// compressed with it.
const DICTIONARY_SAMPLE_BYTES: usize = 1024 * 1024;
/// A table with fewer bytes of data blocks than this gets no dictionary
/// (training one would cost more than it saves).
const DICTIONARY_SAMPLE_BYTES_MIN: usize = 128 * 1024;
/// Largest dictionary trained. Its entropy tables are what a block then
/// does not rebuild; its content lets small blocks refer to common bytes.
const DICTIONARY_BYTES: usize = 16 * 1024;

/// Where a zstd table's dictionary stands.
#[derive(Debug)]
enum Dictionary {
    /// None will be made: the table is not compressed with zstd.
    Off,
    /// Data blocks held back as training samples, in order: contents and
    /// last key.
    Gathering {
        blocks: Vec<(Vec<u8>, Vec<u8>)>,
        bytes: usize,
    },
    /// Trained (or not, if empty): the bytes of the dictionary block.
    Done(Vec<u8>),
}

/// What was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct WrittenTable {
    pub(crate) id: u64,
    pub(crate) file_bytes: u64,
    pub(crate) meta: TableMeta,
}

/// The temporary name table `id` is written under.
pub(crate) fn temporary_name(id: u64) -> String {
    format!("{}{TEMPORARY_SUFFIX}", table_name(id))
}

/// Builds a table from entries added in key order. Nothing is visible under
/// the table's final name before [`TableWriter::finish`].
#[derive(Debug)]
pub(crate) struct TableWriter<'d, D: Disk> {
    disk: &'d D,
    id: u64,
    file: D::File,
    options: TableOptions,
    sync_enabled: bool,
    /// Bytes sealed but not yet written, and where they go.
    buffer: Vec<u8>,
    /// Bytes written to the file so far.
    written_bytes: u64,
    /// Contents of the block being built, reused between blocks.
    block: BlockBuilder,
    block_contents: Vec<u8>,
    /// Compression contexts, reused between blocks.
    codec: Codec,
    bloom: BloomBuilder,
    index_entries: Vec<IndexEntry>,
    meta: Option<TableMeta>,
    dictionary: Dictionary,
}

impl<'d, D: Disk> TableWriter<'d, D> {
    /// Starts table `id` under its temporary name (replacing a leftover).
    ///
    /// # Errors
    /// Disk errors.
    pub(crate) fn create(
        disk: &'d D,
        id: u64,
        options: TableOptions,
        sync_enabled: bool,
    ) -> Result<TableWriter<'d, D>, EngineError> {
        let temporary = temporary_name(id);
        if disk.exists(&temporary)? {
            disk.remove(&temporary)?;
        }
        let file = disk.create(&temporary)?;
        Ok(TableWriter {
            disk,
            id,
            file,
            options,
            sync_enabled,
            buffer: Vec::with_capacity(WRITE_BUFFER_BYTES + options.block_bytes_target),
            written_bytes: 0,
            block: BlockBuilder::new(),
            block_contents: Vec::new(),
            codec: Codec::new(),
            bloom: BloomBuilder::new(),
            index_entries: Vec::new(),
            meta: None,
            dictionary: match options.compression {
                TableCompression::Zstd { .. } => Dictionary::Gathering {
                    blocks: Vec::new(),
                    bytes: 0,
                },
                TableCompression::None | TableCompression::Lz4 => Dictionary::Off,
            },
        })
    }

    /// Adds an entry; `value: None` is a tombstone.
    ///
    /// # Errors
    /// Disk errors (the table is then abandoned by the caller).
    ///
    /// # Panics
    /// If keys do not strictly ascend.
    pub(crate) fn add(
        &mut self,
        key: &[u8],
        timestamp: Timestamp,
        value: Option<&[u8]>,
    ) -> Result<(), EngineError> {
        match &mut self.meta {
            None => self.meta = Some(TableMeta::first(key, timestamp, value.is_none())),
            Some(meta) => meta.add(key, timestamp, value.is_none()),
        }
        self.bloom.add(key);
        self.block.add(key, timestamp, value);
        if self.block.bytes_estimate() >= self.options.block_bytes_target {
            self.finish_block()?;
        }
        Ok(())
    }

    fn finish_block(&mut self) -> Result<(), EngineError> {
        let last_key = self.block.last_key().to_vec();
        self.block_contents.clear();
        self.block.finish_into(&mut self.block_contents);
        if let Dictionary::Gathering { blocks, bytes } = &mut self.dictionary {
            *bytes += self.block_contents.len();
            blocks.push((self.block_contents.clone(), last_key));
            if *bytes >= DICTIONARY_SAMPLE_BYTES {
                self.train_dictionary()?;
            }
            return Ok(());
        }
        let contents = std::mem::take(&mut self.block_contents);
        let written = self.append_data_block(&contents, last_key);
        self.block_contents = contents;
        written
    }

    fn append_data_block(&mut self, contents: &[u8], last_key: Vec<u8>) -> Result<(), EngineError> {
        let handle = self.append_block(contents, self.options.compression)?;
        self.index_entries.push(IndexEntry { last_key, handle });
        Ok(())
    }

    /// Trains the dictionary on the blocks held back (if there are enough),
    /// then writes them, compressed with it.
    fn train_dictionary(&mut self) -> Result<(), EngineError> {
        let (Dictionary::Gathering { blocks, bytes }, TableCompression::Zstd { level }) =
            (&mut self.dictionary, self.options.compression)
        else {
            // Only zstd tables gather samples, and only until trained.
            return Ok(());
        };
        let (blocks, bytes) = (std::mem::take(blocks), *bytes);
        self.dictionary = Dictionary::Done(Vec::new());
        if bytes >= DICTIONARY_SAMPLE_BYTES_MIN {
            let samples: Vec<&[u8]> = blocks
                .iter()
                .map(|(contents, _)| contents.as_slice())
                .collect();
            // A failed training (too few or too uniform samples) leaves the
            // table without a dictionary; that is only less compact.
            if let Ok(dictionary) = zstd::dict::from_samples(&samples, DICTIONARY_BYTES) {
                if self
                    .codec
                    .use_zstd_dictionary_for_writing(level, &dictionary)
                {
                    self.dictionary = Dictionary::Done(dictionary);
                }
            }
        }
        for (contents, last_key) in blocks {
            self.append_data_block(&contents, last_key)?;
        }
        Ok(())
    }

    /// Seals `contents` into the buffer; writes the buffer out when full.
    fn append_block(
        &mut self,
        contents: &[u8],
        compression: TableCompression,
    ) -> Result<BlockHandle, EngineError> {
        let offset = self.written_bytes + self.buffer.len() as u64;
        let place = BlockPlace {
            table_id: self.id,
            offset,
        };
        let sealed_bytes = seal_into(
            &mut self.buffer,
            contents,
            compression,
            &mut self.codec,
            Some(place),
        );
        if self.buffer.len() >= WRITE_BUFFER_BYTES {
            self.flush_buffer()?;
        }
        Ok(BlockHandle {
            offset,
            size: sealed_bytes as u64 - TRAILER_BYTES,
        })
    }

    fn flush_buffer(&mut self) -> Result<(), EngineError> {
        if !self.buffer.is_empty() {
            self.file.write_at(self.written_bytes, &self.buffer)?;
            self.written_bytes += self.buffer.len() as u64;
            self.buffer.clear();
        }
        Ok(())
    }

    /// Writes the metadata blocks and the footer, syncs, renames the file
    /// to its final name and syncs the directory. Returns `None`, leaving
    /// nothing behind, if no entry was added.
    ///
    /// # Errors
    /// Disk errors; the temporary file is removed on a best-effort basis
    /// (open removes leftovers).
    pub(crate) fn finish(mut self) -> Result<Option<WrittenTable>, EngineError> {
        let disk = self.disk;
        let id = self.id;
        let sync_enabled = self.sync_enabled;
        let written = self.finish_contents();
        drop(self);
        let temporary = temporary_name(id);
        let (file_bytes, meta) = match written {
            Ok(Some(done)) => done,
            Ok(None) => {
                disk.remove(&temporary)?;
                return Ok(None);
            }
            Err(err) => {
                // Best effort: a leftover temporary file is garbage at open.
                let _ = disk.remove(&temporary);
                return Err(err);
            }
        };
        disk.rename(&temporary, &table_name(id))?;
        if sync_enabled {
            disk.sync_dir()?;
        }
        Ok(Some(WrittenTable {
            id,
            file_bytes,
            meta,
        }))
    }

    fn finish_contents(&mut self) -> Result<Option<(u64, TableMeta)>, EngineError> {
        let Some(meta) = self.meta.take() else {
            return Ok(None);
        };
        if !self.block.is_empty() {
            self.finish_block()?;
        }
        self.train_dictionary()?;
        let dictionary = match std::mem::replace(&mut self.dictionary, Dictionary::Off) {
            Dictionary::Done(bytes) => bytes,
            Dictionary::Off | Dictionary::Gathering { .. } => Vec::new(),
        };
        let dictionary = self.append_block(&dictionary, TableCompression::None)?;
        // The index is read once, when the table is opened: compressed as
        // the data is.
        let index = self.append_block(
            &index::encode(&self.index_entries),
            self.options.compression,
        )?;
        let bloom_contents = self.bloom.finish(self.options.bloom_bits_per_key);
        let bloom = self.append_block(&bloom_contents, TableCompression::None)?;
        let meta_handle = self.append_block(&meta.encode(), TableCompression::None)?;
        let footer = Footer {
            dictionary: Some(dictionary),
            index,
            bloom,
            meta: meta_handle,
            version: TableVersion::V4,
        };
        let place = BlockPlace {
            table_id: self.id,
            offset: self.written_bytes + self.buffer.len() as u64,
        };
        self.buffer.extend_from_slice(&footer.encode(place));
        self.flush_buffer()?;
        if self.sync_enabled {
            self.file.sync()?;
        }
        Ok(Some((self.written_bytes, meta)))
    }

    /// Abandons the table: removes its temporary file (best effort).
    pub(crate) fn abandon(self) {
        let disk = self.disk;
        let id = self.id;
        drop(self);
        let _ = disk.remove(&temporary_name(id));
    }
}

/// Writes `entries` (sorted by key, one version per key) as table `id` and
/// makes it durable (if `sync_enabled`). Returns `None`, writing nothing,
/// when `entries` is empty.
///
/// # Errors
/// The first error of `entries`, or disk errors.
#[cfg(test)]
pub(crate) fn write_table<D: Disk>(
    disk: &D,
    id: u64,
    entries: impl Iterator<Item = Result<TableEntry, EngineError>>,
    options: TableOptions,
    sync_enabled: bool,
) -> Result<Option<WrittenTable>, EngineError> {
    let mut writer = TableWriter::create(disk, id, options, sync_enabled)?;
    for entry in entries {
        let added = entry.and_then(|(key, version)| {
            writer.add(&key, version.timestamp, version.value.as_deref())
        });
        if let Err(err) = added {
            writer.abandon();
            return Err(err);
        }
    }
    writer.finish()
}
