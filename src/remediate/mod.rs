//! Post-delivery remediation (DESIGN §13): finding a delivered message in
//! each recipient's mailbox by its Internet Message-ID and moving or deleting
//! it, through Microsoft Graph (`graph.rs`) or EWS (`ews.rs`), with app-only
//! OAuth2 tokens (`token.rs`) over one HTTPS client per tenant (`http.rs`:
//! configured trust roots, source IP, User-Agent, timeouts, throttling).
//!
//! Triggers: a monitor-mode verdict in the tenant's `on_verdicts`
//! (`inbound/journal.rs`), an administrator (`exogate remediate`), and a
//! re-scan that turns an earlier clean verdict bad ([`on_rescan`]).
//!
//! Invariants: every call leaves from `source_ip` with `user_agent`;
//! `429`/`503` (and EWS `ErrorServerBusy`) are waited out as told, capped by
//! `max_retry_after`; a mailbox that fails temporarily is retried on the
//! `retry` schedule and then reported failed; each mailbox's outcome is one
//! audit record (`audit.rs`). Only the mailboxes the caller names are touched
//! (callers pass the tenant's own recipients). Must never: log a secret, a
//! private key, an assertion or a token; touch a mailbox of another tenant.

pub(crate) mod audit;
pub(crate) mod ews;
pub(crate) mod graph;
pub(crate) mod http;
pub(crate) mod token;

use std::sync::Arc;
use std::time::Duration;

use crate::config::remediation::{Method, RemediationAction, RemediationConfig};
use crate::config::tenant::Tenant;

/// Why the remediation of a message was started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trigger {
    /// A monitor-mode verdict (its action name).
    Verdict(String),
    /// An administrator asked (who, as far as we know).
    Admin(String),
    /// A re-scan after a signature update turned a clean verdict bad.
    Rescan,
}

impl std::fmt::Display for Trigger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Trigger::Verdict(v) => write!(f, "verdict:{v}"),
            Trigger::Admin(who) => write!(f, "admin:{who}"),
            Trigger::Rescan => f.write_str("rescan"),
        }
    }
}

/// One message to remove from some mailboxes.
#[derive(Debug, Clone)]
pub struct Job {
    /// With angle brackets, as Exchange stores it.
    pub internet_message_id: String,
    pub network_message_id: Option<String>,
    pub mailboxes: Vec<String>,
    pub action: RemediationAction,
    pub trigger: Trigger,
}

/// What happened in one mailbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Moved {
        folder: String,
        count: usize,
    },
    Deleted {
        count: usize,
    },
    NotFound,
    /// Still failing after the last retry.
    Failed(String),
    /// Refused for good (4xx: permissions, scope, EWS turned off).
    Refused(String),
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Outcome::Moved { folder, count } => write!(f, "moved {count} to {folder}"),
            Outcome::Deleted { count } => write!(f, "removed {count}"),
            Outcome::NotFound => f.write_str("not found"),
            Outcome::Failed(why) => write!(f, "failed: {why}"),
            Outcome::Refused(why) => write!(f, "refused: {why}"),
        }
    }
}

#[derive(Debug, Clone)]
pub struct MailboxResult {
    pub mailbox: String,
    pub outcome: Outcome,
    pub attempts: usize,
    /// `request-id`s Microsoft returned (for a support case).
    pub request_ids: Vec<String>,
}

