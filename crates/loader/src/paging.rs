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
const USER: u64 = 1 << 2;
const HUGE: u64 = 1 << 7;
/// Flags of every present entry: the entry contract wants the whole map
/// writable and reachable from CPL 3.
const FLAGS: u64 = PRESENT | WRITABLE | USER;

/// The highest address the identity map can cover (one PML4 = 256 TiB).
pub const MAX_IDENTITY_MAP: u64 = 512 * PDPT_SPAN;

/// The end of the identity map for RAM ending at `ram_end`:
/// `max(4 GiB, ram_end)` rounded up to 1 GiB.
pub fn identity_map_end(ram_end: u64) -> u64 {
    align_up(ram_end.max(4 * GIB), GIB).unwrap_or(u64::MAX)
}

/// Bytes of page tables [`write_page_tables`] writes for RAM ending at
/// `ram_end`: one PML4, one PDPT per 512 GiB, one PD per GiB and one page
/// table for the first 2 MiB.
pub fn page_tables_size(ram_end: u64) -> u64 {
    let end = identity_map_end(ram_end).min(MAX_IDENTITY_MAP);
    let pds = end / GIB;
    let pdpts = end.div_ceil(PDPT_SPAN);
    (1 + pdpts + pds + 1) * PAGE
}

/// Writes page tables that identity-map `[4 KiB, identity_map_end(ram_end))`
/// writable, executable and user-accessible at `at` (4 KiB aligned) inside `dest`
/// (guest-physical `[dest_phys, dest_phys + dest.len())`), and returns the
/// `CR3` value. The first 2 MiB use 4 KiB pages with the null page left
/// unmapped, so that null-pointer accesses fault; the rest uses 2 MiB pages.
/// Every entry of every table is written, so `dest` need not be zeroed.
/// Layout: PML4 at `at`, then the PDPTs, then the PDs, then the low page
/// table.
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
            (pdpt_base + i * PAGE) | FLAGS
        } else {
            0
        });
    }
    for i in 0..pdpts * 512 {
        put(if i < pds {
            (pd_base + i * PAGE) | FLAGS
        } else {
            0
        });
    }
    let low_table = pd_base + pds * PAGE;
    put(low_table | FLAGS);
    for i in 1..pds * 512 {
        put((i * HUGE_PAGE) | FLAGS | HUGE);
    }
    put(0); // the null page
    for i in 1..512 {
        put((i * PAGE) | FLAGS);
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

#[cfg(test)]
mod tests {
    use std::vec;

    use super::*;

    const BASE: u64 = 0x10_0000;

    /// Translates `virt` through the tables in `mem` like the MMU would.
    fn walk(mem: &[u8], cr3: u64, virt: u64) -> Option<u64> {
        let entry = |table: u64, index: u64| {
            let at = (table - BASE + index * 8) as usize;
            u64::from_le_bytes(mem[at..at + 8].try_into().unwrap())
        };
        let pml4e = entry(cr3, (virt >> 39) & 511);
        if pml4e & FLAGS != FLAGS {
            return None;
        }
        let pdpte = entry(pml4e & !0xfff, (virt >> 30) & 511);
        if pdpte & FLAGS != FLAGS || pdpte & HUGE != 0 {
            return None;
        }
        let pde = entry(pdpte & !0xfff, (virt >> 21) & 511);
        if pde & FLAGS != FLAGS {
            return None;
        }
        if pde & HUGE != 0 {
            return Some((pde & !0x1f_ffff & ((1 << 52) - 1)) | (virt & 0x1f_ffff));
        }
        let pte = entry(pde & !0xfff & ((1 << 52) - 1), (virt >> 12) & 511);
        if pte & FLAGS != FLAGS {
            return None;
        }
        Some((pte & !0xfff & ((1 << 52) - 1)) | (virt & 0xfff))
    }

    #[test]
    fn identity_maps_at_least_4_gib() {
        assert_eq!(page_tables_size(512 << 20), 7 * PAGE);
        let mut mem = vec![0xffu8; 0x10_0000];
        let cr3 = write_page_tables(&mut mem, BASE, BASE + 0x1000, 512 << 20).unwrap();
        assert_eq!(cr3, BASE + 0x1000);
        for addr in [
            0x1000,
            0x1234,
            0x1f_ffff,
            0x20_0000,
            0xfee0_0000,
            0xffff_ffff,
        ] {
            assert_eq!(walk(&mem, cr3, addr), Some(addr), "{addr:#x}");
        }
        // The null page stays unmapped so that null dereferences fault.
        assert_eq!(walk(&mem, cr3, 0), None);
        assert_eq!(walk(&mem, cr3, 0xfff), None);
        assert_eq!(walk(&mem, cr3, 4 << 30), None);
        assert_eq!(walk(&mem, cr3, 1 << 47), None);
        // Nothing written beyond the tables.
        assert_eq!(mem[(0x1000 + 7 * PAGE) as usize], 0xff);
    }

    #[test]
    fn maps_all_ram_above_4_gib() {
        let ram_end = (6 << 30) + 1;
        assert_eq!(identity_map_end(ram_end), 7 << 30);
        let mut mem = vec![0u8; 0x10_0000];
        let cr3 = write_page_tables(&mut mem, BASE, BASE, ram_end).unwrap();
        assert_eq!(walk(&mem, cr3, (7 << 30) - 1), Some((7 << 30) - 1));
        assert_eq!(walk(&mem, cr3, 7 << 30), None);

        let big = 600 << 30;
        assert_eq!(page_tables_size(big), (1 + 2 + 600 + 1) * PAGE);
        let mut mem = vec![0u8; 0x40_0000];
        let cr3 = write_page_tables(&mut mem, BASE, BASE, big).unwrap();
        assert_eq!(walk(&mem, cr3, (513 << 30) + 5), Some((513 << 30) + 5));
    }

    #[test]
    fn page_table_errors() {
        let mut mem = vec![0u8; 5 * PAGE as usize];
        assert!(matches!(
            write_page_tables(&mut mem, BASE, BASE, 1 << 30),
            Err(Error::OutOfWindow { .. })
        ));
        assert_eq!(
            write_page_tables(&mut mem, BASE, BASE + 8, 1 << 30),
            Err(Error::Misaligned(BASE + 8))
        );
        assert_eq!(
            write_page_tables(&mut mem, BASE, BASE, u64::MAX),
            Err(Error::AddressOverflow)
        );
    }

    #[test]
    fn gdt_has_flat_code_and_data() {
        let mut mem = vec![0u8; 64];
        let ptr = write_gdt(&mut mem, BASE, BASE + 8).unwrap();
        assert_eq!(
            ptr,
            GdtPointer {
                base: BASE + 8,
                limit: 23
            }
        );
        let desc = |sel: u16| {
            let at = 8 + sel as usize;
            u64::from_le_bytes(mem[at..at + 8].try_into().unwrap())
        };
        assert_eq!(desc(0), 0);
        let code = desc(GDT_KERNEL_CODE);
        assert_eq!((code >> 40) & 0xff, 0x9b, "present, ring 0, code, read");
        assert_eq!((code >> 53) & 1, 1, "long mode");
        let data = desc(GDT_KERNEL_DATA);
        assert_eq!((data >> 40) & 0xff, 0x93, "present, ring 0, data, write");
        assert!(write_gdt(&mut mem, BASE, BASE + 48).is_err());
        assert!(write_gdt(&mut mem, BASE, BASE + 4).is_err());
    }
}
