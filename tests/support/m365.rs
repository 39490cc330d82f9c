//! The Microsoft 365 stand-in (tests/support/m365_standin.py) as a test rig:
//! an HTTPS token endpoint, Graph v1.0 mail and EWS on one free loopback
//! port, with a certificate from the tests' own CA, a JSON configuration
//! (tenants, apps, mailboxes, injected faults; see the script's header) and
//! a JSON Lines log of every request it received, which tests read back.
//!
//! The remediation client under test binds [`EGRESS_IP`] as its source
//! address; [`egress_ip_usable`] says whether this machine allows that, and
//! the stand-in records each request's peer address so a test can see it.
//! The stand-in runs as a [`Server`]: stopped when the handle is dropped, also
//! when a test panics, and by its watchdog if the test process dies.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use super::pki::Pki;
use super::process::{Server, tail};

/// The source address the remediation client binds in tests (the "fixed
/// egress IP" a tenant would allow-list); the stand-in listens on 127.0.0.1.
pub const EGRESS_IP: &str = "127.0.0.2";

pub struct M365 {
    server: Server,
    dir: tempfile::TempDir,
    pub port: u16,
    /// The CA certificate (PEM) the client must trust to reach the stand-in.
    pub ca: PathBuf,
    pub log: PathBuf,
}

/// An RSA key and self-signed certificate for client-assertion tests, made
/// with the openssl tool (ring cannot generate RSA keys; Entra ID assertions
/// are RS256/PS256, so the app credential must be RSA).
#[derive(Clone, Debug)]
pub struct ClientCert {
    pub cert: PathBuf,
    /// PKCS#8 PEM ("BEGIN PRIVATE KEY").
    pub key: PathBuf,
}

impl M365 {
    /// Starts the stand-in with `config` (the JSON the script documents).
    pub fn start(config: &Value) -> M365 {
        let dir = tempfile::tempdir().expect("temporary folder");
        let pki = Pki::new(&dir.path().join("pki"));
        let leaf = pki.leaf("m365", &["127.0.0.1", "localhost"]);
        let config_path = dir.path().join("config.json");
        std::fs::write(&config_path, serde_json::to_vec_pretty(config).unwrap()).unwrap();
        let log = dir.path().join("requests.jsonl");
        let out = dir.path().join("standin.out");
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/m365_standin.py");
        let mut cmd = Command::new("python3");
        cmd.arg("-u")
            .arg(script)
            .arg("--config")
            .arg(&config_path)
            .arg("--cert")
            .arg(&leaf.cert)
            .arg("--key")
            .arg(&leaf.key)
            .arg("--log")
            .arg(&log)
            .args(["--host", "127.0.0.1", "--port", "0"]);
        let mut server = Server::spawn("m365 stand-in", cmd, &out, libc::SIGTERM, Some(dir.path()));
        // The stand-in binds port 0 and prints "ready PORT" once it listens.
        let mut port = 0;
        server.wait_ready(
            Duration::from_secs(20),
            || tail(&out, 8000),
            || {
                port = ready_port(&out).unwrap_or(0);
                port != 0
            },
        );
        M365 {
            server,
            ca: pki.ca.clone(),
            dir,
            port,
            log,
        }
    }

    pub fn base_url(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }

    /// What `token_base_url` replaces: `https://login.microsoftonline.com`.
    pub fn token_base_url(&self) -> String {
        self.base_url()
    }

    /// The token endpoint for `tenant` (GUID or domain).
    pub fn token_url(&self, tenant: &str) -> String {
        format!("{}/{tenant}/oauth2/v2.0/token", self.base_url())
    }

    /// What `graph_base_url` replaces: `https://graph.microsoft.com/v1.0`.
    pub fn graph_base_url(&self) -> String {
        format!("{}/v1.0", self.base_url())
    }

    /// What `ews_url` replaces: `https://outlook.office365.com/EWS/Exchange.asmx`.
    pub fn ews_url(&self) -> String {
        format!("{}/EWS/Exchange.asmx", self.base_url())
    }

    /// A folder that lives as long as the stand-in (for a test's own files).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Every request recorded so far, in arrival order.
    pub fn requests(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad log line {l}: {e}")))
            .collect()
    }

