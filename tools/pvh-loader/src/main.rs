//! `pvh-loader`: the first code QEMU runs for a hermit image. QEMU boots it
//! with `-kernel pvh-loader -initrd <bundle>` through the PVH entry note; it
//! switches to long mode, finds the bundle (an `hermit_interface::bundle`),
//! loads and relocates the application ELF with `hermit-loader`, builds the
//! kernel's page tables, GDT, boot stack, memory map and `BootInfo`, and jumps
//! to the kernel entry as `hermit_interface` describes.
//!
//! It is a fixed-address executable at 1 MiB (see `link.ld` and `build.rs`):
//! about 33 KiB of code and data (mostly `hermit-loader`, and `core::fmt`
//! for the error line) plus 84 KiB of `.bss` (temporary page tables, 64 KiB
//! stack), without an allocator. The kernel's memory (image, page tables,
//! GDT, boot info with copies of the strings, boot stack) is one block at the
//! lowest free 2 MiB-aligned address; the loader and the bundle are usable
//! RAM in the memory map the kernel gets. It is not a general Linux/multiboot
//! loader, does not start other CPUs, and passes no TSC frequency; the ACPI
//! RSDP is passed on from the start info when the firmware sets it. On any error it prints one
//! line `pvh-loader: <message>` on the stderr port, writes an exit record
//! with status 1 and leaves through `isa-debug-exit`.
#![no_std]
#![no_main]

mod bundle;
mod console;
mod pvh;

use core::fmt;
use core::ops::Range;
use core::slice;

use hermit_interface::{
    BOOT_STACK_SIZE, GDT_KERNEL_CODE, GDT_KERNEL_DATA, MAX_MEMORY_REGIONS, MemoryRegion, Platform,
};
use hermit_loader::{
    BootParams, Dest, GdtPointer, Image, boot_info_size, build_memory_map, page_tables_size,
    write_boot_info, write_gdt, write_page_tables,
};

const PAGE: u64 = 4096;
const HUGE_PAGE: u64 = 2 << 20;
/// The loader's own page tables map only the low 4 GiB.
const FOUR_GIB: u64 = 4 << 30;
/// Bytes set aside for the GDT in front of the boot info.
const GDT_AREA: u64 = 64;

/// Why the loader cannot start the kernel.
enum Failure {
    /// The PVH start info is unusable.
    StartInfo(pvh::Error),
    /// The bundle is malformed.
    Bundle(&'static str),
    /// The image or its boot data was rejected by `hermit-loader`.
    Image(hermit_loader::Error),
    /// No RAM range below 4 GiB holds the kernel's memory (bytes needed).
    NoRoom(u64),
    /// A bug in the loader.
    Panic,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::StartInfo(e) => f.write_str(e.message()),
            Self::Bundle(e) => write!(f, "bad bundle: {e}"),
            Self::Image(e) => write!(f, "cannot load the image: {e}"),
            Self::NoRoom(n) => write!(f, "not enough memory below 4 GiB for the image ({n} bytes)"),
            Self::Panic => f.write_str("internal error (panic)"),
        }
    }
}

// The 32-bit PVH entry. QEMU's firmware enters it in flat 32-bit protected
// mode with paging off and EBX = physical address of the start info.
//
// Under a software KVM (as on the development machines) every instruction
// executed with paging off is emulated by the hypervisor, at microseconds
// each, so this part does as little as possible: the page directory for the
// first GiB is prebuilt data, `.bss` is not cleared (QEMU's ELF loader
// zero-fills it), and the 64-bit part extends the identity map to 4 GiB
// natively before calling `loader_main(start_info)` on the loader's stack.
core::arch::global_asm!(
    r#"
    .section .text.pvh_start32, "ax"
    .code32
    .global pvh_start32
pvh_start32:
    cli
    mov esi, ebx
    mov esp, offset boot_stack_top

    mov eax, offset boot_pdpt + 3
    mov dword ptr [boot_pml4], eax
    mov eax, offset boot_pd_low + 3
    mov dword ptr [boot_pdpt], eax

    mov eax, cr4
    or eax, 0x20
    mov cr4, eax
    mov eax, offset boot_pml4
    mov cr3, eax
    mov ecx, 0xc0000080
    rdmsr
    or eax, 0x900
    wrmsr
    mov eax, cr0
    and eax, 0x9fffffff
    or eax, 0x80010001
    mov cr0, eax

    lgdt [boot_gdtr]
    mov eax, offset pvh_start64
    push 0x08
    push eax
    retf

    .code64
pvh_start64:
    mov eax, 0x10
    mov ds, eax
    mov es, eax
    mov ss, eax
    xor eax, eax
    mov fs, eax
    mov gs, eax
    cld

    lea rdi, [rip + boot_pd_high]
    mov rax, 0x40000083
    mov ecx, 3 * 512
2:  mov qword ptr [rdi], rax
    add rax, 0x200000
    add rdi, 8
    loop 2b
    lea rax, [rip + boot_pd_high + 3]
    mov qword ptr [rip + boot_pdpt + 8], rax
    add rax, 4096
    mov qword ptr [rip + boot_pdpt + 16], rax
    add rax, 4096
    mov qword ptr [rip + boot_pdpt + 24], rax

    mov edi, esi
    call loader_main
    ud2

    .section .rodata.boot_gdt, "a"
    .balign 8
boot_gdt:
    .quad 0
    .quad 0x00af9a000000ffff
    .quad 0x00cf92000000ffff
boot_gdtr:
    .word 23
    .quad boot_gdt

    .section .data.boot_pd_low, "aw"
    .balign 4096
boot_pd_low:
    .set page, 0
    .rept 512
    .quad (page << 21) | 0x83
    .set page, page + 1
    .endr

    .section .bss.boot, "aw", @nobits
    .balign 4096
boot_pml4:
    .skip 4096
boot_pdpt:
    .skip 4096
boot_pd_high:
    .skip 3 * 4096
boot_stack:
    .skip 64 * 1024
boot_stack_top:

    .section .note.pvh, "a", @note
    .balign 4
    .long 4
    .long 8
    .long 18
    .asciz "Xen"
    .balign 4
    .quad pvh_start32
"#
);

