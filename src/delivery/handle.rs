//! How the rest of the gateway (and a delivery attempt) tells the scheduler
//! about work, and what an attempt tells it back.
//!
//! A plain channel sender: telling never blocks and never fails the sender;
//! a scheduler that has stopped simply no longer listens (whatever was
//! queued is on disk and is picked up at the next start).

use tokio::sync::mpsc;

use crate::delivery::route::RouteKey;

/// What one attempt on a queued message came to.
#[derive(Debug)]
pub(crate) enum Outcome {
    /// Every recipient has a final result; the file is gone.
    Finished,
    /// Try again at `due` (Unix seconds).
    Retry { due: i64 },
    /// The file disappeared or was damaged (already handled).
    Gone,
}

/// What the scheduler is told.
pub(crate) enum Event {
    Queued {
        id: String,
        key: RouteKey,
        received: i64,
    },
    Done {
        id: String,
        outcome: Outcome,
    },
    /// Shutting down: finish what is in flight and what is due now, then stop.
    Drain,
}

/// Tells the scheduler about new work.
#[derive(Clone)]
pub(crate) struct QueueHandle {
    tx: mpsc::UnboundedSender<Event>,
}

impl QueueHandle {
    /// A handle and the receiving end the scheduler listens on.
    pub(crate) fn channel() -> (QueueHandle, mpsc::UnboundedReceiver<Event>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (QueueHandle { tx }, rx)
    }

    /// A message was committed to the active spool.
    pub(crate) fn queued(&self, id: &str, key: &RouteKey, received: i64) {
        let _ = self.tx.send(Event::Queued {
            id: id.to_string(),
            key: key.clone(),
            received,
        });
    }

    /// Shutting down: stop once nothing is in flight or due (the caller bounds the wait).
    pub(crate) fn drain(&self) {
        let _ = self.tx.send(Event::Drain);
    }

    /// An attempt on `id` is over.
    pub(crate) fn done(&self, id: String, outcome: Outcome) {
        let _ = self.tx.send(Event::Done { id, outcome });
    }
}
