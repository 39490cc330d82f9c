//! The `[web]` listener of the real gateway process, over HTTPS with the test
//! CA, on messages really quarantined by a real clamd (EICAR) and released
//! to a real Postfix downstream: every route without a session, a tenant
//! admin asking for another tenant's message, changes without the CSRF token
//! or from another origin, the login rate limit, hostile subjects and
//! attachment names shown as text, the end-user digest's links (tampered,
//! expired, reused), and two gateways on one PostgreSQL (quarantined by one,
//! released from the other's page).

mod support;

use std::time::Duration;

use support::clamd::Clamd;
use support::gateway::{Gateway, Options, config_text};
use support::postgres::Postgres;
use support::smtp::Client;
use support::stack::Stack;
use support::wait_for;
use support::web::{PASSWORD, Setup, WebClient, delivered, eicar, infected, policy, scl, web_addr, web_config};

/// Logs in as `name`; panics unless the login succeeds.
fn logged_in(setup: &Setup, name: &str) -> WebClient {
    let mut c = setup.client();
    let r = c.login(name, PASSWORD);
    assert_eq!(r.status, 303, "{}", r.body);
    let cookie = r.header("set-cookie").unwrap();
    for attr in ["Secure", "HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(cookie.contains(attr), "{cookie}");
    }
    c
}

/// Waits until the held message `id` is listed for `client` (the store writes asynchronously).
fn wait_listed(client: &mut WebClient, id: &str) {
    wait_for(Duration::from_secs(60), || {
        let r = client.get("/search?held=1");
        r.body.contains(&format!("/message/{id}")).then_some(())
    })
    .unwrap_or_else(|| panic!("{id} is not listed: {}", client.get("/search?held=1").body));
}

