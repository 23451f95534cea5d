//! Starting the application processors (feature `smp`).
//!
//! Under uhyve every AP is started by the `StartCpu` hypercall, directly in
//! long mode. Under QEMU the kernel does what firmware would: it finds the
//! APs' local APIC IDs in the ACPI MADT, copies the real-mode trampoline
//! (`arch_x86_64::trampoline`) to a page below 1 MiB reserved at boot, and
//! sends INIT, STARTUP, STARTUP through the local APIC. Both paths enter
//! [`ap_entry`] in the same state (the kernel entry contract for APs).
//!
//! APs are started one after the other (the trampoline page and its
//! parameters are shared); each gets a 64 KiB kernel stack, its own GDT,
//! TSS and IST stacks and the shared IDT, enables SSE, reports itself online
//! and calls the `ap_main` the boot CPU passed to [`start_aps`].

use alloc::boxed::Box;
use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use arch_x86_64::apic::LocalApic;
use arch_x86_64::gdt::{self, CpuTables, IST_STACK_SIZE};
use arch_x86_64::io::hypercall;
use arch_x86_64::trampoline::{self, ApStart};
use arch_x86_64::{acpi, cpu, exception};
use hermit_interface::{BootInfo, Platform, hypercall as hc};
use spin::Mutex;

/// Each AP's kernel stack.
const AP_STACK_SIZE: usize = 64 * 1024;
/// How long the boot CPU waits for one AP to come online.
const ONLINE_TIMEOUT_US: u64 = 1_000_000;
/// Gap between the two STARTUP IPIs (the second is ignored by an AP that
/// already started).
const SIPI_GAP_US: u64 = 200;
const PAGE: u64 = 4096;

/// The entry function an AP runs once it is set up.
pub type ApMain = extern "C" fn(cpu: u32) -> !;

/// CPUs that reported online, the boot CPU included.
static ONLINE: AtomicUsize = AtomicUsize::new(1);
/// CPUs the machine has (MADT or uhyve's count), known after `start_aps`.
static CPU_COUNT: AtomicUsize = AtomicUsize::new(1);
/// The reserved trampoline page below 1 MiB (QEMU), 0 if none.
static TRAMPOLINE_PAGE: AtomicU64 = AtomicU64::new(0);
/// The boot info, for the CPU count and the RSDP.
static BOOT_INFO: spin::Once<&'static BootInfo> = spin::Once::new();

/// `StartCpu` parameters in the kernel image, below 4 GiB as hypercalls need.
static START_PARAMS: Mutex<hc::StartCpu> = Mutex::new(hc::StartCpu {
    cpu: 0,
    _reserved: 0,
    entry: 0,
    stack_top: 0,
    arg: 0,
    cr3: 0,
    result: 0,
});

/// What an AP needs before it can run Rust code safely; the boot CPU leaks
/// one per AP and passes its address in `RDI`.
#[repr(C)]
struct ApBoot {
    tables: *mut CpuTables,
    ist_tops: [u64; 3],
    main: ApMain,
}

/// The number of CPUs that are online (1 until [`start_aps`] ran).
pub fn online_cpus() -> usize {
    ONLINE.load(Ordering::Acquire)
}

/// The number of CPUs the machine has (1 until [`start_aps`] ran).
pub fn cpu_count() -> usize {
    CPU_COUNT.load(Ordering::Relaxed)
}

/// An AP's `ap_main` that parks the CPU: halt forever, interrupts off.
pub extern "C" fn park(_cpu: u32) -> ! {
    cpu::halt_forever()
}

/// Remembers the boot info and, under QEMU, reserves the trampoline page.
/// Call right after the frame allocator is set up, before the heap takes
/// the low memory.
pub(crate) fn init(info: &'static BootInfo, platform: Platform) {
    BOOT_INFO.call_once(|| info);
    if platform == Platform::Qemu {
        match crate::mem::reserve_low_page(0x10_0000) {
            Some(page) => TRAMPOLINE_PAGE.store(page, Ordering::Relaxed),
            None => log::warn!("no free page below 1 MiB for the AP trampoline"),
        }
    }
}

