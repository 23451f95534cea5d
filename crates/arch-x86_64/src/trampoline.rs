//! The real-mode trampoline that brings an application processor from its
//! STARTUP IPI (16-bit real mode at a page below 1 MiB) to the kernel's
//! 64-bit AP entry, in the state the kernel entry contract describes for
//! APs: long mode, paging with the given `CR3`, `CR0.WP`, `EFER.NXE`,
//! interrupts off, `RFLAGS = 2`, a GDT with 64-bit code at `0x08` and data
//! at `0x10`, `RSP` = stack top, `RDI` = argument, `RSI` = CPU index.
//!
//! The code is assembled into the kernel image as data and copied to the
//! startup page by [`write`], which patches in the page's address (GDT base
//! and the two far jumps) and the [`ApStart`] parameters. The code reads its
//! data relative to the page base (`DS` in real mode, `EBX` later), so the
//! trampoline runs from any page below 1 MiB.
//!
//! The trampoline is used under QEMU, where the kernel itself sends INIT and
//! STARTUP; uhyve starts APs directly in long mode (`StartCpu` hypercall).

// Layout (offsets from the start; the numbers are used as constants in the
// code because the assembler cannot subtract labels inside a memory operand):
// 0x00 code entry (`cli`, jump over the data), 0x08 GDT (4 entries),
// 0x28 GDT pointer, 0x30 CR3, 0x38 entry, 0x40 stack top, 0x48 argument,
// 0x50 CPU index, 0x58 real-mode code. The two far jumps carry absolute
// targets that `write` patches.
core::arch::global_asm!(
    r#"
    .pushsection .rodata.hermit_ap_trampoline, "a"
    .balign 16
    .global hermit_ap_trampoline_start
hermit_ap_trampoline_start:
    .code16
    cli
    jmp hermit_tramp_real
    .org 0x08
hermit_tramp_gdt:
    .quad 0
    .quad 0x00af9b000000ffff
    .quad 0x00cf93000000ffff
    .quad 0x00cf9b000000ffff
hermit_tramp_gdtr:
    .word 31
    .long 0
    .org 0x30
hermit_tramp_cr3:
    .quad 0
hermit_tramp_entry:
    .quad 0
hermit_tramp_stack:
    .quad 0
hermit_tramp_arg:
    .quad 0
hermit_tramp_cpu:
    .long 0
    .org 0x58
hermit_tramp_real:
    cld
    xor ebx, ebx
    mov bx, cs
    mov ds, bx
    shl ebx, 4
    lgdt [0x28]
    mov eax, cr0
    or al, 1
    mov cr0, eax
    // jmp far 0x18:<page + pm32>
    .byte 0x66, 0xea
hermit_tramp_far32:
    .long 0
    .word 0x18

    .code32
hermit_tramp_pm32:
    mov eax, 0x10
    mov ds, eax
    mov es, eax
    mov ss, eax
    mov eax, cr4
    or eax, 0x20
    mov cr4, eax
    mov eax, [ebx + 0x30]
    mov cr3, eax
    mov ecx, 0xc0000080
    rdmsr
    or eax, 0x900
    wrmsr
    mov eax, cr0
    and eax, 0x9fffffff
    or eax, 0x80010001
    mov cr0, eax
    // jmp far 0x08:<page + lm64>
    .byte 0xea
hermit_tramp_far64:
    .long 0
    .word 0x08

    .code64
hermit_tramp_lm64:
    mov ebx, ebx
    mov eax, 0x10
    mov ds, eax
    mov es, eax
    mov ss, eax
    xor eax, eax
    mov fs, eax
    mov gs, eax
    mov rsp, [rbx + 0x40]
    mov rdi, [rbx + 0x48]
    mov esi, [rbx + 0x50]
    mov rax, [rbx + 0x38]
    push 2
    popfq
    xor ebp, ebp
    jmp rax
    .global hermit_ap_trampoline_end
hermit_ap_trampoline_end:
    .popsection
"#
);

unsafe extern "C" {
    // Labels of the assembly above; only their addresses are used.
    static hermit_ap_trampoline_start: u8;
    static hermit_ap_trampoline_end: u8;
    static hermit_tramp_far32: u8;
    static hermit_tramp_pm32: u8;
    static hermit_tramp_far64: u8;
    static hermit_tramp_lm64: u8;
    static hermit_tramp_gdt: u8;
    static hermit_tramp_gdtr: u8;
    static hermit_tramp_cr3: u8;
    static hermit_tramp_entry: u8;
    static hermit_tramp_stack: u8;
    static hermit_tramp_arg: u8;
    static hermit_tramp_cpu: u8;
}

