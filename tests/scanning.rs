//! The scanning pipeline end to end, with real clients, a real ClamAV and a
//! real downstream: each action carried out (deliver, junk, quarantine,
//! reject), detect mode delivering everything, DKIM signatures surviving the
//! stamp, forged X-CLOUD-SEC-AV-* fields replaced, EXO's connector probe passing.

mod support;

use std::time::Duration;

use support::clamd::Clamd;
use support::gateway::{Gateway, Options};
use support::postfix::{Captured, without_postfix_received};
use support::smtp::Client;
use support::stack::Stack;

fn eicar() -> String {
    // Built from two halves so the repository never contains the test virus.
    let head = "X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STAN";
    let tail = "DARD-ANTIVIRUS-TEST-FILE!$H+H*";
    format!("{head}{tail}")
}

fn gtube() -> &'static str {
    "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"
}

fn policy(clamd: &str) -> String {
    format!(
        "[policy.default]\njunk_score = 5.0\nquarantine_score = 10.0\nreject_score = 20.0\n\
         [[policy.default.check]]\nkind = \"attachments\"\n\
         [[policy.default.check]]\nkind = \"malware\"\nclamd = \"{clamd}\"\neicar = false\non_error = \"tempfail\"\n\
         [[policy.default.check]]\nkind = \"impersonation\"\n\
         [[policy.default.check]]\nkind = \"urls\"\n\
         [[policy.default.check]]\nkind = \"content\"\n\
         rules = [{{ name = \"test-reject\", pattern = \"please reject this\", score = 25.0, where = \"subject\" }}]\n\
         [[policy.default.check]]\nkind = \"dlp\"\n"
    )
}

struct Setup {
    stack: Stack,
    gw: Gateway,
    clamd: Clamd,
}

impl std::ops::Deref for Setup {
    type Target = Stack;
    fn deref(&self) -> &Stack {
        &self.stack
    }
}

fn setup(tenant_mode: &'static str) -> Setup {
    let stack = Stack::new();
    let clamd = Clamd::start();
    let gw = stack.gateway(Options {
        tenant_mode,
        policy: Some(policy(&clamd.tcp())),
        ..Options::default()
    });
    Setup { stack, gw, clamd }
}

fn msg(subject: &str, body: &str) -> Vec<u8> {
    support::crlf(&format!(
        "From: Alice <alice@example.org>\nTo: user@contoso.com\nSubject: {subject}\nDate: Mon, 23 Nov 2026 10:00:00 +0000\n\
         Message-ID: <{}@example.org>\nX-CLOUD-SEC-AV-Info: contoso,office365_emails,inline\nMIME-Version: 1.0\n\n{body}\n",
        subject.replace(' ', "-")
    ))
}

fn with_attachment(subject: &str, name: &str, data: &str) -> Vec<u8> {
    use std::fmt::Write;
    let b64 = {
        // Minimal base64 (the test must not depend on the gateway's code).
        const T: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut out = String::new();
        for chunk in data.as_bytes().chunks(3) {
            let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
            let n = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
            for i in 0..4 {
                if i <= chunk.len() {
                    out.push(T[(n >> (18 - 6 * i) & 63) as usize] as char);
                } else {
                    out.push('=');
                }
            }
        }
        out
    };
    let mut m = String::new();
    write!(
        m,
        "From: Alice <alice@example.org>\nTo: user@contoso.com\nSubject: {subject}\nDate: Mon, 23 Nov 2026 10:00:00 +0000\n\
         Message-ID: <att@example.org>\nMIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=\"b1\"\n\n\
         --b1\nContent-Type: text/plain\n\nsee attachment\n--b1\nContent-Type: application/octet-stream; name=\"{name}\"\n\
         Content-Disposition: attachment; filename=\"{name}\"\nContent-Transfer-Encoding: base64\n\n{b64}\n--b1--\n"
    )
    .unwrap();
    support::crlf(&m)
}

fn scl_values(m: &Captured) -> Vec<String> {
    String::from_utf8_lossy(&m.data)
        .split("\n\n")
        .next()
        .unwrap()
        .lines()
        .filter(|l| l.to_ascii_lowercase().starts_with("x-cloud-sec-av-scl:"))
        .map(|l| l["x-cloud-sec-av-scl:".len()..].trim().to_string())
        .collect()
}

fn delivered_with_subject<'a>(msgs: &'a [Captured], subject: &str) -> Option<&'a Captured> {
    msgs.iter()
        .find(|m| String::from_utf8_lossy(&m.data).contains(&format!("Subject: {subject}")))
}

