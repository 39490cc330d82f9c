//! The relay back to the tenant, end to end through a real Postfix that
//! requires TLS: bytes delivered as sent (but for our header fields), egress
//! addresses, TLS refusals, outages and their recovery, DSNs, damaged spool
//! files, and tenant-to-tenant mail. Proxy mode is in tests/proxy.rs.

mod support;

use std::time::Duration;

use support::gateway::{Gateway, Options, config_text};
use support::pki::Pki;
use support::postfix::{Tls, without_postfix_received};
use support::smtp::Client;
use support::stack::Stack;

const NAMES: &[&str] = &["localhost", "127.0.0.1"];

/// The message with every X-CLOUD-SEC-AV-* field (and its continuation lines) removed,
/// computed independently of the gateway's code.
fn without_owned_fields(msg: &str) -> String {
    let (head, body) = msg.split_once("\n\n").unwrap();
    let mut out = Vec::new();
    let mut skipping = false;
    for line in head.split('\n') {
        let continuation = line.starts_with(' ') || line.starts_with('\t');
        if !continuation {
            skipping = line.to_ascii_lowercase().starts_with("x-cloud-sec-av-");
        }
        if !skipping {
            out.push(line);
        }
    }
    format!("{}\n\n{}", out.join("\n"), body)
}

const SMTPLIB_SEND: &str = r#"
import smtplib, ssl, sys
host, port, ca, path = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
ctx = ssl.create_default_context(cafile=ca)
ctx.check_hostname = False
msg = open(path, "rb").read()
with smtplib.SMTP(host, port, local_hostname="EUR05-DB8-obe.outbound.protection.outlook.com", timeout=30) as s:
    s.starttls(context=ctx)
    s.sendmail("sender@example.org", ["user@contoso.com"], msg)
print("sent")
"#;

#[test]
fn delivered_bytes_equal_sent_bytes_except_our_fields() {
    let s = Stack::new();
    let gw = s.gateway(Options::default());
    let original = support::crlf(
        "X-CLOUD-SEC-AV-SCL: false\n\
         Received: from mail.example.org (mail.example.org [192.0.2.1])\n\tby EUR05.outbound.protection.outlook.com; Mon, 23 Nov 2026 10:00:00 +0000\n\
         DKIM-Signature: v=1; a=rsa-sha256; d=example.org; s=sel;\n\th=from:to:subject; bh=abc=; b=def=\n\
         From: \"Sender\" <sender@example.org>\n\
         To: user@contoso.com\n\
         x-cloud-sec-av-info: contoso,office365_emails,inline\n\
         Subject: =?utf-8?q?caf=C3=A9?= and   odd   spacing \n\
         X-Cloud-Sec-Av-Verdict: action=deliver;\n  folded forged verdict\n\
         Message-ID: <bytes@example.org>\n\
         Date: Mon, 23 Nov 2026 10:00:00 +0000\n\
         MIME-Version: 1.0\n\
         Content-Type: text/plain; charset=utf-8\n\
         Content-Transfer-Encoding: 8bit\n\
         \n\
         Caf\u{e9} \u{2013} bytes are sacred.\n\
         .a line that starts with a dot\n\
         trailing spaces   \n\
         \ttab-indented\n\
         X-CLOUD-SEC-AV-SCL: true (in the body: not a header, must stay)\n",
    );
    let path = s.dir.path().join("original.eml");
    std::fs::write(&path, &original).unwrap();
    support::python(
        SMTPLIB_SEND,
        &[
            "127.0.0.1",
            &gw.smtp.port().to_string(),
            s.pki.ca.to_str().unwrap(),
            path.to_str().unwrap(),
        ],
    );
    let delivered = s.downstream.wait_messages(1, Duration::from_secs(30));
    let got = String::from_utf8(without_postfix_received(&delivered[0].data).to_vec()).unwrap();

    // Our four fields come first, once each.
    let fields: Vec<&str> = got.split('\n').take_while(|l| !l.is_empty()).collect();
    assert!(
        fields[0].starts_with("Received: from EUR05-DB8-obe.outbound.protection.outlook.com"),
        "{got}"
    );
    let owned: Vec<&&str> = fields
        .iter()
        .filter(|l| l.to_ascii_lowercase().starts_with("x-cloud-sec-av-"))
        .collect();
    assert_eq!(owned.len(), 3, "exactly Info, SCL and Verdict: {owned:?}");
    assert!(fields.contains(&"X-CLOUD-SEC-AV-Info: contoso,office365_emails,inline"));
    assert!(fields.contains(&"X-CLOUD-SEC-AV-SCL: false"));

    // Everything after our prefix is the original minus the forged fields
    // (Postfix stores lines without CR, so compare with LF line endings).
    let sent = String::from_utf8(original).unwrap().replace("\r\n", "\n");
    let expected = without_owned_fields(&sent);
    assert!(
        got.ends_with(&expected),
        "delivered:\n{got}\n---- expected suffix:\n{expected}"
    );
    let prefix = &got[..got.len() - expected.len()];
    assert_eq!(
        prefix.matches('\n').count(),
        prefix.split('\n').filter(|l| !l.is_empty()).count(),
        "only our fields precede the original"
    );
}

