//! gzip members, tar listings and cabinet (CAB) listings.
//!
//! gzip carries one compressed file and, often, its original name (FNAME), so
//! `invoice.pdf.gz` can reveal `invoice.exe`. tar is read only when it is
//! already uncompressed in memory (a `.tar` attachment or a bounded inflate of
//! a `.tgz`). CAB is listed by name only: its folders use MSZIP/LZX and are
//! never decompressed here. Same invariants as the parent module: checked
//! reads, bounded loops, no allocation sized by a declared length.

use super::{ArchiveError, Inflated, inflate, le16, le32};

/// A gzip member: its stored name and its deflate payload.
#[derive(Debug)]
pub(crate) struct Gzip<'a> {
    pub(crate) name: Option<String>,
    deflated: &'a [u8],
    /// ISIZE from the trailer: the uncompressed size modulo 2^32.
    pub(crate) declared_size: u32,
}

impl Gzip<'_> {
    pub(crate) fn compressed_len(&self) -> usize {
        self.deflated.len()
    }

    pub(crate) fn read(&self, limit: usize) -> Result<Inflated<'static>, ArchiveError> {
        inflate(self.deflated, limit)
    }
}

pub(crate) fn gzip(data: &[u8]) -> Result<Gzip<'_>, ArchiveError> {
    if !data.starts_with(&[0x1f, 0x8b]) {
        return Err(ArchiveError::NotThisFormat);
    }
    let short = ArchiveError::Truncated("gzip header");
    let method = *data.get(2).ok_or(short.clone())?;
    if method != 8 {
        return Err(ArchiveError::UnsupportedMethod(u16::from(method)));
    }
    let flags = *data.get(3).ok_or(short.clone())?;
    let mut at = 10usize;
    if data.len() < at {
        return Err(short);
    }
    if flags & 0x04 != 0 {
        let xlen = usize::from(le16(data, at).ok_or(short.clone())?);
        at = at + 2 + xlen;
    }
    let mut name = None;
    if flags & 0x08 != 0 {
        let field = data.get(at..).ok_or(short.clone())?;
        let end = field.iter().position(|&b| b == 0).ok_or(short.clone())?;
        // RFC 1952: the name is ISO 8859-1.
        name = Some(field[..end].iter().map(|&b| char::from(b)).collect());
        at += end + 1;
    }
    if flags & 0x10 != 0 {
        let field = data.get(at..).ok_or(short.clone())?;
        at += field.iter().position(|&b| b == 0).ok_or(short.clone())? + 1;
    }
    if flags & 0x02 != 0 {
        at += 2;
    }
    let body = data.get(at..).ok_or(short)?;
    let (deflated, declared_size) = match body.len().checked_sub(8) {
        Some(end) => (&body[..end], le32(body, end + 4).unwrap_or(0)),
        None => (body, 0),
    };
    Ok(Gzip {
        name,
        deflated,
        declared_size,
    })
}

/// A member of a tar archive.
#[derive(Debug)]
pub(crate) struct TarEntry<'a> {
    pub(crate) name: String,
    pub(crate) data: &'a [u8],
    pub(crate) is_dir: bool,
}

/// True when `data` carries a ustar/GNU tar header.
pub(crate) fn is_tar(data: &[u8]) -> bool {
    data.get(257..262) == Some(b"ustar")
}

/// Lists up to `max_entries` members; a truncated archive yields what was read.
pub(crate) fn list_tar(data: &[u8], max_entries: usize) -> Result<Vec<TarEntry<'_>>, ArchiveError> {
    if !is_tar(data) {
        return Err(ArchiveError::NotThisFormat);
    }
    let mut out = Vec::new();
    let mut at = 0usize;
    let mut long_name: Option<String> = None;
    // GNU long-name records count as entries so that a stream of them is bounded too.
    let mut records = 0usize;
    while records < max_entries.saturating_mul(2) && out.len() < max_entries {
        records += 1;
        let Some(header) = at.checked_add(512).and_then(|end| data.get(at..end)) else {
            break;
        };
        if header.iter().all(|&b| b == 0) {
            break;
        }
        let size = octal(header.get(124..136).unwrap_or(&[])).ok_or(ArchiveError::Malformed("tar size"))?;
        let kind = header.get(156).copied().unwrap_or(b'0');
        let start = at + 512;
        let len = usize::try_from(size).unwrap_or(usize::MAX);
        let body = data
            .get(start..start.saturating_add(len).min(data.len()))
            .unwrap_or(&[]);
        let padded = len.div_ceil(512).saturating_mul(512);
        at = start.saturating_add(padded);
        match kind {
            b'L' => {
                long_name = Some(cstr(body));
                continue;
            }
            // pax headers and GNU volume/sparse metadata are not members.
            b'x' | b'g' | b'V' | b'M' => continue,
            _ => {}
        }
        let name = long_name.take().unwrap_or_else(|| {
            let base = cstr(header.get(..100).unwrap_or(&[]));
            let prefix = cstr(header.get(345..500).unwrap_or(&[]));
            if prefix.is_empty() {
                base
            } else {
                format!("{prefix}/{base}")
            }
        });
        out.push(TarEntry {
            is_dir: kind == b'5' || name.ends_with('/'),
            name,
            data: body,
        });
        if at >= data.len() {
            break;
        }
    }
    Ok(out)
}

