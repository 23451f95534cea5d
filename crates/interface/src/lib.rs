//! The one definition of every boundary between a hermit kernel and whatever
//! started it: the boot-info structure a loader hands to the kernel, the
//! register state at kernel entry, uhyve's port-I/O hypercalls, and the I/O
//! ports the kernel uses under QEMU.
//!
//! This crate is `no_std`, has no dependencies and contains only `#[repr(C)]`
//! data and constants, so the kernel (guest side) and uhyve, the PVH loader
//! and the proxy (host side) agree on layout by construction. It is not a
//! loader: placing an image into memory lives in `hermit-loader`.
//!
//! # Kernel entry contract
//!
//! Whoever starts a kernel (uhyve directly, or the PVH loader under QEMU)
//! enters it at the ELF entry point of the relocated image with:
//! - the CPU in 64-bit long mode, paging on, interrupts disabled
//!   (`RFLAGS = 0x2`), `CR0.WP`, `EFER.NXE` set;
//! - an identity map (virtual == physical) of at least `[4 KiB, 4 GiB)` and
//!   of all RAM listed in the memory map, writable, executable and
//!   user-accessible (U/S set at every level, so the kernel may run code at
//!   CPL 3 without rewriting the tables): 4 KiB pages
//!   in the first 2 MiB with the null page unmapped (null-pointer accesses
//!   fault), 2 MiB pages above;
//! - a GDT with a flat 64-bit code segment at selector [`GDT_KERNEL_CODE`] and
//!   a data segment at [`GDT_KERNEL_DATA`] (the kernel loads its own later);
//! - `RSP` inside a boot stack of at least [`BOOT_STACK_SIZE`] bytes whose top
//!   is 16-byte aligned (`RSP` is that top);
//! - `RDI` = guest-physical address of a valid [`BootInfo`].
//!
//! Application processors (uhyve: started by [`hypercall::Nr::StartCpu`])
//! enter at the address the kernel asked for, in the same mode with the same
//! GDT, with `CR3` as requested, `RSP` = the requested stack top,
//! `RDI` = the requested argument and `RSI` = the CPU's index
//! (`1..cpu_count`).
//!
//! [`BootInfo`] and everything it points to lie in memory that the memory map
//! does not list as [`MemoryKind::Usable`], so the kernel may read it at any
//! time.
// Always `no_std`, even for host users: the PVH loader and the kernel share
// one build with the host tools, and cargo unifies a package's features
// across targets, so a `std` feature would leak into the bare-metal build.
#![no_std]
#![forbid(unsafe_code)]

#[cfg(test)]
extern crate std;

pub mod errno;
pub mod fs;

/// `BootInfo::magic`: "HRMTBOOT" in little-endian byte order.
pub const BOOT_INFO_MAGIC: u64 = u64::from_le_bytes(*b"HRMTBOOT");
/// `BootInfo::version`; bumped on every incompatible layout change.
pub const BOOT_INFO_VERSION: u32 = 3;
/// Maximum number of entries in [`BootInfo::memory`].
pub const MAX_MEMORY_REGIONS: usize = 32;
/// Minimum size of the boot stack the loader provides.
pub const BOOT_STACK_SIZE: u64 = 256 * 1024;
/// Selector of the loader's flat 64-bit code segment.
pub const GDT_KERNEL_CODE: u16 = 0x08;
/// Selector of the loader's flat data segment.
pub const GDT_KERNEL_DATA: u16 = 0x10;

/// Which hypervisor the kernel runs on; selects console and exit mechanism.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Platform {
    /// uhyve: console, exit and host services through [`hypercall`]s.
    Uhyve = 1,
    /// QEMU (PVH boot): serial ports and `isa-debug-exit`, see [`qemu`].
    Qemu = 2,
}

/// The kind of a physical memory range.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemoryKind {
    /// Free RAM the kernel may allocate.
    Usable = 1,
    /// RAM that holds the kernel image, boot stack, page tables or boot info.
    Reserved = 2,
}

