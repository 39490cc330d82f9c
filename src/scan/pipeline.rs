//! The scanning pipeline: parse the message once, run the policy's checks
//! concurrently on it, each under its own timeout, and merge what they found
//! into a [`Verdict`].
//!
//! Checks read; they never write SMTP replies, never touch the raw bytes that
//! will be relayed and never decide the action alone (they may *force* one
//! through a finding). A check that errors or times out is handled by its
//! `on_error` policy. Adding a check is one file in `src/checks/` and one line
//! in `checks::build`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use mail_parser::{Message, MessageParser};

use crate::config::reader::Section;
use crate::config::tenant::Tenant;
use crate::message::envelope::{Direction, Envelope, SessionFacts};
use crate::message::verdict::{Action, CheckFailure, Finding, OnError, Thresholds, Verdict};
use crate::scan::inventory::{self, Attachment};

/// Everything a check may look at.
pub struct ScanInput<'a> {
    /// The message bytes as received (or only its header when `truncated`).
    pub raw: &'a [u8],
    pub message: &'a Message<'a>,
    /// Decoded attachments, including the members of TNEF containers and the
    /// parts of attached messages.
    pub attachments: &'a [Attachment<'a>],
    pub envelope: &'a Envelope,
    pub session: &'a SessionFacts,
    pub tenant: &'a Tenant,
    pub direction: Direction,
    /// The message was larger than the policy's `scan_max_size`: only the
    /// header was parsed and `raw` holds just the header.
    pub truncated: bool,
}

/// Why a check could not answer. Temporary versus permanent does not matter
/// here: every failure is routed through the check's `on_error` policy.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    #[error("scanner unavailable: {0}")]
    Unavailable(String),
    #[error("scanner protocol error: {0}")]
    Protocol(String),
    #[error("{0}")]
    Other(String),
}

impl From<std::io::Error> for CheckError {
    fn from(e: std::io::Error) -> Self {
        CheckError::Unavailable(e.to_string())
    }
}

/// One scanning engine or rule set.
#[async_trait]
pub trait Check: Send + Sync {
    /// Its `kind` in the configuration.
    fn kind(&self) -> &'static str;

    async fn scan(&self, input: &ScanInput<'_>) -> Result<Vec<Finding>, CheckError>;
}

/// What a check builder gets besides its own options.
pub struct BuildContext {
    /// Folder of the config file; relative paths in options are relative to it.
    pub base_dir: PathBuf,
}

/// A check as the policy configured it.
pub struct ConfiguredCheck {
    pub name: String,
    pub timeout: Duration,
    pub on_error: OnError,
    pub check: Arc<dyn Check>,
}

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
}

/// A named set of checks with thresholds.
pub struct Policy {
    pub name: String,
    pub thresholds: Thresholds,
    /// Messages larger than this are scanned on their header only.
    pub scan_max_size: u64,
    pub checks: Vec<ConfiguredCheck>,
}

pub const DEFAULT_CHECK_TIMEOUT: Duration = Duration::from_secs(30);
pub const DEFAULT_SCAN_MAX_SIZE: u64 = 64 * 1024 * 1024;

impl Policy {
    /// Reads `[policy.NAME]`; problems are recorded in the section's sink.
    pub fn read(name: &str, section: &Section, cx: &BuildContext) -> Policy {
        let defaults = Thresholds::default();
        let thresholds = Thresholds {
            junk: section.f64_or("junk_score", defaults.junk),
            quarantine: section.f64_or("quarantine_score", defaults.quarantine),
            reject: section.f64_or("reject_score", defaults.reject),
        };
        if !(thresholds.junk <= thresholds.quarantine && thresholds.quarantine <= thresholds.reject) {
            section.error(
                "junk_score",
                format!(
                    "thresholds must satisfy junk_score <= quarantine_score <= reject_score, found {} / {} / {}",
                    thresholds.junk, thresholds.quarantine, thresholds.reject
                ),
            );
        }
        let scan_max_size = section.size_or("scan_max_size", DEFAULT_SCAN_MAX_SIZE);
        let mut checks = Vec::new();
        for check in section.sections("check") {
            if let Some(c) = read_check(&check, cx) {
                if checks.iter().any(|other: &ConfiguredCheck| other.name == c.name) {
                    check.error(
                        "name",
                        format!(
                            "a check named \"{}\" already exists in this policy; give each a distinct name",
                            c.name
                        ),
                    );
                }
                checks.push(c);
            }
        }
        Policy {
            name: name.to_string(),
            thresholds,
            scan_max_size,
            checks,
        }
    }

    /// The policy used when the configuration defines no `[policy.default]`:
    /// every built-in check with its default options.
    pub fn builtin_default(cx: &BuildContext) -> Policy {
        let problems = crate::config::reader::Problems::default();
        let empty = toml::Table::new();
        let mut checks = Vec::new();
        for kind in crate::checks::BUILTIN_DEFAULTS {
            let opts = Section::root(&empty, &problems);
            if let Some(check) = crate::checks::build(kind, &opts, cx) {
                checks.push(ConfiguredCheck {
                    name: kind.to_string(),
                    timeout: DEFAULT_CHECK_TIMEOUT,
                    on_error: OnError::Ignore,
                    check,
                });
            }
        }
        debug_assert!(problems.is_empty(), "built-in defaults must be valid");
        Policy {
            name: "default".into(),
            thresholds: Thresholds::default(),
            scan_max_size: DEFAULT_SCAN_MAX_SIZE,
            checks,
        }
    }

