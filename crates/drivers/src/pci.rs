//! PCI: configuration-space access, enumeration, BAR sizing and assignment,
//! MSI-X / MSI / INTx set-up.
//!
//! Headers and capabilities are decoded by the `pci_types` crate; this
//! module supplies the configuration-space access (legacy port I/O at
//! 0xCF8/0xCFC or ECAM), sizes BARs itself (`pci_types` does not size I/O
//! BARs) and assigns the BARs firmware left at zero (qboot, QEMU
//! `microvm,pcie=on`, uhyve) from windows the caller names.
//!
//! Missing: bridges are followed only when firmware numbered them, no
//! 64-bit windows above 4 GiB (a 64-bit BAR gets a 32-bit address),
//! no hot-plug, no PCIe extended capabilities.

use alloc::vec::Vec;
use core::ops::Range;

pub use pci_types::PciAddress;
use pci_types::capability::PciCapability;
use pci_types::{CommandRegister, ConfigRegionAccess, EndpointHeader, HeaderType, PciHeader};

/// Reads and writes 32-bit configuration registers.
pub trait ConfigAccess {
    /// The 32-bit register at `offset` (4-byte aligned, < 4096) of `address`;
    /// all ones when no function answers.
    fn read(&self, address: PciAddress, offset: u16) -> u32;
    /// Writes the 32-bit register at `offset` of `address`.
    fn write(&self, address: PciAddress, offset: u16, value: u32);
}

/// 32-bit port I/O, so the legacy mechanism can be faked in tests.
pub trait PortIo {
    /// `in eax, port`.
    fn read32(&self, port: u16) -> u32;
    /// `out port, eax`.
    fn write32(&self, port: u16, value: u32);
}

/// Configuration mechanism #1: address to port 0xCF8, data at 0xCFC
/// (256-byte configuration spaces only).
#[derive(Clone, Copy, Debug)]
pub struct LegacyConfig<P: PortIo> {
    io: P,
}

/// The configuration address port of mechanism #1.
pub const CONFIG_ADDRESS_PORT: u16 = 0xcf8;
/// The configuration data port of mechanism #1.
pub const CONFIG_DATA_PORT: u16 = 0xcfc;

impl<P: PortIo> LegacyConfig<P> {
    /// Mechanism #1 through `io`.
    pub const fn new(io: P) -> Self {
        Self { io }
    }

    /// The value written to 0xCF8 for `offset` of `address`.
    pub fn address_word(address: PciAddress, offset: u16) -> u32 {
        0x8000_0000
            | (u32::from(address.bus()) << 16)
            | (u32::from(address.device()) << 11)
            | (u32::from(address.function()) << 8)
            | u32::from(offset & 0xfc)
    }
}

impl<P: PortIo> ConfigAccess for LegacyConfig<P> {
    fn read(&self, address: PciAddress, offset: u16) -> u32 {
        if offset >= 256 {
            return u32::MAX;
        }
        self.io
            .write32(CONFIG_ADDRESS_PORT, Self::address_word(address, offset));
        self.io.read32(CONFIG_DATA_PORT)
    }

    fn write(&self, address: PciAddress, offset: u16, value: u32) {
        if offset >= 256 {
            return;
        }
        self.io
            .write32(CONFIG_ADDRESS_PORT, Self::address_word(address, offset));
        self.io.write32(CONFIG_DATA_PORT, value);
    }
}

/// PCIe enhanced configuration access (ECAM): one 4 KiB page per function
/// in a memory window.
#[derive(Clone, Copy, Debug)]
pub struct EcamConfig {
    base: usize,
    buses: u16,
}

impl EcamConfig {
    /// The ECAM window at virtual address `base` covering buses
    /// `0..buses` (at most 256).
    ///
    /// # Safety
    /// `[base, base + buses << 20)` must be mapped ECAM space for the
    /// lifetime of the value (and its copies).
    pub const unsafe fn new(base: usize, buses: u16) -> Self {
        Self { base, buses }
    }

    fn register(&self, address: PciAddress, offset: u16) -> Option<*mut u32> {
        if u16::from(address.bus()) >= self.buses || offset >= 4096 {
            return None;
        }
        let index = (usize::from(address.bus()) << 20)
            | (usize::from(address.device()) << 15)
            | (usize::from(address.function()) << 12)
            | usize::from(offset & !3);
        Some((self.base + index) as *mut u32)
    }
}

