//! Exchange Online journal reports (monitor mode): recognising one, reading
//! its envelope part and finding the original message attached to it.
//!
//! A report is a `multipart/mixed` message with the `X-MS-Journal-Report`
//! header field. Its first part (the envelope part, `text/plain`, in any
//! transfer encoding) lists `Sender:`, `On-Behalf-Of:`, `Subject:`,
//! `Message-ID:` and one line per recipient (`To:`, `Cc:`, `Bcc:` or
//! `Recipient:`, optionally followed by `, Expanded: <group>` or
//! `, Forwarded: <address>`); a later `message/rfc822` part holds the
//! original "unaltered" (exchange-online.md §4.2, the fixtures' README).
//!
//! Why our own MIME walker instead of mail-parser: the original must come
//! out byte for byte (bare LFs, 8-bit bytes, our scan and the Message-ID
//! lookups depend on it), and only the top-level structure matters here.
//! mail-parser's decoders are still used for the envelope part's transfer
//! encoding and charset.
//!
//! Invariants: pure (no I/O, no configuration), never panics on any input,
//! bounded (the envelope part's decoded size and the number of recipients
//! are capped; every loop advances). Recognition is by the header field,
//! never by how the body looks. Must never: guess recipients from the
//! original's To/Cc, or normalise the original's bytes.

use std::borrow::Cow;
use std::fmt;

use crate::message::headers;

/// The header field that marks a journal report once it has left Exchange's
/// transport (inside transport it is `X-MS-Exchange-Organization-Journal-Report`).
pub const MARKER: &str = "X-MS-Journal-Report";

/// Largest envelope part (decoded) we read: a report for a message to a
/// very large distribution group lists every member, one short line each.
pub const MAX_ENVELOPE_PART: usize = 8 << 20;
/// Most recipient lines we accept in one report.
pub const MAX_RECIPIENTS: usize = 100_000;

/// How a recipient line names the recipient (the report's field name).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecipientKind {
    To,
    Cc,
    Bcc,
    /// A basic `Recipient:` line: Exchange could not verify the addressing.
    Recipient,
}

impl RecipientKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RecipientKind::To => "to",
            RecipientKind::Cc => "cc",
            RecipientKind::Bcc => "bcc",
            RecipientKind::Recipient => "recipient",
        }
    }
}

/// One recipient line of the envelope part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalRecipient {
    /// The mailbox the copy went to (what remediation acts on).
    pub address: String,
    pub kind: RecipientKind,
    /// The group an `Expanded:` note names (not a mailbox to act on).
    pub expanded_from: Option<String>,
    /// The address a `Forwarded:` note names (not where the copy went).
    pub forwarded_from: Option<String>,
}

impl JournalRecipient {
    /// The address's domain in its ASCII (A-label) form, lower case; the
    /// domain as written when it is not a valid IDN.
    pub fn domain_ascii(&self) -> Option<String> {
        domain_ascii(&self.address)
    }
}

/// The domain of `address` in A-label form, lower case.
pub fn domain_ascii(address: &str) -> Option<String> {
    let (_, domain) = address.rsplit_once('@')?;
    let domain = domain.trim_end_matches('.');
    if domain.is_empty() {
        return None;
    }
    Some(
        idna::domain_to_ascii(domain)
            .map(|d| d.to_lowercase())
            .unwrap_or_else(|_| domain.to_lowercase()),
    )
}

/// The envelope part of a report: the original message's real envelope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalEnvelope {
    /// `Sender:`; empty for the null sender.
    pub sender: String,
    pub on_behalf_of: Option<String>,
    /// Decoded to Unicode.
    pub subject: String,
    /// With its angle brackets, as Exchange stores `internetMessageId`.
    pub message_id: String,
    /// In line order.
    pub recipients: Vec<JournalRecipient>,
}

/// A parsed journal report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalReport<'a> {
    /// The report's own `X-MS-Exchange-CrossTenant-Id` (lower case, no
    /// braces), which attributes it to a tenant; not the original's.
    pub tenant_id: Option<String>,
    /// The report's own `X-MS-Exchange-CrossTenant-Network-Message-Id`.
    pub network_message_id: Option<String>,
    pub envelope: JournalEnvelope,
    /// The attached original, exactly as attached (decoded only if the part
    /// had a base64 or quoted-printable transfer encoding).
    pub original: Cow<'a, [u8]>,
}

