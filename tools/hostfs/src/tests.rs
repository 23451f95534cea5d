//! Server tests on temporary directories: normal operations, and one test
//! per rule of what the guest may reach.

use std::collections::BTreeSet;
use std::io::{Read as _, Write as _};
use std::os::fd::OwnedFd;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use hermit_interface::PhysSlice;
use hermit_interface::errno::Errno;
use hermit_interface::fs::{
    DirEntryHeader, FileStat, FsCall, Op, PATH_MAX, STAT_NOFOLLOW, file_type, open_flags::*, whence,
};

use crate::{CallBuffers, DataBuf, MAX_HANDLES, Mount, MountError, PathArg, Server, VecBuffers};

/// A fresh directory under the system's temporary directory, removed on
/// drop.
pub(crate) struct TempDir(PathBuf);

impl TempDir {
    pub(crate) fn new() -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("hermit-hostfs-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        Self(path)
    }

    pub(crate) fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A server with one mount, `<tmp>/root` at `/data`, next to
/// `<tmp>/outside/secret` (which no call may touch), and pipes for its
/// standard handles.
struct Fx {
    tmp: TempDir,
    server: Server,
    stdin: Option<std::io::PipeWriter>,
    stdout: std::io::PipeReader,
    stderr: std::io::PipeReader,
}

const SECRET: &[u8] = b"host secret";

impl Fx {
    fn new() -> Self {
        let tmp = TempDir::new();
        std::fs::create_dir(tmp.path().join("root")).unwrap();
        std::fs::create_dir(tmp.path().join("outside")).unwrap();
        std::fs::write(tmp.path().join("outside/secret"), SECRET).unwrap();
        let mount = Mount::new(&tmp.path().join("root"), "/data").unwrap();
        let (stdin_r, stdin_w) = std::io::pipe().unwrap();
        let (stdout_r, stdout_w) = std::io::pipe().unwrap();
        let (stderr_r, stderr_w) = std::io::pipe().unwrap();
        let server = Server::with_stdio(
            vec![mount],
            OwnedFd::from(stdin_r),
            OwnedFd::from(stdout_w),
            OwnedFd::from(stderr_w),
        )
        .unwrap();
        Self {
            tmp,
            server,
            stdin: Some(stdin_w),
            stdout: stdout_r,
            stderr: stderr_r,
        }
    }

    fn root(&self) -> PathBuf {
        self.tmp.path().join("root")
    }

    fn assert_outside_untouched(&self) {
        let outside = self.tmp.path().join("outside");
        let names: Vec<_> = std::fs::read_dir(&outside)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["secret"], "nothing created or removed outside");
        assert_eq!(std::fs::read(outside.join("secret")).unwrap(), SECRET);
    }

    /// Runs `call` with `bufs`, filling in the slice lengths from them.
    fn run(&self, mut call: FsCall, bufs: &mut VecBuffers) -> i64 {
        call.path = slice(bufs.path.len());
        call.path2 = slice(bufs.path2.len());
        call.buf = slice(bufs.data.len());
        self.server.call(&call, bufs)
    }

    fn path_op(&self, op: Op, path: &str, flags: u32, mode: u32) -> i64 {
        let call = FsCall {
            op: op as u32,
            flags,
            mode,
            ..Default::default()
        };
        self.run(call, &mut bufs(path, Vec::new()))
    }

    fn open(&self, path: &str, flags: u32) -> i64 {
        self.path_op(Op::Open, path, flags, 0o644)
    }

    fn handle_op(&self, op: Op, handle: i64, data: Vec<u8>, offset: i64) -> (i64, Vec<u8>) {
        let call = FsCall {
            op: op as u32,
            handle: handle as i32,
            offset,
            ..Default::default()
        };
        let mut b = bufs("", data);
        let r = self.run(call, &mut b);
        (r, b.data)
    }

    fn read(&self, handle: i64, len: usize) -> Result<Vec<u8>, Errno> {
        let (r, mut data) = self.handle_op(Op::Read, handle, vec![0; len], 0);
        data.truncate(Errno::check(r)? as usize);
        Ok(data)
    }

    fn write(&self, handle: i64, data: &[u8]) -> i64 {
        self.handle_op(Op::Write, handle, data.to_vec(), 0).0
    }

    fn close(&self, handle: i64) -> i64 {
        self.handle_op(Op::Close, handle, Vec::new(), 0).0
    }

    fn lseek(&self, handle: i64, offset: i64, how: u32) -> i64 {
        let call = FsCall {
            op: Op::Lseek as u32,
            handle: handle as i32,
            offset,
            whence: how,
            ..Default::default()
        };
        self.run(call, &mut VecBuffers::default())
    }

    fn fstat(&self, handle: i64) -> Result<FileStat, Errno> {
        let (r, data) = self.handle_op(Op::Fstat, handle, vec![0; 112], 0);
        Errno::check(r)?;
        Ok(parse_stat(&data))
    }

    fn stat(&self, path: &str, flags: u32) -> Result<FileStat, Errno> {
        let call = FsCall {
            op: Op::Stat as u32,
            flags,
            ..Default::default()
        };
        let mut b = bufs(path, vec![0; 112]);
        Errno::check(self.run(call, &mut b))?;
        Ok(parse_stat(&b.data))
    }

    fn rename(&self, from: &str, to: &str) -> i64 {
        let call = FsCall {
            op: Op::Rename as u32,
            ..Default::default()
        };
        let mut b = bufs(from, Vec::new());
        b.path2 = to.as_bytes().to_vec();
        self.run(call, &mut b)
    }

