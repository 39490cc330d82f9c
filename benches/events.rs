//! Search latency over a large embedded (SQLite) event store: fills a store
//! with EXOGATE_BENCH_EVENTS events (default 1,000,000; one recipient each)
//! through the store's own writer, then times the searches an administrator
//! makes through `Store::search` (the real path: query building, the
//! blocking pool, row decoding). Each figure comes with its peer in the same
//! run: the same query run by SQLite with the index bypassed (`NOT INDEXED`,
//! or `LIKE` instead of FTS5 for subject words), i.e. what the indexes buy.
//!
//! `cargo bench --bench events`. Under `cargo test` (no `--bench`) it runs
//! with 2,000 events and checks that every query finds what it should.

use std::time::{Duration, Instant};

use exogate::store::{EventRecord, Query, Scope, Store, StoreConfig};

/// A small deterministic generator (xorshift64*), so every run stores the same data.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

const T0: i64 = 1_796_083_200; // 2026-12-01
const SPAN: i64 = 30 * 86400;
const ACTIONS: [&str; 5] = ["deliver", "deliver", "deliver", "junk", "quarantine"];

fn event(rng: &mut Rng, i: u64, n: u64) -> EventRecord {
    let tenant = rng.below(10);
    let sender_domain = rng.below(500);
    let sender = rng.below(20);
    let rcpt = rng.below(5_000);
    let words: Vec<String> = (0..5).map(|_| format!("w{}", rng.below(2_000))).collect();
    EventRecord {
        queue_id: format!("{i:020X}"),
        time: T0 + (i as i64 * SPAN) / n as i64,
        node: "bench".into(),
        tenant: format!("tenant{tenant}"),
        direction: "inbound".into(),
        message_id: format!("m{i}@d{sender_domain}.example"),
        network_message_id: format!("nm-{i:012}"),
        mail_from: format!("s{sender}@d{sender_domain}.example"),
        recipients: vec![format!("u{rcpt}@tenant{tenant}.example")],
        header_from: format!("s{sender}@d{sender_domain}.example"),
        subject: words.join(" "),
        size: 2_000 + rng.below(50_000),
        client_ip: "192.0.2.1".into(),
        helo: "mail.example".into(),
        tls: Some("TLSv1_3 TLS13_AES_256_GCM_SHA384".into()),
        findings: vec![],
        failures: vec![],
        score: rng.below(200) as f64 / 10.0,
        verdict: ACTIONS[rng.below(5) as usize].into(),
        action: ACTIONS[rng.below(5) as usize].into(),
        auth: None,
        listings: vec![],
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn main() {
    let bench = std::env::args().any(|a| a == "--bench");
    let n: u64 = if bench {
        std::env::var("EXOGATE_BENCH_EVENTS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(1_000_000)
    } else {
        2_000
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut config = StoreConfig::embedded(dir.path(), "bench");
    config.write_queue = 20_000;
    let db_path = dir.path().join("store.sqlite3");

    rt.block_on(async {
        let store = Store::open(&config, dir.path()).await.unwrap();
        store.start_writer();
        let started = Instant::now();
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        let mut i = 0;
        while i < n {
            let end = (i + 10_000).min(n);
            for j in i..end {
                store.record_event(event(&mut rng, j, n));
            }
            store.flush().await;
            i = end;
        }
        let fill = started.elapsed();
        let size = std::fs::metadata(&db_path).map_or(0, |m| m.len());
        println!(
            "filled {n} events in {:.1} s ({:.0} events/s through the writer), database {} MiB",
            fill.as_secs_f64(),
            n as f64 / fill.as_secs_f64(),
            size / (1024 * 1024)
        );
        let total = store.search(&Query::new(Scope::All)).await.unwrap();
        assert_eq!(total.len(), 50, "the newest page");

        // Values that exist in the data (from the same generator).
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        let probe = event(&mut rng, 0, n);
        let word = probe.subject.split(' ').next().unwrap().to_string();
        let domain = probe.mail_from.split('@').nth(1).unwrap().to_string();
        type Case = (&'static str, Box<dyn Fn(&mut Query)>, String);
        let cases: Vec<Case> = vec![
            ("newest page, all tenants", Box::new(|_| {}), "SELECT id FROM events NOT INDEXED ORDER BY time DESC, id DESC LIMIT 50".into()),
            (
                "sender address",
                Box::new({
                    let s = probe.mail_from.clone();
                    move |q| q.sender = Some(s.clone())
                }),
                format!(
                    "SELECT id FROM events NOT INDEXED WHERE mail_from = '{0}' OR header_from = '{0}' ORDER BY time DESC LIMIT 50",
                    probe.mail_from
                ),
            ),
            (
                "sender @domain",
                Box::new({
                    let d = format!("@{domain}");
                    move |q| q.sender = Some(d.clone())
                }),
                format!(
                    "SELECT id FROM events NOT INDEXED WHERE from_domain = '{domain}' OR hfrom_domain = '{domain}' ORDER BY time DESC LIMIT 50"
                ),
            ),
            (
                "recipient address",
                Box::new({
                    let r = probe.recipients[0].clone();
                    move |q| q.rcpt = Some(r.clone())
                }),
                format!(
                    "SELECT id FROM events NOT INDEXED WHERE rcpt = '{}' ORDER BY time DESC LIMIT 50",
                    probe.recipients[0]
                ),
            ),
            (
                "subject word",
                Box::new({
                    let w = word.clone();
                    move |q| q.subject = Some(w.clone())
                }),
                format!(
                    "SELECT id FROM events WHERE (' ' || LOWER(subject) || ' ') LIKE '% {word} %' ORDER BY time DESC LIMIT 50"
                ),
            ),
            (
                "message-id",
                Box::new({
                    let m = probe.message_id.clone();
                    move |q| q.message_id = Some(m.clone())
                }),
                format!(
                    "SELECT id FROM events NOT INDEXED WHERE message_id = '{}' ORDER BY time DESC LIMIT 50",
                    probe.message_id
                ),
            ),
            (
                "action + one day, tenant",
                Box::new(|q| {
                    q.scope = Scope::Tenant("tenant3".into());
                    q.action = Some("quarantine".into());
                    q.since = Some(T0 + 10 * 86400);
                    q.until = Some(T0 + 11 * 86400);
                }),
                format!(
                    "SELECT id FROM events NOT INDEXED WHERE tenant = 'tenant3' AND action = 'quarantine' AND time >= {} AND time < {} ORDER BY time DESC LIMIT 50",
                    T0 + 10 * 86400,
                    T0 + 11 * 86400
                ),
            ),
        ];
        // 200 rounds, so the p99 (index 197 of 0..=199) is the third-slowest search, not the slowest.
        let rounds = if bench { 200 } else { 3 };
        let peer_rounds = if bench { 5 } else { 1 };
        let conn = rusqlite::Connection::open(&db_path).unwrap();
        println!(
            "{:<28} {:>10} {:>10} {:>8} {:>14} {:>8}",
            "search (Store::search)", "p50", "p99", "found", "peer: no index", "ratio"
        );
        for (name, fill_query, peer_sql) in &cases {
            let mut q = Query::new(Scope::All);
            fill_query(&mut q);
            let mut times = Vec::new();
            let mut found = 0;
            for _ in 0..rounds {
                let t = Instant::now();
                found = store.search(&q).await.unwrap().len();
                times.push(t.elapsed());
            }
            times.sort();
            let mut peer = Vec::new();
            let mut peer_found = 0;
            for _ in 0..peer_rounds {
                let t = Instant::now();
                let mut stmt = conn.prepare(peer_sql).unwrap();
                peer_found = stmt.query_map([], |r| r.get::<_, i64>(0)).unwrap().count();
                peer.push(t.elapsed());
            }
            peer.sort();
            assert!(found > 0, "{name}: the data has matches");
            assert_eq!(found, peer_found, "{name}: the peer finds as many");
            let p50 = percentile(&times, 0.5);
            let peer_median = percentile(&peer, 0.5);
            println!(
                "{:<28} {:>8.2}ms {:>8.2}ms {:>8} {:>12.2}ms {:>7.0}x",
                name,
                p50.as_secs_f64() * 1e3,
                percentile(&times, 0.99).as_secs_f64() * 1e3,
                found,
                peer_median.as_secs_f64() * 1e3,
                peer_median.as_secs_f64() / p50.as_secs_f64()
            );
        }
        let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
        println!(
            "load average at the end (1/5/15 min): {} on {} cores",
            load.split_whitespace().take(3).collect::<Vec<_>>().join(" "),
            std::thread::available_parallelism().map_or(0, |n| n.get())
        );
    });
}
