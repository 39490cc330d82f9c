//! `exogate events search|show|audit` and `exogate quarantine list|show|release|
//! delete|allow|not-spam|export`: the store, read and changed from the
//! command line, the same store the gateway (and the web page) use, on this
//! node or, with PostgreSQL, any node.
//!
//! Every change writes an audit record with the actor `cli:<user>` from
//! `local`. Before reading the quarantine, quarantined files the index has
//! not caught up with are indexed (a stopped gateway's last messages too).

use std::path::Path;

use clap::{Args, Subcommand};
use serde::Serialize;

use crate::app::AppError;
use crate::app::control;
use crate::config::Config;
use crate::spool::{LockError, StateLock};
use crate::store::{
    Actor, EventDetail, EventSummary, QuarantineEntry, QuarantineQuery, QuarantineState, Query, Released, Scope, Store,
    time,
};

#[derive(Subcommand, Clone)]
pub enum EventsAction {
    /// Message history, newest first: one line per message and recipient.
    Search(Box<SearchArgs>),
    /// One record in full: findings and every delivery outcome.
    Show {
        id: i64,
        #[arg(long)]
        json: bool,
    },
    /// The audit trail: who did what to which messages, newest first.
    Audit {
        #[arg(long)]
        tenant: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: u32,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Args, Clone, Default)]
pub struct SearchArgs {
    /// Only this tenant (portal name).
    #[arg(long)]
    pub tenant: Option<String>,
    /// Envelope sender or From address (user@example.org or @example.org).
    #[arg(long)]
    pub sender: Option<String>,
    /// Recipient (user@contoso.com or @contoso.com).
    #[arg(long)]
    pub rcpt: Option<String>,
    /// Words of the subject (all of them, any order).
    #[arg(long)]
    pub subject: Option<String>,
    #[arg(long)]
    pub message_id: Option<String>,
    /// EXO's X-MS-Exchange-CrossTenant-Network-Message-Id.
    #[arg(long)]
    pub network_message_id: Option<String>,
    #[arg(long)]
    pub queue_id: Option<String>,
    /// What was done: deliver, junk, quarantine, reject, tempfail, monitor, released.
    #[arg(long)]
    pub action: Option<String>,
    /// From this time: "24h" / "7d" ago, "2026-12-01", "2026-12-01T08:00:00Z" or Unix seconds.
    #[arg(long)]
    pub since: Option<String>,
    /// Before this time (same forms as --since).
    #[arg(long)]
    pub until: Option<String>,
    #[arg(long, default_value_t = 50)]
    pub limit: u32,
    #[arg(long, default_value_t = 0)]
    pub offset: u32,
    #[arg(long)]
    pub json: bool,
}

#[derive(Subcommand, Clone)]
pub enum QuarantineAction {
    /// Held messages, newest first.
    List {
        #[arg(long)]
        tenant: Option<String>,
        #[arg(long)]
        sender: Option<String>,
        #[arg(long)]
        rcpt: Option<String>,
        #[arg(long)]
        subject: Option<String>,
        /// held (default), released, deleted or expired.
        #[arg(long)]
        state: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: u32,
        #[arg(long)]
        json: bool,
    },
    /// The entry, its findings and the header as received.
    Show {
        id: String,
        #[arg(long)]
        json: bool,
    },
    /// Deliver a copy after all, stamped as delivered (all recipients still held, or --to).
    Release {
        id: String,
        /// Only these recipients (repeatable).
        #[arg(long = "to")]
        to: Vec<String>,
        #[arg(long)]
        json: bool,
    },
    /// Delete a held message for good.
    Delete { id: String },
    /// Release a held message and put its sender on the tenant's allow list;
    /// or, with --tenant and --sender, only add to the allow list.
    Allow {
        id: Option<String>,
        #[arg(long)]
        tenant: Option<String>,
        /// user@example.org or @example.org.
        #[arg(long)]
        sender: Option<String>,
    },
    /// Record "not spam" feedback on a held message.
    NotSpam { id: String },
    /// Write the held message as it was stamped to standard output.
    Export { id: String },
}

/// The one who runs the command line.
fn actor() -> Actor {
    let user = std::env::var("SUDO_USER")
        .or_else(|_| std::env::var("USER"))
        .unwrap_or_else(|_| "unknown".into());
    Actor {
        name: format!("cli:{user}"),
        from: "local".into(),
    }
}

