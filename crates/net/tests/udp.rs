//! UDP over two stacks on an in-memory wire.

#![cfg(feature = "udp")]

mod common;

use std::time::{Duration, Instant};

use common::{A_IP, B_IP, Pair, pattern};
use hermit_net::{Errno, PollEntry, PollEvents, SocketAddrV4};

#[test]
fn round_trip() {
    let pair = Pair::new();
    let server = pair.b.udp_bind(5353).unwrap();
    let client = pair.a.udp_bind(0).unwrap();
    let client_port = client.port();
    assert!(client_port >= 49152, "ephemeral port {client_port}");
    let data = pattern(1200, 3);
    client
        .send_to(&data, SocketAddrV4::new(B_IP, 5353))
        .unwrap();
    let mut buf = [0; 2048];
    let (n, from) = server.recv_from(&mut buf).unwrap();
    assert_eq!(&buf[..n], &data[..]);
    assert_eq!(from, SocketAddrV4::new(A_IP, client_port));
    server.send_to(b"pong", from).unwrap();
    let (n, from) = client.recv_from(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"pong");
    assert_eq!(from, SocketAddrV4::new(B_IP, 5353));
}

#[test]
fn connected_socket_filters_and_truncates() {
    let pair = Pair::new();
    let server = pair.b.udp_bind(6000).unwrap();
    let stranger = pair.a.udp_bind(0).unwrap();
    let friend = pair.a.udp_bind(0).unwrap();
    assert_eq!(server.send(b"x"), Err(Errno::ENOTCONN));
    server
        .connect(SocketAddrV4::new(A_IP, friend.port()))
        .unwrap();
    stranger
        .send_to(b"ignored", SocketAddrV4::new(B_IP, 6000))
        .unwrap();
    friend
        .send_to(b"hello friend", SocketAddrV4::new(B_IP, 6000))
        .unwrap();
    let mut buf = [0; 5];
    assert_eq!(server.recv(&mut buf), Ok(5));
    assert_eq!(&buf, b"hello");
    server.send(b"back").unwrap();
    let mut buf = [0; 16];
    assert_eq!(friend.recv(&mut buf), Ok(4));
}

#[test]
fn nonblocking_timeout_and_poll() {
    let pair = Pair::new();
    let s = pair.b.udp_bind(7000).unwrap();
    let mut buf = [0; 16];
    s.set_nonblocking(true).unwrap();
    assert_eq!(s.recv_from(&mut buf).err(), Some(Errno::EAGAIN));
    s.set_nonblocking(false).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let start = Instant::now();
    assert_eq!(s.recv_from(&mut buf).err(), Some(Errno::EAGAIN));
    assert!(start.elapsed() >= Duration::from_millis(100));

    let mut fds = [PollEntry::new(s.id(), PollEvents::IN | PollEvents::OUT)];
    assert_eq!(pair.b.poll_sockets(&mut fds, None), Ok(1));
    assert_eq!(fds[0].revents, PollEvents::OUT);
    let c = pair.a.udp_bind(0).unwrap();
    c.send_to(b"x", SocketAddrV4::new(B_IP, 7000)).unwrap();
    let mut fds = [PollEntry::new(s.id(), PollEvents::IN)];
    assert_eq!(
        pair.b.poll_sockets(&mut fds, Some(Duration::from_secs(5))),
        Ok(1)
    );
    assert_eq!(fds[0].revents, PollEvents::IN);
}

#[test]
fn ports_and_errors() {
    let pair = Pair::new();
    let s = pair.b.udp_bind(8000).unwrap();
    assert_eq!(pair.b.udp_bind(8000).err(), Some(Errno::EADDRINUSE));
    // TCP and UDP port spaces are separate.
    #[cfg(feature = "tcp")]
    let _l = pair.b.tcp_listen(8000, 1).unwrap();
    let huge = vec![0; 128 * 1024];
    assert_eq!(
        s.send_to(&huge, SocketAddrV4::new(A_IP, 9)),
        Err(Errno::EINVAL)
    );
    let before = pair.b.socket_count();
    drop(s);
    assert_eq!(pair.b.socket_count(), before - 1);
    assert!(pair.b.udp_bind(8000).is_ok());
}
