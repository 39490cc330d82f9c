//! The values the store keeps and answers with: message events, delivery
//! outcomes, search queries and their answers, quarantine entries, audit
//! records, the actor of an administrative change and the tenant scope of a
//! reader.
//!
//! Plain data, serialisable to JSON (the CLI's `--json` and the web API print
//! them as they are). Times are seconds since the Unix epoch (UTC).
//! Addresses are kept as given, and compared in lower case.

use serde::{Deserialize, Serialize};

use crate::message::auth::AuthResults;
use crate::message::verdict::Finding;

/// What one message was and what was decided about it: one record per
/// message, stored as one row per recipient.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EventRecord {
    pub queue_id: String,
    /// When the verdict was reached.
    pub time: i64,
    /// The gateway node that recorded it (`[store] node`; the host name by default).
    pub node: String,
    pub tenant: String,
    /// `inbound` or `outbound` (as `message::envelope::Direction` prints it).
    pub direction: String,
    /// The `Message-ID` field, angle brackets removed ("" when absent).
    pub message_id: String,
    /// EXO's `X-MS-Exchange-CrossTenant-Network-Message-Id` ("" when absent).
    pub network_message_id: String,
    /// The envelope sender (`MAIL FROM`; "" for the null sender).
    pub mail_from: String,
    /// The envelope recipients.
    pub recipients: Vec<String>,
    /// The address of the `From` field.
    pub header_from: String,
    pub subject: String,
    pub size: u64,
    pub client_ip: String,
    pub helo: String,
    /// Negotiated TLS version and cipher, when the client used TLS.
    pub tls: Option<String>,
    /// Every finding of every check.
    pub findings: Vec<Finding>,
    /// Checks that failed (timeouts, errors), by name.
    pub failures: Vec<String>,
    pub score: f64,
    /// What the policy decided (`deliver`, `junk`, `quarantine`, `reject`).
    pub verdict: String,
    /// What was carried out: the verdict's action when enforced, `deliver`
    /// in detect mode, `monitor` in monitor mode, `tempfail` when a check
    /// failed and the policy asked for a retry, `allowed` when the tenant's
    /// allow list overrode a score verdict.
    pub action: String,
    /// Sender authentication's results (the original sender, spf, every
    /// DKIM signature, dmarc with its policy, arc), when the policy has `auth`,
    /// `dnsbl` or `rspamd`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<AuthResults>,
    /// DNSBL listings: the reasons of the `dnsbl-*` findings (zone, what was
    /// listed, the answer), derived from `findings`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub listings: Vec<String>,
}

/// The DNSBL listings among `findings` (the `dnsbl` check's `dnsbl-*` tags).
pub(crate) fn listings_of(findings: &[Finding]) -> Vec<String> {
    findings
        .iter()
        .filter(|f| f.tag.starts_with("dnsbl-"))
        .map(|f| f.reason.clone())
        .collect()
}

/// One delivery attempt's result for one recipient.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryOutcome {
    pub time: i64,
    /// `delivered`, `deferred`, `bounced` (or `expired`).
    pub result: String,
    /// The downstream host that answered ("" when none was reached).
    pub host: String,
    /// The downstream's reply (one line).
    pub reply: String,
}

/// Whose messages a reader may see: a global administrator sees all, a
/// tenant administrator only the tenant's. A message outside the scope is
/// answered as not found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Scope {
    All,
    Tenant(String),
}

impl Scope {
    /// Whether a record of `tenant` is visible.
    pub fn allows(&self, tenant: &str) -> bool {
        match self {
            Scope::All => true,
            Scope::Tenant(t) => t == tenant,
        }
    }

    pub(crate) fn tenant(&self) -> Option<&str> {
        match self {
            Scope::All => None,
            Scope::Tenant(t) => Some(t),
        }
    }
}

/// A search over the events. Every field narrows the result; `None`/empty
/// means "any". Results are newest first, `limit` at a time (1..=1000,
/// default 50), skipping `offset`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Query {
    pub scope: Scope,
    /// Envelope sender or `From` address: a whole address, or `@domain`.
    pub sender: Option<String>,
    /// A recipient: a whole address, or `@domain`.
    pub rcpt: Option<String>,
    /// Words of the subject (all must occur, any order, whole words).
    pub subject: Option<String>,
    pub message_id: Option<String>,
    pub network_message_id: Option<String>,
    pub queue_id: Option<String>,
    /// The action carried out (`deliver`, `junk`, `quarantine`, ...).
    pub action: Option<String>,
    /// Inclusive lower bound on `time`.
    pub since: Option<i64>,
    /// Exclusive upper bound on `time`.
    pub until: Option<i64>,
    pub limit: u32,
    pub offset: u32,
}

impl Query {
    /// Everything in `scope`, newest first, the default page size.
    pub fn new(scope: Scope) -> Query {
        Query {
            scope,
            sender: None,
            rcpt: None,
            subject: None,
            message_id: None,
            network_message_id: None,
            queue_id: None,
            action: None,
            since: None,
            until: None,
            limit: 50,
            offset: 0,
        }
    }

    pub(crate) fn page(&self) -> (u32, u32) {
        (self.limit.clamp(1, 1000), self.offset)
    }
}

