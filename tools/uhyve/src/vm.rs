//! The KVM side: creating the VM, placing the boot data, running the vCPUs.
//!
//! vCPU 0 runs on the thread that called [`run`]; every application
//! processor is created when the guest starts it (`StartCpu`) and runs on a
//! host thread of its own. The first vCPU that ends the VM (Exit, a fault,
//! a broken hypercall, ...) records the ending and kicks the others
//! (`immediate_exit` plus [`kick_signal`]), so each leaves `KVM_RUN`
//! promptly; vCPU 0's thread joins them and reads the kernel log.

use std::io::Write as _;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Once, OnceLock, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use std::mem::{offset_of, size_of};

use hermit_interface::hypercall::{self, Nr, errno};
use hermit_interface::{
    GDT_KERNEL_CODE, GDT_KERNEL_DATA, IsleInfo, MAX_MEMORY_REGIONS, MemoryRegion, PhysSlice,
    Platform, isle,
};
use hermit_isles::{Doorbell, Isle, IsleDir, Mapping};
use hermit_loader::{BootParams, Dest, Image};
use kvm_bindings::{
    CpuId, KVM_CAP_SPLIT_IRQCHIP, KVM_MAX_CPUID_ENTRIES, KVM_MP_STATE_HALTED,
    KVM_MP_STATE_RUNNABLE, Msrs, kvm_enable_cap, kvm_mp_state, kvm_msr_entry, kvm_regs,
    kvm_segment, kvm_userspace_memory_region,
};
use kvm_ioctls::{Kvm, VcpuExit, VcpuFd, VmFd};
use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryMmap, GuestMemoryRegion};

use crate::cpus::{self, MAX_CPUS};
use hermit_hostfs::Server;

use crate::fsqueue::{FsQueue, QueueError};
use crate::hypercall::{
    Action, HostOutput, Hypercalls, StartRequest, read_log, read_log_since, read_param, serve_fs,
    store_start_result,
};
use crate::layout::{GDT_ADDR, Layout, NIC_BAR, PAGE_TABLES_ADDR, isle_region};
use crate::net::{Backend, NetBackend, NetConfig};
use crate::pci::{PciBus, PciDevice};
use crate::profile;
use crate::tap::Tap;
use crate::virtio_net::{KvmHooks, VirtioNet, VmHooks as _, Worker};
use crate::{Config, Error, IsleConfig, Outcome};

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
/// How often each vCPU is kicked out of `KVM_RUN` to look for a dead halt.
const HALT_CHECK_PERIOD: Duration = Duration::from_millis(100);

/// Interrupt routes reserved for a (future, user-space) IOAPIC.
const IOAPIC_PINS: u64 = 24;
/// How often an isle's kernel log is copied to its file (and the longest
/// its doorbell thread sleeps).
const LOG_COPY_PERIOD: Duration = Duration::from_millis(100);
/// MSI address of a fixed interrupt to the local APIC with ID 0 (physical
/// destination mode).
const MSI_TO_CPU0: u64 = 0xFEE0_0000;

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

/// Checks the CPU count and pin list; returns the host core of each vCPU
/// (`None`: unpinned), warning once on stderr about cores this process
/// cannot use.
fn plan_pins(config: &Config) -> Result<Vec<Option<usize>>, Error> {
    let n = config.cpus as usize;
    let Some(list) = &config.pin else {
        return Ok(vec![None; n]);
    };
    if list.len() != n {
        return Err(Error::PinCount {
            cores: list.len(),
            cpus: config.cpus,
        });
    }
    for (i, core) in list.iter().enumerate() {
        if list[..i].contains(core) {
            return Err(Error::DuplicatePin(*core));
        }
    }
    let host = cpus::host_cores().unwrap_or_default();
    let missing: Vec<String> = list
        .iter()
        .filter(|c| !host.contains(c))
        .map(usize::to_string)
        .collect();
    if !missing.is_empty() {
        eprintln!(
            "uhyve: warning: host core(s) {} not available to this process; their vCPUs run unpinned",
            missing.join(", ")
        );
    }
    Ok(list
        .iter()
        .map(|c| host.contains(c).then_some(*c))
        .collect())
}

/// A NIC's opened backend and its MAC address.
type OpenedNet = (Box<dyn Backend>, [u8; 6]);

/// Opens the NIC's backend (before the VM exists, so a missing tap fails
/// fast).
fn open_backend(net: Option<NetConfig>) -> Result<Option<OpenedNet>, Error> {
    let Some(net) = net else {
        return Ok(None);
    };
    let backend: Box<dyn Backend> = match net.backend {
        NetBackend::Tap(name) => Box::new(Tap::open(&name)?),
        NetBackend::User(mut config) => {
            config.guest_mac.get_or_insert(net.mac);
            Box::new(hermit_usernet::UserNet::new(config)?)
        }
        NetBackend::Custom(backend) => backend,
    };
    Ok(Some((backend, net.mac)))
}

/// The NIC of a VM that has one: the PCI bus it sits on and its RX thread.
struct Nic {
    device: Arc<VirtioNet>,
    bus: PciBus,
    worker: Mutex<Option<Worker>>,
}

