//! File I/O (issue 4): sequential write and read throughput of one file in
//! a directory, and what one small call costs.
//!
//! | name | what |
//! | --- | --- |
//! | `fileio-write` | MB/s (10^6 bytes) writing `--total-mib` MiB in `--chunk-kib` KiB `write`s to a new file |
//! | `fileio-read` | MB/s reading that file back sequentially in the same chunks |
//! | `fileio-write-large` | like `fileio-write` in `--large-kib` KiB chunks (default 1024; 0 skips both large figures) |
//! | `fileio-read-large` | like `fileio-read` in those chunks |
//! | `fileio-write-1` | one `write` of 1 byte at the file position (the file grows) |
//! | `fileio-pwrite-1` | one positioned write of 1 byte at offset 0 |
//! | `fileio-pread-1` | one positioned read of 1 byte at offset 0 |
//!
//! The small calls are timed one by one with [`Platform::cycles`]; the
//! median over all calls of all repetitions is reported in cycles, and in
//! ns through [`Platform::tsc_khz`]. Throughput is the median over
//! repetitions. Times cover the calls only (not open, close or removal)
//! and nothing is synced to disk: on Linux the data goes to the page
//! cache, and a hermit guest's calls end in the host's `write`/`read` on a
//! mapped directory, so both sides measure the same host work plus their
//! own path to it. The file is removed after each phase (also after a
//! failure), so that no phase truncates a file whose data the host has not
//! written to disk yet (ext4 then starts writing it out, and that disk
//! traffic would land in the next phase).

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use crate::{Error, Platform, info, number, report};

/// Name of the file created in the benchmark directory.
pub const FILE_NAME: &str = "hermit-bench-fileio.dat";

/// The small-call figures, in the order they run.
pub const SMALL: [&str; 3] = ["fileio-write-1", "fileio-pwrite-1", "fileio-pread-1"];

/// Alignment of the sequential I/O buffer (a page).
const BUF_ALIGN: usize = 4096;

/// The throughput figures (MB/s): write and read in `--chunk-kib` chunks,
/// then in `--large-kib` chunks.
pub const THROUGHPUT: [&str; 4] = [
    "fileio-write",
    "fileio-read",
    "fileio-write-large",
    "fileio-read-large",
];

/// The file operations a platform offers (`std::fs::File` on Linux,
/// `hermit::fs::File` in the guest). Errors are messages for the report.
pub trait FileSystem {
    /// An open file; closed when dropped.
    type File;

    /// Creates (or truncates) `path` for reading and writing.
    fn create(path: &str) -> Result<Self::File, String>;
    /// Opens an existing `path` for reading.
    fn open(path: &str) -> Result<Self::File, String>;
    /// Writes `buf` at the file position; how many bytes were written.
    fn write(file: &mut Self::File, buf: &[u8]) -> Result<usize, String>;
    /// Reads into `buf` at the file position; 0 at the end.
    fn read(file: &mut Self::File, buf: &mut [u8]) -> Result<usize, String>;
    /// Writes `buf` at `offset` without moving the file position.
    fn write_at(file: &mut Self::File, buf: &[u8], offset: u64) -> Result<usize, String>;
    /// Reads into `buf` at `offset` without moving the file position.
    fn read_at(file: &mut Self::File, buf: &mut [u8], offset: u64) -> Result<usize, String>;
    /// Removes `path`.
    fn remove(path: &str) -> Result<(), String>;
}

/// Settings of `fileio`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// The directory the file is created in.
    pub dir: String,
    /// Size of the file written and read, in MiB.
    pub total_mib: u32,
    /// Size of one sequential `write`/`read`, in KiB.
    pub chunk_kib: u32,
    /// Size of one `write`/`read` of the large-chunk pass, in KiB (0: no
    /// such pass).
    pub large_kib: u32,
    /// Small calls of each kind per repetition.
    pub small: u32,
    /// Repetitions.
    pub reps: u32,
}

