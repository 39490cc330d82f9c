//! Start-up recovery: the commit log is replayed first (`replay`), files of
//! messages never acknowledged are removed,
//! every queued file is validated (streamed through its checksum), and a
//! damaged one is moved to `corrupt/` with its history: never delivered half,
//! never silently dropped.

use std::fs::{self, File};

use crate::spool::error::{SpoolError, io_err};
use crate::spool::{Area, Spool, verify};

/// What start-up found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Recovery {
    pub(crate) valid: Vec<String>,
    pub(crate) corrupt: Vec<(String, String)>,
    pub(crate) incomplete_removed: usize,
    /// Commit log records not retired when the last run stopped.
    pub(crate) log_records: usize,
    /// Queue files written back from them (missing or damaged).
    pub(crate) restored: usize,
}

impl Spool {
    /// Start-up: removes unacknowledged partial files, validates every queued
    /// file, moves damaged ones to `corrupt/`.
    pub(crate) fn recover(&self) -> Result<Recovery, SpoolError> {
        let replayed = self.replay_log()?;
        let mut report = Recovery {
            log_records: replayed.records,
            restored: replayed.restored,
            ..Recovery::default()
        };
        for entry in fs::read_dir(&self.incoming).map_err(io_err(&self.incoming))? {
            let entry = entry.map_err(io_err(&self.incoming))?;
            if fs::remove_file(entry.path()).is_ok() {
                report.incomplete_removed += 1;
            }
        }
        // Files still being written when the process stopped: never acknowledged.
        for dir in [self.dir(Area::Active), self.dir(Area::Quarantine)] {
            for entry in fs::read_dir(dir).map_err(io_err(dir))? {
                let path = entry.map_err(io_err(dir))?.path();
                if path.extension().is_some_and(|e| e == "tmp") && fs::remove_file(&path).is_ok() {
                    report.incomplete_removed += 1;
                }
            }
        }
        // One read buffer for every file: a fresh 1 MiB per file cost an
        // allocation (and its zeroing) per queued message at start-up.
        let mut buf = vec![0u8; 1 << 20];
        for id in self.list(Area::Active)? {
            let path = self.path(Area::Active, &id);
            let checked = File::open(&path)
                .map_err(io_err(&path))
                .and_then(|mut f| verify(&mut f, &path, &id, &mut buf, &mut |_, _, _| {}));
            match checked {
                Ok(_) => report.valid.push(id),
                Err(e) => {
                    self.set_aside(&id);
                    // The log line names the id already; the reason is what is wrong.
                    let reason = match e {
                        SpoolError::Corrupt { error, .. } => error.to_string(),
                        other => other.to_string(),
                    };
                    report.corrupt.push((id, reason));
                }
            }
        }
        Ok(report)
    }

    /// Moves a damaged queued message (and its history) to `corrupt/`.
    pub(crate) fn set_aside(&self, id: &str) {
        for (from, name) in [
            (self.path(Area::Active, id), format!("{id}.q")),
            (self.state_path(Area::Active, id), format!("{id}.st")),
        ] {
            let _ = fs::rename(&from, self.corrupt.join(name));
        }
    }

    /// Number of files set aside as damaged.
    #[cfg(test)]
    pub(crate) fn corrupt_count(&self) -> usize {
        fs::read_dir(&self.corrupt)
            .map(|d| {
                d.filter_map(Result::ok)
                    .filter(|e| e.file_name().to_string_lossy().ends_with(".q"))
                    .count()
            })
            .unwrap_or(0)
    }
}
