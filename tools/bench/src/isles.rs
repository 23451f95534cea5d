//! `hermit-bench isles [--max BYTES] [--runs N] [--tcg]`: iRCCE ping-pong
//! between two isles next to the same exchange between two Linux processes
//! over a shared mapping, in one command (issue 8).
//!
//! Both columns run `bench_core::pingpong` (the seed's `RCCE_pingpong`):
//! the isles as `apps/rcce-pingpong` on isles 0 and 1 (`HERMIT_ISLE=0|1`,
//! pinned to host cores 0 and 1, a private `HERMIT_ISLE_DIR`), the Linux
//! processes as `hermit-bench native-pingpong`, two processes pinned the
//! same way, each joining a private isle directory like an isle does (so
//! they share a region split like the isles'). Each
//! figure is the median of `--runs` batches (bench-core); the memcpy column
//! is a plain copy of the same size in the Linux process, the yardstick of
//! the bandwidth goal; after the table, two plain threads on cores 0 and 1
//! copying through a double-buffered shared channel show what any two-copy
//! channel between those cores can reach here.
//!
//! `hermit-bench native-pingpong --rank R --dir DIR [--cpu N] [ARGS]`
//! is one Linux UE (run by `isles`).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use bench_core::pingpong;
use hermit_interface::isle;
use hermit_ircce::{Config, Ircce, PollNotify, SubRegion};
use hermit_isles::IsleDir;

use crate::native_core::LinuxCore;
use crate::threads::{parse_output, run_case};

const USAGE: &str = "usage: hermit-bench isles [--max BYTES] [--runs N]\n       \
    hermit-bench native-pingpong --rank R --dir DIR [--cpu N] [--max BYTES] [--runs N]";

/// Longest one column may take.
const LIMIT: Duration = Duration::from_secs(900);

/// `hermit-bench native-pingpong ...`: one Linux UE.
pub fn native_pingpong(args: &[String]) -> Result<(), String> {
    let mut rank = None;
    let mut region = None;
    let mut cpu = None;
    let mut rest = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--rank" => rank = it.next().and_then(|v| v.parse::<usize>().ok()),
            "--dir" => region = it.next().map(PathBuf::from),
            "--cpu" => {
                cpu = Some(
                    it.next()
                        .and_then(|v| v.parse::<usize>().ok())
                        .ok_or(USAGE)?,
                )
            }
            _ => rest.push(a.as_str()),
        }
    }
    let (Some(rank), Some(path)) = (rank, region) else {
        return Err(USAGE.into());
    };
    let cfg = pingpong::Config::parse(rest).map_err(|e| e.to_string())?;
    if let Some(n) = cpu {
        crate::native::pin(&[n]).map_err(|e| format!("cannot pin to CPU {n}: {e}"))?;
    }
    // The process joins an isle directory like an isle does, so it gets
    // the same region, split the same way.
    let member = IsleDir::new(&path)
        .join(rank as u32, None)
        .map_err(|e| e.to_string())?;
    let mapping = member.map().map_err(|e| e.to_string())?;
    let part = SubRegion::new(
        mapping.region(),
        isle::IRCCE_OFFSET as usize,
        mapping.len() - isle::IRCCE_OFFSET as usize,
    )
    .map_err(|e| e.to_string())?;
    let ue = Ircce::init(part, PollNotify, rank, Config::new(2)).map_err(|e| e.to_string())?;
    pingpong::run::<LinuxCore, _, _>(&ue, &cfg).map_err(|e| e.to_string())
}

/// Figures of one column: (name, unit) -> value.
type Figures = BTreeMap<(String, String), f64>;

/// Runs `ue0` and `ue1` side by side; rank 0's figures.
fn run_pair(mut ue0: Command, mut ue1: Command) -> Result<Figures, String> {
    let peer = std::thread::spawn(move || run_case(&mut ue1, LIMIT));
    let first = run_case(&mut ue0, LIMIT);
    let second = peer.join().map_err(|_| "the peer's runner panicked")?;
    let out = first.map_err(|e| format!("rank 0 {e}"))?;
    second.map_err(|e| format!("rank 1 {e}"))?;
    let figures = parse_output(&out).figures;
    if figures.is_empty() {
        return Err("rank 0 printed no figures".into());
    }
    Ok(figures)
}

