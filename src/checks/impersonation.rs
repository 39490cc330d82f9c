//! The `impersonation` check: header anomalies that make a message pass for
//! someone it is not. Five rules, each with its own tag and score:
//!
//! - `display-name-address`: the display name carries an address of another
//!   organisation than the real From address (`"ceo@contoso.com" <x@evil.example>`);
//! - `lookalike-domain`: the From (or Reply-To) domain looks like a tenant domain
//!   without being one (see [`crate::scan::lookalike`]);
//! - `protected-name`: inbound mail from outside the tenant whose display name is
//!   one of the configured `protected_names`;
//! - `reply-to-mismatch` / `reply-to-freemail`: inbound mail whose replies go to
//!   another organisation (a free-mail one scores higher);
//! - `tenant-domain-spoof`: inbound mail whose From is a tenant domain, except
//!   Exchange Online's own connector-validation probe and mail whose From
//!   passes DMARC (sender authentication, when the policy runs it: an
//!   authenticated From of the tenant's domain is the tenant's, not a spoof).
//!
//! Each rule reports at most one finding per message, so a message cannot
//! pile up score by repeating a trick. A score of 0 disables a rule. The check
//! reads only parsed header fields; it never looks at the body.

use std::sync::{Arc, LazyLock};

use async_trait::async_trait;
use mail_parser::{Addr, Message};
use regex::Regex;

use crate::config::reader::Section;
use crate::config::tenant::Tenant;
use crate::message::envelope::{Direction, domain_of};
use crate::message::verdict::Finding;
use crate::scan::check::{BuildContext, Check, CheckError, ScanInput};
use crate::scan::lookalike::{self, Protected};

/// Free-mail providers: a Reply-To there, on business mail, is where
/// invoice fraud wants the answer to go.
const DEFAULT_FREEMAIL: &[&str] = &[
    "gmail.com",
    "googlemail.com",
    "outlook.com",
    "hotmail.com",
    "live.com",
    "msn.com",
    "yahoo.com",
    "ymail.com",
    "aol.com",
    "icloud.com",
    "me.com",
    "mail.com",
    "gmx.com",
    "gmx.net",
    "gmx.de",
    "web.de",
    "proton.me",
    "protonmail.com",
    "zoho.com",
    "yandex.com",
    "yandex.ru",
    "mail.ru",
    "qq.com",
    "163.com",
];

/// How many addresses of one header field are looked at.
const MAX_ADDRESSES: usize = 32;
/// How much of a display name is looked at.
const MAX_NAME_CHARS: usize = 512;
/// Words of a name compared (more is not a person's name).
const MAX_NAME_WORDS: usize = 12;
/// Length of names and addresses quoted in reasons.
const QUOTE_CHARS: usize = 100;

/// Local part EXO uses when it validates a connector (`MAIL FROM:<>`).
const EXO_PROBE_LOCAL_PART: &str = "o365connectorvalidation";

static ADDRESS_IN_TEXT: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"[\p{L}\p{N}._%+'=-]+@((?:[\p{L}\p{N}-]+\.)+[\p{L}]{2,63})").expect("valid regex"));

/// Builds this file's tables now, when the check is built, rather than at
/// the first message that needs them (see the `checks` module header).
pub(crate) fn warm() {
    LazyLock::force(&ADDRESS_IN_TEXT);
}

struct Scores {
    display_name_address: f64,
    lookalike_domain: f64,
    protected_name: f64,
    reply_to_mismatch: f64,
    reply_to_freemail: f64,
    tenant_spoof: f64,
}

/// A configured person: the name as written, and its folded words.
struct ProtectedName {
    written: String,
    words: Vec<String>,
}

struct Impersonation {
    protected_names: Vec<ProtectedName>,
    freemail: Vec<String>,
    /// Lower-case addresses (with `@`) and domains exempt from every rule.
    trusted: Vec<String>,
    lookalike_ignore: Vec<String>,
    scores: Scores,
}

