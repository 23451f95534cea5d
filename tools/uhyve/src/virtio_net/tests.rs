//! The device driven the way `virtio-drivers`' `PciTransport` and
//! `VirtIONetRaw` drive it, over a small guest memory, with a fake backend
//! and a fake MSI sink.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use vm_memory::{Bytes, GuestAddress};

use super::*;
use crate::pci::{CONFIG_ADDRESS, CONFIG_DATA, NIC_SLOT, PciBus};

const BAR: u32 = 0xc000_0000;
const MEM: usize = 1 << 20;
const MAC: [u8; 6] = [0x02, 0x48, 1, 2, 3, 4];
const VRING_DESC_F_NEXT: u16 = 1;
const VRING_DESC_F_WRITE: u16 = 2;
const VRING_DESC_F_INDIRECT: u16 = 4;

/// Frames in both directions; `ready` polls readable while `inbox` has some.
struct FakeNet {
    sent: Vec<Vec<u8>>,
    inbox: VecDeque<Vec<u8>>,
    fail_send: bool,
}

#[derive(Clone)]
struct FakeBackend {
    net: Arc<Mutex<FakeNet>>,
    ready: Arc<EventFd>,
}

impl FakeBackend {
    fn new() -> Self {
        Self {
            net: Arc::new(Mutex::new(FakeNet {
                sent: Vec::new(),
                inbox: VecDeque::new(),
                fail_send: false,
            })),
            ready: Arc::new(EventFd::new(EFD_NONBLOCK).unwrap()),
        }
    }

    fn deliver(&self, frame: &[u8]) {
        self.net.lock().unwrap().inbox.push_back(frame.to_vec());
        self.ready.write(1).unwrap();
    }

    fn sent(&self) -> Vec<Vec<u8>> {
        self.net.lock().unwrap().sent.clone()
    }
}

impl Backend for FakeBackend {
    fn send(&mut self, frame: &[u8]) -> io::Result<()> {
        let mut net = self.net.lock().unwrap();
        if net.fail_send {
            return Err(io::Error::other("backend gone"));
        }
        net.sent.push(frame.to_vec());
        Ok(())
    }

    fn recv(&mut self, buf: &mut [u8]) -> io::Result<Option<usize>> {
        let mut net = self.net.lock().unwrap();
        let Some(frame) = net.inbox.pop_front() else {
            let _ = self.ready.read();
            return Ok(None);
        };
        if net.inbox.is_empty() {
            let _ = self.ready.read();
        }
        let n = frame.len().min(buf.len());
        buf[..n].copy_from_slice(&frame[..n]);
        Ok(Some(n))
    }

    fn ready_fd(&self) -> RawFd {
        self.ready.as_raw_fd()
    }
}

/// A [`FakeBackend`] that carries jumbo frames.
struct Jumbo(FakeBackend);

impl Backend for Jumbo {
    fn send(&mut self, frame: &[u8]) -> io::Result<()> {
        self.0.send(frame)
    }

    fn recv(&mut self, buf: &mut [u8]) -> io::Result<Option<usize>> {
        self.0.recv(buf)
    }

    fn ready_fd(&self) -> RawFd {
        self.0.ready_fd()
    }

    fn mtu(&self) -> Option<u16> {
        Some(9000)
    }
}

/// Registered notify ioeventfds: a clone of the fd, address, value.
type Ioevents = Vec<(EventFd, u64, u16)>;

/// Records MSIs; accepts ioeventfds only if `ioevents` is `Some`.
#[derive(Default)]
struct FakeMsi(Mutex<Vec<(u64, u32)>>, Option<Mutex<Ioevents>>);

impl VmHooks for FakeMsi {
    fn signal_msi(&self, address: u64, data: u32) -> io::Result<()> {
        self.0.lock().unwrap().push((address, data));
        Ok(())
    }

    fn register_notify(&self, fd: &EventFd, addr: u64, value: u16) -> io::Result<()> {
        let Some(list) = &self.1 else {
            return Err(io::ErrorKind::Unsupported.into());
        };
        list.lock().unwrap().push((fd.try_clone()?, addr, value));
        Ok(())
    }

    fn unregister_notify(&self, _fd: &EventFd, addr: u64, value: u16) -> io::Result<()> {
        if let Some(list) = &self.1 {
            list.lock()
                .unwrap()
                .retain(|(_, a, v)| (*a, *v) != (addr, value));
        }
        Ok(())
    }
}

impl FakeMsi {
    fn taken(&self) -> Vec<(u64, u32)> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

/// A split ring in guest memory, as the driver sees it.
struct Ring {
    desc: u64,
    avail: u64,
    used: u64,
    size: u16,
    avail_idx: u16,
    used_seen: u16,
}

impl Ring {
    fn new(base: u64, size: u16) -> Self {
        Self {
            desc: base,
            avail: base + 16 * u64::from(size),
            used: base + 0x1000,
            size,
            avail_idx: 0,
            used_seen: 0,
        }
    }

    fn set_desc(&self, mem: &GuestMemoryMmap, i: u16, addr: u64, len: u32, flags: u16, next: u16) {
        let d = self.desc + 16 * u64::from(i);
        mem.write_obj(addr, GuestAddress(d)).unwrap();
        mem.write_obj(len, GuestAddress(d + 8)).unwrap();
        mem.write_obj(flags, GuestAddress(d + 12)).unwrap();
        mem.write_obj(next, GuestAddress(d + 14)).unwrap();
    }

