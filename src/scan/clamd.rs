//! A small client for ClamAV's `clamd`: one `zINSTREAM` scan per connection,
//! over TCP (`host:port`) or a unix socket (a path).
//!
//! The protocol: `zINSTREAM\0`, then chunks each prefixed with its length as
//! a 4-byte big-endian number, then a zero-length chunk; clamd answers one
//! NUL-terminated line: `stream: NAME FOUND`, `stream: OK`, or `... ERROR`
//! (for instance `INSTREAM size limit exceeded. ERROR` when the stream passes
//! clamd's `StreamMaxLength`, after which clamd closes the connection).
//!
//! Invariants: every connect, write and read is bounded in time (a stalled
//! clamd is an error, never a hang) and the reply is bounded in size; a reply
//! that is not one of the three forms is a protocol error, never "clean".
//! This module never decides what a detection means for the message: it only
//! reports what clamd said.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpStream, UnixStream};

use crate::config::tenant::HostPort;

/// clamd's usual TCP port.
pub(crate) const DEFAULT_PORT: u16 = 3310;

/// Size of the INSTREAM chunks sent. clamd accepts any chunk size up to its
/// `StreamMaxLength`; 64 KiB keeps syscalls few without large buffers.
const CHUNK: usize = 64 * 1024;

/// Longest reply accepted. Real replies are a signature name plus a few
/// words; anything this long is not clamd.
const MAX_REPLY: usize = 4096;

/// Where clamd listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Endpoint {
    Tcp(HostPort),
    Unix(PathBuf),
}

impl Endpoint {
    /// `"127.0.0.1:3310"`, `"[::1]:3310"`, `"clamav.internal"` (port 3310) or
    /// a unix socket path such as `"/run/clamav/clamd.ctl"`. A text containing
    /// `/` is a path; a relative path is taken relative to `base`.
    pub(crate) fn parse(text: &str, base: &Path) -> Result<Endpoint, String> {
        let text = text.trim();
        if text.contains('/') {
            return Ok(Endpoint::Unix(crate::config::reader::resolve_path(base, text)));
        }
        HostPort::parse(text, DEFAULT_PORT)
            .map(Endpoint::Tcp)
            .map_err(|e| format!("{e}, or a unix socket path such as \"/run/clamav/clamd.ctl\""))
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Endpoint::Tcp(hp) => hp.fmt(f),
            Endpoint::Unix(path) => write!(f, "unix:{}", path.display()),
        }
    }
}

/// What clamd said about one stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verdict {
    Clean,
    /// The signature name as reported (e.g. `Win.Test.EICAR_HDB-1`).
    Found(String),
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum ClamdError {
    #[error("cannot connect to clamd at {endpoint}: {source}")]
    Connect { endpoint: String, source: io::Error },
    #[error("connecting to clamd at {endpoint} timed out after {timeout:?}")]
    ConnectTimeout { endpoint: String, timeout: Duration },
    #[error("talking to clamd at {endpoint}: {source}")]
    Io { endpoint: String, source: io::Error },
    #[error("clamd at {endpoint} stalled for more than {timeout:?}")]
    Stalled { endpoint: String, timeout: Duration },
    /// clamd answered `... ERROR`.
    #[error("clamd at {endpoint} could not scan: {message}")]
    Scanner { endpoint: String, message: String },
    #[error("clamd at {endpoint} sent an unexpected reply: {reply:?}")]
    Protocol { endpoint: String, reply: String },
}

impl ClamdError {
    /// True when clamd could not be reached or stopped answering, as opposed
    /// to clamd answering something we cannot use.
    pub(crate) fn is_unavailable(&self) -> bool {
        matches!(
            self,
            ClamdError::Connect { .. }
                | ClamdError::ConnectTimeout { .. }
                | ClamdError::Io { .. }
                | ClamdError::Stalled { .. }
        )
    }
}

/// A reply parsed, before it is tied to an endpoint.
#[derive(Debug, PartialEq, Eq)]
enum Reply {
    Verdict(Verdict),
    Error(String),
    Unexpected(String),
}

