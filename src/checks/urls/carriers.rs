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

/// Characters of one link annotation's string kept (an escape pair counts as
/// one): a longer string is no link a reader clicks, and is skipped.
const MAX_URI_CHARS: usize = 4096;

/// A link annotation's string: `/URI`, blanks, `(`, escaped or plain
/// characters, `)`. Unbounded here and bounded after the match: written as
/// `{1,4096}`, the counted repetition of a Unicode class compiled to an
/// automaton of ~30 MB (~9 MB kept) at the first PDF a process saw.
static PDF_URI: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"/URI\s*\(((?:\\.|[^\\)])+)\)").expect("valid regex"));

/// Builds this file's tables now, when the check is built, rather than at
/// the first message that needs them (see the `checks` module header).
pub(crate) fn warm() {
    LazyLock::force(&PDF_URI);
}

/// The `/URI` targets of a PDF's link annotations (uncompressed objects).
fn pdf_uris(data: &[u8]) -> Vec<String> {
    let data = &data[..data.len().min(MAX_CARRIER_BYTES)];
    PDF_URI
        .captures_iter(data)
        .filter_map(|c| c.get(1))
        .map(|m| pdf_string(m.as_bytes()))
        .filter(|uri| uri.chars().count() <= MAX_URI_CHARS)
        .take(MAX_PDF_URIS)
        .collect()
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

    #[test]
    fn annotation_strings_are_read_to_their_closing_parenthesis_and_bounded() {
        assert_eq!(pdf_uris(b"/URI (x)/URI(y) /URI\n\t(z)"), ["x", "y", "z"]);
        assert_eq!(
            pdf_uris(b"/URI (a\\\\) b)"),
            ["a\\"],
            "an escaped backslash does not escape the )"
        );
        assert_eq!(
            pdf_uris(b"/URI (\xc3\xa9t\xc3\xa9) /URI (a\xffb)"),
            ["\u{e9}t\u{e9}"],
            "invalid UTF-8 is no link"
        );
        assert_eq!(pdf_uris(b"/URI (no end /URI (inner) tail"), ["no end /URI (inner"]);
        assert!(pdf_uris(b"/URI () /URI (a\\").is_empty());
        let at = |n: usize| format!("/URI ({})", "a".repeat(n)).into_bytes();
        assert_eq!(pdf_uris(&at(4096)), ["a".repeat(4096)]);
        assert!(pdf_uris(&at(4097)).is_empty(), "over MAX_URI_CHARS");
        let escaped = format!("/URI ({})", "\\)".repeat(4096));
        assert_eq!(
            pdf_uris(escaped.as_bytes()),
            [")".repeat(4096)],
            "an escape pair is one character"
        );
        let many = "/URI (x) ".repeat(300) + "/URI (y)";
        assert_eq!(pdf_uris(many.as_bytes()).len(), MAX_PDF_URIS);
        let long_first = [at(5000), b" /URI (next)".to_vec()].concat();
        assert_eq!(
            pdf_uris(&long_first),
            ["next"],
            "a skipped string does not hide the next annotation"
        );
    }
}
