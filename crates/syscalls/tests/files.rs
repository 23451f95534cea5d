//! The file and descriptor calls through their ABI entry points, with
//! pointers to Rust buffers standing in for the application's.

use std::ffi::CString;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hermit_syscalls::abi::{
    self, F_DUPFD, F_GETFD, F_GETFL, F_SETFD, F_SETFL, FD_CLOEXEC, FIONBIO, O_APPEND, O_CREAT,
    O_DIRECTORY, O_EXCL, O_NONBLOCK, O_RDONLY, O_RDWR, O_TRUNC, O_WRONLY, POLLIN, POLLNVAL,
    POLLOUT, SEEK_CUR, SEEK_END, SEEK_SET, iovec, pollfd,
};
use hermit_syscalls::dirent::record_len;
use hermit_syscalls::{Clock, Errno, FdTable, Object, Syscalls, Vfs};

struct StdClock(Instant);

impl Clock for StdClock {
    fn now(&self) -> Duration {
        self.0.elapsed()
    }
    fn sleep(&self, duration: Duration) {
        std::thread::sleep(duration);
    }
}

fn clock() -> &'static StdClock {
    Box::leak(Box::new(StdClock(Instant::now())))
}

fn neg(e: Errno) -> i32 {
    -e.raw()
}

fn c(s: &str) -> CString {
    CString::new(s).unwrap()
}

/// A console stand-in: reads give what was queued, writes are collected.
#[derive(Default)]
struct Console {
    input: std::sync::Mutex<Vec<u8>>,
    output: std::sync::Mutex<Vec<u8>>,
}

