//! A bounded TNEF (`winmail.dat`, `application/ms-tnef`) decoder that finds
//! the attachments Outlook packed inside: their names and their bytes.
//!
//! Stream layout ([MS-OXTNEF] 2.1.3): signature `0x223E9F78` (LE), a 16-bit
//! key, then attributes, each `level:u8 id:u32 length:u32 data[length]
//! checksum:u16`. An attachment starts with `attAttachRendData`; its title is
//! `attAttachTitle`, its bytes `attAttachData`, and `attAttachment` carries its
//! MAPI properties, where `PR_ATTACH_LONG_FILENAME` (0x3707) holds the real
//! name. Embedded messages (`PR_ATTACH_DATA_OBJ` with `IID_IMessage`) carry a
//! nested TNEF stream, returned as member data for the caller to decode.
//!
//! Invariants: member data borrows from the input (no copies); every length
//! is checked against the input before use; the member count and the MAPI
//! property count are capped. Checksums are not enforced (writers get them
//! wrong and a wrong checksum does not make the content harmless). Never
//! panics, whatever the input.

/// The first four bytes of every TNEF stream.
pub(crate) const SIGNATURE: [u8; 4] = [0x78, 0x9f, 0x3e, 0x22];

const LVL_ATTACHMENT: u8 = 0x02;
const ATT_ATTACH_REND_DATA: u32 = 0x0006_9002;
const ATT_ATTACH_TITLE: u32 = 0x0001_8010;
const ATT_ATTACH_DATA: u32 = 0x0006_800f;
const ATT_ATTACHMENT: u32 = 0x0006_9005;

const PR_DISPLAY_NAME: u16 = 0x3001;
const PR_ATTACH_DATA: u16 = 0x3701;
const PR_ATTACH_FILENAME: u16 = 0x3704;
const PR_ATTACH_LONG_FILENAME: u16 = 0x3707;
const PR_ATTACH_MIME_TAG: u16 = 0x370e;

/// Most MAPI properties read from one attribute; real attachments carry a few dozen.
const MAX_PROPERTIES: usize = 4096;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum TnefError {
    #[error("not a TNEF stream")]
    NotTnef,
    #[error("truncated TNEF stream ({0})")]
    Truncated(&'static str),
    #[error("malformed TNEF stream ({0})")]
    Malformed(&'static str),
}

/// One attachment found in a TNEF stream.
#[derive(Debug, Clone, Default)]
pub(crate) struct Member<'a> {
    /// Best name available: long file name, title, short file name, display name.
    pub(crate) name: Option<String>,
    /// `PR_ATTACH_MIME_TAG`, lower case, when present.
    pub(crate) mime_type: Option<String>,
    pub(crate) data: &'a [u8],
    long_name: Option<String>,
    title: Option<String>,
    short_name: Option<String>,
    display_name: Option<String>,
}

impl Member<'_> {
    fn finish(mut self) -> Self {
        self.name = [&self.long_name, &self.title, &self.short_name, &self.display_name]
            .into_iter()
            .flatten()
            .find(|n| !n.trim().is_empty())
            .cloned();
        self
    }
}

/// The attachments of a TNEF stream.
#[derive(Debug, Default)]
pub(crate) struct Tnef<'a> {
    pub(crate) members: Vec<Member<'a>>,
    /// Why decoding stopped early, if it did; `members` holds what was read before.
    pub(crate) problem: Option<TnefError>,
    /// More than `max_members` attachments were present.
    pub(crate) too_many: bool,
}

pub(crate) fn is_tnef(data: &[u8]) -> bool {
    data.starts_with(&SIGNATURE)
}

/// Decodes up to `max_members` attachments. A damaged stream still yields
/// the members read before the damage, with `problem` set.
pub(crate) fn decode(data: &[u8], max_members: usize) -> Result<Tnef<'_>, TnefError> {
    if !is_tnef(data) {
        return Err(TnefError::NotTnef);
    }
    let mut out = Tnef::default();
    let mut current: Option<Member> = None;
    let mut at = 6usize; // signature + legacy key
    // Each attribute consumes at least 11 bytes, so this loop ends with the input.
    while at < data.len() {
        let Some(header) = data.get(at..at + 9) else {
            out.problem = Some(TnefError::Truncated("attribute header"));
            break;
        };
        let level = header[0];
        let id = u32::from_le_bytes([header[1], header[2], header[3], header[4]]);
        let len = u32::from_le_bytes([header[5], header[6], header[7], header[8]]) as usize;
        let start = at + 9;
        let Some(value) = start.checked_add(len).and_then(|end| data.get(start..end)) else {
            out.problem = Some(TnefError::Truncated("attribute data"));
            break;
        };
        at = start + len + 2;
        if level != LVL_ATTACHMENT {
            continue;
        }
        if id == ATT_ATTACH_REND_DATA {
            if let Some(done) = current.take() {
                out.members.push(done.finish());
            }
            if out.members.len() >= max_members {
                out.too_many = true;
                break;
            }
            current = Some(Member::default());
            continue;
        }
        let member = current.get_or_insert_with(Member::default);
        match id {
            ATT_ATTACH_TITLE => member.title = Some(string8(value)),
            ATT_ATTACH_DATA => member.data = value,
            ATT_ATTACHMENT => {
                if let Err(e) = properties(value, member) {
                    out.problem = Some(e);
                }
            }
            _ => {}
        }
    }
    if let Some(done) = current.take() {
        if out.members.len() < max_members {
            out.members.push(done.finish());
        } else {
            out.too_many = true;
        }
    }
    Ok(out)
}

