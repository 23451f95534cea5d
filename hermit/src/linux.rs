//! What an image does when Linux, not a hermit loader, starts it: it hands
//! itself to the proxy, so `./app ARGS` and `cargo run -p app` behave like
//! `proxy app ARGS`. (Cargo applies no target runner to packages with a
//! `forced-target`, cargo issue 10779, so `cargo run` executes the image
//! directly.) `_start` has applied the image's relocations before this runs.

/// Most arguments the hand-over passes on.
const MAX_ARGS: usize = 4096;

/// Raw Linux system call with up to three arguments.
///
/// # Safety
/// The call and its arguments must be valid for the Linux ABI.
unsafe fn syscall3(nr: usize, a: usize, b: usize, c: usize) -> isize {
    let ret: isize;
    // SAFETY: the caller upholds the system call's contract; `syscall`
    // clobbers rcx and r11.
    unsafe {
        core::arch::asm!(
            "syscall",
            inlateout("rax") nr as isize => ret,
            in("rdi") a, in("rsi") b, in("rdx") c,
            lateout("rcx") _, lateout("r11") _,
            options(nostack)
        );
    }
    ret
}

fn fail(msg: &str) -> ! {
    // SAFETY: write(2, buf, len) with a valid buffer, then exit_group.
    unsafe {
        syscall3(1, 2, msg.as_ptr() as usize, msg.len());
        syscall3(231, 126, 0, 0);
    }
    arch_x86_64::cpu::halt_forever()
}

/// The C strings of a NULL-terminated array.
///
/// # Safety
/// `list` must be a NULL-terminated array of NUL-terminated strings that
/// live for the rest of the process.
unsafe fn c_strings(list: *const *const u8) -> impl Iterator<Item = (*const u8, &'static [u8])> {
    (0..).map_while(move |i| {
        // SAFETY: the array is NULL-terminated and read up to that entry.
        let p = unsafe { *list.add(i) };
        // SAFETY: every entry is a NUL-terminated string (caller).
        (!p.is_null()).then(|| (p, unsafe { core::ffi::CStr::from_ptr(p.cast()) }.to_bytes()))
    })
}

/// Entered from `_start` when Linux started the image; `sp` is the initial
/// stack pointer (argc, argv, NULL, envp, NULL, auxv).
///
/// With `HERMIT_PROXY` set, runs `$HERMIT_PROXY IMAGE ARGS...`; when started
/// by cargo (`CARGO` is set), `$CARGO run --quiet --release -p proxy --
/// IMAGE ARGS...`; otherwise it explains itself and exits with 126.
///
/// # Safety
/// Only for `_start`, with the stack Linux set up and relocations applied.
pub(crate) unsafe extern "C" fn linux_start(sp: *const usize) -> ! {
    // SAFETY: Linux's initial stack layout.
    let (argc, argv, envp) = unsafe {
        let argc = *sp;
        let argv = sp.add(1) as *const *const u8;
        (argc, argv, argv.add(argc + 1))
    };
    if argc == 0 || argc > MAX_ARGS {
        fail("this is a hermit unikernel image: run it with `proxy IMAGE [ARGS...]`\n");
    }
    let getenv = |name: &[u8]| {
        // SAFETY: `envp` is Linux's NULL-terminated environment.
        unsafe { c_strings(envp) }.find_map(|(p, s)| {
            let value = s.strip_prefix(name)?.strip_prefix(b"=")?;
            // SAFETY: the value lies inside the string `p` points to.
            Some(unsafe { p.add(s.len() - value.len()) })
        })
    };
    let mut new_argv = [core::ptr::null::<u8>(); MAX_ARGS + 8];
    let mut n = 0;
    let program = if let Some(proxy) = getenv(b"HERMIT_PROXY") {
        proxy
    } else if let Some(cargo) = getenv(b"CARGO") {
        for word in [c"run", c"--quiet", c"--release", c"-p", c"proxy", c"--"] {
            n += 1;
            new_argv[n] = word.as_ptr().cast();
        }
        cargo
    } else {
        fail(
            "this is a hermit unikernel image: run it with `proxy IMAGE [ARGS...]` \
             (or set HERMIT_PROXY to the proxy's path)\n",
        );
    };
    new_argv[0] = program;
    // SAFETY: `argv` is Linux's NULL-terminated argument vector.
    for (p, _) in unsafe { c_strings(argv) } {
        n += 1;
        new_argv[n] = p;
    }
    // SAFETY: `program` and every `new_argv` entry are C strings from Linux
    // or literals, the array is NULL-terminated; `envp` is Linux's.
    unsafe {
        syscall3(
            59,
            program as usize,
            new_argv.as_ptr() as usize,
            envp as usize,
        )
    };
    fail("hermit: cannot start the proxy (execve failed)\n")
}