#[test]
fn queued_bytes_are_exact_including_crlf_and_bare_lf() {
    // With the downstream unreachable the message stays queued; `queue export`
    // shows exactly what will be relayed.
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(&dir.path().join("pki"));
    let server = pki.leaf("gateway", &["localhost", "127.0.0.1"]);
    let opts = Options {
        deliver_to: vec![format!("127.0.0.1:{}", support::free_port())],
        retry: vec!["1h".into()],
        ..Options::default()
    };
    let gw = Gateway::start_with_text(dir.path(), &config_text(dir.path(), &pki, &server, &opts));
    let mut c = Client::connect_tls(gw.smtp, &pki.ca, None);
    let body = b"X-CLOUD-SEC-AV-SCL: false\r\nFrom: a@example.org\nSubject: mixed\r\nX-Cloud-Sec-AV-Verdict:\r\n x\r\n\r\nbare\nlf\r\ncrlf\r\n\x00\xff binary\r\n";
    let r = c.send_bdat("a@example.org", &["u@contoso.com"], body);
    assert_eq!(r.code, 250, "{r}");
    let id = r.text().rsplit(' ').next().unwrap().to_string();
    let out = std::process::Command::new(support::gateway::binary())
        .args(["queue", "export", &id, "--config"])
        .arg(&gw.config)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let exported = out.stdout;
    let expected_tail: &[u8] = b"From: a@example.org\nSubject: mixed\r\n\r\nbare\nlf\r\ncrlf\r\n\x00\xff binary\r\n";
    assert!(
        exported.ends_with(expected_tail),
        "{}",
        String::from_utf8_lossy(&exported)
    );
    let head = String::from_utf8_lossy(&exported[..exported.len() - expected_tail.len()]).into_owned();
    assert_eq!(head.matches("X-CLOUD-SEC-AV-SCL:").count(), 1, "{head}");
    assert!(head.starts_with("Received: from client.test"));
}

#[test]
fn egress_addresses_are_used_and_an_unusable_one_is_skipped() {
    let s = Stack::new();
    let gw = s.gateway(Options {
        // 192.0.2.77 is not an address of this machine: binding it fails.
        source_ips: vec!["127.0.0.2".into(), "192.0.2.77".into(), "127.0.0.3".into()],
        relay_extra: "max_messages_per_connection = 1".into(),
        ..Options::default()
    });
    for i in 0..6 {
        let mut c = Client::connect_tls(gw.smtp, &s.pki.ca, None);
        let msg = support::crlf(&format!(
            "From: a@example.org\nSubject: {i}\nMessage-ID: <e{i}@x>\n\nhi\n"
        ));
        assert_eq!(c.send_data("a@example.org", &["user@contoso.com"], &msg).code, 250);
        s.downstream.wait_messages(i + 1, Duration::from_secs(30));
    }
    let sources: std::collections::BTreeSet<String> =
        s.downstream.messages().iter().map(|m| m.client_ip.clone()).collect();
    assert_eq!(
        sources,
        ["127.0.0.2".to_string(), "127.0.0.3".to_string()].into_iter().collect(),
        "both egress addresses used, nothing else"
    );
    assert!(
        gw.wait_log("egress address unusable", Duration::from_secs(5)),
        "the unusable address is logged"
    );
    assert!(gw.log().contains("192.0.2.77"));
}

