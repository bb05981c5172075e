//! The block cache: decoded data blocks kept in memory under a byte bound.
//!
//! Keyed by (table id, block position in the table's index); table ids are
//! never reused, so an entry can never be mistaken for another table's
//! block. A lookup is one search among the tables with cached blocks (a
//! handful) and one array index, not a search among all cached blocks.
//! Eviction is CLOCK (second chance): every slot has a referenced bit, set
//! on a hit; to make room, a hand sweeps the slots in order, clearing set
//! bits and evicting the first slot found clear. It approximates LRU at the
//! cost of one bit per hit, and it is deterministic: the same sequence of
//! accesses evicts the same blocks (no hashing, no clock).

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::sstable::block::Block;

/// Which block: its table's id and its position in that table's index.
pub(crate) type BlockKey = (u64, usize);

#[derive(Debug)]
struct Slot {
    key: BlockKey,
    block: Arc<Block>,
    /// Bytes charged for it.
    bytes: u64,
    /// Hit since the hand last passed.
    referenced: bool,
}

/// Decoded blocks under a memory bound.
#[derive(Debug)]
pub(crate) struct BlockCache {
    /// The bound: the sum of the charged bytes of cached blocks stays at or
    /// under it.
    capacity_bytes: u64,
    /// The sum of the charged bytes of cached blocks.
    used_bytes: u64,
    /// Per table with cached blocks, per block position: the block's slot
    /// plus one (0: not cached). Grown on demand up to the highest position
    /// cached (4 bytes per block of a table, next to its index's 30 or so).
    slots_by_table: BTreeMap<u64, Vec<u32>>,
    /// The CLOCK ring; `None` is a free slot.
    slots: Vec<Option<Slot>>,
    /// Free slots, reused before the ring grows.
    free: Vec<usize>,
    /// The next slot the hand looks at.
    hand: usize,
    /// Counters, for tests and reports.
    hits: u64,
    misses: u64,
}

impl BlockCache {
    /// An empty cache holding at most `capacity_bytes` (0 caches nothing).
    pub(crate) fn new(capacity_bytes: u64) -> BlockCache {
        BlockCache {
            capacity_bytes,
            used_bytes: 0,
            slots_by_table: BTreeMap::new(),
            slots: Vec::new(),
            free: Vec::new(),
            hand: 0,
            hits: 0,
            misses: 0,
        }
    }

    /// The slot of the block at `key`, if cached.
    fn slot_of(&self, (table, position): BlockKey) -> Option<usize> {
        let slot = *self.slots_by_table.get(&table)?.get(position)?;
        (slot != 0).then(|| slot as usize - 1)
    }

    /// The cached block at `key`, marking it recently used.
    pub(crate) fn get(&mut self, key: BlockKey) -> Option<Arc<Block>> {
        match self.slot_of(key) {
            Some(index) => {
                let slot = self.slots[index]
                    .as_mut()
                    .expect("the index names live slots");
                slot.referenced = true;
                self.hits += 1;
                Some(slot.block.clone())
            }
            None => {
                self.misses += 1;
                None
            }
        }
    }

    /// Caches `block` at `key`, evicting others as needed. A block larger
    /// than the whole cache is not cached.
    pub(crate) fn insert(&mut self, key: BlockKey, block: Arc<Block>) {
        let bytes = block.charge_bytes() as u64;
        if bytes > self.capacity_bytes || self.slot_of(key).is_some() {
            return;
        }
        while self.used_bytes + bytes > self.capacity_bytes {
            self.evict_one();
        }
        let slot = Slot {
            key,
            block,
            bytes,
            referenced: false,
        };
        let index = match self.free.pop() {
            Some(index) => {
                self.slots[index] = Some(slot);
                index
            }
            None => {
                self.slots.push(Some(slot));
                self.slots.len() - 1
            }
        };
        let (table, position) = key;
        let positions = self.slots_by_table.entry(table).or_default();
        if positions.len() <= position {
            positions.resize(position + 1, 0);
        }
        positions[position] = u32::try_from(index + 1).expect("fewer than 4G cached blocks");
        self.used_bytes += bytes;
        self.check_bound();
    }

