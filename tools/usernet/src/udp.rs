//! UDP NAT: one connected host `UdpSocket` per (guest source port, guest-visible
//! destination); replies come back from that destination. Idle mappings expire.

use std::collections::HashMap;
use std::io;
use std::net::{SocketAddr, SocketAddrV4, UdpSocket};
use std::time::{Duration, Instant};

/// (guest source port, destination as the guest addressed it).
pub(crate) type UdpKey = (u16, SocketAddrV4);

#[derive(Debug)]
pub(crate) struct Mapping {
    pub(crate) sock: UdpSocket,
    last_used: Instant,
}

/// The table of live mappings.
#[derive(Debug)]
pub(crate) struct UdpNat {
    pub(crate) maps: HashMap<UdpKey, Mapping>,
    max: usize,
    timeout: Duration,
}

impl UdpNat {
    pub(crate) fn new(max: usize, timeout: Duration) -> Self {
        Self {
            maps: HashMap::new(),
            max,
            timeout,
        }
    }

    /// Sends `payload` for the guest to `host`, creating the mapping on first use.
    pub(crate) fn send(
        &mut self,
        key: UdpKey,
        host: SocketAddr,
        payload: &[u8],
        now: Instant,
    ) -> io::Result<()> {
        if !self.maps.contains_key(&key) {
            if self.maps.len() >= self.max {
                self.expire(now);
                if self.maps.len() >= self.max {
                    return Err(io::Error::other("too many UDP mappings"));
                }
            }
            let bind: SocketAddr = match host {
                SocketAddr::V4(_) => (std::net::Ipv4Addr::UNSPECIFIED, 0).into(),
                SocketAddr::V6(_) => (std::net::Ipv6Addr::UNSPECIFIED, 0).into(),
            };
            let sock = UdpSocket::bind(bind)?;
            sock.set_nonblocking(true)?;
            sock.connect(host)?;
            self.maps.insert(
                key,
                Mapping {
                    sock,
                    last_used: now,
                },
            );
        }
        let Some(m) = self.maps.get_mut(&key) else {
            return Ok(());
        };
        m.last_used = now;
        match m.sock.send(payload) {
            Ok(_) => Ok(()),
            // A full socket buffer drops the datagram, as a router would.
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Notes traffic on a mapping.
    pub(crate) fn touch(&mut self, key: &UdpKey, now: Instant) {
        if let Some(m) = self.maps.get_mut(key) {
            m.last_used = now;
        }
    }

    /// Removes mappings idle for longer than the timeout.
    pub(crate) fn expire(&mut self, now: Instant) {
        let timeout = self.timeout;
        self.maps
            .retain(|_, m| now.saturating_duration_since(m.last_used) < timeout);
    }
}
