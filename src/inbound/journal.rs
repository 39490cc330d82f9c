//! Monitor mode: what happens to a journal report once its last byte has
//! arrived (DESIGN §13). The report's tenant is the monitor tenant whose
//! `journal_address` received it, confirmed by the report's own
//! `X-MS-Exchange-CrossTenant-Id` where the tenant has a `tenant_id`. The
//! report's envelope part gives the original's real envelope and so its
//! direction; the attached original is scanned with them (DLP runs on sent
//! mail, internal mail is not taken for a spoof); one event is recorded per
//! journaled message.
//!
//! Invariants: a report is never relayed (the caller never opened a
//! downstream leg for it, and no variant returned here delivers); a report
//! that cannot be read is kept in `quarantine-reports/` and counted, and its
//! 250 comes only after that commit; a report whose scan must be retried
//! gets a 4xx (Exchange Online retries journal reports). Must never: take
//! recipients from the original's To/Cc, or trust the report without its
//! tenant id check.

use std::sync::Arc;
use std::time::Instant;

use crate::config::tenant::Tenant;
use crate::inbound::admission;
use crate::inbound::disposition::{Prepared, read_back, record_checks};
use crate::inbound::{Context, Settings};
use crate::message::envelope::{Direction, Envelope, Mailbox, Recipient, SessionFacts};
use crate::message::headers;
use crate::message::journal::{self, JournalReport};
use crate::message::verdict::Action;
use crate::scan::pipeline::ScanReport;
use crate::smtp::reply::Reply;
use crate::spool::format::{Kind, Meta};
use crate::spool::incoming::Body;
use crate::spool::now_unix;

/// Whether this transaction is a journal report: its recipients are the
/// tenant's journal address (admission never mixes them with other mail).
pub(crate) fn is_journal(tenant: &Tenant, envelope: &Envelope) -> bool {
    !envelope.recipients.is_empty()
        && envelope
            .recipients
            .iter()
            .all(|r| tenant.is_journal_address(&r.address))
}

