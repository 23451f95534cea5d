//! The kernel's page tables, built with the `x86_64` crate.
//!
//! Physical memory is identity-mapped (virtual == physical), as the loader
//! left it, but the kernel's own tables leave the first 4 KiB page unmapped
//! so that null-pointer accesses fault with a diagnostic instead of reading
//! low memory.

use x86_64::structures::paging::mapper::MapToError;
use x86_64::structures::paging::{
    FrameAllocator, Mapper, OffsetPageTable, Page, PageTable, PageTableFlags, PhysFrame, Size2MiB,
    Size4KiB,
};
use x86_64::{PhysAddr, VirtAddr};

const TWO_MIB: u64 = 2 << 20;

/// Hands out zeroed 4 KiB frames for page tables.
pub trait TableFrames {
    /// A fresh 4 KiB frame (its physical address), or `None` when memory is exhausted.
    fn table_frame(&mut self) -> Option<u64>;
}

struct Adapter<'a, T: TableFrames>(&'a mut T);

// SAFETY: `table_frame` returns frames nobody else uses (the implementor's
// contract) and they are zeroed before `x86_64` links them into a table.
unsafe impl<T: TableFrames> FrameAllocator<Size4KiB> for Adapter<'_, T> {
    fn allocate_frame(&mut self) -> Option<PhysFrame<Size4KiB>> {
        let addr = self.0.table_frame()?;
        // SAFETY: the frame is identity-mapped RAM owned by the page tables now.
        unsafe { core::ptr::write_bytes(addr as *mut u8, 0, 4096) };
        PhysFrame::from_start_address(PhysAddr::new(addr)).ok()
    }
}

/// Why the kernel page tables could not be built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PagingError {
    /// No frame for a page table.
    OutOfMemory,
    /// A page was mapped twice (a bug in the caller's ranges).
    AlreadyMapped,
}

impl core::fmt::Display for PagingError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            Self::OutOfMemory => "out of memory for page tables",
            Self::AlreadyMapped => "a page was mapped twice",
        })
    }
}

fn map_error<S: x86_64::structures::paging::PageSize>(e: MapToError<S>) -> PagingError {
    match e {
        MapToError::FrameAllocationFailed => PagingError::OutOfMemory,
        MapToError::ParentEntryHugePage | MapToError::PageAlreadyMapped(_) => {
            PagingError::AlreadyMapped
        }
    }
}

/// Builds identity-mapped kernel page tables covering `[4 KiB, map_end)`
/// (`map_end` rounded up to 2 MiB) and switches to them.
///
/// # Safety
/// The current page tables must identity-map all RAM (the entry contract),
/// `map_end` must cover all memory the kernel uses (image, stacks, boot info,
/// heap, MMIO below 4 GiB), and `frames` must return unused RAM frames.
pub unsafe fn switch_to_kernel_tables(
    map_end: u64,
    frames: &mut impl TableFrames,
) -> Result<(), PagingError> {
    let mut alloc = Adapter(frames);
    let pml4_frame = alloc.allocate_frame().ok_or(PagingError::OutOfMemory)?;
    let pml4 = pml4_frame.start_address().as_u64() as *mut PageTable;
    // SAFETY: the frame was just allocated and zeroed, is identity-mapped and
    // is referenced by nothing else.
    let mut mapper = unsafe { OffsetPageTable::new(&mut *pml4, VirtAddr::new(0)) };
    let rw = PageTableFlags::PRESENT | PageTableFlags::WRITABLE;
    for addr in (4096..TWO_MIB).step_by(4096) {
        let page = Page::<Size4KiB>::containing_address(VirtAddr::new(addr));
        let frame = PhysFrame::containing_address(PhysAddr::new(addr));
        // SAFETY: identity mapping of RAM that the old tables mapped the same
        // way; nothing changes meaning. The flush is skipped: CR3 is reloaded below.
        unsafe { mapper.map_to(page, frame, rw, &mut alloc) }
            .map_err(map_error)?
            .ignore();
    }
    let end = map_end.div_ceil(TWO_MIB) * TWO_MIB;
    for addr in (TWO_MIB..end).step_by(TWO_MIB as usize) {
        let page = Page::<Size2MiB>::containing_address(VirtAddr::new(addr));
        let frame = PhysFrame::containing_address(PhysAddr::new(addr));
        // SAFETY: as above.
        unsafe { mapper.map_to_with_table_flags(page, frame, rw, rw, &mut alloc) }
            .map_err(map_error)?
            .ignore();
    }
    let (_, flags) = x86_64::registers::control::Cr3::read();
    // SAFETY: the new tables map everything the kernel uses at the same
    // addresses as before (caller's contract), so execution continues.
    unsafe { x86_64::registers::control::Cr3::write(pml4_frame, flags) };
    Ok(())
}
