//! Login sessions of the web page: a random id in a cookie, everything else
//! on the server.
//!
//! Invariants: ids and CSRF tokens are 256 random bits from the OS (ring's
//! `SystemRandom`); a session ends at its expiry whatever the cookie says;
//! the number of live sessions is bounded (the oldest goes first). Sessions
//! live in this process only: a restart or another node means logging in
//! again, which is the safe direction.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use ring::rand::{SecureRandom, SystemRandom};

use crate::config::web::Role;

/// At most this many sessions at once; a login beyond it ends the oldest.
const MAX_SESSIONS: usize = 10_000;

#[derive(Debug, Clone)]
pub(crate) struct Session {
    pub(crate) account: String,
    pub(crate) role: Role,
    /// Sent in every form and the `X-CSRF-Token` header of API changes.
    pub(crate) csrf: String,
    pub(crate) expires: Instant,
}

pub(crate) struct Sessions {
    ttl: Duration,
    live: Mutex<HashMap<String, Session>>,
}

/// 32 random bytes as lower-case hex.
pub(crate) fn random_token() -> String {
    let mut bytes = [0u8; 32];
    // SystemRandom reads the OS generator; it fails only if the OS cannot give randomness.
    if SystemRandom::new().fill(&mut bytes).is_err() {
        panic!("the operating system's random number generator failed");
    }
    crate::web::view::hex(&bytes)
}

impl Sessions {
    pub(crate) fn new(ttl: Duration) -> Sessions {
        Sessions {
            ttl,
            live: Mutex::new(HashMap::new()),
        }
    }

    pub(crate) fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Starts a session; returns its id.
    pub(crate) fn start(&self, account: String, role: Role) -> (String, Session) {
        let id = random_token();
        let session = Session {
            account,
            role,
            csrf: random_token(),
            expires: Instant::now() + self.ttl,
        };
        let mut live = self.live.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        live.retain(|_, s| s.expires > now);
        if live.len() >= MAX_SESSIONS
            && let Some(oldest) = live.iter().min_by_key(|(_, s)| s.expires).map(|(k, _)| k.clone())
        {
            live.remove(&oldest);
        }
        live.insert(id.clone(), session.clone());
        (id, session)
    }

    /// The live session with this id.
    pub(crate) fn get(&self, id: &str) -> Option<Session> {
        let mut live = self.live.lock().unwrap_or_else(|e| e.into_inner());
        match live.get(id) {
            Some(s) if s.expires > Instant::now() => Some(s.clone()),
            Some(_) => {
                live.remove(id);
                None
            }
            None => None,
        }
    }

    pub(crate) fn end(&self, id: &str) {
        self.live.lock().unwrap_or_else(|e| e.into_inner()).remove(id);
    }
}

/// Constant-time equality of two tokens.
pub(crate) fn tokens_equal(a: &str, b: &str) -> bool {
    use subtle::ConstantTimeEq;
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_expire_and_end() {
        let sessions = Sessions::new(Duration::from_secs(600));
        let (id, s) = sessions.start("alice".into(), Role::Admin);
        assert_eq!(id.len(), 64);
        assert_ne!(id, s.csrf);
        assert_eq!(sessions.get(&id).unwrap().account, "alice");
        let (id, _) = sessions.start("bob".into(), Role::Admin);
        sessions.end(&id);
        assert!(sessions.get(&id).is_none());
        // A session past its expiry is gone whatever the cookie says (a zero
        // TTL is past it at once: no sleeping against a short one).
        let expired = Sessions::new(Duration::ZERO);
        let (id, _) = expired.start("carol".into(), Role::Admin);
        assert!(expired.get(&id).is_none());
    }

    #[test]
    fn token_comparison() {
        assert!(tokens_equal("abc", "abc"));
        assert!(!tokens_equal("abc", "abd"));
        assert!(!tokens_equal("abc", "abcd"));
    }
}
