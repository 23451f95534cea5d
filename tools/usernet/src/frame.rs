//! Looks at each guest frame before smoltcp does: drops what the backend
//! does not serve, picks out TCP SYNs (which need a host connection first)
//! and UDP datagrams (translated here, not by smoltcp), and builds the UDP
//! frames that go back.

use std::net::{Ipv4Addr, SocketAddrV4};

use smoltcp::phy::ChecksumCapabilities;
use smoltcp::wire::{
    ArpPacket, ArpRepr, EthernetAddress, EthernetFrame, EthernetProtocol, EthernetRepr, IpAddress,
    IpProtocol, Ipv4Packet, Ipv4Repr, TcpControl, TcpPacket, TcpRepr, UdpPacket, UdpRepr,
};

/// Ethernet + IPv4 + UDP header bytes.
const UDP_HEADERS: usize = 14 + 20 + 8;
/// Largest frame sent to the guest ([`GUEST_MTU`](crate::GUEST_MTU)).
pub(crate) const MAX_GUEST_FRAME: usize = crate::GUEST_MTU as usize + 14;

/// A TCP connection as the guest sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct FourTuple {
    /// The guest's end.
    pub(crate) guest: SocketAddrV4,
    /// The address the guest connected to.
    pub(crate) remote: SocketAddrV4,
}

/// What to do with one guest frame.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Verdict<'a> {
    /// Give it to the smoltcp interface.
    Feed,
    /// Ignore it.
    Drop,
    /// A TCP SYN (without ACK): a new connection, unless it is already known.
    Syn(FourTuple),
    /// A UDP datagram from the guest's `src_port` to `dst`.
    Udp {
        /// The guest's source port.
        src_port: u16,
        /// The destination the guest addressed.
        dst: SocketAddrV4,
        /// The datagram.
        payload: &'a [u8],
    },
}

/// The addresses a frame is checked against.
#[derive(Debug, Clone)]
pub(crate) struct Filter {
    pub(crate) guest: Ipv4Addr,
    pub(crate) gateway: Ipv4Addr,
    pub(crate) dns: Ipv4Addr,
    pub(crate) our_mac: EthernetAddress,
    /// Fixed by the configuration, or learnt from the guest's first frame.
    pub(crate) guest_mac: Option<EthernetAddress>,
    /// Whether `guest_mac` came from the configuration.
    pub(crate) mac_fixed: bool,
}

impl Filter {
    fn ours(&self, ip: Ipv4Addr) -> bool {
        ip == self.gateway || ip == self.dns
    }

    /// Decides what to do with `frame`; learns the guest's MAC from valid frames.
    pub(crate) fn classify<'a>(&mut self, frame: &'a [u8]) -> Verdict<'a> {
        let Ok(eth) = EthernetFrame::new_checked(frame) else {
            return Verdict::Drop;
        };
        let src_mac = eth.src_addr();
        if !src_mac.is_unicast() || (self.mac_fixed && Some(src_mac) != self.guest_mac) {
            return Verdict::Drop;
        }
        if eth.dst_addr() != self.our_mac && !eth.dst_addr().is_broadcast() {
            return Verdict::Drop;
        }
        let verdict = match eth.ethertype() {
            EthernetProtocol::Arp => self.arp(eth.payload()),
            EthernetProtocol::Ipv4 => self.ipv4(eth.payload()),
            _ => Verdict::Drop,
        };
        if verdict != Verdict::Drop && !self.mac_fixed && self.guest_mac != Some(src_mac) {
            log::debug!("usernet: guest MAC is {src_mac}");
            self.guest_mac = Some(src_mac);
        }
        verdict
    }

    fn arp(&self, payload: &[u8]) -> Verdict<'static> {
        let Ok(pkt) = ArpPacket::new_checked(payload) else {
            return Verdict::Drop;
        };
        match ArpRepr::parse(&pkt) {
            // smoltcp in any-IP mode would answer for every address: only the
            // gateway and the DNS proxy exist on this link.
            Ok(ArpRepr::EthernetIpv4 {
                source_protocol_addr,
                target_protocol_addr,
                ..
            }) if self.ours(target_protocol_addr) && source_protocol_addr == self.guest => {
                Verdict::Feed
            }
            _ => Verdict::Drop,
        }
    }

    fn ipv4<'a>(&self, payload: &'a [u8]) -> Verdict<'a> {
        let Ok(pkt) = Ipv4Packet::new_checked(payload) else {
            return Verdict::Drop;
        };
        let caps = ChecksumCapabilities::default();
        let Ok(ip) = Ipv4Repr::parse(&pkt, &caps) else {
            return Verdict::Drop;
        };
        if ip.src_addr != self.guest || pkt.more_frags() || pkt.frag_offset() != 0 {
            return Verdict::Drop;
        }
        let dst = ip.dst_addr;
        let (src_ip, dst_ip) = (IpAddress::Ipv4(ip.src_addr), IpAddress::Ipv4(dst));
        match ip.next_header {
            IpProtocol::Icmp if self.ours(dst) => Verdict::Feed,
            IpProtocol::Tcp if is_remote_unicast(dst) => {
                let Ok(tcp) = TcpPacket::new_checked(pkt.payload()) else {
                    return Verdict::Drop;
                };
                let Ok(repr) = TcpRepr::parse(&tcp, &src_ip, &dst_ip, &caps) else {
                    return Verdict::Drop;
                };
                if repr.control == TcpControl::Syn && repr.ack_number.is_none() {
                    Verdict::Syn(FourTuple {
                        guest: SocketAddrV4::new(ip.src_addr, repr.src_port),
                        remote: SocketAddrV4::new(dst, repr.dst_port),
                    })
                } else {
                    Verdict::Feed
                }
            }
            IpProtocol::Udp if is_remote_unicast(dst) => {
                let Ok(udp) = UdpPacket::new_checked(pkt.payload()) else {
                    return Verdict::Drop;
                };
                let Ok(repr) = UdpRepr::parse(&udp, &src_ip, &dst_ip, &caps) else {
                    return Verdict::Drop;
                };
                if repr.dst_port == 0 {
                    return Verdict::Drop;
                }
                Verdict::Udp {
                    src_port: repr.src_port,
                    dst: SocketAddrV4::new(dst, repr.dst_port),
                    payload: udp.payload(),
                }
            }
            _ => Verdict::Drop,
        }
    }

    /// Builds the frame carrying a UDP datagram from `from` to the guest's
    /// `guest_port`; `None` if the guest's MAC is unknown or it would exceed the MTU.
    pub(crate) fn udp_frame(
        &self,
        from: SocketAddrV4,
        guest_port: u16,
        payload: &[u8],
    ) -> Option<Vec<u8>> {
        let guest_mac = self.guest_mac?;
        let len = UDP_HEADERS + payload.len();
        if len > MAX_GUEST_FRAME {
            return None;
        }
        let caps = ChecksumCapabilities::default();
        let mut buf = vec![0u8; len];
        EthernetRepr {
            src_addr: self.our_mac,
            dst_addr: guest_mac,
            ethertype: EthernetProtocol::Ipv4,
        }
        .emit(&mut EthernetFrame::new_unchecked(&mut buf[..]));
        Ipv4Repr {
            src_addr: *from.ip(),
            dst_addr: self.guest,
            next_header: IpProtocol::Udp,
            payload_len: 8 + payload.len(),
            hop_limit: 64,
        }
        .emit(&mut Ipv4Packet::new_unchecked(&mut buf[14..]), &caps);
        UdpRepr {
            src_port: from.port(),
            dst_port: guest_port,
        }
        .emit(
            &mut UdpPacket::new_unchecked(&mut buf[34..]),
            &IpAddress::Ipv4(*from.ip()),
            &IpAddress::Ipv4(self.guest),
            payload.len(),
            |p| p.copy_from_slice(payload),
            &caps,
        );
        Some(buf)
    }
}

