//! What sender authentication established about one message, as plain
//! values: who the original sender was (the trust order's pick) and the
//! spf/dkim/dmarc/arc results exogate computed itself. The pipeline hands it
//! to the other checks (impersonation, dnsbl, rspamd), the disposition to the
//! log line, the stamp (our `Authentication-Results`) and the events store.
//!
//! Result words are RFC 8601's. Must never: compute anything (scan/sender
//! does) or hold text from the message that was not sanitised for a header.

use std::fmt;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

/// An RFC 8601 result word.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthResult {
    Pass,
    Fail,
    Softfail,
    Neutral,
    None,
    Temperror,
    Permerror,
    /// Signed, but the signature is not acceptable here (RFC 8601 §2.7.1),
    /// e.g. a DKIM `l=` that leaves part of the body unsigned.
    Policy,
}

impl AuthResult {
    pub fn as_str(self) -> &'static str {
        match self {
            AuthResult::Pass => "pass",
            AuthResult::Fail => "fail",
            AuthResult::Softfail => "softfail",
            AuthResult::Neutral => "neutral",
            AuthResult::None => "none",
            AuthResult::Temperror => "temperror",
            AuthResult::Permerror => "permerror",
            AuthResult::Policy => "policy",
        }
    }
}

impl fmt::Display for AuthResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where the original sender's IP and HELO were taken from (the trust order).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OriginSource {
    /// A verified ARC set of a trusted sealer (Exchange Online's).
    Arc,
    /// Exchange Online's topmost `X-Forefront-Antispam-Report` (`CIP:`, `H:`).
    Forefront,
    /// The SMTP client of this session.
    Smtp,
}

impl OriginSource {
    pub fn as_str(self) -> &'static str {
        match self {
            OriginSource::Arc => "arc",
            OriginSource::Forefront => "forefront",
            OriginSource::Smtp => "smtp",
        }
    }
}

/// The original sender as the trust order found it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Origin {
    pub source: OriginSource,
    pub ip: IpAddr,
    pub helo: String,
}

/// SPF of the MAIL FROM identity (or HELO for `<>`) on the original IP.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpfOutcome {
    pub result: AuthResult,
    /// The domain whose policy was evaluated.
    pub domain: String,
    /// `true` when that domain is the HELO's (null MAIL FROM).
    pub helo_identity: bool,
}

/// One DKIM signature, in header order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DkimOutcome {
    pub domain: String,
    pub selector: String,
    pub result: AuthResult,
    /// Why, when not a pass (for the log).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
}

/// A DMARC requested policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DmarcPolicy {
    None,
    Quarantine,
    Reject,
}

impl DmarcPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            DmarcPolicy::None => "none",
            DmarcPolicy::Quarantine => "quarantine",
            DmarcPolicy::Reject => "reject",
        }
    }
}

/// DMARC (RFC 7489) of the From domain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DmarcOutcome {
    pub result: AuthResult,
    /// The RFC 5322.From domain (none when absent or several).
    pub from_domain: Option<String>,
    /// The policy that applies: `p`, or `sp` for a From below the
    /// organisational domain whose record was used.
    pub policy: Option<DmarcPolicy>,
    /// `pct` of the record (100 when absent).
    pub pct: Option<u8>,
    /// Where the record was found.
    pub record_domain: Option<String>,
}

/// ARC chain validation (RFC 8617).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArcOutcome {
    pub result: AuthResult,
    /// Number of ARC sets (the newest instance).
    pub sets: u32,
    /// `d=` of the newest ARC-Seal.
    pub sealer: Option<String>,
}

/// Everything sender authentication established about one message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthResults {
    pub origin: Origin,
    pub spf: SpfOutcome,
    pub dkim: Vec<DkimOutcome>,
    pub dmarc: DmarcOutcome,
    pub arc: ArcOutcome,
    /// What Exchange Online's trusted field said (method=result), for the log.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exo_claims: Vec<(String, String)>,
    /// DNS lookups the message cost (cache misses).
    pub lookups: u32,
}

impl AuthResults {
    /// Whether the From domain passed DMARC.
    pub fn dmarc_pass(&self) -> bool {
        self.dmarc.result == AuthResult::Pass
    }

    /// Whether SPF or DMARC showed `mail_from` (the address a DSN would go
    /// to) to be authentic: SPF passed for its own domain (not the HELO's),
    /// or DMARC passed for a From domain it shares (equal, or one below the
    /// other). Nobody else may be made to receive our bounces.
    pub fn envelope_sender_authentic(&self, mail_from: &crate::message::envelope::Mailbox) -> bool {
        let Some(domain) = mail_from.domain_key() else {
            return false;
        };
        let related = |other: &str| {
            let other = other.trim_end_matches('.').to_ascii_lowercase();
            domain == other || domain.ends_with(&format!(".{other}")) || other.ends_with(&format!(".{domain}"))
        };
        let spf = self.spf.result == AuthResult::Pass && !self.spf.helo_identity && related(&self.spf.domain);
        let dmarc = self.dmarc_pass() && self.dmarc.from_domain.as_deref().is_some_and(related);
        spf || dmarc
    }