    /// Parses `raw` and runs every check. `full_size` is the size of the
    /// whole message: over `scan_max_size`, `raw` may hold only its header
    /// (only the header is scanned either way).
    pub async fn scan(
        &self,
        raw: &[u8],
        full_size: u64,
        envelope: &Envelope,
        session: &SessionFacts,
        tenant: &Tenant,
        direction: Direction,
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
            };
        };
        let attachments = if truncated {
            Vec::new()
        } else {
            inventory::collect(&message)
        };
        let input = ScanInput {
            raw,
            message: &message,
            attachments: &attachments,
            envelope,
            session,
            tenant,
            direction,
            truncated,
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
    pub async fn run(&self, input: &ScanInput<'_>) -> ScanReport {
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
        }
    }
}

fn read_check(section: &Section, cx: &BuildContext) -> Option<ConfiguredCheck> {
    let kind = section.opt_string("kind");
    let name = section.opt_string("name");
    let timeout = section.duration_or("timeout", DEFAULT_CHECK_TIMEOUT);
    let on_error = section.choice_or("on_error", OnError::Ignore, &OnError::CHOICES);
    let Some(kind) = kind else {
        section.error("kind", format!("missing; one of {}", crate::checks::KINDS.join(", ")));
        section.ignore_rest();
        return None;
    };
    let check = crate::checks::build(&kind, section, cx)?;
    Some(ConfiguredCheck {
        name: name.unwrap_or(kind),
        timeout,
        on_error,
        check,
    })
}

/// Length of the header section including the blank line (the whole input if
/// there is no blank line).
pub fn header_len(raw: &[u8]) -> usize {
    let mut i = 0;
    while i < raw.len() {
        if raw[i] == b'\n' {
            if raw.get(i + 1) == Some(&b'\n') {
                return i + 2;
            }
            if raw.get(i + 1) == Some(&b'\r') && raw.get(i + 2) == Some(&b'\n') {
                return i + 3;
            }
        }
        i += 1;
    }
    raw.len()
}

/// What the action means for a tenant in `mode`: detect mode never enforces.
pub fn effective_action(verdict: &Verdict, enforce: bool) -> Action {
    if enforce { verdict.action } else { Action::Deliver }
}

#[cfg(test)]
pub mod test_support {
    //! Builds a [`ScanInput`] around a fixture for the checks' unit tests.
    use super::*;
    use crate::config::tenant::Destination;

    pub fn tenant() -> Tenant {
        Tenant::new("contoso", &["contoso.com", "contoso.onmicrosoft.com"], Destination::Mx)
    }

    pub fn session() -> SessionFacts {
        SessionFacts {
            client_ip: "40.92.1.1".parse().unwrap(),
            client_port: 40000,
            helo: "EUR05-DB8-obe.outbound.protection.outlook.com".into(),
            tls: None,
        }
    }

    /// Runs `f` on the parsed fixture, as the pipeline would present it.
    pub fn with_input<R>(raw: &[u8], mail_from: &str, direction: Direction, f: impl FnOnce(&ScanInput) -> R) -> R {
        with_input_as(&tenant(), raw, mail_from, direction, f)
    }

    /// The same for a given tenant.
    pub fn with_input_as<R>(
        tenant: &Tenant,
        raw: &[u8],
        mail_from: &str,
        direction: Direction,
        f: impl FnOnce(&ScanInput) -> R,
    ) -> R {
        let message = MessageParser::default().parse(raw).expect("fixture parses");
        let attachments = inventory::collect(&message);
        let envelope = Envelope {
            mail_from: mail_from.into(),
            recipients: vec![crate::message::envelope::Recipient {
                address: "user@contoso.com".into(),
                orcpt: None,
                notify: None,
            }],
            ..Envelope::default()
        };
        let session = session();
        let input = ScanInput {
            raw,
            message: &message,
            attachments: &attachments,
            envelope: &envelope,
            session: &session,
            tenant,
            direction,
            truncated: false,
        };
        f(&input)
    }

    /// Runs a check on a fixture and returns its findings.
    pub fn scan(check: &dyn Check, raw: &[u8], mail_from: &str, direction: Direction) -> Vec<Finding> {
        scan_as(check, &tenant(), raw, mail_from, direction)
    }

    /// Runs a check on a fixture for a given tenant.
    pub fn scan_as(
        check: &dyn Check,
        tenant: &Tenant,
        raw: &[u8],
        mail_from: &str,
        direction: Direction,
    ) -> Vec<Finding> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        with_input_as(tenant, raw, mail_from, direction, |input| {
            rt.block_on(check.scan(input)).expect("check answers")
        })
    }

    /// Builds a check of `kind` from TOML options, panicking on config problems.
    pub fn build(kind: &str, options: &str) -> Arc<dyn Check> {
        let table: toml::Table = options.parse().expect("options parse");
        let problems = crate::config::reader::Problems::default();
        let check = {
            let section = Section::root(&table, &problems);
            let cx = BuildContext {
                base_dir: PathBuf::from("."),
            };
            crate::checks::build(kind, &section, &cx)
        };
        let errors = problems.into_vec();
        assert!(errors.is_empty(), "config problems: {errors:?}");
        check.expect("check builds")
    }

    /// Config problems reported when building a check of `kind` from `options`.
    pub fn build_errors(kind: &str, options: &str) -> Vec<String> {
        let table: toml::Table = options.parse().expect("options parse");
        let problems = crate::config::reader::Problems::default();
        {
            let section = Section::root(&table, &problems);
            let cx = BuildContext {
                base_dir: PathBuf::from("."),
            };
            let _ = crate::checks::build(kind, &section, &cx);
        }
        problems.into_vec().iter().map(|e| e.to_string()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_length_handles_both_line_endings() {
        assert_eq!(header_len(b"A: b\r\n\r\nbody"), 8);
        assert_eq!(header_len(b"A: b\n\nbody"), 6);
        assert_eq!(header_len(b"A: b\r\n"), 6);
    }
}
