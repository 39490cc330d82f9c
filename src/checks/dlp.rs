//! The `dlp` check: sensitive data leaving the tenant. It runs on outgoing
//! mail only (and on internal mail when `internal = true`); inbound mail is
//! never scanned, since a customer sending us their card number is not a leak.
//!
//! It looks for payment card numbers (Luhn, issuer prefix and length), IBANs
//! (country length, mod-97) and administrator-defined patterns, in the
//! decoded subject, the body text (text and HTML parts, also of attached
//! messages) and text-like attachments (text/*, CSV, JSON, XML, …). Each text
//! is cut at `max_text` bytes. The same value seen twice (text and HTML
//! alternatives, a quoted reply) counts once. When at least `min_matches`
//! distinct values are found, one finding per kind is returned, forcing
//! `action` (default quarantine; `deliver` records the finding with its
//! `score` only).
//!
//! ```toml
//! [[policy.default.check]]
//! kind = "dlp"
//! min_matches = 1
//! action = "quarantine"
//! patterns = [ { name = "project-falcon", pattern = '(?i)\bproject\s+falcon\b' } ]
//! ```
//!
//! Invariants: no full card number, IBAN or pattern match ever appears in a
//! finding or a log line, only masked values (`4111********1111`); patterns
//! are bounded like the content rules and one that matches the empty text is
//! refused; the number of values collected is bounded.

mod detect;

use std::collections::HashSet;
use std::sync::Arc;

use async_trait::async_trait;
use regex::{Regex, RegexBuilder};

use super::content::{self, text};
use crate::config::reader::Section;
use crate::message::envelope::Direction;
use crate::message::verdict::{Action, Finding};
use crate::scan::check::{BuildContext, Check, CheckError, ScanInput};
use crate::scan::view::Origin;

/// Distinct values collected per message.
const MAX_DISTINCT: usize = 1000;
/// Masked values quoted in one finding.
const MAX_QUOTED: usize = 5;
const MAX_PATTERNS: usize = 200;

struct Pattern {
    name: String,
    regex: Regex,
}

struct Dlp {
    internal: bool,
    cards: bool,
    ibans: bool,
    attachments: bool,
    patterns: Vec<Pattern>,
    min_matches: usize,
    action: Action,
    score: f64,
    max_text: usize,
}

/// One distinct value found.
struct Hit {
    /// "card", "iban" or a pattern name: becomes the tag `dlp-<kind>`.
    kind: String,
    /// "Visa", "IBAN", …: what the masked value is.
    label: String,
    masked: String,
    source: String,
}

#[async_trait]
impl Check for Dlp {
    fn kind(&self) -> &'static str {
        "dlp"
    }

    async fn scan(&self, input: &ScanInput<'_>) -> Result<Vec<Finding>, CheckError> {
        let applies = match input.direction {
            Direction::Outgoing => true,
            Direction::Internal => self.internal,
            Direction::Inbound => false,
        };
        if !applies {
            return Ok(Vec::new());
        }
        let mut seen: HashSet<(String, String)> = HashSet::new();
        let mut hits: Vec<Hit> = Vec::new();
        for (source, text) in self.texts(input) {
            if seen.len() >= MAX_DISTINCT {
                break;
            }
            self.find(&text, &source, &mut seen, &mut hits);
        }
        if hits.is_empty() || hits.len() < self.min_matches {
            if !hits.is_empty() {
                tracing::debug!(
                    found = hits.len(),
                    min_matches = self.min_matches,
                    "dlp: below threshold"
                );
            }
            return Ok(Vec::new());
        }
        Ok(self.findings(hits))
    }
}

impl Dlp {
    /// The texts to scan, each with the words that say where it came from.
    fn texts(&self, input: &ScanInput<'_>) -> Vec<(String, String)> {
        let mut out = Vec::new();
        if let Some(subject) = input.message.subject() {
            let cut = text::floor_char_boundary(subject, self.max_text);
            out.push(("the subject".to_string(), subject.get(..cut).unwrap_or("").to_string()));
        }
        out.push(("the body".to_string(), input.view.body_text(self.max_text)));
        if self.attachments {
            for part in &input.view.parts {
                let Origin::Attachment(index) = part.origin else {
                    continue;
                };
                let Some(a) = input.view.attachments.get(index) else {
                    continue;
                };
                let name = a.name.as_deref().map_or_else(|| "(unnamed)".to_string(), safe_name);
                let cut = text::floor_char_boundary(&part.text, self.max_text);
                out.push((
                    format!("attachment {name:?}"),
                    part.text.get(..cut).unwrap_or("").to_string(),
                ));
            }
        }
        out
    }

    fn find(&self, text: &str, source: &str, seen: &mut HashSet<(String, String)>, hits: &mut Vec<Hit>) {
        let mut add = |kind: &str, value: String, label: &str| {
            if seen.len() < MAX_DISTINCT && seen.insert((kind.to_string(), value.clone())) {
                hits.push(Hit {
                    kind: kind.to_string(),
                    label: label.to_string(),
                    masked: detect::mask(&value),
                    source: source.to_string(),
                });
            }
        };
        if self.cards {
            for (digits, brand) in detect::find_cards(text) {
                add("card", digits, brand);
            }
        }
        if self.ibans {
            for iban in detect::find_ibans(text) {
                add("iban", iban, "IBAN");
            }
        }
        for p in &self.patterns {
            for m in p.regex.find_iter(text).take(detect::MAX_HITS) {
                add(&p.name, m.as_str().to_string(), &p.name);
            }
        }
    }

