//! Sockets over hermit-net (feature `net`): the [`Socket`] object with its
//! state machine, the socket calls of [`Syscalls`], socket options, and
//! `getaddrinfo`.
//!
//! A socket made by `socket()` is [`State::Unbound`]; `bind` on a TCP
//! socket only records the address ([`State::Bound`]: hermit-net claims a
//! TCP port when it listens), `listen` makes a listener, `connect` a
//! stream (at once, returning `EINPROGRESS`, when non-blocking). A UDP
//! socket is bound on `bind`, or to an ephemeral port on its first
//! `connect`/`sendto`. Options set before the transition are applied to
//! the hermit-net object when it is made. Blocking calls run on an `Arc`
//! cloned out of the state, never under its lock.

use alloc::sync::Arc;
use alloc::vec::Vec;
use core::mem::size_of;
use core::net::{Ipv4Addr, SocketAddrV4};
use core::time::Duration;

use hermit_fs::FileStat;
use hermit_net::{PollEntry, PollEvents, Shutdown, Stack, TcpListener, TcpStream, UdpSocket};
use spin::Mutex;

use crate::abi::{
    self, AF_INET, AF_INET6, AF_UNSPEC, EAI_FAMILY, EAI_NONAME, EAI_SERVICE, EAI_SOCKTYPE, IP_TTL,
    IPPROTO_IP, IPPROTO_TCP, IPPROTO_UDP, MSG_PEEK, O_NONBLOCK, O_RDWR, POLLHUP, POLLOUT, S_IFSOCK,
    SHUT_RD, SHUT_RDWR, SHUT_WR, SO_BROADCAST, SO_ERROR, SO_KEEPALIVE, SO_LINGER, SO_RCVBUF,
    SO_RCVTIMEO, SO_REUSEADDR, SO_SNDBUF, SO_SNDTIMEO, SOCK_CLOEXEC, SOCK_DGRAM, SOCK_NONBLOCK,
    SOCK_STREAM, SOL_SOCKET, TCP_NODELAY, addrinfo, linger, sockaddr, socklen_t, timeval,
};
use crate::fd::Object;
use crate::sockaddr::{SOCKADDR_IN_LEN, SOCKADDR_MAX_LEN, encode, parse};
use crate::syscalls::{Syscalls, ret, ret_size};
use crate::{Errno, user};

/// The most connections a listener keeps ready before `accept` (each is a
/// smoltcp socket with its buffers; std asks for 128).
pub const MAX_BACKLOG: usize = 8;

/// Stream or datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// TCP.
    Stream,
    /// UDP.
    Datagram,
}

/// Where a socket is in its life.
#[derive(Clone)]
pub enum State {
    /// Fresh from `socket()`.
    Unbound,
    /// A TCP socket after `bind` (the port is claimed on `listen`).
    Bound(SocketAddrV4),
    /// A TCP listener; the address it was bound to.
    Listening(Arc<TcpListener>, Ipv4Addr),
    /// A TCP connection (possibly still connecting).
    Connected(Arc<TcpStream>),
    /// A bound UDP socket; the address it was bound to.
    Udp(Arc<UdpSocket>, Ipv4Addr),
}

/// Socket options, remembered so they survive the state transitions and
/// `getsockopt` can report them.
#[derive(Clone, Copy, Debug, Default)]
struct Options {
    nonblocking: bool,
    recv_timeout: Option<Duration>,
    send_timeout: Option<Duration>,
    nodelay: bool,
    reuseaddr: bool,
    keepalive: bool,
    broadcast: bool,
    linger: linger,
    ttl: Option<u32>,
}

/// A socket: a descriptor [`Object`] whose I/O goes to hermit-net.
pub struct Socket {
    kind: Kind,
    state: Mutex<State>,
    options: Mutex<Options>,
}

impl Socket {
    /// A new unbound socket.
    pub fn new(kind: Kind) -> Self {
        Self {
            kind,
            state: Mutex::new(State::Unbound),
            options: Mutex::new(Options::default()),
        }
    }

    /// Stream or datagram.
    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// The current state (a snapshot).
    pub fn state(&self) -> State {
        self.state.lock().clone()
    }

    /// The stack's id for `poll`, if the socket has a hermit-net object.
    pub fn poll_id(&self) -> Option<hermit_net::SocketId> {
        match &*self.state.lock() {
            State::Listening(l, _) => Some(l.id()),
            State::Connected(s) => Some(s.id()),
            State::Udp(u, _) => Some(u.id()),
            State::Unbound | State::Bound(_) => None,
        }
    }

    fn options(&self) -> Options {
        *self.options.lock()
    }

    fn apply_listener(&self, l: &TcpListener) -> Result<(), Errno> {
        let o = self.options();
        l.set_nonblocking(o.nonblocking)?;
        l.set_timeout(o.recv_timeout)
    }

