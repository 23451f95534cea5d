//! Host cost of the syscall layer over hermit-fs: nanoseconds per call of
//! a 1-byte `write`, a `pread`-free `read` at the end of file, `lseek`,
//! `fstat` and a zero-timeout `poll` of one file, each through
//! [`Syscalls`] and (where it exists) straight on the `Vfs`. Prints
//! figures; asserts nothing about speed.

use std::hint::black_box;
use std::time::{Duration, Instant};

use hermit_fs::{OpenFlags, SeekFrom};
use hermit_syscalls::abi::{self, O_CREAT, O_RDWR, POLLIN, SEEK_SET, pollfd};
use hermit_syscalls::{Clock, Syscalls, Vfs};

struct NoClock;

impl Clock for NoClock {
    fn now(&self) -> Duration {
        Duration::ZERO
    }
    fn sleep(&self, _: Duration) {}
}

const N: u32 = 200_000;

fn per_call(name: &str, mut f: impl FnMut()) {
    for _ in 0..N / 10 {
        f();
    }
    let start = Instant::now();
    for _ in 0..N {
        f();
    }
    let ns = start.elapsed().as_nanos() as f64 / f64::from(N);
    println!("{name:<28} {ns:8.1} ns/call");
}

fn main() {
    let vfs = Vfs::new();
    let sys = Syscalls::new(&vfs, &NoClock);
    let path = c"/tmp/bench";
    // SAFETY: a valid C string.
    let fd = unsafe { sys.open(path.as_ptr().cast(), O_CREAT | O_RDWR, 0o644) };
    assert!(fd >= 0);
    let vfd = vfs
        .open("/tmp/bench2", OpenFlags::CREAT | OpenFlags::RDWR, 0o644)
        .unwrap();
    let byte = [0u8; 1];
    let mut buf = [0u8; 1];
    per_call("syscalls write 1 B", || {
        // SAFETY: a valid buffer.
        black_box(unsafe { sys.write(fd, byte.as_ptr(), 1) });
        sys.lseek(fd, 0, SEEK_SET);
    });
    per_call("vfs write 1 B", || {
        black_box(vfs.write(vfd, &byte).unwrap());
        vfs.lseek(vfd, SeekFrom::Start(0)).unwrap();
    });
    per_call("syscalls read 1 B", || {
        // SAFETY: a valid buffer.
        black_box(unsafe { sys.read(fd, buf.as_mut_ptr(), 1) });
        sys.lseek(fd, 0, SEEK_SET);
    });
    per_call("vfs read 1 B", || {
        black_box(vfs.read(vfd, &mut buf).unwrap());
        vfs.lseek(vfd, SeekFrom::Start(0)).unwrap();
    });
    per_call("syscalls lseek", || {
        black_box(sys.lseek(fd, 0, SEEK_SET));
    });
    let mut st = abi::stat::default();
    per_call("syscalls fstat", || {
        // SAFETY: a valid out pointer.
        black_box(unsafe { sys.fstat(fd, &mut st) });
    });
    let mut p = [pollfd {
        fd,
        events: POLLIN,
        revents: 0,
    }];
    per_call("syscalls poll 1 file, 0 ms", || {
        // SAFETY: one valid entry.
        black_box(unsafe { sys.poll(p.as_mut_ptr(), 1, 0) });
    });
}
