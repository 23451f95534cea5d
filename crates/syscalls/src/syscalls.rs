//! [`Syscalls`]: the descriptor table and the backends, with one method per
//! `sys_*` symbol of hermit-abi. This file holds the file and descriptor
//! calls; `socket.rs` and `poll.rs` add the rest.

use alloc::sync::Arc;
use core::time::Duration;

use hermit_fs::{OpenFlags, SeekFrom, Vfs};
use hermit_interface::fs::PATH_MAX;

use crate::Errno;
use crate::abi::{
    self, F_DUPFD, F_GETFD, F_GETFL, F_SETFD, F_SETFL, FD_CLOEXEC, FIONBIO, O_ACCMODE, O_APPEND,
    O_CLOEXEC, O_CREAT, O_DIRECTORY, O_EXCL, O_NONBLOCK, O_RDONLY, O_TRUNC, O_WRONLY, SEEK_CUR,
    SEEK_END, SEEK_SET, iovec,
};
use crate::dirent::to_stat;
use crate::fd::{Description, FdTable};
use crate::file::FileObject;
use crate::user;

/// Time for `poll`'s timeout: the kernel's monotonic clock and a way to
/// sleep the calling thread.
pub trait Clock: Send + Sync {
    /// Monotonic time since an arbitrary start.
    fn now(&self) -> Duration;

    /// Blocks the calling thread for about `duration`.
    fn sleep(&self, duration: Duration);
}

/// The `open` flags accepted (`O_CLOEXEC` and `O_NONBLOCK` are accepted and
/// kept as descriptor and status flags).
const OPEN_FLAGS: i32 =
    O_ACCMODE | O_CREAT | O_EXCL | O_TRUNC | O_APPEND | O_DIRECTORY | O_NONBLOCK | O_CLOEXEC;

/// An `i32` return value: the result, or `-errno`.
pub(crate) fn ret(result: Result<i32, Errno>) -> i32 {
    match result {
        Ok(v) => v,
        Err(e) => -e.raw(),
    }
}

/// An `isize` return value for a byte count, or `-errno`.
pub(crate) fn ret_size(result: Result<usize, Errno>) -> isize {
    match result {
        // Counts come from slices, whose lengths fit an isize.
        Ok(n) => isize::try_from(n).unwrap_or(isize::MAX),
        Err(e) => -(e.raw() as isize),
    }
}

/// The system calls of one application: its descriptor table, the file
/// system and (feature `net`) the network stack.
///
/// Methods named after a `sys_*` symbol implement it exactly: same
/// arguments, same return convention (a non-negative result or a negative
/// errno, which is what Rust std's `cvt` expects). Methods that take raw
/// pointers are `unsafe`: see the crate's `user` module for the contract.
pub struct Syscalls<'a> {
    fds: FdTable,
    vfs: &'a Vfs,
    clock: &'a dyn Clock,
    #[cfg(feature = "net")]
    pub(crate) net: spin::Once<&'a hermit_net::Stack>,
}

impl<'a> Syscalls<'a> {
    /// System calls over `vfs`, with an empty descriptor table (install the
    /// console with [`FdTable::set`] on [`fds`](Self::fds)).
    pub fn new(vfs: &'a Vfs, clock: &'a dyn Clock) -> Self {
        Self::with_table(vfs, clock, FdTable::new())
    }

    /// As [`new`](Self::new) with a given (e.g. smaller) table.
    pub fn with_table(vfs: &'a Vfs, clock: &'a dyn Clock, fds: FdTable) -> Self {
        Self {
            fds,
            vfs,
            clock,
            #[cfg(feature = "net")]
            net: spin::Once::new(),
        }
    }

    /// The descriptor table.
    pub fn fds(&self) -> &FdTable {
        &self.fds
    }