    fn publish(&mut self, mem: &GuestMemoryMmap, head: u16) {
        let slot = self.avail + 4 + 2 * u64::from(self.avail_idx % self.size);
        mem.write_obj(head, GuestAddress(slot)).unwrap();
        self.avail_idx = self.avail_idx.wrapping_add(1);
        // used_event (RING_EVENT_IDX): interrupt me for the next used entry.
        let used_event = self.avail + 4 + 2 * u64::from(self.size);
        mem.write_obj(self.used_idx(mem), GuestAddress(used_event))
            .unwrap();
        mem.write_obj(self.avail_idx, GuestAddress(self.avail + 2))
            .unwrap();
    }

    fn used_idx(&self, mem: &GuestMemoryMmap) -> u16 {
        mem.read_obj(GuestAddress(self.used + 2)).unwrap()
    }

    /// The next used element (id, len), if any.
    fn pop_used(&mut self, mem: &GuestMemoryMmap) -> Option<(u32, u32)> {
        if self.used_idx(mem) == self.used_seen {
            return None;
        }
        let e = self.used + 4 + 8 * u64::from(self.used_seen % self.size);
        self.used_seen = self.used_seen.wrapping_add(1);
        Some((
            mem.read_obj(GuestAddress(e)).unwrap(),
            mem.read_obj(GuestAddress(e + 4)).unwrap(),
        ))
    }
}

/// The test's guest driver.
struct Driver {
    mem: GuestMemoryMmap,
    dev: Arc<VirtioNet>,
    bus: PciBus,
    msi: Arc<FakeMsi>,
    backend: FakeBackend,
    bar: u64,
}

impl Driver {
    fn new() -> Self {
        let backend = FakeBackend::new();
        Self::build(backend.clone(), Box::new(backend), FakeMsi::default())
    }

    /// A driver whose device uses `real` (`fake` only for inspection).
    fn with_backend(fake: FakeBackend, real: Box<dyn Backend>) -> Self {
        Self::build(fake, real, FakeMsi::default())
    }

    fn build(backend: FakeBackend, real: Box<dyn Backend>, msi: FakeMsi) -> Self {
        let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), MEM)]).unwrap();
        let msi = Arc::new(msi);
        let dev = VirtioNet::new(mem.clone(), BAR, real, MAC, msi.clone()).unwrap();
        let bus = PciBus::new(Some(dev.clone() as Arc<dyn PciDevice>));
        Self {
            mem,
            dev,
            bus,
            msi,
            backend,
            bar: u64::from(BAR),
        }
    }

    fn select(&self, off: u8) {
        let a = (1u32 << 31) | (u32::from(NIC_SLOT) << 11) | u32::from(off & 0xfc);
        self.bus.io_out(CONFIG_ADDRESS, &a.to_le_bytes());
    }

    fn cfg_read(&self, off: u8) -> u32 {
        self.select(off);
        let mut d = [0; 4];
        self.bus.io_in(CONFIG_DATA, &mut d);
        u32::from_le_bytes(d)
    }

    fn cfg_write(&self, off: u8, v: u32) {
        self.select(off);
        self.bus.io_out(CONFIG_DATA, &v.to_le_bytes());
    }

    fn read(&self, off: u64, len: usize) -> u64 {
        let mut d = [0u8; 8];
        assert!(self.dev.mmio_read(self.bar + off, &mut d[..len]));
        u64::from_le_bytes(d)
    }

    fn write(&self, off: u64, len: usize, v: u64) {
        assert!(self.dev.mmio_write(self.bar + off, &v.to_le_bytes()[..len]));
    }

    fn status(&self) -> u8 {
        self.read(COMMON_CFG + 0x14, 1) as u8
    }

    fn set_status(&self, s: u8) {
        self.write(COMMON_CFG + 0x14, 1, u64::from(s));
    }

    /// `PciTransport::queue_set`.
    fn queue_set(&self, q: u16, ring: &Ring) {
        self.write(0x16, 2, u64::from(q));
        self.write(0x18, 2, u64::from(ring.size));
        self.write(0x20, 8, ring.desc);
        self.write(0x28, 8, ring.avail);
        self.write(0x30, 8, ring.used);
        self.write(0x1c, 2, 1);
    }

    /// `PciTransport::notify`.
    fn notify(&self, q: u16) {
        self.write(0x16, 2, u64::from(q));
        let off = self.read(0x1e, 2);
        self.write(
            NOTIFY_CFG + off * u64::from(NOTIFY_OFF_MULTIPLIER),
            2,
            u64::from(q),
        );
    }

    /// Feature negotiation as `Transport::begin_init` does it.
    fn negotiate(&self) -> u64 {
        self.set_status(0);
        self.set_status(status::ACKNOWLEDGE | status::DRIVER);
        self.write(0x00, 4, 0);
        let mut f = self.read(0x04, 4);
        self.write(0x00, 4, 1);
        f |= self.read(0x04, 4) << 32;
        self.write(0x08, 4, 0);
        self.write(0x0c, 4, f & 0xffff_ffff);
        self.write(0x08, 4, 1);
        self.write(0x0c, 4, f >> 32);
        self.set_status(status::ACKNOWLEDGE | status::DRIVER | status::FEATURES_OK);
        f
    }

    /// Enables MSI-X with vector `v` → (address, data) unmasked.
    fn msix(&self, vectors: &[(u64, u32)]) {
        let control_reg = CAP_MSIX_OFF as u8;
        let v = self.cfg_read(control_reg);
        self.cfg_write(control_reg, v | (u32::from(MSIX_ENABLE) << 16));
        for (i, (addr, data)) in vectors.iter().enumerate() {
            let e = MSIX_TABLE + 16 * i as u64;
            self.write(e, 8, *addr);
            self.write(e + 8, 4, u64::from(*data));
            self.write(e + 12, 4, 0);
        }
    }

    /// A fully initialised device: RX ring at 0x10000, TX at 0x20000, MSI-X
    /// vectors 0 (config), 1 (RX), 2 (TX).
    fn up(&self) -> (Ring, Ring) {
        let f = self.negotiate();
        assert_eq!(f, features::OFFERED);
        self.msix(&[
            (0xfee0_0000, 0x40),
            (0xfee0_0000, 0x41),
            (0xfee0_0000, 0x42),
        ]);
        self.write(0x10, 2, 0);
        let (rx, tx) = (Ring::new(0x10000, 16), Ring::new(0x20000, 16));
        self.queue_set(0, &rx);
        self.write(0x1a, 2, 1);
        self.queue_set(1, &tx);
        self.write(0x1a, 2, 2);
        self.set_status(
            status::ACKNOWLEDGE | status::DRIVER | status::FEATURES_OK | status::DRIVER_OK,
        );
        assert_eq!(self.status() & status::NEEDS_RESET, 0);
        (rx, tx)
    }

    /// Posts a `len`-byte RX buffer at `addr` as descriptor `i`.
    fn post_rx(&self, rx: &mut Ring, i: u16, addr: u64, len: u32) {
        rx.set_desc(&self.mem, i, addr, len, VRING_DESC_F_WRITE, 0);
        rx.publish(&self.mem, i);
    }

    /// Queues `frame` on TX as a header descriptor and a data descriptor
    /// (`i`, `i + 1`) at `addr` and notifies.
    fn send(&self, tx: &mut Ring, i: u16, addr: u64, frame: &[u8]) {
        self.mem
            .write_slice(&[0; HDR_LEN], GuestAddress(addr))
            .unwrap();
        self.mem
            .write_slice(frame, GuestAddress(addr + 0x100))
            .unwrap();
        tx.set_desc(&self.mem, i, addr, HDR_LEN as u32, VRING_DESC_F_NEXT, i + 1);
        tx.set_desc(&self.mem, i + 1, addr + 0x100, frame.len() as u32, 0, 0);
        tx.publish(&self.mem, i);
        self.notify(1);
    }
}

fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "timed out: {what}"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[test]
fn enumeration_and_capabilities() {
    let d = Driver::new();
    assert_eq!(d.cfg_read(0x00), 0x1041_1af4);
    assert_eq!(d.cfg_read(0x08), 0x0200_0001, "class 02/00/00, revision 1");
    assert_eq!((d.cfg_read(0x0c) >> 16) & 0x7f, 0, "header type 0");
    assert_eq!(d.cfg_read(0x2c), 0x1100_1af4);
    assert_eq!((d.cfg_read(0x3c) >> 8) & 0xff, 0, "no INTx pin");
    let sc = d.cfg_read(0x04);
    assert_ne!(sc & (1 << 20), 0, "capability list");
    assert_ne!(sc & u32::from(COMMAND_MEMORY), 0, "pre-enabled decoding");

    // Walk the capabilities like `PciRoot::capabilities`.
    let mut at = (d.cfg_read(0x34) & 0xfc) as u8;
    let mut vendor = Vec::new();
    let mut msix = None;
    while at != 0 {
        let h = d.cfg_read(at);
        match h as u8 {
            CAP_VENDOR => {
                let cfg_type = (h >> 24) as u8;
                let cap_len = (h >> 16) as u8;
                let bar = d.cfg_read(at + 4) as u8;
                let off = d.cfg_read(at + 8);
                let len = d.cfg_read(at + 12);
                let mult = (cap_len >= 20).then(|| d.cfg_read(at + 16));
                vendor.push((cfg_type, bar, off, len, mult));
            }
            CAP_MSIX => msix = Some((h >> 16, d.cfg_read(at + 4), d.cfg_read(at + 8))),
            other => panic!("unexpected capability {other:#x}"),
        }
        let next = (h >> 8) as u8;
        assert!(next == 0 || (next >= 64 && next.is_multiple_of(4)));
        at = next;
    }
    assert_eq!(
        vendor,
        [
            (1, 0, 0x0000, 0x38, None),
            (2, 0, 0x3000, 8, Some(NOTIFY_OFF_MULTIPLIER)),
            (3, 0, 0x1000, 4, None),
            (4, 0, 0x2000, 12, None),
        ]
    );
    assert_eq!(
        msix,
        Some((2, 0x3800, 0x3c00)),
        "3 vectors, table and PBA in BAR0"
    );
    for (_, _, off, len, _) in vendor {
        assert!(u64::from(off + len) <= BAR_SIZE);
    }
}

