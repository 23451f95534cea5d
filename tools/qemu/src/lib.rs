//! `hermit-qemu` runs a hermit image under QEMU: it packs the image, its
//! arguments, environment and kernel command line into a bundle
//! ([`hermit_interface::bundle`]), boots QEMU's `microvm` machine with the PVH
//! loader (`tools/pvh-loader`) as `-kernel` and the bundle as `-initrd`, and
//! streams the guest's serial ports: COM1 to stdout, COM2 to stderr, COM3 (the
//! kernel log) into [`Outcome::kernel_log`]. The exit status comes from the
//! kernel's exit record on COM3, or from `isa-debug-exit` (which can be left
//! out, [`Config::debug_exit`]: the kernel then powers off through ACPI).
//!
//! It is a host library for the proxy and the boot tests, not a VMM: QEMU
//! does the work. Linux only (pipes and a memfd are handed to QEMU as
//! `/dev/fd/N`). With [`Config::files`] the guest also gets a virtio console
//! whose other end is a socket this library serves: the file-system stream
//! ([`stream`]) for host directories and stdin. With [`Config::net`] it gets
//! a network card on QEMU's user-mode network ([`NetConfig`]; PCI cards
//! switch the machine to `microvm,pcie=on`). With [`Config::isle`] it is
//! one isle of a multi-kernel group ([`IsleConfig`]): a region file shared
//! with the other isles comes in as `ivshmem-plain` (also on
//! `microvm,pcie=on`) and the isle number through the bundle; QEMU offers
//! no doorbells here, so isles poll. Missing: tap networking, other
//! machine types, `ivshmem-doorbell`.

pub mod bundle;
mod command;
pub mod exit;
pub mod stream;

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, mpsc};
use std::time::{Duration, SystemTime};

pub use command::{
    Accel, DNS_IP, GATEWAY_IP, GUEST_IP, GUEST_NET, IsleConfig, NetConfig, NicModel, SerialPaths,
    Spec, qemu_args,
};

/// The QEMU binary used when [`Config::qemu`] is `None`.
pub const DEFAULT_QEMU: &str = "qemu-system-x86_64";

/// What to run and how.
#[derive(Clone, Debug)]
pub struct Config {
    /// The hermit application image (static-PIE ELF for x86_64).
    pub image: PathBuf,
    /// The PVH loader ELF (see [`find_loader`]).
    pub loader: PathBuf,
    /// Application arguments, `argv[0]` included.
    pub args: Vec<String>,
    /// Application environment, `NAME=VALUE` entries.
    pub env: Vec<String>,
    /// Guest RAM in bytes.
    pub mem_size: u64,
    /// Number of vCPUs.
    pub cpus: u32,
    /// Kernel command line.
    pub cmdline: String,
    /// Use KVM if `/dev/kvm` is usable; `false` forces TCG.
    pub kvm: bool,
    /// Start QEMU with `-s -S`: the guest waits for gdb on TCP port 1234.
    pub debug: bool,
    /// Give the guest QEMU's `isa-debug-exit` device (default). Without it
    /// the kernel ends the VM by ACPI power-off and the exit status comes
    /// from the exit record on COM3 alone.
    pub debug_exit: bool,
    /// The QEMU binary; default [`DEFAULT_QEMU`] from `PATH`.
    pub qemu: Option<PathBuf>,
    /// Serves the guest's file-system stream (host directories, stdin);
    /// `None`: the guest gets no virtio console and sees no host files.
    pub files: Option<FileService>,
    /// A network card on QEMU's user-mode network; `None`: no network
    /// (and no PCI bus).
    pub net: Option<NetConfig>,
    /// Run as an isle of a multi-kernel group, sharing a region file;
    /// `None`: a standalone VM.
    pub isle: Option<IsleConfig>,
}

