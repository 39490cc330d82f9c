//! `loadgen send`: S parallel sessions share N messages (each session takes
//! the next message number until none is left), many messages per session,
//! reconnecting when the server closes. Each message is ~BYTES of realistic
//! headers and plain text with a unique Message-ID.
//!
//! Latency is measured per message from the first byte of MAIL to the final
//! 2xx after the data. With `--rate`, message starts are paced globally
//! (message i starts at t0 + i/rate: open loop), and how late starts were
//! (all sessions busy) is reported as `lag_*`.
//!
//! Invariants: a message whose end-of-data was sent is never sent again (an
//! unknown outcome is a failure, not a retry, so the sink's count stays
//! exact); before that point a broken connection is retried on a new one.

use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::{Conn, Reply, TlsClient, err, quantile, r3};

#[derive(clap::Args, Clone)]
pub struct SendArgs {
    /// host:port of the server under test.
    #[arg(long)]
    addr: String,
    #[arg(long, default_value_t = 1000)]
    messages: usize,
    #[arg(long, default_value_t = 20)]
    sessions: usize,
    /// Approximate size of each message in bytes (headers included).
    #[arg(long, default_value_t = 10 * 1024)]
    size: usize,
    #[arg(long)]
    starttls: bool,
    /// PEM roots for the server certificate (with --starttls).
    #[arg(long)]
    ca: Option<PathBuf>,
    /// Name the server certificate is verified for (default: the host of --addr).
    #[arg(long)]
    tls_name: Option<String>,
    /// Message starts per second, paced globally (open loop).
    #[arg(long)]
    rate: Option<f64>,
    #[arg(long, default_value = "alice@example.org")]
    from: String,
    #[arg(long, default_value = "bob@contoso.com")]
    to: String,
    /// Send MAIL, RCPT and DATA in one write when the server offers PIPELINING.
    #[arg(long)]
    pipelining: bool,
    /// Extra header field added to every message ("Name: value"); repeatable.
    #[arg(long)]
    header: Vec<String>,
    #[arg(long, default_value = "loadgen.bench.test")]
    helo: String,
    /// Writes one line per acknowledged message: its start (ms since the first) and its latency
    /// (ms), for finding when the slow ones happen.
    #[arg(long)]
    timeline: Option<PathBuf>,
}

const PROSE: &[&str] = &[
    "Please find below the figures we discussed in Tuesday's meeting. The regional totals",
    "were reconciled against the ledger on Friday and the differences are explained in the",
    "notes at the end of this message. If anything looks wrong, reply before the end of the",
    "week so we can correct it before the numbers go to the board.",
    "",
    "Revenue for the quarter came in slightly above the forecast, mostly because the two",
    "delayed contracts in the northern region were signed in the last week of the period.",
    "Costs were in line with the plan, except for travel, which ran over by about four",
    "percent; most of that is the customer workshop in Lyon, which was approved in advance.",
    "",
    "The updated planning sheet is on the team site: https://www.example.org/planning/q3",
    "I have also added the headcount changes that HR confirmed yesterday afternoon.",
    "",
    "Next steps: finance will circulate the draft report on Monday, department heads review",
    "it by Wednesday, and we meet again on Thursday at ten to agree on the final version.",
    "",
];

/// The body shared by every message: prose lines, at least `len` bytes, no line starting with ".".
fn body_text(len: usize) -> Vec<u8> {
    let mut body = Vec::with_capacity(len + 128);
    body.extend_from_slice(b"Hello Bob,\r\n\r\n");
    let mut i = 0usize;
    while body.len() < len {
        body.extend_from_slice(PROSE[i % PROSE.len()].as_bytes());
        body.extend_from_slice(b"\r\n");
        i += 1;
    }
    body.extend_from_slice(b"\r\nBest regards,\r\nAlice\r\n");
    body
}

struct Template {
    from: String,
    to: String,
    extra: String,
    body: Vec<u8>,
}

impl Template {
    fn new(size: usize, from: &str, to: &str, header: &[String]) -> Template {
        let mut extra = String::new();
        for h in header {
            extra.push_str(h.trim_end());
            extra.push_str("\r\n");
        }
        let mut t = Template {
            from: from.to_string(),
            to: to.to_string(),
            extra,
            body: Vec::new(),
        };
        let header_len = t.headers(0).len();
        t.body = body_text(size.saturating_sub(header_len + 40));
        t
    }

    fn headers(&self, i: usize) -> String {
        let now = crate::now_secs();
        format!(
            "From: \"Alice Example\" <{from}>\r\n\
             To: \"Bob\" <{to}>\r\n\
             Subject: Quarterly figures, revision {i}\r\n\
             Date: {date}\r\n\
             Message-ID: <{pid}.{i}.{now}@loadgen.example.org>\r\n\
             MIME-Version: 1.0\r\n\
             Content-Type: text/plain; charset=\"utf-8\"; format=flowed\r\n\
             Content-Transfer-Encoding: 7bit\r\n\
             Content-Language: en-GB\r\n\
             Thread-Topic: Quarterly figures\r\n\
             {extra}\r\n",
            from = self.from,
            to = self.to,
            date = crate::rfc5322_date(now),
            pid = std::process::id(),
            extra = self.extra,
        )
    }

