//! The proxy's configuration, read from `HERMIT_*` environment variables.

use std::fmt;

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
    /// `HERMIT_ISLE`.
    pub isle: Isle,
    /// `HERMIT_CPUS`.
    pub cpus: u32,
    /// `HERMIT_MEM`, in bytes.
    pub mem: u64,
    /// `HERMIT_VERBOSE=1`: print the kernel log when the app ends.
    pub verbose: bool,
    /// `HERMIT_KVM` (QEMU only): false means TCG.
    pub kvm: bool,
    /// `HERMIT_DEBUG=1` (QEMU only): wait for gdb on port 1234.
    pub debug: bool,
    /// `HERMIT_LOG_LEVEL`: the kernel's log level.
    pub log_level: Option<String>,
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
    /// A feature that later work brings.
    #[error("{0}")]
    Unsupported(String),
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

fn parse_bool(name: &'static str, value: &str) -> Result<bool, ConfigError> {
    match value.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" | "" => Ok(false),
        _ => Err(invalid(name, value, "0 or 1")),
    }
}

impl Config {
    /// Reads the configuration through `get` (normally `std::env::var`).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let isle = match get("HERMIT_ISLE").as_deref().map(str::trim) {
            None | Some("") | Some("uhyve") => Isle::Uhyve,
            Some("qemu") => Isle::Qemu,
            Some(n) if n.parse::<u32>().is_ok() => {
                return Err(ConfigError::Unsupported(format!(
                    "HERMIT_ISLE={n}: multi-kernel isles are not supported yet; use HERMIT_ISLE=uhyve or qemu"
                )));
            }
            Some(other) => return Err(invalid("HERMIT_ISLE", other, "uhyve or qemu")),
        };
        let cpus = match get("HERMIT_CPUS") {
            None => 1,
            Some(v) => match v.trim().parse::<u32>() {
                Ok(n) if n > 0 => n,
                _ => return Err(invalid("HERMIT_CPUS", &v, "a number of CPUs, at least 1")),
            },
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
        Ok(Self {
            isle,
            cpus,
            mem,
            verbose: flag("HERMIT_VERBOSE", false)?,
            kvm: flag("HERMIT_KVM", true)?,
            debug: flag("HERMIT_DEBUG", false)?,
            log_level,
        })
    }

    /// The kernel command line: the log level, raised to `info` when verbose.
    pub fn cmdline(&self) -> String {
        match (&self.log_level, self.verbose) {
            (Some(level), _) => format!("log={level}"),
            (None, true) => "log=info".to_owned(),
            (None, false) => String::new(),
        }
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
        assert_eq!(c.cpus, 1);
        assert_eq!(c.mem, 2 << 30);
        assert!(!c.verbose && c.kvm && !c.debug);
        assert_eq!(c.cmdline(), "");
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
        assert!(cfg(&[("HERMIT_CPUS", "0")]).is_err());
        assert!(cfg(&[("HERMIT_CPUS", "x")]).is_err());
        assert!(cfg(&[("HERMIT_ISLE", "xen")]).is_err());
        assert!(cfg(&[("HERMIT_VERBOSE", "maybe")]).is_err());
        assert!(cfg(&[("HERMIT_LOG_LEVEL", "loud")]).is_err());
        assert!(matches!(
            cfg(&[("HERMIT_ISLE", "1")]),
            Err(ConfigError::Unsupported(_))
        ));
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
        assert_eq!(c.cmdline(), "log=info");
        let c = cfg(&[("HERMIT_VERBOSE", "1"), ("HERMIT_LOG_LEVEL", "DEBUG")]).unwrap();
        assert_eq!(c.cmdline(), "log=debug");
    }
}
