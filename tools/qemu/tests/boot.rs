//! Boot tests: run tiny hand-made guest images (and `hello`, when built)
//! through the PVH loader under QEMU. They build the loader and the apps
//! first, and print `SKIPPED: <reason>` and pass when QEMU is missing.

use std::mem::offset_of;
use std::path::{Path, PathBuf};
use std::time::Duration;

use hermit_interface::{BootInfo, PhysSlice, StringList};
use hermit_qemu::{Config, Outcome, Streams};

/// Machine code of the test kernel (GNU as, Intel syntax), loaded at link
/// address [`CODE`]. It checks `RSP % 16 == 0`, the boot-info magic, the
/// platform (QEMU) and that the loader applied its one `R_X86_64_RELATIVE`
/// relocation (the quadword at offset 8 must point to the string at offset
/// 16), pushes and pops on its stack, then writes "pvh ok\n" and the
/// arguments (one per line) to COM1, the command line to COM2, and exits with
/// `args.count` as status (exit record on COM3, then `isa-debug-exit`). A
/// failed check `n` prints `!n` on COM2 and exits with status `n`.
///
/// ```text
///     jmp start; .balign 8
/// slot: .quad 0                      # relocated to &msg
/// msg:  .asciz "pvh ok\n"
/// rec:  .asciz "\001hermit-exit:"
/// start:
///     mov r12, rdi; mov bl, 1; test rsp, 15; jnz fail
///     inc bl; movabs rax, "HRMTBOOT"; cmp [r12], rax; jne fail
///     inc bl; cmp dword ptr [r12 + 12], 2; jne fail
///     inc bl; lea rax, [rip + msg]; cmp [rip + slot], rax; jne fail
///     push rax; pop rax
///     mov rsi, [rip + slot]; mov dx, 0x3f8; call puts
///     mov rsi, [r12 + 112]; mov rcx, [r12 + 120]; call put_packed   # args
///     mov rsi, [r12 + 96]; mov rcx, [r12 + 104]; mov dx, 0x2f8; call put_n
///     mov rbx, [r12 + 128]; add bl, '0'; jmp exit
/// fail: add bl, '0'; mov dx, 0x2f8; mov al, '!'; out dx, al; mov al, bl; out dx, al
///     mov al, 10; out dx, al
/// exit: lea rsi, [rip + rec]; mov dx, 0x3e8; call puts
///     mov al, bl; out dx, al; mov al, 10; out dx, al
///     mov al, bl; sub al, '0'; mov dx, 0xf4; out dx, al; cli; 2: hlt; jmp 2b
/// puts: lodsb; test al, al; jz 3f; out dx, al; jmp puts; 3: ret
/// put_packed: jrcxz 5f; 4: lodsb; test al, al; jnz 6f; mov al, 10
///     6: out dx, al; loop 4b; 5: ret
/// put_n: jrcxz 8f; 7: lodsb; out dx, al; loop 7b; 8: ret
/// ```
const KERNEL_CODE: &[u8] = &[
    0xeb, 0x24, 0x66, 0x0f, 0x1f, 0x44, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x70, 0x76, 0x68, 0x20, 0x6f, 0x6b, 0x0a, 0x00, 0x01, 0x68, 0x65, 0x72, 0x6d, 0x69, 0x74, 0x2d,
    0x65, 0x78, 0x69, 0x74, 0x3a, 0x00, 0x49, 0x89, 0xfc, 0xb3, 0x01, 0x48, 0xf7, 0xc4, 0x0f, 0x00,
    0x00, 0x00, 0x75, 0x6f, 0xfe, 0xc3, 0x48, 0xb8, 0x48, 0x52, 0x4d, 0x54, 0x42, 0x4f, 0x4f, 0x54,
    0x49, 0x39, 0x04, 0x24, 0x75, 0x5d, 0xfe, 0xc3, 0x41, 0x83, 0x7c, 0x24, 0x0c, 0x02, 0x75, 0x53,
    0xfe, 0xc3, 0x48, 0x8d, 0x05, 0xb7, 0xff, 0xff, 0xff, 0x48, 0x39, 0x05, 0xa8, 0xff, 0xff, 0xff,
    0x75, 0x41, 0x50, 0x58, 0x48, 0x8b, 0x35, 0x9d, 0xff, 0xff, 0xff, 0x66, 0xba, 0xf8, 0x03, 0xe8,
    0x62, 0x00, 0x00, 0x00, 0x49, 0x8b, 0x74, 0x24, 0x70, 0x49, 0x8b, 0x4c, 0x24, 0x78, 0xe8, 0x5c,
    0x00, 0x00, 0x00, 0x49, 0x8b, 0x74, 0x24, 0x60, 0x49, 0x8b, 0x4c, 0x24, 0x68, 0x66, 0xba, 0xf8,
    0x02, 0xe8, 0x56, 0x00, 0x00, 0x00, 0x49, 0x8b, 0x9c, 0x24, 0x80, 0x00, 0x00, 0x00, 0x80, 0xc3,
    0x30, 0xeb, 0x10, 0x80, 0xc3, 0x30, 0x66, 0xba, 0xf8, 0x02, 0xb0, 0x21, 0xee, 0x88, 0xd8, 0xee,
    0xb0, 0x0a, 0xee, 0x48, 0x8d, 0x35, 0x5e, 0xff, 0xff, 0xff, 0x66, 0xba, 0xe8, 0x03, 0xe8, 0x13,
    0x00, 0x00, 0x00, 0x88, 0xd8, 0xee, 0xb0, 0x0a, 0xee, 0x88, 0xd8, 0x2c, 0x30, 0x66, 0xba, 0xf4,
    0x00, 0xee, 0xfa, 0xf4, 0xeb, 0xfd, 0xac, 0x84, 0xc0, 0x74, 0x03, 0xee, 0xeb, 0xf8, 0xc3, 0xe3,
    0x0a, 0xac, 0x84, 0xc0, 0x75, 0x02, 0xb0, 0x0a, 0xee, 0xe2, 0xf6, 0xc3, 0xe3, 0x04, 0xac, 0xee,
    0xe2, 0xfc, 0xc3,
];
/// Link address (= file offset) of [`KERNEL_CODE`]; also the entry point.
const CODE: u64 = 0x100;
/// Link address of the dynamic section.
const DYNAMIC: u64 = 0x200;
/// Link address of the RELA table.
const RELA: u64 = 0x300;
/// Link address of an alternative entry (see [`test_kernel_entering`]).
const ALT_ENTRY: u64 = 0x2f0;
/// Alternative entry code: `ud2` (no IDT yet, so this triple-faults).
const CRASH: &[u8] = &[0x0f, 0x0b];
/// Alternative entry code: `2: hlt; jmp 2b` with interrupts off: hangs.
const HANG: &[u8] = &[0xf4, 0xeb, 0xfd];

