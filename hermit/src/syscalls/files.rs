//! The file `sys_*` calls (open, close, stat, directories, descriptors,
//! poll) as one-line exports into [`hermit_syscalls::Syscalls`], which owns
//! the one descriptor table of files, sockets and the standard streams and
//! checks every argument. Errors come back as negative errno values, the
//! form std's `cvt` expects.

use core::ffi::c_char;
use core::time::Duration;

use alloc::sync::Arc;
use hermit_syscalls::abi::{self, nfds_t};
use hermit_syscalls::file::FileObject;
use hermit_syscalls::{Clock, Syscalls};

use super::noted;

/// The kernel's clock and sleep, for poll timeouts.
struct KernelClock;

impl Clock for KernelClock {
    fn now(&self) -> Duration {
        Duration::from_nanos(crate::time::monotonic_ns())
    }

    fn sleep(&self, d: Duration) {
        crate::thread::sleep(d);
    }
}

static CLOCK: KernelClock = KernelClock;
static SYSCALLS: spin::Once<Syscalls<'static>> = spin::Once::new();

/// The descriptor table and call logic, set up at the first call with the
/// standard streams on 0, 1 and 2 (the same objects `hermit::fs` uses).
pub(crate) fn sys() -> &'static Syscalls<'static> {
    SYSCALLS.call_once(|| {
        let vfs = crate::fs::vfs();
        let sys = Syscalls::new(vfs, &CLOCK);
        for (fd, flags) in [(0, abi::O_RDONLY), (1, abi::O_WRONLY), (2, abi::O_WRONLY)] {
            if let Ok(file) = vfs.file(fd) {
                // Cannot fail: the table is empty and 0..=2 are in range.
                let _ = sys.fds().set(fd, Arc::new(FileObject::new(file)), flags);
            }
        }
        sys
    })
}

/// Opens `name`; a new descriptor or `-errno`.
///
/// # Safety
/// `name` is null or a NUL-terminated string.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sys_open(name: *const c_char, flags: i32, mode: i32) -> i32 {
    // SAFETY: the caller's promise about `name`.
    noted(unsafe { sys().open(name.cast(), flags, mode) })
}

/// Opens directory `name` for `sys_getdents64`.
///
/// # Safety
/// As [`sys_open`].
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sys_opendir(name: *const c_char) -> i32 {
    // SAFETY: the caller's promise about `name`.
    noted(unsafe { sys().opendir(name.cast()) })
}

/// Closes `fd`.
#[unsafe(no_mangle)]
pub extern "C" fn sys_close(fd: i32) -> i32 {
    noted(sys().close(fd))
}

/// Moves the position of `fd`.
#[unsafe(no_mangle)]
pub extern "C" fn sys_lseek(fd: i32, offset: isize, whence: i32) -> isize {
    noted(sys().lseek(fd, offset, whence))
}

/// The status of `name`, following symbolic links.
///
/// # Safety
/// `name` is null or a NUL-terminated string; `stat` is null or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sys_stat(name: *const c_char, stat: *mut abi::stat) -> i32 {
    // SAFETY: the caller's promises.
    noted(unsafe { sys().stat(name.cast(), stat) })
}

/// The status of `name` itself.
///
/// # Safety
/// As [`sys_stat`].
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sys_lstat(name: *const c_char, stat: *mut abi::stat) -> i32 {
    // SAFETY: the caller's promises.
    noted(unsafe { sys().lstat(name.cast(), stat) })
}

/// The status of `fd`.
///
/// # Safety
/// `stat` is null or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sys_fstat(fd: i32, stat: *mut abi::stat) -> i32 {
    // SAFETY: the caller's promise.
    noted(unsafe { sys().fstat(fd, stat) })
}

/// Removes file `name`.
///
/// # Safety
/// `name` is null or a NUL-terminated string.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sys_unlink(name: *const c_char) -> i32 {
    // SAFETY: the caller's promise.
    noted(unsafe { sys().unlink(name.cast()) })
}

/// Removes empty directory `name`.
///
/// # Safety
/// As [`sys_unlink`].
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sys_rmdir(name: *const c_char) -> i32 {
    // SAFETY: the caller's promise.
    noted(unsafe { sys().rmdir(name.cast()) })
}

/// Creates directory `name`.
///
/// # Safety
/// As [`sys_unlink`].
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sys_mkdir(name: *const c_char, mode: u32) -> i32 {
    // SAFETY: the caller's promise.
    noted(unsafe { sys().mkdir(name.cast(), mode) })
}

/// Directory records of `fd` into `dirp` (all that remain, or `-EINVAL`
/// when they do not fit: std then retries with a larger buffer).
///
/// # Safety
/// `dirp` is null or `count` writable bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sys_getdents64(fd: i32, dirp: *mut abi::dirent64, count: usize) -> i64 {
    // SAFETY: the caller's promise.
    noted(unsafe { sys().getdents64(fd, dirp.cast(), count) })
}

/// A second descriptor for the object of `fd`.
#[unsafe(no_mangle)]
pub extern "C" fn sys_dup(fd: i32) -> i32 {
    noted(sys().dup(fd))
}

/// `F_GETFL`, `F_SETFL` (`O_NONBLOCK`), `F_GETFD`, `F_SETFD`, `F_DUPFD`.
#[unsafe(no_mangle)]
pub extern "C" fn sys_fcntl(fd: i32, cmd: i32, arg: i32) -> i32 {
    noted(sys().fcntl(fd, cmd, arg))
}

/// `FIONBIO`.
///
/// # Safety
/// `argp` is null or points to an `i32`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sys_ioctl(fd: i32, cmd: i32, argp: *mut core::ffi::c_void) -> i32 {
    // SAFETY: the caller's promise.
    noted(unsafe { sys().ioctl(fd, cmd, argp.cast()) })
}

/// Waits until one of `fds` is ready or `timeout` ms pass (-1: forever).
///
/// # Safety
/// `fds` is null or `nfds` writable entries.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sys_poll(fds: *mut abi::pollfd, nfds: nfds_t, timeout: i32) -> i32 {
    // SAFETY: the caller's promise.
    noted(unsafe { sys().poll(fds, nfds, timeout) })
}
