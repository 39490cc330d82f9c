//! The log never holds up mail: with nobody reading the gateway's standard
//! error (a stuck journald, a full pipe), sessions are answered and messages
//! delivered; lines that fit the queue come out once the reader is back, and
//! lines past it are dropped, counted in /metrics and reported in the log;
//! lines that cannot be written (the reader gone) are counted the same way;
//! and the gateway still stops when told to.

mod support;

use std::time::Duration;

use support::gateway::{Options, Reader};
use support::smtp::Client;
use support::stack::Stack;

/// Sends `n` messages over one TLS session; each must get its 250.
fn send(stack: &Stack, gw: &support::gateway::Gateway, n: usize) {
    let mut c = Client::connect_tls(gw.smtp, &stack.pki.ca, None);
    for i in 0..n {
        let m = support::crlf(&format!(
            "From: a@example.org\nSubject: m{i}\nMessage-ID: <log{i}@x>\n\nhello {i}\n"
        ));
        let r = c.send_data("a@example.org", &["user@contoso.com"], &m);
        assert_eq!(r.code, 250, "message {i}: {r}");
    }
    c.cmd("QUIT");
}

/// Sets what happens to the gateway's output, once the admin listener's
/// address (which the harness reads from the log, a moment after the SMTP
/// one) has been read.
fn set_reader(gw: &support::gateway::Gateway, reader: Reader) {
    assert_eq!(gw.http_get("/healthz").0, 200);
    gw.set_log_reader(reader);
}

fn dropped(gw: &support::gateway::Gateway) -> u64 {
    let (_, metrics) = gw.http_get("/metrics");
    let line = metrics
        .lines()
        .find(|l| l.starts_with("exogate_log_lines_dropped_total "))
        .unwrap_or_else(|| panic!("no exogate_log_lines_dropped_total in\n{metrics}"));
    line.rsplit(' ').next().unwrap().parse().unwrap()
}

/// More than a pipe (64 KiB) and the reader's buffer hold: at debug level each
/// message logs over a KiB, so a gateway that wrote its lines itself would
/// block on the full pipe long before the last message.
const MESSAGES: usize = 200;

#[test]
fn with_its_reader_stuck_the_gateway_still_delivers_and_the_lines_come_out_later() {
    let stack = Stack::new();
    let gw = stack.gateway(Options::default());
    set_reader(&gw, Reader::Paused);
    let logged_before = gw.log().len();

    send(&stack, &gw, MESSAGES);
    stack.downstream.wait_messages(MESSAGES, Duration::from_secs(60));
    assert_eq!(dropped(&gw), 0, "the default queue holds this much");
    let stuck = gw.log().len() - logged_before;
    assert!(stuck < 10_000, "the reader was stuck, yet {stuck} bytes were read");

    gw.set_log_reader(Reader::Reading);
    assert!(
        support::wait_for(Duration::from_secs(30), || {
            (gw.count_log("message fate known") >= MESSAGES).then_some(())
        })
        .is_some(),
        "every message's fate line comes out once the reader is back; {} did",
        gw.count_log("message fate known")
    );
    let written = gw.log().len() - logged_before;
    assert!(
        written > 100_000,
        "the test needs more log than a pipe holds; it wrote {written} bytes"
    );
}

#[test]
fn past_the_queue_lines_are_dropped_counted_and_reported_not_waited_for() {
    let stack = Stack::new();
    let gw = stack.gateway(Options {
        log_extra: "queue_lines = 64\n".into(),
        ..Options::default()
    });
    set_reader(&gw, Reader::Paused);

    send(&stack, &gw, MESSAGES);
    stack.downstream.wait_messages(MESSAGES, Duration::from_secs(60));
    let lost = dropped(&gw);
    assert!(lost > 0, "64 queued lines cannot hold {MESSAGES} messages' lines");

    gw.set_log_reader(Reader::Reading);
    assert!(
        gw.wait_log("log lines were dropped", Duration::from_secs(30)),
        "the drop is reported once the reader is back:\n{}",
        gw.log()
    );
    let report = gw
        .log()
        .lines()
        .rfind(|l| l.contains("log lines were dropped"))
        .unwrap()
        .to_string();
    let total: u64 = report
        .split("dropped_total=")
        .nth(1)
        .and_then(|t| t.split_whitespace().next())
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| panic!("no dropped_total in {report}"));
    assert!(
        total >= lost,
        "the report ({total}) counts what /metrics counted ({lost})"
    );
}

#[test]
fn with_its_reader_gone_the_gateway_still_delivers_and_counts_the_lines_it_could_not_write() {
    let stack = Stack::new();
    let gw = stack.gateway(Options::default());
    // As when journald restarts: the stream closes, and every write fails (EPIPE).
    set_reader(&gw, Reader::Closed);
    send(&stack, &gw, 1);
    stack.downstream.wait_messages(1, Duration::from_secs(60));
    assert!(
        support::wait_for(Duration::from_secs(10), || (dropped(&gw) > 0).then_some(())).is_some(),
        "a line that cannot be written is counted"
    );

    send(&stack, &gw, MESSAGES);
    stack.downstream.wait_messages(MESSAGES + 1, Duration::from_secs(60));
    assert!(
        dropped(&gw) >= MESSAGES as u64,
        "every message's lines are counted ({} for {MESSAGES} messages)",
        dropped(&gw)
    );
}

#[test]
fn with_its_reader_stuck_and_the_queue_full_the_gateway_still_stops_when_told() {
    let stack = Stack::new();
    let mut gw = stack.gateway(Options {
        log_extra: "queue_lines = 64\n".into(),
        ..Options::default()
    });
    set_reader(&gw, Reader::Paused);
    send(&stack, &gw, MESSAGES);
    stack.downstream.wait_messages(MESSAGES, Duration::from_secs(60));
    assert!(dropped(&gw) > 0, "the queue filled up");

    // Standard output is the same stuck stream (see the harness), as the
    // journal is under systemd: whatever the exit writes must not wait for it.
    gw.signal(libc::SIGTERM);
    let code = gw.wait_exit(Duration::from_secs(30));
    gw.set_log_reader(Reader::Reading);
    assert_eq!(code, Some(0), "a SIGTERM stops the gateway despite its stuck log");
}

#[test]
fn a_reload_that_changes_the_log_settings_says_they_wait_for_a_restart() {
    let stack = Stack::new();
    let gw = stack.gateway(Options::default());
    let text = std::fs::read_to_string(&gw.config).unwrap();
    let changed = text.replace("[log]\n", "[log]\nqueue_lines = 128\n");
    assert_ne!(changed, text, "the harness's config has a [log] table");

    // A reload with the log unchanged says nothing about it.
    gw.signal(libc::SIGHUP);
    assert!(gw.wait_log("configuration reloaded", Duration::from_secs(10)));
    std::fs::write(&gw.config, changed).unwrap();
    gw.signal(libc::SIGHUP);
    assert!(
        support::wait_for(Duration::from_secs(10), || {
            (gw.count_log("configuration reloaded") == 2).then_some(())
        })
        .is_some(),
        "{}",
        gw.log()
    );
    assert_eq!(
        gw.count_log("log changes (level, format, queue_lines) take effect only after a restart"),
        1,
        "said once, for the reload that changed them:\n{}",
        gw.log()
    );
}
