//! The KVM side: creating the VM, placing the boot data, running the vCPU.

use std::sync::Once;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hermit_interface::{
    GDT_KERNEL_CODE, GDT_KERNEL_DATA, MAX_MEMORY_REGIONS, MemoryRegion, Platform,
};
use hermit_loader::{BootParams, Dest, Image, LoadedImage};
use kvm_bindings::{
    KVM_CAP_SPLIT_IRQCHIP, KVM_MAX_CPUID_ENTRIES, KVM_MP_STATE_HALTED, kvm_enable_cap, kvm_regs,
    kvm_segment, kvm_userspace_memory_region,
};
use kvm_ioctls::{Kvm, VcpuExit, VcpuFd, VmFd};
use vm_memory::{GuestAddress, GuestMemoryBackend, GuestMemoryMmap, GuestMemoryRegion};

use crate::hypercall::{Action, HostOutput, Hypercalls, read_log};
use crate::layout::{GDT_ADDR, Layout, PAGE_TABLES_ADDR};
use crate::{Config, Error, Outcome};

const CR0_PE: u64 = 1 << 0;
const CR0_MP: u64 = 1 << 1;
const CR0_ET: u64 = 1 << 4;
const CR0_NE: u64 = 1 << 5;
const CR0_WP: u64 = 1 << 16;
const CR0_PG: u64 = 1 << 31;
const CR4_PAE: u64 = 1 << 5;
const CR4_OSFXSR: u64 = 1 << 9;
const CR4_OSXMMEXCPT: u64 = 1 << 10;
const EFER_LME: u64 = 1 << 8;
const EFER_LMA: u64 = 1 << 10;
const EFER_NXE: u64 = 1 << 11;
/// RFLAGS.IF.
const RFLAGS_IF: u64 = 1 << 9;
/// How often the vCPU is kicked out of `KVM_RUN` to look for a dead halt.
const HALT_CHECK_PERIOD: Duration = Duration::from_millis(100);

/// Interrupt routes reserved for a (future, user-space) IOAPIC.
const IOAPIC_PINS: u64 = 24;

/// A VM with its memory. Field order is drop order: the vCPU and VM fds
/// close before the memory they point into is unmapped.
struct Vm {
    vcpu: VcpuFd,
    _vm: VmFd,
    mem: GuestMemoryMmap,
}

/// Opens `/dev/kvm` and checks the API version.
pub(crate) fn open_kvm() -> Result<Kvm, Error> {
    let kvm = Kvm::new().map_err(|e| Error::NoKvm(e.to_string()))?;
    match kvm.get_api_version() {
        12 => Ok(kvm),
        v => Err(Error::NoKvm(format!("unsupported KVM API version {v}"))),
    }
}

fn kvm_err(what: &'static str) -> impl FnOnce(kvm_ioctls::Error) -> Error {
    move |source| Error::Kvm { what, source }
}

/// Boots `config` and runs it to the end; see [`crate::run`].
pub(crate) fn run(config: &Config) -> Result<Outcome, Error> {
    match config.cpus {
        0 => return Err(Error::NoCpus),
        1 => {}
        n => return Err(Error::TooManyCpus(n)),
    }
    let file = std::fs::read(&config.image).map_err(|source| Error::ImageRead {
        path: config.image.clone(),
        source,
    })?;
    let image = Image::parse(&file).map_err(|source| Error::Image {
        path: config.image.clone(),
        source,
    })?;
    let boot_info_size =
        hermit_loader::boot_info_size(config.cmdline.as_bytes(), &config.args, &config.env);
    let layout = Layout::plan(config.mem_size, boot_info_size, &image)?;

    let kvm = open_kvm()?;
    let mut vm = create_vm(&kvm, &layout, config.mem_size)?;
    // Overlapping this (~0.3 ms: each CPUID traps to the outer hypervisor)
    // with VM creation on a second thread was measured: no gain on 2 cores.
    let cpuid = kvm
        .get_supported_cpuid(KVM_MAX_CPUID_ENTRIES)
        .map_err(kvm_err("KVM_GET_SUPPORTED_CPUID"))?;
    vm.vcpu
        .set_cpuid2(&cpuid)
        .map_err(kvm_err("KVM_SET_CPUID2"))?;
    let tsc_khz = vm.vcpu.get_tsc_khz().map_or(0, u64::from);

    let (loaded, boot_info) = write_boot_data(&vm.mem, &layout, &image, config, tsc_khz)?;
    drop(file);
    set_registers(&vm.vcpu, &loaded, &layout, boot_info)?;
    Ok(vm.run())
}

