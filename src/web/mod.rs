//! The admin HTTP endpoint: `/metrics` (served from `telemetry`), `/healthz`
//! and `/readyz`.
//!
//! Owns: answering those requests, bounded in size and time. Must never:
//! change gateway state or expose message content; `app` builds its
//! [`Context`] and passes it down.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use tokio_util::sync::CancellationToken;

use crate::spool::Spool;
use crate::telemetry::metrics::Metrics;

pub(crate) mod admin;

/// What the admin endpoint reads, built by `app` and passed down.
pub(crate) struct Context {
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) spool: Arc<Spool>,
    /// Set once every listener is bound.
    pub(crate) listeners_bound: Arc<AtomicBool>,
    /// Cancelled when the gateway starts shutting down.
    pub(crate) stopping: CancellationToken,
    /// Events, the quarantine, audit (what the web pages read and change).
    #[allow(dead_code)]
    pub(crate) store: crate::store::Store,
}
