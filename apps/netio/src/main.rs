//! `netio`: TCP throughput for one message size at a time, like the seed's
//! netio.
//!
//! # Modes
//!
//! - `netio [PORT] [--connections N]`: server on `PORT` (default 18767),
//!   one connection at a time, each driven by the client's header (below);
//!   ends with status 0 after `N` connections, runs forever without.
//!   Prints `netio: listening on ADDR:PORT` when ready.
//! - `netio connect IP:PORT [--total BYTES] [--sizes S1,S2,...]`: client,
//!   for guest→host connections (user-mode networking reaches the host's
//!   127.0.0.1 as 10.0.5.1). For each size (default 1,64,1024,8192,32768)
//!   it sends `BYTES` (default 256 KiB) to the server, then receives as
//!   much, and prints one line per run:
//!   `netio: send size S total T us U` and `netio: recv size S total T us U`.
//!
//! # Protocol (one run per connection)
//!
//! The client opens a connection and sends a 20-byte header:
//!
//! | bytes | content |
//! | --- | --- |
//! | 0..4 | `NTIO` |
//! | 4 | direction: 0 = the server receives, 1 = the server sends |
//! | 5..8 | zero |
//! | 8..12 | message size, u32 little-endian, 1..=65536 |
//! | 12..20 | total bytes, u64 little-endian |
//!
//! Direction 0: the client sends `total` bytes; the server reads them in
//! calls of exactly `size` bytes (the last call asks for what is left), then
//! answers with 8 bytes, the count it received (u64 LE). The client's time
//! runs from the header to that answer.
//!
//! Direction 1: the server writes `total` bytes in calls of `size` bytes
//! (the last one shorter); byte `k` of each call is `k % 251`. After the
//! last byte the client answers with 8 bytes, the count it received. The
//! client's time runs from the header to the last byte.
//!
//! Either side closes after the answer. A malformed header closes the
//! connection without an answer and makes the server's final status 1.
#![no_std]
#![no_main]

extern crate alloc;

use alloc::vec::Vec;
use core::time::Duration;

use hermit::net::{self, Errno, Shutdown, SocketAddrV4, TcpStream};
use hermit::time::Instant;
use hermit::{eprintln, println};

hermit::entry!(main);

/// Header magic.
const MAGIC: &[u8; 4] = b"NTIO";
/// Header length.
const HEADER: usize = 20;
/// Largest message size.
const MAX_SIZE: u32 = 64 * 1024;
/// Default server port.
const DEFAULT_PORT: u16 = 18767;

/// Which way the data flows, seen from the server.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Direction {
    /// The server receives.
    ToServer,
    /// The server sends.
    FromServer,
}

/// One run's parameters.
struct Header {
    direction: Direction,
    size: usize,
    total: u64,
}

/// Why a connection failed.
enum Failure {
    /// The peer broke the protocol.
    Protocol(&'static str),
    /// A socket call failed.
    Net(Errno),
}

impl From<Errno> for Failure {
    fn from(e: Errno) -> Self {
        Self::Net(e)
    }
}

impl core::fmt::Display for Failure {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Protocol(what) => write!(f, "protocol error: {what}"),
            Self::Net(e) => write!(f, "{e}"),
        }
    }
}

impl Header {
    fn encode(&self) -> [u8; HEADER] {
        let mut h = [0u8; HEADER];
        h[..4].copy_from_slice(MAGIC);
        h[4] = match self.direction {
            Direction::ToServer => 0,
            Direction::FromServer => 1,
        };
        // `size` is at most MAX_SIZE (checked by the callers).
        h[8..12].copy_from_slice(&(self.size as u32).to_le_bytes());
        h[12..20].copy_from_slice(&self.total.to_le_bytes());
        h
    }