impl Config {
    /// Parses the arguments after `fileio`: `DIR [--total-mib N]
    /// [--chunk-kib N] [--large-kib N] [--small N] [--reps N]`.
    pub fn parse<'a>(args: impl IntoIterator<Item = &'a str>) -> Result<Config, Error> {
        let mut dir = None;
        let mut cfg = Config {
            dir: String::new(),
            total_mib: 64,
            chunk_kib: 64,
            large_kib: 1024,
            small: 1000,
            reps: 3,
        };
        let mut it = args.into_iter();
        while let Some(arg) = it.next() {
            match arg {
                "--total-mib" => cfg.total_mib = number(arg, it.next(), 16 * 1024)? as u32,
                "--chunk-kib" => cfg.chunk_kib = number(arg, it.next(), 64 * 1024)? as u32,
                "--large-kib" => cfg.large_kib = large_kib(it.next())?,
                "--small" => cfg.small = number(arg, it.next(), 10_000_000)? as u32,
                "--reps" => cfg.reps = number(arg, it.next(), 1000)? as u32,
                flag if flag.starts_with("--") => {
                    return Err(Error::Usage(format!(
                        "unknown fileio option {flag:?}; {}",
                        crate::USAGE
                    )));
                }
                path if dir.is_none() => dir = Some(path),
                extra => {
                    return Err(Error::Usage(format!(
                        "fileio takes one directory, not also {extra:?}; {}",
                        crate::USAGE
                    )));
                }
            }
        }
        let dir =
            dir.ok_or_else(|| Error::Usage(format!("fileio needs a DIR; {}", crate::USAGE)))?;
        let file_kib = cfg.total_mib.saturating_mul(1024);
        if cfg.chunk_kib > file_kib {
            return Err(Error::Usage(
                "fileio: --chunk-kib is larger than the file (--total-mib)".into(),
            ));
        }
        if cfg.large_kib > file_kib {
            return Err(Error::Usage(
                "fileio: --large-kib is larger than the file (--total-mib)".into(),
            ));
        }
        cfg.dir = dir.trim_end_matches('/').into();
        if cfg.dir.is_empty() {
            cfg.dir = "/".into();
        }
        Ok(cfg)
    }

    /// The chunk sizes of the throughput passes, in bytes: `--chunk-kib`,
    /// then `--large-kib` unless it is 0.
    fn chunks(&self) -> impl Iterator<Item = usize> {
        [self.chunk_kib, self.large_kib]
            .into_iter()
            .filter(|&kib| kib > 0)
            .map(|kib| kib as usize * 1024)
    }

    /// The path of the benchmark file.
    pub fn file(&self) -> String {
        if self.dir.ends_with('/') {
            format!("{}{FILE_NAME}", self.dir)
        } else {
            format!("{}/{FILE_NAME}", self.dir)
        }
    }
}

/// `--large-kib`'s value: like [`number`] (at most 64 MiB), but 0 is
/// allowed (no large pass).
fn large_kib(value: Option<&str>) -> Result<u32, Error> {
    const MAX: u64 = 64 * 1024;
    match value {
        Some("0") => Ok(0),
        v => number("--large-kib", v, MAX)
            .map(|n| n as u32)
            .map_err(|_| {
                Error::Usage(format!(
                    "--large-kib takes 0 (no large pass) or a number from 1 to {MAX}"
                ))
            }),
    }
}

/// Runs the benchmark of `cfg`, printing its figures; the file is removed
/// after each phase (also after a failure).
pub fn run<P: Platform>(cfg: &Config) -> Result<(), Error> {
    let path = cfg.file();
    info::<P>(format_args!(
        "fileio file={path} total-mib={} chunk-kib={} large-kib={} small={} reps={} calls={}",
        cfg.total_mib,
        cfg.chunk_kib,
        cfg.large_kib,
        cfg.small,
        cfg.reps,
        P::FILE_CALLS
    ));
    let figures = measure::<P>(cfg, &path).inspect_err(|_| {
        // Best effort: the failed phase may have left the file behind.
        let _ = <P::Fs as FileSystem>::remove(&path);
    })?;
    for (name, mut rates) in THROUGHPUT.into_iter().zip(figures.rates) {
        if !rates.is_empty() {
            report::<P>(name, thread_bench::median(&mut rates), "MB/s");
        }
    }
    let khz = P::tsc_khz();
    for (name, mut cycles) in SMALL.into_iter().zip(figures.small) {
        let median = thread_bench::median(&mut cycles);
        report::<P>(name, median, "cycles");
        if khz > 0 {
            report::<P>(name, median * 1e6 / khz as f64, "ns");
        }
    }
    Ok(())
}

/// What the repetitions measured: MB/s per repetition (in the order of
/// [`THROUGHPUT`]; the large pass's stay empty without one), and cycles
/// per small call (write-1, pwrite-1, pread-1).
struct Figures {
    rates: [Vec<f64>; 4],
    small: [Vec<f64>; 3],
}

