//! Exercises the kernel heap: `heap-check [MiB]` allocates blocks of
//! doubling size up to MiB (default 8) and keeps them all alive, writes a
//! marker into every 4 KiB page of each (and its last byte), checks that no
//! block overwrote another, keeps a map of small allocations meanwhile,
//! frees everything and prints `heap ok`. Asking for more than the VM has
//! ends in the kernel's out-of-memory report (a panic, status 101).
//!
//! It touches one word per page rather than every byte: guest instructions
//! are expensive under software-virtualised KVM, and page coverage is what
//! tests the allocator.
#![no_std]
#![no_main]

extern crate alloc;

use alloc::boxed::Box;
use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::vec::Vec;
use core::mem::MaybeUninit;

hermit::entry!(main);

const STRIDE: usize = 4096;

fn marker(block: usize, offset: usize) -> u8 {
    (block * 31 + offset / STRIDE * 7 + 1) as u8
}

fn main() -> i32 {
    let mib: usize = match hermit::env::args().nth(1).map(str::parse) {
        None => 8,
        Some(Ok(n)) => n,
        Some(Err(_)) => {
            hermit::eprintln!("usage: heap-check [MiB]");
            return 2;
        }
    };
    let mut blocks: Vec<Box<[MaybeUninit<u8>]>> = Vec::new();
    let mut small = BTreeMap::new();
    let mut size = 4096usize;
    while size <= mib << 20 {
        // Uninitialised: filling every byte would cost more than the test.
        let mut block = Box::<[u8]>::new_uninit_slice(size);
        let n = blocks.len();
        for offset in (0..size).step_by(STRIDE).chain([size - 1]) {
            block[offset].write(marker(n, offset));
        }
        blocks.push(block);
        small.insert(n, String::from("x").repeat(n + 1));
        size *= 2;
    }
    for (n, block) in blocks.iter().enumerate() {
        let bad = (0..block.len())
            .step_by(STRIDE)
            .chain([block.len() - 1])
            // SAFETY: exactly these offsets were written above.
            .any(|offset| unsafe { block[offset].assume_init() } != marker(n, offset));
        if bad || small.get(&n).map(String::len) != Some(n + 1) {
            hermit::eprintln!("heap corruption in block {n} ({} bytes)", block.len());
            return 1;
        }
    }
    let largest = blocks.last().map_or(0, |b| b.len());
    hermit::println!(
        "heap ok: {} blocks, the largest {} KiB",
        blocks.len(),
        largest >> 10
    );
    0
}
