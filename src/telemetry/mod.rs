//! The metrics every stage records into (served by `web`).

pub mod metrics;
