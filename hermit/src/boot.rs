//! The kernel entry point and the boot sequence.

use core::sync::atomic::{AtomicU64, Ordering};

use arch_x86_64::{cpu, exception, gdt};
use hermit_interface::{BOOT_INFO_MAGIC, BOOT_INFO_VERSION, BootInfo, Platform};

/// Exit status when the kernel cannot start the application.
const BOOT_FAILURE: i32 = 70;

static ACPI_RSDP: AtomicU64 = AtomicU64::new(0);

/// The ACPI RSDP address the loader passed (0: unknown).
pub(crate) fn acpi_rsdp_hint() -> u64 {
    ACPI_RSDP.load(Ordering::Relaxed)
}

/// Microseconds since kernel entry, 0 before the clock starts.
pub(crate) fn uptime_us() -> u64 {
    crate::time::monotonic_ns() / 1000
}

/// The image's entry point (see the entry contract in `hermit-interface`):
/// align the stack as for a call and enter Rust with `RDI` = boot info.
///
/// Linux starts processes with `RDI` = 0 and, for a static PIE without an
/// interpreter, applies no relocations. On that path the entry applies the
/// image's `R_X86_64_RELATIVE` relocations itself (the loaders have not run)
/// and hands over to `linux::linux_start`, which re-runs the image through
/// the proxy.
#[unsafe(naked)]
#[unsafe(no_mangle)]
unsafe extern "C" fn _start() -> ! {
    core::arch::naked_asm!(
        "xor ebp, ebp",
        "test rdi, rdi",
        "jz 2f",
        "and rsp, -16",
        "call {main}",
        "ud2",
        // Linux: r12 = initial stack, r8 = load base, r9 walks _DYNAMIC.
        "2:",
        "mov r12, rsp",
        "lea r8, [rip + __ehdr_start]",
        "lea r9, [rip + _DYNAMIC]",
        "xor r10d, r10d",
        "xor r11d, r11d",
        "3:",
        "mov rax, [r9]",
        "test rax, rax",
        "jz 5f",
        "cmp rax, 7", // DT_RELA
        "jne 4f",
        "mov r10, [r9 + 8]",
        "4:",
        "cmp rax, 8", // DT_RELASZ
        "jne 6f",
        "mov r11, [r9 + 8]",
        "6:",
        "add r9, 16",
        "jmp 3b",
        "5:",
        "test r10, r10",
        "jz 8f",
        "add r10, r8",
        "add r11, r10",
        "7:",
        "cmp r10, r11",
        "jae 8f",
        "cmp dword ptr [r10 + 8], 8", // R_X86_64_RELATIVE
        "jne 9f",
        "mov rax, [r10 + 16]",
        "add rax, r8",
        "mov rcx, [r10]",
        "mov [r8 + rcx], rax",
        "9:",
        "add r10, 24",
        "jmp 7b",
        "8:",
        "mov rdi, r12",
        "and rsp, -16",
        "call {linux}",
        "ud2",
        main = sym kernel_start,
        linux = sym crate::linux::linux_start,
    )
}

#[cfg(target_os = "none")]
unsafe extern "Rust" {
    /// Defined by the application with [`crate::entry!`].
    fn __hermit_app_main() -> i32;
}

#[cfg(target_os = "hermit")]
unsafe extern "C" {
    /// Rust std's entry on hermit (`std::sys::pal::hermit`): records the
    /// environment, runs the application's `main`, its TLS destructors and
    /// exits through `sys_exit`.
    fn runtime_entry(argc: i32, argv: *const *const u8, env: *const *const u8) -> !;
}

/// Runs the `no_std` application's `main` and exits with its status.
#[cfg(target_os = "none")]
fn run_application() -> ! {
    // SAFETY: `__hermit_app_main` is the application's entry defined by
    // `hermit::entry!`, a plain Rust function with this signature.
    let status = unsafe { __hermit_app_main() };
    crate::process::exit(status)
}

/// Hands over to Rust std with C-style argument and environment arrays.
#[cfg(target_os = "hermit")]
fn run_application() -> ! {
    let (argv, envp) = crate::env::c_arrays();
    let argc = i32::try_from(argv.len() - 1).unwrap_or(i32::MAX);
    // The arrays live as long as the application: std keeps the pointers.
    let argv = alloc::vec::Vec::leak(argv).as_ptr();
    let envp = alloc::vec::Vec::leak(envp).as_ptr();
    // SAFETY: `runtime_entry` is std's entry with this signature; `argv`
    // holds `argc` pointers to NUL-terminated strings and a null pointer,
    // `envp` NUL-terminated `NAME=VALUE` strings and a null pointer, all in
    // memory that is never freed. The boot thread's TLS block is loaded.
    unsafe { runtime_entry(argc, argv, envp) }
}

