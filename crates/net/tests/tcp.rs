//! TCP over two stacks on an in-memory wire.

#![cfg(feature = "tcp")]

mod common;

use std::thread;
use std::time::{Duration, Instant};

use common::{A_IP, B_IP, Faults, Pair, checksum, eventually, pattern};
use hermit_net::{
    Config, Errno, PollEntry, PollEvents, Shutdown, SocketAddrV4, TcpListener, TcpStream,
};

fn echo_server(listener: TcpListener, connections: usize) -> thread::JoinHandle<()> {
    thread::spawn(move || {
        let mut workers = Vec::new();
        for _ in 0..connections {
            let (stream, _) = listener.accept().expect("accept");
            workers.push(thread::spawn(move || {
                let mut buf = vec![0; 16 * 1024];
                loop {
                    let n = stream.read(&mut buf).expect("server read");
                    if n == 0 {
                        break;
                    }
                    stream.write_all(&buf[..n]).expect("server write");
                }
            }));
        }
        for w in workers {
            w.join().unwrap();
        }
    })
}

/// Sends `data` through an echo server and checks what comes back.
fn echo(pair: &Pair, port: u16, data: Vec<u8>) {
    let stream = std::sync::Arc::new(
        pair.a
            .tcp_connect(SocketAddrV4::new(B_IP, port), None)
            .expect("connect"),
    );
    let writer = {
        let stream = stream.clone();
        let data = data.clone();
        thread::spawn(move || {
            for chunk in data.chunks(10_000) {
                stream.write_all(chunk).expect("client write");
            }
            stream.shutdown(Shutdown::Write).expect("shutdown");
        })
    };
    let mut back = Vec::with_capacity(data.len());
    let mut buf = vec![0; 32 * 1024];
    loop {
        let n = stream.read(&mut buf).expect("client read");
        if n == 0 {
            break;
        }
        back.extend_from_slice(&buf[..n]);
    }
    writer.join().unwrap();
    assert_eq!(back.len(), data.len());
    assert_eq!(checksum(&back), checksum(&data));
}

#[test]
fn echo_a_few_megabytes() {
    let pair = Pair::new();
    let listener = pair.b.tcp_listen(7, 4).unwrap();
    let server = echo_server(listener, 1);
    let data = pattern(4 << 20, 1);
    let start = Instant::now();
    echo(&pair, 7, data);
    println!(
        "echoed 4 MiB in {:?} ({:.1} MB/s each way)",
        start.elapsed(),
        4.0 * 1.048_576 / start.elapsed().as_secs_f64()
    );
    server.join().unwrap();
}

#[test]
fn lossy_wire_still_delivers() {
    let pair = Pair::with(
        Faults {
            drop_per_mille: 20,
            swap_per_mille: 20,
        },
        Config::default(),
    );
    let listener = pair.b.tcp_listen(7, 1).unwrap();
    let server = echo_server(listener, 1);
    echo(&pair, 7, pattern(512 * 1024, 2));
    server.join().unwrap();
}

#[test]
fn two_hundred_connections_on_one_listener() {
    const N: usize = 200;
    let pair = Pair::new();
    let listener = pair.b.tcp_listen(80, 16).unwrap();
    let server = echo_server(listener, N);
    let clients: Vec<_> = (0..N)
        .map(|i| {
            let a = pair.a.clone();
            thread::spawn(move || {
                let stream = a
                    .tcp_connect(SocketAddrV4::new(B_IP, 80), Some(Duration::from_secs(60)))
                    .unwrap_or_else(|e| panic!("connect {i}: {e}"));
                let data = pattern(1000 + i, i as u8);
                stream.write_all(&data).unwrap();
                stream.shutdown(Shutdown::Write).unwrap();
                let mut back = Vec::new();
                let mut buf = [0; 4096];
                loop {
                    let n = stream.read(&mut buf).unwrap();
                    if n == 0 {
                        break;
                    }
                    back.extend_from_slice(&buf[..n]);
                }
                assert_eq!(back, data, "connection {i}");
            })
        })
        .collect();
    for c in clients {
        c.join().unwrap();
    }
    server.join().unwrap();
}

