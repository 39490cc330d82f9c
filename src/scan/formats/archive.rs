//! Bounded readers for the archive formats mail carries: the zip central
//! directory (with a local-header fallback), raw deflate, in [`stream`]
//! gzip, tar and cabinet listings, and in [`rar`] RAR listings and 7-Zip
//! encryption detection.
//!
//! These readers exist so that the attachment policy can see the *names*
//! inside an archive, whether entries are encrypted, and how large they claim
//! to be, without trusting any of it. Invariants: every offset and length read
//! from the input is checked before use (no indexing that can panic), every
//! loop is bounded by a caller-supplied entry limit or by the input length,
//! and nothing is decompressed unless the caller asks for one entry with an
//! explicit output limit. They never write files, never follow paths and
//! never allocate in proportion to a size the archive *declares*.

pub(crate) mod stream;

use std::borrow::Cow;

use miniz_oxide::inflate::TINFLStatus;
use miniz_oxide::inflate::core::{DecompressorOxide, decompress, inflate_flags};

/// Why an archive could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ArchiveError {
    #[error("not an archive of this format")]
    NotThisFormat,
    #[error("truncated archive ({0})")]
    Truncated(&'static str),
    #[error("malformed archive ({0})")]
    Malformed(&'static str),
    #[error("compression method {0} is not supported")]
    UnsupportedMethod(u16),
    #[error("entry is encrypted")]
    Encrypted,
}

pub(crate) fn le16(d: &[u8], at: usize) -> Option<u16> {
    let b = d.get(at..at.checked_add(2)?)?;
    Some(u16::from_le_bytes([b[0], b[1]]))
}

pub(crate) fn le32(d: &[u8], at: usize) -> Option<u32> {
    let b = d.get(at..at.checked_add(4)?)?;
    Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

pub(crate) fn le64(d: &[u8], at: usize) -> Option<u64> {
    let b = d.get(at..at.checked_add(8)?)?;
    let mut a = [0u8; 8];
    a.copy_from_slice(b);
    Some(u64::from_le_bytes(a))
}

/// What came out of a bounded decompression.
#[derive(Debug)]
pub(crate) struct Inflated<'a> {
    pub(crate) data: Cow<'a, [u8]>,
    /// The whole entry was produced (false: the limit was hit first).
    pub(crate) complete: bool,
}

/// Inflates a raw deflate stream into at most `limit` bytes. Work is
/// proportional to the output produced, so a bomb costs `limit`, not its
/// declared size. Corrupt or truncated input yields what was decoded so far.
pub(crate) fn inflate(input: &[u8], limit: usize) -> Result<Inflated<'static>, ArchiveError> {
    let flags = inflate_flags::TINFL_FLAG_USING_NON_WRAPPING_OUTPUT_BUF;
    let mut out = vec![0u8; input.len().saturating_mul(2).clamp(64, limit.max(64)).min(limit)];
    let mut state = Box::<DecompressorOxide>::default();
    let mut rest = input;
    let mut pos = 0usize;
    // Each round either finishes, fails, or doubles the buffer up to `limit`,
    // so the number of rounds is logarithmic in `limit`.
    for _ in 0..64 {
        let (status, consumed, produced) = decompress(&mut state, rest, &mut out, pos, flags);
        pos = pos.saturating_add(produced).min(out.len());
        rest = rest.get(consumed..).unwrap_or(&[]);
        match status {
            TINFLStatus::Done => {
                out.truncate(pos);
                return Ok(Inflated {
                    data: Cow::Owned(out),
                    complete: true,
                });
            }
            TINFLStatus::HasMoreOutput if out.len() < limit => {
                let grown = out.len().saturating_mul(2).min(limit);
                out.resize(grown, 0);
            }
            TINFLStatus::HasMoreOutput => {
                out.truncate(pos);
                return Ok(Inflated {
                    data: Cow::Owned(out),
                    complete: false,
                });
            }
            _ => {
                out.truncate(pos);
                if pos == 0 {
                    return Err(ArchiveError::Malformed("deflate stream"));
                }
                return Ok(Inflated {
                    data: Cow::Owned(out),
                    complete: false,
                });
            }
        }
    }
    Err(ArchiveError::Malformed("deflate stream does not end"))
}

const CENTRAL_SIG: u32 = 0x0201_4b50;
const LOCAL_SIG: u32 = 0x0403_4b50;
const EOCD_SIG: u32 = 0x0605_4b50;
const ZIP64_LOCATOR_SIG: u32 = 0x0706_4b50;
const ZIP64_EOCD_SIG: u32 = 0x0606_4b50;

