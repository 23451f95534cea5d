use std::sync::Weak;

use super::*;

const RW: OpenFlags = OpenFlags::RDWR;
const CREATE: OpenFlags = OpenFlags::RDWR.union(OpenFlags::CREAT);

fn put(vfs: &Vfs, path: &str, data: &[u8]) {
    let fd = vfs.open(path, CREATE | OpenFlags::TRUNC, 0o644).unwrap();
    assert_eq!(vfs.write(fd, data), Ok(data.len()));
    vfs.close(fd).unwrap();
}

fn get(vfs: &Vfs, path: &str) -> Vec<u8> {
    let fd = vfs.open(path, OpenFlags::RDONLY, 0).unwrap();
    let mut out = vec![0u8; 4096];
    let n = vfs.read(fd, &mut out).unwrap();
    out.truncate(n);
    vfs.close(fd).unwrap();
    out
}

fn names(entries: &[DirEntry]) -> Vec<&str> {
    let mut v: Vec<&str> = entries.iter().map(|e| e.name.as_str()).collect();
    v.sort();
    v
}

/// A VFS whose root MemFs the test can also reach directly.
fn vfs_with_root() -> (Vfs, Arc<MemFs>) {
    let root = Arc::new(MemFs::new());
    (Vfs::with_root(root.clone()), root)
}

#[test]
fn new_has_tmp() {
    let vfs = Vfs::new();
    let st = vfs.stat("/tmp").unwrap();
    assert_eq!(FileType::from_mode(st.mode), FileType::Dir);
    assert_eq!(st.mode & 0o7777, 0o1777);
    assert_eq!(names(&vfs.read_dir_path("/").unwrap()), ["tmp"]);
    assert_eq!(vfs.getcwd(), "/");
    assert_eq!(vfs.mount_points(), ["/"]);
}

#[test]
fn longest_mount_by_component() {
    let (vfs, root) = vfs_with_root();
    let mnt = Arc::new(MemFs::new());
    let mntx = Arc::new(MemFs::new());
    let inner = Arc::new(MemFs::new());
    vfs.mount("/mnt", mnt.clone()).unwrap();
    vfs.mount("/mntx", mntx.clone()).unwrap();
    vfs.mount("/mnt/a/inner", inner.clone()).unwrap(); // mkdir -p of /mnt/a
    put(&vfs, "/mnt/f", b"mnt");
    put(&vfs, "/mntx/f", b"mntx");
    put(&vfs, "/mnt/a/inner/f", b"inner");
    put(&vfs, "/mnt/a/f", b"mnt-a");
    put(&vfs, "/f", b"root");

    // Each landed in its own file system.
    let read = |fs: &MemFs, path: &str| {
        let f = fs.open(path, OpenFlags::RDONLY, 0).unwrap();
        let mut buf = [0u8; 16];
        let n = f.read(&mut buf).unwrap();
        buf[..n].to_vec()
    };
    assert_eq!(read(&mnt, "f"), b"mnt");
    assert_eq!(read(&mntx, "f"), b"mntx");
    assert_eq!(read(&inner, "f"), b"inner");
    assert_eq!(read(&mnt, "a/f"), b"mnt-a");
    assert_eq!(read(&root, "f"), b"root");
    // The mount points exist as directories below.
    assert!(root.stat("mnt", true).is_ok());
    assert!(root.stat("mntx", true).is_ok());
    assert!(mnt.stat("a/inner", true).is_ok());
    assert_eq!(root.stat("mnt/f", true).err(), Some(Errno::ENOENT));

    // `..` out of a mount goes back to the parent file system.
    assert_eq!(get(&vfs, "/mnt/a/inner/../../../f"), b"root");
    assert_eq!(get(&vfs, "/mnt/a/inner/../f"), b"mnt-a");
    // A mount point stats as the mounted root.
    assert_eq!(
        vfs.stat("/mnt").unwrap().dev,
        mnt.stat("", true).unwrap().dev
    );
    assert_eq!(
        vfs.stat("/mnt/a/inner").unwrap().ino,
        inner.stat("", true).unwrap().ino
    );
}

