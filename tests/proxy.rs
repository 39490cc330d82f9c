//! Proxy mode (no local queue) against real and scripted downstreams: the
//! downstream's own replies reach the client, a transaction stays with the
//! tenant whose downstream it opened, and a downstream lost in the middle of
//! a transaction fails it temporarily instead of queueing it behind the
//! client's back.

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use support::gateway::Options;
use support::smtp::Client;
use support::stack::Stack;

/// tests/support/hangup_server.py: drops the connection at RCPT number `n`.
struct HangupServer {
    child: Child,
    port: u16,
    lines: std::sync::mpsc::Receiver<String>,
}

impl HangupServer {
    fn start(stack: &Stack, n: u32) -> HangupServer {
        let leaf = stack.pki.leaf("hangup", &["127.0.0.1"]);
        let port = support::free_port();
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/hangup_server.py");
        let mut child = Command::new("python3")
            .arg(script)
            .arg(port.to_string())
            .arg(&leaf.cert)
            .arg(&leaf.key)
            .arg(n.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("python3");
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut ready = String::new();
        out.read_line(&mut ready).unwrap();
        assert!(ready.starts_with("ready"), "hangup server did not start: {ready}");
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in out.lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        HangupServer { child, port, lines }
    }

    /// The commands it has received, up to and including the first that
    /// starts with `last`. The server prints each command before it answers,
    /// so once the gateway has had the answer the line is on its way; it is
    /// waited for (the reading thread may not have passed it on yet), not
    /// assumed to be there.
    fn received_through(&self, last: &str) -> Vec<String> {
        let mut lines = Vec::new();
        while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(20)) {
            let done = line.starts_with(last);
            lines.push(line);
            if done {
                return lines;
            }
        }
        panic!("the downstream never printed {last:?}; it printed {lines:?}");
    }
}

impl Drop for HangupServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn queue_is_empty(gw: &support::gateway::Gateway) -> bool {
    std::fs::read_dir(gw.dir.join("state/queue/active"))
        .map(|d| d.count())
        .unwrap_or(0)
        == 0
}

#[test]
fn proxy_mode_passes_the_downstream_replies_through() {
    let s = Stack::new();
    let gw = s.gateway(Options {
        mode: "proxy",
        ..Options::default()
    });
    let mut c = Client::connect_tls(gw.smtp, &s.pki.ca, None);
    assert_eq!(c.cmd("MAIL FROM:<a@example.org>").code, 250);
    let r = c.cmd("RCPT TO:<tempfail@contoso.com>");
    assert_eq!(r.code, 450, "temporary stays temporary: {r}");
    let r = c.cmd("RCPT TO:<reject@contoso.com>");
    assert_eq!(r.code, 550, "{r}");
    assert!(r.text().contains("no such user"), "the downstream's own text: {r}");
    assert_eq!(c.cmd("RCPT TO:<user@contoso.com>").code, 250);
    assert_eq!(c.cmd("DATA").code, 354);
    c.send(&support::crlf(
        "From: a@example.org\nSubject: proxied\nMessage-ID: <px@x>\n\nhi\n.\n",
    ));
    let r = c.read_reply();
    assert_eq!(r.code, 250, "{r}");
    assert!(r.text().contains("queued as"), "Postfix's own reply: {r}");
    assert_eq!(s.downstream.wait_messages(1, Duration::from_secs(20)).len(), 1);
    let state = gw.dir.join("state/queue/active");
    assert_eq!(
        std::fs::read_dir(&state).map(|d| d.count()).unwrap_or(0),
        0,
        "no local state"
    );

    // End of data refused downstream, temporarily and permanently.
    for (sender, code) in [("tempdata@example.org", 451), ("rejectdata@example.org", 554)] {
        assert_eq!(c.cmd(&format!("MAIL FROM:<{sender}>")).code, 250);
        assert_eq!(c.cmd("RCPT TO:<user@contoso.com>").code, 250);
        assert_eq!(c.cmd("DATA").code, 354);
        c.send(&support::crlf(
            "From: x@example.org\nSubject: refused\nMessage-ID: <pr@x>\n\nhi\n.\n",
        ));
        let r = c.read_reply();
        assert_eq!(r.code, code, "{r}");
    }
}

#[test]
fn a_transaction_stays_with_the_tenant_whose_downstream_it_opened() {
    // The first recipient is refused by contoso's downstream; a fabrikam
    // recipient must still not ride on contoso's connection.
    let s = Stack::new();
    let gw = s.gateway(Options {
        mode: "proxy",
        extra: "[[tenant]]\nportal = \"fabrikam\"\ndomains = [\"fabrikam.com\"]\ndeliver_to = [\"127.0.0.1:9\"]\n"
            .into(),
        ..Options::default()
    });
    let mut c = Client::connect_tls(gw.smtp, &s.pki.ca, None);
    assert_eq!(c.cmd("MAIL FROM:<a@example.org>").code, 250);
    assert_eq!(c.cmd("RCPT TO:<reject@contoso.com>").code, 550);
    let r = c.cmd("RCPT TO:<v@fabrikam.com>");
    assert_eq!((r.code, r.text().starts_with("4.5.3")), (452, true), "{r}");
    assert_eq!(c.cmd("RCPT TO:<user@contoso.com>").code, 250);
    assert_eq!(c.cmd("DATA").code, 354);
    c.send(&support::crlf(
        "From: a@example.org\nSubject: one tenant\nMessage-ID: <pt@x>\n\nhi\n.\n",
    ));
    assert_eq!(c.read_reply().code, 250);
    let got = s.downstream.wait_messages(1, Duration::from_secs(20));
    assert_eq!(got[0].recipient, "user@contoso.com");
    assert!(gw.wait_log("proxied", Duration::from_secs(5)));
}