    /// Evicts the first unreferenced block at or after the hand.
    ///
    /// # Panics
    /// If the cache is empty (callers only evict while over the bound).
    fn evict_one(&mut self) {
        assert!(self.used_bytes > 0, "something to evict");
        // Two sweeps at most: the first clears every referenced bit.
        for _ in 0..2 * self.slots.len() {
            let index = self.hand;
            self.hand = (self.hand + 1) % self.slots.len();
            let Some(slot) = self.slots[index].as_mut() else {
                continue;
            };
            if slot.referenced {
                slot.referenced = false;
                continue;
            }
            self.remove_slot(index);
            return;
        }
        unreachable!("two sweeps of a non-empty ring find an unreferenced slot");
    }

    fn remove_slot(&mut self, index: usize) {
        let slot = self.slots[index].take().expect("a live slot");
        let (table, position) = slot.key;
        let positions = self
            .slots_by_table
            .get_mut(&table)
            .expect("a cached block's table is known");
        positions[position] = 0;
        self.used_bytes -= slot.bytes;
        self.free.push(index);
    }

    /// Drops every cached block of table `table` (it was deleted).
    pub(crate) fn remove_table(&mut self, table: u64) {
        let Some(positions) = self.slots_by_table.remove(&table) else {
            return;
        };
        for slot in positions.into_iter().filter(|&slot| slot != 0) {
            let index = slot as usize - 1;
            let slot = self.slots[index].take().expect("a live slot");
            self.used_bytes -= slot.bytes;
            self.free.push(index);
        }
    }

    /// Bytes charged for the cached blocks.
    pub(crate) fn used_bytes(&self) -> u64 {
        self.used_bytes
    }

    /// Hits and misses so far.
    pub(crate) fn hits_and_misses(&self) -> (u64, u64) {
        (self.hits, self.misses)
    }

    fn check_bound(&self) {
        assert!(
            self.used_bytes <= self.capacity_bytes,
            "the cache stays within its bound"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sstable::block::{BlockBuilder, BlockOrigin};
    use crate::sstable::TableVersion;
    use crate::types::Timestamp;

    fn block(value_bytes: usize) -> Arc<Block> {
        let mut builder = BlockBuilder::new();
        builder.add(b"k", Timestamp::default(), Some(&vec![7; value_bytes]));
        let origin = BlockOrigin {
            file: "t",
            offset: 0,
        };
        Arc::new(Block::decode(builder.finish(), TableVersion::V2, origin).expect("decode"))
    }

    #[test]
    fn cache_stays_within_its_bound_and_keeps_recently_used_blocks() {
        let one = block(1000).charge_bytes() as u64;
        let mut cache = BlockCache::new(3 * one);
        for position in 0..3 {
            cache.insert((1, position), block(1000));
        }
        assert!(cache.get((1, 0)).is_some());
        cache.insert((1, 3), block(1000));
        assert!(cache.used_bytes() <= 3 * one);
        assert!(cache.get((1, 0)).is_some(), "recently used block was kept");
        assert!(cache.get((1, 1)).is_none(), "the oldest unused block went");
        assert_eq!(cache.hits_and_misses(), (2, 1));
    }

    #[test]
    fn block_larger_than_the_cache_is_not_cached() {
        let mut cache = BlockCache::new(100);
        cache.insert((1, 0), block(1000));
        assert!(cache.get((1, 0)).is_none());
        assert_eq!(cache.used_bytes(), 0);
    }

    #[test]
    fn removing_a_table_drops_only_its_blocks() {
        let mut cache = BlockCache::new(1 << 20);
        cache.insert((1, 0), block(10));
        cache.insert((2, 0), block(10));
        cache.insert((2, 100), block(10));
        cache.remove_table(2);
        assert!(cache.get((1, 0)).is_some());
        assert!(cache.get((2, 0)).is_none());
        assert!(cache.get((2, 100)).is_none());
        assert_eq!(cache.used_bytes(), block(10).charge_bytes() as u64);
    }

    #[test]
    fn eviction_is_deterministic() {
        let run = || {
            let one = block(100).charge_bytes() as u64;
            let mut cache = BlockCache::new(5 * one);
            let mut kept = Vec::new();
            for i in 0..50_usize {
                if cache.get((1, i % 7)).is_none() {
                    cache.insert((1, i % 7), block(100));
                }
                if i % 3 == 0 {
                    cache.get((1, i % 5));
                }
            }
            for position in 0..7 {
                kept.push(cache.slot_of((1, position)).is_some());
            }
            kept
        };
        assert_eq!(run(), run());
    }
}
