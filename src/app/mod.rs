//! The gateway as a process: load and build the configuration, recover the
//! spool, bind every socket, wire the stages together and start them, tell
//! systemd we are ready, then react to signals (SIGHUP reload; SIGTERM/SIGINT
//! graceful stop; a second one stops at once).
//!
//! `app` is the only place that knows every stage: it builds each stage's
//! context (`inbound::Context`, `delivery::Context`, `web::Context`) and
//! passes it down; nothing imports `app` but the command line. The whole
//! configuration is validated and built before any socket is bound. A reload
//! builds a complete new snapshot first and swaps it in atomically; sessions
//! keep the one they started with. Shutdown stops accepting, lets sessions
//! finish within `server.shutdown_grace`, then answers 421 to whatever is
//! left: the spool is consistent at every instant, so even an immediate exit
//! loses nothing that was acknowledged.

pub(crate) mod control;
#[doc(hidden)]
pub mod fuzz;
mod reload;
pub mod scan;
mod shutdown;
mod snapshot;
mod start;
mod systemd;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::signal::unix::{SignalKind, signal};

use crate::config::reader::ConfigError;
use crate::config::{Config, LoadError};
use crate::scan::pipeline::Policy;
pub use scan::{ScanOptions, Scanned, Scanner};
pub use snapshot::Snapshot;

/// Why the daemon could not start or run.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error(transparent)]
    Config(#[from] LoadError),
    #[error("{} problem(s) in {}:\n{}", .1.len(), .0.display(), .1.iter().map(|e| format!("  {e}")).collect::<Vec<_>>().join("\n"))]
    Build(PathBuf, Vec<ConfigError>),
    #[error("spool: {0}")]
    Spool(#[from] crate::spool::SpoolError),
    #[error("store: {0}")]
    Store(#[from] crate::store::StoreError),
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
    #[error(transparent)]
    ExoSetup(#[from] crate::exo_setup::ExoSetupError),
    #[error(transparent)]
    Locked(#[from] crate::spool::LockError),
    #[error("{0}")]
    Other(String),
}

impl AppError {
    /// Configuration problems exit with 64 (EX_USAGE), a state directory
    /// another gateway holds with 75 (EX_TEMPFAIL), everything else with 1.
    pub fn exit_code(&self) -> i32 {
        match self {
            AppError::Config(_) | AppError::Build(..) | AppError::ExoSetup(_) => 64,
            AppError::Locked(_) => 75,
            _ => 1,
        }
    }
}

/// Loads the configuration and builds a snapshot of it (at start, on reload
/// and for check-config).
pub fn load(path: &Path, dry_run: bool) -> Result<Snapshot, AppError> {
    let (config, policies) = load_policies(path)?;
    Snapshot::build(config, policies, dry_run).map_err(|errors| AppError::Build(path.to_path_buf(), errors))
}

/// Loads the configuration and builds its policies, reporting every problem
/// of both at once (what `load` and `scan` share).
fn load_policies(path: &Path) -> Result<(Config, BTreeMap<String, Arc<Policy>>), AppError> {
    let (config, mut errors) = Config::load_collecting(path)?;
    // The checks read their own options: their problems join config's, so
    // that every mistake is reported at once.
    let policies = crate::checks::policies(&config).unwrap_or_else(|e| {
        errors.extend(e);
        Default::default()
    });
    if !errors.is_empty() {
        errors.sort_by(|a, b| a.path.cmp(&b.path));
        return Err(LoadError::Invalid {
            path: path.to_path_buf(),
            errors,
        }
        .into());
    }
    Ok((config, policies))
}

/// Takes the lock on the configured state directory, before anything in it
/// is touched (building a snapshot may generate a certificate there; start
/// recovers the spool). Only the configuration file is read.
pub fn lock_state(path: &Path) -> Result<crate::spool::StateLock, AppError> {
    let config = Config::load(path)?;
    Ok(crate::spool::StateLock::acquire(&config.server.state_dir)?)
}

/// Runs the gateway until it is told to stop, holding `lock` (from
/// [`lock_state`]) throughout.
pub async fn run(config_path: PathBuf, snapshot: Snapshot, lock: crate::spool::StateLock) -> Result<(), AppError> {
    tracing::info!(lock = %lock.path().display(), "state directory locked");
    for w in snapshot.config.warnings() {
        tracing::warn!("{w}");
    }
    let grace = snapshot.config.server.shutdown_grace;
    let queue_drain = snapshot.config.server.queue_drain;
    let gateway = start::start(snapshot).await?;
    let drops = tokio::spawn(crate::telemetry::log::report_drops());
    systemd::ready("accepting mail");

    let signal_error = |e: std::io::Error| AppError::Other(e.to_string());
    let mut hup = signal(SignalKind::hangup()).map_err(signal_error)?;
    let mut term = signal(SignalKind::terminate()).map_err(signal_error)?;
    let mut int = signal(SignalKind::interrupt()).map_err(signal_error)?;
    loop {
        tokio::select! {
            _ = hup.recv() => reload::reload(&config_path, &gateway),
            _ = term.recv() => break,
            _ = int.recv() => break,
        }
    }
    shutdown::shutdown(gateway, grace, queue_drain, &mut term, &mut int).await;
    drops.abort();
    drop(lock);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Config's own problems and those the checks find in their options are
    /// reported together, in path order, as before checks were built outside
    /// config.
    #[test]
    fn config_and_check_option_problems_are_reported_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gateway.toml");
        std::fs::write(
            &path,
            r#"
[server]
listen = ["127.0.0.1:2525"]
state_dir = "state"
[tls]
generate = true
[policy.default]
[[policy.default.check]]
kind = "attachments"
no_such_option = 1
[[policy.default.check]]
kind = "nonsense"
[[tenant]]
portal = "contoso"
domains = ["contoso.com"]
deliver_to = ["mx.contoso.com:notaport"]
"#,
        )
        .unwrap();
        let Err(AppError::Config(LoadError::Invalid { errors, .. })) = load(&path, true) else {
            panic!("the configuration should be refused");
        };
        let errors: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert_eq!(errors.len(), 3, "{errors:#?}");
        assert_eq!(errors[0], "policy.default.check[0].no_such_option: unknown key");
        assert!(
            errors[1].starts_with("policy.default.check[1].kind: unknown check kind \"nonsense\""),
            "{errors:#?}"
        );
        assert!(
            errors[2].starts_with("tenant[0].deliver_to[0]: expected \"host:port\""),
            "{errors:#?}"
        );
    }
}
