//! A raw SMTP client for the cases no library client lets us do: exact bytes,
//! pipelining split across TCP segments, BDAT with bare LFs, plaintext after
//! STARTTLS, client certificates.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

use super::pki::Leaf;

trait Stream: Read + Write + Send {}
impl<T: Read + Write + Send> Stream for T {}

pub struct Client {
    stream: Box<dyn Stream>,
    buf: Vec<u8>,
    /// Why the last read gave no reply (end of stream, an error, or a line
    /// that is no reply), for the message of a failed test.
    no_reply: String,
}

/// One reply: code and text lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub code: u16,
    pub lines: Vec<String>,
}

impl Reply {
    pub fn text(&self) -> String {
        self.lines.join("\n")
    }
}

impl std::fmt::Display for Reply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.code, self.text())
    }
}

pub fn tls_config(ca: &Path, client: Option<&Leaf>) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let config = match client {
        None => builder.with_no_client_auth(),
        Some(leaf) => {
            let certs: Vec<_> = CertificateDer::pem_file_iter(&leaf.cert)
                .unwrap()
                .map(|c| c.unwrap())
                .collect();
            let key = PrivateKeyDer::from_pem_file(&leaf.key).unwrap();
            builder.with_client_auth_cert(certs, key).unwrap()
        }
    };
    Arc::new(config)
}

impl Client {
    fn over(stream: TcpStream) -> Client {
        Client {
            stream: Box::new(stream),
            buf: Vec::new(),
            no_reply: String::new(),
        }
    }

    /// Connects and reads the greeting.
    pub fn connect(addr: SocketAddr) -> (Client, Reply) {
        let stream = TcpStream::connect(addr).expect("connect to the gateway");
        stream.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        stream.set_nodelay(true).unwrap();
        let mut c = Client::over(stream);
        let greeting = c.read_reply();
        (c, greeting)
    }

    /// Wraps an already connected stream and reads the greeting.
    pub fn from_stream(stream: TcpStream) -> (Client, Reply) {
        stream.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        let mut c = Client::over(stream);
        let greeting = c.read_reply();
        (c, greeting)
    }

    /// Connects, EHLO, STARTTLS, EHLO: a ready TLS session.
    pub fn connect_tls(addr: SocketAddr, ca: &Path, client_cert: Option<&Leaf>) -> Client {
        let (mut c, greeting) = Client::connect(addr);
        assert_eq!(greeting.code, 220, "greeting: {greeting}");
        assert_eq!(c.cmd("EHLO client.test").code, 250);
        c.starttls(ca, client_cert);
        assert_eq!(c.cmd("EHLO client.test").code, 250);
        c
    }

