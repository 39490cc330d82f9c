//! `exogate queue …` and `exogate quarantine …`: listing, showing, exporting,
//! and steering queued and quarantined messages on the files of a running or
//! stopped gateway.
//!
//! Selection: one or more ids, or filters (tenant, sender, destination, age)
//! over every message of the area; a bulk change without a selector is
//! refused, and `--dry-run` lists what would change. Every listing has
//! `--json` (one JSON document on standard output).
//!
//! Every change to the files goes through `submit`, the one place that
//! writes: deleting, moving between areas (hold, release) and waking the
//! scheduler (`flush [ID…]`, `rescan`), under the state directory's lock when
//! no gateway runs, else through the running gateway's control socket. A
//! message being delivered at that very moment may still be delivered once
//! (never lost).

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use clap::{Args, Subcommand};
use serde::Serialize;

use crate::app::AppError;
use crate::app::control;
use crate::cli::Output;
use crate::delivery::route::RouteKey;
use crate::message::envelope::domain_of;
use crate::spool::format::Meta;
use crate::spool::{Area, LockError, Spool, StateEvent, StateLock, valid_id};

#[derive(Subcommand, Clone)]
pub enum SpoolAction {
    /// One line per message: id, age, tenant, sender, recipients, state
    /// (--json: per recipient state, attempts, last reply, next retry).
    List {
        #[command(flatten)]
        select: Select,
        #[arg(long)]
        json: bool,
    },
    /// Envelope, verdict, history and header of one message.
    Show {
        id: String,
        #[arg(long)]
        json: bool,
    },
    /// Delete messages for good (ids, or filters).
    Delete {
        #[command(flatten)]
        select: Select,
        #[arg(long)]
        dry_run: bool,
    },
    /// Write the message exactly as it will be relayed (stamp included) to standard output.
    Export { id: String },
    /// Queue: retry now (every message, or the ids/filters given). Quarantine: not available.
    Flush {
        #[command(flatten)]
        select: Select,
        #[arg(long)]
        dry_run: bool,
    },
    /// Queue: keep messages from delivery until released (ids, or filters).
    Hold {
        #[command(flatten)]
        select: Select,
        #[arg(long)]
        dry_run: bool,
    },
    /// Queue: deliver held messages again. Quarantine: deliver after all.
    Release {
        #[command(flatten)]
        select: Select,
        #[arg(long)]
        dry_run: bool,
    },
    /// Counts by tenant and by destination per age bucket (like Postfix's qshape).
    Summary {
        #[arg(long)]
        json: bool,
    },
}

/// Which messages a command applies to.
#[derive(Args, Clone, Default)]
pub struct Select {
    /// Queue ids.
    pub ids: Vec<String>,
    /// Messages of this tenant (portal name).
    #[arg(long)]
    pub tenant: Option<String>,
    /// Messages from this envelope sender (address, or @domain).
    #[arg(long)]
    pub sender: Option<String>,
    /// Messages going to this destination: a tenant portal, an MX domain or a recipient domain.
    #[arg(long)]
    pub destination: Option<String>,
    /// Messages older than this ("30m", "2h", "1d").
    #[arg(long, value_parser = parse_age)]
    pub older_than: Option<Duration>,
}

fn parse_age(text: &str) -> Result<Duration, String> {
    crate::config::reader::parse_duration(text)
}

impl Select {
    fn is_empty(&self) -> bool {
        self.ids.is_empty()
            && self.tenant.is_none()
            && self.sender.is_none()
            && self.destination.is_none()
            && self.older_than.is_none()
    }

    fn matches(&self, id: &str, meta: &Meta, now: i64) -> bool {
        (self.ids.is_empty() || self.ids.iter().any(|i| i == id))
            && self.tenant.as_ref().is_none_or(|t| meta.tenant.eq_ignore_ascii_case(t))
            && self
                .sender
                .as_ref()
                .is_none_or(|s| sender_matches(s, &meta.envelope.mail_from.to_string()))
            && self.destination.as_ref().is_none_or(|d| destination_matches(d, meta))
            && self
                .older_than
                .is_none_or(|age| now - meta.received >= age.as_secs() as i64)
    }
}