pub(crate) fn build(options: &Section, _cx: &BuildContext) -> Option<Arc<dyn Check>> {
    warm();
    let protected_names = options.parsed_list("protected_names", &[], |text| {
        let words = name_words(text);
        if words.is_empty() {
            return Err(format!(
                "expected a person's name such as \"Jane Doe\", found \"{text}\""
            ));
        }
        Ok(ProtectedName {
            written: text.trim().to_string(),
            words,
        })
    });
    let freemail = options.parsed_list("freemail_domains", DEFAULT_FREEMAIL, lookalike::configured_domain);
    let trusted = options.parsed_list("trusted_senders", &[], |text| {
        let t = text.trim().to_lowercase();
        let valid = match t.rsplit_once('@') {
            Some((local, domain)) => !local.is_empty() && lookalike::configured_domain(domain).is_ok(),
            None => lookalike::configured_domain(&t).is_ok(),
        };
        if valid {
            Ok(t)
        } else {
            Err(format!("expected an address or a domain, found \"{text}\""))
        }
    });
    let lookalike_ignore = options.parsed_list("lookalike_ignore", &[], lookalike::configured_domain);
    let scores = Scores {
        display_name_address: options.f64_or("score_display_name_address", 4.0),
        lookalike_domain: options.f64_or("score_lookalike_domain", 6.0),
        protected_name: options.f64_or("score_protected_name", 5.0),
        reply_to_mismatch: options.f64_or("score_reply_to_mismatch", 1.0),
        reply_to_freemail: options.f64_or("score_reply_to_freemail", 3.0),
        tenant_spoof: options.f64_or("score_tenant_domain_spoof", 4.0),
    };
    Some(Arc::new(Impersonation {
        protected_names,
        freemail,
        trusted,
        lookalike_ignore,
        scores,
    }))
}

#[async_trait]
impl Check for Impersonation {
    fn kind(&self) -> &'static str {
        "impersonation"
    }

    async fn scan(&self, input: &ScanInput<'_>) -> Result<Vec<Finding>, CheckError> {
        Ok(self.findings(input))
    }
}

/// The From header's first mailbox as the rules see it.
struct Sender<'m> {
    name: Option<&'m str>,
    address: Option<String>,
    domain: Option<String>,
}

impl Sender<'_> {
    fn shown(&self) -> String {
        self.address.clone().unwrap_or_else(|| "(no address)".into())
    }
}

impl Impersonation {
    fn findings(&self, input: &ScanInput<'_>) -> Vec<Finding> {
        let message = input.message;
        let first = message.from().and_then(|a| a.first());
        let address = first.and_then(Addr::address).map(|a| a.trim().to_lowercase());
        let sender = Sender {
            name: first.and_then(Addr::name),
            domain: address.as_deref().and_then(domain_of),
            address,
        };
        if self.is_trusted(&sender) {
            return Vec::new();
        }
        let inbound = input.direction == Direction::Inbound;
        let protected = Protected::new(&input.tenant.domains, &self.lookalike_ignore);
        let mut out = Vec::new();
        if input.direction != Direction::Outgoing {
            out.extend(self.display_name_address(message, &sender));
        }
        out.extend(self.lookalike(message, &sender, &protected));
        if inbound {
            out.extend(self.protected_name(&sender, input.tenant));
            out.extend(self.reply_to(message, &sender, input.tenant));
            out.extend(self.tenant_spoof(input, &sender));
        }
        out
    }

    fn is_trusted(&self, sender: &Sender) -> bool {
        let Some(address) = &sender.address else {
            return false;
        };
        self.trusted.iter().any(|t| {
            if t.contains('@') {
                t == address
            } else {
                sender.domain.as_deref().is_some_and(|d| within(d, t))
            }
        })
    }

    fn display_name_address(&self, message: &Message, sender: &Sender) -> Option<Finding> {
        if self.scores.display_name_address == 0.0 {
            return None;
        }
        if is_list_rewrite(message, sender) {
            return None;
        }
        let name: String = sender.name?.chars().take(MAX_NAME_CHARS).collect();
        let from_org = sender.domain.as_deref().and_then(organisation);
        let shown = ADDRESS_IN_TEXT.captures_iter(&name).take(MAX_ADDRESSES).find_map(|c| {
            let domain = c.get(1)?.as_str();
            let other = organisation(domain)?;
            (from_org.as_deref() != Some(other.as_str())).then(|| c.get(0).map_or("", |m| m.as_str()).to_string())
        })?;
        Some(Finding::new(
            self.scores.display_name_address,
            "display-name-address",
            format!(
                "display name shows {} but the message is from {}",
                lookalike::printable(&shown, QUOTE_CHARS),
                lookalike::printable(&sender.shown(), QUOTE_CHARS)
            ),
        ))
    }

