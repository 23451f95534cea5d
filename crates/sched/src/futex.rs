//! Futex wait queues keyed by address.

use alloc::vec::Vec;
use core::hash::{BuildHasherDefault, Hasher};

use hashbrown::HashMap;

use crate::wait_queue::WaitQueue;

/// How many emptied wait queues are kept for reuse, so that a wait/wake cycle
/// on a fresh address does not allocate.
const SPARE_QUEUES: usize = 16;

/// A hasher for word addresses: one multiply by an odd constant, then the
/// high (well mixed) bits are folded down. Futex words are aligned, so their
/// low bits carry no information.
#[derive(Default, Clone, Copy, Debug)]
pub struct AddrHasher(u64);

impl Hasher for AddrHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only reached for non-usize keys; kept correct, not fast.
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }

    fn write_u64(&mut self, n: u64) {
        let x = (self.0 ^ n).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        self.0 = x ^ (x >> 29);
    }

    fn write_usize(&mut self, n: usize) {
        self.write_u64(n as u64);
    }
}

/// Tasks waiting on futex words, by the word's address.
///
/// An address has an entry only while someone waits on it. Emptied queues are
/// kept in a small pool and the table keeps its capacity, so the steady state
/// does not allocate. The kernel decides what an address is (virtual, or
/// physical for shared mappings) and keeps this table behind its own lock.
#[derive(Debug)]
pub struct FutexTable<T> {
    queues: HashMap<usize, WaitQueue<T>, BuildHasherDefault<AddrHasher>>,
    spare: Vec<WaitQueue<T>>,
}

impl<T> Default for FutexTable<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> FutexTable<T> {
    /// An empty table (does not allocate).
    pub const fn new() -> Self {
        Self {
            queues: HashMap::with_hasher(BuildHasherDefault::new()),
            spare: Vec::new(),
        }
    }

    /// Queues `t` as the newest waiter on `addr`.
    pub fn enqueue(&mut self, addr: usize, t: T) {
        self.queues
            .entry(addr)
            .or_insert_with(|| self.spare.pop().unwrap_or_default())
            .push(t);
    }

    /// Wakes up to `n` waiters on `addr`, oldest first, handing each to `out`;
    /// returns how many were woken. `usize::MAX` wakes all.
    pub fn wake(&mut self, addr: usize, n: usize, out: &mut impl FnMut(T)) -> usize {
        let Some(queue) = self.queues.get_mut(&addr) else {
            return 0;
        };
        let mut woken = 0;
        while woken < n {
            let Some(t) = queue.pop_front() else { break };
            out(t);
            woken += 1;
        }
        if queue.is_empty() {
            self.release(addr);
        }
        woken
    }

    /// Like [`FutexTable::wake`] with a `u32` count as in the futex ABI
    /// (`u32::MAX` wakes all).
    pub fn wake_u32(&mut self, addr: usize, n: u32, out: &mut impl FnMut(T)) -> u32 {
        let n = if n == u32::MAX {
            usize::MAX
        } else {
            n as usize
        };
        // At most `n` were woken, so the count fits back into u32.
        u32::try_from(self.wake(addr, n, out)).unwrap_or(u32::MAX)
    }

    /// Removes `t` from the waiters on `addr` (its timeout fired, or it was
    /// interrupted). `false` means it was not queued: a waker already took it,
    /// so it counts as woken, not timed out.
    pub fn cancel(&mut self, addr: usize, t: &T) -> bool
    where
        T: PartialEq,
    {
        let Some(queue) = self.queues.get_mut(&addr) else {
            return false;
        };
        let removed = queue.remove(t);
        if queue.is_empty() {
            self.release(addr);
        }
        removed
    }

