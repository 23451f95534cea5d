//! `#[repr(C)]` mirrors of the structures Rust std passes to the kernel on
//! `x86_64-unknown-hermit`, and the constants it uses, with the values of
//! `hermit-abi` 0.5.2 (checked against that crate by the tests). These are
//! *not* always Linux's values: `AF_INET` is 3, `SOL_SOCKET` is 4095 and a
//! `sockaddr` starts with a length byte, as on BSD.

#![allow(non_camel_case_types, reason = "C names, as in hermit-abi")]

/// `socklen_t`.
pub type socklen_t = u32;
/// `sa_family_t` (one byte: the `sockaddr` layout is BSD's).
pub type sa_family_t = u8;
/// `nfds_t`.
pub type nfds_t = usize;
/// `time_t`.
pub type time_t = i64;

/// Open for reading only.
pub const O_RDONLY: i32 = 0o0;
/// Open for writing only.
pub const O_WRONLY: i32 = 0o1;
/// Open for reading and writing.
pub const O_RDWR: i32 = 0o2;
/// The access-mode bits.
pub const O_ACCMODE: i32 = 0o3;
/// Create if missing.
pub const O_CREAT: i32 = 0o100;
/// With `O_CREAT`: fail if it exists.
pub const O_EXCL: i32 = 0o200;
/// Truncate to length 0.
pub const O_TRUNC: i32 = 0o1000;
/// Append on each write.
pub const O_APPEND: i32 = 0o2000;
/// Non-blocking I/O.
pub const O_NONBLOCK: i32 = 0o4000;
/// Must be a directory.
pub const O_DIRECTORY: i32 = 0o200000;
/// Close on exec (Linux's value; hermit-abi does not name it). Accepted and
/// ignored by `open`: there is no `exec`.
pub const O_CLOEXEC: i32 = 0o2000000;

/// `fcntl`: duplicate to the lowest free fd at least `arg`.
pub const F_DUPFD: i32 = 0;
/// `fcntl`: get the fd flags (`FD_CLOEXEC`).
pub const F_GETFD: i32 = 1;
/// `fcntl`: set the fd flags.
pub const F_SETFD: i32 = 2;
/// `fcntl`: get the status flags (`O_*`).
pub const F_GETFL: i32 = 3;
/// `fcntl`: set the status flags (only `O_NONBLOCK` and `O_APPEND` change).
pub const F_SETFL: i32 = 4;
/// The close-on-exec fd flag.
pub const FD_CLOEXEC: i32 = 1;

/// `lseek` from the start.
pub const SEEK_SET: i32 = 0;
/// `lseek` from the position.
pub const SEEK_CUR: i32 = 1;
/// `lseek` from the end.
pub const SEEK_END: i32 = 2;

/// File type bits of `st_mode`.
pub const S_IFMT: u32 = 0o17_0000;
/// FIFO.
pub const S_IFIFO: u32 = 0o1_0000;
/// Character device.
pub const S_IFCHR: u32 = 0o2_0000;
/// Directory.
pub const S_IFDIR: u32 = 0o4_0000;
/// Block device.
pub const S_IFBLK: u32 = 0o6_0000;
/// Regular file.
pub const S_IFREG: u32 = 0o10_0000;
/// Symbolic link.
pub const S_IFLNK: u32 = 0o12_0000;
/// Socket.
pub const S_IFSOCK: u32 = 0o14_0000;

/// `d_type`: unknown.
pub const DT_UNKNOWN: u8 = 0;
/// `d_type`: FIFO.
pub const DT_FIFO: u8 = 1;
/// `d_type`: character device.
pub const DT_CHR: u8 = 2;
/// `d_type`: directory.
pub const DT_DIR: u8 = 4;
/// `d_type`: regular file.
pub const DT_REG: u8 = 8;
/// `d_type`: symbolic link.
pub const DT_LNK: u8 = 10;
/// `d_type`: socket.
pub const DT_SOCK: u8 = 12;

/// The most `iovec`s one `readv`/`writev` takes.
pub const IOV_MAX: usize = 1024;

/// `ioctl`: set (non-zero `int`) or clear non-blocking mode.
pub const FIONBIO: i32 = 0x8008_667e_u32 as i32;

