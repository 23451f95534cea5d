//! Checks of the file layer, one per argument form; each prints `<name> ok`
//! on success or a failure line on stderr and exits non-zero:
//!
//! - `memfs`: every operation on the in-memory `/tmp` and its errors;
//! - `many N`: N files in nested directories of /tmp, written, read back,
//!   listed and removed;
//! - `threads T N DIR`: T threads each create, check and remove N files in
//!   DIR at once;
//! - `host DIR`: operations on a host directory; prints the host-made
//!   `DIR/input.txt`;
//! - `escape DIR`: tries to leave the mapping; prints one `refused NAME
//!   ERRNO` line per attempt (`escaped NAME` if one got through);
//! - `bigwrite PATH MIB`: writes MIB MiB of the pattern [`pattern_word`];
//! - `bigread PATH`: reads PATH to the end, checks the pattern, prints size;
//! - `stdin`: prints the size and contents of standard input.
#![no_std]
#![no_main]

extern crate alloc;

use alloc::format;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;

use hermit::fs::{self, Errno, File, FileType, OpenFlags, SeekFrom};

hermit::entry!(main);

type Check = Result<(), String>;

macro_rules! ensure {
    ($cond:expr, $($msg:tt)*) => {
        if !$cond {
            return Err(format!($($msg)*));
        }
    };
}

fn ok<T>(what: &str, r: fs::Result<T>) -> Result<T, String> {
    r.map_err(|e| format!("{what}: {e}"))
}

fn expect_err<T>(what: &str, r: fs::Result<T>, want: Errno) -> Check {
    match r {
        Ok(_) => Err(format!("{what}: succeeded, expected {want}")),
        Err(e) if e == want => Ok(()),
        Err(e) => Err(format!("{what}: {e}, expected {want}")),
    }
}

fn memfs() -> Check {
    ok("mkdir", fs::create_dir("/tmp/d"))?;
    expect_err("mkdir again", fs::create_dir("/tmp/d"), Errno::EEXIST)?;
    ok("write", fs::write("/tmp/d/a.txt", b"hello, world"))?;
    ensure!(
        ok("read", fs::read("/tmp/d/a.txt"))? == b"hello, world",
        "read back"
    );
    let f = ok(
        "open rw",
        File::open_with("/tmp/d/a.txt", OpenFlags::RDWR, 0),
    )?;
    ok("seek", f.seek(SeekFrom::Start(7)))?;
    ok("write at 7", f.write_all(b"there"))?;
    ensure!(ok("stat", f.metadata())?.size == 12, "size after overwrite");
    let mut buf = [0u8; 5];
    ok("pread", f.read_at(&mut buf, 0))?;
    ensure!(&buf == b"hello", "pread got {buf:?}");
    ok("truncate", f.set_len(5))?;
    drop(f);
    ensure!(
        ok("read", fs::read("/tmp/d/a.txt"))? == b"hello",
        "after truncate"
    );
    let f = ok(
        "append",
        File::open_with("/tmp/d/a.txt", OpenFlags::WRONLY | OpenFlags::APPEND, 0),
    )?;
    ok("append write", f.write_all(b"!"))?;
    drop(f);
    ensure!(
        ok("read", fs::read("/tmp/d/a.txt"))? == b"hello!",
        "after append"
    );
    expect_err("open missing", File::open("/tmp/d/none"), Errno::ENOENT)?;
    expect_err(
        "excl",
        File::open_with(
            "/tmp/d/a.txt",
            OpenFlags::WRONLY | OpenFlags::CREAT | OpenFlags::EXCL,
            0o600,
        ),
        Errno::EEXIST,
    )?;
    expect_err(
        "rmdir non-empty",
        fs::remove_dir("/tmp/d"),
        Errno::ENOTEMPTY,
    )?;
    ok("rename", fs::rename("/tmp/d/a.txt", "/tmp/d/b.txt"))?;
    let names: Vec<String> = ok("readdir", fs::read_dir("/tmp/d"))?
        .into_iter()
        .map(|e| e.name)
        .collect();
    ensure!(names == ["b.txt"], "readdir {names:?}");
    ensure!(
        ok("stat dir", fs::metadata("/tmp/d"))?.mode & 0o170000 == 0o040000,
        "/tmp/d is not a directory"
    );
    ok("relative", fs::set_current_dir("/tmp/d"))?;
    ensure!(
        ok("relative read", fs::read("b.txt"))? == b"hello!",
        "relative"
    );
    ok("cd /", fs::set_current_dir("/"))?;
    ok("unlink", fs::remove_file("/tmp/d/b.txt"))?;
    ok("rmdir", fs::remove_dir("/tmp/d"))?;
    expect_err("stat removed", fs::metadata("/tmp/d"), Errno::ENOENT)?;
    Ok(())
}

