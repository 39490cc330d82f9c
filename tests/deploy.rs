//! The deployment files as an operator relies on them: the systemd unit passes
//! `systemd-analyze verify` (with its paths pointed at the binary just built)
//! and carries the hardening a reviewer expects; the Dockerfile is a
//! multi-stage build that runs as a non-root user with config and state as
//! volumes. The daemon itself is started the way the unit starts it: under a
//! `NOTIFY_SOCKET` this test binds, it must send READY=1 once it listens, the
//! Dockerfile's HEALTHCHECK command must pass against it, and SIGTERM must end
//! it with exit status 0 (so `Restart=on-failure` does not restart a clean stop).
//!
//! No Docker engine runs here, so the image is never built; systemd is not PID 1
//! either, so the unit is verified offline, not started.

use std::collections::BTreeMap;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(repo().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

// ---- the systemd unit ----

/// `section -> key -> values` (a key may repeat).
fn unit_keys(text: &str) -> BTreeMap<String, BTreeMap<String, Vec<String>>> {
    let mut out: BTreeMap<String, BTreeMap<String, Vec<String>>> = BTreeMap::new();
    let mut section = String::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name.to_string();
            continue;
        }
        let (k, v) = line.split_once('=').unwrap_or_else(|| panic!("not key=value: {line}"));
        out.entry(section.clone())
            .or_default()
            .entry(k.trim().to_string())
            .or_default()
            .push(v.trim().to_string());
    }
    out
}

fn systemd_analyze() -> PathBuf {
    let found = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .chain([PathBuf::from("/usr/bin"), PathBuf::from("/bin")])
        .map(|d| d.join("systemd-analyze"))
        .find(|p| p.is_file());
    found.unwrap_or_else(|| {
        panic!(
            "systemd-analyze not found: it comes with the Debian package 'systemd' \
             (apt-get install -y systemd); this test cannot verify deploy/exogate.service without it"
        )
    })
}

/// The unit with every `/usr/local/bin/exogate` pointing at the binary this
/// build produced, written as `exogate.service` in a fresh directory.
fn unit_copy(text: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("exogate.service");
    std::fs::write(
        &path,
        text.replace("/usr/local/bin/exogate", env!("CARGO_BIN_EXE_exogate")),
    )
    .unwrap();
    (dir, path)
}

/// What `systemd-analyze verify` says about the unit at `path` (empty = clean).
/// It exits 0 on unknown keys and bad values, so its output is what counts.
fn verify(path: &Path) -> Vec<String> {
    let out = Command::new(systemd_analyze())
        .args(["verify", "--man=no"])
        .arg(path)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let mut problems: Vec<String> = text
        .lines()
        .filter(|l| l.contains("exogate.service") || l.contains(&*path.to_string_lossy()))
        .map(str::to_string)
        .collect();
    if !out.status.success() {
        problems.push(format!("systemd-analyze verify exited with {}: {text}", out.status));
    }
    problems
}

#[test]
fn systemd_analyze_verify_accepts_the_unit() {
    let (_dir, path) = unit_copy(&read("deploy/exogate.service"));
    assert_eq!(verify(&path), Vec::<String>::new());
}

#[test]
fn the_verify_check_notices_a_mistyped_key_and_a_missing_binary() {
    let text = read("deploy/exogate.service").replace("ProtectSystem=strict", "ProtectSytem=strict");
    let (_dir, path) = unit_copy(&text);
    let problems = verify(&path);
    assert!(problems.iter().any(|p| p.contains("ProtectSytem")), "{problems:?}");

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("exogate.service");
    std::fs::write(
        &path,
        read("deploy/exogate.service").replace("/usr/local/bin/exogate", "/nonexistent/exogate"),
    )
    .unwrap();
    assert!(!verify(&path).is_empty(), "a missing ExecStart binary went unnoticed");
}

#[test]
fn systemd_rates_the_unit_exposure_low() {
    let (_dir, path) = unit_copy(&read("deploy/exogate.service"));
    let out = Command::new(systemd_analyze())
        .args(["security", "--offline=true", "--no-pager"])
        .arg(&path)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    let line = text
        .lines()
        .find(|l| l.contains("Overall exposure level"))
        .unwrap_or_else(|| panic!("no exposure line in: {text}"));
    let score: f64 = line
        .split(':')
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("cannot read the score in {line:?}"));
    // 0 = fully confined, 10 = unprotected; systemd calls up to 2.9 "OK".
    assert!(score <= 2.5, "exposure {score}: {line}");
}

