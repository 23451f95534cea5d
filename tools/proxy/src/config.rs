//! The proxy's configuration, read from `HERMIT_*` environment variables.

use std::fmt;

use hermit_hostfs::{Mount, MountError};

/// Default `HERMIT_PORT`, as in the original HermitCore proxy.
pub const DEFAULT_PORT: u16 = 18766;

/// Default guest memory, as in the original HermitCore proxy.
pub const DEFAULT_MEM: u64 = 2 << 30;

/// Which hypervisor runs the image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Isle {
    /// uhyve, our KVM hypervisor (default).
    Uhyve,
    /// QEMU with the PVH loader.
    Qemu,
}

/// Everything the proxy reads from the environment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// `HERMIT_ISLE`: the hypervisor.
    pub isle: Isle,
    /// `HERMIT_ISLE=N` or `uhyve:N`: run as multi-kernel isle N, in the
    /// isle directory `HERMIT_ISLE_DIR` with a region of `HERMIT_ISLE_SHM`
    /// bytes if this isle starts the session.
    pub isle_member: Option<uhyve::IsleConfig>,
    /// `HERMIT_CPUS`: the number of vCPUs (a count, or the length of a
    /// core list).
    pub cpus: u32,
    /// `HERMIT_CPUS` as a core list (`3-5`, `1,3`, `0-1,4`): vCPU `i`'s
    /// thread is pinned to the `i`-th core (uhyve only; QEMU ignores it).
    pub pin: Option<Vec<usize>>,
    /// `HERMIT_MEM`, in bytes.
    pub mem: u64,
    /// `HERMIT_VERBOSE=1`: print the kernel log when the app ends.
    pub verbose: bool,
    /// `HERMIT_NATIVE` (default 1): on a `kvm_pvm` host the kernel runs
    /// natively; 0 keeps it emulated (`native=off`). `HERMIT_DEBUG=1`
    /// implies 0: hardware breakpoints only fire in emulated code.
    pub native: bool,
    /// `HERMIT_KVM` (QEMU only): false means TCG.
    pub kvm: bool,
    /// `HERMIT_DEBUG=1` (QEMU only): wait for gdb on port 1234.
    pub debug: bool,
    /// `HERMIT_LOG_LEVEL`: the kernel's log level.
    pub log_level: Option<String>,
    /// `HERMIT_MOUNT`: host directories mapped into the guest (uhyve only
    /// for now).
    pub mounts: Vec<Mount>,
    /// `HERMIT_APP_PORT`: guest TCP ports forwarded from the same port of
    /// the host's 127.0.0.1 (images with a network card; under uhyve on
    /// user-mode networking only).
    pub app_ports: Vec<u16>,
    /// `HERMIT_CAPTURE_NET=1` (QEMU): write the guest's frames to
    /// `qemu-vlan0.pcap` in the current directory.
    pub capture_net: bool,
    /// `HERMIT_MONITOR=1` (QEMU): QEMU's monitor on TCP port
    /// `HERMIT_PORT + 1` of 127.0.0.1.
    pub monitor_port: Option<u16>,
    /// `HERMIT_NETIF` (uhyve): the host tap device the guest's card is
    /// plugged into; without it uhyve uses user-mode networking.
    pub netif: Option<String>,
    /// `HERMIT_PROFILE` (uhyve): where to write a sampling profile.
    pub profile: Option<std::path::PathBuf>,
}

/// A `HERMIT_*` variable with a value the proxy cannot use.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// The value is malformed; `expected` says what would be accepted.
    #[error("{name}={value:?} is not valid: expected {expected}")]
    Invalid {
        /// Variable name.
        name: &'static str,
        /// The value found.
        value: String,
        /// What the variable accepts.
        expected: &'static str,
    },
    /// `HERMIT_CPUS` looks like a core list but is not a valid one.
    #[error(
        "HERMIT_CPUS={value:?} is not valid: {reason} (expected a number of CPUs or a list of host cores such as 0-1,4)"
    )]
    BadCoreList {
        /// The value found.
        value: String,
        /// What is wrong with the list.
        reason: uhyve::cpus::CoreListError,
    },
    /// An entry of `HERMIT_MOUNT` cannot be mapped.
    #[error("HERMIT_MOUNT entry '{entry}' is not valid: {source}")]
    BadMount {
        /// The `HOST:GUEST` entry.
        entry: String,
        /// What is wrong with it.
        source: MountError,
    },
}

