//! Walks one attachment and whatever it contains, recording [`Hits`].
//!
//! The walk judges a blob by its name (blocked, decoy, deceptive), by its
//! bytes against what its name and type claim, and then by what it contains:
//! zip listings, gzip members, tar members, cabinet and RAR names, 7-Zip
//! encryption, OLE2 directories, TNEF members found inside archives. Only containers are decompressed, and
//! every decompression is charged to one per-attachment budget
//! (`max_decompress_size`); depth is capped by `max_depth`. A member that
//! cannot be inspected within these bounds is reported, never skipped silently.
//!
//! The expansion limits hold for the whole tree as well as for each archive:
//! a 42.zip-style bomb keeps every level small (leaves of 1 MiB or less are
//! not judged by ratio) and multiplies by nesting. [`Tree`] adds up the
//! entries, declared and decompressed bytes and depth over every archive of
//! the attachment; once the tree passes `max_archive_entries`,
//! `max_expanded_size` or `max_compression_ratio` (declared bytes against the
//! attachment's own size), it is an `archive-bomb` and nothing more is
//! decompressed, so the cost stays within the budget.

use super::magic::{self, Family, Kind};
use super::{Config, Hits, Rule, names};
use crate::scan::formats::archive::{self, ZipListing, stream};
use crate::scan::formats::{cfb, rar};
use crate::scan::inventory::Attachment;

/// Bytes decompressed from an archive member just to learn its type.
const ENTRY_SNIFF: usize = 4096;
/// Whether `packed` octets of compressed data can honestly expand to only
/// `declared` octets: deflate (and every method a mail archive uses) adds at
/// most a few bytes per 64 KiB block to incompressible data, plus headers
/// (ZipCrypto 12, AES 28). More is a size that lies: a 1 MiB entry declaring
/// 1 KiB that inflates to 1 GiB, or a gzip whose ISIZE (modulo 2^32) hides
/// 4 GiB behind "1 MiB" (found by the attack run, docs/attack-run.md).
fn size_lies(declared: u64, packed: u64) -> bool {
    packed > declared.saturating_add(declared / 64).saturating_add(4096)
}

/// Below this expanded size the compression ratio is not judged.
const RATIO_FLOOR: u64 = 1024 * 1024;

struct Walk<'c> {
    config: &'c Config,
    macros: bool,
    hits: &'c mut Hits,
    /// Bytes this attachment may still decompress.
    budget: usize,
    tree: Tree,
}

/// What the archives of one attachment add up to, over every level.
#[derive(Debug, Default)]
struct Tree {
    /// The attachment's own size and label.
    packed: u64,
    root: String,
    entries: u64,
    declared: u64,
    /// Bytes actually decompressed.
    actual: u64,
    deepest: u32,
    /// The tree passed a limit: reported once, nothing more is expanded.
    bomb: bool,
}

/// Inspects one inventory attachment. TNEF members are already in the
/// inventory, so a TNEF container here is only checked for damage.
pub(crate) fn attachment(config: &Config, att: &Attachment, macros: bool, hits: &mut Hits) {
    let own = match &att.name {
        Some(n) => names::show(n),
        None => format!(
            "(unnamed {} part)",
            if att.declared_type.is_empty() {
                "binary"
            } else {
                &att.declared_type
            }
        ),
    };
    let label = match &att.container {
        Some(c) => format!("{} → {own}", names::show(c)),
        None => own,
    };
    let mut walk = Walk {
        config,
        macros,
        hits,
        budget: config.max_decompress_size,
        tree: Tree {
            packed: att.data.len() as u64,
            root: label.clone(),
            ..Tree::default()
        },
    };
    walk.blob(
        &att.data,
        att.name.as_deref(),
        &att.declared_type,
        &label,
        att.depth,
        true,
        true,
    );
}

