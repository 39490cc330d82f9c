//! Signed release links of the end-user digest.
//!
//! A link carries `v1|queue id|recipient|expiry|nonce`, hex-encoded, and an
//! HMAC-SHA256 over exactly those bytes (ring). Invariants: nothing in a link
//! is believed before its MAC verifies (ring's constant-time `verify`); an
//! expired link is refused whatever else it says; a link acts on one
//! recipient of one message, once (the nonce is consumed through the
//! backend, on this node; on any node, a recipient the message was already
//! released to is not offered it again, so a reused link does nothing).
//!
//! The key is 32 random bytes, read from `[web] digest_key` or from
//! `state_dir/web/digest.key`, which is generated (mode 0600) when absent.

use std::io::Write;
use std::path::Path;

use ring::hmac;

use crate::web::sessions::random_token;
use crate::web::view::hex;

/// What a verified link allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Grant {
    pub(crate) id: String,
    pub(crate) recipient: String,
    pub(crate) expires: i64,
    pub(crate) nonce: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum LinkError {
    #[error("this link is not valid")]
    Invalid,
    #[error("this link has expired")]
    Expired,
}

pub(crate) struct LinkKey(hmac::Key);

impl LinkKey {
    pub(crate) fn from_bytes(bytes: &[u8]) -> LinkKey {
        LinkKey(hmac::Key::new(hmac::HMAC_SHA256, bytes))
    }

    /// Reads the key file, creating it with a random key when `configured` is
    /// `None` and the default file does not exist yet.
    pub(crate) fn load(configured: Option<&Path>, state_dir: &Path) -> Result<LinkKey, String> {
        let path = match configured {
            Some(p) => p.to_path_buf(),
            None => state_dir.join("web").join("digest.key"),
        };
        if configured.is_none() && !path.exists() {
            let dir = state_dir.join("web");
            std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create_new(true);
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            match options.open(&path) {
                Ok(mut f) => f
                    .write_all(format!("{}\n", random_token()).as_bytes())
                    .and_then(|_| f.sync_all())
                    .map_err(|e| format!("cannot write {}: {e}", path.display()))?,
                // Another process made it first: use theirs.
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(format!("cannot create {}: {e}", path.display())),
            }
        }
        let text = std::fs::read_to_string(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let key = text.trim();
        if key.len() < 32 {
            return Err(format!("{}: the key must be at least 32 characters", path.display()));
        }
        Ok(LinkKey::from_bytes(key.as_bytes()))
    }

    /// A link token for `recipient` of message `id`, valid until `expires`.
    pub(crate) fn sign(&self, id: &str, recipient: &str, expires: i64) -> String {
        let payload = format!("v1|{id}|{recipient}|{expires}|{}", &random_token()[..32]);
        let tag = hmac::sign(&self.0, payload.as_bytes());
        format!("{}.{}", hex(payload.as_bytes()), hex(tag.as_ref()))
    }

    /// The grant of a token, if its MAC verifies and it has not expired at `now`.
    pub(crate) fn verify(&self, token: &str, now: i64) -> Result<Grant, LinkError> {
        let (payload_hex, tag_hex) = token.split_once('.').ok_or(LinkError::Invalid)?;
        let payload = unhex(payload_hex).ok_or(LinkError::Invalid)?;
        let tag = unhex(tag_hex).ok_or(LinkError::Invalid)?;
        hmac::verify(&self.0, &payload, &tag).map_err(|_| LinkError::Invalid)?;
        let payload = String::from_utf8(payload).map_err(|_| LinkError::Invalid)?;
        let mut fields = payload.split('|');
        let (Some("v1"), Some(id), Some(recipient), Some(expires), Some(nonce), None) = (
            fields.next(),
            fields.next(),
            fields.next(),
            fields.next(),
            fields.next(),
            fields.next(),
        ) else {
            return Err(LinkError::Invalid);
        };
        let expires: i64 = expires.parse().map_err(|_| LinkError::Invalid)?;
        if now >= expires {
            return Err(LinkError::Expired);
        }
        Ok(Grant {
            id: id.to_string(),
            recipient: recipient.to_string(),
            expires,
            nonce: nonce.to_string(),
        })
    }
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) || text.len() > 4096 {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signed_expiring_and_tamper_evident() {
        let key = LinkKey::from_bytes(b"0123456789abcdef0123456789abcdef");
        let token = key.sign("Q1", "bob@contoso.com", 1000);
        let grant = key.verify(&token, 999).unwrap();
        assert_eq!(
            (grant.id.as_str(), grant.recipient.as_str(), grant.expires),
            ("Q1", "bob@contoso.com", 1000)
        );
        assert_eq!(key.verify(&token, 1000), Err(LinkError::Expired));
        // Each link has its own nonce.
        assert_ne!(
            key.verify(&key.sign("Q1", "bob@contoso.com", 1000), 0).unwrap().nonce,
            grant.nonce
        );
        // Changing any byte of the payload (here: the recipient) breaks the MAC.
        let (payload, tag) = token.split_once('.').unwrap();
        let forged = String::from_utf8(unhex(payload).unwrap())
            .unwrap()
            .replace("bob@", "eve@");
        assert_eq!(
            key.verify(&format!("{}.{tag}", hex(forged.as_bytes())), 0),
            Err(LinkError::Invalid)
        );
        // Another key's link is not ours.
        let other = LinkKey::from_bytes(b"another key of at least 32 bytes!");
        assert_eq!(other.verify(&token, 0), Err(LinkError::Invalid));
        assert_eq!(key.verify("garbage", 0), Err(LinkError::Invalid));
    }
}
