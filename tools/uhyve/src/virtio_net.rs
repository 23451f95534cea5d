//! A modern (virtio 1.x) virtio-net PCI device: one RX and one TX queue,
//! MSI-X interrupts, frames exchanged with a [`Backend`].
//!
//! The guest finds it at 00:[`NIC_SLOT`](crate::pci::NIC_SLOT).0 (vendor
//! `0x1af4`, device `0x1041`, class `0x020000`, no INTx pin). BAR0 is a
//! 32-bit memory BAR of [`BAR_SIZE`] bytes, pre-assigned at
//! [`NIC_BAR`](crate::layout::NIC_BAR) with memory decoding on (as firmware
//! would leave it), and may be sized and moved by the guest. Its layout:
//!
//! ```text
//! 0x0000  common configuration   (virtio_pci_common_cfg, 0x38 bytes)
//! 0x1000  ISR status             (1 byte, read clears)
//! 0x2000  device configuration   (mac[6], status u16, max_virtqueue_pairs u16, mtu u16)
//! 0x3000  notifications          (queue q at 0x3000 + 4 q, notify_off_multiplier 4)
//! 0x3800  MSI-X table            (3 entries)
//! 0x3c00  MSI-X PBA
//! ```
//!
//! Offered features: `VERSION_1`, `MAC`, `STATUS` (link always up),
//! `RING_EVENT_IDX`, `RING_INDIRECT_DESC`, and `MTU` when the backend has
//! one ([`Backend::mtu`]: user-mode networking offers 9000) — no offloads,
//! no mergeable buffers, no control queue; the header is the 12-byte
//! `virtio_net_hdr_v1` with `num_buffers = 1`. A received frame that does
//! not fit the guest's buffer is dropped (counted in [`Stats::rx_dropped`]).
//!
//! Queues are `virtio-queue`'s split rings over guest memory: every
//! descriptor is checked against guest RAM. A ring the device cannot use
//! (rings outside RAM, a bogus available index, a chain whose buffers are
//! outside RAM) sets `DEVICE_NEEDS_RESET` and stops the device until the
//! driver resets it; descriptor loops end after queue-size descriptors;
//! TX frames above 64 KiB are dropped.
//!
//! Queue notifies are ioeventfds registered with KVM at BAR0's current
//! address (re-registered when the guest moves the BAR or turns decoding
//! off), so the notifying vCPU does not wait for uhyve: measured here about
//! 6 us per notify against 12-17 us for a write that exits to uhyve (see
//! `tests/net.rs`). One worker thread ([`Worker`]) polls them and the
//! backend's fd: it moves TX chains to the backend and fills RX buffers,
//! and stops reading the backend while the guest has no RX buffer, until
//! it notifies the RX queue. Notify writes KVM does not match (other
//! widths, or no ioeventfd support) exit to [`VirtioNet::mmio_write`],
//! which does the same work on the vCPU thread.

use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use virtio_queue::{Queue, QueueOwnedT, QueueT, Reader, Writer};
use vm_memory::GuestMemoryMmap;
use vmm_sys_util::eventfd::{EFD_NONBLOCK, EventFd};

use crate::net::Backend;
use crate::pci::{
    BAR0, CAP_POINTER, COMMAND, COMMAND_BUS_MASTER, COMMAND_INTX_DISABLE, COMMAND_MEMORY,
    ConfigSpace, PciDevice, STATUS_CAP_LIST,
};

/// Size of BAR0.
pub const BAR_SIZE: u64 = 0x4000;
/// Offset of the common configuration in BAR0.
pub const COMMON_CFG: u64 = 0x0000;
const COMMON_CFG_LEN: u64 = 0x38;
/// Offset of the ISR status byte in BAR0.
pub const ISR_CFG: u64 = 0x1000;
const ISR_CFG_LEN: u64 = 4;
/// Offset of the device configuration in BAR0.
pub const DEVICE_CFG: u64 = 0x2000;
const DEVICE_CFG_LEN: u64 = 12;
/// Offset of the notification area in BAR0.
pub const NOTIFY_CFG: u64 = 0x3000;
/// Bytes between two queues' notification addresses.
pub const NOTIFY_OFF_MULTIPLIER: u32 = 4;
/// Offset of the MSI-X table in BAR0.
pub const MSIX_TABLE: u64 = 0x3800;
/// Offset of the MSI-X pending-bit array in BAR0.
pub const MSIX_PBA: u64 = 0x3c00;
/// MSI-X vectors: configuration changes and the two queues.
pub const MSIX_VECTORS: u16 = 3;
/// "No MSI-X vector" in `msix_config` / `queue_msix_vector`.
pub const NO_VECTOR: u16 = 0xffff;
/// The largest queue the driver may set up.
pub const QUEUE_MAX: u16 = 1024;
/// Index of the receive queue.
pub const RX: usize = 0;
/// Index of the transmit queue.
pub const TX: usize = 1;
/// `sizeof(virtio_net_hdr_v1)`.
pub const HDR_LEN: usize = 12;
/// Largest frame the device moves (without the header).
pub const MAX_FRAME: usize = 65535;

