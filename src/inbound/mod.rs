//! Receiving mail: the listener and its connection limits (`listener`),
//! admission (client address, tenant of each recipient, tenant and direction
//! confirmed from the header, in `admission`), the SMTP session state machine
//! (`session`), what happens to a message at its last byte (`disposition`:
//! scan, decide, stamp, store), journal reports of monitor tenants
//! (`journal`: read, scan the original, record, never relay) and the proxy
//! leg that relays during the
//! session (`proxy`).
//!
//! Owns: the 250 after DATA/BDAT, given only once the message is durable (or
//! the downstream took it, in proxy mode). Must never: accept mail from a
//! client or for a tenant admission has not admitted, answer 5xx for an
//! internal failure (4xx: temporary beats permanent), or import `web`, `app`
//! or `cli`: `app` builds its [`Context`] and [`Settings`] and passes them down.

use std::collections::BTreeMap;
use std::sync::Arc;

use arc_swap::ArcSwap;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Config;
use crate::config::tenant::TenantIndex;
use crate::delivery::budget::BodyBudget;
use crate::delivery::handle::QueueHandle;
use crate::delivery::relay::Relay;
use crate::scan::pipeline::Policy;
use crate::spool::Spool;
use crate::telemetry::metrics::Metrics;

pub mod admission;
pub(crate) mod disposition;
pub(crate) mod journal;
pub(crate) mod listener;
pub(crate) mod proxy;
pub(crate) mod proxy_header;
pub(crate) mod session;

/// One loaded configuration as a session sees it: a session takes the one in
/// force when its connection is accepted and keeps it to the end.
pub(crate) struct Settings {
    pub(crate) config: Arc<Config>,
    pub(crate) tenants: Arc<TenantIndex>,
    /// `None` only in a dry run whose certificate will be generated at start.
    pub(crate) acceptor: Option<TlsAcceptor>,
    /// Every policy, its checks built.
    pub(crate) policies: BTreeMap<String, Arc<Policy>>,
    /// Where a tenant's mail goes (the proxy leg relays during the session).
    pub(crate) delivery: Arc<crate::delivery::Settings>,
    /// Post-delivery remediation clients, by tenant portal (tenants with
    /// `[tenant.remediation]`).
    pub(crate) remediators: BTreeMap<String, Arc<crate::remediate::Remediator>>,
}

impl Settings {
    /// A tenant's policy (config lets tenants name only defined policies).
    pub(crate) fn policy(&self, name: &str) -> Arc<Policy> {
        self.policies
            .get(name)
            .cloned()
            .expect("tenant policies are validated at load")
    }
}

/// What every session and listener shares, built by `app` and passed down.
pub(crate) struct Context {
    /// The settings in force; replaced whole on reload.
    pub(crate) settings: Arc<ArcSwap<Settings>>,
    pub(crate) spool: Arc<Spool>,
    pub(crate) queue: QueueHandle,
    pub(crate) relay: Arc<Relay>,
    pub(crate) metrics: Arc<Metrics>,
    /// Stop accepting; idle sessions close.
    pub(crate) soft_stop: CancellationToken,
    /// Grace period over: every session answers 421 and closes.
    pub(crate) hard_stop: CancellationToken,
    pub(crate) scan_permits: Semaphore,
    pub(crate) sessions: TaskTracker,
    pub(crate) limits: listener::ConnLimits,
    /// Bytes of bodies held in memory by deliveries (queue and proxy).
    pub(crate) budget: Arc<BodyBudget>,
    /// Events, the quarantine index, allow lists.
    pub(crate) store: crate::store::Store,
}