#[test]
fn connect_to_closed_port_is_refused() {
    let pair = Pair::new();
    let r = pair.a.tcp_connect(SocketAddrV4::new(B_IP, 9), None);
    assert_eq!(r.err(), Some(Errno::ECONNREFUSED));
}

#[test]
fn connect_to_silent_peer_times_out() {
    let pair = Pair::new();
    let start = Instant::now();
    let r = pair.a.tcp_connect(
        SocketAddrV4::new(hermit_net::Ipv4Addr::new(10, 0, 5, 99), 80),
        Some(Duration::from_millis(300)),
    );
    assert_eq!(r.err(), Some(Errno::ETIMEDOUT));
    assert!(start.elapsed() >= Duration::from_millis(300));
}

fn connected(pair: &Pair, port: u16) -> (TcpListener, TcpStream, TcpStream) {
    let listener = pair.b.tcp_listen(port, 1).unwrap();
    let client = pair
        .a
        .tcp_connect(SocketAddrV4::new(B_IP, port), None)
        .unwrap();
    let (server, peer) = listener.accept().unwrap();
    assert_eq!(peer, client.local_addr().unwrap());
    assert_eq!(client.peer_addr().unwrap(), SocketAddrV4::new(B_IP, port));
    assert_eq!(*server.peer_addr().unwrap().ip(), A_IP);
    (listener, client, server)
}

#[test]
fn nonblocking_read_and_accept_say_eagain() {
    let pair = Pair::new();
    let (listener, client, server) = connected(&pair, 1000);
    client.set_nonblocking(true).unwrap();
    let mut buf = [0; 8];
    assert_eq!(client.read(&mut buf), Err(Errno::EAGAIN));
    listener.set_nonblocking(true).unwrap();
    assert_eq!(listener.accept().err(), Some(Errno::EAGAIN));
    server.write_all(b"hi").unwrap();
    assert!(eventually(Duration::from_secs(5), || client
        .read(&mut buf)
        .is_ok_and(|n| n == 2)));
    assert_eq!(&buf[..2], b"hi");
}

#[test]
fn read_timeout_says_eagain() {
    let pair = Pair::new();
    let (_listener, client, _server) = connected(&pair, 1001);
    client
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let start = Instant::now();
    let mut buf = [0; 8];
    assert_eq!(client.read(&mut buf), Err(Errno::EAGAIN));
    assert!(start.elapsed() >= Duration::from_millis(200));
}

#[test]
fn shutdown_write_gives_peer_eof_and_keeps_reading() {
    let pair = Pair::new();
    let (_listener, client, server) = connected(&pair, 1002);
    client.write_all(b"last words").unwrap();
    client.shutdown(Shutdown::Write).unwrap();
    assert_eq!(client.write(b"more"), Err(Errno::EPIPE));
    let mut buf = [0; 32];
    let mut got = Vec::new();
    loop {
        let n = server.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        got.extend_from_slice(&buf[..n]);
    }
    assert_eq!(got, b"last words");
    // The other half still works.
    server.write_all(b"reply").unwrap();
    let n = client.read(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"reply");
}

#[test]
fn write_after_peer_close_is_epipe() {
    let pair = Pair::new();
    let (_listener, client, server) = connected(&pair, 1003);
    drop(server);
    let mut buf = [0; 8];
    assert_eq!(client.read(&mut buf), Ok(0));
    // The first write may still be accepted (the peer answers it with RST).
    let failed = eventually(Duration::from_secs(5), || {
        client.write(b"x") == Err(Errno::EPIPE)
    });
    assert!(failed, "writes kept succeeding after the peer closed");
}

