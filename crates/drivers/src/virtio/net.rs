//! virtio-net through `virtio-drivers`' `VirtIONetRaw`, over any transport:
//! virtio-mmio ([`super::mmio::find`]) or modern virtio-pci
//! ([`pci_transport`]).
//!
//! Buffers are allocated once and reused: [`QUEUE_SIZE`] receive buffers
//! stay posted to the device, and a frame to send is built directly in one
//! of [`QUEUE_SIZE`] transmit buffers, handed to the device and reclaimed
//! when the device reports it used, without waiting for it. (The
//! higher-level `VirtIONet` zeroes a fresh buffer for every frame and spins
//! until the device has sent it; under an emulating hypervisor both cost
//! more than building the frame.) Transmit buffers are allocated as the
//! queue first fills, so a card that sends little holds few.
//!
//! A device offering `VIRTIO_NET_F_MTU` with an MTU from [`MIN_MTU`] to
//! [`MAX_MTU`] gets it negotiated (through [`ExtraFeatures`], since
//! `virtio-drivers` does not know the bit) and buffers sized for it: uhyve's
//! user-mode backend offers 9000, so TCP moves six times the payload per
//! frame. Otherwise the MTU is 1500.
//!
//! `virtio-drivers`' PCI transport leaves the queues' MSI-X vectors at
//! "no vector", so with MSI-X on the device would never interrupt;
//! [`route_queues`] writes them into the common configuration structure.

use alloc::boxed::Box;
use alloc::vec::Vec;

use virtio_drivers::Hal;
use virtio_drivers::device::net::VirtIONetRaw;
use virtio_drivers::transport::Transport;
use virtio_drivers::transport::pci::PciTransport;
use virtio_drivers::transport::pci::bus::{DeviceFunction, PciRoot};

use super::notify::ExtraFeatures;
use crate::nic::{MAX_FRAME, Nic, TxError};
use crate::pci::{ConfigAccess, Enabled, VirtioCam};

/// Descriptors per queue.
pub const QUEUE_SIZE: usize = 256;
/// Receive queue index.
pub const RX_QUEUE: u16 = 0;
/// Transmit queue index.
pub const TX_QUEUE: u16 = 1;
/// `VIRTIO_NET_F_MTU`: the device's configuration holds its MTU.
pub const F_MTU: u64 = 1 << 3;
/// Offset of the `mtu` field in the virtio-net configuration.
const CONFIG_MTU: usize = 10;
/// The MTU used without `VIRTIO_NET_F_MTU`.
pub const DEFAULT_MTU: usize = MAX_FRAME - ETHERNET_HEADER;
/// The smallest MTU a device may offer (IPv4's minimum).
pub const MIN_MTU: usize = 68;
/// The largest MTU taken from a device: a larger offer falls back to
/// [`DEFAULT_MTU`] rather than have the driver hold 256 huge buffers.
pub const MAX_MTU: usize = 9000;
/// Ethernet header bytes in front of the IP packet.
const ETHERNET_HEADER: usize = 14;
/// The virtio-net header in front of every frame (12 bytes with
/// VERSION_1, 10 for legacy devices).
const VIRTIO_HEADER: usize = 12;

/// Why the device could not be brought up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NetError {
    /// `virtio-drivers` refused the device.
    Virtio(virtio_drivers::Error),
    /// The PCI function is not a usable virtio device.
    Pci,
    /// The heap cannot hold the receive buffers.
    NoMemory,
}

impl core::fmt::Display for NetError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Virtio(e) => write!(f, "virtio-net: {e}"),
            Self::Pci => f.write_str("virtio-net: not a usable virtio-pci function"),
            Self::NoMemory => f.write_str("virtio-net: no memory for the receive buffers"),
        }
    }
}

type Buffer = Box<[u8]>;

/// The MTU to use with a device offering `features`, whose configuration
/// says `offered` when it has [`F_MTU`]: `Some` when that MTU should be
/// negotiated.
pub fn choose_mtu(features: u64, offered: u16) -> Option<usize> {
    let mtu = usize::from(offered);
    (features & F_MTU != 0 && (MIN_MTU..=MAX_MTU).contains(&mtu)).then_some(mtu)
}

/// A virtio network card.
pub struct VirtioNet<H: Hal, T: Transport> {
    dev: VirtIONetRaw<H, T, QUEUE_SIZE>,
    /// The negotiated IP MTU.
    mtu: usize,
    /// The receive buffer the device holds under each token.
    rx: Vec<Option<Buffer>>,
    /// The transmit buffer the device holds under each token.
    tx_busy: Vec<Option<Buffer>>,
    /// Transmit buffers the device does not hold.
    tx_free: Vec<Buffer>,
    /// Transmit buffers allocated so far (at most [`QUEUE_SIZE`]).
    tx_allocated: usize,
}

