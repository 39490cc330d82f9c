//! exogate: an inline SMTP security gateway for Microsoft Exchange Online.
//!
//! ```text
//! listener ──accept──▶ admission (IP allow list, 554/421) ──▶ session
//!   session: EHLO, STARTTLS (tls), MAIL/RCPT (admission: tenant per recipient
//!            or sender), DATA/BDAT (bytes kept exactly as received)
//!   end of data: admission confirms tenant + direction from the headers
//!            ──▶ pipeline (checks/*, concurrently) ──▶ verdict
//!            ──▶ stamp (remove X-CLOUD-SEC-AV-*, prepend ours)
//!            ──▶ queue mode: spool (fsync file, rename, fsync dir) ──▶ 250
//!                 ──▶ queue scheduler ──▶ relay (STARTTLS, fixed egress IP)
//!            ──▶ proxy mode: relay during the session; its reply is ours
//! ```
//!
//! Invariants (DESIGN §2): nothing acknowledged is lost; never an open relay;
//! the bytes of a message are never re-serialised; our headers cannot be
//! forged; temporary beats permanent when in doubt; everything is bounded;
//! no test-only behaviour in production code.

#![forbid(unsafe_code)]
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
pub mod scan;
pub mod smtp;
pub mod spool;
mod telemetry;
mod tls;
mod web;
