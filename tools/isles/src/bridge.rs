//! The Linux end of mmnif (`isles mmnif`): a tap device bridged to the
//! isles' mmnif rings, so Linux programs reach isles by IP.
//!
//! The tap (default name `mmnif`) gets node [`HOST_NODE`]'s MAC
//! ([`node_mac`]), the address [`host_ip`]`/`[`PREFIX_LEN`] and is set
//! up with `ip`; this process joins the isle directory as the host's member
//! ([`IsleDir::join_host`]: `host/lock`, so no isle starts a new session
//! under a running bridge, and `host/doorbell`). Frames from the tap go to
//! [`MmnifNic::transmit`] (unicast to the node the destination MAC names,
//! broadcasts to every isle); frames from the rings go to the tap. Between
//! bursts it sleeps in `poll(2)` on the tap and the doorbell, at most
//! [`POLL_TIMEOUT`], so a lost ring costs little. It ends on `SIGINT` or
//! `SIGTERM` ([`stop_on_signals`]); a tap it created disappears with it.
//!
//! Not here: IPv6 addresses on the tap, more than one bridge per isle
//! directory (the second is refused), QEMU isles without doorbells (they
//! poll on their side; the bridge needs no change).

use std::os::fd::{AsFd as _, AsRawFd as _};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use hermit_drivers::mmnif::{Config, MmnifError, MmnifNic, MmnifRing, node_mac};
use hermit_interface::isle::{MMNIF_OFFSET, MMNIF_SIZE, PREFIX_LEN, host_ip};
use hermit_ircce::{Notify, RegionError, SubRegion};
use hermit_tap::{Tap, TapError};

use crate::{Error, HOST_NODE, IsleDir, MAX_ISLES, Ringer};

/// The tap's default name.
pub const DEFAULT_NAME: &str = "mmnif";
/// Longest sleep between looks at the rings when no doorbell rings.
pub const POLL_TIMEOUT: Duration = Duration::from_millis(100);
/// The ring layout every node uses (isles and the host).
pub const CONFIG: Config = Config::new(MAX_ISLES + 1);
/// Frames taken from the tap before the rings are looked at again.
const BURST: usize = 64;

/// Why the bridge could not start or stopped early. One line each.
#[derive(Debug, thiserror::Error)]
pub enum BridgeError {
    /// The tap could not be opened (no root, no `/dev/net/tun`, bad name).
    #[error("{0} (the mmnif bridge needs root and /dev/net/tun)")]
    Tap(#[from] TapError),
    /// `ip` failed to configure the tap.
    #[error("`ip {command}` failed: {message}")]
    Ip {
        /// The arguments.
        command: String,
        /// Its error output, or why it could not run.
        message: String,
    },
    /// Joining the isle directory failed.
    #[error(transparent)]
    Isles(#[from] Error),
    /// The region has no room for the mmnif part.
    #[error("the shared region has no mmnif part: {0}")]
    Region(#[from] RegionError),
    /// The rings refused the host (another layout in the region).
    #[error(transparent)]
    Ring(#[from] MmnifError),
    /// Reading or writing the tap, or waiting, failed.
    #[error("mmnif bridge: {what}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The host error.
        source: std::io::Error,
    },
}

/// What the bridge moved, reported when it stops.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Frames from the tap handed to the rings.
    pub to_isles: u64,
    /// Frames from the rings written to the tap.
    pub to_linux: u64,
    /// Frames the rings dropped (full ring, unknown MAC) or refused.
    pub dropped: u64,
}

/// Rings isles' doorbells from the host.
struct HostNotify(Ringer);

impl Notify for HostNotify {
    fn ring(&self, target: usize) {
        if let Ok(node) = u32::try_from(target) {
            self.0.ring(node);
        }
    }

    fn wait(&self, _me: usize, timeout: Duration) {
        // The bridge waits in `poll(2)`; this is only a fallback.
        std::thread::sleep(timeout.min(POLL_TIMEOUT));
    }
}

/// Set by [`stop_on_signals`]' handler.
static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_signal: libc::c_int) {
    STOP.store(true, Ordering::Release);
}

/// Installs `SIGINT` and `SIGTERM` handlers (without `SA_RESTART`, so a
/// `poll` in progress returns) and returns the flag they set.
pub fn stop_on_signals() -> Result<&'static AtomicBool, BridgeError> {
    for signal in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: an all-zero sigaction is valid (no flags, empty mask);
        // the handler only stores to an atomic, which is async-signal-safe,
        // and it lives for the whole program.
        let rc = unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
            libc::sigemptyset(&mut action.sa_mask);
            libc::sigaction(signal, &action, std::ptr::null_mut())
        };
        if rc != 0 {
            return Err(BridgeError::Io {
                what: "installing a signal handler",
                source: std::io::Error::last_os_error(),
            });
        }
    }
    Ok(&STOP)
}