#[test]
fn drop_with_unread_data_resets() {
    let pair = Pair::new();
    let (_listener, client, server) = connected(&pair, 1004);
    client.write_all(b"unread").unwrap();
    assert!(eventually(Duration::from_secs(5), || {
        let mut p = [PollEntry::new(server.id(), PollEvents::IN)];
        pair.b.poll_sockets(&mut p, Some(Duration::ZERO)) == Ok(1)
    }));
    drop(server);
    let mut buf = [0; 8];
    assert_eq!(client.read(&mut buf), Err(Errno::ECONNRESET));
}

#[test]
fn dropped_sockets_leave_the_set() {
    let pair = Pair::new();
    let base_a = pair.a.socket_count();
    let base_b = pair.b.socket_count();
    {
        let (_listener, client, server) = connected(&pair, 1005);
        client.write_all(b"ping").unwrap();
        let mut buf = [0; 4];
        let mut got = 0;
        while got < 4 {
            got += server.read(&mut buf[got..]).unwrap();
        }
        assert!(pair.a.socket_count() > base_a);
        drop(client);
        drop(server);
    }
    assert!(
        eventually(Duration::from_secs(10), || pair.a.socket_count() == base_a
            && pair.b.socket_count() == base_b),
        "sockets left: a {} (base {base_a}), b {} (base {base_b})",
        pair.a.socket_count(),
        pair.b.socket_count()
    );
    // The port is free again.
    drop(pair.b.tcp_listen(1005, 1).unwrap());
}

#[test]
fn poll_sockets_reports_readiness() {
    let pair = Pair::new();
    let listener = pair.b.tcp_listen(1006, 2).unwrap();
    let mut fds = [PollEntry::new(listener.id(), PollEvents::IN)];
    assert_eq!(
        pair.b
            .poll_sockets(&mut fds, Some(Duration::from_millis(50))),
        Ok(0)
    );
    let client = pair
        .a
        .tcp_connect(SocketAddrV4::new(B_IP, 1006), None)
        .unwrap();
    assert_eq!(
        pair.b.poll_sockets(&mut fds, Some(Duration::from_secs(5))),
        Ok(1)
    );
    assert_eq!(fds[0].revents, PollEvents::IN);
    let (server, _) = listener.accept().unwrap();

    let mut fds = [
        PollEntry::new(server.id(), PollEvents::IN | PollEvents::OUT),
        PollEntry::new(listener.id(), PollEvents::IN),
    ];
    assert_eq!(pair.b.poll_sockets(&mut fds, None), Ok(1));
    assert_eq!(fds[0].revents, PollEvents::OUT);
    assert!(fds[1].revents.is_empty());

    client.write_all(b"data").unwrap();
    let mut fds = [PollEntry::new(server.id(), PollEvents::IN)];
    assert_eq!(pair.b.poll_sockets(&mut fds, None), Ok(1));
    assert_eq!(fds[0].revents, PollEvents::IN);

    let mut fds = [PollEntry::new(hermit_net::SocketId(999), PollEvents::IN)];
    assert_eq!(pair.b.poll_sockets(&mut fds, None), Ok(1));
    assert_eq!(fds[0].revents, PollEvents::NVAL);
}

#[test]
fn ports_and_limits() {
    let pair = Pair::with(
        Faults::default(),
        Config {
            max_sockets: 4,
            ..Config::default()
        },
    );
    let l = pair.b.tcp_listen(2000, 2).unwrap();
    assert_eq!(pair.b.tcp_listen(2000, 1).err(), Some(Errno::EADDRINUSE));
    let _l2 = pair.b.tcp_listen(2001, 2).unwrap();
    assert_eq!(pair.b.tcp_listen(2002, 1).err(), Some(Errno::EMFILE));
    drop(l);
    assert!(pair.b.tcp_listen(2000, 1).is_ok());
}