/// One physical memory range. `start` and `len` are multiples of 4 KiB.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemoryRegion {
    /// First byte (guest physical).
    pub start: u64,
    /// Length in bytes.
    pub len: u64,
    /// What the range is: a [`MemoryKind`] value (raw, so that a bad value
    /// from a loader cannot be an invalid enum).
    pub kind: u32,
    /// Zero.
    pub _reserved: u32,
}

impl MemoryRegion {
    /// An empty placeholder entry.
    pub const EMPTY: Self = Self {
        start: 0,
        len: 0,
        kind: MemoryKind::Reserved as u32,
        _reserved: 0,
    };

    /// The kind, if it is a known one.
    pub const fn kind(&self) -> Option<MemoryKind> {
        match self.kind {
            1 => Some(MemoryKind::Usable),
            2 => Some(MemoryKind::Reserved),
            _ => None,
        }
    }

    /// One past the last byte.
    pub const fn end(&self) -> u64 {
        self.start + self.len
    }
}

/// A byte range in guest-physical memory (`addr == 0 && len == 0` means none).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PhysSlice {
    /// Guest-physical address of the first byte.
    pub addr: u64,
    /// Length in bytes.
    pub len: u64,
}

/// A list of strings in guest memory: `count` NUL-terminated UTF-8 strings
/// stored back to back in `bytes`. Environment entries have the form
/// `NAME=VALUE`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StringList {
    /// The packed strings, each with its terminating NUL.
    pub bytes: PhysSlice,
    /// Number of strings.
    pub count: u64,
}

/// The image's thread-local storage template (the ELF `PT_TLS` segment).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TlsTemplate {
    /// Guest-physical address of the initialised part (`.tdata`).
    pub start: u64,
    /// Size of the initialised part.
    pub file_size: u64,
    /// Total size including `.tbss`.
    pub mem_size: u64,
    /// Required alignment.
    pub align: u64,
}

/// Everything a loader tells the kernel at entry (`RDI` points to it).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct BootInfo {
    /// [`BOOT_INFO_MAGIC`].
    pub magic: u64,
    /// [`BOOT_INFO_VERSION`].
    pub version: u32,
    /// The hypervisor: a [`Platform`] value (raw, see [`BootInfo::platform`]).
    pub platform: u32,
    /// Number of CPUs the VM has.
    pub cpu_count: u32,
    /// Number of valid entries in `memory`.
    pub memory_count: u32,
    /// TSC frequency in kHz, 0 if the host does not know it.
    pub tsc_khz: u64,
    /// Host wall-clock time at boot in nanoseconds since the Unix epoch, 0 if unknown.
    pub boot_time_ns: u64,
    /// The loaded image, from its lowest segment to the end of `.bss`.
    pub image: PhysSlice,
    /// Where the image was loaded relative to its link address.
    pub load_bias: u64,
    /// TLS template, all zero when the image has none.
    pub tls: TlsTemplate,
    /// Kernel command line (UTF-8, no NUL), e.g. `log=debug`.
    pub cmdline: PhysSlice,
    /// Application arguments; the first is the program name.
    pub args: StringList,
    /// Application environment, `NAME=VALUE` entries.
    pub env: StringList,
    /// The physical memory map, sorted by address, non-overlapping.
    pub memory: [MemoryRegion; MAX_MEMORY_REGIONS],
    /// Guest-physical address of the ACPI RSDP, 0 if the loader does not
    /// know it (uhyve has no ACPI; under QEMU the kernel then searches the
    /// BIOS area itself).
    pub acpi_rsdp: u64,
    /// Multi-kernel isle membership (appended in version 3);
    /// [`IsleInfo::NONE`] for a standalone VM.
    pub isle: IsleInfo,
}

