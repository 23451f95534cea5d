//! Checking an x86_64 ELF image and placing it into guest memory.
//!
//! Parsing of the file header and program headers uses the `object` crate's
//! low-level ELF types (with its `unaligned` feature, so the image may start
//! at any byte offset); every value taken from them is checked here before
//! use, because `object` reads structures but does not judge whether an
//! image is loadable.

use hermit_interface::{PhysSlice, TlsTemplate};
use object::LittleEndian as LE;
use object::elf::{
    DT_JMPREL, DT_NEEDED, DT_NULL, DT_PLTREL, DT_PLTRELSZ, DT_REL, DT_RELA, DT_RELAENT, DT_RELASZ,
    DT_RELSZ, Dyn64, EM_X86_64, ET_DYN, ET_EXEC, FileHeader64, PT_DYNAMIC, PT_INTERP, PT_LOAD,
    PT_NOTE, PT_TLS, ProgramHeader64, R_X86_64_NONE, R_X86_64_RELATIVE, Rela64,
};
use object::read::elf::FileHeader as _;

use crate::error::{Error, Item};
use crate::window::{align_down, align_up, sub_mut};

const PAGE: u64 = 4096;
const DT_RELRSZ: u64 = 35;
const DT_RELR: u64 = 36;
const DT_RELRENT: u64 = 37;

/// A checked ELF image, borrowed from the file bytes.
///
/// [`Image::parse`] checks everything that loading depends on (headers,
/// segments, entry point, TLS, dynamic section, every relocation), so
/// [`Image::load`] can only fail because of where it is asked to load.
#[derive(Clone, Copy, Debug)]
pub struct Image<'a> {
    data: &'a [u8],
    phdrs: &'a [ProgramHeader64<LE>],
    relocatable: bool,
    entry: u64,
    link_start: u64,
    link_end: u64,
    align: u64,
    tls: Option<TlsTemplate>,
    relocs: Relocs<'a>,
}

/// The relocation tables of an image, as slices of the file.
#[derive(Clone, Copy, Debug, Default)]
struct Relocs<'a> {
    rela: &'a [Rela64<LE>],
    plt: &'a [Rela64<LE>],
    relr: &'a [u8],
}

/// Name of the notes the hermit kernel emits (section `.note.hermit`).
pub const NOTE_NAME_HERMIT: &[u8] = b"HERMIT";
/// Note type: the image wants a network card; the descriptor is the model
/// name (`"rtl8139"`, `"virtio-net"`).
pub const NOTE_TYPE_NIC: u32 = 1;
/// Note type: the image's kernel copes with running natively on a
/// `kvm_pvm` host from its first instruction, so a launcher may register
/// each vCPU's virtual-interrupt-flag page before it starts. (A plain x86
/// guest would not cope: natively, `hlt` with interrupts masked returns at
/// once instead of stopping the vCPU.)
pub const NOTE_TYPE_NATIVE: u32 = 2;

/// One ELF note.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Note<'a> {
    /// Its name without the terminating NUL.
    pub name: &'a [u8],
    /// Its type.
    pub kind: u32,
    /// Its descriptor.
    pub desc: &'a [u8],
}

/// Walks the notes of one `PT_NOTE` segment (4-byte aligned entries).
struct NoteIter<'a> {
    bytes: &'a [u8],
}

impl<'a> Iterator for NoteIter<'a> {
    type Item = Note<'a>;

    fn next(&mut self) -> Option<Note<'a>> {
        let word = |at: usize| -> Option<usize> {
            let b = self.bytes.get(at..at + 4)?;
            usize::try_from(u32::from_le_bytes([b[0], b[1], b[2], b[3]])).ok()
        };
        let namesz = word(0)?;
        let descsz = word(4)?;
        let kind = u32::try_from(word(8)?).ok()?;
        let name_end = 12usize.checked_add(namesz)?;
        let desc_start = name_end.checked_next_multiple_of(4)?;
        let desc_end = desc_start.checked_add(descsz)?;
        let next = desc_end.checked_next_multiple_of(4)?;
        let name = self.bytes.get(12..name_end)?;
        let desc = self.bytes.get(desc_start..desc_end)?;
        self.bytes = self.bytes.get(next..).unwrap_or(&[]);
        let name = name.strip_suffix(&[0]).unwrap_or(name);
        Some(Note { name, kind, desc })
    }
}

/// Whether the destination memory is known to hold only zero bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dest {
    /// The memory may hold anything: `.bss` and the gaps between segments are
    /// cleared.
    Dirty,
    /// The memory is already zero (e.g. fresh anonymous memory): nothing is
    /// cleared, so untouched `.bss` pages are never faulted in.
    Zeroed,
}

