//! Behind a load balancer: a real sender (Python's smtplib, bound to its own
//! loopback address) → a real HAProxy sending a PROXY header (`send-proxy-v2`
//! or `send-proxy`, from its own source address) → the gateway → Postfix.
//! Admission, the session log and the `Received` field must name the sender,
//! never the proxy; a header from an address that is not a configured proxy,
//! and a proxy's connection without one, are refused with their replies.

mod support;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use support::gateway::{Gateway, Options};
use support::haproxy::{Haproxy, Proxy};
use support::stack::Stack;

/// HAProxy's source address towards the gateway (the configured proxy).
const PROXY_IP: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 5);
/// The sender admission allows (`admission.allow`): the proxy is not in it.
const SENDER_IP: &str = "127.0.0.7";
/// A sender outside `admission.allow`.
const OUTSIDER_IP: &str = "127.0.0.8";

fn gateway(stack: &Stack) -> Gateway {
    stack.gateway(Options {
        allow: vec![format!("{SENDER_IP}/32")],
        tls_require: false,
        server_extra: format!(
            "[[server.proxy_protocol]]\nlisten = \"127.0.0.1:0\"\nfrom = [\"{PROXY_IP}/32\"]\ntimeout = \"2s\"\n"
        ),
        policy: Some("[policy.default]\n[[policy.default.check]]\nkind = \"attachments\"\n".into()),
        ..Options::default()
    })
}

/// Sends one message with smtplib from `source` to `to`; prints "CODE text"
/// of the data reply, or of the refusal (greeting or command).
fn smtplib(to: SocketAddr, source: &str, subject: &str) -> String {
    support::python(
        "import smtplib, sys\n\
         host, port, src, subject = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]\n\
         msg = ('From: a@example.org\\r\\nTo: u@contoso.com\\r\\nSubject: %s\\r\\nMessage-ID: <%s@example.org>\\r\\n\\r\\nhi\\r\\n' % (subject, subject)).encode()\n\
         try:\n\
         \x20   s = smtplib.SMTP(host, port, timeout=30, source_address=(src, 0))\n\
         except smtplib.SMTPConnectError as e:\n\
         \x20   print(e.smtp_code, e.smtp_error.decode()); sys.exit(0)\n\
         except smtplib.SMTPServerDisconnected as e:\n\
         \x20   print('disconnected', e); sys.exit(0)\n\
         try:\n\
         \x20   code, text = s.ehlo('sender.example.org')\n\
         \x20   if code != 250: print(code, text.decode()); sys.exit(0)\n\
         \x20   code, text = s.mail('a@example.org')\n\
         \x20   if code != 250: print(code, text.decode()); sys.exit(0)\n\
         \x20   code, text = s.rcpt('u@contoso.com')\n\
         \x20   if code != 250: print(code, text.decode()); sys.exit(0)\n\
         \x20   code, text = s.data(msg)\n\
         \x20   print(code, text.decode())\n\
         \x20   s.quit()\n\
         except smtplib.SMTPServerDisconnected as e:\n\
         \x20   print('disconnected', e)\n",
        &[&to.ip().to_string(), &to.port().to_string(), source, subject],
    )
    .trim()
    .to_string()
}

fn through_haproxy(proxy: Proxy, subject: &str) {
    let stack = Stack::new();
    let gw = gateway(&stack);
    let h = Haproxy::start_from(gw.smtp, proxy, Some(IpAddr::V4(PROXY_IP)));

    let reply = smtplib(h.addr(), SENDER_IP, subject);
    assert!(
        reply.starts_with("250"),
        "through HAProxy: {reply}\n{}\n{}",
        gw.log(),
        h.logs()
    );
    let got = stack.downstream.wait_messages(1, Duration::from_secs(30));
    let text = String::from_utf8_lossy(&got[0].data).into_owned();
    assert!(
        text.contains(&format!("from sender.example.org ([{SENDER_IP}]:")),
        "our Received names the sender, not the proxy:\n{text}"
    );
    assert!(
        !text.contains(&format!("[{PROXY_IP}]")),
        "the proxy appears nowhere:\n{text}"
    );
    assert!(
        gw.wait_log(&format!("client={SENDER_IP}"), Duration::from_secs(5))
            && gw.log().contains(&format!("proxy={PROXY_IP}")),
        "the session log names the sender and its proxy:\n{}",
        gw.log()
    );

    // The event in the store (what SPF, DNSBL and rspamd were given as the
    // SMTP client, too) names the sender.
    let event = support::wait_for(Duration::from_secs(15), || {
        let (code, out, _) = gw.cli(&["events", "search", "--subject", subject, "--json"]);
        let found: serde_json::Value = serde_json::from_str(&out).ok().filter(|_| code == 0)?;
        let id = found.as_array()?.first()?["id"].to_string();
        let (_, out, _) = gw.cli(&["events", "show", &id, "--json"]);
        serde_json::from_str::<serde_json::Value>(&out).ok()
    })
    .expect("the message's event is recorded");
    assert_eq!(event["event"]["client_ip"], SENDER_IP, "{event}");

    // Admission judges the sender behind the proxy: one outside
    // admission.allow is refused although the proxy's connection is trusted.
    let refused = smtplib(h.addr(), OUTSIDER_IP, "outsider");
    assert!(refused.starts_with("554"), "outsider behind the proxy: {refused}");
    assert!(
        gw.wait_log("client address not in admission.allow", Duration::from_secs(5)),
        "{}",
        gw.log()
    );
    assert!(gw.log().contains(&format!("client={OUTSIDER_IP}")), "{}", gw.log());
    assert_eq!(stack.downstream.messages().len(), 1, "nothing more was delivered");
}