/// Answers one file-system request: returns the result and leaves the
/// reply's data in the vector (see [`stream::serve`]).
pub type FileHandler = dyn Fn(&stream::Request<'_>, &mut Vec<u8>) -> i64 + Send + Sync;

/// The handler of the guest's file-system requests.
#[derive(Clone)]
pub struct FileService(pub Arc<FileHandler>);

impl std::fmt::Debug for FileService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FileService")
    }
}

impl Config {
    /// A configuration with 512 MiB, one CPU, KVM when usable,
    /// `isa-debug-exit`, the image path as `argv[0]` and no environment.
    pub fn new(image: impl Into<PathBuf>, loader: impl Into<PathBuf>) -> Self {
        let image = image.into();
        Self {
            args: vec![image.display().to_string()],
            image,
            loader: loader.into(),
            env: Vec::new(),
            mem_size: 512 << 20,
            cpus: 1,
            cmdline: String::new(),
            kvm: true,
            debug: false,
            debug_exit: true,
            qemu: None,
            files: None,
            net: None,
            isle: None,
        }
    }
}

/// How a run ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// The application's exit status (1 when `abnormal`).
    pub status: i32,
    /// Everything the kernel wrote to COM3, minus the exit record.
    pub kernel_log: Vec<u8>,
    /// Why the run ended without an exit status (crash, triple fault, QEMU
    /// killed, timeout); `None` for a normal exit.
    pub abnormal: Option<String>,
    /// The accelerator actually used: `"kvm"` or `"tcg"`.
    pub accel: &'static str,
}

/// Why an image could not be run.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The QEMU binary is missing.
    #[error("{0} not found; install the qemu-system-x86 package")]
    QemuNotFound(String),
    /// The image file is missing or unreadable.
    #[error("cannot read image {}: {source}", path.display())]
    ImageUnreadable {
        /// The image path.
        path: PathBuf,
        /// What went wrong.
        source: io::Error,
    },
    /// The image is not an x86_64 hermit ELF.
    #[error("{} is not a hermit image: {reason}", path.display())]
    BadImage {
        /// The image path.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The PVH loader is missing.
    #[error("PVH loader not found at {}; build it with `cargo build --release -p pvh-loader`", path.display())]
    LoaderNotFound {
        /// Where it was expected (the first candidate when searching).
        path: PathBuf,
    },
    /// An argument, environment entry or the command line contains a NUL byte.
    #[error("{0:?} contains a NUL byte")]
    Nul(String),
    /// The isle settings are unusable (bad number or size, region file
    /// missing or too small).
    #[error("{0}")]
    BadIsle(String),
    /// QEMU exited before running the guest.
    #[error("QEMU failed to start: {0}")]
    QemuFailed(String),
    /// Setting up or talking to QEMU failed.
    #[error("running QEMU: {0}")]
    Io(#[from] io::Error),
}

/// Where the guest's output goes, for [`run_with`].
pub struct Streams<'a> {
    /// Receives COM1 (the application's stdout) as the guest writes it.
    pub stdout: &'a mut (dyn Write + Send),
    /// Receives COM2 (the application's stderr) as the guest writes it.
    pub stderr: &'a mut (dyn Write + Send),
    /// Kill QEMU after this long (the outcome is then abnormal).
    pub timeout: Option<Duration>,
}

/// `KVM_GET_API_VERSION` (`_IO(0xAE, 0x00)`).
const KVM_GET_API_VERSION: libc::c_ulong = 0xae00;
/// The only KVM API version there is.
const KVM_API_VERSION: libc::c_int = 12;

/// Whether `/dev/kvm` can be opened and speaks the stable KVM API.
pub fn kvm_usable() -> bool {
    let Ok(kvm) = File::options().read(true).write(true).open("/dev/kvm") else {
        return false;
    };
    // SAFETY: `kvm` is an open /dev/kvm descriptor; KVM_GET_API_VERSION takes
    // no argument and touches no memory of ours.
    let version = unsafe { libc::ioctl(kvm.as_raw_fd(), KVM_GET_API_VERSION) };
    version == KVM_API_VERSION
}

