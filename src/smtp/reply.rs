//! Every SMTP reply the gateway sends, in one place.
//!
//! A [`Reply`] carries its basic code, enhanced status code (RFC 3463) and
//! text; whether it is temporary or permanent follows from the code, never from
//! the call site. Texts are generic on purpose: the reason for a refusal goes to
//! the log, not to the client. Only replies relayed from a downstream (proxy
//! mode) carry text that is not written here.

use std::borrow::Cow;
use std::fmt::Write as _;

/// One SMTP reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Reply {
    pub(crate) code: u16,
    /// Enhanced status code (class, subject, detail); class 0 means none (greeting).
    pub(crate) esc: (u8, u16, u16),
    pub(crate) text: Cow<'static, str>,
}

/// Positive, temporary or permanent, derived from the code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ReplyClass {
    Positive,
    Intermediate,
    Temporary,
    Permanent,
}

const fn r(code: u16, class: u8, subject: u16, detail: u16, text: &'static str) -> Reply {
    Reply {
        code,
        esc: (class, subject, detail),
        text: Cow::Borrowed(text),
    }
}

impl Reply {
    pub(crate) fn new(code: u16, esc: (u8, u16, u16), text: impl Into<Cow<'static, str>>) -> Reply {
        Reply {
            code,
            esc,
            text: text.into(),
        }
    }

    pub(crate) fn class(&self) -> ReplyClass {
        match self.code / 100 {
            2 => ReplyClass::Positive,
            3 => ReplyClass::Intermediate,
            4 => ReplyClass::Temporary,
            _ => ReplyClass::Permanent,
        }
    }

    pub(crate) fn is_positive(&self) -> bool {
        self.class() == ReplyClass::Positive
    }

    /// Serialises the reply, splitting the text on newlines into a multi-line reply.
    pub(crate) fn write_to(&self, out: &mut Vec<u8>) {
        let lines: Vec<&str> = self.text.split('\n').map(|l| l.trim_end_matches('\r')).collect();
        for (i, line) in lines.iter().enumerate() {
            let sep = if i + 1 == lines.len() { ' ' } else { '-' };
            let mut s = String::with_capacity(line.len() + 16);
            let _ = write!(s, "{}{}", self.code, sep);
            if self.esc.0 != 0 {
                let _ = write!(s, "{}.{}.{} ", self.esc.0, self.esc.1, self.esc.2);
            }
            s.push_str(line);
            s.push_str("\r\n");
            out.extend_from_slice(s.as_bytes());
        }
    }

    pub(crate) fn to_bytes(&self) -> Vec<u8> {
        let mut v = Vec::new();
        self.write_to(&mut v);
        v
    }

    /// "550 5.7.1 text" on one line, for logs and DSNs.
    pub(crate) fn one_line(&self) -> String {
        let text = self.text.replace(['\r', '\n'], " ");
        if self.esc.0 == 0 {
            format!("{} {}", self.code, text)
        } else {
            format!("{} {}.{}.{} {}", self.code, self.esc.0, self.esc.1, self.esc.2, text)
        }
    }

    // ---- connection ----

    pub(crate) fn greeting(hostname: &str) -> Reply {
        Reply::new(220, (0, 0, 0), format!("{hostname} ESMTP exogate"))
    }
    pub(crate) fn closing(hostname: &str) -> Reply {
        Reply::new(221, (2, 0, 0), format!("{hostname} closing connection"))
    }
    pub(crate) const CLIENT_NOT_ALLOWED: Reply = r(554, 5, 7, 1, "Access denied");
    /// A PROXY protocol header from an address that is not a configured proxy.
    pub(crate) const PROXY_HEADER_UNTRUSTED: Reply =
        r(554, 5, 7, 1, "PROXY protocol header not accepted from your address");
    /// A configured proxy's connection without a valid PROXY header (in time).
    pub(crate) const PROXY_HEADER_MISSING: Reply = r(
        421,
        4,
        7,
        0,
        "PROXY protocol header missing or invalid, closing connection",
    );
    pub(crate) const TOO_MANY_CONNECTIONS: Reply = r(421, 4, 7, 0, "Too many connections, try again later");
    pub(crate) const TOO_MANY_FROM_IP: Reply =
        r(421, 4, 7, 0, "Too many connections from your address, try again later");
    pub(crate) const SHUTTING_DOWN: Reply = r(421, 4, 3, 2, "Service shutting down, try again later");
    pub(crate) const TIMEOUT: Reply = r(421, 4, 4, 2, "Timeout, closing connection");
    pub(crate) const DATA_TOO_SLOW: Reply = r(421, 4, 4, 2, "Data rate too low, closing connection");
    pub(crate) const TOO_MANY_ERRORS: Reply = r(421, 4, 7, 0, "Too many errors, closing connection");
    pub(crate) const SESSION_TOO_LONG: Reply = r(421, 4, 4, 2, "Session lasted too long, closing connection");