/// Where an isle finds the shared region it shares with the other isles and
/// the Linux host (see [`isle`]).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IsleInfo {
    /// The shared region in guest-physical memory. Zero length under QEMU,
    /// where the kernel finds it as the `ivshmem` PCI device's BAR 2.
    pub region: PhysSlice,
    /// This isle's number, `0..isle::MAX_ISLES`, or [`isle::NOT_AN_ISLE`].
    pub index: u32,
    /// [`isle::FLAG_DOORBELL`] when [`hypercall::Nr::Doorbell`] works
    /// (otherwise waiters poll), [`isle::FLAG_DEDICATED_CORES`] when the
    /// isle's vCPUs are pinned.
    pub flags: u32,
}

impl IsleInfo {
    /// Not an isle: a standalone VM.
    pub const NONE: Self = Self {
        region: PhysSlice { addr: 0, len: 0 },
        index: isle::NOT_AN_ISLE,
        flags: 0,
    };

    /// This isle's number, if the VM is one.
    pub const fn index(&self) -> Option<u32> {
        if self.index < isle::MAX_ISLES {
            Some(self.index)
        } else {
            None
        }
    }

    /// Where the kernel finds the shared region, after checking what the
    /// launcher passed: nowhere (not an isle), a mapped slice (uhyve,
    /// checked with [`isle::check_mapped`]) or on PCI (a zero length).
    pub const fn location(&self) -> Result<isle::Location, isle::RegionFault> {
        if self.index().is_none() {
            return Ok(isle::Location::NotAnIsle);
        }
        if self.region.len == 0 {
            return Ok(isle::Location::Pci);
        }
        match isle::check_mapped(self.region.addr, self.region.len) {
            Ok(()) => Ok(isle::Location::Mapped(self.region)),
            Err(e) => Err(e),
        }
    }
}

/// The multi-kernel model: several isles (one VM each, on their own host
/// cores) and the Linux host share one memory region.
///
/// The region is a host file (see the `hermit-isles` tool crate) mapped into
/// every isle: by uhyve at [`REGION_GPA`], by QEMU as `ivshmem-plain`. Its
/// first [`MMNIF_SIZE`] bytes carry the mmnif network rings (one node per
/// isle plus [`HOST_NODE`] for Linux), the rest the iRCCE message-passing
/// buffers (one UE per isle, rank = isle number). Each part starts with the
/// versioned header of its protocol, so isles built from different layouts
/// refuse each other cleanly.
///
/// mmnif addresses: the subnet [`SUBNET`]`/`[`PREFIX_LEN`], Linux at
/// [`host_ip`] (`.1`), isle `n` at [`isle_ip`]`(n)` (`.n+2`), as in the
/// original HermitCore.
pub mod isle {
    /// Most isles one host runs at once (isle numbers `0..MAX_ISLES`).
    pub const MAX_ISLES: u32 = 8;
    /// [`super::IsleInfo::index`] of a standalone VM.
    pub const NOT_AN_ISLE: u32 = u32::MAX;
    /// The mmnif node (and doorbell target) of the Linux host.
    pub const HOST_NODE: u32 = MAX_ISLES;
    /// Guest-physical address uhyve maps the region at: inside the MMIO hole
    /// below 4 GiB, so the boot identity map already covers it.
    pub const REGION_GPA: u64 = 0xD000_0000;
    /// Largest region (it must end below the IOAPIC at `0xFEC0_0000`).
    pub const REGION_MAX: u64 = 512 << 20;
    /// Region size when the user does not choose one.
    pub const REGION_DEFAULT: u64 = 64 << 20;
    /// Smallest region: the mmnif part plus 1 MiB of iRCCE buffers.
    pub const REGION_MIN: u64 = MMNIF_SIZE + (1 << 20);
    /// Offset of the mmnif part.
    pub const MMNIF_OFFSET: u64 = 0;
    /// Size of the mmnif part.
    pub const MMNIF_SIZE: u64 = 8 << 20;
    /// Offset of the iRCCE part; it runs to the end of the region.
    pub const IRCCE_OFFSET: u64 = MMNIF_OFFSET + MMNIF_SIZE;
    /// Interrupt vector uhyve injects (MSI to CPU 0) when another node rang
    /// this isle's doorbell.
    pub const DOORBELL_VECTOR: u8 = 0x31;
    /// [`super::IsleInfo::flags`]: doorbells are delivered.
    pub const FLAG_DOORBELL: u32 = 1;
    /// [`super::IsleInfo::flags`]: every vCPU of this isle is pinned to a
    /// host core of its own (a core list in `HERMIT_CPUS`), so its waiters
    /// may spin longer before they sleep.
    pub const FLAG_DEDICATED_CORES: u32 = 2;
    /// The mmnif subnet.
    pub const SUBNET: [u8; 4] = [192, 168, 28, 0];
    /// The mmnif subnet's prefix length.
    pub const PREFIX_LEN: u8 = 24;