/// One member of a zip archive, as its directory describes it.
#[derive(Debug, Clone)]
pub(crate) struct ZipEntry<'a> {
    /// Path inside the archive, decoded (UTF-8 flag, Info-ZIP Unicode path, else CP437).
    pub(crate) name: String,
    pub(crate) encrypted: bool,
    pub(crate) method: u16,
    pub(crate) compressed_size: u64,
    /// As declared; never trusted for allocation.
    pub(crate) uncompressed_size: u64,
    /// The compressed bytes, when the local header could be located.
    pub(crate) raw: Option<&'a [u8]>,
}

impl ZipEntry<'_> {
    pub(crate) fn is_dir(&self) -> bool {
        self.name.ends_with('/') || self.name.ends_with('\\')
    }

    /// Decompresses at most `limit` bytes of this entry.
    pub(crate) fn read(&self, limit: usize) -> Result<Inflated<'_>, ArchiveError> {
        if self.encrypted {
            return Err(ArchiveError::Encrypted);
        }
        let raw = self.raw.ok_or(ArchiveError::Truncated("entry data"))?;
        match self.method {
            0 => {
                let n = raw.len().min(limit);
                Ok(Inflated {
                    data: Cow::Borrowed(raw.get(..n).unwrap_or(&[])),
                    complete: n == raw.len(),
                })
            }
            8 => inflate(raw, limit),
            other => Err(ArchiveError::UnsupportedMethod(other)),
        }
    }
}

/// The members of a zip archive, at most `max_entries` of them.
#[derive(Debug)]
pub(crate) struct ZipListing<'a> {
    pub(crate) entries: Vec<ZipEntry<'a>>,
    /// How many entries the archive declares (may exceed `entries.len()`).
    pub(crate) declared_entries: u64,
    /// The central directory was missing or unreadable and the entries were
    /// found by walking local headers (a damaged or deliberately odd archive).
    pub(crate) from_local_headers: bool,
}

impl ZipListing<'_> {
    /// Sum of the declared uncompressed sizes (saturating).
    pub(crate) fn declared_total(&self) -> u64 {
        self.entries
            .iter()
            .fold(0u64, |sum, e| sum.saturating_add(e.uncompressed_size))
    }

    /// Sum of the declared compressed sizes (saturating).
    pub(crate) fn compressed_total(&self) -> u64 {
        self.entries
            .iter()
            .fold(0u64, |sum, e| sum.saturating_add(e.compressed_size))
    }
}

/// Lists a zip archive. Falls back to walking local headers when the end of
/// central directory record is absent (a truncated download still shows the
/// names it carries).
pub(crate) fn list_zip(data: &[u8], max_entries: usize) -> Result<ZipListing<'_>, ArchiveError> {
    match find_eocd(data) {
        Some(eocd) => match read_central(data, eocd, max_entries) {
            Ok(listing) => Ok(listing),
            Err(e) if le32(data, 0) == Some(LOCAL_SIG) => walk_local(data, max_entries).map_err(|_| e),
            Err(e) => Err(e),
        },
        None if le32(data, 0) == Some(LOCAL_SIG) => walk_local(data, max_entries),
        None if data.starts_with(b"PK") => Err(ArchiveError::Truncated("end of central directory")),
        None => Err(ArchiveError::NotThisFormat),
    }
}

fn find_eocd(data: &[u8]) -> Option<usize> {
    let last = data.len().checked_sub(22)?;
    let first = last.saturating_sub(0xFFFF);
    (first..=last).rev().find(|&at| le32(data, at) == Some(EOCD_SIG))
}

struct Directory {
    entries: u64,
    size: u64,
    offset: u64,
}

fn directory(data: &[u8], eocd: usize) -> Result<Directory, ArchiveError> {
    let short = ArchiveError::Truncated("end of central directory");
    let mut dir = Directory {
        entries: u64::from(le16(data, eocd + 10).ok_or(short.clone())?),
        size: u64::from(le32(data, eocd + 12).ok_or(short.clone())?),
        offset: u64::from(le32(data, eocd + 16).ok_or(short)?),
    };
    let zip64 = dir.entries == 0xFFFF || dir.size == 0xFFFF_FFFF || dir.offset == 0xFFFF_FFFF;
    if zip64
        && let Some(loc) = eocd.checked_sub(20)
        && le32(data, loc) == Some(ZIP64_LOCATOR_SIG)
    {
        let at = le64(data, loc + 8).and_then(|v| usize::try_from(v).ok());
        if let Some(at) = at.filter(|&at| le32(data, at) == Some(ZIP64_EOCD_SIG)) {
            let short = || ArchiveError::Truncated("zip64 directory");
            dir.entries = le64(data, at + 32).ok_or_else(short)?;
            dir.size = le64(data, at + 40).ok_or_else(short)?;
            dir.offset = le64(data, at + 48).ok_or_else(short)?;
        }
    }
    Ok(dir)
}

