//! The [`Stack`]: smoltcp's interface and sockets behind one lock, the
//! socket table that gives sockets small ids, and the blocking loop.

use alloc::boxed::Box;
use alloc::collections::{BTreeMap, btree_map};
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::net::Ipv4Addr;
use core::sync::atomic::{AtomicU32, Ordering};
use core::time::Duration;

use smoltcp::iface::{Config as IfaceConfig, Interface, PollResult, SocketHandle, SocketSet};
use smoltcp::time::Instant;
use smoltcp::wire::{EthernetAddress, HardwareAddress, IpCidr, Ipv4Cidr};

use crate::device::NicDevice;
use crate::{Config, Errno, Nic, Platform};

/// A socket's number in its stack's table: small, reused after close, so
/// the kernel can keep it in a file-descriptor table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SocketId(pub u32);

/// Which port space a port belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Proto {
    #[cfg_attr(not(feature = "tcp"), allow(dead_code, reason = "used by TCP only"))]
    Tcp,
    #[cfg_attr(not(feature = "udp"), allow(dead_code, reason = "used by UDP only"))]
    Udp,
}

/// Per-socket state the stack keeps beside smoltcp's.
pub(crate) enum Entry {
    #[cfg(feature = "tcp")]
    Stream(crate::tcp::StreamEntry),
    #[cfg(feature = "tcp")]
    Listener(crate::tcp::ListenerEntry),
    #[cfg(feature = "udp")]
    Udp(crate::udp::UdpEntry),
}

/// A dropped connection that smoltcp is still closing.
pub(crate) struct Closing {
    pub(crate) handle: SocketHandle,
    pub(crate) port: Option<u16>,
    /// Polls since it was closed; it is removed only after one, so a
    /// queued FIN or RST goes out first.
    pub(crate) polls: u32,
    /// When (µs) to give up on a graceful close and reset the connection,
    /// like Linux's `tcp_fin_timeout`; set by the reaper.
    pub(crate) give_up: Option<u64>,
}

/// How long a dropped connection may take to close gracefully.
const CLOSE_LINGER_MICROS: u64 = 60_000_000;

/// The shortest sleep between polls when smoltcp asks to be polled again
/// at once: that only happens when the NIC refused a frame, and its
/// transmit-complete interrupt will wake the waiters earlier.
const MIN_POLL_INTERVAL_MICROS: u64 = 1_000;

/// Everything behind the lock.
pub(crate) struct Inner {
    pub(crate) iface: Interface,
    pub(crate) sockets: SocketSet<'static>,
    pub(crate) device: NicDevice,
    pub(crate) config: Config,
    table: Vec<Option<Entry>>,
    free_ids: Vec<u32>,
    /// Sockets in `sockets`, for the `max_sockets` bound.
    pub(crate) smol_count: usize,
    pub(crate) closing: Vec<Closing>,
    ports: BTreeMap<(Proto, u16), u32>,
    /// Whether the interface has an address (always, without DHCP).
    pub(crate) configured: bool,
    #[cfg(feature = "dhcpv4")]
    dhcp: Option<SocketHandle>,
    #[cfg(feature = "dns")]
    pub(crate) dns: Option<SocketHandle>,
    #[cfg(feature = "dns")]
    pub(crate) dns_servers: Vec<Ipv4Addr>,
}

pub(crate) struct Shared {
    inner: spin::Mutex<Inner>,
    events: AtomicU32,
    pub(crate) platform: Arc<dyn Platform>,
}

/// A network stack on one interface. Cloning is cheap and yields another
/// handle to the same stack; sockets keep their stack alive.
#[derive(Clone)]
pub struct Stack {
    pub(crate) shared: Arc<Shared>,
}

/// The outcome of one try of a blocking operation.
pub(crate) enum Try<T> {
    /// Finished (successfully or not).
    Done(Result<T, Errno>),
    /// Would block.
    Pending,
}

impl Inner {
    pub(crate) fn now(&self, platform: &dyn Platform) -> Instant {
        Instant::from_micros(i64::try_from(platform.now_micros()).unwrap_or(i64::MAX))
    }