#[test]
fn a_downstream_lost_mid_transaction_fails_it_temporarily_and_queues_nothing() {
    let s = Stack::new();
    let down = HangupServer::start(&s, 2);
    let gw = s.gateway(Options {
        mode: "proxy",
        deliver_to: vec![format!("127.0.0.1:{}", down.port)],
        ..Options::default()
    });
    let mut c = Client::connect_tls(gw.smtp, &s.pki.ca, None);
    assert_eq!(c.cmd("MAIL FROM:<a@example.org>").code, 250);
    assert_eq!(
        c.cmd("RCPT TO:<u1@contoso.com>").code,
        250,
        "the downstream took the first"
    );
    let r = c.cmd("RCPT TO:<u2@contoso.com>");
    assert_eq!(r.code / 100, 4, "the connection dropped at the second: {r}");
    // A new downstream connection would not know u1, so the transaction is lost:
    // every further step says so, temporarily, and the client keeps the message.
    let r = c.cmd("RCPT TO:<u3@contoso.com>");
    assert_eq!((r.code, r.text().starts_with("4.4.2")), (451, true), "{r}");
    assert_eq!(c.cmd("DATA").code, 354);
    c.send(&support::crlf(
        "From: a@example.org\nSubject: lost\nMessage-ID: <pl@x>\n\nhi\n.\n",
    ));
    let r = c.read_reply();
    assert_eq!((r.code, r.text().starts_with("4.4.2")), (451, true), "{r}");
    assert!(queue_is_empty(&gw), "nothing queued behind the client's back");
    // The session itself is fine: the next transaction opens a new connection.
    assert_eq!(c.cmd("MAIL FROM:<a@example.org>").code, 250);
    assert_eq!(c.cmd("RCPT TO:<u4@contoso.com>").code, 250);
    let received = down.received_through("RCPT TO:<u4@");
    assert_eq!(
        received.iter().filter(|l| l.starts_with("MAIL FROM")).count(),
        2,
        "one downstream transaction each: {received:?}"
    );
    assert!(!received.iter().any(|l| l.starts_with("RCPT TO:<u3@")), "{received:?}");
}

#[test]
fn a_large_proxied_message_goes_downstream_from_its_spill_file_not_from_memory() {
    // 48 MiB, over the policy's scan_max_size (so the scan reads its header
    // only) and over the spill threshold (so it is on disk once received):
    // what the gateway holds at most must not grow with the message.
    let s = Stack::new();
    let gw = s.gateway(Options {
        mode: "proxy",
        policy: Some(
            "[policy.default]\nscan_max_size = \"1MiB\"\n[[policy.default.check]]\nkind = \"content\"\n".into(),
        ),
        ..Options::default()
    });
    let mut body = support::crlf("From: a@example.org\nSubject: large\nMessage-ID: <big@x>\n\n");
    let header_len = body.len();
    let line = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.,;:!?0123456\r\n";
    while body.len() < 48 << 20 {
        body.extend_from_slice(line);
    }
    let mut c = Client::connect_tls(gw.smtp, &s.pki.ca, None);
    assert_eq!(c.cmd("NOOP").code, 250);
    let before = gw.peak_memory_kib();
    let r = c.send_data("a@example.org", &["user@contoso.com"], &body);
    assert_eq!(r.code, 250, "{r}");
    let grown = gw.peak_memory_kib().saturating_sub(before);

    let got = s.downstream.wait_messages(1, Duration::from_secs(60));
    let data = support::postfix::without_postfix_received(&got[0].data);
    // Postfix's pipe hands lines over with LF endings.
    let sent = String::from_utf8(body[header_len - 2..].to_vec())
        .unwrap()
        .replace("\r\n", "\n");
    assert!(
        data.ends_with(sent.as_bytes()),
        "the body arrived byte for byte ({} bytes)",
        data.len()
    );
    assert!(
        grown < 24 << 10,
        "the gateway's peak memory grew by {grown} KiB for a {} KiB message",
        body.len() >> 10
    );
    let incoming_is_empty = || {
        std::fs::read_dir(gw.dir.join("state/queue/incoming"))
            .unwrap()
            .next()
            .is_none()
    };
    assert!(incoming_is_empty(), "the spill file is removed");

    // Refused by the downstream at the end of the data: the spill file goes too.
    let refused = [
        &support::crlf("From: x@example.org\nSubject: refused\n\n")[..],
        &body[..4 << 20],
    ]
    .concat();
    let r = c.send_data("rejectdata@example.org", &["user@contoso.com"], &refused);
    assert_eq!(r.code, 554, "{r}");
    assert!(incoming_is_empty(), "the refused message's spill file is removed");
    assert!(queue_is_empty(&gw));
}
