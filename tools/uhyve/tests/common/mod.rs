//! Tiny guest images for hypervisor tests: a hand-assembler for the few
//! x86_64 instructions they need and a static-PIE ELF writer.
#![allow(dead_code, reason = "each test binary uses a different subset")]

pub mod smp;

use std::path::PathBuf;

use hermit_interface::hypercall::Nr;

/// Where the code starts in the image (link address = file offset).
pub const CODE: u64 = 0x1000;
/// Where the data area starts; the image is one RWX segment `[0, END)`.
pub const DATA: u64 = 0x2000;
/// End of the image.
pub const END: u64 = 0x4000;

/// General-purpose registers by their encoding number.
#[derive(Clone, Copy)]
pub enum Reg {
    Rax = 0,
    Rcx = 1,
    Rdx = 2,
    Rbx = 3,
    Rsi = 6,
    Rdi = 7,
}

/// A tiny guest: machine code at [`CODE`], data at [`DATA`], and
/// `R_X86_64_RELATIVE` relocations of 8-byte slots in the data.
pub struct Guest {
    code: Vec<u8>,
    data: Vec<u8>,
    relocs: Vec<(u64, u64)>,
}

impl Default for Guest {
    fn default() -> Self {
        Self::new()
    }
}

impl Guest {
    /// An empty guest.
    pub fn new() -> Self {
        Self {
            code: Vec::new(),
            data: vec![0; (END - DATA) as usize],
            relocs: Vec::new(),
        }
    }

    /// The link address of the next instruction.
    pub fn here(&self) -> u64 {
        CODE + self.code.len() as u64
    }

    /// Stores `bytes` at data address `at` (link address).
    pub fn data(&mut self, at: u64, bytes: &[u8]) -> &mut Self {
        let i = (at - DATA) as usize;
        self.data[i..i + bytes.len()].copy_from_slice(bytes);
        self
    }

    /// Makes the 8 bytes at `at` hold the runtime address of `target`.
    pub fn pointer(&mut self, at: u64, target: u64) -> &mut Self {
        self.relocs.push((at, target));
        self
    }

    /// `lea reg, [rip + (target - next)]`.
    pub fn lea(&mut self, reg: Reg, target: u64) -> &mut Self {
        let next = self.here() + 7;
        let disp = (target as i64 - next as i64) as i32;
        self.code
            .extend_from_slice(&[0x48, 0x8d, ((reg as u8) << 3) | 5]);
        self.code.extend_from_slice(&disp.to_le_bytes());
        self
    }

    /// `movabs reg, imm`.
    pub fn mov_imm(&mut self, reg: Reg, imm: u64) -> &mut Self {
        self.code.extend_from_slice(&[0x48, 0xb8 + reg as u8]);
        self.code.extend_from_slice(&imm.to_le_bytes());
        self
    }

    /// `mov [base + disp], src` (64-bit).
    pub fn store(&mut self, base: Reg, disp: i8, src: Reg) -> &mut Self {
        self.code.extend_from_slice(&[
            0x48,
            0x89,
            0x40 | ((src as u8) << 3) | base as u8,
            disp as u8,
        ]);
        self
    }

    /// `mov dst, [base + disp]` (64-bit).
    pub fn load(&mut self, dst: Reg, base: Reg, disp: i8) -> &mut Self {
        self.code.extend_from_slice(&[
            0x48,
            0x8b,
            0x40 | ((dst as u8) << 3) | base as u8,
            disp as u8,
        ]);
        self
    }

    /// `mov dst, rsp`.
    pub fn mov_from_rsp(&mut self, dst: Reg) -> &mut Self {
        self.code.extend_from_slice(&[0x48, 0x89, 0xe0 | dst as u8]);
        self
    }

    /// `mov dx, port; out dx, eax`.
    pub fn out(&mut self, port: u16) -> &mut Self {
        self.code.extend_from_slice(&[0x66, 0xba]);
        self.code.extend_from_slice(&port.to_le_bytes());
        self.code.push(0xef);
        self
    }

    /// `mov dx, port; out dx, al` (an 8-bit out).
    pub fn out8(&mut self, port: u16) -> &mut Self {
        self.code.extend_from_slice(&[0x66, 0xba]);
        self.code.extend_from_slice(&port.to_le_bytes());
        self.code.push(0xee);
        self
    }

    /// Issues hypercall `nr` with the parameter block at data address `param`.
    pub fn hypercall(&mut self, nr: Nr, param: u64) -> &mut Self {
        self.lea(Reg::Rax, param).out(nr.port())
    }

    /// Exits with the status stored at data address `param` (4 bytes).
    pub fn exit_with(&mut self, param: u64) -> &mut Self {
        self.hypercall(Nr::Exit, param).hlt()
    }

    /// Exits with `status` (uses the Exit block at `param`).
    pub fn exit(&mut self, param: u64, status: i32) -> &mut Self {
        self.data(param, &status.to_le_bytes()).exit_with(param)
    }

