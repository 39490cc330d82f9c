//! Addresses as the downstream receives them: a corpus of quoted, escaped and
//! UTF-8 mailboxes is sent through the gateway to a real Postfix that keeps
//! what it accepts in its queue, and the envelope Postfix queued (read with
//! `postqueue -j`) must be exactly the one the gateway admitted, in queue
//! mode and in proxy mode. The attacker's aim in the corpus is to make a
//! quoted local part (admitted for the tenant's domain) come out downstream
//! as another recipient (`victim@evil.com`) or as extra parameters.

mod support;

use std::time::Duration;

use support::gateway::{Gateway, Options};
use support::postfix::Queued;
use support::smtp::Client;
use support::stack::Stack;

/// (MAIL FROM path, RCPT TO path, SMTPUTF8) as the client writes them.
const CORPUS: &[(&str, &str, bool)] = &[
    (
        "sender@example.org",
        r#""victim@evil.com> ORCPT=rfc822;x"@contoso.com"#,
        false,
    ),
    (
        "sender@example.org",
        r#""victim@evil.com> NOTIFY=NEVER"@contoso.com"#,
        false,
    ),
    ("sender@example.org", r#""victim@evil.com>"@contoso.com"#, false),
    ("sender@example.org", r#""victim@evil.com"@contoso.com"#, false),
    (
        r#""attacker> RET=FULL ENVID=forged"@example.org"#,
        "alice@contoso.com",
        false,
    ),
    ("sender@example.org", r#""john doe"@contoso.com"#, false),
    ("sender@example.org", r#""a\"b"@contoso.com"#, false),
    ("sender@example.org", r#""a\\b"@contoso.com"#, false),
    ("sender@example.org", r#""a..b"@contoso.com"#, false),
    ("sender@example.org", r#""needless"@contoso.com"#, false),
    ("sender@example.org", "plain.dot+tag@contoso.com", false),
    ("s\u{e9}nder@example.org", "j\u{f6}rg@contoso.com", true),
    ("sender@example.org", "\"j\u{f6}rg m\u{fc}ller\"@contoso.com", true),
];

/// The address as `postqueue -j` shows it (Postfix's external form): the
/// local part decoded, then quoted again only when it is not a dot-atom
/// (RFC 5321 §4.1.2), with `\` before `"` and `\`. Computed here from the
/// client's text, independently of the gateway's code.
fn postfix_form(path: &str) -> String {
    let (local, domain) = match path.strip_prefix('"') {
        Some(q) => {
            let end = q.rfind("\"@").unwrap();
            let mut out = String::new();
            let mut chars = q[..end].chars();
            while let Some(c) = chars.next() {
                out.push(if c == '\\' { chars.next().unwrap() } else { c });
            }
            (out, &q[end + 2..])
        }
        None => {
            let (l, d) = path.rsplit_once('@').unwrap();
            (l.to_string(), d)
        }
    };
    let atext = |c: char| c.is_alphanumeric() || "!#$%&'*+-/=?^_`{|}~".contains(c);
    let dot_atom = local.split('.').all(|a| !a.is_empty() && a.chars().all(atext));
    if dot_atom {
        format!("{local}@{domain}")
    } else {
        let escaped = local.replace('\\', "\\\\").replace('"', "\\\"");
        format!("\"{escaped}\"@{domain}")
    }
}

/// Sends the corpus, one transaction each. Returns the envelopes the gateway
/// admitted, and every reply other than the expected one (each is a failure).
fn send_corpus(gw: &Gateway, s: &Stack) -> (Vec<Queued>, Vec<String>) {
    let mut accepted = Vec::new();
    let mut refused = Vec::new();
    for (i, (from, to, utf8)) in CORPUS.iter().enumerate() {
        let mut c = Client::connect_tls(gw.smtp, &s.pki.ca, None);
        let mail = c.cmd(&format!("MAIL FROM:<{from}>{}", if *utf8 { " SMTPUTF8" } else { "" }));
        let rcpt = c.cmd(&format!("RCPT TO:<{to}>"));
        if mail.code != 250 || rcpt.code != 250 {
            refused.push(format!("<{from}> -> <{to}>: MAIL {mail}, RCPT {rcpt}"));
            continue;
        }
        assert_eq!(c.cmd("DATA").code, 354);
        c.send(
            format!(
                "From: <sender@example.org>\r\nTo: <alice@contoso.com>\r\nSubject: corpus {i}\r\n\
                 Message-ID: <corpus{i}@example.org>\r\n\r\nhello\r\n.\r\n"
            )
            .as_bytes(),
        );
        let done = c.read_reply();
        if done.code != 250 {
            refused.push(format!("<{from}> -> <{to}>: end of data {done}"));
            continue;
        }
        let _ = c.cmd("QUIT");
        accepted.push(Queued {
            sender: postfix_form(from),
            recipients: vec![postfix_form(to)],
        });
    }
    accepted.sort();
    (accepted, refused)
}

fn check(mode: &'static str) {
    let s = Stack::keeping();
    let gw = s.gateway(Options {
        mode,
        ..Options::default()
    });
    let (expected, refused) = send_corpus(&gw, &s);
    // Queue mode relays in the background: wait until Postfix holds them all.
    let queued = support::wait_for(Duration::from_secs(60), || {
        let q = s.downstream.queued();
        (q.len() >= expected.len()).then_some(q)
    })
    .unwrap_or_else(|| s.downstream.queued());
    let victims: Vec<&Queued> = queued
        .iter()
        .filter(|q| q.recipients.iter().any(|r| r.eq_ignore_ascii_case("victim@evil.com")))
        .collect();
    assert!(
        victims.is_empty(),
        "{mode}: an injected recipient reached the downstream's queue: {victims:?}\ngateway log:\n{}",
        gw.log()
    );
    assert!(
        refused.is_empty(),
        "{mode}: every corpus address is admitted for contoso.com: {refused:#?}"
    );
    assert_eq!(
        queued,
        expected,
        "{mode}: the envelopes Postfix queued differ from the admitted ones\npostfix log:\n{}",
        s.downstream.maillog()
    );
}

#[test]
fn queue_mode_relays_every_address_exactly_as_admitted() {
    check("queue");
}

#[test]
fn proxy_mode_relays_every_address_exactly_as_admitted() {
    check("proxy");
}
