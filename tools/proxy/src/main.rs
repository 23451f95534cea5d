//! `proxy IMAGE [ARGS...]`: runs a hermit image like a Linux program.
//!
//! The image's stdout and stderr appear on the proxy's, and the proxy exits
//! with the application's status. Configuration comes from `HERMIT_*`
//! variables (see `--help`); the proxy's own errors print one line and exit
//! with status 125.
//!
//! `HERMIT_CPUS` is a count (`4`) or, as in the original HermitCore, a list
//! of host cores (`3-5`, `1,3`, `0-1,4`): the VM gets one CPU per listed
//! core and uhyve pins CPU `i`'s thread to the `i`-th core (cores that do
//! not exist are skipped with a warning). Under QEMU only the count is used
//! (`-smp`); its threads are not pinned.
//!
//! `HERMIT_MOUNT="HOST:GUEST[,HOST:GUEST...]"` maps host directories into
//! the guest: uhyve's `--mount`, and under QEMU the proxy serves them (and
//! stdin) itself over a virtio console.
//!
//! An image built with a network card (hermit feature `rtl8139` or
//! `virtio-net`) says so in an ELF note, and the proxy attaches that card on
//! user-mode networking (guest 10.0.5.2, gateway 10.0.5.1 = the host's
//! 127.0.0.1), with `HERMIT_APP_PORT` forwards: under QEMU its `-netdev
//! user` (plus `HERMIT_CAPTURE_NET` and `HERMIT_MONITOR`), under uhyve
//! `hermit-usernet`, or the tap device `HERMIT_NETIF` (root).
//!
//! `HERMIT_ISLE=N` (or `uhyve:N`) runs the image as multi-kernel isle N
//! under uhyve (its `--isle`): it shares the isles' memory region and
//! doorbells in `HERMIT_ISLE_DIR` (default `/dev/shm/hermit-isles-<uid>`),
//! creating a region of `HERMIT_ISLE_SHM` bytes if it is the first isle;
//! its kernel log goes to `isleN/log` there (see the `isles` command).
//! QEMU isles (`qemu:N`) are not wired yet.

mod config;

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use config::{Config, Isle};

const USAGE: &str = "\
usage: proxy IMAGE [ARGS...]

Runs a hermit unikernel image like a Linux program: the application's output
appears here and its exit status becomes the proxy's.

Environment:
  HERMIT_ISLE=uhyve|qemu  hypervisor (default uhyve)
  HERMIT_ISLE=N|uhyve:N   run as multi-kernel isle N (0-7) under uhyve,
                          sharing a memory region and doorbells with the
                          other isles; kernel log in HERMIT_ISLE_DIR/isleN/log
  HERMIT_ISLE_DIR=DIR     isles: their directory (default
                          /dev/shm/hermit-isles-<uid>)
  HERMIT_ISLE_SHM=SIZE    isles: size of the shared region when this isle
                          starts a session, 9M to 512M (default 64M)
  HERMIT_CPUS=N|LIST      number of CPUs (default 1), or a list of host cores
                          (3-5, 1,3, 0-1,4): one CPU per core, uhyve pins CPU i
                          to the i-th core (QEMU takes only the count)
  HERMIT_MEM=SIZE         guest memory, e.g. 512M or 2G (default 2G)
  HERMIT_VERBOSE=1        print the kernel log when the application ends
  HERMIT_LOG_LEVEL=LEVEL  kernel log level: off|error|warn|info|debug|trace
  HERMIT_MOUNT=HOST:GUEST[,HOST:GUEST...]
                          map existing host directories at absolute guest
                          paths; the guest reaches nothing outside them
  HERMIT_KVM=0            QEMU: use TCG instead of KVM
  HERMIT_DEBUG=1          QEMU: wait for gdb on port 1234
  HERMIT_LOADER=PATH      QEMU: the pvh-loader image (found next to the proxy by default)
  HERMIT_APP_PORT=P[,P...] images with a network card: forward host
                          127.0.0.1:P to the guest's TCP port P
  HERMIT_PROFILE=FILE     uhyve: sample the guest every 1 ms and write a flat
                          profile by function to FILE
  HERMIT_NETIF=NAME       uhyve: plug the card into host tap device NAME
                          instead of user-mode networking (needs root)
  HERMIT_CAPTURE_NET=1    QEMU: write the guest's frames to ./qemu-vlan0.pcap
  HERMIT_MONITOR=1        QEMU: monitor on telnet 127.0.0.1:HERMIT_PORT+1
  HERMIT_PORT=N           base TCP port (default 18766)