fn invalid(name: &'static str, value: &str, expected: &'static str) -> ConfigError {
    ConfigError::Invalid {
        name,
        value: value.to_owned(),
        expected,
    }
}

/// Parses a memory size: plain bytes or a number with suffix K, M or G
/// (binary units, case-insensitive, optional trailing `B`/`iB`).
pub fn parse_size(text: &str) -> Option<u64> {
    let t = text.trim();
    let t = t
        .strip_suffix("iB")
        .or_else(|| t.strip_suffix("ib"))
        .or_else(|| t.strip_suffix(['B', 'b']))
        .unwrap_or(t);
    let (digits, shift) = match t.chars().last()? {
        'k' | 'K' => (&t[..t.len() - 1], 10),
        'm' | 'M' => (&t[..t.len() - 1], 20),
        'g' | 'G' => (&t[..t.len() - 1], 30),
        _ => (t, 0),
    };
    let n: u64 = digits.trim().parse().ok()?;
    n.checked_mul(1u64 << shift).filter(|&v| v > 0)
}

/// Parses `HERMIT_CPUS`: a count (`4`), or a host core list (`3-5`, `1,3`,
/// `0-1,4`) whose length is the count and which pins vCPU `i` to its `i`-th
/// core, as in the original HermitCore.
fn parse_cpus(value: &str) -> Result<(u32, Option<Vec<usize>>), ConfigError> {
    const EXPECTED: &str = "a number of CPUs (at least 1) or a list of host cores such as 0-1,4";
    let v = value.trim();
    if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) {
        return match v.parse::<u32>() {
            Ok(n) if n > 0 => Ok((n, None)),
            _ => Err(invalid("HERMIT_CPUS", value, EXPECTED)),
        };
    }
    parse_core_list(value)
}

/// Parses `HERMIT_CPUS` as a host core list only.
fn parse_core_list(value: &str) -> Result<(u32, Option<Vec<usize>>), ConfigError> {
    match uhyve::cpus::parse_core_list(value.trim()) {
        Ok(cores) => Ok((cores.len() as u32, Some(cores))),
        Err(e) => Err(ConfigError::BadCoreList {
            value: value.to_owned(),
            reason: e,
        }),
    }
}

/// Parses `HERMIT_MOUNT`: `HOST:GUEST` entries separated by commas (so
/// host paths cannot contain commas); empty entries are skipped. Each host
/// directory is opened here, so a missing one is reported before any VM
/// starts.
fn parse_mounts(value: &str) -> Result<Vec<Mount>, ConfigError> {
    let mut mounts: Vec<Mount> = Vec::new();
    for entry in value.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let bad = |source| ConfigError::BadMount {
            entry: entry.to_owned(),
            source,
        };
        let mount = Mount::parse(entry).map_err(bad)?;
        if mounts.iter().any(|m| m.guest() == mount.guest()) {
            return Err(bad(MountError::Duplicate(mount.guest().to_owned())));
        }
        mounts.push(mount);
    }
    Ok(mounts)
}

/// Parses `HERMIT_APP_PORT`: one TCP port or a comma-separated list.
fn parse_ports(value: &str) -> Result<Vec<u16>, ConfigError> {
    const EXPECTED: &str = "a TCP port (1-65535) or a comma-separated list of ports";
    let mut ports = Vec::new();
    for p in value.split(',').map(str::trim) {
        match p.parse::<u16>() {
            Ok(n) if n > 0 && !ports.contains(&n) => ports.push(n),
            _ => return Err(invalid("HERMIT_APP_PORT", value, EXPECTED)),
        }
    }
    Ok(ports)
}

fn parse_bool(name: &'static str, value: &str) -> Result<bool, ConfigError> {
    match value.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" | "" => Ok(false),
        _ => Err(invalid(name, value, "0 or 1")),
    }
}