/// Where the AP goes once in long mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ApStart {
    /// `CR3`: the PML4's physical address; must lie below 4 GiB (it is
    /// loaded in 32-bit mode).
    pub cr3: u64,
    /// The 64-bit entry point (identity-mapped).
    pub entry: u64,
    /// Initial `RSP`, 16-byte aligned.
    pub stack_top: u64,
    /// Initial `RDI`.
    pub arg: u64,
    /// Initial `RSI`: the CPU's index.
    pub cpu: u32,
}

/// Why the trampoline cannot be written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TrampolineError {
    /// The page is not 4 KiB aligned or the code would not end below 1 MiB.
    BadPage(u64),
    /// The destination buffer is smaller than the trampoline.
    TooSmall {
        /// Bytes needed.
        needed: usize,
    },
    /// `CR3` above 4 GiB cannot be loaded from 32-bit mode.
    Cr3Above4GiB(u64),
    /// The stack top is not 16-byte aligned.
    MisalignedStack(u64),
}

impl core::fmt::Display for TrampolineError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::BadPage(p) => write!(f, "trampoline page {p:#x} is not a 4 KiB page below 1 MiB"),
            Self::TooSmall { needed } => write!(f, "the trampoline needs {needed} bytes"),
            Self::Cr3Above4GiB(c) => write!(f, "CR3 {c:#x} lies above 4 GiB"),
            Self::MisalignedStack(s) => write!(f, "AP stack top {s:#x} is not 16-byte aligned"),
        }
    }
}

/// Offsets of the patched fields from the start of the trampoline.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    /// Total size in bytes.
    pub size: usize,
    /// The 32-bit offset of the 16→32-bit far jump (absolute address).
    pub far32: usize,
    /// The 32-bit entry the far jump goes to (relative).
    pub pm32: usize,
    /// The 32-bit offset of the 32→64-bit far jump (absolute address).
    pub far64: usize,
    /// The 64-bit code the second far jump goes to (relative).
    pub lm64: usize,
    /// The trampoline's GDT.
    pub gdt: usize,
    /// The GDT pointer (limit u16, base u32).
    pub gdtr: usize,
    /// `ApStart::cr3` (u64).
    pub cr3: usize,
    /// `ApStart::entry` (u64).
    pub entry: usize,
    /// `ApStart::stack_top` (u64).
    pub stack: usize,
    /// `ApStart::arg` (u64).
    pub arg: usize,
    /// `ApStart::cpu` (u32).
    pub cpu: usize,
}

/// The trampoline's machine code as assembled (unpatched).
pub fn code() -> &'static [u8] {
    let start = &raw const hermit_ap_trampoline_start;
    let end = &raw const hermit_ap_trampoline_end;
    let len = end as usize - start as usize;
    // SAFETY: both labels delimit one block of bytes in `.rodata` of this
    // image, start before end.
    unsafe { core::slice::from_raw_parts(start, len) }
}

/// The offsets of the fields [`write`] patches.
pub fn layout() -> Layout {
    let start = &raw const hermit_ap_trampoline_start as usize;
    let off = |p: *const u8| p as usize - start;
    Layout {
        size: code().len(),
        far32: off(&raw const hermit_tramp_far32),
        pm32: off(&raw const hermit_tramp_pm32),
        far64: off(&raw const hermit_tramp_far64),
        lm64: off(&raw const hermit_tramp_lm64),
        gdt: off(&raw const hermit_tramp_gdt),
        gdtr: off(&raw const hermit_tramp_gdtr),
        cr3: off(&raw const hermit_tramp_cr3),
        entry: off(&raw const hermit_tramp_entry),
        stack: off(&raw const hermit_tramp_stack),
        arg: off(&raw const hermit_tramp_arg),
        cpu: off(&raw const hermit_tramp_cpu),
    }
}

