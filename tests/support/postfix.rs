//! A real Postfix (from Debian's postfix package) as the downstream MTA,
//! started privately in a temporary folder: its own main.cf/master.cf, queue
//! and log, smtpd on a loopback port, every message delivered through a
//! `pipe` transport into a capture folder (one file per recipient, with the
//! connecting client's address, so a test can see the egress IP).
//!
//! Test recipients steer its answers: `tempfail@…` gets 450, `reject@…` 550
//! (at RCPT); senders `tempdata@…` / `rejectdata@…` get 451 / 554 after the
//! data. Postfix stores lines without their CRLF, so captured messages have
//! LF line endings.

use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::pki::Leaf;
use super::{free_port, wait_for};

/// How the downstream treats TLS.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Tls {
    /// STARTTLS offered and required (smtpd_tls_security_level = encrypt).
    Required,
    /// No STARTTLS at all.
    Off,
}

pub struct Postfix {
    pub dir: PathBuf,
    pub port: u16,
    pub ip: String,
    out: PathBuf,
    child: Option<Child>,
    tls: Tls,
    cert: Option<Leaf>,
    /// Answer every recipient with 450 (a downstream that is up but refusing).
    defer_all: bool,
    /// Accept and keep every message in the queue (`defer_transports`), for
    /// reading the envelope Postfix queued with `postqueue -j`.
    keep_queued: bool,
}

/// One message in Postfix's own queue, as `postqueue -j` reports it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Queued {
    pub sender: String,
    pub recipients: Vec<String>,
}

/// One line of `postqueue -j`: a message and the queue folder it was read in.
struct Listed {
    queue_id: String,
    queue_name: String,
    queued: Queued,
}

impl Postfix {
    /// The queue as `postqueue -j` lists it, each message once. showq reads
    /// the queue folders one after another without a lock (active, then
    /// incoming, then deferred), so a message that qmgr moves from active to
    /// deferred during the listing is listed twice (under the same queue id:
    /// a queue file keeps its name when it moves), and one that moves from
    /// incoming to active is missed.
    fn listing(&self) -> Vec<Listed> {
        let out = Command::new("/usr/sbin/postqueue")
            .arg("-c")
            .arg(self.dir.join("etc"))
            .arg("-j")
            .output()
            .expect("postqueue");
        let mut by_id = std::collections::BTreeMap::new();
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
                continue;
            };
            let Some(queue_id) = v["queue_id"].as_str() else {
                continue;
            };
            let recipients = v["recipients"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|r| r["address"].as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default();
            // The later folder wins: it is where the message went.
            by_id.insert(
                queue_id.to_string(),
                Listed {
                    queue_id: queue_id.to_string(),
                    queue_name: v["queue_name"].as_str().unwrap_or_default().to_string(),
                    queued: Queued {
                        sender: v["sender"].as_str().unwrap_or_default().to_string(),
                        recipients,
                    },
                },
            );
        }
        by_id.into_values().collect()
    }

    /// Runs `postcat -q` on every queued message: envelope records and content.
    pub fn postcat_all(&self) -> Vec<String> {
        self.listing()
            .into_iter()
            .map(|m| {
                let out = Command::new("/usr/sbin/postcat")
                    .arg("-c")
                    .arg(self.dir.join("etc"))
                    .arg("-q")
                    .arg(&m.queue_id)
                    .output()
                    .expect("postcat");
                format!(
                    "{}{}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                )
            })
            .collect()
    }
}

/// One delivered message (for one recipient).
#[derive(Debug, Clone)]
pub struct Captured {
    pub client_ip: String,
    pub sender: String,
    pub recipient: String,
    pub data: Vec<u8>,
}

/// The daemons a private Postfix needs (shared with benches/load/run.sh).
const SERVICES: &str = include_str!("postfix-services.cf");

impl Postfix {
    /// Starts Postfix on 127.0.0.1 with `cert` for TLS.
    pub fn start(dir: &Path, tls: Tls, cert: Option<&Leaf>) -> Postfix {
        Postfix::start_on(dir, "127.0.0.1", free_port(), tls, cert)
    }

    /// Starts Postfix that accepts mail but delivers none: it stays in its
    /// queue, where [`Postfix::queued`] reads the envelope as Postfix recorded it.
    pub fn start_keeping(dir: &Path, tls: Tls, cert: Option<&Leaf>) -> Postfix {
        Postfix::start_with(dir, "127.0.0.1", free_port(), tls, cert, true)
    }

    pub fn start_on(dir: &Path, ip: &str, port: u16, tls: Tls, cert: Option<&Leaf>) -> Postfix {
        Postfix::start_with(dir, ip, port, tls, cert, false)
    }

    fn start_with(dir: &Path, ip: &str, port: u16, tls: Tls, cert: Option<&Leaf>, keep_queued: bool) -> Postfix {
        assert!(
            Path::new("/usr/lib/postfix/sbin/master").exists(),
            "Postfix is not installed: apt-get install postfix"
        );
        let mut pf = Postfix {
            dir: dir.to_path_buf(),
            port,
            ip: ip.to_string(),
            out: dir.join("out"),
            child: None,
            tls,
            cert: cert.cloned(),
            defer_all: false,
            keep_queued,
        };
        pf.prepare();
        pf.run();
        pf
    }