fn sender_matches(wanted: &str, sender: &str) -> bool {
    match wanted.strip_prefix('@') {
        Some(domain) => domain_of(sender).is_some_and(|d| d.eq_ignore_ascii_case(domain)),
        None => sender.eq_ignore_ascii_case(wanted),
    }
}

fn destination_matches(wanted: &str, meta: &Meta) -> bool {
    let key = RouteKey::of(meta).to_string();
    let target = key.split_once(':').map_or(key.as_str(), |(_, t)| t);
    key.eq_ignore_ascii_case(wanted)
        || target.eq_ignore_ascii_case(wanted)
        || meta
            .envelope
            .recipients
            .iter()
            .any(|r| r.address.domain_key().is_some_and(|d| d.eq_ignore_ascii_case(wanted)))
}

/// One file change the command line makes.
#[derive(Debug, Clone)]
enum Change {
    Delete(Area, String),
    Move {
        from: Area,
        to: Area,
        id: String,
    },
    /// Wake the scheduler with this order (see `Spool::flush_trigger`).
    Wake(String),
}

impl Change {
    /// The same change as the control socket knows it.
    fn to_control(&self) -> Result<control::Change, AppError> {
        Ok(match self {
            Change::Delete(Area::Quarantine, _)
            | Change::Move {
                from: Area::Quarantine, ..
            } => return Err(store_owned()),
            Change::Delete(area, id) => control::Change::Delete(*area, id.clone()),
            Change::Move {
                from: Area::Active,
                to: Area::Hold,
                id,
            } => control::Change::Hold(id.clone()),
            Change::Move {
                from: Area::Hold,
                to: Area::Active,
                id,
            } => control::Change::Unhold(id.clone()),
            Change::Move { from, to, .. } => {
                return Err(AppError::Other(format!("no such move: {from:?} to {to:?}")));
            }
            Change::Wake(order) => match order.split_whitespace().collect::<Vec<_>>().as_slice() {
                ["flush"] => control::Change::Flush,
                ["flush", ids @ ..] => control::Change::FlushIds(ids.iter().map(|i| i.to_string()).collect()),
                _ => control::Change::Rescan,
            },
        })
    }
}

/// Quarantined messages are the store's: its release stamps the copy, audits
/// and updates every node's index, which a file move here would skip.
fn store_owned() -> AppError {
    AppError::Other(
        "quarantined messages are released and deleted through the store: exogate quarantine release|delete".into(),
    )
}

/// Set when the changes went through a running gateway (said in the report).
static VIA_GATEWAY: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// The one place the command line changes spool files: under the state
/// directory's lock when no gateway runs, else through the running gateway's
/// control socket (one request per change; flush orders in slices that fit
/// a request line).
fn submit(state_dir: &Path, spool: &Spool, changes: &[Change]) -> Result<(), AppError> {
    if changes.is_empty() {
        return Ok(());
    }
    let mut requests = Vec::new();
    for c in changes {
        match c.to_control()? {
            control::Change::FlushIds(ids) => {
                requests.extend(ids.chunks(16).map(|part| control::Change::FlushIds(part.to_vec())));
            }
            other => requests.push(other),
        }
    }
    match StateLock::acquire(state_dir) {
        Ok(lock) => {
            for r in &requests {
                control::apply(spool, r)?;
            }
            drop(lock);
        }
        Err(LockError::Held { .. }) => {
            for r in &requests {
                control::request(state_dir, r)?;
            }
            VIA_GATEWAY.store(true, std::sync::atomic::Ordering::Relaxed);
        }
        Err(e) => return Err(e.into()),
    }
    Ok(())
}

/// Per recipient: what the history says.
#[derive(Serialize)]
struct RcptState {
    address: String,
    /// "pending", "delivered" or "failed".
    state: &'static str,
    attempts: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_reply: Option<String>,
    /// Unix seconds of the next attempt (pending recipients of a deferred message).
    #[serde(skip_serializing_if = "Option::is_none")]
    next_retry: Option<i64>,
}

