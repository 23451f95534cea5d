//! TCP echo over mmnif, the isles' shared-memory network (kernel feature
//! `mmnif`; run as an isle: `HERMIT_ISLE=N proxy mmnif-echo ...`, with
//! `isles mmnif` bridging to Linux).
//!
//! - `mmnif-echo [PORT] [CONNECTIONS]`: echo server on the isle's address
//!   (192.168.28.N+2), port `PORT` (default 7); ends with status 0 after
//!   `CONNECTIONS` connections (default 1), each echoed until it closes.
//! - `mmnif-echo connect IP PORT [ROUNDS]`: connects to `IP:PORT`, sends a
//!   message `ROUNDS` times (default 10), checks each echo and prints the
//!   round-trip times; status 0 when every echo matched.
//!
//! Failures print one line on stderr and end with status 1 (bad arguments:
//! 2).
#![no_std]
#![no_main]

extern crate alloc;

use alloc::vec::Vec;
use core::time::Duration;

use hermit::net::{self, Errno, Ipv4Addr, SocketAddrV4, TcpStream};
use hermit::time::Instant;
use hermit::{eprintln, println};

hermit::entry!(main);

/// What the client sends each round (the round number is appended).
const MESSAGE: &[u8] = b"hello over mmnif, round ";

fn parse<T: core::str::FromStr>(what: &str, arg: Option<&str>, default: T) -> Result<T, i32> {
    match arg {
        None => Ok(default),
        Some(s) => s.parse().map_err(|_| {
            eprintln!("mmnif-echo: invalid {what} '{s}'");
            2
        }),
    }
}

/// Echoes until the peer closes.
fn echo(stream: &TcpStream) -> Result<u64, Errno> {
    let mut buf = alloc::vec![0u8; 16 * 1024];
    let mut total = 0;
    loop {
        let n = stream.read(&mut buf)?;
        if n == 0 {
            return Ok(total);
        }
        stream.write_all(&buf[..n])?;
        total += n as u64;
    }
}

fn serve(port: u16, connections: u64) -> Result<(), i32> {
    let listener = net::listen(port).map_err(|e| {
        eprintln!("mmnif-echo: cannot listen on port {port}: {e}");
        1
    })?;
    let addr = net::local_addr().map_or_else(|| "?".into(), |a| alloc::format!("{a}"));
    println!("mmnif-echo: listening on {addr}:{port}");
    for _ in 0..connections {
        let (stream, peer) = listener.accept().map_err(|e| {
            eprintln!("mmnif-echo: accept failed: {e}");
            1
        })?;
        let bytes = echo(&stream).map_err(|e| {
            eprintln!("mmnif-echo: {peer}: {e}");
            1
        })?;
        println!("mmnif-echo: {peer}: echoed {bytes} bytes");
    }
    Ok(())
}

/// Reads exactly `buf.len()` bytes.
fn read_exact(stream: &TcpStream, buf: &mut [u8]) -> Result<(), Errno> {
    let mut got = 0;
    while got < buf.len() {
        let n = stream.read(&mut buf[got..])?;
        if n == 0 {
            return Err(Errno::ECONNRESET);
        }
        got += n;
    }
    Ok(())
}

fn client(addr: SocketAddrV4, rounds: u32) -> Result<(), i32> {
    let fail = |what: &str, e: Errno| {
        eprintln!("mmnif-echo: {what} {addr}: {e}");
        1
    };
    let start = Instant::now();
    let stream = net::connect(addr, Some(Duration::from_secs(20)))
        .map_err(|e| fail("cannot connect to", e))?;
    let _ = stream.set_nodelay(true);
    println!(
        "mmnif-echo: connected to {addr} in {} us",
        Instant::now().duration_since(start).as_micros()
    );
    let mut times = Vec::new();
    for round in 0..rounds {
        let mut sent = Vec::from(MESSAGE);
        sent.extend_from_slice(alloc::format!("{round}\n").as_bytes());
        let mut back = alloc::vec![0u8; sent.len()];
        let t = Instant::now();
        stream
            .write_all(&sent)
            .map_err(|e| fail("cannot send to", e))?;
        read_exact(&stream, &mut back).map_err(|e| fail("no echo from", e))?;
        times.push(Instant::now().duration_since(t).as_micros());
        if back != sent {
            eprintln!("mmnif-echo: round {round}: the echo differs from what was sent");
            return Err(1);
        }
    }
    times.sort_unstable();
    let median = times.get(times.len() / 2).copied().unwrap_or(0);
    let min = times.first().copied().unwrap_or(0);
    let max = times.last().copied().unwrap_or(0);
    println!(
        "mmnif-echo: {rounds} echoes ok; round trip min {min} us, median {median} us, max {max} us"
    );
    Ok(())
}

fn run(args: &[&str]) -> Result<(), i32> {
    match args {
        ["connect", ip, port, rest @ ..] => {
            let ip: Ipv4Addr = parse("address", Some(ip), Ipv4Addr::UNSPECIFIED)?;
            let port: u16 = parse("port", Some(port), 0)?;
            let rounds: u32 = parse("round count", rest.first().copied(), 10)?;
            client(SocketAddrV4::new(ip, port), rounds)
        }
        ["connect", ..] => {
            eprintln!("mmnif-echo: usage: mmnif-echo connect IP PORT [ROUNDS]");
            Err(2)
        }
        _ => {
            let port = parse::<u16>("port", args.first().copied(), 7)?;
            let connections = parse::<u64>("connection count", args.get(1).copied(), 1)?;
            serve(port, connections)
        }
    }
}

fn main() -> i32 {
    let args: Vec<&str> = hermit::env::args().skip(1).collect();
    match run(&args) {
        Ok(()) => 0,
        Err(status) => status,
    }
}
