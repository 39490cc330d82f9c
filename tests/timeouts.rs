//! Slow clients cannot hold a connection slot (issue #10.6): a command line
//! has a deadline (`server.command_timeout`) that dribbled bytes do not
//! extend, and a body must keep `server.min_data_rate` after
//! `min_data_rate_grace`. Both end with 421 4.4.2 long before
//! `session_timeout`. The slow client is Python's socket module, writing one
//! byte at a time. Also here: a key-file error names `tls.key`.

mod support;

use std::process::Command;

use support::gateway::{Gateway, Options, config_text};
use support::pki::Pki;

/// Connects in plain text and dribbles `slow` one byte every `interval`
/// seconds after sending `fast`, for at most `cap` seconds; prints what the
/// gateway answered last and whether it closed the connection.
const DRIBBLE: &str = r#"
import socket, sys, time
port, fast, slow, interval, cap = int(sys.argv[1]), sys.argv[2], sys.argv[3], float(sys.argv[4]), float(sys.argv[5])
s = socket.create_connection(("127.0.0.1", port), timeout=5)
f = s.makefile("rb")
def reply():
    lines = []
    while True:
        l = f.readline().decode()
        lines.append(l.strip())
        if len(l) < 4 or l[3] != "-":
            return lines
reply()
for line in fast.split("|"):
    if line:
        s.sendall((line + "\r\n").encode())
        reply()
start = time.time()
s.settimeout(interval)
got = ""
for ch in (slow * 1000):
    if time.time() - start > cap:
        break
    try:
        s.sendall(ch.encode())
    except OSError:
        break
    try:
        data = s.recv(4096)
        if data:
            got += data.decode()
            if "421" in got:
                break
        else:
            break
    except socket.timeout:
        pass
print("after %.0f s: %s" % (time.time() - start, got.strip()))
"#;

fn gateway(server_extra: &str) -> (tempfile::TempDir, Gateway) {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(&dir.path().join("pki"));
    let server = pki.leaf("gateway", &["localhost", "127.0.0.1"]);
    let opts = Options {
        tls_require: false,
        command_timeout: "3s".into(),
        server_extra: format!("session_timeout = \"30m\"\n{server_extra}"),
        ..Options::default()
    };
    let gw_dir = dir.path().join("gw");
    std::fs::create_dir_all(&gw_dir).unwrap();
    let gw = Gateway::start_with_text(&gw_dir, &config_text(&gw_dir, &pki, &server, &opts));
    (dir, gw)
}

#[test]
fn a_command_dribbled_a_byte_at_a_time_meets_its_deadline() {
    let (_dir, gw) = gateway("");
    // One byte a second never lets a 3 s idle timer fire; the deadline does.
    let out = support::python(DRIBBLE, &[&gw.smtp.port().to_string(), "", "NOOP NOOP ", "1", "40"]);
    assert!(out.contains("421 4.4.2 Timeout"), "{out}\n{}", gw.log());
    let secs: u64 = out.split_whitespace().nth(1).unwrap().parse().unwrap();
    assert!(secs < 20, "closed only after {secs} s: {out}");
    assert!(gw.log().contains("no complete command within command_timeout"));
}

#[test]
fn a_body_slower_than_min_data_rate_is_cut() {
    let (_dir, gw) = gateway("min_data_rate = 1000\nmin_data_rate_grace = \"2s\"\n");
    // Two bytes a second after DATA: within data_timeout (10 min) every time.
    let out = support::python(
        DRIBBLE,
        &[
            &gw.smtp.port().to_string(),
            "EHLO slow.example|MAIL FROM:<a@example.org>|RCPT TO:<u@contoso.com>|DATA",
            "x",
            "0.5",
            "40",
        ],
    );
    assert!(out.contains("421 4.4.2 Data rate too low"), "{out}\n{}", gw.log());
    let secs: u64 = out.split_whitespace().nth(1).unwrap().parse().unwrap();
    assert!(secs < 20, "closed only after {secs} s: {out}");
}

#[test]
fn an_unreadable_key_file_is_reported_under_tls_key() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(&dir.path().join("pki"));
    let mut server = pki.leaf("gateway", &["localhost"]);
    // A directory where the key should be: it exists, but cannot be read as a file.
    let key_dir = dir.path().join("key.pem");
    std::fs::create_dir_all(&key_dir).unwrap();
    server.key = key_dir;
    let gw_dir = dir.path().join("gw");
    std::fs::create_dir_all(&gw_dir).unwrap();
    let config = gw_dir.join("gateway.toml");
    std::fs::write(&config, config_text(&gw_dir, &pki, &server, &Options::default())).unwrap();
    let out = Command::new(support::gateway::binary())
        .args(["check-config", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.status.success(), "{text}");
    assert!(text.contains("tls.key: cannot read"), "{text}");
    assert!(!text.contains("tls.cert"), "{text}");
}
