//! [`Backend`] on the real store (`crate::store`): the web stage's calls
//! mapped onto the store's events (one row per recipient), its quarantine
//! index and its audit log.
//!
//! A page of search results is a page of the store's rows, grouped by queue
//! id; a row whose action is `quarantine` is looked up in the quarantine
//! index to tell whether it is still held. Scoping is done by `routes`
//! (`Scope::All` here), and the store's own scope check is a second line.
//! Digest link nonces are kept in `state_dir/web/used-links` on this node;
//! across nodes a link still acts once, because a recipient a message was
//! released to is not offered again (the quarantine index is shared).

use std::collections::HashSet;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Mutex;

use crate::store::{
    Actor as StoreActor, AuditRecord, QuarantineEntry, QuarantineQuery, QuarantineState, Query as StoreQuery, Scope,
    Store, StoreError,
};
use crate::web::backend::{Actor, Audit, Backend, BackendError, Change, Delivery, Page, Query, Record, Summary};

pub(crate) struct StoreAccess {
    store: Store,
    used_links: PathBuf,
    used: Mutex<Option<HashSet<String>>>,
}

impl StoreAccess {
    pub(crate) fn new(store: Store, state_dir: &std::path::Path) -> StoreAccess {
        StoreAccess {
            store,
            used_links: state_dir.join("web").join("used-links"),
            used: Mutex::new(None),
        }
    }
}

fn err(e: StoreError) -> BackendError {
    match e {
        StoreError::NotFound(m) | StoreError::Invalid(m) => BackendError::NotApplicable(m),
        other => BackendError::Store(other.to_string()),
    }
}

fn actor(a: &Actor) -> StoreActor {
    StoreActor {
        name: a.name.clone(),
        from: a.from.to_string(),
    }
}

fn held_summary(e: &QuarantineEntry) -> Summary {
    Summary {
        id: e.id.clone(),
        received: e.time,
        tenant: e.tenant.clone(),
        direction: "inbound".into(),
        sender: e.mail_from.clone(),
        recipients: e.recipients.clone(),
        from: e.header_from.clone(),
        subject: e.subject.clone(),
        message_id: e.message_id.clone(),
        action: "quarantine".into(),
        score: e.score,
        size: e.size,
        held: e.state == QuarantineState::Held,
    }
}

impl StoreAccess {
    /// The bytes of message `id` while it is `held` (what the page's safe view is made of).
    async fn held_body(&self, id: &str, held: bool) -> Option<Vec<u8>> {
        if !held {
            return None;
        }
        match self.store.quarantine_message(&Scope::All, id).await {
            Ok(m) => Some(m.body),
            Err(e) => {
                // The page then shows the record without the content.
                tracing::warn!(queue_id = %id, error = %e, "cannot read a held message's bytes");
                None
            }
        }
    }

    async fn is_held(&self, id: &str) -> Result<bool, BackendError> {
        Ok(self
            .store
            .quarantine_get(&Scope::All, id)
            .await
            .map_err(err)?
            .is_some_and(|e| e.state == QuarantineState::Held))
    }
}

#[async_trait::async_trait]
impl Backend for StoreAccess {
    async fn search(&self, q: &Query) -> Result<Page, BackendError> {
        let scope = match &q.tenant {
            Some(t) => Scope::Tenant(t.clone()),
            None => Scope::All,
        };
        let per_page = q.per_page.clamp(1, 500);
        if q.held_only {
            let mut query = QuarantineQuery::new(scope);
            query.sender = q.sender.clone();
            query.rcpt = q.recipient.clone();
            query.subject = q.subject.clone();
            query.message_id = q.message_id.clone();
            query.since = q.since;
            query.until = q.until;
            query.limit = per_page + 1;
            query.offset = q.page * per_page;
            let mut entries = self.store.quarantine_list(&query).await.map_err(err)?;
            let more = entries.len() > per_page as usize;
            entries.truncate(per_page as usize);
            let items = entries.iter().map(held_summary).collect();
            return Ok(Page { items, more });
        }
        let mut query = StoreQuery::new(scope);
        query.sender = q.sender.clone();
        query.rcpt = q.recipient.clone();
        query.subject = q.subject.clone();
        query.message_id = q.message_id.as_ref().map(|m| m.trim_matches(['<', '>']).to_string());
        query.action = q.action.clone();
        query.since = q.since;
        query.until = q.until;
        query.limit = per_page + 1;
        query.offset = q.page * per_page;
        let mut rows = self.store.search(&query).await.map_err(err)?;
        let more = rows.len() > per_page as usize;
        rows.truncate(per_page as usize);
        // One line per message: rows of the same queue id (its recipients) are merged.
        let mut items: Vec<Summary> = Vec::new();
        for row in rows {
            if let Some(s) = items.iter_mut().find(|s| s.id == row.queue_id) {
                if !s.recipients.contains(&row.rcpt) {
                    s.recipients.push(row.rcpt);
                }
                continue;
            }
            let held = row.action == "quarantine" && self.is_held(&row.queue_id).await?;
            items.push(Summary {
                id: row.queue_id,
                received: row.time,
                tenant: row.tenant,
                direction: row.direction,
                sender: row.mail_from,
                recipients: vec![row.rcpt],
                from: row.header_from,
                subject: row.subject,
                message_id: String::new(),
                action: row.action,
                score: row.score,
                size: row.size,
                held,
            });
        }
        Ok(Page { items, more })
    }

