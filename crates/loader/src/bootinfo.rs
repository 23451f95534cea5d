//! Writing a [`BootInfo`] and the strings it points to into guest memory.

use core::mem::{offset_of, size_of};

use hermit_interface::{
    BOOT_INFO_MAGIC, BOOT_INFO_VERSION, BootInfo, IsleInfo, MAX_MEMORY_REGIONS, MemoryRegion,
    PhysSlice, Platform, StringList, TlsTemplate,
};

use crate::elf::LoadedImage;
use crate::error::{Error, Item};
use crate::window::sub_mut;

/// Size of the encoded [`BootInfo`].
pub const BOOT_INFO_SIZE: usize = size_of::<BootInfo>();

/// The scalar contents of a [`BootInfo`]; the strings are passed separately.
#[derive(Clone, Copy, Debug)]
pub struct BootParams<'a> {
    /// The hypervisor.
    pub platform: Platform,
    /// Number of CPUs.
    pub cpu_count: u32,
    /// TSC frequency in kHz, 0 if unknown.
    pub tsc_khz: u64,
    /// Host wall-clock time in ns since the Unix epoch, 0 if unknown.
    pub boot_time_ns: u64,
    /// The loaded image (entry, range, bias, TLS).
    pub image: &'a LoadedImage,
    /// The memory map (at most [`MAX_MEMORY_REGIONS`] entries), e.g. from
    /// [`build_memory_map`](crate::build_memory_map).
    pub memory: &'a [MemoryRegion],
    /// Guest-physical address of the ACPI RSDP, 0 if unknown.
    pub acpi_rsdp: u64,
    /// Isle membership, [`IsleInfo::NONE`] for a standalone VM.
    pub isle: IsleInfo,
}

/// Where [`write_boot_info`] put things.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WrittenBootInfo {
    /// Guest-physical address of the [`BootInfo`] (the kernel's `RDI`).
    pub addr: u64,
    /// One past the last byte written (boot info plus strings).
    pub end: u64,
}

/// Bytes [`write_boot_info`] needs for these strings: the boot info, the
/// command line plus a NUL, and every argument and environment entry plus
/// its NUL.
pub fn boot_info_size<A, E>(cmdline: &[u8], args: A, env: E) -> u64
where
    A: IntoIterator,
    A::Item: AsRef<[u8]>,
    E: IntoIterator,
    E::Item: AsRef<[u8]>,
{
    let strings = args
        .into_iter()
        .map(|s| s.as_ref().len() as u64 + 1)
        .chain(env.into_iter().map(|s| s.as_ref().len() as u64 + 1))
        .fold(0u64, u64::saturating_add);
    (BOOT_INFO_SIZE as u64)
        .saturating_add(cmdline.len() as u64 + 1)
        .saturating_add(strings)
}

