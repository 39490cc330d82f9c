//! Each rule catches its trick on a real-looking message and stays quiet on
//! the legitimate messages that resemble it; how links are read is
//! the view's (`scan::view`), tested there.

use super::*;
use crate::checks::test_support;
use crate::config::tenant::Tenant;
use crate::message::envelope::Direction;

macro_rules! fixture {
    ($name:literal) => {
        include_bytes!(concat!("../../../tests/fixtures/urls/", $name))
    };
}

const OPTIONS: &str = r#"blocklist = ["evil-payments.example", "bad.example"]"#;

/// Runs the check for a tenant owning `domains`.
fn scan_for(domains: &[&str], options: &str, raw: &[u8]) -> Vec<Finding> {
    let check = test_support::build("urls", options);
    let tenant = Tenant {
        domains: domains.iter().map(|d| d.to_string()).collect(),
        ..test_support::tenant()
    };
    test_support::scan_as(&*check, &tenant, raw, "bounce@sender.example", Direction::Inbound)
}

fn scan(raw: &[u8]) -> Vec<Finding> {
    scan_for(&["contoso.com", "contoso.onmicrosoft.com"], OPTIONS, raw)
}

fn tags(findings: &[Finding]) -> Vec<&str> {
    findings.iter().map(|f| f.tag.as_str()).collect()
}

fn only<'a>(findings: &'a [Finding], tag: &str) -> &'a Finding {
    assert_eq!(tags(findings), vec![tag], "{findings:#?}");
    &findings[0]
}

#[test]
fn a_blocklisted_domain_is_caught_with_its_subdomains() {
    let findings = scan(fixture!("blocklisted.eml"));
    let f = only(&findings, "blocklisted-url");
    assert_eq!(f.score, 10.0);
    assert_eq!(
        f.reason,
        "link to blocklisted domain evil-payments.example: http://login.evil-payments.example/session?id=55120"
    );
}

#[test]
fn the_blocklist_matches_whole_labels_only() {
    let raw = b"Content-Type: text/plain\n\nhttps://notbad.example/ https://bad.example.org/ https://bad.example.\n";
    assert_eq!(scan(raw).len(), 1, "only the last host is bad.example");
    let raw = b"Content-Type: text/plain\n\nhttps://notbad.example/ https://bad.example.org/\n";
    assert_eq!(scan(raw), vec![]);
}

#[test]
fn a_phishing_html_attachment_is_read_too() {
    // The form target and the meta refresh both point to the blocklisted host.
    let findings = scan(fixture!("html_attachment.eml"));
    let f = only(&findings, "blocklisted-url");
    assert!(f.reason.ends_with("(and 1 more)"), "{}", f.reason);
}

#[test]
fn ip_literal_hosts_are_caught_and_encoded_ones_score_higher() {
    let findings = scan(fixture!("ip_literal.eml"));
    let f = only(&findings, "ip-url");
    assert_eq!(f.score, 3.0);
    assert!(f.reason.contains("http://198.51.100.23/owa/login.php"), "{}", f.reason);

    // The text part writes it in hex, its HTML twin as one decimal number:
    // one target, one count.
    let findings = scan(fixture!("encoded_ip.eml"));
    let f = only(&findings, "encoded-ip-url");
    assert_eq!(f.score, 6.0);
    assert_eq!(
        f.reason,
        "link to IP address 192.168.1.1 written as \"0xC0A80101\": http://192.168.1.1/doc/view"
    );
    let decimal = scan(b"Content-Type: text/html\n\n<a href=http://3232235777/x>Open</a>");
    assert!(
        only(&decimal, "encoded-ip-url")
            .reason
            .contains("written as \"3232235777\"")
    );
}

#[test]
fn link_text_showing_another_domain_than_the_target_is_caught() {
    let findings = scan(fixture!("text_mismatch.eml"));
    let f = only(&findings, "link-text-mismatch");
    assert_eq!(f.score, 3.0);
    assert_eq!(
        f.reason,
        "link text shows www.contoso.com but the link goes to secure-login.evil.example: \
         https://secure-login.evil.example/contoso/account?ref=1029&lang=en"
    );
}

#[test]
fn safe_links_are_unwrapped_before_judging() {
    let findings = scan(fixture!("safelinks_mismatch.eml"));
    let f = only(&findings, "link-text-mismatch");
    assert!(f.reason.contains("goes to payslip-view.evil.example"), "{}", f.reason);
}

