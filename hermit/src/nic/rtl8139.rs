//! RTL8139 (vendor 0x10ec, device 0x8139) on PCI: registers through the
//! I/O-port BAR when it has a port, else through the memory BAR (QEMU
//! `microvm,pcie=on` forwards no ports); legacy INTx through the I/O APIC.
//!
//! The INTx line's GSI: on microvm the GPEX bridge swizzles INTA-D of
//! device *d* onto GSI 16 + (*d* + pin - 1) % 4; elsewhere the interrupt
//! line firmware wrote into configuration space is used.

use alloc::alloc::{Layout, alloc_zeroed};

use hermit_drivers::pci::{self, BarKind};
use hermit_drivers::rtl8139::{Dma, DmaRegion, Registers, Rtl8139};
use x86_64::instructions::port::Port;

use super::OpenError;

/// The model name (the ELF note's descriptor).
pub(super) const NAME: &str = "rtl8139";

/// GSI of microvm's PCIe INTA line of device 0.
const MICROVM_PCIE_GSI_BASE: u32 = 16;

/// The card's registers: an I/O-port base or an identity-mapped MMIO base.
#[derive(Clone, Copy, Debug)]
pub(super) enum Regs {
    /// Port I/O at this base.
    Port(u16),
    /// MMIO at this address.
    Mmio(usize),
}

impl Regs {
    /// The MMIO address of register `offset`.
    fn mmio(base: usize, offset: u16) -> usize {
        base + usize::from(offset)
    }
}

/// One port access of width `T`.
///
/// # Safety
/// `port` must be a register of the card's I/O BAR.
unsafe fn port_read<T: x86_64::instructions::port::PortRead>(port: u16) -> T {
    // SAFETY: the caller's contract; card registers have no memory effects.
    unsafe { Port::<T>::new(port).read() }
}

/// One port write of width `T`.
///
/// # Safety
/// As for [`port_read`].
unsafe fn port_write<T: x86_64::instructions::port::PortWrite>(port: u16, value: T) {
    // SAFETY: the caller's contract.
    unsafe { Port::<T>::new(port).write(value) }
}

/// One MMIO read of width `T`.
///
/// # Safety
/// `addr` must be a register of the card's identity-mapped memory BAR,
/// aligned for `T`.
unsafe fn mmio_read<T>(addr: usize) -> T {
    // SAFETY: the caller's contract.
    unsafe { (addr as *const T).read_volatile() }
}

/// One MMIO write of width `T`.
///
/// # Safety
/// As for [`mmio_read`].
unsafe fn mmio_write<T>(addr: usize, value: T) {
    // SAFETY: the caller's contract.
    unsafe { (addr as *mut T).write_volatile(value) }
}

// Every access below: `Regs` only holds the base of the card's I/O or
// memory BAR (set from the enabled PCI function), and the driver passes
// register offsets below 0x100, aligned for their width.
impl Registers for Regs {
    fn read8(&self, offset: u16) -> u8 {
        match *self {
            // SAFETY: see the comment on this impl.
            Self::Port(base) => unsafe { port_read(base + offset) },
            // SAFETY: see the comment on this impl.
            Self::Mmio(base) => unsafe { mmio_read(Self::mmio(base, offset)) },
        }
    }

    fn read16(&self, offset: u16) -> u16 {
        match *self {
            // SAFETY: see the comment on this impl.
            Self::Port(base) => unsafe { port_read(base + offset) },
            // SAFETY: see the comment on this impl.
            Self::Mmio(base) => unsafe { mmio_read(Self::mmio(base, offset)) },
        }
    }

    fn read32(&self, offset: u16) -> u32 {
        match *self {
            // SAFETY: see the comment on this impl.
            Self::Port(base) => unsafe { port_read(base + offset) },
            // SAFETY: see the comment on this impl.
            Self::Mmio(base) => unsafe { mmio_read(Self::mmio(base, offset)) },
        }
    }

    fn write8(&self, offset: u16, value: u8) {
        match *self {
            // SAFETY: see the comment on this impl.
            Self::Port(base) => unsafe { port_write(base + offset, value) },
            // SAFETY: see the comment on this impl.
            Self::Mmio(base) => unsafe { mmio_write(Self::mmio(base, offset), value) },
        }
    }

