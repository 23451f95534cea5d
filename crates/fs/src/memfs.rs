//! An in-memory file system: regular files (a `Vec<u8>` each) and
//! directories, with inode numbers, link counts and times.
//!
//! Locking: one reader-writer lock over the namespace (every directory's
//! entries), taken for path operations, and one lock per inode for its data
//! and metadata, taken for I/O on open files. The namespace lock is always
//! taken first, so I/O on open files never waits for a path operation on
//! another file for longer than a table lookup.
//!
//! Missing: symbolic and hard links, permission checks, sparse storage
//! (a write far past the end allocates the zeros), a size limit for the
//! whole file system.

use alloc::collections::BTreeMap;
use alloc::string::{String, ToString};
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::ops::Bound;
use core::sync::atomic::{AtomicU64, Ordering};

use hermit_interface::fs::file_type::{S_IFDIR, S_IFREG};
use spin::{Mutex, RwLock};

use crate::path::{check_relative, components, split_last};
use crate::{DirEntry, Errno, File, FileStat, FileSystem, FileType, OpenFlags, Result, SeekFrom};

/// A clock: nanoseconds since the Unix epoch.
pub type Clock = fn() -> u64;

/// The largest file, in bytes (1 TiB): writes and truncations beyond it
/// fail with `EFBIG`.
pub const MAX_FILE_SIZE: u64 = 1 << 40;

/// Entries returned per [`File::read_dir`] call.
const DIR_BATCH: usize = 128;

const ROOT_INO: u64 = 1;

/// Device numbers, one per `MemFs`, so `(dev, ino)` identifies a file.
static NEXT_DEV: AtomicU64 = AtomicU64::new(1);

fn zero_clock() -> u64 {
    0
}

/// An in-memory file system.
pub struct MemFs {
    inner: Arc<Inner>,
}

struct Inner {
    dev: u64,
    clock: Clock,
    next_ino: AtomicU64,
    ns: RwLock<Namespace>,
}

/// Every directory, by inode number.
struct Namespace {
    dirs: BTreeMap<u64, Dir>,
}

struct Dir {
    node: Arc<Node>,
    parent: u64,
    entries: BTreeMap<String, Arc<Node>>,
    /// Number of entries that are directories (for the link count).
    subdirs: u64,
}

struct Node {
    ino: u64,
    is_dir: bool,
    state: Mutex<NodeState>,
}

struct NodeState {
    perm: u32,
    /// Links from directories; 0 once removed (the data lives on while open).
    nlink: u64,
    data: Vec<u8>,
    atime: u64,
    mtime: u64,
    ctime: u64,
}

impl Node {
    fn new(ino: u64, is_dir: bool, perm: u32, now: u64) -> Arc<Self> {
        Arc::new(Self {
            ino,
            is_dir,
            state: Mutex::new(NodeState {
                perm: perm & 0o7777,
                nlink: 1,
                data: Vec::new(),
                atime: now,
                mtime: now,
                ctime: now,
            }),
        })
    }

    fn kind(&self) -> FileType {
        if self.is_dir {
            FileType::Dir
        } else {
            FileType::File
        }
    }

    fn touch(&self, now: u64) {
        let mut s = self.state.lock();
        s.mtime = now;
        s.ctime = now;
    }
}

impl Namespace {
    fn dir(&self, ino: u64) -> Result<&Dir> {
        // A directory node without a table entry has been removed.
        self.dirs.get(&ino).ok_or(Errno::ENOENT)
    }

    fn dir_mut(&mut self, ino: u64) -> Result<&mut Dir> {
        self.dirs.get_mut(&ino).ok_or(Errno::ENOENT)
    }

    /// The node at `path` (checked with `check_relative`).
    fn lookup(&self, path: &str) -> Result<Arc<Node>> {
        let mut node = &self.dir(ROOT_INO)?.node;
        for name in components(path) {
            if !node.is_dir {
                return Err(Errno::ENOTDIR);
            }
            node = self.dir(node.ino)?.entries.get(name).ok_or(Errno::ENOENT)?;
        }
        Ok(node.clone())
    }

