//! The `dnsbl` check: DNS block lists for the original sender's IP and for
//! the domains a message names.
//!
//! - `type = "ip"` zones are asked for the original IP (the trust order's
//!   pick, never Exchange Online's own): IPv4 as reversed octets, IPv6 as 32
//!   reversed nibbles (`…b.d.0.1.0.0.2.zone`). Private and link-local
//!   addresses are not asked.
//! - `type = "domain"` zones (DBL, URIBL style) are asked for the
//!   organisational domains of the From, Reply-To and MAIL FROM addresses
//!   and of the hosts of the message's links (up to `max_domains`).
//!
//! An answer in 127.0.0.0/8 is a listing, scored by `codes` (answer → score;
//! with `codes` set, other answers are ignored) or else by the zone's
//! `score`. The 127.255.255.0/24 answers (Spamhaus: query refused, typically
//! through a public resolver, or over quota) and any answer outside 127/8 are
//! errors, never listings. When a zone errs and nothing is listed the check
//! fails (its `on_error` applies); listings found elsewhere still count.
//!
//! Every query counts against the message's DNS budget (`[dns]`). A zone is
//! someone else's service with its terms of use: none is on by default.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use async_trait::async_trait;
use mail_parser::{Address, HeaderValue};

use crate::config::reader::Section;
use crate::dns::{Dns, Lookups};
use crate::message::envelope::domain_of;
use crate::message::verdict::Finding;
use crate::scan::check::{BuildContext, Check, CheckError, ScanInput};
use crate::scan::sender::dmarc::org_domain;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ZoneType {
    Ip,
    Domain,
}

#[derive(Debug, Clone)]
struct Zone {
    name: String,
    typ: ZoneType,
    score: f64,
    /// Answer → score; empty = any listing answer scores `score`.
    codes: Vec<(Ipv4Addr, f64)>,
}

pub(crate) struct Dnsbl {
    dns: Arc<Dns>,
    zones: Vec<Zone>,
    max_domains: usize,
}

pub(crate) fn build(options: &Section, cx: &BuildContext) -> Option<Arc<dyn Check>> {
    let max_domains = options.u64_in("max_domains", 20, 0, 1000) as usize;
    let mut zones = Vec::new();
    for z in options.sections("zone") {
        let Some(name) = z.opt_string("name") else {
            z.error("name", "missing: the zone to ask, e.g. \"zen.spamhaus.org\"");
            z.ignore_rest();
            continue;
        };
        let name = name.trim().trim_matches('.').to_ascii_lowercase();
        if name.is_empty() || !name.contains('.') || name.contains(|c: char| c.is_whitespace()) {
            z.error(
                "name",
                format!("expected a DNS zone such as \"zen.spamhaus.org\", found \"{name}\""),
            );
        }
        let typ = z.choice_or(
            "type",
            ZoneType::Ip,
            &[("ip", ZoneType::Ip), ("domain", ZoneType::Domain)],
        );
        let score = z.f64_or("score", 5.0);
        let mut codes = Vec::new();
        if let Some(table) = z.section("codes") {
            for (code, value) in table.table() {
                table.ignore(code);
                let ip = match code.parse::<Ipv4Addr>() {
                    Ok(ip) if ip.octets()[0] == 127 && !is_error_answer(ip) => ip,
                    _ => {
                        table.error(
                            code,
                            "expected a listing answer in 127.0.0.0/8 (not 127.255.255.x, which are errors), e.g. \"127.0.0.2\"",
                        );
                        continue;
                    }
                };
                match value.as_float().or_else(|| value.as_integer().map(|i| i as f64)) {
                    Some(s) => codes.push((ip, s)),
                    None => table.error(code, "expected a score (a number)"),
                }
            }
        }
        zones.push(Zone {
            name,
            typ,
            score,
            codes,
        });
    }
    let dns = super::resolver(options, cx)?;
    Some(Arc::new(Dnsbl {
        dns,
        zones,
        max_domains,
    }))
}

/// 127.255.255.0/24: Spamhaus' (and others') "your query was refused" answers.
fn is_error_answer(ip: Ipv4Addr) -> bool {
    let o = ip.octets();
    o[0] == 127 && o[1] == 255 && o[2] == 255
}

/// The owner name of `ip` under `zone`.
fn ip_query(ip: IpAddr, zone: &str) -> String {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            format!("{}.{}.{}.{}.{zone}", o[3], o[2], o[1], o[0])
        }
        IpAddr::V6(v6) => {
            let mut name = String::with_capacity(64 + zone.len());
            for byte in v6.octets().iter().rev() {
                name.push_str(&format!("{:x}.{:x}.", byte & 0xf, byte >> 4));
            }
            name.push_str(zone);
            name
        }
    }
}

/// Addresses no public list can know.
fn is_unlistable(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_private() || v4.is_link_local() || v4.is_unspecified(),
        IpAddr::V6(v6) => {
            let s = v6.segments()[0];
            v6.is_loopback() || v6.is_unspecified() || (s & 0xfe00) == 0xfc00 || (s & 0xffc0) == 0xfe80
        }
    }
}

fn address_domains(value: &HeaderValue) -> Vec<String> {
    let mut out = Vec::new();
    if let HeaderValue::Address(addr) = value {
        let list: Vec<_> = match addr {
            Address::List(l) => l.iter().collect(),
            Address::Group(g) => g.iter().flat_map(|g| g.addresses.iter()).collect(),
        };
        for a in list {
            if let Some(d) = a.address.as_deref().and_then(domain_of) {
                out.push(d);
            }
        }
    }
    out
}

