//! The stack's configuration, and reading it from the `HERMIT_*` variables.

use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt;
use core::net::Ipv4Addr;
use core::time::Duration;

/// How the stack is set up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// A MAC address to use instead of the card's own.
    pub mac: Option<[u8; 6]>,
    /// The interface's IPv4 address (ignored with `dhcp`).
    pub address: Ipv4Addr,
    /// The network prefix length, e.g. 24 for 255.255.255.0.
    pub prefix_len: u8,
    /// The default route.
    pub gateway: Option<Ipv4Addr>,
    /// DNS servers (DHCP may add more).
    pub dns: Vec<Ipv4Addr>,
    /// Get address, gateway and DNS servers by DHCPv4 (feature `dhcpv4`).
    pub dhcp: bool,
    /// Receive buffer of each TCP socket, in bytes: the window offered to
    /// the peer, which bounds receive throughput at the path's round trip
    /// (512 KiB by default; on uhyve's user-mode network with jumbo
    /// frames, 32 KiB messages were received at about 340 MB/s with 256 KiB
    /// and 690-820 with 512 KiB).
    pub tcp_rx_buffer: usize,
    /// Transmit buffer of each TCP socket, in bytes (256 KiB by default).
    pub tcp_tx_buffer: usize,
    /// Payload bytes buffered by each UDP socket, each way.
    pub udp_buffer: usize,
    /// Datagrams buffered by each UDP socket, each way.
    pub udp_packets: usize,
    /// Most smoltcp sockets alive at once (listener slots and closing
    /// connections count); beyond it calls fail with `EMFILE`.
    pub max_sockets: usize,
    /// Connect timeout when the caller gives none.
    pub connect_timeout: Option<Duration>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            mac: None,
            address: Ipv4Addr::new(10, 0, 5, 2),
            prefix_len: 24,
            gateway: Some(Ipv4Addr::new(10, 0, 5, 1)),
            dns: Vec::new(),
            dhcp: false,
            tcp_rx_buffer: 512 * 1024,
            tcp_tx_buffer: 256 * 1024,
            udp_buffer: 64 * 1024,
            udp_packets: 64,
            max_sockets: 1024,
            connect_timeout: Some(Duration::from_secs(75)),
        }
    }
}

/// A `HERMIT_*` network variable the stack cannot use.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConfigError {
    /// The value is not a dotted IPv4 address.
    BadAddress {
        /// The variable.
        var: &'static str,
        /// Its value.
        value: String,
    },
    /// `HERMIT_MASK` is not a contiguous netmask.
    BadMask(String),
    /// `HERMIT_IP=dhcp` in a kernel built without the `dhcpv4` feature.
    DhcpUnsupported,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BadAddress { var, value } => {
                write!(f, "{var}={value:?} is not an IPv4 address like 10.0.5.2")
            }
            Self::BadMask(value) => {
                write!(
                    f,
                    "HERMIT_MASK={value:?} is not a netmask like 255.255.255.0"
                )
            }
            Self::DhcpUnsupported => {
                write!(
                    f,
                    "HERMIT_IP=dhcp needs a kernel built with the dhcpv4 feature"
                )
            }
        }
    }
}

impl core::error::Error for ConfigError {}

fn parse_addr(var: &'static str, value: &str) -> Result<Ipv4Addr, ConfigError> {
    value.trim().parse().map_err(|_| ConfigError::BadAddress {
        var,
        value: value.to_string(),
    })
}

fn mask_to_prefix(value: &str) -> Result<u8, ConfigError> {
    let bad = || ConfigError::BadMask(value.to_string());
    let mask = u32::from(value.trim().parse::<Ipv4Addr>().map_err(|_| bad())?);
    let prefix = mask.leading_ones();
    // A netmask is ones followed by zeros only.
    if mask.checked_shl(prefix).unwrap_or(0) != 0 {
        return Err(bad());
    }
    u8::try_from(prefix).map_err(|_| bad())
}

impl Config {
    /// Reads `HERMIT_IP` (an address, or `dhcp`), `HERMIT_GATEWAY`,
    /// `HERMIT_MASK` and `HERMIT_DNS` (comma list) through `get`. Missing or
    /// empty variables keep the defaults: 10.0.5.2/24, gateway 10.0.5.1, no
    /// DNS server.
    pub fn from_env(get: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        Self::from_env_over(Self::default(), get)
    }

