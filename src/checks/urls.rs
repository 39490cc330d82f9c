//! The `urls` check: the links of the message's view (its text and HTML
//! parts, attached messages and HTML attachments included, read once by
//! [`crate::scan::view`] as a browser reads them), against five rules,
//! each with its own tag and score:
//!
//! - `blocklisted-url`: the host is, or is under, a configured domain;
//! - `ip-url` / `encoded-ip-url`: the host is an IP literal, or an IPv4 address
//!   written as one number, in hex or octal (`http://3232235777/`);
//! - `link-text-mismatch`: an anchor's text shows a URL or domain of one
//!   organisation while its href goes to another;
//! - `lookalike-url`: the host looks like a tenant domain (see [`crate::scan::lookalike`]);
//! - `userinfo-url`: the URL carries a user name, as in
//!   `https://contoso.com@evil.example/`, where the real host follows the `@`;
//! - `lookalike-brand-url`: the host looks like the domain of a well-known
//!   brand (see [`crate::scan::brands`]) without being it;
//! - `address-in-fragment`: the URL's fragment holds an address of the
//!   tenant (`#anna@contoso.com`), which a phishing page reads to fill in its
//!   sign-in form;
//! - `qr-url`: the link was drawn as a QR code in an image (a way around link
//!   scanners that most legitimate mail has no reason to take).
//!
//! Besides the view's links (bodies, text and HTML attachments, calendar
//! invitations), links are read from PDF link annotations and QR codes in
//! images (`carriers`).
//!
//! Microsoft Safe Links wrappers are unwrapped first, so rules see the real
//! target. Each rule reports one finding per message (naming the first URL
//! and how many more matched), so a long newsletter cannot pile up score.
//! A score of 0 disables a rule. Bounded: `max_urls` links (the view caps
//! what it reads); the check never fetches anything.

mod carriers;

use std::collections::HashSet;
use std::net::Ipv4Addr;
use std::sync::Arc;

use async_trait::async_trait;
use url::{Host, Url};

use crate::config::reader::Section;
use crate::message::verdict::Finding;
use crate::scan::brands;
use crate::scan::check::{BuildContext, Check, CheckError, ScanInput};
use crate::scan::lookalike::{self, Protected};
use crate::scan::view::{Link, View};

pub(crate) const DEFAULT_MAX_URLS: u64 = 1000;
/// Safe Links wrappers unwrapped in a row.
const MAX_UNWRAP: usize = 3;
/// Characters of a URL quoted in a reason.
const QUOTE_CHARS: usize = 120;

struct Scores {
    blocklisted: f64,
    ip_host: f64,
    encoded_ip_host: f64,
    text_mismatch: f64,
    lookalike: f64,
    userinfo: f64,
    lookalike_brand: f64,
    qr: f64,
    address_fragment: f64,
}

struct Urls {
    max_urls: usize,
    /// Normalised domains; a host matches when it or a parent domain is here.
    blocklist: HashSet<String>,
    lookalike_ignore: Vec<String>,
    /// Well-known brands' domains, for `lookalike-brand-url`.
    brands: Protected,
    scores: Scores,
}

pub(crate) fn build(options: &Section, _cx: &BuildContext) -> Option<Arc<dyn Check>> {
    carriers::warm();
    let max_urls = options.u64_in("max_urls", DEFAULT_MAX_URLS, 1, crate::scan::view::MAX_LINKS as u64) as usize;
    let blocklist = options.parsed_list("blocklist", &[], lookalike::configured_domain);
    let lookalike_ignore = options.parsed_list("lookalike_ignore", &[], lookalike::configured_domain);
    let scores = Scores {
        blocklisted: options.f64_or("score_blocklisted", 10.0),
        ip_host: options.f64_or("score_ip_host", 3.0),
        encoded_ip_host: options.f64_or("score_encoded_ip_host", 6.0),
        text_mismatch: options.f64_or("score_text_mismatch", 3.0),
        lookalike: options.f64_or("score_lookalike", 6.0),
        userinfo: options.f64_or("score_userinfo", 4.0),
        lookalike_brand: options.f64_or("score_lookalike_brand", 5.0),
        qr: options.f64_or("score_qr_url", 2.5),
        address_fragment: options.f64_or("score_address_in_fragment", 2.0),
    };
    Some(Arc::new(Urls {
        max_urls,
        blocklist: blocklist.iter().filter_map(|d| lookalike::normalize_host(d)).collect(),
        brands: Protected::new(&brands::lookalike_targets(), &lookalike_ignore),
        lookalike_ignore,
        scores,
    }))
}

