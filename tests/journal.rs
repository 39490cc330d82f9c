//! Monitor mode end to end: Exchange Online-style journal reports
//! (tests/fixtures/journal, the EICAR one generated into a temporary folder)
//! sent over SMTP with Python's smtplib to the tenant's journal address, a
//! real ClamAV, a real Postfix downstream that must see nothing. Each report's
//! envelope part decides how its original is scanned: sent mail gets DLP, an
//! inbound virus is a quarantine verdict, internal mail is no spoof, spoofed
//! "internal" mail is. A damaged report is kept and counted, never dropped.
//! The journal address's domain is not the tenant's: only that exact address
//! is accepted (never an open relay).

mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use support::clamd::Clamd;
use support::gateway::{Gateway, Options, config_text};
use support::stack::Stack;

const JOURNAL: &str = "journal@journal.exogate.example";
const TENANT_ID: &str = "4f1e7c52-93a8-4d26-b0e1-6c2a9d8b3f70";

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/journal")
}

fn policy(clamd: &str) -> String {
    format!(
        "[policy.default]\njunk_score = 5.0\nquarantine_score = 10.0\nreject_score = 20.0\n\
         [[policy.default.check]]\nkind = \"malware\"\nclamd = \"{clamd}\"\neicar = false\non_error = \"tempfail\"\n\
         [[policy.default.check]]\nkind = \"impersonation\"\n\
         [[policy.default.check]]\nkind = \"dlp\"\n"
    )
}

struct Setup {
    stack: Stack,
    gw: Gateway,
    _clamd: Clamd,
}

fn setup() -> Setup {
    let stack = Stack::new();
    let clamd = Clamd::start();
    let opts = Options {
        tenant_mode: "monitor",
        tenant_id: TENANT_ID.into(),
        policy: Some(policy(&clamd.tcp())),
        deliver_to: vec![stack.downstream.addr()],
        ..Options::default()
    };
    let dir = stack.dir.path().join("gw");
    std::fs::create_dir_all(&dir).unwrap();
    let text = config_text(&dir, &stack.pki, &stack.server, &opts).replace(
        "mode = \"monitor\"\n",
        &format!("mode = \"monitor\"\njournal_address = \"{JOURNAL}\"\n"),
    );
    assert!(
        text.contains("journal_address"),
        "the tenant table gets the journal address"
    );
    let gw = Gateway::start_with_text(&dir, &text);
    Setup {
        stack,
        gw,
        _clamd: clamd,
    }
}

/// Sends `file` with smtplib (STARTTLS, the test CA); returns the reply to
/// the message ("250 ...") or the refusal, as "CODE text".
fn smtplib(gw: &Gateway, ca: &Path, mail_from: &str, rcpts: &[&str], file: &Path) -> String {
    support::python(
        "import json, smtplib, ssl, sys\n\
         host, port, ca, sender, rcpts, path = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], json.loads(sys.argv[5]), sys.argv[6]\n\
         data = open(path, 'rb').read()\n\
         s = smtplib.SMTP(host, port, timeout=60)\n\
         s.starttls(context=ssl.create_default_context(cafile=ca))\n\
         s.ehlo('mail.protection.outlook.com')\n\
         try:\n\
         \x20   code, msg = s.mail(sender)\n\
         \x20   if code != 250: print(code, msg.decode()); sys.exit(0)\n\
         \x20   for r in rcpts:\n\
         \x20       code, msg = s.rcpt(r)\n\
         \x20       if code not in (250, 251): print(code, msg.decode()); s.rset(); sys.exit(0)\n\
         \x20   code, msg = s.data(data)\n\
         \x20   print(code, msg.decode())\n\
         finally:\n\
         \x20   s.quit()\n",
        &[
            &gw.smtp.ip().to_string(),
            &gw.smtp.port().to_string(),
            ca.to_str().unwrap(),
            mail_from,
            &serde_json::to_string(rcpts).unwrap(),
            file.to_str().unwrap(),
        ],
    )
    .trim()
    .to_string()
}