/// Writes a [`BootInfo`] at `at` (8-byte aligned) in `dest` (guest-physical
/// `[dest_phys, dest_phys + dest.len())`), followed by the command line
/// (NUL-terminated, the NUL not counted in `BootInfo::cmdline.len`), the
/// packed arguments and the packed environment.
///
/// Every string must be UTF-8 without NUL bytes; environment entries should
/// have the form `NAME=VALUE`. Fails without a partial result being usable if
/// `dest` is too small or a string is bad.
pub fn write_boot_info<A, E>(
    dest: &mut [u8],
    dest_phys: u64,
    at: u64,
    params: &BootParams<'_>,
    cmdline: &[u8],
    args: A,
    env: E,
) -> Result<WrittenBootInfo, Error>
where
    A: IntoIterator,
    A::Item: AsRef<[u8]>,
    E: IntoIterator,
    E::Item: AsRef<[u8]>,
{
    if !at.is_multiple_of(8) {
        return Err(Error::Misaligned(at));
    }
    if params.memory.len() > MAX_MEMORY_REGIONS {
        return Err(Error::MemoryMapFull {
            capacity: MAX_MEMORY_REGIONS,
        });
    }
    check_string(cmdline)?;
    let header_end = at
        .checked_add(BOOT_INFO_SIZE as u64)
        .ok_or(Error::AddressOverflow)?;
    // Reserve the header's place first so a too-small window fails early.
    sub_mut(dest, dest_phys, at, BOOT_INFO_SIZE as u64, Item::BootInfo)?;

    let mut cursor = header_end;
    let cmdline_addr = cursor;
    put_string(dest, dest_phys, &mut cursor, cmdline)?;
    let args = put_list(dest, dest_phys, &mut cursor, args)?;
    let env = put_list(dest, dest_phys, &mut cursor, env)?;

    let mut memory = [MemoryRegion::EMPTY; MAX_MEMORY_REGIONS];
    memory[..params.memory.len()].copy_from_slice(params.memory);
    let info = BootInfo {
        magic: BOOT_INFO_MAGIC,
        version: BOOT_INFO_VERSION,
        platform: params.platform as u32,
        cpu_count: params.cpu_count,
        memory_count: params.memory.len() as u32,
        tsc_khz: params.tsc_khz,
        boot_time_ns: params.boot_time_ns,
        image: params.image.image,
        load_bias: params.image.load_bias,
        tls: params.image.tls,
        cmdline: PhysSlice {
            addr: cmdline_addr,
            len: cmdline.len() as u64,
        },
        args,
        env,
        memory,
        acpi_rsdp: params.acpi_rsdp,
        isle: params.isle,
    };
    let header = sub_mut(dest, dest_phys, at, BOOT_INFO_SIZE as u64, Item::BootInfo)?;
    header.copy_from_slice(&encode_boot_info(&info));
    Ok(WrittenBootInfo {
        addr: at,
        end: cursor,
    })
}

fn check_string(s: &[u8]) -> Result<(), Error> {
    if s.contains(&0) {
        return Err(Error::StringContainsNul);
    }
    core::str::from_utf8(s).map_err(|_| Error::StringNotUtf8)?;
    Ok(())
}

fn put_string(dest: &mut [u8], dest_phys: u64, cursor: &mut u64, s: &[u8]) -> Result<(), Error> {
    check_string(s)?;
    let len = s.len() as u64 + 1;
    let slot = sub_mut(dest, dest_phys, *cursor, len, Item::BootInfo)?;
    slot[..s.len()].copy_from_slice(s);
    slot[s.len()] = 0;
    *cursor += len;
    Ok(())
}

fn put_list<L>(
    dest: &mut [u8],
    dest_phys: u64,
    cursor: &mut u64,
    list: L,
) -> Result<StringList, Error>
where
    L: IntoIterator,
    L::Item: AsRef<[u8]>,
{
    let start = *cursor;
    let mut count = 0;
    for s in list {
        put_string(dest, dest_phys, cursor, s.as_ref())?;
        count += 1;
    }
    let len = *cursor - start;
    Ok(StringList {
        bytes: PhysSlice {
            addr: if len == 0 { 0 } else { start },
            len,
        },
        count,
    })
}

/// Splits packed NUL-terminated strings (the [`StringList`] format and the
/// boot bundle's) into the strings, without their NULs. A missing final NUL
/// is tolerated.
pub fn split_packed(bytes: &[u8]) -> impl Iterator<Item = &[u8]> {
    let body = bytes.strip_suffix(&[0]).unwrap_or(bytes);
    body.split(|&b| b == 0).filter(move |_| !bytes.is_empty())
}