    /// One ReadDir with a `len`-byte buffer: the names and kinds.
    fn read_dir_once(&self, handle: i64, len: usize) -> Result<Vec<(String, u16)>, Errno> {
        let (r, data) = self.handle_op(Op::ReadDir, handle, vec![0; len], 0);
        let n = Errno::check(r)? as usize;
        Ok(parse_dirents(&data[..n]))
    }

    /// Every name of directory `path`, read with `len`-byte buffers.
    fn list(&self, path: &str, len: usize) -> BTreeSet<String> {
        let h = self.open(path, O_RDONLY | O_DIRECTORY);
        assert!(h >= 3, "{path}: {h}");
        let mut names = BTreeSet::new();
        loop {
            let batch = self.read_dir_once(h, len).unwrap();
            if batch.is_empty() {
                break;
            }
            for (name, _) in batch {
                assert!(names.insert(name.clone()), "{name} reported twice");
            }
        }
        assert_eq!(self.close(h), 0);
        names
    }
}

fn slice(len: usize) -> PhysSlice {
    PhysSlice {
        addr: 0,
        len: len as u64,
    }
}

fn bufs(path: &str, data: Vec<u8>) -> VecBuffers {
    VecBuffers {
        path: path.as_bytes().to_vec(),
        path2: Vec::new(),
        data,
    }
}

fn err(e: Errno) -> i64 {
    e.to_neg()
}

fn st_ino(fx: &Fx, path: &str) -> u64 {
    fx.stat(path, STAT_NOFOLLOW).unwrap().ino
}

fn parse_stat(b: &[u8]) -> FileStat {
    let u64_at = |at: usize| u64::from_le_bytes(b[at..at + 8].try_into().unwrap());
    let u32_at = |at: usize| u32::from_le_bytes(b[at..at + 4].try_into().unwrap());
    FileStat {
        dev: u64_at(0),
        ino: u64_at(8),
        nlink: u64_at(16),
        mode: u32_at(24),
        uid: u32_at(28),
        gid: u32_at(32),
        _reserved: u32_at(36),
        size: u64_at(40) as i64,
        blksize: u64_at(48) as i64,
        blocks: u64_at(56) as i64,
        atime_sec: u64_at(64) as i64,
        atime_nsec: u64_at(72) as i64,
        mtime_sec: u64_at(80) as i64,
        mtime_nsec: u64_at(88) as i64,
        ctime_sec: u64_at(96) as i64,
        ctime_nsec: u64_at(104) as i64,
    }
}

fn parse_dirents(mut b: &[u8]) -> Vec<(String, u16)> {
    let mut out = Vec::new();
    while !b.is_empty() {
        let record_len = u32::from_le_bytes(b[8..12].try_into().unwrap()) as usize;
        let name_len = u16::from_le_bytes(b[12..14].try_into().unwrap()) as usize;
        let kind = u16::from_le_bytes(b[14..16].try_into().unwrap());
        assert_eq!(record_len, DirEntryHeader::record_len_for(name_len));
        assert_eq!(record_len % 8, 0);
        assert!(b[16 + name_len..record_len].iter().all(|&x| x == 0));
        let name = String::from_utf8(b[16..16 + name_len].to_vec()).unwrap();
        out.push((name, kind));
        b = &b[record_len..];
    }
    out
}

#[test]
fn files_can_be_created_written_read_and_seeked() {
    let fx = Fx::new();
    let h = fx.open("hello.txt", O_RDWR | O_CREAT | O_EXCL);
    assert_eq!(h, 3, "the first file handle is 3");
    assert_eq!(fx.write(h, b"hello world"), 11);
    assert_eq!(
        std::fs::read(fx.root().join("hello.txt")).unwrap(),
        b"hello world"
    );
    assert_eq!(fx.lseek(h, 0, whence::SEEK_CUR), 11);
    assert_eq!(fx.lseek(h, 6, whence::SEEK_SET), 6);
    assert_eq!(fx.read(h, 100).unwrap(), b"world");
    assert_eq!(fx.read(h, 100).unwrap(), b"", "end of file");
    assert_eq!(fx.lseek(h, -5, whence::SEEK_END), 6);
    assert_eq!(fx.lseek(h, -100, whence::SEEK_CUR), err(Errno::EINVAL));
    assert_eq!(
        fx.lseek(h, 0, 3),
        err(Errno::EINVAL),
        "SEEK_DATA is not ours"
    );
    assert_eq!(fx.read(h, 0).unwrap(), b"");

    // pread/pwrite leave the position alone.
    let (r, data) = fx.handle_op(Op::Pread, h, vec![0; 5], 0);
    assert_eq!((r, &data[..]), (5, &b"hello"[..]));
    let (r, _) = fx.handle_op(Op::Pwrite, h, b"W".to_vec(), 6);
    assert_eq!(r, 1);
    assert_eq!(fx.lseek(h, 0, whence::SEEK_CUR), 6);
    assert_eq!(fx.read(h, 100).unwrap(), b"World");
    let (r, _) = fx.handle_op(Op::Pread, h, vec![0; 5], -1);
    assert_eq!(r, err(Errno::EINVAL));
    let (r, _) = fx.handle_op(Op::Pwrite, h, b"x".to_vec(), -1);
    assert_eq!(r, err(Errno::EINVAL));

    let st = fx.fstat(h).unwrap();
    assert_eq!(st.size, 11);
    assert_eq!(st.mode & file_type::S_IFMT, file_type::S_IFREG);
    assert_eq!(st.nlink, 1);

    let (r, _) = fx.handle_op(Op::Ftruncate, h, Vec::new(), 3);
    assert_eq!(r, 0);
    assert_eq!(fx.fstat(h).unwrap().size, 3);
    let (r, _) = fx.handle_op(Op::Ftruncate, h, Vec::new(), 4096);
    assert_eq!(r, 0);
    assert_eq!(fx.stat("hello.txt", 0).unwrap().size, 4096);
    let (r, _) = fx.handle_op(Op::Ftruncate, h, Vec::new(), -1);
    assert_eq!(r, err(Errno::EINVAL));
    assert_eq!(fx.close(h), 0);
    assert_eq!(fx.close(h), err(Errno::EBADF), "closed twice");
    assert_eq!(fx.read(h, 1), Err(Errno::EBADF));

    // O_EXCL on an existing file, O_TRUNC, read-only and write-only modes.
    assert_eq!(
        fx.open("hello.txt", O_WRONLY | O_CREAT | O_EXCL),
        err(Errno::EEXIST)
    );
    let h = fx.open("hello.txt", O_WRONLY | O_TRUNC);
    assert_eq!(h, 3, "handle numbers are reused");
    assert_eq!(fx.read(h, 1), Err(Errno::EBADF), "write-only");
    assert_eq!(fx.write(h, b"abc"), 3);
    let r = fx.open("hello.txt", O_RDONLY);
    assert_eq!(r, 4);
    assert_eq!(fx.write(r, b"x"), err(Errno::EBADF), "read-only");
    assert_eq!(fx.read(r, 10).unwrap(), b"abc");
    assert_eq!(fx.open("missing", O_RDONLY), err(Errno::ENOENT));
    assert_eq!(fx.open("hello.txt/", O_RDONLY), err(Errno::ENOTDIR));
    assert_eq!(fx.stat("hello.txt/", 0), Err(Errno::ENOTDIR));
    assert_eq!(
        fx.open("hello.txt", O_RDONLY | O_DIRECTORY),
        err(Errno::ENOTDIR)
    );
    fx.assert_outside_untouched();
}

