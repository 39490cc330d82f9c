//! The SMTP protocol as bytes and words: framing of the command stream and
//! message data (lines, DATA dot-unstuffing, BDAT chunks, bounded lines),
//! the MAIL and RCPT lines with their typed mailbox and parameters, and the
//! table of every reply the gateway sends.
//!
//! Owns: the wire format and the reply texts (no reply text is written
//! anywhere else). Must never: do I/O, keep session state or apply policy;
//! it depends on nothing else in the crate.

pub mod address;
pub mod framing;
pub(crate) mod mail_rcpt;
pub mod params;
pub(crate) mod reply;
