//! Scanning a message: the check contract (`check`), the pipeline that runs a
//! policy's checks concurrently under timeouts and merges their findings into
//! a verdict (`pipeline`), sender authentication that runs before them
//! (`sender`), and what checks look at: the one view of a message (`view`:
//! parsed once, attachments inventoried once by `inventory`, HTML tokenized
//! once into text and links), look-alike domains, the clamd client, and the
//! container formats read from hostile bytes (`formats`).
//!
//! Owns: the contract and the shared views of a message. Must never: name a
//! particular check (the factory in `checks` builds them, `app` hands them
//! over), write SMTP replies, or touch the bytes that will be relayed.

pub(crate) mod brands;
pub mod check;
pub(crate) mod clamd;
pub(crate) mod formats;
pub mod inventory;
pub(crate) mod lookalike;
pub mod pipeline;
pub(crate) mod qr;
pub mod sender;
#[cfg(test)]
pub(crate) mod test_support;
pub mod view;

/// Builds the shared tables of what checks look at (the brands' claims, the
/// fold of look-alike text, the pattern of a link in plain text) now.
/// Each is built once per process, at first use; before this, the first
/// message after a start paid for all of them and the checks' own patterns
/// (about 25 ms, most of it compiling regular expressions), and the
/// sessions behind it queued. The factory in `checks` calls this when it
/// builds the policies: at start before any listener accepts (at a reload
/// they are built already).
pub(crate) fn warm() {
    brands::warm();
    lookalike::warm();
    view::links::warm();
}