#[test]
fn a_sender_behind_haproxy_v2_is_the_client_for_admission_and_received() {
    through_haproxy(Proxy::V2, "via-v2");
}

#[test]
fn a_sender_behind_haproxy_v1_is_the_client_for_admission_and_received() {
    through_haproxy(Proxy::V1, "via-v1");
}

#[test]
fn a_proxy_header_from_an_untrusted_address_and_a_proxy_without_one_are_refused() {
    let stack = Stack::new();
    let gw = gateway(&stack);

    // HAProxy connecting from the sender's (allowed) address, which is not a
    // configured proxy: its v2 header is refused, not read as SMTP.
    let untrusted = Haproxy::start_from(gw.smtp, Proxy::V2, Some(SENDER_IP.parse().unwrap()));
    let reply = smtplib(untrusted.addr(), SENDER_IP, "untrusted");
    assert_eq!(
        reply,
        "554 5.7.1 PROXY protocol header not accepted from your address",
        "{}",
        gw.log()
    );
    assert!(
        gw.wait_log(
            "PROXY header from an address not in this listener's server.proxy_protocol.from: refused",
            Duration::from_secs(5)
        ),
        "{}",
        gw.log()
    );

    // The configured proxy forwarding without a header: refused after the timeout.
    let headerless = Haproxy::start_from(gw.smtp, Proxy::None, Some(IpAddr::V4(PROXY_IP)));
    let reply = smtplib(headerless.addr(), SENDER_IP, "headerless");
    assert_eq!(
        reply,
        "421 4.7.0 PROXY protocol header missing or invalid, closing connection",
        "{}",
        gw.log()
    );
    assert!(
        gw.wait_log(
            "connection from a configured proxy without a valid PROXY header: refused",
            Duration::from_secs(5)
        ),
        "{}",
        gw.log()
    );
    assert!(stack.downstream.messages().is_empty(), "nothing was delivered");
}

/// Implicit TLS behind the proxy: the header is read to its last byte and
/// the ClientHello right behind it is the session's; a header from another
/// address is closed (no plaintext reply a TLS client could read) and logged.
#[test]
fn implicit_tls_behind_haproxy_and_an_untrusted_header_there() {
    let stack = Stack::new();
    let port = support::free_port();
    let gw = stack.gateway(Options {
        allow: vec![format!("{SENDER_IP}/32")],
        tls_require: false,
        server_extra: format!(
            "tls_listen = [\"127.0.0.1:{port}\"]\n\
             [[server.proxy_protocol]]\nlisten = \"127.0.0.1:{port}\"\nfrom = [\"{PROXY_IP}/32\"]\n"
        ),
        policy: Some("[policy.default]\n[[policy.default.check]]\nkind = \"attachments\"\n".into()),
        ..Options::default()
    });
    let tls_addr = SocketAddr::from(([127, 0, 0, 1], port));
    let smtps = |to: SocketAddr| {
        support::python(
            "import smtplib, ssl, sys\n\
             host, port, src, ca = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]\n\
             msg = b'From: a@example.org\\r\\nTo: u@contoso.com\\r\\nSubject: via-tls\\r\\n\\r\\nhi\\r\\n'\n\
             try:\n\
             \x20   s = smtplib.SMTP_SSL(host, port, timeout=30, source_address=(src, 0), context=ssl.create_default_context(cafile=ca))\n\
             \x20   s.ehlo('sender.example.org')\n\
             \x20   s.sendmail('a@example.org', ['u@contoso.com'], msg)\n\
             \x20   print('250 sent')\n\
             \x20   s.quit()\n\
             except (ssl.SSLError, ConnectionError, smtplib.SMTPServerDisconnected, OSError) as e:\n\
             \x20   print('closed', type(e).__name__)\n",
            &[
                &to.ip().to_string(),
                &to.port().to_string(),
                SENDER_IP,
                stack.pki.ca.to_str().unwrap(),
            ],
        )
        .trim()
        .to_string()
    };

    let trusted = Haproxy::start_from(tls_addr, Proxy::V2, Some(IpAddr::V4(PROXY_IP)));
    let sent = smtps(trusted.addr());
    assert_eq!(sent, "250 sent", "{}\n{}", gw.log(), trusted.logs());
    let got = stack.downstream.wait_messages(1, Duration::from_secs(30));
    let text = String::from_utf8_lossy(&got[0].data).into_owned();
    assert!(
        text.contains(&format!("from sender.example.org ([{SENDER_IP}]:")),
        "{text}"
    );

    let untrusted = Haproxy::start_from(tls_addr, Proxy::V2, Some(SENDER_IP.parse().unwrap()));
    let refused = smtps(untrusted.addr());
    assert!(refused.starts_with("closed"), "{refused}");
    assert!(
        gw.wait_log(
            "PROXY header from an address not in this listener's server.proxy_protocol.from: refused",
            Duration::from_secs(5)
        ),
        "{}",
        gw.log()
    );
    assert_eq!(stack.downstream.messages().len(), 1, "nothing more was delivered");
}
