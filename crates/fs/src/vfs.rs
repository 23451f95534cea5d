//! The virtual file system: the mount table, the file-descriptor table and
//! the working directory of the one process the kernel runs.

use alloc::string::{String, ToString};
use alloc::sync::Arc;
use alloc::vec::Vec;

use spin::{Mutex, RwLock};

use crate::memfs::{Clock, MemFs};
use crate::path::{names_dir, normalize, split_last, strip_base};
use crate::{DirEntry, Errno, File, FileStat, FileSystem, FileType, OpenFlags, Result, SeekFrom};

/// The number of file descriptors (`0..MAX_FDS`); `open` beyond it fails
/// with `EMFILE`.
pub const MAX_FDS: usize = 1024;

struct Mount {
    /// Normalised absolute path.
    path: Arc<str>,
    fs: Arc<dyn FileSystem>,
}

/// A path looked up in the mount table.
struct Resolved {
    /// The normalised absolute path.
    abs: String,
    /// The mount it lies in.
    mount: Arc<str>,
    fs: Arc<dyn FileSystem>,
}

impl Resolved {
    /// The path relative to the mount's root.
    fn rel(&self) -> &str {
        // `mount` was found as a base of `abs`, so this cannot fail.
        strip_base(&self.abs, &self.mount).unwrap_or("")
    }

    fn is_mount_point(&self) -> bool {
        *self.abs == *self.mount
    }
}

/// The virtual file system: a mount table, one file-descriptor table and a
/// working directory. All methods take `&self`; the tables are behind spin
/// locks held only for a lookup, never during I/O.
pub struct Vfs {
    mounts: RwLock<Vec<Mount>>,
    fds: Mutex<Vec<Option<Arc<dyn File>>>>,
    cwd: RwLock<String>,
}

impl Vfs {
    /// A VFS whose root is a new [`MemFs`] with an empty `/tmp`, times 0.
    pub fn new() -> Self {
        Self::with_clock(|| 0)
    }

    /// A VFS whose root is a new [`MemFs`] with an empty `/tmp` (mode
    /// `0o1777`), times from `clock`.
    pub fn with_clock(clock: Clock) -> Self {
        let root = MemFs::with_clock(clock);
        // A fresh MemFs has an empty root, so this cannot fail.
        let _ = root.mkdir("tmp", 0o1777);
        Self::with_root(Arc::new(root))
    }

    /// A VFS with `root` mounted at `/` and nothing else.
    pub fn with_root(root: Arc<dyn FileSystem>) -> Self {
        Self {
            mounts: RwLock::new(alloc::vec![Mount {
                path: Arc::from("/"),
                fs: root,
            }]),
            fds: Mutex::new(Vec::new()),
            cwd: RwLock::new("/".to_string()),
        }
    }

    fn resolve(&self, path: &str) -> Result<Resolved> {
        let abs = {
            let cwd = self.cwd.read();
            normalize(&cwd, path)?
        };
        let mounts = self.mounts.read();
        let mount = mounts
            .iter()
            .filter(|m| strip_base(&abs, &m.path).is_some())
            .max_by_key(|m| m.path.len())
            // The root is always mounted and is a base of every path.
            .ok_or(Errno::ENOENT)?;
        Ok(Resolved {
            mount: mount.path.clone(),
            fs: mount.fs.clone(),
            abs,
        })
    }

    /// Mounts `fs` at `at`, creating the directory `at` (and its parents)
    /// in the file system below if missing. `EBUSY` if `at` already is a
    /// mount point, `ENOTDIR` if it exists and is not a directory.
    pub fn mount(&self, at: &str, fs: Arc<dyn FileSystem>) -> Result<()> {
        let r = self.resolve(at)?;
        if r.is_mount_point() {
            return Err(Errno::EBUSY);
        }
        // mkdir -p in the file system that holds the mount point. Nested
        // mounts cannot be in the way: any of them would be a longer base.
        let rel = r.rel();
        let prefixes = rel.match_indices('/').map(|(i, _)| &rel[..i]);
        for dir in prefixes.chain([rel]) {
            match r.fs.mkdir(dir, 0o755) {
                Ok(()) | Err(Errno::EEXIST) => {}
                Err(e) => return Err(e),
            }
        }
        if FileType::from_mode(r.fs.stat(rel, true)?.mode) != FileType::Dir {
            return Err(Errno::ENOTDIR);
        }
        let mut mounts = self.mounts.write();
        if mounts.iter().any(|m| *m.path == *r.abs) {
            return Err(Errno::EBUSY);
        }
        mounts.push(Mount {
            path: Arc::from(r.abs.as_str()),
            fs,
        });
        Ok(())
    }