/// A call that did not work: to be retried, or not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum CallError {
    /// Connection, timeout, 5xx, throttling past `max_retry_after`: `wait`
    /// is the least time the server asked for.
    Temporary {
        reason: String,
        wait: Option<Duration>,
    },
    Permanent {
        reason: String,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum RemediateError {
    #[error("cannot read the trust roots {path}: {reason}")]
    Roots { path: String, reason: String },
    #[error("cannot build the HTTPS client: {0}")]
    Client(String),
}

/// A tenant's remediation client: configuration, HTTPS client, token cache.
pub struct Remediator {
    pub(crate) portal: String,
    pub(crate) cfg: RemediationConfig,
    pub(crate) http: http::Http,
    pub(crate) tokens: token::Tokens,
}

impl Remediator {
    pub fn new(portal: &str, cfg: RemediationConfig) -> Result<Remediator, RemediateError> {
        let http = http::Http::new(&cfg)?;
        Ok(Remediator {
            portal: portal.to_string(),
            tokens: token::Tokens::default(),
            http,
            cfg,
        })
    }

    pub fn config(&self) -> &RemediationConfig {
        &self.cfg
    }

    /// Works through every mailbox of `job` (`concurrency` at once) and
    /// records one audit record per mailbox.
    pub async fn run(&self, job: &Job) -> Vec<MailboxResult> {
        // A semaphore rather than a stream combinator: the future stays Send
        // for tokio::spawn (closures over borrowed mailboxes are not general
        // enough for it).
        let permits = tokio::sync::Semaphore::new(self.cfg.concurrency.max(1));
        let mut all = Vec::with_capacity(job.mailboxes.len());
        for m in &job.mailboxes {
            let permits = &permits;
            all.push(async move {
                let _permit = permits.acquire().await;
                self.mailbox(job, m).await
            });
        }
        futures::future::join_all(all).await
    }

    async fn mailbox(&self, job: &Job, mailbox: &str) -> MailboxResult {
        let mut attempts = 0;
        let mut request_ids = Vec::new();
        let outcome = loop {
            attempts += 1;
            let result = match self.cfg.method {
                Method::Graph => graph::remediate(self, mailbox, job, &mut request_ids).await,
                Method::Ews => ews::remediate(self, mailbox, job, &mut request_ids).await,
            };
            match result {
                Ok(outcome) => break outcome,
                Err(CallError::Permanent { reason }) => break Outcome::Refused(reason),
                Err(CallError::Temporary { reason, wait }) => {
                    let Some(scheduled) = self.cfg.retry.get(attempts - 1) else {
                        break Outcome::Failed(reason);
                    };
                    let pause = wait.map_or(*scheduled, |w| w.max(*scheduled));
                    tracing::warn!(
                        tenant = %self.portal,
                        mailbox,
                        message_id = %job.internet_message_id,
                        attempt = attempts,
                        retry_in_ms = pause.as_millis() as u64,
                        reason = %reason,
                        "remediation attempt failed, retrying"
                    );
                    tokio::time::sleep(pause).await;
                }
            }
        };
        let result = MailboxResult {
            mailbox: mailbox.to_string(),
            outcome,
            attempts,
            request_ids,
        };
        audit::record(self, job, &result);
        result
    }
}

/// The mailboxes of `tenant` among `addresses` (lower case, de-duplicated):
/// only the tenant's own mailboxes are ever remediated.
pub fn tenant_mailboxes<'a>(tenant: &Tenant, addresses: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for a in addresses {
        let lower = a.to_lowercase();
        let internal = crate::message::journal::domain_ascii(&lower).is_some_and(|d| tenant.owns_domain(&d))
            || crate::message::envelope::Mailbox::from_text(&lower).is_some_and(|m| tenant.owns_address(&m));
        if internal && !out.contains(&lower) {
            out.push(lower);
        }
    }
    out
}

/// Starts the remediation of `job` in the background (the verdict and re-scan
/// triggers: nobody waits for it; every outcome is audited).
pub(crate) fn spawn(remediator: Arc<Remediator>, job: Job) {
    tokio::spawn(async move {
        let results = remediator.run(&job).await;
        let failed = results
            .iter()
            .filter(|r| matches!(r.outcome, Outcome::Failed(_) | Outcome::Refused(_)))
            .count();
        tracing::info!(
            tenant = %remediator.portal,
            message_id = %job.internet_message_id,
            trigger = %job.trigger,
            mailboxes = results.len(),
            failed,
            "remediation finished"
        );
    });
}

/// The re-scan hook: a message scanned again (after a signature update) whose
/// verdict went from `before` to `after`. Starts remediation in `mailboxes`
/// when the new verdict is one of the tenant's `on_verdicts` and the old one
/// was not. The re-scan itself (which messages, from the event store) is not
/// part of this module; it only has to call this. Returns whether it started.
pub fn on_rescan(
    remediator: &Arc<Remediator>,
    internet_message_id: &str,
    network_message_id: Option<&str>,
    mailboxes: Vec<String>,
    before: &str,
    after: &str,
) -> bool {
    let on = &remediator.cfg.on_verdicts;
    if !on.iter().any(|v| v == after) || on.iter().any(|v| v == before) || mailboxes.is_empty() {
        return false;
    }
    spawn(
        remediator.clone(),
        Job {
            internet_message_id: internet_message_id.to_string(),
            network_message_id: network_message_id.map(str::to_string),
            mailboxes,
            action: remediator.cfg.action,
            trigger: Trigger::Rescan,
        },
    );
    true
}

/// A random GUID (version 4), for `client-request-id` and assertion `jti`.
pub(crate) fn guid() -> String {
    use ring::rand::SecureRandom;
    let mut b = [0u8; 16];
    let _ = ring::rand::SystemRandom::new().fill(&mut b);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// Percent-encodes everything but RFC 3986 unreserved characters (`+`
/// included: Graph reads a literal `+` in a query as a space).
pub(crate) fn pct(text: &str) -> String {
    let mut out = String::with_capacity(text.len() * 3);
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guids_and_encoding() {
        let g = guid();
        assert_eq!(g.len(), 36);
        assert_eq!(&g[14..15], "4");
        assert_ne!(guid(), g);
        assert_eq!(pct("<a+b'c d@x>"), "%3Ca%2Bb%27c%20d%40x%3E");
    }
}