";

/// Exit status for the proxy's own errors (bad configuration, missing file).
const PROXY_ERROR: u8 = 125;

fn main() -> ExitCode {
    let mut argv = std::env::args_os().skip(1);
    let Some(image) = argv.next() else {
        eprint!("{USAGE}");
        return ExitCode::from(PROXY_ERROR);
    };
    if image == "--help" || image == "-h" {
        print!("{USAGE}");
        return ExitCode::SUCCESS;
    }
    match run(PathBuf::from(image), argv.collect()) {
        Ok(status) => ExitCode::from(status as u8),
        Err(message) => {
            eprintln!("proxy: {message}");
            ExitCode::from(PROXY_ERROR)
        }
    }
}

/// The host end of the guest's file-system stream under QEMU: the same
/// server uhyve uses, fed from the stream's owned buffers.
fn file_service(
    mounts: Vec<hermit_hostfs::Mount>,
) -> Result<hermit_qemu::FileService, hermit_hostfs::MountError> {
    use hermit_interface::fs::Op;
    let server = hermit_hostfs::Server::new(mounts)?;
    Ok(hermit_qemu::FileService(std::sync::Arc::new(
        move |req: &hermit_qemu::stream::Request<'_>, out: &mut Vec<u8>| {
            let call = &req.call;
            // `serve` bounds `buf.len` by `MAX_DATA`.
            let data = match Op::from_raw(call.op) {
                Some(Op::Write | Op::Pwrite) => req.input.to_vec(),
                _ => vec![0; call.buf.len as usize],
            };
            let mut bufs = hermit_hostfs::VecBuffers {
                path: req.path.to_vec(),
                path2: req.path2.to_vec(),
                data,
            };
            let result = server.call(call, &mut bufs);
            let stored = hermit_hostfs::stored_len(call, result) as usize;
            bufs.data.truncate(stored);
            *out = bufs.data;
            result
        },
    )))
}

/// The network card the image's `.note.hermit` asks for, with the
/// configured forwards, capture and monitor; `None` for an image without
/// a NIC note (unreadable or malformed images are reported by the runner).
fn network(
    image: &std::path::Path,
    config: &Config,
) -> Result<Option<hermit_qemu::NetConfig>, String> {
    let Some(model) = nic_model(image) else {
        return Ok(None);
    };
    let model = model.as_str();
    let model = hermit_qemu::NicModel::from_note(model).ok_or_else(|| {
        format!(
            "{} asks for a network card of model {model:?}, which is not supported (rtl8139, virtio-net)",
            image.display()
        )
    })?;
    let mut net = hermit_qemu::NetConfig::new(model);
    net.forwards = config.app_ports.clone();
    net.capture = config.capture_net.then(|| PathBuf::from("qemu-vlan0.pcap"));
    net.monitor_port = config.monitor_port;
    Ok(Some(net))
}

/// The card model the image's `.note.hermit` asks for, if any (unreadable
/// or malformed images are reported by the runner).
fn nic_model(image: &std::path::Path) -> Option<String> {
    let bytes = std::fs::read(image).ok()?;
    hermit_loader::Image::parse(&bytes)
        .ok()?
        .nic_model()
        .map(str::to_owned)
}

/// uhyve's card for an image whose note asks for one: virtio-net on the
/// tap device `HERMIT_NETIF`, or on user-mode networking with the
/// `HERMIT_APP_PORT` forwards.
fn uhyve_network(
    image: &std::path::Path,
    config: &Config,
) -> Result<Option<uhyve::NetConfig>, String> {
    let Some(model) = nic_model(image) else {
        if config.netif.is_some() || !config.app_ports.is_empty() {
            eprintln!(
                "proxy: warning: {} has no network card (build it with the hermit feature virtio-net); HERMIT_NETIF/HERMIT_APP_PORT ignored",
                image.display()
            );
        }
        return Ok(None);
    };
    if model != "virtio-net" {
        return Err(format!(
            "{} is built for a {model} card, but uhyve offers virtio-net (use the hermit feature virtio-net, or HERMIT_ISLE=qemu)",
            image.display()
        ));
    }
    let backend = match &config.netif {
        Some(name) => uhyve::NetBackend::Tap(name.clone()),
        None => uhyve::NetBackend::User(uhyve::net::user_config(&config.app_ports)),
    };
    Ok(Some(uhyve::NetConfig::new(backend)))
}

