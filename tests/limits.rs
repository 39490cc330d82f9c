//! Bounded everything (DESIGN §2.6): message size, recipients, connections in
//! total and per IP, line length, bad commands, and a client that stops talking.

mod support;

use std::time::Duration;

use support::gateway::{Gateway, Options, config_text};
use support::pki::Pki;
use support::smtp::Client;

struct Setup {
    _dir: tempfile::TempDir,
    pki: Pki,
    gw: Gateway,
}

fn setup(opts: Options) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(&dir.path().join("pki"));
    let server = pki.leaf("gateway", &["localhost", "127.0.0.1"]);
    let gw = Gateway::start_with_text(dir.path(), &config_text(dir.path(), &pki, &server, &opts));
    Setup { _dir: dir, pki, gw }
}

fn small() -> Vec<u8> {
    support::crlf("From: a@example.org\nSubject: small\nMessage-ID: <s@x>\n\nok\n")
}

fn big(n: usize) -> Vec<u8> {
    let mut m = support::crlf("From: a@example.org\nSubject: big\nMessage-ID: <b@x>\n\n");
    while m.len() < n {
        m.extend_from_slice(b"0123456789012345678901234567890123456789012345678901234567890123456789\r\n");
    }
    m
}

#[test]
fn an_oversized_message_gets_552_and_the_connection_stays_usable() {
    let s = setup(Options {
        max_message_size: 20_000,
        ..Options::default()
    });
    let mut c = Client::connect_tls(s.gw.smtp, &s.pki.ca, None);
    let ehlo = c.cmd("EHLO again.test");
    assert!(
        ehlo.lines.contains(&"SIZE 20000".to_string()),
        "SIZE advertised: {ehlo}"
    );
    let r = c.send_data("a@example.org", &["u@contoso.com"], &big(60_000));
    assert_eq!((r.code, r.text().starts_with("5.3.4")), (552, true), "{r}");
    assert_eq!(c.cmd("NOOP").code, 250, "the rest of the data was drained");
    assert_eq!(c.send_data("a@example.org", &["u@contoso.com"], &small()).code, 250);

    // BDAT: the over-size chunk is drained, later chunks find no transaction.
    assert_eq!(c.cmd("MAIL FROM:<a@example.org>").code, 250);
    assert_eq!(c.cmd("RCPT TO:<u@contoso.com>").code, 250);
    let body = big(30_000);
    c.send(format!("BDAT {}\r\n", body.len()).as_bytes());
    c.send(&body);
    assert_eq!(c.read_reply().code, 552);
    c.send(b"BDAT 5 LAST\r\nhello");
    assert_eq!(c.read_reply().code, 503);
    assert_eq!(c.cmd("NOOP").code, 250);

    // A declared SIZE over the limit is refused at MAIL.
    assert_eq!(c.cmd("MAIL FROM:<a@example.org> SIZE=20001").code, 552);
    assert_eq!(c.cmd("MAIL FROM:<a@example.org> SIZE=20000").code, 250);

    // A chunk size longer than any number is a syntax error, never another
    // size: smtp-proto read these 23 nines as 999 (attack run,
    // docs/attack-run.md), so the 999 octets after it were taken as the
    // chunk and what followed as commands.
    assert_eq!(c.cmd("RCPT TO:<u@contoso.com>").code, 250);
    c.send(b"BDAT 99999999999999999999999 LAST\r\n");
    c.send(&[b'x'; 999]);
    c.send(b"\r\nNOOP\r\n");
    let r = c.read_reply();
    assert_eq!(r.code, 501, "{r}");
    assert!(r.text().contains("5.5.4 Syntax: BDAT chunk-size [LAST]"), "{r}");
}

#[test]
fn too_many_recipients_get_452() {
    let s = setup(Options {
        max_recipients: 3,
        ..Options::default()
    });
    let mut c = Client::connect_tls(s.gw.smtp, &s.pki.ca, None);
    assert_eq!(c.cmd("MAIL FROM:<a@example.org>").code, 250);
    for i in 0..3 {
        assert_eq!(c.cmd(&format!("RCPT TO:<u{i}@contoso.com>")).code, 250);
    }
    let r = c.cmd("RCPT TO:<u3@contoso.com>");
    assert_eq!((r.code, r.text().starts_with("4.5.3")), (452, true), "{r}");
}

