//! Static data behind [`super`]: combining marks and invisible characters
//! (small, stable Unicode ranges), the hosting platforms the Public Suffix
//! List lacks, and the top-level domains that make link text read as a host.
//! The look-alike characters themselves are Unicode's (`unicode-security`)
//! and the suffixes the Public Suffix List's (`psl`).

/// Combining marks (removed after NFKD, which is what makes `é` fold to `e`).
pub(crate) fn is_mark(c: char) -> bool {
    matches!(c,
        '\u{0300}'..='\u{036F}'
        | '\u{0483}'..='\u{0489}'
        | '\u{1AB0}'..='\u{1AFF}'
        | '\u{1DC0}'..='\u{1DFF}'
        | '\u{20D0}'..='\u{20FF}'
        | '\u{FE20}'..='\u{FE2F}')
}

/// Characters that render as nothing (or only change direction) and are
/// used to break up a word for a filter while it still reads the same.
pub(crate) fn is_invisible(c: char) -> bool {
    matches!(c,
        '\u{00AD}'
        | '\u{034F}'
        | '\u{061C}'
        | '\u{180E}'
        | '\u{200B}'..='\u{200F}'
        | '\u{202A}'..='\u{202E}'
        | '\u{2060}'..='\u{2064}'
        | '\u{2066}'..='\u{2069}'
        | '\u{FEFF}')
}

/// Hosting platforms where every customer gets a subdomain of its own, which
/// the Public Suffix List does not list (checked against psl 2.1.247): each
/// Microsoft 365 tenant's `onmicrosoft.com` and `sharepoint.com` names, and
/// a few site builders phishing pages are often hosted on.
pub(crate) const EXTRA_HOSTING_SUFFIXES: &[&str] = &[
    "mail.onmicrosoft.com",
    "onmicrosoft.com",
    "sharepoint.com",
    "wordpress.com",
    "weebly.com",
    "godaddysites.com",
    "glitch.me",
];

/// Top-level domains accepted when link text shows a bare domain without
/// `http://` or `www.` (`contoso.com`). Two-letter codes that are also
/// common file extensions (`.md`, `.py`, `.sh`, `.rs`, `.pl`, `.ps`, `.ai`,
/// `.cs`, `.js`-like) are left out so that `README.md` is not read as a host.
pub(crate) const LINK_TEXT_TLDS: &[&str] = &[
    "com", "net", "org", "edu", "gov", "mil", "int", "info", "biz", "io", "co", "app", "dev", "online", "site",
    "store", "shop", "xyz", "top", "club", "live", "cloud", "email", "link", "click", "support", "services", "finance",
    "bank", "me", "tv", "us", "uk", "de", "fr", "nl", "be", "ch", "at", "es", "pt", "ie", "eu", "se", "no", "dk", "fi",
    "cz", "sk", "hu", "ro", "bg", "gr", "ru", "ua", "ca", "au", "nz", "jp", "cn", "hk", "tw", "kr", "sg", "za", "br",
    "mx", "ar", "cl", "tr", "il", "ae", "sa",
];
