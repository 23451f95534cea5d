//! A driver for the Realtek RTL8139 Ethernet controller (as QEMU models
//! it).
//!
//! Registers are reached through [`Registers`] (port I/O or MMIO in the
//! kernel, a model in the host tests); DMA memory comes from the caller's
//! [`Dma`]. Receiving walks the 8 KiB ring (with `WRAP`, so a frame is
//! always contiguous: the buffer has 16 + 1536 spare bytes after the ring);
//! transmitting uses the four transmit descriptors in turn.
//!
//! Missing: link-state handling, multicast filtering (all multicast frames
//! are accepted), recovery from a receive FIFO overflow other than
//! resynchronising on the card's write pointer.

use bitflags::bitflags;

use crate::nic::{MAX_FRAME, Nic, TxError};

/// Register offsets.
pub mod reg {
    /// MAC address, 6 bytes.
    pub const IDR0: u16 = 0x00;
    /// Multicast filter, 8 bytes.
    pub const MAR0: u16 = 0x08;
    /// Transmit status of descriptor 0 (1-3 follow, 4 bytes apart).
    pub const TSD0: u16 = 0x10;
    /// Transmit start address of descriptor 0 (1-3 follow).
    pub const TSAD0: u16 = 0x20;
    /// Receive buffer start (physical).
    pub const RBSTART: u16 = 0x30;
    /// Command register (8 bit).
    pub const CR: u16 = 0x37;
    /// Current address of packet read (16 bit).
    pub const CAPR: u16 = 0x38;
    /// Current buffer address: the card's write offset (16 bit).
    pub const CBR: u16 = 0x3a;
    /// Interrupt mask (16 bit).
    pub const IMR: u16 = 0x3c;
    /// Interrupt status (16 bit, write 1 to clear).
    pub const ISR: u16 = 0x3e;
    /// Transmit configuration (32 bit).
    pub const TCR: u16 = 0x40;
    /// Receive configuration (32 bit).
    pub const RCR: u16 = 0x44;
    /// Config register write enable (8 bit).
    pub const CR9346: u16 = 0x50;
    /// Config 1 (8 bit): 0 powers the card on.
    pub const CONFIG1: u16 = 0x52;
}

bitflags! {
    /// Command register.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct Cr: u8 {
        /// Software reset (self-clearing).
        const RST = 1 << 4;
        /// Receiver enable.
        const RE = 1 << 3;
        /// Transmitter enable.
        const TE = 1 << 2;
        /// Receive buffer empty.
        const BUFE = 1 << 0;
    }

    /// Interrupt mask and status.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct Int: u16 {
        /// Receive OK.
        const ROK = 1 << 0;
        /// Receive error.
        const RER = 1 << 1;
        /// Transmit OK.
        const TOK = 1 << 2;
        /// Transmit error.
        const TER = 1 << 3;
        /// Receive buffer overflow.
        const RXOVW = 1 << 4;
        /// Packet underrun / link change.
        const PUN = 1 << 5;
        /// Receive FIFO overflow.
        const FOVW = 1 << 6;
        /// Cable length change.
        const LENCHG = 1 << 13;
        /// Timer.
        const TIMEOUT = 1 << 14;
        /// System error.
        const SERR = 1 << 15;
    }

    /// Receive configuration.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct Rcr: u32 {
        /// Accept all physical addresses (promiscuous).
        const AAP = 1 << 0;
        /// Accept physical match.
        const APM = 1 << 1;
        /// Accept multicast.
        const AM = 1 << 2;
        /// Accept broadcast.
        const AB = 1 << 3;
        /// Accept runt frames.
        const AR = 1 << 4;
        /// Accept error frames.
        const AER = 1 << 5;
        /// Do not wrap at the ring's end: write past it (needs spare room).
        const WRAP = 1 << 7;
        /// Unlimited receive DMA burst.
        const MXDMA_UNLIMITED = 0b111 << 8;
        /// No receive FIFO threshold: DMA whole frames.
        const RXFTH_NONE = 0b111 << 13;
    }

    /// Transmit status of a descriptor.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct Tsd: u32 {
        /// The driver owns the buffer (DMA to the FIFO done).
        const OWN = 1 << 13;
        /// FIFO underrun.
        const TUN = 1 << 14;
        /// Transmit OK.
        const TOK = 1 << 15;
        /// Transmit aborted.
        const TABT = 1 << 30;
        /// Carrier sense lost.
        const CRS = 1 << 31;
    }

    /// Status word of a received packet's header.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct RxStatus: u16 {
        /// Received OK.
        const ROK = 1 << 0;
        /// Frame alignment error.
        const FAE = 1 << 1;
        /// CRC error.
        const CRC = 1 << 2;
        /// Long packet.
        const LONG = 1 << 3;
        /// Runt packet.
        const RUNT = 1 << 4;
        /// Invalid symbol.
        const ISE = 1 << 5;
    }
}

