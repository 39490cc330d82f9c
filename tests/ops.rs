//! Operating the daemon: SIGHUP reload (new tenant, new certificate, broken
//! config kept out), SIGTERM during a transfer, /metrics after real traffic
//! (parsed by Prometheus' own Python parser), health endpoints and systemd's
//! READY notification.

mod support;

use std::os::unix::net::UnixDatagram;
use std::time::Duration;

use support::gateway::{Gateway, Options, config_text};
use support::pki::Pki;
use support::smtp::Client;
use support::stack::Stack;

fn fabrikam() -> String {
    "[[tenant]]\nportal = \"fabrikam\"\ndomains = [\"fabrikam.com\"]\ndeliver_to = [\"127.0.0.1:9\"]\n".to_string()
}

#[test]
fn sighup_reloads_tenants_and_certificates_without_disturbing_open_sessions() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(&dir.path().join("pki"));
    let cert_a = pki.leaf("gateway-a", &["localhost", "a.gw.test"]);
    let cert_b = pki.leaf("gateway-b", &["localhost", "b.gw.test"]);
    let der = |leaf: &support::pki::Leaf| {
        use rustls::pki_types::pem::PemObject;
        rustls::pki_types::CertificateDer::from_pem_file(&leaf.cert)
            .unwrap()
            .to_vec()
    };
    let gw = Gateway::start_with_text(dir.path(), &config_text(dir.path(), &pki, &cert_a, &Options::default()));

    // Session 1 starts under the old configuration.
    let (mut one, _) = Client::connect(gw.smtp);
    one.cmd("EHLO one.test");
    assert_eq!(one.cmd("STARTTLS").code, 220);
    assert_eq!(one.upgrade_and_peer(&pki.ca), der(&cert_a));
    one.cmd("EHLO one.test");
    assert_eq!(one.cmd("MAIL FROM:<a@example.org>").code, 250);
    assert_eq!(one.cmd("RCPT TO:<u@contoso.com>").code, 250);

    // New tenant and certificate, then SIGHUP.
    let opts = Options {
        extra: fabrikam(),
        ..Options::default()
    };
    std::fs::write(&gw.config, config_text(dir.path(), &pki, &cert_b, &opts)).unwrap();
    gw.signal(libc::SIGHUP);
    assert!(
        gw.wait_log("configuration reloaded", Duration::from_secs(10)),
        "{}",
        gw.log()
    );

    // The open session keeps its rules: fabrikam is still unknown to it, and it completes.
    assert_eq!(one.cmd("RCPT TO:<v@fabrikam.com>").code, 550);
    assert_eq!(one.cmd("DATA").code, 354);
    one.send(&support::crlf(
        "From: a@example.org\nSubject: during reload\nMessage-ID: <r1@x>\n\nhi\n.\n",
    ));
    assert_eq!(one.read_reply().code, 250);

    // The next session sees the new certificate and tenant.
    let (mut two, _) = Client::connect(gw.smtp);
    two.cmd("EHLO two.test");
    assert_eq!(two.cmd("STARTTLS").code, 220);
    assert_eq!(
        two.upgrade_and_peer(&pki.ca),
        der(&cert_b),
        "new certificate after reload"
    );
    two.cmd("EHLO two.test");
    assert_eq!(two.cmd("MAIL FROM:<a@example.org>").code, 250);
    assert_eq!(two.cmd("RCPT TO:<v@fabrikam.com>").code, 250, "new tenant after reload");

    // A broken config is refused and the running one keeps serving.
    std::fs::write(
        &gw.config,
        "[server]\nlisten = [\"127.0.0.1:0\"]\nmax_recipients = \"many\"\n",
    )
    .unwrap();
    gw.signal(libc::SIGHUP);
    assert!(gw.wait_log(
        "reload failed; the previous configuration stays in force",
        Duration::from_secs(10)
    ));
    assert!(
        gw.log().contains("server.max_recipients: expected a whole number"),
        "the problem is named"
    );
    let (mut three, _) = Client::connect(gw.smtp);
    three.cmd("EHLO three.test");
    assert_eq!(three.cmd("STARTTLS").code, 220);
    assert_eq!(three.upgrade_and_peer(&pki.ca), der(&cert_b));
    three.cmd("EHLO three.test");
    assert_eq!(three.cmd("MAIL FROM:<a@example.org>").code, 250);
    assert_eq!(three.cmd("RCPT TO:<v@fabrikam.com>").code, 250);
    let (_, metrics) = gw.http_get("/metrics");
    assert!(metrics.contains("exogate_reloads_total{result=\"ok\"} 1"), "{metrics}");
    assert!(
        metrics.contains("exogate_reloads_total{result=\"failed\"} 1"),
        "{metrics}"
    );
}

