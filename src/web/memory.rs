//! An in-memory [`Backend`] for the web stage's unit tests: records in a
//! vector, changes applied the way the store applies them (release and
//! delete only while held), audit records and used nonces kept for asserts,
//! and calls that can be made to fail as a store that does not answer.

use std::collections::HashSet;
use std::sync::Mutex;

use crate::web::backend::{Actor, Audit, Backend, BackendError, Change, Delivery, Page, Query, Record};

#[derive(Default)]
pub(crate) struct MemoryBackend {
    pub(crate) records: Mutex<Vec<Record>>,
    pub(crate) audits: Mutex<Vec<Audit>>,
    /// (message id, change, actor) in order.
    pub(crate) changes: Mutex<Vec<(String, Change, Actor)>>,
    nonces: Mutex<HashSet<String>>,
    /// Calls ("search", "record", "apply", "nonce") answered with a store error.
    pub(crate) failing: Mutex<HashSet<&'static str>>,
}

impl MemoryBackend {
    fn answer(&self, call: &str) -> Result<(), BackendError> {
        if self.failing.lock().unwrap().contains(call) {
            return Err(BackendError::Store(format!("{call}: connection refused")));
        }
        Ok(())
    }
}

fn contains(hay: &str, needle: Option<&String>) -> bool {
    needle.is_none_or(|n| hay.to_lowercase().contains(&n.to_lowercase()))
}

#[async_trait::async_trait]
impl Backend for MemoryBackend {
    async fn search(&self, q: &Query) -> Result<Page, BackendError> {
        self.answer("search")?;
        let records = self.records.lock().unwrap();
        let mut hits: Vec<_> = records
            .iter()
            .map(|r| &r.summary)
            .filter(|m| q.tenant.as_ref().is_none_or(|t| &m.tenant == t))
            .filter(|m| contains(&m.sender, q.sender.as_ref()))
            .filter(|m| q.recipient.is_none() || m.recipients.iter().any(|r| contains(r, q.recipient.as_ref())))
            .filter(|m| contains(&m.subject, q.subject.as_ref()))
            .filter(|m| contains(&m.message_id, q.message_id.as_ref()))
            .filter(|m| q.action.as_ref().is_none_or(|a| &m.action == a))
            .filter(|m| q.since.is_none_or(|t| m.received >= t) && q.until.is_none_or(|t| m.received < t))
            .filter(|m| !q.held_only || m.held)
            .cloned()
            .collect();
        hits.sort_by_key(|m| std::cmp::Reverse(m.received));
        let start = (q.page * q.per_page) as usize;
        let more = hits.len() > start + q.per_page as usize;
        Ok(Page {
            items: hits.into_iter().skip(start).take(q.per_page as usize).collect(),
            more,
        })
    }

    async fn record(&self, id: &str) -> Result<Option<Record>, BackendError> {
        self.answer("record")?;
        Ok(self
            .records
            .lock()
            .unwrap()
            .iter()
            .find(|r| r.summary.id == id)
            .cloned())
    }

    async fn apply(&self, id: &str, change: &Change, actor: &Actor) -> Result<String, BackendError> {
        self.answer("apply")?;
        let mut records = self.records.lock().unwrap();
        let r = records
            .iter_mut()
            .find(|r| r.summary.id == id)
            .ok_or_else(|| BackendError::NotApplicable(format!("no message {id}")))?;
        let outcome = match change {
            Change::Release { recipients } => {
                if !r.summary.held {
                    return Err(BackendError::NotApplicable("not held".into()));
                }
                let to = recipients.clone().unwrap_or_else(|| r.summary.recipients.clone());
                r.released_to.extend(to.iter().cloned());
                for rcpt in &to {
                    r.deliveries.push(Delivery {
                        recipient: rcpt.clone(),
                        host: String::new(),
                        reply: String::new(),
                        at: 0,
                        outcome: "released".into(),
                    });
                }
                r.summary.held = false;
                format!("released to {}", to.join(", "))
            }
            Change::ReleaseAndAllow => {
                if !r.summary.held {
                    return Err(BackendError::NotApplicable("not held".into()));
                }
                r.summary.held = false;
                format!("released; {} allowed", r.summary.sender)
            }
            Change::Delete => {
                if !r.summary.held {
                    return Err(BackendError::NotApplicable("not held".into()));
                }
                r.summary.held = false;
                r.raw = None;
                "deleted".into()
            }
            Change::NotSpam => "recorded as not spam".into(),
        };
        self.changes
            .lock()
            .unwrap()
            .push((id.to_string(), change.clone(), actor.clone()));
        Ok(outcome)
    }

    async fn audit(&self, audit: &Audit) -> Result<(), BackendError> {
        self.audits.lock().unwrap().push(audit.clone());
        Ok(())
    }

    async fn consume_nonce(&self, nonce: &str, _expires: i64) -> Result<bool, BackendError> {
        self.answer("nonce")?;
        Ok(self.nonces.lock().unwrap().insert(nonce.to_string()))
    }
}
