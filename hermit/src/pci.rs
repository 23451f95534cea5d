//! PCI for the kernel: which configuration mechanism and which BAR window
//! the platform has.
//!
//! - QEMU `microvm,pcie=on`: ECAM at [`MICROVM_ECAM`] (QEMU 7.2 writes no
//!   MCFG table for microvm, so an MCFG is used when present, else the
//!   fixed address, checked by finding the GPEX host bridge there); the
//!   bridge forwards [`Windows::MICROVM`] and firmware assigns nothing, so
//!   BARs are assigned here. There is no I/O-port window.
//! - uhyve (and any machine without an MCFG): configuration mechanism #1 at
//!   0xCF8/0xCFC; BARs the hypervisor left at zero come from the same
//!   32-bit window.
//!
//! Port I/O runs at CPL 3 with IOPL 3; ECAM is identity-mapped MMIO.

use arch_x86_64::acpi;
use hermit_drivers::pci::PciAddress;
use hermit_drivers::pci::{
    self, BarAllocator, ConfigAccess, EcamConfig, Enabled, Function, LegacyConfig, PciError,
    PortIo, Windows,
};
use x86_64::instructions::port::Port;

/// Port I/O with `in`/`out`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Ports;

impl PortIo for Ports {
    fn read32(&self, port: u16) -> u32 {
        // SAFETY: only the PCI configuration ports are passed here; reading
        // them has no memory effects.
        unsafe { Port::<u32>::new(port).read() }
    }

    fn write32(&self, port: u16, value: u32) {
        // SAFETY: as in `read32`.
        unsafe { Port::<u32>::new(port).write(value) }
    }
}

/// The platform's configuration mechanism.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Access {
    /// Mechanism #1 (0xCF8).
    Legacy(LegacyConfig<Ports>),
    /// ECAM.
    Ecam(EcamConfig),
}

impl ConfigAccess for Access {
    fn read(&self, address: PciAddress, offset: u16) -> u32 {
        match self {
            Self::Legacy(a) => a.read(address, offset),
            Self::Ecam(a) => a.read(address, offset),
        }
    }

    fn write(&self, address: PciAddress, offset: u16, value: u32) {
        match self {
            Self::Legacy(a) => a.write(address, offset, value),
            Self::Ecam(a) => a.write(address, offset, value),
        }
    }
}

/// The PCI bus of this machine.
pub(crate) struct Bus {
    /// How configuration space is reached.
    pub(crate) access: Access,
}

/// The one BAR window allocator: every driver that probes the bus (network
/// card, isle region) assigns from it, so their BARs never overlap.
static ALLOCATOR: spin::Mutex<Option<BarAllocator>> = spin::Mutex::new(None);

impl Bus {
    /// Finds the configuration mechanism (ECAM from the MCFG, else 0xCF8).
    pub(crate) fn probe() -> Self {
        let qemu = crate::console::platform() == Some(hermit_interface::Platform::Qemu);
        let access = ecam()
            .or_else(|| qemu.then(microvm_ecam).flatten())
            .map_or(Access::Legacy(LegacyConfig::new(Ports)), Access::Ecam);
        log::info!("pci: configuration access {access:?}");
        Self { access }
    }

    /// Every function on the bus.
    pub(crate) fn scan(&self) -> alloc::vec::Vec<Function> {
        let found = pci::scan(&self.access);
        for f in &found {
            log::info!(
                "pci: {:02x}:{:02x}.{} {:04x}:{:04x} class {:02x}.{:02x}",
                f.address.bus(),
                f.address.device(),
                f.address.function(),
                f.vendor,
                f.device,
                f.class,
                f.subclass
            );
        }
        found
    }

    /// Sizes and assigns the BARs of `function` and enables it.
    pub(crate) fn enable(&self, function: &Function) -> Result<Enabled, PciError> {
        let mut allocator = ALLOCATOR.lock();
        let allocator = allocator.get_or_insert_with(|| BarAllocator::new(&Windows::MICROVM));
        let e = pci::enable(&self.access, function.address, Some(allocator))?;
        log::info!("pci: {:?} BARs {:x?}", function.address, e.bars);
        Ok(e)
    }
}

/// QEMU `microvm,pcie=on`'s ECAM window (256 buses).
pub(crate) const MICROVM_ECAM: u64 = 0xe000_0000;
/// QEMU's GPEX host bridge: vendor 0x1b36 (Red Hat), device 0x0008.
const GPEX_ID: u32 = 0x0008_1b36;

/// microvm's ECAM window, if its host bridge answers there.
fn microvm_ecam() -> Option<EcamConfig> {
    // SAFETY: on QEMU microvm, [0xe000_0000, 0xf000_0000) is either the
    // ECAM window or unbacked MMIO (reads return 0), below 4 GiB in the
    // identity map and used by nobody else.
    let ecam = unsafe { EcamConfig::new(MICROVM_ECAM as usize, 256) };
    (ecam.read(PciAddress::new(0, 0, 0, 0), 0) == GPEX_ID).then_some(ecam)
}

/// Whether the platform has ACPI tables: uhyve has none, and scanning low
/// memory for an RSDP costs tens of ms of emulated instructions here.
fn has_acpi() -> bool {
    crate::console::platform() != Some(hermit_interface::Platform::Uhyve)
}

/// The ECAM window of the ACPI MCFG table, if there is one.
fn ecam() -> Option<EcamConfig> {
    if !has_acpi() {
        return None;
    }
    // SAFETY: the boot identity map covers the low 1 MiB (entry contract).
    let rsdp = unsafe { acpi::find_rsdp(crate::boot::acpi_rsdp_hint()) }?;
    let handler = acpi::IdentityHandler {
        tsc_khz: crate::time::tsc_khz(),
    };
    // SAFETY: `rsdp` was found above; QEMU's tables lie below 4 GiB, in the
    // identity map.
    let tables = unsafe { acpi::tables(rsdp, handler) }.ok()?;
    let window = acpi::mcfg_ecam(&tables)?;
    if window.bus_start != 0 || window.base >= 1 << 32 {
        return None;
    }
    let buses = u16::from(window.bus_end) + 1;
    // SAFETY: the MCFG names this window as ECAM for buses 0..=bus_end; it
    // lies below 4 GiB, identity-mapped, and only this module uses it.
    Some(unsafe { EcamConfig::new(window.base as usize, buses) })
}

/// The I/O APICs and overrides of the MADT (empty without ACPI tables).
#[allow(dead_code, reason = "only the PCI network cards route interrupts")]
pub(crate) fn madt_interrupts() -> acpi::MadtInterrupts {
    if !has_acpi() {
        return acpi::MadtInterrupts::default();
    }
    // SAFETY: as in `ecam`.
    let Some(rsdp) = (unsafe { acpi::find_rsdp(crate::boot::acpi_rsdp_hint()) }) else {
        return acpi::MadtInterrupts::default();
    };
    let handler = acpi::IdentityHandler {
        tsc_khz: crate::time::tsc_khz(),
    };
    // SAFETY: as in `ecam`.
    unsafe { acpi::tables(rsdp, handler) }
        .and_then(|t| acpi::madt_interrupts(&t))
        .unwrap_or_default()
}
