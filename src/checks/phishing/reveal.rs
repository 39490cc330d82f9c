//! Undoing the cheap disguises of hostile HTML before it is searched: the
//! literals of `atob("...")` (base64), `unescape("...")` / `decodeURIComponent`
//! (percent escapes), `\xNN` / `\uNNNN` escapes in scripts, and reversed
//! base64 (`"...".split("").reverse().join("")`). The revealed text is
//! appended to the original, so a detector sees both what was written and
//! what a browser would build from it.
//!
//! Never runs script. One pass, no recursion beyond [`ROUNDS`]; the output is
//! at most [`MAX_REVEALED`] bytes longer than the input.

use std::sync::LazyLock;

use base64::Engine;
use regex::Regex;

/// How often revealed text is searched again (a base64 inside an unescape).
const ROUNDS: usize = 2;
/// Bytes added at most.
const MAX_REVEALED: usize = 1024 * 1024;

static ATOB: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r#"(?i)atob\s*\(\s*["'`]([A-Za-z0-9+/=\s]{8,})["'`]"#).expect("valid regex"));
static UNESCAPE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r#"(?i)(?:unescape|decodeURIComponent|decodeURI)\s*\(\s*["'`]([^"'`]{6,})["'`]"#).expect("valid regex")
});
static HEX_ESCAPES: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(?:\\x[0-9A-Fa-f]{2}|\\u[0-9A-Fa-f]{4}){4,}").expect("valid regex"));
/// A long base64-looking string literal (for reversed base64).
static B64_LITERAL: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r#"["'`]([A-Za-z0-9+/=]{24,})["'`]"#).expect("valid regex"));

/// Builds this file's tables now, when the check is built, rather than at
/// the first message that needs them (see the `checks` module header).
pub(crate) fn warm() {
    LazyLock::force(&ATOB);
    LazyLock::force(&UNESCAPE);
    LazyLock::force(&HEX_ESCAPES);
    LazyLock::force(&B64_LITERAL);
}

/// `html` followed by whatever its disguises hide.
pub(crate) fn reveal(html: &str) -> String {
    let mut out = html.to_string();
    let mut frontier = html.to_string();
    for _ in 0..ROUNDS {
        let mut found = String::new();
        for c in ATOB.captures_iter(&frontier) {
            if let Some(text) = base64_text(&c[1]) {
                push(&mut found, &text);
            }
        }
        for c in UNESCAPE.captures_iter(&frontier) {
            push(&mut found, &percent_decode(&c[1]));
        }
        for m in HEX_ESCAPES.find_iter(&frontier) {
            push(&mut found, &js_unescape(m.as_str()));
        }
        if frontier.contains("reverse()") {
            for c in B64_LITERAL.captures_iter(&frontier) {
                let reversed: String = c[1].chars().rev().collect();
                if let Some(text) = base64_text(&reversed) {
                    push(&mut found, &text);
                }
            }
        }
        if found.is_empty() || out.len() + found.len() > html.len() + MAX_REVEALED {
            break;
        }
        out.push('\n');
        out.push_str(&found);
        frontier = found;
    }
    out
}

fn push(found: &mut String, text: &str) {
    if found.len() + text.len() <= MAX_REVEALED {
        found.push_str(text);
        found.push('\n');
    }
}

/// Decoded base64 when it is mostly text (a URL, markup or script).
fn base64_text(b64: &str) -> Option<String> {
    let clean: String = b64.chars().filter(|c| !c.is_whitespace()).collect();
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(clean.as_bytes())
        .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(clean.trim_end_matches('=')))
        .ok()?;
    let printable = bytes
        .iter()
        .filter(|b| b.is_ascii_graphic() || b.is_ascii_whitespace())
        .count();
    (printable * 10 >= bytes.len() * 9).then(|| String::from_utf8_lossy(&bytes).into_owned())
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(h) = text.get(i + 1..i + 3)
            && let Ok(b) = u8::from_str_radix(h, 16)
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn js_unescape(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(pos) = rest.find('\\') {
        let (kind, len) = match rest.as_bytes().get(pos + 1) {
            Some(b'x') => (16, 2),
            Some(b'u') => (16, 4),
            _ => break,
        };
        let code = rest
            .get(pos + 2..pos + 2 + len)
            .and_then(|h| u32::from_str_radix(h, kind).ok())
            .and_then(char::from_u32);
        match code {
            Some(c) => out.push(c),
            None => break,
        }
        rest = &rest[pos + 2 + len..];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disguises_are_revealed() {
        // "https://evil.example/p" in base64, percent escapes, hex escapes, reversed base64.
        let html = r#"<script>var u=atob("aHR0cHM6Ly9ldmlsLmV4YW1wbGUvcA==");
document.write(unescape('%3Cform%20action%3D%22https%3A//x.example%22%3E'));
var h="\x68\x74\x74\x70\x73\x3a";
var r="==wZulGZuFGbvUGbw1WY4VmLslmdl9yL6MHc0RHa".split("").reverse().join("");</script>"#;
        let out = reveal(html);
        assert!(out.contains("https://evil.example/p"), "{out}");
        assert!(out.contains("<form action=\"https://x.example\">"), "{out}");
        assert!(out.contains("https:\n"), "{out}");
        assert!(out.contains("https://evil.example/landing"), "{out}");
        assert!(reveal("plain text, nothing hidden") == "plain text, nothing hidden");
    }
}