/// Creates the VM with its memory slots, local APIC and one vCPU.
fn create_vm(kvm: &Kvm, layout: &Layout, mem_size: u64) -> Result<Vm, Error> {
    let vm = kvm
        .create_vm()
        .map_err(|e| Error::NoKvm(format!("cannot create a VM: {e}")))?;
    let ranges: Vec<_> = layout
        .ram
        .iter()
        .map(|r| (GuestAddress(r.start), (r.end - r.start) as usize))
        .collect();
    let mem = GuestMemoryMmap::from_ranges(&ranges).map_err(|e| Error::Memory {
        size: mem_size,
        reason: e.to_string(),
    })?;
    for (slot, region) in mem.iter().enumerate() {
        let region_desc = kvm_userspace_memory_region {
            slot: slot as u32,
            flags: 0,
            guest_phys_addr: region.start_addr().0,
            memory_size: region.len(),
            userspace_addr: region.as_ptr() as u64,
        };
        // SAFETY: the host range is a live mapping owned by `mem`, which `Vm`
        // keeps alive until after the VM fd is closed; slots do not overlap
        // because the layout's RAM ranges do not.
        unsafe { vm.set_user_memory_region(region_desc) }
            .map_err(kvm_err("KVM_SET_USER_MEMORY_REGION"))?;
    }
    // An in-kernel local APIC (the kernel's timer and, later, IPIs need
    // one) without the in-kernel PIC and IOAPIC: there are no devices to
    // route, and tearing down a full in-kernel irqchip costs ~13 ms of SRCU
    // grace periods here, against ~0 for the split one. With an in-kernel
    // LAPIC, `hlt` waits inside KVM instead of exiting to us (see `Ticker`).
    let mut split = kvm_enable_cap {
        cap: KVM_CAP_SPLIT_IRQCHIP,
        ..Default::default()
    };
    split.args[0] = IOAPIC_PINS;
    vm.enable_cap(&split)
        .map_err(kvm_err("KVM_ENABLE_CAP(KVM_CAP_SPLIT_IRQCHIP)"))?;
    let vcpu = vm.create_vcpu(0).map_err(kvm_err("KVM_CREATE_VCPU"))?;
    Ok(Vm { vcpu, _vm: vm, mem })
}

/// Writes GDT, page tables, image and boot info into guest memory.
fn write_boot_data(
    mem: &GuestMemoryMmap,
    layout: &Layout,
    image: &Image<'_>,
    config: &Config,
    tsc_khz: u64,
) -> Result<(LoadedImage, u64), Error> {
    let start = GDT_ADDR;
    let len = layout.image_end - start;
    let slice = crate::hypercall::guest_slice(mem, start, len).ok_or(Error::MemoryTooSmall {
        mem: config.mem_size,
        needed: layout.image_end,
    })?;
    let guard = slice.ptr_guard_mut();
    // SAFETY: `slice` is a bounds-checked range of the guest mapping owned by
    // `mem`, which outlives this function. No vCPU has run yet and no other
    // reference into guest memory exists while `window` lives, so it is the
    // only access; any byte value is a valid `u8`.
    let window = unsafe { std::slice::from_raw_parts_mut(guard.as_ptr(), slice.len()) };

    let boot_err = Error::Boot;
    hermit_loader::write_gdt(window, start, GDT_ADDR).map_err(boot_err)?;
    hermit_loader::write_page_tables(window, start, PAGE_TABLES_ADDR, layout.ram_end())
        .map_err(boot_err)?;
    // Fresh anonymous memory reads as zero, so `.bss` need not be touched.
    let loaded = image
        .load(window, start, layout.image, Dest::Zeroed)
        .map_err(boot_err)?;

    let mut memory = [MemoryRegion::EMPTY; MAX_MEMORY_REGIONS];
    let count = hermit_loader::build_memory_map(&layout.ram, &layout.reserved(), &mut memory)
        .map_err(boot_err)?;
    let boot_time_ns = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let params = BootParams {
        platform: Platform::Uhyve,
        cpu_count: 1,
        tsc_khz,
        boot_time_ns,
        image: &loaded,
        memory: &memory[..count],
        acpi_rsdp: 0,
    };
    let written = hermit_loader::write_boot_info(
        window,
        start,
        layout.boot_info,
        &params,
        config.cmdline.as_bytes(),
        &config.args,
        &config.env,
    )
    .map_err(boot_err)?;
    Ok((loaded, written.addr))
}