/// Feature bits.
pub mod features {
    /// The configuration's `mtu` field holds the MTU the driver may use.
    pub const MTU: u64 = 1 << 3;
    /// The device has a MAC address in its configuration.
    pub const MAC: u64 = 1 << 5;
    /// The configuration has a link status field.
    pub const STATUS: u64 = 1 << 16;
    /// Indirect descriptor tables.
    pub const RING_INDIRECT_DESC: u64 = 1 << 28;
    /// `used_event` / `avail_event` notification suppression.
    pub const RING_EVENT_IDX: u64 = 1 << 29;
    /// virtio 1.x (modern) device.
    pub const VERSION_1: u64 = 1 << 32;
    /// What every device offers (plus [`MTU`] when the backend has one).
    pub const OFFERED: u64 = MAC | STATUS | RING_INDIRECT_DESC | RING_EVENT_IDX | VERSION_1;
}

/// Device status bits.
pub mod status {
    /// The guest found the device.
    pub const ACKNOWLEDGE: u8 = 1;
    /// The guest has a driver for it.
    pub const DRIVER: u8 = 2;
    /// The driver is ready.
    pub const DRIVER_OK: u8 = 4;
    /// Feature negotiation is complete.
    pub const FEATURES_OK: u8 = 8;
    /// The device hit an error and needs a reset.
    pub const NEEDS_RESET: u8 = 0x40;
    /// The driver gave up.
    pub const FAILED: u8 = 0x80;
}

const PCI_VENDOR: u16 = 0x1af4;
const PCI_DEVICE: u16 = 0x1041;
const PCI_SUBSYSTEM: u16 = 0x1100;
const CAP_VENDOR: u8 = 0x09;
const CAP_MSIX: u8 = 0x11;
const CAP_COMMON: usize = 0x40;
const CAP_NOTIFY: usize = 0x50;
const CAP_ISR: usize = 0x64;
const CAP_DEVICE: usize = 0x74;
/// Offset of the MSI-X capability in configuration space.
pub const CAP_MSIX_OFF: usize = 0x84;
const MSIX_ENABLE: u16 = 1 << 15;
const MSIX_FUNCTION_MASK: u16 = 1 << 14;
const ISR_QUEUE: u8 = 1;
const ISR_CONFIG: u8 = 2;
const LINK_UP: u16 = 1;

/// What the device needs from the hypervisor (KVM; a fake in tests).
pub trait VmHooks: Send + Sync {
    /// Delivers the MSI message `data` to `address`.
    fn signal_msi(&self, address: u64, data: u32) -> io::Result<()>;

    /// Makes a 2-byte guest write of `value` to guest-physical `addr`
    /// signal `fd` instead of exiting to uhyve (an ioeventfd). The default
    /// refuses: notifies then arrive as MMIO exits.
    fn register_notify(&self, fd: &EventFd, addr: u64, value: u16) -> io::Result<()> {
        let _ = (fd, addr, value);
        Err(io::ErrorKind::Unsupported.into())
    }

    /// Undoes [`VmHooks::register_notify`].
    fn unregister_notify(&self, fd: &EventFd, addr: u64, value: u16) -> io::Result<()> {
        let _ = (fd, addr, value);
        Ok(())
    }
}

/// [`VmHooks`] for a KVM VM with in-kernel local APICs.
pub struct KvmHooks(pub Arc<kvm_ioctls::VmFd>);

impl VmHooks for KvmHooks {
    fn register_notify(&self, fd: &EventFd, addr: u64, value: u16) -> io::Result<()> {
        self.0
            .register_ioevent(fd, &kvm_ioctls::IoEventAddress::Mmio(addr), value)
            .map_err(|e| io::Error::from_raw_os_error(e.errno()))
    }

    fn unregister_notify(&self, fd: &EventFd, addr: u64, value: u16) -> io::Result<()> {
        self.0
            .unregister_ioevent(fd, &kvm_ioctls::IoEventAddress::Mmio(addr), value)
            .map_err(|e| io::Error::from_raw_os_error(e.errno()))
    }

    fn signal_msi(&self, address: u64, data: u32) -> io::Result<()> {
        let msi = kvm_bindings::kvm_msi {
            address_lo: address as u32,
            address_hi: (address >> 32) as u32,
            data,
            ..Default::default()
        };
        self.0
            .signal_msi(msi)
            .map(drop)
            .map_err(|e| io::Error::from_raw_os_error(e.errno()))
    }
}

/// One queue and its MSI-X vector.
struct QueueState {
    queue: Queue,
    vector: u16,
}

/// Everything the guest can change, behind the device's lock.
struct Inner {
    pci: ConfigSpace,
    device_feature_select: u32,
    driver_feature_select: u32,
    driver_features: u64,
    config_vector: u16,
    status: u8,
    queue_select: u16,
    queues: [QueueState; 2],
    isr: u8,
    /// The MSI-X table, 16 bytes per vector.
    msix_table: [u8; 16 * MSIX_VECTORS as usize],
    /// Pending bit per vector.
    msix_pending: u64,
    config: [u8; DEVICE_CFG_LEN as usize],
    /// The feature bits this device offers.
    offered: u64,
    backend: Box<dyn Backend>,
    /// The backend failed (fatally); it is not polled any more.
    backend_failed: bool,
    /// The RX queue ran out of buffers; wait for the driver's notify.
    rx_starved: bool,
    /// Scratch buffer for one frame with its header.
    frame: Vec<u8>,
    /// BAR0 address at which the notify ioeventfds are registered.
    notify_at: Option<u64>,
}

