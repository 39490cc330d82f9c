//! The process's log: the subscriber, and the daemon's writer that puts its
//! lines on standard error from a thread of its own.
//!
//! In the daemon, a line is formatted where it is logged, then handed to the
//! writer thread through a bounded queue (`log.queue_lines`). When the queue is full the
//! line is dropped and counted, never waited for: a slow or stuck reader of
//! standard error (journald under pressure, a full pipe, a log file on a busy
//! disk) must not stall the sessions whose worker threads log. Before, each
//! line was written to standard error by the logging thread itself, and a
//! full pipe stopped every session on that thread.
//!
//! The queue and the thread are `tracing-appender`'s; the count of dropped
//! lines is exported as `exogate_log_lines_dropped_total` and reported in the
//! log once lines flow again ([`report_drops`]).
//!
//! The writer thread gathers what is queued and writes it to standard error
//! in one call, then waits [`GATHER`] before it looks again. Without the
//! wait it slept after almost every line, and each line's sender had to wake
//! it: three to four wake-ups and writes per message, 7% of the gateway's
//! CPU per message at 600 msg/s (benches/README.md). A line reaches standard
//! error about [`GATHER`] after it was logged, at most.
//!
//! A panic is logged as an `error` line through the same queue (the
//! standard hook writes to standard error from the panicking thread, which a
//! stuck reader would stall, and not in the JSON format the log may be in).
//!
//! A line is also counted as dropped when writing it fails (a closed
//! standard error): the writer thread goes on with the next one. Commands
//! (`scan`, `remediate`) write synchronously instead: their log is in order
//! with their output, and may be an audit record that must not lose a line.
//!
//! Owns: the subscriber's set-up, the writer thread and its flush at exit.
//! Must never: block a caller of a `tracing` macro, lose a line without
//! counting it, or hold up an exit for longer than [`FINISH_WAIT`].

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use tracing_appender::non_blocking::{ErrorCounter, NonBlockingBuilder, WorkerGuard};

/// The longest an exit waits for the queued lines to be written.
const FINISH_WAIT: Duration = Duration::from_millis(1500);

/// How long the writer thread lets lines gather in the queue after writing
/// a batch. At the gateway's peak (about 5,000 lines a second) this is some
/// 50 lines, within the smallest `log.queue_lines` allowed (64) and far
/// within the default; a line waits this long at most before it is written.
const GATHER: Duration = Duration::from_millis(10);

/// A batch larger than this is written out before the queue is drained, so
/// the buffer stays small when a burst (or a long-stuck reader) has filled
/// the queue.
const BATCH_BYTES: usize = 64 * 1024;

/// The count of lines the full queue refused since the start (set once, by
/// [`init_daemon`]).
static DROPPED: OnceLock<ErrorCounter> = OnceLock::new();

/// Lines whose write to standard error failed.
static FAILED: AtomicU64 = AtomicU64::new(0);

/// The writer thread's guard: dropping it writes what is queued (bounded).
static WRITER: Mutex<Option<WorkerGuard>> = Mutex::new(None);

/// Writes what is still queued when dropped; hold it until the process ends.
#[must_use = "dropping the guard ends the log's writer thread"]
pub struct LogGuard(());

impl Drop for LogGuard {
    fn drop(&mut self) {
        finish();
    }
}

/// Installs the daemon's subscriber: `level` is an `EnvFilter` directive
/// (`RUST_LOG` wins when set), `json` one object per line, `queue_lines`
/// the lines that may wait for the reader before new ones are dropped.
pub fn init_daemon(level: &str, json: bool, queue_lines: usize) -> LogGuard {
    let (writer, guard) = NonBlockingBuilder::default()
        .lossy(true)
        .buffered_lines_limit(queue_lines.max(1))
        .thread_name("exogate-log")
        .finish(BatchingStderr::default());
    let _ = DROPPED.set(writer.error_counter());
    *WRITER.lock().unwrap_or_else(|e| e.into_inner()) = Some(guard);
    install(level, json, writer);
    std::panic::set_hook(Box::new(log_panic));
    LogGuard(())
}

/// The daemon's panic hook: the panic as an `error` line, through the
/// queue, with its thread, location and message (and a backtrace when
/// `RUST_BACKTRACE` asks for one). A panic is a bug; a session's task that
/// panics ends that session, and the line is what a report needs.
fn log_panic(info: &std::panic::PanicHookInfo<'_>) {
    let thread = std::thread::current();
    let location = info
        .location()
        .map(|l| format!("{}:{}:{}", l.file(), l.line(), l.column()));
    let backtrace = std::backtrace::Backtrace::capture();
    let backtrace = (backtrace.status() == std::backtrace::BacktraceStatus::Captured).then(|| backtrace.to_string());
    tracing::error!(
        thread = thread.name().unwrap_or("unnamed"),
        location,
        panic = info.payload_as_str().unwrap_or("(a payload that is not text)"),
        backtrace,
        "a thread panicked: this is a bug in exogate; please report this line"
    );
}

/// Installs a command's subscriber: each line is written by the thread that
/// logs it, in order with standard output, and none is dropped (a command's
/// log may be its audit record, as `remediate`'s is).
pub fn init_command(level: &str) {
    install(level, false, std::io::stderr);
}