#[test]
fn sigterm_during_data_never_acknowledges_what_is_not_durable_and_exits_zero() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(&dir.path().join("pki"));
    let server = pki.leaf("gateway", &["localhost", "127.0.0.1"]);
    let opts = Options {
        retry: vec!["1h".into()],
        ..Options::default()
    };
    let mut gw = Gateway::start_with_text(dir.path(), &config_text(dir.path(), &pki, &server, &opts));
    let (mut idle, _) = Client::connect(gw.smtp);
    idle.cmd("EHLO idle.test");
    let mut busy = Client::connect_tls(gw.smtp, &pki.ca, None);
    assert_eq!(busy.cmd("MAIL FROM:<a@example.org>").code, 250);
    assert_eq!(busy.cmd("RCPT TO:<u@contoso.com>").code, 250);
    assert_eq!(busy.cmd("DATA").code, 354);
    busy.send(&support::crlf(
        "From: a@example.org\nSubject: in flight\nMessage-ID: <t1@x>\n\nfirst half\n",
    ));

    gw.signal(libc::SIGTERM);
    assert!(gw.wait_log("shutting down", Duration::from_secs(5)));
    // An idle session is told to come back later.
    assert_eq!(idle.read_reply().code, 421);
    // The transfer in progress completes.
    busy.send(&support::crlf("second half\n.\n"));
    let r = busy.read_reply();
    assert!(r.code == 250 || (400..500).contains(&r.code), "{r}");
    let acknowledged = r.code == 250;
    let _ = busy.try_cmd("QUIT");
    assert_eq!(
        gw.wait_exit(Duration::from_secs(15)),
        Some(0),
        "exit 0 within the grace period"
    );
    if acknowledged {
        // Durable: the stopped gateway's spool holds it.
        let out = std::process::Command::new(support::gateway::binary())
            .args(["queue", "list", "--config"])
            .arg(&gw.config)
            .output()
            .unwrap();
        assert!(String::from_utf8_lossy(&out.stdout).contains("1 message(s)"));
    }
}

const PARSE: &str = r#"
import sys, json
from prometheus_client.openmetrics.parser import text_string_to_metric_families
values = {}
for family in text_string_to_metric_families(sys.stdin.read()):
    for s in family.samples:
        key = s.name + json.dumps(dict(sorted(s.labels.items())), sort_keys=True)
        values[key] = s.value
print(json.dumps(values))
"#;

fn parse_metrics(text: &str) -> serde_json::Value {
    use std::io::Write;
    let mut child = std::process::Command::new("python3")
        .args(["-c", PARSE])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "the OpenMetrics parser rejected /metrics: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn metrics_move_with_real_traffic_and_parse_as_openmetrics() {
    let stack = Stack::new();
    let (pki, downstream) = (&stack.pki, &stack.downstream);
    let gw = stack.gateway(Options::default());
    let before = parse_metrics(&gw.http_get("/metrics").1);
    assert_eq!(before["exogate_queue_messages{}"], 0.0);

    let mut c = Client::connect_tls(gw.smtp, &pki.ca, None);
    for i in 0..3 {
        let m = support::crlf(&format!(
            "From: a@example.org\nSubject: m{i}\nMessage-ID: <m{i}@x>\n\nhello\n"
        ));
        assert_eq!(c.send_data("a@example.org", &["user@contoso.com"], &m).code, 250);
    }
    assert_eq!(c.cmd("MAIL FROM:<a@example.org>").code, 250);
    assert_eq!(c.cmd("RCPT TO:<x@elsewhere.example>").code, 550);
    c.cmd("QUIT");
    downstream.wait_messages(3, Duration::from_secs(30));
    let m = support::wait_for(Duration::from_secs(10), || {
        let m = parse_metrics(&gw.http_get("/metrics").1);
        (m["exogate_deliveries_total{\"result\": \"delivered\"}"] == 3.0).then_some(m)
    })
    .expect("three deliveries counted");
    assert_eq!(
        m["exogate_messages_total{\"action\": \"deliver\", \"direction\": \"inbound\", \"tenant\": \"contoso\"}"],
        3.0
    );
    assert!(
        m["exogate_connections_total{\"result\": \"accepted\"}"]
            .as_f64()
            .unwrap()
            >= 1.0
    );
    assert_eq!(m["exogate_admission_refusals_total{\"layer\": \"tenant\"}"], 1.0);
    assert_eq!(m["exogate_tls_handshakes_total{\"version\": \"TLSv1.3\"}"], 1.0);
    assert_eq!(m["exogate_check_duration_seconds_count{\"check\": \"urls\"}"], 3.0);
    assert_eq!(m["exogate_delivery_duration_seconds_count{}"], 3.0);
    assert_eq!(m["exogate_spool_commit_duration_seconds_count{}"], 3.0);
    assert_eq!(m["exogate_queue_messages{}"], 0.0);
    assert!(m["exogate_sessions_total{\"outcome\": \"quit\"}"].as_f64().unwrap() >= 1.0);
}

