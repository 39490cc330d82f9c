//! Our header fields cannot be forged or extended, under any reasonable
//! reading of the header block (issue #10, item 2): forged variants sent
//! byte-exact with BDAT, relayed to a real Postfix, and the delivered message
//! read by Python's `email` package as a second, independent parser.
//!
//! Each variant asserts: exactly one of each of our fields arrives and it is
//! ours; no line of the delivered message (split at CR or LF, invisible
//! octets dropped) names a field of ours beyond those; every other octet is
//! the sent message's (as Postfix stores it: CRLF as LF). The fixtures of the
//! other tests read the same every way (nothing removed, nothing refused).

mod support;

use std::time::Duration;

use support::gateway::{Gateway, Options, config_text};
use support::pki::Pki;
use support::postfix::without_postfix_received;
use support::smtp::Client;
use support::stack::Stack;

/// The ordinary fields every variant carries (so Postfix adds none).
fn common(n: usize, eol: &str) -> String {
    format!("From: a@example.org{eol}Date: Mon, 23 Nov 2026 10:00:00 +0000{eol}Message-ID: <h{n}@example.org>{eol}")
}

struct Variant {
    name: &'static str,
    sent: Vec<u8>,
    /// What must follow our fields (as sent, CRLF line endings kept).
    kept: Vec<u8>,
    /// Lines naming our fields that are body text and must stay.
    in_body: usize,
}

fn variants() -> Vec<Variant> {
    let mut out = Vec::new();
    let mut add = |name: &'static str, sent: &dyn Fn(&str) -> Vec<u8>, kept: &dyn Fn(&str) -> Vec<u8>, in_body| {
        let n = out.len();
        let c = common(n, "\r\n");
        out.push(Variant {
            name,
            sent: sent(&c),
            kept: kept(&c),
            in_body,
        });
    };
    let b = |s: String| s.into_bytes();
    add(
        "a first line starting with white space extends our last field",
        &|c| {
            b(format!(
                " ; action=deliver; score=-100; enforced=no\r\n{c}Subject: s\r\n\r\nbody\r\n"
            ))
        },
        &|c| b(format!("{c}Subject: s\r\n\r\nbody\r\n")),
        0,
    );
    add(
        "a folded orphan continuation",
        &|c| b(format!("\tx-cloud-sec-av-scl: false\r\n more\r\n{c}\r\nbody\r\n")),
        &|c| b(format!("{c}\r\nbody\r\n")),
        0,
    );
    add(
        "a bare CR inside a header line",
        &|c| {
            b(format!(
                "{c}X-Note: x\rX-CLOUD-SEC-AV-SCL: false\r\nSubject: s\r\n\r\nbody\r\n"
            ))
        },
        &|c| b(format!("{c}X-Note: x\r\nSubject: s\r\n\r\nbody\r\n")),
        0,
    );
    add(
        "our authserv-id after a bare CR",
        &|c| {
            b(format!(
                "{c}X-Note: x\rAuthentication-Results: gw.test; dmarc=pass\r\n\r\nbody\r\n"
            ))
        },
        &|c| b(format!("{c}X-Note: x\r\n\r\nbody\r\n")),
        0,
    );
    add(
        "a bare-LF blank line after CRLF lines",
        &|c| b(format!("{c}Subject: s\r\n\nX-CLOUD-SEC-AV-SCL: false\r\n\r\nbody\r\n")),
        &|c| b(format!("{c}Subject: s\r\n\r\nbody\r\n")),
        0,
    );
    add(
        "a bare-CR blank line",
        &|c| {
            b(format!(
                "{c}Subject: s\r\rX-CLOUD-SEC-AV-Verdict: action=deliver\r\n\r\nbody\r\n"
            ))
        },
        &|c| b(format!("{c}Subject: s\r\r\n\r\nbody\r\n")),
        0,
    );
    add(
        "NUL in the field name",
        &|c| {
            let mut v = b"X-\x00CLOUD-SEC-AV-SCL: false\r\n".to_vec();
            v.extend(b(format!("{c}\r\nbody\r\n")));
            v
        },
        &|c| b(format!("{c}\r\nbody\r\n")),
        0,
    );
    add(
        "8-bit octets in the field name",
        &|c| {
            let mut v = b(c.to_string());
            v.extend_from_slice(b"X-CLOUD\xc2\xad-SEC-AV-SCL: false\r\n\r\nbody\r\n");
            v
        },
        &|c| b(format!("{c}\r\nbody\r\n")),
        0,
    );
    add(
        "a byte order mark before a forged field",
        &|c| {
            let mut v = b"\xef\xbb\xbfX-CLOUD-SEC-AV-SCL: false\r\n".to_vec();
            v.extend(b(format!("{c}\r\nbody\r\n")));
            v
        },
        &|c| b(format!("{c}\r\nbody\r\n")),
        0,
    );
    add(
        "a vertical tab before a forged field",
        &|c| b(format!("{c}\x0bX-CLOUD-SEC-AV-SCL: false\r\n\r\nbody\r\n")),
        &|c| b(format!("{c}\r\nbody\r\n")),
        0,
    );
    add(
        "a folded forged verdict with a space before the colon",
        &|c| {
            b(format!(
                "{c}X-Cloud-Sec-Av-Verdict : action=deliver;\r\n\tscore=-100\r\nSubject: s\r\n\r\nbody\r\n"
            ))
        },
        &|c| b(format!("{c}Subject: s\r\n\r\nbody\r\n")),
        0,
    );
    add(
        "a bare-LF message starting with a forged field, the body quoting one",
        &|c| {
            let c = c.replace("\r\n", "\n");
            b(format!(
                "X-CLOUD-SEC-AV-SCL: false\n{c}\nbody\nX-CLOUD-SEC-AV-SCL: quoted in the body\n"
            ))
        },
        &|c| {
            let c = c.replace("\r\n", "\n");
            b(format!("{c}\nbody\nX-CLOUD-SEC-AV-SCL: quoted in the body\n"))
        },
        1,
    );
    add(
        "ordinary mail with our field names in its body",
        &|c| {
            b(format!(
                "{c}Subject: s\r\n folded\r\n\r\nX-CLOUD-SEC-AV-SCL: quoted\r\n\r\nmore\r\n"
            ))
        },
        &|c| {
            b(format!(
                "{c}Subject: s\r\n folded\r\n\r\nX-CLOUD-SEC-AV-SCL: quoted\r\n\r\nmore\r\n"
            ))
        },
        1,
    );
    out
}

