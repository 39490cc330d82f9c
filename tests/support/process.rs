//! Running a real server for a test: its output goes to a log file, readiness
//! is polled (never slept for), an early exit or a timeout panics with the
//! server's log, and the server is stopped when its handle is dropped.
//!
//! A handle kept in a `static` (one server shared by a test binary) is never
//! dropped, so every server also gets a watchdog: a small `sh` whose stdin is
//! a pipe that only this test process holds (Rust opens pipes close-on-exec,
//! so no other child inherits it). When the test process ends in any way —
//! normal exit, panic, abort, SIGKILL — the kernel closes the pipe, the
//! watchdog reads EOF, signals the server, waits up to 10 s, kills it, and
//! removes its folder. This avoids `PR_SET_PDEATHSIG`, which fires when the
//! spawning *thread* ends (test threads end all the time). Dropping a handle
//! disarms its watchdog first, so it never signals a reused pid.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

const WATCHDOG: &str = r#"
trap '' INT HUP
while read -r _; do :; done
kill -s "$2" "$1" 2>/dev/null
i=0
while kill -0 "$1" 2>/dev/null && [ "$i" -lt 100 ]; do sleep 0.1; i=$((i+1)); done
kill -s KILL "$1" 2>/dev/null
[ -n "$3" ] && rm -rf -- "$3"
"#;

/// Stops process `pid` with `signal` and removes `dir` once this test process
/// is gone, unless disarmed.
struct Watchdog {
    child: Child,
    _pipe: ChildStdin,
}

impl Watchdog {
    fn arm(pid: u32, signal: &str, dir: Option<&Path>) -> Watchdog {
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(WATCHDOG)
            .arg("watchdog")
            .arg(pid.to_string())
            .arg(signal)
            .arg(dir.map(|d| d.as_os_str().to_owned()).unwrap_or_default())
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("sh for the server watchdog");
        let pipe = child.stdin.take().unwrap();
        Watchdog { child, _pipe: pipe }
    }

    fn disarm(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A server process started for a test.
pub struct Server {
    name: String,
    child: Option<Child>,
    watchdog: Option<Watchdog>,
    signal: i32,
    log: PathBuf,
}

impl Server {
    /// Spawns `cmd` with stdout and stderr appended to `log` and stdin closed.
    /// `signal` (e.g. `libc::SIGTERM`) asks it to stop; `dir` is removed by the
    /// watchdog if the test process ends without dropping the handle.
    pub fn spawn(name: &str, mut cmd: Command, log: &Path, signal: i32, dir: Option<&Path>) -> Server {
        let out = File::options()
            .create(true)
            .append(true)
            .open(log)
            .unwrap_or_else(|e| panic!("{name}: cannot open its log {}: {e}", log.display()));
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap_or_else(|e| panic!("{name}: cannot start {:?}: {e}", cmd.get_program()));
        let signame = match signal {
            libc::SIGINT => "INT",
            libc::SIGQUIT => "QUIT",
            libc::SIGUSR1 => "USR1",
            _ => "TERM",
        };
        let watchdog = Watchdog::arm(child.id(), signame, dir);
        Server {
            name: name.to_string(),
            child: Some(child),
            watchdog: Some(watchdog),
            signal,
            log: log.to_path_buf(),
        }
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// Polls `ready` every 50 ms until it says yes. Panics with `logs()` when
    /// the server exits first or `timeout` passes.
    pub fn wait_ready(&mut self, timeout: Duration, logs: impl Fn() -> String, mut ready: impl FnMut() -> bool) {
        let start = Instant::now();
        loop {
            if ready() {
                return;
            }
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                panic!("{} exited while starting ({status}):\n{}", self.name, logs());
            }
            if start.elapsed() > timeout {
                panic!("{} not ready after {timeout:?}:\n{}", self.name, logs());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Whether the process is still running.
    pub fn running(&mut self) -> bool {
        matches!(self.child.as_mut().map(|c| c.try_wait()), Some(Ok(None)))
    }

    /// The tail (last `max` bytes) of what the server wrote to stdout/stderr.
    pub fn output(&self, max: usize) -> String {
        tail(&self.log, max)
    }

    /// Asks the server to stop, waits up to 10 s, then kills it.
    pub fn stop(&mut self) {
        if let Some(w) = self.watchdog.take() {
            w.disarm();
        }
        let Some(mut child) = self.child.take() else { return };
        if child.try_wait().ok().flatten().is_none() {
            // SAFETY: kill(2) on our own child, which has not been reaped yet.
            unsafe { libc::kill(child.id() as i32, self.signal) };
            let deadline = Instant::now() + Duration::from_secs(10);
            while child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The last `max` bytes of a text file (empty when missing), for panic messages.
pub fn tail(path: &Path, max: usize) -> String {
    let text = std::fs::read(path).unwrap_or_default();
    let from = text.len().saturating_sub(max);
    let mut s = String::from_utf8_lossy(&text[from..]).into_owned();
    if from > 0 {
        s.insert_str(0, "[…]");
    }
    format!("--- {}\n{s}", path.display())
}

/// The uid and gid of `nobody`, to run servers that refuse root (initdb).
pub fn nobody() -> (u32, u32) {
    // SAFETY: getpwnam_r (thread-safe, unlike getpwnam) writes into `pw` and
    // `buf`, both ours and large enough; `found` points at `pw` or is null.
    unsafe {
        let mut pw: libc::passwd = std::mem::zeroed();
        let mut buf = [0 as libc::c_char; 4096];
        let mut found: *mut libc::passwd = std::ptr::null_mut();
        let rc = libc::getpwnam_r(c"nobody".as_ptr(), &mut pw, buf.as_mut_ptr(), buf.len(), &mut found);
        assert!(rc == 0 && !found.is_null(), "no user `nobody` on this machine");
        (pw.pw_uid, pw.pw_gid)
    }
}

/// Whether this test process runs as root.
pub fn is_root() -> bool {
    // SAFETY: geteuid cannot fail.
    unsafe { libc::geteuid() == 0 }
}
