//! The facts every stage shares about one message: the SMTP envelope (with the
//! DSN parameters of RFC 3461 kept verbatim so they can be passed on), the
//! session it arrived on, the tenant and the direction it was attributed to.
//!
//! These types are plain data. They are serialised into the spool, so a field
//! may be added (with `#[serde(default)]`) but never renamed or re-typed
//! without bumping the spool format version.

use std::fmt;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

/// Body type declared with `MAIL FROM ... BODY=`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum BodyType {
    #[default]
    #[serde(rename = "7bit")]
    SevenBit,
    #[serde(rename = "8bitmime")]
    EightBitMime,
    #[serde(rename = "binarymime")]
    BinaryMime,
}

/// `RET=` of RFC 3461: what a DSN should carry of the original message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DsnReturn {
    Full,
    Hdrs,
}

/// `NOTIFY=` of RFC 3461. `None` on the recipient means the parameter was absent
/// (the default is "failure" for DSN purposes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Notify {
    pub never: bool,
    pub success: bool,
    pub failure: bool,
    pub delay: bool,
}

impl Notify {
    pub(crate) fn from_smtp_proto(flags: u64) -> Option<Notify> {
        use smtp_proto::*;
        let n = Notify {
            never: flags & RCPT_NOTIFY_NEVER != 0,
            success: flags & RCPT_NOTIFY_SUCCESS != 0,
            failure: flags & RCPT_NOTIFY_FAILURE != 0,
            delay: flags & RCPT_NOTIFY_DELAY != 0,
        };
        (n != Notify::default()).then_some(n)
    }

    /// The value as written in `RCPT TO ... NOTIFY=`.
    pub(crate) fn to_param(self) -> String {
        if self.never {
            return "NEVER".into();
        }
        let mut parts = Vec::new();
        if self.success {
            parts.push("SUCCESS");
        }
        if self.failure {
            parts.push("FAILURE");
        }
        if self.delay {
            parts.push("DELAY");
        }
        parts.join(",")
    }
}

/// One accepted recipient.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recipient {
    pub address: String,
    /// The address of `ORCPT=rfc822;...`, xtext-decoded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub orcpt: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notify: Option<Notify>,
}

/// The SMTP envelope of one transaction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Envelope {
    /// Reverse path without angle brackets; empty for the null sender `<>`.
    pub mail_from: String,
    pub recipients: Vec<Recipient>,
    #[serde(default)]
    pub body: BodyType,
    #[serde(default)]
    pub smtputf8: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ret: Option<DsnReturn>,
    /// `ENVID=`, xtext-decoded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub envid: Option<String>,
    /// `SIZE=` declared by the client, 0 when absent.
    #[serde(default)]
    pub declared_size: u64,
}

impl Envelope {
    pub(crate) fn is_null_sender(&self) -> bool {
        self.mail_from.is_empty()
    }
}

/// The lower-cased domain of an address, `None` when it has no `@domain`.
pub(crate) fn domain_of(address: &str) -> Option<String> {
    let (_, domain) = address.rsplit_once('@')?;
    let domain = domain.trim_end_matches('.');
    (!domain.is_empty()).then(|| domain.to_lowercase())
}

/// Encodes a value as RFC 3461 xtext (for `ENVID=` and `ORCPT=` when relaying).
pub(crate) fn xtext(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if (33..=126).contains(&b) && b != b'+' && b != b'=' {
            out.push(b as char);
        } else {
            out.push_str(&format!("+{b:02X}"));
        }
    }
    out
}

/// Mail direction, as EXO's transport rules name it in `X-CLOUD-SEC-AV-Info`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// External sender to tenant recipients (`inline`).
    Inbound,
    /// Tenant sender to external recipients (`sent,inline`).
    Outgoing,
    /// Tenant to tenant (`internal,inline`).
    Internal,
}

impl Direction {
    /// The direction part of the `X-CLOUD-SEC-AV-Info` value.
    pub(crate) fn info_value(self) -> &'static str {
        match self {
            Direction::Inbound => "inline",
            Direction::Outgoing => "sent,inline",
            Direction::Internal => "internal,inline",
        }
    }

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Direction::Inbound => "inbound",
            Direction::Outgoing => "outgoing",
            Direction::Internal => "internal",
        }
    }
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the TLS layer of the inbound session negotiated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TlsFacts {
    /// e.g. "TLSv1.3"
    pub version: String,
    /// e.g. "TLS13_AES_256_GCM_SHA384"
    pub cipher: String,
    /// DNS names of a verified client certificate, empty when none was presented.
    #[serde(default)]
    pub client_names: Vec<String>,
}

/// What is known about the SMTP session a message arrived on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionFacts {
    /// The id of the session in the logs (the `session` span), empty for what we generate.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub session_id: String,
    pub client_ip: IpAddr,
    pub client_port: u16,
    pub helo: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsFacts>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domain_is_lowercased_and_optional() {
        assert_eq!(domain_of("A@Contoso.COM").as_deref(), Some("contoso.com"));
        assert_eq!(domain_of("user@sub.example.org.").as_deref(), Some("sub.example.org"));
        assert_eq!(domain_of("postmaster"), None);
        assert_eq!(domain_of(""), None);
        assert_eq!(domain_of("x@"), None);
    }

    #[test]
    fn xtext_encodes_plus_equals_and_non_printables() {
        assert_eq!(xtext("a+b=c d"), "a+2Bb+3Dc+20d");
        assert_eq!(xtext("ü"), "+C3+BC");
    }

    #[test]
    fn notify_round_trips_to_parameter() {
        use smtp_proto::*;
        let n = Notify::from_smtp_proto(RCPT_NOTIFY_SUCCESS | RCPT_NOTIFY_FAILURE).unwrap();
        assert_eq!(n.to_param(), "SUCCESS,FAILURE");
        assert_eq!(Notify::from_smtp_proto(RCPT_NOTIFY_NEVER).unwrap().to_param(), "NEVER");
        assert_eq!(Notify::from_smtp_proto(0), None);
    }
}
