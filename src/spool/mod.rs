//! The durable spool: where an accepted message lives until its fate is known.
//!
//! Discipline (after Postfix): a message is written whole as `ID.tmp` in
//! `active/` (or `quarantine/`; a body too large for memory was already
//! streamed to `incoming/`) and renamed to `ID.q`; only once it is durable
//! may the session answer 250. It becomes durable by one of two paths:
//!
//! - the commit log (`commit_log`, the usual path for a body held in
//!   memory): a copy of the whole file is appended to a pre-allocated ring
//!   and made durable by a group `fdatasync` that needs no journal commit. A
//!   checkpoint (`checkpoint`) later makes the files themselves durable with
//!   `syncfs` and retires their records; start-up (`replay`) writes back any
//!   file whose record was not retired and is missing or damaged.
//! - direct (a spilled body, no log, a full or broken log): the file's data
//!   is written out (`writeback`), the directory fsynced (batched by group
//!   commit in `syncer`: one journal commit for the batch) and the file
//!   fdatasynced. The order is for a journaling file system: fsyncing the file
//!   first cost one more commit per message (benches/README.md).
//!
//! Files under `incoming/` and `*.tmp` files were never acknowledged and are
//! removed at start-up. A file in `active/` that fails validation (including
//! one cut short by a power loss before it was durable, never acknowledged)
//! is moved to `corrupt/` and counted, never delivered half and never
//! silently dropped. A message removed while its record may still be live
//! leaves a marker in `queue/retired/`, so a replay never brings back what was
//! delivered or deleted.
//!
//! Message bodies on their way in (memory, then disk) live in `incoming`;
//! the queue file format in `format`, the delivery history in `history`,
//! start-up recovery in `recovery`.
//!
//! Delivery progress is an append-only sidecar (`ID.st`) of checksummed lines,
//! so a recipient already delivered is never sent again after a restart; a
//! torn last line is ignored (at worst one duplicate delivery).

mod checkpoint;
mod commit_log;
mod error;
pub mod format;
mod history;
mod id;
pub(crate) mod incoming;
mod lock;
mod recovery;
mod replay;
mod syncer;
mod writeback;

pub use error::SpoolError;
pub(crate) use error::io_err;
pub(crate) use history::StateEvent;
pub(crate) use id::{new_id, now_unix, valid_id};
pub use lock::{LockError, StateLock};

use std::fs::{self, File};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use crate::spool::incoming::Body;
use format::{FOOTER_LEN, FormatError, MAGIC, Meta, Trailer};
use std::sync::{Arc, Mutex, OnceLock};
use syncer::DirSync;

use commit_log::CommitLog;

/// Which directory a committed message goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Area {
    Active,
    Quarantine,
    /// Journal reports that could not be read (monitor mode): kept for an
    /// administrator, never delivered, never recovered into the queue.
    Reports,
    /// Held by the operator (`queue hold`): kept, not delivered until released.
    Hold,
}

impl Area {
    /// The byte a commit log record names its area by.
    fn code(self) -> u8 {
        match self {
            Area::Active => 0,
            Area::Quarantine => 1,
            Area::Reports => 2,
            Area::Hold => 3,
        }
    }

    fn from_code(code: u8) -> Option<Area> {
        Area::ALL.into_iter().find(|a| a.code() == code)
    }

    const ALL: [Area; 4] = [Area::Active, Area::Quarantine, Area::Reports, Area::Hold];
}

/// How a commit was made durable (for `exogate_spool_commits_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Durable {
    /// A record in the commit log.
    Log,
    /// The file and its directory synced.
    Direct,
}

impl Durable {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Durable::Log => "log",
            Durable::Direct => "direct",
        }
    }
}

/// A committed message as the queue sees it: metadata and history, no body.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub(crate) trailer: Trailer,
    pub(crate) events: Vec<StateEvent>,
}

/// A committed message with its body, validated.
pub(crate) struct Stored {
    pub(crate) trailer: Trailer,
    pub(crate) body: Vec<u8>,
}

/// A committed message, verified, whose body stays in its file.
pub(crate) struct Queued {
    pub(crate) trailer: Trailer,
    pub(crate) file: File,
    /// Where the body starts in `file` (it is `trailer.body_len` bytes long).
    pub(crate) body_start: u64,
}

/// The directories; those messages are committed to carry their fsyncs.
pub(crate) struct Spool {
    pub(crate) root: PathBuf,
    pub(crate) incoming: PathBuf,
    corrupt: PathBuf,
    active: Arc<DirSync>,
    quarantine: Arc<DirSync>,
    reports: Arc<DirSync>,
    hold: Arc<DirSync>,
    /// Markers of messages removed while their commit log record may be live.
    retired: PathBuf,
    /// The commit log, once `start_commit_log` opened it (never in a command-line process).
    log: OnceLock<Arc<CommitLog>>,
    /// The header the last `replay_log` wrote once it had retired every record.
    replayed: Mutex<Option<commit_log::Header>>,
}