/// Parses `HERMIT_ISLE`: the hypervisor and, for an isle, its number
/// (`N` and `uhyve:N` on uhyve, `qemu:N` on QEMU).
fn parse_isle(value: Option<&str>) -> Result<(Isle, Option<u32>), ConfigError> {
    const EXPECTED: &str = "uhyve, qemu, an isle number from 0 to 7, uhyve:N or qemu:N";
    let number = |text: &str, whole: &str| match text.parse::<u32>() {
        Ok(n) if n < hermit_isles::MAX_ISLES => Ok(n),
        _ => Err(invalid("HERMIT_ISLE", whole, EXPECTED)),
    };
    match value.map(str::trim) {
        None | Some("") | Some("uhyve") => Ok((Isle::Uhyve, None)),
        Some("qemu") => Ok((Isle::Qemu, None)),
        Some(v) => match v.strip_prefix("qemu:") {
            Some(n) => Ok((Isle::Qemu, Some(number(n, v)?))),
            None => {
                let n = v.strip_prefix("uhyve:").unwrap_or(v);
                Ok((Isle::Uhyve, Some(number(n, v)?)))
            }
        },
    }
}

impl Config {
    /// Reads the configuration through `get` (normally `std::env::var`).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let (isle, isle_number) = parse_isle(get("HERMIT_ISLE").as_deref())?;
        // The isle variables are read only for an isle: elsewhere they may
        // be exported for other programs.
        let isle_member = match isle_number {
            None => None,
            Some(index) => {
                let size = match get("HERMIT_ISLE_SHM") {
                    None => None,
                    Some(v) => Some(
                        parse_size(&v)
                            .and_then(|s| hermit_isles::check_region_size(s).ok())
                            .ok_or_else(|| {
                                invalid(
                                    "HERMIT_ISLE_SHM",
                                    &v,
                                    "a multiple of 4 KiB from 9M to 512M, such as 64M",
                                )
                            })?,
                    ),
                };
                let dir = get(hermit_isles::DIR_VAR)
                    .filter(|d| !d.is_empty())
                    .map_or_else(hermit_isles::default_dir, std::path::PathBuf::from);
                Some(uhyve::IsleConfig { index, dir, size })
            }
        };
        let (cpus, pin) = match get("HERMIT_CPUS") {
            None => (1, None),
            // An isle's HERMIT_CPUS names its cores, as in the original
            // HermitCore (`HERMIT_ISLE=1 HERMIT_CPUS=3` is core 3).
            Some(v) if isle_member.is_some() => parse_core_list(&v)?,
            Some(v) => parse_cpus(&v)?,
        };
        let mem = match get("HERMIT_MEM") {
            None => DEFAULT_MEM,
            Some(v) => parse_size(&v)
                .ok_or_else(|| invalid("HERMIT_MEM", &v, "a size such as 512M or 2G"))?,
        };
        let flag = |name: &'static str, default: bool| match get(name) {
            None => Ok(default),
            Some(v) => parse_bool(name, &v),
        };
        let log_level = match get("HERMIT_LOG_LEVEL") {
            None => None,
            Some(v) => {
                let v = v.trim().to_ascii_lowercase();
                if !["off", "error", "warn", "info", "debug", "trace"].contains(&v.as_str()) {
                    return Err(invalid(
                        "HERMIT_LOG_LEVEL",
                        &v,
                        "off, error, warn, info, debug or trace",
                    ));
                }
                Some(v)
            }
        };
        let mounts = match get("HERMIT_MOUNT") {
            None => Vec::new(),
            Some(v) => parse_mounts(&v)?,
        };
        let app_ports = match get("HERMIT_APP_PORT") {
            None => Vec::new(),
            Some(v) => parse_ports(&v)?,
        };
        let port = match get("HERMIT_PORT") {
            None => DEFAULT_PORT,
            Some(v) => match v.trim().parse::<u16>() {
                Ok(p) if p > 0 && p < u16::MAX => p,
                _ => return Err(invalid("HERMIT_PORT", &v, "a TCP port from 1 to 65534")),
            },
        };
        let monitor_port = flag("HERMIT_MONITOR", false)?.then_some(port + 1);
        let netif = match get("HERMIT_NETIF") {
            None => None,
            Some(v) if v.is_empty() || v.len() > 15 || v.contains(['/', ' ', ':']) => {
                return Err(invalid(
                    "HERMIT_NETIF",
                    &v,
                    "a network interface name of 1 to 15 characters",
                ));
            }
            Some(v) => Some(v),
        };
        Ok(Self {
            isle,
            isle_member,
            cpus,
            pin,
            mem,
            verbose: flag("HERMIT_VERBOSE", false)?,
            native: flag("HERMIT_NATIVE", true)?,
            kvm: flag("HERMIT_KVM", true)?,
            debug: flag("HERMIT_DEBUG", false)?,
            log_level,
            mounts,
            app_ports,
            capture_net: flag("HERMIT_CAPTURE_NET", false)?,
            monitor_port,
            netif,
            profile: get("HERMIT_PROFILE")
                .filter(|v| !v.is_empty())
                .map(std::path::PathBuf::from),
        })
    }

    /// The kernel command line: the log level, raised to `info` when
    /// verbose, and `native=off` with `HERMIT_NATIVE=0` or `HERMIT_DEBUG=1`.
    pub fn cmdline(&self) -> String {
        let log = match (&self.log_level, self.verbose) {
            (Some(level), _) => Some(format!("log={level}")),
            (None, true) => Some("log=info".to_owned()),
            (None, false) => None,
        };
        let emulated = !self.native || self.debug;
        [log, emulated.then(|| "native=off".to_owned())]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join(" ")
    }
}

