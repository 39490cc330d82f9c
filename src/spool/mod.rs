//! The durable spool: where an accepted message lives until its fate is known.
//!
//! Discipline (after Postfix): a message is written as `ID.tmp` in `active/`
//! (or `quarantine/`; a body too large for memory was already streamed to
//! `incoming/`), the file is fsynced, renamed to `ID.q`, and the directory is
//! fsynced; only then may the session answer 250. Directory
//! fsyncs of concurrent commits are batched by one syncer thread, which keeps
//! that guarantee while paying for one fsync per batch. Files under
//! `incoming/` and `*.tmp` files were never acknowledged and are removed at
//! start-up. A file in
//! `active/` that fails validation is moved to `corrupt/` and counted, never
//! delivered half and never silently dropped.
//!
//! Message bodies on their way in (memory, then disk) live in `body`.
//!
//! Delivery progress is an append-only sidecar (`ID.st`) of checksummed lines,
//! so a recipient already delivered is never sent again after a restart; a
//! torn last line is ignored (at worst one duplicate delivery).

pub mod format;
pub(crate) mod incoming;

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::spool::incoming::Body;
use format::{FOOTER_LEN, FormatError, MAGIC, Meta, Trailer};

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

/// Which directory a committed message goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Area {
    Active,
    Quarantine,
}

/// A new, unique, time-ordered queue id (20 upper-case hex digits).
pub(crate) fn new_id() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    static SEED: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    let seed = *SEED.get_or_init(|| {
        let mut b = [0u8; 8];
        let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut b);
        u64::from_le_bytes(b)
    });
    let micros = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_micros() as u64;
    let n = COUNTER.fetch_add(1, Ordering::Relaxed).wrapping_add(seed) & 0xFF_FFFF;
    format!("{micros:014X}{n:06X}")
}

/// Only ids we generated are valid file names (no path tricks from the CLI).
pub(crate) fn valid_id(id: &str) -> bool {
    (1..=64).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric())
}

pub(crate) fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs() as i64
}