/// Readable.
pub const POLLIN: i16 = 0x1;
/// Urgent data.
pub const POLLPRI: i16 = 0x2;
/// Writable.
pub const POLLOUT: i16 = 0x4;
/// Error.
pub const POLLERR: i16 = 0x8;
/// Hung up.
pub const POLLHUP: i16 = 0x10;
/// Not an open fd.
pub const POLLNVAL: i16 = 0x20;
/// Normal data readable.
pub const POLLRDNORM: i16 = 0x040;
/// Priority data readable.
pub const POLLRDBAND: i16 = 0x080;
/// Normal data writable.
pub const POLLWRNORM: i16 = 0x0100;
/// Priority data writable.
pub const POLLWRBAND: i16 = 0x0200;
/// Peer closed its write half.
pub const POLLRDHUP: i16 = 0x2000;

/// Unspecified address family.
pub const AF_UNSPEC: i32 = 0;
/// IPv6 (hermit's value).
pub const AF_INET6: i32 = 1;
/// IPv4 (hermit's value).
pub const AF_INET: i32 = 3;
/// Stream socket.
pub const SOCK_STREAM: i32 = 1;
/// Datagram socket.
pub const SOCK_DGRAM: i32 = 2;
/// `socket` type flag: non-blocking.
pub const SOCK_NONBLOCK: i32 = 0o4000;
/// `socket` type flag: close on exec.
pub const SOCK_CLOEXEC: i32 = 0o40000;
/// Default protocol.
pub const IPPROTO_IP: i32 = 0;
/// TCP.
pub const IPPROTO_TCP: i32 = 6;
/// UDP.
pub const IPPROTO_UDP: i32 = 17;
/// IPv6 options level.
pub const IPPROTO_IPV6: i32 = 41;
/// `IPPROTO_IP` option: time to live.
pub const IP_TTL: i32 = 2;
/// Socket-level options (hermit's value).
pub const SOL_SOCKET: i32 = 4095;
/// Allow reuse of local addresses.
pub const SO_REUSEADDR: i32 = 0x0004;
/// Keep connections alive.
pub const SO_KEEPALIVE: i32 = 0x0008;
/// Allow broadcast datagrams.
pub const SO_BROADCAST: i32 = 0x0020;
/// Linger on close.
pub const SO_LINGER: i32 = 0x0080;
/// Send buffer size.
pub const SO_SNDBUF: i32 = 0x1001;
/// Receive buffer size.
pub const SO_RCVBUF: i32 = 0x1002;
/// Send timeout (`timeval`).
pub const SO_SNDTIMEO: i32 = 0x1005;
/// Receive timeout (`timeval`).
pub const SO_RCVTIMEO: i32 = 0x1006;
/// Pending error (read and cleared).
pub const SO_ERROR: i32 = 0x1007;
/// Disable Nagle's algorithm.
pub const TCP_NODELAY: i32 = 1;
/// `recv` flag: look without consuming.
pub const MSG_PEEK: i32 = 1;
/// No more receptions.
pub const SHUT_RD: i32 = 0;
/// No more transmissions.
pub const SHUT_WR: i32 = 1;
/// Neither.
pub const SHUT_RDWR: i32 = 2;

/// `getaddrinfo`: temporary failure.
pub const EAI_AGAIN: i32 = 2;
/// `getaddrinfo`: bad `ai_flags`.
pub const EAI_BADFLAGS: i32 = 3;
/// `getaddrinfo`: non-recoverable failure.
pub const EAI_FAIL: i32 = 4;
/// `getaddrinfo`: family not supported.
pub const EAI_FAMILY: i32 = 5;
/// `getaddrinfo`: out of memory.
pub const EAI_MEMORY: i32 = 6;
/// `getaddrinfo`: no address for the name.
pub const EAI_NODATA: i32 = 7;
/// `getaddrinfo`: unknown name.
pub const EAI_NONAME: i32 = 8;
/// `getaddrinfo`: unknown service.
pub const EAI_SERVICE: i32 = 9;
/// `getaddrinfo`: socket type not supported.
pub const EAI_SOCKTYPE: i32 = 10;
/// `getaddrinfo`: system error.
pub const EAI_SYSTEM: i32 = 11;
/// `getaddrinfo`: buffer overflow.
pub const EAI_OVERFLOW: i32 = 14;

/// A time in seconds and nanoseconds (`tv_nsec` is an `i32` in hermit-abi).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct timespec {
    /// Seconds.
    pub tv_sec: time_t,
    /// Nanoseconds.
    pub tv_nsec: i32,
}

