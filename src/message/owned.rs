//! Which octets of an arriving message are ours to remove, and the proof that
//! what we relay carries our fields only.
//!
//! Owned are: every `X-CLOUD-SEC-AV-*` field, every `Authentication-Results`
//! that claims our authserv-id, and an orphan continuation at the top of the
//! block (a first line starting with white space belongs to no field, and
//! every reader attaches it to what precedes it, which after stamping is our
//! last field: left in place it would extend our field). Each is removed
//! wherever *any* reading in `message::readings` sees it at the top level,
//! and the removal is repeated on what is left until no reading sees one.
//!
//! A removal takes the field as that reading delimits it, but never more than
//! the field when CR, LF and CRLF all end lines (so a reading that sees one
//! long line does not take the lines after it), and a field that starts after
//! a bare CR takes that CR instead of its own line ending (so the line before
//! it keeps its ending). Ordinary mail reads the same every way: only its
//! forged fields are removed, every other octet stays.
//!
//! [`verify`] then reads the stamped block (our prefix and what is kept) every
//! way and requires exactly our fields, unextended. What still fails is
//! ambiguous and refused (`550 5.6.0`) rather than relayed.
//!
//! Must never: remove anything else, or relay a block that fails [`verify`].

use std::ops::Range;

use crate::message::authres::{self, Authserv};
use crate::message::readings::{self, MAX_HEADER_SCAN, READINGS, ReadField};

/// The lower-case prefix of the header fields exogate owns.
const OWNED: &[u8] = b"x-cloud-sec-av-";
/// Rounds of removal before a block is called ambiguous (ordinary mail
/// needs one, every forged variant we know of two).
const ROUNDS: usize = 8;

/// A block that some reading still reads with a field of ours that is not
/// ours (or ours extended).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("header read as {reading} still has a field we own that we did not write: {field}")]
pub struct Ambiguous {
    pub reading: &'static str,
    pub field: String,
}

/// Is `field` (read from `raw`) one we own?
fn is_ours(raw: &[u8], field: &ReadField, ours: Option<&Authserv>) -> bool {
    if field.orphan {
        return true;
    }
    let name = field.bare_name(raw);
    if name.starts_with(OWNED) {
        return true;
    }
    match ours {
        Some(id) if name == b"authentication-results" => authres::authserv_id(&field.value(raw)) == *id,
        _ => false,
    }
}

fn authserv(authserv_id: Option<&str>) -> Option<Authserv> {
    authserv_id.map(|id| Authserv::Id(id.trim_end_matches('.').to_ascii_lowercase()))
}

/// The octets of `raw` to remove for `field` (see the module header).
fn cut(raw: &[u8], field: &ReadField) -> Range<usize> {
    let start = field.range.start;
    let mut end = field.range.end.min(readings::field_end_any(raw, start));
    if start > 0 && raw[start - 1] == b'\r' && raw.get(start) != Some(&b'\n') {
        // After a bare CR: take the CR, leave the field's own line ending.
        let tail = &raw[start..end];
        end -= if tail.ends_with(b"\r\n") {
            2
        } else if tail.ends_with(b"\n") || tail.ends_with(b"\r") {
            1
        } else {
            0
        };
        return start - 1..end;
    }
    start..end
}

/// What is kept of `raw` (at most [`MAX_HEADER_SCAN`] octets), and where
/// each kept piece came from.
struct View {
    bytes: Vec<u8>,
    /// (offset in `bytes`, offset in `raw`) of each piece.
    pieces: Vec<(usize, usize)>,
}

impl View {
    fn new(raw: &[u8], skips: &[Range<usize>]) -> View {
        let mut bytes = Vec::new();
        let mut pieces = Vec::new();
        let mut pos = 0;
        let mut push = |from: usize, to: usize, bytes: &mut Vec<u8>| {
            let room = MAX_HEADER_SCAN.saturating_sub(bytes.len());
            let to = to.min(from + room);
            if to > from {
                pieces.push((bytes.len(), from));
                bytes.extend_from_slice(&raw[from..to]);
            }
        };
        for skip in skips {
            push(pos, skip.start, &mut bytes);
            pos = skip.end;
        }
        push(pos, raw.len(), &mut bytes);
        View { bytes, pieces }
    }

    fn to_raw(&self, at: usize) -> usize {
        let i = self.pieces.partition_point(|&(v, _)| v <= at) - 1;
        let (v, r) = self.pieces[i];
        r + (at - v)
    }

    /// The octets of `raw` a range of the view stands for (with whatever was
    /// already skipped inside it).
    fn range_to_raw(&self, range: Range<usize>) -> Range<usize> {
        self.to_raw(range.start)..self.to_raw(range.end - 1) + 1
    }
}

