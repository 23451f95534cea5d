//! The page-table interface that portable code maps memory through.

use core::fmt;

use crate::{FrameError, FrameSource, HUGE_PAGE_SIZE, PAGE_SIZE, PhysAddr, VirtAddr};

/// The page sizes the kernel maps with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PageSize {
    /// 4 KiB.
    Size4K,
    /// 2 MiB.
    Size2M,
}

impl PageSize {
    /// The size in bytes.
    pub const fn bytes(self) -> u64 {
        match self {
            Self::Size4K => PAGE_SIZE,
            Self::Size2M => HUGE_PAGE_SIZE,
        }
    }

    /// The number of 4 KiB frames a page of this size covers.
    pub const fn frames(self) -> usize {
        match self {
            Self::Size4K => 1,
            Self::Size2M => (HUGE_PAGE_SIZE / PAGE_SIZE) as usize,
        }
    }
}

/// Access rights and caching of a mapping. Every mapping is readable and
/// kernel-only.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct PageFlags {
    /// Writes are allowed.
    pub writable: bool,
    /// Instruction fetches are allowed (otherwise no-execute).
    pub executable: bool,
    /// Caching is disabled, as device registers need.
    pub uncached: bool,
}

impl PageFlags {
    /// Read-write, no-execute data such as stacks and heap.
    pub const DATA: Self = Self {
        writable: true,
        executable: false,
        uncached: false,
    };
    /// Read-only, no-execute data.
    pub const READ_ONLY: Self = Self {
        writable: false,
        executable: false,
        uncached: false,
    };
    /// Read-only, executable code.
    pub const CODE: Self = Self {
        writable: false,
        executable: true,
        uncached: false,
    };
    /// Read-write, no-execute, uncached device registers.
    pub const MMIO: Self = Self {
        writable: true,
        executable: false,
        uncached: true,
    };
}

/// What [`PageMapper::translate`] found for an address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Translation {
    /// The physical address the virtual address maps to (with its offset
    /// inside the page).
    pub phys: PhysAddr,
    /// The size of the page that maps it.
    pub size: PageSize,
    /// The page's flags.
    pub flags: PageFlags,
}

/// Why mapping or unmapping failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MapError {
    /// An address or length is not a multiple of the page size it is used with.
    Misaligned(u64),
    /// Part of the range is already mapped; this is the first mapped address
    /// inside it.
    AlreadyMapped(VirtAddr),
    /// Nothing is mapped at this address.
    NotMapped(VirtAddr),
    /// A range starting here runs past the end of the address space.
    Overflow(u64),
    /// A region of zero bytes was requested.
    ZeroSize,
    /// Getting physical frames (for the region or for page tables) failed.
    Frames(FrameError),
    /// The kernel virtual window has no free range of this many bytes.
    OutOfVirtualSpace(u64),
    /// The kernel virtual window is too fragmented: all its free-range slots
    /// are in use.
    CapacityExhausted {
        /// The window's fixed number of free ranges.
        capacity: usize,
    },
}

impl fmt::Display for MapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::Misaligned(addr) => write!(f, "{addr:#x} is not aligned to the page size"),
            Self::AlreadyMapped(virt) => write!(f, "{virt} is already mapped"),
            Self::NotMapped(virt) => write!(f, "{virt} is not mapped"),
            Self::Overflow(start) => {
                write!(
                    f,
                    "range at {start:#x} runs past the end of the address space"
                )
            }
            Self::ZeroSize => write!(f, "zero-sized region requested"),
            Self::Frames(e) => write!(f, "cannot get physical frames: {e}"),
            Self::OutOfVirtualSpace(len) => {
                write!(
                    f,
                    "kernel virtual window has no free range of {len:#x} bytes"
                )
            }
            Self::CapacityExhausted { capacity } => write!(
                f,
                "kernel virtual window is too fragmented: all {capacity} free-range slots in use"
            ),
        }
    }
}

impl core::error::Error for MapError {
    fn source(&self) -> Option<&(dyn core::error::Error + 'static)> {
        match self {
            Self::Frames(e) => Some(e),
            _ => None,
        }
    }
}

impl From<FrameError> for MapError {
    fn from(e: FrameError) -> Self {
        Self::Frames(e)
    }
}

/// The hardware page table of the current address space, one page at a
/// time. `arch-x86_64` implements it on the real page tables; host tests use
/// an emulated one.
///
/// Implementations must leave the table unchanged when they return an error
/// (apart from intermediate tables they allocated, which they may keep).
pub trait PageMapper {
    /// Maps the page of `size` at `virt` to the frame(s) at `phys` with
    /// `flags`. Both addresses must be multiples of `size`
    /// ([`MapError::Misaligned`]); if any byte of the page is mapped already
    /// the result is [`MapError::AlreadyMapped`]. Frames for intermediate page
    /// tables come from `frames` and are zeroed by the implementation.
    fn map(
        &mut self,
        virt: VirtAddr,
        phys: PhysAddr,
        size: PageSize,
        flags: PageFlags,
        frames: &mut dyn FrameSource,
    ) -> Result<(), MapError>;

    /// Unmaps the page that starts at `virt` and returns its frame(s) and
    /// size; the caller decides whether to free them. The implementation
    /// flushes the local TLB entry. `virt` inside (not at the start of) a
    /// mapped page is [`MapError::Misaligned`]; nothing mapped is
    /// [`MapError::NotMapped`].
    fn unmap(&mut self, virt: VirtAddr) -> Result<(PhysAddr, PageSize), MapError>;

    /// Looks up the mapping of `virt`, if any.
    fn translate(&self, virt: VirtAddr) -> Option<Translation>;
}
