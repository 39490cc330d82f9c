//! The store, against both backends with the same tests: SQLite in a
//! temporary state dir and a real PostgreSQL (a private server on a free
//! loopback port, a fresh database per test). Events searched by every
//! field, the quarantine's lifecycle (release byte for byte except our
//! fields, partial release, delete, allow, audit, tenant scope), retention
//! and the size cap with an injected clock. Then the gateway as a process:
//! events recorded and searched from the command line, a release arriving
//! downstream with `SCL false`, a tiny cap that never stops the spool, two
//! gateways sharing one PostgreSQL, and mail flowing through a store outage.

mod support;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use exogate::message::envelope::{Direction, Envelope, Mailbox, Recipient, SessionFacts};
use exogate::message::verdict::{Action, Finding, Verdict};
use exogate::spool::format::{Kind, Meta, decode_all, encode_all};
use exogate::store::{
    Actor, Clock, DeliveryOutcome, EventRecord, QuarantineEntry, QuarantineQuery, QuarantineState, Query, Scope, Store,
    StoreBackend, StoreConfig, StoreError,
};
use support::postgres::Postgres;

#[derive(Clone, Copy, PartialEq, Debug)]
enum Db {
    Sqlite,
    Postgres,
}

struct TestClock(AtomicI64);

impl Clock for TestClock {
    fn now(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}

/// 2026-12-01 00:00:00 UTC.
const T0: i64 = 1_796_083_200;
const DAY: i64 = 86400;

fn config(db: Db, state: &Path, hint: &str) -> StoreConfig {
    let mut c = StoreConfig::embedded(state, "node-a");
    if db == Db::Postgres {
        c.backend = StoreBackend::Postgres {
            url: Postgres::shared().create_database(hint),
            password_file: None,
        };
    }
    c
}

struct Env {
    dir: tempfile::TempDir,
    clock: Arc<TestClock>,
    store: Store,
    config: StoreConfig,
}

async fn env(db: Db, hint: &str, tweak: impl FnOnce(&mut StoreConfig)) -> Env {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(db, dir.path(), hint);
    tweak(&mut config);
    let clock = Arc::new(TestClock(AtomicI64::new(T0)));
    let store = Store::open_with_clock(&config, dir.path(), clock.clone())
        .await
        .unwrap();
    store.start_writer();
    Env {
        dir,
        clock,
        store,
        config,
    }
}

fn event(
    queue_id: &str,
    time: i64,
    tenant: &str,
    from: &str,
    rcpts: &[&str],
    subject: &str,
    action: &str,
) -> EventRecord {
    EventRecord {
        queue_id: queue_id.into(),
        time,
        node: "node-a".into(),
        tenant: tenant.into(),
        direction: "inbound".into(),
        message_id: format!("{queue_id}@example.org"),
        network_message_id: format!("nmid-{queue_id}"),
        mail_from: from.into(),
        recipients: rcpts.iter().map(|r| r.to_string()).collect(),
        header_from: from.into(),
        subject: subject.into(),
        size: 1234,
        client_ip: "192.0.2.7".into(),
        helo: "mail.example.org".into(),
        tls: Some("TLSv1_3 TLS13_AES_256_GCM_SHA384".into()),
        findings: vec![],
        failures: vec![],
        score: if action == "deliver" { 0.5 } else { 12.0 },
        verdict: action.into(),
        action: action.into(),
        auth: None,
        listings: vec![],
    }
}

fn ids(found: &[exogate::store::EventSummary]) -> Vec<String> {
    found.iter().map(|e| format!("{}:{}", e.queue_id, e.rcpt)).collect()
}

async fn events_are_found_by_every_field(db: Db) {
    let e = env(db, "events", |_| {}).await;
    let s = &e.store;
    s.record_event(event(
        "Q1",
        T0 + 10,
        "contoso",
        "alice@example.org",
        &["u1@contoso.com", "u2@contoso.com"],
        "Quarterly invoice overdue",
        "deliver",
    ));
    s.record_event(event(
        "Q2",
        T0 + 20,
        "contoso",
        "Bob@Evil.example",
        &["u1@contoso.com"],
        "Your invoice is ready",
        "quarantine",
    ));
    s.record_event(event(
        "Q3",
        T0 + 30,
        "fabrikam",
        "carol@example.org",
        &["x@fabrikam.com"],
        "Lunch tomorrow",
        "junk",
    ));
    s.record_delivery(
        "Q1",
        "U1@contoso.com",
        DeliveryOutcome {
            time: T0 + 11,
            result: "deferred".into(),
            host: "mx[127.0.0.1]:25".into(),
            reply: "451 4.3.0 try later".into(),
        },
    );
    s.record_delivery(
        "Q1",
        "u1@contoso.com",
        DeliveryOutcome {
            time: T0 + 71,
            result: "delivered".into(),
            host: "mx[127.0.0.1]:25".into(),
            reply: "250 2.0.0 Ok: queued as ABC".into(),
        },
    );
    s.flush().await;

    let search = |f: &dyn Fn(&mut Query)| {
        let mut q = Query::new(Scope::All);
        f(&mut q);
        async move { ids(&s.search(&q).await.unwrap()) }
    };
    assert_eq!(
        search(&|_| {}).await,
        vec![
            "Q3:x@fabrikam.com",
            "Q2:u1@contoso.com",
            "Q1:u2@contoso.com",
            "Q1:u1@contoso.com"
        ],
        "newest first, one line per recipient"
    );
    assert_eq!(
        search(&|q| q.sender = Some("bob@evil.EXAMPLE".into())).await,
        vec!["Q2:u1@contoso.com"],
        "addresses compare in lower case"
    );
    assert_eq!(
        search(&|q| q.sender = Some("@example.org".into())).await,
        vec!["Q3:x@fabrikam.com", "Q1:u2@contoso.com", "Q1:u1@contoso.com"]
    );
    assert_eq!(
        search(&|q| q.rcpt = Some("u1@contoso.com".into())).await,
        vec!["Q2:u1@contoso.com", "Q1:u1@contoso.com"]
    );
    assert_eq!(
        search(&|q| q.rcpt = Some("@fabrikam.com".into())).await,
        vec!["Q3:x@fabrikam.com"]
    );
    assert_eq!(
        search(&|q| q.subject = Some("INVOICE".into())).await,
        vec!["Q2:u1@contoso.com", "Q1:u2@contoso.com", "Q1:u1@contoso.com"],
        "a subject word, any case"
    );
    assert_eq!(
        search(&|q| q.subject = Some("overdue invoice".into())).await,
        vec!["Q1:u2@contoso.com", "Q1:u1@contoso.com"],
        "every word, any order"
    );
    assert!(
        search(&|q| q.subject = Some("invoices".into())).await.is_empty(),
        "whole words"
    );
    assert_eq!(
        search(&|q| q.message_id = Some("<Q2@example.org>".into())).await,
        vec!["Q2:u1@contoso.com"]
    );
    assert_eq!(
        search(&|q| q.network_message_id = Some("nmid-Q3".into())).await,
        vec!["Q3:x@fabrikam.com"]
    );
    assert_eq!(
        search(&|q| q.action = Some("quarantine".into())).await,
        vec!["Q2:u1@contoso.com"]
    );
    assert_eq!(
        search(&|q| {
            q.since = Some(T0 + 20);
            q.until = Some(T0 + 30);
        })
        .await,
        vec!["Q2:u1@contoso.com"],
        "since inclusive, until exclusive"
    );
    assert_eq!(
        search(&|q| q.scope = Scope::Tenant("fabrikam".into())).await,
        vec!["Q3:x@fabrikam.com"],
        "a tenant sees its own"
    );
    assert_eq!(
        search(&|q| {
            q.limit = 2;
            q.offset = 1;
        })
        .await,
        vec!["Q2:u1@contoso.com", "Q1:u2@contoso.com"],
        "paged"
    );

    let all = s.search(&Query::new(Scope::All)).await.unwrap();
    let q1u1 = all
        .iter()
        .find(|x| x.queue_id == "Q1" && x.rcpt == "u1@contoso.com")
        .unwrap();
    assert_eq!(q1u1.delivery.as_deref(), Some("delivered"), "the latest outcome");
    let detail = s.event(&Scope::All, q1u1.id).await.unwrap().unwrap();
    assert_eq!(detail.event.subject, "Quarterly invoice overdue");
    assert_eq!(detail.event.recipients, vec!["u1@contoso.com", "u2@contoso.com"]);
    assert_eq!(detail.event.tls.as_deref(), Some("TLSv1_3 TLS13_AES_256_GCM_SHA384"));
    let outcomes: Vec<(&str, &str)> = detail
        .deliveries
        .iter()
        .map(|d| (d.result.as_str(), d.reply.as_str()))
        .collect();
    assert_eq!(
        outcomes,
        vec![
            ("deferred", "451 4.3.0 try later"),
            ("delivered", "250 2.0.0 Ok: queued as ABC")
        ]
    );
    assert!(
        s.event(&Scope::Tenant("fabrikam".into()), q1u1.id)
            .await
            .unwrap()
            .is_none(),
        "another tenant's record is not found"
    );
    drop(e.dir);
}

const PREFIX: &str = "Received: from mail.example.org ([192.0.2.7]:4242) by gw.test (exogate) with ESMTPS id ID; Tue, 1 Dec 2026 00:00:00 +0000\r\n\
X-CLOUD-SEC-AV-Info: contoso,office365_emails,inline\r\n\
X-CLOUD-SEC-AV-SCL: true\r\n\
X-CLOUD-SEC-AV-Verdict: action=quarantine; score=100.0; enforced=yes; tests=malware:eicar(100.0)\r\n";

/// Writes a quarantined queue file as the gateway would (body as received,
/// stamp, metadata) and returns the body.
fn quarantine_file(state: &Path, id: &str, time: i64, tenant: &str, rcpts: &[&str], pad: usize) -> Vec<u8> {
    let body = format!(
        "X-CLOUD-SEC-AV-SCL: false\r\nFrom: Mallory <mallory@evil.example>\r\nTo: {}\r\nSubject: Invoice {id}\r\n\
         Message-ID: <{id}@evil.example>\r\nX-MS-Exchange-CrossTenant-Network-Message-Id: nm-{id}\r\n\r\n\
         body of {id}\r\n.dot line\r\n{}\r\n",
        rcpts.join(", "),
        "x".repeat(pad)
    )
    .into_bytes();
    let skip_end = "X-CLOUD-SEC-AV-SCL: false\r\n".len() as u64;
    let meta = Meta {
        id: id.into(),
        received: time,
        kind: Kind::Message,
        envelope: Envelope {
            mail_from: Mailbox::parse("mallory@evil.example").unwrap(),
            recipients: rcpts
                .iter()
                .map(|r| Recipient {
                    address: Mailbox::parse(r).unwrap(),
                    orcpt: None,
                    notify: None,
                })
                .collect(),
            ..Envelope::default()
        },
        session: SessionFacts {
            client_ip: "192.0.2.7".parse().unwrap(),
            client_port: 4242,
            helo: "mail.example.org".into(),
            tls: None,
            session_id: String::new(),
        },
        ids: Default::default(),
        tenant: tenant.into(),
        sender_authenticated: false,
        direction: Direction::Inbound,
        verdict: Some(Verdict {
            action: Action::Quarantine,
            score: 100.0,
            findings: vec![Finding {
                check: "malware".into(),
                score: 100.0,
                tag: "eicar".into(),
                reason: "Eicar-Signature FOUND".into(),
                force: Some(Action::Quarantine),
            }],
            failures: vec![],
            tempfail: false,
        }),
        skips: vec![(0, skip_end)],
        route: None,
    };
    let dir = state.join("quarantine");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(format!("{id}.q")), encode_all(&body, &meta, PREFIX.as_bytes())).unwrap();
    body
}