#[test]
fn bar_sizing_and_moving() {
    let mut d = Driver::new();
    // `PciRoot::bar_info`: decoding off, all ones, read, restore.
    let cmd = d.cfg_read(0x04);
    d.cfg_write(0x04, cmd & !0x3);
    assert!(!d.dev.mmio_read(d.bar, &mut [0; 4]), "decoding off");
    let orig = d.cfg_read(0x10);
    assert_eq!(orig, BAR);
    d.cfg_write(0x10, 0xffff_ffff);
    let mask = d.cfg_read(0x10);
    assert_eq!((!(mask & !0xf)).wrapping_add(1), BAR_SIZE as u32);
    d.cfg_write(0x10, orig);
    d.cfg_write(0x04, cmd);
    assert_eq!(d.read(0x12, 2), 2, "num_queues");

    d.cfg_write(0x10, 0xd000_0000);
    assert!(!d.dev.mmio_read(d.bar, &mut [0; 2]), "old address");
    d.bar = 0xd000_0000;
    assert_eq!(d.read(0x12, 2), 2);
    assert!(
        !d.dev.mmio_read(d.bar + BAR_SIZE - 2, &mut [0; 4]),
        "straddles the end"
    );
    // The other BARs are unimplemented: sizing reads 0.
    d.cfg_write(0x14, 0xffff_ffff);
    assert_eq!(d.cfg_read(0x14), 0);
}

#[test]
fn negotiation_and_device_config() {
    let d = Driver::new();
    let f = d.negotiate();
    assert_eq!(
        f,
        features::VERSION_1
            | features::MAC
            | features::STATUS
            | features::RING_EVENT_IDX
            | features::RING_INDIRECT_DESC
    );
    assert_ne!(d.status() & status::FEATURES_OK, 0);
    // `read_config!(transport, Config, mac)` may read 4 + 2 bytes.
    let lo = d.read(DEVICE_CFG, 4) as u32;
    let hi = d.read(DEVICE_CFG + 4, 2) as u16;
    let mut mac = [0; 6];
    mac[..4].copy_from_slice(&lo.to_le_bytes());
    mac[4..].copy_from_slice(&hi.to_le_bytes());
    assert_eq!(mac, MAC);
    assert_eq!(d.read(DEVICE_CFG + 6, 2), 1, "LINK_UP");
    assert_eq!(d.read(DEVICE_CFG + 8, 2), 1, "one queue pair");
    assert_eq!(d.read(0x15, 1), 0, "config generation");
    // Unsupported features are refused at FEATURES_OK.
    d.set_status(0);
    assert_eq!(d.status(), 0, "reset completes at once");
    d.set_status(status::ACKNOWLEDGE | status::DRIVER);
    d.write(0x08, 4, 0);
    d.write(0x0c, 4, 1 << 15); // MRG_RXBUF, not offered
    d.set_status(status::ACKNOWLEDGE | status::DRIVER | status::FEATURES_OK);
    assert_eq!(d.status() & status::FEATURES_OK, 0);
    // Without VERSION_1 too.
    d.set_status(0);
    d.set_status(status::ACKNOWLEDGE | status::DRIVER);
    d.write(0x08, 4, 0);
    d.write(0x0c, 4, features::MAC);
    d.set_status(status::ACKNOWLEDGE | status::DRIVER | status::FEATURES_OK);
    assert_eq!(d.status() & status::FEATURES_OK, 0);
    // No MTU without a backend that has one.
    d.set_status(0);
    d.set_status(status::ACKNOWLEDGE | status::DRIVER);
    d.write(0x08, 4, 0);
    d.write(0x0c, 4, features::MAC | features::MTU);
    d.write(0x08, 4, 1);
    d.write(0x0c, 4, features::VERSION_1 >> 32);
    d.set_status(status::ACKNOWLEDGE | status::DRIVER | status::FEATURES_OK);
    assert_eq!(d.status() & status::FEATURES_OK, 0);
    assert_eq!(d.read(DEVICE_CFG + 10, 2), 0, "no MTU");
}

#[test]
fn a_backend_mtu_is_offered_and_accepted() {
    let fake = FakeBackend::new();
    let d = Driver::with_backend(fake.clone(), Box::new(Jumbo(fake)));
    assert_eq!(d.negotiate(), features::OFFERED | features::MTU);
    assert_ne!(d.status() & status::FEATURES_OK, 0);
    assert_eq!(d.read(DEVICE_CFG + 10, 2), 9000);
    // A driver may also leave it.
    d.set_status(0);
    d.set_status(status::ACKNOWLEDGE | status::DRIVER);
    d.write(0x08, 4, 0);
    d.write(0x0c, 4, features::MAC);
    d.write(0x08, 4, 1);
    d.write(0x0c, 4, features::VERSION_1 >> 32);
    d.set_status(status::ACKNOWLEDGE | status::DRIVER | status::FEATURES_OK);
    assert_ne!(d.status() & status::FEATURES_OK, 0);
}

