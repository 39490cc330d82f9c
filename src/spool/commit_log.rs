//! The spool's commit log: a pre-allocated ring file (`queue/commit.log`)
//! that makes a small message durable with one `fdatasync` of a file whose
//! blocks already exist, instead of a directory fsync (on ext4 a journal
//! commit) per batch plus the message file's own sync.
//!
//! A commit writes and renames its queue file as before, without syncing it,
//! then appends a copy of the whole file here; sessions that finish DATA
//! together share one `fdatasync` (group commit, as in `syncer`). A
//! checkpoint (`checkpoint`) later makes the queue files themselves durable
//! with `syncfs` and then moves the ring's tail past their records; start-up
//! (`replay`) writes back any queue file whose record is still in the ring.
//!
//! Layout: two header slots of 4 KiB (`EXH1`, generation, epoch, tail
//! sequence, capacity, CRC; the valid one with the higher generation
//! wins, and a header is always written to the other slot, so a torn header
//! write leaves the previous one), then the ring. A record is
//! `EXR1 | epoch | seq | area | id length | id | data length | data | CRC-32`,
//! padded to 4 KiB so no two records share a page. A record never straddles
//! the ring's end: one that does not fit before it goes to offset 0.
//!
//! The scan at start-up walks the whole ring page by page and takes every
//! valid record of the header's epoch whose sequence number is not yet
//! retired (at or above the tail's), skipping a valid record's own pages. So
//! a record is found whether or not the records reserved before it were ever
//! written, and each commit waits only for its own write and a sync started
//! after it, never for a slower session's write (which under CPU contention
//! had held every later commit back). The epoch is random, new at every
//! open: neither a record of an earlier run nor bytes that a sender placed in
//! a message (which the ring holds, and a page-by-page walk can land in) can
//! pass as a record of this run without guessing 64 random bits.
//!
//! Invariants: a record is acknowledged only after an `fdatasync` that
//! started once it was written. The ring never reuses the space of a record
//! that a checkpoint has not retired. Any failed write or sync breaks the log
//! for good in this process: every commit then takes the direct path, which
//! does not depend on it. This file never decides what a message is; it only
//! keeps bytes and ids.

use std::collections::{HashMap, VecDeque};
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard, OnceLock, PoisonError};
use std::thread::Thread;

/// Bytes per page: the unit records and header slots are padded to.
pub(super) const PAGE: u64 = 4096;
/// Where the ring starts, after the two header slots.
const RING_START: u64 = 2 * PAGE;
const HEADER_MAGIC: &[u8; 4] = b"EXH1";
const RECORD_MAGIC: &[u8; 4] = b"EXR1";
/// magic, epoch, seq, area, id length.
const RECORD_HEAD: usize = 4 + 8 + 8 + 1 + 2;

/// Why a commit could not use the log (it then takes the direct path).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Skipped {
    /// Larger than a quarter of the ring: one message must not crowd out the rest.
    TooLarge,
    /// No room until the next checkpoint moves the tail.
    Full,
    /// A write or sync of the log failed in this process.
    Broken,
}

/// The persistent part of the log's state, as a header slot holds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Header {
    pub(super) generation: u64,
    pub(super) epoch: u64,
    /// Records with a lower sequence number are retired (the scan needs no
    /// offset: it walks the whole ring).
    pub(super) tail_seq: u64,
    /// Ring size in bytes (after the header slots).
    pub(super) cap: u64,
}

impl Header {
    fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(PAGE as usize);
        b.extend_from_slice(HEADER_MAGIC);
        for v in [self.generation, self.epoch, self.tail_seq, self.cap] {
            b.extend_from_slice(&v.to_be_bytes());
        }
        let crc = crc32fast::hash(&b);
        b.extend_from_slice(&crc.to_be_bytes());
        b.resize(PAGE as usize, 0);
        b
    }

    fn decode(b: &[u8]) -> Option<Header> {
        let body = b.get(..4 + 4 * 8)?;
        let crc = u32::from_be_bytes(b.get(36..40)?.try_into().ok()?);
        if &body[..4] != HEADER_MAGIC || crc32fast::hash(body) != crc {
            return None;
        }
        let v = |i: usize| u64::from_be_bytes(body[4 + 8 * i..12 + 8 * i].try_into().expect("8 bytes"));
        Some(Header {
            generation: v(0),
            epoch: v(1),
            tail_seq: v(2),
            cap: v(3),
        })
    }

    /// The next generation, with every record before `tail_seq` retired.
    pub(super) fn retiring(self, tail_seq: u64) -> Header {
        Header {
            generation: self.generation + 1,
            tail_seq,
            ..self
        }
    }

    /// The slot this header is written to: never the one the previous generation is in.
    fn slot(&self) -> u64 {
        (self.generation % 2) * PAGE
    }
}

