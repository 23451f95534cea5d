//! DNS: `Stack::resolve` against a tiny DNS server on the other stack.

#![cfg(all(feature = "dns", feature = "udp"))]

mod common;

use std::thread;

use common::{A_IP, B_IP, Faults, Pair};
use hermit_net::{Config, Errno, Ipv4Addr, UdpSocket};

const ANSWER: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 7);

/// Answers `queries` queries: "known.test" with ANSWER, anything else with
/// NXDOMAIN.
fn serve(socket: UdpSocket, queries: usize) {
    let mut buf = [0u8; 512];
    for _ in 0..queries {
        let (n, from) = socket.recv_from(&mut buf).expect("recv");
        let query = &buf[..n];
        // The question: labels up to the root, then type and class.
        let mut end = 12;
        let mut name = Vec::new();
        while query[end] != 0 {
            let len = usize::from(query[end]);
            name.push(String::from_utf8_lossy(&query[end + 1..end + 1 + len]).into_owned());
            end += 1 + len;
        }
        end += 5;
        let known = name.join(".") == "known.test";
        let mut reply = query[..end].to_vec();
        reply[2] = 0x81;
        reply[3] = if known { 0x80 } else { 0x83 };
        reply[6..8].copy_from_slice(&[0, u8::from(known)]);
        reply[8..12].fill(0);
        if known {
            reply.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4]);
            reply.extend_from_slice(&ANSWER.octets());
        }
        socket.send_to(&reply, from).expect("send");
    }
}

#[test]
fn resolves_names() {
    let config_a = Config {
        address: A_IP,
        dns: vec![B_IP],
        ..Config::default()
    };
    let config_b = Config {
        address: B_IP,
        ..Config::default()
    };
    let pair = Pair::with_configs(Faults::default(), config_a, config_b);
    let server = pair.b.udp_bind(53).unwrap();
    let responder = thread::spawn(move || serve(server, 2));
    assert_eq!(
        pair.a.resolve("1.2.3.4"),
        Ok(vec![Ipv4Addr::new(1, 2, 3, 4)])
    );
    assert_eq!(pair.a.resolve("known.test"), Ok(vec![ANSWER]));
    assert_eq!(pair.a.resolve("unknown.test"), Err(Errno::ENOENT));
    responder.join().unwrap();
    // Without servers, names do not resolve.
    assert_eq!(pair.b.resolve("known.test"), Err(Errno::ENOENT));
}