impl JournalReport<'_> {
    /// The original's `Message-ID` header field (angle brackets kept).
    pub fn original_message_id(&self) -> Option<String> {
        headers::values(&self.original, "Message-ID").into_iter().next()
    }

    /// The original's Network-Message-Id (EXO's id for one message in its
    /// transport), from its CrossTenant or Organization field.
    pub fn original_network_message_id(&self) -> Option<String> {
        original_network_message_id(&self.original)
    }
}

/// EXO's Network-Message-Id of a message, if it carries one.
pub fn original_network_message_id(raw: &[u8]) -> Option<String> {
    [
        "X-MS-Exchange-CrossTenant-Network-Message-Id",
        "X-MS-Exchange-Organization-Network-Message-Id",
    ]
    .iter()
    .find_map(|name| headers::values(raw, name).into_iter().find(|v| !v.is_empty()))
}

/// Why a report could not be read. Every variant but `NotAReport` is a
/// report that must be kept and counted, never dropped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JournalError {
    #[error("no {MARKER} header field: not a journal report")]
    NotAReport,
    #[error("the report is not multipart (Content-Type {0})")]
    NotMultipart(String),
    #[error("the report's Content-Type has no boundary parameter")]
    NoBoundary,
    #[error("the report has no envelope part")]
    NoEnvelopePart,
    #[error("the envelope part cannot be decoded ({0})")]
    EnvelopeEncoding(&'static str),
    #[error("the envelope part is larger than {MAX_ENVELOPE_PART} bytes")]
    EnvelopeTooLarge,
    #[error("the envelope part has no {0} line")]
    Missing(&'static str),
    #[error("the envelope part lists more than {MAX_RECIPIENTS} recipients")]
    TooManyRecipients,
    #[error("the envelope part has a malformed {field} line: {detail}")]
    Malformed { field: &'static str, detail: String },
    #[error("no message/rfc822 part holds the original")]
    NoOriginal,
    #[error("the report ends inside a part (no closing boundary)")]
    Truncated,
}

impl JournalError {
    /// A short stable label (metrics, logs).
    pub fn label(&self) -> &'static str {
        match self {
            JournalError::NotAReport => "not-a-report",
            JournalError::NotMultipart(_) | JournalError::NoBoundary => "not-multipart",
            JournalError::NoEnvelopePart => "no-envelope",
            JournalError::EnvelopeEncoding(_) => "envelope-encoding",
            JournalError::EnvelopeTooLarge | JournalError::TooManyRecipients => "too-large",
            JournalError::Missing(_) | JournalError::Malformed { .. } => "envelope-incomplete",
            JournalError::NoOriginal => "no-original",
            JournalError::Truncated => "truncated",
        }
    }
}

/// True when `raw`'s header carries the journal report marker.
pub fn is_report(raw: &[u8]) -> bool {
    headers::fields(raw).any(|f| f.name_is(MARKER))
}

/// Reads a journal report.
pub fn parse(raw: &[u8]) -> Result<JournalReport<'_>, JournalError> {
    if !is_report(raw) {
        return Err(JournalError::NotAReport);
    }
    let content_type = headers::values(raw, "Content-Type")
        .into_iter()
        .next()
        .unwrap_or_default();
    let (mime, params) = split_content_type(&content_type);
    if !mime.starts_with("multipart/") {
        return Err(JournalError::NotMultipart(truncate(&content_type)));
    }
    let boundary = param(&params, "boundary").ok_or(JournalError::NoBoundary)?;
    if boundary.is_empty() || boundary.len() > 200 {
        return Err(JournalError::NoBoundary);
    }
    let body_start = headers::header_len(raw);
    let parts = split_parts(raw, body_start, boundary.as_bytes());

    // A first part cut short still has an envelope to read; whether the
    // report is usable is decided by what is missing from it.
    let first = match parts.first() {
        None => return Err(JournalError::NoEnvelopePart),
        Some(Ok(p) | Err(p)) => *p,
    };
    let envelope = read_envelope(raw, first)?;

    let mut original = None;
    for part in &parts[1..] {
        let (part, complete) = match part {
            Ok(p) => (*p, true),
            Err(p) => (*p, false),
        };
        let part_raw = &raw[part.start..part.end];
        let ctype = headers::values(part_raw, "Content-Type")
            .into_iter()
            .next()
            .unwrap_or_default();
        let (mime, _) = split_content_type(&ctype);
        if mime != "message/rfc822" {
            continue;
        }
        if !complete {
            return Err(JournalError::Truncated);
        }
        let body = &part_raw[part_header_len(part_raw)..];
        let cte = transfer_encoding(part_raw);
        original = Some(match cte.as_str() {
            "base64" => Cow::Owned(mail_parser::decoders::base64::base64_decode(body).ok_or(JournalError::NoOriginal)?),
            "quoted-printable" => Cow::Owned(
                mail_parser::decoders::quoted_printable::quoted_printable_decode(body)
                    .ok_or(JournalError::NoOriginal)?,
            ),
            _ => Cow::Borrowed(body),
        });
        break;
    }
    let original = original.ok_or(JournalError::NoOriginal)?;
    if original.is_empty() {
        return Err(JournalError::NoOriginal);
    }
    Ok(JournalReport {
        tenant_id: headers::values(raw, "X-MS-Exchange-CrossTenant-Id")
            .into_iter()
            .next()
            .map(|v| v.trim_matches(|c| c == '{' || c == '}').to_lowercase()),
        network_message_id: headers::values(raw, "X-MS-Exchange-CrossTenant-Network-Message-Id")
            .into_iter()
            .next(),
        envelope,
        original,
    })
}