fn file_name(dir: &str, i: usize) -> String {
    format!("{dir}/d{}/f{i}", i / 100)
}

fn many(n: usize) -> Check {
    ok("mkdir", fs::create_dir("/tmp/many"))?;
    for d in 0..n.div_ceil(100) {
        ok("mkdir", fs::create_dir(&format!("/tmp/many/d{d}")))?;
    }
    for i in 0..n {
        ok(
            "create",
            fs::write(&file_name("/tmp/many", i), format!("{i}").as_bytes()),
        )?;
    }
    let mut listed = 0;
    for d in ok("readdir", fs::read_dir("/tmp/many"))? {
        ensure!(d.kind == FileType::Dir, "{} is not a dir", d.name);
        listed += ok("readdir", fs::read_dir(&format!("/tmp/many/{}", d.name)))?.len();
    }
    ensure!(listed == n, "listed {listed} of {n} files");
    for i in 0..n {
        let name = file_name("/tmp/many", i);
        ensure!(
            ok("read", fs::read(&name))? == format!("{i}").as_bytes(),
            "{name}"
        );
        ok("unlink", fs::remove_file(&name))?;
    }
    for d in 0..n.div_ceil(100) {
        ok("rmdir", fs::remove_dir(&format!("/tmp/many/d{d}")))?;
    }
    ok("rmdir", fs::remove_dir("/tmp/many"))
}

fn threads(t: usize, n: usize, dir: &str) -> Check {
    let handles: Vec<_> = (0..t)
        .map(|k| {
            let dir = String::from(dir);
            hermit::thread::spawn(move || -> Check {
                for i in 0..n {
                    let name = format!("{dir}/t{k}-{i}");
                    let data = format!("thread {k} file {i}");
                    ok("create", fs::write(&name, data.as_bytes()))?;
                }
                for i in 0..n {
                    let name = format!("{dir}/t{k}-{i}");
                    let data = format!("thread {k} file {i}");
                    ensure!(ok("read", fs::read(&name))? == data.as_bytes(), "{name}");
                    // stat and fstat from a spawned thread (its stack lies
                    // outside the identity map: the record takes a detour).
                    let size = ok("stat", fs::metadata(&name))?.size;
                    ensure!(size == data.len() as i64, "stat size {size} of {name}");
                    let f = ok("open", File::open(&name))?;
                    let size = ok("fstat", f.metadata())?.size;
                    ensure!(size == data.len() as i64, "fstat size {size} of {name}");
                    drop(f);
                    ok("unlink", fs::remove_file(&name))?;
                }
                Ok(())
            })
        })
        .collect();
    for h in handles {
        h.join()?;
    }
    Ok(())
}

fn host(dir: &str) -> Check {
    let input = ok("read input.txt", fs::read(&format!("{dir}/input.txt")))?;
    hermit::print!("input: {}", String::from_utf8_lossy(&input));
    let sub = format!("{dir}/sub");
    ok("mkdir", fs::create_dir(&sub))?;
    ok(
        "write",
        fs::write(&format!("{sub}/x.txt"), b"from the guest\n"),
    )?;
    let f = ok("open", File::open(&format!("{sub}/x.txt")))?;
    ensure!(ok("fstat", f.metadata())?.size == 15, "size");
    ok("seek", f.seek(SeekFrom::Start(5)))?;
    let mut b = [0u8; 3];
    ok("read", f.read(&mut b))?;
    ensure!(&b == b"the", "read after seek {b:?}");
    drop(f);
    ok(
        "rename",
        fs::rename(&format!("{sub}/x.txt"), &format!("{sub}/y.txt")),
    )?;
    let names: Vec<String> = ok("readdir", fs::read_dir(&sub))?
        .into_iter()
        .map(|e| e.name)
        .collect();
    ensure!(names == ["y.txt"], "readdir {names:?}");
    expect_err("rmdir non-empty", fs::remove_dir(&sub), Errno::ENOTEMPTY)?;
    expect_err(
        "rename across file systems",
        fs::rename(&format!("{sub}/y.txt"), "/tmp/y.txt"),
        Errno::EXDEV,
    )?;
    // Left for the host to check.
    ok(
        "write out.txt",
        fs::write(&format!("{dir}/out.txt"), b"written by hermit\n"),
    )?;
    ok("unlink", fs::remove_file(&format!("{sub}/y.txt")))?;
    ok("rmdir", fs::remove_dir(&sub))?;
    Ok(())
}