    /// The recorded requests whose `op` is `op` (e.g. "graph.move", "token.client_secret").
    pub fn requests_for(&self, op: &str) -> Vec<Value> {
        self.requests().into_iter().filter(|r| r["op"] == op).collect()
    }

    /// Waits until at least `n` requests are recorded.
    pub fn wait_requests(&self, n: usize, timeout: Duration) -> Vec<Value> {
        super::wait_for(timeout, || {
            let r = self.requests();
            (r.len() >= n).then_some(r)
        })
        .unwrap_or_else(|| panic!("expected {n} requests, got: {:#?}", self.requests()))
    }

    /// Mailboxes with where each message is now (folder, id, history).
    pub fn state(&self) -> Value {
        self.admin("GET", "/_standin/state", None)
    }

    /// Replaces top-level keys of the configuration (e.g. `{"faults": [...]}`,
    /// `{"token_lifetime": 2}`); replacing "faults" restarts their counters.
    pub fn configure(&self, patch: &Value) {
        self.admin("POST", "/_standin/config", Some(patch));
    }

    /// Where the message with `internet_message_id` is in `mailbox` now.
    pub fn folder_of(&self, mailbox: &str, internet_message_id: &str) -> Option<String> {
        let state = self.state();
        state["mailboxes"][mailbox.to_lowercase()]["messages"]
            .as_array()?
            .iter()
            .find(|m| m["internetMessageId"] == internet_message_id)
            .and_then(|m| m["folder"].as_str().map(str::to_string))
    }

    fn admin(&self, method: &str, path: &str, body: Option<&Value>) -> Value {
        let out = super::python(
            "import json, ssl, sys, urllib.request\n\
             ctx = ssl.create_default_context(cafile=sys.argv[1])\n\
             data = sys.argv[4].encode() if sys.argv[4] else None\n\
             req = urllib.request.Request(sys.argv[2], data=data, method=sys.argv[3])\n\
             print(urllib.request.urlopen(req, context=ctx, timeout=10).read().decode())\n",
            &[
                self.ca.to_str().unwrap(),
                &format!("{}{path}", self.base_url()),
                method,
                &body.map(|b| b.to_string()).unwrap_or_default(),
            ],
        );
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("stand-in admin answer {out}: {e}"))
    }
}

impl M365 {
    /// What the stand-in printed (tracebacks if it broke), for panic messages.
    pub fn output(&self) -> String {
        self.server.output(8000)
    }
}

/// The port from the stand-in's "ready PORT" line, once it is there.
fn ready_port(out: &Path) -> Option<u16> {
    let text = std::fs::read_to_string(out).ok()?;
    text.lines().find_map(|l| l.strip_prefix("ready ")?.trim().parse().ok())
}

/// True when this machine lets a socket use [`EGRESS_IP`] as its source
/// address towards 127.0.0.1 and the receiver sees that address (Linux
/// routes all of 127.0.0.0/8 to the loopback interface; other systems may
/// need an alias).
pub fn egress_ip_usable() -> bool {
    let Ok(rx) = std::net::UdpSocket::bind("127.0.0.1:0") else {
        return false;
    };
    let Ok(tx) = std::net::UdpSocket::bind((EGRESS_IP, 0)) else {
        return false;
    };
    let _ = rx.set_read_timeout(Some(Duration::from_secs(2)));
    if tx.send_to(b"egress", rx.local_addr().unwrap()).is_err() {
        return false;
    }
    let mut buf = [0u8; 8];
    matches!(rx.recv_from(&mut buf), Ok((6, from)) if from.ip().to_string() == EGRESS_IP)
}

/// A fresh RSA client certificate in `dir`, for `"certificates"` in the
/// stand-in's app configuration and the client's certificate+key settings.
pub fn client_cert(dir: &Path, stem: &str) -> ClientCert {
    let cert = dir.join(format!("{stem}.pem"));
    let key = dir.join(format!("{stem}.key"));
    let out = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2"])
        .args(["-subj", &format!("/CN={stem}")])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("the openssl tool must be installed (Debian package openssl)");
    assert!(
        out.status.success(),
        "openssl req failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    ClientCert { cert, key }
}