#[test]
fn append_writes_go_to_the_end() {
    let fx = Fx::new();
    std::fs::write(fx.root().join("log"), b"one\n").unwrap();
    let h = fx.open("log", O_WRONLY | O_APPEND);
    assert!(h >= 3);
    assert_eq!(fx.lseek(h, 0, whence::SEEK_SET), 0);
    assert_eq!(fx.write(h, b"two\n"), 4);
    std::fs::OpenOptions::new()
        .append(true)
        .open(fx.root().join("log"))
        .unwrap()
        .write_all(b"host\n")
        .unwrap();
    assert_eq!(fx.write(h, b"three\n"), 6);
    assert_eq!(
        std::fs::read_to_string(fx.root().join("log")).unwrap(),
        "one\ntwo\nhost\nthree\n"
    );
}

#[test]
fn directories_are_made_listed_renamed_and_removed() {
    let fx = Fx::new();
    assert_eq!(fx.path_op(Op::Mkdir, "sub", 0, 0o755), 0);
    assert_eq!(fx.path_op(Op::Mkdir, "sub", 0, 0o755), err(Errno::EEXIST));
    assert_eq!(fx.path_op(Op::Mkdir, "sub/deeper/", 0, 0o700), 0);
    assert!(fx.root().join("sub/deeper").is_dir());
    let h = fx.open("sub/a", O_WRONLY | O_CREAT);
    assert!(h >= 3);
    fx.close(h);
    let st = fx.stat("sub", 0).unwrap();
    assert_eq!(st.mode & file_type::S_IFMT, file_type::S_IFDIR);
    let root = fx.stat("", 0).unwrap();
    assert_eq!(root.mode & file_type::S_IFMT, file_type::S_IFDIR);
    assert_eq!(fx.stat(".", 0).unwrap().ino, root.ino);
    assert_eq!(
        fx.stat("sub/..", 0).unwrap().ino,
        root.ino,
        "'..' inside is fine"
    );
    assert_eq!(fx.stat("./sub//a", 0).unwrap().size, 0);
    assert_eq!(fx.stat("sub/", 0).unwrap().ino, st_ino(&fx, "sub"));

    let names = fx.list("sub", 4096);
    assert_eq!(names, BTreeSet::from(["a".into(), "deeper".into()]));
    let h = fx.open("sub", O_RDONLY | O_DIRECTORY);
    let mut kinds = fx.read_dir_once(h, 4096).unwrap();
    kinds.sort();
    assert_eq!(
        kinds,
        [("a".into(), 8), ("deeper".into(), 4)],
        "DT_REG, DT_DIR"
    );
    assert_eq!(fx.read_dir_once(h, 4096).unwrap(), [], "the end");
    assert_eq!(fx.lseek(h, 0, whence::SEEK_SET), 0, "rewind");
    assert_eq!(fx.read_dir_once(h, 4096).unwrap().len(), 2);
    assert_eq!(fx.lseek(h, 5, whence::SEEK_SET), err(Errno::EINVAL));
    assert_eq!(fx.fstat(h).unwrap().ino, st.ino);
    assert_eq!(fx.read(h, 10), Err(Errno::EISDIR));
    assert_eq!(fx.write(h, b"x"), err(Errno::EBADF));
    fx.close(h);
    // The mount root itself can be listed.
    assert_eq!(fx.list("", 4096), BTreeSet::from(["sub".into()]));
    // Directories open read-only, without O_CREAT.
    assert_eq!(fx.open("sub", O_RDWR), err(Errno::EISDIR));
    assert_eq!(fx.open("sub", O_RDONLY | O_CREAT), err(Errno::EISDIR));
    let plain = fx.open("sub", O_RDONLY);
    assert!(plain >= 3, "a directory opens without O_DIRECTORY too");
    let file = fx.open("sub/a", O_RDONLY);
    assert_eq!(fx.read_dir_once(file, 4096), Err(Errno::ENOTDIR));

    assert_eq!(fx.rename("sub/a", "b"), 0);
    assert!(fx.root().join("b").is_file());
    assert_eq!(fx.rename("missing", "c"), err(Errno::ENOENT));
    assert_eq!(fx.path_op(Op::Rmdir, "sub", 0, 0), err(Errno::ENOTEMPTY));
    assert_eq!(
        fx.path_op(Op::Unlink, "sub/deeper", 0, 0),
        err(Errno::EISDIR)
    );
    assert_eq!(fx.path_op(Op::Rmdir, "b", 0, 0), err(Errno::ENOTDIR));
    assert_eq!(fx.path_op(Op::Rmdir, "sub/deeper", 0, 0), 0);
    assert_eq!(fx.path_op(Op::Rmdir, "sub", 0, 0), 0);
    assert_eq!(fx.path_op(Op::Unlink, "b", 0, 0), 0);
    assert_eq!(fx.path_op(Op::Unlink, "b", 0, 0), err(Errno::ENOENT));
    assert_eq!(std::fs::read_dir(fx.root()).unwrap().count(), 0);
    fx.assert_outside_untouched();
}

