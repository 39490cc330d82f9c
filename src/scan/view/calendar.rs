//! Calendar objects (`text/calendar`, `.ics`, RFC 5545) as a reader's client
//! shows them: folded lines joined and text escapes undone, so a URL or a
//! lure split over lines in an invitation reads whole. The view reads an
//! invitation through this, and every check sees the joined text and links.
//!
//! Pure and linear; never interprets the calendar beyond its line folding.

use crate::scan::inventory::Attachment;

/// Whether an attachment is a calendar object: by declared type, name or content.
pub(crate) fn is_calendar(att: &Attachment) -> bool {
    att.declared_type == "text/calendar"
        || att
            .name
            .as_deref()
            .is_some_and(|n| n.to_ascii_lowercase().ends_with(".ics"))
        || att.data.starts_with(b"BEGIN:VCALENDAR")
}

/// A calendar object's text with folded lines joined (RFC 5545 §3.1) and
/// its text escapes undone (§3.3.11).
pub(crate) fn unfold(text: &str) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calendar_lines_are_unfolded_and_unescaped() {
        let ics = "BEGIN:VEVENT\r\nDESCRIPTION:Join: https://evil.exa\r\n mple/path?a=1\\, b\\nnext\r\nEND:VEVENT\r\n";
        let text = unfold(ics);
        assert!(text.contains("https://evil.example/path?a=1, b\nnext"), "{text}");
    }
}
