//! Delivery: the queue scheduler, one attempt, DSNs, the relay client.

use std::sync::Arc;

use arc_swap::ArcSwap;

pub mod attempt;
pub mod budget;
pub mod dsn;
pub mod handle;
pub mod queue;
pub mod relay;
pub mod route;
pub mod settings;
pub mod smtp_client;

pub use settings::Settings;

/// What every delivery task shares.
pub struct Context {
    pub spool: Arc<crate::spool::Spool>,
    pub relay: Arc<relay::Relay>,
    /// The settings in force; replaced whole on reload.
    pub settings: Arc<ArcSwap<Settings>>,
    pub metrics: Arc<crate::telemetry::metrics::Metrics>,
    pub handle: handle::QueueHandle,
    /// Bytes of bodies held in memory by deliveries (queue and proxy).
    pub budget: Arc<budget::BodyBudget>,
}