#[test]
fn look_alike_hosts_of_tenant_domains_are_caught() {
    let findings = scan(fixture!("lookalike_url.eml"));
    let f = only(&findings, "lookalike-url");
    assert_eq!(f.score, 6.0);
    // The logo host embeds contoso.com; the sign-in link uses a Cyrillic о.
    assert!(f.reason.contains("contoso.com.cdn-secure.example"), "{}", f.reason);
    assert!(f.reason.ends_with("(and 1 more)"), "{}", f.reason);
    let only_punycode = scan(
        br#"Content-Type: text/html

<a href='https://xn--cntoso-wqf.com/sso/login'>Sign in</a>"#,
    );
    assert!(
        only(&only_punycode, "lookalike-url")
            .reason
            .contains("xn--cntoso-wqf.com (cоntoso.com)")
    );
}

#[test]
fn a_user_name_in_front_of_the_real_host_is_caught() {
    let findings = scan(fixture!("userinfo.eml"));
    let f = only(&findings, "userinfo-url");
    assert!(f.reason.contains("user name \"contoso.com\""), "{}", f.reason);
    // The same link in the text part and its HTML twin counts once.
    let twin = b"Content-Type: multipart/alternative; boundary=b\n\n--b\nContent-Type: text/plain\n\n\
                 https://contoso.com@evil.example/x\n--b\nContent-Type: text/html\n\n\
                 <a href=\"https://contoso.com@evil.example/x\">Open</a>\n--b--\n";
    assert!(!only(&scan(twin), "userinfo-url").reason.contains("more"));
}

#[test]
fn a_newsletter_with_tracking_links_under_plain_words_is_clean() {
    assert_eq!(scan(fixture!("clean_newsletter.eml")), vec![]);
}

#[test]
fn the_tenants_own_links_subdomains_and_sharepoint_are_clean() {
    assert_eq!(scan(fixture!("clean_tenant_links.eml")), vec![]);
}

#[test]
fn links_between_two_domains_of_one_tenant_are_clean() {
    let raw = fixture!("co_uk_links.eml");
    assert_eq!(scan_for(&["contoso.com", "contoso.co.uk"], OPTIONS, raw), vec![]);
    // For a tenant that owns only contoso.com the text shows a foreign domain.
    let findings = scan_for(&["contoso.com"], OPTIONS, raw);
    assert!(
        only(&findings, "link-text-mismatch")
            .reason
            .contains("shows contoso.co.uk")
    );
}

#[test]
fn legitimate_idn_links_are_clean() {
    assert_eq!(scan(fixture!("clean_idn_links.eml")), vec![]);
}

#[test]
fn file_names_and_versions_in_link_text_are_not_domains() {
    assert_eq!(scan(fixture!("clean_developer.eml")), vec![]);
    for text in [
        "README.md",
        "v2.0.1",
        "src/main.rs",
        "Read more",
        "setup.py",
        "jane@contoso.com",
        "",
    ] {
        assert_eq!(text_host(text), None, "{text}");
    }
    assert_eq!(text_host("contoso.com/careers").as_deref(), Some("contoso.com"));
    assert_eq!(
        text_host("https://www.Contoso.com/x.").as_deref(),
        Some("www.contoso.com")
    );
    assert_eq!(text_host("WWW.EXAMPLE.ORG").as_deref(), Some("www.example.org"));
}

#[test]
fn scores_are_configurable_and_zero_disables_a_rule() {
    let both = ["contoso.com"];
    let findings = scan_for(&both, "score_ip_host = 0.5", fixture!("ip_literal.eml"));
    assert_eq!(only(&findings, "ip-url").score, 0.5);
    let findings = scan_for(&both, "score_userinfo = 0", fixture!("userinfo.eml"));
    assert_eq!(findings, vec![]);
}

#[test]
fn bad_options_are_reported_with_their_path() {
    let errors = test_support::build_errors(
        "urls",
        r#"
            max_urls = 0
            blocklist = ["ok.example", "http://evil.example/", 3]
            score_lookalike = "high"
            block_list = []
        "#,
    );
    assert_eq!(
        errors,
        vec![
            "block_list: unknown key",
            "blocklist[1]: expected a domain such as \"example.com\", found \"http://evil.example/\"",
            "blocklist[2]: expected a string, found a whole number",
            "max_urls: must be between 1 and 100000, found 0",
            "score_lookalike: expected a number, found a string",
        ]
    );
}

