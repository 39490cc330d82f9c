//! Static data behind [`super`]: the look-alike character map and the small
//! built-in list of multi-label suffixes.
//!
//! The confusable map is a hand-picked subset of Unicode's confusables
//! (UTS #39) limited to the Cyrillic, Greek and Latin letters that render like
//! a basic Latin letter in common fonts; it maps to lower-case ASCII. It is
//! deliberately not the whole table: mapping e.g. Cyrillic `п` to `n` would
//! make legitimate Cyrillic names collide with Latin ones.
//!
//! The suffix lists are NOT the Public Suffix List. They cover the common
//! country second levels (`co.uk`, `com.au`, …) by a rule and a few hosting
//! platforms where every customer gets a subdomain. A suffix missing here
//! makes two customers of that suffix look like one organisation (a missed
//! look-alike, never a false one for the tenant's own domains).

/// The ASCII letter(s) a look-alike character renders as, `None` for any
/// character that is not a known look-alike (including ASCII itself).
pub(crate) fn confusable(c: char) -> Option<&'static str> {
    let mapped = match c {
        // Cyrillic, upper and lower case.
        'А' | 'а' => "a",
        'В' | 'в' | 'Ь' | 'ь' => "b",
        'С' | 'с' => "c",
        'ԁ' => "d",
        'Е' | 'е' | 'Ѐ' | 'ѐ' | 'Ҽ' | 'ҽ' => "e",
        'Һ' | 'һ' | 'Н' | 'н' => "h",
        'І' | 'і' => "i",
        'Ј' | 'ј' => "j",
        'К' | 'к' => "k",
        'ӏ' | 'Ӏ' => "l",
        'М' | 'м' => "m",
        'О' | 'о' => "o",
        'Р' | 'р' => "p",
        'Ԛ' | 'ԛ' => "q",
        'Ѕ' | 'ѕ' => "s",
        'Т' | 'т' => "t",
        'Ԝ' | 'ԝ' | 'Ѡ' | 'ѡ' => "w",
        'Х' | 'х' => "x",
        'У' | 'у' | 'Ү' | 'ү' => "y",
        // Greek, upper and lower case.
        'Α' | 'α' => "a",
        'Β' | 'β' => "b",
        'ϲ' | 'Ϲ' => "c",
        'Ε' | 'ε' => "e",
        'Η' => "h",
        'η' => "n",
        'Ι' | 'ι' | 'ί' => "i",
        'Κ' | 'κ' => "k",
        'Μ' => "m",
        'Ν' | 'ν' => "v",
        'Ο' | 'ο' | 'ό' | 'σ' => "o",
        'Ρ' | 'ρ' => "p",
        'Τ' | 'τ' => "t",
        'Υ' | 'υ' | 'γ' => "y",
        'Χ' | 'χ' => "x",
        'Ζ' => "z",
        'ω' => "w",
        'ϳ' => "j",
        'μ' => "u",
        // Latin letters that do not decompose under NFKD.
        'ı' | 'ɩ' => "i",
        'ł' | 'ƚ' => "l",
        'ø' | 'Ø' | 'ɵ' => "o",
        'đ' | 'Đ' | 'ɗ' => "d",
        'ħ' | 'Ħ' => "h",
        'ŧ' | 'Ŧ' => "t",
        'ɑ' | 'ɐ' => "a",
        'ɡ' | 'ɢ' => "g",
        'ʏ' => "y",
        'ʀ' => "r",
        'ʜ' => "h",
        'ɴ' => "n",
        'ꜱ' => "s",
        'ᴀ' => "a",
        'ᴄ' => "c",
        'ᴅ' => "d",
        'ᴇ' => "e",
        'ᴋ' => "k",
        'ᴍ' => "m",
        'ᴏ' => "o",
        'ᴘ' => "p",
        'ᴛ' => "t",
        'ᴜ' => "u",
        'ᴠ' => "v",
        'ᴡ' => "w",
        'ᴢ' => "z",
        _ => return None,
    };
    Some(mapped)
}

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

/// Second-level labels under a two-letter country code that are registries
/// of their own (`co.uk`, `com.au`, `ac.jp`, `gob.mx`, …).
pub(crate) const GENERIC_SECOND_LEVELS: &[&str] = &[
    "ac", "asso", "co", "com", "edu", "go", "gob", "gouv", "gov", "govt", "gv", "ltd", "me", "mil", "ne", "net", "nhs",
    "nom", "or", "org", "plc", "sch",
];

/// Suffixes under which unrelated customers each get their own name
/// (the "private" part of the Public Suffix List, heavily abridged).
/// Longest first does not matter: lookup tries three labels before two.
pub(crate) const HOSTING_SUFFIXES: &[&str] = &[
    "mail.onmicrosoft.com",
    "onmicrosoft.com",
    "sharepoint.com",
    "blob.core.windows.net",
    "web.core.windows.net",
    "azurewebsites.net",
    "cloudapp.net",
    "azureedge.net",
    "appspot.com",
    "web.app",
    "firebaseapp.com",
    "pages.dev",
    "workers.dev",
    "r2.dev",
    "netlify.app",
    "vercel.app",
    "herokuapp.com",
    "github.io",
    "gitlab.io",
    "blogspot.com",
    "wordpress.com",
    "wixsite.com",
    "weebly.com",
    "myshopify.com",
    "godaddysites.com",
    "ngrok.io",
    "ngrok-free.app",
    "glitch.me",
    "translate.goog",
    "duckdns.org",
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
