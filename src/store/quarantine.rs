//! The quarantine's lifecycle: reading a held message's bytes (the spool's
//! `quarantine/` file, or the database's copy with PostgreSQL), releasing a
//! copy stamped as delivered, deleting, "not spam" feedback.
//!
//! A release re-queues a *copy* under a new queue id in this node's spool
//! (`active/`), for all recipients not yet released or the chosen ones. Its
//! bytes are the held message's exactly, except our own fields: in the stamp
//! `X-CLOUD-SEC-AV-SCL` becomes `false` and `X-CLOUD-SEC-AV-Verdict` starts
//! with `action=deliver; released-by=<actor>` (the rest of the verdict,
//! score and tests, is kept for the record). The index update is
//! conditional on the entry still being held, so two administrators (or two
//! nodes) cannot release the same recipients twice.

use crate::message::stamp;
use crate::spool::format::{self, Kind, Meta};
use crate::spool::incoming::Body;
use crate::spool::{Area, SpoolError, new_id, valid_id};

use super::types::*;
use super::{Store, StoreError};

/// The index entry of a message quarantined with `event`.
pub(super) fn entry_of(event: &EventRecord) -> QuarantineEntry {
    QuarantineEntry {
        id: event.queue_id.clone(),
        time: event.time,
        node: event.node.clone(),
        tenant: event.tenant.clone(),
        mail_from: event.mail_from.clone(),
        recipients: event.recipients.clone(),
        header_from: event.header_from.clone(),
        subject: event.subject.clone(),
        message_id: event.message_id.clone(),
        size: event.size,
        score: event.score,
        findings: event.findings.clone(),
        state: QuarantineState::Held,
        released: Vec::new(),
    }
}

/// An allow-list entry: a whole address or `@domain`, lower case.
pub(super) fn normalise_sender(sender: &str) -> Result<String, StoreError> {
    let s = sender
        .trim()
        .trim_start_matches('<')
        .trim_end_matches('>')
        .to_ascii_lowercase();
    let ok = match s.strip_prefix('@') {
        Some(domain) => !domain.is_empty() && !domain.contains('@'),
        None => s
            .split_once('@')
            .is_some_and(|(l, d)| !l.is_empty() && !d.is_empty() && !d.contains('@')),
    };
    if !ok || s.len() > 320 || s.contains(|c: char| c.is_whitespace() || c.is_control() || c == ',') {
        return Err(StoreError::Invalid(format!(
            "\"{sender}\" is not an address (user@example.org) or a domain (@example.org)"
        )));
    }
    Ok(s)
}

/// The queue file of a held message: the local one, or the database's copy.
async fn file_bytes(store: &Store, id: &str) -> Result<Vec<u8>, StoreError> {
    if !valid_id(id) {
        return Err(StoreError::NotFound(id.to_string()));
    }
    let path = store.inner.spool.path(Area::Quarantine, id);
    match tokio::fs::read(&path).await {
        Ok(bytes) => return Ok(bytes),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(SpoolError::Io { path, source: e }.into()),
    }
    if store.inner.backend.keeps_bodies()
        && let Some(bytes) = store.inner.backend.body_get(id).await?
    {
        return Ok(bytes);
    }
    Err(StoreError::NotFound(format!("{id}: its bytes are gone")))
}

/// The entry, if held and in scope.
async fn held(store: &Store, scope: &Scope, id: &str) -> Result<QuarantineEntry, StoreError> {
    match store.inner.backend.quarantine_get(scope, id).await? {
        Some(e) if e.state == QuarantineState::Held => Ok(e),
        Some(e) => Err(StoreError::Invalid(format!("{id} is {} already", e.state.as_str()))),
        None => Err(StoreError::NotFound(id.to_string())),
    }
}

pub(super) async fn message(store: &Store, scope: &Scope, id: &str) -> Result<HeldMessage, StoreError> {
    let entry = store
        .inner
        .backend
        .quarantine_get(scope, id)
        .await?
        .ok_or_else(|| StoreError::NotFound(id.to_string()))?;
    let file = file_bytes(store, id).await?;
    let (trailer, body) = decode(id, &file)?;
    Ok(HeldMessage {
        entry,
        meta: trailer.meta,
        prefix: trailer.prefix,
        body: file[body].to_vec(),
    })
}

fn decode(id: &str, file: &[u8]) -> Result<(format::Trailer, std::ops::Range<usize>), StoreError> {
    format::decode_all(file).map_err(|error| {
        StoreError::Spool(SpoolError::Corrupt {
            id: id.to_string(),
            error,
        })
    })
}