    fn apply_stream(&self, s: &TcpStream) -> Result<(), Errno> {
        let o = self.options();
        s.set_nonblocking(o.nonblocking)?;
        s.set_read_timeout(o.recv_timeout)?;
        s.set_write_timeout(o.send_timeout)?;
        s.set_nodelay(o.nodelay)
    }

    fn apply_udp(&self, u: &UdpSocket) -> Result<(), Errno> {
        let o = self.options();
        u.set_nonblocking(o.nonblocking)?;
        u.set_read_timeout(o.recv_timeout)?;
        u.set_write_timeout(o.send_timeout)
    }

    /// Re-applies the options to the live object.
    fn apply(&self) -> Result<(), Errno> {
        match self.state() {
            State::Listening(l, _) => self.apply_listener(&l),
            State::Connected(s) => self.apply_stream(&s),
            State::Udp(u, _) => self.apply_udp(&u),
            State::Unbound | State::Bound(_) => Ok(()),
        }
    }

    /// The UDP socket, binding an ephemeral port first if unbound.
    fn udp(&self, stack: &Stack) -> Result<Arc<UdpSocket>, Errno> {
        let mut state = self.state.lock();
        match &*state {
            State::Udp(u, _) => Ok(u.clone()),
            State::Unbound => {
                let u = Arc::new(stack.udp_bind(0)?);
                self.apply_udp(&u)?;
                *state = State::Udp(u.clone(), Ipv4Addr::UNSPECIFIED);
                Ok(u)
            }
            _ => Err(Errno::EINVAL),
        }
    }

    fn recv(&self, buf: &mut [u8]) -> Result<(usize, Option<SocketAddrV4>), Errno> {
        match self.state() {
            State::Connected(s) => {
                let n = s.read(buf)?;
                Ok((n, s.peer_addr().ok()))
            }
            State::Udp(u, _) => u.recv_from(buf).map(|(n, a)| (n, Some(a))),
            _ => Err(Errno::ENOTCONN),
        }
    }

    fn send(&self, buf: &[u8]) -> Result<usize, Errno> {
        match self.state() {
            State::Connected(s) => s.write(buf),
            State::Udp(u, _) => match u.peer_addr() {
                Ok(peer) => u.send_to(buf, peer),
                Err(_) => Err(Errno::EDESTADDRREQ),
            },
            _ if self.kind == Kind::Datagram => Err(Errno::EDESTADDRREQ),
            _ => Err(Errno::ENOTCONN),
        }
    }
}

impl Object for Socket {
    fn read(&self, buf: &mut [u8]) -> Result<usize, Errno> {
        self.recv(buf).map(|(n, _)| n)
    }

    fn write(&self, buf: &[u8]) -> Result<usize, Errno> {
        self.send(buf)
    }

    fn fstat(&self) -> Result<FileStat, Errno> {
        Ok(FileStat {
            mode: S_IFSOCK | 0o777,
            nlink: 1,
            ..FileStat::default()
        })
    }

    fn set_nonblocking(&self, nonblocking: bool) -> Result<(), Errno> {
        self.options.lock().nonblocking = nonblocking;
        self.apply()
    }

    /// Sockets with a hermit-net object are polled through the stack; this
    /// answers for the others: an unconnected TCP socket is writable and
    /// hung up (as on Linux), an unbound UDP socket writable.
    fn poll(&self, events: i16) -> i16 {
        match self.kind {
            Kind::Stream => (events & POLLOUT) | POLLHUP,
            Kind::Datagram => events & POLLOUT,
        }
    }

    fn as_socket(&self) -> Option<&Socket> {
        Some(self)
    }
}

/// A `timeval` as a timeout: zero means none (forever); `EDOM`-like
/// values (negative, microseconds out of range) give `EINVAL`.
fn timeout_from(tv: timeval) -> Result<Option<Duration>, Errno> {
    let secs = u64::try_from(tv.tv_sec).map_err(|_| Errno::EINVAL)?;
    let micros = u32::try_from(tv.tv_usec).map_err(|_| Errno::EINVAL)?;
    if micros >= 1_000_000 {
        return Err(Errno::EINVAL);
    }
    if secs == 0 && micros == 0 {
        return Ok(None);
    }
    Ok(Some(Duration::new(secs, micros * 1000)))
}

fn timeval_from(t: Option<Duration>) -> timeval {
    match t {
        None => timeval::default(),
        Some(d) => timeval {
            tv_sec: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
            // Below 10^6.
            tv_usec: d.subsec_micros() as i32,
        },
    }
}

/// The bytes of an `int`/`timeval`/`linger` option value.
fn int_bytes(v: i32) -> [u8; 4] {
    v.to_ne_bytes()
}

fn read_int(val: &[u8]) -> Result<i32, Errno> {
    let b: [u8; 4] = val
        .get(..4)
        .and_then(|b| b.try_into().ok())
        .ok_or(Errno::EINVAL)?;
    Ok(i32::from_ne_bytes(b))
}

