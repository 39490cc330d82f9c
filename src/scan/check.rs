//! The check contract: what a check is given ([`ScanInput`]), what it
//! answers (findings or a [`CheckError`]), and what its builder gets besides
//! its own options ([`BuildContext`]).
//!
//! Checks read; they never write SMTP replies, never touch the raw bytes that
//! will be relayed and never decide the action alone (they may *force* one
//! through a finding). The checks themselves and the factory that builds them
//! live in `checks`; nothing in `scan` names a check.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use mail_parser::Message;

use crate::config::sender::AuthConfig;
use crate::config::tenant::Tenant;
use crate::dns::Dns;
use crate::message::auth::AuthResults;
use crate::message::envelope::{Direction, Envelope, SessionFacts};
use crate::message::verdict::{Finding, OnError};
use crate::scan::view::View;

/// Everything a check may look at.
pub struct ScanInput<'a> {
    /// The message bytes as received (or only its header when `truncated`).
    pub raw: &'a [u8],
    /// The parsed message (the same as `view.message`).
    pub message: &'a Message<'a>,
    /// The one view of the message every check reads: attachments (TNEF and
    /// archive members included), the text a reader sees and the links a
    /// reader can follow. Empty but for the message when `truncated`.
    pub view: &'a View<'a>,
    pub envelope: &'a Envelope,
    pub session: &'a SessionFacts,
    pub tenant: &'a Tenant,
    pub direction: Direction,
    /// The message was larger than the policy's `scan_max_size`: only the
    /// header was parsed and `raw` holds just the header.
    pub truncated: bool,
    /// The session was admitted as the tenant's Exchange Online connection
    /// (its fields may be trusted for the original sender).
    pub exo_session: bool,
    /// The queue id the message was given (for scanners that log it).
    pub queue_id: &'a str,
    /// Sender authentication, when the policy runs it (it runs before every
    /// check and its results are handed to all of them).
    pub auth: Option<&'a AuthResults>,
}

/// Why a check could not answer. Temporary versus permanent does not matter
/// here: every failure is routed through the check's `on_error` policy.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    #[error("scanner unavailable: {0}")]
    Unavailable(String),
    #[error("scanner protocol error: {0}")]
    Protocol(String),
    #[error("{0}")]
    Other(String),
}

impl From<std::io::Error> for CheckError {
    fn from(e: std::io::Error) -> Self {
        CheckError::Unavailable(e.to_string())
    }
}

/// One scanning engine or rule set.
#[async_trait]
pub trait Check: Send + Sync {
    /// Its `kind` in the configuration.
    fn kind(&self) -> &'static str;

    async fn scan(&self, input: &ScanInput<'_>) -> Result<Vec<Finding>, CheckError>;
}

/// What a check builder gets besides its own options.
pub struct BuildContext {
    /// Folder of the config file; relative paths in options are relative to it.
    pub base_dir: PathBuf,
    /// The shared resolver (`[dns]`), for checks that ask DNS; `None` when
    /// none could be built (a check that needs one reports it).
    pub(crate) dns: Result<Arc<Dns>, String>,
    /// `[auth]`.
    pub(crate) auth: AuthConfig,
    /// `server.hostname`: our authserv-id and SPF's receiving host.
    pub(crate) hostname: String,
}

impl BuildContext {
    /// A context with the default `[dns]` (the system's resolver) and `[auth]`.
    pub fn new(base_dir: impl Into<PathBuf>) -> BuildContext {
        BuildContext::with_dns_servers(base_dir, &[])
    }

    /// A context whose resolver asks `servers` (`[dns] servers`).
    pub fn with_dns_servers(base_dir: impl Into<PathBuf>, servers: &[std::net::SocketAddr]) -> BuildContext {
        let dns_config = crate::config::sender::DnsConfig {
            servers: servers.to_vec(),
            ..Default::default()
        };
        BuildContext {
            base_dir: base_dir.into(),
            dns: Dns::shared(&dns_config),
            auth: AuthConfig::default(),
            hostname: "localhost".into(),
        }
    }
}

/// A check as the policy configured it.
pub(crate) struct ConfiguredCheck {
    pub(crate) name: String,
    pub(crate) timeout: Duration,
    pub(crate) on_error: OnError,
    pub(crate) check: Arc<dyn Check>,
}
