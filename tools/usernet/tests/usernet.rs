//! End-to-end tests: a fake guest (a second smoltcp stack) talks through
//! `UserNet` to real host sockets.

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream, UdpSocket};
use std::thread;
use std::time::{Duration, Instant};

use common::*;
use hermit_usernet::{Config, Forward, UserNet};
use smoltcp::phy::ChecksumCapabilities;
use smoltcp::socket::tcp::State;
use smoltcp::wire::{
    EthernetAddress, EthernetFrame, EthernetProtocol, EthernetRepr, Icmpv4Packet, Icmpv4Repr,
    IpAddress, IpEndpoint, IpProtocol, Ipv4Address, Ipv4Packet, Ipv4Repr, TcpControl, TcpPacket,
    TcpRepr, TcpSeqNumber,
};

const T: Duration = Duration::from_secs(10);

fn guest() -> FakeGuest {
    FakeGuest::new(Config::default())
}

/// Sends one echo request to `to` and waits for the reply.
fn ping(g: &mut FakeGuest, to: Ipv4Address, ident: u16, seq: u16, wait: Duration) -> bool {
    let h = g.icmp_socket(ident);
    let data = b"ping payload";
    let repr = Icmpv4Repr::EchoRequest {
        ident,
        seq_no: seq,
        data,
    };
    let mut buf = vec![0u8; repr.buffer_len()];
    repr.emit(
        &mut Icmpv4Packet::new_unchecked(&mut buf),
        &ChecksumCapabilities::default(),
    );
    g.icmp(h).send_slice(&buf, IpAddress::Ipv4(to)).unwrap();
    let ok = g.run_until(wait, |g| {
        let s = g.icmp(h);
        let mut rx = [0u8; 256];
        while let Ok((n, from)) = s.recv_slice(&mut rx) {
            let pkt = Icmpv4Packet::new_checked(&rx[..n]).unwrap();
            if let Ok(Icmpv4Repr::EchoReply {
                ident: i,
                seq_no,
                data: d,
            }) = Icmpv4Repr::parse(&pkt, &ChecksumCapabilities::default())
                && i == ident
                && seq_no == seq
                && d == data
                && from == IpAddress::Ipv4(to)
            {
                return true;
            }
        }
        false
    });
    g.sockets.remove(h);
    ok
}

#[test]
fn arp_and_ping_gateway_and_dns() {
    let mut g = guest();
    assert!(
        ping(&mut g, GATEWAY, 0x1234, 1, T),
        "no echo reply from the gateway"
    );
    assert!(
        ping(&mut g, DNS, 0x1235, 2, T),
        "no echo reply from the DNS proxy"
    );
    // Other hosts are not pretended to exist.
    assert!(!ping(
        &mut g,
        Ipv4Address::new(192, 0, 2, 1),
        0x1236,
        3,
        Duration::from_millis(300)
    ));
}