    // ---- simple commands ----

    pub(crate) const RESET: Reply = r(250, 2, 0, 0, "Reset");
    pub(crate) const NOOP: Reply = r(250, 2, 0, 0, "OK");
    pub(crate) const VRFY: Reply = r(252, 2, 5, 0, "Cannot verify the user, but will accept the message");
    pub(crate) const HELP: Reply = r(
        214,
        2,
        0,
        0,
        "Commands: EHLO HELO STARTTLS MAIL RCPT DATA BDAT RSET NOOP VRFY HELP QUIT\nSee RFC 5321",
    );
    pub(crate) const READY_FOR_TLS: Reply = r(220, 2, 0, 0, "Ready to start TLS");
    pub(crate) const START_DATA: Reply = r(354, 0, 0, 0, "Start mail input; end with <CRLF>.<CRLF>");
    /// The EHLO reply with our extensions (STARTTLS only while it can still be used).
    pub(crate) fn ehlo(hostname: &str, client: &str, max_size: u64, offer_starttls: bool) -> Reply {
        let mut text = format!("{hostname} Hello {client}\nSIZE {max_size}\nPIPELINING\nDSN\nENHANCEDSTATUSCODES\n");
        if offer_starttls {
            text.push_str("STARTTLS\n");
        }
        text.push_str("8BITMIME\nBINARYMIME\nCHUNKING\nSMTPUTF8\nHELP");
        Reply::new(250, (0, 0, 0), text)
    }
    pub(crate) fn helo(hostname: &str, client: &str) -> Reply {
        Reply::new(250, (0, 0, 0), format!("{hostname} Hello {client}"))
    }

    // ---- syntax and sequence ----

    pub(crate) const UNKNOWN_COMMAND: Reply = r(500, 5, 5, 1, "Command not recognized");
    pub(crate) const LINE_TOO_LONG: Reply = r(500, 5, 5, 2, "Line too long");
    pub(crate) fn syntax(usage: &str) -> Reply {
        Reply::new(501, (5, 5, 4), format!("Syntax: {usage}"))
    }
    /// A BDAT line whose chunk size is not 1 to 20 digits (see `framing::bdat_chunk`).
    pub(crate) const BAD_BDAT_SYNTAX: Reply = r(501, 5, 5, 4, "Syntax: BDAT chunk-size [LAST]");
    pub(crate) const BAD_SENDER_SYNTAX: Reply = r(501, 5, 1, 7, "Bad sender address syntax");
    pub(crate) const BAD_RECIPIENT_SYNTAX: Reply = r(501, 5, 1, 3, "Bad recipient address syntax");
    pub(crate) fn bad_parameter(param: &str) -> Reply {
        Reply::new(501, (5, 5, 4), format!("Invalid parameter {param}"))
    }
    pub(crate) fn duplicate_parameter(param: &str) -> Reply {
        Reply::new(501, (5, 5, 4), format!("Duplicate parameter {param}"))
    }
    pub(crate) const NO_LOCAL_POSTMASTER: Reply = r(
        550,
        5,
        1,
        1,
        "No local mailbox here: address the postmaster of a domain",
    );
    pub(crate) fn unsupported_parameter(param: &str) -> Reply {
        Reply::new(555, (5, 5, 4), format!("Unsupported parameter {param}"))
    }
    pub(crate) const NOT_IMPLEMENTED: Reply = r(502, 5, 5, 1, "Command not implemented");
    pub(crate) const HELO_FIRST: Reply = r(503, 5, 5, 1, "Send EHLO or HELO first");
    pub(crate) const ALREADY_TLS: Reply = r(503, 5, 5, 1, "TLS already active");
    pub(crate) const NESTED_MAIL: Reply = r(503, 5, 5, 1, "Sender already specified");
    pub(crate) const MAIL_FIRST: Reply = r(503, 5, 5, 1, "Send MAIL first");
    pub(crate) const RCPT_FIRST: Reply = r(503, 5, 5, 1, "Send RCPT first (no valid recipients)");
    pub(crate) const MIXED_DATA_BDAT: Reply = r(503, 5, 5, 1, "DATA and BDAT cannot be mixed in one transaction");
    pub(crate) const BDAT_NO_TRANSACTION: Reply = r(503, 5, 5, 1, "No valid transaction for BDAT");
    pub(crate) const TLS_NOT_AVAILABLE: Reply = r(454, 4, 7, 0, "TLS not available");
    pub(crate) const EIGHTBIT_NEEDS_BDAT: Reply = r(503, 5, 5, 1, "BODY=BINARYMIME requires BDAT");
    pub(crate) const SMTPUTF8_NOT_DECLARED: Reply = r(553, 5, 6, 7, "Non-ASCII address requires SMTPUTF8");

    // ---- admission ----

