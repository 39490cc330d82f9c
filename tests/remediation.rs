//! Post-delivery remediation against the Microsoft 365 stand-in
//! (tests/support/m365_standin.py: token endpoint, Graph and EWS checking
//! every request against Microsoft's documented shapes). The client is the
//! production code with base URLs, trust roots and source address from
//! configuration; the stand-in records each request's peer address and
//! User-Agent.
//!
//! End to end: a journaled EICAR message to three mailboxes gives a
//! quarantine verdict, and the gateway moves it out of the three mailboxes
//! (from 127.0.0.2, with its User-Agent, one token); `exogate remediate` then
//! deletes it; the secret never reaches a log. Through the library: a token
//! reused until it expires, `429` with `Retry-After` waited out, a failing
//! mailbox retried and reported, EWS with a certificate assertion, the
//! re-scan hook.

mod support;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use exogate::config::remediation::{AssertionAlg, Credential, Method, RemediationAction, RemediationConfig, Secret};
use exogate::remediate::{Job, Outcome, Remediator, Trigger};
use serde_json::{Value, json};
use support::clamd::Clamd;
use support::gateway::{Gateway, Options, config_text};
use support::m365::{self, EGRESS_IP, M365};
use support::stack::Stack;

const TENANT_ID: &str = "4f1e7c52-93a8-4d26-b0e1-6c2a9d8b3f70";
const CLIENT: &str = "0b5e6c3a-2f41-4d8e-9c7a-5e1f2d3c4b6a";
const SECRET: &str = "Qx8~remediation-test-secret.value_0123456789";
const UA: &str = "exogate-remediation/test (+https://gw.test/remediation)";
const JOURNAL: &str = "journal@journal.exogate.example";
/// A Message-ID with a '+' and a quote: both must survive the OData filter.
const IMID: &str = "<CAF+q1w2'e3@mail.example>";
const BOXES: [&str; 3] = ["alice@contoso.com", "bob@contoso.com", "carol@contoso.com"];

fn standin_config(imid: &str, boxes: &[&str], certificates: &[&Path], lifetime: u64) -> Value {
    let mailboxes: serde_json::Map<String, Value> = boxes
        .iter()
        .map(|b| {
            (
                b.to_string(),
                json!({"messages": [{"internetMessageId": imid, "folder": "inbox", "subject": "x"}]}),
            )
        })
        .collect();
    json!({
        "token_lifetime": lifetime,
        "expect_user_agent": UA,
        "tenants": {TENANT_ID: {
            "domains": ["contoso.com"],
            "apps": {CLIENT: {
                "secret": SECRET,
                "certificates": certificates.iter().map(|p| p.to_str().unwrap()).collect::<Vec<_>>(),
                "graph_roles": ["Mail.ReadWrite"],
                "ews_roles": ["full_access_as_app"],
                "mailboxes": null
            }},
            "mailboxes": mailboxes
        }}
    })
}

fn config(
    m: &M365,
    method: Method,
    credential: Credential,
    action: RemediationAction,
    retry: &[u64],
) -> RemediationConfig {
    RemediationConfig {
        method,
        tenant_id: TENANT_ID.into(),
        client_id: CLIENT.into(),
        credential,
        token_base_url: m.token_base_url(),
        graph_base_url: m.graph_base_url(),
        ews_url: m.ews_url(),
        ews_scope: "https://outlook.office365.com/.default".into(),
        ews_version: "Exchange2013_SP1".into(),
        ca: Some(m.ca.clone()),
        source_ip: Some(EGRESS_IP.parse().unwrap()),
        user_agent: UA.into(),
        action,
        folder: (action == RemediationAction::Move).then(|| "junkemail".to_string()),
        on_verdicts: vec!["quarantine".into(), "reject".into()],
        connect_timeout: Duration::from_secs(5),
        request_timeout: Duration::from_secs(10),
        retry: retry.iter().map(|ms| Duration::from_millis(*ms)).collect(),
        max_retry_after: Duration::from_secs(5),
        concurrency: 3,
        token_refresh_before: Duration::from_secs(1),
    }
}