#[test]
fn guards_scoping_csrf_rate_limit_and_escaping() {
    let s = Setup::start();
    let hostile_subject = "<script>alert(1)</script> invoice";
    let hostile_name = "<img src=x onerror=alert(2)>.txt";
    let contoso = s.send(
        "mallory@example.org",
        "user@contoso.com",
        &infected("mallory@example.org", "user@contoso.com", hostile_subject, hostile_name),
    );
    let fabrikam = s.send(
        "mallory@example.org",
        "user@fabrikam.com",
        &infected("mallory@example.org", "user@fabrikam.com", "fabrikam only", "x.txt"),
    );

    // No session: the pages send to the login page, the API answers 401.
    let mut anon = s.client();
    for path in [
        "/".to_string(),
        "/search".into(),
        "/search?held=1".into(),
        format!("/message/{contoso}"),
        "/no/such/page".into(),
    ] {
        let r = anon.get(&path);
        assert_eq!(r.status, 303, "{path}");
        assert!(matches!(r.header("location"), Some("/login" | "/search")), "{path}");
    }
    for path in [
        "/logout".to_string(),
        format!("/message/{contoso}/release"),
        format!("/message/{contoso}/delete"),
    ] {
        let r = anon.post_form(&path, &[("csrf", "x")]);
        assert_eq!((r.status, r.header("location")), (303, Some("/login")), "{path}");
    }
    for path in ["/api/messages".to_string(), format!("/api/messages/{contoso}")] {
        assert_eq!(anon.get(&path).status, 401, "{path}");
    }
    let r = anon.request("POST", &format!("/api/messages/{contoso}/release"), &[], b"");
    assert_eq!(r.status, 401);
    assert_eq!(anon.get("/login").status, 200);

    // A tenant admin sees their tenant only; another tenant's id is "not found".
    let mut alice = logged_in(&s, "alice");
    wait_listed(&mut alice, &contoso);
    let list = alice.get("/search?held=1");
    assert!(!list.body.contains(&fabrikam), "{}", list.body);
    assert!(!alice.get("/search?held=1&tenant=fabrikam").body.contains(&fabrikam));
    let r = alice.get(&format!("/message/{fabrikam}"));
    assert_eq!(r.status, 404);
    assert_eq!(alice.get("/message/DOESNOTEXIST1").status, 404);
    assert_eq!(alice.get(&format!("/api/messages/{fabrikam}")).status, 404);
    let csrf = alice.get(&format!("/message/{contoso}")).csrf().unwrap();
    let r = alice.post_form(&format!("/message/{fabrikam}/delete"), &[("csrf", &csrf)]);
    assert_eq!(r.status, 404);

    // Hostile subject and attachment name are shown as text, never as markup.
    let page = alice.get(&format!("/message/{contoso}"));
    assert_eq!(page.status, 200);
    assert!(
        page.body.contains("&lt;script&gt;alert(1)&lt;/script&gt; invoice"),
        "{}",
        page.body
    );
    assert!(page.body.contains("&lt;img src=x onerror=alert(2)&gt;.txt"));
    assert!(!page.body.contains("<script") && !page.body.contains("<img"));
    assert!(page.body.contains("Gateway.Test.EICAR"), "the finding is shown");
    // The malware check forces the quarantine with score 0: the page says so.
    assert!(
        page.body.contains("forced by malware (virus); score 0.0"),
        "{}",
        page.body
    );
    // The attachment is listed with its SHA-256, and never served.
    let sha = {
        let d = ring::digest::digest(&ring::digest::SHA256, eicar().as_bytes());
        d.as_ref().iter().map(|b| format!("{b:02x}")).collect::<String>()
    };
    assert!(page.body.contains(&sha), "attachment hash listed");
    assert!(!page.body.contains(&eicar()), "attachment content is never in the page");
    assert!(
        page.header("content-security-policy")
            .unwrap()
            .starts_with("default-src 'none'")
    );

    // A change without the token, with a wrong one, or from another origin does nothing.
    for (pairs, origin) in [
        (vec![], None),
        (vec![("csrf", "0000")], None),
        (vec![("csrf", csrf.as_str())], Some("https://evil.example")),
    ] {
        let r = alice.post_form_from(&format!("/message/{contoso}/delete"), &pairs, origin);
        assert_eq!(r.status, 403, "{pairs:?} {origin:?}");
    }
    let r = alice.request("POST", &format!("/api/messages/{contoso}/delete"), &[], b"");
    assert_eq!(r.status, 403);
    let page = alice.get(&format!("/message/{contoso}"));
    assert!(
        page.body.contains("held in quarantine"),
        "still held after the refused changes"
    );

    // With the token: released, and the copy arrives stamped as delivered.
    let r = alice.post_form(
        &format!("/message/{contoso}/release"),
        &[("csrf", &csrf), ("recipient", "user@contoso.com")],
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let got = s.stack.downstream.wait_messages(1, Duration::from_secs(60));
    let released = delivered(&got, hostile_subject);
    assert_eq!(released.len(), 1);
    assert_eq!(scl(released[0]), vec!["false"]);
    assert!(String::from_utf8_lossy(&released[0].data).contains("released-by=alice"));
    let page = alice.get(&format!("/message/{contoso}"));
    assert!(!page.body.contains("held in quarantine"));
    // Releasing again is refused (nothing left to release).
    let r = alice.post_form(&format!("/message/{contoso}/release"), &[("csrf", &csrf)]);
    assert!(r.status >= 400, "{}", r.status);

    // Failed logins are limited per address and per account: after five in a
    // minute even the right password gets 429.
    let mut guesser = s.client();
    for _ in 0..5 {
        assert_eq!(guesser.login("fabian", "guess").status, 401);
    }
    assert_eq!(guesser.login("fabian", PASSWORD).status, 429);
}

/// The digest of tenant fabrikam: one mail per recipient, through the relay
/// path, with links that release once and only when intact and in time.
#[test]
fn digest_links_release_once_and_only_intact() {
    let s = Setup::start();
    let id = s.send(
        "mallory@example.org",
        "user@fabrikam.com",
        &infected("mallory@example.org", "user@fabrikam.com", "digest me", "a.txt"),
    );
    let mut fabian = logged_in(&s, "fabian");
    wait_listed(&mut fabian, &id);

    let (code, out, err) = s.gw.cli(&["digest", "send", "--tenant", "fabrikam"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("user@fabrikam.com: 1 held message(s)"), "{out}");
    let got = s.stack.downstream.wait_messages(1, Duration::from_secs(60));
    let digest = got
        .iter()
        .find(|m| m.recipient == "user@fabrikam.com" && String::from_utf8_lossy(&m.data).contains("Quarantine digest"))
        .expect("the digest is delivered");
    let parsed = mail_parser::MessageParser::default().parse(&digest.data[..]).unwrap();
    let text = parsed.body_text(0).unwrap().into_owned();
    assert!(text.contains("digest me"));
    let link = text
        .split("/digest/release?t=")
        .nth(1)
        .unwrap()
        .split(|c: char| c.is_whitespace())
        .next()
        .unwrap()
        .to_string();

    let mut user = s.client();
    // A tampered link (one hex digit of the signature changed) does nothing.
    let mut tampered = link.clone();
    let last = tampered.pop().unwrap();
    tampered.push(if last == '0' { '1' } else { '0' });
    let r = user.post_form("/digest/release", &[("t", &tampered)]);
    assert_eq!(r.status, 400, "{}", r.body);
    // Neither does a link signed with another key, or one already expired
    // (made with the gateway's own key file, so only the expiry is wrong).
    let expired = expired_link(&s, &id);
    let r = user.post_form("/digest/release", &[("t", &expired)]);
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.body.contains("expired"), "{}", r.body);
    assert!(
        fabian
            .get(&format!("/message/{id}"))
            .body
            .contains("held in quarantine")
    );

    // Opening the link shows the message and changes nothing (link scanners open links).
    let r = user.get(&format!("/digest/release?t={link}"));
    assert_eq!(r.status, 200);
    assert!(r.body.contains("digest me"));
    assert!(
        fabian
            .get(&format!("/message/{id}"))
            .body
            .contains("held in quarantine")
    );
    // The button releases it, once.
    let r = user.post_form("/digest/release", &[("t", &link)]);
    assert_eq!(r.status, 200, "{}", r.body);
    let got = s.stack.downstream.wait_messages(2, Duration::from_secs(60));
    let released = delivered(&got, "digest me");
    assert_eq!(released.len(), 1);
    assert_eq!(scl(released[0]), vec!["false"]);
    let r = user.post_form("/digest/release", &[("t", &link)]);
    assert_eq!(r.status, 410, "{}", r.body);
    // The reuse released nothing: the store writes a release's audit record
    // before the release is answered, and there is still only the one.
    let (code, out, err) = s.gw.cli(&["events", "audit", "--json"]);
    assert_eq!(code, 0, "{out}{err}");
    let audit: Vec<serde_json::Value> = serde_json::from_str(&out).unwrap();
    let releases: Vec<_> = audit
        .iter()
        .filter(|a| a["action"] == "release" && a["messages"][0] == id.as_str())
        .collect();
    assert_eq!(releases.len(), 1, "{out}");
    assert_eq!(releases[0]["actor"], "digest:user@fabrikam.com", "{out}");
}

/// A link for `id` to user@fabrikam.com that expired a second ago, signed with
/// the gateway's key file the way the gateway signs (HMAC-SHA256 over the
/// hex-decoded payload).
fn expired_link(s: &Setup, id: &str) -> String {
    let key = std::fs::read_to_string(s.gw.dir.join("state/web/digest.key")).unwrap();
    let expires = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        - 1;
    let payload = format!("v1|{id}|user@fabrikam.com|{expires}|00112233445566778899aabbccddeeff");
    let k = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key.trim().as_bytes());
    let tag = ring::hmac::sign(&k, payload.as_bytes());
    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
    format!("{}.{}", hex(payload.as_bytes()), hex(tag.as_ref()))
}

