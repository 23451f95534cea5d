//! Thin wrappers around the Linux system calls the server needs. Every
//! `unsafe` of the crate that is not about guest memory lives here.
//!
//! A signal can interrupt a blocking call (uhyve kicks its vCPU threads
//! with one every 100 ms); calls are restarted unless `stop` is set, so a
//! VM that ends is not held up by a vCPU blocked on the host's stdin.

use std::ffi::CStr;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};

use hermit_interface::errno::Errno;
use hermit_interface::fs::FileStat;

/// The calling thread's `errno` as an [`Errno`] (`EIO` if unknown).
fn last_errno() -> Errno {
    let raw = std::io::Error::last_os_error()
        .raw_os_error()
        .unwrap_or(libc::EIO);
    host_errno(raw)
}

/// A host error number as an [`Errno`] (`EIO` if the protocol has no such
/// number).
pub(crate) fn host_errno(raw: i32) -> Errno {
    Errno::from_raw(raw).unwrap_or(Errno::EIO)
}

/// Runs `call` (a raw system call returning `-1` and setting `errno` on
/// failure) until it does not fail with `EINTR`, or `stop` is set.
fn restarting(stop: &AtomicBool, mut call: impl FnMut() -> i64) -> Result<i64, Errno> {
    loop {
        let ret = call();
        if ret >= 0 {
            return Ok(ret);
        }
        let err = last_errno();
        if err != Errno::EINTR || stop.load(Ordering::Relaxed) {
            return Err(err);
        }
    }
}

/// The `resolve` flags of every path resolution: stay beneath the starting
/// directory (no absolute paths, no `..` above it, no symlink leading out
/// of it) and never follow `/proc/*/fd`-style magic links.
const RESOLVE: u64 = libc::RESOLVE_BENEATH | libc::RESOLVE_NO_MAGICLINKS;

/// `openat2(dir, path, flags | O_CLOEXEC | O_NOCTTY, mode)` confined beneath
/// `dir`. An escape attempt fails with `EXDEV` (the kernel's answer), a
/// magic link with `ELOOP`; `EAGAIN` (a concurrent rename or mount moved
/// something during the walk) is retried a few times.
pub(crate) fn open_beneath(
    stop: &AtomicBool,
    dir: BorrowedFd<'_>,
    path: &CStr,
    flags: i32,
    mode: u32,
) -> Result<OwnedFd, Errno> {
    // SAFETY: an all-zero `open_how` is valid (no flags, no resolve
    // restrictions); the fields are set below. The struct is
    // `non_exhaustive`, so it cannot be built with a literal.
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    // openat2 refuses O_NOCTTY (any flag but O_CLOEXEC, O_DIRECTORY and
    // O_NOFOLLOW) next to O_PATH.
    let extra = if flags & libc::O_PATH != 0 {
        libc::O_CLOEXEC
    } else {
        libc::O_CLOEXEC | libc::O_NOCTTY
    };
    how.flags = (flags | extra) as u32 as u64;
    how.mode = u64::from(mode);
    how.resolve = RESOLVE;
    let mut tries = 0;
    loop {
        let ret = restarting(stop, || {
            // SAFETY: `path` is NUL-terminated and `how` is a valid
            // `open_how` of the size passed; both outlive the call. The
            // kernel returns a new descriptor or -1.
            unsafe {
                libc::syscall(
                    libc::SYS_openat2,
                    dir.as_raw_fd(),
                    path.as_ptr(),
                    &how as *const libc::open_how,
                    size_of::<libc::open_how>(),
                )
            }
        });
        match ret {
            Ok(fd) => {
                let fd = RawFd::try_from(fd).map_err(|_| Errno::EIO)?;
                // SAFETY: openat2 succeeded, so `fd` is a fresh descriptor
                // that nothing else owns.
                return Ok(unsafe { OwnedFd::from_raw_fd(fd) });
            }
            Err(Errno::EAGAIN) if tries < 8 => tries += 1,
            Err(e) => return Err(e),
        }
    }
}

/// Whether the host kernel has `openat2` (Linux 5.6): probes it on `dir`.
pub(crate) fn openat2_works(dir: BorrowedFd<'_>) -> Result<(), Errno> {
    let stop = AtomicBool::new(false);
    open_beneath(&stop, dir, c".", libc::O_PATH | libc::O_DIRECTORY, 0).map(drop)
}

/// `fstat(fd)` as the protocol's [`FileStat`].
pub(crate) fn fstat(fd: RawFd) -> Result<FileStat, Errno> {
    // SAFETY: an all-zero `stat` is a valid value for the kernel to fill.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: `st` is a valid, writable `stat`; an invalid `fd` only makes
    // the call fail with EBADF.
    if unsafe { libc::fstat(fd, &mut st) } < 0 {
        return Err(last_errno());
    }
    Ok(FileStat {
        dev: st.st_dev,
        ino: st.st_ino,
        nlink: st.st_nlink,
        mode: st.st_mode,
        uid: st.st_uid,
        gid: st.st_gid,
        _reserved: 0,
        size: st.st_size,
        blksize: st.st_blksize,
        blocks: st.st_blocks,
        atime_sec: st.st_atime,
        atime_nsec: st.st_atime_nsec,
        mtime_sec: st.st_mtime,
        mtime_nsec: st.st_mtime_nsec,
        ctime_sec: st.st_ctime,
        ctime_nsec: st.st_ctime_nsec,
    })
}

