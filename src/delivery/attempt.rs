//! One delivery attempt of one queued message: read and verify it, relay it
//! to the recipients still pending, record what became final, bounce what
//! failed permanently or expired (a DSN queued like any message), and tell
//! the scheduler when to try again.
//!
//! Every recipient's result of every attempt (and an expiry) is recorded in
//! the store as a delivery outcome (downstream host, reply, time).
//!
//! Invariant: a message leaves the spool only when every recipient has a
//! final result, and the DSN for a failure is durable before the failure is
//! recorded (a crash in between may send a DSN twice, never lose one).

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use tracing::Instrument;

use crate::config::DeliveryConfig;
use crate::config::tenant::{DsnPolicy, DsnWhen};
use crate::delivery::Context;
use crate::delivery::dsn;
use crate::delivery::handle::Outcome;
use crate::delivery::queued::{self, LARGE_READ, Message};
use crate::delivery::relay::RcptResult;
use crate::delivery::route::{Route, RouteKey};
use crate::delivery::smtp_client::MessageBytes;
use crate::message::envelope::{Direction, Envelope, Mailbox, Recipient, SessionFacts};
use crate::message::stamp::Stamp;
use crate::smtp::reply::Reply;
use crate::spool::format::{Kind, Meta};
use crate::spool::incoming::Body;
use crate::spool::{Area, SpoolError, StateEvent, now_unix};

/// One delivery attempt of one queued message.
pub(crate) async fn deliver(cx: &Context, id: &str) -> Outcome {
    let started = Instant::now();
    // Hold what the attempt keeps in memory against the memory budget, so
    // many deliveries at once wait for each other: a small message's size,
    // or the chunks a large one is verified and sent in.
    let size = std::fs::metadata(cx.spool.path(Area::Active, id)).map_or(0, |m| m.len());
    let _held = cx.budget.reserve(size.min(LARGE_READ)).await;
    let stored = match read(cx, id, size).await {
        Ok(stored) => stored,
        Err(outcome) => return outcome,
    };
    // Every line of this attempt carries the ids the message arrived with and
    // the session it arrived in: grep any of them to follow it here.
    let meta = &stored.trailer.meta;
    let span = tracing::info_span!(
        "delivery",
        queue_id = %id,
        message_id = %meta.ids.message_id,
        network_message_id = %meta.ids.network_message_id,
        session = %meta.session.session_id,
        client = %meta.session.client_ip,
    );
    attempt(cx, id, &stored, started).instrument(span).await
}

/// The attempt proper, on a message read and verified.
async fn attempt(cx: &Context, id: &str, stored: &Message, started: Instant) -> Outcome {
    let meta = &stored.trailer.meta;
    let mut progress = Progress::from_history(&cx.spool.events(Area::Active, id), meta);

    let rt = cx.settings.load();
    let delivery = rt.config.delivery.clone();
    let hostname = rt.config.server.hostname.clone();
    let route: Result<Route, Reply> = rt.route_of(meta);
    drop(rt);

    let stamp = Stamp::from_stored(stored.trailer.prefix.clone(), &meta.skips);
    let bytes = stored.bytes(&stamp);
    let (results, remote, egress) = relay(cx, route, meta, &progress.pending, &bytes).await;
    log_results(meta, &results, remote.as_deref(), egress);
    progress.attempts += 1;
    let attempts = progress.attempts;
    let mut sorted = Sorted::new(cx, meta, &results, remote, &mut progress.final_results);

    let now = now_unix();
    let age = now - meta.received;
    let expired = match meta.kind {
        Kind::Message => age >= delivery.max_age.as_secs() as i64,
        Kind::Dsn => attempts as usize > delivery.dsn_retry.len(),
    };
    if expired && !sorted.temporary.is_empty() {
        sorted.expire(cx, id, meta, attempts);
    }

    let bounce = !sorted.permanent.is_empty() && meta.kind == Kind::Message;
    if bounce || !sorted.temporary.is_empty() {
        // What was delivered is on record before anything else is done, so
        // nothing that follows (a DSN that cannot be queued, even a panic,
        // which the queue retries) sends it a second time.
        record_delivered(cx, id, &results);
    }
    if bounce {
        let queued = queue_dsn(cx, &hostname, meta, stored, &stamp, &sorted.permanent).await;
        if let Err(e) = queued {
            tracing::error!(queue_id = id, error = %e, "cannot queue the DSN; will retry the message later");
            return Outcome::Retry { due: now + 60 };
        }
    }

    if sorted.temporary.is_empty() {
        let _ = cx.spool.remove(Area::Active, id);
        cx.metrics
            .delivery_duration
            .observe(&[], Duration::from_secs(age.max(0) as u64));
        log_fate(
            meta,
            stored.trailer.body_len as usize,
            &progress.final_results,
            attempts,
            age,
            started.elapsed(),
        );
        return Outcome::Finished;
    }
    defer(cx, id, meta, &delivery, &results, &sorted, attempts, now)
}

