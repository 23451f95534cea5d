//! User-mode networking for uhyve: a NAT backend in the style of QEMU's
//! `-netdev user` (slirp) that needs no root and no tap device.
//!
//! The guest sees an Ethernet segment with a gateway (the host, default
//! 10.0.5.1) and a DNS proxy (10.0.5.3); it is 10.0.5.2/24. Frames go in with
//! [`UserNet::send`] and come out with [`UserNet::recv`]; [`UserNet::ready_fd`]
//! polls readable while frames wait. A worker thread terminates the guest's
//! TCP connections in a [`smoltcp`] interface (in "any IP" mode, so it answers
//! for every destination) and relays each one over an ordinary host socket;
//! UDP datagrams are translated to host `UdpSocket`s; port forwards accept on
//! the host and connect into the guest.
//!
//! What it is not: a router for other protocols. Only IPv4 TCP, UDP and ICMP
//! echo to the gateway/DNS addresses are handled; ICMP to other hosts, IPv6,
//! IP fragments of UDP and DHCP are dropped (the guest uses a static
//! address). Missing: DHCP, ICMP errors for unreachable UDP destinations,
//! keep-alive timeouts for TCP connections a guest abandons (bounded by
//! [`Config::max_connections`] instead).

#![deny(unsafe_code)]

mod frame;
mod queue;
#[allow(
    unsafe_code,
    reason = "eventfd, poll(2), non-blocking connect and SO_LINGER through libc"
)]
mod sys;
mod udp;
mod worker;

use std::io;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::os::fd::RawFd;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread::JoinHandle;
use std::time::Duration;

use queue::Shared;

/// Largest frame [`UserNet::send`] accepts; longer ones are dropped.
pub const MAX_FRAME: usize = 65_550;

/// The IP MTU of the guest's link: jumbo frames, which the NIC offers the
/// guest (uhyve's virtio-net `MTU` feature) so that a TCP segment carries
/// six times the payload of a 1500-byte one. TCP to a guest that keeps a
/// 1500-byte MTU still fits, since the guest's SYN says its segment size;
/// a UDP datagram larger than such a guest's buffers is lost at the NIC.
pub const GUEST_MTU: u16 = 9000;

/// An inbound port forward: connections accepted on `host` are relayed to
/// the guest's TCP port `guest_port` (uhyve's `HERMIT_APP_PORT`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Forward {
    /// Host address to listen on, e.g. `127.0.0.1:8080` (port 0 picks one; see
    /// [`UserNet::forward_addrs`]).
    pub host: SocketAddr,
    /// TCP port in the guest that each connection is opened to.
    pub guest_port: u16,
}

/// Addresses and limits of the virtual network.
#[derive(Debug, Clone)]
pub struct Config {
    /// The guest's address.
    pub guest: Ipv4Addr,
    /// The gateway, answered by the backend; connections to it reach the host's 127.0.0.1.
    pub gateway: Ipv4Addr,
    /// Netmask of the guest's subnet (contiguous).
    pub mask: Ipv4Addr,
    /// The DNS proxy address; UDP port 53 there is forwarded to `dns_upstream`.
    pub dns: Ipv4Addr,
    /// Where DNS queries go; `None` reads the first `nameserver` of `/etc/resolv.conf`.
    pub dns_upstream: Option<SocketAddr>,
    /// Inbound port forwards.
    pub forwards: Vec<Forward>,
    /// The guest's MAC address; frames from other sources are dropped. `None`
    /// learns it from the guest's frames (and ARP).
    pub guest_mac: Option<[u8; 6]>,
    /// The MAC address the gateway and DNS proxy answer with (unicast).
    pub gateway_mac: [u8; 6],
    /// Maximum number of TCP connections (pending, open and forwarded) and of
    /// UDP mappings, each.
    pub max_connections: usize,
    /// A UDP mapping unused for this long is removed.
    pub udp_timeout: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            guest: Ipv4Addr::new(10, 0, 5, 2),
            gateway: Ipv4Addr::new(10, 0, 5, 1),
            mask: Ipv4Addr::new(255, 255, 255, 0),
            dns: Ipv4Addr::new(10, 0, 5, 3),
            dns_upstream: None,
            forwards: Vec::new(),
            guest_mac: None,
            gateway_mac: [0x52, 0x55, 0x0a, 0x00, 0x05, 0x01],
            max_connections: 1024,
            udp_timeout: Duration::from_secs(60),
        }
    }
}

