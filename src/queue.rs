//! The delivery scheduler over the spool: delivers promptly, retries
//! temporary failures on the configured schedule, bounces permanent failures
//! and expired messages with a DSN, and never loads the whole spool.
//!
//! The scheduler task owns a bounded index of queued ids (their due time and
//! destination key); bodies stay on disk and are read only for an attempt.
//! When more messages are queued than `delivery.max_in_memory`, the rest wait
//! on disk and are picked up by a periodic scan. Concurrency is capped in
//! total and per destination. A message leaves the spool only when every
//! recipient has a final result; progress in between is recorded in the
//! message's history so a restart never re-sends to a delivered recipient.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime};

use arc_swap::ArcSwap;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::dsn;
use crate::envelope::{Direction, Envelope, Recipient, SessionFacts, domain_of};
use crate::metrics::Metrics;
use crate::relay::{RcptResult, Relay, Route};
use crate::reply::Reply;
use crate::runtime::Runtime;
use crate::smtp_client::MessageBytes;
use crate::spool::{Area, Body, Spool, SpoolError, StateEvent, now_unix};
use crate::spool_format::{Kind, Meta};

/// Tells the scheduler about new work.
#[derive(Clone)]
pub struct QueueHandle {
    tx: mpsc::UnboundedSender<Event>,
}

enum Event {
    Queued { id: String, key: String, received: i64 },
    Done { id: String, outcome: Outcome },
    Flush,
}

#[derive(Debug)]
enum Outcome {
    /// Every recipient has a final result; the file is gone.
    Finished,
    /// Try again at `due` (Unix seconds).
    Retry { due: i64 },
    /// The file disappeared or was damaged (already handled).
    Gone,
}

impl QueueHandle {
    /// A message was committed to the active spool.
    pub fn queued(&self, id: &str, key: &str, received: i64) {
        let _ = self.tx.send(Event::Queued {
            id: id.to_string(),
            key: key.to_string(),
            received,
        });
    }

    /// Retry everything now.
    pub fn flush(&self) {
        let _ = self.tx.send(Event::Flush);
    }
}

/// Shared by delivery tasks.
struct Shared {
    spool: Arc<Spool>,
    relay: Arc<Relay>,
    runtime: Arc<ArcSwap<Runtime>>,
    metrics: Arc<Metrics>,
    handle: QueueHandle,
}

struct Item {
    key: String,
    due: i64,
    received: i64,
    in_flight: bool,
}

/// The destination key of a queued message (for per-destination limits).
pub fn route_key(meta: &Meta) -> String {
    match (&meta.kind, &meta.route) {
        (Kind::Dsn, Some(portal)) => format!("tenant:{portal}"),
        (Kind::Dsn, None) => format!(
            "mx:{}",
            meta.envelope
                .recipients
                .first()
                .and_then(|r| domain_of(&r.address))
                .unwrap_or_default()
        ),
        (Kind::Message, _) => format!("tenant:{}", meta.tenant),
    }
}

/// Starts the scheduler; it recovers the spool's active messages first.
pub fn start(
    spool: Arc<Spool>,
    relay: Arc<Relay>,
    runtime: Arc<ArcSwap<Runtime>>,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
    recovered: Vec<String>,
) -> (QueueHandle, tokio::task::JoinHandle<()>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let handle = QueueHandle { tx };
    let shared = Arc::new(Shared {
        spool,
        relay,
        runtime,
        metrics,
        handle: handle.clone(),
    });
    let task = tokio::spawn(scheduler(shared, rx, shutdown, recovered));
    (handle, task)
}

struct Scheduler {
    shared: Arc<Shared>,
    items: HashMap<String, Item>,
    due: BTreeSet<(i64, String)>,
    per_key: HashMap<String, usize>,
    in_flight: usize,
    /// Some queued messages are only on disk (the index was full).
    overflow: bool,
    last_scan: Instant,
    flush_seen: Option<SystemTime>,
}

async fn scheduler(
    shared: Arc<Shared>,
    mut rx: mpsc::UnboundedReceiver<Event>,
    shutdown: CancellationToken,
    recovered: Vec<String>,
) {
    let mut s = Scheduler {
        shared,
        items: HashMap::new(),
        due: BTreeSet::new(),
        per_key: HashMap::new(),
        in_flight: 0,
        overflow: false,
        last_scan: Instant::now(),
        flush_seen: None,
    };
    let flush_file = s.shared.spool.flush_trigger();
    let flushed = std::fs::remove_file(&flush_file).is_ok();
    for id in recovered {
        s.load_from_disk(&id, flushed);
    }
    s.update_gauges();
    loop {
        s.dispatch();
        let next_due = s.due.first().map(|(due, _)| *due);
        let sleep_for = match next_due {
            Some(due) => Duration::from_secs((due - now_unix()).clamp(0, 1) as u64),
            None => Duration::from_secs(1),
        };
        tokio::select! {
            _ = shutdown.cancelled() => break,
            event = rx.recv() => match event {
                Some(event) => s.handle(event),
                None => break,
            },
            _ = tokio::time::sleep(sleep_for) => {}
        }
        while let Ok(event) = rx.try_recv() {
            s.handle(event);
        }
        s.housekeeping();
    }
}

