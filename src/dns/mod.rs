//! DNS: one resolver (hickory-resolver, whose own cache honours TTLs) for
//! every stage that asks: delivery (MX and addresses), sender authentication
//! (SPF, DKIM, DMARC, ARC records through mail-auth, whose parsed records are
//! kept in `cache` until their TTL runs out) and DNSBL queries. `[dns]` names
//! the servers (empty = the system's), the per-query timeout and the
//! per-message budget (`budget`) that bounds what one message can cost.
//!
//! Owns: lookups, the caches, and the meaning of failures (a name that does
//! not exist versus a resolver that did not answer). Must never: decide what a
//! failure means for a message (delivery and the checks do), or know about
//! tests (they point `[dns] servers` at a local server).

mod budget;
mod cache;
mod resolver;

pub(crate) use budget::Lookups;
pub(crate) use resolver::{Dns, DnsError};