fn read_timeval(val: &[u8]) -> Result<timeval, Errno> {
    if val.len() < size_of::<timeval>() {
        return Err(Errno::EINVAL);
    }
    let sec = i64::from_ne_bytes(val[0..8].try_into().map_err(|_| Errno::EINVAL)?);
    let usec = i32::from_ne_bytes(val[8..12].try_into().map_err(|_| Errno::EINVAL)?);
    Ok(timeval {
        tv_sec: sec,
        tv_usec: usec,
    })
}

fn timeval_bytes(tv: timeval) -> [u8; size_of::<timeval>()] {
    let mut out = [0; size_of::<timeval>()];
    out[0..8].copy_from_slice(&tv.tv_sec.to_ne_bytes());
    out[8..12].copy_from_slice(&tv.tv_usec.to_ne_bytes());
    out
}

fn linger_bytes(l: linger) -> [u8; 8] {
    let mut out = [0; 8];
    out[0..4].copy_from_slice(&l.l_onoff.to_ne_bytes());
    out[4..8].copy_from_slice(&l.l_linger.to_ne_bytes());
    out
}

impl<'a> Syscalls<'a> {
    /// Attaches the network stack (once; later calls are ignored). Socket
    /// calls fail with `ENETUNREACH` before.
    pub fn set_network(&self, stack: &'a Stack) {
        self.net.call_once(|| stack);
    }