/// A body part's byte range (its header included), without the line break
/// that belongs to the next delimiter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Part {
    start: usize,
    end: usize,
}

/// The parts between delimiter lines: `Ok` when a delimiter (or the close
/// delimiter) ends the part, `Err` for a last part the input cuts short.
fn split_parts(raw: &[u8], from: usize, boundary: &[u8]) -> Vec<Result<Part, Part>> {
    let mut parts = Vec::new();
    let mut current: Option<usize> = None;
    let mut pos = from;
    while pos < raw.len() {
        let end = match raw[pos..].iter().position(|&b| b == b'\n') {
            Some(i) => pos + i + 1,
            None => raw.len(),
        };
        let line = &raw[pos..end];
        if let Some(close) = delimiter(line, boundary) {
            if let Some(start) = current.take() {
                // The CRLF (or LF) before the delimiter belongs to it (RFC 2046 §5.1.1).
                let mut part_end = pos;
                if part_end > start && raw[part_end - 1] == b'\n' {
                    part_end -= 1;
                    if part_end > start && raw[part_end - 1] == b'\r' {
                        part_end -= 1;
                    }
                }
                parts.push(Ok(Part {
                    start,
                    end: part_end.max(start),
                }));
            }
            if close {
                return parts;
            }
            current = Some(end);
        }
        pos = end;
    }
    if let Some(start) = current {
        parts.push(Err(Part { start, end: raw.len() }));
    }
    parts
}

/// `Some(is_close)` when `line` is `--boundary` or `--boundary--`
/// (trailing white space allowed).
fn delimiter(line: &[u8], boundary: &[u8]) -> Option<bool> {
    let rest = line.strip_prefix(b"--")?.strip_prefix(boundary)?;
    let (close, rest) = match rest.strip_prefix(b"--") {
        Some(r) => (true, r),
        None => (false, rest),
    };
    rest.iter()
        .all(|b| matches!(b, b' ' | b'\t' | b'\r' | b'\n'))
        .then_some(close)
}

/// Where a part's body starts: after its header and blank line (a part
/// may have no header at all: then its first line is blank).
fn part_header_len(part: &[u8]) -> usize {
    if part.starts_with(b"\r\n") {
        2
    } else if part.starts_with(b"\n") {
        1
    } else {
        headers::header_len(part)
    }
}

fn transfer_encoding(part: &[u8]) -> String {
    headers::values(part, "Content-Transfer-Encoding")
        .into_iter()
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase()
}

