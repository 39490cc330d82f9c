//! Directory fsyncs, batched: one thread fsyncs the directories asked for,
//! taking every request that arrived while the previous fsync ran (group
//! commit). A commit is acknowledged only after its directory's fsync, so
//! batching keeps the guarantee while paying one fsync per batch. A request
//! is made right after the commit's rename, from the thread writing the
//! file, and awaited after that file's own fsync: the two run side by side.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::mpsc;

use crate::spool::error::{SpoolError, io_err};

pub(super) type SyncRequest = (PathBuf, tokio::sync::oneshot::Sender<io::Result<()>>);

/// One thread that fsyncs directories, batching every request that arrived
/// while the previous fsync ran (group commit).
pub(super) fn spawn_dir_syncer() -> mpsc::Sender<SyncRequest> {
    let (tx, rx) = mpsc::channel::<SyncRequest>();
    std::thread::Builder::new()
        .name("exogate-dirsync".into())
        .spawn(move || {
            while let Ok(first) = rx.recv() {
                let mut batch = vec![first];
                while let Ok(more) = rx.try_recv() {
                    batch.push(more);
                }
                let mut dirs: Vec<PathBuf> = batch.iter().map(|(d, _)| d.clone()).collect();
                dirs.sort();
                dirs.dedup();
                let results: Vec<(PathBuf, Result<(), String>)> = dirs
                    .into_iter()
                    .map(|d| {
                        let r = File::open(&d).and_then(|f| f.sync_all()).map_err(|e| e.to_string());
                        (d, r)
                    })
                    .collect();
                for (dir, done) in batch {
                    let r = results
                        .iter()
                        .find(|(d, _)| *d == dir)
                        .map(|(_, r)| r.clone())
                        .unwrap_or(Ok(()));
                    let _ = done.send(r.map_err(io::Error::other));
                }
            }
        })
        .expect("spawning the directory syncer thread");
    tx
}

/// A directory fsync asked for and not yet awaited.
pub(super) struct PendingSync {
    dir: PathBuf,
    done: tokio::sync::oneshot::Receiver<io::Result<()>>,
}

/// Asks the syncer thread to fsync `dir`, from any thread, without waiting:
/// a commit asks as soon as its rename is made, so that the directory's
/// fsync and the file's own run side by side (on a journaling file system
/// both then wait for one journal commit instead of two in a row).
pub(super) fn request(syncer: &mpsc::Sender<SyncRequest>, dir: &Path) -> PendingSync {
    let (tx, done) = tokio::sync::oneshot::channel();
    // A stopped syncer drops the sender, which `wait` reports.
    let _ = syncer.send((dir.to_path_buf(), tx));
    PendingSync {
        dir: dir.to_path_buf(),
        done,
    }
}

impl PendingSync {
    /// Returns once the directory is on stable storage.
    pub(super) async fn wait(self) -> Result<(), SpoolError> {
        let closed = || SpoolError::Io {
            path: self.dir.clone(),
            source: io::Error::other("directory syncer stopped"),
        };
        self.done.await.map_err(|_| closed())?.map_err(io_err(&self.dir))
    }
}
