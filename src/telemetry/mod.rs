//! What the gateway tells its operators: the metrics every stage records
//! into (one registry with fixed names and bounded label sets, rendered by
//! prometheus-client in the OpenMetrics text format), and the log's writer.
//!
//! Owns: metric names, help texts and buckets; the log's subscriber and
//! writer thread. Must never: serve HTTP (that is `web`), take label values
//! from message content (bounded series), or let logging block a session.

pub mod log;
pub(crate) mod metrics;
mod process;