impl<H: Hal, T: Transport + ExtraFeatures> VirtioNet<H, T> {
    /// Negotiates with the device behind `transport` (its MTU too, when it
    /// offers a usable one) and fills the receive queue.
    pub fn new(mut transport: T) -> Result<Self, NetError> {
        let features = transport.read_device_features();
        let offered = if features & F_MTU != 0 {
            transport.read_config_space::<u16>(CONFIG_MTU).unwrap_or(0)
        } else {
            0
        };
        let mtu = match choose_mtu(features, offered) {
            Some(mtu) => {
                transport.request_features(F_MTU);
                mtu
            }
            None => DEFAULT_MTU,
        };
        let dev = VirtIONetRaw::new(transport).map_err(NetError::Virtio)?;
        let mut nic = Self {
            dev,
            mtu,
            rx: (0..QUEUE_SIZE).map(|_| None).collect(),
            tx_busy: (0..QUEUE_SIZE).map(|_| None).collect(),
            tx_free: Vec::with_capacity(QUEUE_SIZE),
            tx_allocated: 0,
        };
        for _ in 0..QUEUE_SIZE {
            let buf = nic.buffer().ok_or(NetError::NoMemory)?;
            nic.post_rx(buf).map_err(NetError::Virtio)?;
        }
        Ok(nic)
    }
}

impl<H: Hal, T: Transport> VirtioNet<H, T> {
    /// A zeroed buffer for one frame of the negotiated MTU and its header,
    /// or `None` when the heap cannot hold one more.
    fn buffer(&self) -> Option<Buffer> {
        let len = self.mtu + ETHERNET_HEADER + VIRTIO_HEADER;
        let mut v = Vec::new();
        v.try_reserve_exact(len).ok()?;
        v.resize(len, 0);
        Some(v.into_boxed_slice())
    }

    /// Hands `buf` to the device for a frame to receive.
    fn post_rx(&mut self, mut buf: Buffer) -> Result<(), virtio_drivers::Error> {
        // SAFETY: the buffer is kept in `self.rx` under its token and not
        // touched until the device returns that token (`receive`).
        let token = unsafe { self.dev.receive_begin(&mut buf[..])? };
        let slot = self
            .rx
            .get_mut(usize::from(token))
            .ok_or(virtio_drivers::Error::WrongToken)?;
        *slot = Some(buf);
        Ok(())
    }

    /// Takes back the transmit buffers the device is done with.
    fn reclaim_tx(&mut self) {
        while let Some(token) = self.dev.poll_transmit() {
            let Some(buf) = self
                .tx_busy
                .get_mut(usize::from(token))
                .and_then(Option::take)
            else {
                log::warn!("virtio-net: the device returned unknown transmit token {token}");
                return;
            };
            // SAFETY: `buf` is the buffer passed to `transmit_begin` under
            // this token.
            if let Err(e) = unsafe { self.dev.transmit_complete(token, &buf[..]) } {
                log::warn!("virtio-net: transmit completion failed: {e}");
            }
            self.tx_free.push(buf);
        }
    }
}

/// How often [`VirtioNet::free_tx_buffer`] polls a full transmit queue
/// before giving up.
const TX_FULL_POLLS: u32 = 1 << 20;

impl<H: Hal, T: Transport> VirtioNet<H, T> {
    /// A transmit buffer the device does not hold: a reclaimed one, else a
    /// new one while fewer than [`QUEUE_SIZE`] exist and the heap has room.
    /// With all of them in flight, waits for the device to finish one: dropping the frame
    /// instead would cost a TCP retransmission, far more than the wait
    /// (QEMU completes transmissions in a bottom half, uhyve in its
    /// worker thread). `None` if the device never finishes one.
    fn free_tx_buffer(&mut self) -> Option<Buffer> {
        self.reclaim_tx();
        if let Some(buf) = self.tx_free.pop() {
            return Some(buf);
        }
        if self.tx_allocated < QUEUE_SIZE
            && let Some(buf) = self.buffer()
        {
            self.tx_allocated += 1;
            return Some(buf);
        }
        for _ in 0..TX_FULL_POLLS {
            self.reclaim_tx();
            if let Some(buf) = self.tx_free.pop() {
                return Some(buf);
            }
            core::hint::spin_loop();
        }
        None
    }
}

