//! The shared backend: a PostgreSQL database several gateway nodes write to
//! and read from (tokio-postgres, plain SQL, no ORM).
//!
//! One connection, opened on first use and again after it breaks, so an
//! outage at start or later costs only the writes made while it lasts (the
//! writer counts them). The schema is created under an advisory lock, so two
//! nodes starting together do not race. Quarantined bytes live in
//! `quarantine_bodies` (bytea): every node can show and release what another
//! one held. The URL's password is never logged (see `config::store`).

use std::time::Duration;

use tokio_postgres::types::{ToSql, Type};

use super::StoreError;
use super::backend::{Row, Val};

const SCHEMA: &str = r#"
SELECT pg_advisory_lock(727274);
CREATE TABLE IF NOT EXISTS events (
    id BIGSERIAL PRIMARY KEY,
    time BIGINT NOT NULL,
    node TEXT NOT NULL,
    queue_id TEXT NOT NULL,
    tenant TEXT NOT NULL,
    direction TEXT NOT NULL,
    message_id TEXT NOT NULL,
    network_message_id TEXT NOT NULL,
    mail_from TEXT NOT NULL,
    from_domain TEXT NOT NULL,
    header_from TEXT NOT NULL,
    hfrom_domain TEXT NOT NULL,
    rcpt TEXT NOT NULL,
    rcpt_domain TEXT NOT NULL,
    recipients TEXT NOT NULL,
    subject TEXT NOT NULL,
    size BIGINT NOT NULL,
    client_ip TEXT NOT NULL,
    helo TEXT NOT NULL,
    tls TEXT NOT NULL,
    findings TEXT NOT NULL,
    failures TEXT NOT NULL,
    score DOUBLE PRECISION NOT NULL,
    verdict TEXT NOT NULL,
    action TEXT NOT NULL,
    auth TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS events_time ON events(time);
CREATE INDEX IF NOT EXISTS events_tenant_time ON events(tenant, time);
CREATE INDEX IF NOT EXISTS events_queue_id ON events(queue_id);
CREATE INDEX IF NOT EXISTS events_mail_from ON events(mail_from, time);
CREATE INDEX IF NOT EXISTS events_from_domain ON events(from_domain, time);
CREATE INDEX IF NOT EXISTS events_header_from ON events(header_from, time);
CREATE INDEX IF NOT EXISTS events_hfrom_domain ON events(hfrom_domain, time);
CREATE INDEX IF NOT EXISTS events_rcpt ON events(rcpt, time);
CREATE INDEX IF NOT EXISTS events_rcpt_domain ON events(rcpt_domain, time);
CREATE INDEX IF NOT EXISTS events_message_id ON events(message_id);
CREATE INDEX IF NOT EXISTS events_network_message_id ON events(network_message_id);
CREATE INDEX IF NOT EXISTS events_action_time ON events(action, time);
CREATE INDEX IF NOT EXISTS events_subject_words ON events USING GIN (to_tsvector('simple', subject));
-- Stores made before the auth column (added with sender authentication in events).
ALTER TABLE events ADD COLUMN IF NOT EXISTS auth TEXT NOT NULL DEFAULT '';
CREATE TABLE IF NOT EXISTS deliveries (
    queue_id TEXT NOT NULL,
    rcpt TEXT NOT NULL,
    time BIGINT NOT NULL,
    result TEXT NOT NULL,
    host TEXT NOT NULL,
    reply TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS deliveries_queue_rcpt ON deliveries(queue_id, rcpt, time);
CREATE INDEX IF NOT EXISTS deliveries_time ON deliveries(time);
CREATE TABLE IF NOT EXISTS quarantine (
    id TEXT PRIMARY KEY,
    time BIGINT NOT NULL,
    node TEXT NOT NULL,
    tenant TEXT NOT NULL,
    mail_from TEXT NOT NULL,
    header_from TEXT NOT NULL,
    recipients TEXT NOT NULL,
    rcpt_list TEXT NOT NULL,
    subject TEXT NOT NULL,
    message_id TEXT NOT NULL,
    size BIGINT NOT NULL,
    score DOUBLE PRECISION NOT NULL,
    findings TEXT NOT NULL,
    state TEXT NOT NULL,
    released TEXT NOT NULL,
    body_bytes BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS quarantine_state_time ON quarantine(state, time);
CREATE INDEX IF NOT EXISTS quarantine_tenant_time ON quarantine(tenant, time);
CREATE INDEX IF NOT EXISTS quarantine_body_time ON quarantine(body_bytes, time);
CREATE TABLE IF NOT EXISTS quarantine_bodies (
    id TEXT PRIMARY KEY,
    bytes BYTEA NOT NULL
);
CREATE TABLE IF NOT EXISTS audit (
    id BIGSERIAL PRIMARY KEY,
    time BIGINT NOT NULL,
    actor TEXT NOT NULL,
    from_addr TEXT NOT NULL,
    action TEXT NOT NULL,
    tenant TEXT NOT NULL,
    messages TEXT NOT NULL,
    detail TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_time ON audit(time);
CREATE TABLE IF NOT EXISTS allow_list (
    tenant TEXT NOT NULL,
    sender TEXT NOT NULL,
    added_by TEXT NOT NULL,
    time BIGINT NOT NULL,
    PRIMARY KEY (tenant, sender)
);
CREATE TABLE IF NOT EXISTS feedback (
    id BIGSERIAL PRIMARY KEY,
    time BIGINT NOT NULL,
    queue_id TEXT NOT NULL,
    tenant TEXT NOT NULL,
    actor TEXT NOT NULL,
    kind TEXT NOT NULL
);
SELECT pg_advisory_unlock(727274);
"#;

/// Longest a query or transaction may take; beyond, the connection is
/// dropped (a hung database must not hold the writer or a command forever).
const OP_TIMEOUT: Duration = Duration::from_secs(30);

fn timed_out() -> StoreError {
    StoreError::Unavailable(format!("postgresql: no answer within {}s", OP_TIMEOUT.as_secs()))
}

pub(super) struct Postgres {
    config: tokio_postgres::Config,
    /// What the logs may show of the URL.
    shown: String,
    client: tokio::sync::Mutex<Option<tokio_postgres::Client>>,
    /// `[store] password_file`: read at each connection (a rotated secret is picked up).
    password_file: Option<std::path::PathBuf>,
}

impl Postgres {
    pub(super) fn new(url: &str, password_file: Option<std::path::PathBuf>) -> Result<Postgres, StoreError> {
        let mut config: tokio_postgres::Config = url
            .parse()
            .map_err(|e| StoreError::Invalid(format!("{}: {e}", crate::config::store::redact_url(url))))?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(5));
        }
        config.application_name("exogate");
        Ok(Postgres {
            config,
            shown: crate::config::store::redact_url(url),
            client: tokio::sync::Mutex::new(None),
            password_file,
        })
    }

    fn err(&self, e: &tokio_postgres::Error) -> StoreError {
        // The error's text never holds the password (it is not echoed by the
        // server or the client library); the URL shown is redacted.
        StoreError::Unavailable(format!("postgresql {}: {e}", self.shown))
    }

    /// The connection, opened (and the schema made) when there is none.
    async fn connected<'a>(
        &self,
        guard: &'a mut Option<tokio_postgres::Client>,
    ) -> Result<&'a mut tokio_postgres::Client, StoreError> {
        if guard.as_ref().is_some_and(|c| c.is_closed()) {
            *guard = None;
        }
        if guard.is_none() {
            let mut config = self.config.clone();
            if let Some(path) = &self.password_file {
                let secret = std::fs::read_to_string(path)
                    .map_err(|e| StoreError::Unavailable(format!("[store] password_file {}: {e}", path.display())))?;
                config.password(secret.trim_end_matches(['\r', '\n']));
            }
            let (client, connection) = config.connect(tokio_postgres::NoTls).await.map_err(|e| self.err(&e))?;
            let shown = self.shown.clone();
            tokio::spawn(async move {
                if let Err(e) = connection.await {
                    tracing::warn!(store = %shown, error = %e, "connection to the store closed");
                }
            });
            client.batch_execute(SCHEMA).await.map_err(|e| self.err(&e))?;
            *guard = Some(client);
        }
        Ok(guard.as_mut().expect("just connected"))
    }

    pub(super) async fn ensure_ready(&self) -> Result<(), StoreError> {
        let mut guard = self.client.lock().await;
        self.connected(&mut guard).await.map(|_| ())
    }

    pub(super) async fn query(&self, sql: String, params: Vec<Val>) -> Result<Vec<Row>, StoreError> {
        let mut guard = self.client.lock().await;
        let client = self.connected(&mut guard).await?;
        let sql = numbered(&sql);
        let owned: Vec<Box<dyn ToSql + Sync + Send>> = params.into_iter().map(to_sql).collect();
        let refs: Vec<&(dyn ToSql + Sync)> = owned.iter().map(|b| b.as_ref() as &(dyn ToSql + Sync)).collect();
        let rows = match tokio::time::timeout(OP_TIMEOUT, client.query(&sql, &refs)).await {
            Err(_) => {
                *guard = None;
                return Err(timed_out());
            }
            Ok(Ok(rows)) => rows,
            Ok(Err(e)) => {
                let error = self.err(&e);
                if client.is_closed() {
                    *guard = None;
                }
                return Err(error);
            }
        };
        rows.iter().map(|r| from_row(r).map_err(|e| self.err(&e))).collect()
    }

    pub(super) async fn batch(&self, statements: Vec<(String, Vec<Val>)>) -> Result<Vec<u64>, StoreError> {
        let mut guard = self.client.lock().await;
        let client = self.connected(&mut guard).await?;
        let result = tokio::time::timeout(OP_TIMEOUT, async {
            let tx = client.transaction().await?;
            let mut changed = Vec::with_capacity(statements.len());
            for (sql, params) in statements {
                let owned: Vec<Box<dyn ToSql + Sync + Send>> = params.into_iter().map(to_sql).collect();
                let refs: Vec<&(dyn ToSql + Sync)> = owned.iter().map(|b| b.as_ref() as &(dyn ToSql + Sync)).collect();
                changed.push(tx.execute(&numbered(&sql), &refs).await?);
            }
            tx.commit().await?;
            Ok::<_, tokio_postgres::Error>(changed)
        })
        .await;
        match result {
            Err(_) => {
                *guard = None;
                Err(timed_out())
            }
            Ok(Ok(changed)) => Ok(changed),
            Ok(Err(e)) => {
                let error = self.err(&e);
                if guard.as_ref().is_some_and(|c| c.is_closed()) {
                    *guard = None;
                }
                Err(error)
            }
        }
    }
}

