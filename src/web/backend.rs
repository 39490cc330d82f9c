//! What the web page, the API and the digest need from the message history
//! and the quarantine: a small trait, so that the HTTP layer is written (and
//! unit-tested) against the calls it makes rather than against a storage
//! engine. `store_backend` implements it for the real store; tests use
//! `memory::MemoryBackend`.
//!
//! Invariants: tenant scoping is applied by the caller (`routes`), never
//! trusted to a query parameter; every change carries an [`Actor`], and the
//! backend writes the audit record in the same step as the change.

use std::net::IpAddr;

use serde::Serialize;

/// A search of the message history, as the search form and the API send it.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Query {
    /// `Some`: only this tenant's messages (set from the account, not from the request).
    pub(crate) tenant: Option<String>,
    pub(crate) sender: Option<String>,
    pub(crate) recipient: Option<String>,
    pub(crate) subject: Option<String>,
    pub(crate) message_id: Option<String>,
    pub(crate) action: Option<String>,
    /// Unix seconds, inclusive.
    pub(crate) since: Option<i64>,
    /// Unix seconds, exclusive.
    pub(crate) until: Option<i64>,
    /// Only messages still held in quarantine.
    pub(crate) held_only: bool,
    /// 0-based.
    pub(crate) page: u32,
    pub(crate) per_page: u32,
}

/// One row of a search result.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub(crate) struct Summary {
    /// The queue id (the id of every page and API call).
    pub(crate) id: String,
    /// Unix seconds.
    pub(crate) received: i64,
    pub(crate) tenant: String,
    pub(crate) direction: String,
    pub(crate) sender: String,
    pub(crate) recipients: Vec<String>,
    pub(crate) from: String,
    pub(crate) subject: String,
    pub(crate) message_id: String,
    pub(crate) action: String,
    pub(crate) score: f64,
    pub(crate) size: u64,
    /// Still in quarantine (can be released or deleted).
    pub(crate) held: bool,
}

/// A search result page.
#[derive(Debug, Clone, Serialize, Default)]
pub(crate) struct Page {
    pub(crate) items: Vec<Summary>,
    /// Whether a next page exists.
    pub(crate) more: bool,
}

/// A check's finding, as the verdict and the store keep it (with the action
/// it forced, if any: a forced quarantine often has score 0).
pub(crate) use crate::message::verdict::Finding;

/// One delivery attempt's outcome for one recipient.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub(crate) struct Delivery {
    pub(crate) recipient: String,
    pub(crate) host: String,
    pub(crate) reply: String,
    /// Unix seconds.
    pub(crate) at: i64,
    /// "delivered" | "deferred" | "failed" | "released" ...
    pub(crate) outcome: String,
}

/// Everything recorded about one message, plus its bytes while it is held.
#[derive(Debug, Clone)]
pub(crate) struct Record {
    pub(crate) summary: Summary,
    pub(crate) client: String,
    pub(crate) tls: String,
    pub(crate) findings: Vec<Finding>,
    /// Checks that gave no answer, as `check: error` (a policy may
    /// quarantine on such a failure, with no finding at all).
    pub(crate) failures: Vec<String>,
    pub(crate) deliveries: Vec<Delivery>,
    /// Recipients a held message was already released to.
    pub(crate) released_to: Vec<String>,
    /// The message as received (only while held; never served to a browser as is).
    pub(crate) raw: Option<Vec<u8>>,
}

/// An administrative change to one message.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Change {
    /// Deliver after all: to every recipient (`None`) or to the chosen ones.
    Release {
        recipients: Option<Vec<String>>,
    },
    Delete,
    /// Release to all and put the envelope sender on the tenant's allow list.
    ReleaseAndAllow,
    /// Record that it was not spam (feedback; the message stays where it is).
    NotSpam,
}

impl Change {
    pub(crate) fn name(&self) -> &'static str {
        match self {
            Change::Release { .. } => "release",
            Change::Delete => "delete",
            Change::ReleaseAndAllow => "release-and-allow",
            Change::NotSpam => "not-spam",
        }
    }
}

/// Who does something, from where, through what.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Actor {
    /// The account name, or `digest:<recipient>` for a digest link.
    pub(crate) name: String,
    pub(crate) from: IpAddr,
    /// "web", "api" or "digest".
    pub(crate) via: &'static str,
}

/// An audit record of something that changed no message (a login, a logout, a refused attempt).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Audit {
    pub(crate) actor: Actor,
    /// e.g. "login", "login-failed", "logout".
    pub(crate) what: String,
    pub(crate) detail: String,
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum BackendError {
    /// No such message, or not in a state the change applies to.
    #[error("{0}")]
    NotApplicable(String),
    /// The store failed; the change may be retried.
    #[error("store: {0}")]
    Store(String),
}

#[async_trait::async_trait]
pub(crate) trait Backend: Send + Sync {
    async fn search(&self, query: &Query) -> Result<Page, BackendError>;
    /// The record of one message, of any tenant (the caller scopes).
    async fn record(&self, id: &str) -> Result<Option<Record>, BackendError>;
    /// Applies `change` and writes its audit record; returns what happened, for the page.
    async fn apply(&self, id: &str, change: &Change, actor: &Actor) -> Result<String, BackendError>;
    async fn audit(&self, audit: &Audit) -> Result<(), BackendError>;
    /// Marks a digest link's nonce used; `false` when it was used before.
    /// `expires` (Unix seconds) lets the store forget it afterwards.
    async fn consume_nonce(&self, nonce: &str, expires: i64) -> Result<bool, BackendError>;
}