fn read_central(data: &[u8], eocd: usize, max_entries: usize) -> Result<ZipListing<'_>, ArchiveError> {
    let dir = directory(data, eocd)?;
    // Data prepended to the archive (self-extractors, junk) shifts every
    // offset; the directory ends where the EOCD begins, which locates it.
    let declared = usize::try_from(dir.offset).ok();
    let start = match declared {
        Some(at) if le32(data, at) == Some(CENTRAL_SIG) => at,
        _ => usize::try_from(dir.size)
            .ok()
            .and_then(|size| eocd.checked_sub(size))
            .filter(|&at| le32(data, at) == Some(CENTRAL_SIG) || dir.entries == 0)
            .ok_or(ArchiveError::Malformed("central directory offset"))?,
    };
    let shift = declared.map_or(0, |d| start as i128 - d as i128);
    let mut entries = Vec::new();
    let mut at = start;
    let wanted = usize::try_from(dir.entries).unwrap_or(usize::MAX).min(max_entries);
    while entries.len() < wanted {
        if le32(data, at) != Some(CENTRAL_SIG) {
            if at >= data.len().saturating_sub(4) {
                return Err(ArchiveError::Truncated("central directory"));
            }
            return Err(ArchiveError::Malformed("central directory entry"));
        }
        let short = || ArchiveError::Truncated("central directory entry");
        let flags = le16(data, at + 8).ok_or_else(short)?;
        let method = le16(data, at + 10).ok_or_else(short)?;
        let mut csize = u64::from(le32(data, at + 20).ok_or_else(short)?);
        let mut usize_ = u64::from(le32(data, at + 24).ok_or_else(short)?);
        let nlen = usize::from(le16(data, at + 28).ok_or_else(short)?);
        let xlen = usize::from(le16(data, at + 30).ok_or_else(short)?);
        let clen = usize::from(le16(data, at + 32).ok_or_else(short)?);
        let mut lho = u64::from(le32(data, at + 42).ok_or_else(short)?);
        let name_raw = data.get(at + 46..at + 46 + nlen).ok_or_else(short)?;
        let extra = data.get(at + 46 + nlen..at + 46 + nlen + xlen).ok_or_else(short)?;
        let mut name = decode_name(name_raw, flags & 0x0800 != 0);
        let mut encrypted = flags & 0x0001 != 0 || method == 99;
        for (id, field) in extra_fields(extra) {
            match id {
                0x0001 => {
                    // Zip64: only the fields saturated in the fixed part are present, in this order.
                    let mut off = 0;
                    for value in [&mut usize_, &mut csize, &mut lho] {
                        if *value == 0xFFFF_FFFF
                            && let Some(v) = le64(field, off)
                        {
                            *value = v;
                            off += 8;
                        }
                    }
                }
                0x7075 if field.len() > 5 => {
                    if let Ok(utf8) = std::str::from_utf8(&field[5..]) {
                        name = utf8.to_string();
                    }
                }
                0x9901 => encrypted = true,
                _ => {}
            }
        }
        let local = usize::try_from(i128::from(lho) + shift).ok();
        entries.push(ZipEntry {
            name,
            encrypted,
            method,
            compressed_size: csize,
            uncompressed_size: usize_,
            raw: local.and_then(|l| local_data(data, l, csize)),
        });
        at = at + 46 + nlen + xlen + clen;
    }
    Ok(ZipListing {
        entries,
        declared_entries: dir.entries,
        from_local_headers: false,
    })
}

/// The compressed bytes behind a local header, using the directory's size
/// (local sizes are zero when a data descriptor follows).
fn local_data(data: &[u8], at: usize, csize: u64) -> Option<&[u8]> {
    if le32(data, at)? != LOCAL_SIG {
        return None;
    }
    let nlen = usize::from(le16(data, at + 26)?);
    let xlen = usize::from(le16(data, at + 28)?);
    let start = at.checked_add(30 + nlen + xlen)?;
    let end = start.checked_add(usize::try_from(csize).ok()?)?;
    data.get(start..end.min(data.len()))
}

