//! The content check on real-looking mail: what the rules must catch (plain,
//! quoted-printable, base64 and HTML-only bodies, encoded subjects, headers)
//! and the look-alikes they must leave alone (hidden HTML, other targets,
//! word fragments, text past `max_text`).

use super::*;
use crate::checks::test_support::{build, build_errors, scan};
use crate::message::envelope::Direction;

const PRIZE_SCAM: &[u8] = include_bytes!("../../../tests/fixtures/content/prize-scam.eml");
const PRIZE_HTML_ONLY: &[u8] = include_bytes!("../../../tests/fixtures/content/prize-html-only.eml");
const PRIZE_BASE64: &[u8] = include_bytes!("../../../tests/fixtures/content/prize-base64.eml");
const NEWSLETTER_CLEAN: &[u8] = include_bytes!("../../../tests/fixtures/content/newsletter-clean.eml");
const WIRE_CLEAN: &[u8] = include_bytes!("../../../tests/fixtures/content/wire-confirmation-clean.eml");
const GTUBE_MAIL: &[u8] = include_bytes!("../../../tests/fixtures/content/gtube.eml");

const RULES: &str = r#"
rules = [
  { name = "prize", pattern = '\byou (have )?won\b', score = 4.0, where = "body" },
  { name = "wire-urgent", pattern = 'urgent.{0,40}wire transfer', score = 3.0, where = "subject" },
  { name = "phpmailer", pattern = '^X-Mailer: PHPMailer', score = 2.0, where = "headers" },
  { name = "gift-cards", pattern = '\bgift ?cards?\b', score = 2.5, where = "any" },
]
"#;

fn tags(options: &str, raw: &[u8]) -> Vec<(String, f64)> {
    let check = build("content", options);
    scan(&*check, raw, "sender@example.org", Direction::Inbound)
        .into_iter()
        .map(|f| (f.tag, f.score))
        .collect()
}

fn tag_names(options: &str, raw: &[u8]) -> Vec<String> {
    tags(options, raw).into_iter().map(|(t, _)| t).collect()
}

#[test]
fn body_rules_match_plain_quoted_printable_text() {
    assert_eq!(
        tags(RULES, PRIZE_SCAM),
        vec![("prize".to_string(), 4.0), ("gift-cards".to_string(), 2.5)]
    );
}

#[test]
fn body_rules_see_through_html_tags_and_base64() {
    assert_eq!(tag_names(RULES, PRIZE_HTML_ONLY), vec!["prize"]);
    // Base64 body, base64-encoded subject, PHPMailer header: three targets.
    assert_eq!(
        tag_names(RULES, PRIZE_BASE64),
        vec!["prize", "wire-urgent", "phpmailer"]
    );
}

#[test]
fn hidden_html_other_targets_and_word_fragments_do_not_match() {
    // "you have won" only in a comment, a style, a script and an alt text;
    // "PHPMailer" only in the body; "wonder", "team won", "giving".
    assert!(tags(RULES, NEWSLETTER_CLEAN).is_empty());
    // "wire transfer" without "urgent", and "urgent" only in the body.
    assert!(tags(RULES, WIRE_CLEAN).is_empty());
}

#[test]
fn a_rule_matching_in_several_places_scores_once_and_says_where() {
    let raw = b"From: a@example.org\r\nSubject: gift card offer\r\n\r\nFree gift cards inside. Gift card!\r\n";
    let check = build("content", RULES);
    let found = scan(&*check, raw, "a@example.org", Direction::Inbound);
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].score, 2.5);
    assert!(found[0].reason.contains("the subject"), "{}", found[0].reason);
}

#[test]
fn case_sensitivity_is_an_option() {
    assert_eq!(tag_names(RULES, PRIZE_SCAM), vec!["prize", "gift-cards"]);
    let sensitive = format!("case_insensitive = false\n{RULES}");
    // "YOU HAVE WON" is upper case in the fixture; "gift cards" is not.
    assert_eq!(tag_names(&sensitive, PRIZE_SCAM), vec!["gift-cards"]);
}

#[test]
fn text_past_max_text_is_not_scanned() {
    let mut raw = b"From: a@example.org\r\nSubject: report\r\n\r\n".to_vec();
    raw.extend(std::iter::repeat_n(b"lorem ipsum dolor sit amet\r\n".as_slice(), 100).flatten());
    raw.extend_from_slice(b"you have won\r\n");
    assert_eq!(tag_names(RULES, &raw), vec!["prize"]);
    assert!(tags(&format!("max_text = 1000\n{RULES}"), &raw).is_empty());
}

#[test]
fn rule_action_forces_and_default_is_score_only() {
    let options = r#"rules = [
      { name = "block-me", pattern = 'block me', where = "subject", action = "reject" },
      { name = "mild", pattern = 'hello' },
    ]"#;
    let raw = b"From: a@example.org\r\nSubject: please block me\r\n\r\nhello\r\n";
    let found = scan(&*build("content", options), raw, "a@example.org", Direction::Inbound);
    assert_eq!(found.len(), 2);
    assert_eq!(
        (found[0].tag.as_str(), found[0].force),
        ("block-me", Some(Action::Reject))
    );
    assert_eq!(
        (found[1].tag.as_str(), found[1].force, found[1].score),
        ("mild", None, 1.0)
    );
}

#[test]
fn gtube_is_built_in_and_forces_junk() {
    let found = scan(
        &*build("content", ""),
        GTUBE_MAIL,
        "admin@contoso.com",
        Direction::Internal,
    );
    assert_eq!(found.len(), 1);
    assert_eq!((found[0].tag.as_str(), found[0].force), ("gtube", Some(Action::Junk)));
    assert!(tags("builtin_rules = false", GTUBE_MAIL).is_empty());
    // The default rules find nothing in ordinary mail, spam included.
    for raw in [PRIZE_SCAM, PRIZE_HTML_ONLY, NEWSLETTER_CLEAN, WIRE_CLEAN] {
        assert!(tags("", raw).is_empty());
    }
}

#[test]
fn bad_rules_are_config_errors_naming_the_rule() {
    let errors = build_errors(
        "content",
        r#"rules = [
          { name = "ok", pattern = 'fine' },
          { name = "broken", pattern = 'unclosed (group' },
          { pattern = 'no name' },
          { name = "ok", pattern = 'duplicate name' },
          { name = "huge", pattern = '(\w{100}){100}' },
          { name = "bad where", pattern = 'x', where = "footer", scroe = 1 },
          { name = "gtube", pattern = 'mine' },
        ]"#,
    );
    let text = errors.join("\n");
    assert!(text.contains("rules[1].pattern: invalid regex"), "{text}");
    assert!(text.contains("rules[2].name: missing"), "{text}");
    assert!(text.contains("rules[3].name: \"ok\" is used by another rule"), "{text}");
    assert!(
        text.contains("rules[4].pattern: invalid regex") && text.contains("size limit"),
        "{text}"
    );
    assert!(text.contains("rules[5].name: \"bad where\""), "{text}");
    assert!(text.contains("rules[5].where: must be one of"), "{text}");
    assert!(text.contains("rules[5].scroe: unknown key"), "{text}");
    assert!(
        text.contains("rules[6].name: \"gtube\" is used by another rule (a built-in rule"),
        "{text}"
    );
    assert!(!text.contains("rules[0]"), "{text}");
}