#[test]
fn each_action_is_carried_out_in_inline_mode() {
    let s = setup("inline");
    let mut c = Client::connect_tls(s.gw.smtp, &s.pki.ca, None);
    let send = |c: &mut Client, m: &[u8]| c.send_data("alice@example.org", &["user@contoso.com"], m);

    assert_eq!(send(&mut c, &msg("clean", "Hello, nothing to see.")).code, 250);
    assert_eq!(send(&mut c, &msg("junk", gtube())).code, 250);
    let r = send(&mut c, &with_attachment("virus", "tool.txt", &eicar()));
    assert_eq!(r.code, 250, "quarantine is acknowledged: {r}");
    let quarantined_id = r.text().rsplit(' ').next().unwrap().to_string();
    let r = send(&mut c, &msg("please reject this", "bad"));
    assert_eq!((r.code, r.text().starts_with("5.7.1")), (550, true), "{r}");
    assert!(!r.text().contains("test-reject"), "the reason stays in the log: {r}");

    let got = s.downstream.wait_messages(2, Duration::from_secs(30));
    std::thread::sleep(Duration::from_secs(2));
    let got2 = s.downstream.messages();
    assert_eq!(got2.len(), 2, "only clean and junk are delivered");
    let clean = delivered_with_subject(&got, "clean").unwrap();
    assert_eq!(scl_values(clean), vec!["false"]);
    let junk = delivered_with_subject(&got, "junk").unwrap();
    assert_eq!(scl_values(junk), vec!["true"]);
    assert!(String::from_utf8_lossy(&junk.data).contains("action=junk"));

    let (code, list, _) = s.gw.cli(&["quarantine", "list"]);
    assert_eq!(code, 0);
    assert!(list.contains(&quarantined_id), "{list}");
    let (_, shown, _) = s.gw.cli(&["quarantine", "show", &quarantined_id]);
    assert!(
        shown.contains("Gateway.Test.EICAR"),
        "the clamd signature is recorded: {shown}"
    );
    let log = s.gw.log();
    assert!(
        log.contains("please reject this") || log.contains("test-reject"),
        "reject reason logged"
    );

    // Releasing the quarantined message delivers it.
    let (code, out, err) = s.gw.cli(&["quarantine", "release", &quarantined_id]);
    assert_eq!(code, 0, "{out}{err}");
    let got = s.downstream.wait_messages(3, Duration::from_secs(30));
    assert!(delivered_with_subject(&got, "virus").is_some());
}

#[test]
fn detect_mode_delivers_everything_with_the_stamps() {
    let s = setup("detect");
    let mut c = Client::connect_tls(s.gw.smtp, &s.pki.ca, None);
    let send = |c: &mut Client, m: &[u8]| c.send_data("alice@example.org", &["user@contoso.com"], m).code;
    assert_eq!(send(&mut c, &msg("clean", "Hello.")), 250);
    assert_eq!(send(&mut c, &msg("junk", gtube())), 250);
    assert_eq!(send(&mut c, &with_attachment("virus", "tool.txt", &eicar())), 250);
    assert_eq!(send(&mut c, &msg("please reject this", "bad")), 250);
    let got = s.downstream.wait_messages(4, Duration::from_secs(30));
    for subject in ["clean", "junk", "virus", "please reject this"] {
        let m = delivered_with_subject(&got, subject).unwrap_or_else(|| panic!("{subject} delivered"));
        assert_eq!(scl_values(m), vec!["false"], "detect never junks");
        assert!(String::from_utf8_lossy(&m.data).contains("enforced=no"));
    }
    let virus = delivered_with_subject(&got, "virus").unwrap();
    assert!(
        String::from_utf8_lossy(&virus.data).contains("action=quarantine"),
        "the verdict is still recorded"
    );
}