/// `ip ARGS`, failing with its error output.
fn ip(args: &[&str]) -> Result<(), BridgeError> {
    let command = args.join(" ");
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| BridgeError::Ip {
            command: command.clone(),
            message: e.to_string(),
        })?;
    if out.status.success() {
        return Ok(());
    }
    let message = String::from_utf8_lossy(&out.stderr)
        .trim()
        .replace('\n', "; ");
    Err(BridgeError::Ip { command, message })
}

/// The host's MAC address on mmnif, as `ip` writes it.
pub fn host_mac_text() -> String {
    node_mac(HOST_NODE)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// The host's address with prefix, e.g. `192.168.28.1/24`.
pub fn host_cidr() -> String {
    let [a, b, c, d] = host_ip();
    format!("{a}.{b}.{c}.{d}/{PREFIX_LEN}")
}

/// Gives tap `name` the host's MAC and address and brings it up.
fn configure(name: &str) -> Result<(), BridgeError> {
    ip(&["link", "set", "dev", name, "address", &host_mac_text()])?;
    ip(&["addr", "replace", &host_cidr(), "dev", name])?;
    ip(&["link", "set", "dev", name, "up"])
}

/// Bridges tap `name` to the mmnif rings of the isles in `dir` until
/// `stop` is set; `ready` is called once the bridge forwards (with the
/// tap's name). Returns what it moved.
pub fn run(
    dir: &IsleDir,
    name: &str,
    stop: &AtomicBool,
    ready: impl FnOnce(&str),
) -> Result<Stats, BridgeError> {
    let tap = Tap::open(name)?;
    configure(name)?;
    let member = dir.join_host(None)?;
    let mapping = member.map()?;
    let window = SubRegion::new(mapping.region(), MMNIF_OFFSET as usize, MMNIF_SIZE as usize)?;
    let ring = MmnifRing::new(
        window,
        HostNotify(dir.ringer()?),
        HOST_NODE as usize,
        CONFIG,
    )?;
    let mut nic = MmnifNic::new(ring, CONFIG.isles as usize);
    let bell = member.doorbell()?;
    ready(tap.name());
    forward(&tap, &mut nic, &bell, stop)
}

/// The forwarding loop.
fn forward<R: hermit_ircce::Region, N: Notify>(
    tap: &Tap,
    nic: &mut MmnifNic<R, N>,
    bell: &crate::Doorbell,
    stop: &AtomicBool,
) -> Result<Stats, BridgeError> {
    use hermit_drivers::nic::Nic as _;
    let io = |what| move |source| BridgeError::Io { what, source };
    let mut stats = Stats::default();
    let mut frame = vec![0u8; hermit_drivers::nic::MAX_FRAME];
    let mut refused = 0;
    while !stop.load(Ordering::Acquire) {
        let mut busy = false;
        let mut failed = None;
        while nic.receive(&mut |f| {
            if let Err(e) = tap.send(f) {
                failed = Some(e);
            }
        }) {
            busy = true;
            stats.to_linux += 1;
            if failed.is_some() {
                break;
            }
        }
        if let Some(e) = failed {
            return Err(io("writing to the tap")(e));
        }
        for _ in 0..BURST {
            let Some(len) = tap.recv(&mut frame).map_err(io("reading the tap"))? else {
                break;
            };
            busy = true;
            match nic.transmit(len, &mut |out| out.copy_from_slice(&frame[..len])) {
                Ok(()) => stats.to_isles += 1,
                Err(_) => refused += 1,
            }
        }
        if busy {
            continue;
        }
        // The rings are empty and the host's `sleeping` flag is up
        // (`receive` raised it): producers ring from now on.
        let mut fds = [
            libc::pollfd {
                fd: tap.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: bell.as_fd().as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        // SAFETY: `fds` is a valid array of two pollfds for the call, both
        // fds open (borrowed from `tap` and `bell`).
        let rc = unsafe { libc::poll(fds.as_mut_ptr(), 2, POLL_TIMEOUT.as_millis() as i32) };
        if rc < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() != std::io::ErrorKind::Interrupted {
                return Err(io("waiting")(e));
            }
        }
        bell.drain();
    }
    stats.dropped = nic.dropped() + refused;
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_addresses() {
        assert_eq!(host_mac_text(), "02:48:52:4d:4e:08");
        assert_eq!(host_cidr(), "192.168.28.1/24");
    }
}
