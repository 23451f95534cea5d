//! The PVH boot ABI: the `hvm_start_info` structure QEMU's PVH firmware
//! passes in `EBX` (Xen's `public/arch-x86/hvm/start_info.h`, version 1).

/// `StartInfo::magic`.
pub const START_INFO_MAGIC: u32 = 0x336e_c578;
/// `MemmapEntry::kind` of ordinary RAM (E820 type 1).
pub const MEMMAP_RAM: u32 = 1;
/// Most memory-map entries the loader looks at; QEMU reports a handful.
pub const MAX_MEMMAP: usize = 32;

/// `hvm_start_info`.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct StartInfo {
    /// [`START_INFO_MAGIC`].
    pub magic: u32,
    /// 0 or 1; the memory map exists from version 1 on.
    pub version: u32,
    /// `SIF_*` flags (unused).
    pub flags: u32,
    /// Number of entries at `modlist_paddr`.
    pub nr_modules: u32,
    /// Physical address of a [`ModlistEntry`] array.
    pub modlist_paddr: u64,
    /// Physical address of the NUL-terminated command line (unused).
    pub cmdline_paddr: u64,
    /// Physical address of the ACPI RSDP, 0 if the firmware does not say.
    pub rsdp_paddr: u64,
    /// Physical address of a [`MemmapEntry`] array.
    pub memmap_paddr: u64,
    /// Number of entries at `memmap_paddr`.
    pub memmap_entries: u32,
    /// Zero.
    pub reserved: u32,
}

/// `hvm_modlist_entry`: one module (QEMU's `-initrd` is the first).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct ModlistEntry {
    /// Physical address of the module.
    pub paddr: u64,
    /// Size in bytes.
    pub size: u64,
    /// Physical address of the module's command line.
    pub cmdline_paddr: u64,
    /// Zero.
    pub reserved: u64,
}

/// `hvm_memmap_table_entry`: one E820-style range.
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub struct MemmapEntry {
    /// First byte.
    pub addr: u64,
    /// Length in bytes.
    pub size: u64,
    /// E820 type, [`MEMMAP_RAM`] for usable RAM.
    pub kind: u32,
    /// Zero.
    pub reserved: u32,
}

/// What the loader needs from the start info, copied out of guest memory
/// before the loader writes anything.
pub struct BootParams {
    /// The first module: the bundle.
    pub bundle: ModlistEntry,
    /// The memory map; only `memmap[..memmap_len]` is valid.
    pub memmap: [MemmapEntry; MAX_MEMMAP],
    /// Number of valid `memmap` entries.
    pub memmap_len: usize,
    /// The ACPI RSDP's physical address from the start info, 0 if none.
    pub rsdp: u64,
}

/// Why the start info is unusable.
pub enum Error {
    /// `EBX` did not point to a start info structure.
    BadMagic,
    /// Version 0: no memory map.
    NoMemoryMap,
    /// No `-initrd` was given.
    NoModule,
}

impl Error {
    /// A message for the user.
    pub fn message(&self) -> &'static str {
        match self {
            Self::BadMagic => "no PVH start info (bad magic): boot this with QEMU's -kernel",
            Self::NoMemoryMap => "the PVH start info has no memory map (version 0)",
            Self::NoModule => "no bundle: pass the image bundle with -initrd",
        }
    }
}

/// Reads a `T` at physical address `paddr`.
///
/// # Safety
/// `[paddr, paddr + size_of::<T>())` must be identity-mapped readable memory.
unsafe fn read_phys<T: Copy>(paddr: u64) -> T {
    // SAFETY: the caller guarantees the range is mapped; `read_unaligned`
    // copes with any alignment and every `T` used here is valid for any bits.
    unsafe { core::ptr::read_unaligned(paddr as *const T) }
}

/// Parses the start info at `paddr` (from `EBX`).
///
/// # Safety
/// The low 4 GiB must be identity-mapped, and `paddr` must be what the PVH
/// firmware put in `EBX`.
pub unsafe fn read(paddr: u32) -> Result<BootParams, Error> {
    if paddr == 0 {
        return Err(Error::BadMagic);
    }
    // SAFETY: `paddr` is below 4 GiB, which the caller keeps mapped.
    let info: StartInfo = unsafe { read_phys(u64::from(paddr)) };
    if info.magic != START_INFO_MAGIC {
        return Err(Error::BadMagic);
    }
    if info.version < 1 || info.memmap_entries == 0 {
        return Err(Error::NoMemoryMap);
    }
    if info.nr_modules == 0 {
        return Err(Error::NoModule);
    }
    // SAFETY: firmware-provided address of the module list, below 4 GiB
    // (the firmware itself runs in 32-bit mode).
    let bundle: ModlistEntry = unsafe { read_phys(info.modlist_paddr) };
    let mut params = BootParams {
        bundle,
        memmap: [MemmapEntry::default(); MAX_MEMMAP],
        memmap_len: (info.memmap_entries as usize).min(MAX_MEMMAP),
        rsdp: info.rsdp_paddr,
    };
    for (i, slot) in params.memmap[..params.memmap_len].iter_mut().enumerate() {
        let at = info.memmap_paddr + (i * size_of::<MemmapEntry>()) as u64;
        // SAFETY: entry `i < memmap_entries` of the firmware's table.
        *slot = unsafe { read_phys(at) };
    }
    Ok(params)
}
