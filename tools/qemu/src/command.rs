//! The QEMU command line.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use hermit_interface::qemu::DEBUG_EXIT_PORT;

/// The accelerator QEMU runs the guest with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Accel {
    /// Hardware virtualisation through `/dev/kvm`.
    Kvm,
    /// QEMU's software emulation.
    Tcg,
}

impl Accel {
    /// The name QEMU and [`crate::Outcome::accel`] use.
    pub fn name(self) -> &'static str {
        match self {
            Self::Kvm => "kvm",
            Self::Tcg => "tcg",
        }
    }
}

/// Files the three serial ports write to, in port order COM1, COM2, COM3
/// (paths QEMU can open for writing, e.g. `/dev/fd/7`).
pub type SerialPaths = [String; 3];

/// What goes on QEMU's command line besides the binary's name.
pub struct Spec<'a> {
    /// The PVH loader (`-kernel`).
    pub loader: &'a Path,
    /// The bundle (`-initrd`).
    pub bundle: &'a Path,
    /// Guest RAM in bytes (rounded up to whole MiB).
    pub mem_size: u64,
    /// Number of vCPUs.
    pub cpus: u32,
    /// How to run the guest.
    pub accel: Accel,
    /// Wait for gdb on TCP port 1234 before the first instruction.
    pub debug: bool,
    /// Add the `isa-debug-exit` device. Without it the kernel powers the VM
    /// off through ACPI and the status comes from the exit record alone.
    pub debug_exit: bool,
    /// Where COM1 (stdout), COM2 (stderr) and COM3 (kernel log) go.
    pub serial: &'a SerialPaths,
    /// A connected socket for the guest's file-system stream: becomes port
    /// 0 of a virtio console on a virtio-mmio slot.
    pub files_fd: Option<i32>,
    /// A network card on user-mode networking.
    pub net: Option<&'a NetConfig>,
    /// The shared region of a multi-kernel isle, as `ivshmem-plain`.
    pub isle: Option<&'a IsleConfig>,
}

/// Membership in a group of isles (multi-kernel): the guest is isle
/// `index` and gets the host file `region` (shared with the other isles
/// and the host) as an `ivshmem-plain` PCI device, whose BAR 2 the kernel
/// finds and assigns. Doorbells are not offered: isles poll.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IsleConfig {
    /// The isle number, `0..hermit_interface::isle::MAX_ISLES`.
    pub index: u32,
    /// The region file (e.g. under `/dev/shm`); it must exist and hold at
    /// least `size` bytes.
    pub region: PathBuf,
    /// The region's size: a power of two between
    /// `hermit_interface::isle::REGION_MIN` and [`IsleConfig::MAX_SIZE`].
    pub size: u64,
}

impl IsleConfig {
    /// Largest region under QEMU: BAR 2 must fit, naturally aligned, into
    /// the 512 MiB PCI window below 4 GiB beside the other BARs.
    pub const MAX_SIZE: u64 = 256 << 20;

    /// Checks the index and size; the message says what is wrong.
    pub fn check(&self) -> Result<(), String> {
        use hermit_interface::isle::{MAX_ISLES, REGION_MIN};
        if self.index >= MAX_ISLES {
            return Err(format!(
                "isle number {} is not below {MAX_ISLES}",
                self.index
            ));
        }
        if !self.size.is_power_of_two() || self.size < REGION_MIN || self.size > Self::MAX_SIZE {
            return Err(format!(
                "isle region size {:#x} is not a power of two between {REGION_MIN:#x} and {:#x}",
                self.size,
                Self::MAX_SIZE
            ));
        }
        Ok(())
    }
}

/// The network card model the guest gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NicModel {
    /// Realtek RTL8139 on PCI (`rtl8139`).
    Rtl8139,
    /// Modern virtio-net on PCI with MSI-X (`virtio-net-pci`, device
    /// 0x1041, what uhyve offers too).
    VirtioNet,
    /// virtio-net on a virtio-mmio slot (`virtio-net-device`): no PCI bus.
    VirtioNetMmio,
}

impl NicModel {
    /// The model named by an image's `.note.hermit` NIC note (`"rtl8139"`,
    /// `"virtio-net"`).
    pub fn from_note(model: &str) -> Option<Self> {
        match model {
            "rtl8139" => Some(Self::Rtl8139),
            "virtio-net" => Some(Self::VirtioNet),
            _ => None,
        }
    }

    /// Whether the card sits on PCI (the machine then needs `pcie=on`).
    pub const fn needs_pci(self) -> bool {
        !matches!(self, Self::VirtioNetMmio)
    }

    /// QEMU's `-device` driver name.
    pub const fn device(self) -> &'static str {
        match self {
            Self::Rtl8139 => "rtl8139",
            // Modern only, so it is device 0x1041 as on uhyve.
            Self::VirtioNet => "virtio-net-pci,disable-legacy=on",
            Self::VirtioNetMmio => "virtio-net-device",
        }
    }
}

