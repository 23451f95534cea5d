//! `HostFs` against two fake hosts: one that serves the protocol with
//! `std::fs` on a temporary directory (a small model of the real server in
//! `tools/hostfs`), and one that lies.

use std::collections::HashMap;
use std::fs;
use std::io::{Read, Seek, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, DirEntryExt, FileExt, MetadataExt, OpenOptionsExt};
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicI32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use hermit_fs::hostfs::{Data, HostFs, HostStdio, HostTransport, MAX_MOUNTS};
use hermit_fs::{Errno, File, FileStat, FileSystem, FileType, OpenFlags, SeekFrom, Vfs};
use hermit_interface::fs::{DirEntryHeader, FsCall, Op, STAT_NOFOLLOW, open_flags, whence};

/// A scratch directory, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("hermit-fs-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

enum Handle {
    File(fs::File),
    Dir {
        path: PathBuf,
        /// Listed on the first `ReadDir`: (name, ino, DT_* kind).
        entries: Option<Vec<(Vec<u8>, u64, u16)>>,
        next: usize,
    },
}

/// Serves the protocol with `std::fs` beneath its mounts' host directories.
struct StdHost {
    mounts: Vec<(String, PathBuf)>,
    handles: Mutex<HashMap<i32, Handle>>,
    next_handle: AtomicI32,
    opens: AtomicUsize,
    closes: AtomicUsize,
    stdout: Mutex<Vec<u8>>,
    stdin: Mutex<&'static [u8]>,
}

fn errno(e: std::io::Error) -> i64 {
    -i64::from(e.raw_os_error().unwrap_or(Errno::EIO.raw()))
}

fn dt(ft: fs::FileType) -> u16 {
    let t = if ft.is_dir() {
        FileType::Dir
    } else if ft.is_file() {
        FileType::File
    } else if ft.is_symlink() {
        FileType::Symlink
    } else {
        FileType::Other
    };
    t.dt()
}

fn stat_of(m: &fs::Metadata) -> FileStat {
    FileStat {
        dev: m.dev(),
        ino: m.ino(),
        nlink: m.nlink(),
        mode: m.mode(),
        uid: m.uid(),
        gid: m.gid(),
        size: m.size() as i64,
        blksize: m.blksize() as i64,
        blocks: m.blocks() as i64,
        atime_sec: m.atime(),
        atime_nsec: m.atime_nsec(),
        mtime_sec: m.mtime(),
        mtime_nsec: m.mtime_nsec(),
        ctime_sec: m.ctime(),
        ctime_nsec: m.ctime_nsec(),
        ..FileStat::default()
    }
}

fn out<'a>(data: Data<'a>) -> &'a mut [u8] {
    match data {
        Data::Out(b) => b,
        _ => panic!("the client passed no output buffer"),
    }
}

fn input<'a>(data: Data<'a>) -> &'a [u8] {
    match data {
        Data::In(b) => b,
        _ => panic!("the client passed no input buffer"),
    }
}

fn put_stat(m: std::io::Result<fs::Metadata>, data: Data<'_>) -> i64 {
    let b = out(data);
    match m {
        Ok(m) if b.len() >= FileStat::SIZE => {
            b[..FileStat::SIZE].copy_from_slice(&stat_of(&m).to_le_bytes());
            0
        }
        Ok(_) => Errno::EINVAL.to_neg(),
        Err(e) => errno(e),
    }
}

impl StdHost {
    fn new(mounts: &[(&str, &Path)]) -> Arc<Self> {
        Arc::new(Self {
            mounts: mounts
                .iter()
                .map(|(g, h)| (g.to_string(), h.to_path_buf()))
                .collect(),
            handles: Mutex::new(HashMap::new()),
            next_handle: AtomicI32::new(3),
            opens: AtomicUsize::new(0),
            closes: AtomicUsize::new(0),
            stdout: Mutex::new(Vec::new()),
            stdin: Mutex::new(b"typed input"),
        })
    }

    /// `path` beneath mount `mount`; the VFS never sends `..`, but check.
    fn resolve(&self, mount: i32, path: &[u8]) -> Result<PathBuf, i64> {
        let (_, base) = self
            .mounts
            .get(mount as usize)
            .ok_or(Errno::EINVAL.to_neg())?;
        let rel = Path::new(std::ffi::OsStr::from_bytes(path));
        if !rel.components().all(|c| matches!(c, Component::Normal(_))) {
            return Err(Errno::EACCES.to_neg());
        }
        Ok(base.join(rel))
    }

