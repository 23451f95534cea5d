//! The kernel's dynamic virtual window: stacks with guard pages and MMIO
//! windows, mapped through a [`PageMapper`].

use crate::range_set::{RangeSet, TakeError};
use crate::{
    FrameSource, HUGE_PAGE_SIZE, MapError, PAGE_SIZE, PageFlags, PageMapper, PageSize, PhysAddr,
    VirtAddr, align_down, align_up,
};

/// A mapped region with an unmapped guard page directly below it, from
/// [`KernelSpace::map_guarded`]. Not `Clone`: giving it back to
/// [`KernelSpace::unmap_guarded`] consumes it, so it cannot be freed twice.
#[derive(Debug, PartialEq, Eq)]
pub struct GuardedRegion {
    guard: u64,
    start: u64,
    size: u64,
}

impl GuardedRegion {
    /// The unmapped guard page.
    pub const fn guard(&self) -> VirtAddr {
        VirtAddr(self.guard)
    }

    /// The first mapped byte.
    pub const fn start(&self) -> VirtAddr {
        VirtAddr(self.start)
    }

    /// One past the last mapped byte: the initial stack pointer of a stack.
    pub const fn end(&self) -> VirtAddr {
        VirtAddr(self.start + self.size)
    }

    /// Mapped bytes (without the guard page).
    pub const fn size(&self) -> u64 {
        self.size
    }
}

/// A mapped device-memory window from [`KernelSpace::map_mmio`]. Not `Clone`,
/// for the same reason as [`GuardedRegion`].
#[derive(Debug, PartialEq, Eq)]
pub struct MmioRegion {
    /// First mapped page.
    base: u64,
    /// Mapped bytes, whole pages.
    mapped: u64,
    /// Offset of the requested physical address inside the first page.
    offset: u64,
    /// Requested length.
    size: u64,
}

impl MmioRegion {
    /// The virtual address of the requested physical address.
    pub const fn addr(&self) -> VirtAddr {
        VirtAddr(self.base + self.offset)
    }

    /// The requested length in bytes (the mapping is rounded out to pages).
    pub const fn size(&self) -> u64 {
        self.size
    }
}

/// Allocator of the kernel's dynamic virtual window, holding at most `N`
/// disjoint free ranges. It owns the window: nothing else may map there.
///
/// Regions of 2 MiB or more are placed so that their 2 MiB-aligned parts can
/// use 2 MiB pages (for MMIO, when the physical address allows it).
#[derive(Clone, Debug)]
pub struct KernelSpace<const N: usize> {
    free: RangeSet<N>,
}

impl<const N: usize> KernelSpace<N> {
    const FULL: MapError = MapError::CapacityExhausted { capacity: N };

    /// Manages the window `[start, start + len)`; both must be multiples of
    /// 4 KiB and the window must not be empty.
    pub fn new(start: VirtAddr, len: u64) -> Result<Self, MapError> {
        if len == 0 {
            return Err(MapError::ZeroSize);
        }
        for v in [start.0, len] {
            if !v.is_multiple_of(PAGE_SIZE) {
                return Err(MapError::Misaligned(v));
            }
        }
        let end = start
            .0
            .checked_add(len)
            .ok_or(MapError::Overflow(start.0))?;
        let mut free = RangeSet::new();
        free.insert(start.0, end, false).map_err(|_| Self::FULL)?;
        Ok(Self { free })
    }

    /// Free bytes of the window.
    pub const fn free_bytes(&self) -> u64 {
        self.free.bytes()
    }

    /// Maps `pages` fresh frames with `flags` (usually [`PageFlags::DATA`])
    /// above an unmapped guard page, e.g. for a stack. The frames are not zeroed: their
    /// contents are undefined until the caller writes them through
    /// [`GuardedRegion::start`]. On error everything taken so far is given
    /// back (except page-table frames the mapper keeps).
    pub fn map_guarded<M: PageMapper + ?Sized>(
        &mut self,
        mapper: &mut M,
        frames: &mut dyn FrameSource,
        pages: usize,
        flags: PageFlags,
    ) -> Result<GuardedRegion, MapError> {
        if pages == 0 {
            return Err(MapError::ZeroSize);
        }
        let size = (pages as u64)
            .checked_mul(PAGE_SIZE)
            .ok_or(MapError::OutOfVirtualSpace(u64::MAX))?;
        let total = size
            .checked_add(PAGE_SIZE)
            .ok_or(MapError::OutOfVirtualSpace(u64::MAX))?;
        // Skewed so that the region after the guard starts 2 MiB aligned.
        let guard = self.take(total, size >= HUGE_PAGE_SIZE, PAGE_SIZE)?;
        let start = guard + PAGE_SIZE;
        match map_fresh(mapper, frames, start, size, flags) {
            Ok(()) => {
                log::trace!("mapped {size:#x} bytes at {start:#x} with guard page");
                Ok(GuardedRegion { guard, start, size })
            }
            Err(e) => {
                self.give_back(guard, total);
                Err(e)
            }
        }
    }