/// Reads and verifies the queued message; a message that is gone or damaged
/// is dealt with here and the attempt ends with the outcome returned.
async fn read(cx: &Context, id: &str, size: u64) -> Result<Message, Outcome> {
    let spool = &cx.spool;
    let read = queued::load(spool, id, size).await;
    match read {
        Ok(s) => Ok(s),
        Err(SpoolError::NotFound(_)) => {
            tracing::info!(queue_id = id, "message no longer in the spool (deleted)");
            Err(Outcome::Gone)
        }
        Err(e @ SpoolError::Corrupt { .. }) => {
            tracing::error!(queue_id = id, error = %e, "damaged queue file set aside");
            spool.set_aside(id);
            cx.metrics.spool_corrupt.inc(&[]);
            Err(Outcome::Gone)
        }
        Err(e) => {
            tracing::error!(queue_id = id, error = %e, "cannot read queued message; retrying later");
            Err(Outcome::Retry { due: now_unix() + 60 })
        }
    }
}

/// What earlier attempts achieved, from the message's history.
struct Progress {
    /// Recipient index → its final result, as logged.
    final_results: HashMap<usize, String>,
    attempts: u32,
    /// Recipients without a final result.
    pending: Vec<usize>,
}

impl Progress {
    fn from_history(events: &[StateEvent], meta: &Meta) -> Progress {
        let mut final_results: HashMap<usize, String> = HashMap::new();
        let mut attempts = 0u32;
        for e in events {
            match e {
                StateEvent::Delivered { rcpt, reply } | StateEvent::Failed { rcpt, reply } => {
                    final_results.insert(*rcpt, reply.clone());
                }
                StateEvent::Deferred { attempts: a, .. } => attempts = *a,
            }
        }
        let pending = (0..meta.envelope.recipients.len())
            .filter(|i| !final_results.contains_key(i))
            .collect();
        Progress {
            final_results,
            attempts,
            pending,
        }
    }
}

/// Relays to the pending recipients; without a route (tenant gone) each of
/// them gets the route's temporary reply.
async fn relay(
    cx: &Context,
    route: Result<Route, Reply>,
    meta: &Meta,
    pending: &[usize],
    bytes: &MessageBytes<'_>,
) -> (Vec<(usize, RcptResult)>, Option<String>, Option<IpAddr>) {
    if pending.is_empty() {
        return (Vec::new(), None, None);
    }
    match route {
        Ok(route) => {
            let attempt = cx.relay.deliver(&route, &meta.envelope, pending, bytes).await;
            (attempt.results, attempt.server, attempt.egress)
        }
        Err(reply) => (
            pending
                .iter()
                .map(|&i| (i, RcptResult::Temporary(reply.clone())))
                .collect(),
            None,
            None,
        ),
    }
}

