//! How many bytes of message bodies deliveries may hold in memory at once
//! (`delivery.memory_budget`), so that many large messages delivered
//! together wait for each other instead of exhausting memory.
//!
//! A delivery reserves its message's size before reading it and releases it
//! when done. A message larger than the whole budget reserves all of it, so
//! it still goes through, alone.

use tokio::sync::{Semaphore, SemaphorePermit};

/// Permits count KiB.
pub(crate) struct BodyBudget {
    permits: Semaphore,
    total_kib: u32,
}

impl BodyBudget {
    pub(crate) fn new(bytes: u64) -> BodyBudget {
        let total_kib = (bytes / 1024).clamp(1, u64::from(u32::MAX) / 2) as u32;
        BodyBudget {
            permits: Semaphore::new(total_kib as usize),
            total_kib,
        }
    }

    /// Waits until `bytes` may be held.
    pub(crate) async fn reserve(&self, bytes: u64) -> SemaphorePermit<'_> {
        let kib = (bytes.div_ceil(1024)).clamp(1, u64::from(self.total_kib)) as u32;
        self.permits
            .acquire_many(kib)
            .await
            .expect("the budget is never closed")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn large_bodies_wait_for_each_other_and_an_oversized_one_goes_alone() {
        let budget = BodyBudget::new(10 * 1024);
        let a = budget.reserve(6 * 1024).await;
        assert!(
            tokio::time::timeout(std::time::Duration::from_millis(50), budget.reserve(6 * 1024))
                .await
                .is_err(),
            "a second large body waits"
        );
        drop(a);
        let huge = budget.reserve(1 << 30).await;
        assert_eq!(budget.permits.available_permits(), 0);
        drop(huge);
        assert_eq!(budget.permits.available_permits(), 10);
    }
}