    /// Like `connect_tls`, but `None` instead of a panic when anything fails
    /// (for tests where the gateway may be killed at any moment).
    pub fn try_connect_tls(addr: SocketAddr, ca: &Path) -> Option<Client> {
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).ok()?;
        stream.set_read_timeout(Some(Duration::from_secs(30))).ok()?;
        let mut c = Client::over(stream);
        (c.try_read_reply()?.code == 220).then_some(())?;
        (c.try_cmd("EHLO client.test")?.code == 250).then_some(())?;
        (c.try_cmd("STARTTLS")?.code == 220).then_some(())?;
        c.upgrade(ca, None);
        (c.try_cmd("EHLO client.test")?.code == 250).then_some(())?;
        Some(c)
    }

    /// One DATA transaction; the final reply, or `None` if the connection broke.
    pub fn try_send_data(&mut self, from: &str, to: &str, body: &[u8]) -> Option<Reply> {
        (self.try_cmd(&format!("MAIL FROM:<{from}>"))?.code == 250).then_some(())?;
        (self.try_cmd(&format!("RCPT TO:<{to}>"))?.code == 250).then_some(())?;
        (self.try_cmd("DATA")?.code == 354).then_some(())?;
        let mut data = body.to_vec();
        data.extend_from_slice(b".\r\n");
        self.stream.write_all(&data).ok()?;
        self.stream.flush().ok()?;
        self.try_read_reply()
    }

    /// STARTTLS and the handshake (the caller sends EHLO again).
    pub fn starttls(&mut self, ca: &Path, client_cert: Option<&Leaf>) {
        let r = self.cmd("STARTTLS");
        assert_eq!(r.code, 220, "STARTTLS: {r}");
        self.upgrade(ca, client_cert);
    }

    /// The TLS handshake on the current connection; returns the server's certificate (DER).
    pub fn upgrade_and_peer(&mut self, ca: &Path) -> Vec<u8> {
        assert!(self.buf.is_empty(), "unread bytes before TLS");
        let config = tls_config(ca, None);
        let mut conn = rustls::ClientConnection::new(config, ServerName::try_from("localhost").unwrap()).unwrap();
        let mut plain = std::mem::replace(&mut self.stream, Box::new(std::io::Cursor::new(Vec::new())));
        while conn.is_handshaking() {
            conn.complete_io(&mut plain).expect("TLS handshake");
        }
        let der = conn.peer_certificates().expect("server certificate")[0].to_vec();
        self.stream = Box::new(rustls::StreamOwned::new(conn, plain));
        der
    }

    /// The TLS handshake on the current connection (after a 220 to STARTTLS).
    pub fn upgrade(&mut self, ca: &Path, client_cert: Option<&Leaf>) {
        assert!(self.buf.is_empty(), "unread bytes before TLS");
        let config = tls_config(ca, client_cert);
        let conn = rustls::ClientConnection::new(config, ServerName::try_from("localhost").unwrap()).unwrap();
        let plain = std::mem::replace(&mut self.stream, Box::new(std::io::Cursor::new(Vec::new())));
        self.stream = Box::new(rustls::StreamOwned::new(conn, plain));
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).unwrap();
        self.stream.flush().unwrap();
    }

    /// Sends a command line (CRLF added) and reads one reply.
    pub fn cmd(&mut self, line: &str) -> Reply {
        self.send(format!("{line}\r\n").as_bytes());
        self.read_reply()
    }

    /// Sends a command; `None` when the connection is unusable (write or read fails).
    pub fn try_cmd(&mut self, line: &str) -> Option<Reply> {
        self.stream.write_all(format!("{line}\r\n").as_bytes()).ok()?;
        self.stream.flush().ok()?;
        self.try_read_reply()
    }

    /// Reads one (possibly multi-line) reply; panics on EOF.
    pub fn read_reply(&mut self) -> Reply {
        match self.try_read_reply() {
            Some(reply) => reply,
            None => panic!("no reply from the gateway: {}", self.no_reply),
        }
    }

    /// Reads one reply, or `None` on EOF.
    pub fn try_read_reply(&mut self) -> Option<Reply> {
        let mut lines = Vec::new();
        loop {
            let line = self.read_line()?;
            let Some(code) = line.get(..3).and_then(|c| c.parse::<u16>().ok()) else {
                self.no_reply = format!("a line that is no reply: {line:?}");
                return None;
            };
            let last = line.as_bytes().get(3) != Some(&b'-');
            lines.push(line.get(4..).unwrap_or("").to_string());
            if last {
                return Some(Reply { code, lines });
            }
        }
    }

    fn read_line(&mut self) -> Option<String> {
        loop {
            if let Some(pos) = self.buf.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=pos).collect();
                return Some(
                    String::from_utf8_lossy(&line)
                        .trim_end_matches(['\r', '\n'])
                        .to_string(),
                );
            }
            let mut chunk = [0u8; 4096];
            match self.stream.read(&mut chunk) {
                Ok(0) => {
                    self.no_reply = "the connection closed".into();
                    return None;
                }
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    self.no_reply = format!("reading failed: {e}");
                    return None;
                }
            }
        }
    }

    /// True when the server closed the connection (EOF within the timeout).
    pub fn is_closed(&mut self) -> bool {
        self.read_line().is_none()
    }

    /// MAIL, RCPTs, DATA with `body` (dot-stuffed here); returns the final reply.
    pub fn send_data(&mut self, from: &str, to: &[&str], body: &[u8]) -> Reply {
        let r = self.cmd(&format!("MAIL FROM:<{from}>"));
        assert_eq!(r.code, 250, "MAIL: {r}");
        for rcpt in to {
            let r = self.cmd(&format!("RCPT TO:<{rcpt}>"));
            assert_eq!(r.code, 250, "RCPT {rcpt}: {r}");
        }
        let r = self.cmd("DATA");
        assert_eq!(r.code, 354, "DATA: {r}");
        let mut stuffed = Vec::with_capacity(body.len() + 16);
        let mut at_start = true;
        for &b in body {
            if at_start && b == b'.' {
                stuffed.push(b'.');
            }
            stuffed.push(b);
            at_start = b == b'\n';
        }
        if !stuffed.ends_with(b"\r\n") {
            stuffed.extend_from_slice(b"\r\n");
        }
        stuffed.extend_from_slice(b".\r\n");
        self.send(&stuffed);
        self.read_reply()
    }

    /// MAIL, RCPTs and one `BDAT n LAST` with `body` exactly.
    pub fn send_bdat(&mut self, from: &str, to: &[&str], body: &[u8]) -> Reply {
        let r = self.cmd(&format!("MAIL FROM:<{from}> BODY=BINARYMIME"));
        assert_eq!(r.code, 250, "MAIL: {r}");
        for rcpt in to {
            let r = self.cmd(&format!("RCPT TO:<{rcpt}>"));
            assert_eq!(r.code, 250, "RCPT {rcpt}: {r}");
        }
        self.send(format!("BDAT {} LAST\r\n", body.len()).as_bytes());
        self.send(body);
        self.read_reply()
    }
}
