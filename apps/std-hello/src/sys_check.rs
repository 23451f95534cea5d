//! `std-hello sys-check` on hermit: calls the kernel's `sys_*` functions
//! directly with bad arguments and checks the documented error returns
//! (`hermit-abi`'s contract), printing one line per check.

use std::ptr::{null, null_mut};

#[repr(C)]
struct Timespec {
    tv_sec: i64,
    tv_nsec: i32,
}

#[repr(C)]
struct IoVec {
    base: *const u8,
    len: usize,
}

unsafe extern "C" {
    fn sys_get_errno() -> i32;
    fn sys_clock_gettime(clock: i32, tp: *mut Timespec) -> i32;
    fn sys_futex_wait(addr: *mut u32, expected: u32, timeout: *const Timespec, flags: u32) -> i32;
    fn sys_futex_wake(addr: *mut u32, count: i32) -> i32;
    fn sys_write(fd: i32, buf: *const u8, len: usize) -> isize;
    fn sys_read(fd: i32, buf: *mut u8, len: usize) -> isize;
    fn sys_writev(fd: i32, iov: *const IoVec, cnt: usize) -> isize;
    fn sys_read_entropy(buf: *mut u8, len: usize, flags: u32) -> isize;
    fn sys_malloc(size: usize, align: usize) -> *mut u8;
    fn sys_realloc(ptr: *mut u8, size: usize, align: usize, new_size: usize) -> *mut u8;
    fn sys_free(ptr: *mut u8, size: usize, align: usize);
    fn sys_nanosleep(req: *const Timespec) -> i32;
    fn sys_join(id: u32) -> i32;
    fn sys_spawn2(f: extern "C" fn(usize), arg: usize, prio: u8, stack: usize, core: isize) -> u32;
    fn sys_getpagesize() -> i32;
    fn sys_available_parallelism() -> usize;
    fn sys_isatty(fd: i32) -> i32;
}

const EBADF: i32 = 9;
const EAGAIN: i32 = 11;
const EFAULT: i32 = 14;
const EINVAL: i32 = 22;
const ETIMEDOUT: i32 = 110;

extern "C" fn never_runs(_: usize) {}