fn io(what: &str, path: &str, e: String) -> Error {
    Error::Io(format!("{what} {path}: {e}"))
}

fn measure<P: Platform>(cfg: &Config, path: &str) -> Result<Figures, Error> {
    let largest = cfg.chunks().max().unwrap_or(0);
    let total = cfg.total_mib as usize * 1024 * 1024;
    // The I/O buffer starts on a page boundary on every platform: where a
    // buffer sits within its page changes the speed of the host kernel's
    // copy (on AMD Zen 3, a destination a few bytes past the source's page
    // offset makes `rep movsb` several times slower), and the two sides
    // would otherwise each get whatever their allocator hands out.
    let mut backing = Vec::new();
    backing
        .try_reserve_exact(largest + BUF_ALIGN - 1)
        .map_err(|_| Error::Memory(format!("a {} KiB I/O buffer", largest / 1024)))?;
    backing.resize(largest + BUF_ALIGN - 1, 0u8);
    let start = backing.as_ptr().align_offset(BUF_ALIGN).min(BUF_ALIGN - 1);
    let buf = &mut backing[start..start + largest];
    let mut small: [Vec<f64>; 3] = Default::default();
    for s in &mut small {
        s.try_reserve_exact(cfg.small as usize * cfg.reps as usize)
            .map_err(|_| Error::Memory(format!("{} samples", cfg.small)))?;
    }
    let mut figures = Figures {
        rates: Default::default(),
        small,
    };
    // Every phase starts on a file that does not exist: truncating one that
    // still has unwritten data makes ext4 start writing it to disk
    // (auto_da_alloc), and that disk traffic then lands in the next phase.
    let remove = || <P::Fs as FileSystem>::remove(path).map_err(|e| io("removing", path, e));
    for _ in 0..cfg.reps {
        for (pass, chunk) in cfg.chunks().enumerate() {
            let buf = &mut buf[..chunk];
            let write_ns = sequential_write::<P>(path, buf, total)?;
            let read_ns = sequential_read::<P>(path, buf, total)?;
            remove()?;
            figures.rates[2 * pass].push(mb_per_s(total, write_ns));
            figures.rates[2 * pass + 1].push(mb_per_s(total, read_ns));
        }
        small_calls::<P>(path, cfg.small, &mut figures.small)?;
        remove()?;
    }
    Ok(figures)
}

fn mb_per_s(bytes: usize, ns: u64) -> f64 {
    bytes as f64 * 1000.0 / ns.max(1) as f64
}

/// The byte chunk `i` is filled with, so the read-back can be checked.
fn pattern(i: usize) -> u8 {
    (i % 251) as u8 ^ 0x5a
}

/// Writes `total` bytes in `buf`-sized chunks to a new file; ns taken.
fn sequential_write<P: Platform>(path: &str, buf: &mut [u8], total: usize) -> Result<u64, Error> {
    let mut file = <P::Fs as FileSystem>::create(path).map_err(|e| io("creating", path, e))?;
    let mut elapsed = 0;
    let mut done = 0;
    let mut i = 0;
    while done < total {
        let len = buf.len().min(total - done);
        // Only the ends of a chunk are checked on the way back: marking
        // just those keeps the untimed work small (a guest at CPL 0 pays
        // for every instruction here).
        buf[0] = pattern(i);
        buf[len - 1] = pattern(i);
        let start = P::now_ns();
        let mut rest = &buf[..len];
        while !rest.is_empty() {
            match <P::Fs as FileSystem>::write(&mut file, rest) {
                Ok(0) => return Err(io("writing", path, "wrote 0 bytes".into())),
                Ok(n) => rest = rest.get(n..).unwrap_or_default(),
                Err(e) => return Err(io("writing", path, e)),
            }
        }
        elapsed += P::now_ns().saturating_sub(start);
        done += len;
        i += 1;
    }
    Ok(elapsed)
}