/// Where an image ended up, in guest-physical (= identity-mapped virtual)
/// addresses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LoadedImage {
    /// Runtime entry point.
    pub entry: u64,
    /// The image from its lowest page to the end of `.bss`, page aligned.
    pub image: PhysSlice,
    /// Runtime address minus link address.
    pub load_bias: u64,
    /// The TLS template at its runtime address, all zero if there is none.
    pub tls: TlsTemplate,
}

impl<'a> Image<'a> {
    /// Checks `data` as a statically linked x86_64 ELF executable (`ET_EXEC`)
    /// or static PIE (`ET_DYN`).
    pub fn parse(data: &'a [u8]) -> Result<Self, Error> {
        check_ident(data)?;
        let header = FileHeader64::<LE>::parse(data).map_err(|_| Error::BadHeader)?;
        let machine = header.e_machine.get(LE);
        if machine != EM_X86_64 {
            return Err(Error::WrongMachine(machine));
        }
        let relocatable = match header.e_type.get(LE) {
            ET_DYN => true,
            ET_EXEC => false,
            other => return Err(Error::NotExecutable(other)),
        };
        let phdrs = header
            .program_headers(LE, data)
            .map_err(|_| Error::BadProgramHeaders)?;

        let mut link_start = u64::MAX;
        let mut link_end = 0u64;
        let mut prev_end = 0u64;
        let mut align = PAGE;
        let mut loads = 0usize;
        let mut tls_index = None;
        let mut dynamic = None;
        for (i, ph) in phdrs.iter().enumerate() {
            match ph.p_type.get(LE) {
                PT_INTERP => return Err(Error::DynamicallyLinked),
                PT_TLS => tls_index = Some(i),
                PT_DYNAMIC => dynamic = Some(i),
                PT_LOAD => {
                    let seg = Segment::of(ph);
                    seg.check_file(i, data.len())?;
                    if seg.filesz > seg.memsz {
                        return Err(Error::SegmentFileSizeTooLarge(i));
                    }
                    let end = seg
                        .vaddr
                        .checked_add(seg.memsz)
                        .and_then(|e| align_up(e, PAGE))
                        .ok_or(Error::SegmentAddressOverflow(i))?;
                    let p_align = ph.p_align.get(LE);
                    if p_align != 0 && !p_align.is_power_of_two() {
                        return Err(Error::BadAlignment(i));
                    }
                    if loads > 0 && seg.vaddr < prev_end {
                        return Err(Error::SegmentsOverlap(i));
                    }
                    prev_end = seg.vaddr + seg.memsz;
                    align = align.max(p_align);
                    link_start = link_start.min(align_down(seg.vaddr, PAGE));
                    link_end = link_end.max(end);
                    loads += 1;
                }
                _ => {}
            }
        }
        if loads == 0 {
            return Err(Error::NoLoadSegments);
        }

        let mut image = Self {
            data,
            phdrs,
            relocatable,
            entry: header.e_entry.get(LE),
            link_start,
            link_end,
            align,
            tls: None,
            relocs: Relocs::default(),
        };
        if image.segment_containing(image.entry, 1).is_none() {
            return Err(Error::EntryOutsideImage(image.entry));
        }
        if let Some(i) = tls_index {
            image.tls = Some(image.check_tls(&phdrs[i])?);
        }
        if let Some(i) = dynamic {
            image.relocs = image.parse_dynamic(&phdrs[i])?;
        }
        image.for_each_reloc(|_| Ok(()))?;
        Ok(image)
    }

    /// Whether the image is position independent (`ET_DYN`) and may be
    /// loaded at any suitably aligned base.
    pub fn is_relocatable(&self) -> bool {
        self.relocatable
    }

    /// For a fixed-address (`ET_EXEC`) image, the base it must be loaded at.
    pub fn fixed_base(&self) -> Option<u64> {
        (!self.relocatable).then_some(self.link_start)
    }

    /// The link-time entry point.
    pub fn entry(&self) -> u64 {
        self.entry
    }

    /// Link-time address of the image's first page.
    pub fn link_start(&self) -> u64 {
        self.link_start
    }

    /// Bytes the loaded image spans, page aligned, from its first page to the
    /// end of `.bss`.
    pub fn mem_size(&self) -> u64 {
        self.link_end - self.link_start
    }

    /// Alignment a load base must have: the largest `p_align` of the `PT_LOAD`
    /// segments, at least 4 KiB.
    pub fn align(&self) -> u64 {
        self.align
    }

