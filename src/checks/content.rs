//! The `content` check: administrator-written regex rules with scores, matched
//! against the subject, the header block, or the body text.
//!
//! ```toml
//! [[policy.default.check]]
//! kind = "content"
//! rules = [
//!   { name = "prize", pattern = 'you (have )?won', score = 3.0, where = "body" },
//!   { name = "wire-urgent", pattern = 'urgent.*wire transfer', score = 4.0, where = "any" },
//!   { name = "old-mailer", pattern = '^X-Mailer: .*PHPMailer 5', score = 2.0, where = "headers" },
//!   { name = "test-block", pattern = 'block me', action = "reject", where = "subject" },
//! ]
//! ```
//!
//! Rules are compiled into one `regex::RegexSet` per target (linear time,
//! compiled size bounded), case-insensitive and multi-line by default. A rule
//! scores once per message however often and wherever it matches. Each target
//! text is cut at `max_text` bytes. Body text is the view's
//! ([`crate::scan::view::View::body_text`]: the decoded text/plain parts plus
//! the text HTML parts show, attached messages included); headers are the raw,
//! unfolded header block (encoded words are not decoded there: use
//! `where = "subject"` for the decoded subject).
//!
//! Built-in rules (`builtin_rules = true`, the default): only `gtube`, the
//! GTUBE anti-spam test string in the body, forcing `junk`, so an administrator
//! can check the junk path end to end without real spam. No other phrase
//! rules are shipped: phrase lists are language- and site-specific, and a
//! generic list would cost more false positives than it catches.
//!
//! Invariants: a pattern that does not compile, or compiles too large, is a
//! configuration error naming its `rules[N]` index; the check never fails at
//! scan time.

pub(crate) mod text;

use std::collections::HashSet;
use std::sync::Arc;

use async_trait::async_trait;
use regex::{RegexBuilder, RegexSet, RegexSetBuilder};

use crate::config::reader::Section;
use crate::message::verdict::{Action, Finding};
use crate::scan::check::{BuildContext, Check, CheckError, ScanInput};

pub(crate) const DEFAULT_MAX_TEXT: u64 = 1024 * 1024;
/// Compiled size allowed for one pattern and for one target's set.
pub(crate) const RULE_SIZE_LIMIT: usize = 2 * 1024 * 1024;
pub(crate) const SET_SIZE_LIMIT: usize = 16 * 1024 * 1024;
/// Lazy DFA cache per set.
pub(crate) const DFA_SIZE_LIMIT: usize = 8 * 1024 * 1024;
/// A bound on how many rules one check may hold.
const MAX_RULES: usize = 1000;

/// The GTUBE test string (not a virus signature; safe to keep in source).
const GTUBE: &str = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Where {
    Subject,
    Body,
    Headers,
    Any,
}

const WHERE_CHOICES: [(&str, Where); 4] = [
    ("subject", Where::Subject),
    ("body", Where::Body),
    ("headers", Where::Headers),
    ("any", Where::Any),
];

/// The three texts a rule can look at, in the order they are scanned.
const TARGETS: [(Where, &str); 3] = [
    (Where::Subject, "subject"),
    (Where::Headers, "headers"),
    (Where::Body, "body"),
];

struct Rule {
    name: String,
    pattern: String,
    score: f64,
    action: Option<Action>,
    place: Where,
}

impl Rule {
    fn looks_at(&self, target: Where) -> bool {
        self.place == target || self.place == Where::Any
    }
}

/// One compiled set and, for each of its patterns, the rule it belongs to.
struct Target {
    set: RegexSet,
    rule_of: Vec<usize>,
}

struct Content {
    rules: Vec<Rule>,
    /// Parallel to [`TARGETS`]; `None` when no rule looks at that target.
    targets: [Option<Target>; 3],
    max_text: usize,
}

#[async_trait]
impl Check for Content {
    fn kind(&self) -> &'static str {
        "content"
    }

    async fn scan(&self, input: &ScanInput<'_>) -> Result<Vec<Finding>, CheckError> {
        // Where each rule matched first, by rule index.
        let mut matched: Vec<Option<&str>> = vec![None; self.rules.len()];
        for ((place, label), target) in TARGETS.iter().zip(&self.targets) {
            let Some(target) = target else { continue };
            let text = match place {
                Where::Subject => {
                    let s = input.message.subject().unwrap_or("");
                    s.get(..text::floor_char_boundary(s, self.max_text))
                        .unwrap_or("")
                        .to_string()
                }
                Where::Headers => text::header_text(input.raw, self.max_text),
                _ => input.view.body_text(self.max_text),
            };
            for i in &target.set.matches(&text) {
                if let Some(&rule) = target.rule_of.get(i)
                    && let Some(slot) = matched.get_mut(rule)
                {
                    slot.get_or_insert(label);
                }
            }
        }
        let findings = self
            .rules
            .iter()
            .zip(matched)
            .filter_map(|(rule, place)| {
                let place = place?;
                let f = Finding::new(
                    rule.score,
                    rule.name.clone(),
                    format!("content rule {:?} matched the {place}", rule.name),
                );
                Some(match rule.action {
                    Some(a) if a != Action::Deliver => f.forcing(a),
                    _ => f,
                })
            })
            .collect();
        Ok(findings)
    }
}

