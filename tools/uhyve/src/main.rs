//! `uhyve [OPTIONS] IMAGE [ARGS...]`: runs a hermit image under KVM and
//! exits with its status. Options are parsed by hand: there are few, and
//! start-up time matters.

use std::ffi::OsString;
use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use hermit_hostfs::{Mount, MountError};

const USAGE: &str = "\
Usage: uhyve [OPTIONS] IMAGE [ARGS...]

Runs the hermit image IMAGE in a KVM virtual machine with ARGS as its
arguments and this process's environment, and exits with its status.

Options:
      --mem SIZE         guest memory: bytes or with a K, M, G or T suffix
                         (default 2G; mapped lazily, so large is cheap)
      --cpus N           number of vCPUs, 1 to 64 (default 1, or the length
                         of the --pin list)
      --pin LIST         pin vCPU i's thread to the i-th host core of LIST,
                         e.g. 2,3 or 0-3 or 0-1,4 (cores this process cannot
                         use are skipped with a warning)
      --verbose          print the kernel log to stderr when the VM ends
      --log-level LEVEL  kernel log level: off, error, warn, info, debug or
                         trace (passed as log=LEVEL on the kernel command line)
      --no-native        on a kvm_pvm host, keep the kernel emulated instead of
                         running it natively (native=off on the kernel command
                         line), e.g. for hardware breakpoints; --native (the
                         default) is accepted too
      --mount HOST:GUEST map the existing host directory HOST at the absolute
                         guest path GUEST (repeatable; HOST may contain ':',
                         GUEST may not). The guest reaches nothing outside
                         HOST: no '..' above it, no symlinks out of it, no
                         device files. Without --mount it sees no host files
      --netif NAME       give the guest a virtio-net NIC on the host tap
                         interface NAME (created if missing; needs
                         CAP_NET_ADMIN for that)
      --user-net         give the guest a virtio-net NIC on a user-mode
                         network (no root needed): the guest is 10.0.5.2/24,
                         the host is the gateway 10.0.5.1 (its 127.0.0.1),
                         DNS is relayed at 10.0.5.3; guest connections leave
                         through host sockets
      --forward PORT     forward host 127.0.0.1:PORT to the guest's TCP port
                         PORT (repeatable; implies --user-net)
      --profile FILE     sample the guest's instruction pointer every 1 ms per
                         vCPU and write a flat profile by function to FILE
      --mac MAC          the NIC's MAC address, XX:XX:XX:XX:XX:XX (default:
                         a random locally administered one)
      --isle N           run as multi-kernel isle N (0 to 7): share the isles'
                         memory region (at guest address 0xD0000000) and
                         doorbells, write the kernel log to DIR/isleN/log
      --isle-dir DIR     the isle directory (default $HERMIT_ISLE_DIR, or
                         /dev/shm/hermit-isles-<uid>)
      --isle-mem SIZE    size of the shared region when this isle starts a
                         session (9M to 512M, default 64M); when other isles
                         run it must match theirs
  -h, --help             show this help
";

const DEFAULT_MEM: u64 = 2 << 30;

/// The parsed command line.
#[derive(Debug, PartialEq, Eq)]
struct Cli {
    mem: u64,
    cpus: u32,
    pin: Option<Vec<usize>>,
    verbose: bool,
    log_level: Option<String>,
    native: bool,
    mounts: Vec<Mount>,
    netif: Option<String>,
    user_net: bool,
    forwards: Vec<u16>,
    mac: Option<[u8; 6]>,
    profile: Option<PathBuf>,
    isle: Option<uhyve::IsleConfig>,
    image: PathBuf,
    args: Vec<String>,
}

/// What the command line asks for.
#[derive(Debug, PartialEq, Eq)]
enum Request {
    Help,
    Run(Box<Cli>),
}

fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let digits = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (number, suffix) = s.split_at(digits);
    let number: u64 = number.parse().ok()?;
    let shift = match suffix.to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        "t" | "tb" | "tib" => 40,
        _ => return None,
    };
    number.checked_mul(1 << shift)
}

