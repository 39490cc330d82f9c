//! The `phishing` check: the lures aimed at a tenant's users that general
//! spam engines miss. Rules, each with its tag and a score option:
//!
//! - `credential-form` (`score_credential_form`, 4.0): an HTML body asks for
//!   a password; `credential-form-attachment` (`score_credential_form_attachment`,
//!   6.0): an attached page does, or a body form sends it to another
//!   organisation (+`score_offsite_credentials`, 2.0, when it is sent off-site);
//! - `html-smuggling` (`score_html_smuggling`, 7.0), `attachment-redirect`
//!   (`score_attachment_redirect`, 5.0), `attachment-obfuscated-script`
//!   (`score_attachment_obfuscation`, 3.0), `attachment-script`
//!   (`score_attachment_script`, 1.5): what an attached page does when
//!   opened (see `scripts`);
//! - `brand-impersonation` (`score_brand_display_name`, 3.5): the display
//!   name claims a well-known brand, the sender's domain is not the brand's;
//!   `brand-lure` (`score_brand_text`, 2.0): the subject or the opening text
//!   claims one, with a lure and a way off the brand's domains;
//!   `tenant-impersonation` (`score_tenant_display_name`, 3.5): inbound mail
//!   whose display name claims the tenant from outside;
//!   `brand-in-domain` (`score_brand_domain`, 2.5): the sender's or a link's
//!   registrable domain carries a brand's name as a part ("paypal-secure.com");
//! - `lure` (`score_lure`, 1.5): two or more kinds of lure wording at once,
//!   or one from a message that impersonates (any rule above);
//! - `advance-fee` (`score_advance_fee`, 5.0): three or more distinct cues of
//!   advance-fee ("419") fraud (next of kin, beneficiary, transfer of the
//!   funds, strictly confidential, …);
//! - `archive-password-in-body` (`score_archive_password`, 3.0): an
//!   encrypted archive whose password is in the message;
//! - `auth-fail-with-lure` (`score_auth_fail_with_lure`, 2.0): any of the
//!   impersonation rules above while the From domain fails DMARC (when the
//!   policy authenticates senders): worse than either alone.
//!
//! Calendar invitations and attached messages are read like the message
//! itself (their text, pages and attachments). QR codes, PDF links and the
//! links of invitations are the `urls` check's. A score of 0 disables a rule.
//! Each rule reports once per message. Pure: no I/O, bounded (`material`).

mod archive;
mod brand;
mod forms;
mod lure;
mod material;
mod reveal;
mod scripts;

use std::sync::Arc;

use async_trait::async_trait;

use crate::config::reader::Section;
use crate::message::auth::AuthResult;
use crate::message::envelope::Direction;
use crate::message::verdict::Finding;
use crate::scan::brands;
use crate::scan::check::{BuildContext, Check, CheckError, ScanInput};
use crate::scan::lookalike;

use material::Material;
use scripts::Activity;

/// Distinct advance-fee phrases that make the genre.
const ADVANCE_FEE_CUES: usize = 3;

/// Characters of a name, host or file name quoted in a reason.
const QUOTE_CHARS: usize = 80;

struct Scores {
    credential_form: f64,
    credential_form_attachment: f64,
    offsite_credentials: f64,
    html_smuggling: f64,
    attachment_redirect: f64,
    attachment_obfuscation: f64,
    attachment_script: f64,
    brand_display_name: f64,
    brand_text: f64,
    tenant_display_name: f64,
    brand_domain: f64,
    lure: f64,
    archive_password: f64,
    auth_fail_with_lure: f64,
    advance_fee: f64,
}

struct Phishing {
    scores: Scores,
}

pub(crate) fn build(options: &Section, _cx: &BuildContext) -> Option<Arc<dyn Check>> {
    warm();
    Some(Arc::new(Phishing {
        scores: read_scores(options),
    }))
}

