//! uhyve command line: placeholder.
fn main() {}
