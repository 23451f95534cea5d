//! Heap memory for std's `System` allocator: `sys_malloc`/`sys_alloc`,
//! `sys_alloc_zeroed`, `sys_realloc`, `sys_free`/`sys_dealloc`, and
//! `sys_getpagesize`. All take the size and alignment of the block (Rust's
//! `Layout`), so the heap need not remember them.
//!
//! A size of 0 or an alignment that is not a power of two gets a null
//! pointer (and `errno` `EINVAL`), as does an exhausted heap (`ENOMEM`).

use core::alloc::Layout;

use hermit_interface::errno::Errno;

/// The layout of a `size`-byte block aligned to `align`, if it is one the
/// heap can give out.
fn layout(size: usize, align: usize) -> Option<Layout> {
    if size == 0 {
        return None;
    }
    Layout::from_size_align(size, align).ok()
}

fn null_with(e: Errno) -> *mut u8 {
    crate::sched::set_errno(e as i32);
    core::ptr::null_mut()
}

fn checked(p: *mut u8) -> *mut u8 {
    if p.is_null() {
        null_with(Errno::ENOMEM)
    } else {
        p
    }
}

/// Allocates `size` bytes aligned to `align`; null on failure.
#[unsafe(no_mangle)]
pub extern "C" fn sys_malloc(size: usize, align: usize) -> *mut u8 {
    match layout(size, align) {
        // SAFETY: the layout has a non-zero size.
        Some(l) => checked(unsafe { crate::mem::kernel_alloc(l) }),
        None => null_with(Errno::EINVAL),
    }
}

/// Same as [`sys_malloc`].
#[unsafe(no_mangle)]
pub extern "C" fn sys_alloc(size: usize, align: usize) -> *mut u8 {
    sys_malloc(size, align)
}

/// Allocates `size` zeroed bytes aligned to `align`; null on failure.
#[unsafe(no_mangle)]
pub extern "C" fn sys_alloc_zeroed(size: usize, align: usize) -> *mut u8 {
    match layout(size, align) {
        // SAFETY: the layout has a non-zero size.
        Some(l) => checked(unsafe { crate::mem::kernel_alloc_zeroed(l) }),
        None => null_with(Errno::EINVAL),
    }
}

/// Resizes the block at `ptr` (`size` bytes aligned to `align`) to
/// `new_size` bytes, moving it if needed; null on failure (the old block
/// is then untouched). A null `ptr` allocates.
///
/// # Safety
/// `ptr` is null or a live block from these functions with exactly this
/// `size` and `align`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sys_realloc(
    ptr: *mut u8,
    size: usize,
    align: usize,
    new_size: usize,
) -> *mut u8 {
    if ptr.is_null() {
        return sys_malloc(new_size, align);
    }
    match (layout(size, align), layout(new_size, align)) {
        // SAFETY: the caller vouches for `ptr` and its layout; the new size
        // is non-zero and forms a valid layout with the same alignment.
        (Some(l), Some(_)) => checked(unsafe { crate::mem::kernel_realloc(ptr, l, new_size) }),
        _ => null_with(Errno::EINVAL),
    }
}

/// Frees the block at `ptr` (`size` bytes aligned to `align`). A null
/// pointer or an impossible layout is ignored.
///
/// # Safety
/// `ptr` is null or a live block from these functions with exactly this
/// `size` and `align`; it is not used afterwards.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sys_free(ptr: *mut u8, size: usize, align: usize) {
    match layout(size, align) {
        // SAFETY: the caller vouches for `ptr` and its layout.
        Some(l) if !ptr.is_null() => unsafe { crate::mem::kernel_dealloc(ptr, l) },
        _ => log::warn!("sys_free({ptr:p}, {size}, {align}): not a heap block, ignored"),
    }
}

/// Same as [`sys_free`].
///
/// # Safety
/// As [`sys_free`].
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sys_dealloc(ptr: *mut u8, size: usize, align: usize) {
    // SAFETY: the same contract.
    unsafe { sys_free(ptr, size, align) }
}

/// The page size: 4096.
#[unsafe(no_mangle)]
pub extern "C" fn sys_getpagesize() -> i32 {
    4096
}
