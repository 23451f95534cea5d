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

/// Free blocks each CPU keeps per size class (see [`mm::cache`]).
const CACHE_BLOCKS: usize = 32;
/// CPUs with a heap cache of their own (one without `smp`).
#[cfg(feature = "smp")]
const HEAP_CPUS: usize = crate::sched::MAX_CPUS;
#[cfg(not(feature = "smp"))]
const HEAP_CPUS: usize = 1;

/// One CPU's cache of small blocks and its share of the bytes in use, on a
/// cache line of its own, so that CPUs allocating at once neither take the
/// heap's lock nor pass a counter's line back and forth.
#[repr(align(64))]
struct CpuHeap {
    cache: core::cell::UnsafeCell<mm::BlockCache<CACHE_BLOCKS>>,
    in_use: core::sync::atomic::AtomicIsize,
}

// SAFETY: `cache` is only used through `CpuHeap::with_cache`, by the CPU
// the entry belongs to, with interrupts off, so never by two contexts at
// once; `in_use` is atomic.
unsafe impl Sync for CpuHeap {}

static CPU_HEAPS: [CpuHeap; HEAP_CPUS] = [const {
    CpuHeap {
        cache: core::cell::UnsafeCell::new(mm::BlockCache::new()),
        in_use: core::sync::atomic::AtomicIsize::new(0),
    }
}; HEAP_CPUS];

/// This CPU's entry. Interrupts must be off (a task could move to another
/// CPU between reading the CPU index and using the entry).
fn this_cpu_heap() -> &'static CpuHeap {
    #[cfg(feature = "smp")]
    let cpu = arch_x86_64::gdt::this_cpu() as usize;
    #[cfg(not(feature = "smp"))]
    let cpu = 0;
    // A CPU index is below MAX_CPUS (the scheduler parks any other AP);
    // the last entry catches a bug rather than reading out of bounds.
    CPU_HEAPS.get(cpu).unwrap_or(&CPU_HEAPS[HEAP_CPUS - 1])
}

impl CpuHeap {
    /// Runs `f` on this CPU's cache with interrupts off.
    fn with_cache<R>(f: impl FnOnce(&mut mm::BlockCache<CACHE_BLOCKS>) -> R) -> R {
        without_interrupts(|| {
            // SAFETY: see `unsafe impl Sync`: this CPU's entry, interrupts
            // off, and `f` cannot reach this function again (the heap's
            // block source never allocates through it).
            f(unsafe { &mut *this_cpu_heap().cache.get() })
        })
    }
}

/// Blocks of a size class straight from talc, under one hold of its lock.
struct TalcBlocks;

impl TalcBlocks {
    fn layout(class: usize) -> Layout {
        let size = mm::cache::block_size(class);
        // Powers of two from 16 to 4096: always a valid layout.
        Layout::from_size_align(size, size).unwrap_or_else(|_| unreachable!())
    }
}

impl mm::BlockSource for TalcBlocks {
    fn take(&mut self, class: usize, out: &mut [usize]) -> usize {
        let layout = Self::layout(class);
        let mut talc = TALC.lock();
        for (i, slot) in out.iter_mut().enumerate() {
            // SAFETY: `layout` has a nonzero size.
            match unsafe { talc.allocate(layout) } {
                Some(p) => *slot = p.as_ptr() as usize,
                None => return i,
            }
        }
        out.len()
    }

    fn give(&mut self, class: usize, blocks: &[usize]) {
        let layout = Self::layout(class);
        let mut talc = TALC.lock();
        for &b in blocks {
            // SAFETY: the caches only hold blocks `take` got from talc with
            // this class's layout, each given back once.
            unsafe { talc.deallocate(b as *mut u8, layout) };
        }
    }
}

/// The kernel heap: `talc`, with per-CPU caches of small blocks
/// ([`mm::cache`]) in front of it, plus a count of the bytes handed out.
/// Interrupts are off while talc's lock or a CPU's cache is held: the timer
/// may switch tasks, and a task switched away while holding the heap lock
/// would make every other allocation on its core spin, including those made
/// with interrupts off (freeing an exited task's stack), which would never
/// end.
struct Heap;

// With Rust std (target_os = "hermit"), std's `System` allocator is the
// global one and reaches this heap through `sys_malloc` & co.
#[cfg_attr(target_os = "none", global_allocator)]
static HEAP: Heap = Heap;

impl Heap {
    fn count(delta: isize) {
        this_cpu_heap()
            .in_use
            .fetch_add(delta, core::sync::atomic::Ordering::Relaxed);
    }
}

// SAFETY: small requests get a block of their size class, at least as large
// and as aligned as asked (`class_of`), which only that request owns until
// it is freed into a cache with the same class (computed from the same
// layout); everything else is forwarded unchanged to talc's allocator, a
// correct `GlobalAlloc`. The counters have no effect on the memory.
unsafe impl core::alloc::GlobalAlloc for Heap {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = match mm::cache::class_of(layout.size(), layout.align()) {
            Some(class) => without_interrupts(|| {
                Self::count(layout.size() as isize);
                CpuHeap::with_cache(|c| c.take(class, &mut TalcBlocks))
                    .map_or(core::ptr::null_mut(), |b| b as *mut u8)
            }),
            None => without_interrupts(|| {
                Self::count(layout.size() as isize);
                // SAFETY: forwarded with the caller's guarantees.
                unsafe { TALC.alloc(layout) }
            }),
        };
        if p.is_null() {
            without_interrupts(|| Self::count(-(layout.size() as isize)));
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        without_interrupts(|| {
            Self::count(-(layout.size() as isize));
            match mm::cache::class_of(layout.size(), layout.align()) {
                Some(class) => {
                    CpuHeap::with_cache(|c| c.give(class, ptr as usize, &mut TalcBlocks));
                }
                // SAFETY: forwarded with the caller's guarantees.
                None => unsafe { TALC.dealloc(ptr, layout) },
            }
        });
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let old = mm::cache::class_of(layout.size(), layout.align());
        let new = mm::cache::class_of(new_size, layout.align());
        match (old, new) {
            (None, None) => {
                // Both large: talc can often resize in place.
                // SAFETY: forwarded with the caller's guarantees.
                let p = without_interrupts(|| unsafe { TALC.realloc(ptr, layout, new_size) });
                if !p.is_null() {
                    without_interrupts(|| Self::count(new_size as isize - layout.size() as isize));
                }
                p
            }
            // The block already has room (its class's size).
            (Some(a), Some(b)) if a == b => {
                without_interrupts(|| Self::count(new_size as isize - layout.size() as isize));
                ptr
            }
            _ => {
                // SAFETY: `new_size` is nonzero and, rounded up to the
                // alignment, fits `isize` (the caller's guarantees).
                let new_layout =
                    unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
                // SAFETY: as for `alloc`.
                let p = unsafe { self.alloc(new_layout) };
                if !p.is_null() {
                    // SAFETY: both blocks are live and distinct, and each
                    // holds at least the bytes copied.
                    unsafe {
                        core::ptr::copy_nonoverlapping(ptr, p, layout.size().min(new_size));
                        self.dealloc(ptr, layout);
                    }
                }
                p
            }
        }
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
    let total: isize = CPU_HEAPS
        .iter()
        .map(|h| h.in_use.load(core::sync::atomic::Ordering::Relaxed))
        .sum();
    total.max(0) as usize
}
