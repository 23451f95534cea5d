//! The `netio` part of `hermit-bench all`: TCP throughput per message size
//! with `apps/netio`'s protocol (its doc comment defines it), the guest as
//! the server and this process as the timing client, next to the same
//! protocol served natively by a thread of this process on host loopback;
//! plus the latency of a small HTTP request to `apps/httpd`.
//!
//! Figures: `netio-recv-SIZE` (the server, guest or native, receives) and
//! `netio-send-SIZE` (it sends) in MB/s, `http-get` in ms (guests only).

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::threads::{Column, RunOutput};

/// Message sizes measured.
pub const SIZES: [usize; 6] = [1, 64, 1024, 8192, 16384, 32768];
/// Header magic of the protocol.
const MAGIC: &[u8; 4] = b"NTIO";
/// HTTP requests timed per run.
const HTTP_REQUESTS: usize = 7;

/// How much one run moves: `base` bytes per size and direction, but at
/// most `calls` messages (small messages are slow in the guest).
#[derive(Clone, Copy, Debug)]
pub struct Amount {
    /// Bytes per size and direction.
    pub base: u64,
    /// Most message calls per size and direction.
    pub calls: u64,
}

impl Amount {
    /// Bytes moved with `size`-byte messages.
    pub fn total(self, size: usize) -> u64 {
        self.base.min(size as u64 * self.calls)
    }
}

/// A platform to measure: its column name, the proxy environment, and why
/// it cannot run (if it cannot).
pub struct Platform<'a> {
    /// Column name.
    pub key: &'a str,
    /// Proxy environment (`HERMIT_ISLE`, ...).
    pub env: Vec<(&'a str, &'a str)>,
    /// Why it is unavailable.
    pub unavailable: Option<String>,
    /// What it moves per run.
    pub amount: Amount,
}

/// The table's rows: (figure, unit).
pub fn rows() -> Vec<(String, &'static str)> {
    let mut rows: Vec<(String, &'static str)> = SIZES
        .iter()
        .flat_map(|s| {
            [
                (format!("netio-recv-{s}"), "MB/s"),
                (format!("netio-send-{s}"), "MB/s"),
            ]
        })
        .collect();
    rows.push(("http-get".into(), "ms"));
    rows
}

/// One run of the client against a server at `addr`: direction 0 = the
/// server receives. Returns the seconds from header to the end.
fn client_run(addr: &str, direction: u8, size: usize, total: u64) -> Result<f64, String> {
    let mut s = TcpStream::connect(addr).map_err(|e| format!("connect {addr}: {e}"))?;
    s.set_nodelay(true).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(300)))
        .map_err(|e| e.to_string())?;
    let mut h = [0u8; 20];
    h[..4].copy_from_slice(MAGIC);
    h[4] = direction;
    h[8..12].copy_from_slice(&(size as u32).to_le_bytes());
    h[12..20].copy_from_slice(&total.to_le_bytes());
    let msg: Vec<u8> = (0..size).map(|k| (k % 251) as u8).collect();
    let io = |e: std::io::Error| format!("size {size}: {e}");
    let start = Instant::now();
    s.write_all(&h).map_err(io)?;
    if direction == 0 {
        let mut left = total;
        while left > 0 {
            let n = size.min(left as usize);
            s.write_all(&msg[..n]).map_err(io)?;
            left -= n as u64;
        }
        let mut ack = [0u8; 8];
        s.read_exact(&mut ack).map_err(io)?;
        if u64::from_le_bytes(ack) != total {
            return Err(format!(
                "size {size}: server counted {}",
                u64::from_le_bytes(ack)
            ));
        }
    } else {
        let mut buf = vec![0u8; size.max(65536)];
        let mut got = 0u64;
        while got < total {
            let n = s.read(&mut buf).map_err(io)?;
            if n == 0 {
                return Err(format!("size {size}: server closed after {got} bytes"));
            }
            got += n as u64;
        }
        s.write_all(&got.to_le_bytes()).map_err(io)?;
    }
    let secs = start.elapsed().as_secs_f64();
    let _ = s.shutdown(Shutdown::Write);
    let mut rest = Vec::new();
    let _ = s.read_to_end(&mut rest);
    Ok(secs)
}

