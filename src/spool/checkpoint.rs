//! The commit log's life in a running gateway: opening it before mail is
//! accepted, the checkpoint thread, and the markers of removed messages.
//!
//! A checkpoint takes a mark (every record written so far without a gap),
//! makes every file system the spool lives on durable with `syncfs` (each
//! queue file was renamed into place before its record was appended, so
//! this covers the files of every record before the mark), then writes the
//! header that moves the ring's tail to the mark. Only then may the markers
//! of messages whose records are retired be deleted.
//!
//! Invariant: a checkpoint never retires a record before its file is durable;
//! a failed `syncfs` or header write breaks the log (commits then take the
//! direct path) and leaves its records for replay. A command-line process
//! never opens the log: its commits take the direct path, and it leaves a
//! marker for any message it removes while a log exists.

use std::fs::{self, File};
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::{Arc, PoisonError};
use std::time::Duration;

use crate::spool::commit_log::CommitLog;
use crate::spool::{Area, Spool};

impl Spool {
    /// The commit log's file.
    pub(crate) fn commit_log_path(&self) -> PathBuf {
        self.root.join("commit.log")
    }

    /// Opens the commit log with a ring of `size` bytes (0: none, every
    /// commit takes the direct path) and starts the thread that checkpoints
    /// it every `interval`. Call after `recover` and before accepting mail;
    /// an error leaves the spool on the direct path.
    pub(crate) fn start_commit_log(self: &Arc<Self>, size: u64, interval: Duration) -> io::Result<()> {
        if size == 0 {
            return Ok(());
        }
        if self.log.get().is_some() {
            return Err(io::Error::other("the commit log is already open"));
        }
        let replayed = *self.replayed.lock().unwrap_or_else(PoisonError::into_inner);
        let log = Arc::new(CommitLog::open(&self.commit_log_path(), size, replayed)?);
        let spool = Arc::downgrade(self);
        let thread = std::thread::Builder::new()
            .name("exogate-spool-log".into())
            .spawn(move || {
                loop {
                    std::thread::park_timeout(interval);
                    let Some(spool) = spool.upgrade() else { return };
                    // A failure broke the log and said why (`break_log`).
                    if spool.checkpoint().is_err() {
                        return;
                    }
                }
            })?;
        // Only a log with its checkpointer running takes commits: without
        // one its records would never be retired.
        log.set_checkpointer(thread.thread().clone());
        let _ = self.log.set(log);
        Ok(())
    }

    /// Makes every file whose record is in the log durable and retires
    /// those records. Blocking. Without a log (or with a broken one) does nothing.
    pub(crate) fn checkpoint(&self) -> io::Result<()> {
        let Some(log) = self.log.get() else { return Ok(()) };
        let _one_at_a_time = log.checkpointing.lock().unwrap_or_else(PoisonError::into_inner);
        if log.is_broken() {
            return Ok(());
        }
        // Listed before the mark: a marker's message was committed (and its
        // record appended) before the marker was made.
        let markers: Vec<String> = fs::read_dir(&self.retired)
            .map(|d| d.filter_map(|e| e.ok()?.file_name().into_string().ok()).collect())
            .unwrap_or_default();
        if let Some(mark) = log.checkpoint_mark() {
            if let Err(e) = self.sync_filesystems() {
                log.break_log("checkpoint (syncfs)", &e);
                return Err(e);
            }
            log.retire(mark)?;
        }
        for id in markers {
            if !log.is_live(&id) {
                let _ = fs::remove_file(self.retired.join(id));
            }
        }
        Ok(())
    }

    /// `syncfs` once on each file system the spool's directories are on.
    fn sync_filesystems(&self) -> io::Result<()> {
        let mut done = Vec::new();
        let dirs = std::iter::once(self.root.as_path()).chain(Area::ALL.iter().map(|a| self.dir(*a)));
        for dir in dirs {
            let d = File::open(dir)?;
            let dev = d.metadata()?.dev();
            if !done.contains(&dev) {
                rustix::fs::syncfs(&d)?;
                done.push(dev);
            }
        }
        Ok(())
    }

    /// Leaves a marker that `id` was removed, if a record of it may still be
    /// replayed: live in this process's log, or (in another process) whenever
    /// a log exists. Not synced: a lost marker costs at worst a duplicate.
    pub(super) fn mark_removed(&self, id: &str) {
        let needed = match self.log.get() {
            Some(log) => log.is_live(id),
            None => self.commit_log_path().exists(),
        };
        if needed {
            let _ = File::create(self.retired.join(id));
        }
    }
}