#[test]
fn mount_errors_and_unmount() {
    let (vfs, root) = vfs_with_root();
    let fs = Arc::new(MemFs::new());
    vfs.mount("/m", fs.clone()).unwrap();
    assert_eq!(vfs.mount("/m", Arc::new(MemFs::new())), Err(Errno::EBUSY));
    assert_eq!(vfs.mount("/m/", Arc::new(MemFs::new())), Err(Errno::EBUSY));
    assert_eq!(vfs.mount("/", Arc::new(MemFs::new())), Err(Errno::EBUSY));
    put(&vfs, "/file", b"");
    assert_eq!(
        vfs.mount("/file", Arc::new(MemFs::new())),
        Err(Errno::ENOTDIR)
    );
    assert_eq!(
        vfs.mount("/file/x", Arc::new(MemFs::new())),
        Err(Errno::ENOTDIR)
    );
    assert_eq!(vfs.mount("", Arc::new(MemFs::new())), Err(Errno::ENOENT));
    // Multi-byte names, several levels created.
    vfs.mount("/ä/ßx/€", Arc::new(MemFs::new())).unwrap();
    assert!(root.stat("ä/ßx/€", true).is_ok());
    vfs.unmount("/ä/ßx/€").unwrap();

    // Relative to the cwd.
    vfs.mkdir("/tmp", 0o777).unwrap();
    vfs.chdir("/tmp").unwrap();
    vfs.mount("rel", Arc::new(MemFs::new())).unwrap();
    assert_eq!(vfs.mount_points(), ["/", "/m", "/tmp/rel"]);

    vfs.mount("/m/n", Arc::new(MemFs::new())).unwrap();
    assert_eq!(vfs.unmount("/m").err(), Some(Errno::EBUSY));
    assert_eq!(vfs.unmount("/").err(), Some(Errno::EBUSY));
    assert_eq!(vfs.unmount("/tmp").err(), Some(Errno::EINVAL));
    vfs.unmount("/m/n").unwrap();
    put(&vfs, "/m/kept", b"k");
    let fd = vfs.open("/m/kept", RW, 0).unwrap();
    let gone = vfs.unmount("/m").unwrap();
    assert!(gone.stat("kept", true).is_ok());
    // Files open on it stay usable; the path now reaches the root fs.
    assert_eq!(vfs.read(fd, &mut [0; 4]), Ok(1));
    assert_eq!(vfs.stat("/m/kept").err(), Some(Errno::ENOENT));
    assert!(root.stat("m", true).is_ok());
}

#[test]
fn mount_point_protection_and_exdev() {
    let vfs = Vfs::new();
    vfs.mount("/a/m", Arc::new(MemFs::new())).unwrap();
    vfs.mount("/b", Arc::new(MemFs::new())).unwrap();
    put(&vfs, "/a/m/f", b"x");
    put(&vfs, "/a/g", b"y");
    vfs.mkdir("/a/m/d", 0o755).unwrap();

    assert_eq!(vfs.rename("/a/m/f", "/a/f"), Err(Errno::EXDEV));
    assert_eq!(vfs.rename("/a/g", "/b/g"), Err(Errno::EXDEV));
    assert_eq!(vfs.rename("/a/g", "/a/m/g"), Err(Errno::EXDEV));
    assert_eq!(vfs.rmdir("/a/m"), Err(Errno::EBUSY));
    assert_eq!(vfs.rmdir("/b"), Err(Errno::EBUSY));
    assert_eq!(vfs.rmdir("/"), Err(Errno::EBUSY));
    assert_eq!(vfs.unlink("/a/m"), Err(Errno::EBUSY));
    assert_eq!(vfs.rename("/a/m", "/a/n"), Err(Errno::EBUSY));
    assert_eq!(vfs.rename("/a", "/z"), Err(Errno::EBUSY)); // holds a mount
    assert_eq!(vfs.rename("/a/g", "/b"), Err(Errno::EBUSY));
    assert_eq!(vfs.rename("/", "/x"), Err(Errno::EBUSY));
    // The parent of a mount point is not empty.
    assert_eq!(vfs.rmdir("/a"), Err(Errno::ENOTEMPTY));
    assert_eq!(vfs.mkdir("/a/m", 0o755), Err(Errno::EEXIST));
    // Within one mount all is fine.
    vfs.rename("/a/m/f", "/a/m/d/f").unwrap();
    assert_eq!(get(&vfs, "/a/m/d/f"), b"x");
    vfs.rename("/a/g", "/a/h").unwrap();
}

