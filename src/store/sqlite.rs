//! The embedded backend: one SQLite file in the state dir (rusqlite with
//! SQLite built in, so FTS5 is always there), in WAL mode.
//!
//! One connection behind a mutex; never used on a scheduler thread. Queries
//! (the web page, the command line) run on tokio's blocking pool; the
//! writer's batches run on a thread of their own at a lower CPU priority
//! (nice 10): a batch is tens of index and full-text inserts in a burst, and
//! on a busy gateway those must take the cores the sessions leave idle, not
//! the ones a session waits for to acknowledge mail. Nothing on the mail path
//! waits for a batch. SQL arrives with `?` placeholders and
//! [`Val`] parameters from `backend`, which owns the queries; this file owns
//! the schema and the conversion of values.

use std::path::Path;
use std::sync::{Arc, Mutex};

use rusqlite::types::Value;

use super::StoreError;
use super::backend::{Row, Val};

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY,
    time INTEGER NOT NULL,
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
    size INTEGER NOT NULL,
    client_ip TEXT NOT NULL,
    helo TEXT NOT NULL,
    tls TEXT NOT NULL,
    findings TEXT NOT NULL,
    failures TEXT NOT NULL,
    score REAL NOT NULL,
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
CREATE VIRTUAL TABLE IF NOT EXISTS events_fts USING fts5(subject, content='events', content_rowid='id');
CREATE TRIGGER IF NOT EXISTS events_fts_insert AFTER INSERT ON events BEGIN
    INSERT INTO events_fts(rowid, subject) VALUES (new.id, new.subject);
END;
CREATE TRIGGER IF NOT EXISTS events_fts_delete AFTER DELETE ON events BEGIN
    INSERT INTO events_fts(events_fts, rowid, subject) VALUES ('delete', old.id, old.subject);
