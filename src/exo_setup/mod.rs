//! `exogate exo-setup`: the PowerShell script that wires one tenant's Exchange
//! Online organisation to this gateway (connectors, transport rules, journal
//! rule), computed from the configuration alone.
//!
//! This file owns the inputs: it picks the tenant, resolves the defaults of the
//! `[exchange]` keys, and refuses configurations that would produce a script
//! that loses mail or loops (no public IPv4 address to exempt the gateway's own
//! deliveries, a private address EXO never sees, a monitor tenant without a
//! journal address, a relay certificate name the gateway never presents).
//! `render` turns the checked plan into text. Invariants: every config value
//! reaches the script only as a single-quoted PowerShell literal made by
//! [`ps_quote`] (or, already checked to hold no line break, inside a `#`
//! comment), never inside a double-quoted (interpolating) string; only cmdlets
//! and parameters that docs/exchange-online.md §1.1, §2.2 and §5 verify are used
//! (tests/exo_setup.rs enforces it). It never talks to Exchange Online.

mod names;
mod render;
mod rules;
mod writer;

use std::net::Ipv4Addr;

use ipnet::{IpNet, Ipv4Net};

use crate::config::Config;
use crate::config::tenant::TenantMode;
use crate::smtp::address::Mailbox;

/// Why no script could be written for a tenant.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExoSetupError {
    #[error("no tenant with portal \"{portal}\" in the configuration; known portals: {}", list(.known))]
    UnknownPortal { portal: String, known: Vec<String> },
    #[error(
        "no public IPv4 address for the gateway: both exchange.public_ips and relay.source_ips are empty. \
         The transport rules must exempt the addresses Exchange Online sees the gateway deliver from \
         (-ExceptIfSenderIpRanges), or every message loops back to the gateway; set exchange.public_ips \
         (behind NAT: the NAT address)"
    )]
    NoPublicIps,
    #[error(
        "{key} holds only IPv6 addresses ({}), but Exchange Online connectors take IPv4 only: \
         set exchange.public_ips to the gateway's public IPv4 address(es)",
        list(.skipped)
    )]
    NoIpv4 { key: &'static str, skipped: Vec<String> },
    #[error("{key}: {net} is wider than /24; Exchange Online takes /24 to /32 only, so list it as /24 blocks")]
    PrefixTooShort { key: &'static str, net: String },
    #[error(
        "{key}: {net} is not a public address, so Exchange Online never sees mail come from it; \
         behind NAT set exchange.public_ips to the NAT address"
    )]
    NotPublic { key: &'static str, net: String },
    #[error("{key} = \"{value}\" is not a host name (letters, digits, '-', at least one dot{})", if *.wildcard { ", optionally \"*.\" first" } else { "" })]
    InvalidHostName { key: String, value: String, wildcard: bool },
    #[error("{key} = \"{value}\" is not an email address")]
    InvalidAddress { key: String, value: String },
    #[error("{key} is empty or contains a control character (line breaks would escape the script's comments)")]
    UnsafeValue { key: String },
    #[error(
        "tenant \"{portal}\" is in monitor mode but has no journal_address: Exchange Online needs an \
         address outside the tenant to send journal reports to (tenant[{index}].journal_address)"
    )]
    MissingJournalAddress { portal: String, index: usize },
    #[error(
        "tenant \"{portal}\" has certificate_name but no relay_cert/relay_key: Exchange Online would \
         identify the gateway by a certificate it never presents, and reject the relayed mail \
         (tenant[{index}].relay_cert)"
    )]
    CertificateNotPresented { portal: String, index: usize },
}

fn list<T: std::fmt::Display>(items: &[T]) -> String {
    if items.is_empty() {
        return "(none)".into();
    }
    items.iter().map(|i| format!("\"{i}\"")).collect::<Vec<_>>().join(", ")
}

/// The script for the tenant whose portal is `portal`.
pub fn script(config: &Config, portal: &str) -> Result<String, ExoSetupError> {
    let plan = plan(config, portal)?;
    Ok(render::render(&plan))
}

