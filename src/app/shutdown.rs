//! Graceful stop: stop accepting, let sessions finish within the grace
//! period, then close what is left with 421, give the queue
//! `server.queue_drain` to deliver what is due (what was just accepted
//! included), then stop it. A second signal
//! exits at once; that is safe because the spool is consistent at every
//! instant and nothing unacknowledged was promised.

use std::time::Duration;

use tokio::signal::unix::Signal;

use crate::app::start::Gateway;
use crate::app::systemd;

/// A second signal: leave at once, after the log's queued lines.
fn exit_now() -> ! {
    tracing::warn!("second signal: exiting now");
    crate::telemetry::log::finish();
    std::process::exit(1)
}

pub(super) async fn shutdown(
    mut gateway: Gateway,
    grace: Duration,
    queue_drain: Duration,
    term: &mut Signal,
    int: &mut Signal,
) {
    tracing::info!(
        grace_s = grace.as_secs(),
        "shutting down: no longer accepting, letting sessions finish"
    );
    systemd::stopping("draining sessions");
    let inbound = &gateway.inbound;
    inbound.soft_stop.cancel();
    inbound.sessions.close();
    let drained = tokio::select! {
        _ = inbound.sessions.wait() => true,
        _ = tokio::time::sleep(grace) => false,
        _ = term.recv() => exit_now(),
        _ = int.recv() => exit_now(),
    };
    if !drained {
        tracing::warn!("grace period over: closing the remaining sessions with 421");
        inbound.hard_stop.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(5), inbound.sessions.wait()).await;
    }
    // What the sessions queued is due now: deliver it if the downstream answers
    // within the window; what is left stays in the spool for the next start.
    if !queue_drain.is_zero() {
        systemd::stopping("draining the queue");
        gateway.queue.drain();
        let drained = tokio::select! {
            r = tokio::time::timeout(queue_drain, &mut gateway.queue_task) => r.is_ok(),
            _ = term.recv() => exit_now(),
            _ = int.recv() => exit_now(),
        };
        if !drained {
            tracing::warn!(
                window_s = queue_drain.as_secs(),
                "queue drain window over: the rest stays queued"
            );
        }
    }
    gateway.queue_stop.cancel();
    if !gateway.queue_task.is_finished() {
        let _ = tokio::time::timeout(Duration::from_secs(5), gateway.queue_task).await;
    }
    // The store's writer writes what is queued, then ends.
    gateway.store_stop.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(5), gateway.store_task).await;
    for t in gateway.listener_tasks {
        t.abort();
    }
    // Nothing commits any more: a last checkpoint leaves the commit log
    // empty, so the next start has nothing to write back.
    let spool = gateway.inbound.spool.clone();
    match tokio::task::spawn_blocking(move || spool.checkpoint()).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "last commit log checkpoint failed: the next start writes back from it");
        }
        Err(e) => tracing::warn!(error = %e, "last commit log checkpoint did not run"),
    }
    tracing::info!("stopped");
}
