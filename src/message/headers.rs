//! Reading header fields straight from the raw message bytes.
//!
//! Admission and stamping need the exact byte ranges of fields (to remove ours
//! without touching anything else) and a few values, before and independently
//! of MIME parsing. This walker understands folding (continuation lines that
//! start with space or tab), CRLF and bare-LF line endings, and stops at the
//! first empty line. It never allocates for fields it is not asked about and
//! never fails: a malformed line is reported as a field with an empty name.

use std::ops::Range;

/// One header field as it appears in the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawField<'a> {
    /// Field name as written (no trailing whitespace, no colon).
    pub name: &'a [u8],
    /// Everything after the colon up to (not including) the final line ending,
    /// folding included.
    pub value: &'a [u8],
    /// The whole field, including its final line ending.
    pub range: Range<usize>,
}

impl RawField<'_> {
    pub(crate) fn name_is(&self, name: &str) -> bool {
        self.name.eq_ignore_ascii_case(name.as_bytes())
    }

    /// The value unfolded, trimmed, as (lossy) UTF-8.
    pub fn unfolded(&self) -> String {
        let mut out = Vec::with_capacity(self.value.len());
        let mut in_break = false;
        for &b in self.value {
            match b {
                b'\r' | b'\n' => in_break = true,
                b' ' | b'\t' if in_break => {
                    in_break = false;
                    out.push(b' ');
                }
                _ => {
                    in_break = false;
                    out.push(b);
                }
            }
        }
        String::from_utf8_lossy(&out).trim().to_string()
    }
}

/// Iterator over the header fields of a raw message.
pub struct Fields<'a> {
    raw: &'a [u8],
    pos: usize,
    done: bool,
}

pub fn fields(raw: &[u8]) -> Fields<'_> {
    Fields {
        raw,
        pos: 0,
        done: false,
    }
}

/// End of the line starting at `pos` (index after its LF, or the input length).
fn line_end(raw: &[u8], pos: usize) -> usize {
    match memchr_lf(&raw[pos..]) {
        Some(i) => pos + i + 1,
        None => raw.len(),
    }
}

fn memchr_lf(s: &[u8]) -> Option<usize> {
    s.iter().position(|&b| b == b'\n')
}

fn is_blank_line(line: &[u8]) -> bool {
    line == b"\r\n" || line == b"\n"
}

impl<'a> Iterator for Fields<'a> {
    type Item = RawField<'a>;

    fn next(&mut self) -> Option<RawField<'a>> {
        if self.done || self.pos >= self.raw.len() {
            return None;
        }
        let start = self.pos;
        let first_end = line_end(self.raw, start);
        if is_blank_line(&self.raw[start..first_end]) {
            self.done = true;
            return None;
        }
        // Extend over continuation lines.
        let mut end = first_end;
        while end < self.raw.len() && matches!(self.raw[end], b' ' | b'\t') {
            end = line_end(self.raw, end);
        }
        self.pos = end;
        let field = &self.raw[start..end];
        let content_end = field.len()
            - if field.ends_with(b"\r\n") {
                2
            } else if field.ends_with(b"\n") {
                1
            } else {
                0
            };
        let first_line = &field[..first_end - start];
        let (name, value) = match first_line.iter().position(|&b| b == b':') {
            Some(colon) if colon > 0 && !matches!(field[0], b' ' | b'\t') => {
                let name = trim_end(&field[..colon]);
                (name, &field[colon + 1..content_end])
            }
            _ => (&field[..0], &field[..content_end]),
        };
        Some(RawField {
            name,
            value,
            range: start..end,
        })
    }
}

fn trim_end(s: &[u8]) -> &[u8] {
    let mut end = s.len();
    while end > 0 && matches!(s[end - 1], b' ' | b'\t') {
        end -= 1;
    }
    &s[..end]
}

/// Unfolded values of every field named `name`, in order of appearance.
pub(crate) fn values(raw: &[u8], name: &str) -> Vec<String> {
    fields(raw).filter(|f| f.name_is(name)).map(|f| f.unfolded()).collect()
}

/// Length of the header section including the blank line (the whole input if
/// there is no blank line).
pub(crate) fn header_len(raw: &[u8]) -> usize {
    let mut i = 0;
    while i < raw.len() {
        if raw[i] == b'\n' {
            if raw.get(i + 1) == Some(&b'\n') {
                return i + 2;
            }
            if raw.get(i + 1) == Some(&b'\r') && raw.get(i + 2) == Some(&b'\n') {
                return i + 3;
            }
        }
        i += 1;
    }
    raw.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn walks_folded_fields_and_stops_at_the_body() {
        let raw = b"Subject: a\r\n b\r\nX-Test:\tv\r\n\r\nBody: not a header\r\n";
        let f: Vec<_> = fields(raw).collect();
        assert_eq!(f.len(), 2);
        assert_eq!(f[0].name, b"Subject");
        assert_eq!(f[0].unfolded(), "a b");
        assert_eq!(f[0].range, 0..16);
        assert_eq!(f[1].unfolded(), "v");
    }

    #[test]
    fn bare_lf_and_missing_body_and_malformed_lines() {
        let raw = b"A: 1\nnot a field\nB : 2";
        let f: Vec<_> = fields(raw).collect();
        assert_eq!(f.len(), 3);
        assert_eq!(f[1].name, b"");
        assert_eq!(f[2].name, b"B");
        assert_eq!(f[2].unfolded(), "2");
        assert_eq!(values(raw, "b"), vec!["2"]);
    }

    #[test]
    fn leading_continuation_is_malformed_not_a_panic() {
        let raw = b" x: y\r\nA: 1\r\n";
        let f: Vec<_> = fields(raw).collect();
        assert_eq!(f[0].name, b"");
        assert_eq!(f[1].name, b"A");
    }
    #[test]
    fn header_length_handles_both_line_endings() {
        assert_eq!(header_len(b"A: b\r\n\r\nbody"), 8);
        assert_eq!(header_len(b"A: b\n\nbody"), 6);
        assert_eq!(header_len(b"A: b\r\n"), 6);
    }
}
