//! Panics on purpose, to show that a panic's message reaches stderr and the
//! host sees a non-zero exit status. `panic page-fault` instead touches an
//! unmapped address, and `panic null` reads through a null pointer, to show
//! the CPU-exception diagnostic; `panic stack-overflow` overflows a
//! thread's stack into its guard page.
#![no_std]
#![no_main]

hermit::entry!(main);

fn main() {
    match hermit::env::args().nth(1) {
        Some("page-fault") => {
            // An address far above any RAM the guest has: the kernel does not map it.
            let p = 0x7fff_dead_b000 as *const u64;
            // SAFETY: not safe at all — this read is the point of the demo;
            // the kernel turns the fault into a diagnostic and exit status.
            let v = unsafe { core::ptr::read_volatile(p) };
            hermit::println!("read {v} from an unmapped address?!");
        }
        Some("null") => {
            let p = core::hint::black_box(core::ptr::null::<u64>());
            // SAFETY: not safe at all — the null page is unmapped and this
            // read must fault.
            let v = unsafe { core::ptr::read_volatile(p) };
            hermit::println!("read {v} through a null pointer?!");
        }
        Some("stack-overflow") => {
            // A thread with a 16 KiB stack recurses without end: it must hit
            // the guard page below its stack, not scribble over memory.
            let t = hermit::thread::Builder::new()
                .stack_size(16 * 1024)
                .spawn(|| recurse(0));
            match t {
                Ok(t) => hermit::println!("recursion returned {}?!", t.join()),
                Err(e) => hermit::println!("spawn failed: {e}"),
            }
        }
        _ => panic!("this app panics on purpose"),
    }
}

/// Recurses forever; each frame keeps a buffer live so the stack grows.
#[allow(unconditional_recursion, reason = "the overflow is the point")]
fn recurse(depth: u64) -> u64 {
    let buf = core::hint::black_box([depth; 32]);
    core::hint::black_box(recurse(depth + 1)) + buf[0]
}
