//! What a file name says and how it can lie: the extension Windows will act
//! on, decoy double extensions (`invoice.pdf.exe`) and display tricks
//! (right-to-left override, blank padding, trailing dots and spaces that
//! Windows strips).
//!
//! Pure functions over already decoded names (mail-parser has undone RFC 2231
//! and encoded-words). Extensions are compared lower-cased, without the dot.

/// The default blocked extensions: programs, scripts, installers, shortcuts,
/// disk images and containers that Windows opens or mounts on double-click
/// (Outlook's Level 1 list and EOP's common attachment filter, minus formats
/// that are routinely exchanged, such as .cer or .py).
pub(crate) const DEFAULT_BLOCKED: &[&str] = &[
    "ace",
    "ade",
    "adp",
    "app",
    "appinstaller",
    "application",
    "appx",
    "appxbundle",
    "bas",
    "bat",
    "chm",
    "cmd",
    "com",
    "cpl",
    "diagcab",
    "dll",
    "exe",
    "gadget",
    "hlp",
    "hta",
    "htc",
    "img",
    "inf",
    "ins",
    "iso",
    "isp",
    "jar",
    "jnlp",
    "js",
    "jse",
    "library-ms",
    "lnk",
    "mde",
    "msc",
    "msh",
    "msh1",
    "msh2",
    "msi",
    "msix",
    "msixbundle",
    "msp",
    "mst",
    "msu",
    "ocx",
    "one",
    "onepkg",
    "pif",
    "ps1",
    "ps1xml",
    "ps2",
    "ps2xml",
    "psc1",
    "psc2",
    "psd1",
    "psm1",
    "reg",
    "scf",
    "scr",
    "sct",
    "settingcontent-ms",
    "shb",
    "shs",
    "url",
    "vb",
    "vbe",
    "vbs",
    "vhd",
    "vhdx",
    "ws",
    "wsb",
    "wsc",
    "wsf",
    "wsh",
    "xbap",
    "xll",
];

/// Active content that is not a program but is what phishing hides behind a
/// document-looking name (`scan.pdf.html`).
const ACTIVE_CONTENT: &[&str] = &["htm", "html", "shtml", "xhtml", "svg", "mht", "mhtml"];

/// Extensions a user takes for a harmless document when they appear second to last.
const DECOYS: &[&str] = &[
    "pdf", "doc", "docx", "xls", "xlsx", "ppt", "pptx", "rtf", "txt", "csv", "odt", "ods", "odp", "jpg", "jpeg", "png",
    "gif", "bmp", "tif", "tiff", "heic", "webp", "mp3", "mp4", "wav", "avi", "mov", "wmv", "zip", "rar", "7z", "eml",
    "msg", "ics", "xml",
];

/// True for extensions that run code or render active content when opened:
/// the blocked list (configured or default) plus active content.
pub(crate) fn is_executable_like(ext: &str, blocked: &dyn Fn(&str) -> bool) -> bool {
    blocked(ext) || DEFAULT_BLOCKED.contains(&ext) || ACTIVE_CONTENT.contains(&ext)
}

/// The last path component (zip entries and some mailers carry paths).
pub(crate) fn base_name(name: &str) -> &str {
    name.rsplit(['/', '\\']).next().unwrap_or(name)
}

/// The name as Windows stores it: trailing dots and blanks removed.
pub(crate) fn effective(name: &str) -> &str {
    base_name(name).trim_end_matches(|c: char| c == '.' || is_blank(c))
}

/// The extension Windows acts on, lower case, without the dot.
pub(crate) fn extension(name: &str) -> Option<String> {
    let eff = effective(name);
    let (_, ext) = eff.rsplit_once('.')?;
    let ext = ext.trim_matches(is_blank).to_lowercase();
    (!ext.is_empty()).then_some(ext)
}

fn is_blank(c: char) -> bool {
    c.is_whitespace() || matches!(c, '\u{2800}' | '\u{3164}' | '\u{115f}' | '\u{1160}' | '\u{ffa0}')
}

fn is_invisible(c: char) -> bool {
    matches!(c, '\u{200b}'..='\u{200d}' | '\u{2060}' | '\u{feff}' | '\u{00ad}')
}

fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{200e}' | '\u{200f}' | '\u{061c}')
}

