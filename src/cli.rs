//! The command line: `run`, `check-config`, `scan` (in `cli/scan.rs`),
//! `queue` and `reports` maintenance (in `cli/spool.rs`: reads directly;
//! changes under the state directory's lock when no gateway runs, else
//! through the running gateway's control socket, `app::control`), the
//! store's `events` and `quarantine` commands (in `cli/store.rs`),
//! `remediate` (in `cli/remediate.rs`), `exo-setup`, `sink`, `test-relay`
//! and `healthcheck`.

use std::path::{Path, PathBuf};

use clap::{Parser, Subcommand};

mod remediate;
mod scan;
mod store;

pub use remediate::{RemediateArgs, run as remediate};
pub use scan::{ScanArgs, run as scan};
pub use store::{EventsAction, QuarantineAction, SearchArgs, events_command, quarantine_command};

use crate::app::{self, AppError};

pub mod healthcheck;
pub mod sink;
mod spool;
mod test_relay;

pub use spool::{Select, SpoolAction, spool_command};
pub use test_relay::test_relay;

#[derive(Parser)]
#[command(
    name = "exogate",
    version,
    about = "Inline SMTP security gateway for Microsoft Exchange Online"
)]
pub struct Cli {
    /// The configuration file.
    #[arg(long, global = true, default_value = "/etc/exogate/gateway.toml")]
    pub config: PathBuf,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Run the gateway.
    Run {
        /// Log as JSON lines (overrides log.format).
        #[arg(long)]
        log_json: bool,
    },
    /// Validate a configuration and print every problem; exit 64 if there is one.
    CheckConfig,
    /// Judge messages (files, or - for standard input) with a tenant's policy and print why.
    Scan(ScanArgs),
    /// Remove a delivered message from mailboxes through the tenant's [tenant.remediation] (Graph or EWS).
    Remediate(RemediateArgs),
    /// Inspect and manage the delivery queue.
    Queue {
        #[command(subcommand)]
        action: SpoolAction,
    },
    /// Search, show, release, delete and allow quarantined messages (the store).
    Quarantine {
        #[command(subcommand)]
        action: QuarantineAction,
    },
    /// Search the message history (the store).
    Events {
        #[command(subcommand)]
        action: EventsAction,
    },
    /// Journal reports that could not be read (monitor mode), kept in
    /// quarantine-reports/: list, show, export, delete.
    Reports {
        #[command(subcommand)]
        action: SpoolAction,
    },
    /// Print the Exchange Online PowerShell that wires a tenant to this gateway.
    ExoSetup {
        /// The tenant's portal name.
        #[arg(long)]
        tenant: String,
    },
    /// A small receiving MTA (STARTTLS with --tls-cert/--tls-key) storing each message in DIR
    /// as ID.eml with its envelope in ID.json: a downstream for trying the gateway out.
    Sink {
        /// Address to listen on (port 0: any free port, printed at start).
        #[arg(long)]
        listen: std::net::SocketAddr,
        /// Folder for the received messages (created if missing).
        #[arg(long)]
        dir: PathBuf,
        /// Certificate chain (PEM) to offer STARTTLS with.
        #[arg(long, requires = "tls_key")]
        tls_cert: Option<PathBuf>,
        /// Its private key (PEM).
        #[arg(long, requires = "tls_cert")]
        tls_key: Option<PathBuf>,
        /// The name in the greeting and EHLO reply.
        #[arg(long, default_value = "sink.localhost")]
        hostname: String,
    },
    /// Connect to a tenant's destination as a delivery would (egress address, STARTTLS,
    /// certificate checks, client certificate) and report each step, without sending mail.
    TestRelay {
        /// The tenant's portal name.
        #[arg(long)]
        tenant: String,
        /// The recipient to try (default: postmaster at the tenant's first domain).
        #[arg(long)]
        rcpt: Option<String>,
    },
    /// Ask a running gateway's admin listener for /healthz: exit 0 on HTTP 200, 1 otherwise.
    /// The container image's HEALTHCHECK. Reads no configuration.
    Healthcheck {
        /// The admin listener (admin.listen).
        #[arg(default_value = healthcheck::DEFAULT_ADDR)]
        addr: String,
    },
    /// Read a password from standard input and print its argon2id hash for `[[web.account]] password_hash`.
    HashPassword,
    /// End users' quarantine digests ([tenant.digest]).
    Digest {
        #[command(subcommand)]
        action: DigestAction,
    },
}

