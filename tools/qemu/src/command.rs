//! The QEMU command line.

use std::ffi::OsString;
use std::path::Path;

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
}

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
pub fn qemu_args(spec: &Spec<'_>) -> Vec<OsString> {
    let mut args: Vec<OsString> = Vec::with_capacity(40);
    let mut push = |items: &[&str]| args.extend(items.iter().map(OsString::from));
    let mem_mib = spec.mem_size.div_ceil(1 << 20).max(1);
    push(&[
        "-M",
        "microvm,isa-serial=off",
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
}
