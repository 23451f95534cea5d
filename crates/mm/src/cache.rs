//! Per-CPU caches of small heap blocks, in front of the kernel heap.
//!
//! The kernel heap (`talc`) sits behind one lock. When several CPUs
//! allocate at once they contend for it and pass its cache line back and
//! forth, which costs more than the allocation itself. A [`BlockCache`]
//! per CPU keeps a few free blocks of each small size class and serves
//! most allocations and frees of its CPU without touching the heap; it
//! takes blocks from the heap, and gives them back, half a cache at a time,
//! under one lock hold ([`BlockSource`]).
//!
//! Blocks of class `c` are [`block_size`]`(c)` bytes (16 to 4096, powers
//! of two) and aligned to their size, so a request is served by the
//! smallest class at least as large as both its size and its alignment
//! ([`class_of`]), and a block goes back to the heap with the same size and
//! alignment it was taken with. The cache only moves addresses; the
//! kernel's [`BlockSource`] does the actual allocating and freeing.

/// Number of size classes.
pub const CLASS_COUNT: usize = 9;
/// The smallest block (class 0).
pub const MIN_BLOCK: usize = 16;
/// The largest block a cache serves; larger requests go to the heap.
pub const MAX_BLOCK: usize = MIN_BLOCK << (CLASS_COUNT - 1);

/// Size (and alignment) of the blocks of class `class`.
pub const fn block_size(class: usize) -> usize {
    MIN_BLOCK << class
}

/// The class that serves a request of `size` bytes aligned to `align` (a
/// power of two), or `None` if it is too large for the caches.
pub fn class_of(size: usize, align: usize) -> Option<usize> {
    let need = size.max(align).max(MIN_BLOCK);
    if need > MAX_BLOCK {
        return None;
    }
    let block = need.next_power_of_two();
    Some((block / MIN_BLOCK).trailing_zeros() as usize)
}

/// Where a cache's blocks come from and go back to: the heap, behind its
/// lock. Each call is one lock hold.
pub trait BlockSource {
    /// Fills `out` with up to `out.len()` fresh blocks of `class` (size and
    /// alignment [`block_size`]`(class)`); returns how many it wrote (fewer
    /// when memory runs out).
    fn take(&mut self, class: usize, out: &mut [usize]) -> usize;
    /// Frees `blocks`, all of `class`, taken from this source earlier.
    fn give(&mut self, class: usize, blocks: &[usize]);
}

/// One CPU's cache: up to `CAP` free blocks per class (`CAP` at least 2).
#[derive(Debug)]
pub struct BlockCache<const CAP: usize> {
    free: [[usize; CAP]; CLASS_COUNT],
    len: [usize; CLASS_COUNT],
}

impl<const CAP: usize> Default for BlockCache<CAP> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const CAP: usize> BlockCache<CAP> {
    /// An empty cache.
    pub const fn new() -> Self {
        assert!(CAP >= 2, "a cache holds at least two blocks per class");
        Self {
            free: [[0; CAP]; CLASS_COUNT],
            len: [0; CLASS_COUNT],
        }
    }

    /// A block of `class`: a cached one, or (refilling half the class at
    /// once) one from `source`; `None` when `source` has no memory left.
    pub fn take(&mut self, class: usize, source: &mut impl BlockSource) -> Option<usize> {
        let len = self.len.get_mut(class)?;
        if *len == 0 {
            *len = source.take(class, &mut self.free[class][..CAP / 2]);
            if *len == 0 {
                return None;
            }
        }
        *len -= 1;
        Some(self.free[class][*len])
    }

    /// Frees `block` of `class` into the cache; a full class first gives
    /// half its blocks back to `source`.
    pub fn give(&mut self, class: usize, block: usize, source: &mut impl BlockSource) {
        let Some(len) = self.len.get_mut(class) else {
            return;
        };
        if *len == CAP {
            // The oldest half goes back; the recently freed (warm) stay.
            source.give(class, &self.free[class][..CAP / 2]);
            self.free[class].copy_within(CAP / 2.., 0);
            *len = CAP - CAP / 2;
        }
        self.free[class][*len] = block;
        *len += 1;
    }

    /// Gives every cached block back to `source`.
    pub fn drain(&mut self, source: &mut impl BlockSource) {
        for class in 0..CLASS_COUNT {
            let len = core::mem::take(&mut self.len[class]);
            if len > 0 {
                source.give(class, &self.free[class][..len]);
            }
        }
    }

