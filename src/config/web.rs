//! `[web]` (the admin web page and API listener, its accounts) and a
//! tenant's `[tenant.digest]` (the end-user quarantine digest), as data.
//!
//! Invariants: the listener is TLS unless `plaintext = true` is set *and* it
//! listens on a loopback address; every account has a parseable argon2 PHC
//! hash, a role, and (for a tenant admin) a configured tenant. Must never:
//! hold a password in clear, or open anything (the web stage does).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::config::reader::Section;
use crate::config::tenant::Tenant;

/// What an account may see.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    /// Every tenant's messages.
    Admin,
    /// Only this tenant's (portal) messages.
    Tenant(String),
}

/// One `[[web.account]]`.
#[derive(Clone)]
pub struct Account {
    pub name: String,
    /// An argon2 PHC string (`exogate hash-password` prints one).
    pub password_hash: String,
    pub role: Role,
}

impl std::fmt::Debug for Account {
    // The hash is not a secret in the strict sense, but it has no business in logs either.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Account")
            .field("name", &self.name)
            .field("role", &self.role)
            .finish_non_exhaustive()
    }
}

/// `[web]`.
#[derive(Debug, Clone)]
pub struct WebConfig {
    /// `None`: no `[web]` section (or `listen = ""`), no listener.
    pub listen: Option<SocketAddr>,
    /// Serve plain HTTP (loopback only, e.g. behind a TLS-terminating proxy on the same host).
    pub plaintext: bool,
    pub cert: PathBuf,
    pub key: PathBuf,
    /// How long a session lives after login.
    pub session_ttl: Duration,
    /// Failed logins allowed per minute, per client address and per account name.
    pub login_attempts_per_minute: u32,
    /// The base URL end users' digest links point to ("" = derived from `listen`).
    pub public_url: String,
    /// The digest link key file; `None` = `state_dir/web/digest.key`, generated when absent.
    pub digest_key: Option<PathBuf>,
    pub accounts: Vec<Account>,
}

/// `[tenant.digest]`.
#[derive(Debug, Clone)]
pub struct DigestConfig {
    pub enabled: bool,
    /// The hour (UTC, 0..=23) the daily digest goes out.
    pub hour: u8,
    /// The digest's From and envelope sender ("" = `quarantine@` + server.hostname).
    pub from: String,
    /// How long a release link stays valid.
    pub link_ttl: Duration,
    /// Entries per digest mail at most (the newest first).
    pub max_entries: usize,
}

pub(crate) fn read_digest(s: &Section<'_>) -> DigestConfig {
    let from = s.string_or("from", "");
    if !from.is_empty() && !from.contains('@') {
        s.error("from", format!("expected an email address, found \"{from}\""));
    }
    DigestConfig {
        enabled: s.bool_or("enabled", false),
        hour: s.u64_in("hour", 7, 0, 23) as u8,
        from,
        link_ttl: s.duration_or("link_ttl", Duration::from_secs(3 * 86400)),
        max_entries: s.u64_in("max_entries", 100, 1, 10_000) as usize,
    }
}