    pub(crate) const TLS_REQUIRED: Reply = r(530, 5, 7, 0, "Must issue a STARTTLS command first");
    pub(crate) const CLIENT_CERT_REJECTED: Reply = r(550, 5, 7, 1, "Client certificate not authorized");
    pub(crate) const RELAY_DENIED: Reply = r(550, 5, 7, 1, "Relaying denied");
    pub(crate) const NOT_AUTHORIZED: Reply = r(550, 5, 7, 1, "Message not authorized for this gateway");
    pub(crate) const OTHER_TENANT: Reply = r(
        452,
        4,
        5,
        3,
        "Recipient belongs to another organization, send separately",
    );

    pub(crate) const JOURNAL_SEPARATELY: Reply = r(
        452,
        4,
        5,
        3,
        "Journal reports and other mail need separate transactions, send separately",
    );

    // ---- limits ----

    pub(crate) const TOO_MANY_RECIPIENTS: Reply = r(452, 4, 5, 3, "Too many recipients");
    pub(crate) const MESSAGE_TOO_BIG: Reply = r(552, 5, 3, 4, "Message size exceeds fixed maximum message size");

    // ---- transaction results ----

    pub(crate) const SENDER_OK: Reply = r(250, 2, 1, 0, "Sender OK");
    pub(crate) const RECIPIENT_OK: Reply = r(250, 2, 1, 5, "Recipient OK");
    pub(crate) fn queued(id: &str) -> Reply {
        Reply::new(250, (2, 0, 0), format!("OK queued as {id}"))
    }
    pub(crate) fn chunk_ok(size: usize) -> Reply {
        Reply::new(250, (2, 0, 0), format!("{size} octets received"))
    }
    pub(crate) fn quarantined(id: &str) -> Reply {
        // The client learns nothing of the verdict: to EXO the message was accepted.
        Reply::new(250, (2, 0, 0), format!("OK queued as {id}"))
    }
    /// A header block that parsers read differently even after our fields
    /// were removed (message::owned): relaying it could hand a forged field on.
    pub(crate) const AMBIGUOUS_HEADER: Reply = r(
        550,
        5,
        6,
        0,
        "Header block can be read more than one way (bare CR or LF, or a continuation at its start)",
    );
    pub(crate) const POLICY_REJECT: Reply = r(550, 5, 7, 1, "Message rejected by policy");
    pub(crate) const SCAN_TEMPFAIL: Reply = r(451, 4, 7, 1, "Message could not be scanned, try again later");
    pub(crate) const LOCAL_ERROR: Reply = r(451, 4, 3, 0, "Local error, try again later");
    pub(crate) const SPOOL_FULL: Reply = r(452, 4, 3, 1, "Insufficient system storage, try again later");
    pub(crate) const DOWNSTREAM_UNAVAILABLE: Reply = r(451, 4, 4, 1, "Downstream unavailable, try again later");
    pub(crate) const DOWNSTREAM_TRANSACTION: Reply = r(451, 4, 4, 2, "Downstream transaction failed, try again later");

    // Recorded as the result of a queued recipient (never sent to a client).
    pub(crate) fn tenant_gone(portal: &str) -> Reply {
        Reply::new(451, (4, 3, 0), format!("tenant {portal} is no longer configured"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_serialise_with_enhanced_codes_and_continuations() {
        assert_eq!(Reply::RELAY_DENIED.to_bytes(), b"550 5.7.1 Relaying denied\r\n");
        assert_eq!(Reply::greeting("gw").to_bytes(), b"220 gw ESMTP exogate\r\n");
        assert_eq!(
            Reply::HELP.to_bytes(),
            b"214-2.0.0 Commands: EHLO HELO STARTTLS MAIL RCPT DATA BDAT RSET NOOP VRFY HELP QUIT\r\n214 2.0.0 See RFC 5321\r\n"
        );
    }

    #[test]
    fn ehlo_lists_extensions_and_hides_starttls_once_used() {
        let text = String::from_utf8(Reply::ehlo("gw", "[1.2.3.4]", 157286400, true).to_bytes()).unwrap();
        assert!(text.starts_with("250-gw Hello [1.2.3.4]\r\n250-SIZE 157286400\r\n"));
        assert!(text.contains("250-STARTTLS\r\n") && text.contains("250-CHUNKING\r\n"));
        assert!(text.ends_with("250 HELP\r\n"));
        let text = String::from_utf8(Reply::ehlo("gw", "x", 1, false).to_bytes()).unwrap();
        assert!(!text.contains("STARTTLS"));
    }

    #[test]
    fn class_follows_the_code() {
        assert_eq!(Reply::OTHER_TENANT.class(), ReplyClass::Temporary);
        assert_eq!(Reply::MESSAGE_TOO_BIG.class(), ReplyClass::Permanent);
        assert_eq!(Reply::START_DATA.class(), ReplyClass::Intermediate);
        assert!(Reply::queued("X").is_positive());
    }
}
