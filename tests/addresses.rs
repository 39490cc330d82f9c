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
    // Queue mode relays in the background. Read Postfix's queue only once the
    // gateway holds no message (each has its final result: nothing more will
    // be sent, neither a late copy nor a retry) and Postfix has filed what it
    // accepted, so an extra or a missing envelope shows in the comparison.
    let emptied = support::wait_for(Duration::from_secs(60), || {
        let (_, list, _) = gw.cli(&["queue", "list"]);
        (list.lines().last() == Some("0 message(s)")).then_some(())
    });
    assert!(
        emptied.is_some(),
        "{mode}: the gateway still holds messages after 60 s: {}\ngateway log:\n{}",
        gw.cli(&["queue", "list"]).1,
        gw.log()
    );
    let queued = s.downstream.settled_queue(Duration::from_secs(60)).unwrap_or_else(|| {
        panic!(
            "{mode}: Postfix's queue did not settle: {:?}\npostfix log:\n{}",
            s.downstream.queued(),
            s.downstream.maillog()
        )
    });
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

/// Replies to MAIL and RCPT lines with DSN and SIZE parameters (RFC 1870,
/// RFC 3461, RFC 6533), each in a fresh transaction.
#[test]
fn mail_and_rcpt_parameters_are_checked_strictly() {
    let s = Stack::keeping();
    let gw = s.gateway(Options::default());
    let mut c = Client::connect_tls(gw.smtp, &s.pki.ca, None);
    let mut wrong = Vec::new();
    let mut expect = |c: &mut Client, mail: &str, rcpt: Option<&str>, code: u16| {
        let m = c.cmd(mail);
        let got = match rcpt {
            None => m.clone(),
            Some(r) if m.code == 250 => c.cmd(r),
            Some(_) => m.clone(),
        };
        if got.code != code {
            wrong.push(format!("{mail} / {rcpt:?}: expected {code}, got {got}"));
        }
        let _ = c.cmd("RSET");
    };
    let rcpt = "alice@contoso.com";
    expect(
        &mut c,
        "MAIL FROM:<a@example.org> SIZE=123456789012345678901",
        None,
        501,
    );
    expect(&mut c, "MAIL FROM:<a@example.org> SIZE=99999999999999999999", None, 552);
    expect(&mut c, "MAIL FROM:<a@example.org> SIZE=1000", None, 250);
    expect(&mut c, "MAIL FROM:<a@example.org> RET=FULL RET=HDRS", None, 501);
    expect(&mut c, "MAIL FROM:<a@example.org> ENVID=one ENVID=two", None, 501);
    let r = format!("RCPT TO:<{rcpt}> NOTIFY=NEVER,SUCCESS");
    expect(&mut c, "MAIL FROM:<a@example.org>", Some(&r), 501);
    let r = format!("RCPT TO:<{rcpt}> NOTIFY=FAILURE NOTIFY=DELAY");
    expect(&mut c, "MAIL FROM:<a@example.org>", Some(&r), 501);
    let r = format!("RCPT TO:<{rcpt}> ORCPT=rfc822;x ORCPT=rfc822;y");
    expect(&mut c, "MAIL FROM:<a@example.org>", Some(&r), 501);
    let r = "RCPT TO:<j\u{f6}rg@contoso.com> ORCPT=utf-8;j\u{f6}rg@contoso.com";
    expect(&mut c, "MAIL FROM:<a@example.org> SMTPUTF8", Some(r), 250);
    let r = "RCPT TO:<jorg@contoso.com> ORCPT=utf-8;j\\x{F6}rg@contoso.com";
    expect(&mut c, "MAIL FROM:<a@example.org>", Some(r), 250);
    assert!(wrong.is_empty(), "{wrong:#?}");
}

/// ORCPT and ENVID reach Postfix exactly as the client wrote them (Postfix
/// itself sends `ORCPT=rfc822;b+C3+B8b@…` for a UTF-8 recipient), and the
/// `Received: … for <…>` of an SMTPUTF8 message keeps the UTF-8 address.
#[test]
fn xtext_and_utf8_addresses_reach_the_downstream_unchanged() {
    let s = Stack::keeping();
    let gw = s.gateway(Options::default());
    let mut c = Client::connect_tls(gw.smtp, &s.pki.ca, None);
    assert_eq!(c.cmd("MAIL FROM:<sender@example.org> SMTPUTF8 ENVID=id+2Bx").code, 250);
    let r = c.cmd("RCPT TO:<j\u{f6}rg@contoso.com> NOTIFY=FAILURE ORCPT=rfc822;j+C3+B6rg@contoso.com");
    assert_eq!(r.code, 250, "{r}");
    assert_eq!(c.cmd("DATA").code, 354);
    c.send(b"From: <sender@example.org>\r\nSubject: utf8\r\nMessage-ID: <utf8@example.org>\r\n\r\nhi\r\n.\r\n");
    assert_eq!(c.read_reply().code, 250);
    let cats = support::wait_for(Duration::from_secs(30), || {
        let all = s.downstream.postcat_all();
        (!all.is_empty()).then_some(all)
    })
    .unwrap_or_else(|| panic!("Postfix queued nothing; gateway log:\n{}", gw.log()));
    let cat = &cats[0];
    // postcat shows both decoded: equal to what the client encoded, not a
    // double encoding (`j+C3+83+C2+B6rg` decodes to `jÃ¶rg`).
    assert!(cat.contains("dsn_orig_rcpt=rfc822;j\u{f6}rg@contoso.com\n"), "{cat}");
    assert!(cat.contains("envelope_id=id+x\n"), "{cat}");
    let ours = &cat[cat.find("(exogate)").expect("our Received")..cat.find("X-CLOUD-SEC-AV-Info").unwrap()];
    assert!(ours.contains("for <j\u{f6}rg@contoso.com>;"), "{ours}");
}
