//! `sys_read`, `sys_write`, `sys_readv`, `sys_writev` and `sys_isatty`:
//! one-line exports into the one descriptor table of `hermit-syscalls`
//! ([`super::files::sys`]), which holds the standard streams on 0-2, files
//! and sockets and checks every pointer and length (`EFAULT` for a null
//! buffer, `EINVAL` past `IOV_MAX` or `isize::MAX`, `EBADF` for a closed
//! fd or one opened for the other direction).

use hermit_syscalls::abi::iovec;

use super::files::sys;
use super::{fail, noted};

/// Writes `len` bytes from `buf` to `fd`; the count written or `-errno`.
///
/// # Safety
/// `buf` is null or points to `len` readable bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sys_write(fd: i32, buf: *const u8, len: usize) -> isize {
    // SAFETY: the caller's promise about `buf`.
    noted(unsafe { sys().write(fd, buf, len) })
}

/// Reads at most `len` bytes from `fd` into `buf`; the count read (0 at
/// the end of input) or `-errno`.
///
/// # Safety
/// `buf` is null or points to `len` writable bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sys_read(fd: i32, buf: *mut u8, len: usize) -> isize {
    // SAFETY: the caller's promise about `buf`.
    noted(unsafe { sys().read(fd, buf, len) })
}

/// Writes the buffers of `iov` in order to `fd`, stopping at a short write;
/// the total written or `-errno`.
///
/// # Safety
/// `iov` is null or points to `iovcnt` entries, each naming readable bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sys_writev(fd: i32, iov: *const iovec, iovcnt: usize) -> isize {
    // SAFETY: the caller's promise about `iov`.
    noted(unsafe { sys().writev(fd, iov, iovcnt) })
}

/// Reads from `fd` into the buffers of `iov` in order, stopping at a short
/// read; the total read or `-errno`.
///
/// # Safety
/// `iov` is null or points to `iovcnt` entries, each naming writable bytes
/// that do not overlap.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sys_readv(fd: i32, iov: *const iovec, iovcnt: usize) -> isize {
    // SAFETY: the caller's promise about `iov`.
    noted(unsafe { sys().readv(fd, iov, iovcnt) })
}

/// Whether `fd` is a terminal: 0 for every open descriptor (the proxy
/// passes pipes or files as often as terminals and the guest cannot tell;
/// `hermit-abi`'s own `isatty` answers false as well), `-EBADF` for a
/// closed one.
#[unsafe(no_mangle)]
pub extern "C" fn sys_isatty(fd: i32) -> i32 {
    match sys().is_terminal(fd) {
        Ok(_) => 0,
        Err(e) => fail(e),
    }
}