    /// Message `i`, dot-stuffed body (none needed: no line starts with ".") and the terminator.
    fn data(&self, i: usize) -> Vec<u8> {
        let h = self.headers(i);
        let mut m = Vec::with_capacity(h.len() + self.body.len() + 3);
        m.extend_from_slice(h.as_bytes());
        m.extend_from_slice(&self.body);
        m.extend_from_slice(b".\r\n");
        m
    }
}

#[derive(clap::Args)]
pub struct MessageArgs {
    #[arg(long, default_value_t = 10 * 1024)]
    size: usize,
    #[arg(long, default_value = "alice@example.org")]
    from: String,
    #[arg(long, default_value = "bob@contoso.com")]
    to: String,
    #[arg(long)]
    header: Vec<String>,
    /// LF line endings (what `smtp-source -F` expects; it adds the CR itself).
    #[arg(long)]
    lf: bool,
}

/// Prints message 0 of what `send` would send with the same options (no terminator).
pub fn print_message(args: MessageArgs) -> io::Result<i32> {
    use std::io::Write as _;
    let t = Template::new(args.size, &args.from, &args.to, &args.header);
    let mut m = t.data(0);
    m.truncate(m.len().saturating_sub(3));
    if args.lf {
        m.retain(|&b| b != b'\r');
    }
    io::stdout().write_all(&m)?;
    Ok(0)
}

#[derive(Default)]
struct Stats {
    latencies_ms: Vec<f64>,
    /// (start in ms since t0, latency in ms) of each acknowledged message.
    timeline: Vec<(f64, f64)>,
    lags_ms: Vec<f64>,
    failed: u64,
    errors: Vec<String>,
}

/// How one transaction ended.
enum Tx {
    Acked,
    /// Refused with this reply (the connection is still usable unless it was 421).
    Refused(Reply),
    /// The connection broke before the end of data was sent: safe to retry.
    Retry(io::Error),
    /// The connection broke after it: outcome unknown.
    Lost(io::Error),
}

pub async fn run(args: SendArgs) -> io::Result<i32> {
    if args.sessions == 0 {
        return Err(err("--sessions must be at least 1"));
    }
    let tls = if args.starttls {
        Some(crate::tls_client(
            args.ca.as_deref(),
            args.tls_name.as_deref(),
            &args.addr,
        )?)
    } else {
        None
    };
    let template = Arc::new(Template::new(args.size, &args.from, &args.to, &args.header));
    let next = Arc::new(AtomicUsize::new(0));
    let connections = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..args.sessions.min(args.messages.max(1)) {
        let args = args.clone();
        let tls = tls.clone();
        let template = template.clone();
        let next = next.clone();
        let connections = connections.clone();
        tasks.push(tokio::spawn(async move {
            worker(&args, tls.as_ref(), &template, &next, &connections, started).await
        }));
    }
    let mut all = Stats::default();
    for t in tasks {
        let s = t.await.map_err(|e| err(format!("session task: {e}")))?;
        all.latencies_ms.extend(s.latencies_ms);
        all.lags_ms.extend(s.lags_ms);
        all.timeline.extend(s.timeline);
        all.failed += s.failed;
        all.errors.extend(s.errors);
    }
    let elapsed = started.elapsed().as_secs_f64();
    let sent = next.load(Ordering::Relaxed).min(args.messages) as u64;
    let acked = all.latencies_ms.len() as u64;
    all.latencies_ms.sort_by(f64::total_cmp);
    all.lags_ms.sort_by(f64::total_cmp);
    for e in all.errors.iter().take(10) {
        eprintln!("loadgen send: {e}");
    }
    if all.errors.len() > 10 {
        eprintln!("loadgen send: ... {} errors in all", all.errors.len());
    }
    if let Some(path) = &args.timeline {
        all.timeline.sort_by(|a, b| a.0.total_cmp(&b.0));
        let text: String = all.timeline.iter().map(|(t, ms)| format!("{t:.3} {ms:.3}\n")).collect();
        std::fs::write(path, text).map_err(|e| err(format!("{}: {e}", path.display())))?;
    }
    let lat = &all.latencies_ms;
    let out = serde_json::json!({
        "sent": sent,
        "acked": acked,
        "failed": all.failed,
        "elapsed_s": r3(elapsed),
        "msgs_per_s": r3(acked as f64 / elapsed.max(1e-9)),
        "p50_ms": r3(quantile(lat, 0.50)),
        "p90_ms": r3(quantile(lat, 0.90)),
        "p99_ms": r3(quantile(lat, 0.99)),
        "p999_ms": r3(quantile(lat, 0.999)),
        "max_ms": r3(lat.last().copied().unwrap_or(0.0)),
        "connections": connections.load(Ordering::Relaxed),
        "lag_p99_ms": r3(quantile(&all.lags_ms, 0.99)),
        "lag_max_ms": r3(all.lags_ms.last().copied().unwrap_or(0.0)),
    });
    println!("{out}");
    Ok(if all.failed > 0 { 2 } else { 0 })
}