/// A private isle directory in [`hermit_isles::shm_dir`], removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Self {
        Self(hermit_isles::shm_dir().join(format!("hermit-bench-{name}-{}", std::process::id())))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn linux_column(exe: &Path, args: &[String]) -> Result<Figures, String> {
    let dir = Scratch::new("linux-isles");
    let ue = |rank: usize| {
        let mut c = Command::new(exe);
        c.args(["native-pingpong", "--rank", &rank.to_string()])
            .arg("--dir")
            .arg(&dir.0)
            .args(["--cpu", &rank.to_string()])
            .args(args);
        c
    };
    run_pair(ue(0), ue(1))
}

/// Two isles of `image` as `HERMIT_ISLE=<prefix><rank>` (uhyve: "", QEMU
/// TCG: "qemu:").
fn isle_column(
    proxy: &Path,
    image: &Path,
    prefix: &str,
    args: &[String],
) -> Result<Figures, String> {
    if prefix.is_empty() {
        uhyve::kvm_available()?;
    }
    let dir = Scratch::new(&format!("isles{}", prefix.trim_end_matches(':')));
    let ue = |rank: usize| {
        let mut c = Command::new(proxy);
        c.arg(image)
            .args(args)
            .env("HERMIT_ISLE", format!("{prefix}{rank}"))
            .env("HERMIT_CPUS", rank.to_string())
            .env("HERMIT_ISLE_DIR", &dir.0)
            .env("HERMIT_KVM", "0")
            .env("HERMIT_MEM", "512M");
        c
    };
    run_pair(ue(0), ue(1))
}

fn parse(args: &[String]) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--max" | "--runs" => {
                out.push(a.clone());
                out.push(it.next().ok_or(USAGE)?.clone());
            }
            _ => return Err(USAGE.into()),
        }
    }
    pingpong::Config::parse(out.iter().map(String::as_str)).map_err(|e| e.to_string())?;
    Ok(out)
}

/// The table: one row per message size, one-way time and bandwidth of
/// every column, and the Linux process's memcpy.
fn render(columns: &[(&str, Result<Figures, String>)]) -> String {
    let get = |col: &Result<Figures, String>, name: String, unit: &str| {
        col.as_ref()
            .ok()
            .and_then(|f| f.get(&(name, unit.to_string())).copied())
    };
    let mut sizes: Vec<u64> = columns
        .iter()
        .filter_map(|(_, c)| c.as_ref().ok())
        .flat_map(|f| f.keys())
        .filter_map(|(name, _)| {
            name.strip_prefix("pingpong-bw-")?
                .strip_suffix('B')?
                .parse()
                .ok()
        })
        .collect();
    sizes.sort_unstable();
    sizes.dedup();
    let cell = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.2}"));
    let mut out = String::new();
    let mut head = format!("{:>10} |", "bytes");
    for (name, _) in columns {
        let _ = write!(head, " {:>22}", format!("{name} us"));
    }
    head.push_str(" |");
    for (name, _) in columns {
        let _ = write!(head, " {:>22}", format!("{name} MB/s"));
    }
    let _ = write!(head, " | {:>12}", "memcpy MB/s");
    out.push_str(&head);
    out.push('\n');
    out.push_str(&"-".repeat(head.len()));
    out.push('\n');
    for s in sizes {
        let mut row = format!("{s:>10} |");
        for (_, c) in columns {
            let _ = write!(row, " {:>22}", cell(get(c, format!("pingpong-{s}B"), "us")));
        }
        row.push_str(" |");
        for (_, c) in columns {
            let _ = write!(
                row,
                " {:>22}",
                cell(get(c, format!("pingpong-bw-{s}B"), "MB/s"))
            );
        }
        let memcpy = columns
            .first()
            .and_then(|(_, c)| get(c, format!("memcpy-{s}B"), "MB/s"));
        let _ = write!(row, " | {:>12}", cell(memcpy));
        out.push_str(&row);
        out.push('\n');
    }
    for (name, col) in columns {
        if let Err(e) = col {
            let _ = writeln!(out, "{name}: not measured: {e}");
        }
    }
    out
}

