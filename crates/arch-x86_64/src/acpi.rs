//! ACPI on identity-mapped memory: finding the RSDP, the processors, I/O
//! APICs and interrupt source overrides the MADT lists, the MCFG's ECAM window, and power-off: the `\_S5` sleep type, then `SLP_TYP | SLP_EN`
//! written to `PM1a_CNT`, or to the FADT's sleep control register on
//! hardware-reduced ACPI such as QEMU's `microvm`.
//!
//! `\_S5` comes from the `acpi` crate's AML interpreter with feature `aml`,
//! otherwise from a scan of the DSDT for the usual encoding
//! `Name (_S5, Package { ... })` ([`s5_from_aml`]). The interpreter handles
//! any DSDT but adds about 210 KiB to every image, which the PVH loader then
//! copies at boot (about 50 ms under the software KVM of the development
//! machines); the scan needs no heap, so it also works after an
//! out-of-memory panic.
//!
//! Tables are read in place through the boot identity map (no mapping work).
//! Not here: events, GPEs, devices (`_CRS`), sleep states other than S5.

use alloc::vec::Vec;
use core::ptr::NonNull;

#[cfg(feature = "aml")]
use acpi::Handle;
use acpi::address::{AddressSpace, GenericAddress};
#[cfg(feature = "aml")]
use acpi::aml::{AmlError, object::Object};
use acpi::sdt::fadt::Fadt;
use acpi::sdt::madt::{Madt, MadtEntry};
use acpi::{AcpiError, AcpiTables, PciAddress, PhysicalMapping};

use crate::cpu::rdtsc;

/// Where the BIOS read-only area (searched for the RSDP) starts.
const BIOS_AREA_START: u64 = 0xe_0000;
/// One past its end.
const BIOS_AREA_END: u64 = 0x10_0000;
/// `PM1_CNT.SLP_EN`.
const PM1_SLP_EN: u64 = 1 << 13;
/// Hardware-reduced sleep control register: `SLP_EN`.
const SLEEP_CTL_SLP_EN: u64 = 1 << 5;

/// Why an ACPI operation failed.
#[derive(Clone, Debug)]
pub enum Error {
    /// No RSDP was found.
    NoRsdp,
    /// The tables are malformed or a table is missing.
    Tables(AcpiError),
    /// The AML interpreter failed.
    #[cfg(feature = "aml")]
    Aml(AmlError),
    /// `\_S5` is not a package starting with an integer.
    BadS5,
    /// Neither a PM1a control block nor a sleep control register exists.
    NoSleepRegister,
    /// The register is in an address space this code cannot write.
    UnsupportedRegister,
}

impl core::fmt::Display for Error {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::NoRsdp => f.write_str("no ACPI RSDP found"),
            Self::Tables(e) => write!(f, "bad ACPI tables: {e:?}"),
            #[cfg(feature = "aml")]
            Self::Aml(e) => write!(f, "AML evaluation failed: {e:?}"),
            Self::BadS5 => f.write_str("\\_S5 is not a package of sleep types"),
            Self::NoSleepRegister => f.write_str("no ACPI sleep control register"),
            Self::UnsupportedRegister => {
                f.write_str("sleep register in an unsupported address space")
            }
        }
    }
}

impl From<AcpiError> for Error {
    fn from(e: AcpiError) -> Self {
        Self::Tables(e)
    }
}

#[cfg(feature = "aml")]
impl From<AmlError> for Error {
    fn from(e: AmlError) -> Self {
        Self::Aml(e)
    }
}

/// Whether the 20 bytes at the start of `bytes` are an RSDP (signature and
/// ACPI 1.0 checksum).
pub fn is_rsdp(bytes: &[u8]) -> bool {
    bytes.len() >= 20
        && &bytes[..8] == b"RSD PTR "
        && bytes[..20].iter().fold(0u8, |a, &b| a.wrapping_add(b)) == 0
}

