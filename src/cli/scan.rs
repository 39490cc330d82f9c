//! `exogate scan`: judge messages from files or standard input with a
//! tenant's policy and say why, as `rspamc` or `spamassassin -t` do.
//!
//! The judging is `app::Scanner` (the daemon's pipeline); this file reads the
//! inputs and prints. Each input gets a result even when another fails: a
//! file that cannot be read, or is larger than the gateway accepts, is
//! reported with its error and the exit status is 1 once every input has
//! been tried. With `--json`, exactly one line per input, in input order:
//! `{"file", "action", "score", "findings": [{"check", "tag", "reason",
//! "score"}], "error", ...}`. `action` is the verdict's (what an inline
//! tenant would get); `enforced` is what this tenant's mode does with it.
//! Never writes anything but standard output and standard error.

use std::io::Read;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use clap::{Args, ValueEnum};
use futures::StreamExt;
use serde_json::json;

use crate::app::{AppError, ScanOptions, Scanned, Scanner, scan::UNKNOWN_CLIENT};
use crate::config::tenant::TenantMode;
use crate::message::envelope::Direction;
use crate::message::verdict::Action;

/// Messages judged at once (the checks inside one message already run concurrently).
const IN_FLIGHT: usize = 4;

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum DirectionArg {
    Inbound,
    Outgoing,
    Internal,
}

impl From<DirectionArg> for Direction {
    fn from(d: DirectionArg) -> Direction {
        match d {
            DirectionArg::Inbound => Direction::Inbound,
            DirectionArg::Outgoing => Direction::Outgoing,
            DirectionArg::Internal => Direction::Internal,
        }
    }
}

#[derive(Args, Clone, Debug)]
pub struct ScanArgs {
    /// The tenant (portal) whose policy judges; default: the portal in
    /// X-CLOUD-SEC-AV-Info, else the recipients' tenant, else the only tenant.
    #[arg(long)]
    pub tenant: Option<String>,
    /// Default: from X-CLOUD-SEC-AV-Info, else inferred from the domains.
    #[arg(long, value_enum)]
    pub direction: Option<DirectionArg>,
    /// One JSON object per line per message.
    #[arg(long)]
    pub json: bool,
    /// The SMTP client's address as the sender checks see it (default: 192.0.2.1, unknown).
    #[arg(long, value_name = "IP")]
    pub client_ip: Option<IpAddr>,
    /// The client's EHLO name.
    #[arg(long, default_value = "unknown")]
    pub helo: String,
    /// Envelope sender (default: Return-Path, else From).
    #[arg(long, value_name = "ADDRESS")]
    pub mail_from: Option<String>,
    /// Envelope recipient, repeatable (default: the tenant's addresses in To/Cc).
    #[arg(long = "rcpt", value_name = "ADDRESS")]
    pub rcpt: Vec<String>,
    /// Message files; `-` is standard input.
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
}

/// What became of one input.
struct Outcome {
    file: String,
    result: Result<Scanned, String>,
    elapsed_ms: f64,
}

/// Runs `exogate scan`; `Ok(false)` when some input could not be judged.
pub fn run(config: &Path, args: ScanArgs) -> Result<bool, AppError> {
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| AppError::Other(format!("cannot start the async runtime: {e}")))?;
    tokio.block_on(run_async(config, args))
}

async fn run_async(config: &Path, args: ScanArgs) -> Result<bool, AppError> {
    let scanner = Scanner::open(config)?;
    if let Some(t) = &args.tenant {
        scanner.check_tenant(t)?;
    }
    if args.files.iter().filter(|f| f.as_os_str() == "-").count() > 1 {
        return Err(AppError::Other("standard input (-) can be read only once".into()));
    }
    let options = ScanOptions {
        tenant: args.tenant.clone(),
        direction: args.direction.map(Direction::from),
        client_ip: args.client_ip.unwrap_or(UNKNOWN_CLIENT),
        helo: args.helo.clone(),
        mail_from: args.mail_from.clone(),
        recipients: args.rcpt.clone(),
    };
    let limit = scanner.max_message_size();
    let scanner = Arc::new(scanner);
    let options = Arc::new(options);
    let mut outcomes = futures::stream::iter(args.files.iter().cloned().enumerate())
        .map(|(i, path)| {
            let scanner = scanner.clone();
            let options = options.clone();
            async move {
                let started = std::time::Instant::now();
                let file = path.display().to_string();
                let result = match read_input(&path, limit) {
                    // A task of its own: a bug that panics in a check costs
                    // this message's result, not the others'.
                    Ok(raw) => tokio::spawn(async move { scanner.scan(&raw, &options, &format!("SCAN{i:06}")).await })
                        .await
                        .unwrap_or_else(|e| {
                            Err(format!("internal error while scanning (a bug; please report it): {e}"))
                        }),
                    Err(e) => Err(e),
                };
                Outcome {
                    file,
                    result,
                    elapsed_ms: started.elapsed().as_secs_f64() * 1000.0,
                }
            }
        })
        .buffered(IN_FLIGHT);
    let mut all_ok = true;
    let stdout = std::io::stdout();
    while let Some(outcome) = outcomes.next().await {
        all_ok &= outcome.result.is_ok();
        let text = if args.json {
            let mut line = json_line(&outcome).to_string();
            line.push('\n');
            line
        } else {
            human(&outcome)
        };
        use std::io::Write;
        let mut out = stdout.lock();
        out.write_all(text.as_bytes())
            .and_then(|_| out.flush())
            .map_err(|e| AppError::Other(format!("writing to standard output: {e}")))?;
    }
    Ok(all_ok)
}

