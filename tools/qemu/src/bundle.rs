//! Building the initrd bundle (`hermit_interface::bundle`) the PVH loader reads.

use hermit_interface::bundle::{BundleHeader, MAGIC, Section, VERSION};

/// Alignment of every section inside the bundle.
pub const SECTION_ALIGN: usize = 16;
/// Size of the serialised [`BundleHeader`].
pub const HEADER_SIZE: usize = size_of::<BundleHeader>();

/// A string that cannot be passed as a C string.
#[derive(Debug, PartialEq, Eq)]
pub struct NulInString(pub String);

/// Everything that goes into a bundle.
pub struct Contents<'a> {
    /// The application ELF image.
    pub image: &'a [u8],
    /// Kernel command line.
    pub cmdline: &'a str,
    /// Arguments, `argv[0]` first.
    pub args: &'a [String],
    /// Environment entries `NAME=VALUE`.
    pub env: &'a [String],
    /// Number of CPUs (informational for the kernel).
    pub cpu_count: u32,
    /// Host time in ns since the Unix epoch.
    pub boot_time_ns: u64,
    /// The isle number, or [`hermit_interface::isle::NOT_AN_ISLE`].
    pub isle: u32,
}

/// Packs `strings` as NUL-terminated strings back to back.
fn pack(strings: &[String]) -> Result<Vec<u8>, NulInString> {
    let mut out = Vec::with_capacity(strings.iter().map(|s| s.len() + 1).sum());
    for s in strings {
        if s.contains('\0') {
            return Err(NulInString(s.clone()));
        }
        out.extend_from_slice(s.as_bytes());
        out.push(0);
    }
    Ok(out)
}

/// Appends `data` at the next aligned offset of `out` and returns its section.
fn append(out: &mut Vec<u8>, data: &[u8]) -> Section {
    out.resize(out.len().next_multiple_of(SECTION_ALIGN), 0);
    let offset = out.len() as u64;
    out.extend_from_slice(data);
    Section {
        offset,
        len: data.len() as u64,
    }
}

/// Serialises `header` (little-endian, the `#[repr(C)]` layout).
pub fn header_bytes(header: &BundleHeader) -> [u8; HEADER_SIZE] {
    let mut out = [0u8; HEADER_SIZE];
    let mut at = 0;
    let mut put = |bytes: &[u8]| {
        out[at..at + bytes.len()].copy_from_slice(bytes);
        at += bytes.len();
    };
    put(&header.magic.to_le_bytes());
    put(&header.version.to_le_bytes());
    put(&header.cpu_count.to_le_bytes());
    put(&header.boot_time_ns.to_le_bytes());
    for (section, count) in [
        (header.image, None),
        (header.cmdline, None),
        (header.args, Some(header.args_count)),
        (header.env, Some(header.env_count)),
    ] {
        put(&section.offset.to_le_bytes());
        put(&section.len.to_le_bytes());
        if let Some(n) = count {
            put(&n.to_le_bytes());
        }
    }
    put(&header.isle.to_le_bytes());
    put(&header._reserved.to_le_bytes());
    out
}

/// Parses a header written by [`header_bytes`]; `None` if `bytes` is too
/// short, the magic or version is wrong, or a section lies outside `bytes`.
pub fn parse_header(bytes: &[u8]) -> Option<BundleHeader> {
    let raw: &[u8; HEADER_SIZE] = bytes.get(..HEADER_SIZE)?.try_into().ok()?;
    let u64_at = |at: usize| u64::from_le_bytes(raw[at..at + 8].try_into().expect("8 bytes"));
    let u32_at = |at: usize| u32::from_le_bytes(raw[at..at + 4].try_into().expect("4 bytes"));
    let section = |at: usize| Section {
        offset: u64_at(at),
        len: u64_at(at + 8),
    };
    let header = BundleHeader {
        magic: u64_at(0),
        version: u32_at(8),
        cpu_count: u32_at(12),
        boot_time_ns: u64_at(16),
        image: section(24),
        cmdline: section(40),
        args: section(56),
        args_count: u64_at(72),
        env: section(80),
        env_count: u64_at(96),
        isle: u32_at(104),
        _reserved: u32_at(108),
    };
    let inside = |s: Section| {
        s.offset
            .checked_add(s.len)
            .is_some_and(|end| end <= bytes.len() as u64)
    };
    let ok = header.magic == MAGIC
        && header.version == VERSION
        && [header.image, header.cmdline, header.args, header.env]
            .into_iter()
            .all(inside);
    ok.then_some(header)
}