    /// Restarts with every recipient answered 450 (`true`) or served normally (`false`).
    pub fn set_defer_all(&mut self, defer: bool) {
        self.stop();
        self.defer_all = defer;
        self.prepare();
        self.run();
    }

    fn prepare(&self) {
        let d = &self.dir;
        let etc = d.join("etc");
        let spool = d.join("spool");
        std::fs::create_dir_all(&etc).unwrap();
        std::fs::create_dir_all(&self.out).unwrap();
        // The pipe runs as nobody: it must reach the capture script and folder.
        for p in [d.as_path(), etc.as_path()] {
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        std::fs::set_permissions(&self.out, std::fs::Permissions::from_mode(0o777)).unwrap();
        let chown = |p: &Path, owner: &str| {
            let ok = Command::new("chown")
                .arg(owner)
                .arg(p)
                .status()
                .map(|s| s.success())
                .unwrap_or(false);
            assert!(
                ok,
                "chown {owner} {} failed (the Postfix downstream needs root)",
                p.display()
            );
        };
        for q in [
            "active", "bounce", "corrupt", "defer", "deferred", "flush", "hold", "incoming", "private", "saved",
            "trace",
        ] {
            let p = spool.join(q);
            std::fs::create_dir_all(&p).unwrap();
            chown(&p, "postfix");
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o700)).unwrap();
        }
        for (q, mode) in [("maildrop", 0o730), ("public", 0o710)] {
            let p = spool.join(q);
            std::fs::create_dir_all(&p).unwrap();
            chown(&p, "postfix:postdrop");
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        }
        std::fs::create_dir_all(spool.join("pid")).unwrap();
        let data = d.join("data");
        std::fs::create_dir_all(&data).unwrap();
        chown(&data, "postfix");

