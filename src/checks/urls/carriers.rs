//! Links that do not sit in any text the message's view reads: in PDF link
//! annotations (`/URI (...)`) and in QR codes drawn in images (see
//! [`crate::scan::qr`]). (Calendar invitations are text: the view reads them
//! with their folded lines joined, `scan::view::calendar`.) The `urls` check
//! judges these like the view's links; a link drawn as a QR code is also
//! reported as such.
//!
//! Bounded by the inventory's attachments and the caps below; reads bytes,
//! never renders, runs or fetches anything.

use std::collections::HashSet;
use std::sync::LazyLock;

use regex::bytes::Regex;

use crate::scan::inventory::Attachment;
use crate::scan::qr;

use crate::scan::view::links::text_urls;
use crate::scan::view::{Link, LinkKind};

/// Bytes of a PDF searched.
const MAX_CARRIER_BYTES: usize = 8 * 1024 * 1024;
/// Images decoded for QR codes per message.
const MAX_IMAGES: usize = 16;
/// Links taken from carriers per message.
const MAX_CARRIED: usize = 1000;
/// Link annotations read per PDF.
const MAX_PDF_URIS: usize = 256;

/// Characters of one link annotation's string read (an escape pair counts as one).
const MAX_URI_CHARS: usize = 4096;

/// Where a link annotation's string opens: `/URI`, blanks, `(`. The string
/// itself is read by `string_char`, not by the pattern: as `{1,4096}` of a
/// Unicode class it compiled to an automaton of ~30 MB (kept: ~9 MB, plus a
/// 2.5 MB search cache per thread) at the first PDF a process saw.
static PDF_URI_OPEN: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"/URI\s*\(").expect("valid regex"));

/// The `/URI` targets of a PDF's link annotations (uncompressed objects):
/// what `/URI\s*\(((?:\\.|[^\\)]){1,4096})\)` captures, leftmost first.
/// Linear: a string is read once however many openings it contains.
fn pdf_uris(data: &[u8]) -> Vec<String> {
    let data = &data[..data.len().min(MAX_CARRIER_BYTES)];
    let mut uris = Vec::new();
    let mut pos = 0;
    while uris.len() < MAX_PDF_URIS {
        let Some(open) = PDF_URI_OPEN.find_at(data, pos) else {
            break;
        };
        // The string runs to the first byte that starts no character of it.
        let mut end = open.end();
        let mut chars = 0usize;
        while let Some(len) = string_char(&data[end..]) {
            end += len;
            chars += 1;
        }
        if data.get(end) != Some(&b')') {
            // No opening before `end` has its `)` (see below): none matches.
            pos = end;
            continue;
        }
        // An opening inside the string (`/URI (` is text there too) starts
        // at a character boundary of it (its `(` follows a letter or a blank,
        // never an escaping backslash) and so reads to the same `)`, with
        // fewer characters: the leftmost with 1 to MAX_URI_CHARS is the match.
        let mut at = open;
        let mut walked = open.end();
        loop {
            while walked < at.end() {
                match string_char(&data[walked..]) {
                    Some(len) => {
                        walked += len;
                        chars -= 1;
                    }
                    None => break,
                }
            }
            if walked == at.end() && (1..=MAX_URI_CHARS).contains(&chars) {
                uris.push(pdf_string(&data[walked..end]));
                break;
            }
            match PDF_URI_OPEN.find_at(data, at.end()) {
                Some(next) if next.end() <= end => at = next,
                _ => break,
            }
        }
        pos = end + 1;
    }
    uris
}

/// The length of the string character that `data` starts with, as
/// `\\.|[^\\)]` reads it: a backslash and any character but a line feed, or
/// any character but `)` and `\`; always valid UTF-8. `None` ends the string.
fn string_char(data: &[u8]) -> Option<usize> {
    match *data.first()? {
        b')' => None,
        b'\\' => {
            let (len, c) = utf8_char(&data[1..])?;
            (c != '\n').then_some(1 + len)
        }
        _ => utf8_char(data).map(|(len, _)| len),
    }
}

/// The valid UTF-8 character `data` starts with, and its length.
fn utf8_char(data: &[u8]) -> Option<(usize, char)> {
    let len = match *data.first()? {
        0x00..=0x7F => 1,
        0xC2..=0xDF => 2,
        0xE0..=0xEF => 3,
        0xF0..=0xF4 => 4,
        _ => return None,
    };
    let c = std::str::from_utf8(data.get(..len)?).ok()?.chars().next()?;
    Some((len, c))
}