#[test]
fn health_readiness_and_systemd_notification() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(&dir.path().join("pki"));
    let server = pki.leaf("gateway", &["localhost", "127.0.0.1"]);
    let socket_path = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    socket.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let config = dir.path().join("gateway.toml");
    std::fs::write(&config, config_text(dir.path(), &pki, &server, &Options::default())).unwrap();
    let gw = Gateway::spawn(dir.path(), &config, &[("NOTIFY_SOCKET", socket_path.to_str().unwrap())]);
    let mut buf = [0u8; 512];
    let n = socket.recv(&mut buf).expect("a notification from the daemon");
    let text = String::from_utf8_lossy(&buf[..n]);
    assert!(text.contains("READY=1"), "{text}");
    assert!(text.contains(&format!("MAINPID={}", gw.pid())), "{text}");
    // READY comes only after the listener accepts connections.
    let (_, greeting) = Client::connect(gw.smtp);
    assert_eq!(greeting.code, 220);
    assert_eq!(gw.http_get("/healthz"), (200, "ok\n".to_string()));
    assert_eq!(gw.http_get("/readyz").0, 200);
    assert_eq!(gw.http_get("/nope").0, 404);
    gw.signal(libc::SIGTERM);
    let n = socket.recv(&mut buf).unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).contains("STOPPING=1"));
}

#[test]
fn json_logs_are_one_object_per_line_with_the_message_fields() {
    let stack = Stack::new();
    let gw = stack.gateway(Options {
        log_json: true,
        ..Options::default()
    });
    let mut c = Client::connect_tls(gw.smtp, &stack.pki.ca, None);
    let m = support::crlf("From: a@example.org\nSubject: json\nMessage-ID: <j@x>\n\nhello\n");
    assert_eq!(c.send_data("a@example.org", &["user@contoso.com"], &m).code, 250);
    assert!(gw.wait_log("message fate known", Duration::from_secs(30)));
    let lines: Vec<serde_json::Value> = gw
        .log()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let scanned = lines
        .iter()
        .find(|v| v["message"] == "message scanned")
        .expect("the decision line");
    assert_eq!(scanned["tenant"], "contoso");
    assert_eq!(scanned["action"], "deliver");
    let fate = lines
        .iter()
        .find(|v| v["message"] == "message fate known")
        .expect("the fate line");
    assert_eq!(fate["queue_id"], scanned["queue_id"]);
    assert!(
        fate["results"]
            .as_str()
            .unwrap()
            .contains("<user@contoso.com> delivered: 250")
    );
}