impl Object for Console {
    fn read(&self, buf: &mut [u8]) -> Result<usize, Errno> {
        let mut input = self.input.lock().unwrap();
        let n = buf.len().min(input.len());
        buf[..n].copy_from_slice(&input[..n]);
        input.drain(..n);
        Ok(n)
    }
    fn write(&self, buf: &[u8]) -> Result<usize, Errno> {
        self.output.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn poll(&self, events: i16) -> i16 {
        let readable = !self.input.lock().unwrap().is_empty();
        (if readable { POLLIN } else { 0 } | POLLOUT) & events
    }
    fn is_terminal(&self) -> bool {
        true
    }
}

struct Fixture {
    sys: Syscalls<'static>,
    console: Arc<Console>,
}

fn setup() -> Fixture {
    let vfs: &'static Vfs = Box::leak(Box::new(Vfs::new()));
    let sys = Syscalls::new(vfs, clock());
    let console = Arc::new(Console::default());
    sys.fds().set(0, console.clone(), O_RDONLY).unwrap();
    sys.fds().set(1, console.clone(), O_WRONLY).unwrap();
    sys.fds().set(2, console.clone(), O_WRONLY).unwrap();
    Fixture { sys, console }
}

impl Fixture {
    fn open(&self, path: &str, flags: i32, mode: i32) -> i32 {
        let p = c(path);
        // SAFETY: a valid C string.
        unsafe { self.sys.open(p.as_ptr().cast(), flags, mode) }
    }
    fn write(&self, fd: i32, data: &[u8]) -> isize {
        // SAFETY: a valid buffer.
        unsafe { self.sys.write(fd, data.as_ptr(), data.len()) }
    }
    fn read(&self, fd: i32, buf: &mut [u8]) -> isize {
        // SAFETY: a valid buffer.
        unsafe { self.sys.read(fd, buf.as_mut_ptr(), buf.len()) }
    }
    fn stat(&self, path: &str) -> Result<abi::stat, i32> {
        let p = c(path);
        let mut st = abi::stat::default();
        // SAFETY: valid string and out pointer.
        match unsafe { self.sys.stat(p.as_ptr().cast(), &mut st) } {
            0 => Ok(st),
            e => Err(e),
        }
    }
    fn getdents(&self, fd: i32, buf: &mut [u8]) -> i64 {
        // SAFETY: a valid buffer.
        unsafe { self.sys.getdents64(fd, buf.as_mut_ptr(), buf.len()) }
    }
}

#[test]
fn console_fds_and_lowest_free() {
    let f = setup();
    assert_eq!(f.write(1, b"hello"), 5);
    assert_eq!(&*f.console.output.lock().unwrap(), b"hello");
    // fd 0 is read-only, 1 write-only.
    assert_eq!(f.write(0, b"x"), neg(Errno::EBADF) as isize);
    let mut buf = [0u8; 4];
    assert_eq!(f.read(1, &mut buf), neg(Errno::EBADF) as isize);
    f.console.input.lock().unwrap().extend_from_slice(b"ab");
    assert_eq!(f.read(0, &mut buf), 2);
    assert_eq!(&buf[..2], b"ab");
    assert_eq!(f.sys.is_terminal(0), Ok(true));
    let fd = f.open("/tmp/a", O_CREAT | O_RDWR, 0o644);
    assert_eq!(fd, 3);
    assert_eq!(f.sys.close(1), 0);
    assert_eq!(f.open("/tmp/a", O_RDONLY, 0), 1);
    assert_eq!(f.sys.close(1), 0);
    assert_eq!(f.sys.close(1), neg(Errno::EBADF));
    assert_eq!(f.sys.close(-5), neg(Errno::EBADF));
}

#[test]
fn open_argument_checking() {
    let f = setup();
    // SAFETY: null is checked.
    let r = unsafe { f.sys.open(std::ptr::null(), O_RDONLY, 0) };
    assert_eq!(r, neg(Errno::EFAULT));
    let long = format!("/tmp/{}\0", "a".repeat(5000));
    // SAFETY: a NUL-terminated buffer longer than PATH_MAX.
    let r = unsafe { f.sys.open(long.as_ptr(), O_RDONLY, 0) };
    assert_eq!(r, neg(Errno::ENAMETOOLONG));
    // Bad flags and access mode 3.
    assert_eq!(
        f.open("/tmp/x", O_CREAT | 0o10_000_000, 0),
        neg(Errno::EINVAL)
    );
    assert_eq!(f.open("/tmp/x", 3, 0), neg(Errno::EINVAL));
    assert_eq!(f.open("/tmp/x", -1, 0), neg(Errno::EINVAL));
    assert_eq!(f.open("", O_RDONLY, 0), neg(Errno::ENOENT));
    assert_eq!(f.open("/tmp/missing", O_RDONLY, 0), neg(Errno::ENOENT));
    // Not UTF-8.
    let bad = b"/tmp/\xff\0";
    // SAFETY: NUL-terminated.
    let r = unsafe { f.sys.open(bad.as_ptr(), O_RDONLY, 0) };
    assert_eq!(r, neg(Errno::EINVAL));
    // O_EXCL, O_DIRECTORY, O_NONBLOCK and O_CLOEXEC.
    let fd = f.open("/tmp/x", O_CREAT | O_EXCL | O_WRONLY, 0o600);
    assert!(fd >= 3);
    assert_eq!(
        f.open("/tmp/x", O_CREAT | O_EXCL | O_WRONLY, 0o600),
        neg(Errno::EEXIST)
    );
    assert_eq!(
        f.open("/tmp/x", O_RDONLY | O_DIRECTORY, 0),
        neg(Errno::ENOTDIR)
    );
    let nb = f.open("/tmp/x", O_RDONLY | O_NONBLOCK | abi::O_CLOEXEC, 0);
    assert!(nb >= 0);
    assert_eq!(f.sys.fcntl(nb, F_GETFL, 0), O_RDONLY | O_NONBLOCK);
    assert_eq!(f.sys.fcntl(nb, F_GETFD, 0), FD_CLOEXEC);
    assert_eq!(f.stat("/tmp/x").unwrap().st_mode, abi::S_IFREG | 0o600);
}

#[test]
fn read_write_seek_and_vectors() {
    let f = setup();
    let fd = f.open("/tmp/f", O_CREAT | O_RDWR | O_TRUNC, 0o644);
    assert_eq!(f.write(fd, b"hello world"), 11);
    assert_eq!(f.sys.lseek(fd, 0, SEEK_CUR), 11);
    assert_eq!(f.sys.lseek(fd, -5, SEEK_END), 6);
    let mut buf = [0u8; 16];
    assert_eq!(f.read(fd, &mut buf), 5);
    assert_eq!(&buf[..5], b"world");
    assert_eq!(f.read(fd, &mut buf), 0);
    assert_eq!(f.sys.lseek(fd, -1, SEEK_SET), neg(Errno::EINVAL) as isize);
    assert_eq!(f.sys.lseek(fd, 0, 7), neg(Errno::EINVAL) as isize);
    assert_eq!(f.sys.lseek(fd, 0, SEEK_SET), 0);
    assert_eq!(f.sys.lseek(1, 0, SEEK_SET), neg(Errno::ESPIPE) as isize);
    assert_eq!(f.sys.lseek(99, 0, SEEK_SET), neg(Errno::EBADF) as isize);

    // readv across three buffers.
    let (mut a, mut b, mut c) = ([0u8; 3], [0u8; 0], [0u8; 20]);
    let iov = [
        iovec {
            iov_base: a.as_mut_ptr(),
            iov_len: a.len(),
        },
        iovec {
            iov_base: b.as_mut_ptr(),
            iov_len: b.len(),
        },
        iovec {
            iov_base: c.as_mut_ptr(),
            iov_len: c.len(),
        },
    ];
    // SAFETY: three valid, disjoint buffers.
    assert_eq!(unsafe { f.sys.readv(fd, iov.as_ptr(), 3) }, 11);
    assert_eq!(&a, b"hel");
    assert_eq!(&c[..8], b"lo world");

    // writev appends after the end.
    let parts: [&[u8]; 2] = [b"!!", b"?"];
    let iov: Vec<iovec> = parts
        .iter()
        .map(|p| iovec {
            iov_base: p.as_ptr().cast_mut(),
            iov_len: p.len(),
        })
        .collect();
    // SAFETY: valid buffers, only read.
    assert_eq!(unsafe { f.sys.writev(fd, iov.as_ptr(), 2) }, 3);
    assert_eq!(f.stat("/tmp/f").unwrap().st_size, 14);

    // Argument checking.
    let too_many = vec![iov[0]; abi::IOV_MAX + 1];
    // SAFETY: rejected on the count.
    let r = unsafe { f.sys.writev(fd, too_many.as_ptr(), too_many.len()) };
    assert_eq!(r, neg(Errno::EINVAL) as isize);
    // SAFETY: null array with a count.
    let r = unsafe { f.sys.readv(fd, std::ptr::null(), 1) };
    assert_eq!(r, neg(Errno::EFAULT) as isize);
    // SAFETY: null buffer with a length.
    let r = unsafe { f.sys.read(fd, std::ptr::null_mut(), 1) };
    assert_eq!(r, neg(Errno::EFAULT) as isize);
    // SAFETY: zero length never touches the pointer.
    assert_eq!(unsafe { f.sys.write(fd, std::ptr::null(), 0) }, 0);
    // Write to a read-only descriptor, read from a write-only one.
    let ro = f.open("/tmp/f", O_RDONLY, 0);
    assert_eq!(f.write(ro, b"x"), neg(Errno::EBADF) as isize);
    let wo = f.open("/tmp/f", O_WRONLY | O_APPEND, 0);
    assert_eq!(f.read(wo, &mut buf), neg(Errno::EBADF) as isize);
    assert_eq!(f.write(wo, b"z"), 1);
    assert_eq!(f.stat("/tmp/f").unwrap().st_size, 15);
}

#[test]
fn dup_shares_offset_and_dup2_replaces() {
    let f = setup();
    let fd = f.open("/tmp/d", O_CREAT | O_RDWR, 0o644);
    f.write(fd, b"0123456789");
    f.sys.lseek(fd, 2, SEEK_SET);
    let d = f.sys.dup(fd);
    assert_eq!(d, fd + 1);
    let mut buf = [0u8; 3];
    assert_eq!(f.read(d, &mut buf), 3);
    assert_eq!(&buf, b"234");
    // The original moved too.
    assert_eq!(f.sys.lseek(fd, 0, SEEK_CUR), 5);
    // A second open has its own offset.
    let other = f.open("/tmp/d", O_RDONLY, 0);
    assert_eq!(f.sys.lseek(other, 0, SEEK_CUR), 0);
    // dup2 onto an open descriptor replaces it.
    assert_eq!(f.sys.dup2(fd, other), other);
    assert_eq!(f.sys.lseek(other, 0, SEEK_CUR), 5);
    assert_eq!(f.sys.dup2(fd, fd), fd);
    assert_eq!(f.sys.dup2(77, 78), neg(Errno::EBADF));
    assert_eq!(f.sys.dup(77), neg(Errno::EBADF));
    // Closing one leaves the other working.
    assert_eq!(f.sys.close(fd), 0);
    assert_eq!(f.read(d, &mut buf), 3);
    assert_eq!(&buf, b"567");
    // F_DUPFD picks the lowest free at or above its argument.
    assert_eq!(f.sys.fcntl(d, F_DUPFD, 20), 20);
    assert_eq!(f.sys.fcntl(d, F_DUPFD, 20), 21);
    assert_eq!(f.sys.fcntl(d, F_DUPFD, -1), neg(Errno::EINVAL));
}

#[test]
fn emfile_at_the_limit() {
    let vfs: &'static Vfs = Box::leak(Box::new(Vfs::new()));
    let sys = Syscalls::with_table(vfs, clock(), FdTable::with_limit(5));
    let p = c("/tmp/e");
    let mut fds = Vec::new();
    for _ in 0..5 {
        // SAFETY: a valid C string.
        fds.push(unsafe { sys.open(p.as_ptr().cast(), O_CREAT | O_RDWR, 0o644) });
    }
    assert_eq!(fds, [0, 1, 2, 3, 4]);
    // SAFETY: as above.
    let r = unsafe { sys.open(p.as_ptr().cast(), O_RDWR, 0) };
    assert_eq!(r, neg(Errno::EMFILE));
    assert_eq!(sys.dup(0), neg(Errno::EMFILE));
    assert_eq!(sys.close(2), 0);
    assert_eq!(sys.dup(0), 2);
    // The vfs's own table is not used up by our opens.
    for _ in 0..2000 {
        assert_eq!(sys.close(2), 0);
        // SAFETY: as above.
        assert_eq!(unsafe { sys.open(p.as_ptr().cast(), O_RDWR, 0) }, 2);
    }
}

#[test]
fn fcntl_and_ioctl() {
    let f = setup();
    let fd = f.open("/tmp/n", O_CREAT | O_RDWR, 0o644);
    assert_eq!(f.sys.fcntl(fd, F_GETFL, 0), O_RDWR);
    assert_eq!(f.sys.fcntl(fd, F_SETFL, O_NONBLOCK), 0);
    assert_eq!(f.sys.fcntl(fd, F_GETFL, 0), O_RDWR | O_NONBLOCK);
    let mut off: i32 = 0;
    // SAFETY: a valid int.
    let r = unsafe { f.sys.ioctl(fd, FIONBIO, (&raw mut off).cast()) };
    assert_eq!(r, 0);
    assert_eq!(f.sys.fcntl(fd, F_GETFL, 0), O_RDWR);
    // SAFETY: null is checked.
    let r = unsafe { f.sys.ioctl(fd, FIONBIO, std::ptr::null_mut()) };
    assert_eq!(r, neg(Errno::EFAULT));
    // SAFETY: the pointer is not used for unknown requests.
    let r = unsafe { f.sys.ioctl(fd, 0x5401, std::ptr::null_mut()) };
    assert_eq!(r, neg(Errno::ENOTTY));
    // SAFETY: as above.
    let r = unsafe { f.sys.ioctl(99, FIONBIO, (&raw mut off).cast()) };
    assert_eq!(r, neg(Errno::EBADF));
    assert_eq!(f.sys.fcntl(fd, F_SETFD, FD_CLOEXEC), 0);
    assert_eq!(f.sys.fcntl(fd, F_GETFD, 0), FD_CLOEXEC);
    assert_eq!(f.sys.fcntl(fd, 999, 0), neg(Errno::EINVAL));
    assert_eq!(f.sys.fcntl(99, F_GETFL, 0), neg(Errno::EBADF));
    assert_eq!(f.sys.fcntl(99, 999, 0), neg(Errno::EBADF));
}

#[test]
fn stat_fstat_lstat_mkdir_unlink_rmdir_rename() {
    let f = setup();
    let mkdir = |p: &str, mode: u32| {
        let p = c(p);
        // SAFETY: a valid C string.
        unsafe { f.sys.mkdir(p.as_ptr().cast(), mode) }
    };
    assert_eq!(mkdir("/tmp/dir", 0o755), 0);
    assert_eq!(mkdir("/tmp/dir", 0o755), neg(Errno::EEXIST));
    let st = f.stat("/tmp/dir").unwrap();
    assert_eq!(st.st_mode & abi::S_IFMT, abi::S_IFDIR);
    let fd = f.open("/tmp/dir/file", O_CREAT | O_WRONLY, 0o640);
    f.write(fd, b"abc");
    let mut st = abi::stat::default();
    // SAFETY: valid out pointer.
    assert_eq!(unsafe { f.sys.fstat(fd, &mut st) }, 0);
    assert_eq!((st.st_size, st.st_mode), (3, abi::S_IFREG | 0o640));
    // SAFETY: null out pointer is checked.
    let r = unsafe { f.sys.fstat(fd, std::ptr::null_mut()) };
    assert_eq!(r, neg(Errno::EFAULT));
    // SAFETY: valid out pointer.
    assert_eq!(unsafe { f.sys.fstat(42, &mut st) }, neg(Errno::EBADF));
    let p = c("/tmp/dir/file");
    let mut lst = abi::stat::default();
    // SAFETY: valid arguments.
    assert_eq!(unsafe { f.sys.lstat(p.as_ptr().cast(), &mut lst) }, 0);
    assert_eq!(lst.st_ino, st.st_ino);
    assert_eq!(f.stat("/tmp/nope").unwrap_err(), neg(Errno::ENOENT));

    let rmdir = |p: &str| {
        let p = c(p);
        // SAFETY: a valid C string.
        unsafe { f.sys.rmdir(p.as_ptr().cast()) }
    };
    let unlink = |p: &str| {
        let p = c(p);
        // SAFETY: a valid C string.
        unsafe { f.sys.unlink(p.as_ptr().cast()) }
    };
    assert_eq!(rmdir("/tmp/dir"), neg(Errno::ENOTEMPTY));
    assert_eq!(unlink("/tmp/dir"), neg(Errno::EISDIR));
    let (from, to) = (c("/tmp/dir/file"), c("/tmp/moved"));
    // SAFETY: valid C strings.
    let r = unsafe { f.sys.rename(from.as_ptr().cast(), to.as_ptr().cast()) };
    assert_eq!(r, 0);
    assert_eq!(f.stat("/tmp/moved").unwrap().st_size, 3);
    assert_eq!(rmdir("/tmp/dir"), 0);
    assert_eq!(unlink("/tmp/moved"), 0);
    assert_eq!(unlink("/tmp/moved"), neg(Errno::ENOENT));
    // SAFETY: null is checked.
    let r = unsafe { f.sys.unlink(std::ptr::null()) };
    assert_eq!(r, neg(Errno::EFAULT));
    // The open file survives its unlink.
    assert_eq!(f.write(fd, b"more"), 4);
}

#[test]
fn getdents64_whole_listing_or_einval() {
    let f = setup();
    let mkdir = c("/tmp/list");
    // SAFETY: a valid C string.
    assert_eq!(unsafe { f.sys.mkdir(mkdir.as_ptr().cast(), 0o755) }, 0);
    let names: Vec<String> = (0..40).map(|i| format!("entry-{i:03}")).collect();
    for n in &names {
        let fd = f.open(&format!("/tmp/list/{n}"), O_CREAT | O_WRONLY, 0o644);
        f.sys.close(fd);
    }
    let p = c("/tmp/list");
    // SAFETY: a valid C string.
    let dir = unsafe { f.sys.opendir(p.as_ptr().cast()) };
    assert!(dir >= 0);
    // What std does: start at 512 and double while EINVAL.
    let mut size = 512;
    let buf = loop {
        let mut buf = vec![0u8; size];
        let n = f.getdents(dir, &mut buf);
        if n > 0 {
            buf.truncate(n as usize);
            break buf;
        }
        assert_eq!(n, neg(Errno::EINVAL) as i64);
        size *= 2;
    };
    assert_eq!(size, 2048);
    assert_eq!(buf.len(), 40 * record_len(9));
    // Walk the records as std does: by d_reclen, name as a C string.
    let mut got = Vec::new();
    let mut at = 0;
    while at < buf.len() {
        // SAFETY: the kernel wrote a record at `at`; read unaligned.
        let head = unsafe {
            buf.as_ptr()
                .add(at)
                .cast::<abi::dirent64>()
                .read_unaligned()
        };
        assert_eq!(head.d_type, abi::DT_REG);
        assert_eq!(usize::from(head.d_reclen) % 8, 0);
        let name = &buf[at + abi::DIRENT64_NAME_OFFSET..];
        let name = std::ffi::CStr::from_bytes_until_nul(name).unwrap();
        got.push(name.to_str().unwrap().to_string());
        at += usize::from(head.d_reclen);
    }
    assert_eq!(got, names);
    // Then the end.
    let mut more = [0u8; 4096];
    assert_eq!(f.getdents(dir, &mut more), 0);
    // Not a directory; bad fd; null buffer.
    let file = f.open("/tmp/list/entry-000", O_RDONLY, 0);
    assert_eq!(f.getdents(file, &mut more), neg(Errno::ENOTDIR) as i64);
    assert_eq!(f.getdents(99, &mut more), neg(Errno::EBADF) as i64);
    // SAFETY: null is checked.
    let dir2 = unsafe { f.sys.opendir(p.as_ptr().cast()) };
    // SAFETY: null with a length is rejected.
    let r = unsafe { f.sys.getdents64(dir2, std::ptr::null_mut(), 100) };
    assert_eq!(r, neg(Errno::EFAULT) as i64);
    // An empty directory ends at once.
    let empty = c("/tmp/empty");
    // SAFETY: a valid C string.
    unsafe { f.sys.mkdir(empty.as_ptr().cast(), 0o755) };
    let e = f.open("/tmp/empty", O_RDONLY | O_DIRECTORY, 0);
    assert_eq!(f.getdents(e, &mut more), 0);
}

#[test]
fn poll_files_console_and_bad_fds() {
    let f = setup();
    let fd = f.open("/tmp/p", O_CREAT | O_RDWR, 0o644);
    let mut fds = [
        pollfd {
            fd,
            events: POLLIN | POLLOUT,
            revents: 0,
        },
        pollfd {
            fd: 0,
            events: POLLIN,
            revents: 0,
        },
        pollfd {
            fd: 55,
            events: POLLIN,
            revents: 0,
        },
        pollfd {
            fd: -1,
            events: POLLIN,
            revents: 7,
        },
    ];
    // SAFETY: a valid array.
    assert_eq!(unsafe { f.sys.poll(fds.as_mut_ptr(), fds.len(), 0) }, 2);
    assert_eq!(fds[0].revents, POLLIN | POLLOUT);
    assert_eq!(fds[1].revents, 0);
    assert_eq!(fds[2].revents, POLLNVAL);
    assert_eq!(fds[3].revents, 0);

    // The console alone: times out, then sees input arriving.
    let mut stdin = [pollfd {
        fd: 0,
        events: POLLIN,
        revents: 0,
    }];
    let start = Instant::now();
    // SAFETY: a valid array.
    assert_eq!(unsafe { f.sys.poll(stdin.as_mut_ptr(), 1, 30) }, 0);
    assert!(start.elapsed() >= Duration::from_millis(30));
    let console = f.console.clone();
    let feeder = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(20));
        console.input.lock().unwrap().push(b'x');
    });
    // SAFETY: a valid array.
    assert_eq!(unsafe { f.sys.poll(stdin.as_mut_ptr(), 1, -1) }, 1);
    assert_eq!(stdin[0].revents, POLLIN);
    feeder.join().unwrap();

    // Argument checking.
    // SAFETY: null with a count.
    let r = unsafe { f.sys.poll(std::ptr::null_mut(), 1, 0) };
    assert_eq!(r, neg(Errno::EFAULT));
    // SAFETY: rejected on the count.
    let r = unsafe { f.sys.poll(fds.as_mut_ptr(), 1 << 20, 0) };
    assert_eq!(r, neg(Errno::EINVAL));
    // SAFETY: no entries: a plain sleep.
    assert_eq!(unsafe { f.sys.poll(std::ptr::null_mut(), 0, 15) }, 0);
}
