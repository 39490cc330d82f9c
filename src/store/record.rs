//! Building an [`EventRecord`] from what the mail path knows: the envelope,
//! the session, the verdict, and the message's header (Message-ID, EXO's
//! Network-Message-Id, From, Subject, decoded with mail-parser).
//!
//! Only the header is parsed, never the body; values are cut to sane
//! lengths so one odd message cannot bloat the store.

use crate::message::auth::AuthResults;
use crate::message::envelope::{Direction, Envelope, SessionFacts};
use crate::message::headers;
use crate::message::verdict::Verdict;

use super::types::EventRecord;

/// EXO's id of a message, the same in every tenant's message trace.
pub(crate) const NETWORK_MESSAGE_ID: &str = "X-MS-Exchange-CrossTenant-Network-Message-Id";

/// Longest subject kept.
const MAX_SUBJECT: usize = 998;
/// Longest id or address kept.
const MAX_ID: usize = 512;

/// What the mail path knows about one message.
pub(crate) struct Facts<'a> {
    pub(crate) queue_id: &'a str,
    pub(crate) time: i64,
    pub(crate) node: &'a str,
    pub(crate) tenant: &'a str,
    pub(crate) direction: Direction,
    pub(crate) envelope: &'a Envelope,
    pub(crate) session: &'a SessionFacts,
    /// The message as received (at least its header).
    pub(crate) raw: &'a [u8],
    pub(crate) size: u64,
    pub(crate) verdict: Option<&'a Verdict>,
    /// What was carried out (see [`EventRecord::action`]).
    pub(crate) action: &'a str,
    /// Sender authentication's results, when the policy authenticated.
    pub(crate) auth: Option<&'a AuthResults>,
}

/// Message-ID, Network-Message-Id, From address and Subject of a header.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct HeaderFacts {
    pub(crate) message_id: String,
    pub(crate) network_message_id: String,
    pub(crate) from: String,
    pub(crate) subject: String,
}

pub(crate) fn header_facts(raw: &[u8]) -> HeaderFacts {
    let head = &raw[..headers::header_len(raw)];
    let mut facts = HeaderFacts {
        network_message_id: headers::values(head, NETWORK_MESSAGE_ID)
            .into_iter()
            .next()
            .map(|v| cut(v.trim(), MAX_ID))
            .unwrap_or_default(),
        ..HeaderFacts::default()
    };
    if let Some(m) = mail_parser::MessageParser::default().parse_headers(head) {
        facts.message_id = m.message_id().map(|v| cut(v, MAX_ID)).unwrap_or_default();
        facts.subject = m.subject().map(|v| cut(v, MAX_SUBJECT)).unwrap_or_default();
        facts.from = m
            .from()
            .and_then(|a| a.first())
            .and_then(|a| a.address())
            .map(|v| cut(v, MAX_ID))
            .unwrap_or_default();
    }
    facts
}

pub(crate) fn event(f: &Facts) -> EventRecord {
    let h = header_facts(f.raw);
    EventRecord {
        queue_id: f.queue_id.to_string(),
        time: f.time,
        node: f.node.to_string(),
        tenant: f.tenant.to_string(),
        direction: f.direction.as_str().to_string(),
        message_id: h.message_id,
        network_message_id: h.network_message_id,
        mail_from: f.envelope.mail_from.to_string(),
        recipients: f.envelope.recipients.iter().map(|r| r.address.to_string()).collect(),
        header_from: h.from,
        subject: h.subject,
        size: f.size,
        client_ip: f.session.client_ip.to_string(),
        helo: cut(&f.session.helo, 255),
        tls: f.session.tls.as_ref().map(|t| format!("{} {}", t.version, t.cipher)),
        findings: f.verdict.map(|v| v.findings.clone()).unwrap_or_default(),
        failures: f
            .verdict
            .map(|v| v.failures.iter().map(|c| format!("{}: {}", c.check, c.error)).collect())
            .unwrap_or_default(),
        score: f.verdict.map_or(0.0, |v| v.score),
        verdict: f.verdict.map(|v| v.action.as_str().to_string()).unwrap_or_default(),
        action: f.action.to_string(),
        auth: f.auth.cloned(),
        listings: f
            .verdict
            .map(|v| super::types::listings_of(&v.findings))
            .unwrap_or_default(),
    }
}

/// At most `max` bytes of `s`, on a character boundary, without control characters.
fn cut(s: &str, max: usize) -> String {
    let clean: String = s.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    if clean.len() <= max {
        return clean;
    }
    let mut end = max;
    while !clean.is_char_boundary(end) {
        end -= 1;
    }
    clean[..end].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_facts_are_decoded() {
        let raw = b"From: \"Alice\" <Alice@Example.org>\r\nSubject: =?utf-8?q?Gr=C3=BC=C3=9Fe?= aus Bern\r\n\
Message-ID: <abc@x.example>\r\nX-MS-Exchange-CrossTenant-Network-Message-Id: 1b2c-33\r\n\r\nbody Subject: no\r\n";
        let h = header_facts(raw);
        assert_eq!(h.message_id, "abc@x.example");
        assert_eq!(h.network_message_id, "1b2c-33");
        assert_eq!(h.from, "Alice@Example.org");
        assert_eq!(h.subject, "Grüße aus Bern");
    }

    #[test]
    fn a_header_without_the_fields_gives_empty_values() {
        assert_eq!(header_facts(b"X: y\r\n\r\nhello"), HeaderFacts::default());
    }
}
