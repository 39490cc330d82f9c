//! The `rspamd` check: asks a running rspamd (`/checkv2`, its normal
//! worker) about the message, with the original sender's facts as request
//! headers (`IP`, `Helo`, `From`, `Rcpt`, `Queue-Id`, `MTA-Name`), so its
//! whole rule set (Bayes, fuzzy, phishing, RBLs, SPF/DKIM of its own) sees
//! the sender Exchange Online saw, not Exchange Online.
//!
//! rspamd's action becomes a finding that forces ours (`actions`, defaults:
//! `reject` → quarantine, `add header` / `rewrite subject` → junk, the rest
//! nothing); its score, times `score_weight` (default 0: the action speaks),
//! is the finding's score; its strongest symbols are the reason. `settings`
//! (a JSON object) is passed as rspamd's `Settings` request header, e.g. to
//! turn off rule groups that make no sense for a site. A timeout,
//! a refused connection or an answer that is not rspamd's JSON is an error
//! (the check's `on_error`).
//!
//! Why our own HTTP client: one POST of a known size to a loopback or LAN
//! service, HTTP/1.1 with `Connection: close`; no HTTP crate is in the tree
//! and this needs none of what one brings (pooling, TLS, redirects).

use std::sync::Arc;

use async_trait::async_trait;
use serde::Deserialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::config::reader::Section;
use crate::message::verdict::{Action, Finding};
use crate::scan::check::{BuildContext, Check, CheckError, ScanInput};

/// Longest reply read from rspamd.
const MAX_REPLY: u64 = 4 * 1024 * 1024;
/// Symbols named in the reason.
const SHOWN_SYMBOLS: usize = 8;

/// What an rspamd action makes of the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Effect {
    Nothing,
    Force(Action),
}

pub(crate) struct Rspamd {
    /// host:port of the normal worker.
    authority: String,
    hostname: String,
    score_weight: f64,
    actions: Vec<(String, Effect)>,
    /// `settings`: rspamd's per-request settings (a JSON object), sent as its
    /// `Settings` header, compact on one line.
    settings: Option<String>,
}

const EFFECTS: [(&str, Effect); 5] = [
    ("none", Effect::Nothing),
    ("junk", Effect::Force(Action::Junk)),
    ("quarantine", Effect::Force(Action::Quarantine)),
    ("reject", Effect::Force(Action::Reject)),
    ("deliver", Effect::Nothing),
];

pub(crate) fn build(options: &Section, cx: &BuildContext) -> Option<Arc<dyn Check>> {
    configure(options, cx).map(|c| Arc::new(c) as Arc<dyn Check>)
}

/// The check from its options (problems reported to `options`).
fn configure(options: &Section, cx: &BuildContext) -> Option<Rspamd> {
    let url = options.string_or("url", "http://127.0.0.1:11333");
    let authority = match url.strip_prefix("http://") {
        Some(rest) => {
            let host = rest.split('/').next().unwrap_or("");
            if host.is_empty() {
                options.error("url", format!("expected http://HOST:PORT, found \"{url}\""));
            }
            if host.contains(':') {
                host.to_string()
            } else {
                format!("{host}:80")
            }
        }
        None => {
            options.error(
                "url",
                format!("expected an http:// URL of rspamd's normal worker, e.g. \"http://127.0.0.1:11333\", found \"{url}\""),
            );
            String::new()
        }
    };
    let mut actions: Vec<(String, Effect)> = vec![
        ("reject".into(), Effect::Force(Action::Quarantine)),
        ("add header".into(), Effect::Force(Action::Junk)),
        ("rewrite subject".into(), Effect::Force(Action::Junk)),
        ("soft reject".into(), Effect::Nothing),
        ("greylist".into(), Effect::Nothing),
        ("no action".into(), Effect::Nothing),
    ];
    if let Some(table) = options.section("actions") {
        for key in table.table().keys() {
            let effect = table.choice_or(key, Effect::Nothing, &EFFECTS);
            match actions.iter_mut().find(|(a, _)| a == key) {
                Some(entry) => entry.1 = effect,
                None => actions.push((key.clone(), effect)),
            }
        }
    }
    let settings =
        options
            .opt_string("settings")
            .and_then(|text| match serde_json::from_str::<serde_json::Value>(&text) {
                Ok(v @ serde_json::Value::Object(_)) => Some(v.to_string()),
                Ok(_) | Err(_) => {
                    options.error(
                        "settings",
                        "expected rspamd settings as a JSON object, e.g. {\"groups_disabled\": [\"hfilter\"]}",
                    );
                    None
                }
            });
    let check = Rspamd {
        settings,
        authority,
        hostname: cx.hostname.clone(),
        score_weight: options.f64_or("score_weight", 0.0),
        actions,
    };
    Some(check)
}