/// The guest's network: a card on QEMU's user-mode network (no root
/// needed): guest 10.0.5.2/24, gateway 10.0.5.1, DNS 10.0.5.3.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NetConfig {
    /// The card.
    pub model: NicModel,
    /// Guest TCP ports reachable from the host at 127.0.0.1, same port.
    pub forwards: Vec<u16>,
    /// Write every frame to this pcap file (`filter-dump`).
    pub capture: Option<PathBuf>,
    /// Serve QEMU's monitor on this TCP port of 127.0.0.1 (telnet).
    pub monitor_port: Option<u16>,
}

impl NetConfig {
    /// A `model` card with no forwards, capture or monitor.
    pub fn new(model: NicModel) -> Self {
        Self {
            model,
            forwards: Vec::new(),
            capture: None,
            monitor_port: None,
        }
    }
}

/// The user-mode network's subnet, as QEMU's `net=` option.
pub const GUEST_NET: &str = "10.0.5.0/24";
/// The guest's address.
pub const GUEST_IP: &str = "10.0.5.2";
/// The gateway (the host side of user-mode networking).
pub const GATEWAY_IP: &str = "10.0.5.1";
/// The DNS forwarder's address.
pub const DNS_IP: &str = "10.0.5.3";

/// Escapes `,` for a QEMU option value.
fn opt_value(s: &str) -> String {
    s.replace(',', ",,")
}

