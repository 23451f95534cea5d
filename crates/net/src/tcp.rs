//! TCP: listeners with a backlog of smoltcp sockets, and streams.

use alloc::sync::Arc;
use alloc::vec;
use alloc::vec::Vec;
use core::net::SocketAddrV4;
use core::time::Duration;

use smoltcp::iface::{SocketHandle, SocketSet};
use smoltcp::socket::tcp::{self, State};
use smoltcp::wire::{IpAddress, IpEndpoint};

use crate::poll::PollEvents;
use crate::stack::{Closing, Entry, Inner, Proto, Shared, SocketId, Stack, Try, endpoint_v4};
use crate::{Config, Errno};

/// Which half of a connection [`TcpStream::shutdown`] closes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shutdown {
    /// No more reads: later reads return 0.
    Read,
    /// No more writes: the peer sees end of file.
    Write,
    /// Both.
    Both,
}

pub(crate) struct StreamEntry {
    handle: SocketHandle,
    /// The ephemeral port this connection claimed (accepted streams share
    /// their listener's port and claim none).
    port: Option<u16>,
    nonblocking: bool,
    read_timeout: Option<Duration>,
    write_timeout: Option<Duration>,
    read_closed: bool,
    write_closed: bool,
    /// The connection reached ESTABLISHED once.
    established: bool,
}

pub(crate) struct ListenerEntry {
    pub(crate) port: u16,
    backlog: usize,
    slots: Vec<SocketHandle>,
    nonblocking: bool,
    timeout: Option<Duration>,
}

impl ListenerEntry {
    /// Slots still listening (free for a new SYN).
    pub(crate) fn listening(&self, sockets: &SocketSet<'_>) -> usize {
        self.slots
            .iter()
            .filter(|h| sockets.get::<tcp::Socket>(**h).state() == State::Listen)
            .count()
    }
}

fn new_socket(config: &Config) -> tcp::Socket<'static> {
    let rx = tcp::SocketBuffer::new(vec![0; config.tcp_rx_buffer]);
    let tx = tcp::SocketBuffer::new(vec![0; config.tcp_tx_buffer]);
    tcp::Socket::new(rx, tx)
}

/// Whether a dropped connection may leave the socket set (see
/// [`Closing`]). Data arriving after the application let go resets the
/// connection, as on Linux.
pub(crate) fn closing_done(sockets: &mut SocketSet<'static>, c: &Closing) -> bool {
    let s = sockets.get_mut::<tcp::Socket>(c.handle);
    match s.state() {
        State::TimeWait => true,
        State::Closed | State::Listen => c.polls >= 1,
        _ if s.can_recv() => {
            s.abort();
            false
        }
        _ => false,
    }
}

/// Whether connection `s` has nothing of ours left to deliver: its send
/// queue is empty (smoltcp keeps bytes until they are acknowledged) and no
/// FIN of ours waits for its acknowledgement.
pub(crate) fn delivered(s: &tcp::Socket) -> bool {
    s.send_queue() == 0
        && !matches!(
            s.state(),
            State::SynSent | State::SynReceived | State::FinWait1 | State::Closing | State::LastAck
        )
}

/// Closes every open stream gracefully (its queued data, then a FIN), as
/// Linux closes a process's sockets when it exits; the `TcpStream`s stay
/// valid but can send nothing more.
pub(crate) fn close_all(inner: &mut Inner) {
    let handles: Vec<SocketHandle> = inner
        .entries()
        .filter_map(|e| match e {
            Entry::Stream(s) => Some(s.handle),
            _ => None,
        })
        .collect();
    for handle in handles {
        let s = inner.sockets.get_mut::<tcp::Socket>(handle);
        if s.may_send() {
            s.close();
        }
    }
}

