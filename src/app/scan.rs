//! `exogate scan`'s engine: a message from a file, judged by a tenant's
//! policy with the daemon's own code, without SMTP.
//!
//! The configuration and its policies are built exactly as `run` builds them
//! (`load_policies`), and each message goes through the function the session
//! calls at end of data (`inbound::disposition::scan`: the pipeline, and the
//! journal unwrapping of a monitor tenant). What SMTP would have told us is
//! taken from the message or the command line: the tenant and direction from
//! `X-CLOUD-SEC-AV-Info` as admission reads it (else the recipients' tenant,
//! else the only tenant; the direction inferred from the domains), the
//! envelope from `Return-Path`/`From` and the tenant's `To`/`Cc` addresses.
//! Nothing is stored, stamped, relayed or recorded. Must never: bind a
//! socket, write under `state_dir`, or judge differently from the daemon.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::sync::Arc;

use mail_parser::{Address, HeaderValue, MessageParser};

use crate::config::Config;
use crate::config::tenant::{Tenant, TenantIndex};
use crate::inbound::admission;
use crate::message::envelope::{Direction, Envelope, Mailbox, Recipient, SessionFacts, domain_of};
use crate::message::headers;
use crate::scan::pipeline::{Policy, ScanReport};

use super::{AppError, load_policies};

/// Where the SMTP client is unknown: TEST-NET-1 (RFC 5737), an outside host
/// with no reputation that never resolves.
pub const UNKNOWN_CLIENT: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));

/// What the command line says in place of the SMTP session.
#[derive(Debug, Clone)]
pub struct ScanOptions {
    /// Portal of the tenant whose policy judges (else found from the message).
    pub tenant: Option<String>,
    /// The direction (else `X-CLOUD-SEC-AV-Info`, else inferred).
    pub direction: Option<Direction>,
    pub client_ip: IpAddr,
    pub helo: String,
    /// Envelope sender (else `Return-Path`, else `From`).
    pub mail_from: Option<String>,
    /// Envelope recipients (else the tenant's addresses in `To`/`Cc`).
    pub recipients: Vec<String>,
}

impl Default for ScanOptions {
    fn default() -> Self {
        ScanOptions {
            tenant: None,
            direction: None,
            client_ip: UNKNOWN_CLIENT,
            helo: "unknown".into(),
            mail_from: None,
            recipients: Vec::new(),
        }
    }
}

/// How the direction was decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DirectionSource {
    CommandLine,
    Header,
    Inferred,
}

impl DirectionSource {
    pub fn as_str(self) -> &'static str {
        match self {
            DirectionSource::CommandLine => "--direction",
            DirectionSource::Header => "X-CLOUD-SEC-AV-Info",
            DirectionSource::Inferred => "inferred from the domains",
        }
    }
}

/// One judged message.
pub struct Scanned {
    pub tenant: Arc<Tenant>,
    pub direction: Direction,
    pub direction_source: DirectionSource,
    pub envelope: Envelope,
    pub report: ScanReport,
    /// The policy's thresholds and scan limit, for the reader.
    pub junk: f64,
    pub quarantine: f64,
    pub reject: f64,
    pub scan_max_size: u64,
}

/// The loaded configuration and its running policies.
pub struct Scanner {
    pub config: Arc<Config>,
    tenants: TenantIndex,
    policies: BTreeMap<String, Arc<Policy>>,
}

impl Scanner {
    /// Loads and builds the configuration as `run` does (every problem at once).
    pub fn open(path: &Path) -> Result<Scanner, AppError> {
        let (config, policies) = load_policies(path)?;
        if config.tenants.is_empty() {
            return Err(AppError::Other(format!(
                "{}: no [[tenant]]: scan judges a message by a tenant's policy",
                path.display()
            )));
        }
        Ok(Scanner {
            tenants: TenantIndex::new(config.tenants.clone()),
            config: Arc::new(config),
            policies,
        })
    }