#[test]
fn read_dir_resumes_where_the_buffer_filled() {
    let fx = Fx::new();
    let mut expected = BTreeSet::new();
    for i in 0..300 {
        let name = format!("file-with-a-longish-name-{i:04}");
        std::fs::write(fx.root().join(&name), b"").unwrap();
        expected.insert(name);
    }
    let one = DirEntryHeader::record_len_for(29);
    for len in [one, one + 7, 3 * one + 5, 4096, 1 << 20] {
        assert_eq!(fx.list("", len), expected, "buffer of {len}");
    }
    // A buffer too small for the next entry: EINVAL, and the entry waits.
    let h = fx.open("", O_RDONLY);
    let first = fx.read_dir_once(h, one).unwrap();
    assert_eq!(first.len(), 1);
    assert_eq!(fx.read_dir_once(h, one - 8), Err(Errno::EINVAL));
    assert_eq!(fx.read_dir_once(h, 0), Err(Errno::EINVAL));
    let mut rest: BTreeSet<String> = BTreeSet::new();
    loop {
        let batch = fx.read_dir_once(h, 1000).unwrap();
        if batch.is_empty() {
            break;
        }
        rest.extend(batch.into_iter().map(|(n, _)| n));
    }
    rest.insert(first[0].0.clone());
    assert_eq!(rest, expected);
}

#[test]
fn standard_handles_are_the_host_stdio() {
    let mut fx = Fx::new();
    fx.stdin.as_mut().unwrap().write_all(b"typed").unwrap();
    assert_eq!(fx.read(0, 100).unwrap(), b"typed");
    assert_eq!(fx.write(1, b"out"), 3);
    assert_eq!(fx.write(2, b"err"), 3);
    let mut got = [0u8; 3];
    fx.stdout.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"out");
    fx.stderr.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"err");

    assert_eq!(fx.write(0, b"x"), err(Errno::EBADF), "stdin is read-only");
    assert_eq!(fx.read(1, 1), Err(Errno::EBADF), "stdout is write-only");
    assert_eq!(fx.read(2, 1), Err(Errno::EBADF));
    assert_eq!(fx.lseek(1, 0, whence::SEEK_SET), err(Errno::ESPIPE));
    assert_eq!(
        fx.handle_op(Op::Pread, 0, vec![0; 1], 0).0,
        err(Errno::ESPIPE)
    );
    assert_eq!(
        fx.handle_op(Op::Pwrite, 1, vec![0; 1], 0).0,
        err(Errno::ESPIPE)
    );
    assert_eq!(
        fx.handle_op(Op::Ftruncate, 1, Vec::new(), 0).0,
        err(Errno::EINVAL)
    );
    assert_eq!(
        fx.handle_op(Op::ReadDir, 0, vec![0; 64], 0).0,
        err(Errno::ENOTDIR)
    );
    assert!(fx.fstat(0).is_ok());
    assert_eq!(
        fx.fstat(1).unwrap().mode & file_type::S_IFMT,
        file_type::S_IFIFO
    );

    drop(fx.stdin.take());
    assert_eq!(fx.read(0, 10).unwrap(), b"", "end of input");
    assert_eq!(fx.close(1), 0);
    assert_eq!(fx.write(1, b"x"), err(Errno::EBADF), "closed");
    assert_eq!(fx.write(2, b"still"), 5);
    // A file never takes number 0-2, even when they are closed.
    assert_eq!(fx.open("f", O_RDWR | O_CREAT), 3);
}

