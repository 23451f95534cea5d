//! Links the loader as a fixed-address (non-PIE) executable with its own
//! linker script: the PVH entry runs in 32-bit mode with paging off and needs
//! absolute addresses, which a position-independent executable cannot hold.
//! The link arguments apply to this package's binary only.

fn main() {
    let dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    println!("cargo:rerun-if-changed=link.ld");
    println!("cargo:rustc-link-arg-bins=--no-pie");
    println!("cargo:rustc-link-arg-bins=-T{dir}/link.ld");
    println!("cargo:rustc-link-arg-bins=--build-id=none");
}
