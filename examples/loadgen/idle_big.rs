//! `loadgen idle` (many open TLS sessions doing nothing, for memory per
//! session) and `loadgen big` (one large message in BDAT chunks, for memory
//! against message size).
//!
//! `idle` opens its sessions with bounded concurrency so the server sees a
//! steady stream of handshakes rather than a thundering herd, prints
//! `ready N` (N = sessions actually open) on stdout, holds them until
//! --hold-secs pass or stdin reaches end of file, then QUITs them all.
//! `big` generates the message while sending (a multipart message with one
//! base64 attachment of pseudo-random bytes), so its own memory stays small.

use std::io::{self, Write as _};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::AsyncReadExt;
use tokio::sync::Semaphore;

use crate::{Conn, err, quantile, r3};

#[derive(clap::Args)]
pub struct IdleArgs {
    #[arg(long)]
    addr: String,
    #[arg(long)]
    sessions: usize,
    /// PEM roots for the server certificate.
    #[arg(long)]
    ca: PathBuf,
    #[arg(long)]
    tls_name: Option<String>,
    /// How long to hold the sessions (stdin reaching end of file ends it sooner).
    #[arg(long, default_value_t = 60)]
    hold_secs: u64,
    /// Sessions being opened at the same time.
    #[arg(long, default_value_t = 64)]
    parallel: usize,
    #[arg(long, default_value = "loadgen.bench.test")]
    helo: String,
}

