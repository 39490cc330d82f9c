//! Each rule catches its trick on a real-looking message, and stays quiet on
//! the legitimate messages that resemble it.

use super::*;
use crate::checks::test_support;

macro_rules! fixture {
    ($name:literal) => {
        include_bytes!(concat!("../../../tests/fixtures/impersonation/", $name))
    };
}

const OPTIONS: &str = r#"protected_names = ["Jane Doe", "Pedro Álvarez"]"#;

/// Runs the check for a tenant owning `domains`.
fn scan_for(domains: &[&str], options: &str, raw: &[u8], mail_from: &str, direction: Direction) -> Vec<Finding> {
    let check = test_support::build("impersonation", options);
    let tenant = Tenant {
        domains: domains.iter().map(|d| d.to_string()).collect(),
        ..test_support::tenant()
    };
    test_support::scan_as(&*check, &tenant, raw, mail_from, direction)
}

/// Runs the check for the test tenant (contoso.com, contoso.onmicrosoft.com).
fn scan(raw: &[u8], mail_from: &str, direction: Direction) -> Vec<Finding> {
    scan_for(
        &["contoso.com", "contoso.onmicrosoft.com"],
        OPTIONS,
        raw,
        mail_from,
        direction,
    )
}

fn inbound(raw: &[u8]) -> Vec<Finding> {
    scan(raw, "bounce@sender.example", Direction::Inbound)
}

fn tags(findings: &[Finding]) -> Vec<&str> {
    findings.iter().map(|f| f.tag.as_str()).collect()
}

fn only<'a>(findings: &'a [Finding], tag: &str) -> &'a Finding {
    assert_eq!(tags(findings), vec![tag], "{findings:#?}");
    &findings[0]
}

#[test]
fn display_name_carrying_another_domains_address_is_caught() {
    let findings = inbound(fixture!("display_name_address.eml"));
    let f = only(&findings, "display-name-address");
    assert_eq!(f.score, 4.0);
    assert!(f.reason.contains("ceo@contoso.com"), "{}", f.reason);
    assert!(f.reason.contains("ceo.office@mailer-evil.example"), "{}", f.reason);

    let findings = inbound(fixture!("display_name_address_encoded.eml"));
    assert!(
        only(&findings, "display-name-address")
            .reason
            .contains("payroll@contoso.com")
    );
}

#[test]
fn display_name_address_of_the_same_organisation_or_a_list_rewrite_is_not_flagged() {
    assert_eq!(inbound(fixture!("clean_same_org_display.eml")), vec![]);
    assert_eq!(inbound(fixture!("clean_list_rewrite.eml")), vec![]);
}

#[test]
fn look_alike_from_domains_are_caught() {
    let findings = inbound(fixture!("lookalike_punycode.eml"));
    let f = only(&findings, "lookalike-domain");
    assert_eq!(f.score, 6.0);
    assert!(f.reason.contains("xn--cntoso-wqf.com (cоntoso.com)"), "{}", f.reason);
    assert!(f.reason.contains("contoso.com (look-alike characters)"), "{}", f.reason);

    let findings = inbound(fixture!("lookalike_typo.eml"));
    assert!(
        only(&findings, "lookalike-domain")
            .reason
            .contains("one typing edit away")
    );
}

#[test]
fn a_look_alike_reply_to_is_caught_too() {
    let findings = inbound(fixture!("lookalike_reply_to.eml"));
    assert_eq!(tags(&findings), vec!["lookalike-domain", "reply-to-mismatch"]);
    assert!(
        findings[0].reason.starts_with("Reply-To domain c0ntoso.com"),
        "{}",
        findings[0].reason
    );
}

#[test]
fn a_cousin_domain_is_flagged_unless_the_tenant_owns_it() {
    let raw = fixture!("cousin_domain.eml");
    let findings = scan_for(
        &["contoso.com"],
        OPTIONS,
        raw,
        "sales@contoso.co.uk",
        Direction::Inbound,
    );
    assert!(only(&findings, "lookalike-domain").reason.contains("another suffix"));
    // The same mail between the two domains of a tenant that owns both.
    let both = ["contoso.com", "contoso.co.uk"];
    assert_eq!(
        scan_for(&both, OPTIONS, raw, "sales@contoso.co.uk", Direction::Internal),
        vec![]
    );
}

#[test]
fn the_tenants_own_subdomains_and_legitimate_idns_are_not_look_alikes() {
    assert_eq!(inbound(fixture!("clean_tenant_subdomain.eml")), vec![]);
    assert_eq!(inbound(fixture!("clean_idn.eml")), vec![]);
}

#[test]
fn an_external_sender_using_a_protected_name_is_caught_in_any_written_form() {
    let findings = inbound(fixture!("protected_name.eml"));
    let f = only(&findings, "protected-name");
    assert_eq!(f.score, 5.0);
    assert!(f.reason.contains("Jane Doe"), "{}", f.reason);
    assert!(f.reason.contains("jane.doe.office@gmail.com"), "{}", f.reason);
    // "DOE,  Jáne" from outlook.com.
    let findings = inbound(fixture!("protected_name_reversed.eml"));
    assert!(only(&findings, "protected-name").reason.contains("DOE,  Jáne"));
}

