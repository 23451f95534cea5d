//! File boot tests (issue 4): the in-memory file system, thousands of files,
//! threads on many files, host directories mapped with `HERMIT_MOUNT` under
//! uhyve and QEMU (normal use, every way out of the mapping refused, a
//! 100 MiB file checked on the host), stdin through the proxy, and the
//! `cat` and `copy` demos.

use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::time::Duration;

use boot_tests::{Hypervisor, Output, proxy, proxy_with_input, require};

/// A fresh host directory tree for one test: `root/mapped` is what the
/// guest gets, `root/secret.txt` lies outside it.
struct Scratch {
    root: PathBuf,
}

impl Scratch {
    fn new(name: &str) -> Self {
        let root = std::env::temp_dir().join(format!("hermit-fs-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(root.join("mapped")).expect("scratch dir");
        std::fs::write(root.join("secret.txt"), "host secret\n").expect("secret");
        Self { root }
    }

    fn mapped(&self) -> PathBuf {
        self.root.join("mapped")
    }

    fn mount(&self) -> String {
        format!("{}:/host", self.mapped().display())
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

fn run(
    hv: Hypervisor,
    app: &str,
    args: &[&str],
    env: &[(&str, &str)],
    input: Option<&[u8]>,
) -> Output {
    proxy_with_input(hv, app, args, env, input, Duration::from_secs(300))
}

fn assert_ok(out: &Output, check: &str) {
    assert!(
        out.stdout.contains(&format!("{check} ok")),
        "{check}: {out:?}"
    );
    assert_eq!(out.status, Some(0), "{check}: {out:?}");
}

fn memfs(hv: Hypervisor) {
    if require(hv, "fs memfs") {
        assert_ok(&proxy(hv, "fs-check", &["memfs"], &[]), "memfs");
    }
}

fn many_files(hv: Hypervisor, n: usize) {
    if require(hv, &format!("fs {n} files")) {
        assert_ok(
            &run(hv, "fs-check", &["many", &n.to_string()], &[], None),
            "many",
        );
    }
}

fn threads_tmp(hv: Hypervisor) {
    if require(hv, "fs threads on /tmp") {
        let out = run(
            hv,
            "fs-check",
            &["threads", "4", "25", "/tmp"],
            &[("HERMIT_CPUS", "2")],
            None,
        );
        assert_ok(&out, "threads");
    }
}

fn threads_host(hv: Hypervisor) {
    if !require(hv, "fs threads on a host directory") {
        return;
    }
    let s = Scratch::new(&format!("threads-{}", hv.isle()));
    let out = run(
        hv,
        "fs-check",
        &["threads", "4", "25", "/host"],
        &[("HERMIT_CPUS", "2"), ("HERMIT_MOUNT", &s.mount())],
        None,
    );
    assert_ok(&out, "threads");
    let left: Vec<_> = std::fs::read_dir(s.mapped()).expect("readdir").collect();
    assert!(left.is_empty(), "the guest removed its files: {left:?}");
}

fn host_dir(hv: Hypervisor) {
    if !require(hv, "fs host directory") {
        return;
    }
    let s = Scratch::new(&format!("host-{}", hv.isle()));
    std::fs::write(s.mapped().join("input.txt"), "made on the host\n").expect("input");
    let out = run(
        hv,
        "fs-check",
        &["host", "/host"],
        &[("HERMIT_MOUNT", &s.mount())],
        None,
    );
    assert_ok(&out, "host");
    assert!(out.stdout.contains("input: made on the host\n"), "{out:?}");
    assert_eq!(
        std::fs::read_to_string(s.mapped().join("out.txt")).expect("out.txt on the host"),
        "written by hermit\n"
    );
    assert!(!s.mapped().join("sub").exists(), "the guest removed sub/");
}

fn escapes(hv: Hypervisor) {
    if !require(hv, "fs escapes refused") {
        return;
    }
    let s = Scratch::new(&format!("escape-{}", hv.isle()));
    let m = s.mapped();
    std::fs::write(m.join("input.txt"), "inside\n").expect("input");
    symlink("../secret.txt", m.join("link-out")).expect("symlink");
    symlink(s.root.join("secret.txt"), m.join("abs-link")).expect("symlink");
    symlink("/dev/zero", m.join("dev-link")).expect("symlink");
    symlink("..", m.join("dir-link")).expect("symlink");
    symlink("input.txt", m.join("link-in")).expect("symlink");
    let fifo =
        std::ffi::CString::new(m.join("fifo").into_os_string().into_encoded_bytes()).expect("path");
    // SAFETY: `fifo` is a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0, "mkfifo");
    let out = run(
        hv,
        "fs-check",
        &["escape", "/host"],
        &[("HERMIT_MOUNT", &s.mount())],
        None,
    );
    assert_ok(&out, "escape");
    for name in [
        "link-out",
        "abs-link",
        "fifo",
        "dev-link",
        "dotdot",
        "sub-link-dir",
    ] {
        assert!(
            out.stdout.contains(&format!("refused {name} ")),
            "{name} must be refused: {out:?}"
        );
    }
    assert!(!out.stdout.contains("escaped"), "{out:?}");
    assert!(!out.stdout.contains("host secret"), "{out:?}");
    assert!(
        out.stdout.contains("link-in inside\n"),
        "a link inside the mapping works: {out:?}"
    );
}

fn no_mount_no_files(hv: Hypervisor) {
    if !require(hv, "fs no mapping, no host files") {
        return;
    }
    let out = proxy(hv, "cat", &["/host/input.txt", "/etc/passwd"], &[]);
    assert_eq!(out.status, Some(1), "{out:?}");
    assert!(
        out.stderr.contains("cat: /host/input.txt: ENOENT"),
        "{out:?}"
    );
    assert!(out.stderr.contains("cat: /etc/passwd: ENOENT"), "{out:?}");
    assert!(out.stdout.is_empty(), "{out:?}");
}

/// Word `j` of every MiB the guest writes (see apps/fs-check).
fn pattern() -> Vec<u8> {
    (0..(1u64 << 20) / 8)
        .flat_map(|j| j.wrapping_mul(0x9e37_79b9_7f4a_7c15).to_le_bytes())
        .collect()
}

fn fnv1a(hash: &mut u64, bytes: &[u8]) {
    for &b in bytes {
        *hash = (*hash ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
    }
}

fn big_file(hv: Hypervisor, mib: usize) {
    if !require(hv, &format!("fs {mib} MiB file")) {
        return;
    }
    let s = Scratch::new(&format!("big-{}", hv.isle()));
    let out = run(
        hv,
        "fs-check",
        &["bigwrite", "/host/big.bin", &mib.to_string()],
        &[("HERMIT_MOUNT", &s.mount())],
        None,
    );
    assert_ok(&out, "bigwrite");
    let data = std::fs::read(s.mapped().join("big.bin")).expect("big.bin on the host");
    assert_eq!(data.len(), mib << 20);
    let block = pattern();
    let (mut want, mut got) = (0xcbf2_9ce4_8422_2325u64, 0xcbf2_9ce4_8422_2325u64);
    for chunk in data.chunks(1 << 20) {
        fnv1a(&mut want, &block);
        fnv1a(&mut got, chunk);
    }
    assert_eq!(got, want, "checksum of the file the guest wrote");
    let out = run(
        hv,
        "fs-check",
        &["bigread", "/host/big.bin"],
        &[("HERMIT_MOUNT", &s.mount())],
        None,
    );
    assert_ok(&out, "bigread");
    assert!(
        out.stdout.contains(&format!("read {} bytes", mib << 20)),
        "{out:?}"
    );
}

fn stdin(hv: Hypervisor) {
    if !require(hv, "fs stdin") {
        return;
    }
    let input: Vec<u8> = (0..2000)
        .flat_map(|i| format!("line {i}\n").into_bytes())
        .collect();
    let out = run(hv, "fs-check", &["stdin"], &[], Some(&input));
    assert_ok(&out, "stdin");
    assert!(
        out.stdout
            .contains(&format!("stdin {} bytes\n", input.len())),
        "{out:?}"
    );
    assert!(
        out.stdout.contains("line 0\nline 1\n") && out.stdout.contains("line 1999\n"),
        "{out:?}"
    );
    let out = run(hv, "cat", &[], &[], Some(b"piped through cat\n"));
    assert_eq!(out.status, Some(0), "{out:?}");
    assert_eq!(out.stdout, "piped through cat\n", "{out:?}");
}

fn demos(hv: Hypervisor) {
    if !require(hv, "fs cat and copy demos") {
        return;
    }
    let s = Scratch::new(&format!("demos-{}", hv.isle()));
    let data: Vec<u8> = (0..3_000_000u32)
        .map(|i| (i * 7 + i / 1000) as u8)
        .collect();
    std::fs::write(s.mapped().join("in.bin"), &data).expect("in.bin");
    std::fs::write(s.mapped().join("a.txt"), "first\n").expect("a.txt");
    let out = run(
        hv,
        "copy",
        &["/host/in.bin", "/host/out.bin"],
        &[("HERMIT_MOUNT", &s.mount())],
        None,
    );
    assert_eq!(out.status, Some(0), "{out:?}");
    assert!(
        out.stdout.contains(&format!("copied {} bytes", data.len())),
        "{out:?}"
    );
    assert!(
        std::fs::read(s.mapped().join("out.bin")).expect("out.bin") == data,
        "copy differs"
    );
    let out = run(
        hv,
        "cat",
        &["/host/a.txt", "/host/missing", "/host/a.txt"],
        &[("HERMIT_MOUNT", &s.mount())],
        None,
    );
    assert_eq!(out.stdout, "first\nfirst\n", "{out:?}");
    assert!(out.stderr.contains("cat: /host/missing: ENOENT"), "{out:?}");
    assert_eq!(out.status, Some(1), "{out:?}");
}

fn bad_mount(hv: Hypervisor) {
    if !require(hv, "fs bad HERMIT_MOUNT") {
        return;
    }
    let missing = Path::new("/nonexistent/hermit-dir");
    let out = proxy(
        hv,
        "hello",
        &[],
        &[("HERMIT_MOUNT", &format!("{}:/host", missing.display()))],
    );
    assert_ne!(out.status, Some(0), "{out:?}");
    assert_eq!(out.stderr.lines().count(), 1, "one-line error: {out:?}");
    assert!(out.stderr.contains("/nonexistent/hermit-dir"), "{out:?}");
    assert!(!out.stderr.contains("panicked"), "{out:?}");
}

macro_rules! per_hypervisor {
    ($hv:ident) => {
        use boot_tests::Hypervisor::$hv as HV;
        #[test]
        fn memfs() {
            super::memfs(HV);
        }
        #[test]
        fn threads_tmp() {
            super::threads_tmp(HV);
        }
        #[test]
        fn threads_host() {
            super::threads_host(HV);
        }
        #[test]
        fn host_dir() {
            super::host_dir(HV);
        }
        #[test]
        fn escapes() {
            super::escapes(HV);
        }
        #[test]
        fn no_mount_no_files() {
            super::no_mount_no_files(HV);
        }
        #[test]
        fn stdin() {
            super::stdin(HV);
        }
        #[test]
        fn demos() {
            super::demos(HV);
        }
        #[test]
        fn bad_mount() {
            super::bad_mount(HV);
        }
    };
}

mod uhyve {
    per_hypervisor!(Uhyve);

    #[test]
    fn files_2000() {
        super::many_files(HV, 2000);
    }

    #[test]
    fn file_of_100_mib() {
        super::big_file(HV, 100);
    }
}

mod qemu {
    per_hypervisor!(Qemu);

    /// The same kernel code as under uhyve; fewer files to keep the suite
    /// short (every guest instruction is emulated on this machine).
    #[test]
    fn files_500() {
        super::many_files(HV, 500);
    }

    #[test]
    fn file_of_16_mib() {
        super::big_file(HV, 16);
    }
}
