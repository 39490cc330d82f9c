//! Start-up, in order (the state directory is already locked: `app::lock_state`):
//! open and recover the spool, open the control socket, bind every socket (so a
//! port conflict is reported before anything runs), then build each stage's
//! context and start the queue, the listeners, the admin endpoint and the
//! `[web]` listener.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use arc_swap::ArcSwap;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::app::{AppError, Snapshot};
use crate::config::Config;
use crate::delivery::budget::BodyBudget;
use crate::delivery::relay::Relay;
use crate::inbound::listener::{self, ConnLimits};
use crate::spool::Spool;
use crate::store::Store;
use crate::telemetry::metrics::Metrics;
use crate::{delivery, inbound, web};

/// The running gateway, as start-up leaves it to reload and shutdown.
pub(super) struct Gateway {
    pub(super) inbound: Arc<inbound::Context>,
    pub(super) delivery: Arc<ArcSwap<delivery::Settings>>,
    pub(super) metrics: Arc<Metrics>,
    pub(super) queue_stop: CancellationToken,
    pub(super) queue: delivery::handle::QueueHandle,
    pub(super) queue_task: JoinHandle<()>,
    pub(super) listener_tasks: Vec<JoinHandle<()>>,
    /// Stops the store's writer (after it wrote what is queued) and upkeep.
    pub(super) store_stop: CancellationToken,
    pub(super) store_task: JoinHandle<()>,
}

/// Sockets bound before anything is started.
struct Bound {
    /// SMTP listeners and whether each starts with TLS.
    smtp: Vec<(TcpListener, SocketAddr, bool)>,
    admin: Option<TcpListener>,
    /// The `[web]` page and API.
    web: Option<TcpListener>,
}

pub(super) async fn start(snapshot: Snapshot) -> Result<Gateway, AppError> {
    let cfg = snapshot.config.clone();
    let metrics = Arc::new(Metrics::new());
    *metrics.state_dir.lock().expect("metrics lock") = Some(cfg.server.state_dir.clone());
    record_certificates(&cfg, &metrics);
    let (spool, recovered) = open_spool(&cfg, &metrics)?;
    let store = Store::open_for_gateway(&cfg.store, spool.clone(), metrics.clone())
        .await
        .map_err(|e| AppError::Other(format!("store ({}): {e}", cfg.store.backend)))?;
    if let Err(e) = crate::app::control::serve(&cfg.server.state_dir, spool.clone(), store.clone()) {
        // The gateway runs without it; `queue delete` and the like then say so.
        tracing::error!(error = %e, "no control socket: maintenance commands cannot change the spool while this gateway runs");
    }
    let dns = crate::dns::Dns::shared(&cfg.dns).map_err(AppError::Other)?;
    let relay = Arc::new(Relay::new(&cfg.relay, &cfg.server.hostname, dns).map_err(AppError::Other)?);
    let bound = bind(&cfg).await?;
    tracing::info!(store = %cfg.store.backend, node = %cfg.store.node, "store opened");
    let store_stop = CancellationToken::new();
    let store_task = store.start(store_stop.clone());

    let budget = Arc::new(BodyBudget::new(cfg.delivery.memory_budget));
    let delivery_settings = Arc::new(ArcSwap::new(snapshot.delivery.clone()));
    let queue_stop = CancellationToken::new();
    let (queue, queue_task) = delivery::queue::start(
        spool.clone(),
        relay.clone(),
        delivery_settings.clone(),
        metrics.clone(),
        budget.clone(),
        store.clone(),
        queue_stop.clone(),
        recovered,
    );
    let inbound = Arc::new(inbound::Context {
        settings: Arc::new(ArcSwap::new(snapshot.inbound.clone())),
        spool: spool.clone(),
        queue: queue.clone(),
        relay,
        metrics: metrics.clone(),
        soft_stop: CancellationToken::new(),
        hard_stop: CancellationToken::new(),
        scan_permits: Semaphore::new(std::thread::available_parallelism().map_or(4, |n| n.get() * 4)),
        sessions: TaskTracker::new(),
        limits: ConnLimits::default(),
        budget,
        store: store.clone(),
    });
    let listeners_bound = Arc::new(AtomicBool::new(false));

    let mut listener_tasks = Vec::new();
    for (l, addr, implicit) in bound.smtp {
        listener_tasks.push(tokio::spawn(listener::serve(l, addr, implicit, inbound.clone())));
    }
    if let Some(l) = bound.admin {
        let web = Arc::new(web::Context {
            metrics: metrics.clone(),
            spool,
            listeners_bound: listeners_bound.clone(),
            stopping: inbound.soft_stop.clone(),
            store: store.clone(),
        });
        tokio::spawn(web::admin::serve(l, web));
    }
    if let Some(l) = bound.web {
        web::start(l, &cfg, store.clone(), inbound.spool.clone(), inbound.soft_stop.clone())
            .map_err(AppError::Other)?;
    }
    listeners_bound.store(true, Ordering::SeqCst);
    Ok(Gateway {
        inbound,
        delivery: delivery_settings,
        metrics,
        queue_stop,
        queue,
        queue_task,
        listener_tasks,
        store_stop,
        store_task,
    })
}

