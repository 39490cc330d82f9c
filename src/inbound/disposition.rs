//! What happens to a message once its last byte has arrived: the tenant and
//! direction are confirmed from the headers, the policy's checks run, the
//! verdict is turned into an action for the tenant's mode, the stamp is
//! computed, and the message is stored (quarantine or queue) before the
//! client hears 250.
//!
//! Invariants: a 250 is only ever returned after `Spool::commit` succeeded;
//! every failure on the way is a 4xx (temporary beats permanent), except a
//! refusal decided by admission or policy (5xx); one log line records the
//! decision for each message.

use std::sync::Arc;
use std::time::Instant;

use crate::config::tenant::{Tenant, TenantMode};
use crate::inbound::admission;
use crate::inbound::{Context, Settings};
use crate::message::envelope::{Direction, Envelope, SessionFacts};
use crate::message::stamp::{self, StampFacts};
use crate::message::verdict::Action;
use crate::scan::pipeline::ScanReport;
use crate::smtp::reply::Reply;
use crate::spool::format::{Kind, Meta};
use crate::spool::incoming::Body;
use crate::spool::{Area, now_unix};

/// The outcome of `prepare`: what to do with the message.
pub(crate) enum Prepared {
    /// Refused or temporarily failed; nothing is kept.
    Refused(Reply),
    /// Keep in quarantine, deliver nothing.
    Quarantine { meta: Meta, prefix: Vec<u8>, body: Body },
    /// Relay with the stamp (action deliver or junk).
    Deliver { meta: Meta, prefix: Vec<u8>, body: Body },
    /// Monitor mode: scanned and recorded, never relayed.
    Monitored { id: String },
}

/// Confirms, scans, decides and stamps.
pub(crate) async fn prepare(
    shared: &Context,
    rt: &Settings,
    id: &str,
    session: SessionFacts,
    envelope: Envelope,
    tenant: Arc<Tenant>,
    body: Body,
) -> Prepared {
    let started = Instant::now();
    // The header decides the tenant; only then is its policy (and how much of
    // a large message it scans) known. In memory both reads are free.
    let head = match body.for_scan(0) {
        Ok(head) => head,
        Err(e) => {
            tracing::error!(queue_id = id, error = %e, "cannot read the received message back");
            body.discard();
            return Prepared::Refused(Reply::LOCAL_ERROR);
        }
    };
    let sender_tenant = rt.tenants.by_address(&envelope.mail_from).cloned();
    let (tenant, attribution) = match admission::confirm(&tenant, sender_tenant.as_ref(), &envelope, &head) {
        Ok(a) => a,
        Err(refusal) => {
            shared.metrics.admission_refusals.inc(&["tenant-headers"]);
            tracing::warn!(
                queue_id = id,
                client = %session.client_ip,
                tenant = %tenant.portal,
                from = %envelope.mail_from,
                reason = %refusal.reason,
                "admission refused at end of data"
            );
            drop(head);
            body.discard();
            return Prepared::Refused(refusal.reply);
        }
    };
    drop(head);
    let policy = rt.policy(&tenant.policy);
    let raw = match body.for_scan(policy.scan_max_size) {
        Ok(raw) => raw,
        Err(e) => {
            tracing::error!(queue_id = id, error = %e, "cannot read the received message back");
            body.discard();
            return Prepared::Refused(Reply::LOCAL_ERROR);
        }
    };
    if attribution.inferred {
        tracing::info!(queue_id = id, tenant = %tenant.portal, direction = %attribution.direction, "no X-CLOUD-SEC-AV-Info header: direction inferred from the domains");
    }

    let report = {
        let _permit = shared.scan_permits.acquire().await;
        if tenant.mode == TenantMode::Monitor {
            let original = journal_original(&raw);
            let scanned = original.as_deref().unwrap_or(&raw);
            policy
                .scan(
                    scanned,
                    scanned.len() as u64,
                    &envelope,
                    &session,
                    &tenant,
                    attribution.direction,
                )
                .await
        } else {
            policy
                .scan(&raw, body.len(), &envelope, &session, &tenant, attribution.direction)
                .await
        }
    };
    record_checks(shared, &report);

    let enforce = tenant.mode == TenantMode::Inline;
    let action = if enforce {
        report.verdict.action
    } else {
        Action::Deliver
    };
    let size = body.len();
    log_decision(
        id,
        &tenant,
        &envelope,
        attribution.direction,
        size,
        &report,
        action,
        enforce,
        started,
    );

    if tenant.mode == TenantMode::Monitor {
        shared
            .metrics
            .messages
            .inc(&[&tenant.portal, attribution.direction.as_str(), "monitor"]);
        drop(raw);
        body.discard();
        return Prepared::Monitored { id: id.to_string() };
    }
    if enforce && report.verdict.tempfail {
        shared
            .metrics
            .messages
            .inc(&[&tenant.portal, attribution.direction.as_str(), "tempfail"]);
        drop(raw);
        body.discard();
        return Prepared::Refused(Reply::SCAN_TEMPFAIL);
    }
    shared
        .metrics
        .messages
        .inc(&[&tenant.portal, attribution.direction.as_str(), action.as_str()]);
    if action == Action::Reject {
        drop(raw);
        body.discard();
        return Prepared::Refused(Reply::POLICY_REJECT);
    }

    let now = now_unix();
    let single = (envelope.recipients.len() == 1).then(|| envelope.recipients[0].address.as_str());
    let st = stamp::stamp(
        &raw,
        &StampFacts {
            hostname: &rt.config.server.hostname,
            queue_id: id,
            session: &session,
            smtputf8: envelope.smtputf8,
            single_recipient: single,
            portal: &tenant.portal,
            direction: attribution.direction,
            verdict: &report.verdict,
            action,
            enforced: enforce,
            now,
        },
    );
    drop(raw);
    let meta = Meta {
        id: id.to_string(),
        received: now,
        kind: Kind::Message,
        envelope,
        session,
        tenant: tenant.portal.clone(),
        direction: attribution.direction,
        verdict: Some(report.verdict),
        skips: st.skips.iter().map(|r| (r.start as u64, r.end as u64)).collect(),
        route: None,
    };
    if action == Action::Quarantine {
        Prepared::Quarantine {
            meta,
            prefix: st.prefix,
            body,
        }
    } else {
        Prepared::Deliver {
            meta,
            prefix: st.prefix,
            body,
        }
    }
}