fn active_files(state: &Path) -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(state.join("queue/active"))
        .map(|d| {
            d.map(|e| e.unwrap().path())
                .filter(|p| p.extension().is_some_and(|x| x == "q"))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

fn admin() -> Actor {
    Actor {
        name: "alice".into(),
        from: "198.51.100.9".into(),
    }
}

async fn quarantine_lifecycle(db: Db) {
    let e = env(db, "lifecycle", |_| {}).await;
    let s = &e.store;
    let state = e.dir.path();
    let body = quarantine_file(state, "AAA1", T0, "contoso", &["u1@contoso.com", "u2@contoso.com"], 10);
    quarantine_file(state, "AAA2", T0 + 5, "contoso", &["u1@contoso.com"], 10);
    quarantine_file(state, "BBB1", T0 + 9, "fabrikam", &["x@fabrikam.com"], 10);
    assert_eq!(s.reconcile().await.unwrap(), 3, "files the index missed are indexed");
    assert_eq!(s.reconcile().await.unwrap(), 0);
    if db == Db::Postgres {
        assert!(
            !state.join("quarantine/AAA1.q").exists(),
            "with PostgreSQL the bytes move into the database"
        );
    }

    let held = s.quarantine_list(&QuarantineQuery::new(Scope::All)).await.unwrap();
    let listed: Vec<&str> = held.iter().map(|q| q.id.as_str()).collect();
    assert_eq!(listed, vec!["BBB1", "AAA2", "AAA1"]);
    assert_eq!(held[2].subject, "Invoice AAA1");
    assert_eq!(held[2].findings[0].reason, "Eicar-Signature FOUND");
    let contoso = Scope::Tenant("contoso".into());
    let mut q = QuarantineQuery::new(contoso.clone());
    q.rcpt = Some("u2@contoso.com".into());
    assert_eq!(s.quarantine_list(&q).await.unwrap().len(), 1);
    let mut q = QuarantineQuery::new(Scope::All);
    q.sender = Some("@evil.example".into());
    q.subject = Some("aaa2".into());
    assert_eq!(s.quarantine_list(&q).await.unwrap()[0].id, "AAA2");
    // Time bounds and Message-ID are filters of the query itself (a page of
    // held mail is never cut short after the fact).
    let mut q = QuarantineQuery::new(Scope::All);
    q.since = Some(T0 + 5);
    q.until = Some(T0 + 9);
    let ids = |l: Vec<QuarantineEntry>| l.into_iter().map(|e| e.id).collect::<Vec<_>>();
    assert_eq!(ids(s.quarantine_list(&q).await.unwrap()), vec!["AAA2"]);
    let mut q = QuarantineQuery::new(Scope::All);
    q.message_id = Some("<AAA1@evil.example>".into());
    assert_eq!(ids(s.quarantine_list(&q).await.unwrap()), vec!["AAA1"]);
    q.message_id = Some("AAA1".into());
    assert!(
        s.quarantine_list(&q).await.unwrap().is_empty(),
        "Message-ID matches exactly"
    );

    // Scope: another tenant's message is "not found", whatever the call.
    assert!(matches!(
        s.quarantine_message(&contoso, "BBB1").await,
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        s.quarantine_release(&contoso, "BBB1", None, &admin()).await,
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        s.quarantine_delete(&contoso, "BBB1", &admin()).await,
        Err(StoreError::NotFound(_))
    ));

    let held = s.quarantine_message(&contoso, "AAA1").await.unwrap();
    assert_eq!(held.body, body, "the bytes as received");

    // Release to one recipient, then the rest.
    let first = s
        .quarantine_release(&contoso, "AAA1", Some(&["U2@contoso.com".to_string()]), &admin())
        .await
        .unwrap();
    assert_eq!(first.recipients, vec!["u2@contoso.com"]);
    assert!(matches!(
        s.quarantine_release(&contoso, "AAA1", Some(&["u2@contoso.com".to_string()]), &admin())
            .await,
        Err(StoreError::Invalid(_))
    ));
    let entry = s.quarantine_get(&contoso, "AAA1").await.unwrap().unwrap();
    assert_eq!(
        (entry.state, entry.released.clone()),
        (QuarantineState::Held, vec!["u2@contoso.com".to_string()])
    );
    let second = s.quarantine_release(&contoso, "AAA1", None, &admin()).await.unwrap();
    assert_eq!(second.recipients, vec!["u1@contoso.com"]);
    let entry = s.quarantine_get(&contoso, "AAA1").await.unwrap().unwrap();
    assert_eq!(entry.state, QuarantineState::Released);
    assert!(
        s.quarantine_release(&contoso, "AAA1", None, &admin()).await.is_err(),
        "never twice"
    );

    // The copies: the body byte for byte, the stamp changed in our two fields only.
    let copies = active_files(state);
    assert_eq!(copies.len(), 2);
    for (path, rcpt) in copies.iter().zip(["u2@contoso.com", "u1@contoso.com"]) {
        let file = std::fs::read(path).unwrap();
        let (trailer, range) = decode_all(&file).unwrap();
        assert_eq!(&file[range], &body[..], "nothing else in the bytes changes");
        let rcpts: Vec<String> = trailer
            .meta
            .envelope
            .recipients
            .iter()
            .map(|r| r.address.to_string())
            .collect();
        assert_eq!(rcpts, vec![rcpt]);
        assert_eq!(trailer.meta.skips, vec![(0, 27)], "the forged field is still left out");
        let stamp = String::from_utf8(trailer.prefix).unwrap();
        let expected = PREFIX
            .replace("X-CLOUD-SEC-AV-SCL: true", "X-CLOUD-SEC-AV-SCL: false")
            .replace(
                "X-CLOUD-SEC-AV-Verdict: action=quarantine; score=100.0;",
                "X-CLOUD-SEC-AV-Verdict: action=deliver; released-by=alice; score=100.0;",
            );
        let unfold = |s: &str| s.replace("\r\n\t", " ");
        assert_eq!(unfold(&stamp), unfold(&expected));
    }

    // Delete, not spam, allow; each leaves an audit record.
    s.not_spam(&Scope::All, "AAA2", &admin()).await.unwrap();
    s.quarantine_delete(&contoso, "AAA2", &admin()).await.unwrap();
    assert_eq!(
        s.quarantine_get(&Scope::All, "AAA2").await.unwrap().unwrap().state,
        QuarantineState::Deleted
    );
    assert!(!state.join("quarantine/AAA2.q").exists());
    assert!(
        s.quarantine_message(&Scope::All, "AAA2").await.is_err(),
        "its bytes are gone"
    );
    assert!(!s.is_allowed("contoso", "mallory@evil.example"));
    s.allow_sender("contoso", "Mallory@Evil.example", &admin())
        .await
        .unwrap();
    assert!(s.is_allowed("contoso", "MALLORY@evil.example"));
    assert!(!s.is_allowed("fabrikam", "mallory@evil.example"), "per tenant");
    s.allow_sender("fabrikam", "@example.net", &admin()).await.unwrap();
    assert!(s.is_allowed("fabrikam", "anyone@example.net"));
    assert!(s.allow_sender("fabrikam", "not an address", &admin()).await.is_err());
    // Another handle on the same store (another node) reads the lists at open.
    let other = Store::open(&e.config, state).await.unwrap();
    assert!(other.is_allowed("contoso", "mallory@evil.example"));

    let audit = s.audit_list(&Scope::All, 100, 0).await.unwrap();
    let actions: Vec<&str> = audit.iter().map(|a| a.action.as_str()).collect();
    assert_eq!(
        actions,
        vec![
            "allow-sender",
            "allow-sender",
            "delete",
            "not-spam",
            "release",
            "release"
        ]
    );
    assert!(
        audit
            .iter()
            .all(|a| a.actor == "alice" && a.from == "198.51.100.9" && a.time == T0)
    );
    assert_eq!(audit[5].messages[0], "AAA1");
    let scoped = s.audit_list(&Scope::Tenant("fabrikam".into()), 100, 0).await.unwrap();
    assert_eq!(scoped.len(), 1, "a tenant sees its own audit records");
}

async fn retention_and_cap_with_an_injected_clock(db: Db) {
    let e = env(db, "retention", |c| {
        c.quarantine_max_size = 3 * 1100;
        c.tenant_retention
            .insert("fabrikam".into(), Duration::from_secs(90 * 86400));
    })
    .await;
    let s = &e.store;
    let state = e.dir.path();
    for (i, id) in ["C1", "C2", "C3", "C4", "C5"].iter().enumerate() {
        quarantine_file(state, id, T0 + i as i64 * 60, "contoso", &["u@contoso.com"], 800);
    }
    quarantine_file(state, "F1", T0 - DAY, "fabrikam", &["x@fabrikam.com"], 10);
    s.record_event(event(
        "E1",
        T0,
        "contoso",
        "a@example.org",
        &["u@contoso.com"],
        "old",
        "deliver",
    ));
    s.record_event(event(
        "E2",
        T0,
        "fabrikam",
        "a@example.org",
        &["x@fabrikam.com"],
        "old",
        "deliver",
    ));
    s.flush().await;
    s.reconcile().await.unwrap();

    // Over the cap: the oldest go first, down to what fits.
    let removed = s.prune().await.unwrap();
    let held: Vec<String> = s
        .quarantine_list(&QuarantineQuery::new(Scope::All))
        .await
        .unwrap()
        .into_iter()
        .map(|q| q.id)
        .collect();
    assert_eq!(held, vec!["C5", "C4", "C3"], "removed {removed}");
    let usage = s.quarantine_usage().await.unwrap();
    assert!(usage.bytes <= usage.cap, "{usage:?}");
    let mut expired = QuarantineQuery::new(Scope::All);
    expired.state = Some(QuarantineState::Expired);
    let gone: Vec<String> = s
        .quarantine_list(&expired)
        .await
        .unwrap()
        .into_iter()
        .map(|q| q.id)
        .collect();
    assert_eq!(gone, vec!["C2", "C1", "F1"]);
    assert!(!state.join("quarantine/C1.q").exists() && !state.join("quarantine/F1.q").exists());

    // Thirty-one days later: contoso's events and held mail are gone,
    // fabrikam (90 days) keeps its events.
    e.clock.0.store(T0 + 31 * DAY, Ordering::SeqCst);
    s.prune().await.unwrap();
    assert!(
        s.quarantine_list(&QuarantineQuery::new(Scope::All))
            .await
            .unwrap()
            .is_empty()
    );
    let left: Vec<String> = s
        .search(&Query::new(Scope::All))
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.queue_id)
        .collect();
    assert_eq!(left, vec!["E2"]);
    e.clock.0.store(T0 + 91 * DAY, Ordering::SeqCst);
    s.prune().await.unwrap();
    assert!(s.search(&Query::new(Scope::All)).await.unwrap().is_empty());
    assert!(
        s.quarantine_list(&expired).await.unwrap().is_empty(),
        "index rows go with their retention too"
    );
}

macro_rules! both {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(#[tokio::test]
            async fn $name() {
                super::$name(super::Db::Sqlite).await;
            })*
        }
        mod postgres {
            $(#[tokio::test]
            async fn $name() {
                super::$name(super::Db::Postgres).await;
            })*
        }
    };
}

