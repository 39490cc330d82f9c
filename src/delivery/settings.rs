//! What a delivery reads from the configuration in force: the delivery and
//! relay settings, the tenants, and the TLS client configurations built from
//! them (one per tenant with a relay certificate). Built whole, and swapped
//! whole on reload, so an attempt sees one configuration from start to end.

use std::collections::HashMap;
use std::sync::Arc;

use crate::config::Config;
use crate::config::reader::ConfigError;
use crate::config::tenant::{Destination, TenantIndex};
use crate::delivery::route::{Route, RouteKey, Targets, dsn_domain};
use crate::smtp::reply::Reply;
use crate::spool::format::{Kind, Meta};
use crate::tls;

pub(crate) struct Settings {
    pub(crate) config: Arc<Config>,
    pub(crate) tenants: Arc<TenantIndex>,
    relay_tls: Arc<rustls::ClientConfig>,
    tenant_tls: HashMap<String, Arc<rustls::ClientConfig>>,
}

impl Settings {
    /// Loads the relay's trust roots and each tenant's relay certificate;
    /// every problem is reported with its TOML path.
    pub(crate) fn build(config: Arc<Config>, tenants: Arc<TenantIndex>) -> Result<Settings, Vec<ConfigError>> {
        let mut errors = Vec::new();
        let relay_tls = match tls::client_config(config.relay.ca.as_deref(), None) {
            Ok(c) => Some(c),
            Err(e) => {
                errors.push(ConfigError::new("relay.ca", e));
                None
            }
        };
        let mut tenant_tls = HashMap::new();
        for (i, t) in config.tenants.iter().enumerate() {
            if let Some((cert, key)) = &t.relay_cert {
                match tls::client_config(config.relay.ca.as_deref(), Some((cert, key))) {
                    Ok(c) => {
                        tenant_tls.insert(t.portal.clone(), c);
                    }
                    Err(e) => errors.push(ConfigError::new(format!("tenant[{i}].relay_cert"), e)),
                }
            }
        }
        match relay_tls {
            Some(relay_tls) if errors.is_empty() => Ok(Settings {
                config,
                tenants,
                relay_tls,
                tenant_tls,
            }),
            _ => Err(errors),
        }
    }

    /// Where a tenant's mail goes, or `None` when no such tenant is configured.
    pub(crate) fn tenant_route(&self, portal: &str) -> Option<Route> {
        let tenant = self.tenants.by_portal(portal)?;
        let targets = match &tenant.deliver_to {
            Destination::Hosts(hosts) => Targets::Hosts(hosts.clone()),
            Destination::Mx => Targets::Mx {
                domain: tenant.domains.first()?.clone(),
                port: self.config.relay.mx_port,
            },
        };
        Some(Route {
            key: RouteKey::tenant(portal),
            targets,
            tls: self
                .tenant_tls
                .get(portal)
                .cloned()
                .unwrap_or_else(|| self.relay_tls.clone()),
            dns_may_bounce: false,
            dsn_to_internet: false,
        })
    }

    /// Delivery to the MX of an arbitrary domain (DSNs to external senders).
    pub(crate) fn mx_route(&self, domain: &str) -> Route {
        Route {
            key: RouteKey::mx(domain),
            targets: Targets::Mx {
                domain: domain.to_string(),
                port: self.config.relay.mx_port,
            },
            tls: self.relay_tls.clone(),
            // A sender domain that does not exist cannot take a DSN: give up on it.
            dns_may_bounce: true,
            dsn_to_internet: true,
        }
    }

    /// The route of a queued message (the same destination as
    /// [`RouteKey::of`]), or the temporary reply its recipients get when its
    /// tenant is no longer configured.
    pub(crate) fn route_of(&self, meta: &Meta) -> Result<Route, Reply> {
        let portal = match (&meta.kind, &meta.route) {
            (Kind::Dsn, None) => return Ok(self.mx_route(&dsn_domain(meta))),
            (Kind::Dsn, Some(portal)) => portal,
            (Kind::Message, _) => &meta.tenant,
        };
        self.tenant_route(portal).ok_or_else(|| Reply::tenant_gone(portal))
    }
}
