//! Password checks for `[[web.account]]` and `exogate hash-password`.
//!
//! Hashes are argon2id PHC strings (the `argon2` crate: RFC 9106 defaults).
//! Invariants: a login for an unknown name costs the same argon2 work as one
//! for a known name, so response time does not tell which names exist; the
//! password is never logged or kept. Verification runs on a blocking thread
//! because argon2 is deliberately slow.

use std::collections::HashMap;
use std::sync::Arc;

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHasher, SaltString};
use argon2::{Argon2, PasswordHash, PasswordVerifier};

use crate::config::web::{Account, Role};

/// The accounts of the running configuration, by name.
pub(crate) struct Accounts {
    by_name: HashMap<String, Account>,
    /// Verified against when the name is unknown, to spend the same time.
    decoy: String,
}

impl Accounts {
    pub(crate) fn new(accounts: &[Account]) -> Accounts {
        Accounts {
            by_name: accounts.iter().map(|a| (a.name.clone(), a.clone())).collect(),
            decoy: hash_password("decoy password that matches no account").unwrap_or_default(),
        }
    }

    /// The account's role when `password` is right.
    pub(crate) async fn verify(self: &Arc<Self>, name: &str, password: String) -> Option<(String, Role)> {
        let this = self.clone();
        let name = name.to_string();
        tokio::task::spawn_blocking(move || {
            let (hash, account) = match this.by_name.get(&name) {
                Some(a) => (a.password_hash.as_str(), Some(a)),
                None => (this.decoy.as_str(), None),
            };
            let ok = PasswordHash::new(hash)
                .is_ok_and(|h| Argon2::default().verify_password(password.as_bytes(), &h).is_ok());
            match account {
                Some(a) if ok => Some((a.name.clone(), a.role.clone())),
                _ => None,
            }
        })
        .await
        .ok()
        .flatten()
    }
}

/// A new argon2id PHC string for `password` with a random salt.
pub(crate) fn hash_password(password: &str) -> Result<String, String> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| format!("cannot hash the password: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn right_password_wrong_password_unknown_name() {
        let hash = hash_password("correct horse").unwrap();
        assert!(hash.starts_with("$argon2id$"), "{hash}");
        let accounts = Arc::new(Accounts::new(&[Account {
            name: "alice".into(),
            password_hash: hash,
            role: Role::Tenant("contoso".into()),
        }]));
        assert_eq!(
            accounts.verify("alice", "correct horse".into()).await,
            Some(("alice".into(), Role::Tenant("contoso".into())))
        );
        assert_eq!(accounts.verify("alice", "correct horse ".into()).await, None);
        assert_eq!(accounts.verify("bob", "correct horse".into()).await, None);
    }
}
