//! Error numbers, with Linux's (and `hermit-abi`'s) values, shared by every
//! layer: the kernel's file system and system calls use [`Errno`] inside and
//! turn it into a negative return value only at an ABI edge; the host
//! reports failures of hypercalls the same way.

macro_rules! errnos {
    ($($(#[$doc:meta])* $name:ident = $value:literal,)*) => {
        /// An error number (Linux numbering).
        #[repr(i32)]
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum Errno {
            $($(#[$doc])* $name = $value,)*
        }

        impl Errno {
            /// The error with number `raw` (positive), if it is one we know.
            pub const fn from_raw(raw: i32) -> Option<Self> {
                match raw {
                    $($value => Some(Self::$name),)*
                    _ => None,
                }
            }

            /// The symbolic name, e.g. `"ENOENT"`.
            pub const fn name(self) -> &'static str {
                match self {
                    $(Self::$name => stringify!($name),)*
                }
            }
        }
    };
}

errnos! {
    /// Operation not permitted.
    EPERM = 1,
    /// No such file or directory.
    ENOENT = 2,
    /// Interrupted call.
    EINTR = 4,
    /// Input/output error.
    EIO = 5,
    /// Argument list too long.
    E2BIG = 7,
    /// Bad file descriptor.
    EBADF = 9,
    /// Try again.
    EAGAIN = 11,
    /// Out of memory.
    ENOMEM = 12,
    /// Permission denied.
    EACCES = 13,
    /// Bad address.
    EFAULT = 14,
    /// Device or resource busy.
    EBUSY = 16,
    /// File exists.
    EEXIST = 17,
    /// Cross-device link.
    EXDEV = 18,
    /// No such device.
    ENODEV = 19,
    /// Not a directory.
    ENOTDIR = 20,
    /// Is a directory.
    EISDIR = 21,
    /// Invalid argument.
    EINVAL = 22,
    /// Too many open files in the system.
    ENFILE = 23,
    /// Too many open files.
    EMFILE = 24,
    /// Not a typewriter.
    ENOTTY = 25,
    /// File too large.
    EFBIG = 27,
    /// No space left on device.
    ENOSPC = 28,
    /// Illegal seek.
    ESPIPE = 29,
    /// Read-only file system.
    EROFS = 30,
    /// Too many links.
    EMLINK = 31,
    /// Broken pipe.
    EPIPE = 32,
    /// Result too large.
    ERANGE = 34,
    /// Would deadlock.
    EDEADLK = 35,
    /// File name too long.
    ENAMETOOLONG = 36,
    /// Function not implemented.
    ENOSYS = 38,
    /// Directory not empty.
    ENOTEMPTY = 39,
    /// Too many levels of symbolic links.
    ELOOP = 40,
    /// Value too large for its type.
    EOVERFLOW = 75,
    /// Not a socket.
    ENOTSOCK = 88,
    /// Destination address required.
    EDESTADDRREQ = 89,
    /// Message too long.
    EMSGSIZE = 90,
    /// Operation not supported.
    EOPNOTSUPP = 95,
    /// Address family not supported.
    EAFNOSUPPORT = 97,
    /// Address already in use.
    EADDRINUSE = 98,
    /// Cannot assign requested address.
    EADDRNOTAVAIL = 99,
    /// Network is unreachable.
    ENETUNREACH = 101,
    /// Connection aborted.
    ECONNABORTED = 103,
    /// Connection reset by peer.
    ECONNRESET = 104,
    /// No buffer space available.
    ENOBUFS = 105,
    /// Already connected.
    EISCONN = 106,
    /// Not connected.
    ENOTCONN = 107,
    /// Timed out.
    ETIMEDOUT = 110,
    /// Connection refused.
    ECONNREFUSED = 111,
    /// No route to host.
    EHOSTUNREACH = 113,
    /// Operation already in progress.
    EALREADY = 114,
    /// Operation now in progress.
    EINPROGRESS = 115,
}

impl Errno {
    /// The raw (positive) number.
    pub const fn raw(self) -> i32 {
        self as i32
    }

    /// The negative return value an ABI edge reports, e.g. `-2` for `ENOENT`.
    pub const fn to_neg(self) -> i64 {
        -(self as i64)
    }

    /// Splits a Linux-style result: `Ok(value)` if non-negative, else the
    /// error (unknown numbers become `EIO`).
    pub const fn check(result: i64) -> Result<u64, Self> {
        if result >= 0 {
            return Ok(result as u64);
        }
        let raw = result.unsigned_abs();
        if raw > i32::MAX as u64 {
            return Err(Self::EIO);
        }
        match Self::from_raw(raw as i32) {
            Some(e) => Err(e),
            None => Err(Self::EIO),
        }
    }
}

impl core::fmt::Display for Errno {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.name())
    }
}

impl core::error::Error for Errno {}

#[cfg(test)]
mod tests {
    use super::Errno;
    use std::string::ToString;

    #[test]
    fn round_trips_and_checks() {
        assert_eq!(Errno::from_raw(2), Some(Errno::ENOENT));
        assert_eq!(Errno::ENOENT.to_neg(), -2);
        assert_eq!(Errno::check(5), Ok(5));
        assert_eq!(Errno::check(-13), Err(Errno::EACCES));
        assert_eq!(Errno::check(-4000), Err(Errno::EIO));
        assert_eq!(Errno::check(i64::MIN), Err(Errno::EIO));
        assert_eq!(Errno::EXDEV.to_string(), "EXDEV");
    }
}
