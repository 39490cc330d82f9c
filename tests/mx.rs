//! Destinations found through DNS with the gateway's real resolver pointed at
//! a test name server: a tenant delivered by MX (lowest preference first, the
//! next host when the first does not answer), the implicit MX of a domain
//! without one, and a DSN to an external sender's MX.

mod support;

use std::time::Duration;

use support::dns::Dns;
use support::gateway::Options;
use support::postfix::Tls;
use support::smtp::Client;
use support::stack::Stack;

#[test]
fn mx_routing_tries_preferences_in_order_and_falls_back_to_the_address() {
    let stack = Stack::with(
        Tls::Required,
        true,
        &["mx1.contoso.com", "fabrikam.com", "mx.example.net"],
    );
    let (pki, downstream) = (&stack.pki, &stack.downstream);
    let dns = Dns::start(&serde_json::json!({
        // The preferred MX does not answer (nothing listens on 127.0.0.5).
        "contoso.com": {"MX": [[20, "mx1.contoso.com"], [10, "mx-dead.contoso.com"]]},
        "mx-dead.contoso.com": {"A": ["127.0.0.5"]},
        "mx1.contoso.com": {"A": ["127.0.0.1"]},
        // No MX at all: the domain's own address is the implicit MX.
        "fabrikam.com": {"A": ["127.0.0.1"]},
        "example.net": {"MX": [[10, "mx.example.net"]]},
        "mx.example.net": {"A": ["127.0.0.1"]}
    }));
    let opts = Options {
        deliver_to: vec!["mx".into()],
        // The bounce to an outside (unauthenticated) sender is configured
        // explicitly: by default exogate sends none (tests/backscatter.rs).
        relay_extra: format!(
            "dns = [\"{}\"]\nmx_port = {}\ndsn_source_ips = [\"127.0.0.1\"]",
            dns.addr(),
            downstream.port
        ),
        extra: "[tenant.dsn]\ninbound = \"always\"\n\
                [[tenant]]\nportal = \"fabrikam\"\ndomains = [\"fabrikam.com\"]\ndeliver_to = [\"mx\"]\n"
            .into(),
        ..Options::default()
    };
    let gw = stack.gateway(opts);

    let mut c = Client::connect_tls(gw.smtp, &pki.ca, None);
    let m = support::crlf("From: a@example.org\nSubject: by mx\nMessage-ID: <mx1@x>\n\nhi\n");
    assert_eq!(c.send_data("a@example.org", &["user@contoso.com"], &m).code, 250);
    let m = support::crlf("From: a@example.org\nSubject: implicit mx\nMessage-ID: <mx2@x>\n\nhi\n");
    assert_eq!(c.send_data("a@example.org", &["user@fabrikam.com"], &m).code, 250);
    // Outgoing mail from a tenant user to an unknown user: the DSN goes back by the
    // tenant route; a bounce for an external sender goes to that sender's MX.
    let m = support::crlf("From: bob@example.net\nSubject: to a missing user\nMessage-ID: <mx3@x>\n\nhi\n");
    assert_eq!(c.send_data("bob@example.net", &["reject@contoso.com"], &m).code, 250);

    let got = downstream.wait_messages(3, Duration::from_secs(60));
    assert!(got.iter().any(|m| m.recipient == "user@contoso.com"));
    assert!(got.iter().any(|m| m.recipient == "user@fabrikam.com"));
    let dsn = got
        .iter()
        .find(|m| m.recipient == "bob@example.net")
        .expect("DSN delivered to the sender's MX");
    assert!(String::from_utf8_lossy(&dsn.data).contains("Final-Recipient: rfc822; reject@contoso.com"));
    assert!(
        gw.wait_log("mx-dead.contoso.com", Duration::from_secs(5)),
        "the preferred MX was tried first: {}",
        gw.log()
    );
}

#[test]
fn a_tenant_destination_that_does_not_resolve_stays_queued_without_a_bounce() {
    // The tenant's own domain has no records at all (NXDOMAIN): a DNS mistake
    // or outage on our side, not a verdict on the recipient, so the mail waits.
    let stack = Stack::with(Tls::Required, true, &["mx.example.net"]);
    let dns = Dns::start(&serde_json::json!({
        "example.net": {"MX": [[10, "mx.example.net"]]},
        "mx.example.net": {"A": ["127.0.0.1"]}
    }));
    let gw = stack.gateway(Options {
        deliver_to: vec!["mx".into()],
        relay_extra: format!("dns = [\"{}\"]\nmx_port = {}", dns.addr(), stack.downstream.port),
        ..Options::default()
    });
    let mut c = Client::connect_tls(gw.smtp, &stack.pki.ca, None);
    let m = support::crlf("From: bob@example.net\nSubject: unresolvable\nMessage-ID: <nx@x>\n\nhi\n");
    assert_eq!(c.send_data("bob@example.net", &["user@contoso.com"], &m).code, 250);

    let list = support::wait_for(Duration::from_secs(30), || {
        let (_, list, _) = gw.cli(&["queue", "list"]);
        list.contains("deferred x").then_some(list)
    })
    .unwrap_or_else(|| panic!("never deferred: {}", gw.log()));
    assert!(list.contains("1 message(s)"), "still queued: {list}");
    assert!(!gw.log().contains("DSN queued"), "no bounce: {}", gw.log());
    assert!(
        stack.downstream.messages().is_empty(),
        "nothing reached the sender's MX"
    );
}
