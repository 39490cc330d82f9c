//! Load generator and counting sink for the load benchmark (benches/load/run.sh).
//!
//! One binary, four subcommands: `sink` (a fast SMTP server that discards
//! bodies and counts delivered recipients), `send` (parallel sessions sending
//! many messages each, with per-message latency percentiles), `idle` (holds
//! many TLS sessions open for memory measurements) and `big` (one large
//! message in BDAT chunks). It speaks STARTTLS with rustls (ring), which the
//! Postfix tools cannot.
//!
//! Invariants: every network wait has a timeout, so a stuck server shows up as
//! a failure instead of a hung benchmark; a message counts as acked only on a
//! final 2xx after its data; the client never retries a message after its
//! end-of-data was sent (that could duplicate it), only before. This is a
//! benchmark tool for trusted loopback peers, not a hardened server: it must
//! never be exposed to real traffic.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

// The crate root resolves modules next to itself: point at loadgen/.
#[path = "loadgen/idle_big.rs"]
mod idle_big;
#[path = "loadgen/send.rs"]
mod send;
#[path = "loadgen/sink.rs"]
mod sink;

/// Longest any single network wait may take before the operation fails.
pub const IO_TIMEOUT: Duration = Duration::from_secs(120);

#[derive(Parser)]
#[command(about = "SMTP load generator and counting sink for exogate's load benchmark")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// A fast SMTP sink that discards bodies and counts delivered recipients.
    Sink(sink::SinkArgs),
    /// Sends N messages over S parallel sessions; prints one JSON line.
    Send(send::SendArgs),
    /// Opens N TLS sessions and holds them; prints `ready N` when all are open.
    Idle(idle_big::IdleArgs),
    /// Sends one large message in BDAT chunks over STARTTLS; prints one JSON line.
    Big(idle_big::BigArgs),
    /// Prints the message `send` would send (for `smtp-source -F`).
    Message(send::MessageArgs),
}

fn main() {
    let cli = Cli::parse();
    raise_nofile();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let result = rt.block_on(async move {
        match cli.cmd {
            Cmd::Sink(a) => sink::run(a).await,
            Cmd::Send(a) => send::run(a).await,
            Cmd::Idle(a) => idle_big::idle(a).await,
            Cmd::Big(a) => idle_big::big(a).await,
            Cmd::Message(a) => send::print_message(a),
        }
    });
    match result {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("loadgen: {e}");
            std::process::exit(1);
        }
    }
}

/// Raises the soft RLIMIT_NOFILE to the hard limit (idle sessions need thousands of descriptors).
pub fn raise_nofile() {
    // SAFETY: plain libc calls on a local struct.
    unsafe {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            let _ = libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

pub fn nofile_limit() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain libc call on a local struct.
    unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) };
    lim.rlim_cur
}

