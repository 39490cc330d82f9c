//! A private PostgreSQL 15 (Debian package `postgresql`) for tests: its own
//! cluster made by initdb in a temporary folder, trust authentication, TCP on
//! a free 127.0.0.1 port and a unix socket in that folder only.
//!
//! initdb refuses to run as root, so as root the cluster and the server run as
//! `nobody`; otherwise as the current user. `Postgres::shared()` starts one
//! server per test binary (tests take a fresh database each with
//! `create_database`); the process watchdog (support/process.rs) shuts it
//! down with SIGINT (fast shutdown) and removes its folder when the test
//! process exits. `Postgres::start()` gives a test its own server, stopped on
//! drop. Durability is traded for speed (fsync off): nothing here survives
//! the test process anyway.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use super::process::{Server, is_root, nobody, tail};

const BIN: &str = "/usr/lib/postgresql/15/bin";

pub struct Postgres {
    server: Server,
    dir: tempfile::TempDir,
    port: u16,
    next_db: AtomicU32,
}

static SHARED: OnceLock<Postgres> = OnceLock::new();

impl Postgres {
    /// The server shared by the tests of this test binary (started on first use).
    pub fn shared() -> &'static Postgres {
        SHARED.get_or_init(Postgres::start)
    }

    /// A server of the caller's own, stopped when dropped.
    pub fn start() -> Postgres {
        let bin = Path::new(BIN);
        assert!(
            bin.join("postgres").exists(),
            "PostgreSQL 15 is not installed ({BIN}/postgres missing): apt-get install postgresql"
        );
        let dir = tempfile::tempdir().expect("temporary folder");
        let as_nobody = is_root();
        if as_nobody {
            let (uid, gid) = nobody();
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid)).unwrap();
        }
        let data = dir.path().join("data");
        let out = Command::new(bin.join("initdb"))
            .args([
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--locale=C.UTF-8",
                "--no-sync",
                "-D",
            ])
            .arg(&data)
            .current_dir(dir.path())
            .drop_to_nobody(as_nobody)
            .output()
            .expect("initdb");
        assert!(
            out.status.success(),
            "initdb failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let port = super::free_port();
        let mut cmd = Command::new(bin.join("postgres"));
        cmd.arg("-D")
            .arg(&data)
            .args(["-p", &port.to_string(), "-k"])
            .arg(dir.path())
            .args(["-c", "listen_addresses=127.0.0.1"])
            .args([
                "-c",
                "fsync=off",
                "-c",
                "synchronous_commit=off",
                "-c",
                "full_page_writes=off",
            ])
            .args(["-c", "max_connections=200", "-c", "shared_buffers=16MB"])
            .current_dir(dir.path())
            .drop_to_nobody(as_nobody);
        let log = dir.path().join("postgres.log");
        let server = Server::spawn("postgres", cmd, &log, libc::SIGINT, Some(dir.path()));
        let mut pg = Postgres {
            server,
            dir,
            port,
            next_db: AtomicU32::new(1),
        };
        let ready = bin.join("pg_isready");
        let port_s = port.to_string();
        pg.server.wait_ready(
            Duration::from_secs(60),
            || tail(&log, 16_000),
            || {
                Command::new(&ready)
                    .args([
                        "-q",
                        "-h",
                        "127.0.0.1",
                        "-p",
                        &port_s,
                        "-U",
                        "postgres",
                        "-d",
                        "postgres",
                    ])
                    .status()
                    .is_ok_and(|s| s.success())
            },
        );
        pg
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `postgres://postgres@127.0.0.1:PORT/postgres`.
    pub fn url(&self) -> String {
        self.url_for("postgres")
    }

    /// The URL of database `db` on this server.
    pub fn url_for(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }

    /// The folder holding the unix socket (`.s.PGSQL.PORT`).
    pub fn socket_dir(&self) -> &Path {
        self.dir.path()
    }

    /// Creates an empty database with a unique name derived from `hint` and
    /// returns its URL.
    pub fn create_database(&self, hint: &str) -> String {
        let n = self.next_db.fetch_add(1, Ordering::Relaxed);
        let clean: String = hint
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_lowercase()
                } else {
                    '_'
                }
            })
            .take(40)
            .collect();
        let name = format!("t{n}_{clean}");
        self.psql(&self.url(), &format!("CREATE DATABASE \"{name}\""));
        self.url_for(&name)
    }

    /// Runs `sql` with psql on the database at `url`; returns its unaligned,
    /// tuples-only output. Panics with psql's error and the server log on failure.
    pub fn psql(&self, url: &str, sql: &str) -> String {
        let out = Command::new(Path::new(BIN).join("psql"))
            .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", url, "-c", sql])
            .env("PGCONNECT_TIMEOUT", "10")
            .output()
            .expect("psql");
        assert!(
            out.status.success(),
            "psql {sql:?} on {url} failed: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            self.logs()
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The server's log (tail), for failure messages.
    pub fn logs(&self) -> String {
        tail(&self.log_path(), 16_000)
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("postgres.log")
    }

    /// Stops the server (fast shutdown) now; a shared server cannot be stopped.
    pub fn stop(&mut self) {
        self.server.stop();
    }
}

trait DropToNobody {
    fn drop_to_nobody(&mut self, yes: bool) -> &mut Self;
}

impl DropToNobody for Command {
    /// As root, runs the command as `nobody` (std also clears the supplementary groups).
    fn drop_to_nobody(&mut self, yes: bool) -> &mut Self {
        if yes {
            let (uid, gid) = nobody();
            self.uid(uid).gid(gid).env("HOME", "/nonexistent").env("USER", "nobody");
        }
        self
    }
}
