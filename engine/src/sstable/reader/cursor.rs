//! Ordered iteration over one table: [`TableCursor`] walks its entries
//! forward (reading blocks ahead) or backward (a block decoded at a time),
//! checking each block's keys against the index.

use std::cell::RefCell;
use std::ops::{Bound, Range};
use std::sync::Arc;

use super::{ReadAhead, Table};
use crate::bytes::key_cmp;
use crate::disk::DiskFile;
use crate::error::EngineError;
use crate::sstable::block::{Block, BlockCursor};
use crate::sstable::cache::BlockCache;
use crate::sstable::corruption;
use crate::types::Timestamp;

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

impl<'a, F: DiskFile> TableCursor<'a, F> {
    /// A cursor on no entry yet ([`Table::cursor`] says what the arguments
    /// mean).
    pub(super) fn new(
        table: &'a Table<F>,
        cache: &'a RefCell<BlockCache>,
        fill: bool,
        reverse: bool,
    ) -> Self {
        Self {
            table,
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