    /// One smoltcp poll, DHCP events and the closing-socket reaper.
    /// Returns whether anything happened that a waiter may care about.
    fn poll(&mut self, now: Instant) -> bool {
        self.update_syn_budget();
        self.device.received = 0;
        let mut changed = self.iface.poll(now, &mut self.device, &mut self.sockets)
            == PollResult::SocketStateChanged;
        changed |= self.device.received != 0;
        #[cfg(feature = "dhcpv4")]
        {
            changed |= self.poll_dhcp();
        }
        self.reap(now);
        changed
    }

    /// The live entries of the socket table.
    pub(crate) fn entries(&self) -> impl Iterator<Item = &Entry> {
        self.table.iter().flatten()
    }

    fn update_syn_budget(&mut self) {
        self.device.syn_budget.clear();
        #[cfg(feature = "tcp")]
        for entry in self.table.iter().flatten() {
            if let Entry::Listener(l) = entry {
                let free = l.listening(&self.sockets);
                self.device.syn_budget.push((l.port, free));
            }
        }
    }

    fn reap(&mut self, now: Instant) {
        let now = now.total_micros() as u64;
        let mut i = 0;
        while i < self.closing.len() {
            let c = &mut self.closing[i];
            c.polls = c.polls.saturating_add(1);
            let give_up = *c
                .give_up
                .get_or_insert(now.saturating_add(CLOSE_LINGER_MICROS));
            if now >= give_up {
                self.abort_closing(i);
            }
            if self.closing_done(i) {
                let c = self.closing.swap_remove(i);
                self.sockets.remove(c.handle);
                self.smol_count -= 1;
                if let Some(port) = c.port {
                    self.release_port(Proto::Tcp, port);
                }
            } else {
                i += 1;
            }
        }
    }

    #[cfg(feature = "tcp")]
    fn abort_closing(&mut self, i: usize) {
        let c = &mut self.closing[i];
        let s = self
            .sockets
            .get_mut::<smoltcp::socket::tcp::Socket>(c.handle);
        if s.state() != smoltcp::socket::tcp::State::Closed {
            log::debug!("net: connection did not close in time, resetting it");
            s.abort();
            c.polls = 0;
        }
    }

    #[cfg(not(feature = "tcp"))]
    fn abort_closing(&mut self, _i: usize) {}

    #[cfg(feature = "tcp")]
    fn closing_done(&mut self, i: usize) -> bool {
        crate::tcp::closing_done(&mut self.sockets, &self.closing[i])
    }

    #[cfg(not(feature = "tcp"))]
    fn closing_done(&mut self, _i: usize) -> bool {
        true
    }

    /// smoltcp's next timer as an absolute `now_micros` deadline.
    fn poll_deadline(&mut self, now: Instant) -> Option<u64> {
        self.iface.poll_delay(now, &self.sockets).map(|d| {
            (now.total_micros() as u64)
                .saturating_add(d.total_micros().max(MIN_POLL_INTERVAL_MICROS))
        })
    }

    /// Reserves room for `n` more smoltcp sockets.
    pub(crate) fn check_room(&self, n: usize) -> Result<(), Errno> {
        if self.smol_count + n > self.config.max_sockets {
            log::warn!("net: socket limit ({}) reached", self.config.max_sockets);
            Err(Errno::EMFILE)
        } else {
            Ok(())
        }
    }

