//! The worker thread: a smoltcp interface standing in for the gateway, the
//! relays between its TCP sockets and host sockets, the UDP NAT, and one
//! poll(2) loop over all of them plus the wake-up eventfd.

use std::collections::{HashMap, HashSet, VecDeque};
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, SocketAddrV4, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use smoltcp::iface::{self, Interface, SocketHandle, SocketSet};
use smoltcp::phy::{self, Device, DeviceCapabilities, Medium};
use smoltcp::socket::tcp;
use smoltcp::wire::{EthernetAddress, HardwareAddress, IpAddress, IpCidr, IpListenEndpoint};

use crate::Config;
use crate::frame::{Filter, FourTuple, MAX_GUEST_FRAME, Verdict};
use crate::queue::Shared;
use crate::sys;
use crate::udp::{UdpKey, UdpNat};

/// Per-direction buffer of each relayed TCP connection: the most a connection
/// holds in the backend, and the guest-side window. As large as the guest
/// stack's receive buffer, so that this end's window does not limit a transfer.
const TCP_BUFFER: usize = 512 * 1024;
/// Guest frames handled per loop turn before host sockets get a look.
const FRAMES_PER_TURN: usize = 256;
/// How long a host connect may take before the guest gets a RST.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest sleep, so housekeeping (UDP expiry, connect timeouts) runs.
const MAX_SLEEP: Duration = Duration::from_secs(1);
/// Sleep while the guest queue is full and only `recv` can make room.
const FULL_SLEEP: Duration = Duration::from_millis(50);
/// Local ports for connections into the guest (port forwards).
const EPHEMERAL: std::ops::RangeInclusive<u16> = 49152..=65535;

/// Everything the worker thread needs, moved into it.
#[derive(Debug)]
pub(crate) struct Worker {
    config: Config,
    prefix: u8,
    dns_upstream: Option<SocketAddr>,
    listeners: Vec<(TcpListener, u16)>,
    shared: Arc<Shared>,
}

impl Worker {
    pub(crate) fn new(
        config: Config,
        prefix: u8,
        dns_upstream: Option<SocketAddr>,
        listeners: Vec<(TcpListener, u16)>,
        shared: Arc<Shared>,
    ) -> Self {
        Self {
            config,
            prefix,
            dns_upstream,
            listeners,
            shared,
        }
    }

    /// Runs until [`Shared::stop`] is set.
    pub(crate) fn run(self) {
        State::new(self).run();
    }
}

/// The smoltcp device: one guest frame at a time in, frames to the guest
/// straight into the shared queue.
struct Link {
    shared: Arc<Shared>,
    rx: Option<Vec<u8>>,
}

struct RxTok(Vec<u8>);
struct TxTok<'a>(&'a Shared);

impl phy::RxToken for RxTok {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(&self.0)
    }
}

impl phy::TxToken for TxTok<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let mut buf = vec![0u8; len];
        let r = f(&mut buf);
        log::trace!("usernet: {len}-byte frame to the guest");
        self.0.push_to_guest(buf);
        r
    }
}

impl Device for Link {
    type RxToken<'a> = RxTok;
    type TxToken<'a> = TxTok<'a>;

    fn receive(
        &mut self,
        _: smoltcp::time::Instant,
    ) -> Option<(Self::RxToken<'_>, Self::TxToken<'_>)> {
        let frame = self.rx.take()?;
        Some((RxTok(frame), TxTok(&self.shared)))
    }

    fn transmit(&mut self, _: smoltcp::time::Instant) -> Option<Self::TxToken<'_>> {
        self.shared.guest_has_room().then_some(TxTok(&self.shared))
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ethernet;
        caps.max_transmission_unit = MAX_GUEST_FRAME;
        caps
    }
}

/// A host connect in progress for a guest SYN.
struct Pending {
    stream: TcpStream,
    syn: Vec<u8>,
    since: Instant,
}