/// Boots `config` with the NIC `net` and runs it to the end; see
/// [`crate::run`].
pub(crate) fn run(config: &Config, net: Option<NetConfig>) -> Result<Outcome, Error> {
    match config.cpus {
        0 => return Err(Error::NoCpus),
        n if n > MAX_CPUS => return Err(Error::TooManyCpus(n)),
        _ => {}
    }
    let pins = plan_pins(config)?;
    let backend = open_backend(net)?;
    let fs = Arc::new(Server::new(config.mounts.clone())?);
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
    let layout = Layout::plan(config.mem_size, boot_info_size, &image, config.cpus)?;
    // Declared before the VM, so the VM fd closes before the region's
    // mapping (a memory slot) goes away, also on the error paths.
    let isle = config.isle.as_ref().map(join_isle).transpose()?;

    let kvm = open_kvm()?;
    if config.cpus > 1 {
        let max = kvm.get_max_vcpus();
        if config.cpus as usize > max {
            return Err(Error::KvmCpuLimit {
                requested: config.cpus,
                max,
            });
        }
    }
    let (vm, mem, vcpu) = create_vm(&kvm, &layout, config.mem_size, isle.as_ref())?;
    let vm = Arc::new(vm);
    let nic = match backend {
        None => None,
        Some((backend, mac)) => {
            let msi = Arc::new(KvmHooks(Arc::clone(&vm)));
            let device = VirtioNet::new(mem.clone(), NIC_BAR as u32, backend, mac, msi)
                .map_err(Error::NetDevice)?;
            let worker = Worker::start(&device).map_err(Error::NetDevice)?;
            let bus = PciBus::new(Some(Arc::clone(&device) as Arc<dyn PciDevice>));
            Some(Nic {
                device,
                bus,
                worker: Mutex::new(Some(worker)),
            })
        }
    };
    // Overlapping this (~0.3 ms: each CPUID traps to the outer hypervisor)
    // with VM creation on a second thread was measured: no gain on 2 cores.
    let mut cpuid = kvm
        .get_supported_cpuid(KVM_MAX_CPUID_ENTRIES)
        .map_err(kvm_err("KVM_GET_SUPPORTED_CPUID"))?;
    set_apic_id(&mut cpuid, 0);
    vcpu.set_cpuid2(&cpuid).map_err(kvm_err("KVM_SET_CPUID2"))?;
    let tsc_khz = vcpu.get_tsc_khz().map_or(0, u64::from);

    let dedicated = pins.iter().all(Option::is_some);
    let isle_info = isle.as_ref().map_or(IsleInfo::NONE, |i| i.info(dedicated));
    let entry = write_boot_data(&mem, &layout, &image, config, tsc_khz, isle_info)?;
    let bias = layout.image.wrapping_sub(image.link_start());
    let starts_natively = image.starts_natively();
    drop(file);
    set_registers(&vcpu, &entry)?;
    let native =
        starts_natively && wants_native(&config.cmdline) && start_native(&vcpu, layout.paravirt);
    install_kick_handler();
    let machine = Arc::new(Machine {
        nic,
        vm,
        mem,
        cpu_count: config.cpus,
        cpuid: (config.cpus > 1).then_some(cpuid),
        helper_cores: cpus::helper_cores(&pins),
        pins,
        stop: AtomicBool::new(false),
        state: Mutex::new(State::new(config.cpus as usize)),
        calls: Mutex::new(Hypercalls::with_cpus(HostOutput, config.cpus)),
        fs,
        fs_queue: OnceLock::new(),
        profile: config.profile.clone().map(|out| Profiling {
            sampler: profile::Sampler::default(),
            out,
            image: config.image.clone(),
            bias,
        }),
        isle,
        paravirt: native.then_some(layout.paravirt),
    });
    machine.run_bsp(vcpu)
}

/// Whether the kernel command line lets the kernel run natively on a
/// `kvm_pvm` host (it does unless it says `native=off`).
fn wants_native(cmdline: &str) -> bool {
    !cmdline.split_ascii_whitespace().any(|o| o == "native=off")
}

/// On a `kvm_pvm` host, for an image that says it copes
/// (`Image::starts_natively`), registers `page` (zeroed guest memory,
/// reserved for this vCPU) as the vCPU's virtual-interrupt-flag page before
/// it first runs, so that the guest runs natively from its first instruction
/// instead of emulated until its kernel registers a page of its own (which
/// it then does; see the kernel's `arch_x86_64::irq`). Besides the time,
/// that matters for code built with SSE arithmetic, which this host's
/// emulator cannot run. Returns whether the host took it; elsewhere the
/// MSR does not exist and nothing changes.
fn start_native(vcpu: &VcpuFd, page: u64) -> bool {
    /// The virtual-interrupt-flag MSR of `kvm_pvm` and its "plain
    /// registration" flag (`arch_x86_64::irq::MSR_PVM_VIF`).
    const MSR_PVM_VIF: u32 = 0x4b56_4d10;
    const VIF_ENABLE: u64 = 1 << 10;
    /// `IA32_STAR`: the host derives the selectors of the interrupt frames
    /// it builds from it (kernel CS in bits 47:32, the host's 32-bit user
    /// CS 0x23 in 63:48), as the kernel sets it too.
    const IA32_STAR: u32 = 0xc000_0081;
    const STAR: u64 = (0x23 << 48) | ((GDT_KERNEL_CODE as u64) << 32);
    let entries = [
        kvm_msr_entry {
            index: MSR_PVM_VIF,
            data: page | VIF_ENABLE,
            ..Default::default()
        },
        kvm_msr_entry {
            index: IA32_STAR,
            data: STAR,
            ..Default::default()
        },
    ];
    // KVM_SET_MSRS stops at the first MSR it refuses and says how many it
    // set: 0 where the paravirtual MSR does not exist.
    Msrs::from_entries(&entries)
        .ok()
        .and_then(|msrs| vcpu.set_msrs(&msrs).ok())
        .is_some_and(|n| n == entries.len())
}

/// Joins the isle `config` asks for and maps its region.
fn join_isle(config: &IsleConfig) -> Result<IsleVm, Error> {
    let isle = IsleDir::new(&config.dir).join(config.index, config.size)?;
    let mapping = isle.map()?;
    release_stale_rank(&mapping, config.index);
    let doorbell = isle.doorbell()?;
    Ok(IsleVm {
        isle,
        mapping,
        doorbell: Mutex::new(Some(doorbell)),
        log: Mutex::new(LogCopy::default()),
        thread: Mutex::new(None),
    })
}