    /// The lowest base `>= min` this image may be loaded at with alignment at
    /// least `align` (a power of two), or `None` on overflow. For a
    /// fixed-address image this is its link address if that is `>= min`.
    pub fn base_at_or_above(&self, min: u64, align: u64) -> Option<u64> {
        match self.fixed_base() {
            Some(base) => (base >= min).then_some(base),
            None => align_up(min, align.max(self.align)),
        }
    }

    /// The TLS template at link-time addresses, if the image has `PT_TLS`.
    pub fn tls(&self) -> Option<TlsTemplate> {
        self.tls
    }

    /// Copies the image into `dest` (guest-physical `[dest_phys, dest_phys +
    /// dest.len())`) so that its first page lands at `base`, clears `.bss`
    /// and the gaps between segments unless `state` is [`Dest::Zeroed`], and
    /// applies the relocations.
    pub fn load(
        &self,
        dest: &mut [u8],
        dest_phys: u64,
        base: u64,
        state: Dest,
    ) -> Result<LoadedImage, Error> {
        if !base.is_multiple_of(PAGE) {
            return Err(Error::Misaligned(base));
        }
        if let Some(linked) = self.fixed_base()
            && base != linked
        {
            return Err(Error::FixedAddress { linked, base });
        }
        let bias = base.wrapping_sub(self.link_start);
        if !bias.is_multiple_of(self.align) {
            return Err(Error::MisalignedBase {
                base,
                align: self.align,
            });
        }
        let size = self.mem_size();
        base.checked_add(size).ok_or(Error::AddressOverflow)?;
        let window = sub_mut(dest, dest_phys, base, size, Item::Image)?;

        // Offsets below are relative to `base`, and every segment lies in
        // [link_start, link_end) (checked by `parse`), so they are in `window`.
        let mut cursor = 0usize;
        for ph in self.loads() {
            let seg = Segment::of(ph);
            let at = to_usize(seg.vaddr - self.link_start);
            let file_end = at + to_usize(seg.filesz);
            let mem_end = at + to_usize(seg.memsz);
            if state == Dest::Dirty {
                window[cursor..at].fill(0);
                window[file_end..mem_end].fill(0);
            }
            let src = to_usize(seg.offset);
            window[at..file_end].copy_from_slice(&self.data[src..src + to_usize(seg.filesz)]);
            cursor = mem_end;
        }
        if state == Dest::Dirty {
            window[cursor..].fill(0);
        }

        let link_start = self.link_start;
        self.for_each_reloc(|r| {
            let at = to_usize(r.offset() - link_start);
            let slot: &mut [u8; 8] = (&mut window[at..at + 8])
                .try_into()
                .map_err(|_| Error::RelocationOutsideImage(r.offset()))?;
            let value = match r {
                Reloc::Relative { addend, .. } => bias.wrapping_add(addend as u64),
                Reloc::Relr { .. } => u64::from_le_bytes(*slot).wrapping_add(bias),
            };
            *slot = value.to_le_bytes();
            Ok(())
        })?;

        let tls = match self.tls {
            Some(t) => TlsTemplate {
                start: t.start.wrapping_add(bias),
                ..t
            },
            None => TlsTemplate::default(),
        };
        Ok(LoadedImage {
            entry: self.entry.wrapping_add(bias),
            image: PhysSlice {
                addr: base,
                len: size,
            },
            load_bias: bias,
            tls,
        })
    }

    /// The ELF notes of the image's `PT_NOTE` segments, in file order.
    /// A malformed note ends the walk of its segment.
    pub fn notes(&self) -> impl Iterator<Item = Note<'a>> + use<'a> {
        let data = self.data;
        self.phdrs
            .iter()
            .filter(|ph| ph.p_type.get(LE) == PT_NOTE)
            .filter_map(move |ph| {
                let start = usize::try_from(ph.p_offset.get(LE)).ok()?;
                let len = usize::try_from(ph.p_filesz.get(LE)).ok()?;
                data.get(start..start.checked_add(len)?)
            })
            .flat_map(|bytes| NoteIter { bytes })
    }