#[test]
fn queue_registers() {
    let d = Driver::new();
    d.negotiate();
    d.write(0x16, 2, 0);
    assert_eq!(d.read(0x18, 2), u64::from(QUEUE_MAX), "max size");
    let ring = Ring::new(0x10000, 64);
    d.queue_set(0, &ring);
    assert_eq!(d.read(0x18, 2), 64);
    assert_eq!(d.read(0x20, 8), 0x10000);
    assert_eq!(d.read(0x28, 4), 0x10000 + 16 * 64);
    assert_eq!(d.read(0x30, 8), 0x11000);
    assert_eq!(d.read(0x1c, 2), 1);
    // 32-bit halves, like Linux writes them.
    d.write(0x16, 2, 1);
    d.write(0x20, 4, 0x2_0000);
    d.write(0x24, 4, 0);
    assert_eq!(d.read(0x20, 8), 0x2_0000);
    assert_eq!(d.read(0x1e, 2), 1, "queue_notify_off");
    d.write(0x1a, 2, 7);
    assert_eq!(d.read(0x1a, 2), u64::from(NO_VECTOR), "vector out of range");
    d.write(0x1a, 2, 2);
    assert_eq!(d.read(0x1a, 2), 2);
    // No third queue.
    d.write(0x16, 2, 2);
    assert_eq!(d.read(0x18, 2), 0);
    d.write(0x1c, 2, 1);
    assert_eq!(d.read(0x1c, 2), 0);
    // Reset clears the queues.
    d.set_status(0);
    d.write(0x16, 2, 0);
    assert_eq!(d.read(0x1c, 2), 0);
    assert_eq!(d.read(0x18, 2), u64::from(QUEUE_MAX));
}

#[test]
fn tx_frames_reach_the_backend() {
    let d = Driver::new();
    let (_rx, mut tx) = d.up();
    let frame: Vec<u8> = (0..60).collect();
    d.send(&mut tx, 0, 0x40000, &frame);
    assert_eq!(d.backend.sent(), [frame]);
    assert_eq!(tx.pop_used(&d.mem), Some((0, 0)));
    // One descriptor holding header and frame.
    let mut one = vec![0u8; HDR_LEN];
    one.extend_from_slice(b"hello");
    d.mem.write_slice(&one, GuestAddress(0x50000)).unwrap();
    tx.set_desc(&d.mem, 5, 0x50000, one.len() as u32, 0, 0);
    tx.publish(&d.mem, 5);
    d.notify(1);
    assert_eq!(d.backend.sent()[1], b"hello");
    // An indirect table of two descriptors.
    d.mem
        .write_slice(&[0; HDR_LEN], GuestAddress(0x51000))
        .unwrap();
    d.mem
        .write_slice(b"indirect", GuestAddress(0x51100))
        .unwrap();
    let table = Ring::new(0x52000, 2);
    table.set_desc(&d.mem, 0, 0x51000, HDR_LEN as u32, VRING_DESC_F_NEXT, 1);
    table.set_desc(&d.mem, 1, 0x51100, 8, 0, 0);
    tx.set_desc(&d.mem, 7, 0x52000, 32, VRING_DESC_F_INDIRECT, 0);
    tx.publish(&d.mem, 7);
    d.notify(1);
    assert_eq!(d.backend.sent()[2], b"indirect");
    assert_eq!(d.dev.stats().tx_frames, 3);
    // Too short for a header: dropped, buffer returned.
    tx.set_desc(&d.mem, 9, 0x50000, 4, 0, 0);
    tx.publish(&d.mem, 9);
    d.notify(1);
    assert_eq!(d.backend.sent().len(), 3);
    assert_eq!(d.dev.stats().tx_dropped, 1);
    let used: Vec<_> = std::iter::from_fn(|| tx.pop_used(&d.mem)).collect();
    assert_eq!(used, [(5, 0), (7, 0), (9, 0)]);
    assert_eq!(d.status() & status::NEEDS_RESET, 0);
}

#[test]
fn rx_frames_land_in_buffers_with_a_header_and_an_msi() {
    let d = Driver::new();
    let (mut rx, _tx) = d.up();
    let worker = Worker::start(&d.dev).unwrap();
    d.post_rx(&mut rx, 0, 0x40000, 2048);
    d.post_rx(&mut rx, 1, 0x41000, 2048);
    d.notify(0);
    let frame: Vec<u8> = (0..100u8).rev().collect();
    d.backend.deliver(&frame);
    wait_for("first frame", || rx.used_idx(&d.mem) == 1);
    assert_eq!(rx.pop_used(&d.mem), Some((0, (HDR_LEN + 100) as u32)));
    let mut got = vec![0u8; HDR_LEN + 100];
    d.mem.read_slice(&mut got, GuestAddress(0x40000)).unwrap();
    assert_eq!(&got[..HDR_LEN], &[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0]);
    assert_eq!(&got[HDR_LEN..], &frame[..]);
    wait_for("MSI", || !d.msi.0.lock().unwrap().is_empty());
    assert_eq!(d.msi.taken(), [(0xfee0_0000, 0x41)]);
    assert_eq!(d.read(ISR_CFG, 1), 1, "ISR: queue interrupt");
    assert_eq!(d.read(ISR_CFG, 1), 0, "reading clears it");

    // Three frames, one buffer left: one lands, two wait for buffers.
    for i in 0..3u8 {
        d.backend.deliver(&[i; 64]);
    }
    wait_for("second frame", || rx.used_idx(&d.mem) == 2);
    assert_eq!(rx.pop_used(&d.mem), Some((1, (HDR_LEN + 64) as u32)));
    std::thread::sleep(Duration::from_millis(20));
    assert_eq!(
        rx.used_idx(&d.mem),
        2,
        "starved until the driver posts buffers"
    );
    assert_eq!(d.backend.net.lock().unwrap().inbox.len(), 2);
    d.post_rx(&mut rx, 2, 0x42000, 2048);
    d.post_rx(&mut rx, 3, 0x43000, 2048);
    d.notify(0);
    wait_for("waiting frames", || rx.used_idx(&d.mem) == 4);
    let mut b = [0u8; 1];
    d.mem
        .read_slice(&mut b, GuestAddress(0x43000 + HDR_LEN as u64))
        .unwrap();
    assert_eq!(b, [2]);
    // A buffer too small for the frame: the frame is dropped, the buffer kept.
    d.post_rx(&mut rx, 4, 0x44000, 64);
    d.notify(0);
    d.backend.deliver(&[9; 100]);
    wait_for("drop", || d.dev.stats().rx_dropped == 1);
    assert_eq!(rx.used_idx(&d.mem), 4);
    d.backend.deliver(&[8; 10]);
    wait_for("small frame", || rx.used_idx(&d.mem) == 5);
    worker.stop();
    assert_eq!(d.status() & status::NEEDS_RESET, 0);
}

