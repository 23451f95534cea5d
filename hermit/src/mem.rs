//! Physical memory, page tables and the kernel heap.
//!
//! The frame allocator (`mm`) is built from the boot memory map; the kernel
//! adopts the loader's identity-mapped page tables (null page unmapped); the
//! heap is `talc`, which takes frames from the frame allocator whenever it
//! runs out, so a small application touches little memory.

use core::alloc::Layout;
use core::ptr::NonNull;

use arch_x86_64::irq::without as without_interrupts;
use hermit_interface::{BootInfo, MemoryRegion};
use mm::{FrameAllocator, FrameError, PhysAddr};
use spin::{Mutex, Once};
use talc::base::Talc;
use talc::base::binning::Binning;
use talc::source::Source;

const PAGE: u64 = 4096;
/// The heap grows by at least this much at a time.
const HEAP_GROWTH: usize = 256 * 1024;

/// 32 free ranges: boot maps have a handful, and every range costs copies
/// when the array shifts.
static FRAMES: Mutex<FrameAllocator<32>> = Mutex::new(FrameAllocator::new());
static MAPPER: Once<Mutex<arch_x86_64::paging::KernelMapper>> = Once::new();
/// Virtual window for guarded task stacks: 64 GiB at 64 TiB, far above any
/// identity-mapped RAM, so a stack overflow hits an unmapped page instead
/// of the memory below the stack.
const STACK_WINDOW_START: u64 = 0x4000_0000_0000;
const STACK_WINDOW_SIZE: u64 = 64 << 30;
/// Free ranges the stack window can track; stacks freed in any order
/// fragment it, and the scheduler keeps a cache of freed stacks anyway.
static STACK_SPACE: Mutex<Option<mm::KernelSpace<256>>> = Mutex::new(None);
/// The boot memory map (boot info is never reused, so it is not copied).
static RAM: Once<&'static [MemoryRegion]> = Once::new();

pub(crate) fn init(info: &'static BootInfo) -> Result<(), FrameError> {
    let regions = info.memory_regions();
    RAM.call_once(|| regions);
    let mut frames = FRAMES.lock();
    frames.load_memory_map(regions)?;
    // SAFETY: the loader's tables are active and identity-mapped (entry contract).
    let mapper = unsafe { arch_x86_64::paging::adopt_boot_tables() };
    if mm::PageMapper::translate(&mapper, mm::VirtAddr(0)).is_some() {
        log::warn!("the loader mapped the null page; null-pointer accesses will not fault");
    }
    MAPPER.call_once(|| Mutex::new(mapper));
    log::info!(
        "memory: {} KiB free of {} KiB usable, RAM ends at {:#x}",
        frames.free_bytes() / 1024,
        frames.total_bytes() / 1024,
        regions.iter().map(MemoryRegion::end).max().unwrap_or(0)
    );
    Ok(())
}

/// Whether `[addr, addr + len)` is RAM the kernel maps (for diagnostics that
/// read memory after a fault).
pub(crate) fn is_ram(addr: u64, len: u64) -> bool {
    let Some(end) = addr.checked_add(len) else {
        return false;
    };
    addr >= PAGE
        && RAM
            .get()
            .is_some_and(|map| map.iter().any(|r| r.start <= addr && end <= r.end()))
}

/// Whether every byte of `[addr, addr + len)` is mapped to itself and
/// writable (e.g. device memory inside the boot identity map). Each step
/// skips the whole page it found, so a 2 MiB-mapped range costs one page
/// walk per 2 MiB.
pub(crate) fn is_identity_mapped(addr: u64, len: u64) -> bool {
    let (Some(end), Some(mapper)) = (addr.checked_add(len), MAPPER.get()) else {
        return false;
    };
    // Interrupts off while the page-table lock is held, as everywhere.
    without_interrupts(|| {
        let mapper = mapper.lock();
        let mut at = addr;
        while at < end {
            let Some(t) = mm::PageMapper::translate(&*mapper, mm::VirtAddr(at)) else {
                return false;
            };
            if t.phys.0 != at || !t.flags.writable {
                return false;
            }
            let page = t.size.bytes();
            at = (at & !(page - 1)).saturating_add(page);
        }
        true
    })
}

