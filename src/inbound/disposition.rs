//! What happens to a message once its last byte has arrived: the tenant and
//! direction are confirmed from the headers, the policy's checks run, the
//! verdict is turned into an action for the tenant's mode, the stamp is
//! computed, and the message is stored (quarantine or queue) before the
//! client hears 250.
//!
//! Invariants: a 250 is only ever returned after `Spool::commit` succeeded;
//! every failure on the way is a 4xx (temporary beats permanent), except a
//! refusal decided by admission or policy (5xx); one log line and one store
//! event record the decision for each message that reached a verdict (the
//! event of a stored message only once it is durable). The tenant's allow
//! list turns a score-based junk or quarantine into deliver; a finding that
//! forces an action (malware, a blocked attachment) is never overridden.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::config::tenant::{Tenant, TenantMode};
use crate::inbound::admission::{self, Attribution};
use crate::inbound::{Context, Settings};
use crate::message::envelope::{Direction, Envelope, SessionFacts};
use crate::message::stamp::{self, StampFacts};
use crate::message::trace::MessageIds;
use crate::message::verdict::{Action, Finding};
use crate::scan::pipeline::{Policy, ScanReport};
use crate::smtp::reply::Reply;
use crate::spool::format::{Kind, Meta};
use crate::spool::incoming::Body;
use crate::spool::{Area, now_unix};
use crate::store::EventRecord;
use crate::store::record;

/// The outcome of `prepare`: what to do with the message.
pub(crate) enum Prepared {
    /// Refused or temporarily failed; nothing is kept.
    Refused(Reply),
    /// Keep in quarantine, deliver nothing.
    Quarantine {
        meta: Meta,
        prefix: Vec<u8>,
        body: Body,
        event: Box<EventRecord>,
    },
    /// Relay with the stamp (action deliver or junk).
    Deliver {
        meta: Meta,
        prefix: Vec<u8>,
        body: Body,
        event: Box<EventRecord>,
    },
    /// Monitor mode: scanned and recorded, never relayed.
    Monitored { id: String },
    /// A journal report that cannot be read: kept in the reports folder.
    KeepReport { meta: Meta, body: Body },
}

/// Confirms, scans, decides and stamps.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn prepare(
    cx: &Context,
    rt: &Settings,
    id: &str,
    session: SessionFacts,
    ids: MessageIds,
    envelope: Envelope,
    tenant: Arc<Tenant>,
    body: Body,
) -> Prepared {
    // A journal report: to the tenant's journal address, or any report a
    // monitor tenant receives (also when EXO reaches it on a tenant domain).
    let head = read_back(&body, 0, id).await;
    let report_to_monitor =
        tenant.mode == TenantMode::Monitor && head.as_ref().is_ok_and(|head| crate::message::journal::is_report(head));
    if report_to_monitor || crate::inbound::journal::is_journal(&tenant, &envelope) {
        return crate::inbound::journal::prepare(cx, rt, id, session, envelope, tenant, body).await;
    }
    let started = Instant::now();
    let confirmed = head.and_then(|head| confirm(cx, rt, id, &session, &envelope, &tenant, &head));
    let (tenant, attribution) = match confirmed {
        Ok(confirmed) => confirmed,
        Err(reply) => {
            body.discard();
            return Prepared::Refused(reply);
        }
    };
    let policy = rt.policy(&tenant.policy);
    let raw = match read_back(&body, policy.scan_max_size, id).await {
        Ok(raw) => raw,
        Err(reply) => {
            body.discard();
            return Prepared::Refused(reply);
        }
    };
    if attribution.inferred {
        tracing::info!(queue_id = id, tenant = %tenant.portal, direction = %attribution.direction, "no X-CLOUD-SEC-AV-Info header: direction inferred from the domains");
    }
    let direction = attribution.direction;

    let mut report = {
        let _permit = cx.scan_permits.acquire().await;
        let exo_session = !attribution.inferred;
        scan(
            &policy,
            &raw,
            body.len(),
            &envelope,
            &session,
            &tenant,
            direction,
            exo_session,
            id,
        )
        .await
    };
    record_checks(cx, &report);
    let decided = report.verdict.action;
    allow_list(cx, id, &tenant, &envelope, &mut report);

    let enforce = tenant.mode == TenantMode::Inline;
    let action = if enforce {
        report.verdict.action
    } else {
        Action::Deliver
    };
    log_decision(
        id,
        &tenant,
        &envelope,
        direction,
        body.len(),
        &report,
        action,
        enforce,
        started,
    );
    let mut event = record::event(&record::Facts {
        queue_id: id,
        time: now_unix(),
        node: &rt.config.store.node,
        tenant: &tenant.portal,
        direction,
        envelope: &envelope,
        session: &session,
        raw: &raw,
        size: body.len(),
        verdict: Some(&report.verdict),
        action: "",
        auth: report.auth.as_ref(),
    });
    event.verdict = decided.as_str().to_string();
    let now = now_unix();
    let stamped = stamp::stamp(
        &raw,
        &StampFacts {
            hostname: &rt.config.server.hostname,
            queue_id: id,
            session: &session,
            smtputf8: envelope.smtputf8,
            single_recipient: (envelope.recipients.len() == 1).then(|| &envelope.recipients[0].address),
            portal: &tenant.portal,
            direction,
            verdict: &report.verdict,
            action,
            enforced: enforce,
            now,
            auth: report.auth.as_ref(),
        },
    );
    // A header block that still reads two ways after our fields are
    // removed is refused before anything is counted as delivered.
    // (Monitor mode relays nothing: its message is settled below.)
    let st = match stamped {
        Ok(st) => Some(st),
        Err(_) if tenant.mode == TenantMode::Monitor => None,
        Err(ambiguous) => {
            tracing::warn!(queue_id = id, tenant = %tenant.portal, reason = %ambiguous, "ambiguous header block refused");
            cx.metrics
                .messages
                .inc(&[&tenant.portal, direction.as_str(), "ambiguous-header"]);
            event.action = "ambiguous-header".into();
            cx.store.record_event(event);
            drop(raw);
            body.discard();
            return Prepared::Refused(Reply::AMBIGUOUS_HEADER);
        }
    };
    let (label, settled) = settle(cx, id, &tenant, direction, &report, action, enforce);
    event.action = label.into();
    if let Some(settled) = settled {
        cx.store.record_event(event);
        drop(raw);
        body.discard();
        return settled;
    }

    drop(raw);
    let Some(st) = st else {
        body.discard();
        return Prepared::Refused(Reply::AMBIGUOUS_HEADER);
    };
    let report_authenticated = report
        .auth
        .as_ref()
        .is_some_and(|a| a.envelope_sender_authentic(&envelope.mail_from));
    let meta = Meta {
        id: id.to_string(),
        received: now,
        kind: Kind::Message,
        envelope,
        session,
        ids,
        tenant: tenant.portal.clone(),
        direction,
        verdict: Some(report.verdict),
        skips: st.stored_skips(),
        route: None,
        sender_authenticated: report_authenticated,
    };
    let event = Box::new(event);
    if action == Action::Quarantine {
        Prepared::Quarantine {
            meta,
            prefix: st.prefix,
            body,
            event,
        }
    } else {
        Prepared::Deliver {
            meta,
            prefix: st.prefix,
            body,
            event,
        }
    }
}