    fn lookalike(&self, message: &Message, sender: &Sender, protected: &Protected) -> Option<Finding> {
        if self.scores.lookalike_domain == 0.0 {
            return None;
        }
        let reply_domains = reply_to_domains(message);
        let candidates = sender
            .domain
            .iter()
            .map(|d| ("From", d))
            .chain(reply_domains.iter().map(|d| ("Reply-To", d)));
        for (field, domain) in candidates {
            if let Some(found) = protected.check(domain) {
                return Some(Finding::new(
                    self.scores.lookalike_domain,
                    "lookalike-domain",
                    format!(
                        "{field} domain {} looks like the tenant domain {} ({})",
                        lookalike::printable(&lookalike::display_host(domain), QUOTE_CHARS),
                        found.protected,
                        found.reason
                    ),
                ));
            }
        }
        None
    }

    fn protected_name(&self, sender: &Sender, tenant: &Tenant) -> Option<Finding> {
        if self.scores.protected_name == 0.0 || self.protected_names.is_empty() {
            return None;
        }
        if sender.domain.as_deref().is_some_and(|d| tenant_owns(tenant, d)) {
            return None;
        }
        let name: String = sender.name?.chars().take(MAX_NAME_CHARS).collect();
        let words = name_words(&name);
        let person = self.protected_names.iter().find(|p| same_person(&words, &p.words))?;
        Some(Finding::new(
            self.scores.protected_name,
            "protected-name",
            format!(
                "display name \"{}\" is the protected person {} but the message is from outside the tenant ({})",
                lookalike::printable(&name, QUOTE_CHARS),
                person.written,
                lookalike::printable(&sender.shown(), QUOTE_CHARS)
            ),
        ))
    }

    fn reply_to(&self, message: &Message, sender: &Sender, tenant: &Tenant) -> Option<Finding> {
        if is_list_rewrite(message, sender) {
            return None;
        }
        let from_org = sender.domain.as_deref().and_then(organisation);
        let list_orgs = list_organisations(message);
        let mut mismatch: Option<String> = None;
        for domain in reply_to_domains(message) {
            let Some(org) = organisation(&domain) else {
                continue;
            };
            if from_org.as_deref() == Some(org.as_str()) || tenant_owns(tenant, &domain) || list_orgs.contains(&org) {
                continue;
            }
            if self.freemail.iter().any(|f| within(&domain, f)) && self.scores.reply_to_freemail != 0.0 {
                return Some(Finding::new(
                    self.scores.reply_to_freemail,
                    "reply-to-freemail",
                    format!(
                        "replies go to the free-mail domain {} while the message is from {}",
                        lookalike::printable(&domain, QUOTE_CHARS),
                        lookalike::printable(&sender.shown(), QUOTE_CHARS)
                    ),
                ));
            }
            mismatch.get_or_insert(domain);
        }
        let domain = mismatch?;
        if self.scores.reply_to_mismatch == 0.0 {
            return None;
        }
        Some(Finding::new(
            self.scores.reply_to_mismatch,
            "reply-to-mismatch",
            format!(
                "replies go to {} while the message is from {}",
                lookalike::printable(&domain, QUOTE_CHARS),
                lookalike::printable(&sender.shown(), QUOTE_CHARS)
            ),
        ))
    }

    fn tenant_spoof(&self, input: &ScanInput<'_>, sender: &Sender) -> Option<Finding> {
        if self.scores.tenant_spoof == 0.0 {
            return None;
        }
        let domain = sender.domain.as_deref()?;
        if !input.tenant.owns_domain(domain) || is_exo_probe(input, sender) {
            return None;
        }
        let authenticated = input
            .auth
            .is_some_and(|a| a.dmarc_pass() && a.dmarc.from_domain.as_deref() == Some(domain));
        if authenticated {
            return None;
        }
        Some(Finding::new(
            self.scores.tenant_spoof,
            "tenant-domain-spoof",
            format!(
                "external message claims to be from the tenant's own domain ({})",
                lookalike::printable(&sender.shown(), QUOTE_CHARS)
            ),
        ))
    }
}