#[test]
fn forged_scl_fields_leave_as_exactly_one_with_our_verdict() {
    let s = setup("inline");
    let mut c = Client::connect_tls(s.gw.smtp, &s.pki.ca, None);
    let forged =
        "X-CLOUD-SEC-AV-SCL: false\nx-cloud-sec-av-scl: false\nX-Cloud-Sec-Av-Scl:\n false\nX-CLOUD-SEC-AV-SCL:false\n";
    let junk = support::crlf(&format!(
        "{forged}From: a@example.org\nTo: user@contoso.com\nSubject: forged junk\nDate: Mon, 23 Nov 2026 10:00:00 +0000\nMessage-ID: <f1@x>\n\n{}\n",
        gtube()
    ));
    let clean = support::crlf(
        "X-CLOUD-SEC-AV-SCL: true\nFrom: a@example.org\nTo: user@contoso.com\nSubject: forged clean\n\
         Date: Mon, 23 Nov 2026 10:00:00 +0000\nMessage-ID: <f2@x>\nX-CLOUD-SEC-AV-SCL: true\n\nhello\n",
    );
    assert_eq!(c.send_data("a@example.org", &["user@contoso.com"], &junk).code, 250);
    assert_eq!(c.send_data("a@example.org", &["user@contoso.com"], &clean).code, 250);
    let got = s.downstream.wait_messages(2, Duration::from_secs(30));
    assert_eq!(
        scl_values(delivered_with_subject(&got, "forged junk").unwrap()),
        vec!["true"]
    );
    assert_eq!(
        scl_values(delivered_with_subject(&got, "forged clean").unwrap()),
        vec!["false"]
    );
}

#[test]
fn exo_connector_validation_probe_passes() {
    let s = setup("inline");
    let mut c = Client::connect_tls(s.gw.smtp, &s.pki.ca, None);
    let probe = support::crlf(
        "From: O365ConnectorValidation@contoso.onmicrosoft.com\nTo: validation@contoso.com\n\
         Subject: Test email for connector validation\nDate: Mon, 23 Nov 2026 10:00:00 +0000\n\
         Message-Id: <4c1bd7f2-2c1e-4a2e-8ad0-0a1b2c3d4e5f@substrate-int.office.com>\n\
         X-MS-Exchange-CrossTenant-Id: 72f988bf-86f1-41af-91ab-2d7cd011db47\n\n\
         This test email message was sent from Office 365 to check that email can be delivered to you using your new or modified connector. No need to reply.\n",
    );
    let r = c.send_data("", &["validation@contoso.com"], &probe);
    assert_eq!(r.code, 250, "{r}");
    let got = s.downstream.wait_messages(1, Duration::from_secs(30));
    assert_eq!(scl_values(&got[0]), vec!["false"]);
    assert!(String::from_utf8_lossy(&got[0].data).contains("action=deliver"));
}

const DKIM: &str = r#"
import dkim, smtplib, ssl, sys, json
mode = sys.argv[1]
if mode == "sign":
    key_path, selector, domain, in_path, out_path, canon = sys.argv[2:8]
    msg = open(in_path, "rb").read()
    c = canon.encode()
    sig = dkim.sign(msg, selector.encode(), domain.encode(), open(key_path, "rb").read(),
                    canonicalize=(c, c), include_headers=[b"from", b"to", b"subject", b"date", b"message-id"])
    open(out_path, "wb").write(sig + msg)
    print("signed")
elif mode == "send":
    host, port, ca, path = sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5]
    ctx = ssl.create_default_context(cafile=ca)
    ctx.check_hostname = False
    with smtplib.SMTP(host, port, timeout=30) as s:
        s.starttls(context=ctx)
        s.sendmail("alice@example.org", ["user@contoso.com"], open(path, "rb").read())
    print("sent")
else:
    txt_path, path = sys.argv[2], sys.argv[3]
    # opendkim-genkey's .txt holds the DNS record split into quoted strings.
    raw = open(txt_path).read()
    record = "".join(part for i, part in enumerate(raw.split('"')) if i % 2 == 1)
    def dnsfunc(name, timeout=5):
        return record.encode()
    print(json.dumps({"valid": dkim.verify(open(path, "rb").read(), dnsfunc=dnsfunc)}))
"#;

