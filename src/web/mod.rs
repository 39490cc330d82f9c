//! The admin HTTP endpoint.

pub mod admin;
