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

impl Registers for Regs {
    fn read8(&self, offset: u16) -> u8 {
        match *self {
            // SAFETY (all port arms): the port lies in the card's I/O BAR.
            Self::Port(base) => unsafe { Port::<u8>::new(base + offset).read() },
            // SAFETY (all MMIO arms): the address lies in the card's 256-byte
            // memory BAR, identity-mapped; the offset is the register's.
            Self::Mmio(base) => unsafe {
                ((base + usize::from(offset)) as *const u8).read_volatile()
            },
        }
    }

    fn read16(&self, offset: u16) -> u16 {
        match *self {
            // SAFETY: as in `read8`.
            Self::Port(base) => unsafe { Port::<u16>::new(base + offset).read() },
            // SAFETY: as in `read8`; 16-bit registers are 2-byte aligned.
            Self::Mmio(base) => unsafe {
                ((base + usize::from(offset)) as *const u16).read_volatile()
            },
        }
    }

    fn read32(&self, offset: u16) -> u32 {
        match *self {
            // SAFETY: as in `read8`.
            Self::Port(base) => unsafe { Port::<u32>::new(base + offset).read() },
            // SAFETY: as in `read8`; 32-bit registers are 4-byte aligned.
            Self::Mmio(base) => unsafe {
                ((base + usize::from(offset)) as *const u32).read_volatile()
            },
        }
    }

    fn write8(&self, offset: u16, value: u8) {
        match *self {
            // SAFETY: as in `read8`.
            Self::Port(base) => unsafe { Port::<u8>::new(base + offset).write(value) },
            // SAFETY: as in `read8`.
            Self::Mmio(base) => unsafe {
                ((base + usize::from(offset)) as *mut u8).write_volatile(value)
            },
        }
    }

    fn write16(&self, offset: u16, value: u16) {
        match *self {
            // SAFETY: as in `read8`.
            Self::Port(base) => unsafe { Port::<u16>::new(base + offset).write(value) },
            // SAFETY: as in `read16`.
            Self::Mmio(base) => unsafe {
                ((base + usize::from(offset)) as *mut u16).write_volatile(value)
            },
        }
    }

    fn write32(&self, offset: u16, value: u32) {
        match *self {
            // SAFETY: as in `read8`.
            Self::Port(base) => unsafe { Port::<u32>::new(base + offset).write(value) },
            // SAFETY: as in `read32`.
            Self::Mmio(base) => unsafe {
                ((base + usize::from(offset)) as *mut u32).write_volatile(value)
            },
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
    let mut bus = crate::pci::Bus::probe();
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
