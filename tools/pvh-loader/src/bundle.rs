//! Reading the boot bundle (`hermit_interface::bundle`) from the initrd.

use core::mem::{offset_of, size_of};

use hermit_interface::bundle::{BundleHeader, MAGIC, VERSION};
use hermit_loader::split_packed;

/// The parts of a bundle, borrowed from it.
pub struct Contents<'a> {
    /// The application ELF image.
    pub image: &'a [u8],
    /// Kernel command line.
    pub cmdline: &'a [u8],
    /// Packed NUL-terminated arguments.
    args: &'a [u8],
    /// Packed NUL-terminated environment entries.
    env: &'a [u8],
    /// Number of CPUs the host asked for.
    pub cpu_count: u32,
    /// Host time at bundle creation, ns since the Unix epoch.
    pub boot_time_ns: u64,
    /// The isle number, or `NOT_AN_ISLE`.
    pub isle: u32,
}

impl<'a> Contents<'a> {
    /// The arguments, without their NULs.
    pub fn args(&self) -> impl Iterator<Item = &'a [u8]> + use<'a> {
        split_packed(self.args)
    }

    /// The environment entries, without their NULs.
    pub fn env(&self) -> impl Iterator<Item = &'a [u8]> + use<'a> {
        split_packed(self.env)
    }
}

/// The little-endian `u64` at `at` (`at + 8` is within the header).
fn u64_at(bytes: &[u8], at: usize) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(b)
}

/// The little-endian `u32` at `at`.
fn u32_at(bytes: &[u8], at: usize) -> u32 {
    let mut b = [0u8; 4];
    b.copy_from_slice(&bytes[at..at + 4]);
    u32::from_le_bytes(b)
}

/// Checks the header and the sections of `bundle`.
pub fn parse(bundle: &[u8]) -> Result<Contents<'_>, &'static str> {
    if bundle.len() < size_of::<BundleHeader>() {
        return Err("shorter than its header");
    }
    if u64_at(bundle, offset_of!(BundleHeader, magic)) != MAGIC {
        return Err("wrong magic (the initrd is not a hermit bundle)");
    }
    if u32_at(bundle, offset_of!(BundleHeader, version)) != VERSION {
        return Err("unsupported version");
    }
    let section = |at: usize| -> Result<&[u8], &'static str> {
        let (offset, len) = (u64_at(bundle, at), u64_at(bundle, at + 8));
        let end = offset.checked_add(len).ok_or("section out of bounds")?;
        bundle
            .get(offset as usize..end as usize)
            .ok_or("section out of bounds")
    };
    let contents = Contents {
        cpu_count: u32_at(bundle, offset_of!(BundleHeader, cpu_count)),
        boot_time_ns: u64_at(bundle, offset_of!(BundleHeader, boot_time_ns)),
        isle: u32_at(bundle, offset_of!(BundleHeader, isle)),
        image: section(offset_of!(BundleHeader, image))?,
        cmdline: section(offset_of!(BundleHeader, cmdline))?,
        args: section(offset_of!(BundleHeader, args))?,
        env: section(offset_of!(BundleHeader, env))?,
    };
    if contents.args().count() as u64 != u64_at(bundle, offset_of!(BundleHeader, args_count)) {
        return Err("argument count does not match the arguments");
    }
    if contents.env().count() as u64 != u64_at(bundle, offset_of!(BundleHeader, env_count)) {
        return Err("environment count does not match the entries");
    }
    Ok(contents)
}