/// Builds QEMU's arguments for `spec`.
///
/// `microvm` boots a PVH ELF in tens of milliseconds and, with
/// `isa-serial=off`, leaves the ISA bus free for exactly the three UARTs
/// (index 0..=2 → ports 0x3f8, 0x2f8, 0x3e8) and `isa-debug-exit`. Its ACPI
/// tables (on by default: MADT for the CPUs, hardware-reduced FADT and a
/// DSDT with `\_S5` for power-off) are found through the PVH start info.
///
/// A PCI network card or an isle region (`ivshmem-plain`) turns on
/// `pcie=on`: a GPEX host bridge with ECAM at
/// 0xe000_0000 (named by the MCFG table) and a 32-bit window at
/// 0xc000_0000; nothing assigns BARs, the kernel does. Its INTx lines are
/// GSI 16-19 and virtio-mmio slot *n* is GSI 24 + *n* (the second I/O
/// APIC). Without a card, or with a virtio-mmio one, the machine has no PCI
/// bus.
pub fn qemu_args(spec: &Spec<'_>) -> Vec<OsString> {
    let mut args: Vec<OsString> = Vec::with_capacity(40);
    let mut push = |items: &[&str]| args.extend(items.iter().map(OsString::from));
    let mem_mib = spec.mem_size.div_ceil(1 << 20).max(1);
    let pci = spec.net.is_some_and(|n| n.model.needs_pci()) || spec.isle.is_some();
    push(&[
        "-M",
        if pci {
            "microvm,isa-serial=off,pcie=on"
        } else {
            "microvm,isa-serial=off"
        },
        "-nodefaults",
        "-no-user-config",
        "-no-reboot",
    ]);
    push(&[
        "-display",
        "none",
        "-m",
        &format!("{mem_mib}M"),
        "-smp",
        &spec.cpus.max(1).to_string(),
    ]);
    match spec.accel {
        // `-cpu host` alone aborts on this QEMU ("failed to set MSR 0x10a").
        Accel::Kvm => push(&["-accel", "kvm", "-cpu", "host,-arch-capabilities"]),
        Accel::Tcg => push(&["-accel", "tcg", "-cpu", "max"]),
    }
    for (index, path) in spec.serial.iter().enumerate() {
        push(&[
            "-chardev",
            &format!("file,id=com{},path={}", index + 1, opt_value(path)),
            "-device",
            &format!("isa-serial,chardev=com{},index={index}", index + 1),
        ]);
    }
    if spec.debug_exit {
        push(&[
            "-device",
            &format!("isa-debug-exit,iobase={DEBUG_EXIT_PORT:#x},iosize=0x04"),
        ]);
    }
    if let Some(fd) = spec.files_fd {
        push(&[
            "-chardev",
            &format!("socket,id=hostfs,fd={fd}"),
            "-device",
            "virtio-serial-device,max_ports=1",
            "-device",
            "virtconsole,chardev=hostfs",
        ]);
    }
    if let Some(net) = spec.net {
        let mut netdev = format!("user,id=net0,net={GUEST_NET},host={GATEWAY_IP},dns={DNS_IP}");
        for port in &net.forwards {
            netdev.push_str(&format!(",hostfwd=tcp:127.0.0.1:{port}-{GUEST_IP}:{port}"));
        }
        push(&[
            "-netdev",
            &netdev,
            "-device",
            &format!("{},netdev=net0", net.model.device()),
        ]);
        if let Some(file) = &net.capture {
            push(&[
                "-object",
                &format!(
                    "filter-dump,id=f0,netdev=net0,file={}",
                    opt_value(&file.to_string_lossy())
                ),
            ]);
        }
        if let Some(port) = net.monitor_port {
            push(&[
                "-monitor",
                &format!("telnet:127.0.0.1:{port},server,nowait"),
            ]);
        }
    }
    if let Some(isle) = spec.isle {
        push(&[
            "-object",
            &format!(
                "memory-backend-file,id=isle,mem-path={},size={},share=on",
                opt_value(&isle.region.to_string_lossy()),
                isle.size
            ),
            "-device",
            "ivshmem-plain,memdev=isle",
        ]);
    }
    if spec.debug {
        push(&["-s", "-S"]);
    }
    args.push("-kernel".into());
    args.push(spec.loader.into());
    args.push("-initrd".into());
    args.push(spec.bundle.into());
    args
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec_args(accel: Accel, debug: bool) -> Vec<String> {
        spec_args_with(accel, debug, true)
    }

    fn spec_args_with(accel: Accel, debug: bool, debug_exit: bool) -> Vec<String> {
        let serial = ["/dev/fd/5".into(), "/dev/fd/6".into(), "/tmp/a,b".into()];
        let spec = Spec {
            loader: Path::new("/l/pvh-loader"),
            bundle: Path::new("/dev/fd/9"),
            mem_size: 512 * (1 << 20) + 1,
            cpus: 2,
            accel,
            debug,
            debug_exit,
            serial: &serial,
            files_fd: None,
            net: None,
            isle: None,
        };
        qemu_args(&spec)
            .into_iter()
            .map(|s| s.into_string().unwrap())
            .collect()
    }

    fn has_pair(args: &[String], a: &str, b: &str) -> bool {
        args.windows(2).any(|w| w[0] == a && w[1] == b)
    }

    #[test]
    fn kvm_command_line() {
        let args = spec_args(Accel::Kvm, false);
        assert!(has_pair(&args, "-M", "microvm,isa-serial=off"));
        assert!(has_pair(&args, "-accel", "kvm"));
        assert!(has_pair(&args, "-cpu", "host,-arch-capabilities"));
        assert!(has_pair(&args, "-m", "513M"), "rounded up to whole MiB");
        assert!(has_pair(&args, "-smp", "2"));
        assert!(has_pair(&args, "-kernel", "/l/pvh-loader"));
        assert!(has_pair(&args, "-initrd", "/dev/fd/9"));
        assert!(has_pair(
            &args,
            "-device",
            "isa-debug-exit,iobase=0xf4,iosize=0x04"
        ));
        assert!(args.contains(&"-no-reboot".to_string()));
        assert!(!args.contains(&"-S".to_string()));
    }

    #[test]
    fn serial_ports_in_order() {
        let args = spec_args(Accel::Tcg, false);
        assert!(has_pair(&args, "-chardev", "file,id=com1,path=/dev/fd/5"));
        assert!(has_pair(
            &args,
            "-device",
            "isa-serial,chardev=com1,index=0"
        ));
        assert!(has_pair(&args, "-chardev", "file,id=com2,path=/dev/fd/6"));
        assert!(has_pair(
            &args,
            "-device",
            "isa-serial,chardev=com2,index=1"
        ));
        assert!(
            has_pair(&args, "-chardev", "file,id=com3,path=/tmp/a,,b"),
            "commas escaped"
        );
        assert!(has_pair(
            &args,
            "-device",
            "isa-serial,chardev=com3,index=2"
        ));
    }

    #[test]
    fn debug_exit_is_optional() {
        let args = spec_args_with(Accel::Kvm, false, false);
        assert!(
            !args.iter().any(|a| a.contains("isa-debug-exit")),
            "{args:?}"
        );
        assert!(has_pair(&args, "-M", "microvm,isa-serial=off"));
    }

    #[test]
    fn tcg_and_debug() {
        let args = spec_args(Accel::Tcg, true);
        assert!(has_pair(&args, "-accel", "tcg"));
        assert!(!args.iter().any(|a| a.contains("host")));
        assert!(has_pair(&args, "-s", "-S"));
    }

    #[test]
    fn file_stream_is_a_virtio_console_on_the_socket() {
        let serial = ["a".into(), "b".into(), "c".into()];
        let mut spec = Spec {
            loader: Path::new("/l"),
            bundle: Path::new("/b"),
            mem_size: 1 << 20,
            cpus: 1,
            accel: Accel::Tcg,
            debug: false,
            debug_exit: true,
            serial: &serial,
            files_fd: None,
            net: None,
            isle: None,
        };
        let strings = |spec: &Spec<'_>| -> Vec<String> {
            qemu_args(spec)
                .into_iter()
                .map(|s| s.into_string().unwrap())
                .collect()
        };
        assert!(!strings(&spec).iter().any(|a| a.contains("virtconsole")));
        spec.files_fd = Some(7);
        let args = strings(&spec);
        assert!(has_pair(&args, "-chardev", "socket,id=hostfs,fd=7"));
        assert!(has_pair(&args, "-device", "virtconsole,chardev=hostfs"));
    }

    #[test]
    fn isle_region_is_ivshmem_on_pcie() {
        let serial = ["a".into(), "b".into(), "c".into()];
        let isle = IsleConfig {
            index: 1,
            region: PathBuf::from("/dev/shm/r,1"),
            size: 16 << 20,
        };
        let spec = Spec {
            loader: Path::new("/l"),
            bundle: Path::new("/b"),
            mem_size: 1 << 20,
            cpus: 1,
            accel: Accel::Tcg,
            debug: false,
            debug_exit: true,
            serial: &serial,
            files_fd: None,
            net: None,
            isle: Some(&isle),
        };
        let args: Vec<String> = qemu_args(&spec)
            .into_iter()
            .map(|s| s.into_string().unwrap())
            .collect();
        assert!(has_pair(&args, "-M", "microvm,isa-serial=off,pcie=on"));
        assert!(has_pair(
            &args,
            "-object",
            "memory-backend-file,id=isle,mem-path=/dev/shm/r,,1,size=16777216,share=on"
        ));
        assert!(has_pair(&args, "-device", "ivshmem-plain,memdev=isle"));
        assert_eq!(isle.check(), Ok(()));
        let bad = |index, size| {
            IsleConfig {
                index,
                region: PathBuf::new(),
                size,
            }
            .check()
            .unwrap_err()
        };
        assert!(bad(8, 16 << 20).contains("isle number 8"));
        assert!(bad(0, 24 << 20).contains("power of two"));
        assert!(bad(0, 4 << 20).contains("power of two"));
        assert!(bad(0, 512 << 20).contains("power of two"));
    }

    #[test]
    fn network_options() {
        let serial = ["a".into(), "b".into(), "c".into()];
        let strings = |net: Option<&NetConfig>| -> Vec<String> {
            let spec = Spec {
                loader: Path::new("/l"),
                bundle: Path::new("/b"),
                mem_size: 1 << 20,
                cpus: 1,
                accel: Accel::Tcg,
                debug: false,
                debug_exit: true,
                serial: &serial,
                files_fd: None,
                net,
                isle: None,
            };
            qemu_args(&spec)
                .into_iter()
                .map(|s| s.into_string().unwrap())
                .collect()
        };
        let plain = strings(None);
        assert!(has_pair(&plain, "-M", "microvm,isa-serial=off"));
        assert!(!plain.iter().any(|a| a.contains("netdev")));

        let mut net = NetConfig::new(NicModel::Rtl8139);
        net.forwards = vec![8080, 9000];
        net.capture = Some(PathBuf::from("/tmp/x,y.pcap"));
        net.monitor_port = Some(18767);
        let args = strings(Some(&net));
        assert!(has_pair(&args, "-M", "microvm,isa-serial=off,pcie=on"));
        assert!(has_pair(
            &args,
            "-netdev",
            "user,id=net0,net=10.0.5.0/24,host=10.0.5.1,dns=10.0.5.3,\
             hostfwd=tcp:127.0.0.1:8080-10.0.5.2:8080,hostfwd=tcp:127.0.0.1:9000-10.0.5.2:9000"
        ));
        assert!(has_pair(&args, "-device", "rtl8139,netdev=net0"));
        assert!(has_pair(
            &args,
            "-object",
            "filter-dump,id=f0,netdev=net0,file=/tmp/x,,y.pcap"
        ));
        assert!(has_pair(
            &args,
            "-monitor",
            "telnet:127.0.0.1:18767,server,nowait"
        ));

        let args = strings(Some(&NetConfig::new(NicModel::VirtioNet)));
        assert!(has_pair(
            &args,
            "-device",
            "virtio-net-pci,disable-legacy=on,netdev=net0"
        ));
        assert!(
            !args
                .iter()
                .any(|a| a.contains("monitor") || a.contains("filter"))
        );
        let args = strings(Some(&NetConfig::new(NicModel::VirtioNetMmio)));
        assert!(has_pair(&args, "-M", "microvm,isa-serial=off"));
        assert!(has_pair(&args, "-device", "virtio-net-device,netdev=net0"));
        assert_eq!(NicModel::from_note("rtl8139"), Some(NicModel::Rtl8139));
        assert_eq!(NicModel::from_note("virtio-net"), Some(NicModel::VirtioNet));
        assert_eq!(NicModel::from_note("e1000"), None);
    }
}