/// `Some((decoy, real))` for `report.pdf.exe`: a decoy document extension
/// directly before an executable-like one.
pub(crate) fn double_extension(name: &str, blocked: &dyn Fn(&str) -> bool) -> Option<(String, String)> {
    let eff = effective(name);
    let real = extension(name)?;
    if !is_executable_like(&real, blocked) {
        return None;
    }
    let (rest, _) = eff.rsplit_once('.')?;
    let (_, decoy) = rest.rsplit_once('.')?;
    let decoy: String = decoy
        .chars()
        .filter(|&c| !is_blank(c) && !is_invisible(c) && !is_bidi_control(c))
        .collect::<String>()
        .to_lowercase();
    DECOYS.contains(&decoy.as_str()).then_some((decoy, real))
}

/// Ways the displayed name differs from what Windows will act on.
pub(crate) fn deceptions(name: &str, blocked: &dyn Fn(&str) -> bool) -> Vec<String> {
    let mut out = Vec::new();
    let base = base_name(name);
    if let Some(c) = base.chars().find(|&c| is_bidi_control(c)) {
        out.push(format!(
            "contains the bidirectional control U+{:04X}, which changes the order in which the name is displayed",
            u32::from(c)
        ));
    }
    if base.ends_with(|c: char| c == '.' || is_blank(c)) && !effective(name).is_empty() {
        out.push("ends with dots or blanks that Windows removes, changing the extension".into());
    }
    let executable = extension(name).is_some_and(|e| is_executable_like(&e, blocked));
    if executable {
        let mut run = 0usize;
        let mut longest = 0usize;
        for c in base.chars() {
            run = if is_blank(c) { run + 1 } else { 0 };
            longest = longest.max(run);
        }
        if longest >= 3 {
            out.push(format!(
                "pads the name with {longest} blanks, pushing the real extension out of view"
            ));
        }
        if base.chars().any(is_invisible) {
            out.push("contains invisible characters".into());
        }
    }
    out
}

/// The name quoted for a log line, with control and invisible characters
/// shown as `<U+XXXX>` so that they cannot reorder the log itself.
pub(crate) fn show(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 2);
    out.push('"');
    for c in name.chars().take(200) {
        if c.is_control() || is_bidi_control(c) || is_invisible(c) {
            out.push_str(&format!("<U+{:04X}>", u32::from(c)));
        } else {
            out.push(c);
        }
    }
    if name.chars().count() > 200 {
        out.push('…');
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn default_blocked(ext: &str) -> bool {
        DEFAULT_BLOCKED.contains(&ext)
    }

    #[test]
    fn the_extension_is_the_one_windows_acts_on() {
        assert_eq!(extension("Invoice.PDF").as_deref(), Some("pdf"));
        assert_eq!(extension("setup.exe. . .").as_deref(), Some("exe"));
        assert_eq!(extension("C:\\Users\\x\\run.JS").as_deref(), Some("js"));
        assert_eq!(extension("dir.d/README"), None);
        assert_eq!(extension("photo\u{202e}gpj.exe").as_deref(), Some("exe"));
    }

    #[test]
    fn decoy_double_extensions() {
        let b = &default_blocked;
        assert_eq!(
            double_extension("invoice.pdf.exe", b),
            Some(("pdf".into(), "exe".into()))
        );
        assert_eq!(
            double_extension("scan.docx     .js", b),
            Some(("docx".into(), "js".into()))
        );
        assert_eq!(
            double_extension("Rechnung.PDF.html", b),
            Some(("pdf".into(), "html".into()))
        );
        assert_eq!(double_extension("report.final.pdf", b), None);
        assert_eq!(double_extension("backup.tar.gz", b), None);
        assert_eq!(double_extension("v1.2.3.exe", b), None);
    }

    #[test]
    fn display_tricks() {
        let b = &default_blocked;
        assert!(deceptions("invoice\u{202e}fdp.exe", b)[0].contains("U+202E"));
        assert!(deceptions("payload.exe.", b)[0].contains("Windows removes"));
        assert!(deceptions("scan.docx     .js", b)[0].contains("5 blanks"));
        assert!(deceptions("Quarterly   Report.pdf", b).is_empty());
        assert!(deceptions("report.final.pdf", b).is_empty());
        assert_eq!(show("a\u{202e}b"), "\"a<U+202E>b\"");
    }
}