    /// Adds a smoltcp socket (after `check_room`).
    pub(crate) fn add_socket<T: smoltcp::socket::AnySocket<'static>>(
        &mut self,
        socket: T,
    ) -> SocketHandle {
        self.smol_count += 1;
        self.sockets.add(socket)
    }

    /// Removes a smoltcp socket at once.
    pub(crate) fn remove_socket(&mut self, handle: SocketHandle) {
        self.sockets.remove(handle);
        self.smol_count -= 1;
    }

    pub(crate) fn insert(&mut self, entry: Entry) -> SocketId {
        if let Some(id) = self.free_ids.pop() {
            self.table[id as usize] = Some(entry);
            SocketId(id)
        } else {
            self.table.push(Some(entry));
            SocketId(u32::try_from(self.table.len() - 1).unwrap_or(u32::MAX))
        }
    }

    pub(crate) fn entry(&self, id: SocketId) -> Option<&Entry> {
        self.table.get(id.0 as usize)?.as_ref()
    }

    pub(crate) fn entry_mut(&mut self, id: SocketId) -> Option<&mut Entry> {
        self.table.get_mut(id.0 as usize)?.as_mut()
    }

    pub(crate) fn take(&mut self, id: SocketId) -> Option<Entry> {
        let entry = self.table.get_mut(id.0 as usize)?.take()?;
        self.free_ids.push(id.0);
        Some(entry)
    }

    /// Claims `port` (EADDRINUSE if taken), or a random free ephemeral
    /// port when `port` is 0.
    pub(crate) fn claim_port(
        &mut self,
        proto: Proto,
        port: u16,
        platform: &dyn Platform,
    ) -> Result<u16, Errno> {
        if port != 0 {
            return match self.ports.entry((proto, port)) {
                btree_map::Entry::Occupied(_) => Err(Errno::EADDRINUSE),
                btree_map::Entry::Vacant(v) => {
                    v.insert(1);
                    Ok(port)
                }
            };
        }
        const FIRST: u16 = 49152;
        const COUNT: u32 = 65536 - FIRST as u32;
        let start = (platform.random_u64() % u64::from(COUNT)) as u32;
        for i in 0..COUNT {
            let candidate = FIRST + ((start + i) % COUNT) as u16;
            if let btree_map::Entry::Vacant(v) = self.ports.entry((proto, candidate)) {
                v.insert(1);
                return Ok(candidate);
            }
        }
        Err(Errno::EADDRINUSE)
    }

    pub(crate) fn release_port(&mut self, proto: Proto, port: u16) {
        if let Some(n) = self.ports.get_mut(&(proto, port)) {
            *n -= 1;
            if *n == 0 {
                self.ports.remove(&(proto, port));
            }
        }
    }

    /// Sets the interface address and default route.
    fn set_ipv4(&mut self, cidr: Option<Ipv4Cidr>, gateway: Option<Ipv4Addr>) {
        self.iface.update_ip_addrs(|addrs| {
            addrs.clear();
            if let Some(cidr) = cidr
                && addrs.push(IpCidr::Ipv4(cidr)).is_err()
            {
                log::warn!("net: cannot add address {cidr}");
            }
        });
        let routes = self.iface.routes_mut();
        routes.remove_default_ipv4_route();
        if let Some(gw) = gateway
            && routes.add_default_ipv4_route(gw).is_err()
        {
            log::warn!("net: cannot add default route via {gw}");
        }
    }

    #[cfg(feature = "dhcpv4")]
    fn poll_dhcp(&mut self) -> bool {
        use smoltcp::socket::dhcpv4;
        let Some(handle) = self.dhcp else {
            return false;
        };
        let event = self.sockets.get_mut::<dhcpv4::Socket>(handle).poll();
        match event {
            None => false,
            Some(dhcpv4::Event::Configured(lease)) => {
                let address = lease.address;
                let router = lease.router;
                #[cfg(feature = "dns")]
                {
                    let mut servers = self.config.dns.clone();
                    servers.extend(lease.dns_servers.iter().copied());
                    if let Some(h) = self.dns {
                        let ips: Vec<smoltcp::wire::IpAddress> = servers
                            .iter()
                            .map(|a| smoltcp::wire::IpAddress::Ipv4(*a))
                            .collect();
                        self.sockets
                            .get_mut::<smoltcp::socket::dns::Socket>(h)
                            .update_servers(&ips);
                    }
                    self.dns_servers = servers;
                }
                log::info!("net: DHCP lease {address}, gateway {router:?}");
                self.set_ipv4(Some(address), router);
                self.configured = true;
                true
            }
            Some(dhcpv4::Event::Deconfigured) => {
                log::info!("net: DHCP lease lost");
                self.set_ipv4(None, None);
                self.configured = false;
                true
            }
        }
    }
}

