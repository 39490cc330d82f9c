//! Links that do not sit in a text or HTML body: in calendar invitations
//! (`text/calendar`, `.ics`: folded lines and `\n` escapes), in PDF link
//! annotations (`/URI (...)`), and in QR codes drawn in images (see
//! [`crate::scan::qr`]): what the message's view does not read as text. The
//! `urls` check judges them like the view's links; a link drawn as a QR code
//! is also reported as such.
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

/// Bytes of a calendar or PDF searched.
const MAX_CARRIER_BYTES: usize = 8 * 1024 * 1024;
/// Images decoded for QR codes per message.
const MAX_IMAGES: usize = 16;
/// Links taken from carriers per message.
const MAX_CARRIED: usize = 1000;
/// Link annotations read per PDF.
const MAX_PDF_URIS: usize = 256;

static PDF_URI: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"/URI\s*\(((?:\\.|[^\\)]){1,4096})\)").expect("valid regex"));

/// A calendar object's text with folded lines joined (RFC 5545 §3.1) and
/// its text escapes undone, so a URL split over lines reads whole.
pub(crate) fn unfold_calendar(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut lines = text.split('\n').peekable();
    while let Some(line) = lines.next() {
        out.push_str(line.strip_suffix('\r').unwrap_or(line));
        while let Some(next) = lines.peek() {
            if let Some(rest) = next.strip_prefix(' ').or_else(|| next.strip_prefix('\t')) {
                out.push_str(rest.strip_suffix('\r').unwrap_or(rest));
                lines.next();
            } else {
                break;
            }
        }
        out.push('\n');
    }
    out.replace("\\n", "\n")
        .replace("\\N", "\n")
        .replace("\\,", ",")
        .replace("\\;", ";")
}

/// Whether an attachment is a calendar object.
pub(crate) fn is_calendar(att: &Attachment) -> bool {
    att.declared_type == "text/calendar"
        || att
            .name
            .as_deref()
            .is_some_and(|n| n.to_ascii_lowercase().ends_with(".ics"))
        || att.data.starts_with(b"BEGIN:VCALENDAR")
}

/// The `/URI` targets of a PDF's link annotations (uncompressed objects).
pub(crate) fn pdf_uris(data: &[u8]) -> Vec<String> {
    let data = &data[..data.len().min(MAX_CARRIER_BYTES)];
    PDF_URI
        .captures_iter(data)
        .take(MAX_PDF_URIS)
        .filter_map(|c| c.get(1))
        .map(|m| pdf_string(m.as_bytes()))
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

/// Links carried by `attachments` outside any text the view reads (joined
/// calendar lines, PDF annotations, QR codes), and which of them are QR codes.
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
        if is_calendar(att) {
            let text = String::from_utf8_lossy(&data[..data.len().min(MAX_CARRIER_BYTES)]);
            text_urls(&unfold_calendar(&text), |u| push(u, &mut links));
        } else if data.starts_with(b"%PDF-") {
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
    fn calendar_lines_are_unfolded_and_unescaped() {
        let ics = "BEGIN:VEVENT\r\nDESCRIPTION:Join: https://evil.exa\r\n mple/path?a=1\\, b\\nnext\r\nEND:VEVENT\r\n";
        let text = unfold_calendar(ics);
        assert!(text.contains("https://evil.example/path?a=1, b\nnext"), "{text}");
    }

    #[test]
    fn pdf_link_annotations_are_read() {
        let pdf =
            b"%PDF-1.4\n5 0 obj << /Type /Annot /Subtype /Link /A << /S /URI /URI (https://evil.example/a\\)b) >> >>";
        assert_eq!(pdf_uris(pdf), vec!["https://evil.example/a)b".to_string()]);
        assert!(pdf_uris(b"%PDF-1.4 no links").is_empty());
    }
}
