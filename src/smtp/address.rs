//! The SMTP mailbox as a typed value: a local part and a domain, parsed from
//! the path a client wrote and serialised back per RFC 5321 §4.1.2 (with the
//! UTF-8 extensions of RFC 6531).
//!
//! Owns: the grammar of `Mailbox` (Dot-string or Quoted-string local part,
//! domain or address literal) and the one way an address is written anywhere:
//! [`Mailbox`]'s `Display`, which writes a Dot-string local part as it is and
//! re-quotes every other one with `\` before `"` and `\`. A decoded local part
//! is never written bare, so a quoted `"victim@evil.com> ORCPT=…"@tenant` can
//! never become a second address or a parameter on a relayed command line, and
//! a quoted `@` never changes the domain (the domain is what follows the
//! local part, not what follows the last `@`).
//!
//! Invariant: a `Mailbox` only exists for text that is a valid mailbox (or the
//! null reverse path `<>`), so its serialisation never holds a space outside
//! quotes, a control character, `<`/`>` outside quotes or a line break.
//! Must never: accept non-ASCII without the caller's SMTPUTF8 check (the
//! session refuses non-ASCII without SMTPUTF8 before it gets here), or lower
//! the case of a local part (only the domain compares case-insensitively).
//!
//! Our own code rather than a crate: smtp-proto (the command parser) unquotes
//! the local part and keeps no original; no maintained crate offers the RFC
//! 5321 `Mailbox` with RFC 6531 and a serialiser.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Longest path we accept (RFC 5321 §4.5.3.1.3 says 256 octets; a little room
/// for generous clients, and a bound for everything that logs an address).
pub(crate) const MAX_PATH: usize = 512;

/// Why a path is not a mailbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    #[error("empty local part")]
    EmptyLocal,
    #[error("invalid local part")]
    BadLocal,
    #[error("missing @domain")]
    NoDomain,
    #[error("invalid domain")]
    BadDomain,
    #[error("address longer than {MAX_PATH} octets")]
    TooLong,
}

/// One mailbox (`local@domain`), or the null reverse path.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct Mailbox {
    /// The local part, decoded (quotes and quoted-pair backslashes removed).
    local: String,
    /// The domain as written (an address literal keeps its brackets).
    domain: String,
    /// What the client wrote between the angle brackets (kept for the spool and logs of origin).
    raw: String,
}

impl Mailbox {
    /// The null reverse path `<>`.
    pub fn null() -> Mailbox {
        Mailbox::default()
    }

    pub fn is_null(&self) -> bool {
        self.domain.is_empty() && self.local.is_empty()
    }

    /// Parses the text between `<` and `>` (source route already removed).
    /// The empty text is the null path.
    pub fn parse(text: &str) -> Result<Mailbox, AddressError> {
        if text.is_empty() {
            return Ok(Mailbox::null());
        }
        if text.len() > MAX_PATH {
            return Err(AddressError::TooLong);
        }
        let (local, rest) = if text.starts_with('"') {
            let (local, used) = parse_quoted(text)?;
            (local, &text[used..])
        } else {
            let end = text.find('@').ok_or(AddressError::NoDomain)?;
            let dot = &text[..end];
            if dot.is_empty() {
                return Err(AddressError::EmptyLocal);
            }
            if !is_dot_string(dot) {
                return Err(AddressError::BadLocal);
            }
            (dot.to_string(), &text[end..])
        };
        let domain = rest.strip_prefix('@').ok_or(AddressError::NoDomain)?;
        if !is_domain(domain) {
            return Err(AddressError::BadDomain);
        }
        if local.is_empty() {
            // `""@domain` is grammatical but names nobody; refuse it like an empty Dot-string.
            return Err(AddressError::EmptyLocal);
        }
        Ok(Mailbox {
            local,
            domain: domain.to_string(),
            raw: text.to_string(),
        })
    }

