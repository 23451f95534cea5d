//! The physical frame allocator.

use core::fmt;
use core::ops::Range;

use hermit_interface::{MemoryKind, MemoryRegion};

use crate::range_set::{InsertError, RangeSet, TakeError};
use crate::{PAGE_SIZE, PhysAddr, align_down, align_up};

/// Why a frame operation failed. Every failing operation leaves the allocator
/// unchanged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameError {
    /// A range starting at this address runs past the end of the 64-bit
    /// address space.
    Overflow(u64),
    /// The address is not a multiple of 4 KiB.
    Misaligned(PhysAddr),
    /// The requested alignment is not a power of two.
    BadAlignment(u64),
    /// Zero frames were requested or freed.
    ZeroCount,
    /// No free range holds `count` contiguous frames at alignment `align`.
    OutOfMemory {
        /// Frames requested.
        count: usize,
        /// Alignment requested, in bytes.
        align: u64,
    },
    /// A freed range overlaps memory that is already free.
    DoubleFree {
        /// First freed byte.
        start: PhysAddr,
        /// Bytes freed.
        len: u64,
    },
    /// More bytes were freed than are currently allocated.
    NotAllocated {
        /// First freed byte.
        start: PhysAddr,
        /// Bytes freed.
        len: u64,
    },
    /// The operation needs more free ranges than the allocator can hold.
    CapacityExhausted {
        /// The allocator's fixed number of free ranges.
        capacity: usize,
    },
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::Overflow(start) => {
                write!(
                    f,
                    "range at {start:#x} runs past the end of the address space"
                )
            }
            Self::Misaligned(addr) => write!(f, "{addr} is not 4 KiB aligned"),
            Self::BadAlignment(align) => write!(f, "alignment {align:#x} is not a power of two"),
            Self::ZeroCount => write!(f, "zero frames requested"),
            Self::OutOfMemory { count, align } => {
                write!(
                    f,
                    "out of physical memory: no {count} contiguous frames aligned to {align:#x}"
                )
            }
            Self::DoubleFree { start, len } => {
                write!(
                    f,
                    "double free: {len:#x} bytes at {start} overlap free memory"
                )
            }
            Self::NotAllocated { start, len } => {
                write!(
                    f,
                    "freeing {len:#x} bytes at {start}, more than is allocated"
                )
            }
            Self::CapacityExhausted { capacity } => {
                write!(
                    f,
                    "frame allocator is too fragmented: all {capacity} free-range slots in use"
                )
            }
        }
    }
}

impl core::error::Error for FrameError {}

/// Anything that hands out physical frames: the [`FrameAllocator`] itself, or
/// a kernel wrapper around a locked one. [`PageMapper`](crate::PageMapper)s
/// take their page-table frames from it and
/// [`KernelSpace`](crate::KernelSpace) the frames behind its regions.
pub trait FrameSource {
    /// Allocates `count` contiguous 4 KiB frames starting at a multiple of
    /// `align` (a power of two; values below 4 KiB mean 4 KiB). The frames'
    /// contents are undefined.
    fn allocate_frames(&mut self, count: usize, align: u64) -> Result<PhysAddr, FrameError>;

    /// Returns `count` frames starting at `start`, which must have come from
    /// [`allocate_frames`](Self::allocate_frames) (in any grouping).
    fn deallocate_frames(&mut self, start: PhysAddr, count: usize) -> Result<(), FrameError>;
}

/// A first-fit allocator of 4 KiB physical frames over at most `N` disjoint
/// free ranges, kept sorted and merged in a fixed array.
///
/// It stores no per-frame state and never touches the memory it manages, so
/// construction costs O(memory-map entries) however much RAM there is.
/// Allocation and freeing are O(N).
#[derive(Clone, Debug)]
pub struct FrameAllocator<const N: usize> {
    free: RangeSet<N>,
    /// Free plus allocated bytes.
    total: u64,
}

