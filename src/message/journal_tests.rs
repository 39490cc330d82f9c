//! Every journal fixture (tests/fixtures/journal) against its sidecar JSON,
//! and hostile variations of them: cut at every byte, no panic.

use super::*;
use serde_json::Value;
use std::path::PathBuf;

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/journal")
}

fn fixtures() -> Vec<(String, Vec<u8>, Value)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "eml") {
            let json = path.with_extension("json");
            let sidecar: Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            out.push((name, std::fs::read(&path).unwrap(), sidecar));
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

fn sha256_hex(data: &[u8]) -> String {
    ring::digest::digest(&ring::digest::SHA256, data)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn opt(v: &Value) -> Option<String> {
    v.as_str().map(str::to_string)
}

#[test]
fn every_fixture_parses_as_its_sidecar_says() {
    let all = fixtures();
    assert!(
        all.len() >= 12,
        "expected the 12 committed fixtures, found {}",
        all.len()
    );
    for (name, raw, want) in &all {
        assert_eq!(is_report(raw), want["is_journal_report"] == true, "{name}: is_report");
        let got = parse(raw);
        if want["parseable"] != true {
            let err = got.expect_err(name);
            if want["is_journal_report"] == true {
                assert_ne!(err, JournalError::NotAReport, "{name}");
            } else {
                assert_eq!(err, JournalError::NotAReport, "{name}");
            }
            continue;
        }
        let report = got.unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(
            report.tenant_id,
            opt(&want["report"]["tenant_id"]),
            "{name}: report tenant id"
        );
        assert_eq!(
            report.network_message_id,
            opt(&want["report"]["network_message_id"]),
            "{name}: report network message id"
        );
        let env = &want["envelope"];
        assert_eq!(
            report.envelope.sender,
            env["sender"].as_str().unwrap(),
            "{name}: sender"
        );
        assert_eq!(
            report.envelope.on_behalf_of,
            opt(&env["on_behalf_of"]),
            "{name}: on-behalf-of"
        );
        assert_eq!(
            report.envelope.subject,
            env["subject"].as_str().unwrap(),
            "{name}: subject"
        );
        assert_eq!(
            report.envelope.message_id,
            env["message_id"].as_str().unwrap(),
            "{name}: message id"
        );
        let rcpts = env["recipients"].as_array().unwrap();
        assert_eq!(report.envelope.recipients.len(), rcpts.len(), "{name}: recipients");
        let domains: Vec<String> = want["tenant"]["domains"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d.as_str().unwrap().to_string())
            .collect();
        for (got, want) in report.envelope.recipients.iter().zip(rcpts) {
            assert_eq!(got.address, want["address"].as_str().unwrap(), "{name}");
            assert_eq!(
                got.kind.as_str(),
                want["kind"].as_str().unwrap(),
                "{name}: {}",
                got.address
            );
            assert_eq!(
                got.expanded_from,
                opt(&want["expanded_from"]),
                "{name}: {}",
                got.address
            );
            assert_eq!(
                got.forwarded_from,
                opt(&want["forwarded_from"]),
                "{name}: {}",
                got.address
            );
            let ascii = got.domain_ascii().unwrap();
            assert_eq!(ascii, want["domain_ascii"].as_str().unwrap(), "{name}: {}", got.address);
            assert_eq!(
                domains.contains(&ascii),
                want["internal"] == true,
                "{name}: {} internal",
                got.address
            );
        }
        let orig = &want["original"];
        assert_eq!(
            report.original.len() as u64,
            orig["size"].as_u64().unwrap(),
            "{name}: original size"
        );
        assert_eq!(
            sha256_hex(&report.original),
            orig["sha256"].as_str().unwrap(),
            "{name}: original bytes"
        );
        assert_eq!(
            report.original_message_id(),
            opt(&orig["message_id"]),
            "{name}: original Message-ID"
        );
        assert_eq!(
            report.original_network_message_id(),
            opt(&orig["network_message_id"]),
            "{name}: original Network-Message-Id"
        );
    }
}

#[test]
fn damaged_reports_say_what_is_missing() {
    let raw = std::fs::read(dir().join("damaged-truncated-envelope.eml")).unwrap();
    assert_eq!(parse(&raw).unwrap_err(), JournalError::Missing("Message-ID"));
    let raw = std::fs::read(dir().join("damaged-no-original.eml")).unwrap();
    assert_eq!(parse(&raw).unwrap_err(), JournalError::Missing("Message-ID"));
    let raw = std::fs::read(dir().join("not-a-report.eml")).unwrap();
    assert_eq!(parse(&raw).unwrap_err(), JournalError::NotAReport);
}

#[test]
fn recipient_notes_with_and_without_the_comma() {
    let r = recipient(RecipientKind::To, "a@x.example, Expanded: dl@x.example").unwrap();
    assert_eq!(
        (r.address.as_str(), r.expanded_from.as_deref()),
        ("a@x.example", Some("dl@x.example"))
    );
    let r = recipient(RecipientKind::Cc, "<a@x.example> Forwarded: <u@x.example>").unwrap();
    assert_eq!(
        (r.address.as_str(), r.forwarded_from.as_deref()),
        ("a@x.example", Some("u@x.example"))
    );
    let r = recipient(RecipientKind::Recipient, "expanded:odd@x.example").unwrap();
    assert_eq!((r.address.as_str(), r.expanded_from), ("expanded:odd@x.example", None));
    assert!(recipient(RecipientKind::To, "  ").is_err());
    assert!(recipient(RecipientKind::To, "no-at-sign").is_err());
}

#[test]
fn unknown_fields_are_ignored_and_names_are_case_blind() {
    let text = "SENDER: <a@x.example>\r\nLabel: x\r\nSentUtc: 2024\r\nmessage-id: <m@x>\r\nsubject: hi\r\nrecipient: b@y.example\r\n";
    let env = envelope_from_text(text).unwrap();
    assert_eq!(env.sender, "a@x.example");
    assert_eq!(env.message_id, "<m@x>");
    assert_eq!(env.recipients.len(), 1);
}

#[test]
fn hostile_cuts_and_flips_never_panic() {
    for (name, raw, _) in fixtures() {
        for cut in 0..raw.len() {
            let _ = parse(&raw[..cut]);
        }
        let mut flipped = raw.clone();
        for i in (0..flipped.len()).step_by(7) {
            flipped[i] ^= 0x55;
            let _ = parse(&flipped);
        }
        let _ = name;
    }
}

#[test]
fn recipients_are_capped() {
    let mut text = String::from("Sender: a@x.example\nSubject: s\nMessage-ID: <m@x>\n");
    for i in 0..=MAX_RECIPIENTS {
        text.push_str(&format!("Recipient: u{i}@x.example\n"));
    }
    assert_eq!(envelope_from_text(&text).unwrap_err(), JournalError::TooManyRecipients);
}

#[test]
fn a_base64_attached_original_is_decoded() {
    let raw = b"X-MS-Journal-Report:\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n\r\nSender: a@x.example\r\nSubject: s\r\nMessage-Id: <m@x>\r\nTo: c@y.example\r\n\r\n--b\r\nContent-Type: Message/RFC822\r\nContent-Transfer-Encoding: base64\r\n\r\nU3ViamVjdDogaGkNCg0KYm9keQ0K\r\n--b--\r\n";
    let r = parse(raw).unwrap();
    assert_eq!(&r.original[..], b"Subject: hi\r\n\r\nbody\r\n");
}