pub fn err(msg: impl Into<String>) -> io::Error {
    io::Error::other(msg.into())
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A TLS client configuration trusting only the CA in `ca_pem`.
pub fn client_tls(ca_pem: &std::path::Path) -> io::Result<Arc<rustls::ClientConfig>> {
    let text = std::fs::read(ca_pem)?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&text) {
        let cert = cert.map_err(|e| err(format!("{}: {e}", ca_pem.display())))?;
        roots.add(cert).map_err(|e| err(format!("{}: {e}", ca_pem.display())))?;
    }
    if roots.is_empty() {
        return Err(err(format!("{}: no certificate", ca_pem.display())));
    }
    let config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| err(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// A TLS server configuration from a PEM chain and key.
pub fn server_tls(cert: &std::path::Path, key: &std::path::Path) -> io::Result<Arc<rustls::ServerConfig>> {
    let text = std::fs::read(cert)?;
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&text)
        .collect::<Result<_, _>>()
        .map_err(|e| err(format!("{}: {e}", cert.display())))?;
    let key_text = std::fs::read(key)?;
    let key = PrivateKeyDer::from_pem_slice(&key_text).map_err(|e| err(format!("{}: {e}", key.display())))?;
    let config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| err(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| err(e.to_string()))?;
    Ok(Arc::new(config))
}

pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// One SMTP reply: its code and all its lines.
#[derive(Debug, Clone)]
pub struct Reply {
    pub code: u16,
    pub text: String,
}

impl Reply {
    pub fn positive(&self) -> bool {
        (200..300).contains(&self.code)
    }

    pub fn one_line(&self) -> String {
        self.text.lines().last().unwrap_or_default().trim().to_string()
    }
}

/// What to do about TLS when opening a session.
#[derive(Clone)]
pub struct TlsClient {
    pub config: Arc<rustls::ClientConfig>,
    pub name: ServerName<'static>,
}

/// A client connection: plain or TLS, with its read buffer.
pub struct Conn {
    stream: Box<dyn Io>,
    buf: Vec<u8>,
    /// The EHLO reply text (after STARTTLS when TLS was used).
    pub caps: String,
    /// How long opening it took (the server's accept latency as a client sees it).
    pub times: OpenTimes,
}

/// Accept latency of one session: from the start of `connect` to the 220 greeting, and to the
/// reply of the last EHLO (after STARTTLS when TLS was used): when the session could send MAIL.
#[derive(Debug, Clone, Copy, Default)]
pub struct OpenTimes {
    pub greeting: Duration,
    pub ready: Duration,
}

impl Conn {
    /// Connects, reads the greeting, says EHLO and, when `tls` is given, upgrades and says EHLO again.
    pub async fn open(addr: &str, helo: &str, tls: Option<&TlsClient>) -> io::Result<Conn> {
        let started = std::time::Instant::now();
        let tcp = tokio::time::timeout(IO_TIMEOUT, TcpStream::connect(addr))
            .await
            .map_err(|_| err("connect timed out"))??;
        tcp.set_nodelay(true)?;
        let mut conn = Conn {
            stream: Box::new(tcp),
            buf: Vec::with_capacity(4096),
            caps: String::new(),
            times: OpenTimes::default(),
        };
        let greeting = conn.reply().await?;
        if greeting.code != 220 {
            return Err(err(format!("greeting: {}", greeting.one_line())));
        }
        let greeted = started.elapsed();
        conn.ehlo(helo).await?;
        let Some(tls) = tls else {
            conn.times = OpenTimes {
                greeting: greeted,
                ready: started.elapsed(),
            };
            return Ok(conn);
        };
        if !conn.caps.to_ascii_uppercase().contains("STARTTLS") {
            return Err(err("the server does not offer STARTTLS"));
        }
        let go = conn.command(b"STARTTLS\r\n").await?;
        if go.code != 220 {
            return Err(err(format!("STARTTLS: {}", go.one_line())));
        }
        // Anything sent after the 220 came in plaintext: dropped.
        let Conn { stream: tcp, .. } = conn;
        let connector = tokio_rustls::TlsConnector::from(tls.config.clone());
        let tls_stream = tokio::time::timeout(IO_TIMEOUT, connector.connect(tls.name.clone(), tcp))
            .await
            .map_err(|_| err("TLS handshake timed out"))?
            .map_err(|e| err(format!("TLS handshake: {e}")))?;
        let mut conn = Conn {
            stream: Box::new(tls_stream),
            buf: Vec::with_capacity(4096),
            caps: String::new(),
            times: OpenTimes::default(),
        };
        conn.ehlo(helo).await?;
        conn.times = OpenTimes {
            greeting: greeted,
            ready: started.elapsed(),
        };
        Ok(conn)
    }

    async fn ehlo(&mut self, helo: &str) -> io::Result<()> {
        let r = self.command(format!("EHLO {helo}\r\n").as_bytes()).await?;
        if r.code != 250 {
            return Err(err(format!("EHLO: {}", r.one_line())));
        }
        self.caps = r.text;
        Ok(())
    }

    /// True when the EHLO reply lists `keyword`.
    pub fn offers(&self, keyword: &str) -> bool {
        self.caps.lines().any(|l| {
            l.get(4..)
                .and_then(|rest| rest.split_whitespace().next())
                .is_some_and(|w| w.eq_ignore_ascii_case(keyword))
        })
    }

    pub async fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        tokio::time::timeout(IO_TIMEOUT, async {
            self.stream.write_all(bytes).await?;
            self.stream.flush().await
        })
        .await
        .map_err(|_| err("write timed out"))?
    }

    pub async fn command(&mut self, line: &[u8]) -> io::Result<Reply> {
        self.write(line).await?;
        self.reply().await
    }

    /// Reads one (possibly multi-line) reply.
    pub async fn reply(&mut self) -> io::Result<Reply> {
        loop {
            if let Some(reply) = self.take_reply()? {
                return Ok(reply);
            }
            if self.buf.len() > 1 << 20 {
                return Err(err("reply longer than 1 MiB"));
            }
            self.buf.reserve(8192);
            let n = tokio::time::timeout(IO_TIMEOUT, self.stream.read_buf(&mut self.buf))
                .await
                .map_err(|_| err("reply timed out"))??;
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "server closed the connection",
                ));
            }
        }
    }

    fn take_reply(&mut self) -> io::Result<Option<Reply>> {
        let mut start = 0;
        while let Some(lf) = self.buf[start..].iter().position(|&b| b == b'\n') {
            let line = &self.buf[start..start + lf + 1];
            start += lf + 1;
            let last = line.len() < 4 || line[3] != b'-';
            if last {
                let code = std::str::from_utf8(line.get(..3).unwrap_or_default())
                    .ok()
                    .and_then(|c| c.parse().ok())
                    .ok_or_else(|| err(format!("malformed reply {:?}", String::from_utf8_lossy(line))))?;
                let text = String::from_utf8_lossy(&self.buf[..start]).into_owned();
                self.buf.drain(..start);
                return Ok(Some(Reply { code, text }));
            }
        }
        Ok(None)
    }

    /// QUIT, waiting briefly for the reply; errors are irrelevant at that point.
    pub async fn quit(mut self) {
        let _ = tokio::time::timeout(Duration::from_secs(10), self.command(b"QUIT\r\n")).await;
        let _ = tokio::time::timeout(Duration::from_secs(2), self.stream.shutdown()).await;
    }
}