    /// The directory holding `path`'s last component, and that component.
    fn parent<'p>(&self, path: &'p str) -> Result<(u64, &'p str)> {
        let (parent, name) = split_last(path).ok_or(Errno::EINVAL)?;
        let dir = self.lookup(parent)?;
        if !dir.is_dir {
            return Err(Errno::ENOTDIR);
        }
        Ok((dir.ino, name))
    }
}

impl Inner {
    fn now(&self) -> u64 {
        (self.clock)()
    }

    fn new_ino(&self) -> u64 {
        self.next_ino.fetch_add(1, Ordering::Relaxed)
    }

    /// Links a new node `name` into directory `parent`.
    fn link_new(
        &self,
        ns: &mut Namespace,
        parent: u64,
        name: &str,
        is_dir: bool,
        mode: u32,
    ) -> Result<Arc<Node>> {
        let now = self.now();
        let node = Node::new(self.new_ino(), is_dir, mode, now);
        let dir = ns.dir_mut(parent)?;
        if dir.entries.contains_key(name) {
            return Err(Errno::EEXIST);
        }
        dir.entries.insert(name.to_string(), node.clone());
        if is_dir {
            dir.subdirs += 1;
        }
        dir.node.touch(now);
        if is_dir {
            ns.dirs.insert(
                node.ino,
                Dir {
                    node: node.clone(),
                    parent,
                    entries: BTreeMap::new(),
                    subdirs: 0,
                },
            );
        }
        Ok(node)
    }

    /// The status of `node`; `ns` is needed for a directory's link count.
    fn stat_node(&self, ns: &Namespace, node: &Node) -> FileStat {
        let subdirs = ns.dirs.get(&node.ino).map(|d| d.subdirs);
        let s = node.state.lock();
        let (mode, size, nlink) = if node.is_dir {
            let nlink = match subdirs {
                Some(n) if s.nlink > 0 => 2 + n,
                _ => 0,
            };
            (S_IFDIR | s.perm, 0, nlink)
        } else {
            (S_IFREG | s.perm, s.data.len() as u64, s.nlink)
        };
        let (atime_sec, atime_nsec) = split_ns(s.atime);
        let (mtime_sec, mtime_nsec) = split_ns(s.mtime);
        let (ctime_sec, ctime_nsec) = split_ns(s.ctime);
        // Sizes stay below MAX_FILE_SIZE.
        let blocks = i64::try_from(size.div_ceil(512)).unwrap_or(i64::MAX);
        let size = i64::try_from(size).unwrap_or(i64::MAX);
        FileStat {
            dev: self.dev,
            ino: node.ino,
            nlink,
            mode,
            size,
            blksize: 4096,
            blocks,
            atime_sec,
            atime_nsec,
            mtime_sec,
            mtime_nsec,
            ctime_sec,
            ctime_nsec,
            ..FileStat::default()
        }
    }
}

fn split_ns(ns: u64) -> (i64, i64) {
    // u64 nanoseconds: the seconds fit an i64, the remainder too.
    ((ns / 1_000_000_000) as i64, (ns % 1_000_000_000) as i64)
}

impl MemFs {
    /// An empty file system (just the root directory) whose times are all 0.
    pub fn new() -> Self {
        Self::with_clock(zero_clock)
    }

    /// An empty file system that stamps times with `clock`.
    pub fn with_clock(clock: Clock) -> Self {
        let now = clock();
        let root = Node::new(ROOT_INO, true, 0o755, now);
        let mut dirs = BTreeMap::new();
        dirs.insert(
            ROOT_INO,
            Dir {
                node: root,
                parent: ROOT_INO,
                entries: BTreeMap::new(),
                subdirs: 0,
            },
        );
        Self {
            inner: Arc::new(Inner {
                dev: NEXT_DEV.fetch_add(1, Ordering::Relaxed),
                clock,
                next_ino: AtomicU64::new(ROOT_INO + 1),
                ns: RwLock::new(Namespace { dirs }),
            }),
        }
    }
}

impl Default for MemFs {
    fn default() -> Self {
        Self::new()
    }
}

