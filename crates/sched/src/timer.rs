//! Deadlines: an indexed binary min-heap with cancellable entries.

use alloc::vec::Vec;

/// Names one entry of a [`TimerQueue`], for [`TimerQueue::cancel`].
///
/// Keys are generation-checked: cancelling an entry that already fired or was
/// cancelled returns `None`, even if its storage slot has been reused since
/// (until the slot's 32-bit generation wraps around).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TimerKey {
    slot: u32,
    generation: u32,
}

#[derive(Debug)]
struct Slot<T> {
    generation: u32,
    /// `Some` while the slot holds a pending entry.
    value: Option<T>,
    /// Index of this slot's entry in `heap` while `value` is `Some`.
    heap_pos: usize,
}

/// What the heap orders: deadline, then insertion sequence (ties fire in
/// insertion order), and the slot holding the value.
#[derive(Clone, Copy, Debug)]
struct HeapEntry {
    deadline: u64,
    seq: u64,
    slot: u32,
}

impl HeapEntry {
    fn before(&self, other: &Self) -> bool {
        (self.deadline, self.seq) < (other.deadline, other.seq)
    }
}

/// Values waiting for a deadline (monotonic nanoseconds).
///
/// `insert`, `cancel` and `pop_expired` are O(log n); `next_deadline` is O(1).
/// Entries with equal deadlines come out in insertion order. Storage is
/// reused, so a queue that has reached its peak size no longer allocates.
#[derive(Debug)]
pub struct TimerQueue<T> {
    heap: Vec<HeapEntry>,
    slots: Vec<Slot<T>>,
    free: Vec<u32>,
    next_seq: u64,
}

impl<T> Default for TimerQueue<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> TimerQueue<T> {
    /// An empty queue (does not allocate).
    pub const fn new() -> Self {
        Self {
            heap: Vec::new(),
            slots: Vec::new(),
            free: Vec::new(),
            next_seq: 0,
        }
    }

    /// Make room for `additional` more pending entries without allocating.
    pub fn reserve(&mut self, additional: usize) {
        self.heap.reserve(additional);
        self.slots
            .reserve(additional.saturating_sub(self.free.len()));
        self.free
            .reserve(self.slots.capacity().saturating_sub(self.free.len()));
    }

    /// Number of pending entries.
    pub fn len(&self) -> usize {
        self.heap.len()
    }

