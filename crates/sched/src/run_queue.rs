//! The ready queue: one FIFO per priority level and a bitmap of non-empty levels.

use alloc::collections::VecDeque;

use crate::priority::{NUM_PRIORITIES, Priority};

/// Ready tasks by priority: 32 FIFO queues and a `u32` bitmap whose bit `p`
/// is set while level `p` is non-empty, so finding the highest ready level is
/// one `leading_zeros`.
///
/// Queues keep their capacity after pops, so once every level has held its
/// peak number of tasks, pushing and popping never allocate. Use
/// [`RunQueue::reserve`] to reach that state up front.
#[derive(Debug)]
pub struct RunQueue<T> {
    levels: [VecDeque<T>; NUM_PRIORITIES],
    bitmap: u32,
    len: usize,
}

impl<T> Default for RunQueue<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> RunQueue<T> {
    /// An empty queue (does not allocate).
    pub const fn new() -> Self {
        Self {
            levels: [const { VecDeque::new() }; NUM_PRIORITIES],
            bitmap: 0,
            len: 0,
        }
    }

    /// Make room for `additional` more tasks at level `prio` without allocating.
    pub fn reserve(&mut self, prio: Priority, additional: usize) {
        self.levels[prio.index()].reserve(additional);
    }

    /// Appends `t` behind the tasks already ready at `prio`.
    pub fn push_back(&mut self, t: T, prio: Priority) {
        self.levels[prio.index()].push_back(t);
        self.bitmap |= 1 << prio.index();
        self.len += 1;
    }

    /// Puts `t` in front of the tasks already ready at `prio` (a task that was
    /// preempted before its slice ended keeps its place).
    pub fn push_front(&mut self, t: T, prio: Priority) {
        self.levels[prio.index()].push_front(t);
        self.bitmap |= 1 << prio.index();
        self.len += 1;
    }

    /// The highest priority with a ready task.
    pub fn highest(&self) -> Option<Priority> {
        if self.bitmap == 0 {
            None
        } else {
            Some(Priority::from_index(31 - self.bitmap.leading_zeros()))
        }
    }

    /// Removes the oldest task of the highest non-empty level.
    pub fn pop_highest(&mut self) -> Option<(T, Priority)> {
        let prio = self.highest()?;
        self.pop_at(prio).map(|t| (t, prio))
    }

    /// Like [`RunQueue::pop_highest`], but only if that task's priority is at
    /// least `min`.
    pub fn pop_highest_at_least(&mut self, min: Priority) -> Option<(T, Priority)> {
        match self.highest() {
            Some(prio) if prio >= min => self.pop_at(prio).map(|t| (t, prio)),
            _ => None,
        }
    }

    fn pop_at(&mut self, prio: Priority) -> Option<T> {
        let level = &mut self.levels[prio.index()];
        let t = level.pop_front()?;
        if level.is_empty() {
            self.bitmap &= !(1 << prio.index());
        }
        self.len -= 1;
        Some(t)
    }

    /// Removes the first task equal to `t` (searching from the highest level)
    /// and returns the priority it was queued at. O(number of ready tasks).
    pub fn remove(&mut self, t: &T) -> Option<Priority>
    where
        T: PartialEq,
    {
        let mut bits = self.bitmap;
        while bits != 0 {
            let index = 31 - bits.leading_zeros();
            bits &= !(1 << index);
            let level = &mut self.levels[index as usize];
            if let Some(pos) = level.iter().position(|x| x == t) {
                level.remove(pos);
                if level.is_empty() {
                    self.bitmap &= !(1 << index);
                }
                self.len -= 1;
                return Some(Priority::from_index(index));
            }
        }
        None
    }

    /// Number of tasks ready at exactly `prio`.
    pub fn len_at(&self, prio: Priority) -> usize {
        self.levels[prio.index()].len()
    }

    /// Number of ready tasks.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no task is ready.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The ready tasks, highest level first, FIFO within a level.
    pub fn iter(&self) -> impl Iterator<Item = (&T, Priority)> + '_ {
        self.levels.iter().enumerate().rev().flat_map(|(i, level)| {
            level
                .iter()
                .map(move |t| (t, Priority::from_index(i as u32)))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(n: u8) -> Priority {
        Priority::new(n).unwrap()
    }

    #[test]
    fn highest_level_first_fifo_within() {
        let mut q = RunQueue::new();
        assert!(q.is_empty());
        assert_eq!(q.pop_highest(), None);
        q.push_back('a', p(8));
        q.push_back('b', p(3));
        q.push_back('c', p(8));
        q.push_back('d', p(31));
        q.push_back('e', p(0));
        assert_eq!(q.len(), 5);
        assert_eq!(q.highest(), Some(p(31)));
        let order: Vec<_> = core::iter::from_fn(|| q.pop_highest()).collect();
        assert_eq!(
            order,
            [
                ('d', p(31)),
                ('a', p(8)),
                ('c', p(8)),
                ('b', p(3)),
                ('e', p(0))
            ]
        );
        assert!(q.is_empty());
        assert_eq!(q.highest(), None);
    }

    #[test]
    fn push_front_goes_first_in_its_level() {
        let mut q = RunQueue::new();
        q.push_back(1, p(8));
        q.push_front(2, p(8));
        q.push_back(3, p(8));
        assert_eq!(q.pop_highest(), Some((2, p(8))));
        assert_eq!(q.pop_highest(), Some((1, p(8))));
        assert_eq!(q.pop_highest(), Some((3, p(8))));
    }

    #[test]
    fn at_least_respects_minimum() {
        let mut q = RunQueue::new();
        q.push_back(1, p(4));
        assert_eq!(q.pop_highest_at_least(p(5)), None);
        assert_eq!(q.len(), 1);
        assert_eq!(q.pop_highest_at_least(p(4)), Some((1, p(4))));
        assert_eq!(q.pop_highest_at_least(p(0)), None);
    }

    #[test]
    fn remove_clears_bitmap() {
        let mut q = RunQueue::new();
        q.push_back(1, p(20));
        q.push_back(2, p(5));
        q.push_back(3, p(5));
        assert_eq!(q.remove(&3), Some(p(5)));
        assert_eq!(q.remove(&3), None);
        assert_eq!(q.remove(&1), Some(p(20)));
        assert_eq!(q.highest(), Some(p(5)));
        assert_eq!(q.len(), 1);
        assert_eq!(q.len_at(p(5)), 1);
        assert_eq!(q.iter().collect::<Vec<_>>(), [(&2, p(5))]);
    }

    #[test]
    fn capacity_is_kept() {
        let mut q = RunQueue::new();
        q.reserve(p(8), 4);
        for i in 0..4 {
            q.push_back(i, p(8));
        }
        while q.pop_highest().is_some() {}
        assert!(q.levels[8].capacity() >= 4);
    }
}
