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
    use crate::config::{Config, LoadError};

    fn problems(store: &str) -> Vec<String> {
        let text = format!(
            "[server]\nlisten = [\"127.0.0.1:25\"]\nstate_dir = \"/var/lib/x\"\n[tls]\ngenerate = true\n{store}"
        );
        match Config::parse(&text, std::path::Path::new("/etc/exogate/gateway.toml")) {
            Ok(_) => vec![],
            Err(LoadError::Invalid { errors, .. }) => errors.iter().map(ToString::to_string).collect(),
            Err(e) => vec![e.to_string()],
        }
    }

    #[test]
    fn store_keys_are_checked_by_name() {
        assert!(problems("").is_empty());
        let p = problems(
            "[store]\nurl = \"mysql://gw:hunter2@db/x\"\nretention = \"10m\"\nquarantine_max_size = 100\nbackend = \"postgres\"\n",
        );
        assert_eq!(p.len(), 4, "{p:?}");
        assert!(
            p.iter().any(|e| e.starts_with("store.url: expected \"postgresql://")),
            "{p:?}"
        );
        assert!(
            p.iter().all(|e| !e.contains("hunter2")),
            "no password in a message: {p:?}"
        );
        assert!(p.contains(&"store.retention: must be at least 1h".to_string()), "{p:?}");
        assert!(
            p.contains(&"store.quarantine_max_size: must be at least 64KiB".to_string()),
            "{p:?}"
        );
        assert!(p.contains(&"store.backend: unknown key".to_string()), "{p:?}");
        assert_eq!(
            problems("[store]\npassword_file = \"/run/secrets/pw\"\n"),
            vec!["store.password_file: applies to a PostgreSQL url only".to_string()]
        );
        let ok = Config::parse(
            "[server]\nlisten = [\"127.0.0.1:25\"]\nstate_dir = \"/var/lib/x\"\n[tls]\ngenerate = true\n\
             [store]\nurl = \"postgresql://gw@db:5432/exogate\"\npassword_file = \"pw\"\nnode = \"gw-a\"\n\
             tenant_retention = { contoso = \"90d\" }\n",
            std::path::Path::new("/etc/exogate/gateway.toml"),
        )
        .unwrap();
        assert_eq!(
            ok.store.backend,
            super::StoreBackend::Postgres {
                url: "postgresql://gw@db:5432/exogate".into(),
                password_file: Some("/etc/exogate/pw".into()),
            }
        );
        assert_eq!(ok.store.node, "gw-a");
        assert_eq!(ok.store.retention_of("contoso").as_secs(), 90 * 86400);
        assert_eq!(ok.store.retention_of("fabrikam").as_secs(), 30 * 86400);
    }

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
