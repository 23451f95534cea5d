//! Portable building blocks for starting a hermit image: checking and
//! loading a statically linked x86_64 ELF image (`ET_EXEC` or static PIE with
//! `R_X86_64_RELATIVE`/RELR relocations), writing the initial identity-mapped
//! page tables and GDT, building the memory map and writing the
//! [`BootInfo`](hermit_interface::BootInfo) with its strings — everything the
//! kernel entry contract in `hermit-interface` asks of whoever starts a
//! kernel.
//!
//! Every function works on a caller-provided byte slice that stands for a
//! window of guest-physical memory, `(dest: &mut [u8], dest_phys: u64)`, and
//! checks every write against it, so the same code serves uhyve (host side,
//! guest memory mapped into the process) and the PVH loader (inside the
//! guest, identity mapped). It is `no_std`, needs no allocator and contains
//! no `unsafe`.
//!
//! It is not a hypervisor and does not choose a memory layout: callers decide
//! where the GDT, page tables, boot info, stack and image go. Missing:
//! symbolic relocations (images must be static), `PT_INTERP`/shared
//! libraries, and identity maps above 256 TiB.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

mod bootinfo;
mod elf;
#[cfg(test)]
mod elf_tests;
mod error;
mod memmap;
mod paging;
mod window;

pub use bootinfo::{
    BOOT_INFO_SIZE, BootParams, WrittenBootInfo, boot_info_size, decode_boot_info,
    encode_boot_info, split_packed, write_boot_info,
};
pub use elf::{Dest, Image, LoadedImage, NOTE_NAME_HERMIT, NOTE_TYPE_NATIVE, NOTE_TYPE_NIC, Note};
pub use error::{Error, Item, reloc_name};
pub use memmap::build_memory_map;
pub use paging::{
    GDT, GDT_SIZE, GdtPointer, MAX_IDENTITY_MAP, identity_map_end, page_tables_size, write_gdt,
    write_page_tables,
};