/// One event in a message's delivery history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "e", rename_all = "lowercase")]
pub(crate) enum StateEvent {
    /// Recipient `rcpt` (index in the envelope) was accepted downstream.
    Delivered { rcpt: usize, reply: String },
    /// Recipient `rcpt` failed permanently (a DSN was queued if one was due).
    Failed { rcpt: usize, reply: String },
    /// An attempt failed temporarily; the next one is due at `next` (Unix seconds).
    Deferred { attempts: u32, next: i64, error: String },
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

/// The directories and the syncer.
pub(crate) struct Spool {
    pub(crate) root: PathBuf,
    pub(crate) incoming: PathBuf,
    active: PathBuf,
    corrupt: PathBuf,
    quarantine: PathBuf,
    syncer: mpsc::Sender<(PathBuf, tokio::sync::oneshot::Sender<io::Result<()>>)>,
}

/// What start-up found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Recovery {
    pub(crate) valid: Vec<String>,
    pub(crate) corrupt: Vec<(String, String)>,
    pub(crate) incomplete_removed: usize,
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
        ];
        for d in &spool_dirs {
            fs::create_dir_all(d).map_err(io_err(d))?;
        }
        let [incoming, active, corrupt, quarantine] = spool_dirs;
        Ok(Spool {
            root,
            incoming,
            active,
            corrupt,
            quarantine,
            syncer: spawn_dir_syncer(),
        })
    }

    fn dir(&self, area: Area) -> &Path {
        match area {
            Area::Active => &self.active,
            Area::Quarantine => &self.quarantine,
        }
    }

    pub(crate) fn path(&self, area: Area, id: &str) -> PathBuf {
        self.dir(area).join(format!("{id}.q"))
    }

    fn state_path(&self, area: Area, id: &str) -> PathBuf {
        self.dir(area).join(format!("{id}.st"))
    }

    /// The file `queue flush` touches to ask the scheduler to retry everything now.
    pub(crate) fn flush_trigger(&self) -> PathBuf {
        self.root.join("flush")
    }

    /// Makes a message durable in `area`. Returns once file and directory are
    /// on stable storage.
    pub(crate) async fn commit(&self, area: Area, meta: &Meta, prefix: &[u8], body: Body) -> Result<(), SpoolError> {
        let target = self.path(area, &meta.id);
        let records = format::encode_records(meta, prefix);
        // Written next to its final name: a rename within one directory is
        // cheaper than across two, and only that directory needs its fsync.
        let incoming = self.dir(area).join(format!("{}.tmp", meta.id));
        let cleanup = incoming.clone();
        let write = move || -> Result<(), SpoolError> {
            match body {
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
                    f.sync_data().map_err(io_err(&incoming))?;
                    fs::rename(&incoming, &target).map_err(io_err(&target))
                }
                Body::Spilled {
                    mut file,
                    path,
                    len,
                    mut crc,
                } => {
                    crc.update(&records);
                    let footer = format::encode_footer(len, records.len() as u64, crc);
                    file.seek(SeekFrom::End(0)).map_err(io_err(&path))?;
                    file.write_all(&records).map_err(io_err(&path))?;
                    file.write_all(&footer).map_err(io_err(&path))?;
                    file.sync_all().map_err(io_err(&path))?;
                    fs::rename(&path, &target).map_err(io_err(&target))
                }
            }
        };
        let result = tokio::task::spawn_blocking(write).await.map_err(|e| SpoolError::Io {
            path: self.incoming.clone(),
            source: io::Error::other(e),
        })?;
        if let Err(e) = result {
            let _ = fs::remove_file(&cleanup);
            let _ = fs::remove_file(self.incoming.join(&meta.id));
            return Err(e);
        }
        self.sync_dir(self.dir(area)).await
    }

    async fn sync_dir(&self, dir: &Path) -> Result<(), SpoolError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let closed = || SpoolError::Io {
            path: dir.to_path_buf(),
            source: io::Error::other("directory syncer stopped"),
        };
        self.syncer.send((dir.to_path_buf(), tx)).map_err(|_| closed())?;
        rx.await.map_err(|_| closed())?.map_err(io_err(dir))
    }

    /// Metadata and history of a committed message (body not read, not validated).
    pub(crate) fn entry(&self, area: Area, id: &str) -> Result<Entry, SpoolError> {
        let path = self.path(area, id);
        let mut f = File::open(&path).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => SpoolError::NotFound(id.to_string()),
            _ => io_err(&path)(e),
        })?;
        let corrupt = |error| SpoolError::Corrupt {
            id: id.to_string(),
            error,
        };
        let len = f.metadata().map_err(io_err(&path))?.len();
        if len < (MAGIC.len() + FOOTER_LEN) as u64 {
            return Err(corrupt(FormatError::TooShort(len)));
        }
        let mut footer = [0u8; FOOTER_LEN];
        f.seek(SeekFrom::Start(len - FOOTER_LEN as u64))
            .map_err(io_err(&path))?;
        f.read_exact(&mut footer).map_err(io_err(&path))?;
        let footer = format::decode_footer(&footer, len).map_err(corrupt)?;
        let mut records = vec![0u8; footer.records_len as usize];
        f.seek(SeekFrom::Start(MAGIC.len() as u64 + footer.body_len))
            .map_err(io_err(&path))?;
        f.read_exact(&mut records).map_err(io_err(&path))?;
        let trailer = format::decode_records(&records, footer.body_len).map_err(corrupt)?;
        Ok(Entry {
            trailer,
            events: self.events(area, id),
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

    /// The delivery history of a message (checksummed lines; damaged lines skipped).
    pub(crate) fn events(&self, area: Area, id: &str) -> Vec<StateEvent> {
        let Ok(text) = fs::read(self.state_path(area, id)) else {
            return Vec::new();
        };
        text.split(|&b| b == b'\n').filter_map(parse_event_line).collect()
    }

    /// Appends an event to a message's history and makes it durable.
    pub(crate) fn append(&self, area: Area, id: &str, event: &StateEvent) -> Result<(), SpoolError> {
        let path = self.state_path(area, id);
        let json = serde_json::to_string(event).expect("events serialise");
        let line = format!("{:08x} {json}\n", crc32fast::hash(json.as_bytes()));
        let mut f = OpenOptions::new()
            .append(true)
            .create(true)
            .open(&path)
            .map_err(io_err(&path))?;
        f.write_all(line.as_bytes()).map_err(io_err(&path))?;
        f.sync_data().map_err(io_err(&path))
    }

    /// Removes a message whose fate is known. Not fsynced: after a crash it may
    /// come back and be delivered twice, never lost.
    pub(crate) fn remove(&self, area: Area, id: &str) -> Result<(), SpoolError> {
        let path = self.path(area, id);
        let _ = fs::remove_file(self.state_path(area, id));
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(SpoolError::NotFound(id.to_string())),
            Err(e) => Err(io_err(&path)(e)),
        }
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
        for id in self.list(Area::Active)? {
            let path = self.path(Area::Active, &id);
            match validate_file(&path) {
                Ok(()) => report.valid.push(id),
                Err(e) => {
                    self.set_aside(&id);
                    report.corrupt.push((id, e.to_string()));
                }
            }
        }
        Ok(report)
    }

    /// Moves a quarantined message into the delivery queue (durably).
    pub(crate) fn release(&self, id: &str) -> Result<(), SpoolError> {
        let from = self.path(Area::Quarantine, id);
        if !from.exists() {
            return Err(SpoolError::NotFound(id.to_string()));
        }
        let to = self.path(Area::Active, id);
        fs::rename(&from, &to).map_err(io_err(&to))?;
        let _ = fs::remove_file(self.state_path(Area::Quarantine, id));
        File::open(&self.active)
            .and_then(|d| d.sync_all())
            .map_err(io_err(&self.active))
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

    /// Whether the spool directories are writable (for readiness).
    pub(crate) fn writable(&self) -> bool {
        let probe = self.incoming.join(".probe");
        let ok = File::create(&probe).and_then(|mut f| f.write_all(b"x")).is_ok();
        let _ = fs::remove_file(&probe);
        ok
    }
}

fn parse_event_line(line: &[u8]) -> Option<StateEvent> {
    let line = std::str::from_utf8(line).ok()?;
    let (crc, json) = line.split_once(' ')?;
    let crc = u32::from_str_radix(crc, 16).ok()?;
    if crc32fast::hash(json.as_bytes()) != crc {
        return None;
    }
    serde_json::from_str(json).ok()
}

/// Streams a queue file through the checksum without loading it whole.
fn validate_file(path: &Path) -> Result<(), FormatError> {
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
    let mut buf = vec![0u8; 1 << 20];
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

type SyncRequest = (PathBuf, tokio::sync::oneshot::Sender<io::Result<()>>);

/// One thread that fsyncs directories, batching every request that arrived
/// while the previous fsync ran (group commit).
fn spawn_dir_syncer() -> mpsc::Sender<SyncRequest> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::envelope::{Direction, Envelope, SessionFacts};
    use crate::spool::format::Kind;
    use crate::spool::incoming::{Body, IncomingBody};

    fn meta(id: &str) -> Meta {
        Meta {
            id: id.into(),
            received: 1,
            kind: Kind::Message,
            envelope: Envelope::default(),
            session: SessionFacts {
                client_ip: "127.0.0.1".parse().unwrap(),
                client_port: 1,
                helo: "h".into(),
                tls: None,
            },
            tenant: "contoso".into(),
            direction: Direction::Inbound,
            verdict: None,
            skips: vec![],
            route: None,
        }
    }

    #[tokio::test]
    async fn commit_read_history_remove() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path()).unwrap();
        let id = new_id();
        spool
            .commit(
                Area::Active,
                &meta(&id),
                b"H: 1\r\n",
                Body::Memory(b"Subject: x\r\n\r\nhi\r\n".to_vec()),
            )
            .await
            .unwrap();
        let stored = spool.read(Area::Active, &id).unwrap();
        assert_eq!(stored.body, b"Subject: x\r\n\r\nhi\r\n");
        assert_eq!(stored.trailer.prefix, b"H: 1\r\n");
        spool
            .append(
                Area::Active,
                &id,
                &StateEvent::Delivered {
                    rcpt: 0,
                    reply: "250 ok".into(),
                },
            )
            .unwrap();
        // A torn trailing line is ignored.
        let mut f = OpenOptions::new()
            .append(true)
            .open(spool.state_path(Area::Active, &id))
            .unwrap();
        f.write_all(b"0000dead {\"e\":\"deliv").unwrap();
        assert_eq!(spool.entry(Area::Active, &id).unwrap().events.len(), 1);
        assert_eq!(spool.list(Area::Active).unwrap(), vec![id.clone()]);
        spool.remove(Area::Active, &id).unwrap();
        assert!(spool.list(Area::Active).unwrap().is_empty());
    }

    #[tokio::test]
    async fn spilled_bodies_keep_every_byte() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path()).unwrap();
        let id = new_id();
        let mut body = IncomingBody::new(&spool, &id, 0);
        let mut expected = Vec::new();
        for i in 0..300u32 {
            let chunk = format!("line {i} {}\r\n", "x".repeat(1000));
            body.buf().extend_from_slice(chunk.as_bytes());
            expected.extend_from_slice(chunk.as_bytes());
            body.spill_if_needed().unwrap();
        }
        let body = body.finish().unwrap();
        assert!(matches!(body, Body::Spilled { .. }));
        assert_eq!(body.for_scan(u64::MAX).unwrap().as_ref(), &expected[..]);
        spool.commit(Area::Active, &meta(&id), b"", body).await.unwrap();
        assert_eq!(spool.read(Area::Active, &id).unwrap().body, expected);
        assert_eq!(spool.recover().unwrap().valid, vec![id]);
    }

    #[tokio::test]
    async fn recovery_moves_damaged_files_aside_and_drops_unacknowledged_ones() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path()).unwrap();
        let good = new_id();
        spool
            .commit(
                Area::Active,
                &meta(&good),
                b"",
                Body::Memory(b"A: b\r\n\r\nx\r\n".to_vec()),
            )
            .await
            .unwrap();
        let torn = new_id();
        let full = format::encode_all(b"A: b\r\n\r\nbody\r\n", &meta(&torn), b"");
        fs::write(spool.path(Area::Active, &torn), &full[..full.len() - 10]).unwrap();
        fs::write(spool.incoming.join("PARTIAL"), b"EXOQ1").unwrap();
        fs::write(spool.active.join("HALF.tmp"), b"EXOQ1").unwrap();
        let r = spool.recover().unwrap();
        assert_eq!(r.valid, vec![good]);
        assert_eq!(r.corrupt.len(), 1);
        assert_eq!(r.incomplete_removed, 2);
        assert!(!spool.active.join("HALF.tmp").exists());
        assert_eq!(spool.corrupt_count(), 1);
        assert!(!spool.path(Area::Active, &torn).exists());
    }

    #[test]
    fn ids_are_unique_and_ordered() {
        let a = new_id();
        let b = new_id();
        assert_ne!(a, b);
        assert!(valid_id(&a) && !valid_id("../etc") && !valid_id(""));
    }
}
