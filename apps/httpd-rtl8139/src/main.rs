//! httpd for the RTL8139: the code of `apps/httpd`, built with the kernel's
//! `rtl8139` feature.
#![no_std]
#![no_main]

extern crate alloc;

#[path = "../../httpd/src/server.rs"]
mod server;

hermit::entry!(server::main);
