//! The identifiers an administrator holds when looking for a message: its
//! `Message-ID` and Exchange Online's `X-MS-Exchange-CrossTenant-Network-Message-Id`
//! (what a message trace in the Exchange admin center shows), read from the
//! header as received and kept with the queued message so every log line
//! about it, from the session to the downstream's reply, can carry them.
//!
//! Invariant: the values are log-safe: printable ASCII without spaces or
//! quotes, at most `MAX_LEN` characters (they come from the sender and go
//! into log lines). Must never: change the message.

use serde::{Deserialize, Serialize};

use crate::message::headers::fields;

/// Longest identifier kept (a Message-ID is rarely over 100 characters).
const MAX_LEN: usize = 200;

/// The field EXO stamps with its Network Message ID.
pub const NETWORK_MESSAGE_ID: &str = "X-MS-Exchange-CrossTenant-Network-Message-Id";

/// A message's identifiers (empty when the header has none).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageIds {
    /// `Message-ID` without its angle brackets.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message_id: String,
    /// EXO's Network Message ID (a GUID).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub network_message_id: String,
}

impl MessageIds {
    /// The first `Message-ID` and the first Network Message ID of the header.
    pub fn from_header(raw: &[u8]) -> MessageIds {
        let mut ids = MessageIds::default();
        for f in fields(raw) {
            if ids.message_id.is_empty() && f.name_is("Message-ID") {
                ids.message_id = log_safe(f.unfolded().trim().trim_start_matches('<').trim_end_matches('>'));
            } else if ids.network_message_id.is_empty() && f.name_is(NETWORK_MESSAGE_ID) {
                ids.network_message_id = log_safe(f.unfolded().trim());
            }
            if !ids.message_id.is_empty() && !ids.network_message_id.is_empty() {
                break;
            }
        }
        ids
    }
}

/// Printable ASCII only (others become `?`), no spaces or quotes, capped.
fn log_safe(v: &str) -> String {
    v.chars()
        .take(MAX_LEN)
        .map(|c| {
            if c.is_ascii_graphic() && c != '"' && c != '\\' {
                c
            } else {
                '?'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_both_ids_unfolded_and_log_safe() {
        let raw = b"From: a@b\r\nMessage-ID:\r\n <abc.123@mail.example>\r\n\
            X-MS-Exchange-CrossTenant-Network-Message-Id: 5d1a3c2e-0000-4bcd-8e0f-08dc00000001\r\n\
            Message-ID: <second@x>\r\n\r\nMessage-ID: <body@x>\r\n";
        let ids = MessageIds::from_header(raw);
        assert_eq!(ids.message_id, "abc.123@mail.example");
        assert_eq!(ids.network_message_id, "5d1a3c2e-0000-4bcd-8e0f-08dc00000001");
        let evil = MessageIds::from_header("Message-ID: <a\"b c\u{e9}>\r\n\r\n".as_bytes());
        assert_eq!(evil.message_id, "a?b?c?");
        assert_eq!(MessageIds::from_header(b"Subject: x\r\n\r\n"), MessageIds::default());
    }
}