/// How many connections, open or closing, still have something of ours
/// to deliver (see [`delivered`]).
pub(crate) fn undelivered(inner: &mut Inner) -> usize {
    let mut handles: Vec<SocketHandle> = inner
        .entries()
        .filter_map(|e| match e {
            Entry::Stream(s) => Some(s.handle),
            _ => None,
        })
        .collect();
    handles.extend(inner.closing.iter().map(|c| c.handle));
    handles
        .into_iter()
        .filter(|&h| !delivered(inner.sockets.get::<tcp::Socket>(h)))
        .count()
}

fn stream(inner: &mut Inner, id: SocketId) -> Result<&mut StreamEntry, Errno> {
    match inner.entry_mut(id) {
        Some(Entry::Stream(s)) => Ok(s),
        _ => Err(Errno::EBADF),
    }
}

fn listener(inner: &mut Inner, id: SocketId) -> Result<&mut ListenerEntry, Errno> {
    match inner.entry_mut(id) {
        Some(Entry::Listener(l)) => Ok(l),
        _ => Err(Errno::EBADF),
    }
}

impl Stack {
    /// Listens on `port` (0: an ephemeral port) with `backlog` (at least 1)
    /// connections accepted by the stack before [`TcpListener::accept`].
    pub fn tcp_listen(&self, port: u16, backlog: usize) -> Result<TcpListener, Errno> {
        let backlog = backlog.max(1);
        let platform = self.shared.platform.clone();
        let (id, _) = self.shared.with(|inner, _| {
            let result = (|| {
                inner.check_room(backlog)?;
                let port = inner.claim_port(Proto::Tcp, port, &*platform)?;
                let mut slots = Vec::with_capacity(backlog);
                for _ in 0..backlog {
                    let mut s = new_socket(&inner.config);
                    if s.listen(port).is_err() {
                        for h in slots {
                            inner.remove_socket(h);
                        }
                        inner.release_port(Proto::Tcp, port);
                        return Err(Errno::EINVAL);
                    }
                    slots.push(inner.add_socket(s));
                }
                Ok(inner.insert(Entry::Listener(ListenerEntry {
                    port,
                    backlog,
                    slots,
                    nonblocking: false,
                    timeout: None,
                })))
            })();
            (result, false)
        });
        Ok(TcpListener {
            shared: self.shared.clone(),
            id: id?,
        })
    }

    /// Connects to `addr`; ETIMEDOUT after `timeout` (default: the
    /// configuration's connect timeout), ECONNREFUSED if the peer resets.
    pub fn tcp_connect(
        &self,
        addr: SocketAddrV4,
        timeout: Option<Duration>,
    ) -> Result<TcpStream, Errno> {
        if addr.port() == 0 || addr.ip().is_unspecified() {
            return Err(Errno::EINVAL);
        }
        let timeout = timeout.or(self.shared.lock().config.connect_timeout);
        let deadline = timeout.map(|t| self.shared.deadline_after(t));
        self.shared
            .block(deadline, false, Errno::ETIMEDOUT, |inner, _| {
                if inner.configured {
                    Try::Done(Ok(()))
                } else {
                    Try::Pending
                }
            })?;
        let conn = self.tcp_connect_start(addr)?;
        self.shared.block(
            deadline,
            false,
            Errno::ETIMEDOUT,
            |inner, _| match connect_state(inner, conn.id) {
                Ok(true) => Try::Done(Ok(())),
                Ok(false) => Try::Pending,
                Err(e) => Try::Done(Err(e)),
            },
        )?;
        Ok(conn)
    }