/// Reads the file back in `buf`-sized chunks, checking its length and the
/// first and last byte of every chunk; ns taken.
fn sequential_read<P: Platform>(path: &str, buf: &mut [u8], total: usize) -> Result<u64, Error> {
    let mut file = <P::Fs as FileSystem>::open(path).map_err(|e| io("opening", path, e))?;
    let chunk = buf.len();
    let mut elapsed = 0;
    let mut done = 0;
    let mut i = 0;
    loop {
        let want = chunk.min(total - done);
        if want == 0 {
            break;
        }
        let start = P::now_ns();
        let mut got = 0;
        while got < want {
            match <P::Fs as FileSystem>::read(&mut file, &mut buf[got..want]) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) => return Err(io("reading", path, e)),
            }
        }
        elapsed += P::now_ns().saturating_sub(start);
        if got < want {
            return Err(Error::Check(format!(
                "{path} ended after {} of {total} bytes",
                done + got
            )));
        }
        if buf[0] != pattern(i) || buf[want - 1] != pattern(i) {
            return Err(Error::Check(format!(
                "{path}: chunk {i} read back different bytes than were written"
            )));
        }
        done += want;
        i += 1;
    }
    let mut extra = [0u8; 1];
    match <P::Fs as FileSystem>::read(&mut file, &mut extra) {
        Ok(0) => Ok(elapsed),
        Ok(_) => Err(Error::Check(format!("{path} is longer than {total} bytes"))),
        Err(e) => Err(io("reading", path, e)),
    }
}

/// Times `n` calls of each small operation on a fresh file, appending the
/// cycles of each call to `out`.
fn small_calls<P: Platform>(path: &str, n: u32, out: &mut [Vec<f64>; 3]) -> Result<(), Error> {
    let mut file = <P::Fs as FileSystem>::create(path).map_err(|e| io("creating", path, e))?;
    let byte = *b"x";
    for _ in 0..n {
        let start = P::cycles();
        let r = <P::Fs as FileSystem>::write(&mut file, &byte);
        let end = P::cycles();
        check_one(r, path, "1-byte write")?;
        out[0].push(end.saturating_sub(start) as f64);
    }
    for _ in 0..n {
        let start = P::cycles();
        let r = <P::Fs as FileSystem>::write_at(&mut file, &byte, 0);
        let end = P::cycles();
        check_one(r, path, "1-byte positioned write")?;
        out[1].push(end.saturating_sub(start) as f64);
    }
    let mut one = [0u8; 1];
    for _ in 0..n {
        let start = P::cycles();
        let r = <P::Fs as FileSystem>::read_at(&mut file, &mut one, 0);
        let end = P::cycles();
        check_one(r, path, "1-byte positioned read")?;
        out[2].push(end.saturating_sub(start) as f64);
    }
    if one != byte {
        return Err(Error::Check(format!(
            "{path}: a 1-byte read returned {:#x}, not the byte written",
            one[0]
        )));
    }
    Ok(())
}

fn check_one(r: Result<usize, String>, path: &str, what: &str) -> Result<(), Error> {
    match r {
        Ok(1) => Ok(()),
        Ok(n) => Err(Error::Check(format!("{path}: a {what} moved {n} bytes"))),
        Err(e) => Err(io(what, path, e)),
    }
}

/// `std::fs` as a [`FileSystem`], for native runs (feature `std`).
#[cfg(any(test, feature = "std"))]
pub struct StdFs;

#[cfg(any(test, feature = "std"))]
impl FileSystem for StdFs {
    type File = std::fs::File;

