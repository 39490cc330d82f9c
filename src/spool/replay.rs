//! Start-up replay of the commit log: every record the last checkpoint did
//! not retire belongs to a message acknowledged with a 250 whose queue file
//! may not have reached the disk. Its file is written back unless the
//! message is known to be elsewhere or gone: a valid file in any area (it
//! was moved: held, released), a file in `corrupt/`, or a marker in
//! `queue/retired/` (delivered or deleted). A damaged file is replaced by
//! the record's copy in the area it was found in.
//!
//! Invariants: runs before anything reads the queue, in the only process
//! that may open the log; written-back files and their directories are
//! durable before the header that retires the records is written; records
//! are never applied twice (that header moves the tail past them). The
//! spool remembers that header: opening the log right after finds it still
//! there and does not read the 32 MiB ring through a second time.

use std::collections::BTreeSet;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::sync::PoisonError;

use crate::spool::commit_log;
use crate::spool::error::{SpoolError, io_err};
use crate::spool::{Area, Spool, format, verify};

/// What a replay found and did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Replayed {
    /// Records not yet retired.
    pub(crate) records: usize,
    /// Queue files written back from them.
    pub(crate) restored: usize,
}

impl Spool {
    pub(super) fn replay_log(&self) -> Result<Replayed, SpoolError> {
        let path = self.commit_log_path();
        let _ = fs::remove_file(path.with_extension("log.new"));
        let file = match OpenOptions::new().read(true).write(true).open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Replayed::default()),
            Err(e) => return Err(io_err(&path)(e)),
        };
        let Some(header) = commit_log::read_header(&file).map_err(io_err(&path))? else {
            // No valid header: the file never held an acknowledged record (a
            // log gets its header before it is renamed into place).
            fs::remove_file(&path).map_err(io_err(&path))?;
            return Ok(Replayed::default());
        };
        let scan = commit_log::scan(&file, &header).map_err(io_err(&path))?;
        let mut out = Replayed {
            records: scan.records.len(),
            restored: 0,
        };
        let mut touched = BTreeSet::new();
        let mut buf = vec![0u8; 1 << 20];
        for record in &scan.records {
            let Some(area) = Area::from_code(record.area) else {
                continue;
            };
            let id = record.id.as_str();
            if !crate::spool::valid_id(id)
                || self.retired.join(id).exists()
                || self.corrupt.join(format!("{id}.q")).exists()
                || format::decode_all(&record.data).is_err()
            {
                continue;
            }
            let mut damaged_in = None;
            let mut valid = false;
            for a in Area::ALL {
                let p = self.path(a, id);
                let Ok(mut f) = File::open(&p) else { continue };
                if verify(&mut f, &p, id, &mut buf, &mut |_, _, _| {}).is_ok() {
                    valid = true;
                    break;
                }
                damaged_in.get_or_insert(a);
            }
            if valid {
                continue;
            }
            let area = damaged_in.unwrap_or(area);
            self.write_back(area, id, &record.data)?;
            touched.insert(area.code());
            out.restored += 1;
        }
        for code in touched {
            let dir = self.dir(Area::from_code(code).expect("known area"));
            File::open(dir).and_then(|d| d.sync_all()).map_err(io_err(dir))?;
        }
        let retired = header.retiring(scan.next_seq);
        commit_log::write_header(&file, &retired).map_err(io_err(&path))?;
        *self.replayed.lock().unwrap_or_else(PoisonError::into_inner) = Some(retired);
        if let Ok(markers) = fs::read_dir(&self.retired) {
            for m in markers.flatten() {
                let _ = fs::remove_file(m.path());
            }
        }
        Ok(out)
    }

    /// Writes a queue file durably (its directory is synced by the caller).
    fn write_back(&self, area: Area, id: &str, data: &[u8]) -> Result<(), SpoolError> {
        let tmp = self.dir(area).join(format!("{id}.tmp"));
        let target = self.path(area, id);
        let mut f = File::create(&tmp).map_err(io_err(&tmp))?;
        f.write_all(data).map_err(io_err(&tmp))?;
        f.sync_all().map_err(io_err(&tmp))?;
        fs::rename(&tmp, &target).map_err(io_err(&target))
    }
}

#[cfg(test)]
#[path = "replay_tests.rs"]
mod tests;