    /// Starts connecting to `addr` and returns at once (a non-blocking
    /// `connect(2)`): the stream becomes writable in
    /// [`Stack::poll_sockets`] when connected, or reports ERR/HUP, with the
    /// reason in [`TcpStream::take_error`]. ENETUNREACH while the interface
    /// has no address.
    pub fn tcp_connect_start(&self, addr: SocketAddrV4) -> Result<TcpStream, Errno> {
        if addr.port() == 0 || addr.ip().is_unspecified() {
            return Err(Errno::EINVAL);
        }
        let platform = self.shared.platform.clone();
        let (id, _) = self.shared.with(|inner, _| {
            let result = (|| {
                if !inner.configured {
                    return Err(Errno::ENETUNREACH);
                }
                inner.check_room(1)?;
                let port = inner.claim_port(Proto::Tcp, 0, &*platform)?;
                let mut s = new_socket(&inner.config);
                let remote = IpEndpoint::new(IpAddress::Ipv4(*addr.ip()), addr.port());
                if let Err(e) = s.connect(inner.iface.context(), remote, port) {
                    inner.release_port(Proto::Tcp, port);
                    return Err(match e {
                        tcp::ConnectError::Unaddressable => Errno::ENETUNREACH,
                        tcp::ConnectError::InvalidState => Errno::EINVAL,
                    });
                }
                let handle = inner.add_socket(s);
                Ok(inner.insert(Entry::Stream(StreamEntry {
                    handle,
                    port: Some(port),
                    nonblocking: false,
                    read_timeout: None,
                    write_timeout: None,
                    read_closed: false,
                    write_closed: false,
                    established: false,
                })))
            })();
            let acted = result.is_ok();
            (result, acted)
        });
        Ok(TcpStream {
            shared: self.shared.clone(),
            id: id?,
        })
    }
}

/// Whether a connecting stream is connected (false: still trying);
/// ECONNREFUSED if the attempt failed.
fn connect_state(inner: &mut Inner, id: SocketId) -> Result<bool, Errno> {
    let e = stream(inner, id)?;
    if e.established {
        return Ok(true);
    }
    let handle = e.handle;
    match inner.sockets.get::<tcp::Socket>(handle).state() {
        State::SynSent | State::SynReceived => Ok(false),
        State::Closed | State::Listen => Err(Errno::ECONNREFUSED),
        _ => {
            stream(inner, id)?.established = true;
            Ok(true)
        }
    }
}

/// A listening TCP socket. Dropping it closes the port and resets the
/// connections nobody accepted.
pub struct TcpListener {
    shared: Arc<Shared>,
    id: SocketId,
}

impl TcpListener {
    /// This socket's id in its stack.
    pub fn id(&self) -> SocketId {
        self.id
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.shared
            .with_entry(|inner| listener(inner, self.id).map(|l| l.port))
            .unwrap_or(0)
    }

    /// Waits for a connection; EAGAIN if non-blocking (or after the
    /// timeout) and none is ready.
    pub fn accept(&self) -> Result<(TcpStream, SocketAddrV4), Errno> {
        let (nonblocking, timeout) = self
            .shared
            .with_entry(|inner| listener(inner, self.id).map(|l| (l.nonblocking, l.timeout)))?;
        let deadline = timeout.map(|t| self.shared.deadline_after(t));
        let (id, peer) =
            self.shared.block(
                deadline,
                nonblocking,
                Errno::EAGAIN,
                |inner, _| match accept_one(inner, self.id) {
                    Ok(Some(r)) => Try::Done(Ok(r)),
                    Ok(None) => Try::Pending,
                    Err(e) => Try::Done(Err(e)),
                },
            )?;
        Ok((
            TcpStream {
                shared: self.shared.clone(),
                id,
            },
            peer,
        ))
    }

    /// Non-blocking mode: [`TcpListener::accept`] returns EAGAIN instead of
    /// waiting.
    pub fn set_nonblocking(&self, nonblocking: bool) -> Result<(), Errno> {
        self.shared
            .with_entry(|inner| listener(inner, self.id).map(|l| l.nonblocking = nonblocking))
    }

    /// How long [`TcpListener::accept`] waits (None: forever).
    pub fn set_timeout(&self, timeout: Option<Duration>) -> Result<(), Errno> {
        self.shared
            .with_entry(|inner| listener(inner, self.id).map(|l| l.timeout = timeout))
    }
}

