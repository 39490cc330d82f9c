//! The small pieces of HTML knowledge the checks share: which elements break
//! the text into separate lines or cells, how character references (`&amp;`,
//! `&#104;`, `&#x68;`) decode, and ASCII case-insensitive search for end tags.
//! Both the readable-text reduction (`checks::content::text`) and the link
//! extraction (`checks::urls::extract`) use these, so what a reader sees and
//! what the checks match cannot drift apart.
//!
//! Invariants: nothing here allocates beyond its output, looks more than
//! [`MAX_REFERENCE`] bytes past an `&`, or panics on any input (truncated
//! references, numbers of any size, surrogates and other invalid code points
//! all have a defined answer). This module is no HTML parser and must never
//! become one: tokenizing stays with each caller, which knows what it needs.

use std::borrow::Cow;

/// Elements that start a new line or cell: the text on either side is not one
/// word. `td` and `th` are included (cells are separate words too); a caller
/// that lays out text may still treat them as a space rather than a new line.
pub(crate) const BLOCK_ELEMENTS: &[&str] = &[
    "br",
    "p",
    "div",
    "td",
    "th",
    "tr",
    "li",
    "ul",
    "ol",
    "table",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "hr",
    "blockquote",
    "pre",
    "section",
    "article",
    "header",
    "footer",
    "center",
    "title",
    "option",
];

/// Whether the element `name` (lower case) breaks the text; see [`BLOCK_ELEMENTS`].
pub(crate) fn is_block_element(name: &str) -> bool {
    BLOCK_ELEMENTS.contains(&name)
}

/// Bytes read after an `&` at most: a run of digits or letters longer than
/// this is not a reference (no real one is), so it is kept as written.
pub(crate) const MAX_REFERENCE: usize = 32;