impl FileSystem for MemFs {
    fn open(&self, path: &str, flags: OpenFlags, mode: u32) -> Result<Arc<dyn File>> {
        check_relative(path)?;
        let inner = &self.inner;
        let node = if flags.contains(OpenFlags::CREAT) {
            let mut ns = inner.ns.write();
            match ns.lookup(path) {
                Ok(_) if flags.contains(OpenFlags::EXCL) => return Err(Errno::EEXIST),
                Ok(node) => node,
                Err(Errno::ENOENT) if flags.contains(OpenFlags::DIRECTORY) => {
                    return Err(Errno::EINVAL);
                }
                Err(Errno::ENOENT) => {
                    let (parent, name) = ns.parent(path)?;
                    inner.link_new(&mut ns, parent, name, false, mode)?
                }
                Err(e) => return Err(e),
            }
        } else {
            inner.ns.read().lookup(path)?
        };
        if node.is_dir {
            if flags.writable()
                || flags.contains(OpenFlags::TRUNC)
                || flags.contains(OpenFlags::CREAT)
            {
                return Err(Errno::EISDIR);
            }
            return Ok(Arc::new(MemDir {
                fs: inner.clone(),
                node,
                cursor: Mutex::new(Cursor::Start),
            }));
        }
        if flags.contains(OpenFlags::DIRECTORY) {
            return Err(Errno::ENOTDIR);
        }
        if flags.contains(OpenFlags::TRUNC) && flags.writable() {
            let mut s = node.state.lock();
            if !s.data.is_empty() {
                s.data = Vec::new();
                let now = inner.now();
                s.mtime = now;
                s.ctime = now;
            }
        }
        Ok(Arc::new(MemFile {
            fs: inner.clone(),
            node,
            flags,
            pos: Mutex::new(0),
        }))
    }

    fn stat(&self, path: &str, _follow: bool) -> Result<FileStat> {
        check_relative(path)?;
        let ns = self.inner.ns.read();
        let node = ns.lookup(path)?;
        Ok(self.inner.stat_node(&ns, &node))
    }

    fn unlink(&self, path: &str) -> Result<()> {
        check_relative(path)?;
        if path.is_empty() {
            return Err(Errno::EISDIR);
        }
        let mut ns = self.inner.ns.write();
        let (parent, name) = ns.parent(path)?;
        let dir = ns.dir_mut(parent)?;
        match dir.entries.get(name) {
            None => return Err(Errno::ENOENT),
            Some(node) if node.is_dir => return Err(Errno::EISDIR),
            Some(_) => {}
        }
        let node = dir.entries.remove(name).ok_or(Errno::ENOENT)?;
        let now = self.inner.now();
        dir.node.touch(now);
        let mut s = node.state.lock();
        s.nlink = 0;
        s.ctime = now;
        Ok(())
    }

    fn mkdir(&self, path: &str, mode: u32) -> Result<()> {
        check_relative(path)?;
        if path.is_empty() {
            return Err(Errno::EEXIST);
        }
        let mut ns = self.inner.ns.write();
        let (parent, name) = ns.parent(path)?;
        self.inner
            .link_new(&mut ns, parent, name, true, mode)
            .map(drop)
    }

    fn rmdir(&self, path: &str) -> Result<()> {
        check_relative(path)?;
        if path.is_empty() {
            return Err(Errno::EBUSY);
        }
        let mut ns = self.inner.ns.write();
        let (parent, name) = ns.parent(path)?;
        let node = ns
            .dir(parent)?
            .entries
            .get(name)
            .ok_or(Errno::ENOENT)?
            .clone();
        if !node.is_dir {
            return Err(Errno::ENOTDIR);
        }
        if !ns.dir(node.ino)?.entries.is_empty() {
            return Err(Errno::ENOTEMPTY);
        }
        ns.dirs.remove(&node.ino);
        let now = self.inner.now();
        let dir = ns.dir_mut(parent)?;
        dir.entries.remove(name);
        dir.subdirs -= 1;
        dir.node.touch(now);
        let mut s = node.state.lock();
        s.nlink = 0;
        s.ctime = now;
        Ok(())
    }