/// Bytes the loader's code, data, stack and temporary page tables occupy.
fn loader_range() -> Range<u64> {
    unsafe extern "C" {
        // Defined by `link.ld`; only their addresses are used.
        static __loader_start: u8;
        static __loader_end: u8;
    }
    (&raw const __loader_start) as u64..(&raw const __loader_end) as u64
}

/// Rust entry, called by the stub in 64-bit mode with `start_info` = `EBX`.
#[unsafe(no_mangle)]
extern "C" fn loader_main(start_info: u32) -> ! {
    match prepare(start_info) {
        Ok(handoff) => enter(&handoff),
        Err(e) => console::fail(e),
    }
}

/// Everything [`enter`] needs to start the kernel.
struct Handoff {
    cr3: u64,
    gdt: GdtPointer,
    stack_top: u64,
    boot_info: u64,
    entry: u64,
}

/// Loads the image and writes the kernel's boot data.
fn prepare(start_info: u32) -> Result<Handoff, Failure> {
    // SAFETY: the entry stub identity-maps [0, 4 GiB) and passes EBX through.
    let params = unsafe { pvh::read(start_info) }.map_err(Failure::StartInfo)?;
    let bundle_range = params.bundle.paddr..params.bundle.paddr.saturating_add(params.bundle.size);
    if bundle_range.start == 0 || bundle_range.end > FOUR_GIB {
        return Err(Failure::Bundle("the initrd does not lie in the low 4 GiB"));
    }
    // SAFETY: the firmware loaded the module there (identity-mapped, below
    // 4 GiB); nothing writes to it while this borrow lives, because the
    // kernel's memory is placed outside `bundle_range` (`busy` below).
    let bundle = unsafe {
        slice::from_raw_parts(bundle_range.start as *const u8, params.bundle.size as usize)
    };
    let contents = bundle::parse(bundle).map_err(Failure::Bundle)?;
    let image = Image::parse(contents.image).map_err(Failure::Image)?;

    let mut ram = [const { 0..0 }; pvh::MAX_MEMMAP];
    let mut ram_len = 0;
    for e in params.memmap[..params.memmap_len]
        .iter()
        .filter(|e| e.kind == pvh::MEMMAP_RAM && e.size > 0)
    {
        ram[ram_len] = e.addr..e.addr.saturating_add(e.size);
        ram_len += 1;
    }
    let ram = &ram[..ram_len];
    let ram_end = ram.iter().map(|r| r.end).max().unwrap_or(0);

    // The kernel block: image, page tables, GDT + boot info + strings, stack.
    let image_size = align_up(image.mem_size(), PAGE);
    let tables_size = page_tables_size(ram_end);
    let info_size = GDT_AREA + boot_info_size(contents.cmdline, contents.args(), contents.env());
    let block_size = image_size + tables_size + align_up(info_size, PAGE) + BOOT_STACK_SIZE;
    let busy = [loader_range(), bundle_range.clone()];
    let base = match image.fixed_base() {
        Some(base) => fits(ram, &busy, base, block_size).then_some(base),
        None => place(ram, &busy, block_size, image.align().max(HUGE_PAGE)),
    }
    .ok_or(Failure::NoRoom(block_size))?;
    let block = base..base + block_size;

    // SAFETY: `block` is RAM below 4 GiB (identity-mapped) that overlaps
    // neither the loader (code, data, stack) nor the bundle (`place`/`fits`
    // check `busy`), so this is the only reference to it.
    let dest = unsafe { slice::from_raw_parts_mut(base as *mut u8, block_size as usize) };
    let loaded = image
        .load(dest, base, base, Dest::Dirty)
        .map_err(Failure::Image)?;
    let tables = base + image_size;
    let cr3 = write_page_tables(dest, base, tables, ram_end).map_err(Failure::Image)?;
    let gdt_at = tables + tables_size;
    let gdt = write_gdt(dest, base, gdt_at).map_err(Failure::Image)?;

    // The loader and the bundle are free once the kernel runs (the strings
    // are copied next to the boot info); page 0 stays out so that no
    // allocation is ever at the null address.
    let reserved = [0..PAGE, block.clone()];
    let mut memory = [MemoryRegion::EMPTY; MAX_MEMORY_REGIONS];
    let count = build_memory_map(ram, &reserved, &mut memory).map_err(Failure::Image)?;
    let boot_params = BootParams {
        platform: Platform::Qemu,
        cpu_count: contents.cpu_count.max(1),
        tsc_khz: 0,
        boot_time_ns: contents.boot_time_ns,
        image: &loaded,
        memory: &memory[..count],
        acpi_rsdp: params.rsdp,
        // Under QEMU the kernel finds the region on PCI (length 0).
        isle: hermit_interface::IsleInfo {
            index: contents.isle,
            ..hermit_interface::IsleInfo::NONE
        },
    };
    let info = write_boot_info(
        dest,
        base,
        gdt_at + GDT_AREA,
        &boot_params,
        contents.cmdline,
        contents.args(),
        contents.env(),
    )
    .map_err(Failure::Image)?;
    Ok(Handoff {
        cr3,
        gdt,
        stack_top: block.end,
        boot_info: info.addr,
        entry: loaded.entry,
    })
}

