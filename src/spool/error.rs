//! What can go wrong with the spool. Every spool error is temporary for the
//! client (4xx): a full disk or an I/O error never turns into a 5xx.

use std::io;
use std::path::{Path, PathBuf};

use crate::spool::format::FormatError;

/// Spool errors; all of them are temporary for the client (4xx).
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    #[error("spool storage full: {0}")]
    Full(io::Error),
    #[error("spool I/O error on {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("queue file {id} is damaged: {error}")]
    Corrupt { id: String, error: FormatError },
    #[error("no message {0} in the spool")]
    NotFound(String),
}

pub(crate) fn io_err(path: &Path) -> impl FnOnce(io::Error) -> SpoolError + '_ {
    move |source| {
        if matches!(source.raw_os_error(), Some(libc::ENOSPC | libc::EDQUOT)) {
            SpoolError::Full(source)
        } else {
            SpoolError::Io {
                path: path.to_path_buf(),
                source,
            }
        }
    }
}
