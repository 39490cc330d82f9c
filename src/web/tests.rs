//! The web stage's guards, through the real router on the in-memory backend:
//! no session, wrong tenant, missing CSRF token, foreign Origin, login rate
//! limit, escaping, the digest links, what the message page says about a
//! verdict, and what every route answers when the store does not.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use tower::ServiceExt;

use crate::config::web::{Account, Role};
use crate::message::verdict::Action;
use crate::web::accounts::{Accounts, hash_password};
use crate::web::backend::{Change, Finding, Record, Summary};
use crate::web::links::LinkKey;
use crate::web::memory::MemoryBackend;
use crate::web::ratelimit::LoginLimiter;
use crate::web::routes::{Peer, WebState, router};
use crate::web::sessions::Sessions;

const KEY: &[u8] = b"0123456789abcdef0123456789abcdef";

fn record(id: &str, tenant: &str, subject: &str, held: bool) -> Record {
    Record {
        summary: Summary {
            id: id.into(),
            received: 1_796_456_460,
            tenant: tenant.into(),
            direction: "inbound".into(),
            sender: "mallory@example.org".into(),
            recipients: vec![format!("bob@{tenant}.com"), format!("carol@{tenant}.com")],
            from: "Mallory <mallory@example.org>".into(),
            subject: subject.into(),
            message_id: format!("<{id}@example.org>"),
            action: "quarantine".into(),
            score: 100.0,
            size: 123,
            held,
        },
        client: "192.0.2.1".into(),
        tls: "TLSv1.3".into(),
        findings: vec![Finding {
            check: "malware".into(),
            ..Finding::new(100.0, "MALWARE", "Eicar-Signature <b>")
        }],
        failures: vec![],
        deliveries: vec![],
        released_to: vec![],
        raw: Some(
            format!(
                "From: mallory@example.org\r\nSubject: {subject}\r\nMIME-Version: 1.0\r\n\
                 Content-Type: multipart/mixed; boundary=\"b\"\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\n\
                 click <a href=x>here</a>\r\n--b\r\nContent-Type: application/octet-stream\r\n\
                 Content-Disposition: attachment; filename=\"<script>alert(2)</script>.exe\"\r\n\r\nMZ\r\n--b--\r\n"
            )
            .into_bytes(),
        ),
    }
}

struct Rig {
    backend: Arc<MemoryBackend>,
    state: Arc<WebState>,
}

fn rig() -> Rig {
    let hash = hash_password("secret").unwrap();
    let accounts = vec![
        Account {
            name: "root".into(),
            password_hash: hash.clone(),
            role: Role::Admin,
        },
        Account {
            name: "alice".into(),
            password_hash: hash,
            role: Role::Tenant("contoso".into()),
        },
    ];
    let backend = Arc::new(MemoryBackend::default());
    backend.records.lock().unwrap().extend([
        record("AAA1", "contoso", "<script>alert(1)</script> invoice", true),
        record("BBB2", "fabrikam", "fabrikam only", true),
    ]);
    let state = Arc::new(WebState {
        backend: backend.clone(),
        accounts: Arc::new(Accounts::new(&accounts)),
        sessions: Sessions::new(Duration::from_secs(600)),
        limiter: LoginLimiter::new(5),
        links: LinkKey::from_bytes(KEY),
        tls: true,
        public_origin: Some("https://gw.example.net".into()),
    });
    Rig { backend, state }
}

struct Reply {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    body: String,
}

impl Rig {
    async fn send(&self, req: Request<Body>) -> Reply {
        let mut req = req;
        req.extensions_mut()
            .insert(Peer(SocketAddr::from(([127, 0, 0, 1], 40000))));
        let r = router(self.state.clone()).oneshot(req).await.unwrap();
        let status = r.status();
        let headers = r.headers().clone();
        let body = axum::body::to_bytes(r.into_body(), 1 << 22).await.unwrap();
        Reply {
            status,
            headers,
            body: String::from_utf8_lossy(&body).into_owned(),
        }
    }