pub(super) async fn release(
    store: &Store,
    scope: &Scope,
    id: &str,
    recipients: Option<&[String]>,
    actor: &Actor,
) -> Result<Released, StoreError> {
    let entry = held(store, scope, id).await?;
    let file = file_bytes(store, id).await?;
    let (trailer, body) = decode(id, &file)?;
    let meta = &trailer.meta;
    let pending: Vec<usize> = (0..meta.envelope.recipients.len())
        .filter(|&i| {
            !entry
                .released
                .iter()
                .any(|r| r.eq_ignore_ascii_case(&meta.envelope.recipients[i].address.to_string()))
        })
        .collect();
    let chosen: Vec<usize> = match recipients {
        None => pending.clone(),
        Some(wanted) => {
            let mut chosen = Vec::new();
            for w in wanted {
                let found = pending.iter().copied().find(|&i| {
                    meta.envelope.recipients[i]
                        .address
                        .to_string()
                        .eq_ignore_ascii_case(w.trim())
                });
                match found {
                    Some(i) if !chosen.contains(&i) => chosen.push(i),
                    Some(_) => {}
                    None => {
                        return Err(StoreError::Invalid(format!(
                            "{w} is not a recipient of {id} still held"
                        )));
                    }
                }
            }
            chosen
        }
    };
    if chosen.is_empty() {
        return Err(StoreError::Invalid(format!("{id}: no recipient left to release")));
    }
    let released_now: Vec<String> = chosen
        .iter()
        .map(|&i| meta.envelope.recipients[i].address.to_string())
        .collect();
    let mut released_all = entry.released.clone();
    released_all.extend(released_now.iter().cloned());
    let complete = chosen.len() == pending.len();

    // Claim the recipients first: if another node released them meanwhile,
    // nothing is queued here.
    let state = if complete {
        QuarantineState::Released
    } else {
        QuarantineState::Held
    };
    let body_bytes = if complete { 0 } else { entry.size.max(1) };
    if !store
        .inner
        .backend
        .quarantine_update(id, QuarantineState::Held, state, &released_all, body_bytes)
        .await?
    {
        return Err(StoreError::Invalid(format!("{id} was changed meanwhile; look again")));
    }

    let copy_id = new_id();
    let now = store.now();
    let mut envelope = meta.envelope.clone();
    envelope.recipients = chosen.iter().map(|&i| meta.envelope.recipients[i].clone()).collect();
    let copy = Meta {
        id: copy_id.clone(),
        received: now,
        kind: Kind::Message,
        envelope,
        session: meta.session.clone(),
        tenant: meta.tenant.clone(),
        direction: meta.direction,
        verdict: meta.verdict.clone(),
        skips: meta.skips.clone(),
        sender_authenticated: meta.sender_authenticated,
        ids: meta.ids.clone(),
        route: None,
    };
    let prefix = restamp(&trailer.prefix, &actor.name);
    let committed = store
        .inner
        .spool
        .commit(Area::Active, &copy, &prefix, Body::Memory(file[body.clone()].to_vec()))
        .await;
    if let Err(e) = committed {
        // Hand the recipients back: the copy is not queued.
        let _ = store
            .inner
            .backend
            .quarantine_update(id, state, QuarantineState::Held, &entry.released, entry.size.max(1))
            .await;
        return Err(e.into());
    }
    // A running scheduler looks at the trigger every quarter second.
    let _ = std::fs::write(store.inner.spool.flush_trigger(), b"release\n");
    if complete {
        remove_body(store, id).await;
    }
    let raw = &file[body];
    // Written now, not queued: the command line has no writer task.
    let copy_event = super::record::event(&super::record::Facts {
        queue_id: &copy_id,
        time: now,
        node: &store.inner.config.node,
        tenant: &meta.tenant,
        direction: meta.direction,
        envelope: &copy.envelope,
        session: &meta.session,
        raw,
        size: raw.len() as u64,
        verdict: meta.verdict.as_ref(),
        action: "released",
        auth: None,
    });
    if let Err(e) = store.inner.backend.write_batch(&[copy_event], &[], &[]).await {
        tracing::warn!(queue_id = %copy_id, error = %e, "cannot record the released copy's event");
    }
    store
        .audit(AuditRecord::new(
            actor,
            "release",
            &meta.tenant,
            vec![id.to_string(), copy_id.clone()],
            format!("to {}", released_now.join(", ")),
        ))
        .await?;
    Ok(Released {
        copy_id,
        recipients: released_now,
        node: store.inner.config.node.clone(),
    })
}

/// The stamp of a released copy: every field of ours as it was, except
/// `X-CLOUD-SEC-AV-SCL: false` and a verdict that starts
/// `action=deliver; released-by=<actor>`.
pub(crate) fn restamp(prefix: &[u8], actor: &str) -> Vec<u8> {
    let by: String = actor
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '@' | '.' | '-' | '_' | ':' | '+'))
        .take(64)
        .collect();
    let by = if by.is_empty() { "unknown".to_string() } else { by };
    let mut out = Vec::with_capacity(prefix.len() + 64);
    let mut seen_scl = false;
    let mut seen_verdict = false;
    for field in crate::message::headers::fields(prefix) {
        let bytes = &prefix[field.range.clone()];
        if field.name.eq_ignore_ascii_case(b"X-CLOUD-SEC-AV-SCL") {
            stamp::push_field(&mut out, "X-CLOUD-SEC-AV-SCL", "false");
            seen_scl = true;
        } else if field.name.eq_ignore_ascii_case(b"X-CLOUD-SEC-AV-Verdict") {
            let old = field.unfolded();
            let rest = old
                .split("; ")
                .filter(|part| !part.starts_with("action=") && !part.starts_with("released-by="))
                .collect::<Vec<_>>()
                .join("; ");
            let value = if rest.is_empty() {
                format!("action=deliver; released-by={by}")
            } else {
                format!("action=deliver; released-by={by}; {rest}")
            };
            stamp::push_field(&mut out, "X-CLOUD-SEC-AV-Verdict", &value);
            seen_verdict = true;
        } else {
            out.extend_from_slice(bytes);
        }
    }
    if !seen_scl {
        stamp::push_field(&mut out, "X-CLOUD-SEC-AV-SCL", "false");
    }
    if !seen_verdict {
        stamp::push_field(
            &mut out,
            "X-CLOUD-SEC-AV-Verdict",
            &format!("action=deliver; released-by={by}"),
        );
    }
    out
}