#[test]
fn paths_cannot_leave_the_mount() {
    let fx = Fx::new();
    let root = fx.root();
    std::fs::create_dir(root.join("sub")).unwrap();
    std::fs::write(root.join("sub/inner"), b"inner").unwrap();
    symlink("../outside", root.join("out")).unwrap();
    symlink("../outside/secret", root.join("secret-link")).unwrap();
    symlink("/etc", root.join("etc")).unwrap();
    symlink("/etc/passwd", root.join("passwd")).unwrap();
    symlink("sub", root.join("in")).unwrap();
    symlink("sub/inner", root.join("inner-link")).unwrap();
    symlink("sub/../sub/inner", root.join("winding")).unwrap();

    let eacces = err(Errno::EACCES);
    for path in [
        "..",
        "../outside/secret",
        "sub/../../outside/secret",
        "sub/../..",
        "out/secret",
        "out",
        "secret-link",
        "etc/passwd",
        "passwd",
        "in/../../outside/secret",
    ] {
        for flags in [O_RDONLY, O_RDWR, O_WRONLY | O_TRUNC, O_RDWR | O_CREAT] {
            assert_eq!(fx.open(path, flags), eacces, "open {path:?} {flags:#o}");
        }
        assert_eq!(fx.stat(path, 0), Err(Errno::EACCES), "stat {path:?}");
    }
    for path in ["/etc/passwd", "/", "//x"] {
        assert_eq!(fx.open(path, O_RDONLY), err(Errno::EINVAL), "{path}");
        assert_eq!(fx.stat(path, 0), Err(Errno::EINVAL), "{path}");
        assert_eq!(fx.path_op(Op::Unlink, path, 0, 0), err(Errno::EINVAL));
    }
    // Creating through links or `..` above the mount.
    assert_eq!(fx.open("out/new", O_WRONLY | O_CREAT), eacces);
    assert_eq!(fx.open("../outside/new", O_WRONLY | O_CREAT), eacces);
    assert_eq!(fx.path_op(Op::Mkdir, "out/new", 0, 0o777), eacces);
    assert_eq!(fx.path_op(Op::Mkdir, "../new", 0, 0o777), eacces);
    assert_eq!(fx.path_op(Op::Unlink, "out/secret", 0, 0), eacces);
    assert_eq!(fx.path_op(Op::Unlink, "../outside/secret", 0, 0), eacces);
    assert_eq!(fx.path_op(Op::Rmdir, "sub/../../outside", 0, 0), eacces);
    assert_eq!(fx.rename("out/secret", "stolen"), eacces);
    assert_eq!(fx.rename("sub/inner", "out/planted"), eacces);
    assert_eq!(fx.rename("sub/inner", "../planted"), eacces);
    // Last components that are not names.
    for path in ["", ".", "..", "sub/.", "sub/..", "sub/../", "./"] {
        assert_eq!(
            fx.path_op(Op::Unlink, path, 0, 0),
            err(Errno::EINVAL),
            "{path:?}"
        );
        assert_eq!(
            fx.path_op(Op::Rmdir, path, 0, 0),
            err(Errno::EINVAL),
            "{path:?}"
        );
        assert_eq!(
            fx.path_op(Op::Mkdir, path, 0, 0),
            err(Errno::EINVAL),
            "{path:?}"
        );
        assert_eq!(fx.rename(path, "x"), err(Errno::EINVAL), "{path:?}");
        assert_eq!(fx.rename("sub/inner", path), err(Errno::EINVAL), "{path:?}");
    }
    fx.assert_outside_untouched();

    // Links that stay inside work, and STAT_NOFOLLOW sees links themselves.
    let h = fx.open("inner-link", O_RDONLY);
    assert_eq!(fx.read(h, 10).unwrap(), b"inner");
    let h = fx.open("winding", O_RDONLY);
    assert_eq!(fx.read(h, 10).unwrap(), b"inner");
    assert_eq!(fx.list("in", 4096), BTreeSet::from(["inner".into()]));
    let link = fx.stat("out", STAT_NOFOLLOW).unwrap();
    assert_eq!(link.mode & file_type::S_IFMT, file_type::S_IFLNK);
    assert_eq!(fx.stat("out", 2), Err(Errno::EINVAL), "unknown stat flag");
    // Removing a link removes the link, not its target.
    assert_eq!(fx.path_op(Op::Unlink, "secret-link", 0, 0), 0);
    assert_eq!(fx.path_op(Op::Unlink, "out", 0, 0), 0);
    fx.assert_outside_untouched();
}

#[test]
fn magic_links_are_not_followed() {
    // /proc/self/root is a magic link to "/": a mount of /proc/self must
    // not reach the host's root through it.
    let proc_self = Path::new("/proc/self");
    if !proc_self.join("root").exists() {
        println!("SKIPPED: magic_links_are_not_followed: no /proc/self/root");
        return;
    }
    let server = Server::new(vec![Mount::new(proc_self, "/p").unwrap()]).unwrap();
    for path in ["root/etc/passwd", "cwd", "exe", "fd/0"] {
        let mut b = bufs(path, Vec::new());
        let call = FsCall {
            op: Op::Open as u32,
            path: slice(path.len()),
            ..Default::default()
        };
        let r = server.call(&call, &mut b);
        assert!(
            r == err(Errno::ELOOP) || r == err(Errno::EACCES),
            "{path}: {r}"
        );
    }
}

#[test]
fn devices_fifos_and_sockets_are_not_opened() {
    let fx = Fx::new();
    let root = fx.root();
    let fifo =
        std::ffi::CString::new(root.join("fifo").into_os_string().into_encoded_bytes()).unwrap();
    // SAFETY: `fifo` is a NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o666) }, 0);
    let _socket = std::os::unix::net::UnixListener::bind(root.join("socket")).unwrap();
    // Opening the FIFO for reading would block forever without a writer:
    // this returning at all is part of the test.
    for name in ["fifo", "socket"] {
        for flags in [
            O_RDONLY,
            O_WRONLY,
            O_RDWR,
            O_RDWR | O_CREAT,
            O_RDONLY | O_TRUNC,
        ] {
            assert_eq!(
                fx.open(name, flags),
                err(Errno::EACCES),
                "{name} {flags:#o}"
            );
        }
    }
    let st = fx.stat("fifo", 0).unwrap();
    assert_eq!(
        st.mode & file_type::S_IFMT,
        file_type::S_IFIFO,
        "stat is fine"
    );

    let null =
        std::ffi::CString::new(root.join("null").into_os_string().into_encoded_bytes()).unwrap();
    // SAFETY: `null` is a NUL-terminated path; makedev(1, 3) is /dev/null.
    let made = unsafe { libc::mknod(null.as_ptr(), libc::S_IFCHR | 0o666, libc::makedev(1, 3)) };
    if made == 0 {
        assert_eq!(fx.open("null", O_RDWR), err(Errno::EACCES));
        assert_eq!(fx.open("null", O_RDONLY), err(Errno::EACCES));
    } else {
        println!(
            "SKIPPED (part): device node: mknod failed: {}",
            std::io::Error::last_os_error()
        );
    }
    symlink("/dev/zero", root.join("zero")).unwrap();
    assert_eq!(fx.open("zero", O_RDONLY), err(Errno::EACCES));
}

