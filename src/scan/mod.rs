//! Scanning a message: the check contract (`check`), the pipeline that runs a
//! policy's checks concurrently under timeouts and merges their findings into
//! a verdict (`pipeline`), sender authentication that runs before them
//! (`sender`), and what checks look at: the attachment inventory,
//! HTML text and links, look-alike domains, the clamd client, and the
//! container formats read from hostile bytes (`formats`).
//!
//! Owns: the contract and the shared views of a message. Must never: name a
//! particular check (the factory in `checks` builds them, `app` hands them
//! over), write SMTP replies, or touch the bytes that will be relayed.

pub mod check;
pub(crate) mod clamd;
pub(crate) mod formats;
pub(crate) mod html;
pub mod inventory;
pub(crate) mod lookalike;
pub mod pipeline;
pub mod sender;
#[cfg(test)]
pub(crate) mod test_support;