/// Confirms, parses, scans and records one journal report.
pub(crate) async fn prepare(
    cx: &Context,
    rt: &Settings,
    id: &str,
    session: SessionFacts,
    envelope: Envelope,
    tenant: Arc<Tenant>,
    body: Body,
) -> Prepared {
    let started = Instant::now();
    // The whole report: the original is inside it (the size is bounded by
    // the session's message size limit).
    let raw = match read_back(&body, u64::MAX, id).await {
        Ok(raw) => raw,
        Err(reply) => {
            body.discard();
            return Prepared::Refused(reply);
        }
    };
    if let Err(refusal) = admission::confirm_journal(&tenant, &raw) {
        cx.metrics.admission_refusals.inc(&["tenant-headers"]);
        tracing::warn!(
            queue_id = id,
            client = %session.client_ip,
            tenant = %tenant.portal,
            reason = %refusal.reason,
            "journal report refused at end of data"
        );
        drop(raw);
        body.discard();
        return Prepared::Refused(refusal.reply);
    }
    let report = match journal::parse(&raw) {
        Ok(report) => report,
        Err(e) => {
            cx.metrics.journal_reports.inc(&[&tenant.portal, e.label()]);
            tracing::warn!(
                queue_id = id,
                tenant = %tenant.portal,
                error = %e,
                report_network_message_id = %headers::values(&raw, "X-MS-Exchange-CrossTenant-Network-Message-Id").into_iter().next().unwrap_or_default(),
                "journal report cannot be read: kept in quarantine-reports/"
            );
            let ids = crate::message::trace::MessageIds::from_header(&raw);
            drop(raw);
            let meta = Meta {
                id: id.to_string(),
                received: now_unix(),
                kind: Kind::Message,
                envelope,
                session,
                ids,
                tenant: tenant.portal.clone(),
                direction: Direction::Inbound,
                verdict: None,
                skips: Vec::new(),
                route: None,
                sender_authenticated: false,
            };
            return Prepared::KeepReport { meta, body };
        }
    };

    let facts = facts_of(&tenant, &report);
    let scan_envelope = Envelope {
        // Addresses as the report states them, typed like any envelope's
        // (one that is no address at all is left out of the scan's view).
        mail_from: Mailbox::from_text(&report.envelope.sender).unwrap_or_default(),
        recipients: report
            .envelope
            .recipients
            .iter()
            .filter_map(|r| Mailbox::from_text(&r.address))
            .map(|address| Recipient {
                address,
                orcpt: None,
                notify: None,
            })
            .collect(),
        smtputf8: !report.envelope.sender.is_ascii()
            || report.envelope.recipients.iter().any(|r| !r.address.is_ascii()),
        ..Envelope::default()
    };
    let policy = rt.policy(&tenant.policy);
    let scan = {
        let _permit = cx.scan_permits.acquire().await;
        // The report came from the tenant's Exchange Online when its tenant id
        // was confirmed above; EXO's fields in the original may then stand for
        // the original sender.
        let exo_session = tenant.tenant_id.is_some();
        policy
            .scan(
                &report.original,
                report.original.len() as u64,
                &scan_envelope,
                &session,
                &tenant,
                facts.scanned_as,
                exo_session,
                id,
            )
            .await
    };
    record_checks(cx, &scan);
    if scan.verdict.tempfail {
        cx.metrics.journal_reports.inc(&[&tenant.portal, "tempfail"]);
        tracing::warn!(queue_id = id, tenant = %tenant.portal, "journal report could not be scanned: 4xx, Exchange Online retries it");
        drop(raw);
        body.discard();
        return Prepared::Refused(Reply::SCAN_TEMPFAIL);
    }
    cx.metrics.journal_reports.inc(&[&tenant.portal, "scanned"]);
    cx.metrics
        .messages
        .inc(&[&tenant.portal, facts.scanned_as.as_str(), "monitor"]);
    let event = JournalEvent {
        queue_id: id,
        tenant: &tenant,
        report: &report,
        facts: &facts,
        scan: &scan,
        elapsed_ms: started.elapsed().as_millis() as u64,
    };
    record_event(&event);
    // The same record an inline message gets, in the store: the original's
    // envelope and header, the verdict, `monitor` as what was carried out.
    cx.store
        .record_event(crate::store::record::event(&crate::store::record::Facts {
            queue_id: id,
            time: now_unix(),
            node: &rt.config.store.node,
            tenant: &tenant.portal,
            direction: facts.envelope_direction,
            envelope: &scan_envelope,
            session: &session,
            raw: &report.original,
            size: report.original.len() as u64,
            verdict: Some(&scan.verdict),
            action: "monitor",
            auth: scan.auth.as_ref(),
        }));
    if let Some(remediator) = rt.remediators.get(&tenant.portal) {
        remediate_after_verdict(remediator, &tenant, &report, scan.verdict.action);
    }
    drop(report);
    drop(raw);
    body.discard();
    Prepared::Monitored { id: id.to_string() }
}

/// Monitor mode's "prevent" step: a verdict in the tenant's `on_verdicts`
/// starts the remediation of the original in its recipients' mailboxes (the
/// tenant's own only; group and forwarding-source addresses are not
/// mailboxes). Runs in the background: the report's 250 does not wait.
fn remediate_after_verdict(
    remediator: &Arc<crate::remediate::Remediator>,
    tenant: &Tenant,
    report: &JournalReport<'_>,
    action: Action,
) {
    if !remediator.config().on_verdicts.iter().any(|v| v == action.as_str()) {
        return;
    }
    let mailboxes =
        crate::remediate::tenant_mailboxes(tenant, report.envelope.recipients.iter().map(|r| r.address.as_str()));
    if mailboxes.is_empty() {
        return;
    }
    let job = crate::remediate::Job {
        internet_message_id: report
            .original_message_id()
            .unwrap_or_else(|| report.envelope.message_id.clone()),
        network_message_id: report.original_network_message_id(),
        mailboxes,
        action: remediator.config().action,
        trigger: crate::remediate::Trigger::Verdict(action.as_str().to_string()),
    };
    tracing::info!(tenant = %tenant.portal, message_id = %job.internet_message_id, mailboxes = job.mailboxes.len(), trigger = %job.trigger, "remediation started");
    crate::remediate::spawn(remediator.clone(), job);
}