#[test]
fn dkim_signatures_verify_after_passing_through() {
    let s = setup("inline");
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path();
    let status = std::process::Command::new("opendkim-genkey")
        .args([
            "-D",
            keys.to_str().unwrap(),
            "-d",
            "example.org",
            "-s",
            "sel",
            "-b",
            "2048",
        ])
        .status()
        .expect("opendkim-genkey (apt-get install opendkim-tools)");
    assert!(status.success());
    let key = keys.join("sel.private");
    let txt = keys.join("sel.txt");
    for canon in ["relaxed", "simple"] {
        let subject = format!("signed {canon}");
        let original = support::crlf(&format!(
            "From: Alice <alice@example.org>\nTo: user@contoso.com\nSubject: {subject}\n\
             Date: Mon, 23 Nov 2026 10:00:00 +0000\nMessage-ID: <dkim-{canon}@example.org>\n\
             X-CLOUD-SEC-AV-SCL: false\nMIME-Version: 1.0\nContent-Type: text/plain; charset=utf-8\n\n\
             A signed message.\nWith  two  spaces and a trailing space \n\n\n"
        ));
        let plain = dir.path().join(format!("{canon}.eml"));
        let signed = dir.path().join(format!("{canon}.signed.eml"));
        std::fs::write(&plain, &original).unwrap();
        support::python(
            DKIM,
            &[
                "sign",
                key.to_str().unwrap(),
                "sel",
                "example.org",
                plain.to_str().unwrap(),
                signed.to_str().unwrap(),
                canon,
            ],
        );
        // The signature verifies before the gateway (sanity of the fixture).
        let before = support::python(DKIM, &["verify", txt.to_str().unwrap(), signed.to_str().unwrap()]);
        assert!(before.contains("true"), "fixture signature: {before}");
        support::python(
            DKIM,
            &[
                "send",
                "127.0.0.1",
                &s.gw.smtp.port().to_string(),
                s.pki.ca.to_str().unwrap(),
                signed.to_str().unwrap(),
            ],
        );
        let got = s
            .downstream
            .wait_messages(if canon == "relaxed" { 1 } else { 2 }, Duration::from_secs(30));
        let m = delivered_with_subject(&got, &subject).unwrap();
        let delivered = dir.path().join(format!("{canon}.delivered.eml"));
        std::fs::write(&delivered, without_postfix_received(&m.data)).unwrap();
        let after = support::python(DKIM, &["verify", txt.to_str().unwrap(), delivered.to_str().unwrap()]);
        assert!(
            after.contains("true"),
            "DKIM ({canon}) must verify on the delivered bytes: {after}"
        );
    }
}

#[test]
fn monitor_mode_scans_the_journaled_original_and_never_relays() {
    let s = setup("monitor");
    let mut c = Client::connect_tls(s.gw.smtp, &s.pki.ca, None);
    let inner = String::from_utf8(with_attachment("journaled virus", "tool.txt", &eicar())).unwrap();
    let report = support::crlf(&format!(
        "From: MicrosoftExchange329e71ec88ae4615bbc36ab6ce41109e@contoso.com\nTo: journal@contoso.com\n\
         Subject: journal report\nDate: Mon, 23 Nov 2026 10:00:00 +0000\nMessage-ID: <journal-1@contoso.com>\n\
         X-MS-Journal-Report:\nMIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=\"jr\"\n\n\
         --jr\nContent-Type: text/plain\n\nSender: alice@example.org\nSubject: journaled virus\n\
         Message-ID: <att@example.org>\nRecipient: user@contoso.com\n\n\
         --jr\nContent-Type: message/rfc822\n\n{}\n--jr--\n",
        inner.replace("\r\n", "\n")
    ));
    let r = c.send_data("", &["journal@contoso.com"], &report);
    assert_eq!(r.code, 250, "known tenants always get 250 in monitor mode: {r}");
    assert!(s.gw.wait_log("mode=\"monitor\"", Duration::from_secs(10)));
    let log = s.gw.log();
    let line = log
        .lines()
        .find(|l| l.contains("message scanned") && l.contains("monitor"))
        .unwrap();
    assert!(
        line.contains("verdict=quarantine"),
        "the attached original was scanned: {line}"
    );
    std::thread::sleep(Duration::from_secs(2));
    assert!(s.downstream.messages().is_empty(), "monitor mode never relays");
    let (_, list, _) = s.gw.cli(&["queue", "list"]);
    assert!(list.contains("0 message(s)"), "{list}");
}

#[test]
fn clamd_down_with_on_error_tempfail_answers_451() {
    let mut s = setup("inline");
    s.clamd.stop();
    let mut c = Client::connect_tls(s.gw.smtp, &s.pki.ca, None);
    let r = c.send_data(
        "alice@example.org",
        &["user@contoso.com"],
        &msg("while clamd is down", "hello"),
    );
    assert_eq!(
        (r.code, r.text().starts_with("4.7.1")),
        (451, true),
        "EXO must retry: {r}"
    );
    assert!(
        s.gw.wait_log("check failed", Duration::from_secs(5)),
        "the failure is logged"
    );
    std::thread::sleep(Duration::from_secs(1));
    assert!(s.downstream.messages().is_empty());
}
