//! Dropping a `UserNet` stops its worker thread and closes every descriptor
//! (its own test binary, so no other test's sockets and threads interfere).

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::time::Duration;

use common::*;
use hermit_usernet::{Config, Forward, UserNet};
use smoltcp::socket::tcp::State;
use smoltcp::wire::{IpAddress, IpEndpoint};

fn fd_count() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

fn usernet_threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .filter(|comm| comm.trim() == "usernet")
        .count()
}

#[test]
fn drop_stops_the_worker_and_closes_all_fds() {
    fn assert_send<T: Send>() {}
    assert_send::<UserNet>();

    // Host peers live outside the measured window.
    let host = TcpListener::bind("127.0.0.1:0").unwrap();
    let host_port = host.local_addr().unwrap().port();
    let udp_peer = UdpSocket::bind("127.0.0.1:0").unwrap();
    let udp_port = udp_peer.local_addr().unwrap().port();

    let before = fd_count();
    assert_eq!(usernet_threads(), 0);
    {
        let mut g = FakeGuest::new(Config {
            forwards: vec![Forward {
                host: "127.0.0.1:0".parse().unwrap(),
                guest_port: 7,
            }],
            ..Config::default()
        });
        // The new thread names itself once it runs.
        let t0 = std::time::Instant::now();
        while usernet_threads() == 0 && t0.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(usernet_threads(), 1);
        // An open outbound TCP connection, a UDP mapping, an inbound connection.
        let h = g.connect(GATEWAY, host_port, 49_100);
        assert!(g.run_until(Duration::from_secs(10), |g| g.tcp(h).state()
            == State::Established));
        let (mut peer, _) = host.accept().unwrap();
        peer.write_all(b"x").unwrap();
        let u = g.udp_socket(6000);
        g.udp(u)
            .send_slice(b"u", IpEndpoint::new(IpAddress::Ipv4(GATEWAY), udp_port))
            .unwrap();
        g.run_for(Duration::from_millis(100));
        let mut b = [0u8; 8];
        assert_eq!(udp_peer.recv(&mut b).unwrap(), 1);
        let l = g.tcp_socket();
        g.tcp(l).listen(7).unwrap();
        let fwd = TcpStream::connect(g.net.forward_addrs()[0]).unwrap();
        assert!(g.run_until(Duration::from_secs(10), |g| g.tcp(l).state()
            == State::Established));
        drop(g);
        assert_eq!(usernet_threads(), 0, "worker thread still running");
        // The host ends see the backend's sockets close.
        peer.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        assert!(matches!(peer.read(&mut b), Ok(0) | Err(_)));
        drop(peer);
        drop(fwd);
    }
    assert_eq!(fd_count(), before, "descriptors leaked");
}