    async fn record(&self, id: &str) -> Result<Option<Record>, BackendError> {
        let mut query = StoreQuery::new(Scope::All);
        query.queue_id = Some(id.to_string());
        query.limit = 1000;
        let rows = self.store.search(&query).await.map_err(err)?;
        let entry = self.store.quarantine_get(&Scope::All, id).await.map_err(err)?;
        let Some(first) = rows.first() else {
            // Held but its event not (yet) written: the quarantine index alone.
            return Ok(match entry {
                Some(e) => Some(self.record_of_entry(&e).await?),
                None => None,
            });
        };
        let Some(detail) = self.store.event(&Scope::All, first.id).await.map_err(err)? else {
            return Ok(None);
        };
        let ev = &detail.event;
        let mut deliveries = Vec::new();
        for row in &rows {
            let d = if row.id == first.id {
                Some(detail.clone())
            } else {
                self.store.event(&Scope::All, row.id).await.map_err(err)?
            };
            if let Some(d) = d {
                deliveries.extend(d.deliveries.iter().map(|o| Delivery {
                    recipient: d.rcpt.clone(),
                    host: o.host.clone(),
                    reply: o.reply.clone(),
                    at: o.time,
                    outcome: o.result.clone(),
                }));
            }
        }
        deliveries.sort_by_key(|d| d.at);
        let held = entry.as_ref().is_some_and(|e| e.state == QuarantineState::Held);
        let raw = self.held_body(id, held).await;
        let mut released_to = entry.as_ref().map(|e| e.released.clone()).unwrap_or_default();
        released_to.sort();
        Ok(Some(Record {
            summary: Summary {
                id: ev.queue_id.clone(),
                received: ev.time,
                tenant: ev.tenant.clone(),
                direction: ev.direction.clone(),
                sender: ev.mail_from.clone(),
                recipients: ev.recipients.clone(),
                from: ev.header_from.clone(),
                subject: ev.subject.clone(),
                message_id: ev.message_id.clone(),
                action: ev.action.clone(),
                score: ev.score,
                size: ev.size,
                held,
            },
            client: format!("{} (HELO {})", ev.client_ip, ev.helo),
            tls: ev.tls.clone().unwrap_or_else(|| "none".into()),
            findings: ev.findings.clone(),
            failures: ev.failures.clone(),
            deliveries,
            released_to,
            raw,
        }))
    }

    async fn apply(&self, id: &str, change: &Change, who: &Actor) -> Result<String, BackendError> {
        let a = actor(who);
        match change {
            Change::Release { recipients } => {
                let r = self
                    .store
                    .quarantine_release(&Scope::All, id, recipients.as_deref(), &a)
                    .await
                    .map_err(err)?;
                Ok(format!(
                    "Released to {} (queued as {} on {}).",
                    r.recipients.join(", "),
                    r.copy_id,
                    r.node
                ))
            }
            Change::ReleaseAndAllow => {
                let entry = self
                    .store
                    .quarantine_get(&Scope::All, id)
                    .await
                    .map_err(err)?
                    .ok_or_else(|| BackendError::NotApplicable(format!("{id} is not in the quarantine")))?;
                if entry.mail_from.is_empty() {
                    return Err(BackendError::NotApplicable("the null sender cannot be allowed".into()));
                }
                self.store
                    .allow_sender(&entry.tenant, &entry.mail_from, &a)
                    .await
                    .map_err(err)?;
                let r = self
                    .store
                    .quarantine_release(&Scope::All, id, None, &a)
                    .await
                    .map_err(err)?;
                Ok(format!(
                    "Released to {} and {} added to {}'s allow list.",
                    r.recipients.join(", "),
                    entry.mail_from,
                    entry.tenant
                ))
            }
            Change::Delete => {
                self.store.quarantine_delete(&Scope::All, id, &a).await.map_err(err)?;
                Ok("Deleted.".into())
            }
            Change::NotSpam => {
                self.store.not_spam(&Scope::All, id, &a).await.map_err(err)?;
                Ok("Recorded as not spam.".into())
            }
        }
    }

    async fn audit(&self, audit: &Audit) -> Result<(), BackendError> {
        let record = AuditRecord::new(
            &actor(&audit.actor),
            &audit.what,
            "",
            vec![],
            format!(
                "via {}{}{}",
                audit.actor.via,
                if audit.detail.is_empty() { "" } else { ": " },
                audit.detail
            ),
        );
        self.store.audit(record).await.map_err(err)
    }

    async fn consume_nonce(&self, nonce: &str, expires: i64) -> Result<bool, BackendError> {
        let mut used = self.used.lock().unwrap_or_else(|e| e.into_inner());
        let set = used.get_or_insert_with(|| {
            let now = crate::spool::now_unix();
            std::fs::read_to_string(&self.used_links)
                .unwrap_or_default()
                .lines()
                .filter_map(|l| l.split_once(' '))
                .filter(|(exp, _)| exp.parse::<i64>().is_ok_and(|e| e > now))
                .map(|(_, n)| n.to_string())
                .collect()
        });
        if set.contains(nonce) {
            return Ok(false);
        }
        // Durable before the release happens: a crash after this line leaves
        // the link used, never usable twice.
        let write = || -> std::io::Result<()> {
            if let Some(dir) = self.used_links.parent() {
                std::fs::create_dir_all(dir)?;
            }
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.used_links)?;
            writeln!(f, "{expires} {nonce}")?;
            f.sync_all()
        };
        write().map_err(|e| BackendError::Store(format!("{}: {e}", self.used_links.display())))?;
        set.insert(nonce.to_string());
        Ok(true)
    }
}

impl StoreAccess {
    async fn record_of_entry(&self, e: &QuarantineEntry) -> Result<Record, BackendError> {
        let raw = self.held_body(&e.id, e.state == QuarantineState::Held).await;
        Ok(Record {
            summary: held_summary(e),
            client: String::new(),
            tls: String::new(),
            findings: e.findings.clone(),
            failures: vec![],
            deliveries: vec![],
            released_to: e.released.clone(),
            raw,
        })
    }
}
