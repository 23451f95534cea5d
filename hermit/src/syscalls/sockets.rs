//! The socket `sys_*` calls as one-line exports into
//! [`hermit_syscalls::Syscalls`] (socket state machine, address checking,
//! options, getaddrinfo) over the kernel's TCP/IP stack ([`crate::net`]).
//! The stack starts with the first socket (or name lookup, or
//! `sys_network_init`): std itself never calls `sys_network_init`.

use core::ffi::{c_char, c_void};

use hermit_syscalls::abi::{addrinfo, sockaddr, socklen_t};

use super::files::sys;
use super::noted;

/// Starts the network stack once (card, address from `HERMIT_IP` & co.)
/// and hands it to the socket layer; 0 or `-errno` (`ENODEV` without a
/// card, `EINVAL` for a malformed `HERMIT_*` address).
fn network() -> i32 {
    static STARTED: spin::Once<i32> = spin::Once::new();
    *STARTED.call_once(|| match crate::net::stack() {
        Ok(stack) => {
            sys().set_network(stack);
            0
        }
        Err(e) => -(e as i32),
    })
}

/// Starts the network stack (also done by the first socket); 0 or `-errno`.
#[unsafe(no_mangle)]
pub extern "C" fn sys_network_init() -> i32 {
    noted(network())
}

/// A new socket (`AF_INET`; `SOCK_STREAM` or `SOCK_DGRAM`).
#[unsafe(no_mangle)]
pub extern "C" fn sys_socket(domain: i32, type_: i32, protocol: i32) -> i32 {
    let started = network();
    if started < 0 {
        return noted(started);
    }
    noted(sys().socket(domain, type_, protocol))
}

/// Binds `s` to `name`.
///
/// # Safety
/// `name` is null or `namelen` readable bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sys_bind(s: i32, name: *const sockaddr, namelen: socklen_t) -> i32 {
    // SAFETY: the caller's promise.
    noted(unsafe { sys().bind(s, name, namelen) })
}

/// Listens on `s`.
#[unsafe(no_mangle)]
pub extern "C" fn sys_listen(s: i32, backlog: i32) -> i32 {
    noted(sys().listen(s, backlog))
}

/// Accepts a connection on `s`, writing the peer's address.
///
/// # Safety
/// `addr`/`addrlen` are null or valid as in accept(2).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sys_accept(s: i32, addr: *mut sockaddr, addrlen: *mut socklen_t) -> i32 {
    // SAFETY: the caller's promise.
    noted(unsafe { sys().accept(s, addr, addrlen) })
}

/// Connects `s` to `name`.
///
/// # Safety
/// As [`sys_bind`].
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sys_connect(s: i32, name: *const sockaddr, namelen: socklen_t) -> i32 {
    // SAFETY: the caller's promise.
    noted(unsafe { sys().connect(s, name, namelen) })
}

/// Receives into `buf`.
///
/// # Safety
/// `buf` is null or `len` writable bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sys_recv(socket: i32, buf: *mut u8, len: usize, flags: i32) -> isize {
    // SAFETY: the caller's promise.
    noted(unsafe { sys().recv(socket, buf, len, flags) })
}

/// Receives into `buf` with the sender's address.
///
/// # Safety
/// As [`sys_recv`]; `addr`/`addrlen` as in recvfrom(2).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sys_recvfrom(
    socket: i32,
    buf: *mut u8,
    len: usize,
    flags: i32,
    addr: *mut sockaddr,
    addrlen: *mut socklen_t,
) -> isize {
    // SAFETY: the caller's promise.
    noted(unsafe { sys().recvfrom(socket, buf, len, flags, addr, addrlen) })
}

/// Sends `len` bytes of `mem`.
///
/// # Safety
/// `mem` is null or `len` readable bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sys_send(s: i32, mem: *const c_void, len: usize, flags: i32) -> isize {
    // SAFETY: the caller's promise.
    noted(unsafe { sys().send(s, mem.cast(), len, flags) })
}

