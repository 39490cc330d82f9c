//! One gateway per state directory (issue #10, item 5): a second
//! `exogate run` on a live state dir exits with 75 before it touches
//! anything, so the running gateway's in-progress transaction still ends in
//! 250 and its files stay; the maintenance commands that change files go
//! through the running gateway, or take the lock when none runs.

mod support;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use support::gateway::{Gateway, Options, config_text};
use support::pki::Pki;
use support::smtp::Client;

fn files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

#[test]
fn a_second_instance_leaves_the_running_gateway_alone() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(&dir.path().join("pki"));
    let server = pki.leaf("gateway", &["localhost", "127.0.0.1"]);
    let opts = Options {
        // Unreachable: what is accepted stays queued.
        deliver_to: vec![format!("127.0.0.1:{}", support::free_port())],
        retry: vec!["1h".into()],
        server_extra: "spill_threshold = \"64KiB\"".into(),
        ..Options::default()
    };
    let mut gw = Gateway::start_with_text(dir.path(), &config_text(dir.path(), &pki, &server, &opts));
    let state = dir.path().join("state");
    let queue = state.join("queue");

    // One message queued, a second one mid-transaction with its body spilled to disk.
    let mut c = Client::connect_tls(gw.smtp, &pki.ca, None);
    let first = c.send_data(
        "a@example.org",
        &["user@contoso.com"],
        b"From: a@example.org\r\nSubject: queued\r\n\r\nqueued\r\n",
    );
    assert_eq!(first.code, 250, "{first}");
    let first_id = first.text().rsplit(' ').next().unwrap().to_string();
    let mut c2 = Client::connect_tls(gw.smtp, &pki.ca, None);
    assert_eq!(c2.cmd("MAIL FROM:<b@example.org>").code, 250);
    assert_eq!(c2.cmd("RCPT TO:<user@contoso.com>").code, 250);
    assert_eq!(c2.cmd("DATA").code, 354);
    c2.send(b"From: b@example.org\r\nSubject: in flight\r\n\r\n");
    for i in 0..2000 {
        c2.send(format!("line {i:04} of a body larger than the spill threshold\r\n").as_bytes());
    }
    let incoming = support::wait_for(Duration::from_secs(10), || {
        let f = files(&queue.join("incoming"));
        (!f.is_empty()).then_some(f)
    })
    .expect("the body is spilled to queue/incoming");
    let active = files(&queue.join("active"));
    assert!(active.iter().any(|f| f.starts_with(&first_id)), "{active:?}");

    // The same configuration started again.
    // (Before the fix it started on another port 0 after its recovery: it is
    // stopped here rather than left running.)
    let mut second = Command::new(support::gateway::binary())
        .args(["run", "--config"])
        .arg(&gw.config)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let status = support::wait_for(Duration::from_secs(20), || second.try_wait().unwrap());
    if status.is_none() {
        let _ = second.kill();
    }
    let out = second.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(status.and_then(|s| s.code()), Some(75), "exit code; stderr:\n{stderr}");
    assert!(
        stderr.contains("exogate.lock is locked by another exogate") && stderr.contains(&format!("(pid {})", gw.pid())),
        "{stderr}"
    );
    assert_eq!(files(&queue.join("incoming")), incoming, "in-progress files untouched");
    assert_eq!(files(&queue.join("active")), active, "queued files untouched");

    // The transaction in flight still completes.
    c2.send(b".\r\n");
    let second = c2.read_reply();
    assert_eq!(second.code, 250, "{second}");
    let second_id = second.text().rsplit(' ').next().unwrap().to_string();
    let (code, list, _) = gw.cli(&["queue", "list"]);
    assert_eq!(code, 0);
    assert!(list.contains(&first_id) && list.contains(&second_id), "{list}");

    // While the gateway runs, a change goes through it.
    let (code, out, err) = gw.cli(&["queue", "delete", &first_id]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains(&format!("deleted {first_id}"))
            && out.ends_with("1 message(s) deleted (through the running gateway)\n"),
        "{out}"
    );
    assert!(gw.wait_log("control request", Duration::from_secs(5)));
    let (_, list, _) = gw.cli(&["queue", "list"]);
    assert!(!list.contains(&first_id) && list.contains(&second_id), "{list}");
    let (code, _, err) = gw.cli(&["queue", "delete", "../../etc/passwd"]);
    assert_ne!(code, 0);
    assert!(err.contains("is not a queue id"), "{err}");

    // Stopped: the command takes the lock itself.
    gw.signal(libc::SIGTERM);
    assert_eq!(gw.wait_exit(Duration::from_secs(30)), Some(0));
    let (code, out, err) = gw.cli(&["queue", "delete", &second_id]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains(&format!("deleted {second_id}")) && out.ends_with("1 message(s) deleted\n"),
        "{out}"
    );
}