/// Finds the PVH loader: `hint` if given, else `$HERMIT_LOADER`, else the
/// `x86_64-unknown-none/{release,debug}/pvh-loader` of the target directory
/// the running executable lives in, else that of the target directory this
/// crate was built in.
pub fn find_loader(hint: Option<&Path>) -> Result<PathBuf, Error> {
    let explicit = hint
        .map(Path::to_path_buf)
        .or_else(|| std::env::var_os("HERMIT_LOADER").map(PathBuf::from));
    if let Some(path) = explicit {
        return if path.is_file() {
            Ok(path)
        } else {
            Err(Error::LoaderNotFound { path })
        };
    }
    let exe = std::env::current_exe().ok();
    let candidates = loader_candidates(
        exe.as_deref(),
        option_env!("CARGO_TARGET_DIR"),
        env!("CARGO_MANIFEST_DIR"),
    );
    candidates
        .iter()
        .find(|p| p.is_file())
        .cloned()
        .ok_or_else(|| Error::LoaderNotFound {
            path: candidates[0].clone(),
        })
}

/// Where [`find_loader`] looks, best first; never empty.
fn loader_candidates(
    exe: Option<&Path>,
    build_target_dir: Option<&str>,
    manifest_dir: &str,
) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = Vec::new();
    // `target/<profile>/proxy`, `target/<profile>/deps/test-bin`,
    // `target/<triple>/<profile>/...`: the target dir is one to three levels up.
    if let Some(exe_dir) = exe.and_then(Path::parent) {
        dirs.extend(exe_dir.ancestors().skip(1).take(3).map(Path::to_path_buf));
    }
    if let Some(dir) = build_target_dir {
        dirs.push(PathBuf::from(manifest_dir).join(dir));
    }
    dirs.push(Path::new(manifest_dir).join("../../target"));
    let mut out = Vec::new();
    for dir in dirs {
        for profile in ["release", "debug"] {
            let p = dir
                .join("x86_64-unknown-none")
                .join(profile)
                .join("pvh-loader");
            if !out.contains(&p) {
                out.push(p);
            }
        }
    }
    out
}

/// Checks on the host, with the same code the PVH loader runs, that `bytes`
/// is an image the loader can boot.
fn check_image(bytes: &[u8]) -> Result<(), String> {
    hermit_loader::Image::parse(bytes)
        .map(drop)
        .map_err(|e| e.to_string())
}

/// Checks an isle's settings and its region file.
fn check_isle(isle: &IsleConfig) -> Result<(), Error> {
    isle.check().map_err(Error::BadIsle)?;
    let len = std::fs::metadata(&isle.region)
        .map_err(|e| Error::BadIsle(format!("isle region file {}: {e}", isle.region.display())))?
        .len();
    if len < isle.size {
        return Err(Error::BadIsle(format!(
            "isle region file {} has {len} bytes, fewer than the region's {}",
            isle.region.display(),
            isle.size
        )));
    }
    Ok(())
}

/// Locates the QEMU binary.
fn qemu_binary(config: &Config) -> Result<PathBuf, Error> {
    let name = config
        .qemu
        .clone()
        .unwrap_or_else(|| PathBuf::from(DEFAULT_QEMU));
    let not_found = || Error::QemuNotFound(name.display().to_string());
    if name.components().count() > 1 {
        return if name.is_file() {
            Ok(name)
        } else {
            Err(not_found())
        };
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join(&name))
        .find(|p| p.is_file())
        .ok_or_else(not_found)
}

