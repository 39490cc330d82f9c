//! Where a message goes, as values: the destination key that connection
//! pools and per-destination limits share, and the route an attempt follows.
//!
//! The key of a queued message is derived here and only here, from what its
//! queue file says, so the scheduler and the attempt always agree on it.

use std::fmt;
use std::ops::Deref;
use std::sync::Arc;

use crate::config::tenant::HostPort;
use crate::spool::format::{Kind, Meta};

/// A destination: `tenant:PORTAL` for a tenant's own destination, `mx:DOMAIN`
/// for the MX of a domain (DSNs to external senders).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct RouteKey(String);

impl RouteKey {
    pub(crate) fn tenant(portal: &str) -> RouteKey {
        RouteKey(format!("tenant:{portal}"))
    }

    pub(crate) fn mx(domain: &str) -> RouteKey {
        RouteKey(format!("mx:{domain}"))
    }

    /// The destination of a queued message: its tenant's, or for a DSN the
    /// tenant it is routed to or else its recipient's MX.
    pub(crate) fn of(meta: &Meta) -> RouteKey {
        match (&meta.kind, &meta.route) {
            (Kind::Dsn, Some(portal)) => RouteKey::tenant(portal),
            (Kind::Dsn, None) => RouteKey::mx(&dsn_domain(meta)),
            (Kind::Message, _) => RouteKey::tenant(&meta.tenant),
        }
    }
}

/// The domain a DSN without a tenant route goes to: its recipient's.
pub(crate) fn dsn_domain(meta: &Meta) -> String {
    meta.envelope
        .recipients
        .first()
        .and_then(|r| r.address.domain_key())
        .unwrap_or_default()
}

impl Deref for RouteKey {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RouteKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Where a message goes.
#[derive(Clone)]
pub(crate) struct Route {
    /// Pool key: connections are reused only within the same route.
    pub(crate) key: RouteKey,
    pub(crate) targets: Targets,
    pub(crate) tls: Arc<rustls::ClientConfig>,
    /// Whether a name that does not exist may fail the message for good.
    /// False for a tenant's own destination: a typo in `deliver_to` or a
    /// resolver glitch must defer mail, never bounce what was acknowledged.
    pub(crate) dns_may_bounce: bool,
    /// A DSN to an outside sender's MX: it leaves only from
    /// `relay.dsn_source_ips`, never from the egress addresses EXO knows.
    pub(crate) dsn_to_internet: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Targets {
    Hosts(Vec<HostPort>),
    Mx { domain: String, port: u16 },
}
