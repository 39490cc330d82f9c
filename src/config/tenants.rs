//! Reading `[[tenant]]` tables: portal, domains, tenant id, destination,
//! mode, policy reference and relay certificate, each checked on its own and
//! reported with its TOML path.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::config::policy::PolicyConfig;
use crate::config::reader::Section;
use crate::config::tenant::{Destination, DsnPolicy, DsnWhen, HostPort, ReturnContent, Tenant, TenantMode};

fn valid_domain(d: &str) -> bool {
    !d.is_empty()
        && d.len() <= 253
        && d.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_alphanumeric() || c == '-')
        })
}

pub(super) fn read_tenant(t: &Section<'_>, base: &Path, policies: &BTreeMap<String, PolicyConfig>) -> Option<Tenant> {
    let portal = t.opt_string("portal");
    let domains = t.opt_strings("domains");
    let tenant_id = t.string_or("tenant_id", "").to_lowercase();
    let deliver_to = t.opt_strings("deliver_to");
    let mode = t.choice_or(
        "mode",
        TenantMode::Inline,
        &[
            ("inline", TenantMode::Inline),
            ("detect", TenantMode::Detect),
            ("monitor", TenantMode::Monitor),
        ],
    );
    let policy = t.string_or("policy", "default");
    let relay_cert = t.opt_path("relay_cert", base);
    let relay_key = t.opt_path("relay_key", base);
    let certificate_name = t.opt_string("certificate_name").filter(|n| !n.is_empty());
    let digest = t.section("digest").map(|d| crate::config::web::read_digest(&d));
    let journal_address = t.opt_string("journal_address").filter(|a| !a.is_empty());
    let journal_ndr_address = t.opt_string("journal_ndr_address").filter(|a| !a.is_empty());
    let dsn = read_dsn(t);
    for (key, value) in [
        ("journal_address", &journal_address),
        ("journal_ndr_address", &journal_ndr_address),
    ] {
        if let Some(a) = value
            && !a.contains('@')
        {
            t.error(key, format!("expected an email address, found \"{a}\""));
        }
    }

    let remediation = crate::config::remediation::read(t, base, &tenant_id);
    let Some(portal) = portal else {
        t.error(
            "portal",
            "missing: the tenant's portal name, as used in X-CLOUD-SEC-AV-Info",
        );
        return None;
    };
    check_portal(t, &portal);
    let domains = read_domains(t, domains);
    if !tenant_id.is_empty() && !is_guid(&tenant_id) {
        t.error(
            "tenant_id",
            format!("expected a GUID such as \"72f988bf-86f1-41af-91ab-2d7cd011db47\", found \"{tenant_id}\""),
        );
    }
    let deliver_to = read_destination(t, deliver_to);
    if !policies.contains_key(&policy) {
        let known: Vec<&str> = policies.keys().map(String::as_str).collect();
        t.error(
            "policy",
            format!("no [policy.{policy}] is defined; defined: {}", known.join(", ")),
        );
    }
    let relay_cert = read_relay_cert(t, relay_cert, relay_key);
    if relay_cert.is_some() && tenant_id.is_empty() {
        // With a client certificate EXO treats what we relay as the tenant's
        // own mail; only the tenant id (stamped by EXO, not by the sender)
        // stops another EXO tenant from getting its mail relayed that way.
        t.error(
            "tenant_id",
            "required when relay_cert is set: the tenant's Microsoft Entra tenant ID (the GUID in its mail's X-MS-Exchange-CrossTenant-Id)",
        );
    }
    Some(Tenant {
        portal,
        domains,
        tenant_id: (!tenant_id.is_empty()).then_some(tenant_id),
        deliver_to,
        mode,
        policy,
        relay_cert,
        certificate_name,
        journal_address,
        journal_ndr_address,
        dsn,
        remediation,
        digest,
    })
}

