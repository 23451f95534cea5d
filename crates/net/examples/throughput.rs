//! Throughput and latency of two stacks on the in-memory wire (figures
//! only, nothing asserted): `cargo run --release -p hermit-net --example throughput`.

#[path = "../tests/common/mod.rs"]
mod common;

use std::thread;
use std::time::Instant;

use common::{B_IP, Pair};
use hermit_net::SocketAddrV4;

fn main() {
    let pair = Pair::new();
    let listener = pair.b.tcp_listen(5001, 1).expect("listen");
    const TOTAL: usize = 256 << 20;
    let sink = thread::spawn(move || {
        let (stream, _) = listener.accept().expect("accept");
        let mut buf = vec![0; 64 * 1024];
        let mut got = 0;
        loop {
            let n = stream.read(&mut buf).expect("read");
            if n == 0 {
                break;
            }
            got += n;
        }
        got
    });
    let stream = pair
        .a
        .tcp_connect(SocketAddrV4::new(B_IP, 5001), None)
        .expect("connect");
    let chunk = vec![0x5a; 64 * 1024];
    let start = Instant::now();
    let mut sent = 0;
    while sent < TOTAL {
        stream.write_all(&chunk).expect("write");
        sent += chunk.len();
    }
    drop(stream);
    let got = sink.join().expect("sink");
    let secs = start.elapsed().as_secs_f64();
    let frames = pair
        .a_to_b
        .frames
        .load(std::sync::atomic::Ordering::Relaxed);
    println!(
        "tcp bulk: {} MiB in {secs:.2} s = {:.0} MB/s ({frames} frames a->b)",
        got >> 20,
        got as f64 / secs / 1e6
    );

    // Request/response latency: one byte each way, Nagle off.
    let listener = pair.b.tcp_listen(5002, 1).expect("listen");
    const ROUNDS: usize = 5000;
    let echo = thread::spawn(move || {
        let (s, _) = listener.accept().expect("accept");
        s.set_nodelay(true).expect("nodelay");
        let mut b = [0; 1];
        while s.read(&mut b).expect("read") == 1 {
            s.write_all(&b).expect("write");
        }
    });
    let s = pair
        .a
        .tcp_connect(SocketAddrV4::new(B_IP, 5002), None)
        .expect("connect");
    s.set_nodelay(true).expect("nodelay");
    let mut b = [7; 1];
    let start = Instant::now();
    for _ in 0..ROUNDS {
        s.write_all(&b).expect("write");
        assert_eq!(s.read(&mut b).expect("read"), 1);
    }
    let per = start.elapsed() / ROUNDS as u32;
    drop(s);
    echo.join().expect("echo");
    println!("tcp 1-byte round trip: {per:?}");

    let server = pair.b.udp_bind(5003).expect("bind");
    let client = pair.a.udp_bind(0).expect("bind");
    let start = Instant::now();
    let mut buf = [0; 64];
    for _ in 0..ROUNDS {
        client
            .send_to(b"ping", SocketAddrV4::new(B_IP, 5003))
            .expect("send");
        let (n, from) = server.recv_from(&mut buf).expect("recv");
        server.send_to(&buf[..n], from).expect("send");
        client.recv_from(&mut buf).expect("recv");
    }
    println!("udp round trip: {:?}", start.elapsed() / ROUNDS as u32);
}