impl<const N: usize> Default for FrameAllocator<N> {
    fn default() -> Self {
        Self::new()
    }
}

/// Highest page-aligned address; ends of outward-aligned ranges saturate here.
const LAST_PAGE_END: u64 = align_down(u64::MAX, PAGE_SIZE);

impl<const N: usize> FrameAllocator<N> {
    const FULL: FrameError = FrameError::CapacityExhausted { capacity: N };

    /// An allocator with no memory (usable in a `static` initialiser).
    pub const fn new() -> Self {
        Self {
            free: RangeSet::new(),
            total: 0,
        }
    }

    /// Builds the allocator from a boot memory map.
    ///
    /// [`MemoryKind::Usable`] entries become free memory, shrunk inward to
    /// whole frames; entries may be unsorted, and overlapping usable entries
    /// are merged. Every other entry (reserved or of an unknown kind) is
    /// rounded outward and removed from the free memory even where it overlaps
    /// a usable one, so a sloppy map can cost memory but never hands out a
    /// reserved frame.
    pub fn from_memory_map(regions: &[MemoryRegion]) -> Result<Self, FrameError> {
        let mut this = Self::new();
        this.load_memory_map(regions)?;
        Ok(this)
    }

    /// Adds a boot memory map to this allocator, in place, with the rules of
    /// [`from_memory_map`](Self::from_memory_map); on an empty allocator the
    /// result is the same. Meant for an allocator in a `static`: building
    /// one elsewhere and moving it in copies the whole range array, which
    /// costs real time where guest instructions are expensive.
    pub fn load_memory_map(&mut self, regions: &[MemoryRegion]) -> Result<(), FrameError> {
        let this = self;
        let allocated = this.total - this.free.bytes();
        for r in regions
            .iter()
            .filter(|r| r.kind() == Some(MemoryKind::Usable))
        {
            let end = r
                .start
                .checked_add(r.len)
                .ok_or(FrameError::Overflow(r.start))?;
            let Some(start) = align_up(r.start, PAGE_SIZE) else {
                continue;
            };
            let end = align_down(end, PAGE_SIZE);
            if start < end {
                this.free.insert(start, end, true).map_err(|_| Self::FULL)?;
            }
        }
        for r in regions
            .iter()
            .filter(|r| r.kind() != Some(MemoryKind::Usable))
        {
            this.remove(r.start, r.len)?;
        }
        this.total = allocated + this.free.bytes();
        log::debug!(
            "frame allocator: {} KiB free in {} ranges",
            this.free.bytes() / 1024,
            this.free.spans().len()
        );
        Ok(())
    }

    /// Removes `[start, start + len)`, rounded outward to whole frames, from
    /// the free memory (e.g. the kernel image, or memory handed to a device)
    /// and returns how many bytes were free before. Parts that are not free
    /// are ignored, so reserving twice is harmless.
    pub fn reserve(&mut self, start: PhysAddr, len: u64) -> Result<u64, FrameError> {
        let removed = self.remove(start.0, len)?;
        self.total -= removed;
        Ok(removed)
    }

    fn remove(&mut self, start: u64, len: u64) -> Result<u64, FrameError> {
        if len == 0 {
            return Ok(0);
        }
        let end = start.checked_add(len).ok_or(FrameError::Overflow(start))?;
        let end = align_up(end, PAGE_SIZE).unwrap_or(LAST_PAGE_END);
        self.free
            .remove(align_down(start, PAGE_SIZE), end)
            .map_err(|_| Self::FULL)
    }

