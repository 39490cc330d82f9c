//! The trust order (issue 12, DESIGN §11): who the original sender was when
//! the SMTP client is Exchange Online.
//!
//! Only on a session admitted as a tenant's Exchange Online connection, and
//! only from fields EXO added: those at or above the bottom-most `Received`
//! whose `by` host is EXO's (`*.protection.outlook.com`,
//! `*.prod.outlook.com`, `*.prod.exchangelabs.com`: its frontend hop).
//! Anything below that field came with the message from its sender and is
//! never trusted. Newest first:
//! 1. the newest ARC set, when the whole chain verifies and its sealer is a
//!    trusted one exactly (`microsoft.com.attacker.test` is not
//!    `microsoft.com`): its AAR's sender IP (`smtp.remote-ip=` or EXO's
//!    comment `(sender ip is X)`) and claims. A seal cannot be forged, so
//!    where the set sits does not matter;
//! 2. else the topmost `X-Forefront-Antispam-Report` above the boundary
//!    (`CIP:` the IP, `H:` the HELO) and EXO's topmost
//!    `Authentication-Results` above it (no authserv-id, as EXO writes it, or
//!    `mx.microsoft.com`, the id of its AAR: both readings are accepted, the
//!    reference documents neither);
//! 3. else the SMTP client.
//!
//! The HELO in case 1 comes from `H:` too (EXO's AAR carries none); without
//! it, the session's. Pure: the ARC verdict is given.

use std::net::IpAddr;

use crate::message::auth::{Origin, OriginSource};
use crate::message::authres::{self, Authserv, ResultsValue};
use crate::message::headers;

/// The `by` hosts of Exchange Online's own `Received` fields.
const EXO_BY_SUFFIXES: [&str; 3] = [".protection.outlook.com", ".prod.outlook.com", ".prod.exchangelabs.com"];

/// Authserv-ids of Exchange Online's `Authentication-Results` (none at all
/// is the other reading).
const EXO_AUTHSERV_IDS: [&str; 1] = ["mx.microsoft.com"];

/// What ARC verification found, as the trust order needs it.
pub(crate) struct ArcVerdict<'a> {
    pub(crate) pass: bool,
    /// `d=` of the newest ARC-Seal.
    pub(crate) sealer: Option<&'a str>,
    /// The newest set's `ARC-Authentication-Results` value (verified with
    /// the chain).
    pub(crate) newest_results: Option<&'a str>,
}

/// The trust order's answer: the origin and what the trusted field claimed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Derived {
    pub(crate) origin: Origin,
    pub(crate) claims: Option<ResultsValue>,
}

/// Whether a `Received` value is Exchange Online's own hop.
fn is_exo_received(value: &str) -> bool {
    let lower = value.to_ascii_lowercase();
    let mut words = lower.split_whitespace();
    while let Some(w) = words.next() {
        if w == "by"
            && let Some(host) = words.next()
        {
            let host = host.trim_end_matches([';', ',', ')']);
            if EXO_BY_SUFFIXES.iter().any(|s| host.ends_with(s)) {
                return true;
            }
        }
    }
    false
}

/// `CIP:` and `H:` of an `X-Forefront-Antispam-Report` value.
fn forefront(value: &str) -> (Option<IpAddr>, Option<String>) {
    let (mut ip, mut helo) = (None, None);
    for part in value.split(';') {
        if let Some((k, v)) = part.split_once(':') {
            match k.trim() {
                "CIP" => ip = v.trim().parse().ok(),
                "H" if !v.trim().is_empty() => helo = Some(v.trim().to_string()),
                _ => {}
            }
        }
    }
    (ip, helo)
}

fn is_exo_authserv(value: &str) -> bool {
    match authres::authserv_id(value) {
        Authserv::Absent => true,
        Authserv::Id(id) => EXO_AUTHSERV_IDS.contains(&id.as_str()),
    }
}

