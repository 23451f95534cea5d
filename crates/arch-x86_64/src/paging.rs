//! The kernel's page tables: `mm::PageMapper` implemented with the `x86_64`
//! crate over identity-mapped page-table frames.
//!
//! Physical memory stays identity-mapped (virtual == physical), as the
//! loader left it, but the kernel's own tables leave the first 4 KiB page
//! unmapped so that null-pointer accesses fault with a diagnostic, and mark
//! everything but the kernel image non-executable.

use mm::{FrameSource, MapError, PageFlags, PageMapper, PageSize, Translation};
use x86_64::registers::control::Cr3;
use x86_64::structures::paging::mapper::{MapToError, MappedFrame, TranslateResult, UnmapError};
use x86_64::structures::paging::{
    FrameAllocator, Mapper, OffsetPageTable, Page, PageTable, PageTableFlags, PhysFrame, Size2MiB,
    Size4KiB, Translate,
};
use x86_64::{PhysAddr, VirtAddr};

/// Feeds `x86_64`'s mapper with zeroed frames from an `mm::FrameSource`.
struct Frames<'a>(&'a mut dyn FrameSource);

// SAFETY: frames come from the frame allocator, which hands each out once;
// they are zeroed before the mapper links them into a table.
unsafe impl FrameAllocator<Size4KiB> for Frames<'_> {
    fn allocate_frame(&mut self) -> Option<PhysFrame<Size4KiB>> {
        let addr = self.0.allocate_frames(1, 4096).ok()?.0;
        // SAFETY: the frame is identity-mapped RAM that now belongs to the
        // page tables alone.
        unsafe { core::ptr::write_bytes(addr as *mut u8, 0, 4096) };
        PhysFrame::from_start_address(PhysAddr::new(addr)).ok()
    }
}

fn table_flags(flags: PageFlags) -> PageTableFlags {
    // USER on every entry, as in the boot tables (entry contract): there is
    // no user mode to keep out, and on `kvm_pvm` the kernel runs natively
    // at hardware CPL 3 (`crate::irq`), where a page without it at any level
    // cannot be reached (the host's shadow MMU livelocks on it).
    let mut f = PageTableFlags::PRESENT | PageTableFlags::USER_ACCESSIBLE;
    if flags.writable {
        f |= PageTableFlags::WRITABLE;
    }
    if !flags.executable {
        f |= PageTableFlags::NO_EXECUTE;
    }
    if flags.uncached {
        f |= PageTableFlags::NO_CACHE | PageTableFlags::WRITE_THROUGH;
    }
    f
}

fn page_flags(f: PageTableFlags) -> PageFlags {
    PageFlags {
        writable: f.contains(PageTableFlags::WRITABLE),
        executable: !f.contains(PageTableFlags::NO_EXECUTE),
        uncached: f.contains(PageTableFlags::NO_CACHE),
    }
}

fn map_error<S: x86_64::structures::paging::PageSize>(
    e: MapToError<S>,
    virt: mm::VirtAddr,
) -> MapError {
    match e {
        MapToError::FrameAllocationFailed => MapError::Frames(mm::FrameError::OutOfMemory {
            count: 1,
            align: 4096,
        }),
        MapToError::ParentEntryHugePage | MapToError::PageAlreadyMapped(_) => {
            MapError::AlreadyMapped(virt)
        }
    }
}

/// The live page tables, reached through the identity map.
pub struct KernelMapper {
    table: OffsetPageTable<'static>,
}

