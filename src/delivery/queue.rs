//! The delivery scheduler over the spool: delivers promptly, retries
//! temporary failures on the configured schedule, bounces permanent failures
//! and expired messages with a DSN, and never loads the whole spool.
//!
//! The scheduler task owns a bounded index of queued ids (their due time and
//! destination key); bodies stay on disk and are read only for an attempt.
//! When more messages are queued than `delivery.max_in_memory`, the rest wait
//! on disk and are picked up by a periodic scan; the queue gauge counts them
//! too, and a flush of everything reaches them as they are loaded. A periodic
//! scan is skipped while the spool directory has not changed since the last
//! one, so an idle gateway does not re-list a large backlog. Concurrency is capped in
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
    /// Queued messages only on disk (the index was full): counted by the last
    /// scan (or start-up), plus those queued since while the index was full.
    /// The queue gauge is the index plus these; any means a refill scan is due.
    disk_only: usize,
    /// A flush of every message is under way: messages loaded from disk are due
    /// now whatever their history says, until a scan finds none left on disk only.
    flush_all: bool,
    last_scan: Instant,
    /// The active directory's modification time as the last scan began, if it
    /// was old enough to be trusted (see `Scheduler::disk_unchanged`).
    scanned_mtime: Option<SystemTime>,
    last_housekeeping: Instant,
    flush_seen: Option<SystemTime>,
    /// Shutting down: stop as soon as nothing is in flight or due.
    draining: bool,
}

/// Housekeeping (flush trigger, pool pruning, gauges) runs at most this often.
const HOUSEKEEPING: Duration = Duration::from_millis(250);

/// A directory modification time this recent is not trusted to show every change (see `disk_unchanged`).
const MTIME_SLACK: Duration = Duration::from_secs(2);

/// The active directory's modification time as a scan begins, kept only if it
/// is at least `MTIME_SLACK` old at `now`: a file created or removed in the same
/// clock tick as the scan's listing may leave the time as it was, so a recent
/// time cannot show that nothing changed after the listing. A time in the
/// future (the clock stepped back) is not trusted either.
fn trusted_mtime(mtime: Option<SystemTime>, now: SystemTime) -> Option<SystemTime> {
    mtime.filter(|t| now.duration_since(*t).is_ok_and(|age| age >= MTIME_SLACK))
}