    fn decode(h: &[u8; HEADER]) -> Result<Self, Failure> {
        if &h[..4] != MAGIC || h[5..8] != [0, 0, 0] {
            return Err(Failure::Protocol("bad header"));
        }
        let direction = match h[4] {
            0 => Direction::ToServer,
            1 => Direction::FromServer,
            _ => return Err(Failure::Protocol("bad direction")),
        };
        let mut size = [0u8; 4];
        size.copy_from_slice(&h[8..12]);
        let size = u32::from_le_bytes(size);
        if !(1..=MAX_SIZE).contains(&size) {
            return Err(Failure::Protocol("message size out of range"));
        }
        let mut total = [0u8; 8];
        total.copy_from_slice(&h[12..20]);
        Ok(Self {
            direction,
            size: size as usize,
            total: u64::from_le_bytes(total),
        })
    }
}

/// Reads exactly `buf.len()` bytes.
fn read_exact(stream: &TcpStream, buf: &mut [u8]) -> Result<(), Failure> {
    let mut at = 0;
    while at < buf.len() {
        let n = stream.read(&mut buf[at..])?;
        if n == 0 {
            return Err(Failure::Protocol("connection closed early"));
        }
        at += n;
    }
    Ok(())
}

/// Receives `total` bytes in calls of `size`; returns the count.
fn receive(stream: &TcpStream, buf: &mut [u8], size: usize, total: u64) -> Result<u64, Failure> {
    let mut got = 0u64;
    while got < total {
        let want = size.min(usize::try_from(total - got).unwrap_or(usize::MAX));
        let n = stream.read(&mut buf[..want])?;
        if n == 0 {
            break;
        }
        got += n as u64;
    }
    Ok(got)
}

/// Sends `total` bytes in calls of `size` (the pattern is in `buf`).
fn send(stream: &TcpStream, buf: &[u8], size: usize, total: u64) -> Result<(), Failure> {
    let mut left = total;
    while left > 0 {
        let n = size.min(usize::try_from(left).unwrap_or(usize::MAX));
        stream.write_all(&buf[..n])?;
        left -= n as u64;
    }
    Ok(())
}

/// A buffer of `MAX_SIZE` bytes holding the data pattern.
fn pattern() -> Vec<u8> {
    (0..MAX_SIZE as usize).map(|k| (k % 251) as u8).collect()
}

/// Serves one run on `stream`.
fn serve(stream: &TcpStream, buf: &mut [u8]) -> Result<(), Failure> {
    let mut h = [0u8; HEADER];
    read_exact(stream, &mut h)?;
    let header = Header::decode(&h)?;
    match header.direction {
        Direction::ToServer => {
            let got = receive(stream, buf, header.size, header.total)?;
            stream.write_all(&got.to_le_bytes())?;
        }
        Direction::FromServer => {
            send(stream, buf, header.size, header.total)?;
            let mut ack = [0u8; 8];
            read_exact(stream, &mut ack)?;
            if u64::from_le_bytes(ack) != header.total {
                return Err(Failure::Protocol("client received a different count"));
            }
        }
    }
    Ok(())
}

fn server(args: &[&str]) -> i32 {
    let mut port = DEFAULT_PORT;
    let mut limit = u64::MAX;
    let mut it = args.iter();
    while let Some(&arg) = it.next() {
        let parsed = match arg {
            "--connections" => it.next().and_then(|v| v.parse().ok()).map(|n| limit = n),
            _ => arg.parse().ok().map(|p| port = p),
        };
        if parsed.is_none() {
            eprintln!("netio: bad argument '{arg}'\n{USAGE}");
            return 2;
        }
    }
    let listener = match net::listen(port) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("netio: cannot listen on port {port}: {e}");
            return 1;
        }
    };
    let addr = net::local_addr().map_or_else(|| "?".into(), |a| alloc::format!("{a}"));
    println!("netio: listening on {addr}:{port}");
    let mut buf = pattern();
    let mut status = 0;
    let mut served = 0;
    while served < limit {
        let (stream, peer) = match listener.accept() {
            Ok(c) => c,
            Err(e) => {
                eprintln!("netio: accept failed: {e}");
                return 1;
            }
        };
        served += 1;
        let _ = stream.set_nodelay(true);
        if let Err(e) = serve(&stream, &mut buf) {
            eprintln!("netio: {peer}: {e}");
            status = 1;
        }
        // The run is over: wait (briefly) for the client to close first,
        // so the answer is not cut off by a reset.
        let _ = stream.shutdown(Shutdown::Write);
        let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
        while let Ok(n) = stream.read(&mut buf) {
            if n == 0 {
                break;
            }
        }
        // The pattern must be intact for the next run.
        if buf[..251] != pattern()[..251] {
            buf = pattern();
        }
    }
    status
}

