//! `httpd [PORT] [--dir DIR] [--requests N] [--workers W]
//! [--backlog B] [--log]`: a small
//! web server (GET and HEAD of a built-in page and of files under `DIR`)
//! on the virtio-net card; see `server.rs` for the behaviour.
#![no_std]
#![no_main]

extern crate alloc;

mod server;

hermit::entry!(server::main);