#[test]
fn bad_handles_are_ebadf() {
    let fx = Fx::new();
    for h in [-1, 3, 4, 1023, 1024, i32::MAX as i64, i32::MIN as i64] {
        for op in [
            Op::Read,
            Op::Write,
            Op::Pread,
            Op::Pwrite,
            Op::Close,
            Op::Fstat,
            Op::ReadDir,
            Op::Ftruncate,
        ] {
            let (r, _) = fx.handle_op(op, h, vec![0; 128], 0);
            assert_eq!(r, err(Errno::EBADF), "{op:?} on {h}");
        }
        assert_eq!(fx.lseek(h, 0, whence::SEEK_SET), err(Errno::EBADF));
    }
}

#[test]
fn the_handle_table_is_limited() {
    let fx = Fx::new();
    std::fs::write(fx.root().join("f"), b"x").unwrap();
    let handles: Vec<i64> = (3..MAX_HANDLES).map(|_| fx.open("f", O_RDONLY)).collect();
    assert_eq!(handles, (3..MAX_HANDLES as i64).collect::<Vec<_>>());
    assert_eq!(fx.open("f", O_RDONLY), err(Errno::EMFILE));
    assert_eq!(fx.close(500), 0);
    assert_eq!(fx.open("f", O_RDONLY), 500);
    assert_eq!(fx.open("f", O_RDONLY), err(Errno::EMFILE));
}

#[test]
fn bad_arguments_are_refused() {
    let fx = Fx::new();
    std::fs::write(fx.root().join("f"), b"x").unwrap();
    // Unknown flags and the invalid access mode 3.
    for flags in [
        O_ACCMODE,
        0o4000,     // O_NONBLOCK
        0o10000,    // O_DSYNC
        0o400,      // O_NOCTTY: the host adds it by itself
        0o2000000,  // O_CLOEXEC: likewise
        0o10000000, // O_PATH
        0o20000000, // O_TMPFILE's bit
        1 << 31,
        u32::MAX,
    ] {
        assert_eq!(fx.open("f", flags), err(Errno::EINVAL), "{flags:#o}");
    }
    // Paths: too long, not UTF-8, with NUL.
    let long = "a/".repeat(PATH_MAX as usize / 2) + "b";
    assert_eq!(fx.open(&long, O_RDONLY), err(Errno::ENAMETOOLONG));
    assert_eq!(fx.stat(&long, 0), Err(Errno::ENAMETOOLONG));
    assert_eq!(fx.path_op(Op::Mkdir, &long, 0, 0), err(Errno::ENAMETOOLONG));
    assert_eq!(fx.rename("f", &long), err(Errno::ENAMETOOLONG));
    let longest = "./".repeat(PATH_MAX as usize / 2 - 1) + "f";
    assert!(fx.open(&longest, O_RDONLY) >= 3, "PATH_MAX bytes are fine");
    let long_name = "n".repeat(300);
    assert_eq!(fx.open(&long_name, O_RDONLY), err(Errno::ENAMETOOLONG));
    for raw in [&b"f\xff"[..], b"f\0", b"\0", b"\xc3("] {
        let mut b = VecBuffers {
            path: raw.to_vec(),
            ..Default::default()
        };
        let call = FsCall {
            op: Op::Open as u32,
            ..Default::default()
        };
        assert_eq!(fx.run(call, &mut b), err(Errno::EINVAL), "{raw:?}");
    }
    // A transport path whose length differs from the call's.
    let call = FsCall {
        op: Op::Open as u32,
        path: slice(5),
        ..Default::default()
    };
    assert_eq!(
        fx.server.call(&call, &mut bufs("f", Vec::new())),
        err(Errno::EFAULT)
    );
    // Too small for a FileStat.
    let h = fx.open("f", O_RDONLY);
    let (r, _) = fx.handle_op(Op::Fstat, h, vec![0; 111], 0);
    assert_eq!(r, err(Errno::EFAULT));
    let call = FsCall {
        op: Op::Stat as u32,
        ..Default::default()
    };
    assert_eq!(
        fx.run(call, &mut bufs("f", vec![0; 100])),
        err(Errno::EFAULT)
    );
    // Unknown operations and bad mount indexes.
    let unknown = FsCall {
        op: 16,
        ..Default::default()
    };
    assert_eq!(
        fx.server.call(&unknown, &mut VecBuffers::default()),
        err(Errno::ENOSYS)
    );
    for mount in [-1, 1, i32::MAX] {
        let call = FsCall {
            op: Op::Open as u32,
            handle: mount,
            ..Default::default()
        };
        assert_eq!(fx.run(call, &mut bufs("f", Vec::new())), err(Errno::ENOENT));
    }
}