/// Reads `[web]`; `s` is `None` when the section is absent.
pub(crate) fn read_web(
    s: Option<&Section<'_>>,
    base: &Path,
    tls_cert: &Path,
    tls_key: &Path,
    tenants: &[Tenant],
) -> WebConfig {
    let mut web = WebConfig {
        listen: None,
        plaintext: false,
        cert: tls_cert.to_path_buf(),
        key: tls_key.to_path_buf(),
        session_ttl: Duration::from_secs(8 * 3600),
        login_attempts_per_minute: 5,
        public_url: String::new(),
        digest_key: None,
        accounts: Vec::new(),
    };
    let Some(s) = s else { return web };
    web.listen = match s.opt_string("listen") {
        None => Some(SocketAddr::from(([127, 0, 0, 1], 8443))),
        Some(t) if t.is_empty() => None,
        Some(t) => match t.parse::<SocketAddr>() {
            Ok(a) => Some(a),
            Err(_) => {
                s.error(
                    "listen",
                    format!("expected \"ip:port\" such as \"127.0.0.1:8443\", found \"{t}\""),
                );
                None
            }
        },
    };
    web.plaintext = s.bool_or("plaintext", false);
    if web.plaintext
        && let Some(addr) = web.listen
        && !addr.ip().is_loopback()
    {
        s.error(
            "plaintext",
            format!("plain HTTP is only allowed on a loopback address, but listen is {addr}"),
        );
    }
    if let Some(p) = s.opt_path("cert", base) {
        web.cert = p;
    }
    if let Some(p) = s.opt_path("key", base) {
        web.key = p;
    }
    web.session_ttl = s.duration_or("session_ttl", web.session_ttl);
    if web.session_ttl < Duration::from_secs(60) {
        s.error("session_ttl", "must be at least 1m");
    }
    web.login_attempts_per_minute = s.u64_in("login_attempts_per_minute", 5, 1, 1000) as u32;
    web.public_url = s.string_or("public_url", "").trim_end_matches('/').to_string();
    if !web.public_url.is_empty() && !web.public_url.starts_with("https://") && !web.public_url.starts_with("http://") {
        s.error(
            "public_url",
            format!(
                "expected an http(s) URL such as \"https://gw.example.net:8443\", found \"{}\"",
                web.public_url
            ),
        );
    }
    web.digest_key = s.opt_path("digest_key", base);
    if let Some(p) = &web.digest_key
        && !p.exists()
    {
        s.error("digest_key", format!("file {} does not exist", p.display()));
    }
    let mut names = std::collections::HashSet::new();
    for a in s.sections("account") {
        if let Some(account) = read_account(&a, tenants) {
            if !names.insert(account.name.clone()) {
                a.error(
                    "name",
                    format!("\"{}\" is already used by another account", account.name),
                );
            }
            web.accounts.push(account);
        }
    }
    web
}

fn read_account(a: &Section<'_>, tenants: &[Tenant]) -> Option<Account> {
    let name = a.opt_string("name");
    let hash = a.opt_string("password_hash");
    let role = a.opt_string("role");
    let tenant = a.opt_string("tenant");
    let Some(name) = name.filter(|n| !n.is_empty()) else {
        a.error("name", "missing: the account's login name");
        return None;
    };
    if name.len() > 64 || name.chars().any(|c| c.is_control() || c.is_whitespace()) {
        a.error(
            "name",
            "must be 1 to 64 characters without spaces or control characters",
        );
    }
    let Some(hash) = hash else {
        a.error(
            "password_hash",
            "missing: an argon2 PHC string such as \"$argon2id$v=19$...\" (exogate hash-password prints one)",
        );
        return None;
    };
    match argon2::PasswordHash::new(&hash) {
        Ok(h) if h.algorithm.as_str().starts_with("argon2") => {}
        Ok(h) => a.error(
            "password_hash",
            format!("expected an argon2 hash, found algorithm \"{}\"", h.algorithm),
        ),
        Err(_) => a.error(
            "password_hash",
            "not a PHC string such as \"$argon2id$v=19$...\" (exogate hash-password prints one)",
        ),
    }
    let role = match (role.as_deref(), tenant) {
        (Some("admin"), None) => Role::Admin,
        (Some("admin"), Some(_)) => {
            a.error(
                "tenant",
                "an admin sees every tenant; remove tenant or use role = \"tenant\"",
            );
            Role::Admin
        }
        (Some("tenant"), Some(t)) => {
            if !tenants.iter().any(|x| x.portal == t) {
                a.error("tenant", format!("no [[tenant]] has portal \"{t}\""));
            }
            Role::Tenant(t)
        }
        (Some("tenant"), None) => {
            a.error("tenant", "missing: the portal of the tenant this account administers");
            return None;
        }
        (Some(other), _) => {
            a.error("role", format!("expected \"admin\" or \"tenant\", found \"{other}\""));
            return None;
        }
        (None, _) => {
            a.error("role", "missing: \"admin\" or \"tenant\"");
            return None;
        }
    };
    Some(Account {
        name,
        password_hash: hash,
        role,
    })
}
