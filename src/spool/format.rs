//! The on-disk format of a queue file (after Postfix's typed records with a
//! mandatory end record).
//!
//! ```text
//! magic   8 bytes  "EXOQ1\r\n\0"
//! body    N bytes  the message exactly as received
//! records          repeated: type (1 byte) | length (u32 BE) | payload
//!                  'M' metadata (JSON: envelope, tenant, verdict, stamp skips)
//!                  'H' header fields to prepend (the stamp)
//! footer 32 bytes  "EXOQEND\0" | body length (u64 BE) | records length (u64 BE)
//!                  | reserved (u32, 0) | CRC-32 of every preceding byte (u32 BE)
//! ```
//!
//! The body comes first so a large message can be streamed to disk while it
//! is received and the metadata appended once the verdict is known. A file is
//! valid only if its length matches the footer, the footer's mark is present
//! and the checksum matches: a torn or damaged file can never pass as a message.

use serde::{Deserialize, Serialize};

use crate::message::envelope::{Direction, Envelope, SessionFacts};
use crate::message::trace::MessageIds;
use crate::message::verdict::Verdict;

pub(crate) const MAGIC: &[u8; 8] = b"EXOQ1\r\n\0";
pub(crate) const END_MARK: &[u8; 8] = b"EXOQEND\0";
pub(crate) const FOOTER_LEN: usize = 32;

const REC_META: u8 = b'M';
const REC_HEADERS: u8 = b'H';

/// What kind of message a queue file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// A message accepted from a client.
    #[default]
    Message,
    /// A delivery status notification we generated: never bounced itself.
    Dsn,
}

/// Everything about a queued message except its bytes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Meta {
    pub id: String,
    /// Seconds since the Unix epoch when the message was accepted.
    pub received: i64,
    #[serde(default)]
    pub kind: Kind,
    pub envelope: Envelope,
    pub session: SessionFacts,
    /// Message-ID and EXO's Network Message ID, for the logs.
    #[serde(default)]
    pub ids: MessageIds,
    /// Portal of the tenant the message belongs to.
    pub tenant: String,
    pub direction: Direction,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verdict: Option<Verdict>,
    /// Byte ranges of the body left out when relaying (our forged-header removal).
    #[serde(default)]
    pub skips: Vec<(u64, u64)>,
    /// For DSNs: where to deliver (a tenant portal) or empty for the sender domain's MX.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route: Option<String>,
    /// SPF or DMARC showed the envelope sender to be authentic (decides
    /// whether an inbound message may be bounced: `[tenant.dsn]`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub sender_authenticated: bool,
}

/// Why a queue file was not accepted as valid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormatError {
    #[error("file too short ({0} bytes) to be a queue file")]
    TooShort(u64),
    #[error("bad magic: not a queue file")]
    BadMagic,
    #[error("no end record: the file is incomplete")]
    NoEnd,
    #[error("lengths in the end record ({body} + {records}) do not match the file size {file}")]
    LengthMismatch { body: u64, records: u64, file: u64 },
    #[error("checksum mismatch: the file is damaged")]
    Checksum,
    #[error("bad record: {0}")]
    BadRecord(String),
    #[error("metadata record missing")]
    NoMeta,
}

/// The parsed trailer of a queue file.
#[derive(Debug, Clone, PartialEq)]
pub struct Trailer {
    pub meta: Meta,
    pub prefix: Vec<u8>,
    pub body_len: u64,
}

/// The decoded footer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Footer {
    pub(crate) body_len: u64,
    pub(crate) records_len: u64,
    pub(crate) crc: u32,
}

/// Encodes the records for `meta` and `prefix`.
pub(crate) fn encode_records(meta: &Meta, prefix: &[u8]) -> Vec<u8> {
    let json = serde_json::to_vec(meta).expect("metadata always serialises");
    let mut out = Vec::with_capacity(json.len() + prefix.len() + 10);
    for (ty, payload) in [(REC_META, &json[..]), (REC_HEADERS, prefix)] {
        out.push(ty);
        out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        out.extend_from_slice(payload);
    }
    out
}

/// Encodes the footer; `crc` must already cover magic, body and records.
pub(crate) fn encode_footer(body_len: u64, records_len: u64, mut crc: crc32fast::Hasher) -> [u8; FOOTER_LEN] {
    let mut f = [0u8; FOOTER_LEN];
    f[..8].copy_from_slice(END_MARK);
    f[8..16].copy_from_slice(&body_len.to_be_bytes());
    f[16..24].copy_from_slice(&records_len.to_be_bytes());
    crc.update(&f[..28]);
    f[28..32].copy_from_slice(&crc.finalize().to_be_bytes());
    f
}

pub(crate) fn decode_footer(f: &[u8], file_len: u64) -> Result<Footer, FormatError> {
    if file_len < (MAGIC.len() + FOOTER_LEN) as u64 || f.len() != FOOTER_LEN {
        return Err(FormatError::TooShort(file_len));
    }
    if &f[..8] != END_MARK {
        return Err(FormatError::NoEnd);
    }
    let body_len = u64::from_be_bytes(f[8..16].try_into().expect("8 bytes"));
    let records_len = u64::from_be_bytes(f[16..24].try_into().expect("8 bytes"));
    let crc = u32::from_be_bytes(f[28..32].try_into().expect("4 bytes"));
    let expected = (MAGIC.len() as u64)
        .checked_add(body_len)
        .and_then(|n| n.checked_add(records_len))
        .and_then(|n| n.checked_add(FOOTER_LEN as u64));
    if expected != Some(file_len) {
        return Err(FormatError::LengthMismatch {
            body: body_len,
            records: records_len,
            file: file_len,
        });
    }
    Ok(Footer {
        body_len,
        records_len,
        crc,
    })
}

