//! `[store]`: where events, the quarantine index, audit records and allow
//! lists are kept, and for how long.
//!
//! No `url` (the default): SQLite in `state_dir/store.sqlite3`. A
//! `postgresql://` URL: a PostgreSQL database shared by several nodes. The
//! URL may hold a password; it is never printed (`Debug` and every message
//! show it with the password replaced).

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::config::reader::Section;

/// The backend chosen by `[store] url`.
#[derive(Clone, PartialEq, Eq)]
pub enum StoreBackend {
    /// The embedded default: one SQLite file.
    Sqlite { path: PathBuf },
    /// A shared PostgreSQL database (`postgresql://user:password@host:port/db`);
    /// the password may instead come from a file (a container secret), read
    /// at each connection.
    Postgres {
        url: String,
        password_file: Option<PathBuf>,
    },
}

impl fmt::Debug for StoreBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreBackend::Sqlite { path } => write!(f, "Sqlite({})", path.display()),
            StoreBackend::Postgres { url, .. } => write!(f, "Postgres({})", redact_url(url)),
        }
    }
}

impl fmt::Display for StoreBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreBackend::Sqlite { path } => write!(f, "sqlite {}", path.display()),
            StoreBackend::Postgres { url, .. } => write!(f, "postgresql {}", redact_url(url)),
        }
    }
}

/// `url` with any password replaced by `***`.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let (authority, tail) = match rest.find(['/', '?']) {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{scheme}://{user}:***@{host}{tail}"),
            None => url.to_string(),
        },
        None => url.to_string(),
    }
}

#[derive(Debug, Clone)]
pub struct StoreConfig {
    pub backend: StoreBackend,
    /// The name this node records events and quarantined messages under
    /// (default: the machine's host name).
    pub node: String,
    /// How long events and quarantined messages are kept (default 30 days).
    pub retention: Duration,
    /// Per tenant portal: a retention of its own.
    pub tenant_retention: BTreeMap<String, Duration>,
    /// Bytes the whole quarantine may hold; the oldest go first beyond it.
    pub quarantine_max_size: u64,
    /// Events waiting to be written; beyond it new ones are dropped (and counted).
    pub write_queue: usize,
}

impl StoreConfig {
    /// The retention of `tenant`.
    pub fn retention_of(&self, tenant: &str) -> Duration {
        self.tenant_retention.get(tenant).copied().unwrap_or(self.retention)
    }

    /// The default store: SQLite under `state_dir`.
    pub fn embedded(state_dir: &Path, node: &str) -> StoreConfig {
        StoreConfig {
            backend: StoreBackend::Sqlite {
                path: state_dir.join("store.sqlite3"),
            },
            node: node.to_string(),
            retention: Duration::from_secs(30 * 86400),
            tenant_retention: BTreeMap::new(),
            quarantine_max_size: 1024 * 1024 * 1024,
            write_queue: 10_000,
        }
    }
}

pub(super) fn read_store(s: &Section, state_dir: &Path, hostname: &str, base: &Path) -> StoreConfig {
    let mut cfg = StoreConfig::embedded(state_dir, hostname);
    let password_file = s.opt_path("password_file", base);
    if let Some(url) = s.opt_string("url").filter(|u| !u.is_empty()) {
        if url.starts_with("postgresql://") || url.starts_with("postgres://") {
            match url.parse::<tokio_postgres::Config>() {
                Ok(_) => cfg.backend = StoreBackend::Postgres { url, password_file },
                Err(e) => s.error("url", format!("not a PostgreSQL URL ({}): {e}", redact_url(&url))),
            }
        } else {
            s.error(
                "url",
                format!(
                    "expected \"postgresql://user:password@host:5432/database\" (or no url for the embedded SQLite store), found \"{}\"",
                    redact_url(&url)
                ),
            );
        }
    } else if password_file.is_some() {
        s.error("password_file", "applies to a PostgreSQL url only");
    }
    if let Some(node) = s.opt_string("node") {
        if node.is_empty() || node.len() > 64 || node.contains(|c: char| c.is_whitespace() || c.is_control()) {
            s.error("node", "must be 1 to 64 characters without spaces");
        } else {
            cfg.node = node;
        }
    }
    cfg.retention = s.duration_or("retention", cfg.retention);
    if cfg.retention < Duration::from_secs(3600) {
        s.error("retention", "must be at least 1h");
    }
    if let Some(per) = s.section("tenant_retention") {
        for key in per.table().keys() {
            if let Some(d) = per.opt_duration(key) {
                cfg.tenant_retention.insert(key.clone(), d);
            }
        }
    }
    cfg.quarantine_max_size = s.size_or("quarantine_max_size", cfg.quarantine_max_size);
    if cfg.quarantine_max_size < 64 * 1024 {
        s.error("quarantine_max_size", "must be at least 64KiB");
    }
    cfg.write_queue = s.u64_in("write_queue", cfg.write_queue as u64, 16, 10_000_000) as usize;
    cfg
}

#[cfg(test)]
mod tests {
    use super::redact_url;

    #[test]
    fn passwords_never_show() {
        assert_eq!(
            redact_url("postgresql://gw:s3cret@db:5432/exogate"),
            "postgresql://gw:***@db:5432/exogate"
        );
        assert_eq!(redact_url("postgresql://gw:p@ss@db/x"), "postgresql://gw:***@db/x");
        assert_eq!(redact_url("postgresql://gw@db/x"), "postgresql://gw@db/x");
        assert!(
            !format!(
                "{:?}",
                super::StoreBackend::Postgres {
                    url: "postgres://a:zz9@h/d".into(),
                    password_file: None,
                }
            )
            .contains("zz9")
        );
    }
}