/// One relayed TCP connection: a smoltcp socket facing the guest, a host socket.
struct Conn {
    handle: SocketHandle,
    host: TcpStream,
    /// The guest's view, for outbound connections (to recognise SYN repeats).
    tuple: Option<FourTuple>,
    /// Local port in use, for connections into the guest.
    local_port: Option<u16>,
    /// The smoltcp socket got past the handshake.
    established: bool,
    /// The host sent FIN; the smoltcp socket was closed.
    host_eof: bool,
    /// The guest sent FIN; the host socket was shut down for writing.
    host_shut: bool,
    /// The host socket may have data (POLLIN seen, no EAGAIN since).
    readable: bool,
    /// A write to the host socket hit EAGAIN; wait for POLLOUT.
    write_blocked: bool,
    /// Writing to the host failed for good; guest data is discarded.
    write_dead: bool,
}

#[derive(Clone, Copy)]
enum Tag {
    Wake,
    Listener(usize),
    Pending(FourTuple),
    Conn(u64),
    Udp(UdpKey),
}

struct State {
    shared: Arc<Shared>,
    iface: Interface,
    sockets: SocketSet<'static>,
    link: Link,
    filter: Filter,
    gateway: Ipv4Addr,
    dns: Ipv4Addr,
    mask: u32,
    dns_upstream: Option<SocketAddr>,
    listeners: Vec<(TcpListener, u16)>,
    pending: HashMap<FourTuple, Pending>,
    conns: HashMap<u64, Conn>,
    by_tuple: HashMap<FourTuple, u64>,
    used_ports: HashSet<u16>,
    next_id: u64,
    next_port: u16,
    max_conns: usize,
    udp: UdpNat,
    inbox: VecDeque<Vec<u8>>,
    pollfds: Vec<libc::pollfd>,
    tags: Vec<Tag>,
    buf: Vec<u8>,
}

fn now_ts() -> smoltcp::time::Instant {
    smoltcp::time::Instant::now()
}

impl State {
    fn new(w: Worker) -> Self {
        let mut link = Link {
            shared: w.shared.clone(),
            rx: None,
        };
        let our_mac = EthernetAddress(w.config.gateway_mac);
        let mut icfg = iface::Config::new(HardwareAddress::Ethernet(our_mac));
        icfg.random_seed = random_seed();
        let mut iface = Interface::new(icfg, &mut link, now_ts());
        let prefix = w.prefix;
        iface.update_ip_addrs(|addrs| {
            for ip in [w.config.gateway, w.config.dns] {
                // Two addresses fit in smoltcp's fixed table (at least 2 slots).
                let _ = addrs.push(IpCidr::new(IpAddress::Ipv4(ip), prefix));
            }
        });
        // Accept TCP for every destination: each one is a remote host to relay to.
        iface.set_any_ip(true);
        let start = EPHEMERAL.start() + (random_seed() % 4096) as u16;
        Self {
            shared: w.shared,
            iface,
            sockets: SocketSet::new(Vec::new()),
            link,
            filter: Filter {
                guest: w.config.guest,
                gateway: w.config.gateway,
                dns: w.config.dns,
                our_mac,
                guest_mac: w.config.guest_mac.map(EthernetAddress),
                mac_fixed: w.config.guest_mac.is_some(),
            },
            gateway: w.config.gateway,
            dns: w.config.dns,
            mask: u32::from(w.config.mask),
            dns_upstream: w.dns_upstream,
            listeners: w.listeners,
            pending: HashMap::new(),
            conns: HashMap::new(),
            by_tuple: HashMap::new(),
            used_ports: HashSet::new(),
            next_id: 0,
            next_port: start,
            max_conns: w.config.max_connections,
            udp: UdpNat::new(w.config.max_connections, w.config.udp_timeout),
            inbox: VecDeque::new(),
            pollfds: Vec::new(),
            tags: Vec::new(),
            buf: vec![0u8; 65536],
        }
    }

