//! `exogate scan` as an admin runs it: the real binary on files and
//! standard input, its JSON lines and its human output, inputs it cannot
//! judge (a missing file, a message over the gateway's size limit, bytes
//! that are no message), a message over the policy's scan limit, and a
//! virus found by a real clamd. The EICAR string is assembled at run time.

#[path = "support/clamd.rs"]
mod clamd_support;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use serde_json::Value;

fn config(dir: &Path, policy: &str) -> std::path::PathBuf {
    let path = dir.join("gateway.toml");
    std::fs::write(
        &path,
        format!(
            r#"
[server]
hostname = "gw.test.invalid"
listen = ["127.0.0.1:9"]
state_dir = "state"
max_message_size = 65536

[tls]
generate = true
require = false

[dns]
servers = ["127.0.0.1:9"]
timeout = "20ms"
attempts = 1
message_timeout = "20ms"

[[tenant]]
portal = "contoso"
domains = ["contoso.com"]
deliver_to = ["127.0.0.1:9"]
mode = "detect"

[[tenant]]
portal = "fabrikam"
domains = ["fabrikam.com"]
deliver_to = ["127.0.0.1:9"]

{policy}
"#
        ),
    )
    .unwrap();
    path
}

/// Runs `exogate scan` with `stdin`; returns exit code, stdout, stderr.
fn scan(config: &Path, args: &[&str], stdin: &[u8]) -> (i32, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_exogate"))
        .arg("scan")
        .arg("--config")
        .arg(config)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("exogate runs");
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin).unwrap();
    drop(input);
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn lines(stdout: &str) -> Vec<Value> {
    stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

const HAM: &str = "From: Alice <alice@example.org>\r\nTo: bob@contoso.com\r\nSubject: lunch\r\n\
Message-ID: <1@example.org>\r\nDate: Tue, 1 Dec 2026 10:00:00 +0000\r\n\r\nSee you at noon.\r\n";

/// An HTML link whose text shows the tenant's sign-in page but goes elsewhere.
const MISMATCH: &str = "From: IT Desk <it@mailer.example.net>\r\nTo: bob@contoso.com\r\nSubject: verify\r\n\
MIME-Version: 1.0\r\nContent-Type: text/html; charset=utf-8\r\n\r\n\
<p>Sign in at <a href=\"http://203.0.113.9/login\">https://login.contoso.com/</a></p>\r\n";

#[test]
fn files_and_stdin_each_get_one_json_line_and_a_missing_file_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), "");
    let ham = dir.path().join("ham.eml");
    std::fs::write(&ham, HAM).unwrap();
    let missing = dir.path().join("missing.eml");
    let (code, out, err) = scan(
        &cfg,
        &["--json", ham.to_str().unwrap(), missing.to_str().unwrap(), "-"],
        MISMATCH.as_bytes(),
    );
    assert_eq!(code, 1, "a missing file makes the exit status 1: {err}");
    let rows = lines(&out);
    assert_eq!(rows.len(), 3, "{out}");
    // Input order, every field of the schema present.
    for (row, file) in rows.iter().zip([ham.to_str().unwrap(), missing.to_str().unwrap(), "-"]) {
        assert_eq!(row["file"], file);
        for key in ["action", "score", "findings", "error"] {
            assert!(row.get(key).is_some(), "{key} missing in {row}");
        }
    }
    assert_eq!(rows[0]["action"], "deliver", "{}", rows[0]);
    assert_eq!(rows[0]["error"], Value::Null);
    assert_eq!(rows[0]["tenant"], "contoso");
    assert!(
        rows[1]["error"].as_str().unwrap().contains("cannot read"),
        "{}",
        rows[1]
    );
    assert_eq!(rows[1]["action"], Value::Null);
    // stdin: the mismatch and the IP host are found; the tenant is in detect
    // mode, so the verdict's action is reported and "enforced" says deliver.
    let tags: Vec<&str> = rows[2]["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["tag"].as_str().unwrap())
        .collect();
    assert!(tags.contains(&"link-text-mismatch"), "{}", rows[2]);
    assert!(tags.contains(&"ip-url"), "{}", rows[2]);
    for f in rows[2]["findings"].as_array().unwrap() {
        assert_eq!(f["check"], "urls", "{f}");
        assert!(f["score"].as_f64().unwrap() > 0.0);
        assert!(!f["reason"].as_str().unwrap().is_empty());
    }
    let score = rows[2]["score"].as_f64().unwrap();
    assert!(score >= 5.0, "{}", rows[2]);
    assert_eq!(rows[2]["action"], "junk");
    assert_eq!(rows[2]["enforced"], "deliver");
}

