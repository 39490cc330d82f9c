//! `[dns]` and `[auth]`: the one resolver every stage shares (relay MX,
//! sender authentication, DNSBL) and the sender-authentication settings that
//! are not per policy (which ARC sealers are trusted to speak for Exchange
//! Online).
//!
//! `relay.dns`, the resolver setting of the first releases, is still read as
//! a deprecated spelling of `dns.servers` (`Config::warnings` says so); both
//! at once must agree. Must never: build the resolver (`dns` does).

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use crate::config::reader::Section;

/// `[dns]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DnsConfig {
    /// Name servers to ask; empty = the system's (/etc/resolv.conf).
    pub servers: Vec<SocketAddr>,
    /// One query's timeout (per attempt).
    pub timeout: Duration,
    /// Attempts per query and server.
    pub attempts: usize,
    /// Entries kept by each of the resolver's caches (answers honour their TTL).
    pub cache_size: usize,
    /// DNS lookups one message may cause (auth and DNSBL together): past it,
    /// every further answer is a temporary error.
    pub message_lookups: u32,
    /// Time all lookups of one message may take together.
    pub message_timeout: Duration,
    /// Where `servers` came from: `relay.dns` (deprecated) when `[dns]` has none.
    pub from_relay_dns: bool,
}

impl Default for DnsConfig {
    fn default() -> Self {
        DnsConfig {
            servers: Vec::new(),
            timeout: Duration::from_secs(3),
            attempts: 2,
            cache_size: 20_000,
            message_lookups: 100,
            message_timeout: Duration::from_secs(10),
            from_relay_dns: false,
        }
    }
}

/// `[auth]`: sender authentication settings shared by every policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthConfig {
    /// ARC sealers whose verified `ARC-Authentication-Results` are taken as
    /// the original sender's facts (lower case). Exchange Online seals as
    /// `microsoft.com`.
    pub trusted_arc_sealers: Vec<String>,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            trusted_arc_sealers: vec!["microsoft.com".into()],
        }
    }
}

fn name_server(text: &str) -> Result<SocketAddr, String> {
    text.parse::<SocketAddr>()
        .or_else(|_| text.parse::<IpAddr>().map(|ip| SocketAddr::new(ip, 53)))
        .map_err(|_| format!("expected a name server \"ip\" or \"ip:port\" (\"[v6]:port\"), found \"{text}\""))
}

/// Reads `[dns]`, with `relay.dns` (already read from `[relay]`) as the
/// deprecated fallback for `servers`.
pub(crate) fn read_dns(s: &Section, relay: &Section) -> DnsConfig {
    let d = DnsConfig::default();
    let servers = s.parsed_list("servers", &[], name_server);
    let relay_dns = relay.parsed_list("dns", &[], name_server);
    let from_relay_dns = !s.contains("servers") && relay.contains("dns");
    if s.contains("servers") && relay.contains("dns") && servers != relay_dns {
        relay.error(
            "dns",
            "deprecated spelling of dns.servers, and both are set to different lists: keep only dns.servers",
        );
    }
    let timeout = s.duration_or("timeout", d.timeout);
    if timeout.is_zero() {
        s.error("timeout", "must be longer than 0s");
    }
    let message_timeout = s.duration_or("message_timeout", d.message_timeout);
    if message_timeout < timeout {
        s.error(
            "message_timeout",
            format!("must be at least dns.timeout ({timeout:?}), found {message_timeout:?}"),
        );
    }
    DnsConfig {
        servers: if from_relay_dns { relay_dns } else { servers },
        timeout,
        attempts: s.u64_in("attempts", d.attempts as u64, 1, 10) as usize,
        cache_size: s.u64_in("cache_size", d.cache_size as u64, 0, 10_000_000) as usize,
        message_lookups: s.u64_in("message_lookups", u64::from(d.message_lookups), 1, 10_000) as u32,
        message_timeout,
        from_relay_dns,
    }
}

/// Reads `[auth]`.
pub(crate) fn read_auth(s: &Section) -> AuthConfig {
    let sealers: Vec<String> = s
        .strings_or("trusted_arc_sealers", &["microsoft.com"])
        .into_iter()
        .map(|d| d.trim().trim_end_matches('.').to_ascii_lowercase())
        .collect();
    for (i, d) in sealers.iter().enumerate() {
        if d.is_empty() || !d.contains('.') || d.contains(|c: char| c.is_whitespace() || c == '@') {
            s.problems().push(
                format!("{}[{i}]", s.key_path("trusted_arc_sealers")),
                format!("expected a domain such as \"microsoft.com\", found \"{d}\""),
            );
        }
    }
    AuthConfig {
        trusted_arc_sealers: sealers,
    }
}
