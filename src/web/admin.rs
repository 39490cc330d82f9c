//! The admin HTTP endpoint (loopback by default): `/metrics` (Prometheus text),
//! `/healthz` (the process answers) and `/readyz` (listeners bound, spool
//! writable, configuration loaded).
//!
//! A deliberately tiny HTTP/1.1 responder: GET only, one request per
//! connection, bounded request size and time. It exposes nothing that changes
//! state, so it needs no authentication beyond where it listens.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::web::Context;

pub(crate) async fn serve(listener: TcpListener, shared: Arc<Context>) {
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!(error = %e, "admin accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            let _ = tokio::time::timeout(Duration::from_secs(10), answer(stream, &shared)).await;
        });
    }
}

async fn answer(mut stream: TcpStream, shared: &Context) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < 8192 {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let request = String::from_utf8_lossy(&buf);
    let mut words = request.split_whitespace();
    let (method, path) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
    let (status, content_type, body) = match (method, path.split('?').next().unwrap_or("")) {
        ("GET", "/metrics") => (
            "200 OK",
            crate::telemetry::metrics::CONTENT_TYPE,
            shared.metrics.render(),
        ),
        ("GET", "/healthz") => ("200 OK", "text/plain", "ok\n".to_string()),
        ("GET", "/readyz") => {
            let problems = readiness(shared);
            if problems.is_empty() {
                ("200 OK", "text/plain", "ready\n".to_string())
            } else {
                (
                    "503 Service Unavailable",
                    "text/plain",
                    format!("not ready: {}\n", problems.join("; ")),
                )
            }
        }
        ("GET", _) => ("404 Not Found", "text/plain", "not found\n".to_string()),
        _ => ("405 Method Not Allowed", "text/plain", "only GET\n".to_string()),
    };
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body.as_bytes()).await?;
    stream.shutdown().await
}

fn readiness(shared: &Context) -> Vec<&'static str> {
    let mut problems = Vec::new();
    if !shared.listeners_bound.load(Ordering::SeqCst) {
        problems.push("listeners not bound");
    }
    if shared.stopping.is_cancelled() {
        problems.push("shutting down");
    }
    if !shared.spool.writable() {
        problems.push("spool not writable");
    }
    problems
}