/// Queue mode: makes the message durable, then answers.
pub(crate) async fn store(shared: &Context, prepared: Prepared) -> Reply {
    match prepared {
        Prepared::Refused(reply) => reply,
        Prepared::Monitored { id } => Reply::queued(&id),
        Prepared::Quarantine { meta, prefix, body } => {
            match shared.spool.commit(Area::Quarantine, &meta, &prefix, body).await {
                Ok(()) => {
                    tracing::info!(queue_id = %meta.id, tenant = %meta.tenant, "message quarantined");
                    Reply::quarantined(&meta.id)
                }
                Err(e) => {
                    tracing::error!(queue_id = %meta.id, error = %e, "cannot store the message in quarantine");
                    spool_reply(&e)
                }
            }
        }
        Prepared::Deliver { meta, prefix, body } => {
            let started = Instant::now();
            match shared.spool.commit(Area::Active, &meta, &prefix, body).await {
                Ok(()) => {
                    tracing::debug!(queue_id = %meta.id, commit_us = started.elapsed().as_micros() as u64, "message queued");
                    shared
                        .queue
                        .queued(&meta.id, &crate::delivery::route::RouteKey::of(&meta), meta.received);
                    Reply::queued(&meta.id)
                }
                Err(e) => {
                    tracing::error!(queue_id = %meta.id, error = %e, "cannot queue the message");
                    spool_reply(&e)
                }
            }
        }
    }
}

pub(crate) fn spool_reply(e: &crate::spool::SpoolError) -> Reply {
    match e {
        crate::spool::SpoolError::Full(_) => Reply::SPOOL_FULL,
        _ => Reply::LOCAL_ERROR,
    }
}

fn record_checks(shared: &Context, report: &ScanReport) {
    for t in &report.timings {
        shared.metrics.check_duration.observe(&[&t.name], t.elapsed);
        if t.failed {
            shared.metrics.check_errors.inc(&[&t.name]);
        }
    }
}

/// The original message attached to an EXO journal report, if `raw` is one.
fn journal_original(raw: &[u8]) -> Option<Vec<u8>> {
    if crate::message::headers::values(raw, "X-MS-Journal-Report").is_empty() {
        return None;
    }
    let message = mail_parser::MessageParser::default().parse(raw)?;
    message.parts.iter().find_map(|p| match &p.body {
        mail_parser::PartType::Message(inner) => Some(inner.raw_message().to_vec()),
        _ => None,
    })
}

#[allow(clippy::too_many_arguments)]
fn log_decision(
    id: &str,
    tenant: &Tenant,
    envelope: &Envelope,
    direction: Direction,
    size: u64,
    report: &ScanReport,
    action: Action,
    enforced: bool,
    started: Instant,
) {
    let reasons: Vec<String> = report
        .verdict
        .top_reasons(5)
        .iter()
        .map(|f| format!("{}:{}({:.1}) {}", f.check, f.tag, f.score, f.reason))
        .collect();
    let failed: Vec<&str> = report.verdict.failures.iter().map(|f| f.check.as_str()).collect();
    tracing::info!(
        queue_id = id,
        tenant = %tenant.portal,
        mode = tenant.mode.as_str(),
        direction = %direction,
        from = %envelope.mail_from,
        recipients = envelope.recipients.len(),
        size,
        checks = report.timings.len(),
        score = report.verdict.score,
        verdict = %report.verdict.action,
        action = %action,
        enforced,
        failed_checks = ?failed,
        reasons = ?reasons,
        scan_ms = started.elapsed().as_millis() as u64,
        "message scanned"
    );
}
