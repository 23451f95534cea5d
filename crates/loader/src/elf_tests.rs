//! Tests of ELF checking and loading on hand-built images.

use std::vec;
use std::vec::Vec;

use crate::{Dest, Error, Image};

const PT_LOAD: u32 = 1;
const PT_DYNAMIC: u32 = 2;
const PT_INTERP: u32 = 3;
const PT_TLS: u32 = 7;
const PT_NOTE: u32 = 4;
const ET_EXEC: u16 = 2;
const ET_DYN: u16 = 3;

/// One program header plus the file bytes behind it.
#[derive(Clone)]
struct Seg {
    kind: u32,
    vaddr: u64,
    data: Vec<u8>,
    memsz: u64,
    align: u64,
}

fn load(vaddr: u64, data: Vec<u8>, memsz: u64) -> Seg {
    Seg {
        kind: PT_LOAD,
        vaddr,
        data,
        memsz,
        align: 0x1000,
    }
}

/// Builds an ELF64 x86_64 file: header, program headers, then each
/// segment's bytes (16-byte aligned).
fn build(e_type: u16, entry: u64, segs: &[Seg]) -> Vec<u8> {
    let phoff = 64u64;
    let mut data_off = phoff + 56 * segs.len() as u64;
    let mut out = Vec::new();
    out.extend_from_slice(b"\x7fELF\x02\x01\x01\x00");
    out.extend_from_slice(&[0; 8]);
    out.extend_from_slice(&e_type.to_le_bytes());
    out.extend_from_slice(&62u16.to_le_bytes());
    out.extend_from_slice(&1u32.to_le_bytes());
    out.extend_from_slice(&entry.to_le_bytes());
    out.extend_from_slice(&phoff.to_le_bytes());
    out.extend_from_slice(&0u64.to_le_bytes()); // shoff
    out.extend_from_slice(&0u32.to_le_bytes()); // flags
    out.extend_from_slice(&64u16.to_le_bytes()); // ehsize
    out.extend_from_slice(&56u16.to_le_bytes()); // phentsize
    out.extend_from_slice(&(segs.len() as u16).to_le_bytes());
    out.extend_from_slice(&[0; 6]); // shentsize, shnum, shstrndx
    let mut offsets = Vec::new();
    for s in segs {
        data_off = data_off.next_multiple_of(16);
        offsets.push(data_off);
        out.extend_from_slice(&s.kind.to_le_bytes());
        out.extend_from_slice(&7u32.to_le_bytes()); // RWX
        out.extend_from_slice(&data_off.to_le_bytes());
        out.extend_from_slice(&s.vaddr.to_le_bytes());
        out.extend_from_slice(&s.vaddr.to_le_bytes());
        out.extend_from_slice(&(s.data.len() as u64).to_le_bytes());
        out.extend_from_slice(&s.memsz.to_le_bytes());
        out.extend_from_slice(&s.align.to_le_bytes());
        data_off += s.data.len() as u64;
    }
    for (s, off) in segs.iter().zip(offsets) {
        out.resize(off as usize, 0);
        out.extend_from_slice(&s.data);
    }
    out
}

fn rela(offset: u64, kind: u32, addend: i64) -> Vec<u8> {
    let mut v = offset.to_le_bytes().to_vec();
    v.extend_from_slice(&u64::from(kind).to_le_bytes());
    v.extend_from_slice(&addend.to_le_bytes());
    v
}

fn dynamic(entries: &[(u64, u64)]) -> Seg {
    let mut data = Vec::new();
    for &(tag, val) in entries.iter().chain(&[(0, 0)]) {
        data.extend_from_slice(&tag.to_le_bytes());
        data.extend_from_slice(&val.to_le_bytes());
    }
    let memsz = data.len() as u64;
    Seg {
        kind: PT_DYNAMIC,
        vaddr: 0x3000,
        data,
        memsz,
        align: 8,
    }
}

const CODE: &[u8] = &[0xf4; 0x100]; // hlt

