//! Helpers for the boot tests in `tests/tests/`: build the guest apps, the
//! PVH loader and the host tools once (a nested `cargo build --release`),
//! run images through the real `proxy` binary with a time limit, and decide
//! loudly when a hypervisor is not available.

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Guest applications the tests use.
pub const APPS: &[&str] = &[
    "hello",
    "panic",
    "exit-status",
    "heap-check",
    "clock",
    "threads",
    "cpus",
    "thr_hello",
    "test-malloc-mt",
    "pi",
    "bench-threads",
    "cat",
    "copy",
    "fs-check",
    "benchmarks",
    "nic-check",
    "nic-check-rtl8139",
    "echo",
    "httpd",
    "httpd-rtl8139",
    "netio",
    "rcce-pingpong",
    "ircce-pi",
    "mmnif-echo",
];

/// Apps that turn on kernel features (e.g. `smp`). Cargo unifies the
/// features of a package across everything one command builds, so these
/// are built by a command of their own; otherwise every app would get them.
pub const FEATURE_APPS: &[&str] = &[
    "cpus",
    "thr_hello",
    "threads",
    "test-malloc-mt",
    "pi",
    "bench-threads",
    "fs-check",
    // One NIC model each: `rtl8139` and `virtio-net` exclude each other.
    "nic-check",
    "nic-check-rtl8139",
    // Network apps: their card and `tcp` features must not reach the others.
    "echo",
    "httpd",
    "httpd-rtl8139",
    "netio",
    "mmnif-echo",
];

/// The workspace root.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// Cargo's target directory for this workspace.
pub fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => workspace().join("target"),
    }
}

/// Paths of everything the boot tests run.
#[derive(Debug)]
pub struct Built {
    /// `target/release/proxy`.
    pub proxy: PathBuf,
    /// `target/release/uhyve`.
    pub uhyve: PathBuf,
    /// `target/release/isles`.
    pub isles: PathBuf,
    /// `target/x86_64-unknown-none/release`, where the apps and the loader are.
    pub guest_dir: PathBuf,
}

impl Built {
    /// The image of guest app `name`.
    pub fn app(&self, name: &str) -> PathBuf {
        self.guest_dir.join(name)
    }
}

/// Builds (once per test process) the apps, the loader, the proxy and uhyve
/// in release mode, exactly as the README tells users to.
pub fn built() -> &'static Built {
    static BUILT: OnceLock<Built> = OnceLock::new();
    BUILT.get_or_init(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        // Host tools and guest code are built by separate commands: cargo
        // unifies a package's features across everything one command
        // builds, and host crates turn on `std` features of dependencies
        // the kernel shares (thiserror, through vm-memory).
        let mut host = Command::new(&cargo);
        host.current_dir(workspace()).args([
            "build",
            "--release",
            "-p",
            "proxy",
            "-p",
            "uhyve",
            "-p",
            "hermit-isles",
        ]);
        let mut guest = Command::new(&cargo);
        guest
            .current_dir(workspace())
            .args(["build", "--release", "-p", "pvh-loader"]);
        for app in APPS.iter().filter(|a| !FEATURE_APPS.contains(a)) {
            guest.args(["-p", app]);
        }
        let mut commands = vec![host, guest];
        for app in FEATURE_APPS {
            let mut cmd = Command::new(&cargo);
            cmd.current_dir(workspace())
                .args(["build", "--release", "-p", app]);
            commands.push(cmd);
        }
        for cmd in commands {
            cargo_build(cmd, "the guest apps and tools");
        }
        let target = target_dir();
        Built {
            proxy: target.join("release/proxy"),
            uhyve: target.join("release/uhyve"),
            isles: target.join("release/isles"),
            guest_dir: target.join("x86_64-unknown-none/release"),
        }
    })
}

/// What a finished run produced.
#[derive(Debug)]
pub struct Output {
    /// Exit status (`None` if killed by a signal).
    pub status: Option<i32>,
    /// Everything written to stdout.
    pub stdout: String,
    /// Everything written to stderr.
    pub stderr: String,
}

/// Runs `cmd` with stdin closed, killing it after `limit`.
pub fn run_with_limit(cmd: Command, limit: Duration) -> Output {
    run_with_input(cmd, None, limit)
}

/// Runs `cmd` with `input` piped into its stdin (closed when `None`),
/// killing it after `limit`.
pub fn run_with_input(mut cmd: Command, input: Option<Vec<u8>>, limit: Duration) -> Output {
    cmd.stdin(if input.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
    if let (Some(data), Some(mut stdin)) = (input, child.stdin.take()) {
        // A guest that stops reading early closes the pipe: not an error here.
        std::thread::spawn(move || {
            use std::io::Write as _;
            let _ = stdin.write_all(&data);
        });
    }
    let mut stdout = child.stdout.take().expect("piped");
    let mut stderr = child.stderr.take().expect("piped");
    let out_reader = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = stdout.read_to_end(&mut s);
        s
    });
    let err_reader = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = stderr.read_to_end(&mut s);
        s
    });
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{cmd:?} did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    Output {
        status: status.code(),
        stdout: String::from_utf8_lossy(&out_reader.join().expect("reader")).into_owned(),
        stderr: String::from_utf8_lossy(&err_reader.join().expect("reader")).into_owned(),
    }
}