/// A time in seconds and microseconds (socket timeouts).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct timeval {
    /// Seconds.
    pub tv_sec: time_t,
    /// Microseconds.
    pub tv_usec: i32,
}

/// File status, filled by `stat`, `lstat` and `fstat`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct stat {
    /// Device.
    pub st_dev: u64,
    /// Inode.
    pub st_ino: u64,
    /// Hard links.
    pub st_nlink: u64,
    /// Type and permission bits.
    pub st_mode: u32,
    /// Owner.
    pub st_uid: u32,
    /// Group.
    pub st_gid: u32,
    /// Device number of a device file.
    pub st_rdev: u64,
    /// Size in bytes.
    pub st_size: i64,
    /// Preferred I/O size.
    pub st_blksize: i64,
    /// 512-byte blocks.
    pub st_blocks: i64,
    /// Last access.
    pub st_atim: timespec,
    /// Last modification.
    pub st_mtim: timespec,
    /// Last status change.
    pub st_ctim: timespec,
}

/// The fixed head of a directory record; the name follows at
/// [`DIRENT64_NAME_OFFSET`] (std reads it as a C string there).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct dirent64 {
    /// Inode.
    pub d_ino: u64,
    /// Offset of the next record in the directory stream.
    pub d_off: i64,
    /// Length of this record, a multiple of 8.
    pub d_reclen: u16,
    /// `DT_*`.
    pub d_type: u8,
    /// The name, NUL-terminated (records are shorter than this array).
    pub d_name: [i8; 256],
}

/// Where the name starts in a [`dirent64`] record.
pub const DIRENT64_NAME_OFFSET: usize = core::mem::offset_of!(dirent64, d_name);

/// One buffer of `readv`/`writev`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct iovec {
    /// Start of the buffer.
    pub iov_base: *mut u8,
    /// Its length.
    pub iov_len: usize,
}

/// One entry of `poll`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct pollfd {
    /// The fd (negative: ignored).
    pub fd: i32,
    /// Requested events.
    pub events: i16,
    /// Returned events.
    pub revents: i16,
}

/// An IPv4 address in network byte order.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct in_addr {
    /// The address (big endian).
    pub s_addr: u32,
}

/// An IPv6 address.
#[repr(C, align(4))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct in6_addr {
    /// The bytes.
    pub s6_addr: [u8; 16],
}

/// A generic socket address (BSD layout: a length byte, then the family).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct sockaddr {
    /// Length (ignored on input; std leaves it 0).
    pub sa_len: u8,
    /// `AF_*`.
    pub sa_family: sa_family_t,
    /// Family-specific data.
    pub sa_data: [i8; 14],
}

/// An IPv4 socket address.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct sockaddr_in {
    /// Length.
    pub sin_len: u8,
    /// `AF_INET`.
    pub sin_family: sa_family_t,
    /// Port, big endian.
    pub sin_port: u16,
    /// Address.
    pub sin_addr: in_addr,
    /// Zero.
    pub sin_zero: [i8; 8],
}

/// An IPv6 socket address.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct sockaddr_in6 {
    /// Length.
    pub sin6_len: u8,
    /// `AF_INET6`.
    pub sin6_family: sa_family_t,
    /// Port, big endian.
    pub sin6_port: u16,
    /// Flow information.
    pub sin6_flowinfo: u32,
    /// Address.
    pub sin6_addr: in6_addr,
    /// Scope.
    pub sin6_scope_id: u32,
}

/// Room for any socket address.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct sockaddr_storage {
    /// Length.
    pub s2_len: u8,
    /// `AF_*`.
    pub ss_family: sa_family_t,
    /// Padding.
    pub ss_pad1: [u8; 6],
    /// Alignment.
    pub ss_align: i64,
    /// Padding.
    pub ss_pad2: [u8; 112],
}

/// `SO_LINGER`'s value.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct linger {
    /// Whether lingering is on.
    pub l_onoff: i32,
    /// Seconds.
    pub l_linger: i32,
}