#[test]
fn nonblocking_connect_reports_through_poll() {
    let pair = Pair::new();
    let _listener = pair.b.tcp_listen(3000, 1).unwrap();
    let ok = pair
        .a
        .tcp_connect_start(SocketAddrV4::new(B_IP, 3000))
        .unwrap();
    let refused = pair
        .a
        .tcp_connect_start(SocketAddrV4::new(B_IP, 3001))
        .unwrap();
    let mut fds = [
        PollEntry::new(ok.id(), PollEvents::OUT),
        PollEntry::new(refused.id(), PollEvents::OUT),
    ];
    assert!(eventually(Duration::from_secs(5), || {
        pair.a.poll_sockets(&mut fds, Some(Duration::from_secs(1))) == Ok(2)
    }));
    assert_eq!(fds[0].revents, PollEvents::OUT);
    assert!(fds[1].revents.contains(PollEvents::ERR | PollEvents::HUP));
    assert_eq!(ok.take_error(), Ok(None));
    assert_eq!(refused.take_error(), Ok(Some(Errno::ECONNREFUSED)));
}

/// Reads until end of stream; returns what arrived.
fn read_to_end(stream: &TcpStream) -> Vec<u8> {
    let mut buf = vec![0; 16 * 1024];
    let mut got = Vec::new();
    loop {
        let n = stream.read(&mut buf).unwrap();
        if n == 0 {
            return got;
        }
        got.extend_from_slice(&buf[..n]);
    }
}

/// At exit, what the application wrote reaches the peer, on a stream it
/// dropped and on one it left open: the exit flush waits until every byte
/// and FIN is acknowledged, here until the peer's application starts
/// reading and opens its receive window again.
#[test]
fn flush_for_exit_delivers_queued_data() {
    let pair = Pair::new();
    let (_listener, dropped, dropped_peer) = connected(&pair, 1010);
    let (_listener2, open, open_peer) = connected(&pair, 1011);
    // Fill the peer's receive buffer and our send buffer: nonblocking
    // writes until they say EAGAIN.
    let mut sent = [Vec::new(), Vec::new()];
    for (stream, sent) in [&dropped, &open].into_iter().zip(&mut sent) {
        stream.set_nonblocking(true).unwrap();
        let chunk = pattern(8 * 1024, sent.len() as u8);
        let deadline = Instant::now() + Duration::from_secs(10);
        // Full once the peer's window closed and our buffer is full too:
        // EAGAIN even after a pause.
        let mut again = 0;
        while again < 2 {
            match stream.write(&chunk) {
                Ok(n) => {
                    sent.extend_from_slice(&chunk[..n]);
                    again = 0;
                }
                Err(Errno::EAGAIN) if Instant::now() < deadline => {
                    again += 1;
                    thread::sleep(Duration::from_millis(20));
                }
                Err(e) => panic!("write: {e}"),
            }
        }
    }
    drop(dropped);
    // The peer's application reads only after a while.
    let readers: Vec<_> = [dropped_peer, open_peer]
        .into_iter()
        .map(|peer| {
            thread::spawn(move || {
                thread::sleep(Duration::from_millis(300));
                peer.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
                read_to_end(&peer)
            })
        })
        .collect();
    let start = Instant::now();
    assert_eq!(pair.a.flush_for_exit(Duration::from_secs(30)), 0);
    assert!(
        start.elapsed() >= Duration::from_millis(250),
        "{:?}",
        start.elapsed()
    );
    // As if the VM had ended: nothing more leaves `a`. Everything was
    // acknowledged by `b`, so it is all there to read, then end of stream.
    pair.a_to_b.cut();
    for (reader, sent) in readers.into_iter().zip(&sent) {
        let got = reader.join().unwrap();
        assert_eq!(got.len(), sent.len());
        assert_eq!(checksum(&got), checksum(sent));
    }
    // The open stream can send nothing more.
    assert_eq!(open.write(b"late"), Err(Errno::EPIPE));
}

/// A peer that never acknowledges cannot hold the exit forever.
#[test]
fn flush_for_exit_gives_up_at_its_timeout() {
    let pair = Pair::new();
    let (_listener, client, _server) = connected(&pair, 1012);
    pair.a_to_b.cut();
    client.write_all(b"into the void").unwrap();
    let start = Instant::now();
    assert_eq!(pair.a.flush_for_exit(Duration::from_millis(300)), 1);
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(300) && took < Duration::from_secs(5),
        "{took:?}"
    );
}
