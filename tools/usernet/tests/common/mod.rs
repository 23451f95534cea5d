//! A "fake guest" for the tests: a second smoltcp interface (10.0.5.2/24,
//! default route via 10.0.5.1) whose device is a `UserNet`'s frame API.

#![allow(dead_code, reason = "each test binary uses a different part")]

use std::os::fd::RawFd;
use std::time::{Duration, Instant};

use hermit_usernet::{Config, UserNet};
use smoltcp::iface::{Config as IfaceConfig, Interface, SocketHandle, SocketSet};
use smoltcp::phy::{self, Device, DeviceCapabilities, Medium};
use smoltcp::socket::{icmp, tcp, udp};
use smoltcp::wire::{EthernetAddress, HardwareAddress, IpAddress, IpCidr, Ipv4Address};

/// The guest's MAC address in the tests.
pub const GUEST_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];
/// The gateway.
pub const GATEWAY: Ipv4Address = Ipv4Address::new(10, 0, 5, 1);
/// The DNS proxy.
pub const DNS: Ipv4Address = Ipv4Address::new(10, 0, 5, 3);

struct Dev<'a>(&'a UserNet);
struct Rx(Vec<u8>);
struct Tx<'a>(&'a UserNet);

impl phy::RxToken for Rx {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(&self.0)
    }
}

impl phy::TxToken for Tx<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let mut buf = vec![0u8; len];
        let r = f(&mut buf);
        self.0.send(&buf).expect("send never fails");
        r
    }
}

impl Device for Dev<'_> {
    type RxToken<'a>
        = Rx
    where
        Self: 'a;
    type TxToken<'a>
        = Tx<'a>
    where
        Self: 'a;

    fn receive(&mut self, _: smoltcp::time::Instant) -> Option<(Rx, Tx<'_>)> {
        let mut buf = vec![0u8; 1514];
        let n = self.0.recv(&mut buf).expect("frames fit the MTU")?;
        buf.truncate(n);
        Some((Rx(buf), Tx(self.0)))
    }

    fn transmit(&mut self, _: smoltcp::time::Instant) -> Option<Tx<'_>> {
        Some(Tx(self.0))
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ethernet;
        caps.max_transmission_unit = 1514;
        caps
    }
}

/// The fake guest: its interface, its sockets, and the backend under test.
pub struct FakeGuest {
    pub iface: Interface,
    pub sockets: SocketSet<'static>,
    pub net: UserNet,
}

fn ts() -> smoltcp::time::Instant {
    smoltcp::time::Instant::now()
}

impl FakeGuest {
    /// A guest on the default network with `config`'s forwards.
    pub fn new(config: Config) -> Self {
        init_log();
        let net = UserNet::new(config).expect("usernet starts");
        let mut icfg = IfaceConfig::new(HardwareAddress::Ethernet(EthernetAddress(GUEST_MAC)));
        icfg.random_seed = u64::from(std::process::id());
        let mut iface = Interface::new(icfg, &mut Dev(&net), ts());
        iface.update_ip_addrs(|a| {
            a.push(IpCidr::new(IpAddress::v4(10, 0, 5, 2), 24)).unwrap();
        });
        iface.routes_mut().add_default_ipv4_route(GATEWAY).unwrap();
        Self {
            iface,
            sockets: SocketSet::new(Vec::new()),
            net,
        }
    }

    /// One round of the guest's network stack.
    pub fn poll(&mut self) {
        self.iface
            .poll(ts(), &mut Dev(&self.net), &mut self.sockets);
    }

    /// Waits until the backend has a frame or the guest has a timer due (at most 10 ms).
    pub fn wait(&mut self) {
        let delay = self
            .iface
            .poll_delay(ts(), &self.sockets)
            .map_or(10, |d| d.total_millis().min(10));
        let mut pfd = libc::pollfd {
            fd: self.net.ready_fd() as RawFd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd, borrowed for the call.
        unsafe { libc::poll(&mut pfd, 1, delay as i32) };
    }

    /// Polls until `done` holds; false on timeout.
    pub fn run_until(
        &mut self,
        timeout: Duration,
        mut done: impl FnMut(&mut Self) -> bool,
    ) -> bool {
        let start = Instant::now();
        loop {
            self.poll();
            if done(self) {
                return true;
            }
            if start.elapsed() > timeout {
                return false;
            }
            self.wait();
        }
    }

    /// Runs the guest for `d`, ignoring what happens.
    pub fn run_for(&mut self, d: Duration) {
        let _ = self.run_until(d, |_| false);
    }

    /// A new TCP socket with 64 KiB buffers.
    pub fn tcp_socket(&mut self) -> SocketHandle {
        let mut s = tcp::Socket::new(
            tcp::SocketBuffer::new(vec![0; 65536]),
            tcp::SocketBuffer::new(vec![0; 65536]),
        );
        s.set_ack_delay(None);
        self.sockets.add(s)
    }

    /// Starts a TCP connection from local port `local` to `ip:port`.
    pub fn connect(&mut self, ip: Ipv4Address, port: u16, local: u16) -> SocketHandle {
        let h = self.tcp_socket();
        let s = self.sockets.get_mut::<tcp::Socket>(h);
        s.connect(self.iface.context(), (IpAddress::Ipv4(ip), port), local)
            .unwrap();
        h
    }

    pub fn tcp(&mut self, h: SocketHandle) -> &mut tcp::Socket<'static> {
        self.sockets.get_mut::<tcp::Socket>(h)
    }