/// The byte image of `info` in the `#[repr(C)]` layout, little-endian.
pub fn encode_boot_info(info: &BootInfo) -> [u8; BOOT_INFO_SIZE] {
    let mut out = [0u8; BOOT_INFO_SIZE];
    let mut put = |offset: usize, bytes: &[u8]| {
        out[offset..offset + bytes.len()].copy_from_slice(bytes);
    };
    put(offset_of!(BootInfo, magic), &info.magic.to_le_bytes());
    put(offset_of!(BootInfo, version), &info.version.to_le_bytes());
    put(offset_of!(BootInfo, platform), &info.platform.to_le_bytes());
    put(
        offset_of!(BootInfo, cpu_count),
        &info.cpu_count.to_le_bytes(),
    );
    put(
        offset_of!(BootInfo, memory_count),
        &info.memory_count.to_le_bytes(),
    );
    put(offset_of!(BootInfo, tsc_khz), &info.tsc_khz.to_le_bytes());
    put(
        offset_of!(BootInfo, boot_time_ns),
        &info.boot_time_ns.to_le_bytes(),
    );
    let image = offset_of!(BootInfo, image);
    put(image, &info.image.addr.to_le_bytes());
    put(image + 8, &info.image.len.to_le_bytes());
    put(
        offset_of!(BootInfo, load_bias),
        &info.load_bias.to_le_bytes(),
    );
    let tls = offset_of!(BootInfo, tls);
    put(
        tls + offset_of!(TlsTemplate, start),
        &info.tls.start.to_le_bytes(),
    );
    put(
        tls + offset_of!(TlsTemplate, file_size),
        &info.tls.file_size.to_le_bytes(),
    );
    put(
        tls + offset_of!(TlsTemplate, mem_size),
        &info.tls.mem_size.to_le_bytes(),
    );
    put(
        tls + offset_of!(TlsTemplate, align),
        &info.tls.align.to_le_bytes(),
    );
    let cmdline = offset_of!(BootInfo, cmdline);
    put(cmdline, &info.cmdline.addr.to_le_bytes());
    put(cmdline + 8, &info.cmdline.len.to_le_bytes());
    for (offset, list) in [
        (offset_of!(BootInfo, args), &info.args),
        (offset_of!(BootInfo, env), &info.env),
    ] {
        put(offset, &list.bytes.addr.to_le_bytes());
        put(offset + 8, &list.bytes.len.to_le_bytes());
        put(offset + 16, &list.count.to_le_bytes());
    }
    let memory = offset_of!(BootInfo, memory);
    for (i, r) in info.memory.iter().enumerate() {
        let at = memory + i * size_of::<MemoryRegion>();
        put(at + offset_of!(MemoryRegion, start), &r.start.to_le_bytes());
        put(at + offset_of!(MemoryRegion, len), &r.len.to_le_bytes());
        put(at + offset_of!(MemoryRegion, kind), &r.kind.to_le_bytes());
        put(
            at + offset_of!(MemoryRegion, _reserved),
            &r._reserved.to_le_bytes(),
        );
    }
    put(
        offset_of!(BootInfo, acpi_rsdp),
        &info.acpi_rsdp.to_le_bytes(),
    );
    let isle = offset_of!(BootInfo, isle);
    put(
        isle + offset_of!(IsleInfo, region),
        &info.isle.region.addr.to_le_bytes(),
    );
    put(
        isle + offset_of!(IsleInfo, region) + 8,
        &info.isle.region.len.to_le_bytes(),
    );
    put(
        isle + offset_of!(IsleInfo, index),
        &info.isle.index.to_le_bytes(),
    );
    put(
        isle + offset_of!(IsleInfo, flags),
        &info.isle.flags.to_le_bytes(),
    );
    out
}