/// Carries out a quarantine release or delete the way every command-line
/// change to the state directory is made: under its lock when no gateway
/// runs, else by the running gateway through its control socket (the
/// released copy then enters the queue of the process that owns it, never a
/// file written behind its back). Answers the change's text and, when it
/// went through the gateway, a note saying so.
async fn carry_out(
    state_dir: &Path,
    store: &Store,
    change: &control::Change,
) -> Result<(String, &'static str), AppError> {
    match StateLock::acquire(state_dir) {
        Ok(lock) => {
            let done = control::apply_store(store, change).await;
            drop(lock);
            Ok((done?, ""))
        }
        Err(LockError::Held { .. }) => Ok((control::request(state_dir, change)?, control::VIA_GATEWAY_NOTE)),
        Err(e) => Err(e.into()),
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, AppError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| AppError::Other(format!("cannot start the async runtime: {e}")))
}

async fn open(config: &Path) -> Result<(Config, Store), AppError> {
    let cfg = Config::load(config)?;
    let store = Store::open(&cfg.store, &cfg.server.state_dir).await?;
    Ok((cfg, store))
}

fn scope(tenant: Option<String>) -> Scope {
    tenant.filter(|t| !t.is_empty()).map_or(Scope::All, Scope::Tenant)
}

fn json(v: &impl Serialize) -> String {
    let mut s = serde_json::to_string_pretty(v).unwrap_or_default();
    s.push('\n');
    s
}

pub fn events_command(config: &Path, action: EventsAction) -> Result<super::Output, AppError> {
    runtime()?.block_on(async {
        let (_, store) = open(config).await?;
        match action {
            EventsAction::Search(a) => {
                let now = store.now();
                let mut q = Query::new(scope(a.tenant));
                q.sender = a.sender;
                q.rcpt = a.rcpt;
                q.subject = a.subject;
                q.message_id = a.message_id;
                q.network_message_id = a.network_message_id;
                q.queue_id = a.queue_id;
                q.action = a.action;
                q.since = a.since.as_deref().map(|t| parse_time(t, now, "--since")).transpose()?;
                q.until = a.until.as_deref().map(|t| parse_time(t, now, "--until")).transpose()?;
                q.limit = a.limit;
                q.offset = a.offset;
                let found = store.search(&q).await?;
                Ok(if a.json {
                    json(&found).into()
                } else {
                    events_text(&found).into()
                })
            }
            EventsAction::Audit {
                tenant,
                limit,
                json: as_json,
            } => {
                let records = store.audit_list(&scope(tenant), limit, 0).await?;
                if as_json {
                    return Ok(json(&records).into());
                }
                let mut out = String::new();
                for a in &records {
                    out.push_str(&format!(
                        "{} UTC  {:<16} {:<16} {:<14} {:<10} {}  {}\n",
                        time::format(a.time),
                        a.actor,
                        a.from,
                        a.action,
                        a.tenant,
                        a.messages.join(","),
                        a.detail
                    ));
                }
                out.push_str(&format!("{} record(s)\n", records.len()));
                Ok(out.into())
            }
            EventsAction::Show { id, json: as_json } => {
                let detail = store
                    .event(&Scope::All, id)
                    .await?
                    .ok_or_else(|| AppError::Other(format!("no event {id}")))?;
                Ok(if as_json {
                    json(&detail).into()
                } else {
                    event_text(&detail).into()
                })
            }
        }
    })
}

