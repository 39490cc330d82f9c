//! A small HTTPS client for the gateway's `[web]` listener: one request per
//! connection, the test CA as the only trust root, a cookie jar of one
//! session, the CSRF token scraped from the pages as a browser would send it.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use super::clamd::Clamd;
use super::gateway::{Gateway, Options};
use super::postfix::Captured;
use super::smtp::Client;
use super::stack::Stack;
use super::wait_for;

// ---- a gateway with [web], two tenants, accounts and clamd

pub const PASSWORD: &str = "correct horse battery staple";

pub fn eicar() -> String {
    // Built from two halves so the repository never contains the test virus.
    let head = "X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STAN";
    let tail = "DARD-ANTIVIRUS-TEST-FILE!$H+H*";
    format!("{head}{tail}")
}

pub fn policy(clamd: &str) -> String {
    format!(
        "[policy.default]\njunk_score = 5.0\nquarantine_score = 10.0\nreject_score = 20.0\n\
         [[policy.default.check]]\nkind = \"malware\"\nclamd = \"{clamd}\"\neicar = false\non_error = \"tempfail\"\n"
    )
}

/// A message to `to` with the EICAR file attached under `name`.
pub fn infected(from: &str, to: &str, subject: &str, name: &str) -> Vec<u8> {
    let b64 = base64(eicar().as_bytes());
    super::crlf(&format!(
        "From: Mallory <{from}>\nTo: {to}\nSubject: {subject}\nDate: Mon, 23 Nov 2026 10:00:00 +0000\n\
         Message-ID: <{}@example.org>\nMIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=\"b1\"\n\n\
         --b1\nContent-Type: text/plain\n\nPlease see <b>the attached</b> file.\n\
         --b1\nContent-Type: application/octet-stream; name=\"{name}\"\n\
         Content-Disposition: attachment; filename=\"{name}\"\nContent-Transfer-Encoding: base64\n\n{b64}\n--b1--\n",
        subject.bytes().map(|b| format!("{b:02x}")).collect::<String>()
    ))
}

fn base64(data: &[u8]) -> String {
    const T: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
        for i in 0..4 {
            out.push(if i <= chunk.len() {
                T[(n >> (18 - 6 * i) & 63) as usize] as char
            } else {
                '='
            });
        }
    }
    out
}

/// `[web]`, its accounts, a second tenant with a digest, and `[store]` lines.
pub fn web_config(downstream: &str, port: u16, store: &str) -> String {
    let hash = hash_password(PASSWORD);
    format!(
        r#"
[[tenant]]
portal = "fabrikam"
domains = ["fabrikam.com"]
deliver_to = ["{downstream}"]

[tenant.digest]
enabled = true
link_ttl = "1h"

[web]
listen = "127.0.0.1:{port}"
public_url = "https://localhost:{port}"

[[web.account]]
name = "root"
password_hash = "{hash}"
role = "admin"

[[web.account]]
name = "alice"
password_hash = "{hash}"
role = "tenant"
tenant = "contoso"

[[web.account]]
name = "fabian"
password_hash = "{hash}"
role = "tenant"
tenant = "fabrikam"

[store]
{store}
"#
    )
}

pub struct Setup {
    pub stack: Stack,
    pub clamd: Clamd,
    pub gw: Gateway,
}

impl Setup {
    pub fn start() -> Setup {
        let stack = Stack::new();
        let clamd = Clamd::start();
        let port = super::free_port();
        let gw = stack.gateway(Options {
            policy: Some(policy(&clamd.tcp())),
            extra: web_config(&stack.downstream.addr(), port, ""),
            ..Options::default()
        });
        Setup { stack, clamd, gw }
    }

    pub fn client(&self) -> WebClient {
        WebClient::new(web_addr(&self.gw), Some(&self.stack.pki.ca))
    }

    /// Sends a message through the gateway; returns the queue id of a 250.
    pub fn send(&self, from: &str, to: &str, message: &[u8]) -> String {
        let mut c = Client::connect_tls(self.gw.smtp, &self.stack.pki.ca, None);
        let r = c.send_data(from, &[to], message);
        assert_eq!(r.code, 250, "{r}");
        r.text().rsplit(' ').next().unwrap().to_string()
    }
}

/// The `X-CLOUD-SEC-AV-SCL` values of a delivered message.
pub fn scl(m: &Captured) -> Vec<String> {
    String::from_utf8_lossy(&m.data)
        .split("\r\n\r\n")
        .next()
        .unwrap()
        .lines()
        .filter_map(|l| l.strip_prefix("X-CLOUD-SEC-AV-SCL:").map(|v| v.trim().to_string()))
        .collect()
}

/// The delivered messages with this subject.
pub fn delivered<'a>(msgs: &'a [Captured], subject: &str) -> Vec<&'a Captured> {
    msgs.iter()
        .filter(|m| String::from_utf8_lossy(&m.data).contains(&format!("Subject: {subject}")))
        .collect()
}