#[test]
fn each_egress_address_says_its_own_ehlo_name() {
    let s = Stack::new();
    let gw = s.gateway(Options {
        source_ips: vec![
            "{ ip = \"127.0.0.2\", helo = \"out2.gw.test\" }".into(),
            "127.0.0.3".into(),
        ],
        relay_extra: "max_messages_per_connection = 1".into(),
        ..Options::default()
    });
    for i in 0..4 {
        let mut c = Client::connect_tls(gw.smtp, &s.pki.ca, None);
        let msg = support::crlf(&format!(
            "From: a@example.org\nSubject: {i}\nMessage-ID: <h{i}@x>\n\nhi\n"
        ));
        assert_eq!(c.send_data("a@example.org", &["user@contoso.com"], &msg).code, 250);
        s.downstream.wait_messages(i + 1, Duration::from_secs(30));
    }
    // Postfix writes the EHLO name it heard first in its Received field.
    let mut seen = std::collections::BTreeSet::new();
    for m in s.downstream.messages() {
        let text = String::from_utf8_lossy(&m.data);
        let helo = text
            .strip_prefix("Received: from ")
            .and_then(|r| r.split_whitespace().next())
            .unwrap_or_default()
            .to_string();
        seen.insert((m.client_ip.clone(), helo));
    }
    assert_eq!(
        seen,
        [
            ("127.0.0.2".to_string(), "out2.gw.test".to_string()),
            ("127.0.0.3".to_string(), "gw.test".to_string()),
        ]
        .into_iter()
        .collect(),
        "127.0.0.2 says its own name, 127.0.0.3 the default (server.hostname)"
    );
}

#[test]
fn a_downstream_without_starttls_gets_nothing() {
    let s = Stack::with(Tls::Off, true, NAMES);
    let gw = s.gateway(Options::default());
    let mut c = Client::connect_tls(gw.smtp, &s.pki.ca, None);
    let msg = support::crlf("From: a@example.org\nSubject: secret\nMessage-ID: <n@x>\n\nhi\n");
    assert_eq!(c.send_data("a@example.org", &["user@contoso.com"], &msg).code, 250);
    assert!(gw.wait_log(
        "does not offer STARTTLS; refusing to send in plaintext",
        Duration::from_secs(20)
    ));
    assert!(s.downstream.messages().is_empty());
    assert!(
        !s.downstream.maillog().contains("MAIL FROM"),
        "no transaction was even started"
    );
    let (code, list, _) = gw.cli(&["queue", "list"]);
    assert_eq!(code, 0);
    assert!(list.contains("1 message(s)"), "still queued: {list}");
}

#[test]
fn a_downstream_with_an_untrusted_certificate_gets_nothing() {
    let s = Stack::with(Tls::Required, false, NAMES);
    let gw = s.gateway(Options::default());
    let mut c = Client::connect_tls(gw.smtp, &s.pki.ca, None);
    let msg = support::crlf("From: a@example.org\nSubject: secret\nMessage-ID: <u@x>\n\nhi\n");
    assert_eq!(c.send_data("a@example.org", &["user@contoso.com"], &msg).code, 250);
    assert!(gw.wait_log("TLS with", Duration::from_secs(20)), "{}", gw.log());
    std::thread::sleep(Duration::from_secs(2));
    assert!(s.downstream.messages().is_empty());
}

#[test]
fn an_outage_keeps_messages_queued_until_the_downstream_is_back() {
    let mut s = Stack::new();
    let gw = s.gateway(Options::default());
    s.downstream.stop();
    let send = |n: usize| {
        let mut c = Client::connect_tls(gw.smtp, &s.pki.ca, None);
        for i in 0..n {
            let msg = support::crlf(&format!(
                "From: a@example.org\nSubject: o{i}\nMessage-ID: <o{i}@x>\n\nhi\n"
            ));
            assert_eq!(c.send_data("a@example.org", &["user@contoso.com"], &msg).code, 250);
        }
    };
    send(5);
    assert!(gw.wait_log("delivery deferred", Duration::from_secs(20)));
    // Up again but refusing with 4xx: still queued.
    s.downstream.set_defer_all(true);
    assert!(
        support::wait_for(Duration::from_secs(20), || s
            .downstream
            .maillog()
            .contains("450")
            .then_some(()))
        .is_some()
    );
    assert!(s.downstream.messages().is_empty());
    // Back to normal: everything arrives, nothing lost.
    s.downstream.set_defer_all(false);
    let got = s.downstream.wait_messages(5, Duration::from_secs(60));
    let mut subjects: Vec<String> = got
        .iter()
        .map(|m| {
            String::from_utf8_lossy(&m.data)
                .lines()
                .find(|l| l.starts_with("Subject:"))
                .unwrap()
                .to_string()
        })
        .collect();
    subjects.sort();
    subjects.dedup();
    assert_eq!(subjects.len(), 5);
    assert!(
        support::wait_for(Duration::from_secs(10), || {
            gw.cli(&["queue", "list"]).1.contains("0 message(s)").then_some(())
        })
        .is_some()
    );
}