/// A static PIE: code at 0, data at 0x2000 (0x40 bytes + .bss to 0x3000)
/// holding a pointer at 0x2008 and, from 0x2010, its RELA table (one
/// RELATIVE, one NONE); TLS at 0x2000 (8 bytes + 0x18 .tbss).
fn pie_with(relocs: &[(u64, u32, i64)], extra_dyn: &[(u64, u64)]) -> Vec<u8> {
    let mut data = vec![0x11u8; 0x10];
    for &(off, kind, addend) in relocs {
        data.extend(rela(off, kind, addend));
    }
    let relasz = (data.len() - 0x10) as u64;
    let mut dyn_entries = vec![(7, 0x2010), (8, relasz), (9, 24)];
    dyn_entries.extend_from_slice(extra_dyn);
    let mut data_seg = load(0x2000, data, 0x1000);
    data_seg.memsz = 0x1000;
    build(
        ET_DYN,
        0x10,
        &[
            load(0, CODE.to_vec(), 0x100),
            data_seg,
            dynamic(&dyn_entries),
            Seg {
                kind: PT_TLS,
                vaddr: 0x2000,
                data: vec![0x11; 8],
                memsz: 0x20,
                align: 8,
            },
        ],
    )
}

fn pie() -> Vec<u8> {
    pie_with(&[(0x2008, 8, 0x10), (0, 0, 0)], &[])
}

/// A window of guest memory `[0x100000, 0x500000)` filled with 0xaa.
fn window() -> Vec<u8> {
    vec![0xaa; 0x40_0000]
}
const WIN: u64 = 0x10_0000;

fn at(mem: &[u8], phys: u64, len: usize) -> &[u8] {
    let i = (phys - WIN) as usize;
    &mem[i..i + len]
}

#[test]
fn loads_a_static_pie_and_relocates_it() {
    let file = pie();
    let image = Image::parse(&file).unwrap();
    assert!(image.is_relocatable());
    assert_eq!(image.mem_size(), 0x3000);
    assert_eq!(image.align(), 0x1000);
    assert_eq!(image.fixed_base(), None);
    assert_eq!(image.base_at_or_above(0x1_0001, 0x20_0000), Some(0x20_0000));

    let mut mem = window();
    let loaded = image.load(&mut mem, WIN, 0x20_0000, Dest::Dirty).unwrap();
    assert_eq!(loaded.entry, 0x20_0010);
    assert_eq!(loaded.load_bias, 0x20_0000);
    assert_eq!(loaded.image.addr, 0x20_0000);
    assert_eq!(loaded.image.len, 0x3000);
    assert_eq!(loaded.tls.start, 0x20_2000);
    assert_eq!(loaded.tls.file_size, 8);
    assert_eq!(loaded.tls.mem_size, 0x20);
    assert_eq!(loaded.tls.align, 8);

    assert_eq!(at(&mem, 0x20_0000, 0x100), CODE);
    // Gap between the segments and .bss are cleared; outside stays.
    assert!(at(&mem, 0x20_0100, 0x1f00).iter().all(|&b| b == 0));
    assert!(at(&mem, 0x20_2040, 0xfc0).iter().all(|&b| b == 0));
    assert_eq!(at(&mem, 0x20_3000, 1), [0xaa]);
    assert_eq!(at(&mem, 0x1f_ffff, 1), [0xaa]);
    // The relocated pointer.
    assert_eq!(at(&mem, 0x20_2008, 8), 0x20_0010u64.to_le_bytes());
    assert_eq!(at(&mem, 0x20_2000, 8), [0x11; 8]);
}

#[test]
fn zeroed_destination_is_not_cleared() {
    let file = pie();
    let image = Image::parse(&file).unwrap();
    let mut mem = window();
    image.load(&mut mem, WIN, 0x20_0000, Dest::Zeroed).unwrap();
    assert_eq!(at(&mem, 0x20_2040, 1), [0xaa]);
    assert_eq!(at(&mem, 0x20_2008, 8), 0x20_0010u64.to_le_bytes());
}