    /// Unmaps a region from [`map_guarded`](Self::map_guarded) and frees its
    /// frames. On error, the pages that could be unmapped are, frames that
    /// could not be freed are leaked (never reused), and the virtual range is
    /// kept out of use; the first error is returned.
    pub fn unmap_guarded<M: PageMapper + ?Sized>(
        &mut self,
        mapper: &mut M,
        frames: &mut dyn FrameSource,
        region: GuardedRegion,
    ) -> Result<(), MapError> {
        unmap_range(mapper, Some(frames), region.start, region.size)?;
        self.release(region.guard, region.size + PAGE_SIZE)
    }

    /// Maps the physical range `[phys, phys + len)` (rounded out to pages)
    /// uncached, e.g. device registers. No frames are allocated for it;
    /// `frames` only feeds page tables. On error nothing stays mapped.
    pub fn map_mmio<M: PageMapper + ?Sized>(
        &mut self,
        mapper: &mut M,
        frames: &mut dyn FrameSource,
        phys: PhysAddr,
        len: u64,
    ) -> Result<MmioRegion, MapError> {
        if len == 0 {
            return Err(MapError::ZeroSize);
        }
        let overflow = MapError::Overflow(phys.0);
        let end = phys.0.checked_add(len).ok_or(overflow)?;
        let first = align_down(phys.0, PAGE_SIZE);
        let mapped = align_up(end, PAGE_SIZE).ok_or(overflow)? - first;
        // Congruent to the physical address modulo 2 MiB, so that aligned
        // 2 MiB parts of a large window can use 2 MiB pages.
        let skew = (HUGE_PAGE_SIZE - first % HUGE_PAGE_SIZE) % HUGE_PAGE_SIZE;
        let base = self.take(mapped, mapped >= HUGE_PAGE_SIZE, skew)?;
        match map_contiguous(mapper, frames, base, first, mapped, PageFlags::MMIO) {
            Ok(()) => Ok(MmioRegion {
                base,
                mapped,
                offset: phys.0 - first,
                size: len,
            }),
            Err(e) => {
                self.give_back(base, mapped);
                Err(e)
            }
        }
    }

    /// Unmaps a window from [`map_mmio`](Self::map_mmio). Errors are handled
    /// as in [`unmap_guarded`](Self::unmap_guarded).
    pub fn unmap_mmio<M: PageMapper + ?Sized>(
        &mut self,
        mapper: &mut M,
        region: MmioRegion,
    ) -> Result<(), MapError> {
        unmap_range(mapper, None, region.base, region.mapped)?;
        self.release(region.base, region.mapped)
    }

    /// Takes `size` bytes of the window; with `huge`, preferably at an address
    /// `a` with `(a + skew) % 2 MiB == 0`.
    fn take(&mut self, size: u64, huge: bool, skew: u64) -> Result<u64, MapError> {
        let placed = if huge {
            self.free.take(size, HUGE_PAGE_SIZE, skew)
        } else {
            Err(TakeError::NoFit)
        };
        match placed.or_else(|_| self.free.take(size, PAGE_SIZE, 0)) {
            Ok(a) => Ok(a),
            Err(TakeError::NoFit) => Err(MapError::OutOfVirtualSpace(size)),
            Err(TakeError::Full) => Err(Self::FULL),
        }
    }

    /// Returns a range to the window.
    fn release(&mut self, start: u64, size: u64) -> Result<(), MapError> {
        self.free.insert(start, start + size, false).map_err(|e| {
            log::warn!("kernel virtual range {start:#x}+{size:#x} leaked: {e:?}");
            Self::FULL
        })
    }

    /// Returns a range just taken by [`take`](Self::take). Cannot fail: it
    /// restores the spans `take` changed.
    fn give_back(&mut self, start: u64, size: u64) {
        let _ = self.release(start, size);
    }
}

