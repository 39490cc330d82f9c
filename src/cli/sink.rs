//! `exogate sink --listen ADDR --dir DIR [--tls-cert PEM --tls-key PEM]`: a
//! small receiving MTA for trying the gateway out and for testing connectors.
//! It offers STARTTLS when given a certificate, accepts any sender and
//! recipient, and stores each message as `DIR/ID.eml` (the bytes exactly as
//! received, dot-unstuffed) with the envelope in `DIR/ID.json` (sender,
//! recipients, client, EHLO name, TLS version and cipher).
//!
//! Both files are written under a temporary name and renamed before 250 is
//! sent, `.json` last: a `.json` means its `.eml` is complete.
//!
//! Kept simple on purpose (a thread per connection, blocking I/O, no
//! queue): it is a test peer, not a mail server. Bounded: lines of 64 KiB,
//! messages of `MAX_MESSAGE` bytes, 5 minutes of silence. Must never relay.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rustls::ServerConfig;

use crate::app::AppError;

const MAX_LINE: u64 = 64 * 1024;
const MAX_MESSAGE: usize = 150 * 1024 * 1024;
const IDLE: Duration = Duration::from_secs(300);

/// Where the sink listens and stores.
pub struct SinkOptions {
    pub listen: SocketAddr,
    pub dir: PathBuf,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub hostname: String,
}

/// Runs the sink until the process is stopped.
pub fn run(opts: SinkOptions) -> Result<(), AppError> {
    let tls = match (&opts.tls_cert, &opts.tls_key) {
        (Some(cert), Some(key)) => Some(server_config(cert, key)?),
        (None, None) => None,
        _ => return Err(AppError::Other("--tls-cert and --tls-key go together".into())),
    };
    std::fs::create_dir_all(&opts.dir).map_err(|e| AppError::Other(format!("{}: {e}", opts.dir.display())))?;
    let listener = TcpListener::bind(opts.listen).map_err(|e| AppError::Other(format!("{}: {e}", opts.listen)))?;
    let local = listener.local_addr().map_err(|e| AppError::Other(e.to_string()))?;
    eprintln!(
        "exogate sink: listening on {local}{}, storing into {}",
        if tls.is_some() {
            " (STARTTLS offered)"
        } else {
            " (no STARTTLS)"
        },
        opts.dir.display()
    );
    let shared = Arc::new((opts.dir, opts.hostname, tls));
    for conn in listener.incoming() {
        let Ok(tcp) = conn else { continue };
        let shared = shared.clone();
        std::thread::spawn(move || {
            let (dir, hostname, tls) = &*shared;
            if let Err(e) = session(tcp, dir, hostname, tls.clone()) {
                eprintln!("exogate sink: session ended: {e}");
            }
        });
    }
    Ok(())
}

fn server_config(cert: &Path, key: &Path) -> Result<Arc<ServerConfig>, AppError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let bad = |p: &Path, e: String| AppError::Other(format!("{}: {e}", p.display()));
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| bad(cert, e.to_string()))?
        .collect::<Result<_, _>>()
        .map_err(|e| bad(cert, e.to_string()))?;
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| bad(key, e.to_string()))?;
    let config = ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| AppError::Other(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| bad(cert, e.to_string()))?;
    Ok(Arc::new(config))
}

/// What the session learned so far.
#[derive(Default)]
struct State {
    client: String,
    helo: String,
    tls: String,
    mail_from: Option<String>,
    rcpt_to: Vec<String>,
}

enum Next {
    StartTls,
    Closed,
}

fn session(tcp: TcpStream, dir: &Path, hostname: &str, tls: Option<Arc<ServerConfig>>) -> io::Result<()> {
    tcp.set_read_timeout(Some(IDLE))?;
    tcp.set_write_timeout(Some(IDLE))?;
    let mut state = State {
        client: tcp.peer_addr()?.ip().to_string(),
        ..State::default()
    };
    let mut reader = BufReader::new(tcp);
    reader
        .get_mut()
        .write_all(format!("220 {hostname} exogate sink ESMTP\r\n").as_bytes())?;
    match serve(&mut reader, &mut state, dir, hostname, tls.is_some())? {
        Next::Closed => Ok(()),
        Next::StartTls => {
            // Anything pipelined after STARTTLS was plaintext: dropped with the reader.
            let tcp = reader.into_inner();
            let config = tls.expect("STARTTLS is offered only with a certificate");
            let conn = rustls::ServerConnection::new(config).map_err(io::Error::other)?;
            let mut stream = rustls::StreamOwned::new(conn, tcp);
            while stream.conn.is_handshaking() {
                stream.conn.complete_io(&mut stream.sock)?;
            }
            state = State {
                client: state.client,
                tls: format!(
                    "{} {}",
                    stream
                        .conn
                        .protocol_version()
                        .and_then(|v| v.as_str())
                        .unwrap_or("?")
                        .replace("TLSv1_", "TLSv1."),
                    stream
                        .conn
                        .negotiated_cipher_suite()
                        .and_then(|c| c.suite().as_str())
                        .unwrap_or("?")
                ),
                ..State::default()
            };
            let mut reader = BufReader::new(stream);
            serve(&mut reader, &mut state, dir, hostname, false).map(|_| ())
        }
    }
}

/// Reads one line (CRLF or LF ended), at most `MAX_LINE` bytes; None at end of stream.
fn read_line<S: Read>(reader: &mut BufReader<S>) -> io::Result<Option<Vec<u8>>> {
    let mut line = Vec::new();
    let n = reader.by_ref().take(MAX_LINE).read_until(b'\n', &mut line)?;
    if n == 0 {
        return Ok(None);
    }
    Ok(Some(line))
}