    /// IPv4 address of the Linux host on mmnif.
    pub const fn host_ip() -> [u8; 4] {
        [SUBNET[0], SUBNET[1], SUBNET[2], 1]
    }

    /// IPv4 address of isle `n` on mmnif (`n < MAX_ISLES`).
    pub const fn isle_ip(n: u32) -> [u8; 4] {
        [SUBNET[0], SUBNET[1], SUBNET[2], 2 + n as u8]
    }

    /// The mmnif node an address in the subnet belongs to: isles by
    /// number, the host as [`HOST_NODE`]; `None` outside the subnet or for
    /// an unused host part.
    pub const fn node_of(ip: [u8; 4]) -> Option<u32> {
        if ip[0] != SUBNET[0] || ip[1] != SUBNET[1] || ip[2] != SUBNET[2] {
            return None;
        }
        match ip[3] {
            1 => Some(HOST_NODE),
            n if n >= 2 && ((n - 2) as u32) < MAX_ISLES => Some((n - 2) as u32),
            _ => None,
        }
    }

    /// Where an isle's shared region is (see [`super::IsleInfo::location`]).
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub enum Location {
        /// The VM is not an isle.
        NotAnIsle,
        /// Mapped by the hypervisor at this guest-physical slice.
        Mapped(super::PhysSlice),
        /// The `ivshmem` PCI device's BAR 2 (QEMU).
        Pci,
    }

    /// Why a shared region cannot be used.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub enum RegionFault {
        /// Shorter than [`REGION_MIN`] or longer than [`REGION_MAX`].
        Size(u64),
        /// Start or length not a multiple of 4 KiB.
        Misaligned {
            /// The start.
            addr: u64,
            /// The length.
            len: u64,
        },
        /// Not inside `[REGION_GPA, REGION_GPA + REGION_MAX)`.
        Outside {
            /// The start.
            addr: u64,
            /// The length.
            len: u64,
        },
    }

    impl core::fmt::Display for RegionFault {
        fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
            match *self {
                Self::Size(len) => write!(
                    f,
                    "shared region of {len:#x} bytes is not between {REGION_MIN:#x} and {REGION_MAX:#x}"
                ),
                Self::Misaligned { addr, len } => {
                    write!(f, "shared region {addr:#x}+{len:#x} is not page aligned")
                }
                Self::Outside { addr, len } => write!(
                    f,
                    "shared region {addr:#x}+{len:#x} lies outside {REGION_GPA:#x}+{REGION_MAX:#x}"
                ),
            }
        }
    }

    /// Checks the size of a region, wherever it is: between [`REGION_MIN`]
    /// and [`REGION_MAX`] and a whole number of 4 KiB pages.
    pub const fn check_size(len: u64) -> Result<(), RegionFault> {
        if len < REGION_MIN || len > REGION_MAX {
            return Err(RegionFault::Size(len));
        }
        if !len.is_multiple_of(4096) {
            return Err(RegionFault::Misaligned { addr: 0, len });
        }
        Ok(())
    }

    /// Checks a region a hypervisor mapped: its size ([`check_size`]), a
    /// page-aligned start, and the whole region inside
    /// `[REGION_GPA, REGION_GPA + REGION_MAX)`.
    pub const fn check_mapped(addr: u64, len: u64) -> Result<(), RegionFault> {
        if let Err(e) = check_size(len) {
            return Err(e);
        }
        if !addr.is_multiple_of(4096) {
            return Err(RegionFault::Misaligned { addr, len });
        }
        match addr.checked_add(len) {
            Some(end) if addr >= REGION_GPA && end <= REGION_GPA + REGION_MAX => Ok(()),
            _ => Err(RegionFault::Outside { addr, len }),
        }
    }

    const _: () = assert!(REGION_GPA + REGION_MAX <= 0xFEC0_0000);
    const _: () = assert!(REGION_DEFAULT >= REGION_MIN && REGION_DEFAULT <= REGION_MAX);
}

