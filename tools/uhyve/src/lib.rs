//! uhyve: a minimal KVM hypervisor that runs one hermit image (kernel and
//! application linked into one ELF) like a process. It loads and relocates
//! the image with `hermit-loader`, builds the GDT, identity-mapped page
//! tables and [`BootInfo`](hermit_interface::BootInfo) (layout in
//! [`layout`]), enters the kernel directly in 64-bit mode (no real-mode or
//! firmware code), and serves the port-I/O hypercalls of
//! [`hermit_interface::hypercall`]: Exit, Write (to this process's stdout and
//! stderr), LogRegister (the kernel log ring, read back when the VM ends),
//! StartCpu and Fs.
//!
//! # Host directories
//!
//! [`Config::mounts`] (`--mount HOST:GUEST`) maps host directories into the
//! guest. Each operation is one [`FsCall`](hermit_interface::fs::FsCall),
//! taken from the guest's file-call queue by a poller thread
//! ([`fsqueue`]; no VM exit while it polls) or carried by the Fs hypercall
//! (one VM exit), and served by a per-VM [`hermit_hostfs::Server`] without
//! any uhyve-wide lock: the call block, paths and data
//! buffer are checked against guest RAM, paths are copied out, and file
//! data is read and written by the host kernel directly in guest memory.
//! The server confines every path beneath its mount (see `hermit-hostfs`);
//! without mounts the guest sees no host file at all. Handle 0 reads this
//! process's stdin (blocking that vCPU's thread; the VM's end interrupts
//! the read), handles 1 and 2 write its stdout and stderr.
//!
//! # SMP
//!
//! A VM has [`Config::cpus`] vCPUs (at most [`cpus::MAX_CPUS`]; more than
//! the host has cores is fine), announced in `BootInfo::cpu_count`. vCPU 0
//! boots the kernel on the thread that called [`run`]. The kernel starts
//! vCPU `k` with the StartCpu hypercall; uhyve checks the request (CPU in
//! range and not started yet, 16-byte aligned stack top, 4 KiB aligned CR3,
//! entry, stack and PML4 inside guest memory; otherwise the guest gets
//! `-EINVAL` or `-EFAULT` in the block's `result`), creates the vCPU then
//! (lazily: a VM whose kernel starts no CPU pays nothing for them, see
//! `cargo bench -p uhyve`), puts it in long mode like vCPU 0 with the
//! requested RIP, RSP, RDI = arg, RSI = k and CR3, and runs it on a host
//! thread of its own; `result = 0` is stored before the caller resumes.
//! Each vCPU has an in-kernel local APIC whose ID is its index (also in
//! CPUID leaf 0x1 `EBX[31:24]` and leaf 0xB/0x1F `EDX`), so IPIs through the
//! xAPIC page at `0xFEE00000` or the x2APIC MSRs work between vCPUs.
//! [`Config::pin`] pins vCPU `i`'s thread to a host core.
//!
//! The VM ends when any vCPU exits or fails (fault, triple fault, broken
//! hypercall, KVM error): the first ending wins, the other vCPUs are kicked
//! out of `KVM_RUN` at once (their `immediate_exit` flag and a signal, so a
//! vCPU halted or spinning forever does not keep the VM alive), their
//! threads are joined and the kernel log is read. A vCPU halted with
//! interrupts disabled is seen by a 100 ms per-vCPU timer; when every started
//! vCPU has been in that state for two ticks, nothing can wake any of them
//! (uhyve injects no interrupts) and the VM ends abnormally instead of
//! hanging. (A vCPU woken from such a halt by another vCPU's NMI counts as
//! dead for up to one more tick; uhyve's kernels do not do that.)
//!
//! # Network
//!
//! [`run_with_net`] (`--netif NAME`, `--mac MAC`) gives the guest one
//! modern virtio-net NIC on a PCI bus (configuration mechanism #1 at ports
//! `0xCF8..=0xCFF`, NIC at 00:01.0, BAR0 pre-assigned at
//! [`layout::NIC_BAR`], MSI-X only), connected to a [`Backend`]: a host tap
//! interface ([`tap::Tap`]) or one the caller supplies
//! ([`NetBackend::Custom`]). Register layout, features and the handling of
//! hostile rings are described in [`virtio_net`]. Queue notifies are KVM
//! ioeventfds; one extra thread per NIC sends TX frames and fills RX
//! buffers, and is stopped and joined when the VM ends. Without a NIC there
//! is no PCI bus at all.
//!
//! # Isles
//!
//! With [`Config::isle`] (`--isle N`, `--isle-dir`, `--isle-mem`) the VM
//! is isle N of a multi-kernel set (see [`hermit_isles`]): before the VM is
//! built, uhyve joins the isle (its number must be free; the first isle of
//! a session creates the shared region), maps the region file `MAP_SHARED`
//! and adds it as one more KVM memory slot at
//! [`hermit_interface::isle::REGION_GPA`] (in the MMIO hole, above the NIC
//! BAR, never RAM) and announces it in `BootInfo::isle` with
//! `FLAG_DOORBELL`. The Doorbell hypercall rings another node's doorbell
//! socket. One extra thread waits on this isle's doorbell and injects an
//! MSI with vector [`hermit_interface::isle::DOORBELL_VECTOR`] into vCPU 0
//! for each wake-up, and every 100 ms (and once more when the VM ends,
//! whatever the ending) appends the kernel log's new bytes to
//! `isle<N>/log`. `SIGTERM` ends an isle VM like an abnormal exit (the log is
//! copied, the isle left); without a running isle the signal keeps its
//! default action. A standalone VM has none of this.
//!
//! # Limits
//!
//! It is not a general VMM: besides the in-kernel local APICs and the
//! optional NIC there are no devices (port reads return all ones, writes to
//! unknown ports and unmapped MMIO are ignored), no GDB stub; no CPU hot-unplug,
//! INIT/SIPI from the guest is not how CPUs start (use StartCpu).
//!
//! Performance note for `kvm_pvm` hosts (this project's machines): a stock
//! guest's ring-0 instructions are emulated one by one (about 0.5 us each,
//! see `cargo bench -p uhyve`), ring-3 code runs natively. Unless the
//! kernel command line says `native=off`, uhyve registers a reserved page
//! per vCPU as its virtual-interrupt-flag page before the vCPU first runs
//! (`KVM_SET_MSRS`; refused, harmlessly, by other KVMs), so the kernel runs
//! natively from its first instruction. uhyve's own cost from process
//! start to exit is about 2.5 ms with 2 GiB of guest memory.
//!
//! Everything the guest passes is checked against guest memory through
//! `vm-memory`; a misbehaving guest ends the VM with
//! [`Outcome::abnormal`] set, never the host process.

