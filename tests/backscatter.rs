//! Backscatter (issue #10, item 4): a real Postfix downstream refuses a
//! recipient with 550, and whether a DSN goes out, to whom, from which
//! address and with what content follows the tenant's `[tenant.dsn]` and
//! `relay.dsn_source_ips`: an unauthenticated inbound sender gets nothing,
//! an SPF-authenticated one gets the header only (even with RET=FULL) from a
//! DSN source address, never from the egress addresses; a tenant's own
//! sender still gets its DSN back through the tenant. Sender authentication
//! is real: SPF records served by Knot DNS, evaluated by the `auth` check.
//! And what a DSN carries and costs: `return_limit`, a 48 MiB bounce that
//! must not raise the gateway's peak memory, and megabytes of forged fields
//! of ours in the bounced header.

mod support;

use std::time::Duration;

use support::gateway::{Gateway, Options};
use support::knot::{Knot, txt};
use support::postfix::Tls;
use support::smtp::Client;
use support::stack::Stack;

const SECRET: &str = "secret body line that a bounce must not carry";

/// Senders: example.net's SPF allows 127.0.0.1 (where the test connects
/// from), example.org's does not. Both domains' MX is the test Postfix.
fn knot() -> Knot {
    Knot::start(&[
        (
            "example.net",
            &format!(
                "@ MX 10 mx\nmx A 127.0.0.1\n@ TXT {}\n",
                txt("v=spf1 ip4:127.0.0.1 -all")
            ),
        ),
        (
            "example.org",
            &format!(
                "@ MX 10 mx\nmx A 127.0.0.1\n@ TXT {}\n",
                txt("v=spf1 ip4:192.0.2.1 -all")
            ),
        ),
    ])
}

fn gateway(stack: &Stack, knot: &Knot, dsn_sources: &str, tenant_dsn: &str) -> Gateway {
    stack.gateway(Options {
        source_ips: vec!["127.0.0.3".into()],
        relay_extra: format!("mx_port = {}\n{dsn_sources}", stack.downstream.port),
        policy: Some("[policy.default]\n[[policy.default.check]]\nkind = \"auth\"\n".into()),
        extra: format!("{tenant_dsn}[dns]\nservers = [\"{}\"]\n", knot.addr()),
        ..Options::default()
    })
}

/// A gateway whose policy runs the content check alone, with `policy_lines`
/// in `[policy.default]` and `tenant_dsn` for the tenant: for the tenant's
/// own sender, whose DSNs go back through the tenant whatever sender
/// authentication would say (so no DNS is needed).
fn content_only(stack: &Stack, policy_lines: &str, tenant_dsn: &str) -> Gateway {
    stack.gateway(Options {
        source_ips: vec!["127.0.0.3".into()],
        policy: Some(format!(
            "[policy.default]\n{policy_lines}[[policy.default.check]]\nkind = \"content\"\n"
        )),
        extra: tenant_dsn.into(),
        ..Options::default()
    })
}

/// MAIL FROM with RET=FULL, one refused and one accepted recipient.
fn send(c: &mut Client, from: &str, n: u32) {
    assert_eq!(c.cmd(&format!("MAIL FROM:<{from}> RET=FULL")).code, 250);
    assert_eq!(c.cmd("RCPT TO:<reject@contoso.com>").code, 250);
    assert_eq!(c.cmd("RCPT TO:<user@contoso.com>").code, 250);
    assert_eq!(c.cmd("DATA").code, 354);
    c.send(
        support::crlf(&format!(
            "From: {from}\nTo: user@contoso.com\nSubject: bounce test {n}\nMessage-ID: <b{n}@x>\n\n{SECRET}\n.\n"
        ))
        .as_slice(),
    );
    let r = c.read_reply();
    assert_eq!(r.code, 250, "{r}");
}