impl BootInfo {
    /// The platform, if it is a known one.
    pub const fn platform(&self) -> Option<Platform> {
        match self.platform {
            1 => Some(Platform::Uhyve),
            2 => Some(Platform::Qemu),
            _ => None,
        }
    }

    /// The valid memory-map entries.
    pub fn memory_regions(&self) -> &[MemoryRegion] {
        let n = (self.memory_count as usize).min(MAX_MEMORY_REGIONS);
        &self.memory[..n]
    }
}

/// uhyve hypercalls.
///
/// The guest issues hypercall `nr` with a 32-bit `out` to port
/// [`PORT_BASE`](hypercall::PORT_BASE)` + nr`; the value written is the
/// guest-physical address of the call's parameter struct, which therefore
/// must lie below 4 GiB. The hypervisor validates every address and length in
/// the struct against guest memory before touching it and writes results
/// back into the struct before the guest resumes.
pub mod hypercall {
    /// Port of hypercall number 0.
    pub const PORT_BASE: u16 = 0x500;

    /// Hypercall numbers (offsets from [`PORT_BASE`]).
    #[repr(u16)]
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub enum Nr {
        /// [`Exit`]: end the VM with a status.
        Exit = 0,
        /// [`Write`]: write to the host's stdout or stderr.
        Write = 1,
        /// [`LogRegister`]: tell the host where the kernel log ring is.
        LogRegister = 2,
        /// [`StartCpu`]: start an application processor.
        StartCpu = 3,
        /// A host file-system operation: the parameter block is a
        /// [`FsCall`](crate::fs::FsCall).
        Fs = 4,
        /// Ring an isle's doorbell. Unlike the other calls, the value
        /// written is not an address but the target node: an isle number
        /// or [`HOST_NODE`](crate::isle::HOST_NODE). Fire and forget: the
        /// host drops rings to nodes that do not run.
        Doorbell = 5,
        /// [`FsQueue`]: register the page of the guest's file-call queue
        /// (see [`crate::fs::queue`]), so that file calls need no VM exit
        /// while the host polls it.
        FsQueue = 6,
        /// The file-call queue's slot whose index is the value written
        /// needs the host now: the poller sleeps, or the call takes long.
        /// The host runs the call on the calling vCPU if nobody took it yet,
        /// else waits for it to be done, and wakes the poller. An index out
        /// of range ends the VM.
        FsKick = 7,
    }

    impl Nr {
        /// The hypercall whose port is `port`, if any.
        pub fn from_port(port: u16) -> Option<Self> {
            match port.checked_sub(PORT_BASE)? {
                0 => Some(Self::Exit),
                1 => Some(Self::Write),
                2 => Some(Self::LogRegister),
                3 => Some(Self::StartCpu),
                4 => Some(Self::Fs),
                5 => Some(Self::Doorbell),
                6 => Some(Self::FsQueue),
                7 => Some(Self::FsKick),
                _ => None,
            }
        }

        /// The port that issues this hypercall.
        pub const fn port(self) -> u16 {
            PORT_BASE + self as u16
        }
    }

    /// Parameters of [`Nr::Exit`].
    #[repr(C)]
    #[derive(Clone, Copy, Debug, Default)]
    pub struct Exit {
        /// The application's exit status.
        pub status: i32,
    }

    /// Parameters of [`Nr::Write`].
    #[repr(C)]
    #[derive(Clone, Copy, Debug, Default)]
    pub struct Write {
        /// Host file descriptor: 1 (stdout) or 2 (stderr).
        pub fd: i32,
        /// Zero.
        pub _reserved: u32,
        /// Guest-physical address of the bytes.
        pub buf: u64,
        /// Number of bytes.
        pub len: u64,
        /// Set by the host: bytes written, or a negative errno.
        pub result: i64,
    }

