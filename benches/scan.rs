//! Parse + scan + stamp, the per-message work between the last byte received
//! and the spool: a 10 KB plain message, a 1 MB message with attachments and a
//! 25 MB message, through the built-in default policy's content checks (every
//! check with its defaults, EICAR built in, no clamd; `auth`, which asks DNS,
//! is measured in benches/auth.rs against a local DNS server).
//!
//! `cargo bench --bench scan`; under `cargo test` each case runs once.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use exogate::checks::builtin_policy;
use exogate::config::tenant::{Destination, Tenant};
use exogate::message::envelope::{Direction, Envelope, Recipient, SessionFacts};
use exogate::message::stamp::{StampFacts, stamp};
use exogate::message::verdict::Action;
use exogate::scan::check::BuildContext;

fn tenant() -> Tenant {
    Tenant::new("contoso", &["contoso.com"], Destination::Mx)
}

const HEADER: &str = "Received: from mail.example.org (mail.example.org [192.0.2.1])\r\n\
\tby EUR05.outbound.protection.outlook.com; Mon, 23 Nov 2026 10:00:00 +0000\r\n\
From: \"Alice Example\" <alice@example.org>\r\nTo: user@contoso.com\r\nSubject: Quarterly report\r\n\
Date: Mon, 23 Nov 2026 10:00:00 +0000\r\nMessage-ID: <bench@example.org>\r\nMIME-Version: 1.0\r\n\
X-CLOUD-SEC-AV-Info: contoso,office365_emails,inline\r\n";

fn plain(size: usize) -> Vec<u8> {
    let mut m = format!("{HEADER}Content-Type: text/plain; charset=utf-8\r\n\r\n").into_bytes();
    let line = b"Lorem ipsum dolor sit amet, see https://www.example.org/report for the details.\r\n";
    while m.len() < size {
        m.extend_from_slice(line);
    }
    m
}

fn base64(data: &[u8]) -> String {
    const T: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len() * 4 / 3 + data.len() / 57 * 2 + 4);
    for (i, chunk) in data.chunks(3).enumerate() {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
        for k in 0..4 {
            out.push(if k <= chunk.len() {
                T[(n >> (18 - 6 * k) & 63) as usize] as char
            } else {
                '='
            });
        }
        if i % 19 == 18 {
            out.push_str("\r\n");
        }
    }
    out
}

fn with_attachments(size: usize) -> Vec<u8> {
    let mut m = format!("{HEADER}Content-Type: multipart/mixed; boundary=\"b\"\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nPlease find the files attached.\r\n").into_bytes();
    let mut n = 0;
    while m.len() < size {
        let data: Vec<u8> = (0..(size / 4)).map(|i| (i * 31 % 251) as u8).collect();
        let (name, ctype) = if n % 2 == 0 {
            ("report.pdf", "application/pdf")
        } else {
            ("data.xlsx", "application/octet-stream")
        };
        let mut payload = if n % 2 == 0 { b"%PDF-1.7\n".to_vec() } else { Vec::new() };
        payload.extend_from_slice(&data);
        m.extend_from_slice(
            format!(
                "--b\r\nContent-Type: {ctype}; name=\"{name}\"\r\nContent-Disposition: attachment; filename=\"{name}\"\r\nContent-Transfer-Encoding: base64\r\n\r\n{}\r\n",
                base64(&payload)
            )
            .as_bytes(),
        );
        n += 1;
    }
    m.extend_from_slice(b"--b--\r\n");
    m
}

fn bench(c: &mut Criterion) {
    // The default policy's content checks; `auth` asks DNS and is measured
    // with a DNS server in benches/auth.rs.
    let policy = builtin_policy(
        &["attachments", "malware", "impersonation", "urls", "content", "dlp"],
        &BuildContext::new("."),
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let tenant = tenant();
    let rcpt: exogate::message::envelope::Mailbox = "user@contoso.com".parse().unwrap();
    let envelope = Envelope {
        mail_from: "alice@example.org".parse().unwrap(),
        recipients: vec![Recipient {
            address: "user@contoso.com".parse().unwrap(),
            orcpt: None,
            notify: None,
        }],
        ..Envelope::default()
    };
    let session = SessionFacts {
        session_id: String::new(),
        client_ip: "40.92.1.1".parse().unwrap(),
        client_port: 40000,
        helo: "EUR05-DB8-obe.outbound.protection.outlook.com".into(),
        tls: None,
    };
    let cases = [
        ("10KB plain", plain(10 * 1024)),
        ("1MB attachments", with_attachments(1024 * 1024)),
        ("25MB attachments", with_attachments(25 * 1024 * 1024)),
    ];
    let mut group = c.benchmark_group("parse+scan+stamp");
    for (name, raw) in &cases {
        group.throughput(Throughput::Bytes(raw.len() as u64));
        if raw.len() > 5 * 1024 * 1024 {
            group.sample_size(10);
        }
        group.bench_function(*name, |b| {
            b.iter(|| {
                let report = rt.block_on(policy.scan(
                    raw,
                    raw.len() as u64,
                    &envelope,
                    &session,
                    &tenant,
                    Direction::Inbound,
                    false,
                    "BENCH",
                ));
                let st = stamp(
                    raw,
                    &StampFacts {
                        hostname: "gw.example.net",
                        queue_id: "BENCH",
                        session: &session,
                        smtputf8: false,
                        single_recipient: Some(&rcpt),
                        portal: "contoso",
                        direction: Direction::Inbound,
                        verdict: &report.verdict,
                        action: Action::Deliver,
                        enforced: true,
                        now: 1_790_000_000,
                        auth: report.auth.as_ref(),
                    },
                )
                .expect("the corpus reads one way");
                black_box((report.verdict.action, st.prefix.len()))
            });
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
