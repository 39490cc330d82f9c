//! The DLP check on real-looking outgoing mail: card numbers in plain text,
//! in HTML split across tags, in a CSV attachment, IBANs, custom patterns;
//! and what must stay clean: look-alike numbers, inbound mail, internal mail
//! unless asked, values below the threshold.

use super::*;
use crate::checks::test_support::{build, build_errors, scan};

const CARD_BODY: &[u8] = include_bytes!("../../../tests/fixtures/dlp/outgoing-card-body.eml");
const CARD_HTML: &[u8] = include_bytes!("../../../tests/fixtures/dlp/outgoing-card-html.eml");
const CARD_CSV: &[u8] = include_bytes!("../../../tests/fixtures/dlp/outgoing-csv-attachment.eml");
const IBAN_ALTERNATIVE: &[u8] = include_bytes!("../../../tests/fixtures/dlp/outgoing-iban-alternative.eml");
const LOOKALIKES: &[u8] = include_bytes!("../../../tests/fixtures/dlp/outgoing-lookalikes-clean.eml");
const INBOUND_CARD: &[u8] = include_bytes!("../../../tests/fixtures/dlp/inbound-card.eml");

fn run(options: &str, raw: &[u8], direction: Direction) -> Vec<Finding> {
    let check = build("dlp", options);
    scan(&*check, raw, "someone@contoso.com", direction)
}

fn outgoing(options: &str, raw: &[u8]) -> Vec<Finding> {
    run(options, raw, Direction::Outgoing)
}

#[test]
fn card_in_plain_body_is_quarantined_with_a_masked_value() {
    let found = outgoing("", CARD_BODY);
    assert_eq!(found.len(), 1, "{found:?}");
    let f = &found[0];
    assert_eq!(
        (f.tag.as_str(), f.force, f.score),
        ("dlp-card", Some(Action::Quarantine), 0.0)
    );
    assert!(f.reason.contains("Visa 4111********1111 in the body"), "{}", f.reason);
    assert!(
        !f.reason.contains("4111111111111111") && !f.reason.contains("1111 1111"),
        "{}",
        f.reason
    );
}

#[test]
fn card_split_across_html_tags_and_entities_is_found() {
    let found = outgoing("", CARD_HTML);
    assert_eq!(found.len(), 1);
    assert!(
        found[0].reason.contains("Mastercard 5555********4444"),
        "{}",
        found[0].reason
    );
}

#[test]
fn cards_in_a_csv_attachment_are_counted_once_each() {
    let found = outgoing("", CARD_CSV);
    assert_eq!(found.len(), 1);
    let reason = &found[0].reason;
    // Three rows, two distinct cards.
    assert!(reason.starts_with("2 payment card number(s)"), "{reason}");
    assert!(
        reason.contains("Amex 3782*******0005 in attachment \"cardholders.csv\""),
        "{reason}"
    );
    assert!(reason.contains("Discover 6011********1117"), "{reason}");
    assert!(outgoing("attachments = false", CARD_CSV).is_empty());
}

#[test]
fn a_card_number_in_an_attachment_name_is_not_logged() {
    let raw = b"From: a@contoso.com\r\nSubject: s\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n\
--b\r\nContent-Type: text/plain\r\n\r\nsee file\r\n\
--b\r\nContent-Type: text/plain; name=\"4111111111111111.txt\"\r\nContent-Disposition: attachment; filename=\"4111111111111111.txt\"\r\n\r\n\
card 4111 1111 1111 1111\r\n--b--\r\n";
    let found = outgoing("", raw);
    assert_eq!(found.len(), 1);
    assert!(
        found[0].reason.contains("in attachment \"################.txt\""),
        "{}",
        found[0].reason
    );
    assert!(!found[0].reason.contains("4111111111111111"), "{}", found[0].reason);
}

#[test]
fn iban_in_text_and_html_alternatives_counts_once() {
    let found = outgoing("", IBAN_ALTERNATIVE);
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].tag, "dlp-iban");
    assert!(
        found[0].reason.starts_with("1 IBAN(s): IBAN DE89**************3000"),
        "{}",
        found[0].reason
    );
    // One distinct value, so a threshold of two is not reached.
    assert!(outgoing("min_matches = 2", IBAN_ALTERNATIVE).is_empty());
    assert!(outgoing("ibans = false", IBAN_ALTERNATIVE).is_empty());
}