/// Reads a [`BootInfo`] back from its byte image (for tests and tools; no
/// validation beyond the layout).
pub fn decode_boot_info(bytes: &[u8; BOOT_INFO_SIZE]) -> BootInfo {
    let u64_at = |o: usize| u64::from_le_bytes(bytes[o..o + 8].try_into().unwrap_or([0; 8]));
    let u32_at = |o: usize| u32::from_le_bytes(bytes[o..o + 4].try_into().unwrap_or([0; 4]));
    let slice_at = |o: usize| PhysSlice {
        addr: u64_at(o),
        len: u64_at(o + 8),
    };
    let list_at = |o: usize| StringList {
        bytes: slice_at(o),
        count: u64_at(o + 16),
    };
    let tls = offset_of!(BootInfo, tls);
    let mut memory = [MemoryRegion::EMPTY; MAX_MEMORY_REGIONS];
    for (i, r) in memory.iter_mut().enumerate() {
        let at = offset_of!(BootInfo, memory) + i * size_of::<MemoryRegion>();
        *r = MemoryRegion {
            start: u64_at(at + offset_of!(MemoryRegion, start)),
            len: u64_at(at + offset_of!(MemoryRegion, len)),
            kind: u32_at(at + offset_of!(MemoryRegion, kind)),
            _reserved: u32_at(at + offset_of!(MemoryRegion, _reserved)),
        };
    }
    let acpi_rsdp = u64_at(offset_of!(BootInfo, acpi_rsdp));
    let isle_at = offset_of!(BootInfo, isle);
    let isle = IsleInfo {
        region: slice_at(isle_at + offset_of!(IsleInfo, region)),
        index: u32_at(isle_at + offset_of!(IsleInfo, index)),
        flags: u32_at(isle_at + offset_of!(IsleInfo, flags)),
    };
    BootInfo {
        magic: u64_at(offset_of!(BootInfo, magic)),
        version: u32_at(offset_of!(BootInfo, version)),
        platform: u32_at(offset_of!(BootInfo, platform)),
        cpu_count: u32_at(offset_of!(BootInfo, cpu_count)),
        memory_count: u32_at(offset_of!(BootInfo, memory_count)),
        tsc_khz: u64_at(offset_of!(BootInfo, tsc_khz)),
        boot_time_ns: u64_at(offset_of!(BootInfo, boot_time_ns)),
        image: slice_at(offset_of!(BootInfo, image)),
        load_bias: u64_at(offset_of!(BootInfo, load_bias)),
        tls: TlsTemplate {
            start: u64_at(tls + offset_of!(TlsTemplate, start)),
            file_size: u64_at(tls + offset_of!(TlsTemplate, file_size)),
            mem_size: u64_at(tls + offset_of!(TlsTemplate, mem_size)),
            align: u64_at(tls + offset_of!(TlsTemplate, align)),
        },
        cmdline: slice_at(offset_of!(BootInfo, cmdline)),
        args: list_at(offset_of!(BootInfo, args)),
        env: list_at(offset_of!(BootInfo, env)),
        memory,
        acpi_rsdp,
        isle,
    }
}

#[cfg(test)]
mod tests {
    use std::string::String;
    use std::vec;
    use std::vec::Vec;

    use hermit_interface::MemoryKind;

    use super::*;

    const BASE: u64 = 0x10_0000;

    fn image() -> LoadedImage {
        LoadedImage {
            entry: 0x20_0040,
            image: PhysSlice {
                addr: 0x20_0000,
                len: 0x3000,
            },
            load_bias: 0x20_0000,
            tls: TlsTemplate {
                start: 0x20_2000,
                file_size: 8,
                mem_size: 32,
                align: 8,
            },
        }
    }

    fn params<'a>(image: &'a LoadedImage, memory: &'a [MemoryRegion]) -> BootParams<'a> {
        BootParams {
            platform: Platform::Uhyve,
            cpu_count: 1,
            tsc_khz: 2_000_000,
            boot_time_ns: 1_700_000_000_000_000_000,
            image,
            memory,
            acpi_rsdp: 0xf_5a40,
            isle: IsleInfo {
                region: PhysSlice {
                    addr: 0xd000_0000,
                    len: 64 << 20,
                },
                index: 3,
                flags: 1,
            },
        }
    }

    fn read(mem: &[u8], s: PhysSlice) -> &[u8] {
        let at = (s.addr - BASE) as usize;
        &mem[at..at + s.len as usize]
    }

