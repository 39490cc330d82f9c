//! Delivery status notifications (RFC 3464) for recipients that failed
//! permanently or expired, built with mail-builder as new messages.
//!
//! The DSN parameters kept on the envelope are honoured: `NOTIFY=NEVER` (or a
//! NOTIFY without FAILURE/DELAY) suppresses the report for that recipient,
//! `RET=FULL` attaches the whole message (only where the tenant's
//! `[tenant.dsn] return_content = "full"` allows it, and only up to its
//! `return_limit`) and `RET=HDRS` (the default) only its header, `ENVID` and
//! `ORCPT` are echoed. No DSN is ever made for the null sender or for a DSN.
//!
//! What it must never do: make the caller read a whole large message. Whether
//! the DSN returns the message whole is decided from its size alone
//! ([`returns_full`]), before anything is read.

use mail_builder::MessageBuilder;
use mail_builder::headers::content_type::ContentType;
use mail_builder::headers::text::Text;
use mail_builder::mime::{BodyPart, MimePart};

use crate::config::tenant::{DsnPolicy, ReturnContent};
use crate::message::envelope::{DsnReturn, Envelope, Mailbox};
use crate::message::headers::header_len;
use crate::smtp::address::utf8_addr_xtext;
use crate::smtp::reply::Reply;

/// One recipient to report on.
#[derive(Debug, Clone)]
pub(crate) struct Failed {
    pub(crate) index: usize,
    pub(crate) reply: Reply,
    /// The server that gave the reply, if any.
    pub(crate) remote: Option<String>,
    /// Whether the message expired in the queue (Action: failed, after delays).
    pub(crate) expired: bool,
}

/// Whether a DSN should be made for this recipient at all.
pub(crate) fn wanted(envelope: &Envelope, index: usize) -> bool {
    if envelope.is_null_sender() {
        return false;
    }
    match envelope.recipients.get(index).and_then(|r| r.notify) {
        None => true,
        Some(n) => !n.never && n.failure,
    }
}

/// Whether a DSN returns the message whole: the sender asked (`RET=FULL`),
/// the tenant allows it, and the message (`size` bytes, the larger of its
/// received and stamped sizes) is within the tenant's `return_limit`.
/// Otherwise only its header goes back.
pub(crate) fn returns_full(envelope: &Envelope, policy: &DsnPolicy, size: u64) -> bool {
    envelope.ret == Some(DsnReturn::Full) && policy.return_content == ReturnContent::Full && size <= policy.return_limit
}

/// Builds the DSN message bytes for `failed` recipients of the message
/// `original` (stamped bytes: the whole message when `full`, else at least
/// its header section), or `None` when no recipient wants one.
pub(crate) fn build(
    hostname: &str,
    envelope: &Envelope,
    original: &[u8],
    failed: &[Failed],
    received: i64,
    now: i64,
    full: bool,
) -> Option<Vec<u8>> {
    let failed: Vec<&Failed> = failed.iter().filter(|f| wanted(envelope, f.index)).collect();
    if failed.is_empty() {
        return None;
    }
    let reporting = format!("MAILER-DAEMON@{hostname}");

    let mut human = String::from("This is the mail gateway at ");
    human.push_str(hostname);
    human.push_str(".\r\n\r\nYour message could not be delivered to the following recipients:\r\n\r\n");
    for f in &failed {
        let rcpt = &envelope.recipients[f.index].address;
        let why = if f.expired {
            "delivery kept failing until the message expired"
        } else {
            "the receiving server refused it"
        };
        human.push_str(&format!("  <{rcpt}>: {why}\r\n    {}\r\n", f.reply.one_line()));
    }

    let mut status = format!("Reporting-MTA: dns; {hostname}\r\n");
    if let Some(envid) = &envelope.envid {
        // Decoded when that is printable ASCII, else the xtext as received:
        // the field stays 7-bit and on one line whatever the client sent.
        status.push_str(&format!("Original-Envelope-Id: {}\r\n", envid.readable()));
    }
    status.push_str(&format!(
        "Arrival-Date: {}\r\n",
        mail_builder::headers::date::Date::new(received).to_rfc822()
    ));
    for f in &failed {
        let rcpt = &envelope.recipients[f.index];
        status.push_str("\r\n");
        if let Some(orcpt) = &rcpt.orcpt {
            status.push_str(&format!("Original-Recipient: {}\r\n", orcpt.for_report()));
        }
        let (class, subject, detail) = if f.reply.esc.0 == 0 {
            (if f.reply.code >= 500 { 5 } else { 4 }, 0, 0)
        } else {
            f.reply.esc
        };
        status.push_str(&format!("Final-Recipient: {}\r\n", final_recipient(&rcpt.address)));
        status.push_str("Action: failed\r\n");
        status.push_str(&format!("Status: {class}.{subject}.{detail}\r\n"));
        if let Some(remote) = &f.remote {
            status.push_str(&format!(
                "Remote-MTA: dns; {}\r\n",
                remote.split('[').next().unwrap_or(remote)
            ));
        }
        status.push_str(&format!("Diagnostic-Code: smtp; {}\r\n", f.reply.one_line()));
        status.push_str(&format!(
            "Last-Attempt-Date: {}\r\n",
            mail_builder::headers::date::Date::new(now).to_rfc822()
        ));
    }

    let full = full && carries_as_8bit(original);
    let returned = if full {
        MimePart::new("message/rfc822", BodyPart::Binary(original.into()))
            .transfer_encoding("8bit")
            .inline()
    } else {
        let header = &original[..header_len(original)];
        MimePart::new("text/rfc822-headers", BodyPart::Binary(header.into()))
            .transfer_encoding("8bit")
            .inline()
    };

    let report = MimePart::new(
        ContentType::new("multipart/report").attribute("report-type", "delivery-status"),
        vec![
            MimePart::new("text/plain", human),
            MimePart::new("message/delivery-status", BodyPart::Binary(status.into_bytes().into()))
                .transfer_encoding("8bit")
                .inline(),
            returned,
        ],
    );
    let sender = envelope.mail_from.to_string();
    let message = MessageBuilder::new()
        .from(("Mail Delivery System", reporting.as_str()))
        .to(sender.as_str())
        .subject("Undelivered Mail Returned to Sender")
        .header("Auto-Submitted", Text::new("auto-replied"))
        .date(now)
        .message_id(format!("{}.dsn@{hostname}", crate::spool::new_id()))
        .body(report);
    message.write_to_vec().ok()
}