    async fn get(&self, path: &str, cookie: Option<&str>) -> Reply {
        let mut b = Request::get(path).header(header::HOST, "gw:8443");
        if let Some(c) = cookie {
            b = b.header(header::COOKIE, c);
        }
        self.send(b.body(Body::empty()).unwrap()).await
    }

    async fn post(&self, path: &str, cookie: Option<&str>, form: &str, origin: Option<&str>) -> Reply {
        let mut b = Request::post(path)
            .header(header::HOST, "gw:8443")
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
        if let Some(c) = cookie {
            b = b.header(header::COOKIE, c);
        }
        if let Some(o) = origin {
            b = b.header(header::ORIGIN, o);
        }
        self.send(b.body(Body::from(form.to_string())).unwrap()).await
    }

    /// Logs in; returns the cookie pair and the CSRF token.
    async fn login(&self, name: &str) -> (String, String) {
        let r = self
            .post(
                "/login",
                None,
                &format!("name={name}&password=secret"),
                Some("https://gw:8443"),
            )
            .await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
        let set = r.headers[header::SET_COOKIE].to_str().unwrap().to_string();
        for attr in ["HttpOnly", "SameSite=Strict", "Secure", "Path=/"] {
            assert!(set.contains(attr), "{set}");
        }
        let cookie = set.split(';').next().unwrap().to_string();
        assert!(cookie.starts_with("__Host-exogate="));
        let page = self.get("/message/AAA1", Some(&cookie)).await;
        let csrf = page
            .body
            .split("name=\"csrf\" value=\"")
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap()
            .to_string();
        (cookie, csrf)
    }
}

#[tokio::test]
async fn every_route_needs_a_session() {
    let rig = rig();
    for path in ["/", "/search", "/search?sender=x", "/message/AAA1", "/nothing/here"] {
        let r = rig.get(path, None).await;
        assert!(r.status.is_redirection(), "{path}: {}", r.status);
        assert!(
            matches!(r.headers[header::LOCATION].to_str().unwrap(), "/login" | "/search"),
            "{path}"
        );
    }
    for path in ["/message/AAA1/release", "/message/AAA1/delete", "/logout"] {
        let r = rig.post(path, None, "csrf=x", None).await;
        assert_eq!(r.headers[header::LOCATION], "/login", "{path}");
    }
    for path in ["/api/messages", "/api/messages/AAA1", "/api/other"] {
        assert_eq!(rig.get(path, None).await.status, StatusCode::UNAUTHORIZED, "{path}");
    }
    let r = rig.post("/api/messages/AAA1/release", None, "", None).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    // A made-up cookie is no session.
    let r = rig.get("/search", Some("__Host-exogate=0000")).await;
    assert_eq!(r.headers[header::LOCATION], "/login");
    assert!(rig.backend.changes.lock().unwrap().is_empty());
}

#[tokio::test]
async fn a_tenant_admin_sees_only_their_tenant() {
    let rig = rig();
    let (cookie, csrf) = rig.login("alice").await;
    let r = rig.get("/search", Some(&cookie)).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.body.contains("invoice"));
    // The sender field asks for what the store matches: an address or @domain.
    assert!(
        r.body.contains("placeholder=\"a@example.org or @example.org\""),
        "{}",
        r.body
    );
    assert!(!r.body.contains("fabrikam only"));
    // Asking for fabrikam by parameter changes nothing.
    let r = rig.get("/search?tenant=fabrikam", Some(&cookie)).await;
    assert!(!r.body.contains("fabrikam only"));
    // Another tenant's message by id: not found, as if it did not exist.
    let r = rig.get("/message/BBB2", Some(&cookie)).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(
        rig.get("/message/ZZZ9", Some(&cookie)).await.status,
        StatusCode::NOT_FOUND
    );
    let r = rig
        .post(
            "/message/BBB2/release",
            Some(&cookie),
            &format!("csrf={csrf}&recipient=bob@fabrikam.com"),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert!(rig.backend.changes.lock().unwrap().is_empty());
    // The global admin sees both.
    let (root, _) = rig.login("root").await;
    let r = rig.get("/search", Some(&root)).await;
    assert!(r.body.contains("invoice") && r.body.contains("fabrikam only"));
    assert_eq!(rig.get("/message/BBB2", Some(&root)).await.status, StatusCode::OK);
}

