//! The queries, written once for both backends: SQL with `?` placeholders
//! and [`Val`] parameters, run by `sqlite` or `postgres` (which own their
//! schema, connections and value conversion). The two dialects differ only
//! in the subject word search (FTS5 there, a GIN index on `to_tsvector` here)
//! and in where quarantined bytes live ([`Backend::keeps_bodies`]).
//!
//! Addresses and domains are stored and compared in lower case; a row per
//! recipient keeps "mail for X" an index lookup.

use std::collections::HashSet;

use crate::config::store::StoreBackend;
use crate::message::verdict::Finding;

use super::StoreError;
use super::postgres::Postgres;
use super::sqlite::Sqlite;
use super::types::*;

/// A parameter or a column value.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Val {
    Null,
    Int(i64),
    Real(f64),
    Text(String),
    Blob(Vec<u8>),
}

impl From<&str> for Val {
    fn from(s: &str) -> Val {
        Val::Text(s.to_string())
    }
}
impl From<String> for Val {
    fn from(s: String) -> Val {
        Val::Text(s)
    }
}
impl From<i64> for Val {
    fn from(i: i64) -> Val {
        Val::Int(i)
    }
}
impl From<f64> for Val {
    fn from(f: f64) -> Val {
        Val::Real(f)
    }
}

/// One result row.
pub(crate) struct Row(pub(crate) Vec<Val>);

impl Row {
    fn text(&self, i: usize) -> String {
        match self.0.get(i) {
            Some(Val::Text(s)) => s.clone(),
            Some(Val::Int(n)) => n.to_string(),
            _ => String::new(),
        }
    }
    fn int(&self, i: usize) -> i64 {
        match self.0.get(i) {
            Some(Val::Int(n)) => *n,
            Some(Val::Real(f)) => *f as i64,
            _ => 0,
        }
    }
    fn real(&self, i: usize) -> f64 {
        match self.0.get(i) {
            Some(Val::Real(f)) => *f,
            Some(Val::Int(n)) => *n as f64,
            _ => 0.0,
        }
    }
    fn opt_text(&self, i: usize) -> Option<String> {
        match self.0.get(i) {
            Some(Val::Text(s)) => Some(s.clone()),
            _ => None,
        }
    }
    fn json<T: serde::de::DeserializeOwned + Default>(&self, i: usize) -> T {
        serde_json::from_str(&self.text(i)).unwrap_or_default()
    }
}

pub(super) enum Backend {
    Sqlite(Sqlite),
    Postgres(Box<Postgres>),
}

/// The domain of an address, lower case ("" when there is none).
pub(crate) fn domain_of(address: &str) -> String {
    address
        .rsplit_once('@')
        .map(|(_, d)| d.to_ascii_lowercase())
        .unwrap_or_default()
}

fn json(v: &impl serde::Serialize) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "[]".into())
}

/// `s` for a LIKE pattern, its wildcards escaped (with `ESCAPE '\'`).
fn like_escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_")
}

/// The words of a subject search: letters and digits, lower case.
pub(crate) fn words(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .take(16)
        .collect()
}

const EVENT_COLS: &str = "id, time, node, queue_id, tenant, direction, message_id, network_message_id, mail_from, \
     header_from, rcpt, recipients, subject, size, client_ip, helo, tls, findings, failures, score, verdict, action, auth";

const QUARANTINE_COLS: &str = "id, time, node, tenant, mail_from, header_from, recipients, subject, message_id, size, \
     score, findings, state, released";

fn quarantine_of(r: &Row) -> QuarantineEntry {
    QuarantineEntry {
        id: r.text(0),
        time: r.int(1),
        node: r.text(2),
        tenant: r.text(3),
        mail_from: r.text(4),
        header_from: r.text(5),
        recipients: r.json(6),
        subject: r.text(7),
        message_id: r.text(8),
        size: r.int(9) as u64,
        score: r.real(10),
        findings: r.json::<Vec<Finding>>(11),
        state: QuarantineState::parse(&r.text(12)),
        released: r.json(13),
    }
}