/// The offset of the first RSDP in `area` (searched on 16-byte boundaries).
pub fn scan_for_rsdp(area: &[u8]) -> Option<usize> {
    (0..area.len().saturating_sub(19))
        .step_by(16)
        .find(|&at| is_rsdp(&area[at..]))
}

/// The RSDP's physical address: `hint` (e.g. from the boot info) if it
/// points to one, else the first one in the BIOS area `0xE0000..0x100000`.
/// The EBDA is not searched: its pointer lives in the unmapped null page.
///
/// # Safety
/// The low 1 MiB (above the null page) must be identity-mapped RAM or ROM.
pub unsafe fn find_rsdp(hint: u64) -> Option<u64> {
    if hint != 0 && hint < (1 << 32) {
        // SAFETY: the loader gave this address as the RSDP's; 20 bytes are read.
        let bytes = unsafe { core::slice::from_raw_parts(hint as *const u8, 20) };
        if is_rsdp(bytes) {
            return Some(hint);
        }
    }
    let len = (BIOS_AREA_END - BIOS_AREA_START) as usize;
    // SAFETY: the caller keeps the BIOS area mapped; it is only read.
    let area = unsafe { core::slice::from_raw_parts(BIOS_AREA_START as *const u8, len) };
    scan_for_rsdp(area).map(|at| BIOS_AREA_START + at as u64)
}

/// An `acpi::Handler` for identity-mapped physical memory and port I/O.
/// Locks and sleeps are trivial: the interpreter runs on one CPU at the end
/// of the kernel's life.
#[derive(Clone, Copy, Debug)]
pub struct IdentityHandler {
    /// TSC frequency in kHz for `stall`/`sleep` (0: a guess of 1 GHz).
    pub tsc_khz: u64,
}

impl IdentityHandler {
    fn delay_us(&self, us: u64) {
        let khz = if self.tsc_khz == 0 {
            1_000_000
        } else {
            self.tsc_khz
        };
        let ticks = us.saturating_mul(khz) / 1000;
        let start = rdtsc();
        while rdtsc().wrapping_sub(start) < ticks {
            core::hint::spin_loop();
        }
    }
}

/// Volatile accesses for the handler; the AML interpreter only touches the
/// addresses the firmware's tables name.
macro_rules! mem_access {
    ($read:ident, $write:ident, $t:ty) => {
        fn $read(&self, address: usize) -> $t {
            // SAFETY: the firmware's AML names this address (identity-mapped
            // RAM or MMIO below 4 GiB); the access is volatile.
            unsafe { core::ptr::read_volatile(address as *const $t) }
        }
        fn $write(&self, address: usize, value: $t) {
            // SAFETY: as for the read above.
            unsafe { core::ptr::write_volatile(address as *mut $t, value) }
        }
    };
}

macro_rules! io_access {
    ($read:ident, $write:ident, $t:ty) => {
        fn $read(&self, port: u16) -> $t {
            // SAFETY: the firmware's AML names this port; port reads have no
            // memory effects.
            unsafe { x86_64::instructions::port::Port::<$t>::new(port).read() }
        }
        fn $write(&self, port: u16, value: $t) {
            // SAFETY: as for the read above.
            unsafe { x86_64::instructions::port::Port::<$t>::new(port).write(value) }
        }
    };
}

impl acpi::Handler for IdentityHandler {
    unsafe fn map_physical_region<T>(
        &self,
        physical_address: usize,
        size: usize,
    ) -> PhysicalMapping<Self, T> {
        // Identity map: the virtual address is the physical one. The crate
        // never dereferences a region it mapped at 0 (it only maps address
        // 0 for absent registers it does not access), and a dangling pointer
        // would fault like the null page does.
        let virtual_start = NonNull::new(physical_address as *mut T).unwrap_or(NonNull::dangling());
        PhysicalMapping {
            physical_start: physical_address,
            virtual_start,
            region_length: size,
            mapped_length: size,
            handler: *self,
        }
    }

    fn unmap_physical_region<T>(_region: &PhysicalMapping<Self, T>) {}

