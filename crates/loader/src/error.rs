//! The loader's one error type.

use core::fmt;

/// Which part of the boot data a destination window was too small for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Item {
    /// The loaded image.
    Image,
    /// The initial page tables.
    PageTables,
    /// The GDT.
    Gdt,
    /// The boot info and its strings.
    BootInfo,
}

impl fmt::Display for Item {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Image => "image",
            Self::PageTables => "page tables",
            Self::Gdt => "GDT",
            Self::BootInfo => "boot info",
        })
    }
}

/// Everything that can go wrong while checking or placing an image and its
/// boot data. The `Display` text is meant for users ("uhyve: <text>").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    /// The data does not start with the ELF magic.
    NotElf,
    /// The data is shorter than an ELF header.
    Truncated,
    /// The ELF class is not 64-bit.
    Not64Bit,
    /// The ELF data encoding is not little-endian.
    NotLittleEndian,
    /// The ELF header is malformed (bad version or header size).
    BadHeader,
    /// `e_machine` is not `EM_X86_64`; the value is attached.
    WrongMachine(u16),
    /// `e_type` is neither `ET_EXEC` nor `ET_DYN`; the value is attached.
    NotExecutable(u16),
    /// The program header table lies outside the file or has a bad entry size.
    BadProgramHeaders,
    /// The image has a `PT_INTERP` segment or needs shared libraries.
    DynamicallyLinked,
    /// The image has no `PT_LOAD` segment.
    NoLoadSegments,
    /// A segment's file bytes lie outside the file (program header index).
    SegmentOutsideFile(usize),
    /// A segment's `p_filesz` exceeds its `p_memsz` (program header index).
    SegmentFileSizeTooLarge(usize),
    /// A segment's address range overflows (program header index).
    SegmentAddressOverflow(usize),
    /// A `PT_LOAD` segment overlaps or precedes the one before it (program
    /// header index).
    SegmentsOverlap(usize),
    /// A segment's `p_align` is not a power of two (program header index).
    BadAlignment(usize),
    /// The entry point lies outside every `PT_LOAD` segment.
    EntryOutsideImage(u64),
    /// The `PT_TLS` segment is malformed or outside the loaded image.
    BadTls,
    /// The `PT_DYNAMIC` segment or a relocation table it names is malformed.
    BadDynamic,
    /// The image uses a relocation table format other than RELA or RELR
    /// (the `DT_*` tag is attached).
    UnsupportedRelocationTable(u64),
    /// A relocation of a type other than `R_X86_64_RELATIVE`/`NONE`.
    UnsupportedRelocation(u32),
    /// A relocation patches bytes outside the loaded image (link address).
    RelocationOutsideImage(u64),
    /// The load base is not a multiple of the image's alignment.
    MisalignedBase {
        /// The requested load base.
        base: u64,
        /// The required alignment.
        align: u64,
    },
    /// A fixed-address (`ET_EXEC`) image was asked to load elsewhere.
    FixedAddress {
        /// The address the image is linked at.
        linked: u64,
        /// The requested load base.
        base: u64,
    },
    /// The image would not fit below 2^64 at the requested base.
    AddressOverflow,
    /// The destination window does not contain the range an item needs.
    OutOfWindow {
        /// What was being written.
        item: Item,
        /// First guest-physical byte needed.
        start: u64,
        /// One past the last guest-physical byte needed.
        end: u64,
    },
    /// An address is not aligned as required (4 KiB for page tables and load
    /// bases, 8 bytes for the GDT and boot info).
    Misaligned(u64),
    /// A memory range has `end < start`.
    BadRange {
        /// Start of the range.
        start: u64,
        /// End of the range.
        end: u64,
    },
    /// The memory map needs more entries than there is room for.
    MemoryMapFull {
        /// Entries available.
        capacity: usize,
    },
    /// A boot string (cmdline, argument or environment entry) contains NUL.
    StringContainsNul,
    /// A boot string is not valid UTF-8.
    StringNotUtf8,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::NotElf => f.write_str("not an ELF file"),
            Self::Truncated => f.write_str("truncated ELF file"),
            Self::Not64Bit => f.write_str("not a 64-bit ELF image"),
            Self::NotLittleEndian => f.write_str("not a little-endian ELF image"),
            Self::BadHeader => f.write_str("malformed ELF header"),
            Self::WrongMachine(m) => write!(f, "not an x86_64 image (ELF machine {m})"),
            Self::NotExecutable(t) => write!(f, "not an executable image (ELF type {t})"),
            Self::BadProgramHeaders => f.write_str("malformed ELF program header table"),
            Self::DynamicallyLinked => f.write_str("dynamically linked images are not supported"),
            Self::NoLoadSegments => f.write_str("the image has no loadable segments"),
            Self::SegmentOutsideFile(i) => {
                write!(f, "ELF segment {i} lies outside the file")
            }
            Self::SegmentFileSizeTooLarge(i) => {
                write!(
                    f,
                    "ELF segment {i} has a file size larger than its memory size"
                )
            }
            Self::SegmentAddressOverflow(i) => {
                write!(f, "ELF segment {i} has an address range that overflows")
            }
            Self::SegmentsOverlap(i) => write!(
                f,
                "ELF segment {i} overlaps or is out of order with the segment before it"
            ),
            Self::BadAlignment(i) => {
                write!(
                    f,
                    "ELF segment {i} has an alignment that is not a power of two"
                )
            }
            Self::EntryOutsideImage(e) => {
                write!(f, "entry point {e:#x} lies outside the loadable segments")
            }
            Self::BadTls => f.write_str("malformed TLS segment"),
            Self::BadDynamic => f.write_str("malformed dynamic section or relocation table"),
            Self::UnsupportedRelocationTable(tag) => {
                write!(f, "unsupported relocation table ({})", dt_name(tag))
            }
            Self::UnsupportedRelocation(t) => match reloc_name(t) {
                Some(name) => write!(f, "unsupported relocation type {name}"),
                None => write!(f, "unsupported relocation type {t}"),
            },
            Self::RelocationOutsideImage(off) => {
                write!(f, "relocation at {off:#x} lies outside the loaded image")
            }
            Self::MisalignedBase { base, align } => {
                write!(f, "load address {base:#x} is not aligned to {align:#x}")
            }
            Self::FixedAddress { linked, base } => write!(
                f,
                "fixed-address image linked at {linked:#x} cannot be loaded at {base:#x}"
            ),
            Self::AddressOverflow => f.write_str("image does not fit in the address space"),
            Self::OutOfWindow { item, start, end } => write!(
                f,
                "not enough memory for the {item} at [{start:#x}, {end:#x})"
            ),
            Self::Misaligned(a) => write!(f, "address {a:#x} is not suitably aligned"),
            Self::BadRange { start, end } => {
                write!(
                    f,
                    "memory range [{start:#x}, {end:#x}) ends before it starts"
                )
            }
            Self::MemoryMapFull { capacity } => {
                write!(f, "the memory map needs more than {capacity} entries")
            }
            Self::StringContainsNul => {
                f.write_str("command line, argument or environment contains a NUL byte")
            }
            Self::StringNotUtf8 => {
                f.write_str("command line, argument or environment is not valid UTF-8")
            }
        }
    }
}