    /// The file system.
    pub fn vfs(&self) -> &'a Vfs {
        self.vfs
    }

    pub(crate) fn clock(&self) -> &'a dyn Clock {
        self.clock
    }

    /// A path argument: at most `PATH_MAX - 1` bytes and UTF-8 (hermit-fs
    /// paths are `str`; other bytes give `EINVAL`).
    ///
    /// # Safety
    /// As [`user::c_str`].
    unsafe fn path<'p>(path: *const u8) -> Result<&'p str, Errno> {
        let max = usize::try_from(PATH_MAX).unwrap_or(4096);
        // SAFETY: forwarded contract.
        let bytes = unsafe { user::c_str(path, max) }?;
        core::str::from_utf8(bytes).map_err(|_| Errno::EINVAL)
    }

    /// Opens `path` (safe core of [`open`](Self::open)).
    pub fn open_path(&self, path: &str, flags: i32, mode: i32) -> Result<i32, Errno> {
        if flags & !OPEN_FLAGS != 0 {
            return Err(Errno::EINVAL);
        }
        let fs_flags = flags & !(O_NONBLOCK | O_CLOEXEC);
        let fs_flags = OpenFlags::from_bits(u32::try_from(fs_flags).map_err(|_| Errno::EINVAL)?)?;
        // Permission bits only; the rest of `mode` is ignored, as on Linux.
        let mode = (mode & 0o7777) as u32;
        // hermit-fs hands out descriptors of its own table: take the file
        // out of it at once and keep it in ours.
        let vfs_fd = self.vfs.open(path, fs_flags, mode)?;
        let file = self.vfs.file(vfs_fd);
        let _ = self.vfs.close(vfs_fd);
        let object = Arc::new(FileObject::new(file?));
        let fd = self.fds.insert(object, flags)?;
        if flags & O_CLOEXEC != 0 {
            self.fds.set_cloexec(fd, true)?;
        }
        Ok(fd)
    }

    /// `sys_open`: opens (and with `O_CREAT` creates) `path`; the lowest
    /// free descriptor or `-errno` (`EINVAL` for unknown flags).
    ///
    /// # Safety
    /// `path` is null or a NUL-terminated string (read up to `PATH_MAX`).
    pub unsafe fn open(&self, path: *const u8, flags: i32, mode: i32) -> i32 {
        // SAFETY: forwarded contract.
        ret(unsafe { Self::path(path) }.and_then(|p| self.open_path(p, flags, mode)))
    }

    /// `sys_opendir`: `open(path, O_RDONLY | O_DIRECTORY)`.
    ///
    /// # Safety
    /// As [`open`](Self::open).
    pub unsafe fn opendir(&self, path: *const u8) -> i32 {
        // SAFETY: forwarded contract.
        unsafe { self.open(path, O_RDONLY | O_DIRECTORY, 0) }
    }

    /// `sys_close`: 0 or `-EBADF`.
    pub fn close(&self, fd: i32) -> i32 {
        ret(self.fds.close(fd).map(|()| 0))
    }

    fn readable(&self, fd: i32) -> Result<Arc<Description>, Errno> {
        let desc = self.fds.get(fd)?;
        if desc.status_flags() & O_ACCMODE == O_WRONLY {
            return Err(Errno::EBADF);
        }
        Ok(desc)
    }

    fn writable(&self, fd: i32) -> Result<Arc<Description>, Errno> {
        let desc = self.fds.get(fd)?;
        if desc.status_flags() & O_ACCMODE == O_RDONLY {
            return Err(Errno::EBADF);
        }
        Ok(desc)
    }

    /// Reads from `fd` into `buf` (safe core of [`read`](Self::read)).
    pub fn read_buf(&self, fd: i32, buf: &mut [u8]) -> Result<usize, Errno> {
        self.readable(fd)?.object().read(buf)
    }

    /// Writes `buf` to `fd` (safe core of [`write`](Self::write)).
    pub fn write_buf(&self, fd: i32, buf: &[u8]) -> Result<usize, Errno> {
        self.writable(fd)?.object().write(buf)
    }

    /// `sys_read`: bytes read (0 at the end) or `-errno`.
    ///
    /// # Safety
    /// `buf` is valid for `len` writable bytes (unless `len` is 0).
    pub unsafe fn read(&self, fd: i32, buf: *mut u8, len: usize) -> isize {
        let result = self.readable(fd).and_then(|desc| {
            // SAFETY: forwarded contract.
            let buf = unsafe { user::slice_mut(buf, len) }?;
            desc.object().read(buf)
        });
        ret_size(result)
    }

    /// `sys_write`: bytes written or `-errno`.
    ///
    /// # Safety
    /// `buf` is valid for `len` readable bytes (unless `len` is 0).
    pub unsafe fn write(&self, fd: i32, buf: *const u8, len: usize) -> isize {
        let result = self.writable(fd).and_then(|desc| {
            // SAFETY: forwarded contract.
            let buf = unsafe { user::slice(buf, len) }?;
            desc.object().write(buf)
        });
        ret_size(result)
    }

    /// `sys_readv`: fills the buffers in order, stopping at a short read;
    /// the total or `-errno` (an error after some bytes returns the bytes).
    /// `EINVAL` for more than `IOV_MAX` buffers or a total above
    /// `isize::MAX`.
    ///
    /// # Safety
    /// `iov` points to `iovcnt` `iovec`s whose buffers are writable and do
    /// not overlap.
    pub unsafe fn readv(&self, fd: i32, iov: *const iovec, iovcnt: usize) -> isize {
        let result = self.readable(fd).and_then(|desc| {
            // SAFETY: forwarded contract.
            let vecs = unsafe { user::iovecs(iov, iovcnt) }?;
            let mut total = 0;
            for v in vecs {
                // SAFETY: checked by `iovecs`; one buffer at a time.
                let buf = unsafe { user::iov_slice_mut(v) }?;
                match desc.object().read(buf) {
                    Ok(n) => {
                        total += n;
                        if n < buf.len() {
                            break;
                        }
                    }
                    Err(_) if total > 0 => break,
                    Err(e) => return Err(e),
                }
            }
            Ok(total)
        });
        ret_size(result)
    }

    /// `sys_writev`: writes the buffers in order, stopping at a short
    /// write; the total or `-errno` (as [`readv`](Self::readv)).
    ///
    /// # Safety
    /// `iov` points to `iovcnt` `iovec`s whose buffers are readable.
    pub unsafe fn writev(&self, fd: i32, iov: *const iovec, iovcnt: usize) -> isize {
        let result = self.writable(fd).and_then(|desc| {
            // SAFETY: forwarded contract.
            let vecs = unsafe { user::iovecs(iov, iovcnt) }?;
            let mut total = 0;
            for v in vecs {
                // SAFETY: checked by `iovecs`.
                let buf = unsafe { user::iov_slice(v) }?;
                if buf.is_empty() {
                    continue;
                }
                match desc.object().write(buf) {
                    Ok(n) => {
                        total += n;
                        if n < buf.len() {
                            break;
                        }
                    }
                    Err(_) if total > 0 => break,
                    Err(e) => return Err(e),
                }
            }
            Ok(total)
        });
        ret_size(result)
    }

    /// `sys_lseek`: the new offset or `-errno` (`EINVAL` for a bad `whence`
    /// or a negative result, `ESPIPE` for streams).
    pub fn lseek(&self, fd: i32, offset: isize, whence: i32) -> isize {
        let result = (|| {
            let offset = offset as i64;
            let pos = match whence {
                SEEK_SET => SeekFrom::Start(u64::try_from(offset).map_err(|_| Errno::EINVAL)?),
                SEEK_CUR => SeekFrom::Current(offset),
                SEEK_END => SeekFrom::End(offset),
                _ => return Err(Errno::EINVAL),
            };
            let new = self.fds.object(fd)?.lseek(pos)?;
            usize::try_from(new).map_err(|_| Errno::EOVERFLOW)
        })();
        ret_size(result)
    }

    /// # Safety
    /// `out` is null or valid for writing a `stat`.
    unsafe fn put_stat(out: *mut abi::stat, st: hermit_fs::FileStat) -> Result<i32, Errno> {
        // SAFETY: forwarded contract.
        unsafe { user::write(out, to_stat(&st)) }.map(|()| 0)
    }

    /// `sys_stat`: fills `*out` for `path` (following a final link).
    ///
    /// # Safety
    /// `path` as in [`open`](Self::open); `out` null or writable.
    pub unsafe fn stat(&self, path: *const u8, out: *mut abi::stat) -> i32 {
        // SAFETY: forwarded contract.
        let result = unsafe { Self::path(path) }
            .and_then(|p| self.vfs.stat(p))
            // SAFETY: forwarded contract.
            .and_then(|st| unsafe { Self::put_stat(out, st) });
        ret(result)
    }

    /// `sys_lstat`: as [`stat`](Self::stat) for the link itself.
    ///
    /// # Safety
    /// As [`stat`](Self::stat).
    pub unsafe fn lstat(&self, path: *const u8, out: *mut abi::stat) -> i32 {
        // SAFETY: forwarded contract.
        let result = unsafe { Self::path(path) }
            .and_then(|p| self.vfs.lstat(p))
            // SAFETY: forwarded contract.
            .and_then(|st| unsafe { Self::put_stat(out, st) });
        ret(result)
    }

    /// `sys_fstat`: fills `*out` for `fd`.
    ///
    /// # Safety
    /// `out` null or writable.
    pub unsafe fn fstat(&self, fd: i32, out: *mut abi::stat) -> i32 {
        let result = self
            .fds
            .object(fd)
            .and_then(|o| o.fstat())
            // SAFETY: forwarded contract.
            .and_then(|st| unsafe { Self::put_stat(out, st) });
        ret(result)
    }

    /// `sys_unlink`: removes a non-directory.
    ///
    /// # Safety
    /// As [`open`](Self::open).
    pub unsafe fn unlink(&self, path: *const u8) -> i32 {
        // SAFETY: forwarded contract.
        ret(unsafe { Self::path(path) }.and_then(|p| self.vfs.unlink(p).map(|()| 0)))
    }

    /// `sys_rmdir`: removes an empty directory.
    ///
    /// # Safety
    /// As [`open`](Self::open).
    pub unsafe fn rmdir(&self, path: *const u8) -> i32 {
        // SAFETY: forwarded contract.
        ret(unsafe { Self::path(path) }.and_then(|p| self.vfs.rmdir(p).map(|()| 0)))
    }

    /// `sys_mkdir`: creates a directory (permission bits of `mode`).
    ///
    /// # Safety
    /// As [`open`](Self::open).
    pub unsafe fn mkdir(&self, path: *const u8, mode: u32) -> i32 {
        // SAFETY: forwarded contract.
        let result = unsafe { Self::path(path) }.and_then(|p| self.vfs.mkdir(p, mode & 0o7777));
        ret(result.map(|()| 0))
    }

    /// `sys_rename` (not in hermit-abi 0.5.2; std reports "unsupported"
    /// there, but later ABIs have it): renames within one mount.
    ///
    /// # Safety
    /// Both paths as in [`open`](Self::open).
    pub unsafe fn rename(&self, from: *const u8, to: *const u8) -> i32 {
        let result = (|| {
            // SAFETY: forwarded contract.
            let from = unsafe { Self::path(from) }?;
            // SAFETY: forwarded contract.
            let to = unsafe { Self::path(to) }?;
            self.vfs.rename(from, to).map(|()| 0)
        })();
        ret(result)
    }

    /// `sys_getdents64`: the directory records of `fd` packed into `dirp`
    /// (`count` bytes). Returns all remaining records at once, `-EINVAL`
    /// (nothing consumed) if they do not all fit, then 0: see
    /// [`FileObject`]'s `getdents64` for why. `ENOTDIR` for non-directories.
    ///
    /// # Safety
    /// `dirp` is valid for `count` writable bytes.
    pub unsafe fn getdents64(&self, fd: i32, dirp: *mut u8, count: usize) -> i64 {
        let result = self.fds.object(fd).and_then(|o| {
            // SAFETY: forwarded contract.
            let buf = unsafe { user::slice_mut(dirp, count) }?;
            o.getdents64(buf)
        });
        match result {
            Ok(n) => i64::try_from(n).unwrap_or(i64::MAX),
            Err(e) => e.to_neg(),
        }
    }

    /// `sys_dup`: the lowest free descriptor sharing `fd`'s description.
    pub fn dup(&self, fd: i32) -> i32 {
        ret(self.fds.dup(fd))
    }

    /// `sys_dup2` (not in hermit-abi 0.5.2): `new` now shares `old`'s
    /// description.
    pub fn dup2(&self, old: i32, new: i32) -> i32 {
        ret(self.fds.dup2(old, new))
    }

    /// `sys_fcntl`: `F_DUPFD`, `F_GETFD`/`F_SETFD` (`FD_CLOEXEC`),
    /// `F_GETFL`/`F_SETFL` (`O_NONBLOCK`); `EINVAL` for other commands.
    pub fn fcntl(&self, fd: i32, cmd: i32, arg: i32) -> i32 {
        let result = match cmd {
            F_DUPFD => self.fds.dup_min(fd, arg),
            F_GETFD => self.fds.cloexec(fd).map(|c| if c { FD_CLOEXEC } else { 0 }),
            F_SETFD => self.fds.set_cloexec(fd, arg & FD_CLOEXEC != 0).map(|()| 0),
            F_GETFL => self.fds.get(fd).map(|d| d.status_flags()),
            F_SETFL => self
                .fds
                .get(fd)
                .and_then(|d| d.set_status_flags(arg))
                .map(|()| 0),
            _ => self.fds.get(fd).and(Err(Errno::EINVAL)),
        };
        ret(result)
    }

    /// `sys_ioctl`: only `FIONBIO` (`*argp` an `int`, non-zero: set
    /// `O_NONBLOCK`); `ENOTTY` for other requests.
    ///
    /// # Safety
    /// For `FIONBIO`, `argp` is null or points to a readable `int`.
    pub unsafe fn ioctl(&self, fd: i32, cmd: i32, argp: *mut u8) -> i32 {
        let result = self.fds.get(fd).and_then(|desc| match cmd {
            FIONBIO => {
                // SAFETY: forwarded contract.
                let on = unsafe { user::read(argp.cast::<i32>()) }?;
                desc.set_nonblocking(on != 0).map(|()| 0)
            }
            _ => Err(Errno::ENOTTY),
        });
        ret(result)
    }

    /// Whether `fd` is a terminal (hermit-abi's `isatty` is a library
    /// function; this is what a kernel-side one would answer).
    pub fn is_terminal(&self, fd: i32) -> Result<bool, Errno> {
        Ok(self.fds.object(fd)?.is_terminal())
    }
}