/// One result of `getaddrinfo` (a linked list).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct addrinfo {
    /// `AI_*` flags.
    pub ai_flags: i32,
    /// `AF_*`.
    pub ai_family: i32,
    /// `SOCK_*`.
    pub ai_socktype: i32,
    /// `IPPROTO_*`.
    pub ai_protocol: i32,
    /// Length of `*ai_addr`.
    pub ai_addrlen: socklen_t,
    /// Canonical name (always null here).
    pub ai_canonname: *mut i8,
    /// The address.
    pub ai_addr: *mut sockaddr,
    /// The next result.
    pub ai_next: *mut addrinfo,
}

#[cfg(test)]
mod tests {
    use core::mem::{align_of, offset_of, size_of};

    use super::*;

    macro_rules! same_layout {
        ($ty:ident { $($field:ident),* }) => {
            assert_eq!(size_of::<$ty>(), size_of::<hermit_abi::$ty>(), stringify!($ty));
            assert_eq!(align_of::<$ty>(), align_of::<hermit_abi::$ty>(), stringify!($ty));
            $(assert_eq!(
                offset_of!($ty, $field),
                offset_of!(hermit_abi::$ty, $field),
                concat!(stringify!($ty), ".", stringify!($field)),
            );)*
        };
    }

    #[test]
    fn layouts_match_hermit_abi() {
        same_layout!(timespec { tv_sec, tv_nsec });
        same_layout!(timeval { tv_sec, tv_usec });
        same_layout!(stat {
            st_dev,
            st_ino,
            st_nlink,
            st_mode,
            st_uid,
            st_gid,
            st_rdev,
            st_size,
            st_blksize,
            st_blocks,
            st_atim,
            st_mtim,
            st_ctim
        });
        same_layout!(dirent64 {
            d_ino,
            d_off,
            d_reclen,
            d_type,
            d_name
        });
        same_layout!(iovec { iov_base, iov_len });
        same_layout!(pollfd {
            fd,
            events,
            revents
        });
        same_layout!(in_addr { s_addr });
        same_layout!(in6_addr { s6_addr });
        same_layout!(sockaddr {
            sa_len,
            sa_family,
            sa_data
        });
        same_layout!(sockaddr_in {
            sin_len,
            sin_family,
            sin_port,
            sin_addr,
            sin_zero
        });
        same_layout!(sockaddr_in6 {
            sin6_len,
            sin6_family,
            sin6_port,
            sin6_flowinfo,
            sin6_addr,
            sin6_scope_id
        });
        same_layout!(sockaddr_storage { s2_len, ss_family });
        same_layout!(linger { l_onoff, l_linger });
        same_layout!(addrinfo {
            ai_flags,
            ai_family,
            ai_socktype,
            ai_protocol,
            ai_addrlen,
            ai_canonname,
            ai_addr,
            ai_next
        });
        assert_eq!(DIRENT64_NAME_OFFSET, 19);
    }