/// One line per recipient and attempt: the downstream (host[IP]:port), the
/// address we left from and what the downstream answered.
fn log_results(meta: &Meta, results: &[(usize, RcptResult)], remote: Option<&str>, egress: Option<IpAddr>) {
    let downstream = remote.unwrap_or("none");
    let egress = egress.map(|ip| ip.to_string()).unwrap_or_else(|| "none".into());
    for (index, result) in results {
        let rcpt = meta
            .envelope
            .recipients
            .get(*index)
            .map_or_else(String::new, |r| r.address.to_string());
        let reply = result.reply().one_line();
        match result {
            RcptResult::Delivered(_) => {
                tracing::info!(%rcpt, %downstream, %egress, reply = ?reply, "recipient delivered");
            }
            RcptResult::Temporary(_) => {
                tracing::warn!(%rcpt, %downstream, %egress, reply = ?reply, "recipient deferred");
            }
            RcptResult::Permanent(_) => {
                tracing::warn!(%rcpt, %downstream, %egress, reply = ?reply, "recipient bounced");
            }
        }
    }
}

/// This attempt's results, sorted into what is to be retried and what is to
/// be bounced.
struct Sorted {
    temporary: Vec<(usize, Reply)>,
    permanent: Vec<dsn::Failed>,
    remote: Option<String>,
}

impl Sorted {
    /// Counts each result and records it as the recipient's latest.
    fn new(
        cx: &Context,
        meta: &Meta,
        results: &[(usize, RcptResult)],
        remote: Option<String>,
        final_results: &mut HashMap<usize, String>,
    ) -> Sorted {
        let mut temporary = Vec::new();
        let mut permanent = Vec::new();
        let now = now_unix();
        for (index, result) in results {
            let label = match result {
                RcptResult::Delivered(_) => "delivered",
                RcptResult::Temporary(_) => "deferred",
                RcptResult::Permanent(_) => "bounced",
            };
            cx.metrics.deliveries.inc(&[label]);
            record_outcome(cx, meta, *index, now, label, remote.as_deref(), result.reply());
            final_results.insert(*index, format!("{label}: {}", result.reply().one_line()));
            match result {
                RcptResult::Delivered(_) => {}
                RcptResult::Temporary(r) => temporary.push((*index, r.clone())),
                RcptResult::Permanent(r) => permanent.push(dsn::Failed {
                    index: *index,
                    reply: r.clone(),
                    remote: remote.clone(),
                    expired: false,
                }),
            }
        }
        Sorted {
            temporary,
            permanent,
            remote,
        }
    }

    /// The message is too old (or a DSN out of retries): what is still
    /// temporary fails for good (a DSN is dropped, never bounced).
    fn expire(&mut self, cx: &Context, id: &str, meta: &Meta, attempts: u32) {
        if meta.kind == Kind::Dsn {
            cx.metrics.dsns.inc(&["dropped"]);
            tracing::warn!(
                queue_id = id,
                attempts,
                "dropping an undeliverable delivery status notification"
            );
            self.temporary.clear();
            return;
        }
        let now = now_unix();
        for (index, reply) in self.temporary.drain(..) {
            record_outcome(cx, meta, index, now, "expired", self.remote.as_deref(), &reply);
            self.permanent.push(dsn::Failed {
                index,
                reply,
                remote: self.remote.clone(),
                expired: true,
            });
        }
    }
}

/// One recipient's result in the store (DSNs we generated have no event: skipped).
fn record_outcome(
    cx: &Context,
    meta: &Meta,
    index: usize,
    time: i64,
    result: &str,
    remote: Option<&str>,
    reply: &Reply,
) {
    if meta.kind != Kind::Message {
        return;
    }
    let Some(rcpt) = meta.envelope.recipients.get(index) else {
        return;
    };
    cx.store.record_delivery(
        &meta.id,
        &rcpt.address.to_string(),
        crate::store::DeliveryOutcome {
            time,
            result: result.to_string(),
            host: remote.unwrap_or_default().to_string(),
            reply: reply.one_line(),
        },
    );
}

