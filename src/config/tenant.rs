//! Tenants as configured: the domains that attribute mail to a tenant, the
//! tenant id EXO stamps, where its mail goes back to, its mode and policy.
//!
//! [`TenantIndex`] answers "which tenant owns this domain" for admission. A
//! domain belongs to at most one tenant (config validation enforces it), so a
//! lookup is never ambiguous.

use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use crate::message::envelope::Mailbox;

/// How a tenant's mail is handled (DESIGN §1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TenantMode {
    /// Scan before delivery and enforce the action.
    Inline,
    /// Scan and stamp, deliver everything.
    Detect,
    /// Journal reports: scan the attached original, record, never relay.
    Monitor,
}

impl TenantMode {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            TenantMode::Inline => "inline",
            TenantMode::Detect => "detect",
            TenantMode::Monitor => "monitor",
        }
    }
}

/// A `host:port` of a downstream MTA.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HostPort {
    pub host: String,
    pub port: u16,
}

impl fmt::Display for HostPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

impl HostPort {
    /// "host:port", "[v6]:port", or "host" with `default_port`.
    pub(crate) fn parse(text: &str, default_port: u16) -> Result<HostPort, String> {
        let bad = || format!("expected \"host:port\", found \"{text}\"");
        let (host, port) = if let Some(rest) = text.strip_prefix('[') {
            let (host, tail) = rest.split_once(']').ok_or_else(bad)?;
            let port = match tail.strip_prefix(':') {
                Some(p) => p.parse().map_err(|_| bad())?,
                None if tail.is_empty() => default_port,
                None => return Err(bad()),
            };
            (host.to_string(), port)
        } else if let Some((host, port)) = text.rsplit_once(':') {
            if host.contains(':') {
                return Err(format!("write IPv6 addresses as \"[addr]:port\", found \"{text}\""));
            }
            (host.to_string(), port.parse().map_err(|_| bad())?)
        } else {
            (text.to_string(), default_port)
        };
        if host.is_empty() || port == 0 {
            return Err(bad());
        }
        Ok(HostPort {
            host: host.to_lowercase(),
            port,
        })
    }
}

/// Where a tenant's mail is relayed back to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    /// Hosts tried in order.
    Hosts(Vec<HostPort>),
    /// The MX of the tenant's first domain.
    Mx,
}

#[derive(Debug, Clone)]
pub struct Tenant {
    pub portal: String,
    /// Lower-case, without trailing dot.
    pub domains: Vec<String>,
    /// Lower-case GUID when set.
    pub tenant_id: Option<String>,
    pub deliver_to: Destination,
    pub mode: TenantMode,
    pub policy: String,
    /// Client certificate and key presented when relaying this tenant's mail.
    pub relay_cert: Option<(PathBuf, PathBuf)>,
    /// Name of that certificate as the tenant's OnPremises connector expects
    /// it (`-TlsSenderCertificateName`; an accepted domain of the tenant).
    pub certificate_name: Option<String>,
    /// Where EXO sends journal reports for a `monitor` tenant (accepted at
    /// RCPT exactly, without its domain being one of `domains`).
    pub journal_address: Option<String>,
    /// Where EXO sends journal reports it cannot deliver
    /// (`Set-TransportConfig -JournalingReportNdrTo`; exo-setup only).
    pub journal_ndr_address: Option<String>,
    /// When delivery status notifications are sent for this tenant's mail.
    pub dsn: DsnPolicy,
    /// Post-delivery remediation (`[tenant.remediation]`), if enabled.
    pub remediation: Option<crate::config::remediation::RemediationConfig>,
    /// `[tenant.digest]`: the end users' daily quarantine digest.
    pub digest: Option<crate::config::web::DigestConfig>,
}

/// When a DSN is sent for mail of one direction (`[tenant.dsn]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DsnWhen {
    Never,
    /// Only when SPF or DMARC showed the envelope sender to be authentic.
    Authenticated,
    Always,
}

/// What a DSN carries of the original.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReturnContent {
    /// The header only, whatever RET asks for.
    Headers,
    /// The whole message when RET=FULL asks for it, up to `return_limit`.
    Full,
}

/// A tenant's DSN policy. Inbound senders are unauthenticated by default,
/// so a DSN to them would let anyone pick who receives what from our egress
/// addresses (backscatter): inbound DSNs go only to authenticated senders.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DsnPolicy {
    pub inbound: DsnWhen,
    pub outgoing: DsnWhen,
    pub internal: DsnWhen,
    pub return_content: ReturnContent,
    /// Above this many bytes (received or stamped), `Full` returns the
    /// header only, as Postfix's `bounce_size_limit` does: a DSN never
    /// carries, nor holds in memory, a large message.
    pub return_limit: u64,
}

impl Default for DsnPolicy {
    fn default() -> Self {
        DsnPolicy {
            inbound: DsnWhen::Authenticated,
            outgoing: DsnWhen::Always,
            internal: DsnWhen::Always,
            return_content: ReturnContent::Headers,
            // Postfix's `bounce_size_limit` default.
            return_limit: 50_000,
        }
    }
}

