//! exogate: an inline SMTP security gateway for Microsoft Exchange Online.
//!
//! The modules are the stages a message passes, lowest first; a stage never
//! imports a later one (`tests/layout.rs` checks it, ARCHITECTURE.md says why
//! this order):
//!
//! ```text
//! smtp < message < config < telemetry < dns < tls < spool < store < scan
//!      < checks < delivery < inbound < web < exo_setup < app < cli
//!
//! inbound::listener ──accept──▶ inbound::admission (IP allow list, 554/421)
//!   ──▶ inbound::session: EHLO, STARTTLS (tls), MAIL/RCPT (admission: tenant
//!       per recipient or sender), DATA/BDAT (smtp::framing; bytes kept as
//!       received, spilled to spool::incoming past a threshold)
//!   end of data ──▶ inbound::disposition: admission confirms tenant + direction
//!       from the header ──▶ scan::pipeline runs the policy's checks (built by
//!       checks) ──▶ message::verdict ──▶ message::stamp (remove
//!       X-CLOUD-SEC-AV-*, prepend ours)
//!   queue mode: spool (fsync file, rename, fsync dir) ──▶ 250
//!       ──▶ delivery::queue ──▶ delivery::attempt ──▶ delivery::relay
//!           (STARTTLS, fixed egress IP) ──▶ the tenant's downstream
//!   proxy mode: inbound::proxy relays during the session; its reply is ours
//! app: loads config, builds each stage's context, starts and stops them
//! ```
//!
//! Invariants (DESIGN §2): nothing acknowledged is lost; never an open relay;
//! the bytes of a message are never re-serialised; our headers cannot be
//! forged; temporary beats permanent when in doubt; everything is bounded;
//! no test-only behaviour in production code.
//!
//! The library's public items are what the binary, the tests, the benchmark,
//! the load generator and the fuzz targets use; everything else is
//! `pub(crate)`.

// One call has no safe wrapper (sync_file_range, in spool/writeback.rs,
// which says why); `deny` lets that one statement allow it, nothing else.
#![deny(unsafe_code)]
#![warn(unreachable_pub)]

pub mod app;
pub mod checks;
pub mod cli;
pub mod config;
mod delivery;
mod dns;
pub mod exo_setup;
pub mod inbound;
pub mod message;
pub mod remediate;
pub mod scan;
pub mod smtp;
pub mod spool;
pub mod store;
pub mod telemetry;
mod tls;
mod web;