/// The byte offsets the test kernel hard-codes must match the real layout.
#[test]
fn test_kernel_matches_boot_info_layout() {
    assert_eq!(offset_of!(BootInfo, platform), 12);
    assert_eq!(
        offset_of!(BootInfo, cmdline) + offset_of!(PhysSlice, addr),
        96
    );
    assert_eq!(
        offset_of!(BootInfo, cmdline) + offset_of!(PhysSlice, len),
        104
    );
    let args = offset_of!(BootInfo, args) + offset_of!(StringList, bytes);
    assert_eq!(args + offset_of!(PhysSlice, addr), 112);
    assert_eq!(args + offset_of!(PhysSlice, len), 120);
    assert_eq!(
        offset_of!(BootInfo, args) + offset_of!(StringList, count),
        128
    );
}

/// A static PIE holding [`KERNEL_CODE`], one `R_X86_64_RELATIVE`
/// relocation, and `bss` bytes of `.bss`.
fn test_kernel(bss: u64) -> Vec<u8> {
    test_kernel_entering(bss, None)
}

/// [`test_kernel`], but entered at `code` (placed at [`ALT_ENTRY`]) if given.
fn test_kernel_entering(bss: u64, code: Option<&[u8]>) -> Vec<u8> {
    let mut f = vec![0u8; (RELA + 24) as usize];
    let mut put =
        |at: u64, bytes: &[u8]| f[at as usize..at as usize + bytes.len()].copy_from_slice(bytes);
    // ELF header: ELF64, LSB, ET_DYN, EM_X86_64, two program headers at 64.
    put(0, b"\x7fELF\x02\x01\x01");
    put(16, &3u16.to_le_bytes());
    put(18, &62u16.to_le_bytes());
    put(20, &1u32.to_le_bytes());
    put(24, &CODE.to_le_bytes());
    put(32, &64u64.to_le_bytes());
    put(52, &64u16.to_le_bytes());
    put(54, &56u16.to_le_bytes());
    put(56, &2u16.to_le_bytes());
    let file_len = RELA + 24;
    // PT_LOAD (RWX) of the whole file plus .bss; PT_DYNAMIC.
    let phdr = |p_type: u32, flags: u32, offset: u64, filesz: u64, memsz: u64, align: u64| {
        let mut h = Vec::with_capacity(56);
        h.extend_from_slice(&p_type.to_le_bytes());
        h.extend_from_slice(&flags.to_le_bytes());
        for v in [offset, offset, offset, filesz, memsz, align] {
            h.extend_from_slice(&v.to_le_bytes());
        }
        h
    };
    put(64, &phdr(1, 7, 0, file_len, file_len + bss, 0x1000));
    put(120, &phdr(2, 6, DYNAMIC, 64, 64, 8));
    put(CODE, KERNEL_CODE);
    if let Some(code) = code {
        put(ALT_ENTRY, code);
        put(24, &ALT_ENTRY.to_le_bytes());
    }
    // DT_RELA, DT_RELASZ, DT_RELAENT, DT_NULL.
    for (i, (tag, val)) in [(7u64, RELA), (8, 24), (9, 24), (0, 0)]
        .into_iter()
        .enumerate()
    {
        put(DYNAMIC + 16 * i as u64, &tag.to_le_bytes());
        put(DYNAMIC + 16 * i as u64 + 8, &val.to_le_bytes());
    }
    // R_X86_64_RELATIVE: *(CODE + 8) = base + CODE + 16.
    put(RELA, &(CODE + 8).to_le_bytes());
    put(RELA + 8, &8u64.to_le_bytes());
    put(RELA + 16, &(CODE + 16).to_le_bytes());
    f
}