    /// A mailbox from a decoded local part and a domain (re-quoted as needed).
    pub fn from_parts(local: &str, domain: &str) -> Result<Mailbox, AddressError> {
        if local.is_empty() {
            return Err(AddressError::EmptyLocal);
        }
        if local.chars().any(|c| c.is_control()) {
            return Err(AddressError::BadLocal);
        }
        if !is_domain(domain) {
            return Err(AddressError::BadDomain);
        }
        let mut m = Mailbox {
            local: local.to_string(),
            domain: domain.to_string(),
            raw: String::new(),
        };
        m.raw = m.to_string();
        if m.raw.len() > MAX_PATH {
            return Err(AddressError::TooLong);
        }
        Ok(m)
    }

    /// An address read from a header field or a report, not from a command:
    /// the wire form (`"john doe"@x`), or else a decoded `local@domain`
    /// split at its last `@` (a domain holds none) and quoted as needed.
    /// `None` for what is neither (or the empty text).
    pub fn from_text(text: &str) -> Option<Mailbox> {
        Mailbox::parse(text).ok().filter(|m| !m.is_null()).or_else(|| {
            let (local, domain) = text.rsplit_once('@')?;
            Mailbox::from_parts(local, domain).ok()
        })
    }

    /// The decoded local part (for display to people, never for a command line).
    pub fn local(&self) -> &str {
        &self.local
    }

    /// The domain as written.
    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// The domain for comparisons: lower case, without a trailing dot;
    /// `None` for the null path.
    pub fn domain_key(&self) -> Option<String> {
        let d = self.domain.trim_end_matches('.');
        (!d.is_empty()).then(|| d.to_lowercase())
    }

    /// What the client wrote.
    pub fn raw(&self) -> &str {
        &self.raw
    }

    pub fn is_ascii(&self) -> bool {
        self.local.is_ascii() && self.domain.is_ascii()
    }

    /// The local part as it must be written: a Dot-string as is, anything else quoted.
    pub fn local_wire(&self) -> String {
        if is_dot_string(&self.local) {
            return self.local.clone();
        }
        let mut out = String::with_capacity(self.local.len() + 2);
        out.push('"');
        for c in self.local.chars() {
            if c == '"' || c == '\\' {
                out.push('\\');
            }
            out.push(c);
        }
        out.push('"');
        out
    }
}

/// The mailbox as written on a command line, in a header or a log (without angle brackets).
impl fmt::Display for Mailbox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_null() {
            return Ok(());
        }
        write!(f, "{}@{}", self.local_wire(), self.domain)
    }
}

/// Parses the wire form (what `Display` writes), like [`Mailbox::parse`].
impl std::str::FromStr for Mailbox {
    type Err = AddressError;
    fn from_str(s: &str) -> Result<Mailbox, AddressError> {
        Mailbox::parse(s)
    }
}

impl Serialize for Mailbox {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.raw)
    }
}

impl<'de> Deserialize<'de> for Mailbox {
    /// Reads what `Serialize` wrote. Queue files written before the typed
    /// mailbox hold the decoded address (`local@domain` with the local part
    /// unquoted): what does not parse as a mailbox is read that way, split at
    /// the last `@` (a domain holds none) and re-quoted.
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Mailbox, D::Error> {
        let text = String::deserialize(d)?;
        if let Ok(m) = Mailbox::parse(&text) {
            return Ok(m);
        }
        let (local, domain) = text
            .rsplit_once('@')
            .ok_or_else(|| serde::de::Error::custom(format!("not an address: {text:?}")))?;
        Mailbox::from_parts(local, domain).map_err(|e| serde::de::Error::custom(format!("{e}: {text:?}")))
    }
}

/// `atext` of RFC 5322 plus UTF-8 (RFC 6531).
fn is_atext(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~".contains(c) || (!c.is_ascii() && !c.is_control())
}

/// `Dot-string = Atom *("." Atom)`.
pub(crate) fn is_dot_string(s: &str) -> bool {
    !s.is_empty() && s.split('.').all(|atom| !atom.is_empty() && atom.chars().all(is_atext))
}

