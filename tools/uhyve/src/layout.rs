//! Where uhyve puts things in guest-physical memory.
//!
//! ```text
//! 0x0000            null page (reserved, never written)
//! 0x1000            GDT (null, code 0x08, data 0x10)
//! 0x2000            page tables: PML4, PDPT(s), one PD per GiB mapped
//! next page         BootInfo, then cmdline, args, env strings
//! next page         boot stack, BOOT_STACK_SIZE bytes; RSP = its top
//! next page         one paravirtual page per vCPU (see `Layout::paravirt`)
//! next 2 MiB        the image (or its fixed address, if above)
//! after the image   usable up to the end of RAM
//! ```
//!
//! Everything below the last paravirtual page and the image are `Reserved`
//! in the memory map; the rest of RAM, including the gap between stack and image, is
//! `Usable`. RAM above [`HOLE_START`] is moved up to 4 GiB, leaving
//! `[3 GiB, 4 GiB)` free for the LAPIC, IOAPIC and future MMIO devices like
//! on a PC. In that hole: the NIC's BAR at [`NIC_BAR`] (with a NIC) and an
//! isle's shared region at [`REGION_GPA`] (isles only, see
//! [`isle_region`]).

use std::ops::Range;

use hermit_interface::BOOT_STACK_SIZE;
use hermit_interface::isle::{REGION_GPA, REGION_MAX};
use hermit_loader::{GDT_SIZE, Image, page_tables_size};

use crate::Error;

const PAGE: u64 = 4096;
const HUGE_PAGE: u64 = 2 << 20;
const GIB: u64 = 1 << 30;
/// Start of the MMIO hole below 4 GiB; RAM beyond this moves above 4 GiB.
pub const HOLE_START: u64 = 3 * GIB;
/// End of the MMIO hole.
pub const HOLE_END: u64 = 4 * GIB;
/// Guest-physical address of the virtio-net NIC's BAR0 (16 KiB), the
/// first page of the MMIO hole, far from the IOAPIC (`0xFEC00000`) and the
/// local APIC (`0xFEE00000`). Only present when the VM has a NIC.
pub const NIC_BAR: u64 = HOLE_START;
/// Address of the GDT.
pub const GDT_ADDR: u64 = 0x1000;
/// Address of the PML4; the other page tables follow it.
pub const PAGE_TABLES_ADDR: u64 = 0x2000;
/// Largest supported guest memory.
pub const MAX_MEM: u64 = 1 << 40;

const _: () = assert!(GDT_ADDR + GDT_SIZE <= PAGE_TABLES_ADDR);
// The isle region lies in the hole, after the NIC's BAR and below the IOAPIC.
const _: () = assert!(REGION_GPA >= NIC_BAR + crate::virtio_net::BAR_SIZE);
const _: () = assert!(REGION_GPA + REGION_MAX <= 0xFEC0_0000 && 0xFEC0_0000 <= HOLE_END);

/// The guest-physical range of an isle's shared region of `len` bytes, or
/// `None` if it would leave the MMIO hole (`len` above `REGION_MAX`). RAM
/// never lies in the hole ([`Layout::plan`]) and the NIC's BAR lies below
/// it, so the region overlaps neither.
pub fn isle_region(len: u64) -> Option<Range<u64>> {
    (len > 0 && len <= REGION_MAX).then(|| REGION_GPA..REGION_GPA + len)
}

/// The guest-physical addresses of everything uhyve writes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layout {
    /// RAM ranges (one, or two around the MMIO hole).
    pub ram: Vec<Range<u64>>,
    /// Address of the BootInfo.
    pub boot_info: u64,
    /// Lowest address of the boot stack.
    pub stack_bottom: u64,
    /// Initial RSP: one past the top of the boot stack.
    pub stack_top: u64,
    /// The first of one zeroed page per vCPU that uhyve registers as that
    /// vCPU's virtual-interrupt-flag page on a `kvm_pvm` host, so that the
    /// kernel runs natively from its first instruction (it registers a page
    /// of its own later); `paravirt + cpu * 4096`.
    pub paravirt: u64,
    /// One past the last paravirtual page.
    pub paravirt_end: u64,
    /// Load base of the image.
    pub image: u64,
    /// One past the image's last page.
    pub image_end: u64,
}

impl Layout {
    /// Plans the layout for `mem_size` bytes of RAM (rounded down to 4 KiB),
    /// boot info plus strings of `boot_info_size` bytes, and `image`;
    /// `cpus` vCPUs get a paravirtual page each.
    pub fn plan(
        mem_size: u64,
        boot_info_size: u64,
        image: &Image<'_>,
        cpus: u32,
    ) -> Result<Self, Error> {
        if mem_size > MAX_MEM {
            return Err(Error::MemoryTooLarge(mem_size));
        }
        let mem_size = mem_size & !(PAGE - 1);
        let ram = if mem_size <= HOLE_START {
            std::iter::once(0..mem_size).collect()
        } else {
            vec![0..HOLE_START, HOLE_END..HOLE_END + (mem_size - HOLE_START)]
        };
        let ram_end = ram.last().map_or(0, |r| r.end);
        let boot_info = PAGE_TABLES_ADDR + page_tables_size(ram_end);
        let stack_bottom = (boot_info + boot_info_size).next_multiple_of(PAGE);
        let stack_top = stack_bottom + BOOT_STACK_SIZE;
        let paravirt = stack_top;
        let boot_end = paravirt + u64::from(cpus.max(1)) * PAGE;
        let too_small = |needed: u64| Error::MemoryTooSmall {
            mem: mem_size,
            needed,
        };
        let image_base =
            image
                .base_at_or_above(boot_end, HUGE_PAGE)
                .ok_or(Error::ImageOverlapsBootArea {
                    linked: image.link_start(),
                    boot_end,
                })?;
        let image_end = image_base
            .checked_add(image.mem_size())
            .ok_or(too_small(u64::MAX))?;
        // The boot data and the image must lie in the first RAM range.
        if image_end > ram[0].end {
            return Err(too_small(image_end));
        }
        Ok(Self {
            ram,
            boot_info,
            stack_bottom,
            stack_top,
            paravirt,
            paravirt_end: boot_end,
            image: image_base,
            image_end,
        })
    }