impl KernelMapper {
    /// Maps one page of size `S` (the body of [`PageMapper::map`]).
    fn map_sized<S: x86_64::structures::paging::PageSize + core::fmt::Debug>(
        &mut self,
        virt: mm::VirtAddr,
        phys: mm::PhysAddr,
        flags: PageFlags,
        frames: &mut dyn FrameSource,
    ) -> Result<(), MapError>
    where
        OffsetPageTable<'static>: Mapper<S>,
    {
        let misaligned = MapError::Misaligned(virt.0);
        let addr = VirtAddr::try_new(virt.0).map_err(|_| misaligned)?;
        let page = Page::<S>::from_start_address(addr).map_err(|_| misaligned)?;
        let frame = PhysFrame::<S>::from_start_address(PhysAddr::new(phys.0))
            .map_err(|_| MapError::Misaligned(phys.0))?;
        // Intermediate tables allow everything; the leaf decides.
        let parent =
            PageTableFlags::PRESENT | PageTableFlags::WRITABLE | PageTableFlags::USER_ACCESSIBLE;
        // SAFETY: the caller of the portable layer owns both the page and the
        // frame; mapping them cannot alias memory in use.
        let flush = unsafe {
            self.table.map_to_with_table_flags(
                page,
                frame,
                table_flags(flags),
                parent,
                &mut Frames(frames),
            )
        }
        .map_err(|e| map_error(e, virt))?;
        flush.flush();
        Ok(())
    }
}

impl PageMapper for KernelMapper {
    fn map(
        &mut self,
        virt: mm::VirtAddr,
        phys: mm::PhysAddr,
        size: PageSize,
        flags: PageFlags,
        frames: &mut dyn FrameSource,
    ) -> Result<(), MapError> {
        match size {
            PageSize::Size4K => self.map_sized::<Size4KiB>(virt, phys, flags, frames),
            PageSize::Size2M => self.map_sized::<Size2MiB>(virt, phys, flags, frames),
        }
    }

    fn unmap(&mut self, virt: mm::VirtAddr) -> Result<(mm::PhysAddr, PageSize), MapError> {
        let addr = VirtAddr::try_new(virt.0).map_err(|_| MapError::NotMapped(virt))?;
        match self.table.unmap(Page::<Size4KiB>::containing_address(addr)) {
            Ok((frame, flush)) => {
                flush.flush();
                return Ok((
                    mm::PhysAddr(frame.start_address().as_u64()),
                    PageSize::Size4K,
                ));
            }
            Err(UnmapError::ParentEntryHugePage) => {}
            Err(_) => return Err(MapError::NotMapped(virt)),
        }
        let (frame, flush) = self
            .table
            .unmap(Page::<Size2MiB>::containing_address(addr))
            .map_err(|_| MapError::NotMapped(virt))?;
        flush.flush();
        Ok((
            mm::PhysAddr(frame.start_address().as_u64()),
            PageSize::Size2M,
        ))
    }

    fn translate(&self, virt: mm::VirtAddr) -> Option<Translation> {
        let addr = VirtAddr::try_new(virt.0).ok()?;
        match self.table.translate(addr) {
            TranslateResult::Mapped {
                frame,
                offset,
                flags,
            } => {
                let (base, size) = match frame {
                    MappedFrame::Size4KiB(f) => (f.start_address().as_u64(), PageSize::Size4K),
                    MappedFrame::Size2MiB(f) => (f.start_address().as_u64(), PageSize::Size2M),
                    MappedFrame::Size1GiB(_) => return None,
                };
                Some(Translation {
                    phys: mm::PhysAddr(base + offset),
                    size,
                    flags: page_flags(flags),
                })
            }
            _ => None,
        }
    }
}

/// Takes over the identity-mapped page tables the loader built (entry
/// contract). They are adopted rather than rebuilt: on a software-virtualised
/// CPU every guest instruction is expensive, and rewriting thousands of
/// entries would dominate boot time.
///
/// # Safety
/// The active page tables must be the loader's, identity-mapped.
pub unsafe fn adopt_boot_tables() -> KernelMapper {
    let (root, _) = Cr3::read();
    let pml4 = root.start_address().as_u64() as *mut PageTable;
    // SAFETY: CR3 holds the loader's PML4, identity-mapped (caller's contract).
    let table = unsafe { OffsetPageTable::new(&mut *pml4, VirtAddr::new(0)) };
    KernelMapper { table }
}
