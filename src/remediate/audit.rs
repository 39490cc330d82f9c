//! The audit record of one mailbox's remediation: tenant, Internet
//! Message-ID, Network-Message-Id, mailbox, method, action, trigger, outcome,
//! attempts and Microsoft's request ids. The event store is not on main yet:
//! until it is, the record is this one structured log line (the one place to
//! change when it lands). Never carries a secret or a token.

use crate::remediate::{Job, MailboxResult, Outcome, Remediator};

pub(crate) fn record(r: &Remediator, job: &Job, result: &MailboxResult) {
    let ok = !matches!(result.outcome, Outcome::Failed(_) | Outcome::Refused(_));
    let fields = |level_ok: bool| {
        if level_ok {
            tracing::info!(
                audit = "remediation",
                tenant = %r.portal,
                message_id = %job.internet_message_id,
                network_message_id = %job.network_message_id.clone().unwrap_or_default(),
                mailbox = %result.mailbox,
                method = r.cfg.method.as_str(),
                action = job.action.as_str(),
                trigger = %job.trigger,
                outcome = %result.outcome,
                attempts = result.attempts,
                request_ids = ?result.request_ids,
                "remediation audit"
            );
        } else {
            tracing::warn!(
                audit = "remediation",
                tenant = %r.portal,
                message_id = %job.internet_message_id,
                network_message_id = %job.network_message_id.clone().unwrap_or_default(),
                mailbox = %result.mailbox,
                method = r.cfg.method.as_str(),
                action = job.action.as_str(),
                trigger = %job.trigger,
                outcome = %result.outcome,
                attempts = result.attempts,
                request_ids = ?result.request_ids,
                "remediation audit"
            );
        }
    };
    fields(ok);
}