impl ConfigAccess for EcamConfig {
    fn read(&self, address: PciAddress, offset: u16) -> u32 {
        match self.register(address, offset) {
            // SAFETY: `new`'s contract: the register lies in the mapped ECAM
            // window; it is aligned (offset rounded down to 4).
            Some(reg) => unsafe { reg.read_volatile() },
            None => u32::MAX,
        }
    }

    fn write(&self, address: PciAddress, offset: u16, value: u32) {
        if let Some(reg) = self.register(address, offset) {
            // SAFETY: as in `read`.
            unsafe { reg.write_volatile(value) }
        }
    }
}

/// Adapts a [`ConfigAccess`] to `pci_types`.
struct Types<'a, C: ?Sized>(&'a C);

impl<C: ConfigAccess + ?Sized> ConfigRegionAccess for Types<'_, C> {
    unsafe fn read(&self, address: PciAddress, offset: u16) -> u32 {
        self.0.read(address, offset)
    }

    unsafe fn write(&self, address: PciAddress, offset: u16, value: u32) {
        self.0.write(address, offset, value);
    }
}

/// Adapts a [`ConfigAccess`] to `virtio-drivers`' PCI root (bus 0..255,
/// segment 0), for `PciTransport::new`.
#[derive(Clone, Copy, Debug)]
pub struct VirtioCam<C>(pub C);

impl<C: ConfigAccess + Copy> virtio_drivers::transport::pci::bus::ConfigurationAccess
    for VirtioCam<C>
{
    fn read_word(
        &self,
        f: virtio_drivers::transport::pci::bus::DeviceFunction,
        register_offset: u8,
    ) -> u32 {
        self.0.read(
            PciAddress::new(0, f.bus, f.device, f.function),
            u16::from(register_offset),
        )
    }

    fn write_word(
        &mut self,
        f: virtio_drivers::transport::pci::bus::DeviceFunction,
        register_offset: u8,
        data: u32,
    ) {
        self.0.write(
            PciAddress::new(0, f.bus, f.device, f.function),
            u16::from(register_offset),
            data,
        );
    }

    unsafe fn unsafe_clone(&self) -> Self {
        *self
    }
}

/// One function found by [`scan`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Function {
    /// Where it is.
    pub address: PciAddress,
    /// Vendor ID.
    pub vendor: u16,
    /// Device ID.
    pub device: u16,
    /// Base class.
    pub class: u8,
    /// Subclass.
    pub subclass: u8,
    /// Whether it is an ordinary device (header type 0) rather than a bridge.
    pub endpoint: bool,
}

/// Every function on bus 0 and on the secondary buses of bridges that
/// firmware numbered.
pub fn scan(access: &impl ConfigAccess) -> Vec<Function> {
    let mut out = Vec::new();
    let mut buses: Vec<u8> = alloc::vec![0];
    let mut i = 0;
    while let Some(&bus) = buses.get(i) {
        i += 1;
        for device in 0..32 {
            for function in 0..8 {
                let address = PciAddress::new(0, bus, device, function);
                let header = PciHeader::new(address);
                let (vendor, device_id) = header.id(Types(access));
                if vendor == 0xffff {
                    if function == 0 {
                        break;
                    }
                    continue;
                }
                let (_, class, subclass, _) = header.revision_and_class(Types(access));
                let kind = header.header_type(Types(access));
                out.push(Function {
                    address,
                    vendor,
                    device: device_id,
                    class,
                    subclass,
                    endpoint: kind == HeaderType::Endpoint,
                });
                if kind == HeaderType::PciPciBridge {
                    let secondary = (access.read(address, 0x18) >> 8) as u8;
                    if secondary != 0 && !buses.contains(&secondary) && buses.len() < 32 {
                        buses.push(secondary);
                    }
                }
                if function == 0 && !header.has_multiple_functions(Types(access)) {
                    break;
                }
            }
        }
    }
    out
}

/// What a BAR decodes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BarKind {
    /// I/O ports.
    Io,
    /// Memory, 32-bit address.
    Mem32,
    /// Memory, 64-bit address (uses two BAR slots).
    Mem64,
}

/// A sized (and possibly just assigned) BAR.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bar {
    /// What it decodes.
    pub kind: BarKind,
    /// Its base address (port number for I/O).
    pub address: u64,
    /// Its size in bytes (a power of two).
    pub size: u64,
}