impl Spool {
    /// Opens (creating) the spool under `state_dir`.
    pub(crate) fn open(state_dir: &Path) -> Result<Spool, SpoolError> {
        let root = state_dir.join("queue");
        let spool_dirs = [
            root.join("incoming"),
            root.join("active"),
            root.join("corrupt"),
            state_dir.join("quarantine"),
            state_dir.join("quarantine-reports"),
            root.join("hold"),
            root.join("retired"),
        ];
        for d in &spool_dirs {
            fs::create_dir_all(d).map_err(io_err(d))?;
        }
        let [incoming, active, corrupt, quarantine, reports, hold, retired] = spool_dirs;
        Ok(Spool {
            root,
            incoming,
            corrupt,
            active: DirSync::new(active),
            quarantine: DirSync::new(quarantine),
            reports: DirSync::new(reports),
            hold: DirSync::new(hold),
            retired,
            log: OnceLock::new(),
            replayed: Mutex::new(None),
        })
    }

    fn area(&self, area: Area) -> &Arc<DirSync> {
        match area {
            Area::Active => &self.active,
            Area::Quarantine => &self.quarantine,
            Area::Reports => &self.reports,
            Area::Hold => &self.hold,
        }
    }

    pub(super) fn dir(&self, area: Area) -> &Path {
        self.area(area).path()
    }

    pub(crate) fn path(&self, area: Area, id: &str) -> PathBuf {
        self.dir(area).join(format!("{id}.q"))
    }

    pub(super) fn state_path(&self, area: Area, id: &str) -> PathBuf {
        self.dir(area).join(format!("{id}.st"))
    }

    /// The file the command line writes to wake the scheduler: `flush` (every
    /// message due now), `flush ID…` (those due now) or `rescan` (files moved
    /// in or out of `active/`).
    pub(crate) fn flush_trigger(&self) -> PathBuf {
        self.root.join("flush")
    }

    /// Makes a message durable in `area`. Returns once it is on stable
    /// storage, and by which path (module header).
    pub(crate) async fn commit(
        &self,
        area: Area,
        meta: &Meta,
        prefix: &[u8],
        body: Body,
    ) -> Result<Durable, SpoolError> {
        let target = self.path(area, &meta.id);
        let records = format::encode_records(meta, prefix);
        // Written next to its final name: a rename within one directory is
        // cheaper than across two, and only that directory needs its fsync.
        let incoming = self.dir(area).join(format!("{}.tmp", meta.id));
        let cleanup = incoming.clone();
        let target_for_cleanup = target.clone();
        let dir = self.area(area).clone();
        let log = self.log.get().cloned();
        let id = meta.id.clone();
        let write = move || -> Result<Durable, SpoolError> {
            // Each branch writes the whole file and renames it to its final
            // name; `whole` says whether its inode must be synced too.
            let (file, whole) = match body {
                Body::Memory(bytes) => {
                    let mut crc = crc32fast::Hasher::new();
                    crc.update(MAGIC);
                    crc.update(&bytes);
                    crc.update(&records);
                    let footer = format::encode_footer(bytes.len() as u64, records.len() as u64, crc);
                    let mut f = File::create(&incoming).map_err(io_err(&incoming))?;
                    let mut parts = [
                        io::IoSlice::new(MAGIC),
                        io::IoSlice::new(&bytes),
                        io::IoSlice::new(&records),
                        io::IoSlice::new(&footer),
                    ];
                    write_all_vectored(&mut f, &mut parts).map_err(io_err(&incoming))?;
                    fs::rename(&incoming, &target).map_err(io_err(&target))?;
                    // The file is in place, not yet durable: its copy in the
                    // log makes it so, or else the direct path below.
                    if let Some(log) = &log
                        && log
                            .append(area.code(), &id, &[MAGIC, &bytes, &records, &footer])
                            .is_ok()
                    {
                        return Ok(Durable::Log);
                    }
                    (f, false)
                }
                Body::Spilled {
                    mut file,
                    path,
                    len,
                    mut crc,
                } => {
                    crc.update(&records);
                    let footer = format::encode_footer(len, records.len() as u64, crc);
                    let spilled = path.path();
                    file.seek(SeekFrom::End(0)).map_err(io_err(spilled))?;
                    file.write_all(&records).map_err(io_err(spilled))?;
                    file.write_all(&footer).map_err(io_err(spilled))?;
                    fs::rename(spilled, &target).map_err(io_err(&target))?;
                    path.keep();
                    // Created in another directory and grown since: its
                    // inode must be durable too, so sync_all, not sync_data.
                    (file, true)
                }
            };
            // The order the module header explains: data out, the batch's
            // directory fsync (one journal commit for all), the file's sync.
            writeback::write_out(&file).map_err(io_err(&target))?;
            dir.sync().map_err(io_err(dir.path()))?;
            if whole { file.sync_all() } else { file.sync_data() }.map_err(io_err(&target))?;
            Ok(Durable::Direct)
        };
        let result = tokio::task::spawn_blocking(write).await.map_err(|e| SpoolError::Io {
            path: self.incoming.clone(),
            source: io::Error::other(e),
        })?;
        match result {
            Ok(durable) => Ok(durable),
            Err(e) => {
                let _ = fs::remove_file(&cleanup);
                let _ = fs::remove_file(self.incoming.join(&meta.id));
                // Perhaps renamed but not durable: the session answers 4xx, so
                // the file must not stay for the scheduler to deliver, nor come
                // back from a record the log wrote before it broke. Ids are
                // unique, so nothing else can have this name.
                self.mark_removed(&meta.id);
                let _ = fs::remove_file(&target_for_cleanup);
                Err(e)
            }
        }
    }

