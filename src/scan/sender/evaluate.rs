//! Sender authentication of one message with mail-auth: ARC first (the
//! trust order needs it), then the original sender (`origin`), SPF on the
//! original IP, DKIM of every signature, DMARC (`dmarc`).
//!
//! Every lookup goes through the shared resolver and counts against the
//! message's budget; all of them end by the message's deadline, and what did
//! not finish is `temperror`: this never fails and never waits longer than
//! `[dns] message_timeout`. Where mail-auth's words differ from RFC 8601's,
//! they are mapped here (each mapping says why).

use std::net::IpAddr;
use std::sync::Arc;

use mail_auth::dkim::DkimError;
use mail_auth::spf::verify::SpfParameters;
use mail_auth::{AuthenticatedMessage, DkimResult, SpfResult};
use mail_parser::Message;

use crate::dns::{Dns, Lookups};
use crate::message::auth::{ArcOutcome, AuthResult, AuthResults, DkimOutcome, DmarcOutcome, SpfOutcome};
use crate::message::envelope::domain_of;
use crate::scan::sender::origin::{self, ArcVerdict};
use crate::scan::sender::{dmarc, spf};

/// The facts of one message that sender authentication reads.
pub struct SenderInput<'a> {
    pub raw: &'a [u8],
    pub message: &'a Message<'a>,
    /// Reverse path as written on the wire (`Mailbox`'s Display: a quoted
    /// local part stays quoted), empty for `<>`.
    pub mail_from: &'a str,
    pub client_ip: IpAddr,
    pub helo: &'a str,
    /// Admitted as a tenant's Exchange Online connection: EXO's fields may
    /// be trusted (the trust order).
    pub exo_session: bool,
    /// Only the header was read (the message was over `scan_max_size`).
    pub truncated: bool,
}

/// Sender authentication as a policy runs it.
pub struct SenderAuth {
    pub(crate) dns: Arc<Dns>,
    pub(crate) trusted_sealers: Vec<String>,
    /// Our host name (SPF's `%{r}`).
    pub(crate) hostname: String,
}

/// mail-auth's DKIM words as RFC 8601's.
fn dkim_word(r: &DkimResult) -> (AuthResult, String) {
    match r {
        DkimResult::Pass => (AuthResult::Pass, String::new()),
        // RFC 6376 §6.1.3: a body hash that does not verify is a failed
        // signature (PERMFAIL), RFC 8601 `fail`; mail-auth says neutral.
        DkimResult::Neutral(e @ mail_auth::Error::Dkim(DkimError::FailedBodyHashMatch)) => {
            (AuthResult::Fail, e.to_string())
        }
        DkimResult::Neutral(e) => (AuthResult::Neutral, e.to_string()),
        DkimResult::Fail(e) => (AuthResult::Fail, e.to_string()),
        DkimResult::PermError(e) => (AuthResult::Permerror, e.to_string()),
        DkimResult::TempError(e) => (AuthResult::Temperror, e.to_string()),
        DkimResult::None => (AuthResult::None, String::new()),
    }
}

/// RFC 8617 knows pass, fail and none: every other outcome of a chain that
/// exists (a body hash mismatch, a key that cannot be fetched, a parse
/// error) is a failed chain.
fn arc_word(r: &DkimResult) -> AuthResult {
    match r {
        DkimResult::Pass => AuthResult::Pass,
        DkimResult::None => AuthResult::None,
        _ => AuthResult::Fail,
    }
}

fn spf_word(r: SpfResult) -> AuthResult {
    match r {
        SpfResult::Pass => AuthResult::Pass,
        SpfResult::Fail => AuthResult::Fail,
        SpfResult::SoftFail => AuthResult::Softfail,
        SpfResult::Neutral => AuthResult::Neutral,
        SpfResult::TempError => AuthResult::Temperror,
        SpfResult::PermError => AuthResult::Permerror,
        SpfResult::None => AuthResult::None,
    }
}