    /// Parameters of [`Nr::LogRegister`].
    #[repr(C)]
    #[derive(Clone, Copy, Debug, Default)]
    pub struct LogRegister {
        /// Guest-physical address of a [`LogRing`](super::LogRing) header.
        pub ring: u64,
    }

    /// Parameters of [`Nr::StartCpu`]: start vCPU `cpu` (`1..cpu_count`) in
    /// long mode at `entry` with `RSP = stack_top`, `RDI = arg`, `RSI = cpu`,
    /// `CR3 = cr3`, interrupts disabled and the boot GDT. Each CPU can be
    /// started once. The host checks that `entry`, `stack_top - 8` and the
    /// 4 KiB page at `cr3` lie in guest memory, that `stack_top` is 16-byte
    /// aligned and `cr3` 4 KiB aligned.
    #[repr(C)]
    #[derive(Clone, Copy, Debug, Default)]
    pub struct StartCpu {
        /// Index of the CPU to start, `1..cpu_count` (0 is the boot CPU).
        pub cpu: u32,
        /// Zero.
        pub _reserved: u32,
        /// Guest address of the first instruction (identity mapped).
        pub entry: u64,
        /// Initial `RSP`.
        pub stack_top: u64,
        /// Initial `RDI`.
        pub arg: u64,
        /// Initial `CR3`: guest-physical address of the PML4.
        pub cr3: u64,
        /// Set by the host: 0, or a negative errno (`EINVAL`: no such CPU or
        /// already started; `EFAULT`: an address outside guest memory).
        pub result: i64,
    }

    /// Parameters of [`Nr::FsQueue`].
    #[repr(C)]
    #[derive(Clone, Copy, Debug, Default)]
    pub struct FsQueue {
        /// Guest-physical address of the queue's page (4 KiB aligned,
        /// zeroed, in guest RAM, never moved or reused afterwards).
        pub page: u64,
        /// Set by the host: 0, or a negative errno (`EINVAL`: a page that
        /// is not aligned or not in RAM, or a second registration;
        /// `EAGAIN`: the host could not start serving it).
        pub result: i64,
    }

    /// Errno values the host returns (Linux numbering).
    pub mod errno {
        /// Bad file descriptor.
        pub const EBADF: i64 = 9;
        /// Try again (the host is short of a resource).
        pub const EAGAIN: i64 = 11;
        /// Bad address.
        pub const EFAULT: i64 = 14;
        /// Invalid argument.
        pub const EINVAL: i64 = 22;
    }
}

/// Header of the kernel's log ring buffer; `capacity` data bytes follow it
/// directly. The kernel appends text at `written % capacity` and then bumps
/// `written` (total bytes ever written), so a reader shows the last
/// `min(written, capacity)` bytes. uhyve reads it when the VM ends, even after
/// a crash, and prints it when asked (`HERMIT_VERBOSE=1`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct LogRing {
    /// [`LOG_RING_MAGIC`].
    pub magic: u64,
    /// Size of the data area in bytes.
    pub capacity: u64,
    /// Total bytes ever appended.
    pub written: u64,
}

/// `LogRing::magic`: "HRMTKLOG".
pub const LOG_RING_MAGIC: u64 = u64::from_le_bytes(*b"HRMTKLOG");

/// Devices the kernel uses when [`Platform::Qemu`].
pub mod qemu {
    /// COM1: the application's stdout.
    pub const STDOUT_PORT: u16 = 0x3f8;
    /// COM2: the application's stderr.
    pub const STDERR_PORT: u16 = 0x2f8;
    /// COM3: the kernel log, ending with an [`EXIT_RECORD`] line.
    pub const LOG_PORT: u16 = 0x3e8;
    /// `isa-debug-exit` I/O base; QEMU exits with `(value << 1) | 1`.
    pub const DEBUG_EXIT_PORT: u16 = 0xf4;
    /// Before exiting, the kernel writes this prefix, the decimal exit status
    /// and `\n` on the log port, because `isa-debug-exit` can only carry 7 bits.
    pub const EXIT_RECORD: &str = "\u{1}hermit-exit:";
}