/// `Final-Recipient`: the mailbox as written on the wire (a quoted local part
/// stays quoted), under RFC 6533's `utf-8` type with `\x{..}` escapes when
/// it is not ASCII, so the field is 7-bit.
fn final_recipient(address: &Mailbox) -> String {
    let wire = address.to_string();
    if wire.is_ascii() {
        format!("rfc822; {wire}")
    } else {
        format!("utf-8; {}", utf8_addr_xtext(&wire))
    }
}

/// An original can be attached verbatim as 8bit when it has CRLF line endings
/// only and no NUL bytes.
fn carries_as_8bit(original: &[u8]) -> bool {
    let mut prev = 0u8;
    for &b in original {
        if b == 0 || (b == b'\n' && prev != b'\r') {
            return false;
        }
        prev = b;
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::envelope::{Notify, Orcpt, Recipient, Xtext};
    use mail_parser::{MessageParser, MimeHeaders};

    fn envelope(notify: Option<Notify>, ret: Option<DsnReturn>) -> Envelope {
        Envelope {
            mail_from: Mailbox::parse("alice@contoso.com").unwrap(),
            recipients: vec![Recipient {
                address: Mailbox::parse("bob@example.org").unwrap(),
                orcpt: Orcpt::parse("rfc822;bob@example.org", false),
                notify,
            }],
            ret,
            envid: Xtext::parse("ENV42"),
            ..Envelope::default()
        }
    }

    fn failed() -> Vec<Failed> {
        vec![Failed {
            index: 0,
            reply: Reply::new(550, (5, 1, 1), "no such user"),
            remote: Some("mx.example.org[192.0.2.1]:25".into()),
            expired: false,
        }]
    }

    const ORIGINAL: &[u8] = b"From: alice@contoso.com\r\nSubject: hi\r\n\r\nsecret body\r\n";

    #[test]
    fn a_failure_report_is_a_multipart_report_with_headers_only_by_default() {
        let e = envelope(None, None);
        let full = returns_full(&e, &allowing_full(), ORIGINAL.len() as u64);
        assert!(!full, "without RET=FULL");
        let bytes = build("gw.example.net", &e, ORIGINAL, &failed(), 0, 0, full).unwrap();
        let msg = MessageParser::default().parse(&bytes[..]).unwrap();
        let ct = msg.root_part().content_type().unwrap();
        assert_eq!((ct.ctype(), ct.subtype()), ("multipart", Some("report")));
        assert_eq!(ct.attribute("report-type"), Some("delivery-status"));
        let text = String::from_utf8_lossy(&bytes);
        assert!(text.contains("Final-Recipient: rfc822; bob@example.org"));
        assert!(text.contains("Status: 5.1.1"));
        assert!(text.contains("Original-Envelope-Id: ENV42"));
        assert!(text.contains("Original-Recipient: rfc822;bob@example.org"));
        assert!(text.contains("Subject: hi"));
        assert!(!text.contains("secret body"), "RET=HDRS must not return the body");
    }

    #[test]
    fn reported_addresses_are_the_mailboxes_never_their_decoded_text() {
        let mut e = envelope(None, None);
        e.recipients[0].address = Mailbox::parse("\"victim@evil.com> NOTIFY=NEVER\"@example.org").unwrap();
        e.recipients[0].orcpt = Orcpt::parse("rfc822;b+C3+B8b@example.org", false);
        e.envid = Xtext::parse("ENV+0D+0ABcc:+20x");
        let bytes = build("gw", &e, ORIGINAL, &failed(), 0, 0, false).unwrap();
        let text = String::from_utf8_lossy(&bytes);
        assert!(
            text.contains("Final-Recipient: rfc822; \"victim@evil.com> NOTIFY=NEVER\"@example.org\r\n"),
            "{text}"
        );
        assert!(
            text.contains("Original-Recipient: utf-8;b\\x{F8}b@example.org\r\n"),
            "{text}"
        );
        assert!(text.contains("Original-Envelope-Id: ENV+0D+0ABcc:+20x\r\n"), "{text}");
        let mut e = envelope(None, None);
        e.recipients[0].address = Mailbox::parse("j\u{f6}rg@example.org").unwrap();
        let bytes = build("gw", &e, ORIGINAL, &failed(), 0, 0, false).unwrap();
        assert!(String::from_utf8_lossy(&bytes).contains("Final-Recipient: utf-8; j\\x{F6}rg@example.org\r\n"));
    }

    fn allowing_full() -> DsnPolicy {
        DsnPolicy {
            return_content: ReturnContent::Full,
            ..DsnPolicy::default()
        }
    }

    #[test]
    fn ret_full_returns_the_message_only_where_the_tenant_allows_it_and_within_its_limit() {
        let full = envelope(None, Some(DsnReturn::Full));
        let hdrs = envelope(None, Some(DsnReturn::Hdrs));
        let limit = DsnPolicy::default().return_limit;
        assert_eq!(limit, 50_000, "Postfix's bounce_size_limit");
        assert!(returns_full(&full, &allowing_full(), limit));
        assert!(!returns_full(&full, &allowing_full(), limit + 1), "over the limit");
        assert!(
            !returns_full(&full, &DsnPolicy::default(), 10),
            "the tenant did not allow it"
        );
        assert!(!returns_full(&hdrs, &allowing_full(), 10), "RET=HDRS");

        let bytes = build("gw", &full, ORIGINAL, &failed(), 0, 0, true).unwrap();
        let text = String::from_utf8_lossy(&bytes);
        assert!(
            text.contains("message/rfc822") && text.contains("secret body"),
            "{text}"
        );
        let bytes = build("gw", &full, ORIGINAL, &failed(), 0, 0, false).unwrap();
        let text = String::from_utf8_lossy(&bytes);
        assert!(text.contains("text/rfc822-headers"), "{text}");
        assert!(!text.contains("secret body") && text.contains("Subject: hi"), "{text}");
        // What a caller that read only the header section passes.
        let header = &ORIGINAL[..header_len(ORIGINAL)];
        let bytes = build("gw", &full, header, &failed(), 0, 0, false).unwrap();
        let text = String::from_utf8_lossy(&bytes);
        assert!(text.contains("From: alice@contoso.com\r\nSubject: hi\r\n"), "{text}");
    }

    #[test]
    fn notify_never_and_null_sender_get_nothing() {
        let never = Notify {
            never: true,
            ..Notify::default()
        };
        assert!(build("gw", &envelope(Some(never), None), ORIGINAL, &failed(), 0, 0, false).is_none());
        let success_only = Notify {
            success: true,
            ..Notify::default()
        };
        assert!(
            build(
                "gw",
                &envelope(Some(success_only), None),
                ORIGINAL,
                &failed(),
                0,
                0,
                true
            )
            .is_none()
        );
        let mut null = envelope(None, None);
        null.mail_from = Mailbox::null();
        assert!(build("gw", &null, ORIGINAL, &failed(), 0, 0, false).is_none());
    }
}