#[derive(Debug, Deserialize)]
struct Reply {
    action: String,
    score: f64,
    #[serde(default)]
    symbols: std::collections::HashMap<String, Symbol>,
}

#[derive(Debug, Deserialize)]
struct Symbol {
    #[serde(default)]
    score: f64,
}

/// A header value from message or client text: printable, one line.
fn header_safe(s: &str) -> String {
    s.chars()
        .filter(|c| c.is_ascii_graphic() || *c == ' ')
        .take(512)
        .collect()
}

impl Rspamd {
    fn request_head(&self, input: &ScanInput<'_>, len: usize) -> String {
        let (ip, helo) = match input.auth {
            Some(a) => (a.origin.ip, a.origin.helo.as_str()),
            None => (input.session.client_ip, input.session.helo.as_str()),
        };
        let mut head = format!(
            "POST /checkv2 HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nContent-Length: {len}\r\nIP: {ip}\r\nQueue-Id: {}\r\nMTA-Name: {}\r\n",
            self.authority,
            header_safe(input.queue_id),
            header_safe(&self.hostname),
        );
        if !helo.is_empty() {
            head.push_str(&format!("Helo: {}\r\n", header_safe(helo)));
        }
        if let Some(settings) = &self.settings {
            head.push_str(&format!("Settings: {}\r\n", header_safe(settings)));
        }
        head.push_str(&format!(
            "From: <{}>\r\n",
            header_safe(&input.envelope.mail_from.to_string())
        ));
        for r in &input.envelope.recipients {
            head.push_str(&format!("Rcpt: <{}>\r\n", header_safe(&r.address.to_string())));
        }
        head.push_str("\r\n");
        head
    }

    async fn ask(&self, input: &ScanInput<'_>) -> Result<Reply, CheckError> {
        let mut stream = TcpStream::connect(&self.authority)
            .await
            .map_err(|e| CheckError::Unavailable(format!("rspamd at {}: {e}", self.authority)))?;
        let head = self.request_head(input, input.raw.len());
        stream.write_all(head.as_bytes()).await?;
        stream.write_all(input.raw).await?;
        stream.flush().await?;
        let mut reply = Vec::new();
        stream.take(MAX_REPLY).read_to_end(&mut reply).await?;
        let end = reply
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .ok_or_else(|| CheckError::Protocol("rspamd's reply has no HTTP header".into()))?;
        let head = String::from_utf8_lossy(&reply[..end]);
        let status = head.split_whitespace().nth(1).unwrap_or("");
        if status != "200" {
            let line = head.lines().next().unwrap_or("").to_string();
            return Err(CheckError::Protocol(format!("rspamd answered {line}")));
        }
        let chunked = head.lines().any(|l| {
            l.to_ascii_lowercase().starts_with("transfer-encoding:") && l.to_ascii_lowercase().contains("chunked")
        });
        let body = &reply[end + 4..];
        let body = if chunked { dechunk(body)? } else { body.to_vec() };
        serde_json::from_slice(&body)
            .map_err(|e| CheckError::Protocol(format!("rspamd's reply is not its /checkv2 JSON: {e}")))
    }