#[test]
fn a_second_sigterm_exits_at_once_and_the_spool_stays_sound() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(&dir.path().join("pki"));
    let server = pki.leaf("gateway", &["localhost", "127.0.0.1"]);
    let opts = Options {
        retry: vec!["1h".into()],
        ..Options::default()
    };
    let mut gw = Gateway::start_with_text(dir.path(), &config_text(dir.path(), &pki, &server, &opts));
    let mut c = Client::connect_tls(gw.smtp, &pki.ca, None);
    let m = support::crlf("From: a@example.org\nSubject: kept\nMessage-ID: <k@x>\n\nhi\n");
    assert_eq!(c.send_data("a@example.org", &["u@contoso.com"], &m).code, 250);
    // A transfer in progress keeps the first SIGTERM waiting for the grace period...
    assert_eq!(c.cmd("MAIL FROM:<a@example.org>").code, 250);
    assert_eq!(c.cmd("RCPT TO:<u@contoso.com>").code, 250);
    assert_eq!(c.cmd("DATA").code, 354);
    c.send(b"Subject: half\r\n");
    gw.signal(libc::SIGTERM);
    assert!(gw.wait_log("shutting down", Duration::from_secs(5)));
    // ...and a second one ends the process at once.
    gw.signal(libc::SIGTERM);
    let code = gw.wait_exit(Duration::from_secs(5));
    assert!(
        code.is_some() && code != Some(0),
        "exits at once, not through the grace period: {code:?}"
    );
    // The acknowledged message is intact: a restart recovers it, nothing is corrupt.
    let restarted = Gateway::start_at(dir.path(), &gw.config);
    assert!(
        restarted.wait_log("spool recovered messages=1 corrupt=0", Duration::from_secs(10)),
        "{}",
        restarted.log()
    );
}

/// The lines of `log` that contain `needle`.
fn lines_with<'a>(log: &'a str, needle: &str) -> Vec<&'a str> {
    log.lines().filter(|l| l.contains(needle)).collect()
}

/// The value of ` key=` (or `{key=`) in a text log line: a quoted string, or
/// up to the next space or closing brace.
fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let at = line
        .match_indices(&format!("{key}="))
        .find(|(i, _)| *i > 0 && matches!(line.as_bytes()[i - 1], b' ' | b'{'))?
        .0
        + key.len()
        + 1;
    let rest = &line[at..];
    match rest.strip_prefix('"') {
        Some(quoted) => quoted.find('"').map(|end| &quoted[..end]),
        None => Some(&rest[..rest.find([' ', '}']).unwrap_or(rest.len())]),
    }
}

#[test]
fn a_message_is_traced_by_either_id_from_the_session_to_the_downstream_reply() {
    let stack = Stack::new();
    let gw = stack.gateway(Options::default());
    let exo = stack.pki.leaf("exo", &["mail.protection.outlook.com"]);
    let nmid = "0f3c9a52-7d1e-4a8b-9c2d-08dd1a2b3c4d";
    let mut c = Client::connect_tls(gw.smtp, &stack.pki.ca, Some(&exo));
    let m = support::crlf(&format!(
        "From: a@example.org\nTo: user@contoso.com\nSubject: trace me\n\
         Message-ID: <trace.42@example.org>\n\
         X-MS-Exchange-CrossTenant-Network-Message-Id: {nmid}\n\nhello\n"
    ));
    assert_eq!(c.send_data("a@example.org", &["user@contoso.com"], &m).code, 250);
    c.cmd("QUIT");
    stack.downstream.wait_messages(1, Duration::from_secs(30));
    assert!(
        gw.wait_log("recipient delivered", Duration::from_secs(10)),
        "{}",
        gw.log()
    );
    assert!(gw.wait_log("session ended", Duration::from_secs(10)));
    let log = gw.log();

    for id in [nmid, "trace.42@example.org"] {
        let path = lines_with(&log, id);
        let has = |what: &str| path.iter().find(|l| l.contains(what)).copied();
        let scanned = has("message scanned").unwrap_or_else(|| panic!("no decision line for {id}:\n{log}"));
        let queued = has("message queued").unwrap_or_else(|| panic!("no queued line for {id}:\n{log}"));
        let delivered = has("recipient delivered").unwrap_or_else(|| panic!("no delivery line for {id}:\n{log}"));
        // The arrival side: client, TLS and the client certificate's name.
        for line in [scanned, queued] {
            assert_eq!(field(line, "client"), Some("127.0.0.1"), "{line}");
            assert_eq!(field(line, "tls"), Some("TLSv1.3"), "{line}");
            assert!(field(line, "cipher").is_some_and(|c| c.starts_with("TLS13_")), "{line}");
            assert_eq!(
                field(line, "client_cert"),
                Some("mail.protection.outlook.com"),
                "{line}"
            );
            assert!(line.contains(nmid) && line.contains("trace.42@example.org"), "{line}");
        }
        // The leaving side: the downstream, the egress address and its reply.
        assert_eq!(
            field(delivered, "downstream"),
            Some(
                format!(
                    "127.0.0.1[127.0.0.1]:{}",
                    stack.downstream.addr().rsplit(':').next().unwrap()
                )
                .as_str()
            ),
            "{delivered}"
        );
        assert_eq!(field(delivered, "egress"), Some("127.0.0.1"), "{delivered}");
        assert_eq!(field(delivered, "rcpt"), Some("user@contoso.com"), "{delivered}");
        assert!(
            field(delivered, "reply").is_some_and(|r| r.starts_with("250 2.0.0 Ok") && r.contains("queued as")),
            "{delivered}"
        );
        // One session id ties the arrival to the delivery ...
        let sid = field(scanned, "session").expect("session id");
        assert_eq!(field(delivered, "session"), Some(sid), "{delivered}");
        assert_eq!(field(queued, "queue_id"), field(delivered, "queue_id"));
        // ... and grepping it shows the whole session, connection to close.
        let session = lines_with(&log, sid);
        for step in ["session opened", "TLS established", "message scanned", "session ended"] {
            assert!(
                session.iter().any(|l| l.contains(step)),
                "{step} missing for session {sid}:\n{log}"
            );
        }
    }
}