    /// One past the last byte of RAM.
    pub fn ram_end(&self) -> u64 {
        self.ram.last().map_or(0, |r| r.end)
    }

    /// The ranges the memory map lists as reserved.
    pub fn reserved(&self) -> [Range<u64>; 2] {
        [0..self.paravirt_end, self.image..self.image_end]
    }
}

#[cfg(test)]
#[allow(clippy::single_range_in_vec_init, reason = "comparing RAM range lists")]
mod tests {
    use super::*;

    /// A static PIE with one 8 KiB segment, as raw ELF bytes.
    fn tiny_pie(e_type: u16, vaddr: u64) -> Vec<u8> {
        let mut f = vec![0u8; 0x200];
        f[..8].copy_from_slice(b"\x7fELF\x02\x01\x01\x00");
        f[16..18].copy_from_slice(&e_type.to_le_bytes());
        f[18..20].copy_from_slice(&62u16.to_le_bytes());
        f[20..24].copy_from_slice(&1u32.to_le_bytes());
        f[24..32].copy_from_slice(&vaddr.to_le_bytes());
        f[32..40].copy_from_slice(&64u64.to_le_bytes());
        f[52..54].copy_from_slice(&64u16.to_le_bytes());
        f[54..56].copy_from_slice(&56u16.to_le_bytes());
        f[56..58].copy_from_slice(&1u16.to_le_bytes());
        let ph = 64;
        f[ph..ph + 4].copy_from_slice(&1u32.to_le_bytes());
        f[ph + 16..ph + 24].copy_from_slice(&vaddr.to_le_bytes());
        f[ph + 32..ph + 40].copy_from_slice(&0x200u64.to_le_bytes());
        f[ph + 40..ph + 48].copy_from_slice(&0x2000u64.to_le_bytes());
        f
    }

    #[test]
    fn default_layout() {
        let file = tiny_pie(3, 0);
        let image = Image::parse(&file).unwrap();
        let l = Layout::plan(2 * GIB, 0x1800, &image, 2).unwrap();
        assert_eq!(l.ram, [0..2 * GIB]);
        assert_eq!(
            l.boot_info, 0x9000,
            "PML4 + PDPT + 4 PDs + the low page table from 0x2000"
        );
        assert_eq!(l.stack_bottom, 0xb000);
        assert_eq!(l.stack_top, 0x4b000);
        assert_eq!((l.paravirt, l.paravirt_end), (0x4b000, 0x4d000));
        assert_eq!(l.image, 0x20_0000);
        assert_eq!(l.image_end, 0x20_2000);
        assert_eq!(l.reserved(), [0..0x4d000, 0x20_0000..0x20_2000]);
    }

    #[test]
    fn large_memory_skips_the_hole() {
        let file = tiny_pie(3, 0);
        let image = Image::parse(&file).unwrap();
        let l = Layout::plan(8 * GIB + 5, 0x100, &image, 1).unwrap();
        assert_eq!(l.ram, [0..3 * GIB, 4 * GIB..9 * GIB]);
        assert_eq!(l.ram_end(), 9 * GIB);
        assert_eq!(l.boot_info, 0x2000 + (1 + 1 + 9 + 1) * PAGE);
        assert!(matches!(
            Layout::plan(MAX_MEM + 1, 0, &image, 1),
            Err(Error::MemoryTooLarge(_))
        ));
    }

    #[test]
    fn the_isle_region_overlaps_no_ram() {
        let file = tiny_pie(3, 0);
        let image = Image::parse(&file).unwrap();
        let region = isle_region(REGION_MAX).unwrap();
        for mem in [64 << 20, 3 * GIB, 3 * GIB + PAGE, 4 * GIB, 100 * GIB] {
            let l = Layout::plan(mem, 0x100, &image, 1).unwrap();
            for r in &l.ram {
                assert!(
                    r.end <= region.start || r.start >= region.end,
                    "{mem}: {r:?}"
                );
            }
        }
        assert!(NIC_BAR + crate::virtio_net::BAR_SIZE <= region.start);
        assert_eq!(isle_region(0), None);
        assert_eq!(isle_region(REGION_MAX + 1), None);
    }

    #[test]
    fn too_small_and_misplaced_images() {
        let file = tiny_pie(3, 0);
        let image = Image::parse(&file).unwrap();
        assert!(matches!(
            Layout::plan(2 << 20, 0x100, &image, 1),
            Err(Error::MemoryTooSmall {
                needed: 0x20_2000,
                ..
            })
        ));
        // Huge strings push the image up.
        let l = Layout::plan(64 << 20, 3 << 20, &image, 1).unwrap();
        assert_eq!(l.image, 4 << 20);

        let fixed = tiny_pie(2, 0x1000);
        let image = Image::parse(&fixed).unwrap();
        assert!(matches!(
            Layout::plan(64 << 20, 0x100, &image, 1),
            Err(Error::ImageOverlapsBootArea { linked: 0x1000, .. })
        ));
        let fixed = tiny_pie(2, 0x40_0000);
        let image = Image::parse(&fixed).unwrap();
        assert_eq!(
            Layout::plan(64 << 20, 0x100, &image, 1).unwrap().image,
            0x40_0000
        );
    }
}
