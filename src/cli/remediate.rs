//! `exogate remediate`: an administrator asks to remove one message from
//! mailboxes ("purge this message everywhere"), through the tenant's
//! `[tenant.remediation]` client, the same code the monitor-mode trigger uses.
//!
//! Until the event store can say who received a message, the mailboxes are
//! given with `--mailbox`; only the tenant's own are accepted. Prints one line
//! per mailbox; every outcome is also an audit record (standard error).

use std::path::Path;

use clap::Args;

use crate::app::AppError;
use crate::config::remediation::RemediationAction;
use crate::remediate::{Job, Outcome, Remediator, Trigger, tenant_mailboxes};

#[derive(Args, Clone)]
pub struct RemediateArgs {
    /// The tenant's portal name.
    #[arg(long)]
    pub tenant: String,
    /// The message's Internet Message-ID, with its angle brackets.
    #[arg(long = "message-id")]
    pub message_id: String,
    /// move, soft-delete or delete (default: the tenant's `action`).
    #[arg(long)]
    pub action: Option<String>,
    /// A mailbox to act on (repeat for each recipient).
    #[arg(long = "mailbox", required = true)]
    pub mailboxes: Vec<String>,
    /// EXO's Network-Message-Id, for the audit record.
    #[arg(long = "network-message-id")]
    pub network_message_id: Option<String>,
}

/// Runs it; `Ok(false)` when a mailbox failed or refused.
pub fn run(config: &Path, args: RemediateArgs) -> Result<bool, AppError> {
    let cfg = crate::config::Config::load(config)?;
    let tenant = cfg
        .tenants
        .iter()
        .find(|t| t.portal == args.tenant)
        .ok_or_else(|| AppError::Other(format!("no tenant with portal \"{}\"", args.tenant)))?;
    let rcfg = tenant.remediation.clone().ok_or_else(|| {
        AppError::Other(format!(
            "tenant \"{}\" has no [tenant.remediation] (see docs/remediation.md)",
            tenant.portal
        ))
    })?;
    let action = match &args.action {
        None => rcfg.action,
        Some(a) => RemediationAction::parse(a)
            .ok_or_else(|| AppError::Other(format!("--action must be move, soft-delete or delete, not \"{a}\"")))?,
    };
    if action == RemediationAction::Move && rcfg.folder.is_none() {
        return Err(AppError::Other(
            "--action move needs the tenant's remediation.folder".into(),
        ));
    }
    let id = args.message_id.trim();
    if !(id.starts_with('<') && id.ends_with('>') && id.len() > 2) {
        return Err(AppError::Other(format!(
            "--message-id must be the Internet Message-ID with its angle brackets, as <...@...>, not \"{id}\""
        )));
    }
    let mailboxes = tenant_mailboxes(tenant, args.mailboxes.iter().map(String::as_str));
    let foreign: Vec<&String> = args
        .mailboxes
        .iter()
        .filter(|m| !mailboxes.contains(&m.to_lowercase()))
        .collect();
    if !foreign.is_empty() {
        return Err(AppError::Other(format!(
            "not mailboxes of tenant \"{}\" (its domains: {}): {}",
            tenant.portal,
            tenant.domains.join(", "),
            foreign.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
        )));
    }
    let remediator = Remediator::new(&tenant.portal, rcfg).map_err(|e| AppError::Other(e.to_string()))?;
    let job = Job {
        internet_message_id: id.to_string(),
        network_message_id: args.network_message_id,
        mailboxes,
        action,
        trigger: Trigger::Admin(std::env::var("USER").unwrap_or_else(|_| "cli".into())),
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| AppError::Other(format!("cannot start the async runtime: {e}")))?;
    let results = rt.block_on(remediator.run(&job));
    let mut ok = true;
    for r in &results {
        if matches!(r.outcome, Outcome::Failed(_) | Outcome::Refused(_)) {
            ok = false;
        }
        println!("{}\t{}\t(attempts: {})", r.mailbox, r.outcome, r.attempts);
    }
    Ok(ok)
}