#[test]
fn sigterm_delivers_what_the_last_session_queued_within_the_drain_window() {
    let stack = Stack::new();
    let mut gw = stack.gateway(Options {
        server_extra: "queue_drain = \"20s\"".into(),
        ..Options::default()
    });
    let mut busy = Client::connect_tls(gw.smtp, &stack.pki.ca, None);
    assert_eq!(busy.cmd("MAIL FROM:<a@example.org>").code, 250);
    assert_eq!(busy.cmd("RCPT TO:<u@contoso.com>").code, 250);
    assert_eq!(busy.cmd("DATA").code, 354);
    busy.send(&support::crlf(
        "From: a@example.org\nSubject: at the last minute\nMessage-ID: <d1@x>\n\n",
    ));
    gw.signal(libc::SIGTERM);
    assert!(gw.wait_log("shutting down", Duration::from_secs(5)));
    // Accepted after the signal: the queue must still carry it before exit.
    busy.send(&support::crlf("bye\n.\n"));
    assert_eq!(busy.read_reply().code, 250);
    let _ = busy.try_cmd("QUIT");
    assert_eq!(gw.wait_exit(Duration::from_secs(40)), Some(0), "{}", gw.log());
    let got = stack.downstream.wait_messages(1, Duration::from_secs(5));
    assert!(String::from_utf8_lossy(&got[0].data).contains("Subject: at the last minute"));
    assert!(gw.log().contains("queue drained"), "{}", gw.log());
    let (_, list, _) = gw.cli(&["queue", "list"]);
    assert!(list.contains("0 message(s)"), "{list}");
}