#[test]
fn read_dir_path_lists_mount_points() {
    let (vfs, root) = vfs_with_root();
    vfs.mkdir("/d", 0o755).unwrap();
    put(&vfs, "/d/file", b"");
    let m = Arc::new(MemFs::new());
    vfs.mount("/d/m", m.clone()).unwrap();
    vfs.mount("/d/m/deeper", Arc::new(MemFs::new())).unwrap();
    // Take the mount point away beneath the mount: still listed.
    vfs.mount("/d/ghost", Arc::new(MemFs::new())).unwrap();
    root.rmdir("d/ghost").unwrap();
    let entries = vfs.read_dir_path("/d").unwrap();
    assert_eq!(names(&entries), ["file", "ghost", "m"]);
    let ghost = entries.iter().find(|e| e.name == "ghost").unwrap();
    assert_eq!(ghost.kind, FileType::Dir);
    assert_eq!(names(&vfs.read_dir_path("/d/m").unwrap()), ["deeper"]);
    assert_eq!(vfs.read_dir_path("/d/file").err(), Some(Errno::ENOTDIR));
    assert_eq!(vfs.read_dir_path("/nope").err(), Some(Errno::ENOENT));
    // Through an fd: only what the file system has.
    let fd = vfs.open("/d", OpenFlags::RDONLY, 0).unwrap();
    assert_eq!(names(&vfs.read_dir(fd).unwrap()), ["file", "m"]);
    assert_eq!(vfs.read_dir(fd), Ok(Vec::new()));
}

#[test]
fn fd_table() {
    let vfs = Vfs::new();
    put(&vfs, "/tmp/f", b"0123456789");
    let a = vfs.open("/tmp/f", RW, 0).unwrap();
    let b = vfs.open("/tmp/f", RW, 0).unwrap();
    let c = vfs.open("/tmp/f", RW, 0).unwrap();
    assert_eq!((a, b, c), (0, 1, 2)); // nothing set up as stdio
    vfs.close(b).unwrap();
    assert_eq!(vfs.close(b), Err(Errno::EBADF));
    assert_eq!(vfs.open("/tmp/f", RW, 0), Ok(1)); // lowest free

    // dup shares the position.
    let d = vfs.dup(a).unwrap();
    assert_eq!(d, 3);
    let mut buf = [0u8; 3];
    vfs.read(a, &mut buf).unwrap();
    vfs.read(d, &mut buf).unwrap();
    assert_eq!(&buf, b"345");
    assert_eq!(vfs.lseek(a, SeekFrom::Current(0)), Ok(6));
    // Separate opens do not.
    assert_eq!(vfs.lseek(c, SeekFrom::Current(0)), Ok(0));
    // Closing one of the pair keeps the other working.
    vfs.close(a).unwrap();
    assert_eq!(vfs.read(d, &mut buf), Ok(3));
    assert_eq!(&buf, b"678");

    // dup2 onto a used fd replaces it, onto itself is a no-op, onto a
    // far fd grows the table.
    assert_eq!(vfs.dup2(d, c), Ok(c));
    assert_eq!(vfs.lseek(c, SeekFrom::Current(0)), Ok(9));
    assert_eq!(vfs.dup2(d, d), Ok(d));
    assert_eq!(vfs.dup2(d, 700), Ok(700));
    vfs.lseek(700, SeekFrom::Start(1)).unwrap();
    assert_eq!(vfs.lseek(d, SeekFrom::Current(0)), Ok(1));
    assert_eq!(vfs.dup2(d, MAX_FDS as i32), Err(Errno::EBADF));
    assert_eq!(vfs.dup2(d, -1), Err(Errno::EBADF));
    assert_eq!(vfs.dup2(999, 5), Err(Errno::EBADF));
    assert_eq!(vfs.dup(999), Err(Errno::EBADF));
    assert_eq!(vfs.open("/tmp/f", RW, 0), Ok(0));

    // EBADF everywhere.
    for fd in [-1, 5, 699, 1023, 1024, i32::MAX, i32::MIN] {
        assert_eq!(vfs.read(fd, &mut buf), Err(Errno::EBADF), "{fd}");
        assert_eq!(vfs.write(fd, b""), Err(Errno::EBADF));
        assert_eq!(vfs.fstat(fd).err(), Some(Errno::EBADF));
        assert_eq!(vfs.close(fd), Err(Errno::EBADF));
        assert!(vfs.file(fd).is_err());
    }
}