/// The address ranges BARs left at zero are assigned from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Windows {
    /// Memory window (below 4 GiB).
    pub mmio: Range<u64>,
    /// I/O-port window; empty when the host bridge forwards none.
    pub io: Range<u64>,
}

impl Windows {
    /// QEMU `microvm,pcie=on`: the GPEX 32-bit window, no I/O window.
    pub const MICROVM: Self = Self {
        mmio: 0xc000_0000..0xe000_0000,
        io: 0..0,
    };
}

/// Why a function could not be set up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PciError {
    /// No function answers at that address.
    NoFunction,
    /// It is a bridge, not an endpoint.
    NotEndpoint,
    /// A BAR needs an address and the window has no room.
    WindowFull {
        /// The BAR slot.
        slot: u8,
        /// Its size.
        size: u64,
    },
    /// The BAR has a reserved memory type.
    BadBar(u8),
    /// MSI-X was asked for but the function has none (or not that many
    /// entries, or its table BAR is missing).
    NoMsix,
    /// Neither MSI-X nor MSI.
    NoMsi,
}

impl core::fmt::Display for PciError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::NoFunction => f.write_str("no PCI function at that address"),
            Self::NotEndpoint => f.write_str("the PCI function is a bridge"),
            Self::WindowFull { slot, size } => {
                write!(f, "no room for BAR{slot} ({size:#x} bytes) in the window")
            }
            Self::BadBar(slot) => write!(f, "BAR{slot} has a reserved type"),
            Self::NoMsix => f.write_str("the function has no usable MSI-X capability"),
            Self::NoMsi => f.write_str("the function has no MSI capability"),
        }
    }
}

/// Hands out naturally aligned ranges of the windows.
#[derive(Clone, Debug)]
pub struct BarAllocator {
    next_mmio: u64,
    end_mmio: u64,
    next_io: u64,
    end_io: u64,
}

impl BarAllocator {
    /// An allocator over `windows`.
    pub fn new(windows: &Windows) -> Self {
        Self {
            next_mmio: windows.mmio.start,
            end_mmio: windows.mmio.end,
            next_io: windows.io.start,
            end_io: windows.io.end,
        }
    }

    fn take(next: &mut u64, end: u64, size: u64) -> Option<u64> {
        let start = next.checked_next_multiple_of(size)?;
        let stop = start.checked_add(size)?;
        (stop <= end).then(|| {
            *next = stop;
            start
        })
    }

    /// A `size`-byte range (size a power of two) for a BAR of `kind`.
    pub fn allocate(&mut self, kind: BarKind, size: u64) -> Option<u64> {
        match kind {
            // Memory BARs get at least a page, so no two share one.
            BarKind::Mem32 | BarKind::Mem64 => {
                Self::take(&mut self.next_mmio, self.end_mmio, size.max(4096))
            }
            BarKind::Io => Self::take(&mut self.next_io, self.end_io, size.max(4)),
        }
    }
}

/// Sizes BAR `slot` of `address` (decoding must be off). Returns the BAR
/// and how many slots it takes, or `None` for an unimplemented BAR.
fn probe_bar(
    access: &impl ConfigAccess,
    address: PciAddress,
    slot: u8,
) -> Result<Option<(Bar, u8)>, PciError> {
    let offset = 0x10 + u16::from(slot) * 4;
    let orig = access.read(address, offset);
    access.write(address, offset, u32::MAX);
    let mask = access.read(address, offset);
    access.write(address, offset, orig);
    if mask == 0 || mask == u32::MAX && orig == u32::MAX {
        return Ok(None);
    }
    if orig & 1 == 1 {
        let bits = mask & !3 & 0xffff;
        if bits == 0 {
            return Ok(None);
        }
        let size = u64::from(bits & bits.wrapping_neg());
        let bar = Bar {
            kind: BarKind::Io,
            address: u64::from(orig & !3),
            size,
        };
        return Ok(Some((bar, 1)));
    }
    match (orig >> 1) & 3 {
        0 => {
            let bits = mask & !0xf;
            if bits == 0 {
                return Ok(None);
            }
            let bar = Bar {
                kind: BarKind::Mem32,
                address: u64::from(orig & !0xf),
                size: u64::from(bits & bits.wrapping_neg()),
            };
            Ok(Some((bar, 1)))
        }
        2 if slot < 5 => {
            let orig_hi = access.read(address, offset + 4);
            access.write(address, offset + 4, u32::MAX);
            let mask_hi = access.read(address, offset + 4);
            access.write(address, offset + 4, orig_hi);
            let bits = (u64::from(mask_hi) << 32) | u64::from(mask & !0xf);
            if bits == 0 {
                return Ok(None);
            }
            let bar = Bar {
                kind: BarKind::Mem64,
                address: (u64::from(orig_hi) << 32) | u64::from(orig & !0xf),
                size: bits & bits.wrapping_neg(),
            };
            Ok(Some((bar, 2)))
        }
        _ => Err(PciError::BadBar(slot)),
    }
}