fn job(action: RemediationAction, boxes: &[&str]) -> Job {
    Job {
        internet_message_id: IMID.into(),
        network_message_id: Some("75089f9f-f202-5eb2-be3b-15f27dec2837".into()),
        mailboxes: boxes.iter().map(|b| b.to_string()).collect(),
        action,
        trigger: Trigger::Admin("test".into()),
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn outcome_of<'a>(
    results: &'a [exogate::remediate::MailboxResult],
    mailbox: &str,
) -> &'a exogate::remediate::MailboxResult {
    results.iter().find(|r| r.mailbox == mailbox).unwrap()
}

fn every_request_from_the_egress_ip_with_the_user_agent(m: &M365) {
    let requests = m.requests();
    assert!(!requests.is_empty());
    for r in &requests {
        assert_eq!(r["peer_ip"], EGRESS_IP, "{r:#}");
        assert_eq!(r["user_agent"], UA, "{r:#}");
        assert!(r.get("error").is_none(), "the stand-in refused a request: {r:#}");
    }
}

#[test]
fn a_token_is_reused_until_it_expires_and_retry_after_is_honoured() {
    assert!(
        m365::egress_ip_usable(),
        "this test binds {EGRESS_IP} as its source address"
    );
    // Tokens live 8 s; the client renews 1 s before expiry: 7 s of reuse.
    let m = M365::start(&standin_config(IMID, &BOXES, &[], 8));
    let r = Remediator::new(
        "contoso",
        config(
            &m,
            Method::Graph,
            Credential::Secret(Secret::new(SECRET)),
            RemediationAction::Move,
            &[200],
        ),
    )
    .unwrap();
    let rt = runtime();

    let started = std::time::Instant::now();
    let results = rt.block_on(r.run(&job(RemediationAction::Move, &BOXES)));
    // A second job while the token is valid reuses it.
    let _ = rt.block_on(r.run(&job(RemediationAction::Move, &BOXES[..1])));
    assert!(
        started.elapsed() < Duration::from_secs(7),
        "the machine is too slow for this check"
    );
    assert_eq!(
        m.requests_for("token.client_secret").len(),
        1,
        "one token for every call while it is valid"
    );
    for b in BOXES {
        assert_eq!(
            outcome_of(&results, b).outcome,
            Outcome::Moved {
                folder: "junkemail".into(),
                count: 1
            },
            "{b}"
        );
        assert_eq!(m.folder_of(b, IMID).as_deref(), Some("junkemail"));
    }
    assert_eq!(m.requests_for("graph.list").len(), 4);
    let moves = m.requests_for("graph.move");
    assert_eq!(moves.len(), 4);
    assert!(moves.iter().all(|r| r["destination"] == "junkemail"));
    // The filter arrived intact: '+' as %2B, the quote doubled.
    assert!(
        m.requests_for("graph.list")
            .iter()
            .all(|r| r["internet_message_id"] == IMID)
    );
    // Past the renewal point (7 s after the token was issued, 1 s before it
    // expires): a new token.
    let issued = m.requests_for("token.client_secret")[0]["time"].as_f64().unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    std::thread::sleep(Duration::from_secs_f64((issued + 7.3 - now).max(0.0)));
    let _ = rt.block_on(r.run(&job(RemediationAction::Move, &BOXES[..1])));
    assert_eq!(
        m.requests_for("token.client_secret").len(),
        2,
        "a new token once the old one is about to expire"
    );

    // 429 with Retry-After: 1 on alice's lookup: waited out, then done.
    m.configure(&json!({"token_lifetime": 3599, "faults": [{"api": "graph", "op": "graph.list", "mailbox": BOXES[0], "calls": [1], "status": 429, "retry_after": 1}]}));
    let before = m.requests().len();
    let results = rt.block_on(r.run(&job(RemediationAction::Move, &BOXES[..1])));
    assert_eq!(
        results[0].outcome,
        Outcome::Moved {
            folder: "junkemail".into(),
            count: 1
        }
    );
    let lists: Vec<Value> = m.requests()[before..]
        .iter()
        .filter(|r| r["op"] == "graph.list")
        .cloned()
        .collect();
    assert_eq!(lists.len(), 2, "{lists:#?}");
    assert_eq!(lists[0]["status"], 429);
    let waited = lists[1]["time"].as_f64().unwrap() - lists[0]["time"].as_f64().unwrap();
    assert!(waited >= 1.0, "asked again after {waited:.3} s, Retry-After said 1 s");
    every_request_from_the_egress_ip_with_the_user_agent(&m);
}

