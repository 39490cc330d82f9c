//! The writer: drains the bounded channel the mail path writes to, in
//! batches of up to [`MAX_BATCH`] records per transaction, gathered for at
//! most [`LINGER`] after the first one arrives (no wait when a caller asks
//! for a flush or the gateway stops).
//!
//! Why linger: every event touches a dozen index pages and the full-text
//! index, and SQLite writes each touched page whole into its WAL once per
//! transaction, then again into the database at each checkpoint. With one
//! transaction per event (what a busy writer got without lingering), the
//! store wrote about 130 KB per 10 KB message, on the spool's file system;
//! with 100 ms, 8.6 KB; with a second, 3.1 KB (benches/README.md, "What the
//! event store costs the tail"). The price is that the history shows a
//! message up to a second later, and a crash loses up to a second more of
//! history (never mail; the quarantine's index is reconciled with its files
//! at start and every 30 s).
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

/// Records per transaction: above what a second brings at the gateway's
/// peak (about 2,500 records, an event and a delivery per message).
const MAX_BATCH: usize = 5_000;
/// How long the first record of a batch waits for others to join it.
const LINGER: Duration = Duration::from_secs(1);
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
        let batch = gather(first, &mut rx, &stop).await;
        write(&store, batch, &stop).await;
    }
}

/// A batch: `first` and what arrives within [`LINGER`] of it, up to
/// [`MAX_BATCH`]. A flush request or the gateway stopping ends the wait:
/// then only what is already queued joins.
async fn gather(first: Write, rx: &mut mpsc::Receiver<Write>, stop: &CancellationToken) -> Vec<Write> {
    let deadline = tokio::time::Instant::now() + LINGER;
    let mut urgent = matches!(first, Write::Flush(_));
    let mut batch = vec![first];
    while batch.len() < MAX_BATCH {
        let next = if urgent || stop.is_cancelled() {
            rx.try_recv().ok()
        } else {
            tokio::select! {
                w = rx.recv() => w,
                _ = tokio::time::sleep_until(deadline) => None,
                _ = stop.cancelled() => continue,
            }
        };
        let Some(w) = next else { break };
        urgent |= matches!(w, Write::Flush(_));
        batch.push(w);
    }
    batch
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

#[cfg(test)]
mod tests {
    use super::*;

    fn delivery(n: usize) -> Write {
        Write::Delivery {
            queue_id: format!("Q{n}"),
            rcpt: "bob@contoso.com".into(),
            outcome: DeliveryOutcome::default(),
        }
    }

    fn ids(batch: &[Write]) -> Vec<String> {
        batch
            .iter()
            .map(|w| match w {
                Write::Delivery { queue_id, .. } => queue_id.clone(),
                Write::Flush(_) => "flush".into(),
                _ => "other".into(),
            })
            .collect()
    }

    // The clock is paused: tokio moves it only when every task waits, so
    // "waited the linger" and "did not wait" are exact, not timed.
    #[tokio::test(start_paused = true)]
    async fn a_batch_gathers_what_arrives_within_the_linger_and_no_more() {
        let (tx, mut rx) = mpsc::channel(16);
        let stop = CancellationToken::new();
        let step = LINGER * 4 / 10;
        let sender = tokio::spawn(async move {
            tokio::time::sleep(step).await;
            tx.send(delivery(2)).await.unwrap();
            tokio::time::sleep(step).await;
            tx.send(delivery(3)).await.unwrap();
            tokio::time::sleep(step).await;
            tx.send(delivery(4)).await.unwrap();
            tx
        });
        let started = tokio::time::Instant::now();
        let batch = gather(delivery(1), &mut rx, &stop).await;
        assert_eq!(ids(&batch), ["Q1", "Q2", "Q3"]);
        assert_eq!(started.elapsed(), LINGER);
        let _tx = sender.await.unwrap();
        assert_eq!(
            ids(&[rx.recv().await.unwrap()]),
            ["Q4"],
            "the late record waits for the next batch"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_flush_request_ends_the_wait_with_what_is_already_queued() {
        let (tx, mut rx) = mpsc::channel(16);
        let stop = CancellationToken::new();
        let (done, _answer) = oneshot::channel();
        tx.send(Write::Flush(done)).await.unwrap();
        tx.send(delivery(2)).await.unwrap();
        let started = tokio::time::Instant::now();
        let batch = gather(delivery(1), &mut rx, &stop).await;
        assert_eq!(ids(&batch), ["Q1", "flush", "Q2"]);
        assert_eq!(
            started.elapsed(),
            Duration::ZERO,
            "whoever flushes must not wait for the linger"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn stopping_ends_the_wait() {
        let (_tx, mut rx) = mpsc::channel::<Write>(16);
        let stop = CancellationToken::new();
        let stopper = stop.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(10)).await;
            stopper.cancel();
        });
        let started = tokio::time::Instant::now();
        let batch = gather(delivery(1), &mut rx, &stop).await;
        assert_eq!(ids(&batch), ["Q1"]);
        assert_eq!(started.elapsed(), Duration::from_millis(10));
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_batch_is_written_without_waiting() {
        let (tx, mut rx) = mpsc::channel(MAX_BATCH + 8);
        let stop = CancellationToken::new();
        for n in 2..=MAX_BATCH + 5 {
            tx.send(delivery(n)).await.unwrap();
        }
        let started = tokio::time::Instant::now();
        let batch = gather(delivery(1), &mut rx, &stop).await;
        assert_eq!(batch.len(), MAX_BATCH);
        assert_eq!(started.elapsed(), Duration::ZERO);
    }
}
