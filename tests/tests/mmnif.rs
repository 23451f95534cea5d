//! mmnif between uhyve isles and Linux: `isles mmnif` bridges a tap device
//! (192.168.28.1) to the isles' rings in a private isle directory, and
//! `mmnif-echo` (kernel feature `mmnif`) talks TCP over it both ways:
//! isle 0 connects to a Linux echo server, and a Linux client reaches an
//! echo server on isle 1 (192.168.28.3:7).
//!
//! Needs root, `/dev/net/tun`, `ip` and a usable `/dev/kvm`; otherwise it
//! prints `SKIPPED` with the reason. Everything runs in one test function,
//! serially: every bridge puts 192.168.28.1/24 on its tap, and two such
//! taps at once would fight over the route. The tap has a name unique to
//! this process and disappears with the bridge.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use boot_tests::{Hypervisor, built, proxy, require};

const TEST: &str = "mmnif_tcp_between_isles_and_linux";

/// A private isle directory, removed when dropped.
struct IsleDir(PathBuf);

impl Drop for IsleDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A running `isles mmnif`, stopped with SIGTERM when dropped.
struct Bridge {
    child: Child,
    stdout: mpsc::Receiver<String>,
}

impl Bridge {
    /// Starts the bridge and waits for its "bridged" line.
    fn start(dir: &IsleDir, tap: &str) -> Self {
        let mut child = Command::new(&built().isles)
            .args(["--dir"])
            .arg(&dir.0)
            .args(["mmnif", "--name", tap])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start isles mmnif");
        let out = child.stdout.take().expect("piped");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let bridge = Self { child, stdout: rx };
        let line = bridge
            .stdout
            .recv_timeout(Duration::from_secs(10))
            .expect("isles mmnif did not report that it bridges");
        assert!(line.contains("bridged to the isles"), "{line}");
        assert!(line.contains("192.168.28.1/24"), "{line}");
        bridge
    }

    /// Stops it and returns its last line (the frame counts).
    fn stop(mut self) -> String {
        self.signal();
        let status = self.child.wait().expect("wait for isles mmnif");
        assert!(status.success(), "isles mmnif ended with {status}");
        let mut last = String::new();
        while let Ok(line) = self.stdout.recv_timeout(Duration::from_secs(2)) {
            last = line;
        }
        last
    }

    fn signal(&self) {
        if let Ok(pid) = libc::pid_t::try_from(self.child.id()) {
            // SAFETY: kill has no memory-safety preconditions; `pid` is our
            // own child, not yet reaped.
            unsafe { libc::kill(pid, libc::SIGTERM) };
        }
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.signal();
            let _ = self.child.wait();
        }
    }
}

/// Why this test cannot run here, if it cannot.
fn unavailable() -> Option<String> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return Some("needs root for a tap device".into());
    }
    if !std::path::Path::new("/dev/net/tun").exists() {
        return Some("/dev/net/tun does not exist".into());
    }
    match Command::new("ip").arg("-V").output() {
        Ok(out) if out.status.success() => None,
        _ => Some("the `ip` command (iproute2) is missing".into()),
    }
}

/// A Linux TCP echo server on 192.168.28.1 (an ephemeral port), serving
/// one connection; returns its port.
fn host_echo_server() -> (u16, std::thread::JoinHandle<u64>) {
    let listener = TcpListener::bind("192.168.28.1:0").expect("bind 192.168.28.1");
    let port = listener.local_addr().expect("local address").port();
    let server = std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().expect("accept the isle's connection");
        let _ = conn.set_nodelay(true);
        let mut buf = [0u8; 4096];
        let mut total = 0;
        loop {
            match conn.read(&mut buf) {
                Ok(0) | Err(_) => return total,
                Ok(n) => {
                    conn.write_all(&buf[..n]).expect("echo to the isle");
                    total += n as u64;
                }
            }
        }
    });
    (port, server)
}