/// The envelope part decoded to text, then its lines read.
fn read_envelope(raw: &[u8], part: Part) -> Result<JournalEnvelope, JournalError> {
    let part_raw = &raw[part.start..part.end];
    let header_len = part_header_len(part_raw);
    let body = &part_raw[header_len..];
    let ctype = headers::values(part_raw, "Content-Type")
        .into_iter()
        .next()
        .unwrap_or_default();
    let (mime, params) = split_content_type(&ctype);
    if !(mime.is_empty() || mime.starts_with("text/")) {
        return Err(JournalError::NoEnvelopePart);
    }
    if body.len() > MAX_ENVELOPE_PART * 2 {
        return Err(JournalError::EnvelopeTooLarge);
    }
    let decoded: Cow<'_, [u8]> = match transfer_encoding(part_raw).as_str() {
        "base64" => Cow::Owned(
            mail_parser::decoders::base64::base64_decode(body).ok_or(JournalError::EnvelopeEncoding("base64"))?,
        ),
        "quoted-printable" => Cow::Owned(
            mail_parser::decoders::quoted_printable::quoted_printable_decode(body)
                .ok_or(JournalError::EnvelopeEncoding("quoted-printable"))?,
        ),
        _ => Cow::Borrowed(body),
    };
    if decoded.len() > MAX_ENVELOPE_PART {
        return Err(JournalError::EnvelopeTooLarge);
    }
    let text = decode_charset(&decoded, param(&params, "charset").as_deref());
    envelope_from_text(&text)
}

fn decode_charset(bytes: &[u8], charset: Option<&str>) -> String {
    match charset.map(str::to_ascii_lowercase).as_deref() {
        None | Some("us-ascii" | "utf-8" | "utf8" | "ascii") => String::from_utf8_lossy(bytes).into_owned(),
        Some(other) => match mail_parser::decoders::charsets::map::charset_decoder(other.as_bytes()) {
            Some(decoder) => decoder(bytes),
            None => String::from_utf8_lossy(bytes).into_owned(),
        },
    }
}

/// The field lines of the envelope part (MS-XJRNL Envelope-Part). Unknown
/// fields (`Label:`, `Mailbox:`, `SentUtc:`, ...) are ignored; names are
/// matched without regard to case (`Message-ID` / `Message-Id`).
fn envelope_from_text(text: &str) -> Result<JournalEnvelope, JournalError> {
    let mut sender = None;
    let mut on_behalf_of = None;
    let mut subject = None;
    let mut message_id = None;
    let mut recipients = Vec::new();
    for line in text.split('\n') {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.is_empty() || line.starts_with([' ', '\t']) {
            continue;
        }
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.strip_prefix(' ').unwrap_or(value);
        let kind = match name.to_ascii_lowercase().as_str() {
            "sender" => {
                sender.get_or_insert_with(|| address(value));
                continue;
            }
            "on-behalf-of" => {
                on_behalf_of.get_or_insert_with(|| address(value));
                continue;
            }
            "subject" => {
                subject.get_or_insert_with(|| decode_words(value));
                continue;
            }
            "message-id" => {
                message_id.get_or_insert_with(|| value.trim().to_string());
                continue;
            }
            "to" => RecipientKind::To,
            "cc" => RecipientKind::Cc,
            "bcc" => RecipientKind::Bcc,
            "recipient" => RecipientKind::Recipient,
            _ => continue,
        };
        if recipients.len() == MAX_RECIPIENTS {
            return Err(JournalError::TooManyRecipients);
        }
        recipients.push(recipient(kind, value)?);
    }
    let sender = sender.ok_or(JournalError::Missing("Sender"))?;
    let subject = subject.ok_or(JournalError::Missing("Subject"))?;
    let message_id = message_id
        .filter(|m| !m.is_empty())
        .ok_or(JournalError::Missing("Message-ID"))?;
    if recipients.is_empty() {
        return Err(JournalError::Missing("recipient"));
    }
    Ok(JournalEnvelope {
        sender,
        on_behalf_of: on_behalf_of.filter(|a| !a.is_empty()),
        subject,
        message_id,
        recipients,
    })
}