/// Parses a Quoted-string at the start of `s`: the decoded content and the bytes used.
fn parse_quoted(s: &str) -> Result<(String, usize), AddressError> {
    let mut out = String::new();
    let mut chars = s.char_indices().skip(1);
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Ok((out, i + 1)),
            '\\' => match chars.next() {
                // quoted-pairSMTP = %d92 %d32-126
                Some((_, q)) if (' '..='~').contains(&q) => out.push(q),
                _ => return Err(AddressError::BadLocal),
            },
            // qtextSMTP = %d32-33 / %d35-91 / %d93-126, and UTF-8 (RFC 6531)
            ' '..='~' => out.push(c),
            c if !c.is_ascii() && !c.is_control() => out.push(c),
            _ => return Err(AddressError::BadLocal),
        }
    }
    Err(AddressError::BadLocal)
}

/// `Domain` (LDH labels, or U-labels under RFC 6531) or an address literal.
fn is_domain(d: &str) -> bool {
    if d.is_empty() || d.len() > 255 {
        return false;
    }
    if let Some(inner) = d.strip_prefix('[') {
        let Some(inner) = inner.strip_suffix(']') else {
            return false;
        };
        return is_address_literal(inner);
    }
    // One trailing dot (a fully qualified name) is tolerated, as MTAs do.
    let d = d.strip_suffix('.').unwrap_or(d);
    !d.is_empty()
        && d.split('.').all(|label| {
            let ok_char = |c: char| c.is_ascii_alphanumeric() || c == '-' || (!c.is_ascii() && c.is_alphanumeric());
            !label.is_empty()
                && label.len() <= 63
                && label.chars().all(ok_char)
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

fn is_address_literal(inner: &str) -> bool {
    if let Some(v6) = inner.strip_prefix("IPv6:").or_else(|| inner.strip_prefix("ipv6:")) {
        return v6.parse::<std::net::Ipv6Addr>().is_ok();
    }
    if inner.parse::<std::net::Ipv4Addr>().is_ok() {
        return true;
    }
    // General-address-literal = Standardized-tag ":" 1*dcontent
    match inner.split_once(':') {
        Some((tag, content)) => {
            !tag.is_empty()
                && tag.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                && !content.is_empty()
                && content
                    .chars()
                    .all(|c| ('!'..='Z').contains(&c) || ('^'..='~').contains(&c))
        }
        None => false,
    }
}

/// Writes `value` as RFC 6533 `utf-8-addr-xtext`: printable ASCII but `+`,
/// `=` and `\` as is, everything else as `\x{HEX}`. For DSN fields that must
/// stay 7-bit and single-line whatever the address holds.
pub(crate) fn utf8_addr_xtext(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        if ('!'..='~').contains(&c) && !matches!(c, '+' | '=' | '\\') {
            out.push(c);
        } else {
            out.push_str(&format!("\\x{{{:X}}}", c as u32));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wire(s: &str) -> String {
        Mailbox::parse(s).unwrap().to_string()
    }

    #[test]
    fn dot_strings_are_written_as_they_came() {
        assert_eq!(wire("john.doe@Contoso.COM"), "john.doe@Contoso.COM");
        assert_eq!(wire("a+tag=x@b.example"), "a+tag=x@b.example");
        assert_eq!(wire("us\u{e9}r@b\u{fc}cher.example"), "us\u{e9}r@b\u{fc}cher.example");
        assert_eq!(Mailbox::parse("").unwrap(), Mailbox::null());
        assert_eq!(Mailbox::null().to_string(), "");
    }

    #[test]
    fn quoted_local_parts_stay_quoted_and_keep_their_domain() {
        let m = Mailbox::parse("\"victim@evil.com> ORCPT=rfc822;x\"@tenant.example").unwrap();
        assert_eq!(m.local(), "victim@evil.com> ORCPT=rfc822;x");
        assert_eq!(m.domain(), "tenant.example");
        assert_eq!(m.to_string(), "\"victim@evil.com> ORCPT=rfc822;x\"@tenant.example");
        assert_eq!(wire("\"john doe\"@x.example"), "\"john doe\"@x.example");
        assert_eq!(wire("\"a\\\"b\\\\c\"@x.example"), "\"a\\\"b\\\\c\"@x.example");
        // Needless quotes and quoted pairs are dropped: the same mailbox.
        assert_eq!(wire("\"john\"@x.example"), "john@x.example");
        assert_eq!(wire("\"j\\ohn\"@x.example"), "john@x.example");
        let m = Mailbox::parse("\"x@tenant.example\"@evil.example").unwrap();
        assert_eq!(m.domain_key().as_deref(), Some("evil.example"));
        assert_eq!(wire("\"a..b\"@x.example"), "\"a..b\"@x.example");
        assert_eq!(wire("\".a\"@x.example"), "\".a\"@x.example");
    }

    #[test]
    fn what_is_no_mailbox_is_refused() {
        for bad in [
            "john doe@x.example",
            "a..b@x.example",
            ".a@x.example",
            "a.@x.example",
            "a@b@x.example",
            "\"unterminated@x.example",
            "\"a\"b@x.example",
            "\"a\r\n\"@x.example",
            "\"a\\\n\"@x.example",
            "a@",
            "@x.example",
            "postmaster",
            "a@-x.example",
            "a@x..example",
            "a@x.example..",
            "a@x.example>",
            "a@[1.2.3]",
            "a@[IPv6:nonsense]",
            "a<b@x.example",
            "\"\"@x.example",
        ] {
            assert!(Mailbox::parse(bad).is_err(), "{bad:?} must be refused");
        }
        assert!(Mailbox::parse("a@[192.0.2.1]").is_ok());
        assert_eq!(
            Mailbox::parse("a@X.example.").unwrap().domain_key().as_deref(),
            Some("x.example")
        );
        assert!(Mailbox::parse("a@[IPv6:2001:db8::1]").is_ok());
        assert!(Mailbox::parse(&format!("{}@x.example", "a".repeat(600))).is_err());
    }

    #[test]
    fn from_parts_quotes_what_needs_quoting() {
        let m = Mailbox::from_parts("victim@evil.com> NOTIFY=NEVER", "tenant.example").unwrap();
        assert_eq!(m.to_string(), "\"victim@evil.com> NOTIFY=NEVER\"@tenant.example");
        assert_eq!(Mailbox::parse(&m.to_string()).unwrap().local(), m.local());
        assert!(Mailbox::from_parts("a\r\nb", "x.example").is_err());
    }

    #[test]
    fn the_spool_keeps_what_came_and_reads_old_decoded_files() {
        let m = Mailbox::parse("\"john\"@x.example").unwrap();
        let json = serde_json::to_string(&m).unwrap();
        assert_eq!(json, r#""\"john\"@x.example""#);
        assert_eq!(serde_json::from_str::<Mailbox>(&json).unwrap(), m);
        // A file from before: the local part was stored decoded.
        let old: Mailbox = serde_json::from_str(r#""victim@evil.com> ORCPT=rfc822;x@tenant.example""#).unwrap();
        assert_eq!(old.domain(), "tenant.example");
        assert_eq!(old.to_string(), "\"victim@evil.com> ORCPT=rfc822;x\"@tenant.example");
        let null: Mailbox = serde_json::from_str(r#""""#).unwrap();
        assert!(null.is_null());
    }

    #[test]
    fn utf8_addr_xtext_is_seven_bit() {
        assert_eq!(utf8_addr_xtext("b\u{f8}b@x.example"), "b\\x{F8}b@x.example");
        assert_eq!(utf8_addr_xtext("a+b c\r\n"), "a\\x{2B}b\\x{20}c\\x{D}\\x{A}");
    }
}
