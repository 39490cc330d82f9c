//! One SMTP session, server side: the state machine EXO talks to.
//!
//! The byte stream is cut into command lines and bodies by `framing` (sans
//! I/O, on smtp-proto's receivers); MAIL and RCPT lines are parsed by
//! `smtp::mail_rcpt` (typed mailbox, parameters kept as received), every other
//! line by smtp-proto's `Request::parse`. Oversized or refused bodies are drained so the
//! connection stays usable. Replies are queued and written when the client has nothing
//! more pipelined, or before we would block. STARTTLS returns control to the
//! caller, which performs the handshake and serves the session again over TLS
//! with a fresh input buffer: plaintext pipelined after STARTTLS is dropped by
//! construction. Every reply text comes from `reply`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use smtp_proto::Request;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::inbound::disposition::spool_reply;
use crate::inbound::proxy::ProxyLeg;
use crate::inbound::proxy_header::Sniff;
use crate::inbound::{Context, Settings};
use crate::message::envelope::{Envelope, TlsFacts};
use crate::smtp::framing::{Frame, Framer};
use crate::smtp::reply::Reply;

mod transaction;
use crate::config::tenant::Tenant;
use crate::spool::incoming::IncomingBody;

/// Bytes read per call. Kept small: every idle session holds one buffer,
/// and 16 KiB (one TLS record) reads are as fast for message bodies.
const READ_CHUNK: usize = 16 * 1024;

/// How a session ended, for metrics and logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    Quit,
    ClientClosed,
    Timeout,
    TooManyErrors,
    SessionTooLong,
    TlsFailed,
    Shutdown,
    IoError,
    /// A PROXY header from an address that is not a configured proxy.
    ProxyRefused,
}

impl Outcome {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Outcome::Quit => "quit",
            Outcome::ClientClosed => "client-closed",
            Outcome::Timeout => "timeout",
            Outcome::TooManyErrors => "too-many-errors",
            Outcome::SessionTooLong => "session-too-long",
            Outcome::TlsFailed => "tls-failed",
            Outcome::Shutdown => "shutdown",
            Outcome::IoError => "io-error",
            Outcome::ProxyRefused => "proxy-header-refused",
        }
    }
}

/// How serving a stream ended.
enum Served {
    /// STARTTLS was accepted: hand over for the handshake.
    StartTls,
    Closed(Outcome),
}

/// What a served stretch of the session asks the caller to do next.
enum Flow {
    Continue,
    StartTls,
    Close(Outcome),
}

pub(crate) struct Transaction {
    id: String,
    envelope: Envelope,
    tenant: Option<Arc<Tenant>>,
    body: Option<IncomingBody>,
    bdat: bool,
    proxy: Option<ProxyLeg>,
}

pub(crate) struct Session {
    shared: Arc<Context>,
    rt: Arc<Settings>,
    peer: SocketAddr,
    /// The configured listener address the connection came in on.
    listen: SocketAddr,
    /// The session id the `session` span carries (and the spool keeps).
    sid: String,
    helo: Option<String>,
    tls: Option<TlsFacts>,
    cert_ok: bool,
    tx: Option<Transaction>,
    framer: Framer,
    /// What to answer once a body being drained is over.
    skip_reply: Option<Reply>,
    errors: u32,
    started: Instant,
    out: Vec<u8>,
    /// When the command line being waited for began (the deadline's start).
    line_started: Option<Instant>,
    /// Command lines (and over-long lines) seen so far.
    lines: u64,
    /// When the body being read began, and its bytes so far (the data rate).
    body_started: Option<Instant>,
    body_bytes: u64,
}

/// Which limit ended a read.
#[derive(Clone, Copy)]
enum Deadline {
    Command,
    DataIdle,
    DataRate,
}

impl Session {
    pub(crate) fn new(
        shared: Arc<Context>,
        rt: Arc<Settings>,
        peer: SocketAddr,
        listen: SocketAddr,
        sid: String,
    ) -> Session {
        // Without configured names any client (certificate or not) passes layer 2b.
        let cert_ok = rt.config.tls.client_cert_names.is_empty();
        Session {
            shared,
            rt,
            peer,
            listen,
            sid,
            helo: None,
            tls: None,
            cert_ok,
            tx: None,
            framer: Framer::new(),
            skip_reply: None,
            errors: 0,
            started: Instant::now(),
            out: Vec::with_capacity(1024),
            line_started: None,
            lines: 0,
            body_started: None,
            body_bytes: 0,
        }
    }