#[async_trait]
impl Check for Urls {
    fn kind(&self) -> &'static str {
        "urls"
    }

    async fn scan(&self, input: &ScanInput<'_>) -> Result<Vec<Finding>, CheckError> {
        if input.truncated {
            // Only the header was kept: there is no body to read links from.
            return Ok(Vec::new());
        }
        let links = &input.view.links;
        if links.len() > self.max_urls || input.view.links_overflow > 0 {
            tracing::debug!(
                max_urls = self.max_urls,
                "more links than max_urls; the rest were not checked"
            );
        }
        let protected = Protected::new(&input.tenant.domains, &self.lookalike_ignore);
        let mut report = Report::default();
        // Links the view does not read (PDF annotations, QR codes), then the
        // view's; a link carried twice is judged once.
        let (carried, qr) = carriers::collect(&input.view.attachments);
        let known: HashSet<&str> = carried.iter().map(|l| l.url.as_str()).collect();
        let viewed = links
            .iter()
            .take(self.max_urls)
            .filter(|l| !known.contains(l.url.as_str()));
        for link in carried.iter().chain(viewed) {
            self.judge(link, &protected, &mut report);
            if qr.contains(&link.url)
                && let Some((url, _)) = parse_link(&link.url, &link.written)
            {
                report.add("qr-url", self.scores.qr, &url, || {
                    format!(
                        "link drawn as a QR code in an image: {}",
                        lookalike::printable(url.as_str(), QUOTE_CHARS)
                    )
                });
            }
        }
        Ok(report.into_findings())
    }
}

/// The distinct hosts of the web links in `view` (at most `max` links read),
/// lower-cased: what the `dnsbl` check asks domain lists about.
pub(crate) fn hosts(view: &View, max: usize) -> Vec<String> {
    let mut hosts: Vec<String> = Vec::new();
    for link in view.links.iter().take(max) {
        if let Some(url) = parse_web(link.url.trim())
            && let Some(Host::Domain(h)) = url.host()
        {
            let h = h.trim_end_matches('.').to_ascii_lowercase();
            if !hosts.contains(&h) {
                hosts.push(h);
            }
        }
    }
    hosts
}