/// The address between the angle brackets after `prefix` (case-insensitive).
fn path_arg(line: &str, prefix: &str) -> Option<String> {
    if line.len() < prefix.len() || !line[..prefix.len()].eq_ignore_ascii_case(prefix) {
        return None;
    }
    let rest = line[prefix.len()..].trim_start();
    let rest = rest.strip_prefix('<')?;
    let end = rest.find('>')?;
    Some(rest[..end].to_string())
}

fn serve<S: Read + Write>(
    reader: &mut BufReader<S>,
    state: &mut State,
    dir: &Path,
    hostname: &str,
    offer_tls: bool,
) -> io::Result<Next> {
    loop {
        let Some(raw) = read_line(reader)? else {
            return Ok(Next::Closed);
        };
        let line = String::from_utf8_lossy(&raw).trim_end().to_string();
        let verb = line.split_whitespace().next().unwrap_or("").to_ascii_uppercase();
        let reply = match verb.as_str() {
            "EHLO" | "HELO" => {
                state.helo = line[4..].trim().to_string();
                state.mail_from = None;
                state.rcpt_to.clear();
                if verb == "HELO" {
                    format!("250 {hostname}\r\n")
                } else {
                    let mut r = format!(
                        "250-{hostname}\r\n250-PIPELINING\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n250-SIZE {MAX_MESSAGE}\r\n"
                    );
                    if offer_tls {
                        r.push_str("250-STARTTLS\r\n");
                    }
                    r.push_str("250 ENHANCEDSTATUSCODES\r\n");
                    r
                }
            }
            "STARTTLS" if offer_tls => {
                reader.get_mut().write_all(b"220 2.0.0 Ready to start TLS\r\n")?;
                return Ok(Next::StartTls);
            }
            "MAIL" => match path_arg(&line, "MAIL FROM:") {
                Some(from) => {
                    state.mail_from = Some(from);
                    state.rcpt_to.clear();
                    "250 2.1.0 Ok\r\n".to_string()
                }
                None => "501 5.5.4 Syntax: MAIL FROM:<address>\r\n".to_string(),
            },
            "RCPT" => match (&state.mail_from, path_arg(&line, "RCPT TO:")) {
                (None, _) => "503 5.5.1 MAIL first\r\n".to_string(),
                (Some(_), Some(to)) => {
                    state.rcpt_to.push(to);
                    "250 2.1.5 Ok\r\n".to_string()
                }
                (Some(_), None) => "501 5.5.4 Syntax: RCPT TO:<address>\r\n".to_string(),
            },
            "DATA" if state.rcpt_to.is_empty() => "503 5.5.1 RCPT first\r\n".to_string(),
            "DATA" => {
                reader.get_mut().write_all(b"354 End data with <CR><LF>.<CR><LF>\r\n")?;
                let reply = match read_data(reader)? {
                    Some(body) => match store(dir, state, &body) {
                        Ok(id) => format!("250 2.0.0 Ok: stored as {id}\r\n"),
                        Err(e) => {
                            eprintln!("exogate sink: cannot store a message: {e}");
                            "451 4.3.0 Cannot store the message\r\n".to_string()
                        }
                    },
                    None => "552 5.3.4 Message too big\r\n".to_string(),
                };
                state.mail_from = None;
                state.rcpt_to.clear();
                reply
            }
            "RSET" => {
                state.mail_from = None;
                state.rcpt_to.clear();
                "250 2.0.0 Ok\r\n".to_string()
            }
            "NOOP" => "250 2.0.0 Ok\r\n".to_string(),
            "QUIT" => {
                reader.get_mut().write_all(b"221 2.0.0 Bye\r\n")?;
                return Ok(Next::Closed);
            }
            _ => "502 5.5.2 Command not recognised\r\n".to_string(),
        };
        reader.get_mut().write_all(reply.as_bytes())?;
    }
}

/// The message up to the lone dot, unstuffed; None when it is too big (read to its end anyway).
fn read_data<S: Read>(reader: &mut BufReader<S>) -> io::Result<Option<Vec<u8>>> {
    let mut body = Vec::new();
    let mut too_big = false;
    loop {
        let Some(line) = read_line(reader)? else {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection closed during DATA",
            ));
        };
        if line == b".\r\n" || line == b".\n" {
            return Ok(if too_big { None } else { Some(body) });
        }
        let line = line.strip_prefix(b".").unwrap_or(&line);
        if body.len() + line.len() > MAX_MESSAGE {
            too_big = true;
            body.clear();
        }
        if !too_big {
            body.extend_from_slice(line);
        }
    }
}

/// Writes `ID.eml` then `ID.json` (each via a temporary name) and returns the id.
fn store(dir: &Path, state: &State, body: &[u8]) -> io::Result<String> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let id = format!(
        "{}-{:04}",
        now.as_micros(),
        COUNTER.fetch_add(1, Ordering::Relaxed) % 10_000
    );
    let envelope = serde_json::json!({
        "id": id,
        "received": now.as_secs(),
        "mail_from": state.mail_from.clone().unwrap_or_default(),
        "rcpt_to": state.rcpt_to,
        "client": state.client,
        "helo": state.helo,
        "tls": state.tls,
        "size": body.len(),
    });
    for (ext, bytes) in [
        ("eml", body.to_vec()),
        ("json", serde_json::to_vec_pretty(&envelope).unwrap_or_default()),
    ] {
        let tmp = dir.join(format!("{id}.{ext}.tmp"));
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, dir.join(format!("{id}.{ext}")))?;
    }
    Ok(id)
}
