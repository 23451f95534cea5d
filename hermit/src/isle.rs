//! Multi-kernel isles: this kernel as one of several VMs that share one
//! memory region with each other and the Linux host (see
//! [`hermit_interface::isle`] for the model, the region's place and split).
//!
//! The launcher says at boot whether the VM is an isle ([`id`]) and where
//! the region is: uhyve maps it at [`hermit_interface::isle::REGION_GPA`]
//! (inside the boot identity map of `[4 KiB, 4 GiB)`, which the kernel
//! keeps); under QEMU it is BAR 2 of the `ivshmem-plain` PCI device, found
//! and assigned (from the PCI window below 4 GiB) at first use. Either way
//! one [`MappedRegion`] over it is built once, at the first call of
//! [`ircce`] (or of the kernel's mmnif NIC).
//!
//! Doorbells ([`IsleNotify`]): under uhyve with [`FLAG_DOORBELL`], ringing
//! is the `Doorbell` hypercall and a ring to this isle arrives as interrupt
//! [`DOORBELL_VECTOR`] on CPU 0, whose handler wakes the threads blocked in
//! [`IsleNotify::wait`] (a futex, no polling). Without doorbells (QEMU)
//! ringing does nothing and `wait` sleeps at most [`POLL_SLEEP`], so
//! waiters poll.
//!
//! Not here: more than one UE per isle (the doorbell is per isle), regions
//! above 4 GiB (a BAR there is refused), recovering the messages a crashed
//! isle left half-sent (uhyve frees its rank when its number is reused;
//! that pair's channel stays stuck, iRCCE's limit).

use core::ptr::NonNull;
use core::sync::atomic::{AtomicU32, Ordering};
use core::time::Duration;

use hermit_interface::isle::{
    DOORBELL_VECTOR, FLAG_DEDICATED_CORES, FLAG_DOORBELL, IRCCE_OFFSET, Location, MMNIF_OFFSET,
    MMNIF_SIZE, RegionFault,
};
use hermit_interface::{IsleInfo, Platform, hypercall};

pub use hermit_interface::isle::MAX_ISLES;
pub use hermit_ircce::{
    self, Config, Element, Ircce, MappedRegion, Notify, ReduceOp, Region, Request, SubRegion,
    WaitList,
};

/// The iRCCE part of the shared region, as [`ircce`] hands it out.
pub type IsleRegion = SubRegion<&'static MappedRegion>;
/// One isle's iRCCE handle (rank = isle number).
pub type IsleIrcce = Ircce<IsleRegion, IsleNotify>;

/// Longest sleep of [`IsleNotify::wait`] without doorbells, so that polling
/// waiters look again soon.
pub const POLL_SLEEP: Duration = Duration::from_micros(50);

/// ivshmem's PCI vendor (Red Hat / virtio) and device id.
const IVSHMEM_ID: (u16, u16) = (0x1af4, 0x1110);
/// ivshmem's BAR holding the shared memory.
const IVSHMEM_BAR: usize = 2;

/// Why the isle's shared region or iRCCE cannot be used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IsleError {
    /// The VM was not started as an isle.
    NotAnIsle,
    /// The launcher passed a region that cannot be used.
    BadRegion(RegionFault),
    /// QEMU: no `ivshmem-plain` device on PCI.
    NoDevice,
    /// QEMU: the ivshmem device could not be set up.
    Pci(hermit_drivers::pci::PciError),
    /// QEMU: ivshmem's BAR 2 is missing or outside the identity map.
    BadBar {
        /// Its address (0: none).
        addr: u64,
        /// Its size.
        size: u64,
    },
    /// The region could not be cut into its mmnif and iRCCE parts.
    Window(hermit_ircce::RegionError),
    /// iRCCE refused the region or the configuration.
    Ircce(hermit_ircce::Error),
}

impl core::fmt::Display for IsleError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::NotAnIsle => {
                f.write_str("this VM is not an isle (start it with HERMIT_ISLE=<n>)")
            }
            Self::BadRegion(e) => write!(f, "isle: {e}"),
            Self::NoDevice => f.write_str("isle: no ivshmem-plain device on PCI"),
            Self::Pci(e) => write!(f, "isle: ivshmem device: {e}"),
            Self::BadBar { addr, size } => write!(
                f,
                "isle: ivshmem BAR 2 at {addr:#x} ({size:#x} bytes) is not usable below 4 GiB"
            ),
            Self::Window(e) => write!(f, "isle: {e}"),
            Self::Ircce(e) => write!(f, "isle: iRCCE: {e}"),
        }
    }
}

impl From<hermit_ircce::Error> for IsleError {
    fn from(e: hermit_ircce::Error) -> Self {
        Self::Ircce(e)
    }
}

/// What the launcher said, copied at boot.
static INFO: spin::Once<IsleInfo> = spin::Once::new();