/// A pipe as (read end, write end), both close-on-exec.
fn pipe() -> io::Result<(File, OwnedFd)> {
    let mut fds = [0 as RawFd; 2];
    // SAFETY: `fds` is a valid array of two ints for pipe2 to fill.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: pipe2 succeeded, so both descriptors are open and ours alone.
    Ok(unsafe { (File::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// An anonymous in-memory file holding `data`, close-on-exec.
fn memfd_with(data: &[u8]) -> io::Result<File> {
    // SAFETY: the name is a NUL-terminated string literal.
    let fd = unsafe { libc::memfd_create(c"hermit-bundle".as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: memfd_create returned a fresh descriptor that nothing else owns.
    let mut file = unsafe { File::from_raw_fd(fd) };
    file.write_all(data)?;
    Ok(file)
}

/// Copies `from` to `to` chunk by chunk, flushing each, until EOF. A failing
/// `to` (e.g. a closed stdout) does not stop the draining, so QEMU never
/// blocks on a full pipe.
fn forward(mut from: File, to: &mut dyn Write) {
    let mut buf = [0u8; 4096];
    let mut sink_ok = true;
    loop {
        match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                if sink_ok {
                    sink_ok = to.write_all(&buf[..n]).and_then(|()| to.flush()).is_ok();
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
}

/// Reads `from` to EOF.
fn collect(mut from: File) -> Vec<u8> {
    let mut out = Vec::new();
    // A read error just ends the capture early; what was read is kept.
    let _ = from.read_to_end(&mut out);
    out
}

/// Runs the image, COM1 and COM2 going to this process's stdout and stderr.
pub fn run(config: &Config) -> Result<Outcome, Error> {
    run_with(
        config,
        Streams {
            stdout: &mut io::stdout(),
            stderr: &mut io::stderr(),
            timeout: None,
        },
    )
}

/// Runs the image with the guest's output going to `streams`.
pub fn run_with(config: &Config, streams: Streams<'_>) -> Result<Outcome, Error> {
    let qemu = qemu_binary(config)?;
    if !config.loader.is_file() {
        return Err(Error::LoaderNotFound {
            path: config.loader.clone(),
        });
    }
    let image = std::fs::read(&config.image).map_err(|source| Error::ImageUnreadable {
        path: config.image.clone(),
        source,
    })?;
    check_image(&image).map_err(|reason| Error::BadImage {
        path: config.image.clone(),
        reason,
    })?;
    if config.cmdline.contains('\0') {
        return Err(Error::Nul(config.cmdline.clone()));
    }
    if let Some(isle) = &config.isle {
        check_isle(isle)?;
    }
    let boot_time_ns = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let bundle = bundle::build(&bundle::Contents {
        image: &image,
        cmdline: &config.cmdline,
        args: &config.args,
        env: &config.env,
        cpu_count: config.cpus.max(1),
        boot_time_ns,
        isle: config
            .isle
            .as_ref()
            .map_or(hermit_interface::isle::NOT_AN_ISLE, |i| i.index),
    })
    .map_err(|e| Error::Nul(e.0))?;
    drop(image);
    let bundle_file = memfd_with(&bundle)?;
    drop(bundle);

    let accel = if config.kvm && kvm_usable() {
        Accel::Kvm
    } else {
        Accel::Tcg
    };
    if config.kvm && accel == Accel::Tcg {
        log::info!("/dev/kvm is not usable; running under TCG");
    }
    let (com1_read, com1_write) = pipe()?;
    let (com2_read, com2_write) = pipe()?;
    let (com3_read, com3_write) = pipe()?;
    let fd_path = |fd: RawFd| format!("/dev/fd/{fd}");
    let serial: SerialPaths = [
        fd_path(com1_write.as_raw_fd()),
        fd_path(com2_write.as_raw_fd()),
        fd_path(com3_write.as_raw_fd()),
    ];
    let bundle_path = PathBuf::from(fd_path(bundle_file.as_raw_fd()));
    let files = match &config.files {
        Some(service) => {
            let (guest_end, host_end) = std::os::unix::net::UnixStream::pair()?;
            // QEMU drops console output it cannot write at once; give its
            // end the largest send buffer allowed (a request is at most
            // `stream::MAX_DATA` plus two paths, well below the default).
            let size: libc::c_int = 4 << 20;
            // SAFETY: valid socket fd, option value of the stated size.
            unsafe {
                libc::setsockopt(
                    guest_end.as_raw_fd(),
                    libc::SOL_SOCKET,
                    libc::SO_SNDBUF,
                    (&raw const size).cast(),
                    size_of::<libc::c_int>() as libc::socklen_t,
                )
            };
            Some((OwnedFd::from(guest_end), host_end, service.clone()))
        }
        None => None,
    };
    let args = qemu_args(&Spec {
        loader: &config.loader,
        bundle: &bundle_path,
        mem_size: config.mem_size,
        cpus: config.cpus,
        accel,
        debug: config.debug,
        debug_exit: config.debug_exit,
        serial: &serial,
        files_fd: files.as_ref().map(|(fd, _, _)| fd.as_raw_fd()),
        net: config.net.as_ref(),
        isle: config.isle.as_ref(),
    });
    log::debug!(
        "{} {}",
        qemu.display(),
        args.iter()
            .map(|a| a.to_string_lossy())
            .collect::<Vec<_>>()
            .join(" ")
    );

    let mut inherited = vec![
        com1_write.as_raw_fd(),
        com2_write.as_raw_fd(),
        com3_write.as_raw_fd(),
        bundle_file.as_raw_fd(),
    ];
    inherited.extend(files.as_ref().map(|(fd, _, _)| fd.as_raw_fd()));
    let mut cmd = Command::new(&qemu);
    cmd.args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    // SAFETY: the closure only calls fcntl and prctl, which are
    // async-signal-safe, and reads a vector allocated before the fork; the
    // descriptors are open in the parent and hence in the forked child.
    // (PR_SET_PDEATHSIG follows the forking thread: callers run QEMU from
    // the thread that waits for it.)
    unsafe {
        cmd.pre_exec(move || {
            for &fd in &inherited {
                if libc::fcntl(fd, libc::F_SETFD, 0) != 0 {
                    return Err(io::Error::last_os_error());
                }
            }
            // QEMU must not outlive us: a launcher killed by a timeout
            // would otherwise leave it running (and burning a core).
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => Error::QemuNotFound(qemu.display().to_string()),
        _ => Error::Io(e),
    })?;
    // Only QEMU may hold the write ends, so that the readers see EOF when it exits.
    drop((com1_write, com2_write, com3_write));
    if let Some((guest_end, mut host_end, service)) = files {
        drop(guest_end);
        // Not joined: a request may block (the guest reading stdin) when
        // QEMU dies; the thread ends with the socket or the process.
        std::thread::spawn(move || {
            if let Err(e) = stream::serve(&mut host_end, |req, out| (service.0)(req, out)) {
                log::warn!("guest file-system stream: {e}");
            }
        });
    }
    let qemu_stderr = File::from(OwnedFd::from(child.stderr.take().expect("stderr is piped")));
    let pid = child.id() as libc::pid_t;
    let Streams {
        stdout,
        stderr,
        timeout,
    } = streams;

    let (status, timed_out, kernel_log, qemu_err) = std::thread::scope(|s| {
        let out = s.spawn(move || forward(com1_read, stdout));
        let err = s.spawn(move || forward(com2_read, stderr));
        let log = s.spawn(move || collect(com3_read));
        let qerr = s.spawn(move || collect(qemu_stderr));
        let (done_tx, done_rx) = mpsc::channel::<()>();
        let timer = timeout.map(|t| {
            s.spawn(move || {
                if done_rx.recv_timeout(t) == Err(mpsc::RecvTimeoutError::Timeout) {
                    // SAFETY: QEMU has not been reaped yet (see below), so
                    // `pid` still names our child, at worst as a zombie.
                    unsafe { libc::kill(pid, libc::SIGKILL) };
                    return true;
                }
                false
            })
        });
        // Wait without reaping, so the timer can never signal a reused pid.
        // SAFETY: `info` is a valid siginfo_t for waitid to fill.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: `pid` is our unreaped child; WNOWAIT leaves it waitable.
        while unsafe {
            libc::waitid(
                libc::P_PID,
                pid as libc::id_t,
                &mut info,
                libc::WEXITED | libc::WNOWAIT,
            )
        } != 0
        {
            if io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
                break;
            }
        }
        drop(done_tx);
        let timed_out = timer.is_some_and(|t| t.join().unwrap_or(false));
        let status = child.wait();
        let kernel_log = log.join().unwrap_or_default();
        let qemu_err = qerr.join().unwrap_or_default();
        let _ = (out.join(), err.join());
        (status, timed_out, kernel_log, qemu_err)
    });
    let status = status?;
    let qemu_err = String::from_utf8_lossy(&qemu_err).into_owned();
    for line in qemu_err.lines() {
        log::warn!("{line}");
    }
    let (kernel_log, record) = exit::split_exit_record(&kernel_log);
    let ended = Ended {
        record,
        timeout: timeout.filter(|_| timed_out),
        code: status.code(),
        signal: status.signal(),
        qemu_error: qemu_err.lines().next(),
        guest_output: !kernel_log.is_empty(),
    };
    let (status, abnormal) = ended.classify()?;
    Ok(Outcome {
        status,
        kernel_log,
        abnormal,
        accel: accel.name(),
    })
}

/// How QEMU ended, as far as the status goes.
struct Ended<'a> {
    /// The status from the exit record.
    record: Option<i32>,
    /// Set when the run was killed for taking this long.
    timeout: Option<Duration>,
    /// QEMU's exit code.
    code: Option<i32>,
    /// The signal that killed QEMU.
    signal: Option<i32>,
    /// The first line QEMU wrote to its stderr.
    qemu_error: Option<&'a str>,
    /// Whether the guest wrote to the kernel log at all.
    guest_output: bool,
}

impl Ended<'_> {
    /// The status and abnormal-end reason, or the start failure.
    fn classify(&self) -> Result<(i32, Option<String>), Error> {
        if let Some(t) = self.timeout {
            return Ok((
                1,
                Some(format!(
                    "timed out after {:.1} s; QEMU was killed",
                    t.as_secs_f64()
                )),
            ));
        }
        if let Some(status) = self.record {
            return Ok((status, None));
        }
        let abnormal = |reason: String| Ok((1, Some(reason)));
        match (self.code, self.signal) {
            // QEMU's own errors exit with 1, which is also `isa-debug-exit`
            // value 0: an error message and a silent guest tell them apart.
            (Some(1), _) if self.qemu_error.is_some() && !self.guest_output => Err(
                Error::QemuFailed(self.qemu_error.unwrap_or_default().to_owned()),
            ),
            (Some(code), _)
                if self.qemu_error.is_none() && exit::debug_exit_value(code).is_some() =>
            {
                Ok((exit::debug_exit_value(code).unwrap_or(1), None))
            }
            (Some(0), _) => abnormal(
                "the VM stopped without an exit record (guest crash, triple fault or shutdown)"
                    .into(),
            ),
            (Some(code), _) => abnormal(match self.qemu_error {
                Some(line) => format!("QEMU exited with status {code}: {line}"),
                None => format!("QEMU exited with status {code}"),
            }),
            (None, Some(sig)) => abnormal(format!("QEMU was killed by signal {sig}")),
            (None, None) => abnormal("QEMU ended for an unknown reason".into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loader_candidates_cover_exe_and_build_dirs() {
        let c = loader_candidates(
            Some(Path::new("/w/target/debug/deps/t-123")),
            Some("/tt"),
            "/w/tools/qemu",
        );
        assert!(c.contains(&PathBuf::from(
            "/w/target/x86_64-unknown-none/release/pvh-loader"
        )));
        assert!(c.contains(&PathBuf::from(
            "/w/target/x86_64-unknown-none/debug/pvh-loader"
        )));
        assert!(c.contains(&PathBuf::from("/tt/x86_64-unknown-none/release/pvh-loader")));
        assert!(c.contains(&PathBuf::from(
            "/w/tools/qemu/../../target/x86_64-unknown-none/release/pvh-loader"
        )));
        // `target/release/proxy`: the target dir is the grandparent.
        let c = loader_candidates(Some(Path::new("/w/target/release/proxy")), None, "/m");
        assert_eq!(
            c[0],
            PathBuf::from("/w/target/x86_64-unknown-none/release/pvh-loader")
        );
        // Release before debug for the same directory.
        let rel = c
            .iter()
            .position(|p| p.ends_with("release/pvh-loader"))
            .unwrap();
        let dbg = c
            .iter()
            .position(|p| p.ends_with("debug/pvh-loader"))
            .unwrap();
        assert!(rel < dbg);
    }

    #[test]
    fn find_loader_honours_hint() {
        let missing = Path::new("/nonexistent/pvh-loader");
        let err = find_loader(Some(missing)).unwrap_err();
        assert!(
            err.to_string()
                .contains("cargo build --release -p pvh-loader"),
            "{err}"
        );
        let exe = std::env::current_exe().unwrap();
        assert_eq!(find_loader(Some(&exe)).unwrap(), exe);
    }

    #[test]
    fn image_checks() {
        assert_eq!(check_image(b"not elf").unwrap_err(), "not an ELF file");
        let mut elf = vec![0u8; 64];
        elf[..7].copy_from_slice(b"\x7fELF\x01\x01\x01");
        assert_eq!(check_image(&elf).unwrap_err(), "not a 64-bit ELF image");
        elf[4] = 2;
        elf[16] = 2; // ET_EXEC
        elf[18] = 3; // EM_386
        elf[20] = 1;
        elf[52] = 64;
        elf[54] = 56;
        assert!(
            check_image(&elf)
                .unwrap_err()
                .contains("not an x86_64 image")
        );
    }

    fn ended(code: Option<i32>) -> Ended<'static> {
        Ended {
            record: None,
            timeout: None,
            code,
            signal: None,
            qemu_error: None,
            guest_output: true,
        }
    }

    #[test]
    fn classify_outcomes() {
        let record = Ended {
            record: Some(7),
            code: Some(0),
            ..ended(None)
        };
        assert_eq!(record.classify().unwrap(), (7, None));
        assert_eq!(
            ended(Some(5)).classify().unwrap(),
            (2, None),
            "debug-exit fallback"
        );
        assert_eq!(
            ended(Some(1)).classify().unwrap(),
            (0, None),
            "debug-exit value 0"
        );
        let (status, why) = ended(Some(0)).classify().unwrap();
        assert_eq!(status, 1);
        assert!(why.unwrap().contains("triple fault"));
        let killed = Ended {
            signal: Some(9),
            ..ended(None)
        };
        assert_eq!(
            killed.classify().unwrap(),
            (1, Some("QEMU was killed by signal 9".into()))
        );
        let slow = Ended {
            timeout: Some(Duration::from_secs(2)),
            record: Some(0),
            ..ended(Some(0))
        };
        assert!(
            slow.classify()
                .unwrap()
                .1
                .unwrap()
                .contains("timed out after 2.0 s")
        );
        let failed = Ended {
            qemu_error: Some("qemu: bad option"),
            guest_output: false,
            ..ended(Some(1))
        };
        assert_eq!(
            failed.classify().unwrap_err().to_string(),
            "QEMU failed to start: qemu: bad option"
        );
        let noisy = Ended {
            qemu_error: Some("qemu: warning"),
            ..ended(Some(2))
        };
        assert_eq!(
            noisy.classify().unwrap().1.unwrap(),
            "QEMU exited with status 2: qemu: warning"
        );
    }

    #[test]
    fn missing_qemu_is_one_clear_error() {
        let mut config = Config::new("/nonexistent/image", "/nonexistent/loader");
        config.qemu = Some(PathBuf::from("qemu-system-does-not-exist"));
        let err = run(&config).unwrap_err();
        assert_eq!(
            err.to_string(),
            "qemu-system-does-not-exist not found; install the qemu-system-x86 package"
        );
    }
}
