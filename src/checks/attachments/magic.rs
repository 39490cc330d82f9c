//! The real type of a file from its first bytes, and what its name and
//! declared media type claim it is.
//!
//! Only families that matter for a mail gateway are told apart: programs,
//! scripts, archives and disk images, documents, images. A type is
//! recognised by structure (a PE header must point at `PE\0\0`), never by
//! two letters alone, so a text file starting with "MZ" stays text.

use crate::scan::formats::archive::le32;

/// What the bytes are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// Windows executable (PE) or DOS program.
    WindowsExecutable,
    Elf,
    MachO,
    /// Windows shortcut (.lnk).
    Shortcut,
    /// Windows Installer database (an OLE2 file with the MSI class id).
    Installer,
    /// Shebang or batch script.
    Script,
    Zip,
    Rar,
    SevenZip,
    Gzip,
    Tar,
    Cabinet,
    DiskImage,
    Pdf,
    /// A zip that is an OOXML or OpenDocument package (set by the archive walk, not by [`sniff`]).
    OfficePackage,
    Ole2,
    Rtf,
    Image,
    Tnef,
    Unknown,
}

/// What a type is used for; mismatches are judged between families.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Family {
    Executable,
    Script,
    Archive,
    Document,
    Image,
    Text,
    Media,
    /// Nothing specific (no extension, `application/octet-stream`, a `.dat`).
    Neutral,
}

impl Kind {
    pub(crate) fn family(self) -> Family {
        match self {
            Kind::WindowsExecutable | Kind::Elf | Kind::MachO | Kind::Shortcut | Kind::Installer => Family::Executable,
            Kind::Script => Family::Script,
            Kind::Zip | Kind::Rar | Kind::SevenZip | Kind::Gzip | Kind::Tar | Kind::Cabinet | Kind::DiskImage => {
                Family::Archive
            }
            Kind::Pdf | Kind::OfficePackage | Kind::Ole2 | Kind::Rtf => Family::Document,
            Kind::Image => Family::Image,
            Kind::Tnef | Kind::Unknown => Family::Neutral,
        }
    }

    pub(crate) fn describe(self) -> &'static str {
        match self {
            Kind::WindowsExecutable => "a Windows executable",
            Kind::Elf => "a Linux (ELF) executable",
            Kind::MachO => "a macOS (Mach-O) executable",
            Kind::Shortcut => "a Windows shortcut",
            Kind::Installer => "a Windows Installer package",
            Kind::Script => "a script",
            Kind::Zip => "a zip archive",
            Kind::Rar => "a RAR archive",
            Kind::SevenZip => "a 7-Zip archive",
            Kind::Gzip => "a gzip file",
            Kind::Tar => "a tar archive",
            Kind::Cabinet => "a cabinet archive",
            Kind::DiskImage => "a disk image",
            Kind::Pdf => "a PDF",
            Kind::OfficePackage => "an Office document",
            Kind::Ole2 => "an OLE2 compound document",
            Kind::Rtf => "an RTF document",
            Kind::Image => "an image",
            Kind::Tnef => "a TNEF container",
            Kind::Unknown => "data",
        }
    }
}

pub(crate) fn sniff(d: &[u8]) -> Kind {
    let starts = |m: &[u8]| d.starts_with(m);
    if starts(b"MZ") && is_windows_executable(d) {
        return Kind::WindowsExecutable;
    }
    if starts(b"\x7fELF") {
        return Kind::Elf;
    }
    if [
        [0xfe, 0xed, 0xfa, 0xce],
        [0xfe, 0xed, 0xfa, 0xcf],
        [0xce, 0xfa, 0xed, 0xfe],
        [0xcf, 0xfa, 0xed, 0xfe],
    ]
    .iter()
    .any(|m| starts(m))
    {
        return Kind::MachO;
    }
    // 0xCAFEBABE is also a Java class; a universal binary has few architectures.
    if starts(&[0xca, 0xfe, 0xba, 0xbe])
        && d.get(4..8)
            .is_some_and(|n| u32::from_be_bytes([n[0], n[1], n[2], n[3]]) < 32)
    {
        return Kind::MachO;
    }
    if starts(&[0x4c, 0, 0, 0, 0x01, 0x14, 0x02, 0]) {
        return Kind::Shortcut;
    }
    if starts(b"PK\x03\x04") || starts(b"PK\x05\x06") || starts(b"PK\x07\x08") {
        return Kind::Zip;
    }
    if starts(b"Rar!\x1a\x07") {
        return Kind::Rar;
    }
    if starts(b"7z\xbc\xaf\x27\x1c") {
        return Kind::SevenZip;
    }
    if starts(&[0x1f, 0x8b, 0x08]) {
        return Kind::Gzip;
    }
    if starts(b"MSCF\0\0\0\0") {
        return Kind::Cabinet;
    }
    if starts(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1") {
        return Kind::Ole2;
    }
    if starts(&crate::scan::formats::tnef::SIGNATURE) {
        return Kind::Tnef;
    }
    if starts(b"{\\rtf") {
        return Kind::Rtf;
    }
    if d.get(..1024).unwrap_or(d).windows(5).any(|w| w == b"%PDF-") {
        return Kind::Pdf;
    }
    if is_image(d) {
        return Kind::Image;
    }
    if crate::scan::formats::archive::stream::is_tar(d) {
        return Kind::Tar;
    }
    if starts(b"vhdxfile")
        || starts(b"conectix")
        || [0x8001, 0x8801, 0x9001]
            .iter()
            .any(|&at| d.get(at..at + 5) == Some(b"CD001"))
    {
        return Kind::DiskImage;
    }
    if is_script(d) {
        return Kind::Script;
    }
    Kind::Unknown
}

