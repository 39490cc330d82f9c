//! The metrics every stage records into (served by `web`).

pub(crate) mod metrics;