/// Reads an attachment's MAPI property list, keeping the names and the data.
fn properties<'a>(d: &'a [u8], member: &mut Member<'a>) -> Result<(), TnefError> {
    let short = TnefError::Truncated("MAPI properties");
    let count = read_u32(d, 0).ok_or(short.clone())? as usize;
    let mut at = 4usize;
    for _ in 0..count.min(MAX_PROPERTIES) {
        let ptype = read_u16(d, at).ok_or(short.clone())?;
        let id = read_u16(d, at + 2).ok_or(short.clone())?;
        at += 4;
        if id >= 0x8000 {
            // Named property: GUID, kind, then a numeric id or a padded UTF-16 name.
            let kind = read_u32(d, at + 16).ok_or(short.clone())?;
            at += 20;
            if kind == 0 {
                at += 4;
            } else {
                let n = read_u32(d, at).ok_or(short.clone())? as usize;
                at = at.checked_add(4 + pad4(n)).ok_or(short.clone())?;
            }
        }
        let multi = ptype & 0x1000 != 0;
        let base = ptype & 0x0fff;
        match base {
            // PT_STRING8, PT_UNICODE, PT_BINARY, PT_OBJECT: always a count, then length-prefixed values.
            0x001e | 0x001f | 0x0102 | 0x000d => {
                let values = read_u32(d, at).ok_or(short.clone())? as usize;
                at += 4;
                for i in 0..values.min(MAX_PROPERTIES) {
                    let n = read_u32(d, at).ok_or(short.clone())? as usize;
                    let value = at
                        .checked_add(4 + n)
                        .and_then(|end| d.get(at + 4..end))
                        .ok_or(short.clone())?;
                    at = at.checked_add(4 + pad4(n)).ok_or(short.clone())?;
                    if i == 0 && !multi {
                        keep(member, id, base, value);
                    }
                }
            }
            _ => {
                let size = match base {
                    0x0002 | 0x0003 | 0x0004 | 0x000a | 0x000b | 0x0001 | 0x0000 => 4,
                    0x0005 | 0x0006 | 0x0007 | 0x0014 | 0x0040 => 8,
                    0x0048 => 16,
                    _ => return Err(TnefError::Malformed("unknown MAPI property type")),
                };
                let values = if multi {
                    let n = read_u32(d, at).ok_or(short.clone())? as usize;
                    at += 4;
                    n
                } else {
                    1
                };
                at = values
                    .checked_mul(size)
                    .and_then(|n| at.checked_add(n))
                    .ok_or(short.clone())?;
            }
        }
        if at > d.len() {
            return Err(short);
        }
    }
    Ok(())
}

fn keep<'a>(member: &mut Member<'a>, id: u16, base: u16, value: &'a [u8]) {
    let text = || match base {
        0x001f => Some(unicode(value)),
        0x001e => Some(string8(value)),
        _ => None,
    };
    match id {
        PR_ATTACH_LONG_FILENAME => member.long_name = text(),
        PR_ATTACH_FILENAME => member.short_name = text(),
        PR_DISPLAY_NAME => member.display_name = text(),
        PR_ATTACH_MIME_TAG => member.mime_type = text().map(|t| t.to_ascii_lowercase()),
        // attAttachData wins when both are present; an embedded object starts with its 16-byte IID.
        PR_ATTACH_DATA if member.data.is_empty() => {
            member.data = if base == 0x000d {
                value.get(16..).unwrap_or(&[])
            } else {
                value
            };
        }
        _ => {}
    }
}

fn pad4(n: usize) -> usize {
    n.saturating_add(3) & !3
}

fn read_u16(d: &[u8], at: usize) -> Option<u16> {
    crate::scan::formats::archive::le16(d, at)
}

fn read_u32(d: &[u8], at: usize) -> Option<u32> {
    crate::scan::formats::archive::le32(d, at)
}

/// An 8-bit string up to its NUL: UTF-8 when valid, else Windows-1252/Latin-1.
fn string8(b: &[u8]) -> String {
    let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    let b = &b[..end];
    match std::str::from_utf8(b) {
        Ok(s) => s.to_string(),
        Err(_) => b.iter().map(|&c| char::from(c)).collect(),
    }
}

fn unicode(b: &[u8]) -> String {
    let units = b
        .chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .take_while(|&u| u != 0);
    char::decode_utf16(units)
        .map(|r| r.unwrap_or(char::REPLACEMENT_CHARACTER))
        .collect()
}

