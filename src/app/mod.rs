//! Wiring: load and build, recover the spool, start the queue, bind the
//! listeners and the admin endpoint, tell systemd we are ready, then react to
//! signals (SIGHUP reload; SIGTERM/SIGINT graceful stop; a second one stops at
//! once).
//!
//! The whole configuration is validated and built before any socket is bound.
//! A reload builds a complete new runtime first and swaps it in atomically;
//! sessions keep the snapshot they started with. Shutdown stops accepting,
//! lets sessions finish within `server.shutdown_grace`, then answers 421 to
//! whatever is left: the spool is consistent at every instant, so even an
//! immediate exit loses nothing that was acknowledged.

pub mod snapshot;
mod systemd;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::net::TcpListener;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::app::snapshot::Runtime;
use crate::config::reader::ConfigError;
use crate::config::{Config, LoadError};
use crate::delivery::queue::{self, QueueHandle};
use crate::delivery::relay::Relay;
use crate::inbound::listener::{self, ConnLimits};
use crate::spool::Spool;
use crate::telemetry::metrics::Metrics;

/// What every session and task shares.
pub struct Shared {
    pub runtime: Arc<ArcSwap<Runtime>>,
    pub spool: Arc<Spool>,
    pub queue: QueueHandle,
    pub relay: Arc<Relay>,
    pub metrics: Arc<Metrics>,
    /// Stop accepting; idle sessions close.
    pub soft_stop: CancellationToken,
    /// Grace period over: every session answers 421 and closes.
    pub hard_stop: CancellationToken,
    pub scan_permits: Semaphore,
    pub sessions: TaskTracker,
    pub limits: ConnLimits,
    pub listeners_bound: AtomicBool,
    /// Bytes of bodies held in memory by deliveries (queue and proxy).
    pub budget: Arc<crate::delivery::budget::BodyBudget>,
}