fn parse(args: impl IntoIterator<Item = OsString>) -> Result<Request, String> {
    let mut args = args.into_iter();
    let mut mem = DEFAULT_MEM;
    let mut cpus = None;
    let mut pin: Option<Vec<usize>> = None;
    let mut verbose = false;
    let mut log_level = None;
    let mut native = true;
    let mut mounts: Vec<Mount> = Vec::new();
    let mut netif = None;
    let mut user_net = false;
    let mut forwards = Vec::new();
    let mut mac = None;
    let mut profile = None;
    let mut isle = None;
    let mut isle_dir = None;
    let mut isle_mem = None;
    let utf8 = |a: OsString| {
        a.into_string()
            .map_err(|a| format!("argument {a:?} is not valid UTF-8"))
    };
    let image = loop {
        let Some(arg) = args.next() else {
            return Err("missing IMAGE (try --help)".into());
        };
        let arg = utf8(arg)?;
        let (name, inline) = match arg.split_once('=') {
            Some((n, v)) if n.starts_with("--") => (n.to_string(), Some(v.to_string())),
            _ => (arg.clone(), None),
        };
        let mut value = |name: &str| match inline.clone() {
            Some(v) => Ok(v),
            None => args
                .next()
                .ok_or_else(|| format!("{name} needs a value"))
                .and_then(utf8),
        };
        match name.as_str() {
            "-h" | "--help" => return Ok(Request::Help),
            "--verbose" => verbose = true,
            "--native" => native = true,
            "--no-native" => native = false,
            "--mem" => {
                let v = value("--mem")?;
                mem = parse_size(&v).ok_or_else(|| {
                    format!(
                        "invalid --mem value '{v}': expected bytes or a number with K, M, G or T"
                    )
                })?;
            }
            "--cpus" => {
                let v = value("--cpus")?;
                cpus = Some(
                    v.parse()
                        .map_err(|_| format!("invalid --cpus value '{v}': expected a number"))?,
                );
            }
            "--pin" => {
                let v = value("--pin")?;
                pin = Some(
                    uhyve::cpus::parse_core_list(&v)
                        .map_err(|e| format!("invalid --pin list '{v}': {e}"))?,
                );
            }
            "--log-level" => {
                let v = value("--log-level")?;
                if !["off", "error", "warn", "info", "debug", "trace"].contains(&v.as_str()) {
                    return Err(format!(
                        "invalid --log-level '{v}': expected off, error, warn, info, debug or trace"
                    ));
                }
                log_level = Some(v);
            }
            "--mount" => {
                let v = value("--mount")?;
                let mount = Mount::parse(&v).map_err(|e| format!("invalid --mount '{v}': {e}"))?;
                if mounts.iter().any(|m| m.guest() == mount.guest()) {
                    let e = MountError::Duplicate(mount.guest().to_owned());
                    return Err(format!("invalid --mount '{v}': {e}"));
                }
                mounts.push(mount);
            }
            "--netif" => {
                let v = value("--netif")?;
                if v.is_empty() || v.len() >= 16 || v.contains(['/', ' ']) {
                    return Err(format!(
                        "invalid --netif '{v}': expected an interface name of 1 to 15 characters"
                    ));
                }
                netif = Some(v);
            }
            "--user-net" => user_net = true,
            "--profile" => profile = Some(PathBuf::from(value("--profile")?)),
            "--forward" => {
                let v = value("--forward")?;
                let port: u16 =
                    v.parse().ok().filter(|p| *p != 0).ok_or_else(|| {
                        format!("invalid --forward '{v}': expected a port 1-65535")
                    })?;
                user_net = true;
                forwards.push(port);
            }
            "--mac" => {
                let v = value("--mac")?;
                mac = Some(uhyve::net::parse_mac(&v).ok_or_else(|| {
                    format!("invalid --mac '{v}': expected six hex bytes like 02:00:00:12:34:56")
                })?);
            }
            "--isle" => {
                let v = value("--isle")?;
                isle = Some(
                    v.parse::<u32>()
                        .ok()
                        .filter(|&n| n < hermit_isles::MAX_ISLES)
                        .ok_or_else(|| {
                            format!(
                                "invalid --isle '{v}': expected an isle number from 0 to {}",
                                hermit_isles::MAX_ISLES - 1
                            )
                        })?,
                );
            }
            "--isle-dir" => {
                let v = value("--isle-dir")?;
                if v.is_empty() {
                    return Err("--isle-dir needs a non-empty path".into());
                }
                isle_dir = Some(PathBuf::from(v));
            }
            "--isle-mem" => {
                let v = value("--isle-mem")?;
                let size = parse_size(&v).ok_or_else(|| {
                    format!("invalid --isle-mem '{v}': expected a size such as 64M")
                })?;
                isle_mem = Some(
                    hermit_isles::check_region_size(size)
                        .map_err(|e| format!("invalid --isle-mem '{v}': {e}"))?,
                );
            }
            "--" => match args.next() {
                Some(image) => break utf8(image)?,
                None => return Err("missing IMAGE (try --help)".into()),
            },
            _ if arg.starts_with('-') && arg.len() > 1 => {
                return Err(format!("unknown option '{arg}' (try --help)"));
            }
            _ => break arg,
        }
    };
    if netif.is_some() && user_net {
        return Err("--netif and --user-net/--forward exclude each other".into());
    }
    if mac.is_some() && netif.is_none() && !user_net {
        return Err("--mac needs --netif or --user-net".into());
    }
    let isle = match isle {
        Some(index) => Some(uhyve::IsleConfig {
            index,
            dir: isle_dir.unwrap_or_else(|| hermit_isles::IsleDir::from_env().path().to_owned()),
            size: isle_mem,
        }),
        None if isle_dir.is_some() || isle_mem.is_some() => {
            return Err("--isle-dir and --isle-mem need --isle".into());
        }
        None => None,
    };
    let mut guest_args = vec![image.clone()];
    for a in args {
        guest_args.push(utf8(a)?);
    }
    let cpus = match (cpus, &pin) {
        (Some(n), _) => n,
        (None, Some(list)) => list.len() as u32,
        (None, None) => 1,
    };
    Ok(Request::Run(Box::new(Cli {
        mem,
        cpus,
        pin,
        verbose,
        log_level,
        native,
        mounts,
        netif,
        user_net,
        forwards,
        mac,
        profile,
        isle,
        image: PathBuf::from(image),
        args: guest_args,
    })))
}