/// Runs every check; returns the number that failed.
pub fn run() -> u32 {
    let mut failed = 0;
    let mut check = |what: &str, ok: bool| {
        println!("{}: {what}", if ok { "ok" } else { "FAILED" });
        failed += u32::from(!ok);
    };
    let mut ts = Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    let mut word = 7u32;
    let mut buf = [0u8; 16];
    // SAFETY: every pointer passed is null, dangling on purpose where the
    // call must reject it before use, or valid for the stated length.
    unsafe {
        check(
            "clock_gettime(bad clock) = -EINVAL",
            sys_clock_gettime(99, &mut ts) == -EINVAL,
        );
        check("errno is EINVAL afterwards", sys_get_errno() == EINVAL);
        check(
            "clock_gettime(null) = -EINVAL",
            sys_clock_gettime(4, null_mut()) == -EINVAL,
        );
        check(
            "clock_gettime(MONOTONIC) = 0",
            sys_clock_gettime(4, &mut ts) == 0,
        );
        check(
            "clock_gettime(REALTIME) after 2020",
            sys_clock_gettime(1, &mut ts) == 0 && ts.tv_sec > 1_577_836_800,
        );

        check(
            "futex_wait(null) = -EINVAL",
            sys_futex_wait(null_mut(), 0, null(), 0) == -EINVAL,
        );
        check(
            "futex_wait(unknown flag) = -EINVAL",
            sys_futex_wait(&mut word, 7, null(), 8) == -EINVAL,
        );
        check(
            "futex_wait(other value) = -EAGAIN",
            sys_futex_wait(&mut word, 8, null(), 0) == -EAGAIN,
        );
        let bad = Timespec {
            tv_sec: -1,
            tv_nsec: 0,
        };
        check(
            "futex_wait(negative timeout) = -EINVAL",
            sys_futex_wait(&mut word, 7, &bad, 1) == -EINVAL,
        );
        let short = Timespec {
            tv_sec: 0,
            tv_nsec: 1_000_000,
        };
        check(
            "futex_wait(1 ms relative) = -ETIMEDOUT",
            sys_futex_wait(&mut word, 7, &short, 1) == -ETIMEDOUT,
        );
        let past = Timespec {
            tv_sec: 0,
            tv_nsec: 1,
        };
        check(
            "futex_wait(absolute, past) = -ETIMEDOUT",
            sys_futex_wait(&mut word, 7, &past, 0) == -ETIMEDOUT,
        );
        check(
            "futex_wake(null) = -EINVAL",
            sys_futex_wake(null_mut(), 1) == -EINVAL,
        );
        check(
            "futex_wake(count -1) = -EINVAL",
            sys_futex_wake(&mut word, -1) == -EINVAL,
        );
        check(
            "futex_wake(no waiter) = 0",
            sys_futex_wake(&mut word, i32::MAX) == 0,
        );

        check(
            "write(fd 7) = -EBADF",
            sys_write(7, buf.as_ptr(), 1) == -(EBADF as isize),
        );
        check(
            "write(null, 5) = -EFAULT",
            sys_write(1, null(), 5) == -(EFAULT as isize),
        );
        check("write(len 0) = 0", sys_write(1, null(), 0) == 0);
        check(
            "read(fd 1) = -EBADF",
            sys_read(1, buf.as_mut_ptr(), 1) == -(EBADF as isize),
        );
        let iov = IoVec {
            base: buf.as_ptr(),
            len: 0,
        };
        check(
            "writev(2000 entries) = -EINVAL",
            sys_writev(1, &iov, 2000) == -(EINVAL as isize),
        );
        check(
            "writev(null, 1) = -EFAULT",
            sys_writev(1, null(), 1) == -(EFAULT as isize),
        );

        check(
            "read_entropy(unknown flag) = -EINVAL",
            sys_read_entropy(buf.as_mut_ptr(), 16, 0x80) == -(EINVAL as isize),
        );
        check(
            "read_entropy(null) = -EFAULT",
            sys_read_entropy(null_mut(), 4, 0) == -(EFAULT as isize),
        );
        check(
            "read_entropy(16) = 16",
            sys_read_entropy(buf.as_mut_ptr(), 16, 0) == 16 && buf != [0; 16],
        );

        check("malloc(align 3) = null", sys_malloc(16, 3).is_null());
        check("malloc(size 0) = null", sys_malloc(0, 8).is_null());
        let p = sys_malloc(64, 64);
        check(
            "malloc(64, align 64) aligned",
            !p.is_null() && (p as usize).is_multiple_of(64),
        );
        if !p.is_null() {
            p.write_bytes(0xab, 64);
            let q = sys_realloc(p, 64, 64, 4096);
            check(
                "realloc keeps the contents",
                !q.is_null() && *q.add(63) == 0xab && (q as usize).is_multiple_of(64),
            );
            if !q.is_null() {
                sys_free(q, 4096, 64);
            }
        }

        check(
            "nanosleep(null) = -EINVAL",
            sys_nanosleep(null()) == -EINVAL,
        );
        let big = Timespec {
            tv_sec: 0,
            tv_nsec: 2_000_000_000,
        };
        check(
            "nanosleep(2e9 ns field) = -EINVAL",
            sys_nanosleep(&big) == -EINVAL,
        );
        check(
            "nanosleep(1 us) = 0",
            sys_nanosleep(&Timespec {
                tv_sec: 0,
                tv_nsec: 1000,
            }) == 0,
        );

        check("join(unknown id) = -EINVAL", sys_join(123_456) == -EINVAL);
        check(
            "spawn2(core 999) = 0 with EINVAL",
            sys_spawn2(never_runs, 0, 2, 0, 999) == 0 && sys_get_errno() == EINVAL,
        );
        check("getpagesize() = 4096", sys_getpagesize() == 4096);
        check(
            "available_parallelism() >= 1",
            sys_available_parallelism() >= 1,
        );
        check("isatty(1) = 0", sys_isatty(1) == 0);
        check("isatty(9) = -EBADF", sys_isatty(9) == -EBADF);
    }
    println!("sys-check: {failed} failure(s)");
    failed
}