/// A transport whose memory holds nothing.
struct Unmapped;

impl CallBuffers for Unmapped {
    fn path(&mut self, _: PathArg) -> Result<Vec<u8>, Errno> {
        Err(Errno::EFAULT)
    }

    fn data(&mut self) -> Result<DataBuf<'_>, Errno> {
        Err(Errno::EFAULT)
    }
}

#[test]
fn unmapped_buffers_are_efault() {
    let fx = Fx::new();
    std::fs::write(fx.root().join("f"), b"x").unwrap();
    let h = fx.open("f", O_RDWR);
    for op in [
        Op::Read,
        Op::Write,
        Op::Pread,
        Op::Pwrite,
        Op::Fstat,
        Op::MountInfo,
    ] {
        let call = FsCall {
            op: op as u32,
            handle: if op == Op::MountInfo { 0 } else { h as i32 },
            buf: slice(200),
            ..Default::default()
        };
        assert_eq!(
            fx.server.call(&call, &mut Unmapped),
            err(Errno::EFAULT),
            "{op:?}"
        );
    }
    for op in [
        Op::Open,
        Op::Stat,
        Op::Unlink,
        Op::Mkdir,
        Op::Rmdir,
        Op::Rename,
    ] {
        let call = FsCall {
            op: op as u32,
            path: slice(1),
            buf: slice(200),
            ..Default::default()
        };
        assert_eq!(
            fx.server.call(&call, &mut Unmapped),
            err(Errno::EFAULT),
            "{op:?}"
        );
    }
    assert_eq!(std::fs::read(fx.root().join("f")).unwrap(), b"x");
}

