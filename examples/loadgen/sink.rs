//! `loadgen sink`: the downstream of every benchmark scenario. Speaks enough
//! SMTP for Postfix, exogate and the load tools (EHLO/HELO, STARTTLS, MAIL,
//! RCPT, DATA, BDAT, RSET, NOOP, QUIT, pipelined), discards bodies and counts
//! delivered recipients.
//!
//! The stream is framed by exogate's own sans-I/O `Framer`, in its draining
//! modes so no body byte is copied. Invariants: a recipient is counted only
//! when the whole body of its transaction has been read (DATA terminator or
//! the LAST BDAT chunk) and the 250 for it is queued; replies are written once
//! the pipelined input is used up; plaintext pipelined after STARTTLS is
//! dropped. The count file holds "COUNT LAST_DELIVERY_UNIX_SECONDS SESSIONS DEFERRED", rewritten
//! (write + rename) every 100 ms and on SIGTERM/SIGINT.
//!
//! With `--defer-file PATH`, while that file exists every MAIL is refused with a
//! real `451 4.3.0` (counted as DEFERRED, nothing delivered): a downstream that is
//! temporarily refusing, switched back to accepting by removing the file.

use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use exogate::smtp::framing::{Frame, Framer};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::err;

#[derive(clap::Args)]
pub struct SinkArgs {
    /// Address to listen on, e.g. 127.0.0.1:2526.
    #[arg(long)]
    listen: String,
    /// PEM certificate chain; with --key, STARTTLS is offered.
    #[arg(long, requires = "key")]
    cert: Option<PathBuf>,
    #[arg(long, requires = "cert")]
    key: Option<PathBuf>,
    /// Where the count is written ("COUNT LAST_DELIVERY_UNIX_SECONDS SESSIONS").
    #[arg(long)]
    count_file: PathBuf,
    /// Diagnostic: acknowledge every TCP segment at once (TCP_QUICKACK after each
    /// read). A client whose latency drops by ~40 ms with it is stalled by Nagle's
    /// algorithm meeting delayed ACKs (it lacks TCP_NODELAY and writes a command
    /// and its data separately).
    #[arg(long)]
    quickack: bool,
    /// While this file exists, answer every MAIL with 451 4.3.0 (a downstream
    /// temporarily refusing mail); remove it to accept again.
    #[arg(long)]
    defer_file: Option<PathBuf>,
}

/// The sink's largest accepted message, advertised as SIZE.
const MAX_SIZE: u64 = 1 << 30;
/// How long a session may wait for the client's next bytes.
const IDLE: Duration = Duration::from_secs(600);

#[derive(Default)]
struct Counters {
    recipients: AtomicU64,
    messages: AtomicU64,
    /// Nanoseconds since the epoch of the last counted delivery.
    last_ns: AtomicU64,
    sessions: AtomicU64,
    /// MAIL commands refused with 451 because the defer file existed.
    deferred: AtomicU64,
}

impl Counters {
    fn delivered(&self, rcpts: u64) {
        self.recipients.fetch_add(rcpts, Ordering::Relaxed);
        self.messages.fetch_add(1, Ordering::Relaxed);
        let ns = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        self.last_ns.fetch_max(ns, Ordering::Relaxed);
    }

    fn write(&self, path: &std::path::Path) {
        let last = self.last_ns.load(Ordering::Relaxed);
        let text = format!(
            "{} {}.{:09} {} {}\n",
            self.recipients.load(Ordering::Relaxed),
            last / 1_000_000_000,
            last % 1_000_000_000,
            self.sessions.load(Ordering::Relaxed),
            self.deferred.load(Ordering::Relaxed)
        );
        let tmp = path.with_extension("tmp");
        if std::fs::write(&tmp, text).is_ok() {
            let _ = std::fs::rename(&tmp, path);
        }
    }
}

pub async fn run(args: SinkArgs) -> io::Result<i32> {
    let tls = match (&args.cert, &args.key) {
        (Some(c), Some(k)) => Some(tokio_rustls::TlsAcceptor::from(crate::server_tls(c, k)?)),
        _ => None,
    };
    let listener = TcpListener::bind(&args.listen)
        .await
        .map_err(|e| err(format!("bind {}: {e}", args.listen)))?;
    let counters = Arc::new(Counters::default());
    counters.write(&args.count_file);
    eprintln!("sink listening on {}", listener.local_addr()?);

    let writer = counters.clone();
    let path = args.count_file.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        loop {
            tick.tick().await;
            writer.write(&path);
        }
    });

    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut int = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())?;
    let defer_file = args.defer_file.clone().map(Arc::new);
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((tcp, _)) => {
                    let _ = tcp.set_nodelay(true);
                    let counters = counters.clone();
                    let tls = tls.clone();
                    let quickack = args.quickack;
                    let defer_file = defer_file.clone();
                    tokio::spawn(async move {
                        counters.sessions.fetch_add(1, Ordering::Relaxed);
                        let _ = session(tcp, tls, &counters, quickack, defer_file).await;
                    });
                }
                // Out of descriptors and the like: keep serving the sessions we have.
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            },
            _ = term.recv() => break,
            _ = int.recv() => break,
        }
    }
    counters.write(&args.count_file);
    eprintln!(
        "sink: {} recipients in {} messages over {} sessions",
        counters.recipients.load(Ordering::Relaxed),
        counters.messages.load(Ordering::Relaxed),
        counters.sessions.load(Ordering::Relaxed)
    );
    Ok(0)
}

