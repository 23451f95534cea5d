//! An emulated page table for host tests: a map from page start to mapping,
//! with one page-table frame per 2 MiB slot that holds 4 KiB pages, taken
//! from the [`FrameSource`] like a real implementation would.

use std::collections::BTreeMap;
use std::collections::btree_map::Entry;

use crate::{
    FrameSource, HUGE_PAGE_SIZE, MapError, PAGE_SIZE, PageFlags, PageMapper, PageSize, PhysAddr,
    Translation, VirtAddr, align_down,
};

#[derive(Debug, Default)]
pub struct FakePageTable {
    pages: BTreeMap<u64, (PhysAddr, PageSize, PageFlags)>,
    tables: BTreeMap<u64, PhysAddr>,
}

impl FakePageTable {
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of mapped pages of any size.
    pub fn mapped_pages(&self) -> usize {
        self.pages.len()
    }

    /// Number of mapped pages of `size`.
    pub fn pages_of(&self, size: PageSize) -> usize {
        self.pages.values().filter(|m| m.1 == size).count()
    }

    /// Frames taken for page tables (never given back, as in the kernel).
    pub fn table_frames(&self) -> u64 {
        self.tables.len() as u64
    }

    /// The mapping covering `virt`: (page start, frame, size, flags).
    fn lookup(&self, virt: u64) -> Option<(u64, PhysAddr, PageSize, PageFlags)> {
        let (&base, &(phys, size, flags)) = self.pages.range(..=virt).next_back()?;
        (virt - base < size.bytes()).then_some((base, phys, size, flags))
    }
}

impl PageMapper for FakePageTable {
    fn map(
        &mut self,
        virt: VirtAddr,
        phys: PhysAddr,
        size: PageSize,
        flags: PageFlags,
        frames: &mut dyn FrameSource,
    ) -> Result<(), MapError> {
        for a in [virt.0, phys.0] {
            if !a.is_multiple_of(size.bytes()) {
                return Err(MapError::Misaligned(a));
            }
        }
        let end = virt
            .0
            .checked_add(size.bytes())
            .ok_or(MapError::Overflow(virt.0))?;
        // Pages never overlap, so only the last one starting below `end` can
        // reach into [virt, end).
        if let Some((&base, &(_, s, _))) = self.pages.range(..end).next_back()
            && base + s.bytes() > virt.0
        {
            return Err(MapError::AlreadyMapped(VirtAddr(base.max(virt.0))));
        }
        if size == PageSize::Size4K {
            let slot = align_down(virt.0, HUGE_PAGE_SIZE);
            if let Entry::Vacant(entry) = self.tables.entry(slot) {
                entry.insert(frames.allocate_frames(1, PAGE_SIZE)?);
            }
        }
        self.pages.insert(virt.0, (phys, size, flags));
        Ok(())
    }

    fn unmap(&mut self, virt: VirtAddr) -> Result<(PhysAddr, PageSize), MapError> {
        match self.lookup(virt.0) {
            None => Err(MapError::NotMapped(virt)),
            Some((base, ..)) if base != virt.0 => Err(MapError::Misaligned(virt.0)),
            Some((_, phys, size, _)) => {
                self.pages.remove(&virt.0);
                Ok((phys, size))
            }
        }
    }

    fn translate(&self, virt: VirtAddr) -> Option<Translation> {
        let (base, phys, size, flags) = self.lookup(virt.0)?;
        Some(Translation {
            phys: PhysAddr(phys.0 + (virt.0 - base)),
            size,
            flags,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{FrameAllocator, FrameError};
    use hermit_interface::{MemoryKind, MemoryRegion};

    fn frames() -> FrameAllocator<8> {
        let map = [MemoryRegion {
            start: 0x40_0000,
            len: 0x40_0000,
            kind: MemoryKind::Usable as u32,
            _reserved: 0,
        }];
        FrameAllocator::from_memory_map(&map).unwrap()
    }

    const V: u64 = 0xffff_9000_0000_0000;

    #[test]
    fn map_translate_unmap() {
        let (mut pt, mut f) = (FakePageTable::new(), frames());
        pt.map(
            VirtAddr(V),
            PhysAddr(0x1000),
            PageSize::Size4K,
            PageFlags::DATA,
            &mut f,
        )
        .unwrap();
        let t = pt.translate(VirtAddr(V + 0x123)).unwrap();
        assert_eq!(t.phys, PhysAddr(0x1123));
        assert_eq!(t.flags, PageFlags::DATA);
        assert_eq!(pt.translate(VirtAddr(V + PAGE_SIZE)), None);
        assert_eq!(pt.table_frames(), 1);
        assert_eq!(
            pt.unmap(VirtAddr(V)),
            Ok((PhysAddr(0x1000), PageSize::Size4K))
        );
        assert_eq!(pt.translate(VirtAddr(V)), None);
        assert_eq!(pt.unmap(VirtAddr(V)), Err(MapError::NotMapped(VirtAddr(V))));
    }

    #[test]
    fn double_map_and_huge_overlap_are_rejected() {
        let (mut pt, mut f) = (FakePageTable::new(), frames());
        let v4k = VirtAddr(V + 0x5000);
        pt.map(
            v4k,
            PhysAddr(0x1000),
            PageSize::Size4K,
            PageFlags::DATA,
            &mut f,
        )
        .unwrap();
        let again = pt.map(
            v4k,
            PhysAddr(0x2000),
            PageSize::Size4K,
            PageFlags::DATA,
            &mut f,
        );
        assert_eq!(again, Err(MapError::AlreadyMapped(v4k)));
        let huge = pt.map(
            VirtAddr(V),
            PhysAddr(0),
            PageSize::Size2M,
            PageFlags::DATA,
            &mut f,
        );
        assert_eq!(huge, Err(MapError::AlreadyMapped(v4k)));

        let hv = VirtAddr(V + HUGE_PAGE_SIZE);
        pt.map(hv, PhysAddr(0), PageSize::Size2M, PageFlags::DATA, &mut f)
            .unwrap();
        let inner = VirtAddr(hv.0 + 0x3000);
        let small = pt.map(
            inner,
            PhysAddr(0x1000),
            PageSize::Size4K,
            PageFlags::DATA,
            &mut f,
        );
        assert_eq!(small, Err(MapError::AlreadyMapped(inner)));
        assert_eq!(pt.unmap(inner), Err(MapError::Misaligned(inner.0)));
        assert_eq!(pt.mapped_pages(), 2);
    }

    #[test]
    fn misaligned_and_table_oom_are_rejected() {
        let mut pt = FakePageTable::new();
        let mut f = frames();
        let bad = pt.map(
            VirtAddr(V + 0x1000),
            PhysAddr(0),
            PageSize::Size2M,
            PageFlags::DATA,
            &mut f,
        );
        assert_eq!(bad, Err(MapError::Misaligned(V + 0x1000)));
        let bad = pt.map(
            VirtAddr(V),
            PhysAddr(0x1000),
            PageSize::Size2M,
            PageFlags::DATA,
            &mut f,
        );
        assert_eq!(bad, Err(MapError::Misaligned(0x1000)));

        let mut empty = FrameAllocator::<1>::new();
        let oom = pt.map(
            VirtAddr(V),
            PhysAddr(0),
            PageSize::Size4K,
            PageFlags::DATA,
            &mut empty,
        );
        assert!(matches!(
            oom,
            Err(MapError::Frames(FrameError::OutOfMemory { .. }))
        ));
        assert_eq!(pt.mapped_pages(), 0);
    }
}