/// `hermit-bench isles ...`.
pub fn main(args: &[String]) -> Result<(), String> {
    let args = parse(args)?;
    let exe = std::env::current_exe().map_err(|e| format!("cannot find myself: {e}"))?;
    let target = crate::target_dir();
    let proxy = target.join("release/proxy");
    let image = target.join("x86_64-unknown-none/release/rcce-pingpong");
    for p in [&proxy, &image] {
        if !p.exists() {
            return Err(format!(
                "{} is missing; build with `cargo build --release -p uhyve -p proxy -p pvh-loader -p hermit-bench && cargo build --release -p rcce-pingpong`",
                p.display()
            ));
        }
    }
    println!(
        "iRCCE ping-pong, one-way: two Linux processes, two uhyve isles, two QEMU TCG isles \
         (cores 0 and 1 each); medians of batches"
    );
    let columns = [
        ("Linux", linux_column(&exe, &args)),
        ("uhyve isles", isle_column(&proxy, &image, "", &args)),
        (
            "QEMU TCG isles",
            isle_column(&proxy, &image, "qemu:", &args),
        ),
    ];
    print!("{}", render(&columns));
    for chunk in [16 << 10, 256 << 10] {
        match two_core_copy(chunk, 256 << 20, 3) {
            Ok(mbs) => println!(
                "two threads on cores 0 and 1 moving 256 MiB through two shared {} KiB \
                 halves (copy in, flag, copy out, flag back; iRCCE's channel without the \
                 protocol): {mbs:.0} MB/s",
                chunk >> 10
            ),
            Err(e) => println!("two-thread copy: not measured: {e}"),
        }
    }
    Ok(())
}

