//! RAR (versions 4 and 5) listings by name, and 7-Zip encryption detection.
//!
//! Neither format is ever decompressed here (RAR's compression is
//! proprietary, 7-Zip's headers are usually LZMA-packed). What can be read
//! from plain headers is what a gateway needs: member names, whether members
//! or the whole header set are encrypted, and declared sizes. Header walks
//! advance by at least one byte per block and stop at `max_entries`.

use super::archive::{ArchiveError, le16, le32, le64};

#[derive(Debug, Clone)]
pub(crate) struct RarEntry {
    pub(crate) name: String,
    pub(crate) encrypted: bool,
    pub(crate) is_dir: bool,
    pub(crate) unpacked_size: u64,
}

#[derive(Debug, Default)]
pub(crate) struct RarListing {
    pub(crate) entries: Vec<RarEntry>,
    /// The archive encrypts its headers: names and sizes are hidden.
    pub(crate) headers_encrypted: bool,
    /// The walk stopped at damage; `entries` holds what came before.
    pub(crate) damaged: bool,
}

const RAR4: &[u8] = b"Rar!\x1a\x07\x00";
const RAR5: &[u8] = b"Rar!\x1a\x07\x01\x00";

pub(crate) fn list_rar(data: &[u8], max_entries: usize) -> Result<RarListing, ArchiveError> {
    if data.starts_with(RAR5) {
        Ok(rar5(data, max_entries))
    } else if data.starts_with(RAR4) {
        Ok(rar4(data, max_entries))
    } else {
        Err(ArchiveError::NotThisFormat)
    }
}

fn rar4(data: &[u8], max_entries: usize) -> RarListing {
    let mut out = RarListing::default();
    let mut at = RAR4.len();
    for _ in 0..max_entries.saturating_mul(4).max(16) {
        if at >= data.len() {
            return out;
        }
        let (Some(kind), Some(flags), Some(size)) = (data.get(at + 2), le16(data, at + 3), le16(data, at + 5)) else {
            out.damaged = true;
            return out;
        };
        let size = usize::from(size);
        if size < 7 {
            out.damaged = true;
            return out;
        }
        let mut add = if flags & 0x8000 != 0 {
            u64::from(le32(data, at + 7).unwrap_or(0))
        } else {
            0
        };
        match kind {
            0x73 if flags & 0x0080 != 0 => {
                out.headers_encrypted = true;
                return out;
            }
            0x74 => {
                let high = flags & 0x0100 != 0;
                let unpacked = u64::from(le32(data, at + 11).unwrap_or(0));
                let (packed, unpacked) = if high {
                    let hp = u64::from(le32(data, at + 32).unwrap_or(0));
                    let hu = u64::from(le32(data, at + 36).unwrap_or(0));
                    ((hp << 32) | add, (hu << 32) | unpacked)
                } else {
                    (add, unpacked)
                };
                add = packed;
                let name_len = usize::from(le16(data, at + 26).unwrap_or(0));
                let name_at = at + if high { 40 } else { 32 };
                let Some(raw) = data.get(name_at..name_at + name_len) else {
                    out.damaged = true;
                    return out;
                };
                // Unicode names carry an ASCII form first, then a NUL and an encoded form.
                let raw = raw.split(|&b| b == 0).next().unwrap_or(raw);
                out.entries.push(RarEntry {
                    name: String::from_utf8_lossy(raw).into_owned(),
                    encrypted: flags & 0x0004 != 0,
                    is_dir: flags & 0x00e0 == 0x00e0,
                    unpacked_size: unpacked,
                });
                if out.entries.len() >= max_entries {
                    return out;
                }
            }
            0x7b => return out,
            _ => {}
        }
        match usize::try_from(add)
            .ok()
            .and_then(|a| at.checked_add(size)?.checked_add(a))
        {
            Some(next) => at = next,
            None => return out,
        }
    }
    out
}

/// A RAR5 variable-length integer: 7 bits per byte, low first, at most 10 bytes.
fn vint(data: &[u8], at: &mut usize) -> Option<u64> {
    let mut value = 0u64;
    for shift in 0..10 {
        let b = *data.get(*at)?;
        *at += 1;
        value |= u64::from(b & 0x7f).checked_shl(7 * shift)?;
        if b & 0x80 == 0 {
            return Some(value);
        }
    }
    None
}

