//! The links of a message as the view lists them: what a [`Link`] is, URLs
//! found in running text, and how a link written in HTML becomes the URL a
//! browser would follow (resolved against the document's `<base href>`,
//! tabs and new lines removed, as the WHATWG URL parser does).
//!
//! Invariants: a link's `url` is never longer than [`MAX_URL_LEN`] bytes, an
//! anchor's text never longer than [`MAX_ANCHOR_TEXT`] characters, and the
//! list never holds more than its cap (the overflow is counted, not kept).
//! Nothing here fetches anything or judges a link: that is the checks' work.

use std::borrow::Cow;
use std::collections::HashSet;
use std::sync::LazyLock;

use regex::Regex;
use url::Url;

use crate::scan::lookalike;

/// Characters of an anchor's text kept.
pub(crate) const MAX_ANCHOR_TEXT: usize = 1024;
/// Longest URL kept; the host is at the start, the rest is tracking.
pub(crate) const MAX_URL_LEN: usize = 4096;

static TEXT_URL: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r#"(?i)\b(?:https?://|www\.)[^\s<>"'`{}|\\^\[\]\x00-\x1f\x7f]+"#).expect("valid regex")
});

/// Builds this file's tables now rather than at the first message that
/// needs them (see [`crate::scan::warm`]).
pub(crate) fn warm() {
    LazyLock::force(&TEXT_URL);
}

/// Where a link was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LinkKind {
    /// `<a href>` or `<area href>`: what a reader clicks.
    Anchor,
    /// A resource the client may load: `src`, `background`, `poster`,
    /// `<link href>`.
    Resource,
    /// Where a form posts: `<form action>`, `formaction`.
    Form,
    /// `<meta http-equiv="refresh" content="0; url=…">`.
    Refresh,
    /// A URL written in running text (plain text, or the visible text of HTML).
    Text,
}

/// One link as the message presents it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Link {
    /// For links from HTML attributes: the URL a browser follows (character
    /// references decoded, resolved against `<base href>`, serialised by the
    /// WHATWG parser), or the attribute as written when it is no valid URL
    /// (a relative link without a base). For text links: the URL as written.
    pub url: String,
    /// The URL as the message writes it (character references decoded,
    /// before the URL parser normalised it): `http://3232235777/` where
    /// `url` says `http://192.168.1.1/`.
    pub written: String,
    /// For anchors: the text a reader sees on the link, whitespace collapsed
    /// and invisible characters removed.
    pub text: Option<String>,
    pub kind: LinkKind,
}

/// Distinct links, up to a cap.
#[derive(Debug, Default)]
pub(crate) struct LinkList {
    pub(crate) links: Vec<Link>,
    seen: HashSet<(String, Option<String>)>,
    max: usize,
    /// Links seen beyond the cap.
    pub(crate) overflow: usize,
}

impl LinkList {
    pub(crate) fn new(max: usize) -> LinkList {
        LinkList {
            max,
            ..LinkList::default()
        }
    }

    /// Adds `link` unless the same URL with the same text is already listed.
    pub(crate) fn push(&mut self, link: Link) {
        if link.url.is_empty() {
            return;
        }
        let key = (link.url.clone(), link.text.clone());
        if self.seen.contains(&key) {
            return;
        }
        if self.links.len() >= self.max {
            self.overflow += 1;
            return;
        }
        self.seen.insert(key);
        self.links.push(link);
    }
}

/// The URLs written in `text` (`http://`, `https://`, `www.`), with what ends
/// a sentence rather than a URL trimmed, invisible characters removed first.
pub(crate) fn text_urls(text: &str, mut each: impl FnMut(&str)) {
    let cleaned: Cow<str> = if text.chars().any(lookalike::is_invisible) {
        Cow::Owned(text.chars().filter(|c| !lookalike::is_invisible(*c)).collect())
    } else {
        Cow::Borrowed(text)
    };
    for m in TEXT_URL.find_iter(&cleaned) {
        each(truncate(trim_trailing_punctuation(m.as_str()), MAX_URL_LEN));
    }
}

/// The document's base URL from the value of its first `<base href>`: only
/// an absolute URL counts (a mail has no address of its own to resolve a
/// relative base against).
pub(crate) fn base_url(href: &str) -> Option<Url> {
    Url::parse(href).ok().filter(|u| !u.cannot_be_a_base())
}

/// What a browser makes of an attribute's URL: parsed against `base`, or on
/// its own; the value as written (trimmed) when it does not parse.
pub(crate) fn resolve(value: &str, base: Option<&Url>) -> String {
    let parsed = match base {
        Some(base) => base.join(value),
        None => Url::parse(value),
    };
    let url = match parsed {
        Ok(url) => url.into(),
        // As the URL parser does before anything else: strip leading and
        // trailing C0 controls and spaces, remove tabs and new lines.
        Err(_) => value
            .trim_matches(|c: char| c <= ' ')
            .chars()
            .filter(|c| !matches!(c, '\t' | '\n' | '\r'))
            .collect(),
    };
    truncate_owned(url, MAX_URL_LEN)
}