END;
CREATE TABLE IF NOT EXISTS deliveries (
    queue_id TEXT NOT NULL,
    rcpt TEXT NOT NULL,
    time INTEGER NOT NULL,
    result TEXT NOT NULL,
    host TEXT NOT NULL,
    reply TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS deliveries_queue_rcpt ON deliveries(queue_id, rcpt, time);
CREATE INDEX IF NOT EXISTS deliveries_time ON deliveries(time);
CREATE TABLE IF NOT EXISTS quarantine (
    id TEXT PRIMARY KEY,
    time INTEGER NOT NULL,
    node TEXT NOT NULL,
    tenant TEXT NOT NULL,
    mail_from TEXT NOT NULL,
    header_from TEXT NOT NULL,
    recipients TEXT NOT NULL,
    rcpt_list TEXT NOT NULL,
    subject TEXT NOT NULL,
    message_id TEXT NOT NULL,
    size INTEGER NOT NULL,
    score REAL NOT NULL,
    findings TEXT NOT NULL,
    state TEXT NOT NULL,
    released TEXT NOT NULL,
    body_bytes INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS quarantine_state_time ON quarantine(state, time);
CREATE INDEX IF NOT EXISTS quarantine_tenant_time ON quarantine(tenant, time);
CREATE INDEX IF NOT EXISTS quarantine_body_time ON quarantine(body_bytes, time);
CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY,
    time INTEGER NOT NULL,
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
    time INTEGER NOT NULL,
    PRIMARY KEY (tenant, sender)
);
CREATE TABLE IF NOT EXISTS feedback (
    id INTEGER PRIMARY KEY,
    time INTEGER NOT NULL,
    queue_id TEXT NOT NULL,
    tenant TEXT NOT NULL,
    actor TEXT NOT NULL,
    kind TEXT NOT NULL
);
"#;

/// Columns added after the first schema, for stores made before them
/// (SQLite has no `ADD COLUMN IF NOT EXISTS`).
fn add_missing_columns(conn: &rusqlite::Connection) -> rusqlite::Result<()> {
    let mut stmt = conn.prepare("SELECT name FROM pragma_table_info('events')")?;
    let names: Vec<String> = stmt.query_map([], |r| r.get(0))?.collect::<Result<_, _>>()?;
    if !names.iter().any(|n| n == "auth") {
        conn.execute_batch("ALTER TABLE events ADD COLUMN auth TEXT NOT NULL DEFAULT ''")?;
    }
    Ok(())
}

pub(super) struct Sqlite {
    conn: Arc<Mutex<rusqlite::Connection>>,
    /// The batch thread's queue (see the file's header).
    batches: std::sync::mpsc::Sender<Job>,
}

type Job = Box<dyn FnOnce(&mut rusqlite::Connection) + Send>;

/// How much nicer than the gateway the batch thread runs (see the header).
const BATCH_NICE: i32 = 10;

/// The thread that runs the writer's batches, at a lower priority; it ends
/// when the store is dropped.
fn spawn_batch_thread(conn: Arc<Mutex<rusqlite::Connection>>) -> Result<std::sync::mpsc::Sender<Job>, StoreError> {
    let (tx, rx) = std::sync::mpsc::channel::<Job>();
    std::thread::Builder::new()
        .name("exogate-store".into())
        .spawn(move || {
            // Linux gives each thread its own nice value; `None` is this thread.
            let nice = rustix::process::getpriority_process(None).unwrap_or(0);
            if let Err(e) = rustix::process::setpriority_process(None, nice.saturating_add(BATCH_NICE).min(19)) {
                tracing::debug!(error = %e, "the store's batch thread keeps the gateway's CPU priority");
            }
            while let Ok(job) = rx.recv() {
                let mut guard = conn.lock().unwrap_or_else(|e| e.into_inner());
                job(&mut guard);
            }
        })
        .map_err(|e| StoreError::Unavailable(format!("cannot start the store's batch thread: {e}")))?;
    Ok(tx)
}

fn err(e: rusqlite::Error) -> StoreError {
    StoreError::Unavailable(format!("sqlite: {e}"))
}

impl Sqlite {
    pub(super) fn open(path: &Path) -> Result<Sqlite, StoreError> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| StoreError::Unavailable(format!("cannot create {}: {e}", dir.display())))?;
        }
        let conn = rusqlite::Connection::open(path)
            .map_err(|e| StoreError::Unavailable(format!("cannot open {}: {e}", path.display())))?;
        // WAL: readers (the command line, the web page) never wait for the
        // writer; NORMAL sync: an event lost to a power cut is acceptable,
        // the spool (not the store) holds what was acknowledged.
        conn.execute_batch(
            "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA busy_timeout=5000; PRAGMA foreign_keys=OFF;",
        )
        .map_err(err)?;
        conn.execute_batch(SCHEMA).map_err(err)?;
        add_missing_columns(&conn).map_err(err)?;
        let conn = Arc::new(Mutex::new(conn));
        Ok(Sqlite {
            batches: spawn_batch_thread(conn.clone())?,
            conn,
        })
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut rusqlite::Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let conn = self.conn.clone();
        tokio::task::spawn_blocking(move || {
            let mut guard = conn.lock().unwrap_or_else(|e| e.into_inner());
            f(&mut guard)
        })
        .await
        .map_err(|e| StoreError::Unavailable(format!("sqlite task: {e}")))?
    }

    pub(super) async fn query(&self, sql: String, params: Vec<Val>) -> Result<Vec<Row>, StoreError> {
        self.blocking(move |conn| {
            let mut stmt = conn.prepare_cached(&sql).map_err(err)?;
            let n = stmt.column_count();
            let mut rows = stmt
                .query(rusqlite::params_from_iter(params.into_iter().map(to_value)))
                .map_err(err)?;
            let mut out = Vec::new();
            while let Some(row) = rows.next().map_err(err)? {
                let mut r = Vec::with_capacity(n);
                for i in 0..n {
                    r.push(from_value(row.get::<_, Value>(i).map_err(err)?));
                }
                out.push(Row(r));
            }
            Ok(out)
        })
        .await
    }

    /// Runs every statement in one transaction, on the batch thread; returns
    /// the rows changed by each.
    pub(super) async fn batch(&self, statements: Vec<(String, Vec<Val>)>) -> Result<Vec<u64>, StoreError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move |conn| {
            let _ = tx.send(run_batch(conn, statements));
        });
        let stopped = || StoreError::Unavailable("sqlite: the store's batch thread stopped".into());
        self.batches.send(job).map_err(|_| stopped())?;
        rx.await.map_err(|_| stopped())?
    }
}