impl core::error::Error for Error {}

fn dt_name(tag: u64) -> &'static str {
    match tag {
        17 => "DT_REL",
        20 => "DT_PLTREL",
        _ => "unknown dynamic tag",
    }
}

/// The `R_X86_64_*` name of a relocation type, if it is a known one.
pub fn reloc_name(t: u32) -> Option<&'static str> {
    const NAMES: [&str; 43] = [
        "R_X86_64_NONE",
        "R_X86_64_64",
        "R_X86_64_PC32",
        "R_X86_64_GOT32",
        "R_X86_64_PLT32",
        "R_X86_64_COPY",
        "R_X86_64_GLOB_DAT",
        "R_X86_64_JUMP_SLOT",
        "R_X86_64_RELATIVE",
        "R_X86_64_GOTPCREL",
        "R_X86_64_32",
        "R_X86_64_32S",
        "R_X86_64_16",
        "R_X86_64_PC16",
        "R_X86_64_8",
        "R_X86_64_PC8",
        "R_X86_64_DTPMOD64",
        "R_X86_64_DTPOFF64",
        "R_X86_64_TPOFF64",
        "R_X86_64_TLSGD",
        "R_X86_64_TLSLD",
        "R_X86_64_DTPOFF32",
        "R_X86_64_GOTTPOFF",
        "R_X86_64_TPOFF32",
        "R_X86_64_PC64",
        "R_X86_64_GOTOFF64",
        "R_X86_64_GOTPC32",
        "R_X86_64_GOT64",
        "R_X86_64_GOTPCREL64",
        "R_X86_64_GOTPC64",
        "R_X86_64_GOTPLT64",
        "R_X86_64_PLTOFF64",
        "R_X86_64_SIZE32",
        "R_X86_64_SIZE64",
        "R_X86_64_GOTPC32_TLSDESC",
        "R_X86_64_TLSDESC_CALL",
        "R_X86_64_TLSDESC",
        "R_X86_64_IRELATIVE",
        "R_X86_64_RELATIVE64",
        "39",
        "40",
        "R_X86_64_GOTPCRELX",
        "R_X86_64_REX_GOTPCRELX",
    ];
    match t {
        39 | 40 => None,
        _ => NAMES.get(t as usize).copied(),
    }
}