fn segment(selector: u16, code: bool) -> kvm_segment {
    kvm_segment {
        base: 0,
        limit: 0xffff_ffff,
        selector,
        type_: if code { 0xb } else { 0x3 },
        present: 1,
        dpl: 0,
        db: u8::from(!code),
        s: 1,
        l: u8::from(code),
        g: 1,
        avl: 0,
        unusable: 0,
        padding: 0,
    }
}

/// Puts the vCPU straight into 64-bit mode at the entry point.
fn set_registers(
    vcpu: &VcpuFd,
    loaded: &LoadedImage,
    layout: &Layout,
    boot_info: u64,
) -> Result<(), Error> {
    let mut sregs = vcpu.get_sregs().map_err(kvm_err("KVM_GET_SREGS"))?;
    sregs.cs = segment(GDT_KERNEL_CODE, true);
    let data = segment(GDT_KERNEL_DATA, false);
    (sregs.ds, sregs.es, sregs.fs, sregs.gs, sregs.ss) = (data, data, data, data, data);
    sregs.gdt.base = GDT_ADDR;
    sregs.gdt.limit = hermit_loader::GDT_SIZE as u16 - 1;
    sregs.idt.base = 0;
    sregs.idt.limit = 0;
    sregs.cr3 = PAGE_TABLES_ADDR;
    sregs.cr4 = CR4_PAE | CR4_OSFXSR | CR4_OSXMMEXCPT;
    sregs.cr0 = CR0_PE | CR0_MP | CR0_ET | CR0_NE | CR0_WP | CR0_PG;
    sregs.efer = EFER_LME | EFER_LMA | EFER_NXE;
    vcpu.set_sregs(&sregs).map_err(kvm_err("KVM_SET_SREGS"))?;
    let regs = kvm_regs {
        rip: loaded.entry,
        rsp: layout.stack_top,
        rdi: boot_info,
        rflags: 0x2,
        ..Default::default()
    };
    vcpu.set_regs(&regs).map_err(kvm_err("KVM_SET_REGS"))
}

impl Vm {
    /// Called when the ticker kicked the vCPU out of `KVM_RUN`: a vCPU that
    /// is halted with interrupts disabled on two consecutive ticks can never
    /// wake up (uhyve sends no NMIs), so the VM ends instead of hanging.
    fn check_halt(&self, halted_ticks: &mut u32) -> Action {
        let halted = self
            .vcpu
            .get_mp_state()
            .is_ok_and(|s| s.mp_state == KVM_MP_STATE_HALTED);
        let masked = self
            .vcpu
            .get_regs()
            .is_ok_and(|r| r.rflags & RFLAGS_IF == 0);
        if !(halted && masked) {
            *halted_ticks = 0;
            return Action::Continue;
        }
        *halted_ticks += 1;
        if *halted_ticks < 2 {
            return Action::Continue;
        }
        Action::Abort("the guest halted with interrupts disabled".into())
    }