/// Opens the spool and recovers it: partial files of messages never
/// acknowledged are removed, damaged ones set aside.
/// The certificates in use and their expiry, for `exogate_certificate_expiry_seconds`
/// (at start and after each reload).
pub(super) fn record_certificates(cfg: &Config, metrics: &Metrics) {
    let mut list = Vec::new();
    let mut add = |usage: &'static str, tenant: &str, path: &std::path::Path| match crate::tls::not_after(path) {
        Some(t) => list.push((usage, tenant.to_string(), t)),
        None => tracing::warn!(path = %path.display(), "cannot read the certificate's expiry"),
    };
    add("inbound", "", &cfg.tls.cert);
    for t in &cfg.tenants {
        if let Some((cert, _)) = &t.relay_cert {
            add("relay-client", &t.portal, cert);
        }
    }
    *metrics.certificates.lock().expect("metrics lock") = list;
}

fn open_spool(cfg: &Config, metrics: &Metrics) -> Result<(Arc<Spool>, Vec<String>), AppError> {
    let spool = Arc::new(Spool::open(&cfg.server.state_dir)?);
    let recovery = spool.recover()?;
    if recovery.incomplete_removed > 0 {
        tracing::info!(
            files = recovery.incomplete_removed,
            "removed partial files of messages that were never acknowledged"
        );
    }
    for (id, reason) in &recovery.corrupt {
        tracing::error!(queue_id = %id, %reason, dir = %spool.root.join("corrupt").display(), "damaged queue file moved aside");
    }
    if recovery.restored > 0 {
        tracing::warn!(
            files = recovery.restored,
            records = recovery.log_records,
            "queue files written back from the commit log: acknowledged messages whose files were missing or damaged after a machine crash or power loss are queued again (at worst one is delivered twice); if there was no such crash, check the state directory's disk and file system"
        );
    }
    metrics.spool_corrupt.add(&[], recovery.corrupt.len() as u64);
    tracing::info!(
        messages = recovery.valid.len(),
        corrupt = recovery.corrupt.len(),
        "spool recovered"
    );
    // Before any session can commit: a message accepted now goes to the log.
    if let Err(e) = spool.start_commit_log(cfg.server.commit_log_size, cfg.server.commit_log_checkpoint) {
        tracing::error!(
            error = %e,
            path = %spool.commit_log_path().display(),
            "no commit log: every message is made durable by syncing its file and directory (slower, as safe); free room for server.commit_log_size on the state directory's disk, or set it to 0"
        );
    }
    Ok((spool, recovery.valid))
}

/// Binds every listener before accepting anything, so that a port conflict
/// is reported at start.
async fn bind(cfg: &Config) -> Result<Bound, AppError> {
    let mut smtp = Vec::new();
    for (addrs, implicit) in [(&cfg.server.listen, false), (&cfg.server.tls_listen, true)] {
        for addr in addrs {
            let l = listener::bind(*addr).map_err(|source| AppError::Bind { addr: *addr, source })?;
            let local = l
                .local_addr()
                .map_err(|source| AppError::Bind { addr: *addr, source })?;
            tracing::info!(addr = %local, implicit_tls = implicit, "listening for SMTP");
            smtp.push((l, *addr, implicit));
        }
    }
    let admin = match cfg.admin.listen {
        Some(addr) => Some(bind_admin(addr).await?),
        None => None,
    };
    let web = match cfg.web.listen {
        Some(addr) => {
            let bind_error = |source| AppError::Bind { addr, source };
            let l = TcpListener::bind(addr).await.map_err(bind_error)?;
            let mode = if cfg.web.plaintext { "plaintext" } else { "tls" };
            tracing::info!(addr = %l.local_addr().map_err(bind_error)?, mode, "listening for web");
            Some(l)
        }
        None => None,
    };
    Ok(Bound { smtp, admin, web })
}

async fn bind_admin(addr: SocketAddr) -> Result<TcpListener, AppError> {
    let bind_error = |source| AppError::Bind { addr, source };
    let l = TcpListener::bind(addr).await.map_err(bind_error)?;
    tracing::info!(addr = %l.local_addr().map_err(bind_error)?, "listening for admin HTTP");
    Ok(l)
}