    fn run(&mut self) {
        loop {
            if self.shared.stop.load(Ordering::SeqCst) {
                return;
            }
            self.shared.wake.drain();
            let now = Instant::now();
            self.shared.take_to_net(FRAMES_PER_TURN, &mut self.inbox);
            while let Some(frame) = self.inbox.pop_front() {
                self.guest_frame(frame, now);
            }
            self.dispatch(now);
            let finished = self.pump_all();
            self.iface.poll(now_ts(), &mut self.link, &mut self.sockets);
            // Only now: that poll sent what the finished sockets still owed
            // the guest, such as the ACK of its data and FIN.
            for id in finished {
                self.remove_conn(id);
            }
            self.housekeeping(now);
            let timeout = self.build_pollfds();
            if let Err(e) = sys::poll(&mut self.pollfds, Some(timeout)) {
                // Not expected (poll(2) fails only on bad arguments or no memory);
                // keep serving rather than cut the guest off.
                log::error!("usernet: poll: {e}");
                for p in &mut self.pollfds {
                    p.revents = 0;
                }
                std::thread::sleep(FULL_SLEEP);
            }
        }
    }

    fn conn_count(&self) -> usize {
        self.conns.len() + self.pending.len()
    }

    /// Hands one frame to smoltcp.
    fn feed(&mut self, frame: Vec<u8>) {
        self.link.rx = Some(frame);
        let _ = self
            .iface
            .poll_ingress_single(now_ts(), &mut self.link, &mut self.sockets);
        self.link.rx = None;
    }

    fn guest_frame(&mut self, frame: Vec<u8>, now: Instant) {
        let verdict = self.filter.classify(&frame);
        log::trace!("usernet: guest frame of {} bytes: {verdict:?}", frame.len());
        match verdict {
            Verdict::Drop => {
                self.shared.dropped.fetch_add(1, Ordering::Relaxed);
            }
            Verdict::Feed => self.feed(frame),
            Verdict::Syn(t) => self.syn(t, frame, now),
            Verdict::Udp {
                src_port,
                dst,
                payload,
            } => {
                let Some(host) = self.udp_target(dst) else {
                    return;
                };
                if let Err(e) = self.udp.send((src_port, dst), host, payload, now) {
                    log::debug!("usernet: UDP {dst} (host {host}): {e}");
                }
            }
        }
    }

    fn in_subnet(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & self.mask == u32::from(self.filter.guest) & self.mask
    }

    /// Where a guest's TCP connection to `remote` goes on the host.
    fn tcp_target(&self, remote: SocketAddrV4) -> Option<SocketAddr> {
        let ip = *remote.ip();
        if ip == self.gateway {
            Some(SocketAddr::new(Ipv4Addr::LOCALHOST.into(), remote.port()))
        } else if ip == self.dns {
            (remote.port() == 53).then_some(self.dns_upstream?)
        } else if self.in_subnet(ip) {
            None
        } else {
            Some(remote.into())
        }
    }

    /// Where a guest's UDP datagram to `dst` goes on the host.
    fn udp_target(&self, dst: SocketAddrV4) -> Option<SocketAddr> {
        self.tcp_target(dst)
    }

    /// A guest SYN: start the host connect; smoltcp sees the SYN only once
    /// the host end is connected (or to answer RST).
    fn syn(&mut self, t: FourTuple, frame: Vec<u8>, now: Instant) {
        if self.by_tuple.contains_key(&t) {
            return self.feed(frame);
        }
        if self.pending.contains_key(&t) {
            return; // a repeated SYN while the host connect runs
        }
        // No listening socket for the SYN: smoltcp answers RST.
        if self.conn_count() >= self.max_conns {
            log::warn!("usernet: connection limit reached, refusing {}", t.remote);
            return self.feed(frame);
        }
        let Some(target) = self.tcp_target(t.remote) else {
            return self.feed(frame);
        };
        match sys::connect_nonblocking(target) {
            Ok((stream, true)) => self.accept_syn(t, stream, frame),
            Ok((stream, false)) => {
                self.pending.insert(
                    t,
                    Pending {
                        stream,
                        syn: frame,
                        since: now,
                    },
                );
            }
            Err(e) => {
                log::debug!("usernet: connect {target}: {e}");
                self.feed(frame);
            }
        }
    }

