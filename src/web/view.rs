//! A held message made safe to look at: its header as text, its first text
//! part as plain text (an HTML-only message as mail-parser's text rendering
//! of it), and its attachments as a list of name, type, size and SHA-256.
//!
//! Invariants: nothing here returns bytes meant to be interpreted by a
//! browser: every string goes through the template engine's escaping, and
//! attachment contents are hashed, never handed out. Output is bounded
//! (`MAX_TEXT`, `MAX_HEADER`, `MAX_ATTACHMENTS`).

use mail_parser::{MessageParser, MimeHeaders};
use serde::Serialize;

use crate::message::headers::header_len;

const MAX_TEXT: usize = 200 * 1024;
const MAX_HEADER: usize = 64 * 1024;
const MAX_ATTACHMENTS: usize = 200;

#[derive(Debug, Clone, Serialize, PartialEq)]
pub(crate) struct Attachment {
    pub(crate) name: String,
    pub(crate) content_type: String,
    pub(crate) size: usize,
    pub(crate) sha256: String,
}

#[derive(Debug, Clone, Serialize, PartialEq, Default)]
pub(crate) struct Content {
    /// The header section as received (lossy UTF-8), bounded.
    pub(crate) header: String,
    /// The first text part, as plain text, bounded.
    pub(crate) text: String,
    pub(crate) text_truncated: bool,
    pub(crate) attachments: Vec<Attachment>,
}

fn truncate(s: &str, max: usize) -> (String, bool) {
    if s.len() <= max {
        return (s.to_string(), false);
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    (s[..end].to_string(), true)
}

/// Splits `raw` into what the message page shows.
pub(crate) fn content(raw: &[u8]) -> Content {
    let header_end = header_len(raw).min(raw.len());
    let (header, _) = truncate(&String::from_utf8_lossy(&raw[..header_end]), MAX_HEADER);
    let Some(message) = MessageParser::default().parse(raw) else {
        return Content {
            header,
            ..Content::default()
        };
    };
    let (text, text_truncated) = message.body_text(0).map(|t| truncate(&t, MAX_TEXT)).unwrap_or_default();
    let attachments = message
        .attachments()
        .take(MAX_ATTACHMENTS)
        .map(|part| {
            let content_type = part
                .content_type()
                .map(|ct| match ct.subtype() {
                    Some(sub) => format!("{}/{}", ct.ctype(), sub),
                    None => ct.ctype().to_string(),
                })
                .unwrap_or_else(|| "application/octet-stream".into());
            let bytes = part.contents();
            Attachment {
                name: part.attachment_name().unwrap_or("(no name)").to_string(),
                content_type: content_type.to_lowercase(),
                size: bytes.len(),
                sha256: hex(ring::digest::digest(&ring::digest::SHA256, bytes).as_ref()),
            }
        })
        .collect();
    Content {
        header,
        text,
        text_truncated,
        attachments,
    }
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_and_attachment_listed_not_opened() {
        let raw = b"From: a@example.org\r\nSubject: <b>hi</b>\r\nMIME-Version: 1.0\r\n\
Content-Type: multipart/mixed; boundary=\"b\"\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nHello <script>x</script>\r\n\
--b\r\nContent-Type: application/pdf; name=\"<img src=x>.pdf\"\r\nContent-Disposition: attachment; filename=\"<img src=x>.pdf\"\r\n\
Content-Transfer-Encoding: base64\r\n\r\naGVsbG8=\r\n--b--\r\n";
        let c = content(raw);
        assert!(c.header.starts_with("From: a@example.org\r\nSubject: <b>hi</b>"));
        assert!(c.text.contains("Hello <script>x</script>"), "{:?}", c.text);
        assert_eq!(c.attachments.len(), 1);
        let a = &c.attachments[0];
        assert_eq!(a.name, "<img src=x>.pdf");
        assert_eq!(a.content_type, "application/pdf");
        assert_eq!(a.size, 5);
        // sha256("hello")
        assert_eq!(
            a.sha256,
            "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
        );
    }
}