    /// The network card model the image asks for (its hermit NIC note),
    /// e.g. `"rtl8139"` or `"virtio-net"`.
    pub fn nic_model(&self) -> Option<&'a str> {
        self.notes()
            .find(|n| n.name == NOTE_NAME_HERMIT && n.kind == NOTE_TYPE_NIC)
            .and_then(|n| core::str::from_utf8(n.desc).ok())
    }

    /// Whether the image carries the hermit note [`NOTE_TYPE_NATIVE`].
    pub fn starts_natively(&self) -> bool {
        self.notes()
            .any(|n| n.name == NOTE_NAME_HERMIT && n.kind == NOTE_TYPE_NATIVE)
    }

    fn loads(&self) -> impl Iterator<Item = &'a ProgramHeader64<LE>> + use<'a> {
        self.phdrs.iter().filter(|ph| ph.p_type.get(LE) == PT_LOAD)
    }

    /// The `PT_LOAD` segment whose memory holds `[addr, addr + len)`.
    fn segment_containing(&self, addr: u64, len: u64) -> Option<Segment> {
        let end = addr.checked_add(len)?;
        self.loads()
            .map(Segment::of)
            .find(|s| s.vaddr <= addr && end <= s.vaddr + s.memsz)
    }

    /// The file bytes behind link address range `[addr, addr + len)`.
    fn file_bytes(&self, addr: u64, len: u64) -> Option<&'a [u8]> {
        if len == 0 {
            return Some(&[]);
        }
        let end = addr.checked_add(len)?;
        let seg = self
            .loads()
            .map(Segment::of)
            .find(|s| s.vaddr <= addr && end <= s.vaddr + s.filesz)?;
        let start = to_usize(seg.offset + (addr - seg.vaddr));
        self.data.get(start..start + to_usize(len))
    }

    fn check_tls(&self, ph: &ProgramHeader64<LE>) -> Result<TlsTemplate, Error> {
        let seg = Segment::of(ph);
        let align = ph.p_align.get(LE);
        if seg.filesz > seg.memsz || (align != 0 && !align.is_power_of_two()) {
            return Err(Error::BadTls);
        }
        seg.vaddr.checked_add(seg.memsz).ok_or(Error::BadTls)?;
        // The initialised part is copied by the kernel from the loaded image.
        if seg.filesz > 0 && self.segment_containing(seg.vaddr, seg.filesz).is_none() {
            return Err(Error::BadTls);
        }
        Ok(TlsTemplate {
            start: seg.vaddr,
            file_size: seg.filesz,
            mem_size: seg.memsz,
            align: align.max(1),
        })
    }

    fn parse_dynamic(&self, ph: &ProgramHeader64<LE>) -> Result<Relocs<'a>, Error> {
        let seg = Segment::of(ph);
        let start = usize::try_from(seg.offset).map_err(|_| Error::BadDynamic)?;
        let len = usize::try_from(seg.filesz).map_err(|_| Error::BadDynamic)?;
        let bytes = self
            .data
            .get(start..start.checked_add(len).ok_or(Error::BadDynamic)?)
            .ok_or(Error::BadDynamic)?;
        let count = bytes.len() / size_of::<Dyn64<LE>>();
        let (entries, _) = object::pod::slice_from_bytes::<Dyn64<LE>>(bytes, count)
            .map_err(|_| Error::BadDynamic)?;

        let (mut rela, mut rela_size, mut rela_ent) = (None, 0, 24);
        let (mut relr, mut relr_size, mut relr_ent) = (None, 0, 8);
        let (mut jmprel, mut plt_size, mut plt_kind) = (None, 0, u64::from(DT_RELA));
        let mut rel_size = 0;
        for d in entries {
            let (tag, val) = (d.d_tag.get(LE), d.d_val.get(LE));
            match tag {
                t if t == u64::from(DT_NULL) => break,
                t if t == u64::from(DT_NEEDED) => return Err(Error::DynamicallyLinked),
                t if t == u64::from(DT_RELA) => rela = Some(val),
                t if t == u64::from(DT_RELASZ) => rela_size = val,
                t if t == u64::from(DT_RELAENT) => rela_ent = val,
                t if t == u64::from(DT_REL) || t == u64::from(DT_RELSZ) => rel_size |= val,
                t if t == u64::from(DT_JMPREL) => jmprel = Some(val),
                t if t == u64::from(DT_PLTRELSZ) => plt_size = val,
                t if t == u64::from(DT_PLTREL) => plt_kind = val,
                DT_RELR => relr = Some(val),
                DT_RELRSZ => relr_size = val,
                DT_RELRENT => relr_ent = val,
                _ => {}
            }
        }
        if rel_size != 0 {
            return Err(Error::UnsupportedRelocationTable(u64::from(DT_REL)));
        }
        if rela_ent != 24 || relr_ent != 8 || !relr_size.is_multiple_of(8) {
            return Err(Error::BadDynamic);
        }
        let mut relocs = Relocs::default();
        if let Some(addr) = rela {
            relocs.rela = self.rela_table(addr, rela_size)?;
        }
        if let Some(addr) = jmprel.filter(|_| plt_size > 0) {
            if plt_kind != u64::from(DT_RELA) {
                return Err(Error::UnsupportedRelocationTable(u64::from(DT_PLTREL)));
            }
            relocs.plt = self.rela_table(addr, plt_size)?;
        }
        if let Some(addr) = relr {
            relocs.relr = self.file_bytes(addr, relr_size).ok_or(Error::BadDynamic)?;
        }
        Ok(relocs)
    }

    fn rela_table(&self, addr: u64, size: u64) -> Result<&'a [Rela64<LE>], Error> {
        if !size.is_multiple_of(24) {
            return Err(Error::BadDynamic);
        }
        let bytes = self.file_bytes(addr, size).ok_or(Error::BadDynamic)?;
        object::pod::slice_from_all_bytes::<Rela64<LE>>(bytes).map_err(|_| Error::BadDynamic)
    }

    /// Calls `f` for every relocation after checking its type and that the
    /// 8 bytes it patches lie in a loaded segment.
    fn for_each_reloc(&self, mut f: impl FnMut(Reloc) -> Result<(), Error>) -> Result<(), Error> {
        let mut apply = |r: Reloc| {
            if self.segment_containing(r.offset(), 8).is_none() {
                return Err(Error::RelocationOutsideImage(r.offset()));
            }
            f(r)
        };
        for rela in self.relocs.rela.iter().chain(self.relocs.plt) {
            let info = rela.r_info.get(LE);
            let offset = rela.r_offset.get(LE);
            // The low 32 bits of `r_info` are the type on x86_64.
            match (info & 0xffff_ffff) as u32 {
                R_X86_64_NONE => {}
                R_X86_64_RELATIVE => apply(Reloc::Relative {
                    offset,
                    addend: rela.r_addend.get(LE),
                })?,
                other => return Err(Error::UnsupportedRelocation(other)),
            }
        }
        // RELR: an even word is an address to patch; an odd word is a bitmap
        // of the 63 words following the last address.
        let mut next = 0u64;
        for word in self.relocs.relr.chunks_exact(8) {
            let word = u64::from_le_bytes(word.try_into().map_err(|_| Error::BadDynamic)?);
            if word & 1 == 0 {
                apply(Reloc::Relr { offset: word })?;
                next = word.checked_add(8).ok_or(Error::BadDynamic)?;
            } else {
                for bit in 1..64 {
                    if word & (1 << bit) != 0 {
                        let offset = (bit - 1) * 8;
                        apply(Reloc::Relr {
                            offset: next.checked_add(offset).ok_or(Error::BadDynamic)?,
                        })?;
                    }
                }
                next = next.checked_add(63 * 8).ok_or(Error::BadDynamic)?;
            }
        }
        Ok(())
    }
}

