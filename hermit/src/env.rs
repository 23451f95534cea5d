//! The application's arguments and environment, as the host passed them.
//!
//! They live in boot memory that the kernel never reuses, so they are handed
//! out as `&'static str` without copying. They are checked (UTF-8, count) on
//! first use rather than at boot: an application that never looks at its
//! environment does not pay for scanning it.

use hermit_interface::{BootInfo, StringList};
use spin::Once;

/// A validated list of NUL-terminated UTF-8 strings.
#[derive(Clone, Copy, Debug)]
struct Strings {
    bytes: &'static str,
    count: usize,
}

static ARGS_RAW: Once<StringList> = Once::new();
static ENV_RAW: Once<StringList> = Once::new();
static ARGS: Once<Strings> = Once::new();
static ENV: Once<Strings> = Once::new();

/// Why the boot info's strings were rejected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum StringsError {
    /// The bytes are not valid UTF-8.
    NotUtf8,
    /// The number of NUL terminators differs from the count.
    CountMismatch,
}

impl core::fmt::Display for StringsError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::NotUtf8 => f.write_str("not valid UTF-8"),
            Self::CountMismatch => f.write_str("string count does not match the data"),
        }
    }
}

fn validate(list: &StringList) -> Result<Strings, StringsError> {
    if list.bytes.len == 0 {
        return if list.count == 0 {
            Ok(Strings {
                bytes: "",
                count: 0,
            })
        } else {
            Err(StringsError::CountMismatch)
        };
    }
    // SAFETY: the loader placed the strings in reserved memory that is mapped
    // for the kernel's whole life and never written again.
    let raw = unsafe {
        core::slice::from_raw_parts(list.bytes.addr as *const u8, list.bytes.len as usize)
    };
    let text = core::str::from_utf8(raw).map_err(|_| StringsError::NotUtf8)?;
    let nuls = text.bytes().filter(|&b| b == 0).count();
    if nuls as u64 != list.count || !text.ends_with('\0') {
        return Err(StringsError::CountMismatch);
    }
    Ok(Strings {
        bytes: text,
        count: nuls,
    })
}

/// Records where the arguments and environment are.
pub(crate) fn init(info: &BootInfo) {
    ARGS_RAW.call_once(|| info.args);
    ENV_RAW.call_once(|| info.env);
}

/// The validated list behind `raw`, checked once on first use.
fn checked(cache: &'static Once<Strings>, raw: &Once<StringList>, what: &str) -> Strings {
    *cache.call_once(|| match raw.get().map(validate) {
        None => Strings {
            bytes: "",
            count: 0,
        },
        Some(Ok(strings)) => strings,
        Some(Err(e)) => panic!("the {what} handed over by the host are invalid: {e}"),
    })
}

/// An iterator over strings of a [`Strings`] list.
#[derive(Clone, Debug)]
pub struct Iter {
    rest: &'static str,
    left: usize,
}

impl Iterator for Iter {
    type Item = &'static str;

    fn next(&mut self) -> Option<&'static str> {
        if self.left == 0 {
            return None;
        }
        let (item, rest) = self.rest.split_once('\0')?;
        self.rest = rest;
        self.left -= 1;
        Some(item)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.left, Some(self.left))
    }
}

impl ExactSizeIterator for Iter {}

fn iter(s: Strings) -> Iter {
    Iter {
        rest: s.bytes,
        left: s.count,
    }
}

/// The application's arguments; the first is the program name.
pub fn args() -> Iter {
    iter(checked(&ARGS, &ARGS_RAW, "arguments"))
}

/// The environment as `(name, value)` pairs.
pub fn vars() -> impl Iterator<Item = (&'static str, &'static str)> {
    entries().map(|entry| entry.split_once('=').unwrap_or((entry, "")))
}

/// The raw environment entries, `NAME=VALUE`.
pub fn entries() -> Iter {
    iter(checked(&ENV, &ENV_RAW, "environment"))
}

/// The value of environment variable `name`.
pub fn var(name: &str) -> Option<&'static str> {
    // A prefix comparison per entry instead of splitting each at '=': every
    // instruction counts where the kernel's code is emulated.
    entries().find_map(|entry| entry.strip_prefix(name)?.strip_prefix('='))
}

/// The arguments and the environment as C arrays of pointers to their
/// NUL-terminated strings (in boot memory), each ending with a null pointer.
#[cfg(target_os = "hermit")]
pub(crate) fn c_arrays() -> (alloc::vec::Vec<*const u8>, alloc::vec::Vec<*const u8>) {
    let list = |it: Iter| {
        it.map(str::as_ptr)
            .chain(core::iter::once(core::ptr::null()))
            .collect()
    };
    (list(args()), list(entries()))
}