/// The header decides the tenant and the direction (admission confirms what
/// the envelope suggested); only then is its policy known.
fn confirm(
    cx: &Context,
    rt: &Settings,
    id: &str,
    session: &SessionFacts,
    envelope: &Envelope,
    tenant: &Arc<Tenant>,
    head: &[u8],
) -> Result<(Arc<Tenant>, Attribution), Reply> {
    let sender_tenant = rt.tenants.by_address(&envelope.mail_from).cloned();
    admission::confirm(tenant, sender_tenant.as_ref(), envelope, head).map_err(|refusal| {
        cx.metrics.admission_refusals.inc(&["tenant-headers"]);
        tracing::warn!(
            queue_id = id,
            client = %session.client_ip,
            tenant = %tenant.portal,
            from = %envelope.mail_from,
            reason = %refusal.reason,
            "admission refused at end of data"
        );
        refusal.reply
    })
}

/// The message as the scan sees it (its header only past `max` bytes; in
/// memory this read is free, a spilled body is read on the blocking pool).
pub(crate) async fn read_back<'a>(body: &'a Body, max: u64, id: &str) -> Result<Cow<'a, [u8]>, Reply> {
    body.for_scan(max).await.map_err(|e| {
        tracing::error!(queue_id = id, error = %e, "cannot read the received message back");
        Reply::LOCAL_ERROR
    })
}

/// Runs the policy. `exo_session`: the tenant was confirmed from the
/// `X-CLOUD-SEC-AV-Info` its EXO transport rule stamps (and its
/// `X-MS-Exchange-CrossTenant-Id` where it has a `tenant_id`), so EXO's fields
/// may stand for the original sender. (Journal reports go to `journal`.)
#[allow(clippy::too_many_arguments)]
pub(crate) async fn scan(
    policy: &Policy,
    raw: &[u8],
    size: u64,
    envelope: &Envelope,
    session: &SessionFacts,
    tenant: &Tenant,
    direction: Direction,
    exo_session: bool,
    id: &str,
) -> ScanReport {
    policy
        .scan(raw, size, envelope, session, tenant, direction, exo_session, id)
        .await
}

/// The tenant's allow list: a sender on it gets a score-based junk or
/// quarantine delivered (with a finding saying so); forced actions stand.
fn allow_list(cx: &Context, id: &str, tenant: &Tenant, envelope: &Envelope, report: &mut ScanReport) {
    let verdict = &mut report.verdict;
    if !matches!(verdict.action, Action::Junk | Action::Quarantine)
        || verdict.findings.iter().any(|f| f.force.is_some())
        || !cx.store.is_allowed(&tenant.portal, &envelope.mail_from.to_string())
    {
        return;
    }
    tracing::info!(queue_id = id, tenant = %tenant.portal, from = %envelope.mail_from, verdict = %verdict.action, "sender on the tenant's allow list: delivered");
    let mut finding = Finding::new(
        0.0,
        "sender-allowed",
        format!("{} is on the allow list", envelope.mail_from),
    );
    finding.check = "allow-list".into();
    verdict.findings.push(finding);
    verdict.action = Action::Deliver;
}