/// TSC ticks in `us` microseconds (the clock is set up before the APs).
fn us_to_tsc(us: u64) -> u64 {
    crate::time::ns_to_tsc_ticks(us.saturating_mul(1000))
}

/// Waits until `ONLINE` reaches `target`, at most [`ONLINE_TIMEOUT_US`].
fn wait_online(target: usize) -> bool {
    let start = cpu::rdtsc();
    let limit = us_to_tsc(ONLINE_TIMEOUT_US);
    while ONLINE.load(Ordering::Acquire) < target {
        if cpu::rdtsc().wrapping_sub(start) > limit {
            return false;
        }
        core::hint::spin_loop();
    }
    true
}

/// Allocates an AP's stacks and tables; returns `(stack_top, boot block)`.
fn prepare_ap(main: ApMain) -> Option<(u64, u64)> {
    let stack = crate::mem::allocate_frames(AP_STACK_SIZE / PAGE as usize, PAGE)?;
    let ist = crate::mem::allocate_frames(3 * IST_STACK_SIZE / PAGE as usize, PAGE)?;
    let ist_tops = [1, 2, 3].map(|i| ist + i * IST_STACK_SIZE as u64);
    let tables = Box::into_raw(Box::new(CpuTables::new()));
    let boot = Box::into_raw(Box::new(ApBoot {
        tables,
        ist_tops,
        main,
    }));
    Some((stack + AP_STACK_SIZE as u64, boot as u64))
}

/// Starts every application processor, each running `ap_main(cpu)` once
/// set up, and waits (at most 1 s each) until it is online. Returns the
/// number of online CPUs, the boot CPU included. Failures are logged with
/// `log::warn!` and end the bring-up early. Boot-time, CPL 0, boot CPU only.
pub fn start_aps(ap_main: ApMain) -> usize {
    let Some(info) = BOOT_INFO.get().copied() else {
        log::warn!("smp: start_aps before smp::init; staying on one CPU");
        return online_cpus();
    };
    match crate::console::platform() {
        Some(Platform::Uhyve) => start_uhyve(info, ap_main),
        Some(Platform::Qemu) => start_qemu(info, ap_main),
        None => {}
    }
    online_cpus()
}

fn start_uhyve(info: &BootInfo, main: ApMain) {
    let count = info.cpu_count.max(1);
    CPU_COUNT.store(count as usize, Ordering::Relaxed);
    let cr3 = cpu::page_table_root();
    for cpu in 1..count {
        let Some((stack_top, arg)) = prepare_ap(main) else {
            log::warn!("smp: out of memory for CPU {cpu}'s stacks");
            return;
        };
        let result = {
            let mut params = START_PARAMS.lock();
            *params = hc::StartCpu {
                cpu,
                _reserved: 0,
                entry: ap_entry as *const () as u64,
                stack_top,
                arg,
                cr3,
                result: 0,
            };
            let addr = &raw mut *params as u64;
            // SAFETY: `params` is a valid `StartCpu` block in the kernel
            // image (below 4 GiB); the entry, stack and boot block stay valid
            // for as long as the AP runs (they are leaked).
            unsafe { hypercall(hc::Nr::StartCpu.port(), addr as u32) };
            params.result
        };
        if result != 0 {
            log::warn!("smp: uhyve refused to start CPU {cpu} (error {result})");
            return;
        }
        if !wait_online(cpu as usize + 1) {
            log::warn!("smp: CPU {cpu} did not come online within 1 s");
            return;
        }
    }
}

