//! The facts every stage shares about one message: the SMTP envelope (with the
//! DSN parameters of RFC 3461 kept verbatim so they can be passed on), the
//! session it arrived on, the tenant and the direction it was attributed to.
//!
//! These types are plain data. They are serialised into the spool, so a field
//! may be added (with `#[serde(default)]`) but never renamed, and re-typed
//! only when the new type still reads what older files hold (the addresses,
//! `ENVID` and `ORCPT` were decoded strings before they were typed: their
//! deserialisers read both), else the spool format version is bumped.

use std::fmt;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

pub use crate::smtp::address::Mailbox;
pub use crate::smtp::params::{BodyType, DsnReturn, Notify, Orcpt, Xtext};

/// One accepted recipient.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recipient {
    pub address: Mailbox,
    /// `ORCPT=` as received (type and xtext, never decoded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub orcpt: Option<Orcpt>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notify: Option<Notify>,
}

/// The SMTP envelope of one transaction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Envelope {
    /// The reverse path; [`Mailbox::null`] for `<>`.
    pub mail_from: Mailbox,
    pub recipients: Vec<Recipient>,
    #[serde(default)]
    pub body: BodyType,
    #[serde(default)]
    pub smtputf8: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ret: Option<DsnReturn>,
    /// `ENVID=` as received (xtext, never decoded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub envid: Option<Xtext>,
    /// `SIZE=` declared by the client, 0 when absent.
    #[serde(default)]
    pub declared_size: u64,
}

impl Envelope {
    pub(crate) fn is_null_sender(&self) -> bool {
        self.mail_from.is_null()
    }
}

/// The lower-cased domain of a header address, `None` when it has no `@domain`.
/// Envelope addresses are [`Mailbox`]es: their domain is `Mailbox::domain_key`.
pub(crate) fn domain_of(address: &str) -> Option<String> {
    let (_, domain) = address.rsplit_once('@')?;
    let domain = domain.trim_end_matches('.');
    (!domain.is_empty()).then(|| domain.to_lowercase())
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
}