/// Whether a periodic scan can be skipped: the last scan recorded a trusted
/// modification time (`trusted_mtime`) and the directory still has it. An
/// unreadable time, or none recorded, means scan.
fn unchanged_since_scan(scanned: Option<SystemTime>, current: Option<SystemTime>) -> bool {
    scanned.is_some() && current == scanned
}

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
        disk_only: 0,
        flush_all: false,
        last_scan: Instant::now(),
        scanned_mtime: None,
        last_housekeeping: Instant::now(),
        flush_seen: None,
        draining: false,
    };
    let flush_file = s.cx.spool.flush_trigger();
    let flushed = std::fs::remove_file(&flush_file).is_ok();
    s.flush_all = flushed;
    for id in recovered {
        // Past the index's capacity a message stays on disk unread: reading
        // its entry only to drop it made start-up read the whole backlog.
        if !s.load_from_disk(&id) {
            s.disk_only += 1;
        }
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

    /// Whether the index is full (a message then waits on disk).
    fn full(&self) -> bool {
        self.items.len() >= self.config().config.delivery.max_in_memory
    }

    fn insert(&mut self, id: String, key: RouteKey, due: i64, received: i64) {
        if self.items.contains_key(&id) {
            return;
        }
        if self.full() && !(due <= now_unix() && self.evict_latest()) {
            self.disk_only += 1;
            return;
        }
        self.queues
            .entry(key.clone())
            .or_default()
            .due
            .insert((due, id.clone()));
        self.items.insert(id, Item { key, due, received });
    }

    /// Makes room for a message due now: the waiting message due last leaves the
    /// index (it stays on disk; a scan brings it back when there is room), if it
    /// is not due yet. Without this, a full index of messages deferred for a
    /// destination that is down kept every new message, for any destination, on
    /// disk until those retries were over. False when nothing could leave.
    fn evict_latest(&mut self) -> bool {
        let now = now_unix();
        let latest = self
            .queues
            .iter()
            .filter_map(|(key, q)| q.due.last().map(|(due, id)| (*due, key, id)))
            .filter(|(due, _, _)| *due > now)
            .max_by_key(|(due, _, _)| *due)
            .map(|(due, key, id)| (due, key.clone(), id.clone()));
        let Some((due, key, id)) = latest else {
            return false;
        };
        if let Some(queue) = self.queues.get_mut(&key) {
            queue.due.remove(&(due, id.clone()));
            if queue.due.is_empty() && queue.in_flight == 0 {
                self.queues.remove(&key);
            }
        }
        self.items.remove(&id);
        self.disk_only += 1;
        true
    }

    /// Indexes a message found on disk; false (nothing read) when the index is full.
    fn load_from_disk(&mut self, id: &str) -> bool {
        if self.full() {
            return false;
        }
        let due_now = self.flush_all;
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
        true
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
        self.cx.metrics.queue_size.store(self.queued(), Ordering::Relaxed);
    }

    /// Every queued message: those in the index and those waiting on disk only.
    fn queued(&self) -> i64 {
        (self.items.len() + self.disk_only) as i64
    }

    /// Makes `only` (or every queued message) due now.
    fn flush(&mut self, only: Option<&HashSet<String>>) {
        // Messages on disk only (the index was full) are due as they are loaded,
        // this scan or a later one: a flush of everything reaches the whole backlog.
        self.flush_all |= only.is_none();
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
        let periodic = self.last_scan.elapsed() > Duration::from_secs(60);
        let refill =
            self.disk_only > 0 && self.items.len() < max / 2 && self.last_scan.elapsed() > Duration::from_secs(5);
        if refill || periodic {
            if !self.disk_unchanged() {
                self.scan_disk();
            } else if periodic {
                // Nothing to pick up; the quarantine gauge is still sampled once a minute.
                self.last_scan = Instant::now();
                self.count_quarantine();
            }
        }
        self.cx.relay.prune();
        self.update_gauges();
    }

    /// Whether the active directory is as the last scan found it, so a periodic
    /// scan would find nothing new: no file was created, renamed or removed in
    /// it since (each changes its modification time). A time recorded within
    /// `MTIME_SLACK` of the scan is not trusted: a change in the same clock tick
    /// as the scan's listing could leave the time unchanged.
    fn disk_unchanged(&self) -> bool {
        unchanged_since_scan(self.scanned_mtime, self.cx.spool.active_mtime())
    }

    /// Picks up messages that are on disk but not in the index.
    fn scan_disk(&mut self) {
        self.last_scan = Instant::now();
        self.scanned_mtime = trusted_mtime(self.cx.spool.active_mtime(), SystemTime::now());
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
        let mut missing = 0;
        for id in ids {
            if self.items.contains_key(&id) {
                continue;
            }
            if !self.load_from_disk(&id) {
                missing += 1;
            }
        }
        self.disk_only = missing;
        // Every message that was queued when a flush of everything came has been indexed (and made due).
        if missing == 0 {
            self.flush_all = false;
        }
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
        m.queue_size.store(self.queued(), Ordering::Relaxed);
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

#[cfg(test)]
mod tests {
    use super::*;

    /// What a scan at `scan_at` records, then whether a scan finding `current` is skipped.
    fn skipped(mtime_at_scan: SystemTime, scan_at: SystemTime, current: Option<SystemTime>) -> bool {
        unchanged_since_scan(trusted_mtime(Some(mtime_at_scan), scan_at), current)
    }

    #[test]
    fn an_idle_spool_is_not_relisted_but_any_change_or_a_recent_time_means_a_scan() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let later = t + Duration::from_secs(600);
        // Unchanged since a scan that saw an old time: the periodic scan is skipped.
        assert!(skipped(t, later, Some(t)));
        assert!(skipped(t, t + MTIME_SLACK, Some(t)));
        // A file created, renamed or removed since: the directory's time moved.
        assert!(!skipped(t, later, Some(t + Duration::from_secs(1))));
        assert!(!skipped(t, later, Some(t - Duration::from_secs(1))));
        // The time was less than 2 s old when the scan listed the directory: a
        // change in the same tick may not show, so the next one scans anyway.
        assert!(!skipped(t, t + Duration::from_millis(1999), Some(t)));
        assert!(!skipped(t, t, Some(t)));
        // A time in the future (clock stepped back) is not trusted either.
        assert!(!skipped(t, t - Duration::from_secs(10), Some(t)));
        // The directory's time cannot be read now, or could not be at the scan.
        assert!(!skipped(t, later, None));
        assert!(!unchanged_since_scan(None, Some(t)));
        assert!(!unchanged_since_scan(None, None));
    }
}
