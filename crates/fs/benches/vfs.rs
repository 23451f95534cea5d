//! Host micro-benchmarks of the VFS over a MemFs: path operations, small
//! I/O and directory listing. Prints the median of several runs in ns per
//! operation; asserts nothing about speed.
//!
//! `cargo bench -p hermit-fs` (release profile).

use std::hint::black_box;
use std::time::Instant;

use hermit_fs::{OpenFlags, SeekFrom, Vfs};

const RUNS: usize = 9;

/// Median over `RUNS` runs of `iters` calls of `op`, in ns per call.
fn median_ns(iters: u64, mut setup: impl FnMut(), mut op: impl FnMut(u64)) -> f64 {
    let mut samples: Vec<f64> = (0..RUNS)
        .map(|_| {
            setup();
            let start = Instant::now();
            for i in 0..iters {
                op(i);
            }
            start.elapsed().as_nanos() as f64 / iters as f64
        })
        .collect();
    samples.sort_by(f64::total_cmp);
    samples[RUNS / 2]
}

fn main() {
    let vfs = Vfs::new();
    vfs.mkdir("/tmp/bench", 0o755).unwrap();
    let create = OpenFlags::WRONLY | OpenFlags::CREAT | OpenFlags::TRUNC;
    const FILES: u64 = 5000;
    let names: Vec<String> = (0..FILES).map(|i| format!("/tmp/bench/file{i}")).collect();

    let t = median_ns(
        FILES,
        || {},
        |i| {
            let fd = vfs.open(&names[i as usize], create, 0o644).unwrap();
            vfs.close(fd).unwrap();
        },
    );
    println!("open(O_CREAT|O_TRUNC)+close, 5000-entry dir: {t:8.0} ns");

    let t = median_ns(
        FILES,
        || {},
        |i| {
            black_box(vfs.stat(&names[i as usize]).unwrap());
        },
    );
    println!("stat, depth 3, 5000-entry dir:              {t:8.0} ns");

    let t = median_ns(
        1000,
        || {},
        |_| {
            black_box(vfs.read_dir_path("/tmp/bench").unwrap());
        },
    ) / FILES as f64;
    println!("read_dir_path, per entry:                   {t:8.1} ns");

    let fd = vfs
        .open("/tmp/bench/data", OpenFlags::RDWR | OpenFlags::CREAT, 0o644)
        .unwrap();
    vfs.write(fd, &vec![7u8; 1 << 20]).unwrap();
    let mut buf = vec![0u8; 4096];
    let t = median_ns(
        100_000,
        || {},
        |i| {
            black_box(vfs.pread(fd, &mut buf, (i % 256) * 4096).unwrap());
        },
    );
    println!("pread 4 KiB:                                {t:8.0} ns");
    let t = median_ns(
        100_000,
        || {},
        |i| {
            black_box(vfs.pwrite(fd, &buf, (i % 256) * 4096).unwrap());
        },
    );
    println!("pwrite 4 KiB (in place):                    {t:8.0} ns");
    let t = median_ns(
        100_000,
        || {
            vfs.lseek(fd, SeekFrom::Start(0)).unwrap();
        },
        |_| {
            black_box(vfs.read(fd, &mut buf[..64]).unwrap());
        },
    );
    println!("read 64 B at the position:                  {t:8.0} ns");

    let t = median_ns(
        FILES,
        || {
            for name in &names {
                let fd = vfs.open(name, create, 0o644).unwrap();
                vfs.close(fd).unwrap();
            }
        },
        |i| vfs.unlink(&names[i as usize]).unwrap(),
    );
    println!("unlink, 5000-entry dir:                     {t:8.0} ns");
}
