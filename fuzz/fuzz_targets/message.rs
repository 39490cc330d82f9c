//! Arbitrary message bytes through what reads them before any check runs:
//! the raw header walker, stamping, the tenant header parser, and the queue
//! file decoder.
//!
//! Checks: no panic; the stamped message is exactly our prefix followed by
//! the input with only the removed ranges left out; every owned field is
//! gone from the header; the stamped block verifies under every reading
//! (`message::owned`) unless the header block is one parsers can read more
//! than one way (then the gateway refuses it, and only then); a queue file
//! decoder never accepts garbage that does not round-trip.

#![no_main]

use exogate::message::headers;
use exogate::message::stamp::{OWNED_PREFIX, Stamp, owned_fields};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // Header walking: ranges are in bounds, ordered and cover whole fields.
    let mut last_end = 0;
    for f in headers::fields(data) {
        assert!(f.range.start >= last_end && f.range.end <= data.len() && f.range.start < f.range.end);
        last_end = f.range.end;
        let _ = f.unfolded();
        if let Ok(v) = std::str::from_utf8(f.value) {
            let _ = exogate::inbound::admission::parse_info(v);
        }
    }

    // Stamping: prefix + input minus owned fields, nothing else.
    let skips = owned_fields(data);
    let stamp = Stamp {
        prefix: b"X-CLOUD-SEC-AV-SCL: false\r\n".to_vec(),
        skips: skips.clone(),
    };
    let out = stamp.apply(data);
    assert_eq!(out.len(), stamp.stamped_len(data.len()));
    assert!(out.starts_with(&stamp.prefix));
    let mut rebuilt = Vec::new();
    let mut pos = 0;
    for s in &skips {
        rebuilt.extend_from_slice(&data[pos..s.start]);
        pos = s.end;
    }
    rebuilt.extend_from_slice(&data[pos..]);
    assert_eq!(&out[stamp.prefix.len()..], &rebuilt[..]);
    // What `verify` refuses is refused with 550 5.6.0, never relayed; it may
    // refuse only a header block that parsers can read more than one way.
    // What it accepts carries no field of ours after our prefix.
    if exogate::message::owned::verify(&stamp.prefix, data, &skips, None).is_ok() {
        for f in headers::fields(&out[stamp.prefix.len()..]) {
            let owned = f.name.len() >= OWNED_PREFIX.len()
                && f.name[..OWNED_PREFIX.len()].eq_ignore_ascii_case(OWNED_PREFIX.as_bytes());
            assert!(!owned, "an owned field survived stamping");
        }
    } else {
        assert!(!plain_header(data), "a plain CRLF header block was refused");
    }

    // Queue files: garbage is refused, never half-accepted.
    if let Ok((trailer, body)) = exogate::spool::format::decode_all(data) {
        let again = exogate::spool::format::encode_all(&data[body], &trailer.meta, &trailer.prefix);
        assert_eq!(again.len(), data.len());
    }
});

/// A header block every reading reads the same way: it ends with a CRLF
/// blank line within what is scanned, CRLF ends every line, the first line
/// does not start with white space, and no octet is a control other than tab.
fn plain_header(data: &[u8]) -> bool {
    let Some(end) = data.windows(4).position(|w| w == b"\r\n\r\n") else {
        return false;
    };
    let block = &data[..end + 2];
    // Room for our prefix within what is scanned.
    end + 4 + 1024 <= exogate::message::readings::MAX_HEADER_SCAN
        && !matches!(block.first(), Some(b' ' | b'\t'))
        && block.iter().enumerate().all(|(i, &b)| match b {
            b'\r' => block.get(i + 1) == Some(&b'\n'),
            b'\n' => i > 0 && block[i - 1] == b'\r',
            b'\t' => true,
            _ => b >= 0x20 && b != 0x7f,
        })
}
