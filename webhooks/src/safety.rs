//! Where webhooks may go. A webhook URL is configured by API users, so without a check the
//! dispatcher would be a way to make requests inside the installation's network (SSRF). Private,
//! loopback, link-local and other non-public addresses are refused unless allow-listed. The
//! check runs on the resolved addresses, inside the HTTP client's resolver, so a name that
//! resolves to a private address (or changes to one after a check, "DNS rebinding") is refused
//! at connect time too.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::str::FromStr;
use std::sync::Arc;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// An address range in CIDR notation (`10.0.0.0/8`, `::1/128`, or a bare address).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// Whether `ip` lies in the range. IPv4-mapped IPv6 addresses match IPv4 ranges.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.network, canonical(ip)) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

impl FromStr for Cidr {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let text = text.trim();
        let (address, prefix) = match text.split_once('/') {
            Some((address, prefix)) => (address, Some(prefix)),
            None => (text, None),
        };
        let network: IpAddr = address
            .parse()
            .map_err(|_| format!("{text:?} is not an IP address or CIDR range"))?;
        let max = if network.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(prefix) => prefix
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("{text:?} has an invalid prefix length"))?,
            None => max,
        };
        Ok(Self { network, prefix })
    }
}

/// Which destinations are allowed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DestinationPolicy {
    /// Allow every address, private ones included (`--allow-private-destinations`).
    pub allow_private: bool,
    /// Non-public ranges that are allowed anyway (`--allow-destination 10.1.0.0/16`).
    pub allowed: Vec<Cidr>,
}

impl DestinationPolicy {
    /// A policy that allows loopback only besides public addresses: the standalone mode's and
    /// the tests' default, where receivers run on the same machine.
    pub fn loopback_allowed() -> Self {
        Self {
            allow_private: false,
            allowed: vec![
                Cidr {
                    network: IpAddr::V4(Ipv4Addr::new(127, 0, 0, 0)),
                    prefix: 8,
                },
                Cidr {
                    network: IpAddr::V6(Ipv6Addr::LOCALHOST),
                    prefix: 128,
                },
            ],
        }
    }

    /// Adds the loopback ranges to the allow-list.
    pub fn allow_loopback(&mut self) {
        for range in Self::loopback_allowed().allowed {
            if !self.allowed.contains(&range) {
                self.allowed.push(range);
            }
        }
    }

    /// Whether a request to `ip` is allowed.
    pub fn allows(&self, ip: IpAddr) -> bool {
        self.allow_private || is_public(ip) || self.allowed.iter().any(|c| c.contains(ip))
    }
}

/// The IPv4 address inside an IPv4-mapped IPv6 address, else the address itself.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// The address ranges no webhook, token request or other outbound call may reach unless
/// allow-listed, with what each is. Maintained from IANA's special-purpose address registries
/// (<https://www.iana.org/assignments/iana-ipv4-special-registry/> and
/// <https://www.iana.org/assignments/iana-ipv6-special-registry/>, RFC 6890), plus multicast
/// (RFC 5771, RFC 4291) and the deprecated ranges still routed somewhere. Entries the registries
/// mark "globally reachable" are listed too where they lead back into a network: NAT64
/// (`64:ff9b::/96` reaches any IPv4 address, private ones included, through the translator)
/// and 6to4 (`2002::/16` embeds an IPv4 address). Review against the registries when they
/// change; `is_public` is the only reader.
pub const NOT_PUBLIC: &[(&str, &str)] = &[
    // IPv4 special-purpose registry.
    ("0.0.0.0/8", "\"this network\" (RFC 791)"),
    ("10.0.0.0/8", "private use (RFC 1918)"),
    (
        "100.64.0.0/10",
        "shared address space, carrier-grade NAT (RFC 6598)",
    ),
    ("127.0.0.0/8", "loopback (RFC 1122)"),
    ("169.254.0.0/16", "link local, cloud metadata (RFC 3927)"),
    ("172.16.0.0/12", "private use (RFC 1918)"),
    ("192.0.0.0/24", "IETF protocol assignments (RFC 6890)"),
    ("192.0.2.0/24", "documentation TEST-NET-1 (RFC 5737)"),
    ("192.88.99.0/24", "deprecated 6to4 relay anycast (RFC 7526)"),
    ("192.168.0.0/16", "private use (RFC 1918)"),
    ("198.18.0.0/15", "benchmarking (RFC 2544)"),
    ("198.51.100.0/24", "documentation TEST-NET-2 (RFC 5737)"),
    ("203.0.113.0/24", "documentation TEST-NET-3 (RFC 5737)"),
    ("224.0.0.0/4", "multicast (RFC 5771)"),
    ("240.0.0.0/4", "reserved (RFC 1112)"),
    ("255.255.255.255/32", "limited broadcast (RFC 919)"),
    // IPv6 special-purpose registry.
    ("::/128", "unspecified (RFC 4291)"),
    ("::1/128", "loopback (RFC 4291)"),
    ("::/96", "deprecated IPv4-compatible (RFC 4291)"),
    ("64:ff9b::/96", "IPv4/IPv6 translation, NAT64 (RFC 6052)"),
    (
        "64:ff9b:1::/48",
        "local-use IPv4/IPv6 translation (RFC 8215)",
    ),
    ("100::/64", "discard-only (RFC 6666)"),
    (
        "2001::/23",
        "IETF protocol assignments, Teredo included (RFC 2928, RFC 4380)",
    ),
    ("2001:db8::/32", "documentation (RFC 3849)"),
    ("2002::/16", "6to4 (RFC 3056)"),
    ("3fff::/20", "documentation (RFC 9637)"),
    ("5f00::/16", "segment routing SIDs (RFC 9602)"),
    ("fc00::/7", "unique local (RFC 4193)"),
    ("fe80::/10", "link-local unicast (RFC 4291)"),
    ("fec0::/10", "deprecated site-local (RFC 3879)"),
    ("ff00::/8", "multicast (RFC 4291)"),
];

