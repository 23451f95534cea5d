//! `sys_futex_wait` and `sys_futex_wake` on the kernel's futex table, the
//! basis of std's `Mutex`, `Condvar`, `RwLock`, `Once` and thread parking.

use core::sync::atomic::AtomicU32;

use hermit_interface::errno::Errno;
use sched::sync::{Futex as _, WaitResult};

use super::{Timespec, fail, read_arg, timespec_ns};
use crate::sched::KernelFutex;

/// `hermit-abi`'s `FUTEX_RELATIVE_TIMEOUT`: the timeout is a duration, not
/// an absolute `CLOCK_MONOTONIC` time.
const FUTEX_RELATIVE_TIMEOUT: u32 = 1;

/// The futex word at `address`.
///
/// # Safety
/// `address` is null or points to a `u32` that stays live during the call
/// and is only accessed atomically meanwhile.
unsafe fn word<'a>(address: *mut u32) -> Result<&'a AtomicU32, Errno> {
    if address.is_null() || !address.cast::<AtomicU32>().is_aligned() {
        return Err(Errno::EINVAL);
    }
    // SAFETY: non-null and aligned; live and atomically accessed by the
    // caller's promise.
    Ok(unsafe { AtomicU32::from_ptr(address) })
}

/// If `*address == expected`, blocks until [`sys_futex_wake`] on the same
/// address (0) or the timeout passes (`-ETIMEDOUT`). `timeout` null: no
/// timeout; otherwise an absolute `CLOCK_MONOTONIC` time, or a duration
/// with `FUTEX_RELATIVE_TIMEOUT` in `flags`. `-EAGAIN` if the value
/// differed; `-EINVAL` for a null or misaligned address, a negative or
/// malformed timeout, or unknown flags.
///
/// # Safety
/// `address` is null or a live, 4-byte aligned futex word; `timeout` is
/// null or points to a readable `timespec`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sys_futex_wait(
    address: *mut u32,
    expected: u32,
    timeout: *const Timespec,
    flags: u32,
) -> i32 {
    if flags & !FUTEX_RELATIVE_TIMEOUT != 0 {
        return fail(Errno::EINVAL);
    }
    // SAFETY: the caller's promise about `address`.
    let word = match unsafe { word(address) } {
        Ok(w) => w,
        Err(e) => return fail(e),
    };
    let deadline = if timeout.is_null() {
        None
    } else {
        // SAFETY: the caller's promise about `timeout`.
        match unsafe { read_arg(timeout) }.and_then(|t| timespec_ns(&t)) {
            Ok(ns) if flags & FUTEX_RELATIVE_TIMEOUT != 0 => {
                Some(crate::time::monotonic_ns().saturating_add(ns))
            }
            Ok(ns) => Some(ns),
            Err(e) => return fail(e),
        }
    };
    match KernelFutex::wait(word, expected, deadline) {
        WaitResult::Woken => 0,
        WaitResult::TimedOut => fail(Errno::ETIMEDOUT),
        WaitResult::ValueChanged => fail(Errno::EAGAIN),
    }
}

/// Wakes up to `count` threads waiting on `address` (all of them for
/// `i32::MAX`); the number woken, or `-EINVAL` for a negative count or a
/// null or misaligned address.
///
/// # Safety
/// `address` is null or a live, 4-byte aligned futex word.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sys_futex_wake(address: *mut u32, count: i32) -> i32 {
    if count < 0 {
        return fail(Errno::EINVAL);
    }
    // SAFETY: the caller's promise about `address`.
    let word = match unsafe { word(address) } {
        Ok(w) => w,
        Err(e) => return fail(e),
    };
    let n = if count == i32::MAX {
        u32::MAX
    } else {
        count as u32
    };
    i32::try_from(KernelFutex::wake(word, n)).unwrap_or(i32::MAX)
}