/// A hypervisor the proxy can use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hypervisor {
    /// `HERMIT_ISLE=uhyve`.
    Uhyve,
    /// `HERMIT_ISLE=qemu`.
    Qemu,
}

impl Hypervisor {
    /// The `HERMIT_ISLE` value.
    pub fn isle(self) -> &'static str {
        match self {
            Self::Uhyve => "uhyve",
            Self::Qemu => "qemu",
        }
    }

    /// Why this hypervisor cannot run here, if it cannot.
    pub fn unavailable(self) -> Option<String> {
        match self {
            Self::Uhyve => uhyve::kvm_available().err(),
            Self::Qemu => match Command::new("qemu-system-x86_64").arg("--version").output() {
                Ok(out) if out.status.success() => None,
                _ => Some(
                    "qemu-system-x86_64 is not installed (apt-get install qemu-system-x86)".into(),
                ),
            },
        }
    }
}

/// Skips the calling test, loudly, when `hv` cannot run here. Returns true
/// when the test should go on.
pub fn require(hv: Hypervisor, test: &str) -> bool {
    match hv.unavailable() {
        None => true,
        Some(reason) => {
            eprintln!("SKIPPED: {test} on {}: {reason}", hv.isle());
            false
        }
    }
}

/// Runs guest app `app` with `args` through the proxy on `hv`, with extra
/// environment `env`.
pub fn proxy(hv: Hypervisor, app: &str, args: &[&str], env: &[(&str, &str)]) -> Output {
    // TCG boots are slower; a hung guest still fails the test.
    proxy_with_input(hv, app, args, env, None, Duration::from_secs(120))
}

/// Like [`proxy`], with `input` piped into the proxy's stdin and a time
/// limit of the caller's choice.
pub fn proxy_with_input(
    hv: Hypervisor,
    app: &str,
    args: &[&str],
    env: &[(&str, &str)],
    input: Option<&[u8]>,
    limit: Duration,
) -> Output {
    let built = built();
    let mut cmd = Command::new(&built.proxy);
    cmd.arg(built.app(app))
        .args(args)
        .env("HERMIT_ISLE", hv.isle());
    for (k, v) in env {
        cmd.env(k, v);
    }
    run_with_input(cmd, input.map(<[u8]>::to_vec), limit)
}

/// Runs one `cargo build` command; panics with cargo's errors if it fails.
pub fn cargo_build(mut cmd: Command, what: &str) {
    let out = cmd.output().expect("cannot run cargo");
    assert!(
        out.status.success(),
        "building {what} failed ({cmd:?}):\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Rust std applications: built for hermit (`-Zbuild-std`, each app in its
/// own directory as the README says) and natively, from the same source.
pub const STD_APPS: &[&str] = &["std-hello", "std-threads", "std-fs", "std-http"];

/// Where the std applications' images are.
#[derive(Debug)]
pub struct BuiltStd {
    /// The hermit images' directory.
    pub hermit_dir: PathBuf,
    /// The native (Linux) programs' directory.
    pub native_dir: PathBuf,
}

impl BuiltStd {
    /// The hermit image of std app `name`.
    pub fn hermit(&self, name: &str) -> PathBuf {
        self.hermit_dir.join(name)
    }

    /// The native program of std app `name`.
    pub fn native(&self, name: &str) -> PathBuf {
        self.native_dir.join(name)
    }
}

/// Builds (once per test process) the std apps for hermit and natively,
/// with a target directory of their own (`std-apps` in cargo's), plus what
/// [`built`] builds.
pub fn built_std() -> &'static BuiltStd {
    static BUILT: OnceLock<BuiltStd> = OnceLock::new();
    BUILT.get_or_init(|| {
        built();
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let dir = target_dir().join("std-apps");
        let mut commands = Vec::new();
        // One command per app: they differ in kernel features (`smp`). In
        // the app's directory, its `.cargo/config.toml` picks the hermit
        // target and builds std.
        for app in STD_APPS {
            let mut cmd = Command::new(&cargo);
            cmd.current_dir(workspace().join("apps").join(app))
                .env("CARGO_TARGET_DIR", &dir)
                .args(["build", "--release"]);
            commands.push(cmd);
        }
        let mut native = Command::new(&cargo);
        native
            .current_dir(workspace())
            .env("CARGO_TARGET_DIR", &dir)
            .args(["build", "--release"]);
        for app in STD_APPS {
            native.args(["-p", app]);
        }
        commands.push(native);
        for cmd in commands {
            cargo_build(cmd, "the std apps");
        }
        BuiltStd {
            hermit_dir: dir.join(format!("{STD_TARGET}/release")),
            native_dir: dir.join("release"),
        }
    })
}

/// The target std apps are built for (`hermit/targets/STD_TARGET.json`).
pub const STD_TARGET: &str = "x86_64-unknown-hermit-softfloat";

/// Runs `image` (any path) with `args` through the proxy on `hv`, with
/// extra environment `env` and `input` on stdin.
pub fn proxy_image(
    hv: Hypervisor,
    image: &Path,
    args: &[&str],
    env: &[(&str, &str)],
    input: Option<&[u8]>,
) -> Output {
    let mut cmd = Command::new(&built().proxy);
    cmd.arg(image).args(args).env("HERMIT_ISLE", hv.isle());
    for (k, v) in env {
        cmd.env(k, v);
    }
    run_with_input(cmd, input.map(<[u8]>::to_vec), Duration::from_secs(120))
}
