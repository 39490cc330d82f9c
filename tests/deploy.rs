//! The deployment files as an operator relies on them: the systemd unit passes
//! `systemd-analyze verify` (with its paths pointed at the binary just built)
//! and carries the hardening a reviewer expects; the Dockerfile is a
//! multi-stage build that runs as a non-root user with config and state as
//! volumes, and its build stage, replayed on the host from its own COPY lines,
//! builds from exactly what it copies. The daemon itself is started the way
//! the unit starts it: under a `NOTIFY_SOCKET` this test binds, it must send
//! READY=1 once it listens, the Dockerfile's HEALTHCHECK command must pass
//! against it, and SIGTERM must end it with exit status 0 (so
//! `Restart=on-failure` does not restart a clean stop).
//!
//! The image itself is built and run by deploy/container-test.sh, which needs a
//! container engine (podman); systemd is not PID 1 here, so the unit is
//! verified offline, not started.

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
    dockerfile_from(&read("Dockerfile"))
}

fn dockerfile_from(text: &str) -> Vec<(String, String)> {
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
fn dockerfile_builds_in_two_stages_and_runs_unprivileged_without_a_shell() {
    let d = dockerfile();
    let froms: Vec<&str> = d
        .iter()
        .filter(|(op, _)| op == "FROM")
        .map(|(_, a)| a.as_str())
        .collect();
    assert_eq!(
        froms,
        vec!["rust:1.95-slim-bookworm AS build", "gcr.io/distroless/cc-debian12"]
    );
    let runtime_from = d.iter().rposition(|(op, _)| op == "FROM").unwrap();
    let runtime = &d[runtime_from + 1..];
    // distroless has no shell: a RUN there would fail at build time, and an
    // exec-form HEALTHCHECK/ENTRYPOINT is the only kind that can work.
    assert!(
        !runtime.iter().any(|(op, _)| op == "RUN"),
        "RUN in the runtime stage needs a shell the image does not have"
    );
    assert!(
        runtime
            .iter()
            .any(|(op, a)| op == "COPY" && a.starts_with("--from=build "))
    );

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
    // The state volume starts owned by that user (a named volume copies it).
    assert!(
        runtime.iter().any(|(op, a)| op == "COPY"
            && a.contains(&format!("--chown={user}:"))
            && a.trim_end().ends_with(" /var/lib/exogate")),
        "/var/lib/exogate is not given to uid {user}"
    );

    let volume = d.iter().find(|(op, _)| op == "VOLUME").expect("VOLUME missing");
    assert_eq!(json_array(&volume.1), vec!["/etc/exogate", "/var/lib/exogate"]);
    let expose = d.iter().find(|(op, _)| op == "EXPOSE").expect("EXPOSE missing");
    assert_eq!(expose.1.split_whitespace().collect::<Vec<_>>(), vec!["25", "8025"]);
    let stop = d.iter().find(|(op, _)| op == "STOPSIGNAL").expect("STOPSIGNAL missing");
    assert_eq!(stop.1, "SIGTERM");
    let probe = healthcheck_command();
    // The daemon's own binary probes: nothing else to copy, nothing else to build.
    assert_eq!(probe, vec!["/usr/local/bin/exogate", "healthcheck", "127.0.0.1:8025"]);
    assert!(
        runtime
            .iter()
            .any(|(op, a)| op == "COPY" && a.trim_end().ends_with(" /usr/local/bin/exogate")),
        "the HEALTHCHECK program is not in the image"
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

/// Runs the Dockerfile's HEALTHCHECK command against `port`, with the image's
/// binary path pointed at the one just built.
fn probe(port: u16) -> bool {
    let cmd = healthcheck_command();
    let (program, args) = cmd.split_first().unwrap();
    assert_eq!(program, "/usr/local/bin/exogate");
    let args: Vec<String> = args
        .iter()
        .map(|a| a.replace("127.0.0.1:8025", &format!("127.0.0.1:{port}")))
        .collect();
    Command::new(env!("CARGO_BIN_EXE_exogate"))
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

// ---- the image's build stage, replayed from its own COPY lines ----
//
// A `docker build` sees only the files its build context keeps (.dockerignore)
// and its COPY lines bring in, so a file the manifest needs but nobody copies
// breaks the image and nothing else. This replays the stage named `build` on
// the host: a fresh folder stands in for the stage's root, COPY brings exactly
// the paths it names from the repository (minus what .dockerignore leaves out
// of the context), and RUN runs each command verbatim with `sh -c` in WORKDIR.
// What differs from a real build, and why it does not weaken the check:
// - cargo runs offline against the host's registry cache (CARGO_NET_OFFLINE),
//   with `--locked` as the Dockerfile says, so Cargo.lock must suffice;
// - the release profile is overridden by environment to opt-level 0 without
//   debug info, so the suite pays a debug-speed build, not an optimised one.
//   What the compiler reads (every module, include_*!, build script, bench and
//   bin declared in the manifest) and what the stage produces at which path do
//   not depend on the optimisation level;
// - `target/` is a link to a folder reused between runs (only the crate itself
//   is rebuilt when its sources change), so the path the runtime stage copies
//   from still exists where the Dockerfile expects it;
// - the base image's own environment is the host's (the same toolchain).
// RUN lines must use paths relative to WORKDIR: an absolute path would touch
// the host, so the replay refuses it.

/// A `.dockerignore` as Docker reads it: the last matching pattern wins, `!`
/// re-includes, and a pattern that matches a folder covers what is under it.
struct DockerIgnore(Vec<(bool, Vec<String>)>);

impl DockerIgnore {
    fn parse(text: &str) -> DockerIgnore {
        let rules = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(|l| {
                let (keep, pattern) = match l.strip_prefix('!') {
                    Some(p) => (true, p.trim()),
                    None => (false, l),
                };
                let parts = pattern
                    .trim_matches('/')
                    .split('/')
                    .filter(|p| !p.is_empty() && *p != ".")
                    .map(str::to_string)
                    .collect();
                (keep, parts)
            })
            .collect();
        DockerIgnore(rules)
    }

    /// Whether the context leaves `rel` (a path relative to the context root) out.
    fn excludes(&self, rel: &Path) -> bool {
        let parts: Vec<String> = rel
            .components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect();
        let mut excluded = false;
        for (keep, pattern) in &self.0 {
            let hit = (1..=parts.len()).any(|n| path_match(pattern, &parts[..n]));
            if hit {
                excluded = !keep;
            }
        }
        excluded
    }

    /// Whether a `!` rule could re-include something under the folder `rel`
    /// (Docker walks into a left-out folder only then).
    fn may_reinclude_under(&self, rel: &Path) -> bool {
        let parts: Vec<String> = rel
            .components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect();
        self.0.iter().filter(|(keep, _)| *keep).any(|(_, pattern)| {
            let n = parts.len();
            let anywhere = pattern.iter().take(n + 1).any(|p| p == "**");
            anywhere || (pattern.len() > n && path_match(&pattern[..n], &parts))
        })
    }
}

/// Go's filepath.Match per path element, plus `**` for any number of elements.
fn path_match(pattern: &[String], path: &[String]) -> bool {
    match pattern.split_first() {
        None => path.is_empty(),
        Some((first, rest)) if first == "**" => (0..=path.len()).any(|skip| path_match(rest, &path[skip..])),
        Some((first, rest)) => {
            !path.is_empty() && glob(first.as_bytes(), path[0].as_bytes()) && path_match(rest, &path[1..])
        }
    }
}

fn glob(p: &[u8], s: &[u8]) -> bool {
    match (p.first(), s.first()) {
        (None, None) => true,
        (Some(b'*'), _) => glob(&p[1..], s) || (!s.is_empty() && glob(p, &s[1..])),
        (Some(b'?'), Some(_)) => glob(&p[1..], &s[1..]),
        (Some(a), Some(b)) if a == b => glob(&p[1..], &s[1..]),
        _ => false,
    }
}

/// Every file under `rel` (a file or a folder) that the build context keeps.
fn context_files(ignore: &DockerIgnore, rel: &Path) -> Vec<PathBuf> {
    let full = repo().join(rel);
    if ignore.excludes(rel) && !(full.is_dir() && ignore.may_reinclude_under(rel)) {
        return vec![];
    }
    if !full.is_dir() {
        return if full.exists() { vec![rel.to_path_buf()] } else { vec![] };
    }
    let mut out = Vec::new();
    let mut entries: Vec<_> = std::fs::read_dir(&full)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    entries.sort();
    for name in entries {
        let child = rel.join(name);
        // A folder left out may still hold a re-included file (`!dir/file`).
        out.extend(context_files(ignore, &child));
    }
    out
}

/// The instructions of the stage `FROM … AS name`, up to the next FROM.
fn stage(d: &[(String, String)], name: &str) -> Vec<(String, String)> {
    let start = d
        .iter()
        .position(|(op, a)| {
            op == "FROM" && {
                let w: Vec<&str> = a.split_whitespace().collect();
                w.len() == 3 && w[1].eq_ignore_ascii_case("as") && w[2] == name
            }
        })
        .unwrap_or_else(|| panic!("no `FROM … AS {name}` stage in the Dockerfile"));
    d[start + 1..]
        .iter()
        .take_while(|(op, _)| op != "FROM")
        .cloned()
        .collect()
}

/// A path inside the stand-in root for `path` as the stage sees it.
fn in_stage(root: &Path, workdir: &Path, path: &str) -> PathBuf {
    let p = Path::new(path);
    let abs = if p.is_absolute() {
        p.to_path_buf()
    } else {
        workdir.join(p)
    };
    root.join(abs.strip_prefix("/").unwrap())
}

fn copy_into_stage(ignore: &DockerIgnore, root: &Path, workdir: &Path, args: &str) {
    let words: Vec<&str> = args.split_whitespace().collect();
    assert!(
        !words.iter().any(|w| w.starts_with("--from")),
        "the replay cannot COPY from another stage or image: {args}"
    );
    let words: Vec<&str> = words.into_iter().filter(|w| !w.starts_with("--")).collect();
    let (dest, sources) = words.split_last().expect("COPY without arguments");
    assert!(!sources.is_empty(), "COPY without a source: {args}");
    let to_dir = dest.ends_with('/') || sources.len() > 1;
    for src in sources {
        assert!(
            !src.contains(['*', '?', '[']),
            "the replay does not expand wildcards: {src}"
        );
        let rel = Path::new(src.trim_start_matches("./"));
        let files = context_files(ignore, rel);
        assert!(
            !files.is_empty(),
            "COPY {src}: not in the build context (missing, or left out by .dockerignore)"
        );
        let src_is_dir = repo().join(rel).is_dir();
        for file in files {
            let target = if src_is_dir {
                in_stage(root, workdir, dest).join(file.strip_prefix(rel).unwrap())
            } else if to_dir {
                in_stage(root, workdir, dest).join(rel.file_name().unwrap())
            } else {
                in_stage(root, workdir, dest)
            };
            std::fs::create_dir_all(target.parent().unwrap()).unwrap();
            std::fs::copy(repo().join(&file), &target).unwrap();
        }
    }
}

fn run_in_stage(cwd: &Path, env: &[(String, String)], command: &str) -> Result<(), String> {
    let absolute = command
        .split(|c: char| c.is_whitespace() || c == '=' || c == '\'' || c == '"')
        .find(|w| w.starts_with('/'));
    assert!(
        absolute.is_none(),
        "RUN uses the absolute path {absolute:?}; the replay would run it on the host. \
         Use paths relative to WORKDIR: {command}"
    );
    let argv: Vec<String> = if command.starts_with('[') {
        json_array(command)
    } else {
        vec!["sh".into(), "-c".into(), command.into()]
    };
    std::fs::create_dir_all(cwd).unwrap();
    let out = Command::new(&argv[0])
        .args(&argv[1..])
        .current_dir(cwd)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("CARGO_BUILD_TARGET_DIR")
        .env("CARGO_NET_OFFLINE", "true")
        .env("CARGO_PROFILE_RELEASE_OPT_LEVEL", "0")
        .env("CARGO_PROFILE_RELEASE_DEBUG", "false")
        .env("CARGO_PROFILE_RELEASE_LTO", "false")
        .env("CARGO_PROFILE_RELEASE_CODEGEN_UNITS", "16")
        .output()
        .unwrap();
    if out.status.success() {
        return Ok(());
    }
    Err(format!(
        "RUN {command}\nfailed in the replayed build stage ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    ))
}

/// `ENV K=V K2=V2` (values without spaces) or the legacy `ENV K V`.
fn env_pairs(args: &str) -> Vec<(String, String)> {
    let first = args.split_whitespace().next().unwrap_or("");
    if !first.contains('=') {
        let (k, v) = args.split_once(' ').expect("ENV without a value");
        return vec![(k.into(), v.trim().into())];
    }
    args.split_whitespace()
        .map(|kv| {
            let (k, v) = kv
                .split_once('=')
                .unwrap_or_else(|| panic!("ENV {args}: {kv} is not K=V"));
            assert!(
                !v.starts_with(['"', '\'']),
                "the replay does not read quoted ENV values: {args}"
            );
            (k.into(), v.into())
        })
        .collect()
}

/// Replays the stage `build` of `instructions` into `root`; a failed RUN is an error.
fn replay_build_stage(instructions: &[(String, String)], root: &Path, target: &Path) -> Result<(), String> {
    let ignore = DockerIgnore::parse(&std::fs::read_to_string(repo().join(".dockerignore")).unwrap_or_default());
    let mut workdir = PathBuf::from("/");
    let mut env: Vec<(String, String)> = Vec::new();
    for (op, args) in stage(instructions, "build") {
        match op.as_str() {
            "WORKDIR" => {
                workdir = workdir.join(&args);
                let dir = in_stage(root, &workdir, ".");
                std::fs::create_dir_all(&dir).unwrap();
                // target/ inside WORKDIR is reused between runs (see above).
                let link = dir.join("target");
                if !link.exists() {
                    std::os::unix::fs::symlink(target, &link).unwrap();
                }
            }
            "ENV" => env.extend(env_pairs(&args)),
            "COPY" | "ADD" => copy_into_stage(&ignore, root, &workdir, &args),
            "RUN" => run_in_stage(&in_stage(root, &workdir, "."), &env, &args)?,
            "ARG" | "LABEL" | "SHELL" | "USER" => {}
            other => panic!("the replay does not know {other} in the build stage"),
        }
    }
    Ok(())
}

/// A clean stand-in root for the stage (a fresh folder per `name`) and the
/// target folder shared by every replay.
fn replay_dirs(name: &str) -> (PathBuf, PathBuf) {
    let base = Path::new(env!("CARGO_TARGET_TMPDIR")).join("dockerfile-replay");
    let root = base.join(name);
    let target = base.join("target");
    if root.exists() {
        std::fs::remove_dir_all(&root).unwrap();
    }
    std::fs::create_dir_all(&root).unwrap();
    std::fs::create_dir_all(&target).unwrap();
    (root, target)
}

#[test]
fn the_build_stage_builds_from_exactly_what_it_copies() {
    let (root, target) = replay_dirs("root");
    let d = dockerfile();
    if let Err(e) = replay_build_stage(&d, &root, &target) {
        panic!("{e}");
    }

    // Every file the later stages take from the build stage is there.
    for (_, args) in d
        .iter()
        .filter(|(op, a)| op == "COPY" && a.starts_with("--from=build "))
    {
        let words: Vec<&str> = args.split_whitespace().filter(|w| !w.starts_with("--")).collect();
        for src in &words[..words.len() - 1] {
            let path = in_stage(&root, Path::new("/"), src);
            assert!(
                path.exists(),
                "COPY --from=build {src}: the build stage did not produce it"
            );
        }
    }
}

#[test]
fn the_replay_notices_a_file_the_manifest_needs_but_nobody_copies() {
    // The Dockerfile without whatever copies the bench the manifest declares:
    // the build must stop at the manifest, as `docker build` would.
    let text: String = read("Dockerfile")
        .lines()
        .filter(|l| !(l.trim_start().starts_with("COPY") && l.contains("benches")))
        .map(|l| format!("{l}\n"))
        .collect();
    let (root, target) = replay_dirs("root-without-bench");
    let err = replay_build_stage(&dockerfile_from(&text), &root, &target)
        .expect_err("the stage built without the bench the manifest declares");
    assert!(
        err.contains("can't find `scan` bench")
            || err.contains("can't find `auth` bench")
            || err.contains("can't find `events` bench"),
        "{err}"
    );
}

#[test]
fn the_build_context_holds_only_what_the_dockerfile_copies() {
    let ignore = DockerIgnore::parse(&read(".dockerignore"));
    let context = context_files(&ignore, Path::new(""));
    let mut copied: Vec<PathBuf> = Vec::new();
    for (_, args) in dockerfile()
        .iter()
        .filter(|(op, a)| (op == "COPY" || op == "ADD") && !a.contains("--from"))
    {
        let words: Vec<&str> = args.split_whitespace().filter(|w| !w.starts_with("--")).collect();
        for src in &words[..words.len() - 1] {
            copied.extend(context_files(&ignore, Path::new(src.trim_start_matches("./"))));
        }
    }
    copied.sort();
    copied.dedup();
    // The builder always receives these two; COPY never takes them.
    let builder_own = [Path::new("Dockerfile"), Path::new(".dockerignore")];
    let extra: Vec<&PathBuf> = context
        .iter()
        .filter(|f| !copied.contains(f) && !builder_own.contains(&f.as_path()))
        .collect();
    assert!(
        extra.is_empty(),
        "the build context carries {} files no COPY uses (.dockerignore should leave them out), e.g. {:?}",
        extra.len(),
        &extra[..extra.len().min(10)]
    );
}

#[test]
fn the_healthcheck_fails_on_another_status_and_on_silence() {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (done, wait_done) = std::sync::mpsc::channel::<()>();
    let server = std::thread::spawn(move || {
        // First a 503, then a peer that accepts and never answers.
        let (mut s, _) = listener.accept().unwrap();
        let mut buf = [0u8; 1024];
        let _ = s.read(&mut buf);
        s.write_all(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n")
            .unwrap();
        drop(s);
        let (silent, _) = listener.accept().unwrap();
        let _ = wait_done.recv();
        drop(silent);
    });
    assert!(!probe(port), "the HEALTHCHECK passed on a 503");
    // The silent peer holds on until the probe has given up: the probe must
    // end by itself (a hung probe would only be cut by HEALTHCHECK --timeout).
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || tx.send(probe(port)));
    let passed = rx
        .recv_timeout(Duration::from_secs(120))
        .expect("the HEALTHCHECK program hangs on a peer that never answers");
    assert!(!passed, "the HEALTHCHECK passed on a silent peer");
    done.send(()).unwrap();
    server.join().unwrap();
}

// ---- the compose file's gateway configuration ----

/// `exogate check-config` on deploy/compose/gateway/gateway.toml, with its
/// /etc/exogate paths pointed at a folder holding a real certificate and key:
/// no problem at all, the `[store]` table included (the shared PostgreSQL
/// store with its password from the compose secret).
#[test]
fn the_compose_gateway_config_passes_check_config() {
    let dir = tempfile::tempdir().unwrap();
    let pair = rcgen::generate_simple_self_signed(vec!["gw.example.net".to_string()]).unwrap();
    std::fs::write(dir.path().join("gw.pem"), pair.cert.pem()).unwrap();
    std::fs::write(dir.path().join("gw.key"), pair.signing_key.serialize_pem()).unwrap();
    let text =
        read("deploy/compose/gateway/gateway.toml").replace("/etc/exogate/", &format!("{}/", dir.path().display()));
    assert!(
        text.contains("[store]\nurl = \"postgresql://exogate@postgres:5432/exogate\""),
        "{text}"
    );
    let config = dir.path().join("gateway.toml");
    std::fs::write(&config, text).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_exogate"))
        .args(["check-config", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
}
