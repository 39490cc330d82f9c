//! The metrics every stage records into: one registry with fixed names and
//! bounded label sets, rendered by prometheus-client in the OpenMetrics text format.
//!
//! Owns: metric names, help texts and buckets. Must never: serve HTTP (that
//! is `web`), or take label values from message content (bounded series).

pub(crate) mod metrics;
mod process;