#[test]
fn masked_vectors_are_pending_until_unmasked() {
    let d = Driver::new();
    let (_rx, mut tx) = d.up();
    // Mask TX's vector (2), send: no MSI, pending bit set.
    d.write(MSIX_TABLE + 2 * 16 + 12, 4, 1);
    d.send(&mut tx, 0, 0x40000, &[1; 20]);
    assert!(d.msi.taken().is_empty());
    assert_eq!(d.read(MSIX_PBA, 8), 1 << 2);
    d.write(MSIX_TABLE + 2 * 16 + 12, 4, 0);
    assert_eq!(d.msi.taken(), [(0xfee0_0000, 0x42)]);
    assert_eq!(d.read(MSIX_PBA, 8), 0);
    // Function mask in the capability.
    let reg = CAP_MSIX_OFF as u8;
    let v = d.cfg_read(reg);
    d.cfg_write(reg, v | (u32::from(MSIX_FUNCTION_MASK) << 16));
    d.send(&mut tx, 2, 0x40000, &[2; 20]);
    assert!(d.msi.taken().is_empty());
    d.cfg_write(reg, v);
    assert_eq!(d.msi.taken(), [(0xfee0_0000, 0x42)]);
    // NO_VECTOR: ISR only.
    d.write(0x16, 2, 1);
    d.write(0x1a, 2, u64::from(NO_VECTOR));
    d.read(ISR_CFG, 1);
    d.send(&mut tx, 4, 0x40000, &[3; 20]);
    assert!(d.msi.taken().is_empty());
    assert_eq!(d.read(ISR_CFG, 1), 1);
}

#[test]
fn ioeventfd_notifies_reach_the_worker() {
    let backend = FakeBackend::new();
    let hooks = FakeMsi(Mutex::default(), Some(Mutex::default()));
    let mut d = Driver::build(backend.clone(), Box::new(backend), hooks);
    let registered = |d: &Driver| -> Vec<(u64, u16)> {
        let list = d.msi.1.as_ref().unwrap().lock().unwrap();
        list.iter().map(|(_, a, v)| (*a, *v)).collect()
    };
    let at = u64::from(BAR) + NOTIFY_CFG;
    assert_eq!(registered(&d), [(at, 0), (at + 4, 1)]);
    // Sizing with decoding off leaves them; a move re-registers them.
    let cmd = d.cfg_read(0x04);
    d.cfg_write(0x04, cmd & !u32::from(COMMAND_MEMORY));
    d.cfg_write(0x10, 0xffff_ffff);
    assert_eq!(registered(&d), [(at, 0), (at + 4, 1)]);
    d.cfg_write(0x10, 0xd000_0000);
    assert_eq!(registered(&d), [(at, 0), (at + 4, 1)]);
    d.cfg_write(0x04, cmd);
    let at = 0xd000_0000 + NOTIFY_CFG;
    assert_eq!(registered(&d), [(at, 0), (at + 4, 1)]);
    d.bar = 0xd000_0000;

    let (mut rx, mut tx) = d.up();
    let worker = Worker::start(&d.dev).unwrap();
    let kvm_signals = |d: &Driver, q: u16| {
        let list = d.msi.1.as_ref().unwrap().lock().unwrap();
        let (fd, _, _) = list.iter().find(|(_, _, v)| *v == q).unwrap();
        fd.write(1).unwrap();
    };
    // TX without an MMIO exit: the worker sends it.
    d.mem
        .write_slice(&[0; HDR_LEN], GuestAddress(0x40000))
        .unwrap();
    d.mem
        .write_slice(b"via-ioeventfd", GuestAddress(0x40100))
        .unwrap();
    tx.set_desc(&d.mem, 0, 0x40000, HDR_LEN as u32, VRING_DESC_F_NEXT, 1);
    tx.set_desc(&d.mem, 1, 0x40100, 13, 0, 0);
    tx.publish(&d.mem, 0);
    kvm_signals(&d, 1);
    wait_for("TX by the worker", || d.backend.sent().len() == 1);
    assert_eq!(d.backend.sent()[0], b"via-ioeventfd");
    wait_for("TX used", || tx.used_idx(&d.mem) == 1);
    // RX: starve, then a buffer arrives with an ioeventfd notify.
    d.backend.deliver(&[7; 50]);
    std::thread::sleep(Duration::from_millis(20));
    d.post_rx(&mut rx, 0, 0x50000, 2048);
    kvm_signals(&d, 0);
    wait_for("RX after the notify", || rx.used_idx(&d.mem) == 1);
    worker.stop();
}

