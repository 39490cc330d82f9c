//! Directory fsyncs, batched by group commit without a thread of its own:
//! the commit that finds no fsync of its directory running starts one (the
//! leader) and covers every commit that asked before it started; a commit
//! that asks while one runs waits for the next, which it or another waiter
//! leads. A commit is acknowledged only after an fsync of its directory that
//! started after its rename, so batching keeps the guarantee while paying one
//! fsync per batch.
//!
//! Why not a syncer thread: each commit would hand its request to that
//! thread and be woken by it, two more wake-ups per message; with the cores
//! busy each waited for a core (measured in benches/README.md). Here the
//! commit's own blocking-pool thread does the fsync or waits for one.
//!
//! A failed fsync marks nobody as synced: each waiter then tries its own and
//! reports its own error. Blocking: called on the blocking pool.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, PoisonError};

/// A directory messages are committed to, and the state of its fsyncs.
pub(super) struct DirSync {
    path: PathBuf,
    state: Mutex<Round>,
    done: Condvar,
}

#[derive(Default)]
struct Round {
    /// Tickets handed out: a commit takes one after its rename.
    asked: u64,
    /// Every ticket up to this one is covered by a finished fsync.
    synced: u64,
    /// Whether an fsync of the directory is running now.
    running: bool,
}

impl DirSync {
    pub(super) fn new(path: PathBuf) -> Arc<DirSync> {
        Arc::new(DirSync {
            path,
            state: Mutex::default(),
            done: Condvar::new(),
        })
    }

    pub(super) fn path(&self) -> &Path {
        &self.path
    }

    /// Returns once the directory was fsynced by a call that started after
    /// this one was made.
    pub(super) fn sync(&self) -> io::Result<()> {
        let mut round = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        round.asked += 1;
        let ticket = round.asked;
        loop {
            if round.synced >= ticket {
                return Ok(());
            }
            if !round.running {
                round.running = true;
                let covers = round.asked;
                drop(round);
                let result = File::open(&self.path).and_then(|f| f.sync_all());
                let mut after = self.state.lock().unwrap_or_else(PoisonError::into_inner);
                after.running = false;
                if result.is_ok() {
                    after.synced = after.synced.max(covers);
                }
                drop(after);
                self.done.notify_all();
                return result;
            }
            round = self.done.wait(round).unwrap_or_else(PoisonError::into_inner);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_caller_returns_after_an_fsync_and_concurrent_ones_share_them() {
        let dir = tempfile::tempdir().unwrap();
        let sync = DirSync::new(dir.path().to_path_buf());
        let threads: Vec<_> = (0..16)
            .map(|_| {
                let sync = sync.clone();
                std::thread::spawn(move || {
                    for _ in 0..50 {
                        sync.sync().unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let round = sync.state.lock().unwrap();
        assert_eq!(round.asked, 800);
        assert_eq!(round.synced, 800, "every ticket covered");
        assert!(!round.running);
    }

    #[test]
    fn a_directory_that_cannot_be_synced_is_an_error_for_each_caller() {
        let sync = DirSync::new(PathBuf::from("/nonexistent/exogate-spool"));
        assert!(sync.sync().is_err());
        assert!(sync.sync().is_err(), "a failure covers nobody");
        assert_eq!(sync.state.lock().unwrap().synced, 0);
    }
}