    /// Allocates `count` contiguous frames whose first address is a multiple
    /// of `align` (a power of two; below 4 KiB means 4 KiB), from the lowest
    /// free range that fits. `allocate(512, HUGE_PAGE_SIZE)` yields a frame
    /// for a 2 MiB page.
    pub fn allocate(&mut self, count: usize, align: u64) -> Result<PhysAddr, FrameError> {
        if count == 0 {
            return Err(FrameError::ZeroCount);
        }
        if !align.is_power_of_two() {
            return Err(FrameError::BadAlignment(align));
        }
        let align = align.max(PAGE_SIZE);
        let oom = FrameError::OutOfMemory { count, align };
        let size = (count as u64).checked_mul(PAGE_SIZE).ok_or(oom)?;
        match self.free.take(size, align, 0) {
            Ok(start) => Ok(PhysAddr(start)),
            Err(TakeError::NoFit) => Err(oom),
            Err(TakeError::Full) => Err(Self::FULL),
        }
    }

    /// Frees `count` frames starting at `start`, merging them with free
    /// neighbours. Freeing memory that is (partly) free already is
    /// [`FrameError::DoubleFree`], freeing more than is allocated
    /// [`FrameError::NotAllocated`]; frames that were never handed out but
    /// are not free either (reserved memory) cannot be told apart. If the frames would need a new free-range
    /// slot and all `N` are in use, this fails with
    /// [`FrameError::CapacityExhausted`] and the frames stay allocated: the
    /// caller still owns them and may retry later, nothing is lost silently.
    pub fn deallocate(&mut self, start: PhysAddr, count: usize) -> Result<(), FrameError> {
        if count == 0 {
            return Err(FrameError::ZeroCount);
        }
        if !start.0.is_multiple_of(PAGE_SIZE) {
            return Err(FrameError::Misaligned(start));
        }
        let overflow = FrameError::Overflow(start.0);
        let len = (count as u64).checked_mul(PAGE_SIZE).ok_or(overflow)?;
        let end = start.0.checked_add(len).ok_or(overflow)?;
        if len > self.allocated_bytes() {
            return Err(FrameError::NotAllocated { start, len });
        }
        self.free.insert(start.0, end, false).map_err(|e| match e {
            InsertError::Overlap => FrameError::DoubleFree { start, len },
            InsertError::Full => Self::FULL,
        })
    }

    /// Bytes currently free.
    pub const fn free_bytes(&self) -> u64 {
        self.free.bytes()
    }

    /// Bytes under management: free plus allocated (reserved memory is not
    /// counted).
    pub const fn total_bytes(&self) -> u64 {
        self.total
    }

    /// Bytes currently allocated.
    pub const fn allocated_bytes(&self) -> u64 {
        self.total - self.free.bytes()
    }

    /// The free ranges in ascending order, e.g. for a boot log.
    pub fn free_ranges(&self) -> impl Iterator<Item = Range<PhysAddr>> + '_ {
        self.free
            .spans()
            .iter()
            .map(|s| PhysAddr(s.start)..PhysAddr(s.end))
    }
}

impl<const N: usize> FrameSource for FrameAllocator<N> {
    fn allocate_frames(&mut self, count: usize, align: u64) -> Result<PhysAddr, FrameError> {
        self.allocate(count, align)
    }

