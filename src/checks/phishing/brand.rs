//! Brand impersonation: the message claims to be a well-known brand (see
//! [`crate::scan::brands`]) or the tenant itself, while the sender's
//! registrable domain is not that brand's (or the tenant's).
//!
//! Two strengths. A claim in the display name ("Microsoft 365
//! <alerts@random.example>") is what the reader sees first and is judged
//! alone. A claim in the subject or the opening text is ordinary in news and
//! discussion, so it counts only with a lure and with somewhere to go that is
//! not the brand's (a link to another organisation, or an attachment).
//! The tenant's name is the first label of its domains' registrable parts
//! ("contoso" for contoso.com). Pure.

use crate::scan::brands::{self, Brand};
use crate::scan::lookalike;

/// Characters of the visible text searched for a claim (the opening, where a
/// lure names its brand; a footer mention in a long newsletter does not count).
const CLAIM_TEXT_CHARS: usize = 1500;

/// A brand claimed by the display name of a sender who is not the brand.
pub(crate) fn display_name_claim(from_name: &str, from_org: Option<&str>) -> Option<&'static Brand> {
    if from_name.trim().is_empty() {
        return None;
    }
    let folded = brands::fold_for_claims(from_name);
    brands::claimed(&folded, true)
        .into_iter()
        .find(|b| !from_org.is_some_and(|org| b.owns(org)))
}

/// A brand claimed by the subject or the opening text, sent by someone who
/// is not the brand, with somewhere to go that is not the brand's.
pub(crate) fn text_claim(
    subject: &str,
    text: &str,
    from_org: Option<&str>,
    link_hosts: &[String],
    attachments: usize,
) -> Option<&'static Brand> {
    let head: String = text.chars().take(CLAIM_TEXT_CHARS).collect();
    let folded = brands::fold_for_claims(&format!("{subject}\n{head}"));
    brands::claimed(&folded, false).into_iter().find(|b| {
        let sender_is_brand = from_org.is_some_and(|org| b.owns(org));
        let elsewhere = attachments > 0 || link_hosts.iter().any(|h| !b.owns(h));
        !sender_is_brand && elsewhere
    })
}

/// A brand whose name is a hyphen-separated part of the registrable name of
/// `host` ("paypal-secure.com", "ups-file.com"), when the host is not the
/// brand's: a domain bought to carry the name.
pub(crate) fn domain_claim(host: &str) -> Option<&'static Brand> {
    let org = brands::organisation(host);
    let name = org.split('.').next().unwrap_or_default();
    if !name.contains('-') {
        return None;
    }
    let parts: Vec<String> = name.split('-').map(lookalike::skeleton).collect();
    brands::BRANDS.iter().find(|b| {
        !b.owns(host)
            && b.claims
                .iter()
                .filter(|c| !c.contains(' ') && c.len() >= 3)
                .any(|c| parts.iter().any(|p| p == &lookalike::skeleton(c)))
    })
}

/// The tenant's name, when the display name claims it and the sender is outside.
pub(crate) fn tenant_name_claim(from_name: &str, from_org: Option<&str>, tenant_domains: &[String]) -> Option<String> {
    if from_name.trim().is_empty() {
        return None;
    }
    let orgs: Vec<String> = tenant_domains.iter().map(|d| brands::organisation(d)).collect();
    if from_org.is_some_and(|org| orgs.iter().any(|o| o == org)) {
        return None;
    }
    let folded = brands::fold_for_claims(from_name);
    orgs.iter()
        .filter_map(|o| o.split('.').next())
        .filter(|name| name.chars().count() >= 4)
        .find(|name| brands::contains_words(&folded, name))
        .map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_name_claims_count_only_from_strangers() {
        assert_eq!(
            display_name_claim("Micros\u{43e}ft 365 Team", Some("random.example")).map(|b| b.name),
            Some("Microsoft")
        );
        assert!(display_name_claim("Microsoft", Some("microsoft.com")).is_none());
        assert!(display_name_claim("Office 365", Some("sharepoint.com")).is_none());
        assert!(display_name_claim("Jane Chasewood", Some("example.org")).is_none());
    }

    #[test]
    fn text_claims_need_somewhere_else_to_go() {
        let links = vec!["portal.evil.example".to_string()];
        assert!(text_claim("Your PayPal account", "", Some("evil.example"), &links, 0).is_some());
        let brand_links = vec!["www.paypal.com".to_string()];
        assert!(text_claim("Your PayPal account", "", Some("news.example"), &brand_links, 0).is_none());
        assert!(text_claim("Your PayPal account", "", Some("paypal.com"), &links, 0).is_none());
    }

    #[test]
    fn brand_names_in_bought_domains() {
        assert_eq!(domain_claim("ups-file.com").map(|b| b.name), Some("UPS"));
        assert_eq!(
            domain_claim("login.micr0soft-support.net").map(|b| b.name),
            Some("Microsoft")
        );
        assert!(domain_claim("paypal.com").is_none());
        assert!(domain_claim("paypal-communication.com").is_none());
        assert!(domain_claim("groups-ups.example").is_some());
        assert!(domain_claim("upstream-news.example").is_none());
    }

    #[test]
    fn the_tenant_name_is_claimed_from_outside_only() {
        let domains = vec!["contoso.com".to_string()];
        assert_eq!(
            tenant_name_claim("Contoso IT Helpdesk", Some("evil.example"), &domains).as_deref(),
            Some("contoso")
        );
        assert!(tenant_name_claim("Contoso IT Helpdesk", Some("contoso.com"), &domains).is_none());
        assert!(tenant_name_claim("Jane Doe", Some("evil.example"), &domains).is_none());
    }
}