/// One line of a search result: one message and recipient.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventSummary {
    /// The store's id of this record (for [`Store::event`](super::Store::event)).
    pub id: i64,
    pub time: i64,
    pub queue_id: String,
    pub tenant: String,
    pub direction: String,
    pub mail_from: String,
    pub header_from: String,
    pub rcpt: String,
    pub subject: String,
    pub size: u64,
    pub score: f64,
    pub action: String,
    /// The latest delivery result for this recipient, if any (`delivered`, `deferred`, `bounced`).
    pub delivery: Option<String>,
}

/// One record in full: the message, its findings and every delivery outcome
/// of this recipient.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventDetail {
    pub id: i64,
    pub rcpt: String,
    pub event: EventRecord,
    pub deliveries: Vec<DeliveryOutcome>,
}

/// Where a quarantined message stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum QuarantineState {
    /// Held: nothing delivered yet (or only to some recipients; see `released`).
    Held,
    /// Released to every recipient.
    Released,
    /// Deleted by an administrator.
    Deleted,
    /// Removed by retention or the size cap.
    Expired,
}

impl QuarantineState {
    pub fn as_str(self) -> &'static str {
        match self {
            QuarantineState::Held => "held",
            QuarantineState::Released => "released",
            QuarantineState::Deleted => "deleted",
            QuarantineState::Expired => "expired",
        }
    }

    pub(crate) fn parse(s: &str) -> QuarantineState {
        match s {
            "released" => QuarantineState::Released,
            "deleted" => QuarantineState::Deleted,
            "expired" => QuarantineState::Expired,
            _ => QuarantineState::Held,
        }
    }
}

/// A quarantined message as the index knows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QuarantineEntry {
    /// Its queue id.
    pub id: String,
    pub time: i64,
    pub node: String,
    pub tenant: String,
    pub mail_from: String,
    pub recipients: Vec<String>,
    pub header_from: String,
    pub subject: String,
    pub message_id: String,
    /// Size of the message as received.
    pub size: u64,
    pub score: f64,
    pub findings: Vec<Finding>,
    pub state: QuarantineState,
    /// Recipients it was released to so far.
    pub released: Vec<String>,
}

/// A search over the quarantine (newest first).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QuarantineQuery {
    pub scope: Scope,
    /// Only entries in this state (`None`: held ones only).
    pub state: Option<QuarantineState>,
    /// Envelope sender or `From` address: a whole address, or `@domain`.
    pub sender: Option<String>,
    pub rcpt: Option<String>,
    /// Words of the subject.
    pub subject: Option<String>,
    /// The `Message-ID`, with or without its angle brackets (exact match).
    pub message_id: Option<String>,
    /// Quarantined at or after (Unix seconds).
    pub since: Option<i64>,
    /// Quarantined before (Unix seconds).
    pub until: Option<i64>,
    pub limit: u32,
    pub offset: u32,
}

impl QuarantineQuery {
    pub fn new(scope: Scope) -> QuarantineQuery {
        QuarantineQuery {
            scope,
            state: None,
            sender: None,
            rcpt: None,
            subject: None,
            message_id: None,
            since: None,
            until: None,
            limit: 50,
            offset: 0,
        }
    }
}

/// A held message with its bytes: `body` exactly as received, `prefix` the
/// header fields exogate put in front (the stamp), `skips` the byte ranges of
/// `body` the stamp leaves out (forged fields of ours).
#[derive(Debug, Clone)]
pub struct HeldMessage {
    pub entry: QuarantineEntry,
    pub meta: crate::spool::format::Meta,
    pub prefix: Vec<u8>,
    pub body: Vec<u8>,
}

/// What a release did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Released {
    /// The queue id of the copy put in the delivery queue.
    pub copy_id: String,
    pub recipients: Vec<String>,
    /// The node whose queue the copy is in.
    pub node: String,
}

/// Who made an administrative change, and from where.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actor {
    /// An account name (web), or `cli:<user>`, or `digest:<recipient>`.
    pub name: String,
    /// The client address (web), or `local` for the command line.
    pub from: String,
}

/// One administrative action.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord {
    pub time: i64,
    pub actor: String,
    pub from: String,
    /// What was done: `release`, `delete`, `allow-sender`, `not-spam`,
    /// `login`, `login-failed`, `view`, ... (free text, short).
    pub action: String,
    /// The tenant concerned ("" for none).
    pub tenant: String,
    /// Queue ids of the messages concerned.
    pub messages: Vec<String>,
    /// Anything else worth keeping (recipients, the address allowed, ...).
    pub detail: String,
}

impl AuditRecord {
    /// A record of `action` by `actor` now (the store's clock fills `time` when it is 0).
    pub fn new(actor: &Actor, action: &str, tenant: &str, messages: Vec<String>, detail: String) -> AuditRecord {
        AuditRecord {
            time: 0,
            actor: actor.name.clone(),
            from: actor.from.clone(),
            action: action.to_string(),
            tenant: tenant.to_string(),
            messages,
            detail,
        }
    }
}

/// One entry of a tenant's allow list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AllowEntry {
    pub tenant: String,
    /// A whole address or `@domain`, lower case.
    pub sender: String,
    pub added_by: String,
    pub time: i64,
}

/// Counts and sizes, for the metrics and the web page's header.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuarantineUsage {
    pub held: u64,
    /// Bytes of held messages.
    pub bytes: u64,
    /// `[store] quarantine_max_size`.
    pub cap: u64,
}