/// Destinations the backend relays to: not broadcast, multicast, unspecified.
fn is_remote_unicast(ip: Ipv4Addr) -> bool {
    !(ip.is_broadcast() || ip.is_multicast() || ip.is_unspecified())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filter() -> Filter {
        Filter {
            guest: Ipv4Addr::new(10, 0, 5, 2),
            gateway: Ipv4Addr::new(10, 0, 5, 1),
            dns: Ipv4Addr::new(10, 0, 5, 3),
            our_mac: EthernetAddress([0x52, 0x55, 10, 0, 5, 1]),
            guest_mac: Some(EthernetAddress([2, 0, 0, 0, 0, 2])),
            mac_fixed: false,
        }
    }

    #[test]
    fn udp_frame_round_trips_through_classify() {
        let mut f = filter();
        let from = SocketAddrV4::new(Ipv4Addr::new(10, 0, 5, 1), 53);
        let mut frame = f.udp_frame(from, 4000, b"hello").unwrap();
        // Turn the reply around, as if the guest had sent it.
        frame[0..6].copy_from_slice(&f.our_mac.0);
        frame[6..12].copy_from_slice(&[2, 0, 0, 0, 0, 2]);
        let mut pkt = Ipv4Packet::new_unchecked(&mut frame[14..]);
        pkt.set_src_addr(Ipv4Addr::new(10, 0, 5, 2));
        pkt.set_dst_addr(Ipv4Addr::new(10, 0, 5, 1));
        pkt.fill_checksum();
        let mut udp = UdpPacket::new_unchecked(&mut frame[34..]);
        udp.set_checksum(0); // 0: no UDP checksum
        assert_eq!(
            f.classify(&frame),
            Verdict::Udp {
                src_port: 53,
                dst: SocketAddrV4::new(Ipv4Addr::new(10, 0, 5, 1), 4000),
                payload: b"hello"
            }
        );
    }

    #[test]
    fn garbage_is_dropped() {
        let mut f = filter();
        assert_eq!(f.classify(&[]), Verdict::Drop);
        assert_eq!(f.classify(&[0xff; 13]), Verdict::Drop);
        assert_eq!(f.classify(&[0xff; 60]), Verdict::Drop);
        let mut ipv4 = vec![0u8; 60];
        ipv4[0..6].copy_from_slice(&f.our_mac.0);
        ipv4[6..12].copy_from_slice(&[2, 0, 0, 0, 0, 2]);
        ipv4[12..14].copy_from_slice(&[8, 0]);
        ipv4[14] = 0x4f; // header length 60 > what follows
        assert_eq!(f.classify(&ipv4), Verdict::Drop);
        // Datagrams fit up to the guest MTU.
        let from = SocketAddrV4::new(f.gateway, 1);
        let most = usize::from(crate::GUEST_MTU) - 28;
        assert!(f.udp_frame(from, 1, &vec![0; most]).is_some());
        assert!(f.udp_frame(from, 1, &vec![0; most + 1]).is_none());
    }
}