both!(
    events_are_found_by_every_field,
    quarantine_lifecycle,
    retention_and_cap_with_an_injected_clock
);

// ---- the gateway as a process ----

mod gateway {
    use std::path::Path;
    use std::time::Duration;

    use super::support;
    use support::gateway::{Gateway, Options, config_text};
    use support::postfix::{Captured, without_postfix_received};
    use support::postgres::Postgres;
    use support::smtp::Client;
    use support::stack::Stack;
    use support::wait_for;

    /// A content rule holds any message whose subject says "hold me" (score 15, quarantine at 10).
    fn policy() -> String {
        "[policy.default]\njunk_score = 5.0\nquarantine_score = 10.0\nreject_score = 20.0\n\
         [[policy.default.check]]\nkind = \"content\"\n\
         rules = [{ name = \"test-hold\", pattern = \"hold me\", score = 15.0, where = \"subject\" }]\n"
            .to_string()
    }

    fn options(store: &str) -> Options {
        Options {
            policy: Some(policy()),
            extra: store.to_string(),
            ..Options::default()
        }
    }

    fn message(from: &str, subject: &str, pad: usize) -> Vec<u8> {
        support::crlf(&format!(
            "X-CLOUD-SEC-AV-SCL: true\nFrom: Alice <{from}>\nTo: user@contoso.com\nSubject: {subject}\n\
             Date: Mon, 23 Nov 2026 10:00:00 +0000\nMessage-ID: <{}@example.org>\n\
             X-MS-Exchange-CrossTenant-Network-Message-Id: 6f1c2d3e-{}\nMIME-Version: 1.0\n\n\
             Hello,\n.a line with a dot\ntrailing   \n{}\n",
            subject.replace(' ', "-"),
            subject.len(),
            "z".repeat(pad)
        ))
    }

