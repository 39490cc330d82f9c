//! `exogate healthcheck [ADDR]`: asks the admin listener at ADDR (default
//! 127.0.0.1:8025) for `/healthz` and succeeds on an HTTP 200 answer only (no
//! answer, refused, another status or too slow all fail).
//!
//! It is the container image's HEALTHCHECK: the image has no shell and no
//! curl, and the daemon's own binary is already there. It reads no
//! configuration (a probe must not fail because a file moved) and must stay a
//! read-only probe: one GET, bounded in time (3 s per step, inside the
//! HEALTHCHECK --timeout), nothing else. Plain `std`: no runtime is started.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// Per step: connect, write, read.
const STEP: Duration = Duration::from_secs(3);

/// The admin listener the image configures.
pub const DEFAULT_ADDR: &str = "127.0.0.1:8025";

/// Ok when `/healthz` at `addr` answers 200; otherwise what went wrong.
pub fn probe(addr: &str) -> Result<(), String> {
    let addr: SocketAddr = addr.parse().map_err(|e| format!("not an IP:port address ({e})"))?;
    let mut stream = TcpStream::connect_timeout(&addr, STEP).map_err(|e| e.to_string())?;
    stream.set_read_timeout(Some(STEP)).map_err(|e| e.to_string())?;
    stream.set_write_timeout(Some(STEP)).map_err(|e| e.to_string())?;
    stream
        .write_all(b"GET /healthz HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .map_err(|e| e.to_string())?;
    // The status line is all that counts; 512 bytes hold it with room to spare.
    let mut head = Vec::new();
    let mut buf = [0u8; 512];
    while !head.contains(&b'\n') && head.len() < 512 {
        let n = stream.read(&mut buf).map_err(|e| e.to_string())?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&head);
    let line = text.lines().next().unwrap_or("").trim();
    match line.split_whitespace().nth(1) {
        Some("200") if line.starts_with("HTTP/") => Ok(()),
        _ => Err(format!("answered {line:?}, not HTTP 200")),
    }
}
