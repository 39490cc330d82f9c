//! DNS for the relay: MX of a domain and addresses of a host, through
//! hickory-resolver with either the system's name servers or the ones given in
//! `relay.dns` (which is also how tests point it at a local server: nothing
//! here knows about tests).

use std::net::{IpAddr, SocketAddr};

use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolverConfig};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::rr::RData;
use hickory_resolver::{Resolver, TokioResolver};

#[derive(Debug, Clone, thiserror::Error)]
pub(crate) enum DnsError {
    /// The name does not exist or has no record of the type (permanent).
    #[error("no {rtype} record for {name}")]
    NoRecords { name: String, rtype: &'static str },
    /// The domain declares it accepts no mail (RFC 7505 null MX) (permanent).
    #[error("{0} publishes a null MX: it accepts no mail")]
    NullMx(String),
    /// Server failure, timeout, network (temporary).
    #[error("DNS lookup of {name} failed: {detail}")]
    Temporary { name: String, detail: String },
}

impl DnsError {
    pub(crate) fn is_permanent(&self) -> bool {
        matches!(self, DnsError::NoRecords { .. } | DnsError::NullMx(_))
    }
}

pub(crate) struct Dns {
    resolver: TokioResolver,
}

impl Dns {
    /// `servers` empty = the system configuration (/etc/resolv.conf).
    pub(crate) fn new(servers: &[SocketAddr]) -> Result<Dns, String> {
        let builder = if servers.is_empty() {
            Resolver::builder_tokio().map_err(|e| format!("reading the system DNS configuration: {e}"))?
        } else {
            let name_servers = servers
                .iter()
                .map(|s| {
                    let mut udp = ConnectionConfig::udp();
                    udp.port = s.port();
                    let mut tcp = ConnectionConfig::tcp();
                    tcp.port = s.port();
                    NameServerConfig::new(s.ip(), true, vec![udp, tcp])
                })
                .collect();
            let config = ResolverConfig::from_parts(None, vec![], name_servers);
            Resolver::builder_with_config(config, TokioRuntimeProvider::default())
        };
        let resolver = builder.build().map_err(|e| format!("building the DNS resolver: {e}"))?;
        Ok(Dns { resolver })
    }

    /// MX hosts of `domain`, lowest preference first. No MX at all yields the
    /// domain itself (the implicit MX of RFC 5321 §5.1).
    pub(crate) async fn mx(&self, domain: &str) -> Result<Vec<String>, DnsError> {
        let fqdn = format!("{}.", domain.trim_end_matches('.'));
        match self.resolver.mx_lookup(fqdn.as_str()).await {
            Ok(lookup) => {
                let mut hosts: Vec<(u16, String)> = lookup
                    .answers()
                    .iter()
                    .filter_map(|r| match &r.data {
                        RData::MX(mx) => Some((mx.preference, mx.exchange.to_ascii())),
                        _ => None,
                    })
                    .collect();
                hosts.sort_by_key(|(pref, _)| *pref);
                if hosts.len() == 1 && (hosts[0].1 == "." || hosts[0].1.is_empty()) {
                    return Err(DnsError::NullMx(domain.to_string()));
                }
                let hosts: Vec<String> = hosts
                    .into_iter()
                    .map(|(_, h)| h.trim_end_matches('.').to_lowercase())
                    .filter(|h| !h.is_empty())
                    .collect();
                if hosts.is_empty() {
                    Ok(vec![domain.to_string()])
                } else {
                    Ok(hosts)
                }
            }
            Err(e) if e.is_no_records_found() && !e.is_nx_domain() => Ok(vec![domain.to_string()]),
            Err(e) if e.is_nx_domain() => Err(DnsError::NoRecords {
                name: domain.to_string(),
                rtype: "MX",
            }),
            Err(e) => Err(DnsError::Temporary {
                name: domain.to_string(),
                detail: e.to_string(),
            }),
        }
    }

    /// Addresses of `host` (an IP literal is returned as is).
    pub(crate) async fn addresses(&self, host: &str) -> Result<Vec<IpAddr>, DnsError> {
        if let Ok(ip) = host.parse::<IpAddr>() {
            return Ok(vec![ip]);
        }
        let fqdn = format!("{}.", host.trim_end_matches('.'));
        match self.resolver.lookup_ip(fqdn.as_str()).await {
            Ok(lookup) => {
                let ips: Vec<IpAddr> = lookup.iter().collect();
                if ips.is_empty() {
                    Err(DnsError::NoRecords {
                        name: host.to_string(),
                        rtype: "A/AAAA",
                    })
                } else {
                    Ok(ips)
                }
            }
            Err(e) if e.is_no_records_found() => Err(DnsError::NoRecords {
                name: host.to_string(),
                rtype: "A/AAAA",
            }),
            Err(e) => Err(DnsError::Temporary {
                name: host.to_string(),
                detail: e.to_string(),
            }),
        }
    }
}
