//! The state directory belongs to one gateway at a time.
//!
//! `exogate run` takes an exclusive `flock` on `state_dir/exogate.lock`
//! before it recovers the spool or touches any other file, and holds it until
//! the process ends (the kernel releases it even after SIGKILL, so a stale
//! lock file never blocks a restart). A second instance on the same state
//! dir stops at once, before recovery could delete the first one's
//! in-progress files. The maintenance commands that change files take the
//! same lock when no gateway runs; while one does, they ask it through its
//! control socket (`app/control.rs`).
//!
//! Must never: delete or truncate the lock file of another process (the file
//! only says which process holds it, for the error message).

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

/// The lock file's name in the state directory.
pub(crate) const LOCK_FILE: &str = "exogate.lock";

/// Why the state directory could not be locked.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("{path} is locked by another exogate (pid {holder}): one gateway per state directory; nothing was touched")]
    Held { path: PathBuf, holder: String },
    #[error("cannot lock {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
}

/// An exclusive lock on a state directory, held while this value lives.
#[derive(Debug)]
pub struct StateLock {
    file: File,
    path: PathBuf,
}

impl StateLock {
    /// Takes the lock on `state_dir` (created if missing), or says who holds it.
    pub(crate) fn acquire(state_dir: &Path) -> Result<StateLock, LockError> {
        let path = state_dir.join(LOCK_FILE);
        let io_error = |source| LockError::Io {
            path: path.clone(),
            source,
        };
        fs::create_dir_all(state_dir).map_err(io_error)?;
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io_error)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let holder = holder.trim();
                return Err(LockError::Held {
                    path,
                    holder: if holder.is_empty() {
                        "unknown".into()
                    } else {
                        holder.into()
                    },
                });
            }
            Err(fs::TryLockError::Error(e)) => return Err(io_error(e)),
        }
        // Ours now: say who holds it.
        file.set_len(0)
            .and_then(|()| file.write_all(format!("{}\n", std::process::id()).as_bytes()))
            .map_err(io_error)?;
        Ok(StateLock { file, path })
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for StateLock {
    fn drop(&mut self) {
        let _ = self.file.unlock();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_on_the_same_dir_is_refused_until_the_first_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let first = StateLock::acquire(dir.path()).unwrap();
        match StateLock::acquire(dir.path()) {
            Err(LockError::Held { holder, .. }) => assert_eq!(holder, std::process::id().to_string()),
            other => panic!("expected Held, got {other:?}"),
        }
        drop(first);
        let again = StateLock::acquire(dir.path()).unwrap();
        assert!(again.path().ends_with(LOCK_FILE));
    }
}