        let script = etc.join("capture.sh");
        std::fs::write(
            &script,
            format!(
                "#!/bin/sh\nd={out}\nn=$(date +%s%N)-$$\ncat > \"$d/$n.tmp\"\nprintf '%s\\n' \"$@\" > \"$d/$n.meta\"\nmv \"$d/$n.tmp\" \"$d/$n.eml\"\n",
                out = self.out.display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();

        let tls = match (self.tls, &self.cert) {
            (Tls::Required, Some(c)) => format!(
                "smtpd_tls_security_level = encrypt\nsmtpd_tls_cert_file = {}\nsmtpd_tls_key_file = {}\n",
                c.cert.display(),
                c.key.display()
            ),
            (Tls::Required, None) => panic!("Tls::Required needs a certificate"),
            (Tls::Off, _) => "smtpd_tls_security_level = none\nsmtpd_discard_ehlo_keywords = starttls\n".to_string(),
        };
        let main = format!(
            "compatibility_level = 3.6
queue_directory = {spool}
data_directory = {data}
mail_owner = postfix
setgid_group = postdrop
myhostname = downstream.test
mydestination =
inet_interfaces = {ip}
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
relay_domains = contoso.com, contoso.onmicrosoft.com, fabrikam.com
default_transport = capture
relay_transport = capture
local_transport = capture
capture_destination_recipient_limit = 1
smtpd_recipient_restrictions = {defer}check_recipient_access inline:{{ {{tempfail@contoso.com=450 4.2.0 mailbox busy, try later}}, {{reject@contoso.com=550 5.1.1 no such user}} }}, permit_mynetworks, reject
smtpd_end_of_data_restrictions = check_sender_access inline:{{ {{tempdata@example.org=451 4.3.0 content scanner busy}}, {{rejectdata@example.org=554 5.7.1 content rejected downstream}} }}
maillog_file = {dir}/maillog
maillog_file_prefixes = /tmp, {dir}
disable_mime_input_processing = yes
message_size_limit = 300000000
notify_classes =
biff = no
smtp_host_lookup = native
{keep}{tls}",
            spool = spool.display(),
            data = data.display(),
            ip = self.ip,
            dir = self.dir.display(),
            defer = if self.defer_all { "defer, " } else { "" },
            keep = if self.keep_queued {
                "defer_transports = capture\n"
            } else {
                ""
            },
        );
        std::fs::write(etc.join("main.cf"), main).unwrap();
        let master = format!(
            "{ip}:{port} inet n - n - - smtpd\n{SERVICES}capture   unix  -       n       n       -       -       pipe\n  user=nobody argv={script} ${{client_address}} ${{sender}} ${{recipient}}\n",
            ip = self.ip,
            port = self.port,
            script = script.display()
        );
        std::fs::write(etc.join("master.cf"), master).unwrap();
    }

    fn run(&mut self) {
        let etc = self.dir.join("etc");
        use std::os::unix::process::CommandExt;
        let child = Command::new("/usr/lib/postfix/sbin/master")
            // Its own process group: master stops its children through it, and so can we.
            .process_group(0)
            .arg("-c")
            .arg(&etc)
            .arg("-d")
            .env("MAIL_CONFIG", &etc)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start postfix master");
        self.child = Some(child);
        let addr = format!("{}:{}", self.ip, self.port);
        let up = wait_for(Duration::from_secs(30), || {
            let mut s = TcpStream::connect(&addr).ok()?;
            s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
            let mut buf = [0u8; 64];
            let n = std::io::Read::read(&mut s, &mut buf).ok()?;
            buf[..n].starts_with(b"220").then_some(())
        });
        assert!(up.is_some(), "postfix did not start; maillog:\n{}", self.maillog());
    }

    /// Stops the MTA (the port then refuses connections).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let pgid = c.id() as i32;
            // SAFETY: signalling our own child and its process group.
            unsafe {
                libc::kill(pgid, libc::SIGTERM);
            }
            let _ = wait_for(Duration::from_secs(10), || c.try_wait().ok().flatten());
            unsafe {
                libc::kill(-pgid, libc::SIGKILL);
            }
            let _ = c.kill();
            let _ = c.wait();
            // The listening socket is free once no process of the group holds it.
            let addr = self.addr();
            let _ = wait_for(Duration::from_secs(10), || {
                TcpStream::connect(&addr).is_err().then_some(())
            });
        }
    }

    /// Starts it again on the same port.
    pub fn restart(&mut self) {
        self.stop();
        self.run();
    }

    pub fn addr(&self) -> String {
        format!("{}:{}", self.ip, self.port)
    }

    pub fn maillog(&self) -> String {
        std::fs::read_to_string(self.dir.join("maillog")).unwrap_or_default()
    }

    /// The messages in Postfix's queue (any queue), each once: sender and
    /// recipients exactly as `postqueue -j` reports them. One reading: a
    /// message on its way between two queue folders may be missing (see
    /// [`Postfix::listing`]); [`Postfix::settled_queue`] waits for a reading
    /// that is complete.
    pub fn queued(&self) -> Vec<Queued> {
        let mut all: Vec<Queued> = self.listing().into_iter().map(|m| m.queued).collect();
        all.sort();
        all
    }

    /// The queue once Postfix is done with what it accepted (a keeping
    /// downstream, [`Postfix::start_keeping`]): no message left in incoming
    /// or active (each moved on to deferred), and two readings in a row
    /// agree, so no message was missed on its way between folders. `None`
    /// if that does not happen within `timeout`.
    pub fn settled_queue(&self, timeout: Duration) -> Option<Vec<Queued>> {
        let mut previous: Option<Vec<(String, Queued)>> = None;
        wait_for(timeout, || {
            let listing = self.listing();
            let in_flight = listing
                .iter()
                .any(|m| !matches!(m.queue_name.as_str(), "deferred" | "hold"));
            let now: Vec<(String, Queued)> = listing.into_iter().map(|m| (m.queue_id, m.queued)).collect();
            let settled = !in_flight && previous.as_ref() == Some(&now);
            previous = Some(now);
            settled.then(|| {
                let mut all: Vec<Queued> = previous.take().unwrap().into_iter().map(|(_, q)| q).collect();
                all.sort();
                all
            })
        })
    }

    /// Everything delivered so far.
    pub fn messages(&self) -> Vec<Captured> {
        let mut out = Vec::new();
        let Ok(entries) = std::fs::read_dir(&self.out) else {
            return out;
        };
        let mut names: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
        names.sort();
        for p in names {
            if p.extension().and_then(|e| e.to_str()) != Some("eml") {
                continue;
            }
            let meta = std::fs::read_to_string(p.with_extension("meta")).unwrap_or_default();
            let mut lines = meta.lines();
            out.push(Captured {
                client_ip: lines.next().unwrap_or_default().to_string(),
                sender: lines.next().unwrap_or_default().to_string(),
                recipient: lines.next().unwrap_or_default().to_string(),
                data: std::fs::read(&p).unwrap_or_default(),
            });
        }
        out
    }

    /// Waits until at least `n` messages were delivered.
    pub fn wait_messages(&self, n: usize, timeout: Duration) -> Vec<Captured> {
        wait_for(timeout, || {
            let m = self.messages();
            (m.len() >= n).then_some(m)
        })
        .unwrap_or_else(|| {
            panic!(
                "expected {n} delivered message(s), got {}; downstream log:\n{}",
                self.messages().len(),
                self.maillog()
            )
        })
    }
}

impl Drop for Postfix {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The message as Postfix hands it over, without the Received field Postfix added on top.
pub fn without_postfix_received(data: &[u8]) -> &[u8] {
    assert!(
        data.starts_with(b"Received: from "),
        "Postfix's Received field expected first"
    );
    let mut i = 0;
    // Skip the first field including its continuation lines.
    loop {
        let nl = data[i..]
            .iter()
            .position(|&b| b == b'\n')
            .map(|p| i + p + 1)
            .unwrap_or(data.len());
        i = nl;
        if i >= data.len() || !matches!(data[i], b' ' | b'\t') {
            break;
        }
    }
    &data[i..]
}
