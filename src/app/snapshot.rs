//! A runtime: one loaded configuration with everything built from it (TLS
//! acceptor, relay TLS configurations, tenant index, policies).
//!
//! Building a runtime either succeeds completely or reports every problem with
//! its TOML path; a half-built runtime never exists. Reload swaps a whole new
//! runtime in (`ArcSwap`); sessions keep the snapshot they started with.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use tokio_rustls::TlsAcceptor;

use crate::config::Config;
use crate::config::reader::ConfigError;
use crate::config::tenant::{Destination, TenantIndex};
use crate::delivery::relay::{Route, Targets};
use crate::scan::pipeline::Policy;
use crate::tls;

pub struct Runtime {
    pub config: Config,
    pub tenants: TenantIndex,
    /// `None` only in a dry run whose certificate will be generated at start.
    pub acceptor: Option<TlsAcceptor>,
    pub relay_tls: Arc<rustls::ClientConfig>,
    /// Every policy, its checks built.
    pub policies: BTreeMap<String, Arc<Policy>>,
    tenant_tls: HashMap<String, Arc<rustls::ClientConfig>>,
}

fn problem(path: &str, e: impl std::fmt::Display) -> ConfigError {
    ConfigError {
        path: path.to_string(),
        problem: e.to_string(),
    }
}

impl Runtime {
    /// Builds everything. With `dry_run`, no file is created (a certificate
    /// that would be generated is reported as such, not created).
    pub fn build(
        config: Config,
        policies: BTreeMap<String, Arc<Policy>>,
        dry_run: bool,
    ) -> Result<Runtime, Vec<ConfigError>> {
        let mut errors = Vec::new();
        let will_generate = config.tls.generate && !config.tls.cert.exists() && !config.tls.key.exists();
        let acceptor = if will_generate && dry_run {
            None
        } else {
            if !dry_run && let Err(e) = tls::generate_if_absent(&config.tls, &config.server.hostname) {
                errors.push(problem("tls.generate", e));
            }
            match tls::server_config(&config.tls) {
                Ok(c) => Some(TlsAcceptor::from(c)),
                Err(e) => {
                    let path = match e {
                        tls::TlsError::NoRoots { .. } | tls::TlsError::Verifier { .. } => "tls.client_ca",
                        tls::TlsError::NoKey { .. } => "tls.key",
                        _ => "tls.cert",
                    };
                    errors.push(problem(path, e));
                    None
                }
            }
        };
        let relay_tls = match tls::client_config(config.relay.ca.as_deref(), None) {
            Ok(c) => Some(c),
            Err(e) => {
                errors.push(problem("relay.ca", e));
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
                    Err(e) => errors.push(problem(&format!("tenant[{i}].relay_cert"), e)),
                }
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        let tenants = TenantIndex::new(config.tenants.clone());
        Ok(Runtime {
            tenants,
            acceptor,
            relay_tls: relay_tls.expect("no errors means it was built"),
            tenant_tls,
            policies,
            config,
        })
    }

    /// A tenant's policy (tenants name only defined policies: config checks).
    pub fn policy(&self, name: &str) -> Arc<Policy> {
        self.policies
            .get(name)
            .cloned()
            .expect("tenant policies are validated at load")
    }

    /// Where a tenant's mail goes, or `None` when no such tenant is configured.
    pub fn tenant_route(&self, portal: &str) -> Option<Route> {
        let tenant = self.tenants.by_portal(portal)?;
        let targets = match &tenant.deliver_to {
            Destination::Hosts(hosts) => Targets::Hosts(hosts.clone()),
            Destination::Mx => Targets::Mx {
                domain: tenant.domains.first()?.clone(),
                port: self.config.relay.mx_port,
            },
        };
        Some(Route {
            key: format!("tenant:{portal}"),
            targets,
            tls: self
                .tenant_tls
                .get(portal)
                .cloned()
                .unwrap_or_else(|| self.relay_tls.clone()),
            dns_may_bounce: false,
        })
    }

    /// Delivery to the MX of an arbitrary domain (DSNs to external senders).
    pub fn mx_route(&self, domain: &str) -> Route {
        Route {
            key: format!("mx:{domain}"),
            targets: Targets::Mx {
                domain: domain.to_string(),
                port: self.config.relay.mx_port,
            },
            tls: self.relay_tls.clone(),
            // A sender domain that does not exist cannot take a DSN: give up on it.
            dns_may_bounce: true,
        }
    }
}