    /// Bytes held in the cache.
    pub fn cached_bytes(&self) -> usize {
        self.len
            .iter()
            .enumerate()
            .map(|(class, &n)| n * block_size(class))
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;
    use std::vec::Vec;

    /// A fake heap handing out aligned addresses, with a budget of blocks,
    /// that checks every block given back was taken and not given twice.
    struct Fake {
        next: usize,
        budget: usize,
        out: BTreeSet<(usize, usize)>,
        takes: usize,
        gives: usize,
    }

    impl Fake {
        fn new(budget: usize) -> Self {
            Self {
                next: 1 << 20,
                budget,
                out: BTreeSet::new(),
                takes: 0,
                gives: 0,
            }
        }
    }

    impl BlockSource for Fake {
        fn take(&mut self, class: usize, out: &mut [usize]) -> usize {
            self.takes += 1;
            let mut n = 0;
            for slot in out.iter_mut() {
                if self.budget == 0 {
                    break;
                }
                self.budget -= 1;
                let size = block_size(class);
                self.next = self.next.next_multiple_of(size);
                *slot = self.next;
                assert!(self.out.insert((class, self.next)));
                self.next += size;
                n += 1;
            }
            n
        }

        fn give(&mut self, class: usize, blocks: &[usize]) {
            self.gives += 1;
            for &b in blocks {
                assert!(
                    self.out.remove(&(class, b)),
                    "block {b:#x} given back twice"
                );
                assert_eq!(b % block_size(class), 0);
                self.budget += 1;
            }
        }
    }

    #[test]
    fn classes_cover_size_and_alignment() {
        assert_eq!(class_of(1, 1), Some(0));
        assert_eq!(class_of(16, 8), Some(0));
        assert_eq!(class_of(17, 8), Some(1));
        assert_eq!(class_of(24, 64), Some(2));
        assert_eq!(class_of(2048, 16), Some(7));
        assert_eq!(class_of(4096, 4096), Some(8));
        assert_eq!(class_of(4097, 16), None);
        assert_eq!(class_of(8, 8192), None);
        for size in 1..=MAX_BLOCK {
            for align in [1, 8, 16, 64, 256] {
                if let Some(c) = class_of(size, align) {
                    assert!(block_size(c) >= size && block_size(c) >= align);
                    assert!(c == 0 || block_size(c - 1) < size.max(align));
                }
            }
        }
    }

    #[test]
    fn blocks_are_reused_and_refills_come_in_batches() {
        let mut heap = Fake::new(1000);
        let mut cache = BlockCache::<8>::new();
        let a = cache.take(3, &mut heap).unwrap();
        assert_eq!(heap.takes, 1, "one refill of half the class");
        assert_eq!(cache.cached_bytes(), 3 * block_size(3));
        cache.give(3, a, &mut heap);
        // LIFO: the block just freed comes back first.
        assert_eq!(cache.take(3, &mut heap), Some(a));
        let more: Vec<usize> = (0..10).map(|_| cache.take(3, &mut heap).unwrap()).collect();
        assert_eq!(heap.takes, 3);
        let mut all: Vec<usize> = more.clone();
        all.push(a);
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), 11, "no block handed out twice");
        for b in more {
            cache.give(3, b, &mut heap);
        }
        cache.give(3, a, &mut heap);
        // 11 frees into a cache of 8 that held 1: full after 7, one flush
        // of the oldest 4, then 4 more fit.
        assert_eq!(heap.gives, 1);
        assert_eq!(cache.cached_bytes(), 8 * block_size(3));
        cache.drain(&mut heap);
        assert!(heap.out.is_empty(), "everything went back");
        assert_eq!(cache.cached_bytes(), 0);
    }

    #[test]
    fn out_of_memory_is_none_and_partial_refills_work() {
        let mut heap = Fake::new(3);
        let mut cache = BlockCache::<16>::new();
        let got: Vec<_> = (0..4).map(|_| cache.take(0, &mut heap)).collect();
        assert_eq!(got.iter().filter(|b| b.is_some()).count(), 3);
        assert_eq!(got[3], None);
        assert_eq!(cache.take(CLASS_COUNT, &mut heap), None, "no such class");
    }

    #[test]
    fn random_alloc_free_keeps_the_books() {
        let mut heap = Fake::new(usize::MAX);
        let mut cache = BlockCache::<32>::new();
        let mut live: Vec<(usize, usize)> = Vec::new();
        let mut rng = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..20_000 {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            if !rng.is_multiple_of(3) || live.is_empty() {
                let class = (rng >> 8) as usize % CLASS_COUNT;
                live.push((class, cache.take(class, &mut heap).unwrap()));
            } else {
                let (class, b) = live.swap_remove((rng >> 8) as usize % live.len());
                cache.give(class, b, &mut heap);
            }
        }
        let mut seen = BTreeSet::new();
        for &(class, b) in &live {
            assert!(seen.insert(b), "block {b:#x} live twice");
            assert!(heap.out.contains(&(class, b)));
        }
        for (class, b) in live {
            cache.give(class, b, &mut heap);
        }
        cache.drain(&mut heap);
        assert!(heap.out.is_empty());
    }
}
