//! The initial page tables and GDT required by the kernel entry contract.

use hermit_interface::{GDT_KERNEL_CODE, GDT_KERNEL_DATA};

use crate::error::{Error, Item};
use crate::window::{align_up, sub_mut};

const PAGE: u64 = 4096;
const GIB: u64 = 1 << 30;
const HUGE_PAGE: u64 = 2 << 20;
/// Bytes one PDPT maps (512 GiB).
const PDPT_SPAN: u64 = 512 * GIB;

const PRESENT: u64 = 1 << 0;
const WRITABLE: u64 = 1 << 1;
const HUGE: u64 = 1 << 7;

/// The highest address the identity map can cover (one PML4 = 256 TiB).
pub const MAX_IDENTITY_MAP: u64 = 512 * PDPT_SPAN;

/// The end of the identity map for RAM ending at `ram_end`:
/// `max(4 GiB, ram_end)` rounded up to 1 GiB.
pub fn identity_map_end(ram_end: u64) -> u64 {
    align_up(ram_end.max(4 * GIB), GIB).unwrap_or(u64::MAX)
}

/// Bytes of page tables [`write_page_tables`] writes for RAM ending at
/// `ram_end`: one PML4, one PDPT per 512 GiB and one PD per GiB.
pub fn page_tables_size(ram_end: u64) -> u64 {
    let end = identity_map_end(ram_end).min(MAX_IDENTITY_MAP);
    let pds = end / GIB;
    let pdpts = end.div_ceil(PDPT_SPAN);
    (1 + pdpts + pds) * PAGE
}

/// Writes page tables that identity-map `[0, identity_map_end(ram_end))`
/// with 2 MiB writable, executable pages at `at` (4 KiB aligned) inside
/// `dest` (guest-physical `[dest_phys, dest_phys + dest.len())`), and returns
/// the `CR3` value. Every entry of every table is written, so `dest` need not
/// be zeroed. Layout: PML4 at `at`, then the PDPTs, then the PDs.
pub fn write_page_tables(
    dest: &mut [u8],
    dest_phys: u64,
    at: u64,
    ram_end: u64,
) -> Result<u64, Error> {
    if !at.is_multiple_of(PAGE) {
        return Err(Error::Misaligned(at));
    }
    let end = identity_map_end(ram_end);
    if end > MAX_IDENTITY_MAP {
        return Err(Error::AddressOverflow);
    }
    let size = page_tables_size(ram_end);
    let tables = sub_mut(dest, dest_phys, at, size, Item::PageTables)?;
    let pdpts = end.div_ceil(PDPT_SPAN);
    let pds = end / GIB;
    let pdpt_base = at + PAGE;
    let pd_base = pdpt_base + pdpts * PAGE;

    let mut entries = tables.chunks_exact_mut(8);
    let mut put = |value: u64| {
        if let Some(e) = entries.next() {
            e.copy_from_slice(&value.to_le_bytes());
        }
    };
    for i in 0..512 {
        put(if i < pdpts {
            (pdpt_base + i * PAGE) | PRESENT | WRITABLE
        } else {
            0
        });
    }
    for i in 0..pdpts * 512 {
        put(if i < pds {
            (pd_base + i * PAGE) | PRESENT | WRITABLE
        } else {
            0
        });
    }
    for i in 0..pds * 512 {
        put((i * HUGE_PAGE) | PRESENT | WRITABLE | HUGE);
    }
    Ok(at)
}

/// The loader's GDT: null, flat 64-bit ring-0 code at [`GDT_KERNEL_CODE`],
/// flat ring-0 data at [`GDT_KERNEL_DATA`] (both with the accessed bit set so
/// the CPU never writes to the table).
pub const GDT: [u64; 3] = [0, 0x00af_9b00_0000_ffff, 0x00cf_9300_0000_ffff];

const _: () = assert!(GDT_KERNEL_CODE == 0x08 && GDT_KERNEL_DATA == 0x10);

/// Size of [`GDT`] in bytes.
pub const GDT_SIZE: u64 = 24;

/// A GDT location for `lgdt` (or `kvm_sregs.gdt`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GdtPointer {
    /// Guest-physical address of the table.
    pub base: u64,
    /// Size in bytes minus one.
    pub limit: u16,
}

/// Writes [`GDT`] at `at` (8-byte aligned) inside `dest`.
pub fn write_gdt(dest: &mut [u8], dest_phys: u64, at: u64) -> Result<GdtPointer, Error> {
    if !at.is_multiple_of(8) {
        return Err(Error::Misaligned(at));
    }
    let table = sub_mut(dest, dest_phys, at, GDT_SIZE, Item::Gdt)?;
    for (slot, entry) in table.chunks_exact_mut(8).zip(GDT) {
        slot.copy_from_slice(&entry.to_le_bytes());
    }
    Ok(GdtPointer {
        base: at,
        limit: GDT_SIZE as u16 - 1,
    })
}