#[test]
fn human_output_says_why_and_tenant_and_direction_can_be_chosen() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), "");
    // fabrikam is inline: the action is enforced. The recipient is contoso's,
    // so without --tenant contoso would judge it.
    let (code, out, err) = scan(
        &cfg,
        &["--tenant", "fabrikam", "--direction", "internal", "-"],
        MISMATCH.as_bytes(),
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("action: junk"), "{out}");
    assert!(
        out.contains("tenant: fabrikam (inline mode: enforced as junk)"),
        "{out}"
    );
    assert!(out.contains("direction: internal (--direction)"), "{out}");
    assert!(out.contains("urls/link-text-mismatch"), "{out}");
    assert!(out.contains("login.contoso.com"), "{out}");

    let (code, _, err) = scan(&cfg, &["--tenant", "nobody", "-"], HAM.as_bytes());
    assert_eq!(code, 1);
    assert!(
        err.contains("--tenant nobody: no such tenant; configured: contoso, fabrikam"),
        "{err}"
    );
}

#[test]
fn oversize_and_malformed_inputs_get_a_clear_result() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), "[policy.default]\nscan_max_size = \"4KiB\"\n");
    // Over the scan limit: only the header is judged, and the result says so.
    let over_scan = format!(
        "{}{}",
        MISMATCH,
        "<p>filler filler filler filler filler filler filler filler</p>\r\n".repeat(200)
    );
    let over_scan_path = dir.path().join("over-scan.eml");
    std::fs::write(&over_scan_path, &over_scan).unwrap();
    // Over server.max_message_size (64 KiB): the gateway would refuse it.
    let too_big = format!("{HAM}{}", "x".repeat(70_000));
    let too_big_path = dir.path().join("too-big.eml");
    std::fs::write(&too_big_path, too_big).unwrap();
    // Bytes that are no message at all.
    let garbage: Vec<u8> = (0..5000u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect();
    let garbage_path = dir.path().join("garbage.eml");
    std::fs::write(&garbage_path, &garbage).unwrap();
    let empty_path = dir.path().join("empty.eml");
    std::fs::write(&empty_path, b"").unwrap();

    let (code, out, err) = scan(
        &cfg,
        &[
            "--json",
            "--tenant",
            "contoso",
            over_scan_path.to_str().unwrap(),
            too_big_path.to_str().unwrap(),
            garbage_path.to_str().unwrap(),
            empty_path.to_str().unwrap(),
        ],
        b"",
    );
    assert_eq!(code, 1, "{err}");
    assert!(!err.contains("panicked"), "{err}");
    let rows = lines(&out);
    assert_eq!(rows.len(), 4, "{out}");
    let tags = |row: &Value| -> Vec<String> {
        row["findings"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["tag"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(rows[0]["error"], Value::Null);
    assert!(tags(&rows[0]).contains(&"header-only-scan".to_string()), "{}", rows[0]);
    assert!(
        !tags(&rows[0]).contains(&"link-text-mismatch".to_string()),
        "the body past the limit is not judged: {}",
        rows[0]
    );
    assert!(
        rows[1]["error"]
            .as_str()
            .unwrap()
            .contains("server.max_message_size (65536 bytes)"),
        "{}",
        rows[1]
    );
    assert_eq!(
        rows[2]["error"],
        Value::Null,
        "garbage is judged, not an error: {}",
        rows[2]
    );
    assert!(rows[2]["action"].is_string(), "{}", rows[2]);
    assert!(rows[3]["error"].as_str().unwrap().contains("empty"), "{}", rows[3]);
}

#[test]
fn a_signature_found_by_clamd_is_quarantined() {
    let clamd = clamd_support::Clamd::start();
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(
        dir.path(),
        &format!(
            "[policy.default]\n[[policy.default.check]]\nkind = \"malware\"\nclamd = \"{}\"\n",
            clamd.tcp()
        ),
    );
    // The built-in EICAR check would answer first: clamd's own test
    // signature (a marker string) shows that clamd judged the attachment.
    let message = format!(
        "From: a@example.org\r\nTo: bob@contoso.com\r\nSubject: file\r\nMIME-Version: 1.0\r\n\
Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n\
--b\r\nContent-Type: application/octet-stream; name=x.bin\r\nContent-Disposition: attachment; filename=x.bin\r\n\r\n\
{}\r\n--b--\r\n",
        clamd_support::MARKER
    );
    let (code, out, err) = scan(&cfg, &["--json", "-"], message.as_bytes());
    assert_eq!(code, 0, "{err}");
    let row = &lines(&out)[0];
    assert_eq!(row["action"], "quarantine", "{row}");
    assert!(
        row["findings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["check"] == "malware" && f["reason"].as_str().unwrap().contains("Gateway.Test.Marker")),
        "clamd's signature names the finding: {row}"
    );
}