pub async fn idle(args: IdleArgs) -> io::Result<i32> {
    let limit = crate::nofile_limit();
    if (args.sessions as u64) + 64 > limit {
        eprintln!(
            "loadgen idle: RLIMIT_NOFILE is {limit}, too low for {} sessions (raise the hard limit)",
            args.sessions
        );
    }
    let tls = crate::tls_client(Some(&args.ca), args.tls_name.as_deref(), &args.addr)?;
    let gate = Arc::new(Semaphore::new(args.parallel.max(1)));
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(args.sessions);
    for _ in 0..args.sessions {
        let gate = gate.clone();
        let tls = tls.clone();
        let addr = args.addr.clone();
        let helo = args.helo.clone();
        tasks.push(tokio::spawn(async move {
            let _permit = gate.acquire_owned().await.map_err(|e| err(e.to_string()))?;
            Conn::open(&addr, &helo, Some(&tls)).await
        }));
    }
    let mut conns = Vec::with_capacity(args.sessions);
    let mut failures: Vec<String> = Vec::new();
    for t in tasks {
        match t.await {
            Ok(Ok(c)) => conns.push(c),
            Ok(Err(e)) => failures.push(e.to_string()),
            Err(e) => failures.push(e.to_string()),
        }
    }
    let open_s = started.elapsed().as_secs_f64();
    for f in failures.iter().take(5) {
        eprintln!("loadgen idle: session failed: {f}");
    }
    // `ready N` first (scripts wait for it), then the accept latencies of these sessions.
    println!("ready {}", conns.len());
    println!("{}", open_stats(&conns, failures.len(), open_s));
    let _ = io::stdout().flush();

    let mut stdin = tokio::io::stdin();
    let mut sink = [0u8; 256];
    let eof = async {
        loop {
            match stdin.read(&mut sink).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    tokio::select! {
        _ = tokio::time::sleep(Duration::from_secs(args.hold_secs)) => {}
        _ = eof => {}
    }
    let opened = conns.len();
    let quit_gate = Arc::new(Semaphore::new(256));
    let mut quits = Vec::with_capacity(opened);
    for c in conns {
        let gate = quit_gate.clone();
        quits.push(tokio::spawn(async move {
            let _permit = gate.acquire_owned().await;
            c.quit().await;
        }));
    }
    for q in quits {
        let _ = q.await;
    }
    eprintln!(
        "{}",
        serde_json::json!({"opened": opened, "failed": failures.len(), "open_s": r3(open_s)})
    );
    Ok(if failures.is_empty() { 0 } else { 2 })
}

/// Accept latency percentiles (connect → 220, connect → EHLO reply after STARTTLS) of `conns`.
fn open_stats(conns: &[Conn], failed: usize, open_s: f64) -> serde_json::Value {
    let ms = |f: fn(&crate::OpenTimes) -> Duration| {
        let mut v: Vec<f64> = conns.iter().map(|c| f(&c.times).as_secs_f64() * 1000.0).collect();
        v.sort_by(f64::total_cmp);
        v
    };
    let greeting = ms(|t| t.greeting);
    let ready = ms(|t| t.ready);
    serde_json::json!({
        "opened": conns.len(), "failed": failed, "open_s": r3(open_s),
        "greeting_p50_ms": r3(quantile(&greeting, 0.50)), "greeting_p99_ms": r3(quantile(&greeting, 0.99)),
        "ready_p50_ms": r3(quantile(&ready, 0.50)), "ready_p99_ms": r3(quantile(&ready, 0.99)),
        "ready_max_ms": r3(ready.last().copied().unwrap_or(0.0)),
    })
}

#[derive(clap::Args)]
pub struct BigArgs {
    #[arg(long)]
    addr: String,
    /// Approximate message size in bytes.
    #[arg(long)]
    size: usize,
    #[arg(long)]
    ca: PathBuf,
    #[arg(long)]
    tls_name: Option<String>,
    /// Bytes per BDAT chunk.
    #[arg(long, default_value_t = 1 << 20)]
    chunk: usize,
    #[arg(long, default_value = "alice@example.org")]
    from: String,
    #[arg(long, default_value = "bob@contoso.com")]
    to: String,
    /// Extra header field ("Name: value"); repeatable.
    #[arg(long)]
    header: Vec<String>,
    #[arg(long, default_value = "loadgen.bench.test")]
    helo: String,
    /// Messages to send, one after the other over the same session (each its own Message-ID).
    #[arg(long, default_value_t = 1)]
    messages: usize,
}

const BOUNDARY: &str = "----=_loadgen_big_7f3a9c";
/// Base64 line length plus CRLF.
const LINE: usize = 78;

/// The message, produced piece by piece: prefix, base64 lines, suffix.
struct BigMessage {
    prefix: Vec<u8>,
    suffix: Vec<u8>,
    /// Pre-made base64 lines, cycled through.
    pool: Vec<u8>,
    lines: usize,
    /// Bytes produced so far.
    pos: usize,
}

/// The first 57 bytes of the attachment: a PDF file's start, so the attachment is sniffed as
/// the PDF its name and type claim (the rest is pseudo-random, as compressed streams are).
const PDF_HEAD: &[u8; 57] = b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<< /Type /Catalog /Pages 2 0 R >>\n";

impl BigMessage {
    /// Message number `index` of the run (its Message-ID differs from the others').
    fn new(args: &BigArgs, index: usize) -> BigMessage {
        use base64::Engine as _;
        let mut extra = String::new();
        for h in &args.header {
            extra.push_str(h.trim_end());
            extra.push_str("\r\n");
        }
        let now = crate::now_secs();
        let prefix = format!(
            "From: \"Alice Example\" <{from}>\r\nTo: \"Bob\" <{to}>\r\nSubject: Site survey, full resolution scans\r\n\
             Date: {date}\r\nMessage-ID: <big.{pid}.{now}.{index}@loadgen.example.org>\r\nMIME-Version: 1.0\r\n{extra}\
             Content-Type: multipart/mixed; boundary=\"{BOUNDARY}\"\r\n\r\n--{BOUNDARY}\r\n\
             Content-Type: text/plain; charset=\"utf-8\"\r\n\r\nHello Bob,\r\n\r\nThe scans from the site survey are \
             attached.\r\n\r\nAlice\r\n\r\n--{BOUNDARY}\r\nContent-Type: application/pdf; name=\"survey-scans.pdf\"\r\n\
             Content-Disposition: attachment; filename=\"survey-scans.pdf\"\r\nContent-Transfer-Encoding: base64\r\n\r\n",
            from = args.from,
            to = args.to,
            date = crate::rfc5322_date(now),
            pid = std::process::id(),
        )
        .into_bytes();
        let mut prefix = prefix;
        prefix.extend_from_slice(base64::engine::general_purpose::STANDARD.encode(PDF_HEAD).as_bytes());
        prefix.extend_from_slice(b"\r\n");
        let suffix = format!("\r\n--{BOUNDARY}--\r\n").into_bytes();
        // 1024 distinct lines from a xorshift generator; the content only has to look like base64.
        const B64: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut pool = Vec::with_capacity(1024 * LINE);
        for _ in 0..1024 {
            for _ in 0..LINE - 2 {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                pool.push(B64[(state % 64) as usize]);
            }
            pool.extend_from_slice(b"\r\n");
        }
        let fill = args.size.saturating_sub(prefix.len() + suffix.len());
        BigMessage {
            prefix,
            suffix,
            pool,
            lines: fill / LINE,
            pos: 0,
        }
    }

    fn total(&self) -> usize {
        self.prefix.len() + self.lines * LINE + self.suffix.len()
    }

    /// The next up to `max` bytes (empty at the end).
    fn next_chunk(&mut self, max: usize, out: &mut Vec<u8>) {
        out.clear();
        let body_end = self.prefix.len() + self.lines * LINE;
        while out.len() < max && self.pos < self.total() {
            let room = max - out.len();
            let (src, off): (&[u8], usize) = if self.pos < self.prefix.len() {
                (&self.prefix, self.pos)
            } else if self.pos < body_end {
                let in_body = self.pos - self.prefix.len();
                (&self.pool, in_body % self.pool.len())
            } else {
                (&self.suffix, self.pos - body_end)
            };
            // Never run past the end of the current part.
            let part_left = if self.pos < self.prefix.len() {
                self.prefix.len() - self.pos
            } else if self.pos < body_end {
                (body_end - self.pos).min(src.len() - off)
            } else {
                self.total() - self.pos
            };
            let take = room.min(part_left).min(src.len() - off);
            out.extend_from_slice(&src[off..off + take]);
            self.pos += take;
        }
    }
}

pub async fn big(args: BigArgs) -> io::Result<i32> {
    let tls = crate::tls_client(Some(&args.ca), args.tls_name.as_deref(), &args.addr)?;
    let total = BigMessage::new(&args, 0).total();
    let mut c = Conn::open(&args.addr, &args.helo, Some(&tls)).await?;
    if !c.offers("CHUNKING") {
        return Err(err("the server does not offer CHUNKING"));
    }
    let started = Instant::now();
    let mut latencies_ms = Vec::with_capacity(args.messages);
    let mut chunk = Vec::with_capacity(args.chunk.max(1));
    let mut outcome = Ok(String::new());
    for index in 0..args.messages.max(1) {
        let mut msg = BigMessage::new(&args, index);
        let begun = Instant::now();
        outcome = one_big(&mut c, &args, &mut msg, &mut chunk).await?;
        match &outcome {
            Ok(_) => latencies_ms.push(begun.elapsed().as_secs_f64() * 1000.0),
            Err(_) => break,
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    c.quit().await;
    let acked = latencies_ms.len();
    latencies_ms.sort_by(f64::total_cmp);
    let reply = match &outcome {
        Ok(r) | Err(r) => r.clone(),
    };
    println!(
        "{}",
        serde_json::json!({"size": total, "sent": args.messages.max(1), "acked": acked,
            "elapsed_s": r3(elapsed), "p50_ms": r3(quantile(&latencies_ms, 0.5)),
            "max_ms": r3(latencies_ms.last().copied().unwrap_or(0.0)), "reply": reply})
    );
    Ok(if outcome.is_ok() { 0 } else { 1 })
}

/// Sends one message in BDAT chunks: `Ok(Ok(last reply))` when accepted, `Ok(Err(refusal))`
/// when refused (the session is left usable), `Err` when the connection failed.
async fn one_big(
    c: &mut Conn,
    args: &BigArgs,
    msg: &mut BigMessage,
    chunk: &mut Vec<u8>,
) -> io::Result<Result<String, String>> {
    let total = msg.total();
    let r = c
        .command(format!("MAIL FROM:<{}> SIZE={total}\r\n", args.from).as_bytes())
        .await?;
    if !r.positive() {
        return Ok(Err(format!("MAIL: {}", r.one_line())));
    }
    let r = c.command(format!("RCPT TO:<{}>\r\n", args.to).as_bytes()).await?;
    if !r.positive() {
        let _ = c.command(b"RSET\r\n").await;
        return Ok(Err(format!("RCPT: {}", r.one_line())));
    }
    let mut sent = 0usize;
    loop {
        msg.next_chunk(args.chunk.max(1), chunk);
        sent += chunk.len();
        let last = sent >= total;
        let cmd = format!("BDAT {}{}\r\n", chunk.len(), if last { " LAST" } else { "" });
        c.write(cmd.as_bytes()).await?;
        c.write(chunk).await?;
        let r = c.reply().await?;
        if !r.positive() {
            let _ = c.command(b"RSET\r\n").await;
            return Ok(Err(format!("BDAT: {}", r.one_line())));
        }
        if last {
            return Ok(Ok(r.one_line()));
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_big_message_has_the_size_it_announces() {
        let args = super::BigArgs {
            addr: String::new(),
            size: 1_000_000,
            ca: Default::default(),
            tls_name: None,
            chunk: 4096,
            from: "a@example.org".into(),
            to: "b@contoso.com".into(),
            header: vec![],
            helo: String::new(),
            messages: 1,
        };
        let mut m = super::BigMessage::new(&args, 0);
        let total = m.total();
        assert!(total <= 1_000_000 && total > 1_000_000 - 100);
        let mut all = Vec::new();
        let mut chunk = Vec::new();
        for chunk_size in [4096usize, 77, 1] {
            all.clear();
            m.pos = 0;
            loop {
                m.next_chunk(chunk_size, &mut chunk);
                if chunk.is_empty() {
                    break;
                }
                all.extend_from_slice(&chunk);
            }
            assert_eq!(all.len(), total);
            assert!(all.ends_with(b"--\r\n"));
            assert!(all.windows(2).filter(|w| w == b"\r\n").count() > 12_000);
        }
    }
}