#[test]
fn card_in_the_subject_is_found() {
    let raw = b"From: a@contoso.com\r\nTo: b@example.net\r\nSubject: card 5555555555554444\r\n\r\nsee subject\r\n";
    let found = outgoing("", raw);
    assert_eq!(found.len(), 1);
    assert!(found[0].reason.contains("in the subject"), "{}", found[0].reason);
}

#[test]
fn look_alike_numbers_are_not_flagged() {
    // Order, invoice and tracking numbers, a 16-digit number failing Luhn, an
    // IBAN with a wrong check digit, dates, UUIDs, amounts, phone numbers.
    assert_eq!(outgoing("", LOOKALIKES), vec![]);
}

#[test]
fn inbound_mail_is_never_scanned_and_internal_only_on_request() {
    assert!(run("", INBOUND_CARD, Direction::Inbound).is_empty());
    assert!(run("internal = true", INBOUND_CARD, Direction::Inbound).is_empty());
    assert!(run("", CARD_BODY, Direction::Internal).is_empty());
    assert_eq!(run("internal = true", CARD_BODY, Direction::Internal).len(), 1);
}

#[test]
fn threshold_counts_distinct_values_across_kinds() {
    let raw = b"From: a@contoso.com\r\nSubject: details\r\n\r\nCard 4111 1111 1111 1111, IBAN GB82 WEST 1234 5698 7654 32\r\n";
    assert!(outgoing("min_matches = 3", raw).is_empty());
    let found = outgoing("min_matches = 2", raw);
    let tags: Vec<&str> = found.iter().map(|f| f.tag.as_str()).collect();
    assert_eq!(tags, ["dlp-card", "dlp-iban"]);
}

#[test]
fn action_can_reject_junk_or_only_score() {
    assert_eq!(
        outgoing("action = \"reject\"", CARD_BODY)[0].force,
        Some(Action::Reject)
    );
    assert_eq!(outgoing("action = \"junk\"", CARD_BODY)[0].force, Some(Action::Junk));
    let f = &outgoing("action = \"deliver\"\nscore = 6.0", CARD_BODY)[0];
    assert_eq!((f.force, f.score), (None, 6.0));
    assert!(outgoing("cards = false", CARD_BODY).is_empty());
}

#[test]
fn custom_patterns_are_named_and_masked() {
    let options = r#"patterns = [
      { name = "project-falcon", pattern = '(?i)\bproject\s+falcon\b' },
      { name = "employee-id", pattern = '\bEMP-\d{6}\b' },
    ]"#;
    let raw =
        b"From: a@contoso.com\r\nSubject: Project Falcon status\r\n\r\nOwner EMP-004217; see PROJECT FALCON plan.\r\n";
    let found = outgoing(options, raw);
    let tags: Vec<&str> = found.iter().map(|f| f.tag.as_str()).collect();
    assert_eq!(tags, ["dlp-project-falcon", "dlp-employee-id"]);
    assert!(found[1].reason.contains("EMP-**4217"), "{}", found[1].reason);
    assert!(!found[1].reason.contains("EMP-004217"), "{}", found[1].reason);
    // Different case is a different value: two distinct matches.
    assert!(found[0].reason.starts_with("2 match(es)"), "{}", found[0].reason);
    assert!(outgoing(options, CARD_HTML).iter().all(|f| f.tag == "dlp-card"));
}

#[test]
fn bad_patterns_and_options_are_config_errors() {
    let errors = build_errors(
        "dlp",
        r#"min_matches = 0
action = "bounce"
patterns = [
  { name = "ok", pattern = 'fine' },
  { name = "broken", pattern = '[unclosed' },
  { name = "card", pattern = 'x' },
  { name = "empty", pattern = 'a*' },
  { name = "ok", pattern = 'again' },
  { pattern = 'nameless', weight = 2 },
]"#,
    );
    let text = errors.join("\n");
    for expected in [
        "min_matches: must be between 1 and 1000, found 0",
        "action: must be one of",
        "patterns[1].pattern: invalid regex",
        "patterns[2].name: \"card\" is reserved",
        "patterns[3].pattern: matches empty text",
        "patterns[4].name: \"ok\" is used by another pattern",
        "patterns[5].name: missing",
        "patterns[5].weight: unknown key",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in\n{text}");
    }
    assert!(!text.contains("patterns[0]"), "{text}");
}