/// Sorts and joins overlapping or touching ranges.
fn merge(ranges: &mut Vec<Range<usize>>) {
    ranges.sort_by_key(|r| r.start);
    let mut out: Vec<Range<usize>> = Vec::with_capacity(ranges.len());
    for r in ranges.drain(..) {
        match out.last_mut() {
            Some(last) if r.start <= last.end => last.end = last.end.max(r.end),
            _ => out.push(r),
        }
    }
    *ranges = out;
}

/// Every range of `raw` to leave out: our fields under every reading (and
/// arriving `Authentication-Results` claiming `authserv_id`, when given),
/// sorted and disjoint.
pub fn removals(raw: &[u8], authserv_id: Option<&str>) -> Vec<Range<usize>> {
    let ours = authserv(authserv_id);
    let mut skips: Vec<Range<usize>> = Vec::new();
    for _ in 0..ROUNDS {
        let view = View::new(raw, &skips);
        let mut cuts = Vec::new();
        for reading in READINGS {
            for field in readings::read(&view.bytes, reading).fields {
                if is_ours(&view.bytes, &field, ours.as_ref()) {
                    let c = cut(&view.bytes, &field);
                    if !c.is_empty() {
                        cuts.push(view.range_to_raw(c));
                    }
                }
            }
        }
        if cuts.is_empty() {
            break;
        }
        skips.extend(cuts);
        merge(&mut skips);
    }
    skips
}

