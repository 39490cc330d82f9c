//! The `attachments` check: the attachment policy of DESIGN §5. It looks at
//! every attachment of the inventory (MIME parts, parts of attached messages,
//! TNEF members) and inside archives, and reports blocked extensions, decoy
//! and disguised names, executables disguised as something else (judged by
//! magic bytes), encrypted archives, archive bombs, excessive nesting,
//! documents with VBA macros, and containers it could not read.
//!
//! Each rule has its own tag, score and optional forced action, all
//! configurable (see [`Rule`]). A rule reports at most one finding per
//! message, listing the attachments it matched, so two blocked files do not
//! turn a quarantine into a reject. By default a blocked extension and a
//! disguised executable *force* quarantine: an administrator blocks those
//! types as policy, whatever the other scores say, and wants the message kept
//! for release rather than bounced. The signals that mean "could not be
//! scanned" (encryption, bombs, depth) score at the quarantine threshold
//! without forcing, so a policy with higher thresholds can relax them.
//!
//! Bounds: archive entries, declared expansion, compression ratio, total
//! bytes decompressed per attachment and nesting depth are all limited; the
//! check never decompresses an entry unless it is itself a container.

mod inspect;
mod magic;
mod names;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;

use crate::config::reader::Section;
use crate::message::envelope::Direction;
use crate::message::verdict::{Action, Finding};
use crate::scan::check::{BuildContext, Check, CheckError, ScanInput};

/// One kind of finding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Rule {
    BlockedExtension,
    DoubleExtension,
    DeceptiveName,
    DisguisedExecutable,
    DisguisedScript,
    DisguisedArchive,
    EncryptedArchive,
    EncryptedDocument,
    ArchiveBomb,
    NestingTooDeep,
    MacroDocument,
    Unscannable,
}

impl Rule {
    pub(crate) const ALL: [Rule; 12] = [
        Rule::BlockedExtension,
        Rule::DoubleExtension,
        Rule::DeceptiveName,
        Rule::DisguisedExecutable,
        Rule::DisguisedScript,
        Rule::DisguisedArchive,
        Rule::EncryptedArchive,
        Rule::EncryptedDocument,
        Rule::ArchiveBomb,
        Rule::NestingTooDeep,
        Rule::MacroDocument,
        Rule::Unscannable,
    ];

    /// The finding's tag; the options are `score_<tag with _>` and `force_<tag with _>`.
    pub(crate) fn tag(self) -> &'static str {
        match self {
            Rule::BlockedExtension => "blocked-extension",
            Rule::DoubleExtension => "double-extension",
            Rule::DeceptiveName => "deceptive-name",
            Rule::DisguisedExecutable => "disguised-executable",
            Rule::DisguisedScript => "disguised-script",
            Rule::DisguisedArchive => "disguised-archive",
            Rule::EncryptedArchive => "encrypted-archive",
            Rule::EncryptedDocument => "encrypted-document",
            Rule::ArchiveBomb => "archive-bomb",
            Rule::NestingTooDeep => "nesting-too-deep",
            Rule::MacroDocument => "macro-document",
            Rule::Unscannable => "unscannable",
        }
    }

    fn defaults(self) -> (f64, Option<Action>) {
        match self {
            Rule::BlockedExtension | Rule::DisguisedExecutable => (10.0, Some(Action::Quarantine)),
            Rule::DeceptiveName | Rule::EncryptedArchive | Rule::ArchiveBomb | Rule::NestingTooDeep => (10.0, None),
            Rule::DoubleExtension | Rule::MacroDocument => (6.0, None),
            Rule::Unscannable => (5.0, None),
            Rule::DisguisedArchive => (4.0, None),
            Rule::DisguisedScript | Rule::EncryptedDocument => (3.0, None),
        }
    }

    fn headline(self) -> &'static str {
        match self {
            Rule::BlockedExtension => "blocked file type",
            Rule::DoubleExtension => "decoy double extension",
            Rule::DeceptiveName => "deceptive file name",
            Rule::DisguisedExecutable => "executable content under a non-executable name or type",
            Rule::DisguisedScript => "script content under a document, image or text name",
            Rule::DisguisedArchive => "archive under a document, image or text name",
            Rule::EncryptedArchive => "encrypted archive, contents cannot be scanned",
            Rule::EncryptedDocument => "password-protected document, contents cannot be scanned",
            Rule::ArchiveBomb => "archive exceeds the expansion limits (possible zip bomb)",
            Rule::NestingTooDeep => "nested too deep to scan",
            Rule::MacroDocument => "document with VBA macros",
            Rule::Unscannable => "container could not be read",
        }
    }
}

const FORCE_CHOICES: [(&str, Option<Action>); 4] = [
    ("none", None),
    ("junk", Some(Action::Junk)),
    ("quarantine", Some(Action::Quarantine)),
    ("reject", Some(Action::Reject)),
];

const DIRECTION_CHOICES: [(&str, Direction); 3] = [
    ("inbound", Direction::Inbound),
    ("outgoing", Direction::Outgoing),
    ("internal", Direction::Internal),
];

/// The check's options, as read from its TOML table.
#[derive(Debug, Clone)]
pub(crate) struct Config {
    pub(crate) blocked: Vec<String>,
    pub(crate) max_depth: u32,
    pub(crate) max_archive_entries: usize,
    pub(crate) max_expanded_size: u64,
    pub(crate) max_compression_ratio: u64,
    pub(crate) max_decompress_size: usize,
    pub(crate) macro_directions: Vec<Direction>,
    pub(crate) rules: BTreeMap<Rule, (f64, Option<Action>)>,
}

impl Config {
    pub(crate) fn is_blocked(&self, ext: &str) -> bool {
        self.blocked.iter().any(|b| b == ext)
    }