/// A quarantined message with its body still present, for retention and the cap.
pub(super) struct BodyRow {
    pub(super) id: String,
    pub(super) tenant: String,
    pub(super) time: i64,
    pub(super) bytes: u64,
}

impl Backend {
    pub(super) async fn open(config: &StoreBackend) -> Result<Backend, StoreError> {
        Ok(match config {
            StoreBackend::Sqlite { path } => {
                let path = path.clone();
                let sqlite = tokio::task::spawn_blocking(move || Sqlite::open(&path))
                    .await
                    .map_err(|e| StoreError::Unavailable(e.to_string()))??;
                Backend::Sqlite(sqlite)
            }
            StoreBackend::Postgres { url, password_file } => {
                Backend::Postgres(Box::new(Postgres::new(url, password_file.clone())?))
            }
        })
    }

    /// Whether quarantined bytes live in the database (else in the spool's `quarantine/`).
    pub(super) fn keeps_bodies(&self) -> bool {
        matches!(self, Backend::Postgres(_))
    }

    pub(super) async fn ensure_ready(&self) -> Result<(), StoreError> {
        match self {
            Backend::Sqlite(_) => Ok(()),
            Backend::Postgres(p) => p.ensure_ready().await,
        }
    }

    async fn query(&self, sql: String, params: Vec<Val>) -> Result<Vec<Row>, StoreError> {
        match self {
            Backend::Sqlite(s) => s.query(sql, params).await,
            Backend::Postgres(p) => p.query(sql, params).await,
        }
    }

    async fn batch(&self, statements: Vec<(String, Vec<Val>)>) -> Result<Vec<u64>, StoreError> {
        if statements.is_empty() {
            return Ok(Vec::new());
        }
        match self {
            Backend::Sqlite(s) => s.batch(statements).await,
            Backend::Postgres(p) => p.batch(statements).await,
        }
    }

    async fn execute(&self, sql: &str, params: Vec<Val>) -> Result<u64, StoreError> {
        Ok(self
            .batch(vec![(sql.to_string(), params)])
            .await?
            .first()
            .copied()
            .unwrap_or(0))
    }

    // ---- writes from the mail path ----

    pub(super) async fn write_batch(
        &self,
        events: &[EventRecord],
        deliveries: &[(String, String, DeliveryOutcome)],
        entries: &[QuarantineEntry],
    ) -> Result<(), StoreError> {
        let mut statements = Vec::new();
        for e in events {
            let recipients: Vec<String> = e.recipients.iter().map(|r| r.to_ascii_lowercase()).collect();
            let rows: Vec<String> = if recipients.is_empty() {
                vec![String::new()]
            } else {
                recipients.clone()
            };
            let mail_from = e.mail_from.to_ascii_lowercase();
            let header_from = e.header_from.to_ascii_lowercase();
            for rcpt in rows {
                statements.push((
                    "INSERT INTO events (time, node, queue_id, tenant, direction, message_id, network_message_id, \
                     mail_from, from_domain, header_from, hfrom_domain, rcpt, rcpt_domain, recipients, subject, size, \
                     client_ip, helo, tls, findings, failures, score, verdict, action, auth) \
                     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                        .to_string(),
                    vec![
                        e.time.into(),
                        e.node.as_str().into(),
                        e.queue_id.as_str().into(),
                        e.tenant.as_str().into(),
                        e.direction.as_str().into(),
                        e.message_id.as_str().into(),
                        e.network_message_id.as_str().into(),
                        mail_from.as_str().into(),
                        domain_of(&mail_from).into(),
                        header_from.as_str().into(),
                        domain_of(&header_from).into(),
                        rcpt.as_str().into(),
                        domain_of(&rcpt).into(),
                        json(&recipients).into(),
                        e.subject.as_str().into(),
                        (e.size as i64).into(),
                        e.client_ip.as_str().into(),
                        e.helo.as_str().into(),
                        e.tls.clone().unwrap_or_default().into(),
                        json(&e.findings).into(),
                        json(&e.failures).into(),
                        e.score.into(),
                        e.verdict.as_str().into(),
                        e.action.as_str().into(),
                        e.auth.as_ref().map(json).unwrap_or_default().into(),
                    ],
                ));
            }
        }
        for (queue_id, rcpt, d) in deliveries {
            statements.push((
                "INSERT INTO deliveries (queue_id, rcpt, time, result, host, reply) VALUES (?, ?, ?, ?, ?, ?)".into(),
                vec![
                    queue_id.as_str().into(),
                    rcpt.to_ascii_lowercase().into(),
                    d.time.into(),
                    d.result.as_str().into(),
                    d.host.as_str().into(),
                    d.reply.as_str().into(),
                ],
            ));
        }
        for q in entries {
            statements.push(self.quarantine_insert_sql(q));
        }
        self.batch(statements).await.map(|_| ())
    }