fn write_bar(access: &impl ConfigAccess, address: PciAddress, slot: u8, bar: &Bar) {
    let offset = 0x10 + u16::from(slot) * 4;
    let low = access.read(address, offset) & if bar.kind == BarKind::Io { 3 } else { 0xf };
    access.write(address, offset, (bar.address as u32 & !0xf) | low);
    if bar.kind == BarKind::Mem64 {
        access.write(address, offset + 4, (bar.address >> 32) as u32);
    }
}

/// An endpoint after [`enable`]: its BARs (index = slot; the upper half of
/// a 64-bit BAR is `None`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Enabled {
    /// Where it is.
    pub address: PciAddress,
    /// Its BARs.
    pub bars: [Option<Bar>; 6],
}

/// Sizes the BARs of endpoint `address`, assigns those at address zero
/// from `allocator` (when given), then enables memory and I/O decoding and
/// bus mastering. An I/O BAR for which the allocator has no I/O window
/// stays at port 0 (reported so), and I/O decoding then stays off.
pub fn enable(
    access: &impl ConfigAccess,
    address: PciAddress,
    mut allocator: Option<&mut BarAllocator>,
) -> Result<Enabled, PciError> {
    let header = PciHeader::new(address);
    if header.id(Types(access)).0 == 0xffff {
        return Err(PciError::NoFunction);
    }
    let mut endpoint =
        EndpointHeader::from_header(header, Types(access)).ok_or(PciError::NotEndpoint)?;
    // Sizing writes all ones into the BARs: stop decoding meanwhile.
    endpoint.update_command(Types(access), |c| {
        c & !(CommandRegister::IO_ENABLE | CommandRegister::MEMORY_ENABLE)
    });
    let mut bars = [None; 6];
    let mut slot = 0u8;
    while slot < 6 {
        let Some((mut bar, used)) = probe_bar(access, address, slot)? else {
            slot += 1;
            continue;
        };
        if bar.address == 0
            && let Some(alloc) = allocator.as_deref_mut()
        {
            match alloc.allocate(bar.kind, bar.size) {
                Some(a) => {
                    bar.address = a;
                    write_bar(access, address, slot, &bar);
                }
                // A bridge without an I/O window (microvm's GPEX): the
                // port BAR stays unassigned; the device is reached
                // through its memory BAR.
                None if bar.kind == BarKind::Io && alloc.next_io == alloc.end_io => {}
                None => {
                    return Err(PciError::WindowFull {
                        slot,
                        size: bar.size,
                    });
                }
            }
        }
        bars[usize::from(slot)] = Some(bar);
        slot += used;
    }
    // Never decode an I/O BAR left at port 0.
    let io_ok = !bars
        .iter()
        .flatten()
        .any(|b| b.kind == BarKind::Io && b.address == 0);
    endpoint.update_command(Types(access), |c| {
        let c = c | CommandRegister::MEMORY_ENABLE | CommandRegister::BUS_MASTER_ENABLE;
        if io_ok {
            c | CommandRegister::IO_ENABLE
        } else {
            c
        }
    });
    Ok(Enabled { address, bars })
}

/// The MSI message address that targets local APIC `apic_id`.
pub const fn msi_address(apic_id: u8) -> u64 {
    0xfee0_0000 | ((apic_id as u64) << 12)
}

/// Where a function's MSI-X table lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MsixTable {
    /// Physical address of entry 0.
    pub address: u64,
    /// Number of entries.
    pub entries: u16,
}