    /// Runs the vCPU until the guest exits or breaks, then reads the log.
    fn run(&mut self) -> Outcome {
        let mut calls = Hypercalls::new(HostOutput);
        let _ticker = Ticker::start(HALT_CHECK_PERIOD);
        let mut halted_ticks = 0;
        let ended = loop {
            let action = match self.vcpu.run() {
                Ok(VcpuExit::IoOut(port, data)) => calls.handle_out(&self.mem, port, data),
                Ok(VcpuExit::IoIn(_, data)) => {
                    // No devices: reads float high, like an empty ISA bus.
                    data.fill(0xff);
                    Action::Continue
                }
                Ok(VcpuExit::MmioRead(_, data)) => {
                    data.fill(0xff);
                    Action::Continue
                }
                Ok(VcpuExit::MmioWrite(..)) => Action::Continue,
                Ok(VcpuExit::Intr) => self.check_halt(&mut halted_ticks),
                Ok(VcpuExit::Hlt) => Action::Abort("the guest halted".into()),
                Ok(VcpuExit::Shutdown) => {
                    Action::Abort("the guest shut down (triple fault)".into())
                }
                Ok(VcpuExit::InternalError) => {
                    let run = self.vcpu.get_kvm_run();
                    // SAFETY: the exit reason is KVM_EXIT_INTERNAL_ERROR, so
                    // `internal` is the union member KVM filled in.
                    let suberror = unsafe { run.__bindgen_anon_1.internal.suberror };
                    Action::Abort(format!("KVM internal error (suberror {suberror})"))
                }
                Ok(VcpuExit::FailEntry(reason, _)) => Action::Abort(format!(
                    "KVM could not enter the guest (hardware reason {reason:#x})"
                )),
                Ok(VcpuExit::SystemEvent(kind, _)) => {
                    Action::Abort(format!("the guest raised system event {kind}"))
                }
                Ok(other) => Action::Abort(format!("unexpected VM exit {other:?}")),
                Err(e) if e.errno() == libc::EINTR => self.check_halt(&mut halted_ticks),
                Err(e) if e.errno() == libc::EAGAIN => Action::Continue,
                Err(e) => Action::Abort(format!("KVM_RUN failed: {e}")),
            };
            match action {
                Action::Continue => {}
                Action::Exit(status) => break Ok(status),
                Action::Abort(reason) => break Err(reason),
            }
        };
        let kernel_log = match calls.log_ring {
            None => Vec::new(),
            Some(ring) => read_log(&self.mem, ring).unwrap_or_else(|reason| {
                format!("[uhyve: cannot read the kernel log ring: {reason}]\n").into_bytes()
            }),
        };
        match ended {
            Ok(status) => Outcome {
                status,
                kernel_log,
                abnormal: None,
            },
            Err(reason) => {
                let rip = self
                    .vcpu
                    .get_regs()
                    .map_or_else(|_| String::new(), |r| format!(" at rip {:#x}", r.rip));
                Outcome {
                    status: 1,
                    kernel_log,
                    abnormal: Some(format!("{reason}{rip}")),
                }
            }
        }
    }
}

/// A per-thread POSIX timer that periodically sends [`kick_signal`] to the
/// vCPU thread, so a `KVM_RUN` blocked in an in-kernel `hlt` returns
/// `EINTR` and the loop can look at the vCPU. Deleted on drop.
struct Ticker(libc::timer_t);

/// The signal that kicks the vCPU thread; its handler does nothing.
fn kick_signal() -> libc::c_int {
    libc::SIGRTMIN()
}

extern "C" fn ignore_signal(_: libc::c_int) {}

impl Ticker {
    /// Starts the timer; `None` if the host refuses (then dead halts hang,
    /// as with any other KVM user).
    fn start(period: Duration) -> Option<Self> {
        static HANDLER: Once = Once::new();
        HANDLER.call_once(|| {
            // SAFETY: an all-zero `sigaction` is a valid value (empty mask,
            // no flags); the handler is an `extern "C"` function that does
            // nothing, so it is async-signal-safe. Without SA_RESTART the
            // interrupted KVM_RUN returns EINTR, which is the point.
            unsafe {
                let mut action: libc::sigaction = std::mem::zeroed();
                action.sa_sigaction = ignore_signal as extern "C" fn(libc::c_int) as usize;
                libc::sigemptyset(&mut action.sa_mask);
                libc::sigaction(kick_signal(), &action, std::ptr::null_mut());
            }
        });
        // SAFETY: an all-zero `sigevent` is valid; the fields set below ask
        // for `kick_signal` to be sent to this thread (SIGEV_THREAD_ID).
        let mut event: libc::sigevent = unsafe { std::mem::zeroed() };
        event.sigev_notify = libc::SIGEV_THREAD_ID;
        event.sigev_signo = kick_signal();
        // SAFETY: gettid has no preconditions.
        event.sigev_notify_thread_id = unsafe { libc::gettid() };
        let mut timer: libc::timer_t = std::ptr::null_mut();
        // SAFETY: `event` and `timer` are valid for the call; on success the
        // kernel fills in `timer`, which `Drop` deletes exactly once.
        if unsafe { libc::timer_create(libc::CLOCK_MONOTONIC, &mut event, &mut timer) } != 0 {
            return None;
        }
        let ticker = Self(timer);
        let spec = libc::timespec {
            tv_sec: period.as_secs() as libc::time_t,
            tv_nsec: libc::c_long::from(period.subsec_nanos() as i32),
        };
        let its = libc::itimerspec {
            it_interval: spec,
            it_value: spec,
        };
        // SAFETY: `ticker.0` is a live timer created above; `its` is valid.
        if unsafe { libc::timer_settime(ticker.0, 0, &its, std::ptr::null_mut()) } != 0 {
            return None;
        }
        Some(ticker)
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        // SAFETY: the timer was created by `start` and is deleted only here.
        unsafe { libc::timer_delete(self.0) };
    }
}
