//! Domain similarity shared by the `impersonation` and `urls` checks: does a
//! host *look like* one of the tenant's domains without belonging to it?
//!
//! A host is first normalised (lower case, punycode `xn--` labels decoded with
//! UTS #46, trailing dot removed), then reduced to its registrable part
//! (`name.suffix`, by the Public Suffix List: the `psl` crate, plus the few
//! hosting platforms it lacks, see `tables`) and compared with the protected
//! domain in four ways: the same text after folding look-alike characters
//! ([`skeleton`]: Unicode's confusables, UTS #39, by `unicode-security`), the same
//! name under another public suffix, a small Damerau-Levenshtein distance
//! between the names, or the protected domain embedded as labels of another
//! domain (`contoso.com.evil.example`).
//!
//! Invariants: a domain never looks like itself, like one of its subdomains,
//! or like another host of the same registrable domain; every comparison is
//! bounded (host length, edit-distance bound).
//! Nothing here does I/O or allocates in proportion to anything but its input.

mod tables;

use std::fmt;
use std::net::IpAddr;
use std::sync::LazyLock;

use icu_normalizer::DecomposingNormalizerBorrowed;

/// Longest host name considered (DNS limit).
const MAX_HOST_LEN: usize = 253;
/// Longest string [`edit_distance`] compares.
const MAX_DISTANCE_LEN: usize = 128;
/// Names shorter than this are only compared by skeleton: one edit away from
/// a three-letter name is half the namespace.
const MIN_NAME_FOR_EDITS: usize = 5;
/// Names from this length on may be two edits away.
const MIN_NAME_FOR_TWO_EDITS: usize = 9;
/// "Same name, other suffix" only for names at least this long.
const MIN_NAME_FOR_OTHER_SUFFIX: usize = 4;

/// Why a host looks like a protected domain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reason {
    /// Identical once look-alike characters are folded (homoglyphs from other
    /// scripts, diacritics, `rn`→`m`, `vv`→`w`, `0`→`o`, `1`/`i`→`l`).
    Confusable,
    /// The names are this many typing edits apart (insert, delete,
    /// substitute, swap two neighbours).
    EditDistance(usize),
    /// The same name under another public suffix (`contoso.net`).
    OtherSuffix,
    /// The protected domain appears as labels of another domain
    /// (`contoso.com.evil.example`).
    Embedded,
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::Confusable => f.write_str("look-alike characters"),
            Reason::EditDistance(1) => f.write_str("one typing edit away"),
            Reason::EditDistance(n) => write!(f, "{n} typing edits away"),
            Reason::OtherSuffix => f.write_str("same name under another suffix"),
            Reason::Embedded => f.write_str("embedded in another domain"),
        }
    }
}

/// A host found to look like a protected domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Lookalike {
    /// The protected domain it imitates, as configured.
    pub(crate) protected: String,
    pub(crate) reason: Reason,
}

/// The registrable part of a host: `name.suffix`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Registrable {
    /// `name.suffix`.
    pub(crate) domain: String,
    /// The label left of the suffix.
    pub(crate) name: String,
    pub(crate) suffix: String,
    /// The suffix is a hosting platform's (`sharepoint.com`), not a registry's.
    pub(crate) hosting: bool,
}

/// Lower case, punycode decoded, trailing dot removed. `None` for an empty,
/// over-long or malformed host (empty labels).
pub(crate) fn normalize_host(host: &str) -> Option<String> {
    let host = host.trim().trim_end_matches('.');
    if host.is_empty() || host.len() > MAX_HOST_LEN {
        return None;
    }
    let (unicode, result) = idna::domain_to_unicode(host);
    let out = if result.is_ok() {
        unicode
    } else {
        // UTS #46 refused (e.g. a disallowed character): decode label by
        // label so that a sloppy host can still be compared.
        host.split('.')
            .map(|label| {
                let label = label.to_lowercase();
                label
                    .strip_prefix("xn--")
                    .and_then(idna::punycode::decode_to_string)
                    .unwrap_or(label)
            })
            .collect::<Vec<_>>()
            .join(".")
    };
    if out.is_empty() || out.split('.').any(str::is_empty) {
        return None;
    }
    Some(out)
}