    /// Metadata and history of a committed message (body not read, not validated).
    pub(crate) fn entry(&self, area: Area, id: &str) -> Result<Entry, SpoolError> {
        let path = self.path(area, id);
        let mut f = open_queued(&path, id)?;
        let (_, trailer) = read_trailer(&mut f, &path, id)?;
        Ok(Entry {
            trailer,
            events: self.events(area, id),
        })
    }

    /// A committed message, checksum verified by reading the file through
    /// once in bounded chunks, its body left in the file (at
    /// `Queued::body_start`) for the caller to stream: a large message is
    /// never held in memory whole. `observe` sees the body as it is read
    /// (offset in the body, bytes), after the trailer it is given. Blocking:
    /// call it on the blocking pool.
    pub(crate) fn open_verified(
        &self,
        area: Area,
        id: &str,
        observe: &mut dyn FnMut(&Trailer, u64, &[u8]),
    ) -> Result<Queued, SpoolError> {
        let path = self.path(area, id);
        let mut file = open_queued(&path, id)?;
        let mut buf = vec![0u8; 256 * 1024];
        let (trailer, body_start) = verify(&mut file, &path, id, &mut buf, observe)?;
        Ok(Queued {
            trailer,
            file,
            body_start,
        })
    }

    /// A committed message with its body, checksum verified.
    pub(crate) fn read(&self, area: Area, id: &str) -> Result<Stored, SpoolError> {
        let path = self.path(area, id);
        let file = fs::read(&path).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => SpoolError::NotFound(id.to_string()),
            _ => io_err(&path)(e),
        })?;
        let (trailer, body) = format::decode_all(&file).map_err(|error| SpoolError::Corrupt {
            id: id.to_string(),
            error,
        })?;
        let mut file = file;
        file.truncate(body.end);
        file.drain(..body.start);
        Ok(Stored { trailer, body: file })
    }

    /// Removes a message whose fate is known. Not fsynced: after a crash it may
    /// come back and be delivered twice, never lost.
    pub(crate) fn remove(&self, area: Area, id: &str) -> Result<(), SpoolError> {
        let path = self.path(area, id);
        if path.exists() {
            self.mark_removed(id);
        }
        let _ = fs::remove_file(self.state_path(area, id));
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(SpoolError::NotFound(id.to_string())),
            Err(e) => Err(io_err(&path)(e)),
        }
    }

    /// The active directory's modification time: it changes whenever a message
    /// file is created, renamed or removed there (None if it cannot be read).
    pub(crate) fn active_mtime(&self) -> Option<std::time::SystemTime> {
        fs::metadata(self.active.path()).and_then(|m| m.modified()).ok()
    }

    /// Ids of the committed messages in `area`, oldest first.
    pub(crate) fn list(&self, area: Area) -> Result<Vec<String>, SpoolError> {
        let dir = self.dir(area);
        let mut ids = Vec::new();
        for entry in fs::read_dir(dir).map_err(io_err(dir))? {
            let entry = entry.map_err(io_err(dir))?;
            let name = entry.file_name();
            if let Some(id) = name.to_str().and_then(|n| n.strip_suffix(".q"))
                && valid_id(id)
            {
                ids.push(id.to_string());
            }
        }
        ids.sort();
        Ok(ids)
    }

    /// Moves a message and its delivery history between areas (durably): what
    /// was delivered stays recorded, so releasing a held message never re-sends.
    pub(crate) fn move_to(&self, from: Area, to: Area, id: &str) -> Result<(), SpoolError> {
        let src = self.path(from, id);
        if !src.exists() {
            return Err(SpoolError::NotFound(id.to_string()));
        }
        let history = self.state_path(from, id);
        if history.exists() {
            let dst = self.state_path(to, id);
            fs::rename(&history, &dst).map_err(io_err(&dst))?;
        }
        let dst = self.path(to, id);
        fs::rename(&src, &dst).map_err(io_err(&dst))?;
        let dir = self.dir(to);
        File::open(dir).and_then(|d| d.sync_all()).map_err(io_err(dir))
    }

    /// Whether the spool directories are writable (for readiness).
    pub(crate) fn writable(&self) -> bool {
        let probe = self.incoming.join(".probe");
        let ok = File::create(&probe).and_then(|mut f| f.write_all(b"x")).is_ok();
        let _ = fs::remove_file(&probe);
        ok
    }
}