/// Builds a bundle: the header, then cmdline, args, env and the image, each
/// at a [`SECTION_ALIGN`]-aligned offset.
pub fn build(contents: &Contents<'_>) -> Result<Vec<u8>, NulInString> {
    let args = pack(contents.args)?;
    let env = pack(contents.env)?;
    let mut out = vec![0u8; HEADER_SIZE];
    out.reserve(contents.image.len() + args.len() + env.len() + contents.cmdline.len() + 64);
    let cmdline = append(&mut out, contents.cmdline.as_bytes());
    let args_section = append(&mut out, &args);
    let env_section = append(&mut out, &env);
    let image = append(&mut out, contents.image);
    let header = BundleHeader {
        magic: MAGIC,
        version: VERSION,
        cpu_count: contents.cpu_count,
        boot_time_ns: contents.boot_time_ns,
        image,
        cmdline,
        args: args_section,
        args_count: contents.args.len() as u64,
        env: env_section,
        env_count: contents.env.len() as u64,
        isle: contents.isle,
        _reserved: 0,
    };
    out[..HEADER_SIZE].copy_from_slice(&header_bytes(&header));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn header_size_matches_layout() {
        assert_eq!(HEADER_SIZE, 112);
    }

    #[test]
    fn round_trip() {
        let image = b"\x7fELF pretend image".to_vec();
        let args = strings(&["hello", "a b", ""]);
        let env = strings(&["A=1", "PATH=/x"]);
        let bundle = build(&Contents {
            image: &image,
            cmdline: "log=debug",
            args: &args,
            env: &env,
            cpu_count: 3,
            boot_time_ns: 1234,
            isle: 5,
        })
        .unwrap();
        let h = parse_header(&bundle).expect("valid header");
        assert_eq!(
            (
                h.cpu_count,
                h.boot_time_ns,
                h.args_count,
                h.env_count,
                h.isle
            ),
            (3, 1234, 3, 2, 5)
        );
        let get = |s: Section| &bundle[s.offset as usize..(s.offset + s.len) as usize];
        assert_eq!(get(h.image), &image[..]);
        assert_eq!(get(h.cmdline), b"log=debug");
        assert_eq!(get(h.args), b"hello\0a b\0\0");
        assert_eq!(get(h.env), b"A=1\0PATH=/x\0");
        for s in [h.image, h.cmdline, h.args, h.env] {
            assert_eq!(s.offset as usize % SECTION_ALIGN, 0);
            assert!(s.offset as usize >= HEADER_SIZE);
        }
        // The serialisation is the in-memory `repr(C)` layout.
        let mut raw = [0u8; HEADER_SIZE];
        raw.copy_from_slice(&bundle[..HEADER_SIZE]);
        assert_eq!(header_bytes(&h), raw);
        assert_eq!(&raw[..8], b"HRMTBNDL");
    }

    #[test]
    fn empty_lists() {
        let bundle = build(&Contents {
            image: b"x",
            cmdline: "",
            args: &[],
            env: &[],
            cpu_count: 1,
            boot_time_ns: 0,
            isle: hermit_interface::isle::NOT_AN_ISLE,
        })
        .unwrap();
        let h = parse_header(&bundle).unwrap();
        assert_eq!(
            (h.args.len, h.args_count, h.env.len, h.cmdline.len),
            (0, 0, 0, 0)
        );
    }

    #[test]
    fn rejects_nul_and_bad_headers() {
        let bad = strings(&["a\0b"]);
        let c = Contents {
            image: b"x",
            cmdline: "",
            args: &bad,
            env: &[],
            cpu_count: 1,
            boot_time_ns: 0,
            isle: hermit_interface::isle::NOT_AN_ISLE,
        };
        assert_eq!(build(&c).unwrap_err(), NulInString("a\0b".into()));

        let good = build(&Contents {
            image: b"xyz",
            cmdline: "",
            args: &[],
            env: &[],
            cpu_count: 1,
            boot_time_ns: 0,
            isle: hermit_interface::isle::NOT_AN_ISLE,
        })
        .unwrap();
        assert!(
            parse_header(&good[..good.len() - 1]).is_none(),
            "image runs past the end"
        );
        let mut wrong_magic = good.clone();
        wrong_magic[0] ^= 1;
        assert!(parse_header(&wrong_magic).is_none());
        assert!(parse_header(&good[..10]).is_none());
    }
}