impl<H: Hal, T: Transport> Nic for VirtioNet<H, T> {
    fn mac(&self) -> [u8; 6] {
        self.dev.mac_address()
    }

    fn receive(&mut self, f: &mut dyn FnMut(&[u8])) -> bool {
        let Some(token) = self.dev.poll_receive() else {
            return false;
        };
        let Some(mut buf) = self.rx.get_mut(usize::from(token)).and_then(Option::take) else {
            log::warn!("virtio-net: the device returned unknown receive token {token}");
            return false;
        };
        // SAFETY: `buf` is the buffer passed to `receive_begin` under this
        // token.
        match unsafe { self.dev.receive_complete(token, &mut buf[..]) } {
            Ok((header, len)) => {
                if let Some(frame) = buf.get(header..header + len) {
                    f(frame);
                }
            }
            Err(e) => log::warn!("virtio-net: receive completion failed: {e}"),
        }
        if let Err(e) = self.post_rx(buf) {
            log::warn!("virtio-net: cannot repost a receive buffer: {e}");
        }
        true
    }

    fn transmit(&mut self, len: usize, f: &mut dyn FnMut(&mut [u8])) -> Result<(), TxError> {
        if !(ETHERNET_HEADER..=self.mtu + ETHERNET_HEADER).contains(&len) {
            return Err(TxError::BadLength(len));
        }
        let Some(mut buf) = self.free_tx_buffer() else {
            return Err(TxError::Busy);
        };
        let header = match self.dev.fill_buffer_header(&mut buf[..]) {
            Ok(h) => h,
            Err(_) => {
                self.tx_free.push(buf);
                return Err(TxError::Device);
            }
        };
        f(&mut buf[header..header + len]);
        // SAFETY: the buffer is kept in `self.tx_busy` under its token and
        // not touched until the device returns that token (`reclaim_tx`).
        match unsafe { self.dev.transmit_begin(&buf[..header + len]) } {
            Ok(token) => match self.tx_busy.get_mut(usize::from(token)) {
                Some(slot) => {
                    *slot = Some(buf);
                    Ok(())
                }
                None => {
                    // Cannot happen with a queue of QUEUE_SIZE; leak the
                    // buffer rather than reuse memory the device may read.
                    core::mem::forget(buf);
                    Err(TxError::Device)
                }
            },
            Err(virtio_drivers::Error::QueueFull) => {
                self.tx_free.push(buf);
                Err(TxError::Busy)
            }
            Err(_) => {
                self.tx_free.push(buf);
                Err(TxError::Device)
            }
        }
    }

    fn mtu(&self) -> usize {
        self.mtu
    }

    fn ack_interrupt(&mut self) -> bool {
        !self.dev.ack_interrupt().is_empty()
    }
}

/// The virtio-pci transport of enabled function `function` (BARs assigned).
pub fn pci_transport<H: Hal, C: ConfigAccess + Copy>(
    access: C,
    function: &Enabled,
) -> Result<PciTransport, NetError> {
    let mut root = PciRoot::new(VirtioCam(access));
    let df = DeviceFunction {
        bus: function.address.bus(),
        device: function.address.device(),
        function: function.address.function(),
    };
    PciTransport::new::<H, _>(&mut root, df).map_err(|_| NetError::Pci)
}

/// `cfg_type` of the virtio-pci common configuration capability.
const VIRTIO_PCI_CAP_COMMON_CFG: u8 = 1;
/// `cfg_type` of the virtio-pci notification capability.
pub(crate) const VIRTIO_PCI_CAP_NOTIFY_CFG: u8 = 2;
/// Offsets in the common configuration structure (virtio 1.x, 4.1.4.3).
const COMMON_MSIX_CONFIG: usize = 0x10;
pub(crate) const COMMON_QUEUE_SELECT: usize = 0x16;
pub(crate) const COMMON_QUEUE_NOTIFY_OFF: usize = 0x1e;
const COMMON_QUEUE_MSIX_VECTOR: usize = 0x1a;

/// The config-space offset of an enabled function's first virtio-pci
/// capability (vendor-specific, ID 0x09) of `cfg_type` that is at least
/// `min_len` bytes long, and the address its (BAR, offset) names.
pub(crate) fn virtio_capability(
    access: &impl ConfigAccess,
    function: &Enabled,
    cfg_type: u8,
    min_len: u8,
) -> Option<(u16, u64)> {
    let a = function.address;
    if access.read(a, 4) & (1 << 20) == 0 {
        return None;
    }
    let mut ptr = (access.read(a, 0x34) & 0xfc) as u16;
    let mut hops = 0;
    while ptr != 0 && hops < 48 {
        hops += 1;
        let head = access.read(a, ptr);
        if head as u8 == 0x09 && (head >> 16) as u8 >= min_len && (head >> 24) as u8 == cfg_type {
            let bar = access.read(a, ptr + 4) as u8;
            let offset = access.read(a, ptr + 8);
            let bar = function.bars.get(usize::from(bar))?.as_ref()?;
            return Some((ptr, bar.address.checked_add(u64::from(offset))?));
        }
        ptr = ((head >> 8) & 0xfc) as u16;
    }
    None
}

