//! TCP/IP for applications: one [`hermit_net::Stack`] (smoltcp) over the
//! network card the kernel was built for ([`crate::nic`]).
//!
//! The stack starts at the first call of [`stack`] (or of one of the
//! helpers below): it reads its address from `HERMIT_IP`, `HERMIT_GATEWAY`,
//! `HERMIT_MASK` and `HERMIT_DNS` (defaults 10.0.5.2, 10.0.5.1,
//! 255.255.255.0, no DNS; on `mmnif` the isle's address, see
//! [`crate::nic::default_network`]; `HERMIT_IP=dhcp` asks DHCPv4 with the
//! `dhcpv4` feature), opens the card, registers the card's interrupt, and starts one
//! kernel thread that runs smoltcp's timers. Blocked socket calls sleep on a
//! futex that the card's interrupt and every socket state change wake: an
//! idle network costs no CPU.
//!
//! The socket types are [`hermit_net`]'s; their methods take `&self`, report
//! errors as [`Errno`] (Linux numbers) and close on drop.

use alloc::boxed::Box;
use alloc::sync::Arc;
use core::sync::atomic::AtomicU32;
use core::time::Duration;

pub use core::net::{Ipv4Addr, SocketAddrV4};
pub use hermit_interface::errno::Errno;
#[cfg(feature = "udp")]
pub use hermit_net::UdpSocket;
pub use hermit_net::{Config, ConfigError, PollEntry, PollEvents, SocketId, Stack};
#[cfg(feature = "tcp")]
pub use hermit_net::{Shutdown, TcpListener, TcpStream};

/// Backlog of [`listen`]: connections accepted by the stack before the
/// application calls `accept` (each is a listening smoltcp socket with its
/// buffers allocated and zeroed up front, 768 KiB by default, so a large
/// backlog makes `listen` slow where kernel code is emulated; use
/// [`Stack::tcp_listen`] to choose another). Further SYNs are dropped and
/// retried by the client, as on Linux with a full accept queue.
pub const DEFAULT_BACKLOG: usize = 8;

/// The kernel side of the stack: clock, futex sleep and wake-up, randomness.
struct KernelPlatform;

impl hermit_net::Platform for KernelPlatform {
    fn now_micros(&self) -> u64 {
        crate::time::monotonic_ns() / 1000
    }

    fn wait(&self, counter: &AtomicU32, seen: u32, deadline: Option<u64>) {
        let deadline_ns = deadline.map(|us| us.saturating_mul(1000));
        let _ = crate::sync::futex::wait(counter, seen, deadline_ns);
    }

    fn wake_all(&self, counter: &AtomicU32) {
        crate::sync::futex::wake(counter, u32::MAX);
    }

    fn random_u64(&self) -> u64 {
        crate::syscalls::entropy::random_u64()
    }

    fn relax(&self) {
        crate::sched::yield_now();
    }
}

/// The card, as the stack sees it.
struct Card(crate::nic::Device);

impl hermit_net::Nic for Card {
    fn mac(&self) -> [u8; 6] {
        self.0.mac()
    }

    fn receive(&mut self, f: &mut dyn FnMut(&[u8])) -> bool {
        self.0.receive(f)
    }

    fn mtu(&self) -> usize {
        self.0.mtu()
    }

    fn transmit(&mut self, len: usize, f: &mut dyn FnMut(&mut [u8])) -> Result<(), Errno> {
        self.0.transmit(len, f)
    }
}

static STACK: spin::Once<Result<Stack, Errno>> = spin::Once::new();

/// How long an exiting application's TCP connections may take to deliver
/// what it wrote.
#[cfg(feature = "tcp")]
const EXIT_FLUSH: core::time::Duration = core::time::Duration::from_secs(1);

/// Lets TCP connections deliver what the application wrote before the VM
/// ends, as Linux keeps a process's sockets sending after it exits (see
/// `Stack::flush_for_exit`); at most [`EXIT_FLUSH`]. Nothing to do if the
/// application never used the network.
#[cfg(feature = "tcp")]
pub(crate) fn flush_at_exit() {
    if let Some(Ok(stack)) = STACK.get() {
        let left = stack.flush_for_exit(EXIT_FLUSH);
        if left > 0 {
            log::warn!("net: {left} connection(s) had undelivered data at exit");
        }
    }
}

/// The network stack, started at the first call. Fails with `ENODEV` when
/// there is no usable card and `EINVAL` when a `HERMIT_*` address variable
/// is malformed (the reason is printed once on stderr).
pub fn stack() -> Result<&'static Stack, Errno> {
    STACK.call_once(start).as_ref().map_err(|e| *e)
}

fn start() -> Result<Stack, Errno> {
    let mut base = Config::default();
    if let Some(net) = crate::nic::default_network() {
        base.address = net.address;
        base.prefix_len = net.prefix_len;
        base.gateway = Some(net.gateway);
    }
    let get = |name: &str| crate::env::var(name).map(Into::into);
    let config = Config::from_env_over(base, get).map_err(|e| {
        crate::eprintln!("hermit: network: {e}");
        Errno::EINVAL
    })?;
    let device = crate::nic::open().map_err(|e| {
        crate::eprintln!("hermit: network: {e}");
        Errno::ENODEV
    })?;
    log::info!(
        "network: {} card, MAC {:02x?}, MTU {}",
        device.model(),
        device.mac(),
        device.mtu()
    );
    let stack = Stack::new(Box::new(Card(device)), Arc::new(KernelPlatform), config);
    crate::nic::set_irq_hook(on_interrupt);
    let timers = stack.clone();
    crate::thread::Builder::new()
        .spawn(move || {
            loop {
                timers.poll_wait(None);
            }
        })
        .map_err(|_| Errno::ENOMEM)?;
    Ok(stack)
}

/// The card's interrupt: wake whoever waits for the network.
fn on_interrupt() {
    if let Some(Ok(stack)) = STACK.get() {
        stack.notify_irq();
    }
}

/// Listens for TCP connections on `port` (all addresses), with
/// [`DEFAULT_BACKLOG`].
#[cfg(feature = "tcp")]
pub fn listen(port: u16) -> Result<TcpListener, Errno> {
    stack()?.tcp_listen(port, DEFAULT_BACKLOG)
}

/// Connects to `addr`, waiting at most `timeout` (`None`: the stack's
/// default of 75 s).
#[cfg(feature = "tcp")]
pub fn connect(addr: SocketAddrV4, timeout: Option<Duration>) -> Result<TcpStream, Errno> {
    stack()?.tcp_connect(addr, timeout)
}

/// A UDP socket on `port` (0: an ephemeral port).
#[cfg(feature = "udp")]
pub fn bind_udp(port: u16) -> Result<UdpSocket, Errno> {
    stack()?.udp_bind(port)
}

/// Resolves `name` to IPv4 addresses through the configured DNS servers.
#[cfg(feature = "dns")]
pub fn resolve(name: &str) -> Result<alloc::vec::Vec<Ipv4Addr>, Errno> {
    stack()?.resolve(name)
}

/// Waits until one of `fds` is ready or `timeout` passes, like `poll(2)`;
/// returns how many entries have events.
pub fn poll(fds: &mut [PollEntry], timeout: Option<Duration>) -> Result<usize, Errno> {
    stack()?.poll_sockets(fds, timeout)
}

/// The interface's IPv4 address, once configured.
pub fn local_addr() -> Option<Ipv4Addr> {
    STACK
        .get()
        .and_then(|s| s.as_ref().ok())
        .and_then(Stack::local_addr)
}