#[derive(Serialize)]
struct Listed {
    id: String,
    /// "queued", "held" or "quarantined".
    area: &'static str,
    received: i64,
    age_s: i64,
    tenant: String,
    destination: String,
    sender: String,
    message_id: String,
    network_message_id: String,
    size: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    verdict: Option<String>,
    recipients: Vec<RcptState>,
}

fn area_name(area: Area) -> &'static str {
    match area {
        Area::Active => "queued",
        Area::Hold => "held",
        Area::Quarantine => "quarantined",
        Area::Reports => "report",
    }
}

fn describe(id: &str, area: Area, meta: &Meta, events: &[StateEvent], body_len: u64, now: i64) -> Listed {
    let mut attempts = 0;
    let mut last_error = None;
    let mut next = None;
    let mut finals: BTreeMap<usize, (&'static str, String)> = BTreeMap::new();
    for e in events {
        match e {
            StateEvent::Delivered { rcpt, reply } => {
                finals.insert(*rcpt, ("delivered", reply.clone()));
            }
            StateEvent::Failed { rcpt, reply } => {
                finals.insert(*rcpt, ("failed", reply.clone()));
            }
            StateEvent::Deferred {
                attempts: a,
                next: n,
                error,
            } => {
                attempts = *a;
                next = Some(*n);
                last_error = Some(error.clone());
            }
        }
    }
    let recipients = meta
        .envelope
        .recipients
        .iter()
        .enumerate()
        .map(|(i, r)| match finals.get(&i) {
            Some((state, reply)) => RcptState {
                address: r.address.to_string(),
                state,
                attempts: attempts.max(1),
                last_reply: Some(reply.clone()),
                next_retry: None,
            },
            None => RcptState {
                address: r.address.to_string(),
                state: "pending",
                attempts,
                last_reply: last_error.clone(),
                next_retry: if area == Area::Active { next } else { None },
            },
        })
        .collect();
    Listed {
        id: id.to_string(),
        area: area_name(area),
        received: meta.received,
        age_s: (now - meta.received).max(0),
        tenant: meta.tenant.clone(),
        destination: RouteKey::of(meta).to_string(),
        sender: meta.envelope.mail_from.to_string(),
        message_id: meta.ids.message_id.clone(),
        network_message_id: meta.ids.network_message_id.clone(),
        size: body_len,
        verdict: meta.verdict.as_ref().map(|v| format!("{} {:.1}", v.action, v.score)),
        recipients,
    }
}

/// The areas a listing covers: the queue lists its held messages too.
fn areas(area: Area) -> &'static [Area] {
    match area {
        Area::Active | Area::Hold => &[Area::Active, Area::Hold],
        Area::Quarantine => &[Area::Quarantine],
        Area::Reports => &[Area::Reports],
    }
}

/// The selected messages of `area` (and its held ones), oldest first; unreadable ones reported.
fn collect(spool: &Spool, area: Area, select: &Select, now: i64) -> Result<(Vec<Listed>, Vec<String>), AppError> {
    let mut out = Vec::new();
    let mut unreadable = Vec::new();
    for &a in areas(area) {
        for id in spool.list(a)? {
            match spool.entry(a, &id) {
                Ok(e) if select.matches(&id, &e.trailer.meta, now) => {
                    out.push(describe(&id, a, &e.trailer.meta, &e.events, e.trailer.body_len, now));
                }
                Ok(_) => {}
                Err(e) => unreadable.push(format!("{id}  unreadable: {e}")),
            }
        }
    }
    out.sort_by(|a, b| a.id.cmp(&b.id));
    Ok((out, unreadable))
}

fn json<T: Serialize>(value: &T) -> Output {
    Output::Text(serde_json::to_string_pretty(value).unwrap_or_default() + "\n")
}