#[test]
fn load_checks_base_and_window() {
    let file = pie();
    let image = Image::parse(&file).unwrap();
    let mut mem = window();
    assert_eq!(
        image.load(&mut mem, WIN, 0x20_0800, Dest::Dirty),
        Err(Error::Misaligned(0x20_0800))
    );
    assert!(matches!(
        image.load(&mut mem, WIN, 0x4f_f000, Dest::Dirty),
        Err(Error::OutOfWindow { .. })
    ));
    assert!(matches!(
        image.load(&mut mem, WIN, 0, Dest::Dirty),
        Err(Error::OutOfWindow { .. })
    ));
    assert_eq!(
        image.load(&mut mem, WIN, !0xfff, Dest::Dirty),
        Err(Error::AddressOverflow)
    );
}

#[test]
fn large_p_align_constrains_the_base() {
    let mut seg = load(0, CODE.to_vec(), 0x100);
    seg.align = 0x20_0000;
    let file = build(ET_DYN, 0, &[seg]);
    let image = Image::parse(&file).unwrap();
    assert_eq!(image.align(), 0x20_0000);
    let mut mem = window();
    assert_eq!(
        image.load(&mut mem, WIN, 0x10_1000, Dest::Dirty),
        Err(Error::MisalignedBase {
            base: 0x10_1000,
            align: 0x20_0000
        })
    );
    assert!(image.load(&mut mem, WIN, 0x20_0000, Dest::Dirty).is_ok());
}

#[test]
fn fixed_address_images_load_only_at_their_address() {
    let file = build(
        ET_EXEC,
        0x20_0000,
        &[load(0x20_0000, CODE.to_vec(), 0x2000)],
    );
    let image = Image::parse(&file).unwrap();
    assert!(!image.is_relocatable());
    assert_eq!(image.fixed_base(), Some(0x20_0000));
    assert_eq!(image.base_at_or_above(0x1000, 0x1000), Some(0x20_0000));
    assert_eq!(image.base_at_or_above(0x30_0000, 0x1000), None);
    let mut mem = window();
    assert_eq!(
        image.load(&mut mem, WIN, 0x40_0000, Dest::Dirty),
        Err(Error::FixedAddress {
            linked: 0x20_0000,
            base: 0x40_0000
        })
    );
    let loaded = image.load(&mut mem, WIN, 0x20_0000, Dest::Dirty).unwrap();
    assert_eq!(loaded.entry, 0x20_0000);
    assert_eq!(loaded.load_bias, 0);
    assert_eq!(loaded.tls, Default::default());
}

#[test]
fn other_relocation_types_are_rejected_by_name() {
    let file = pie_with(&[(0x2008, 6, 0)], &[]);
    let err = Image::parse(&file).unwrap_err();
    assert_eq!(err, Error::UnsupportedRelocation(6));
    assert_eq!(
        err.to_string(),
        "unsupported relocation type R_X86_64_GLOB_DAT"
    );
    let err = Image::parse(&pie_with(&[(0x2008, 200, 0)], &[])).unwrap_err();
    assert_eq!(err.to_string(), "unsupported relocation type 200");
}

#[test]
fn relocations_outside_the_image_are_rejected() {
    for offset in [0x3000, 0x2ffc, u64::MAX - 3, 0x10_0000] {
        assert_eq!(
            Image::parse(&pie_with(&[(offset, 8, 0)], &[])).unwrap_err(),
            Error::RelocationOutsideImage(offset)
        );
    }
}