    fn rename(&self, from: &str, to: &str) -> Result<()> {
        check_relative(from)?;
        check_relative(to)?;
        if from.is_empty() || to.is_empty() {
            return Err(Errno::EBUSY);
        }
        let mut ns = self.inner.ns.write();
        let (src_parent, src_name) = ns.parent(from)?;
        let src = ns
            .dir(src_parent)?
            .entries
            .get(src_name)
            .ok_or(Errno::ENOENT)?
            .clone();
        let (dst_parent, dst_name) = ns.parent(to)?;
        if from == to {
            return Ok(());
        }
        // Paths are lexical and directories have one link, so "inside its
        // own subtree" is a prefix test.
        if src.is_dir
            && to
                .strip_prefix(from)
                .is_some_and(|rest| rest.starts_with('/'))
        {
            return Err(Errno::EINVAL);
        }
        let now = self.inner.now();
        if let Some(dst) = ns.dir(dst_parent)?.entries.get(dst_name).cloned() {
            match (src.is_dir, dst.is_dir) {
                (true, false) => return Err(Errno::ENOTDIR),
                (false, true) => return Err(Errno::EISDIR),
                (true, true) => {
                    if !ns.dir(dst.ino)?.entries.is_empty() {
                        return Err(Errno::ENOTEMPTY);
                    }
                    ns.dirs.remove(&dst.ino);
                    ns.dir_mut(dst_parent)?.subdirs -= 1;
                }
                (false, false) => {}
            }
            let mut s = dst.state.lock();
            s.nlink = 0;
            s.ctime = now;
        }
        let src_dir = ns.dir_mut(src_parent)?;
        src_dir.entries.remove(src_name);
        if src.is_dir {
            src_dir.subdirs -= 1;
        }
        src_dir.node.touch(now);
        let dst_dir = ns.dir_mut(dst_parent)?;
        dst_dir.entries.insert(dst_name.to_string(), src.clone());
        if src.is_dir {
            dst_dir.subdirs += 1;
        }
        dst_dir.node.touch(now);
        if src.is_dir {
            ns.dir_mut(src.ino)?.parent = dst_parent;
        }
        src.state.lock().ctime = now;
        Ok(())
    }
}

/// An open regular file.
struct MemFile {
    fs: Arc<Inner>,
    node: Arc<Node>,
    flags: OpenFlags,
    pos: Mutex<u64>,
}

impl MemFile {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<usize> {
        if !self.flags.readable() {
            return Err(Errno::EBADF);
        }
        let mut s = self.node.state.lock();
        let Ok(start) = usize::try_from(offset) else {
            return Ok(0);
        };
        let n = match s.data.get(start..) {
            Some(rest) => {
                let n = rest.len().min(buf.len());
                buf[..n].copy_from_slice(&rest[..n]);
                n
            }
            None => 0,
        };
        s.atime = self.fs.now();
        Ok(n)
    }

    /// Writes at `offset` (the end if `None`); returns the end of the write.
    fn write_at(&self, buf: &[u8], offset: Option<u64>) -> Result<u64> {
        if !self.flags.writable() {
            return Err(Errno::EBADF);
        }
        let mut s = self.node.state.lock();
        let offset = offset.unwrap_or(s.data.len() as u64);
        if buf.is_empty() {
            return Ok(offset);
        }
        let end = offset.checked_add(buf.len() as u64).ok_or(Errno::EFBIG)?;
        if end > MAX_FILE_SIZE {
            return Err(Errno::EFBIG);
        }
        // Both below MAX_FILE_SIZE, which fits a 64-bit usize.
        let (start, end_us) = (
            usize::try_from(offset).map_err(|_| Errno::EFBIG)?,
            usize::try_from(end).map_err(|_| Errno::EFBIG)?,
        );
        if end_us > s.data.len() {
            grow(&mut s.data, end_us)?;
        }
        s.data[start..end_us].copy_from_slice(buf);
        let now = self.fs.now();
        s.mtime = now;
        s.ctime = now;
        Ok(end)
    }
}