/// `d=` and `s=` of a DKIM-Signature value.
fn domain_and_selector(value: &[u8]) -> (String, String) {
    let text = String::from_utf8_lossy(value);
    let (mut d, mut s) = (String::new(), String::new());
    for tag in text.split(';') {
        if let Some((k, v)) = tag.split_once('=') {
            let v: String = v.split_whitespace().collect();
            match k.trim() {
                "d" => d = v.to_ascii_lowercase(),
                "s" => s = v,
                _ => {}
            }
        }
    }
    (d, s)
}

/// Every DKIM-Signature field, in header order, with one result for all.
fn signatures(msg: &AuthenticatedMessage<'_>, result: AuthResult, reason: &str) -> Vec<DkimOutcome> {
    msg.headers
        .iter()
        .filter(|(name, _)| name.eq_ignore_ascii_case(b"DKIM-Signature"))
        .map(|(_, value)| {
            let (domain, selector) = domain_and_selector(value);
            DkimOutcome {
                domain,
                selector,
                result,
                reason: reason.to_string(),
            }
        })
        .collect()
}

/// mail-auth's DKIM outputs (signatures it could not parse first, then the
/// others) put back in header order, each with its domain and selector.
fn in_header_order(msg: &AuthenticatedMessage<'_>, outputs: &[mail_auth::DkimOutput<'_>]) -> Vec<DkimOutcome> {
    let unparsed: Vec<&[u8]> = msg
        .errors
        .iter()
        .filter(|e| matches!(e.header, mail_auth::Error::Dkim(_)))
        .map(|e| e.value)
        .collect();
    let parsed: Vec<&[u8]> = msg.dkim_headers.iter().map(|h| h.value).collect();
    let values: Vec<&[u8]> = unparsed.into_iter().chain(parsed).collect();
    let mut outcomes: Vec<(&[u8], DkimOutcome)> = values
        .iter()
        .zip(outputs)
        .map(|(value, o)| {
            let (result, reason) = match o.result() {
                // RFC 6376 §8.2: l= lets anyone append to a signed body;
                // mail-auth refuses such a signature, which RFC 8601 calls
                // `policy` (signed, but not acceptable here).
                DkimResult::Neutral(mail_auth::Error::Dkim(DkimError::SignatureLength)) => (
                    AuthResult::Policy,
                    "l= tag: the body is only partly signed, so the signature is not accepted".to_string(),
                ),
                other => dkim_word(other),
            };
            let (domain, selector) = domain_and_selector(value);
            (
                *value,
                DkimOutcome {
                    domain,
                    selector,
                    result,
                    reason,
                },
            )
        })
        .collect();
    let mut ordered = Vec::with_capacity(outcomes.len());
    for (name, value) in &msg.headers {
        if name.eq_ignore_ascii_case(b"DKIM-Signature")
            && let Some(i) = outcomes
                .iter()
                .position(|(v, _)| std::ptr::eq(v.as_ptr(), value.as_ptr()))
        {
            ordered.push(outcomes.swap_remove(i).1);
        }
    }
    ordered.extend(outcomes.into_iter().map(|(_, o)| o));
    ordered
}

impl SenderAuth {
    /// An unknown mechanism in the SPF record of `domain` (see `spf`).
    async fn spf_syntax_error(&self, lookups: &Lookups<'_>, domain: &str) -> Option<String> {
        let records = lookups.txt(domain).await.ok()??;
        let mut spf = records.iter().filter_map(|r| {
            let t = String::from_utf8_lossy(r).into_owned();
            let v = t.trim_start().get(..6)?.to_ascii_lowercase();
            (v == "v=spf1").then_some(t)
        });
        match (spf.next(), spf.next()) {
            (Some(one), None) => spf::unknown_mechanism(&one),
            _ => None,
        }
    }

    pub(crate) fn new(dns: Arc<Dns>, trusted_sealers: Vec<String>, hostname: String) -> SenderAuth {
        SenderAuth {
            dns,
            trusted_sealers,
            hostname,
        }
    }

