//! Sender authentication: who sent a message (the trust order of DESIGN §11,
//! `origin`) and whether it was authenticated (SPF, DKIM, ARC with
//! mail-auth; DMARC per RFC 7489 in `dmarc`), as one `AuthResults` value
//! (`message::auth`) that the pipeline computes before the checks run and
//! hands to them.
//!
//! Owns: the evaluation and its mapping to RFC 8601 words. Must never: score
//! or decide (the `auth` check turns results into findings), or write a
//! header (the stamp does).

pub(crate) mod dmarc;
mod evaluate;
pub(crate) mod origin;
mod spf;

pub use evaluate::{SenderAuth, SenderInput};