    /// A UDP socket bound to `port`.
    pub fn udp_socket(&mut self, port: u16) -> SocketHandle {
        let meta = || vec![udp::PacketMetadata::EMPTY; 16];
        let mut s = udp::Socket::new(
            udp::PacketBuffer::new(meta(), vec![0; 65536]),
            udp::PacketBuffer::new(meta(), vec![0; 65536]),
        );
        s.bind(port).unwrap();
        self.sockets.add(s)
    }

    pub fn udp(&mut self, h: SocketHandle) -> &mut udp::Socket<'static> {
        self.sockets.get_mut::<udp::Socket>(h)
    }

    /// An ICMP socket for echo requests with identifier `ident`.
    pub fn icmp_socket(&mut self, ident: u16) -> SocketHandle {
        let meta = || vec![icmp::PacketMetadata::EMPTY; 8];
        let mut s = icmp::Socket::new(
            icmp::PacketBuffer::new(meta(), vec![0; 4096]),
            icmp::PacketBuffer::new(meta(), vec![0; 4096]),
        );
        s.bind(icmp::Endpoint::Ident(ident)).unwrap();
        self.sockets.add(s)
    }

    pub fn icmp(&mut self, h: SocketHandle) -> &mut icmp::Socket<'static> {
        self.sockets.get_mut::<icmp::Socket>(h)
    }
}

/// A simple 64-bit FNV-1a checksum for comparing streams.
pub fn fnv(mut h: u64, data: &[u8]) -> u64 {
    for b in data {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x100_0000_01b3);
    }
    h
}

/// The FNV offset basis.
pub const FNV0: u64 = 0xcbf2_9ce4_8422_2325;

/// Deterministic pseudo-random bytes (xorshift).
pub fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

struct StderrLog;

impl log::Log for StderrLog {
    fn enabled(&self, _: &log::Metadata) -> bool {
        true
    }
    fn log(&self, r: &log::Record) {
        if r.target().starts_with("smoltcp") && r.level() > log::Level::Info {
            return;
        }
        eprintln!("[{} {}] {}", r.level(), r.target(), r.args());
    }
    fn flush(&self) {}
}

/// Logs to stderr at the level in `USERNET_LOG` (e.g. `debug`), if set.
pub fn init_log() {
    if let Ok(level) = std::env::var("USERNET_LOG")
        && let Ok(level) = level.parse()
    {
        let _ = log::set_logger(&StderrLog);
        log::set_max_level(level);
    }
}

/// A 127.0.0.1 port that refuses connections for as long as the returned
/// socket lives (bound, never listening), so parallel tests cannot reuse it.
pub fn closed_port() -> (std::os::fd::OwnedFd, u16) {
    use std::os::fd::FromRawFd;
    // SAFETY: socket takes no pointers.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    assert!(fd >= 0);
    // SAFETY: `fd` is a new socket nobody else owns.
    let owned = unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) };
    // SAFETY: all-zero is a valid sockaddr_in.
    let mut sin: libc::sockaddr_in = unsafe { std::mem::zeroed() };
    sin.sin_family = libc::AF_INET as libc::sa_family_t;
    sin.sin_addr.s_addr = u32::from(std::net::Ipv4Addr::LOCALHOST).to_be();
    let mut len = size_of::<libc::sockaddr_in>() as libc::socklen_t;
    // SAFETY: `sin` is a valid sockaddr_in of `len` bytes for both calls.
    unsafe {
        assert_eq!(libc::bind(fd, (&raw const sin).cast(), len), 0);
        assert_eq!(libc::getsockname(fd, (&raw mut sin).cast(), &mut len), 0);
    }
    (owned, u16::from_be(sin.sin_port))
}
