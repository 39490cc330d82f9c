//! The header block as the parsers downstream may read it.
//!
//! A header block that is not plain RFC 5322 can be read more than one way,
//! and a field that one reader sees at the top level may be invisible to
//! another (bare CR, bare LF, a bare-LF blank line after CRLF lines, NUL or
//! 8-bit octets in a field name). [`crate::message::headers`] is exogate's own
//! reading (CRLF or bare LF ends a line, the first blank line ends the block);
//! this module walks the block under each other reading a real parser uses, so
//! that `message::owned` can remove our fields wherever any of them sees one.
//!
//! The readings ([`READINGS`]):
//! - `lf`: CRLF or bare LF ends a line, the first blank line ends the block
//!   (Postfix, mail-parser, exogate's own walker);
//! - `any`: CRLF, bare LF or bare CR ends a line (Python's `email`);
//! - `crlf`: only CRLF ends a line; bare LF and CR are octets of the line
//!   (strict RFC 5322 readers);
//! - `lf-skip` / `any-skip`: as `lf` / `any`, but the block ends only at a
//!   CRLF blank line and other empty lines are skipped (readers that look for
//!   the first CRLF CRLF and then split lines). When there is no CRLF blank
//!   line in the first [`MAX_HEADER_SCAN`] octets they read as `lf` / `any`.
//!
//! A field's name is compared after dropping every octet that is not visible
//! ASCII (NUL, controls, white space, 8-bit): a reader that drops or
//! tolerates such octets sees the bare name. A block whose first line starts
//! with white space has an orphan continuation: it belongs to no field, and a
//! reader attaches it to whatever precedes, which after stamping is ours.
//!
//! Invariants: no allocation per line; never fails, never reads past
//! [`MAX_HEADER_SCAN`] octets. Must never: decide what to remove (that is
//! `owned.rs`).

use std::ops::Range;

/// How far any reading looks for the end of the header block. Postfix stops
/// at 100 KiB (`header_size_limit`), Exchange Online refuses headers over
/// 256 KiB; a field beyond this is body to every MTA we deliver to.
pub const MAX_HEADER_SCAN: usize = 1 << 20;

/// What ends a line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Lines {
    /// CRLF or bare LF.
    LfOrCrlf,
    /// CRLF, bare LF or bare CR.
    Any,
    /// CRLF only.
    CrlfOnly,
}

/// What ends the header block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum End {
    /// The first empty line.
    FirstBlank,
    /// The first empty line ended by CRLF; other empty lines are skipped.
    CrlfBlank,
}

/// One way of reading a header block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Reading {
    pub(crate) name: &'static str,
    pub(crate) lines: Lines,
    pub(crate) end: End,
}

/// Every reading `owned.rs` removes our fields under.
pub(crate) const READINGS: [Reading; 5] = [
    Reading {
        name: "lf",
        lines: Lines::LfOrCrlf,
        end: End::FirstBlank,
    },
    Reading {
        name: "any",
        lines: Lines::Any,
        end: End::FirstBlank,
    },
    Reading {
        name: "crlf",
        lines: Lines::CrlfOnly,
        end: End::FirstBlank,
    },
    Reading {
        name: "lf-skip",
        lines: Lines::LfOrCrlf,
        end: End::CrlfBlank,
    },
    Reading {
        name: "any-skip",
        lines: Lines::Any,
        end: End::CrlfBlank,
    },
];

/// A field as one reading sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ReadField {
    /// From the first octet of its first line to the end of its last line
    /// ending (continuation lines included).
    pub(crate) range: Range<usize>,
    /// The end of its last line without the line ending.
    pub(crate) content_end: usize,
    /// Where its value starts (after the colon); `None` without a colon.
    pub(crate) colon: Option<usize>,
    /// A continuation with nothing before it to continue (first line only).
    pub(crate) orphan: bool,
}

impl ReadField {
    /// The name, lower-cased, without any octet that is not visible ASCII.
    pub(crate) fn bare_name(&self, raw: &[u8]) -> Vec<u8> {
        match self.colon {
            Some(colon) => raw[self.range.start..colon]
                .iter()
                .filter(|b| (0x21..=0x7e).contains(*b))
                .map(u8::to_ascii_lowercase)
                .collect(),
            None => Vec::new(),
        }
    }