    #[test]
    fn writes_boot_info_and_strings() {
        let img = image();
        let memory = [MemoryRegion {
            start: 0x1000,
            len: 0x1000,
            kind: MemoryKind::Usable as u32,
            _reserved: 0,
        }];
        let args = ["hello", "a b", ""];
        let env = vec![String::from("HOME=/root"), String::from("X=")];
        let mut mem = vec![0xaau8; 0x2000];
        let at = BASE + 0x10;
        let written = write_boot_info(
            &mut mem,
            BASE,
            at,
            &params(&img, &memory),
            b"log=debug",
            args,
            &env,
        )
        .unwrap();
        assert_eq!(written.addr, at);
        assert_eq!(
            written.end - written.addr,
            boot_info_size(b"log=debug", args, &env)
        );

        let o = (at - BASE) as usize;
        let info = decode_boot_info(mem[o..o + BOOT_INFO_SIZE].try_into().unwrap());
        assert_eq!(info.magic, hermit_interface::BOOT_INFO_MAGIC);
        assert_eq!(info.version, hermit_interface::BOOT_INFO_VERSION);
        assert_eq!(info.platform(), Some(Platform::Uhyve));
        assert_eq!(info.cpu_count, 1);
        assert_eq!(info.tsc_khz, 2_000_000);
        assert_eq!(info.boot_time_ns, 1_700_000_000_000_000_000);
        assert_eq!(info.image, img.image);
        assert_eq!(info.load_bias, img.load_bias);
        assert_eq!(info.tls, img.tls);
        assert_eq!(info.memory_regions(), memory);
        assert_eq!(info.memory[1], MemoryRegion::EMPTY);
        assert_eq!(info.acpi_rsdp, 0xf_5a40);
        assert_eq!(info.isle.index(), Some(3));
        assert_eq!(info.isle.region.len, 64 << 20);
        assert_eq!(info.isle.flags, 1);
        assert_eq!(read(&mem, info.cmdline), b"log=debug");
        assert_eq!(info.args.count, 3);
        assert_eq!(read(&mem, info.args.bytes), b"hello\0a b\0\0");
        assert_eq!(info.env.count, 2);
        assert_eq!(read(&mem, info.env.bytes), b"HOME=/root\0X=\0");
        let back: Vec<_> = split_packed(read(&mem, info.args.bytes)).collect();
        assert_eq!(back, [&b"hello"[..], b"a b", b""]);
        // Nothing written past the end.
        assert_eq!(mem[(written.end - BASE) as usize], 0xaa);
    }

    #[test]
    fn encoding_round_trips() {
        let img = image();
        let mut mem = vec![0u8; 0x1000];
        let none: [&str; 0] = [];
        write_boot_info(&mut mem, BASE, BASE, &params(&img, &[]), b"", none, none).unwrap();
        let info = decode_boot_info(mem[..BOOT_INFO_SIZE].try_into().unwrap());
        assert_eq!(info.args, StringList::default());
        assert_eq!(info.memory_count, 0);
        assert_eq!(encode_boot_info(&info)[..], mem[..BOOT_INFO_SIZE]);
    }

    #[test]
    fn rejects_bad_strings_and_small_windows() {
        let img = image();
        let p = params(&img, &[]);
        let mut mem = vec![0u8; 0x1000];
        let none: [&str; 0] = [];
        let write = |mem: &mut [u8], cmdline: &[u8], args: &[&[u8]]| {
            write_boot_info(mem, BASE, BASE, &p, cmdline, args, none)
        };
        assert_eq!(write(&mut mem, b"a\0b", &[]), Err(Error::StringContainsNul));
        assert_eq!(
            write(&mut mem, b"", &[b"x\0"]),
            Err(Error::StringContainsNul)
        );
        assert_eq!(write(&mut mem, b"", &[b"\xff"]), Err(Error::StringNotUtf8));
        assert_eq!(
            write(&mut mem, b"", &[&[b'x'; 0x1000]]).map(|_| ()),
            Err(Error::OutOfWindow {
                item: Item::BootInfo,
                start: BASE + BOOT_INFO_SIZE as u64 + 1,
                end: BASE + BOOT_INFO_SIZE as u64 + 1 + 0x1001,
            })
        );
        assert!(matches!(
            write(&mut mem[..100], b"", &[]),
            Err(Error::OutOfWindow { .. })
        ));
        assert_eq!(
            write_boot_info(&mut mem, BASE, BASE + 4, &p, b"", none, none),
            Err(Error::Misaligned(BASE + 4))
        );
        let too_many = [MemoryRegion::EMPTY; MAX_MEMORY_REGIONS + 1];
        assert!(matches!(
            write_boot_info(
                &mut mem,
                BASE,
                BASE,
                &params(&img, &too_many),
                b"",
                none,
                none
            ),
            Err(Error::MemoryMapFull { .. })
        ));
    }

    #[test]
    fn split_packed_handles_edge_cases() {
        assert_eq!(split_packed(b"").count(), 0);
        assert_eq!(split_packed(b"\0").collect::<Vec<_>>(), [b""]);
        assert_eq!(
            split_packed(b"a\0bc").collect::<Vec<_>>(),
            [&b"a"[..], b"bc"]
        );
    }
}