#[test]
fn dsns_go_only_to_authenticated_or_tenant_senders_and_never_from_the_egress_addresses() {
    let knot = knot();
    let stack = Stack::with(
        Tls::Required,
        true,
        &["localhost", "127.0.0.1", "mx.example.net", "mx.example.org"],
    );
    let gw = gateway(&stack, &knot, "dsn_source_ips = [\"127.0.0.2\"]", "");
    let mut c = Client::connect_tls(gw.smtp, &stack.pki.ca, None);
    send(&mut c, "bob@example.net", 1); // SPF pass: authenticated
    send(&mut c, "eve@example.org", 2); // SPF fail: anyone could claim it
    send(&mut c, "alice@contoso.com", 3); // the tenant's own sender

    // Three accepted copies and two DSNs (bob, alice); none for eve.
    let got = stack.downstream.wait_messages(5, Duration::from_secs(60));
    assert!(
        gw.wait_log("the sender was not authenticated", Duration::from_secs(10)),
        "{}",
        gw.log()
    );
    std::thread::sleep(Duration::from_secs(2));
    let got_now = stack.downstream.messages();
    assert_eq!(got_now.len(), 5, "{got_now:#?}");
    assert!(
        !got.iter().any(|m| m.recipient == "eve@example.org"),
        "no backscatter to eve"
    );

    let bob = got
        .iter()
        .find(|m| m.recipient == "bob@example.net")
        .expect("a DSN to bob");
    let text = String::from_utf8_lossy(&bob.data);
    assert_eq!(bob.sender, "MAILER-DAEMON");
    assert_eq!(
        bob.client_ip, "127.0.0.2",
        "from relay.dsn_source_ips, not the egress address"
    );
    assert!(text.contains("Final-Recipient: rfc822; reject@contoso.com"), "{text}");
    assert!(
        text.contains("Subject: bounce test 1"),
        "the header is returned: {text}"
    );
    assert!(!text.contains(SECRET), "RET=FULL is not honoured by default: {text}");

    let alice = got
        .iter()
        .find(|m| m.recipient == "alice@contoso.com")
        .expect("a DSN to the tenant's sender");
    assert_eq!(
        alice.client_ip, "127.0.0.3",
        "back through the tenant's own destination"
    );
    for m in got.iter().filter(|m| m.recipient == "user@contoso.com") {
        assert_eq!(m.client_ip, "127.0.0.3");
    }
}

#[test]
fn a_tenant_may_bounce_everything_in_full_but_not_from_the_egress_addresses() {
    let knot = knot();
    let stack = Stack::with(
        Tls::Required,
        true,
        &["localhost", "127.0.0.1", "mx.example.net", "mx.example.org"],
    );
    // `[tenant.dsn]` of the one [[tenant]] (TOML: the array's latest element).
    let always = "[tenant.dsn]\ninbound = \"always\"\nreturn_content = \"full\"\n";
    // Without relay.dsn_source_ips no DSN leaves for the Internet.
    let gw = gateway(&stack, &knot, "", always);
    let mut c = Client::connect_tls(gw.smtp, &stack.pki.ca, None);
    send(&mut c, "eve@example.org", 4);
    assert!(
        gw.wait_log("relay.dsn_source_ips is empty", Duration::from_secs(30)),
        "{}",
        gw.log()
    );
    let got = stack.downstream.wait_messages(1, Duration::from_secs(30));
    drop(c);
    drop(gw);
    assert!(!got.iter().any(|m| m.recipient == "eve@example.org"));

    // With a DSN source: eve gets the whole message back, from it.
    let gw = gateway(&stack, &knot, "dsn_source_ips = [\"127.0.0.2\"]", always);
    let mut c = Client::connect_tls(gw.smtp, &stack.pki.ca, None);
    send(&mut c, "eve@example.org", 5);
    let got = stack.downstream.wait_messages(3, Duration::from_secs(60));
    let eve = got
        .iter()
        .find(|m| m.recipient == "eve@example.org")
        .expect("a DSN to eve");
    assert_eq!(eve.client_ip, "127.0.0.2");
    assert!(
        String::from_utf8_lossy(&eve.data).contains(SECRET),
        "return_content = \"full\" honours RET=FULL"
    );
}

#[test]
fn a_message_over_the_tenants_return_limit_comes_back_as_its_header_only() {
    // Postfix's bounce_size_limit: RET=FULL, allowed by the tenant, returns
    // the whole message only up to `return_limit`. The large one (over the
    // size a delivery reads into memory) must come back as its header.
    let stack = Stack::with(Tls::Required, true, &["localhost", "127.0.0.1"]);
    let dsn = "[tenant.dsn]\nreturn_content = \"full\"\nreturn_limit = \"64KiB\"\n";
    let gw = content_only(&stack, "", dsn);
    let mut c = Client::connect_tls(gw.smtp, &stack.pki.ca, None);
    for (n, lines) in [(1, 10), (2, 5000)] {
        let mut text = format!("From: alice@contoso.com\nSubject: sized bounce {n}\nMessage-ID: <s{n}@x>\n\n");
        for i in 0..lines {
            text.push_str(&format!("{SECRET} {i:05} of message {n}, padded to a long line.\n"));
        }
        let body = support::crlf(&text);
        assert_eq!(c.cmd("MAIL FROM:<alice@contoso.com> RET=FULL").code, 250);
        assert_eq!(c.cmd("RCPT TO:<reject@contoso.com>").code, 250);
        assert_eq!(c.cmd("DATA").code, 354);
        c.send(&[body.as_slice(), b".\r\n"].concat());
        let r = c.read_reply();
        assert_eq!(r.code, 250, "{r}");
        let got = stack.downstream.wait_messages(n, Duration::from_secs(60));
        let dsn = got
            .iter()
            .map(|m| String::from_utf8_lossy(&m.data).into_owned())
            .find(|t| t.contains(&format!("Subject: sized bounce {n}")))
            .expect("a DSN that names the message");
        if n == 1 {
            assert!(body.len() < 64 << 10);
            assert!(dsn.contains("message/rfc822"), "{dsn}");
            assert!(
                dsn.contains(&format!("{SECRET} 00009 of message 1")),
                "returned whole: {dsn}"
            );
        } else {
            assert!(body.len() > 256 << 10, "streamed from its queue file: {}", body.len());
            let head = &dsn[..dsn.len().min(4000)];
            assert!(dsn.contains("text/rfc822-headers"), "{head}");
            assert!(dsn.contains("Message-ID: <s2@x>"), "{head}");
            assert!(!dsn.contains(SECRET), "over the limit: {head}");
            assert!(dsn.len() < 8 << 10, "a DSN of {} bytes", dsn.len());
        }
    }
}

