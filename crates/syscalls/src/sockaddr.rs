//! Socket addresses as the ABI passes them: bytes of a `sockaddr_in` (BSD
//! layout: length byte, family byte, port and address in network order).

use core::mem::size_of;
use core::net::{Ipv4Addr, SocketAddrV4};

use crate::Errno;
use crate::abi::{AF_INET, AF_INET6, sockaddr_in, sockaddr_storage};

/// The size of a `sockaddr_in`.
pub const SOCKADDR_IN_LEN: usize = size_of::<sockaddr_in>();

/// The most bytes an address argument may have (`EINVAL` beyond).
pub const SOCKADDR_MAX_LEN: usize = size_of::<sockaddr_storage>();

/// Parses the `len` bytes an application passed as an address: `EINVAL`
/// if too short for its family or longer than a `sockaddr_storage`,
/// `EAFNOSUPPORT` for anything but `AF_INET` (this stack is IPv4 only).
pub fn parse(bytes: &[u8]) -> Result<SocketAddrV4, Errno> {
    if bytes.len() < 2 || bytes.len() > SOCKADDR_MAX_LEN {
        return Err(Errno::EINVAL);
    }
    match i32::from(bytes[1]) {
        AF_INET if bytes.len() >= SOCKADDR_IN_LEN => {
            let port = u16::from_be_bytes([bytes[2], bytes[3]]);
            let ip = Ipv4Addr::new(bytes[4], bytes[5], bytes[6], bytes[7]);
            Ok(SocketAddrV4::new(ip, port))
        }
        AF_INET => Err(Errno::EINVAL),
        AF_INET6 => Err(Errno::EAFNOSUPPORT),
        _ => Err(Errno::EAFNOSUPPORT),
    }
}

/// The bytes of the `sockaddr_in` for `addr`.
pub fn encode(addr: SocketAddrV4) -> [u8; SOCKADDR_IN_LEN] {
    let mut out = [0; SOCKADDR_IN_LEN];
    // The length fits the byte: 16.
    out[0] = SOCKADDR_IN_LEN as u8;
    // AF_INET is 3.
    out[1] = AF_INET as u8;
    out[2..4].copy_from_slice(&addr.port().to_be_bytes());
    out[4..8].copy_from_slice(&addr.ip().octets());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_std_layout() {
        let a = SocketAddrV4::new(Ipv4Addr::new(10, 0, 5, 3), 8080);
        let bytes = encode(a);
        assert_eq!(parse(&bytes), Ok(a));
        // What std builds: sin_len 0, sin_port big endian, s_addr in
        // network order read as native.
        let c = hermit_abi::sockaddr_in {
            sin_len: 0,
            sin_family: hermit_abi::AF_INET as u8,
            sin_port: 8080u16.to_be(),
            sin_addr: hermit_abi::in_addr {
                s_addr: u32::from_ne_bytes([10, 0, 5, 3]),
            },
            sin_zero: [0; 8],
        };
        // SAFETY: a plain C struct without padding, viewed as bytes.
        let raw: [u8; 16] = unsafe { core::mem::transmute(c) };
        assert_eq!(parse(&raw), Ok(a));
        assert_eq!(raw[1..], bytes[1..]);
    }

    #[test]
    fn rejects() {
        let good = encode(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 1));
        assert_eq!(parse(&good[..15]), Err(Errno::EINVAL));
        assert_eq!(parse(&good[..1]), Err(Errno::EINVAL));
        assert_eq!(parse(&[0; 129]), Err(Errno::EINVAL));
        let mut v6 = [0u8; 28];
        v6[1] = AF_INET6 as u8;
        assert_eq!(parse(&v6), Err(Errno::EAFNOSUPPORT));
        let mut unknown = good;
        unknown[1] = 42;
        assert_eq!(parse(&unknown), Err(Errno::EAFNOSUPPORT));
        // A longer buffer is fine (sockaddr_storage).
        let mut long = [0u8; 128];
        long[..16].copy_from_slice(&good);
        assert!(parse(&long).is_ok());
    }
}
