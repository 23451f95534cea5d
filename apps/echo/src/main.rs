//! `echo [PORT] [CONNECTIONS]`: a TCP echo server on `PORT` (default 7).
//! Each connection gets its own thread and receives back every byte it
//! sends, until it closes its side. With `CONNECTIONS` the server ends
//! (status 0) once that many connections were served; without, it runs
//! until the VM is stopped. A connection that fails is reported on stderr
//! and makes the final status 1.
#![no_std]
#![no_main]

extern crate alloc;

use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, Ordering};

use hermit::net::{self, Errno, TcpStream};
use hermit::{eprintln, println};

hermit::entry!(main);

/// Set when a connection failed.
static FAILED: AtomicBool = AtomicBool::new(false);

/// Echoes until the peer closes; returns the bytes echoed.
fn serve(stream: &TcpStream) -> Result<u64, Errno> {
    let mut buf = alloc::vec![0u8; 32 * 1024];
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

fn parse<T: core::str::FromStr>(what: &str, arg: Option<&str>, default: T) -> Result<T, ()> {
    match arg {
        None => Ok(default),
        Some(s) => s.parse().map_err(|_| {
            eprintln!("echo: invalid {what} '{s}'");
        }),
    }
}

fn main() -> i32 {
    let args: Vec<&str> = hermit::env::args().skip(1).collect();
    let Ok(port) = parse::<u16>("port", args.first().copied(), 7) else {
        return 2;
    };
    let Ok(limit) = parse::<u64>("connection count", args.get(1).copied(), u64::MAX) else {
        return 2;
    };
    let listener = match net::listen(port) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("echo: cannot listen on port {port}: {e}");
            return 1;
        }
    };
    let addr = net::local_addr().map_or_else(|| "?".into(), |a| alloc::format!("{a}"));
    println!("echo: listening on {addr}:{port}");
    let mut workers = Vec::new();
    let mut served = 0;
    while served < limit {
        let (stream, peer) = match listener.accept() {
            Ok(c) => c,
            Err(e) => {
                eprintln!("echo: accept failed: {e}");
                return 1;
            }
        };
        served += 1;
        workers.push(hermit::thread::spawn(move || match serve(&stream) {
            Ok(_) => {}
            Err(e) => {
                eprintln!("echo: {peer}: {e}");
                FAILED.store(true, Ordering::Relaxed);
            }
        }));
        // Reap finished connections so a long run does not pile up handles.
        workers.retain(|w| !w.is_finished());
    }
    for w in workers {
        w.join();
    }
    i32::from(FAILED.load(Ordering::Relaxed))
}