/// A domain given in the configuration: lower case, without trailing dot,
/// at least two labels, no scheme, path or address.
pub(crate) fn configured_domain(text: &str) -> Result<String, String> {
    let d = text.trim().trim_end_matches('.').to_lowercase();
    let valid =
        d.contains('.') && !d.starts_with('.') && !d.contains(['/', ':', '@', ' ']) && normalize_host(&d).is_some();
    if valid {
        Ok(d)
    } else {
        Err(format!("expected a domain such as \"example.com\", found \"{text}\""))
    }
}

/// Characters that render as nothing; a link or a name split by them reads
/// as if they were not there.
pub(crate) fn is_invisible(c: char) -> bool {
    tables::is_invisible(c)
}

/// `host` as shown in a log: the ASCII form, followed by the Unicode form in
/// parentheses when they differ (`xn--cntoso-2ye.com (cоntoso.com)`).
pub(crate) fn display_host(host: &str) -> String {
    let ascii = host.trim_end_matches('.').to_lowercase();
    match normalize_host(&ascii) {
        Some(unicode) if unicode != ascii => format!("{ascii} ({unicode})"),
        _ => ascii,
    }
}

/// `text` made safe for a log line or a header field: control characters
/// become spaces and at most `max_chars` characters are kept (`…` marks a cut).
pub(crate) fn printable(text: &str, max_chars: usize) -> String {
    let mut out = String::with_capacity(text.len().min(max_chars * 4));
    for (i, c) in text.chars().enumerate() {
        if i == max_chars {
            out.push('…');
            break;
        }
        out.push(if c.is_control() { ' ' } else { c });
    }
    out
}

/// Case, diacritics, invisible characters and look-alike characters folded
/// away: what a reader sees, approximately. Diacritics go by NFKD and the
/// removal of combining marks; look-alikes by the skeleton of Unicode's
/// confusables (UTS #39, `unicode-security`), lower-cased, so `cоntoso`
/// (Cyrillic о), `ｃｏｎｔｏｓｏ` and `contosó` all fold to `contoso`. Two
/// texts that fold alike read alike; a folded text is for comparing, not
/// for showing (`m` folds to `rn` like `rn` does).
pub(crate) fn fold(text: &str) -> String {
    // Mail is mostly ASCII, and folding it character by character through
    // NFKD and the confusables table was most of the gateway's CPU per
    // message. An ASCII character folds alone to a fixed ASCII string (a
    // starter, so no mark is reordered across it), so the fold of a text is
    // the concatenation of the folds of its ASCII characters, looked up, and
    // of the runs between them, folded in full.
    let table = &*ASCII_FOLDS;
    let fast = |c: char| c.is_ascii() && table[c as usize].is_some();
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while !rest.is_empty() {
        let slow_at = rest.find(|c| !fast(c)).unwrap_or(rest.len());
        for b in rest[..slow_at].bytes() {
            out.push_str(table[usize::from(b)].as_deref().unwrap_or_default());
        }
        rest = &rest[slow_at..];
        let fast_at = rest.find(fast).unwrap_or(rest.len());
        if fast_at > 0 {
            out.push_str(&fold_in_full(&rest[..fast_at]));
        }
        rest = &rest[fast_at..];
    }
    out
}

/// The fold of each ASCII character, where it is ASCII itself (every one,
/// with Unicode's tables as they are; a character that folded to anything
/// else would simply take the full path).
static ASCII_FOLDS: LazyLock<[Option<String>; 128]> = LazyLock::new(|| {
    std::array::from_fn(|i| {
        let folded = fold_in_full(&char::from(i as u8).to_string());
        folded.is_ascii().then_some(folded)
    })
});

/// Builds this file's tables now rather than at the first message that
/// needs them (see [`crate::scan::warm`]).
pub(crate) fn warm() {
    LazyLock::force(&ASCII_FOLDS);
}

/// [`fold`] done in full, character by character through every table.
fn fold_in_full(text: &str) -> String {
    let decomposed = DecomposingNormalizerBorrowed::new_nfkd().normalize(text);
    let plain: String = decomposed
        .chars()
        .filter(|c| !tables::is_mark(*c) && !tables::is_invisible(*c))
        .flat_map(char::to_lowercase)
        .collect();
    unicode_security::skeleton(&plain)
        .filter(|c| !tables::is_mark(*c))
        .flat_map(char::to_lowercase)
        .collect()
}

/// [`fold`] plus the ASCII tricks that only work in host names, where
/// everything is shown in one case: `i`→`l` (an upper-case `I` reads as `l`),
/// `vv`→`w`. (`0`/`o`, `1`/`l`, `rn`/`m` are confusables already.) Two hosts
/// with the same skeleton read the same at a glance.
pub(crate) fn skeleton(text: &str) -> String {
    let mapped: String = fold(text)
        .chars()
        .map(|c| match c {
            'i' | '|' => 'l',
            other => other,
        })
        .collect();
    mapped.replace("vv", "w")
}