    /// Like [`Config::from_env`], but variables that are missing or empty
    /// keep `base`'s values (e.g. a card's own address defaults).
    pub fn from_env_over(
        base: Self,
        get: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let get = |name: &str| get(name).filter(|v| !v.trim().is_empty());
        let mut config = base;
        if let Some(ip) = get("HERMIT_IP") {
            if ip.trim().eq_ignore_ascii_case("dhcp") {
                if !cfg!(feature = "dhcpv4") {
                    return Err(ConfigError::DhcpUnsupported);
                }
                config.dhcp = true;
                config.address = Ipv4Addr::UNSPECIFIED;
                config.gateway = None;
            } else {
                config.address = parse_addr("HERMIT_IP", &ip)?;
            }
        }
        if let Some(gateway) = get("HERMIT_GATEWAY") {
            config.gateway = Some(parse_addr("HERMIT_GATEWAY", &gateway)?);
        }
        if let Some(mask) = get("HERMIT_MASK") {
            config.prefix_len = mask_to_prefix(&mask)?;
        }
        if let Some(dns) = get("HERMIT_DNS") {
            config.dns = dns
                .split(',')
                .filter(|s| !s.trim().is_empty())
                .map(|s| parse_addr("HERMIT_DNS", s))
                .collect::<Result<_, _>>()?;
        }
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn variables_override_a_base() {
        let base = Config {
            address: Ipv4Addr::new(192, 168, 28, 3),
            gateway: Some(Ipv4Addr::new(192, 168, 28, 1)),
            prefix_len: 24,
            ..Config::default()
        };
        let c = Config::from_env_over(base.clone(), env(&[])).unwrap();
        assert_eq!(c, base);
        let c = Config::from_env_over(base, env(&[("HERMIT_IP", "10.1.1.9")])).unwrap();
        assert_eq!(c.address, Ipv4Addr::new(10, 1, 1, 9));
        assert_eq!(c.gateway, Some(Ipv4Addr::new(192, 168, 28, 1)));
    }

    #[test]
    fn defaults() {
        let c = Config::from_env(env(&[])).unwrap();
        assert_eq!(c.address, Ipv4Addr::new(10, 0, 5, 2));
        assert_eq!(c.prefix_len, 24);
        assert_eq!(c.gateway, Some(Ipv4Addr::new(10, 0, 5, 1)));
        assert!(c.dns.is_empty());
        assert!(!c.dhcp);
    }

    #[test]
    fn good_values() {
        let c = Config::from_env(env(&[
            ("HERMIT_IP", "192.168.1.7"),
            ("HERMIT_GATEWAY", "192.168.1.254"),
            ("HERMIT_MASK", "255.255.0.0"),
            ("HERMIT_DNS", "1.1.1.1, 8.8.8.8"),
        ]))
        .unwrap();
        assert_eq!(c.address, Ipv4Addr::new(192, 168, 1, 7));
        assert_eq!(c.gateway, Some(Ipv4Addr::new(192, 168, 1, 254)));
        assert_eq!(c.prefix_len, 16);
        assert_eq!(
            c.dns,
            [Ipv4Addr::new(1, 1, 1, 1), Ipv4Addr::new(8, 8, 8, 8)]
        );
        let c = Config::from_env(env(&[("HERMIT_MASK", "0.0.0.0")])).unwrap();
        assert_eq!(c.prefix_len, 0);
        let c = Config::from_env(env(&[("HERMIT_MASK", "255.255.255.255")])).unwrap();
        assert_eq!(c.prefix_len, 32);
    }

    #[test]
    fn bad_values() {
        let e = Config::from_env(env(&[("HERMIT_IP", "10.0.5")])).unwrap_err();
        assert_eq!(
            e.to_string(),
            "HERMIT_IP=\"10.0.5\" is not an IPv4 address like 10.0.5.2"
        );
        let e = Config::from_env(env(&[("HERMIT_MASK", "255.0.255.0")])).unwrap_err();
        assert!(matches!(e, ConfigError::BadMask(_)), "{e}");
        assert!(!e.to_string().contains('\n'));
        let e = Config::from_env(env(&[("HERMIT_DNS", "1.1.1.1,x")])).unwrap_err();
        assert!(
            matches!(
                e,
                ConfigError::BadAddress {
                    var: "HERMIT_DNS",
                    ..
                }
            ),
            "{e}"
        );
        let e = Config::from_env(env(&[("HERMIT_GATEWAY", "gw")])).unwrap_err();
        assert!(
            matches!(
                e,
                ConfigError::BadAddress {
                    var: "HERMIT_GATEWAY",
                    ..
                }
            ),
            "{e}"
        );
    }

    #[test]
    fn dhcp() {
        let r = Config::from_env(env(&[("HERMIT_IP", "dhcp")]));
        if cfg!(feature = "dhcpv4") {
            assert!(r.unwrap().dhcp);
        } else {
            assert_eq!(r.unwrap_err(), ConfigError::DhcpUnsupported);
        }
    }
}