#[derive(Subcommand, Clone)]
pub enum DigestAction {
    /// Send the digests now (every tenant with [tenant.digest] enabled, or only --tenant).
    Send {
        /// Only this tenant (portal name).
        #[arg(long)]
        tenant: Option<String>,
    },
}

/// The output of a maintenance command (printed by `main`).
/// What a maintenance command prints.
pub enum Output {
    Text(String),
    Bytes(Vec<u8>),
}

impl From<String> for Output {
    fn from(s: String) -> Output {
        Output::Text(s)
    }
}

/// `hash-password`: reads one line (without echo on a terminal) and prints
/// its argon2id PHC string. The password is never printed or logged.
pub fn hash_password() -> Result<String, AppError> {
    use std::io::{BufRead, IsTerminal};
    let tty = std::io::stdin().is_terminal();
    let echo = |on: bool| {
        // stty on the terminal we read from; without it the password is shown, which is only cosmetic.
        let _ = std::process::Command::new("stty")
            .arg(if on { "echo" } else { "-echo" })
            .stdin(std::process::Stdio::inherit())
            .status();
    };
    if tty {
        eprint!("Password: ");
        echo(false);
    }
    let mut line = String::new();
    let read = std::io::stdin().lock().read_line(&mut line);
    if tty {
        echo(true);
        eprintln!();
    }
    read.map_err(|e| AppError::Other(format!("cannot read the password: {e}")))?;
    let password = line.trim_end_matches(['\r', '\n']);
    if password.is_empty() {
        return Err(AppError::Other("empty password: nothing to hash".into()));
    }
    let hash = crate::web::accounts::hash_password(password).map_err(AppError::Other)?;
    Ok(format!("{hash}\n"))
}

/// `digest send`: queues the end users' digests now; the running gateway
/// delivers them (its queue is asked to look at once).
pub fn digest(config: &Path, action: DigestAction) -> Result<String, AppError> {
    let DigestAction::Send { tenant } = action;
    let cfg = crate::config::Config::load(config)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| AppError::Other(format!("cannot start the async runtime: {e}")))?;
    rt.block_on(async {
        let store = crate::store::Store::open(&cfg.store, &cfg.server.state_dir)
            .await
            .map_err(|e| AppError::Other(format!("store: {e}")))?;
        let spool = crate::spool::Spool::open(&cfg.server.state_dir)?;
        let backend = crate::web::store_backend::StoreAccess::new(store, &cfg.server.state_dir);
        let now = crate::spool::now_unix();
        let lines = crate::web::digest::send_now(&cfg, &backend, &spool, tenant.as_deref(), now)
            .await
            .map_err(AppError::Other)?;
        Ok(lines.iter().map(|l| format!("{l}\n")).collect())
    })
}

/// `exo-setup`: the PowerShell script for one tenant.
pub fn exo_setup(config: &Path, portal: &str) -> Result<String, AppError> {
    let cfg = crate::config::Config::load(config)?;
    Ok(crate::exo_setup::script(&cfg, portal)?)
}

/// `check-config`: every problem, or "ok".
pub fn check_config(config: &Path) -> Result<String, AppError> {
    let rt = app::load(config, true)?;
    let mut out = format!("{}: ok\n", config.display());
    for w in rt.config.warnings() {
        out.push_str(&format!("warning: {w}\n"));
    }
    if rt.certificate_pending() {
        out.push_str("note: a self-signed TLS certificate will be generated at start (tls.generate = true)\n");
    }
    Ok(out)
}