#[test]
fn the_number_of_links_is_bounded_by_max_urls() {
    let mut html = String::new();
    for i in 0..50 {
        html.push_str(&format!("<a href=\"http://198.51.100.{i}/\">x</a>\n"));
    }
    let raw = format!("Content-Type: text/html\n\n<a href=\"https://ok.example/\">ok</a>{html}");
    let findings = scan_for(&["contoso.com"], "max_urls = 1", raw.as_bytes());
    assert_eq!(findings, vec![], "only the first link was looked at");
}

#[test]
fn encoded_ipv4_forms_are_told_apart_from_the_usual_one() {
    let ip = |text: &str| match parse_link(text, text).and_then(|(u, w)| u.host().map(|h| (h.to_owned(), w))) {
        Some((Host::Ipv4(ip), written)) => is_encoded_ipv4(&written, &ip),
        other => panic!("{text}: {other:?}"),
    };
    assert!(!ip("http://192.168.1.1/"));
    assert!(!ip("http://user@192.168.1.1:8080/x"));
    assert!(ip("http://3232235777/"));
    assert!(ip("http://0xC0A80101/"));
    assert!(ip("http://0300.0250.1.1/"));
    assert!(ip("http://192.168.257/"));
}

/// Regression: a relative link starting with a multi-byte character made
/// `hosts` (the `dnsbl` check's and the `phishing` check's link hosts) slice
/// inside a character and panic (found on SpamAssassin spam_2, before the
/// message view replaced that code).
#[test]
fn hosts_of_links_starting_with_multibyte_characters() {
    let raw = "From: a@example.org\r\nTo: b@contoso.com\r\nSubject: x\r\nMIME-Version: 1.0\r\n\
Content-Type: text/html; charset=utf-8\r\n\r\n<link rel=File-List href=\"./\u{5ee3}\u{544a}\u{4fe1}.files/filelist.xml\">\
<a href=\"http://www.example.net/\">x</a>\r\n";
    let message = mail_parser::MessageParser::default().parse(raw.as_bytes()).unwrap();
    let view = View::new(&message, false);
    assert_eq!(hosts(&view, 100), vec!["www.example.net".to_string()]);
}

/// A link drawn as a QR code in an attached image (fixture made with segno:
/// `segno.make(URL, error='m').save('qr_link.png', scale=5, border=4)`).
#[test]
fn a_qr_code_in_an_image_is_a_link() {
    use base64::Engine;
    let png = base64::engine::general_purpose::STANDARD.encode(fixture!("qr_link.png"));
    let raw = format!(
        "From: a@example.org\r\nTo: anna@contoso.com\r\nSubject: MFA\r\nMIME-Version: 1.0\r\n\
Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nScan the code.\r\n\
--b\r\nContent-Type: image/png; name=code.png\r\nContent-Disposition: inline; filename=code.png\r\n\
Content-Transfer-Encoding: base64\r\n\r\n{png}\r\n--b--\r\n"
    );
    let found = scan(raw.as_bytes());
    let f = only(&found, "qr-url");
    assert!(
        f.reason.contains("https://login.contoso-verify.example/auth?u=anna"),
        "{f:?}"
    );
}

/// Links of a calendar invitation are read with their folded lines joined,
/// so the real host after a user name is judged.
#[test]
fn an_invitation_carries_its_links() {
    let raw = "From: a@example.org\r\nTo: anna@contoso.com\r\nSubject: Meeting\r\nMIME-Version: 1.0\r\n\
Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nSee the invitation.\r\n\
--b\r\nContent-Type: text/calendar; method=REQUEST; name=invite.ics\r\n\r\nBEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\n\
DESCRIPTION:Join: https://outlook.com@meet-n\r\n ow.example/j\\nID 1\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n--b--\r\n";
    let found = scan(raw.as_bytes());
    let f = only(&found, "userinfo-url");
    assert!(f.reason.contains("https://outlook.com@meet-now.example/j"), "{f:?}");
}