#[test]
fn the_queue_is_steered_by_id_and_filter_with_json_listings_hold_release_and_a_summary() {
    let mut stack = Stack::new();
    stack.downstream.stop();
    let gw = stack.gateway(Options {
        retry: vec!["1h".into()],
        ..Options::default()
    });
    let mut c = Client::connect_tls(gw.smtp, &stack.pki.ca, None);
    let mut ids = Vec::new();
    for (i, from) in ["a@example.org", "a@example.org", "b@other.example"].iter().enumerate() {
        let m = support::crlf(&format!(
            "From: {from}\nSubject: steer{i}\nMessage-ID: <steer{i}@x>\n\nhi\n"
        ));
        let r = c.send_data(from, &["user@contoso.com"], &m);
        assert_eq!(r.code, 250);
        ids.push(r.text().rsplit(' ').next().unwrap().to_string());
    }
    assert!(
        support::wait_for(Duration::from_secs(20), || (gw.count_log("delivery deferred") >= 3)
            .then_some(()))
        .is_some(),
        "{}",
        gw.log()
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;

    // Per recipient: state, attempts, last reply, next retry.
    let (code, out, err) = gw.cli(&["queue", "list", "--json"]);
    assert_eq!(code, 0, "{err}");
    let listed: Vec<serde_json::Value> = serde_json::from_str(&out).unwrap();
    assert_eq!(listed.len(), 3, "{out}");
    for m in &listed {
        assert_eq!(m["area"], "queued");
        assert_eq!(m["tenant"], "contoso");
        let r = &m["recipients"][0];
        assert_eq!(r["address"], "user@contoso.com");
        assert_eq!(r["state"], "pending");
        assert_eq!(r["attempts"], 1);
        assert!(r["last_reply"].as_str().unwrap().starts_with('4'), "{r}");
        let next = r["next_retry"].as_i64().unwrap();
        assert!(next > now + 3000, "next retry about an hour away: {next} vs {now}");
    }
    assert_eq!(listed[0]["message_id"], "steer0@x");

    // A bulk change needs a selector; a dry run changes nothing.
    let (code, _, err) = gw.cli(&["queue", "delete"]);
    assert_eq!(code, 1);
    assert!(err.contains("needs ids or a filter"), "{err}");
    let (code, out, _) = gw.cli(&["queue", "hold", "--sender", "@other.example", "--dry-run"]);
    assert_eq!(code, 0);
    assert!(
        out.contains(&format!("would be held {}", ids[2])) && out.contains("1 message(s) would be held"),
        "{out}"
    );
    let (_, out, _) = gw.cli(&["queue", "delete", "--older-than", "1h", "--dry-run"]);
    assert!(out.contains("0 message(s) would be deleted"), "{out}");
    let (_, out, _) = gw.cli(&["queue", "list"]);
    assert!(!out.contains("held") && out.contains("3 message(s)"), "{out}");

    // Hold by sender; the summary counts by tenant, destination and age.
    let (code, out, _) = gw.cli(&["queue", "hold", "--sender", "@other.example"]);
    assert_eq!(code, 0);
    assert!(out.contains("1 message(s) held"), "{out}");
    let (_, out, _) = gw.cli(&["queue", "summary", "--json"]);
    let shape: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(shape["total"]["total"], 3);
    assert_eq!(shape["total"]["ages"][0], 3, "all younger than 5 minutes");
    assert_eq!(shape["by_tenant"][0]["name"], "contoso");
    assert_eq!(shape["by_destination"][0]["name"], "tenant:contoso");
    assert_eq!(shape["held"], 1);
    let (_, text, _) = gw.cli(&["queue", "summary"]);
    assert!(text.contains("tenant:contoso") && text.contains("1280+"), "{text}");

    // The downstream is back: a flush delivers what is queued, not what is held.
    stack.downstream.restart();
    let (code, _, _) = gw.cli(&["queue", "flush", "--tenant", "contoso"]);
    assert_eq!(code, 0);
    let got = stack.downstream.wait_messages(2, Duration::from_secs(30));
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(stack.downstream.messages().len(), 2, "the held message stays");
    assert!(got.iter().all(|m| m.sender == "a@example.org"));
    let (_, out, _) = gw.cli(&["queue", "list", "--json"]);
    let left: Vec<serde_json::Value> = serde_json::from_str(&out).unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0]["area"], "held");

    // Released by id, it goes at once.
    let (code, out, _) = gw.cli(&["queue", "release", &ids[2]]);
    assert_eq!(code, 0, "{out}");
    let got = stack.downstream.wait_messages(3, Duration::from_secs(30));
    assert!(got.iter().any(|m| m.sender == "b@other.example"));
    assert!(
        support::wait_for(Duration::from_secs(10), || gw
            .cli(&["queue", "list"])
            .1
            .contains("0 message(s)")
            .then_some(()))
        .is_some()
    );
}

/// `exogate sink` as a process, killed on drop.
struct Sink {
    child: std::process::Child,
    addr: std::net::SocketAddr,
    dir: std::path::PathBuf,
}