fn run_batch(conn: &mut rusqlite::Connection, statements: Vec<(String, Vec<Val>)>) -> Result<Vec<u64>, StoreError> {
    let tx = conn.transaction().map_err(err)?;
    let mut changed = Vec::with_capacity(statements.len());
    for (sql, params) in statements {
        let mut stmt = tx.prepare_cached(&sql).map_err(err)?;
        let n = stmt
            .execute(rusqlite::params_from_iter(params.into_iter().map(to_value)))
            .map_err(err)?;
        changed.push(n as u64);
    }
    tx.commit().map_err(err)?;
    Ok(changed)
}

fn to_value(v: Val) -> Value {
    match v {
        Val::Null => Value::Null,
        Val::Int(i) => Value::Integer(i),
        Val::Real(f) => Value::Real(f),
        Val::Text(s) => Value::Text(s),
        Val::Blob(b) => Value::Blob(b),
    }
}

fn from_value(v: Value) -> Val {
    match v {
        Value::Null => Val::Null,
        Value::Integer(i) => Val::Int(i),
        Value::Real(f) => Val::Real(f),
        Value::Text(s) => Val::Text(s),
        Value::Blob(b) => Val::Blob(b),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_store_made_before_the_auth_column_gets_it_on_open() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.sqlite3");
        {
            let conn = rusqlite::Connection::open(&path).unwrap();
            let old = SCHEMA.replace(",\n    auth TEXT NOT NULL DEFAULT ''", "");
            assert_ne!(old, SCHEMA, "the old schema is the one without the column");
            conn.execute_batch(&old).unwrap();
        }
        let store = Sqlite::open(&path).unwrap();
        let conn = store.conn.lock().unwrap();
        let names: Vec<String> = conn
            .prepare("SELECT name FROM pragma_table_info('events')")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert!(names.iter().any(|n| n == "auth"), "{names:?}");
        drop(conn);
        // Opening again (the column there) is fine.
        drop(store);
        Sqlite::open(&path).unwrap();
    }

    /// The nice value (field 19 of `stat`) of every thread of this process named `name`.
    fn nice_of_threads(name: &str) -> Vec<i32> {
        let mut nices = Vec::new();
        for task in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
            let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
            if comm.trim_end() != name {
                continue;
            }
            let stat = std::fs::read_to_string(task.path().join("stat")).unwrap();
            // After the parenthesised name: state is field 3, nice field 19.
            let rest = &stat[stat.rfind(')').unwrap() + 2..];
            nices.push(rest.split(' ').nth(16).unwrap().parse().unwrap());
        }
        nices
    }

    #[tokio::test]
    async fn batches_run_on_a_thread_that_yields_the_cpu_to_mail() {
        let dir = tempfile::tempdir().unwrap();
        let store = Sqlite::open(&dir.path().join("store.sqlite3")).unwrap();
        let changed = store
            .batch(vec![(
                "INSERT INTO audit(time, actor, from_addr, action, tenant, messages, detail) VALUES (?, 'a', '', 'release', 't', '', '')".into(),
                vec![Val::Int(1)],
            )])
            .await
            .unwrap();
        assert_eq!(changed, [1]);
        let ours = rustix::process::getpriority_process(None).unwrap();
        let nices = nice_of_threads("exogate-store");
        assert!(!nices.is_empty(), "no exogate-store thread");
        assert!(
            nices.iter().all(|&n| n == (ours + BATCH_NICE).min(19)),
            "batch threads at {nices:?}, the process at {ours}"
        );
    }
}