/// The gateway's event line for the journaled message with `message_id`.
fn event_for(gw: &Gateway, message_id: &str) -> String {
    let needle = format!("message_id={message_id}");
    assert!(
        gw.wait_log(&needle, Duration::from_secs(30)),
        "no event for {message_id}"
    );
    gw.log()
        .lines()
        .find(|l| l.contains("journaled message scanned") && l.contains(&needle))
        .unwrap_or_else(|| panic!("no event line for {message_id}"))
        .to_string()
}

fn sidecar(name: &str) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(fixtures().join(name).with_extension("json")).unwrap()).unwrap()
}

#[test]
fn journal_reports_over_smtp_are_scanned_as_their_envelope_says_and_never_relayed() {
    let s = setup();
    let ca = s.stack.pki.ca.clone();
    let send = |file: &Path| smtplib(&s.gw, &ca, "", &[JOURNAL], file);

    // Sent mail with a card number: outgoing, DLP runs on it.
    let r = send(&fixtures().join("outgoing-card.eml"));
    assert!(r.starts_with("250"), "{r}");
    let want = sidecar("outgoing-card.eml");
    let line = event_for(&s.gw, want["original"]["message_id"].as_str().unwrap());
    assert!(line.contains("direction=outgoing"), "{line}");
    assert!(
        line.contains("dlp-card"),
        "DLP must find the card number in journaled sent mail: {line}"
    );
    assert!(
        line.contains(&format!(
            "network_message_id={}",
            want["original"]["network_message_id"].as_str().unwrap()
        )),
        "the original's Network-Message-Id is recorded: {line}"
    );
    // … and in the store, like an inline message's event.
    let message_id = want["original"]["message_id"].as_str().unwrap();
    let found = support::wait_for(Duration::from_secs(15), || {
        let (code, out, _) = s.gw.cli(&["events", "search", "--message-id", message_id, "--json"]);
        let v: serde_json::Value = serde_json::from_str(&out).ok().filter(|_| code == 0)?;
        v.as_array().filter(|a| !a.is_empty()).cloned()
    })
    .unwrap_or_else(|| panic!("exogate events search lists the journaled message\n{}", s.gw.log()));
    assert_eq!(found[0]["action"], "monitor", "{found:?}");
    assert_eq!(found[0]["direction"], "outgoing", "{found:?}");
    assert_eq!(found[0]["tenant"], "contoso", "{found:?}");
    assert!(
        found.iter().any(|e| e["rcpt"]
            == want["envelope"]["recipients"][0]["address"]
                .as_str()
                .unwrap()
                .to_ascii_lowercase()),
        "one row per original recipient: {found:?} {want}"
    );

    // Inbound EICAR to three mailboxes: a quarantine verdict.
    let tmp = tempfile::tempdir().unwrap();
    support::python(
        "import subprocess, sys\nsubprocess.run([sys.executable, sys.argv[1], '--eicar-into', sys.argv[2]], check=True)\n",
        &[
            fixtures().join("generate.py").to_str().unwrap(),
            tmp.path().to_str().unwrap(),
        ],
    );
    let eicar_json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(tmp.path().join("inbound-eicar.json")).unwrap()).unwrap();
    let r = send(&tmp.path().join("inbound-eicar.eml"));
    assert!(r.starts_with("250"), "{r}");
    let line = event_for(&s.gw, eicar_json["original"]["message_id"].as_str().unwrap());
    assert!(line.contains("direction=inbound"), "{line}");
    assert!(line.contains("verdict=quarantine"), "EICAR in the original: {line}");
    for rcpt in eicar_json["envelope"]["recipients"].as_array().unwrap() {
        assert!(line.contains(rcpt["address"].as_str().unwrap()), "{line}");
    }

    // Internal mail is not a spoof of the tenant's own domain.
    let r = send(&fixtures().join("internal.eml"));
    assert!(r.starts_with("250"), "{r}");
    let line = event_for(
        &s.gw,
        sidecar("internal.eml")["original"]["message_id"].as_str().unwrap(),
    );
    assert!(line.contains("direction=internal"), "{line}");
    assert!(
        !line.contains("tenant-domain-spoof"),
        "internal mail is no spoof: {line}"
    );
    assert!(line.contains("verdict=deliver"), "{line}");

    // Internet mail forging the tenant's domain: journaled as internal, but
    // received anonymously, so the spoof check still sees it.
    let r = send(&fixtures().join("spoofed-internal.eml"));
    assert!(r.starts_with("250"), "{r}");
    let line = event_for(
        &s.gw,
        sidecar("spoofed-internal.eml")["original"]["message_id"]
            .as_str()
            .unwrap(),
    );
    assert!(line.contains("direction=internal"), "{line}");
    assert!(line.contains("scanned_as=inbound"), "{line}");
    assert!(line.contains("tenant-domain-spoof"), "{line}");

    // A damaged report: 250 only once it is kept, counted, listed.
    let r = send(&fixtures().join("damaged-no-original.eml"));
    assert!(
        r.starts_with("250"),
        "a report that cannot be read is kept, not refused: {r}"
    );
    let (code, list, err) = s.gw.cli(&["reports", "list"]);
    assert_eq!(code, 0, "{err}");
    assert!(list.contains("1 message(s)"), "{list}");
    let (_, metrics) = s.gw.http_get("/metrics");
    assert!(
        metrics.contains("exogate_journal_reports_total{tenant=\"contoso\",result=\"envelope-incomplete\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("exogate_journal_reports_total{tenant=\"contoso\",result=\"scanned\"} 4"),
        "{metrics}"
    );

    // Nothing was relayed, nothing queued or quarantined as mail.
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        s.stack.downstream.messages().is_empty(),
        "a journal report is never relayed"
    );
    let (_, queue, _) = s.gw.cli(&["queue", "list"]);
    assert!(queue.contains("0 message(s)"), "{queue}");
    let (_, quarantine, _) = s.gw.cli(&["quarantine", "list"]);
    assert!(quarantine.contains("0 message(s)"), "{quarantine}");
}