/// The device is in NEEDS_RESET, told the driver, and recovers on reset.
fn assert_needs_reset(d: &Driver) {
    assert_ne!(d.status() & status::NEEDS_RESET, 0);
    assert!(d.msi.taken().contains(&(0xfee0_0000, 0x40)), "config MSI");
    assert_eq!(d.read(ISR_CFG, 1) & 2, 2);
    d.set_status(0);
    assert_eq!(d.status(), 0);
    d.up();
}

#[test]
fn rings_outside_memory_are_refused() {
    let d = Driver::new();
    d.negotiate();
    d.msix(&[(0xfee0_0000, 0x40)]);
    d.write(0x10, 2, 0);
    let mut bad = Ring::new(MEM as u64 - 0x100, 256);
    bad.used = u64::MAX - 8;
    d.queue_set(1, &bad);
    d.set_status(status::ACKNOWLEDGE | status::DRIVER | status::FEATURES_OK | status::DRIVER_OK);
    assert_needs_reset(&d);
}

#[test]
fn hostile_tx_chains_are_refused() {
    // Buffer outside RAM.
    let d = Driver::new();
    let (_rx, mut tx) = d.up();
    tx.set_desc(&d.mem, 0, MEM as u64 - 4, 64, 0, 0);
    tx.publish(&d.mem, 0);
    d.notify(1);
    assert!(d.backend.sent().is_empty());
    assert_needs_reset(&d);

    // A huge length.
    let d = Driver::new();
    let (_rx, mut tx) = d.up();
    tx.set_desc(&d.mem, 0, 0x40000, u32::MAX, 0, 0);
    tx.publish(&d.mem, 0);
    d.notify(1);
    assert!(d.backend.sent().is_empty());
    assert_needs_reset(&d);

    // A descriptor loop: ends after queue-size descriptors (16 x 12
    // bytes, sent as one junk frame) and does not hang.
    let d = Driver::new();
    let (_rx, mut tx) = d.up();
    tx.set_desc(&d.mem, 0, 0x40000, 12, VRING_DESC_F_NEXT, 1);
    tx.set_desc(&d.mem, 1, 0x40000, 12, VRING_DESC_F_NEXT, 0);
    tx.publish(&d.mem, 0);
    d.notify(1);
    assert_eq!(tx.pop_used(&d.mem), Some((0, 0)));
    assert!(d.backend.sent().iter().all(|f| f.len() <= 16 * 12));

    // Descriptor index out of range, nested indirect tables.
    tx.set_desc(&d.mem, 2, 0x40000, 12, VRING_DESC_F_NEXT, 999);
    tx.publish(&d.mem, 2);
    let table = Ring::new(0x52000, 1);
    table.set_desc(&d.mem, 0, 0x53000, 16, VRING_DESC_F_INDIRECT, 0);
    tx.set_desc(&d.mem, 3, 0x52000, 16, VRING_DESC_F_INDIRECT, 0);
    tx.publish(&d.mem, 3);
    d.notify(1);

    // The available index runs ahead by more than the queue size.
    d.mem
        .write_obj(tx.avail_idx.wrapping_add(100), GuestAddress(tx.avail + 2))
        .unwrap();
    d.notify(1);
    assert_needs_reset(&d);
}

#[test]
fn hostile_rx_buffers_are_refused() {
    let d = Driver::new();
    let (mut rx, _tx) = d.up();
    let worker = Worker::start(&d.dev).unwrap();
    rx.set_desc(&d.mem, 0, u64::MAX - 100, 2048, VRING_DESC_F_WRITE, 0);
    rx.publish(&d.mem, 0);
    d.notify(0);
    d.backend.deliver(&[1; 60]);
    wait_for("NEEDS_RESET", || d.status() & status::NEEDS_RESET != 0);
    worker.stop();
    assert_eq!(rx.used_idx(&d.mem), 0);
    assert_needs_reset(&d);
}

#[test]
fn a_failing_backend_needs_a_reset() {
    let d = Driver::new();
    let (_rx, mut tx) = d.up();
    d.backend.net.lock().unwrap().fail_send = true;
    d.send(&mut tx, 0, 0x40000, &[1; 60]);
    assert_needs_reset(&d);
}

#[test]
fn worker_stops_promptly() {
    let d = Driver::new();
    d.up();
    let worker = Worker::start(&d.dev).unwrap();
    let start = Instant::now();
    worker.stop();
    assert!(start.elapsed() < Duration::from_secs(5));
}

/// Not a pass/fail check: the device-model cost of one BAR read (the MMIO
/// exit itself comes on top; see the crate docs).
#[test]
fn bar_read_cost() {
    let d = Driver::new();
    let n = 100_000;
    let start = Instant::now();
    let mut d8 = [0u8; 1];
    for _ in 0..n {
        assert!(d.dev.mmio_read(d.bar + 0x14, &mut d8));
    }
    let per = start.elapsed() / n;
    println!("virtio-net model: one BAR read (device_status) takes {per:?} in uhyve");
}

