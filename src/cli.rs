//! The command line: `run`, `check-config`, `scan` (in `cli/scan.rs`),
//! `remediate` (in `cli/remediate.rs`), `queue`, `quarantine` and `reports`
//! maintenance, and `exo-setup`.
//!
//! The spool commands work on the files of a running or stopped gateway
//! without corrupting them. `list`, `show` and `export` only read. `delete`,
//! `flush` and `release` change files: they take the state directory's lock
//! when no gateway runs, and otherwise ask the running gateway through its
//! control socket (`app::control`), so no second process works on the spool
//! behind its owner's back.

use std::path::{Path, PathBuf};

use clap::{Parser, Subcommand};

use crate::app::control::{self, Change};

mod remediate;
mod scan;

pub use remediate::{RemediateArgs, run as remediate};
pub use scan::{ScanArgs, run as scan};

use crate::app::{self, AppError};
use crate::spool::{Area, LockError, Spool, StateLock, valid_id};

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
    /// Inspect and manage quarantined messages.
    Quarantine {
        #[command(subcommand)]
        action: SpoolAction,
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
}

#[derive(Subcommand, Clone)]
pub enum SpoolAction {
    /// One line per message: id, age, tenant, sender, recipients, state.
    List,
    /// Envelope, verdict, history and header of one message.
    Show { id: String },
    /// Delete one message for good.
    Delete { id: String },
    /// Write the message exactly as it will be relayed (stamp included) to standard output.
    Export { id: String },
    /// Queue: retry every message now. Quarantine: not available.
    Flush,
    /// Quarantine: deliver the message after all. Queue: not available.
    Release { id: String },
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

pub fn spool_command(config: &Path, area: Area, action: SpoolAction) -> Result<Output, AppError> {
    let cfg = crate::config::Config::load(config)?;
    let spool = Spool::open(&cfg.server.state_dir)?;
    let check_id = |id: &str| {
        if valid_id(id) {
            Ok(())
        } else {
            Err(AppError::Other(format!("\"{id}\" is not a queue id")))
        }
    };
    match (area, action) {
        (_, SpoolAction::List) => {
            let now = crate::spool::now_unix();
            let mut out = String::new();
            let ids = spool.list(area)?;
            for id in &ids {
                match spool.entry(area, id) {
                    Ok(e) => {
                        let m = &e.trailer.meta;
                        let state = e
                            .events
                            .iter()
                            .rev()
                            .find_map(|ev| match ev {
                                crate::spool::StateEvent::Deferred { attempts, error, .. } => {
                                    Some(format!("deferred x{attempts}: {error}"))
                                }
                                _ => None,
                            })
                            .unwrap_or_else(|| "new".into());
                        let verdict = m
                            .verdict
                            .as_ref()
                            .map(|v| format!("{} {:.1}", v.action, v.score))
                            .unwrap_or_default();
                        out.push_str(&format!(
                            "{id}  {:>6}s  {:<12} <{}> -> {} rcpt  {}  {}\n",
                            now - m.received,
                            m.tenant,
                            m.envelope.mail_from,
                            m.envelope.recipients.len(),
                            verdict,
                            state
                        ));
                    }
                    Err(e) => out.push_str(&format!("{id}  unreadable: {e}\n")),
                }
            }
            out.push_str(&format!("{} message(s)\n", ids.len()));
            Ok(out.into())
        }
        (_, SpoolAction::Show { id }) => {
            check_id(&id)?;
            let e = spool.entry(area, &id)?;
            let stored = spool.read(area, &id)?;
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
        (_, SpoolAction::Export { id }) => {
            check_id(&id)?;
            let stored = spool.read(area, &id)?;
            let stamp =
                crate::message::stamp::Stamp::from_stored(stored.trailer.prefix.clone(), &stored.trailer.meta.skips);
            Ok(Output::Bytes(stamp.apply(&stored.body)))
        }
        (_, SpoolAction::Delete { id }) => {
            check_id(&id)?;
            change(&cfg.server.state_dir, &spool, Change::Delete(area, id))
        }
        (Area::Active, SpoolAction::Flush) => change(&cfg.server.state_dir, &spool, Change::Flush),
        (Area::Quarantine, SpoolAction::Release { id }) => {
            check_id(&id)?;
            change(&cfg.server.state_dir, &spool, Change::Release(id))
        }
        (Area::Quarantine, SpoolAction::Flush) => {
            Err(AppError::Other("flush applies to the queue, not the quarantine".into()))
        }
        (Area::Active, SpoolAction::Release { .. }) => Err(AppError::Other(
            "release applies to the quarantine, not the queue".into(),
        )),
        (Area::Reports, SpoolAction::Flush | SpoolAction::Release { .. }) => Err(AppError::Other(
            "journal reports that could not be read are only kept: list, show, export or delete them".into(),
        )),
    }
}

/// A change to the spool: under the lock when no gateway runs, else through
/// the running gateway.
fn change(state_dir: &Path, spool: &Spool, change: Change) -> Result<Output, AppError> {
    let text = match StateLock::acquire(state_dir) {
        Ok(lock) => {
            let text = control::apply(spool, &change)?;
            drop(lock);
            text
        }
        Err(LockError::Held { .. }) => control::request(state_dir, &change)?,
        Err(e) => return Err(e.into()),
    };
    Ok(Output::Text(format!("{text}\n")))
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
