//! A real rspamd (Debian package `rspamd`, 3.4) offline on loopback: the
//! packaged /etc/rspamd config with local overrides in a temporary folder
//! (`--var LOCAL_CONFDIR=…`; nothing under /etc is edited), DNS pointed at the
//! closed port 127.0.0.1:1 so DNS-based checks fail at once, `rbl` and `asn`
//! off, one normal worker and the controller on free ports, proxy and fuzzy
//! workers off. GTUBE gets `reject`.
//!
//! A cold start compiles the hyperscan databases (10–17 s on 2 cores). They
//! are kept in `<target>/test-cache/rspamd` (or `$EXOGATE_RSPAMD_CACHE`) across
//! runs, so later starts take about a second; everything else (DBDIR, RUNDIR,
//! logs) is per instance. `Rspamd::shared()` is one instance per test binary,
//! stopped by the process watchdog when the binary exits; `Rspamd::start()`
//! is a test's own, stopped on drop. As root it runs with `-i` (no setuid to
//! `_rspamd`), so the cache in target/ stays owned by whoever runs the tests.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use super::process::{Server, is_root, tail};

const RSPAMD: &str = "/usr/bin/rspamd";

/// The GTUBE test string: rspamd answers `reject` (symbol `GTUBE`).
pub const GTUBE: &str = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X";

pub struct Rspamd {
    server: Server,
    dir: tempfile::TempDir,
    port: u16,
    controller_port: u16,
    startup: Duration,
}

static SHARED: OnceLock<Rspamd> = OnceLock::new();

/// Where compiled hyperscan databases are kept between runs.
pub fn cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("EXOGATE_RSPAMD_CACHE") {
        return PathBuf::from(dir);
    }
    // CARGO_TARGET_TMPDIR is <target>/tmp; its parent follows CARGO_TARGET_DIR.
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
    tmp.parent().unwrap_or(tmp).join("test-cache").join("rspamd")
}

impl Rspamd {
    /// The instance shared by the tests of this test binary (started on first use).
    pub fn shared() -> &'static Rspamd {
        SHARED.get_or_init(Rspamd::start)
    }

    /// An instance of the caller's own, stopped when dropped.
    pub fn start() -> Rspamd {
        assert!(
            Path::new(RSPAMD).exists(),
            "rspamd is not installed ({RSPAMD} missing): apt-get install rspamd"
        );
        let begun = Instant::now();
        let cache = cache_dir();
        std::fs::create_dir_all(&cache).unwrap_or_else(|e| panic!("{}: {e}", cache.display()));
        let dir = tempfile::tempdir().expect("temporary folder");
        let d = dir.path();
        let local = d.join("conf/local.d");
        for sub in ["db", "run", "log"] {
            std::fs::create_dir_all(d.join(sub)).unwrap();
        }
        std::fs::create_dir_all(&local).unwrap();
        let port = super::free_port();
        let controller_port = super::free_port();
        let write = |name: &str, text: String| std::fs::write(local.join(name), text).unwrap();
        write(
            "options.inc",
            format!(
                "dns {{ nameserver = [\"127.0.0.1:1\"]; timeout = 0.05s; retransmits = 1; }}\n\
                 hs_cache_dir = \"{}\";\n",
                cache.display()
            ),
        );
        write("logging.inc", "type = \"file\";\nlevel = \"info\";\n".into());
        write(
            "worker-normal.inc",
            format!("bind_socket = \"127.0.0.1:{port}\";\ncount = 1;\n"),
        );
        write(
            "worker-controller.inc",
            format!("bind_socket = \"127.0.0.1:{controller_port}\";\n"),
        );
        write("worker-proxy.inc", "count = -1;\n".into());
        write("worker-fuzzy.inc", "count = -1;\n".into());
        write("rbl.conf", "enabled = false;\n".into());
        write("asn.conf", "enabled = false;\n".into());

        let mut cmd = Command::new(RSPAMD);
        cmd.arg("-f");
        if is_root() {
            cmd.arg("-i");
        }
        cmd.args(["-c", "/etc/rspamd/rspamd.conf"]);
        for (var, sub) in [
            ("LOCAL_CONFDIR", "conf"),
            ("DBDIR", "db"),
            ("RUNDIR", "run"),
            ("LOGDIR", "log"),
        ] {
            cmd.arg("--var").arg(format!("{var}={}", d.join(sub).display()));
        }
        let out = d.join("stdout.log");
        let server = Server::spawn("rspamd", cmd, &out, libc::SIGTERM, Some(d));
        let mut rspamd = Rspamd {
            server,
            dir,
            port,
            controller_port,
            startup: Duration::ZERO,
        };
        let logs = {
            let d = rspamd.dir.path().to_path_buf();
            move || {
                format!(
                    "{}\n{}",
                    tail(&d.join("stdout.log"), 4000),
                    tail(&d.join("log/rspamd.log"), 12_000)
                )
            }
        };
        let (normal, controller) = (rspamd.addr(), rspamd.controller_addr());
        rspamd.server.wait_ready(Duration::from_secs(180), logs, || {
            http(normal, "GET", "/ping", &[], b"")
                .is_some_and(|(status, body)| status == 200 && body.starts_with(b"pong"))
                && TcpStream::connect_timeout(&controller, Duration::from_millis(200)).is_ok()
        });
        rspamd.startup = begun.elapsed();
        rspamd
    }

    /// The normal worker (`/checkv2`, `/ping`).
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// The controller worker (`/stat`, `/symbols`, …; no password from loopback).
    pub fn controller_addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.controller_port))
    }

    /// `http://127.0.0.1:PORT` of the normal worker.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr())
    }

    /// How long the start took (cold: hyperscan compiled; warm: from the cache).
    pub fn startup(&self) -> Duration {
        self.startup
    }

    /// `/checkv2` of `message` as from 127.0.0.1; rspamd's JSON reply.
    pub fn check(&self, message: &[u8]) -> serde_json::Value {
        self.check_with(message, &[("IP", "127.0.0.1")])
    }

    /// `/checkv2` with the given request headers (`IP`, `From`, `Rcpt`, `Helo`, …).
    pub fn check_with(&self, message: &[u8], headers: &[(&str, &str)]) -> serde_json::Value {
        let (status, body) = http(self.addr(), "POST", "/checkv2", headers, message)
            .unwrap_or_else(|| panic!("rspamd did not answer /checkv2:\n{}", self.logs()));
        assert_eq!(status, 200, "rspamd /checkv2: {}", String::from_utf8_lossy(&body));
        serde_json::from_slice(&body).unwrap_or_else(|e| {
            panic!(
                "rspamd /checkv2 reply is not JSON ({e}): {}",
                String::from_utf8_lossy(&body)
            )
        })
    }

    /// rspamd's own log (tail), for failure messages.
    pub fn logs(&self) -> String {
        tail(&self.dir.path().join("log/rspamd.log"), 16_000)
    }
}

/// One HTTP/1.0 request; (status, body) or None when nothing answers.
fn http(addr: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Option<(u16, Vec<u8>)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_millis(500)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(30))).ok()?;
    let mut req = format!(
        "{method} {path} HTTP/1.0\r\nHost: {addr}\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).ok()?;
    s.write_all(body).ok()?;
    let mut reply = Vec::new();
    s.read_to_end(&mut reply).ok()?;
    let end = reply.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&reply[..end]);
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, reply[end + 4..].to_vec()))
}