fn cstr(b: &[u8]) -> String {
    let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    String::from_utf8_lossy(&b[..end]).into_owned()
}

fn octal(field: &[u8]) -> Option<u64> {
    let text = std::str::from_utf8(field).ok()?;
    let digits = text.trim_matches(|c: char| c == '\0' || c == ' ');
    if digits.is_empty() {
        return Some(0);
    }
    u64::from_str_radix(digits, 8).ok()
}

/// Names of the files a cabinet holds (at most `max_entries`), and how many it declares.
pub(crate) fn list_cab(data: &[u8], max_entries: usize) -> Result<(Vec<String>, u16), ArchiveError> {
    if !data.starts_with(b"MSCF\0\0\0\0") {
        return Err(ArchiveError::NotThisFormat);
    }
    let short = || ArchiveError::Truncated("cabinet header");
    let first = le32(data, 16).ok_or_else(short)? as usize;
    let files = le16(data, 28).ok_or_else(short)?;
    let mut names = Vec::new();
    let mut at = first;
    for _ in 0..usize::from(files).min(max_entries) {
        // CFFILE: cbFile u32, uoffFolderStart u32, iFolder u16, date u16, time u16, attribs u16, szName.
        let attribs = le16(data, at + 14).ok_or(ArchiveError::Truncated("cabinet file list"))?;
        let rest = data
            .get(at + 16..)
            .ok_or(ArchiveError::Truncated("cabinet file list"))?;
        let end = rest
            .iter()
            .take(1024)
            .position(|&b| b == 0)
            .ok_or(ArchiveError::Truncated("cabinet file name"))?;
        let raw = &rest[..end];
        // _A_NAME_IS_UTF: otherwise the name is in the sender's code page.
        let name = if attribs & 0x80 != 0 {
            String::from_utf8_lossy(raw).into_owned()
        } else {
            raw.iter().map(|&b| char::from(b)).collect()
        };
        names.push(name);
        at += 16 + end + 1;
    }
    Ok((names, files))
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn gzip_with_name(name: &str, data: &[u8]) -> Vec<u8> {
        let mut out = vec![0x1f, 0x8b, 8, 0x08, 0, 0, 0, 0, 0, 3];
        out.extend_from_slice(name.as_bytes());
        out.push(0);
        out.extend_from_slice(&miniz_oxide::deflate::compress_to_vec(data, 6));
        out.extend_from_slice(&crc32fast::hash(data).to_le_bytes());
        out.extend_from_slice(&(data.len() as u32).to_le_bytes());
        out
    }

    pub(crate) fn tar_of(members: &[(&str, &[u8])]) -> Vec<u8> {
        let mut out = Vec::new();
        for (name, data) in members {
            let mut h = [0u8; 512];
            h[..name.len()].copy_from_slice(name.as_bytes());
            h[124..135].copy_from_slice(format!("{:011o}", data.len()).as_bytes());
            h[156] = b'0';
            h[257..263].copy_from_slice(b"ustar\0");
            out.extend_from_slice(&h);
            out.extend_from_slice(data);
            out.resize(out.len().div_ceil(512) * 512, 0);
        }
        out.extend_from_slice(&[0u8; 1024]);
        out
    }

    #[test]
    fn gzip_reveals_the_original_name_and_content() {
        let gz = gzip_with_name("invoice.exe", b"MZ\x90\0");
        let member = gzip(&gz).unwrap();
        assert_eq!(member.name.as_deref(), Some("invoice.exe"));
        assert_eq!(member.declared_size, 4);
        assert_eq!(&member.read(100).unwrap().data[..], b"MZ\x90\0");
        assert!(gzip(&gz[..5]).is_err());
    }

    #[test]
    fn tar_lists_members_with_their_data() {
        let tar = tar_of(&[("a/report.pdf", b"%PDF-1.4"), ("run.sh", b"#!/bin/sh\n")]);
        let list = list_tar(&tar, 10).unwrap();
        assert_eq!(list.len(), 2);
        assert_eq!(list[0].name, "a/report.pdf");
        assert_eq!(list[1].data, b"#!/bin/sh\n");
        assert_eq!(list_tar(&tar, 1).unwrap().len(), 1);
    }

    #[test]
    fn cabinet_names_are_listed() {
        let mut cab = b"MSCF\0\0\0\0".to_vec();
        cab.extend_from_slice(&[0; 8]);
        cab.extend_from_slice(&36u32.to_le_bytes()); // coffFiles
        cab.extend_from_slice(&[0; 4]);
        cab.extend_from_slice(&[3, 1, 1, 0, 1, 0, 0, 0]); // version, cFolders, cFiles, flags
        cab.extend_from_slice(&[0; 4]);
        assert_eq!(cab.len(), 36);
        cab.extend_from_slice(&[0; 14]);
        cab.extend_from_slice(&0u16.to_le_bytes());
        cab.extend_from_slice(b"setup.exe\0");
        let (names, declared) = list_cab(&cab, 10).unwrap();
        assert_eq!((names, declared), (vec!["setup.exe".to_string()], 1));
    }
}
