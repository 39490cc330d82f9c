//! Finding the links of a message: URLs written in plain text, and in HTML the
//! URL attributes (`href`, `src`, `action`, …), the meta-refresh target, the
//! visible text, and for each `<a href>` the text a reader sees on it.
//!
//! The HTML reader is a small tolerant tokenizer, not a DOM: it decodes
//! character references (with [`crate::scan::html`], which also says which elements
//! separate words), accepts quoted and unquoted attributes, skips comments,
//! `<script>`, `<style>` and `<textarea>`, and never fails. Every step advances
//! through the input, so the work is linear in its size; the number of links
//! kept is capped by the [`Collector`]. Nothing here parses the URLs.

use std::borrow::Cow;
use std::collections::HashSet;
use std::sync::LazyLock;

use regex::Regex;

use crate::scan::html::{decode_entities, find_ascii_ci, is_block_element};
use crate::scan::lookalike;

/// Characters of an anchor's text kept for comparison.
const MAX_ANCHOR_TEXT: usize = 1024;
/// Attributes read per tag.
const MAX_ATTRIBUTES: usize = 64;
/// Longest URL kept; the host is at the start, the rest is tracking.
const MAX_URL_LEN: usize = 4096;

/// Attributes whose value is a URL a mail client may load or a reader follow.
const URL_ATTRIBUTES: &[&str] = &["href", "src", "action", "formaction", "background", "poster"];

static TEXT_URL: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r#"(?i)\b(?:https?://|www\.)[^\s<>"'`{}|\\^\[\]\x00-\x1f\x7f]+"#).expect("valid regex")
});

/// One link as the message presents it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct Link {
    /// The URL as written, character references decoded.
    pub(crate) url: String,
    /// For `<a href>`: the visible text of the anchor, whitespace collapsed.
    pub(crate) text: Option<String>,
}

/// Gathers distinct links up to a limit.
pub(crate) struct Collector {
    links: Vec<Link>,
    seen: HashSet<Link>,
    max: usize,
    /// More links were present than the limit.
    pub(crate) overflowed: bool,
}

impl Collector {
    pub(crate) fn new(max: usize) -> Collector {
        Collector {
            links: Vec::new(),
            seen: HashSet::new(),
            max,
            overflowed: false,
        }
    }

    pub(crate) fn into_links(self) -> Vec<Link> {
        self.links
    }

    fn full(&self) -> bool {
        self.links.len() >= self.max
    }

    fn push(&mut self, url: &str, text: Option<String>) {
        let url = url.trim();
        if url.is_empty() {
            return;
        }
        if self.full() {
            self.overflowed = true;
            return;
        }
        let link = Link {
            url: truncate(url, MAX_URL_LEN).to_string(),
            text,
        };
        if self.seen.insert(link.clone()) {
            self.links.push(link);
        }
    }

    /// URLs written in plain text (`http://`, `https://`, `www.`).
    pub(crate) fn text(&mut self, text: &str) {
        let cleaned: Cow<str> = if text.chars().any(lookalike::is_invisible) {
            Cow::Owned(text.chars().filter(|c| !lookalike::is_invisible(*c)).collect())
        } else {
            Cow::Borrowed(text)
        };
        for m in TEXT_URL.find_iter(&cleaned) {
            if self.full() {
                self.overflowed = true;
                return;
            }
            self.push(trim_trailing_punctuation(m.as_str()), None);
        }
    }

    /// Links of an HTML document.
    pub(crate) fn html(&mut self, html: &str) {
        let bytes = html.as_bytes();
        let mut visible = String::new();
        let mut anchor: Option<Anchor> = None;
        let mut i = 0;
        while i < bytes.len() {
            if bytes.get(i) != Some(&b'<') {
                let end = find_byte(bytes, i, b'<').unwrap_or(bytes.len());
                let decoded = decode_entities(html.get(i..end).unwrap_or_default());
                visible.push_str(&decoded);
                if let Some(a) = anchor.as_mut() {
                    a.push_text(&decoded);
                }
                i = end;
                continue;
            }
            if bytes.get(i..).is_some_and(|rest| rest.starts_with(b"<!--")) {
                i = find(bytes, i + 4, b"-->").map_or(bytes.len(), |p| p + 3);
                continue;
            }
            if matches!(bytes.get(i + 1), Some(b'!' | b'?')) {
                i = find_byte(bytes, i + 1, b'>').map_or(bytes.len(), |p| p + 1);
                continue;
            }
            let Some((tag, next)) = parse_tag(html, i) else {
                // A lone "<" (as in "a < b") is text.
                visible.push('<');
                if let Some(a) = anchor.as_mut() {
                    a.push_text("<");
                }
                i += 1;
                continue;
            };
            i = next;
            if is_block_element(&tag.name) {
                visible.push(' ');
                if let Some(a) = anchor.as_mut() {
                    a.push_text(" ");
                }
            }
            if tag.closing {
                if tag.name == "a"
                    && let Some(a) = anchor.take()
                {
                    self.push(&a.href, Some(a.text()));
                }
                continue;
            }
            match tag.name.as_str() {
                "script" | "style" | "textarea" => {
                    let closing = format!("</{}", tag.name);
                    i = find_ascii_ci(bytes, i, closing.as_bytes()).unwrap_or(bytes.len());
                    continue;
                }
                "a" => {
                    if let Some(a) = anchor.take() {
                        self.push(&a.href, Some(a.text()));
                    }
                    anchor = tag.attribute("href").map(|href| Anchor {
                        href: href.to_string(),
                        text: String::new(),
                        chars: 0,
                    });
                }
                "meta" => {
                    let refresh = tag
                        .attribute("http-equiv")
                        .is_some_and(|v| v.eq_ignore_ascii_case("refresh"));
                    if refresh && let Some(target) = tag.attribute("content").and_then(refresh_target) {
                        self.push(target, None);
                    }
                }
                _ => {}
            }
            for (name, value) in &tag.attributes {
                let is_anchor_href = tag.name == "a" && name == "href";
                if !is_anchor_href && URL_ATTRIBUTES.contains(&name.as_str()) {
                    self.push(value, None);
                }
            }
        }
        if let Some(a) = anchor.take() {
            self.push(&a.href, Some(a.text()));
        }
        self.text(&visible);
    }
}