/// Host side of the echo tests: echoes every connection, returns per-connection
/// (bytes, checksum) of what it received.
fn echo_server(conns: usize) -> (u16, thread::JoinHandle<Vec<(usize, u64)>>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let h = thread::spawn(move || {
        let workers: Vec<_> = (0..conns)
            .map(|_| {
                let (mut s, _) = l.accept().unwrap();
                thread::spawn(move || {
                    let mut buf = vec![0u8; 65536];
                    let (mut n, mut sum) = (0, FNV0);
                    loop {
                        let k = s.read(&mut buf).unwrap();
                        if k == 0 {
                            break;
                        }
                        n += k;
                        sum = fnv(sum, &buf[..k]);
                        s.write_all(&buf[..k]).unwrap();
                    }
                    s.shutdown(Shutdown::Write).unwrap();
                    (n, sum)
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap()).collect()
    });
    (port, h)
}

#[test]
fn tcp_echo_megabytes_through_gateway() {
    const LEN: usize = 4 << 20;
    let data = pattern(LEN, 7);
    let want = fnv(FNV0, &data);
    let (port, server) = echo_server(1);
    let mut g = guest();
    let h = g.connect(GATEWAY, port, 49_001);
    let (mut sent, mut got_sum, mut got) = (0usize, FNV0, 0usize);
    let mut closed = false;
    let start = Instant::now();
    let ok = g.run_until(Duration::from_secs(120), |g| {
        let s = g.tcp(h);
        if s.can_send() && sent < LEN {
            sent += s.send_slice(&data[sent..]).unwrap();
        }
        while s.can_recv() {
            s.recv(|b| {
                got_sum = fnv(got_sum, b);
                got += b.len();
                (b.len(), ())
            })
            .unwrap();
        }
        // Close once the echo is complete: a guest in FIN-WAIT-2 with a zero
        // window waits for smoltcp's zero-window probe (about a second).
        if got == LEN && !closed {
            s.close();
            closed = true;
        }
        got == LEN && !s.may_recv()
    });
    let secs = start.elapsed().as_secs_f64();
    assert!(
        ok,
        "echo stalled: sent {sent}, got {got}, state {}",
        g.tcp(h).state()
    );
    assert_eq!(got_sum, want, "guest received corrupted data");
    let host = server.join().unwrap();
    assert_eq!(host, vec![(LEN, want)], "host received corrupted data");
    println!(
        "usernet TCP echo: {} MiB each way in {secs:.2} s = {:.1} MB/s each way ({} frames dropped)",
        LEN >> 20,
        LEN as f64 / secs / 1e6,
        g.net.dropped_frames()
    );
}

#[test]
fn connect_to_closed_host_port_is_refused() {
    let (_reserved, port) = closed_port();
    let mut g = guest();
    let h = g.connect(GATEWAY, port, 49_002);
    let mut seen_established = false;
    let ok = g.run_until(T, |g| {
        let st = g.tcp(h).state();
        seen_established |= st == State::Established;
        st == State::Closed
    });
    assert!(ok, "no RST: state {}", g.tcp(h).state());
    assert!(!seen_established);
}

#[test]
fn host_close_reaches_guest_as_fin() {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let server = thread::spawn(move || {
        let (mut s, _) = l.accept().unwrap();
        s.write_all(b"bye").unwrap();
        s.shutdown(Shutdown::Write).unwrap();
        // Then the guest's FIN arrives as EOF.
        let mut rest = Vec::new();
        s.read_to_end(&mut rest).unwrap();
        rest
    });
    let mut g = guest();
    let h = g.connect(GATEWAY, port, 49_003);
    let mut got = Vec::new();
    let ok = g.run_until(T, |g| {
        let s = g.tcp(h);
        let mut b = [0u8; 16];
        while let Ok(n @ 1..) = s.recv_slice(&mut b) {
            got.extend_from_slice(&b[..n]);
        }
        !s.may_recv() && s.state() == State::CloseWait
    });
    assert!(ok, "no FIN: state {}", g.tcp(h).state());
    assert_eq!(got, b"bye");
    // Half-close: the guest can still send after the host's FIN.
    g.tcp(h).send_slice(b"late").unwrap();
    g.tcp(h).close();
    assert!(g.run_until(T, |g| g.tcp(h).state() == State::Closed
        || g.tcp(h).state() == State::TimeWait));
    assert_eq!(server.join().unwrap(), b"late");
}

#[test]
fn inbound_forward_reaches_guest_listener() {
    let mut g = FakeGuest::new(Config {
        forwards: vec![
            Forward {
                host: "127.0.0.1:0".parse().unwrap(),
                guest_port: 8080,
            },
            Forward {
                host: "127.0.0.1:0".parse().unwrap(),
                guest_port: 9, // nobody listens
            },
        ],
        ..Config::default()
    });
    let addrs = g.net.forward_addrs().to_vec();
    assert_eq!(addrs.len(), 2);
    assert_ne!(addrs[0].port(), 0);
    let l = g.tcp_socket();
    g.tcp(l).listen(8080).unwrap();
    let client = thread::spawn(move || {
        let mut s = TcpStream::connect(addrs[0]).unwrap();
        s.write_all(b"hello guest").unwrap();
        s.shutdown(Shutdown::Write).unwrap();
        let mut back = Vec::new();
        s.read_to_end(&mut back).unwrap();
        // A forward to a closed guest port: the host peer sees the reset.
        let mut r = TcpStream::connect(addrs[1]).unwrap();
        r.set_read_timeout(Some(T)).unwrap();
        let refused = match r.read(&mut [0u8; 8]) {
            Ok(0) => true,
            Ok(_) => false,
            Err(e) => e.kind() == std::io::ErrorKind::ConnectionReset,
        };
        (back, refused)
    });
    let mut got = Vec::new();
    let mut replied = false;
    let ok = g.run_until(T, |g| {
        let s = g.tcp(l);
        let mut b = [0u8; 64];
        while let Ok(n @ 1..) = s.recv_slice(&mut b) {
            got.extend_from_slice(&b[..n]);
        }
        if !replied && !s.may_recv() && s.state() == State::CloseWait {
            let up = got.to_ascii_uppercase();
            s.send_slice(&up).unwrap();
            s.close();
            replied = true;
        }
        client.is_finished()
    });
    assert!(
        ok,
        "forward stalled; guest got {:?}",
        String::from_utf8_lossy(&got)
    );
    let (back, refused) = client.join().unwrap();
    assert_eq!(got, b"hello guest");
    assert_eq!(back, b"HELLO GUEST");
    assert!(refused, "closed guest port was not reported to the host");
}

#[test]
fn udp_echo_and_dns_proxy() {
    let echo = UdpSocket::bind("127.0.0.1:0").unwrap();
    let echo_port = echo.local_addr().unwrap().port();
    let dns = UdpSocket::bind("127.0.0.1:0").unwrap();
    let dns_addr = dns.local_addr().unwrap();
    let servers = thread::spawn(move || {
        let mut b = [0u8; 512];
        let (n, from) = echo.recv_from(&mut b).unwrap();
        echo.send_to(&b[..n], from).unwrap();
        let (n, from) = dns.recv_from(&mut b).unwrap();
        let mut reply = b"answer:".to_vec();
        reply.extend_from_slice(&b[..n]);
        dns.send_to(&reply, from).unwrap();
    });
    let mut g = FakeGuest::new(Config {
        dns_upstream: Some(dns_addr),
        ..Config::default()
    });
    let h = g.udp_socket(5000);
    let to = IpEndpoint::new(IpAddress::Ipv4(GATEWAY), echo_port);
    g.udp(h).send_slice(b"udp hello", to).unwrap();
    let mut reply = None;
    assert!(g.run_until(T, |g| {
        let mut b = [0u8; 64];
        if let Ok((n, meta)) = g.udp(h).recv_slice(&mut b) {
            reply = Some((b[..n].to_vec(), meta.endpoint));
        }
        reply.is_some()
    }));
    assert_eq!(reply.take().unwrap(), (b"udp hello".to_vec(), to));
    let dns_ep = IpEndpoint::new(IpAddress::Ipv4(DNS), 53);
    g.udp(h).send_slice(b"query", dns_ep).unwrap();
    assert!(g.run_until(T, |g| {
        let mut b = [0u8; 64];
        if let Ok((n, meta)) = g.udp(h).recv_slice(&mut b) {
            reply = Some((b[..n].to_vec(), meta.endpoint));
        }
        reply.is_some()
    }));
    assert_eq!(reply.unwrap(), (b"answer:query".to_vec(), dns_ep));
    servers.join().unwrap();
}

#[test]
fn hundred_concurrent_connections() {
    const N: usize = 100;
    let (port, server) = echo_server(N);
    let mut g = guest();
    let hs: Vec<_> = (0..N)
        .map(|i| g.connect(GATEWAY, port, 50_000 + i as u16))
        .collect();
    let mut sent = [false; N];
    let mut got: Vec<Vec<u8>> = vec![Vec::new(); N];
    let ok = g.run_until(Duration::from_secs(60), |g| {
        let mut done = 0;
        for (i, h) in hs.iter().enumerate() {
            let s = g.tcp(*h);
            let msg = format!("connection {i}");
            if !sent[i] && s.can_send() {
                s.send_slice(msg.as_bytes()).unwrap();
                s.close();
                sent[i] = true;
            }
            let mut b = [0u8; 64];
            while let Ok(n @ 1..) = s.recv_slice(&mut b) {
                got[i].extend_from_slice(&b[..n]);
            }
            if got[i] == msg.as_bytes() && !s.may_recv() {
                done += 1;
            }
        }
        done == N
    });
    let finished = got
        .iter()
        .enumerate()
        .filter(|(i, g)| **g == format!("connection {i}").into_bytes())
        .count();
    assert!(ok, "only {finished} of {N} connections echoed");
    let host = server.join().unwrap();
    assert_eq!(host.len(), N);
}

/// An Ethernet frame from the guest to the gateway's MAC.
fn eth(payload_proto: EthernetProtocol, payload: &[u8]) -> Vec<u8> {
    let mut f = vec![0u8; 14 + payload.len()];
    EthernetRepr {
        src_addr: EthernetAddress(GUEST_MAC),
        dst_addr: EthernetAddress(hermit_usernet::Config::default().gateway_mac),
        ethertype: payload_proto,
    }
    .emit(&mut EthernetFrame::new_unchecked(&mut f[..]));
    f[14..].copy_from_slice(payload);
    f
}

/// A well-formed guest TCP SYN to `dst:port` from `sport`.
fn syn_frame(dst: Ipv4Address, port: u16, sport: u16) -> Vec<u8> {
    let caps = ChecksumCapabilities::default();
    let src = Ipv4Address::new(10, 0, 5, 2);
    let tcp = TcpRepr {
        src_port: sport,
        dst_port: port,
        control: TcpControl::Syn,
        seq_number: TcpSeqNumber(1000),
        ack_number: None,
        window_len: 1024,
        window_scale: None,
        max_seg_size: Some(1460),
        sack_permitted: false,
        sack_ranges: [None; 3],
        timestamp: None,
        payload: &[],
    };
    let ip = Ipv4Repr {
        src_addr: src,
        dst_addr: dst,
        next_header: IpProtocol::Tcp,
        payload_len: tcp.buffer_len(),
        hop_limit: 64,
    };
    let mut p = vec![0u8; 20 + tcp.buffer_len()];
    ip.emit(&mut Ipv4Packet::new_unchecked(&mut p[..]), &caps);
    tcp.emit(
        &mut TcpPacket::new_unchecked(&mut p[20..]),
        &IpAddress::Ipv4(src),
        &IpAddress::Ipv4(dst),
        &caps,
    );
    eth(EthernetProtocol::Ipv4, &p)
}

#[test]
fn malformed_frames_and_floods_are_survived() {
    let mut g = guest();
    let mut seed = 99u64;
    let mut junk = |n: usize| {
        seed += 1;
        pattern(n, seed)
    };
    g.net.send(&[]).unwrap();
    g.net.send(&[0u8; 13]).unwrap();
    g.net.send(&vec![0xffu8; 200_000]).unwrap();
    for i in 0..3000 {
        let len = (i * 37) % 1600;
        let proto = match i % 3 {
            0 => EthernetProtocol::Ipv4,
            1 => EthernetProtocol::Arp,
            _ => EthernetProtocol::Unknown(0x86dd),
        };
        let mut payload = junk(len);
        if proto == EthernetProtocol::Ipv4 && len >= 20 {
            // A plausible IPv4 header with garbage lengths and protocol.
            payload[0] = 0x45;
            payload[9] = [1u8, 6, 17][i % 3];
            let mut pkt = Ipv4Packet::new_unchecked(&mut payload[..]);
            pkt.set_src_addr(Ipv4Address::new(10, 0, 5, 2));
            pkt.set_dst_addr(GATEWAY);
            pkt.fill_checksum();
        }
        g.net.send(&eth(proto, &payload)).unwrap();
        if i % 500 == 0 {
            g.run_for(Duration::from_millis(5));
        }
    }
    // A SYN flood to closed ports and to unroutable subnet addresses.
    let (_reserved, closed) = closed_port();
    for i in 0..2000u16 {
        g.net.send(&syn_frame(GATEWAY, closed, 1024 + i)).unwrap();
        g.net
            .send(&syn_frame(Ipv4Address::new(10, 0, 5, 77), 80, 1024 + i))
            .unwrap();
        if i % 200 == 0 {
            g.run_for(Duration::from_millis(5));
        }
    }
    g.run_for(Duration::from_millis(200));
    assert!(ping(&mut g, GATEWAY, 7, 7, T), "backend stopped answering");
    let (port, server) = echo_server(1);
    let h = g.connect(GATEWAY, port, 49_010);
    let mut got = Vec::new();
    let mut sent = false;
    assert!(g.run_until(T, |g| {
        let s = g.tcp(h);
        if !sent && s.can_send() {
            s.send_slice(b"still alive").unwrap();
            s.close();
            sent = true;
        }
        let mut b = [0u8; 32];
        while let Ok(n @ 1..) = s.recv_slice(&mut b) {
            got.extend_from_slice(&b[..n]);
        }
        !s.may_recv() && sent
    }));
    assert_eq!(got, b"still alive");
    server.join().unwrap();
    assert!(g.net.dropped_frames() > 0);
}

#[test]
fn queue_is_bounded_when_guest_does_not_read() {
    let net = UserNet::new(Config::default()).unwrap();
    // ARP requests for the gateway: each one is answered into the guest queue.
    let mut arp = vec![0u8; 28];
    arp[..8].copy_from_slice(&[0, 1, 8, 0, 6, 4, 0, 1]);
    arp[8..14].copy_from_slice(&GUEST_MAC);
    arp[14..18].copy_from_slice(&[10, 0, 5, 2]);
    arp[24..28].copy_from_slice(&[10, 0, 5, 1]);
    let mut frame = eth(EthernetProtocol::Arp, &arp);
    frame[..6].copy_from_slice(&[0xff; 6]);
    for _ in 0..5000 {
        net.send(&frame).unwrap();
    }
    thread::sleep(Duration::from_millis(500));
    let mut n = 0;
    let mut buf = [0u8; 1514];
    while let Some(len) = net.recv(&mut buf).unwrap() {
        assert_eq!(len, 42);
        n += 1;
    }
    assert!(n > 0 && n <= 1024, "{n} frames queued for the guest");
}

#[test]
fn udp_mappings_expire() {
    let peer = UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = peer.local_addr().unwrap().port();
    let mut g = FakeGuest::new(Config {
        udp_timeout: Duration::from_millis(300),
        ..Config::default()
    });
    let h = g.udp_socket(5001);
    g.udp(h)
        .send_slice(b"open", IpEndpoint::new(IpAddress::Ipv4(GATEWAY), port))
        .unwrap();
    g.run_for(Duration::from_millis(50));
    let mut b = [0u8; 16];
    peer.set_read_timeout(Some(T)).unwrap();
    let (_, mapped) = peer.recv_from(&mut b).unwrap();
    // While the mapping lives, the peer reaches the guest through it.
    peer.send_to(b"early", mapped).unwrap();
    let mut got = Vec::new();
    assert!(g.run_until(T, |g| {
        if let Ok((n, _)) = g.udp(h).recv_slice(&mut b) {
            got.push(b[..n].to_vec());
        }
        !got.is_empty()
    }));
    assert_eq!(got, vec![b"early".to_vec()]);
    // After the timeout (counted from the last datagram) it is gone.
    g.run_for(Duration::from_millis(1500));
    let _ = peer.send_to(b"late", mapped);
    let late = g.run_until(Duration::from_millis(300), |g| {
        g.udp(h).recv_slice(&mut b).is_ok()
    });
    assert!(!late, "a datagram arrived through an expired mapping");
}

#[test]
fn relay_buffers_are_bounded() {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let mut g = guest();
    let h = g.connect(GATEWAY, port, 49_020);
    assert!(g.run_until(T, |g| g.tcp(h).state() == State::Established));
    let (mut host, _) = l.accept().unwrap();
    host.set_nonblocking(true).unwrap();
    // Host → guest while the guest does not read: the host's writes must block.
    let data = pattern(1 << 20, 3);
    let mut pushed = 0usize;
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(1) {
        match host.write(&data) {
            Ok(n) => pushed += n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => panic!("{e}"),
        }
        g.poll();
        thread::sleep(Duration::from_millis(1));
    }
    assert!(
        pushed < 64 << 20,
        "{pushed} bytes accepted without the guest reading"
    );
    // Guest → host while the host does not read: the guest's sends must stall.
    let mut sent = 0usize;
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(1) {
        let s = g.tcp(h);
        if s.can_send() {
            sent += s.send_slice(&data).unwrap();
        }
        g.poll();
        thread::sleep(Duration::from_millis(1));
    }
    assert!(
        sent < 64 << 20,
        "{sent} bytes taken without the host reading"
    );
    println!("buffered while stalled: host -> guest {pushed} bytes, guest -> host {sent} bytes");
    // Everything still arrives once both sides read.
    host.set_nonblocking(false).unwrap();
    let reader = thread::spawn(move || {
        let mut total = 0usize;
        let mut buf = vec![0u8; 65536];
        while total < sent {
            total += host.read(&mut buf).unwrap();
        }
        (total, host)
    });
    let mut got = 0usize;
    assert!(g.run_until(Duration::from_secs(60), |g| {
        let mut b = [0u8; 65536];
        while let Ok(n @ 1..) = g.tcp(h).recv_slice(&mut b) {
            got += n;
        }
        got == pushed && reader.is_finished()
    }));
    assert_eq!(reader.join().unwrap().0, sent);
}