/// Findings gathered per rule: one finding per tag, the first reason kept,
/// distinct URLs counted (a text part and its HTML twin are one link).
#[derive(Default)]
struct Report {
    hits: Vec<(&'static str, f64, String, usize)>,
    seen: HashSet<(&'static str, String)>,
}

impl Report {
    fn add(&mut self, tag: &'static str, score: f64, url: &Url, reason: impl FnOnce() -> String) {
        if score == 0.0 || !self.seen.insert((tag, url.as_str().to_string())) {
            return;
        }
        match self.hits.iter_mut().find(|(t, ..)| *t == tag) {
            Some((.., count)) => *count += 1,
            None => self.hits.push((tag, score, reason(), 1)),
        }
    }

    fn into_findings(self) -> Vec<Finding> {
        self.hits
            .into_iter()
            .map(|(tag, score, reason, count)| {
                let reason = match count {
                    1 => reason,
                    n => format!("{reason} (and {} more)", n - 1),
                };
                Finding::new(score, tag, reason)
            })
            .collect()
    }
}

impl Urls {
    fn judge(&self, link: &Link, protected: &Protected, report: &mut Report) {
        let Some((url, written)) = parse_link(&link.url, &link.written) else {
            return;
        };
        let shown = || lookalike::printable(url.as_str(), QUOTE_CHARS);
        let Some(host) = url.host() else {
            return;
        };
        match &host {
            Host::Domain(domain) => {
                if let Some(blocked) = self.blocked_parent(domain) {
                    report.add("blocklisted-url", self.scores.blocklisted, &url, || {
                        format!("link to blocklisted domain {blocked}: {}", shown())
                    });
                }
                if let Some(found) = self.brands.check(domain).filter(|f| match f.reason {
                    // Typing edits of a brand name are often words or
                    // parodies of their own ("lindows", "microshaft"): only
                    // one edit, and only from a long name.
                    lookalike::Reason::EditDistance(n) => {
                        n == 1 && f.protected.split('.').next().is_some_and(|n| n.len() >= 8)
                    }
                    _ => true,
                }) && brands::owner(domain).is_none()
                {
                    report.add("lookalike-brand-url", self.scores.lookalike_brand, &url, || {
                        format!(
                            "link host {} looks like {} ({}): {}",
                            lookalike::printable(&lookalike::display_host(domain), QUOTE_CHARS),
                            found.protected,
                            found.reason,
                            shown()
                        )
                    });
                }
                if let Some(found) = protected.check(domain) {
                    report.add("lookalike-url", self.scores.lookalike, &url, || {
                        format!(
                            "link host {} looks like the tenant domain {} ({}): {}",
                            lookalike::printable(&lookalike::display_host(domain), QUOTE_CHARS),
                            found.protected,
                            found.reason,
                            shown()
                        )
                    });
                }
            }
            Host::Ipv4(ip) if is_encoded_ipv4(&written, ip) => {
                report.add("encoded-ip-url", self.scores.encoded_ip_host, &url, || {
                    format!(
                        "link to IP address {ip} written as \"{}\": {}",
                        lookalike::printable(raw_host(&written), QUOTE_CHARS),
                        shown()
                    )
                });
            }
            Host::Ipv4(_) | Host::Ipv6(_) => {
                report.add("ip-url", self.scores.ip_host, &url, || {
                    format!("link to an IP address: {}", shown())
                });
            }
        }
        if !url.username().is_empty() || url.password().is_some() {
            report.add("userinfo-url", self.scores.userinfo, &url, || {
                format!(
                    "link hides its host behind the user name \"{}\": {}",
                    lookalike::printable(url.username(), QUOTE_CHARS),
                    shown()
                )
            });
        }
        if let Some(address) = tenant_address_in_fragment(&url, protected) {
            report.add("address-in-fragment", self.scores.address_fragment, &url, || {
                format!(
                    "link carries the recipient's address {} in its fragment (a page that fills in the sign-in form): {}",
                    lookalike::printable(&address, QUOTE_CHARS),
                    shown()
                )
            });
        }
        if let Some(text) = &link.text {
            self.text_mismatch(text, &url, &host, protected, report);
        }
    }

    /// The blocklisted domain `host` is or is under, found in as many
    /// lookups as the host has labels, whatever the size of the list.
    fn blocked_parent(&self, host: &str) -> Option<String> {
        if self.blocklist.is_empty() {
            return None;
        }
        let mut rest = lookalike::normalize_host(host)?;
        loop {
            if self.blocklist.contains(&rest) {
                return Some(rest);
            }
            let (_, parent) = rest.split_once('.')?;
            rest = parent.to_string();
        }
    }

    fn text_mismatch(&self, text: &str, url: &Url, host: &Host<&str>, protected: &Protected, report: &mut Report) {
        let Some(shown_host) = text_host(text) else {
            return;
        };
        let target = host.to_string();
        let (Some(shown_org), Some(target_org)) = (organisation(&shown_host), organisation(&target)) else {
            return;
        };
        if shown_org == target_org || (protected.owns(&shown_host) && protected.owns(&target)) {
            return;
        }
        report.add("link-text-mismatch", self.scores.text_mismatch, url, || {
            format!(
                "link text shows {} but the link goes to {}: {}",
                lookalike::printable(&lookalike::display_host(&shown_host), QUOTE_CHARS),
                lookalike::printable(&lookalike::display_host(&target), QUOTE_CHARS),
                lookalike::printable(url.as_str(), QUOTE_CHARS)
            )
        });
    }
}

/// Parses a link as a browser would; only web links (`http`, `https`,
/// `//host`, `www.`) count. Safe Links wrappers are replaced by their target.
/// Returns the URL and the text it was written as (`written`, or the Safe
/// Links target).
fn parse_link(raw: &str, written: &str) -> Option<(Url, String)> {
    let mut written = written.trim().to_string();
    let mut url = parse_web(raw.trim())?;
    for _ in 0..MAX_UNWRAP {
        let Some(inner) = safe_links_target(&url) else {
            break;
        };
        let Some(parsed) = parse_web(&inner) else {
            break;
        };
        url = parsed;
        written = inner;
    }
    Some((url, written))
}

fn parse_web(text: &str) -> Option<Url> {
    let lower = text.get(..8).unwrap_or(text).to_ascii_lowercase();
    let url = if lower.starts_with("http://") || lower.starts_with("https://") {
        Url::parse(text)
    } else if lower.starts_with("//") {
        Url::parse(&format!("https:{text}"))
    } else if lower.starts_with("www.") {
        Url::parse(&format!("http://{text}"))
    } else {
        return None;
    }
    .ok()?;
    url.host()?;
    Some(url)
}

/// The `url` parameter of a Microsoft Safe Links wrapper.
fn safe_links_target(url: &Url) -> Option<String> {
    let host = url.host_str()?;
    if !(host.ends_with(".safelinks.protection.outlook.com") || host.ends_with(".safelinks.protection.office365.us")) {
        return None;
    }
    url.query_pairs().find(|(k, _)| k == "url").map(|(_, v)| v.into_owned())
}

/// An address of the tenant's domains in the URL's fragment (`#anna@contoso.com`,
/// percent-encoded or base64-free): a phishing page reads it to pre-fill its
/// form; a server never sees a fragment, so no tracking needs it there.
fn tenant_address_in_fragment(url: &Url, protected: &Protected) -> Option<String> {
    let fragment = url.fragment()?;
    let decoded = fragment.replace("%40", "@");
    decoded
        .split(|c: char| !(c.is_alphanumeric() || matches!(c, '@' | '.' | '-' | '_' | '+')))
        .filter_map(|token| {
            let (local, domain) = token.rsplit_once('@')?;
            (!local.is_empty() && protected.owns(domain)).then(|| token.to_string())
        })
        .next()
}

/// The host as written in the link text, before parsing (userinfo and port removed).
fn raw_host(written: &str) -> &str {
    let after_scheme = written.split_once("//").map_or(written, |(_, rest)| rest);
    let authority = after_scheme.split(['/', '?', '#', '\\']).next().unwrap_or_default();
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    host.rsplit_once(':').map_or(host, |(h, _)| h)
}

/// An IPv4 host not written as the usual four decimal numbers
/// (`3232235777`, `0xC0A80101`, `0300.0250.1.1`): only used to hide.
fn is_encoded_ipv4(written: &str, ip: &Ipv4Addr) -> bool {
    raw_host(written).trim_end_matches('.') != ip.to_string()
}

/// The host an anchor's text shows, when the text is a URL or a bare domain;
/// `None` for ordinary words ("Read more", "README.md", "v2.0").
fn text_host(text: &str) -> Option<String> {
    let t = text.trim().trim_end_matches(['.', ',', ';', ':', '!', '?', ')']);
    if t.is_empty() || t.len() > 2048 || t.contains(char::is_whitespace) || t.contains('@') {
        return None;
    }
    let lower = t.get(..8).unwrap_or(t).to_ascii_lowercase();
    let candidate = if lower.starts_with("http://") || lower.starts_with("https://") {
        t.to_string()
    } else if lower.starts_with("www.") {
        format!("http://{t}")
    } else {
        let host = t.split(['/', '?', '#', ':']).next().unwrap_or_default();
        let labels: Vec<&str> = host.split('.').collect();
        let plausible = labels.len() >= 2
            && labels
                .iter()
                .all(|l| !l.is_empty() && l.chars().all(|c| c.is_alphanumeric() || c == '-'));
        if !plausible || !labels.last().is_some_and(|tld| lookalike::is_link_text_tld(tld)) {
            return None;
        }
        format!("http://{t}")
    };
    match Url::parse(&candidate).ok()?.host()? {
        Host::Domain(d) => Some(d.to_string()),
        ip => Some(ip.to_string()),
    }
}

/// The registrable domain that stands for the organisation behind a host
/// (an IP literal stands for itself).
fn organisation(host: &str) -> Option<String> {
    let host = lookalike::normalize_host(host)?;
    Some(lookalike::registrable(&host).map_or(host, |r| r.domain))
}

#[cfg(test)]
mod tests;
