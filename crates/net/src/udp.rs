//! UDP sockets.

use alloc::sync::Arc;
use alloc::vec;
use core::net::SocketAddrV4;
use core::time::Duration;

use smoltcp::iface::SocketHandle;
use smoltcp::socket::udp;
use smoltcp::wire::{IpAddress, IpEndpoint};

use crate::Errno;
use crate::poll::PollEvents;
use crate::stack::{Entry, Inner, Proto, Shared, SocketId, Stack, Try, endpoint_v4};

pub(crate) struct UdpEntry {
    handle: SocketHandle,
    port: u16,
    peer: Option<SocketAddrV4>,
    nonblocking: bool,
    read_timeout: Option<Duration>,
    write_timeout: Option<Duration>,
}

fn entry(inner: &mut Inner, id: SocketId) -> Result<&mut UdpEntry, Errno> {
    match inner.entry_mut(id) {
        Some(Entry::Udp(e)) => Ok(e),
        _ => Err(Errno::EBADF),
    }
}

impl Stack {
    /// A UDP socket bound to `port` (0: a random ephemeral port);
    /// EADDRINUSE if taken.
    pub fn udp_bind(&self, port: u16) -> Result<UdpSocket, Errno> {
        let platform = self.shared.platform.clone();
        let (id, _) = self.shared.with(|inner, _| {
            let result = (|| {
                inner.check_room(1)?;
                let port = inner.claim_port(Proto::Udp, port, &*platform)?;
                let packets = inner.config.udp_packets;
                let bytes = inner.config.udp_buffer;
                let buffer = || {
                    udp::PacketBuffer::new(
                        vec![udp::PacketMetadata::EMPTY; packets],
                        vec![0; bytes],
                    )
                };
                let mut s = udp::Socket::new(buffer(), buffer());
                if s.bind(port).is_err() {
                    inner.release_port(Proto::Udp, port);
                    return Err(Errno::EINVAL);
                }
                let handle = inner.add_socket(s);
                Ok(inner.insert(Entry::Udp(UdpEntry {
                    handle,
                    port,
                    peer: None,
                    nonblocking: false,
                    read_timeout: None,
                    write_timeout: None,
                })))
            })();
            (result, false)
        });
        Ok(UdpSocket {
            shared: self.shared.clone(),
            id: id?,
        })
    }
}

/// A UDP socket. Dropping it unbinds the port.
pub struct UdpSocket {
    shared: Arc<Shared>,
    id: SocketId,
}

impl UdpSocket {
    /// This socket's id in its stack.
    pub fn id(&self) -> SocketId {
        self.id
    }

    /// The bound port.
    pub fn port(&self) -> u16 {
        self.shared
            .with_entry(|inner| entry(inner, self.id).map(|e| e.port))
            .unwrap_or(0)
    }

    /// Sends one datagram to `addr`. A datagram larger than the send
    /// buffer fails with EINVAL (Linux: EMSGSIZE, which `Errno` lacks).
    pub fn send_to(&self, buf: &[u8], addr: SocketAddrV4) -> Result<usize, Errno> {
        if addr.port() == 0 || addr.ip().is_unspecified() {
            return Err(Errno::EINVAL);
        }
        let (nonblocking, timeout) = self
            .shared
            .with_entry(|inner| entry(inner, self.id).map(|e| (e.nonblocking, e.write_timeout)))?;
        let deadline = timeout.map(|t| self.shared.deadline_after(t));
        let remote = IpEndpoint::new(IpAddress::Ipv4(*addr.ip()), addr.port());
        self.shared
            .block(deadline, nonblocking, Errno::EAGAIN, |inner, _| {
                let handle = match entry(inner, self.id) {
                    Ok(e) => e.handle,
                    Err(err) => return Try::Done(Err(err)),
                };
                if !inner.configured {
                    return Try::Pending;
                }
                let s = inner.sockets.get_mut::<udp::Socket>(handle);
                if buf.len() > s.payload_send_capacity() {
                    return Try::Done(Err(Errno::EINVAL));
                }
                match s.send_slice(buf, remote) {
                    Ok(()) => Try::Done(Ok(buf.len())),
                    Err(udp::SendError::BufferFull) => Try::Pending,
                    Err(udp::SendError::Unaddressable) => Try::Done(Err(Errno::ENETUNREACH)),
                }
            })
    }