    fn add(&self, h: Handle) -> i64 {
        let id = self.next_handle.fetch_add(1, Ordering::Relaxed);
        self.handles.lock().unwrap().insert(id, h);
        self.opens.fetch_add(1, Ordering::Relaxed);
        i64::from(id)
    }

    fn open(&self, c: &FsCall, path: &[u8]) -> i64 {
        let p = match self.resolve(c.handle, path) {
            Ok(p) => p,
            Err(e) => return e,
        };
        if c.flags & !open_flags::ALLOWED != 0 {
            return Errno::EINVAL.to_neg();
        }
        if fs::metadata(&p).is_ok_and(|m| m.is_dir()) {
            if c.flags & open_flags::O_ACCMODE != 0 {
                return Errno::EISDIR.to_neg();
            }
            return self.add(Handle::Dir {
                path: p,
                entries: None,
                next: 0,
            });
        }
        let acc = c.flags & open_flags::O_ACCMODE;
        let file = fs::OpenOptions::new()
            .read(acc != open_flags::O_WRONLY)
            .write(acc != open_flags::O_RDONLY)
            .custom_flags((c.flags & !open_flags::O_ACCMODE) as i32)
            .mode(c.mode)
            .open(&p);
        match file {
            Ok(f) => self.add(Handle::File(f)),
            Err(e) => errno(e),
        }
    }

    fn with_file(&self, handle: i32, f: impl FnOnce(&mut fs::File) -> std::io::Result<u64>) -> i64 {
        let mut handles = self.handles.lock().unwrap();
        match handles.get_mut(&handle) {
            Some(Handle::File(file)) => f(file).map_or_else(errno, |n| n as i64),
            Some(Handle::Dir { .. }) => Errno::EISDIR.to_neg(),
            None => Errno::EBADF.to_neg(),
        }
    }

    fn read_dir(&self, handle: i32, buf: &mut [u8]) -> i64 {
        let mut handles = self.handles.lock().unwrap();
        let Some(Handle::Dir {
            path,
            entries,
            next,
        }) = handles.get_mut(&handle)
        else {
            return Errno::ENOTDIR.to_neg();
        };
        if entries.is_none() {
            let listed = match fs::read_dir(&*path) {
                Ok(it) => it
                    .filter_map(Result::ok)
                    .map(|e| {
                        let kind = e.file_type().map_or(0, dt);
                        (e.file_name().as_bytes().to_vec(), e.ino(), kind)
                    })
                    .collect(),
                Err(e) => return errno(e),
            };
            *entries = Some(listed);
        }
        let list = entries.as_ref().unwrap();
        let mut used = 0;
        while let Some((name, ino, kind)) = list.get(*next) {
            match DirEntryHeader::put_record(&mut buf[used..], *ino, *kind, name) {
                Some(len) => used += len,
                None if used == 0 => return Errno::EINVAL.to_neg(),
                None => break,
            }
            *next += 1;
        }
        used as i64
    }
}