/// Frees iRCCE rank `index` if a previous holder of this isle number was
/// killed before its kernel could release it: holding the isle's lock
/// proves nobody alive owns the rank. A region without an iRCCE header
/// (a new session, or one nobody used for iRCCE) is left alone.
fn release_stale_rank(mapping: &Mapping, index: u32) {
    let Ok(part) = hermit_ircce::SubRegion::new(
        mapping.region(),
        isle::IRCCE_OFFSET as usize,
        mapping.len().saturating_sub(isle::IRCCE_OFFSET as usize),
    ) else {
        return;
    };
    if let Ok(true) = hermit_ircce::release_dead_rank(&part, index as usize) {
        eprintln!("uhyve: isle {index}: released iRCCE rank {index} left by a killed isle");
    }
}

/// An isle VM's membership, shared region and kernel-log copy.
struct IsleVm {
    isle: Isle,
    /// The region's host mapping, the KVM memory slot after the RAM's:
    /// must outlive the VM fd (see [`Machine`]'s field order).
    mapping: Mapping,
    /// Taken by the doorbell thread when it starts.
    doorbell: Mutex<Option<Doorbell>>,
    log: Mutex<LogCopy>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

/// How far the kernel log has been copied to the isle's log file.
#[derive(Default)]
struct LogCopy {
    /// The ring copied from and the stream position reached.
    ring: u64,
    pos: u64,
    /// A failure to read the ring was noted in the file already.
    failed: bool,
}

impl IsleVm {
    /// What the guest's `BootInfo::isle` says; `dedicated` when every vCPU
    /// is pinned to a host core of its own.
    fn info(&self, dedicated: bool) -> IsleInfo {
        IsleInfo {
            region: PhysSlice {
                addr: isle::REGION_GPA,
                len: self.isle.region_len(),
            },
            index: self.isle.index(),
            flags: isle::FLAG_DOORBELL
                | if dedicated {
                    isle::FLAG_DEDICATED_CORES
                } else {
                    0
                },
        }
    }
}

/// Creates the VM with its memory slots, local APIC and vCPU 0.
fn create_vm(
    kvm: &Kvm,
    layout: &Layout,
    mem_size: u64,
    isle: Option<&IsleVm>,
) -> Result<(VmFd, GuestMemoryMmap, VcpuFd), Error> {
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
        // SAFETY: the host range is a live mapping owned by `mem`, which the
        // caller keeps alive until after the VM fd is closed (`Machine`'s
        // field order); slots do not overlap because the layout's RAM ranges
        // do not.
        unsafe { vm.set_user_memory_region(region_desc) }
            .map_err(kvm_err("KVM_SET_USER_MEMORY_REGION"))?;
    }
    if let Some(isle) = isle {
        let len = isle.mapping.len() as u64;
        let range = isle_region(len).ok_or(Error::Isle(hermit_isles::Error::BadSize(len)))?;
        let region_desc = kvm_userspace_memory_region {
            slot: mem.num_regions() as u32,
            flags: 0,
            guest_phys_addr: range.start,
            memory_size: len,
            userspace_addr: isle.mapping.as_ptr() as u64,
        };
        // SAFETY: the host range is the isle's live MAP_SHARED mapping,
        // which the caller keeps alive until after the VM fd is closed (it
        // is declared before the VM in `run`, and follows `vm` in
        // `Machine`); the guest range lies in the MMIO hole, which holds no
        // RAM slot (`isle_region`), and the slot number follows the RAM's.
        unsafe { vm.set_user_memory_region(region_desc) }
            .map_err(kvm_err("KVM_SET_USER_MEMORY_REGION (isle region)"))?;
    }
    // An in-kernel local APIC per vCPU (the kernel's timer and IPIs need
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
    Ok((vm, mem, vcpu))
}

/// Gives the vCPU with index `id` its APIC ID in CPUID: leaf 0x1
/// `EBX[31:24]` (initial APIC ID) and `EDX` of every leaf 0xB / 0x1F subleaf
/// (x2APIC ID). KVM gives its in-kernel LAPIC the same ID (the vCPU index).
fn set_apic_id(cpuid: &mut CpuId, id: u32) {
    for entry in cpuid.as_mut_slice() {
        match entry.function {
            0x1 => entry.ebx = (entry.ebx & 0x00ff_ffff) | ((id & 0xff) << 24),
            0xb | 0x1f => entry.edx = id,
            _ => {}
        }
    }
}