/// The ceiling of any two-copy channel between cores 0 and 1 here: one
/// thread copies `chunk`-byte pieces of `total` bytes into two shared
/// halves in turn, the other copies them out; each half is handed over by
/// a counter and taken back by another (the shape of iRCCE's
/// double-buffered channel). Median MB/s of `runs` runs.
fn two_core_copy(chunk: usize, total: usize, runs: usize) -> Result<f64, String> {
    use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
    use std::sync::{Arc, Mutex};

    struct Channel {
        halves: [Mutex<Vec<u8>>; 2],
        sent: AtomicU64,
        ack: AtomicU64,
        /// 0: the receiver is starting, 1: pinned and ready, 2: it failed.
        ready: AtomicU8,
    }
    let pieces = (total / chunk) as u64;
    let mut figures = Vec::new();
    for _ in 0..runs {
        let ch = Arc::new(Channel {
            halves: [Mutex::new(vec![0; chunk]), Mutex::new(vec![0; chunk])],
            sent: AtomicU64::new(0),
            ack: AtomicU64::new(0),
            ready: AtomicU8::new(0),
        });
        let rx = Arc::clone(&ch);
        let receiver = std::thread::spawn(move || -> Result<u8, String> {
            if let Err(e) = crate::native::pin(&[1]) {
                rx.ready.store(2, Ordering::Release);
                return Err(format!("cannot pin to core 1: {e}"));
            }
            rx.ready.store(1, Ordering::Release);
            let mut out = vec![0u8; chunk];
            for k in 0..pieces {
                while rx.sent.load(Ordering::Acquire) <= k {
                    std::hint::spin_loop();
                }
                out.copy_from_slice(&rx.halves[(k % 2) as usize].lock().map_err(|_| "poisoned")?);
                rx.ack.store(k + 1, Ordering::Release);
            }
            Ok(out[0])
        });
        let pinned = crate::native::pin(&[0]).map_err(|e| format!("cannot pin to core 0: {e}"));
        let ready = loop {
            match ch.ready.load(Ordering::Acquire) {
                0 => std::thread::yield_now(),
                r => break r,
            }
        };
        if ready != 1 || pinned.is_err() {
            // Unblock the receiver (it waits for pieces that never come).
            ch.sent.store(u64::MAX, Ordering::Release);
            let receiver_said = receiver
                .join()
                .map_err(|_| "the receiving thread panicked".to_string())?;
            pinned?;
            receiver_said?;
            return Err("the receiving thread stopped".into());
        }
        let data: Vec<u8> = (0..chunk).map(|i| i as u8).collect();
        let start = std::time::Instant::now();
        for k in 0..pieces {
            while k >= ch.ack.load(Ordering::Acquire) + 2 {
                std::hint::spin_loop();
            }
            ch.halves[(k % 2) as usize]
                .lock()
                .map_err(|_| "poisoned")?
                .copy_from_slice(&data);
            ch.sent.store(k + 1, Ordering::Release);
        }
        receiver
            .join()
            .map_err(|_| "the receiving thread panicked".to_string())??;
        figures.push((pieces as usize * chunk) as f64 / start.elapsed().as_secs_f64() / 1e6);
    }
    figures.sort_by(f64::total_cmp);
    Ok(figures[figures.len() / 2])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_core_copy_moves_data() {
        // Any machine with cores 0 and 1; the figure only has to be sane.
        if std::thread::available_parallelism().map_or(1, usize::from) < 2 {
            eprintln!("SKIPPED: two_core_copy_moves_data: needs 2 CPUs");
            return;
        }
        let mbs = match two_core_copy(4096, 1 << 20, 1) {
            Ok(mbs) => mbs,
            Err(e) if e.starts_with("cannot pin") => {
                eprintln!("SKIPPED: two_core_copy_moves_data: {e}");
                return;
            }
            Err(e) => panic!("{e}"),
        };
        assert!(mbs.is_finite() && mbs > 0.0, "{mbs}");
    }

    #[test]
    fn arguments_are_checked() {
        assert!(parse(&[]).unwrap().is_empty());
        let a: Vec<String> = ["--max", "4096"].map(String::from).to_vec();
        assert_eq!(parse(&a).unwrap(), a);
        assert!(parse(&["--max".into()]).is_err());
        assert!(parse(&["--bogus".into()]).is_err());
        assert!(parse(&["--runs".into(), "0".into()]).is_err());
    }

    #[test]
    fn table_has_a_row_per_size_and_names_failures() {
        let mut f = Figures::new();
        for (name, unit, v) in [
            ("pingpong-1B", "us", 0.25),
            ("pingpong-bw-1B", "MB/s", 4.0),
            ("pingpong-65536B", "us", 5.0),
            ("pingpong-bw-65536B", "MB/s", 13000.0),
            ("memcpy-65536B", "MB/s", 50000.0),
        ] {
            f.insert((name.into(), unit.into()), v);
        }
        let t = render(&[("Linux", Ok(f)), ("uhyve isles", Err("no /dev/kvm".into()))]);
        let rows: Vec<&str> = t.lines().collect();
        assert!(rows[2].trim_start().starts_with("1 |"), "{t}");
        assert!(rows[3].trim_start().starts_with("65536 |"), "{t}");
        assert!(
            rows[3].contains("13000.00") && rows[3].contains("50000.00"),
            "{t}"
        );
        assert!(t.contains("uhyve isles: not measured: no /dev/kvm"), "{t}");
    }

    #[test]
    fn two_ues_over_one_isle_directory() {
        // Two threads stand in for the two processes: each joins the
        // directory and maps the region itself, as `native-pingpong` does;
        // every echo is checked.
        let dir = Scratch::new("test-isles");
        let args = |rank: &str| -> Vec<String> {
            ["--rank", rank, "--dir", dir.0.to_str().unwrap()]
                .into_iter()
                .chain(["--max", "4096", "--runs", "1"])
                .map(String::from)
                .collect()
        };
        let a1 = args("1");
        let peer = std::thread::spawn(move || native_pingpong(&a1));
        native_pingpong(&args("0")).unwrap();
        peer.join().unwrap().unwrap();
    }

    #[test]
    fn native_pingpong_refuses_bad_arguments() {
        let e = native_pingpong(&["--rank".into(), "0".into()]).unwrap_err();
        assert!(e.starts_with("usage"), "{e}");
        let dir = Scratch::new("bad-rank");
        let e = native_pingpong(&[
            "--rank".into(),
            "99".into(),
            "--dir".into(),
            dir.0.to_str().unwrap().into(),
        ])
        .unwrap_err();
        assert!(e.contains("99"), "{e}");
    }
}