/// Counters, for tests and diagnostics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Frames handed to the backend.
    pub tx_frames: u64,
    /// TX chains dropped (too short or too long).
    pub tx_dropped: u64,
    /// Frames written into RX buffers.
    pub rx_frames: u64,
    /// Received frames dropped because the RX buffer was too small.
    pub rx_dropped: u64,
    /// MSI messages sent.
    pub interrupts: u64,
}

/// The device. Shared by the vCPU threads (MMIO and configuration
/// accesses) and the RX [`Worker`].
pub struct VirtioNet {
    inner: Mutex<Inner>,
    stats: Mutex<Stats>,
    mem: GuestMemoryMmap,
    hooks: Arc<dyn VmHooks>,
    /// Wakes the worker (RX notify, DRIVER_OK, reset, stop).
    wake: EventFd,
    /// Signalled by KVM on a notify write (ioeventfd), per queue.
    notify: [EventFd; 2],
    stop: AtomicBool,
    backend_fd: RawFd,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn new_queue() -> QueueState {
    QueueState {
        // QUEUE_MAX is a power of two no larger than virtio-queue's limit.
        queue: Queue::new(QUEUE_MAX).unwrap_or_else(|_| unreachable!("QUEUE_MAX is valid")),
        vector: NO_VECTOR,
    }
}

/// Reads `data.len()` bytes at `off` of a register block given as bytes;
/// outside it reads zero.
fn read_bytes(block: &[u8], off: u64, data: &mut [u8]) {
    for (i, d) in data.iter_mut().enumerate() {
        *d = usize::try_from(off)
            .ok()
            .and_then(|o| block.get(o + i))
            .copied()
            .unwrap_or(0);
    }
}

/// A little-endian value of up to 8 bytes.
fn le_value(data: &[u8]) -> u64 {
    let mut b = [0u8; 8];
    let n = data.len().min(8);
    b[..n].copy_from_slice(&data[..n]);
    u64::from_le_bytes(b)
}

fn pci_config_space(bar: u32) -> ConfigSpace {
    let mut c = ConfigSpace::new(PCI_VENDOR, PCI_DEVICE, 0x02_00_00, 1);
    c.set_u16(COMMAND, COMMAND_MEMORY | COMMAND_BUS_MASTER);
    c.set_writable(
        COMMAND,
        2,
        u32::from(COMMAND_MEMORY | COMMAND_BUS_MASTER | COMMAND_INTX_DISABLE),
    );
    c.set_u16(COMMAND + 2, STATUS_CAP_LIST);
    // 32-bit, non-prefetchable memory BAR: the type bits read as zero.
    c.set_u32(BAR0, bar);
    c.set_writable(BAR0, 4, !(BAR_SIZE as u32 - 1));
    c.set_u16(0x2c, PCI_VENDOR);
    c.set_u16(0x2e, PCI_SUBSYSTEM);
    c.set_u8(CAP_POINTER, CAP_COMMON as u8);
    c.set_u8(0x3c, 0xff);
    c.set_writable(0x3c, 1, 0xff);
    // Interrupt pin 0: MSI-X only.
    let vendor_cap = |c: &mut ConfigSpace, at: usize, next: usize, len: u8, kind: u8, off, size| {
        c.set_u8(at, CAP_VENDOR);
        c.set_u8(at + 1, next as u8);
        c.set_u8(at + 2, len);
        c.set_u8(at + 3, kind);
        c.set_u8(at + 4, 0); // BAR0
        c.set_u32(at + 8, off as u32);
        c.set_u32(at + 12, size as u32);
    };
    vendor_cap(
        &mut c,
        CAP_COMMON,
        CAP_NOTIFY,
        16,
        1,
        COMMON_CFG,
        COMMON_CFG_LEN,
    );
    vendor_cap(
        &mut c,
        CAP_NOTIFY,
        CAP_ISR,
        20,
        2,
        NOTIFY_CFG,
        2 * u64::from(NOTIFY_OFF_MULTIPLIER),
    );
    c.set_u32(CAP_NOTIFY + 16, NOTIFY_OFF_MULTIPLIER);
    vendor_cap(&mut c, CAP_ISR, CAP_DEVICE, 16, 3, ISR_CFG, ISR_CFG_LEN);
    vendor_cap(
        &mut c,
        CAP_DEVICE,
        CAP_MSIX_OFF,
        16,
        4,
        DEVICE_CFG,
        DEVICE_CFG_LEN,
    );
    c.set_u8(CAP_MSIX_OFF, CAP_MSIX);
    c.set_u8(CAP_MSIX_OFF + 1, 0);
    c.set_u16(CAP_MSIX_OFF + 2, MSIX_VECTORS - 1);
    c.set_writable(
        CAP_MSIX_OFF + 2,
        2,
        u32::from(MSIX_ENABLE | MSIX_FUNCTION_MASK),
    );
    c.set_u32(CAP_MSIX_OFF + 4, MSIX_TABLE as u32);
    c.set_u32(CAP_MSIX_OFF + 8, MSIX_PBA as u32);
    c
}

impl Inner {
    fn live(&self) -> bool {
        self.status & status::DRIVER_OK != 0 && self.status & status::NEEDS_RESET == 0
    }