/// The DNS relay of both user-mode networks (QEMU's and `hermit-usernet`).
const USER_NET_DNS: &str = "10.0.5.3";

/// Tells the guest's stack where the user-mode network's DNS relay is,
/// unless the user chose a server.
fn add_user_net_dns(env: &mut Vec<String>) {
    if !env.iter().any(|e| e.starts_with("HERMIT_DNS=")) {
        env.push(format!("HERMIT_DNS={USER_NET_DNS}"));
    }
}

fn run(image: PathBuf, rest: Vec<std::ffi::OsString>) -> Result<i32, String> {
    let config = Config::from_lookup(|k| std::env::var(k).ok()).map_err(|e| e.to_string())?;
    let mut args = vec![image.to_string_lossy().into_owned()];
    for a in rest {
        args.push(
            a.into_string()
                .map_err(|a| format!("argument {a:?} is not valid UTF-8"))?,
        );
    }
    let mut env = uhyve::host_env();

    let (status, kernel_log, abnormal) = match config.isle {
        Isle::Uhyve => {
            let net = uhyve_network(&image, &config)?;
            if net
                .as_ref()
                .is_some_and(|n| matches!(n.backend, uhyve::NetBackend::User(_)))
            {
                add_user_net_dns(&mut env);
            }
            let vm = uhyve::Config {
                image,
                args,
                env,
                mem_size: config.mem,
                cpus: config.cpus,
                pin: config.pin.clone(),
                cmdline: config.cmdline(),
                mounts: config.mounts.clone(),
                profile: config.profile.clone(),
                isle: config.isle_member.clone(),
            };
            let outcome = uhyve::run_with_net(&vm, net).map_err(|e| e.to_string())?;
            (outcome.status, outcome.kernel_log, outcome.abnormal)
        }
        Isle::Qemu => {
            let loader = hermit_qemu::find_loader(None).map_err(|e| e.to_string())?;
            // A QEMU isle joins the isle directory like a uhyve isle (its
            // number, the session's region, its log file) and gets the
            // region as ivshmem; it has no doorbells, its waiters poll.
            let member = match &config.isle_member {
                None => None,
                Some(m) => Some(
                    hermit_isles::IsleDir::new(&m.dir)
                        .join(m.index, m.size)
                        .map_err(|e| e.to_string())?,
                ),
            };
            let isle = member.as_ref().map(|m| hermit_qemu::IsleConfig {
                index: m.index(),
                region: m.dir().region_path(),
                size: m.region_len(),
            });
            let net = network(&image, &config)?;
            if net.is_some() {
                add_user_net_dns(&mut env);
            }
            let vm = hermit_qemu::Config {
                image,
                loader,
                args,
                env,
                mem_size: config.mem,
                cpus: config.cpus,
                cmdline: config.cmdline(),
                kvm: config.kvm,
                debug: config.debug,
                debug_exit: true,
                qemu: None,
                files: Some(file_service(config.mounts.clone()).map_err(|e| e.to_string())?),
                net,
                isle,
            };
            let outcome = hermit_qemu::run(&vm).map_err(|e| e.to_string())?;
            if let Some(m) = &member {
                let mut log = m.log_file();
                let _ = log.write_all(&outcome.kernel_log);
            }
            (outcome.status, outcome.kernel_log, outcome.abnormal)
        }
    };
    let _ = std::io::stdout().flush();
    if config.verbose {
        let mut err = std::io::stderr().lock();
        let _ = writeln!(err, "--- kernel log ({}) ---", config.isle);
        let _ = err.write_all(&kernel_log);
        if !kernel_log.ends_with(b"\n") && !kernel_log.is_empty() {
            let _ = writeln!(err);
        }
        let _ = writeln!(err, "--- end of kernel log ---");
    }
    if let Some(reason) = abnormal {
        eprintln!("proxy: the VM ended abnormally: {reason}");
    }
    Ok(status)
}