#[test]
fn connections_over_the_limits_are_accepted_then_refused_with_421() {
    let s = setup(Options {
        max_connections: 3,
        max_connections_per_ip: 2,
        ..Options::default()
    });
    let (_a, ga) = Client::connect(s.gw.smtp);
    let (_b, gb) = Client::connect(s.gw.smtp);
    assert_eq!((ga.code, gb.code), (220, 220));
    let (mut c, gc) = Client::connect(s.gw.smtp);
    assert_eq!(gc.code, 421, "third from the same IP: {gc}");
    assert!(c.is_closed());
    // Connecting from other loopback addresses plays other clients: the total limit applies.
    let (_third, g3) = connect_from("127.0.0.9", s.gw.smtp);
    assert_eq!(g3.code, 220, "third in total is still under max_connections");
    let (_, g4) = connect_from("127.0.0.10", s.gw.smtp);
    assert_eq!(g4.code, 421, "fourth in total: {g4}");
    drop(_a);
    // Once a slot frees up, new connections are served again.
    assert!(
        support::wait_for(Duration::from_secs(5), || {
            let (_, g) = Client::connect(s.gw.smtp);
            (g.code == 220).then_some(())
        })
        .is_some()
    );
}

/// Connects from a given loopback source address (std has no bind-before-connect,
/// so a tokio socket on a tiny runtime does it).
fn connect_from(source: &str, to: std::net::SocketAddr) -> (Client, support::smtp::Reply) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let stream = rt.block_on(async {
        let s = tokio::net::TcpSocket::new_v4().unwrap();
        s.bind(std::net::SocketAddr::new(source.parse().unwrap(), 0)).unwrap();
        s.connect(to).await.unwrap().into_std().unwrap()
    });
    stream.set_nonblocking(false).unwrap();
    Client::from_stream(stream)
}