/// Serves one connection of the protocol natively (the host loopback
/// baseline), reading and writing in calls of exactly the message size.
fn native_serve(mut s: TcpStream) -> std::io::Result<()> {
    s.set_nodelay(true)?;
    let mut h = [0u8; 20];
    s.read_exact(&mut h)?;
    let size = u32::from_le_bytes([h[8], h[9], h[10], h[11]]) as usize;
    let total = u64::from_le_bytes(h[12..20].try_into().unwrap_or([0; 8]));
    if &h[..4] != MAGIC || !(1..=65536).contains(&size) {
        return Err(std::io::Error::other("bad header"));
    }
    let mut buf: Vec<u8> = (0..size).map(|k| (k % 251) as u8).collect();
    if h[4] == 0 {
        let mut got = 0u64;
        while got < total {
            let want = size.min((total - got) as usize);
            let n = s.read(&mut buf[..want])?;
            if n == 0 {
                break;
            }
            got += n as u64;
        }
        s.write_all(&got.to_le_bytes())?;
    } else {
        let mut left = total;
        while left > 0 {
            let n = size.min(left as usize);
            s.write_all(&buf[..n])?;
            left -= n as u64;
        }
        let mut ack = [0u8; 8];
        s.read_exact(&mut ack)?;
    }
    let _ = s.shutdown(Shutdown::Write);
    let _ = s.read_to_end(&mut buf);
    Ok(())
}

/// Every size both ways against `addr`; figures in MB/s.
fn sweep(addr: &str, amount: Amount, out: &mut RunOutput) -> Result<(), String> {
    for &size in &SIZES {
        let total = amount.total(size);
        for (direction, name) in [(0u8, "recv"), (1, "send")] {
            let secs = client_run(addr, direction, size, total)?;
            out.figures.insert(
                (format!("netio-{name}-{size}"), "MB/s".into()),
                total as f64 / secs / 1e6,
            );
        }
    }
    Ok(())
}

/// One native run: a server thread on 127.0.0.1, this thread the client.
fn native_run(amount: Amount) -> Result<RunOutput, String> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    let addr = listener
        .local_addr()
        .map_err(|e| e.to_string())?
        .to_string();
    let connections = SIZES.len() * 2;
    let server = std::thread::spawn(move || {
        for _ in 0..connections {
            match listener.accept() {
                Ok((s, _)) => native_serve(s)?,
                Err(e) => return Err(e),
            }
        }
        Ok(())
    });
    let mut out = RunOutput::default();
    sweep(&addr, amount, &mut out)?;
    server
        .join()
        .map_err(|_| "native server panicked".to_string())?
        .map_err(|e| e.to_string())?;
    Ok(out)
}

/// A guest started through the proxy, killed when dropped.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// Starts `image args` through the proxy with a forward of `port`, and
/// waits for its "listening on" line.
fn start_guest(
    proxy: &std::path::Path,
    image: &std::path::Path,
    args: &[String],
    env: &[(&str, &str)],
    port: u16,
) -> Result<Running, String> {
    let mut cmd = Command::new(proxy);
    cmd.arg(image)
        .args(args)
        .env("HERMIT_APP_PORT", port.to_string())
        .env("HERMIT_MEM", "256M")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot start the proxy: {e}"))?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let running = Running(child);
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if line.contains(": listening on ") {
                let _ = tx.send(());
            }
        }
    });
    rx.recv_timeout(Duration::from_secs(60))
        .map_err(|_| "the guest did not start listening".to_string())?;
    Ok(running)
}

/// A TCP port of 127.0.0.1 that is free right now.
fn free_port() -> Result<u16, String> {
    let l = TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    Ok(l.local_addr().map_err(|e| e.to_string())?.port())
}

/// One guest run: netio's sweep, then HTTP latency against httpd.
fn guest_run(built: &Built, env: &[(&str, &str)], amount: Amount) -> Result<RunOutput, String> {
    let mut out = RunOutput::default();
    let port = free_port()?;
    let connections = (SIZES.len() * 2).to_string();
    let guest = start_guest(
        &built.proxy,
        &built.netio,
        &[port.to_string(), "--connections".into(), connections],
        env,
        port,
    )?;
    sweep(&format!("127.0.0.1:{port}"), amount, &mut out)?;
    drop(guest);

    let port = free_port()?;
    let guest = start_guest(
        &built.proxy,
        &built.httpd,
        &[
            port.to_string(),
            "--requests".into(),
            HTTP_REQUESTS.to_string(),
        ],
        env,
        port,
    )?;
    let mut times = Vec::new();
    for _ in 0..HTTP_REQUESTS {
        let start = Instant::now();
        let mut s = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
        s.set_read_timeout(Some(Duration::from_secs(60)))
            .map_err(|e| e.to_string())?;
        s.write_all(b"GET / HTTP/1.0\r\n\r\n")
            .map_err(|e| e.to_string())?;
        let mut page = Vec::new();
        s.read_to_end(&mut page).map_err(|e| e.to_string())?;
        if !page.starts_with(b"HTTP/1.1 200 OK") {
            return Err("httpd did not answer 200".into());
        }
        times.push(start.elapsed().as_secs_f64() * 1e3);
    }
    drop(guest);
    times.sort_by(f64::total_cmp);
    out.figures
        .insert(("http-get".into(), "ms".into()), times[times.len() / 2]);
    Ok(out)
}