fn install<W>(level: &str, json: bool, writer: W)
where
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(level))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_ansi(ansi);
    if json {
        builder.json().flatten_event(true).init();
    } else {
        builder.init();
    }
}

/// Standard error for the writer thread. The crate's thread hands it one
/// line at a time and flushes once it has drained the queue; lines are kept
/// until then and written in one call, and the flush then waits [`GATHER`]
/// so the next batch can gather without waking the thread. A batch whose
/// write fails counts its lines as lost (the thread itself goes on
/// silently).
#[derive(Default)]
struct BatchingStderr {
    batch: Vec<u8>,
    lines: u64,
}

impl BatchingStderr {
    fn write_batch(&mut self) -> std::io::Result<()> {
        if self.batch.is_empty() {
            return Ok(());
        }
        let written = std::io::stderr().write_all(&self.batch);
        if written.is_err() {
            FAILED.fetch_add(self.lines, Ordering::Relaxed);
        }
        self.batch.clear();
        self.lines = 0;
        written
    }
}

impl Write for BatchingStderr {
    fn write(&mut self, line: &[u8]) -> std::io::Result<usize> {
        self.write_all(line).map(|()| line.len())
    }

    fn write_all(&mut self, line: &[u8]) -> std::io::Result<()> {
        self.batch.extend_from_slice(line);
        self.lines += 1;
        if self.batch.len() >= BATCH_BYTES {
            self.write_batch()?;
        }
        Ok(())
    }

    /// Only a flush that wrote a batch waits: the crate's last flush, at
    /// exit, finds the batch empty and must not hold the exit up.
    fn flush(&mut self) -> std::io::Result<()> {
        let wrote = !self.batch.is_empty();
        let written = self.write_batch().and_then(|()| std::io::stderr().flush());
        if wrote {
            std::thread::sleep(GATHER);
        }
        written
    }
}

/// Writes out what is queued and ends the writer thread; for the end of
/// `main` and for paths that leave by `std::process::exit`, which runs no
/// destructors. Waits [`FINISH_WAIT`] at most: the crate's own shutdown may
/// wait longer for a reader that does not read (and print to standard
/// output, which under systemd is the same stuck stream), so it runs on a
/// thread of its own that the exit does not wait for.
pub(crate) fn finish() {
    let Some(guard) = WRITER.lock().unwrap_or_else(|e| e.into_inner()).take() else {
        return;
    };
    let (done, finished) = std::sync::mpsc::channel();
    let spawned = std::thread::Builder::new()
        .name("exogate-log-end".into())
        .spawn(move || {
            drop(guard);
            let _ = done.send(());
        });
    if spawned.is_ok() {
        let _ = finished.recv_timeout(FINISH_WAIT);
    }
}

/// Lines lost since the start: refused by the full queue, or failed to write.
pub(crate) fn dropped_lines() -> u64 {
    DROPPED.get().map_or(0, |c| c.dropped_lines() as u64) + FAILED.load(Ordering::Relaxed)
}

/// How often lost lines are reported in the log (when there are new ones).
const REPORT_EVERY: Duration = Duration::from_secs(10);

/// Every [`REPORT_EVERY`] in which lines were lost (those of the start
/// included), says so in the log with the total since the start. The report
/// may itself be lost while the reader is still stuck; the next one counts
/// it, so the first that gets through tells the whole story.
pub(crate) async fn report_drops() {
    let mut seen = 0;
    let mut tick = tokio::time::interval(REPORT_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let total = dropped_lines();
        if total > seen {
            tracing::warn!(
                dropped_total = total,
                "log lines were dropped: the reader of standard error (journald, the container's log driver) was too slow or gone; find out why, or raise log.queue_lines to ride out longer stalls"
            );
            seen = total;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[derive(Clone, Default)]
    struct Capture(Arc<Mutex<Vec<u8>>>);

    impl Write for Capture {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// The hook logs through whatever subscriber is current, here a JSON one
    /// writing to memory. While it is installed (a moment: the previous hook
    /// is put back at once) another test's panic message would go to this
    /// test's subscriber-less log instead of the test output.
    #[test]
    fn a_panic_becomes_one_error_line_with_its_message_thread_and_location() {
        let captured = Capture::default();
        let into = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .json()
            .flatten_event(true)
            .with_writer(move || into.clone())
            .finish();
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(log_panic));
        let caught = std::thread::Builder::new()
            .name("exogate-test-panic".into())
            .spawn(move || {
                tracing::subscriber::with_default(subscriber, || {
                    std::panic::catch_unwind(|| panic!("the {} of a bug", "payload")).is_err()
                })
            })
            .unwrap()
            .join()
            .unwrap();
        std::panic::set_hook(previous);
        assert!(caught);
        let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 1, "{text}");
        let line: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
        assert_eq!(line["level"], "ERROR", "{line}");
        assert_eq!(line["panic"], "the payload of a bug", "{line}");
        assert_eq!(line["thread"], "exogate-test-panic", "{line}");
        assert!(
            line["location"].as_str().unwrap().starts_with("src/telemetry/log.rs:"),
            "{line}"
        );
        assert!(line["message"].as_str().unwrap().contains("panicked"), "{line}");
    }
}