/// Writes GDT, page tables, image and boot info into guest memory; returns
/// where vCPU 0 starts.
fn write_boot_data(
    mem: &GuestMemoryMmap,
    layout: &Layout,
    image: &Image<'_>,
    config: &Config,
    tsc_khz: u64,
    isle: IsleInfo,
) -> Result<Entry, Error> {
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
        cpu_count: config.cpus,
        tsc_khz,
        boot_time_ns,
        image: &loaded,
        memory: &memory[..count],
        acpi_rsdp: 0,
        isle,
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
    Ok(Entry {
        rip: loaded.entry,
        rsp: layout.stack_top,
        rdi: written.addr,
        rsi: 0,
        cr3: PAGE_TABLES_ADDR,
    })
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

/// The registers a vCPU starts with; everything else is the common long
/// mode state of [`set_registers`].
struct Entry {
    rip: u64,
    rsp: u64,
    rdi: u64,
    rsi: u64,
    cr3: u64,
}

/// Puts a vCPU straight into 64-bit mode at `entry` with the boot GDT and
/// interrupts disabled.
fn set_registers(vcpu: &VcpuFd, entry: &Entry) -> Result<(), Error> {
    let mut sregs = vcpu.get_sregs().map_err(kvm_err("KVM_GET_SREGS"))?;
    sregs.cs = segment(GDT_KERNEL_CODE, true);
    let data = segment(GDT_KERNEL_DATA, false);
    (sregs.ds, sregs.es, sregs.fs, sregs.gs, sregs.ss) = (data, data, data, data, data);
    sregs.gdt.base = GDT_ADDR;
    sregs.gdt.limit = hermit_loader::GDT_SIZE as u16 - 1;
    sregs.idt.base = 0;
    sregs.idt.limit = 0;
    sregs.cr3 = entry.cr3;
    sregs.cr4 = CR4_PAE | CR4_OSFXSR | CR4_OSXMMEXCPT;
    sregs.cr0 = CR0_PE | CR0_MP | CR0_ET | CR0_NE | CR0_WP | CR0_PG;
    sregs.efer = EFER_LME | EFER_LMA | EFER_NXE;
    vcpu.set_sregs(&sregs).map_err(kvm_err("KVM_SET_SREGS"))?;
    let regs = kvm_regs {
        rip: entry.rip,
        rsp: entry.rsp,
        rdi: entry.rdi,
        rsi: entry.rsi,
        rflags: 0x2,
        ..Default::default()
    };
    vcpu.set_regs(&regs).map_err(kvm_err("KVM_SET_REGS"))
}

/// How a vCPU ended the VM: the exit status, or why it ended abnormally.
type Ending = Result<i32, String>;

/// A way to make a vCPU thread leave `KVM_RUN` now: its `immediate_exit`
/// flag (for a thread about to enter) and a signal (for one inside).
struct Kick {
    thread: libc::pthread_t,
    immediate_exit: *mut u8,
}

// SAFETY: a `Kick` is only used while `State`'s lock is held, and its
// thread removes it under that lock before it exits and before its vCPU fd
// (whose `kvm_run` mapping `immediate_exit` points into) is dropped; so both
// the thread id and the pointer are valid whenever another thread uses them.
unsafe impl Send for Kick {}

impl Kick {
    fn kick(&self) {
        // SAFETY: see `unsafe impl Send`: the mapping is alive. The byte is
        // only ever written with this atomic store on the host side (KVM
        // reads it on entry), which is what the field exists for.
        unsafe { AtomicU8::from_ptr(self.immediate_exit) }.store(1, Ordering::SeqCst);
        // SAFETY: the thread is alive (see above); the signal's handler is
        // installed (`install_kick_handler`) and does nothing.
        unsafe { libc::pthread_kill(self.thread, kick_signal()) };
    }
}

/// Shared per-VM bookkeeping, behind one lock.
struct State {
    /// vCPUs that are running (vCPU 0 from the start).
    started: Vec<bool>,
    /// vCPUs halted with interrupts disabled on two ticks in a row.
    dead: Vec<bool>,
    /// How to kick each running vCPU's thread.
    kicks: Vec<Option<Kick>>,
    /// Threads of started application processors, joined by vCPU 0's.
    threads: Vec<JoinHandle<()>>,
    /// The first ending; later ones are dropped.
    ending: Option<Ending>,
}

impl State {
    fn new(cpus: usize) -> Self {
        let mut started = vec![false; cpus];
        started[0] = true;
        Self {
            started,
            dead: vec![false; cpus],
            kicks: (0..cpus).map(|_| None).collect(),
            threads: Vec::new(),
            ending: None,
        }
    }
}

/// A running VM shared by its vCPU threads. Field order is drop order: the
/// VM fd closes before the memory it points into is unmapped (vCPU fds are
/// dropped by their threads, which hold a reference to the machine).
struct Machine {
    /// The NIC, if any. Holds references to `vm` and `mem` (so it goes
    /// first); its worker is stopped when the vCPUs are done.
    nic: Option<Nic>,
    vm: Arc<VmFd>,
    mem: GuestMemoryMmap,
    cpu_count: u32,
    /// CPUID for application processors (before their APIC ID is set).
    cpuid: Option<CpuId>,
    /// Host core of each vCPU's thread, if pinned.
    pins: Vec<Option<usize>>,
    /// Where helper threads run (see [`cpus::helper_cores`]), taken before
    /// any thread was pinned.
    helper_cores: Option<Vec<usize>>,
    /// Set once the VM ends; vCPU loops check it before every entry.
    stop: AtomicBool,
    state: Mutex<State>,
    calls: Mutex<Hypercalls<HostOutput>>,
    /// The guest's host file system (serves `Nr::Fs` on any vCPU thread,
    /// concurrently, and the file-call queue's poller).
    fs: Arc<Server>,
    /// The guest's file-call queue, once registered.
    fs_queue: OnceLock<FsQueue>,
    /// With profiling: the RIP samples, the output file, the image and its
    /// load bias.
    profile: Option<Profiling>,
    /// As an isle: membership, region (after `vm`: it backs a memory
    /// slot), doorbell thread and log copy.
    isle: Option<IsleVm>,
    /// On a `kvm_pvm` host, with native execution wanted: the first of the
    /// vCPUs' virtual-interrupt-flag pages (see [`start_native`]).
    paravirt: Option<u64>,
}

/// A profiled VM's samples and where they go.
struct Profiling {
    sampler: profile::Sampler,
    out: PathBuf,
    image: PathBuf,
    bias: u64,
}

/// Locks `m`, ignoring poisoning: the data stays consistent because every
/// critical section only sets plain fields.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Removes a vCPU's [`Kick`] when its loop ends (also when it unwinds).
struct Registered<'a> {
    machine: &'a Machine,
    cpu: usize,
}

impl Drop for Registered<'_> {
    fn drop(&mut self) {
        lock(&self.machine.state).kicks[self.cpu] = None;
        if std::thread::panicking() {
            self.machine.end(
                self.cpu,
                Err(format!(
                    "uhyve bug: the thread of vCPU {} panicked",
                    self.cpu
                )),
            );
        }
    }
}

