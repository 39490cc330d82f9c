//! The readable text of a message, as the `content` and `dlp` checks scan it:
//! the decoded text/plain and text/html body parts (HTML reduced to text),
//! including those of attached messages, and the unfolded header block.
//!
//! Invariants: every output is capped at a byte limit given by the caller
//! (cut on a character boundary), descent into attached messages stops at
//! [`crate::scan::inventory::MAX_DEPTH`], and no input can make this code panic or
//! loop without consuming input. The HTML reduction is deliberately crude
//! (no DOM, no CSS): tags and comments are dropped, `script`/`style` contents
//! skipped, entities decoded, whitespace collapsed, a new line after each
//! block element; that is enough to match words and numbers, and it is linear
//! in the input. Which elements are blocks and how entities decode is
//! [`crate::scan::html`]'s, shared with the link extraction of the `urls` check.

use std::collections::BTreeSet;

use mail_parser::{Message, PartType};

use crate::scan::html::{decode_reference, find_ascii_ci, is_block_element};
use crate::scan::inventory::MAX_DEPTH;

/// A string that stops growing at `max` bytes.
pub(crate) struct Capped {
    text: String,
    max: usize,
}

impl Capped {
    pub(crate) fn new(max: usize) -> Capped {
        Capped {
            text: String::new(),
            max,
        }
    }

    pub(crate) fn is_full(&self) -> bool {
        self.text.len() >= self.max
    }

    pub(crate) fn push(&mut self, c: char) {
        if self.text.len() + c.len_utf8() <= self.max {
            self.text.push(c);
        } else {
            // Mark as full so callers stop early.
            self.max = self.text.len();
        }
    }

    pub(crate) fn push_str(&mut self, s: &str) {
        let room = self.max.saturating_sub(self.text.len());
        let cut = floor_char_boundary(s, room);
        self.text.push_str(s.get(..cut).unwrap_or(""));
        if cut < s.len() {
            self.max = self.text.len();
        }
    }

    fn ends_with_space(&self) -> bool {
        self.text.is_empty() || self.text.ends_with([' ', '\n'])
    }

    pub(crate) fn into_string(self) -> String {
        self.text
    }
}

/// The largest index `<= max` that is a character boundary of `s`.
pub(crate) fn floor_char_boundary(s: &str, max: usize) -> usize {
    if max >= s.len() {
        return s.len();
    }
    (0..=max).rev().find(|&i| s.is_char_boundary(i)).unwrap_or(0)
}

/// The decoded body text of `message` and of the messages attached to it.
pub(crate) fn body_text(message: &Message<'_>, max: usize) -> String {
    let mut out = Capped::new(max);
    append_bodies(message, 0, &mut out);
    out.into_string()
}

fn append_bodies(message: &Message<'_>, depth: u32, out: &mut Capped) {
    let bodies: BTreeSet<u32> = message
        .text_body
        .iter()
        .chain(message.html_body.iter())
        .copied()
        .collect();
    for (i, part) in message.parts.iter().enumerate() {
        if out.is_full() {
            return;
        }
        let is_body = u32::try_from(i).is_ok_and(|i| bodies.contains(&i));
        match &part.body {
            PartType::Text(text) if is_body => {
                out.push_str(text);
                out.push('\n');
            }
            PartType::Html(html) if is_body => {
                html_to_text(html, out);
                out.push('\n');
            }
            PartType::Message(nested) if depth < MAX_DEPTH => append_bodies(nested, depth + 1, out),
            _ => {}
        }
    }
}

/// The header block of `raw`, unfolded: one `Name: value` per line.
pub(crate) fn header_text(raw: &[u8], max: usize) -> String {
    let block = raw.get(..crate::message::headers::header_len(raw)).unwrap_or(raw);
    let block = String::from_utf8_lossy(block);
    let mut out = Capped::new(max);
    let mut chars = block.chars().peekable();
    while let Some(c) = chars.next() {
        if out.is_full() {
            break;
        }
        match c {
            '\r' => {}
            '\n' if matches!(chars.peek(), Some(' ' | '\t')) => {}
            c => out.push(c),
        }
    }
    out.into_string()
}

/// Tags whose contents are not text at all.
const SKIPPED_TAGS: [&str; 4] = ["script", "style", "head", "template"];

/// Appends the text of `html` to `out`.
pub(crate) fn html_to_text(html: &str, out: &mut Capped) {
    let bytes = html.as_bytes();
    let mut i = 0;
    while i < bytes.len() && !out.is_full() {
        let rest = html.get(i..).unwrap_or("");
        let Some(c) = rest.chars().next() else { break };
        if c == '<' {
            if let Some(next) = skip_markup(html, i) {
                if let Some(tag) = tag_name(rest)
                    && is_block_element(&tag)
                {
                    // Cells of one row read as one line.
                    space(out, if matches!(tag.as_str(), "td" | "th") { ' ' } else { '\n' });
                }
                i = next;
                continue;
            }
        } else if c == '&'
            && let Some((decoded, len)) = decode_reference(rest.get(1..).unwrap_or(""))
        {
            if decoded.is_whitespace() {
                space(out, ' ');
            } else {
                out.push(decoded);
            }
            i += 1 + len;
            continue;
        }
        if c.is_whitespace() {
            space(out, ' ');
        } else {
            out.push(c);
        }
        i += c.len_utf8();
    }
}