impl Scheduler {
    fn config(&self) -> arc_swap::Guard<Arc<Runtime>> {
        self.shared.runtime.load()
    }

    fn insert(&mut self, id: String, key: String, due: i64, received: i64) {
        let max = self.config().config.delivery.max_in_memory;
        if self.items.contains_key(&id) {
            return;
        }
        if self.items.len() >= max {
            self.overflow = true;
            return;
        }
        self.due.insert((due, id.clone()));
        self.items.insert(
            id,
            Item {
                key,
                due,
                received,
                in_flight: false,
            },
        );
    }

    fn load_from_disk(&mut self, id: &str, due_now: bool) {
        match self.shared.spool.entry(Area::Active, id) {
            Ok(entry) => {
                let next = entry
                    .events
                    .iter()
                    .rev()
                    .find_map(|e| match e {
                        StateEvent::Deferred { next, .. } => Some(*next),
                        _ => None,
                    })
                    .unwrap_or(0);
                let due = if due_now { 0 } else { next };
                let key = route_key(&entry.trailer.meta);
                self.insert(id.to_string(), key, due, entry.trailer.meta.received);
            }
            Err(e) => tracing::warn!(queue_id = id, error = %e, "cannot load queued message; it stays on disk"),
        }
    }

    fn handle(&mut self, event: Event) {
        match event {
            Event::Queued { id, key, received } => self.insert(id, key, 0, received),
            Event::Flush => self.flush(),
            Event::Done { id, outcome } => {
                self.in_flight = self.in_flight.saturating_sub(1);
                let Some(item) = self.items.get_mut(&id) else { return };
                item.in_flight = false;
                if let Some(n) = self.per_key.get_mut(&item.key) {
                    *n = n.saturating_sub(1);
                }
                match outcome {
                    Outcome::Retry { due } => {
                        item.due = due;
                        self.due.insert((due, id));
                    }
                    Outcome::Finished | Outcome::Gone => {
                        self.items.remove(&id);
                    }
                }
            }
        }
        self.update_gauges();
    }

    fn flush(&mut self) {
        // Released or restored files may be on disk only.
        self.scan_disk();
        let ids: Vec<String> = self.due.iter().map(|(_, id)| id.clone()).collect();
        self.due.clear();
        for id in ids {
            if let Some(item) = self.items.get_mut(&id) {
                item.due = 0;
                self.due.insert((0, id));
            }
        }
        tracing::info!(
            messages = self.due.len(),
            "queue flush: every queued message is due now"
        );
    }

    fn dispatch(&mut self) {
        let rt = self.config();
        let max_total = rt.config.delivery.concurrency;
        let max_key = rt.config.delivery.max_per_destination;
        drop(rt);
        let now = now_unix();
        let mut started = Vec::new();
        // Bounded scan: a destination at its limit must not make dispatch O(queue).
        for (looked, (due, id)) in self.due.iter().enumerate() {
            if *due > now || self.in_flight + started.len() >= max_total || looked > 10_000 {
                break;
            }
            let Some(item) = self.items.get(id) else { continue };
            let busy = self.per_key.get(&item.key).copied().unwrap_or(0);
            let already = started
                .iter()
                .filter(|(_, k): &&(String, String)| *k == item.key)
                .count();
            if busy + already >= max_key {
                continue;
            }
            started.push((id.clone(), item.key.clone()));
        }
        for (id, key) in started {
            if let Some(item) = self.items.get_mut(&id) {
                self.due.remove(&(item.due, id.clone()));
                item.in_flight = true;
            }
            *self.per_key.entry(key).or_insert(0) += 1;
            self.in_flight += 1;
            let shared = self.shared.clone();
            tokio::spawn(async move {
                let outcome = deliver(&shared, &id).await;
                let _ = shared.handle.tx.send(Event::Done { id, outcome });
            });
        }
    }

    fn housekeeping(&mut self) {
        // `queue flush` from the command line touches a trigger file.
        let trigger = self.shared.spool.flush_trigger();
        if let Ok(modified) = std::fs::metadata(&trigger).and_then(|m| m.modified())
            && self.flush_seen != Some(modified)
        {
            self.flush_seen = Some(modified);
            let _ = std::fs::remove_file(&trigger);
            self.flush();
        }
        let max = self.config().config.delivery.max_in_memory;
        if self.overflow && self.items.len() < max / 2 && self.last_scan.elapsed() > Duration::from_secs(5)
            || self.last_scan.elapsed() > Duration::from_secs(60)
        {
            self.scan_disk();
        }
        self.shared.relay.prune();
    }

