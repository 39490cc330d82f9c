//! The gateway as a real process: config written to a temporary folder,
//! listening on port 0, its addresses read from its log, stopped on drop.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use super::pki::{Leaf, Pki};
use super::wait_for;

/// What a test wants in the gateway's configuration.
#[derive(Clone)]
pub struct Options {
    /// `deliver_to` of the tenant "contoso" (domains contoso.com, contoso.onmicrosoft.com).
    pub deliver_to: Vec<String>,
    pub mode: &'static str,
    pub tenant_mode: &'static str,
    pub tenant_id: String,
    pub allow: Vec<String>,
    pub source_ips: Vec<String>,
    pub retry: Vec<String>,
    pub max_age: String,
    pub dsn_retry: Vec<String>,
    pub client_cert_names: Vec<String>,
    pub tls_require: bool,
    pub max_message_size: u64,
    pub max_recipients: u64,
    pub max_connections: u64,
    pub max_connections_per_ip: u64,
    pub command_timeout: String,
    pub admin: bool,
    pub log_json: bool,
    /// Extra `[log]` lines.
    pub log_extra: String,
    /// Extra `[server]` lines.
    pub server_extra: String,
    /// Extra `[relay]` lines.
    pub relay_extra: String,
    /// Appended at the end (new tables only: more tenants, policies).
    pub extra: String,
    /// Replaces the default policy section when set.
    pub policy: Option<String>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            deliver_to: vec!["127.0.0.1:9".into()],
            mode: "queue",
            tenant_mode: "inline",
            tenant_id: String::new(),
            allow: vec!["127.0.0.0/8".into()],
            source_ips: vec![],
            retry: vec!["1s".into()],
            max_age: "2d".into(),
            dsn_retry: vec!["1s".into()],
            client_cert_names: vec![],
            tls_require: true,
            max_message_size: 157286400,
            max_recipients: 1000,
            max_connections: 2000,
            max_connections_per_ip: 200,
            command_timeout: "5m".into(),
            admin: true,
            log_json: false,
            server_extra: String::new(),
            log_extra: String::new(),
            relay_extra: String::new(),
            extra: String::new(),
            policy: None,
        }
    }
}

/// A TOML list of strings; an item written as an inline table (`{ … }`) goes in as it is.
fn list(items: &[String]) -> String {
    let quoted: Vec<String> = items
        .iter()
        .map(|s| {
            if s.starts_with('{') {
                s.clone()
            } else {
                format!("\"{s}\"")
            }
        })
        .collect();
    format!("[{}]", quoted.join(", "))
}

/// The config text for `opts`, with certificates from `pki` and state in `dir`.
pub fn config_text(dir: &Path, pki: &Pki, server: &Leaf, opts: &Options) -> String {
    let policy = opts.policy.clone().unwrap_or_else(|| {
        "[policy.default]\njunk_score = 5.0\nquarantine_score = 10.0\nreject_score = 20.0\n\
         [[policy.default.check]]\nkind = \"attachments\"\n[[policy.default.check]]\nkind = \"malware\"\n\
         [[policy.default.check]]\nkind = \"impersonation\"\n[[policy.default.check]]\nkind = \"urls\"\n\
         [[policy.default.check]]\nkind = \"content\"\n[[policy.default.check]]\nkind = \"dlp\"\n"
            .to_string()
    });
    format!(
        r#"
[server]
hostname = "gw.test"
listen = ["127.0.0.1:0"]
state_dir = "{state}"
max_message_size = {max_size}
max_recipients = {max_rcpt}
max_connections = {max_conn}
max_connections_per_ip = {max_per_ip}
command_timeout = "{cmd_timeout}"
shutdown_grace = "10s"
{server_extra}

[tls]
cert = "{cert}"
key = "{key}"
client_cert = "optional"
client_ca = "{ca}"
require = {tls_require}
client_cert_names = {names}

[admission]
allow = {allow}

[delivery]
mode = "{mode}"
retry = {retry}
max_age = "{max_age}"
dsn_retry = {dsn_retry}

[relay]
ca = "{ca}"
source_ips = {source_ips}
connect_timeout = "5s"
command_timeout = "30s"
{relay_extra}

[admin]
listen = "{admin}"

[log]
level = "info,exogate=debug"
format = "{log_format}"
{log_extra}

[[tenant]]
portal = "contoso"
domains = ["contoso.com", "contoso.onmicrosoft.com"]
tenant_id = "{tenant_id}"
deliver_to = {deliver_to}
mode = "{tenant_mode}"

{policy}
{extra}
"#,
        state = dir.join("state").display(),
        max_size = opts.max_message_size,
        max_rcpt = opts.max_recipients,
        max_conn = opts.max_connections,
        max_per_ip = opts.max_connections_per_ip,
        cmd_timeout = opts.command_timeout,
        server_extra = opts.server_extra,
        log_extra = opts.log_extra,
        cert = server.cert.display(),
        key = server.key.display(),
        ca = pki.ca.display(),
        names = list(&opts.client_cert_names),
        tls_require = opts.tls_require,
        allow = list(&opts.allow),
        mode = opts.mode,
        retry = list(&opts.retry),
        max_age = opts.max_age,
        dsn_retry = list(&opts.dsn_retry),
        source_ips = list(&opts.source_ips),
        relay_extra = opts.relay_extra,
        admin = if opts.admin { "127.0.0.1:0" } else { "" },
        log_format = if opts.log_json { "json" } else { "text" },
        tenant_id = opts.tenant_id,
        deliver_to = list(&opts.deliver_to),
        tenant_mode = opts.tenant_mode,
        policy = policy,
        extra = opts.extra,
    )
}