/// Switches to the kernel's page tables, GDT and stack and jumps to its entry.
fn enter(h: &Handoff) -> ! {
    #[repr(C, packed)]
    struct Gdtr {
        limit: u16,
        base: u64,
    }
    let gdtr = Gdtr {
        limit: h.gdt.limit,
        base: h.gdt.base,
    };
    // SAFETY: `prepare` wrote complete identity-mapping page tables (covering
    // this code, which lies below 4 GiB), a GDT with the contract's selectors,
    // the boot info and a reserved stack; from here on only the kernel runs.
    unsafe {
        core::arch::asm!(
            "mov cr3, rcx",
            "lgdt [rdx]",
            "push {code}",
            "lea rax, [rip + 2f]",
            "push rax",
            "retfq",
            "2:",
            "mov eax, {data}",
            "mov ds, eax",
            "mov es, eax",
            "mov ss, eax",
            "mov rsp, r8",
            "push 2",
            "popfq",
            "jmp r9",
            code = const GDT_KERNEL_CODE as u64,
            data = const GDT_KERNEL_DATA as u32,
            in("rcx") h.cr3,
            in("rdx") &raw const gdtr,
            in("r8") h.stack_top,
            in("r9") h.entry,
            in("rdi") h.boot_info,
            options(noreturn),
        )
    }
}

/// Whether `[base, base + size)` lies in one RAM range and misses `busy`.
fn fits(ram: &[Range<u64>], busy: &[Range<u64>], base: u64, size: u64) -> bool {
    let Some(end) = base.checked_add(size) else {
        return false;
    };
    end <= FOUR_GIB
        && ram.iter().any(|r| r.start <= base && end <= r.end)
        && !busy.iter().any(|b| b.start < end && base < b.end)
}

/// The lowest `align`-aligned base `>= 2 MiB` where [`fits`] holds.
fn place(ram: &[Range<u64>], busy: &[Range<u64>], size: u64, align: u64) -> Option<u64> {
    let mut best: Option<u64> = None;
    for r in ram {
        let mut base = align_up(r.start.max(HUGE_PAGE), align);
        while base
            .checked_add(size)
            .is_some_and(|end| end <= r.end.min(FOUR_GIB))
        {
            let end = base + size;
            match busy.iter().find(|b| b.start < end && base < b.end) {
                Some(b) => base = align_up(b.end, align),
                None => {
                    best = Some(best.map_or(base, |b| b.min(base)));
                    break;
                }
            }
        }
    }
    best
}

/// Rounds `x` up to a multiple of `align` (a power of two), saturating.
const fn align_up(x: u64, align: u64) -> u64 {
    match x.checked_add(align - 1) {
        Some(v) => v & !(align - 1),
        None => !(align - 1),
    }
}

/// `object` (under `hermit-loader`) links the `alloc` crate, which demands a
/// global allocator even though nothing here allocates; this one always fails.
struct NoAlloc;

// SAFETY: returning null is a valid answer to every allocation request, and
// `dealloc` is never reached because no allocation ever succeeds.
unsafe impl core::alloc::GlobalAlloc for NoAlloc {
    unsafe fn alloc(&self, _layout: core::alloc::Layout) -> *mut u8 {
        core::ptr::null_mut()
    }

    unsafe fn dealloc(&self, _ptr: *mut u8, _layout: core::alloc::Layout) {}
}

#[global_allocator]
static ALLOCATOR: NoAlloc = NoAlloc;

#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    console::fail(Failure::Panic)
}