/// Why a [`UserNet`] could not be created.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A port forward's host address could not be bound.
    #[error("usernet: cannot listen on {addr} for a port forward: {source}")]
    Bind {
        /// The forward's host address.
        addr: SocketAddr,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The netmask is not a contiguous prefix.
    #[error("usernet: netmask {0} is not contiguous")]
    BadMask(Ipv4Addr),
    /// An address is outside the guest's subnet, or is its network or broadcast address.
    #[error("usernet: {what} address {addr} is not a host address in the guest's subnet")]
    OutsideSubnet {
        /// Which address (`guest`, `gateway` or `dns`).
        what: &'static str,
        /// The address.
        addr: Ipv4Addr,
    },
    /// Two of guest, gateway and DNS addresses are equal.
    #[error("usernet: guest, gateway and DNS addresses must differ")]
    SameAddress,
    /// The gateway MAC address is multicast or zero.
    #[error("usernet: gateway MAC address must be unicast")]
    BadMac,
    /// Creating an eventfd or the worker thread failed.
    #[error("usernet: cannot create {what}: {source}")]
    Os {
        /// What was being created.
        what: &'static str,
        /// The OS error.
        #[source]
        source: io::Error,
    },
}

/// A running user-mode network: a worker thread plus the frame queues to and
/// from the guest. Dropping it stops the worker and closes every socket.
#[derive(Debug)]
pub struct UserNet {
    shared: Arc<Shared>,
    worker: Option<JoinHandle<()>>,
    forward_addrs: Vec<SocketAddr>,
}

impl UserNet {
    /// Checks `config`, binds the forwards' host addresses and starts the worker.
    pub fn new(config: Config) -> Result<Self, Error> {
        let prefix = validate(&config)?;
        let mut listeners = Vec::with_capacity(config.forwards.len());
        let mut forward_addrs = Vec::with_capacity(config.forwards.len());
        for fwd in &config.forwards {
            let bind_err = |source| Error::Bind {
                addr: fwd.host,
                source,
            };
            let l = TcpListener::bind(fwd.host).map_err(bind_err)?;
            l.set_nonblocking(true).map_err(bind_err)?;
            forward_addrs.push(l.local_addr().map_err(bind_err)?);
            listeners.push((l, fwd.guest_port));
        }
        let dns_upstream = config.dns_upstream.or_else(|| {
            let found = resolv_conf_nameserver();
            if found.is_none() {
                log::warn!("usernet: no nameserver in /etc/resolv.conf; DNS proxy disabled");
            }
            found
        });
        let shared = Arc::new(Shared::new().map_err(|source| Error::Os {
            what: "an eventfd",
            source,
        })?);
        let worker = worker::Worker::new(config, prefix, dns_upstream, listeners, shared.clone());
        let handle = std::thread::Builder::new()
            .name("usernet".into())
            .spawn(move || worker.run())
            .map_err(|source| Error::Os {
                what: "the worker thread",
                source,
            })?;
        Ok(Self {
            shared,
            worker: Some(handle),
            forward_addrs,
        })
    }

    /// Guest → network: hands over one Ethernet frame. Never blocks; frames
    /// that are too long or arrive while the queue is full are dropped, like a
    /// NIC with a full ring.
    pub fn send(&self, frame: &[u8]) -> io::Result<()> {
        if frame.len() > MAX_FRAME || frame.len() < 14 {
            self.shared.dropped.fetch_add(1, Ordering::Relaxed);
            return Ok(());
        }
        self.shared.push_to_net(frame.to_vec());
        Ok(())
    }

    /// Network → guest: copies the next frame into `buf` and returns its
    /// length, or `None` when no frame waits. Never blocks. A frame longer
    /// than `buf` is dropped and reported as `InvalidInput`.
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<Option<usize>> {
        self.shared.pop_to_guest(buf)
    }

