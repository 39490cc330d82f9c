//! The store's clock, injected: retention and the audit trail read the time
//! through it, so a test can age the store by thirty days in an instant.

/// Seconds since the Unix epoch.
pub trait Clock: Send + Sync {
    fn now(&self) -> i64;
}

/// The system's clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> i64 {
        crate::spool::now_unix()
    }
}