    /// The value with line endings dropped, as (lossy) UTF-8.
    pub(crate) fn value(&self, raw: &[u8]) -> String {
        let Some(colon) = self.colon else {
            return String::new();
        };
        let v: Vec<u8> = raw[colon + 1..self.content_end]
            .iter()
            .copied()
            .filter(|b| !matches!(b, b'\r' | b'\n'))
            .collect();
        String::from_utf8_lossy(&v).trim().to_string()
    }
}

/// The block under one reading: its fields, and where it ends (`None`: no
/// blank line within the input or the scan limit).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Block {
    pub(crate) fields: Vec<ReadField>,
    pub(crate) end: Option<usize>,
}

/// One line: content `start..content_end`, line ending up to `end`.
struct Line {
    start: usize,
    content_end: usize,
    end: usize,
}

fn next_line(raw: &[u8], start: usize, lines: Lines) -> Line {
    let rest = &raw[start..];
    let found = match lines {
        Lines::LfOrCrlf => rest.iter().position(|&b| b == b'\n').map(|i| {
            if i > 0 && rest[i - 1] == b'\r' {
                (i - 1, i + 1)
            } else {
                (i, i + 1)
            }
        }),
        Lines::Any => rest.iter().position(|&b| b == b'\r' || b == b'\n').map(|i| {
            if rest[i] == b'\r' && rest.get(i + 1) == Some(&b'\n') {
                (i, i + 2)
            } else {
                (i, i + 1)
            }
        }),
        Lines::CrlfOnly => rest.windows(2).position(|w| w == b"\r\n").map(|i| (i, i + 2)),
    };
    match found {
        Some((content, end)) => Line {
            start,
            content_end: start + content,
            end: start + end,
        },
        None => Line {
            start,
            content_end: raw.len(),
            end: raw.len(),
        },
    }
}

fn is_fold(b: u8) -> bool {
    matches!(b, b' ' | b'\t')
}

/// Walks the block of `raw` under `reading`.
pub(crate) fn read(raw: &[u8], reading: Reading) -> Block {
    let block = walk(raw, reading);
    if reading.end == End::CrlfBlank && block.end.is_none() {
        // No CRLF CRLF: such a reader falls back to the first blank line.
        return walk(
            raw,
            Reading {
                end: End::FirstBlank,
                ..reading
            },
        );
    }
    block
}

fn walk(raw: &[u8], reading: Reading) -> Block {
    let raw = &raw[..raw.len().min(MAX_HEADER_SCAN)];
    let limit = raw.len();
    let mut fields: Vec<ReadField> = Vec::new();
    let mut current: Option<ReadField> = None;
    let mut pos = 0;
    while pos < limit {
        let line = next_line(raw, pos, reading.lines);
        let content = &raw[line.start..line.content_end];
        if content.is_empty() {
            let crlf = &raw[line.content_end..line.end] == b"\r\n";
            if reading.end == End::FirstBlank || crlf {
                fields.extend(current);
                return Block {
                    fields,
                    end: Some(line.end),
                };
            }
            pos = line.end;
            continue;
        }
        if is_fold(content[0]) {
            match current.as_mut() {
                Some(field) => {
                    field.range.end = line.end;
                    field.content_end = line.content_end;
                }
                None => {
                    current = Some(ReadField {
                        range: line.start..line.end,
                        content_end: line.content_end,
                        colon: None,
                        orphan: fields.is_empty(),
                    });
                }
            }
        } else {
            fields.extend(current.take());
            current = Some(ReadField {
                range: line.start..line.end,
                content_end: line.content_end,
                colon: content.iter().position(|&b| b == b':').map(|i| line.start + i),
                orphan: false,
            });
        }
        pos = line.end;
    }
    fields.extend(current);
    Block { fields, end: None }
}

/// Where a field starting at `start` ends when CRLF, LF and CR all end a
/// line: its first line and the continuation lines after it. Leading line
/// endings (which a reading that does not end lines there kept in the line)
/// are skipped first.
pub(crate) fn field_end_any(raw: &[u8], start: usize) -> usize {
    let mut pos = start + raw[start..].iter().take_while(|b| matches!(b, b'\r' | b'\n')).count();
    if pos >= raw.len() {
        return raw.len();
    }
    pos = next_line(raw, pos, Lines::Any).end;
    while pos < raw.len() {
        let line = next_line(raw, pos, Lines::Any);
        if line.content_end == line.start || !is_fold(raw[line.start]) {
            break;
        }
        pos = line.end;
    }
    pos
}

