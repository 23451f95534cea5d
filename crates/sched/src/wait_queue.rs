//! FIFO queues of blocked tasks.

use alloc::collections::VecDeque;

/// Tasks blocked on one event, woken in arrival order.
///
/// The queue keeps its capacity, so steady-state use does not allocate.
#[derive(Debug)]
pub struct WaitQueue<T> {
    waiters: VecDeque<T>,
}

impl<T> Default for WaitQueue<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> WaitQueue<T> {
    /// An empty queue (does not allocate).
    pub const fn new() -> Self {
        Self {
            waiters: VecDeque::new(),
        }
    }

    /// Adds a waiter at the back.
    pub fn push(&mut self, t: T) {
        self.waiters.push_back(t);
    }

    /// Removes the longest-waiting task.
    pub fn pop_front(&mut self) -> Option<T> {
        self.waiters.pop_front()
    }

    /// Removes the first waiter equal to `t` (e.g. one whose timeout fired);
    /// returns whether it was queued.
    pub fn remove(&mut self, t: &T) -> bool
    where
        T: PartialEq,
    {
        match self.waiters.iter().position(|x| x == t) {
            Some(pos) => {
                self.waiters.remove(pos);
                true
            }
            None => false,
        }
    }

    /// Removes every waiter, oldest first. The capacity is kept.
    pub fn drain_all(&mut self) -> impl Iterator<Item = T> + '_ {
        self.waiters.drain(..)
    }

    /// Number of waiters.
    pub fn len(&self) -> usize {
        self.waiters.len()
    }

    /// Whether nobody waits.
    pub fn is_empty(&self) -> bool {
        self.waiters.is_empty()
    }

    /// The waiters, oldest first.
    pub fn iter(&self) -> impl Iterator<Item = &T> + '_ {
        self.waiters.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fifo_remove_drain() {
        let mut q = WaitQueue::new();
        for i in 0..5 {
            q.push(i);
        }
        assert_eq!(q.len(), 5);
        assert_eq!(q.pop_front(), Some(0));
        assert!(q.remove(&3));
        assert!(!q.remove(&3));
        assert_eq!(q.iter().copied().collect::<Vec<_>>(), [1, 2, 4]);
        assert_eq!(q.drain_all().collect::<Vec<_>>(), [1, 2, 4]);
        assert!(q.is_empty());
        assert_eq!(q.pop_front(), None);
    }
}
