//! Hello from threads: starts two threads per online core, each prints its
//! id, and the main thread joins them (the seed's `thr_hello`).
#![no_std]
#![no_main]

extern crate alloc;

use alloc::vec::Vec;

use hermit::{println, thread};

hermit::entry!(main);

fn main() {
    let cores = thread::available_parallelism();
    let n = 2 * cores;
    println!(
        "main thread {} starts {n} threads on {cores} core(s)",
        thread::current_id()
    );
    let handles: Vec<_> = (0..n)
        .map(|i| {
            thread::Builder::new().core(i % cores).spawn(move || {
                println!(
                    "Hello from thread {i} on core {} (task {})",
                    thread::current_core(),
                    thread::current_id()
                );
                i
            })
        })
        .collect();
    let mut sum = 0;
    for h in handles {
        match h {
            Ok(h) => sum += h.join(),
            Err(e) => {
                println!("spawn failed: {e}");
                hermit::process::exit(1);
            }
        }
    }
    println!("joined {n} threads, sum of their results {sum}");
}