impl Sink {
    fn start(dir: &std::path::Path, leaf: &support::pki::Leaf) -> Sink {
        use std::io::BufRead;
        let mut child = std::process::Command::new(support::gateway::binary())
            .args(["sink", "--listen", "127.0.0.1:0", "--dir"])
            .arg(dir)
            .arg("--tls-cert")
            .arg(&leaf.cert)
            .arg("--tls-key")
            .arg(&leaf.key)
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut first = String::new();
        std::io::BufReader::new(child.stderr.take().unwrap())
            .read_line(&mut first)
            .unwrap();
        let addr = first
            .split("listening on ")
            .nth(1)
            .and_then(|r| r.split([' ', ',']).next())
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("no address in {first:?}"));
        assert!(first.contains("STARTTLS offered"), "{first}");
        Sink {
            child,
            addr,
            dir: dir.to_path_buf(),
        }
    }

    /// (envelope, message bytes) of every complete message stored.
    fn stored(&self) -> Vec<(serde_json::Value, Vec<u8>)> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(&self.dir).unwrap().flatten() {
            let p = e.path();
            if p.extension().and_then(|x| x.to_str()) == Some("json") {
                let env: serde_json::Value = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
                out.push((env, std::fs::read(p.with_extension("eml")).unwrap()));
            }
        }
        out
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn the_sink_stores_what_the_gateway_relays_and_test_relay_probes_without_sending() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(&dir.path().join("pki"));
    let sink_cert = pki.leaf("sink", &["localhost", "127.0.0.1"]);
    let sink = Sink::start(&dir.path().join("sink"), &sink_cert);
    let server = pki.leaf("gateway", &["localhost", "127.0.0.1"]);
    let opts = Options {
        deliver_to: vec![sink.addr.to_string()],
        ..Options::default()
    };
    let gw = Gateway::start_with_text(dir.path(), &config_text(dir.path(), &pki, &server, &opts));

    // test-relay: every step a delivery takes, and no message.
    let (code, out, err) = gw.cli(&["test-relay", "--tenant", "contoso"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains(&format!(
            "connected to 127.0.0.1[127.0.0.1]:{} from 127.0.0.1",
            sink.addr.port()
        )),
        "{out}"
    );
    assert!(
        out.contains("STARTTLS: TLSv1.3 TLS13_") && out.contains("server certificate verified"),
        "{out}"
    );
    assert!(out.contains("RCPT TO:<postmaster@contoso.com>: 250 2.1.5"), "{out}");
    assert!(out.contains("would be accepted (no message was sent)"), "{out}");
    assert!(sink.stored().is_empty(), "test-relay sent nothing");

    // A message all the way through: stored with its envelope and our stamp.
    let mut c = Client::connect_tls(gw.smtp, &pki.ca, None);
    let m = support::crlf("From: a@example.org\nSubject: into the sink\nMessage-ID: <s1@x>\n\n.leading dot\nhi\n");
    assert_eq!(c.send_data("a@example.org", &["user@contoso.com"], &m).code, 250);
    let stored = support::wait_for(Duration::from_secs(30), || {
        let s = sink.stored();
        (!s.is_empty()).then_some(s)
    })
    .expect("the message reaches the sink");
    let (env, bytes) = &stored[0];
    assert_eq!(env["mail_from"], "a@example.org");
    assert_eq!(env["rcpt_to"], serde_json::json!(["user@contoso.com"]));
    assert_eq!(env["helo"], "gw.test");
    assert!(env["tls"].as_str().unwrap().starts_with("TLSv1.3 "), "{env}");
    let text = String::from_utf8_lossy(bytes);
    assert!(
        text.starts_with("Received: from client.test") && text.contains("\r\nX-CLOUD-SEC-AV-Verdict: action=deliver"),
        "our Received and stamp first: {text}"
    );
    assert!(
        text.ends_with("Message-ID: <s1@x>\r\n\r\n.leading dot\r\nhi\r\n"),
        "bytes as sent: {text:?}"
    );

    // A destination that does not answer: the probe says where it stopped.
    let closed = dir.path().join("closed.toml");
    std::fs::write(
        &closed,
        config_text(dir.path(), &pki, &server, &Options::default()).replace("state\"", "state2\""),
    )
    .unwrap();
    let out = std::process::Command::new(support::gateway::binary())
        .args(["test-relay", "--tenant", "contoso", "--config"])
        .arg(&closed)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("connect, EHLO, STARTTLS: FAILED") && text.contains("would be deferred"),
        "{text}"
    );
}

fn deploy_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy")
}

