//! The kernel's side of `virtio_drivers::Hal`: DMA memory from the heap and
//! address translation.
//!
//! Heap memory is identity-mapped RAM, so its virtual address is the
//! physical address a device uses. Task stacks live in a virtual window
//! (not physically contiguous), so a buffer on a stack is shared through a
//! bounce buffer on the heap, copied back on `unshare` when the device
//! wrote into it.

use alloc::alloc::{Layout, alloc_zeroed, dealloc};
use core::ptr::NonNull;

use virtio_drivers::{BufferDirection, Hal, PAGE_SIZE, PhysAddr};

/// The kernel's virtio HAL.
pub(crate) struct KernelHal;

fn page_layout(pages: usize) -> Option<Layout> {
    Layout::from_size_align(pages.checked_mul(PAGE_SIZE)?, PAGE_SIZE).ok()
}

// SAFETY: `dma_alloc` returns zeroed, page-aligned heap memory owned by the
// caller until `dma_dealloc`; physical == virtual for the heap and for the
// identity-mapped MMIO space; `share` hands out either the buffer itself
// (identity-mapped) or a private bounce copy.
unsafe impl Hal for KernelHal {
    fn dma_alloc(pages: usize, _direction: BufferDirection) -> (PhysAddr, NonNull<u8>) {
        let Some(layout) = page_layout(pages) else {
            return (0, NonNull::dangling());
        };
        // SAFETY: `layout` has a non-zero size (pages >= 1 for every queue).
        let ptr = unsafe { alloc_zeroed(layout) };
        match NonNull::new(ptr) {
            Some(p) => (p.as_ptr() as PhysAddr, p),
            None => (0, NonNull::dangling()),
        }
    }

    unsafe fn dma_dealloc(_paddr: PhysAddr, vaddr: NonNull<u8>, pages: usize) -> i32 {
        let Some(layout) = page_layout(pages) else {
            return -1;
        };
        // SAFETY: the caller passes back what `dma_alloc` returned.
        unsafe { dealloc(vaddr.as_ptr(), layout) };
        0
    }

    unsafe fn mmio_phys_to_virt(paddr: PhysAddr, _size: usize) -> NonNull<u8> {
        // The loader identity-maps [4 KiB, 4 GiB), where MMIO windows lie.
        NonNull::new(paddr as *mut u8).unwrap_or(NonNull::dangling())
    }

    unsafe fn share(buffer: NonNull<[u8]>, direction: BufferDirection) -> PhysAddr {
        let addr = buffer.cast::<u8>().as_ptr() as u64;
        if !crate::mem::in_stack_window(addr) {
            return addr;
        }
        let len = buffer.len();
        let Ok(layout) = Layout::from_size_align(len, 8) else {
            return 0;
        };
        // SAFETY: `len` is non-zero (virtio-drivers never shares empty
        // buffers).
        let bounce = unsafe { alloc_zeroed(layout) };
        if bounce.is_null() {
            return 0;
        }
        if direction != BufferDirection::DeviceToDriver {
            // SAFETY: both ranges are `len` bytes, valid and disjoint (heap
            // vs stack window); the caller keeps `buffer` unaliased.
            unsafe { core::ptr::copy_nonoverlapping(addr as *const u8, bounce, len) };
        }
        bounce as PhysAddr
    }

    unsafe fn unshare(paddr: PhysAddr, buffer: NonNull<[u8]>, direction: BufferDirection) {
        let addr = buffer.cast::<u8>().as_ptr() as u64;
        if !crate::mem::in_stack_window(addr) || paddr == 0 {
            return;
        }
        let len = buffer.len();
        if direction != BufferDirection::DriverToDevice {
            // SAFETY: `paddr` is the bounce buffer `share` made for this
            // `len`-byte buffer; the ranges are disjoint.
            unsafe { core::ptr::copy_nonoverlapping(paddr as *const u8, addr as *mut u8, len) };
        }
        if let Ok(layout) = Layout::from_size_align(len, 8) {
            // SAFETY: allocated in `share` with this layout.
            unsafe { dealloc(paddr as *mut u8, layout) };
        }
    }
}