fn walk_local(data: &[u8], max_entries: usize) -> Result<ZipListing<'_>, ArchiveError> {
    let mut entries = Vec::new();
    let mut at = 0usize;
    while entries.len() < max_entries && le32(data, at) == Some(LOCAL_SIG) {
        let short = || ArchiveError::Truncated("local header");
        let flags = le16(data, at + 6).ok_or_else(short)?;
        let method = le16(data, at + 8).ok_or_else(short)?;
        let csize = u64::from(le32(data, at + 18).ok_or_else(short)?);
        let usize_ = u64::from(le32(data, at + 22).ok_or_else(short)?);
        let nlen = usize::from(le16(data, at + 26).ok_or_else(short)?);
        let xlen = usize::from(le16(data, at + 28).ok_or_else(short)?);
        let name_raw = data.get(at + 30..at + 30 + nlen).ok_or_else(short)?;
        let extra = data.get(at + 30 + nlen..at + 30 + nlen + xlen).unwrap_or(&[]);
        let encrypted = flags & 1 != 0 || method == 99 || extra_fields(extra).any(|(id, _)| id == 0x9901);
        let start = at + 30 + nlen + xlen;
        entries.push(ZipEntry {
            name: decode_name(name_raw, flags & 0x0800 != 0),
            encrypted,
            method,
            compressed_size: csize,
            uncompressed_size: usize_,
            raw: data.get(start..start.saturating_add(csize as usize).min(data.len())),
        });
        // With a trailing data descriptor the size is unknown here: stop
        // rather than guess where the next header is.
        if flags & 0x0008 != 0 && csize == 0 {
            break;
        }
        match usize::try_from(csize).ok().and_then(|c| start.checked_add(c)) {
            Some(next) if next > at => at = next,
            _ => break,
        }
    }
    if entries.is_empty() {
        return Err(ArchiveError::Truncated("local header"));
    }
    Ok(ZipListing {
        declared_entries: entries.len() as u64,
        entries,
        from_local_headers: true,
    })
}

fn extra_fields(mut extra: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    std::iter::from_fn(move || {
        let id = le16(extra, 0)?;
        let len = usize::from(le16(extra, 2)?);
        let field = extra.get(4..4 + len)?;
        extra = extra.get(4 + len..).unwrap_or(&[]);
        Some((id, field))
    })
}

/// Code page 437, the zip default for names without the UTF-8 flag.
const CP437_HIGH: &str = "ÇüéâäàåçêëèïîìÄÅÉæÆôöòûùÿÖÜ¢£¥₧ƒáíóúñÑªº¿⌐¬½¼¡«»░▒▓│┤╡╢╖╕╣║╗╝╜╛┐└┴┬├─┼╞╟╚╔╩╦╠═╬╧╨╤╥╙╘╒╓╫╪┘┌█▄▌▐▀αßΓπΣσµτΦΘΩδ∞φε∩≡±≥≤⌠⌡÷≈°∙·√ⁿ²■\u{a0}";

fn decode_name(raw: &[u8], utf8: bool) -> String {
    if utf8 || raw.is_ascii() {
        return String::from_utf8_lossy(raw).into_owned();
    }
    raw.iter()
        .map(|&b| {
            if b < 0x80 {
                char::from(b)
            } else {
                CP437_HIGH.chars().nth(usize::from(b - 0x80)).unwrap_or('\u{FFFD}')
            }
        })
        .collect()
}

#[cfg(test)]
pub(crate) mod testzip {
    //! A minimal zip writer for tests (stored or deflated entries).