/// Connection settings for one clamd.
#[derive(Debug, Clone)]
pub(crate) struct Client {
    pub(crate) endpoint: Endpoint,
    pub(crate) connect_timeout: Duration,
    /// Longest clamd may take to accept a chunk or to answer.
    pub(crate) io_timeout: Duration,
}

enum Failure {
    Io(io::Error),
    Stalled,
}

impl Client {
    /// Scans `data` with one INSTREAM command on a fresh connection.
    pub(crate) async fn scan(&self, data: &[u8]) -> Result<Verdict, ClamdError> {
        match self.connect().await? {
            Conn::Tcp(s) => self.instream(s, data).await,
            Conn::Unix(s) => self.instream(s, data).await,
        }
    }

    /// `zPING` → `PONG`: whether clamd is up and answering.
    #[cfg(test)]
    pub(crate) async fn ping(&self) -> Result<(), ClamdError> {
        let reply = match self.connect().await? {
            Conn::Tcp(s) => self.command(s, b"zPING\0").await?,
            Conn::Unix(s) => self.command(s, b"zPING\0").await?,
        };
        if reply == "PONG" {
            Ok(())
        } else {
            Err(self.protocol(reply))
        }
    }

    async fn connect(&self) -> Result<Conn, ClamdError> {
        let endpoint = self.endpoint.to_string();
        let attempt = async {
            match &self.endpoint {
                Endpoint::Tcp(hp) => TcpStream::connect((hp.host.as_str(), hp.port)).await.map(Conn::Tcp),
                Endpoint::Unix(path) => UnixStream::connect(path).await.map(Conn::Unix),
            }
        };
        match tokio::time::timeout(self.connect_timeout, attempt).await {
            Ok(Ok(conn)) => Ok(conn),
            Ok(Err(source)) => Err(ClamdError::Connect { endpoint, source }),
            Err(_) => Err(ClamdError::ConnectTimeout {
                endpoint,
                timeout: self.connect_timeout,
            }),
        }
    }

    #[cfg(test)]
    async fn command<S: AsyncRead + AsyncWrite + Unpin>(&self, mut s: S, cmd: &[u8]) -> Result<String, ClamdError> {
        self.bounded(s.write_all(cmd)).await.map_err(|f| self.failure(f))?;
        let raw = read_reply(&mut s, self.io_timeout).await.map_err(|f| self.failure(f))?;
        Ok(reply_text(&raw))
    }

    /// Sends `data` as an INSTREAM on `s` and reads the verdict.
    pub(crate) async fn instream<S: AsyncRead + AsyncWrite + Unpin>(
        &self,
        mut s: S,
        data: &[u8],
    ) -> Result<Verdict, ClamdError> {
        let sent = self.send_stream(&mut s, data).await;
        // clamd answers a stream over its StreamMaxLength with an ERROR line
        // and closes: our write then fails, but the reply explains why. So
        // after a failed write, the reply is still read, and only if there is
        // none is the write failure reported.
        let raw = match read_reply(&mut s, self.io_timeout).await {
            Ok(raw) if !raw.is_empty() => raw,
            Ok(raw) => match sent {
                Err(f) => return Err(self.failure(f)),
                Ok(()) => raw,
            },
            Err(f) => return Err(self.failure(sent.err().unwrap_or(f))),
        };
        match parse_reply(&raw) {
            Reply::Verdict(v) => Ok(v),
            Reply::Error(message) => Err(ClamdError::Scanner {
                endpoint: self.endpoint.to_string(),
                message,
            }),
            Reply::Unexpected(text) if text.is_empty() => Err(self.protocol("(closed without answering)".into())),
            Reply::Unexpected(text) => Err(self.protocol(text)),
        }
    }