/// A packet socket on interface `ifindex` (sees and sends its frames).
struct PacketSocket(std::os::fd::OwnedFd);

impl PacketSocket {
    fn bind(ifindex: u32) -> io::Result<Self> {
        use std::os::fd::FromRawFd;
        let proto = (libc::ETH_P_ALL as u16).to_be();
        // SAFETY: plain socket creation; the fd is owned below.
        let fd = unsafe {
            libc::socket(
                libc::AF_PACKET,
                libc::SOCK_RAW | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                i32::from(proto),
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` is a fresh socket nobody else owns.
        let sock = Self(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) });
        // SAFETY: an all-zero sockaddr_ll is valid; fields set below.
        let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        addr.sll_family = libc::AF_PACKET as u16;
        addr.sll_protocol = proto;
        addr.sll_ifindex = ifindex as i32;
        // SAFETY: `addr` is a valid sockaddr_ll of the size passed.
        let rc = unsafe {
            libc::bind(
                sock.0.as_raw_fd(),
                (&raw const addr).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as u32,
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(sock)
    }

    fn send(&self, frame: &[u8]) -> io::Result<()> {
        // SAFETY: `frame` is valid for reads of its length.
        let n = unsafe { libc::send(self.0.as_raw_fd(), frame.as_ptr().cast(), frame.len(), 0) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Waits up to 5 s for a frame carrying `marker`.
    fn wait_for(&self, marker: &[u8]) -> bool {
        let start = Instant::now();
        let mut buf = [0u8; 2048];
        while start.elapsed() < Duration::from_secs(5) {
            // SAFETY: `buf` is valid for writes of its length.
            let n =
                unsafe { libc::recv(self.0.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
            if n > 0 {
                let got = &buf[..n as usize];
                if got.windows(marker.len()).any(|w| w == marker) {
                    return true;
                }
            } else {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        false
    }
}

/// A broadcast frame of the local experimental ethertype 0x88b5.
fn test_frame(marker: &[u8]) -> Vec<u8> {
    let mut f = vec![0xff; 6];
    f.extend_from_slice(&MAC);
    f.extend_from_slice(&[0x88, 0xb5]);
    f.extend_from_slice(marker);
    f.resize(60, 0);
    f
}

/// Creates a tap, brings it up; `Err` says why the test must skip.
fn tap_fixture() -> Result<(crate::tap::Tap, u32), String> {
    let name = format!("uhyvet{}", std::process::id() % 100_000);
    let tap = crate::tap::Tap::open(&name).map_err(|e| e.to_string())?;
    // Quiet interface: no IPv6 router solicitations in the way.
    let _ = std::fs::write(format!("/proc/sys/net/ipv6/conf/{name}/disable_ipv6"), "1");
    let up = std::process::Command::new("ip")
        .args(["link", "set", "dev", &name, "up"])
        .status()
        .map_err(|e| format!("cannot run ip: {e}"))?;
    if !up.success() {
        return Err(format!("ip link set {name} up failed"));
    }
    let cname = std::ffi::CString::new(name).map_err(|e| e.to_string())?;
    // SAFETY: `cname` is a NUL-terminated string.
    let ifindex = unsafe { libc::if_nametoindex(cname.as_ptr()) };
    if ifindex == 0 {
        return Err("if_nametoindex failed".into());
    }
    Ok((tap, ifindex))
}

#[test]
fn frames_cross_a_real_tap_both_ways() {
    let (tap, ifindex) = match tap_fixture() {
        Ok(t) => t,
        Err(why) => {
            println!("SKIPPED: frames_cross_a_real_tap_both_ways: {why}");
            return;
        }
    };
    let sock = match PacketSocket::bind(ifindex) {
        Ok(s) => s,
        Err(e) => {
            println!("SKIPPED: frames_cross_a_real_tap_both_ways: no packet socket: {e}");
            return;
        }
    };
    let d = Driver::with_backend(FakeBackend::new(), Box::new(tap));
    let (mut rx, mut tx) = d.up();
    let worker = Worker::start(&d.dev).unwrap();

    // Guest → tap → host.
    let out = test_frame(b"uhyve-tx-marker");
    d.send(&mut tx, 0, 0x40000, &out);
    assert_eq!(d.dev.stats().tx_frames, 1);
    assert!(
        sock.wait_for(b"uhyve-tx-marker"),
        "the host saw the guest's frame"
    );

    // Host → tap → guest.
    for i in 0..8u16 {
        d.post_rx(&mut rx, i, 0x60000 + 0x1000 * u64::from(i), 2048);
    }
    d.notify(0);
    sock.send(&test_frame(b"uhyve-rx-marker")).unwrap();
    let mut found = false;
    let start = Instant::now();
    while !found && start.elapsed() < Duration::from_secs(5) {
        while let Some((id, len)) = rx.pop_used(&d.mem) {
            let mut buf = vec![0u8; len as usize];
            d.mem
                .read_slice(&mut buf, GuestAddress(0x60000 + 0x1000 * u64::from(id)))
                .unwrap();
            assert_eq!(buf[10], 1, "num_buffers");
            found |= buf[HDR_LEN..].windows(15).any(|w| w == b"uhyve-rx-marker");
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    worker.stop();
    assert!(found, "the guest received the host's frame");
}