/// The URL of a `<meta http-equiv="refresh" content="0; url=…">`, read as
/// HTML's "shared declarative refresh steps" do: the delay, a `;` or `,`,
/// an optional `url=`, and an optionally quoted URL.
pub(crate) fn refresh_target(content: &str) -> Option<&str> {
    let rest = content.trim_start_matches(|c: char| c.is_ascii_whitespace());
    let rest = rest.trim_start_matches(|c: char| c.is_ascii_digit() || c == '.');
    let rest = rest.trim_start_matches(|c: char| c.is_ascii_whitespace());
    let rest = rest.strip_prefix([';', ',']).unwrap_or(rest);
    let mut rest = rest.trim_start_matches(|c: char| c.is_ascii_whitespace());
    if rest.get(..3).is_some_and(|p| p.eq_ignore_ascii_case("url")) {
        let after = rest
            .get(3..)
            .unwrap_or_default()
            .trim_start_matches(|c: char| c.is_ascii_whitespace());
        if let Some(value) = after.strip_prefix('=') {
            rest = value.trim_start_matches(|c: char| c.is_ascii_whitespace());
        }
    }
    let target = match rest.chars().next() {
        Some(q @ ('\'' | '"')) => {
            let inner = rest.get(1..).unwrap_or_default();
            inner.split(q).next().unwrap_or_default()
        }
        _ => rest,
    };
    let target = target.trim_end_matches(|c: char| c.is_ascii_whitespace());
    (!target.is_empty()).then_some(target)
}

/// An anchor's text as a reader sees it: invisible characters removed,
/// whitespace collapsed, at most [`MAX_ANCHOR_TEXT`] characters.
pub(crate) fn anchor_text(raw: &str) -> String {
    let visible: String = raw
        .chars()
        .filter(|c| !lookalike::is_invisible(*c))
        .take(MAX_ANCHOR_TEXT * 4)
        .collect();
    let mut out = String::new();
    for (i, word) in visible.split_whitespace().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        out.push_str(word);
    }
    match out.char_indices().nth(MAX_ANCHOR_TEXT) {
        Some((cut, _)) => out.get(..cut).unwrap_or_default().to_string(),
        None => out,
    }
}

/// Removes what ends a sentence rather than a URL: "see https://x.example/a."
fn trim_trailing_punctuation(url: &str) -> &str {
    let mut u = url;
    loop {
        let trimmed = u.trim_end_matches(['.', ',', ';', ':', '!', '?', '\'', '"', '*']);
        let trimmed = match trimmed.strip_suffix(')') {
            Some(inner) if !inner.contains('(') => inner,
            _ => trimmed,
        };
        if trimmed.len() == u.len() {
            return u;
        }
        u = trimmed;
    }
}

/// The longest prefix of `s` of at most `max` bytes that ends on a character boundary.
pub(crate) fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.get(..end).unwrap_or_default()
}

fn truncate_owned(mut s: String, max: usize) -> String {
    let cut = truncate(&s, max).len();
    s.truncate(cut);
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_urls_end_where_the_sentence_does() {
        let mut found = Vec::new();
        text_urls(
            "see https://x.example/a. and (www.y.example/b), or https://z.example/(c)!",
            |u| found.push(u.to_string()),
        );
        assert_eq!(
            found,
            ["https://x.example/a", "www.y.example/b", "https://z.example/(c)"]
        );
        let mut hidden = Vec::new();
        text_urls("ht\u{200B}tps://evil.example/", |u| hidden.push(u.to_string()));
        assert_eq!(hidden, ["https://evil.example/"]);
    }

    #[test]
    fn attribute_urls_resolve_as_a_browser_does() {
        let base = base_url("https://evil.example/a/");
        assert_eq!(resolve("x?y", base.as_ref()), "https://evil.example/a/x?y");
        assert_eq!(resolve("//other.example", base.as_ref()), "https://other.example/");
        assert_eq!(resolve(" ht\ntps://Bank.EXAMPLE ", None), "https://bank.example/");
        assert_eq!(resolve("/relative", None), "/relative");
        assert_eq!(resolve("\t/rel\native ", None), "/relative");
        assert!(base_url("/not-absolute").is_none());
        assert!(base_url("mailto:a@b.example").is_none());
        assert_eq!(
            refresh_target("0; URL='https://x.example/'"),
            Some("https://x.example/")
        );
        assert_eq!(refresh_target("5;url = https://x.example/"), Some("https://x.example/"));
        assert_eq!(refresh_target("0;https://x.example/"), Some("https://x.example/"));
        assert_eq!(refresh_target("5"), None);
    }

    #[test]
    fn anchor_text_is_collapsed_and_capped() {
        assert_eq!(anchor_text("  Pay\u{200B}Pal \n\t login "), "PayPal login");
        assert_eq!(anchor_text(&"é".repeat(3000)).chars().count(), MAX_ANCHOR_TEXT);
    }

    #[test]
    fn the_list_keeps_distinct_links_up_to_its_cap() {
        let mut list = LinkList::new(2);
        let link = |u: &str| Link {
            url: u.into(),
            written: u.into(),
            text: None,
            kind: LinkKind::Text,
        };
        for u in [
            "https://a.example/",
            "https://a.example/",
            "",
            "https://b.example/",
            "https://c.example/",
        ] {
            list.push(link(u));
        }
        assert_eq!(list.links.len(), 2);
        assert_eq!(list.overflow, 1);
    }
}
