//! Test harness shared by the integration tests: certificates made at test
//! time, the gateway as a real process on port 0, a real Postfix as the
//! downstream MTA, a raw SMTP client, small helpers to run Python's smtplib
//! and swaks, and real servers the gateway talks to (Knot DNS, PostgreSQL,
//! rspamd, HAProxy; tests/rigs.rs shows each at work).
//!
//! Everything listens on loopback only and is stopped when its handle is
//! dropped, also when a test panics.

#![allow(dead_code)]

pub mod clamd;
pub mod dns;
pub mod gateway;
pub mod haproxy;
pub mod knot;
pub mod m365;
pub mod pki;
pub mod postfix;
pub mod postgres;
pub mod process;
pub mod rspamd;
pub mod smtp;
pub mod stack;
pub mod web;
pub mod webdriver;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// Polls `f` until it returns `Some` or `timeout` passes.
pub fn wait_for<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if start.elapsed() > timeout {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A free TCP port on 127.0.0.1 (bound and released; good enough on loopback).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Runs a Python script (the text) with arguments; returns stdout, panicking
/// with stderr on failure.
pub fn python(script: &str, args: &[&str]) -> String {
    let out = Command::new("python3")
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .expect("python3 must be installed");
    assert!(
        out.status.success(),
        "python failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs swaks with `args`; returns (success, combined output).
pub fn swaks(args: &[&str]) -> (bool, String) {
    let out = Command::new("swaks")
        .args(args)
        .output()
        .expect("swaks must be installed (apt-get install swaks)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// A fixture file's bytes.
pub fn fixture(rel: &str) -> Vec<u8> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(rel);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// CRLF line endings for a test message written with `\n`.
pub fn crlf(text: &str) -> Vec<u8> {
    text.replace("\r\n", "\n").replace('\n', "\r\n").into_bytes()
}