    /// Unmounts the file system at `at` and returns it (files open on it
    /// stay usable). `EINVAL` if `at` is not a mount point, `EBUSY` for `/`
    /// and for a mount with other mounts beneath it.
    pub fn unmount(&self, at: &str) -> Result<Arc<dyn FileSystem>> {
        let abs = normalize(&self.cwd.read(), at)?;
        if abs == "/" {
            return Err(Errno::EBUSY);
        }
        let mut mounts = self.mounts.write();
        let index = mounts
            .iter()
            .position(|m| *m.path == *abs)
            .ok_or(Errno::EINVAL)?;
        if mounts
            .iter()
            .any(|m| strip_base(&m.path, &abs).is_some_and(|rest| !rest.is_empty()))
        {
            return Err(Errno::EBUSY);
        }
        Ok(mounts.remove(index).fs)
    }

    /// The mount points, in the order they were mounted.
    pub fn mount_points(&self) -> Vec<String> {
        self.mounts
            .read()
            .iter()
            .map(|m| m.path.to_string())
            .collect()
    }

    /// Installs `file` as descriptor `fd` (closing what was there), e.g. the
    /// console as 0, 1 and 2. `EBADF` if `fd` is out of range.
    pub fn set_fd(&self, fd: i32, file: Arc<dyn File>) -> Result<()> {
        let index = fd_index(fd)?;
        let old = {
            let mut fds = self.fds.lock();
            if fds.len() <= index {
                fds.resize(index + 1, None);
            }
            fds[index].replace(file)
        };
        // Dropping may do I/O (a host file's close): not under the lock.
        drop(old);
        Ok(())
    }

    /// The lowest free descriptor now referring to `file`.
    fn install(&self, file: Arc<dyn File>) -> Result<i32> {
        let mut fds = self.fds.lock();
        let index = match fds.iter().position(Option::is_none) {
            Some(index) => index,
            None if fds.len() < MAX_FDS => {
                fds.push(None);
                fds.len() - 1
            }
            None => return Err(Errno::EMFILE),
        };
        fds[index] = Some(file);
        // index < MAX_FDS, which fits an i32.
        i32::try_from(index).map_err(|_| Errno::EMFILE)
    }

    /// Opens `path` and returns the lowest free descriptor. A path ending in
    /// `/` must be a directory.
    pub fn open(&self, path: &str, flags: OpenFlags, mode: u32) -> Result<i32> {
        let mut flags = flags;
        if names_dir(path) {
            if flags.contains(OpenFlags::CREAT) {
                return Err(Errno::EISDIR);
            }
            flags = flags | OpenFlags::DIRECTORY;
        }
        let r = self.resolve(path)?;
        let file = r.fs.open(r.rel(), flags, mode)?;
        self.install(file)
    }

    /// Closes `fd`; the file is closed when no other descriptor shares it.
    pub fn close(&self, fd: i32) -> Result<()> {
        let index = fd_index(fd)?;
        let file = self.fds.lock().get_mut(index).and_then(Option::take);
        match file {
            // Dropped here, after the lock.
            Some(_) => Ok(()),
            None => Err(Errno::EBADF),
        }
    }

    /// The open file behind `fd` (`EBADF` if none).
    pub fn file(&self, fd: i32) -> Result<Arc<dyn File>> {
        let index = fd_index(fd)?;
        self.fds
            .lock()
            .get(index)
            .and_then(Option::clone)
            .ok_or(Errno::EBADF)
    }

    /// Reads from `fd` at its position.
    pub fn read(&self, fd: i32, buf: &mut [u8]) -> Result<usize> {
        self.file(fd)?.read(buf)
    }

    /// Writes to `fd` at its position.
    pub fn write(&self, fd: i32, buf: &[u8]) -> Result<usize> {
        self.file(fd)?.write(buf)
    }

    /// Reads from `fd` at `offset`.
    pub fn pread(&self, fd: i32, buf: &mut [u8], offset: u64) -> Result<usize> {
        self.file(fd)?.pread(buf, offset)
    }

    /// Writes to `fd` at `offset`.
    pub fn pwrite(&self, fd: i32, buf: &[u8], offset: u64) -> Result<usize> {
        self.file(fd)?.pwrite(buf, offset)
    }

    /// Moves `fd`'s position; returns the new one.
    pub fn lseek(&self, fd: i32, pos: SeekFrom) -> Result<u64> {
        self.file(fd)?.seek(pos)
    }

    /// The status of the file behind `fd`.
    pub fn fstat(&self, fd: i32) -> Result<FileStat> {
        self.file(fd)?.stat()
    }

    /// Truncates or extends the file behind `fd`.
    pub fn ftruncate(&self, fd: i32, len: u64) -> Result<()> {
        self.file(fd)?.truncate(len)
    }

    /// The next batch of entries of the directory `fd` (empty at the end).
    /// Mount points are not added here (see [`read_dir_path`](Self::read_dir_path)).
    pub fn read_dir(&self, fd: i32) -> Result<Vec<DirEntry>> {
        self.file(fd)?.read_dir()
    }

    /// Whether `fd` is a terminal.
    pub fn is_terminal(&self, fd: i32) -> Result<bool> {
        Ok(self.file(fd)?.is_terminal())
    }