/// Everything the script needs, checked and with defaults resolved.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    pub(crate) prefix: String,
    pub(crate) portal: String,
    pub(crate) mode: TenantMode,
    pub(crate) domains: Vec<String>,
    pub(crate) smart_host: String,
    pub(crate) outgoing_smart_host: String,
    pub(crate) tls_domain: String,
    /// Which key the addresses came from (for the comments).
    pub(crate) ips_key: &'static str,
    pub(crate) ips: Vec<Ipv4Net>,
    /// IPv6 entries left out (EXO connectors take IPv4 only).
    pub(crate) skipped_v6: Vec<IpNet>,
    pub(crate) certificate_name: Option<String>,
    pub(crate) journal_address: Option<String>,
    /// `journal_ndr_address`, else the journal address.
    pub(crate) journal_ndr_address: Option<String>,
}

fn plan(config: &Config, portal: &str) -> Result<Plan, ExoSetupError> {
    let Some(index) = config.tenants.iter().position(|t| t.portal == portal) else {
        return Err(ExoSetupError::UnknownPortal {
            portal: portal.to_string(),
            known: config.tenants.iter().map(|t| t.portal.clone()).collect(),
        });
    };
    let tenant = &config.tenants[index];
    let tkey = |k: &str| format!("tenant[{index}].{k}");
    let ex = &config.exchange;

    safe_text("exchange.name_prefix", &ex.name_prefix)?;
    safe_text(&tkey("portal"), &tenant.portal)?;
    for (i, d) in tenant.domains.iter().enumerate() {
        safe_text(&format!("{}[{i}]", tkey("domains")), d)?;
    }

    let journal_address = match (&tenant.journal_address, tenant.mode) {
        (Some(a), _) => Some(email(&tkey("journal_address"), a)?),
        (None, TenantMode::Monitor) => {
            return Err(ExoSetupError::MissingJournalAddress {
                portal: tenant.portal.clone(),
                index,
            });
        }
        (None, _) => None,
    };
    let journal_ndr_address = match &tenant.journal_ndr_address {
        Some(a) => Some(email(&tkey("journal_ndr_address"), a)?),
        None => None,
    };

    if tenant.mode == TenantMode::Monitor {
        // Journaling only: no connector or rule of the inline path is written,
        // so the gateway's names and addresses are not needed (nor checked).
        return Ok(Plan {
            prefix: ex.name_prefix.clone(),
            portal: tenant.portal.clone(),
            mode: tenant.mode,
            domains: tenant.domains.clone(),
            smart_host: String::new(),
            outgoing_smart_host: String::new(),
            tls_domain: String::new(),
            ips_key: "exchange.public_ips",
            ips: Vec::new(),
            skipped_v6: Vec::new(),
            certificate_name: None,
            journal_address,
            journal_ndr_address,
        });
    }

    // Resolve in the documented order; report the key the admin actually set.
    let (smart_key, smart) = pick(&[
        ("exchange.smart_host", ex.smart_host.as_str()),
        ("server.hostname", config.server.hostname.as_str()),
    ]);
    let smart_host = host_name(smart_key, smart, false)?;
    let (out_key, out) = pick(&[
        ("exchange.outgoing_smart_host", ex.outgoing_smart_host.as_str()),
        (smart_key, smart),
    ]);
    let outgoing_smart_host = host_name(out_key, out, false)?;
    let (tls_key, tls) = pick(&[("exchange.tls_domain", ex.tls_domain.as_str()), (smart_key, smart)]);
    let tls_domain = host_name(tls_key, tls, true)?;

    let certificate_name = match &tenant.certificate_name {
        Some(n) => {
            if tenant.relay_cert.is_none() {
                return Err(ExoSetupError::CertificateNotPresented {
                    portal: tenant.portal.clone(),
                    index,
                });
            }
            Some(host_name(&tkey("certificate_name"), n, true)?)
        }
        None => None,
    };

    let (ips_key, nets): (&'static str, Vec<IpNet>) = if !ex.public_ips.is_empty() {
        ("exchange.public_ips", ex.public_ips.clone())
    } else {
        (
            "relay.source_ips",
            config.relay.source_ips.iter().map(|&ip| IpNet::from(ip)).collect(),
        )
    };
    let (ips, skipped_v6) = public_v4(ips_key, &nets)?;
    if ips.is_empty() {
        return Err(if skipped_v6.is_empty() {
            ExoSetupError::NoPublicIps
        } else {
            ExoSetupError::NoIpv4 {
                key: ips_key,
                skipped: skipped_v6.iter().map(ToString::to_string).collect(),
            }
        });
    }

    Ok(Plan {
        prefix: ex.name_prefix.clone(),
        portal: tenant.portal.clone(),
        mode: tenant.mode,
        domains: tenant.domains.clone(),
        smart_host,
        outgoing_smart_host,
        tls_domain,
        ips_key,
        ips,
        skipped_v6,
        certificate_name,
        journal_address,
        journal_ndr_address,
    })
}