impl HostTransport for StdHost {
    fn call(&self, c: FsCall, path: &[u8], path2: &[u8], data: Data<'_>) -> i64 {
        let Some(op) = Op::from_raw(c.op) else {
            return Errno::ENOSYS.to_neg();
        };
        match op {
            Op::MountInfo => {
                let Some((guest, _)) = self.mounts.get(c.handle as usize) else {
                    return Errno::ENOENT.to_neg();
                };
                let b = out(data);
                if b.len() < guest.len() {
                    return Errno::ERANGE.to_neg();
                }
                b[..guest.len()].copy_from_slice(guest.as_bytes());
                guest.len() as i64
            }
            Op::Open => self.open(&c, path),
            Op::Close => match self.handles.lock().unwrap().remove(&c.handle) {
                Some(_) => {
                    self.closes.fetch_add(1, Ordering::Relaxed);
                    0
                }
                None => Errno::EBADF.to_neg(),
            },
            Op::Read if c.handle == 0 => {
                let b = out(data);
                let mut stdin = self.stdin.lock().unwrap();
                let n = stdin.len().min(b.len());
                b[..n].copy_from_slice(&stdin[..n]);
                *stdin = &stdin[n..];
                n as i64
            }
            Op::Write if c.handle == 1 || c.handle == 2 => {
                let b = input(data);
                self.stdout.lock().unwrap().extend_from_slice(b);
                b.len() as i64
            }
            Op::Read => self.with_file(c.handle, |f| f.read(out(data)).map(|n| n as u64)),
            Op::Write => self.with_file(c.handle, |f| f.write(input(data)).map(|n| n as u64)),
            Op::Pread => {
                let at = c.offset as u64;
                self.with_file(c.handle, |f| f.read_at(out(data), at).map(|n| n as u64))
            }
            Op::Pwrite => {
                let at = c.offset as u64;
                self.with_file(c.handle, |f| f.write_at(input(data), at).map(|n| n as u64))
            }
            Op::Lseek => {
                let pos = match c.whence {
                    whence::SEEK_SET => std::io::SeekFrom::Start(c.offset as u64),
                    whence::SEEK_CUR => std::io::SeekFrom::Current(c.offset),
                    whence::SEEK_END => std::io::SeekFrom::End(c.offset),
                    _ => return Errno::EINVAL.to_neg(),
                };
                self.with_file(c.handle, |f| f.seek(pos))
            }
            Op::Fstat => {
                let handles = self.handles.lock().unwrap();
                let m = match handles.get(&c.handle) {
                    Some(Handle::File(f)) => f.metadata(),
                    Some(Handle::Dir { path, .. }) => fs::metadata(path),
                    None => return Errno::EBADF.to_neg(),
                };
                put_stat(m, data)
            }
            Op::Stat => match self.resolve(c.handle, path) {
                Ok(p) if c.flags & STAT_NOFOLLOW != 0 => put_stat(fs::symlink_metadata(p), data),
                Ok(p) => put_stat(fs::metadata(p), data),
                Err(e) => e,
            },
            Op::Unlink => match self.resolve(c.handle, path) {
                Ok(p) if p.is_dir() => Errno::EISDIR.to_neg(),
                Ok(p) => fs::remove_file(p).map_or_else(errno, |()| 0),
                Err(e) => e,
            },
            Op::Mkdir => match self.resolve(c.handle, path) {
                Ok(p) => fs::DirBuilder::new()
                    .mode(c.mode)
                    .create(p)
                    .map_or_else(errno, |()| 0),
                Err(e) => e,
            },
            Op::Rmdir => match self.resolve(c.handle, path) {
                Ok(p) => fs::remove_dir(p).map_or_else(errno, |()| 0),
                Err(e) => e,
            },
            Op::Rename => {
                if c.flags as i32 != c.handle {
                    return Errno::EXDEV.to_neg();
                }
                match (self.resolve(c.handle, path), self.resolve(c.handle, path2)) {
                    (Ok(a), Ok(b)) => fs::rename(a, b).map_or_else(errno, |()| 0),
                    (Err(e), _) | (_, Err(e)) => e,
                }
            }
            Op::ReadDir => self.read_dir(c.handle, out(data)),
            Op::Ftruncate => {
                let len = c.offset as u64;
                self.with_file(c.handle, |f| f.set_len(len).map(|()| 0))
            }
        }
    }
}

fn setup(name: &str) -> (TempDir, Arc<StdHost>, Vfs) {
    let tmp = TempDir::new(name);
    let a = tmp.0.join("a");
    let b = tmp.0.join("b");
    fs::create_dir(&a).unwrap();
    fs::create_dir(&b).unwrap();
    let host = StdHost::new(&[("/host", &a), ("data//x/", &b)]);
    let vfs = Vfs::new();
    let found = HostFs::discover(host.clone()).unwrap();
    let paths: Vec<&str> = found.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(paths, ["/host", "/data/x"]);
    for (path, fs) in found {
        vfs.mount(&path, Arc::new(fs)).unwrap();
    }
    (tmp, host, vfs)
}

const CREATE: OpenFlags = OpenFlags::RDWR.union(OpenFlags::CREAT);