/// One relocation to apply.
#[derive(Clone, Copy, Debug)]
enum Reloc {
    /// `R_X86_64_RELATIVE`: store `bias + addend`.
    Relative { offset: u64, addend: i64 },
    /// RELR: add `bias` to the word in place.
    Relr { offset: u64 },
}

impl Reloc {
    fn offset(self) -> u64 {
        match self {
            Self::Relative { offset, .. } | Self::Relr { offset } => offset,
        }
    }
}

/// The address fields of a program header.
#[derive(Clone, Copy, Debug)]
struct Segment {
    offset: u64,
    vaddr: u64,
    filesz: u64,
    memsz: u64,
}

impl Segment {
    fn of(ph: &ProgramHeader64<LE>) -> Self {
        Self {
            offset: ph.p_offset.get(LE),
            vaddr: ph.p_vaddr.get(LE),
            filesz: ph.p_filesz.get(LE),
            memsz: ph.p_memsz.get(LE),
        }
    }

    fn check_file(&self, index: usize, file_len: usize) -> Result<(), Error> {
        match self.offset.checked_add(self.filesz) {
            Some(end) if end <= file_len as u64 => Ok(()),
            _ => Err(Error::SegmentOutsideFile(index)),
        }
    }
}

fn check_ident(data: &[u8]) -> Result<(), Error> {
    if data.len() < 4 || data[..4] != *b"\x7fELF" {
        return Err(Error::NotElf);
    }
    if data.len() < size_of::<FileHeader64<LE>>() {
        return Err(Error::Truncated);
    }
    match (data[4], data[5], data[6]) {
        (2, 1, 1) => Ok(()),
        (2, 1, _) => Err(Error::BadHeader),
        (2, _, _) => Err(Error::NotLittleEndian),
        _ => Err(Error::Not64Bit),
    }
}

/// Converts a value already checked to be within an in-memory slice.
fn to_usize(x: u64) -> usize {
    // Only called on offsets bounded by a slice length.
    x as usize
}