fn list_text(listed: &[Listed], unreadable: &[String]) -> String {
    let mut out = String::new();
    for m in listed {
        let pending = m.recipients.iter().filter(|r| r.state == "pending").count();
        let attempts = m.recipients.iter().map(|r| r.attempts).max().unwrap_or(0);
        let state = match (m.area, attempts) {
            ("held", _) => "held".to_string(),
            (_, 0) => "new".to_string(),
            _ => format!(
                "deferred x{attempts}: {}",
                m.recipients
                    .iter()
                    .find(|r| r.state == "pending")
                    .and_then(|r| r.last_reply.clone())
                    .unwrap_or_default()
            ),
        };
        out.push_str(&format!(
            "{}  {:>6}s  {:<12} <{}> -> {} rcpt ({pending} pending)  {}  {}\n",
            m.id,
            m.age_s,
            m.tenant,
            m.sender,
            m.recipients.len(),
            m.verdict.clone().unwrap_or_default(),
            state
        ));
    }
    for u in unreadable {
        out.push_str(u);
        out.push('\n');
    }
    out.push_str(&format!("{} message(s)\n", listed.len() + unreadable.len()));
    out
}

/// The operations on a selection: which changes, and what to say.
fn steer(
    spool: &Spool,
    area: Area,
    select: &Select,
    dry_run: bool,
    verb: &str,
    now: i64,
    change: impl Fn(&Listed) -> Option<Change>,
) -> Result<(Vec<String>, Vec<Change>), AppError> {
    for id in &select.ids {
        if !valid_id(id) {
            return Err(AppError::Other(format!("\"{id}\" is not a queue id")));
        }
    }
    let (listed, _) = collect(spool, area, select, now)?;
    if !select.ids.is_empty() {
        for id in &select.ids {
            if !listed.iter().any(|m| &m.id == id) {
                return Err(AppError::Other(format!("no message {id} matches")));
            }
        }
    }
    let mut lines = Vec::new();
    let mut changes = Vec::new();
    for m in &listed {
        if let Some(c) = change(m) {
            lines.push(format!(
                "{}{verb} {}  {} <{}>",
                if dry_run { "would be " } else { "" },
                m.id,
                m.tenant,
                m.sender
            ));
            changes.push(c);
        }
    }
    Ok((lines, changes))
}

fn report(lines: Vec<String>, dry_run: bool, what: &str, tail: &str) -> Output {
    let mut out = lines.join("\n");
    if !out.is_empty() {
        out.push('\n');
    }
    out.push_str(&format!(
        "{} message(s) {}{what}{tail}{}\n",
        lines.len(),
        if dry_run { "would be " } else { "" },
        if VIA_GATEWAY.load(std::sync::atomic::Ordering::Relaxed) {
            " (through the running gateway)"
        } else {
            ""
        }
    ));
    Output::Text(out)
}

