//! The SMTP protocol as bytes and words: framing of commands and message
//! data, and the table of every reply the gateway sends. No I/O, no policy.

pub mod framing;
pub(crate) mod reply;