    async fn send_stream<S: AsyncWrite + Unpin>(&self, s: &mut S, data: &[u8]) -> Result<(), Failure> {
        self.bounded(s.write_all(b"zINSTREAM\0")).await?;
        for chunk in data.chunks(CHUNK) {
            // A chunk is at most CHUNK bytes, so the length always fits.
            let len = u32::try_from(chunk.len()).unwrap_or(u32::MAX);
            self.bounded(s.write_all(&len.to_be_bytes())).await?;
            self.bounded(s.write_all(chunk)).await?;
        }
        self.bounded(s.write_all(&0u32.to_be_bytes())).await?;
        self.bounded(s.flush()).await
    }

    async fn bounded(&self, op: impl Future<Output = io::Result<()>>) -> Result<(), Failure> {
        match tokio::time::timeout(self.io_timeout, op).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(Failure::Io(e)),
            Err(_) => Err(Failure::Stalled),
        }
    }

    fn failure(&self, f: Failure) -> ClamdError {
        let endpoint = self.endpoint.to_string();
        match f {
            Failure::Io(source) => ClamdError::Io { endpoint, source },
            Failure::Stalled => ClamdError::Stalled {
                endpoint,
                timeout: self.io_timeout,
            },
        }
    }

    fn protocol(&self, reply: String) -> ClamdError {
        ClamdError::Protocol {
            endpoint: self.endpoint.to_string(),
            reply,
        }
    }
}

enum Conn {
    Tcp(TcpStream),
    Unix(UnixStream),
}

/// Reads up to the terminating NUL (or end of stream), at most [`MAX_REPLY`]
/// bytes, each read bounded by `timeout`. Returns what was read before the
/// NUL; a reply without NUL before end of stream is returned as is.
async fn read_reply<S: AsyncRead + Unpin>(s: &mut S, timeout: Duration) -> Result<Vec<u8>, Failure> {
    let mut reply = Vec::new();
    let mut buf = [0u8; 512];
    loop {
        let n = match tokio::time::timeout(timeout, s.read(&mut buf)).await {
            Ok(Ok(n)) => n,
            // A reset after clamd wrote its answer (size limit case) still
            // leaves a usable answer.
            Ok(Err(e)) if !reply.is_empty() && e.kind() == io::ErrorKind::ConnectionReset => 0,
            Ok(Err(e)) => return Err(Failure::Io(e)),
            Err(_) => return Err(Failure::Stalled),
        };
        if n == 0 {
            return Ok(reply);
        }
        let got = buf.get(..n).unwrap_or(&[]);
        if let Some(end) = got.iter().position(|&b| b == 0) {
            reply.extend_from_slice(got.get(..end).unwrap_or(&[]));
            return Ok(reply);
        }
        reply.extend_from_slice(got);
        if reply.len() > MAX_REPLY {
            // Not a clamd reply; hand back what we have for the error text.
            reply.truncate(MAX_REPLY);
            return Ok(reply);
        }
    }
}

fn reply_text(raw: &[u8]) -> String {
    String::from_utf8_lossy(raw)
        .trim_end_matches(['\0', '\r', '\n', ' '])
        .chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

/// Longest signature name kept; longer names are cut (they go into logs).
const MAX_NAME: usize = 200;

fn parse_reply(raw: &[u8]) -> Reply {
    let text = reply_text(raw);
    // Session mode prefixes replies with "N: "; INSTREAM alone does not, but
    // accept it rather than call a real answer a protocol error.
    let body = match text.split_once(": ") {
        Some((id, rest)) if !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit()) => rest,
        _ => text.as_str(),
    };
    if let Some(rest) = body.strip_suffix(" ERROR") {
        let message = rest.strip_prefix("stream: ").unwrap_or(rest).trim();
        return Reply::Error(message.to_string());
    }
    if let Some(rest) = body.strip_suffix(" FOUND") {
        let name = rest.strip_prefix("stream: ").unwrap_or(rest).trim();
        if !name.is_empty() && !name.contains(' ') {
            return Reply::Verdict(Verdict::Found(name.chars().take(MAX_NAME).collect()));
        }
    }
    if body == "stream: OK" {
        return Reply::Verdict(Verdict::Clean);
    }
    Reply::Unexpected(text.chars().take(MAX_NAME).collect())
}

#[cfg(test)]
mod tests;