extern "C" fn kernel_start(info: *const BootInfo) -> ! {
    let boot_tsc = cpu::rdtsc();
    // First of all: on `x86_64-unknown-hermit` (Rust std applications) the
    // compiler uses SSE registers anywhere, e.g. to zero structures.
    cpu::enable_fpu_sse();
    // SAFETY: the loader passes the address of a BootInfo in reserved memory
    // (entry contract); the magic and version are checked before any other
    // field is trusted.
    let info: &'static BootInfo = unsafe { &*info };
    let Some(platform) = check_boot_info(info) else {
        // Nothing is known about the platform; `platform_exit` tries both exits.
        crate::console::platform_exit(BOOT_FAILURE)
    };
    crate::console::init(platform);
    ACPI_RSDP.store(info.acpi_rsdp, Ordering::Relaxed);
    gdt::init();
    exception::init(exception::FatalHandler {
        report: report_exception,
        readable: crate::mem::is_ram,
    });
    let cmdline = str_at(info.cmdline.addr, info.cmdline.len).unwrap_or("");
    // On a paravirtual `kvm_pvm` host this code runs natively from here on
    // instead of instruction by instruction (see `arch_x86_64::irq`), unless
    // the command line says `native=off`; elsewhere the probe fails.
    let native = !cmdline.split_ascii_whitespace().any(|o| o == "native=off")
        // SAFETY: boot CPU, once, CPL 0, interrupts off, GDT and IDT loaded;
        // kernel memory is identity mapped.
        && unsafe { arch_x86_64::irq::init_boot_cpu() };
    crate::logger::init(platform, cmdline);
    crate::time::init(info, platform, boot_tsc);
    log::info!(
        "hermit kernel on {platform:?}{}, {} CPU(s), cmdline {cmdline:?}",
        if native { " (native on kvm_pvm)" } else { "" },
        info.cpu_count
    );

    if let Err(e) = crate::mem::init(info) {
        fail(format_args!("memory setup failed: bad memory map: {e}"));
    }
    #[cfg(feature = "smp")]
    {
        crate::smp::init(info, platform);
        let online = crate::smp::start_aps(crate::sched::ap_main);
        log::info!("{online} CPUs online");
    }
    crate::isle::init(&info.isle);
    crate::env::init(info);
    if let Err(e) = crate::tls::init(info) {
        fail(format_args!("bad TLS segment: {e}"));
    }
    crate::tls::init_boot_thread();
    log::info!(
        "boot done after {} us; entering the application",
        uptime_us()
    );
    run_application()
}

/// The platform, if `info` is a boot info this kernel understands.
fn check_boot_info(info: &BootInfo) -> Option<Platform> {
    if info.magic != BOOT_INFO_MAGIC || info.version != BOOT_INFO_VERSION {
        return None;
    }
    info.platform()
}

/// A string in boot memory, if it is valid UTF-8.
fn str_at(addr: u64, len: u64) -> Option<&'static str> {
    if len == 0 {
        return Some("");
    }
    // SAFETY: boot-info strings lie in reserved, mapped memory that is never
    // written again (entry contract).
    let bytes = unsafe { core::slice::from_raw_parts(addr as *const u8, len as usize) };
    core::str::from_utf8(bytes).ok()
}

pub(crate) fn fail(args: core::fmt::Arguments<'_>) -> ! {
    crate::eprintln!("hermit: {args}");
    log::error!("{args}");
    crate::console::platform_exit(BOOT_FAILURE)
}

/// Reports a fatal CPU exception on stderr and ends the VM with status
/// 128 + vector, the way a signal-killed Linux process reports 128 + signal.
fn report_exception(info: &exception::ExceptionInfo) -> ! {
    crate::eprintln!("hermit: fatal {info}");
    if info.cr2.is_some_and(crate::mem::in_stack_window) {
        crate::eprintln!("hermit: a thread overflowed its stack (it hit the guard page below it)");
    }
    log::error!("fatal {info}");
    crate::console::platform_exit(128 + i32::from(info.vector))
}

// With Rust std (target_os = "hermit"), std owns the panic handler.
#[cfg(target_os = "none")]
#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    match info.location() {
        Some(loc) => crate::eprintln!("panicked at {loc}:\n{}", info.message()),
        None => crate::eprintln!("panicked:\n{}", info.message()),
    }
    log::error!("panic: {}", info.message());
    crate::console::platform_exit(101)
}

// The note that tells launchers this kernel copes with running natively on
// a `kvm_pvm` host from its first instruction (`hermit_loader::
// NOTE_TYPE_NATIVE`): the privileged instructions of its early code trap and
// are emulated there, it enables no interrupt before it registers its own
// virtual-interrupt-flag page (`arch_x86_64::irq`), and that registration
// replaces the launcher's. (A plain x86 guest would not cope: natively
// `hlt` with interrupts masked returns at once.) namesz 7 ("HERMIT\0"),
// descsz 4 (version 1), type 2.
core::arch::global_asm!(
    ".pushsection .note.hermit,\"a\",@note",
    ".balign 4",
    ".long 7",
    ".long 4",
    ".long 2",
    ".asciz \"HERMIT\"",
    ".balign 4",
    ".long 1",
    ".popsection",
);