/// Takes the lowest free page below `limit` out of the frame allocator for
/// good (e.g. for the AP trampoline, which must lie below 1 MiB).
#[cfg(feature = "smp")]
pub(crate) fn reserve_low_page(limit: u64) -> Option<u64> {
    let mut frames = FRAMES.lock();
    let page = frames
        .free_ranges()
        .map(|r| r.start.0)
        .find(|&start| start.checked_add(PAGE).is_some_and(|end| end <= limit))?;
    frames.reserve(PhysAddr(page), PAGE).ok()?;
    Some(page)
}

/// A task stack in the stack window with an unmapped guard page below it.
pub(crate) struct GuardedStack(mm::GuardedRegion);

impl GuardedStack {
    /// The address just above the stack (16-byte aligned).
    pub(crate) fn top(&self) -> u64 {
        self.0.end().0
    }

    /// The stack's size in bytes.
    pub(crate) fn size(&self) -> u64 {
        self.0.size()
    }
}

/// Maps a stack of `bytes` (rounded up to whole pages) with a guard page.
/// Takes the window, page-table and frame locks in that order, with
/// interrupts off.
pub(crate) fn alloc_guarded_stack(bytes: usize) -> Option<GuardedStack> {
    without_interrupts(|| map_stack(bytes))
}

fn map_stack(bytes: usize) -> Option<GuardedStack> {
    let pages = bytes.div_ceil(PAGE as usize).max(1);
    let mut space = STACK_SPACE.lock();
    if space.is_none() {
        *space = mm::KernelSpace::new(mm::VirtAddr(STACK_WINDOW_START), STACK_WINDOW_SIZE).ok();
    }
    let space = space.as_mut()?;
    let mut mapper = MAPPER.get()?.lock();
    let mut frames = FRAMES.lock();
    match space.map_guarded(&mut *mapper, &mut *frames, pages, mm::PageFlags::DATA) {
        Ok(region) => Some(GuardedStack(region)),
        Err(e) => {
            log::warn!("cannot map a {bytes}-byte stack: {e}");
            None
        }
    }
}

/// Unmaps a stack and returns its frames.
pub(crate) fn free_guarded_stack(stack: GuardedStack) {
    without_interrupts(|| unmap_stack(stack));
}

fn unmap_stack(stack: GuardedStack) {
    let mut space = STACK_SPACE.lock();
    let (Some(space), Some(mapper)) = (space.as_mut(), MAPPER.get()) else {
        return;
    };
    let mut mapper = mapper.lock();
    let mut frames = FRAMES.lock();
    if let Err(e) = space.unmap_guarded(&mut *mapper, &mut *frames, stack.0) {
        log::warn!("freeing a task stack: {e}");
    }
}

/// Whether `addr` is the guard page of a task stack (for fault reports).
pub(crate) fn in_stack_window(addr: u64) -> bool {
    (STACK_WINDOW_START..STACK_WINDOW_START + STACK_WINDOW_SIZE).contains(&addr)
}

/// `count` contiguous frames aligned to `align`, or `None` when memory is exhausted.
pub(crate) fn allocate_frames(count: usize, align: u64) -> Option<u64> {
    FRAMES
        .lock()
        .allocate(count, align)
        .ok()
        .map(|PhysAddr(a)| a)
}

/// The heap's memory source: more frames from the frame allocator. A new
/// chunk that directly follows the heap's end extends it; otherwise it
/// becomes a heap of its own.
#[derive(Debug)]
struct FrameHeap {
    /// The heap's end as an address (0: no heap yet); an address rather than
    /// a pointer keeps the source `Send`.
    end: usize,
}

// SAFETY: `acquire` only uses the `talc` it is handed and the frame
// allocator, whose lock is distinct from the heap's; it never allocates.
unsafe impl Source for FrameHeap {
    fn acquire<B: Binning>(talc: &mut Talc<Self, B>, layout: Layout) -> Result<(), ()> {
        let overhead = talc::min_first_heap_size::<B>() + layout.align();
        let bytes = layout
            .size()
            .checked_add(overhead)
            .ok_or(())?
            .max(HEAP_GROWTH);
        let pages = bytes.div_ceil(PAGE as usize);
        let base = allocate_frames(pages, PAGE).ok_or(())?;
        let chunk_end = base + (pages as u64) * PAGE;
        let new_end = match NonNull::new(talc.source.end as *mut u8) {
            // SAFETY: the frames directly after the heap's end are now the
            // heap's alone; the end address came from talc.
            Some(end) if end.as_ptr() as u64 == base => unsafe {
                talc.extend(end, chunk_end as *mut u8)
            },
            // SAFETY: the frames are identity-mapped RAM that nothing else
            // uses until the heap releases them (it never does).
            _ => unsafe { talc.claim(base as *mut u8, pages * PAGE as usize) }.ok_or(())?,
        };
        talc.source.end = new_end.as_ptr() as usize;
        Ok(())
    }
}