/// Opens a committed message's file (a missing one is `NotFound`).
fn open_queued(path: &Path, id: &str) -> Result<File, SpoolError> {
    File::open(path).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => SpoolError::NotFound(id.to_string()),
        _ => io_err(path)(e),
    })
}

/// Reads the footer and the records at the end of a queue file (the body is not read).
fn read_trailer(f: &mut File, path: &Path, id: &str) -> Result<(format::Footer, Trailer), SpoolError> {
    let corrupt = |error| SpoolError::Corrupt {
        id: id.to_string(),
        error,
    };
    let len = f.metadata().map_err(io_err(path))?.len();
    if len < (MAGIC.len() + FOOTER_LEN) as u64 {
        return Err(corrupt(FormatError::TooShort(len)));
    }
    let mut footer = [0u8; FOOTER_LEN];
    f.seek(SeekFrom::Start(len - FOOTER_LEN as u64)).map_err(io_err(path))?;
    f.read_exact(&mut footer).map_err(io_err(path))?;
    let footer = format::decode_footer(&footer, len).map_err(corrupt)?;
    let mut records = vec![0u8; footer.records_len as usize];
    f.seek(SeekFrom::Start(MAGIC.len() as u64 + footer.body_len))
        .map_err(io_err(path))?;
    f.read_exact(&mut records).map_err(io_err(path))?;
    let trailer = format::decode_records(&records, footer.body_len).map_err(corrupt)?;
    Ok((footer, trailer))
}

/// Reads a queue file through once, in `buf`-sized chunks, checking its
/// magic, footer, records and checksum; `observe` sees the body as it passes
/// (offset in the body, bytes). Returns the trailer and where the body starts.
/// Shared by delivery (`open_verified`) and start-up recovery, so both judge a
/// file by the same rules.
pub(super) fn verify(
    f: &mut File,
    path: &Path,
    id: &str,
    buf: &mut [u8],
    observe: &mut dyn FnMut(&Trailer, u64, &[u8]),
) -> Result<(Trailer, u64), SpoolError> {
    let corrupt = |error| SpoolError::Corrupt {
        id: id.to_string(),
        error,
    };
    let (footer, trailer) = read_trailer(f, path, id)?;
    let file_len = MAGIC.len() as u64 + footer.body_len + footer.records_len + FOOTER_LEN as u64;
    let crc_end = file_len - 4;
    let body = MAGIC.len() as u64..MAGIC.len() as u64 + footer.body_len;
    f.seek(SeekFrom::Start(0)).map_err(io_err(path))?;
    let mut crc = crc32fast::Hasher::new();
    let mut pos = 0u64;
    while pos < crc_end {
        let n = (crc_end - pos).min(buf.len() as u64) as usize;
        f.read_exact(&mut buf[..n]).map_err(io_err(path))?;
        let chunk = &buf[..n];
        if pos == 0 && chunk.get(..MAGIC.len()) != Some(&MAGIC[..]) {
            return Err(corrupt(FormatError::BadMagic));
        }
        crc.update(chunk);
        // The part of this chunk inside the body, if any.
        let (start, end) = (pos.max(body.start), (pos + n as u64).min(body.end));
        if start < end {
            observe(
                &trailer,
                start - body.start,
                &chunk[(start - pos) as usize..(end - pos) as usize],
            );
        }
        pos += n as u64;
    }
    if crc.finalize() != footer.crc {
        return Err(corrupt(FormatError::Checksum));
    }
    Ok((trailer, body.start))
}

fn write_all_vectored(f: &mut File, mut bufs: &mut [io::IoSlice<'_>]) -> io::Result<()> {
    io::IoSlice::advance_slices(&mut bufs, 0);
    while !bufs.is_empty() {
        match f.write_vectored(bufs) {
            Ok(0) => return Err(io::Error::new(io::ErrorKind::WriteZero, "failed to write whole buffer")),
            Ok(n) => io::IoSlice::advance_slices(&mut bufs, n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