    /// Authenticates one message.
    pub async fn evaluate(&self, input: &SenderInput<'_>) -> AuthResults {
        let lookups = Lookups::new(&self.dns);
        let caches = lookups.caches();
        let auth = &self.dns.authenticator;
        let deadline = lookups.deadline();
        let msg = AuthenticatedMessage::from_parsed(input.message, input.raw, true);

        // ARC: the chain's verdict, and the newest set for the trust order.
        let arc_out = if input.truncated {
            None
        } else {
            tokio::time::timeout_at(deadline, auth.verify_arc(caches.params(&msg)))
                .await
                .ok()
        };
        let seals: Vec<_> = msg.as_headers.iter().map(|h| &h.header).collect();
        let newest = seals.iter().max_by_key(|s| s.i);
        let arc = ArcOutcome {
            result: match (&arc_out, seals.is_empty()) {
                (_, true) => AuthResult::None,
                (Some(out), false) => arc_word(out.result()),
                // Timed out, or not checked because the body was not read.
                (None, false) => AuthResult::Fail,
            },
            sets: newest.map_or(0, |s| s.i),
            sealer: newest.map(|s| s.d.to_ascii_lowercase()),
        };
        let newest_results = arc_out
            .as_ref()
            .and_then(|o| o.sets().last())
            .and_then(|set| std::str::from_utf8(set.results.value).ok());
        let derived = origin::derive(
            input.raw,
            input.client_ip,
            input.helo,
            input.exo_session,
            &self.trusted_sealers,
            &ArcVerdict {
                pass: arc.result == AuthResult::Pass,
                sealer: arc.sealer.as_deref(),
                newest_results,
            },
        );
        let ip = derived.origin.ip;
        let helo = derived.origin.helo.trim().trim_end_matches('.').to_ascii_lowercase();

        // SPF: MAIL FROM, or the HELO identity for the null sender (RFC 7208 §2.4).
        let helo_identity = input.mail_from.is_empty();
        let params = if helo_identity {
            SpfParameters::verify_ehlo(ip, &helo, &self.hostname)
        } else {
            SpfParameters::verify_mail_from(ip, &helo, &self.hostname, input.mail_from)
        };
        let spf_domain = if helo_identity {
            helo.clone()
        } else {
            domain_of(input.mail_from).unwrap_or_else(|| helo.clone())
        };
        let spf_result = match self.spf_syntax_error(&lookups, &spf_domain).await {
            Some(term) => {
                tracing::debug!(domain = %spf_domain, %term, "SPF record has an unknown mechanism: permerror");
                AuthResult::Permerror
            }
            None => tokio::time::timeout_at(deadline, auth.verify_spf(caches.params(params)))
                .await
                .map_or(AuthResult::Temperror, |o| spf_word(o.result())),
        };
        let spf = SpfOutcome {
            result: spf_result,
            domain: spf_domain,
            helo_identity,
        };

        // DKIM: every signature, in header order.
        let dkim = if input.truncated {
            signatures(
                &msg,
                AuthResult::Neutral,
                "only the header was read (message over scan_max_size)",
            )
        } else {
            match tokio::time::timeout_at(deadline, auth.verify_dkim(caches.params(&msg))).await {
                Ok(outputs) => in_header_order(&msg, &outputs),
                Err(_) => signatures(&msg, AuthResult::Temperror, "the message's DNS time ran out"),
            }
        };

        let dmarc = tokio::time::timeout_at(deadline, dmarc::evaluate(&lookups, &msg.from, &spf, &dkim))
            .await
            .unwrap_or(DmarcOutcome {
                result: AuthResult::Temperror,
                from_domain: None,
                policy: None,
                pct: None,
                record_domain: None,
            });

        AuthResults {
            origin: derived.origin,
            spf,
            dkim,
            dmarc,
            arc,
            exo_claims: derived
                .claims
                .map(|c| c.results.into_iter().map(|r| (r.method, r.result)).collect())
                .unwrap_or_default(),
            lookups: lookups.used(),
        }
    }
}
