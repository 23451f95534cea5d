//! The Fs hypercall end to end: tiny guests open, read and write host files
//! through `uhyve --mount`, and cannot reach past the mapping.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{Guest, Reg, config, skip_without_kvm};
use hermit_interface::errno::Errno;
use hermit_interface::fs::{FsCall, Op};
use hermit_interface::hypercall::Nr;

const OPEN: u64 = 0x2000;
const READ: u64 = 0x2080;
const WRITE: u64 = 0x2100;
const EXIT: u64 = 0x2200;
const PATH: u64 = 0x2300;
const BUF: u64 = 0x2400;
/// Offset of `FsCall::result`.
const RESULT: i8 = std::mem::offset_of!(FsCall, result) as i8;

/// Puts an FsCall block at `at`: `op` on `handle`, `path` (a relocated
/// pointer to `PATH` holding it) if any, and `buf_len` bytes at `BUF`.
fn fs_block(g: &mut Guest, at: u64, op: Op, handle: i32, path: &[u8], buf_len: u64) {
    g.data(at, &(op as u32).to_le_bytes());
    g.data(at + 4, &handle.to_le_bytes());
    if !path.is_empty() {
        g.data(PATH, path);
        g.pointer(at + 16, PATH);
        g.data(at + 24, &(path.len() as u64).to_le_bytes());
    }
    if buf_len > 0 {
        g.pointer(at + 48, BUF);
        g.data(at + 56, &buf_len.to_le_bytes());
    }
}

/// Issues the Fs hypercall on each block, then exits with the result of
/// `status_of`'s block.
fn program(g: &mut Guest, blocks: &[u64], status_of: u64) {
    for &block in blocks {
        g.hypercall(Nr::Fs, block);
    }
    g.lea(Reg::Rax, status_of)
        .load(Reg::Rcx, Reg::Rax, RESULT)
        .lea(Reg::Rbx, EXIT)
        .store(Reg::Rbx, 0, Reg::Rcx)
        .exit_with(EXIT);
}

/// A host directory holding `f` ("file data") and, next to it,
/// `../secret`.
struct HostDir(PathBuf);

impl HostDir {
    fn new(name: &str) -> Self {
        let base =
            std::env::temp_dir().join(format!("uhyve-fs-test-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        std::fs::create_dir_all(base.join("mapped")).unwrap();
        std::fs::write(base.join("mapped/f"), b"file data").unwrap();
        std::fs::write(base.join("secret"), b"secret").unwrap();
        Self(base)
    }

    fn mapped(&self) -> PathBuf {
        self.0.join("mapped")
    }
}

impl Drop for HostDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Opens `f`, reads it into `BUF`, writes `BUF` to handle 1 (stdout) and
/// exits with the read's result.
fn cat_guest() -> Guest {
    let mut g = Guest::new();
    fs_block(&mut g, OPEN, Op::Open, 0, b"f", 0);
    fs_block(&mut g, READ, Op::Read, 3, b"", 64);
    fs_block(&mut g, WRITE, Op::Write, 1, b"", 9);
    program(&mut g, &[OPEN, READ, WRITE], READ);
    g
}

fn uhyve(args: &[&str], image: &Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_uhyve"))
        .args(["--mem", "64M"])
        .args(args)
        .arg(image)
        .env_clear()
        .output()
        .unwrap()
}

#[test]
fn a_guest_reads_a_mapped_file_and_writes_stdout() {
    if skip_without_kvm("a_guest_reads_a_mapped_file_and_writes_stdout") {
        return;
    }
    let dir = HostDir::new("cat");
    let image = cat_guest().write("fs-cat");
    let mount = format!("{}:/data", dir.mapped().display());
    let out = uhyve(&["--mount", &mount], &image);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(9), "{stderr}");
    assert_eq!(out.stdout, b"file data");

    // Without --mount the guest sees no host file: Open fails with ENOENT,
    // so the read is EBADF and the buffer written out stays zero.
    let out = uhyve(&[], &image);
    assert_eq!(out.stdout, [0u8; 9]);
    assert_eq!(out.status.code(), Some(Errno::EBADF.to_neg() as i32 & 0xff));

    // A bad --mount is one line and status 2.
    let out = uhyve(&["--mount", "/nonexistent/dir:/data"], &image);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with("uhyve: invalid --mount '/nonexistent/dir:/data': "),
        "{stderr}"
    );
}

#[test]
fn a_guest_cannot_leave_the_mapping() {
    if skip_without_kvm("a_guest_cannot_leave_the_mapping") {
        return;
    }
    let dir = HostDir::new("escape");
    std::os::unix::fs::symlink("../secret", dir.mapped().join("link")).unwrap();
    for (path, errno) in [
        (&b"../secret"[..], Errno::EACCES),
        (b"link", Errno::EACCES),
        (b"/etc/passwd", Errno::EINVAL),
        (b"missing", Errno::ENOENT),
    ] {
        let mut g = Guest::new();
        fs_block(&mut g, OPEN, Op::Open, 0, path, 0);
        program(&mut g, &[OPEN], OPEN);
        let mut vm = config(g.write("fs-escape"));
        vm.mounts = vec![uhyve_mount(&dir.mapped())];
        let outcome = uhyve::run(&vm).unwrap();
        assert_eq!(outcome.abnormal, None);
        assert_eq!(outcome.status, errno.to_neg() as i32, "{path:?}");
    }
}