fn seconds(v: &str) -> u64 {
    let (n, mult) = if let Some(n) = v.strip_suffix("min") {
        (n, 60)
    } else if let Some(n) = v.strip_suffix('s') {
        (n, 1)
    } else {
        (v, 1)
    };
    n.parse::<u64>().unwrap_or_else(|_| panic!("not a duration: {v}")) * mult
}

#[test]
fn the_unit_carries_the_expected_start_stop_and_hardening_settings() {
    let keys = unit_keys(&read("deploy/exogate.service"));
    let service = &keys["Service"];
    let one = |k: &str| -> &str {
        let v = service.get(k).unwrap_or_else(|| panic!("[Service] {k} missing"));
        v.last().unwrap()
    };
    let expect = [
        ("Type", "notify"),
        ("NotifyAccess", "main"),
        (
            "ExecStart",
            "/usr/local/bin/exogate run --config /etc/exogate/gateway.toml",
        ),
        ("Restart", "on-failure"),
        ("KillSignal", "SIGTERM"),
        ("User", "exogate"),
        ("StateDirectory", "exogate"),
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("PrivateDevices", "yes"),
        ("ProtectKernelTunables", "yes"),
        ("ProtectKernelModules", "yes"),
        ("ProtectKernelLogs", "yes"),
        ("ProtectControlGroups", "yes"),
        ("RestrictAddressFamilies", "AF_INET AF_INET6 AF_UNIX"),
        ("AmbientCapabilities", "CAP_NET_BIND_SERVICE"),
        ("CapabilityBoundingSet", "CAP_NET_BIND_SERVICE"),
        ("RestrictSUIDSGID", "yes"),
        ("SystemCallArchitectures", "native"),
    ];
    for (k, v) in expect {
        assert_eq!(one(k), v, "[Service] {k}");
    }
    assert!(!service.contains_key("DynamicUser"), "the spool needs a stable owner");
    assert_eq!(
        service["ExecStartPre"],
        vec!["/usr/local/bin/exogate check-config --config /etc/exogate/gateway.toml"]
    );
    assert_eq!(service["ExecReload"].last().unwrap(), "/bin/kill -HUP $MAINPID");
    assert!(service["ReadWritePaths"].iter().any(|p| p == "/var/lib/exogate"));
    // server.shutdown_grace defaults to 30s, then 5s of 421s and 5s for the queue.
    assert!(
        seconds(one("TimeoutStopSec")) > 40,
        "TimeoutStopSec cuts the drain short"
    );
    // Two descriptors per connection at the default max_connections = 2000, plus the relay.
    assert!(one("LimitNOFILE").parse::<u64>().unwrap() >= 2 * 2000 + 200);
    assert_eq!(keys["Install"]["WantedBy"], vec!["multi-user.target"]);
}

// ---- the Dockerfile ----

/// Instructions with their arguments, continuation lines joined.
fn dockerfile() -> Vec<(String, String)> {
    let text = read("Dockerfile");
    let mut joined = String::new();
    let mut out = Vec::new();
    for line in text.lines() {
        let t = line.trim();
        if joined.is_empty() && (t.is_empty() || t.starts_with('#')) {
            continue;
        }
        if let Some(head) = t.strip_suffix('\\') {
            joined.push_str(head);
            joined.push(' ');
            continue;
        }
        joined.push_str(t);
        let (op, args) = joined.split_once(char::is_whitespace).unwrap_or((joined.as_str(), ""));
        out.push((op.to_ascii_uppercase(), args.trim().to_string()));
        joined.clear();
    }
    out
}

fn json_array(args: &str) -> Vec<String> {
    serde_json::from_str(args).unwrap_or_else(|e| panic!("not a JSON array ({e}): {args}"))
}

fn healthcheck_command() -> Vec<String> {
    let d = dockerfile();
    let (_, args) = d
        .iter()
        .find(|(op, _)| op == "HEALTHCHECK")
        .expect("HEALTHCHECK missing");
    let cmd = args.split_once("CMD ").expect("HEALTHCHECK without CMD").1;
    json_array(cmd)
}