    /// The value of our `Authentication-Results` field (RFC 8601), with
    /// `authserv_id` (the gateway's host name) first.
    pub fn header_value(&self, authserv_id: &str) -> String {
        let mut v = token(authserv_id);
        let spf_property = if self.spf.helo_identity {
            "smtp.helo"
        } else {
            "smtp.mailfrom"
        };
        v.push_str(&format!(
            "; spf={} (sender ip {} from {}) {spf_property}={}",
            self.spf.result,
            self.origin.ip,
            self.origin.source.as_str(),
            value(&self.spf.domain)
        ));
        if self.dkim.is_empty() {
            v.push_str("; dkim=none");
        }
        for d in &self.dkim {
            v.push_str(&format!(
                "; dkim={} header.d={} header.s={}",
                d.result,
                value(&d.domain),
                value(&d.selector)
            ));
        }
        v.push_str(&format!("; dmarc={}", self.dmarc.result));
        if let Some(p) = self.dmarc.policy {
            v.push_str(&format!(" policy.dmarc={}", p.as_str()));
        }
        if let Some(d) = &self.dmarc.from_domain {
            v.push_str(&format!(" header.from={}", value(d)));
        }
        v.push_str(&format!("; arc={}", self.arc.result));
        if let Some(s) = &self.arc.sealer {
            v.push_str(&format!(" (i={} d={})", self.arc.sets, token(s)));
        }
        v
    }

    /// A short summary for the per-message log line.
    pub fn summary(&self) -> String {
        let dkim: Vec<String> = self.dkim.iter().map(|d| format!("{}:{}", d.domain, d.result)).collect();
        format!(
            "origin={}/{} spf={} dkim={} dmarc={}{} arc={}",
            self.origin.source.as_str(),
            self.origin.ip,
            self.spf.result,
            if dkim.is_empty() { "none".into() } else { dkim.join(",") },
            self.dmarc.result,
            self.dmarc
                .policy
                .map(|p| format!("(p={})", p.as_str()))
                .unwrap_or_default(),
            self.arc.result
        )
    }
}

/// A token as RFC 8601 allows it: letters, digits and `.-_@+`; anything
/// else is dropped (the text comes from the message or the client).
fn token(s: &str) -> String {
    let t: String = s
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '@' | '+'))
        .take(255)
        .collect();
    if t.is_empty() { "unknown".into() } else { t }
}

/// A property value: a token when it is one, else a quoted string of its
/// printable characters.
fn value(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '@' | '+'))
    {
        return s.chars().take(255).collect();
    }
    let inner: String = s
        .chars()
        .filter(|c| (c.is_ascii_graphic() || *c == ' ') && *c != '"' && *c != '\\')
        .take(255)
        .collect();
    format!("\"{inner}\"")
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn sample() -> AuthResults {
        AuthResults {
            origin: Origin {
                source: OriginSource::Arc,
                ip: "192.0.2.10".parse().unwrap(),
                helo: "mail.alpha.test".into(),
            },
            spf: SpfOutcome {
                result: AuthResult::Pass,
                domain: "alpha.test".into(),
                helo_identity: false,
            },
            dkim: vec![DkimOutcome {
                domain: "alpha.test".into(),
                selector: "s2048".into(),
                result: AuthResult::Pass,
                reason: String::new(),
            }],
            dmarc: DmarcOutcome {
                result: AuthResult::Pass,
                from_domain: Some("alpha.test".into()),
                policy: Some(DmarcPolicy::Reject),
                pct: Some(100),
                record_domain: Some("alpha.test".into()),
            },
            arc: ArcOutcome {
                result: AuthResult::Pass,
                sets: 1,
                sealer: Some("microsoft.com".into()),
            },
            exo_claims: vec![],
            lookups: 4,
        }
    }

    #[test]
    fn the_header_value_reads_back_as_rfc_8601() {
        let v = sample().header_value("gw.example.net");
        assert_eq!(
            v,
            "gw.example.net; spf=pass (sender ip 192.0.2.10 from arc) smtp.mailfrom=alpha.test; \
             dkim=pass header.d=alpha.test header.s=s2048; dmarc=pass policy.dmarc=reject header.from=alpha.test; \
             arc=pass (i=1 d=microsoft.com)"
        );
        let parsed = crate::message::authres::parse(&v);
        assert_eq!(
            parsed.authserv,
            crate::message::authres::Authserv::Id("gw.example.net".into())
        );
        let words: Vec<&str> = parsed.results.iter().map(|r| r.result.as_str()).collect();
        assert_eq!(words, ["pass", "pass", "pass", "pass"]);
    }

    #[test]
    fn message_text_cannot_break_out_of_a_property() {
        let mut r = sample();
        r.spf.domain = "evil.test; dmarc=pass\r\nX-Injected: 1".into();
        r.dkim[0].selector = "s\"(".into();
        let v = r.header_value("gw");
        assert!(!v.contains('\r') && !v.contains('\n'), "{v}");
        let parsed = crate::message::authres::parse(&v);
        let methods: Vec<&str> = parsed.results.iter().map(|r| r.method.as_str()).collect();
        assert_eq!(methods, ["spf", "dkim", "dmarc", "arc"], "{v}");
    }
}