#[test]
fn relr_relocations_are_applied() {
    // An address entry for 0x2000, then a bitmap over the words from 0x2008
    // with bits 2 and 4 set (0x2010, 0x2020); the table lives at 0x2100.
    let mut data = vec![0u8; 0x100];
    data[0..8].copy_from_slice(&0x40u64.to_le_bytes());
    data[0x10..0x18].copy_from_slice(&0x50u64.to_le_bytes());
    data[0x20..0x28].copy_from_slice(&0x60u64.to_le_bytes());
    data[0x08..0x10].copy_from_slice(&0x70u64.to_le_bytes());
    data.extend_from_slice(&0x2000u64.to_le_bytes());
    data.extend_from_slice(&(1u64 | 1 << 2 | 1 << 4).to_le_bytes());
    let file = build(
        ET_DYN,
        0,
        &[
            load(0, CODE.to_vec(), 0x100),
            load(0x2000, data, 0x110),
            dynamic(&[(36, 0x2100), (35, 16), (37, 8)]),
        ],
    );
    let image = Image::parse(&file).unwrap();
    let mut mem = window();
    image.load(&mut mem, WIN, 0x20_0000, Dest::Dirty).unwrap();
    let word = |a: u64| u64::from_le_bytes(at(&mem, a, 8).try_into().unwrap());
    assert_eq!(word(0x20_2000), 0x20_0040);
    assert_eq!(word(0x20_2008), 0x70, "bit 1 is clear");
    assert_eq!(word(0x20_2010), 0x20_0050);
    assert_eq!(word(0x20_2020), 0x20_0060);
}

#[test]
fn dynamic_section_problems_are_reported() {
    let needed = pie_with(&[], &[(1, 1)]);
    assert_eq!(Image::parse(&needed).unwrap_err(), Error::DynamicallyLinked);
    let rel = pie_with(&[], &[(17, 0x2010), (18, 16)]);
    let err = Image::parse(&rel).unwrap_err();
    assert_eq!(err, Error::UnsupportedRelocationTable(17));
    assert!(err.to_string().contains("DT_REL"));
    let bad_ent = pie_with(&[(0x2008, 8, 0)], &[(9, 16)]);
    assert_eq!(Image::parse(&bad_ent).unwrap_err(), Error::BadDynamic);
    // RELA table pointing into .bss (no file bytes) or past the image.
    for addr in [0x2800, 0x9000, u64::MAX - 8] {
        let f = pie_with(&[(0x2008, 8, 0)], &[(7, addr)]);
        assert_eq!(
            Image::parse(&f).unwrap_err(),
            Error::BadDynamic,
            "{addr:#x}"
        );
    }
    let plt_rel = pie_with(&[], &[(23, 0x2010), (2, 24), (20, 17)]);
    assert_eq!(
        Image::parse(&plt_rel).unwrap_err(),
        Error::UnsupportedRelocationTable(20)
    );
    let jump_slot = pie_with(&[(0x2008, 7, 0)], &[(23, 0x2010), (2, 24), (20, 7)]);
    assert_eq!(
        Image::parse(&jump_slot).unwrap_err(),
        Error::UnsupportedRelocation(7)
    );
}

#[test]
fn header_problems_are_reported() {
    let good = pie();
    assert_eq!(Image::parse(&[]).unwrap_err(), Error::NotElf);
    assert_eq!(
        Image::parse(b"#!/bin/sh\necho hi\n").unwrap_err(),
        Error::NotElf
    );
    assert_eq!(Image::parse(&good[..40]).unwrap_err(), Error::Truncated);

    let patched = |at: usize, bytes: &[u8]| {
        let mut f = good.clone();
        f[at..at + bytes.len()].copy_from_slice(bytes);
        Image::parse(&f).unwrap_err()
    };
    assert_eq!(patched(4, &[1]), Error::Not64Bit);
    assert_eq!(patched(5, &[2]), Error::NotLittleEndian);
    assert_eq!(patched(6, &[0]), Error::BadHeader);
    let err = patched(18, &3u16.to_le_bytes());
    assert_eq!(err, Error::WrongMachine(3));
    assert!(err.to_string().starts_with("not an x86_64 image"));
    assert_eq!(patched(16, &1u16.to_le_bytes()), Error::NotExecutable(1));
    // phoff far outside, phentsize wrong, phnum too large.
    assert_eq!(
        patched(32, &u64::MAX.to_le_bytes()),
        Error::BadProgramHeaders
    );
    assert_eq!(patched(54, &32u16.to_le_bytes()), Error::BadProgramHeaders);
    assert_eq!(
        patched(56, &0xfffeu16.to_le_bytes()),
        Error::BadProgramHeaders
    );
    // Entry outside every segment.
    assert_eq!(
        patched(24, &0x5000u64.to_le_bytes()),
        Error::EntryOutsideImage(0x5000)
    );
    assert_eq!(Error::NotElf.to_string(), "not an ELF file");
}