/// Reads the valid header with the higher generation, if any.
pub(super) fn read_header(file: &File) -> io::Result<Option<Header>> {
    let mut b = vec![0u8; RING_START as usize];
    let n = read_up_to(file, &mut b, 0)?;
    let slots = [&b[..n.min(PAGE as usize)], b.get(PAGE as usize..n).unwrap_or(&[])];
    Ok(slots
        .iter()
        .filter_map(|s| Header::decode(s))
        .max_by_key(|h| h.generation))
}

/// A record found by `scan`.
pub(super) struct Record {
    pub(super) area: u8,
    pub(super) id: String,
    pub(super) data: Vec<u8>,
}

/// What `scan` found: the records not yet retired, oldest first, and the
/// sequence number after the newest.
pub(super) struct Scan {
    pub(super) records: Vec<Record>,
    pub(super) next_seq: u64,
}

/// Reads every record of the header's epoch that is not yet retired, in
/// sequence order, by walking the whole ring.
pub(super) fn scan(file: &File, h: &Header) -> io::Result<Scan> {
    let mut found: Vec<(u64, Record)> = Vec::new();
    let mut pos = 0;
    while pos + PAGE <= h.cap {
        match read_record(file, h, pos)? {
            Some((seq, len, record)) => {
                found.push((seq, record));
                pos += len;
            }
            None => pos += PAGE,
        }
    }
    found.sort_by_key(|(seq, _)| *seq);
    let next_seq = found.last().map_or(h.tail_seq, |(seq, _)| seq + 1);
    Ok(Scan {
        records: found.into_iter().map(|(_, r)| r).collect(),
        next_seq,
    })
}

/// The record at ring offset `pos`, with its sequence number and padded
/// length, if a valid one of this epoch not yet retired is there.
fn read_record(file: &File, h: &Header, pos: u64) -> io::Result<Option<(u64, u64, Record)>> {
    if pos + PAGE > h.cap {
        return Ok(None);
    }
    let mut first = vec![0u8; PAGE as usize];
    if read_up_to(file, &mut first, RING_START + pos)? < PAGE as usize {
        return Ok(None);
    }
    let seq = u64::from_be_bytes(first[12..20].try_into().expect("8"));
    if &first[..4] != RECORD_MAGIC
        || u64::from_be_bytes(first[4..12].try_into().expect("8")) != h.epoch
        || seq < h.tail_seq
    {
        return Ok(None);
    }
    let id_len = u16::from_be_bytes(first[21..23].try_into().expect("2")) as usize;
    let data_len_at = RECORD_HEAD + id_len;
    let Some(data_len) = first.get(data_len_at..data_len_at + 8) else {
        return Ok(None);
    };
    let data_len = u64::from_be_bytes(data_len.try_into().expect("8"));
    let total = (data_len_at as u64 + 8).saturating_add(data_len).saturating_add(4);
    let len = padded(total);
    if pos.saturating_add(len) > h.cap {
        return Ok(None);
    }
    let mut rec = first;
    rec.resize(total as usize, 0);
    if (total as usize) > PAGE as usize
        && read_up_to(file, &mut rec[PAGE as usize..], RING_START + pos + PAGE)? < total as usize - PAGE as usize
    {
        return Ok(None);
    }
    let crc_at = total as usize - 4;
    if crc32fast::hash(&rec[..crc_at]) != u32::from_be_bytes(rec[crc_at..].try_into().expect("4")) {
        return Ok(None);
    }
    let Ok(id) = String::from_utf8(rec[RECORD_HEAD..RECORD_HEAD + id_len].to_vec()) else {
        return Ok(None);
    };
    let area = rec[20];
    rec.truncate(crc_at);
    rec.drain(..data_len_at + 8);
    Ok(Some((seq, len, Record { area, id, data: rec })))
}