    /// One finding per kind, in the order kinds were first found.
    fn findings(&self, hits: Vec<Hit>) -> Vec<Finding> {
        let mut kinds: Vec<&str> = Vec::new();
        for h in &hits {
            if !kinds.contains(&h.kind.as_str()) {
                kinds.push(&h.kind);
            }
        }
        kinds
            .into_iter()
            .map(|kind| {
                let of_kind: Vec<&Hit> = hits.iter().filter(|h| h.kind == kind).collect();
                let what = match kind {
                    "card" => "payment card number(s)".to_string(),
                    "iban" => "IBAN(s)".to_string(),
                    name => format!("match(es) of pattern {name:?}"),
                };
                let mut quoted: Vec<String> = of_kind
                    .iter()
                    .take(MAX_QUOTED)
                    .map(|h| format!("{} {} in {}", h.label, h.masked, h.source))
                    .collect();
                if of_kind.len() > MAX_QUOTED {
                    quoted.push(format!("and {} more", of_kind.len() - MAX_QUOTED));
                }
                let reason = format!("{} {what}: {}", of_kind.len(), quoted.join(", "));
                let f = Finding::new(self.score, format!("dlp-{kind}"), reason);
                match self.action {
                    Action::Deliver => f,
                    forced => f.forcing(forced),
                }
            })
            .collect()
    }
}

/// An attachment name fit for a finding: short, and with its digits hidden
/// when it has enough of them to be a card number ("4111 1111 1111 1111.txt").
fn safe_name(name: &str) -> String {
    let short: String = name.chars().take(100).collect();
    if short.chars().filter(char::is_ascii_digit).count() >= 12 {
        short
            .chars()
            .map(|c| if c.is_ascii_digit() { '#' } else { c })
            .collect()
    } else {
        short
    }
}

fn read_pattern(section: &Section) -> Option<Pattern> {
    let name = section.opt_string("name");
    let pattern = section.opt_string("pattern");
    let mut ok = true;
    match name.as_deref() {
        None => {
            section.error(
                "name",
                "missing; every pattern needs a name (it becomes the tag dlp-NAME)",
            );
            ok = false;
        }
        Some(n) if !content::valid_name(n) => {
            section.error("name", format!("{n:?}: use 1 to 64 letters, digits, '-', '_' or '.'"));
            ok = false;
        }
        Some(n @ ("card" | "iban")) => {
            section.error("name", format!("{n:?} is reserved for the built-in detector"));
            ok = false;
        }
        Some(_) => {}
    }
    let regex = match pattern.as_deref() {
        None => {
            section.error("pattern", "missing");
            None
        }
        Some(p) => match RegexBuilder::new(p)
            .size_limit(content::RULE_SIZE_LIMIT)
            .dfa_size_limit(content::DFA_SIZE_LIMIT)
            .build()
        {
            Ok(r) if r.is_match("") => {
                section.error("pattern", "matches empty text; it would match everywhere");
                None
            }
            Ok(r) => Some(r),
            Err(e) => {
                section.error("pattern", format!("invalid regex: {e}"));
                None
            }
        },
    };
    let (name, regex) = (name?, regex?);
    ok.then_some(Pattern { name, regex })
}

pub(crate) fn build(options: &Section, _cx: &BuildContext) -> Option<Arc<dyn Check>> {
    let internal = options.bool_or("internal", false);
    let cards = options.bool_or("cards", true);
    let ibans = options.bool_or("ibans", true);
    let attachments = options.bool_or("attachments", true);
    let min_matches = options.u64_in("min_matches", 1, 1, MAX_DISTINCT as u64);
    let action = options.choice_or("action", Action::Quarantine, &Action::CHOICES);
    let score = options.f64_or("score", 0.0);
    let max_text = options.size_or("max_text", content::DEFAULT_MAX_TEXT);
    let mut ok = true;
    if max_text == 0 {
        options.error("max_text", "must be larger than zero");
        ok = false;
    }
    if !score.is_finite() {
        options.error("score", "must be a finite number");
        ok = false;
    }
    let sections = options.sections("patterns");
    if sections.len() > MAX_PATTERNS {
        options.error(
            "patterns",
            format!("at most {MAX_PATTERNS} patterns, found {}", sections.len()),
        );
        ok = false;
    }
    let mut patterns: Vec<Pattern> = Vec::new();
    for section in &sections {
        match read_pattern(section) {
            Some(p) if patterns.iter().any(|q| q.name == p.name) => {
                section.error("name", format!("{:?} is used by another pattern", p.name));
                ok = false;
            }
            Some(p) => patterns.push(p),
            None => ok = false,
        }
    }
    drop(sections);
    ok.then(|| {
        Arc::new(Dlp {
            internal,
            cards,
            ibans,
            attachments,
            patterns,
            min_matches: usize::try_from(min_matches).unwrap_or(1),
            action,
            score,
            max_text: usize::try_from(max_text).unwrap_or(usize::MAX),
        }) as Arc<dyn Check>
    })
}

#[cfg(test)]
mod tests;