    fn queue_live(&self, q: usize, mem: &GuestMemoryMmap) -> bool {
        self.live() && self.queues[q].queue.ready() && self.queues[q].queue.is_valid(mem)
    }

    fn bar(&self) -> Option<u64> {
        (self.pci.u16(COMMAND) & COMMAND_MEMORY != 0).then(|| u64::from(self.pci.u32(BAR0) & !0xf))
    }

    fn reset(&mut self) {
        self.device_feature_select = 0;
        self.driver_feature_select = 0;
        self.driver_features = 0;
        self.config_vector = NO_VECTOR;
        self.status = 0;
        self.queue_select = 0;
        for q in &mut self.queues {
            q.queue.reset();
            q.vector = NO_VECTOR;
        }
        self.isr = 0;
        self.rx_starved = false;
    }

    /// Reports a fatal device error to the driver: `DEVICE_NEEDS_RESET`
    /// and a configuration-change interrupt.
    fn fail(&mut self, why: &str, msi: &dyn VmHooks, stats: &Mutex<Stats>) {
        if self.status & status::NEEDS_RESET == 0 {
            log::warn!("virtio-net: {why}; the device needs a reset");
            self.status |= status::NEEDS_RESET;
            self.raise(ISR_CONFIG, self.config_vector, msi, stats);
        }
    }

    fn msix_control(&self) -> u16 {
        self.pci.u16(CAP_MSIX_OFF + 2)
    }

    fn entry_masked(&self, v: usize) -> bool {
        self.msix_table[16 * v + 12] & 1 != 0
    }

    /// Sets `isr_bit` and sends `vector`'s message (or marks it pending
    /// while masked).
    fn raise(&mut self, isr_bit: u8, vector: u16, msi: &dyn VmHooks, stats: &Mutex<Stats>) {
        self.isr |= isr_bit;
        let control = self.msix_control();
        if vector >= MSIX_VECTORS || control & MSIX_ENABLE == 0 {
            return;
        }
        let v = usize::from(vector);
        if control & MSIX_FUNCTION_MASK != 0 || self.entry_masked(v) {
            self.msix_pending |= 1 << v;
            return;
        }
        self.send(v, msi, stats);
    }

    fn send(&mut self, v: usize, msi: &dyn VmHooks, stats: &Mutex<Stats>) {
        let e = &self.msix_table[16 * v..16 * v + 16];
        let address = le_value(&e[0..8]);
        let data = le_value(&e[8..12]) as u32;
        self.msix_pending &= !(1 << v);
        match msi.signal_msi(address, data) {
            Ok(()) => lock(stats).interrupts += 1,
            Err(e) => log::warn!("virtio-net: cannot send MSI {address:#x}/{data:#x}: {e}"),
        }
    }

    /// Sends pending messages whose vector is no longer masked.
    fn deliver_pending(&mut self, msi: &dyn VmHooks, stats: &Mutex<Stats>) {
        let control = self.msix_control();
        if control & MSIX_ENABLE == 0 || control & MSIX_FUNCTION_MASK != 0 {
            return;
        }
        for v in 0..usize::from(MSIX_VECTORS) {
            if self.msix_pending & (1 << v) != 0 && !self.entry_masked(v) {
                self.send(v, msi, stats);
            }
        }
    }

    /// The common configuration as bytes (for reads of any width).
    fn common_cfg(&self) -> [u8; COMMON_CFG_LEN as usize] {
        let mut b = [0u8; COMMON_CFG_LEN as usize];
        let mut put = |off: usize, v: &[u8]| b[off..off + v.len()].copy_from_slice(v);
        put(0x00, &self.device_feature_select.to_le_bytes());
        let features = match self.device_feature_select {
            0 => self.offered as u32,
            1 => (self.offered >> 32) as u32,
            _ => 0,
        };
        put(0x04, &features.to_le_bytes());
        put(0x08, &self.driver_feature_select.to_le_bytes());
        let driver = match self.driver_feature_select {
            0 => self.driver_features as u32,
            1 => (self.driver_features >> 32) as u32,
            _ => 0,
        };
        put(0x0c, &driver.to_le_bytes());
        put(0x10, &self.config_vector.to_le_bytes());
        put(0x12, &2u16.to_le_bytes());
        put(0x14, &[self.status, 0]);
        put(0x16, &self.queue_select.to_le_bytes());
        if let Some(q) = self.queues.get(usize::from(self.queue_select)) {
            put(0x18, &q.queue.size().to_le_bytes());
            put(0x1a, &q.vector.to_le_bytes());
            put(0x1c, &u16::from(q.queue.ready()).to_le_bytes());
            put(0x1e, &self.queue_select.to_le_bytes());
            put(0x20, &q.queue.desc_table().to_le_bytes());
            put(0x28, &q.queue.avail_ring().to_le_bytes());
            put(0x30, &q.queue.used_ring().to_le_bytes());
        }
        b
    }