/// Hands out an established slot of listener `id` and refills it.
fn accept_one(inner: &mut Inner, id: SocketId) -> Result<Option<(SocketId, SocketAddrV4)>, Errno> {
    let l = listener(inner, id)?;
    let port = l.port;
    let mut slots = core::mem::take(&mut l.slots);
    let backlog = l.backlog;
    let mut found = None;
    let mut i = 0;
    while i < slots.len() {
        let s = inner.sockets.get_mut::<tcp::Socket>(slots[i]);
        match s.state() {
            State::Listen | State::SynReceived => i += 1,
            // A slot whose handshake failed for good: recycle it.
            State::Closed => {
                if s.listen(port).is_err() {
                    log::warn!("net: cannot re-listen on port {port}");
                }
                i += 1;
            }
            _ if found.is_none() => {
                found = Some(slots.swap_remove(i));
            }
            _ => i += 1,
        }
    }
    let result = if let Some(handle) = found {
        let peer = inner
            .sockets
            .get::<tcp::Socket>(handle)
            .remote_endpoint()
            .and_then(endpoint_v4);
        let stream_id = inner.insert(Entry::Stream(StreamEntry {
            handle,
            port: None,
            nonblocking: false,
            read_timeout: None,
            write_timeout: None,
            read_closed: false,
            write_closed: false,
            established: true,
        }));
        Some((
            stream_id,
            peer.unwrap_or(SocketAddrV4::new(core::net::Ipv4Addr::UNSPECIFIED, 0)),
        ))
    } else {
        None
    };
    // Refill the backlog (the accepted socket moved to the stream).
    while slots.len() < backlog && inner.check_room(1).is_ok() {
        let mut s = new_socket(&inner.config);
        if s.listen(port).is_err() {
            break;
        }
        slots.push(inner.add_socket(s));
    }
    if let Ok(l) = listener(inner, id) {
        l.slots = slots;
    }
    Ok(result)
}

impl Drop for TcpListener {
    fn drop(&mut self) {
        self.shared.with(|inner, _| {
            let Some(Entry::Listener(l)) = inner.take(self.id) else {
                return ((), false);
            };
            for handle in l.slots {
                let s = inner.sockets.get_mut::<tcp::Socket>(handle);
                match s.state() {
                    State::Listen | State::Closed => inner.remove_socket(handle),
                    _ => {
                        s.abort();
                        inner.closing.push(Closing {
                            handle,
                            port: None,
                            polls: 0,
                            give_up: None,
                        });
                    }
                }
            }
            inner.release_port(Proto::Tcp, l.port);
            ((), true)
        });
    }
}

/// A TCP connection. Dropping it closes it gracefully (FIN), or resets it
/// if received data was left unread.
pub struct TcpStream {
    shared: Arc<Shared>,
    id: SocketId,
}

impl TcpStream {
    /// This socket's id in its stack.
    pub fn id(&self) -> SocketId {
        self.id
    }

    /// Reads into `buf`; Ok(0) at end of stream. EAGAIN if non-blocking or
    /// after the read timeout, ECONNRESET if the peer reset the connection.
    pub fn read(&self, buf: &mut [u8]) -> Result<usize, Errno> {
        let (nonblocking, timeout) = self
            .shared
            .with_entry(|inner| stream(inner, self.id).map(|e| (e.nonblocking, e.read_timeout)))?;
        if buf.is_empty() {
            return Ok(0);
        }
        let deadline = timeout.map(|t| self.shared.deadline_after(t));
        self.shared
            .block(deadline, nonblocking, Errno::EAGAIN, |inner, _| {
                let e = match stream(inner, self.id) {
                    Ok(e) => e,
                    Err(err) => return Try::Done(Err(err)),
                };
                if e.read_closed {
                    return Try::Done(Ok(0));
                }
                let (handle, write_closed, established) = (e.handle, e.write_closed, e.established);
                let s = inner.sockets.get_mut::<tcp::Socket>(handle);
                if s.can_recv() {
                    return Try::Done(match s.recv_slice(buf) {
                        Ok(n) => Ok(n),
                        Err(tcp::RecvError::Finished) => Ok(0),
                        Err(tcp::RecvError::InvalidState) => Err(Errno::ENOTCONN),
                    });
                }
                match s.state() {
                    State::SynSent
                    | State::SynReceived
                    | State::Established
                    | State::FinWait1
                    | State::FinWait2 => Try::Pending,
                    State::CloseWait | State::LastAck | State::Closing | State::TimeWait => {
                        Try::Done(Ok(0))
                    }
                    State::Closed if write_closed => Try::Done(Ok(0)),
                    State::Closed if established => Try::Done(Err(Errno::ECONNRESET)),
                    State::Closed | State::Listen => Try::Done(Err(Errno::ENOTCONN)),
                }
            })
    }

