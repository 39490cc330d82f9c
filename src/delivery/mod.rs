//! Delivery: the queue scheduler over the spool (`queue`), one attempt on one
//! queued message (`attempt`), the message as an attempt holds it (`queued`:
//! whole, or streamed from its file), DSNs (`dsn`), the relay to the tenant's
//! downstream (`relay`) over an SMTP client (`smtp_client`), the memory
//! budget for bodies in flight (`budget`), and the values queue and attempt
//! share (`route`, `handle`) and the settings they read (`settings`).
//!
//! Owns: getting every acknowledged message to its tenant's destination, or
//! a DSN to its sender. Must never: delete a queued message before every
//! recipient has a final result, send a message in plaintext, relay to a
//! destination other than the tenant's (never an open relay), or import the
//! stages above it: `app` builds its [`Context`] and passes it down.

use std::sync::Arc;

use arc_swap::ArcSwap;

pub(crate) mod attempt;
pub(crate) mod budget;
pub(crate) mod dsn;
pub(crate) mod handle;
pub(crate) mod queue;
mod queued;
pub(crate) mod relay;
pub(crate) mod route;
pub(crate) mod settings;
pub(crate) mod smtp_client;

pub(crate) use settings::Settings;

/// What every delivery task shares.
pub(crate) struct Context {
    pub(crate) spool: Arc<crate::spool::Spool>,
    pub(crate) relay: Arc<relay::Relay>,
    /// The settings in force; replaced whole on reload.
    pub(crate) settings: Arc<ArcSwap<Settings>>,
    pub(crate) metrics: Arc<crate::telemetry::metrics::Metrics>,
    pub(crate) handle: handle::QueueHandle,
    /// Bytes of bodies held in memory by deliveries (queue and proxy).
    pub(crate) budget: Arc<budget::BodyBudget>,
    /// Where each recipient's delivery outcome is recorded.
    pub(crate) store: crate::store::Store,
}
