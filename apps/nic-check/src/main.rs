//! nic-check (virtio-net): see `check.rs`.
#![no_std]
#![no_main]

mod check;

hermit::entry!(check::main);
