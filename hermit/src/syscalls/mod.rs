//! The `sys_*` functions Rust std calls on hermit (`hermit-abi`), exported
//! with C linkage: memory, standard I/O, time, futexes, threads, entropy,
//! exit. Each checks its arguments (null pointers, lengths, clock ids,
//! flags) and reports failure as `hermit-abi` documents for it, usually
//! a negative errno; the running thread's `errno` (`sys_get_errno`) is set
//! as well.
//!
//! Files, directories, descriptors and poll ([`files`]) and sockets
//! ([`sockets`], with the `tcp`/`udp` features) are one-line exports into
//! the `hermit-syscalls` crate, which owns the one descriptor table (the
//! standard streams on 0-2, files, sockets) and the argument checking.
//!
//! These are ordinary kernel functions (no privilege change): a call costs
//! what a function call costs plus the work.

use hermit_interface::errno::Errno;

pub(crate) mod entropy;
mod files;
mod futex;
pub(crate) mod io;
mod mem;
mod process;
#[cfg(any(feature = "tcp", feature = "udp"))]
mod sockets;
mod thread;
mod time;

/// Records `e` as the running thread's errno and returns `-e`, the form
/// most `sys_*` calls return errors in.
fn fail(e: Errno) -> i32 {
    crate::sched::set_errno(e as i32);
    -(e as i32)
}

/// [`fail`] for calls that return `isize`.
fn fail_isize(e: Errno) -> isize {
    fail(e) as isize
}

/// Passes a result of the `hermit-syscalls` layer on, recording a
/// negative one (`-errno`) as the running thread's errno too.
fn noted<T: Copy + TryInto<i64>>(r: T) -> T {
    if let Ok(v) = r.try_into()
        && v < 0
    {
        crate::sched::set_errno(i32::try_from(-v).unwrap_or(i32::MAX));
    }
    r
}

/// `Ok(v)` as `v`, `Err(e)` as [`fail`].
fn result(r: Result<i32, Errno>) -> i32 {
    r.unwrap_or_else(fail)
}

/// `timespec` as in `hermit-abi` (its layout is checked against that crate
/// in `hermit-syscalls`).
pub use hermit_syscalls::abi::timespec as Timespec;

/// The time `t` names as nanoseconds, if it is valid (non-negative
/// seconds, nanoseconds below one second); saturates at `u64::MAX`.
fn timespec_ns(t: &Timespec) -> Result<u64, Errno> {
    if t.tv_sec < 0 || !(0..1_000_000_000).contains(&t.tv_nsec) {
        return Err(Errno::EINVAL);
    }
    Ok((t.tv_sec as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(t.tv_nsec as u64))
}

/// `ns` nanoseconds as a `timespec`.
fn timespec_from_ns(ns: u64) -> Timespec {
    Timespec {
        tv_sec: (ns / 1_000_000_000) as i64,
        tv_nsec: (ns % 1_000_000_000) as i32,
    }
}

/// Reads a `T` the application passed by pointer.
///
/// # Safety
/// `p` is null or points to a readable, initialised `T` (the caller of the
/// `sys_*` function promises that).
unsafe fn read_arg<T: Copy>(p: *const T) -> Result<T, Errno> {
    if p.is_null() || !p.is_aligned() {
        return Err(Errno::EINVAL);
    }
    // SAFETY: non-null and aligned; readable by the caller's promise.
    Ok(unsafe { p.read() })
}