/// An open `<a href>` and the text seen inside it so far.
struct Anchor {
    href: String,
    text: String,
    chars: usize,
}

impl Anchor {
    fn push_text(&mut self, text: &str) {
        for c in text.chars().take(MAX_ANCHOR_TEXT.saturating_sub(self.chars)) {
            self.text.push(c);
            self.chars += 1;
        }
    }

    /// Whitespace collapsed, invisible characters removed.
    fn text(&self) -> String {
        let visible: String = self.text.chars().filter(|c| !lookalike::is_invisible(*c)).collect();
        visible.split_whitespace().collect::<Vec<_>>().join(" ")
    }
}

struct Tag {
    /// Lower case.
    name: String,
    closing: bool,
    /// Lower-case names, decoded values.
    attributes: Vec<(String, String)>,
}

impl Tag {
    fn attribute(&self, name: &str) -> Option<&str> {
        self.attributes.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}

/// Reads the tag starting at `start` (a `<`); `None` when no tag name follows.
/// Returns the tag and the index just past it.
fn parse_tag(html: &str, start: usize) -> Option<(Tag, usize)> {
    let bytes = html.as_bytes();
    let mut j = start + 1;
    let closing = bytes.get(j) == Some(&b'/');
    if closing {
        j += 1;
    }
    let name_start = j;
    while bytes
        .get(j)
        .is_some_and(|b| b.is_ascii_alphanumeric() || *b == b'-' || *b == b':')
    {
        j += 1;
    }
    if j == name_start || !bytes.get(name_start).is_some_and(u8::is_ascii_alphabetic) {
        return None;
    }
    let name = html.get(name_start..j)?.to_ascii_lowercase();
    let mut attributes = Vec::new();
    while j < bytes.len() {
        while bytes.get(j).is_some_and(|b| b.is_ascii_whitespace() || *b == b'/') {
            j += 1;
        }
        match bytes.get(j) {
            None => break,
            Some(b'>') => {
                j += 1;
                break;
            }
            _ => {}
        }
        let attr_start = j;
        while bytes
            .get(j)
            .is_some_and(|b| !b.is_ascii_whitespace() && !matches!(b, b'=' | b'>' | b'/'))
        {
            j += 1;
        }
        if j == attr_start {
            // A stray "=": step over it.
            j += 1;
            continue;
        }
        let attr_name = html.get(attr_start..j).unwrap_or_default().to_ascii_lowercase();
        while bytes.get(j).is_some_and(u8::is_ascii_whitespace) {
            j += 1;
        }
        let mut value = "";
        if bytes.get(j) == Some(&b'=') {
            j += 1;
            while bytes.get(j).is_some_and(u8::is_ascii_whitespace) {
                j += 1;
            }
            match bytes.get(j) {
                Some(&quote @ (b'"' | b'\'')) => {
                    let end = find_byte(bytes, j + 1, quote).unwrap_or(bytes.len());
                    value = html.get(j + 1..end).unwrap_or_default();
                    j = end + 1;
                }
                _ => {
                    let value_start = j;
                    while bytes.get(j).is_some_and(|b| !b.is_ascii_whitespace() && *b != b'>') {
                        j += 1;
                    }
                    value = html.get(value_start..j).unwrap_or_default();
                }
            }
        }
        if attributes.len() < MAX_ATTRIBUTES {
            attributes.push((attr_name, decode_entities(value).into_owned()));
        }
    }
    Some((
        Tag {
            name,
            closing,
            attributes,
        },
        j.min(bytes.len()),
    ))
}

/// The URL of a `<meta http-equiv="refresh" content="0; url=…">`.
fn refresh_target(content: &str) -> Option<&str> {
    let lower = content.to_ascii_lowercase();
    let at = lower.find("url=")? + 4;
    let target = content.get(at..)?.trim().trim_matches(['\'', '"']);
    (!target.is_empty()).then_some(target)
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

fn find_byte(bytes: &[u8], from: usize, wanted: u8) -> Option<usize> {
    bytes.get(from..)?.iter().position(|b| *b == wanted).map(|p| p + from)
}

fn find(bytes: &[u8], from: usize, needle: &[u8]) -> Option<usize> {
    bytes
        .get(from..)?
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|p| p + from)
}
