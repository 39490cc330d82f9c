//! Each admission layer refuses what it must (DESIGN §4): the client IP, TLS
//! before MAIL, the client certificate name, the tenant of every recipient
//! (the open-relay case), and the tenant headers at end of data.

mod support;

use std::time::Duration;

use support::gateway::{Gateway, Options, config_text};
use support::pki::Pki;
use support::smtp::Client;

struct Setup {
    _dir: tempfile::TempDir,
    pki: Pki,
    gw: Gateway,
}

const TENANT_ID: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";

fn setup(opts: Options) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(&dir.path().join("pki"));
    let server = pki.leaf("gateway", &["localhost", "127.0.0.1"]);
    // The downstream is never reached here: admission tests stop before delivery.
    let gw = Gateway::start_with_text(dir.path(), &config_text(dir.path(), &pki, &server, &opts));
    Setup { _dir: dir, pki, gw }
}

fn message(extra_headers: &str) -> Vec<u8> {
    support::crlf(&format!(
        "{extra_headers}From: a@example.org\nTo: u@contoso.com\nSubject: hello\nMessage-ID: <m@example.org>\n\nhi\n"
    ))
}

#[test]
fn a_client_outside_the_allow_list_is_refused_at_the_greeting() {
    let s = setup(Options {
        allow: vec!["40.92.0.0/15".into()],
        ..Options::default()
    });
    let (mut c, greeting) = Client::connect(s.gw.smtp);
    assert_eq!(greeting.code, 554, "{greeting}");
    assert!(greeting.text().starts_with("5.7.1"), "{greeting}");
    assert!(c.is_closed());
    assert!(s.gw.wait_log("client address not in admission.allow", Duration::from_secs(5)));
}

#[test]
fn mail_before_starttls_is_refused() {
    let s = setup(Options::default());
    let (mut c, _) = Client::connect(s.gw.smtp);
    assert_eq!(c.cmd("EHLO client.test").code, 250);
    let r = c.cmd("MAIL FROM:<a@example.org>");
    assert_eq!(r.code, 530, "{r}");
    assert!(r.text().starts_with("5.7.0"));
    assert!(s.gw.wait_log("MAIL before STARTTLS", Duration::from_secs(5)));
}

#[test]
fn client_certificate_names_are_enforced_when_configured() {
    let s = setup(Options {
        client_cert_names: vec!["mail.protection.outlook.com".into()],
        ..Options::default()
    });
    let exo = s.pki.leaf("exo-client", &["mail.protection.outlook.com"]);
    let wrong = s.pki.leaf("wrong-client", &["relay.evil.example"]);
    let untrusted = s.pki.untrusted("untrusted-client", &["mail.protection.outlook.com"]);

    let mut c = Client::connect_tls(s.gw.smtp, &s.pki.ca, Some(&exo));
    assert_eq!(c.cmd("MAIL FROM:<a@example.org>").code, 250, "EXO's name is accepted");

    let mut c = Client::connect_tls(s.gw.smtp, &s.pki.ca, Some(&wrong));
    let r = c.cmd("MAIL FROM:<a@example.org>");
    assert_eq!((r.code, r.text().starts_with("5.7.1")), (550, true), "{r}");

    let mut c = Client::connect_tls(s.gw.smtp, &s.pki.ca, None);
    assert_eq!(c.cmd("MAIL FROM:<a@example.org>").code, 550, "no certificate at all");

    // A certificate from an untrusted issuer fails the handshake itself.
    let (mut c, _) = Client::connect(s.gw.smtp);
    c.cmd("EHLO client.test");
    c.cmd("STARTTLS");
    c.upgrade(&s.pki.ca, Some(&untrusted));
    assert_eq!(
        c.try_cmd("EHLO client.test"),
        None,
        "an untrusted client certificate must fail the handshake"
    );
    assert!(s.gw.wait_log("match none of tls.client_cert_names", Duration::from_secs(5)));
}

