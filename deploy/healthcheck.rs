//! The container image's HEALTHCHECK probe: `exogate-healthcheck [ADDR]` asks
//! the admin listener at ADDR (default 127.0.0.1:8025) for `/healthz` and exits
//! 0 on an HTTP 200 answer, 1 on anything else (no answer, refused, another
//! status, too slow).
//!
//! It exists because the runtime image has no shell and no curl. It is plain
//! `std`, built with `rustc` alone in the image's build stage, apart from the
//! crate, so it adds no dependency. It must stay a read-only probe: one GET,
//! bounded in time (3 s per step, inside HEALTHCHECK --timeout), nothing else.
//! Once `exogate` itself can probe its admin listener, the image calls that and
//! this file goes away.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::ExitCode;
use std::time::Duration;

const STEP: Duration = Duration::from_secs(3);

fn main() -> ExitCode {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:8025".to_string());
    match probe(&addr) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("exogate-healthcheck: {addr}: {e}");
            ExitCode::FAILURE
        }
    }
}

fn probe(addr: &str) -> Result<(), String> {
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