/// The images and the proxy.
pub struct Built {
    /// `target/release/proxy`.
    pub proxy: std::path::PathBuf,
    /// The netio image.
    pub netio: std::path::PathBuf,
    /// The httpd image.
    pub httpd: std::path::PathBuf,
}

/// Measures `runs` interleaved runs: native (moving `native` per run),
/// then each platform; returns one column each.
pub fn measure(
    built: &Built,
    native: Amount,
    platforms: &[Platform<'_>],
    runs: usize,
) -> Vec<Column> {
    let mut columns = vec![Column {
        name: "native".into(),
        unavailable: None,
        runs: Vec::new(),
        failures: Vec::new(),
    }];
    columns.extend(platforms.iter().map(|p| Column {
        name: p.key.into(),
        unavailable: p.unavailable.clone(),
        runs: Vec::new(),
        failures: Vec::new(),
    }));
    for run in 1..=runs {
        for (i, col) in columns.iter_mut().enumerate() {
            if col.unavailable.is_some() || col.failures.len() >= 2 {
                continue;
            }
            eprint!("run {run}/{runs}: netio on {} ... ", col.name);
            let start = Instant::now();
            let result = match i {
                0 => native_run(native),
                _ => {
                    let p = &platforms[i - 1];
                    guest_run(built, &p.env, p.amount)
                }
            };
            match result {
                Ok(out) => {
                    eprintln!("{:.1} s", start.elapsed().as_secs_f64());
                    col.runs.push(out);
                }
                Err(e) => {
                    eprintln!("failed: {e}");
                    col.failures.push(format!("run {run}: {e}"));
                }
            }
        }
    }
    for c in &mut columns {
        if c.unavailable.is_none() && c.runs.is_empty() {
            c.unavailable = Some("every run failed".into());
        }
    }
    columns
}

/// Issue 5's goal: at least 3 Gbit/s with 32 KiB messages on uhyve.
pub fn goals(columns: &[Column]) -> Vec<String> {
    let Some(uhyve) = columns.iter().find(|c| c.name == "uhyve") else {
        return vec!["netio goal (>= 3 Gbit/s at 32 KiB on uhyve): uhyve not measured".into()];
    };
    ["recv", "send"]
        .iter()
        .map(|dir| {
            let name = format!("netio-{dir}-32768");
            match uhyve.median(&name, "MB/s") {
                Some(mbs) => {
                    let gbit = mbs * 8.0 / 1000.0;
                    let met = if gbit >= 3.0 { "met" } else { "not met" };
                    format!(
                        "{name} on uhyve: {mbs:.3} MB/s = {gbit:.4} Gbit/s (goal >= 3 Gbit/s: {met})"
                    )
                }
                None => format!("{name} on uhyve: not measured"),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_cap_small_messages() {
        let a = Amount {
            base: 1 << 20,
            calls: 1000,
        };
        assert_eq!(a.total(1), 1000);
        assert_eq!(a.total(32768), 1 << 20);
    }

    #[test]
    fn native_sweep_measures_every_size() {
        let out = native_run(Amount {
            base: 64 * 1024,
            calls: 256,
        })
        .expect("native run");
        for s in SIZES {
            for d in ["recv", "send"] {
                let v = out.figures[&(format!("netio-{d}-{s}"), "MB/s".to_string())];
                assert!(v > 0.0, "{d} {s}: {v}");
            }
        }
    }

    #[test]
    fn goal_lines_say_met_or_not() {
        let mut run = RunOutput::default();
        run.figures
            .insert(("netio-recv-32768".into(), "MB/s".into()), 500.0);
        run.figures
            .insert(("netio-send-32768".into(), "MB/s".into()), 1.0);
        let cols = vec![Column {
            name: "uhyve".into(),
            unavailable: None,
            runs: vec![run],
            failures: Vec::new(),
        }];
        let lines = goals(&cols);
        assert!(
            lines[0].contains("4.0000 Gbit/s (goal >= 3 Gbit/s: met)"),
            "{lines:?}"
        );
        assert!(lines[1].contains("not met"), "{lines:?}");
    }
}