#[test]
fn a_recipient_of_no_tenant_is_refused_never_relayed() {
    let s = setup(Options::default());
    let mut c = Client::connect_tls(s.gw.smtp, &s.pki.ca, None);
    assert_eq!(c.cmd("MAIL FROM:<a@example.org>").code, 250);
    let r = c.cmd("RCPT TO:<victim@elsewhere.example>");
    assert_eq!((r.code, r.text().starts_with("5.7.1")), (550, true), "{r}");
    // Lookalike domains are not a tenant's either.
    assert_eq!(c.cmd("RCPT TO:<x@contoso.com.evil.example>").code, 550);
    assert_eq!(c.cmd("RCPT TO:<x@sub.contoso.com>").code, 550);
    assert_eq!(c.cmd("DATA").code, 503, "no valid recipients");
    // The null sender cannot relay either.
    assert_eq!(c.cmd("RSET").code, 250);
    assert_eq!(c.cmd("MAIL FROM:<>").code, 250);
    assert_eq!(c.cmd("RCPT TO:<victim@elsewhere.example>").code, 550);
    assert!(s.gw.wait_log("relay attempt", Duration::from_secs(5)));
}

#[test]
fn outgoing_mail_is_admitted_by_its_tenant_sender() {
    let s = setup(Options::default());
    let mut c = Client::connect_tls(s.gw.smtp, &s.pki.ca, None);
    assert_eq!(c.cmd("MAIL FROM:<alice@contoso.com>").code, 250);
    assert_eq!(c.cmd("RCPT TO:<partner@elsewhere.example>").code, 250);
}

#[test]
fn a_second_tenant_in_one_transaction_is_deferred() {
    let s = setup(Options {
        extra: "[[tenant]]\nportal = \"fabrikam\"\ndomains = [\"fabrikam.com\"]\ndeliver_to = [\"127.0.0.1:9\"]\n"
            .into(),
        ..Options::default()
    });
    let mut c = Client::connect_tls(s.gw.smtp, &s.pki.ca, None);
    assert_eq!(c.cmd("MAIL FROM:<a@example.org>").code, 250);
    assert_eq!(c.cmd("RCPT TO:<u@contoso.com>").code, 250);
    let r = c.cmd("RCPT TO:<v@fabrikam.com>");
    assert_eq!((r.code, r.text().starts_with("4.5.3")), (452, true), "{r}");
    assert_eq!(
        c.cmd("RCPT TO:<w@contoso.com>").code,
        250,
        "the first tenant's recipients still fit"
    );
}

#[test]
fn tenant_headers_are_confirmed_at_end_of_data() {
    let s = setup(Options {
        tenant_id: TENANT_ID.into(),
        ..Options::default()
    });
    let send = |headers: &str| {
        let mut c = Client::connect_tls(s.gw.smtp, &s.pki.ca, None);
        c.send_data("a@example.org", &["u@contoso.com"], &message(headers))
    };
    let ok =
        format!("X-MS-Exchange-CrossTenant-Id: {TENANT_ID}\nX-CLOUD-SEC-AV-Info: contoso,office365_emails,inline\n");
    assert_eq!(send(&ok).code, 250, "the right tenant id and portal");

    let twice = format!("X-MS-Exchange-CrossTenant-Id: {TENANT_ID}\nX-MS-Exchange-CrossTenant-Id: {TENANT_ID}\n");
    let r = send(&twice);
    assert_eq!(
        (r.code, r.text().starts_with("5.7.1")),
        (550, true),
        "two tenant ids: {r}"
    );

    let wrong = "X-MS-Exchange-CrossTenant-Id: 00000000-1111-2222-3333-444444444444\n";
    assert_eq!(send(wrong).code, 550, "another tenant's id");
    assert_eq!(send("").code, 550, "no tenant id at all");

    let portal =
        format!("X-MS-Exchange-CrossTenant-Id: {TENANT_ID}\nX-CLOUD-SEC-AV-Info: fabrikam,office365_emails,inline\n");
    assert_eq!(send(&portal).code, 550, "another tenant's portal");

    let wait = Duration::from_secs(5);
    assert!(
        s.gw.wait_log("2 X-MS-Exchange-CrossTenant-Id headers", wait),
        "reason logged"
    );
    assert!(s.gw.wait_log("names portal \"fabrikam\"", wait), "reason logged");
}

#[test]
fn with_tls_not_required_a_plaintext_client_still_meets_the_tenant_layer() {
    let s = setup(Options {
        tls_require: false,
        ..Options::default()
    });
    let (mut c, _) = Client::connect(s.gw.smtp);
    assert_eq!(c.cmd("EHLO client.test").code, 250);
    assert_eq!(c.cmd("MAIL FROM:<a@example.org>").code, 250, "no TLS needed");
    assert_eq!(c.cmd("RCPT TO:<x@elsewhere.example>").code, 550, "still never a relay");
    assert_eq!(c.cmd("RCPT TO:<u@contoso.com>").code, 250);
}