pub(super) async fn delete(store: &Store, scope: &Scope, id: &str, actor: &Actor) -> Result<(), StoreError> {
    let entry = held(store, scope, id).await?;
    if !store
        .inner
        .backend
        .quarantine_update(id, QuarantineState::Held, QuarantineState::Deleted, &entry.released, 0)
        .await?
    {
        return Err(StoreError::Invalid(format!("{id} was changed meanwhile; look again")));
    }
    remove_body(store, id).await;
    store
        .audit(AuditRecord::new(
            actor,
            "delete",
            &entry.tenant,
            vec![id.to_string()],
            String::new(),
        ))
        .await
}

pub(super) async fn not_spam(store: &Store, scope: &Scope, id: &str, actor: &Actor) -> Result<(), StoreError> {
    let entry = store
        .inner
        .backend
        .quarantine_get(scope, id)
        .await?
        .ok_or_else(|| StoreError::NotFound(id.to_string()))?;
    store
        .inner
        .backend
        .feedback_insert(store.now(), id, &entry.tenant, &actor.name, "not-spam")
        .await?;
    store
        .audit(AuditRecord::new(
            actor,
            "not-spam",
            &entry.tenant,
            vec![id.to_string()],
            format!("from {}", entry.mail_from),
        ))
        .await
}

/// Removes a message's bytes wherever they are (file, database copy).
pub(super) async fn remove_body(store: &Store, id: &str) {
    let _ = store.inner.spool.remove(Area::Quarantine, id);
    if store.inner.backend.keeps_bodies()
        && let Err(e) = store.inner.backend.body_delete(id).await
    {
        tracing::warn!(queue_id = id, error = %e, "cannot remove a quarantined message's bytes from the store");
    }
}

/// PostgreSQL: copies a quarantined file into the database, then removes
/// the local file (the database's copy is what every node reads).
pub(super) async fn upload(store: &Store, id: &str) -> Result<(), StoreError> {
    let path = store.inner.spool.path(Area::Quarantine, id);
    let bytes = match tokio::fs::read(&path).await {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(SpoolError::Io { path, source: e }.into()),
    };
    // Never upload a damaged file: it would replace nothing good, but a
    // release from another node would then fail late.
    decode(id, &bytes)?;
    store.inner.backend.body_put(id, bytes).await?;
    let _ = store.inner.spool.remove(Area::Quarantine, id);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_released_stamp_says_deliver_and_keeps_the_rest() {
        let mut prefix = Vec::new();
        stamp::push_field(&mut prefix, "Received", "from a by b; Mon, 1 Jan 2026 00:00:00 +0000");
        stamp::push_field(&mut prefix, "X-CLOUD-SEC-AV-Info", "contoso,office365_emails,inbound");
        stamp::push_field(&mut prefix, "X-CLOUD-SEC-AV-SCL", "true");
        stamp::push_field(
            &mut prefix,
            "X-CLOUD-SEC-AV-Verdict",
            "action=quarantine; score=100.0; enforced=yes; tests=malware:virus(100.0)",
        );
        let out = String::from_utf8(restamp(&prefix, "cli:root"))
            .unwrap()
            .replace("\r\n\t", " ");
        assert!(out.starts_with("Received: from a by b;"), "{out}");
        assert!(out.contains("X-CLOUD-SEC-AV-Info: contoso,office365_emails,inbound\r\n"));
        assert!(out.contains("X-CLOUD-SEC-AV-SCL: false\r\n"), "{out}");
        assert!(
            out.contains("X-CLOUD-SEC-AV-Verdict: action=deliver; released-by=cli:root; score=100.0; enforced=yes;"),
            "{out}"
        );
        assert!(!out.contains("action=quarantine"), "{out}");
        assert_eq!(out.matches("X-CLOUD-SEC-AV-SCL").count(), 1);
    }

    #[test]
    fn allow_entries_are_addresses_or_domains() {
        assert_eq!(normalise_sender(" <Bob@Example.org> ").unwrap(), "bob@example.org");
        assert_eq!(normalise_sender("@Example.org").unwrap(), "@example.org");
        for bad in ["", "@", "bob", "a@b@c", "a b@c", "x@"] {
            assert!(normalise_sender(bad).is_err(), "{bad}");
        }
    }
}
