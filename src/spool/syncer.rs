//! Directory fsyncs, batched: one thread fsyncs the directories asked for,
//! taking every request that arrived while the previous fsync ran (group
//! commit). A commit is acknowledged only after its directory's fsync, so
//! batching keeps the guarantee while paying one fsync per batch.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::mpsc;

use crate::spool::Spool;
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

impl Spool {
    pub(super) async fn sync_dir(&self, dir: &Path) -> Result<(), SpoolError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let closed = || SpoolError::Io {
            path: dir.to_path_buf(),
            source: io::Error::other("directory syncer stopped"),
        };
        self.syncer.send((dir.to_path_buf(), tx)).map_err(|_| closed())?;
        rx.await.map_err(|_| closed())?.map_err(io_err(dir))
    }
}