pub mod cpus;
pub mod fsqueue;
pub mod hypercall;
pub mod layout;
pub mod net;
pub mod pci;
pub mod profile;
pub mod tap;
pub mod virtio_net;
mod vm;

use std::path::PathBuf;

pub use net::{Backend, NetBackend, NetConfig};

/// What to run and how.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// The hermit image (static ELF).
    pub image: PathBuf,
    /// Application arguments, `argv[0]` included.
    pub args: Vec<String>,
    /// Application environment, `NAME=VALUE` entries.
    pub env: Vec<String>,
    /// Guest RAM in bytes (rounded down to 4 KiB). Mapped lazily, so a large
    /// value costs nothing until the guest touches it.
    pub mem_size: u64,
    /// Number of vCPUs, `1..=`[`cpus::MAX_CPUS`]. vCPU 0 boots the kernel;
    /// the kernel starts the others with the StartCpu hypercall.
    pub cpus: u32,
    /// Host core for each vCPU's thread (`pin[i]` for vCPU `i`; the list's
    /// length must equal `cpus`, without duplicates). Cores this process
    /// cannot run on are skipped with a warning on stderr. `None`: no pinning.
    pub pin: Option<Vec<usize>>,
    /// Kernel command line, e.g. `log=debug`.
    pub cmdline: String,
    /// Host directories mapped into the guest; mount index `i` of the Fs
    /// hypercall is `mounts[i]`. Guest paths must differ.
    pub mounts: Vec<hermit_hostfs::Mount>,
    /// Sample the guest's instruction pointer on every vCPU once per
    /// [`profile::PERIOD`] and write the flat profile (by function of the
    /// image) to this file when the VM ends.
    pub profile: Option<PathBuf>,
    /// Run as a multi-kernel isle (see "Isles" above); `None`: a standalone
    /// VM.
    pub isle: Option<IsleConfig>,
}

/// Which isle a VM is, and where the isles live.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IsleConfig {
    /// The isle number, `0..`[`hermit_isles::MAX_ISLES`].
    pub index: u32,
    /// The isle directory ([`hermit_isles::IsleDir`]).
    pub dir: PathBuf,
    /// The region size if this isle starts a session; when other isles
    /// run, their region's size must match (`None`: any).
    pub size: Option<u64>,
}

/// How a VM ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// The guest's exit status; 1 if it ended abnormally.
    pub status: i32,
    /// The kernel log ring's contents (empty if none was registered; a
    /// bracketed uhyve note if the registered ring was invalid).
    pub kernel_log: Vec<u8>,
    /// Why the guest ended without an Exit hypercall (triple fault, KVM
    /// internal error, broken hypercall, ...), if it did.
    pub abnormal: Option<String>,
}

