//! Delivery: the queue scheduler, one attempt, DSNs, the relay client.

pub mod attempt;
pub mod budget;
pub mod dsn;
pub mod queue;
pub mod relay;
pub mod smtp_client;