#[test]
fn an_over_long_line_gets_500_and_the_session_goes_on() {
    let s = setup(Options::default());
    let mut c = Client::connect_tls(s.gw.smtp, &s.pki.ca, None);
    let long = format!("NOOP {}", "x".repeat(10_000));
    let r = c.cmd(&long);
    assert_eq!((r.code, r.text().starts_with("5.5.2")), (500, true), "{r}");
    assert_eq!(c.cmd("NOOP").code, 250);
    // The same when the long line arrives in small pieces.
    for chunk in format!("MAIL FROM:<{}@example.org>\r\n", "y".repeat(8000))
        .as_bytes()
        .chunks(1000)
    {
        c.send(chunk);
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(c.read_reply().code, 500);
    assert_eq!(c.cmd("NOOP").code, 250);
}

#[test]
fn too_many_bad_commands_close_the_session() {
    let s = setup(Options::default());
    let mut c = Client::connect_tls(s.gw.smtp, &s.pki.ca, None);
    let mut last = None;
    for _ in 0..10 {
        last = c.try_cmd("BOGUS");
        if last.as_ref().is_some_and(|r| r.code == 421) || last.is_none() {
            break;
        }
    }
    // The tenth error is answered with 500 followed by 421.
    let closing = match last {
        Some(r) if r.code == 500 => c.try_read_reply(),
        other => other,
    };
    assert_eq!(closing.map(|r| r.code), Some(421));
    assert!(c.is_closed());
}

#[test]
fn a_client_that_stops_talking_is_timed_out() {
    let s = setup(Options {
        command_timeout: "1s".into(),
        ..Options::default()
    });
    let (mut c, g) = Client::connect(s.gw.smtp);
    assert_eq!(g.code, 220);
    assert_eq!(c.cmd("EHLO slow.test").code, 250);
    // Say nothing: the gateway answers 421 and closes.
    let r = c.read_reply();
    assert_eq!((r.code, r.text().starts_with("4.4.2")), (421, true), "{r}");
    assert!(c.is_closed());
    assert!(s.gw.wait_log("client stopped talking", Duration::from_secs(5)));
}

#[test]
fn check_config_prints_every_mistake() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(
        &path,
        r#"
[server]
listen = ["127.0.0.1:2525"]
state_dir = "state"
max_recipents = 10

[tls]
generate = true

[delivery]
mode = "queued"

[[tenant]]
portal = "contoso"
domains = ["contoso.com"]
deliver_to = ["mx.contoso.com:notaport"]
"#,
    )
    .unwrap();
    let out = std::process::Command::new(support::gateway::binary())
        .args(["check-config", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("server.max_recipents: unknown key"), "{err}");
    assert!(
        err.contains("delivery.mode: must be one of \"queue\", \"proxy\", found \"queued\""),
        "{err}"
    );
    assert!(err.contains("tenant[0].deliver_to[0]: expected \"host:port\""), "{err}");
    assert!(err.contains("3 problem(s)"), "{err}");

    std::fs::write(
        &path,
        "[server]\nlisten = [\"127.0.0.1:0\"]\nstate_dir = \"state\"\n[tls]\ngenerate = true\n\
         [[tenant]]\nportal = \"contoso\"\ndomains = [\"contoso.com\"]\ndeliver_to = [\"127.0.0.1:2526\"]\n",
    )
    .unwrap();
    let out = std::process::Command::new(support::gateway::binary())
        .args(["check-config", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains(": ok"), "{stdout}");
    // A tenant without tenant_id loads, with a warning saying what it weakens.
    assert!(
        stdout.contains("warning: tenant[0] (contoso): no tenant_id"),
        "{stdout}"
    );
    // And the daemon refuses to start on a bad config, before binding anything.
    std::fs::write(&path, "[server]\nlisten = [\"127.0.0.1:0\"]\nbogus = 1\n").unwrap();
    let out = std::process::Command::new(support::gateway::binary())
        .args(["run", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("server.bogus: unknown key"));
}

#[test]
fn running_out_of_file_descriptors_never_stops_the_listener() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(&dir.path().join("pki"));
    let server = pki.leaf("gateway", &["localhost", "127.0.0.1"]);
    let config = dir.path().join("gateway.toml");
    std::fs::write(&config, config_text(dir.path(), &pki, &server, &Options::default())).unwrap();
    // Few descriptors: the accept loop hits EMFILE long before 200 connections.
    let gw = Gateway::spawn_limited(dir.path(), &config, &[], Some(64));
    let mut held = Vec::new();
    for _ in 0..100 {
        if let Ok(s) = std::net::TcpStream::connect_timeout(&gw.smtp, Duration::from_secs(2)) {
            held.push(s);
        }
    }
    assert!(
        gw.wait_log("accept failed; retrying", Duration::from_secs(10)),
        "EMFILE was hit and logged"
    );
    // Clients beyond the descriptors are answered 421, not left in the backlog.
    assert!(gw.wait_log(
        "out of file descriptors: connection refused with 421",
        Duration::from_secs(10)
    ));
    drop(held);
    // Descriptors free again: the same listener serves new clients.
    let served = support::wait_for(Duration::from_secs(20), || {
        let (_, greeting) = Client::connect(gw.smtp);
        (greeting.code == 220).then_some(())
    });
    assert!(served.is_some(), "the listener kept running: {}", gw.log());
}

/// A small tmpfs, unmounted on drop.
struct SmallFs(std::path::PathBuf);

impl SmallFs {
    fn mount(path: &std::path::Path, size: &str) -> SmallFs {
        std::fs::create_dir_all(path).unwrap();
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(path)
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        assert!(ok, "this test mounts a small tmpfs to fill the spool: it needs root");
        SmallFs(path.to_path_buf())
    }
}

impl Drop for SmallFs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[test]
fn a_full_spool_answers_452_and_acknowledges_nothing_it_could_not_store() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(&dir.path().join("pki"));
    let server = pki.leaf("gateway", &["localhost", "127.0.0.1"]);
    let state = dir.path().join("small");
    let _fs = SmallFs::mount(&state, "2m");
    let mut text = config_text(
        dir.path(),
        &pki,
        &server,
        &Options {
            retry: vec!["1h".into()],
            ..Options::default()
        },
    );
    text = text.replace(
        &format!("state_dir = \"{}\"", dir.path().join("state").display()),
        &format!("state_dir = \"{}\"", state.display()),
    );
    let gw = Gateway::start_with_text(dir.path(), &text);
    // The 32 MiB commit log does not fit: the gateway says so, leaves no
    // partial file taking the queue's space, and commits by the direct path.
    assert!(gw.log().contains("no commit log"), "{}", gw.log());
    assert!(!state.join("queue/commit.log.new").exists() && !state.join("queue/commit.log").exists());
    let mut c = Client::connect_tls(gw.smtp, &pki.ca, None);
    let mut acknowledged = 0;
    let mut full = None;
    for _ in 0..20 {
        let r = c.send_data("a@example.org", &["u@contoso.com"], &big(300_000));
        if r.code == 250 {
            acknowledged += 1;
        } else {
            full = Some(r);
            break;
        }
    }
    let r = full.expect("the spool filled up");
    assert_eq!((r.code, r.text().starts_with("4.3.1")), (452, true), "{r}");
    assert!(acknowledged >= 1);
    // Every 250 is in the spool, complete.
    let (_, list, _) = gw.cli(&["queue", "list"]);
    assert!(list.contains(&format!("{acknowledged} message(s)")), "{list}");
    // A body spilled to disk while it arrives hits the same wall.
    assert_eq!(c.cmd("NOOP").code, 250, "the session goes on");
    let r = c.send_data("a@example.org", &["u@contoso.com"], &big(3_000_000));
    assert_eq!(r.code, 452, "{r}");
    let incoming = std::fs::read_dir(state.join("queue/incoming")).unwrap().count();
    assert_eq!(incoming, 0, "no partial file is left behind");
}