fn padded(n: u64) -> u64 {
    n.div_ceil(PAGE) * PAGE
}

fn encode_record(epoch: u64, seq: u64, area: u8, id: &str, parts: &[&[u8]]) -> Vec<u8> {
    let data_len: usize = parts.iter().map(|p| p.len()).sum();
    let total = RECORD_HEAD + id.len() + 8 + data_len + 4;
    let mut b = Vec::with_capacity(padded(total as u64) as usize);
    b.extend_from_slice(RECORD_MAGIC);
    b.extend_from_slice(&epoch.to_be_bytes());
    b.extend_from_slice(&seq.to_be_bytes());
    b.push(area);
    b.extend_from_slice(&(id.len() as u16).to_be_bytes());
    b.extend_from_slice(id.as_bytes());
    b.extend_from_slice(&(data_len as u64).to_be_bytes());
    for p in parts {
        b.extend_from_slice(p);
    }
    let crc = crc32fast::hash(&b);
    b.extend_from_slice(&crc.to_be_bytes());
    b.resize(padded(total as u64) as usize, 0);
    b
}

/// Reads into `buf` from `offset` until it is full or the file ends.
fn read_up_to(file: &File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match file.read_at(&mut buf[n..], offset + n as u64) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// Writes a header to its slot and makes it durable.
pub(super) fn write_header(file: &File, h: &Header) -> io::Result<()> {
    file.write_all_at(&h.encode(), h.slot())?;
    file.sync_data()
}

/// A record not yet retired by a checkpoint.
struct Live {
    seq: u64,
    pos: u64,
    len: u64,
    written: bool,
    id: String,
}

struct State {
    header: Header,
    /// Where the next record goes, and its sequence number.
    head: u64,
    next_seq: u64,
    /// Records after the tail, oldest first.
    live: VecDeque<Live>,
    /// Bytes of the live records.
    used: u64,
    /// How many live records each id has (an id is committed once, but be exact).
    live_ids: HashMap<String, u32>,
    /// Tickets handed out: a record takes one once it is written.
    asked: u64,
    /// Every ticket up to this one is covered by a finished `fdatasync`.
    synced: u64,
    syncing: bool,
}

/// Where a checkpoint may move the tail: every record before this sequence
/// number was written (and its queue file renamed) before the checkpoint's `syncfs`.
#[derive(Debug, Clone, Copy)]
pub(super) struct Mark {
    seq: u64,
}

/// The open log of this process.
pub(super) struct CommitLog {
    path: PathBuf,
    file: File,
    state: Mutex<State>,
    done: Condvar,
    broken: AtomicBool,
    /// Held by a checkpoint from its mark to its retire, so two cannot interleave.
    pub(super) checkpointing: Mutex<()>,
    checkpointer: OnceLock<Thread>,
}

impl CommitLog {
    /// Opens the log at `path` for appending with a ring of `cap` bytes:
    /// an existing one of that size without live records is reused (new
    /// epoch), anything else is replaced by a new zero-filled file, so that
    /// appends never allocate blocks (which would cost a journal commit).
    /// `replayed` is the header this process's replay wrote after it retired
    /// every record: a file still carrying it holds none, and is not read
    /// through a second time.
    pub(super) fn open(path: &Path, cap: u64, replayed: Option<Header>) -> io::Result<CommitLog> {
        let cap = cap / PAGE * PAGE;
        let existing = OpenOptions::new().read(true).write(true).open(path).ok();
        let reused = match &existing {
            Some(f) if f.metadata()?.len() == RING_START + cap => match read_header(f)? {
                Some(h) if h.cap == cap => {
                    if replayed != Some(h) && !scan(f, &h)?.records.is_empty() {
                        return Err(io::Error::other(
                            "the commit log still holds records that were not written back",
                        ));
                    }
                    Some(h)
                }
                _ => None,
            },
            _ => None,
        };
        let (file, header) = match (existing, reused) {
            (Some(file), Some(old)) => {
                let h = Header {
                    generation: old.generation + 1,
                    epoch: new_epoch()?,
                    tail_seq: 0,
                    cap,
                };
                write_header(&file, &h)?;
                (file, h)
            }
            _ => create(path, cap)?,
        };
        // The zero-filling left the whole file in the page cache, in large
        // folios: a 4 KiB record then dirtied a whole folio, and the process
        // was charged about 1 MB written per message instead of 29 KB
        // (benches/README.md, "The commit log"). Dropped, later records get
        // pages of their own.
        let _ = rustix::fs::fadvise(&file, 0, None, rustix::fs::Advice::DontNeed);
        Ok(CommitLog {
            path: path.to_path_buf(),
            file,
            state: Mutex::new(State {
                header,
                head: 0,
                next_seq: 0,
                live: VecDeque::new(),
                used: 0,
                live_ids: HashMap::new(),
                asked: 0,
                synced: 0,
                syncing: false,
            }),
            done: Condvar::new(),
            broken: AtomicBool::new(false),
            checkpointing: Mutex::new(()),
            checkpointer: OnceLock::new(),
        })
    }

    #[cfg(test)]
    pub(super) fn path(&self) -> &Path {
        &self.path
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(super) fn is_broken(&self) -> bool {
        self.broken.load(Ordering::Acquire)
    }

    /// From now on every commit takes the direct path; waiters are woken to
    /// take it. Says so once, with what failed.
    pub(super) fn break_log(&self, what: &str, error: &io::Error) {
        if !self.broken.swap(true, Ordering::AcqRel) {
            tracing::error!(
                %error,
                path = %self.path.display(),
                "commit log {what} failed: every message is now made durable by syncing its file and directory (slower, as safe); \
                 records not yet checkpointed are written back at the next start; check the disk, then restart to reopen the log"
            );
        }
        let _guard = self.lock();
        self.done.notify_all();
    }

    /// Appends `id`'s queue file (the concatenation of `parts`) and returns
    /// once it is durable.
    pub(super) fn append(&self, area: u8, id: &str, parts: &[&[u8]]) -> Result<(), Skipped> {
        if self.is_broken() {
            return Err(Skipped::Broken);
        }
        let mut st = self.lock();
        let data_len: u64 = parts.iter().map(|p| p.len() as u64).sum();
        let len = padded(RECORD_HEAD as u64 + id.len() as u64 + 8 + data_len + 4);
        if len > st.header.cap / 4 || id.len() > u16::MAX as usize {
            return Err(Skipped::TooLarge);
        }
        let Some(pos) = place(&st, len) else {
            drop(st);
            self.nudge();
            return Err(Skipped::Full);
        };
        let seq = st.next_seq;
        st.next_seq += 1;
        st.head = pos + len;
        st.used += len;
        st.live.push_back(Live {
            seq,
            pos,
            len,
            written: false,
            id: id.to_string(),
        });
        *st.live_ids.entry(id.to_string()).or_default() += 1;
        let epoch = st.header.epoch;
        let crowded = st.used * 2 > st.header.cap;
        drop(st);
        if crowded {
            self.nudge();
        }

        let record = encode_record(epoch, seq, area, id, parts);
        if let Err(e) = self.file.write_all_at(&record, RING_START + pos) {
            self.break_log("write", &e);
            return Err(Skipped::Broken);
        }
        let mut st = self.lock();
        // Live records are consecutive in sequence, and this one cannot have
        // been retired: no mark passes an unwritten record.
        let front = st.live.front().map_or(seq, |l| l.seq);
        if let Some(l) = st.live.get_mut((seq - front) as usize) {
            l.written = true;
        }
        st.asked += 1;
        let ticket = st.asked;
        self.wait_durable(st, ticket)
    }

    /// Waits until an `fdatasync` that started after `ticket` was taken has
    /// finished, leading one when none runs.
    fn wait_durable<'a>(&'a self, mut st: MutexGuard<'a, State>, ticket: u64) -> Result<(), Skipped> {
        loop {
            if st.synced >= ticket {
                return Ok(());
            }
            if self.is_broken() {
                return Err(Skipped::Broken);
            }
            if !st.syncing {
                st.syncing = true;
                let covers = st.asked;
                drop(st);
                let result = self.file.sync_data();
                if let Err(e) = &result {
                    self.break_log("fdatasync", e);
                }
                st = self.lock();
                st.syncing = false;
                if result.is_ok() {
                    st.synced = st.synced.max(covers);
                }
                self.done.notify_all();
                continue;
            }
            st = self.done.wait(st).unwrap_or_else(PoisonError::into_inner);
        }
    }

    /// Whether `id` has a record that no checkpoint has retired.
    pub(super) fn is_live(&self, id: &str) -> bool {
        self.lock().live_ids.contains_key(id)
    }

    /// The thread to wake when the ring is filling up.
    pub(super) fn set_checkpointer(&self, thread: Thread) {
        let _ = self.checkpointer.set(thread);
    }

    /// Wakes the checkpointer early: at half full, a checkpoint frees room
    /// before commits have to take the direct path.
    fn nudge(&self) {
        if let Some(t) = self.checkpointer.get() {
            t.unpark();
        }
    }

    /// Where a checkpoint starting now may move the tail: past every record
    /// written so far without a gap. None if there is nothing to retire.
    pub(super) fn checkpoint_mark(&self) -> Option<Mark> {
        let st = self.lock();
        let done = st.live.iter().take_while(|l| l.written).last()?;
        Some(Mark { seq: done.seq + 1 })
    }

    /// After the checkpoint's `syncfs`: writes the header that moves the tail
    /// to `mark` and drops the records before it (an older mark does nothing).
    pub(super) fn retire(&self, mark: Mark) -> io::Result<()> {
        let header = {
            let st = self.lock();
            if mark.seq <= st.header.tail_seq {
                return Ok(());
            }
            st.header.retiring(mark.seq)
        };
        if let Err(e) = write_header(&self.file, &header) {
            self.break_log("header write", &e);
            return Err(e);
        }
        let mut st = self.lock();
        st.header = header;
        while st.live.front().is_some_and(|l| l.seq < mark.seq) {
            let l = st.live.pop_front().expect("front exists");
            st.used -= l.len;
            if let Some(n) = st.live_ids.get_mut(&l.id) {
                *n -= 1;
                if *n == 0 {
                    st.live_ids.remove(&l.id);
                }
            }
        }
        Ok(())
    }
}

/// Where a record of `len` bytes goes: at the head, or at 0 if it does not
/// fit before the ring's end; None if the live records leave no room.
fn place(st: &State, len: u64) -> Option<u64> {
    let cap = st.header.cap;
    let Some(tail) = st.live.front().map(|l| l.pos) else {
        // Nothing live: the whole ring is free; go on after the head.
        return Some(if st.head + len <= cap { st.head } else { 0 });
    };
    if st.head > tail {
        if st.head + len <= cap {
            Some(st.head)
        } else if len <= tail {
            Some(0)
        } else {
            None
        }
    } else if st.head + len <= tail {
        Some(st.head)
    } else {
        None
    }
}

/// A random epoch for a newly opened log (module header: why random).
fn new_epoch() -> io::Result<u64> {
    use ring::rand::SecureRandom;
    let mut bytes = [0u8; 8];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| io::Error::other("no randomness from the operating system for the commit log's epoch"))?;
    Ok(u64::from_be_bytes(bytes))
}

/// Creates a new zero-filled log of `cap` ring bytes beside `path`, makes it
/// durable and renames it into place. A failure (a disk too small for it)
/// leaves no partial file to take the queue's space.
fn create(path: &Path, cap: u64) -> io::Result<(File, Header)> {
    let tmp = path.with_extension("log.new");
    let created = create_at(&tmp, path, cap);
    if created.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    created
}

fn create_at(tmp: &Path, path: &Path, cap: u64) -> io::Result<(File, Header)> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(tmp)?;
    let zeros = vec![0u8; 1 << 20];
    let total = RING_START + cap;
    let mut off = 0;
    while off < total {
        let n = (total - off).min(zeros.len() as u64) as usize;
        file.write_all_at(&zeros[..n], off)?;
        off += n as u64;
    }
    let h = Header {
        generation: 1,
        epoch: new_epoch()?,
        tail_seq: 0,
        cap,
    };
    file.write_all_at(&h.encode(), h.slot())?;
    file.sync_all()?;
    std::fs::rename(tmp, path)?;
    if let Some(dir) = path.parent() {
        File::open(dir)?.sync_all()?;
    }
    Ok((file, h))
}

#[cfg(test)]
#[path = "commit_log_tests.rs"]
mod tests;