/// Size of the receive ring (RCR.RBLEN = 0).
pub const RX_RING: usize = 8192;
/// Bytes allocated for the ring: with `WRAP` the card may write a whole
/// frame (plus its header) past the end.
pub const RX_BUFFER: usize = RX_RING + 16 + 1536;
/// Transmit descriptors.
pub const TX_DESCRIPTORS: usize = 4;
/// Size of each transmit buffer.
pub const TX_BUFFER: usize = 2048;
/// Interrupts the driver enables.
pub const IMR_BITS: Int = Int::ROK
    .union(Int::TOK)
    .union(Int::RER)
    .union(Int::TER)
    .union(Int::RXOVW);
/// How many times reset completion and a free descriptor are polled.
const POLLS: usize = 100_000;

/// The card's registers.
pub trait Registers {
    /// Reads an 8-bit register.
    fn read8(&self, offset: u16) -> u8;
    /// Reads a 16-bit register.
    fn read16(&self, offset: u16) -> u16;
    /// Reads a 32-bit register.
    fn read32(&self, offset: u16) -> u32;
    /// Writes an 8-bit register.
    fn write8(&self, offset: u16, value: u8);
    /// Writes a 16-bit register.
    fn write16(&self, offset: u16, value: u16);
    /// Writes a 32-bit register.
    fn write32(&self, offset: u16, value: u32);
}

/// A block of DMA memory.
#[derive(Clone, Copy, Debug)]
pub struct DmaRegion {
    /// Where the driver reads and writes it.
    pub virt: *mut u8,
    /// Where the card sees it (below 4 GiB).
    pub phys: u32,
    /// Its size.
    pub len: usize,
}

/// Allocates DMA memory for the card.
///
/// # Safety
/// A region returned by `alloc` must be `len >= size` bytes of zeroed,
/// physically contiguous memory below 4 GiB, valid at `virt` and at `phys`
/// for the card, and never used by anyone but the driver, forever.
pub unsafe trait Dma {
    /// A region of at least `size` bytes, or `None` when out of memory.
    fn alloc(&self, size: usize) -> Option<DmaRegion>;
}

/// Why the card could not be started.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InitError {
    /// The software reset did not complete.
    ResetTimeout,
    /// No DMA memory.
    NoMemory,
}

impl core::fmt::Display for InitError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            Self::ResetTimeout => "the RTL8139 did not finish its reset",
            Self::NoMemory => "no DMA memory for the RTL8139",
        })
    }
}

/// An initialised RTL8139.
pub struct Rtl8139<R: Registers> {
    regs: R,
    rx: DmaRegion,
    tx: [DmaRegion; TX_DESCRIPTORS],
    /// Offset of the next packet header in the ring.
    rx_offset: usize,
    /// The descriptor the next frame goes to.
    tx_next: usize,
    mac: [u8; 6],
}

// SAFETY: the DMA regions are owned by the driver alone (`Dma`'s contract),
// so moving the driver to another thread moves their only users.
unsafe impl<R: Registers + Send> Send for Rtl8139<R> {}

impl<R: Registers> Rtl8139<R> {
    /// Powers the card on, resets it and starts receiving and transmitting
    /// with buffers from `dma`.
    pub fn new(regs: R, dma: &impl Dma) -> Result<Self, InitError> {
        regs.write8(reg::CR9346, 0xc0);
        regs.write8(reg::CONFIG1, 0);
        regs.write8(reg::CR9346, 0);
        regs.write8(reg::CR, Cr::RST.bits());
        if !(0..POLLS).any(|_| regs.read8(reg::CR) & Cr::RST.bits() == 0) {
            return Err(InitError::ResetTimeout);
        }
        let region = |size| match dma.alloc(size) {
            Some(r) if r.len >= size => Ok(r),
            _ => Err(InitError::NoMemory),
        };
        let rx = region(RX_BUFFER)?;
        let mut tx = [rx; TX_DESCRIPTORS];
        for t in &mut tx {
            *t = region(TX_BUFFER)?;
        }
        regs.write32(reg::RBSTART, rx.phys);
        for (i, t) in tx.iter().enumerate() {
            regs.write32(reg::TSAD0 + 4 * i as u16, t.phys);
        }
        for i in 0..8 {
            regs.write8(reg::MAR0 + i, 0xff);
        }
        regs.write16(reg::IMR, IMR_BITS.bits());
        regs.write16(reg::ISR, 0xffff);
        regs.write8(reg::CR, (Cr::RE | Cr::TE).bits());
        let rcr = Rcr::AB | Rcr::APM | Rcr::AM | Rcr::WRAP | Rcr::MXDMA_UNLIMITED | Rcr::RXFTH_NONE;
        regs.write32(reg::RCR, rcr.bits());
        // Standard interframe gap, 2 KiB DMA bursts.
        regs.write32(reg::TCR, (0b11 << 24) | (0b110 << 8));
        regs.write16(reg::CAPR, (RX_RING - 16) as u16);
        let mut mac = [0u8; 6];
        for (i, b) in mac.iter_mut().enumerate() {
            *b = regs.read8(reg::IDR0 + i as u16);
        }
        Ok(Self {
            regs,
            rx,
            tx,
            rx_offset: 0,
            tx_next: 0,
            mac,
        })
    }