fn start_qemu(info: &BootInfo, main: ApMain) {
    let handler = acpi::IdentityHandler {
        tsc_khz: crate::time::tsc_khz(),
    };
    // SAFETY: the boot identity map covers the low 1 MiB (entry contract).
    let Some(rsdp) = (unsafe { acpi::find_rsdp(info.acpi_rsdp) }) else {
        log::warn!("smp: no ACPI RSDP; staying on one CPU");
        return;
    };
    // SAFETY: `rsdp` was found above; QEMU's tables lie below 4 GiB, which
    // the identity map covers.
    let cpus = match unsafe { acpi::tables(rsdp, handler) }.and_then(|t| acpi::madt_cpus(&t)) {
        Ok(cpus) => cpus,
        Err(e) => {
            log::warn!("smp: cannot read the MADT: {e}; staying on one CPU");
            return;
        }
    };
    let bsp = gdt::initial_apic_id();
    let aps = acpi::application_processors(&cpus, bsp);
    log::debug!(
        "smp: RSDP at {rsdp:#x} (loader said {:#x}), MADT CPUs {cpus:?}, BSP APIC ID {bsp}",
        info.acpi_rsdp
    );
    CPU_COUNT.store(aps.len() + 1, Ordering::Relaxed);
    if aps.is_empty() {
        return;
    }
    let page = TRAMPOLINE_PAGE.load(Ordering::Relaxed);
    if page == 0 {
        log::warn!("smp: no trampoline page; staying on one CPU");
        return;
    }
    // SAFETY: QEMU's CPUs have an xAPIC at the default address, which the
    // boot identity map covers.
    let apic = unsafe { LocalApic::new() };
    let cr3 = cpu::page_table_root();
    let ipi_timeout = us_to_tsc(10_000);
    for (index, &apic_id) in aps.iter().enumerate() {
        let cpu = index as u32 + 1;
        let Some((stack_top, arg)) = prepare_ap(main) else {
            log::warn!("smp: out of memory for CPU {cpu}'s stacks");
            return;
        };
        let start = ApStart {
            cr3,
            entry: ap_entry as *const () as u64,
            stack_top,
            arg,
            cpu,
        };
        // SAFETY: the page was reserved for the trampoline at boot and is
        // identity-mapped; the previous AP (if any) is online, so no CPU
        // executes from it now.
        let dest = unsafe { core::slice::from_raw_parts_mut(page as *mut u8, PAGE as usize) };
        if let Err(e) = trampoline::write(dest, page, &start) {
            log::warn!("smp: cannot write the AP trampoline: {e}");
            return;
        }
        apic.send_init(apic_id);
        let mut sent = apic.wait_ipi_delivered(ipi_timeout);
        for _ in 0..2 {
            if sent.is_err() || ONLINE.load(Ordering::Acquire) > cpu as usize {
                break;
            }
            sent = apic
                .send_startup(apic_id, page)
                .and_then(|()| apic.wait_ipi_delivered(ipi_timeout));
            crate::time::spin_sleep(core::time::Duration::from_micros(SIPI_GAP_US));
        }
        if let Err(e) = sent {
            log::warn!("smp: starting APIC ID {apic_id}: {e}");
            return;
        }
        if !wait_online(cpu as usize + 1) {
            log::warn!("smp: CPU {cpu} (APIC ID {apic_id}) did not come online within 1 s");
            return;
        }
    }
}

/// Where every AP starts in long mode: `RDI` = its `ApBoot`, `RSI` = its
/// index, `RSP` = the top of its stack (16-byte aligned, so the `call`
/// leaves the alignment the ABI expects).
#[unsafe(naked)]
unsafe extern "C" fn ap_entry() -> ! {
    core::arch::naked_asm!("xor ebp, ebp", "call {start}", "ud2", start = sym ap_start)
}

extern "C" fn ap_start(boot: *const ApBoot, cpu: u32) -> ! {
    // First: code built for `x86_64-unknown-hermit` uses SSE anywhere.
    cpu::enable_fpu_sse();
    // SAFETY: the boot CPU passed the address of a leaked `ApBoot` that only
    // this AP uses.
    let boot = unsafe { &*boot };
    // SAFETY: boot-time, CPL 0, once on this CPU; the tables and IST stacks
    // were allocated for this CPU alone and are never freed.
    unsafe {
        gdt::init_cpu(
            &mut *boot.tables,
            cpu,
            gdt::initial_apic_id(),
            boot.ist_tops,
        )
    };
    exception::load();
    // SAFETY: this AP, once, CPL 0, interrupts off, its GDT and the IDT
    // loaded; its tables are identity mapped like all kernel memory.
    unsafe { arch_x86_64::irq::init_ap() };
    ONLINE.fetch_add(1, Ordering::AcqRel);
    (boot.main)(cpu)
}