    /// A write to the common configuration. Returns whether the worker
    /// should look at the device again.
    fn write_common(
        &mut self,
        off: u64,
        data: &[u8],
        mem: &GuestMemoryMmap,
        msi: &dyn VmHooks,
        stats: &Mutex<Stats>,
    ) -> bool {
        let v = le_value(data);
        let (lo, hi) = (
            Some(v as u32),
            (data.len() == 8).then_some((v >> 32) as u32),
        );
        let qsel = usize::from(self.queue_select);
        let vector = |v: u64| {
            if v < u64::from(MSIX_VECTORS) {
                v as u16
            } else {
                NO_VECTOR
            }
        };
        match (off, data.len()) {
            (0x00, 4) => self.device_feature_select = v as u32,
            (0x08, 4) => self.driver_feature_select = v as u32,
            (0x0c, 4) if self.status & status::FEATURES_OK == 0 => {
                match self.driver_feature_select {
                    0 => self.driver_features = (self.driver_features & !0xffff_ffff) | v,
                    1 => self.driver_features = (self.driver_features & 0xffff_ffff) | (v << 32),
                    _ => {}
                }
            }
            (0x10, 2) => self.config_vector = vector(v),
            (0x14, 1) => return self.write_status(v as u8, mem, msi, stats),
            (0x16, 2) => self.queue_select = v as u16,
            _ if qsel >= self.queues.len() => {}
            (0x18, 2) if !self.queues[qsel].queue.ready() => {
                self.queues[qsel].queue.set_size(v as u16);
            }
            (0x1a, 2) => self.queues[qsel].vector = vector(v),
            (0x1c, 2) if v == 1 => {
                self.queues[qsel].queue.set_ready(true);
                return true;
            }
            (0x20 | 0x24 | 0x28 | 0x2c | 0x30 | 0x34, 4 | 8)
                if !self.queues[qsel].queue.ready() =>
            {
                let q = &mut self.queues[qsel].queue;
                let (lo, hi) = if off & 4 != 0 { (None, lo) } else { (lo, hi) };
                match off & !7 {
                    0x20 => q.set_desc_table_address(lo, hi),
                    0x28 => q.set_avail_ring_address(lo, hi),
                    _ => q.set_used_ring_address(lo, hi),
                }
            }
            _ => log::debug!(
                "virtio-net: ignored common config write {off:#x}/{}",
                data.len()
            ),
        }
        false
    }

    fn write_status(
        &mut self,
        new: u8,
        mem: &GuestMemoryMmap,
        msi: &dyn VmHooks,
        stats: &Mutex<Stats>,
    ) -> bool {
        if new == 0 {
            self.reset();
            return true;
        }
        let old = self.status;
        let mut new = new | (old & status::NEEDS_RESET);
        if new & status::FEATURES_OK != 0 && old & status::FEATURES_OK == 0 {
            let f = self.driver_features;
            if f & !self.offered != 0 || f & features::VERSION_1 == 0 {
                new &= !status::FEATURES_OK;
            }
        }
        self.status = new;
        if new & status::DRIVER_OK != 0 && old & status::DRIVER_OK == 0 {
            let event_idx = self.driver_features & features::RING_EVENT_IDX != 0;
            for q in &mut self.queues {
                q.queue.set_event_idx(event_idx);
            }
            for i in [RX, TX] {
                if self.queues[i].queue.ready() && !self.queues[i].queue.is_valid(mem) {
                    self.fail("a queue lies outside guest memory", msi, stats);
                }
            }
        }
        true
    }

