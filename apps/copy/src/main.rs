//! `copy SRC DST`: copies file SRC to DST (created or truncated) in 1 MiB
//! pieces and prints `copied N bytes`. (No checksum in the guest: under a
//! software-emulated KVM every guest instruction is expensive; the host
//! checks the copy.)
#![no_std]
#![no_main]

extern crate alloc;

use alloc::vec;

use hermit::fs::File;

hermit::entry!(main);

fn main() -> i32 {
    let args: alloc::vec::Vec<&str> = hermit::env::args().collect();
    let [_, src, dst] = args[..] else {
        hermit::eprintln!("usage: copy SRC DST");
        return 2;
    };
    let run = || -> hermit::fs::Result<u64> {
        let from = File::open(src)?;
        let to = File::create(dst)?;
        let mut buf = vec![0u8; 1 << 20];
        let mut total = 0u64;
        loop {
            let n = from.read(&mut buf)?;
            if n == 0 {
                return Ok(total);
            }
            to.write_all(&buf[..n])?;
            total += n as u64;
        }
    };
    match run() {
        Ok(n) => {
            hermit::println!("copied {n} bytes");
            0
        }
        Err(e) => {
            hermit::eprintln!("copy: {src} -> {dst}: {e}");
            1
        }
    }
}