impl Machine {
    /// Runs vCPU 0 on this thread until the VM ends, joins the other vCPU
    /// threads (and an isle's doorbell thread) and collects the outcome.
    fn run_bsp(self: Arc<Self>, mut vcpu: VcpuFd) -> Result<Outcome, Error> {
        let _term = match &self.isle {
            Some(isle) => Some(self.start_doorbell_thread(isle)?),
            None => None,
        };
        let saved = self.pins[0].and_then(|core| {
            let saved = cpus::affinity()?;
            cpus::pin_current_thread(core).ok().map(|()| saved)
        });
        self.run_vcpu(0, &mut vcpu);
        if let Some(saved) = saved {
            // Best effort: the caller's thread gets its old cores back.
            let _ = cpus::set_affinity(&saved);
        }
        // Once `stop` is set no thread is added, so this drains them all.
        loop {
            // Not held while joining: the thread takes the lock to leave.
            let Some(thread) = lock(&self.state).threads.pop() else {
                break;
            };
            if thread.join().is_err() {
                self.end(0, Err("uhyve bug: a vCPU thread panicked".into()));
            }
        }
        drop(vcpu);
        if let Some(queue) = self.fs_queue.get()
            && !queue.join(kick_signal())
        {
            self.end(0, Err("uhyve bug: the file-call poller panicked".into()));
        }
        if let Some(isle) = &self.isle {
            if let Some(thread) = lock(&isle.thread).take()
                && thread.join().is_err()
            {
                self.end(
                    0,
                    Err("uhyve bug: the isle's doorbell thread panicked".into()),
                );
            }
            self.copy_log();
        }
        self.write_profile();
        if let Some(nic) = &self.nic
            && let Some(worker) = lock(&nic.worker).take()
        {
            worker.stop();
        }
        let ending = lock(&self.state)
            .ending
            .take()
            .unwrap_or_else(|| Err("uhyve bug: the VM stopped without a reason".into()));
        let log_ring = lock(&self.calls).log_ring;
        let kernel_log = match log_ring {
            None => Vec::new(),
            Some(ring) => read_log(&self.mem, ring).unwrap_or_else(|reason| {
                format!("[uhyve: cannot read the kernel log ring: {reason}]\n").into_bytes()
            }),
        };
        Ok(match ending {
            Ok(status) => Outcome {
                status,
                kernel_log,
                abnormal: None,
            },
            Err(reason) => Outcome {
                status: 1,
                kernel_log,
                abnormal: Some(reason),
            },
        })
    }

    /// Starts the isle's doorbell thread; the returned guard makes SIGTERM
    /// end the VM while it lives.
    fn start_doorbell_thread(self: &Arc<Self>, isle: &IsleVm) -> Result<TermGuard, Error> {
        let Some(bell) = lock(&isle.doorbell).take() else {
            return Ok(TermGuard::enter());
        };
        let machine = Arc::clone(self);
        let thread = std::thread::Builder::new()
            .name(format!("isle{}-doorbell", isle.isle.index()))
            .spawn(move || machine.serve_doorbell(&bell))
            .map_err(Error::IsleThread)?;
        *lock(&isle.thread) = Some(thread);
        Ok(TermGuard::enter())
    }

