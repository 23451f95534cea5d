//! DHCPv4: a stack configures itself from a tiny DHCP server written on
//! the other stack's UDP sockets.

#![cfg(all(feature = "dhcpv4", feature = "udp", feature = "tcp"))]

mod common;

use std::thread;
use std::time::Duration;

use common::{B_IP, Faults, Pair};
use hermit_net::{Config, Ipv4Addr, SocketAddrV4, UdpSocket};

const LEASED: Ipv4Addr = Ipv4Addr::new(10, 0, 5, 50);
const DNS: Ipv4Addr = Ipv4Addr::new(10, 0, 5, 53);

/// Answers DISCOVER with OFFER and REQUEST with ACK, `answers` times.
fn serve(socket: UdpSocket, answers: usize) {
    let mut buf = [0u8; 1500];
    let mut sent = 0;
    while sent < answers {
        let (n, _) = socket.recv_from(&mut buf).expect("recv");
        let request = &buf[..n];
        if n < 240 || request[0] != 1 || request[236..240] != [99, 130, 83, 99] {
            continue;
        }
        // Find option 53 (message type).
        let mut kind = 0;
        let mut i = 240;
        while i + 1 < n && request[i] != 255 {
            if request[i] == 0 {
                i += 1;
                continue;
            }
            let len = usize::from(request[i + 1]);
            if request[i] == 53 && len == 1 {
                kind = request[i + 2];
            }
            i += 2 + len;
        }
        let reply_kind = match kind {
            1 => 2, // DISCOVER -> OFFER
            3 => 5, // REQUEST -> ACK
            _ => continue,
        };
        let mut reply = vec![0u8; 240];
        reply[0] = 2;
        reply[1] = 1;
        reply[2] = 6;
        reply[4..8].copy_from_slice(&request[4..8]);
        reply[16..20].copy_from_slice(&LEASED.octets());
        reply[20..24].copy_from_slice(&B_IP.octets());
        reply[28..44].copy_from_slice(&request[28..44]);
        reply[236..240].copy_from_slice(&[99, 130, 83, 99]);
        for (code, value) in [
            (53u8, vec![reply_kind]),
            (54, B_IP.octets().to_vec()),
            (51, 3600u32.to_be_bytes().to_vec()),
            (1, vec![255, 255, 255, 0]),
            (3, B_IP.octets().to_vec()),
            (6, DNS.octets().to_vec()),
        ] {
            reply.push(code);
            reply.push(value.len() as u8);
            reply.extend_from_slice(&value);
        }
        reply.push(255);
        socket
            .send_to(&reply, SocketAddrV4::new(Ipv4Addr::BROADCAST, 68))
            .expect("send");
        sent += 1;
    }
}

#[test]
fn stack_configures_itself_on_lease() {
    let config_a = Config {
        dhcp: true,
        address: Ipv4Addr::UNSPECIFIED,
        gateway: None,
        ..Config::default()
    };
    let config_b = Config {
        address: B_IP,
        ..Config::default()
    };
    let pair = Pair::with_configs(Faults::default(), config_a, config_b);
    assert!(!pair.a.is_configured());
    assert_eq!(pair.a.local_addr(), None);
    assert_eq!(
        pair.a.wait_configured(Some(Duration::from_millis(100))),
        Err(hermit_net::Errno::ETIMEDOUT)
    );

    // A connect issued before the lease waits for it.
    let listener = pair.b.tcp_listen(80, 1).unwrap();
    let a = pair.a.clone();
    let client = thread::spawn(move || {
        let s = a
            .tcp_connect(SocketAddrV4::new(B_IP, 80), Some(Duration::from_secs(30)))
            .expect("connect after lease");
        s.local_addr().expect("local addr")
    });

    let server = pair.b.udp_bind(67).unwrap();
    let responder = thread::spawn(move || serve(server, 2));
    pair.a
        .wait_configured(Some(Duration::from_secs(30)))
        .expect("lease");
    assert_eq!(pair.a.local_addr(), Some(LEASED));
    responder.join().unwrap();
    let (_stream, peer) = listener.accept().unwrap();
    assert_eq!(*peer.ip(), LEASED);
    assert_eq!(*client.join().unwrap().ip(), LEASED);
}