enum Next {
    Close,
    StartTls,
}

async fn session(
    mut tcp: TcpStream,
    tls: Option<tokio_rustls::TlsAcceptor>,
    counters: &Counters,
    quickack: bool,
    defer_file: Option<Arc<PathBuf>>,
) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    // The descriptor stays valid as long as the stream (plain or wrapped) lives.
    let quickack_fd = quickack.then(|| tcp.as_raw_fd());
    tcp.write_all(b"220 sink.bench.test ESMTP loadgen sink\r\n").await?;
    let mut state = State::new(tls.is_some());
    state.quickack_fd = quickack_fd;
    state.defer_file = defer_file.clone();
    match serve(&mut tcp, &mut state, counters).await? {
        Next::Close => return Ok(()),
        Next::StartTls => {}
    }
    let Some(acceptor) = tls else {
        return Ok(());
    };
    let mut stream = tokio::time::timeout(IDLE, acceptor.accept(tcp))
        .await
        .map_err(|_| err("TLS handshake timed out"))??;
    let mut state = State::new(false);
    state.quickack_fd = quickack_fd;
    state.defer_file = defer_file;
    serve(&mut stream, &mut state, counters).await?;
    Ok(())
}

/// One side of the session (before or after STARTTLS).
struct State {
    framer: Framer,
    offer_tls: bool,
    in_mail: bool,
    rcpts: u64,
    /// A BDAT chunk being drained: (is it the LAST one, is the transaction valid).
    bdat: Option<(bool, bool)>,
    /// The transaction has taken at least one BDAT chunk (then DATA is out of sequence).
    bdat_seen: bool,
    out: Vec<u8>,
    quickack_fd: Option<std::os::fd::RawFd>,
    /// While this file exists, MAIL is refused with 451 (checked at each MAIL,
    /// so removing it takes effect at the next transaction).
    defer_file: Option<Arc<PathBuf>>,
}

impl State {
    fn new(offer_tls: bool) -> State {
        State {
            framer: Framer::new(),
            offer_tls,
            in_mail: false,
            rcpts: 0,
            bdat: None,
            bdat_seen: false,
            out: Vec::with_capacity(1024),
            quickack_fd: None,
            defer_file: None,
        }
    }

    fn reset(&mut self) {
        self.in_mail = false;
        self.rcpts = 0;
        self.bdat = None;
        self.bdat_seen = false;
    }

    fn reply(&mut self, text: &str) {
        self.out.extend_from_slice(text.as_bytes());
        self.out.extend_from_slice(b"\r\n");
    }

    fn ehlo(&mut self) {
        let mut lines = vec![
            "sink.bench.test".to_string(),
            "PIPELINING".into(),
            format!("SIZE {MAX_SIZE}"),
            "8BITMIME".into(),
            "CHUNKING".into(),
            "ENHANCEDSTATUSCODES".into(),
        ];
        if self.offer_tls {
            lines.push("STARTTLS".into());
        }
        let n = lines.len();
        for (i, l) in lines.iter().enumerate() {
            let sep = if i + 1 == n { ' ' } else { '-' };
            self.out.extend_from_slice(format!("250{sep}{l}\r\n").as_bytes());
        }
    }

