//! Receiving mail: listener, admission, session, disposition, proxy leg.

pub mod admission;
pub mod disposition;
pub mod listener;
pub mod proxy;
pub mod session;