static TALC: talc::TalcLock<spinning_top::RawSpinlock, FrameHeap> =
    talc::TalcLock::new(FrameHeap { end: 0 });

/// The kernel heap: `talc`, plus a count of the bytes handed out. Interrupts
/// are off while talc's lock is held: the timer may switch tasks, and a
/// task switched away while holding the heap lock would make every other
/// allocation on its core spin, including those made with interrupts off
/// (freeing an exited task's stack), which would never end.
struct Heap {
    in_use: core::sync::atomic::AtomicUsize,
}

// With Rust std (target_os = "hermit"), std's `System` allocator is the
// global one and reaches this heap through `sys_malloc` & co.
#[cfg_attr(target_os = "none", global_allocator)]
static HEAP: Heap = Heap {
    in_use: core::sync::atomic::AtomicUsize::new(0),
};

// SAFETY: every call is forwarded unchanged to talc's allocator, which is a
// correct `GlobalAlloc`; the counter has no effect on the memory returned.
unsafe impl core::alloc::GlobalAlloc for Heap {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded with the caller's guarantees.
        let p = without_interrupts(|| unsafe { TALC.alloc(layout) });
        if !p.is_null() {
            self.in_use
                .fetch_add(layout.size(), core::sync::atomic::Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        self.in_use
            .fetch_sub(layout.size(), core::sync::atomic::Ordering::Relaxed);
        // SAFETY: forwarded with the caller's guarantees.
        without_interrupts(|| unsafe { TALC.dealloc(ptr, layout) });
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded with the caller's guarantees.
        let p = without_interrupts(|| unsafe { TALC.realloc(ptr, layout, new_size) });
        if !p.is_null() {
            self.in_use
                .fetch_sub(layout.size(), core::sync::atomic::Ordering::Relaxed);
            self.in_use
                .fetch_add(new_size, core::sync::atomic::Ordering::Relaxed);
        }
        p
    }
}

/// Allocates from the kernel heap (whatever the global allocator is).
///
/// # Safety
/// As [`core::alloc::GlobalAlloc::alloc`]: `layout` has a non-zero size.
pub(crate) unsafe fn kernel_alloc(layout: Layout) -> *mut u8 {
    // SAFETY: forwarded with the caller's guarantees.
    unsafe { core::alloc::GlobalAlloc::alloc(&HEAP, layout) }
}

/// Allocates zeroed memory from the kernel heap.
///
/// # Safety
/// As [`core::alloc::GlobalAlloc::alloc_zeroed`].
pub(crate) unsafe fn kernel_alloc_zeroed(layout: Layout) -> *mut u8 {
    // SAFETY: forwarded with the caller's guarantees.
    unsafe { core::alloc::GlobalAlloc::alloc_zeroed(&HEAP, layout) }
}

/// Frees memory of the kernel heap.
///
/// # Safety
/// As [`core::alloc::GlobalAlloc::dealloc`]: `ptr` came from this heap with
/// `layout`.
pub(crate) unsafe fn kernel_dealloc(ptr: *mut u8, layout: Layout) {
    // SAFETY: forwarded with the caller's guarantees.
    unsafe { core::alloc::GlobalAlloc::dealloc(&HEAP, ptr, layout) }
}

/// Resizes memory of the kernel heap.
///
/// # Safety
/// As [`core::alloc::GlobalAlloc::realloc`].
pub(crate) unsafe fn kernel_realloc(ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
    // SAFETY: forwarded with the caller's guarantees.
    unsafe { core::alloc::GlobalAlloc::realloc(&HEAP, ptr, layout, new_size) }
}

/// Bytes of heap memory currently allocated (requested sizes).
pub fn heap_in_use() -> usize {
    HEAP.in_use.load(core::sync::atomic::Ordering::Relaxed)
}