impl Stack {
    /// Builds the stack on `nic`. With `config.dhcp` (feature `dhcpv4`) the
    /// interface starts without an address and configures itself on lease.
    pub fn new(nic: Box<dyn Nic>, platform: Arc<dyn Platform>, config: Config) -> Self {
        let mut device = NicDevice::new(nic);
        let mac = config.mac.unwrap_or_else(|| device.nic.mac());
        let mut iface_config = IfaceConfig::new(HardwareAddress::Ethernet(EthernetAddress(mac)));
        iface_config.random_seed = platform.random_u64();
        let now = Instant::from_micros(i64::try_from(platform.now_micros()).unwrap_or(i64::MAX));
        let iface = Interface::new(iface_config, &mut device, now);
        let mut inner = Inner {
            iface,
            sockets: SocketSet::new(Vec::new()),
            device,
            table: Vec::new(),
            free_ids: Vec::new(),
            smol_count: 0,
            closing: Vec::new(),
            ports: BTreeMap::new(),
            configured: false,
            #[cfg(feature = "dhcpv4")]
            dhcp: None,
            #[cfg(feature = "dns")]
            dns: None,
            #[cfg(feature = "dns")]
            dns_servers: config.dns.clone(),
            config,
        };
        let dhcp = cfg!(feature = "dhcpv4") && inner.config.dhcp;
        if dhcp {
            #[cfg(feature = "dhcpv4")]
            {
                use smoltcp::socket::dhcpv4;
                let mut socket = dhcpv4::Socket::new();
                // smoltcp waits 10 s before repeating a lost DISCOVER; a
                // unikernel's boot should not.
                let mut retry = dhcpv4::RetryConfig::default();
                retry.discover_timeout = smoltcp::time::Duration::from_secs(2);
                retry.initial_request_timeout = smoltcp::time::Duration::from_secs(2);
                socket.set_retry_config(retry);
                let handle = inner.add_socket(socket);
                inner.dhcp = Some(handle);
            }
        } else {
            let cidr = Ipv4Cidr::new(inner.config.address, inner.config.prefix_len.min(32));
            let gateway = inner.config.gateway;
            inner.set_ipv4(Some(cidr), gateway);
            inner.configured = true;
        }
        Self {
            shared: Arc::new(Shared {
                inner: spin::Mutex::new(inner),
                events: AtomicU32::new(0),
                platform,
            }),
        }
    }

    /// Called by the kernel's NIC interrupt handler: bumps the event
    /// counter and wakes every waiter (no lock taken).
    pub fn notify_irq(&self) {
        self.shared.bump();
    }

    /// Runs smoltcp's poll once; returns when smoltcp next needs a poll
    /// (absolute µs on the platform clock), if it has a timer pending.
    pub fn poll(&self) -> Option<u64> {
        self.shared
            .with(|inner, now| (inner.poll_deadline(now), false))
            .0
    }

    /// One step of the kernel's network thread: poll, then sleep until an
    /// interrupt, another thread's progress or smoltcp's next timer (at
    /// most `max_sleep`).
    pub fn poll_wait(&self, max_sleep: Option<Duration>) {
        let seen = self.shared.events.load(Ordering::Acquire);
        let deadline = self.poll();
        let limit = max_sleep.map(|d| self.shared.deadline_after(d));
        self.shared
            .platform
            .wait(&self.shared.events, seen, min_deadline(deadline, limit));
    }

    /// Lets the stack deliver what the application wrote before the VM
    /// ends, as Linux keeps delivering a process's sockets after it exits:
    /// closes every open TCP stream gracefully, then polls until every
    /// connection's data and FIN are acknowledged or `timeout` passes.
    /// Returns how many connections were still undelivered then.
    #[cfg(feature = "tcp")]
    pub fn flush_for_exit(&self, timeout: Duration) -> usize {
        let deadline = self.shared.deadline_after(timeout);
        self.shared.with(|inner, _| {
            crate::tcp::close_all(inner);
            ((), true)
        });
        loop {
            let left = self
                .shared
                .with(|inner, now| {
                    inner.poll_deadline(now);
                    (crate::tcp::undelivered(inner), false)
                })
                .0;
            let now = self.shared.platform.now_micros();
            if left == 0 || now >= deadline {
                return left;
            }
            self.poll_wait(Some(Duration::from_micros(deadline - now)));
        }
    }