/// The boot bundle the proxy hands to the PVH loader as QEMU's `-initrd`:
/// a [`BundleHeader`] followed by the sections it points to (offsets are from
/// the start of the bundle).
pub mod bundle {
    /// `BundleHeader::magic`: "HRMTBNDL".
    pub const MAGIC: u64 = u64::from_le_bytes(*b"HRMTBNDL");
    /// `BundleHeader::version` (2: `isle` appended).
    pub const VERSION: u32 = 2;

    /// An `(offset, len)` pair inside the bundle.
    #[repr(C)]
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
    pub struct Section {
        /// Offset from the start of the bundle.
        pub offset: u64,
        /// Length in bytes.
        pub len: u64,
    }

    /// Header at offset 0 of a bundle.
    #[repr(C)]
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
    pub struct BundleHeader {
        /// [`MAGIC`].
        pub magic: u64,
        /// [`VERSION`].
        pub version: u32,
        /// Number of CPUs requested (informational; QEMU's `-smp` decides).
        pub cpu_count: u32,
        /// Host wall-clock time in ns since the Unix epoch when the bundle was made.
        pub boot_time_ns: u64,
        /// The application ELF image.
        pub image: Section,
        /// Kernel command line (UTF-8).
        pub cmdline: Section,
        /// Arguments as packed NUL-terminated strings.
        pub args: Section,
        /// Number of arguments.
        pub args_count: u64,
        /// Environment as packed NUL-terminated `NAME=VALUE` strings.
        pub env: Section,
        /// Number of environment entries.
        pub env_count: u64,
        /// The isle number the loader puts into
        /// [`IsleInfo::index`](crate::IsleInfo::index) (the region is then
        /// found on PCI), or [`NOT_AN_ISLE`](crate::isle::NOT_AN_ISLE).
        pub isle: u32,
        /// Zero.
        pub _reserved: u32,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hypercall_ports_round_trip() {
        for nr in [
            hypercall::Nr::Exit,
            hypercall::Nr::Write,
            hypercall::Nr::LogRegister,
            hypercall::Nr::StartCpu,
            hypercall::Nr::Fs,
            hypercall::Nr::Doorbell,
        ] {
            assert_eq!(hypercall::Nr::from_port(nr.port()), Some(nr));
        }
        assert_eq!(hypercall::Nr::from_port(hypercall::PORT_BASE - 1), None);
        assert_eq!(hypercall::Nr::from_port(hypercall::PORT_BASE + 100), None);
    }

    #[test]
    fn layouts_are_stable() {
        // The host and the guest are built by different compilers runs; a
        // layout change must be deliberate (and bump BOOT_INFO_VERSION).
        assert_eq!(core::mem::size_of::<MemoryRegion>(), 24);
        assert_eq!(core::mem::size_of::<hypercall::Write>(), 32);
        assert_eq!(core::mem::size_of::<LogRing>(), 24);
        assert_eq!(core::mem::size_of::<fs::FsCall>(), 16 + 16 * 3 + 8 + 8 + 8);
        assert_eq!(core::mem::size_of::<fs::FileStat>(), 112);
        assert_eq!(core::mem::size_of::<fs::DirEntryHeader>(), 16);
        assert_eq!(core::mem::size_of::<fs::stream::StreamReply>(), 16);
        assert_eq!(
            core::mem::size_of::<BootInfo>(),
            8 + 4 * 4 + 8 * 2 + 16 + 8 + 32 + 16 + 24 * 2 + 24 * MAX_MEMORY_REGIONS + 8 + 24
        );
        // Appended in versions 2 and 3, so that earlier offsets stay put.
        assert_eq!(
            core::mem::offset_of!(BootInfo, acpi_rsdp),
            core::mem::size_of::<BootInfo>() - 8 - 24
        );
        assert_eq!(core::mem::size_of::<IsleInfo>(), 24);
    }