#[test]
fn a_bad_fs_block_ends_the_vm() {
    if skip_without_kvm("a_bad_fs_block_ends_the_vm") {
        return;
    }
    let mut g = Guest::new();
    // rax = 0xffff_fff0: far outside 64 MiB of guest memory.
    g.mov_imm(Reg::Rax, 0xffff_fff0)
        .out(Nr::Fs.port())
        .exit(EXIT, 0);
    let outcome = uhyve::run(&config(g.write("fs-bad-block"))).unwrap();
    let reason = outcome.abnormal.unwrap_or_default();
    assert!(reason.contains("hypercall Fs"), "{reason}");
    assert!(reason.contains("outside guest memory"), "{reason}");
}

fn uhyve_mount(host: &Path) -> hermit_hostfs::Mount {
    hermit_hostfs::Mount::new(host, "/data").unwrap()
}

/// The file-call queue's page in the tiny guest's data area; slot 0's call
/// and the registration block.
const QUEUE: u64 = 0x3000;
const SLOT0: u64 = QUEUE + hermit_interface::fs::queue::HEADER as u64;
const SLOT0_CALL: u64 = SLOT0 + hermit_interface::fs::queue::CALL as u64;
const REGISTER: u64 = 0x2500;

/// Registers the queue at `page` (a relocated pointer when `relocate`).
fn register_queue(g: &mut Guest, page: u64, relocate: bool) {
    if relocate {
        g.pointer(REGISTER, page);
    } else {
        g.data(REGISTER, &page.to_le_bytes());
    }
    g.hypercall(Nr::FsQueue, REGISTER);
}

/// Exits with the low 32 bits of the `i64` at data address `at`.
fn exit_with_i64(g: &mut Guest, at: u64) {
    g.lea(Reg::Rax, at)
        .load(Reg::Rcx, Reg::Rax, 0)
        .lea(Reg::Rbx, EXIT)
        .store(Reg::Rbx, 0, Reg::Rcx)
        .exit_with(EXIT);
}

#[test]
fn the_file_call_queue_serves_a_guest() {
    if skip_without_kvm("the_file_call_queue_serves_a_guest") {
        return;
    }
    let dir = HostDir::new("queue");
    // Slot 0 holds an Open of `f`, already submitted; the guest registers
    // the queue, kicks slot 0 (the host runs the call or waits for the
    // poller's run) and exits with the call's result: handle 3.
    let mut g = Guest::new();
    fs_block(&mut g, SLOT0_CALL, Op::Open, 0, b"f", 0);
    g.data(SLOT0, &hermit_interface::fs::queue::SUBMITTED.to_le_bytes());
    register_queue(&mut g, QUEUE, true);
    g.mov_imm(Reg::Rax, 0).out(Nr::FsKick.port());
    exit_with_i64(&mut g, SLOT0_CALL + RESULT as u64);
    let mut vm = config(g.write("fs-queue"));
    vm.mounts = vec![uhyve_mount(&dir.mapped())];
    let outcome = uhyve::run(&vm).unwrap();
    assert_eq!(outcome.abnormal, None);
    assert_eq!(outcome.status, 3);
}

#[test]
fn a_bad_file_call_queue_is_refused() {
    if skip_without_kvm("a_bad_file_call_queue_is_refused") {
        return;
    }
    let status = |g: Guest, name: &str| {
        let outcome = uhyve::run(&config(g.write(name))).unwrap();
        assert_eq!(outcome.abnormal, None, "{name}");
        outcome.status
    };
    let einval = Errno::EINVAL.to_neg() as i32;
    let result = REGISTER + 8;
    // Not page aligned.
    let mut g = Guest::new();
    register_queue(&mut g, QUEUE + 8, true);
    exit_with_i64(&mut g, result);
    assert_eq!(status(g, "fs-queue-misaligned"), einval);
    // Outside guest RAM (64 MiB).
    let mut g = Guest::new();
    register_queue(&mut g, 1 << 40, false);
    exit_with_i64(&mut g, result);
    assert_eq!(status(g, "fs-queue-outside"), einval);
    // Twice: the second is refused, the first still works.
    let mut g = Guest::new();
    register_queue(&mut g, QUEUE, true);
    g.hypercall(Nr::FsQueue, REGISTER);
    exit_with_i64(&mut g, result);
    assert_eq!(status(g, "fs-queue-twice"), einval);
}

#[test]
fn a_bad_file_call_kick_ends_the_vm() {
    if skip_without_kvm("a_bad_file_call_kick_ends_the_vm") {
        return;
    }
    let reason = |g: Guest, name: &str| {
        let outcome = uhyve::run(&config(g.write(name))).unwrap();
        outcome.abnormal.unwrap_or_default()
    };
    // A kick before any queue was registered.
    let mut g = Guest::new();
    g.mov_imm(Reg::Rax, 0).out(Nr::FsKick.port()).exit(EXIT, 0);
    let r = reason(g, "fs-kick-early");
    assert!(r.contains("FsKick before FsQueue"), "{r}");
    // A slot out of range.
    let mut g = Guest::new();
    register_queue(&mut g, QUEUE, true);
    g.mov_imm(Reg::Rax, 31).out(Nr::FsKick.port()).exit(EXIT, 0);
    let r = reason(g, "fs-kick-range");
    assert!(r.contains("FsKick names slot 31"), "{r}");
}
