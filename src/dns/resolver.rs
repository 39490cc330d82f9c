//! The resolver: hickory-resolver with the servers of `[dns]` (or the
//! system's), wrapped for the questions our stages ask: MX and addresses for
//! the relay, A records for DNSBL, and through mail-auth (which is handed the
//! same hickory resolver and our parsed-record caches) SPF, DKIM, DMARC and
//! ARC. One instance per distinct `[dns]` setting in the process
//! (`Dns::shared`), so relay and checks share one cache, also across reloads.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex, Weak};

use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolverConfig};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::rr::RData;
use hickory_resolver::{Resolver, TokioResolver};
use mail_auth::{MX, MessageAuthenticator, RecordSet, Txt};

use crate::config::sender::DnsConfig;
use crate::dns::cache::TtlCache;

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

/// mail-auth's parsed records, shared by every message.
pub(crate) struct AuthCaches {
    pub(crate) txt: TtlCache<Box<str>, Txt>,
    pub(crate) mx: TtlCache<Box<str>, RecordSet<MX>>,
    pub(crate) v4: TtlCache<Box<str>, RecordSet<Ipv4Addr>>,
    pub(crate) v6: TtlCache<Box<str>, RecordSet<Ipv6Addr>>,
    pub(crate) ptr: TtlCache<IpAddr, RecordSet<Box<str>>>,
}

pub(crate) struct Dns {
    resolver: TokioResolver,
    /// The same resolver as mail-auth wants it.
    pub(crate) authenticator: MessageAuthenticator,
    pub(crate) caches: AuthCaches,
    pub(crate) settings: DnsConfig,
}

/// Resolvers alive in this process, by their settings.
static SHARED: Mutex<Vec<(DnsConfig, Weak<Dns>)>> = Mutex::new(Vec::new());

impl Dns {
    /// The resolver for `settings`: the one already running with the same
    /// settings, or a new one.
    pub(crate) fn shared(settings: &DnsConfig) -> Result<Arc<Dns>, String> {
        let mut shared = SHARED.lock().unwrap_or_else(|p| p.into_inner());
        shared.retain(|(_, w)| w.strong_count() > 0);
        if let Some(dns) = shared
            .iter()
            .find(|(s, _)| s == settings)
            .and_then(|(_, w)| w.upgrade())
        {
            return Ok(dns);
        }
        let dns = Arc::new(Dns::new(settings)?);
        shared.push((settings.clone(), Arc::downgrade(&dns)));
        Ok(dns)
    }

    /// A resolver of its own; `settings.servers` empty = the system
    /// configuration (/etc/resolv.conf).
    pub(crate) fn new(settings: &DnsConfig) -> Result<Dns, String> {
        let servers: &[SocketAddr] = &settings.servers;
        let mut builder = if servers.is_empty() {
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
        let opts = builder.options_mut();
        opts.timeout = settings.timeout;
        opts.attempts = settings.attempts;
        opts.cache_size = settings.cache_size as u64;
        // Names we ask are absolute; a search list would only add queries.
        opts.ndots = 0;
        let resolver = builder.build().map_err(|e| format!("building the DNS resolver: {e}"))?;
        let n = settings.cache_size;
        Ok(Dns {
            authenticator: MessageAuthenticator(resolver.clone()),
            resolver,
            caches: AuthCaches {
                txt: TtlCache::new(n),
                mx: TtlCache::new(n / 4),
                v4: TtlCache::new(n / 2),
                v6: TtlCache::new(n / 4),
                ptr: TtlCache::new(n / 8),
            },
            settings: settings.clone(),
        })
    }

    /// TXT records of `name`, each record's strings joined: `Ok(None)` when
    /// it does not exist or has none.
    pub(crate) async fn txt(&self, name: &str) -> Result<Option<Vec<Vec<u8>>>, DnsError> {
        let fqdn = format!("{}.", name.trim_end_matches('.'));
        match self.resolver.txt_lookup(fqdn.as_str()).await {
            Ok(lookup) => Ok(Some(
                lookup
                    .answers()
                    .iter()
                    .filter_map(|r| match &r.data {
                        RData::TXT(txt) => Some(txt.txt_data.iter().flat_map(|s| s.iter().copied()).collect()),
                        _ => None,
                    })
                    .collect(),
            )),
            Err(e) if e.is_no_records_found() || e.is_nx_domain() => Ok(None),
            Err(e) => Err(DnsError::Temporary {
                name: name.to_string(),
                detail: e.to_string(),
            }),
        }
    }

    /// A records of `name`: `Ok(None)` when it does not exist or has none.
    pub(crate) async fn ipv4(&self, name: &str) -> Result<Option<Vec<Ipv4Addr>>, DnsError> {
        let fqdn = format!("{}.", name.trim_end_matches('.'));
        match self.resolver.ipv4_lookup(fqdn.as_str()).await {
            Ok(lookup) => Ok(Some(
                lookup
                    .answers()
                    .iter()
                    .filter_map(|r| match &r.data {
                        RData::A(a) => Some(a.0),
                        _ => None,
                    })
                    .collect(),
            )),
            Err(e) if e.is_no_records_found() || e.is_nx_domain() => Ok(None),
            Err(e) => Err(DnsError::Temporary {
                name: name.to_string(),
                detail: e.to_string(),
            }),
        }
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