#[test]
fn a_permanent_failure_bounces_to_the_sender_but_never_for_the_null_sender() {
    let s = Stack::new();
    let gw = s.gateway(Options::default());
    let mut c = Client::connect_tls(gw.smtp, &s.pki.ca, None);
    // A tenant sender: the DSN goes back to the tenant (the same downstream).
    let msg = support::crlf("From: alice@contoso.com\nSubject: to a missing user\nMessage-ID: <d1@x>\n\nhello\n");
    let r = c.send_data("alice@contoso.com", &["reject@contoso.com", "user@contoso.com"], &msg);
    assert_eq!(r.code, 250);
    let got = s.downstream.wait_messages(2, Duration::from_secs(30));
    let dsn = got
        .iter()
        .find(|m| m.recipient == "alice@contoso.com")
        .expect("a DSN to the sender");
    let text = String::from_utf8_lossy(&dsn.data);
    assert!(text.contains("multipart/report"), "{text}");
    assert!(text.contains("report-type=delivery-status") || text.contains("report-type=\"delivery-status\""));
    assert!(text.contains("Final-Recipient: rfc822; reject@contoso.com"));
    assert!(text.contains("Status: 5.1.1"));
    assert_eq!(dsn.sender, "MAILER-DAEMON", "DSNs are sent from the null sender");
    assert!(
        got.iter().any(|m| m.recipient == "user@contoso.com"),
        "the other recipient got the message"
    );

    // From <>: no DSN at all.
    let msg = support::crlf("From: postmaster@example.org\nSubject: ndr\nMessage-ID: <d2@x>\n\nndr\n");
    assert_eq!(c.send_data("", &["reject@contoso.com"], &msg).code, 250);
    assert!(gw.wait_log("no DSN: null sender", Duration::from_secs(20)));
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(s.downstream.messages().len(), 2, "nothing more was delivered");
}

#[test]
fn a_torn_spool_file_is_detected_moved_aside_and_counted() {
    let s = Stack::new();
    let gw_dir = s.dir.path().join("gw");
    let active = gw_dir.join("state/queue/active");
    std::fs::create_dir_all(&active).unwrap();
    std::fs::write(
        active.join("0000000000000000DEAD.q"),
        b"EXOQ1\r\n\0From: a@example.org\r\n\r\nhalf a messa",
    )
    .unwrap();
    let gw = s.gateway(Options::default());
    assert!(gw.wait_log("damaged queue file moved aside", Duration::from_secs(10)));
    assert!(gw_dir.join("state/queue/corrupt/0000000000000000DEAD.q").exists());
    assert!(!active.join("0000000000000000DEAD.q").exists());
    let (_, metrics) = gw.http_get("/metrics");
    assert!(metrics.contains("exogate_spool_corrupt_total 1"), "{metrics}");
    assert!(s.downstream.messages().is_empty(), "never delivered half");
}

