//! A real authoritative DNS server, Knot DNS (`knotd`, Debian package `knot`),
//! serving zone files given as text on 127.0.0.1, UDP and TCP, on a free
//! port, for SPF/DKIM/DMARC/DNSBL/MX tests that must not touch real DNS.
//!
//! Everything (config, zone files, rundir, storage, control socket) lives in a
//! temporary folder; nothing under /etc is read or written. knotd runs as the
//! user running the tests (root or not: it needs no privilege on a high port).
//! A zone text without an SOA record gets a generated SOA and NS, so tests
//! write only the records they care about. Ready means every zone answers its
//! SOA authoritatively over UDP, and the first one over TCP. Stopped on drop.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use super::process::{Server, tail};

const KNOTD: &str = "/usr/sbin/knotd";
const KNOTC: &str = "/usr/sbin/knotc";

pub struct Knot {
    server: Server,
    dir: tempfile::TempDir,
    port: u16,
    /// Zone names in the order they were added (lowercase, no trailing dot).
    zones: Vec<String>,
    serial: u32,
}

impl Knot {
    /// Starts knotd serving `zones`: (zone name, zone-file text). Relative
    /// owner names are relative to the zone; `$TTL 60` is the default.
    pub fn start(zones: &[(&str, &str)]) -> Knot {
        assert!(
            Path::new(KNOTD).exists(),
            "Knot DNS is not installed ({KNOTD} missing): apt-get install knot"
        );
        let dir = tempfile::tempdir().expect("temporary folder");
        for sub in ["run", "storage", "zones"] {
            std::fs::create_dir(dir.path().join(sub)).unwrap();
        }
        let port = free_udp_tcp_port();
        let mut names = Vec::new();
        let mut serial = 1;
        for (name, text) in zones {
            let name = zone_name(name);
            write_zone(dir.path(), &name, text, serial);
            if !names.contains(&name) {
                names.push(name);
            }
        }
        serial += 1;
        write_config(dir.path(), port, &names);
        let mut cmd = Command::new(KNOTD);
        cmd.arg("-c").arg(dir.path().join("knot.conf"));
        let log = dir.path().join("knotd.log");
        let server = Server::spawn("knotd", cmd, &log, libc::SIGTERM, Some(dir.path()));
        let mut knot = Knot {
            server,
            dir,
            port,
            zones: names,
            serial,
        };
        knot.wait_serving(&knot.zones.clone());
        knot
    }

    /// `127.0.0.1:port`, UDP and TCP.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Adds `name` or replaces its records with `text`, reloads knotd through
    /// knotc and returns once the new zone content is served.
    pub fn set_zone(&mut self, name: &str, text: &str) {
        let name = zone_name(name);
        write_zone(self.dir.path(), &name, text, self.serial);
        self.serial += 1;
        if self.zones.contains(&name) {
            self.knotc(&["-b", "zone-reload", &name]);
        } else {
            self.zones.push(name.clone());
            write_config(self.dir.path(), self.port, &self.zones);
            self.knotc(&["-b", "reload"]);
        }
        self.wait_serving(&[name]);
    }

    /// Runs `knotc` against this server; panics with its output on failure.
    pub fn knotc(&self, args: &[&str]) -> String {
        let out = Command::new(KNOTC)
            .arg("-c")
            .arg(self.dir.path().join("knot.conf"))
            .args(args)
            .output()
            .expect("knotc");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "knotc {args:?} failed: {text}\n{}", self.logs());
        text
    }

    /// knotd's log (the tail), for failure messages.
    pub fn logs(&self) -> String {
        tail(&self.dir.path().join("knotd.log"), 16_000)
    }

    fn wait_serving(&mut self, zones: &[String]) {
        let addr = self.addr();
        let log = self.dir.path().join("knotd.log");
        let zones = zones.to_vec();
        // A zone file error is logged and the zone is never served: fail at
        // once, looking only at what was logged since this wait began.
        let seen = std::fs::metadata(&log).map(|m| m.len() as usize).unwrap_or(0);
        self.server.wait_ready(
            Duration::from_secs(30),
            || tail(&log, 16_000),
            || {
                let text = std::fs::read(&log).unwrap_or_default();
                let new = String::from_utf8_lossy(text.get(seen..).unwrap_or_default());
                if let Some(z) = zones.iter().find(|z| new.contains(&format!("error: [{z}.]"))) {
                    panic!("knotd cannot load zone {z}:\n{}", tail(&log, 16_000));
                }
                zones.iter().all(|z| soa_is_authoritative(addr, z, false))
                    && zones.first().is_none_or(|z| soa_is_authoritative(addr, z, true))
            },
        );
    }
}

