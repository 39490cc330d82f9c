//! The writer: drains the bounded channel the mail path writes to, in
//! batches of up to [`MAX_BATCH`] records per transaction.
//!
//! A batch that fails is retried a few times with a growing pause (while the
//! gateway runs); meanwhile the channel fills, and once it is full new
//! records are dropped at the sender and counted. Either way the mail path
//! never waits. With PostgreSQL, each newly quarantined message's bytes are
//! copied into the database after its index entry, and the local file is
//! removed once they are there.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::Store;
use super::types::{DeliveryOutcome, EventRecord, QuarantineEntry};

/// Records per transaction.
const MAX_BATCH: usize = 500;
/// Pauses between the tries of a failed batch.
const RETRY: [Duration; 3] = [
    Duration::from_millis(200),
    Duration::from_secs(2),
    Duration::from_secs(10),
];

pub(super) enum Write {
    Event(Box<EventRecord>),
    Delivery {
        queue_id: String,
        rcpt: String,
        outcome: DeliveryOutcome,
    },
    Quarantined(QuarantineEntry),
    /// Answered once everything before it was handled.
    Flush(oneshot::Sender<()>),
}

pub(super) async fn run(store: Store, mut rx: mpsc::Receiver<Write>, stop: CancellationToken) {
    let mut stopping = false;
    loop {
        let first = if stopping {
            rx.recv().await
        } else {
            tokio::select! {
                w = rx.recv() => w,
                _ = stop.cancelled() => {
                    stopping = true;
                    rx.close();
                    continue;
                }
            }
        };
        let Some(first) = first else { break };
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(w) => batch.push(w),
                Err(_) => break,
            }
        }
        write(&store, batch, &stop).await;
    }
}

async fn write(store: &Store, batch: Vec<Write>, stop: &CancellationToken) {
    let mut events = Vec::new();
    let mut deliveries = Vec::new();
    let mut entries = Vec::new();
    let mut waiters = Vec::new();
    for w in batch {
        match w {
            Write::Event(e) => events.push(*e),
            Write::Delivery {
                queue_id,
                rcpt,
                outcome,
            } => deliveries.push((queue_id, rcpt, outcome)),
            Write::Quarantined(q) => entries.push(q),
            Write::Flush(tx) => waiters.push(tx),
        }
    }
    let count = (events.len() + deliveries.len() + entries.len()) as u64;
    if count > 0 {
        let backend = &store.inner.backend;
        let mut tries = 0;
        loop {
            match backend.write_batch(&events, &deliveries, &entries).await {
                Ok(()) => {
                    store.inner.metrics.store_writes.add(&["written"], count);
                    break;
                }
                Err(e) if tries < RETRY.len() && !stop.is_cancelled() => {
                    tracing::warn!(error = %e, records = count, "cannot write to the store; retrying");
                    tokio::time::sleep(RETRY[tries]).await;
                    tries += 1;
                }
                Err(e) => {
                    store.inner.metrics.store_writes.add(&["failed"], count);
                    tracing::error!(error = %e, records = count, "cannot write to the store; records dropped (mail is not affected)");
                    break;
                }
            }
        }
        if backend.keeps_bodies() {
            for q in &entries {
                if let Err(e) = super::quarantine::upload(store, &q.id).await {
                    tracing::warn!(queue_id = %q.id, error = %e, "quarantined message not copied to the store yet; kept on disk");
                }
            }
        }
        if !entries.is_empty() {
            super::maintenance::enforce_cap(store).await;
        }
    }
    for w in waiters {
        let _ = w.send(());
    }
}

/// Logs a dropped record at most every ten seconds.
pub(super) fn warn_dropped() {
    static LAST: AtomicI64 = AtomicI64::new(0);
    let now = crate::spool::now_unix();
    let last = LAST.load(Ordering::Relaxed);
    if now - last >= 10
        && LAST
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
    {
        tracing::warn!(
            "the store's write queue is full: event records are being dropped (mail is not affected); see exogate_store_writes_total{{result=\"dropped\"}}"
        );
    }
}
