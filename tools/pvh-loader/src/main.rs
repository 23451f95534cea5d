//! `pvh-loader`: the first code QEMU runs for a hermit image. QEMU boots it
//! with `-kernel pvh-loader -initrd <bundle>` through the PVH entry note; it
//! switches to long mode, finds the bundle (an `hermit_interface::bundle`),
//! loads and relocates the application ELF with `hermit-loader`, builds the
//! kernel's page tables, GDT, boot stack, memory map and `BootInfo`, and jumps
//! to the kernel entry as `hermit_interface` describes.
//!
//! It is a fixed-address executable at 1 MiB (see `link.ld` and `build.rs`),
//! a few KiB large, with no allocator and no formatting machinery. It is not a
//! general multiboot/Linux loader and does not start other CPUs. On any error
//! it prints one line on the stderr port, writes an exit record with status 1
//! and leaves through `isa-debug-exit`.
#![no_std]
#![no_main]

mod console;
mod pvh;

use hermit_interface::qemu;

// The 32-bit PVH entry. QEMU's firmware enters it in flat 32-bit protected
// mode with paging off and EBX = physical address of the start info. It
// identity-maps [0, 4 GiB) with 2 MiB pages, enables long mode and calls
// `loader_main(start_info)` on the loader's own stack.
core::arch::global_asm!(
    r#"
    .section .text.pvh_start32, "ax"
    .code32
    .global pvh_start32
pvh_start32:
    cli
    cld
    mov esi, ebx

    mov edi, offset __bss_start
    mov ecx, offset __bss_end
    sub ecx, edi
    xor eax, eax
    rep stosb
    mov esp, offset boot_stack_top

    mov eax, offset boot_pdpt
    or eax, 3
    mov dword ptr [boot_pml4], eax

    mov edi, offset boot_pdpt
    mov eax, offset boot_pd
    or eax, 3
    mov ecx, 4
2:  mov dword ptr [edi], eax
    add eax, 4096
    add edi, 8
    loop 2b

    mov edi, offset boot_pd
    mov eax, 0x83
    mov ecx, 2048
3:  mov dword ptr [edi], eax
    add eax, 0x200000
    add edi, 8
    loop 3b

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

    .section .bss.boot, "aw", @nobits
    .balign 4096
boot_pml4:
    .skip 4096
boot_pdpt:
    .skip 4096
boot_pd:
    .skip 4 * 4096
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

/// Rust entry, called by the stub in 64-bit mode with `start_info` = `EBX`.
#[unsafe(no_mangle)]
extern "C" fn loader_main(start_info: u32) -> ! {
    // SAFETY: the entry stub identity-maps [0, 4 GiB) and passes EBX through.
    let params = match unsafe { pvh::read(start_info) } {
        Ok(p) => p,
        Err(e) => console::fail(e.message(), None),
    };
    let port = qemu::STDOUT_PORT;
    console::write(port, b"bundle ");
    console::write_hex(port, params.bundle.paddr);
    console::write(port, b" ");
    console::write_hex(port, params.bundle.size);
    console::write(port, b"\n");
    for e in &params.memmap[..params.memmap_len] {
        console::write_hex(port, e.addr);
        console::write(port, b" ");
        console::write_hex(port, e.size);
        console::write(port, b" ");
        console::write_hex(port, u64::from(e.kind));
        console::write(port, b"\n");
    }
    console::fail("not finished", Some(start_info.into()))
}

#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    console::fail("internal error (panic)", None)
}