#[test]
fn emfile_and_reuse() {
    let vfs = Vfs::new();
    put(&vfs, "/tmp/f", b"");
    for i in 0..MAX_FDS {
        assert_eq!(vfs.open("/tmp/f", OpenFlags::RDONLY, 0), Ok(i as i32));
    }
    assert_eq!(vfs.open("/tmp/f", OpenFlags::RDONLY, 0), Err(Errno::EMFILE));
    assert_eq!(vfs.dup(3), Err(Errno::EMFILE));
    vfs.close(517).unwrap();
    assert_eq!(vfs.dup(3), Ok(517));
    for fd in 0..MAX_FDS as i32 {
        vfs.close(fd).unwrap();
    }
    assert_eq!(vfs.open("/tmp/f", OpenFlags::RDONLY, 0), Ok(0));
}

/// A file that, when dropped, uses the VFS it was installed in: closing it
/// must not hold the fd-table lock (a spin lock would hang this test).
struct Reentrant(Weak<Vfs>, Arc<spin::Mutex<bool>>);

impl File for Reentrant {
    fn read(&self, _buf: &mut [u8]) -> Result<usize> {
        Ok(0)
    }
    fn write(&self, buf: &[u8]) -> Result<usize> {
        Ok(buf.len())
    }
    fn stat(&self) -> Result<FileStat> {
        Ok(FileStat::default())
    }
    fn is_terminal(&self) -> bool {
        true
    }
}

impl Drop for Reentrant {
    fn drop(&mut self) {
        if let Some(vfs) = self.0.upgrade() {
            let fd = vfs.open("/tmp/dropped", CREATE, 0o600).unwrap();
            vfs.close(fd).unwrap();
            *self.1.lock() = true;
        }
    }
}

#[test]
fn set_fd_and_close_without_lock() {
    let vfs = Arc::new(Vfs::new());
    let dropped = Arc::new(spin::Mutex::new(false));
    vfs.set_fd(
        1,
        Arc::new(Reentrant(Arc::downgrade(&vfs), dropped.clone())),
    )
    .unwrap();
    assert_eq!(vfs.is_terminal(1), Ok(true));
    assert_eq!(vfs.write(1, b"hi"), Ok(2));
    assert_eq!(
        vfs.set_fd(-1, Arc::new(Reentrant(Weak::new(), dropped.clone()))),
        Err(Errno::EBADF)
    );
    // The first free fd is 0 (1 is taken).
    assert_eq!(vfs.open("/tmp", OpenFlags::RDONLY, 0), Ok(0));
    assert_eq!(vfs.open("/tmp", OpenFlags::RDONLY, 0), Ok(2));
    vfs.close(1).unwrap();
    assert!(*dropped.lock());
    *dropped.lock() = false;
    vfs.set_fd(
        1,
        Arc::new(Reentrant(Arc::downgrade(&vfs), dropped.clone())),
    )
    .unwrap();
    vfs.set_fd(1, Arc::new(Reentrant(Weak::new(), dropped.clone())))
        .unwrap();
    assert!(*dropped.lock());
    *dropped.lock() = false;
    vfs.set_fd(
        4,
        Arc::new(Reentrant(Arc::downgrade(&vfs), dropped.clone())),
    )
    .unwrap();
    vfs.dup2(0, 4).unwrap();
    assert!(*dropped.lock());
    assert!(vfs.stat("/tmp/dropped").is_ok());
}