    fn write16(&self, offset: u16, value: u16) {
        match *self {
            // SAFETY: see the comment on this impl.
            Self::Port(base) => unsafe { port_write(base + offset, value) },
            // SAFETY: see the comment on this impl.
            Self::Mmio(base) => unsafe { mmio_write(Self::mmio(base, offset), value) },
        }
    }

    fn write32(&self, offset: u16, value: u32) {
        match *self {
            // SAFETY: see the comment on this impl.
            Self::Port(base) => unsafe { port_write(base + offset, value) },
            // SAFETY: see the comment on this impl.
            Self::Mmio(base) => unsafe { mmio_write(Self::mmio(base, offset), value) },
        }
    }
}

/// The driver type.
pub(super) type Nic = Rtl8139<Regs>;

/// DMA memory from the heap, which is identity-mapped RAM.
struct HeapDma;

// SAFETY: the memory is zeroed, page-aligned heap memory that is never
// freed (leaked to the driver); heap virtual == physical, and regions above
// 4 GiB are refused.
unsafe impl Dma for HeapDma {
    fn alloc(&self, size: usize) -> Option<DmaRegion> {
        let layout = Layout::from_size_align(size.max(1), 4096).ok()?;
        // SAFETY: the layout has a non-zero size.
        let ptr = unsafe { alloc_zeroed(layout) };
        if ptr.is_null() {
            return None;
        }
        let phys = u32::try_from(ptr as usize + size)
            .ok()
            .map(|_| ptr as u32)?;
        Some(DmaRegion {
            virt: ptr,
            phys,
            len: size,
        })
    }
}

/// The registers the interrupt handler acknowledges through (a copy).
static ACK: spin::Once<Regs> = spin::Once::new();

/// Acknowledges the card's interrupt.
pub(super) fn ack() {
    if let Some(regs) = ACK.get() {
        Rtl8139::ack(regs);
    }
}

pub(super) fn open(apic_id: u8) -> Result<Nic, OpenError> {
    let bus = crate::pci::Bus::probe();
    let function = bus
        .scan()
        .into_iter()
        .find(|f| f.vendor == 0x10ec && f.device == 0x8139 && f.endpoint)
        .ok_or(OpenError::NotFound)?;
    let enabled = bus.enable(&function).map_err(OpenError::Pci)?;
    let regs = match enabled.bars {
        [Some(io), ..] if io.kind == BarKind::Io && io.address != 0 => {
            Regs::Port(u16::try_from(io.address).map_err(|_| OpenError::Driver("bad I/O BAR"))?)
        }
        [_, Some(mem), ..] if mem.kind != BarKind::Io && mem.address != 0 => {
            Regs::Mmio(mem.address as usize)
        }
        _ => return Err(OpenError::Driver("no usable register BAR")),
    };
    let nic = Rtl8139::new(regs, &HeapDma).map_err(|e| match e {
        hermit_drivers::rtl8139::InitError::ResetTimeout => OpenError::Driver("reset timed out"),
        hermit_drivers::rtl8139::InitError::NoMemory => OpenError::Driver("no DMA memory"),
    })?;
    ACK.call_once(|| regs);
    let access = bus.access;
    if pci::enable_msi(&access, enabled.address, apic_id, super::NIC_VECTOR).is_ok() {
        log::info!("nic: rtl8139 {regs:x?}, MSI");
        return Ok(nic);
    }
    let (pin, line) = pci::intx(&access, enabled.address);
    let gsi = match access {
        crate::pci::Access::Ecam(_) if pin != 0 => {
            pci::swizzled_gsi(MICROVM_PCIE_GSI_BASE, enabled.address.device(), pin)
        }
        _ if line != 0 && line != 0xff => u32::from(line),
        _ => return Err(OpenError::NoInterrupt),
    };
    pci::set_intx(&access, enabled.address, true);
    super::route_gsi(gsi, apic_id)?;
    log::info!(
        "nic: rtl8139 {regs:x?}, INT{} on GSI {gsi}",
        (b'A' + pin - 1) as char
    );
    Ok(nic)
}

/// No address defaults of its own: the stack's apply.
pub(super) fn default_network() -> Option<super::NetDefaults> {
    None
}