    /// Moves TX chains to the backend; runs on a vCPU thread.
    /// Sends what the driver queued; returns how many frames. With
    /// `rearm`, asks for a notify for the next frame before returning (the
    /// worker is about to sleep); without, notifies stay off (it polls).
    fn process_tx(
        &mut self,
        mem: &GuestMemoryMmap,
        msi: &dyn VmHooks,
        stats: &Mutex<Stats>,
        rearm: bool,
    ) -> u32 {
        if !self.queue_live(TX, mem) {
            return 0;
        }
        let mut used = 0u32;
        let mut error = None;
        // No notifies while this worker drains or polls the ring: each one
        // is a VM exit. They are enabled again before the worker sleeps.
        if let Err(e) = self.queues[TX].queue.disable_notification(mem) {
            error = Some(format!("bad TX ring: {e}"));
        }
        // Bounded: another vCPU could keep the ring busy forever.
        'rounds: for _ in 0..4 {
            if error.is_some() {
                break;
            }
            loop {
                let q = &mut self.queues[TX].queue;
                let chain = match q.iter(mem) {
                    Ok(mut it) => it.next(),
                    Err(e) => {
                        error = Some(format!("bad TX ring: {e}"));
                        break 'rounds;
                    }
                };
                let Some(chain) = chain else { break };
                let head = chain.head_index();
                let mut reader = match Reader::<()>::new(mem, chain) {
                    Ok(r) => r,
                    Err(e) => {
                        error = Some(format!("bad TX buffer: {e}"));
                        break 'rounds;
                    }
                };
                let len = reader.available_bytes();
                if (HDR_LEN..=HDR_LEN + MAX_FRAME).contains(&len) {
                    self.frame.resize(len, 0);
                    if let Err(e) = reader.read_exact(&mut self.frame) {
                        error = Some(format!("cannot read a TX buffer: {e}"));
                        break 'rounds;
                    }
                    match self.backend.send(&self.frame[HDR_LEN..]) {
                        Ok(()) => lock(stats).tx_frames += 1,
                        Err(e) => {
                            self.backend_failed = true;
                            error = Some(format!("the network backend failed: {e}"));
                        }
                    }
                } else {
                    lock(stats).tx_dropped += 1;
                }
                if let Err(e) = self.queues[TX].queue.add_used(mem, head, 0) {
                    error = Some(format!("cannot return a TX buffer: {e}"));
                    break 'rounds;
                }
                used += 1;
                if error.is_some() {
                    break 'rounds;
                }
            }
            if !rearm {
                break;
            }
            match self.queues[TX].queue.enable_notification(mem) {
                Ok(true) => {}
                Ok(false) => break,
                Err(e) => {
                    error = Some(format!("bad TX ring: {e}"));
                    break;
                }
            }
        }
        if used > 0
            && self.queues[TX]
                .queue
                .needs_notification(mem)
                .unwrap_or(true)
        {
            self.raise(ISR_QUEUE, self.queues[TX].vector, msi, stats);
        }
        if let Some(why) = error {
            self.fail(&why, msi, stats);
        }
        used
    }

    /// Whether the worker should poll the backend.
    fn wants_frames(&self, mem: &GuestMemoryMmap) -> bool {
        !self.rx_starved && !self.backend_failed && self.queue_live(RX, mem)
    }

    /// Moves waiting frames from the backend into RX buffers; runs on the
    /// worker thread.
    fn process_rx(
        &mut self,
        mem: &GuestMemoryMmap,
        msi: &dyn VmHooks,
        stats: &Mutex<Stats>,
    ) -> u32 {
        if !self.wants_frames(mem) {
            return 0;
        }
        let mut used = 0u32;
        let mut error = None;
        let mut rechecked = false;
        self.frame.resize(HDR_LEN + MAX_FRAME, 0);
        // The driver need not notify buffers it posts while the device has
        // some (each notify is a VM exit); notifies are wanted again only
        // once the device runs out (below).
        if let Err(e) = self.queues[RX].queue.disable_notification(mem) {
            error = Some(format!("bad RX ring: {e}"));
        }
        while error.is_none() {
            let q = &mut self.queues[RX].queue;
            let chain = match q.iter(mem) {
                Ok(mut it) => it.next(),
                Err(e) => {
                    error = Some(format!("bad RX ring: {e}"));
                    break;
                }
            };
            let Some(chain) = chain else {
                // Out of buffers: ask for a notify when more come, unless
                // some came in the meantime.
                match q.enable_notification(mem) {
                    Ok(true) if !rechecked => {
                        rechecked = true;
                        continue;
                    }
                    Ok(_) => self.rx_starved = true,
                    Err(e) => error = Some(format!("bad RX ring: {e}")),
                }
                break;
            };
            rechecked = false;
            let head = chain.head_index();
            let n = match self.backend.recv(&mut self.frame[HDR_LEN..]) {
                Ok(Some(n)) => n,
                Ok(None) => {
                    q.go_to_previous_position();
                    break;
                }
                Err(e) => {
                    q.go_to_previous_position();
                    self.backend_failed = true;
                    log::warn!("virtio-net: the network backend failed: {e}");
                    break;
                }
            };
            let mut writer = match Writer::<()>::new(mem, chain) {
                Ok(w) => w,
                Err(e) => {
                    error = Some(format!("bad RX buffer: {e}"));
                    break;
                }
            };
            if writer.available_bytes() < HDR_LEN + n {
                // The frame is lost; the buffer stays with the device.
                lock(stats).rx_dropped += 1;
                q.go_to_previous_position();
                continue;
            }
            // virtio_net_hdr_v1: no offloads, num_buffers = 1.
            self.frame[..HDR_LEN].copy_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0]);
            if let Err(e) = writer.write_all(&self.frame[..HDR_LEN + n]) {
                error = Some(format!("cannot fill an RX buffer: {e}"));
                break;
            }
            if let Err(e) = q.add_used(mem, head, (HDR_LEN + n) as u32) {
                error = Some(format!("cannot return an RX buffer: {e}"));
                break;
            }
            lock(stats).rx_frames += 1;
            used += 1;
        }
        if used > 0
            && self.queues[RX]
                .queue
                .needs_notification(mem)
                .unwrap_or(true)
        {
            self.raise(ISR_QUEUE, self.queues[RX].vector, msi, stats);
        }
        if let Some(why) = error {
            self.fail(&why, msi, stats);
        }
        used
    }
}

