//! Scanning a message: the check contract, the pipeline that runs a policy's
//! checks, and what checks look at (inventory, HTML, look-alikes, clamd,
//! container formats).

pub mod check;
pub mod clamd;
pub mod formats;
pub mod html;
pub mod inventory;
pub mod lookalike;
pub mod pipeline;
#[cfg(test)]
pub(crate) mod test_support;