    fn create(path: &str) -> Result<Self::File, String> {
        std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)
            .map_err(|e| e.to_string())
    }

    fn open(path: &str) -> Result<Self::File, String> {
        std::fs::File::open(path).map_err(|e| e.to_string())
    }

    fn write(file: &mut Self::File, buf: &[u8]) -> Result<usize, String> {
        std::io::Write::write(file, buf).map_err(|e| e.to_string())
    }

    fn read(file: &mut Self::File, buf: &mut [u8]) -> Result<usize, String> {
        std::io::Read::read(file, buf).map_err(|e| e.to_string())
    }

    #[cfg(unix)]
    fn write_at(file: &mut Self::File, buf: &[u8], offset: u64) -> Result<usize, String> {
        std::os::unix::fs::FileExt::write_at(file, buf, offset).map_err(|e| e.to_string())
    }

    #[cfg(unix)]
    fn read_at(file: &mut Self::File, buf: &mut [u8], offset: u64) -> Result<usize, String> {
        std::os::unix::fs::FileExt::read_at(file, buf, offset).map_err(|e| e.to_string())
    }

    // std on hermit has no positional file calls: a seek, then the call
    // (two calls instead of one; the file position moves).
    #[cfg(not(unix))]
    fn write_at(file: &mut Self::File, buf: &[u8], offset: u64) -> Result<usize, String> {
        use std::io::{Seek, SeekFrom, Write};
        file.seek(SeekFrom::Start(offset))
            .and_then(|_| file.write(buf))
            .map_err(|e| e.to_string())
    }

    #[cfg(not(unix))]
    fn read_at(file: &mut Self::File, buf: &mut [u8], offset: u64) -> Result<usize, String> {
        use std::io::{Read, Seek, SeekFrom};
        file.seek(SeekFrom::Start(offset))
            .and_then(|_| file.read(buf))
            .map_err(|e| e.to_string())
    }

    fn remove(path: &str) -> Result<(), String> {
        std::fs::remove_file(path).map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake::{Fake, take_output};

    fn temp_dir(name: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("bench-core-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn config_parses() {
        let c = Config::parse([
            "/bench/",
            "--total-mib",
            "2",
            "--chunk-kib",
            "4",
            "--large-kib",
            "0",
            "--small",
            "7",
            "--reps",
            "1",
        ])
        .unwrap();
        assert_eq!(
            c,
            Config {
                dir: "/bench".into(),
                total_mib: 2,
                chunk_kib: 4,
                large_kib: 0,
                small: 7,
                reps: 1
            }
        );
        assert_eq!(c.file(), "/bench/hermit-bench-fileio.dat");
        assert_eq!(
            Config::parse(["/"]).unwrap().file(),
            "/hermit-bench-fileio.dat"
        );
        for bad in [
            &[][..],
            &["--small", "3"],
            &["a", "b"],
            &["a", "--bogus"],
            &["a", "--reps", "0"],
            &["a", "--total-mib", "1", "--chunk-kib", "2048"],
            &["a", "--total-mib", "1", "--large-kib", "2048"],
            &["a", "--large-kib"],
        ] {
            assert!(
                matches!(Config::parse(bad.iter().copied()), Err(Error::Usage(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn every_figure_is_printed_and_the_file_is_removed() {
        let dir = temp_dir("fileio");
        let d = dir.to_str().unwrap();
        let cfg =
            Config::parse([d, "--total-mib", "1", "--chunk-kib", "48", "--small", "5"]).unwrap();
        run::<Fake>(&cfg).unwrap();
        let out = take_output();
        assert!(out[0].starts_with("info fileio file="), "{out:?}");
        let value = |name: &str, unit: &str| {
            out.iter()
                .filter_map(|l| crate::Line::parse(l))
                .find_map(|l| match l {
                    crate::Line::Bench {
                        name: n,
                        unit: u,
                        value,
                    } if n == name && u == unit => Some(value),
                    _ => None,
                })
                .unwrap_or_else(|| panic!("no {name} {unit}: {out:?}"))
        };
        for name in THROUGHPUT {
            assert!(value(name, "MB/s") > 0.0);
        }
        for name in SMALL {
            assert!(value(name, "cycles") >= 0.0);
            assert!(value(name, "ns") >= 0.0);
        }
        assert!(!dir.join(FILE_NAME).exists(), "the file was left behind");
        std::fs::remove_dir(&dir).unwrap();
    }

    #[test]
    fn large_kib_0_skips_the_large_pass() {
        let dir = temp_dir("fileio-nolarge");
        let d = dir.to_str().unwrap();
        let cfg =
            Config::parse([d, "--total-mib", "1", "--large-kib", "0", "--small", "2"]).unwrap();
        run::<Fake>(&cfg).unwrap();
        let out = take_output();
        let printed = |name: &str| out.iter().any(|l| l.starts_with(&format!("bench {name} ")));
        assert!(printed("fileio-read"), "{out:?}");
        assert!(!printed("fileio-read-large"), "{out:?}");
        assert!(!printed("fileio-write-large"), "{out:?}");
        assert!(!dir.join(FILE_NAME).exists(), "the file was left behind");
        std::fs::remove_dir(&dir).unwrap();
    }

    #[test]
    fn a_missing_directory_is_an_io_error() {
        let cfg = Config::parse(["/nonexistent-bench-core-dir", "--total-mib", "1"]).unwrap();
        match run::<Fake>(&cfg) {
            Err(Error::Io(m)) => assert!(m.contains("creating"), "{m}"),
            other => panic!("{other:?}"),
        }
        take_output();
    }

    #[test]
    fn a_short_file_fails_the_check() {
        let dir = temp_dir("short");
        let path = dir.join("f");
        std::fs::write(&path, vec![pattern(0); 10]).unwrap();
        let mut buf = vec![0u8; 16];
        let r = sequential_read::<Fake>(path.to_str().unwrap(), &mut buf, 32);
        assert!(
            matches!(r, Err(Error::Check(ref m)) if m.contains("ended after 10")),
            "{r:?}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
