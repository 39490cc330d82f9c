//! A snapshot: one loaded configuration with everything built from it (TLS
//! acceptor, relay TLS configurations, tenant index, policies with their
//! checks), cut into what each stage reads: `inbound::Settings` for sessions,
//! `delivery::Settings` for deliveries.
//!
//! Building a snapshot either succeeds completely or reports every problem
//! with its TOML path; a half-built snapshot never exists. Reload swaps a
//! whole new one in (`ArcSwap`); sessions keep the one they started with.

use std::collections::BTreeMap;
use std::sync::Arc;

use tokio_rustls::TlsAcceptor;

use crate::config::Config;
use crate::config::reader::ConfigError;
use crate::config::tenant::TenantIndex;
use crate::scan::pipeline::Policy;
use crate::{delivery, inbound, tls};

pub struct Snapshot {
    pub config: Arc<Config>,
    pub(crate) inbound: Arc<inbound::Settings>,
    pub(crate) delivery: Arc<delivery::Settings>,
}

impl Snapshot {
    /// Builds everything. With `dry_run`, no file is created (a certificate
    /// that would be generated is reported as such, not created).
    pub(crate) fn build(
        config: Config,
        policies: BTreeMap<String, Arc<Policy>>,
        dry_run: bool,
    ) -> Result<Snapshot, Vec<ConfigError>> {
        let mut errors = Vec::new();
        let acceptor = acceptor(&config, dry_run, &mut errors);
        let config = Arc::new(config);
        let tenants = Arc::new(TenantIndex::new(config.tenants.clone()));
        let delivery = match delivery::Settings::build(config.clone(), tenants.clone()) {
            Ok(d) if errors.is_empty() => Arc::new(d),
            Ok(_) => return Err(errors),
            Err(e) => {
                errors.extend(e);
                return Err(errors);
            }
        };
        let mut remediators = BTreeMap::new();
        for (i, t) in config.tenants.iter().enumerate() {
            if let Some(cfg) = &t.remediation {
                match crate::remediate::Remediator::new(&t.portal, cfg.clone()) {
                    Ok(r) => {
                        remediators.insert(t.portal.clone(), Arc::new(r));
                    }
                    Err(e) => errors.push(ConfigError::new(format!("tenant[{i}].remediation"), e)),
                }
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        let inbound = Arc::new(inbound::Settings {
            config: config.clone(),
            tenants,
            acceptor,
            policies,
            delivery: delivery.clone(),
            remediators,
        });
        Ok(Snapshot {
            config,
            inbound,
            delivery,
        })
    }

    /// A self-signed certificate will be generated at start (dry run only).
    pub(crate) fn certificate_pending(&self) -> bool {
        self.inbound.acceptor.is_none()
    }
}

/// The TLS acceptor for inbound sessions, generating a self-signed pair
/// first when asked to and none exists (never in a dry run).
fn acceptor(config: &Config, dry_run: bool, errors: &mut Vec<ConfigError>) -> Option<TlsAcceptor> {
    let will_generate = config.tls.generate && !config.tls.cert.exists() && !config.tls.key.exists();
    if will_generate && dry_run {
        return None;
    }
    if !dry_run && let Err(e) = tls::generate_if_absent(&config.tls, &config.server.hostname) {
        errors.push(ConfigError::new("tls.generate", e));
    }
    match tls::server_config(&config.tls) {
        Ok(c) => Some(TlsAcceptor::from(c)),
        Err(e) => {
            // The key that names the file at fault: a read error names its path.
            let is = |path: &str, p: Option<&std::path::PathBuf>| p.is_some_and(|p| std::path::Path::new(path) == p);
            let path = match &e {
                tls::TlsError::NoRoots { .. } | tls::TlsError::Verifier { .. } => "tls.client_ca",
                tls::TlsError::NoKey { .. } => "tls.key",
                tls::TlsError::Read { path, .. } if is(path, Some(&config.tls.key)) => "tls.key",
                tls::TlsError::Read { path, .. } if is(path, config.tls.client_ca.as_ref()) => "tls.client_ca",
                _ => "tls.cert",
            };
            errors.push(ConfigError::new(path, e));
            None
        }
    }
}