/// Applies the trust order to `raw`'s header.
pub(crate) fn derive(
    raw: &[u8],
    client_ip: IpAddr,
    client_helo: &str,
    exo_session: bool,
    trusted_sealers: &[String],
    arc: &ArcVerdict<'_>,
) -> Derived {
    let smtp = Derived {
        origin: Origin {
            source: OriginSource::Smtp,
            ip: client_ip,
            helo: client_helo.to_string(),
        },
        claims: None,
    };
    if !exo_session {
        return smtp;
    }
    let fields: Vec<(String, String)> = headers::fields(raw)
        .filter(|f| !f.name.is_empty())
        .map(|f| (String::from_utf8_lossy(f.name).to_ascii_lowercase(), f.unfolded()))
        .collect();
    let Some(boundary) = fields.iter().rposition(|(n, v)| n == "received" && is_exo_received(v)) else {
        return smtp;
    };
    let exo = &fields[..=boundary];
    let (cip, h) = exo
        .iter()
        .find(|(n, _)| n == "x-forefront-antispam-report")
        .map(|(_, v)| forefront(v))
        .unwrap_or((None, None));
    let helo = h.unwrap_or_else(|| client_helo.to_string());

    let trusted = arc
        .sealer
        .is_some_and(|d| trusted_sealers.iter().any(|t| t.eq_ignore_ascii_case(d)));
    if arc.pass
        && trusted
        && let Some(aar) = arc.newest_results
    {
        let claims = authres::parse(aar);
        if let Some(ip) = claims.sender_ip() {
            return Derived {
                origin: Origin {
                    source: OriginSource::Arc,
                    ip,
                    helo,
                },
                claims: Some(claims),
            };
        }
    }
    if let Some(ip) = cip {
        let claims = exo
            .iter()
            .find(|(n, v)| n == "authentication-results" && is_exo_authserv(v))
            .map(|(_, v)| authres::parse(v));
        return Derived {
            origin: Origin {
                source: OriginSource::Forefront,
                ip,
                helo,
            },
            claims,
        };
    }
    smtp
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXO_HOP: &str = "Received: from mail.alpha.test (192.0.2.10) by DB8EUR05FT012.mail.protection.outlook.com\r\n (10.152.20.125) with Microsoft SMTP Server id 15.20.7270.9; Mon, 1 Jan 2024 00:00:03 +0000\r\n";
    const XFAR: &str =
        "X-Forefront-Antispam-Report: CIP:203.0.113.99;CTRY:;LANG:en;SCL:1;H:mail.attacker.test;DIR:INB;\r\n";
    const AR_A: &str = "Authentication-Results: spf=fail (sender IP is 203.0.113.99) smtp.mailfrom=alpha.test; dmarc=fail action=oreject header.from=alpha.test\r\n";

    fn no_arc() -> ArcVerdict<'static> {
        ArcVerdict {
            pass: false,
            sealer: None,
            newest_results: None,
        }
    }

    fn sealers() -> Vec<String> {
        vec!["microsoft.com".into()]
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn run(raw: &str, exo: bool, arc: &ArcVerdict<'_>) -> Derived {
        derive(
            raw.as_bytes(),
            ip("40.107.22.52"),
            "EUR05.outbound.protection.outlook.com",
            exo,
            &sealers(),
            arc,
        )
    }

    #[test]
    fn a_forged_forefront_report_below_exos_hop_is_ignored() {
        let forged = "X-Forefront-Antispam-Report: CIP:192.0.2.10;H:mail.alpha.test;\r\n";
        let raw = format!("{XFAR}{AR_A}{EXO_HOP}{forged}From: a@alpha.test\r\n\r\nbody\r\n");
        let d = run(&raw, true, &no_arc());
        assert_eq!(d.origin.source, OriginSource::Forefront);
        assert_eq!(d.origin.ip, ip("203.0.113.99"));
        assert_eq!(d.origin.helo, "mail.attacker.test");
        assert_eq!(d.claims.unwrap().method("spf").unwrap().result, "fail");
    }

    #[test]
    fn a_forged_authentication_results_below_exos_hop_is_ignored() {
        let forged = "Authentication-Results: spf=pass (sender IP is 192.0.2.10) smtp.mailfrom=alpha.test; dmarc=pass header.from=alpha.test\r\n";
        let raw = format!("{XFAR}{AR_A}{EXO_HOP}{forged}From: a@alpha.test\r\n\r\n");
        let claims = run(&raw, true, &no_arc()).claims.unwrap();
        assert_eq!(claims.method("dmarc").unwrap().result, "fail");
        // Only forged fields, all below EXO's hop: the SMTP client.
        let raw = format!("{EXO_HOP}{XFAR}{AR_A}From: a@alpha.test\r\n\r\n");
        let d = run(&raw, true, &no_arc());
        assert_eq!((d.origin.source, d.origin.ip), (OriginSource::Smtp, ip("40.107.22.52")));
        assert_eq!(d.claims, None);
    }

    #[test]
    fn nothing_is_trusted_outside_an_exo_session() {
        let raw = format!("{XFAR}{AR_A}{EXO_HOP}From: a@alpha.test\r\n\r\n");
        let d = run(&raw, false, &no_arc());
        assert_eq!(d.origin.source, OriginSource::Smtp);
        // And without EXO's hop in an EXO session, nothing either.
        let raw = format!("{XFAR}{AR_A}From: a@alpha.test\r\n\r\n");
        assert_eq!(run(&raw, true, &no_arc()).origin.source, OriginSource::Smtp);
    }

    #[test]
    fn a_verified_trusted_seal_comes_first_and_only_then() {
        let raw = format!("{XFAR}{AR_A}{EXO_HOP}From: a@alpha.test\r\n\r\n");
        let aar = "i=1; mx.microsoft.com 1; spf=pass (sender ip is 192.0.2.10) smtp.mailfrom=alpha.test; arc=none";
        let good = ArcVerdict {
            pass: true,
            sealer: Some("Microsoft.COM"),
            newest_results: Some(aar),
        };
        let d = run(&raw, true, &good);
        assert_eq!((d.origin.source, d.origin.ip), (OriginSource::Arc, ip("192.0.2.10")));
        assert_eq!(d.origin.helo, "mail.attacker.test", "HELO from H: of EXO's report");
        for bad in [
            ArcVerdict { pass: false, ..good },
            ArcVerdict {
                sealer: Some("attacker.test"),
                ..good
            },
            ArcVerdict {
                sealer: Some("microsoft.com.attacker.test"),
                ..good
            },
        ] {
            let d = run(&raw, true, &bad);
            assert_eq!(
                (d.origin.source, d.origin.ip),
                (OriginSource::Forefront, ip("203.0.113.99"))
            );
        }
    }

    #[test]
    fn both_readings_of_exos_authentication_results() {
        let b = "Authentication-Results: mx.microsoft.com; spf=pass smtp.mailfrom=bravo.test; dmarc=pass header.from=bravo.test\r\n";
        let other = "Authentication-Results: mx.attacker.test; dmarc=fail header.from=bravo.test\r\n";
        let raw = format!("{XFAR}{other}{b}{EXO_HOP}From: b@bravo.test\r\n\r\n");
        let claims = run(&raw, true, &no_arc()).claims.unwrap();
        assert_eq!(
            claims.method("dmarc").unwrap().result,
            "pass",
            "another server's A-R is not EXO's"
        );
    }
}
