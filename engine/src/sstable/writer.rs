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
use crate::sstable::frame::{seal, BlockHandle, TRAILER_BYTES};
use crate::sstable::index::{self, IndexEntry};
use crate::sstable::meta::TableMeta;
use crate::sstable::{table_name, TableCompression, TableEntry, TableOptions, TEMPORARY_SUFFIX};

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

/// Appends blocks to the temporary file and remembers where they went.
struct TableFile<'a, F: DiskFile> {
    file: &'a mut F,
    len: u64,
}

impl<F: DiskFile> TableFile<'_, F> {
    fn append_block(
        &mut self,
        contents: &[u8],
        compression: TableCompression,
    ) -> Result<BlockHandle, EngineError> {
        let sealed = seal(contents, compression);
        let offset = self.len;
        self.file.write_at(offset, &sealed)?;
        self.len += sealed.len() as u64;
        Ok(BlockHandle {
            offset,
            size: sealed.len() as u64 - TRAILER_BYTES,
        })
    }
}

/// Writes `entries` (sorted by key, one version per key) as table `id` and
/// makes it durable (if `sync_enabled`). Returns `None`, writing nothing,
/// when `entries` is empty.
///
/// # Errors
/// The first error of `entries`, or disk errors; the temporary file is
/// removed on a best-effort basis (open removes leftovers).
///
/// # Panics
/// If keys do not strictly ascend.
pub(crate) fn write_table<D: Disk>(
    disk: &D,
    id: u64,
    entries: impl Iterator<Item = Result<TableEntry, EngineError>>,
    options: TableOptions,
    sync_enabled: bool,
) -> Result<Option<WrittenTable>, EngineError> {
    let temporary = temporary_name(id);
    if disk.exists(&temporary)? {
        disk.remove(&temporary)?;
    }
    let mut file = disk.create(&temporary)?;
    let written = write_contents(&mut file, entries, options, sync_enabled);
    drop(file);
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

fn write_contents<F: DiskFile>(
    file: &mut F,
    entries: impl Iterator<Item = Result<TableEntry, EngineError>>,
    options: TableOptions,
    sync_enabled: bool,
) -> Result<Option<(u64, TableMeta)>, EngineError> {
    let mut out = TableFile { file, len: 0 };
    let mut block = BlockBuilder::new();
    let mut bloom = BloomBuilder::new();
    let mut index_entries = Vec::new();
    let mut meta: Option<TableMeta> = None;
    for entry in entries {
        let (key, version) = entry?;
        match &mut meta {
            None => meta = Some(TableMeta::first(&key, &version)),
            Some(meta) => meta.add(&key, &version),
        }
        bloom.add(&key);
        block.add(&key, &version);
        if block.bytes_estimate() >= options.block_bytes_target {
            let last_key = block.last_key().to_vec();
            let handle = out.append_block(&block.finish(), options.compression)?;
            index_entries.push(IndexEntry { last_key, handle });
        }
    }
    let Some(meta) = meta else {
        return Ok(None);
    };
    if !block.is_empty() {
        let last_key = block.last_key().to_vec();
        let handle = out.append_block(&block.finish(), options.compression)?;
        index_entries.push(IndexEntry { last_key, handle });
    }
    let index = out.append_block(&index::encode(&index_entries), TableCompression::None)?;
    let bloom = out.append_block(
        &bloom.finish(options.bloom_bits_per_key),
        TableCompression::None,
    )?;
    let meta_handle = out.append_block(&meta.encode(), TableCompression::None)?;
    let footer = Footer {
        index,
        bloom,
        meta: meta_handle,
    };
    let footer_bytes = footer.encode();
    out.file.write_at(out.len, &footer_bytes)?;
    out.len += footer_bytes.len() as u64;
    if sync_enabled {
        out.file.sync()?;
    }
    Ok(Some((out.len, meta)))
}
