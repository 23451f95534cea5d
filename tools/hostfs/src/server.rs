//! The per-VM file server: mounts, the handle table and the operations.

use std::ffi::CString;
use std::mem::size_of;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use hermit_interface::errno::Errno;
use hermit_interface::fs::{
    DirEntryHeader, FileStat, FsCall, Op, PATH_MAX, STAT_NOFOLLOW, file_type, open_flags, whence,
};

use crate::buffers::{CallBuffers, PathArg};
use crate::mount::{Mount, MountError};
use crate::sys;

/// The most handles one VM can have open at once, the standard handles
/// included; an `Open` beyond it fails with `EMFILE`.
pub const MAX_HANDLES: usize = 1024;

/// The most bytes one `ReadDir` stores, whatever the buffer's size (the
/// records are packed in host memory first).
pub const MAX_READDIR: usize = 64 << 10;

/// Size of the host buffer for `getdents64` (much more than one record).
const HOST_DIRENT_BUF: usize = 16 << 10;

/// How many times `Open` looks again when the file changed between the
/// type check and the open (a host process racing with it).
const OPEN_TRIES: usize = 4;

/// A standard handle's host descriptor.
#[derive(Debug)]
enum Stdio {
    /// One of this process's descriptors 0-2, never closed by the server.
    Process(RawFd),
    /// A descriptor given to [`Server::with_stdio`].
    Owned(OwnedFd),
}

impl Stdio {
    fn raw(&self) -> RawFd {
        match self {
            Self::Process(fd) => *fd,
            Self::Owned(fd) => fd.as_raw_fd(),
        }
    }
}

/// An open directory: its descriptor's position is the `ReadDir` cursor.
#[derive(Debug)]
struct Dir {
    fd: OwnedFd,
    /// Held across one `ReadDir` (or a rewind), so concurrent calls on the
    /// same handle each see whole records. Only this handle's callers wait.
    cursor: Mutex<()>,
}

/// What a handle refers to.
#[derive(Debug)]
enum Handle {
    /// Standard input: read only.
    Input(Stdio),
    /// Standard output or error: write only.
    Output(Stdio),
    /// A regular file.
    File(OwnedFd),
    /// A directory (for `ReadDir`, `Fstat`).
    Dir(Dir),
}