/// Linux's "text file busy" errno.
const ETXTBSY: i32 = 26;

/// A file in the temp directory, removed on drop.
struct TempFile(PathBuf);

impl TempFile {
    fn new(name: &str, bytes: &[u8]) -> Self {
        let path =
            std::env::temp_dir().join(format!("hermit-qemu-test-{}-{name}", std::process::id()));
        std::fs::write(&path, bytes).expect("write temp file");
        Self(path)
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// The loader, or `None` (after printing why) when this test must be skipped.
fn setup(test: &str) -> Option<PathBuf> {
    let qemu_present = std::env::var_os("PATH").is_some_and(|p| {
        std::env::split_paths(&p).any(|d| d.join(hermit_qemu::DEFAULT_QEMU).is_file())
    });
    if !qemu_present {
        eprintln!(
            "SKIPPED {test}: {} is not installed",
            hermit_qemu::DEFAULT_QEMU
        );
        return None;
    }
    // Builds the loader and the demo apps (once per test process), exactly
    // as the README says, so these tests never skip for want of a build.
    Some(boot_tests::built().guest_dir.join("pvh-loader"))
}

/// Runs `config`, returning the outcome and what COM1 and COM2 carried.
fn run(config: &Config) -> (Outcome, String, String) {
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let streams = Streams {
        stdout: &mut out,
        stderr: &mut err,
        timeout: Some(Duration::from_secs(60)),
    };
    let outcome = hermit_qemu::run_with(config, streams).expect("QEMU runs");
    (
        outcome,
        String::from_utf8_lossy(&out).into_owned(),
        String::from_utf8_lossy(&err).into_owned(),
    )
}

fn accelerators() -> Vec<bool> {
    if hermit_qemu::kvm_usable() {
        vec![true, false]
    } else {
        vec![false]
    }
}

#[test]
fn loader_boots_relocates_and_passes_boot_info() {
    let Some(loader) = setup("loader_boots_relocates_and_passes_boot_info") else {
        return;
    };
    let image = TempFile::new("kernel", &test_kernel(0x10_0000));
    for kvm in accelerators() {
        let mut config = Config::new(&image.0, &loader);
        config.args = vec!["tk".into(), "x y".into(), String::new()];
        config.cmdline = "log=debug c=1".into();
        config.kvm = kvm;
        let (outcome, out, err) = run(&config);
        assert_eq!(outcome.accel, if kvm { "kvm" } else { "tcg" });
        assert_eq!(out, "pvh ok\ntk\nx y\n\n", "stdout (stderr: {err:?})");
        assert_eq!(err, "log=debug c=1");
        assert_eq!((outcome.status, outcome.abnormal), (3, None));
        assert!(outcome.kernel_log.is_empty(), "{:?}", outcome.kernel_log);
    }
}

#[test]
fn loader_maps_ram_above_4_gib_with_two_cpus() {
    let Some(loader) = setup("loader_maps_ram_above_4_gib_with_two_cpus") else {
        return;
    };
    let image = TempFile::new("kernel-big", &test_kernel(0));
    let mut config = Config::new(&image.0, &loader);
    config.args = vec!["one".into()];
    config.mem_size = 5 << 30;
    config.cpus = 2;
    let (outcome, out, err) = run(&config);
    assert_eq!(
        (outcome.status, outcome.abnormal),
        (1, None),
        "stderr: {err}"
    );
    assert_eq!(out, "pvh ok\none\n");
}

#[test]
fn loader_reports_errors_on_stderr() {
    let Some(loader) = setup("loader_reports_errors_on_stderr") else {
        return;
    };
    // 1 GiB of .bss cannot fit into 128 MiB of RAM.
    let image = TempFile::new("kernel-huge", &test_kernel(1 << 30));
    let mut config = Config::new(&image.0, &loader);
    config.mem_size = 128 << 20;
    let (outcome, out, err) = run(&config);
    assert_eq!(out, "");
    assert!(err.starts_with("pvh-loader: not enough memory"), "{err:?}");
    assert_eq!(err.lines().count(), 1, "{err:?}");
    assert_eq!((outcome.status, outcome.abnormal), (1, None));
}

#[test]
fn crash_and_hang_are_abnormal() {
    let Some(loader) = setup("crash_and_hang_are_abnormal") else {
        return;
    };
    let crash = TempFile::new("kernel-crash", &test_kernel_entering(0, Some(CRASH)));
    let (outcome, _, err) = run(&Config::new(&crash.0, &loader));
    assert_eq!(outcome.status, 1, "stderr {err:?}");
    assert!(
        outcome
            .abnormal
            .as_deref()
            .is_some_and(|r| r.contains("without an exit record")),
        "{outcome:?}"
    );

    let hang = TempFile::new("kernel-hang", &test_kernel_entering(0, Some(HANG)));
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let streams = Streams {
        stdout: &mut out,
        stderr: &mut err,
        timeout: Some(Duration::from_millis(1500)),
    };
    let outcome = hermit_qemu::run_with(&Config::new(&hang.0, &loader), streams).unwrap();
    assert_eq!(outcome.status, 1);
    assert_eq!(
        outcome.abnormal.as_deref(),
        Some("timed out after 1.5 s; QEMU was killed")
    );
}

#[test]
fn qemu_start_failure_is_one_clear_error() {
    let Some(loader) = setup("qemu_start_failure_is_one_clear_error") else {
        return;
    };
    let image = TempFile::new("kernel-fake-qemu", &test_kernel(0));
    let script = TempFile::new(
        "fake-qemu",
        b"#!/bin/sh\necho 'qemu: -M microvm: bad machine' >&2\necho second line >&2\nexit 1\n",
    );
    std::fs::set_permissions(
        &script.0,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let mut config = Config::new(&image.0, &loader);
    config.qemu = Some(script.0.clone());
    // A test thread forking concurrently may briefly hold the new script open
    // for writing, which makes exec fail with ETXTBSY; retry that.
    let mut err = hermit_qemu::run(&config).unwrap_err();
    for _ in 0..20 {
        match &err {
            hermit_qemu::Error::Io(e) if e.raw_os_error() == Some(ETXTBSY) => {
                std::thread::sleep(Duration::from_millis(50));
                err = hermit_qemu::run(&config).unwrap_err();
            }
            _ => break,
        }
    }
    assert_eq!(
        err.to_string(),
        "QEMU failed to start: qemu: -M microvm: bad machine"
    );
}

#[test]
fn hello_prints_hello_world() {
    let Some(loader) = setup("hello_prints_hello_world") else {
        return;
    };
    let hello = loader.with_file_name("hello");
    assert!(hello.is_file(), "{} was not built", hello.display());
    for kvm in accelerators() {
        let mut config = Config::new(&hello, &loader);
        config.kvm = kvm;
        config.args = vec!["hello".into(), "world".into()];
        config.env = vec!["HERMIT_TEST=1".into()];
        let (outcome, out, err) = run(&config);
        assert!(
            out.starts_with("Hello World!!!\n"),
            "stdout {out:?} stderr {err:?} log {:?}",
            outcome.kernel_log
        );
        assert_eq!(
            (outcome.status, outcome.abnormal),
            (0, None),
            "stderr {err:?}"
        );
        assert!(
            out.contains("world") && out.contains("HERMIT_TEST=1"),
            "arguments and environment reach the app: {out:?}"
        );
    }
}

#[test]
fn missing_image_is_one_clear_error() {
    let Some(loader) = setup("missing_image_is_one_clear_error") else {
        return;
    };
    let err = hermit_qemu::run(&Config::new(Path::new("/nonexistent/app"), &loader)).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("cannot read image /nonexistent/app:"),
        "{err}"
    );
    let not_elf = TempFile::new("not-elf", b"#!/bin/sh\n");
    let err = hermit_qemu::run(&Config::new(&not_elf.0, &loader)).unwrap_err();
    assert!(
        err.to_string()
            .ends_with("is not a hermit image: not an ELF file"),
        "{err}"
    );
}

#[test]
fn without_debug_exit_the_kernel_powers_off() {
    let Some(loader) = setup("without_debug_exit_the_kernel_powers_off") else {
        return;
    };
    for kvm in accelerators() {
        // `cpus` is built with the kernel's `acpi-aml` feature, the others
        // without: both ways of finding `\_S5` are covered.
        for (app, args, status, how) in [
            ("hello", vec!["hello".to_string()], 0, "DSDT scan"),
            (
                "exit-status",
                vec!["exit-status".into(), "200".into()],
                200,
                "DSDT scan",
            ),
            ("cpus", vec!["cpus".into()], 0, "AML interpreter"),
        ] {
            let mut config = Config::new(loader.with_file_name(app), &loader);
            config.kvm = kvm;
            config.debug_exit = false;
            config.args = args;
            config.cmdline = "log=debug".into();
            let started = std::time::Instant::now();
            let (outcome, out, err) = run(&config);
            // A figure, not an assertion; a hang is caught by `run`'s limit.
            eprintln!(
                "{app} without isa-debug-exit ({}): {:.0} ms",
                outcome.accel,
                started.elapsed().as_secs_f64() * 1000.0
            );
            assert_eq!(
                (outcome.status, outcome.abnormal.as_deref()),
                (status, None),
                "stdout {out:?} stderr {err:?} log {:?}",
                String::from_utf8_lossy(&outcome.kernel_log)
            );
            if app == "hello" {
                assert!(out.starts_with("Hello World!!!\n"), "{out:?}");
            }
            // microvm's DSDT says `Name (_S5, Package { 5, 0, 0, 0 })`.
            let log = String::from_utf8_lossy(&outcome.kernel_log);
            assert!(
                log.contains(&format!("ACPI power-off: SLP_TYPa 5, SLP_TYPb 0 ({how})")),
                "{log}"
            );
        }
    }
}