/// "MZ" followed by a PE header where the DOS header points, or by a DOS
/// header that is binary (a real one is mostly small integers and zeros).
fn is_windows_executable(d: &[u8]) -> bool {
    if let Some(pe) = le32(d, 0x3c).and_then(|at| usize::try_from(at).ok())
        && d.get(pe..pe.saturating_add(4)) == Some(b"PE\0\0")
    {
        return true;
    }
    d.get(2..0x40)
        .is_some_and(|h| h.iter().filter(|&&b| b == 0).count() >= 16)
}

fn is_image(d: &[u8]) -> bool {
    let starts = |m: &[u8]| d.starts_with(m);
    starts(&[0xff, 0xd8, 0xff])
        || starts(b"\x89PNG\r\n\x1a\n")
        || starts(b"GIF87a")
        || starts(b"GIF89a")
        || starts(b"II*\0")
        || starts(b"MM\0*")
        || (starts(b"RIFF") && d.get(8..12) == Some(b"WEBP"))
        || (starts(b"BM") && d.len() >= 26 && d.get(6..10) == Some(&[0, 0, 0, 0]))
        || (d.get(4..12) == Some(b"ftypheic") || d.get(4..12) == Some(b"ftypmif1"))
}

fn is_script(d: &[u8]) -> bool {
    let d = d.strip_prefix(b"\xef\xbb\xbf").unwrap_or(d);
    let start = d.iter().position(|b| !b.is_ascii_whitespace()).unwrap_or(d.len());
    let d = &d[start..];
    if let Some(rest) = d.strip_prefix(b"#!") {
        return rest.iter().find(|&&b| b != b' ').is_some_and(|&b| b == b'/');
    }
    d.get(..9).is_some_and(|h| h.eq_ignore_ascii_case(b"@echo off"))
}

/// What the extension claims, when it is one we know.
pub(crate) fn family_of_extension(ext: &str) -> Option<Family> {
    Some(match ext {
        "pdf" | "doc" | "docx" | "docm" | "dot" | "dotx" | "dotm" | "xls" | "xlsx" | "xlsm" | "xlsb" | "xlt"
        | "xltx" | "ppt" | "pptx" | "pptm" | "pps" | "ppsx" | "rtf" | "odt" | "ods" | "odp" | "xps" | "oxps"
        | "msg" | "vsd" | "vsdx" | "pub" => Family::Document,
        "jpg" | "jpeg" | "jpe" | "jfif" | "png" | "gif" | "bmp" | "tif" | "tiff" | "webp" | "heic" | "heif" | "ico"
        | "svg" => Family::Image,
        "txt" | "csv" | "log" | "ics" | "vcf" | "xml" | "json" | "md" | "htm" | "html" | "eml" => Family::Text,
        "mp3" | "mp4" | "m4a" | "wav" | "avi" | "mov" | "wmv" | "mkv" | "ogg" => Family::Media,
        "zip" | "rar" | "7z" | "gz" | "tgz" | "tar" | "cab" | "bz2" | "xz" | "iso" | "img" | "vhd" | "vhdx"
        | "zipx" => Family::Archive,
        "exe" | "dll" | "scr" | "com" | "cpl" | "ocx" | "sys" | "drv" | "efi" | "msi" | "msp" | "so" | "dylib"
        | "elf" | "o" | "ko" | "axf" | "app" | "lnk" | "pif" | "bin" | "run" => Family::Executable,
        "sh" | "bash" | "zsh" | "ksh" | "csh" | "command" | "py" | "pl" | "rb" | "php" | "ps1" | "bat" | "cmd"
        | "js" | "vbs" | "wsf" => Family::Script,
        _ => return None,
    })
}