/// The host side of one VM's file-system protocol: serves
/// [`FsCall`]s on the VM's mounts and keeps its handle table.
///
/// `Sync`: several vCPU threads call [`Server::call`] at once. The table's
/// lock is held only to look up, add or remove an entry, never across I/O;
/// a handle closed while another thread uses it stays open until that use
/// ends.
#[derive(Debug)]
pub struct Server {
    mounts: Vec<Mount>,
    table: Mutex<Vec<Option<Arc<Handle>>>>,
    stopping: AtomicBool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section leaves the data consistent (single pushes and
    // takes), so a poisoned lock's data is still good.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Server {
    /// A server for `mounts` (mount index `i` is `mounts[i]`) whose
    /// handles 0, 1 and 2 are this process's stdin, stdout and stderr.
    /// Fails if two mounts have the same guest path.
    pub fn new(mounts: Vec<Mount>) -> Result<Self, MountError> {
        Self::build(
            mounts,
            [
                Stdio::Process(libc::STDIN_FILENO),
                Stdio::Process(libc::STDOUT_FILENO),
                Stdio::Process(libc::STDERR_FILENO),
            ],
        )
    }

    /// Like [`Server::new`], with handles 0, 1 and 2 reading `stdin` and
    /// writing `stdout` and `stderr` (e.g. pipes).
    pub fn with_stdio(
        mounts: Vec<Mount>,
        stdin: OwnedFd,
        stdout: OwnedFd,
        stderr: OwnedFd,
    ) -> Result<Self, MountError> {
        Self::build(
            mounts,
            [
                Stdio::Owned(stdin),
                Stdio::Owned(stdout),
                Stdio::Owned(stderr),
            ],
        )
    }

    fn build(mounts: Vec<Mount>, stdio: [Stdio; 3]) -> Result<Self, MountError> {
        for (i, m) in mounts.iter().enumerate() {
            if mounts[..i].iter().any(|o| o.guest() == m.guest()) {
                return Err(MountError::Duplicate(m.guest().to_owned()));
            }
        }
        let [stdin, stdout, stderr] = stdio;
        let table = vec![
            Some(Arc::new(Handle::Input(stdin))),
            Some(Arc::new(Handle::Output(stdout))),
            Some(Arc::new(Handle::Output(stderr))),
        ];
        Ok(Self {
            mounts,
            table: Mutex::new(table),
            stopping: AtomicBool::new(false),
        })
    }

    /// The mounts, by index.
    pub fn mounts(&self) -> &[Mount] {
        &self.mounts
    }

    /// Tells the server that the VM is ending: from now on a call blocked in
    /// the host (a read of stdin) that a signal interrupts returns `EINTR`
    /// instead of being restarted, so the vCPU thread can leave. Call it
    /// before kicking the vCPU threads.
    pub fn stop(&self) {
        self.stopping.store(true, Ordering::Relaxed);
    }

    /// Serves one call; returns `FsCall::result` (a value, or a negative
    /// [`Errno`]). Never panics, whatever the call holds.
    pub fn call(&self, call: &FsCall, bufs: &mut dyn CallBuffers) -> i64 {
        match self.dispatch(call, bufs) {
            Ok(value) => value,
            Err(e) => e.to_neg(),
        }
    }

    fn dispatch(&self, call: &FsCall, bufs: &mut dyn CallBuffers) -> Result<i64, Errno> {
        let Some(op) = Op::from_raw(call.op) else {
            return Err(Errno::ENOSYS);
        };
        match op {
            Op::MountInfo => self.mount_info(call, bufs),
            Op::Open => self.open(call, bufs),
            Op::Close => self.close(call.handle),
            Op::Read => self.read(call, bufs),
            Op::Write => self.write(call, bufs),
            Op::Pread => self.pread(call, bufs),
            Op::Pwrite => self.pwrite(call, bufs),
            Op::Lseek => self.lseek(call),
            Op::Fstat => self.fstat(call, bufs),
            Op::Stat => self.stat(call, bufs),
            Op::Unlink => self.remove(call, bufs, 0),
            Op::Rmdir => self.remove(call, bufs, libc::AT_REMOVEDIR),
            Op::Mkdir => self.mkdir(call, bufs),
            Op::Rename => self.rename(call, bufs),
            Op::ReadDir => self.read_dir(call, bufs),
            Op::Ftruncate => self.ftruncate(call),
        }
    }

    // ---- handles -------------------------------------------------------

    fn handle(&self, handle: i32) -> Result<Arc<Handle>, Errno> {
        let index = usize::try_from(handle).map_err(|_| Errno::EBADF)?;
        lock(&self.table)
            .get(index)
            .and_then(Option::clone)
            .ok_or(Errno::EBADF)
    }

    /// Adds `handle` at the lowest free number from 3 on.
    fn insert(&self, handle: Handle) -> Result<i64, Errno> {
        let mut table = lock(&self.table);
        let free = table
            .iter()
            .skip(3)
            .position(Option::is_none)
            .map(|i| i + 3);
        let index = match free {
            Some(i) => i,
            None if table.len() < MAX_HANDLES => {
                table.push(None);
                table.len() - 1
            }
            None => return Err(Errno::EMFILE),
        };
        table[index] = Some(Arc::new(handle));
        Ok(index as i64)
    }

    fn close(&self, handle: i32) -> Result<i64, Errno> {
        let index = usize::try_from(handle).map_err(|_| Errno::EBADF)?;
        let taken = lock(&self.table)
            .get_mut(index)
            .and_then(Option::take)
            .ok_or(Errno::EBADF)?;
        // Dropped outside the lock: closing may block (NFS flushes), and a
        // use in progress on another thread keeps it open until it ends.
        drop(taken);
        Ok(0)
    }

    // ---- paths ---------------------------------------------------------

    fn mount(&self, index: i32) -> Result<&Mount, Errno> {
        usize::try_from(index)
            .ok()
            .and_then(|i| self.mounts.get(i))
            .ok_or(Errno::ENOENT)
    }

    /// The checked path `which` of `call`: at most `PATH_MAX` bytes, UTF-8,
    /// no NUL, relative.
    fn path(call: &FsCall, bufs: &mut dyn CallBuffers, which: PathArg) -> Result<String, Errno> {
        let slice = match which {
            PathArg::Path => call.path,
            PathArg::Path2 => call.path2,
        };
        if slice.len > PATH_MAX {
            return Err(Errno::ENAMETOOLONG);
        }
        let bytes = bufs.path(which)?;
        if bytes.len() as u64 != slice.len {
            return Err(Errno::EFAULT);
        }
        let path = String::from_utf8(bytes).map_err(|_| Errno::EINVAL)?;
        if path.contains('\0') || path.starts_with('/') {
            return Err(Errno::EINVAL);
        }
        Ok(path)
    }

    /// Resolves `path` beneath `mount` with `openat2`; a path leading out
    /// of the mount fails with `EACCES`.
    fn resolve(&self, mount: &Mount, path: &str, flags: i32, mode: u32) -> Result<OwnedFd, Errno> {
        let c_path = normalised(path)?;
        sys::open_beneath(&self.stopping, mount.dir(), &c_path, flags, mode)
            .map_err(|e| if e == Errno::EXDEV { Errno::EACCES } else { e })
    }

    /// The parent directory of `path` (resolved beneath `mount`, as an
    /// `O_PATH` descriptor) and its last component, which must be a real
    /// name (not empty, `.` or `..`).
    fn parent(&self, mount: &Mount, path: &str) -> Result<(OwnedFd, CString), Errno> {
        let trimmed = path.trim_end_matches('/');
        let (parent, name) = trimmed.rsplit_once('/').unwrap_or(("", trimmed));
        if name.is_empty() || name == "." || name == ".." {
            return Err(Errno::EINVAL);
        }
        let dir = self.resolve(mount, parent, libc::O_PATH | libc::O_DIRECTORY, 0)?;
        let name = CString::new(name).map_err(|_| Errno::EINVAL)?;
        Ok((dir, name))
    }

    // ---- operations ----------------------------------------------------

    fn mount_info(&self, call: &FsCall, bufs: &mut dyn CallBuffers) -> Result<i64, Errno> {
        let mount = self.mount(call.handle)?;
        let guest = mount.guest().as_bytes();
        bufs.data()?.store(guest)?;
        Ok(guest.len() as i64)
    }

    fn open(&self, call: &FsCall, bufs: &mut dyn CallBuffers) -> Result<i64, Errno> {
        use open_flags::*;
        let flags = call.flags;
        if flags & !ALLOWED != 0 || flags & O_ACCMODE == O_ACCMODE {
            return Err(Errno::EINVAL);
        }
        let mount = self.mount(call.handle)?;
        let path = Self::path(call, bufs, PathArg::Path)?;
        let create = flags & O_CREAT != 0;
        let exclusive = create && flags & O_EXCL != 0;
        let mut io = match flags & O_ACCMODE {
            O_RDONLY => libc::O_RDONLY,
            O_WRONLY => libc::O_WRONLY,
            _ => libc::O_RDWR,
        };
        if flags & O_TRUNC != 0 {
            io |= libc::O_TRUNC;
        }
        if flags & O_APPEND != 0 {
            io |= libc::O_APPEND;
        }
        let mut last = Errno::EAGAIN;
        for _ in 0..OPEN_TRIES {
            // Look at what is there without opening it for I/O: opening a
            // device or a FIFO can have effects (or block) by itself.
            let probe = match self.resolve(mount, &path, libc::O_PATH, 0) {
                Ok(probe) => probe,
                Err(Errno::ENOENT) if create => {
                    // O_EXCL always: never open something that appeared
                    // after the probe without looking at it first.
                    let created = self.resolve(
                        mount,
                        &path,
                        io | libc::O_CREAT | libc::O_EXCL | libc::O_NONBLOCK,
                        call.mode & 0o777,
                    );
                    match created {
                        Ok(fd) => return self.opened_file(fd, None),
                        Err(Errno::EEXIST) if !exclusive => {
                            last = Errno::EEXIST;
                            continue;
                        }
                        Err(e) => return Err(e),
                    }
                }
                Err(e) => return Err(e),
            };
            if exclusive {
                return Err(Errno::EEXIST);
            }
            let st = sys::fstat(probe.as_raw_fd())?;
            match st.mode & file_type::S_IFMT {
                file_type::S_IFDIR => {
                    if io != libc::O_RDONLY || create {
                        return Err(Errno::EISDIR);
                    }
                    let fd = self.resolve(mount, &path, libc::O_RDONLY | libc::O_DIRECTORY, 0)?;
                    if !same_file(&sys::fstat(fd.as_raw_fd())?, &st) {
                        last = Errno::EAGAIN;
                        continue;
                    }
                    return self.insert(Handle::Dir(Dir {
                        fd,
                        cursor: Mutex::new(()),
                    }));
                }
                file_type::S_IFREG => {
                    if flags & O_DIRECTORY != 0 {
                        return Err(Errno::ENOTDIR);
                    }
                    let fd = self.resolve(mount, &path, io | libc::O_NONBLOCK, 0)?;
                    match self.opened_file(fd, Some(&st)) {
                        Err(Errno::EAGAIN) => last = Errno::EAGAIN,
                        other => return other,
                    }
                }
                // Devices, FIFOs, sockets: never opened for the guest.
                _ => return Err(Errno::EACCES),
            }
        }
        Err(last)
    }

    /// Checks that `fd` (opened with `O_NONBLOCK`) is a regular file, the
    /// one `probed` saw if given (`EAGAIN` if it was replaced meanwhile),
    /// clears `O_NONBLOCK` and adds it to the table.
    fn opened_file(&self, fd: OwnedFd, probed: Option<&FileStat>) -> Result<i64, Errno> {
        let st = sys::fstat(fd.as_raw_fd())?;
        if st.mode & file_type::S_IFMT != file_type::S_IFREG {
            return Err(Errno::EACCES);
        }
        if probed.is_some_and(|p| !same_file(p, &st)) {
            return Err(Errno::EAGAIN);
        }
        sys::clear_nonblock(fd.as_raw_fd())?;
        self.insert(Handle::File(fd))
    }

    /// The descriptor for a `Read` or `Pread` (`positional`) of `handle`.
    fn readable(handle: &Handle, positional: bool) -> Result<RawFd, Errno> {
        match handle {
            Handle::Input(_) | Handle::Output(_) if positional => Err(Errno::ESPIPE),
            Handle::Input(s) => Ok(s.raw()),
            Handle::Output(_) => Err(Errno::EBADF),
            Handle::File(fd) => Ok(fd.as_raw_fd()),
            Handle::Dir(_) => Err(Errno::EISDIR),
        }
    }

    /// The descriptor for a `Write` or `Pwrite` (`positional`) of `handle`.
    fn writable(handle: &Handle, positional: bool) -> Result<RawFd, Errno> {
        match handle {
            Handle::Input(_) | Handle::Output(_) if positional => Err(Errno::ESPIPE),
            Handle::Output(s) => Ok(s.raw()),
            Handle::Input(_) | Handle::Dir(_) => Err(Errno::EBADF),
            Handle::File(fd) => Ok(fd.as_raw_fd()),
        }
    }

    fn read(&self, call: &FsCall, bufs: &mut dyn CallBuffers) -> Result<i64, Errno> {
        // The Arc keeps the descriptor open even if another vCPU closes the
        // handle during the read.
        let handle = self.handle(call.handle)?;
        let fd = Self::readable(&handle, false)?;
        let mut data = bufs.data()?;
        let (ptr, len) = (data.as_mut_ptr(), data.len());
        // SAFETY: `data` is valid for writes of `len` bytes while it lives
        // (its constructor's contract); `handle` keeps `fd` open.
        unsafe { sys::read(&self.stopping, fd, ptr, len) }
    }

    fn write(&self, call: &FsCall, bufs: &mut dyn CallBuffers) -> Result<i64, Errno> {
        let handle = self.handle(call.handle)?;
        let fd = Self::writable(&handle, false)?;
        let mut data = bufs.data()?;
        let (ptr, len) = (data.as_mut_ptr(), data.len());
        // SAFETY: `data` is valid for reads of `len` bytes while it lives;
        // `handle` keeps `fd` open.
        unsafe { sys::write(&self.stopping, fd, ptr, len) }
    }

    fn pread(&self, call: &FsCall, bufs: &mut dyn CallBuffers) -> Result<i64, Errno> {
        let handle = self.handle(call.handle)?;
        let fd = Self::readable(&handle, true)?;
        if call.offset < 0 {
            return Err(Errno::EINVAL);
        }
        let mut data = bufs.data()?;
        let (ptr, len) = (data.as_mut_ptr(), data.len());
        // SAFETY: as in `read`.
        unsafe { sys::pread(&self.stopping, fd, ptr, len, call.offset) }
    }

    fn pwrite(&self, call: &FsCall, bufs: &mut dyn CallBuffers) -> Result<i64, Errno> {
        let handle = self.handle(call.handle)?;
        let fd = Self::writable(&handle, true)?;
        if call.offset < 0 {
            return Err(Errno::EINVAL);
        }
        let mut data = bufs.data()?;
        let (ptr, len) = (data.as_mut_ptr(), data.len());
        // SAFETY: as in `write`.
        unsafe { sys::pwrite(&self.stopping, fd, ptr, len, call.offset) }
    }

    fn lseek(&self, call: &FsCall) -> Result<i64, Errno> {
        let how = match call.whence {
            whence::SEEK_SET => libc::SEEK_SET,
            whence::SEEK_CUR => libc::SEEK_CUR,
            whence::SEEK_END => libc::SEEK_END,
            _ => return Err(Errno::EINVAL),
        };
        match &*self.handle(call.handle)? {
            Handle::Input(_) | Handle::Output(_) => Err(Errno::ESPIPE),
            Handle::File(fd) => sys::lseek(fd.as_raw_fd(), call.offset, how),
            // Directory positions are opaque cookies: only a rewind.
            Handle::Dir(dir) if how == libc::SEEK_SET && call.offset == 0 => {
                let _cursor = lock(&dir.cursor);
                sys::lseek(dir.fd.as_raw_fd(), 0, libc::SEEK_SET)
            }
            Handle::Dir(_) => Err(Errno::EINVAL),
        }
    }

    fn ftruncate(&self, call: &FsCall) -> Result<i64, Errno> {
        if call.offset < 0 {
            return Err(Errno::EINVAL);
        }
        match &*self.handle(call.handle)? {
            Handle::Input(_) | Handle::Output(_) => Err(Errno::EINVAL),
            Handle::Dir(_) => Err(Errno::EISDIR),
            Handle::File(fd) => {
                sys::ftruncate(&self.stopping, fd.as_raw_fd(), call.offset).map(|()| 0)
            }
        }
    }

    /// Stores `st` into the call's buffer (`EFAULT` if it is too small).
    fn store_stat(call: &FsCall, bufs: &mut dyn CallBuffers, st: &FileStat) -> Result<i64, Errno> {
        let bytes = st.to_le_bytes();
        if call.buf.len < bytes.len() as u64 {
            return Err(Errno::EFAULT);
        }
        bufs.data()?.store(&bytes).map_err(|_| Errno::EFAULT)?;
        Ok(0)
    }

    fn fstat(&self, call: &FsCall, bufs: &mut dyn CallBuffers) -> Result<i64, Errno> {
        let st = match &*self.handle(call.handle)? {
            Handle::Input(s) | Handle::Output(s) => sys::fstat(s.raw())?,
            Handle::File(fd) => sys::fstat(fd.as_raw_fd())?,
            Handle::Dir(dir) => sys::fstat(dir.fd.as_raw_fd())?,
        };
        Self::store_stat(call, bufs, &st)
    }

    fn stat(&self, call: &FsCall, bufs: &mut dyn CallBuffers) -> Result<i64, Errno> {
        let nofollow = match call.flags {
            0 => 0,
            STAT_NOFOLLOW => libc::O_NOFOLLOW,
            _ => return Err(Errno::EINVAL),
        };
        if call.buf.len < size_of::<FileStat>() as u64 {
            return Err(Errno::EFAULT);
        }
        let mount = self.mount(call.handle)?;
        let path = Self::path(call, bufs, PathArg::Path)?;
        // An O_PATH descriptor follows a final symlink only beneath the
        // mount (or, with O_NOFOLLOW, is the link itself); it opens nothing
        // for I/O, so stat-ing a device has no effect on it.
        let fd = self.resolve(mount, &path, libc::O_PATH | nofollow, 0)?;
        let st = sys::fstat(fd.as_raw_fd())?;
        Self::store_stat(call, bufs, &st)
    }

    fn remove(&self, call: &FsCall, bufs: &mut dyn CallBuffers, flags: i32) -> Result<i64, Errno> {
        let mount = self.mount(call.handle)?;
        let path = Self::path(call, bufs, PathArg::Path)?;
        let (dir, name) = self.parent(mount, &path)?;
        sys::unlinkat(dir.as_fd(), &name, flags).map(|()| 0)
    }

    fn mkdir(&self, call: &FsCall, bufs: &mut dyn CallBuffers) -> Result<i64, Errno> {
        let mount = self.mount(call.handle)?;
        let path = Self::path(call, bufs, PathArg::Path)?;
        let (dir, name) = self.parent(mount, &path)?;
        sys::mkdirat(dir.as_fd(), &name, call.mode & 0o777).map(|()| 0)
    }

    fn rename(&self, call: &FsCall, bufs: &mut dyn CallBuffers) -> Result<i64, Errno> {
        let from_mount = self.mount(call.handle)?;
        let to_index = i32::try_from(call.flags).map_err(|_| Errno::ENOENT)?;
        let to_mount = self.mount(to_index)?;
        if call.handle != to_index {
            return Err(Errno::EXDEV);
        }
        let from = Self::path(call, bufs, PathArg::Path)?;
        let to = Self::path(call, bufs, PathArg::Path2)?;
        let (from_dir, from_name) = self.parent(from_mount, &from)?;
        let (to_dir, to_name) = self.parent(to_mount, &to)?;
        sys::renameat(from_dir.as_fd(), &from_name, to_dir.as_fd(), &to_name).map(|()| 0)
    }

    fn read_dir(&self, call: &FsCall, bufs: &mut dyn CallBuffers) -> Result<i64, Errno> {
        let handle = self.handle(call.handle)?;
        let Handle::Dir(dir) = &*handle else {
            return Err(Errno::ENOTDIR);
        };
        let mut data = bufs.data()?;
        let room = data.len().min(MAX_READDIR);
        let mut out = Vec::with_capacity(room);
        let mut host = vec![0u8; HOST_DIRENT_BUF];
        let fd = dir.fd.as_raw_fd();
        let _cursor = lock(&dir.cursor);
        'batches: loop {
            let before = sys::lseek(fd, 0, libc::SEEK_CUR)?;
            let n = sys::getdents64(&self.stopping, fd, &mut host)?;
            if n == 0 {
                break;
            }
            // Where the next call resumes: after the last record taken.
            let mut resume = before;
            let mut records = host.get(..n).ok_or(Errno::EIO)?;
            while !records.is_empty() {
                let entry = HostDirent::parse(records)?;
                records = &records[entry.record_len..];
                if entry.name == b"." || entry.name == b".." {
                    resume = entry.next;
                    continue;
                }
                let len = DirEntryHeader::record_len_for(entry.name.len());
                if out.len() + len > room {
                    sys::lseek(fd, resume, libc::SEEK_SET)?;
                    if out.is_empty() {
                        return Err(Errno::EINVAL);
                    }
                    break 'batches;
                }
                let start = out.len();
                out.resize(start + len, 0);
                DirEntryHeader::put_record(
                    &mut out[start..],
                    entry.ino,
                    u16::from(entry.kind),
                    entry.name,
                )
                .ok_or(Errno::EIO)?;
                resume = entry.next;
            }
        }
        data.store(&out)?;
        Ok(out.len() as i64)
    }
}