#[test]
fn the_alert_rules_pass_promtool_and_each_alert_fires_in_its_unit_test() {
    let check = std::process::Command::new("promtool")
        .args(["check", "rules", "alerts.yml"])
        .current_dir(deploy_dir())
        .output()
        .expect("promtool (scripts/test.sh installs prometheus)");
    let text = String::from_utf8_lossy(&check.stdout).to_string() + &String::from_utf8_lossy(&check.stderr);
    assert!(check.status.success(), "{text}");
    assert!(text.contains("SUCCESS: 7 rules found"), "{text}");
    let test = std::process::Command::new("promtool")
        .args(["test", "rules", "alerts.test.yml"])
        .current_dir(deploy_dir())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&test.stdout).to_string() + &String::from_utf8_lossy(&test.stderr);
    assert!(test.status.success(), "{text}");
    // Every alert of the rules file has a case in the unit test.
    let rules = std::fs::read_to_string(deploy_dir().join("alerts.yml")).unwrap();
    let cases = std::fs::read_to_string(deploy_dir().join("alerts.test.yml")).unwrap();
    for name in rules.lines().filter_map(|l| l.trim().strip_prefix("- alert: ")) {
        assert!(
            cases.contains(&format!(
                "alertname: {name}\n        exp_alerts:\n          - exp_labels"
            )),
            "{name} is never shown firing in alerts.test.yml"
        );
    }
}

/// Metric names in a PromQL expression (ours and the process_* ones).
fn metric_names(expr: &str) -> Vec<String> {
    expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .filter(|t| t.starts_with("exogate_") || t.starts_with("process_"))
        .map(|t| {
            ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| t.strip_suffix(s))
                .unwrap_or(t)
                .to_string()
        })
        .collect()
}

#[test]
fn every_metric_the_alerts_and_the_dashboard_name_is_exported_by_a_live_gateway() {
    let stack = Stack::new();
    let gw = stack.gateway(Options::default());
    let mut c = Client::connect_tls(gw.smtp, &stack.pki.ca, None);
    let m = support::crlf("From: a@example.org\nSubject: scrape\nMessage-ID: <sc@x>\n\nhello\n");
    assert_eq!(c.send_data("a@example.org", &["user@contoso.com"], &m).code, 250);
    stack.downstream.wait_messages(1, Duration::from_secs(30));
    let (_, scrape) = gw.http_get("/metrics");
    let values = parse_metrics(&scrape);
    // The sample names each family declares (OpenMetrics: a counter's
    // samples end in `_total`, an info's in `_info`), samples or not yet.
    let exported: std::collections::BTreeSet<String> = scrape
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_once(' '))
        .map(|(name, kind)| match kind {
            "counter" => format!("{name}_total"),
            "info" => format!("{name}_info"),
            _ => name.to_string(),
        })
        .collect();

    let dashboard: serde_json::Value =
        serde_json::from_slice(&std::fs::read(deploy_dir().join("grafana-dashboard.json")).unwrap()).unwrap();
    let mut exprs: Vec<String> = dashboard["panels"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["targets"].as_array().unwrap().iter())
        .map(|t| t["expr"].as_str().unwrap().to_string())
        .collect();
    assert!(exprs.len() >= 10, "a dashboard with its panels");
    let rules = std::fs::read_to_string(deploy_dir().join("alerts.yml")).unwrap();
    exprs.extend(
        rules
            .lines()
            .filter_map(|l| l.trim().strip_prefix("expr: ").map(str::to_string)),
    );
    for expr in &exprs {
        let names = metric_names(expr);
        assert!(!names.is_empty(), "no metric in {expr}");
        for name in names {
            assert!(
                exported.contains(name.as_str()),
                "{name} (in {expr}) is not exported:\n{scrape}"
            );
        }
    }

    // The new figures carry plausible values.
    let days_left = values["exogate_certificate_expiry_seconds{\"tenant\": \"\", \"use\": \"inbound\"}"]
        .as_f64()
        .expect("the inbound certificate's expiry")
        / 86400.0;
    // The test CA's leaves are valid until 4096 (rcgen's default); an expired one would be negative.
    let until_4096 = (4096.0 - 1970.0) * 365.2425
        - (std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64()
            / 86400.0);
    assert!(
        (days_left - until_4096).abs() < 2.0,
        "{days_left} days left, expected about {until_4096}"
    );
    assert!(values["process_open_fds{}"].as_f64().unwrap() >= 5.0);
    assert!(values["process_resident_memory_bytes{}"].as_f64().unwrap() > 1e6);
    let free = values["exogate_state_dir_free_bytes{}"].as_f64().unwrap();
    assert!(free > 0.0 && free <= values["exogate_state_dir_size_bytes{}"].as_f64().unwrap());
    assert_eq!(values["exogate_quarantine_messages{}"], 0.0);
    assert_eq!(
        values[format!("exogate_build_info{{\"version\": \"{}\"}}", env!("CARGO_PKG_VERSION")).as_str()],
        1.0
    );
}