#[test]
fn modes_are_masked() {
    let fx = Fx::new();
    let h = fx.path_op(Op::Open, "setuid", O_WRONLY | O_CREAT, 0o4777);
    assert!(h >= 3);
    let mode = std::fs::metadata(fx.root().join("setuid"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o7000, 0, "{mode:o}");
    assert_eq!(fx.path_op(Op::Mkdir, "sticky", 0, 0o7777), 0);
    let mode = std::fs::metadata(fx.root().join("sticky"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o7000, 0, "{mode:o}");
    assert_eq!(
        fx.path_op(Op::Open, "private", O_WRONLY | O_CREAT, 0o600),
        4
    );
    let mode = std::fs::metadata(fx.root().join("private"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
}

#[test]
fn mount_info_and_mount_indexes() {
    let fx = Fx::new();
    let other = TempDir::new();
    std::fs::write(other.path().join("o"), b"other").unwrap();
    let server = Server::new(vec![
        Mount::new(&fx.root(), "/data").unwrap(),
        Mount::new(other.path(), "/other/place").unwrap(),
    ])
    .unwrap();
    let info = |index: i32, len: usize| {
        let call = FsCall {
            op: Op::MountInfo as u32,
            handle: index,
            buf: slice(len),
            ..Default::default()
        };
        let mut b = bufs("", vec![0; len]);
        let r = server.call(&call, &mut b);
        (r, b.data)
    };
    assert_eq!(info(0, 64).0, 5);
    assert_eq!(&info(0, 64).1[..5], b"/data");
    assert_eq!(&info(1, 12).1[..], b"/other/place");
    assert_eq!(info(1, 11).0, err(Errno::ERANGE));
    assert_eq!(info(2, 64).0, err(Errno::ENOENT));
    assert_eq!(info(-1, 64).0, err(Errno::ENOENT));

    let open = |index: i32, path: &str| {
        let call = FsCall {
            op: Op::Open as u32,
            handle: index,
            path: slice(path.len()),
            ..Default::default()
        };
        server.call(&call, &mut bufs(path, Vec::new()))
    };
    assert_eq!(open(1, "o"), 3);
    assert_eq!(open(0, "o"), err(Errno::ENOENT));
    // Rename between mounts is EXDEV; to a missing mount ENOENT.
    let rename = |to_mount: u32| {
        let call = FsCall {
            op: Op::Rename as u32,
            handle: 1,
            flags: to_mount,
            path: slice(1),
            path2: slice(1),
            ..Default::default()
        };
        let mut b = bufs("o", Vec::new());
        b.path2 = b"p".to_vec();
        server.call(&call, &mut b)
    };
    assert_eq!(rename(0), err(Errno::EXDEV));
    assert_eq!(rename(7), err(Errno::ENOENT));
    assert_eq!(rename(u32::MAX), err(Errno::ENOENT));
    assert_eq!(rename(1), 0);
    assert!(other.path().join("p").is_file());

    let dup = Server::new(vec![
        Mount::new(&fx.root(), "/data").unwrap(),
        Mount::new(other.path(), "/data").unwrap(),
    ]);
    assert_eq!(dup.unwrap_err(), MountError::Duplicate("/data".into()));
}

#[test]
fn without_mounts_the_guest_sees_no_host_files() {
    let server = Server::new(Vec::new()).unwrap();
    for op in [
        Op::MountInfo,
        Op::Open,
        Op::Stat,
        Op::Unlink,
        Op::Mkdir,
        Op::Rmdir,
        Op::Rename,
    ] {
        for path in ["", "etc/passwd", "/etc/passwd", ".."] {
            let call = FsCall {
                op: op as u32,
                path: slice(path.len()),
                path2: slice(1),
                buf: slice(128),
                ..Default::default()
            };
            let mut b = bufs(path, vec![0; 128]);
            b.path2 = b"x".to_vec();
            assert_eq!(
                server.call(&call, &mut b),
                err(Errno::ENOENT),
                "{op:?} {path}"
            );
        }
    }
}

#[test]
fn handles_work_from_many_threads() {
    let fx = Fx::new();
    std::thread::scope(|s| {
        for t in 0..4 {
            let fx = &fx;
            s.spawn(move || {
                for i in 0..50 {
                    let name = format!("t{t}-{i}");
                    let h = fx.open(&name, O_RDWR | O_CREAT | O_EXCL);
                    assert!(h >= 3, "{name}: {h}");
                    assert_eq!(fx.write(h, name.as_bytes()), name.len() as i64);
                    let (r, data) = fx.handle_op(Op::Pread, h, vec![0; 16], 0);
                    assert_eq!(&data[..r as usize], name.as_bytes());
                    assert_eq!(fx.close(h), 0);
                }
            });
        }
    });
    assert_eq!(std::fs::read_dir(fx.root()).unwrap().count(), 200);
}

extern "C" fn nothing(_: libc::c_int) {}

#[test]
fn stop_ends_a_blocked_stdin_read() {
    // SAFETY: an all-zero sigaction is valid; the handler does nothing (so
    // it is async-signal-safe) and no SA_RESTART makes read return EINTR.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = nothing as extern "C" fn(libc::c_int) as usize;
        libc::sigaction(libc::SIGUSR1, &action, std::ptr::null_mut());
    }
    let fx = Fx::new();
    std::thread::scope(|s| {
        let (tx, rx) = std::sync::mpsc::channel();
        let fx = &fx;
        let reader = s.spawn(move || {
            // SAFETY: pthread_self has no preconditions.
            tx.send(unsafe { libc::pthread_self() }).unwrap();
            fx.read(0, 10)
        });
        let thread = rx.recv().unwrap();
        // A signal before stop() restarts the read.
        std::thread::sleep(std::time::Duration::from_millis(50));
        // SAFETY: the reader thread is alive until joined below.
        unsafe { libc::pthread_kill(thread, libc::SIGUSR1) };
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert!(!reader.is_finished(), "restarted after the first signal");
        fx.server.stop();
        // Keep signalling until the read notices (the first signal may
        // land before it blocks again).
        while !reader.is_finished() {
            // SAFETY: as above; the thread has not been joined yet.
            unsafe { libc::pthread_kill(thread, libc::SIGUSR1) };
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert_eq!(reader.join().unwrap(), Err(Errno::EINTR));
    });
}

/// A small xorshift generator: the fuzz test needs no crate.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[(self.next() % items.len() as u64) as usize]
    }
}

#[test]
fn random_calls_never_panic_or_escape() {
    let mut fx = Fx::new();
    drop(fx.stdin.take()); // stdin at EOF: reads of handle 0 do not block
    let root = fx.root();
    std::fs::create_dir(root.join("d")).unwrap();
    symlink("../outside", root.join("out")).unwrap();
    symlink("/", root.join("slash")).unwrap();
    symlink("d", root.join("dlink")).unwrap();
    let paths: &[&[u8]] = &[
        b"",
        b".",
        b"..",
        b"a",
        b"b",
        b"d",
        b"d/a",
        b"d/b/",
        b"dlink/c",
        b"out",
        b"out/secret",
        b"out/x",
        b"slash/etc/passwd",
        b"../outside/secret",
        b"d/../../outside",
        b"/etc",
        b"a\0b",
        b"\xff",
        b"d/./a",
        b"//",
        b"x/../a",
    ];
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for _ in 0..20_000 {
        let path = rng.pick(paths).to_vec();
        let path2 = rng.pick(paths).to_vec();
        let data_len = rng.pick(&[0usize, 1, 16, 111, 112, 300, 4096]);
        let mut call = FsCall {
            op: (rng.next() % 18) as u32,
            handle: rng.pick(&[-1, 0, 1, 2, 3, 4, 5, 6, 1023, 1024, i32::MAX, i32::MIN]),
            flags: rng.pick(&[
                0,
                1,
                2,
                3,
                O_CREAT | O_RDWR,
                O_CREAT | O_EXCL | O_WRONLY,
                O_TRUNC | O_RDWR,
                O_APPEND | O_WRONLY,
                O_DIRECTORY,
                0o4000,
                u32::MAX,
            ]),
            mode: rng.next() as u32,
            offset: rng.pick(&[0, 1, 5, -1, i64::MAX, i64::MIN, 1 << 40]),
            whence: (rng.next() % 5) as u32,
            ..Default::default()
        };
        // Sometimes lie about the lengths.
        call.path.len = if rng.next().is_multiple_of(10) {
            rng.next()
        } else {
            path.len() as u64
        };
        call.path2.len = path2.len() as u64;
        call.buf.len = if rng.next().is_multiple_of(10) {
            rng.next()
        } else {
            data_len as u64
        };
        let mut b = VecBuffers {
            path,
            path2,
            data: vec![0xaa; data_len],
        };
        // Writes to handles 1 and 2 go to pipes nobody reads: keep them
        // from filling up.
        if call.handle == 1 || call.handle == 2 {
            call.handle = 3;
        }
        let r = fx.server.call(&call, &mut b);
        assert!(
            r >= 0 || Errno::check(r).is_err_and(|e| e != Errno::EIO),
            "{call:?}: {r}"
        );
    }
    let mut sink = Vec::new();
    drop(fx.server);
    fx.stdout.read_to_end(&mut sink).unwrap();
    let tmp = fx.tmp;
    let names: Vec<_> = std::fs::read_dir(tmp.path().join("outside"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["secret"]);
    assert_eq!(
        std::fs::read(tmp.path().join("outside/secret")).unwrap(),
        SECRET
    );
}
