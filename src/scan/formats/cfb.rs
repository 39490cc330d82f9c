//! A minimal, bounded walk of an OLE2 compound file (CFB, [MS-CFB]) directory:
//! enough to see whether a legacy Office document carries a VBA project,
//! whether it is an encrypted OOXML package, and whether it is really an MSI.
//!
//! Only the directory stream is read (by following its FAT chain); no stream
//! content is ever decoded. Every sector number is checked against the input,
//! and the chain walk is capped, so loops in a hostile FAT end.

use crate::scan::formats::archive::{le16, le32};

/// What the directory of a compound file reveals.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Facts {
    /// A `Macros`, `_VBA_PROJECT_CUR` or `VBA` storage, or a `_VBA_PROJECT` stream.
    pub(crate) macros: bool,
    /// An `EncryptedPackage` stream: a password-protected OOXML document.
    pub(crate) encrypted: bool,
    /// The root entry has the Windows Installer class id.
    pub(crate) installer: bool,
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("unreadable compound file ({0})")]
pub(crate) struct CfbError(&'static str);

const MAX_DIRECTORY_SECTORS: usize = 4096;
const FREE: u32 = 0xffff_fffe; // ENDOFCHAIN
const MSI_CLSID: [u8; 16] = [
    0x84, 0x10, 0x0c, 0x00, 0x00, 0x00, 0x00, 0x00, 0xc0, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x46,
];

pub(crate) fn inspect(d: &[u8]) -> Result<Facts, CfbError> {
    if !d.starts_with(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1") {
        return Err(CfbError("signature"));
    }
    let shift = le16(d, 0x1e).ok_or(CfbError("header"))?;
    if shift != 9 && shift != 12 {
        return Err(CfbError("sector size"));
    }
    let size = 1usize << shift;
    let sector = |n: u32| -> Option<&[u8]> {
        let start = (n as usize).checked_add(1)?.checked_mul(size)?;
        d.get(start..start.checked_add(size)?)
    };
    // FAT sector numbers: the 109 in the header, then the DIFAT chain.
    let mut fat_sectors: Vec<u32> = (0..109).filter_map(|i| le32(d, 0x4c + 4 * i)).collect();
    let mut difat = le32(d, 0x44).ok_or(CfbError("header"))?;
    let per_sector = size / 4;
    for _ in 0..le32(d, 0x48).unwrap_or(0).min(1024) {
        let Some(s) = sector(difat) else { break };
        fat_sectors.extend((0..per_sector - 1).filter_map(|i| le32(s, 4 * i)));
        difat = le32(s, size - 4).unwrap_or(FREE);
    }
    let next = |n: u32| -> Option<u32> {
        let fat = *fat_sectors.get(n as usize / per_sector)?;
        le32(sector(fat)?, (n as usize % per_sector) * 4)
    };
    let mut facts = Facts::default();
    let mut current = le32(d, 0x30).ok_or(CfbError("header"))?;
    let mut walked = 0usize;
    while current < 0xffff_fffa {
        walked += 1;
        if walked > MAX_DIRECTORY_SECTORS {
            return Err(CfbError("directory chain too long or looping"));
        }
        let s = sector(current).ok_or(CfbError("directory sector outside the file"))?;
        for entry in s.chunks_exact(128) {
            let name_len = usize::from(le16(entry, 64).unwrap_or(0)).min(64);
            let kind = entry.get(66).copied().unwrap_or(0);
            let units: Vec<u16> = entry[..name_len]
                .chunks_exact(2)
                .map(|c| u16::from_le_bytes([c[0], c[1]]))
                .take_while(|&u| u != 0)
                .collect();
            let name = String::from_utf16_lossy(&units);
            match (kind, name.as_str()) {
                (1, n) if n.eq_ignore_ascii_case("Macros") || n.eq_ignore_ascii_case("_VBA_PROJECT_CUR") => {
                    facts.macros = true;
                }
                (1, n) if n.eq_ignore_ascii_case("VBA") => facts.macros = true,
                (2, n) if n.eq_ignore_ascii_case("_VBA_PROJECT") => facts.macros = true,
                (2, "EncryptedPackage") => facts.encrypted = true,
                (5, _) => facts.installer = entry.get(80..96) == Some(&MSI_CLSID[..]),
                _ => {}
            }
        }
        current = next(current).ok_or(CfbError("directory chain leaves the file"))?;
    }
    Ok(facts)
}

#[cfg(test)]
pub(crate) mod testcfb {
    //! Builds a one-directory-sector compound file with the given entries.

    /// `entries`: (name, type) with type 1 = storage, 2 = stream; a root entry comes first.
    pub(crate) fn build(entries: &[(&str, u8)], root_clsid: [u8; 16]) -> Vec<u8> {
        let mut f = vec![0u8; 512 * 3];
        f[..8].copy_from_slice(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1");
        f[0x18..0x1a].copy_from_slice(&0x3eu16.to_le_bytes());
        f[0x1a..0x1c].copy_from_slice(&3u16.to_le_bytes());
        f[0x1c..0x1e].copy_from_slice(&0xfffeu16.to_le_bytes());
        f[0x1e..0x20].copy_from_slice(&9u16.to_le_bytes());
        f[0x20..0x22].copy_from_slice(&6u16.to_le_bytes());
        f[0x2c..0x30].copy_from_slice(&1u32.to_le_bytes()); // one FAT sector
        f[0x30..0x34].copy_from_slice(&1u32.to_le_bytes()); // directory starts at sector 1
        f[0x44..0x48].copy_from_slice(&super::FREE.to_le_bytes());
        for i in 0..109 {
            f[0x4c + 4 * i..0x50 + 4 * i].copy_from_slice(&0xffff_ffffu32.to_le_bytes());
        }
        f[0x4c..0x50].copy_from_slice(&0u32.to_le_bytes()); // FAT in sector 0
        // FAT (sector 0, at file offset 512): sector 0 = FATSECT, sector 1 = ENDOFCHAIN.
        f[512..516].copy_from_slice(&0xffff_fffdu32.to_le_bytes());
        f[516..520].copy_from_slice(&super::FREE.to_le_bytes());
        for i in 2..128 {
            f[512 + 4 * i..516 + 4 * i].copy_from_slice(&0xffff_ffffu32.to_le_bytes());
        }
        let all: Vec<(&str, u8)> = std::iter::once(("Root Entry", 5))
            .chain(entries.iter().copied())
            .collect();
        for (i, (name, kind)) in all.iter().take(4).enumerate() {
            let e = 1024 + 128 * i;
            let utf16: Vec<u8> = name.encode_utf16().chain([0]).flat_map(u16::to_le_bytes).collect();
            f[e..e + utf16.len()].copy_from_slice(&utf16);
            f[e + 64..e + 66].copy_from_slice(&(utf16.len() as u16).to_le_bytes());
            f[e + 66] = *kind;
            if *kind == 5 {
                f[e + 80..e + 96].copy_from_slice(&root_clsid);
            }
        }
        f
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_vba_storages_encryption_and_installers() {
        let doc = testcfb::build(&[("WordDocument", 2), ("Macros", 1), ("VBA", 1)], [0; 16]);
        assert_eq!(
            inspect(&doc).unwrap(),
            Facts {
                macros: true,
                ..Facts::default()
            }
        );
        let clean = testcfb::build(&[("WordDocument", 2), ("1Table", 2)], [0; 16]);
        assert_eq!(inspect(&clean).unwrap(), Facts::default());
        let locked = testcfb::build(&[("EncryptionInfo", 2), ("EncryptedPackage", 2)], [0; 16]);
        assert!(inspect(&locked).unwrap().encrypted);
        assert!(inspect(&testcfb::build(&[], MSI_CLSID)).unwrap().installer);
    }

    #[test]
    fn a_looping_or_truncated_file_is_an_error_not_a_hang() {
        let mut doc = testcfb::build(&[("Macros", 1)], [0; 16]);
        doc[516..520].copy_from_slice(&1u32.to_le_bytes()); // directory sector points at itself
        assert!(inspect(&doc).is_err());
        let doc = testcfb::build(&[("Macros", 1)], [0; 16]);
        for n in 0..doc.len() {
            let _ = inspect(&doc[..n]);
        }
    }
}
