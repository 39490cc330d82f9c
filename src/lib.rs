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

pub mod admin;
pub mod admission;
pub mod app;
pub mod archive;
pub mod attempt;
pub mod body;
pub mod budget;
pub mod checks;
pub mod clamd;
pub mod cli;
pub mod config;
pub mod dns;
pub mod dsn;
pub mod envelope;
pub mod exo_setup;
pub mod framing;
pub mod headers;
pub mod html;
pub mod intake;
pub mod inventory;
pub mod listener;
pub mod lookalike;
pub mod metrics;
pub mod notify;
pub mod pipeline;
pub mod proxy;
pub mod queue;
pub mod relay;
pub mod reply;
pub mod runtime;
pub mod session;
pub mod smtp_client;
pub mod spool;
pub mod spool_format;
pub mod stamp;
pub mod tenant;
pub mod tls;
pub mod tnef;
pub mod toml_reader;
pub mod verdict;