/// Where the header block ends under every reading, once all of them have
/// ended within `raw` (what a header-only read must include). `None`: some
/// reading has not ended yet and the scan limit is not reached.
pub(crate) fn extent(raw: &[u8]) -> Option<usize> {
    let mut max = 0;
    for reading in READINGS {
        match walk(raw, reading).end {
            Some(end) => max = max.max(end),
            // A `-skip` reading without a CRLF blank line reads as its
            // fallback; it still needs more input unless the limit is reached.
            None if raw.len() >= MAX_HEADER_SCAN => return Some(MAX_HEADER_SCAN),
            None => return None,
        }
    }
    Some(max)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(raw: &[u8], reading: Reading) -> Vec<String> {
        read(raw, reading)
            .fields
            .iter()
            .map(|f| String::from_utf8(f.bare_name(raw)).unwrap())
            .collect()
    }

    const LF: Reading = READINGS[0];
    const ANY: Reading = READINGS[1];
    const CRLF: Reading = READINGS[2];
    const LF_SKIP: Reading = READINGS[3];

    #[test]
    fn ordinary_crlf_mail_reads_the_same_every_way() {
        let raw = b"From: a@b\r\nSubject: x\r\n y\r\n\r\nX-Not: body\r\n";
        let first = read(raw, LF);
        assert_eq!(first.end, Some(29));
        assert_eq!(first.fields[1].range, 11..27);
        for reading in READINGS {
            assert_eq!(read(raw, reading), first, "{}", reading.name);
        }
        assert_eq!(extent(raw), Some(29));
    }

    #[test]
    fn a_bare_cr_starts_a_field_only_for_any() {
        let raw = b"X-Note: x\rX-CLOUD-SEC-AV-SCL: false\r\nFrom: a\r\n\r\n";
        assert_eq!(names(raw, LF), ["x-note", "from"]);
        assert_eq!(names(raw, ANY), ["x-note", "x-cloud-sec-av-scl", "from"]);
        let f = &read(raw, ANY).fields[1];
        assert_eq!(f.range, 10..37);
        assert_eq!(f.value(raw), "false");
    }

    #[test]
    fn a_bare_lf_blank_line_ends_the_block_only_for_some() {
        let raw = b"From: a\r\n\nX-CLOUD-SEC-AV-SCL: false\r\n\r\nbody\r\n";
        assert_eq!(names(raw, LF), ["from"]);
        assert_eq!(read(raw, LF).end, Some(10));
        assert_eq!(names(raw, CRLF), ["from", "x-cloud-sec-av-scl"]);
        assert_eq!(read(raw, CRLF).fields[1].range, 9..37);
        assert_eq!(names(raw, LF_SKIP), ["from", "x-cloud-sec-av-scl"]);
        assert_eq!(extent(raw), Some(39));
    }

    #[test]
    fn without_crlf_blank_line_the_skip_readings_fall_back() {
        let raw = b"From: a\r\n\nX-CLOUD-SEC-AV-SCL: false\nbody\n";
        assert_eq!(names(raw, LF_SKIP), ["from"]);
    }

    #[test]
    fn names_lose_invisible_octets_and_orphans_are_marked() {
        let raw = b" orphan\r\n\tmore\r\nX-\x00CLOUD-SEC-AV-\xffSCL : f\r\nNo colon\r\n\r\n";
        let block = read(raw, LF);
        assert!(block.fields[0].orphan);
        assert_eq!(block.fields[0].range, 0..16);
        assert_eq!(block.fields[1].bare_name(raw), b"x-cloud-sec-av-scl");
        assert_eq!(block.fields[2].bare_name(raw), b"");
    }

    #[test]
    fn the_scan_is_bounded() {
        let mut raw = b"A: b\r\n\n".to_vec();
        raw.resize(MAX_HEADER_SCAN + 10, b'x');
        assert_eq!(extent(&raw), Some(MAX_HEADER_SCAN));
        assert_eq!(extent(&raw[..1000]), None);
    }
}