/// Records the boot info's isle part and, with doorbells, installs the
/// doorbell interrupt handler (called once during boot, interrupts off).
pub(crate) fn init(info: &IsleInfo) {
    let info = *INFO.call_once(|| *info);
    if let Some(n) = info.index() {
        log::info!(
            "isle {n}: region {:#x}+{:#x}, flags {:#x}",
            info.region.addr,
            info.region.len,
            info.flags
        );
        if delivers_doorbells(&info) {
            arch_x86_64::exception::set_interrupt_handler(DOORBELL_VECTOR, doorbell_interrupt);
        }
    }
}

/// Whether rings are delivered: uhyve says so with [`FLAG_DOORBELL`].
fn delivers_doorbells(info: &IsleInfo) -> bool {
    info.flags & FLAG_DOORBELL != 0
        && crate::console::platform() == Some(Platform::Uhyve)
        && info.index().is_some()
}

/// Whether doorbells reach this isle (uhyve with [`FLAG_DOORBELL`]), so
/// that iRCCE waiters sleep until rung; otherwise they poll.
pub fn has_doorbells() -> bool {
    INFO.get().is_some_and(delivers_doorbells)
}

/// This VM's isle number (the iRCCE rank and mmnif node), `None` when it
/// is not an isle.
pub fn id() -> Option<u32> {
    INFO.get().and_then(IsleInfo::index)
}

static REGION: spin::Once<Result<MappedRegion, IsleError>> = spin::Once::new();

/// The whole shared region, found and checked at the first call.
fn region() -> Result<&'static MappedRegion, IsleError> {
    REGION.call_once(find_region).as_ref().map_err(|e| *e)
}

fn find_region() -> Result<MappedRegion, IsleError> {
    let info = INFO.get().copied().unwrap_or(IsleInfo::NONE);
    let (addr, len) = match info.location().map_err(IsleError::BadRegion)? {
        Location::NotAnIsle => return Err(IsleError::NotAnIsle),
        Location::Mapped(slice) => (slice.addr, slice.len),
        Location::Pci => ivshmem_bar()?,
    };
    if !crate::mem::is_identity_mapped(addr, len) {
        return Err(IsleError::BadBar { addr, size: len });
    }
    let base = NonNull::new(addr as *mut u8).ok_or(IsleError::BadBar { addr, size: len })?;
    log::info!("isle: shared region at {addr:#x}, {} KiB", len / 1024);
    // SAFETY: `[addr, addr + len)` is the shared region (checked to lie in
    // the hypervisor's window, or the BAR this kernel just assigned), page
    // aligned, identity-mapped (checked above) and never freed; it is
    // memory no Rust code of this kernel holds references into: it is only
    // reached through this one `MappedRegion`, created once.
    Ok(unsafe { MappedRegion::new(base, len as usize) })
}

/// Finds ivshmem on PCI, assigns its BARs and returns BAR 2.
fn ivshmem_bar() -> Result<(u64, u64), IsleError> {
    let bus = crate::pci::Bus::probe();
    let function = bus
        .scan()
        .into_iter()
        .find(|f| (f.vendor, f.device) == IVSHMEM_ID)
        .ok_or(IsleError::NoDevice)?;
    let enabled = bus.enable(&function).map_err(IsleError::Pci)?;
    let bar = enabled.bars[IVSHMEM_BAR].ok_or(IsleError::BadBar { addr: 0, size: 0 })?;
    let below_4g = bar
        .address
        .checked_add(bar.size)
        .is_some_and(|end| end <= 1 << 32);
    if bar.kind == hermit_drivers::pci::BarKind::Io || bar.address == 0 || !below_4g {
        return Err(IsleError::BadBar {
            addr: bar.address,
            size: bar.size,
        });
    }
    hermit_interface::isle::check_size(bar.size).map_err(IsleError::BadRegion)?;
    Ok((bar.address, bar.size))
}

/// The mmnif part of the shared region (`[MMNIF_OFFSET, MMNIF_OFFSET +
/// MMNIF_SIZE)`), for the kernel's mmnif NIC.
#[allow(dead_code, reason = "used by the mmnif NIC only")]
pub(crate) fn mmnif_region() -> Result<IsleRegion, IsleError> {
    SubRegion::new(region()?, MMNIF_OFFSET as usize, MMNIF_SIZE as usize).map_err(IsleError::Window)
}

/// The iRCCE part of the shared region (`[IRCCE_OFFSET, len)`).
fn ircce_region() -> Result<IsleRegion, IsleError> {
    let whole = region()?;
    let offset = IRCCE_OFFSET as usize;
    let len = whole.len().saturating_sub(offset);
    SubRegion::new(whole, offset, len).map_err(IsleError::Window)
}

/// This isle's doorbells.
pub(crate) fn notify() -> IsleNotify {
    let info = INFO.get().copied().unwrap_or(IsleInfo::NONE);
    let doorbells = delivers_doorbells(&info);
    if doorbells {
        WAKER.call_once(|| wake_waiters);
    }
    IsleNotify {
        doorbells,
        dedicated: info.flags & FLAG_DEDICATED_CORES != 0,
    }
}

