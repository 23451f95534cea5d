//! Portable memory management for the hermit kernel: a physical
//! [`FrameAllocator`] built from the boot memory map, the [`PageMapper`] trait
//! through which the kernel reaches the hardware page table, and
//! [`KernelSpace`], which carves the kernel's dynamic virtual window into
//! guarded regions (stacks) and MMIO windows and maps them through that trait.
//!
//! This crate is bookkeeping only. It never reads or writes the memory it
//! manages, contains no `unsafe` code and needs no heap, so the kernel can use
//! it before its heap exists, and its tests run on the host against an
//! emulated page table. It is not a page-table walker (the real
//! [`PageMapper`] lives in `arch-x86_64`) and not a heap allocator (the
//! kernel's heap is `talc`; [`BlockCache`] only keeps small blocks of it
//! per CPU, as addresses).
//!
//! Missing: TLB shootdown on other CPUs (a [`PageMapper`] only has to flush
//! the local TLB), 1 GiB pages, user address spaces, freeing page-table
//! frames that became empty after unmapping, and NUMA awareness.
//!
//! ```
//! use hermit_interface::{MemoryKind, MemoryRegion};
//! use mm::{FrameAllocator, PhysAddr, HUGE_PAGE_SIZE, PAGE_SIZE};
//!
//! let map = [MemoryRegion { start: 0x10_0000, len: 0x80_0000, kind: MemoryKind::Usable as u32, _reserved: 0 }];
//! let mut frames = FrameAllocator::<64>::from_memory_map(&map)?;
//! frames.reserve(PhysAddr(0x10_0000), 0x2_0000)?; // e.g. the kernel image
//! let huge = frames.allocate(512, HUGE_PAGE_SIZE)?;
//! assert_eq!(huge.0 % HUGE_PAGE_SIZE, 0);
//! frames.deallocate(huge, 512)?;
//! assert_eq!(frames.free_bytes(), 0x80_0000 - 0x2_0000);
//! # let _ = PAGE_SIZE;
//! # Ok::<(), mm::FrameError>(())
//! ```
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

mod addr;
pub mod cache;
#[cfg(test)]
mod fake;
mod frame;
mod kspace;
mod paging;
mod range_set;

pub use addr::{PhysAddr, VirtAddr};
pub use cache::{BlockCache, BlockSource};
pub use frame::{FrameAllocator, FrameError, FrameSource};
pub use kspace::{GuardedRegion, KernelSpace, MmioRegion};
pub use paging::{MapError, PageFlags, PageMapper, PageSize, Translation};

/// Size of a base page and of a physical frame: 4 KiB.
pub const PAGE_SIZE: u64 = 4096;
/// Size of a large page: 2 MiB.
pub const HUGE_PAGE_SIZE: u64 = 2 * 1024 * 1024;

/// Rounds `x` up to a multiple of `align` (a power of two); `None` on overflow.
pub(crate) const fn align_up(x: u64, align: u64) -> Option<u64> {
    match x.checked_add(align - 1) {
        Some(v) => Some(v & !(align - 1)),
        None => None,
    }
}

/// Rounds `x` down to a multiple of `align` (a power of two).
pub(crate) const fn align_down(x: u64, align: u64) -> u64 {
    x & !(align - 1)
}