fn rar5(data: &[u8], max_entries: usize) -> RarListing {
    let mut out = RarListing::default();
    let mut at = RAR5.len();
    for _ in 0..max_entries.saturating_mul(4).max(16) {
        if at >= data.len() {
            return out;
        }
        match rar5_block(data, at, &mut out) {
            Some(Some(next)) if next > at => at = next,
            Some(_) => return out,
            None => {
                out.damaged = true;
                return out;
            }
        }
        if out.entries.len() >= max_entries {
            return out;
        }
    }
    out
}

/// Reads the block at `at`; `Some(None)` at the end of the archive.
fn rar5_block(data: &[u8], at: usize, out: &mut RarListing) -> Option<Option<usize>> {
    let mut p = at + 4; // CRC32
    let header_size = usize::try_from(vint(data, &mut p)?).ok()?;
    let header_start = p;
    let header_end = header_start.checked_add(header_size)?;
    let header = data.get(..header_end)?;
    let kind = vint(header, &mut p)?;
    let flags = vint(header, &mut p)?;
    let extra_size = if flags & 1 != 0 { vint(header, &mut p)? } else { 0 };
    let data_size = if flags & 2 != 0 { vint(header, &mut p)? } else { 0 };
    match kind {
        4 => {
            out.headers_encrypted = true;
            return Some(None);
        }
        5 => return Some(None),
        2 => {
            let file_flags = vint(header, &mut p)?;
            let unpacked = vint(header, &mut p)?;
            let _attributes = vint(header, &mut p)?;
            if file_flags & 0x02 != 0 {
                p += 4;
            }
            if file_flags & 0x04 != 0 {
                p += 4;
            }
            let _compression = vint(header, &mut p)?;
            let _host = vint(header, &mut p)?;
            let name_len = usize::try_from(vint(header, &mut p)?).ok()?;
            let name = header.get(p..p.checked_add(name_len)?)?;
            let extra_at = header_end.checked_sub(usize::try_from(extra_size).ok()?)?;
            let encrypted = extra_records(header.get(extra_at..)?).any(|t| t == 0x01);
            out.entries.push(RarEntry {
                name: String::from_utf8_lossy(name).into_owned(),
                encrypted,
                is_dir: file_flags & 0x01 != 0,
                unpacked_size: unpacked,
            });
        }
        _ => {}
    }
    Some(header_end.checked_add(usize::try_from(data_size).ok()?))
}

fn extra_records(extra: &[u8]) -> impl Iterator<Item = u64> + '_ {
    let mut at = 0usize;
    std::iter::from_fn(move || {
        let size = usize::try_from(vint(extra, &mut at)?).ok()?;
        let start = at;
        let kind = vint(extra, &mut at)?;
        at = start.checked_add(size)?;
        Some(kind)
    })
    .take(64)
}

/// The 7-Zip AES-256 + SHA-256 coder id.
const SEVENZIP_AES: [u8; 4] = [0x06, 0xf1, 0x07, 0x01];