/// The direction the report implies, and the one the original is scanned as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Facts {
    /// From the envelope part: sender in the tenant's domains → outgoing, or
    /// internal when every recipient is too; otherwise inbound.
    pub(crate) envelope_direction: Direction,
    /// The envelope's, except that an original Exchange Online received
    /// anonymously (`AuthAs: Anonymous`: not submitted by a tenant user) is
    /// scanned as inbound: journaling calls spoofed mail from an accepted
    /// domain internal (exchange-online.md §4.1), the spoof checks must
    /// still see it. Only ever stricter than the envelope's direction.
    pub(crate) scanned_as: Direction,
}

pub(crate) fn facts_of(tenant: &Tenant, report: &JournalReport<'_>) -> Facts {
    let internal = |address: &str| {
        journal::domain_ascii(address).is_some_and(|d| {
            tenant.owns_domain(&d)
                || tenant
                    .domains
                    .iter()
                    .any(|t| idna::domain_to_ascii(t).is_ok_and(|a| a.eq_ignore_ascii_case(&d)))
        })
    };
    let envelope_direction = if internal(&report.envelope.sender) {
        if report.envelope.recipients.iter().all(|r| internal(&r.address)) {
            Direction::Internal
        } else {
            Direction::Outgoing
        }
    } else {
        Direction::Inbound
    };
    let anonymous = ["X-MS-Exchange-Organization-AuthAs", "X-MS-Exchange-CrossTenant-AuthAs"]
        .iter()
        .any(|name| {
            headers::values(&report.original, name)
                .iter()
                .any(|v| v.eq_ignore_ascii_case("Anonymous"))
        });
    let scanned_as = if anonymous {
        Direction::Inbound
    } else {
        envelope_direction
    };
    Facts {
        envelope_direction,
        scanned_as,
    }
}

/// What is recorded for one journaled message.
pub(crate) struct JournalEvent<'a> {
    pub(crate) queue_id: &'a str,
    pub(crate) tenant: &'a Tenant,
    pub(crate) report: &'a JournalReport<'a>,
    pub(crate) facts: &'a Facts,
    pub(crate) scan: &'a ScanReport,
    pub(crate) elapsed_ms: u64,
}

/// The log line of one journaled message (its event in the store is
/// recorded by `prepare`).
pub(crate) fn record_event(e: &JournalEvent<'_>) {
    let verdict = &e.scan.verdict;
    let reasons: Vec<String> = verdict
        .top_reasons(5)
        .iter()
        .map(|f| format!("{}:{}({:.1}) {}", f.check, f.tag, f.score, f.reason))
        .collect();
    let tags: Vec<&str> = verdict.findings.iter().map(|f| f.tag.as_str()).collect();
    let failed: Vec<&str> = verdict.failures.iter().map(|f| f.check.as_str()).collect();
    let auth = e.scan.auth.as_ref().map(|a| a.summary()).unwrap_or_default();
    let listings = crate::store::listings_of(&verdict.findings);
    let recipients: Vec<&str> = e
        .report
        .envelope
        .recipients
        .iter()
        .map(|r| r.address.as_str())
        .collect();
    tracing::info!(
        queue_id = e.queue_id,
        tenant = %e.tenant.portal,
        mode = "monitor",
        event = "journal",
        message_id = %e.report.original_message_id().unwrap_or_else(|| e.report.envelope.message_id.clone()),
        network_message_id = %e.report.original_network_message_id().unwrap_or_default(),
        report_network_message_id = %e.report.network_message_id.clone().unwrap_or_default(),
        from = %e.report.envelope.sender,
        recipients = ?recipients,
        direction = %e.facts.envelope_direction,
        scanned_as = %e.facts.scanned_as,
        size = e.report.original.len() as u64,
        score = verdict.score,
        verdict = %verdict.action,
        action = %Action::Deliver,
        enforced = false,
        tags = ?tags,
        failed_checks = ?failed,
        reasons = ?reasons,
        auth = %auth,
        listings = ?listings,
        scan_ms = e.elapsed_ms,
        "journaled message scanned"
    );
}