/// One `linux_dirent64` record as `getdents64` stores it.
struct HostDirent<'a> {
    ino: u64,
    /// `d_off`: the directory position after this record.
    next: i64,
    record_len: usize,
    kind: u8,
    name: &'a [u8],
}

impl<'a> HostDirent<'a> {
    /// Offset of `d_name` (after ino, off, reclen, type).
    const NAME: usize = 8 + 8 + 2 + 1;

    /// The record at the start of `bytes`; `EIO` if the kernel's data is
    /// malformed (it never is, but the server does not panic on it).
    fn parse(bytes: &'a [u8]) -> Result<Self, Errno> {
        let field = |at: usize, n: usize| bytes.get(at..at + n).ok_or(Errno::EIO);
        let u64_at = |at| -> Result<u64, Errno> {
            let mut b = [0u8; 8];
            b.copy_from_slice(field(at, 8)?);
            Ok(u64::from_ne_bytes(b))
        };
        let ino = u64_at(0)?;
        let next = u64_at(8)? as i64;
        let reclen = field(16, 2)?;
        let record_len = usize::from(u16::from_ne_bytes([reclen[0], reclen[1]]));
        let kind = field(18, 1)?[0];
        if record_len <= Self::NAME || record_len > bytes.len() {
            return Err(Errno::EIO);
        }
        let raw = &bytes[Self::NAME..record_len];
        let name = &raw[..raw.iter().position(|&b| b == 0).unwrap_or(raw.len())];
        if name.len() > usize::from(u16::MAX) {
            return Err(Errno::EIO);
        }
        Ok(Self {
            ino,
            next,
            record_len,
            kind,
            name,
        })
    }
}

/// How many bytes of `call`'s buffer a successful call with `result`
/// stored: what a byte-stream transport sends back after its
/// [`StreamReply`](hermit_interface::fs::stream::StreamReply).
pub fn stored_len(call: &FsCall, result: i64) -> u64 {
    call.stored_len(result)
}

/// `path` without empty and `.` components (`.` if nothing is left), as a
/// C string; `..` and a trailing `/` stay for `openat2` to judge.
fn normalised(path: &str) -> Result<CString, Errno> {
    let parts: Vec<&str> = path
        .split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .collect();
    let joined = if parts.is_empty() {
        ".".to_owned()
    } else if path.ends_with('/') {
        // A trailing '/' keeps its meaning: the path must be a directory.
        parts.join("/") + "/"
    } else {
        parts.join("/")
    };
    CString::new(joined).map_err(|_| Errno::EINVAL)
}

/// Whether two stats describe the same file.
fn same_file(a: &FileStat, b: &FileStat) -> bool {
    (a.dev, a.ino, a.mode & file_type::S_IFMT) == (b.dev, b.ino, b.mode & file_type::S_IFMT)
}
