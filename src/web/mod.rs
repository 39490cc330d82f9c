//! What the gateway serves over HTTP: the admin endpoint (`/metrics`,
//! `/healthz`, `/readyz`) and the `[web]` listener (the admin web page, its
//! JSON API and the end-user digest's release links), plus the digest mails.
//!
//! Owns: answering those requests, bounded in size and time; accounts,
//! sessions, CSRF tokens, the login rate limit, tenant scoping; building and
//! queueing digests. Must never: serve message bytes for a browser to
//! interpret, trust a tenant named by a request over the session's, or
//! reach the store other than through [`backend::Backend`]. `app` builds the
//! contexts and passes them down.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::spool::Spool;
use crate::telemetry::metrics::Metrics;

pub(crate) mod accounts;
pub(crate) mod admin;
mod api;
pub(crate) mod backend;
pub(crate) mod digest;
mod digest_routes;
pub(crate) mod links;
#[cfg(test)]
pub(crate) mod memory;
mod pages;
mod ratelimit;
pub(crate) mod routes;
pub(crate) mod server;
mod sessions;
pub(crate) mod store_backend;
#[cfg(test)]
mod tests;
mod view;

/// What the admin endpoint reads, built by `app` and passed down.
pub(crate) struct Context {
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) spool: Arc<Spool>,
    /// Set once every listener is bound.
    pub(crate) listeners_bound: Arc<AtomicBool>,
    /// Cancelled when the gateway starts shutting down.
    pub(crate) stopping: CancellationToken,
    /// Events, the quarantine, audit (what the web pages read and change).
    #[allow(dead_code)]
    pub(crate) store: crate::store::Store,
}

/// Starts the `[web]` listener on `listener` with the store's data; stops with `stop`.
pub(crate) fn start(
    listener: tokio::net::TcpListener,
    cfg: &Arc<Config>,
    store: crate::store::Store,
    spool: Arc<Spool>,
    stop: CancellationToken,
) -> Result<tokio::task::JoinHandle<()>, String> {
    let backend: Arc<dyn backend::Backend> = Arc::new(store_backend::StoreAccess::new(store, &cfg.server.state_dir));
    let state = state(cfg, backend.clone())?;
    let tls = tls_config(cfg)?;
    if cfg.web.accounts.is_empty() {
        tracing::warn!("[web] has no [[web.account]]: nobody can log in (digest links still work)");
    }
    tokio::spawn(digest::schedule(cfg.clone(), backend, spool, stop.clone()));
    Ok(tokio::spawn(server::serve(listener, tls, routes::router(state), stop)))
}

/// The `[web]` listener's state for `cfg`, on `backend`.
pub(crate) fn state(cfg: &Config, backend: Arc<dyn backend::Backend>) -> Result<routes::Shared, String> {
    let links = links::LinkKey::load(cfg.web.digest_key.as_deref(), &cfg.server.state_dir)?;
    Ok(Arc::new(routes::WebState {
        backend,
        accounts: Arc::new(accounts::Accounts::new(&cfg.web.accounts)),
        sessions: sessions::Sessions::new(cfg.web.session_ttl),
        limiter: ratelimit::LoginLimiter::new(cfg.web.login_attempts_per_minute),
        links,
        tls: !cfg.web.plaintext,
        public_origin: origin_of(&cfg.web.public_url),
    }))
}

/// The origin (`scheme://host[:port]`) of a URL, as browsers send it in `Origin`.
fn origin_of(url: &str) -> Option<String> {
    let parsed = url::Url::parse(url).ok()?;
    Some(parsed.origin().ascii_serialization()).filter(|o| o != "null")
}

/// The TLS configuration of the `[web]` listener (`None` when plaintext).
pub(crate) fn tls_config(cfg: &Config) -> Result<Option<Arc<rustls::ServerConfig>>, String> {
    if cfg.web.plaintext {
        return Ok(None);
    }
    let certs = crate::tls::load_certs(&cfg.web.cert).map_err(|e| format!("web.cert: {e}"))?;
    let key = crate::tls::load_key(&cfg.web.key).map_err(|e| format!("web.key: {e}"))?;
    let mut server = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("web TLS: {e}"))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| format!("web.cert/web.key: {e}"))?;
    server.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Some(Arc::new(server)))
}

/// The base URL of digest links: `[web] public_url`, else derived from the listener.
pub(crate) fn public_url(cfg: &Config) -> String {
    if !cfg.web.public_url.is_empty() {
        return cfg.web.public_url.clone();
    }
    let scheme = if cfg.web.plaintext { "http" } else { "https" };
    let port = cfg.web.listen.map_or(8443, |a| a.port());
    format!("{scheme}://{}:{port}", cfg.server.hostname)
}