#[test]
fn files_reach_the_host() {
    let (tmp, host, vfs) = setup("files");
    let fd = vfs.open("/host/hello.txt", CREATE, 0o640).unwrap();
    assert_eq!(vfs.write(fd, b"hello from the guest"), Ok(20));
    assert_eq!(
        fs::read(tmp.0.join("a/hello.txt")).unwrap(),
        b"hello from the guest"
    );
    let meta = fs::metadata(tmp.0.join("a/hello.txt")).unwrap();
    // The mode went through (the host's umask may only take bits away).
    assert_eq!(meta.mode() & 0o777 & !0o640, 0);
    assert_eq!(meta.mode() & 0o600, 0o600);

    assert_eq!(vfs.lseek(fd, SeekFrom::Start(6)), Ok(6));
    let mut buf = [0u8; 64];
    assert_eq!(vfs.read(fd, &mut buf[..4]), Ok(4));
    assert_eq!(&buf[..4], b"from");
    assert_eq!(vfs.lseek(fd, SeekFrom::Current(0)), Ok(10));
    assert_eq!(vfs.lseek(fd, SeekFrom::End(-5)), Ok(15));
    assert_eq!(vfs.lseek(fd, SeekFrom::Start(u64::MAX)), Err(Errno::EINVAL));
    assert_eq!(vfs.lseek(fd, SeekFrom::Current(-100)), Err(Errno::EINVAL));
    assert_eq!(vfs.pwrite(fd, b"HELLO", 0), Ok(5));
    assert_eq!(vfs.pread(fd, &mut buf, 0), Ok(20));
    assert_eq!(&buf[..20], b"HELLO from the guest");
    assert_eq!(vfs.pread(fd, &mut buf, u64::MAX), Err(Errno::EINVAL));
    let st = vfs.fstat(fd).unwrap();
    assert_eq!((st.size, st.ino), (20, meta.ino()));
    assert_eq!(FileType::from_mode(st.mode), FileType::File);
    vfs.ftruncate(fd, 5).unwrap();
    assert_eq!(fs::read(tmp.0.join("a/hello.txt")).unwrap(), b"HELLO");
    vfs.close(fd).unwrap();

    // Written on the host, read in the guest; a dup'ed fd shares the host
    // handle and so the position.
    fs::write(tmp.0.join("b/in.txt"), b"0123456789").unwrap();
    let fd = vfs.open("/data/x/in.txt", OpenFlags::RDONLY, 0).unwrap();
    let fd2 = vfs.dup(fd).unwrap();
    assert_eq!(vfs.read(fd, &mut buf[..3]), Ok(3));
    assert_eq!(vfs.read(fd2, &mut buf[..3]), Ok(3));
    assert_eq!(&buf[..3], b"345");
    assert_eq!(vfs.write(fd, b"x").err(), Some(Errno::EBADF));
    vfs.close(fd).unwrap();
    let closes = host.closes.load(Ordering::Relaxed);
    vfs.close(fd2).unwrap();
    // The host handle closes with the last fd.
    assert_eq!(host.closes.load(Ordering::Relaxed), closes + 1);
    assert_eq!(
        host.opens.load(Ordering::Relaxed),
        host.closes.load(Ordering::Relaxed)
    );

    // Errors come back as they are.
    assert_eq!(
        vfs.open("/host/missing", OpenFlags::RDONLY, 0),
        Err(Errno::ENOENT)
    );
    assert_eq!(
        vfs.open("/host/hello.txt", CREATE | OpenFlags::EXCL, 0),
        Err(Errno::EEXIST)
    );
    assert_eq!(vfs.open("/host", OpenFlags::RDWR, 0), Err(Errno::EISDIR));
    assert_eq!(
        vfs.open("/host/hello.txt/", OpenFlags::RDONLY, 0),
        Err(Errno::ENOTDIR)
    );
    assert_eq!(vfs.stat("/host/hello.txt/").err(), Some(Errno::ENOTDIR));
}