impl Walk<'_> {
    /// Adds one archive's listing to the tree; true once the tree is a bomb
    /// (then nothing more is decompressed).
    fn account(&mut self, entries: u64, declared: u64, depth: u32) -> bool {
        let t = &mut self.tree;
        t.entries = t.entries.saturating_add(entries);
        t.declared = t.declared.saturating_add(declared);
        t.deepest = t.deepest.max(depth);
        if t.bomb {
            return true;
        }
        let limits = self.config;
        let ratio = t.declared / t.packed.max(1);
        let why = if t.entries > limits.max_archive_entries as u64 {
            format!("{} entries (limit {})", t.entries, limits.max_archive_entries)
        } else if t.declared > limits.max_expanded_size {
            format!("{} bytes (limit {})", t.declared, limits.max_expanded_size)
        } else if t.declared > RATIO_FLOOR && ratio > limits.max_compression_ratio {
            format!(
                "{} bytes from {} (ratio {ratio}:1, limit {}:1)",
                t.declared, t.packed, limits.max_compression_ratio
            )
        } else {
            return false;
        };
        t.bomb = true;
        let detail = format!(
            "{}: nested archives expand to {why} over {} levels; {} bytes decompressed before stopping",
            t.root,
            t.deepest + 1,
            t.actual
        );
        self.budget = 0;
        self.hit(Rule::ArchiveBomb, detail);
        true
    }

    /// Charges `n` decompressed bytes to the budget and the tree.
    fn spend(&mut self, n: usize) {
        self.budget = self.budget.saturating_sub(n);
        self.tree.actual = self.tree.actual.saturating_add(n as u64);
    }

    /// One `encrypted-archive` hit naming up to three encrypted entries.
    fn report_encrypted<'n>(&mut self, label: &str, files: impl Iterator<Item = (&'n str, bool)>) {
        let mut total = 0;
        let mut locked = Vec::new();
        for (name, encrypted) in files {
            total += 1;
            if encrypted {
                locked.push(names::show(name));
            }
        }
        if !locked.is_empty() {
            let shown: Vec<&str> = locked.iter().take(3).map(String::as_str).collect();
            self.hit(
                Rule::EncryptedArchive,
                format!(
                    "{label}: {} of {total} entries are encrypted ({})",
                    locked.len(),
                    shown.join(", ")
                ),
            );
        }
    }

    fn hit(&mut self, rule: Rule, detail: String) {
        self.hits.push(rule, detail);
    }

    /// `complete`: `data` is the whole file (not a sniffing prefix).
    /// `tnef_listed`: a TNEF container's members are inspected elsewhere.
    #[allow(clippy::too_many_arguments)]
    fn blob(
        &mut self,
        data: &[u8],
        name: Option<&str>,
        declared: &str,
        label: &str,
        depth: u32,
        complete: bool,
        tnef_listed: bool,
    ) {
        if let Some(name) = name {
            self.name(name, label);
        }
        if depth > self.config.max_depth {
            self.hit(
                Rule::NestingTooDeep,
                format!(
                    "{label} is nested {depth} levels deep (limit {})",
                    self.config.max_depth
                ),
            );
            return;
        }
        let ext = name.and_then(names::extension);
        let mut kind = magic::sniff(data);
        match kind {
            Kind::Zip if complete => match archive::list_zip(data, self.config.max_archive_entries) {
                Ok(listing) if is_office_package(&listing) => {
                    kind = Kind::OfficePackage;
                    if self.macros
                        && let Some(vba) = listing
                            .entries
                            .iter()
                            .find(|e| e.name.to_ascii_lowercase().ends_with("vbaproject.bin"))
                    {
                        let detail = format!("{label} contains a VBA project ({})", vba.name);
                        self.hit(Rule::MacroDocument, detail);
                    }
                }
                Ok(listing) => self.zip(&listing, data.len(), label, depth),
                Err(e) => self.hit(
                    Rule::Unscannable,
                    format!("{label}: zip archive could not be read ({e})"),
                ),
            },
            Kind::Ole2 if complete => match cfb::inspect(data) {
                Ok(facts) => {
                    if facts.installer {
                        kind = Kind::Installer;
                    }
                    if facts.macros && self.macros {
                        self.hit(Rule::MacroDocument, format!("{label} contains a VBA project"));
                    }
                    if facts.encrypted {
                        self.hit(Rule::EncryptedDocument, format!("{label} is password-protected"));
                    }
                }
                Err(e) => self.hit(Rule::Unscannable, format!("{label}: {e}")),
            },
            Kind::Gzip if complete => self.gzip(data, name, label, depth),
            Kind::Tar if complete => match stream::list_tar(data, self.config.max_archive_entries) {
                Ok(members) => {
                    let declared = members.iter().fold(0u64, |s, m| s.saturating_add(m.data.len() as u64));
                    let bomb = self.account(members.len() as u64, declared, depth);
                    for m in members.iter().filter(|m| !m.is_dir) {
                        let inner = format!("{label} → {}", names::show(&m.name));
                        if bomb {
                            self.name(&m.name, &inner);
                            continue;
                        }
                        self.blob(m.data, Some(&m.name), "", &inner, depth + 1, true, false);
                    }
                }
                Err(e) => self.hit(
                    Rule::Unscannable,
                    format!("{label}: tar archive could not be read ({e})"),
                ),
            },
            Kind::Cabinet if complete => match stream::list_cab(data, self.config.max_archive_entries) {
                Ok((files, _)) => {
                    for f in &files {
                        self.name(f, &format!("{label} → {}", names::show(f)));
                    }
                }
                Err(e) => self.hit(Rule::Unscannable, format!("{label}: cabinet could not be read ({e})")),
            },
            Kind::Tnef if complete => self.tnef(data, label, depth, tnef_listed),
            Kind::Rar if complete => self.rar(data, label),
            Kind::SevenZip if complete => match rar::sevenzip_encrypted(data) {
                Ok(true) => self.hit(
                    Rule::EncryptedArchive,
                    format!("{label}: 7-Zip archive uses AES encryption"),
                ),
                Ok(false) => {}
                Err(e) => self.hit(
                    Rule::Unscannable,
                    format!("{label}: 7-Zip archive could not be read ({e})"),
                ),
            },
            _ => {}
        }
        self.mismatch(kind, ext.as_deref(), declared, label);
    }

    fn name(&mut self, name: &str, label: &str) {
        let config = self.config;
        let blocked = |e: &str| config.is_blocked(e);
        if let Some(ext) = names::extension(name)
            && config.is_blocked(&ext)
        {
            self.hit(Rule::BlockedExtension, format!("{label}: extension .{ext} is blocked"));
        }
        if let Some((decoy, real)) = names::double_extension(name, &blocked) {
            self.hit(
                Rule::DoubleExtension,
                format!("{label}: looks like a .{decoy} but is a .{real}"),
            );
        }
        for trick in names::deceptions(name, &blocked) {
            self.hit(Rule::DeceptiveName, format!("{label} {trick}"));
        }
    }

    fn mismatch(&mut self, kind: Kind, ext: Option<&str>, declared: &str, label: &str) {
        let claim = magic::claim(ext, declared);
        let says = match claim {
            Family::Document => "a document",
            Family::Image => "an image",
            Family::Text => "text",
            Family::Media => "audio or video",
            Family::Archive => "an archive",
            Family::Script => "a script",
            Family::Executable => "a program",
            Family::Neutral => "no specific type",
        };
        let passive = matches!(claim, Family::Document | Family::Image | Family::Text | Family::Media);
        let rule = match kind.family() {
            Family::Executable if claim != Family::Executable => Rule::DisguisedExecutable,
            Family::Script if passive => Rule::DisguisedScript,
            Family::Archive if passive && !(kind == Kind::Zip && ext.is_some_and(magic::is_zip_based)) => {
                Rule::DisguisedArchive
            }
            _ => return,
        };
        let declared = if declared.is_empty() { "none" } else { declared };
        self.hit(
            rule,
            format!(
                "{label}: name and type (declared {declared}) say {says}, the content is {}",
                kind.describe()
            ),
        );
    }

    fn zip(&mut self, listing: &ZipListing, archive_len: usize, label: &str, depth: u32) {
        let limits = self.config;
        let mut bomb = Vec::new();
        if listing.declared_entries > limits.max_archive_entries as u64 {
            bomb.push(format!(
                "declares {} entries (limit {})",
                listing.declared_entries, limits.max_archive_entries
            ));
        }
        let total = listing.declared_total();
        if total > limits.max_expanded_size {
            bomb.push(format!("expands to {total} bytes (limit {})", limits.max_expanded_size));
        }
        let ratio = |expanded: u64, packed: u64| expanded / packed.max(1);
        if total > RATIO_FLOOR && ratio(total, archive_len as u64) > limits.max_compression_ratio {
            bomb.push(format!(
                "compression ratio {}:1 (limit {}:1)",
                ratio(total, archive_len as u64),
                limits.max_compression_ratio
            ));
        } else if let Some(e) = listing.entries.iter().find(|e| {
            e.uncompressed_size > RATIO_FLOOR
                && ratio(e.uncompressed_size, e.compressed_size) > limits.max_compression_ratio
        }) {
            bomb.push(format!(
                "entry {} has compression ratio {}:1 (limit {}:1)",
                names::show(&e.name),
                ratio(e.uncompressed_size, e.compressed_size),
                limits.max_compression_ratio
            ));
        }
        if let Some(e) = listing
            .entries
            .iter()
            .find(|e| size_lies(e.uncompressed_size, e.compressed_size))
        {
            bomb.push(format!(
                "entry {} declares {} bytes but holds {} compressed: its size lies",
                names::show(&e.name),
                e.uncompressed_size,
                e.compressed_size
            ));
        }
        if listing.compressed_total() > archive_len as u64 {
            bomb.push("entries overlap (their compressed sizes add up to more than the archive)".into());
        }
        for b in &bomb {
            self.hit(Rule::ArchiveBomb, format!("{label} {b}"));
        }
        if self.account(listing.declared_entries, total, depth) {
            bomb.push("is part of a nested bomb".into());
        }
        if listing.from_local_headers {
            self.hit(
                Rule::Unscannable,
                format!("{label}: zip central directory missing, entries listed from local headers only"),
            );
        }
        let files: Vec<_> = listing.entries.iter().filter(|e| !e.is_dir()).collect();
        self.report_encrypted(label, files.iter().map(|e| (e.name.as_ref(), e.encrypted)));
        for entry in files {
            let inner = format!("{label} → {}", names::show(&entry.name));
            if entry.encrypted || !bomb.is_empty() || self.budget == 0 {
                self.name(&entry.name, &inner);
                continue;
            }
            let Ok(prefix) = entry.read(ENTRY_SNIFF.min(self.budget)) else {
                self.name(&entry.name, &inner);
                continue;
            };
            self.spend(prefix.data.len());
            let kind = magic::sniff(&prefix.data);
            if prefix.complete || !is_container(kind) {
                self.blob(
                    &prefix.data,
                    Some(&entry.name),
                    "",
                    &inner,
                    depth + 1,
                    prefix.complete,
                    false,
                );
                continue;
            }
            if depth + 1 > self.config.max_depth {
                self.blob(&prefix.data, Some(&entry.name), "", &inner, depth + 1, false, false);
                continue;
            }
            match entry.read(self.budget.saturating_add(prefix.data.len())) {
                Ok(full) if full.complete => {
                    self.spend(full.data.len().saturating_sub(prefix.data.len()));
                    self.blob(&full.data, Some(&entry.name), "", &inner, depth + 1, true, false);
                }
                _ => {
                    self.budget = 0;
                    self.hit(
                        Rule::Unscannable,
                        format!(
                            "{inner}: nested archive larger than the decompression limit ({} bytes), not inspected",
                            self.config.max_decompress_size
                        ),
                    );
                    self.blob(&prefix.data, Some(&entry.name), "", &inner, depth + 1, false, false);
                }
            }
        }
    }

    /// RAR members are listed by name only: RAR compression is never undone here.
    fn rar(&mut self, data: &[u8], label: &str) {
        let listing = match rar::list_rar(data, self.config.max_archive_entries) {
            Ok(l) => l,
            Err(e) => {
                return self.hit(
                    Rule::Unscannable,
                    format!("{label}: RAR archive could not be read ({e})"),
                );
            }
        };
        if listing.headers_encrypted {
            self.hit(
                Rule::EncryptedArchive,
                format!("{label}: RAR archive encrypts its file list"),
            );
        }
        if listing.damaged {
            self.hit(Rule::Unscannable, format!("{label}: RAR archive is damaged"));
        }
        let files: Vec<_> = listing.entries.iter().filter(|e| !e.is_dir).collect();
        self.report_encrypted(label, files.iter().map(|e| (e.name.as_ref(), e.encrypted)));
        let total = files.iter().fold(0u64, |s, e| s.saturating_add(e.unpacked_size));
        if total > self.config.max_expanded_size {
            self.hit(
                Rule::ArchiveBomb,
                format!(
                    "{label} expands to {total} bytes (limit {})",
                    self.config.max_expanded_size
                ),
            );
        }
        for entry in files {
            self.name(&entry.name, &format!("{label} → {}", names::show(&entry.name)));
        }
    }

    fn gzip(&mut self, data: &[u8], outer: Option<&str>, label: &str, depth: u32) {
        let member = match stream::gzip(data) {
            Ok(m) => m,
            Err(e) => return self.hit(Rule::Unscannable, format!("{label}: gzip file could not be read ({e})")),
        };
        let name = member.name.clone().or_else(|| {
            let outer = names::base_name(outer?);
            let lower = outer.to_ascii_lowercase();
            if lower.ends_with(".tgz") {
                Some(format!("{}.tar", outer.get(..outer.len() - 4)?))
            } else if lower.ends_with(".gz") {
                Some(outer.get(..outer.len() - 3)?.to_string())
            } else {
                None
            }
        });
        let inner = format!(
            "{label} → {}",
            name.as_deref().map_or("(gzip content)".into(), names::show)
        );
        let declared = u64::from(member.declared_size);
        if size_lies(declared, member.compressed_len() as u64) {
            self.hit(
                Rule::ArchiveBomb,
                format!(
                    "{label} declares {declared} bytes (ISIZE) but holds {} compressed: its size lies",
                    member.compressed_len()
                ),
            );
            if let Some(n) = &name {
                self.name(n, &inner);
            }
            return;
        }
        if declared > RATIO_FLOOR
            && declared / (member.compressed_len() as u64).max(1) > self.config.max_compression_ratio
        {
            self.hit(
                Rule::ArchiveBomb,
                format!(
                    "{label} has compression ratio {}:1",
                    declared / (member.compressed_len() as u64).max(1)
                ),
            );
            if let Some(n) = &name {
                self.name(n, &inner);
            }
            return;
        }
        if self.account(1, declared, depth) {
            return;
        }
        let Ok(content) = member.read(self.budget) else {
            return self.hit(
                Rule::Unscannable,
                format!("{label}: gzip content could not be decompressed"),
            );
        };
        self.spend(content.data.len());
        if !content.complete && is_container(magic::sniff(&content.data)) {
            self.hit(
                Rule::Unscannable,
                format!("{inner}: larger than the decompression limit, not inspected"),
            );
        }
        self.blob(
            &content.data,
            name.as_deref(),
            "",
            &inner,
            depth + 1,
            content.complete,
            false,
        );
    }

    fn tnef(&mut self, data: &[u8], label: &str, depth: u32, listed: bool) {
        let tnef = match crate::scan::formats::tnef::decode(data, crate::scan::inventory::MAX_TNEF_MEMBERS) {
            Ok(t) => t,
            Err(e) => return self.hit(Rule::Unscannable, format!("{label}: {e}")),
        };
        if let Some(problem) = &tnef.problem {
            self.hit(Rule::Unscannable, format!("{label}: {problem}"));
        }
        if tnef.too_many {
            self.hit(
                Rule::ArchiveBomb,
                format!(
                    "{label} holds more than {} attachments",
                    crate::scan::inventory::MAX_TNEF_MEMBERS
                ),
            );
        }
        if listed {
            return;
        }
        for m in &tnef.members {
            let inner = format!(
                "{label} → {}",
                m.name.as_deref().map_or("(unnamed)".into(), names::show)
            );
            let declared = m.mime_type.clone().unwrap_or_default();
            self.blob(m.data, m.name.as_deref(), &declared, &inner, depth + 1, true, false);
        }
    }
}

/// Kinds worth decompressing in full to look inside.
fn is_container(kind: Kind) -> bool {
    matches!(
        kind,
        Kind::Zip | Kind::Ole2 | Kind::Gzip | Kind::Tar | Kind::Cabinet | Kind::Tnef
    )
}

/// An OOXML or OpenDocument package: a zip that is a document.
fn is_office_package(listing: &ZipListing) -> bool {
    listing
        .entries
        .iter()
        .any(|e| e.name == "[Content_Types].xml" || e.name == "mimetype")
}