    /// The network stack (`ENETUNREACH` if none is attached).
    pub fn stack(&self) -> Result<&'a Stack, Errno> {
        self.net.get().copied().ok_or(Errno::ENETUNREACH)
    }

    /// The socket behind `fd`: `EBADF`, or `ENOTSOCK` for other objects.
    pub fn socket_object(&self, fd: i32) -> Result<Arc<dyn Object>, Errno> {
        let object = self.fds().object(fd)?;
        if object.as_socket().is_none() {
            return Err(Errno::ENOTSOCK);
        }
        Ok(object)
    }

    fn with_socket<T>(
        &self,
        fd: i32,
        f: impl FnOnce(&Socket) -> Result<T, Errno>,
    ) -> Result<T, Errno> {
        let object = self.socket_object(fd)?;
        let socket = object.as_socket().ok_or(Errno::ENOTSOCK)?;
        f(socket)
    }

    /// Safe core of [`socket`](Self::socket).
    pub fn socket_new(&self, domain: i32, type_: i32, protocol: i32) -> Result<i32, Errno> {
        match domain {
            AF_INET => {}
            _ => return Err(Errno::EAFNOSUPPORT),
        }
        let kind = match type_ & !(SOCK_NONBLOCK | SOCK_CLOEXEC) {
            SOCK_STREAM => Kind::Stream,
            SOCK_DGRAM => Kind::Datagram,
            _ => return Err(Errno::EINVAL),
        };
        match (kind, protocol) {
            (_, IPPROTO_IP) | (Kind::Stream, IPPROTO_TCP) | (Kind::Datagram, IPPROTO_UDP) => {}
            _ => return Err(Errno::EINVAL),
        }
        let socket = Socket::new(kind);
        let mut flags = O_RDWR;
        if type_ & SOCK_NONBLOCK != 0 {
            socket.options.lock().nonblocking = true;
            flags |= O_NONBLOCK;
        }
        let fd = self.fds().insert(Arc::new(socket), flags)?;
        if type_ & SOCK_CLOEXEC != 0 {
            self.fds().set_cloexec(fd, true)?;
        }
        Ok(fd)
    }

    /// `sys_socket`: a new unbound socket. `AF_INET` only
    /// (`EAFNOSUPPORT`), `SOCK_STREAM`/`SOCK_DGRAM` with `SOCK_NONBLOCK`
    /// and `SOCK_CLOEXEC`, protocol 0 or the matching one (`EINVAL`).
    pub fn socket(&self, domain: i32, type_: i32, protocol: i32) -> i32 {
        ret(self.socket_new(domain, type_, protocol))
    }

    /// Checks that `addr`'s IP is this host's or unspecified.
    fn local_ip(&self, ip: Ipv4Addr) -> Result<(), Errno> {
        if ip.is_unspecified() || ip.is_loopback() {
            return Ok(());
        }
        match self.stack()?.local_addr() {
            Some(local) if local == ip => Ok(()),
            _ => Err(Errno::EADDRNOTAVAIL),
        }
    }

    /// Safe core of [`bind`](Self::bind).
    pub fn bind_addr(&self, fd: i32, addr: SocketAddrV4) -> Result<(), Errno> {
        self.with_socket(fd, |s| {
            self.local_ip(*addr.ip())?;
            let mut state = s.state.lock();
            if !matches!(*state, State::Unbound) {
                return Err(Errno::EINVAL);
            }
            match s.kind {
                Kind::Stream => *state = State::Bound(addr),
                Kind::Datagram => {
                    let u = Arc::new(self.stack()?.udp_bind(addr.port())?);
                    s.apply_udp(&u)?;
                    *state = State::Udp(u, *addr.ip());
                }
            }
            Ok(())
        })
    }

    /// `sys_bind`: binds an unbound socket (`EINVAL` if already bound,
    /// `EADDRNOTAVAIL` for a foreign address, `EADDRINUSE` for a taken UDP
    /// port; a taken TCP port shows on `listen`).
    ///
    /// # Safety
    /// `name` is valid for `namelen` readable bytes.
    pub unsafe fn bind(&self, fd: i32, name: *const sockaddr, namelen: socklen_t) -> i32 {
        let result = (|| {
            // SAFETY: forwarded contract.
            let bytes = unsafe { sockaddr_arg(name, namelen) }?;
            self.bind_addr(fd, parse(bytes)?)
        })();
        ret(result.map(|()| 0))
    }

    /// `sys_listen`: makes a TCP socket a listener (an unbound one on an
    /// ephemeral port). `backlog` is clamped to `1..=MAX_BACKLOG`;
    /// `EOPNOTSUPP` for UDP, `EINVAL` when connected.
    pub fn listen(&self, fd: i32, backlog: i32) -> i32 {
        let result = self.with_socket(fd, |s| {
            if s.kind != Kind::Stream {
                return Err(Errno::EOPNOTSUPP);
            }
            let mut state = s.state.lock();
            let addr = match &*state {
                State::Unbound => SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0),
                State::Bound(a) => *a,
                State::Listening(..) => return Ok(()),
                _ => return Err(Errno::EINVAL),
            };
            let backlog = usize::try_from(backlog).unwrap_or(1).clamp(1, MAX_BACKLOG);
            let l = Arc::new(self.stack()?.tcp_listen(addr.port(), backlog)?);
            s.apply_listener(&l)?;
            *state = State::Listening(l, *addr.ip());
            Ok(())
        });
        ret(result.map(|()| 0))
    }

    /// Safe core of [`accept`](Self::accept): the new descriptor and the
    /// peer.
    pub fn accept_conn(&self, fd: i32) -> Result<(i32, SocketAddrV4), Errno> {
        let object = self.socket_object(fd)?;
        let socket = object.as_socket().ok_or(Errno::ENOTSOCK)?;
        let State::Listening(listener, _) = socket.state() else {
            return Err(Errno::EINVAL);
        };
        let (stream, peer) = listener.accept()?;
        let new = Socket::new(Kind::Stream);
        new.options.lock().nodelay = socket.options().nodelay;
        new.apply_stream(&stream)?;
        *new.state.lock() = State::Connected(Arc::new(stream));
        let fd = self.fds().insert(Arc::new(new), O_RDWR)?;
        Ok((fd, peer))
    }

    /// `sys_accept`: waits for a connection on a listener (`EAGAIN` if
    /// non-blocking or after `SO_RCVTIMEO`, `EINVAL` if not listening);
    /// the new descriptor (blocking, whatever the listener is), with the
    /// peer stored in `*addr`/`*addrlen` (truncated to `*addrlen`).
    ///
    /// # Safety
    /// `addr` null, or `addrlen` a valid `socklen_t` and `addr` valid for
    /// `*addrlen` bytes.
    pub unsafe fn accept(&self, fd: i32, addr: *mut sockaddr, addrlen: *mut socklen_t) -> i32 {
        let result = self.accept_conn(fd).and_then(|(new, peer)| {
            // SAFETY: forwarded contract.
            match unsafe { user::write_sockaddr(addr.cast(), addrlen, &encode(peer)) } {
                Ok(()) => Ok(new),
                Err(e) => {
                    let _ = self.fds().close(new);
                    Err(e)
                }
            }
        });
        ret(result)
    }

    /// Safe core of [`connect`](Self::connect).
    pub fn connect_addr(&self, fd: i32, addr: SocketAddrV4) -> Result<(), Errno> {
        let object = self.socket_object(fd)?;
        let socket = object.as_socket().ok_or(Errno::ENOTSOCK)?;
        let stack = self.stack()?;
        if socket.kind == Kind::Datagram {
            return socket.udp(stack)?.connect(addr);
        }
        match socket.state() {
            State::Unbound | State::Bound(_) => {}
            State::Connected(s) => {
                if let Some(e) = s.take_error()? {
                    return Err(e);
                }
                let mut probe = [PollEntry::new(s.id(), PollEvents::OUT)];
                stack.poll_sockets(&mut probe, Some(Duration::ZERO))?;
                return Err(if probe[0].revents.contains(PollEvents::OUT) {
                    Errno::EISCONN
                } else {
                    Errno::EALREADY
                });
            }
            State::Listening(..) | State::Udp(..) => return Err(Errno::EINVAL),
        }
        let options = socket.options();
        if options.nonblocking {
            let s = Arc::new(stack.tcp_connect_start(addr)?);
            socket.apply_stream(&s)?;
            *socket.state.lock() = State::Connected(s);
            return Err(Errno::EINPROGRESS);
        }
        let s = Arc::new(stack.tcp_connect(addr, options.send_timeout)?);
        socket.apply_stream(&s)?;
        *socket.state.lock() = State::Connected(s);
        Ok(())
    }

    /// `sys_connect`: connects a TCP socket (blocking up to `SO_SNDTIMEO`
    /// or the stack's connect timeout; non-blocking: `EINPROGRESS`, then
    /// `EALREADY`/`EISCONN` or the failure on later calls, and `SO_ERROR`)
    /// or sets a UDP socket's peer. A TCP socket's `bind` port is not kept:
    /// hermit-net connects from an ephemeral port.
    ///
    /// # Safety
    /// `name` is valid for `namelen` readable bytes.
    pub unsafe fn connect(&self, fd: i32, name: *const sockaddr, namelen: socklen_t) -> i32 {
        let result = (|| {
            // SAFETY: forwarded contract.
            let bytes = unsafe { sockaddr_arg(name, namelen) }?;
            self.connect_addr(fd, parse(bytes)?)
        })();
        ret(result.map(|()| 0))
    }

    fn check_flags(flags: i32) -> Result<(), Errno> {
        match flags {
            0 => Ok(()),
            MSG_PEEK => Err(Errno::EOPNOTSUPP),
            _ => Err(Errno::EINVAL),
        }
    }

    /// `sys_send`: as `write` on a connected socket (`flags` must be 0;
    /// `MSG_PEEK` and others give `EOPNOTSUPP`/`EINVAL`); `ENOTCONN` for
    /// unconnected TCP, `EDESTADDRREQ` for unconnected UDP.
    ///
    /// # Safety
    /// `mem` is valid for `len` readable bytes.
    pub unsafe fn send(&self, fd: i32, mem: *const u8, len: usize, flags: i32) -> isize {
        let result = (|| {
            Self::check_flags(flags)?;
            // SAFETY: forwarded contract.
            let buf = unsafe { user::slice(mem, len) }?;
            self.with_socket(fd, |s| s.send(buf))
        })();
        ret_size(result)
    }

    /// `sys_sendto`: `send` to `to` (UDP; an unbound socket gets an
    /// ephemeral port). For TCP the address is ignored; a null `to` is a
    /// plain `send`.
    ///
    /// # Safety
    /// `mem` valid for `len` bytes, `to` null or valid for `tolen` bytes.
    pub unsafe fn sendto(
        &self,
        fd: i32,
        mem: *const u8,
        len: usize,
        flags: i32,
        to: *const sockaddr,
        tolen: socklen_t,
    ) -> isize {
        if to.is_null() {
            // SAFETY: forwarded contract.
            return unsafe { self.send(fd, mem, len, flags) };
        }
        let result = (|| {
            Self::check_flags(flags)?;
            // SAFETY: forwarded contract.
            let buf = unsafe { user::slice(mem, len) }?;
            // SAFETY: forwarded contract.
            let addr = parse(unsafe { sockaddr_arg(to, tolen) }?)?;
            self.with_socket(fd, |s| match s.kind {
                Kind::Stream => s.send(buf),
                Kind::Datagram => s.udp(self.stack()?)?.send_to(buf, addr),
            })
        })();
        ret_size(result)
    }

    /// `sys_recv`: as `read` on a socket (`flags` as for
    /// [`send`](Self::send)); `ENOTCONN` if not connected (or, for UDP,
    /// bound).
    ///
    /// # Safety
    /// `buf` is valid for `len` writable bytes.
    pub unsafe fn recv(&self, fd: i32, buf: *mut u8, len: usize, flags: i32) -> isize {
        // SAFETY: forwarded contract.
        unsafe {
            self.recvfrom(
                fd,
                buf,
                len,
                flags,
                core::ptr::null_mut(),
                core::ptr::null_mut(),
            )
        }
    }

    /// `sys_recvfrom`: receives into `buf`, storing the sender (UDP) or
    /// peer (TCP) in `*addr`/`*addrlen` if `addr` is not null.
    ///
    /// # Safety
    /// `buf` valid for `len` writable bytes; `addr`/`addrlen` as for
    /// [`accept`](Self::accept).
    pub unsafe fn recvfrom(
        &self,
        fd: i32,
        buf: *mut u8,
        len: usize,
        flags: i32,
        addr: *mut sockaddr,
        addrlen: *mut socklen_t,
    ) -> isize {
        let result = (|| {
            Self::check_flags(flags)?;
            // SAFETY: forwarded contract.
            let buf = unsafe { user::slice_mut(buf, len) }?;
            let (n, from) = self.with_socket(fd, |s| s.recv(buf))?;
            if let Some(from) = from {
                // SAFETY: forwarded contract.
                unsafe { user::write_sockaddr(addr.cast(), addrlen, &encode(from)) }?;
            }
            Ok(n)
        })();
        ret_size(result)
    }

    /// `sys_shutdown` (and `sys_shutdown_socket`): closes one or both
    /// halves of a TCP connection; `EINVAL` for a bad `how`, `ENOTCONN` if
    /// not connected.
    pub fn shutdown(&self, fd: i32, how: i32) -> i32 {
        let result = self.with_socket(fd, |s| {
            let how = match how {
                SHUT_RD => Shutdown::Read,
                SHUT_WR => Shutdown::Write,
                SHUT_RDWR => Shutdown::Both,
                _ => return Err(Errno::EINVAL),
            };
            match s.state() {
                State::Connected(stream) => stream.shutdown(how),
                _ => Err(Errno::ENOTCONN),
            }
        });
        ret(result.map(|()| 0))
    }

    /// The local address of the socket behind `fd`.
    pub fn sock_name(&self, fd: i32) -> Result<SocketAddrV4, Errno> {
        self.with_socket(fd, |s| {
            Ok(match s.state() {
                State::Unbound => SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0),
                State::Bound(a) => a,
                State::Listening(l, ip) => SocketAddrV4::new(ip, l.port()),
                State::Connected(stream) => stream.local_addr()?,
                State::Udp(u, ip) => SocketAddrV4::new(ip, u.port()),
            })
        })
    }

    /// The peer of the socket behind `fd` (`ENOTCONN` if none).
    pub fn peer_name(&self, fd: i32) -> Result<SocketAddrV4, Errno> {
        self.with_socket(fd, |s| match s.state() {
            State::Connected(stream) => stream.peer_addr(),
            State::Udp(u, _) => u.peer_addr(),
            _ => Err(Errno::ENOTCONN),
        })
    }

    /// `sys_getsockname`: stores the local address (truncated to
    /// `*namelen`, which receives the full length).
    ///
    /// # Safety
    /// `namelen` a valid `socklen_t`, `name` valid for `*namelen` bytes.
    pub unsafe fn getsockname(&self, fd: i32, name: *mut sockaddr, namelen: *mut socklen_t) -> i32 {
        let result = self.sock_name(fd).and_then(|a| {
            if name.is_null() {
                return Err(Errno::EFAULT);
            }
            // SAFETY: forwarded contract.
            unsafe { user::write_sockaddr(name.cast(), namelen, &encode(a)) }
        });
        ret(result.map(|()| 0))
    }

    /// `sys_getpeername`: stores the peer's address, as
    /// [`getsockname`](Self::getsockname).
    ///
    /// # Safety
    /// As [`getsockname`](Self::getsockname).
    pub unsafe fn getpeername(&self, fd: i32, name: *mut sockaddr, namelen: *mut socklen_t) -> i32 {
        let result = self.peer_name(fd).and_then(|a| {
            if name.is_null() {
                return Err(Errno::EFAULT);
            }
            // SAFETY: forwarded contract.
            unsafe { user::write_sockaddr(name.cast(), namelen, &encode(a)) }
        });
        ret(result.map(|()| 0))
    }

    /// Safe core of [`setsockopt`](Self::setsockopt).
    pub fn set_option(&self, fd: i32, level: i32, name: i32, val: &[u8]) -> Result<(), Errno> {
        self.with_socket(fd, |s| {
            let mut o = s.options.lock();
            match (level, name) {
                (SOL_SOCKET, SO_RCVTIMEO) => o.recv_timeout = timeout_from(read_timeval(val)?)?,
                (SOL_SOCKET, SO_SNDTIMEO) => o.send_timeout = timeout_from(read_timeval(val)?)?,
                (SOL_SOCKET, SO_REUSEADDR) => o.reuseaddr = read_int(val)? != 0,
                (SOL_SOCKET, SO_KEEPALIVE) => o.keepalive = read_int(val)? != 0,
                (SOL_SOCKET, SO_BROADCAST) => o.broadcast = read_int(val)? != 0,
                (SOL_SOCKET, SO_LINGER) => {
                    o.linger = linger {
                        l_onoff: read_int(val)?,
                        l_linger: read_int(val.get(4..).ok_or(Errno::EINVAL)?)?,
                    }
                }
                (IPPROTO_TCP, TCP_NODELAY) if s.kind == Kind::Stream => {
                    o.nodelay = read_int(val)? != 0;
                }
                (IPPROTO_IP, IP_TTL) => {
                    let ttl = read_int(val)?;
                    o.ttl = match ttl {
                        -1 => None,
                        1..=255 => Some(ttl as u32),
                        _ => return Err(Errno::EINVAL),
                    };
                }
                _ => return Err(Errno::EOPNOTSUPP),
            }
            drop(o);
            s.apply()
        })
    }

    /// `sys_setsockopt`: `SOL_SOCKET` `SO_RCVTIMEO`/`SO_SNDTIMEO`
    /// (`timeval`, zero: none), `SO_REUSEADDR`/`SO_KEEPALIVE`/
    /// `SO_BROADCAST`/`SO_LINGER` (remembered only: hermit-net has no such
    /// behaviour), `IPPROTO_TCP` `TCP_NODELAY`, `IPPROTO_IP` `IP_TTL`
    /// (remembered). `EINVAL` for a short value, `EOPNOTSUPP` for other
    /// options (Linux: `ENOPROTOOPT`, which `Errno` lacks).
    ///
    /// # Safety
    /// `optval` is valid for `optlen` readable bytes.
    pub unsafe fn setsockopt(
        &self,
        fd: i32,
        level: i32,
        optname: i32,
        optval: *const u8,
        optlen: socklen_t,
    ) -> i32 {
        let result = (|| {
            let len = usize::try_from(optlen).map_err(|_| Errno::EINVAL)?;
            // SAFETY: forwarded contract.
            let val = unsafe { user::slice(optval, len) }?;
            self.set_option(fd, level, optname, val)
        })();
        ret(result.map(|()| 0))
    }

    /// Safe core of [`getsockopt`](Self::getsockopt): the value's bytes.
    pub fn get_option(&self, fd: i32, level: i32, name: i32) -> Result<Vec<u8>, Errno> {
        self.with_socket(fd, |s| {
            let o = s.options();
            let flag = |b: bool| int_bytes(i32::from(b)).to_vec();
            Ok(match (level, name) {
                (SOL_SOCKET, SO_RCVTIMEO) => timeval_bytes(timeval_from(o.recv_timeout)).to_vec(),
                (SOL_SOCKET, SO_SNDTIMEO) => timeval_bytes(timeval_from(o.send_timeout)).to_vec(),
                (SOL_SOCKET, SO_REUSEADDR) => flag(o.reuseaddr),
                (SOL_SOCKET, SO_KEEPALIVE) => flag(o.keepalive),
                (SOL_SOCKET, SO_BROADCAST) => flag(o.broadcast),
                (SOL_SOCKET, SO_LINGER) => linger_bytes(o.linger).to_vec(),
                (SOL_SOCKET, SO_ERROR) => {
                    let err = match s.state() {
                        State::Connected(stream) => stream.take_error()?,
                        _ => None,
                    };
                    int_bytes(err.map_or(0, Errno::raw)).to_vec()
                }
                (SOL_SOCKET, SO_SNDBUF | SO_RCVBUF) => int_bytes(64 * 1024).to_vec(),
                (IPPROTO_TCP, TCP_NODELAY) if s.kind == Kind::Stream => flag(o.nodelay),
                (IPPROTO_IP, IP_TTL) => int_bytes(o.ttl.map_or(64, |t| t as i32)).to_vec(),
                _ => return Err(Errno::EOPNOTSUPP),
            })
        })
    }

    /// `sys_getsockopt`: the options of [`setsockopt`](Self::setsockopt)
    /// plus `SO_ERROR` (the failure of a non-blocking connect) and
    /// `SO_SNDBUF`/`SO_RCVBUF` (nominal); the value is truncated to
    /// `*optlen`, which receives the value's length.
    ///
    /// # Safety
    /// `optlen` a valid `socklen_t`, `optval` valid for `*optlen` bytes.
    pub unsafe fn getsockopt(
        &self,
        fd: i32,
        level: i32,
        optname: i32,
        optval: *mut u8,
        optlen: *mut socklen_t,
    ) -> i32 {
        let result = self.get_option(fd, level, optname).and_then(|val| {
            if optval.is_null() {
                return Err(Errno::EFAULT);
            }
            // Same in/out length rule as addresses.
            // SAFETY: forwarded contract.
            unsafe { user::write_sockaddr(optval, optlen, &val) }
        });
        ret(result.map(|()| 0))
    }

    /// The IPv4 addresses of `name` (a dotted address as is; other names
    /// through DNS with feature `dns`, else `ENOENT`).
    pub fn lookup(&self, name: &str) -> Result<Vec<Ipv4Addr>, Errno> {
        if let Ok(ip) = name.parse::<Ipv4Addr>() {
            return Ok(alloc::vec![ip]);
        }
        if name == "localhost" {
            return Ok(alloc::vec![Ipv4Addr::LOCALHOST]);
        }
        #[cfg(feature = "dns")]
        {
            self.stack()?.resolve(name)
        }
        #[cfg(not(feature = "dns"))]
        {
            Err(Errno::ENOENT)
        }
    }

    /// `sys_getaddrbyname`: the first IPv4 address of `name` into
    /// `inaddr` (`len` must be at least 4, the size of an `in_addr`); 0 or
    /// `-errno`.
    ///
    /// # Safety
    /// `name` a NUL-terminated string, `inaddr` valid for `len` bytes.
    pub unsafe fn getaddrbyname(&self, name: *const u8, inaddr: *mut u8, len: usize) -> i32 {
        let result = (|| {
            // SAFETY: forwarded contract.
            let name = unsafe { user::c_str(name, 256) }?;
            let name = core::str::from_utf8(name).map_err(|_| Errno::EINVAL)?;
            if len < 4 {
                return Err(Errno::EINVAL);
            }
            let ip = *self.lookup(name)?.first().ok_or(Errno::ENOENT)?;
            // SAFETY: forwarded contract.
            let out = unsafe { user::slice_mut(inaddr, 4) }?;
            out.copy_from_slice(&ip.octets());
            Ok(0)
        })();
        ret(result)
    }

    /// Safe core of [`getaddrinfo`](Self::getaddrinfo): the addresses
    /// (port from `service`) or an `EAI_*` code.
    pub fn addr_info(
        &self,
        node: Option<&str>,
        service: Option<&str>,
        family: i32,
        socktype: i32,
    ) -> Result<Vec<(SocketAddrV4, i32)>, i32> {
        match family {
            AF_UNSPEC | AF_INET => {}
            AF_INET6 => return Err(EAI_FAMILY),
            _ => return Err(EAI_FAMILY),
        }
        let types: &[i32] = match socktype {
            0 => &[SOCK_STREAM, SOCK_DGRAM],
            SOCK_STREAM | SOCK_DGRAM => core::slice::from_ref(&socktype),
            _ => return Err(EAI_SOCKTYPE),
        };
        let port = match service {
            None => 0,
            Some(s) => s.parse::<u16>().map_err(|_| EAI_SERVICE)?,
        };
        let ips = match node {
            Some(n) => self.lookup(n).map_err(|_| EAI_NONAME)?,
            None if service.is_some() => alloc::vec![Ipv4Addr::LOCALHOST],
            None => return Err(EAI_NONAME),
        };
        if ips.is_empty() {
            return Err(EAI_NONAME);
        }
        Ok(ips
            .iter()
            .flat_map(|ip| types.iter().map(|t| (SocketAddrV4::new(*ip, port), *t)))
            .collect())
    }

    /// `sys_getaddrinfo`: a list of `addrinfo` for `nodename` (a dotted
    /// address, `localhost`, or with feature `dns` a name) and `servname`
    /// (a port number or null); `hints` may ask for `AF_INET`/`AF_UNSPEC`
    /// and a socket type. 0 and `*res` set, or an `EAI_*` code (positive,
    /// as std expects). Free the list with
    /// [`freeaddrinfo`](Self::freeaddrinfo).
    ///
    /// # Safety
    /// `nodename`/`servname` null or NUL-terminated, `hints` null or a
    /// readable `addrinfo`, `res` a writable pointer.
    pub unsafe fn getaddrinfo(
        &self,
        nodename: *const u8,
        servname: *const u8,
        hints: *const addrinfo,
        res: *mut *mut addrinfo,
    ) -> i32 {
        let arg = |p: *const u8| -> Result<Option<&str>, i32> {
            if p.is_null() {
                return Ok(None);
            }
            // SAFETY: forwarded contract.
            let bytes = unsafe { user::c_str(p, 256) }.map_err(|_| EAI_NONAME)?;
            core::str::from_utf8(bytes)
                .map(Some)
                .map_err(|_| EAI_NONAME)
        };
        let result = (|| {
            let node = arg(nodename)?;
            let service = arg(servname)?;
            let (family, socktype) = if hints.is_null() {
                (AF_UNSPEC, 0)
            } else {
                // SAFETY: forwarded contract.
                let h = unsafe { user::read(hints) }.map_err(|_| abi::EAI_SYSTEM)?;
                (h.ai_family, h.ai_socktype)
            };
            let list = self.addr_info(node, service, family, socktype)?;
            let items: Vec<([u8; SOCKADDR_IN_LEN], i32, i32)> = list
                .into_iter()
                .map(|(addr, socktype)| {
                    let protocol = if socktype == SOCK_STREAM {
                        IPPROTO_TCP
                    } else {
                        IPPROTO_UDP
                    };
                    (encode(addr), socktype, protocol)
                })
                .collect();
            let head = user::addrinfo_list(&items);
            // SAFETY: forwarded contract.
            if unsafe { user::write(res, head) }.is_err() {
                // SAFETY: `head` is the list just built, not handed out.
                unsafe { user::free_addrinfo(head) };
                return Err(abi::EAI_SYSTEM);
            }
            Ok(0)
        })();
        result.unwrap_or_else(|e| e)
    }

    /// `sys_freeaddrinfo`: frees a list from
    /// [`getaddrinfo`](Self::getaddrinfo) (null is ignored).
    ///
    /// # Safety
    /// `ai` is null or a list returned by `getaddrinfo` and not freed yet.
    pub unsafe fn freeaddrinfo(&self, ai: *mut addrinfo) {
        // SAFETY: forwarded contract.
        unsafe { user::free_addrinfo(ai) }
    }
}

/// An address argument: `EINVAL` for a length beyond a
/// `sockaddr_storage`, `EFAULT` for null.
///
/// # Safety
/// `name` is valid for `len` readable bytes.
unsafe fn sockaddr_arg<'b>(name: *const sockaddr, len: socklen_t) -> Result<&'b [u8], Errno> {
    let len = usize::try_from(len).map_err(|_| Errno::EINVAL)?;
    if len > SOCKADDR_MAX_LEN {
        return Err(Errno::EINVAL);
    }
    if name.is_null() {
        return Err(Errno::EFAULT);
    }
    // SAFETY: forwarded contract.
    unsafe { user::slice(name.cast(), len) }
}