    fn hostname(&self) -> &str {
        &self.rt.config.server.hostname
    }

    fn reply(&mut self, reply: &Reply) {
        reply.write_to(&mut self.out);
    }

    /// Runs the session on an accepted connection (greeting already decided by the listener).
    pub(crate) async fn run(mut self, tcp: TcpStream, implicit_tls: bool) -> Outcome {
        let outcome = if implicit_tls {
            self.upgrade_and_serve(tcp, true).await
        } else {
            let mut tcp = tcp;
            self.reply(&Reply::greeting(&self.rt.config.server.hostname.clone()));
            match self.serve(&mut tcp).await {
                Served::StartTls => self.upgrade_and_serve(tcp, false).await,
                Served::Closed(o) => o,
            }
        };
        if let Some(tx) = self.tx.take()
            && let Some(leg) = tx.proxy
        {
            leg.abandon().await;
        }
        outcome
    }

    async fn upgrade_and_serve(&mut self, tcp: TcpStream, implicit: bool) -> Outcome {
        let Some(acceptor) = self.rt.acceptor.clone() else {
            return Outcome::TlsFailed;
        };
        let handshake = tokio::time::timeout(self.rt.config.server.command_timeout, acceptor.accept(tcp)).await;
        let mut stream = match handshake {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                tracing::info!(client = %self.peer, error = %e, "TLS handshake failed");
                self.shared.metrics.tls_handshakes.inc(&["failed"]);
                return Outcome::TlsFailed;
            }
            Err(_) => {
                self.shared.metrics.tls_handshakes.inc(&["failed"]);
                return Outcome::Timeout;
            }
        };
        let (_, conn) = stream.get_ref();
        let facts = crate::tls::facts(conn);
        let names = &self.rt.config.tls.client_cert_names;
        self.cert_ok = names.is_empty() || crate::tls::client_cert_matches(conn, names);
        self.shared.metrics.tls_handshakes.inc(&[&facts.version]);
        // From here on every line of the session carries what TLS negotiated.
        let span = tracing::Span::current();
        span.record("tls", facts.version.as_str());
        span.record("cipher", facts.cipher.as_str());
        if !facts.client_names.is_empty() {
            span.record("client_cert", facts.client_names.join(",").as_str());
        }
        tracing::info!(client_cert_accepted = self.cert_ok, "TLS established");
        self.tls = Some(facts);
        // RFC 3207: forget everything learned before TLS.
        self.helo = None;
        self.tx = None;
        self.framer = Framer::new();
        if implicit {
            // Implicit TLS: the greeting comes after the handshake.
            let hostname = self.hostname().to_string();
            self.reply(&Reply::greeting(&hostname));
        }
        let outcome = match self.serve(&mut stream).await {
            // STARTTLS over TLS is answered 503 by handle_starttls, so this does not happen.
            Served::StartTls => Outcome::IoError,
            Served::Closed(o) => o,
        };
        let _ = stream.shutdown().await;
        outcome
    }

    /// Reads, processes and answers until the session ends or STARTTLS is accepted.
    async fn serve<S: AsyncRead + AsyncWrite + Unpin>(&mut self, stream: &mut S) -> Served {
        let mut input: Vec<u8> = Vec::new();
        let mut chunk = vec![0u8; READ_CHUNK];
        loop {
            if !self.out.is_empty()
                && let Err(e) = write_out(stream, &mut self.out).await
            {
                tracing::debug!(client = %self.peer, error = %e, "write failed");
                return Served::Closed(Outcome::IoError);
            }
            let server = &self.rt.config.server;
            if self.started.elapsed() > server.session_timeout {
                self.reply(&Reply::SESSION_TOO_LONG);
                let _ = write_out(stream, &mut self.out).await;
                return Served::Closed(Outcome::SessionTooLong);
            }
            let idle = self.framer.expects_command() && self.tx.is_none();
            let (timeout, deadline) = self.read_deadline();
            let read = tokio::select! {
                r = tokio::time::timeout(timeout, stream.read(&mut chunk)) => r,
                _ = self.shared.soft_stop.cancelled(), if idle => {
                    self.reply(&Reply::SHUTTING_DOWN);
                    let _ = write_out(stream, &mut self.out).await;
                    return Served::Closed(Outcome::Shutdown);
                }
                _ = self.shared.hard_stop.cancelled() => {
                    self.reply(&Reply::SHUTTING_DOWN);
                    let _ = write_out(stream, &mut self.out).await;
                    return Served::Closed(Outcome::Shutdown);
                }
            };
            let n = match read {
                Err(_) => {
                    let (reply, why) = match deadline {
                        Deadline::Command => (Reply::TIMEOUT, "no complete command within command_timeout"),
                        Deadline::DataIdle => (Reply::TIMEOUT, "no body bytes within data_timeout"),
                        Deadline::DataRate => (Reply::DATA_TOO_SLOW, "body slower than min_data_rate"),
                    };
                    tracing::info!(client = %self.peer, reason = why, "client stopped talking or was too slow: closing");
                    self.reply(&reply);
                    let _ = write_out(stream, &mut self.out).await;
                    return Served::Closed(Outcome::Timeout);
                }
                Ok(Err(_)) => return Served::Closed(Outcome::IoError),
                Ok(Ok(0)) => return Served::Closed(Outcome::ClientClosed),
                Ok(Ok(n)) => n,
            };
            if !self.framer.expects_command() {
                self.body_bytes += n as u64;
            }
            let lines_before = self.lines;
            input.extend_from_slice(&chunk[..n]);
            if self.tls.is_none() && self.lines == 0 {
                // A PROXY header where a client's first command belongs: the
                // client is not one of this listener's proxies (theirs was read
                // before the session) or sent a second one.
                match crate::inbound::proxy_header::sniff(&input) {
                    Sniff::Header => {
                        crate::inbound::listener::untrusted_proxy_header(&self.shared, self.peer, self.listen);
                        self.reply(&Reply::PROXY_HEADER_UNTRUSTED);
                        let _ = write_out(stream, &mut self.out).await;
                        lingering_close(stream).await;
                        return Served::Closed(Outcome::ProxyRefused);
                    }
                    Sniff::Undecided => continue,
                    Sniff::Other => {}
                }
            }
            let flow = self.ingest(&mut input).await;
            if self.lines != lines_before {
                // A command line arrived: the next one has a deadline of its own.
                self.line_started = None;
            }
            if self.framer.expects_command() {
                self.body_started = None;
            }
            match flow {
                Flow::Continue => {
                    // A burst (a pipelined body) may have grown the buffer: give it back.
                    if input.is_empty() && input.capacity() > 4 * READ_CHUNK {
                        input = Vec::new();
                    }
                }
                Flow::StartTls => {
                    if let Err(e) = write_out(stream, &mut self.out).await {
                        tracing::debug!(client = %self.peer, error = %e, "write failed");
                        return Served::Closed(Outcome::IoError);
                    }
                    if !input.is_empty() {
                        tracing::warn!(client = %self.peer, bytes = input.len(), "discarded plaintext pipelined after STARTTLS");
                    }
                    return Served::StartTls;
                }
                Flow::Close(o) => {
                    let _ = write_out(stream, &mut self.out).await;
                    return Served::Closed(o);
                }
            }
        }
    }

    /// How long the next read may wait, and which limit that is: the rest of
    /// the command deadline, or for a body the idle `data_timeout` or, when
    /// sooner, the time by which `min_data_rate` expects the bytes so far.
    fn read_deadline(&mut self) -> (Duration, Deadline) {
        let server = &self.rt.config.server;
        let now = Instant::now();
        if self.framer.expects_command() {
            let start = *self.line_started.get_or_insert(now);
            return (server.command_timeout.saturating_sub(now - start), Deadline::Command);
        }
        let start = match self.body_started {
            Some(s) => s,
            None => {
                self.body_bytes = 0;
                *self.body_started.insert(now)
            }
        };
        if server.min_data_rate == 0 {
            return (server.data_timeout, Deadline::DataIdle);
        }
        // The grace (`min_data_rate_grace`) keeps TCP slow start and a first
        // large TLS record from counting against a client.
        let allowed =
            server.min_data_rate_grace + Duration::from_secs_f64(self.body_bytes as f64 / server.min_data_rate as f64);
        let left = (start + allowed).saturating_duration_since(now);
        if left < server.data_timeout {
            (left, Deadline::DataRate)
        } else {
            (server.data_timeout, Deadline::DataIdle)
        }
    }

    /// Consumes as much of `input` as can be processed.
    async fn ingest(&mut self, input: &mut Vec<u8>) -> Flow {
        let mut pos = 0usize;
        let mut scratch = Vec::new();
        let flow = loop {
            let sink = match self.tx.as_mut().and_then(|t| t.body.as_mut()) {
                Some(body) => body.buf(),
                None => &mut scratch,
            };
            let (used, frame) = self.framer.advance(&input[pos..], sink);
            pos += used;
            scratch.clear();
            let Some(frame) = frame else {
                if used == 0 || pos >= input.len() {
                    break Flow::Continue;
                }
                continue;
            };
            if matches!(frame, Frame::Line(_) | Frame::LineTooLong) {
                self.lines += 1;
            }
            let step = match frame {
                Frame::Line(line) => match self.command(line).await {
                    Flow::Continue => None,
                    other => Some(other),
                },
                Frame::LineTooLong => self.error(&Reply::LINE_TOO_LONG),
                Frame::Drained => {
                    let reply = self.skip_reply.take().unwrap_or(Reply::LOCAL_ERROR);
                    self.error(&reply)
                }
                Frame::Body { done, last } => {
                    self.body_progress(done, last).await;
                    None
                }
            };
            if let Some(flow) = step {
                break flow;
            }
        };
        input.drain(..pos.min(input.len()));
        flow
    }

    /// After body bytes arrived: enforce the size limit, spill to disk, and
    /// finish the chunk or the message.
    async fn body_progress(&mut self, done: bool, last: bool) {
        let max = self.rt.config.server.max_message_size;
        let Some(body) = self.tx.as_mut().and_then(|t| t.body.as_mut()) else {
            return;
        };
        let failure = if body.len() > max {
            Some(Reply::MESSAGE_TOO_BIG)
        } else if let Err(e) = body.spill_if_needed() {
            tracing::error!(error = %e, "cannot spill message body to disk");
            Some(spool_reply(&e))
        } else {
            None
        };
        let size = body.len() as usize;
        match (failure, done) {
            (Some(reply), true) => {
                self.reply(&reply);
                self.drop_transaction().await;
            }
            (Some(reply), false) => {
                // Keep reading to the end of the body, keeping nothing.
                self.framer.drain_body();
                self.skip_reply = Some(reply);
                self.drop_transaction().await;
            }
            (None, true) if last => self.end_of_data().await,
            (None, true) => self.reply(&Reply::chunk_ok(size)),
            (None, false) => {}
        }
    }

    /// Replies with an error and counts it; closes after too many.
    fn error(&mut self, reply: &Reply) -> Option<Flow> {
        self.reply(reply);
        self.errors += 1;
        if self.errors >= self.rt.config.server.max_errors {
            tracing::info!(client = %self.peer, errors = self.errors, "too many errors, closing");
            self.reply(&Reply::TOO_MANY_ERRORS);
            return Some(Flow::Close(Outcome::TooManyErrors));
        }
        None
    }

    async fn command(&mut self, line: &[u8]) -> Flow {
        if crate::smtp::mail_rcpt::is_mail_or_rcpt(line) {
            // The address and its parameters are parsed by `smtp::mail_rcpt`.
            return if line[..4].eq_ignore_ascii_case(b"MAIL") {
                self.handle_mail(line).await
            } else {
                self.handle_rcpt(line).await
            };
        }
        let request = match Request::parse(&mut line.iter()) {
            Ok(r) => r.into_owned(),
            Err(e) => {
                let reply = match e {
                    smtp_proto::Error::UnknownCommand => Reply::UNKNOWN_COMMAND,
                    smtp_proto::Error::InvalidSenderAddress => Reply::BAD_SENDER_SYNTAX,
                    smtp_proto::Error::InvalidRecipientAddress => Reply::BAD_RECIPIENT_SYNTAX,
                    smtp_proto::Error::SyntaxError { syntax } => Reply::syntax(syntax),
                    smtp_proto::Error::InvalidParameter { param } => Reply::bad_parameter(param),
                    smtp_proto::Error::UnsupportedParameter { param } => Reply::unsupported_parameter(&param),
                    _ => Reply::UNKNOWN_COMMAND,
                };
                return self.error(&reply).unwrap_or(Flow::Continue);
            }
        };
        match request {
            Request::Ehlo { host } => self.handle_ehlo(host, true),
            Request::Helo { host } => self.handle_ehlo(host, false),
            Request::StartTls => return self.handle_starttls(),
            // Taken by `smtp::mail_rcpt` above; smtp-proto only sees these for odd spellings.
            Request::Mail { .. } | Request::Rcpt { .. } => {
                return self.error(&Reply::UNKNOWN_COMMAND).unwrap_or(Flow::Continue);
            }
            Request::Data => return self.handle_data(),
            // The chunk is framed by the size as written, never by smtp-proto's
            // reading of it (see `framing::bdat_chunk`).
            Request::Bdat { .. } => {
                return match crate::smtp::framing::bdat_chunk(line) {
                    Some((size, last)) => {
                        self.handle_bdat(usize::try_from(size).unwrap_or(usize::MAX), last)
                            .await
                    }
                    None => self.error(&Reply::BAD_BDAT_SYNTAX).unwrap_or(Flow::Continue),
                };
            }
            Request::Rset => {
                self.drop_transaction().await;
                self.reply(&Reply::RESET);
            }
            Request::Noop { .. } => self.reply(&Reply::NOOP),
            Request::Vrfy { .. } => self.reply(&Reply::VRFY),
            Request::Help { .. } => self.reply(&Reply::HELP),
            Request::Quit => {
                let hostname = self.hostname().to_string();
                self.reply(&Reply::closing(&hostname));
                return Flow::Close(Outcome::Quit);
            }
            Request::Lhlo { .. }
            | Request::Auth { .. }
            | Request::Expn { .. }
            | Request::Etrn { .. }
            | Request::Atrn { .. }
            | Request::Burl { .. } => return self.error(&Reply::NOT_IMPLEMENTED).unwrap_or(Flow::Continue),
        }
        Flow::Continue
    }

    fn handle_ehlo(&mut self, host: String, esmtp: bool) {
        let client = format!("[{}]", self.peer.ip());
        let hostname = self.hostname().to_string();
        let reply = if esmtp {
            let offer_tls = self.tls.is_none() && self.rt.acceptor.is_some();
            Reply::ehlo(&hostname, &client, self.rt.config.server.max_message_size, offer_tls)
        } else {
            Reply::helo(&hostname, &client)
        };
        self.reply(&reply);
        self.helo = Some(host);
        self.tx = None;
    }

    fn handle_starttls(&mut self) -> Flow {
        if self.tls.is_some() {
            return self.error(&Reply::ALREADY_TLS).unwrap_or(Flow::Continue);
        }
        if self.rt.acceptor.is_none() {
            self.reply(&Reply::TLS_NOT_AVAILABLE);
            return Flow::Continue;
        }
        self.reply(&Reply::READY_FOR_TLS);
        Flow::StartTls
    }

    fn refuse(&self, layer: &str, reason: &str, reply: &Reply) {
        self.shared.metrics.admission_refusals.inc(&[layer]);
        tracing::warn!(client = %self.peer, layer, reason, reply = %reply.one_line(), "admission refused");
    }
}

/// Closes our side and reads what the client still sends for a moment
/// (bounded), so that the refusal is not lost to a reset: the client behind a
/// misconfigured proxy saw our greeting and may already be sending a command.
async fn lingering_close<S: AsyncRead + AsyncWrite + Unpin>(stream: &mut S) {
    let _ = stream.shutdown().await;
    let mut sink = [0u8; 4096];
    let mut total = 0usize;
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        while let Ok(n) = stream.read(&mut sink).await {
            total += n;
            if n == 0 || total > 64 * 1024 {
                break;
            }
        }
    })
    .await;
}

async fn write_out<S: AsyncWrite + Unpin>(stream: &mut S, out: &mut Vec<u8>) -> std::io::Result<()> {
    let r = tokio::time::timeout(Duration::from_secs(300), async {
        stream.write_all(out).await?;
        stream.flush().await
    })
    .await;
    out.clear();
    match r {
        Ok(r) => r,
        Err(_) => Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "write timed out")),
    }
}