/// Parses the records region.
pub(crate) fn decode_records(records: &[u8], body_len: u64) -> Result<Trailer, FormatError> {
    let mut meta = None;
    let mut prefix = Vec::new();
    let mut pos = 0usize;
    while pos < records.len() {
        let header = records
            .get(pos..pos + 5)
            .ok_or_else(|| FormatError::BadRecord("truncated record header".into()))?;
        let ty = header[0];
        let len = u32::from_be_bytes(header[1..5].try_into().expect("4 bytes")) as usize;
        let payload = records
            .get(pos + 5..pos + 5 + len)
            .ok_or_else(|| FormatError::BadRecord(format!("record '{}' longer than the file", ty as char)))?;
        match ty {
            REC_META => {
                meta = Some(
                    serde_json::from_slice::<Meta>(payload)
                        .map_err(|e| FormatError::BadRecord(format!("metadata: {e}")))?,
                );
            }
            REC_HEADERS => prefix = payload.to_vec(),
            other => return Err(FormatError::BadRecord(format!("unknown record type 0x{other:02x}"))),
        }
        pos += 5 + len;
    }
    let meta = meta.ok_or(FormatError::NoMeta)?;
    // Sorted, disjoint and inside the body: anything else could repeat or
    // invent bytes when the message is written out.
    let mut end_of_previous = 0;
    for &(s, e) in &meta.skips {
        if s < end_of_previous || s > e || e > body_len {
            return Err(FormatError::BadRecord(
                "skip ranges out of order or outside the body".into(),
            ));
        }
        end_of_previous = e;
    }
    Ok(Trailer { meta, prefix, body_len })
}

/// Validates a whole queue file held in memory.
pub fn decode_all(file: &[u8]) -> Result<(Trailer, std::ops::Range<usize>), FormatError> {
    let len = file.len() as u64;
    if len < (MAGIC.len() + FOOTER_LEN) as u64 {
        return Err(FormatError::TooShort(len));
    }
    if &file[..MAGIC.len()] != MAGIC {
        return Err(FormatError::BadMagic);
    }
    let footer = decode_footer(&file[file.len() - FOOTER_LEN..], len)?;
    if crc32fast::hash(&file[..file.len() - 4]) != footer.crc {
        return Err(FormatError::Checksum);
    }
    let body_end = MAGIC.len() + footer.body_len as usize;
    let trailer = decode_records(&file[body_end..file.len() - FOOTER_LEN], footer.body_len)?;
    Ok((trailer, MAGIC.len()..body_end))
}

/// Encodes a complete queue file in memory.
pub fn encode_all(body: &[u8], meta: &Meta, prefix: &[u8]) -> Vec<u8> {
    let records = encode_records(meta, prefix);
    let mut out = Vec::with_capacity(MAGIC.len() + body.len() + records.len() + FOOTER_LEN);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(body);
    out.extend_from_slice(&records);
    let mut crc = crc32fast::Hasher::new();
    crc.update(&out);
    out.extend_from_slice(&encode_footer(body.len() as u64, records.len() as u64, crc));
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn meta() -> Meta {
        Meta {
            id: "Q1".into(),
            received: 1,
            kind: Kind::Message,
            envelope: Envelope {
                mail_from: "a@b".parse().unwrap(),
                ..Envelope::default()
            },
            session: SessionFacts {
                session_id: String::new(),
                client_ip: "127.0.0.1".parse().unwrap(),
                client_port: 1,
                helo: "h".into(),
                tls: None,
            },
            ids: Default::default(),
            tenant: "contoso".into(),
            direction: Direction::Inbound,
            verdict: None,
            skips: vec![(0, 3)],
            route: None,
            sender_authenticated: false,
        }
    }

    #[test]
    fn round_trip() {
        let file = encode_all(b"abc\r\nbody\r\n", &meta(), b"X: y\r\n");
        let (t, body) = decode_all(&file).unwrap();
        assert_eq!(t.meta, meta());
        assert_eq!(t.prefix, b"X: y\r\n");
        assert_eq!(&file[body], b"abc\r\nbody\r\n");
    }

    #[test]
    fn every_truncation_and_every_flipped_byte_is_detected() {
        let file = encode_all(b"hello\r\n", &meta(), b"X: y\r\n");
        for cut in 0..file.len() {
            assert!(decode_all(&file[..cut]).is_err(), "truncation at {cut} accepted");
        }
        for i in 0..file.len() {
            let mut bad = file.clone();
            bad[i] ^= 0x20;
            assert!(decode_all(&bad).is_err(), "flipped byte {i} accepted");
        }
    }

    #[test]
    fn skip_ranges_must_be_ordered_disjoint_and_inside_the_body() {
        let body = b"abc\r\nbody\r\n";
        let with = |skips: Vec<(u64, u64)>| decode_all(&encode_all(body, &Meta { skips, ..meta() }, b""));
        assert!(with(vec![(0, 3), (5, 9)]).is_ok());
        assert!(with(vec![(5, 9), (0, 3)]).is_err(), "out of order");
        assert!(with(vec![(0, 6), (5, 9)]).is_err(), "overlapping");
        assert!(with(vec![(4, 3)]).is_err(), "reversed");
        assert!(with(vec![(5, 99)]).is_err(), "past the body");
    }
}