fn main() -> ExitCode {
    let cli = match parse(std::env::args_os().skip(1)) {
        Ok(Request::Help) => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Ok(Request::Run(cli)) => *cli,
        Err(message) => {
            eprintln!("uhyve: {message}");
            return ExitCode::from(2);
        }
    };
    let env = uhyve::host_env();
    let config = uhyve::Config {
        image: cli.image,
        args: cli.args,
        env,
        mem_size: cli.mem,
        cpus: cli.cpus,
        pin: cli.pin,
        cmdline: [
            cli.log_level.map(|l| format!("log={l}")),
            (!cli.native).then(|| "native=off".to_owned()),
        ]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join(" "),
        mounts: cli.mounts,
        profile: cli.profile,
        isle: cli.isle,
    };
    let backend = match cli.netif {
        Some(name) => Some(uhyve::NetBackend::Tap(name)),
        None if cli.user_net => Some(uhyve::NetBackend::User(uhyve::net::user_config(
            &cli.forwards,
        ))),
        None => None,
    };
    let net = backend.map(|backend| {
        let mut net = uhyve::NetConfig::new(backend);
        if let Some(mac) = cli.mac {
            net.mac = mac;
        }
        net
    });
    let outcome = match uhyve::run_with_net(&config, net) {
        Ok(outcome) => outcome,
        Err(e) => {
            eprintln!("uhyve: {e}");
            return ExitCode::FAILURE;
        }
    };
    if cli.verbose {
        let mut err = std::io::stderr().lock();
        let _ = err.write_all(&outcome.kernel_log);
        if !outcome.kernel_log.ends_with(b"\n") && !outcome.kernel_log.is_empty() {
            let _ = writeln!(err);
        }
    }
    if let Some(reason) = &outcome.abnormal {
        eprintln!("uhyve: the VM ended abnormally: {reason}");
    }
    // Exit statuses are 8 bits on Unix; `exit` truncates like a C program's.
    std::process::exit(outcome.status)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(args: &[&str]) -> Result<Request, String> {
        parse(args.iter().map(OsString::from))
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("512M"), Some(512 << 20));
        assert_eq!(parse_size("2G"), Some(2 << 30));
        assert_eq!(parse_size("2gib"), Some(2 << 30));
        assert_eq!(parse_size("4096"), Some(4096));
        assert_eq!(parse_size("1T"), Some(1 << 40));
        for bad in [
            "",
            "M",
            "2X",
            "-1G",
            "1.5G",
            "99999999999999999999",
            "20000000000G",
        ] {
            assert_eq!(parse_size(bad), None, "{bad}");
        }
    }

    #[test]
    fn options_then_image_then_guest_args() {
        let Ok(Request::Run(cli)) = run(&[
            "--mem",
            "512M",
            "--cpus=1",
            "--verbose",
            "--log-level",
            "debug",
            "img",
            "--mem",
            "x",
        ]) else {
            panic!("parse failed");
        };
        assert_eq!(
            *cli,
            Cli {
                mem: 512 << 20,
                cpus: 1,
                pin: None,
                verbose: true,
                log_level: Some("debug".into()),
                native: true,
                mounts: Vec::new(),
                netif: None,
                user_net: false,
                forwards: Vec::new(),
                profile: None,
                isle: None,
                mac: None,
                image: "img".into(),
                args: vec!["img".into(), "--mem".into(), "x".into()],
            }
        );
        let Ok(Request::Run(cli)) = run(&["--", "-img"]) else {
            panic!("parse failed");
        };
        assert_eq!(cli.image, PathBuf::from("-img"));
        assert_eq!(cli.mem, DEFAULT_MEM);
        assert_eq!(run(&["--help", "x"]), Ok(Request::Help));
    }

    #[test]
    fn pin_lists_set_the_cpu_count() {
        let Ok(Request::Run(cli)) = run(&["--pin", "0-1,4", "img"]) else {
            panic!("parse failed");
        };
        assert_eq!((cli.cpus, cli.pin), (3, Some(vec![0, 1, 4])));
        // An explicit count is kept; uhyve::run reports a mismatch.
        let Ok(Request::Run(cli)) = run(&["--pin=1", "--cpus", "2", "img"]) else {
            panic!("parse failed");
        };
        assert_eq!((cli.cpus, cli.pin), (2, Some(vec![1])));
        for bad in ["3-1", "a", "1,,2", "", "1,1"] {
            let err = run(&["--pin", bad, "img"]).unwrap_err();
            assert!(err.starts_with("invalid --pin list"), "{err}");
        }
    }

    #[test]
    fn mounts_are_repeatable_and_checked() {
        let dir = std::env::temp_dir();
        let host = dir.to_str().unwrap();
        let (a, b) = (format!("{host}:/a"), format!("--mount={host}:/b/c"));
        let Ok(Request::Run(cli)) = run(&["--mount", &a, &b, "img", "--mount", "x"]) else {
            panic!("parse failed");
        };
        let guests: Vec<&str> = cli.mounts.iter().map(Mount::guest).collect();
        assert_eq!(guests, ["/a", "/b/c"]);
        assert_eq!(cli.mounts[0].host(), dir);
        assert_eq!(cli.args, ["img", "--mount", "x"], "guest arguments stay");

        for (spec, needle) in [
            ("nocolon".to_owned(), "is not HOST:GUEST"),
            ("/nonexistent/dir:/x".to_owned(), "no such directory"),
            (format!("{host}:rel"), "is not absolute"),
            (format!("{host}:/"), "cannot be a mount point"),
            (format!("{host}:/a/../b"), "not normalised"),
        ] {
            let err = run(&["--mount", &spec, "img"]).unwrap_err();
            assert!(
                err.starts_with(&format!("invalid --mount '{spec}': ")),
                "{err}"
            );
            assert!(err.contains(needle), "{err}");
        }
        let err = run(&["--mount", &a, "--mount", &a, "img"]).unwrap_err();
        assert!(err.contains("mapped twice"), "{err}");
        assert!(run(&["--mount"]).unwrap_err().contains("needs a value"));
    }

    #[test]
    fn net_options() {
        let Ok(Request::Run(cli)) = run(&["--netif", "tap0", "--mac=02:00:00:00:00:01", "img"])
        else {
            panic!("parse failed");
        };
        assert_eq!(cli.netif.as_deref(), Some("tap0"));
        assert_eq!(cli.mac, Some([2, 0, 0, 0, 0, 1]));
        assert!(
            run(&["--mac", "02:00:00:00:00:01", "img"])
                .unwrap_err()
                .contains("needs --netif")
        );
        assert!(
            run(&["--netif", "a/b", "img"])
                .unwrap_err()
                .starts_with("invalid --netif")
        );
        assert!(
            run(&["--netif", "t", "--mac", "1:2", "img"])
                .unwrap_err()
                .starts_with("invalid --mac")
        );
        let Ok(Request::Run(cli)) = run(&["--forward", "8080", "--forward=9000", "img"]) else {
            panic!("parse failed");
        };
        assert!(cli.user_net && cli.netif.is_none());
        assert_eq!(cli.forwards, [8080, 9000]);
        for bad in ["0", "70000", "x"] {
            let err = run(&["--forward", bad, "img"]).unwrap_err();
            assert!(err.starts_with("invalid --forward"), "{err}");
        }
        let err = run(&["--netif", "t", "--user-net", "img"]).unwrap_err();
        assert!(err.contains("exclude each other"), "{err}");
    }

    #[test]
    fn isle_options() {
        let Ok(Request::Run(cli)) =
            run(&["--isle", "3", "--isle-dir=/d", "--isle-mem", "16M", "img"])
        else {
            panic!("parse failed");
        };
        assert_eq!(
            cli.isle,
            Some(uhyve::IsleConfig {
                index: 3,
                dir: "/d".into(),
                size: Some(16 << 20)
            })
        );
        let Ok(Request::Run(cli)) = run(&["--isle", "0", "img"]) else {
            panic!("parse failed");
        };
        let isle = cli.isle.unwrap();
        assert_eq!((isle.index, isle.size), (0, None));
        assert!(!isle.dir.as_os_str().is_empty());
        for (args, needle) in [
            (
                &["--isle", "8", "img"][..],
                "invalid --isle '8': expected an isle number from 0 to 7",
            ),
            (&["--isle", "x", "img"], "invalid --isle 'x'"),
            (
                &["--isle", "0", "--isle-mem", "1M", "img"],
                "invalid --isle-mem '1M': a shared region of 1048576 bytes",
            ),
            (
                &["--isle", "0", "--isle-mem", "lots", "img"],
                "invalid --isle-mem 'lots'",
            ),
            (&["--isle-mem", "16M", "img"], "need --isle"),
            (&["--isle-dir", "/d", "img"], "need --isle"),
            (&["--isle", "0", "--isle-dir=", "img"], "non-empty"),
        ] {
            let err = run(args).unwrap_err();
            assert!(err.contains(needle), "{args:?}: {err}");
            assert!(!err.contains('\n'), "{err}");
        }
    }

    #[test]
    fn errors_are_one_line() {
        for args in [
            &[][..],
            &["--mem"],
            &["--mem", "lots", "img"],
            &["--cpus", "two", "img"],
            &["--log-level", "loud", "img"],
            &["--bogus", "img"],
            &["--mount", "/nonexistent:/x", "img"],
            &["--"],
        ] {
            let err = run(args).unwrap_err();
            assert!(!err.contains('\n'), "{err}");
        }
    }
}
