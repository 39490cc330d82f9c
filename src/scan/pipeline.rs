//! The scanning pipeline: parse the message once, build its one view
//! ([`View`]: attachments, text and links), run the policy's checks
//! concurrently on it, each under its own timeout, and merge what they found
//! into a [`Verdict`].
//!
//! A check that errors or times out is handled by its `on_error` policy.
//! When the policy authenticates senders (its `sender` stage, set by the
//! factory for `auth`, `dnsbl` and `rspamd`), that runs first, bounded by
//! `[dns] message_timeout`, and every check gets its results. The
//! pipeline runs whatever checks its [`Policy`] holds: the factory in `checks`
//! builds them and `app` hands them over; the pipeline never names a check.

use std::sync::Arc;
use std::time::{Duration, Instant};

use mail_parser::MessageParser;

use crate::config::tenant::Tenant;
use crate::message::auth::AuthResults;
use crate::message::envelope::{Direction, Envelope, SessionFacts};
use crate::message::headers::header_len;
use crate::message::verdict::{CheckFailure, Finding, Thresholds, Verdict};
use crate::scan::check::{ConfiguredCheck, ScanInput};
use crate::scan::sender::{SenderAuth, SenderInput};
use crate::scan::view::View;

/// How long one check took and whether it answered.
#[derive(Debug, Clone)]
pub struct CheckTiming {
    pub name: String,
    pub kind: &'static str,
    pub elapsed: Duration,
    pub failed: bool,
}

/// The result of scanning one message.
#[derive(Debug, Clone)]
pub struct ScanReport {
    pub verdict: Verdict,
    pub timings: Vec<CheckTiming>,
    /// Sender authentication, when the policy ran it.
    pub auth: Option<AuthResults>,
}

/// A named set of checks with thresholds.
pub struct Policy {
    pub(crate) thresholds: Thresholds,
    /// Messages larger than this are scanned on their header only.
    pub(crate) scan_max_size: u64,
    pub(crate) checks: Vec<ConfiguredCheck>,
    /// Sender authentication, run before the checks (see the module doc).
    pub(crate) sender: Option<Arc<SenderAuth>>,
}

impl Policy {
    /// Parses `raw` and runs every check. `full_size` is the size of the
    /// whole message: over `scan_max_size`, `raw` may hold only its header
    /// (only the header is scanned either way). `exo_session`: the session
    /// was admitted as the tenant's Exchange Online connection; `queue_id`:
    /// the id the message was given.
    #[allow(clippy::too_many_arguments)]
    pub async fn scan(
        &self,
        raw: &[u8],
        full_size: u64,
        envelope: &Envelope,
        session: &SessionFacts,
        tenant: &Tenant,
        direction: Direction,
        exo_session: bool,
        queue_id: &str,
    ) -> ScanReport {
        let truncated = full_size > self.scan_max_size;
        let raw = if truncated { &raw[..header_len(raw)] } else { raw };
        let Some(message) = MessageParser::default().parse(raw) else {
            let finding = Finding {
                check: "pipeline".into(),
                ..Finding::new(
                    self.thresholds.junk,
                    "unparseable",
                    "the message could not be parsed as MIME",
                )
            };
            return ScanReport {
                verdict: Verdict::decide(&self.thresholds, vec![finding], vec![]),
                timings: vec![],
                auth: None,
            };
        };
        let view = View::new(&message, truncated);
        let input = ScanInput {
            raw,
            message: &message,
            view: &view,
            envelope,
            session,
            tenant,
            direction,
            truncated,
            exo_session,
            queue_id,
            auth: None,
        };
        let mut report = self.run(&input).await;
        if truncated {
            // Visible in the verdict header and the log, with no score of its own.
            report.verdict.findings.push(Finding {
                check: "pipeline".into(),
                ..Finding::new(
                    0.0,
                    "header-only-scan",
                    format!(
                        "message of {full_size} bytes is over scan_max_size ({}): only its header was scanned",
                        self.scan_max_size
                    ),
                )
            });
        }
        report
    }

    /// Runs the checks on an already prepared input.
    pub(crate) async fn run(&self, input: &ScanInput<'_>) -> ScanReport {
        // Written as on the wire: a quoted local part stays quoted, so the
        // domain after the last `@` is the mailbox's.
        let mail_from = input.envelope.mail_from.to_string();
        let auth = match &self.sender {
            Some(sender) => Some(
                sender
                    .evaluate(&SenderInput {
                        raw: input.raw,
                        message: input.message,
                        mail_from: &mail_from,
                        client_ip: input.session.client_ip,
                        helo: &input.session.helo,
                        exo_session: input.exo_session,
                        truncated: input.truncated,
                    })
                    .await,
            ),
            None => None,
        };
        let input = &ScanInput {
            auth: auth.as_ref().or(input.auth),
            ..*input
        };
        let runs = self.checks.iter().map(|c| async move {
            let started = Instant::now();
            let result = tokio::time::timeout(c.timeout, c.check.scan(input)).await;
            (c, started.elapsed(), result)
        });
        let results = futures::future::join_all(runs).await;

        let mut findings = Vec::new();
        let mut failures = Vec::new();
        let mut timings = Vec::new();
        for (c, elapsed, result) in results {
            let error = match result {
                Ok(Ok(found)) => {
                    findings.extend(found.into_iter().map(|mut f| {
                        f.check = c.name.clone();
                        f
                    }));
                    None
                }
                Ok(Err(e)) => Some(e.to_string()),
                Err(_) => Some(format!("timed out after {:?}", c.timeout)),
            };
            timings.push(CheckTiming {
                name: c.name.clone(),
                kind: c.check.kind(),
                elapsed,
                failed: error.is_some(),
            });
            if let Some(error) = error {
                tracing::warn!(check = %c.name, kind = c.check.kind(), %error, "check failed");
                failures.push((
                    CheckFailure {
                        check: c.name.clone(),
                        error,
                    },
                    c.on_error,
                ));
            }
        }
        ScanReport {
            verdict: Verdict::decide(&self.thresholds, findings, failures),
            timings,
            auth,
        }
    }
}