/// Why the daemon could not start or run.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error(transparent)]
    Config(#[from] LoadError),
    #[error("{} problem(s) in {}:\n{}", .1.len(), .0.display(), .1.iter().map(|e| format!("  {e}")).collect::<Vec<_>>().join("\n"))]
    Build(PathBuf, Vec<ConfigError>),
    #[error("spool: {0}")]
    Spool(#[from] crate::spool::SpoolError),
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
    #[error(transparent)]
    ExoSetup(#[from] crate::exo_setup::ExoSetupError),
    #[error("{0}")]
    Other(String),
}

impl AppError {
    /// Configuration problems exit with 64 (EX_USAGE), everything else with 1.
    pub fn exit_code(&self) -> i32 {
        match self {
            AppError::Config(_) | AppError::Build(..) | AppError::ExoSetup(_) => 64,
            _ => 1,
        }
    }
}

/// Loads and builds a runtime (used at start, on reload and by check-config).
pub fn load_runtime(path: &Path, dry_run: bool) -> Result<Runtime, AppError> {
    let (config, mut errors) = Config::load_collecting(path)?;
    // The checks read their own options: their problems join config's, so
    // that every mistake is reported at once.
    let policies = crate::checks::policies(&config).unwrap_or_else(|e| {
        errors.extend(e);
        Default::default()
    });
    if !errors.is_empty() {
        errors.sort_by(|a, b| a.path.cmp(&b.path));
        return Err(LoadError::Invalid {
            path: path.to_path_buf(),
            errors,
        }
        .into());
    }
    Runtime::build(config, policies, dry_run).map_err(|errors| AppError::Build(path.to_path_buf(), errors))
}

/// Runs the gateway until it is told to stop.
pub async fn run(config_path: PathBuf, runtime: Runtime) -> Result<(), AppError> {
    let cfg = &runtime.config;
    for w in cfg.warnings() {
        tracing::warn!("{w}");
    }
    let metrics = Arc::new(Metrics::new());
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
    metrics.spool_corrupt.add(&[], recovery.corrupt.len() as u64);
    tracing::info!(
        messages = recovery.valid.len(),
        corrupt = recovery.corrupt.len(),
        "spool recovered"
    );

    let relay = Arc::new(Relay::new(&cfg.relay, &cfg.server.hostname).map_err(AppError::Other)?);
    let listen = cfg.server.listen.clone();
    let tls_listen = cfg.server.tls_listen.clone();
    let admin_listen = cfg.admin.listen;
    let grace = cfg.server.shutdown_grace;
    let budget = Arc::new(crate::delivery::budget::BodyBudget::new(cfg.delivery.memory_budget));
    let scan_permits = Semaphore::new(std::thread::available_parallelism().map_or(4, |n| n.get() * 4));
    let runtime = Arc::new(ArcSwap::from_pointee(runtime));

    // Bind everything before accepting anything, so a port conflict is reported at start.
    let mut bound = Vec::new();
    for (addrs, implicit) in [(&listen, false), (&tls_listen, true)] {
        for addr in addrs {
            let l = listener::bind(*addr).map_err(|source| AppError::Bind { addr: *addr, source })?;
            let local = l
                .local_addr()
                .map_err(|source| AppError::Bind { addr: *addr, source })?;
            tracing::info!(addr = %local, implicit_tls = implicit, "listening for SMTP");
            bound.push((l, implicit));
        }
    }
    let admin = match admin_listen {
        Some(addr) => {
            let l = TcpListener::bind(addr)
                .await
                .map_err(|source| AppError::Bind { addr, source })?;
            tracing::info!(addr = %l.local_addr().map_err(|source| AppError::Bind { addr, source })?, "listening for admin HTTP");
            Some(l)
        }
        None => None,
    };

    let soft_stop = CancellationToken::new();
    let queue_stop = CancellationToken::new();
    let (queue, queue_task) = queue::start(
        spool.clone(),
        relay.clone(),
        runtime.clone(),
        metrics.clone(),
        budget.clone(),
        queue_stop.clone(),
        recovery.valid,
    );
    let shared = Arc::new(Shared {
        runtime,
        spool,
        queue,
        relay,
        metrics,
        soft_stop: soft_stop.clone(),
        hard_stop: CancellationToken::new(),
        scan_permits,
        sessions: TaskTracker::new(),
        limits: ConnLimits::default(),
        listeners_bound: AtomicBool::new(false),
        budget,
    });

    let mut listener_tasks = Vec::new();
    for (l, implicit) in bound {
        listener_tasks.push(tokio::spawn(listener::serve(l, implicit, shared.clone())));
    }
    if let Some(l) = admin {
        tokio::spawn(crate::web::admin::serve(l, shared.clone()));
    }
    shared.listeners_bound.store(true, Ordering::SeqCst);
    systemd::ready("accepting mail");

    let mut hup = signal(SignalKind::hangup()).map_err(|e| AppError::Other(e.to_string()))?;
    let mut term = signal(SignalKind::terminate()).map_err(|e| AppError::Other(e.to_string()))?;
    let mut int = signal(SignalKind::interrupt()).map_err(|e| AppError::Other(e.to_string()))?;
    loop {
        tokio::select! {
            _ = hup.recv() => reload(&config_path, &shared),
            _ = term.recv() => break,
            _ = int.recv() => break,
        }
    }

    tracing::info!(
        grace_s = grace.as_secs(),
        "shutting down: no longer accepting, letting sessions finish"
    );
    systemd::stopping("draining sessions");
    soft_stop.cancel();
    shared.sessions.close();
    let drained = tokio::select! {
        _ = shared.sessions.wait() => true,
        _ = tokio::time::sleep(grace) => false,
        _ = term.recv() => { tracing::warn!("second signal: exiting now"); std::process::exit(1) }
        _ = int.recv() => { tracing::warn!("second signal: exiting now"); std::process::exit(1) }
    };
    if !drained {
        tracing::warn!("grace period over: closing the remaining sessions with 421");
        shared.hard_stop.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(5), shared.sessions.wait()).await;
    }
    queue_stop.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(5), queue_task).await;
    for t in listener_tasks {
        t.abort();
    }
    tracing::info!("stopped");
    Ok(())
}

/// SIGHUP: build a complete new runtime, then swap; keep the old one on failure.
fn reload(path: &Path, shared: &Shared) {
    systemd::reloading();
    let old = shared.runtime.load_full();
    match load_runtime(path, false) {
        Ok(new) => {
            if new.config.server.listen != old.config.server.listen
                || new.config.server.tls_listen != old.config.server.tls_listen
                || new.config.admin.listen != old.config.admin.listen
                || new.config.server.state_dir != old.config.server.state_dir
            {
                tracing::warn!("listen addresses and state_dir changes take effect only after a restart");
            }
            for w in new.config.warnings() {
                tracing::warn!("{w}");
            }
            let tenants = new.config.tenants.len();
            shared.runtime.store(Arc::new(new));
            shared.metrics.reloads.inc(&["ok"]);
            tracing::info!(tenants, "configuration reloaded");
        }
        Err(e) => {
            shared.metrics.reloads.inc(&["failed"]);
            tracing::error!(error = %e, "reload failed; the previous configuration stays in force");
        }
    }
    systemd::ready("accepting mail");
}
