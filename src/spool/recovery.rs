//! Start-up recovery: files of messages never acknowledged are removed,
//! every queued file is validated (streamed through its checksum), and a
//! damaged one is moved to `corrupt/` with its history: never delivered half,
//! never silently dropped.

use std::fs::{self, File};
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use crate::spool::error::{SpoolError, io_err};
use crate::spool::format::{self, FOOTER_LEN, FormatError, MAGIC};
use crate::spool::{Area, Spool};

/// What start-up found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Recovery {
    pub(crate) valid: Vec<String>,
    pub(crate) corrupt: Vec<(String, String)>,
    pub(crate) incomplete_removed: usize,
}

impl Spool {
    /// Start-up: removes unacknowledged partial files, validates every queued
    /// file, moves damaged ones to `corrupt/`.
    pub(crate) fn recover(&self) -> Result<Recovery, SpoolError> {
        let mut report = Recovery::default();
        for entry in fs::read_dir(&self.incoming).map_err(io_err(&self.incoming))? {
            let entry = entry.map_err(io_err(&self.incoming))?;
            if fs::remove_file(entry.path()).is_ok() {
                report.incomplete_removed += 1;
            }
        }
        // Files still being written when the process stopped: never acknowledged.
        for dir in [&self.active, &self.quarantine] {
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
            match validate_file(&path, &mut buf) {
                Ok(()) => report.valid.push(id),
                Err(e) => {
                    self.set_aside(&id);
                    report.corrupt.push((id, e.to_string()));
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

/// Streams a queue file through the checksum without loading it whole.
fn validate_file(path: &Path, buf: &mut [u8]) -> Result<(), FormatError> {
    let mut f = File::open(path).map_err(|_| FormatError::TooShort(0))?;
    let len = f.metadata().map_err(|_| FormatError::TooShort(0))?.len();
    if len < (MAGIC.len() + FOOTER_LEN) as u64 {
        return Err(FormatError::TooShort(len));
    }
    let mut magic = [0u8; 8];
    f.read_exact(&mut magic).map_err(|_| FormatError::TooShort(len))?;
    if &magic != MAGIC {
        return Err(FormatError::BadMagic);
    }
    let mut footer = [0u8; FOOTER_LEN];
    f.seek(SeekFrom::Start(len - FOOTER_LEN as u64))
        .map_err(|_| FormatError::NoEnd)?;
    f.read_exact(&mut footer).map_err(|_| FormatError::NoEnd)?;
    let parsed = format::decode_footer(&footer, len)?;
    f.seek(SeekFrom::Start(0)).map_err(|_| FormatError::NoEnd)?;
    let mut crc = crc32fast::Hasher::new();
    let mut remaining = len - 4;
    while remaining > 0 {
        let n = remaining.min(buf.len() as u64) as usize;
        f.read_exact(&mut buf[..n]).map_err(|_| FormatError::NoEnd)?;
        crc.update(&buf[..n]);
        remaining -= n as u64;
    }
    if crc.finalize() != parsed.crc {
        return Err(FormatError::Checksum);
    }
    let mut records = vec![0u8; parsed.records_len as usize];
    f.seek(SeekFrom::Start(MAGIC.len() as u64 + parsed.body_len))
        .map_err(|_| FormatError::NoEnd)?;
    f.read_exact(&mut records).map_err(|_| FormatError::NoEnd)?;
    format::decode_records(&records, parsed.body_len).map(|_| ())
}