    fn finding(&self, reply: &Reply) -> Option<Finding> {
        let effect = self
            .actions
            .iter()
            .find(|(a, _)| *a == reply.action)
            .map_or(Effect::Nothing, |(_, e)| *e);
        let score = reply.score * self.score_weight;
        if effect == Effect::Nothing && score == 0.0 {
            return None;
        }
        let mut symbols: Vec<(&String, f64)> = reply.symbols.iter().map(|(n, s)| (n, s.score)).collect();
        symbols.sort_by(|a, b| {
            b.1.partial_cmp(&a.1)
                .unwrap_or(std::cmp::Ordering::Equal)
                .then(a.0.cmp(b.0))
        });
        let shown: Vec<String> = symbols
            .iter()
            .take(SHOWN_SYMBOLS)
            .map(|(n, s)| format!("{n}({s:.1})"))
            .collect();
        let tag = format!("rspamd-{}", reply.action.replace(' ', "-"));
        let f = Finding::new(
            score,
            tag,
            format!(
                "rspamd: action={} score={:.1}; {}",
                reply.action,
                reply.score,
                shown.join(" ")
            ),
        );
        Some(match effect {
            Effect::Force(a) => f.forcing(a),
            Effect::Nothing => f,
        })
    }
}

/// Decodes an HTTP/1.1 chunked body.
fn dechunk(mut body: &[u8]) -> Result<Vec<u8>, CheckError> {
    let bad = || CheckError::Protocol("rspamd's chunked reply is malformed".into());
    let mut out = Vec::new();
    loop {
        let eol = body.windows(2).position(|w| w == b"\r\n").ok_or_else(bad)?;
        let size_text = String::from_utf8_lossy(&body[..eol]);
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16).map_err(|_| bad())?;
        body = &body[eol + 2..];
        if size == 0 {
            return Ok(out);
        }
        if body.len() < size + 2 {
            return Err(bad());
        }
        out.extend_from_slice(&body[..size]);
        body = &body[size + 2..];
    }
}

#[async_trait]
impl Check for Rspamd {
    fn kind(&self) -> &'static str {
        "rspamd"
    }

    async fn scan(&self, input: &ScanInput<'_>) -> Result<Vec<Finding>, CheckError> {
        let reply = self.ask(input).await?;
        tracing::debug!(queue_id = input.queue_id, action = %reply.action, score = reply.score, "rspamd answered");
        Ok(self.finding(&reply).into_iter().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunked_replies_are_decoded() {
        assert_eq!(
            dechunk(b"4\r\nWiki\r\n6\r\npedia \r\n0\r\n\r\n").unwrap(),
            b"Wikipedia "
        );
        assert!(dechunk(b"zz\r\n").is_err());
        assert!(dechunk(b"10\r\nshort\r\n").is_err());
    }

    #[test]
    fn settings_are_sent_as_one_compact_header() {
        let table: toml::Table = "settings = '''{ \"groups_disabled\": [\"hfilter\"] }'''"
            .parse()
            .unwrap();
        let problems = crate::config::reader::Problems::default();
        let cx = BuildContext::new(".");
        let section = Section::root(&table, &problems);
        let rspamd = configure(&section, &cx).expect("the check builds");
        let head = crate::scan::test_support::with_input(
            b"Subject: x\r\n\r\nbody\r\n",
            "a@example.org",
            crate::message::envelope::Direction::Inbound,
            |input| rspamd.request_head(input, 10),
        );
        assert!(
            head.contains("\r\nSettings: {\"groups_disabled\":[\"hfilter\"]}\r\n"),
            "{head}"
        );
        let errors = crate::checks::test_support::build_errors("rspamd", "settings = \"[1, 2]\"");
        assert!(
            errors
                .iter()
                .any(|e| e.starts_with("settings: expected rspamd settings as a JSON object")),
            "{errors:?}"
        );
    }

    #[test]
    fn bad_options_name_their_key() {
        let errors = crate::checks::test_support::build_errors(
            "rspamd",
            "url = \"https://rspamd.example\"\nactions = { reject = \"bounce\" }",
        );
        assert!(
            errors.iter().any(|e| e.starts_with("url: expected an http:// URL")),
            "{errors:?}"
        );
        assert!(
            errors.iter().any(|e| e.starts_with("actions.reject: must be one of")),
            "{errors:?}"
        );
    }
}
