//! DNS: one resolver (hickory-resolver, whose cache honours TTLs), given the
//! name servers from the configuration or the system's. Today delivery asks
//! it for MX and address records; sender authentication and DNSBL checks in
//! `scan` are to use the same one.
//!
//! Owns: lookups and the meaning of their failures (a name that does not
//! exist versus a resolver that did not answer). Must never: decide what a
//! failure means for a message (delivery does), or know about tests (they
//! point `relay.dns` at a local server).

mod resolver;

pub(crate) use resolver::{Dns, DnsError};