impl VirtioNet {
    /// A device over `mem` with its BAR0 at `bar` (a multiple of
    /// [`BAR_SIZE`] below 4 GiB), sending and receiving through `backend`
    /// and interrupting (and registering notify ioeventfds) through `hooks`.
    pub fn new(
        mem: GuestMemoryMmap,
        bar: u32,
        backend: Box<dyn Backend>,
        mac: [u8; 6],
        hooks: Arc<dyn VmHooks>,
    ) -> io::Result<Arc<Self>> {
        let backend_fd = backend.ready_fd();
        let mut config = [0u8; DEVICE_CFG_LEN as usize];
        config[..6].copy_from_slice(&mac);
        config[6..8].copy_from_slice(&LINK_UP.to_le_bytes());
        config[8..10].copy_from_slice(&1u16.to_le_bytes());
        let mtu = backend.mtu();
        config[10..12].copy_from_slice(&mtu.unwrap_or(0).to_le_bytes());
        let offered = features::OFFERED | mtu.map_or(0, |_| features::MTU);
        let mut msix_table = [0u8; 16 * MSIX_VECTORS as usize];
        for v in 0..usize::from(MSIX_VECTORS) {
            // Vectors start masked.
            msix_table[16 * v + 12] = 1;
        }
        let inner = Inner {
            pci: pci_config_space(bar),
            device_feature_select: 0,
            driver_feature_select: 0,
            driver_features: 0,
            config_vector: NO_VECTOR,
            status: 0,
            queue_select: 0,
            queues: [new_queue(), new_queue()],
            isr: 0,
            msix_table,
            msix_pending: 0,
            config,
            offered,
            backend,
            backend_failed: false,
            rx_starved: false,
            frame: Vec::new(),
            notify_at: None,
        };
        let device = Arc::new(Self {
            inner: Mutex::new(inner),
            stats: Mutex::new(Stats::default()),
            mem,
            hooks,
            wake: EventFd::new(EFD_NONBLOCK)?,
            notify: [EventFd::new(EFD_NONBLOCK)?, EventFd::new(EFD_NONBLOCK)?],
            stop: AtomicBool::new(false),
            backend_fd,
        });
        device.sync_notify(&mut lock(&device.inner));
        Ok(device)
    }

    /// Keeps the notify ioeventfds at the BAR's address. While decoding is
    /// off they stay where they were: BAR sizing (decoding off, all ones,
    /// restore) then costs no KVM_IOEVENTFD calls, each of which waits for
    /// an SRCU grace period; a notify written while decoding is off only
    /// makes the worker look at the queue. Where KVM refuses, notifies exit
    /// to [`VirtioNet::mmio_write`] instead.
    fn sync_notify(&self, inner: &mut Inner) {
        let Some(want) = inner.bar().map(|b| b + NOTIFY_CFG) else {
            return;
        };
        if Some(want) == inner.notify_at {
            return;
        }
        let addr = |base: u64, q: usize| base + q as u64 * u64::from(NOTIFY_OFF_MULTIPLIER);
        if let Some(old) = inner.notify_at.take() {
            for (q, fd) in self.notify.iter().enumerate() {
                let _ = self.hooks.unregister_notify(fd, addr(old, q), q as u16);
            }
        }
        for (q, fd) in self.notify.iter().enumerate() {
            if let Err(e) = self.hooks.register_notify(fd, addr(want, q), q as u16) {
                log::debug!("virtio-net: no ioeventfd for queue {q}: {e}");
                for (q, fd) in self.notify.iter().enumerate().take(q) {
                    let _ = self.hooks.unregister_notify(fd, addr(want, q), q as u16);
                }
                return;
            }
        }
        inner.notify_at = Some(want);
    }

    /// The device's counters.
    pub fn stats(&self) -> Stats {
        *lock(&self.stats)
    }

    fn kick_worker(&self) {
        // A full counter still wakes the worker.
        let _ = self.wake.write(1);
    }

    /// The BAR0 offset of `addr`, if BAR0 decodes it.
    fn decode(inner: &Inner, addr: u64, len: usize) -> Option<u64> {
        let base = inner.bar()?;
        let off = addr.checked_sub(base)?;
        (off.checked_add(len as u64)? <= BAR_SIZE).then_some(off)
    }

    /// A guest read at guest-physical `addr`; `false` if it is not this
    /// device's.
    pub fn mmio_read(&self, addr: u64, data: &mut [u8]) -> bool {
        let mut inner = lock(&self.inner);
        let Some(off) = Self::decode(&inner, addr, data.len()) else {
            return false;
        };
        data.fill(0);
        match off {
            COMMON_CFG..0x1000 => read_bytes(&inner.common_cfg(), off - COMMON_CFG, data),
            ISR_CFG..0x2000 => {
                if off == ISR_CFG {
                    data[0] = inner.isr;
                    inner.isr = 0;
                }
            }
            DEVICE_CFG..0x3000 => read_bytes(&inner.config, off - DEVICE_CFG, data),
            MSIX_TABLE..MSIX_PBA => read_bytes(&inner.msix_table, off - MSIX_TABLE, data),
            MSIX_PBA.. => read_bytes(&inner.msix_pending.to_le_bytes(), off - MSIX_PBA, data),
            _ => {}
        }
        true
    }