#[test]
fn a_failing_mailbox_is_retried_then_reported_while_the_others_succeed() {
    let m = M365::start(&standin_config(IMID, &BOXES, &[], 3599));
    m.configure(&json!({"faults": [
        {"api": "graph", "op": "graph.list", "mailbox": BOXES[1], "first": 100, "status": 500},
        {"api": "graph", "op": "graph.list", "mailbox": BOXES[2], "calls": [1], "status": 500}
    ]}));
    let r = Remediator::new(
        "contoso",
        config(
            &m,
            Method::Graph,
            Credential::Secret(Secret::new(SECRET)),
            RemediationAction::SoftDelete,
            &[100, 100],
        ),
    )
    .unwrap();
    let results = runtime().block_on(r.run(&job(RemediationAction::SoftDelete, &BOXES)));
    let alice = outcome_of(&results, BOXES[0]);
    assert_eq!((&alice.outcome, alice.attempts), (&Outcome::Deleted { count: 1 }, 1));
    let bob = outcome_of(&results, BOXES[1]);
    assert!(
        matches!(&bob.outcome, Outcome::Failed(why) if why.contains("HTTP 500")),
        "{bob:?}"
    );
    assert_eq!(bob.attempts, 3, "one attempt per retry entry plus one");
    assert_eq!(m.folder_of(BOXES[1], IMID).as_deref(), Some("inbox"));
    let carol = outcome_of(&results, BOXES[2]);
    assert_eq!(
        (&carol.outcome, carol.attempts),
        (&Outcome::Deleted { count: 1 }, 2),
        "retried once, then done"
    );
    assert_eq!(
        m.folder_of(BOXES[2], IMID).as_deref(),
        Some("recoverableitemsdeletions")
    );
    assert_eq!(m.requests_for("graph.delete").len(), 2);
    // Request ids are kept for the audit record.
    assert!(!alice.request_ids.is_empty());

    // A message that is not there is "not found", not a failure.
    let mut other = job(RemediationAction::SoftDelete, &BOXES[..1]);
    other.internet_message_id = "<absent@mail.example>".into();
    let results = runtime().block_on(r.run(&other));
    assert_eq!(results[0].outcome, Outcome::NotFound);
}

#[test]
fn ews_with_a_certificate_assertion_impersonates_each_mailbox() {
    let dir = tempfile::tempdir().unwrap();
    let cert = m365::client_cert(dir.path(), "exogate-app");
    let m = M365::start(&standin_config(IMID, &BOXES, &[&cert.cert], 3599));
    let cfg = {
        use rustls::pki_types::pem::PemObject;
        let der = rustls::pki_types::CertificateDer::from_pem_file(&cert.cert)
            .unwrap()
            .as_ref()
            .to_vec();
        let key = rustls::pki_types::PrivatePkcs8KeyDer::from_pem_file(&cert.key).unwrap();
        config(
            &m,
            Method::Ews,
            Credential::Certificate {
                cert_der: der,
                key_pkcs8: Secret::new(key.secret_pkcs8_der().to_vec()),
                alg: AssertionAlg::Ps256,
            },
            RemediationAction::Delete,
            &[100],
        )
    };
    let r = Remediator::new("contoso", cfg).unwrap();
    let results = runtime().block_on(r.run(&job(RemediationAction::Delete, &BOXES)));
    for b in BOXES {
        assert_eq!(outcome_of(&results, b).outcome, Outcome::Deleted { count: 1 }, "{b}");
        assert_eq!(m.folder_of(b, IMID).as_deref(), Some("recoverableitemspurges"));
    }
    let tokens = m.requests_for("token.client_assertion");
    assert_eq!(tokens.len(), 1);
    assert_eq!(tokens[0]["assertion"]["header"]["alg"], "PS256");
    assert_eq!(tokens[0]["resource"], "https://outlook.office365.com");
    let finds = m.requests_for("ews.FindItem");
    assert_eq!(finds.len(), 3);
    for f in &finds {
        assert_eq!(f["headers"]["x-anchormailbox"], f["mailbox"], "{f:#}");
        assert_eq!(f["internet_message_id"], IMID);
    }
    let deletes = m.requests_for("ews.DeleteItem");
    assert!(deletes.iter().all(|d| d["delete_type"] == "HardDelete"));
    every_request_from_the_egress_ip_with_the_user_agent(&m);
}

