//! The block cache: decoded data blocks kept in memory under a byte bound.
//!
//! Keyed by (table id, block offset); table ids are never reused, so an
//! entry can never be mistaken for another table's block. Eviction is CLOCK
//! (second chance): every slot has a referenced bit, set on a hit; to make
//! room, a hand sweeps the slots in order, clearing set bits and evicting the
//! first slot found clear. It approximates LRU at the cost of one bit per
//! hit, and it is deterministic: the same sequence of accesses evicts the
//! same blocks (no hashing, no clock).

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::sstable::block::Block;

/// Which block: its table and its offset there.
pub(crate) type BlockKey = (u64, u64);

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
    /// Where each cached block sits.
    slots_by_key: BTreeMap<BlockKey, usize>,
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
            slots_by_key: BTreeMap::new(),
            slots: Vec::new(),
            free: Vec::new(),
            hand: 0,
            hits: 0,
            misses: 0,
        }
    }

    /// The cached block at `key`, marking it recently used.
    pub(crate) fn get(&mut self, key: BlockKey) -> Option<Arc<Block>> {
        match self.slots_by_key.get(&key) {
            Some(&index) => {
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
        if bytes > self.capacity_bytes || self.slots_by_key.contains_key(&key) {
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
        self.slots_by_key.insert(key, index);
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
        self.slots_by_key.remove(&slot.key);
        self.used_bytes -= slot.bytes;
        self.free.push(index);
    }

    /// Drops every cached block of table `table` (it was deleted).
    pub(crate) fn remove_table(&mut self, table: u64) {
        let indexes: Vec<usize> = self
            .slots_by_key
            .range((table, 0)..=(table, u64::MAX))
            .map(|(_, &index)| index)
            .collect();
        for index in indexes {
            self.remove_slot(index);
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
    use crate::types::Timestamp;

    fn block(value_bytes: usize) -> Arc<Block> {
        let mut builder = BlockBuilder::new();
        builder.add(b"k", Timestamp::default(), Some(&vec![7; value_bytes]));
        let origin = BlockOrigin {
            file: "t",
            offset: 0,
        };
        Arc::new(Block::decode(builder.finish(), origin).expect("decode"))
    }

    #[test]
    fn cache_stays_within_its_bound_and_keeps_recently_used_blocks() {
        let one = block(1000).charge_bytes() as u64;
        let mut cache = BlockCache::new(3 * one);
        for offset in 0..3 {
            cache.insert((1, offset), block(1000));
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
            for i in 0..50_u64 {
                if cache.get((1, i % 7)).is_none() {
                    cache.insert((1, i % 7), block(100));
                }
                if i % 3 == 0 {
                    cache.get((1, i % 5));
                }
            }
            for offset in 0..7 {
                kept.push(cache.slots_by_key.contains_key(&(1, offset)));
            }
            kept
        };
        assert_eq!(run(), run());
    }
}