    /// `hlt`.
    pub fn hlt(&mut self) -> &mut Self {
        self.code.push(0xf4);
        self
    }

    /// `ud2`.
    pub fn ud2(&mut self) -> &mut Self {
        self.code.extend_from_slice(&[0x0f, 0x0b]);
        self
    }

    /// `mov dst, src` (64-bit).
    pub fn mov(&mut self, dst: Reg, src: Reg) -> &mut Self {
        self.code
            .extend_from_slice(&[0x48, 0x89, 0xc0 | ((src as u8) << 3) | dst as u8]);
        self
    }

    /// `add dst, src` (64-bit).
    pub fn add(&mut self, dst: Reg, src: Reg) -> &mut Self {
        self.code
            .extend_from_slice(&[0x48, 0x01, 0xc0 | ((src as u8) << 3) | dst as u8]);
        self
    }

    /// `sub dst, src` (64-bit).
    pub fn sub(&mut self, dst: Reg, src: Reg) -> &mut Self {
        self.code
            .extend_from_slice(&[0x48, 0x29, 0xc0 | ((src as u8) << 3) | dst as u8]);
        self
    }

    /// `shl reg, n` (64-bit).
    pub fn shl(&mut self, reg: Reg, n: u8) -> &mut Self {
        self.code
            .extend_from_slice(&[0x48, 0xc1, 0xe0 | reg as u8, n]);
        self
    }

    /// `shr reg, n` (64-bit).
    pub fn shr(&mut self, reg: Reg, n: u8) -> &mut Self {
        self.code
            .extend_from_slice(&[0x48, 0xc1, 0xe8 | reg as u8, n]);
        self
    }

    /// `cmp reg, imm8` (sign-extended, 64-bit).
    pub fn cmp_imm(&mut self, reg: Reg, imm: i8) -> &mut Self {
        self.code
            .extend_from_slice(&[0x48, 0x83, 0xf8 | reg as u8, imm as u8]);
        self
    }

    /// `lock inc qword [base]`.
    pub fn lock_inc(&mut self, base: Reg) -> &mut Self {
        self.code.extend_from_slice(&[0xf0, 0x48, 0xff, base as u8]);
        self
    }

    /// `mov dword [base], imm32`.
    pub fn store32_imm(&mut self, base: Reg, imm: u32) -> &mut Self {
        self.code.extend_from_slice(&[0xc7, base as u8]);
        self.code.extend_from_slice(&imm.to_le_bytes());
        self
    }

    /// `push reg`.
    pub fn push(&mut self, reg: Reg) -> &mut Self {
        self.code.push(0x50 + reg as u8);
        self
    }

    /// `pop reg`.
    pub fn pop(&mut self, reg: Reg) -> &mut Self {
        self.code.push(0x58 + reg as u8);
        self
    }

    /// `cpuid`.
    pub fn cpuid(&mut self) -> &mut Self {
        self.code.extend_from_slice(&[0x0f, 0xa2]);
        self
    }

    /// `rdtsc` combined into `rax` (clobbers `rdx`).
    pub fn rdtsc(&mut self) -> &mut Self {
        self.code.extend_from_slice(&[0x0f, 0x31]);
        self.shl(Reg::Rdx, 32).raw(&[0x48, 0x09, 0xd0]) // or rax, rdx
    }

    /// `mov reg, cr3`.
    pub fn read_cr3(&mut self, reg: Reg) -> &mut Self {
        self.code.extend_from_slice(&[0x0f, 0x20, 0xd8 | reg as u8]);
        self
    }

    /// `pause`.
    pub fn pause(&mut self) -> &mut Self {
        self.code.extend_from_slice(&[0xf3, 0x90]);
        self
    }

    /// `cli`.
    pub fn cli(&mut self) -> &mut Self {
        self.code.push(0xfa);
        self
    }

    /// `sti`.
    pub fn sti(&mut self) -> &mut Self {
        self.code.push(0xfb);
        self
    }

    /// `jmp target` (rel32).
    pub fn jmp(&mut self, target: u64) -> &mut Self {
        let rel = (target as i64 - (self.here() as i64 + 5)) as i32;
        self.code.push(0xe9);
        self.code.extend_from_slice(&rel.to_le_bytes());
        self
    }

    /// `jne target` (rel32).
    pub fn jne(&mut self, target: u64) -> &mut Self {
        self.jcc(0x85, target)
    }

    /// `je target` (rel32).
    pub fn je(&mut self, target: u64) -> &mut Self {
        self.jcc(0x84, target)
    }

    /// `jae target` (rel32; unsigned `>=` after `cmp`).
    pub fn jae(&mut self, target: u64) -> &mut Self {
        self.jcc(0x83, target)
    }