/// A mailing list re-sent the post under its own address for DMARC's sake
/// ("'jane@x.example' via Partners" <partners@list.example>): the display name
/// and Reply-To then name the poster by design.
fn is_list_rewrite(message: &Message, sender: &Sender) -> bool {
    let via = sender.name.is_some_and(|n| n.to_lowercase().contains(" via "));
    let from_list = sender
        .domain
        .as_deref()
        .and_then(organisation)
        .is_some_and(|org| list_organisations(message).contains(&org));
    via && from_list
}

/// Exchange Online's connector validation: null sender and a From of
/// `O365ConnectorValidation@<tenant>.onmicrosoft.com`.
fn is_exo_probe(input: &ScanInput<'_>, sender: &Sender) -> bool {
    let Some((local, domain)) = sender.address.as_deref().and_then(|a| a.rsplit_once('@')) else {
        return false;
    };
    input.envelope.is_null_sender() && local == EXO_PROBE_LOCAL_PART && domain.ends_with(".onmicrosoft.com")
}

/// Folded words of a person's name: case, diacritics, look-alike letters and
/// punctuation ignored, so "Doe, Jane" gives ["doe", "jane"].
fn name_words(name: &str) -> Vec<String> {
    lookalike::fold(name)
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .take(MAX_NAME_WORDS + 1)
        .map(str::to_string)
        .collect()
}

/// The whole name in either order ("Jane Doe", "Doe, Jane"); never a part
/// of it, so "John Doe" is not "Jane Doe".
fn same_person(words: &[String], person: &[String]) -> bool {
    words == person || words.iter().eq(person.iter().rev())
}

/// The registrable domain that stands for the organisation behind `domain`.
fn organisation(domain: &str) -> Option<String> {
    let host = lookalike::normalize_host(domain)?;
    Some(lookalike::registrable(&host).map_or(host, |r| r.domain))
}

fn within(domain: &str, parent: &str) -> bool {
    match (lookalike::normalize_host(domain), lookalike::normalize_host(parent)) {
        (Some(d), Some(p)) => lookalike::is_within(&d, &p),
        _ => false,
    }
}

/// A tenant domain or one of its subdomains.
fn tenant_owns(tenant: &Tenant, domain: &str) -> bool {
    tenant.domains.iter().any(|t| within(domain, t))
}

fn reply_to_domains(message: &Message) -> Vec<String> {
    message
        .reply_to()
        .map(|a| {
            a.iter()
                .take(MAX_ADDRESSES)
                .filter_map(|a| a.address().and_then(domain_of))
                .collect()
        })
        .unwrap_or_default()
}

fn list_organisations(message: &Message) -> Vec<String> {
    list_domains(message).iter().filter_map(|d| organisation(d)).collect()
}

/// Domains named by `List-Id` and `List-Post` (`<list.lists.example.org>`,
/// `<mailto:list@lists.example.org>`, `<https://lists.example.org/post>`).
fn list_domains(message: &Message) -> Vec<String> {
    let mut out = Vec::new();
    for raw in ["List-Id", "List-Post"]
        .iter()
        .filter_map(|name| message.header_raw(*name))
    {
        let items = raw
            .split('<')
            .skip(1)
            .filter_map(|rest| rest.split_once('>').map(|(i, _)| i));
        for item in items.take(MAX_ADDRESSES) {
            let item = item.trim();
            let host = if let Some((_, after)) = item.split_once("://") {
                after.split(['/', '?', '#', ':']).next().unwrap_or_default()
            } else {
                let address = item.strip_prefix("mailto:").unwrap_or(item);
                let address = address.split('?').next().unwrap_or_default();
                address.rsplit_once('@').map_or(address, |(_, d)| d)
            };
            out.extend(lookalike::normalize_host(host));
        }
    }
    out
}

#[cfg(test)]
mod tests;