    #[test]
    fn memory_regions_clamps_count() {
        let mut info = BootInfo {
            magic: BOOT_INFO_MAGIC,
            version: BOOT_INFO_VERSION,
            platform: Platform::Uhyve as u32,
            cpu_count: 1,
            memory_count: 1000,
            tsc_khz: 0,
            boot_time_ns: 0,
            image: PhysSlice::default(),
            load_bias: 0,
            tls: TlsTemplate::default(),
            cmdline: PhysSlice::default(),
            args: StringList::default(),
            env: StringList::default(),
            memory: [MemoryRegion::EMPTY; MAX_MEMORY_REGIONS],
            acpi_rsdp: 0,
            isle: IsleInfo::NONE,
        };
        assert_eq!(info.memory_regions().len(), MAX_MEMORY_REGIONS);
        info.memory_count = 2;
        assert_eq!(info.memory_regions().len(), 2);
    }

    #[test]
    fn isle_addresses_round_trip() {
        assert_eq!(isle::node_of(isle::host_ip()), Some(isle::HOST_NODE));
        for n in 0..isle::MAX_ISLES {
            assert_eq!(isle::node_of(isle::isle_ip(n)), Some(n));
        }
        assert_eq!(isle::node_of([192, 168, 28, 0]), None);
        assert_eq!(
            isle::node_of([192, 168, 28, 2 + isle::MAX_ISLES as u8]),
            None
        );
        assert_eq!(isle::node_of([192, 168, 29, 2]), None);
        assert_eq!(IsleInfo::NONE.index(), None);
    }

    #[test]
    fn isle_region_checks() {
        use isle::{Location, REGION_GPA, REGION_MAX, REGION_MIN, RegionFault};
        let info = |addr, len, index| IsleInfo {
            region: PhysSlice { addr, len },
            index,
            flags: 0,
        };
        assert_eq!(IsleInfo::NONE.location(), Ok(Location::NotAnIsle));
        // A region without an isle number is ignored.
        assert_eq!(
            info(REGION_GPA, REGION_MIN, isle::MAX_ISLES).location(),
            Ok(Location::NotAnIsle)
        );
        assert_eq!(info(0, 0, 1).location(), Ok(Location::Pci));
        let ok = PhysSlice {
            addr: REGION_GPA,
            len: REGION_MIN,
        };
        assert_eq!(
            info(ok.addr, ok.len, 0).location(),
            Ok(Location::Mapped(ok))
        );
        assert_eq!(
            info(REGION_GPA, REGION_MAX, 7).location(),
            Ok(Location::Mapped(PhysSlice {
                addr: REGION_GPA,
                len: REGION_MAX
            }))
        );
        let bad = |addr, len| info(addr, len, 0).location().unwrap_err();
        assert_eq!(
            bad(REGION_GPA, REGION_MIN - 4096),
            RegionFault::Size(REGION_MIN - 4096)
        );
        assert_eq!(
            bad(REGION_GPA, REGION_MAX + 4096),
            RegionFault::Size(REGION_MAX + 4096)
        );
        assert!(matches!(
            bad(REGION_GPA, REGION_MIN + 1),
            RegionFault::Misaligned { .. }
        ));
        assert!(matches!(
            bad(REGION_GPA + 8, REGION_MIN),
            RegionFault::Misaligned { .. }
        ));
        assert!(matches!(
            bad(REGION_GPA - 4096, REGION_MIN),
            RegionFault::Outside { .. }
        ));
        assert!(matches!(
            bad(REGION_GPA + 4096, REGION_MAX),
            RegionFault::Outside { .. }
        ));
        assert!(matches!(
            bad(u64::MAX - 4095, REGION_MIN),
            RegionFault::Outside { .. }
        ));
        assert!(isle::check_size(REGION_MIN).is_ok());
        assert!(std::format!("{}", RegionFault::Size(1)).contains("is not between"));
    }
}
