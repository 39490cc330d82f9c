//! The SMTP front door driven by real clients: Python's smtplib, swaks, and a
//! raw socket client for what libraries cannot do (BDAT with bare LFs,
//! pipelining split across TCP segments, plaintext injected after STARTTLS).

mod support;

use std::time::Duration;

use support::gateway::{Gateway, Options};
use support::postfix::without_postfix_received;
use support::smtp::Client;
use support::stack::Stack;

struct Setup {
    stack: Stack,
    gw: Gateway,
}

impl std::ops::Deref for Setup {
    type Target = Stack;
    fn deref(&self) -> &Stack {
        &self.stack
    }
}

fn setup(opts: Options) -> Setup {
    let stack = Stack::new();
    let gw = stack.gateway(opts);
    Setup { stack, gw }
}

const SMTPLIB: &str = r#"
import smtplib, ssl, sys, json
host, port, ca = sys.argv[1], int(sys.argv[2]), sys.argv[3]
ctx = ssl.create_default_context(cafile=ca)
ctx.check_hostname = False
out = {}
with smtplib.SMTP(host, port, local_hostname="client.test", timeout=30) as s:
    s.ehlo()
    out["pipelining"] = s.has_extn("pipelining")
    out["smtputf8"] = s.has_extn("smtputf8")
    out["chunking"] = s.has_extn("chunking")
    out["starttls_before"] = s.has_extn("starttls")
    s.starttls(context=ctx)
    s.ehlo()
    out["starttls_after"] = s.has_extn("starttls")
    msg = b"From: Fr\xc3\xa9d\xc3\xa9ric <fred@example.org>\r\nTo: j\xc3\xbcrgen@contoso.com\r\nSubject: utf8\r\nMessage-ID: <utf8@example.org>\r\n\r\nGr\xc3\xbc\xc3\x9fe\r\n"
    refused = s.sendmail("fred@example.org", ["j\u00fcrgen@contoso.com"], msg, mail_options=["SMTPUTF8", "BODY=8BITMIME"])
    out["refused"] = list(refused.keys())
    code, _ = s.noop()
    out["noop"] = code
    # the null sender, as EXO's connector validation uses
    s.sendmail("", ["validation@contoso.com"], b"From: O365ConnectorValidation@contoso.onmicrosoft.com\r\nSubject: Test email for connector validation\r\nMessage-ID: <v@x>\r\n\r\nhi\r\n")
print(json.dumps(out))
"#;

#[test]
fn smtplib_starttls_pipelining_smtputf8_and_null_sender() {
    let s = setup(Options::default());
    let out = support::python(
        SMTPLIB,
        &["127.0.0.1", &s.gw.smtp.port().to_string(), s.pki.ca.to_str().unwrap()],
    );
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["pipelining"], true);
    assert_eq!(v["smtputf8"], true);
    assert_eq!(v["chunking"], true);
    assert_eq!(v["starttls_before"], true);
    assert_eq!(
        v["starttls_after"], false,
        "STARTTLS must not be offered again over TLS"
    );
    assert_eq!(v["refused"], serde_json::json!([]));
    assert_eq!(v["noop"], 250);
    let msgs = s.downstream.wait_messages(2, Duration::from_secs(30));
    let utf8 = msgs
        .iter()
        .find(|m| m.recipient == "jürgen@contoso.com")
        .expect("SMTPUTF8 recipient delivered");
    assert!(String::from_utf8_lossy(&utf8.data).contains("Grüße"));
    let probe = msgs
        .iter()
        .find(|m| m.recipient == "validation@contoso.com")
        .expect("null sender delivered");
    // Postfix's pipe names the null sender MAILER-DAEMON.
    assert_eq!(probe.sender, "MAILER-DAEMON", "MAIL FROM:<> is kept");
}

#[test]
fn swaks_delivers_over_starttls() {
    let s = setup(Options::default());
    let (ok, out) = support::swaks(&[
        "--server",
        &s.gw.smtp.to_string(),
        "--tls",
        "--tls-ca-path",
        s.pki.ca.to_str().unwrap(),
        "--tls-verify",
        "--tls-sni",
        "localhost",
        "--from",
        "sender@example.org",
        "--to",
        "user@contoso.com",
        "--header",
        "Subject: via swaks",
    ]);
    assert!(ok, "swaks failed:\n{out}");
    assert!(out.contains("250 2.0.0 OK queued as"), "{out}");
    let msgs = s.downstream.wait_messages(1, Duration::from_secs(30));
    assert!(String::from_utf8_lossy(&msgs[0].data).contains("Subject: via swaks"));
}