/// Every table of the rules' files (see the `checks` module header).
fn warm() {
    archive::warm();
    forms::warm();
    lure::warm();
    reveal::warm();
    scripts::warm();
}

fn read_scores(options: &Section) -> Scores {
    Scores {
        credential_form: options.f64_or("score_credential_form", 4.0),
        credential_form_attachment: options.f64_or("score_credential_form_attachment", 6.0),
        offsite_credentials: options.f64_or("score_offsite_credentials", 2.0),
        html_smuggling: options.f64_or("score_html_smuggling", 7.0),
        attachment_redirect: options.f64_or("score_attachment_redirect", 5.0),
        attachment_obfuscation: options.f64_or("score_attachment_obfuscation", 3.0),
        attachment_script: options.f64_or("score_attachment_script", 1.5),
        brand_display_name: options.f64_or("score_brand_display_name", 3.5),
        brand_text: options.f64_or("score_brand_text", 2.0),
        tenant_display_name: options.f64_or("score_tenant_display_name", 3.5),
        brand_domain: options.f64_or("score_brand_domain", 2.5),
        lure: options.f64_or("score_lure", 1.5),
        archive_password: options.f64_or("score_archive_password", 3.0),
        auth_fail_with_lure: options.f64_or("score_auth_fail_with_lure", 2.0),
        advance_fee: options.f64_or("score_advance_fee", 5.0),
    }
}

#[async_trait]
impl Check for Phishing {
    fn kind(&self) -> &'static str {
        "phishing"
    }

    async fn scan(&self, input: &ScanInput<'_>) -> Result<Vec<Finding>, CheckError> {
        if input.truncated {
            return Ok(Vec::new());
        }
        let m = Material::gather(input);
        Ok(self.judge(
            &m,
            &input.tenant.domains,
            input.direction,
            input.auth.map(|a| a.dmarc.result),
        ))
    }
}