/// Sends `len` bytes of `mem` to `to`.
///
/// # Safety
/// As [`sys_send`]; `to` is null or `tolen` readable bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sys_sendto(
    s: i32,
    mem: *const c_void,
    len: usize,
    flags: i32,
    to: *const sockaddr,
    tolen: socklen_t,
) -> isize {
    // SAFETY: the caller's promise.
    noted(unsafe { sys().sendto(s, mem.cast(), len, flags, to, tolen) })
}

/// Shuts down reading, writing or both.
#[unsafe(no_mangle)]
pub extern "C" fn sys_shutdown(sockfd: i32, how: i32) -> i32 {
    noted(sys().shutdown(sockfd, how))
}

/// The old name of [`sys_shutdown`].
#[unsafe(no_mangle)]
pub extern "C" fn sys_shutdown_socket(s: i32, how: i32) -> i32 {
    sys_shutdown(s, how)
}

/// The local address of `s`.
///
/// # Safety
/// `name`/`namelen` as in getsockname(2).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sys_getsockname(
    s: i32,
    name: *mut sockaddr,
    namelen: *mut socklen_t,
) -> i32 {
    // SAFETY: the caller's promise.
    noted(unsafe { sys().getsockname(s, name, namelen) })
}

/// The peer's address of `s`.
///
/// # Safety
/// As [`sys_getsockname`].
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sys_getpeername(
    s: i32,
    name: *mut sockaddr,
    namelen: *mut socklen_t,
) -> i32 {
    // SAFETY: the caller's promise.
    noted(unsafe { sys().getpeername(s, name, namelen) })
}

/// Sets a socket option.
///
/// # Safety
/// `optval` is null or `optlen` readable bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sys_setsockopt(
    s: i32,
    level: i32,
    optname: i32,
    optval: *const c_void,
    optlen: socklen_t,
) -> i32 {
    // SAFETY: the caller's promise.
    noted(unsafe { sys().setsockopt(s, level, optname, optval.cast(), optlen) })
}

/// Reads a socket option.
///
/// # Safety
/// `optval`/`optlen` as in getsockopt(2).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sys_getsockopt(
    s: i32,
    level: i32,
    optname: i32,
    optval: *mut c_void,
    optlen: *mut socklen_t,
) -> i32 {
    // SAFETY: the caller's promise.
    noted(unsafe { sys().getsockopt(s, level, optname, optval.cast(), optlen) })
}

/// Resolves `nodename`/`servname` into a list freed by
/// [`sys_freeaddrinfo`]; 0 or a positive `EAI_*` code.
///
/// # Safety
/// Strings are null or NUL-terminated; `hints` is null or readable; `res`
/// is writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sys_getaddrinfo(
    nodename: *const c_char,
    servname: *const c_char,
    hints: *const addrinfo,
    res: *mut *mut addrinfo,
) -> i32 {
    // Name lookups need the stack's DNS; numeric ones work without it.
    let _ = network();
    // SAFETY: the caller's promise.
    unsafe { sys().getaddrinfo(nodename.cast(), servname.cast(), hints, res) }
}

/// Frees a list from [`sys_getaddrinfo`].
///
/// # Safety
/// `ai` is null or a list [`sys_getaddrinfo`] returned, not freed before.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sys_freeaddrinfo(ai: *mut addrinfo) {
    // SAFETY: the caller's promise.
    unsafe { sys().freeaddrinfo(ai) }
}

/// The first IPv4 address of `name`, written to `inaddr` (`len` bytes).
///
/// # Safety
/// `name` is null or NUL-terminated; `inaddr` is null or `len` writable
/// bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sys_getaddrbyname(
    name: *const c_char,
    inaddr: *mut u8,
    len: usize,
) -> i32 {
    let _ = network();
    // SAFETY: the caller's promise.
    noted(unsafe { sys().getaddrbyname(name.cast(), inaddr, len) })
}