/// Physical address of the common configuration structure of an enabled
/// virtio-pci function.
pub fn common_cfg_address(access: &impl ConfigAccess, function: &Enabled) -> Option<u64> {
    virtio_capability(access, function, VIRTIO_PCI_CAP_COMMON_CFG, 0).map(|(_, addr)| addr)
}

/// Routes the configuration-change interrupt to MSI-X entry `config` and
/// each `(queue, entry)` queue to its entry.
///
/// # Safety
/// `common` must point to the mapped common configuration structure of a
/// virtio-pci device that nothing else is selecting queues on right now.
pub unsafe fn route_queues(common: *mut u8, config: Option<u16>, queues: &[(u16, u16)]) {
    // SAFETY: the caller's contract; the offsets lie inside the structure
    // and are aligned for 16-bit access.
    unsafe {
        if let Some(v) = config {
            common
                .add(COMMON_MSIX_CONFIG)
                .cast::<u16>()
                .write_volatile(v);
        }
        for &(queue, vector) in queues {
            common
                .add(COMMON_QUEUE_SELECT)
                .cast::<u16>()
                .write_volatile(queue);
            common
                .add(COMMON_QUEUE_MSIX_VECTOR)
                .cast::<u16>()
                .write_volatile(vector);
        }
    }
}

/// Acknowledges a virtio-mmio device's interrupt by its registers alone
/// (InterruptStatus at 0x60, InterruptACK at 0x64), for an interrupt
/// handler that cannot take the driver's lock. Returns the status bits.
///
/// # Safety
/// `base` must be the mapped register block of a virtio-mmio device.
pub unsafe fn mmio_ack(base: *mut u8) -> u32 {
    // SAFETY: the caller's contract; both registers are 32-bit aligned.
    unsafe {
        let status = base.add(0x60).cast::<u32>().read_volatile();
        if status != 0 {
            base.add(0x64).cast::<u32>().write_volatile(status);
        }
        status
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mtu_is_taken_only_when_offered_and_sane() {
        assert_eq!(choose_mtu(F_MTU, 9000), Some(9000));
        assert_eq!(choose_mtu(F_MTU | 1 << 5, 1500), Some(1500));
        assert_eq!(choose_mtu(F_MTU, 68), Some(68));
        assert_eq!(choose_mtu(1 << 5, 9000), None, "not offered");
        assert_eq!(choose_mtu(F_MTU, 67), None, "below IPv4's minimum");
        assert_eq!(choose_mtu(F_MTU, 9001), None, "above MAX_MTU");
        assert_eq!(choose_mtu(F_MTU, 0), None);
        assert_eq!(DEFAULT_MTU, 1500);
    }

    #[test]
    fn route_queues_selects_then_writes() {
        let mut common = [0u16; 32];
        let p = common.as_mut_ptr().cast::<u8>();
        // SAFETY: `common` is 64 bytes, covering every offset written.
        unsafe { route_queues(p, Some(2), &[(0, 0), (1, 1)]) };
        assert_eq!(common[COMMON_MSIX_CONFIG / 2], 2);
        // The last queue selected and its vector stay visible.
        assert_eq!(common[COMMON_QUEUE_SELECT / 2], 1);
        assert_eq!(common[COMMON_QUEUE_MSIX_VECTOR / 2], 1);
    }

    #[test]
    fn mmio_ack_echoes_status() {
        let mut regs = [0u32; 32];
        regs[0x60 / 4] = 3;
        // SAFETY: `regs` covers offsets 0x60 and 0x64.
        assert_eq!(unsafe { mmio_ack(regs.as_mut_ptr().cast()) }, 3);
        assert_eq!(regs[0x64 / 4], 3);
        regs[0x60 / 4] = 0;
        regs[0x64 / 4] = 0;
        // SAFETY: as above.
        assert_eq!(unsafe { mmio_ack(regs.as_mut_ptr().cast()) }, 0);
        assert_eq!(regs[0x64 / 4], 0, "nothing to acknowledge");
    }
}