#[test]
fn queue_delete_and_flush_work_on_a_running_gateway() {
    let mut s = Stack::new();
    let gw = s.gateway(Options {
        retry: vec!["1h".into()],
        ..Options::default()
    });
    s.downstream.stop();
    let mut c = Client::connect_tls(gw.smtp, &s.pki.ca, None);
    let mut ids = Vec::new();
    for i in 0..2 {
        let m = support::crlf(&format!(
            "From: a@example.org\nSubject: q{i}\nMessage-ID: <q{i}@x>\n\nhi\n"
        ));
        let r = c.send_data("a@example.org", &["user@contoso.com"], &m);
        ids.push(r.text().rsplit(' ').next().unwrap().to_string());
    }
    assert!(
        support::wait_for(Duration::from_secs(20), || (gw.count_log("delivery deferred") >= 2)
            .then_some(()))
        .is_some()
    );
    let (code, out, _) = gw.cli(&["queue", "delete", &ids[0]]);
    assert_eq!(code, 0, "{out}");
    let (_, list, _) = gw.cli(&["queue", "list"]);
    assert!(
        list.contains("1 message(s)") && list.contains(&ids[1]) && !list.contains(&ids[0]),
        "{list}"
    );
    let (_, shown, _) = gw.cli(&["queue", "show", &ids[1]]);
    assert!(
        shown.contains("\"deferred\"") || shown.contains("deferred"),
        "history shown: {shown}"
    );
    // Back up: without a flush the next attempt would be an hour away.
    s.downstream.restart();
    let (code, _, _) = gw.cli(&["queue", "flush"]);
    assert_eq!(code, 0);
    let got = s.downstream.wait_messages(1, Duration::from_secs(30));
    assert!(String::from_utf8_lossy(&got[0].data).contains("Subject: q1"));
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(
        s.downstream.messages().len(),
        1,
        "the deleted message is never delivered"
    );
}

#[test]
fn a_flush_reaches_a_backlog_larger_than_the_index_and_the_gauge_counts_it() {
    // 25 messages deferred for an hour, then a restart with room for 10 in the
    // scheduler's index: 15 wait on disk only, their history saying "in an hour".
    let mut s = Stack::new();
    let opts = Options {
        retry: vec!["1h".into()],
        deliver_to: vec![s.downstream.addr()],
        ..Options::default()
    };
    let gw_dir = s.dir.path().join("gw");
    std::fs::create_dir_all(&gw_dir).unwrap();
    let text = |max: usize| {
        config_text(&gw_dir, &s.pki, &s.server, &opts)
            .replace("[delivery]\n", &format!("[delivery]\nmax_in_memory = {max}\n"))
    };
    s.downstream.stop();
    let mut gw = Gateway::start_with_text(&gw_dir, &text(100));
    let mut c = Client::connect_tls(gw.smtp, &s.pki.ca, None);
    for i in 0..25 {
        let m = support::crlf(&format!(
            "From: a@example.org\nSubject: b{i}\nMessage-ID: <b{i}@x>\n\nhi\n"
        ));
        c.send_data("a@example.org", &["user@contoso.com"], &m);
    }
    drop(c);
    assert!(
        support::wait_for(Duration::from_secs(30), || (gw.count_log("delivery deferred") >= 25)
            .then_some(()))
        .is_some()
    );
    gw.kill();
    let gw = Gateway::start_with_text(&gw_dir, &text(10));
    // The queue gauge is the whole backlog, not the part in the index.
    let gauge = support::wait_for(Duration::from_secs(10), || {
        let (_, metrics) = gw.http_get("/metrics");
        metrics.contains("exogate_queue_messages 25").then_some(())
    });
    assert!(gauge.is_some(), "{}", gw.http_get("/metrics").1);
    s.downstream.restart();
    let (code, _, _) = gw.cli(&["queue", "flush"]);
    assert_eq!(code, 0);
    // Every one is retried now, those loaded from disk after the flush too.
    let got = s.downstream.wait_messages(25, Duration::from_secs(60));
    assert_eq!(got.len(), 25);
}

#[test]
fn new_mail_for_a_live_destination_is_delivered_while_deferrals_for_a_dead_one_fill_the_index() {
    // contoso's downstream is dead: 12 messages for it are deferred for an hour,
    // more than the scheduler's index holds (10). fabrikam's downstream accepts:
    // a message for it is due now and must take a place in the full index, not
    // wait on disk behind retries an hour away.
    let s = Stack::new();
    let opts = Options {
        retry: vec!["1h".into()],
        deliver_to: vec!["127.0.0.1:9".into()],
        extra: format!(
            "[[tenant]]\nportal = \"fabrikam\"\ndomains = [\"fabrikam.com\"]\ndeliver_to = [\"{}\"]\n",
            s.downstream.addr()
        ),
        ..Options::default()
    };
    let gw_dir = s.dir.path().join("gw");
    std::fs::create_dir_all(&gw_dir).unwrap();
    let text =
        config_text(&gw_dir, &s.pki, &s.server, &opts).replace("[delivery]\n", "[delivery]\nmax_in_memory = 10\n");
    let gw = Gateway::start_with_text(&gw_dir, &text);
    let mut c = Client::connect_tls(gw.smtp, &s.pki.ca, None);
    for i in 0..12 {
        let m = support::crlf(&format!(
            "From: a@example.org\nSubject: d{i}\nMessage-ID: <d{i}@x>\n\nhi\n"
        ));
        assert_eq!(c.send_data("a@example.org", &["user@contoso.com"], &m).code, 250);
    }
    // The index is full of messages that are not due for an hour.
    assert!(
        support::wait_for(Duration::from_secs(30), || (gw.count_log("delivery deferred") >= 10)
            .then_some(()))
        .is_some(),
        "{}",
        gw.log()
    );
    let m = support::crlf("From: a@example.org\nSubject: live\nMessage-ID: <live@x>\n\nhi\n");
    assert_eq!(c.send_data("a@example.org", &["v@fabrikam.com"], &m).code, 250);
    drop(c);
    let got = s.downstream.wait_messages(1, Duration::from_secs(30));
    assert_eq!(got.len(), 1, "{}", gw.log());
    assert_eq!(got[0].recipient, "v@fabrikam.com");
}

