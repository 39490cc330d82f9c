//! The texts the `content` and `dlp` checks match besides the view's body
//! text ([`crate::scan::view::View::body_text`]): the unfolded header block,
//! and cutting a text at a byte limit on a character boundary.
//!
//! Invariants: every output is capped at a byte limit given by the caller
//! (cut on a character boundary) and no input can make this code panic.

/// The largest index `<= max` that is a character boundary of `s`.
pub(crate) fn floor_char_boundary(s: &str, max: usize) -> usize {
    if max >= s.len() {
        return s.len();
    }
    (0..=max).rev().find(|&i| s.is_char_boundary(i)).unwrap_or(0)
}

/// The header block of `raw`, unfolded: one `Name: value` per line, at most
/// `max` bytes.
pub(crate) fn header_text(raw: &[u8], max: usize) -> String {
    let block = raw.get(..crate::message::headers::header_len(raw)).unwrap_or(raw);
    let block = String::from_utf8_lossy(block);
    let mut out = String::new();
    let mut chars = block.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\r' => {}
            '\n' if matches!(chars.peek(), Some(' ' | '\t')) => {}
            c if out.len() + c.len_utf8() > max => break,
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_text_is_unfolded_and_capped_on_a_char_boundary() {
        assert_eq!(
            header_text(b"Subject: a\r\n b\r\nX: y\r\n\r\nbody", 1000),
            "Subject: a b\nX: y\n\n"
        );
        assert_eq!(header_text(b"Subject: abcdef\r\n\r\n", 6), "Subjec");
        assert_eq!(header_text("Subject: é\r\n\r\n".as_bytes(), 10), "Subject: ");
        assert_eq!(floor_char_boundary("éé", 3), 2);
        assert_eq!(floor_char_boundary("éé", 9), 4);
    }
}