/// A plain picture (no code) is no link: a message carrying one has no
/// `qr-url`, while the fixture's code is read.
#[test]
fn images_without_codes_are_nothing() {
    assert!(crate::scan::qr::decode(fixture!("qr_link.png")).len() == 1);
    assert!(crate::scan::qr::decode(b"\x89PNG\r\n\x1a\nnot really").is_empty());
    // A real picture: a grey gradient with a dark block, no finder patterns.
    let picture = image::RgbImage::from_fn(120, 80, |x, y| {
        if (30..60).contains(&x) && (20..50).contains(&y) {
            image::Rgb([20, 20, 20])
        } else {
            image::Rgb([(x * 2) as u8, (y * 3) as u8, 200])
        }
    });
    let mut png = std::io::Cursor::new(Vec::new());
    image::DynamicImage::ImageRgb8(picture)
        .write_to(&mut png, image::ImageFormat::Png)
        .unwrap();
    let png = png.into_inner();
    assert!(crate::scan::qr::decode(&png).is_empty());
    use base64::Engine;
    let raw = format!(
        "From: a@example.org\r\nTo: anna@contoso.com\r\nSubject: Photos\r\nMIME-Version: 1.0\r\n\
Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nThe photo from Friday.\r\n\
--b\r\nContent-Type: image/png; name=photo.png\r\nContent-Disposition: attachment; filename=photo.png\r\n\
Content-Transfer-Encoding: base64\r\n\r\n{}\r\n--b--\r\n",
        base64::engine::general_purpose::STANDARD.encode(&png)
    );
    let found = scan(raw.as_bytes());
    assert!(found.is_empty(), "{found:#?}");
}

/// An HTML message with one anchor to `href`.
fn link_mail(href: &str) -> Vec<u8> {
    format!(
        "From: a@example.org\r\nTo: anna@contoso.com\r\nSubject: x\r\nMIME-Version: 1.0\r\n\
Content-Type: text/html; charset=utf-8\r\n\r\n<p><a href=\"{href}\">Open</a></p>\r\n"
    )
    .into_bytes()
}

/// A host imitating a well-known brand's domain is caught; the brand's own
/// domains are not, and neither is one typing edit from a short brand name
/// (such names are often words or parodies of their own).
#[test]
fn a_host_imitating_a_brand_is_caught_and_the_brands_own_are_not() {
    let found = scan(&link_mail("https://login.rnicrosoft.com/common/oauth2"));
    let f = only(&found, "lookalike-brand-url");
    assert_eq!(f.score, 5.0);
    assert!(f.reason.contains("looks like microsoft.com"), "{f:?}");
    let found = scan(&link_mail("https://microsoft.com.account-review.example/"));
    let f = only(&found, "lookalike-brand-url");
    assert!(f.reason.contains("embedded in another domain"), "{f:?}");
    for own in [
        "https://login.microsoftonline.com/common",
        "https://www.microsoft.com/",
        "https://contoso.sharepoint.com/sites/x",
    ] {
        let found = scan(&link_mail(own));
        assert!(found.is_empty(), "{own}: {found:#?}");
    }
    let found = scan(&link_mail("https://dropbax.com/s/1"));
    assert!(found.is_empty(), "{found:#?}");
    let found = scan_for(
        &["contoso.com"],
        "score_lookalike_brand = 0",
        &link_mail("https://login.rnicrosoft.com/"),
    );
    assert!(found.is_empty(), "a score of 0 disables the rule: {found:#?}");
}

/// The tenant's address in a link's fragment (written or percent-encoded) is
/// a page that fills in its sign-in form; another organisation's address, or
/// the tenant's in the query (which a server sees, as tracking does), is not.
#[test]
fn the_tenants_address_in_a_links_fragment() {
    let found = scan(&link_mail("https://docs-share.example/view#anna@contoso.com"));
    let f = only(&found, "address-in-fragment");
    assert_eq!(f.score, 2.0);
    assert!(f.reason.contains("anna@contoso.com"), "{f:?}");
    let found = scan(&link_mail("https://docs-share.example/view#u=anna%40contoso.com"));
    only(&found, "address-in-fragment");
    for innocent in [
        "https://docs-share.example/view#bob@example.org",
        "https://docs-share.example/view?u=anna@contoso.com",
        "https://docs-share.example/view#section-2",
    ] {
        let found = scan(&link_mail(innocent));
        assert!(found.is_empty(), "{innocent}: {found:#?}");
    }
}