    /// An eventfd that polls readable while [`UserNet::recv`] has a frame.
    /// Level-triggered: it stays readable until the queue is emptied.
    pub fn ready_fd(&self) -> RawFd {
        self.shared.ready.raw()
    }

    /// The bound host addresses of the forwards, in [`Config::forwards`] order
    /// (useful with port 0).
    pub fn forward_addrs(&self) -> &[SocketAddr] {
        &self.forward_addrs
    }

    /// Frames dropped so far (full queues, oversized or unusable frames).
    pub fn dropped_frames(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }
}

impl Drop for UserNet {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        self.shared.wake.signal();
        if let Some(h) = self.worker.take()
            && h.join().is_err()
        {
            log::error!("usernet: worker thread panicked");
        }
    }
}

/// Checks the addresses and returns the prefix length.
fn validate(c: &Config) -> Result<u8, Error> {
    let mask = u32::from(c.mask);
    if mask.leading_ones() + mask.trailing_zeros() != 32 || mask.leading_ones() > 30 {
        return Err(Error::BadMask(c.mask));
    }
    let net = u32::from(c.guest) & mask;
    for (what, addr) in [("guest", c.guest), ("gateway", c.gateway), ("dns", c.dns)] {
        let a = u32::from(addr);
        if a & mask != net || a & !mask == 0 || a | mask == u32::MAX {
            return Err(Error::OutsideSubnet { what, addr });
        }
    }
    if c.guest == c.gateway || c.guest == c.dns || c.gateway == c.dns {
        return Err(Error::SameAddress);
    }
    if c.gateway_mac[0] & 1 != 0 || c.gateway_mac == [0; 6] {
        return Err(Error::BadMac);
    }
    // leading_ones() <= 30 was checked above.
    Ok(mask.leading_ones() as u8)
}

/// The first `nameserver` line of /etc/resolv.conf, port 53.
fn resolv_conf_nameserver() -> Option<SocketAddr> {
    let text = std::fs::read_to_string("/etc/resolv.conf").ok()?;
    parse_resolv_conf(&text)
}

fn parse_resolv_conf(text: &str) -> Option<SocketAddr> {
    text.lines().find_map(|line| {
        let mut words = line.split_whitespace();
        if words.next() != Some("nameserver") {
            return None;
        }
        let ip: std::net::IpAddr = words.next()?.split('%').next()?.parse().ok()?;
        Some(SocketAddr::new(ip, 53))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolv_conf_first_nameserver() {
        let text = "# comment\nsearch x\nnameserver 127.0.0.53\nnameserver 8.8.8.8\n";
        assert_eq!(
            parse_resolv_conf(text),
            Some("127.0.0.53:53".parse().unwrap())
        );
        assert_eq!(parse_resolv_conf("nameserver bogus\n"), None);
        assert_eq!(
            parse_resolv_conf("nameserver ::1\n"),
            Some("[::1]:53".parse().unwrap())
        );
    }

    #[test]
    fn config_validation() {
        assert_eq!(validate(&Config::default()).unwrap(), 24);
        let bad_mask = Config {
            mask: Ipv4Addr::new(255, 0, 255, 0),
            ..Config::default()
        };
        assert!(matches!(validate(&bad_mask), Err(Error::BadMask(_))));
        let outside = Config {
            dns: Ipv4Addr::new(10, 0, 6, 3),
            ..Config::default()
        };
        assert!(matches!(
            validate(&outside),
            Err(Error::OutsideSubnet { what: "dns", .. })
        ));
        let same = Config {
            dns: Ipv4Addr::new(10, 0, 5, 1),
            ..Config::default()
        };
        assert!(matches!(validate(&same), Err(Error::SameAddress)));
    }

    #[test]
    fn bind_failure_names_the_address() {
        let taken = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = taken.local_addr().unwrap();
        let err = UserNet::new(Config {
            forwards: vec![Forward {
                host: addr,
                guest_port: 80,
            }],
            ..Config::default()
        })
        .unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains(&addr.to_string()), "{msg}");
        assert!(!msg.contains('\n'));
    }
}
