//! The cost of sender authentication per message with a warm cache: the
//! pipeline with only the `auth` check (trust order, ARC, SPF, every DKIM
//! signature, DMARC) against the same pipeline with no check (parse only),
//! on corpus messages, the resolver pointed at a real Knot DNS on loopback
//! serving the corpus zones (tests/fixtures/auth).
//!
//! Warm: each message is authenticated once before measuring, then the DNS
//! server is stopped and the results checked unchanged: records come from
//! exogate's parsed-record cache and hickory's answer cache (the zones' TTLs
//! outlast a run), and what is measured is CPU (hashing, RSA/Ed25519
//! verification, parsing), no network wait. After criterion's wall-clock
//! figures, the process CPU time (user+system, /proc/self/stat) over a fixed
//! number of messages is printed as µs of CPU per message.
//!
//! `cargo bench --bench auth`; under `cargo test` each case runs once.

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use exogate::checks::builtin_policy;
use exogate::config::tenant::{Destination, Tenant};
use exogate::message::auth::AuthResults;
use exogate::message::envelope::{Direction, Envelope, Recipient, SessionFacts};
use exogate::scan::check::BuildContext;
use exogate::scan::pipeline::Policy;

#[path = "../tests/support/mod.rs"]
#[allow(unused_imports, unreachable_pub)]
mod support;

struct Case {
    id: &'static str,
    raw: Vec<u8>,
    envelope: Envelope,
    session: SessionFacts,
    exo: bool,
}

const CASES: [&str; 4] = [
    "dkim-pass-rsa2048-simple", // SPF ip4 pass, one RSA-2048 signature, DMARC pass
    "dkim-pass-ed25519",        // SPF fail, one Ed25519 signature, DMARC pass
    "exo-arc-pass",             // EXO-shaped: ARC (microsoft.com) verified, origin from the AAR
    "arc-3-valid",              // three ARC sets, a broken DKIM signature
];

fn load_cases() -> Vec<Case> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/auth");
    let doc: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join("cases.json")).unwrap()).unwrap();
    CASES
        .iter()
        .map(|id| {
            let c = doc["cases"]
                .as_array()
                .unwrap()
                .iter()
                .find(|c| c["id"] == *id)
                .unwrap();
            let smtp = &c["smtp"];
            Case {
                id,
                raw: std::fs::read(dir.join(c["file"].as_str().unwrap())).unwrap(),
                envelope: Envelope {
                    mail_from: smtp["mail_from"].as_str().unwrap().parse().unwrap(),
                    recipients: vec![Recipient {
                        address: "carol@contoso.test".parse().unwrap(),
                        orcpt: None,
                        notify: None,
                    }],
                    ..Envelope::default()
                },
                session: SessionFacts {
                    session_id: String::new(),
                    client_ip: smtp["client_ip"].as_str().unwrap().parse().unwrap(),
                    client_port: 25000,
                    helo: smtp["helo"].as_str().unwrap().into(),
                    tls: None,
                },
                exo: c["exo_session"].as_bool().unwrap(),
            }
        })
        .collect()
}

fn knot() -> support::knot::Knot {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/auth/zones");
    let zones: Vec<(String, String)> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .map(|p| {
            (
                p.file_stem().unwrap().to_string_lossy().into_owned(),
                std::fs::read_to_string(&p).unwrap(),
            )
        })
        .collect();
    let refs: Vec<(&str, &str)> = zones.iter().map(|(n, t)| (n.as_str(), t.as_str())).collect();
    support::knot::Knot::start(&refs)
}

fn run(rt: &tokio::runtime::Runtime, policy: &Policy, tenant: &Tenant, c: &Case) -> usize {
    authenticate(rt, policy, tenant, c).map_or(0, |a| a.dkim.len() + a.lookups as usize)
}

fn authenticate(rt: &tokio::runtime::Runtime, policy: &Policy, tenant: &Tenant, c: &Case) -> Option<AuthResults> {
    let report = rt.block_on(policy.scan(
        &c.raw,
        c.raw.len() as u64,
        &c.envelope,
        &c.session,
        tenant,
        Direction::Inbound,
        c.exo,
        "BENCH",
    ));
    report.auth
}

/// User+system CPU time of this process.
fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    // Fields 14 and 15 of proc(5) (utime, stime), in clock ticks (100 Hz on Linux).
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    Duration::from_millis(ticks * 10)
}

fn bench(c: &mut Criterion) {
    let dns = knot();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let cx = BuildContext::with_dns_servers(".", &[dns.addr()]);
    let auth = builtin_policy(&["auth"], &cx);
    let parse_only = builtin_policy(&[], &cx);
    let tenant = Tenant::new("contoso", &["contoso.test"], Destination::Mx);
    let cases = load_cases();
    // Warm the caches; a cold first message would measure DNS round trips.
    let warm: Vec<Option<AuthResults>> = cases.iter().map(|c| authenticate(&rt, &auth, &tenant, c)).collect();
    // Then stop the DNS server: every answer must now come from the caches,
    // so the figures below contain no query at all (a miss would turn into
    // a temperror and change the results).
    drop(dns);
    let all_cached = |when: &str| {
        for (case, before) in cases.iter().zip(&warm) {
            let mut after = authenticate(&rt, &auth, &tenant, case);
            if let (Some(a), Some(b)) = (after.as_mut(), before) {
                a.lookups = b.lookups;
            }
            assert_eq!(&after, before, "{}: not everything was cached {when}", case.id);
        }
    };
    all_cached("after warming up");
    let mut group = c.benchmark_group("auth (warm cache)");
    for case in &cases {
        group.bench_function(format!("{} parse only", case.id), |b| {
            b.iter(|| black_box(run(&rt, &parse_only, &tenant, case)));
        });
        group.bench_function(format!("{} parse + auth", case.id), |b| {
            b.iter(|| black_box(run(&rt, &auth, &tenant, case)));
        });
    }
    group.finish();

    // CPU per message, outside criterion (skipped under `cargo test --benches`).
    if std::env::args().any(|a| a == "--bench") {
        const N: u32 = 20_000;
        println!("\nCPU per message (user+system over {N} messages each, warm cache):");
        for case in &cases {
            let mut per = Vec::new();
            for policy in [&parse_only, &auth] {
                let start = cpu_time();
                for _ in 0..N {
                    black_box(run(&rt, policy, &tenant, case));
                }
                per.push((cpu_time() - start).as_secs_f64() * 1e6 / f64::from(N));
            }
            println!(
                "  {:<26} parse only {:>7.1} µs   parse + auth {:>7.1} µs   auth {:>7.1} µs",
                case.id,
                per[0],
                per[1],
                per[1] - per[0]
            );
        }
    }
    // The zones' TTL (300 s) must have outlasted the measurements.
    all_cached("at the end (did the run outlast the TTL?)");
}

criterion_group!(benches, bench);
criterion_main!(benches);
