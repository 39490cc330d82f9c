//! Scanning a message: the check contract, the pipeline that runs a policy's
//! checks, and what checks look at (inventory, HTML, look-alikes, clamd,
//! container formats).

pub mod check;
pub(crate) mod clamd;
pub(crate) mod formats;
pub(crate) mod html;
pub mod inventory;
pub(crate) mod lookalike;
pub mod pipeline;
#[cfg(test)]
pub(crate) mod test_support;