impl Dnsbl {
    /// The organisational domains to ask domain lists about, deduplicated.
    fn domains(&self, input: &ScanInput<'_>) -> Vec<String> {
        let mut names: Vec<String> = Vec::new();
        for h in input.message.headers() {
            let n = h.name();
            if n.eq_ignore_ascii_case("From") || n.eq_ignore_ascii_case("Reply-To") {
                names.extend(address_domains(h.value()));
            }
        }
        names.extend(input.envelope.mail_from.domain_key());
        if !input.truncated {
            names.extend(crate::checks::urls::hosts(input.view, 200));
        }
        let mut out: Vec<String> = Vec::new();
        for n in names {
            let org = org_domain(&n);
            if org.contains('.') && !out.contains(&org) {
                out.push(org);
            }
        }
        out.truncate(self.max_domains);
        out
    }

    fn score(zone: &Zone, answers: &[Ipv4Addr]) -> Option<(f64, Ipv4Addr)> {
        let scored = answers.iter().filter_map(|a| {
            if zone.codes.is_empty() {
                Some((zone.score, *a))
            } else {
                zone.codes.iter().find(|(c, _)| c == a).map(|(_, s)| (*s, *a))
            }
        });
        scored.max_by(|a, b| a.0.partial_cmp(&b.0).unwrap_or(std::cmp::Ordering::Equal))
    }
}

#[async_trait]
impl Check for Dnsbl {
    fn kind(&self) -> &'static str {
        "dnsbl"
    }

    async fn scan(&self, input: &ScanInput<'_>) -> Result<Vec<Finding>, CheckError> {
        let ip = input.auth.map_or(input.session.client_ip, |a| a.origin.ip);
        let domains = self.domains(input);
        let mut queries: Vec<(&Zone, String, String)> = Vec::new();
        for zone in &self.zones {
            match zone.typ {
                ZoneType::Ip if !is_unlistable(ip) => {
                    queries.push((zone, ip.to_string(), ip_query(ip, &zone.name)));
                }
                ZoneType::Ip => {}
                ZoneType::Domain => {
                    for d in &domains {
                        queries.push((zone, d.clone(), format!("{d}.{}", zone.name)));
                    }
                }
            }
        }
        let lookups = Lookups::new(&self.dns);
        let answers = futures::future::join_all(queries.iter().map(|(_, _, q)| lookups.dnsbl(q))).await;
        let mut findings = Vec::new();
        let mut errors = Vec::new();
        for ((zone, subject, _), answer) in queries.iter().zip(answers) {
            let answers = match answer {
                Ok(Some(a)) => a,
                Ok(None) => continue,
                Err(e) => {
                    errors.push(format!("{}: {e}", zone.name));
                    continue;
                }
            };
            if let Some(bad) = answers.iter().find(|a| a.octets()[0] != 127 || is_error_answer(**a)) {
                errors.push(format!(
                    "{} answered {bad} for {subject}: an error answer (127.255.255.x: query refused, e.g. through a public resolver; outside 127/8: not a block list answer), not a listing",
                    zone.name
                ));
                continue;
            }
            if let Some((score, code)) = Self::score(zone, &answers) {
                let tag = match zone.typ {
                    ZoneType::Ip => "dnsbl-ip",
                    ZoneType::Domain => "dnsbl-domain",
                };
                findings.push(Finding::new(
                    score,
                    tag,
                    format!("{subject} is listed in {} ({code})", zone.name),
                ));
            }
        }
        if !errors.is_empty() {
            tracing::warn!(queue_id = input.queue_id, errors = ?errors, "DNSBL errors");
            if findings.is_empty() {
                return Err(CheckError::Unavailable(errors.join("; ")));
            }
        }
        Ok(findings)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_names_for_ipv4_and_ipv6() {
        assert_eq!(ip_query("192.0.2.99".parse().unwrap(), "bl.test"), "99.2.0.192.bl.test");
        assert_eq!(
            ip_query("2001:db8::1".parse().unwrap(), "bl.test"),
            "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.bl.test"
        );
    }

    #[test]
    fn error_answers_and_unlistable_addresses() {
        assert!(is_error_answer("127.255.255.254".parse().unwrap()));
        assert!(!is_error_answer("127.0.0.2".parse().unwrap()));
        assert!(is_unlistable("10.1.2.3".parse().unwrap()));
        assert!(is_unlistable("fe80::1".parse().unwrap()));
        assert!(!is_unlistable("203.0.113.99".parse().unwrap()));
        assert!(
            !is_unlistable("127.0.0.2".parse().unwrap()),
            "the usual test point stays askable"
        );
    }

    #[test]
    fn bad_zone_options_name_their_key() {
        let errors = crate::checks::test_support::build_errors(
            "dnsbl",
            "[[zone]]\nname = \"zen.example\"\ntype = \"url\"\ncodes = { \"127.255.255.254\" = 1, \"10.0.0.1\" = 2 }\n[[zone]]\ntype = \"ip\"",
        );
        assert!(
            errors.iter().any(|e| e.starts_with("zone[0].type: must be one of")),
            "{errors:?}"
        );
        assert!(
            errors.iter().any(|e| e.starts_with("zone[0].codes.127.255.255.254:")),
            "{errors:?}"
        );
        assert!(
            errors.iter().any(|e| e.starts_with("zone[0].codes.10.0.0.1:")),
            "{errors:?}"
        );
        assert!(
            errors.iter().any(|e| e.starts_with("zone[1].name: missing")),
            "{errors:?}"
        );
    }
}