    /// The register access (e.g. for an interrupt handler's own copy).
    pub fn registers(&self) -> &R {
        &self.regs
    }

    /// Reads `N` bytes of the receive buffer at `offset`.
    fn rx_bytes<const N: usize>(&self, offset: usize) -> [u8; N] {
        let mut out = [0u8; N];
        for (i, b) in out.iter_mut().enumerate() {
            // SAFETY: callers keep `offset + N <= RX_BUFFER <= rx.len`; the
            // region is valid (`Dma` contract). Volatile: the card writes it.
            *b = unsafe { self.rx.virt.add(offset + i).read_volatile() };
        }
        out
    }

    /// Gives up on the ring's contents: continue at the card's write offset.
    fn resync(&mut self) {
        let cbr = usize::from(self.regs.read16(reg::CBR)) % RX_RING;
        self.rx_offset = cbr;
        self.regs
            .write16(reg::CAPR, ((cbr + RX_RING - 16) % RX_RING) as u16);
    }

    /// Acknowledges interrupt bits `bits` (read from ISR).
    pub fn ack(regs: &R) -> Int {
        let bits = Int::from_bits_retain(regs.read16(reg::ISR));
        if !bits.is_empty() {
            regs.write16(reg::ISR, bits.bits());
        }
        bits
    }
}

impl<R: Registers> Nic for Rtl8139<R> {
    fn mac(&self) -> [u8; 6] {
        self.mac
    }

    fn receive(&mut self, f: &mut dyn FnMut(&[u8])) -> bool {
        if self.regs.read8(reg::CR) & Cr::BUFE.bits() != 0 {
            return false;
        }
        let header = self.rx_bytes::<4>(self.rx_offset);
        let status = RxStatus::from_bits_retain(u16::from_le_bytes([header[0], header[1]]));
        // The length counts the 4-byte CRC.
        let len = usize::from(u16::from_le_bytes([header[2], header[3]]));
        if !status.contains(RxStatus::ROK) || !(14 + 4..=MAX_FRAME + 4).contains(&len) {
            log::warn!("rtl8139: bad receive header {status:?} length {len}; resynchronising");
            self.resync();
            return false;
        }
        let start = self.rx_offset + 4;
        // SAFETY: `start + len - 4 <= RX_RING + 4 + MAX_FRAME < RX_BUFFER`
        // (WRAP keeps the frame contiguous in the spare room); the card does
        // not write this part of the ring until CAPR moves past it.
        let frame = unsafe { core::slice::from_raw_parts(self.rx.virt.add(start), len - 4) };
        f(frame);
        self.rx_offset = (self.rx_offset + 4 + len).next_multiple_of(4) % RX_RING;
        // CAPR trails the read offset by 16 bytes (a hardware quirk).
        self.regs.write16(
            reg::CAPR,
            ((self.rx_offset + RX_RING - 16) % RX_RING) as u16,
        );
        true
    }

    fn transmit(&mut self, len: usize, f: &mut dyn FnMut(&mut [u8])) -> Result<(), TxError> {
        if !(14..=MAX_FRAME).contains(&len) {
            return Err(TxError::BadLength(len));
        }
        let i = self.tx_next;
        let tsd = reg::TSD0 + 4 * i as u16;
        if !(0..POLLS).any(|_| self.regs.read32(tsd) & Tsd::OWN.bits() != 0) {
            return Err(TxError::Busy);
        }
        let status = Tsd::from_bits_retain(self.regs.read32(tsd));
        if status.intersects(Tsd::TABT | Tsd::TUN) {
            log::warn!("rtl8139: descriptor {i} ended with {status:?}");
        }
        // Ethernet's minimum (without CRC); the card does not pad.
        let wire = len.max(60);
        // SAFETY: the buffer is TX_BUFFER >= MAX_FRAME bytes, owned by the
        // driver while OWN is set (checked above).
        let buf = unsafe { core::slice::from_raw_parts_mut(self.tx[i].virt, wire) };
        buf[len..].fill(0);
        f(&mut buf[..len]);
        // Size in bits 0-12; clearing OWN hands the buffer to the card.
        self.regs.write32(tsd, wire as u32);
        self.tx_next = (i + 1) % TX_DESCRIPTORS;
        Ok(())
    }

    fn ack_interrupt(&mut self) -> bool {
        !Self::ack(&self.regs).is_empty()
    }
}

#[cfg(test)]
mod tests;