/// Writes the trampoline for the STARTUP page `page` (the physical address
/// `dest` will be copied to, or is) into `dest`, patched for `start`.
pub fn write(dest: &mut [u8], page: u64, start: &ApStart) -> Result<(), TrampolineError> {
    let layout = layout();
    if !page.is_multiple_of(4096) || page + layout.size as u64 > 0x10_0000 {
        return Err(TrampolineError::BadPage(page));
    }
    if dest.len() < layout.size {
        return Err(TrampolineError::TooSmall {
            needed: layout.size,
        });
    }
    if start.cr3 >= 1 << 32 {
        return Err(TrampolineError::Cr3Above4GiB(start.cr3));
    }
    if !start.stack_top.is_multiple_of(16) {
        return Err(TrampolineError::MisalignedStack(start.stack_top));
    }
    dest[..layout.size].copy_from_slice(code());
    // `page` < 1 MiB, so these fit in 32 bits.
    let abs = |offset: usize| (page as u32 + offset as u32).to_le_bytes();
    let mut put = |at: usize, bytes: &[u8]| dest[at..at + bytes.len()].copy_from_slice(bytes);
    put(layout.far32, &abs(layout.pm32));
    put(layout.far64, &abs(layout.lm64));
    put(layout.gdtr + 2, &abs(layout.gdt));
    put(layout.cr3, &start.cr3.to_le_bytes());
    put(layout.entry, &start.entry.to_le_bytes());
    put(layout.stack, &start.stack_top.to_le_bytes());
    put(layout.arg, &start.arg.to_le_bytes());
    put(layout.cpu, &start.cpu.to_le_bytes());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn start() -> ApStart {
        ApStart {
            cr3: 0x20_3000,
            entry: 0x40_1234,
            stack_top: 0x1234_5670,
            arg: 0xdead_beef_0000,
            cpu: 3,
        }
    }

    fn u32_at(b: &[u8], at: usize) -> u32 {
        u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
    }

    fn u64_at(b: &[u8], at: usize) -> u64 {
        u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
    }

    #[test]
    fn layout_is_sane() {
        let l = layout();
        assert!(l.size < 4096, "must fit one page: {l:?}");
        assert_eq!(code()[0], 0xfa, "starts with cli");
        // The far jump: 0x66 0xea <offset32> <selector 0x18>.
        assert_eq!(&code()[l.far32 - 2..l.far32], &[0x66, 0xea]);
        assert_eq!(&code()[l.far32 + 4..l.far32 + 6], &[0x18, 0x00]);
        assert_eq!(l.pm32, l.far32 + 6, "protected mode code follows the jump");
        assert_eq!(code()[l.far64 - 1], 0xea);
        assert_eq!(&code()[l.far64 + 4..l.far64 + 6], &[0x08, 0x00]);
        assert_eq!(l.lm64, l.far64 + 6, "long mode code follows the jump");
        // The offsets the code uses as constants.
        assert_eq!(
            (l.gdt, l.gdtr, l.cr3, l.entry, l.stack, l.arg, l.cpu),
            (0x08, 0x28, 0x30, 0x38, 0x40, 0x48, 0x50)
        );
        assert_eq!(l.gdt % 8, 0);
        assert_eq!(l.cr3 % 8, 0);
        for field in [l.entry, l.stack, l.arg] {
            assert_eq!(field % 8, 0);
        }
        assert!(l.cpu + 4 <= l.size);
        // GDT: 64-bit code at 0x08, data at 0x10, 32-bit code at 0x18.
        assert_eq!(u64_at(code(), l.gdt + 8), 0x00af_9b00_0000_ffff);
        assert_eq!(u64_at(code(), l.gdt + 16), 0x00cf_9300_0000_ffff);
        assert_eq!(u64_at(code(), l.gdt + 24), 0x00cf_9b00_0000_ffff);
        assert_eq!(u16::from_le_bytes([code()[l.gdtr], code()[l.gdtr + 1]]), 31);
    }

    #[test]
    fn write_patches_addresses_and_parameters() {
        let l = layout();
        let mut page = vec![0u8; 4096];
        write(&mut page, 0x8000, &start()).unwrap();
        assert_eq!(u32_at(&page, l.far32), 0x8000 + l.pm32 as u32);
        assert_eq!(u32_at(&page, l.far64), 0x8000 + l.lm64 as u32);
        assert_eq!(u32_at(&page, l.gdtr + 2), 0x8000 + l.gdt as u32);
        assert_eq!(u64_at(&page, l.cr3), 0x20_3000);
        assert_eq!(u64_at(&page, l.entry), 0x40_1234);
        assert_eq!(u64_at(&page, l.stack), 0x1234_5670);
        assert_eq!(u64_at(&page, l.arg), 0xdead_beef_0000);
        assert_eq!(u32_at(&page, l.cpu), 3);
        // The code itself is unchanged apart from the patched fields.
        assert_eq!(&page[..l.gdtr], &code()[..l.gdtr]);
        assert_eq!(&page[l.pm32..l.far64], &code()[l.pm32..l.far64]);
        assert_eq!(&page[l.lm64..l.size], &code()[l.lm64..l.size]);
    }

    #[test]
    fn write_rejects_bad_input() {
        let mut page = vec![0u8; 4096];
        assert_eq!(
            write(&mut page, 0x8010, &start()),
            Err(TrampolineError::BadPage(0x8010))
        );
        assert_eq!(
            write(&mut page, 0x10_0000, &start()),
            Err(TrampolineError::BadPage(0x10_0000))
        );
        assert!(matches!(
            write(&mut page[..16], 0x8000, &start()),
            Err(TrampolineError::TooSmall { .. })
        ));
        let high = ApStart {
            cr3: 1 << 32,
            ..start()
        };
        assert_eq!(
            write(&mut page, 0x8000, &high),
            Err(TrampolineError::Cr3Above4GiB(1 << 32))
        );
        let crooked = ApStart {
            stack_top: 0x1008,
            ..start()
        };
        assert_eq!(
            write(&mut page, 0x8000, &crooked),
            Err(TrampolineError::MisalignedStack(0x1008))
        );
    }
}