fn record_delivered(cx: &Context, id: &str, results: &[(usize, RcptResult)]) {
    for (index, result) in results {
        if let RcptResult::Delivered(r) = result {
            let event = StateEvent::Delivered {
                rcpt: *index,
                reply: r.one_line(),
            };
            let _ = cx.spool.append(Area::Active, id, &event);
        }
    }
}

/// Some recipients are still pending: records what failed for good and when
/// to retry, per the message's retry schedule (what was delivered is already
/// on record).
#[allow(clippy::too_many_arguments)]
fn defer(
    cx: &Context,
    id: &str,
    meta: &Meta,
    delivery: &DeliveryConfig,
    results: &[(usize, RcptResult)],
    sorted: &Sorted,
    attempts: u32,
    now: i64,
) -> Outcome {
    let spool = &cx.spool;
    for (index, result) in results {
        if let RcptResult::Permanent(r) = result {
            let event = StateEvent::Failed {
                rcpt: *index,
                reply: r.one_line(),
            };
            let _ = spool.append(Area::Active, id, &event);
        }
    }
    for f in sorted.permanent.iter().filter(|f| f.expired) {
        let _ = spool.append(
            Area::Active,
            id,
            &StateEvent::Failed {
                rcpt: f.index,
                reply: f.reply.one_line(),
            },
        );
    }
    let schedule = match meta.kind {
        Kind::Message => &delivery.retry,
        Kind::Dsn => &delivery.dsn_retry,
    };
    let step = schedule
        .get((attempts as usize).saturating_sub(1))
        .or(schedule.last())
        .copied()
        .unwrap_or(Duration::from_secs(300));
    let due = now + step.as_secs().max(1) as i64;
    let error = sorted.temporary.first().map(|(_, r)| r.one_line()).unwrap_or_default();
    if let Err(e) = spool.append(
        Area::Active,
        id,
        &StateEvent::Deferred {
            attempts,
            next: due,
            error: error.clone(),
        },
    ) {
        tracing::error!(queue_id = id, error = %e, "cannot record the deferral");
    }
    tracing::info!(
        queue_id = id,
        tenant = %meta.tenant,
        pending = sorted.temporary.len(),
        attempts,
        retry_in_s = step.as_secs(),
        error = %error,
        "delivery deferred"
    );
    Outcome::Retry { due }
}