/// Maps `[virt, virt + size)` to fresh frames, with 2 MiB pages where `virt`
/// is 2 MiB aligned and 2 MiB of physically contiguous frames can be found.
/// On error unmaps and frees what it mapped.
fn map_fresh<M: PageMapper + ?Sized>(
    mapper: &mut M,
    frames: &mut dyn FrameSource,
    virt: u64,
    size: u64,
    flags: PageFlags,
) -> Result<(), MapError> {
    let mut done = 0;
    let result = loop {
        if done == size {
            break Ok(());
        }
        let at = virt + done;
        let huge = at.is_multiple_of(HUGE_PAGE_SIZE) && size - done >= HUGE_PAGE_SIZE;
        let (phys, page) = match allocate_page(frames, huge) {
            Ok(page) => page,
            Err(e) => break Err(MapError::Frames(e)),
        };
        if let Err(e) = mapper.map(VirtAddr(at), phys, page, flags, frames) {
            if let Err(fe) = frames.deallocate_frames(phys, page.frames()) {
                log::warn!("{phys} leaked after failed mapping: {fe}");
            }
            break Err(e);
        }
        done += page.bytes();
    };
    if result.is_err() {
        let _ = unmap_range(mapper, Some(frames), virt, done);
    }
    result
}

/// Frames for one page: a 2 MiB-aligned 2 MiB run when `huge` and one is
/// free, otherwise a single 4 KiB frame.
fn allocate_page(
    frames: &mut dyn FrameSource,
    huge: bool,
) -> Result<(PhysAddr, PageSize), crate::FrameError> {
    if huge {
        let page = PageSize::Size2M;
        if let Ok(phys) = frames.allocate_frames(page.frames(), page.bytes()) {
            return Ok((phys, page));
        }
    }
    let phys = frames.allocate_frames(1, PAGE_SIZE)?;
    Ok((phys, PageSize::Size4K))
}

/// Maps `[virt, virt + size)` to `[phys, phys + size)`, with 2 MiB pages where
/// both are 2 MiB aligned. On error unmaps what it mapped.
fn map_contiguous<M: PageMapper + ?Sized>(
    mapper: &mut M,
    frames: &mut dyn FrameSource,
    virt: u64,
    phys: u64,
    size: u64,
    flags: PageFlags,
) -> Result<(), MapError> {
    let mut done = 0;
    while done < size {
        let (v, p) = (virt + done, phys + done);
        let page = if (v | p).is_multiple_of(HUGE_PAGE_SIZE) && size - done >= HUGE_PAGE_SIZE {
            PageSize::Size2M
        } else {
            PageSize::Size4K
        };
        if let Err(e) = mapper.map(VirtAddr(v), PhysAddr(p), page, flags, frames) {
            let _ = unmap_range(mapper, None, virt, done);
            return Err(e);
        }
        done += page.bytes();
    }
    Ok(())
}