/// Collapses whitespace: a newline wins over a space already written.
fn space(out: &mut Capped, c: char) {
    if !out.ends_with_space() {
        out.push(c);
    } else if c == '\n' && out.text.ends_with(' ') {
        out.text.pop();
        out.push('\n');
    }
}

/// Lower-case name of the tag `<name` or `</name` at the start of `s`.
fn tag_name(s: &str) -> Option<String> {
    let s = s.strip_prefix('<')?;
    let s = s.strip_prefix('/').unwrap_or(s);
    let end = s.find(|c: char| !c.is_ascii_alphanumeric()).unwrap_or(s.len());
    (end > 0).then(|| s.get(..end).unwrap_or("").to_ascii_lowercase())
}

/// If markup starts at byte `at` (a comment, a tag, a declaration), the index
/// just after it; `None` when the `<` is ordinary text ("a < b").
fn skip_markup(html: &str, at: usize) -> Option<usize> {
    let rest = html.get(at..)?;
    if rest.starts_with("<!--") {
        return Some(find_from(html, at + 4, "-->").map_or(html.len(), |e| e + 3));
    }
    let second = rest.as_bytes().get(1).copied()?;
    if !(second.is_ascii_alphabetic() || second == b'/' || second == b'!' || second == b'?') {
        return None;
    }
    let end = find_from(html, at, ">").map_or(html.len(), |e| e + 1);
    match tag_name(rest) {
        Some(tag) if SKIPPED_TAGS.contains(&tag.as_str()) && second != b'/' => {
            // Skip to the matching close tag, or to the end of the document.
            let close = format!("</{tag}");
            let close_at = find_ascii_ci(html.as_bytes(), end, close.as_bytes()).unwrap_or(html.len());
            Some(find_from(html, close_at, ">").map_or(html.len(), |e| e + 1))
        }
        _ => Some(end),
    }
}

fn find_from(hay: &str, from: usize, needle: &str) -> Option<usize> {
    hay.get(from..)?.find(needle).map(|p| p + from)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(html: &str) -> String {
        let mut out = Capped::new(1 << 20);
        html_to_text(html, &mut out);
        out.into_string()
    }

    #[test]
    fn tags_scripts_comments_are_dropped_and_entities_decoded() {
        let html = "<html><head><title>T</title><style>p{color:red}</style></head><body>\
<p>Win&nbsp;a <b>FREE</b> prize</p><!-- hidden <p>x</p> --><script>var a='<p>no</p>';</script>\
<p>&#52;111 &#x31;111 &amp; 1 &lt; 2 &bogus; a < b</p></body></html>";
        assert_eq!(text(html), "Win a FREE prize\n4111 1111 & 1 < 2 &bogus; a < b\n");
    }

    #[test]
    fn inline_tags_join_and_cells_separate() {
        assert_eq!(text("41<span>11</span>"), "4111");
        assert_eq!(text("<table><tr><td>a</td><td>b</td></tr></table>"), "a b\n");
    }

    #[test]
    fn text_reads_as_a_browser_shows_it() {
        // Obfuscated words decode as the reader sees them ...
        assert_eq!(
            text("&#0000086;iagra &#x56iagra V&shy;iagra"),
            "Viagra Viagra V\u{AD}iagra"
        );
        // ... and text in separate blocks is not one word.
        assert_eq!(text("<section>4111</section><center>1111</center>"), "4111\n1111\n");
        assert_eq!(text("pay&Tab;now&NewLine;&amp friends"), "pay now & friends");
    }

    #[test]
    fn hostile_html_ends_cleanly() {
        for html in [
            "<",
            "<a",
            "<!--",
            "<script>never closed",
            "&#xFFFFFFFF;",
            "&#;",
            "&",
            "<\u{e9}>",
            "é<b>é",
        ] {
            let _ = text(html);
        }
        assert_eq!(text("é<b>é"), "éé");
        assert_eq!(text("&#xD800;"), "\u{FFFD}");
    }

    #[test]
    fn output_is_capped_on_a_char_boundary() {
        let mut out = Capped::new(5);
        html_to_text("ééé<p>more</p>", &mut out);
        assert_eq!(out.into_string(), "éé");
        assert_eq!(
            header_text(b"Subject: a\r\n b\r\nX: y\r\n\r\nbody", 1000),
            "Subject: a b\nX: y\n\n"
        );
        assert_eq!(header_text(b"Subject: abcdef\r\n\r\n", 6), "Subjec");
    }
}