/// Damerau-Levenshtein distance (optimal string alignment) between `a` and
/// `b` when it is at most `bound`; `None` when it is larger or a string is
/// longer than the comparison limit.
pub(crate) fn edit_distance(a: &str, b: &str, bound: usize) -> Option<usize> {
    let a: Vec<char> = a.chars().take(MAX_DISTANCE_LEN + 1).collect();
    let b: Vec<char> = b.chars().take(MAX_DISTANCE_LEN + 1).collect();
    if a.len() > MAX_DISTANCE_LEN || b.len() > MAX_DISTANCE_LEN || a.len().abs_diff(b.len()) > bound {
        return None;
    }
    let m = b.len();
    let mut before: Vec<usize> = vec![0; m + 1];
    let mut previous: Vec<usize> = (0..=m).collect();
    let mut current: Vec<usize> = vec![0; m + 1];
    for i in 1..=a.len() {
        current[0] = i;
        let mut row_min = i;
        for j in 1..=m {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut d = (previous[j] + 1).min(current[j - 1] + 1).min(previous[j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                d = d.min(before[j - 2] + 1);
            }
            current[j] = d;
            row_min = row_min.min(d);
        }
        if row_min > bound {
            return None;
        }
        std::mem::swap(&mut before, &mut previous);
        std::mem::swap(&mut previous, &mut current);
    }
    let d = previous[m];
    (d <= bound).then_some(d)
}

/// The registrable part of a normalised host; `None` for IP literals and
/// single-label names.
pub(crate) fn registrable(host: &str) -> Option<Registrable> {
    if host.contains(':') || host.parse::<IpAddr>().is_ok() {
        return None;
    }
    let labels: Vec<&str> = host.split('.').collect();
    let n = labels.len();
    if n < 2 || labels.iter().any(|l| l.is_empty()) {
        return None;
    }
    let tail = |k: usize| labels[n - k..].join(".");
    // The few hosting platforms the Public Suffix List lacks come first.
    let extra = (2..=3)
        .rev()
        .find(|&k| n > k && tables::EXTRA_HOSTING_SUFFIXES.contains(&tail(k).as_str()));
    let (mut suffix_labels, hosting) = match extra {
        Some(k) => (k, true),
        None => {
            let suffix = psl::suffix(host.as_bytes())?;
            let labels = suffix.as_bytes().split(|b| *b == b'.').count();
            (labels, suffix.typ() == Some(psl::Type::Private))
        }
    };
    // A host that is itself a suffix ("co.uk") is its own registrable part.
    suffix_labels = suffix_labels.clamp(1, n - 1);
    Some(Registrable {
        domain: tail(suffix_labels + 1),
        name: labels[n - suffix_labels - 1].to_string(),
        suffix: tail(suffix_labels),
        hosting,
    })
}

/// Whether a top-level domain is common enough that link text ending in it
/// (`contoso.com`) is read as a host name rather than a file name.
pub(crate) fn is_link_text_tld(tld: &str) -> bool {
    tables::LINK_TEXT_TLDS.iter().any(|t| t.eq_ignore_ascii_case(tld))
}

/// `host` is `domain` or one of its subdomains (both normalised).
pub(crate) fn is_within(host: &str, domain: &str) -> bool {
    host == domain || host.strip_suffix(domain).is_some_and(|rest| rest.ends_with('.'))
}

/// Whether `candidate` looks like `protected` without being it, one of its
/// subdomains, or another host of the same registrable domain.
#[cfg(test)]
pub(crate) fn looks_like(candidate: &str, protected: &str) -> Option<Reason> {
    let candidate = normalize_host(candidate)?;
    let protected = normalize_host(protected)?;
    let target = Target::new(&protected)?;
    compare(&Candidate::new(&candidate)?, &target)
}

/// A protected domain prepared for repeated comparisons.
struct Target {
    host: String,
    registrable: Registrable,
    skeleton: String,
    name_skeleton: String,
    /// The skeletons of the registrable domain's labels (for embedding).
    label_skeletons: Vec<String>,
}

impl Target {
    fn new(host: &str) -> Option<Target> {
        let registrable = registrable(host)?;
        Some(Target {
            host: host.to_string(),
            skeleton: skeleton(&registrable.domain),
            name_skeleton: skeleton(&registrable.name),
            label_skeletons: registrable.domain.split('.').map(skeleton).collect(),
            registrable,
        })
    }
}

/// A host to compare with every target, prepared once: its registrable part
/// and skeletons do not depend on the target (a link was compared with
/// about a hundred brand domains, its skeletons recomputed for each).
struct Candidate<'a> {
    host: &'a str,
    registrable: Registrable,
    skeleton: String,
    name_skeleton: String,
    /// The skeletons of the labels left of the registrable domain.
    prefix_skeletons: Vec<String>,
}