    mem_access!(read_u8, write_u8, u8);
    mem_access!(read_u16, write_u16, u16);
    mem_access!(read_u32, write_u32, u32);
    mem_access!(read_u64, write_u64, u64);
    io_access!(read_io_u8, write_io_u8, u8);
    io_access!(read_io_u16, write_io_u16, u16);
    io_access!(read_io_u32, write_io_u32, u32);

    // No PCI configuration space here (microvm has no PCI bus): reads see
    // an absent device, writes are dropped.
    fn read_pci_u8(&self, _address: PciAddress, _offset: u16) -> u8 {
        0xff
    }
    fn read_pci_u16(&self, _address: PciAddress, _offset: u16) -> u16 {
        0xffff
    }
    fn read_pci_u32(&self, _address: PciAddress, _offset: u16) -> u32 {
        0xffff_ffff
    }
    fn write_pci_u8(&self, _address: PciAddress, _offset: u16, _value: u8) {}
    fn write_pci_u16(&self, _address: PciAddress, _offset: u16, _value: u16) {}
    fn write_pci_u32(&self, _address: PciAddress, _offset: u16, _value: u32) {}

    fn nanos_since_boot(&self) -> u64 {
        let khz = if self.tsc_khz == 0 {
            1_000_000
        } else {
            self.tsc_khz
        };
        (u128::from(rdtsc()) * 1_000_000 / u128::from(khz)) as u64
    }

    fn stall(&self, microseconds: u64) {
        self.delay_us(microseconds);
    }

    fn sleep(&self, milliseconds: u64) {
        self.delay_us(milliseconds.saturating_mul(1000));
    }

    #[cfg(feature = "aml")]
    fn create_mutex(&self) -> Handle {
        Handle(0)
    }

    #[cfg(feature = "aml")]
    fn acquire(&self, _mutex: Handle, _timeout: u16) -> Result<(), AmlError> {
        Ok(())
    }

    #[cfg(feature = "aml")]
    fn release(&self, _mutex: Handle) {}
}

/// A processor the MADT lists.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MadtCpu {
    /// Its local APIC (or x2APIC) ID.
    pub apic_id: u32,
    /// The entry's flags: bit 0 enabled, bit 1 online-capable.
    pub flags: u32,
}

impl MadtCpu {
    /// Whether the processor is enabled (may be started now).
    pub const fn enabled(&self) -> bool {
        self.flags & 1 != 0
    }
}

/// The APIC IDs of the processors to start: enabled ones other than the
/// boot CPU `bsp_apic_id`, each once, in table order.
pub fn application_processors(cpus: &[MadtCpu], bsp_apic_id: u32) -> Vec<u32> {
    let mut out: Vec<u32> = Vec::with_capacity(cpus.len());
    for cpu in cpus {
        if cpu.enabled() && cpu.apic_id != bsp_apic_id && !out.contains(&cpu.apic_id) {
            out.push(cpu.apic_id);
        }
    }
    out
}

/// The ACPI tables at `rsdp`.
///
/// # Safety
/// `rsdp` must come from [`find_rsdp`], and the tables must be
/// identity-mapped (they lie below 4 GiB under QEMU).
pub unsafe fn tables(
    rsdp: u64,
    handler: IdentityHandler,
) -> Result<AcpiTables<IdentityHandler>, Error> {
    // SAFETY: the caller's contract; the crate validates the signature.
    Ok(unsafe { AcpiTables::from_rsdp(handler, rsdp as usize) }?)
}

/// Every processor entry of the MADT (local APIC and local x2APIC entries).
pub fn madt_cpus(tables: &AcpiTables<IdentityHandler>) -> Result<Vec<MadtCpu>, Error> {
    let madt = tables
        .find_table::<Madt>()
        .ok_or(Error::Tables(AcpiError::TableNotFound(
            acpi::sdt::Signature::MADT,
        )))?;
    let mut cpus = Vec::new();
    for entry in madt.get().entries() {
        match entry {
            MadtEntry::LocalApic(e) => cpus.push(MadtCpu {
                apic_id: u32::from(e.apic_id),
                flags: { e.flags },
            }),
            MadtEntry::LocalX2Apic(e) => cpus.push(MadtCpu {
                apic_id: { e.x2apic_id },
                flags: { e.flags },
            }),
            _ => {}
        }
    }
    Ok(cpus)
}