/// Unmaps every page in `[virt, virt + size)` and, with `frames`, frees the
/// frames behind them. Keeps going after errors and returns the first.
fn unmap_range<M: PageMapper + ?Sized>(
    mapper: &mut M,
    mut frames: Option<&mut dyn FrameSource>,
    virt: u64,
    size: u64,
) -> Result<(), MapError> {
    let mut first_error = None;
    let mut done = 0;
    while done < size {
        let at = VirtAddr(virt + done);
        match mapper.unmap(at) {
            Ok((phys, page)) => {
                if let Some(frames) = frames.as_deref_mut()
                    && let Err(e) = frames.deallocate_frames(phys, page.frames())
                {
                    log::warn!("{phys} leaked after unmapping {at}: {e}");
                    first_error.get_or_insert(MapError::Frames(e));
                }
                done += page.bytes();
            }
            Err(e) => {
                first_error.get_or_insert(e);
                done += PAGE_SIZE;
            }
        }
    }
    first_error.map_or(Ok(()), Err)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake::FakePageTable;
    use crate::{FrameAllocator, FrameError, Translation};
    use hermit_interface::{MemoryKind, MemoryRegion};

    const MIB: u64 = 1024 * 1024;
    const WINDOW: u64 = 0xffff_a000_0000_0000;

    struct Env {
        ks: KernelSpace<16>,
        pt: FakePageTable,
        fa: FrameAllocator<64>,
    }

    fn env(mem_start: u64, mem_len: u64, window_len: u64) -> Env {
        let map = [MemoryRegion {
            start: mem_start,
            len: mem_len,
            kind: MemoryKind::Usable as u32,
            _reserved: 0,
        }];
        Env {
            ks: KernelSpace::new(VirtAddr(WINDOW), window_len).unwrap(),
            pt: FakePageTable::new(),
            fa: FrameAllocator::from_memory_map(&map).unwrap(),
        }
    }

    impl Env {
        fn guarded(&mut self, pages: usize) -> Result<GuardedRegion, MapError> {
            self.ks
                .map_guarded(&mut self.pt, &mut self.fa, pages, PageFlags::DATA)
        }

        fn unmap(&mut self, r: GuardedRegion) -> Result<(), MapError> {
            self.ks.unmap_guarded(&mut self.pt, &mut self.fa, r)
        }

        fn at(&self, v: u64) -> Option<Translation> {
            self.pt.translate(VirtAddr(v))
        }

        /// Free frames plus the ones the fake keeps for page tables.
        fn frames_accounted(&self) -> u64 {
            self.fa.free_bytes() + self.pt.table_frames() * PAGE_SIZE
        }
    }

    #[test]
    fn guarded_region_maps_fresh_frames_above_an_unmapped_guard() {
        let mut e = env(0x10_0000, 4 * MIB, 64 * MIB);
        let (free, window) = (e.fa.free_bytes(), e.ks.free_bytes());
        let r = e.guarded(4).unwrap();
        assert_eq!(r.guard(), VirtAddr(WINDOW));
        assert_eq!(r.start(), VirtAddr(WINDOW + PAGE_SIZE));
        assert_eq!(r.end(), VirtAddr(WINDOW + 5 * PAGE_SIZE));
        assert_eq!(r.size(), 4 * PAGE_SIZE);
        assert_eq!(e.at(WINDOW), None);
        assert_eq!(e.at(WINDOW + PAGE_SIZE - 1), None);
        assert_eq!(e.at(r.end().0), None);

        let mut phys = Vec::new();
        for v in (r.start().0..r.end().0).step_by(PAGE_SIZE as usize) {
            let t = e.at(v + 8).expect("region page mapped");
            assert_eq!((t.size, t.flags), (PageSize::Size4K, PageFlags::DATA));
            assert_eq!(t.phys.0 % PAGE_SIZE, 8);
            // Allocated, so no longer free.
            assert!(e.fa.free_ranges().all(|f| !f.contains(&t.phys)));
            phys.push(t.phys);
        }
        phys.sort();
        phys.dedup();
        assert_eq!(phys.len(), 4);
        assert_eq!(e.frames_accounted(), free - 4 * PAGE_SIZE);
        assert_eq!(e.ks.free_bytes(), window - 5 * PAGE_SIZE);

        e.unmap(r).unwrap();
        assert_eq!(e.pt.mapped_pages(), 0);
        assert_eq!(e.frames_accounted(), free);
        assert_eq!(e.ks.free_bytes(), window);
    }

    #[test]
    fn neighbouring_regions_keep_their_guards_unmapped() {
        let mut e = env(0x10_0000, 4 * MIB, 64 * MIB);
        let a = e.guarded(2).unwrap();
        let b = e.guarded(3).unwrap();
        assert_eq!(b.guard(), a.end());
        assert_eq!(e.at(b.guard().0), None);
        assert!(e.at(b.start().0).is_some());
        assert_eq!(e.pt.mapped_pages(), 5);
        // Freeing the lower one and mapping again reuses its place.
        let a_guard = a.guard();
        e.unmap(a).unwrap();
        let c = e.guarded(1).unwrap();
        assert_eq!(c.guard(), a_guard);
        assert_eq!(e.at(c.start().0 + PAGE_SIZE), None);
    }

    #[test]
    fn large_regions_use_2mib_pages() {
        let mut e = env(0, 32 * MIB, 64 * MIB);
        let free = e.fa.free_bytes();
        let r = e.guarded(1024 + 3).unwrap();
        assert!(r.start().0.is_multiple_of(HUGE_PAGE_SIZE));
        assert_eq!(e.at(r.guard().0), None);
        assert_eq!(e.pt.pages_of(PageSize::Size2M), 2);
        assert_eq!(e.pt.pages_of(PageSize::Size4K), 3);
        let t = e.at(r.start().0 + 3 * MIB + 5).unwrap();
        assert_eq!(t.size, PageSize::Size2M);
        assert_eq!(t.phys.0 % HUGE_PAGE_SIZE, MIB + 5);
        assert_eq!(e.frames_accounted(), free - r.size());
        e.unmap(r).unwrap();
        assert_eq!(e.frames_accounted(), free);
        assert_eq!(e.fa.allocated_bytes(), e.pt.table_frames() * PAGE_SIZE);
    }

    #[test]
    fn fragmented_memory_falls_back_to_4kib_pages() {
        // [4 KiB, 3 MiB + 4 KiB) holds no 2 MiB-aligned 2 MiB run.
        let mut e = env(0x1000, 3 * MIB, 64 * MIB);
        let free = e.fa.free_bytes();
        let r = e.guarded(512).unwrap();
        assert_eq!(e.pt.pages_of(PageSize::Size2M), 0);
        assert_eq!(e.pt.pages_of(PageSize::Size4K), 512);
        e.unmap(r).unwrap();
        assert_eq!(e.frames_accounted(), free);
    }

    #[test]
    fn out_of_memory_gives_everything_back() {
        let mut e = env(0x10_0000, 8 * PAGE_SIZE, 64 * MIB);
        let window = e.ks.free_bytes();
        let err = e.guarded(16).unwrap_err();
        assert_eq!(
            err,
            MapError::Frames(FrameError::OutOfMemory {
                count: 1,
                align: PAGE_SIZE
            })
        );
        assert_eq!(e.pt.mapped_pages(), 0);
        assert_eq!(e.pt.table_frames(), 1);
        assert_eq!(e.fa.free_bytes(), 7 * PAGE_SIZE);
        assert_eq!(e.ks.free_bytes(), window);
        // What is left is still usable.
        let r = e.guarded(7).unwrap();
        assert_eq!(e.fa.free_bytes(), 0);
        assert!(matches!(
            e.guarded(1),
            Err(MapError::Frames(FrameError::OutOfMemory { .. }))
        ));
        e.unmap(r).unwrap();
        assert_eq!(e.fa.free_bytes(), 7 * PAGE_SIZE);
    }

    #[test]
    fn foreign_mapping_in_the_way_is_reported_and_left_alone() {
        let mut e = env(0x10_0000, 4 * MIB, 64 * MIB);
        let (free, window) = (e.fa.free_bytes(), e.ks.free_bytes());
        let in_way = VirtAddr(WINDOW + 3 * PAGE_SIZE);
        let foreign = PhysAddr(0xfee0_0000);
        e.pt.map(
            in_way,
            foreign,
            PageSize::Size4K,
            PageFlags::MMIO,
            &mut e.fa,
        )
        .unwrap();
        let tables = e.pt.table_frames();
        assert_eq!(e.guarded(4), Err(MapError::AlreadyMapped(in_way)));
        assert_eq!(e.pt.mapped_pages(), 1);
        assert_eq!(e.at(in_way.0).unwrap().phys, foreign);
        assert_eq!(e.pt.table_frames(), tables);
        assert_eq!(e.fa.free_bytes(), free - tables * PAGE_SIZE);
        assert_eq!(e.ks.free_bytes(), window);
    }

    #[test]
    fn window_limits_and_bad_requests() {
        let mut e = env(0x10_0000, 4 * MIB, 16 * PAGE_SIZE);
        assert_eq!(
            e.guarded(16),
            Err(MapError::OutOfVirtualSpace(17 * PAGE_SIZE))
        );
        assert_eq!(e.guarded(0), Err(MapError::ZeroSize));
        assert_eq!(
            e.guarded(usize::MAX),
            Err(MapError::OutOfVirtualSpace(u64::MAX))
        );
        let r = e.guarded(15).unwrap();
        assert_eq!(e.ks.free_bytes(), 0);
        assert_eq!(
            e.guarded(1),
            Err(MapError::OutOfVirtualSpace(2 * PAGE_SIZE))
        );
        e.unmap(r).unwrap();
        assert_eq!(e.ks.free_bytes(), 16 * PAGE_SIZE);

        let new = KernelSpace::<4>::new;
        assert_eq!(new(VirtAddr(WINDOW), 0).unwrap_err(), MapError::ZeroSize);
        assert_eq!(
            new(VirtAddr(WINDOW + 1), PAGE_SIZE).unwrap_err(),
            MapError::Misaligned(WINDOW + 1)
        );
        assert_eq!(
            new(VirtAddr(WINDOW), 100).unwrap_err(),
            MapError::Misaligned(100)
        );
        assert_eq!(
            new(VirtAddr(WINDOW), 1 << 62).unwrap_err(),
            MapError::Overflow(WINDOW)
        );
    }

    #[test]
    fn mmio_keeps_the_page_offset_and_takes_no_frames() {
        let mut e = env(0x10_0000, 4 * MIB, 64 * MIB);
        let window = e.ks.free_bytes();
        let (ks, pt, fa) = (&mut e.ks, &mut e.pt, &mut e.fa);
        let apic = ks.map_mmio(pt, fa, PhysAddr(0xfee0_0010), 0x20).unwrap();
        // Crosses a page boundary: two pages.
        let cross = ks.map_mmio(pt, fa, PhysAddr(0xfebf_fff0), 0x20).unwrap();
        assert_eq!(apic.addr().0 % PAGE_SIZE, 0x10);
        assert_eq!(apic.size(), 0x20);
        let t = e.at(apic.addr().0 + 4).unwrap();
        assert_eq!(t.phys, PhysAddr(0xfee0_0014));
        assert_eq!(t.flags, PageFlags::MMIO);
        assert_eq!(
            e.at(cross.addr().0 + 0x18).unwrap().phys,
            PhysAddr(0xfec0_0008)
        );
        assert_eq!(e.pt.mapped_pages(), 3);
        // Only page tables came from the allocator.
        let after_map = e.fa.free_bytes();
        assert_eq!(e.frames_accounted(), 4 * MIB);
        e.ks.unmap_mmio(&mut e.pt, apic).unwrap();
        e.ks.unmap_mmio(&mut e.pt, cross).unwrap();
        assert_eq!(e.pt.mapped_pages(), 0);
        assert_eq!(e.fa.free_bytes(), after_map);
        assert_eq!(e.ks.free_bytes(), window);

        let ks = &mut e.ks;
        assert_eq!(
            ks.map_mmio(&mut e.pt, &mut e.fa, PhysAddr(0x1000), 0),
            Err(MapError::ZeroSize)
        );
        assert_eq!(
            ks.map_mmio(&mut e.pt, &mut e.fa, PhysAddr(u64::MAX - 4), 0x10),
            Err(MapError::Overflow(u64::MAX - 4))
        );
    }

    #[test]
    fn large_mmio_uses_2mib_pages_where_physically_aligned() {
        let mut e = env(0x10_0000, 4 * MIB, 64 * MIB);
        // [0xc020_1000, 0xc060_1000): 511 small pages, one 2 MiB page, one small.
        let phys = 0xc020_1000;
        let mapper: &mut dyn PageMapper = &mut e.pt;
        let r =
            e.ks.map_mmio(mapper, &mut e.fa, PhysAddr(phys), 4 * MIB)
                .unwrap();
        assert_eq!(e.pt.pages_of(PageSize::Size2M), 1);
        assert_eq!(e.pt.pages_of(PageSize::Size4K), 512);
        for off in [0, 0x1f_f000, 0x20_0000 - 0x1000 + 7, 3 * MIB, 4 * MIB - 1] {
            let t = e.at(r.addr().0 + off).unwrap();
            assert_eq!(t.phys, PhysAddr(phys + off), "offset {off:#x}");
        }
        e.ks.unmap_mmio(&mut e.pt, r).unwrap();
        assert_eq!(e.pt.mapped_pages(), 0);
    }

    #[test]
    fn unmapping_a_damaged_region_frees_what_it_can_and_keeps_the_range() {
        let mut e = env(0x10_0000, 4 * MIB, 64 * MIB);
        let window = e.ks.free_bytes();
        let r = e.guarded(4).unwrap();
        let hole = VirtAddr(r.start().0 + PAGE_SIZE);
        let (stolen, _) = e.pt.unmap(hole).unwrap();
        let free = e.fa.free_bytes();
        assert_eq!(e.unmap(r), Err(MapError::NotMapped(hole)));
        assert_eq!(e.pt.mapped_pages(), 0);
        assert_eq!(e.fa.free_bytes(), free + 3 * PAGE_SIZE);
        assert!(e.fa.free_ranges().all(|f| !f.contains(&stolen)));
        // The range stays out of use rather than being handed out again.
        assert_eq!(e.ks.free_bytes(), window - 5 * PAGE_SIZE);
    }

    #[test]
    fn errors_read_well() {
        let e = MapError::Frames(FrameError::ZeroCount);
        assert_eq!(
            e.to_string(),
            "cannot get physical frames: zero frames requested"
        );
        assert!(core::error::Error::source(&e).is_some());
        assert_eq!(
            MapError::AlreadyMapped(VirtAddr(0x1000)).to_string(),
            "virt 0x1000 is already mapped"
        );
    }
}