#[test]
fn mail_between_two_protected_tenants_is_the_senders_when_exchange_says_sent() {
    // contoso's user writes to fabrikam: EXO hands it over as contoso's outgoing
    // mail, so it is scanned under contoso's policy and goes back to contoso
    // (fabrikam's own downstream does not even answer here).
    let s = Stack::new();
    let gw = s.gateway(Options {
        extra: "[[tenant]]\nportal = \"fabrikam\"\ndomains = [\"fabrikam.com\"]\ndeliver_to = [\"127.0.0.1:9\"]\n"
            .into(),
        ..Options::default()
    });
    let message = |info: &str| {
        support::crlf(&format!(
            "X-CLOUD-SEC-AV-Info: {info}\nFrom: alice@contoso.com\nTo: v@fabrikam.com\nSubject: between tenants\n\
             Message-ID: <xt@contoso.com>\n\nhi\n"
        ))
    };
    let send = |from: &str, info: &str| {
        let mut c = Client::connect_tls(gw.smtp, &s.pki.ca, None);
        c.send_data(from, &["v@fabrikam.com"], &message(info))
    };
    let r = send("alice@contoso.com", "contoso,office365_emails,sent,inline");
    assert_eq!(r.code, 250, "{r}");
    let got = s.downstream.wait_messages(1, Duration::from_secs(30));
    assert_eq!(got[0].recipient, "v@fabrikam.com");
    let text = String::from_utf8_lossy(&got[0].data);
    assert!(
        text.contains("X-CLOUD-SEC-AV-Info: contoso,office365_emails,sent"),
        "stamped as contoso's outgoing mail: {text}"
    );

    // Claiming the sender's tenant without being its sender, or as incoming mail, is refused.
    assert_eq!(send("a@example.org", "contoso,office365_emails,sent,inline").code, 550);
    assert_eq!(send("alice@contoso.com", "contoso,office365_emails,inline").code, 550);
}

#[test]
fn a_message_over_scan_max_size_is_scanned_on_its_header_and_says_so() {
    // Spilled to disk while it arrives (over spill_threshold) and over the
    // policy's scan_max_size: only the header is scanned, and the verdict says so.
    let s = Stack::new();
    let gw = s.gateway(Options {
        server_extra: "spill_threshold = \"64KiB\"".into(),
        policy: Some(
            "[policy.default]\nscan_max_size = \"128KiB\"\n[[policy.default.check]]\nkind = \"content\"\n".into(),
        ),
        ..Options::default()
    });
    let gtube = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X";
    let message = |subject: &str, filler: usize| {
        let line = "filler text that keeps the message growing past the limits\n";
        support::crlf(&format!(
            "From: a@example.org\nTo: user@contoso.com\nSubject: {subject}\nMessage-ID: <{subject}@x>\n\n{}{gtube}\n",
            line.repeat(filler)
        ))
    };
    let mut c = Client::connect_tls(gw.smtp, &s.pki.ca, None);
    assert_eq!(
        c.send_data("a@example.org", &["user@contoso.com"], &message("small", 10))
            .code,
        250
    );
    let big = message("big", 5000);
    assert!(big.len() > 256 * 1024, "over both limits: {}", big.len());
    assert_eq!(c.send_data("a@example.org", &["user@contoso.com"], &big).code, 250);

    let got = s.downstream.wait_messages(2, Duration::from_secs(30));
    let text = |subject: &str| {
        let m = got
            .iter()
            .find(|m| String::from_utf8_lossy(&m.data).contains(&format!("Subject: {subject}")))
            .unwrap();
        String::from_utf8_lossy(&m.data).into_owned()
    };
    let (small, big) = (text("small"), text("big"));
    assert!(
        small.contains("X-CLOUD-SEC-AV-SCL: true"),
        "the body rule fires on a scanned body"
    );
    assert!(!small.contains("header-only-scan"));
    assert!(big.contains("X-CLOUD-SEC-AV-SCL: false"), "the body was not scanned");
    assert!(
        big.contains("header-only-scan"),
        "and the verdict says so: {}",
        &big[..2000]
    );
    assert!(big.contains(gtube), "the whole message was still delivered");
}