/// A TXT record's data in zone-file syntax: `value` as quoted strings of at
/// most 255 octets each (DKIM keys longer than that need several strings;
/// verifiers join them).
pub fn txt(value: &str) -> String {
    value
        .as_bytes()
        .chunks(255)
        .map(|chunk| {
            let mut s = String::from("\"");
            for &b in chunk {
                match b {
                    b'"' | b'\\' => {
                        s.push('\\');
                        s.push(b as char);
                    }
                    0x20..=0x7e => s.push(b as char),
                    _ => s.push_str(&format!("\\{b:03}")),
                }
            }
            s.push('"');
            s
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// The owner name of `ip` in a DNSBL zone: octets reversed, e.g. 127.0.0.2 →
/// `2.0.0.127` (so `2.0.0.127 A 127.0.0.2` lists it).
pub fn reversed(ip: Ipv4Addr) -> String {
    let o = ip.octets();
    format!("{}.{}.{}.{}", o[3], o[2], o[1], o[0])
}

fn zone_name(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

fn zone_file(dir: &Path, name: &str) -> PathBuf {
    dir.join("zones").join(format!("{name}.zone"))
}

/// Writes the zone file, adding an SOA and NS when the text has no SOA.
fn write_zone(dir: &Path, name: &str, text: &str, serial: u32) {
    let has_soa = text.lines().any(|line| {
        let data = line.split(';').next().unwrap_or("");
        data.split_whitespace().any(|t| t.eq_ignore_ascii_case("SOA"))
    });
    let mut out = format!("$ORIGIN {name}.\n$TTL 60\n");
    if !has_soa {
        out.push_str(&format!(
            "@ SOA ns.invalid. hostmaster.invalid. {serial} 3600 600 86400 60\n@ NS ns.invalid.\n"
        ));
    }
    out.push_str(text);
    out.push('\n');
    let path = zone_file(dir, name);
    // knotd reads the file on reload: write it whole, then rename over.
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, out).unwrap();
    std::fs::rename(&tmp, &path).unwrap();
}

fn write_config(dir: &Path, port: u16, zones: &[String]) {
    let d = dir.display();
    let mut conf = format!(
        "server:\n    rundir: {d}/run\n    listen: 127.0.0.1@{port}\n    udp-workers: 1\n    tcp-workers: 1\n    background-workers: 1\n\
         database:\n    storage: {d}/storage\n\
         control:\n    listen: {d}/run/knot.sock\n\
         log:\n  - target: stderr\n    any: info\n\
         template:\n  - id: default\n    storage: {d}/zones\n    file: \"%s.zone\"\n    zonefile-sync: -1\n    zonefile-load: whole\n    journal-content: none\n"
    );
    if !zones.is_empty() {
        conf.push_str("zone:\n");
        for z in zones {
            conf.push_str(&format!("  - domain: {z}\n"));
        }
    }
    let path = dir.join("knot.conf");
    let tmp = dir.join("knot.conf.tmp");
    std::fs::write(&tmp, conf).unwrap();
    std::fs::rename(&tmp, &path).unwrap();
}

/// A port free for both TCP and UDP on 127.0.0.1 a moment ago.
fn free_udp_tcp_port() -> u16 {
    for _ in 0..50 {
        let tcp = std::net::TcpListener::bind("127.0.0.1:0").expect("a free loopback port");
        let port = tcp.local_addr().unwrap().port();
        if UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no loopback port free for both TCP and UDP");
}

/// Whether `addr` answers an SOA query for `zone` with NOERROR, AA and an answer.
fn soa_is_authoritative(addr: SocketAddr, zone: &str, tcp: bool) -> bool {
    let id: u16 = 0x5eed;
    let mut q = Vec::new();
    q.extend_from_slice(&id.to_be_bytes());
    q.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 0, 0]); // no RD; one question
    for label in zone.split('.').filter(|l| !l.is_empty()) {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.extend_from_slice(&[0, 0, 6, 0, 1]); // root, SOA, IN
    let reply = if tcp { ask_tcp(addr, &q) } else { ask_udp(addr, &q) };
    let Some(r) = reply else { return false };
    r.len() >= 12
        && r[0..2] == id.to_be_bytes()
        && r[2] & 0x80 != 0 // QR
        && r[2] & 0x04 != 0 // AA
        && r[3] & 0x0f == 0 // NOERROR
        && u16::from_be_bytes([r[6], r[7]]) >= 1
}

fn ask_udp(addr: SocketAddr, q: &[u8]) -> Option<Vec<u8>> {
    let sock = UdpSocket::bind("127.0.0.1:0").ok()?;
    sock.set_read_timeout(Some(Duration::from_millis(200))).ok()?;
    sock.send_to(q, addr).ok()?;
    let mut buf = [0u8; 4096];
    let (n, _) = sock.recv_from(&mut buf).ok()?;
    Some(buf[..n].to_vec())
}

fn ask_tcp(addr: SocketAddr, q: &[u8]) -> Option<Vec<u8>> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_millis(200)).ok()?;
    s.set_read_timeout(Some(Duration::from_millis(500))).ok()?;
    s.write_all(&(q.len() as u16).to_be_bytes()).ok()?;
    s.write_all(q).ok()?;
    let mut len = [0u8; 2];
    s.read_exact(&mut len).ok()?;
    let mut buf = vec![0u8; u16::from_be_bytes(len) as usize];
    s.read_exact(&mut buf).ok()?;
    Some(buf)
}