    /// Queues as much of `buf` as fits in the send buffer (at least one
    /// byte unless it fails). EPIPE once the connection is closed for
    /// writing, EAGAIN if non-blocking or after the write timeout.
    pub fn write(&self, buf: &[u8]) -> Result<usize, Errno> {
        let (nonblocking, timeout) = self
            .shared
            .with_entry(|inner| stream(inner, self.id).map(|e| (e.nonblocking, e.write_timeout)))?;
        if buf.is_empty() {
            return Ok(0);
        }
        let deadline = timeout.map(|t| self.shared.deadline_after(t));
        self.shared
            .block(deadline, nonblocking, Errno::EAGAIN, |inner, _| {
                let e = match stream(inner, self.id) {
                    Ok(e) => e,
                    Err(err) => return Try::Done(Err(err)),
                };
                if e.write_closed {
                    return Try::Done(Err(Errno::EPIPE));
                }
                let (established, handle) = (e.established, e.handle);
                let s = inner.sockets.get_mut::<tcp::Socket>(handle);
                match s.state() {
                    State::SynSent | State::SynReceived => Try::Pending,
                    State::Established | State::CloseWait => {
                        if !s.can_send() {
                            return Try::Pending;
                        }
                        match s.send_slice(buf) {
                            Ok(0) => Try::Pending,
                            Ok(n) => Try::Done(Ok(n)),
                            Err(tcp::SendError::InvalidState) => Try::Done(Err(Errno::EPIPE)),
                        }
                    }
                    State::Closed if !established => Try::Done(Err(Errno::ENOTCONN)),
                    _ => Try::Done(Err(Errno::EPIPE)),
                }
            })
    }

    /// Writes all of `buf` (loops over [`TcpStream::write`]).
    pub fn write_all(&self, mut buf: &[u8]) -> Result<(), Errno> {
        while !buf.is_empty() {
            let n = self.write(buf)?;
            buf = &buf[n..];
        }
        Ok(())
    }

    /// Closes one or both halves; closing the write half sends FIN after
    /// the queued data.
    pub fn shutdown(&self, how: Shutdown) -> Result<(), Errno> {
        self.shared
            .with(|inner, _| {
                let e = match stream(inner, self.id) {
                    Ok(e) => e,
                    Err(err) => return (Err(err), false),
                };
                if matches!(how, Shutdown::Read | Shutdown::Both) {
                    e.read_closed = true;
                }
                if matches!(how, Shutdown::Write | Shutdown::Both) {
                    e.write_closed = true;
                    let handle = e.handle;
                    inner.sockets.get_mut::<tcp::Socket>(handle).close();
                }
                (Ok(()), true)
            })
            .0
    }

    /// The pending error of a connection started with
    /// [`Stack::tcp_connect_start`], like `SO_ERROR`: Some(ECONNREFUSED) if
    /// the attempt failed, None while connecting or once connected.
    pub fn take_error(&self) -> Result<Option<Errno>, Errno> {
        self.shared
            .with_entry(|inner| match connect_state(inner, self.id) {
                Ok(_) => Ok(None),
                Err(Errno::EBADF) => Err(Errno::EBADF),
                Err(e) => Ok(Some(e)),
            })
    }