    fn jcc(&mut self, op: u8, target: u64) -> &mut Self {
        let rel = (target as i64 - (self.here() as i64 + 6)) as i32;
        self.code.extend_from_slice(&[0x0f, op]);
        self.code.extend_from_slice(&rel.to_le_bytes());
        self
    }

    /// Pads with `nop`s up to link address `at` (code placed at a fixed
    /// address can be jumped to before it is written).
    pub fn pad_to(&mut self, at: u64) -> &mut Self {
        assert!(self.here() <= at, "code runs past {at:#x}");
        while self.here() < at {
            self.code.push(0x90);
        }
        self
    }

    /// Raw machine code.
    pub fn raw(&mut self, bytes: &[u8]) -> &mut Self {
        self.code.extend_from_slice(bytes);
        self
    }

    /// The ELF file: an `ET_DYN` image with one RWX `PT_LOAD` `[0, END)`
    /// holding headers, code and data, plus `PT_DYNAMIC`; the RELA table and
    /// the dynamic section occupy the last 0x800 bytes of the data area.
    pub fn elf(&self) -> Vec<u8> {
        assert!(self.code.len() <= (DATA - CODE) as usize, "code too long");
        let mut f = vec![0u8; END as usize];
        // RELA table and dynamic section live in the last 0x800 bytes.
        let rela_at = END - 0x800;
        let dyn_at = END - 0x100;
        assert!(
            self.data[(rela_at - DATA) as usize..]
                .iter()
                .all(|&b| b == 0),
            "data too long"
        );
        f[CODE as usize..CODE as usize + self.code.len()].copy_from_slice(&self.code);
        f[DATA as usize..END as usize].copy_from_slice(&self.data);
        for (i, &(at, target)) in self.relocs.iter().enumerate() {
            let o = (rela_at + 24 * i as u64) as usize;
            f[o..o + 8].copy_from_slice(&at.to_le_bytes());
            f[o + 8..o + 16].copy_from_slice(&8u64.to_le_bytes()); // R_X86_64_RELATIVE
            f[o + 16..o + 24].copy_from_slice(&target.to_le_bytes());
        }
        let dynamic = [
            (7u64, rela_at),
            (8, 24 * self.relocs.len() as u64),
            (9, 24),
            (0, 0),
        ];
        for (i, (tag, val)) in dynamic.iter().enumerate() {
            let o = dyn_at as usize + 16 * i;
            f[o..o + 8].copy_from_slice(&tag.to_le_bytes());
            f[o + 8..o + 16].copy_from_slice(&val.to_le_bytes());
        }
        // ELF header.
        f[..8].copy_from_slice(b"\x7fELF\x02\x01\x01\x00");
        f[16..18].copy_from_slice(&3u16.to_le_bytes()); // ET_DYN
        f[18..20].copy_from_slice(&62u16.to_le_bytes()); // EM_X86_64
        f[20..24].copy_from_slice(&1u32.to_le_bytes());
        f[24..32].copy_from_slice(&CODE.to_le_bytes());
        f[32..40].copy_from_slice(&64u64.to_le_bytes());
        f[52..54].copy_from_slice(&64u16.to_le_bytes());
        f[54..56].copy_from_slice(&56u16.to_le_bytes());
        f[56..58].copy_from_slice(&2u16.to_le_bytes());
        let phdr = |f: &mut Vec<u8>, i: usize, kind: u32, off: u64, size: u64, align: u64| {
            let o = 64 + 56 * i;
            f[o..o + 4].copy_from_slice(&kind.to_le_bytes());
            f[o + 4..o + 8].copy_from_slice(&7u32.to_le_bytes());
            for (field, v) in [
                (8, off),
                (16, off),
                (24, off),
                (32, size),
                (40, size),
                (48, align),
            ] {
                f[o + field..o + field + 8].copy_from_slice(&v.to_le_bytes());
            }
        };
        phdr(&mut f, 0, 1, 0, END, 0x1000);
        phdr(&mut f, 1, 2, dyn_at, 16 * dynamic.len() as u64, 8);
        f
    }

    /// Writes the ELF file to a fresh temporary path named after `name`.
    pub fn write(&self, name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("uhyve-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        std::fs::write(&path, self.elf()).unwrap();
        path
    }
}

/// Returns `true` (after printing a loud SKIPPED line) when KVM is unusable.
pub fn skip_without_kvm(test: &str) -> bool {
    match uhyve::kvm_available() {
        Ok(()) => false,
        Err(reason) => {
            eprintln!("SKIPPED: {test}: {reason}");
            true
        }
    }
}

/// A config for `image` with small memory and no environment.
pub fn config(image: PathBuf) -> uhyve::Config {
    uhyve::Config {
        args: vec![image.display().to_string()],
        image,
        env: vec![],
        mem_size: 64 << 20,
        cpus: 1,
        pin: None,
        cmdline: String::new(),
        mounts: Vec::new(),
        profile: None,
        isle: None,
    }
}