/// Counts the message once by what is done with it (the label returned),
/// and settles the cases where nothing is stored: monitor mode, a scan that
/// must be retried, a rejection. `None`: the message is to be stamped and stored.
fn settle(
    cx: &Context,
    id: &str,
    tenant: &Tenant,
    direction: Direction,
    report: &ScanReport,
    action: Action,
    enforce: bool,
) -> (&'static str, Option<Prepared>) {
    let (label, settled) = if tenant.mode == TenantMode::Monitor {
        ("monitor", Some(Prepared::Monitored { id: id.to_string() }))
    } else if enforce && report.verdict.tempfail {
        ("tempfail", Some(Prepared::Refused(Reply::SCAN_TEMPFAIL)))
    } else if action == Action::Reject {
        (action.as_str(), Some(Prepared::Refused(Reply::POLICY_REJECT)))
    } else {
        (action.as_str(), None)
    };
    cx.metrics.messages.inc(&[&tenant.portal, direction.as_str(), label]);
    (label, settled)
}

/// Queue mode: makes the message durable, then answers.
pub(crate) async fn store(cx: &Context, prepared: Prepared) -> Reply {
    match prepared {
        Prepared::Refused(reply) => reply,
        Prepared::Monitored { id } => Reply::queued(&id),
        Prepared::KeepReport { meta, body } => match commit(cx, Area::Reports, &meta, &[], body).await {
            Ok(_) => {
                tracing::info!(queue_id = %meta.id, tenant = %meta.tenant, "journal report kept in quarantine-reports/");
                Reply::queued(&meta.id)
            }
            Err(e) => {
                tracing::error!(queue_id = %meta.id, error = %e, "cannot keep the journal report");
                spool_reply(&e)
            }
        },
        Prepared::Quarantine {
            meta,
            prefix,
            body,
            event,
        } => match commit(cx, Area::Quarantine, &meta, &prefix, body).await {
            Ok(_) => {
                tracing::info!(queue_id = %meta.id, tenant = %meta.tenant, "message quarantined");
                cx.store.record_quarantined(&event);
                cx.store.record_event(*event);
                Reply::quarantined(&meta.id)
            }
            Err(e) => {
                tracing::error!(queue_id = %meta.id, error = %e, "cannot store the message in quarantine");
                spool_reply(&e)
            }
        },
        Prepared::Deliver {
            meta,
            prefix,
            body,
            event,
        } => match commit(cx, Area::Active, &meta, &prefix, body).await {
            Ok(took) => {
                cx.store.record_event(*event);
                tracing::info!(queue_id = %meta.id, commit_us = took.as_micros() as u64, "message queued");
                cx.queue
                    .queued(&meta.id, &crate::delivery::route::RouteKey::of(&meta), meta.received);
                Reply::queued(&meta.id)
            }
            Err(e) => {
                tracing::error!(queue_id = %meta.id, error = %e, "cannot queue the message");
                spool_reply(&e)
            }
        },
    }
}

/// [`crate::spool::Spool::commit`], timed for `exogate_spool_commit_duration_seconds`
/// (successful commits only: a failure's time says nothing about the disk)
/// and counted by path in `exogate_spool_commits_total`;
/// returns how long it took.
async fn commit(
    cx: &Context,
    area: Area,
    meta: &Meta,
    prefix: &[u8],
    body: Body,
) -> Result<Duration, crate::spool::SpoolError> {
    let started = Instant::now();
    let durable = cx.spool.commit(area, meta, prefix, body).await?;
    let took = started.elapsed();
    cx.metrics.spool_commit_duration.observe(&[], took);
    cx.metrics.spool_commits.inc(&[durable.as_str()]);
    Ok(took)
}

pub(crate) fn spool_reply(e: &crate::spool::SpoolError) -> Reply {
    match e {
        crate::spool::SpoolError::Full(_) => Reply::SPOOL_FULL,
        _ => Reply::LOCAL_ERROR,
    }
}

pub(crate) fn record_checks(cx: &Context, report: &ScanReport) {
    for t in &report.timings {
        cx.metrics.check_duration.observe(&[&t.name], t.elapsed);
        if t.failed {
            cx.metrics.check_errors.inc(&[&t.name]);
        }
    }
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
    let auth = report.auth.as_ref().map(|a| a.summary()).unwrap_or_default();
    let listings = crate::store::listings_of(&report.verdict.findings);
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
        auth = %auth,
        listings = ?listings,
        scan_ms = started.elapsed().as_millis() as u64,
        "message scanned"
    );
}
