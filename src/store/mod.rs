//! The store: message history (events and delivery outcomes), the quarantine
//! index, audit records, per-tenant allow lists and "not spam" feedback,
//! behind one handle over two backends: SQLite in the state dir (the
//! default, `sqlite`) and a PostgreSQL database shared by several nodes
//! (`postgres`).
//!
//! Writes on the mail path never wait for the store and never fail it:
//! [`Store::record_event`], [`Store::record_delivery`] and
//! [`Store::record_quarantined`] put the record on a bounded channel that a
//! writer task drains in batches (`writer`); a full channel or a store
//! outage is logged and counted (`exogate_store_writes_total`) and mail
//! flows on. [`Store::is_allowed`] answers from memory. Everything an
//! administrator does (search, release, delete, allow) is an async call that
//! reports its errors.
//!
//! Quarantined bytes are always committed to the spool's `quarantine/`
//! folder before the client hears 250 (the spool's guarantee); with SQLite
//! they stay there, with PostgreSQL the writer copies them into the
//! database (`quarantine_bodies`, bytea) and then removes the local file, so
//! that every node can show and release them. `quarantine` owns release
//! (re-stamping a copy as delivered), deletion, retention and the size cap;
//! `maintenance` runs retention, the cap and the reconciliation of files
//! the index missed.
//!
//! Must never: block or fail an SMTP reply, lose a quarantined message the
//! index has not caught up with (the files are reconciled), print the
//! database password, or import a stage above `spool`.

mod backend;
mod clock;
mod maintenance;
mod postgres;
mod quarantine;
pub(crate) mod record;
mod sqlite;
pub(crate) mod time;
mod types;
mod writer;

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::{Arc, RwLock};

pub use crate::config::store::{StoreBackend, StoreConfig};
pub use clock::{Clock, SystemClock};
pub(crate) use types::listings_of;
pub use types::{
    Actor, AllowEntry, AuditRecord, DeliveryOutcome, EventDetail, EventRecord, EventSummary, HeldMessage,
    QuarantineEntry, QuarantineQuery, QuarantineState, QuarantineUsage, Query, Released, Scope,
};

use crate::spool::{Spool, SpoolError};
use crate::telemetry::metrics::Metrics;
use backend::Backend;
use writer::Write;

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database cannot be reached or failed; worth retrying.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// No such message (or not in the reader's scope).
    #[error("not found: {0}")]
    NotFound(String),
    /// The request cannot be carried out as asked.
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Spool(#[from] SpoolError),
}

impl StoreError {
    /// Whether trying again later may succeed.
    pub fn is_temporary(&self) -> bool {
        matches!(self, StoreError::Unavailable(_) | StoreError::Spool(_))
    }
}

/// The store handle: cheap to clone, shared by every stage that records or reads.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    backend: Backend,
    config: StoreConfig,
    spool: Arc<Spool>,
    clock: Arc<dyn Clock>,
    metrics: Arc<Metrics>,
    /// The writer's channel (absent for a store opened by the command line).
    writer: RwLock<Option<tokio::sync::mpsc::Sender<Write>>>,
    /// Every tenant's allow list, lower case (refreshed by maintenance).
    allow: RwLock<HashMap<String, HashSet<String>>>,
}

impl Store {
    /// Opens the store of `config` for a process without a running gateway
    /// (the command line, tests): the spool under `state_dir`, the system clock.
    /// Creates the schema when missing. A PostgreSQL store that cannot be
    /// reached is an error here (nothing would work without it).
    pub async fn open(config: &StoreConfig, state_dir: &Path) -> Result<Store, StoreError> {
        Store::open_with_clock(config, state_dir, Arc::new(SystemClock)).await
    }

    /// [`Store::open`] with an injected clock.
    pub async fn open_with_clock(
        config: &StoreConfig,
        state_dir: &Path,
        clock: Arc<dyn Clock>,
    ) -> Result<Store, StoreError> {
        let spool = Arc::new(Spool::open(state_dir)?);
        let store = Store::build(config, spool, Arc::new(Metrics::new()), clock).await?;
        store.inner.backend.ensure_ready().await?;
        store.refresh_allow_lists().await?;
        Ok(store)
    }

    /// The gateway's store: shares its spool and metrics. A PostgreSQL
    /// outage at start is logged, not fatal (the writer reconnects).
    pub(crate) async fn open_for_gateway(
        config: &StoreConfig,
        spool: Arc<Spool>,
        metrics: Arc<Metrics>,
    ) -> Result<Store, StoreError> {
        let store = Store::build(config, spool, metrics, Arc::new(SystemClock)).await?;
        match store.inner.backend.ensure_ready().await {
            Ok(()) => {
                if let Err(e) = store.refresh_allow_lists().await {
                    tracing::warn!(error = %e, "cannot read the allow lists yet");
                }
            }
            Err(e) => {
                store.inner.metrics.store_writes.inc(&["unavailable"]);
                tracing::error!(store = %config.backend, error = %e, "the store is unavailable at start; mail flows, events wait or are dropped");
            }
        }
        Ok(store)
    }