/// The first non-empty value, with the key it came from.
fn pick<'a>(candidates: &[(&'static str, &'a str)]) -> (&'static str, &'a str) {
    candidates
        .iter()
        .find(|(_, v)| !v.is_empty())
        .or(candidates.last())
        .copied()
        .unwrap_or(("", ""))
}

fn safe_text(key: &str, value: &str) -> Result<(), ExoSetupError> {
    if value.is_empty() || value.chars().any(char::is_control) {
        return Err(ExoSetupError::UnsafeValue { key: key.to_string() });
    }
    Ok(())
}

/// A DNS host name (ASCII; IDNs in their `xn--` form), lower-cased.
fn host_name(key: &str, value: &str, wildcard: bool) -> Result<String, ExoSetupError> {
    let bad = || ExoSetupError::InvalidHostName {
        key: key.to_string(),
        value: value.chars().filter(|c| !c.is_control()).collect(),
        wildcard,
    };
    let name = value.trim_end_matches('.').to_ascii_lowercase();
    let rest = match name.strip_prefix("*.") {
        Some(rest) if wildcard => rest,
        _ => name.as_str(),
    };
    let labels: Vec<&str> = rest.split('.').collect();
    let ok = !rest.is_empty()
        && name.len() <= 253
        && labels.len() >= 2
        && labels.iter().all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        });
    if ok { Ok(name) } else { Err(bad()) }
}

/// `local@domain`: an RFC 5321 mailbox (the script quotes it) with a host-name
/// domain, written as the typed mailbox serialises it, like every address the
/// gateway writes.
fn email(key: &str, value: &str) -> Result<String, ExoSetupError> {
    safe_text(key, value)?;
    let bad = || ExoSetupError::InvalidAddress {
        key: key.to_string(),
        value: value.to_string(),
    };
    let mailbox = Mailbox::parse(value).map_err(|_| bad())?;
    if mailbox.is_null() {
        return Err(bad());
    }
    let domain = host_name(key, mailbox.domain(), false).map_err(|_| bad())?;
    Ok(format!("{}@{domain}", mailbox.local_wire()))
}

/// IPv4 networks EXO can be given (normalised, de-duplicated), and the IPv6
/// ones left out.
fn public_v4(key: &'static str, nets: &[IpNet]) -> Result<(Vec<Ipv4Net>, Vec<IpNet>), ExoSetupError> {
    let mut v4: Vec<Ipv4Net> = Vec::new();
    let mut v6 = Vec::new();
    for net in nets {
        let net4 = match net {
            IpNet::V4(n) => n.trunc(),
            IpNet::V6(n) => match n.addr().to_ipv4_mapped() {
                Some(a) if n.prefix_len() >= 96 => {
                    Ipv4Net::new(a, n.prefix_len() - 96).map_or_else(|_| Ipv4Net::from(a), |n| n.trunc())
                }
                _ => {
                    v6.push(*net);
                    continue;
                }
            },
        };
        if net4.prefix_len() < 24 {
            return Err(ExoSetupError::PrefixTooShort {
                key,
                net: net.to_string(),
            });
        }
        if !is_public(net4.network()) || !is_public(net4.broadcast()) {
            return Err(ExoSetupError::NotPublic {
                key,
                net: net.to_string(),
            });
        }
        if !v4.contains(&net4) {
            v4.push(net4);
        }
    }
    Ok((v4, v6))
}

