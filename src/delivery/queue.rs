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

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime};

use arc_swap::ArcSwap;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::delivery::Context;
use crate::delivery::budget::BodyBudget;
use crate::delivery::handle::{Event, Outcome, QueueHandle};
use crate::delivery::relay::Relay;
use crate::delivery::route::RouteKey;
use crate::delivery::settings::Settings;
use crate::spool::{Area, Spool, SpoolError, StateEvent, now_unix};
use crate::telemetry::metrics::Metrics;

struct Item {
    key: RouteKey,
    due: i64,
    received: i64,
}

/// Starts the scheduler; it recovers the spool's active messages first.
#[allow(clippy::too_many_arguments)]
pub(crate) fn start(
    spool: Arc<Spool>,
    relay: Arc<Relay>,
    settings: Arc<ArcSwap<Settings>>,
    metrics: Arc<Metrics>,
    budget: Arc<BodyBudget>,
    store: crate::store::Store,
    shutdown: CancellationToken,
    recovered: Vec<String>,
) -> (QueueHandle, tokio::task::JoinHandle<()>) {
    let (handle, rx) = QueueHandle::channel();
    let cx = Arc::new(Context {
        spool,
        relay,
        settings,
        metrics,
        handle: handle.clone(),
        budget,
        store,
    });
    let task = tokio::spawn(scheduler(cx, rx, shutdown, recovered));
    (handle, task)
}

/// The due messages of one destination and how many are being delivered.
#[derive(Default)]
struct KeyQueue {
    due: BTreeSet<(i64, String)>,
    in_flight: usize,
}

struct Scheduler {
    cx: Arc<Context>,
    items: HashMap<String, Item>,
    /// Per destination key: dispatch looks at each destination's earliest
    /// entries only, so a destination at its limit costs nothing.
    queues: HashMap<RouteKey, KeyQueue>,
    in_flight: usize,
    /// Some queued messages are only on disk (the index was full).
    overflow: bool,
    last_scan: Instant,
    last_housekeeping: Instant,
    flush_seen: Option<SystemTime>,
    /// Shutting down: stop as soon as nothing is in flight or due.
    draining: bool,
}

/// Housekeeping (flush trigger, pool pruning, gauges) runs at most this often.
const HOUSEKEEPING: Duration = Duration::from_millis(250);

async fn scheduler(
    cx: Arc<Context>,
    mut rx: mpsc::UnboundedReceiver<Event>,
    shutdown: CancellationToken,
    recovered: Vec<String>,
) {
    let mut s = Scheduler {
        cx,
        items: HashMap::new(),
        queues: HashMap::new(),
        in_flight: 0,
        overflow: false,
        last_scan: Instant::now(),
        last_housekeeping: Instant::now(),
        flush_seen: None,
        draining: false,
    };
    let flush_file = s.cx.spool.flush_trigger();
    let flushed = std::fs::remove_file(&flush_file).is_ok();
    for id in recovered {
        s.load_from_disk(&id, flushed);
    }
    s.count_quarantine();
    s.update_gauges();
    loop {
        s.dispatch();
        if s.draining && s.in_flight == 0 && s.next_due().is_none_or(|due| due > now_unix()) {
            tracing::info!(queued = s.items.len(), "queue drained: nothing in flight or due");
            break;
        }
        let sleep_for = match s.next_due() {
            Some(due) => Duration::from_secs((due - now_unix()).clamp(0, 1) as u64),
            None => HOUSEKEEPING,
        }
        .max(Duration::from_millis(10))
        .min(HOUSEKEEPING);
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
        if s.last_housekeeping.elapsed() >= HOUSEKEEPING {
            s.housekeeping();
        }
    }
}

impl Scheduler {
    fn config(&self) -> arc_swap::Guard<Arc<Settings>> {
        self.cx.settings.load()
    }