/// A PDF literal string's escapes undone (`\(`, `\)`, `\\`).
fn pdf_string(raw: &[u8]) -> String {
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        if raw[i] == b'\\' && i + 1 < raw.len() {
            out.push(raw[i + 1]);
            i += 2;
        } else {
            out.push(raw[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Links carried by `attachments` outside any text the view reads (PDF
/// annotations, QR codes), and which of them are QR codes.
pub(crate) fn collect(attachments: &[Attachment]) -> (Vec<Link>, HashSet<String>) {
    let mut links: Vec<Link> = Vec::new();
    let mut qr_urls = HashSet::new();
    let push = |url: &str, links: &mut Vec<Link>| {
        if links.len() < MAX_CARRIED && !links.iter().any(|l| l.url == url) {
            links.push(Link {
                url: url.to_string(),
                written: url.to_string(),
                text: None,
                kind: LinkKind::Text,
            });
        }
    };
    let mut images = 0;
    for att in attachments {
        let data: &[u8] = &att.data;
        if data.starts_with(b"%PDF-") {
            for uri in pdf_uris(data) {
                text_urls(&uri, |u| push(u, &mut links));
            }
        } else if qr::format(data).is_some() && images < MAX_IMAGES {
            images += 1;
            for text in qr::decode(data) {
                text_urls(&text, |u| {
                    qr_urls.insert(u.to_string());
                    push(u, &mut links);
                });
            }
        }
    }
    (links, qr_urls)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pdf_link_annotations_are_read() {
        let pdf =
            b"%PDF-1.4\n5 0 obj << /Type /Annot /Subtype /Link /A << /S /URI /URI (https://evil.example/a\\)b) >> >>";
        assert_eq!(pdf_uris(pdf), vec!["https://evil.example/a)b".to_string()]);
        assert!(pdf_uris(b"%PDF-1.4 no links").is_empty());
    }

    /// What `pdf_uris` read with one pattern before the string was read by
    /// hand: the reference it must agree with.
    fn by_the_pattern(data: &[u8]) -> Vec<String> {
        static PATTERN: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"/URI\s*\(((?:\\.|[^\\)]){1,4096})\)").unwrap());
        let data = &data[..data.len().min(MAX_CARRIER_BYTES)];
        PATTERN
            .captures_iter(data)
            .take(MAX_PDF_URIS)
            .filter_map(|c| c.get(1))
            .map(|m| pdf_string(m.as_bytes()))
            .collect()
    }

    #[test]
    fn strings_are_read_as_the_pattern_read_them() {
        let long = |n: usize| "a".repeat(n);
        let cases: Vec<Vec<u8>> = vec![
            b"/URI()".to_vec(),
            b"/URI (x)/URI(y) /URI\n\t(z)".to_vec(),
            b"/URI (a\\\\) b)".to_vec(),
            b"/URI (a\\\nb) /URI (c\nd)".to_vec(),
            b"/URI (a\xffb) /URI (ok) /URI (\xc3\xa9t\xc3\xa9) /URI (\xc3) /URI (\xed\xa0\x80)".to_vec(),
            b"/URI\xc2\x85(next-line blank) /URI\xc2\xa0(nbsp)".to_vec(),
            b"/URI (no end /URI (inner) tail".to_vec(),
            b"/URI (a /URI (b /URI (c) d) e)".to_vec(),
            b"/URI\\(x) /URI \\(y)".to_vec(),
            b"/URI (a\\".to_vec(),
            format!("/URI ({})", long(4096)).into_bytes(),
            format!("/URI ({})", long(4097)).into_bytes(),
            format!("/URI ({}/URI (inner{}) tail)", long(3000), long(2000)).into_bytes(),
            format!("/URI ({}/URI ({}) tail)", long(5000), long(10)).into_bytes(),
            format!("/URI ({}/URI ({}/URI ({}))", long(4000), long(4000), long(4000)).into_bytes(),
            format!("/URI ({}/URI ({}/URI ({}))", long(10), long(4090), long(4000)).into_bytes(),
            format!("/URI (\\{}\\)x/URI (y)", "\u{e9}".repeat(4095)).into_bytes(),
            "/URI (x) ".repeat(300).into_bytes(),
        ];
        for case in &cases {
            assert_eq!(
                pdf_uris(case),
                by_the_pattern(case),
                "{:?}",
                String::from_utf8_lossy(case)
            );
        }
        // Random texts over the bytes that matter, some of them long.
        let pieces: [&[u8]; 12] = [
            b"/URI",
            b" ",
            b"(",
            b")",
            b"\\",
            b"\n",
            b"a",
            b"\xc3\xa9",
            b"\xff",
            b"\xc3",
            b"/UR",
            b"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
        ];
        let mut state: u64 = 0x2545_F491_4F6C_DD1D;
        for round in 0..3000 {
            let mut text = Vec::new();
            let n = if round % 100 == 0 { 4000 } else { 40 };
            for _ in 0..n {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                text.extend_from_slice(pieces[(state % pieces.len() as u64) as usize]);
            }
            assert_eq!(
                pdf_uris(&text),
                by_the_pattern(&text),
                "{:?}",
                String::from_utf8_lossy(&text)
            );
        }
    }
}