/// HTML character references in `text` decoded: the named ones of
/// [`decode_reference`], decimal and hexadecimal. Unknown or malformed
/// references are kept as written.
pub(crate) fn decode_entities(text: &str) -> Cow<'_, str> {
    if !text.contains('&') {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('&') {
        out.push_str(rest.get(..at).unwrap_or_default());
        let after = rest.get(at + 1..).unwrap_or_default();
        match decode_reference(after) {
            Some((decoded, used)) => {
                out.push(decoded);
                rest = after.get(used..).unwrap_or_default();
            }
            None => {
                out.push('&');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    Cow::Owned(out)
}

/// Decodes the reference at the start of `s` (the text just after an `&`):
/// the character and the number of bytes of `s` it spans.
///
/// As browsers do: a numeric reference may omit its `;`; one that is zero,
/// too large, or a surrogate stands for U+FFFD rather than being dropped
/// (so it cannot make two halves of a word or URL meet unseen). A named
/// reference needs its `;`, except the legacy `amp`, `lt`, `gt`, `quot` and
/// `nbsp` (as in `?a=1&amp b`). Names are case-sensitive.
pub(crate) fn decode_reference(s: &str) -> Option<(char, usize)> {
    if let Some(num) = s.strip_prefix('#') {
        let (digits, radix, prefix) = match num.strip_prefix(['x', 'X']) {
            Some(hex) => (hex, 16, 2),
            None => (num, 10, 1),
        };
        let len = digits
            .bytes()
            .take(MAX_REFERENCE + 1)
            .take_while(|b| char::from(*b).is_digit(radix))
            .count();
        if len == 0 || len > MAX_REFERENCE {
            return None;
        }
        // Checked arithmetic: leading zeros are fine, overflow means U+FFFD.
        let value = digits.bytes().take(len).try_fold(0u32, |acc, b| {
            acc.checked_mul(radix)?.checked_add(char::from(b).to_digit(radix)?)
        });
        let c = value
            .and_then(char::from_u32)
            .filter(|c| *c != '\0')
            .unwrap_or('\u{FFFD}');
        let semicolon = usize::from(digits.as_bytes().get(len) == Some(&b';'));
        return Some((c, prefix + len + semicolon));
    }
    let len = s
        .bytes()
        .take(MAX_REFERENCE)
        .take_while(u8::is_ascii_alphanumeric)
        .count();
    let name = s.get(..len)?;
    let with_semicolon = s.as_bytes().get(len) == Some(&b';');
    let decoded = named_entity(name)?;
    if !with_semicolon && !matches!(name, "amp" | "lt" | "gt" | "quot" | "nbsp") {
        return None;
    }
    Some((decoded, len + usize::from(with_semicolon)))
}

/// The named references that matter in links and readable text: markup
/// characters, URL punctuation used to hide links, dashes and spaces, the
/// invisible joiners, and a few currency and legal signs.
fn named_entity(name: &str) -> Option<char> {
    Some(match name {
        "amp" => '&',
        "lt" => '<',
        "gt" => '>',
        "quot" => '"',
        "apos" => '\'',
        "nbsp" => '\u{A0}',
        "colon" => ':',
        "sol" => '/',
        "bsol" => '\\',
        "period" => '.',
        "commat" => '@',
        "num" => '#',
        "percnt" => '%',
        "quest" => '?',
        "equals" => '=',
        "excl" => '!',
        "plus" => '+',
        "comma" => ',',
        "semi" => ';',
        "lowbar" => '_',
        "hyphen" | "dash" => '\u{2010}',
        "ndash" => '\u{2013}',
        "mdash" => '\u{2014}',
        "lpar" => '(',
        "rpar" => ')',
        "ensp" | "emsp" | "thinsp" => ' ',
        "zwnj" => '\u{200C}',
        "zwj" => '\u{200D}',
        "shy" => '\u{AD}',
        "NewLine" => '\n',
        "Tab" => '\t',
        "euro" => '€',
        "pound" => '£',
        "copy" => '©',
        _ => return None,
    })
}

/// The first index `>= from` where `needle` occurs in `hay`, ASCII letters
/// compared without case (for end tags such as `</SCRIPT`). An empty needle
/// is found at `from`; a `from` past the end finds nothing.
pub(crate) fn find_ascii_ci(hay: &[u8], from: usize, needle: &[u8]) -> Option<usize> {
    let tail = hay.get(from..)?;
    if needle.is_empty() {
        return Some(from);
    }
    tail.windows(needle.len())
        .position(|w| w.eq_ignore_ascii_case(needle))
        .map(|p| p + from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numeric_references_decode_with_or_without_semicolon() {
        assert_eq!(decode_reference("#65;"), Some(('A', 4)));
        assert_eq!(decode_reference("#65 b"), Some(('A', 3)));
        assert_eq!(decode_reference("#x41;"), Some(('A', 5)));
        assert_eq!(decode_reference("#X6a"), Some(('j', 4)));
        // Leading zeros are an old filter-evasion trick; browsers accept them.
        assert_eq!(decode_entities("&#0000000104;ttps://x.example"), "https://x.example");
        assert_eq!(decode_entities("&#x0000068;ttp"), "http");
    }

    #[test]
    fn invalid_code_points_become_the_replacement_character() {
        for reference in [
            "&#0;",
            "&#x0;",
            "&#xD800;",
            "&#xDFFF;",
            "&#1114112;",
            "&#x110000;",
            "&#xFFFFFFFF;",
            "&#4294967296;",
            "&#99999999999999999999999999999999;",
            "&#xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF;",
        ] {
            assert_eq!(decode_entities(reference), "\u{FFFD}", "{reference}");
        }
        assert_eq!(decode_entities("&#x10FFFF;"), "\u{10FFFF}");
    }

    #[test]
    fn truncated_and_malformed_references_are_kept_as_written() {
        for text in [
            "&",
            "&#",
            "&#;",
            "&#x",
            "&#x;",
            "&#xg;",
            "&#-1;",
            "&#+65;",
            "& amp;",
            "&unknown;",
            "&colon",
            "&euro",
            "&ampx",
            "a&&b",
            "&;",
        ] {
            assert_eq!(decode_entities(text), text, "{text}");
        }
        // A digit run longer than any real reference is text, whatever it says.
        let long = format!("&#{};", "0".repeat(MAX_REFERENCE + 1));
        assert_eq!(decode_entities(&long), long);
        let long_name = format!("&{};", "a".repeat(4 * MAX_REFERENCE));
        assert_eq!(decode_entities(&long_name), long_name);
    }

    #[test]
    fn named_references_need_their_semicolon_except_the_legacy_five() {
        assert_eq!(
            decode_entities("&amp;&lt;&gt;&quot;&apos;&nbsp;&colon;&sol;&euro;&copy;"),
            "&<>\"'\u{A0}:/€©"
        );
        assert_eq!(decode_entities("?a=1&amp b&lt c&nbsp"), "?a=1& b< c\u{A0}");
        assert_eq!(decode_entities("http&colon//x"), "http&colon//x");
        assert_eq!(decode_entities("a&NewLine;b&Tab;c"), "a\nb\tc");
        assert_eq!(decode_reference("amp;rest"), Some(('&', 4)));
        assert_eq!(decode_reference("amp rest"), Some(('&', 3)));
    }

    #[test]
    fn decoding_never_panics_on_multibyte_or_cut_input() {
        for text in [
            "&é",
            "&#é",
            "&#xé;",
            "é&",
            "&#65é",
            "&amp\u{0}",
            "&\u{10FFFF};",
            "&#x1F600;&#128512",
        ] {
            let _ = decode_entities(text);
        }
        assert_eq!(decode_entities("&#x1F600;&#128512"), "😀😀");
        assert_eq!(decode_entities("é&amp;é"), "é&é");
        assert!(matches!(decode_entities("no references"), Cow::Borrowed(_)));
    }

    #[test]
    fn block_elements_include_cells_but_not_inline_markup() {
        for name in ["p", "br", "td", "th", "div", "title", "option"] {
            assert!(is_block_element(name), "{name}");
        }
        for name in ["a", "b", "span", "font", "P", ""] {
            assert!(!is_block_element(name), "{name}");
        }
    }

    #[test]
    fn case_insensitive_search_is_bounded_by_its_input() {
        let hay = b"<script>x</ScRiPt>";
        assert_eq!(find_ascii_ci(hay, 0, b"</script"), Some(9));
        assert_eq!(find_ascii_ci(hay, 10, b"</script"), None);
        assert_eq!(find_ascii_ci(hay, hay.len(), b"x"), None);
        assert_eq!(find_ascii_ci(hay, hay.len() + 1, b"x"), None);
        assert_eq!(find_ascii_ci(hay, 3, b""), Some(3));
        assert_eq!(find_ascii_ci(hay, hay.len() + 1, b""), None);
        assert_eq!(find_ascii_ci(b"ab", 0, b"abc"), None);
        // Only ASCII folds: a non-ASCII byte matches itself alone.
        assert_eq!(find_ascii_ci("É".as_bytes(), 0, "é".as_bytes()), None);
    }
}