    /// Non-blocking mode: reads and writes return EAGAIN instead of waiting.
    pub fn set_nonblocking(&self, nonblocking: bool) -> Result<(), Errno> {
        self.shared
            .with_entry(|inner| stream(inner, self.id).map(|e| e.nonblocking = nonblocking))
    }

    /// How long a read waits before EAGAIN (None: forever).
    pub fn set_read_timeout(&self, timeout: Option<Duration>) -> Result<(), Errno> {
        self.shared
            .with_entry(|inner| stream(inner, self.id).map(|e| e.read_timeout = timeout))
    }

    /// How long a write waits before EAGAIN (None: forever).
    pub fn set_write_timeout(&self, timeout: Option<Duration>) -> Result<(), Errno> {
        self.shared
            .with_entry(|inner| stream(inner, self.id).map(|e| e.write_timeout = timeout))
    }

    /// Disables Nagle's algorithm (small writes leave at once).
    pub fn set_nodelay(&self, nodelay: bool) -> Result<(), Errno> {
        self.shared.with_entry(|inner| {
            let handle = stream(inner, self.id)?.handle;
            inner
                .sockets
                .get_mut::<tcp::Socket>(handle)
                .set_nagle_enabled(!nodelay);
            Ok(())
        })
    }

    /// The peer's address; ENOTCONN once the connection is gone.
    pub fn peer_addr(&self) -> Result<SocketAddrV4, Errno> {
        self.endpoint(|s| s.remote_endpoint())
    }

    /// This end's address; ENOTCONN once the connection is gone.
    pub fn local_addr(&self) -> Result<SocketAddrV4, Errno> {
        self.endpoint(|s| s.local_endpoint())
    }

    fn endpoint(
        &self,
        f: impl Fn(&tcp::Socket<'_>) -> Option<IpEndpoint>,
    ) -> Result<SocketAddrV4, Errno> {
        self.shared.with_entry(|inner| {
            let handle = stream(inner, self.id)?.handle;
            f(inner.sockets.get::<tcp::Socket>(handle))
                .and_then(endpoint_v4)
                .ok_or(Errno::ENOTCONN)
        })
    }
}

impl Drop for TcpStream {
    fn drop(&mut self) {
        self.shared.with(|inner, _| {
            let Some(Entry::Stream(e)) = inner.take(self.id) else {
                return ((), false);
            };
            let s = inner.sockets.get_mut::<tcp::Socket>(e.handle);
            if s.can_recv() {
                s.abort();
            } else {
                s.close();
            }
            inner.closing.push(Closing {
                handle: e.handle,
                port: e.port,
                polls: 0,
                give_up: None,
            });
            ((), true)
        });
    }
}

/// `poll(2)` readiness of a stream.
pub(crate) fn stream_events(inner: &Inner, e: &StreamEntry) -> PollEvents {
    let s = inner.sockets.get::<tcp::Socket>(e.handle);
    let mut ev = PollEvents::empty();
    let state = s.state();
    if s.can_recv()
        || e.read_closed
        || matches!(
            state,
            State::CloseWait | State::LastAck | State::Closing | State::TimeWait | State::Closed
        )
    {
        ev |= PollEvents::IN;
    }
    if s.can_send() || (e.write_closed && !matches!(state, State::SynSent | State::SynReceived)) {
        ev |= PollEvents::OUT;
    }
    if state == State::Closed {
        ev |= PollEvents::HUP;
        if !e.write_closed {
            ev |= PollEvents::ERR;
        }
    }
    ev
}

/// `poll(2)` readiness of a listener: readable when a connection waits.
pub(crate) fn listener_events(inner: &Inner, l: &ListenerEntry) -> PollEvents {
    let ready = l.slots.iter().any(|h| {
        !matches!(
            inner.sockets.get::<tcp::Socket>(*h).state(),
            State::Listen | State::SynReceived | State::Closed
        )
    });
    if ready {
        PollEvents::IN
    } else {
        PollEvents::empty()
    }
}