fn msix_capability(
    access: &impl ConfigAccess,
    address: PciAddress,
) -> Option<pci_types::capability::MsixCapability> {
    let endpoint = EndpointHeader::from_header(PciHeader::new(address), Types(access))?;
    endpoint
        .capabilities(Types(access))
        .find_map(|cap| match cap {
            PciCapability::MsiX(m) => Some(m),
            _ => None,
        })
}

/// The MSI-X table of an enabled function, if it has MSI-X.
pub fn msix_table(access: &impl ConfigAccess, function: &Enabled) -> Option<MsixTable> {
    let cap = msix_capability(access, function.address)?;
    let bar = function.bars.get(usize::from(cap.table_bar()))?.as_ref()?;
    if bar.kind == BarKind::Io || bar.address == 0 {
        return None;
    }
    Some(MsixTable {
        address: bar.address + u64::from(cap.table_offset()),
        entries: cap.table_size(),
    })
}

/// Programs and unmasks MSI-X table entries `(index, apic_id, vector)` at
/// `table` (the mapped [`MsixTable::address`]), then enables MSI-X and
/// turns legacy INTx off.
///
/// # Safety
/// `table` must point to the function's mapped MSI-X table (16 bytes per
/// entry), and every index must be below [`MsixTable::entries`].
pub unsafe fn enable_msix(
    access: &impl ConfigAccess,
    address: PciAddress,
    table: *mut u32,
    entries: &[(u16, u8, u8)],
) -> Result<(), PciError> {
    let mut cap = msix_capability(access, address).ok_or(PciError::NoMsix)?;
    if entries.iter().any(|&(i, _, _)| i >= cap.table_size()) {
        return Err(PciError::NoMsix);
    }
    cap.set_function_mask(true, Types(access));
    cap.set_enabled(true, Types(access));
    for &(index, apic_id, vector) in entries {
        let msg = msi_address(apic_id);
        // SAFETY: the caller guarantees `table` maps at least
        // `table_size` entries of four 32-bit words; `index` was checked.
        unsafe {
            let entry = table.add(usize::from(index) * 4);
            entry.write_volatile(msg as u32);
            entry.add(1).write_volatile((msg >> 32) as u32);
            entry.add(2).write_volatile(u32::from(vector));
            // Vector control bit 0 clear: unmasked.
            entry.add(3).write_volatile(0);
        }
    }
    set_intx(access, address, false);
    cap.set_function_mask(false, Types(access));
    Ok(())
}

/// Enables single-message MSI to `vector` on local APIC `apic_id` and turns
/// legacy INTx off.
pub fn enable_msi(
    access: &impl ConfigAccess,
    address: PciAddress,
    apic_id: u8,
    vector: u8,
) -> Result<(), PciError> {
    let endpoint = EndpointHeader::from_header(PciHeader::new(address), Types(access))
        .ok_or(PciError::NotEndpoint)?;
    let msi = endpoint
        .capabilities(Types(access))
        .find_map(|cap| match cap {
            PciCapability::Msi(m) => Some(m),
            _ => None,
        })
        .ok_or(PciError::NoMsi)?;
    msi.set_message_info(msi_address(apic_id), u32::from(vector), Types(access));
    msi.set_enabled(true, Types(access));
    set_intx(access, address, false);
    Ok(())
}

/// Turns the function's legacy INTx line on or off (command bit 10).
pub fn set_intx(access: &impl ConfigAccess, address: PciAddress, on: bool) {
    let mut header = PciHeader::new(address);
    header.update_command(Types(access), |c| {
        if on {
            c & !CommandRegister::INTERRUPT_DISABLE
        } else {
            c | CommandRegister::INTERRUPT_DISABLE
        }
    });
}

/// The legacy interrupt `(pin, line)`: pin 1-4 = INTA#-INTD#, 0 = none;
/// line as firmware wrote it (0xff or 0 when nobody did).
pub fn intx(access: &impl ConfigAccess, address: PciAddress) -> (u8, u8) {
    let v = access.read(address, 0x3c);
    ((v >> 8) as u8, v as u8)
}

/// The GSI a host bridge that swizzles INTx like QEMU's GPEX routes
/// device `device`'s pin `pin` (1-4) to: `base + (device + pin - 1) % 4`.
pub const fn swizzled_gsi(base: u32, device: u8, pin: u8) -> u32 {
    base + ((device as u32 + pin.saturating_sub(1) as u32) % 4)
}

#[cfg(test)]
mod tests;