/// `?` placeholders as PostgreSQL's `$1`, `$2`, ... (the queries hold no `?` elsewhere).
fn numbered(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len() + 16);
    let mut n = 0;
    for c in sql.chars() {
        if c == '?' {
            n += 1;
            out.push_str(&format!("${n}"));
        } else {
            out.push(c);
        }
    }
    out
}

fn to_sql(v: Val) -> Box<dyn ToSql + Sync + Send> {
    match v {
        Val::Null => Box::new(Option::<String>::None),
        Val::Int(i) => Box::new(i),
        Val::Real(f) => Box::new(f),
        Val::Text(s) => Box::new(s),
        Val::Blob(b) => Box::new(b),
    }
}

fn from_row(row: &tokio_postgres::Row) -> Result<Row, tokio_postgres::Error> {
    let mut out = Vec::with_capacity(row.len());
    for (i, column) in row.columns().iter().enumerate() {
        let t = column.type_();
        let v = if *t == Type::INT8 {
            row.try_get::<_, Option<i64>>(i)?.map_or(Val::Null, Val::Int)
        } else if *t == Type::INT4 {
            row.try_get::<_, Option<i32>>(i)?
                .map_or(Val::Null, |v| Val::Int(i64::from(v)))
        } else if *t == Type::FLOAT8 {
            row.try_get::<_, Option<f64>>(i)?.map_or(Val::Null, Val::Real)
        } else if *t == Type::BYTEA {
            row.try_get::<_, Option<Vec<u8>>>(i)?.map_or(Val::Null, Val::Blob)
        } else {
            row.try_get::<_, Option<String>>(i)?.map_or(Val::Null, Val::Text)
        };
        out.push(v);
    }
    Ok(Row(out))
}

#[cfg(test)]
mod tests {
    #[test]
    fn placeholders_are_numbered_in_order() {
        assert_eq!(
            super::numbered("SELECT a FROM t WHERE b = ? AND c IN (?, ?)"),
            "SELECT a FROM t WHERE b = $1 AND c IN ($2, $3)"
        );
    }
}