async fn worker(
    args: &SendArgs,
    tls: Option<&TlsClient>,
    template: &Template,
    next: &AtomicUsize,
    connections: &AtomicU64,
    t0: Instant,
) -> Stats {
    let mut stats = Stats::default();
    let mut conn: Option<Conn> = None;
    loop {
        let i = next.fetch_add(1, Ordering::Relaxed);
        if i >= args.messages {
            break;
        }
        if let Some(rate) = args.rate {
            let due = t0 + Duration::from_secs_f64(i as f64 / rate);
            tokio::time::sleep_until(due.into()).await;
            stats
                .lags_ms
                .push(Instant::now().saturating_duration_since(due).as_secs_f64() * 1000.0);
        }
        let data = template.data(i);
        let mut start = None;
        let mut attempts = 0;
        loop {
            attempts += 1;
            if conn.is_none() {
                match Conn::open(&args.addr, &args.helo, tls).await {
                    Ok(c) => {
                        connections.fetch_add(1, Ordering::Relaxed);
                        conn = Some(c);
                    }
                    Err(e) => {
                        if attempts < 3 {
                            tokio::time::sleep(Duration::from_millis(200)).await;
                            continue;
                        }
                        stats.failed += 1;
                        stats.errors.push(format!("message {i}: connect: {e}"));
                        break;
                    }
                }
            }
            let Some(c) = conn.as_mut() else { break };
            let begun = *start.get_or_insert_with(Instant::now);
            match transaction(c, args, &data).await {
                Tx::Acked => {
                    let ms = begun.elapsed().as_secs_f64() * 1000.0;
                    stats.latencies_ms.push(ms);
                    stats
                        .timeline
                        .push((begun.duration_since(t0).as_secs_f64() * 1000.0, ms));
                    break;
                }
                Tx::Refused(reply) => {
                    stats.failed += 1;
                    stats.errors.push(format!("message {i}: refused: {}", reply.one_line()));
                    if reply.code == 421 {
                        conn = None;
                    }
                    break;
                }
                Tx::Retry(e) => {
                    conn = None;
                    if attempts >= 3 {
                        stats.failed += 1;
                        stats.errors.push(format!("message {i}: {e}"));
                        break;
                    }
                }
                Tx::Lost(e) => {
                    conn = None;
                    stats.failed += 1;
                    stats.errors.push(format!("message {i}: after the data: {e}"));
                    break;
                }
            }
        }
    }
    if let Some(c) = conn {
        c.quit().await;
    }
    stats
}

async fn transaction(c: &mut Conn, args: &SendArgs, data: &[u8]) -> Tx {
    let mail = format!("MAIL FROM:<{}> SIZE={}\r\n", args.from, data.len());
    let rcpt = format!("RCPT TO:<{}>\r\n", args.to);
    let (mail_r, rcpt_r, data_r) = if args.pipelining && c.offers("PIPELINING") {
        let batch = format!("{mail}{rcpt}DATA\r\n");
        if let Err(e) = c.write(batch.as_bytes()).await {
            return Tx::Retry(e);
        }
        let mut replies = [None, None, None];
        for slot in &mut replies {
            match c.reply().await {
                Ok(r) => *slot = Some(r),
                Err(e) => return Tx::Retry(e),
            }
        }
        let [Some(m), Some(r), Some(d)] = replies else {
            return Tx::Retry(err("missing reply"));
        };
        (m, r, d)
    } else {
        let m = match c.command(mail.as_bytes()).await {
            Ok(r) => r,
            Err(e) => return Tx::Retry(e),
        };
        if !m.positive() {
            return refused(c, m).await;
        }
        let r = match c.command(rcpt.as_bytes()).await {
            Ok(r) => r,
            Err(e) => return Tx::Retry(e),
        };
        if !r.positive() {
            return refused(c, r).await;
        }
        let d = match c.command(b"DATA\r\n").await {
            Ok(r) => r,
            Err(e) => return Tx::Retry(e),
        };
        (m, r, d)
    };
    if data_r.code != 354 {
        let first_bad = [mail_r, rcpt_r, data_r].into_iter().find(|r| !r.positive());
        return refused(c, first_bad.unwrap_or_else(unreachable_reply)).await;
    }
    if let Err(e) = c.write(data).await {
        return Tx::Lost(e);
    }
    match c.reply().await {
        Ok(r) if r.positive() && mail_r.positive() && rcpt_r.positive() => Tx::Acked,
        Ok(r) if !r.positive() => Tx::Refused(r),
        Ok(_) => Tx::Refused(if mail_r.positive() { rcpt_r } else { mail_r }),
        Err(e) => Tx::Lost(e),
    }
}

fn unreachable_reply() -> Reply {
    Reply {
        code: 554,
        text: "554 no reply\r\n".into(),
    }
}

/// A refusal before the data: RSET so the session can go on (unless the server is closing it).
async fn refused(c: &mut Conn, reply: Reply) -> Tx {
    if reply.code != 421 {
        let _ = c.command(b"RSET\r\n").await;
    }
    Tx::Refused(reply)
}