#[test]
fn a_large_message_is_relayed_from_its_queue_file_byte_for_byte() {
    // Over 256 KiB, a queued message is not read into memory for delivery: it
    // is verified and streamed from its file, in chunks, with our forged-field
    // removal applied on the way. The downstream must get exactly what a
    // small message would get: our fields, then the original minus the forged ones.
    let s = Stack::new();
    let gw = s.gateway(Options::default());
    let line = ".a dot first, then base64-like text: QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo0123456789+/\n";
    let original = support::crlf(&format!(
        "X-CLOUD-SEC-AV-SCL: false\n\
         From: \"Sender\" <sender@example.org>\n\
         To: user@contoso.com\n\
         x-cloud-sec-av-info: contoso,office365_emails,inline\n\
         Subject: large\n\
         X-Cloud-Sec-Av-Verdict: action=deliver;\n  folded forged verdict\n\
         Message-ID: <large@example.org>\n\
         Date: Mon, 23 Nov 2026 10:00:00 +0000\n\
         \n\
         {}end\n",
        line.repeat(20_000)
    ));
    assert!(
        original.len() > 1 << 20,
        "streamed, and spilled on the way in: {}",
        original.len()
    );
    let mut c = Client::connect_tls(gw.smtp, &s.pki.ca, None);
    let r = c.send_data("sender@example.org", &["user@contoso.com"], &original);
    assert_eq!(r.code, 250, "{r}");

    let delivered = s.downstream.wait_messages(1, Duration::from_secs(60));
    let got = String::from_utf8(without_postfix_received(&delivered[0].data).to_vec()).unwrap();
    let sent = String::from_utf8(original).unwrap().replace("\r\n", "\n");
    let expected = without_owned_fields(&sent);
    assert!(
        got.ends_with(&expected),
        "delivered {} bytes, expected a suffix of {}",
        got.len(),
        expected.len()
    );
    let prefix = &got[..got.len() - expected.len()];
    assert!(prefix.starts_with("Received: from "), "{prefix}");
    assert_eq!(prefix.matches("X-CLOUD-SEC-AV-SCL:").count(), 1, "{prefix}");
}

#[test]
fn a_recipient_delivered_once_is_not_sent_again_while_another_is_retried() {
    // The real Postfix takes user@ and answers 450 for tempfail@ at every
    // attempt: each retry (every second here) must carry tempfail@ alone.
    let s = Stack::new();
    let gw = s.gateway(Options::default());
    let mut c = Client::connect_tls(gw.smtp, &s.pki.ca, None);
    let msg = support::crlf("From: a@example.org\nSubject: partial\nMessage-ID: <partial@x>\n\nhi\n");
    let r = c.send_data("a@example.org", &["user@contoso.com", "tempfail@contoso.com"], &msg);
    assert_eq!(r.code, 250, "{r}");
    assert!(
        support::wait_for(Duration::from_secs(30), || (gw.count_log("delivery deferred") >= 3)
            .then_some(()))
        .is_some(),
        "{}",
        gw.log()
    );
    let maillog = s.downstream.maillog();
    let refused = maillog.matches("<tempfail@contoso.com>").count();
    assert!(refused >= 3, "tempfail@ asked for at every attempt: {maillog}");
    let got = s.downstream.messages();
    assert_eq!(got.len(), 1, "user@ got one copy: {got:#?}");
    assert_eq!(got[0].recipient, "user@contoso.com");
}