    async fn build(
        config: &StoreConfig,
        spool: Arc<Spool>,
        metrics: Arc<Metrics>,
        clock: Arc<dyn Clock>,
    ) -> Result<Store, StoreError> {
        let backend = Backend::open(&config.backend).await?;
        metrics
            .quarantine_cap_bytes
            .store(config.quarantine_max_size as i64, std::sync::atomic::Ordering::Relaxed);
        Ok(Store {
            inner: Arc::new(Inner {
                backend,
                config: config.clone(),
                spool,
                clock,
                metrics,
                writer: RwLock::new(None),
                allow: RwLock::new(HashMap::new()),
            }),
        })
    }

    /// The configuration the store was opened with.
    pub fn config(&self) -> &StoreConfig {
        &self.inner.config
    }

    /// Seconds since the epoch by the store's clock.
    pub fn now(&self) -> i64 {
        self.inner.clock.now()
    }

    // ---- the mail path: never blocks, never fails ----

    /// Queues an event for writing (dropped and counted when the queue is full).
    pub fn record_event(&self, event: EventRecord) {
        self.send(Write::Event(Box::new(event)));
    }

    /// Queues a delivery outcome of recipient `rcpt` of message `queue_id`.
    pub fn record_delivery(&self, queue_id: &str, rcpt: &str, outcome: DeliveryOutcome) {
        self.send(Write::Delivery {
            queue_id: queue_id.to_string(),
            rcpt: rcpt.to_string(),
            outcome,
        });
    }

    /// Queues the index entry of a message just committed to the quarantine
    /// (a dropped one is found again by the reconciliation).
    pub fn record_quarantined(&self, event: &EventRecord) {
        self.send(Write::Quarantined(quarantine::entry_of(event)));
    }

    /// Whether `sender` (an address; its `@domain` also counts) is on
    /// `tenant`'s allow list. From memory: never waits for the database.
    pub fn is_allowed(&self, tenant: &str, sender: &str) -> bool {
        let sender = sender.to_ascii_lowercase();
        if sender.is_empty() {
            return false;
        }
        let lists = self.inner.allow.read().unwrap_or_else(|e| e.into_inner());
        let Some(list) = lists.get(tenant) else {
            return false;
        };
        list.contains(&sender)
            || sender
                .rsplit_once('@')
                .is_some_and(|(_, domain)| list.contains(&format!("@{domain}")))
    }

    // ---- reading ----

    /// Events matching `query`, newest first, one page.
    pub async fn search(&self, query: &Query) -> Result<Vec<EventSummary>, StoreError> {
        self.inner.backend.search(query).await
    }

    /// One event record in full, if it exists and is in `scope`.
    pub async fn event(&self, scope: &Scope, id: i64) -> Result<Option<EventDetail>, StoreError> {
        self.inner.backend.event(scope, id).await
    }

    /// Quarantine entries matching `query`, newest first.
    pub async fn quarantine_list(&self, query: &QuarantineQuery) -> Result<Vec<QuarantineEntry>, StoreError> {
        self.inner.backend.quarantine_list(query).await
    }

    /// One quarantine entry, if it exists and is in `scope`.
    pub async fn quarantine_get(&self, scope: &Scope, id: &str) -> Result<Option<QuarantineEntry>, StoreError> {
        self.inner.backend.quarantine_get(scope, id).await
    }

    /// A held message with its bytes (for viewing; never delivered from here).
    pub async fn quarantine_message(&self, scope: &Scope, id: &str) -> Result<HeldMessage, StoreError> {
        quarantine::message(self, scope, id).await
    }

    /// Held messages and their bytes against the cap.
    pub async fn quarantine_usage(&self) -> Result<QuarantineUsage, StoreError> {
        let (held, bytes) = self.inner.backend.quarantine_usage().await?;
        Ok(QuarantineUsage {
            held,
            bytes,
            cap: self.inner.config.quarantine_max_size,
        })
    }

    // ---- administrative changes: each writes an audit record ----

    /// Puts a copy of a held message in this node's delivery queue for
    /// `recipients` (`None`: every recipient not yet released), stamped as
    /// delivered (`X-CLOUD-SEC-AV-SCL: false`, verdict
    /// `action=deliver; released-by=<actor>`); nothing else in its bytes changes.
    pub async fn quarantine_release(
        &self,
        scope: &Scope,
        id: &str,
        recipients: Option<&[String]>,
        actor: &Actor,
    ) -> Result<Released, StoreError> {
        quarantine::release(self, scope, id, recipients, actor).await
    }

    /// Deletes a held message for good.
    pub async fn quarantine_delete(&self, scope: &Scope, id: &str, actor: &Actor) -> Result<(), StoreError> {
        quarantine::delete(self, scope, id, actor).await
    }

    /// Records "not spam" feedback on a held message (it stays held).
    pub async fn not_spam(&self, scope: &Scope, id: &str, actor: &Actor) -> Result<(), StoreError> {
        quarantine::not_spam(self, scope, id, actor).await
    }