impl Phishing {
    fn judge(
        &self,
        m: &Material,
        tenant_domains: &[String],
        direction: Direction,
        dmarc: Option<AuthResult>,
    ) -> Vec<Finding> {
        let s = &self.scores;
        let mut out = Vec::new();
        let mut add = |score: f64, tag: &str, reason: String| {
            if score != 0.0 && !out.iter().any(|f: &Finding| f.tag == tag) {
                out.push(Finding::new(score, tag, reason));
            }
        };
        let q = |t: &str| lookalike::printable(t, QUOTE_CHARS);
        let from_org = m.from_org.as_deref();
        let mut home: Vec<String> = tenant_domains.iter().map(|d| brands::organisation(d)).collect();
        home.extend(m.from_org.clone());

        // Pages: password requests and active content.
        let mut strongest: Option<(Activity, String)> = None;
        for doc in &m.documents {
            let revealed = reveal::reveal(doc.html);
            let label = doc.name.as_deref().map_or_else(|| "the message body".to_string(), q);
            if let Some(form) = forms::credential_form(&revealed, doc.forms, &home) {
                let whither = form
                    .destination
                    .as_deref()
                    .map(|d| format!(" and sends it to {}", q(d)))
                    .unwrap_or_default();
                let how = if form.scripted { " (by script)" } else { "" };
                if doc.attached || form.destination.is_some() {
                    let score = s.credential_form_attachment
                        + if form.destination.is_some() {
                            s.offsite_credentials
                        } else {
                            0.0
                        };
                    add(
                        score,
                        "credential-form-attachment",
                        format!("{label} asks for a password{whither}{how}"),
                    );
                } else {
                    add(
                        s.credential_form,
                        "credential-form",
                        format!("{label} asks for a password{how}"),
                    );
                }
            }
            if doc.attached
                && let Some(a) = scripts::activity(&revealed)
                && strongest.as_ref().is_none_or(|(b, _)| a > *b)
            {
                strongest = Some((a, label));
            }
        }
        if let Some((activity, label)) = strongest {
            let (score, tag, what) = match activity {
                Activity::Smuggling => (
                    s.html_smuggling,
                    "html-smuggling",
                    "builds a file in the browser from data it carries",
                ),
                Activity::Redirect => (
                    s.attachment_redirect,
                    "attachment-redirect",
                    "sends the browser to another page when opened",
                ),
                Activity::Obfuscated => (
                    s.attachment_obfuscation,
                    "attachment-obfuscated-script",
                    "runs disguised script",
                ),
                Activity::Script => (s.attachment_script, "attachment-script", "runs script when opened"),
            };
            add(score, tag, format!("attached page {label} {what}"));
        }

        // Claims of a brand or of the tenant.
        let folded_all = brands::fold_for_claims(&format!("{}\n{}", m.subject, m.text));
        let lures = lure::kinds(&folded_all);
        let mut impersonating = false;
        if let Some(b) = brand::display_name_claim(&m.from_name, from_org) {
            impersonating = true;
            add(
                s.brand_display_name,
                "brand-impersonation",
                format!(
                    "display name \"{}\" claims {} but the sender's domain is {}",
                    q(&m.from_name),
                    b.name,
                    from_org.map_or_else(|| "unknown".to_string(), q)
                ),
            );
        } else if !lures.is_empty()
            && let Some(b) = brand::text_claim(&m.subject, &m.text, from_org, &m.link_hosts, m.attachments)
        {
            impersonating = true;
            add(
                s.brand_text,
                "brand-lure",
                format!(
                    "the message speaks for {} ({}) but comes from {}",
                    b.name,
                    lures[0].1,
                    from_org.map_or_else(|| "an unknown domain".to_string(), q)
                ),
            );
        }
        if direction == Direction::Inbound
            && let Some(name) = brand::tenant_name_claim(&m.from_name, from_org, tenant_domains)
        {
            impersonating = true;
            add(
                s.tenant_display_name,
                "tenant-impersonation",
                format!(
                    "display name \"{}\" claims the organisation ({name}) but the sender's domain is {}",
                    q(&m.from_name),
                    from_org.map_or_else(|| "unknown".to_string(), q)
                ),
            );
        }
        let bought = from_org
            .and_then(|o| brand::domain_claim(o).map(|b| (b, o.to_string())))
            .or_else(|| {
                m.link_hosts
                    .iter()
                    .find_map(|h| brand::domain_claim(h).map(|b| (b, h.clone())))
            });
        if let Some((b, host)) = bought {
            impersonating = true;
            add(
                s.brand_domain,
                "brand-in-domain",
                format!("{} carries the name of {} without being its domain", q(&host), b.name),
            );
        }
        // One kind of lure is ordinary mail; from an impersonator it is the bait.
        if lures.len() >= 2 || (impersonating && !lures.is_empty()) {
            add(
                s.lure,
                "lure",
                format!(
                    "lure wording: {}",
                    lures
                        .iter()
                        .map(|(k, p)| format!("{} (\"{p}\")", k.as_str()))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            );
        }
        let fee = lure::advance_fee(&folded_all);
        if fee.len() >= ADVANCE_FEE_CUES {
            add(
                s.advance_fee,
                "advance-fee",
                format!(
                    "advance-fee fraud wording: {}",
                    fee.iter()
                        .take(5)
                        .map(|p| format!("\"{p}\""))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            );
        }
        if let Some(name) = m.encrypted_archives.first()
            && let Some(phrase) = archive::password_in_text(&m.text)
        {
            add(
                s.archive_password,
                "archive-password-in-body",
                format!(
                    "encrypted archive {} and its password in the message (\"{}\")",
                    q(name),
                    q(&phrase)
                ),
            );
        }
        let dmarc_failed = matches!(dmarc, Some(AuthResult::Fail));
        if impersonating && dmarc_failed {
            add(
                s.auth_fail_with_lure,
                "auth-fail-with-lure",
                "the From domain fails DMARC and the message impersonates a brand or the organisation".into(),
            );
        }
        out
    }
}

#[cfg(test)]
mod tests;