/// An I/O APIC the MADT lists.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MadtIoApic {
    /// Its I/O APIC ID.
    pub id: u8,
    /// Physical address of its register window.
    pub address: u32,
    /// The GSI of its first pin.
    pub gsi_base: u32,
}

/// An interrupt source override: ISA IRQ `irq` arrives on `gsi`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SourceOverride {
    /// The ISA IRQ.
    pub irq: u8,
    /// The GSI it is wired to.
    pub gsi: u32,
    /// MPS INTI flags: bits 0-1 polarity, bits 2-3 trigger mode.
    pub flags: u16,
}

/// The MADT's interrupt routing: I/O APICs and ISA overrides.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MadtInterrupts {
    /// The I/O APICs, in table order.
    pub ioapics: Vec<MadtIoApic>,
    /// The ISA interrupt source overrides.
    pub overrides: Vec<SourceOverride>,
}

impl MadtInterrupts {
    /// The GSI of ISA IRQ `irq` (identity unless overridden).
    pub fn isa_gsi(&self, irq: u8) -> u32 {
        self.overrides
            .iter()
            .find(|o| o.irq == irq)
            .map_or(u32::from(irq), |o| o.gsi)
    }

    /// The I/O APIC serving `gsi`, given each one's pin count.
    pub fn ioapic_for(&self, gsi: u32, pins: impl Fn(&MadtIoApic) -> u32) -> Option<MadtIoApic> {
        self.ioapics
            .iter()
            .find(|io| gsi >= io.gsi_base && gsi - io.gsi_base < pins(io))
            .copied()
    }
}

/// The I/O APICs and interrupt source overrides of the MADT.
pub fn madt_interrupts(tables: &AcpiTables<IdentityHandler>) -> Result<MadtInterrupts, Error> {
    let madt = tables
        .find_table::<Madt>()
        .ok_or(Error::Tables(AcpiError::TableNotFound(
            acpi::sdt::Signature::MADT,
        )))?;
    let mut out = MadtInterrupts::default();
    for entry in madt.get().entries() {
        match entry {
            MadtEntry::IoApic(e) => out.ioapics.push(MadtIoApic {
                id: e.io_apic_id,
                address: { e.io_apic_address },
                gsi_base: { e.global_system_interrupt_base },
            }),
            MadtEntry::InterruptSourceOverride(e) if e.bus == 0 => {
                out.overrides.push(SourceOverride {
                    irq: e.irq,
                    gsi: { e.global_system_interrupt },
                    flags: { e.flags },
                })
            }
            _ => {}
        }
    }
    Ok(out)
}

/// An ECAM window from the MCFG table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EcamWindow {
    /// Physical address of bus 0's configuration space.
    pub base: u64,
    /// First bus decoded.
    pub bus_start: u8,
    /// Last bus decoded.
    pub bus_end: u8,
}

/// The ECAM window of PCI segment 0, if the tables have an MCFG.
pub fn mcfg_ecam(tables: &AcpiTables<IdentityHandler>) -> Option<EcamWindow> {
    let mcfg = tables.find_table::<acpi::sdt::mcfg::Mcfg>()?;
    let entry = mcfg
        .get()
        .entries()
        .iter()
        .find(|e| e.pci_segment_group == 0)
        .copied()?;
    Some(EcamWindow {
        base: { entry.base_address },
        bus_start: entry.bus_number_start,
        bus_end: entry.bus_number_end,
    })
}

