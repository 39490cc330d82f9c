//! Delivery: the queue scheduler, one attempt, DSNs, the relay client.

use std::sync::Arc;

use arc_swap::ArcSwap;

pub(crate) mod attempt;
pub(crate) mod budget;
pub(crate) mod dsn;
pub(crate) mod handle;
pub(crate) mod queue;
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
}
