//! Starts a real ClamAV `clamd` for integration tests: a temporary config and
//! a tiny local signature database (no freshclam, no network), listening on a
//! free loopback TCP port and on a unix socket in a temporary folder.
//!
//! The signatures match the EICAR test file (by its text and by its MD5) and a
//! harmless marker string, so tests can tell a clamd detection from the
//! gateway's built-in EICAR check. No file here contains the EICAR string.
//! clamd is killed when the handle is dropped, even when a test panics.

#![allow(dead_code)]

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The marker text `Gateway.Test.Marker` matches anywhere in a scanned stream.
pub const MARKER: &str = "exogate-clamd-integration-marker-7f3a";

const DEFAULT_CLAMD: &str = "/usr/sbin/clamd";

pub struct Clamd {
    child: Option<Child>,
    dir: tempfile::TempDir,
    pub port: u16,
    pub socket: PathBuf,
}

fn hex(text: &str) -> String {
    text.bytes().map(|b| format!("{b:02x}")).collect()
}

impl Clamd {
    /// clamd with the reference settings (`StreamMaxLength 50M`).
    pub fn start() -> Clamd {
        Clamd::start_with_stream_max("50M")
    }

    pub fn start_with_stream_max(stream_max_length: &str) -> Clamd {
        let binary = std::env::var_os("EXOGATE_CLAMD")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(DEFAULT_CLAMD));
        assert!(
            binary.exists(),
            "clamd is not installed ({} does not exist). Install the Debian package clamav-daemon \
             (apt-get install clamav-daemon) or set EXOGATE_CLAMD to the clamd binary.",
            binary.display()
        );
        let dir = tempfile::tempdir().expect("temporary folder");
        let db = dir.path().join("db");
        std::fs::create_dir(&db).unwrap();
        // NDB: hex of "EICAR-STANDARD-ANTIVIRUS-TEST-FILE" anywhere in any file;
        // HDB: md5:size of the 68-byte EICAR file (as in components.md).
        std::fs::write(
            db.join("gateway-test.ndb"),
            format!(
                "Gateway.Test.EICAR-NDB:0:*:45494341522d5354414e444152442d414e544956495255532d544553542d46494c45\n\
                 Gateway.Test.Marker:0:*:{}\n",
                hex(MARKER)
            ),
        )
        .unwrap();
        std::fs::write(
            db.join("gateway-test.hdb"),
            "44d88612fea8a8f36de82e1278abb02f:68:Gateway.Test.EICAR-HDB\n",
        )
        .unwrap();
        let port = free_port();
        let socket = dir.path().join("clamd.sock");
        let conf = dir.path().join("clamd.conf");
        std::fs::write(
            &conf,
            format!(
                "DatabaseDirectory {db}\nLocalSocket {sock}\nTCPSocket {port}\nTCPAddr 127.0.0.1\n\
                 Foreground yes\nLogFile {dir}/clamd.log\nPidFile {dir}/clamd.pid\nStreamMaxLength {stream_max_length}\n",
                db = db.display(),
                sock = socket.display(),
                dir = dir.path().display(),
            ),
        )
        .unwrap();
        let out = std::fs::File::create(dir.path().join("clamd.out")).unwrap();
        let child = Command::new(&binary)
            .arg("-c")
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()));
        let mut clamd = Clamd {
            child: Some(child),
            dir,
            port,
            socket,
        };
        clamd.wait_ready();
        clamd
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if self.socket.exists() && TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                panic!("clamd exited early ({status}):\n{}", self.logs());
            }
            assert!(
                Instant::now() < deadline,
                "clamd not ready after 60 s:\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// `host:port` for the `clamd` option.
    pub fn tcp(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// What clamd wrote to its output and log, for failure messages.
    pub fn logs(&self) -> String {
        let read = |name: &str| std::fs::read_to_string(self.dir.path().join(name)).unwrap_or_default();
        format!(
            "--- clamd.out\n{}--- clamd.log\n{}",
            read("clamd.out"),
            read("clamd.log")
        )
    }

    /// Kills clamd and waits for it to exit.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Clamd {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A loopback port that was free a moment ago.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}