/// Two gateways on one PostgreSQL: a message quarantined by the first is
/// listed and released on the second's page, and the second delivers it.
#[test]
fn two_gateways_on_one_postgresql() {
    let stack = Stack::new();
    let clamd = Clamd::start();
    let pg = Postgres::shared();
    let url = pg.create_database("web_two_nodes");
    let mut gws = Vec::new();
    for node in ["node-a", "node-b"] {
        let port = support::free_port();
        let dir = stack.dir.path().join(node);
        std::fs::create_dir_all(&dir).unwrap();
        let opts = Options {
            deliver_to: vec![stack.downstream.addr()],
            policy: Some(policy(&clamd.tcp())),
            extra: web_config(
                &stack.downstream.addr(),
                port,
                &format!("url = \"{url}\"\nnode = \"{node}\""),
            ),
            ..Options::default()
        };
        gws.push(Gateway::start_with_text(
            &dir,
            &config_text(&dir, &stack.pki, &stack.server, &opts),
        ));
    }
    let (a, b) = (&gws[0], &gws[1]);
    let mut c = Client::connect_tls(a.smtp, &stack.pki.ca, None);
    let r = c.send_data(
        "mallory@example.org",
        &["user@contoso.com"],
        &infected("mallory@example.org", "user@contoso.com", "held on node a", "n.txt"),
    );
    assert_eq!(r.code, 250, "{r}");
    let id = r.text().rsplit(' ').next().unwrap().to_string();

    let mut root = WebClient::new(web_addr(b), Some(&stack.pki.ca));
    assert_eq!(root.login("root", PASSWORD).status, 303);
    wait_listed(&mut root, &id);
    let page = root.get(&format!("/message/{id}"));
    assert!(page.body.contains("held on node a") && page.body.contains("Gateway.Test.EICAR"));
    let csrf = page.csrf().unwrap();
    let r = root.post_form(
        &format!("/message/{id}/release"),
        &[("csrf", &csrf), ("recipient", "user@contoso.com")],
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(
        r.body.contains("node-b"),
        "the copy is queued on the releasing node: {}",
        r.body
    );
    let got = stack.downstream.wait_messages(1, Duration::from_secs(60));
    let released = delivered(&got, "held on node a");
    assert_eq!(released.len(), 1);
    assert_eq!(scl(released[0]), vec!["false"]);
}