/// The TLS settings for `--starttls`/`--ca`, the server name being `tls_name` or the host of `addr`.
pub fn tls_client(ca: Option<&std::path::Path>, tls_name: Option<&str>, addr: &str) -> io::Result<TlsClient> {
    let ca = ca.ok_or_else(|| err("--ca PEM is required with TLS"))?;
    let host = match tls_name {
        Some(n) => n.to_string(),
        None => host_of(addr),
    };
    let name = ServerName::try_from(host.clone()).map_err(|e| err(format!("TLS name {host}: {e}")))?;
    Ok(TlsClient {
        config: client_tls(ca)?,
        name,
    })
}

/// "host" of "host:port" or "[v6]:port".
fn host_of(addr: &str) -> String {
    if let Some(rest) = addr.strip_prefix('[') {
        return rest.split(']').next().unwrap_or_default().to_string();
    }
    match addr.rsplit_once(':') {
        Some((h, _)) => h.to_string(),
        None => addr.to_string(),
    }
}

/// The value at quantile `q` (0..=1) of sorted `values`.
pub fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let idx = ((sorted.len() as f64 - 1.0) * q).round() as usize;
    sorted.get(idx.min(sorted.len() - 1)).copied().unwrap_or(0.0)
}

/// Rounds to three decimals for JSON output.
pub fn r3(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

/// Waits for `f` with the standard I/O timeout.
pub async fn timed<T>(what: &str, f: impl Future<Output = io::Result<T>>) -> io::Result<T> {
    tokio::time::timeout(IO_TIMEOUT, f)
        .await
        .map_err(|_| err(format!("{what} timed out")))?
}

/// An RFC 5322 date for `secs` since the epoch (UTC).
pub fn rfc5322_date(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    const WEEKDAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    format!(
        "{}, {:02} {} {} {:02}:{:02}:{:02} +0000",
        WEEKDAYS[days.rem_euclid(7) as usize],
        day,
        MONTHS[(month - 1).clamp(0, 11) as usize],
        year,
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

pub fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    #[test]
    fn dates() {
        assert_eq!(super::rfc5322_date(0), "Thu, 01 Jan 1970 00:00:00 +0000");
        assert_eq!(super::rfc5322_date(1_709_251_200), "Fri, 01 Mar 2024 00:00:00 +0000");
    }
}