#[test]
fn cwd_and_relative_paths() {
    let vfs = Vfs::new();
    vfs.mkdir("/tmp/a", 0o755).unwrap();
    vfs.chdir("/tmp/a").unwrap();
    assert_eq!(vfs.getcwd(), "/tmp/a");
    put(&vfs, "f", b"rel");
    assert_eq!(get(&vfs, "/tmp/a/f"), b"rel");
    assert_eq!(get(&vfs, "./f"), b"rel");
    vfs.chdir("..").unwrap();
    assert_eq!(vfs.getcwd(), "/tmp");
    assert_eq!(get(&vfs, "a/f"), b"rel");
    assert_eq!(vfs.chdir("a/f"), Err(Errno::ENOTDIR));
    assert_eq!(vfs.chdir("nope"), Err(Errno::ENOENT));
    assert_eq!(vfs.chdir(""), Err(Errno::ENOENT));
    assert_eq!(vfs.getcwd(), "/tmp");
    vfs.mount("/mnt", Arc::new(MemFs::new())).unwrap();
    vfs.chdir("/../mnt/.").unwrap();
    assert_eq!(vfs.getcwd(), "/mnt");
    put(&vfs, "inside", b"m");
    vfs.chdir("..").unwrap();
    assert_eq!(get(&vfs, "mnt/inside"), b"m");
    vfs.rename("tmp/a/f", "tmp/g").unwrap();
    vfs.unlink("tmp/g").unwrap();
    vfs.rmdir("tmp/a").unwrap();
    assert_eq!(names(&vfs.read_dir_path(".").unwrap()), ["mnt", "tmp"]);
}

#[test]
fn trailing_slashes() {
    let vfs = Vfs::new();
    put(&vfs, "/tmp/f", b"x");
    vfs.mkdir("/tmp/d/", 0o755).unwrap();
    assert_eq!(
        vfs.open("/tmp/f/", OpenFlags::RDONLY, 0),
        Err(Errno::ENOTDIR)
    );
    assert_eq!(vfs.open("/tmp/new/", CREATE, 0), Err(Errno::EISDIR));
    assert!(vfs.open("/tmp/d/", OpenFlags::RDONLY, 0).is_ok());
    assert!(vfs.open("/tmp/d/.", OpenFlags::RDONLY, 0).is_ok());
    assert_eq!(vfs.stat("/tmp/f/").err(), Some(Errno::ENOTDIR));
    assert_eq!(vfs.lstat("/tmp/f/.").err(), Some(Errno::ENOTDIR));
    assert!(vfs.stat("/tmp/d/").is_ok());
    assert_eq!(vfs.unlink("/tmp/f/"), Err(Errno::ENOTDIR));
    assert_eq!(vfs.unlink("/tmp/d/"), Err(Errno::EISDIR));
    assert_eq!(vfs.unlink("/tmp/nope/"), Err(Errno::ENOENT));
    assert_eq!(vfs.rename("/tmp/f/", "/tmp/g"), Err(Errno::ENOTDIR));
    assert_eq!(vfs.rename("/tmp/f", "/tmp/g/"), Err(Errno::ENOTDIR));
    vfs.rename("/tmp/d/", "/tmp/e/").unwrap();
    vfs.rmdir("/tmp/e/").unwrap();
    vfs.unlink("/tmp/f").unwrap();
}

#[test]
fn file_ops_through_fds() {
    let vfs = Vfs::new();
    let fd = vfs.open("/tmp/f", CREATE, 0o600).unwrap();
    assert_eq!(vfs.pwrite(fd, b"abc", 4), Ok(3));
    assert_eq!(vfs.fstat(fd).unwrap().size, 7);
    let mut buf = [9u8; 8];
    assert_eq!(vfs.pread(fd, &mut buf, 0), Ok(7));
    assert_eq!(&buf[..7], b"\0\0\0\0abc");
    vfs.ftruncate(fd, 2).unwrap();
    assert_eq!(vfs.lseek(fd, SeekFrom::End(0)), Ok(2));
    assert_eq!(vfs.stat("/tmp/f").unwrap().size, 2);
    assert_eq!(vfs.lstat("/tmp/f").unwrap().mode & 0o777, 0o600);
    assert_eq!(vfs.read_dir(fd), Err(Errno::ENOTDIR));
    assert_eq!(vfs.is_terminal(fd), Ok(false));
    assert_eq!(vfs.open("/tmp/f\0", RW, 0), Err(Errno::EINVAL));
    assert_eq!(vfs.open("", RW, 0), Err(Errno::ENOENT));
}