    /// Whether nothing is pending.
    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }

    /// The earliest pending deadline.
    pub fn next_deadline(&self) -> Option<u64> {
        self.heap.first().map(|e| e.deadline)
    }

    /// The deadline of a pending entry.
    pub fn deadline(&self, key: TimerKey) -> Option<u64> {
        let slot = self.live_slot(key)?;
        Some(self.heap[slot.heap_pos].deadline)
    }

    /// Adds `value`, due at `deadline`.
    pub fn insert(&mut self, deadline: u64, value: T) -> TimerKey {
        let slot = match self.free.pop() {
            Some(index) => index,
            None => {
                let index = u32::try_from(self.slots.len())
                    .expect("more than 2^32 pending timers cannot fit in memory");
                self.slots.push(Slot {
                    generation: 0,
                    value: None,
                    heap_pos: 0,
                });
                index
            }
        };
        let seq = self.next_seq;
        self.next_seq += 1;
        let pos = self.heap.len();
        let entry = &mut self.slots[slot as usize];
        entry.value = Some(value);
        entry.heap_pos = pos;
        let generation = entry.generation;
        self.heap.push(HeapEntry {
            deadline,
            seq,
            slot,
        });
        self.sift_up(pos);
        TimerKey { slot, generation }
    }

    /// Removes a pending entry and returns its value; `None` if it already
    /// fired or was cancelled.
    pub fn cancel(&mut self, key: TimerKey) -> Option<T> {
        let pos = self.live_slot(key)?.heap_pos;
        Some(self.remove_at(pos).1)
    }

    /// Removes the earliest entry if its deadline is `<= now`. Call repeatedly
    /// until `None` to collect everything that expired.
    pub fn pop_expired(&mut self, now: u64) -> Option<(u64, T)> {
        if self.heap.first()?.deadline > now {
            return None;
        }
        Some(self.remove_at(0))
    }

    fn live_slot(&self, key: TimerKey) -> Option<&Slot<T>> {
        let slot = self.slots.get(key.slot as usize)?;
        (slot.generation == key.generation && slot.value.is_some()).then_some(slot)
    }

    /// Takes the heap entry at `pos` out and frees its slot.
    fn remove_at(&mut self, pos: usize) -> (u64, T) {
        let removed = self.heap.swap_remove(pos);
        if pos < self.heap.len() {
            self.slots[self.heap[pos].slot as usize].heap_pos = pos;
            // The entry moved from the end may belong above or below `pos`.
            let pos = self.sift_up(pos);
            self.sift_down(pos);
        }
        let slot = &mut self.slots[removed.slot as usize];
        slot.generation = slot.generation.wrapping_add(1);
        let value = slot
            .value
            .take()
            .expect("heap entry always points at an occupied slot");
        self.free.push(removed.slot);
        (removed.deadline, value)
    }

    fn swap(&mut self, a: usize, b: usize) {
        self.heap.swap(a, b);
        self.slots[self.heap[a].slot as usize].heap_pos = a;
        self.slots[self.heap[b].slot as usize].heap_pos = b;
    }

    fn sift_up(&mut self, mut pos: usize) -> usize {
        while pos > 0 {
            let parent = (pos - 1) / 2;
            if !self.heap[pos].before(&self.heap[parent]) {
                break;
            }
            self.swap(pos, parent);
            pos = parent;
        }
        pos
    }

    fn sift_down(&mut self, mut pos: usize) {
        loop {
            let left = 2 * pos + 1;
            if left >= self.heap.len() {
                break;
            }
            let right = left + 1;
            let child = if right < self.heap.len() && self.heap[right].before(&self.heap[left]) {
                right
            } else {
                left
            };
            if !self.heap[child].before(&self.heap[pos]) {
                break;
            }
            self.swap(pos, child);
            pos = child;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(q: &mut TimerQueue<u32>, now: u64) -> Vec<(u64, u32)> {
        core::iter::from_fn(|| q.pop_expired(now)).collect()
    }

    #[test]
    fn expires_in_deadline_order_ties_fifo() {
        let mut q = TimerQueue::new();
        q.insert(30, 1);
        q.insert(10, 2);
        q.insert(20, 3);
        q.insert(10, 4);
        q.insert(10, 5);
        assert_eq!(q.next_deadline(), Some(10));
        assert_eq!(q.pop_expired(9), None);
        assert_eq!(drain(&mut q, 20), [(10, 2), (10, 4), (10, 5), (20, 3)]);
        assert_eq!(q.next_deadline(), Some(30));
        assert_eq!(drain(&mut q, u64::MAX), [(30, 1)]);
        assert!(q.is_empty());
        assert_eq!(q.next_deadline(), None);
    }

    #[test]
    fn cancel_returns_value_once() {
        let mut q = TimerQueue::new();
        let a = q.insert(10, 1);
        let b = q.insert(20, 2);
        let c = q.insert(5, 3);
        assert_eq!(q.deadline(b), Some(20));
        assert_eq!(q.cancel(b), Some(2));
        assert_eq!(q.cancel(b), None);
        assert_eq!(q.deadline(b), None);
        assert_eq!(q.len(), 2);
        assert_eq!(q.cancel(c), Some(3));
        assert_eq!(q.next_deadline(), Some(10));
        assert_eq!(drain(&mut q, 100), [(10, 1)]);
        // The key of an entry that fired is dead, even once its slot is reused.
        let d = q.insert(50, 4);
        assert_eq!(q.cancel(a), None);
        assert_eq!(q.cancel(d), Some(4));
    }

    /// Random inserts, cancels and pops against a sorted-vector reference.
    #[test]
    fn matches_reference_model() {
        let mut rng = crate::tests_util::Rng(0x9e37_79b9_7f4a_7c15);
        let mut q = TimerQueue::new();
        // (deadline, seq, value, key)
        let mut model: Vec<(u64, u64, u32, TimerKey)> = Vec::new();
        let mut seq = 0;
        let mut now = 0;
        for step in 0..20_000u32 {
            match rng.below(10) {
                0..=4 => {
                    let deadline = now + rng.below(50);
                    let key = q.insert(deadline, step);
                    model.push((deadline, seq, step, key));
                    seq += 1;
                }
                5..=6 if !model.is_empty() => {
                    let i = rng.below(model.len() as u64) as usize;
                    let (_, _, value, key) = model.remove(i);
                    assert_eq!(q.cancel(key), Some(value));
                    assert_eq!(q.cancel(key), None);
                }
                _ => {
                    now += rng.below(8);
                    model.sort_by_key(|&(d, s, _, _)| (d, s));
                    let split = model.partition_point(|&(d, _, _, _)| d <= now);
                    let expected: Vec<_> =
                        model.drain(..split).map(|(d, _, v, _)| (d, v)).collect();
                    assert_eq!(drain(&mut q, now), expected);
                }
            }
            assert_eq!(q.len(), model.len());
            assert_eq!(q.next_deadline(), model.iter().map(|e| e.0).min());
        }
    }
}
