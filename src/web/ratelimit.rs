//! Failed logins per client address and per account name in a sliding
//! minute: past the limit a login is answered 429 without checking the
//! password (so guessing costs the guesser time, not us argon2 work).
//! Successful logins are not counted, so colleagues behind one address
//! are not locked out by each other's work.
//!
//! Bounded: at most `MAX_KEYS` keys are tracked; when full, keys whose
//! attempts are all older than a minute are dropped first, then the whole
//! table (which at worst lets one burst through, never blocks a login forever).

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

const WINDOW: Duration = Duration::from_secs(60);
const MAX_KEYS: usize = 100_000;

pub(crate) struct LoginLimiter {
    per_minute: usize,
    attempts: Mutex<HashMap<String, VecDeque<Instant>>>,
}

impl LoginLimiter {
    pub(crate) fn new(per_minute: u32) -> LoginLimiter {
        LoginLimiter {
            per_minute: per_minute as usize,
            attempts: Mutex::new(HashMap::new()),
        }
    }

    /// Whether a login may be tried: no key has used up its failures.
    pub(crate) fn allowed(&self, keys: &[String]) -> bool {
        let now = Instant::now();
        let mut map = self.attempts.lock().unwrap_or_else(|e| e.into_inner());
        keys.iter().all(|key| match map.get_mut(key) {
            None => true,
            Some(q) => {
                while q.front().is_some_and(|t| now.duration_since(*t) >= WINDOW) {
                    q.pop_front();
                }
                q.len() < self.per_minute
            }
        })
    }

    /// Counts a failed login against each key.
    pub(crate) fn failed(&self, keys: &[String]) {
        let now = Instant::now();
        let mut map = self.attempts.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() >= MAX_KEYS {
            map.retain(|_, v| v.back().is_some_and(|t| now.duration_since(*t) < WINDOW));
            if map.len() >= MAX_KEYS {
                map.clear();
            }
        }
        for key in keys {
            let q = map.entry(key.clone()).or_default();
            while q.front().is_some_and(|t| now.duration_since(*t) >= WINDOW) {
                q.pop_front();
            }
            if q.len() < self.per_minute {
                q.push_back(now);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_per_key() {
        let l = LoginLimiter::new(3);
        let k = |ip: &str, name: &str| vec![format!("ip:{ip}"), format!("name:{name}")];
        for name in ["a", "b", "c"] {
            assert!(l.allowed(&k("1", name)));
            l.failed(&k("1", name));
        }
        // The address is used up, whatever the name.
        assert!(!l.allowed(&k("1", "d")));
        // Another address for a fresh name is fine; "a" takes two more failures.
        assert!(l.allowed(&k("2", "d")));
        l.failed(&k("2", "a"));
        l.failed(&k("3", "a"));
        assert!(!l.allowed(&k("4", "a")));
    }
}