/// `[tenant.dsn]`: when DSNs are sent, per direction, and what they return.
fn read_dsn(t: &Section<'_>) -> DsnPolicy {
    let mut policy = DsnPolicy::default();
    let Some(d) = t.section("dsn") else {
        return policy;
    };
    let whens = [
        ("never", DsnWhen::Never),
        ("authenticated", DsnWhen::Authenticated),
        ("always", DsnWhen::Always),
    ];
    policy.inbound = d.choice_or("inbound", policy.inbound, &whens);
    policy.outgoing = d.choice_or("outgoing", policy.outgoing, &whens);
    policy.internal = d.choice_or("internal", policy.internal, &whens);
    policy.return_content = d.choice_or(
        "return_content",
        policy.return_content,
        &[("headers", ReturnContent::Headers), ("full", ReturnContent::Full)],
    );
    policy.return_limit = d.size_or("return_limit", policy.return_limit);
    policy
}

/// A portal name is what X-CLOUD-SEC-AV-Info carries and what the exo-setup
/// script quotes: letters, digits, '-' and '_' only.
fn check_portal(t: &Section<'_>, portal: &str) {
    if portal.is_empty()
        || !portal
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        t.error(
            "portal",
            format!("must be letters, digits, '-' or '_', found \"{portal}\""),
        );
    }
}

/// `domains`: lower-cased, without trailing dot, each a domain name.
fn read_domains(t: &Section<'_>, domains: Option<Vec<String>>) -> Vec<String> {
    let domains: Vec<String> = domains
        .unwrap_or_else(|| {
            t.error("domains", "missing: the tenant's mail domains");
            Vec::new()
        })
        .iter()
        .map(|d| d.trim_end_matches('.').to_lowercase())
        .collect();
    if t.contains("domains") && domains.is_empty() {
        t.error("domains", "must list at least one domain");
    }
    for d in &domains {
        if !valid_domain(d) {
            t.error("domains", format!("\"{d}\" is not a domain name"));
        }
    }
    domains
}

/// `deliver_to`: `["mx"]` alone, or `"host:port"` entries tried in order.
fn read_destination(t: &Section<'_>, deliver_to: Option<Vec<String>>) -> Destination {
    match deliver_to {
        None => {
            t.error("deliver_to", "missing: [\"host:port\", ...] or [\"mx\"]");
            Destination::Mx
        }
        Some(list) if list.len() == 1 && list[0] == "mx" => Destination::Mx,
        Some(list) if list.is_empty() => {
            t.error("deliver_to", "must list at least one \"host:port\", or be [\"mx\"]");
            Destination::Mx
        }
        Some(list) => {
            let mut hosts = Vec::new();
            for (i, item) in list.iter().enumerate() {
                if item == "mx" {
                    t.problems().push(
                        format!("{}[{i}]", t.key_path("deliver_to")),
                        "\"mx\" must be the only entry",
                    );
                    continue;
                }
                match HostPort::parse(item, 25) {
                    Ok(h) => hosts.push(h),
                    Err(e) => t.problems().push(format!("{}[{i}]", t.key_path("deliver_to")), e),
                }
            }
            Destination::Hosts(hosts)
        }
    }
}

/// `relay_cert` and `relay_key`: both or neither, and both files present.
fn read_relay_cert(t: &Section<'_>, cert: Option<PathBuf>, key: Option<PathBuf>) -> Option<(PathBuf, PathBuf)> {
    match (cert, key) {
        (Some(c), Some(k)) => {
            for (name, p) in [("relay_cert", &c), ("relay_key", &k)] {
                if !p.exists() {
                    t.error(name, format!("file {} does not exist", p.display()));
                }
            }
            Some((c, k))
        }
        (None, None) => None,
        (Some(_), None) => {
            t.error(
                "relay_key",
                "missing: relay_cert is set, so its private key must be too",
            );
            None
        }
        (None, Some(_)) => {
            t.error(
                "relay_cert",
                "missing: relay_key is set, so its certificate must be too",
            );
            None
        }
    }
}

fn is_guid(s: &str) -> bool {
    let groups: Vec<&str> = s.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, n)| g.len() == n && g.chars().all(|c| c.is_ascii_hexdigit()))
}