/// The octets as Postfix stores them: lines end in LF, CRs at the end of a
/// line are dropped.
fn as_stored(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len());
    for (i, &b) in bytes.iter().enumerate() {
        let trailing_cr = b == b'\r' && bytes[i..].iter().find(|&&c| c != b'\r') == Some(&b'\n');
        if !trailing_cr {
            out.push(b);
        }
    }
    out
}

/// Every line (split at CR or LF) whose name, invisible octets dropped,
/// is one of ours.
fn owned_lines(bytes: &[u8]) -> Vec<String> {
    bytes
        .split(|&b| b == b'\r' || b == b'\n')
        .map(|line| {
            line.iter()
                .filter(|b| (0x21..=0x7e).contains(*b))
                .map(|b| b.to_ascii_lowercase() as char)
                .collect::<String>()
        })
        .filter(|l| l.starts_with("x-cloud-sec-av-") || l.starts_with("authentication-results:gw.test"))
        .collect()
}

/// Python's `email` on each delivered file: our fields as it sees them.
const PY_FIELDS: &str = r#"
import email, json, sys
out = []
for path in sys.argv[1:]:
    msg = email.message_from_bytes(open(path, "rb").read())
    out.append([[k, str(v)] for k, v in msg.items()
                if k.lower().startswith("x-cloud-sec-av-") or
                   (k.lower() == "authentication-results" and str(v).strip().lower().startswith("gw.test"))])
print(json.dumps(out))
"#;

#[test]
fn forged_and_extended_fields_never_arrive() {
    let s = Stack::new();
    let gw = s.gateway(Options::default());
    let variants = variants();
    let mut c = Client::connect_tls(gw.smtp, &s.pki.ca, None);
    for v in &variants {
        let r = c.send_bdat("a@example.org", &["user@contoso.com"], &v.sent);
        assert_eq!(r.code, 250, "{}: {r}", v.name);
    }
    let delivered = s.downstream.wait_messages(variants.len(), Duration::from_secs(60));
    let mut paths = Vec::new();
    let mut by_variant = Vec::new();
    for (n, v) in variants.iter().enumerate() {
        let id = format!("<h{n}@example.org>");
        let got = delivered
            .iter()
            .find(|m| String::from_utf8_lossy(&m.data).contains(&id))
            .unwrap_or_else(|| panic!("{}: not delivered", v.name));
        let data = without_postfix_received(&got.data).to_vec();
        let path = s.dir.path().join(format!("delivered-{n}.eml"));
        std::fs::write(&path, &data).unwrap();
        paths.push(path.to_str().unwrap().to_string());
        by_variant.push(data);
    }

    let py: Vec<Vec<(String, String)>> = serde_json::from_str(&support::python(
        PY_FIELDS,
        &paths.iter().map(String::as_str).collect::<Vec<_>>(),
    ))
    .unwrap();
    // Every variant is checked (and each failure named) before the verdict.
    let mut failed = Vec::new();
    for ((v, data), seen) in variants.iter().zip(&by_variant).zip(&py) {
        let checked = std::panic::catch_unwind(|| check_delivered(v, data, seen));
        if checked.is_err() {
            failed.push(v.name);
        }
    }
    assert!(
        failed.is_empty(),
        "{} of {} variants failed: {failed:#?}",
        failed.len(),
        variants.len()
    );
}