    /// A guest write at guest-physical `addr`; `false` if it is not this
    /// device's.
    pub fn mmio_write(&self, addr: u64, data: &[u8]) -> bool {
        let mut inner = lock(&self.inner);
        let Some(off) = Self::decode(&inner, addr, data.len()) else {
            return false;
        };
        let (mem, msi, stats) = (&self.mem, &*self.hooks, &self.stats);
        match off {
            COMMON_CFG..0x1000 => {
                if inner.write_common(off - COMMON_CFG, data, mem, msi, stats) {
                    self.kick_worker();
                }
            }
            NOTIFY_CFG..MSIX_TABLE => match (off - NOTIFY_CFG) / u64::from(NOTIFY_OFF_MULTIPLIER) {
                0 => {
                    inner.rx_starved = false;
                    self.kick_worker();
                }
                1 => {
                    inner.process_tx(mem, msi, stats, true);
                }
                _ => {}
            },
            MSIX_TABLE..MSIX_PBA => {
                let start = (off - MSIX_TABLE) as usize;
                if let Some(dst) = inner.msix_table.get_mut(start..start + data.len()) {
                    dst.copy_from_slice(data);
                }
                inner.deliver_pending(msi, stats);
            }
            _ => {}
        }
        true
    }
}

impl PciDevice for VirtioNet {
    fn config_read(&self, off: usize, data: &mut [u8]) {
        lock(&self.inner).pci.read(off, data);
    }

    fn config_write(&self, off: usize, data: &[u8]) {
        let mut inner = lock(&self.inner);
        inner.pci.write(off, data);
        self.sync_notify(&mut inner);
        inner.deliver_pending(&*self.hooks, &self.stats);
    }
}

/// The RX thread of a [`VirtioNet`]; stopped and joined by
/// [`Worker::stop`] or on drop.
pub struct Worker {
    device: Arc<VirtioNet>,
    thread: Option<JoinHandle<()>>,
}

impl Worker {
    /// Starts the RX thread of `device`.
    pub fn start(device: &Arc<VirtioNet>) -> io::Result<Self> {
        let dev = Arc::clone(device);
        let thread = std::thread::Builder::new()
            .name("virtio-net".into())
            .spawn(move || dev.run_worker())?;
        Ok(Self {
            device: Arc::clone(device),
            thread: Some(thread),
        })
    }

    /// Stops the thread and waits for it.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        if let Some(thread) = self.thread.take() {
            self.device.stop.store(true, Ordering::SeqCst);
            self.device.kick_worker();
            let _ = thread.join();
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.shutdown();
    }
}

impl VirtioNet {
    fn run_worker(&self) {
        // Until this instant the worker polls instead of sleeping (busy
        // polling after traffic, with the driver's TX notifies off): a
        // notify is a VM exit plus a wake-up of this thread, which on the
        // development host cost more than the frame itself.
        let mut poll_until: Option<Instant> = None;
        loop {
            if self.stop.load(Ordering::SeqCst) {
                return;
            }
            let polling = poll_until.is_some_and(|t| Instant::now() < t);
            if !polling {
                poll_until = None;
                // About to sleep: ask for TX notifies again, unless frames
                // came in the meantime.
                let mut inner = lock(&self.inner);
                if inner.queue_live(TX, &self.mem) {
                    match inner.queues[TX].queue.enable_notification(&self.mem) {
                        Ok(false) => {}
                        // New frames (or a broken ring, which the next
                        // round reports): do not sleep.
                        _ => {
                            poll_until = Some(Instant::now());
                        }
                    }
                }
            }
            let want = lock(&self.inner).wants_frames(&self.mem);
            let mut fds = [
                libc::pollfd {
                    fd: self.wake.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                },
                libc::pollfd {
                    fd: self.notify[RX].as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                },
                libc::pollfd {
                    fd: self.notify[TX].as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                },
                libc::pollfd {
                    // Negative fds are skipped by poll.
                    fd: if want { self.backend_fd } else { -1 },
                    events: libc::POLLIN,
                    revents: 0,
                },
            ];
            let timeout = if poll_until.is_some() { 0 } else { -1 };
            // SAFETY: `fds` is a valid array of pollfds of the length given.
            let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout) };
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                log::warn!("virtio-net: poll failed, RX stops: {e}");
                return;
            }
            if fds[0].revents != 0 {
                let _ = self.wake.read();
            }
            let mut inner = lock(&self.inner);
            if fds[2].revents != 0 {
                let _ = self.notify[TX].read();
            }
            let mut frames = inner.process_tx(&self.mem, &*self.hooks, &self.stats, false);
            if fds[1].revents != 0 {
                let _ = self.notify[RX].read();
                inner.rx_starved = false;
            }
            frames += inner.process_rx(&self.mem, &*self.hooks, &self.stats);
            if frames > 0 {
                poll_until = Some(Instant::now() + BUSY_POLL);
            }
        }
    }
}

/// How long the worker keeps polling after its last frame.
const BUSY_POLL: Duration = Duration::from_micros(50);

#[cfg(test)]
mod tests;