    /// The interface's IPv4 address (None while DHCP has no lease).
    pub fn local_addr(&self) -> Option<Ipv4Addr> {
        self.shared.lock().iface.ipv4_addr()
    }

    /// The smoltcp sockets alive (including listener slots and connections
    /// still closing); for diagnostics and tests.
    pub fn socket_count(&self) -> usize {
        self.shared.lock().smol_count
    }

    /// Whether the interface has an address.
    pub fn is_configured(&self) -> bool {
        self.shared.lock().configured
    }

    /// Waits until the interface has an address (at once without DHCP);
    /// ETIMEDOUT after `timeout`.
    pub fn wait_configured(&self, timeout: Option<Duration>) -> Result<(), Errno> {
        let deadline = timeout.map(|t| self.shared.deadline_after(t));
        self.shared
            .block(deadline, false, Errno::ETIMEDOUT, |inner, _| {
                if inner.configured {
                    Try::Done(Ok(()))
                } else {
                    Try::Pending
                }
            })
    }
}

/// An IPv4 endpoint as a `SocketAddrV4`.
pub(crate) fn endpoint_v4(ep: smoltcp::wire::IpEndpoint) -> Option<core::net::SocketAddrV4> {
    #[allow(
        unreachable_patterns,
        reason = "another crate may enable smoltcp's IPv6 too"
    )]
    match ep.addr {
        smoltcp::wire::IpAddress::Ipv4(a) => Some(core::net::SocketAddrV4::new(a, ep.port)),
        _ => None,
    }
}

pub(crate) fn min_deadline(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, None) => a,
        (None, b) => b,
    }
}

impl Shared {
    pub(crate) fn lock(&self) -> spin::MutexGuard<'_, Inner> {
        loop {
            if let Some(guard) = self.inner.try_lock() {
                return guard;
            }
            self.platform.relax();
        }
    }

    fn bump(&self) {
        self.events.fetch_add(1, Ordering::Release);
        self.platform.wake_all(&self.events);
    }

    pub(crate) fn deadline_after(&self, d: Duration) -> u64 {
        let micros = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        self.platform.now_micros().saturating_add(micros)
    }

    /// Locks, polls, runs `f` (which may change socket state; the stack
    /// polls again afterwards so queued data leaves at once), unlocks and
    /// wakes waiters if anything changed.
    pub(crate) fn with<R>(&self, f: impl FnOnce(&mut Inner, Instant) -> (R, bool)) -> (R, bool) {
        let mut inner = self.lock();
        let now = inner.now(&*self.platform);
        let mut changed = inner.poll(now);
        let (result, acted) = f(&mut inner, now);
        if acted {
            changed |= inner.poll(now);
        }
        drop(inner);
        if changed || acted {
            self.bump();
        }
        (result, changed || acted)
    }

    /// Locks without polling (for plain state changes such as options).
    pub(crate) fn with_entry<R>(&self, f: impl FnOnce(&mut Inner) -> R) -> R {
        f(&mut self.lock())
    }

    /// The blocking loop: tries `op` until it is done, the deadline passes
    /// (`timeout_err`) or, when `nonblocking`, after one try (EAGAIN).
    pub(crate) fn block<T>(
        &self,
        deadline: Option<u64>,
        nonblocking: bool,
        timeout_err: Errno,
        mut op: impl FnMut(&mut Inner, Instant) -> Try<T>,
    ) -> Result<T, Errno> {
        loop {
            let seen = self.events.load(Ordering::Acquire);
            let (outcome, _) = self.with(|inner, now| match op(inner, now) {
                Try::Done(r) => (Ok(r), true),
                Try::Pending => (Err(inner.poll_deadline(now)), false),
            });
            let next_poll = match outcome {
                Ok(result) => return result,
                Err(next_poll) => next_poll,
            };
            if nonblocking {
                return Err(Errno::EAGAIN);
            }
            if let Some(deadline) = deadline
                && self.platform.now_micros() >= deadline
            {
                return Err(timeout_err);
            }
            self.platform
                .wait(&self.events, seen, min_deadline(deadline, next_poll));
        }
    }
}