/// Whether mail from `ip` can reach Exchange Online unchanged by NAT.
/// Documentation ranges (RFC 5737) count as public so examples stay readable.
fn is_public(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    let shared = a == 100 && (64..128).contains(&b); // RFC 6598 carrier-grade NAT
    let reserved = a == 0 || a >= 240;
    !(ip.is_private()
        || ip.is_loopback()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        || shared
        || reserved)
}

/// `value` as a PowerShell single-quoted string: nothing inside is expanded
/// (`$`, backticks, `$(...)` stay text), and each quote character is doubled.
/// PowerShell treats U+2018..U+201B as single quotes too, so those are doubled
/// as well (as `CodeGeneration.EscapeSingleQuotedStringContent` does).
pub fn ps_quote(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('\'');
    for c in value.chars() {
        if is_ps_single_quote(c) {
            out.push(c);
        }
        out.push(c);
    }
    out.push('\'');
    out
}

/// The characters PowerShell's tokenizer accepts as a single quote.
fn is_ps_single_quote(c: char) -> bool {
    matches!(c, '\'' | '\u{2018}' | '\u{2019}' | '\u{201A}' | '\u{201B}')
}

/// `@('a', 'b')`.
pub(crate) fn ps_array<S: AsRef<str>>(items: &[S]) -> String {
    let inner: Vec<String> = items.iter().map(|i| ps_quote(i.as_ref())).collect();
    format!("@({})", inner.join(", "))
}

/// How an IPv4 network is written for EXO: a bare address for /32.
fn ip_text(net: &Ipv4Net) -> String {
    if net.prefix_len() == 32 {
        net.addr().to_string()
    } else {
        net.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_doubles_every_single_quote_form_and_keeps_dollars() {
        assert_eq!(ps_quote("o'brien"), "'o''brien'");
        assert_eq!(ps_quote("a\u{2019}b"), "'a\u{2019}\u{2019}b'");
        assert_eq!(ps_quote("$(Stop-Computer)`n"), "'$(Stop-Computer)`n'");
        assert_eq!(ps_array(&["1.2.3.4", "x'y"]), "@('1.2.3.4', 'x''y')");
    }

    #[test]
    fn host_names_are_checked() {
        assert_eq!(host_name("k", "GW.Example.NET.", false).unwrap(), "gw.example.net");
        assert!(host_name("k", "*.example.net", true).is_ok());
        assert!(host_name("k", "*.example.net", false).is_err());
        assert!(host_name("k", "localhost", false).is_err());
        assert!(host_name("k", "gw.example.net'; x", false).is_err());
        assert!(host_name("k", "-gw.example.net", false).is_err());
    }

    #[test]
    fn addresses_must_be_public_ipv4_and_narrow() {
        let n = |s: &str| -> IpNet { s.parse().unwrap() };
        let (v4, v6) = public_v4("k", &[n("203.0.113.7/32"), n("2001:db8::1/128"), n("203.0.113.7/32")]).unwrap();
        assert_eq!(v4.len(), 1);
        assert_eq!(ip_text(&v4[0]), "203.0.113.7");
        assert_eq!(v6.len(), 1);
        let (v4, _) = public_v4("k", &[n("198.51.100.9/28")]).unwrap();
        assert_eq!(ip_text(&v4[0]), "198.51.100.0/28");
        assert!(matches!(
            public_v4("k", &[n("198.51.0.0/23")]),
            Err(ExoSetupError::PrefixTooShort { .. })
        ));
        for private in [
            "10.1.2.3/32",
            "192.168.1.0/24",
            "100.64.0.1/32",
            "127.0.0.1/32",
            "172.16.5.5/32",
        ] {
            assert!(
                matches!(public_v4("k", &[n(private)]), Err(ExoSetupError::NotPublic { .. })),
                "{private}"
            );
        }
    }
}