    #[test]
    fn constants_match_hermit_abi() {
        use hermit_abi as h;
        let pairs: &[(i64, i64, &str)] = &[
            (O_RDONLY.into(), h::O_RDONLY.into(), "O_RDONLY"),
            (O_WRONLY.into(), h::O_WRONLY.into(), "O_WRONLY"),
            (O_RDWR.into(), h::O_RDWR.into(), "O_RDWR"),
            (O_CREAT.into(), h::O_CREAT.into(), "O_CREAT"),
            (O_EXCL.into(), h::O_EXCL.into(), "O_EXCL"),
            (O_TRUNC.into(), h::O_TRUNC.into(), "O_TRUNC"),
            (O_APPEND.into(), h::O_APPEND.into(), "O_APPEND"),
            (O_NONBLOCK.into(), h::O_NONBLOCK.into(), "O_NONBLOCK"),
            (O_DIRECTORY.into(), h::O_DIRECTORY.into(), "O_DIRECTORY"),
            (F_DUPFD.into(), h::F_DUPFD.into(), "F_DUPFD"),
            (F_GETFD.into(), h::F_GETFD.into(), "F_GETFD"),
            (F_SETFD.into(), h::F_SETFD.into(), "F_SETFD"),
            (F_GETFL.into(), h::F_GETFL.into(), "F_GETFL"),
            (F_SETFL.into(), h::F_SETFL.into(), "F_SETFL"),
            (FD_CLOEXEC.into(), h::FD_CLOEXEC.into(), "FD_CLOEXEC"),
            (SEEK_SET.into(), h::SEEK_SET.into(), "SEEK_SET"),
            (SEEK_CUR.into(), h::SEEK_CUR.into(), "SEEK_CUR"),
            (SEEK_END.into(), h::SEEK_END.into(), "SEEK_END"),
            (S_IFMT.into(), h::S_IFMT.into(), "S_IFMT"),
            (S_IFIFO.into(), h::S_IFIFO.into(), "S_IFIFO"),
            (S_IFCHR.into(), h::S_IFCHR.into(), "S_IFCHR"),
            (S_IFDIR.into(), h::S_IFDIR.into(), "S_IFDIR"),
            (S_IFBLK.into(), h::S_IFBLK.into(), "S_IFBLK"),
            (S_IFREG.into(), h::S_IFREG.into(), "S_IFREG"),
            (S_IFLNK.into(), h::S_IFLNK.into(), "S_IFLNK"),
            (S_IFSOCK.into(), h::S_IFSOCK.into(), "S_IFSOCK"),
            (DT_UNKNOWN.into(), h::DT_UNKNOWN.into(), "DT_UNKNOWN"),
            (DT_FIFO.into(), h::DT_FIFO.into(), "DT_FIFO"),
            (DT_CHR.into(), h::DT_CHR.into(), "DT_CHR"),
            (DT_DIR.into(), h::DT_DIR.into(), "DT_DIR"),
            (DT_REG.into(), h::DT_REG.into(), "DT_REG"),
            (DT_LNK.into(), h::DT_LNK.into(), "DT_LNK"),
            (DT_SOCK.into(), h::DT_SOCK.into(), "DT_SOCK"),
            (IOV_MAX as i64, h::IOV_MAX as i64, "IOV_MAX"),
            (FIONBIO.into(), h::FIONBIO.into(), "FIONBIO"),
            (POLLIN.into(), h::POLLIN.into(), "POLLIN"),
            (POLLPRI.into(), h::POLLPRI.into(), "POLLPRI"),
            (POLLOUT.into(), h::POLLOUT.into(), "POLLOUT"),
            (POLLERR.into(), h::POLLERR.into(), "POLLERR"),
            (POLLHUP.into(), h::POLLHUP.into(), "POLLHUP"),
            (POLLNVAL.into(), h::POLLNVAL.into(), "POLLNVAL"),
            (POLLRDNORM.into(), h::POLLRDNORM.into(), "POLLRDNORM"),
            (POLLRDBAND.into(), h::POLLRDBAND.into(), "POLLRDBAND"),
            (POLLWRNORM.into(), h::POLLWRNORM.into(), "POLLWRNORM"),
            (POLLWRBAND.into(), h::POLLWRBAND.into(), "POLLWRBAND"),
            (POLLRDHUP.into(), h::POLLRDHUP.into(), "POLLRDHUP"),
            (AF_UNSPEC.into(), h::AF_UNSPEC.into(), "AF_UNSPEC"),
            (AF_INET.into(), h::AF_INET.into(), "AF_INET"),
            (AF_INET6.into(), h::AF_INET6.into(), "AF_INET6"),
            (SOCK_STREAM.into(), h::SOCK_STREAM.into(), "SOCK_STREAM"),
            (SOCK_DGRAM.into(), h::SOCK_DGRAM.into(), "SOCK_DGRAM"),
            (
                SOCK_NONBLOCK.into(),
                h::SOCK_NONBLOCK.into(),
                "SOCK_NONBLOCK",
            ),
            (SOCK_CLOEXEC.into(), h::SOCK_CLOEXEC.into(), "SOCK_CLOEXEC"),
            (IPPROTO_IP.into(), h::IPPROTO_IP.into(), "IPPROTO_IP"),
            (IPPROTO_TCP.into(), h::IPPROTO_TCP.into(), "IPPROTO_TCP"),
            (IPPROTO_UDP.into(), h::IPPROTO_UDP.into(), "IPPROTO_UDP"),
            (IPPROTO_IPV6.into(), h::IPPROTO_IPV6.into(), "IPPROTO_IPV6"),
            (IP_TTL.into(), h::IP_TTL.into(), "IP_TTL"),
            (SOL_SOCKET.into(), h::SOL_SOCKET.into(), "SOL_SOCKET"),
            (SO_REUSEADDR.into(), h::SO_REUSEADDR.into(), "SO_REUSEADDR"),
            (SO_KEEPALIVE.into(), h::SO_KEEPALIVE.into(), "SO_KEEPALIVE"),
            (SO_BROADCAST.into(), h::SO_BROADCAST.into(), "SO_BROADCAST"),
            (SO_LINGER.into(), h::SO_LINGER.into(), "SO_LINGER"),
            (SO_SNDBUF.into(), h::SO_SNDBUF.into(), "SO_SNDBUF"),
            (SO_RCVBUF.into(), h::SO_RCVBUF.into(), "SO_RCVBUF"),
            (SO_SNDTIMEO.into(), h::SO_SNDTIMEO.into(), "SO_SNDTIMEO"),
            (SO_RCVTIMEO.into(), h::SO_RCVTIMEO.into(), "SO_RCVTIMEO"),
            (SO_ERROR.into(), h::SO_ERROR.into(), "SO_ERROR"),
            (TCP_NODELAY.into(), h::TCP_NODELAY.into(), "TCP_NODELAY"),
            (MSG_PEEK.into(), h::MSG_PEEK.into(), "MSG_PEEK"),
            (SHUT_RD.into(), h::SHUT_RD.into(), "SHUT_RD"),
            (SHUT_WR.into(), h::SHUT_WR.into(), "SHUT_WR"),
            (SHUT_RDWR.into(), h::SHUT_RDWR.into(), "SHUT_RDWR"),
            (EAI_AGAIN.into(), h::EAI_AGAIN.into(), "EAI_AGAIN"),
            (EAI_BADFLAGS.into(), h::EAI_BADFLAGS.into(), "EAI_BADFLAGS"),
            (EAI_FAIL.into(), h::EAI_FAIL.into(), "EAI_FAIL"),
            (EAI_FAMILY.into(), h::EAI_FAMILY.into(), "EAI_FAMILY"),
            (EAI_MEMORY.into(), h::EAI_MEMORY.into(), "EAI_MEMORY"),
            (EAI_NODATA.into(), h::EAI_NODATA.into(), "EAI_NODATA"),
            (EAI_NONAME.into(), h::EAI_NONAME.into(), "EAI_NONAME"),
            (EAI_SERVICE.into(), h::EAI_SERVICE.into(), "EAI_SERVICE"),
            (EAI_SOCKTYPE.into(), h::EAI_SOCKTYPE.into(), "EAI_SOCKTYPE"),
            (EAI_SYSTEM.into(), h::EAI_SYSTEM.into(), "EAI_SYSTEM"),
            (EAI_OVERFLOW.into(), h::EAI_OVERFLOW.into(), "EAI_OVERFLOW"),
        ];
        for (ours, theirs, name) in pairs {
            assert_eq!(ours, theirs, "{name}");
        }
    }