/// A running gateway process.
pub struct Gateway {
    pub dir: PathBuf,
    pub config: PathBuf,
    child: Option<Child>,
    pub smtp: SocketAddr,
    pub admin: Option<SocketAddr>,
    /// The `[web]` listener, when configured.
    pub web: Option<SocketAddr>,
    log: Arc<Mutex<String>>,
    /// Whether the gateway's output is read, held, or closed.
    log_reader: Arc<(Mutex<Reader>, Condvar)>,
}

/// What the test does with the gateway's output (standard output and error).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Reader {
    /// Read as it comes, into [`Gateway::log`].
    Reading,
    /// Not read: the pipe fills and the gateway's writes to it block (a stuck journald).
    Paused,
    /// The reading end closed at the next line: writes fail (a journald restarted).
    Closed,
}

pub fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_exogate")
}

impl Gateway {
    /// Writes `config` to `dir/gateway.toml` and starts the gateway on it.
    pub fn start_with_text(dir: &Path, config: &str) -> Gateway {
        let path = dir.join("gateway.toml");
        std::fs::write(&path, config).unwrap();
        Gateway::start_at(dir, &path)
    }

    /// Starts (or restarts) the gateway on an existing config file.
    pub fn start_at(dir: &Path, config: &Path) -> Gateway {
        Gateway::spawn(dir, config, &[])
    }

    pub fn spawn(dir: &Path, config: &Path, env: &[(&str, &str)]) -> Gateway {
        Gateway::spawn_limited(dir, config, env, None)
    }