    /// Moves up to `n` waiters from `from` to the back of `to` (FUTEX_REQUEUE),
    /// oldest first; returns how many moved.
    pub fn requeue(&mut self, from: usize, to: usize, n: usize) -> usize {
        if from == to {
            return self.waiters(from).min(n);
        }
        let Some(mut source) = self.queues.remove(&from) else {
            return 0;
        };
        let mut moved = 0;
        while moved < n {
            let Some(t) = source.pop_front() else { break };
            self.enqueue(to, t);
            moved += 1;
        }
        if source.is_empty() {
            self.recycle(source);
        } else {
            self.queues.insert(from, source);
        }
        moved
    }

    /// Number of tasks waiting on `addr`.
    pub fn waiters(&self, addr: usize) -> usize {
        self.queues.get(&addr).map_or(0, WaitQueue::len)
    }

    /// Number of addresses with at least one waiter.
    pub fn addresses(&self) -> usize {
        self.queues.len()
    }

    fn release(&mut self, addr: usize) {
        if let Some(queue) = self.queues.remove(&addr) {
            self.recycle(queue);
        }
    }

    fn recycle(&mut self, queue: WaitQueue<T>) {
        if self.spare.len() < SPARE_QUEUES {
            self.spare.push(queue);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wake_all(t: &mut FutexTable<u32>, addr: usize, n: usize) -> Vec<u32> {
        let mut out = Vec::new();
        let count = t.wake(addr, n, &mut |x| out.push(x));
        assert_eq!(count, out.len());
        out
    }

    #[test]
    fn wake_counts_and_fifo() {
        let mut t = FutexTable::new();
        for i in 0..5 {
            t.enqueue(0x1000, i);
        }
        t.enqueue(0x2000, 99);
        assert_eq!(t.waiters(0x1000), 5);
        assert_eq!(t.waiters(0x3000), 0);
        assert_eq!(wake_all(&mut t, 0x3000, 1), []);
        assert_eq!(wake_all(&mut t, 0x1000, 2), [0, 1]);
        assert_eq!(wake_all(&mut t, 0x1000, 0), []);
        assert_eq!(t.waiters(0x1000), 3);
        assert_eq!(wake_all(&mut t, 0x1000, usize::MAX), [2, 3, 4]);
        assert_eq!(t.waiters(0x1000), 0);
        assert_eq!(t.addresses(), 1, "emptied address must be removed");
        let mut out = Vec::new();
        assert_eq!(t.wake_u32(0x2000, u32::MAX, &mut |x| out.push(x)), 1);
        assert_eq!(out, [99]);
        assert_eq!(t.addresses(), 0);
    }

    #[test]
    fn cancel_timed_out_waiter() {
        let mut t = FutexTable::new();
        t.enqueue(8, 1);
        t.enqueue(8, 2);
        t.enqueue(8, 3);
        // Waiter 2 timed out: it leaves the queue and the others keep order.
        assert!(t.cancel(8, &2));
        assert_eq!(wake_all(&mut t, 8, 1), [1]);
        // Waiter 1 was already woken: its timeout loses the race.
        assert!(!t.cancel(8, &1));
        assert!(t.cancel(8, &3));
        assert_eq!(t.addresses(), 0);
        assert!(!t.cancel(8, &3));
    }

    #[test]
    fn requeue_moves_oldest() {
        let mut t = FutexTable::new();
        for i in 0..4 {
            t.enqueue(1, i);
        }
        t.enqueue(2, 10);
        assert_eq!(t.requeue(1, 2, 2), 2);
        assert_eq!(wake_all(&mut t, 2, usize::MAX), [10, 0, 1]);
        assert_eq!(t.requeue(1, 1, 10), 2);
        assert_eq!(t.requeue(1, 3, 10), 2);
        assert_eq!(t.waiters(1), 0);
        assert_eq!(wake_all(&mut t, 3, usize::MAX), [2, 3]);
        assert_eq!(t.addresses(), 0);
    }

    #[test]
    fn queues_are_recycled() {
        let mut t = FutexTable::new();
        t.enqueue(4, 1);
        assert_eq!(wake_all(&mut t, 4, 1), [1]);
        assert_eq!(t.spare.len(), 1);
        t.enqueue(12, 2);
        assert!(t.spare.is_empty(), "a spare queue is reused");
    }
}