#[test]
fn protected_names_are_not_flagged_internally_or_when_only_the_surname_matches() {
    assert_eq!(
        scan(
            fixture!("clean_internal.eml"),
            "jane.doe@contoso.com",
            Direction::Internal
        ),
        vec![]
    );
    // The same message arriving inbound from a tenant domain is a spoof, not a
    // name impersonation.
    let findings = inbound(fixture!("clean_internal.eml"));
    assert_eq!(tags(&findings), vec!["tenant-domain-spoof"]);
    assert_eq!(inbound(fixture!("clean_surname_only.eml")), vec![]);
}

#[test]
fn protected_name_matching_is_by_whole_name() {
    let person = name_words("Jane Doe");
    let matches = |display: &str| same_person(&name_words(display), &person);
    for same in [
        "Jane Doe",
        "jane  doe",
        "DOE, Jane",
        "Jáne Döe",
        "Jаne Doe",
        " Jane\tDoe ",
    ] {
        assert!(matches(same), "{same}");
    }
    for other in [
        "John Doe",
        "Janet Doe",
        "Jane Doe-Smith",
        "Doe",
        "Jane",
        "Doe Industries",
        "Jane Q. Doe",
    ] {
        assert!(!matches(other), "{other}");
    }
}

#[test]
fn reply_to_another_organisation_is_low_and_a_free_mail_reply_to_higher() {
    let findings = inbound(fixture!("reply_to_mismatch.eml"));
    let f = only(&findings, "reply-to-mismatch");
    assert_eq!(f.score, 1.0);
    assert!(f.reason.contains("tailspin.example"), "{}", f.reason);

    let findings = inbound(fixture!("reply_to_freemail.eml"));
    let f = only(&findings, "reply-to-freemail");
    assert_eq!(f.score, 3.0);
    assert!(f.reason.contains("gmail.com"), "{}", f.reason);
}

#[test]
fn reply_to_within_the_organisation_or_its_mailing_list_is_not_flagged() {
    assert_eq!(inbound(fixture!("clean_mailing_list_same_domain.eml")), vec![]);
    assert_eq!(inbound(fixture!("clean_mailing_list_poster.eml")), vec![]);
}

#[test]
fn reply_to_rules_only_apply_to_inbound_mail() {
    let raw = fixture!("reply_to_freemail.eml");
    assert_eq!(scan(raw, "billing@northwind.example", Direction::Internal), vec![]);
}

#[test]
fn inbound_mail_from_a_tenant_domain_is_a_spoof_but_not_exos_validation_probe() {
    let findings = inbound(fixture!("tenant_spoof.eml"));
    let f = only(&findings, "tenant-domain-spoof");
    assert_eq!(f.score, 4.0);
    assert!(f.reason.contains("helpdesk@contoso.com"), "{}", f.reason);

    assert_eq!(scan(fixture!("clean_exo_probe.eml"), "", Direction::Inbound), vec![]);
    // The same From with a real envelope sender is not the probe.
    let findings = inbound(fixture!("clean_exo_probe.eml"));
    assert_eq!(tags(&findings), vec!["tenant-domain-spoof"]);
}

#[test]
fn scores_are_configurable_and_zero_disables_a_rule() {
    let options = r#"
        score_display_name_address = 7.5
        score_tenant_domain_spoof = 0
    "#;
    let both = ["contoso.com", "contoso.onmicrosoft.com"];
    let raw = fixture!("display_name_address.eml");
    let findings = scan_for(&both, options, raw, "x@mailer-evil.example", Direction::Inbound);
    assert_eq!(only(&findings, "display-name-address").score, 7.5);
    let raw = fixture!("tenant_spoof.eml");
    assert_eq!(
        scan_for(&both, options, raw, "x@evil.example", Direction::Inbound),
        vec![]
    );
}

#[test]
fn trusted_senders_and_ignored_look_alikes_are_exempt() {
    let both = ["contoso.com", "contoso.onmicrosoft.com"];
    let options = r#"
        protected_names = ["Jane Doe"]
        trusted_senders = ["jane.doe.office@gmail.com", "contosso.com"]
    "#;
    let raw = fixture!("protected_name.eml");
    assert_eq!(scan_for(&both, options, raw, "x@gmail.com", Direction::Inbound), vec![]);
    let raw = fixture!("lookalike_typo.eml");
    assert_eq!(
        scan_for(&both, options, raw, "x@contosso.com", Direction::Inbound),
        vec![]
    );
    let options = r#"lookalike_ignore = ["contosso.com"]"#;
    assert_eq!(
        scan_for(&both, options, raw, "x@contosso.com", Direction::Inbound),
        vec![]
    );
}

#[test]
fn bad_options_are_reported_with_their_path() {
    let errors = test_support::build_errors(
        "impersonation",
        r#"
            protected_names = ["Jane Doe", "  ,  "]
            freemail_domains = ["gmail.com", "https://evil"]
            trusted_senders = ["@nowhere"]
            score_reply_to_mismatch = "high"
            protected_name = ["typo"]
        "#,
    );
    assert_eq!(
        errors,
        vec![
            "freemail_domains[1]: expected a domain such as \"example.com\", found \"https://evil\"",
            "protected_name: unknown key",
            "protected_names[1]: expected a person's name such as \"Jane Doe\", found \"  ,  \"",
            "score_reply_to_mismatch: expected a number, found a string",
            "trusted_senders[0]: expected an address or a domain, found \"@nowhere\"",
        ]
    );
}