pub fn quarantine_command(config: &Path, action: QuarantineAction) -> Result<super::Output, AppError> {
    runtime()?.block_on(async {
        let (cfg, store) = open(config).await?;
        store.reconcile().await?;
        let all = Scope::All;
        match action {
            QuarantineAction::List {
                tenant,
                sender,
                rcpt,
                subject,
                state,
                limit,
                json: as_json,
            } => {
                let mut q = QuarantineQuery::new(scope(tenant));
                q.sender = sender;
                q.rcpt = rcpt;
                q.subject = subject;
                q.limit = limit;
                q.state = match state.as_deref() {
                    None | Some("held") => None,
                    Some("released") => Some(QuarantineState::Released),
                    Some("deleted") => Some(QuarantineState::Deleted),
                    Some("expired") => Some(QuarantineState::Expired),
                    Some(other) => {
                        return Err(AppError::Other(format!(
                            "--state: expected held, released, deleted or expired, found \"{other}\""
                        )));
                    }
                };
                let found = store.quarantine_list(&q).await?;
                if as_json {
                    return Ok(json(&found).into());
                }
                let usage = store.quarantine_usage().await?;
                let mut out = String::new();
                for e in &found {
                    out.push_str(&quarantine_line(e));
                }
                out.push_str(&format!(
                    "{} message(s) shown; {} held, {} of {} bytes used\n",
                    found.len(),
                    usage.held,
                    usage.bytes,
                    usage.cap
                ));
                Ok(out.into())
            }
            QuarantineAction::Show { id, json: as_json } => {
                let held = store.quarantine_message(&all, &id).await;
                let entry = match &held {
                    Ok(h) => h.entry.clone(),
                    Err(_) => store
                        .quarantine_get(&all, &id)
                        .await?
                        .ok_or_else(|| AppError::Other(format!("{id} is not in the quarantine")))?,
                };
                if as_json {
                    return Ok(json(&entry).into());
                }
                let mut out = quarantine_entry_text(&entry);
                match held {
                    Ok(h) => {
                        let end = crate::message::headers::header_len(&h.body);
                        out.push_str(&format!(
                            "--- stamp\n{}--- header as received\n{}",
                            String::from_utf8_lossy(&h.prefix),
                            String::from_utf8_lossy(&h.body[..end])
                        ));
                    }
                    Err(e) => out.push_str(&format!("--- bytes not available: {e}\n")),
                }
                Ok(out.into())
            }
            QuarantineAction::Release { id, to, json: as_json } => {
                let change = control::Change::Release {
                    id: id.clone(),
                    to,
                    actor: actor().name,
                };
                let (text, via) = carry_out(&cfg.server.state_dir, &store, &change).await?;
                store.flush().await;
                let released: Released = serde_json::from_str(&text)
                    .map_err(|e| AppError::Other(format!("unexpected answer to a release ({e}): {text}")))?;
                Ok(if as_json {
                    json(&released).into()
                } else {
                    format!(
                        "released {id} to {}: queued as {} on {}{via}\n",
                        released.recipients.join(", "),
                        released.copy_id,
                        released.node
                    )
                    .into()
                })
            }
            QuarantineAction::Delete { id } => {
                let change = control::Change::QuarantineDelete {
                    id: id.clone(),
                    actor: actor().name,
                };
                let (_, via) = carry_out(&cfg.server.state_dir, &store, &change).await?;
                Ok(format!("deleted {id}{via}\n").into())
            }
            QuarantineAction::NotSpam { id } => {
                store.not_spam(&all, &id, &actor()).await?;
                Ok(format!("recorded {id} as not spam\n").into())
            }
            QuarantineAction::Allow { id, tenant, sender } => match (id, tenant, sender) {
                (Some(id), None, None) => {
                    let entry = store
                        .quarantine_get(&all, &id)
                        .await?
                        .ok_or_else(|| AppError::Other(format!("{id} is not in the quarantine")))?;
                    if entry.mail_from.is_empty() {
                        return Err(AppError::Other(format!("{id} has the null sender: nothing to allow")));
                    }
                    let a = actor();
                    store.allow_sender(&entry.tenant, &entry.mail_from, &a).await?;
                    let change = control::Change::Release {
                        id: id.clone(),
                        to: Vec::new(),
                        actor: a.name,
                    };
                    let (text, via) = carry_out(&cfg.server.state_dir, &store, &change).await?;
                    store.flush().await;
                    let released: Released = serde_json::from_str(&text)
                        .map_err(|e| AppError::Other(format!("unexpected answer to a release ({e}): {text}")))?;
                    Ok(format!(
                        "allowed {} for tenant {}; released {id} as {}{via}\n",
                        entry.mail_from, entry.tenant, released.copy_id
                    )
                    .into())
                }
                (None, Some(tenant), Some(sender)) => {
                    store.allow_sender(&tenant, &sender, &actor()).await?;
                    Ok(format!("allowed {sender} for tenant {tenant}\n").into())
                }
                _ => Err(AppError::Other(
                    "allow: give a quarantined message's id, or --tenant and --sender".into(),
                )),
            },
            QuarantineAction::Export { id } => {
                let h = store.quarantine_message(&all, &id).await?;
                let stamp = crate::message::stamp::Stamp::from_stored(h.prefix, &h.meta.skips);
                Ok(super::Output::Bytes(stamp.apply(&h.body)))
            }
        }
    })
}

/// A point in time from the command line: a duration ago ("24h", "7d"), a
/// UTC date or date-time (RFC 3339 with `Z`), or Unix seconds.
pub(crate) fn parse_time(text: &str, now: i64, flag: &str) -> Result<i64, AppError> {
    let t = text.trim();
    let bad = || {
        AppError::Other(format!(
            "{flag}: expected \"24h\", \"7d\", \"2026-12-01\", \"2026-12-01T08:00:00Z\" or Unix seconds, found \"{text}\""
        ))
    };
    if let Ok(secs) = t.parse::<i64>() {
        return Ok(secs);
    }
    if let Ok(d) = crate::config::reader::parse_duration(t) {
        return Ok(now - d.as_secs() as i64);
    }
    time::parse(t).ok_or_else(bad)
}

