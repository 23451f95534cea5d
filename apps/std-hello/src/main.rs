//! A plain Rust std program that runs unmodified on hermit and on Linux:
//! prints a greeting, its arguments and the environment variables starting
//! with `STD_HELLO_`, and exits with the status given in `STD_HELLO_EXIT`
//! (0 by default). With first argument `cat` it then copies its standard
//! input to standard output; with `panic` it panics; with `sys-check` (on
//! hermit only) it checks the kernel's `sys_*` argument checking.

// On hermit the kernel is a library this binary links.
#[cfg(target_os = "hermit")]
use hermit as _;

#[cfg(target_os = "hermit")]
mod sys_check;

use std::collections::HashMap;
use std::io::Write as _;

fn main() {
    println!("Hello from Rust std!");
    let args: Vec<String> = std::env::args().collect();
    println!("argc = {}", args.len());
    for (i, arg) in args.iter().enumerate().skip(1) {
        println!("argv[{i}] = {arg}");
    }
    let mut vars: Vec<(String, String)> = std::env::vars()
        .filter(|(k, _)| k.starts_with("STD_HELLO_"))
        .collect();
    vars.sort();
    for (k, v) in &vars {
        println!("env {k} = {v}");
    }
    // A HashMap needs random keys (sys_read_entropy). Floats are soft-float
    // on hermit (see hermit/targets/): `sqrt` and friends are slow there.
    let mut words: HashMap<&str, usize> = HashMap::new();
    for w in "the quick brown fox jumps over the lazy dog the end".split(' ') {
        *words.entry(w).or_default() += 1;
    }
    println!("'the' occurs {} times", words["the"]);
    println!("two pi is about {:.5}", std::f64::consts::PI * 2.0);
    // Small on purpose: with HERMIT_NATIVE=0 this machine's KVM emulates
    // this code instruction by instruction.
    let boxed: Vec<Box<[u8]>> = (0..20)
        .map(|i| vec![i as u8; 64].into_boxed_slice())
        .collect();
    let sum: usize = boxed
        .iter()
        .map(|b| b.iter().map(|&x| usize::from(x)).sum::<usize>())
        .sum();
    println!("heap check sum = {sum}");
    eprintln!("this goes to stderr");
    match args.get(1).map(String::as_str) {
        Some("cat") => {
            let n = std::io::copy(&mut std::io::stdin().lock(), &mut std::io::stdout().lock())
                .expect("copy stdin to stdout");
            println!("copied {n} bytes");
        }
        Some("panic") => panic!("std-hello was asked to panic"),
        #[cfg(target_os = "hermit")]
        Some("sys-check") if sys_check::run() != 0 => std::process::exit(1),
        _ => {}
    }
    std::io::stdout().flush().expect("flush stdout");
    let status = std::env::var("STD_HELLO_EXIT")
        .ok()
        .and_then(|s| s.parse::<i32>().ok())
        .unwrap_or(0);
    std::process::exit(status);
}