    /// Handles one command line; returns what the session must do after flushing.
    fn command(&mut self, line: &[u8], counters: &Counters) -> Option<Next> {
        let text = String::from_utf8_lossy(line);
        let text = text.trim_end();
        let (verb, rest) = match text.split_once(' ') {
            Some((v, r)) => (v, r.trim()),
            None => (text, ""),
        };
        match verb.to_ascii_uppercase().as_str() {
            "EHLO" | "LHLO" => {
                self.reset();
                self.ehlo();
            }
            "HELO" => {
                self.reset();
                self.reply("250 sink.bench.test");
            }
            "STARTTLS" if self.offer_tls => {
                self.reply("220 2.0.0 Ready to start TLS");
                return Some(Next::StartTls);
            }
            "MAIL" if self.in_mail => self.reply("503 5.5.1 Nested MAIL command"),
            "MAIL" if self.defer_file.as_deref().is_some_and(|p| p.exists()) => {
                counters.deferred.fetch_add(1, Ordering::Relaxed);
                self.reply("451 4.3.0 Downstream temporarily refusing mail (sink defer file present)");
            }
            "MAIL" => {
                self.in_mail = true;
                self.rcpts = 0;
                self.reply("250 2.1.0 Ok");
            }
            "RCPT" if !self.in_mail => self.reply("503 5.5.1 Need MAIL command"),
            "RCPT" => {
                self.rcpts += 1;
                self.reply("250 2.1.5 Ok");
            }
            "DATA" if self.rcpts == 0 || self.bdat_seen => self.reply("503 5.5.1 No valid recipients or BDAT used"),
            "DATA" => {
                self.framer.start_data();
                self.framer.drain_body();
                self.reply("354 End data with <CR><LF>.<CR><LF>");
            }
            "BDAT" => {
                let mut words = rest.split_whitespace();
                let size = words.next().and_then(|s| s.parse::<usize>().ok());
                let last = words.next().is_some_and(|w| w.eq_ignore_ascii_case("LAST"));
                let Some(size) = size else {
                    self.reply("501 5.5.4 Syntax: BDAT size [LAST]");
                    return None;
                };
                let valid = self.rcpts > 0;
                self.bdat_seen = true;
                if size == 0 {
                    self.chunk_done(last, valid, counters);
                } else {
                    self.bdat = Some((last, valid));
                    self.framer.drain_bdat(size);
                }
            }
            "RSET" => {
                self.reset();
                self.reply("250 2.0.0 Ok");
            }
            "NOOP" => self.reply("250 2.0.0 Ok"),
            "VRFY" => self.reply("252 2.0.0 Cannot VRFY"),
            "QUIT" => {
                self.reply("221 2.0.0 Bye");
                return Some(Next::Close);
            }
            _ => self.reply("502 5.5.2 Command not recognized"),
        }
        None
    }

    fn chunk_done(&mut self, last: bool, valid: bool, counters: &Counters) {
        if !valid {
            self.reply("503 5.5.1 No valid recipients");
            self.reset();
        } else if last {
            counters.delivered(self.rcpts);
            self.reply("250 2.0.0 Ok: message accepted");
            self.reset();
        } else {
            self.reply("250 2.0.0 Ok: chunk accepted");
        }
    }

    /// The body in progress (DATA or a BDAT chunk) has been read to its end.
    fn body_done(&mut self, counters: &Counters) {
        match self.bdat.take() {
            Some((last, valid)) => self.chunk_done(last, valid, counters),
            None => {
                counters.delivered(self.rcpts);
                self.reply("250 2.0.0 Ok: queued");
                self.reset();
            }
        }
    }
}