fn builtin_rules() -> Vec<Rule> {
    vec![Rule {
        name: "gtube".into(),
        pattern: regex::escape(GTUBE),
        score: 0.0,
        action: Some(Action::Junk),
        place: Where::Body,
    }]
}

/// A rule name: used as the finding's tag, so short and machine-readable.
pub(crate) fn valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// Compiles `pattern` alone with the limits and flags of the sets, so a bad
/// rule is reported on its own index.
pub(crate) fn check_pattern(pattern: &str, case_insensitive: bool) -> Result<(), String> {
    RegexBuilder::new(pattern)
        .case_insensitive(case_insensitive)
        .multi_line(true)
        .size_limit(RULE_SIZE_LIMIT)
        .dfa_size_limit(DFA_SIZE_LIMIT)
        .build()
        .map(|_| ())
        .map_err(|e| format!("invalid regex: {e}"))
}

fn read_rule(section: &Section, case_insensitive: bool) -> Option<Rule> {
    let name = section.opt_string("name");
    let pattern = section.opt_string("pattern");
    let score = section.f64_or("score", 1.0);
    let place = section.choice_or("where", Where::Body, &WHERE_CHOICES);
    let action = section
        .contains("action")
        .then(|| section.choice_or("action", Action::Deliver, &Action::CHOICES));
    let mut ok = true;
    match &name {
        None => {
            section.error(
                "name",
                "missing; every rule needs a name (it becomes the finding's tag)",
            );
            ok = false;
        }
        Some(n) if !valid_name(n) => {
            section.error("name", format!("{n:?}: use 1 to 64 letters, digits, '-', '_' or '.'"));
            ok = false;
        }
        Some(_) => {}
    }
    match &pattern {
        None => {
            section.error("pattern", "missing");
            ok = false;
        }
        Some(p) => {
            if let Err(e) = check_pattern(p, case_insensitive) {
                section.error("pattern", e);
                ok = false;
            }
        }
    }
    if !score.is_finite() {
        section.error("score", "must be a finite number");
        ok = false;
    }
    Some(Rule {
        name: name?,
        pattern: pattern?,
        score,
        action,
        place,
    })
    .filter(|_| ok)
}

fn compile(rules: &[Rule], target: Where, case_insensitive: bool) -> Result<Option<Target>, String> {
    let rule_of: Vec<usize> = (0..rules.len()).filter(|&i| rules[i].looks_at(target)).collect();
    if rule_of.is_empty() {
        return Ok(None);
    }
    let set = RegexSetBuilder::new(rule_of.iter().map(|&i| rules[i].pattern.as_str()))
        .case_insensitive(case_insensitive)
        .multi_line(true)
        .size_limit(SET_SIZE_LIMIT)
        .dfa_size_limit(DFA_SIZE_LIMIT)
        .build()
        .map_err(|e| format!("the rules together are too large to compile: {e}"))?;
    Ok(Some(Target { set, rule_of }))
}

pub(crate) fn build(options: &Section, _cx: &BuildContext) -> Option<Arc<dyn Check>> {
    let case_insensitive = options.bool_or("case_insensitive", true);
    let max_text = options.size_or("max_text", DEFAULT_MAX_TEXT);
    let builtin = options.bool_or("builtin_rules", true);
    let mut ok = true;
    if max_text == 0 {
        options.error("max_text", "must be larger than zero");
        ok = false;
    }
    let mut rules = if builtin { builtin_rules() } else { Vec::new() };
    let sections = options.sections("rules");
    if sections.len() > MAX_RULES {
        options.error("rules", format!("at most {MAX_RULES} rules, found {}", sections.len()));
        ok = false;
    }
    let mut names: HashSet<String> = rules.iter().map(|r| r.name.clone()).collect();
    for section in &sections {
        match read_rule(section, case_insensitive) {
            Some(rule) if !names.insert(rule.name.clone()) => {
                let hint = if rule.name == "gtube" {
                    " (a built-in rule; set builtin_rules = false to replace it)"
                } else {
                    ""
                };
                section.error("name", format!("{:?} is used by another rule{hint}", rule.name));
                ok = false;
            }
            Some(rule) => rules.push(rule),
            None => ok = false,
        }
    }
    drop(sections);
    if !ok {
        return None;
    }
    let mut targets = [None, None, None];
    for (slot, (place, _)) in targets.iter_mut().zip(TARGETS) {
        match compile(&rules, place, case_insensitive) {
            Ok(t) => *slot = t,
            Err(e) => {
                options.error("rules", e);
                return None;
            }
        }
    }
    Some(Arc::new(Content {
        rules,
        targets,
        max_text: usize::try_from(max_text).unwrap_or(usize::MAX),
    }))
}

#[cfg(test)]
mod tests;