    /// Picks up messages that are on disk but not in the index.
    fn scan_disk(&mut self) {
        self.last_scan = Instant::now();
        let ids = match self.shared.spool.list(Area::Active) {
            Ok(ids) => ids,
            Err(e) => {
                tracing::error!(error = %e, "cannot list the spool");
                return;
            }
        };
        let max = self.config().config.delivery.max_in_memory;
        let known: HashSet<String> = self.items.keys().cloned().collect();
        let mut missing = 0;
        for id in ids {
            if known.contains(&id) {
                continue;
            }
            if self.items.len() >= max {
                missing += 1;
                continue;
            }
            self.load_from_disk(&id, false);
        }
        self.overflow = missing > 0;
        self.update_gauges();
    }

    fn update_gauges(&self) {
        let m = &self.shared.metrics;
        m.queue_size.store(self.items.len() as i64, Ordering::Relaxed);
        m.queue_oldest.store(
            self.items.values().map(|i| i.received).min().unwrap_or(0),
            Ordering::Relaxed,
        );
    }
}

/// One delivery attempt of one queued message.
async fn deliver(shared: &Shared, id: &str) -> Outcome {
    let started = Instant::now();
    let spool = &shared.spool;
    let stored = match spool.read(Area::Active, id) {
        Ok(s) => s,
        Err(SpoolError::NotFound(_)) => {
            tracing::info!(queue_id = id, "message no longer in the spool (deleted)");
            return Outcome::Gone;
        }
        Err(e @ SpoolError::Corrupt { .. }) => {
            tracing::error!(queue_id = id, error = %e, "damaged queue file set aside");
            spool.set_aside(id);
            shared.metrics.spool_corrupt.inc(&[]);
            return Outcome::Gone;
        }
        Err(e) => {
            tracing::error!(queue_id = id, error = %e, "cannot read queued message; retrying later");
            return Outcome::Retry { due: now_unix() + 60 };
        }
    };
    let meta = &stored.trailer.meta;
    let events = spool.events(Area::Active, id);
    let mut final_results: HashMap<usize, String> = HashMap::new();
    let mut attempts = 0u32;
    for e in &events {
        match e {
            StateEvent::Delivered { rcpt, reply } | StateEvent::Failed { rcpt, reply } => {
                final_results.insert(*rcpt, reply.clone());
            }
            StateEvent::Deferred { attempts: a, .. } => attempts = *a,
        }
    }
    let pending: Vec<usize> = (0..meta.envelope.recipients.len())
        .filter(|i| !final_results.contains_key(i))
        .collect();
    let rt = shared.runtime.load();
    let delivery = rt.config.delivery.clone();
    let hostname = rt.config.server.hostname.clone();

    let route: Result<Route, Reply> = match meta.kind {
        Kind::Dsn => match &meta.route {
            Some(portal) => rt
                .tenant_route(portal)
                .ok_or_else(|| Reply::new(451, (4, 3, 0), format!("tenant {portal} is no longer configured"))),
            None => Ok(rt.mx_route(
                &meta
                    .envelope
                    .recipients
                    .first()
                    .and_then(|r| domain_of(&r.address))
                    .unwrap_or_default(),
            )),
        },
        Kind::Message => rt.tenant_route(&meta.tenant).ok_or_else(|| {
            Reply::new(
                451,
                (4, 3, 0),
                format!("tenant {} is no longer configured", meta.tenant),
            )
        }),
    };
    drop(rt);

    let skips: Vec<std::ops::Range<usize>> = meta.skips.iter().map(|&(s, e)| s as usize..e as usize).collect();
    let stamp = crate::stamp::Stamp {
        prefix: stored.trailer.prefix.clone(),
        skips,
    };
    let mut pieces: Vec<&[u8]> = vec![&stamp.prefix];
    for range in stamp.kept(stored.body.len()) {
        pieces.push(&stored.body[range]);
    }
    let bytes = MessageBytes { pieces };

    let (results, remote): (Vec<(usize, RcptResult)>, Option<String>) = if pending.is_empty() {
        (Vec::new(), None)
    } else {
        match &route {
            Ok(route) => {
                let attempt = shared.relay.deliver(route, &meta.envelope, &pending, &bytes).await;
                (attempt.results, attempt.server)
            }
            Err(reply) => (
                pending
                    .iter()
                    .map(|&i| (i, RcptResult::Temporary(reply.clone())))
                    .collect(),
                None,
            ),
        }
    };
    attempts += 1;

    let mut temporary: Vec<(usize, Reply)> = Vec::new();
    let mut permanent: Vec<dsn::Failed> = Vec::new();
    for (index, result) in &results {
        let label = match result {
            RcptResult::Delivered(_) => "delivered",
            RcptResult::Temporary(_) => "deferred",
            RcptResult::Permanent(_) => "bounced",
        };
        shared.metrics.deliveries.inc(&[label]);
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

    let now = now_unix();
    let age = now - meta.received;
    let expired = match meta.kind {
        Kind::Message => age >= delivery.max_age.as_secs() as i64,
        Kind::Dsn => attempts as usize > delivery.dsn_retry.len(),
    };
    if expired && !temporary.is_empty() {
        if meta.kind == Kind::Dsn {
            shared.metrics.dsns.inc(&["dropped"]);
            tracing::warn!(
                queue_id = id,
                attempts,
                "dropping an undeliverable delivery status notification"
            );
            temporary.clear();
        } else {
            for (index, reply) in temporary.drain(..) {
                permanent.push(dsn::Failed {
                    index,
                    reply,
                    remote: remote.clone(),
                    expired: true,
                });
            }
        }
    }

    if !permanent.is_empty() && meta.kind == Kind::Message {
        let original = stamp.apply(&stored.body);
        match queue_dsn(shared, &hostname, meta, &original, &permanent).await {
            Ok(()) => {}
            Err(e) => {
                tracing::error!(queue_id = id, error = %e, "cannot queue the DSN; will retry the message later");
                return Outcome::Retry { due: now + 60 };
            }
        }
    }

    if temporary.is_empty() {
        let _ = spool.remove(Area::Active, id);
        shared
            .metrics
            .delivery_duration
            .observe(&[], Duration::from_secs(age.max(0) as u64));
        log_fate(
            meta,
            stored.body.len(),
            &final_results,
            attempts,
            age,
            started.elapsed(),
        );
        return Outcome::Finished;
    }

    // Some recipients are still pending: record what is final and when to retry.
    for (index, result) in &results {
        let event = match result {
            RcptResult::Delivered(r) => StateEvent::Delivered {
                rcpt: *index,
                reply: r.one_line(),
            },
            RcptResult::Permanent(r) => StateEvent::Failed {
                rcpt: *index,
                reply: r.one_line(),
            },
            RcptResult::Temporary(_) => continue,
        };
        let _ = spool.append(Area::Active, id, &event);
    }
    for f in permanent.iter().filter(|f| f.expired) {
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
    let error = temporary.first().map(|(_, r)| r.one_line()).unwrap_or_default();
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
        pending = temporary.len(),
        attempts,
        retry_in_s = step.as_secs(),
        error = %error,
        "delivery deferred"
    );
    Outcome::Retry { due }
}

/// Queues a DSN to the sender of `meta` for `failed` recipients.
async fn queue_dsn(
    shared: &Shared,
    hostname: &str,
    meta: &Meta,
    original: &[u8],
    failed: &[dsn::Failed],
) -> Result<(), SpoolError> {
    let now = now_unix();
    let Some(bytes) = dsn::build(hostname, &meta.envelope, original, failed, meta.received, now) else {
        shared.metrics.dsns.inc(&["suppressed"]);
        tracing::info!(queue_id = %meta.id, "no DSN: null sender or NOTIFY excludes failures");
        return Ok(());
    };
    let rt = shared.runtime.load();
    let tenant = rt
        .tenants
        .by_address(&meta.envelope.mail_from)
        .map(|t| t.portal.clone());
    let id = crate::spool::new_id();
    let dsn_meta = Meta {
        id: id.clone(),
        received: now,
        kind: Kind::Dsn,
        envelope: Envelope {
            mail_from: String::new(),
            recipients: vec![Recipient {
                address: meta.envelope.mail_from.clone(),
                orcpt: None,
                notify: None,
            }],
            ..Envelope::default()
        },
        session: SessionFacts {
            client_ip: std::net::Ipv4Addr::LOCALHOST.into(),
            client_port: 0,
            helo: hostname.to_string(),
            tls: None,
        },
        tenant: tenant.clone().unwrap_or_default(),
        direction: if tenant.is_some() {
            Direction::Inbound
        } else {
            Direction::Outgoing
        },
        verdict: None,
        skips: vec![],
        route: tenant,
    };
    drop(rt);
    shared
        .spool
        .commit(Area::Active, &dsn_meta, b"", Body::Memory(bytes))
        .await?;
    shared.metrics.dsns.inc(&["queued"]);
    tracing::info!(queue_id = %meta.id, dsn_id = %id, to = %meta.envelope.mail_from, "DSN queued");
    shared.handle.queued(&id, &route_key(&dsn_meta), now);
    Ok(())
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