    fn send(gw: &Gateway, ca: &Path, from: &str, subject: &str, pad: usize) -> String {
        let mut c = Client::connect_tls(gw.smtp, ca, None);
        let r = c.send_data(from, &["user@contoso.com"], &message(from, subject, pad));
        assert_eq!(r.code, 250, "{r}");
        r.text().rsplit(' ').next().unwrap().to_string()
    }

    fn cli_json(gw: &Gateway, args: &[&str]) -> serde_json::Value {
        let (code, out, err) = gw.cli(args);
        assert_eq!(code, 0, "{args:?}: {out}{err}");
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{args:?}: {e}: {out}"))
    }

    fn with_subject<'a>(msgs: &'a [Captured], subject: &str) -> Vec<&'a Captured> {
        msgs.iter()
            .filter(|m| String::from_utf8_lossy(&m.data).contains(&format!("Subject: {subject}\n")))
            .collect()
    }

    /// The header fields of ours (`X-CLOUD-SEC-AV-*`, our `Received`) removed, LF line endings.
    fn without_our_fields(text: &str) -> String {
        let mut out = Vec::new();
        let mut skipping = false;
        let mut in_header = true;
        let text = text.replace("\r\n", "\n");
        for line in text.split_inclusive('\n') {
            if in_header && line == "\n" {
                in_header = false;
            }
            if in_header {
                if line.starts_with([' ', '\t']) {
                    if skipping {
                        continue;
                    }
                } else {
                    let lower = line.to_ascii_lowercase();
                    skipping = lower.starts_with("x-cloud-sec-av-")
                        || (lower.starts_with("received:") && line.contains("(exogate)"));
                    if skipping {
                        continue;
                    }
                }
            }
            out.push(line);
        }
        out.concat()
    }

    fn field_values(data: &[u8], name: &str) -> Vec<String> {
        let text = String::from_utf8_lossy(data).replace("\n\t", " ");
        let head = text.split("\n\n").next().unwrap().to_string();
        head.lines()
            .filter(|l| {
                l.to_ascii_lowercase()
                    .starts_with(&format!("{}:", name.to_ascii_lowercase()))
            })
            .map(|l| l[name.len() + 1..].trim().to_string())
            .collect()
    }

    #[test]
    fn events_are_searched_and_a_release_arrives_stamped_as_delivered() {
        let s = Stack::new();
        let gw = s.gateway(options(""));
        let clean = send(&gw, &s.pki.ca, "alice@example.org", "quarterly figures", 0);
        let held = send(&gw, &s.pki.ca, "alice@example.org", "please hold me", 0);
        s.downstream.wait_messages(1, Duration::from_secs(30));

        // Both messages, with the delivery outcome of the clean one.
        let found = wait_for(Duration::from_secs(20), || {
            let v = cli_json(&gw, &["events", "search", "--sender", "Alice@Example.org", "--json"]);
            let list = v.as_array().unwrap().clone();
            (list.len() == 2 && list.iter().any(|e| e["delivery"] == "delivered")).then_some(list)
        })
        .expect("both events recorded, the delivery too");
        let by_id = |id: &str| found.iter().find(|e| e["queue_id"] == id).unwrap().clone();
        assert_eq!(by_id(&clean)["action"], "deliver");
        assert_eq!(by_id(&clean)["delivery"], "delivered");
        assert_eq!(by_id(&held)["action"], "quarantine");
        assert_eq!(by_id(&held)["subject"], "please hold me");
        assert_eq!(by_id(&held)["rcpt"], "user@contoso.com");
        let detail = cli_json(&gw, &["events", "show", &by_id(&clean)["id"].to_string(), "--json"]);
        assert_eq!(detail["event"]["network_message_id"], "6f1c2d3e-17");
        assert_eq!(detail["event"]["message_id"], "quarterly-figures@example.org");
        assert!(detail["event"]["tls"].as_str().unwrap().starts_with("TLS"), "{detail}");
        let reply = detail["deliveries"][0]["reply"].as_str().unwrap();
        assert!(reply.starts_with("250"), "{detail}");
        let (_, text, _) = gw.cli(&["events", "search", "--subject", "HOLD", "--action", "quarantine"]);
        assert!(text.contains(&held) && !text.contains(&clean), "{text}");

        let listed = cli_json(&gw, &["quarantine", "list", "--json"]);
        assert_eq!(listed[0]["id"], held.as_str());
        assert_eq!(listed[0]["findings"][0]["tag"], "test-hold");
        let (code, shown, _) = gw.cli(&["quarantine", "show", &held]);
        assert_eq!(code, 0);
        assert!(
            shown.contains("content:") && shown.contains("Subject: please hold me"),
            "{shown}"
        );

        // Released: the same bytes downstream, SCL false, the verdict says who.
        let (code, out, err) = gw.cli(&["quarantine", "release", &held]);
        assert_eq!(code, 0, "{out}{err}");
        // The gateway holds the state directory: the release is its to carry
        // out (its control socket), never a queue file written behind its back.
        assert!(out.contains("(through the running gateway)"), "{out}");
        assert!(
            gw.log().contains(&format!("quarantine release {held} by=cli:")),
            "{}",
            gw.log()
        );
        let got = s.downstream.wait_messages(2, Duration::from_secs(30));
        let released = with_subject(&got, "please hold me");
        assert_eq!(released.len(), 1);
        let data = &released[0].data;
        assert_eq!(field_values(data, "X-CLOUD-SEC-AV-SCL"), vec!["false"]);
        let verdict = field_values(data, "X-CLOUD-SEC-AV-Verdict");
        assert_eq!(verdict.len(), 1);
        assert!(
            verdict[0].starts_with("action=deliver; released-by=cli:"),
            "{verdict:?}"
        );
        assert!(verdict[0].contains("content:test-hold(15.0)"), "{verdict:?}");
        let delivered = String::from_utf8_lossy(without_postfix_received(data)).into_owned();
        let sent = String::from_utf8(message("alice@example.org", "please hold me", 0)).unwrap();
        assert_eq!(
            without_our_fields(&delivered),
            without_our_fields(&sent),
            "nothing but our fields differs"
        );
        let (code, _, err) = gw.cli(&["quarantine", "release", &held]);
        assert_ne!(code, 0, "released once only: {err}");

        // The copy has an event and a delivery; the audit trail has the release.
        wait_for(Duration::from_secs(20), || {
            let v = cli_json(&gw, &["events", "search", "--action", "released", "--json"]);
            (v[0]["delivery"] == "delivered").then_some(())
        })
        .expect("the released copy is recorded as delivered");
        let audit = cli_json(&gw, &["events", "audit", "--json"]);
        assert_eq!(audit[0]["action"], "release");
        assert_eq!(audit[0]["messages"][0], held.as_str());
        assert!(audit[0]["actor"].as_str().unwrap().starts_with("cli:"));

        // Allow the sender: the next such message is delivered (the gateway
        // reads the list within its upkeep interval).
        let (code, out, err) = gw.cli(&[
            "quarantine",
            "allow",
            "--tenant",
            "contoso",
            "--sender",
            "alice@example.org",
        ]);
        assert_eq!(code, 0, "{out}{err}");
        let _ = gw.wait_log("allow", Duration::from_secs(1));
        let mut allowed = None;
        for i in 0..40 {
            let id = send(&gw, &s.pki.ca, "alice@example.org", &format!("hold me {i}"), 0);
            let v = wait_for(Duration::from_secs(10), || {
                let v = cli_json(&gw, &["events", "search", "--queue-id", &id, "--json"]);
                v.as_array().unwrap().first().cloned()
            })
            .unwrap();
            if v["action"] == "deliver" {
                allowed = Some(i);
                break;
            }
            std::thread::sleep(Duration::from_secs(1));
        }
        let i = allowed.expect("the allow list is honoured within the upkeep interval");
        let got = s.downstream.wait_messages(3, Duration::from_secs(30));
        let m = with_subject(&got, &format!("hold me {i}"));
        assert_eq!(m.len(), 1);
        assert!(field_values(&m[0].data, "X-CLOUD-SEC-AV-Verdict")[0].contains("allow-list:sender-allowed"));
    }

    #[test]
    fn a_tiny_cap_removes_the_oldest_and_the_spool_keeps_accepting() {
        let s = Stack::new();
        let gw = s.gateway(options("[store]\nquarantine_max_size = \"64KiB\"\n"));
        let mut ids = Vec::new();
        for i in 0..6 {
            ids.push(send(
                &gw,
                &s.pki.ca,
                "bulk@example.org",
                &format!("hold me {i}"),
                20_000,
            ));
        }
        let held = wait_for(Duration::from_secs(20), || {
            let v = cli_json(&gw, &["quarantine", "list", "--json"]);
            let held: Vec<String> = v
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["id"].as_str().unwrap().to_string())
                .collect();
            (held.len() == 3).then_some(held)
        })
        .expect("the oldest removed down to the cap");
        assert_eq!(
            held,
            vec![ids[5].clone(), ids[4].clone(), ids[3].clone()],
            "newest kept"
        );
        let expired = cli_json(&gw, &["quarantine", "list", "--state", "expired", "--json"]);
        assert_eq!(expired.as_array().unwrap().len(), 3);
        let files = std::fs::read_dir(gw.dir.join("state/quarantine")).unwrap().count();
        assert_eq!(files, 3, "their bytes are gone");
        // The spool still accepts and delivers.
        send(&gw, &s.pki.ca, "alice@example.org", "still flowing", 0);
        let got = s.downstream.wait_messages(1, Duration::from_secs(30));
        assert_eq!(with_subject(&got, "still flowing").len(), 1);
        let (_, metrics) = gw.http_get("/metrics");
        assert!(
            metrics.contains("exogate_quarantine_pruned_total{reason=\"cap\"} 3"),
            "{metrics}"
        );
        assert!(metrics.contains("exogate_quarantine_max_bytes 65536"), "{metrics}");
        assert!(
            gw.log().contains("80 % of quarantine_max_size"),
            "the warning before the cap"
        );
    }

    #[test]
    fn two_gateways_on_one_postgresql_share_the_quarantine() {
        let s = Stack::new();
        let url = Postgres::shared().create_database("two_nodes");
        let start = |name: &str| {
            let dir = s.dir.path().join(name);
            std::fs::create_dir_all(&dir).unwrap();
            let opts = Options {
                deliver_to: vec![s.downstream.addr()],
                ..options(&format!("[store]\nurl = \"{url}\"\nnode = \"{name}\"\n"))
            };
            Gateway::start_with_text(&dir, &config_text(&dir, &s.pki, &s.server, &opts))
        };
        let one = start("node-1");
        let two = start("node-2");
        let held = send(&one, &s.pki.ca, "alice@example.org", "hold me on one", 0);

        let listed = wait_for(Duration::from_secs(20), || {
            let v = cli_json(&two, &["quarantine", "list", "--json"]);
            v.as_array().unwrap().first().cloned()
        })
        .expect("node-2 lists what node-1 held");
        assert_eq!(listed["id"], held.as_str());
        assert_eq!(listed["node"], "node-1");
        wait_for(Duration::from_secs(20), || {
            (std::fs::read_dir(one.dir.join("state/quarantine")).unwrap().count() == 0).then_some(())
        })
        .expect("node-1's bytes moved into PostgreSQL");

        let released = cli_json(&two, &["quarantine", "release", &held, "--json"]);
        assert_eq!(released["node"], "node-2");
        let got = s.downstream.wait_messages(1, Duration::from_secs(30));
        let m = with_subject(&got, "hold me on one");
        assert_eq!(m.len(), 1);
        assert_eq!(field_values(&m[0].data, "X-CLOUD-SEC-AV-SCL"), vec!["false"]);
        // Node-2 delivered the copy: its queue id is in node-2's events, and
        // node-1 sees the release in the shared audit trail.
        wait_for(Duration::from_secs(20), || {
            let v = cli_json(&one, &["events", "search", "--action", "released", "--json"]);
            (v[0]["delivery"] == "delivered" && v[0]["queue_id"] == released["copy_id"]).then_some(())
        })
        .expect("the copy's delivery is recorded");
        let audit = cli_json(&one, &["events", "audit", "--json"]);
        assert_eq!(audit[0]["action"], "release");
        let (code, _, _) = one.cli(&["quarantine", "release", &held]);
        assert_ne!(code, 0, "released once, whichever node asks");
        assert!(!one.log().contains("s3cret") && !two.log().contains("s3cret"));
    }

    #[test]
    fn mail_flows_while_the_store_is_down() {
        let s = Stack::new();
        let port = support::free_port();
        let gw = s.gateway(options(&format!(
            "[store]\nurl = \"postgresql://exogate:s3cret@127.0.0.1:{port}/exogate\"\n"
        )));
        assert!(gw.wait_log("the store is unavailable at start", Duration::from_secs(10)));
        send(&gw, &s.pki.ca, "alice@example.org", "during the outage", 0);
        send(&gw, &s.pki.ca, "alice@example.org", "hold me during the outage", 0);
        let got = s.downstream.wait_messages(1, Duration::from_secs(30));
        assert_eq!(with_subject(&got, "during the outage").len(), 1);
        assert!(gw.wait_log("cannot write to the store; retrying", Duration::from_secs(10)));
        assert!(
            gw.dir.join("state/quarantine").read_dir().unwrap().count() == 1,
            "the held message is safe in the spool until the store is back"
        );
        let (_, metrics) = gw.http_get("/metrics");
        assert!(
            metrics.contains("exogate_store_writes_total{result=\"unavailable\"} 1"),
            "{metrics}"
        );
        let log = gw.log();
        assert!(!log.contains("s3cret"), "the password is never logged");
        assert!(log.contains("exogate:***@127.0.0.1"), "the URL is shown redacted");
    }
}