/// The value that starts sleep state `slp_typ` in a hardware-reduced sleep
/// control register (`SLP_TYP` in bits 2-4, `SLP_EN` bit 5).
pub const fn sleep_control_value(slp_typ: u8) -> u64 {
    (((slp_typ & 7) as u64) << 2) | SLEEP_CTL_SLP_EN
}

/// `pm1_cnt` with `SLP_TYP` (bits 10-12) replaced by `slp_typ` and `SLP_EN` set.
pub const fn pm1_control_value(pm1_cnt: u64, slp_typ: u8) -> u64 {
    (pm1_cnt & !(7 << 10)) | (((slp_typ & 7) as u64) << 10) | PM1_SLP_EN
}

/// Width in bits of a register access.
fn gas_width(gas: &GenericAddress) -> u8 {
    match gas.access_size {
        1 => 8,
        2 => 16,
        3 => 32,
        4 => 64,
        _ if [8, 16, 32, 64].contains(&gas.bit_width) => gas.bit_width,
        _ => 8,
    }
}

fn read_gas(h: &IdentityHandler, gas: &GenericAddress) -> Result<u64, Error> {
    use acpi::Handler as _;
    let a = gas.address;
    Ok(match (gas.address_space, gas_width(gas)) {
        (AddressSpace::SystemIo, 8) => u64::from(h.read_io_u8(a as u16)),
        (AddressSpace::SystemIo, 16) => u64::from(h.read_io_u16(a as u16)),
        (AddressSpace::SystemIo, _) => u64::from(h.read_io_u32(a as u16)),
        (AddressSpace::SystemMemory, 8) => u64::from(h.read_u8(a as usize)),
        (AddressSpace::SystemMemory, 16) => u64::from(h.read_u16(a as usize)),
        (AddressSpace::SystemMemory, 32) => u64::from(h.read_u32(a as usize)),
        (AddressSpace::SystemMemory, _) => h.read_u64(a as usize),
        _ => return Err(Error::UnsupportedRegister),
    })
}

fn write_gas(h: &IdentityHandler, gas: &GenericAddress, v: u64) -> Result<(), Error> {
    use acpi::Handler as _;
    let a = gas.address;
    match (gas.address_space, gas_width(gas)) {
        (AddressSpace::SystemIo, 8) => h.write_io_u8(a as u16, v as u8),
        (AddressSpace::SystemIo, 16) => h.write_io_u16(a as u16, v as u16),
        (AddressSpace::SystemIo, _) => h.write_io_u32(a as u16, v as u32),
        (AddressSpace::SystemMemory, 8) => h.write_u8(a as usize, v as u8),
        (AddressSpace::SystemMemory, 16) => h.write_u16(a as usize, v as u16),
        (AddressSpace::SystemMemory, 32) => h.write_u32(a as usize, v as u32),
        (AddressSpace::SystemMemory, _) => h.write_u64(a as usize, v),
        _ => return Err(Error::UnsupportedRegister),
    }
    Ok(())
}

/// `(SLP_TYPa, SLP_TYPb)` from the `\_S5` package.
#[cfg(feature = "aml")]
fn s5_sleep_types(s5: &Object) -> Result<(u8, u8), Error> {
    let Object::Package(items) = s5 else {
        return Err(Error::BadS5);
    };
    let typ = |i: usize| -> Option<u8> {
        let item = items.get(i)?.clone().unwrap_reference();
        item.as_integer().ok().map(|v| (v & 7) as u8)
    };
    let a = typ(0).ok_or(Error::BadS5)?;
    Ok((a, typ(1).unwrap_or(a)))
}

