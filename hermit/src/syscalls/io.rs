//! `sys_read`, `sys_write`, `sys_readv`, `sys_writev` and `sys_isatty`.
//!
//! Every descriptor (the standard streams on 0-2, files, sockets) lives in
//! the one table of `hermit-syscalls` ([`super::files::sys`]).

use hermit_interface::errno::Errno;

use super::{fail, fail_isize};

/// Most entries `sys_readv`/`sys_writev` accept (`hermit-abi`'s `IOV_MAX`).
const IOV_MAX: usize = 1024;

fn write_to(fd: i32, bytes: &[u8]) -> Result<usize, Errno> {
    super::files::sys().write_buf(fd, bytes)
}

fn read_from(fd: i32, buf: &mut [u8]) -> Result<usize, Errno> {
    super::files::sys().read_buf(fd, buf)
}

/// The `len` bytes at `buf`, checked for null and size.
///
/// # Safety
/// Unless null, `buf` points to `len` bytes the caller lets us use as `'a`.
unsafe fn bytes<'a>(buf: *const u8, len: usize) -> Result<&'a [u8], Errno> {
    if len == 0 {
        return Ok(&[]);
    }
    if buf.is_null() {
        return Err(Errno::EFAULT);
    }
    if len > isize::MAX as usize {
        return Err(Errno::EINVAL);
    }
    // SAFETY: non-null, at most isize::MAX bytes, readable by the caller's
    // promise.
    Ok(unsafe { core::slice::from_raw_parts(buf, len) })
}

/// As [`bytes`], writable.
///
/// # Safety
/// Unless null, `buf` points to `len` bytes the caller lets us write as `'a`.
unsafe fn bytes_mut<'a>(buf: *mut u8, len: usize) -> Result<&'a mut [u8], Errno> {
    if len == 0 {
        return Ok(&mut []);
    }
    if buf.is_null() {
        return Err(Errno::EFAULT);
    }
    if len > isize::MAX as usize {
        return Err(Errno::EINVAL);
    }
    // SAFETY: non-null, at most isize::MAX bytes, writable by the caller's
    // promise and not aliased while we use it.
    Ok(unsafe { core::slice::from_raw_parts_mut(buf, len) })
}

fn to_isize(r: Result<usize, Errno>) -> isize {
    match r {
        Ok(n) => n as isize,
        Err(e) => fail_isize(e),
    }
}

/// Writes `len` bytes from `buf` to `fd`; the count written or `-errno`
/// (`EBADF`, `EFAULT` for a null buffer, `EINVAL` for a length above
/// `isize::MAX`).
///
/// # Safety
/// `buf` is null or points to `len` readable bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sys_write(fd: i32, buf: *const u8, len: usize) -> isize {
    // SAFETY: the caller's promise about `buf`.
    to_isize(unsafe { bytes(buf, len) }.and_then(|b| write_to(fd, b)))
}

/// Reads at most `len` bytes from `fd` into `buf`; the count read (0 at
/// the end of input) or `-errno` as [`sys_write`].
///
/// # Safety
/// `buf` is null or points to `len` writable bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sys_read(fd: i32, buf: *mut u8, len: usize) -> isize {
    // SAFETY: the caller's promise about `buf`.
    to_isize(unsafe { bytes_mut(buf, len) }.and_then(|b| read_from(fd, b)))
}

/// `iovec` as in `hermit-abi`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct IoVec {
    /// Start of the buffer.
    pub iov_base: *mut u8,
    /// Its length.
    pub iov_len: usize,
}

/// The `iovcnt` entries at `iov`.
///
/// # Safety
/// Unless null, `iov` points to `iovcnt` readable `IoVec`s.
unsafe fn iovecs<'a>(iov: *const IoVec, iovcnt: usize) -> Result<&'a [IoVec], Errno> {
    if iovcnt > IOV_MAX {
        return Err(Errno::EINVAL);
    }
    if iovcnt == 0 {
        return Ok(&[]);
    }
    if iov.is_null() || !iov.is_aligned() {
        return Err(Errno::EFAULT);
    }
    // SAFETY: non-null, aligned, at most IOV_MAX entries, readable by the
    // caller's promise.
    Ok(unsafe { core::slice::from_raw_parts(iov, iovcnt) })
}

/// Writes the buffers of `iov` in order to `fd`, stopping at a short write;
/// the total written or `-errno`.
///
/// # Safety
/// `iov` is null or points to `iovcnt` entries, each naming readable bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sys_writev(fd: i32, iov: *const IoVec, iovcnt: usize) -> isize {
    // SAFETY: the caller's promise about `iov`.
    let list = match unsafe { iovecs(iov, iovcnt) } {
        Ok(l) => l,
        Err(e) => return fail_isize(e),
    };
    let mut total = 0usize;
    for v in list {
        // SAFETY: the caller's promise about each entry.
        let r = unsafe { bytes(v.iov_base, v.iov_len) }.and_then(|b| write_to(fd, b));
        match r {
            Ok(n) => {
                total = total.saturating_add(n);
                if n < v.iov_len {
                    break;
                }
            }
            Err(e) if total == 0 => return fail_isize(e),
            Err(_) => break,
        }
    }
    total.min(isize::MAX as usize) as isize
}

/// Reads from `fd` into the buffers of `iov` in order, stopping at a short
/// read; the total read or `-errno`.
///
/// # Safety
/// `iov` is null or points to `iovcnt` entries, each naming writable bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sys_readv(fd: i32, iov: *const IoVec, iovcnt: usize) -> isize {
    // SAFETY: the caller's promise about `iov`.
    let list = match unsafe { iovecs(iov, iovcnt) } {
        Ok(l) => l,
        Err(e) => return fail_isize(e),
    };
    let mut total = 0usize;
    for v in list {
        // SAFETY: the caller's promise about each entry.
        let r = unsafe { bytes_mut(v.iov_base, v.iov_len) }.and_then(|b| read_from(fd, b));
        match r {
            Ok(n) => {
                total = total.saturating_add(n);
                if n < v.iov_len {
                    break;
                }
            }
            Err(e) if total == 0 => return fail_isize(e),
            Err(_) => break,
        }
    }
    total.min(isize::MAX as usize) as isize
}

/// Whether `fd` is a terminal: 0 for every open descriptor (the proxy
/// passes pipes or files as often as terminals and the guest cannot tell;
/// `hermit-abi`'s own `isatty` answers false as well), `-EBADF` for a
/// closed one.
#[unsafe(no_mangle)]
pub extern "C" fn sys_isatty(fd: i32) -> i32 {
    match super::files::sys().is_terminal(fd) {
        Ok(_) => 0,
        Err(e) => fail(e),
    }
}