    /// The doorbell thread: turns each wake-up of this isle's doorbell into
    /// an MSI with the doorbell vector to vCPU 0, copies the kernel log to
    /// the isle's file every [`LOG_COPY_PERIOD`], and ends the VM on
    /// SIGTERM. Returns once the VM is stopping ([`Machine::end`] rings
    /// this doorbell to say so).
    fn serve_doorbell(&self, bell: &Doorbell) {
        let msi = KvmHooks(Arc::clone(&self.vm));
        let mut last_copy = Instant::now();
        let mut warned = false;
        while !self.stop.load(Ordering::SeqCst) {
            match bell.wait(LOG_COPY_PERIOD) {
                Ok(true) if !self.stop.load(Ordering::SeqCst) => {
                    let vector = u32::from(isle::DOORBELL_VECTOR);
                    if let Err(e) = msi.signal_msi(MSI_TO_CPU0, vector)
                        && !std::mem::replace(&mut warned, true)
                    {
                        eprintln!("uhyve: warning: cannot deliver an isle doorbell: {e}");
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    if !std::mem::replace(&mut warned, true) {
                        eprintln!("uhyve: warning: the isle's doorbell failed: {e}");
                    }
                    std::thread::sleep(LOG_COPY_PERIOD);
                }
            }
            if TERM_REQUESTED.load(Ordering::SeqCst) {
                self.end(usize::MAX, Err("stopped by SIGTERM".into()));
            }
            if last_copy.elapsed() >= LOG_COPY_PERIOD {
                self.copy_log();
                last_copy = Instant::now();
            }
        }
    }

    /// Appends what the kernel logged since the last call to the isle's log
    /// file (nothing for a standalone VM or before the guest registered its
    /// ring). Called by the doorbell thread and once after the VM ended.
    fn copy_log(&self) {
        let Some(isle) = &self.isle else {
            return;
        };
        let Some(ring) = lock(&self.calls).log_ring else {
            return;
        };
        let mut copy = lock(&isle.log);
        if copy.ring != ring {
            *copy = LogCopy {
                ring,
                ..LogCopy::default()
            };
        }
        // Write errors (a full tmpfs) cannot be reported anywhere better.
        let mut file = isle.isle.log_file();
        match read_log_since(&self.mem, ring, copy.pos) {
            Ok(chunk) => {
                if chunk.skipped > 0 {
                    let _ = writeln!(
                        file,
                        "[uhyve: {} bytes of the kernel log were overwritten before they could be copied]",
                        chunk.skipped
                    );
                }
                let _ = file.write_all(&chunk.bytes);
                copy.pos = chunk.end;
            }
            Err(reason) => {
                if !std::mem::replace(&mut copy.failed, true) {
                    let _ = writeln!(file, "[uhyve: cannot read the kernel log ring: {reason}]");
                }
            }
        }
    }

    /// The body of an application processor's thread.
    fn run_ap(self: &Arc<Self>, cpu: usize, mut vcpu: VcpuFd) {
        if let Some(core) = self.pins[cpu]
            && let Err(e) = cpus::pin_current_thread(core)
        {
            eprintln!("uhyve: warning: cannot pin vCPU {cpu} to host core {core}: {e}");
        }
        self.run_vcpu(cpu, &mut vcpu);
    }

    /// Records the VM's ending (the first one wins) and kicks every other
    /// vCPU out of `KVM_RUN`.
    fn end(&self, cpu: usize, ending: Ending) {
        let mut state = lock(&self.state);
        state.ending.get_or_insert(ending);
        self.stop.store(true, Ordering::SeqCst);
        if let Some(isle) = &self.isle {
            // Wakes the doorbell thread, which then sees `stop`.
            isle.isle.ring(isle.isle.index());
        }
        // A vCPU blocked reading the host's stdin for the guest gives up at
        // the kick below instead of restarting the read.
        self.fs.stop();
        if let Some(queue) = self.fs_queue.get() {
            queue.shutdown();
        }
        for (i, kick) in state.kicks.iter().enumerate() {
            if let Some(kick) = kick
                && i != cpu
            {
                kick.kick();
            }
        }
    }

    /// Runs `vcpu` until the VM ends (by this vCPU or another).
    fn run_vcpu(self: &Arc<Self>, cpu: usize, vcpu: &mut VcpuFd) {
        let immediate_exit: *mut u8 = &mut vcpu.get_kvm_run().immediate_exit;
        lock(&self.state).kicks[cpu] = Some(Kick {
            // SAFETY: pthread_self has no preconditions.
            thread: unsafe { libc::pthread_self() },
            immediate_exit,
        });
        let _registered = Registered { machine: self, cpu };
        let period = if self.profile.is_some() {
            profile::PERIOD
        } else {
            HALT_CHECK_PERIOD
        };
        let _ticker = Ticker::start(period);
        let mut halted_ticks = 0;
        let mut ticks = 0u32;
        let ending = loop {
            if self.stop.load(Ordering::SeqCst) {
                break None;
            }
            let action = match vcpu.run() {
                Ok(VcpuExit::IoOut(port, data)) => match &self.nic {
                    Some(nic) if PciBus::owns_port(port) => {
                        nic.bus.io_out(port, data);
                        Action::Continue
                    }
                    _ => lock(&self.calls).handle_out(&self.mem, port, data),
                },
                Ok(VcpuExit::IoIn(port, data)) => {
                    match &self.nic {
                        Some(nic) if PciBus::owns_port(port) => nic.bus.io_in(port, data),
                        // No device: reads float high, like an empty ISA bus.
                        _ => data.fill(0xff),
                    }
                    Action::Continue
                }
                Ok(VcpuExit::MmioRead(addr, data)) => {
                    if !self
                        .nic
                        .as_ref()
                        .is_some_and(|n| n.device.mmio_read(addr, data))
                    {
                        data.fill(0xff);
                    }
                    Action::Continue
                }
                Ok(VcpuExit::MmioWrite(addr, data)) => {
                    if let Some(nic) = &self.nic {
                        nic.device.mmio_write(addr, data);
                    }
                    Action::Continue
                }
                Ok(VcpuExit::Intr) => self.tick(cpu, vcpu, &mut ticks, &mut halted_ticks),
                Ok(VcpuExit::Hlt) => Action::Abort("the guest halted".into()),
                Ok(VcpuExit::Shutdown) => {
                    Action::Abort("the guest shut down (triple fault)".into())
                }
                Ok(VcpuExit::InternalError) => {
                    let run = vcpu.get_kvm_run();
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
                Err(e) if e.errno() == libc::EINTR => {
                    if self.stop.load(Ordering::SeqCst) {
                        break None;
                    }
                    self.tick(cpu, vcpu, &mut ticks, &mut halted_ticks)
                }
                Err(e) if e.errno() == libc::EAGAIN => Action::Continue,
                Err(e) => Action::Abort(format!("KVM_RUN failed: {e}")),
            };
            let action = match action {
                Action::StartCpu(request) => self.start_cpu(&request),
                Action::Fs(block) => serve_fs(&self.mem, &self.fs, block),
                Action::FsQueue(block) => self.register_fs_queue(block),
                Action::FsKick(slot) => match self.fs_queue.get() {
                    Some(queue) => {
                        queue.kick(slot);
                        Action::Continue
                    }
                    None => Action::Abort("hypercall FsKick before FsQueue".into()),
                },
                Action::Doorbell(node) => {
                    // A standalone VM has no other nodes to ring; an isle
                    // drops rings to nodes that do not run.
                    if let Some(isle) = &self.isle {
                        isle.isle.ring(node);
                    }
                    Action::Continue
                }
                other => other,
            };
            match action {
                Action::Continue
                | Action::StartCpu(_)
                | Action::Fs(_)
                | Action::Doorbell(_)
                | Action::FsQueue(_)
                | Action::FsKick(_) => {}
                Action::Exit(status) => break Some(Ok(status)),
                Action::Abort(reason) => break Some(Err(self.describe(cpu, vcpu, &reason))),
            }
        };
        if let Some(ending) = ending {
            self.end(cpu, ending);
        }
    }

    /// The guest's [`Nr::FsQueue`](hermit_interface::hypercall::Nr::FsQueue)
    /// hypercall with its parameter block at `block`: starts the poller on
    /// the page it names (once) and stores the result.
    fn register_fs_queue(&self, block: u64) -> Action {
        const SIZE: usize = size_of::<hypercall::FsQueue>();
        let raw = match read_param::<SIZE>(&self.mem, Nr::FsQueue, block) {
            Ok(raw) => raw,
            Err(abort) => return abort,
        };
        let page = u64::from_le_bytes(raw[..8].try_into().unwrap_or_default());
        let result = {
            // Held while starting, so that two vCPUs cannot both start one.
            let _state = lock(&self.state);
            if self.fs_queue.get().is_some() {
                Err(QueueError::Again)
            } else {
                let cores = self.helper_cores.clone();
                FsQueue::start(self.mem.clone(), Arc::clone(&self.fs), page, cores)
                    .map(|queue| drop(self.fs_queue.set(queue)))
            }
        };
        let result = result.map_or_else(|e| e.errno(), |()| 0);
        let at = GuestAddress(block + offset_of!(hypercall::FsQueue, result) as u64);
        // The whole block was readable, so its result field is writable.
        match self.mem.write_slice(&result.to_le_bytes(), at) {
            Ok(()) => Action::Continue,
            Err(e) => Action::Abort(format!("hypercall FsQueue: cannot store the result: {e}")),
        }
    }

    /// An abnormal ending's message: which vCPU (if there are several) and
    /// where it was.
    fn describe(&self, cpu: usize, vcpu: &VcpuFd, reason: &str) -> String {
        let rip = vcpu
            .get_regs()
            .map_or_else(|_| String::new(), |r| format!(" at rip {:#x}", r.rip));
        if self.cpu_count > 1 {
            format!("vCPU {cpu}: {reason}{rip}")
        } else {
            format!("{reason}{rip}")
        }
    }

    /// Called when the ticker kicked `vcpu` out of `KVM_RUN`: takes a
    /// profile sample if profiling, and checks for dead halts every
    /// [`HALT_CHECK_PERIOD`].
    fn tick(&self, cpu: usize, vcpu: &VcpuFd, ticks: &mut u32, halted_ticks: &mut u32) -> Action {
        let Some(profiling) = &self.profile else {
            return self.check_halt(cpu, vcpu, halted_ticks);
        };
        if let Ok(regs) = vcpu.get_regs() {
            profiling.sampler.record(regs.rip);
        }
        *ticks += 1;
        let every = (HALT_CHECK_PERIOD.as_micros() / profile::PERIOD.as_micros()).max(1) as u32;
        if ticks.is_multiple_of(every) {
            self.check_halt(cpu, vcpu, halted_ticks)
        } else {
            Action::Continue
        }
    }

    /// Writes the profile, if the VM was profiled (failures are reported
    /// on stderr: the run itself succeeded).
    fn write_profile(&self) {
        let Some(p) = &self.profile else {
            return;
        };
        let (samples, dropped) = p.sampler.take();
        let symbols = std::fs::read(&p.image)
            .map(|bytes| profile::Symbols::load(&bytes, p.bias))
            .unwrap_or_default();
        let text = profile::report(&samples, dropped, &symbols);
        if let Err(e) = std::fs::write(&p.out, text) {
            eprintln!(
                "uhyve: cannot write the profile to {}: {e}",
                p.out.display()
            );
        }
    }

    /// Called when the ticker kicked `vcpu` out of `KVM_RUN`. A vCPU halted
    /// with interrupts disabled on two consecutive ticks is dead unless
    /// another vCPU sends it an NMI or INIT; when every started vCPU is dead
    /// nothing can wake any of them (uhyve sends no interrupts), so the VM
    /// ends instead of hanging.
    fn check_halt(&self, cpu: usize, vcpu: &VcpuFd, halted_ticks: &mut u32) -> Action {
        let halted = vcpu
            .get_mp_state()
            .is_ok_and(|s| s.mp_state == KVM_MP_STATE_HALTED);
        let masked = vcpu.get_regs().is_ok_and(|r| r.rflags & RFLAGS_IF == 0);
        if !(halted && masked) {
            if *halted_ticks >= 2 {
                lock(&self.state).dead[cpu] = false;
            }
            *halted_ticks = 0;
            return Action::Continue;
        }
        *halted_ticks = halted_ticks.saturating_add(1);
        if *halted_ticks < 2 {
            return Action::Continue;
        }
        let mut state = lock(&self.state);
        state.dead[cpu] = true;
        let all_dead = state
            .started
            .iter()
            .zip(&state.dead)
            .all(|(&s, &d)| !s || d);
        if !all_dead {
            return Action::Continue;
        }
        if self.cpu_count == 1 {
            Action::Abort("the guest halted with interrupts disabled".into())
        } else {
            let n = state.started.iter().filter(|&&s| s).count();
            Action::Abort(format!(
                "all {n} started vCPUs halted with interrupts disabled"
            ))
        }
    }

    /// Serves a checked StartCpu request on the calling vCPU's thread:
    /// creates the vCPU, gives it its own thread and stores the result
    /// before the caller resumes.
    fn start_cpu(self: &Arc<Self>, request: &StartRequest) -> Action {
        let cpu = request.cpu as usize;
        let mut state = lock(&self.state);
        if self.stop.load(Ordering::SeqCst) {
            // The VM is ending; the caller stops before it resumes.
            return Action::Continue;
        }
        if state.started.get(cpu) != Some(&false) {
            drop(state);
            return store_start_result(&self.mem, request.block, -errno::EINVAL);
        }
        let vcpu = match self.create_ap(request) {
            Ok(vcpu) => vcpu,
            Err(e) => return Action::Abort(format!("cannot start vCPU {cpu}: {e}")),
        };
        let machine = Arc::clone(self);
        let thread = std::thread::Builder::new()
            .name(format!("vcpu{cpu}"))
            .spawn(move || machine.run_ap(cpu, vcpu));
        match thread {
            Ok(thread) => {
                state.started[cpu] = true;
                state.threads.push(thread);
            }
            Err(e) => {
                return Action::Abort(format!("cannot start a host thread for vCPU {cpu}: {e}"));
            }
        }
        drop(state);
        store_start_result(&self.mem, request.block, 0)
    }

    /// Creates application processor `request.cpu` in long mode at the
    /// requested entry, ready to run.
    fn create_ap(&self, request: &StartRequest) -> Result<VcpuFd, Error> {
        let vcpu = self
            .vm
            .create_vcpu(u64::from(request.cpu))
            .map_err(kvm_err("KVM_CREATE_VCPU"))?;
        if let Some(cpuid) = &self.cpuid {
            let mut cpuid = cpuid.clone();
            set_apic_id(&mut cpuid, request.cpu);
            vcpu.set_cpuid2(&cpuid).map_err(kvm_err("KVM_SET_CPUID2"))?;
        }
        set_registers(
            &vcpu,
            &Entry {
                rip: request.entry,
                rsp: request.stack_top,
                rdi: request.arg,
                rsi: u64::from(request.cpu),
                cr3: request.cr3,
            },
        )?;
        if let Some(first) = self.paravirt {
            // The layout has a page per vCPU; `request.cpu` was checked
            // against the vCPU count.
            start_native(&vcpu, first + u64::from(request.cpu) * 4096);
        }
        // With an in-kernel LAPIC an AP starts in "wait for SIPI"; it is
        // started directly instead.
        vcpu.set_mp_state(kvm_mp_state {
            mp_state: KVM_MP_STATE_RUNNABLE,
        })
        .map_err(kvm_err("KVM_SET_MP_STATE"))?;
        Ok(vcpu)
    }
}

/// Isle VMs running in this process: while there are any, SIGTERM ends
/// them instead of the process.
static RUNNING_ISLES: AtomicUsize = AtomicUsize::new(0);
/// Set by the SIGTERM handler; the isles' doorbell threads end their VMs.
static TERM_REQUESTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_term(signal: libc::c_int) {
    if RUNNING_ISLES.load(Ordering::SeqCst) > 0 {
        TERM_REQUESTED.store(true, Ordering::SeqCst);
        return;
    }
    // No isle runs: the signal's default action (termination).
    // SAFETY: `signal` and `raise` are async-signal-safe; SIG_DFL is a
    // valid disposition.
    unsafe {
        libc::signal(signal, libc::SIG_DFL);
        libc::raise(signal);
    }
}

/// Counts a running isle VM for [`on_term`] while it lives.
struct TermGuard;

impl TermGuard {
    /// Installs the SIGTERM handler (once per process, and only if the
    /// signal still has its default action: a program that handles
    /// SIGTERM itself keeps its handler) and counts this VM.
    fn enter() -> Self {
        static HANDLER: Once = Once::new();
        HANDLER.call_once(|| {
            // SAFETY: querying the current action with a null new action
            // only writes `old`, a valid all-zero `sigaction`.
            let mut old: libc::sigaction = unsafe { std::mem::zeroed() };
            // SAFETY: as above.
            if unsafe { libc::sigaction(libc::SIGTERM, std::ptr::null(), &mut old) } != 0
                || old.sa_sigaction != libc::SIG_DFL
            {
                return;
            }
            // SAFETY: an all-zero `sigaction` is valid (empty mask, no
            // flags); `on_term` only touches atomics or restores the default
            // action and re-raises, all async-signal-safe.
            unsafe {
                let mut action: libc::sigaction = std::mem::zeroed();
                action.sa_sigaction = on_term as extern "C" fn(libc::c_int) as usize;
                libc::sigemptyset(&mut action.sa_mask);
                libc::sigaction(libc::SIGTERM, &action, std::ptr::null_mut());
            }
        });
        if RUNNING_ISLES.fetch_add(1, Ordering::SeqCst) == 0 {
            // A SIGTERM that came after the last isle VM ended is stale.
            TERM_REQUESTED.store(false, Ordering::SeqCst);
        }
        Self
    }
}

impl Drop for TermGuard {
    fn drop(&mut self) {
        RUNNING_ISLES.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The signal that kicks a vCPU thread; its handler does nothing.
pub(crate) fn kick_signal() -> libc::c_int {
    libc::SIGRTMIN()
}

extern "C" fn ignore_signal(_: libc::c_int) {}

/// Installs the no-op handler of [`kick_signal`] (once per process), so the
/// signal interrupts `KVM_RUN` with `EINTR` instead of killing the process.
pub(crate) fn install_kick_handler() {
    static HANDLER: Once = Once::new();
    HANDLER.call_once(|| {
        // SAFETY: an all-zero `sigaction` is a valid value (empty mask, no
        // flags); the handler is an `extern "C"` function that does nothing,
        // so it is async-signal-safe. Without SA_RESTART the interrupted
        // KVM_RUN returns EINTR, which is the point.
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = ignore_signal as extern "C" fn(libc::c_int) as usize;
            libc::sigemptyset(&mut action.sa_mask);
            libc::sigaction(kick_signal(), &action, std::ptr::null_mut());
        }
    });
}

/// A per-thread POSIX timer that periodically sends [`kick_signal`] to the
/// vCPU thread, so a `KVM_RUN` blocked in an in-kernel `hlt` returns
/// `EINTR` and the loop can look at the vCPU. Deleted on drop.
struct Ticker(libc::timer_t);

impl Ticker {
    /// Starts the timer; `None` if the host refuses (then dead halts hang,
    /// as with any other KVM user).
    fn start(period: Duration) -> Option<Self> {
        install_kick_handler();
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