fn events_text(found: &[EventSummary]) -> String {
    let mut out = String::new();
    for e in found {
        out.push_str(&format!(
            "{:>8}  {}  {}  {:<10} {:<10} {:>6.1}  <{}> -> <{}>  {:?}{}\n",
            e.id,
            time::format(e.time),
            e.queue_id,
            e.tenant,
            e.action,
            e.score,
            e.mail_from,
            e.rcpt,
            e.subject,
            e.delivery.as_deref().map(|d| format!("  [{d}]")).unwrap_or_default()
        ));
    }
    out.push_str(&format!("{} record(s)\n", found.len()));
    out
}

fn event_text(d: &EventDetail) -> String {
    let e = &d.event;
    let mut out = format!(
        "id:                 {}\ntime:               {} UTC\nnode:               {}\nqueue id:           {}\ntenant:             {} ({})\n\
         message-id:         {}\nnetwork-message-id: {}\nmail from:          <{}>\nrecipient:          <{}> (of {})\n\
         from:               {}\nsubject:            {:?}\nsize:               {}\nclient:             {} helo {:?} {}\n\
         verdict:            {} score {:.1}\naction:             {}\n",
        d.id,
        time::format(e.time),
        e.node,
        e.queue_id,
        e.tenant,
        e.direction,
        e.message_id,
        e.network_message_id,
        e.mail_from,
        d.rcpt,
        e.recipients.len(),
        e.header_from,
        e.subject,
        e.size,
        e.client_ip,
        e.helo,
        e.tls.as_deref().map_or("no TLS".to_string(), |t| format!("TLS {t}")),
        e.verdict,
        e.score,
        e.action,
    );
    for f in &e.findings {
        out.push_str(&format!(
            "finding:            {}:{}({:.1}) {}\n",
            f.check, f.tag, f.score, f.reason
        ));
    }
    for f in &e.failures {
        out.push_str(&format!("check failed:       {f}\n"));
    }
    for o in &d.deliveries {
        out.push_str(&format!(
            "delivery:           {} UTC {} {} {}\n",
            time::format(o.time),
            o.result,
            if o.host.is_empty() { "-" } else { &o.host },
            o.reply
        ));
    }
    out
}

fn quarantine_line(e: &QuarantineEntry) -> String {
    let top = e
        .findings
        .iter()
        .max_by(|a, b| a.score.total_cmp(&b.score))
        .map(|f| format!("{}:{}", f.check, f.tag))
        .unwrap_or_default();
    format!(
        "{}  {}  {:<10} {:>6.1}  <{}> -> {}  {:?}  {}\n",
        e.id,
        time::format(e.time),
        e.tenant,
        e.score,
        e.mail_from,
        e.recipients.join(","),
        e.subject,
        top
    )
}

fn quarantine_entry_text(e: &QuarantineEntry) -> String {
    let mut out = format!(
        "id:         {}\nstate:      {}\ntime:       {} UTC\nnode:       {}\ntenant:     {}\nmail from:  <{}>\n\
         recipients: {}\nreleased:   {}\nfrom:       {}\nsubject:    {:?}\nmessage-id: {}\nsize:       {}\nscore:      {:.1}\n",
        e.id,
        e.state.as_str(),
        time::format(e.time),
        e.node,
        e.tenant,
        e.mail_from,
        e.recipients.join(", "),
        e.released.join(", "),
        e.header_from,
        e.subject,
        e.message_id,
        e.size,
        e.score
    );
    for f in &e.findings {
        out.push_str(&format!(
            "finding:    {}:{}({:.1}) {}\n",
            f.check, f.tag, f.score, f.reason
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_line_times_parse() {
        assert_eq!(parse_time("2026-12-05", 0, "--since").unwrap(), 1_796_428_800);
        assert_eq!(parse_time("2026-12-05T10:00:00Z", 0, "--since").unwrap(), 1_796_464_800);
        assert_eq!(parse_time("2026-12-05 10:00", 0, "--since").unwrap(), 1_796_464_800);
        assert_eq!(parse_time("7d", 1_000_000, "--since").unwrap(), 1_000_000 - 7 * 86400);
        assert_eq!(parse_time("1796464800", 0, "--since").unwrap(), 1_796_464_800);
        for bad in ["yesterday", "2026-02-30"] {
            let e = parse_time(bad, 0, "--since").unwrap_err().to_string();
            assert!(e.starts_with("--since: expected"), "{e}");
        }
    }
}