#[test]
fn namespace_ops_on_the_host() {
    let (tmp, host, vfs) = setup("names");
    vfs.mkdir("/host/d", 0o755).unwrap();
    assert_eq!(vfs.mkdir("/host/d", 0o755), Err(Errno::EEXIST));
    assert!(tmp.0.join("a/d").is_dir());
    for i in 0..600 {
        let fd = vfs
            .open(
                &format!("/host/d/file-with-a-longish-name-{i:04}"),
                CREATE,
                0o644,
            )
            .unwrap();
        vfs.close(fd).unwrap();
    }
    vfs.mkdir("/host/d/sub", 0o700).unwrap();
    // Several ReadDir calls (8 KiB each) are needed for 601 entries.
    let entries = vfs.read_dir_path("/host/d").unwrap();
    assert_eq!(entries.len(), 601);
    let sub = entries.iter().find(|e| e.name == "sub").unwrap();
    assert_eq!(sub.kind, FileType::Dir);
    assert_eq!(sub.ino, fs::metadata(tmp.0.join("a/d/sub")).unwrap().ino());
    assert!(
        entries
            .iter()
            .filter(|e| e.name != "sub")
            .all(|e| e.kind == FileType::File)
    );
    assert_eq!(
        vfs.read_dir_path("/host/d/file-with-a-longish-name-0001")
            .err(),
        Some(Errno::ENOTDIR)
    );

    // The mount point of /data/x shows up under /data (a MemFs dir).
    let data: Vec<String> = vfs
        .read_dir_path("/data")
        .unwrap()
        .into_iter()
        .map(|e| e.name)
        .collect();
    assert_eq!(data, ["x"]);

    assert_eq!(vfs.rmdir("/host/d"), Err(Errno::ENOTEMPTY));
    assert_eq!(vfs.unlink("/host/d"), Err(Errno::EISDIR));
    vfs.rename("/host/d/sub", "/host/sub2").unwrap();
    assert!(tmp.0.join("a/sub2").is_dir());
    assert_eq!(vfs.rename("/host/sub2", "/data/x/sub2"), Err(Errno::EXDEV));
    assert_eq!(vfs.rename("/host/sub2", "/tmp/sub2"), Err(Errno::EXDEV));
    assert_eq!(vfs.rmdir("/host"), Err(Errno::EBUSY));
    vfs.rmdir("/host/sub2").unwrap();
    for i in 0..600 {
        vfs.unlink(&format!("/host/d/file-with-a-longish-name-{i:04}"))
            .unwrap();
    }
    vfs.rmdir("/host/d").unwrap();
    assert_eq!(fs::read_dir(tmp.0.join("a")).unwrap().count(), 0);
    assert_eq!(
        vfs.lstat("/host").unwrap().ino,
        fs::metadata(tmp.0.join("a")).unwrap().ino()
    );

    // A symlink on the host: stat follows it, lstat does not.
    std::os::unix::fs::symlink("target", tmp.0.join("b/link")).unwrap();
    fs::write(tmp.0.join("b/target"), b"12345").unwrap();
    assert_eq!(vfs.stat("/data/x/link").unwrap().size, 5);
    assert_eq!(
        FileType::from_mode(vfs.lstat("/data/x/link").unwrap().mode),
        FileType::Symlink
    );

    // Directory handles: listing through an fd, read() refused by the host.
    let fd = vfs.open("/data/x", OpenFlags::RDONLY, 0).unwrap();
    let mut names: Vec<String> = vfs
        .read_dir(fd)
        .unwrap()
        .into_iter()
        .map(|e| e.name)
        .collect();
    names.sort();
    assert_eq!(names, ["link", "target"]);
    assert_eq!(vfs.read_dir(fd), Ok(Vec::new()));
    assert_eq!(vfs.read(fd, &mut [0; 4]), Err(Errno::EISDIR));
    assert_eq!(
        FileType::from_mode(vfs.fstat(fd).unwrap().mode),
        FileType::Dir
    );
    vfs.close(fd).unwrap();
    assert_eq!(
        host.opens.load(Ordering::Relaxed),
        host.closes.load(Ordering::Relaxed)
    );
}

