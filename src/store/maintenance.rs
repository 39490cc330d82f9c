//! Upkeep while the gateway runs, every [`TICK`] times [`UPKEEP_EVERY`]: index quarantined files
//! the index missed (and, with PostgreSQL, copy their bytes in), apply each
//! tenant's retention to events, audit records and quarantined messages,
//! keep the quarantine under its size cap (oldest first; a warning and the
//! `exogate_quarantine_bytes` gauge from 80 %); and every [`TICK`], read
//! the allow lists again (another node or the command line may have changed them).
//!
//! The cap is what keeps the quarantine from taking the spool's disk: a
//! quarantined message beyond it costs the oldest held one, never a 452 for
//! new mail.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::spool::Area;

use super::backend::BodyRow;
use super::{Store, StoreError};

/// How often the allow lists are read again (other nodes, the command line).
const TICK: Duration = Duration::from_secs(5);
/// Reconciliation, retention and the cap run every this many ticks.
const UPKEEP_EVERY: u32 = 6;
/// The share of the cap at which a warning is logged.
const WARN_AT: f64 = 0.8;

pub(super) async fn run(store: Store, stop: CancellationToken) {
    let mut tick = 0u32;
    loop {
        if tick.is_multiple_of(UPKEEP_EVERY) {
            if let Err(e) = store.reconcile().await {
                tracing::warn!(error = %e, "cannot reconcile the quarantine index");
            }
            if let Err(e) = store.prune().await {
                tracing::warn!(error = %e, "cannot apply retention to the store");
            }
        }
        if let Err(e) = store.refresh_allow_lists().await {
            tracing::debug!(error = %e, "cannot refresh the allow lists");
        }
        tick = tick.wrapping_add(1);
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tokio::time::sleep(TICK) => {}
        }
    }
}

/// Retention, then the cap; returns the quarantined messages removed.
pub(super) async fn prune(store: &Store) -> Result<u64, StoreError> {
    let cfg = &store.inner.config;
    let backend = &store.inner.backend;
    let now = store.now();
    let cutoff = |d: Duration| now - d.as_secs() as i64;
    let per_tenant: Vec<(String, i64)> = cfg
        .tenant_retention
        .iter()
        .map(|(t, d)| (t.clone(), cutoff(*d)))
        .collect();
    let default_cutoff = cutoff(cfg.retention);
    let latest = per_tenant.iter().map(|(_, c)| *c).fold(default_cutoff, i64::max);
    let oldest = per_tenant.iter().map(|(_, c)| *c).fold(default_cutoff, i64::min);
    let cutoff_of = |tenant: &str| {
        per_tenant
            .iter()
            .find(|(t, _)| t == tenant)
            .map_or(default_cutoff, |(_, c)| *c)
    };

    // Oldest first, at most this many a round: the next round goes on.
    let mut removed = 0;
    for row in backend.quarantine_bodies(Some(latest), 10_000).await? {
        if row.time < cutoff_of(&row.tenant) {
            expire(store, &row, "retention").await?;
            removed += 1;
        }
    }
    removed += cap(store).await?;
    backend.prune_records(&per_tenant, default_cutoff, oldest).await?;
    Ok(removed)
}

async fn expire(store: &Store, row: &BodyRow, reason: &str) -> Result<(), StoreError> {
    super::quarantine::remove_body(store, &row.id).await;
    store.inner.backend.quarantine_expire(&row.id).await?;
    store.inner.metrics.quarantine_pruned.inc(&[reason]);
    tracing::info!(queue_id = %row.id, tenant = %row.tenant, bytes = row.bytes, reason, "quarantined message removed");
    Ok(())
}

/// Removes the oldest quarantined messages until the rest fit under the cap.
async fn cap(store: &Store) -> Result<u64, StoreError> {
    static WARNED: AtomicBool = AtomicBool::new(false);
    let max = store.inner.config.quarantine_max_size;
    let (_, mut bytes) = store.inner.backend.quarantine_usage().await?;
    let mut removed = 0;
    while bytes > max {
        let rows = store.inner.backend.quarantine_bodies(None, 100).await?;
        if rows.is_empty() {
            break;
        }
        for row in &rows {
            if bytes <= max {
                break;
            }
            expire(store, row, "cap").await?;
            bytes = bytes.saturating_sub(row.bytes);
            removed += 1;
        }
    }
    if removed > 0 {
        tracing::warn!(
            removed,
            cap = max,
            "the quarantine reached quarantine_max_size: the oldest messages were removed"
        );
    }
    store
        .inner
        .metrics
        .quarantine_bytes
        .store(bytes as i64, Ordering::Relaxed);
    let high = bytes as f64 >= WARN_AT * max as f64;
    if high && !WARNED.swap(true, Ordering::Relaxed) {
        tracing::warn!(
            bytes,
            cap = max,
            "the quarantine holds 80 % of quarantine_max_size or more: the oldest messages will be removed at the cap"
        );
    } else if !high {
        WARNED.store(false, Ordering::Relaxed);
    }
    Ok(removed)
}

/// After new quarantine entries: keep under the cap now (logged, not returned).
pub(super) async fn enforce_cap(store: &Store) {
    if let Err(e) = cap(store).await {
        tracing::warn!(error = %e, "cannot apply the quarantine's size cap");
    }
}

/// Indexes quarantined files the index does not know; with PostgreSQL,
/// copies every local file's bytes into the database.
pub(super) async fn reconcile(store: &Store) -> Result<u64, StoreError> {
    let spool = &store.inner.spool;
    let ids = spool.list(Area::Quarantine)?;
    if ids.is_empty() {
        return Ok(0);
    }
    let known = store.inner.backend.quarantine_known(&ids).await?;
    let mut indexed = 0;
    for id in ids.iter().filter(|id| !known.contains(*id)) {
        let stored = match spool.read(Area::Quarantine, id) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(queue_id = %id, error = %e, "unreadable quarantined file left alone");
                continue;
            }
        };
        let meta = &stored.trailer.meta;
        let event = super::record::event(&super::record::Facts {
            queue_id: id,
            time: meta.received,
            node: &store.inner.config.node,
            tenant: &meta.tenant,
            direction: meta.direction,
            envelope: &meta.envelope,
            session: &meta.session,
            raw: &stored.body,
            size: stored.body.len() as u64,
            verdict: meta.verdict.as_ref(),
            action: "quarantine",
            auth: None,
        });
        store
            .inner
            .backend
            .quarantine_insert(&super::quarantine::entry_of(&event))
            .await?;
        indexed += 1;
    }
    if indexed > 0 {
        tracing::info!(messages = indexed, "quarantined messages added to the index");
    }
    if store.inner.backend.keeps_bodies() {
        for id in &ids {
            super::quarantine::upload(store, id).await?;
        }
    }
    Ok(indexed)
}