#[test]
fn only_the_journal_address_itself_is_accepted_and_reports_must_be_the_tenants() {
    let s = setup();
    let ca = s.stack.pki.ca.clone();
    let report = fixtures().join("outgoing-card.eml");

    // Another address at the journal domain: the domain is not the tenant's.
    let r = smtplib(&s.gw, &ca, "", &["other@journal.exogate.example"], &report);
    assert!(r.starts_with("550"), "never an open relay: {r}");
    let r = smtplib(&s.gw, &ca, "x@internet.example", &["victim@elsewhere.example"], &report);
    assert!(r.starts_with("550"), "{r}");
    // The journal address in any case is the journal address.
    let r = smtplib(&s.gw, &ca, "", &["Journal@Journal.Exogate.Example"], &report);
    assert!(r.starts_with("250"), "{r}");
    // A report and other mail never share a transaction.
    let r = smtplib(&s.gw, &ca, "", &[JOURNAL, "alice@contoso.com"], &report);
    assert!(r.starts_with("452"), "{r}");

    // A report another tenant's Exchange Online stamped is refused.
    let tmp = tempfile::tempdir().unwrap();
    let forged = tmp.path().join("forged.eml");
    let text = std::fs::read(&report).unwrap();
    let text = String::from_utf8(text).unwrap().replacen(
        &format!("X-MS-Exchange-CrossTenant-Id: {TENANT_ID}"),
        "X-MS-Exchange-CrossTenant-Id: 9b2d61a4-0c7e-4e35-8f19-3a5c7e2d1b86",
        1,
    );
    std::fs::write(&forged, text).unwrap();
    let r = smtplib(&s.gw, &ca, "", &[JOURNAL], &forged);
    assert!(r.starts_with("550"), "{r}");

    std::thread::sleep(Duration::from_secs(1));
    assert!(s.stack.downstream.messages().is_empty());
}