/// Why a VM could not be started. Each message is one line for the user.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The image file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    ImageRead {
        /// The image path.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The image is not a loadable hermit image.
    #[error("{}: {source}", path.display())]
    Image {
        /// The image path.
        path: PathBuf,
        /// What is wrong with it.
        source: hermit_loader::Error,
    },
    /// `/dev/kvm` is missing, not accessible or unusable.
    #[error("no usable /dev/kvm: {0}")]
    NoKvm(String),
    /// Guest memory cannot hold the boot data and the image.
    #[error("{mem} bytes of guest memory are too small: the image needs at least {needed}")]
    MemoryTooSmall {
        /// The requested memory size.
        mem: u64,
        /// The lowest size that would hold boot data and image.
        needed: u64,
    },
    /// More guest memory than uhyve supports.
    #[error("{0} bytes of guest memory are too many (at most 1 TiB)")]
    MemoryTooLarge(u64),
    /// The host refused to map guest memory.
    #[error("cannot map {size} bytes of guest memory: {reason}")]
    Memory {
        /// The requested size.
        size: u64,
        /// The host's reason.
        reason: String,
    },
    /// A fixed-address image would overlap uhyve's boot data.
    #[error(
        "the image is linked at {linked:#x}, inside uhyve's boot area [0, {boot_end:#x}); link it higher or as a PIE"
    )]
    ImageOverlapsBootArea {
        /// The image's link address.
        linked: u64,
        /// End of the boot area.
        boot_end: u64,
    },
    /// Zero CPUs were requested.
    #[error("a VM needs at least one CPU")]
    NoCpus,
    /// More CPUs than uhyve supports were requested.
    #[error("{0} CPUs requested, but uhyve supports at most {max}", max = cpus::MAX_CPUS)]
    TooManyCpus(u32),
    /// More CPUs than this host's KVM supports were requested.
    #[error("{requested} CPUs requested, but this host's KVM supports at most {max}")]
    KvmCpuLimit {
        /// The requested count.
        requested: u32,
        /// KVM's limit (`KVM_CAP_MAX_VCPUS`).
        max: usize,
    },
    /// The pin list does not have one core per vCPU.
    #[error("{cores} host cores listed for pinning, but the VM has {cpus} CPUs")]
    PinCount {
        /// Length of the pin list.
        cores: usize,
        /// The CPU count.
        cpus: u32,
    },
    /// The pin list names a core twice.
    #[error("host core {0} is listed twice for pinning")]
    DuplicatePin(usize),
    /// The boot data could not be written (e.g. a NUL byte in an argument).
    #[error("invalid boot data: {0}")]
    Boot(hermit_loader::Error),
    /// The mounts cannot be served (e.g. a guest path mapped twice).
    #[error("invalid mount: {0}")]
    Mount(#[from] hermit_hostfs::MountError),
    /// The tap device could not be opened.
    #[error(transparent)]
    Tap(#[from] tap::TapError),
    /// The user-mode network could not start (e.g. a forwarded host port
    /// is taken).
    #[error(transparent)]
    UserNet(#[from] hermit_usernet::Error),
    /// The isle cannot be joined (number taken, size mismatch, ...).
    #[error(transparent)]
    Isle(#[from] hermit_isles::Error),
    /// The isle's doorbell thread could not be started.
    #[error("cannot start the isle's doorbell thread: {0}")]
    IsleThread(std::io::Error),
    /// The NIC could not be set up (eventfd or thread creation failed).
    #[error("cannot start the network device: {0}")]
    NetDevice(std::io::Error),
    /// A KVM ioctl failed while setting up the VM.
    #[error("{what} failed: {source}")]
    Kvm {
        /// The ioctl.
        what: &'static str,
        /// The host error.
        source: kvm_ioctls::Error,
    },
}

/// Boots `config.image` in a fresh VM and runs it until it exits.
///
/// The guest's Write hypercalls go straight to this process's stdout and
/// stderr. Returns an [`Error`] if the VM cannot be started; once the guest
/// runs, every ending is an [`Outcome`].
///
/// vCPU 0 runs on the calling thread (pinned to `config.pin[0]` while it
/// runs, then given its old affinity back), every other vCPU on a thread
/// of its own, all joined before this returns. While a vCPU runs, a timer
/// sends its thread `SIGRTMIN` every 100 ms, and the VM's end sends it once
/// more (a no-op handler is installed once per process), so blocking system
/// calls on the calling thread may return `EINTR`.
pub fn run(config: &Config) -> Result<Outcome, Error> {
    vm::run(config, None)
}

/// Like [`run`], with a virtio-net NIC connected to `net.backend` (see
/// [`virtio_net`]); `None` is exactly [`run`]: no PCI bus at all. Besides
/// the vCPU threads, a NIC has one RX thread, stopped and joined before
/// this returns.
pub fn run_with_net(config: &Config, net: Option<NetConfig>) -> Result<Outcome, Error> {
    vm::run(config, net)
}

/// This process's environment as `NAME=VALUE` entries, the way a guest
/// started by it should see it (like a child process would). Entries that
/// are not UTF-8 cannot be represented in the boot info and are left out.
pub fn host_env() -> Vec<String> {
    std::env::vars_os()
        .filter_map(|(k, v)| {
            Some(format!(
                "{}={}",
                k.into_string().ok()?,
                v.into_string().ok()?
            ))
        })
        .collect()
}

/// Checks that `/dev/kvm` exists, is accessible and can create a VM; the
/// error says why not (for tests that must skip with a reason).
pub fn kvm_available() -> Result<(), String> {
    let kvm = vm::open_kvm().map_err(|e| e.to_string())?;
    kvm.create_vm()
        .map(drop)
        .map_err(|e| format!("no usable /dev/kvm: cannot create a VM: {e}"))
}