/// Attaches this isle to the region's iRCCE part as UE [`id`] of
/// `config.ues` (the first isle formats it; the others check that they
/// agree on `config`).
pub fn ircce(config: Config) -> Result<IsleIrcce, IsleError> {
    let rank = id().ok_or(IsleError::NotAnIsle)?;
    let region = ircce_region()?;
    Ok(Ircce::init(region, notify(), rank as usize, config)?)
}

/// Rings received (bumped by the doorbell interrupt); waiters sleep on it
/// as a futex.
static RINGS: AtomicU32 = AtomicU32::new(0);
/// The value of [`RINGS`] the last [`IsleNotify::wait`] consumed.
static CONSUMED: AtomicU32 = AtomicU32::new(0);

/// Doorbells between isles: the `Doorbell` hypercall and
/// [`DOORBELL_VECTOR`] under uhyve, a short sleep elsewhere.
#[derive(Clone, Copy, Debug)]
pub struct IsleNotify {
    doorbells: bool,
    /// The hypervisor pinned every vCPU to a core of its own.
    dedicated: bool,
}

impl IsleNotify {
    /// Whether rings are delivered (otherwise waiters poll).
    pub fn has_doorbells(&self) -> bool {
        self.doorbells
    }
}

impl Notify for IsleNotify {
    fn ring(&self, target: usize) {
        if !self.doorbells {
            return;
        }
        let Ok(node) = u32::try_from(target) else {
            return;
        };
        let mut port = x86_64::instructions::port::Port::<u32>::new(hypercall::Nr::Doorbell.port());
        // SAFETY: uhyve (checked when `doorbells` was set) takes the value
        // written to the Doorbell port as a node number and reads no guest
        // memory; the out has no effect on this kernel's memory.
        unsafe { port.write(node) };
    }

    fn wait(&self, _me: usize, timeout: Duration) {
        let now = crate::time::monotonic_ns();
        if !self.doorbells {
            let nap = timeout.min(POLL_SLEEP).as_nanos() as u64;
            crate::sched::sleep_until(now.saturating_add(nap));
            return;
        }
        let seen = RINGS.load(Ordering::Acquire);
        if CONSUMED.swap(seen, Ordering::AcqRel) != seen {
            // A ring came since the last wait.
            return;
        }
        let deadline = now.saturating_add(timeout.as_nanos() as u64);
        let _ = crate::sync::futex::wait(&RINGS, seen, Some(deadline));
        CONSUMED.store(RINGS.load(Ordering::Acquire), Ordering::Release);
    }

    /// An isle on cores of its own (uhyve with a `HERMIT_CPUS` core list)
    /// spins up to about a millisecond before it sleeps: a doorbell (a
    /// hypercall, a message to the other isle's hypervisor, an injected
    /// interrupt) costs hundreds of microseconds, and with the default
    /// budget large messages fall to that path (1 MiB ping-pong between two
    /// pinned uhyve isles: 130 MB/s instead of 6-8 GB/s). Unpinned isles may
    /// share cores, where spinning only keeps the peer from running: they
    /// keep the default.
    fn spins_before_sleep(&self) -> u32 {
        if self.dedicated {
            ISLE_SPINS_BEFORE_SLEEP
        } else {
            hermit_ircce::notify::DEFAULT_SPINS_BEFORE_SLEEP
        }
    }
}

/// [`IsleNotify`]'s spin budget on dedicated cores: about 1 ms of
/// `pause`s on the development host.
const ISLE_SPINS_BEFORE_SLEEP: u32 = 40_000;

/// What the doorbell interrupt calls after counting a ring: set by the
/// first [`notify`], so that images that never wait on a doorbell do not
/// link the scheduler's wake-up path (a handler installed at boot would).
static WAKER: spin::Once<fn()> = spin::Once::new();

fn wake_waiters() {
    crate::sync::futex::wake(&RINGS, u32::MAX);
}

/// A second thing the doorbell interrupt calls: the mmnif NIC's (its
/// network stack wakes on frames).
static HOOK: spin::Once<fn()> = spin::Once::new();

/// Registers `hook`, called from the doorbell interrupt (interrupts off)
/// after the iRCCE waiters are woken; the first registration stays.
#[allow(dead_code, reason = "used by the mmnif NIC")]
pub(crate) fn set_doorbell_hook(hook: fn()) {
    HOOK.call_once(|| hook);
}

/// Installed at boot when doorbells are on, so that a ring that comes
/// before anyone waits is counted rather than an unexpected vector.
extern "x86-interrupt" fn doorbell_interrupt(_frame: x86_64::structures::idt::InterruptStackFrame) {
    RINGS.fetch_add(1, Ordering::AcqRel);
    // SAFETY: every supported platform gives each CPU a local APIC in
    // xAPIC mode at the architectural address, identity-mapped; the
    // scheduler enabled it before interrupts were first enabled.
    unsafe { arch_x86_64::apic::LocalApic::new() }.eoi();
    if let Some(wake) = WAKER.get() {
        wake();
    }
    if let Some(hook) = HOOK.get() {
        hook();
    }
}