/// Whether a 7-Zip archive uses its AES coder (for the files or for the
/// header itself). The coder id sits in the end header, which is plain even
/// when it describes a packed header, so a byte search of it is reliable.
pub(crate) fn sevenzip_encrypted(data: &[u8]) -> Result<bool, ArchiveError> {
    if !data.starts_with(b"7z\xbc\xaf\x27\x1c") {
        return Err(ArchiveError::NotThisFormat);
    }
    let short = ArchiveError::Truncated("7-Zip start header");
    let offset = le64(data, 12).ok_or(short.clone())?;
    let size = le64(data, 20).ok_or(short)?;
    let start = usize::try_from(offset).ok().and_then(|o| o.checked_add(32));
    let end = start.and_then(|s| s.checked_add(usize::try_from(size).ok()?));
    let header = match (start, end) {
        (Some(s), Some(e)) => data.get(s..e).ok_or(ArchiveError::Truncated("7-Zip end header"))?,
        _ => return Err(ArchiveError::Malformed("7-Zip header offset")),
    };
    Ok(header.windows(4).any(|w| w == SEVENZIP_AES))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rar4_file(name: &str, encrypted: bool) -> Vec<u8> {
        let mut b = vec![0, 0, 0x74];
        let flags: u16 = 0x8000 | if encrypted { 0x0004 } else { 0 };
        b.extend_from_slice(&flags.to_le_bytes());
        b.extend_from_slice(&((32 + name.len()) as u16).to_le_bytes());
        b.extend_from_slice(&3u32.to_le_bytes()); // packed
        b.extend_from_slice(&3u32.to_le_bytes()); // unpacked
        b.extend_from_slice(&[2, 0, 0, 0, 0, 0, 0, 0, 0, 29, 0x30]);
        b.extend_from_slice(&(name.len() as u16).to_le_bytes());
        b.extend_from_slice(&[0x20, 0, 0, 0]);
        b.extend_from_slice(name.as_bytes());
        b.extend_from_slice(b"abc");
        b
    }

    #[test]
    fn rar4_names_and_encryption() {
        let mut rar = RAR4.to_vec();
        rar.extend_from_slice(&[0, 0, 0x73, 0, 0, 13, 0, 0, 0, 0, 0, 0, 0]);
        rar.extend(rar4_file("docs\\invoice.pdf", false));
        rar.extend(rar4_file("invoice.exe", true));
        let listing = list_rar(&rar, 10).unwrap();
        let names: Vec<_> = listing.entries.iter().map(|e| (e.name.as_str(), e.encrypted)).collect();
        assert_eq!(names, [("docs\\invoice.pdf", false), ("invoice.exe", true)]);
        for n in 0..rar.len() {
            let _ = list_rar(&rar[..n], 10);
        }
    }

    #[test]
    fn rar5_names_and_encryption() {
        let file = |name: &str, encrypted: bool| {
            let mut fields = vec![2u8, if encrypted { 0x03 } else { 0x02 }];
            let extra: Vec<u8> = if encrypted { vec![2, 0x01, 0] } else { vec![] };
            if encrypted {
                fields.push(extra.len() as u8);
            }
            fields.extend_from_slice(&[3, 0, 3, 0x20, 0, 0, name.len() as u8]);
            fields.extend_from_slice(name.as_bytes());
            fields.extend_from_slice(&extra);
            let mut b = vec![0, 0, 0, 0, fields.len() as u8];
            b.extend(fields);
            b.extend_from_slice(b"xyz");
            b
        };
        let mut rar = RAR5.to_vec();
        rar.extend_from_slice(&[0, 0, 0, 0, 3, 1, 0, 0]); // main header
        rar.extend(file("readme.txt", false));
        rar.extend(file("setup.exe", true));
        let listing = list_rar(&rar, 10).unwrap();
        let names: Vec<_> = listing.entries.iter().map(|e| (e.name.as_str(), e.encrypted)).collect();
        assert_eq!(names, [("readme.txt", false), ("setup.exe", true)]);
        let mut locked = RAR5.to_vec();
        locked.extend_from_slice(&[0, 0, 0, 0, 2, 4, 0]);
        assert!(list_rar(&locked, 10).unwrap().headers_encrypted);
        for n in 0..rar.len() {
            let _ = list_rar(&rar[..n], 10);
        }
    }

    #[test]
    fn sevenzip_aes_is_detected_in_the_end_header() {
        let archive = |header: &[u8]| {
            let mut a = b"7z\xbc\xaf\x27\x1c\x00\x04".to_vec();
            a.extend_from_slice(&[0; 4]);
            a.extend_from_slice(&4u64.to_le_bytes());
            a.extend_from_slice(&(header.len() as u64).to_le_bytes());
            a.extend_from_slice(&[0; 4]);
            a.extend_from_slice(b"DATA");
            a.extend_from_slice(header);
            a
        };
        assert!(sevenzip_encrypted(&archive(&[0x17, 0x06, 0x01, 0x24, 0x06, 0xf1, 0x07, 0x01, 0])).unwrap());
        assert!(!sevenzip_encrypted(&archive(&[0x17, 0x06, 0x01, 0x21, 0x03, 0x01, 0x01, 0])).unwrap());
        assert!(sevenzip_encrypted(b"7z\xbc\xaf\x27\x1c\x00").is_err());
    }
}
