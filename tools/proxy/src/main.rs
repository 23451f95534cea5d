//! `proxy IMAGE [ARGS...]`: runs a hermit image like a Linux program.

fn main() {
    eprintln!("proxy: not implemented yet");
    std::process::exit(2);
}
