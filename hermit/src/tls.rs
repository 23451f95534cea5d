//! Thread-local storage: one block per thread, built from the image's TLS
//! template (its `PT_TLS` segment, which the loader reports in the boot
//! info), in the x86_64 layout ("variant II"):
//!
//! ```text
//!   block start                          thread pointer (fs base)
//!   | .tdata copy | .tbss zeroed | pad   | self pointer (8 bytes) |
//! ```
//!
//! The thread pointer is aligned to the template's alignment, the data lies
//! just below it, and the word at the thread pointer holds the thread
//! pointer itself (`mov rax, fs:[0]` is how compiled code finds it). An
//! image without a TLS segment (our `no_std` apps) gets no blocks at all.

use core::alloc::Layout;
use core::ptr::NonNull;

use hermit_interface::{BootInfo, TlsTemplate};
use spin::Once;

/// Largest TLS segment accepted (a sanity bound on what the loader reports).
const MAX_TLS_BYTES: u64 = 1 << 30;

/// The checked template: where `.tdata` is, and the block geometry.
#[derive(Clone, Copy, Debug)]
struct Template {
    /// Address of the initialised part in the loaded image.
    start: u64,
    /// Bytes of `.tdata`.
    file_size: usize,
    /// Bytes of `.tdata` + `.tbss`.
    mem_size: usize,
    /// Offset of the data below the thread pointer.
    tp_offset: usize,
    /// Alignment of the block and of the thread pointer.
    align: usize,
}

static TEMPLATE: Once<Option<Template>> = Once::new();
/// The boot thread's thread pointer (0: none).
static BOOT_TP: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(0);

/// The thread pointer of the boot thread (0 if the image has no TLS).
pub(crate) fn boot_thread_pointer() -> u64 {
    BOOT_TP.load(core::sync::atomic::Ordering::Relaxed)
}

/// Why the boot info's TLS template was rejected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TemplateError {
    /// The alignment is not a power of two.
    BadAlignment(u64),
    /// `.tdata` is larger than the whole segment, or the segment is huge.
    BadSize,
}

impl core::fmt::Display for TemplateError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::BadAlignment(a) => write!(f, "TLS alignment {a} is not a power of two"),
            Self::BadSize => f.write_str("TLS segment sizes are inconsistent or too large"),
        }
    }
}

fn check(t: &TlsTemplate) -> Result<Option<Template>, TemplateError> {
    if t.mem_size == 0 {
        return Ok(None);
    }
    let align = t.align.max(1);
    if !align.is_power_of_two() || align > 4096 {
        return Err(TemplateError::BadAlignment(t.align));
    }
    if t.file_size > t.mem_size || t.mem_size > MAX_TLS_BYTES {
        return Err(TemplateError::BadSize);
    }
    // The linker places the data `mem_size` bytes below the thread pointer
    // plus whatever padding makes the segment's start address congruent to
    // its alignment (lld's x86_64 `getTlsTpOffset`).
    let pad = (0u64.wrapping_sub(t.start).wrapping_sub(t.mem_size)) & (align - 1);
    Ok(Some(Template {
        start: t.start,
        file_size: t.file_size as usize,
        mem_size: t.mem_size as usize,
        tp_offset: (t.mem_size + pad) as usize,
        // The self pointer needs 8-byte alignment.
        align: align.max(8) as usize,
    }))
}

/// Records the image's TLS template. Boot-time, before any thread exists.
pub(crate) fn init(info: &BootInfo) -> Result<(), TemplateError> {
    let template = check(&info.tls)?;
    TEMPLATE.call_once(|| template);
    Ok(())
}

/// A thread's TLS block; freed when dropped.
#[derive(Debug)]
pub(crate) struct TlsBlock {
    base: NonNull<u8>,
    layout: Layout,
    tp: u64,
}

// SAFETY: the block is plain heap memory owned by one thread; the handle
// only frees it.
unsafe impl Send for TlsBlock {}
// SAFETY: as above; shared references give no access to the memory.
unsafe impl Sync for TlsBlock {}

/// The kernel heap had no room for a TLS block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct OutOfMemory;

impl TlsBlock {
    /// A fresh block for a new thread, or `None` when the image has no TLS
    /// segment.
    pub(crate) fn new() -> Result<Option<Self>, OutOfMemory> {
        let Some(t) = TEMPLATE.get().copied().flatten() else {
            return Ok(None);
        };
        let size = t.tp_offset.checked_add(8).ok_or(OutOfMemory)?;
        let layout = Layout::from_size_align(size, t.align).map_err(|_| OutOfMemory)?;
        // SAFETY: the layout has a non-zero size.
        let base = NonNull::new(unsafe { crate::mem::kernel_alloc(layout) }).ok_or(OutOfMemory)?;
        let tp = base.as_ptr() as u64 + t.tp_offset as u64;
        let data = tp - t.tp_offset as u64;
        // SAFETY: `[base, base + size)` is the fresh allocation; `data` lies
        // at its start (`tp_offset` below the thread pointer) and the data
        // (`mem_size <= tp_offset` bytes) and the self pointer fit in it. The
        // template's `.tdata` is `file_size` readable bytes of the loaded
        // image (boot info), which does not overlap the heap.
        unsafe {
            core::ptr::write_bytes(base.as_ptr(), 0, size);
            core::ptr::copy_nonoverlapping(t.start as *const u8, data as *mut u8, t.file_size);
            (tp as *mut u64).write(tp);
        }
        debug_assert!(t.mem_size <= t.tp_offset);
        Ok(Some(Self { base, layout, tp }))
    }

    /// The thread pointer to load into the `fs` base.
    pub(crate) fn thread_pointer(&self) -> u64 {
        self.tp
    }
}

impl Drop for TlsBlock {
    fn drop(&mut self) {
        // SAFETY: `base` was allocated by `kernel_alloc` with `layout`.
        unsafe { crate::mem::kernel_dealloc(self.base.as_ptr(), self.layout) };
    }
}

/// Gives the boot thread (the one running the application's `main`) its
/// TLS block and loads it; returns the thread pointer (0: no TLS). The
/// block lives as long as the application. Boot-time, CPL 0.
pub(crate) fn init_boot_thread() -> u64 {
    match TlsBlock::new() {
        Ok(Some(block)) => {
            let tp = block.thread_pointer();
            core::mem::forget(block);
            BOOT_TP.store(tp, core::sync::atomic::Ordering::Relaxed);
            // SAFETY: `tp` points just past a live (leaked) TLS block whose
            // self pointer was written by `TlsBlock::new`.
            unsafe { arch_x86_64::cpu::set_fs_base(tp) };
            tp
        }
        Ok(None) => 0,
        Err(OutOfMemory) => crate::boot::fail(format_args!("no memory for the main thread's TLS")),
    }
}