#[test]
fn segment_problems_are_reported() {
    let code = || load(0, CODE.to_vec(), 0x100);
    let interp = Seg {
        kind: PT_INTERP,
        vaddr: 0,
        data: b"/lib/ld.so\0".to_vec(),
        memsz: 11,
        align: 1,
    };
    let err = Image::parse(&build(ET_DYN, 0, &[interp, code()])).unwrap_err();
    assert_eq!(err, Error::DynamicallyLinked);
    assert_eq!(
        err.to_string(),
        "dynamically linked images are not supported"
    );

    assert_eq!(
        Image::parse(&build(ET_DYN, 0, &[])).unwrap_err(),
        Error::NoLoadSegments
    );
    assert_eq!(
        Image::parse(&build(ET_DYN, 0, &[load(0, CODE.to_vec(), 0x10)])).unwrap_err(),
        Error::SegmentFileSizeTooLarge(0)
    );
    assert_eq!(
        Image::parse(&build(ET_DYN, 0, &[code(), load(0x80, vec![1], 1)])).unwrap_err(),
        Error::SegmentsOverlap(1)
    );
    assert_eq!(
        Image::parse(&build(ET_DYN, 0x1000, &[load(0x1000, vec![1], 1), code()])).unwrap_err(),
        Error::SegmentsOverlap(1)
    );
    assert_eq!(
        Image::parse(&build(ET_DYN, 0, &[code(), load(u64::MAX - 4, vec![], 8)])).unwrap_err(),
        Error::SegmentAddressOverflow(1)
    );
    let mut odd = code();
    odd.align = 3;
    assert_eq!(
        Image::parse(&build(ET_DYN, 0, &[odd])).unwrap_err(),
        Error::BadAlignment(0)
    );

    // File offsets outside the file, and overflowing ones.
    let file = build(ET_DYN, 0, &[code()]);
    let p_offset = 64 + 8;
    let p_filesz = 64 + 32;
    for (field, value) in [
        (p_offset, u64::MAX),
        (p_offset, file.len() as u64),
        (p_offset, u64::MAX - 0x50),
        (p_filesz, 0x1_0000),
    ] {
        let mut f = file.clone();
        f[field..field + 8].copy_from_slice(&value.to_le_bytes());
        let err = Image::parse(&f).unwrap_err();
        assert!(
            matches!(
                err,
                Error::SegmentOutsideFile(0) | Error::SegmentFileSizeTooLarge(0)
            ),
            "{err:?}"
        );
    }
}

#[test]
fn bad_tls_is_reported() {
    let tls = |data: Vec<u8>, memsz, align| Seg {
        kind: PT_TLS,
        vaddr: 0x80,
        data,
        memsz,
        align,
    };
    let code = load(0, CODE.to_vec(), 0x100);
    for t in [
        tls(vec![0; 8], 4, 8),
        tls(vec![0; 8], 8, 3),
        tls(vec![0; 0x100], 0x100, 8),
        tls(vec![], u64::MAX, 8),
    ] {
        assert_eq!(
            Image::parse(&build(ET_DYN, 0, &[code.clone(), t])).unwrap_err(),
            Error::BadTls
        );
    }
}