    pub(crate) struct Member<'a> {
        pub(crate) name: &'a str,
        pub(crate) data: &'a [u8],
        pub(crate) deflate: bool,
        pub(crate) encrypted: bool,
    }

    pub(crate) fn stored<'a>(name: &'a str, data: &'a [u8]) -> Member<'a> {
        Member {
            name,
            data,
            deflate: false,
            encrypted: false,
        }
    }

    pub(crate) fn build(members: &[Member]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut central = Vec::new();
        for m in members {
            let body = if m.deflate {
                miniz_oxide::deflate::compress_to_vec(m.data, 6)
            } else {
                m.data.to_vec()
            };
            let flags: u16 = u16::from(m.encrypted) | 0x0800;
            let method: u16 = if m.deflate { 8 } else { 0 };
            let crc = crc32fast::hash(m.data);
            let offset = out.len() as u32;
            let mut local = Vec::new();
            local.extend_from_slice(&super::LOCAL_SIG.to_le_bytes());
            local.extend_from_slice(&20u16.to_le_bytes());
            local.extend_from_slice(&flags.to_le_bytes());
            local.extend_from_slice(&method.to_le_bytes());
            local.extend_from_slice(&[0, 0, 0x21, 0]);
            local.extend_from_slice(&crc.to_le_bytes());
            local.extend_from_slice(&(body.len() as u32).to_le_bytes());
            local.extend_from_slice(&(m.data.len() as u32).to_le_bytes());
            local.extend_from_slice(&(m.name.len() as u16).to_le_bytes());
            local.extend_from_slice(&0u16.to_le_bytes());
            local.extend_from_slice(m.name.as_bytes());
            out.extend_from_slice(&local);
            out.extend_from_slice(&body);
            central.extend_from_slice(&super::CENTRAL_SIG.to_le_bytes());
            central.extend_from_slice(&20u16.to_le_bytes());
            central.extend_from_slice(&local[4..30]);
            central.extend_from_slice(&[0; 10]); // comment length, disk, attributes
            central.extend_from_slice(&offset.to_le_bytes());
            central.extend_from_slice(m.name.as_bytes());
        }
        let cd_offset = out.len() as u32;
        out.extend_from_slice(&central);
        out.extend_from_slice(&super::EOCD_SIG.to_le_bytes());
        out.extend_from_slice(&[0; 4]);
        out.extend_from_slice(&(members.len() as u16).to_le_bytes());
        out.extend_from_slice(&(members.len() as u16).to_le_bytes());
        out.extend_from_slice(&(central.len() as u32).to_le_bytes());
        out.extend_from_slice(&cd_offset.to_le_bytes());
        out.extend_from_slice(&0u16.to_le_bytes());
        out
    }
}

#[cfg(test)]
mod tests {
    use super::testzip::{Member, build, stored};
    use super::*;

    #[test]
    fn lists_names_sizes_and_encryption() {
        let zip = build(&[
            stored("docs/a.pdf", b"%PDF-1.7"),
            Member {
                name: "b.txt",
                data: &[b'x'; 5000],
                deflate: true,
                encrypted: false,
            },
            Member {
                name: "secret.exe",
                data: b"MZ",
                deflate: false,
                encrypted: true,
            },
        ]);
        let listing = list_zip(&zip, 100).unwrap();
        let names: Vec<_> = listing.entries.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, ["docs/a.pdf", "b.txt", "secret.exe"]);
        assert!(!listing.from_local_headers);
        assert_eq!(listing.entries[1].uncompressed_size, 5000);
        assert!(listing.entries[1].compressed_size < 100);
        assert!(listing.entries[2].encrypted);
        assert_eq!(listing.entries[2].read(10).unwrap_err(), ArchiveError::Encrypted);
        assert_eq!(&listing.entries[0].read(100).unwrap().data[..], b"%PDF-1.7");
        let prefix = listing.entries[1].read(64).unwrap();
        assert_eq!((prefix.data.len(), prefix.complete), (64, false));
        let whole = listing.entries[1].read(10_000).unwrap();
        assert_eq!((whole.data.len(), whole.complete), (5000, true));
    }

    #[test]
    fn entry_limit_and_prepended_data() {
        let zip = build(&[stored("1", b"a"), stored("2", b"b"), stored("3", b"c")]);
        let listing = list_zip(&zip, 2).unwrap();
        assert_eq!((listing.entries.len(), listing.declared_entries), (2, 3));
        // A self-extractor stub before the archive shifts every offset.
        let mut sfx = b"MZ stub of a self-extractor".to_vec();
        sfx.extend_from_slice(&zip);
        let listing = list_zip(&sfx, 10).unwrap();
        assert_eq!(&listing.entries[2].read(10).unwrap().data[..], b"c");
    }

    #[test]
    fn a_zip_without_its_directory_is_walked_by_local_headers() {
        let zip = build(&[stored("invoice.pdf", b"%PDF"), stored("run.js", b"x")]);
        let cut = zip.len() - 100;
        let listing = list_zip(&zip[..cut], 10).unwrap();
        assert!(listing.from_local_headers);
        assert_eq!(listing.entries[1].name, "run.js");
    }

    #[test]
    fn cp437_names_are_decoded() {
        assert_eq!(decode_name(b"\x9aBERSICHT.pdf", false), "ÜBERSICHT.pdf");
        assert_eq!(decode_name("Übersicht.pdf".as_bytes(), true), "Übersicht.pdf");
    }

    #[test]
    fn garbage_is_not_a_zip() {
        assert_eq!(list_zip(b"hello", 10).unwrap_err(), ArchiveError::NotThisFormat);
        assert!(inflate(b"\xff\xff\xff", 100).is_err());
    }
}