async fn serve<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    state: &mut State,
    counters: &Counters,
) -> io::Result<Next> {
    let mut buf: Vec<u8> = Vec::with_capacity(64 * 1024);
    // Drained bodies never reach it, but the framer's interface wants one.
    let mut scratch = Vec::new();
    loop {
        let mut pos = 0;
        let mut next = None;
        while pos < buf.len() && next.is_none() {
            let (used, frame) = state.framer.advance(&buf[pos..], &mut scratch);
            let line = match frame {
                Some(Frame::Line(l)) => Some(l.to_vec()),
                Some(Frame::LineTooLong) => {
                    state.reply("500 5.5.2 Line too long");
                    None
                }
                Some(Frame::Drained) => {
                    state.body_done(counters);
                    None
                }
                Some(Frame::Body { .. }) => {
                    scratch.clear();
                    None
                }
                None if used == 0 => break,
                None => None,
            };
            pos += used;
            if let Some(line) = line {
                next = state.command(&line, counters);
            }
        }
        buf.drain(..pos);
        if !state.out.is_empty() {
            stream.write_all(&state.out).await?;
            stream.flush().await?;
            state.out.clear();
        }
        if let Some(next) = next {
            return Ok(next);
        }
        if buf.len() > 2 * exogate::smtp::framing::MAX_LINE + 64 * 1024 {
            return Err(err("input not framed"));
        }
        buf.reserve(64 * 1024);
        let n = tokio::time::timeout(IDLE, stream.read_buf(&mut buf))
            .await
            .map_err(|_| err("idle timeout"))??;
        if n == 0 {
            return Ok(Next::Close);
        }
        if let Some(fd) = state.quickack_fd {
            let one: libc::c_int = 1;
            // SAFETY: setsockopt on a socket this session owns, with a valid int.
            unsafe {
                libc::setsockopt(
                    fd,
                    libc::IPPROTO_TCP,
                    libc::TCP_QUICKACK,
                    (&one as *const libc::c_int).cast(),
                    size_of::<libc::c_int>() as libc::socklen_t,
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs one plaintext session over an in-memory pipe with `input` sent in
    /// `step`-byte pieces; returns (replies, counted recipients, messages).
    async fn session_over(input: &[u8], step: usize) -> (String, u64, u64) {
        let (out, counters) = session_with(input, step, None).await;
        (
            out,
            counters.recipients.load(Ordering::Relaxed),
            counters.messages.load(Ordering::Relaxed),
        )
    }

    /// As `session_over`, with an optional defer file; returns the counters.
    async fn session_with(input: &[u8], step: usize, defer_file: Option<PathBuf>) -> (String, Arc<Counters>) {
        let (mut client, mut server) = tokio::io::duplex(1 << 20);
        let counters = Arc::new(Counters::default());
        let c2 = counters.clone();
        let task = tokio::spawn(async move {
            let mut state = State::new(false);
            state.defer_file = defer_file.map(Arc::new);
            serve(&mut server, &mut state, &c2).await
        });
        for piece in input.chunks(step) {
            client.write_all(piece).await.unwrap();
            tokio::task::yield_now().await;
        }
        client.shutdown().await.unwrap();
        let _ = task.await.unwrap();
        let mut out = String::new();
        client.read_to_string(&mut out).await.unwrap();
        (out, counters)
    }

    #[tokio::test]
    async fn mail_is_deferred_while_the_defer_file_exists() {
        let dir = tempfile::tempdir().unwrap();
        let flag = dir.path().join("defer");
        std::fs::write(&flag, b"").unwrap();
        let input: &[u8] = b"EHLO x\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<b@contoso.com>\r\nDATA\r\nQUIT\r\n";
        let (out, counters) = session_with(input, input.len(), Some(flag.clone())).await;
        assert!(out.contains("451 4.3.0 "), "{out}");
        assert!(out.contains("503 5.5.1 Need MAIL command"), "{out}");
        assert_eq!(counters.deferred.load(Ordering::Relaxed), 1);
        assert_eq!(counters.recipients.load(Ordering::Relaxed), 0);
        std::fs::remove_file(&flag).unwrap();
        let input: &[u8] = b"MAIL FROM:<a@example.org>\r\nRCPT TO:<b@contoso.com>\r\nDATA\r\nx\r\n.\r\nQUIT\r\n";
        let (out, counters) = session_with(input, input.len(), Some(flag)).await;
        assert!(!out.contains("451"), "{out}");
        assert_eq!(counters.recipients.load(Ordering::Relaxed), 1);
    }

    #[tokio::test]
    async fn pipelined_data_and_bdat_messages_are_counted_once_each() {
        let input: &[u8] = b"EHLO x\r\n\
            MAIL FROM:<a@example.org>\r\nRCPT TO:<b@contoso.com>\r\nRCPT TO:<c@contoso.com>\r\nDATA\r\n\
            Subject: one\r\n\r\n..stuffed\r\nnot the end: \r\n.x\r\n.\r\n\
            MAIL FROM:<a@example.org>\r\nRCPT TO:<b@contoso.com>\r\nBDAT 6\r\n.\r\n.\r\nBDAT 5 LAST\r\nabc\r\n\
            MAIL FROM:<a@example.org>\r\nDATA\r\nRSET\r\n\
            MAIL FROM:<a@example.org>\r\nRCPT TO:<b@contoso.com>\r\nBDAT 0 LAST\r\nQUIT\r\n";
        for step in [1, 3, 64, input.len()] {
            let (out, rcpts, msgs) = session_over(input, step).await;
            assert_eq!((rcpts, msgs), (4, 3), "step {step}: {out}");
            assert!(out.contains("250-CHUNKING\r\n") && out.contains("250-PIPELINING\r\n"));
            assert!(!out.contains("STARTTLS"), "no certificate, no STARTTLS");
            assert_eq!(out.matches("250 2.0.0 Ok: message accepted").count(), 2, "step {step}");
            assert!(out.contains("250 2.0.0 Ok: chunk accepted"));
            assert!(out.contains("503 5.5.1 No valid recipients"), "DATA without RCPT");
            assert!(out.ends_with("221 2.0.0 Bye\r\n"), "step {step}: {out}");
        }
    }

    #[tokio::test]
    async fn a_session_cut_mid_body_counts_nothing() {
        let input: &[u8] =
            b"EHLO x\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<b@contoso.com>\r\nDATA\r\nSubject: x\r\n\r\nbody";
        let (_, rcpts, _) = session_over(input, input.len()).await;
        assert_eq!(rcpts, 0);
        let input: &[u8] = b"MAIL FROM:<a@example.org>\r\nRCPT TO:<b@contoso.com>\r\nBDAT 100 LAST\r\nshort";
        let (_, rcpts, _) = session_over(input, input.len()).await;
        assert_eq!(rcpts, 0);
    }
}