    pub(crate) fn read(options: &Section) -> Config {
        let clean = |list: Vec<String>, key: &str| -> Vec<String> {
            let mut out = Vec::new();
            for (i, item) in list.into_iter().enumerate() {
                let ext = item.trim().trim_start_matches('.').to_lowercase();
                if ext.is_empty() || ext.contains(['/', '\\', '.', ' ']) {
                    options.problems().push(
                        format!("{}[{i}]", options.key_path(key)),
                        format!("expected a file extension such as \"exe\", found \"{item}\""),
                    );
                } else {
                    out.push(ext);
                }
            }
            out
        };
        let mut blocked = clean(
            options.strings_or("blocked_extensions", names::DEFAULT_BLOCKED),
            "blocked_extensions",
        );
        blocked.extend(clean(
            options.strings_or("extra_blocked_extensions", &[]),
            "extra_blocked_extensions",
        ));
        let allowed = clean(options.strings_or("allowed_extensions", &[]), "allowed_extensions");
        blocked.retain(|b| !allowed.contains(b));
        blocked.sort();
        blocked.dedup();
        let mut macro_directions = Vec::new();
        for (i, d) in options.strings_or("macro_directions", &["inbound"]).iter().enumerate() {
            match DIRECTION_CHOICES.iter().find(|(n, _)| n == d) {
                Some((_, dir)) => macro_directions.push(*dir),
                None => options.problems().push(
                    format!("{}[{i}]", options.key_path("macro_directions")),
                    format!("must be one of \"inbound\", \"outgoing\", \"internal\", found \"{d}\""),
                ),
            }
        }
        let rules = Rule::ALL
            .iter()
            .map(|&rule| {
                let key = rule.tag().replace('-', "_");
                let (score, force) = rule.defaults();
                let score = options.f64_or(&format!("score_{key}"), score);
                let force = options.choice_or(&format!("force_{key}"), force, &FORCE_CHOICES);
                (rule, (score, force))
            })
            .collect();
        Config {
            blocked,
            max_depth: options.u64_in("max_depth", 5, 1, u64::from(crate::scan::inventory::MAX_DEPTH)) as u32,
            max_archive_entries: options.u64_in("max_archive_entries", 4096, 1, 1_000_000) as usize,
            max_expanded_size: options.size_or("max_expanded_size", 1024 * 1024 * 1024),
            max_compression_ratio: options.u64_in("max_compression_ratio", 250, 2, 100_000),
            max_decompress_size: usize::try_from(options.size_or("max_decompress_size", 32 * 1024 * 1024))
                .unwrap_or(usize::MAX),
            macro_directions,
            rules,
        }
    }
}

/// What the rules matched, before findings are assembled. Details are
/// de-duplicated and at most [`MAX_DETAILS`] are kept per rule (a hostile
/// archive can match thousands of times); every match is still counted.
#[derive(Debug, Default)]
pub(crate) struct Hits {
    details: BTreeMap<Rule, Vec<String>>,
    counts: BTreeMap<Rule, usize>,
}

const MAX_DETAILS: usize = 100;
/// Matches named in one finding's reason.
const SHOWN: usize = 5;

impl Hits {
    /// `detail` names the attachment and says what the rule saw, e.g.
    /// "\"invoice.zip\" → \"payload.exe\": extension .exe is blocked".
    pub(crate) fn push(&mut self, rule: Rule, detail: String) {
        let list = self.details.entry(rule).or_default();
        if list.contains(&detail) {
            return;
        }
        *self.counts.entry(rule).or_default() += 1;
        if list.len() < MAX_DETAILS {
            list.push(detail);
        }
    }

    #[cfg(test)]
    pub(crate) fn rules(&self) -> impl Iterator<Item = Rule> + '_ {
        self.details.keys().copied()
    }
}

struct Attachments {
    config: Config,
}

#[async_trait]
impl Check for Attachments {
    fn kind(&self) -> &'static str {
        "attachments"
    }

    async fn scan(&self, input: &ScanInput<'_>) -> Result<Vec<Finding>, CheckError> {
        let mut hits = Hits::default();
        let deepest = input.view.nesting;
        if deepest > self.config.max_depth {
            hits.push(
                Rule::NestingTooDeep,
                format!(
                    "attached messages are nested {deepest} levels deep (limit {})",
                    self.config.max_depth
                ),
            );
        }
        let macros = self.config.macro_directions.contains(&input.direction);
        for att in &input.view.attachments {
            inspect::attachment(&self.config, att, macros, &mut hits);
        }
        Ok(findings(&self.config, hits))
    }
}

/// One finding per rule that matched, naming up to five matches.
pub(crate) fn findings(config: &Config, hits: Hits) -> Vec<Finding> {
    let mut out = Vec::new();
    for (rule, details) in hits.details {
        let (score, force) = config.rules.get(&rule).copied().unwrap_or_else(|| rule.defaults());
        if score == 0.0 && force.is_none() {
            continue;
        }
        let count = hits.counts.get(&rule).copied().unwrap_or(details.len());
        let mut reason = format!(
            "{}: {}",
            rule.headline(),
            details[..details.len().min(SHOWN)].join("; ")
        );
        if count > SHOWN {
            reason.push_str(&format!(" (and {} more)", count - SHOWN));
        }
        let finding = Finding::new(score, rule.tag(), reason);
        out.push(match force {
            Some(action) => finding.forcing(action),
            None => finding,
        });
    }
    out
}

pub(crate) fn build(options: &Section, _cx: &BuildContext) -> Option<Arc<dyn Check>> {
    Some(Arc::new(Attachments {
        config: Config::read(options),
    }))
}