/// `(SLP_TYPa, SLP_TYPb)` by evaluating `\_S5` with the AML interpreter
/// after loading the DSDT `aml`.
#[cfg(feature = "aml")]
fn s5_by_interpreter(
    fadt: &Fadt,
    handler: IdentityHandler,
    revision: u8,
    aml: &[u8],
) -> Result<(u8, u8), Error> {
    use acpi::aml::Interpreter;
    use acpi::aml::namespace::AmlName;
    use acpi::registers::FixedRegisters;
    use alloc::sync::Arc;
    use core::str::FromStr;

    #[allow(
        clippy::arc_with_non_send_sync,
        reason = "the acpi crate's Interpreter::new takes an Arc; it stays on this CPU"
    )]
    let registers = Arc::new(FixedRegisters::new(fadt, handler)?);
    let interpreter = Interpreter::new(handler, revision, registers, None);
    interpreter.load_table(aml)?;
    let s5 = interpreter.evaluate(AmlName::from_str("\\_S5")?, Vec::new())?;
    s5_sleep_types(&s5)
}

/// Decodes one AML integer constant at the start of `b` (`Zero`, `One`,
/// `Ones`, or a byte/word/dword constant): its value and length.
fn aml_integer(b: &[u8]) -> Option<(u64, usize)> {
    let le = |n: usize| -> Option<u64> {
        let bytes = b.get(1..1 + n)?;
        Some(
            bytes
                .iter()
                .rev()
                .fold(0u64, |v, &x| (v << 8) | u64::from(x)),
        )
    };
    match *b.first()? {
        0x00 => Some((0, 1)),
        0x01 => Some((1, 1)),
        0xff => Some((u64::MAX, 1)),
        0x0a => Some((le(1)?, 2)),
        0x0b => Some((le(2)?, 3)),
        0x0c => Some((le(4)?, 5)),
        _ => None,
    }
}

/// `(SLP_TYPa, SLP_TYPb)` from AML bytecode that declares `\_S5` the usual
/// way, `Name (_S5, Package (N) { typ_a, typ_b, ... })` with constant
/// elements; `None` if it is not there in that form (e.g. a method).
pub fn s5_from_aml(aml: &[u8]) -> Option<(u8, u8)> {
    aml.windows(4)
        .enumerate()
        .filter(|(_, w)| *w == b"_S5_")
        .find_map(|(at, _)| s5_name_at(aml, at))
}

/// The sleep types if the `_S5_` at `at` is a `Name` of a package.
fn s5_name_at(aml: &[u8], at: usize) -> Option<(u8, u8)> {
    // NameOp, optionally with a root prefix before the name.
    let name_op = match at.checked_sub(1).map(|i| aml[i])? {
        b'\\' => aml[at.checked_sub(2)?],
        op => op,
    };
    if name_op != 0x08 {
        return None;
    }
    let rest = aml.get(at + 4..)?;
    if *rest.first()? != 0x12 {
        return None;
    }
    // PkgLength: bits 7-6 of the lead byte count the bytes that follow.
    let pkg_len_bytes = 1 + usize::from(rest.get(1)? >> 6);
    let mut pos = 1 + pkg_len_bytes + 1; // PackageOp, PkgLength, NumElements
    let (a, len) = aml_integer(rest.get(pos..)?)?;
    pos += len;
    let b = aml_integer(rest.get(pos..)?).map_or(a, |(b, _)| b);
    Some(((a & 7) as u8, (b & 7) as u8))
}