    #[test]
    fn errno_values_match_hermit_abi() {
        use hermit_interface::errno::Errno;
        for raw in 1..200 {
            if let Some(e) = Errno::from_raw(raw) {
                let theirs = match e {
                    Errno::ENOENT => hermit_abi::errno::ENOENT,
                    Errno::EBADF => hermit_abi::errno::EBADF,
                    Errno::EAGAIN => hermit_abi::errno::EAGAIN,
                    Errno::EINVAL => hermit_abi::errno::EINVAL,
                    Errno::EMFILE => hermit_abi::errno::EMFILE,
                    Errno::ESPIPE => hermit_abi::errno::ESPIPE,
                    Errno::ENOTSOCK => hermit_abi::errno::ENOTSOCK,
                    Errno::ENOTDIR => hermit_abi::errno::ENOTDIR,
                    Errno::EINPROGRESS => hermit_abi::errno::EINPROGRESS,
                    Errno::ENOTCONN => hermit_abi::errno::ENOTCONN,
                    Errno::EISCONN => hermit_abi::errno::EISCONN,
                    Errno::ECONNREFUSED => hermit_abi::errno::ECONNREFUSED,
                    Errno::EAFNOSUPPORT => hermit_abi::errno::EAFNOSUPPORT,
                    Errno::EDESTADDRREQ => hermit_abi::errno::EDESTADDRREQ,
                    Errno::EOPNOTSUPP => hermit_abi::errno::EOPNOTSUPP,
                    Errno::ENAMETOOLONG => hermit_abi::errno::ENAMETOOLONG,
                    Errno::EFAULT => hermit_abi::errno::EFAULT,
                    _ => continue,
                };
                assert_eq!(e.raw(), theirs, "{e}");
            }
        }
    }
}
