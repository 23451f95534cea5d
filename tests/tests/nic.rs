//! Network cards: `nic-check` (ARP with the gateway, ICMP echoes of 74
//! bytes and of the card's MTU, all answered by the user-mode network,
//! received by interrupt) on each card model under QEMU and on uhyve's virtio-net (user-mode networking,
//! `hermit-usernet`), the pcap capture, the proxy's network variables.

use std::net::TcpListener;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use boot_tests::{Hypervisor, Output, built, require, run_with_limit};

/// A TCP port nobody listens on right now.
fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

fn proxy_in(dir: &Path, app: &str, env: &[(&str, String)]) -> Output {
    let b = built();
    let mut cmd = Command::new(&b.proxy);
    cmd.arg(b.app(app))
        .current_dir(dir)
        .env("HERMIT_ISLE", "qemu")
        .env("HERMIT_MEM", "256M");
    for (k, v) in env {
        cmd.env(k, v);
    }
    run_with_limit(cmd, Duration::from_secs(120))
}

fn scratch(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("hermit-nic-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

fn assert_talked(out: &Output, model: &str) {
    assert!(out.stdout.contains("mac 52:54:00:12:34:56"), "{out:?}");
    // QEMU's user networking offers no MTU: the standard 1500.
    assert!(out.stdout.contains("mtu 1500\n"), "{out:?}");
    assert_exchanged(out, model);
}

/// The card's model, the ARP exchange with the gateway, the echo reply and
/// receiving by interrupt (any MAC).
fn assert_exchanged(out: &Output, model: &str) {
    assert_eq!(out.status, Some(0), "{out:?}");
    assert!(out.stdout.contains(&format!("model {model}\n")), "{out:?}");
    assert!(
        out.stdout.contains("gateway 10.0.5.1 is 52:55:0a:00:05:01"),
        "{out:?}"
    );
    assert!(out.stdout.contains("\necho reply from 10.0.5.3"), "{out:?}");
    assert!(
        out.stdout.contains("full-size echo reply from 10.0.5.3"),
        "{out:?}"
    );
    let irqs: u32 = out
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("interrupts "))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(irqs >= 2, "received by interrupt: {out:?}");
}

/// The Ethernet frames of a pcap file (checks the global header).
fn pcap_frames(bytes: &[u8]) -> Vec<&[u8]> {
    assert!(bytes.len() >= 24, "pcap too short: {} bytes", bytes.len());
    let magic = u32::from_le_bytes(bytes[0..4].try_into().unwrap());
    assert_eq!(
        magic, 0xa1b2_c3d4,
        "pcap magic (little-endian, microseconds)"
    );
    let linktype = u32::from_le_bytes(bytes[20..24].try_into().unwrap());
    assert_eq!(linktype, 1, "Ethernet link type");
    let mut frames = Vec::new();
    let mut at = 24;
    while at + 16 <= bytes.len() {
        let caplen = u32::from_le_bytes(bytes[at + 8..at + 12].try_into().unwrap()) as usize;
        let data = &bytes[at + 16..];
        assert!(caplen <= data.len(), "truncated pcap record");
        frames.push(&data[..caplen]);
        at += 16 + caplen;
    }
    assert_eq!(at, bytes.len(), "trailing bytes in the pcap");
    frames
}

fn check_capture(dir: &Path) {
    let bytes = std::fs::read(dir.join("qemu-vlan0.pcap")).expect("qemu-vlan0.pcap written");
    let frames = pcap_frames(&bytes);
    let arps = frames
        .iter()
        .filter(|f| f.len() >= 14 && f[12..14] == [0x08, 0x06])
        .count();
    assert!(
        arps >= 2,
        "ARP request and reply captured: {arps} of {}",
        frames.len()
    );
    let icmp = frames
        .iter()
        .filter(|f| f.len() >= 34 && f[12..14] == [0x08, 0x00] && f[23] == 1)
        .count();
    assert!(icmp >= 2, "echo request and reply captured");
}

#[test]
fn virtio_net_pci_on_qemu() {
    if !require(Hypervisor::Qemu, "virtio_net_pci_on_qemu") {
        return;
    }
    let dir = scratch("virtio");
    // Forward and monitor options must be accepted by QEMU too.
    let out = proxy_in(
        &dir,
        "nic-check",
        &[
            ("HERMIT_CAPTURE_NET", "1".into()),
            ("HERMIT_APP_PORT", free_port().to_string()),
            ("HERMIT_MONITOR", "1".into()),
            ("HERMIT_PORT", (free_port() - 1).to_string()),
        ],
    );
    assert_talked(&out, "virtio-net");
    check_capture(&dir);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn rtl8139_on_qemu() {
    if !require(Hypervisor::Qemu, "rtl8139_on_qemu") {
        return;
    }
    let dir = scratch("rtl8139");
    let out = proxy_in(
        &dir,
        "nic-check-rtl8139",
        &[("HERMIT_CAPTURE_NET", "1".into())],
    );
    assert_talked(&out, "rtl8139");
    check_capture(&dir);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn virtio_net_mmio_on_qemu() {
    if !require(Hypervisor::Qemu, "virtio_net_mmio_on_qemu") {
        return;
    }
    let b = built();
    let mut config = hermit_qemu::Config::new(b.app("nic-check"), b.app("pvh-loader"));
    config.mem_size = 256 << 20;
    config.net = Some(hermit_qemu::NetConfig::new(
        hermit_qemu::NicModel::VirtioNetMmio,
    ));
    let mut stdout = Vec::new();
    let mut stderr = Vec::new();
    let outcome = hermit_qemu::run_with(
        &config,
        hermit_qemu::Streams {
            stdout: &mut stdout,
            stderr: &mut stderr,
            timeout: Some(Duration::from_secs(120)),
        },
    )
    .expect("QEMU runs");
    let out = Output {
        status: Some(outcome.status),
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
    };
    assert_eq!(outcome.abnormal, None, "{out:?}");
    assert_talked(&out, "virtio-net");
}

#[test]
fn virtio_net_on_uhyve() {
    if !require(Hypervisor::Uhyve, "virtio_net_on_uhyve") {
        return;
    }
    let out = boot_tests::proxy(
        Hypervisor::Uhyve,
        "nic-check",
        &[],
        &[("HERMIT_MEM", "256M")],
    );
    assert_exchanged(&out, "virtio-net");
    // uhyve's default MAC is locally administered: 02:48:xx:xx:xx:xx.
    assert!(out.stdout.contains("mac 02:48:"), "{out:?}");
    // uhyve's user-mode networking offers jumbo frames, and the full-size
    // ping above crossed it in 9014-byte frames both ways.
    assert!(out.stdout.contains("mtu 9000\n"), "{out:?}");
}

#[test]
fn rtl8139_image_is_refused_on_uhyve() {
    if !require(Hypervisor::Uhyve, "rtl8139_image_is_refused_on_uhyve") {
        return;
    }
    let out = boot_tests::proxy(Hypervisor::Uhyve, "nic-check-rtl8139", &[], &[]);
    assert_eq!(out.status, Some(125), "{out:?}");
    let lines: Vec<&str> = out.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{out:?}");
    assert!(
        lines[0].starts_with("proxy: ") && lines[0].contains("uhyve offers virtio-net"),
        "{out:?}"
    );
}

#[test]
fn bad_network_variables_fail_cleanly() {
    let dir = scratch("badenv");
    for (name, value) in [
        ("HERMIT_APP_PORT", "http"),
        ("HERMIT_APP_PORT", "0"),
        ("HERMIT_CAPTURE_NET", "maybe"),
        ("HERMIT_MONITOR", "2"),
        ("HERMIT_PORT", "65535"),
    ] {
        // HERMIT_PORT is only read for the monitor.
        let mut env = vec![(name, value.to_owned())];
        if name == "HERMIT_PORT" {
            env.push(("HERMIT_MONITOR", "1".into()));
        }
        let out = proxy_in(&dir, "nic-check", &env);
        assert_eq!(out.status, Some(125), "{name}={value}: {out:?}");
        assert_eq!(out.stderr.lines().count(), 1, "{out:?}");
        assert!(
            out.stderr.starts_with(&format!("proxy: {name}=")),
            "{out:?}"
        );
        assert!(!out.stderr.contains("panicked"), "{out:?}");
        assert!(out.stdout.is_empty(), "{out:?}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