    fn insert(&mut self, id: String, key: RouteKey, due: i64, received: i64) {
        let max = self.config().config.delivery.max_in_memory;
        if self.items.contains_key(&id) {
            return;
        }
        if self.items.len() >= max {
            self.overflow = true;
            return;
        }
        self.queues
            .entry(key.clone())
            .or_default()
            .due
            .insert((due, id.clone()));
        self.items.insert(id, Item { key, due, received });
    }

    fn load_from_disk(&mut self, id: &str, due_now: bool) {
        match self.cx.spool.entry(Area::Active, id) {
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
                let key = RouteKey::of(&entry.trailer.meta);
                self.insert(id.to_string(), key, due, entry.trailer.meta.received);
            }
            Err(e @ SpoolError::Corrupt { .. }) => {
                tracing::error!(queue_id = id, error = %e, "damaged queue file set aside");
                self.cx.spool.set_aside(id);
                self.cx.metrics.spool_corrupt.inc(&[]);
            }
            Err(e) => tracing::warn!(queue_id = id, error = %e, "cannot load queued message; it stays on disk"),
        }
    }

    fn handle(&mut self, event: Event) {
        match event {
            Event::Queued { id, key, received } => self.insert(id, key, 0, received),
            Event::Drain => self.draining = true,
            Event::Done { id, outcome } => {
                self.in_flight = self.in_flight.saturating_sub(1);
                let Some(item) = self.items.get_mut(&id) else { return };
                let key = item.key.clone();
                let queue = self.queues.entry(key.clone()).or_default();
                queue.in_flight = queue.in_flight.saturating_sub(1);
                match outcome {
                    Outcome::Retry { due } => {
                        item.due = due;
                        queue.due.insert((due, id));
                    }
                    Outcome::Finished | Outcome::Gone => {
                        self.items.remove(&id);
                        if queue.due.is_empty() && queue.in_flight == 0 {
                            self.queues.remove(&key);
                        }
                    }
                }
            }
        }
        self.cx
            .metrics
            .queue_size
            .store(self.items.len() as i64, Ordering::Relaxed);
    }

    /// Makes `only` (or every queued message) due now.
    fn flush(&mut self, only: Option<&HashSet<String>>) {
        // Released or restored files may be on disk only.
        self.scan_disk();
        let mut n = 0;
        for queue in self.queues.values_mut() {
            for (due, id) in std::mem::take(&mut queue.due) {
                let due = match only {
                    Some(ids) if !ids.contains(&id) => due,
                    _ => {
                        n += 1;
                        0
                    }
                };
                if let Some(item) = self.items.get_mut(&id) {
                    item.due = due;
                }
                queue.due.insert((due, id));
            }
        }
        tracing::info!(messages = n, "queue flush: messages due now");
    }

    /// The earliest due time among destinations that can take another delivery.
    fn next_due(&self) -> Option<i64> {
        let max_key = self.config().config.delivery.max_per_destination;
        self.queues
            .values()
            .filter(|q| q.in_flight < max_key)
            .filter_map(|q| q.due.first().map(|(due, _)| *due))
            .min()
    }

    fn dispatch(&mut self) {
        let rt = self.config();
        let max_total = rt.config.delivery.concurrency;
        let max_key = rt.config.delivery.max_per_destination;
        drop(rt);
        let now = now_unix();
        let mut started = Vec::new();
        for queue in self.queues.values_mut() {
            while self.in_flight + started.len() < max_total && queue.in_flight < max_key {
                match queue.due.first() {
                    Some((due, _)) if *due <= now => {
                        let (_, id) = queue.due.pop_first().expect("first exists");
                        queue.in_flight += 1;
                        started.push(id);
                    }
                    _ => break,
                }
            }
        }
        self.in_flight += started.len();
        for id in started {
            let cx = self.cx.clone();
            tokio::spawn(async move {
                // The attempt runs in its own task so that even a panic in it
                // hands the message back to the scheduler (and its slot frees).
                let attempt = {
                    let (cx, id) = (cx.clone(), id.clone());
                    tokio::spawn(async move { crate::delivery::attempt::deliver(&cx, &id).await })
                };
                let outcome = attempt.await.unwrap_or_else(|e| {
                    tracing::error!(queue_id = %id, error = %e, "delivery attempt crashed; retrying in a minute");
                    Outcome::Retry { due: now_unix() + 60 }
                });
                cx.handle.done(id, outcome);
            });
        }
    }

    fn housekeeping(&mut self) {
        self.last_housekeeping = Instant::now();
        // `queue flush` from the command line touches a trigger file.
        let trigger = self.cx.spool.flush_trigger();
        if let Ok(modified) = std::fs::metadata(&trigger).and_then(|m| m.modified())
            && self.flush_seen != Some(modified)
        {
            self.flush_seen = Some(modified);
            // Taken whole by renaming: an order appended meanwhile goes to a new file, seen next round.
            let taken = trigger.with_extension("taken");
            let orders = std::fs::rename(&trigger, &taken)
                .and_then(|()| std::fs::read_to_string(&taken))
                .unwrap_or_default();
            let _ = std::fs::remove_file(&taken);
            let mut ids: HashSet<String> = HashSet::new();
            let (mut all, mut rescan) = (false, false);
            for line in orders.lines() {
                let mut words = line.split_whitespace();
                match words.next() {
                    Some("rescan") => rescan = true,
                    Some("flush") => {
                        let before = ids.len();
                        ids.extend(words.map(str::to_string));
                        all |= ids.len() == before && line.trim() == "flush";
                    }
                    // An older command line's order: flush everything.
                    _ => all = true,
                }
            }
            if orders.is_empty() || all {
                self.flush(None);
            } else if !ids.is_empty() {
                self.flush(Some(&ids));
            } else if rescan {
                self.scan_disk();
            }
        }
        let max = self.config().config.delivery.max_in_memory;
        if self.overflow && self.items.len() < max / 2 && self.last_scan.elapsed() > Duration::from_secs(5)
            || self.last_scan.elapsed() > Duration::from_secs(60)
        {
            self.scan_disk();
        }
        self.cx.relay.prune();
        self.update_gauges();
    }

    /// Picks up messages that are on disk but not in the index.
    fn scan_disk(&mut self) {
        self.last_scan = Instant::now();
        let ids = match self.cx.spool.list(Area::Active) {
            Ok(ids) => ids,
            Err(e) => {
                tracing::error!(error = %e, "cannot list the spool");
                return;
            }
        };
        // Messages held or deleted from the command line are no longer on
        // disk: forget those waiting (one being delivered comes back by itself).
        let on_disk: HashSet<&str> = ids.iter().map(String::as_str).collect();
        let mut gone = Vec::new();
        for queue in self.queues.values_mut() {
            queue.due.retain(|(_, id)| {
                let keep = on_disk.contains(id.as_str());
                if !keep {
                    gone.push(id.clone());
                }
                keep
            });
        }
        for id in gone {
            self.items.remove(&id);
        }
        self.queues.retain(|_, q| !q.due.is_empty() || q.in_flight > 0);
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
        self.count_quarantine();
        self.update_gauges();
    }

    /// Sampled at start and with each disk scan (at least once a minute), not every housekeeping round.
    fn count_quarantine(&self) {
        if let Ok(ids) = self.cx.spool.list(Area::Quarantine) {
            self.cx
                .metrics
                .quarantine_size
                .store(ids.len() as i64, Ordering::Relaxed);
        }
    }

    fn update_gauges(&self) {
        let m = &self.cx.metrics;
        m.queue_size.store(self.items.len() as i64, Ordering::Relaxed);
        let mut by_tenant: BTreeMap<String, (i64, i64)> = BTreeMap::new();
        for item in self.items.values() {
            let tenant = item.key.strip_prefix("tenant:").unwrap_or("-").to_string();
            let e = by_tenant.entry(tenant).or_insert((0, i64::MAX));
            e.0 += 1;
            e.1 = e.1.min(item.received);
        }
        *m.queue_by_tenant.lock().expect("metrics lock") = by_tenant;
        m.queue_oldest.store(
            self.items.values().map(|i| i.received).min().unwrap_or(0),
            Ordering::Relaxed,
        );
    }
}