    /// A second descriptor (the lowest free) for `fd`'s open file: they
    /// share the position.
    pub fn dup(&self, fd: i32) -> Result<i32> {
        let file = self.file(fd)?;
        self.install(file)
    }

    /// Makes `new` refer to `old`'s open file, closing what `new` was.
    pub fn dup2(&self, old: i32, new: i32) -> Result<i32> {
        let file = self.file(old)?;
        if old != new {
            self.set_fd(new, file)?;
        }
        Ok(new)
    }

    fn stat_impl(&self, path: &str, follow: bool) -> Result<FileStat> {
        let r = self.resolve(path)?;
        let st = r.fs.stat(r.rel(), follow)?;
        if names_dir(path) && FileType::from_mode(st.mode) != FileType::Dir {
            return Err(Errno::ENOTDIR);
        }
        Ok(st)
    }

    /// The status of `path` (following a final symbolic link).
    pub fn stat(&self, path: &str) -> Result<FileStat> {
        self.stat_impl(path, true)
    }

    /// The status of `path` itself.
    pub fn lstat(&self, path: &str) -> Result<FileStat> {
        self.stat_impl(path, false)
    }

    /// Removes the non-directory `path`.
    pub fn unlink(&self, path: &str) -> Result<()> {
        if names_dir(path) {
            // Only a directory matches `dir/`, and unlink refuses those.
            return Err(self.stat(path).err().unwrap_or(Errno::EISDIR));
        }
        let r = self.resolve(path)?;
        if r.is_mount_point() {
            return Err(Errno::EBUSY);
        }
        r.fs.unlink(r.rel())
    }

    /// Creates the directory `path`.
    pub fn mkdir(&self, path: &str, mode: u32) -> Result<()> {
        let r = self.resolve(path)?;
        r.fs.mkdir(r.rel(), mode)
    }

    /// Removes the empty directory `path`.
    pub fn rmdir(&self, path: &str) -> Result<()> {
        let r = self.resolve(path)?;
        if r.is_mount_point() {
            return Err(Errno::EBUSY);
        }
        r.fs.rmdir(r.rel())
    }

    /// Renames `from` to `to`: `EXDEV` across mounts, `EBUSY` for a mount
    /// point or a directory holding one.
    pub fn rename(&self, from: &str, to: &str) -> Result<()> {
        let src = self.resolve(from)?;
        let dst = self.resolve(to)?;
        let holds_mount = self
            .mounts
            .read()
            .iter()
            .any(|m| strip_base(&m.path, &src.abs).is_some());
        if holds_mount || dst.is_mount_point() {
            return Err(Errno::EBUSY);
        }
        if src.mount != dst.mount {
            return Err(Errno::EXDEV);
        }
        if (names_dir(from) || names_dir(to))
            && FileType::from_mode(src.fs.stat(src.rel(), false)?.mode) != FileType::Dir
        {
            return Err(Errno::ENOTDIR);
        }
        src.fs.rename(src.rel(), dst.rel())
    }

    /// Changes the working directory (`ENOTDIR` unless a directory).
    pub fn chdir(&self, path: &str) -> Result<()> {
        let r = self.resolve(path)?;
        let st = r.fs.stat(r.rel(), true)?;
        if FileType::from_mode(st.mode) != FileType::Dir {
            return Err(Errno::ENOTDIR);
        }
        *self.cwd.write() = r.abs;
        Ok(())
    }

    /// The working directory (normalised, absolute).
    pub fn getcwd(&self) -> String {
        self.cwd.read().clone()
    }

    /// Every entry of the directory `path`, including the mount points in
    /// it.
    pub fn read_dir_path(&self, path: &str) -> Result<Vec<DirEntry>> {
        let r = self.resolve(path)?;
        let dir =
            r.fs.open(r.rel(), OpenFlags::RDONLY | OpenFlags::DIRECTORY, 0)?;
        let mut entries = Vec::new();
        loop {
            let batch = dir.read_dir()?;
            if batch.is_empty() {
                break;
            }
            entries.extend(batch);
        }
        let children: Vec<(String, Arc<dyn FileSystem>)> = self
            .mounts
            .read()
            .iter()
            .filter_map(|m| match split_last(&m.path) {
                Some((parent, name)) if parent == r.abs => Some((name.to_string(), m.fs.clone())),
                _ => None,
            })
            .collect();
        for (name, fs) in children {
            if !entries.iter().any(|e| e.name == name) {
                let ino = fs.stat("", true).map_or(0, |st| st.ino);
                entries.push(DirEntry {
                    name,
                    ino,
                    kind: FileType::Dir,
                });
            }
        }
        Ok(entries)
    }
}

impl Default for Vfs {
    fn default() -> Self {
        Self::new()
    }
}

fn fd_index(fd: i32) -> Result<usize> {
    match usize::try_from(fd) {
        Ok(index) if index < MAX_FDS => Ok(index),
        _ => Err(Errno::EBADF),
    }
}

#[cfg(test)]
mod tests;