    /// A `--tenant` that names no tenant is a usage error, found before any file is read.
    pub fn check_tenant(&self, portal: &str) -> Result<(), AppError> {
        match self.tenants.by_portal(portal) {
            Some(_) => Ok(()),
            None => Err(AppError::Other(format!(
                "--tenant {portal}: no such tenant; configured: {}",
                self.config
                    .tenants
                    .iter()
                    .map(|t| t.portal.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))),
        }
    }

    /// The largest message the daemon accepts (`server.max_message_size`).
    pub fn max_message_size(&self) -> u64 {
        self.config.server.max_message_size
    }

    /// Judges `raw` (the whole message; `full_size` its length) by its tenant's policy.
    pub async fn scan(&self, raw: &[u8], options: &ScanOptions, queue_id: &str) -> Result<Scanned, String> {
        let head = &raw[..headers::header_len(raw)];
        let parsed_head = MessageParser::default().parse_headers(head);
        let header_addresses = |names: &[&str]| -> Vec<String> {
            let mut out = Vec::new();
            if let Some(m) = &parsed_head {
                for name in names {
                    if let Some(value) = m.header(*name) {
                        addresses(value, &mut out);
                    }
                }
            }
            out
        };
        let info = headers::values(head, "X-CLOUD-SEC-AV-Info")
            .iter()
            .find_map(|v| admission::parse_info(v).map(|(p, d)| (p.to_string(), d)));
        let to_cc = header_addresses(&["To", "Cc", "Delivered-To"]);

        let tenant = self.tenant(options, info.as_ref(), &to_cc)?;
        let explicit_from = match &options.mail_from {
            Some(a) => Some(Mailbox::from_text(a).ok_or_else(|| format!("--from {a:?} is not an address"))?),
            None => None,
        };
        let mail_from = explicit_from.unwrap_or_else(|| {
            let return_path = headers::values(head, "Return-Path")
                .first()
                .map(|v| {
                    v.trim()
                        .trim_start_matches('<')
                        .trim_end_matches('>')
                        .trim()
                        .to_string()
                })
                .filter(|v| v.contains('@'));
            return_path
                .or_else(|| header_addresses(&["From"]).into_iter().next())
                .and_then(|a| Mailbox::from_text(&a))
                .unwrap_or_default()
        });
        let recipients: Vec<Mailbox> = if !options.recipients.is_empty() {
            let mut out = Vec::new();
            for a in &options.recipients {
                out.push(Mailbox::from_text(a).ok_or_else(|| format!("recipient {a:?} is not an address"))?);
            }
            out
        } else {
            let own: Vec<Mailbox> = to_cc
                .iter()
                .filter_map(|a| Mailbox::from_text(a))
                .filter(|a| tenant.owns_address(a))
                .collect();
            if own.is_empty() {
                let domain = tenant.domains.first().map(String::as_str).unwrap_or("invalid");
                vec![Mailbox::from_parts("postmaster", domain).map_err(|e| format!("postmaster@{domain}: {e}"))?]
            } else {
                own
            }
        };
        let envelope = Envelope {
            mail_from,
            recipients: recipients
                .into_iter()
                .map(|address| Recipient {
                    address,
                    orcpt: None,
                    notify: None,
                })
                .collect(),
            ..Envelope::default()
        };
        // As admission decides it: a header naming this tenant states the
        // direction and makes the session its Exchange Online connection.
        let stated = info
            .as_ref()
            .filter(|(p, _)| p.eq_ignore_ascii_case(&tenant.portal))
            .map(|(_, d)| *d);
        let exo_session = stated.is_some();
        let (direction, direction_source) = match (options.direction, stated) {
            (Some(d), _) => (d, DirectionSource::CommandLine),
            (None, Some(d)) => (d, DirectionSource::Header),
            (None, None) => (
                admission::infer_direction(&tenant, &envelope),
                DirectionSource::Inferred,
            ),
        };
        let session = SessionFacts {
            session_id: String::new(),
            client_ip: options.client_ip,
            client_port: 0,
            helo: options.helo.clone(),
            tls: None,
        };
        let policy = self.policies.get(&tenant.policy).cloned().ok_or_else(|| {
            format!(
                "tenant {} names policy {} which is not built",
                tenant.portal, tenant.policy
            )
        })?;
        let report = crate::inbound::disposition::scan(
            &policy,
            raw,
            raw.len() as u64,
            &envelope,
            &session,
            &tenant,
            direction,
            exo_session,
            queue_id,
        )
        .await;
        Ok(Scanned {
            tenant,
            direction,
            direction_source,
            envelope,
            report,
            junk: policy.thresholds.junk,
            quarantine: policy.thresholds.quarantine,
            reject: policy.thresholds.reject,
            scan_max_size: policy.scan_max_size,
        })
    }

    fn tenant(
        &self,
        options: &ScanOptions,
        info: Option<&(String, Direction)>,
        to_cc: &[String],
    ) -> Result<Arc<Tenant>, String> {
        if let Some(portal) = &options.tenant {
            return self
                .tenants
                .by_portal(portal)
                .cloned()
                .ok_or_else(|| format!("no tenant \"{portal}\""));
        }
        if let Some((portal, _)) = info
            && let Some(t) = self.tenants.by_portal(portal)
        {
            return Ok(t.clone());
        }
        if let Some(t) = to_cc
            .iter()
            .filter_map(|a| Mailbox::from_text(a))
            .find_map(|a| self.tenants.by_address(&a))
        {
            return Ok(t.clone());
        }
        match self.config.tenants.as_slice() {
            [only] => self
                .tenants
                .by_portal(&only.portal)
                .cloned()
                .ok_or_else(|| "the only tenant is not indexed".to_string()),
            _ => Err("no tenant found from X-CLOUD-SEC-AV-Info or the recipients: say --tenant PORTAL".into()),
        }
    }
}

/// The addresses of an address header, lower-cased.
fn addresses(value: &HeaderValue, out: &mut Vec<String>) {
    let HeaderValue::Address(address) = value else {
        return;
    };
    let list: Vec<&mail_parser::Addr> = match address {
        Address::List(list) => list.iter().collect(),
        Address::Group(groups) => groups.iter().flat_map(|g| g.addresses.iter()).collect(),
    };
    for a in list {
        if let Some(addr) = a.address.as_deref()
            && domain_of(addr).is_some()
        {
            out.push(addr.trim().to_lowercase());
        }
    }
}
