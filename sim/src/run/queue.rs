//! The run's pending events, ordered by virtual time and then by the order
//! they were scheduled in.
//!
//! An ordered map from (time, sequence) to a slot of a slab that holds the
//! event: the map's nodes then move 4 bytes of value instead of a whole
//! event each time they shift or rebalance, and the slab's freed slots are
//! reused, so a run allocates for its largest backlog only.

use std::collections::BTreeMap;

/// Pending events, earliest first; ties in time go in scheduling order.
#[derive(Debug)]
pub(super) struct EventQueue<E> {
    /// (time, sequence) to the event's slot in `slab`.
    order: BTreeMap<(u64, u64), u32>,
    slab: Vec<Option<E>>,
    /// Slots of `slab` free for reuse.
    free: Vec<u32>,
    next_seq: u64,
}

impl<E> EventQueue<E> {
    pub(super) fn new() -> Self {
        Self {
            order: BTreeMap::new(),
            slab: Vec::new(),
            free: Vec::new(),
            next_seq: 0,
        }
    }

    /// Schedules `event` at virtual time `time`, after every event already
    /// scheduled for the same time.
    pub(super) fn push(&mut self, time: u64, event: E) {
        let slot = match self.free.pop() {
            Some(slot) => {
                self.slab[slot as usize] = Some(event);
                slot
            }
            None => {
                self.slab.push(Some(event));
                u32::try_from(self.slab.len() - 1).expect("fewer than 2^32 pending events")
            }
        };
        self.order.insert((time, self.next_seq), slot);
        self.next_seq += 1;
    }

    /// The earliest event and its time.
    pub(super) fn pop(&mut self) -> Option<(u64, E)> {
        let ((time, _), slot) = self.order.pop_first()?;
        let event = self.slab[slot as usize]
            .take()
            .expect("a queued slot holds its event");
        self.free.push(slot);
        Some((time, event))
    }

    /// Events still pending.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.order.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Events come out by time, and events of the same time in the order
    /// they went in, however pushes and pops interleave.
    #[test]
    fn events_leave_by_time_then_in_scheduling_order() {
        let mut queue = EventQueue::new();
        let mut model: BTreeMap<(u64, u64), u32> = BTreeMap::new();
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        let mut seq = 0;
        for index in 0..2_000_u32 {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            if state >> 62 == 0 {
                assert_eq!(
                    queue.pop(),
                    model.pop_first().map(|((time, _), event)| (time, event))
                );
            } else {
                let time = (state >> 33) % 40;
                queue.push(time, index);
                model.insert((time, seq), index);
                seq += 1;
            }
            assert_eq!(queue.len(), model.len());
        }
        while let Some(entry) = model.pop_first() {
            assert_eq!(queue.pop(), Some((entry.0 .0, entry.1)));
        }
        assert_eq!(queue.pop(), None);
    }
}
