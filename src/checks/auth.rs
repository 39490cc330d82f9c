//! The `auth` check: turns sender authentication (computed by the pipeline
//! before any check, `scan::sender`) into findings for inbound mail.
//!
//! - `dmarc-reject` / `dmarc-quarantine`: the From domain fails DMARC and
//!   asks for that policy. `pct` below 100 samples (RFC 7489 §6.6.4): a
//!   message outside the sample gets the next weaker policy. The sample is
//!   drawn from a hash of the Message-ID, so a retry lands the same way.
//! - `tenant-domain-dmarc-fail`: the From is one of the tenant's own domains
//!   and fails DMARC: someone outside speaks in the tenant's name.
//! - `spf-fail`: SPF of the original sender is `fail`.
//!
//! Scores, not forced actions: Exchange Online has already accepted the
//! message, so a 5xx from us makes EXO bounce it to the (likely forged)
//! sender. `reject_dmarc_reject = true` forces a rejection for operators who
//! want the domain's request honoured anyway. Outgoing and internal mail
//! get no findings (the tenant's own submissions; EXO signs them later).

use std::sync::Arc;

use async_trait::async_trait;

use crate::config::reader::Section;
use crate::message::auth::{AuthResult, AuthResults, DmarcPolicy};
use crate::message::envelope::Direction;
use crate::message::verdict::{Action, Finding};
use crate::scan::check::{BuildContext, Check, CheckError, ScanInput};

pub(crate) struct Auth {
    dmarc_reject: f64,
    dmarc_quarantine: f64,
    tenant_domain_fail: f64,
    spf_fail: f64,
    force_reject: bool,
}

pub(crate) fn build(options: &Section, cx: &BuildContext) -> Option<Arc<dyn Check>> {
    let check = Auth {
        dmarc_reject: options.f64_or("score_dmarc_reject", 10.0),
        dmarc_quarantine: options.f64_or("score_dmarc_quarantine", 5.0),
        tenant_domain_fail: options.f64_or("score_tenant_domain_dmarc_fail", 10.0),
        spf_fail: options.f64_or("score_spf_fail", 1.0),
        force_reject: options.bool_or("reject_dmarc_reject", false),
    };
    super::resolver(options, cx)?;
    Some(Arc::new(check))
}

/// Whether a message falls in a `pct` sample, decided by its Message-ID.
fn sampled(pct: u8, message_id: Option<&str>) -> bool {
    if pct >= 100 {
        return true;
    }
    let key = message_id.unwrap_or("");
    crc32fast::hash(key.as_bytes()) % 100 < u32::from(pct)
}

/// RFC 7489 §6.6.4: outside the sample, the next weaker policy applies.
fn weaker(p: DmarcPolicy) -> DmarcPolicy {
    match p {
        DmarcPolicy::Reject => DmarcPolicy::Quarantine,
        DmarcPolicy::Quarantine | DmarcPolicy::None => DmarcPolicy::None,
    }
}

impl Auth {
    fn findings(&self, input: &ScanInput<'_>, auth: &AuthResults) -> Vec<Finding> {
        let mut out = Vec::new();
        if input.direction != Direction::Inbound {
            return out;
        }
        let d = &auth.dmarc;
        let from = d.from_domain.as_deref().unwrap_or("");
        if d.result == AuthResult::Fail
            && let Some(requested) = d.policy
        {
            let pct = d.pct.unwrap_or(100);
            let applied = if sampled(pct, input.message.message_id()) {
                requested
            } else {
                weaker(requested)
            };
            let why = format!(
                "From domain {from} fails DMARC (spf={} dkim={}) and asks for p={}{}",
                auth.spf.result,
                dkim_summary(auth),
                requested.as_str(),
                if pct < 100 {
                    format!(" pct={pct}")
                } else {
                    String::new()
                }
            );
            match applied {
                DmarcPolicy::Reject => {
                    let f = Finding::new(self.dmarc_reject, "dmarc-reject", why);
                    out.push(if self.force_reject {
                        f.forcing(Action::Reject)
                    } else {
                        f
                    });
                }
                DmarcPolicy::Quarantine => out.push(Finding::new(self.dmarc_quarantine, "dmarc-quarantine", why)),
                DmarcPolicy::None => {}
            }
        }
        if d.result == AuthResult::Fail && input.tenant.owns_domain(from) {
            out.push(Finding::new(
                self.tenant_domain_fail,
                "tenant-domain-dmarc-fail",
                format!("From is the tenant's own domain {from} but the message fails DMARC"),
            ));
        }
        if auth.spf.result == AuthResult::Fail {
            out.push(Finding::new(
                self.spf_fail,
                "spf-fail",
                format!(
                    "{} is not allowed to send for {} (SPF fail)",
                    auth.origin.ip, auth.spf.domain
                ),
            ));
        }
        out.retain(|f| f.score != 0.0 || f.force.is_some());
        out
    }
}

fn dkim_summary(auth: &AuthResults) -> String {
    if auth.dkim.is_empty() {
        return "none".into();
    }
    auth.dkim
        .iter()
        .map(|d| format!("{}@{}", d.result, d.domain))
        .collect::<Vec<_>>()
        .join(",")
}

#[async_trait]
impl Check for Auth {
    fn kind(&self) -> &'static str {
        "auth"
    }

    async fn scan(&self, input: &ScanInput<'_>) -> Result<Vec<Finding>, CheckError> {
        match input.auth {
            Some(auth) => Ok(self.findings(input, auth)),
            // The pipeline runs sender authentication for every policy with
            // this check; without it there is nothing to judge.
            None => Err(CheckError::Other("sender authentication did not run".into())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pct_sample_is_stable_and_roughly_pct() {
        let ids: Vec<String> = (0..2000).map(|i| format!("<m{i}@example.org>")).collect();
        let hits = ids.iter().filter(|id| sampled(25, Some(id))).count();
        assert!((400..600).contains(&hits), "{hits} of 2000 sampled at pct=25");
        assert_eq!(sampled(25, Some("<x@y>")), sampled(25, Some("<x@y>")));
        assert!(sampled(100, None));
        assert!(ids.iter().all(|id| !sampled(0, Some(id))));
        assert_eq!(weaker(DmarcPolicy::Reject), DmarcPolicy::Quarantine);
    }
}