    /// The host end is connected: let a fresh listening socket take the SYN.
    fn accept_syn(&mut self, t: FourTuple, stream: TcpStream, syn: Vec<u8>) {
        let mut sock = new_tcp_socket();
        let ep = IpListenEndpoint {
            addr: Some(IpAddress::Ipv4(*t.remote.ip())),
            port: t.remote.port(),
        };
        if sock.listen(ep).is_err() {
            return self.feed(syn); // port 0: RST
        }
        let handle = self.sockets.add(sock);
        self.feed(syn);
        if self.sockets.get::<tcp::Socket>(handle).state() == tcp::State::Listen {
            // Not taken (e.g. no buffer for the reply): forget it; the guest retries.
            self.sockets.remove(handle);
            return;
        }
        let _ = stream.set_nodelay(true);
        let id = self.add_conn(handle, stream, Some(t), None);
        self.by_tuple.insert(t, id);
    }

    fn add_conn(
        &mut self,
        handle: SocketHandle,
        host: TcpStream,
        tuple: Option<FourTuple>,
        local_port: Option<u16>,
    ) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        self.conns.insert(
            id,
            Conn {
                handle,
                host,
                tuple,
                local_port,
                established: false,
                host_eof: false,
                host_shut: false,
                readable: true,
                write_blocked: false,
                write_dead: false,
            },
        );
        id
    }

    /// A host connection accepted on a forward: open a connection into the guest.
    fn inbound(&mut self, host: TcpStream, guest_port: u16) {
        if host.set_nonblocking(true).is_err() {
            return;
        }
        let _ = host.set_nodelay(true);
        let Some(port) = self.alloc_port() else {
            log::warn!("usernet: no free local port for a forwarded connection");
            return;
        };
        let mut sock = new_tcp_socket();
        let remote = (IpAddress::Ipv4(self.filter.guest), guest_port);
        let local = (IpAddress::Ipv4(self.gateway), port);
        if let Err(e) = sock.connect(self.iface.context(), remote, local) {
            log::debug!("usernet: forward to guest port {guest_port}: {e}");
            return;
        }
        let handle = self.sockets.add(sock);
        self.used_ports.insert(port);
        self.add_conn(handle, host, None, Some(port));
    }

    fn alloc_port(&mut self) -> Option<u16> {
        let span = usize::from(EPHEMERAL.end() - EPHEMERAL.start()) + 1;
        for _ in 0..span {
            let p = self.next_port;
            self.next_port = if p >= *EPHEMERAL.end() {
                *EPHEMERAL.start()
            } else {
                p + 1
            };
            if !self.used_ports.contains(&p) {
                return Some(p);
            }
        }
        None
    }

    /// Acts on the revents of the last poll.
    fn dispatch(&mut self, now: Instant) {
        let events: Vec<(Tag, i16)> = self
            .tags
            .iter()
            .zip(&self.pollfds)
            .filter(|(_, p)| p.revents != 0)
            .map(|(t, p)| (*t, p.revents))
            .collect();
        for (tag, rev) in events {
            match tag {
                Tag::Wake => {}
                Tag::Listener(i) => self.accept_forwards(i),
                Tag::Pending(t) => self.connect_done(t),
                Tag::Conn(id) => {
                    if let Some(c) = self.conns.get_mut(&id) {
                        if rev & (libc::POLLIN | libc::POLLHUP | libc::POLLERR) != 0 {
                            c.readable = true;
                        }
                        if rev & (libc::POLLOUT | libc::POLLHUP | libc::POLLERR) != 0 {
                            c.write_blocked = false;
                        }
                    }
                }
                Tag::Udp(key) => self.udp_in(key, now),
            }
        }
    }

    fn accept_forwards(&mut self, i: usize) {
        loop {
            let Some((listener, guest_port)) = self.listeners.get(i) else {
                return;
            };
            let guest_port = *guest_port;
            match listener.accept() {
                Ok((stream, peer)) => {
                    if self.conn_count() >= self.max_conns {
                        log::warn!("usernet: connection limit reached, closing {peer}");
                        continue;
                    }
                    self.inbound(stream, guest_port);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    log::warn!("usernet: accept on a forward: {e}");
                    return;
                }
            }
        }
    }

    fn connect_done(&mut self, t: FourTuple) {
        let Some(p) = self.pending.remove(&t) else {
            return;
        };
        let ok = matches!(p.stream.take_error(), Ok(None)) && p.stream.peer_addr().is_ok();
        if ok {
            self.accept_syn(t, p.stream, p.syn);
        } else {
            log::debug!("usernet: connect to {} failed", t.remote);
            self.feed(p.syn); // RST
        }
    }

    fn udp_in(&mut self, key: UdpKey, now: Instant) {
        let mut got = false;
        if let Some(m) = self.udp.maps.get(&key) {
            while self.shared.guest_has_room() {
                match m.sock.recv(&mut self.buf) {
                    Ok(n) => {
                        got = true;
                        let data = self.buf.get(..n).unwrap_or_default();
                        match self.filter.udp_frame(key.1, key.0, data) {
                            Some(frame) => {
                                self.shared.push_to_guest(frame);
                            }
                            None => log::debug!("usernet: UDP reply of {n} bytes dropped"),
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        log::debug!("usernet: UDP from {}: {e}", key.1);
                        break;
                    }
                }
            }
        }
        if got {
            self.udp.touch(&key, now);
        }
    }

    /// Pumps every connection; returns those that are finished, to be
    /// removed after the interface's next poll.
    fn pump_all(&mut self) -> Vec<u64> {
        let ids: Vec<u64> = self.conns.keys().copied().collect();
        ids.into_iter().filter(|&id| self.pump(id)).collect()
    }

    /// Moves data both ways for one connection; true when it is finished.
    fn pump(&mut self, id: u64) -> bool {
        let Some(c) = self.conns.get_mut(&id) else {
            return false;
        };
        let sock = self.sockets.get_mut::<tcp::Socket>(c.handle);
        if !matches!(
            sock.state(),
            tcp::State::Listen | tcp::State::SynSent | tcp::State::SynReceived | tcp::State::Closed
        ) {
            c.established = true;
        }
        // Guest → host, as far as the host socket takes it.
        while sock.can_recv() && !c.write_blocked {
            let host = &mut c.host;
            let dead = c.write_dead;
            let r = sock.recv(|buf| {
                if dead {
                    return (buf.len(), Ok(buf.len()));
                }
                match host.write(buf) {
                    Ok(n) => (n, Ok(n)),
                    Err(e) => (0, Err(e)),
                }
            });
            match r {
                Ok(Ok(0)) | Err(_) => break,
                Ok(Ok(_)) => {}
                Ok(Err(e)) if e.kind() == io::ErrorKind::WouldBlock => c.write_blocked = true,
                Ok(Err(e)) if e.kind() == io::ErrorKind::Interrupted => {}
                Ok(Err(e)) => {
                    log::debug!("usernet: host write: {e}");
                    c.write_dead = true;
                    sock.abort();
                }
            }
        }
        // The guest's FIN, once its data is through.
        if c.established
            && !c.host_shut
            && !sock.may_recv()
            && !sock.can_recv()
            && sock.state() != tcp::State::Closed
        {
            let _ = c.host.shutdown(Shutdown::Write);
            c.host_shut = true;
        }
        // Host → guest, as far as the socket's transmit buffer has room.
        while c.readable && !c.host_eof && sock.can_send() {
            let host = &mut c.host;
            let r = sock.send(|buf| match host.read(buf) {
                Ok(n) => (n, Ok(n)),
                Err(e) => (0, Err(e)),
            });
            match r {
                Ok(Ok(0)) => {
                    c.host_eof = true;
                    sock.close();
                }
                Ok(Ok(_)) => {}
                Ok(Err(e)) if e.kind() == io::ErrorKind::WouldBlock => c.readable = false,
                Ok(Err(e)) if e.kind() == io::ErrorKind::Interrupted => {}
                Ok(Err(e)) => {
                    log::debug!("usernet: host read: {e}");
                    c.host_eof = true;
                    sock.abort();
                }
                Err(_) => break,
            }
        }
        matches!(sock.state(), tcp::State::Closed | tcp::State::TimeWait)
            && (!sock.can_recv() || c.write_dead)
    }

    fn remove_conn(&mut self, id: u64) {
        let Some(c) = self.conns.remove(&id) else {
            return;
        };
        let sock = self.sockets.remove(c.handle);
        let reset = match sock {
            smoltcp::socket::Socket::Tcp(s) => {
                s.state() == tcp::State::Closed && !(c.host_eof && c.host_shut)
            }
            #[allow(
                unreachable_patterns,
                reason = "other socket kinds exist with more features"
            )]
            _ => false,
        };
        if reset {
            // The guest reset (or never accepted) the connection: tell the host peer so.
            sys::set_abortive_close(&c.host);
        }
        if let Some(t) = c.tuple {
            self.by_tuple.remove(&t);
        }
        if let Some(p) = c.local_port {
            self.used_ports.remove(&p);
        }
    }

    fn housekeeping(&mut self, now: Instant) {
        self.udp.expire(now);
        let stale: Vec<FourTuple> = self
            .pending
            .iter()
            .filter(|(_, p)| now.saturating_duration_since(p.since) > CONNECT_TIMEOUT)
            .map(|(t, _)| *t)
            .collect();
        for t in stale {
            if let Some(p) = self.pending.remove(&t) {
                log::debug!("usernet: connect to {} timed out", t.remote);
                self.feed(p.syn);
            }
        }
    }

    /// Fills the poll set for the next wait and returns how long to wait.
    fn build_pollfds(&mut self) -> Duration {
        use std::os::fd::AsRawFd;
        self.pollfds.clear();
        self.tags.clear();
        let mut push = |fd: i32, events: i16, tag: Tag| {
            self.pollfds.push(libc::pollfd {
                fd,
                events,
                revents: 0,
            });
            self.tags.push(tag);
        };
        push(self.shared.wake.raw(), libc::POLLIN, Tag::Wake);
        for (i, (l, _)) in self.listeners.iter().enumerate() {
            push(l.as_raw_fd(), libc::POLLIN, Tag::Listener(i));
        }
        for (t, p) in &self.pending {
            push(p.stream.as_raw_fd(), libc::POLLOUT, Tag::Pending(*t));
        }
        for (id, c) in &self.conns {
            let sock = self.sockets.get::<tcp::Socket>(c.handle);
            let mut events = 0;
            if !c.host_eof && sock.can_send() {
                events |= libc::POLLIN;
            }
            if c.write_blocked && sock.can_recv() {
                events |= libc::POLLOUT;
            }
            if events != 0 {
                push(c.host.as_raw_fd(), events, Tag::Conn(*id));
            }
        }
        let room = self.shared.guest_has_room();
        if room {
            for (key, m) in &self.udp.maps {
                push(m.sock.as_raw_fd(), libc::POLLIN, Tag::Udp(*key));
            }
        }
        if self.shared.to_net_pending() {
            return Duration::ZERO;
        }
        if !room {
            return FULL_SLEEP;
        }
        let smol = self
            .iface
            .poll_delay(now_ts(), &self.sockets)
            .map_or(MAX_SLEEP, |d| Duration::from_micros(d.total_micros()));
        smol.min(MAX_SLEEP)
    }
}

fn new_tcp_socket() -> tcp::Socket<'static> {
    let mut s = tcp::Socket::new(
        tcp::SocketBuffer::new(vec![0u8; TCP_BUFFER]),
        tcp::SocketBuffer::new(vec![0u8; TCP_BUFFER]),
    );
    s.set_nagle_enabled(false);
    // The guest is a local VM: a delayed ACK only stalls its window.
    s.set_ack_delay(None);
    s
}

/// A seed for smoltcp's ISNs and the first ephemeral port; need not be secret.
fn random_seed() -> u64 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(std::process::id())
}