    /// Like `spawn`, with the process's open-file limit set to `nofile`.
    pub fn spawn_limited(dir: &Path, config: &Path, env: &[(&str, &str)], nofile: Option<u64>) -> Gateway {
        let mut cmd = Command::new(binary());
        if let Some(limit) = nofile {
            use std::os::unix::process::CommandExt;
            // SAFETY: setrlimit is async-signal-safe and touches only the child.
            unsafe {
                cmd.pre_exec(move || {
                    let rl = libc::rlimit {
                        rlim_cur: limit,
                        rlim_max: limit,
                    };
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &rl) == 0 {
                        Ok(())
                    } else {
                        Err(std::io::Error::last_os_error())
                    }
                });
            }
        }
        cmd.args(["run", "--config"]).arg(config);
        // Standard output and error are one stream, as under systemd (both
        // to the journal): what the gateway prints anywhere is in its log.
        let (stderr, writer) = std::io::pipe().expect("a pipe for the gateway's output");
        cmd.env("RUST_LOG", "info,exogate=debug")
            .stdout(writer.try_clone().expect("the pipe's writing end"))
            .stderr(writer);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("start exogate");
        // The parent's copies of the writing end must close, or the reader never sees the end.
        drop(cmd);
        let log = Arc::new(Mutex::new(String::new()));
        let sink = log.clone();
        let log_file = dir.join("gateway.log");
        let log_reader = Arc::new((Mutex::new(Reader::Reading), Condvar::new()));
        let gate = log_reader.clone();
        std::thread::spawn(move || {
            let mut file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(log_file)
                .ok();
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let (state, changed) = &*gate;
                let now = changed
                    .wait_while(state.lock().unwrap(), |r| *r == Reader::Paused)
                    .unwrap();
                if *now == Reader::Closed {
                    break;
                }
                if let Some(f) = file.as_mut() {
                    use std::io::Write;
                    let _ = writeln!(f, "{line}");
                }
                let mut l = sink.lock().unwrap();
                l.push_str(&line);
                l.push('\n');
            }
        });
        let mut gw = Gateway {
            dir: dir.to_path_buf(),
            config: config.to_path_buf(),
            child: Some(child),
            smtp: "0.0.0.0:0".parse().unwrap(),
            admin: None,
            web: None,
            log,
            log_reader,
        };
        let addrs = wait_for(Duration::from_secs(30), || {
            let text = gw.log();
            let smtp =
                addr_after(&text, "listening for SMTP addr=").or_else(|| json_addr(&text, "listening for SMTP"))?;
            let admin = addr_after(&text, "listening for admin HTTP addr=")
                .or_else(|| json_addr(&text, "listening for admin HTTP"));
            let web = addr_after(&text, "listening for web addr=").or_else(|| json_addr(&text, "listening for web"));
            Some((smtp, admin, web))
        });
        match addrs {
            Some((smtp, admin, web)) => {
                gw.smtp = smtp;
                gw.admin = admin;
                gw.web = web;
            }
            None => {
                let status = gw.child.as_mut().unwrap().try_wait();
                panic!("gateway did not start ({status:?}); log:\n{}", gw.log());
            }
        }
        gw
    }

    /// Pauses, resumes or closes the reading of the gateway's output.
    pub fn set_log_reader(&self, reader: Reader) {
        let (state, changed) = &*self.log_reader;
        *state.lock().unwrap() = reader;
        changed.notify_all();
    }

    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Waits until the log contains `needle` (true) or `timeout` passes (false).
    pub fn wait_log(&self, needle: &str, timeout: Duration) -> bool {
        wait_for(timeout, || self.log().contains(needle).then_some(())).is_some()
    }

    /// Number of log lines containing `needle`.
    pub fn count_log(&self, needle: &str) -> usize {
        self.log().lines().filter(|l| l.contains(needle)).count()
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    /// The most memory the gateway has held resident so far (VmHWM), in KiB.
    pub fn peak_memory_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        let line = status
            .lines()
            .find(|l| l.starts_with("VmHWM:"))
            .unwrap_or_else(|| panic!("no VmHWM in {status}"));
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    }

    pub fn signal(&self, signal: i32) {
        // SAFETY: sending a signal to our own child process.
        unsafe {
            libc::kill(self.pid() as i32, signal);
        }
    }

    /// SIGKILL, and reap.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Waits for the process to exit; returns its exit code.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        let child = self.child.as_mut()?;
        let status = wait_for(timeout, || child.try_wait().ok().flatten())?;
        self.child = None;
        status.code()
    }

    /// GET on the admin endpoint; returns (status, body).
    pub fn http_get(&self, path: &str) -> (u16, String) {
        use std::io::{Read, Write};
        // The admin listener may log its address just after the SMTP one.
        let admin = self.admin.or_else(|| {
            wait_for(Duration::from_secs(10), || {
                let text = self.log();
                addr_after(&text, "listening for admin HTTP addr=")
                    .or_else(|| json_addr(&text, "listening for admin HTTP"))
            })
        });
        let mut s = std::net::TcpStream::connect(admin.expect("admin enabled")).unwrap();
        write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let mut text = String::new();
        s.read_to_string(&mut text).unwrap();
        let status = text.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
        let body = text
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_string())
            .unwrap_or_default();
        (status, body)
    }

    /// Runs `exogate ARGS --config <this config>`; returns (exit code, stdout, stderr).
    pub fn cli(&self, args: &[&str]) -> (i32, String, String) {
        let out = Command::new(binary())
            .args(args)
            .arg("--config")
            .arg(&self.config)
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }
}

/// The `addr` field of the JSON log line whose message is `message`.
fn json_addr(text: &str, message: &str) -> Option<SocketAddr> {
    text.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["message"] == message)
        .and_then(|v| v["addr"].as_str().and_then(|a| a.parse().ok()))
}

fn addr_after(text: &str, marker: &str) -> Option<SocketAddr> {
    let start = text.find(marker)? + marker.len();
    let rest = &text[start..];
    let end = rest.find(|c: char| c.is_whitespace()).unwrap_or(rest.len());
    rest[..end].parse().ok()
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!("---- gateway log ----\n{}", self.log());
        }
    }
}