#[cfg(test)]
pub(crate) mod testtnef {
    //! Builds TNEF streams for tests, attribute by attribute.

    fn attribute(out: &mut Vec<u8>, level: u8, id: u32, data: &[u8]) {
        out.push(level);
        out.extend_from_slice(&id.to_le_bytes());
        out.extend_from_slice(&(data.len() as u32).to_le_bytes());
        out.extend_from_slice(data);
        let sum = data.iter().fold(0u16, |s, &b| s.wrapping_add(u16::from(b)));
        out.extend_from_slice(&sum.to_le_bytes());
    }

    /// A MAPI property list with one PT_UNICODE PR_ATTACH_LONG_FILENAME and one PT_LONG.
    fn long_name_props(name: &str) -> Vec<u8> {
        let mut p = Vec::new();
        p.extend_from_slice(&2u32.to_le_bytes());
        p.extend_from_slice(&0x0003u16.to_le_bytes()); // PT_LONG PR_ATTACH_METHOD = 1
        p.extend_from_slice(&0x3705u16.to_le_bytes());
        p.extend_from_slice(&1u32.to_le_bytes());
        p.extend_from_slice(&0x001fu16.to_le_bytes());
        p.extend_from_slice(&super::PR_ATTACH_LONG_FILENAME.to_le_bytes());
        let utf16: Vec<u8> = name.encode_utf16().chain([0]).flat_map(u16::to_le_bytes).collect();
        p.extend_from_slice(&1u32.to_le_bytes());
        p.extend_from_slice(&(utf16.len() as u32).to_le_bytes());
        p.extend_from_slice(&utf16);
        p.resize(super::pad4(p.len()), 0);
        p
    }

    /// A `winmail.dat` with one message attribute and the given attachments
    /// (title, optional long name, data).
    pub(crate) fn build(members: &[(&str, Option<&str>, &[u8])]) -> Vec<u8> {
        let mut out = super::SIGNATURE.to_vec();
        out.extend_from_slice(&0x1234u16.to_le_bytes());
        attribute(&mut out, 0x01, 0x0008_9006, &[0x00, 0x00, 0x01, 0x00]); // attTnefVersion
        for (title, long, data) in members {
            attribute(
                &mut out,
                0x02,
                super::ATT_ATTACH_REND_DATA,
                &[1, 0, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, 0],
            );
            let mut t = title.as_bytes().to_vec();
            t.push(0);
            attribute(&mut out, 0x02, super::ATT_ATTACH_TITLE, &t);
            attribute(&mut out, 0x02, super::ATT_ATTACH_DATA, data);
            if let Some(long) = long {
                attribute(&mut out, 0x02, super::ATT_ATTACHMENT, &long_name_props(long));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_names_and_data_of_each_attachment() {
        let raw = testtnef::build(&[
            ("INVOIC~1.EXE", Some("Invoice 2024 (final).exe"), b"MZ\x90\0"),
            ("notes.txt", None, b"hello"),
        ]);
        let t = decode(&raw, 10).unwrap();
        assert_eq!(t.problem, None);
        let names: Vec<_> = t.members.iter().map(|m| m.name.clone().unwrap()).collect();
        assert_eq!(names, ["Invoice 2024 (final).exe", "notes.txt"]);
        assert_eq!(t.members[0].data, b"MZ\x90\0");
        assert_eq!(t.members[1].data, b"hello");
    }

    #[test]
    fn a_damaged_stream_keeps_what_was_read_and_says_why() {
        let raw = testtnef::build(&[("a.pdf", None, b"%PDF-1.4"), ("b.exe", None, b"MZ")]);
        let t = decode(&raw[..raw.len() - 3], 10).unwrap();
        assert_eq!(t.members[0].name.as_deref(), Some("a.pdf"));
        assert!(matches!(t.problem, Some(TnefError::Truncated(_))));
        assert_eq!(decode(b"not tnef", 10).unwrap_err(), TnefError::NotTnef);
    }

    #[test]
    fn the_member_count_is_capped() {
        let raw = testtnef::build(&[("1.txt", None, b"1"), ("2.txt", None, b"2"), ("3.txt", None, b"3")]);
        let t = decode(&raw, 2).unwrap();
        assert_eq!(t.members.len(), 2);
        assert!(t.too_many);
    }

    #[test]
    fn every_prefix_and_corruption_is_survived() {
        let raw = testtnef::build(&[("x.doc", Some("long name.docm"), &[7u8; 40])]);
        for n in 0..=raw.len() {
            let _ = decode(&raw[..n], 8);
        }
        let mut seed = 0x2545_f491_u32;
        for _ in 0..2000 {
            let mut bad = raw.clone();
            for _ in 0..4 {
                seed ^= seed << 13;
                seed ^= seed >> 17;
                seed ^= seed << 5;
                let at = seed as usize % bad.len();
                bad[at] = (seed >> 8) as u8;
            }
            let _ = decode(&bad, 8);
        }
    }
}