/// What the declared media type claims.
pub(crate) fn family_of_media_type(mt: &str) -> Family {
    let (top, sub) = mt.split_once('/').unwrap_or((mt, ""));
    match (top, sub) {
        ("image", _) => Family::Image,
        ("text", _) => Family::Text,
        ("audio" | "video", _) => Family::Media,
        ("application", "pdf" | "msword" | "rtf") => Family::Document,
        ("application", s) if s.starts_with("vnd.ms-") || s.starts_with("vnd.openxmlformats") => Family::Document,
        ("application", s) if s.starts_with("vnd.oasis.opendocument") => Family::Document,
        (
            "application",
            "zip"
            | "x-zip-compressed"
            | "x-rar-compressed"
            | "vnd.rar"
            | "x-7z-compressed"
            | "gzip"
            | "x-gzip"
            | "x-tar"
            | "vnd.ms-cab-compressed"
            | "x-iso9660-image",
        ) => Family::Archive,
        (
            "application",
            "x-msdownload"
            | "x-dosexec"
            | "x-executable"
            | "vnd.microsoft.portable-executable"
            | "x-msdos-program"
            | "x-sharedlib"
            | "x-mach-binary"
            | "x-elf"
            | "x-msi"
            | "x-ms-installer",
        ) => Family::Executable,
        ("application", "x-sh" | "x-shellscript" | "javascript" | "x-javascript" | "x-bat") => Family::Script,
        _ => Family::Neutral,
    }
}

/// The claim of a named, typed attachment: a known extension wins over the
/// declared type, as Windows opens files by extension.
pub(crate) fn claim(ext: Option<&str>, declared: &str) -> Family {
    ext.and_then(family_of_extension)
        .unwrap_or_else(|| family_of_media_type(declared))
}

/// Extensions of formats that are zip files by design.
pub(crate) fn is_zip_based(ext: &str) -> bool {
    matches!(
        ext,
        "docx"
            | "docm"
            | "dotx"
            | "dotm"
            | "xlsx"
            | "xlsm"
            | "xltx"
            | "xlsb"
            | "pptx"
            | "pptm"
            | "ppsx"
            | "odt"
            | "ods"
            | "odp"
            | "xps"
            | "oxps"
            | "vsdx"
            | "epub"
            | "jar"
            | "apk"
            | "kmz"
            | "3mf"
            | "nupkg"
            | "appx"
            | "msix"
            | "ipa"
            | "xpi"
            | "crx"
            | "whl"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn tiny_pe() -> Vec<u8> {
        let mut pe = vec![0u8; 0x100];
        pe[..2].copy_from_slice(b"MZ");
        pe[0x3c] = 0x80;
        pe[0x80..0x84].copy_from_slice(b"PE\0\0");
        pe
    }

    #[test]
    fn recognises_the_common_families() {
        assert_eq!(sniff(&tiny_pe()), Kind::WindowsExecutable);
        assert_eq!(sniff(b"\x7fELF\x02\x01\x01"), Kind::Elf);
        assert_eq!(sniff(b"%PDF-1.7\n"), Kind::Pdf);
        assert_eq!(sniff(b"PK\x03\x04\x14\0"), Kind::Zip);
        assert_eq!(sniff(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1\0\0"), Kind::Ole2);
        assert_eq!(sniff(b"\xff\xd8\xff\xe0\0\x10JFIF"), Kind::Image);
        assert_eq!(sniff(b"#!/bin/sh\necho hi\n"), Kind::Script);
        assert_eq!(sniff(b"@ECHO OFF\r\ndel *.*\r\n"), Kind::Script);
        let mut iso = vec![0u8; 0x8006];
        iso[0x8001..0x8006].copy_from_slice(b"CD001");
        assert_eq!(sniff(&iso), Kind::DiskImage);
    }

    #[test]
    fn letters_are_not_magic() {
        let text = b"MZ Logistics quarterly report: shipments were up 4% on the previous quarter, with delays ...";
        assert_eq!(sniff(text), Kind::Unknown);
        assert_eq!(sniff(b"Hello # not a shebang"), Kind::Unknown);
        // A Java class file shares the universal-binary magic.
        assert_eq!(sniff(&[0xca, 0xfe, 0xba, 0xbe, 0, 0, 0, 52]), Kind::Unknown);
    }

    #[test]
    fn claims_prefer_the_extension() {
        assert_eq!(claim(Some("pdf"), "application/octet-stream"), Family::Document);
        assert_eq!(claim(None, "image/jpeg"), Family::Image);
        assert_eq!(claim(Some("dat"), "application/octet-stream"), Family::Neutral);
        assert_eq!(claim(Some("zip"), "text/plain"), Family::Archive);
    }
}