#[test]
fn bdat_with_bare_lfs_is_kept_byte_for_byte() {
    let s = setup(Options::default());
    let mut c = Client::connect_tls(s.gw.smtp, &s.pki.ca, None);
    let body = b"From: a@example.org\r\nTo: u@contoso.com\r\nSubject: bare\r\nMessage-ID: <bare@x>\r\n\r\nline one\nline two\r\n.\nlast\n";
    let r = c.send_bdat("a@example.org", &["u@contoso.com"], body);
    assert_eq!(r.code, 250, "{r}");
    // Exact bytes in the spool are checked in tests/relay.rs (queue export);
    // Postfix, the downstream, stores LF line endings.
    let delivered = s.downstream.wait_messages(1, Duration::from_secs(30));
    let text = String::from_utf8_lossy(without_postfix_received(&delivered[0].data)).into_owned();
    assert!(text.ends_with("line one\nline two\n.\nlast\n"), "{text}");
}

#[test]
fn pipelined_commands_split_across_segments() {
    let s = setup(Options::default());
    let mut c = Client::connect_tls(s.gw.smtp, &s.pki.ca, None);
    let script = b"MAIL FROM:<a@example.org>\r\nRCPT TO:<u@contoso.com>\r\nRCPT TO:<v@contoso.com>\r\nDATA\r\n";
    // Cut in the middle of commands, each piece its own segment.
    for piece in script.chunks(7) {
        c.send(piece);
        std::thread::sleep(Duration::from_millis(15));
    }
    let codes: Vec<u16> = (0..4).map(|_| c.read_reply().code).collect();
    assert_eq!(codes, vec![250, 250, 250, 354]);
    c.send(b"Subject: pipelined\r\nMessage-ID: <p@x>\r\n\r\n..dot-stuffed line\r\nend\r\n.\r\n");
    assert_eq!(c.read_reply().code, 250);
    let msgs = s.downstream.wait_messages(2, Duration::from_secs(30));
    let text = String::from_utf8_lossy(&msgs[0].data).into_owned();
    assert!(text.contains("\n.dot-stuffed line\n"), "dot-unstuffing: {text}");
}

#[test]
fn plaintext_pipelined_after_starttls_is_discarded() {
    let s = setup(Options::default());
    let (mut c, _) = Client::connect(s.gw.smtp);
    assert_eq!(c.cmd("EHLO attacker.test").code, 250);
    // STARTTLS plus an injected command in the same segment.
    c.send(b"STARTTLS\r\nMAIL FROM:<injected@evil.example>\r\n");
    assert_eq!(c.read_reply().code, 220);
    c.upgrade(&s.pki.ca, None);
    // Had the injected MAIL survived, this EHLO reset it but a MAIL answer would be queued;
    // instead the first reply over TLS must be the EHLO's.
    let r = c.cmd("EHLO client.test");
    assert_eq!(r.code, 250, "{r}");
    assert!(
        r.lines[0].contains("Hello"),
        "first reply over TLS must answer EHLO: {r}"
    );
    // And a transaction needs a fresh MAIL: RCPT now is out of sequence.
    assert_eq!(c.cmd("RCPT TO:<u@contoso.com>").code, 503);
    assert!(s.gw.wait_log("discarded plaintext pipelined after STARTTLS", Duration::from_secs(5)));
}

#[test]
fn simple_commands_answer_as_rfc5321_says() {
    let s = setup(Options::default());
    let mut c = Client::connect_tls(s.gw.smtp, &s.pki.ca, None);
    assert_eq!(c.cmd("NOOP").code, 250);
    assert_eq!(c.cmd("VRFY user@contoso.com").code, 252);
    assert_eq!(c.cmd("HELP").code, 214);
    assert_eq!(c.cmd("RSET").code, 250);
    assert_eq!(c.cmd("EXPN list").code, 502);
    assert_eq!(c.cmd("FOO bar").code, 500);
    assert_eq!(c.cmd("STARTTLS").code, 503, "TLS already active");
    assert_eq!(c.cmd("DATA").code, 503, "no transaction");
    // BDAT without a transaction: its chunk is read and dropped, then 503.
    assert_eq!(c.cmd("BDAT 0 LAST").code, 503, "answered at once, nothing to wait for");
    c.send(b"BDAT 5\r\nhello");
    assert_eq!(c.read_reply().code, 503);
    assert_eq!(
        c.cmd("NOOP").code,
        250,
        "the chunk did not leak into the command stream"
    );
    assert_eq!(
        c.cmd("MAIL FROM:<a@example.org> SIZE=1000 RET=HDRS ENVID=abc+2Bdef")
            .code,
        250
    );
    assert_eq!(c.cmd("MAIL FROM:<b@example.org>").code, 503, "nested MAIL");
    assert_eq!(
        c.cmd("RCPT TO:<u@contoso.com> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;u@contoso.com")
            .code,
        250
    );
    assert_eq!(c.cmd("RCPT TO:<u@contoso.com> FOO=bar").code, 555, "unknown parameter");
    let quit = c.cmd("QUIT");
    assert_eq!(quit.code, 221);
    assert!(c.is_closed());
}