/// One client run: returns the microseconds it took.
fn client_run(addr: SocketAddrV4, header: &Header, buf: &mut [u8]) -> Result<u64, Failure> {
    let stream = net::connect(addr, Some(Duration::from_secs(20)))?;
    let _ = stream.set_nodelay(true);
    let _ = stream.set_read_timeout(Some(Duration::from_secs(120)));
    let start = Instant::now();
    stream.write_all(&header.encode())?;
    // The client's direction is the opposite of the server's.
    match header.direction {
        Direction::ToServer => {
            send(&stream, buf, header.size, header.total)?;
            let mut ack = [0u8; 8];
            read_exact(&stream, &mut ack)?;
            if u64::from_le_bytes(ack) != header.total {
                return Err(Failure::Protocol("server received a different count"));
            }
        }
        Direction::FromServer => {
            let got = receive(&stream, buf, header.size, header.total)?;
            if got != header.total {
                return Err(Failure::Protocol("server sent fewer bytes"));
            }
            stream.write_all(&got.to_le_bytes())?;
        }
    }
    let us = Instant::now().duration_since(start).as_micros() as u64;
    let _ = stream.shutdown(Shutdown::Write);
    let mut rest = [0u8; 64];
    while let Ok(n) = stream.read(&mut rest) {
        if n == 0 {
            break;
        }
    }
    Ok(us)
}

fn client(args: &[&str]) -> i32 {
    let Some(addr) = args.first().and_then(|a| a.parse::<SocketAddrV4>().ok()) else {
        eprintln!("netio: connect needs IP:PORT\n{USAGE}");
        return 2;
    };
    let mut total: u64 = 256 * 1024;
    let mut sizes: Vec<usize> = alloc::vec![1, 64, 1024, 8192, 32768];
    let mut it = args[1..].iter();
    while let Some(&arg) = it.next() {
        let value = it.next().copied().unwrap_or("");
        let ok = match arg {
            "--total" => value.parse().map(|t| total = t).is_ok(),
            "--sizes" => {
                let parsed: Option<Vec<usize>> = value
                    .split(',')
                    .map(|s| {
                        s.parse()
                            .ok()
                            .filter(|n| (1..=MAX_SIZE as usize).contains(n))
                    })
                    .collect();
                parsed.map(|s| sizes = s).is_some()
            }
            _ => false,
        };
        if !ok {
            eprintln!("netio: bad argument '{arg} {value}'\n{USAGE}");
            return 2;
        }
    }
    let mut buf = pattern();
    for &size in &sizes {
        for (direction, name) in [
            (Direction::ToServer, "send"),
            (Direction::FromServer, "recv"),
        ] {
            let header = Header {
                direction,
                size,
                total,
            };
            match client_run(addr, &header, &mut buf) {
                Ok(us) => println!("netio: {name} size {size} total {total} us {us}"),
                Err(e) => {
                    eprintln!("netio: {name} size {size} to {addr}: {e}");
                    return 1;
                }
            }
            if direction == Direction::FromServer {
                buf = pattern();
            }
        }
    }
    0
}

const USAGE: &str =
    "usage: netio [PORT] [--connections N] | netio connect IP:PORT [--total BYTES] [--sizes S,...]";

fn main() -> i32 {
    let args: Vec<&str> = hermit::env::args().skip(1).collect();
    match args.first() {
        Some(&"connect") => client(&args[1..]),
        _ => server(&args),
    }
}
