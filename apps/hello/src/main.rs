//! Hello.
#![no_std]
#![no_main]

fn main() {}
hermit::entry!(main);