/// Every truncation and many single-byte corruptions of a valid image must
/// yield a result, never a panic; whatever parses must load or fail cleanly.
#[test]
fn malformed_images_never_panic() {
    let good = pie();
    let mut mem = window();
    let mut try_image = |f: &[u8]| {
        if let Ok(image) = Image::parse(f) {
            let base = image.base_at_or_above(0x20_0000, 0x1000).unwrap_or(0);
            let _ = image.load(&mut mem, WIN, base, Dest::Dirty);
        }
    };
    for len in 0..good.len() {
        try_image(&good[..len]);
    }
    for i in 0..good.len() {
        for v in [0x00, 0x01, 0x7f, 0x80, 0xff] {
            let mut f = good.clone();
            f[i] = v;
            try_image(&f);
        }
    }
}

fn note(name: &[u8], kind: u32, desc: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&(name.len() as u32 + 1).to_le_bytes());
    out.extend_from_slice(&(desc.len() as u32).to_le_bytes());
    out.extend_from_slice(&kind.to_le_bytes());
    out.extend_from_slice(name);
    out.push(0);
    out.resize(out.len().next_multiple_of(4), 0);
    out.extend_from_slice(desc);
    out.resize(out.len().next_multiple_of(4), 0);
    out
}

fn with_notes(notes: Vec<u8>) -> Vec<u8> {
    let text = load(0x20_0000, vec![0x90; 16], 16);
    let seg = Seg {
        kind: PT_NOTE,
        vaddr: 0x10_0000,
        data: notes,
        memsz: 0,
        align: 4,
    };
    build(ET_EXEC, 0x20_0000, &[seg, text])
}

#[test]
fn notes_and_nic_model() {
    let mut notes = note(b"Xen", 18, &0x1234u64.to_le_bytes());
    notes.extend(note(b"HERMIT", 1, b"rtl8139"));
    let file = with_notes(notes);
    let image = Image::parse(&file).unwrap();
    let all: Vec<_> = image.notes().collect();
    assert_eq!(all.len(), 2);
    assert_eq!(all[0].name, b"Xen");
    assert_eq!(all[0].kind, 18);
    assert_eq!(all[0].desc, &0x1234u64.to_le_bytes());
    assert_eq!(image.nic_model(), Some("rtl8139"));

    let file = with_notes(note(b"HERMIT", 1, b"virtio-net"));
    assert_eq!(Image::parse(&file).unwrap().nic_model(), Some("virtio-net"));
    // Another type or owner is not a NIC request.
    let file = with_notes(note(b"HERMIT", 2, b"rtl8139"));
    assert_eq!(Image::parse(&file).unwrap().nic_model(), None);
    let file = with_notes(note(b"GNU", 1, b"rtl8139"));
    assert_eq!(Image::parse(&file).unwrap().nic_model(), None);
    let file = build(ET_EXEC, 0x20_0000, &[load(0x20_0000, vec![0x90; 16], 16)]);
    assert_eq!(Image::parse(&file).unwrap().nic_model(), None);
}

#[test]
fn native_start_note() {
    let mut notes = note(b"HERMIT", 1, b"virtio-net");
    notes.extend(note(b"HERMIT", 2, &1u32.to_le_bytes()));
    let image_file = with_notes(notes);
    let image = Image::parse(&image_file).unwrap();
    assert!(image.starts_natively());
    assert_eq!(image.nic_model(), Some("virtio-net"));
    // Only the hermit note of that type says so.
    let file = with_notes(note(b"HERMIT", 1, b"virtio-net"));
    assert!(!Image::parse(&file).unwrap().starts_natively());
    let file = with_notes(note(b"GNU", 2, &1u32.to_le_bytes()));
    assert!(!Image::parse(&file).unwrap().starts_natively());
}

#[test]
fn truncated_notes_end_the_walk() {
    let mut bad = note(b"HERMIT", 1, b"rtl8139");
    // descsz far beyond the segment.
    bad[4..8].copy_from_slice(&0xffff_fff0u32.to_le_bytes());
    let file = with_notes(bad);
    let image = Image::parse(&file).unwrap();
    assert_eq!(image.notes().count(), 0);
    let file = with_notes(vec![1, 0, 0]);
    assert_eq!(Image::parse(&file).unwrap().notes().count(), 0);
}
