//! HAProxy (Debian package `haproxy`) as the PROXY-protocol peer in front of
//! a listener under test: `mode tcp`, 127.0.0.1:<free port> forwarded to one
//! backend with `send-proxy` (v1) or `send-proxy-v2`, optionally connecting
//! from a chosen source address (e.g. 127.0.0.5) so the backend sees the
//! proxy's address distinct from the client's.
//!
//! Readiness is asked on HAProxy's own stats socket (a unix socket in the
//! temporary folder), never by connecting to the proxied port: such a probe
//! would reach the backend as a spurious connection. Stopped on drop.

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use super::process::{Server, tail};

const HAPROXY: &str = "/usr/sbin/haproxy";

/// Which PROXY protocol header HAProxy sends to the backend.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Proxy {
    /// No header (plain TCP forwarding).
    None,
    /// `send-proxy`: the text header `PROXY TCP4 … \r\n`.
    V1,
    /// `send-proxy-v2`: the binary header.
    V2,
}

pub struct Haproxy {
    server: Server,
    dir: tempfile::TempDir,
    port: u16,
}

impl Haproxy {
    /// Forwards 127.0.0.1:<free port> to `backend`, with the `proxy` header.
    pub fn start(backend: SocketAddr, proxy: Proxy) -> Haproxy {
        Haproxy::start_from(backend, proxy, None)
    }

    /// As `start`, connecting to the backend from `source` (any 127.0.0.0/8
    /// address works on Linux loopback) when given.
    pub fn start_from(backend: SocketAddr, proxy: Proxy, source: Option<IpAddr>) -> Haproxy {
        assert!(
            Path::new(HAPROXY).exists(),
            "HAProxy is not installed ({HAPROXY} missing): apt-get install haproxy"
        );
        let dir = tempfile::tempdir().expect("temporary folder");
        let port = super::free_port();
        let sock = dir.path().join("admin.sock");
        let send = match proxy {
            Proxy::None => "",
            Proxy::V1 => " send-proxy",
            Proxy::V2 => " send-proxy-v2",
        };
        let source = source.map(|ip| format!(" source {ip}")).unwrap_or_default();
        let conf = format!(
            "global\n    maxconn 1000\n    stats socket {sock} mode 600 level admin\n    log stdout format raw local0 info\n\
             defaults\n    mode tcp\n    log global\n    option tcplog\n    timeout connect 5s\n    timeout client 10m\n    timeout server 10m\n\
             listen relay\n    bind 127.0.0.1:{port}\n    server backend {backend}{send}{source}\n",
            sock = sock.display()
        );
        let conf_path = dir.path().join("haproxy.cfg");
        std::fs::write(&conf_path, conf).unwrap();
        let mut cmd = Command::new(HAPROXY);
        cmd.arg("-f").arg(&conf_path).arg("-db");
        let log = dir.path().join("haproxy.log");
        let server = Server::spawn("haproxy", cmd, &log, libc::SIGTERM, Some(dir.path()));
        let mut h = Haproxy { server, dir, port };
        h.server.wait_ready(
            Duration::from_secs(30),
            || tail(&log, 16_000),
            || stats_command(&sock, "show info").is_some_and(|r| r.contains("Name: HAProxy")),
        );
        h
    }

    /// Where clients connect: `127.0.0.1:port`.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// A command on HAProxy's stats socket (e.g. `show stat`), its reply.
    pub fn command(&self, command: &str) -> String {
        stats_command(&self.dir.path().join("admin.sock"), command)
            .unwrap_or_else(|| panic!("HAProxy stats socket did not answer:\n{}", self.logs()))
    }

    /// HAProxy's output and connection log (tail), for failure messages.
    pub fn logs(&self) -> String {
        tail(&self.dir.path().join("haproxy.log"), 16_000)
    }
}

fn stats_command(sock: &Path, command: &str) -> Option<String> {
    let mut s = UnixStream::connect(sock).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    s.write_all(format!("{command}\n").as_bytes()).ok()?;
    let mut reply = String::new();
    s.read_to_string(&mut reply).ok()?;
    Some(reply)
}