pub fn spool_command(config: &Path, area: Area, action: SpoolAction) -> Result<Output, AppError> {
    let cfg = crate::config::Config::load(config)?;
    let spool = Spool::open(&cfg.server.state_dir)?;
    let state_dir = cfg.server.state_dir.as_path();
    let now = crate::spool::now_unix();
    let check_id = |id: &str| {
        if valid_id(id) {
            Ok(())
        } else {
            Err(AppError::Other(format!("\"{id}\" is not a queue id")))
        }
    };
    let need_selector = |select: &Select, verb: &str| {
        if select.is_empty() {
            Err(AppError::Other(format!(
                "{verb} needs ids or a filter (--tenant, --sender, --destination, --older-than)"
            )))
        } else {
            Ok(())
        }
    };
    let queue_only = |verb: &str| {
        AppError::Other(if area == Area::Reports {
            "journal reports that could not be read are only kept: list, show, export or delete them".to_string()
        } else {
            format!("{verb} applies to the queue, not the quarantine")
        })
    };
    match action {
        SpoolAction::List { select, json: as_json } => {
            let (listed, unreadable) = collect(&spool, area, &select, now)?;
            if as_json {
                Ok(json(&listed))
            } else {
                Ok(Output::Text(list_text(&listed, &unreadable)))
            }
        }
        SpoolAction::Show { id, json: as_json } => {
            check_id(&id)?;
            let found = areas(area).iter().copied().find(|a| spool.path(*a, &id).exists());
            let a = found.ok_or_else(|| AppError::Other(format!("no message {id}")))?;
            let e = spool.entry(a, &id)?;
            if as_json {
                let listed = describe(&id, a, &e.trailer.meta, &e.events, e.trailer.body_len, now);
                return Ok(json(&serde_json::json!({
                    "message": listed,
                    "meta": e.trailer.meta,
                    "history": e.events,
                })));
            }
            let stored = spool.read(a, &id)?;
            let header_end = crate::message::headers::header_len(&stored.body);
            Ok(Output::Text(format!(
                "{}\n--- history\n{}\n--- stamp\n{}--- header as received\n{}",
                serde_json::to_string_pretty(&e.trailer.meta).unwrap_or_default(),
                e.events
                    .iter()
                    .map(|ev| serde_json::to_string(ev).unwrap_or_default())
                    .collect::<Vec<_>>()
                    .join("\n"),
                String::from_utf8_lossy(&stored.trailer.prefix),
                String::from_utf8_lossy(&stored.body[..header_end]),
            )))
        }
        SpoolAction::Export { id } => {
            check_id(&id)?;
            let found = areas(area).iter().copied().find(|a| spool.path(*a, &id).exists());
            let stored = spool.read(found.unwrap_or(area), &id)?;
            let stamp =
                crate::message::stamp::Stamp::from_stored(stored.trailer.prefix.clone(), &stored.trailer.meta.skips);
            Ok(Output::Bytes(stamp.apply(&stored.body)))
        }
        SpoolAction::Delete { select, dry_run } => {
            need_selector(&select, "delete")?;
            let (lines, mut changes) = steer(&spool, area, &select, dry_run, "deleted", now, |m| {
                let a = match m.area {
                    "held" => Area::Hold,
                    "quarantined" => Area::Quarantine,
                    "report" => Area::Reports,
                    _ => Area::Active,
                };
                Some(Change::Delete(a, m.id.clone()))
            })?;
            if !dry_run && !changes.is_empty() {
                if matches!(area, Area::Active | Area::Hold) {
                    changes.push(Change::Wake("rescan".into()));
                }
                submit(state_dir, &spool, &changes)?;
            }
            Ok(report(lines, dry_run, "deleted", ""))
        }
        SpoolAction::Flush { select, dry_run } => {
            if matches!(area, Area::Quarantine | Area::Reports) {
                return Err(queue_only("flush"));
            }
            if select.is_empty() {
                if !dry_run {
                    submit(state_dir, &spool, &[Change::Wake("flush".into())])?;
                }
                return Ok(Output::Text(
                    "flush requested: queued messages will be retried now (at start-up if the gateway is stopped)\n"
                        .into(),
                ));
            }
            let (lines, changes) = steer(&spool, area, &select, true, "flushed", now, |m| {
                (m.area == "queued").then(|| Change::Wake(m.id.clone()))
            })?;
            let ids: Vec<String> = changes
                .iter()
                .filter_map(|c| match c {
                    Change::Wake(id) => Some(id.clone()),
                    _ => None,
                })
                .collect();
            if !dry_run && !ids.is_empty() {
                submit(state_dir, &spool, &[Change::Wake(format!("flush {}", ids.join(" ")))])?;
            }
            let lines = if dry_run {
                lines
            } else {
                lines.into_iter().map(|l| l.replacen("would be ", "", 1)).collect()
            };
            Ok(report(lines, dry_run, "due now", ""))
        }
        SpoolAction::Hold { select, dry_run } => {
            if matches!(area, Area::Quarantine | Area::Reports) {
                return Err(queue_only("hold"));
            }
            need_selector(&select, "hold")?;
            let (lines, changes) = steer(&spool, area, &select, dry_run, "held", now, |m| {
                (m.area == "queued").then(|| Change::Move {
                    from: Area::Active,
                    to: Area::Hold,
                    id: m.id.clone(),
                })
            })?;
            // Each move wakes the scheduler to forget the message.
            if !dry_run {
                submit(state_dir, &spool, &changes)?;
            }
            Ok(report(lines, dry_run, "held", ": not delivered until released"))
        }
        SpoolAction::Release { select, dry_run } => {
            if area == Area::Reports {
                return Err(queue_only("release"));
            }
            if area == Area::Quarantine {
                return Err(store_owned());
            }
            need_selector(&select, "release")?;
            let from = Area::Hold;
            let (lines, changes) = steer(&spool, area, &select, dry_run, "released", now, |m| {
                (m.area == area_name(from)).then(|| Change::Move {
                    from,
                    to: Area::Active,
                    id: m.id.clone(),
                })
            })?;
            // Each move also makes the message due now, whatever retry time its history holds.
            if !dry_run {
                submit(state_dir, &spool, &changes)?;
            }
            Ok(report(lines, dry_run, "released", ": moved to the delivery queue"))
        }
        SpoolAction::Summary { json: as_json } => {
            let (listed, _) = collect(&spool, area, &Select::default(), now)?;
            let shape = Shape::of(&listed);
            if as_json {
                Ok(json(&shape))
            } else {
                Ok(Output::Text(shape.text()))
            }
        }
    }
}

