//! `cat [FILE...]`: writes each file (or standard input when there is none,
//! or for `-`) to standard output. A file that cannot be read is reported
//! on stderr and makes the exit status 1; the others are still printed.
#![no_std]
#![no_main]

use hermit::fs::{self, File};

hermit::entry!(main);

fn copy_out(read: impl Fn(&mut [u8]) -> fs::Result<usize>) -> fs::Result<()> {
    let mut buf = [0u8; 16 * 1024];
    loop {
        let n = read(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
        hermit::console::write(hermit::console::Stream::Stdout, &buf[..n]);
    }
}

fn main() -> i32 {
    let mut status = 0;
    let names: alloc::vec::Vec<&str> = hermit::env::args().skip(1).collect();
    let names = if names.is_empty() {
        alloc::vec!["-"]
    } else {
        names
    };
    for name in names {
        let result = if name == "-" {
            copy_out(|b| fs::stdin().read(b))
        } else {
            File::open(name).and_then(|f| copy_out(|b| f.read(b)))
        };
        if let Err(e) = result {
            hermit::eprintln!("cat: {name}: {e}");
            status = 1;
        }
    }
    status
}

extern crate alloc;