/// Zero-extends `data` to `len` bytes; `ENOSPC` if memory runs out.
fn grow(data: &mut Vec<u8>, len: usize) -> Result<()> {
    data.try_reserve(len - data.len())
        .map_err(|_| Errno::ENOSPC)?;
    data.resize(len, 0);
    Ok(())
}

impl File for MemFile {
    fn read(&self, buf: &mut [u8]) -> Result<usize> {
        let mut pos = self.pos.lock();
        let n = self.read_at(buf, *pos)?;
        *pos += n as u64;
        Ok(n)
    }

    fn write(&self, buf: &[u8]) -> Result<usize> {
        let mut pos = self.pos.lock();
        let at = if self.flags.contains(OpenFlags::APPEND) {
            None
        } else {
            Some(*pos)
        };
        *pos = self.write_at(buf, at)?;
        Ok(buf.len())
    }

    fn pread(&self, buf: &mut [u8], offset: u64) -> Result<usize> {
        self.read_at(buf, offset)
    }

    fn pwrite(&self, buf: &[u8], offset: u64) -> Result<usize> {
        self.write_at(buf, Some(offset))?;
        Ok(buf.len())
    }

    fn seek(&self, to: SeekFrom) -> Result<u64> {
        let mut pos = self.pos.lock();
        let len = self.node.state.lock().data.len() as u64;
        *pos = to.resolve(*pos, len)?;
        Ok(*pos)
    }

    fn stat(&self) -> Result<FileStat> {
        let ns = self.fs.ns.read();
        Ok(self.fs.stat_node(&ns, &self.node))
    }

    fn truncate(&self, len: u64) -> Result<()> {
        if !self.flags.writable() {
            return Err(Errno::EINVAL);
        }
        if len > MAX_FILE_SIZE {
            return Err(Errno::EFBIG);
        }
        let len = usize::try_from(len).map_err(|_| Errno::EFBIG)?;
        let mut s = self.node.state.lock();
        if len > s.data.len() {
            grow(&mut s.data, len)?;
        } else {
            s.data.truncate(len);
            if s.data.capacity() > 2 * len + 4096 {
                s.data.shrink_to_fit();
            }
        }
        let now = self.fs.now();
        s.mtime = now;
        s.ctime = now;
        Ok(())
    }
}

/// How far a directory handle has listed.
enum Cursor {
    Start,
    After(String),
    End,
}

/// An open directory.
struct MemDir {
    fs: Arc<Inner>,
    node: Arc<Node>,
    cursor: Mutex<Cursor>,
}

impl File for MemDir {
    fn read(&self, _buf: &mut [u8]) -> Result<usize> {
        Err(Errno::EISDIR)
    }

    fn write(&self, _buf: &[u8]) -> Result<usize> {
        Err(Errno::EBADF)
    }

    fn stat(&self) -> Result<FileStat> {
        let ns = self.fs.ns.read();
        Ok(self.fs.stat_node(&ns, &self.node))
    }

    fn read_dir(&self) -> Result<Vec<DirEntry>> {
        let mut cursor = self.cursor.lock();
        let ns = self.fs.ns.read();
        let Ok(dir) = ns.dir(self.node.ino) else {
            // Removed while open: it is empty.
            *cursor = Cursor::End;
            return Ok(Vec::new());
        };
        let range = match &*cursor {
            Cursor::Start => dir
                .entries
                .range::<str, _>((Bound::Unbounded, Bound::Unbounded)),
            Cursor::After(name) => dir
                .entries
                .range::<str, _>((Bound::Excluded(name.as_str()), Bound::Unbounded)),
            Cursor::End => return Ok(Vec::new()),
        };
        let batch: Vec<DirEntry> = range
            .take(DIR_BATCH)
            .map(|(name, node)| DirEntry {
                name: name.clone(),
                ino: node.ino,
                kind: node.kind(),
            })
            .collect();
        *cursor = match batch.last() {
            Some(last) => Cursor::After(last.name.clone()),
            None => Cursor::End,
        };
        Ok(batch)
    }
}

#[cfg(test)]
mod tests;