#[tokio::test]
async fn changes_need_the_csrf_token_and_our_origin() {
    let rig = rig();
    let (cookie, csrf) = rig.login("alice").await;
    // A TLS proxy's public name (public_url) is our origin too.
    let r = rig
        .post(
            "/message/AAA1/not-spam",
            Some(&cookie),
            &format!("csrf={csrf}"),
            Some("https://gw.example.net"),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    rig.backend.changes.lock().unwrap().clear();
    for (form, origin) in [
        ("".to_string(), None),
        ("csrf=wrong".to_string(), None),
        (format!("csrf={csrf}"), Some("https://evil.example")),
    ] {
        let r = rig.post("/message/AAA1/delete", Some(&cookie), &form, origin).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{form} {origin:?}");
    }
    assert!(rig.backend.changes.lock().unwrap().is_empty());
    // With the token: a release to one chosen recipient, audited with who and where from.
    let r = rig
        .post(
            "/message/AAA1/release",
            Some(&cookie),
            &format!("csrf={csrf}&recipient=carol%40contoso.com"),
            Some("https://gw:8443"),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let changes = rig.backend.changes.lock().unwrap().clone();
    assert_eq!(changes.len(), 1);
    assert_eq!(
        changes[0].1,
        Change::Release {
            recipients: Some(vec!["carol@contoso.com".into()])
        }
    );
    assert_eq!((changes[0].2.name.as_str(), changes[0].2.via), ("alice", "web"));
    assert_eq!(changes[0].2.from.to_string(), "127.0.0.1");
    // A recipient the message does not have is refused.
    rig.backend.records.lock().unwrap()[0].summary.held = true;
    let r = rig
        .post(
            "/message/AAA1/release",
            Some(&cookie),
            &format!("csrf={csrf}&recipient=eve@evil.example"),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    // Logins and logouts are audited too.
    let r = rig.post("/logout", Some(&cookie), &format!("csrf={csrf}"), None).await;
    assert_eq!(r.headers[header::LOCATION], "/login");
    assert_eq!(
        rig.get("/search", Some(&cookie)).await.headers[header::LOCATION],
        "/login"
    );
    let audits: Vec<String> = rig
        .backend
        .audits
        .lock()
        .unwrap()
        .iter()
        .map(|a| a.what.clone())
        .collect();
    assert_eq!(audits, ["login", "logout"]);
}

#[tokio::test]
async fn api_changes_need_the_header_token() {
    let rig = rig();
    let r = rig
        .send(
            Request::post("/api/login")
                .header(header::HOST, "gw:8443")
                .body(Body::from(r#"{"name":"alice","password":"secret"}"#))
                .unwrap(),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let cookie = r.headers[header::SET_COOKIE]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let csrf = serde_json::from_str::<serde_json::Value>(&r.body).unwrap()["csrf"]
        .as_str()
        .unwrap()
        .to_string();
    let change = |token: Option<&str>, id: &str| {
        let mut b = Request::post(format!("/api/messages/{id}/not-spam"))
            .header(header::HOST, "gw:8443")
            .header(header::COOKIE, &cookie);
        if let Some(t) = token {
            b = b.header("x-csrf-token", t);
        }
        b.body(Body::empty()).unwrap()
    };
    assert_eq!(rig.send(change(None, "AAA1")).await.status, StatusCode::FORBIDDEN);
    assert_eq!(
        rig.send(change(Some("nope"), "AAA1")).await.status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        rig.send(change(Some(&csrf), "BBB2")).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(rig.send(change(Some(&csrf), "AAA1")).await.status, StatusCode::OK);
    let r = rig.get("/api/messages", Some(&cookie)).await;
    let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(v["messages"].as_array().unwrap().len(), 1);
    assert_eq!(v["messages"][0]["tenant"], "contoso");
}

#[tokio::test]
async fn logins_are_rate_limited() {
    let rig = rig();
    for _ in 0..5 {
        let r = rig.post("/login", None, "name=alice&password=guess", None).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    }
    // The sixth in the minute is refused before the password is looked at.
    let r = rig.post("/login", None, "name=alice&password=secret", None).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    let audits = rig.backend.audits.lock().unwrap();
    assert_eq!(audits.iter().filter(|a| a.what == "login-failed").count(), 5);
    assert_eq!(audits.last().unwrap().what, "login-refused");
}

#[tokio::test]
async fn message_content_is_shown_as_text() {
    let rig = rig();
    let (cookie, _) = rig.login("alice").await;
    let search = rig.get("/search", Some(&cookie)).await;
    let page = rig.get("/message/AAA1", Some(&cookie)).await;
    for body in [&search.body, &page.body] {
        assert!(!body.contains("<script>"), "{body}");
        assert!(body.contains("&lt;script&gt;alert(1)&lt;/script&gt; invoice"));
    }
    assert!(page.body.contains("&lt;script&gt;alert(2)&lt;/script&gt;.exe"));
    assert!(page.body.contains("click &lt;a href=x&gt;here&lt;/a&gt;"));
    assert!(page.body.contains("Eicar-Signature &lt;b&gt;"));
    let csp = page.headers[header::CONTENT_SECURITY_POLICY].to_str().unwrap();
    assert!(csp.starts_with("default-src 'none'"));
    assert!(!page.body.contains("<script"));
}

#[tokio::test]
async fn digest_links_are_signed_expiring_and_single_use() {
    let rig = rig();
    let key = LinkKey::from_bytes(KEY);
    let now = crate::spool::now_unix();
    let good = key.sign("AAA1", "bob@contoso.com", now + 600);
    let expired = key.sign("AAA1", "bob@contoso.com", now - 1);
    let other = LinkKey::from_bytes(b"a different key, also 32 bytes..").sign("AAA1", "bob@contoso.com", now + 600);
    let not_a_recipient = key.sign("AAA1", "eve@contoso.com", now + 600);
    let mut tampered = good.clone();
    let flip = if tampered.ends_with('0') { '1' } else { '0' };
    tampered.pop();
    tampered.push(flip);
    for t in [&expired, &other, &tampered, &not_a_recipient] {
        let r = rig.post("/digest/release", None, &format!("t={t}"), None).await;
        assert!(r.status.is_client_error(), "{}", r.status);
    }
    assert!(rig.backend.changes.lock().unwrap().is_empty());
    // A GET shows the message and changes nothing (link scanners fetch links).
    let r = rig.get(&format!("/digest/release?t={good}"), None).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.body.contains("&lt;script&gt;"));
    assert!(rig.backend.changes.lock().unwrap().is_empty());
    let r = rig.post("/digest/release", None, &format!("t={good}"), None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let changes = rig.backend.changes.lock().unwrap().clone();
    assert_eq!(changes.len(), 1);
    assert_eq!(
        changes[0].1,
        Change::Release {
            recipients: Some(vec!["bob@contoso.com".into()])
        }
    );
    assert_eq!(changes[0].2.name, "digest:bob@contoso.com");
    // Used once: again does nothing (the recipient has it already) ...
    let r = rig.post("/digest/release", None, &format!("t={good}"), None).await;
    assert_eq!(r.status, StatusCode::GONE);
    // ... and even were the message held for that recipient again, the link is spent.
    {
        let mut records = rig.backend.records.lock().unwrap();
        records[0].summary.held = true;
        records[0].released_to.clear();
    }
    let r = rig.post("/digest/release", None, &format!("t={good}"), None).await;
    assert_eq!(r.status, StatusCode::GONE);
    assert!(r.body.contains("used before"), "{}", r.body);
    assert_eq!(rig.backend.changes.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn the_message_page_says_why_a_message_got_its_action() {
    let rig = rig();
    let (cookie, _) = rig.login("alice").await;
    // Held on its score: the score says it.
    let page = rig.get("/message/AAA1", Some(&cookie)).await;
    assert!(page.body.contains("score 100.0"), "{}", page.body);
    assert!(!page.body.contains("forced by"));
    // A forced quarantine (the malware check's default) scores 0: the page
    // names the finding that forced it, and a check that gave no answer.
    {
        let mut records = rig.backend.records.lock().unwrap();
        let r = &mut records[0];
        r.summary.score = 0.0;
        r.findings = vec![Finding {
            check: "malware".into(),
            ..Finding::new(0.0, "virus", "ClamAV found Eicar-Signature").forcing(Action::Quarantine)
        }];
        r.failures = vec!["rspamd: timed out".into()];
    }
    let page = rig.get("/message/AAA1", Some(&cookie)).await;
    assert!(
        page.body.contains("forced by malware (virus); score 0.0"),
        "{}",
        page.body
    );
    assert!(page.body.contains("rspamd: timed out"), "{}", page.body);
    let api = rig.get("/api/messages/AAA1", Some(&cookie)).await;
    let v: serde_json::Value = serde_json::from_str(&api.body).unwrap();
    assert_eq!(v["findings"][0]["force"], "quarantine", "{v}");
    assert_eq!(v["failures"][0], "rspamd: timed out", "{v}");
}

#[tokio::test]
async fn a_store_that_does_not_answer_is_said_so_and_nothing_changes() {
    let rig = rig();
    let (cookie, csrf) = rig.login("alice").await;
    let api = |path: &str| {
        Request::post(path)
            .header(header::HOST, "gw:8443")
            .header(header::COOKIE, &cookie)
            .header("x-csrf-token", &csrf)
            .body(Body::empty())
            .unwrap()
    };
    let now = crate::spool::now_unix();
    let link = LinkKey::from_bytes(KEY).sign("AAA1", "bob@contoso.com", now + 600);
    rig.backend.failing.lock().unwrap().extend(["search", "record"]);
    for path in ["/search", "/message/AAA1", "/api/messages", "/api/messages/AAA1"] {
        let r = rig.get(path, Some(&cookie)).await;
        assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{path}: {}", r.body);
    }
    let r = rig
        .post("/message/AAA1/delete", Some(&cookie), &format!("csrf={csrf}"), None)
        .await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(r.body.contains("did not answer"), "{}", r.body);
    let r = rig.get(&format!("/digest/release?t={link}"), None).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(r.body.contains("Try again"), "{}", r.body);
    // The record is read, the change fails: the admin sees the store's error.
    rig.backend.failing.lock().unwrap().clear();
    rig.backend.failing.lock().unwrap().insert("apply");
    let r = rig
        .post("/message/AAA1/delete", Some(&cookie), &format!("csrf={csrf}"), None)
        .await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(r.body.contains("connection refused"), "{}", r.body);
    let r = rig.send(api("/api/messages/AAA1/delete")).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&r.body).unwrap()["error"],
        "store unavailable"
    );
    // A digest link is spent before the release (it never acts twice), so
    // the end user is told to ask an admin, not to try again, and sees
    // nothing of the store's error.
    let r = rig.post("/digest/release", None, &format!("t={link}"), None).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(r.body.contains("ask your mail administrator"), "{}", r.body);
    assert!(!r.body.contains("connection refused"), "{}", r.body);
    rig.backend.failing.lock().unwrap().clear();
    assert!(rig.backend.changes.lock().unwrap().is_empty());
    assert!(rig.backend.records.lock().unwrap()[0].summary.held);
    // A change that no longer applies is a conflict, in the API too.
    assert_eq!(rig.send(api("/api/messages/AAA1/delete")).await.status, StatusCode::OK);
    let r = rig.send(api("/api/messages/AAA1/delete")).await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.body);
}