impl<'a> Candidate<'a> {
    /// `host` normalised; `None` when it has no registrable part (an address).
    fn new(host: &'a str) -> Option<Candidate<'a>> {
        let registrable = registrable(host)?;
        let prefix = host.strip_suffix(registrable.domain.as_str()).unwrap_or_default();
        Some(Candidate {
            host,
            skeleton: skeleton(&registrable.domain),
            name_skeleton: skeleton(&registrable.name),
            prefix_skeletons: prefix.split('.').filter(|l| !l.is_empty()).map(skeleton).collect(),
            registrable,
        })
    }
}

fn compare(candidate: &Candidate, target: &Target) -> Option<Reason> {
    if is_within(candidate.host, &target.host) {
        return None;
    }
    let reg = &candidate.registrable;
    let protected = &target.registrable;
    if reg.domain == protected.domain {
        return None;
    }
    if is_embedded(candidate, target) {
        return Some(Reason::Embedded);
    }
    if candidate.skeleton == target.skeleton {
        return Some(Reason::Confusable);
    }
    if reg.name == protected.name {
        let long_enough = protected.name.chars().count() >= MIN_NAME_FOR_OTHER_SUFFIX;
        return (long_enough && !reg.hosting && !protected.hosting).then_some(Reason::OtherSuffix);
    }
    if candidate.name_skeleton == target.name_skeleton {
        return Some(Reason::Confusable);
    }
    let length = target.name_skeleton.chars().count();
    let bound = match length {
        l if l >= MIN_NAME_FOR_TWO_EDITS => 2,
        l if l >= MIN_NAME_FOR_EDITS => 1,
        _ => return None,
    };
    edit_distance(&candidate.name_skeleton, &target.name_skeleton, bound).map(Reason::EditDistance)
}

/// The protected registrable domain's labels appear, in order, among the
/// labels left of the candidate's own registrable domain.
fn is_embedded(candidate: &Candidate, target: &Target) -> bool {
    let (have, wanted) = (&candidate.prefix_skeletons, &target.label_skeletons);
    !wanted.is_empty() && have.windows(wanted.len()).any(|w| w == wanted.as_slice())
}

/// A tenant's domains prepared for checking many candidate hosts.
pub(crate) struct Protected {
    targets: Vec<Target>,
    /// Normalised hosts that are never look-alikes: the protected domains
    /// themselves and the configured exceptions, with their subdomains.
    owned: Vec<String>,
}

impl Protected {
    /// `domains` are the tenant's; `ignore` are hosts (with their subdomains)
    /// never reported, e.g. a partner whose name is close to the tenant's.
    pub(crate) fn new(domains: &[String], ignore: &[String]) -> Protected {
        let protected: Vec<String> = domains.iter().filter_map(|d| normalize_host(d)).collect();
        let mut owned = protected.clone();
        owned.extend(ignore.iter().filter_map(|d| normalize_host(d)));
        Protected {
            targets: protected.iter().filter_map(|d| Target::new(d)).collect(),
            owned,
        }
    }

    /// `host` is one of the domains (or ignored hosts) or a subdomain of one.
    pub(crate) fn owns(&self, host: &str) -> bool {
        normalize_host(host).is_some_and(|h| self.owned.iter().any(|d| is_within(&h, d)))
    }

    /// The first protected domain `host` looks like, unless `host` is owned.
    pub(crate) fn check(&self, host: &str) -> Option<Lookalike> {
        let host = normalize_host(host)?;
        if self.owned.iter().any(|d| is_within(&host, d)) {
            return None;
        }
        let candidate = Candidate::new(&host)?;
        self.targets.iter().find_map(|t| {
            compare(&candidate, t).map(|reason| Lookalike {
                protected: t.host.clone(),
                reason,
            })
        })
    }
}

#[cfg(test)]
mod tests;