/// Reads `prefix` followed by what `skips` keeps of `raw` every way and
/// requires the fields we own to be exactly those of `prefix`, unextended.
pub fn verify(prefix: &[u8], raw: &[u8], skips: &[Range<usize>], authserv_id: Option<&str>) -> Result<(), Ambiguous> {
    let ours = authserv(authserv_id);
    let expected: Vec<Range<usize>> = readings::read(prefix, READINGS[0])
        .fields
        .iter()
        .filter(|f| is_ours(prefix, f, ours.as_ref()))
        .map(|f| f.range.clone())
        .collect();
    let mut bytes = prefix.to_vec();
    bytes.extend_from_slice(&View::new(raw, skips).bytes);
    let skipped: usize = skips.iter().map(|s| s.len()).sum();
    let cut_short = prefix.len() + raw.len().saturating_sub(skipped) > MAX_HEADER_SCAN;
    for reading in READINGS {
        let block = readings::read(&bytes, reading);
        // Only the `lf` reading (LF or CRLF ends a line) is what Postfix and
        // Python's email use; the stricter readings find no end in ordinary
        // mail written with bare LF line ends, and must not refuse it.
        if cut_short && block.end.is_none() && reading == READINGS[0] {
            // Postfix (and Python's email) read a header block of any length:
            // a field of ours past what we read would reach them unremoved.
            return Err(Ambiguous {
                reading: reading.name,
                field: format!("none seen, but the header block runs past the {MAX_HEADER_SCAN} octets read"),
            });
        }
        let fields = block.fields;
        let got = fields.iter().filter(|f| is_ours(&bytes, f, ours.as_ref()));
        let mut wanted = expected.iter();
        for field in got {
            if wanted.next() != Some(&field.range) {
                let shown = &bytes[field.range.start..field.content_end.min(field.range.start + 80)];
                return Err(Ambiguous {
                    reading: reading.name,
                    field: String::from_utf8_lossy(shown).escape_debug().to_string(),
                });
            }
        }
        if let Some(missing) = wanted.next() {
            return Err(Ambiguous {
                reading: reading.name,
                field: format!("our field at {missing:?} is not read"),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const PREFIX: &[u8] = b"X-CLOUD-SEC-AV-SCL: false\r\nX-CLOUD-SEC-AV-Verdict: action=junk; score=9.0\r\n";

    /// What is relayed of `raw` after our prefix, or the refusal.
    fn kept(raw: &[u8]) -> Result<Vec<u8>, Ambiguous> {
        let skips = removals(raw, Some("gw.example.net"));
        verify(PREFIX, raw, &skips, Some("gw.example.net"))?;
        let mut out = Vec::new();
        let mut pos = 0;
        for s in &skips {
            out.extend_from_slice(&raw[pos..s.start]);
            pos = s.end;
        }
        out.extend_from_slice(&raw[pos..]);
        Ok(out)
    }

    #[test]
    fn forged_variants_lose_exactly_the_forged_octets() {
        let cases: &[(&str, &[u8], &[u8])] = &[
            (
                "continuation at the top extends our last field",
                b" ; action=deliver; score=-100; enforced=no\r\nFrom: a\r\n\r\nbody\r\n",
                b"From: a\r\n\r\nbody\r\n",
            ),
            ("folded orphan", b"\tx\r\n y\r\nFrom: a\r\n\r\n", b"From: a\r\n\r\n"),
            (
                "bare CR inside a line",
                b"X-Note: x\rX-CLOUD-SEC-AV-SCL: false\r\nFrom: a\r\n\r\nb",
                b"X-Note: x\r\nFrom: a\r\n\r\nb",
            ),
            (
                "bare CR, field continues after another bare CR",
                b"X-Note: x\rX-CLOUD-SEC-AV-SCL: false\r more\rSubject: s\r\n\r\n",
                b"X-Note: x\rSubject: s\r\n\r\n",
            ),
            (
                "bare-LF blank line after CRLF lines",
                b"From: a\r\nSubject: s\r\n\nX-CLOUD-SEC-AV-SCL: false\r\n\r\nbody\r\n",
                b"From: a\r\nSubject: s\r\n\r\nbody\r\n",
            ),
            (
                "bare-CR blank line",
                b"From: a\r\rX-CLOUD-SEC-AV-SCL: f\r\n\r\n",
                b"From: a\r\r\n\r\n",
            ),
            (
                "NUL in the name",
                b"X-\x00CLOUD-SEC-AV-SCL: false\r\nFrom: a\r\n\r\n",
                b"From: a\r\n\r\n",
            ),
            (
                "8-bit octets in the name",
                b"From: a\r\nX-CLOUD\xc2\xad-SEC-AV-SCL: false\r\n\r\n",
                b"From: a\r\n\r\n",
            ),
            (
                "byte order mark first",
                b"\xef\xbb\xbfX-CLOUD-SEC-AV-SCL: false\r\nFrom: a\r\n\r\n",
                b"From: a\r\n\r\n",
            ),
            (
                "our authserv-id after a bare CR",
                b"From: a\rAuthentication-Results: gw.example.net; dmarc=pass\r\n\r\n",
                b"From: a\r\n\r\n",
            ),
            (
                "a bare-LF message starting with a forged field",
                b"X-CLOUD-SEC-AV-SCL: false\nFrom: a\n\nX-CLOUD-SEC-AV-SCL: body\n",
                b"From: a\n\nX-CLOUD-SEC-AV-SCL: body\n",
            ),
            (
                "space before the colon, folded",
                b"From: a\r\nX-Cloud-Sec-Av-Verdict : x\r\n\ty\r\nTo: b\r\n\r\n",
                b"From: a\r\nTo: b\r\n\r\n",
            ),
        ];
        for (name, raw, want) in cases {
            let got = kept(raw).unwrap_or_else(|e| panic!("{name}: refused: {e}"));
            assert_eq!(String::from_utf8_lossy(&got), String::from_utf8_lossy(want), "{name}");
        }
    }

    #[test]
    fn ordinary_mail_keeps_every_octet() {
        let cases: &[&[u8]] = &[
            b"From: a\r\nSubject: s\r\n folded\r\n\r\nX-CLOUD-SEC-AV-SCL: quoted in the body\r\n",
            b"From: a\nSubject: s\n\nbare LF\nX-CLOUD-SEC-AV-SCL: body\n\nX-CLOUD-SEC-AV-SCL: body\r\n",
            b"Received: x\r\nFrom: a\nTo: b\n\nbody\n",
            b"From: a\r\nContent-Type: message/rfc822\r\n\r\nX-CLOUD-SEC-AV-SCL: true\r\nAuthentication-Results: gw.example.net; spf=pass\r\n\r\nforwarded\r\n",
            b"From: a\r\nAuthentication-Results: other.example; spf=pass\r\n\r\n\xff\x00\r",
            b"",
            b"\r\nno header\r\n",
        ];
        for raw in cases {
            assert_eq!(kept(raw).as_deref(), Ok(*raw), "{}", String::from_utf8_lossy(raw));
        }
    }

    #[test]
    fn a_header_block_longer_than_the_scan_is_refused() {
        // Found by the attack run (docs/attack-run.md): 1.1 MiB of header
        // fields, then a forged field of ours. Postfix and Python's email
        // read it as a header field; we stopped reading at 1 MiB.
        let mut raw = b"From: a\r\n".to_vec();
        for i in 0..1100 {
            raw.extend_from_slice(format!("X-Pad-{i:05}: {}\r\n", "a".repeat(1000)).as_bytes());
        }
        let forged = b"X-CLOUD-SEC-AV-SCL: false\r\nAuthentication-Results: gw.example.net; dmarc=pass\r\n\r\nbody\r\n";
        raw.extend_from_slice(forged);
        assert!(raw.len() > MAX_HEADER_SCAN);
        let err = kept(&raw).unwrap_err();
        assert!(err.field.contains("runs past"), "{err}");

        // A long message whose header ends early is ordinary mail.
        let mut big = b"From: a\r\nSubject: s\r\n\r\n".to_vec();
        big.resize(3 * MAX_HEADER_SCAN, b'x');
        big.extend_from_slice(forged);
        assert_eq!(kept(&big).as_deref(), Ok(&big[..]));

        // So is one written with bare LF line ends (Python's email writes
        // them): only the strict CRLF reading sees no end in it.
        let mut lf = b"From: a\nSubject: s\n\n".to_vec();
        lf.resize(3 * MAX_HEADER_SCAN, b'x');
        assert_eq!(kept(&lf).as_deref(), Ok(&lf[..]));
    }

    #[test]
    fn what_stays_ambiguous_is_refused_and_nothing_panics() {
        // Every combination of a few hostile pieces: either refused, or
        // verified (no reading sees a field of ours but our own).
        let pieces: &[&[u8]] = &[
            b"X-CLOUD-SEC-AV-SCL: f",
            b"From: a",
            b" c",
            b"\r\n",
            b"\n",
            b"\r",
            b"\x00",
            b"Authentication-Results: gw.example.net; x=y",
            b":",
        ];
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut refused = 0;
        for _ in 0..3000 {
            let mut raw = Vec::new();
            for _ in 0..8 {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                raw.extend_from_slice(pieces[(state % pieces.len() as u64) as usize]);
            }
            if kept(&raw).is_err() {
                refused += 1;
            }
        }
        assert!(refused < 300, "refused {refused} of 3000");
    }

    #[test]
    fn junk_lines_that_join_into_a_field_of_ours_are_refused_past_the_rounds() {
        // Found by the `message` fuzz target: lines of NUL, bare CR and 8-bit
        // octets, separated by bare LF, that the `crlf` reading joins into
        // one line whose visible name is `x-cloud-sec-av-cl…`. Each round of
        // removal takes one line (never more than CR/LF/CRLF all delimit,
        // so a real field after it is not taken), and the junk outlasts
        // [`ROUNDS`]: what stays ambiguous is refused, never relayed.
        let lines: &[&[u8]] = &[
            b"X-CpO\x00-```i\xa0\n",
            b"\x00\rTT\n",
            b"\x00\r\xf1\x00\xa0\xf1\r\n",
            b"\x90\x9d\x9d\x90\xa0\n",
            b"\x00\r\xf1\x9d\x90\r\x0e\x00\r\xf1\x9d\x90\xa0\n",
            b"\x00\r\xf1\x9d\x90\xa0\n",
            b"\x00\xf1\x9d\x00\n",
            b"x-cloud-sec-av-cl\x00\x00\n",
            b"L\n",
            b" x-c: a\r\n",
            b"\n",
            b"\x00\r\xf1\x9d\x90\xa0\n",
            b"\x00\r\xf1\x9dx_\xf5\xff\xf2\x0e\x01o\r\n",
            b"FroU \xb6\xb6\xb6\xb6\xb6\xb6\xb6\xb6\xb6\xb6\xb6   ",
        ];
        let raw = lines.concat();
        let err = kept(&raw).expect_err("relayed with a field of ours under the crlf reading");
        assert_eq!(err.reading, "crlf");
        assert!(err.field.starts_with("x-cloud-sec-av-cl"), "{}", err.field);

        // The same field behind fewer junk lines than the rounds is removed,
        // and the real field after it is kept.
        let raw = b"X-A: a\r\n\x90\n\x00\r\xf1\n\x00\nx-cloud-sec-av-cl\x00\nL\n x-c: a\r\nFrom: b\r\n\r\nbody";
        let kept = kept(raw).expect("removed within the rounds");
        assert!(kept.starts_with(b"X-A: a\r\n"), "{}", String::from_utf8_lossy(&kept));
        assert!(
            kept.ends_with(b"From: b\r\n\r\nbody"),
            "{}",
            String::from_utf8_lossy(&kept)
        );
        assert!(
            !kept.windows(8).any(|w| w == b"x-cloud-"),
            "{}",
            String::from_utf8_lossy(&kept)
        );
    }

    #[test]
    fn a_removal_that_takes_the_blank_line_before_a_forged_body_field_is_refused() {
        // Found by the `message` fuzz target: under the `crlf` reading (no
        // CRLF blank line) the junk lines and the forged field are one
        // header field of ours; removing it line by line also removes the
        // bare-LF blank line that ended the block for `lf`, which would lift
        // the body's forged field into the header. `verify` sees that.
        let raw = b"\t\x01\0\0\0\0\0\0\r\0\xf0\x06\0\0\xf6\n\xf0\0\xf6\n\xf0\n\xbc\n\x06\0\t\0\0\xf6\n\0\n\t\xf0\xf6\n\n\t\x06\0\nX-CLOUD-SEc-AV-SCL: fa\xf0\xd3CL\r\xfd\ns";
        let err = kept(raw).expect_err("relayed with the body's forged field in the header");
        assert_eq!(err.reading, "lf");
        assert!(err.field.starts_with("X-CLOUD-SEc-AV-SCL"), "{}", err.field);
    }
}