impl fmt::Display for Isle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Uhyve => "uhyve",
            Self::Qemu => "qemu",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        Config::from_lookup(|k| {
            vars.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| (*v).to_owned())
        })
    }

    #[test]
    fn defaults_match_the_original_proxy() {
        let c = cfg(&[]).unwrap();
        assert_eq!(c.isle, Isle::Uhyve);
        assert_eq!((c.cpus, c.pin.as_deref()), (1, None));
        assert_eq!(c.mem, 2 << 30);
        assert!(!c.verbose && c.kvm && !c.debug);
        assert_eq!(c.cmdline(), "");
        assert!(c.mounts.is_empty());
    }

    #[test]
    fn mounts_are_a_comma_separated_list() {
        let tmp = std::env::temp_dir();
        let host = tmp.to_str().unwrap();
        let value = format!("{host}:/a, {host}:/b/c,");
        let c = cfg(&[("HERMIT_MOUNT", &value)]).unwrap();
        let guests: Vec<&str> = c.mounts.iter().map(Mount::guest).collect();
        assert_eq!(guests, ["/a", "/b/c"]);
        assert_eq!(c.mounts[1].host(), tmp);
        assert!(cfg(&[("HERMIT_MOUNT", "")]).unwrap().mounts.is_empty());

        for (value, needle) in [
            ("/nonexistent/dir:/x".to_owned(), "no such directory"),
            (host.to_string(), "is not HOST:GUEST"),
            (format!("{host}:x"), "is not absolute"),
            (format!("{host}:/"), "cannot be a mount point"),
            (format!("{host}:/a,{host}:/a"), "mapped twice"),
        ] {
            let e = cfg(&[("HERMIT_MOUNT", &value)]).unwrap_err().to_string();
            assert!(e.starts_with("HERMIT_MOUNT entry '"), "{e}");
            assert!(e.contains(needle), "{value}: {e}");
            assert!(!e.contains('\n'), "{e}");
        }
    }

    #[test]
    fn sizes_take_suffixes() {
        assert_eq!(parse_size("512M"), Some(512 << 20));
        assert_eq!(parse_size("6G"), Some(6 << 30));
        assert_eq!(parse_size("64k"), Some(64 << 10));
        assert_eq!(parse_size("2GiB"), Some(2 << 30));
        assert_eq!(parse_size("4096"), Some(4096));
        for bad in ["abc", "", "G", "-1M", "0", "1.5G", "99999999999999G"] {
            assert_eq!(parse_size(bad), None, "{bad}");
        }
    }

    #[test]
    fn bad_values_name_the_variable() {
        let e = cfg(&[("HERMIT_MEM", "abc")]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "HERMIT_MEM=\"abc\" is not valid: expected a size such as 512M or 2G"
        );
        assert!(cfg(&[("HERMIT_ISLE", "xen")]).is_err());
        assert!(cfg(&[("HERMIT_VERBOSE", "maybe")]).is_err());
        assert!(cfg(&[("HERMIT_LOG_LEVEL", "loud")]).is_err());
    }

    #[test]
    fn isle_numbers_make_uhyve_isles() {
        let c = cfg(&[]).unwrap();
        assert_eq!(c.isle_member, None);
        let c = cfg(&[
            ("HERMIT_ISLE", "3"),
            ("HERMIT_ISLE_DIR", "/tmp/isles"),
            ("HERMIT_ISLE_SHM", "16M"),
        ])
        .unwrap();
        assert_eq!(c.isle, Isle::Uhyve);
        assert_eq!(
            c.isle_member,
            Some(uhyve::IsleConfig {
                index: 3,
                dir: "/tmp/isles".into(),
                size: Some(16 << 20)
            })
        );
        let c = cfg(&[("HERMIT_ISLE", "uhyve:7")]).unwrap();
        let member = c.isle_member.unwrap();
        assert_eq!((member.index, member.size), (7, None));
        assert_eq!(member.dir, hermit_isles::default_dir());
        // Isle variables without an isle are not looked at.
        let c = cfg(&[("HERMIT_ISLE_SHM", "junk")]).unwrap();
        assert_eq!(c.isle_member, None);

        let c = cfg(&[("HERMIT_ISLE", "qemu:1")]).unwrap();
        assert_eq!(c.isle, Isle::Qemu);
        assert_eq!(c.isle_member.map(|m| m.index), Some(1));
        // An isle's HERMIT_CPUS is a core list, even a single core.
        let c = cfg(&[("HERMIT_ISLE", "1"), ("HERMIT_CPUS", "3")]).unwrap();
        assert_eq!((c.cpus, c.pin), (1, Some(vec![3])));
        let c = cfg(&[("HERMIT_CPUS", "3")]).unwrap();
        assert_eq!((c.cpus, c.pin), (3, None));
        for bad in [
            "8", "uhyve:8", "uhyve:", "qemu:8", "-1", "1x", "uhyve:x", "xen",
        ] {
            let e = cfg(&[("HERMIT_ISLE", bad)]).unwrap_err().to_string();
            assert!(e.starts_with("HERMIT_ISLE="), "{bad}: {e}");
            assert!(e.contains("an isle number from 0 to 7"), "{bad}: {e}");
        }
        for bad in ["1M", "513M", "lots", "10000"] {
            let e = cfg(&[("HERMIT_ISLE", "0"), ("HERMIT_ISLE_SHM", bad)])
                .unwrap_err()
                .to_string();
            assert!(e.starts_with("HERMIT_ISLE_SHM="), "{bad}: {e}");
            assert!(!e.contains('\n'));
        }
    }

    #[test]
    fn variables_are_read() {
        let c = cfg(&[
            ("HERMIT_ISLE", "qemu"),
            ("HERMIT_CPUS", "4"),
            ("HERMIT_MEM", "6G"),
            ("HERMIT_VERBOSE", "1"),
            ("HERMIT_KVM", "0"),
            ("HERMIT_DEBUG", "1"),
        ])
        .unwrap();
        assert_eq!((c.isle, c.cpus, c.mem), (Isle::Qemu, 4, 6 << 30));
        assert!(c.verbose && !c.kvm && c.debug);
        // Debugging keeps the kernel emulated, where breakpoints fire.
        assert_eq!(c.cmdline(), "log=info native=off");
        let c = cfg(&[("HERMIT_NATIVE", "0"), ("HERMIT_VERBOSE", "1")]).unwrap();
        assert_eq!(c.cmdline(), "log=info native=off");
        let c = cfg(&[("HERMIT_NATIVE", "1"), ("HERMIT_VERBOSE", "1")]).unwrap();
        assert_eq!(c.cmdline(), "log=info");
        let c = cfg(&[("HERMIT_VERBOSE", "1"), ("HERMIT_LOG_LEVEL", "DEBUG")]).unwrap();
        assert_eq!(c.cmdline(), "log=debug");
    }

    #[test]
    fn network_variables() {
        let c = cfg(&[]).unwrap();
        assert!(c.app_ports.is_empty() && !c.capture_net && c.monitor_port.is_none());
        let c = cfg(&[
            ("HERMIT_APP_PORT", "8080, 9000"),
            ("HERMIT_CAPTURE_NET", "1"),
            ("HERMIT_MONITOR", "1"),
        ])
        .unwrap();
        assert_eq!(c.app_ports, [8080, 9000]);
        assert!(c.capture_net);
        assert_eq!(c.monitor_port, Some(18767));
        let c = cfg(&[("HERMIT_MONITOR", "1"), ("HERMIT_PORT", "2000")]).unwrap();
        assert_eq!(c.monitor_port, Some(2001));
        for (name, bad) in [
            ("HERMIT_APP_PORT", "0"),
            ("HERMIT_APP_PORT", "http"),
            ("HERMIT_APP_PORT", "70000"),
            ("HERMIT_APP_PORT", "80,80"),
            ("HERMIT_APP_PORT", ""),
            ("HERMIT_CAPTURE_NET", "pcap"),
            ("HERMIT_MONITOR", "2"),
            ("HERMIT_PORT", "65535"),
            ("HERMIT_PORT", "x"),
        ] {
            let e = cfg(&[(name, bad), ("HERMIT_MONITOR", "1")])
                .unwrap_err()
                .to_string();
            assert!(e.starts_with(name), "{name}={bad}: {e}");
            assert!(!e.contains('\n'), "{e}");
        }
    }

    #[test]
    fn cpus_take_a_count_or_a_core_list() {
        let cpus = |v: &str| cfg(&[("HERMIT_CPUS", v)]).map(|c| (c.cpus, c.pin));
        assert_eq!(cpus("4"), Ok((4, None)));
        assert_eq!(cpus(" 2 "), Ok((2, None)));
        assert_eq!(cpus("1"), Ok((1, None)));
        assert_eq!(cpus("3-5"), Ok((3, Some(vec![3, 4, 5]))));
        assert_eq!(cpus("1,3"), Ok((2, Some(vec![1, 3]))));
        assert_eq!(cpus("0-1,4"), Ok((3, Some(vec![0, 1, 4]))));
        assert_eq!(cpus("2-2"), Ok((1, Some(vec![2]))));
        assert_eq!(cpus("5,0"), Ok((2, Some(vec![5, 0]))), "order is kept");
        // A count above uhyve's limit is uhyve's to reject (with its limit).
        assert_eq!(cpus("65"), Ok((65, None)));
    }

    #[test]
    fn bad_cpu_values_are_one_line_errors() {
        for bad in [
            "",
            " ",
            "0",
            "x",
            "a",
            "3-1",
            "1,,2",
            "1,",
            ",1",
            "1-",
            "-1",
            "1,1",
            "0-3,2",
            "1.5",
            "0-64",
            "4294967296",
        ] {
            let e = cfg(&[("HERMIT_CPUS", bad)]).unwrap_err();
            let text = e.to_string();
            assert!(text.starts_with("HERMIT_CPUS="), "{bad:?}: {text}");
            assert!(!text.contains('\n'), "{bad:?}: {text}");
        }
        let e = cfg(&[("HERMIT_CPUS", "3-1")]).unwrap_err().to_string();
        assert!(e.contains("range 3-1 runs backwards"), "{e}");
        let e = cfg(&[("HERMIT_CPUS", "1,2,1")]).unwrap_err().to_string();
        assert!(e.contains("core 1 is listed twice"), "{e}");
    }
}
