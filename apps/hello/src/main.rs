//! The classic first program: prints `Hello World!!!`, then its arguments
//! and environment (like the seed's `hello` and `argv_envp`).
#![no_std]
#![no_main]

use hermit::println;

hermit::entry!(main);

fn main() {
    println!("Hello World!!!");
    for (i, arg) in hermit::env::args().enumerate() {
        println!("argv[{i}] = {arg}");
    }
    for (i, entry) in hermit::env::entries().enumerate() {
        println!("envp[{i}] = {entry}");
    }
}
