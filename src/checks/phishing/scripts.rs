//! Active content in an attached page (`.htm`, `.html`, `.shtml`, `.svg`, …):
//! what it does when the reader opens it in a browser, strongest first.
//!
//! - smuggling: the page builds a file in the browser and hands it over
//!   (`Blob`/`createObjectURL`/`msSaveOrOpenBlob`/`Uint8Array` together with
//!   decoded data, or a `data:` URL of a file type with `download`), which
//!   gets a payload past every scanner on the way;
//! - redirect: the page sends the browser elsewhere (`location` assignments
//!   and calls, `window.open`, meta refresh);
//! - obfuscated script: `eval`, `document.write` of decoded text,
//!   `String.fromCharCode`, `atob`, `unescape`;
//! - script: any script or event handler at all.
//!
//! Bodies are not judged here: mail clients do not run their scripts. Pure.

use std::sync::LazyLock;

use regex::Regex;

/// What an attached page does, weakest first (so `max` is the strongest).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Activity {
    Script,
    Obfuscated,
    Redirect,
    Smuggling,
}

static SCRIPT: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r#"(?i)<script\b|\bon(?:load|error|click|mouseover|focus)\s*=|javascript:"#).expect("valid regex")
});
static OBFUSCATED: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r#"(?i)\beval\s*\(|document\.write\s*\(\s*(?:unescape|atob|decodeURI)|String\.fromCharCode\s*\(|\batob\s*\(|\bunescape\s*\(|\\x[0-9a-f]{2}\\x[0-9a-f]{2}\\x[0-9a-f]{2}"#)
        .expect("valid regex")
});
static REDIRECT: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r#"(?i)(?:window|document|self|top)\.location(?:\.href)?\s*=|\blocation\.(?:href\s*=|replace\s*\(|assign\s*\()|window\.open\s*\(|http-equiv\s*=\s*["']?refresh"#,
    )
    .expect("valid regex")
});
static BUILDS_FILE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r#"(?i)new\s+Blob\s*\(|createObjectURL\s*\(|msSaveOrOpenBlob|msSaveBlob|new\s+Uint8Array\s*\(|new\s+File\s*\("#,
    )
    .expect("valid regex")
});
static DECODES: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r#"(?i)\batob\s*\(|charCodeAt|fromCharCode|base64"#).expect("valid regex"));
static DATA_FILE_URL: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r#"(?i)data:(?:application|octet|image/svg)[a-z0-9.+/\-]*;base64,"#).expect("valid regex")
});
static DOWNLOAD: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r#"(?i)\bdownload\s*=|\.download\s*=|\.click\s*\(\s*\)"#).expect("valid regex"));

/// Builds this file's tables now, when the check is built, rather than at
/// the first message that needs them (see the `checks` module header).
pub(crate) fn warm() {
    LazyLock::force(&SCRIPT);
    LazyLock::force(&OBFUSCATED);
    LazyLock::force(&REDIRECT);
    LazyLock::force(&BUILDS_FILE);
    LazyLock::force(&DECODES);
    LazyLock::force(&DATA_FILE_URL);
    LazyLock::force(&DOWNLOAD);
}

/// The strongest activity of an attached page (`revealed`: its text with
/// disguises undone), `None` when it is static.
pub(crate) fn activity(revealed: &str) -> Option<Activity> {
    let builds = BUILDS_FILE.is_match(revealed) && DECODES.is_match(revealed);
    let data_download =
        DATA_FILE_URL.is_match(revealed) && (DOWNLOAD.is_match(revealed) || REDIRECT.is_match(revealed));
    if builds || data_download {
        return Some(Activity::Smuggling);
    }
    if REDIRECT.is_match(revealed) {
        return Some(Activity::Redirect);
    }
    if OBFUSCATED.is_match(revealed) {
        return Some(Activity::Obfuscated);
    }
    SCRIPT.is_match(revealed).then_some(Activity::Script)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_activity_is_recognised() {
        let smuggle = r#"<script>var b=atob(d);var a=new Uint8Array(b.length);var blob=new Blob([a]);
var u=URL.createObjectURL(blob);</script>"#;
        assert_eq!(activity(smuggle), Some(Activity::Smuggling));
        let data = r#"<a href="data:application/zip;base64,UEsDBA==" download="invoice.zip">open</a>"#;
        assert_eq!(activity(data), Some(Activity::Smuggling));
        let redirect = r#"<script>setTimeout(function(){document.location='https://x.example/';},200)</script>"#;
        assert_eq!(activity(redirect), Some(Activity::Redirect));
        let refresh = r#"<meta http-equiv="refresh" content="0;url=https://x.example/">"#;
        assert_eq!(activity(refresh), Some(Activity::Redirect));
        assert_eq!(
            activity("<script>eval(String.fromCharCode(97))</script>"),
            Some(Activity::Obfuscated)
        );
        assert_eq!(activity("<script>var x=1;</script>"), Some(Activity::Script));
    }

    #[test]
    fn a_static_page_or_an_inline_image_is_not_active() {
        assert_eq!(
            activity("<html><body><h1>Receipt</h1><p>Total: 10 EUR</p></body></html>"),
            None
        );
        assert_eq!(
            activity(r#"<img src="data:image/png;base64,iVBORw0KGgo=" alt="logo">"#),
            None
        );
    }
}