fn check_delivered(v: &Variant, data: &[u8], seen: &[(String, String)]) {
    {
        assert_eq!(
            owned_lines(data).len(),
            3 + v.in_body,
            "{}: no other line names a field of ours: {:?}",
            v.name,
            owned_lines(data)
        );
        // Python's reading: exactly our three, with our values.
        let py_names: Vec<&str> = seen.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            py_names,
            ["X-CLOUD-SEC-AV-Info", "X-CLOUD-SEC-AV-SCL", "X-CLOUD-SEC-AV-Verdict"],
            "{}: Python reads {seen:?}",
            v.name
        );
        assert_eq!(seen[1].1, "false", "{}", v.name);
        assert_eq!(
            seen[2].1, "action=deliver; score=0.0; enforced=yes",
            "{}: our verdict is not extended",
            v.name
        );
        let text = data.escape_ascii().to_string().replace("\\n", "\\n\n");
        // Our prefix: Received (folded), then our three fields, each once.
        let kept = as_stored(&v.kept);
        assert!(
            data.ends_with(&kept),
            "{}: everything but our fields arrives unchanged\n--- delivered:\n{text}\n--- expected after our fields:\n{}",
            v.name,
            kept.escape_ascii().to_string().replace("\\n", "\\n\n")
        );
        let prefix = String::from_utf8_lossy(&data[..data.len() - kept.len()]).into_owned();
        let names: Vec<&str> = prefix
            .split('\n')
            .filter(|l| !l.is_empty() && !l.starts_with([' ', '\t']))
            .map(|l| l.split(':').next().unwrap())
            .collect();
        assert_eq!(
            names,
            [
                "Received",
                "X-CLOUD-SEC-AV-Info",
                "X-CLOUD-SEC-AV-SCL",
                "X-CLOUD-SEC-AV-Verdict"
            ],
            "{}: {prefix}",
            v.name
        );
        assert!(
            prefix.contains(
                "X-CLOUD-SEC-AV-SCL: false\nX-CLOUD-SEC-AV-Verdict: action=deliver; score=0.0; enforced=yes\n"
            ),
            "{}: {prefix}",
            v.name
        );
    }
}

/// The bytes the gateway will relay, exactly (the downstream is unreachable,
/// `queue export` prints them): our four fields, then the sent message
/// without the forged octets, bare CRs and LFs as sent.
#[test]
fn queued_bytes_are_exactly_ours_then_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(&dir.path().join("pki"));
    let server = pki.leaf("gateway", &["localhost", "127.0.0.1"]);
    let opts = Options {
        deliver_to: vec![format!("127.0.0.1:{}", support::free_port())],
        retry: vec!["1h".into()],
        ..Options::default()
    };
    let gw = Gateway::start_with_text(dir.path(), &config_text(dir.path(), &pki, &server, &opts));
    let mut c = Client::connect_tls(gw.smtp, &pki.ca, None);
    for v in variants() {
        let r = c.send_bdat("a@example.org", &["user@contoso.com"], &v.sent);
        assert_eq!(r.code, 250, "{}: {r}", v.name);
        let id = r.text().rsplit(' ').next().unwrap().to_string();
        let out = std::process::Command::new(support::gateway::binary())
            .args(["queue", "export", &id, "--config"])
            .arg(&gw.config)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let exported = out.stdout;
        assert!(exported.ends_with(&v.kept), "{}: {}", v.name, exported.escape_ascii());
        let prefix = String::from_utf8(exported[..exported.len() - v.kept.len()].to_vec()).unwrap();
        assert!(prefix.starts_with("Received: from client.test"), "{}: {prefix}", v.name);
        assert!(
            prefix.ends_with(
                "\r\nX-CLOUD-SEC-AV-SCL: false\r\nX-CLOUD-SEC-AV-Verdict: action=deliver; score=0.0; enforced=yes\r\n"
            ),
            "{}: {prefix}",
            v.name
        );
        assert_eq!(
            prefix.matches("\r\nX-CLOUD-SEC-AV-Info: ").count(),
            1,
            "{}: {prefix}",
            v.name
        );
    }
}

/// The fixtures of every other test (DKIM-signed mail among them) carry no
/// field of ours under any reading: stamping removes nothing and refuses
/// nothing, so their bytes arrive unchanged.
#[test]
fn the_fixtures_read_one_way() {
    let mut files = Vec::new();
    let mut dirs = vec![std::path::PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures"
    ))];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "eml") {
                files.push(path);
            }
        }
    }
    assert!(files.len() > 100, "{} fixtures", files.len());
    for path in files {
        let raw = std::fs::read(&path).unwrap();
        let removed = exogate::message::owned::removals(&raw, Some("gw.test"));
        if owned_lines(&raw).is_empty() {
            assert!(removed.is_empty(), "{}: {removed:?}", path.display());
        }
        let prefix = b"X-CLOUD-SEC-AV-SCL: false\r\n";
        assert!(
            exogate::message::owned::verify(prefix, &raw, &removed, Some("gw.test")).is_ok(),
            "{}",
            path.display()
        );
    }
}