/// Queues a DSN to the sender of `meta` for `failed` recipients. The message
/// is read back (its header, or all of it within the tenant's `return_limit`)
/// only once a DSN is to be made.
async fn queue_dsn(
    cx: &Context,
    hostname: &str,
    meta: &Meta,
    stored: &Message,
    stamp: &Stamp,
    failed: &[dsn::Failed],
) -> Result<(), SpoolError> {
    let now = now_unix();
    if meta.envelope.is_null_sender() {
        cx.metrics.dsns.inc(&["suppressed"]);
        tracing::info!(queue_id = %meta.id, "no DSN: null sender");
        return Ok(());
    }
    let (policy, tenant, dsn_sources) = {
        let rt = cx.settings.load();
        let policy = rt.tenants.by_portal(&meta.tenant).map(|t| t.dsn).unwrap_or_default();
        let tenant = rt
            .tenants
            .by_address(&meta.envelope.mail_from)
            .map(|t| t.portal.clone());
        (policy, tenant, !rt.config.relay.dsn_source_ips.is_empty())
    };
    if let Some(reason) = dsn_refused(&policy, meta, tenant.is_some(), dsn_sources) {
        cx.metrics.dsns.inc(&["suppressed"]);
        tracing::info!(queue_id = %meta.id, to = %meta.envelope.mail_from, direction = %meta.direction, reason, "no DSN");
        return Ok(());
    }
    // The limit bounds what is read (the received body) and what goes back
    // (the stamped message): owned fields removed may make either the larger.
    let received = stored.trailer.body_len as usize;
    let size = received.max(stamp.stamped_len(received)) as u64;
    let full = dsn::returns_full(&meta.envelope, &policy, size);
    let original = stored.for_dsn(stamp, full).await.map_err(|source| SpoolError::Io {
        path: cx.spool.path(Area::Active, &meta.id),
        source,
    })?;
    let Some(bytes) = dsn::build(hostname, &meta.envelope, &original, failed, meta.received, now, full) else {
        cx.metrics.dsns.inc(&["suppressed"]);
        tracing::info!(queue_id = %meta.id, "no DSN: NOTIFY excludes failures");
        return Ok(());
    };
    let id = crate::spool::new_id();
    let dsn_meta = Meta {
        id: id.clone(),
        received: now,
        kind: Kind::Dsn,
        envelope: Envelope {
            mail_from: Mailbox::null(),
            recipients: vec![Recipient {
                address: meta.envelope.mail_from.clone(),
                orcpt: None,
                notify: None,
            }],
            // A non-ASCII sender can only be reached with SMTPUTF8.
            smtputf8: !meta.envelope.mail_from.is_ascii(),
            ..Envelope::default()
        },
        session: SessionFacts {
            session_id: String::new(),
            client_ip: std::net::Ipv4Addr::LOCALHOST.into(),
            client_port: 0,
            helo: hostname.to_string(),
            tls: None,
        },
        ids: Default::default(),
        tenant: tenant.clone().unwrap_or_default(),
        direction: if tenant.is_some() {
            Direction::Inbound
        } else {
            Direction::Outgoing
        },
        verdict: None,
        skips: vec![],
        route: tenant,
        sender_authenticated: false,
    };
    cx.spool
        .commit(Area::Active, &dsn_meta, b"", Body::Memory(bytes))
        .await?;
    cx.metrics.dsns.inc(&["queued"]);
    tracing::info!(queue_id = %meta.id, dsn_id = %id, to = %meta.envelope.mail_from, "DSN queued");
    cx.handle.queued(&id, &RouteKey::of(&dsn_meta), now);
    Ok(())
}

/// Why no DSN may be sent for `meta` (`None`: it may). `to_tenant`: the
/// sender is a tenant's, so the DSN goes back through the tenant's own
/// destination; otherwise it goes to the sender's MX on the Internet, which
/// only `relay.dsn_source_ips` may reach (never the egress addresses EXO
/// accepts us by, which would end up on blocklists).
fn dsn_refused(policy: &DsnPolicy, meta: &Meta, to_tenant: bool, dsn_sources: bool) -> Option<&'static str> {
    match policy.when(meta.direction) {
        DsnWhen::Never => return Some("[tenant.dsn] says never for this direction"),
        DsnWhen::Authenticated if !meta.sender_authenticated => {
            return Some("the sender was not authenticated (SPF/DMARC) and [tenant.dsn] asks for it");
        }
        _ => {}
    }
    if !to_tenant && !dsn_sources && !meta.envelope.is_null_sender() {
        return Some("the sender is outside every tenant and relay.dsn_source_ips is empty");
    }
    None
}

fn log_fate(
    meta: &Meta,
    size: usize,
    results: &HashMap<usize, String>,
    attempts: u32,
    age: i64,
    last_attempt: Duration,
) {
    let mut per_rcpt: Vec<String> = Vec::with_capacity(results.len());
    for (i, r) in meta.envelope.recipients.iter().enumerate() {
        per_rcpt.push(format!(
            "<{}> {}",
            r.address,
            results.get(&i).map(String::as_str).unwrap_or("unknown")
        ));
    }
    tracing::info!(
        queue_id = %meta.id,
        kind = ?meta.kind,
        tenant = %meta.tenant,
        direction = %meta.direction,
        from = %meta.envelope.mail_from,
        recipients = meta.envelope.recipients.len(),
        size,
        results = %per_rcpt.join("; "),
        attempts,
        total_s = age,
        last_attempt_ms = last_attempt.as_millis() as u64,
        "message fate known"
    );
}