/// The `[web]` address from the gateway's log.
pub fn web_addr(gw: &Gateway) -> SocketAddr {
    if let Some(a) = gw.web {
        return a;
    }
    let marker = "listening for web addr=";
    wait_for(Duration::from_secs(10), || {
        let log = gw.log();
        let start = log.find(marker)? + marker.len();
        let rest = &log[start..];
        let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
        rest[..end].parse().ok()
    })
    .expect("the web listener is logged")
}

/// An argon2id hash of `password` made by `exogate hash-password`.
pub fn hash_password(password: &str) -> String {
    let mut child = std::process::Command::new(super::gateway::binary())
        .arg("hash-password")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{password}\n").as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The value of the first `name="csrf" value="…"` field of the page.
    pub fn csrf(&self) -> Option<String> {
        let rest = self.body.split("name=\"csrf\" value=\"").nth(1)?;
        Some(rest.split('"').next()?.to_string())
    }
}

pub struct WebClient {
    pub addr: SocketAddr,
    tls: Option<Arc<rustls::ClientConfig>>,
    /// `name=value` of the session cookie, once logged in.
    pub cookie: Option<String>,
}

impl WebClient {
    /// A client trusting only the test CA (`ca`), or plain HTTP when `ca` is `None`.
    pub fn new(addr: SocketAddr, ca: Option<&Path>) -> WebClient {
        WebClient {
            addr,
            tls: ca.map(|ca| super::smtp::tls_config(ca, None)),
            cookie: None,
        }
    }

    pub fn origin(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://localhost:{}", self.addr.port())
    }

    /// Sends one request; `headers` are added to Host, Cookie and Content-Length.
    pub fn request(&mut self, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Response {
        let mut head = format!(
            "{method} {path} HTTP/1.1\r\nHost: localhost:{}\r\nConnection: close\r\nContent-Length: {}\r\n",
            self.addr.port(),
            body.len()
        );
        if let Some(c) = &self.cookie {
            head.push_str(&format!("Cookie: {c}\r\n"));
        }
        for (k, v) in headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str("\r\n");
        let mut raw = Vec::new();
        let tcp = TcpStream::connect(self.addr).unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        match &self.tls {
            Some(cfg) => {
                let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
                let conn = rustls::ClientConnection::new(cfg.clone(), name).unwrap();
                let mut s = rustls::StreamOwned::new(conn, tcp);
                s.write_all(head.as_bytes()).unwrap();
                s.write_all(body).unwrap();
                read_all(&mut s, &mut raw);
            }
            None => {
                let mut s = tcp;
                s.write_all(head.as_bytes()).unwrap();
                s.write_all(body).unwrap();
                read_all(&mut s, &mut raw);
            }
        }
        let r = parse(&raw);
        if let Some(set) = r.header("set-cookie") {
            let pair = set.split(';').next().unwrap().trim().to_string();
            self.cookie = if pair.ends_with('=') { None } else { Some(pair) };
        }
        r
    }

    pub fn get(&mut self, path: &str) -> Response {
        self.request("GET", path, &[], b"")
    }

    /// A form POST as our own pages send it (with our Origin).
    pub fn post_form(&mut self, path: &str, pairs: &[(&str, &str)]) -> Response {
        let origin = self.origin();
        self.post_form_from(path, pairs, Some(&origin))
    }

    pub fn post_form_from(&mut self, path: &str, pairs: &[(&str, &str)], origin: Option<&str>) -> Response {
        let body: String = pairs
            .iter()
            .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
            .collect::<Vec<_>>()
            .join("&");
        let mut headers = vec![("Content-Type", "application/x-www-form-urlencoded")];
        if let Some(o) = origin {
            headers.push(("Origin", o));
        }
        self.request("POST", path, &headers, body.as_bytes())
    }

    /// Logs in through the login form; returns the response (303 on success).
    pub fn login(&mut self, name: &str, password: &str) -> Response {
        self.post_form("/login", &[("name", name), ("password", password)])
    }
}

fn read_all(s: &mut impl Read, out: &mut Vec<u8>) {
    let mut buf = [0u8; 16384];
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            // A peer closing without close_notify after the whole response.
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
            Err(e) => panic!("reading the response: {e}"),
        }
    }
}

fn parse(raw: &[u8]) -> Response {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a complete response header");
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut body = raw[split + 4..].to_vec();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .unwrap();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    if headers
        .iter()
        .any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.eq_ignore_ascii_case("chunked"))
    {
        body = dechunk(&body);
    }
    Response {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = data.windows(2).position(|w| w == b"\r\n") {
        let size_text = String::from_utf8_lossy(&data[..eol]);
        let size = usize::from_str_radix(size_text.split(';').next().unwrap().trim(), 16).unwrap_or(0);
        if size == 0 {
            break;
        }
        let start = eol + 2;
        out.extend_from_slice(&data[start..start + size]);
        data = &data[start + size + 2..];
    }
    out
}

/// Percent-encodes a form value.
pub fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}