#[test]
fn the_rescan_hook_acts_only_when_a_clean_verdict_turns_bad() {
    let m = M365::start(&standin_config(IMID, &BOXES[..1], &[], 3599));
    let r = Arc::new(
        Remediator::new(
            "contoso",
            config(
                &m,
                Method::Graph,
                Credential::Secret(Secret::new(SECRET)),
                RemediationAction::Move,
                &[100],
            ),
        )
        .unwrap(),
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let boxes = vec![BOXES[0].to_string()];
        assert!(
            !exogate::remediate::on_rescan(&r, IMID, None, boxes.clone(), "quarantine", "reject"),
            "already bad"
        );
        assert!(
            !exogate::remediate::on_rescan(&r, IMID, None, boxes.clone(), "deliver", "junk"),
            "junk is not in on_verdicts"
        );
        assert!(exogate::remediate::on_rescan(
            &r,
            IMID,
            None,
            boxes,
            "deliver",
            "quarantine"
        ));
    });
    let moved = support::wait_for(Duration::from_secs(20), || {
        (m.folder_of(BOXES[0], IMID).as_deref() == Some("junkemail")).then_some(())
    });
    assert!(moved.is_some(), "{:#?}", m.requests());
    drop(rt);
}

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/journal")
}

#[test]
fn a_journaled_eicar_message_is_moved_out_of_its_three_mailboxes_and_the_secret_never_logged() {
    assert!(
        m365::egress_ip_usable(),
        "this test binds {EGRESS_IP} as its source address"
    );
    let tmp = tempfile::tempdir().unwrap();
    support::python(
        "import subprocess, sys\nsubprocess.run([sys.executable, sys.argv[1], '--eicar-into', sys.argv[2]], check=True)\n",
        &[
            fixtures().join("generate.py").to_str().unwrap(),
            tmp.path().to_str().unwrap(),
        ],
    );
    let sidecar: Value =
        serde_json::from_slice(&std::fs::read(tmp.path().join("inbound-eicar.json")).unwrap()).unwrap();
    let imid = sidecar["original"]["message_id"].as_str().unwrap().to_string();
    let boxes: Vec<String> = sidecar["envelope"]["recipients"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["address"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(boxes.len(), 3);
    let box_refs: Vec<&str> = boxes.iter().map(String::as_str).collect();
    let m = M365::start(&standin_config(&imid, &box_refs, &[], 3599));

    let stack = Stack::new();
    let clamd = Clamd::start();
    let opts = Options {
        tenant_mode: "monitor",
        tenant_id: TENANT_ID.into(),
        deliver_to: vec![stack.downstream.addr()],
        policy: Some(format!(
            "[policy.default]\njunk_score = 5.0\nquarantine_score = 10.0\nreject_score = 20.0\n\
             [[policy.default.check]]\nkind = \"malware\"\nclamd = \"{}\"\neicar = false\n",
            clamd.tcp()
        )),
        ..Options::default()
    };
    let dir = stack.dir.path().join("gw");
    std::fs::create_dir_all(&dir).unwrap();
    let remediation = format!(
        "mode = \"monitor\"\njournal_address = \"{JOURNAL}\"\n\n[tenant.remediation]\nmethod = \"graph\"\n\
         client_id = \"{CLIENT}\"\nclient_secret = \"{SECRET}\"\ntoken_base_url = \"{}\"\ngraph_base_url = \"{}\"\n\
         ca = \"{}\"\nsource_ip = \"{EGRESS_IP}\"\nuser_agent = \"{UA}\"\naction = \"move\"\nfolder = \"junkemail\"\n\
         retry = [\"1s\"]\n",
        m.token_base_url(),
        m.graph_base_url(),
        m.ca.display()
    );
    let text = config_text(&dir, &stack.pki, &stack.server, &opts).replace("mode = \"monitor\"\n", &remediation);
    let gw = Gateway::start_with_text(&dir, &text);

    let out = support::python(
        "import smtplib, ssl, sys\n\
         s = smtplib.SMTP(sys.argv[1], int(sys.argv[2]), timeout=60)\n\
         s.starttls(context=ssl.create_default_context(cafile=sys.argv[3]))\n\
         s.sendmail('', [sys.argv[4]], open(sys.argv[5], 'rb').read())\n\
         s.quit()\nprint('sent')\n",
        &[
            &gw.smtp.ip().to_string(),
            &gw.smtp.port().to_string(),
            stack.pki.ca.to_str().unwrap(),
            JOURNAL,
            tmp.path().join("inbound-eicar.eml").to_str().unwrap(),
        ],
    );
    assert_eq!(out.trim(), "sent");
    assert!(
        gw.wait_log("remediation finished", Duration::from_secs(60)),
        "{:#?}",
        m.requests()
    );
    for b in &boxes {
        assert_eq!(m.folder_of(b, &imid).as_deref(), Some("junkemail"), "{b}");
    }
    assert_eq!(m.requests_for("graph.list").len(), 3);
    assert_eq!(m.requests_for("graph.move").len(), 3);
    assert_eq!(m.requests_for("token.client_secret").len(), 1);
    every_request_from_the_egress_ip_with_the_user_agent(&m);
    let log = gw.log();
    let audits: Vec<&str> = log.lines().filter(|l| l.contains("remediation audit")).collect();
    assert_eq!(audits.len(), 3, "{log}");
    for b in &boxes {
        assert!(
            audits.iter().any(|a| a.contains(b.as_str())
                && a.contains("moved 1 to junkemail")
                && a.contains("verdict:quarantine")),
            "{audits:#?}"
        );
    }

    // The admin purges it everywhere (it is in Junk Email now).
    let mut args = vec![
        "remediate",
        "--tenant",
        "contoso",
        "--message-id",
        &imid,
        "--action",
        "soft-delete",
    ];
    for b in &boxes {
        args.extend(["--mailbox", b.as_str()]);
    }
    let (code, stdout, stderr) = gw.cli(&args);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert_eq!(stdout.matches("removed 1").count(), 3, "{stdout}");
    for b in &boxes {
        assert_eq!(m.folder_of(b, &imid).as_deref(), Some("recoverableitemsdeletions"));
    }
    let (code, _, stderr2) = gw.cli(&[
        "remediate",
        "--tenant",
        "contoso",
        "--message-id",
        &imid,
        "--mailbox",
        "someone@elsewhere.example",
    ]);
    assert_ne!(code, 0);
    assert!(stderr2.contains("not mailboxes of tenant"), "{stderr2}");

    // Nothing relayed; the secret appears in no log and no output.
    assert!(stack.downstream.messages().is_empty());
    for (what, text) in [
        ("gateway log", gw.log()),
        ("cli output", format!("{stdout}{stderr}{stderr2}")),
    ] {
        assert!(!text.contains(SECRET), "the client secret leaked into the {what}");
        assert!(
            !text.contains("eyJ"),
            "a JWT (token or assertion) leaked into the {what}"
        );
    }
    drop(clamd);
}