    fn deallocate_frames(&mut self, start: PhysAddr, count: usize) -> Result<(), FrameError> {
        self.deallocate(start, count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::HUGE_PAGE_SIZE;

    const MIB: u64 = 1024 * 1024;

    fn region(start: u64, len: u64, kind: u32) -> MemoryRegion {
        MemoryRegion {
            start,
            len,
            kind,
            _reserved: 0,
        }
    }

    fn usable(start: u64, len: u64) -> MemoryRegion {
        region(start, len, MemoryKind::Usable as u32)
    }

    fn reserved(start: u64, len: u64) -> MemoryRegion {
        region(start, len, MemoryKind::Reserved as u32)
    }

    fn ranges<const N: usize>(a: &FrameAllocator<N>) -> Vec<(u64, u64)> {
        a.free_ranges().map(|r| (r.start.0, r.end.0)).collect()
    }

    /// A typical uhyve map: low memory, the kernel image, then the rest.
    fn typical() -> FrameAllocator<16> {
        FrameAllocator::from_memory_map(&[
            usable(0x1000, 0x9_f000),
            reserved(0x10_0000, 0x30_0000),
            usable(0x40_0000, 60 * MIB),
        ])
        .unwrap()
    }

    #[test]
    fn empty_map_has_no_memory() {
        let mut a = FrameAllocator::<4>::from_memory_map(&[]).unwrap();
        assert_eq!((a.free_bytes(), a.total_bytes()), (0, 0));
        assert_eq!(
            a.allocate(1, PAGE_SIZE),
            Err(FrameError::OutOfMemory {
                count: 1,
                align: PAGE_SIZE
            })
        );
        let only_reserved = FrameAllocator::<4>::from_memory_map(&[reserved(0, MIB)]).unwrap();
        assert_eq!(only_reserved.free_bytes(), 0);
    }

    #[test]
    fn map_is_page_aligned_inward_and_sorted() {
        let a = FrameAllocator::<8>::from_memory_map(&[
            usable(0x20_0010, 0x2000),    // -> [0x201000, 0x202000)
            usable(0x10_0fff, 0x1_0002),  // -> [0x101000, 0x111000)
            usable(0x30_0001, 0xfff),     // less than a frame: dropped
            region(0x40_0000, 0x1000, 7), // unknown kind: not usable
        ])
        .unwrap();
        assert_eq!(ranges(&a), [(0x10_1000, 0x11_1000), (0x20_1000, 0x20_2000)]);
        assert_eq!(a.total_bytes(), 0x1_0000 + 0x1000);
        assert_eq!(a.free_bytes(), a.total_bytes());
    }

    #[test]
    fn adjacent_and_overlapping_usable_entries_merge() {
        let a = FrameAllocator::<8>::from_memory_map(&[
            usable(0, 0x4000),
            usable(0x4000, 0x4000),
            usable(0x6000, 0x6000),
        ])
        .unwrap();
        assert_eq!(ranges(&a), [(0, 0xc000)]);
        assert_eq!(a.total_bytes(), 0xc000);
    }

    #[test]
    fn reserved_entries_win_over_usable_ones() {
        let a = FrameAllocator::<8>::from_memory_map(&[
            usable(0, 16 * MIB),
            reserved(MIB + 0x800, 0x1000), // rounded outward to two frames
            region(4 * MIB, MIB, 99),      // unknown kind is treated as reserved
        ])
        .unwrap();
        assert_eq!(
            ranges(&a),
            [(0, MIB), (MIB + 0x2000, 4 * MIB), (5 * MIB, 16 * MIB)]
        );
        assert_eq!(a.total_bytes(), 15 * MIB - 0x2000);
    }

    #[test]
    fn overflowing_entries_are_errors_not_panics() {
        let r = FrameAllocator::<4>::from_memory_map(&[usable(u64::MAX - 0xfff, 0x2000)]);
        assert_eq!(r.unwrap_err(), FrameError::Overflow(u64::MAX - 0xfff));
        let r = FrameAllocator::<4>::from_memory_map(&[reserved(u64::MAX, 2)]);
        assert_eq!(r.unwrap_err(), FrameError::Overflow(u64::MAX));
        // The last frame of the address space is fine, and reserving up to
        // the very end works although the end cannot be rounded up.
        let mut a = FrameAllocator::<4>::from_memory_map(&[usable(LAST_PAGE_END - 0x2000, 0x2000)])
            .unwrap();
        assert_eq!(a.free_bytes(), 0x2000);
        assert_eq!(
            a.reserve(PhysAddr(LAST_PAGE_END - 0x1000), 0xfff),
            Ok(0x1000)
        );
        assert_eq!(a.reserve(PhysAddr(LAST_PAGE_END - 1), 1), Ok(0));
        assert_eq!(
            a.allocate(1, PAGE_SIZE),
            Ok(PhysAddr(LAST_PAGE_END - 0x2000))
        );
        assert!(matches!(
            a.allocate(1, PAGE_SIZE),
            Err(FrameError::OutOfMemory { .. })
        ));
    }

    #[test]
    fn too_many_regions_is_capacity_error() {
        let map: Vec<_> = (0..5).map(|i| usable(i * 0x10_000, 0x1000)).collect();
        assert_eq!(
            FrameAllocator::<4>::from_memory_map(&map).unwrap_err(),
            FrameError::CapacityExhausted { capacity: 4 }
        );
        assert!(FrameAllocator::<5>::from_memory_map(&map).is_ok());
    }

    #[test]
    fn reserve_splits_and_spans_ranges() {
        let mut a = typical();
        let before = a.free_bytes();
        // The kernel image: inside the second range, not page aligned.
        assert_eq!(a.reserve(PhysAddr(0x50_0100), 0x1_0000), Ok(0x1_1000));
        assert_eq!(
            ranges(&a),
            [
                (0x1000, 0xa_0000),
                (0x40_0000, 0x50_0000),
                (0x51_1000, 0x40_0000 + 60 * MIB)
            ]
        );
        // Reserving across a gap only counts the free parts; twice is harmless.
        assert_eq!(
            a.reserve(PhysAddr(0x9_f000), 0x36_2000),
            Ok(0x1000 + 0x1000)
        );
        assert_eq!(a.reserve(PhysAddr(0x9_f000), 0x36_2000), Ok(0));
        assert_eq!(a.reserve(PhysAddr(0x1234), 0), Ok(0));
        assert_eq!(a.free_bytes(), before - 0x1_3000);
        assert_eq!(a.total_bytes(), a.free_bytes());
        assert_eq!(
            a.reserve(PhysAddr(u64::MAX), 1),
            Err(FrameError::Overflow(u64::MAX))
        );
    }

    #[test]
    fn reserve_that_needs_a_slot_fails_cleanly_when_full() {
        let mut a = FrameAllocator::<1>::from_memory_map(&[usable(0, MIB)]).unwrap();
        assert_eq!(
            a.reserve(PhysAddr(0x8000), 0x1000),
            Err(FrameError::CapacityExhausted { capacity: 1 })
        );
        assert_eq!(ranges(&a), [(0, MIB)]);
        // Trimming an end needs no slot.
        assert_eq!(a.reserve(PhysAddr(0), 0x1000), Ok(0x1000));
    }

    #[test]
    fn allocation_is_first_fit_and_aligned() {
        let mut a = typical();
        assert_eq!(a.allocate(1, PAGE_SIZE), Ok(PhysAddr(0x1000)));
        assert_eq!(a.allocate(2, 1), Ok(PhysAddr(0x2000)));
        // 64 KiB alignment still fits into low memory.
        assert_eq!(a.allocate(1, 0x1_0000), Ok(PhysAddr(0x1_0000)));
        // Too big for low memory: goes to the next range.
        assert_eq!(a.allocate(0xa0, PAGE_SIZE), Ok(PhysAddr(0x40_0000)));
        assert_eq!(a.allocated_bytes(), 4 * 0x1000 + 0xa_0000);
    }

    #[test]
    fn huge_frames_are_2mib_aligned() {
        // Starts 4 KiB past a 2 MiB boundary, so the first aligned chunk is
        // at 4 MiB and the part below it must stay free.
        let mut a =
            FrameAllocator::<8>::from_memory_map(&[usable(2 * MIB + 0x1000, 8 * MIB)]).unwrap();
        let h1 = a.allocate(512, HUGE_PAGE_SIZE).unwrap();
        let h2 = a.allocate(512, HUGE_PAGE_SIZE).unwrap();
        assert_eq!((h1, h2), (PhysAddr(4 * MIB), PhysAddr(6 * MIB)));
        assert_eq!(a.allocate(512, HUGE_PAGE_SIZE), Ok(PhysAddr(8 * MIB)));
        // [10 MiB, 10 MiB + 4 KiB) is left: not a whole 2 MiB chunk.
        assert!(matches!(
            a.allocate(512, HUGE_PAGE_SIZE),
            Err(FrameError::OutOfMemory { .. })
        ));
        assert_eq!(
            ranges(&a),
            [(2 * MIB + 0x1000, 4 * MIB), (10 * MIB, 10 * MIB + 0x1000)]
        );
        for h in [h2, h1] {
            a.deallocate(h, 512).unwrap();
        }
        a.deallocate(PhysAddr(8 * MIB), 512).unwrap();
        assert_eq!(ranges(&a), [(2 * MIB + 0x1000, 10 * MIB + 0x1000)]);
    }

    #[test]
    fn bad_requests_are_errors() {
        let mut a = typical();
        assert_eq!(a.allocate(0, PAGE_SIZE), Err(FrameError::ZeroCount));
        assert_eq!(a.allocate(1, 0), Err(FrameError::BadAlignment(0)));
        assert_eq!(a.allocate(1, 0x3000), Err(FrameError::BadAlignment(0x3000)));
        assert!(matches!(
            a.allocate(usize::MAX, PAGE_SIZE),
            Err(FrameError::OutOfMemory { .. })
        ));
        assert!(matches!(
            a.allocate(1, 1 << 63),
            Err(FrameError::OutOfMemory { .. })
        ));
        let p = a.allocate(4, PAGE_SIZE).unwrap();
        assert_eq!(a.deallocate(p, 0), Err(FrameError::ZeroCount));
        assert_eq!(
            a.deallocate(PhysAddr(p.0 + 1), 1),
            Err(FrameError::Misaligned(PhysAddr(p.0 + 1)))
        );
        assert_eq!(
            a.deallocate(PhysAddr(LAST_PAGE_END), 1),
            Err(FrameError::Overflow(LAST_PAGE_END))
        );
        assert_eq!(
            a.deallocate(p, 5),
            Err(FrameError::NotAllocated {
                start: p,
                len: 0x5000
            })
        );
        assert_eq!(a.allocated_bytes(), 0x4000);
    }

    #[test]
    fn double_free_and_overlap_are_detected() {
        let mut a = typical();
        let p = a.allocate(4, PAGE_SIZE).unwrap();
        let _q = a.allocate(4, PAGE_SIZE).unwrap();
        a.deallocate(PhysAddr(p.0 + 0x1000), 2).unwrap();
        let snapshot = ranges(&a);
        for (start, count) in [(p.0 + 0x1000, 1), (p.0, 2), (p.0 + 0x2000, 2)] {
            assert_eq!(
                a.deallocate(PhysAddr(start), count),
                Err(FrameError::DoubleFree {
                    start: PhysAddr(start),
                    len: count as u64 * PAGE_SIZE
                })
            );
        }
        // Memory that was never allocated at all (it is free) is caught too.
        assert!(matches!(
            a.deallocate(PhysAddr(0x40_0000), 1),
            Err(FrameError::DoubleFree { .. })
        ));
        assert_eq!(ranges(&a), snapshot);
    }

    #[test]
    fn free_without_a_slot_is_refused_and_retriable() {
        let mut a = FrameAllocator::<2>::from_memory_map(&[usable(0, 0x10_000)]).unwrap();
        let frames: Vec<_> = (0..16).map(|_| a.allocate(1, PAGE_SIZE).unwrap()).collect();
        a.deallocate(frames[2], 1).unwrap();
        a.deallocate(frames[6], 1).unwrap();
        let free = a.free_bytes();
        assert_eq!(
            a.deallocate(frames[10], 1),
            Err(FrameError::CapacityExhausted { capacity: 2 })
        );
        assert_eq!(a.free_bytes(), free);
        // A free that merges needs no slot, after which the retry succeeds.
        a.deallocate(frames[3], 1).unwrap();
        a.deallocate(frames[4], 1).unwrap();
        a.deallocate(frames[5], 1).unwrap();
        a.deallocate(frames[10], 1).unwrap();
        assert_eq!(ranges(&a), [(0x2000, 0x7000), (0xa000, 0xb000)]);
    }

    #[test]
    fn allocation_needing_a_split_in_a_full_list_uses_the_top_or_fails() {
        let mut a =
            FrameAllocator::<1>::from_memory_map(&[usable(0x1000, 6 * MIB - 0x1000)]).unwrap();
        // Lowest 2 MiB-aligned fit [2, 4) MiB would split; [4, 6) MiB only trims.
        assert_eq!(a.allocate(512, HUGE_PAGE_SIZE), Ok(PhysAddr(4 * MIB)));
        // Now [0x1000, 4 MiB): the lowest fit [2, 4) MiB trims the top.
        assert_eq!(a.allocate(512, HUGE_PAGE_SIZE), Ok(PhysAddr(2 * MIB)));
        assert_eq!(ranges(&a), [(0x1000, 2 * MIB)]);
        // [0x1000, 5 MiB + 0x1000): the only fit [2, 4) MiB needs a split.
        let mut b = FrameAllocator::<1>::from_memory_map(&[usable(0x1000, 5 * MIB)]).unwrap();
        assert_eq!(
            b.allocate(512, HUGE_PAGE_SIZE),
            Err(FrameError::CapacityExhausted { capacity: 1 })
        );
        assert_eq!(b.free_bytes(), 5 * MIB);
    }

    #[test]
    fn exhausting_and_freeing_everything_restores_the_start() {
        let mut a = typical();
        let (start_ranges, start_free) = (ranges(&a), a.free_bytes());
        let mut taken = Vec::new();
        while let Ok(p) = a.allocate(1, PAGE_SIZE) {
            taken.push(p);
        }
        assert_eq!(taken.len() as u64 * PAGE_SIZE, start_free);
        assert_eq!(a.free_bytes(), 0);
        assert!(matches!(
            a.allocate(1, PAGE_SIZE),
            Err(FrameError::OutOfMemory { .. })
        ));
        // In groups of eight, free the even frames first (new ranges) and the
        // odd ones last (merging on both sides), within the capacity of 16.
        for group in taken.chunks(8) {
            let evens = group.iter().step_by(2);
            for p in evens.chain(group.iter().skip(1).step_by(2)) {
                a.deallocate(*p, 1).unwrap();
            }
        }
        assert_eq!(ranges(&a), start_ranges);
        assert_eq!(a.free_bytes(), start_free);
        assert_eq!(a.total_bytes(), start_free);
    }

    /// Random allocate/free against a model, checking after every step that
    /// no frame is handed out twice and the byte counts agree.
    #[test]
    fn random_operations_match_a_model() {
        let mut a = FrameAllocator::<64>::from_memory_map(&[
            usable(0, 3 * MIB),
            reserved(3 * MIB, MIB),
            usable(4 * MIB + 0x3000, 5 * MIB),
        ])
        .unwrap();
        let original = ranges(&a);
        let mut live: Vec<(u64, usize)> = Vec::new();
        let mut full = 0;
        let mut seed = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for _ in 0..4000 {
            let r = next();
            if r % 3 != 0 || live.is_empty() {
                let count = 1 + (r >> 8) as usize % 40;
                let align = PAGE_SIZE << ((r >> 16) % 4);
                match a.allocate(count, align) {
                    Ok(p) => {
                        assert_eq!(p.0 % align, 0);
                        live.push((p.0, count));
                    }
                    Err(FrameError::OutOfMemory { .. }) => {}
                    Err(FrameError::CapacityExhausted { .. }) => full += 1,
                    Err(e) => panic!("unexpected {e}"),
                }
            } else {
                let (p, count) = live.swap_remove((r >> 8) as usize % live.len());
                match a.deallocate(PhysAddr(p), count) {
                    Ok(()) => {}
                    Err(FrameError::CapacityExhausted { .. }) => {
                        full += 1;
                        live.push((p, count));
                    }
                    Err(e) => panic!("unexpected {e}"),
                }
            }
            let used: u64 = live.iter().map(|&(_, c)| c as u64 * PAGE_SIZE).sum();
            assert_eq!(a.allocated_bytes(), used);
            let mut all: Vec<(u64, u64)> = live
                .iter()
                .map(|&(p, c)| (p, p + c as u64 * PAGE_SIZE))
                .chain(ranges(&a))
                .collect();
            all.sort();
            assert!(
                all.windows(2).all(|w| w[0].1 <= w[1].0),
                "overlap in {all:x?}"
            );
            assert!(
                all.iter()
                    .all(|&(s, e)| original.iter().any(|&(os, oe)| os <= s && e <= oe))
            );
        }
        // The run must have hit the capacity limit to test its handling.
        assert!(full > 0);
        // A block next to a free range always merges without a new slot, so
        // every pass frees at least one block.
        while !live.is_empty() {
            let before = live.len();
            live.retain(|&(p, c)| a.deallocate(PhysAddr(p), c).is_err());
            assert!(live.len() < before, "stuck freeing {live:x?}");
        }
        assert_eq!(ranges(&a), original);
    }

    #[test]
    fn errors_read_well() {
        let e = FrameError::OutOfMemory {
            count: 512,
            align: HUGE_PAGE_SIZE,
        };
        assert_eq!(
            e.to_string(),
            "out of physical memory: no 512 contiguous frames aligned to 0x200000"
        );
        assert_eq!(
            FrameError::DoubleFree {
                start: PhysAddr(0x5000),
                len: 0x1000
            }
            .to_string(),
            "double free: 0x1000 bytes at phys 0x5000 overlap free memory"
        );
    }
}

#[cfg(test)]
mod load_tests {
    use hermit_interface::{MemoryKind, MemoryRegion};

    use super::*;

    fn region(start: u64, len: u64, kind: MemoryKind) -> MemoryRegion {
        MemoryRegion {
            start,
            len,
            kind: kind as u32,
            _reserved: 0,
        }
    }

    #[test]
    fn loading_in_place_matches_building() {
        let map = [
            region(0x1000, 0x9_f000, MemoryKind::Usable),
            region(0x10_0000, 0x10_0000, MemoryKind::Reserved),
            region(0x20_0000, 0x1e0_0000, MemoryKind::Usable),
        ];
        let built = FrameAllocator::<8>::from_memory_map(&map).unwrap();
        let mut loaded = FrameAllocator::<8>::new();
        loaded.load_memory_map(&map).unwrap();
        assert_eq!(
            built.free_ranges().collect::<Vec<_>>(),
            loaded.free_ranges().collect::<Vec<_>>()
        );
        assert_eq!(
            (built.free_bytes(), built.total_bytes()),
            (loaded.free_bytes(), loaded.total_bytes())
        );
    }

    #[test]
    fn loading_more_keeps_allocations_counted() {
        let mut a = FrameAllocator::<8>::new();
        a.load_memory_map(&[region(0x10_0000, 0x10_0000, MemoryKind::Usable)])
            .unwrap();
        let frame = a.allocate(4, PAGE_SIZE).unwrap();
        a.load_memory_map(&[region(0x40_0000, 0x10_0000, MemoryKind::Usable)])
            .unwrap();
        assert_eq!(a.total_bytes(), 0x20_0000);
        assert_eq!(a.allocated_bytes(), 4 * PAGE_SIZE);
        a.deallocate(frame, 4).unwrap();
        assert_eq!(a.free_bytes(), 0x20_0000);
    }
}