#[test]
fn stdio_through_the_transport() {
    let host = StdHost::new(&[]);
    assert!(HostFs::discover(host.clone()).unwrap().is_empty());
    let vfs = Vfs::new();
    vfs.set_fd(0, Arc::new(HostStdio::stdin(host.clone())))
        .unwrap();
    vfs.set_fd(1, Arc::new(HostStdio::stdout(host.clone())))
        .unwrap();
    vfs.set_fd(2, Arc::new(HostStdio::stderr(host.clone())))
        .unwrap();
    assert_eq!(vfs.write(1, b"out "), Ok(4));
    assert_eq!(vfs.write(2, b"err"), Ok(3));
    assert_eq!(*host.stdout.lock().unwrap(), b"out err");
    let mut buf = [0u8; 5];
    assert_eq!(vfs.read(0, &mut buf), Ok(5));
    assert_eq!(&buf, b"typed");
    assert_eq!(vfs.read(1, &mut buf), Err(Errno::EBADF));
    assert_eq!(vfs.write(0, b"x"), Err(Errno::EBADF));
    assert_eq!(vfs.lseek(1, SeekFrom::Start(0)), Err(Errno::ESPIPE));
    assert_eq!(vfs.is_terminal(1), Ok(false));
}

/// How [`LyingHost`] misbehaves.
#[derive(Clone)]
enum Lie {
    /// Claims more bytes than the buffer holds, for every data call.
    TooMuch,
    /// Answers `ReadDir` with these bytes.
    Dirents(Vec<u8>),
    /// Claims this many `ReadDir` bytes, beyond the buffer.
    DirentsOverflow,
    /// Returns a handle that is not an i32.
    HugeHandle,
    /// Answers `Stat` and `Fstat` with a positive, non-zero result.
    StatResult(i64),
    /// Answers every call with an errno we do not know.
    UnknownErrno,
    /// Never runs out of mounts.
    EndlessMounts,
    /// Mount path: not UTF-8.
    MountName(&'static [u8]),
}

struct LyingHost {
    lie: Lie,
    calls: AtomicUsize,
}

impl LyingHost {
    fn new(lie: Lie) -> Arc<Self> {
        Arc::new(Self {
            lie,
            calls: AtomicUsize::new(0),
        })
    }
}

impl HostTransport for LyingHost {
    fn call(&self, c: FsCall, _path: &[u8], _path2: &[u8], data: Data<'_>) -> i64 {
        self.calls.fetch_add(1, Ordering::Relaxed);
        let len = match &data {
            Data::None => 0,
            Data::In(b) => b.len() as i64,
            Data::Out(b) => b.len() as i64,
        };
        let op = Op::from_raw(c.op).unwrap();
        match (&self.lie, op) {
            (Lie::UnknownErrno, _) => -4000,
            (Lie::EndlessMounts, Op::MountInfo) => {
                out(data)[0] = b'/';
                1
            }
            (Lie::MountName(name), Op::MountInfo) if c.handle == 0 => {
                out(data)[..name.len()].copy_from_slice(name);
                name.len() as i64
            }
            (Lie::TooMuch, Op::MountInfo) => len + 1,
            (_, Op::MountInfo) => Errno::ENOENT.to_neg(),
            (Lie::HugeHandle, Op::Open) => i64::from(i32::MAX) + 1,
            (_, Op::Open) => 7,
            (Lie::Dirents(bytes), Op::ReadDir) => {
                let b = out(data);
                b[..bytes.len()].copy_from_slice(bytes);
                bytes.len() as i64
            }
            (Lie::DirentsOverflow, Op::ReadDir) => len + 8,
            (Lie::StatResult(r), Op::Stat | Op::Fstat) => *r,
            (Lie::TooMuch, _) => len + 1,
            _ => 0,
        }
    }
}

fn lying_file(lie: Lie) -> (Arc<LyingHost>, Arc<dyn File>) {
    let host = LyingHost::new(lie);
    let fs = HostFs::new(0, host.clone());
    let file = fs.open("f", OpenFlags::RDWR, 0).unwrap();
    (host, file)
}

#[test]
fn a_lying_host_gets_eio() {
    let (_, f) = lying_file(Lie::TooMuch);
    let mut buf = [0u8; 16];
    assert_eq!(f.read(&mut buf), Err(Errno::EIO));
    assert_eq!(f.pread(&mut buf, 0), Err(Errno::EIO));
    assert_eq!(f.write(b"abc"), Err(Errno::EIO));
    assert_eq!(f.pwrite(b"abc", 1), Err(Errno::EIO));
    assert_eq!(f.truncate(1), Err(Errno::EIO));
    assert_eq!(f.stat(), Err(Errno::EIO));
    assert_eq!(f.read_dir(), Err(Errno::EIO));
    let fs = HostFs::new(0, LyingHost::new(Lie::TooMuch));
    assert_eq!(fs.stat("x", true), Err(Errno::EIO));
    assert_eq!(fs.mkdir("x", 0), Err(Errno::EIO));
    assert_eq!(fs.unlink("x"), Err(Errno::EIO));
    assert_eq!(fs.rmdir("x"), Err(Errno::EIO));
    assert_eq!(fs.rename("x", "y"), Err(Errno::EIO));
    assert_eq!(
        HostFs::discover(LyingHost::new(Lie::TooMuch)).err(),
        Some(Errno::EIO)
    );

    let (_, f) = lying_file(Lie::DirentsOverflow);
    assert_eq!(f.read_dir(), Err(Errno::EIO));

    let fs = HostFs::new(0, LyingHost::new(Lie::HugeHandle));
    assert_eq!(fs.open("f", OpenFlags::RDONLY, 0).err(), Some(Errno::EIO));

    let (_, f) = lying_file(Lie::StatResult(1));
    assert_eq!(f.stat(), Err(Errno::EIO));
    let fs = HostFs::new(0, LyingHost::new(Lie::StatResult(200)));
    assert_eq!(fs.stat("", false), Err(Errno::EIO));

    let fs = HostFs::new(0, LyingHost::new(Lie::UnknownErrno));
    assert_eq!(fs.open("f", OpenFlags::RDONLY, 0).err(), Some(Errno::EIO));
    assert_eq!(fs.mkdir("d", 0), Err(Errno::EIO));

    let host = LyingHost::new(Lie::EndlessMounts);
    assert_eq!(HostFs::discover(host.clone()).err(), Some(Errno::EIO));
    assert_eq!(host.calls.load(Ordering::Relaxed), MAX_MOUNTS + 1);
    let bad_utf8 = LyingHost::new(Lie::MountName(b"/a\xffb"));
    assert_eq!(HostFs::discover(bad_utf8).err(), Some(Errno::EIO));
    let relative = LyingHost::new(Lie::MountName(b"../../etc"));
    // Normalised, so it cannot escape the guest's root: "/etc".
    assert_eq!(HostFs::discover(relative).unwrap()[0].0, "/etc");
}

#[test]
fn bad_dirent_records_get_eio() {
    let mut good = vec![0u8; 48];
    let n = DirEntryHeader::put_record(&mut good, 5, 8, b"ok").unwrap();
    good.truncate(n);
    let record = |ino: u64, record_len: u32, name_len: u16, name: &[u8]| {
        let mut r = Vec::new();
        r.extend_from_slice(&ino.to_le_bytes());
        r.extend_from_slice(&record_len.to_le_bytes());
        r.extend_from_slice(&name_len.to_le_bytes());
        r.extend_from_slice(&8u16.to_le_bytes());
        r.extend_from_slice(name);
        r.resize(r.len().next_multiple_of(8), 0);
        r
    };
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("zero length (endless loop)", record(1, 0, 1, b"a")),
        ("past the end", record(1, 64, 1, b"a")),
        ("name past the record", record(1, 24, 100, b"abc")),
        ("odd length", record(1, 17, 1, b"a")),
        ("slash", record(1, 24, 3, b"a/b")),
        ("dot dot", record(1, 24, 2, b"..")),
        ("empty name", record(1, 24, 0, b"")),
        ("half a header", good[..10].to_vec()),
        ("good then garbage", [good.clone(), vec![1, 2, 3]].concat()),
        ("name too long", record(1, 16 + 256, 256, &[b'n'; 256])),
    ];
    for (what, bytes) in cases {
        let (_, f) = lying_file(Lie::Dirents(bytes));
        assert_eq!(f.read_dir(), Err(Errno::EIO), "{what}");
    }
    let (_, f) = lying_file(Lie::Dirents([good.clone(), good].concat()));
    let entries = f.read_dir().unwrap();
    assert_eq!(entries.len(), 2);
    assert_eq!(
        (entries[0].name.as_str(), entries[0].ino, entries[0].kind),
        ("ok", 5, FileType::File)
    );
}

#[test]
fn host_file_closes_on_drop() {
    let (host, f) = lying_file(Lie::StatResult(0));
    let before = host.calls.load(Ordering::Relaxed);
    drop(f);
    assert_eq!(host.calls.load(Ordering::Relaxed), before + 1);
}