/// Turns the machine off through ACPI (S5). Returns only on failure, or if
/// the platform ignored the request.
///
/// With feature `aml` it runs the AML interpreter over the DSDT (heap
/// allocations, many thousands of instructions), so it is meant for the
/// very end.
///
/// # Safety
/// `rsdp` must come from [`find_rsdp`]; the tables and the registers they
/// name must be identity-mapped. Everything else on the machine stops.
pub unsafe fn power_off(rsdp: u64, handler: IdentityHandler) -> Result<(), Error> {
    // SAFETY: the caller's contract.
    let tables = unsafe { tables(rsdp, handler) }?;
    let fadt = tables
        .find_table::<Fadt>()
        .ok_or(Error::Tables(AcpiError::TableNotFound(
            acpi::sdt::Signature::FADT,
        )))?;
    let dsdt = tables.dsdt()?;
    let header = size_of::<acpi::sdt::SdtHeader>();
    let len = (dsdt.length as usize).saturating_sub(header);
    // SAFETY: the DSDT lies in identity-mapped firmware memory; its length
    // comes from its header.
    let aml =
        unsafe { core::slice::from_raw_parts((dsdt.phys_address + header) as *const u8, len) };
    #[cfg(feature = "aml")]
    let ((typ_a, typ_b), how) = (
        s5_by_interpreter(&fadt, handler, dsdt.revision, aml)?,
        "AML interpreter",
    );
    #[cfg(not(feature = "aml"))]
    let ((typ_a, typ_b), how) = (s5_from_aml(aml).ok_or(Error::BadS5)?, "DSDT scan");
    log::debug!("ACPI power-off: SLP_TYPa {typ_a}, SLP_TYPb {typ_b} ({how})");

    let pm1a = fadt.pm1a_control_block()?;
    if { fadt.flags }.system_is_hw_reduced_acpi() || pm1a.address == 0 {
        let ctl = fadt.sleep_control_register()?.filter(|g| g.address != 0);
        let ctl = ctl.ok_or(Error::NoSleepRegister)?;
        write_gas(&handler, &ctl, sleep_control_value(typ_a))?;
    } else {
        let value = read_gas(&handler, &pm1a)?;
        if let Some(pm1b) = fadt.pm1b_control_block()? {
            let b = read_gas(&handler, &pm1b)?;
            write_gas(&handler, &pm1b, pm1_control_value(b, typ_b))?;
        }
        write_gas(&handler, &pm1a, pm1_control_value(value, typ_a))?;
    }
    // The write takes effect asynchronously in some hypervisors.
    handler.delay_us(100_000);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn isa_overrides_and_ioapic_lookup() {
        let m = MadtInterrupts {
            ioapics: vec![
                MadtIoApic {
                    id: 0,
                    address: 0xfec0_0000,
                    gsi_base: 0,
                },
                MadtIoApic {
                    id: 1,
                    address: 0xfec1_0000,
                    gsi_base: 24,
                },
            ],
            overrides: vec![SourceOverride {
                irq: 0,
                gsi: 2,
                flags: 0,
            }],
        };
        assert_eq!(m.isa_gsi(0), 2);
        assert_eq!(m.isa_gsi(9), 9);
        assert_eq!(m.ioapic_for(17, |_| 24).map(|io| io.id), Some(0));
        assert_eq!(m.ioapic_for(30, |_| 24).map(|io| io.id), Some(1));
        assert_eq!(m.ioapic_for(48, |_| 24), None);
    }

    fn rsdp_bytes() -> [u8; 20] {
        let mut b = [0u8; 20];
        b[..8].copy_from_slice(b"RSD PTR ");
        b[9..15].copy_from_slice(b"BOCHS ");
        b[16..20].copy_from_slice(&0x7ffe_0000u32.to_le_bytes());
        let sum = b.iter().fold(0u8, |a, &x| a.wrapping_add(x));
        b[8] = 0u8.wrapping_sub(sum);
        b
    }

    #[test]
    fn finds_rsdp_on_16_byte_boundaries() {
        let mut area = vec![0u8; 0x1000];
        let rsdp = rsdp_bytes();
        // Misaligned copy is not found; an aligned one is.
        area[0x105..0x105 + 20].copy_from_slice(&rsdp);
        assert_eq!(scan_for_rsdp(&area), None);
        area[0x230..0x230 + 20].copy_from_slice(&rsdp);
        assert_eq!(scan_for_rsdp(&area), Some(0x230));
        // A bad checksum is rejected.
        area[0x230 + 8] ^= 1;
        assert_eq!(scan_for_rsdp(&area), None);
        assert!(!is_rsdp(&rsdp[..19]));
    }

    #[test]
    fn application_processors_skip_bsp_disabled_and_duplicates() {
        let cpus = [
            MadtCpu {
                apic_id: 0,
                flags: 1,
            },
            MadtCpu {
                apic_id: 1,
                flags: 1,
            },
            MadtCpu {
                apic_id: 2,
                flags: 0,
            },
            MadtCpu {
                apic_id: 3,
                flags: 3,
            },
            MadtCpu {
                apic_id: 1,
                flags: 1,
            },
        ];
        assert_eq!(application_processors(&cpus, 0), [1, 3]);
        assert_eq!(application_processors(&cpus, 3), [0, 1]);
        assert!(application_processors(&[], 0).is_empty());
    }

    #[test]
    fn sleep_register_values() {
        // QEMU microvm: _S5 is 5; SLP_TYP in bits 2-4, SLP_EN bit 5.
        assert_eq!(sleep_control_value(5), 0x34);
        // PIIX4/ICH9: SLP_TYP bits 10-12, SLP_EN bit 13; other bits kept.
        assert_eq!(pm1_control_value(0x1c01, 0), 0x2001);
        assert_eq!(pm1_control_value(0x0001, 5), 0x3401);
    }

    #[test]
    fn s5_is_found_by_scanning_aml() {
        // QEMU microvm: Name (_S5, Package (0x04) { 0x05, Zero, Zero, Zero })
        // inside a scope, after other objects.
        let mut aml = vec![
            0x10, 0x40, 0x05, b'\\', 0x08, b'X', b'_', b'S', b'4', b'_', 0x01,
        ];
        aml.extend_from_slice(&[0x08, b'_', b'S', b'5', b'_', 0x12, 0x08, 0x04, 0x0a, 0x05]);
        aml.extend_from_slice(&[0x00, 0x00, 0x00]);
        assert_eq!(s5_from_aml(&aml), Some((5, 0)));
        // Root prefix, two-byte PkgLength, word constants, One.
        let aml = [
            0x08, b'\\', b'_', b'S', b'5', b'_', 0x12, 0x40, 0x01, 0x02, 0x0b, 0x07, 0x00, 0x01,
        ];
        assert_eq!(s5_from_aml(&aml), Some((7, 1)));
        // A single element: SLP_TYPb = SLP_TYPa.
        let aml = [0x08, b'_', b'S', b'5', b'_', 0x12, 0x03, 0x01, 0x0a, 0x03];
        assert_eq!(s5_from_aml(&aml), Some((3, 3)));
        // A reference before the declaration is skipped.
        let aml = [
            0x70, b'_', b'S', b'5', b'_', 0x60, 0x08, b'_', b'S', b'5', b'_', 0x12, 0x03, 0x01,
            0x0a, 0x02,
        ];
        assert_eq!(s5_from_aml(&aml), Some((2, 2)));
        // A method named _S5_, a missing package, truncation: not found.
        assert_eq!(
            s5_from_aml(&[0x14, 0x08, b'_', b'S', b'5', b'_', 0x00]),
            None
        );
        assert_eq!(
            s5_from_aml(&[0x08, b'_', b'S', b'5', b'_', 0x0a, 0x05]),
            None
        );
        assert_eq!(
            s5_from_aml(&[0x08, b'_', b'S', b'5', b'_', 0x12, 0x03]),
            None
        );
        assert_eq!(s5_from_aml(b"_S5_"), None);
        assert_eq!(s5_from_aml(&[]), None);
    }

    #[test]
    #[cfg(feature = "aml")]
    fn s5_package_is_decoded() {
        let pkg = Object::Package(vec![
            Object::Integer(5).wrap(),
            Object::Integer(0x0d).wrap(),
        ]);
        assert_eq!(s5_sleep_types(&pkg).unwrap(), (5, 5));
        let one = Object::Package(vec![Object::Integer(7).wrap()]);
        assert_eq!(s5_sleep_types(&one).unwrap(), (7, 7));
        assert!(matches!(
            s5_sleep_types(&Object::Integer(5)),
            Err(Error::BadS5)
        ));
        assert!(matches!(
            s5_sleep_types(&Object::Package(vec![])),
            Err(Error::BadS5)
        ));
    }
}