#[test]
fn dockerfile_builds_in_two_stages_and_runs_unprivileged() {
    let d = dockerfile();
    let froms: Vec<&str> = d
        .iter()
        .filter(|(op, _)| op == "FROM")
        .map(|(_, a)| a.as_str())
        .collect();
    assert_eq!(froms, vec!["rust:1.95-slim-bookworm AS build", "debian:bookworm-slim"]);
    assert!(d.iter().any(|(op, a)| op == "COPY" && a.starts_with("--from=build ")));
    assert!(d.iter().any(|(op, a)| op == "RUN" && a.contains("ca-certificates")));

    // The last USER before ENTRYPOINT is the one the daemon runs as.
    let entry = d
        .iter()
        .position(|(op, _)| op == "ENTRYPOINT")
        .expect("ENTRYPOINT missing");
    let user = d[..entry]
        .iter()
        .rev()
        .find(|(op, _)| op == "USER")
        .map(|(_, a)| a.split(':').next().unwrap().to_string())
        .expect("no USER: the image would run as root");
    assert!(user != "root" && user != "0", "runs as {user}");
    assert_eq!(
        json_array(&d[entry].1),
        vec!["/usr/local/bin/exogate", "run", "--config", "/etc/exogate/gateway.toml"]
    );

    let volume = d.iter().find(|(op, _)| op == "VOLUME").expect("VOLUME missing");
    assert_eq!(json_array(&volume.1), vec!["/etc/exogate", "/var/lib/exogate"]);
    let expose = d.iter().find(|(op, _)| op == "EXPOSE").expect("EXPOSE missing");
    assert_eq!(expose.1.split_whitespace().collect::<Vec<_>>(), vec!["25", "8025"]);
    let probe = healthcheck_command();
    assert!(probe.join(" ").contains("127.0.0.1/8025") && probe.join(" ").contains("/healthz"));

    let ignore = read(".dockerignore");
    assert!(
        ignore.lines().any(|l| l.trim() == "target"),
        "the build context would carry target/"
    );
}

// ---- the daemon as the unit and the image start it ----

/// Kills the daemon if the test fails half way.
struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Runs the Dockerfile's HEALTHCHECK command against `port`.
fn probe(port: u16) -> bool {
    let cmd = healthcheck_command();
    let (program, args) = cmd.split_first().unwrap();
    let args: Vec<String> = args
        .iter()
        .map(|a| a.replace("127.0.0.1/8025", &format!("127.0.0.1/{port}")))
        .collect();
    Command::new(program)
        .args(&args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap()
        .success()
}

fn receive_until(sock: &UnixDatagram, needle: &str, seen: &mut Vec<String>) {
    let mut buf = [0u8; 4096];
    while !seen.iter().any(|m| m.contains(needle)) {
        match sock.recv(&mut buf) {
            Ok(n) => seen.push(String::from_utf8_lossy(&buf[..n]).into_owned()),
            Err(e) => panic!("no {needle} from the daemon ({e}); received so far: {seen:?}"),
        }
    }
}

#[test]
fn the_daemon_notifies_readiness_passes_the_healthcheck_and_stops_cleanly_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let admin = free_port();
    let config = dir.path().join("gateway.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nhostname = \"gw.example.net\"\nlisten = [\"127.0.0.1:0\"]\nstate_dir = \"state\"\n\
             [tls]\ngenerate = true\n[admission]\nallow = [\"127.0.0.0/8\"]\n\
             [admin]\nlisten = \"127.0.0.1:{admin}\"\n\
             [[tenant]]\nportal = \"contoso\"\ndomains = [\"contoso.com\"]\ndeliver_to = [\"127.0.0.1:9\"]\n"
        ),
    )
    .unwrap();
    let exe = env!("CARGO_BIN_EXE_exogate");

    // ExecStartPre.
    let pre = Command::new(exe)
        .args(["check-config", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(
        pre.status.success(),
        "check-config: {}",
        String::from_utf8_lossy(&pre.stderr)
    );

    let socket_path = dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&socket_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let child = Command::new(exe)
        .args(["run", "--config"])
        .arg(&config)
        .env("NOTIFY_SOCKET", &socket_path)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut daemon = Daemon(child);
    let pid = daemon.0.id();

    let mut seen = Vec::new();
    receive_until(&sock, "READY=1", &mut seen);
    let ready = seen.iter().find(|m| m.contains("READY=1")).unwrap();
    // NotifyAccess=main: the message must come from the main process.
    assert!(ready.contains(&format!("MAINPID={pid}")), "{ready}");
    assert!(probe(admin), "HEALTHCHECK failed against a running daemon");

    // SAFETY: plain kill(2) on the child this test spawned and still owns.
    assert_eq!(unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM) }, 0);
    receive_until(&sock, "STOPPING=1", &mut seen);
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(s) = daemon.0.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "the daemon did not exit after SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(
        status.code(),
        Some(0),
        "a clean stop must exit 0, or Restart=on-failure restarts it"
    );
    assert!(
        !probe(admin),
        "the HEALTHCHECK passes with no daemon: it checks nothing"
    );
}