#[test]
fn bouncing_a_large_message_never_reads_it_back_whole() {
    // 48 MiB from the tenant's own sender to a recipient the downstream
    // refuses: scanned on its header only (scan_max_size), relayed from its
    // queue file, and bounced with its header. The gateway's peak memory
    // must not grow with the message at any of those steps.
    let stack = Stack::with(Tls::Required, true, &["localhost", "127.0.0.1"]);
    let gw = content_only(&stack, "scan_max_size = \"1MiB\"\n", "");
    let mut body = support::crlf("From: alice@contoso.com\nSubject: large bounce\nMessage-ID: <lb@x>\n\n");
    while body.len() < 48 << 20 {
        body.extend_from_slice(format!("{SECRET}, a long line of a large message.\r\n").as_bytes());
    }
    let mut c = Client::connect_tls(gw.smtp, &stack.pki.ca, None);
    assert_eq!(c.cmd("NOOP").code, 250);
    let before = gw.peak_memory_kib();
    let r = c.send_data("alice@contoso.com", &["reject@contoso.com"], &body);
    assert_eq!(r.code, 250, "{r}");

    let got = stack.downstream.wait_messages(1, Duration::from_secs(60));
    let dsn = String::from_utf8_lossy(&got[0].data);
    assert_eq!(got[0].recipient, "alice@contoso.com");
    assert!(dsn.contains("Final-Recipient: rfc822; reject@contoso.com"), "{dsn}");
    assert!(dsn.contains("Subject: large bounce") && !dsn.contains(SECRET), "{dsn}");
    let grown = gw.peak_memory_kib().saturating_sub(before);
    assert!(
        grown < 24 << 10,
        "the gateway's peak memory grew by {grown} KiB for a {} KiB message",
        body.len() >> 10
    );
}

#[test]
fn a_bounce_of_a_message_with_megabytes_of_forged_fields_is_made() {
    // 3 MiB of fields in our namespace: removed at stamping over several
    // rounds, reaching past the 1 MiB header section a header-only DSN
    // reads. The bounce must still be made, without a panic (a failure
    // after the relay would send the accepted recipient's copy again).
    let stack = Stack::with(Tls::Required, true, &["localhost", "127.0.0.1"]);
    let gw = content_only(&stack, "", "");
    let mut text = String::from("From: alice@contoso.com\nSubject: forged fields\nMessage-ID: <ff@x>\n");
    while text.len() < 3 << 20 {
        text.push_str("X-Cloud-Sec-Av-Junk: forged forged forged forged forged forged forged\n");
    }
    text.push_str("\nbody\n");
    let mut c = Client::connect_tls(gw.smtp, &stack.pki.ca, None);
    let r = c.send_data(
        "alice@contoso.com",
        &["reject@contoso.com", "user@contoso.com"],
        &support::crlf(&text),
    );
    assert_eq!(r.code, 250, "{r}");

    let got = stack.downstream.wait_messages(2, Duration::from_secs(60));
    let dsn = got
        .iter()
        .find(|m| m.recipient == "alice@contoso.com")
        .expect("a DSN to alice");
    let dsn = String::from_utf8_lossy(&dsn.data);
    assert!(
        dsn.contains("Final-Recipient: rfc822; reject@contoso.com"),
        "{}",
        &dsn[..dsn.len().min(2000)]
    );
    assert!(!dsn.contains("X-Cloud-Sec-Av-Junk"), "our fields are never returned");
    assert_eq!(gw.count_log("panicked"), 0, "{}", gw.log());
}