    fn quarantine_insert_sql(&self, q: &QuarantineEntry) -> (String, Vec<Val>) {
        let recipients: Vec<String> = q.recipients.iter().map(|r| r.to_ascii_lowercase()).collect();
        (
            "INSERT INTO quarantine (id, time, node, tenant, mail_from, header_from, recipients, rcpt_list, subject, \
             message_id, size, score, findings, state, released, body_bytes) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING"
                .into(),
            vec![
                q.id.as_str().into(),
                q.time.into(),
                q.node.as_str().into(),
                q.tenant.as_str().into(),
                q.mail_from.to_ascii_lowercase().into(),
                q.header_from.to_ascii_lowercase().into(),
                json(&recipients).into(),
                format!(",{},", recipients.join(",")).into(),
                q.subject.as_str().into(),
                q.message_id.as_str().into(),
                (q.size as i64).into(),
                q.score.into(),
                json(&q.findings).into(),
                q.state.as_str().into(),
                json(&q.released).into(),
                (q.size as i64).max(1).into(),
            ],
        )
    }

    // ---- events ----

    pub(super) async fn search(&self, q: &Query) -> Result<Vec<EventSummary>, StoreError> {
        let mut sql = String::from(
            "SELECT e.id, e.time, e.queue_id, e.tenant, e.direction, e.mail_from, e.header_from, e.rcpt, e.subject, \
             e.size, e.score, e.action, \
             (SELECT d.result FROM deliveries d WHERE d.queue_id = e.queue_id AND d.rcpt = e.rcpt \
              ORDER BY d.time DESC LIMIT 1) \
             FROM events e WHERE 1 = 1",
        );
        let mut params: Vec<Val> = Vec::new();
        if let Some(t) = q.scope.tenant() {
            sql.push_str(" AND e.tenant = ?");
            params.push(t.into());
        }
        if let Some(s) = q.sender.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
            let s = s.to_ascii_lowercase();
            if let Some(domain) = s.strip_prefix('@') {
                sql.push_str(" AND (e.from_domain = ? OR e.hfrom_domain = ?)");
                params.extend([domain.into(), domain.into()]);
            } else {
                sql.push_str(" AND (e.mail_from = ? OR e.header_from = ?)");
                params.extend([s.as_str().into(), s.as_str().into()]);
            }
        }
        if let Some(r) = q.rcpt.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
            let r = r.to_ascii_lowercase();
            if let Some(domain) = r.strip_prefix('@') {
                sql.push_str(" AND e.rcpt_domain = ?");
                params.push(domain.into());
            } else {
                sql.push_str(" AND e.rcpt = ?");
                params.push(r.into());
            }
        }
        if let Some(subject) = q.subject.as_deref() {
            let words = words(subject);
            if !words.is_empty() {
                match self {
                    Backend::Sqlite(_) => {
                        sql.push_str(" AND e.id IN (SELECT rowid FROM events_fts WHERE events_fts MATCH ?)");
                        let quoted: Vec<String> = words.iter().map(|w| format!("\"{}\"", w.replace('"', ""))).collect();
                        params.push(quoted.join(" ").into());
                    }
                    Backend::Postgres(_) => {
                        sql.push_str(" AND to_tsvector('simple', e.subject) @@ plainto_tsquery('simple', ?)");
                        params.push(words.join(" ").into());
                    }
                }
            }
        }
        for (column, value) in [
            ("message_id", &q.message_id),
            ("network_message_id", &q.network_message_id),
            ("queue_id", &q.queue_id),
            ("action", &q.action),
        ] {
            if let Some(v) = value.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
                let v = if column == "message_id" {
                    v.trim_start_matches('<').trim_end_matches('>')
                } else {
                    v
                };
                sql.push_str(&format!(" AND e.{column} = ?"));
                params.push(v.into());
            }
        }
        if let Some(since) = q.since {
            sql.push_str(" AND e.time >= ?");
            params.push(since.into());
        }
        if let Some(until) = q.until {
            sql.push_str(" AND e.time < ?");
            params.push(until.into());
        }
        let (limit, offset) = q.page();
        sql.push_str(" ORDER BY e.time DESC, e.id DESC LIMIT ? OFFSET ?");
        params.extend([i64::from(limit).into(), i64::from(offset).into()]);
        let rows = self.query(sql, params).await?;
        Ok(rows
            .iter()
            .map(|r| EventSummary {
                id: r.int(0),
                time: r.int(1),
                queue_id: r.text(2),
                tenant: r.text(3),
                direction: r.text(4),
                mail_from: r.text(5),
                header_from: r.text(6),
                rcpt: r.text(7),
                subject: r.text(8),
                size: r.int(9) as u64,
                score: r.real(10),
                action: r.text(11),
                delivery: r.opt_text(12),
            })
            .collect())
    }

    pub(super) async fn event(&self, scope: &Scope, id: i64) -> Result<Option<EventDetail>, StoreError> {
        let mut sql = format!("SELECT {EVENT_COLS} FROM events WHERE id = ?");
        let mut params: Vec<Val> = vec![id.into()];
        if let Some(t) = scope.tenant() {
            sql.push_str(" AND tenant = ?");
            params.push(t.into());
        }
        let rows = self.query(sql, params).await?;
        let Some(r) = rows.first() else {
            return Ok(None);
        };
        let rcpt = r.text(10);
        let event = EventRecord {
            queue_id: r.text(3),
            time: r.int(1),
            node: r.text(2),
            tenant: r.text(4),
            direction: r.text(5),
            message_id: r.text(6),
            network_message_id: r.text(7),
            mail_from: r.text(8),
            recipients: r.json(11),
            header_from: r.text(9),
            subject: r.text(12),
            size: r.int(13) as u64,
            client_ip: r.text(14),
            helo: r.text(15),
            tls: Some(r.text(16)).filter(|t| !t.is_empty()),
            findings: r.json::<Vec<Finding>>(17),
            failures: r.json(18),
            score: r.real(19),
            verdict: r.text(20),
            action: r.text(21),
            auth: serde_json::from_str(&r.text(22)).ok(),
            listings: Vec::new(),
        };
        let event = EventRecord {
            listings: listings_of(&event.findings),
            ..event
        };
        let deliveries = self
            .query(
                "SELECT time, result, host, reply FROM deliveries WHERE queue_id = ? AND rcpt = ? ORDER BY time, result"
                    .into(),
                vec![event.queue_id.as_str().into(), rcpt.as_str().into()],
            )
            .await?
            .iter()
            .map(|d| DeliveryOutcome {
                time: d.int(0),
                result: d.text(1),
                host: d.text(2),
                reply: d.text(3),
            })
            .collect();
        Ok(Some(EventDetail {
            id,
            rcpt,
            event,
            deliveries,
        }))
    }

    // ---- quarantine index ----

    pub(super) async fn quarantine_list(&self, q: &QuarantineQuery) -> Result<Vec<QuarantineEntry>, StoreError> {
        let mut sql = format!("SELECT {QUARANTINE_COLS} FROM quarantine WHERE state = ?");
        let mut params: Vec<Val> = vec![q.state.unwrap_or(QuarantineState::Held).as_str().into()];
        if let Some(t) = q.scope.tenant() {
            sql.push_str(" AND tenant = ?");
            params.push(t.into());
        }
        if let Some(s) = q.sender.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
            let s = s.to_ascii_lowercase();
            if s.starts_with('@') {
                let pattern = format!("%{}", like_escape(&s));
                sql.push_str(" AND (mail_from LIKE ? ESCAPE '\\' OR header_from LIKE ? ESCAPE '\\')");
                params.extend([pattern.as_str().into(), pattern.as_str().into()]);
            } else {
                sql.push_str(" AND (mail_from = ? OR header_from = ?)");
                params.extend([s.as_str().into(), s.as_str().into()]);
            }
        }
        if let Some(r) = q.rcpt.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
            let r = r.to_ascii_lowercase();
            let pattern = if r.starts_with('@') {
                format!("%{},%", like_escape(&r))
            } else {
                format!("%,{},%", like_escape(&r))
            };
            sql.push_str(" AND rcpt_list LIKE ? ESCAPE '\\'");
            params.push(pattern.into());
        }
        if let Some(subject) = q.subject.as_deref() {
            for w in words(subject) {
                sql.push_str(" AND LOWER(subject) LIKE ? ESCAPE '\\'");
                params.push(format!("%{}%", like_escape(&w)).into());
            }
        }
        if let Some(m) = q.message_id.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
            sql.push_str(" AND message_id = ?");
            params.push(m.trim_start_matches('<').trim_end_matches('>').into());
        }
        if let Some(since) = q.since {
            sql.push_str(" AND time >= ?");
            params.push(since.into());
        }
        if let Some(until) = q.until {
            sql.push_str(" AND time < ?");
            params.push(until.into());
        }
        sql.push_str(" ORDER BY time DESC, id DESC LIMIT ? OFFSET ?");
        params.extend([i64::from(q.limit.clamp(1, 1000)).into(), i64::from(q.offset).into()]);
        Ok(self.query(sql, params).await?.iter().map(quarantine_of).collect())
    }

    pub(super) async fn quarantine_get(&self, scope: &Scope, id: &str) -> Result<Option<QuarantineEntry>, StoreError> {
        let mut sql = format!("SELECT {QUARANTINE_COLS} FROM quarantine WHERE id = ?");
        let mut params: Vec<Val> = vec![id.into()];
        if let Some(t) = scope.tenant() {
            sql.push_str(" AND tenant = ?");
            params.push(t.into());
        }
        Ok(self.query(sql, params).await?.first().map(quarantine_of))
    }

    /// Inserts an entry now (the reconciliation; the mail path goes through the writer).
    pub(super) async fn quarantine_insert(&self, q: &QuarantineEntry) -> Result<(), StoreError> {
        let (sql, params) = self.quarantine_insert_sql(q);
        self.execute(&sql, params).await.map(|_| ())
    }

    /// Which of `ids` the index knows.
    pub(super) async fn quarantine_known(&self, ids: &[String]) -> Result<HashSet<String>, StoreError> {
        let mut known = HashSet::new();
        for chunk in ids.chunks(200) {
            let marks = vec!["?"; chunk.len()].join(", ");
            let rows = self
                .query(
                    format!("SELECT id FROM quarantine WHERE id IN ({marks})"),
                    chunk.iter().map(|s| Val::Text(s.clone())).collect(),
                )
                .await?;
            known.extend(rows.iter().map(|r| r.text(0)));
        }
        Ok(known)
    }

    /// Sets an entry's state, released recipients and the bytes its body
    /// still takes (0: the body is gone). `expect`: only from this state
    /// (so two nodes cannot both release the same recipients); returns
    /// whether the entry was changed.
    pub(super) async fn quarantine_update(
        &self,
        id: &str,
        expect: QuarantineState,
        state: QuarantineState,
        released: &[String],
        body_bytes: u64,
    ) -> Result<bool, StoreError> {
        let n = self
            .execute(
                "UPDATE quarantine SET state = ?, released = ?, body_bytes = ? WHERE id = ? AND state = ?",
                vec![
                    state.as_str().into(),
                    json(&released).into(),
                    (body_bytes as i64).into(),
                    id.into(),
                    expect.as_str().into(),
                ],
            )
            .await?;
        Ok(n > 0)
    }

    /// Held messages and the bytes of every body still kept.
    pub(super) async fn quarantine_usage(&self) -> Result<(u64, u64), StoreError> {
        let rows = self
            .query(
                "SELECT CAST(COALESCE(SUM(CASE WHEN state = 'held' THEN 1 ELSE 0 END), 0) AS BIGINT), \
                 CAST(COALESCE(SUM(body_bytes), 0) AS BIGINT) FROM quarantine WHERE body_bytes > 0"
                    .into(),
                vec![],
            )
            .await?;
        Ok(rows
            .first()
            .map_or((0, 0), |r| (r.int(0).max(0) as u64, r.int(1).max(0) as u64)))
    }

    /// Entries whose body is kept, oldest first; only those older than `before` when given.
    pub(super) async fn quarantine_bodies(&self, before: Option<i64>, limit: u32) -> Result<Vec<BodyRow>, StoreError> {
        let mut sql = "SELECT id, tenant, time, body_bytes FROM quarantine WHERE body_bytes > 0".to_string();
        let mut params: Vec<Val> = Vec::new();
        if let Some(before) = before {
            sql.push_str(" AND time < ?");
            params.push(before.into());
        }
        sql.push_str(" ORDER BY time, id LIMIT ?");
        params.push(i64::from(limit).into());
        Ok(self
            .query(sql, params)
            .await?
            .iter()
            .map(|r| BodyRow {
                id: r.text(0),
                tenant: r.text(1),
                time: r.int(2),
                bytes: r.int(3).max(0) as u64,
            })
            .collect())
    }

    /// Marks a pruned entry: its body is gone.
    pub(super) async fn quarantine_expire(&self, id: &str) -> Result<(), StoreError> {
        self.execute(
            "UPDATE quarantine SET state = CASE WHEN state = 'held' THEN 'expired' ELSE state END, body_bytes = 0 WHERE id = ?",
            vec![id.into()],
        )
        .await
        .map(|_| ())
    }

    // ---- bodies in the database (PostgreSQL) ----

    pub(super) async fn body_put(&self, id: &str, bytes: Vec<u8>) -> Result<(), StoreError> {
        self.execute(
            "INSERT INTO quarantine_bodies (id, bytes) VALUES (?, ?) ON CONFLICT (id) DO UPDATE SET bytes = excluded.bytes",
            vec![id.into(), Val::Blob(bytes)],
        )
        .await
        .map(|_| ())
    }

    pub(super) async fn body_get(&self, id: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let rows = self
            .query(
                "SELECT bytes FROM quarantine_bodies WHERE id = ?".into(),
                vec![id.into()],
            )
            .await?;
        Ok(rows.into_iter().next().and_then(|r| match r.0.into_iter().next() {
            Some(Val::Blob(b)) => Some(b),
            _ => None,
        }))
    }

    pub(super) async fn body_delete(&self, id: &str) -> Result<(), StoreError> {
        self.execute("DELETE FROM quarantine_bodies WHERE id = ?", vec![id.into()])
            .await
            .map(|_| ())
    }

    // ---- retention ----

    /// Deletes events, deliveries, audit records, feedback and index rows
    /// (of bodies already gone) older than their tenant's cutoff.
    /// `cutoffs`: (tenant, cutoff) for tenants with a retention of their own;
    /// `default_cutoff` for the rest; `oldest_cutoff`: the earliest of all
    /// (for what has no tenant).
    pub(super) async fn prune_records(
        &self,
        cutoffs: &[(String, i64)],
        default_cutoff: i64,
        oldest_cutoff: i64,
    ) -> Result<u64, StoreError> {
        let mut statements = Vec::new();
        for table in ["events", "quarantine", "feedback", "audit"] {
            let extra = if table == "quarantine" {
                " AND body_bytes = 0"
            } else {
                ""
            };
            for (tenant, cutoff) in cutoffs {
                statements.push((
                    format!("DELETE FROM {table} WHERE tenant = ? AND time < ?{extra}"),
                    vec![tenant.as_str().into(), (*cutoff).into()],
                ));
            }
            let mut sql = format!("DELETE FROM {table} WHERE time < ?{extra}");
            let mut params: Vec<Val> = vec![default_cutoff.into()];
            if !cutoffs.is_empty() {
                sql.push_str(&format!(" AND tenant NOT IN ({})", vec!["?"; cutoffs.len()].join(", ")));
                params.extend(cutoffs.iter().map(|(t, _)| Val::Text(t.clone())));
            }
            statements.push((sql, params));
        }
        statements.push((
            "DELETE FROM deliveries WHERE time < ?".into(),
            vec![oldest_cutoff.into()],
        ));
        Ok(self.batch(statements).await?.iter().sum())
    }

    // ---- audit, allow lists, feedback ----

    pub(super) async fn audit_insert(&self, a: &AuditRecord) -> Result<(), StoreError> {
        self.execute(
            "INSERT INTO audit (time, actor, from_addr, action, tenant, messages, detail) VALUES (?, ?, ?, ?, ?, ?, ?)",
            vec![
                a.time.into(),
                a.actor.as_str().into(),
                a.from.as_str().into(),
                a.action.as_str().into(),
                a.tenant.as_str().into(),
                json(&a.messages).into(),
                a.detail.as_str().into(),
            ],
        )
        .await
        .map(|_| ())
    }

    pub(super) async fn audit_list(
        &self,
        scope: &Scope,
        limit: u32,
        offset: u32,
    ) -> Result<Vec<AuditRecord>, StoreError> {
        let mut sql = "SELECT time, actor, from_addr, action, tenant, messages, detail FROM audit".to_string();
        let mut params: Vec<Val> = Vec::new();
        if let Some(t) = scope.tenant() {
            sql.push_str(" WHERE tenant = ?");
            params.push(t.into());
        }
        sql.push_str(" ORDER BY time DESC, id DESC LIMIT ? OFFSET ?");
        params.extend([i64::from(limit).into(), i64::from(offset).into()]);
        Ok(self
            .query(sql, params)
            .await?
            .iter()
            .map(|r| AuditRecord {
                time: r.int(0),
                actor: r.text(1),
                from: r.text(2),
                action: r.text(3),
                tenant: r.text(4),
                messages: r.json(5),
                detail: r.text(6),
            })
            .collect())
    }

    pub(super) async fn allow_insert(&self, e: &AllowEntry) -> Result<(), StoreError> {
        self.execute(
            "INSERT INTO allow_list (tenant, sender, added_by, time) VALUES (?, ?, ?, ?) ON CONFLICT (tenant, sender) DO NOTHING",
            vec![
                e.tenant.as_str().into(),
                e.sender.as_str().into(),
                e.added_by.as_str().into(),
                e.time.into(),
            ],
        )
        .await
        .map(|_| ())
    }

    pub(super) async fn allow_remove(&self, tenant: &str, sender: &str) -> Result<(), StoreError> {
        self.execute(
            "DELETE FROM allow_list WHERE tenant = ? AND sender = ?",
            vec![tenant.into(), sender.into()],
        )
        .await
        .map(|_| ())
    }

    pub(super) async fn allow_all(&self) -> Result<Vec<AllowEntry>, StoreError> {
        Ok(self
            .query(
                "SELECT tenant, sender, added_by, time FROM allow_list ORDER BY tenant, sender".into(),
                vec![],
            )
            .await?
            .iter()
            .map(|r| AllowEntry {
                tenant: r.text(0),
                sender: r.text(1),
                added_by: r.text(2),
                time: r.int(3),
            })
            .collect())
    }

    pub(super) async fn feedback_insert(
        &self,
        time: i64,
        queue_id: &str,
        tenant: &str,
        actor: &str,
        kind: &str,
    ) -> Result<(), StoreError> {
        self.execute(
            "INSERT INTO feedback (time, queue_id, tenant, actor, kind) VALUES (?, ?, ?, ?, ?)",
            vec![time.into(), queue_id.into(), tenant.into(), actor.into(), kind.into()],
        )
        .await
        .map(|_| ())
    }
}