/// Clears `O_NONBLOCK` on `fd` (the server opens with it so that the open
/// itself never blocks).
pub(crate) fn clear_nonblock(fd: RawFd) -> Result<(), Errno> {
    // SAFETY: F_GETFL takes no pointer; a bad fd fails with EBADF.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    if flags < 0 {
        return Err(last_errno());
    }
    // SAFETY: F_SETFL takes an int; a bad fd fails with EBADF.
    if unsafe { libc::fcntl(fd, libc::F_SETFL, flags & !libc::O_NONBLOCK) } < 0 {
        return Err(last_errno());
    }
    Ok(())
}

/// `read(fd, ptr, len)`.
///
/// # Safety
/// `ptr..ptr + len` must be valid for writes for the duration of the call.
pub(crate) unsafe fn read(
    stop: &AtomicBool,
    fd: RawFd,
    ptr: *mut u8,
    len: usize,
) -> Result<i64, Errno> {
    restarting(stop, || {
        // SAFETY: the caller guarantees the buffer; the kernel writes at
        // most `len` bytes.
        unsafe { libc::read(fd, ptr.cast(), len) as i64 }
    })
}

/// `write(fd, ptr, len)`.
///
/// # Safety
/// `ptr..ptr + len` must be valid for reads for the duration of the call.
pub(crate) unsafe fn write(
    stop: &AtomicBool,
    fd: RawFd,
    ptr: *const u8,
    len: usize,
) -> Result<i64, Errno> {
    restarting(stop, || {
        // SAFETY: the caller guarantees the buffer; the kernel reads at
        // most `len` bytes.
        unsafe { libc::write(fd, ptr.cast(), len) as i64 }
    })
}

/// `pread(fd, ptr, len, offset)`.
///
/// # Safety
/// `ptr..ptr + len` must be valid for writes for the duration of the call.
pub(crate) unsafe fn pread(
    stop: &AtomicBool,
    fd: RawFd,
    ptr: *mut u8,
    len: usize,
    offset: i64,
) -> Result<i64, Errno> {
    restarting(stop, || {
        // SAFETY: the caller guarantees the buffer; the kernel writes at
        // most `len` bytes.
        unsafe { libc::pread(fd, ptr.cast(), len, offset) as i64 }
    })
}

/// `pwrite(fd, ptr, len, offset)`.
///
/// # Safety
/// `ptr..ptr + len` must be valid for reads for the duration of the call.
pub(crate) unsafe fn pwrite(
    stop: &AtomicBool,
    fd: RawFd,
    ptr: *const u8,
    len: usize,
    offset: i64,
) -> Result<i64, Errno> {
    restarting(stop, || {
        // SAFETY: the caller guarantees the buffer; the kernel reads at
        // most `len` bytes.
        unsafe { libc::pwrite(fd, ptr.cast(), len, offset) as i64 }
    })
}

/// `lseek(fd, offset, whence)`.
pub(crate) fn lseek(fd: RawFd, offset: i64, whence: i32) -> Result<i64, Errno> {
    // SAFETY: lseek takes no pointers; a bad fd or whence fails cleanly.
    let ret = unsafe { libc::lseek(fd, offset, whence) };
    if ret < 0 { Err(last_errno()) } else { Ok(ret) }
}

/// `ftruncate(fd, len)`.
pub(crate) fn ftruncate(stop: &AtomicBool, fd: RawFd, len: i64) -> Result<(), Errno> {
    // SAFETY: ftruncate takes no pointers; a bad fd fails with EBADF.
    restarting(stop, || i64::from(unsafe { libc::ftruncate(fd, len) })).map(drop)
}

/// `getdents64(fd, buf)`: fills `buf` with `linux_dirent64` records;
/// returns the number of bytes, 0 at the end of the directory.
pub(crate) fn getdents64(stop: &AtomicBool, fd: RawFd, buf: &mut [u8]) -> Result<usize, Errno> {
    let n = restarting(stop, || {
        // SAFETY: `buf` is a live, writable slice of the length passed; the
        // kernel writes at most that many bytes.
        unsafe { libc::syscall(libc::SYS_getdents64, fd, buf.as_mut_ptr(), buf.len()) }
    })?;
    usize::try_from(n).map_err(|_| Errno::EIO)
}

/// `unlinkat(dir, name, flags)`.
pub(crate) fn unlinkat(dir: BorrowedFd<'_>, name: &CStr, flags: i32) -> Result<(), Errno> {
    // SAFETY: `name` is NUL-terminated and outlives the call.
    if unsafe { libc::unlinkat(dir.as_raw_fd(), name.as_ptr(), flags) } < 0 {
        return Err(last_errno());
    }
    Ok(())
}

/// `mkdirat(dir, name, mode)`.
pub(crate) fn mkdirat(dir: BorrowedFd<'_>, name: &CStr, mode: u32) -> Result<(), Errno> {
    // SAFETY: `name` is NUL-terminated and outlives the call.
    if unsafe { libc::mkdirat(dir.as_raw_fd(), name.as_ptr(), mode) } < 0 {
        return Err(last_errno());
    }
    Ok(())
}

/// `renameat(from_dir, from, to_dir, to)`.
pub(crate) fn renameat(
    from_dir: BorrowedFd<'_>,
    from: &CStr,
    to_dir: BorrowedFd<'_>,
    to: &CStr,
) -> Result<(), Errno> {
    // SAFETY: both names are NUL-terminated and outlive the call.
    let ret = unsafe {
        libc::renameat(
            from_dir.as_raw_fd(),
            from.as_ptr(),
            to_dir.as_raw_fd(),
            to.as_ptr(),
        )
    };
    if ret < 0 {
        return Err(last_errno());
    }
    Ok(())
}