    /// Receives one datagram; a datagram longer than `buf` is truncated
    /// (the rest is lost, as on Linux). On a connected socket, datagrams
    /// from other peers are dropped.
    pub fn recv_from(&self, buf: &mut [u8]) -> Result<(usize, SocketAddrV4), Errno> {
        let (nonblocking, timeout) = self
            .shared
            .with_entry(|inner| entry(inner, self.id).map(|e| (e.nonblocking, e.read_timeout)))?;
        let deadline = timeout.map(|t| self.shared.deadline_after(t));
        self.shared
            .block(deadline, nonblocking, Errno::EAGAIN, |inner, _| {
                let (handle, peer) = match entry(inner, self.id) {
                    Ok(e) => (e.handle, e.peer),
                    Err(err) => return Try::Done(Err(err)),
                };
                let s = inner.sockets.get_mut::<udp::Socket>(handle);
                while let Ok((data, meta)) = s.recv() {
                    let Some(from) = endpoint_v4(meta.endpoint) else {
                        continue;
                    };
                    if peer.is_some_and(|p| p != from) {
                        continue;
                    }
                    let n = data.len().min(buf.len());
                    buf[..n].copy_from_slice(&data[..n]);
                    return Try::Done(Ok((n, from)));
                }
                Try::Pending
            })
    }

    /// Sets the default peer for [`UdpSocket::send`] and filters received
    /// datagrams to it.
    pub fn connect(&self, addr: SocketAddrV4) -> Result<(), Errno> {
        if addr.port() == 0 || addr.ip().is_unspecified() {
            return Err(Errno::EINVAL);
        }
        self.shared
            .with_entry(|inner| entry(inner, self.id).map(|e| e.peer = Some(addr)))
    }

    /// The connected peer (ENOTCONN if none).
    pub fn peer_addr(&self) -> Result<SocketAddrV4, Errno> {
        self.shared
            .with_entry(|inner| entry(inner, self.id)?.peer.ok_or(Errno::ENOTCONN))
    }

    /// Sends to the connected peer; ENOTCONN if not connected (Linux:
    /// EDESTADDRREQ, which `Errno` lacks).
    pub fn send(&self, buf: &[u8]) -> Result<usize, Errno> {
        let peer = self.peer_addr()?;
        self.send_to(buf, peer)
    }

    /// Receives from the connected peer.
    pub fn recv(&self, buf: &mut [u8]) -> Result<usize, Errno> {
        self.recv_from(buf).map(|(n, _)| n)
    }

    /// Non-blocking mode: sends and receives return EAGAIN instead of
    /// waiting.
    pub fn set_nonblocking(&self, nonblocking: bool) -> Result<(), Errno> {
        self.shared
            .with_entry(|inner| entry(inner, self.id).map(|e| e.nonblocking = nonblocking))
    }

    /// How long a receive waits before EAGAIN (None: forever).
    pub fn set_read_timeout(&self, timeout: Option<Duration>) -> Result<(), Errno> {
        self.shared
            .with_entry(|inner| entry(inner, self.id).map(|e| e.read_timeout = timeout))
    }

    /// How long a send waits before EAGAIN (None: forever).
    pub fn set_write_timeout(&self, timeout: Option<Duration>) -> Result<(), Errno> {
        self.shared
            .with_entry(|inner| entry(inner, self.id).map(|e| e.write_timeout = timeout))
    }
}

impl Drop for UdpSocket {
    fn drop(&mut self) {
        self.shared.with(|inner, _| {
            let Some(Entry::Udp(e)) = inner.take(self.id) else {
                return ((), false);
            };
            // Queued datagrams are dropped with the socket, as on close(2)
            // with nothing left to retransmit.
            inner.remove_socket(e.handle);
            inner.release_port(Proto::Udp, e.port);
            ((), false)
        });
    }
}

/// `poll(2)` readiness of a UDP socket.
pub(crate) fn udp_events(inner: &Inner, e: &UdpEntry) -> PollEvents {
    let s = inner.sockets.get::<udp::Socket>(e.handle);
    let mut ev = PollEvents::empty();
    if s.can_recv() {
        ev |= PollEvents::IN;
    }
    if s.can_send() {
        ev |= PollEvents::OUT;
    }
    ev
}