/// Connects to `addr` until it answers (the isle needs time to boot).
fn connect_retrying(addr: SocketAddrV4, limit: Duration) -> TcpStream {
    let start = Instant::now();
    loop {
        match TcpStream::connect_timeout(&addr.into(), Duration::from_secs(2)) {
            Ok(s) => return s,
            Err(_) if start.elapsed() < limit => std::thread::sleep(Duration::from_millis(100)),
            Err(e) => panic!("cannot connect to the isle at {addr}: {e}"),
        }
    }
}

#[test]
fn mmnif_tcp_between_isles_and_linux() {
    if let Some(reason) = unavailable() {
        eprintln!("SKIPPED: {TEST}: {reason}");
        return;
    }
    if !require(Hypervisor::Uhyve, TEST) {
        return;
    }
    let built = built();
    let dir =
        IsleDir(std::env::temp_dir().join(format!("hermit-mmnif-test-{}", std::process::id())));
    let tap = format!("mmt{}", std::process::id() % 1_000_000);
    let bridge = Bridge::start(&dir, &tap);
    let dir_text = dir.0.to_string_lossy().into_owned();
    let env = [("HERMIT_ISLE_DIR", dir_text.as_str())];

    // An isle reaches a Linux server.
    let (port, server) = host_echo_server();
    let port_text = port.to_string();
    let out = proxy(
        Hypervisor::Uhyve,
        "mmnif-echo",
        &["connect", "192.168.28.1", &port_text, "20"],
        &[env[0], ("HERMIT_ISLE", "0")],
    );
    assert_eq!(out.status, Some(0), "isle 0 client: {out:?}");
    assert!(out.stdout.contains("20 echoes ok"), "{}", out.stdout);
    let echoed = server.join().expect("host echo server");
    assert!(echoed > 20 * 20, "the host echoed only {echoed} bytes");
    for line in out.stdout.lines() {
        println!("isle -> Linux: {line}");
    }

    // A Linux client reaches an isle's server.
    let mut isle = Command::new(&built.proxy);
    isle.arg(built.app("mmnif-echo"))
        .args(["7", "1"])
        .env("HERMIT_ISLE", "1")
        .env(env[0].0, env[0].1)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut isle = isle.spawn().expect("start isle 1");
    let addr = SocketAddrV4::new(Ipv4Addr::new(192, 168, 28, 3), 7);
    let mut conn = connect_retrying(addr, Duration::from_secs(60));
    conn.set_nodelay(true).expect("nodelay");
    conn.set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    let mut times = Vec::new();
    for round in 0..20 {
        let msg = format!("Linux to isle 1, round {round}\n");
        let t = Instant::now();
        conn.write_all(msg.as_bytes()).expect("send to the isle");
        let mut back = vec![0u8; msg.len()];
        conn.read_exact(&mut back).expect("echo from the isle");
        times.push(t.elapsed());
        assert_eq!(back, msg.as_bytes(), "round {round}");
    }
    drop(conn);
    let start = Instant::now();
    while isle.try_wait().expect("wait for isle 1").is_none() {
        if start.elapsed() > Duration::from_secs(60) {
            let _ = isle.kill();
            panic!("isle 1 did not end after its connection closed");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    // Its output is a few lines: nothing blocked on a full pipe.
    let done = isle.wait_with_output().expect("isle 1 ends");
    let stdout = String::from_utf8_lossy(&done.stdout);
    assert!(
        done.status.success(),
        "isle 1 server: {done:?}\n{stdout}\n{}",
        String::from_utf8_lossy(&done.stderr)
    );
    assert!(stdout.contains("listening on 192.168.28.3:7"), "{stdout}");
    times.sort();
    println!(
        "Linux -> isle: 20 echoes, round trip min {:?}, median {:?}, max {:?}",
        times[0], times[10], times[19]
    );

    let last = bridge.stop();
    println!("bridge: {last}");
    assert!(last.contains("stopped;"), "{last}");
    // The tap goes away with the bridge.
    let gone = Command::new("ip")
        .args(["link", "show", "dev", &tap])
        .output()
        .map(|o| !o.status.success())
        .unwrap_or(true);
    assert!(gone, "tap {tap} still exists after the bridge stopped");
}