/// The bytes of one input, refused past what the gateway accepts over SMTP.
fn read_input(path: &Path, limit: u64) -> Result<Vec<u8>, String> {
    let mut raw = Vec::new();
    let read = if path.as_os_str() == "-" {
        std::io::stdin().lock().take(limit + 1).read_to_end(&mut raw)
    } else {
        std::fs::File::open(path).and_then(|f| {
            // Sized from the file's length: `read_to_end` through `take` cannot
            // see it and grows by doubling, so a 25 MB file held a 32 MiB
            // buffer (up to twice the file) while it was scanned. `take` still
            // bounds a file that grows while it is read.
            let len = f.metadata().map_or(0, |m| m.len()).min(limit + 1);
            raw.reserve_exact(usize::try_from(len).unwrap_or(0));
            f.take(limit + 1).read_to_end(&mut raw)
        })
    };
    read.map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    if raw.len() as u64 > limit {
        return Err(format!(
            "larger than server.max_message_size ({limit} bytes): the gateway refuses it at SMTP (552 5.3.4)"
        ));
    }
    if raw.is_empty() {
        return Err("empty input: no message".into());
    }
    Ok(raw)
}

fn enforced(s: &Scanned) -> Action {
    if s.tenant.mode == TenantMode::Inline {
        s.report.verdict.action
    } else {
        Action::Deliver
    }
}

fn json_line(o: &Outcome) -> serde_json::Value {
    match &o.result {
        Ok(s) => {
            let v = &s.report.verdict;
            json!({
                "file": o.file,
                "action": v.action.as_str(),
                "score": v.score,
                "findings": v.findings.iter().map(|f| json!({
                    "check": f.check, "tag": f.tag, "reason": f.reason, "score": f.score,
                    "force": f.force.map(|a| a.as_str()),
                })).collect::<Vec<_>>(),
                "error": null,
                "failures": v.failures.iter().map(|f| json!({"check": f.check, "error": f.error})).collect::<Vec<_>>(),
                "tempfail": v.tempfail,
                "tenant": s.tenant.portal,
                "mode": s.tenant.mode.as_str(),
                "enforced": enforced(s).as_str(),
                "direction": s.direction.as_str(),
                "auth": s.report.auth.as_ref().map(|a| a.summary()),
                "ms": o.elapsed_ms,
            })
        }
        Err(e) => json!({
            "file": o.file, "action": null, "score": null, "findings": [], "error": e,
        }),
    }
}

fn human(o: &Outcome) -> String {
    let s = match &o.result {
        Ok(s) => s,
        Err(e) => return format!("{}\n  error: {e}\n\n", o.file),
    };
    let v = &s.report.verdict;
    let mut out = format!("{}\n", o.file);
    out.push_str(&format!(
        "  action: {}   score: {:.1}   (junk {:.1}, quarantine {:.1}, reject {:.1})\n",
        v.action, v.score, s.junk, s.quarantine, s.reject
    ));
    if v.tempfail {
        out.push_str("  tempfail: a failed check asks for a retry (4xx)\n");
    }
    out.push_str(&format!(
        "  tenant: {} ({} mode: {} {})   direction: {} ({})\n",
        s.tenant.portal,
        s.tenant.mode.as_str(),
        if s.tenant.mode == TenantMode::Inline {
            "enforced as"
        } else {
            "delivered, would be"
        },
        if s.tenant.mode == TenantMode::Inline {
            enforced(s)
        } else {
            v.action
        },
        s.direction,
        s.direction_source.as_str()
    ));
    out.push_str(&format!(
        "  envelope: <{}> -> {}\n",
        s.envelope.mail_from,
        s.envelope
            .recipients
            .iter()
            .map(|r| r.address.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    ));
    if let Some(auth) = &s.report.auth {
        out.push_str(&format!("  auth: {}\n", auth.summary()));
    }
    let mut findings: Vec<_> = v.findings.iter().collect();
    findings.sort_by(|a, b| {
        b.force
            .cmp(&a.force)
            .then(b.score.partial_cmp(&a.score).unwrap_or(std::cmp::Ordering::Equal))
    });
    if findings.is_empty() {
        out.push_str("  no findings\n");
    } else {
        out.push_str("   score  check/tag  reason\n");
    }
    for f in findings {
        let force = f.force.map(|a| format!(" [forces {a}]")).unwrap_or_default();
        out.push_str(&format!(
            "  {:>6.1}  {}/{}{}  {}\n",
            f.score, f.check, f.tag, force, f.reason
        ));
    }
    for f in &v.failures {
        out.push_str(&format!("  failed: {}: {}\n", f.check, f.error));
    }
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use super::read_input;

    /// The buffer is sized from the file's length; the bytes and the limit
    /// must come out as before (at the limit read whole, one past refused).
    #[test]
    fn a_file_is_read_whole_up_to_the_limit_and_refused_past_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.eml");
        let body: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(&path, &body).unwrap();
        assert_eq!(read_input(&path, 10_000).unwrap(), body);
        assert_eq!(read_input(&path, 20_000).unwrap(), body);
        let refused = read_input(&path, 9_999).unwrap_err();
        assert!(refused.contains("larger than server.max_message_size"), "{refused}");
        std::fs::write(&path, b"").unwrap();
        assert!(read_input(&path, 10_000).unwrap_err().contains("empty input"));
    }
}