/// [`NOT_PUBLIC`], parsed once.
fn not_public() -> &'static [ipnet::IpNet] {
    static RANGES: std::sync::LazyLock<Vec<ipnet::IpNet>> = std::sync::LazyLock::new(|| {
        NOT_PUBLIC
            .iter()
            .filter_map(|(range, _)| range.parse().ok())
            .collect()
    });
    &RANGES
}

/// Whether an address is publicly routable: in none of the ranges of [`NOT_PUBLIC`]
/// (IPv4-mapped IPv6 addresses are checked as the IPv4 address they carry).
pub fn is_public(ip: IpAddr) -> bool {
    let ip = canonical(ip);
    !not_public().iter().any(|range| range.contains(&ip))
}

/// The error a refused destination produces inside the HTTP client.
#[derive(Debug, thiserror::Error)]
#[error("destination {host} resolves only to addresses that are not allowed ({addresses})")]
pub struct ForbiddenDestination {
    /// The host name.
    pub host: String,
    /// What it resolved to.
    pub addresses: String,
}

/// A resolver that drops addresses the policy does not allow, and fails when none is left.
#[derive(Debug, Clone)]
pub struct GuardedResolver {
    policy: Arc<DestinationPolicy>,
}

impl GuardedResolver {
    /// A resolver enforcing `policy`.
    pub fn new(policy: Arc<DestinationPolicy>) -> Self {
        Self { policy }
    }
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = Arc::clone(&self.policy);
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let resolved: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let allowed: Vec<SocketAddr> = resolved
                .iter()
                .copied()
                .filter(|addr| policy.allows(addr.ip()))
                .collect();
            if allowed.is_empty() {
                let addresses = resolved
                    .iter()
                    .map(|a| a.ip().to_string())
                    .collect::<Vec<_>>()
                    .join(", ");
                return Err(Box::new(ForbiddenDestination { host, addresses })
                    as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(allowed.into_iter()) as Addrs)
        })
    }
}

/// Checks a URL whose host is an IP literal (the resolver is not asked for those). `Err` names
/// the refused address; names are left to [`GuardedResolver`].
pub fn check_literal(url: &reqwest::Url, policy: &DestinationPolicy) -> Result<(), String> {
    // `host_str` writes IPv6 literals in brackets.
    let host = url.host_str().unwrap_or_default();
    let Ok(ip) = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
    else {
        return Ok(());
    };
    if policy.allows(ip) {
        Ok(())
    } else {
        Err(format!("destination address {ip} is not allowed"))
    }
}

/// Whether `error` (or one of its causes) is a refused destination.
pub fn is_forbidden(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut current = Some(error);
    while let Some(error) = current {
        if error.is::<ForbiddenDestination>() {
            return true;
        }
        current = error.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("address")
    }

    #[test]
    fn refuses_non_public_addresses_by_default() {
        let policy = DestinationPolicy::default();
        for private in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "::1",
            "fe80::1",
            "fd00::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            // Missing before the IANA table (issue 10).
            "64:ff9b::a00:1",
            "2002:a00:1::1",
            "192.0.0.8",
            "2001::1",
            "3fff::1",
            "224.0.0.1",
            "ff02::1",
        ] {
            assert!(!policy.allows(ip(private)), "{private}");
        }
        for public in ["93.184.216.34", "8.8.8.8", "2606:4700::1111"] {
            assert!(policy.allows(ip(public)), "{public}");
        }
    }

    #[test]
    fn every_range_of_the_table_parses() {
        assert_eq!(
            not_public().len(),
            NOT_PUBLIC.len(),
            "a range does not parse"
        );
    }

    #[test]
    fn allow_lists_open_exactly_their_ranges() {
        let policy = DestinationPolicy {
            allow_private: false,
            allowed: vec!["10.1.0.0/16".parse().expect("cidr")],
        };
        assert!(policy.allows(ip("10.1.200.3")));
        assert!(!policy.allows(ip("10.2.0.1")));
        let loopback = DestinationPolicy::loopback_allowed();
        assert!(loopback.allows(ip("127.0.0.1")));
        assert!(loopback.allows(ip("::1")));
        assert!(!loopback.allows(ip("192.168.0.1")));
        let all = DestinationPolicy {
            allow_private: true,
            allowed: vec![],
        };
        assert!(all.allows(ip("169.254.169.254")));
    }

    #[test]
    fn parses_cidrs_and_rejects_nonsense() {
        assert!("10.0.0.0/8".parse::<Cidr>().is_ok());
        assert!("::1".parse::<Cidr>().is_ok());
        assert!(
            "0.0.0.0/0"
                .parse::<Cidr>()
                .is_ok_and(|c| c.contains(ip("1.2.3.4")))
        );
        assert!("10.0.0.0/33".parse::<Cidr>().is_err());
        assert!("example.com/8".parse::<Cidr>().is_err());
    }

    #[test]
    fn literal_urls_are_checked() {
        let policy = DestinationPolicy::default();
        let url = |u: &str| reqwest::Url::parse(u).expect("url");
        assert!(check_literal(&url("http://127.0.0.1:9000/hook"), &policy).is_err());
        assert!(check_literal(&url("http://[::1]/hook"), &policy).is_err());
        assert!(check_literal(&url("https://8.8.8.8/hook"), &policy).is_ok());
        assert!(check_literal(&url("https://example.com/hook"), &policy).is_ok());
    }
}