/// Age buckets in minutes, as Postfix's qshape draws them (each the upper bound).
const BUCKETS: [i64; 10] = [5, 10, 20, 40, 80, 160, 320, 640, 1280, i64::MAX];

fn bucket_label(upper: i64) -> String {
    if upper == i64::MAX {
        "1280+".into()
    } else {
        upper.to_string()
    }
}

#[derive(Serialize)]
struct Row {
    name: String,
    total: usize,
    /// Counts per bucket, in `buckets` order.
    ages: Vec<usize>,
}

/// Counts of messages by tenant and by destination, per age bucket (minutes).
#[derive(Serialize)]
struct Shape {
    buckets: Vec<String>,
    total: Row,
    by_tenant: Vec<Row>,
    by_destination: Vec<Row>,
    held: usize,
}

impl Shape {
    fn of(listed: &[Listed]) -> Shape {
        let bucket = |age_s: i64| {
            BUCKETS
                .iter()
                .position(|&b| age_s / 60 < b)
                .unwrap_or(BUCKETS.len() - 1)
        };
        let mut tenants: BTreeMap<String, Vec<usize>> = BTreeMap::new();
        let mut dests: BTreeMap<String, Vec<usize>> = BTreeMap::new();
        let mut total = vec![0; BUCKETS.len()];
        for m in listed {
            let b = bucket(m.age_s);
            total[b] += 1;
            tenants
                .entry(m.tenant.clone())
                .or_insert_with(|| vec![0; BUCKETS.len()])[b] += 1;
            dests
                .entry(m.destination.clone())
                .or_insert_with(|| vec![0; BUCKETS.len()])[b] += 1;
        }
        let rows = |map: BTreeMap<String, Vec<usize>>| {
            let mut rows: Vec<Row> = map
                .into_iter()
                .map(|(name, ages)| Row {
                    name,
                    total: ages.iter().sum(),
                    ages,
                })
                .collect();
            rows.sort_by(|a, b| b.total.cmp(&a.total).then(a.name.cmp(&b.name)));
            rows
        };
        Shape {
            buckets: BUCKETS.iter().map(|&b| bucket_label(b)).collect(),
            total: Row {
                name: "TOTAL".into(),
                total: listed.len(),
                ages: total,
            },
            by_tenant: rows(tenants),
            by_destination: rows(dests),
            held: listed.iter().filter(|m| m.area == "held").count(),
        }
    }

    fn text(&self) -> String {
        let mut out = String::new();
        for (title, rows) in [("tenant", &self.by_tenant), ("destination", &self.by_destination)] {
            let width = rows
                .iter()
                .map(|r| r.name.len())
                .chain([title.len(), 5])
                .max()
                .unwrap_or(5);
            out.push_str(&format!("{title:>width$} {:>5}", "T"));
            for b in &self.buckets {
                out.push_str(&format!(" {b:>5}"));
            }
            out.push('\n');
            for r in std::iter::once(&self.total).chain(rows.iter()) {
                out.push_str(&format!("{:>width$} {:>5}", r.name, r.total));
                for n in &r.ages {
                    out.push_str(&format!(" {n:>5}"));
                }
                out.push('\n');
            }
            out.push('\n');
        }
        out.push_str(&format!(
            "ages in minutes (each column up to its bound); {} held\n",
            self.held
        ));
        out
    }
}