    /// Adds `sender` (an address or `@domain`) to `tenant`'s allow list.
    pub async fn allow_sender(&self, tenant: &str, sender: &str, actor: &Actor) -> Result<(), StoreError> {
        let sender = quarantine::normalise_sender(sender)?;
        let entry = AllowEntry {
            tenant: tenant.to_string(),
            sender: sender.clone(),
            added_by: actor.name.clone(),
            time: self.now(),
        };
        self.inner.backend.allow_insert(&entry).await?;
        self.inner
            .allow
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .entry(tenant.to_string())
            .or_default()
            .insert(sender.clone());
        self.audit(AuditRecord::new(actor, "allow-sender", tenant, vec![], sender))
            .await
    }

    /// Removes `sender` from `tenant`'s allow list.
    pub async fn disallow_sender(&self, tenant: &str, sender: &str, actor: &Actor) -> Result<(), StoreError> {
        let sender = quarantine::normalise_sender(sender)?;
        self.inner.backend.allow_remove(tenant, &sender).await?;
        if let Some(list) = self
            .inner
            .allow
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .get_mut(tenant)
        {
            list.remove(&sender);
        }
        self.audit(AuditRecord::new(actor, "disallow-sender", tenant, vec![], sender))
            .await
    }

    /// The allow lists in `scope`.
    pub async fn allow_list(&self, scope: &Scope) -> Result<Vec<AllowEntry>, StoreError> {
        let all = self.inner.backend.allow_all().await?;
        Ok(all.into_iter().filter(|e| scope.allows(&e.tenant)).collect())
    }

    /// Writes an audit record (its `time` from the store's clock when 0).
    pub async fn audit(&self, mut record: AuditRecord) -> Result<(), StoreError> {
        if record.time == 0 {
            record.time = self.now();
        }
        tracing::info!(
            actor = %record.actor,
            from = %record.from,
            action = %record.action,
            tenant = %record.tenant,
            messages = ?record.messages,
            detail = %record.detail,
            "audit"
        );
        self.inner.backend.audit_insert(&record).await
    }

    /// Audit records in `scope` (a tenant sees its own), newest first.
    pub async fn audit_list(&self, scope: &Scope, limit: u32, offset: u32) -> Result<Vec<AuditRecord>, StoreError> {
        self.inner.backend.audit_list(scope, limit.clamp(1, 1000), offset).await
    }

    // ---- upkeep ----

    /// Applies retention and the size cap now (the gateway does this every
    /// minute); returns how many quarantined messages were removed.
    pub async fn prune(&self) -> Result<u64, StoreError> {
        maintenance::prune(self).await
    }

    /// Indexes quarantined files the index does not know yet (a write lost
    /// to an outage or a full queue) and, with PostgreSQL, uploads their bytes.
    pub async fn reconcile(&self) -> Result<u64, StoreError> {
        maintenance::reconcile(self).await
    }

    /// Waits until everything queued so far is written (or the writer gave up on it).
    pub async fn flush(&self) {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let sender = self.inner.writer.read().unwrap_or_else(|e| e.into_inner()).clone();
        if let Some(sender) = sender
            && sender.send(Write::Flush(tx)).await.is_ok()
        {
            let _ = rx.await;
        }
    }

    /// Starts the writer and the maintenance loop (the gateway calls this
    /// once). Both stop when `stop` is cancelled, the writer after writing
    /// what is queued.
    pub(crate) fn start(&self, stop: tokio_util::sync::CancellationToken) -> tokio::task::JoinHandle<()> {
        let (tx, rx) = tokio::sync::mpsc::channel(self.inner.config.write_queue);
        *self.inner.writer.write().unwrap_or_else(|e| e.into_inner()) = Some(tx);
        tokio::spawn(maintenance::run(self.clone(), stop.clone()));
        tokio::spawn(writer::run(self.clone(), rx, stop))
    }

    /// Starts only the writer (a test or tool that records events without a gateway).
    pub fn start_writer(&self) {
        let (tx, rx) = tokio::sync::mpsc::channel(self.inner.config.write_queue);
        *self.inner.writer.write().unwrap_or_else(|e| e.into_inner()) = Some(tx);
        tokio::spawn(writer::run(
            self.clone(),
            rx,
            tokio_util::sync::CancellationToken::new(),
        ));
    }

    fn send(&self, write: Write) {
        let sender = self.inner.writer.read().unwrap_or_else(|e| e.into_inner()).clone();
        let Some(sender) = sender else {
            return;
        };
        if sender.try_send(write).is_err() {
            self.inner.metrics.store_writes.inc(&["dropped"]);
            writer::warn_dropped();
        }
    }

    async fn refresh_allow_lists(&self) -> Result<(), StoreError> {
        let all = self.inner.backend.allow_all().await?;
        let mut lists: HashMap<String, HashSet<String>> = HashMap::new();
        for e in all {
            lists.entry(e.tenant).or_default().insert(e.sender);
        }
        *self.inner.allow.write().unwrap_or_else(|e| e.into_inner()) = lists;
        Ok(())
    }
}
