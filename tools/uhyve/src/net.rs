//! The guest's network: what the NIC is connected to ([`Backend`]) and how
//! a VM gets one ([`NetConfig`]). The device itself is in
//! [`crate::virtio_net`], the tap backend in [`crate::tap`].

use std::fmt;
use std::os::fd::RawFd;

/// Where the NIC's frames go. Implemented by [`Tap`](crate::tap::Tap) and
/// by other crates (e.g. a user-mode network).
pub trait Backend: Send {
    /// Sends one ethernet frame to the network (drops it when the network
    /// is congested; returns `Err` only for fatal errors).
    fn send(&mut self, frame: &[u8]) -> std::io::Result<()>;
    /// Receives one frame if one is waiting (non-blocking).
    fn recv(&mut self, buf: &mut [u8]) -> std::io::Result<Option<usize>>;
    /// A file descriptor that polls readable when `recv` may have a frame.
    fn ready_fd(&self) -> RawFd;
    /// The IP MTU the device offers the guest (`VIRTIO_NET_F_MTU`), if the
    /// backend carries frames above the standard 1514 bytes; a guest that
    /// does not take it still gets at most 1514-byte frames for TCP, since
    /// it advertises the smaller segment size.
    fn mtu(&self) -> Option<u16> {
        None
    }
}

/// What the NIC is connected to.
pub enum NetBackend {
    /// A tap device of this name (created if it does not exist; needs
    /// `CAP_NET_ADMIN` for that).
    Tap(String),
    /// User-mode networking without root ([`hermit_usernet`]): the host
    /// is the gateway, guest connections leave through host sockets, and
    /// the configured forwards lead host ports into the guest. A missing
    /// `guest_mac` is the NIC's.
    User(hermit_usernet::Config),
    /// A backend supplied by the caller.
    Custom(Box<dyn Backend>),
}

impl Backend for hermit_usernet::UserNet {
    fn send(&mut self, frame: &[u8]) -> std::io::Result<()> {
        hermit_usernet::UserNet::send(self, frame)
    }

    fn recv(&mut self, buf: &mut [u8]) -> std::io::Result<Option<usize>> {
        hermit_usernet::UserNet::recv(self, buf)
    }

    fn ready_fd(&self) -> RawFd {
        hermit_usernet::UserNet::ready_fd(self)
    }

    fn mtu(&self) -> Option<u16> {
        Some(hermit_usernet::GUEST_MTU)
    }
}

impl fmt::Debug for NetBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Tap(name) => f.debug_tuple("Tap").field(name).finish(),
            Self::User(config) => f.debug_tuple("User").field(config).finish(),
            Self::Custom(_) => f.write_str("Custom(..)"),
        }
    }
}

/// A VM's network interface: a virtio-net PCI device at 00:01.0.
#[derive(Debug)]
pub struct NetConfig {
    /// Where the frames go.
    pub backend: NetBackend,
    /// The NIC's MAC address.
    pub mac: [u8; 6],
}

impl NetConfig {
    /// A NIC on `backend` with a fresh locally administered MAC address
    /// (see [`local_mac`]).
    pub fn new(backend: NetBackend) -> Self {
        Self {
            backend,
            mac: local_mac(),
        }
    }
}

/// The user-mode network with its defaults (guest 10.0.5.2/24, gateway
/// 10.0.5.1, DNS 10.0.5.3) and host `127.0.0.1:PORT` forwarded to the
/// guest's TCP `PORT` for each of `forwards`.
pub fn user_config(forwards: &[u16]) -> hermit_usernet::Config {
    hermit_usernet::Config {
        forwards: forwards
            .iter()
            .map(|&port| hermit_usernet::Forward {
                host: std::net::SocketAddr::from(([127, 0, 0, 1], port)),
                guest_port: port,
            })
            .collect(),
        ..hermit_usernet::Config::default()
    }
}

/// A locally administered unicast MAC address, `02:48:xx:xx:xx:xx`, the
/// last four bytes mixed from the process id and the time, so VMs started
/// side by side differ.
pub fn local_mac() -> [u8; 6] {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let mut x = nanos ^ (u64::from(std::process::id()) << 32);
    // splitmix64's finaliser: every input bit affects every output byte.
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^= x >> 31;
    let b = x.to_le_bytes();
    [0x02, 0x48, b[0], b[1], b[2], b[3]]
}

/// Parses `XX:XX:XX:XX:XX:XX` (hex, `:` or `-` separated).
pub fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let mut mac = [0u8; 6];
    let mut parts = s.split([':', '-']);
    for b in &mut mac {
        let p = parts.next()?;
        if p.len() != 2 {
            return None;
        }
        *b = u8::from_str_radix(p, 16).ok()?;
    }
    parts.next().is_none().then_some(mac)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macs() {
        assert_eq!(
            parse_mac("02:00:5e:10:AB:ff"),
            Some([2, 0, 0x5e, 0x10, 0xab, 0xff])
        );
        assert_eq!(
            parse_mac("02-00-5e-10-ab-ff"),
            Some([2, 0, 0x5e, 0x10, 0xab, 0xff])
        );
        for bad in [
            "",
            "02:00:5e:10:ab",
            "02:00:5e:10:ab:ff:00",
            "2:0:5e:10:ab:ff",
            "zz:00:5e:10:ab:ff",
        ] {
            assert_eq!(parse_mac(bad), None, "{bad}");
        }
        let m = local_mac();
        assert_eq!(m[0] & 0x03, 0x02, "locally administered unicast");
    }
}
