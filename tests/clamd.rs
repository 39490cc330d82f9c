//! The `malware` check against a real ClamAV `clamd` (Debian package
//! clamav-daemon) started for the test with a local signature database: over
//! TCP and over a unix socket, a detection, a clean message, clamd's own size
//! limit, and clamd stopped. The EICAR string is assembled at run time from
//! two halves, so the repository never contains it.

#[path = "support/clamd.rs"]
mod clamd_support;

use std::path::PathBuf;
use std::sync::Arc;

use clamd_support::{Clamd, MARKER};
use exogate::config::reader::{Problems, Section};
use exogate::config::tenant::{Destination, Tenant};
use exogate::message::envelope::{Direction, Envelope, SessionFacts};
use exogate::message::verdict::{Action, Finding};
use exogate::scan::check::{BuildContext, Check, CheckError, ScanInput};
use mail_builder::MessageBuilder;
use mail_parser::MessageParser;

fn eicar() -> Vec<u8> {
    let head = "X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STAN";
    let tail = "DARD-ANTIVIRUS-TEST-FILE!$H+H*";
    format!("{head}{tail}").into_bytes()
}

fn message(attachment: Option<(&str, Vec<u8>)>) -> Vec<u8> {
    let mut b = MessageBuilder::new()
        .from(("Alice Example", "alice@example.org"))
        .to("bob@contoso.com")
        .subject("Quarterly figures")
        .text_body("Hello Bob,\n\nthe figures are attached.\n\nAlice\n");
    if let Some((name, data)) = attachment {
        b = b.attachment("application/octet-stream", name.to_string(), data);
    }
    b.write_to_vec().unwrap()
}

fn check(options: &str) -> Arc<dyn Check> {
    let table: toml::Table = options.parse().unwrap();
    let problems = Problems::default();
    let check = {
        let section = Section::root(&table, &problems);
        let cx = BuildContext::new(PathBuf::from("/"));
        exogate::checks::build("malware", &section, &cx)
    };
    let problems = problems.into_vec();
    assert!(problems.is_empty(), "{problems:?}");
    check.expect("malware check builds")
}

async fn scan(check: &dyn Check, raw: &[u8]) -> Result<Vec<Finding>, CheckError> {
    let message = MessageParser::default().parse(raw).expect("message parses");
    let view = exogate::scan::view::View::new(&message, false);
    let envelope = Envelope {
        mail_from: "alice@example.org".parse().unwrap(),
        ..Envelope::default()
    };
    let session = SessionFacts {
        session_id: String::new(),
        client_ip: "40.92.1.1".parse().unwrap(),
        client_port: 40000,
        helo: "mail.protection.outlook.com".into(),
        tls: None,
    };
    let tenant = Tenant::new("contoso", &["contoso.com"], Destination::Mx);
    let input = ScanInput {
        raw,
        message: &message,
        view: &view,
        envelope: &envelope,
        session: &session,
        tenant: &tenant,
        direction: Direction::Inbound,
        truncated: false,
        exo_session: false,
        queue_id: "TESTQUEUEID",
        auth: None,
    };
    check.scan(&input).await
}

fn expect_found(result: Result<Vec<Finding>, CheckError>, signature: &str, clamd: &Clamd) -> Finding {
    let found = result.unwrap_or_else(|e| panic!("check failed: {e}\n{}", clamd.logs()));
    assert_eq!(found.len(), 1, "{found:?}");
    let f = found.into_iter().next().unwrap();
    assert!(f.reason.contains(signature), "expected {signature} in {:?}", f.reason);
    assert_eq!(f.force, Some(Action::Quarantine));
    f
}

#[tokio::test]
async fn real_clamd_over_tcp_and_unix_socket() {
    let mut clamd = Clamd::start();
    let endpoints = [clamd.tcp(), clamd.socket.display().to_string()];
    let infected = message(Some(("eicar.com", eicar())));
    let marked = message(Some(("notes.txt", format!("see {MARKER} here").into_bytes())));
    let clean = message(Some(("figures.csv", b"quarter,revenue\nQ1,100\nQ2,120\n".to_vec())));

    for endpoint in &endpoints {
        // Built-in EICAR off: whatever is found here, clamd found.
        let only_clamd = check(&format!("clamd = \"{endpoint}\"\neicar = false"));
        expect_found(scan(&*only_clamd, &infected).await, "Gateway.Test.EICAR-", &clamd);
        let f = expect_found(
            scan(&*only_clamd, &marked).await,
            "Gateway.Test.Marker.UNOFFICIAL",
            &clamd,
        );
        assert_eq!(f.tag, "virus");
        let clean_result = scan(&*only_clamd, &clean).await;
        assert!(
            clean_result.as_ref().is_ok_and(|f| f.is_empty()),
            "{clean_result:?}\n{}",
            clamd.logs()
        );
        // The default configuration (built-in EICAR on) with clamd.
        let both = check(&format!("clamd = \"{endpoint}\""));
        expect_found(scan(&*both, &infected).await, "EICAR", &clamd);
        assert!(scan(&*both, &clean).await.unwrap().is_empty());
    }

    clamd.stop();
    for endpoint in &endpoints {
        let c = check(&format!("clamd = \"{endpoint}\"\nconnect_timeout = \"2s\""));
        match scan(&*c, &clean).await {
            Err(CheckError::Unavailable(e)) => assert!(e.contains("clamd"), "{e}"),
            other => panic!("clamd is stopped, expected the check to fail, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn real_clamd_size_limit_fails_the_check_unless_max_scan_size_skips_it() {
    let clamd = Clamd::start_with_stream_max("1M");
    let big: Vec<u8> = (0..2 * 1024 * 1024u32)
        .map(|i| b"abcdefghij\n"[(i % 11) as usize])
        .collect();
    let raw = message(Some(("export.txt", big)));

    let c = check(&format!("clamd = \"{}\"", clamd.tcp()));
    match scan(&*c, &raw).await {
        Err(CheckError::Protocol(e)) => assert!(e.contains("size limit"), "{e}"),
        other => panic!("expected clamd's size limit error, got {other:?}\n{}", clamd.logs()),
    }

    // Matching max_scan_size to clamd's StreamMaxLength skips instead of failing.
    let c = check(&format!("clamd = \"{}\"\nmax_scan_size = \"1MiB\"", clamd.tcp()));
    assert!(scan(&*c, &raw).await.unwrap().is_empty());
}