fn escape(dir: &str) -> Check {
    let attempts = [
        ("link-out", format!("{dir}/link-out")),
        ("abs-link", format!("{dir}/abs-link")),
        ("fifo", format!("{dir}/fifo")),
        ("dev-link", format!("{dir}/dev-link")),
        ("dotdot", format!("{dir}/../../etc/passwd")),
        ("sub-link-dir", format!("{dir}/dir-link/passwd")),
    ];
    for (name, path) in attempts {
        match File::open(&path).and_then(|f| {
            let mut b = [0u8; 64];
            f.read(&mut b)
        }) {
            Ok(n) => hermit::println!("escaped {name} ({n} bytes)"),
            Err(e) => hermit::println!("refused {name} {e}"),
        }
    }
    match fs::read(&format!("{dir}/link-in")) {
        Ok(data) => hermit::println!("link-in {}", String::from_utf8_lossy(&data).trim_end()),
        Err(e) => hermit::println!("link-in failed {e}"),
    }
    Ok(())
}

/// Word `j` of every MiB of a big file (little-endian on disk).
fn pattern_word(j: usize) -> u64 {
    (j as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

fn pattern() -> Vec<u8> {
    let words: Vec<u64> = (0..(1 << 20) / 8).map(pattern_word).collect();
    words.iter().flat_map(|w| w.to_le_bytes()).collect()
}

fn bigwrite(path: &str, mib: usize) -> Check {
    let block = pattern();
    let f = ok("create", File::create(path))?;
    for _ in 0..mib {
        ok("write", f.write_all(&block))?;
    }
    hermit::println!("wrote {} bytes", mib << 20);
    Ok(())
}

fn bigread(path: &str) -> Check {
    let block = pattern();
    let f = ok("open", File::open(path))?;
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0usize;
    loop {
        let mut filled = 0;
        while filled < buf.len() {
            match ok("read", f.read(&mut buf[filled..]))? {
                0 => break,
                n => filled += n,
            }
        }
        if filled == 0 {
            break;
        }
        ensure!(
            buf[..filled] == block[..filled],
            "pattern mismatch in MiB {}",
            total >> 20
        );
        total += filled;
        if filled < buf.len() {
            break;
        }
    }
    hermit::println!("read {total} bytes");
    Ok(())
}

fn stdin() -> Check {
    let mut data = Vec::new();
    ok("stdin", fs::stdin().read_to_end(&mut data))?;
    hermit::println!("stdin {} bytes", data.len());
    hermit::print!("{}", String::from_utf8_lossy(&data));
    Ok(())
}

fn main() -> i32 {
    let args: Vec<&str> = hermit::env::args().skip(1).collect();
    let num = |i: usize| args.get(i).and_then(|s| s.parse::<usize>().ok());
    let (name, result) = match args[..] {
        ["memfs"] => ("memfs", memfs()),
        ["many", _] => ("many", num(1).ok_or_else(|| "many N".into()).and_then(many)),
        ["threads", _, _, dir] => match (num(1), num(2)) {
            (Some(t), Some(n)) => ("threads", threads(t, n, dir)),
            _ => ("threads", Err("threads T N DIR".into())),
        },
        ["host", dir] => ("host", host(dir)),
        ["escape", dir] => ("escape", escape(dir)),
        ["bigwrite", path, _] => match num(2) {
            Some(m) => ("bigwrite", bigwrite(path, m)),
            None => ("bigwrite", Err("bigwrite PATH MIB".into())),
        },
        ["bigread", path] => ("bigread", bigread(path)),
        ["stdin"] => ("stdin", stdin()),
        _ => ("usage", Err("see the module docs for the checks".into())),
    };
    match result {
        Ok(()) => {
            hermit::println!("{name} ok");
            0
        }
        Err(e) => {
            hermit::eprintln!("{name} FAILED: {e}");
            1
        }
    }
}
