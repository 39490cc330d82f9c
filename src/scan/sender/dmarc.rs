//! DMARC as RFC 7489 defines it: policy discovery at the From domain, then
//! at its organisational domain (Public Suffix List, `psl` crate, default
//! rule `*` for unlisted TLDs), identifier alignment (`adkim`/`aspf`,
//! relaxed = same organisational domain), and the policy that applies (`p`,
//! or `sp` when the record came from the organisational domain) with `pct`.
//!
//! Why our own and not mail-auth's: mail-auth 0.13.3 implements DMARCbis
//! (RFC 9989): no `pct`, a DNS tree walk instead of the PSL for the
//! organisational domain (one query per label up to the TLD, where a server
//! that refuses `_dmarc.<tld>` turns every result into temperror). The record
//! itself is still parsed by mail-auth (`Dmarc::parse`); only `pct`, which
//! its parser drops, is read here.

use mail_auth::common::parse::TxtRecordParser;
use mail_auth::dmarc::{Alignment, Dmarc, Policy};

use crate::dns::{DnsError, Lookups};
use crate::message::auth::{AuthResult, DkimOutcome, DmarcOutcome, DmarcPolicy, SpfOutcome};

/// The organisational domain of `domain` (RFC 7489 §3.2).
pub(crate) fn org_domain(domain: &str) -> String {
    let d = domain.trim_end_matches('.').to_ascii_lowercase();
    match psl::domain_str(&d) {
        Some(org) => org.to_string(),
        // A name that is itself a public suffix: its own organisational domain.
        None => d,
    }
}

fn aligned(identifier: &str, from: &str, from_org: &str, mode: Alignment) -> bool {
    let id = identifier.trim_end_matches('.').to_ascii_lowercase();
    id == from || (mode == Alignment::Relaxed && org_domain(&id) == from_org)
}

/// A `_dmarc` record as found: mail-auth's parse plus `pct`.
struct Found {
    record: Dmarc,
    pct: u8,
    domain: String,
}

/// `pct=` of a DMARC record text (100 when absent or invalid).
fn pct_of(text: &str) -> u8 {
    text.split(';')
        .filter_map(|t| t.split_once('='))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("pct"))
        .and_then(|(_, v)| v.trim().parse::<u8>().ok())
        .filter(|p| *p <= 100)
        .unwrap_or(100)
}

/// The DMARC record at `_dmarc.<domain>`: `Ok(None)` when there is none
/// (no TXT, none starting with `v=DMARC1`, or more than one: RFC 7489 §6.6.3).
async fn record_at(lookups: &Lookups<'_>, domain: &str) -> Result<Option<Found>, DnsError> {
    let Some(texts) = lookups.txt(&format!("_dmarc.{domain}")).await? else {
        return Ok(None);
    };
    let mut records = texts.iter().filter(|t| {
        let t = String::from_utf8_lossy(t);
        let t = t.trim_start();
        t.len() >= 8 && t[..8].eq_ignore_ascii_case("v=DMARC1")
    });
    let (Some(text), None) = (records.next(), records.next()) else {
        return Ok(None);
    };
    Ok(Dmarc::parse(text).ok().map(|record| Found {
        record,
        pct: pct_of(&String::from_utf8_lossy(text)),
        domain: domain.to_string(),
    }))
}

/// Evaluates DMARC for the From domains `from` (the addresses' domains).
pub(crate) async fn evaluate(
    lookups: &Lookups<'_>,
    from: &[String],
    spf: &SpfOutcome,
    dkim: &[DkimOutcome],
) -> DmarcOutcome {
    let mut domains: Vec<String> = from
        .iter()
        .filter_map(|a| {
            a.rsplit_once('@')
                .map(|(_, d)| d.trim_end_matches('.').to_ascii_lowercase())
        })
        .filter(|d| !d.is_empty())
        .collect();
    domains.dedup();
    let none = |from_domain: Option<String>, result| DmarcOutcome {
        result,
        from_domain,
        policy: None,
        pct: None,
        record_domain: None,
    };
    // No From, or several From domains: RFC 7489 §6.6.1 leaves it to the
    // receiver; exempt, as mail-auth and authheaders do.
    let [from] = domains.as_slice() else {
        return none(None, AuthResult::None);
    };
    let from = from.clone();
    let org = org_domain(&from);
    let found = match record_at(lookups, &from).await {
        Ok(Some(f)) => Some(f),
        Ok(None) if org != from => match record_at(lookups, &org).await {
            Ok(found) => found,
            Err(_) => return none(Some(from), AuthResult::Temperror),
        },
        Ok(None) => None,
        Err(_) => return none(Some(from), AuthResult::Temperror),
    };
    let Some(found) = found else {
        return none(Some(from), AuthResult::None);
    };
    let at_from = found.domain == from;
    let requested = if at_from { found.record.p } else { found.record.sp };
    let policy = match requested {
        Policy::None => DmarcPolicy::None,
        Policy::Quarantine => DmarcPolicy::Quarantine,
        Policy::Reject => DmarcPolicy::Reject,
        // No valid p=: RFC 7489 §6.6.3 acts as p=none only with a rua=.
        Policy::Unspecified if !found.record.rua.is_empty() => DmarcPolicy::None,
        Policy::Unspecified => return none(Some(from), AuthResult::None),
    };
    let spf_aligned = spf.result == AuthResult::Pass && aligned(&spf.domain, &from, &org, found.record.aspf);
    let dkim_aligned = dkim
        .iter()
        .any(|d| d.result == AuthResult::Pass && aligned(&d.domain, &from, &org, found.record.adkim));
    DmarcOutcome {
        result: if spf_aligned || dkim_aligned {
            AuthResult::Pass
        } else {
            AuthResult::Fail
        },
        from_domain: Some(from),
        policy: Some(policy),
        pct: Some(found.pct),
        record_domain: Some(found.domain),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn organisational_domains_follow_the_public_suffix_list() {
        assert_eq!(
            org_domain("news.alpha.test"),
            "alpha.test",
            "default rule * for an unlisted TLD"
        );
        assert_eq!(org_domain("alpha.test."), "alpha.test");
        assert_eq!(org_domain("a.b.example.co.uk"), "example.co.uk");
        assert_eq!(org_domain("co.uk"), "co.uk");
    }

    #[test]
    fn pct_is_read_from_the_record_text() {
        assert_eq!(pct_of("v=DMARC1; p=reject; pct=25"), 25);
        assert_eq!(pct_of("v=DMARC1; p=reject"), 100);
        assert_eq!(pct_of("v=DMARC1; p=reject; PCT = 7 "), 7);
        assert_eq!(pct_of("v=DMARC1; pct=250"), 100);
    }

    #[test]
    fn alignment_modes() {
        assert!(aligned(
            "bounce.alpha.test",
            "alpha.test",
            "alpha.test",
            Alignment::Relaxed
        ));
        assert!(!aligned(
            "bounce.alpha.test",
            "alpha.test",
            "alpha.test",
            Alignment::Strict
        ));
        assert!(!aligned(
            "alpha.test.evil.test",
            "alpha.test",
            "alpha.test",
            Alignment::Relaxed
        ));
        assert!(aligned("Alpha.Test.", "alpha.test", "alpha.test", Alignment::Strict));
    }
}