/// `addr [, Expanded: group]` or `addr [, Forwarded: source]` (the 2007
/// grammar allows the note without the comma).
fn recipient(kind: RecipientKind, value: &str) -> Result<JournalRecipient, JournalError> {
    let lower = value.to_ascii_lowercase();
    let mut note = None;
    for (word, is_expanded) in [("expanded:", true), ("forwarded:", false)] {
        if let Some(at) = lower.rfind(word) {
            let before = value[..at].trim_end();
            // Only a note when it follows the address, after "," or white space.
            if at > 0 && value[..at].ends_with([' ', '\t', ',']) {
                let before = before.strip_suffix(',').unwrap_or(before);
                if note
                    .as_ref()
                    .is_none_or(|(b, _, _): &(&str, bool, &str)| b.len() > before.len())
                {
                    note = Some((before, is_expanded, &value[at + word.len()..]));
                }
            }
        }
    }
    let (addr, expanded_from, forwarded_from) = match note {
        Some((addr, true, src)) => (addr, Some(address(src)), None),
        Some((addr, false, src)) => (addr, None, Some(address(src))),
        None => (value, None, None),
    };
    let address = address(addr);
    if address.is_empty() || !address.contains('@') {
        return Err(JournalError::Malformed {
            field: kind_name(kind),
            detail: truncate(value),
        });
    }
    Ok(JournalRecipient {
        address,
        kind,
        expanded_from: expanded_from.filter(|a| !a.is_empty()),
        forwarded_from: forwarded_from.filter(|a| !a.is_empty()),
    })
}

fn kind_name(kind: RecipientKind) -> &'static str {
    match kind {
        RecipientKind::To => "To",
        RecipientKind::Cc => "Cc",
        RecipientKind::Bcc => "Bcc",
        RecipientKind::Recipient => "Recipient",
    }
}

/// An address as written, without white space or angle brackets.
fn address(value: &str) -> String {
    let v = value.trim();
    let v = v.strip_prefix('<').and_then(|v| v.strip_suffix('>')).unwrap_or(v);
    v.trim().to_string()
}

/// Decodes RFC 2047 encoded words if the subject holds any (the envelope
/// part normally carries the subject in its own charset instead).
fn decode_words(value: &str) -> String {
    let value = value.trim_end();
    if !value.contains("=?") {
        return value.to_string();
    }
    let mut fake = Vec::with_capacity(value.len() + 16);
    fake.extend_from_slice(b"Subject: ");
    fake.extend_from_slice(value.as_bytes());
    fake.extend_from_slice(b"\r\n\r\n");
    mail_parser::MessageParser::default()
        .parse_headers(&fake)
        .and_then(|m| m.subject().map(str::to_string))
        .unwrap_or_else(|| value.to_string())
}

/// `type/subtype` (lower case) and the raw parameter list.
fn split_content_type(value: &str) -> (String, String) {
    match value.split_once(';') {
        Some((mime, params)) => (mime.trim().to_ascii_lowercase(), params.to_string()),
        None => (value.trim().to_ascii_lowercase(), String::new()),
    }
}

/// A Content-Type parameter (quoted or token), name matched without case.
fn param(params: &str, name: &str) -> Option<String> {
    let mut rest = params;
    loop {
        rest = rest.trim_start_matches([' ', '\t', ';', '\r', '\n']);
        if rest.is_empty() {
            return None;
        }
        let eq = rest.find('=')?;
        let key = rest[..eq].trim();
        let after = &rest[eq + 1..];
        let after = after.trim_start();
        let (value, next) = if let Some(q) = after.strip_prefix('"') {
            let mut out = String::new();
            let mut chars = q.char_indices();
            let mut end = q.len();
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => {
                        if let Some((_, c)) = chars.next() {
                            out.push(c);
                        }
                    }
                    '"' => {
                        end = i + 1;
                        break;
                    }
                    c => out.push(c),
                }
            }
            (out, &q[end.min(q.len())..])
        } else {
            let end = after.find(';').unwrap_or(after.len());
            (after[..end].trim().to_string(), &after[end..])
        };
        if key.eq_ignore_ascii_case(name) {
            return Some(value);
        }
        rest = next;
    }
}

fn truncate(s: &str) -> String {
    s.chars().take(80).collect()
}

impl fmt::Display for RecipientKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
#[path = "journal_tests.rs"]
mod tests;