impl DsnPolicy {
    pub(crate) fn when(&self, direction: crate::message::envelope::Direction) -> DsnWhen {
        use crate::message::envelope::Direction;
        match direction {
            Direction::Inbound => self.inbound,
            Direction::Outgoing => self.outgoing,
            Direction::Internal => self.internal,
        }
    }
}

impl Tenant {
    /// An inline tenant on the default policy, without tenant id or certificates.
    pub fn new(portal: &str, domains: &[&str], deliver_to: Destination) -> Tenant {
        Tenant {
            portal: portal.to_string(),
            domains: domains.iter().map(|d| d.to_lowercase()).collect(),
            tenant_id: None,
            deliver_to,
            mode: TenantMode::Inline,
            policy: "default".into(),
            relay_cert: None,
            certificate_name: None,
            journal_address: None,
            journal_ndr_address: None,
            dsn: DsnPolicy::default(),
            remediation: None,
            digest: None,
        }
    }

    pub(crate) fn owns_domain(&self, domain: &str) -> bool {
        self.domains.iter().any(|d| d.eq_ignore_ascii_case(domain))
    }

    pub(crate) fn owns_address(&self, address: &Mailbox) -> bool {
        address.domain_key().is_some_and(|d| self.owns_domain(&d))
    }

    /// Whether `address` is this monitor tenant's journal address.
    pub(crate) fn is_journal_address(&self, address: &Mailbox) -> bool {
        self.mode == TenantMode::Monitor
            && self
                .journal_address
                .as_deref()
                .is_some_and(|j| journal_key(j) == journal_key(&address.to_string()))
    }
}

/// A journal address as compared: the mailbox's serialisation (so `"j"@x`
/// and `j@x` are one address, and a quoted `"j@x"@y` is not `j@x`), lower case.
fn journal_key(address: &str) -> String {
    Mailbox::parse(address)
        .map(|m| m.to_string())
        .unwrap_or_else(|_| address.to_string())
        .to_lowercase()
}

/// Domain → tenant lookup.
#[derive(Debug, Default)]
pub(crate) struct TenantIndex {
    tenants: Vec<Arc<Tenant>>,
    by_domain: HashMap<String, usize>,
    by_portal: HashMap<String, usize>,
    /// Lower-case journal address → monitor tenant.
    by_journal: HashMap<String, usize>,
}

impl TenantIndex {
    pub(crate) fn new(tenants: Vec<Tenant>) -> TenantIndex {
        let mut index = TenantIndex::default();
        for tenant in tenants {
            let i = index.tenants.len();
            for d in &tenant.domains {
                index.by_domain.entry(d.clone()).or_insert(i);
            }
            index.by_portal.entry(tenant.portal.clone()).or_insert(i);
            if tenant.mode == TenantMode::Monitor
                && let Some(j) = &tenant.journal_address
            {
                index.by_journal.entry(journal_key(j)).or_insert(i);
            }
            index.tenants.push(Arc::new(tenant));
        }
        index
    }

    pub(crate) fn by_domain(&self, domain: &str) -> Option<&Arc<Tenant>> {
        let d = domain.trim_end_matches('.').to_lowercase();
        self.by_domain.get(&d).map(|&i| &self.tenants[i])
    }

    /// The tenant owning the mailbox's domain (the domain after the local
    /// part, never what follows an `@` quoted inside it).
    pub(crate) fn by_address(&self, address: &Mailbox) -> Option<&Arc<Tenant>> {
        self.by_domain(&address.domain_key()?)
    }

    /// The monitor tenant whose `journal_address` is exactly `address`
    /// (without regard to case). Only that address: its domain is not the
    /// tenant's, so no other address there is accepted.
    pub(crate) fn by_journal_address(&self, address: &Mailbox) -> Option<&Arc<Tenant>> {
        self.by_journal
            .get(&journal_key(&address.to_string()))
            .map(|&i| &self.tenants[i])
    }

    pub(crate) fn by_portal(&self, portal: &str) -> Option<&Arc<Tenant>> {
        self.by_portal.get(portal).map(|&i| &self.tenants[i])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_port_forms() {
        assert_eq!(
            HostPort::parse("mx.Contoso.com:2525", 25).unwrap(),
            HostPort {
                host: "mx.contoso.com".into(),
                port: 2525
            }
        );
        assert_eq!(HostPort::parse("mx.contoso.com", 25).unwrap().port, 25);
        assert_eq!(HostPort::parse("[::1]:26", 25).unwrap().host, "::1");
        assert!(HostPort::parse("::1:25", 25).is_err());
        assert!(HostPort::parse("host:0", 25).is_err());
        assert!(HostPort::parse("host:x", 25).is_err());
        assert!(HostPort::parse(":25", 25).is_err());
    }
}
